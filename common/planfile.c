/* planfile.c — reading and writing plan files (contract in planfile.h). */
#include "planfile.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

typedef struct {
    planfile *p;
    char *err;
    int failed;
    int have_model, have_layout, have_batch;
} read_ctx;

static int parse_real(const char *v, double *out)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || errno || *end || !isfinite(x) || x < 0)
        return -1;
    *out = x;
    return 0;
}

static int cb(void *user, const char *section, const char *name, const char *value)
{
    read_ctx *c = user;
    char e[SPEC_ERR_LEN];
    int rc = SPEC_OK;
    if (!strcmp(section, "model")) {
        rc = spec_model_set(&c->p->model, name, value, e);
        c->have_model = 1;
    } else if (!strcmp(section, "cluster")) {
        rc = spec_cluster_set(&c->p->cluster, name, value, e);
    } else if (!strcmp(section, "layout")) {
        rc = spec_layout_set(&c->p->layout, name, value, e);
        c->have_layout = 1;
    } else if (!strcmp(section, "train")) {
        if (!strcmp(name, "global_batch")) {
            char *end = NULL;
            errno = 0;
            long long b = strtoll(value, &end, 10);
            if (!*value || errno || *end || b <= 0) {
                snprintf(e, sizeof e, "train: global_batch='%s' is not a positive integer", value);
                rc = SPEC_ERR;
            } else {
                c->p->global_batch = b;
                c->have_batch = 1;
            }
        } else {
            snprintf(e, sizeof e, "unknown key '%s' in [train] (keys: global_batch)", name);
            rc = SPEC_ERR;
        }
    } else if (!strcmp(section, "prediction")) {
        double *dst = !strcmp(name, "step_time_s")      ? &c->p->pred_step_time_s
                      : !strcmp(name, "mem_peak_bytes") ? &c->p->pred_mem_peak_bytes
                      : !strcmp(name, "tokens_per_s")   ? &c->p->pred_tokens_per_s
                                                        : NULL;
        if (!dst) /* other prediction keys are informative */
            return 1;
        if (parse_real(value, dst)) {
            snprintf(e, sizeof e, "prediction: %s='%s' is not a number", name, value);
            rc = SPEC_ERR;
        }
    } else {
        snprintf(e, sizeof e, "unknown section [%s] (sections: model, cluster, layout, train, prediction)",
                 section);
        rc = SPEC_ERR;
    }
    if (rc != SPEC_OK) {
        if (!c->failed) /* inih reports the first bad line; keep its message */
            snprintf(c->err, SPEC_ERR_LEN, "%s", e);
        c->failed = 1;
        return 0;
    }
    return 1;
}

int planfile_read(const char *path, planfile *out, char err[SPEC_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    spec_layout_default(&out->layout);
    char e0[SPEC_ERR_LEN];
    spec_cluster_parse("dgx-a100-80gb", &out->cluster, e0);
    snprintf(out->model.name, sizeof out->model.name, "plan");
    read_ctx c = {out, err, 0, 0, 0, 0};
    err[0] = 0;
    int rc = ini_parse(path, cb, &c);
    if (rc == -1) {
        snprintf(err, SPEC_ERR_LEN, "plan: cannot open '%s': %s", path, strerror(errno));
        return SPEC_ERR;
    }
    if (rc != 0) {
        char inner[SPEC_ERR_LEN];
        snprintf(inner, sizeof inner, "%s", err[0] ? err : "malformed line");
        snprintf(err, SPEC_ERR_LEN, "%s:%d: %s", path, rc, inner);
        return SPEC_ERR;
    }
    if (!c.have_model || !c.have_layout || !c.have_batch) {
        snprintf(err, SPEC_ERR_LEN, "%s: missing %s", path,
                 !c.have_model ? "[model]" : !c.have_layout ? "[layout]" : "[train] global_batch");
        return SPEC_ERR;
    }
    if (out->model.ffn == 0)
        out->model.ffn = 4 * out->model.hidden;
    char e[SPEC_ERR_LEN];
    if (spec_model_check(&out->model, e) || spec_cluster_check(&out->cluster, e) ||
        spec_layout_check(&out->layout, &out->model, out->global_batch, -1, e)) {
        snprintf(err, SPEC_ERR_LEN, "%s: %s", path, e);
        return SPEC_ERR;
    }
    return SPEC_OK;
}

int planfile_write(const char *path, const planfile *p, const char *comment, int overwrite,
                   char err[SPEC_ERR_LEN])
{
    if (!overwrite && access(path, F_OK) == 0) {
        snprintf(err, SPEC_ERR_LEN, "plan: '%s' exists; not overwriting it (use --force)", path);
        return SPEC_ERR;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, SPEC_ERR_LEN, "plan: cannot write '%s': %s", tmp, strerror(errno));
        return SPEC_ERR;
    }
    if (comment) {
        const char *s = comment;
        while (*s) {
            size_t n = strcspn(s, "\n");
            fprintf(f, "# %.*s\n", (int)n, s);
            s += n;
            if (*s == '\n')
                s++;
        }
    }
    const spec_model *m = &p->model;
    const spec_cluster *c = &p->cluster;
    const spec_layout *l = &p->layout;
    fprintf(f, "\n[model]\nlayers = %lld\nhidden = %lld\nheads = %lld\nffn = %lld\nvocab = %lld\nseq = %lld\n",
            (long long)m->layers, (long long)m->hidden, (long long)m->heads, (long long)m->ffn,
            (long long)m->vocab, (long long)m->seq);
    fprintf(f, "\n[cluster]\ngpu = %s\nnodes = %d\ngpus_per_node = %d\nintra_gbps = %.17g\n"
               "inter_gbps = %.17g\nintra_lat_us = %.17g\ninter_lat_us = %.17g\nmem_gb = %.17g\n"
               "peak_tflops = %.17g\nhbm_gbps = %.17g\n",
            spec_gpu_name(c->gpu), c->nodes, c->gpus_per_node, c->intra_gbps, c->inter_gbps,
            c->intra_lat_us, c->inter_lat_us, c->mem_gb, c->peak_tflops, c->hbm_gbps);
    fprintf(f, "\n[layout]\ntp = %d\npp = %d\ndp = %d\nmbs = %d\nschedule = %s\nv = %d\nrecompute = %s\n"
               "zero = %d\nsp = %d\nprecision = %s\n",
            l->tp, l->pp, l->dp, l->mbs, spec_schedule_name(l->schedule), l->v,
            spec_recompute_name(l->recompute), l->zero, l->sp, spec_precision_name(l->precision));
    if (l->flash)
        fprintf(f, "attn = flash\n");
    if (l->n_stage_layers > 0) {
        fprintf(f, "stages = ");
        for (int i = 0; i < l->n_stage_layers; i++)
            fprintf(f, "%s%d", i ? ":" : "", l->stage_layers[i]);
        fprintf(f, "\n");
    }
    fprintf(f, "\n[train]\nglobal_batch = %lld\n", (long long)p->global_batch);
    if (p->pred_step_time_s > 0)
        fprintf(f, "\n[prediction]\nstep_time_s = %.9g\nmem_peak_bytes = %.0f\ntokens_per_s = %.9g\n",
                p->pred_step_time_s, p->pred_mem_peak_bytes, p->pred_tokens_per_s);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        unlink(tmp);
        snprintf(err, SPEC_ERR_LEN, "plan: error writing '%s'", tmp);
        return SPEC_ERR;
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        snprintf(err, SPEC_ERR_LEN, "plan: cannot rename to '%s': %s", path, strerror(errno));
        return SPEC_ERR;
    }
    return SPEC_OK;
}
