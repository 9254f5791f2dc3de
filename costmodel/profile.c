/* profile.c — built-in and measured machine profiles (contract in profile.h,
 * schema in profiles/README.md).
 *
 * A profile holds (1) named parameters — efficiencies and overheads, each
 * with its source — and (2) optional measured tables: GEMM times by shape and
 * collective bus bandwidths by size. The built-in profiles carry the same
 * parameters as the shipped profiles/<cluster>.csv files; a unit test loads
 * each file and compares, so the two cannot drift apart.
 */
#include "profile_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>

/* Parameters per device kind. Sources:
 *  gemm_eff_max: asymptotic fraction of peak of a bf16 GEMM in the
 *    software of the runs being modelled. A100 (Megatron-LM 2021-22,
 *    CUDA 11): PyTorch fp16 matmul at n = 8192 measured 230 TFLOP/s on an
 *    A100-80GB (mli/transformers-benchmarks, micro_bench, CUDA 11.x);
 *    with the curve below that is max = 230/312 x (1 + 3 x 96/8192) =
 *    0.763. A later shape search (Bekman, ml-engineering "Maximum
 *    Achievable Matmul FLOPS", CUDA 12.1) finds 267.9 on A100 and 792.1 on
 *    H100 SXM at their single best shapes; the A100's typical-to-best
 *    ratio at that shape (223/268 = 0.83) applied to the H100's best gives
 *    660 TFLOP/s at 6144x17920x2816, max = 660/989 x 1.073 = 0.72.
 *  gemm_dim_half: dimension scale of the efficiency curve, eff = max /
 *    (1 + d/m + d/n + d/k): with d = 96 a 2048^3 GEMM runs at ~88% of max,
 *    a 128-deep batched attention GEMM at ~55% (same guide: wave
 *    quantisation and the 128-wide tiles of Ampere/Hopper).
 *  hbm_eff: element-wise kernels sustain ~80% of HBM bandwidth (STREAM-like
 *    copy measured at ~1.6 TB/s of 2.04 on A100-80GB; ~3.0 of 3.35 on H100).
 *  nvlink_eff, ib_eff: nccl-tests all-reduce bus bandwidth on DGX A100
 *    reaches ~230 GB/s of NVLink's 300 per direction (0.77) and ~21-23 GB/s
 *    per HDR HCA of 25 (0.85-0.9) for large messages (NVIDIA DGX A100 user
 *    guide / nccl-tests PERFORMANCE.md figures); on H100 NCCL's ring gets
 *    ~370 GB/s of NVLink4's 450 after ~20% protocol overhead (NCCL
 *    maintainer, NVIDIA/nccl-tests issue 212, 2024): 0.80.
 *  launch_s: host time to issue one kernel, ~5 us for PyTorch eager
 *    kernels (Megatron-LM). Launches are asynchronous: the host runs ahead
 *    of the device and this is paid only when a block's kernels are too
 *    short to cover it (a block costs max(device time, host issue time)).
 *  kernel_gap_s: what the device loses between back-to-back kernels when
 *    the host is ahead, ~1 us: NVIDIA's CUDA Graphs post (Gray 2019)
 *    measures 2.9 us kernels at 3.8 us each with overlapped stream
 *    launches.
 *  kernels_per_layer: forward kernels per block in Megatron-LM 2021 (the
 *    GEMMs, fused bias-gelu, fused softmax, layernorms, dropout, residual).
 *  dropout: the GPU profiles describe Megatron-LM training, whose GPT
 *    configurations apply dropout 0.1 to the attention probabilities and
 *    to both residual branches (Narayanan et al. 2021; Korthikanti et al.
 *    2022 Sec 4.1 count its masks); triad's own executor has none (0).
 *  tp_bwd_overlap: Megatron-LM (since 2021, `async_tensor_model_parallel
 *    _allreduce`; with sp Korthikanti et al. 2022 Sec 4.2.2) starts the
 *    column-parallel input-gradient all-reduce (sp: all-gather of the
 *    input, reduce-scatter of its gradient) asynchronously and computes
 *    the weight gradient (sp: the data gradient) meanwhile; only what the
 *    GEMM does not cover is exposed. triad's executor does not overlap (0).
 *  comm_sm_frac: NCCL runs a collective as one thread block per channel,
 *    and those blocks hold their SMs for the collective's duration; a GEMM
 *    overlapped with it runs on the rest. 0.15 of the SMs for NVLink
 *    collectives on DGX A100 / H100 (the value Calculon, Isaev et al.
 *    SC'23, uses for its NVLink network).
 *  flash_attention, attn_eff: the A100 profiles model Megatron-LM 2021-22,
 *    whose attention writes the s x s scores and softmax to memory (0). The
 *    H100 profile models Megatron-Core / NeMo, whose fused attention
 *    (cuDNN / FlashAttention, Transformer Engine) never materialises them
 *    (1); attn_eff 0.5: FlashAttention-3 (Shah et al. 2024) measures the
 *    fused bf16 kernels (cuDNN, FA3) at 500-660 TFLOP/s forward and
 *    ~450-550 backward on H100 for head size 128 (about half of 989).
 *  dp_overlap: Megatron-LM and PyTorch DDP start each gradient bucket's
 *    all-reduce (NCCL, its own stream) as soon as the bucket is final and
 *    backward goes on meanwhile (1); Megatron's distributed optimizer
 *    reduce-scatters its buckets so. triad's executor does both with NCCL
 *    (ZeRO-0's all-reduces, ZeRO-1's reduce-scatters, dpgrad.h); over
 *    MPI a non-blocking collective advances only inside MPI calls, and on
 *    CPU ranks the cores are busy computing, so the reduction happens when
 *    the step waits for it: exposed (0, written by `triad profile` when
 *    its collectives ran on MPI). ZeRO-2 and -3's
 *    per-block reduce-scatters and gathers overlap compute in DeepSpeed
 *    and FSDP (1 models that); triad's executor blocks on them, so under
 *    a profile with kernel rows they are charged whole either way.
 *  ranks, cores: written by `triad profile` — how many ranks timed the
 *    kernels at once, on how many cores. When ranks outnumber cores every
 *    measured time includes that contention; the simulator then models
 *    how busy the cores really are in each layout (sim.c). 0: not stated.
 *  wait_coll_s, wake_s: written by `triad profile` when ranks outnumber
 *    cores. The MPI comm layer then waits by testing and sleeping, so that
 *    a waiting rank leaves its core to a computing one, and two waits cost
 *    more than the lockstep collective rows show. wait_coll_s: a
 *    collective that follows compute, beyond its lockstep time — its ranks
 *    arrive out of step, the first sleeps, and each round of the collective
 *    then waits for a wake-up. wake_s: a receive that waited for a rank
 *    still computing (a pipeline stage in its bubble), from the send to the
 *    receiver's return. The simulator charges both where the cores would
 *    otherwise idle (sim.c). 0: not measured.
 */
static const profile_params SHEET_A100 = {0.763, 96.0, 0.80, 0.77, 0.88, 5e-6, 1e-6, 30.0, 1.0, 1.0, 0.15, 0.0, 0.5, 1.0,
                                          0, 0, 0, 0};
static const profile_params SHEET_H100 = {0.72, 128.0, 0.85, 0.80, 0.88, 4e-6, 1e-6, 30.0, 1.0, 1.0, 0.15, 1.0, 0.5, 1.0,
                                          0, 0, 0, 0};
static const profile_params SHEET_CPU = {0.70, 32.0, 0.60, 0.50, 0.50, 2e-6, 0.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0, 0, 0, 0};

static cost_profile BUILTIN[SPEC_GPU_COUNT];
static int builtin_ready;

static const char *PARAM_NAMES[] = {"gemm_eff_max", "gemm_dim_half", "hbm_eff",           "nvlink_eff",
                                    "ib_eff",       "launch_s",      "kernel_gap_s",      "kernels_per_layer",
                                    "dropout",      "tp_bwd_overlap", "comm_sm_frac",    "flash_attention",
                                    "attn_eff",     "dp_overlap",    "ranks",             "cores",
                                    "wait_coll_s",  "wake_s"};
#define N_PARAMS ((int)(sizeof PARAM_NAMES / sizeof PARAM_NAMES[0]))

static double *param_ptr(profile_params *p, int i)
{
    double *f[] = {&p->gemm_eff_max, &p->gemm_dim_half, &p->hbm_eff,          &p->nvlink_eff,
                   &p->ib_eff,       &p->launch_s,      &p->kernel_gap_s,       &p->kernels_per_layer,
                   &p->dropout,      &p->tp_bwd_overlap, &p->comm_sm_frac, &p->flash_attention,
                   &p->attn_eff,     &p->dp_overlap,    &p->ranks,              &p->cores,
                   &p->wait_coll_s,  &p->wake_s};
    return f[i];
}

const profile_params *profile_sheet(spec_gpu_kind g)
{
    switch (g) {
    case SPEC_GPU_A100_40GB:
    case SPEC_GPU_A100_80GB:
        return &SHEET_A100;
    case SPEC_GPU_H100_80GB:
    case SPEC_GPU_H200_141GB:
        return &SHEET_H100;
    default:
        return &SHEET_CPU;
    }
}

const cost_profile *cost_profile_builtin(spec_gpu_kind gpu)
{
    if (!builtin_ready) {
        for (int g = 0; g < SPEC_GPU_COUNT; g++) {
            memset(&BUILTIN[g], 0, sizeof BUILTIN[g]);
            BUILTIN[g].params = *profile_sheet((spec_gpu_kind)g);
            BUILTIN[g].builtin = 1;
            snprintf(BUILTIN[g].name, sizeof BUILTIN[g].name, "builtin:%s",
                     spec_gpu_name((spec_gpu_kind)g));
        }
        builtin_ready = 1;
    }
    if ((int)gpu < 0 || gpu >= SPEC_GPU_COUNT)
        return NULL;
    return &BUILTIN[gpu];
}

const char *cost_profile_name(const cost_profile *p) { return p ? p->name : "none"; }

void cost_profile_free(cost_profile *p)
{
    if (!p || p->builtin)
        return;
    free(p->gemm);
    free(p->coll);
    free(p->kern);
    free(p);
}

/* ---- CSV loading -------------------------------------------------------------- */

enum { COL_KIND, COL_NAME, COL_VALUE, COL_M, COL_N, COL_K, COL_OP, COL_GROUP, COL_BYTES, COL_TIME,
       COL_BUSBW, COL_DTYPE, COL_COUNT };
static const char *COLS[COL_COUNT] = {"kind", "name", "value", "m", "n", "k", "op", "group",
                                      "bytes", "time_s", "busbw_gbps", "dtype"};

typedef struct {
    cost_profile *p;
    const char *path;
    char *err;
    int line;       /* current record's line number (1-based, header = 1) */
    int field;      /* index of the field in the record */
    int header_done;
    int colmap[64]; /* file column -> COL_*, or -1 for an ignored informative column */
    int ncols;
    char vals[COL_COUNT][128];
    int have[COL_COUNT];
    int failed;
} load_ctx;

static void fail(load_ctx *c, const char *fmt, const char *a, const char *b)
{
    if (c->failed)
        return;
    c->failed = 1;
    char msg[SPEC_ERR_LEN];
    snprintf(msg, sizeof msg, fmt, a, b);
    snprintf(c->err, SPEC_ERR_LEN, "%s:%d: %s", c->path, c->line, msg);
}

/* Informative columns the loader accepts and ignores. */
static int informative(const char *s)
{
    const char *ok[] = {"unit", "source", "algbw_gbps", "gflops", "note"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(s, ok[i]))
            return 1;
    return 0;
}

static void cb_field(void *s, size_t len, void *data)
{
    load_ctx *c = data;
    if (c->failed)
        return;
    char buf[128];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (!c->header_done) {
        if (c->field >= 64) {
            fail(c, "too many columns%s%s", "", "");
            return;
        }
        int col = -1;
        for (int i = 0; i < COL_COUNT; i++)
            if (!strcmp(buf, COLS[i]))
                col = i;
        if (col < 0 && !informative(buf)) {
            fail(c, "unknown column '%s'%s", buf, "");
            return;
        }
        c->colmap[c->field++] = col;
        return;
    }
    if (c->field < c->ncols && c->colmap[c->field] >= 0) {
        int col = c->colmap[c->field];
        snprintf(c->vals[col], sizeof c->vals[col], "%s", buf);
        c->have[col] = len > 0;
    }
    c->field++;
}

/* flags and the device gap may be 0; every other parameter must be > 0 */
static int zero_ok(const char *param)
{
    return !strcmp(param, "dropout") || !strcmp(param, "tp_bwd_overlap") || !strcmp(param, "kernel_gap_s") ||
           !strcmp(param, "comm_sm_frac") || !strcmp(param, "flash_attention") || !strcmp(param, "dp_overlap") ||
           !strcmp(param, "wait_coll_s") || !strcmp(param, "wake_s");
}

static int num(load_ctx *c, int col, double *out, int allow_zero)
{
    if (!c->have[col]) {
        fail(c, "field '%s' is empty%s", COLS[col], "");
        return -1;
    }
    char *end = NULL;
    errno = 0;
    double x = strtod(c->vals[col], &end);
    if (errno || !end || *end || !isfinite(x) || x < 0 || (!allow_zero && x == 0)) {
        fail(c, "field '%s'='%s' is not a positive number", COLS[col], c->vals[col]);
        return -1;
    }
    *out = x;
    return 0;
}

/* The math a gemm or kernel row was timed in (its dtype field). GEMMs and
 * the kernels whose inner products round their operands in bf16 math
 * (matmul_bwd, matmul_gelu_*, attention) are math-dependent: an empty dtype there is fp32,
 * what every triad profile timed before it took --precision. The others
 * run the same code in either math: empty is any. */
static int row_prec(load_ctx *c, int math_dependent, int *out)
{
    if (!c->have[COL_DTYPE]) {
        *out = math_dependent ? SPEC_PREC_FP32 : PROFILE_ANY_PREC;
        return 0;
    }
    int p = spec_precision_from_name(c->vals[COL_DTYPE]);
    if (p < 0) {
        fail(c, "field 'dtype'='%s' is not one of bf16, fp32 (or empty)%s", c->vals[COL_DTYPE], "");
        return -1;
    }
    *out = p;
    return 0;
}

static int math_dependent_kernel(const char *name)
{
    return !strncmp(name, "matmul_", 7) || !strncmp(name, "attention_", 10);
}

static void cb_record(int ch, void *data)
{
    (void)ch;
    load_ctx *c = data;
    c->line++;
    if (c->failed)
        return;
    if (!c->header_done) {
        if (c->field == 1 && c->colmap[0] < 0) { /* a lone informative column is no header */
            fail(c, "header has no 'kind' column%s%s", "", "");
            return;
        }
        int has_kind = 0;
        for (int i = 0; i < c->field; i++)
            has_kind |= c->colmap[i] == COL_KIND;
        if (!has_kind) {
            fail(c, "header has no 'kind' column%s%s", "", "");
            return;
        }
        c->ncols = c->field;
        c->header_done = 1;
        c->field = 0;
        return;
    }
    if (c->field != c->ncols) {
        char a[16], b[16];
        snprintf(a, sizeof a, "%d", c->field);
        snprintf(b, sizeof b, "%d", c->ncols);
        fail(c, "row has %s fields, header has %s", a, b);
        return;
    }
    c->field = 0;
    const char *kind = c->vals[COL_KIND];
    cost_profile *p = c->p;
    if (!strcmp(kind, "param")) {
        int idx = -1;
        for (int i = 0; i < N_PARAMS; i++)
            if (!strcmp(c->vals[COL_NAME], PARAM_NAMES[i]))
                idx = i;
        if (idx < 0) {
            fail(c, "unknown parameter '%s'%s", c->vals[COL_NAME], "");
            return;
        }
        double v;
        if (num(c, COL_VALUE, &v, zero_ok(PARAM_NAMES[idx])) == 0)
            *param_ptr(&p->params, idx) = v;
    } else if (!strcmp(kind, "gemm")) {
        double m, n, k, t;
        int prec;
        if (num(c, COL_M, &m, 0) || num(c, COL_N, &n, 0) || num(c, COL_K, &k, 0) ||
            num(c, COL_TIME, &t, 0) || row_prec(c, 1, &prec))
            return;
        if (p->n_gemm == p->cap_gemm) {
            p->cap_gemm = p->cap_gemm ? 2 * p->cap_gemm : 64;
            p->gemm = realloc(p->gemm, (size_t)p->cap_gemm * sizeof *p->gemm);
        }
        p->gemm[p->n_gemm++] = (profile_gemm){m, n, k, t, prec};
    } else if (!strcmp(kind, "collective")) {
        double n, bytes, t, busbw = 0;
        if (num(c, COL_GROUP, &n, 0) || num(c, COL_BYTES, &bytes, 0) || num(c, COL_TIME, &t, 0))
            return;
        int op = -1;
        const char *ops[] = {"allreduce", "allgather", "reducescatter", "sendrecv", "broadcast"};
        for (int i = 0; i < 5; i++)
            if (!strcmp(c->vals[COL_OP], ops[i]))
                op = i;
        if (op < 0) {
            fail(c, "op='%s' is not one of allreduce, allgather, reducescatter, sendrecv%s",
                 c->vals[COL_OP], ", broadcast");
            return;
        }
        if (c->have[COL_BUSBW] && num(c, COL_BUSBW, &busbw, 1))
            return;
        if (p->n_coll == p->cap_coll) {
            p->cap_coll = p->cap_coll ? 2 * p->cap_coll : 64;
            p->coll = realloc(p->coll, (size_t)p->cap_coll * sizeof *p->coll);
        }
        p->coll[p->n_coll++] = (profile_coll){op, (int)n, bytes, t};
    } else if (!strcmp(kind, "kernel")) {
        static const char *names[] = {"matmul_bwd", "attention_fwd", "attention_bwd", "attention_flash_fwd",
                                      "attention_flash_bwd", "layernorm_fwd",
                                      "layernorm_bwd", "gelu_fwd", "gelu_bwd", "add", "bias_residual", "encoder_fwd",
                                      "encoder_bwd", "xent_fwd", "xent_bwd", "adamw", "grad_norm",
                                      "zero_grad", "scale", "matmul_gelu_fwd", "matmul_gelu_bwd"};
        int known = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            known |= !strcmp(c->vals[COL_NAME], names[i]);
        if (!known) {
            fail(c, "kernel name='%s' is not one the executor runs (see profiles/README.md)%s",
                 c->vals[COL_NAME], "");
            return;
        }
        double m, n, k, t;
        int prec;
        if (num(c, COL_M, &m, 0) || num(c, COL_N, &n, 0) || num(c, COL_K, &k, 0) ||
            num(c, COL_TIME, &t, 0) || row_prec(c, math_dependent_kernel(c->vals[COL_NAME]), &prec))
            return;
        if (p->n_kern == p->cap_kern) {
            p->cap_kern = p->cap_kern ? 2 * p->cap_kern : 64;
            p->kern = realloc(p->kern, (size_t)p->cap_kern * sizeof *p->kern);
        }
        profile_kernel *r = &p->kern[p->n_kern++];
        snprintf(r->name, sizeof r->name, "%s", c->vals[COL_NAME]);
        r->m = m;
        r->n = n;
        r->k = k;
        r->time_s = t;
        r->prec = prec;
    } else {
        fail(c, "kind='%s' is not one of param, gemm, kernel, collective%s", kind, "");
    }
    memset(c->have, 0, sizeof c->have);
}

int cost_profile_load(const char *path, cost_profile **out, char err[SPEC_ERR_LEN])
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, SPEC_ERR_LEN, "profile: cannot open '%s': %s", path, strerror(errno));
        return SPEC_ERR;
    }
    cost_profile *p = calloc(1, sizeof *p);
    load_ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.path = path;
    c.err = err;
    struct csv_parser parser;
    csv_init(&parser, CSV_APPEND_NULL);
    /* defaults: the sheet of the kind named by a 'device' param row is not
     * known yet; start from the A100 sheet and let param rows override */
    p->params = SHEET_A100;
    snprintf(p->name, sizeof p->name, "%.*s", (int)sizeof p->name - 1, path);

    char line[4096];
    int lineno = 0;
    while (!c.failed && fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n' || line[0] == '\r') {
            c.line++; /* comment lines still count for messages */
            continue;
        }
        size_t n = strlen(line);
        if (csv_parse(&parser, line, n, cb_field, cb_record, &c) != n) {
            c.line = lineno;
            fail(&c, "malformed CSV: %s%s", csv_strerror(csv_error(&parser)), "");
        }
    }
    if (!c.failed)
        csv_fini(&parser, cb_field, cb_record, &c);
    csv_free(&parser);
    fclose(f);
    if (!c.failed && !c.header_done) {
        snprintf(err, SPEC_ERR_LEN, "%s: empty profile (no header)", path);
        c.failed = 1;
    }
    if (c.failed) {
        cost_profile_free(p);
        return SPEC_ERR;
    }
    *out = p;
    return SPEC_OK;
}

/* ---- queries used by the cost model ------------------------------------------------- */

const profile_params *profile_params_of(const cost_profile *p) { return &p->params; }

/* A row timed in math `row` serves a query in math `want`. */
static int prec_ok(int row, spec_precision want) { return row == PROFILE_ANY_PREC || row == (int)want; }

/* Measured GEMM time: the nearest measured shape of the math by
 * log-distance, scaled by FLOPs (throughput of the nearest shape). Returns
 * -1 when none. */

double profile_gemm_time(const cost_profile *p, spec_precision prec, double m, double n, double k)
{
    if (!p || p->n_gemm == 0)
        return -1;
    double best = INFINITY;
    int bi = -1;
    for (int i = 0; i < p->n_gemm; i++) {
        const profile_gemm *g = &p->gemm[i];
        if (!prec_ok(g->prec, prec))
            continue;
        double d = fabs(log(g->m / m)) + fabs(log(g->n / n)) + fabs(log(g->k / k));
        if (d < best) {
            best = d;
            bi = i;
        }
    }
    if (bi < 0)
        return -1;
    const profile_gemm *g = &p->gemm[bi];
    return g->time_s * (m * n * k) / (g->m * g->n * g->k);
}

/* Measured collective time at (op, n, bytes): interpolated linearly in
 * bytes between the measured sizes of the same op and group size (nearest
 * group size otherwise). Returns -1 when none. */
double profile_coll_time(const cost_profile *p, int op, int n, double bytes)
{
    if (!p || p->n_coll == 0)
        return -1;
    int bestn = -1;
    for (int i = 0; i < p->n_coll; i++)
        if (p->coll[i].op == op && (bestn < 0 || abs(p->coll[i].n - n) < abs(bestn - n)))
            bestn = p->coll[i].n;
    if (bestn < 0)
        return -1;
    const profile_coll *lo = NULL, *hi = NULL;
    for (int i = 0; i < p->n_coll; i++) {
        const profile_coll *c = &p->coll[i];
        if (c->op != op || c->n != bestn)
            continue;
        if (c->bytes <= bytes && (!lo || c->bytes > lo->bytes))
            lo = c;
        if (c->bytes >= bytes && (!hi || c->bytes < hi->bytes))
            hi = c;
    }
    if (lo && hi && hi->bytes > lo->bytes) {
        double w = (bytes - lo->bytes) / (hi->bytes - lo->bytes);
        return lo->time_s + w * (hi->time_s - lo->time_s);
    }
    if (lo && hi)
        return lo->time_s;
    if (hi) /* below the smallest size: latency-bound, take its time */
        return hi->time_s;
    /* above the largest: extrapolate at its bandwidth */
    return lo->time_s * bytes / lo->bytes;
}

double profile_kernel_time(const cost_profile *p, const char *name, spec_precision prec, double m, double n,
                           double k)
{
    if (!p || p->n_kern == 0)
        return -1;
    double best = INFINITY;
    int bi = -1;
    for (int i = 0; i < p->n_kern; i++) {
        const profile_kernel *g = &p->kern[i];
        if (strcmp(g->name, name) || !prec_ok(g->prec, prec))
            continue;
        double d = fabs(log(g->m / m)) + fabs(log(g->n / n)) + fabs(log(g->k / k));
        if (d < best) {
            best = d;
            bi = i;
        }
    }
    if (bi < 0)
        return -1;
    const profile_kernel *g = &p->kern[bi];
    return g->time_s * (m * n * k) / (g->m * g->n * g->k);
}

int profile_has_kernels(const cost_profile *p) { return p && p->n_kern > 0; }
int cost_profile_is_executor(const cost_profile *p) { return profile_has_kernels(p); }

int cost_profile_shares_cores(const cost_profile *p)
{
    return p && p->params.cores > 0 && p->params.ranks > p->params.cores;
}

int cost_profile_has_kernel(const cost_profile *p, const char *name)
{
    for (int i = 0; p && i < p->n_kern; i++)
        if (!strcmp(p->kern[i].name, name))
            return 1;
    return 0;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Rows of equal name, shape and math (a profile may time two ops of one
 * name at one shape, always in the same order): the j-th such row of one
 * profile is matched with the j-th of the other. */
static int same_gemm(const profile_gemm *a, const profile_gemm *b)
{
    return a->m == b->m && a->n == b->n && a->k == b->k && a->prec == b->prec;
}
static int same_kern(const profile_kernel *a, const profile_kernel *b)
{
    return !strcmp(a->name, b->name) && a->m == b->m && a->n == b->n && a->k == b->k && a->prec == b->prec;
}

double cost_profile_speed_ratio(const cost_profile *base, const cost_profile *again, int *shapes)
{
    *shapes = 0;
    if (!base || !again)
        return NAN;
    double *r = malloc(sizeof(double) * (size_t)(again->n_gemm + again->n_kern + 1));
    if (!r)
        return NAN;
    int n = 0;
    for (int i = 0; i < again->n_gemm; i++) {
        int occ = 0;
        for (int j = 0; j < i; j++)
            occ += same_gemm(&again->gemm[j], &again->gemm[i]);
        for (int j = 0; j < base->n_gemm; j++)
            if (same_gemm(&base->gemm[j], &again->gemm[i]) && occ-- == 0) {
                if (base->gemm[j].time_s > 0)
                    r[n++] = again->gemm[i].time_s / base->gemm[j].time_s;
                break;
            }
    }
    for (int i = 0; i < again->n_kern; i++) {
        int occ = 0;
        for (int j = 0; j < i; j++)
            occ += same_kern(&again->kern[j], &again->kern[i]);
        for (int j = 0; j < base->n_kern; j++)
            if (same_kern(&base->kern[j], &again->kern[i]) && occ-- == 0) {
                if (base->kern[j].time_s > 0)
                    r[n++] = again->kern[i].time_s / base->kern[j].time_s;
                break;
            }
    }
    double med = NAN;
    if (n > 0) {
        qsort(r, (size_t)n, sizeof r[0], cmp_dbl);
        med = n % 2 ? r[n / 2] : 0.5 * (r[n / 2 - 1] + r[n / 2]);
    }
    free(r);
    *shapes = n;
    return med;
}

int cost_profile_has_precision(const cost_profile *p, spec_precision prec)
{
    if (!p || p->n_gemm == 0)
        return 1; /* datasheet curves: every precision */
    for (int i = 0; i < p->n_gemm; i++)
        if (prec_ok(p->gemm[i].prec, prec))
            return 1;
    return 0;
}
