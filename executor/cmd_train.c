/* cmd_train.c — `triad train` and `triad data`. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cmds.h"
#include "../common/log.h"
#include "../common/planfile.h"
#include "data.h"
#include "model.h"
#include "train.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: triad train --model M --layout L --global-batch N --data D --steps K\n"
            "                   [--lr 3e-4] [--warmup W] [--min-lr-frac 0.1] [--weight-decay 0.1]\n"
            "                   [--clip 1.0] [--seed S] [--metrics FILE.csv] [--plan plan.ini]\n"
            "                   [--device auto|cpu|cuda|emu] [--comm auto|mpi|nccl] [--bucket-mb 40]\n"
            "                   [--dump DIR] [--dump-final DIR] [--quiet]\n"
            "                   [--checkpoint-dir DIR --checkpoint-every K [--checkpoint-keep 3]] [--resume]\n"
            "\n"
            "Trains a GPT-2 style model. D is markov:vocab=V,order=K,seed=S (a source of known\n"
            "entropy rate) or a token shard (.bin, see triad data). --plan takes model, layout\n"
            "and batch from a plan file written by triad plan --out. The metrics CSV has\n"
            "step,loss,lr,grad_norm,step_time_s,tokens_per_s,mem_peak_bytes (measured),\n"
            "mem_pred_bytes (triad's memory model) and comm_s (rank 0's time blocked in\n"
            "communication, waits for other ranks included).\n"
            "--dump DIR writes initial weights, the first batches, step-1 gradients and the\n"
            "weights after step 5 for the independent reference (tests/ref/gpt_ref.py).\n"
            "--steps is the whole job: --resume continues from the newest complete\n"
            "checkpoint to the same last step, with the same learning-rate schedule.\n"
            "--exit-after K stops after step K as if the job were killed, --inject-nan K puts\n"
            "a NaN into one gradient at step K (both for testing failure handling).\n"
            "--device cuda trains on the GPU (CUDA build; every rank on the GPU its local rank\n"
            "picks); emu runs the CPU kernels on memory the host may only touch through the\n"
            "backend, to test device code paths without a GPU; auto (the default) is cuda when\n"
            "the build has CUDA and a GPU is visible, else cpu.\n"
            "--comm picks the collectives of parallel layouts: nccl (GPU buffers, one GPU per\n"
            "rank), mpi (host buffers; GPU buffers staged through host memory, so several\n"
            "ranks may share one GPU), auto (the default: nccl where it can run, else mpi).\n"
            "--bucket-mb: data-parallel gradient buckets of this many MB (1e6 bytes); each\n"
            "starts its all-reduce (zero=1: its reduce-scatter to the ZeRO slices) as soon as\n"
            "backward has finished its blocks, under the rest of backward (and, with pp > 1,\n"
            "under the pipeline's last backwards).\n");
}

static int parse_double(const char *name, const char *s, double lo, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo) || v != v || v > 1e30) {
        log_msg("train: %s '%s' is not a number >= %g", name, s, lo);
        return -1;
    }
    *out = v;
    return 0;
}

int exec_cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"layout", required_argument, 0, 'l'},
        {"global-batch", required_argument, 0, 'b'}, {"data", required_argument, 0, 'd'},
        {"steps", required_argument, 0, 's'},     {"lr", required_argument, 0, 'r'},
        {"warmup", required_argument, 0, 'w'},    {"min-lr-frac", required_argument, 0, 'n'},
        {"weight-decay", required_argument, 0, 'y'}, {"clip", required_argument, 0, 'c'},
        {"seed", required_argument, 0, 'S'},      {"metrics", required_argument, 0, 'M'},
        {"plan", required_argument, 0, 'p'},      {"device", required_argument, 0, 'D'},
        {"dump", required_argument, 0, 'u'},      {"quiet", no_argument, 0, 'q'},
        {"dump-final", required_argument, 0, 'F'},
        {"checkpoint-dir", required_argument, 0, 'C'}, {"checkpoint-every", required_argument, 0, 'E'},
        {"checkpoint-keep", required_argument, 0, 'K'}, {"resume", no_argument, 0, 'R'},
        {"exit-after", required_argument, 0, 'X'}, {"inject-nan", required_argument, 0, 'N'},
        {"comm", required_argument, 0, 'O'},      {"bucket-mb", required_argument, 0, 'B'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    exec_train_opts o;
    exec_train_opts_default(&o);
    const char *model_s = NULL, *layout_s = NULL, *plan_s = NULL, *device = "auto";
    long long batch = 0, steps = -1, seed = -1, warmup = 0;
    int have_batch = 0;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model_s = optarg; break;
        case 'l': layout_s = optarg; break;
        case 'b':
            batch = log_opt_long("train", "global-batch", optarg, 1, 1L << 40);
            have_batch = 1;
            break;
        case 'd': o.data = optarg; break;
        case 's': steps = log_opt_long("train", "steps", optarg, 1, INT_MAX); break;
        case 'r':
            if (parse_double("--lr", optarg, 0, &o.lr))
                return TRIAD_EXIT_INPUT;
            break;
        case 'w': warmup = log_opt_long("train", "warmup", optarg, 0, INT_MAX); break;
        case 'n':
            if (parse_double("--min-lr-frac", optarg, 0, &o.min_lr_frac))
                return TRIAD_EXIT_INPUT;
            break;
        case 'y':
            if (parse_double("--weight-decay", optarg, 0, &o.weight_decay))
                return TRIAD_EXIT_INPUT;
            break;
        case 'c':
            if (parse_double("--clip", optarg, 0, &o.clip))
                return TRIAD_EXIT_INPUT;
            break;
        case 'S': seed = log_opt_long("train", "seed", optarg, 0, LONG_MAX); break;
        case 'M': o.metrics_path = optarg; break;
        case 'p': plan_s = optarg; break;
        case 'D': device = optarg; break;
        case 'O':
            if (!exec_comm_name_ok(optarg)) {
                log_msg("train: --comm '%s' is not one of auto, mpi, nccl", optarg);
                return TRIAD_EXIT_INPUT;
            }
            o.comm = optarg;
            break;
        case 'B':
            if (parse_double("--bucket-mb", optarg, 1e-6, &o.bucket_mb))
                return TRIAD_EXIT_INPUT;
            break;
        case 'u': o.dump_dir = optarg; break;
        case 'F': o.final_dir = optarg; break;
        case 'C': o.ckpt_dir = optarg; break;
        case 'R': o.resume = 1; break;
        case 'E':
        case 'K':
        case 'X':
        case 'N': {
            const char *nm = ch == 'E' ? "checkpoint-every" : ch == 'K' ? "checkpoint-keep"
                             : ch == 'X' ? "exit-after" : "inject-nan";
            int v = (int)log_opt_long("train", nm, optarg, 1, INT_MAX);
            *(ch == 'E' ? &o.ckpt_every : ch == 'K' ? &o.ckpt_keep : ch == 'X' ? &o.exit_after : &o.inject_nan) = v;
            break;
        }
        case 'q': o.quiet = 1; break;
        case 'h': usage(stdout); return TRIAD_EXIT_OK;
        default:
            log_msg("train: unknown or incomplete option '%s' (see triad train --help)", argv[optind - 1]);
            return TRIAD_EXIT_INPUT;
        }
    }
    if (optind < argc) {
        log_msg("train: unexpected argument '%s'", argv[optind]);
        return TRIAD_EXIT_INPUT;
    }
    {
        char derr[SPEC_ERR_LEN];
        if (exec_use_device(device, NULL, derr)) {
            log_msg("train: %s", derr);
            return TRIAD_EXIT_INPUT;
        }
    }
    char err[SPEC_ERR_LEN];
    spec_layout_default(&o.layout);
    if (plan_s) {
        planfile pf;
        if (planfile_read(plan_s, &pf, err)) {
            log_msg("%s", err);
            return TRIAD_EXIT_INPUT;
        }
        o.model = pf.model;
        o.layout = pf.layout;
        o.global_batch = pf.global_batch;
    }
    if (!plan_s && (!model_s || !have_batch)) {
        log_msg("train: missing %s (see triad train --help)", !model_s ? "--model" : "--global-batch");
        return TRIAD_EXIT_INPUT;
    }
    if (!o.data || steps < 0) {
        log_msg("train: missing %s (see triad train --help)", !o.data ? "--data" : "--steps");
        return TRIAD_EXIT_INPUT;
    }
    if (model_s && spec_model_parse(model_s, &o.model, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    if (layout_s && spec_layout_parse(layout_s, &o.layout, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    if (have_batch)
        o.global_batch = batch;
    o.steps = (int)steps;
    o.warmup = (int)warmup;
    if (seed >= 0)
        o.seed = (uint64_t)seed;
    if ((o.resume || o.ckpt_every) && !o.ckpt_dir) {
        log_msg("train: --resume and --checkpoint-every need --checkpoint-dir");
        return TRIAD_EXIT_INPUT;
    }
    if (o.dump_dir && o.layout.dp * o.layout.tp * o.layout.pp > 1) {
        log_msg("train: --dump works on one rank (the reference it feeds is single-rank)");
        return TRIAD_EXIT_INPUT;
    }
    /* the world this process runs in, as mpirun tells it */
    const char *ws = getenv("OMPI_COMM_WORLD_SIZE");
    int world = ws ? atoi(ws) : 1;
    int need = o.layout.dp * o.layout.tp * o.layout.pp;
    if (world != need) {
        log_msg("train: the layout needs dp*tp*pp = %d ranks but %d were started", need, world);
        return TRIAD_EXIT_INPUT;
    }
    return exec_train_run(&o);
}

int exec_cmd_data(int argc, char **argv)
{
    const char *describe = NULL, *text = NULL, *out = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: triad data --describe markov:vocab=V,order=K,seed=S\n"
                   "       triad data --text FILE --out FILE.bin [--force]\n\n"
                   "--describe prints the source's exact entropy rate (entropy_rate_nats=...),\n"
                   "the loss a perfect model reaches. --text makes a byte-level token shard\n"
                   "(llm.c format: 1024-byte header, uint16 tokens; vocabulary 256).\n");
            return TRIAD_EXIT_OK;
        } else if (!strcmp(argv[i], "--describe") && i + 1 < argc) {
            describe = argv[++i];
        } else if (!strcmp(argv[i], "--text") && i + 1 < argc) {
            text = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else {
            log_msg("data: unknown or incomplete option '%s' (see triad data --help)", argv[i]);
            return TRIAD_EXIT_INPUT;
        }
    }
    char err[SPEC_ERR_LEN];
    if (describe) {
        exec_data *d = NULL;
        if (exec_data_open(describe, 1, 1 << 16, &d, err)) {
            log_msg("%s", err);
            return TRIAD_EXIT_INPUT;
        }
        double h = exec_data_entropy_rate(d);
        if (h >= 0)
            printf("entropy_rate_nats=%.9f\nvocab=%lld\n", h, (long long)exec_data_vocab(d));
        else
            printf("vocab=%lld\n", (long long)exec_data_vocab(d));
        exec_data_close(d);
        return TRIAD_EXIT_OK;
    }
    if (text || out) {
        if (!text || !out) {
            log_msg("data: --text and --out go together");
            return TRIAD_EXIT_INPUT;
        }
        if (exec_data_text_to_shard(text, out, force, err)) {
            log_msg("%s", err);
            return TRIAD_EXIT_INPUT;
        }
        return TRIAD_EXIT_OK;
    }
    log_msg("data: give --describe SPEC or --text FILE --out FILE.bin (see triad data --help)");
    return TRIAD_EXIT_INPUT;
}
