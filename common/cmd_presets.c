/* cmd_presets.c — `triad presets`: the built-in models and clusters. */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "log.h"
#include "spec.h"

/* Parameters of a GPT: 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h))
 * (Narayanan et al. 2021, Sec 5.1), generalised to ffn != 4h: per block
 * 4h^2 + 2h*ffn weights plus 9h + ffn biases and LayerNorms, and 2h for the
 * final LayerNorm, which the paper's formula leaves out (so the column is the
 * exact count: 124.48M for gpt2-124m with the padded vocabulary). */
static double params(const spec_model *m)
{
    double h = (double)m->hidden, f = (double)m->ffn, l = (double)m->layers;
    return l * (4 * h * h + 2 * h * f + 9 * h + f) + (double)(m->vocab + m->seq) * h + 2 * h;
}

int spec_cmd_presets(int argc, char **argv)
{
    int csv = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: triad presets [--format table|csv]\n\nLists the built-in models and "
                   "clusters; use their names in --model and --cluster,\noptionally with overrides: "
                   "--model gpt3-175b,seq=4096\n");
            return TRIAD_EXIT_OK;
        } else if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            const char *f = argv[++i];
            if (!strcmp(f, "csv"))
                csv = 1;
            else if (strcmp(f, "table")) {
                log_msg("presets: --format '%s' is not one of table, csv", f);
                return TRIAD_EXIT_INPUT;
            }
        } else {
            log_msg("presets: unknown option '%s' (see triad presets --help)", argv[i]);
            return TRIAD_EXIT_INPUT;
        }
    }
    if (csv) {
        printf("kind,name,layers,hidden,heads,ffn,vocab,seq,params,source\n");
        for (int i = 0; i < spec_model_preset_count(); i++) {
            const spec_model *m = spec_model_preset_at(i);
            printf("model,%s,%lld,%lld,%lld,%lld,%lld,%lld,%.0f,\"%s\"\n", m->name, (long long)m->layers,
                   (long long)m->hidden, (long long)m->heads, (long long)m->ffn, (long long)m->vocab,
                   (long long)m->seq, params(m), spec_model_preset_source(i));
        }
        printf("\nkind,name,gpu,gpus_per_node,mem_gb,peak_tflops,hbm_gbps,intra_gbps,inter_gbps,source\n");
        for (int i = 0; i < spec_cluster_preset_count(); i++) {
            const spec_cluster *c = spec_cluster_preset_at(i);
            printf("cluster,%s,%s,%d,%g,%g,%g,%g,%g,\"%s\"\n", c->name, spec_gpu_name(c->gpu),
                   c->gpus_per_node, c->mem_gb, c->peak_tflops, c->hbm_gbps, c->intra_gbps, c->inter_gbps,
                   spec_cluster_preset_source(i));
        }
        return TRIAD_EXIT_OK;
    }
    printf("models (--model NAME or NAME,key=value,...)\n");
    printf("  %-12s %6s %6s %5s %6s %6s %5s %9s  %s\n", "name", "layers", "hidden", "heads", "ffn", "vocab",
           "seq", "params", "source");
    for (int i = 0; i < spec_model_preset_count(); i++) {
        const spec_model *m = spec_model_preset_at(i);
        double p = params(m);
        char ps[16];
        if (p >= 1e9)
            snprintf(ps, sizeof ps, "%.1fB", p / 1e9);
        else if (p >= 1e6)
            snprintf(ps, sizeof ps, "%.0fM", p / 1e6);
        else
            snprintf(ps, sizeof ps, "%.0fK", p / 1e3);
        printf("  %-12s %6lld %6lld %5lld %6lld %6lld %5lld %9s  %s\n", m->name, (long long)m->layers,
               (long long)m->hidden, (long long)m->heads, (long long)m->ffn, (long long)m->vocab,
               (long long)m->seq, ps, spec_model_preset_source(i));
    }
    printf("\nclusters (--cluster NAME or NAME,key=value,...; GB/s per device per direction)\n");
    printf("  %-14s %-10s %5s %7s %8s %8s %7s %7s\n", "name", "gpu", "/node", "mem GB", "TFLOP/s", "HBM GB/s",
           "intra", "inter");
    for (int i = 0; i < spec_cluster_preset_count(); i++) {
        const spec_cluster *c = spec_cluster_preset_at(i);
        spec_cluster x = *c;
        char err[SPEC_ERR_LEN];
        if (c->gpu == SPEC_GPU_CPU)
            spec_cluster_parse(c->name, &x, err); /* fills this machine's cores */
        printf("  %-14s %-10s %5d %7.1f %8.1f %8.0f %7.0f %7.0f\n", x.name, spec_gpu_name(x.gpu), x.gpus_per_node,
               x.mem_gb, x.peak_tflops, x.hbm_gbps, x.intra_gbps, x.inter_gbps);
        printf("  %-14s   %s\n", "", spec_cluster_preset_source(i));
    }
    return TRIAD_EXIT_OK;
}
