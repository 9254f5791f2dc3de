/* cmd_plan.c — `triad plan`: search every layout of a job, print the best,
 * write the chosen plan, emit Megatron-LM flags or a Slurm script, explain
 * what was rejected and why. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cmds.h"
#include "../common/log.h"
#include "../common/planfile.h"
#include "../costmodel/simulate_out.h"
#include "search.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: triad plan --model M --cluster C --gpus N --global-batch B\n"
            "                  [--top K] [--format table|csv] [--out plan.ini] [--force]\n"
            "                  [--emit megatron|slurm] [--explain] [--layout L] [--profile FILE]\n"
            "                  [--max-mbs N] [--no-milp]\n"
            "\n"
            "Searches every layout of N devices (dp*tp*pp = N, micro-batch sizes, schedules,\n"
            "recomputation, ZeRO stage, sequence parallelism), ranks them by predicted step\n"
            "time, re-ranks the best with the event simulator, and prints the top K.\n"
            "  --out FILE      write the best layout as a plan file (refuses to overwrite\n"
            "                  without --force); run it with: mpirun -np N triad train --plan FILE\n"
            "  --emit megatron print the equivalent Megatron-LM flags; slurm: a batch script\n"
            "  --explain       list rejected layouts by reason, in numbers; with --layout L,\n"
            "                  compare that layout with the recommended one term by term\n");
}

static const char *REJ_NAMES[PLAN_REJ_COUNT] = {
    "tp does not divide heads", "tp does not divide ffn", "tp does not divide vocab",
    "pp exceeds layers", "batch / layout mismatch", "interleaving not possible",
    "sp needs tp | seq", "does not fit device memory", "tp wider than a node"};

static void print_table(const plan_search_opts *o, const plan_result *r, int top)
{
    printf("# triad plan: %s on %d x %s (%d per node), global batch %lld, seq %lld\n", o->model.name,
           o->gpus, spec_gpu_name(o->cluster.gpu), o->cluster.gpus_per_node,
           (long long)o->global_batch, (long long)o->model.seq);
    printf("# %ld layouts considered, %ld predicted, %d fit in %.0f GB; searched in %.3f s\n",
           r->enumerated, r->evaluated, r->n, o->cluster.mem_gb, r->seconds);
    int n_sim = 0;
    for (int i = 0; i < r->n; i++)
        n_sim += r->cand[i].has_sim;
    if (n_sim == r->n && cost_profile_shares_cores(o->profile))
        printf("# step time: 'sim' = event simulator, every layout (the profile's ranks shared its cores, which the "
               "closed form cannot follow); MFU counts model FLOPs only\n\n");
    else
        printf("# step time: 'sim' = event simulator (the %d best by closed form), 'cf' = closed form;"
               " MFU counts model FLOPs only\n\n", n_sim);
    printf("%4s %5s %3s %4s %4s %-11s %-9s %4s %2s %-4s %-8s %9s %4s %11s %7s %6s %9s %7s %s\n", "rank", "dp",
           "tp", "pp", "mbs", "schedule", "recompute", "zero", "sp", "prec", "attn", "step s", "src", "tokens/s",
           "TFLOP/s", "MFU%", "mem GB", "bubble%", "stages");
    for (int i = 0; i < r->n && i < top; i++) {
        const plan_candidate *c = &r->cand[i];
        const spec_layout *l = &c->layout;
        const cost_result *x = c->has_sim ? &c->sim : &c->cf;
        char sched[24], stages[64] = "uniform";
        if (l->schedule == SPEC_SCHED_INTERLEAVED)
            snprintf(sched, sizeof sched, "interl.v%d", l->v);
        else
            snprintf(sched, sizeof sched, "%s", spec_schedule_name(l->schedule));
        if (l->n_stage_layers > 0) {
            int n = 0;
            for (int s = 0; s < l->n_stage_layers && n < (int)sizeof stages - 8; s++)
                n += snprintf(stages + n, sizeof stages - n, "%s%d", s ? ":" : "", l->stage_layers[s]);
            if (c->milp_stages)
                snprintf(stages + n, sizeof stages - n, " (MILP)");
        }
        printf("%4d %5d %3d %4d %4d %-11s %-9s %4d %2d %-4s %-8s %9.3f %4s %11.0f %7.1f %6.1f %4.1f/%-4.0f %7.1f "
               "%s\n",
               i + 1, l->dp, l->tp, l->pp, l->mbs, sched, spec_recompute_name(l->recompute), l->zero, l->sp,
               spec_precision_name(l->precision), spec_attn_name(l->flash), x->step_time_s,
               c->has_sim ? "sim" : "cf", x->tokens_per_s, x->tflops_per_gpu,
               100 * x->mfu, x->mem_peak_bytes / 1e9, o->cluster.mem_gb, 100 * x->bubble_frac, stages);
    }
}

static void print_csv(const plan_result *r, int top)
{
    printf("rank,");
    simulate_out_csv_header(stdout);
    for (int i = 0; i < r->n && i < top; i++) {
        printf("%d,", i + 1);
        simulate_out_csv_row(stdout, &r->cand[i].layout, &r->cand[i].cf,
                             r->cand[i].has_sim ? &r->cand[i].sim : NULL);
    }
}

static void emit_megatron(const plan_search_opts *o, const spec_layout *l)
{
    const spec_model *m = &o->model;
    printf("# Megatron-LM flags for the recommended layout (pretrain_gpt.py)\n");
    printf("--num-layers %lld --hidden-size %lld --num-attention-heads %lld --ffn-hidden-size %lld \\\n",
           (long long)m->layers, (long long)m->hidden, (long long)m->heads, (long long)m->ffn);
    printf("--seq-length %lld --max-position-embeddings %lld \\\n", (long long)m->seq, (long long)m->seq);
    printf("--tensor-model-parallel-size %d --pipeline-model-parallel-size %d \\\n", l->tp, l->pp);
    if (l->schedule == SPEC_SCHED_INTERLEAVED)
        printf("--num-layers-per-virtual-pipeline-stage %lld \\\n", (long long)(m->layers / (l->pp * l->v)));
    printf("--micro-batch-size %d --global-batch-size %lld \\\n", l->mbs, (long long)o->global_batch);
    if (l->sp)
        printf("--sequence-parallel \\\n");
    if (l->recompute == SPEC_RECOMPUTE_FULL)
        printf("--recompute-granularity full --recompute-method uniform --recompute-num-layers 1 \\\n");
    else if (l->recompute == SPEC_RECOMPUTE_SELECTIVE)
        printf("--recompute-granularity selective \\\n");
    if (l->flash)
        printf("--use-flash-attn \\\n");
    if (l->zero >= 1)
        printf("--use-distributed-optimizer \\\n");
    if (l->zero >= 2)
        printf("# (ZeRO-%d has no Megatron-LM equivalent beyond the distributed optimizer)\n", l->zero);
    printf("%s\n", l->precision == SPEC_PREC_BF16 ? "--bf16" : "# fp32: no precision flag");
}

static void emit_slurm(const plan_search_opts *o, const spec_layout *l, const char *plan_path)
{
    int nodes = (o->gpus + o->cluster.gpus_per_node - 1) / o->cluster.gpus_per_node;
    printf("#!/bin/bash\n");
    printf("#SBATCH --job-name=triad-train\n#SBATCH --nodes=%d\n#SBATCH --ntasks-per-node=%d\n",
           nodes, o->cluster.gpus_per_node < o->gpus ? o->cluster.gpus_per_node : o->gpus);
    printf("#SBATCH --gpus-per-node=%d\n#SBATCH --exclusive\n", o->cluster.gpus_per_node);
    printf("# layout: dp=%d tp=%d pp=%d mbs=%d (written by triad plan)\n", l->dp, l->tp, l->pp, l->mbs);
    printf("mpirun -np %d --map-by ppr:%d:node triad train --plan %s --data \"$DATA\" --steps \"${STEPS:-1000}\" "
           "--metrics metrics-$SLURM_JOB_ID.csv\n",
           o->gpus, o->cluster.gpus_per_node < o->gpus ? o->cluster.gpus_per_node : o->gpus,
           plan_path ? plan_path : "plan.ini");
}

static void explain(const plan_search_opts *o, const plan_result *r, const spec_layout *given)
{
    printf("\n# rejected layouts, by reason\n");
    for (int k = 0; k < PLAN_REJ_COUNT; k++)
        if (r->rej.count[k])
            printf("  %8ld  %-28s e.g. %s\n", r->rej.count[k], REJ_NAMES[k], r->rej.example[k]);
    if (r->n > 0) {
        const plan_candidate *b = &r->cand[0];
        if (b->milp_stages)
            printf("\n# the MILP moved stage boundaries: %.4f s with uniform stages -> %.4f s\n",
                   b->uniform_step_s, b->cf.step_time_s);
    }
    if (!given || r->n == 0)
        return;
    spec_cluster c = cost_cluster_for_layout(&o->cluster, given);
    cost_result g;
    char err[SPEC_ERR_LEN];
    if (cost_predict(&o->model, &c, given, o->global_batch, o->profile, &g, err)) {
        printf("\n# the layout you gave cannot run: %s\n", err);
        return;
    }
    const cost_result *b = &r->cand[0].cf;
    char lg[128], lb[128];
    spec_layout_format(given, lg, sizeof lg);
    spec_layout_format(&r->cand[0].layout, lb, sizeof lb);
    printf("\n# your layout vs the recommended one (closed form, seconds per step)\n");
    printf("  %-28s %14s %14s %10s\n", "", "yours", "recommended", "diff");
    printf("  %-28s %14s %14s\n", "layout", lg, lb);
    const char *nm[] = {"compute (fwd+bwd+recompute)", "tensor-parallel comm", "pipeline sends",
                        "data-parallel comm, exposed", "pipeline bubble", "optimizer step", "step time"};
    double x[] = {g.compute_s, g.tp_comm_s, g.pp_comm_s, g.dp_comm_exposed_s, g.bubble_s, g.optimizer_s, g.step_time_s};
    double y[] = {b->compute_s, b->tp_comm_s, b->pp_comm_s, b->dp_comm_exposed_s, b->bubble_s, b->optimizer_s, b->step_time_s};
    for (int i = 0; i < 7; i++)
        printf("  %-28s %14.4f %14.4f %+10.4f\n", nm[i], x[i], y[i], x[i] - y[i]);
    printf("  %-28s %14.1f %14.1f\n", "memory peak (GB)", g.mem_peak_bytes / 1e9, b->mem_peak_bytes / 1e9);
    printf("  %-28s %14s\n", "fits", g.fits ? "yes" : "NO");
}

int plan_cmd_plan(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"cluster", required_argument, 0, 'c'},
        {"gpus", required_argument, 0, 'g'},    {"global-batch", required_argument, 0, 'b'},
        {"top", required_argument, 0, 'k'},     {"format", required_argument, 0, 'f'},
        {"out", required_argument, 0, 'o'},     {"force", no_argument, 0, 'F'},
        {"emit", required_argument, 0, 'e'},    {"explain", no_argument, 0, 'x'},
        {"layout", required_argument, 0, 'l'},  {"profile", required_argument, 0, 'p'},
        {"max-mbs", required_argument, 0, 'M'}, {"no-milp", no_argument, 0, 'N'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *model_s = NULL, *cluster_s = NULL, *gpus_s = NULL, *batch_s = NULL, *top_s = "10";
    const char *format = "table", *out_s = NULL, *emit_s = NULL, *layout_s = NULL, *profile_s = NULL;
    const char *maxmbs_s = NULL;
    int force = 0, do_explain = 0, milp = 1;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model_s = optarg; break;
        case 'c': cluster_s = optarg; break;
        case 'g': gpus_s = optarg; break;
        case 'b': batch_s = optarg; break;
        case 'k': top_s = optarg; break;
        case 'f': format = optarg; break;
        case 'o': out_s = optarg; break;
        case 'F': force = 1; break;
        case 'e': emit_s = optarg; break;
        case 'x': do_explain = 1; break;
        case 'l': layout_s = optarg; break;
        case 'p': profile_s = optarg; break;
        case 'M': maxmbs_s = optarg; break;
        case 'N': milp = 0; break;
        case 'h': usage(stdout); return TRIAD_EXIT_OK;
        default:
            log_msg("plan: unknown or incomplete option '%s' (see triad plan --help)", argv[optind - 1]);
            return TRIAD_EXIT_INPUT;
        }
    }
    if (optind < argc) {
        log_msg("plan: unexpected argument '%s'", argv[optind]);
        return TRIAD_EXIT_INPUT;
    }
    if (!model_s || !cluster_s || !gpus_s || !batch_s) {
        log_msg("plan: missing %s (see triad plan --help)",
                !model_s ? "--model" : !cluster_s ? "--cluster" : !gpus_s ? "--gpus" : "--global-batch");
        return TRIAD_EXIT_INPUT;
    }
    if (strcmp(format, "table") && strcmp(format, "csv")) {
        log_msg("plan: --format '%s' is not one of table, csv", format);
        return TRIAD_EXIT_INPUT;
    }
    if (emit_s && strcmp(emit_s, "megatron") && strcmp(emit_s, "slurm")) {
        log_msg("plan: --emit '%s' is not one of megatron, slurm", emit_s);
        return TRIAD_EXIT_INPUT;
    }
    typedef struct {
        const char *name, *s;
        long long lo, hi, *out;
    } num_opt;
    long long gpus = 0, batch = 0, top = 0, maxmbs = 16;
    num_opt nums[4] = {{"--gpus", gpus_s, 1, 1 << 20, &gpus},
                       {"--global-batch", batch_s, 1, 1LL << 40, &batch},
                       {"--top", top_s, 1, 1 << 20, &top},
                       {"--max-mbs", maxmbs_s, 1, 1 << 16, &maxmbs}};
    for (int i = 0; i < 4; i++) {
        if (!nums[i].s)
            continue;
        char *end = NULL;
        long long v = strtoll(nums[i].s, &end, 10);
        if (!*nums[i].s || *end || v < nums[i].lo || v > nums[i].hi) {
            log_msg("plan: %s '%s' is not a positive integer", nums[i].name, nums[i].s);
            return TRIAD_EXIT_INPUT;
        }
        *nums[i].out = v;
    }
    char err[SPEC_ERR_LEN];
    plan_search_opts o;
    plan_search_opts_default(&o);
    if (spec_model_parse(model_s, &o.model, err) || spec_cluster_parse(cluster_s, &o.cluster, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    spec_layout given;
    if (layout_s && spec_layout_parse(layout_s, &given, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    if (layout_s && (int64_t)given.dp * given.tp * given.pp != gpus) {
        log_msg("layout: dp*tp*pp = %d but --gpus is %lld", given.dp * given.tp * given.pp, gpus);
        return TRIAD_EXIT_INPUT;
    }
    cost_profile *prof = NULL;
    if (profile_s && cost_profile_load(profile_s, &prof, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    o.profile = prof ? prof : cost_profile_builtin(o.cluster.gpu);
    o.gpus = (int)gpus;
    o.global_batch = batch;
    o.top = (int)top;
    o.sim_top = top > 10 ? (int)top : 10;
    o.max_mbs = (int)maxmbs;
    o.milp = milp;
    plan_result r;
    if (plan_search(&o, &r, err)) {
        log_msg("%s", err);
        cost_profile_free(prof);
        return TRIAD_EXIT_FAIL;
    }
    int status = TRIAD_EXIT_OK;
    if (r.n == 0) {
        if (r.rej.count[PLAN_REJ_MEMORY])
            log_msg("plan: no layout fits: %s", r.rej.example[PLAN_REJ_MEMORY]);
        else
            log_msg("plan: no layout of %lld devices can run this job (try --explain)", gpus);
        if (do_explain)
            explain(&o, &r, layout_s ? &given : NULL);
        plan_result_free(&r);
        cost_profile_free(prof);
        return TRIAD_EXIT_INPUT;
    }
    if (emit_s && !strcmp(emit_s, "megatron"))
        emit_megatron(&o, &r.cand[0].layout);
    else if (emit_s)
        emit_slurm(&o, &r.cand[0].layout, out_s);
    else if (!strcmp(format, "csv"))
        print_csv(&r, (int)top);
    else
        print_table(&o, &r, (int)top);
    if (do_explain)
        explain(&o, &r, layout_s ? &given : NULL);
    if (out_s) {
        planfile pf;
        memset(&pf, 0, sizeof pf);
        pf.model = o.model;
        pf.cluster = o.cluster;
        pf.cluster.nodes = (o.gpus + o.cluster.gpus_per_node - 1) / o.cluster.gpus_per_node;
        pf.layout = r.cand[0].layout;
        pf.global_batch = batch;
        const cost_result *x = r.cand[0].has_sim ? &r.cand[0].sim : &r.cand[0].cf;
        pf.pred_step_time_s = x->step_time_s;
        pf.pred_mem_peak_bytes = (double)x->mem_peak_bytes;
        pf.pred_tokens_per_s = x->tokens_per_s;
        char comment[512];
        time_t now = time(NULL);
        char date[32];
        strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
        snprintf(comment, sizeof comment,
                 "triad plan, written %s\nmodel %s, %lld devices, global batch %lld\n"
                 "run it: mpirun -np %lld triad train --plan %s --data ... --steps ...",
                 date, o.model.name, gpus, batch, gpus, out_s);
        if (planfile_write(out_s, &pf, comment, force, err)) {
            log_msg("%s", err);
            status = TRIAD_EXIT_INPUT;
        } else {
            fprintf(stderr, "triad: wrote %s\n", out_s);
        }
    }
    plan_result_free(&r);
    cost_profile_free(prof);
    return status;
}
