/* checkpoint.c — whole-or-ignored, layout-independent checkpoints (see
 * checkpoint.h). */
#include "checkpoint.h"

#include "../kernels/kernels.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_manifest.h"

uint32_t exec_crc32(uint32_t crc, const void *buf, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const unsigned char *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static int write_all(int fd, const void *buf, size_t bytes)
{
    const char *p = buf;
    while (bytes > 0) {
        ssize_t w = write(fd, p, bytes);
        if (w <= 0)
            return -1;
        p += w, bytes -= (size_t)w;
    }
    return 0;
}

/* Write n buffers one after the other into path and fsync it; *crc gets
 * the CRC-32 of the whole file. */
static int write_synced(const char *path, const void *const *bufs, const size_t *bytes, int n, uint32_t *crc)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    uint32_t c = 0;
    for (int i = 0; i < n; i++) {
        if (bytes[i] == 0)
            continue;
        c = exec_crc32(c, bufs[i], bytes[i]);
        if (write_all(fd, bufs[i], bytes[i])) {
            close(fd);
            return -1;
        }
    }
    if (crc)
        *crc = c;
    int rc = fsync(fd);
    return close(fd) || rc ? -1 : 0;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

/* Steps of the complete checkpoints in dir, descending; returns the count. */
static int list_steps(const char *dir, int *steps, int max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) && n < max) {
        int s;
        char tail;
        if (sscanf(e->d_name, "step_%d%c", &s, &tail) == 1) {
            char man[4096];
            snprintf(man, sizeof man, "%s/%s/MANIFEST", dir, e->d_name);
            if (access(man, R_OK) == 0)
                steps[n++] = s;
        }
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort, descending */
        for (int j = i; j > 0 && steps[j] > steps[j - 1]; j--) {
            int t = steps[j];
            steps[j] = steps[j - 1], steps[j - 1] = t;
        }
    return n;
}

/* Every rank learns whether any rank failed. */
static int64_t any_failed(const exec_ckpt_ctx *ctx, int64_t mine)
{
    if (ctx->world)
        comm_allreduce_sum(ctx->world, &mine, 1, COMM_I64);
    return mine;
}

enum { R_RANK, R_TP, R_PP, R_DP, R_HASP, R_LO, R_HI, R_BYTES, R_CRC, R_FAIL, R_N };

static int write_manifest(const char *path, int step, const exec_model *md, const exec_ckpt_ctx *ctx,
                          const int64_t *rec, int nranks)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const spec_model *m = &md->m;
    const spec_layout *l = &md->l;
    fprintf(f, "triad checkpoint 2\nstep %d\nglobal_batch %lld\n", step, (long long)ctx->global_batch);
    fprintf(f, "model layers=%lld,hidden=%lld,heads=%lld,ffn=%lld,vocab=%lld,seq=%lld\n", (long long)m->layers,
            (long long)m->hidden, (long long)m->heads, (long long)m->ffn, (long long)m->vocab, (long long)m->seq);
    fprintf(f, "layout %d %d %d %d\n", l->dp, l->tp, l->pp, l->zero);
    for (int r = 0; r < nranks; r++) {
        const int64_t *x = rec + (size_t)r * R_N;
        if (x[R_BYTES] > 0)
            fprintf(f, "shard rank%lld.bin %lld %lld %lld %lld %lld %lld %lld %08llx\n", (long long)x[R_RANK],
                    (long long)x[R_TP], (long long)x[R_PP], (long long)x[R_DP], (long long)x[R_HASP],
                    (long long)x[R_LO], (long long)x[R_HI], (long long)x[R_BYTES], (unsigned long long)x[R_CRC]);
    }
    int rc = 0;
    for (int st = 0; st < l->pp && rc == 0; st++) {
        exec_param *p = NULL;
        int np = exec_param_table(m, l, st, &p);
        if (np < 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < np; i++) {
            int64_t g[2];
            exec_param_global_shape(p[i].shape.name, &p[i].shape, l->tp, g);
            fprintf(f, "tensor %d %s %d %lld %d %lld %lld %lld %lld\n", st, p[i].shape.name, p[i].layer,
                    (long long)p[i].offset, p[i].shape.ndim, (long long)p[i].shape.dims[0],
                    (long long)(p[i].shape.ndim == 2 ? p[i].shape.dims[1] : 1), (long long)g[0], (long long)g[1]);
        }
        free(p);
    }
    if (fflush(f) || fsync(fileno(f)))
        rc = -1;
    if (fclose(f))
        rc = -1;
    return rc;
}

int exec_ckpt_save(const char *dir, int step, const exec_model *md, const exec_ckpt_ctx *ctx, int keep,
                   char err[SPEC_ERR_LEN])
{
    char tmp[4096], fin[4096], path[4200];
    snprintf(tmp, sizeof tmp, "%s/step_%d.tmp", dir, step);
    snprintf(fin, sizeof fin, "%s/step_%d", dir, step);
    int64_t fail = 0;
    if (ctx->rank == 0) {
        mkdir(dir, 0755);
        rm_tree(tmp);
        if (mkdir(tmp, 0755)) {
            snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot create '%s': %s", tmp, strerror(errno));
            fail = 1;
        }
    }
    if (any_failed(ctx, fail)) {
        if (ctx->rank != 0)
            snprintf(err, SPEC_ERR_LEN, "checkpoint: rank 0 could not create '%s'", tmp);
        return -1;
    }

    /* my shard: parameters once per (tp, pp) rank, moments where I hold
     * them alone */
    int has_params = ctx->dp_rank == 0;
    int has_moments = ctx->moments_sharded || ctx->dp_rank == 0;
    int64_t nm = has_moments ? ctx->hi - ctx->lo : 0;
    size_t bytes[3] = {has_params ? sizeof(float) * (size_t)md->n_params : 0, sizeof(float) * (size_t)nm,
                       sizeof(float) * (size_t)nm};
    const void *bufs[3] = {md->params, ctx->m, ctx->v};
    void *host[3] = {NULL, NULL, NULL}; /* device backends: the shard copied out first */
    for (int i = 0; i < 3 && !exec_backend_is_host(); i++)
        if (bytes[i]) {
            host[i] = malloc(bytes[i]);
            if (!host[i]) {
                snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot allocate %zu bytes to copy the shard out", bytes[i]);
                for (int j = 0; j < i; j++)
                    free(host[j]);
                return -1;
            }
            exec_backend()->to_host(host[i], bufs[i], (int64_t)bytes[i]);
            bufs[i] = host[i];
        }
    int64_t rec[R_N] = {ctx->rank, md->tp_rank, md->pp_rank, ctx->dp_rank, has_params,
                        has_moments ? ctx->lo : 0, has_moments ? ctx->hi : 0,
                        (int64_t)(bytes[0] + bytes[1] + bytes[2]), 0, 0};
    if (rec[R_BYTES] > 0) {
        uint32_t crc = 0;
        snprintf(path, sizeof path, "%s/rank%d.bin", tmp, ctx->rank);
        if (write_synced(path, bufs, bytes, 3, &crc)) {
            snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot write '%s': %s", path, strerror(errno));
            rec[R_FAIL] = 1;
        }
        rec[R_CRC] = crc;
    }
    for (int i = 0; i < 3; i++)
        free(host[i]);
    int nranks = ctx->world ? comm_group_size(ctx->world) : 1;
    int64_t *all = malloc(sizeof(int64_t) * R_N * (size_t)nranks);
    if (ctx->world)
        comm_allgather(ctx->world, rec, all, R_N, COMM_I64);
    else
        memcpy(all, rec, sizeof rec);
    fail = 0;
    for (int r = 0; r < nranks; r++)
        fail |= all[(size_t)r * R_N + R_FAIL] != 0;
    if (fail && !rec[R_FAIL])
        snprintf(err, SPEC_ERR_LEN, "checkpoint: another rank could not write its shard of step %d", step);

    /* the manifest, last: what makes the checkpoint whole */
    if (!fail && ctx->rank == 0) {
        snprintf(path, sizeof path, "%s/MANIFEST", tmp);
        if (write_manifest(path, step, md, ctx, all, nranks)) {
            snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot write '%s'", path);
            fail = 1;
        } else {
            rm_tree(fin);
            if (rename(tmp, fin)) {
                snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot rename '%s': %s", tmp, strerror(errno));
                fail = 1;
            }
            int dfd = open(dir, O_RDONLY);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            /* only now, with a newer one complete, drop the oldest */
            int steps[4096];
            int k = list_steps(dir, steps, 4096);
            for (int i = keep; i < k && !fail; i++) {
                snprintf(path, sizeof path, "%s/step_%d", dir, steps[i]);
                rm_tree(path);
            }
        }
    }
    free(all);
    /* rank 0's verdict reaches everyone */
    if (any_failed(ctx, ctx->rank == 0 ? fail : 0) && !fail) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: rank 0 could not complete step %d", step);
        fail = 1;
    }
    return fail ? -1 : 0;
}

/* ---- loading ---------------------------------------------------------------------- */

typedef struct {
    const char *dir; /* the step folder */
    ckpt_manifest *mf;
    int64_t *stage_params; /* (pp) elements of each saved stage's flat vector */
    char *err;
} loader;

/* Open shard s and check its size and CRC, once; the file stays open for
 * the reads that follow (closed by close_shards). */
static int verify_shard(loader *ld, ckpt_shard *s)
{
    if (s->verified)
        return 0;
    char fp[4400];
    snprintf(fp, sizeof fp, "%s/%s", ld->dir, s->file);
    int fd = open(fp, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || (int64_t)st.st_size != s->bytes) {
        snprintf(ld->err, SPEC_ERR_LEN, "checkpoint: '%s' is missing or truncated (expected %lld bytes)", fp,
                 (long long)s->bytes);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    static unsigned char buf[1 << 20];
    uint32_t crc = 0;
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0)
        crc = exec_crc32(crc, buf, (size_t)got);
    if (got < 0 || crc != s->crc) {
        snprintf(ld->err, SPEC_ERR_LEN, "checkpoint: '%s' fails its checksum (corrupted); refusing to resume", fp);
        close(fd);
        return -1;
    }
    s->fd = fd;
    s->verified = 1;
    return 0;
}

static void close_shards(ckpt_manifest *mf)
{
    for (int i = 0; i < mf->n_shards; i++)
        if (mf->shards[i].verified)
            close(mf->shards[i].fd);
}

static int read_floats(const ckpt_shard *s, int64_t at, float *dst, int64_t n)
{
    size_t want = sizeof(float) * (size_t)n;
    return pread(s->fd, dst, want, (off_t)(sizeof(float) * (size_t)at)) == (ssize_t)want ? 0 : -1;
}

/* Elements [a, b) of saved stage st, tp rank r: which 0 = parameters, 1 =
 * m, 2 = v. Returns the number of elements found (b - a when whole), or -1. */
static int64_t read_range(loader *ld, int which, int r, int st, int64_t a, int64_t b, float *dst)
{
    int64_t found = 0;
    for (int i = 0; i < ld->mf->n_shards; i++) {
        ckpt_shard *s = &ld->mf->shards[i];
        if (s->tp_rank != r || s->pp_rank != st)
            continue;
        int64_t np = s->has_params ? ld->stage_params[st] : 0;
        int64_t lo = which == 0 ? 0 : s->lo, hi = which == 0 ? np : s->hi;
        int64_t x = a > lo ? a : lo, y = b < hi ? b : hi;
        if (x >= y)
            continue;
        int64_t at = which == 0 ? x : np + (which == 2 ? s->hi - s->lo : 0) + (x - s->lo);
        if ((at + (y - x)) * (int64_t)sizeof(float) > s->bytes) {
            snprintf(ld->err, SPEC_ERR_LEN, "checkpoint: %s/MANIFEST: shard %s is smaller than its ranges", ld->dir,
                     s->file);
            return -1;
        }
        if (verify_shard(ld, s))
            return -1;
        if (read_floats(s, at, dst + (x - a), y - x)) {
            snprintf(ld->err, SPEC_ERR_LEN, "checkpoint: cannot read '%s/%s'", ld->dir, s->file);
            return -1;
        }
        found += y - x;
        if (which == 0)
            break; /* one copy of the parameters is enough */
    }
    return found;
}

static const ckpt_tensor *find_tensor(const ckpt_manifest *mf, const char *name, int layer)
{
    int tied = !strcmp(name, "wte") || !strcmp(name, "wte_head"); /* the two copies are equal */
    for (int i = 0; i < mf->n_tensors; i++) {
        const ckpt_tensor *t = &mf->tensors[i];
        if (t->layer == layer &&
            (!strcmp(t->name, name) || (tied && (!strcmp(t->name, "wte") || !strcmp(t->name, "wte_head")))))
            return t;
    }
    return NULL;
}

/* Fill this rank's slice of one tensor (parameters and the moments it
 * holds) from the saved shards. */
static int load_tensor(loader *ld, exec_model *md, const exec_ckpt_ctx *ctx, const exec_param *q)
{
    const ckpt_manifest *mf = ld->mf;
    const char *name = q->shape.name;
    const ckpt_tensor *t = find_tensor(mf, name, q->layer);
    int64_t g[2];
    exec_param_global_shape(name, &q->shape, md->l.tp, g);
    if (!t || t->gdims[0] != g[0] || t->gdims[1] != g[1]) {
        snprintf(ld->err, SPEC_ERR_LEN, "checkpoint: %s/MANIFEST has no tensor %s (block %d) of shape %lldx%lld",
                 ld->dir, name, q->layer, (long long)g[0], (long long)g[1]);
        return -1;
    }
    int64_t whole = g[0] * g[1], saved = t->ldims[0] * t->ldims[1];
    int tp_s = exec_param_tp_sharded(t->name) ? mf->tp : 1; /* replicated: tp rank 0's copy */
    shapes_tensor ts = {0};
    ts.ndim = t->ndim;
    ts.dims[0] = t->ldims[0], ts.dims[1] = t->ldims[1];
    ts.elems = saved;
    float *full = malloc(sizeof(float) * (size_t)whole), *buf = malloc(sizeof(float) * (size_t)saved);
    int rc = full && buf ? 0 : -1;
    for (int which = 0; which < 3 && rc == 0; which++) {
        int64_t a = q->offset, b = q->offset + q->shape.elems; /* my elements of this tensor ... */
        if (which > 0) { /* ... that my moments cover */
            a = a > ctx->lo ? a : ctx->lo;
            b = b < ctx->hi ? b : ctx->hi;
            if (a >= b)
                continue;
        }
        for (int r = 0; r < tp_s && rc == 0; r++) {
            int64_t got = read_range(ld, which, r, t->stage, t->offset, t->offset + saved, buf);
            if (got < 0) {
                rc = -1;
            } else if (got != saved) {
                snprintf(ld->err, SPEC_ERR_LEN, "checkpoint: %s/MANIFEST: the shards hold %lld of %lld %s of %s "
                         "(block %d), tp rank %d", ld->dir, (long long)got, (long long)saved,
                         which == 0 ? "parameters" : "moments", name, q->layer, r);
                rc = -1;
            } else {
                for (int64_t k = 0; k < saved; k++)
                    full[exec_param_global_index(t->name, &ts, md->m.hidden, tp_s, r, k)] = buf[k];
            }
        }
        if (rc)
            break;
        float *dst = which == 0 ? md->params : which == 1 ? ctx->m - ctx->lo : ctx->v - ctx->lo;
        /* this rank's part of the whole tensor, gathered on the host, then
         * copied where the backend keeps it */
        int64_t k0 = a - q->offset, k1 = b - q->offset;
        float *part = malloc(sizeof(float) * (size_t)(k1 - k0 > 0 ? k1 - k0 : 1));
        if (!part) {
            snprintf(ld->err, SPEC_ERR_LEN, "checkpoint: out of memory loading %s", name);
            rc = -1;
            break;
        }
        for (int64_t k = k0; k < k1; k++)
            part[k - k0] = full[exec_param_global_index(name, &q->shape, md->m.hidden, md->l.tp, md->tp_rank, k)];
        exec_backend()->to_device(dst + q->offset + k0, part, (int64_t)sizeof(float) * (k1 - k0));
        free(part);
    }
    free(full);
    free(buf);
    return rc;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap + 1);
    size_t got;
    while (s && (got = fread(s + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *t = realloc(s, 2 * cap + 1);
            if (!t) {
                free(s);
                s = NULL;
                break;
            }
            s = t, cap *= 2;
        }
    }
    fclose(f);
    if (s)
        s[len] = 0;
    *n = len;
    return s;
}

int exec_ckpt_load_latest(const char *dir, exec_model *md, const exec_ckpt_ctx *ctx, int *step,
                          char err[SPEC_ERR_LEN])
{
    int steps[4096];
    int k = list_steps(dir, steps, 4096);
    if (k == 0)
        return 1;
    char sdir[4096], path[4200];
    snprintf(sdir, sizeof sdir, "%s/step_%d", dir, steps[0]);
    snprintf(path, sizeof path, "%s/MANIFEST", sdir);
    size_t n = 0;
    char *text = slurp(path, &n);
    if (!text) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: cannot read '%s'", path);
        return -1;
    }
    ckpt_manifest mf;
    int rc = ckpt_manifest_parse(text, n, &mf, err);
    free(text);
    if (rc) {
        char why[SPEC_ERR_LEN];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, SPEC_ERR_LEN, "checkpoint: %s: %s", path, why);
        return -1;
    }
    const spec_model *m = &md->m;
    if (mf.step != steps[0]) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: '%s' says step %d, its folder step %d", path, mf.step, steps[0]);
        rc = -1;
    } else if (mf.model[0] != m->layers || mf.model[1] != m->hidden || mf.model[2] != m->heads ||
               mf.model[3] != m->ffn || mf.model[4] != m->vocab || mf.model[5] != m->seq) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: '%s' holds a model with layers=%lld,hidden=%lld,heads=%lld,"
                 "ffn=%lld,vocab=%lld,seq=%lld; this run's model differs", path, (long long)mf.model[0],
                 (long long)mf.model[1], (long long)mf.model[2], (long long)mf.model[3], (long long)mf.model[4],
                 (long long)mf.model[5]);
        rc = -1;
    } else if (mf.global_batch != ctx->global_batch) {
        snprintf(err, SPEC_ERR_LEN, "checkpoint: '%s' was trained with global batch %lld; resuming needs the same "
                 "(this run: %lld)", path, (long long)mf.global_batch, (long long)ctx->global_batch);
        rc = -1;
    }
    loader ld = {sdir, &mf, calloc((size_t)mf.pp, sizeof(int64_t)), err};
    for (int i = 0; i < mf.n_tensors; i++) {
        const ckpt_tensor *t = &mf.tensors[i];
        int64_t end = t->offset + t->ldims[0] * t->ldims[1];
        if (end > ld.stage_params[t->stage])
            ld.stage_params[t->stage] = end;
    }
    for (int i = 0; i < md->n_p && rc == 0; i++)
        rc = load_tensor(&ld, md, ctx, &md->p[i]);
    free(ld.stage_params);
    close_shards(&mf);
    ckpt_manifest_free(&mf);
    if (rc == 0)
        *step = steps[0];
    return rc;
}
