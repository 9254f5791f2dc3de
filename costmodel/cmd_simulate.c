/* cmd_simulate.c — `triad simulate`: one layout's predicted step time and
 * memory, from the closed form and the event simulator, as a table for a
 * person, CSV or JSON. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cmds.h"
#include "../common/log.h"
#include "../common/planfile.h"
#include "cost.h"
#include "simulate_out.h"
#include "sim.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: triad simulate --model M --cluster C --global-batch N --layout L\n"
            "                      [--format table|csv|json] [--profile FILE] [--precision bf16|fp32]\n"
            "                      [--trace trace.json] [--svg timeline.svg] [--plan plan.ini]\n"
            "\n"
            "Predicts one layout: step time (closed form and event simulator), throughput,\n"
            "MFU / HFU, memory per pipeline stage and whether it fits the device.\n"
            "  --model M        preset, preset,key=value..., key=value list or INI file\n"
            "  --cluster C      the same for the cluster; nodes default to what the layout needs\n"
            "  --global-batch N sequences per step\n"
            "  --layout L       tp=,pp=,dp=,mbs=,schedule=gpipe|1f1b|interleaved,v=,\n"
            "                   recompute=none|selective|full,zero=0..3,sp=0|1,precision=,stages=a:b:..\n"
            "  --plan FILE      take model, cluster, layout and batch from a plan file\n"
            "  --trace FILE     write the simulated timeline (Chrome trace JSON, opens in Perfetto)\n"
            "  --svg FILE       draw the simulated timeline as an SVG picture\n");
}

int cost_cmd_simulate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"cluster", required_argument, 0, 'c'},
        {"global-batch", required_argument, 0, 'b'}, {"layout", required_argument, 0, 'l'},
        {"format", required_argument, 0, 'f'},  {"profile", required_argument, 0, 'p'},
        {"precision", required_argument, 0, 'P'}, {"trace", required_argument, 0, 't'},
        {"svg", required_argument, 0, 's'},     {"plan", required_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *model_s = NULL, *cluster_s = NULL, *batch_s = NULL, *layout_s = NULL;
    const char *format = "table", *profile_s = NULL, *prec_s = NULL, *trace_s = NULL, *svg_s = NULL;
    const char *plan_s = NULL;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model_s = optarg; break;
        case 'c': cluster_s = optarg; break;
        case 'b': batch_s = optarg; break;
        case 'l': layout_s = optarg; break;
        case 'f': format = optarg; break;
        case 'p': profile_s = optarg; break;
        case 'P': prec_s = optarg; break;
        case 't': trace_s = optarg; break;
        case 's': svg_s = optarg; break;
        case 'n': plan_s = optarg; break;
        case 'h': usage(stdout); return TRIAD_EXIT_OK;
        default:
            log_msg("simulate: unknown or incomplete option '%s' (see triad simulate --help)",
                    argv[optind - 1]);
            return TRIAD_EXIT_INPUT;
        }
    }
    if (optind < argc) {
        log_msg("simulate: unexpected argument '%s'", argv[optind]);
        return TRIAD_EXIT_INPUT;
    }
    if (strcmp(format, "table") && strcmp(format, "csv") && strcmp(format, "json")) {
        log_msg("simulate: --format '%s' is not one of table, csv, json", format);
        return TRIAD_EXIT_INPUT;
    }
    char err[SPEC_ERR_LEN];
    spec_model m;
    spec_cluster c;
    spec_layout l;
    int64_t batch = 0;
    if (plan_s) {
        planfile pf;
        if (planfile_read(plan_s, &pf, err)) {
            log_msg("%s", err);
            return TRIAD_EXIT_INPUT;
        }
        m = pf.model;
        c = pf.cluster;
        l = pf.layout;
        batch = pf.global_batch;
    }
    if (!plan_s && (!model_s || !cluster_s || !batch_s || !layout_s)) {
        log_msg("simulate: missing %s (see triad simulate --help)",
                !model_s ? "--model" : !cluster_s ? "--cluster" : !batch_s ? "--global-batch" : "--layout");
        return TRIAD_EXIT_INPUT;
    }
    if (model_s && spec_model_parse(model_s, &m, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    if (cluster_s && spec_cluster_parse(cluster_s, &c, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    if (layout_s && spec_layout_parse(layout_s, &l, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    if (batch_s) {
        char *end = NULL;
        long long b = strtoll(batch_s, &end, 10);
        if (!*batch_s || *end || b <= 0 || b > (1LL << 40)) {
            log_msg("simulate: --global-batch '%s' is not a positive integer", batch_s);
            return TRIAD_EXIT_INPUT;
        }
        batch = b;
    }
    if (prec_s) {
        int pr = spec_precision_from_name(prec_s);
        if (pr < 0) {
            log_msg("simulate: --precision '%s' is not one of bf16, fp32", prec_s);
            return TRIAD_EXIT_INPUT;
        }
        l.precision = (spec_precision)pr;
    }
    if (spec_layout_check(&l, &m, batch, -1, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    c = cost_cluster_for_layout(&c, &l);

    cost_profile *prof = NULL;
    if (profile_s && cost_profile_load(profile_s, &prof, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    const cost_profile *p = prof ? prof : cost_profile_builtin(c.gpu);

    cost_result cf, sr;
    if (cost_predict(&m, &c, &l, batch, p, &cf, err)) {
        log_msg("%s", err);
        cost_profile_free(prof);
        return TRIAD_EXIT_INPUT;
    }
    cost_sim_opts so;
    cost_sim_opts_default(&so);
    so.record_events = trace_s || svg_s;
    cost_sim *sim = NULL;
    int status = TRIAD_EXIT_OK;
    if (cost_sim_run(&m, &c, &l, batch, p, &so, &sim, &sr, err)) {
        log_msg("%s", err);
        cost_profile_free(prof);
        return TRIAD_EXIT_FAIL;
    }
    if (trace_s && cost_sim_write_trace(sim, trace_s, err)) {
        log_msg("%s", err);
        status = TRIAD_EXIT_FAIL;
    }
    if (svg_s && cost_sim_write_svg(sim, svg_s, err)) {
        log_msg("%s", err);
        status = TRIAD_EXIT_FAIL;
    }
    simulate_out_print(stdout, format, &m, &c, &l, batch, p, &cf, &sr, sim);
    if (!cf.fits) {
        log_msg("simulate: the layout does not fit: stage %d needs %.1f GB, device has %.1f GB "
                "(try recompute, zero, more pp or tp; triad plan searches them)",
                cf.mem_peak_stage, cf.mem_peak_bytes / 1e9, c.mem_gb);
        status = TRIAD_EXIT_INPUT;
    }
    cost_sim_free(sim);
    cost_profile_free(prof);
    return status;
}
