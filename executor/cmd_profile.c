/* cmd_profile.c — `triad profile`: measure this machine for the cost model.
 *
 * Run under mpirun with the ranks the jobs will use. Every rank runs the
 * same timings at the same moment (a barrier before each sample), so what
 * is measured is a kernel while all ranks compete for the machine's cores
 * and memory, as they do in training. Two tables come out, in the CSV
 * schema of profiles/README.md:
 *
 *  - the executor's own kernels at the shapes the model produces for every
 *    candidate tensor-parallel degree t (a divisor of the world size that
 *    divides heads, hidden, ffn and vocab) and micro-batch size b: the
 *    forward GEMMs as `gemm` rows (m = b s, n = output columns, k = input
 *    columns, the cost model's cost_gemm_s keys) and every other kernel as a
 *    `kernel` row keyed by its own dimensions (matmul_bwd m,n,k as above;
 *    attention m = b a/t problems, n = s, k = head size; layernorm m = rows,
 *    n = columns; element-wise m = elements; adamw m = parameters);
 *  - the comm layer's collectives over every group size that divides the
 *    world, message sizes 4 KiB .. 16 MiB, nccl-tests style: a warm-up, then
 *    the median of several timed iterations, with algbw = bytes / time and
 *    busbw = algbw x the ring factor (2(n-1)/n all-reduce, (n-1)/n gather
 *    and scatter, 1 send/recv). All groups of a size run at once.
 *
 * Kernels take their operands from a rotation of buffer sets that together
 * fill one training step's memory (see krot): in training a kernel finds its
 * data where the rest of the step left it, not in the core's cache.
 *
 * The kernel sweep runs --passes times (default 2; 4 when ranks outnumber
 * cores, see exec_cmd_profile), every shape once per
 * pass, and each row reports the lowest of its per-pass medians: the
 * samples of one shape are spread over the whole profile, and a shared
 * machine's noise only ever slows a kernel down, so the fastest pass is the
 * machine's own speed. triad report takes the same statistic of its runs
 * (the fastest pass of each layout), so prediction and measurement both
 * describe the undisturbed machine. (With the mean in both, predictions on
 * this 2-core VM moved with the minute's load: three demo runs of
 * 2026-12-01 had mean errors 16.9, 19.3 and 26.6%; with the lowest in
 * both, 12.0, 10.4 and 7.1%; the lowest in the profile alone made every
 * prediction ~20% low.)
 *
 * Rank 0 writes the file (through a temporary name and a rename); an
 * existing file is refused without --force.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/cmds.h"
#include "../common/log.h"
#include "../common/spec.h"
#include "../costmodel/cost.h"
#include "../costmodel/shapes.h"
#include "../kernels/kernels.h"
#include "call_window.h"
#include "comm.h"
#include "model.h"

#define MAX_SAMPLES 15

/* the backend whose kernels are timed (--device): buffers live in its memory */
static const kern_ops *P;

typedef struct {
    comm_group *world; /* barrier across every rank */
    int samples;       /* timed samples per measurement (median reported) */
    double min_s;      /* each sample repeats the op until it lasts this long */
    int oversub;       /* more ranks than cores, on a host backend: kernels timed by time_kernel's window */
    FILE *f;           /* rank 0 only */
    /* kernel rows of the sweep, in sweep order: time summed over the passes */
    struct prow { char kind[8], name[24]; int64_t m, n, k; double t; int prec; } *rows;
    int n_rows, cap_rows, row_i, pass;
    int precs[2], n_precs; /* the maths the GEMMs and attention are timed in (--precision) */
    int prec;              /* the one being timed: SPEC_PREC_*, or -1 (the optimizer's fp32 state: either) */
} prof_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*op_fn)(void *arg);

/* The median of this rank's samples (sorted in place), the largest over the
 * ranks: a step waits for its slowest rank. */
static double slowest_median(prof_ctx *ctx, double *s)
{
    qsort(s, (size_t)ctx->samples, sizeof s[0], cmp_double);
    double med = s[ctx->samples / 2];
    comm_allreduce_max(ctx->world, &med, 1, COMM_F64);
    return med;
}

/* Median time of one call of fn over ctx->samples samples, all ranks in
 * step. The repeat count is fixed from a first call on rank 0 and agreed by
 * every rank, so the ranks stay in lockstep. */
static double time_op(prof_ctx *ctx, op_fn fn, void *arg)
{
    fn(arg); /* warm-up: page faults, BLAS buffers, CUDA's first launch */
    P->sync();
    comm_barrier(ctx->world);
    double t0 = now_s();
    fn(arg);
    P->sync(); /* device kernels are asynchronous: time to their end */
    double one = now_s() - t0;
    int64_t reps = (int64_t)ceil(ctx->min_s / fmax(one, 1e-7));
    reps = reps < 1 ? 1 : reps > 10000 ? 10000 : reps;
    comm_allreduce_max(ctx->world, &reps, 1, COMM_I64);
    double s[MAX_SAMPLES];
    for (int i = 0; i < ctx->samples; i++) {
        comm_barrier(ctx->world);
        t0 = now_s();
        for (int64_t r = 0; r < reps; r++)
            fn(arg);
        P->sync();
        s[i] = (now_s() - t0) / (double)reps;
    }
    return slowest_median(ctx, s);
}

/* A kernel's time per call with more ranks than cores. A fixed number of
 * repetitions ends unevenly there: the rank that finishes first leaves its
 * core to the one it shared it with, whose last scheduler slices then run
 * alone, faster than anything in a training step (measured on 4 ranks on 2
 * cores: 1.6x the time of one rank alone, where 4 steady processes run at
 * 2.0x: a 64x384x128 GEMM, 101 us alone, 175-229 us each). So every rank
 * repeats the op until a common deadline and counts only the calls that end
 * in the middle half of the window, when every rank is surely running: the
 * steady-state time under the machine's sharing.
 * The time per call is the middle half's length over the calls that end in
 * it (call_window.h; 4 processes on 2 cores, a GEMM of 101 us alone: 175-215
 * us so, 200 us expected, where the span from the first counted call to the
 * last gave 140-200 us and profiles that predicted most 4-rank layouts
 * 15-35% fast). */
static double time_kernel(prof_ctx *ctx, op_fn fn, void *arg)
{
    if (!ctx->oversub)
        return time_op(ctx, fn, arg);
    fn(arg); /* warm-up */
    P->sync();
    comm_barrier(ctx->world);
    double t0 = now_s();
    fn(arg);
    P->sync();
    double one = now_s() - t0;
    comm_allreduce_max(ctx->world, &one, 1, COMM_F64);
    double span = fmax(2.0 * ctx->min_s, 40.0 * one); /* >= 20 calls in the middle half */
    double s[MAX_SAMPLES];
    for (int i = 0; i < ctx->samples; i++) {
        comm_barrier(ctx->world);
        double start = now_s(), t = start;
        exec_call_window w = exec_call_window_open(start, span);
        while (t < start + span) {
            fn(arg);
            P->sync();
            t = now_s();
            exec_call_window_end(&w, t);
        }
        s[i] = exec_call_window_per_call_s(&w);
    }
    return slowest_median(ctx, s);
}

/* ---- kernels ----------------------------------------------------------------------- */

typedef struct {
    int B, T, C, NH, HS, F, V, N;
    int tp; /* the shape's tensor-parallel degree (the trainer's cross-entropy differs at 1) */
    float *x, *y, *z, *w, *dw, *db, *mean, *rstd, *att, *datt, *qkv, *dqkv, *big, *big2;
    int64_t n_x, n_y, n_z, n_w, n_db, n_big, n_qkv, n_att; /* their elements (the others' sizes follow) */
    int *tok;
    int mm_n, mm_c, mm_oc, mm_bias; /* current matmul shape */
    int64_t n_elem;                 /* current element-wise size */
} kbufs;

/* Operands in rotation. Timing a kernel on the same buffers call after
 * call measures it with its operands in the core's cache; in training each
 * kernel finds its weights and most of its inputs where the rest of the step
 * pushed them (a 64x512x128 GEMM here: 121 us on hot buffers, 174 us cycling
 * through 7 MB, 205 us through 109 MB). So profile_shape allocates several
 * sets of the buffers, as many as fill what one training step of the shape
 * touches (triad's memory model for the rank), and each call takes the next
 * set. `k` is what the sweep sets and the kernels read; rot_next points its
 * buffers at the next set (n = 0: `k`'s own buffers, no rotation). */
#define MAX_ROT 64
typedef struct {
    kbufs k;
    kbufs sets[MAX_ROT];
    int n, i;
} krot;

static kbufs *rot_next(void *a)
{
    krot *r = a;
    if (r->n > 0) {
        const kbufs *b = &r->sets[r->i];
        r->i = (r->i + 1) % r->n;
        r->k.x = b->x, r->k.y = b->y, r->k.z = b->z, r->k.w = b->w, r->k.dw = b->dw, r->k.db = b->db;
        r->k.mean = b->mean, r->k.rstd = b->rstd, r->k.att = b->att, r->k.datt = b->datt;
        r->k.qkv = b->qkv, r->k.dqkv = b->dqkv, r->k.big = b->big, r->k.big2 = b->big2;
    }
    return &r->k;
}

static void f_mm_fwd(void *a)
{
    kbufs *k = rot_next(a);
    P->matmul_forward(k->big, k->x, k->w, k->mm_bias ? k->db : NULL, k->mm_n, k->mm_c, k->mm_oc);
}
static void f_mm_bwd(void *a)
{
    kbufs *k = rot_next(a);
    P->matmul_backward(k->big2, k->dw, k->mm_bias ? k->db : NULL, k->big, k->x, k->w, k->mm_n, k->mm_c,
                             k->mm_oc, 0.0f);
}
/* the MLP's GEMM + GELU: out, pre (N,F) in big, big2; its backward: dpre
 * into big2 from dout big (N,C), inp x (N,F), pre z, scratch z's second
 * half (kbufs_alloc) */
static void f_mmg_fwd(void *a)
{
    kbufs *k = rot_next(a);
    P->matmul_gelu_forward(k->big, k->big2, k->x, k->w, k->db, k->mm_n, k->mm_c, k->mm_oc);
}
static void f_mmg_bwd(void *a)
{
    kbufs *k = rot_next(a);
    int64_t n_in = (int64_t)k->mm_n * k->mm_c;
    P->matmul_gelu_backward(k->big2, k->dw, k->db, k->big, k->x, k->z, k->w, k->z + n_in, k->mm_n, k->mm_c,
                            k->mm_oc);
}
static void f_att_fwd(void *a)
{
    kbufs *k = rot_next(a);
    P->attention_forward(k->y, k->att, k->qkv, k->B, k->T, k->NH, k->HS);
}
static void f_att_bwd(void *a)
{
    kbufs *k = rot_next(a);
    P->attention_backward(k->dqkv, k->datt, k->y, k->qkv, k->att, k->B, k->T, k->NH, k->HS);
}
static void f_fl_fwd(void *a)
{
    kbufs *k = rot_next(a); /* lse (B,NH,T) in att's space */
    P->attention_forward_flash(k->y, k->att, k->qkv, k->B, k->T, k->NH, k->HS);
}
static void f_fl_bwd(void *a)
{
    kbufs *k = rot_next(a); /* dO and the forward's output both in y: read only */
    P->attention_backward_flash(k->dqkv, k->y, k->qkv, k->y, k->att, k->B, k->T, k->NH, k->HS);
}
static void f_ln_fwd(void *a)
{
    kbufs *k = rot_next(a);
    P->layernorm_forward(k->y, k->mean, k->rstd, k->x, k->w, k->db, k->N, k->C);
}
static void f_ln_bwd(void *a)
{
    kbufs *k = rot_next(a);
    P->layernorm_backward(k->z, k->dw, k->db, k->y, k->x, k->w, k->mean, k->rstd, k->N, k->C);
}
static void f_gelu_fwd(void *a)
{
    kbufs *k = rot_next(a);
    P->gelu_forward(k->big, k->big2, k->n_elem);
}
static void f_gelu_bwd(void *a)
{
    kbufs *k = rot_next(a);
    P->gelu_backward(k->big, k->big2, k->big, k->n_elem);
}
static void f_bias_res(void *a)
{
    kbufs *k = rot_next(a); /* y (N, C) += bias + residual x */
    P->bias_residual(k->y, k->dw, k->x, k->N, k->C);
}
static void f_enc_fwd(void *a)
{
    kbufs *k = rot_next(a);
    P->encoder_forward(k->y, k->tok, k->w, k->dw, k->B, k->T, k->C, 0, k->V, 1);
}
static void f_enc_bwd(void *a)
{
    kbufs *k = rot_next(a);
    P->encoder_backward(k->dw, k->z, k->y, k->tok, k->B, k->T, k->C, 0, k->V, 1);
}
static void f_xent_fwd(void *a)
{
    kbufs *k = rot_next(a);
    if (k->tp == 1) { /* as exec_model's head_forward: one pass, or three with the tp reductions between */
        P->xent_forward(k->mean, k->rstd, k->z, k->big, k->tok, k->N, k->V, 0);
        return;
    }
    P->xent_rowmax(k->mean, k->big, k->N, k->V);
    P->xent_sumexp(k->rstd, k->big, k->mean, k->N, k->V);
    P->xent_target(k->z, k->big, k->tok, k->N, k->V, 0);
}
static void f_xent_bwd(void *a)
{
    kbufs *k = rot_next(a);
    P->xent_backward_inplace(k->big, k->mean, k->rstd, k->tok, k->N, k->V, 0, 1e-3f);
}
static void f_adamw(void *a)
{
    kbufs *k = rot_next(a);
    P->adamw(k->big, k->big2, k->x, k->z, k->n_elem, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
}

static void f_grad_norm(void *a)
{
    kbufs *k = rot_next(a);
    volatile double ss = P->sum_squares(k->big2, k->n_elem); /* returns to the host: synchronous */
    (void)ss;
}
static void f_zero_grad(void *a)
{
    kbufs *k = rot_next(a);
    P->memset0(k->x, (int64_t)sizeof(float) * k->n_elem);
}
static void f_scale(void *a)
{
    kbufs *k = rot_next(a);
    P->scale(k->x, 1.0f, k->n_elem);
}

/* A copy of host data in the backend's memory. */
static void *upload(const void *h, int64_t bytes)
{
    void *d = P->alloc(bytes > 0 ? bytes : 1);
    if (!d)
        log_die("profile: out of %s memory (%lld bytes)", P->name, (long long)bytes);
    P->to_device(d, h, bytes);
    return d;
}

/* n small pseudo-random floats in the backend's memory; mode 1: |x| + 1
 * (sums of exponentials, second moments), else in [-0.1, 0.1). */
static float *falloc_mode(int64_t n, unsigned seed, int mode)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p)
        log_die("profile: out of memory (%lld floats)", (long long)n);
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.2f;
        if (mode == 1)
            p[i] = fabsf(p[i]) + 1.0f;
    }
    float *d = upload(p, (int64_t)sizeof(float) * n);
    free(p);
    return d;
}
static float *falloc(int64_t n, unsigned seed) { return falloc_mode(n, seed, 0); }
static void ffree(void *p)
{
    if (p)
        P->free(p);
}

/* One kernel row of this pass: recorded on the first pass, summed on the
 * later ones (the sweep visits the rows in the same order every pass). */
static void put_row(prof_ctx *c, const char *kind, const char *name, int64_t m, int64_t n, int64_t k, double t)
{
    if (c->pass == 0) {
        if (c->n_rows == c->cap_rows) {
            c->cap_rows = c->cap_rows ? 2 * c->cap_rows : 256;
            c->rows = realloc(c->rows, sizeof *c->rows * (size_t)c->cap_rows);
            if (!c->rows)
                log_die("profile: out of memory");
        }
        struct prow *r = &c->rows[c->n_rows++];
        snprintf(r->kind, sizeof r->kind, "%s", kind);
        snprintf(r->name, sizeof r->name, "%s", name);
        r->m = m, r->n = n, r->k = k, r->t = t, r->prec = c->prec;
    } else if (c->row_i < c->n_rows) {
        c->rows[c->row_i].t = fmin(c->rows[c->row_i].t, t);
    }
    c->row_i++;
}

static void row_gemm(prof_ctx *c, int64_t m, int64_t n, int64_t k, double t)
{
    put_row(c, "gemm", "matmul_fwd", m, n, k, t);
}
static void row_kernel(prof_ctx *c, const char *name, int64_t m, int64_t n, int64_t k, double t)
{
    put_row(c, "kernel", name, m, n, k, t);
}

static void write_rows(const prof_ctx *c)
{
    for (int i = 0; c->f && i < c->n_rows; i++) {
        const struct prow *r = &c->rows[i];
        const char *dt = r->prec < 0 ? "" : spec_precision_name((spec_precision)r->prec);
        if (!strcmp(r->kind, "gemm"))
            fprintf(c->f, "gemm,matmul_fwd,,%lld,%lld,%lld,,,,%.6g,,,%.4g,%s\n", (long long)r->m, (long long)r->n,
                    (long long)r->k, r->t, 2.0 * r->m * r->n * r->k / r->t / 1e9, dt);
        else
            fprintf(c->f, "kernel,%s,,%lld,%lld,%lld,,,,%.6g,,,,%s\n", r->name, (long long)r->m, (long long)r->n,
                    (long long)r->k, r->t, dt);
    }
}

/* One set of the sweep's buffers for shape k (its dimensions set), seeded
 * by set so that sets differ; returns the set's bytes. */
static int64_t kbufs_alloc(kbufs *b, const kbufs *k, unsigned set)
{
    int64_t N = k->N, C = k->C, F = k->F, V = k->V, C3 = 3 * (int64_t)k->NH * k->HS;
    int64_t wmax = C * (F > C3 ? F : C3);
    if (C * V > wmax)
        wmax = C * V;
    int64_t amax = N * (F > C3 ? F : C3);
    if (N * V > amax)
        amax = N * V;
    /* z: layernorm's dinp, the MLP backward's pre and scratch (2 N F), wte's gradient */
    int64_t in_max = N * (F > C ? F : C), zn = 2 * in_max > V * C ? 2 * in_max : V * C;
    int64_t dbn = F > C3 ? (F > V ? F : V) : (C3 > V ? C3 : V), att = (int64_t)k->B * k->NH * k->T * k->T;
    unsigned s0 = 16 * set;
    b->n_x = in_max, b->n_y = N * C, b->n_z = zn, b->n_w = wmax, b->n_db = dbn, b->n_big = amax, b->n_qkv = N * C3;
    b->n_att = att;
    b->x = falloc(in_max, s0 + 1);
    b->y = falloc(N * C, s0 + 2);
    b->z = falloc(zn, s0 + 3);
    b->w = falloc(wmax, s0 + 4);
    b->dw = falloc(wmax, s0 + 5);
    b->db = falloc(dbn, s0 + 6);
    b->mean = falloc(N, s0 + 7);
    b->rstd = falloc_mode(N, s0 + 8, 1); /* sums of exponentials are >= 1 */
    b->big = falloc(amax, s0 + 9);
    b->big2 = falloc(amax, s0 + 10);
    b->qkv = falloc(N * C3, s0 + 11);
    b->dqkv = falloc(N * C3, s0 + 12);
    b->att = falloc(att, s0 + 13);
    b->datt = falloc(att, s0 + 14);
    return (int64_t)sizeof(float) * (in_max + N * C + zn + 2 * wmax + dbn + 2 * N + 2 * amax + 2 * N * C3 + 2 * att);
}

/* bf16 storage: the buffers the kernels read as activations (and matmul
 * weights and biases) refilled with small bf16 values in their first
 * halves, so that no kernel reads a NaN made of an fp32's low bits */
static void kbufs_fill_bf16(kbufs *b, unsigned set)
{
    float *bufs[] = {b->x, b->y, b->z, b->w, b->db, b->big, b->big2, b->qkv, b->dqkv, b->att, b->datt};
    int64_t ns[] = {b->n_x, b->n_y, b->n_z, b->n_w, b->n_db, b->n_big, b->n_big, b->n_qkv, b->n_qkv, b->n_att, b->n_att};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        int64_t n = ns[i];
        uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n > 0 ? n : 1));
        if (!h)
            log_die("profile: out of memory (%lld bf16 values)", (long long)n);
        uint32_t s = (16 * set + (unsigned)i) * 2654435761u + 7;
        for (int64_t j = 0; j < n; j++) {
            s = s * 1664525u + 1013904223u;
            h[j] = kern_bf16_bits(((float)(s >> 8) / 16777216.0f - 0.5f) * 0.2f);
        }
        P->to_device(bufs[i], h, (int64_t)sizeof(uint16_t) * n);
        free(h);
    }
}

static void kbufs_free(kbufs *b)
{
    void *all[] = {b->x, b->y, b->z, b->w, b->dw, b->db, b->mean, b->rstd, b->big, b->big2, b->qkv, b->dqkv, b->att,
                   b->datt};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ffree(all[i]);
}

/* Every kernel of one (t, b) shape: the block's, the embedding's, the head's,
 * the operands rotating through as many buffer sets as fill one training
 * step's memory on a rank (triad's memory model, dp = pp = 1; at most 256 MB
 * in all: enough to leave any CPU's or GPU's cache). */
static void profile_shape(prof_ctx *c, const spec_model *m, int t, int b)
{
    krot *r = calloc(1, sizeof *r);
    if (!r)
        log_die("profile: out of memory");
    kbufs k;
    memset(&k, 0, sizeof k);
    k.B = b;
    k.T = m->seq;
    k.C = m->hidden;
    k.NH = m->heads / t;
    k.HS = m->hidden / m->heads;
    k.F = m->ffn / t;
    k.V = m->vocab / t;
    k.N = b * m->seq;
    k.tp = t;
    int64_t N = k.N, C = k.C, F = k.F, V = k.V, C3 = 3 * (int64_t)k.NH * k.HS;
    spec_layout l;
    spec_layout_default(&l);
    l.tp = t, l.pp = 1, l.dp = 1, l.mbs = b, l.precision = SPEC_PREC_FP32;
    cost_mem mem;
    cost_memory_rank(m, &l, b, 0, &mem);
    int64_t want = mem.total_bytes < (256LL << 20) ? mem.total_bytes : (256LL << 20);
    int64_t set_bytes = kbufs_alloc(&r->sets[0], &k, 0);
    r->n = (int)((want + set_bytes - 1) / set_bytes);
    r->n = r->n < 1 ? 1 : r->n > MAX_ROT ? MAX_ROT : r->n;
    for (int i = 1; i < r->n; i++)
        kbufs_alloc(&r->sets[i], &k, (unsigned)i);
    r->k = k;
    r->i = 0;
    rot_next(r); /* the first set's buffers into r->k */
    int *tok = malloc(sizeof(int) * (size_t)N);
    if (!tok)
        log_die("profile: out of memory");
    for (int64_t i = 0; i < N; i++)
        tok[i] = (int)((i * 7919) % V);
    r->k.tok = upload(tok, (int64_t)sizeof(int) * N);
    free(tok);

    /* In each precision of --precision, as the trainer runs it (bf16: the
     * GEMMs and attention in bf16 math on bf16 activations, every
     * element-wise kernel reading and writing bf16; fp32: fp32 throughout):
     * the block's four GEMMs and the LM head, as model.c calls them,
     * attention, and the element-wise kernels. */
    struct { int64_t c, oc; int bias; } mm[5] = {{C, C3, 1}, {r->k.NH * (int64_t)r->k.HS, C, 0}, {C, F, 1}, {F, C, 0},
                                                {C, V, 0}};
    for (int pi = 0; pi < c->n_precs; pi++) {
        c->prec = c->precs[pi];
        int bf16 = c->prec == SPEC_PREC_BF16;
        P->set_math(bf16 ? KERN_MATH_BF16 : KERN_MATH_FP32);
        if (P->set_storage(bf16 ? KERN_STORE_BF16 : KERN_STORE_FP32))
            log_die("profile: the %s backend cannot store bf16 activations", P->name);
        for (int i = 0; bf16 && i < r->n; i++)
            kbufs_fill_bf16(&r->sets[i], (unsigned)i);
        for (int i = 0; i < 5; i++) {
            r->k.mm_n = (int)N;
            r->k.mm_c = (int)mm[i].c;
            r->k.mm_oc = (int)mm[i].oc;
            r->k.mm_bias = mm[i].bias;
            row_gemm(c, N, mm[i].oc, mm[i].c, time_kernel(c, f_mm_fwd, r));
            /* the executor always accumulates a bias gradient for the block's
             * matrices (the row-parallel ones too) and none for the head */
            r->k.mm_bias = i < 4;
            row_kernel(c, "matmul_bwd", N, mm[i].oc, mm[i].c, time_kernel(c, f_mm_bwd, r));
        }
        /* the MLP's first GEMM with its GELU and the second's backward
         * through it, as model.c calls them (one op each; a GPU fuses them) */
        r->k.mm_n = (int)N, r->k.mm_c = (int)C, r->k.mm_oc = (int)F;
        row_kernel(c, "matmul_gelu_fwd", N, F, C, time_kernel(c, f_mmg_fwd, r));
        r->k.mm_c = (int)F, r->k.mm_oc = (int)C;
        row_kernel(c, "matmul_gelu_bwd", N, C, F, time_kernel(c, f_mmg_bwd, r));
        int64_t bh = (int64_t)b * r->k.NH;
        row_kernel(c, "attention_fwd", bh, r->k.T, r->k.HS, time_kernel(c, f_att_fwd, r));
        row_kernel(c, "attention_bwd", bh, r->k.T, r->k.HS, time_kernel(c, f_att_bwd, r));
        row_kernel(c, "attention_flash_fwd", bh, r->k.T, r->k.HS, time_kernel(c, f_fl_fwd, r));
        row_kernel(c, "attention_flash_bwd", bh, r->k.T, r->k.HS, time_kernel(c, f_fl_bwd, r));
        row_kernel(c, "layernorm_fwd", N, C, 1, time_kernel(c, f_ln_fwd, r));
        row_kernel(c, "layernorm_bwd", N, C, 1, time_kernel(c, f_ln_bwd, r));
        r->k.n_elem = N * F;
        row_kernel(c, "gelu_fwd", N * F, 1, 1, time_kernel(c, f_gelu_fwd, r));
        row_kernel(c, "gelu_bwd", N * F, 1, 1, time_kernel(c, f_gelu_bwd, r));
        r->k.n_elem = N * C;
        row_kernel(c, "bias_residual", N * C, 1, 1, time_kernel(c, f_bias_res, r));
        row_kernel(c, "encoder_fwd", N, C, 1, time_kernel(c, f_enc_fwd, r));
        row_kernel(c, "encoder_bwd", N, C, 1, time_kernel(c, f_enc_bwd, r));
        row_kernel(c, "xent_fwd", N, V, 1, time_kernel(c, f_xent_fwd, r));
        row_kernel(c, "xent_bwd", N, V, 1, time_kernel(c, f_xent_bwd, r));
    }
    c->prec = -1;
    P->set_math(KERN_MATH_FP32);
    P->set_storage(KERN_STORE_FP32);

    for (int i = 0; i < r->n; i++)
        kbufs_free(&r->sets[i]);
    ffree(r->k.tok);
    free(r);
}

/* AdamW and the gradient norm per parameter, at this rank's largest size. */
static void profile_optimizer(prof_ctx *c, int64_t n)
{
    c->prec = -1; /* fp32 state in either math */
    krot *r = calloc(1, sizeof *r); /* one set: the state's own size rotates it out of cache */
    if (!r)
        log_die("profile: out of memory");
    kbufs k;
    memset(&k, 0, sizeof k);
    k.big = falloc(n, 1);
    k.big2 = falloc(n, 2);
    k.x = falloc(n, 3);
    k.z = falloc_mode(n, 4, 1); /* second moments are positive */
    k.n_elem = n;
    r->k = k;
    row_kernel(c, "adamw", n, 1, 1, time_kernel(c, f_adamw, r));
    /* the other passes of a step over every gradient: the global norm for
     * clipping, zeroing before the first micro-batch, the data-parallel mean */
    row_kernel(c, "grad_norm", n, 1, 1, time_kernel(c, f_grad_norm, r));
    row_kernel(c, "zero_grad", n, 1, 1, time_kernel(c, f_zero_grad, r));
    row_kernel(c, "scale", n, 1, 1, time_kernel(c, f_scale, r));
    ffree(k.big), ffree(k.big2), ffree(k.x), ffree(k.z);
    free(r);
}

/* ---- collectives --------------------------------------------------------------------- */

typedef struct {
    comm_group *g;
    int op;
    float *send, *recv;
    size_t count; /* elements of the full buffer */
} cbufs;

static void f_coll(void *a)
{
    cbufs *b = a;
    int n = comm_group_size(b->g), r = comm_group_rank(b->g);
    switch (b->op) {
    case 0: comm_allreduce_sum(b->g, b->send, b->count, COMM_F32); break;
    case 1: comm_allgather(b->g, b->send, b->recv, b->count / (size_t)n, COMM_F32); break;
    case 2: comm_reducescatter_sum(b->g, b->send, b->recv, b->count / (size_t)n, COMM_F32); break;
    default: /* one pipeline hop: even ranks send to the next, odd receive */
        if (r % 2 == 0 && r + 1 < n)
            comm_send(b->g, b->send, b->count, COMM_F32, r + 1, 7);
        else if (r % 2 == 1)
            comm_recv(b->g, b->recv, b->count, COMM_F32, r - 1, 7);
        break;
    }
}

static void profile_collectives(prof_ctx *c, int world, int64_t max_bytes, int nccl)
{
    static const char *OPS[] = {"allreduce", "allgather", "reducescatter", "sendrecv"};
    for (int n = 2; n <= world; n++) {
        if (world % n)
            continue;
        comm_groups g;
        comm_groups_init(&g, n, world / n, 1, nccl ? COMM_BACKEND_NCCL : COMM_BACKEND_MPI,
                         exec_backend_is_host() ? COMM_MEM_HOST : COMM_MEM_DEVICE);
        for (int op = 0; op < 4; op++) {
            if (op == 3 && n != 2)
                continue; /* pipeline hops are pairs */
            for (int64_t bytes = 4096; bytes <= max_bytes; bytes *= 4) {
                cbufs b = {g.tp, op, NULL, NULL, (size_t)(bytes / 4)};
                b.count -= b.count % (size_t)n;
                b.send = falloc((int64_t)b.count, 1);
                b.recv = falloc((int64_t)b.count, 2);
                double t = time_op(c, f_coll, &b);
                double algbw = (double)b.count * 4 / t / 1e9;
                double factor = op == 0 ? 2.0 * (n - 1) / n : op == 3 ? 1.0 : (double)(n - 1) / n;
                if (c->f)
                    fprintf(c->f, "collective,,,,,,%s,%d,%lld,%.6g,%.4g,%.4g,,\n", OPS[op], n,
                            (long long)(b.count * 4), t, algbw, algbw * factor);
                ffree(b.send);
                ffree(b.recv);
            }
        }
        comm_groups_free(&g);
    }
}

/* ---- waits with more ranks than cores ------------------------------------------------ */

/* With more ranks than cores the MPI comm layer waits by testing and
 * sleeping 50 us between polls (comm_mpi.c), so that a waiting rank leaves
 * its core to a computing one. The collective rows above time the ops back
 * to back, their ranks in lockstep; in a step they follow compute, and two
 * waits then cost more (profile.c, the simulator charges both):
 *  wait_coll_s: a small collective (an all-reduce of 64 KB, 2 ranks) right
 *    after compute. The ranks arrive out of step, the first sleeps, and
 *    each round of the collective waits for a wake-up: 0.1-0.3 ms here,
 *    where the lockstep row of the same all-reduce is 0.03-0.2 ms.
 *  wake_s: a receive that waited for a rank still computing, from the send
 *    to the receiver's return (a pipeline stage leaving its bubble).
 * Both with one pair of ranks computing while the others wait, as in a
 * pipeline whose other stages idle. Each pass of the profile takes the
 * median of 7 samples (coll_s: the whole collective after compute) and of
 * 40 wakes, and the profile the median over its passes, minutes apart: a
 * slow spell of the host lasts seconds (README), and a pass that met one
 * timed a median wake of 1.3 ms where the others took 0.07-0.1 ms. Rank 0
 * gets the figures; every rank takes part. */
typedef struct { float *x, *w, *y, *buf; } wbufs;

static void w_gemm(wbufs *b) { P->matmul_forward(b->y, b->x, b->w, NULL, 256, 128, 256); }

static void profile_waits(prof_ctx *c, int world, double *coll_s, double *wake)
{
    enum { REPS = 100, SAMPLES = 7, WAKES = 40, COUNT = 16384 };
    comm_groups g; /* tp groups of 2: ranks 0 and 1 compute, the rest wait in a receive */
    comm_groups_init(&g, 2, world / 2, 1, COMM_BACKEND_MPI, COMM_MEM_HOST);
    int rank = comm_group_rank(c->world);
    double coll[SAMPLES], wk[WAKES];
    if (rank < 2) {
        wbufs b = {falloc(256 * 128, 1), falloc(256 * 128, 2), falloc(256 * 256, 3), falloc(COUNT, 4)};
        w_gemm(&b); /* warm-up */
        comm_allreduce_sum(g.tp, b.buf, COUNT, COMM_F32);
        for (int i = 0; i < SAMPLES; i++) {
            double t[2];
            for (int mode = 0; mode < 2; mode++) { /* compute, compute + collective */
                comm_barrier(g.tp);
                double t0 = now_s();
                for (int r = 0; r < REPS; r++) {
                    w_gemm(&b);
                    if (mode)
                        comm_allreduce_sum(g.tp, b.buf, COUNT, COMM_F32);
                }
                t[mode] = (now_s() - t0) / REPS;
            }
            coll[i] = t[1] - t[0];
        }
        /* rank 0 computes 4 GEMMs (about 1 ms) and sends the time of the
         * send; rank 1 has long been waiting in its receive */
        for (int i = 0; i < WAKES; i++) {
            double sent = 0;
            if (rank == 0) {
                for (int r = 0; r < 4; r++)
                    w_gemm(&b);
                sent = now_s();
                comm_send(g.tp, &sent, 1, COMM_F64, 1, 12);
            } else {
                comm_recv(g.tp, &sent, 1, COMM_F64, 0, 12);
                wk[i] = now_s() - sent;
            }
        }
        comm_barrier(g.tp);
        if (rank == 1)
            comm_send(g.tp, wk, WAKES, COMM_F64, 0, 13);
        else
            comm_recv(g.tp, wk, WAKES, COMM_F64, 1, 13);
        ffree(b.x), ffree(b.w), ffree(b.y), ffree(b.buf);
        for (int r = 2; rank == 0 && r < world; r++) /* release the waiting ranks */
            comm_send(c->world, wk, 1, COMM_F64, r, 14);
    } else {
        double x;
        comm_recv(c->world, &x, 1, COMM_F64, 0, 14);
    }
    comm_groups_free(&g);
    if (rank == 0) {
        qsort(coll, SAMPLES, sizeof coll[0], cmp_double);
        qsort(wk, WAKES, sizeof wk[0], cmp_double);
        *coll_s = coll[SAMPLES / 2];
        *wake = wk[WAKES / 2];
    }
}

/* ---- command ------------------------------------------------------------------------- */

/* A tensor-parallel degree of world ranks the model's shapes split by. */
static int tp_divides(const spec_model *m, int world, int t)
{
    return world % t == 0 && m->heads % t == 0 && m->hidden % t == 0 && m->ffn % t == 0 && m->vocab % t == 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -np N triad profile --model M --out FILE [--device cpu|cuda|emu] [--mbs 1,2,4]\n"
            "                     [--comm auto|mpi|nccl] [--precision fp32,bf16] [--samples 5] [--passes 2]\n"
            "                     [--min-ms MS] [--tp LIST] [--kernels-only] [--force]\n"
            "\n"
            "Times the executor's kernels at the shapes model M produces for every tensor-parallel\n"
            "degree that divides N and every micro-batch size in --mbs, and the comm layer's\n"
            "collectives over every group size that divides N, with all N ranks running at once.\n"
            "Writes a profile CSV (schema: profiles/README.md) that triad plan, simulate and\n"
            "report read with --profile FILE. Each timed sample repeats an op for at least\n"
            "--min-ms (5, or 25 when the ranks outnumber the cores, so that a sample spans\n"
            "several scheduler time slices and sees each rank's share of the cores). Each shape\n"
            "is timed --samples times (median) in each of --passes sweeps (the fastest): 5 and 2,\n"
            "or 3 and 4 when the ranks outnumber the cores.\n"
            "--device cuda times the CUDA kernels (every rank on the GPU of its local rank), emu\n"
            "the emulated device. --comm picks the collectives timed, as triad train --comm does:\n"
            "nccl (a GPU per rank), mpi (GPU buffers staged through the host), auto (nccl where\n"
            "it can run). --precision: the precisions the kernels are timed in as the trainer\n"
            "runs them (bf16: bf16 activations, GEMMs and attention in bf16 math), rows\n"
            "tagged with their dtype (default: fp32 on cpu, whose trainer runs fp32 only;\n"
            "fp32,bf16 on cuda and emu); the cost model predicts a layout of precision P only\n"
            "from rows timed in P. --tp LIST times the kernels of those tensor-parallel degrees\n"
            "only, --kernels-only leaves the collectives out (triad report re-times a profile's\n"
            "tp=1 kernels so, to see how the machine's speed moved).\n");
}

int exec_cmd_profile(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},  {"out", required_argument, 0, 'o'},
                                         {"device", required_argument, 0, 'D'}, {"mbs", required_argument, 0, 'b'},
                                         {"samples", required_argument, 0, 's'}, {"min-ms", required_argument, 0, 't'},
                                         {"passes", required_argument, 0, 'P'}, {"comm", required_argument, 0, 'O'},
                                         {"precision", required_argument, 0, 'p'},
                                         {"kernels-only", no_argument, 0, 'K'}, {"tp", required_argument, 0, 'T'},
                                         {"force", no_argument, 0, 'f'},        {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_s = NULL, *out = NULL, *device = "cpu", *mbs_s = "1,2,4", *comm_s = "auto";
    const char *prec_s = NULL; /* default: what triad train runs on the backend */
    long samples = -1, passes = -1; /* default: 5 and 2, 3 and 4 when ranks outnumber cores (see below) */
    double min_ms = -1; /* default: 5 ms, 25 ms when ranks outnumber cores (see below) */
    int force = 0, kernels_only = 0;
    const char *tp_s = NULL; /* default: every degree that divides the world */
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'm': model_s = optarg; break;
        case 'o': out = optarg; break;
        case 'D': device = optarg; break;
        case 'O':
            if (!exec_comm_name_ok(optarg))
                log_die_input("profile: --comm '%s' is not one of auto, mpi, nccl", optarg);
            comm_s = optarg;
            break;
        case 'b': mbs_s = optarg; break;
        case 'p': prec_s = optarg; break;
        case 's': samples = log_opt_long("profile", "samples", optarg, 1, MAX_SAMPLES); break;
        case 't':
            min_ms = strtod(optarg, &end);
            if (!*optarg || *end || !(min_ms >= 0.01 && min_ms <= 1000))
                log_die_input("profile: --min-ms '%s' is not a number in 0.01..1000", optarg);
            break;
        case 'P': passes = log_opt_long("profile", "passes", optarg, 1, 100); break;
        case 'f': force = 1; break;
        case 'K': kernels_only = 1; break;
        case 'T': tp_s = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            log_msg("profile: unknown or incomplete option '%s' (see triad profile --help)", argv[optind - 1]);
            return TRIAD_EXIT_INPUT;
        }
    }
    if (optind < argc)
        log_die_input("profile: unexpected argument '%s'", argv[optind]);
    if (!model_s || !out)
        log_die_input("profile: missing %s (see triad profile --help)", !model_s ? "--model" : "--out");
    long units = 0; /* what the ranks share: cores, or GPUs */
    {
        char derr[SPEC_ERR_LEN];
        if (exec_use_device(device, &units, derr))
            log_die_input("profile: %s", derr);
        P = exec_backend();
    }
    int mbs[16];
    int n_mbs = spec_parse_int_list(mbs_s, mbs, 16);
    if (n_mbs <= 0)
        log_die_input("profile: --mbs '%s' is not a comma-separated list of integers in 1..4096", mbs_s);
    int tps[16], n_tps = tp_s ? spec_parse_int_list(tp_s, tps, 16) : 0;
    if (tp_s && n_tps <= 0)
        log_die_input("profile: --tp '%s' is not a comma-separated list of integers in 1..4096", tp_s);
    /* the cpu backend trains in fp32 whatever the layout says (train.c);
     * device backends run bf16 math too */
    if (!prec_s)
        prec_s = exec_backend_is_host() ? "fp32" : "fp32,bf16";
    int precs[2] = {0, 0}, n_precs = 0;
    {
        char buf[64];
        char *save = NULL;
        if (snprintf(buf, sizeof buf, "%s", prec_s) >= (int)sizeof buf)
            buf[0] = 0; /* too long to be a list of two: refused below */
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            int pr = spec_precision_from_name(tok);
            if (pr < 0 || n_precs == 2 || (n_precs == 1 && precs[0] == pr))
                log_die_input("profile: --precision '%s' is not fp32, bf16 or both (comma-separated)", prec_s);
            if (pr == SPEC_PREC_BF16 && exec_backend_is_host())
                log_die_input("profile: --precision '%s': the %s backend trains in fp32 only", prec_s, P->name);
            precs[n_precs++] = pr;
        }
        if (n_precs == 0)
            log_die_input("profile: --precision '%s' is not fp32, bf16 or both (comma-separated)", prec_s);
    }
    spec_model m;
    char err[SPEC_ERR_LEN];
    if (spec_model_parse(model_s, &m, err))
        log_die_input("%s", err);
    if (!force && access(out, F_OK) == 0)
        log_die_input("profile: --out '%s' exists (pass --force to replace it)", out);

    int rank = 0, world = 1;
    comm_init(&argc, &argv, &rank, &world);
    /* With more ranks than cores the ranks take turns on the cores in
     * scheduler time slices of a few milliseconds: a short sample may run
     * alone and see an idle machine. Samples of several slices see the
     * share of the cores each rank gets, as training does. */
    if (min_ms < 0)
        min_ms = world > sysconf(_SC_NPROCESSORS_ONLN) ? 25.0 : 5.0;
    for (int j = 0; j < n_tps; j++) {
        int t = tps[j];
        if (!tp_divides(&m, world, t)) {
            if (rank == 0)
                log_msg("profile: --tp %d does not divide the %d ranks and the model's heads, hidden, ffn and vocab",
                        t, world);
            comm_finalize();
            return TRIAD_EXIT_INPUT;
        }
    }
    int nccl = 0;
    if (world > 1 && exec_pick_comm(comm_s, &nccl, err)) {
        if (rank == 0)
            log_msg("profile: %s", err);
        comm_finalize();
        return TRIAD_EXIT_INPUT;
    }
    comm_groups wg;
    comm_groups_init(&wg, world, 1, 1, COMM_BACKEND_MPI, COMM_MEM_HOST);
    /* ranks time-sharing cores (not GPUs: those keep the fixed repetitions) */
    int oversub = comm_node_ranks() > sysconf(_SC_NPROCESSORS_ONLN) && strcmp(P->name, "cuda") != 0;
    /* Ranks sharing cores also share them with whatever else the host runs:
     * on a 2-core VM the cores' vector throughput drops by 15-20% for 1-3 s
     * at a time, each core on its own, and a pass of the sweep catches a
     * shape in one such spell or not. Two passes of 5 samples left two
     * 4-rank profiles of one machine ordering the 28 layouts of the demo
     * model with Spearman 0.67 between them; four passes of 5 samples
     * (twice as long) 0.95, four of 3 samples (25% longer) 0.90. */
    if (passes < 0)
        passes = oversub ? 4 : 2;
    if (samples < 0)
        samples = oversub ? 3 : 5;
    prof_ctx c = {wg.tp, (int)samples, min_ms * 1e-3, oversub, NULL, NULL, 0, 0, 0, 0, {precs[0], precs[1]}, n_precs,
                  -1};
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
    if (rank == 0) {
        c.f = fopen(tmp, "w");
        if (!c.f)
            log_die("profile: cannot write '%s'", tmp);
        time_t now = time(NULL);
        char date[32];
        strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&now));
        fprintf(c.f, "# triad profile: device %s, %d ranks at once, model %s, %s\n", P->name, world, m.name, date);
        fprintf(c.f, "# kernels at the model's shapes (median of %ld samples%s, the slowest rank, the fastest of %ld "
                     "passes), collectives of the comm layer (%s)\n", samples,
                oversub ? " of steady state, every rank running" : "", passes,
                nccl ? "NCCL" : exec_backend_is_host() ? "MPI" : "MPI, staged through host memory");
        fprintf(c.f, "kind,name,value,m,n,k,op,group,bytes,time_s,algbw_gbps,busbw_gbps,gflops,dtype\n");
        /* parameters the measured rows do not replace: no dropout in the executor */
        fprintf(c.f, "param,dropout,0,,,,,,,,,,,\n");
        fprintf(c.f, "param,tp_bwd_overlap,0,,,,,,,,,,,\n"); /* the executor's collectives are synchronous */
        /* NCCL reduces gradient buckets on its own stream under backward;
         * MPI's non-blocking all-reduce advances only inside MPI calls */
        fprintf(c.f, "param,dp_overlap,%d,,,,,,,,,,,\n", nccl);
        fprintf(c.f, "param,launch_s,1e-07,,,,,,,,,,,\n");
        /* the conditions of the measurement: ranks timing at once, cores they shared */
        fprintf(c.f, "param,ranks,%d,,,,,,,,,,,\n", world);
        fprintf(c.f, "param,cores,%ld,,,,,,,,,,,\n", units); /* cores, or the GPUs the ranks share */
    }
    /* the largest parameter count a rank holds: the whole model at tp=1, pp=1 */
    spec_layout one;
    spec_layout_default(&one);
    int64_t max_params = cost_shapes_param_elems(&m, &one, 0);
    /* with more ranks than cores, the comm layer's sleeping waits
     * (profile_waits: host buffers, so the CPU backend only; the emulated
     * device keeps its memory from the host) */
    int waits = oversub && !nccl && !kernels_only && exec_backend_is_host() && world >= 4 && world % 2 == 0;
    double *wait_coll = calloc((size_t)passes, sizeof(double)), *wake = calloc((size_t)passes, sizeof(double));
    for (c.pass = 0; c.pass < passes; c.pass++) {
        c.row_i = 0;
        for (int t = 1; t <= world; t++) {
            if (!tp_divides(&m, world, t))
                continue;
            int listed = !tp_s;
            for (int j = 0; j < n_tps; j++)
                listed |= tps[j] == t;
            if (!listed)
                continue;
            for (int i = 0; i < n_mbs; i++) {
                if (rank == 0)
                    fprintf(stderr, "triad: profile: pass %d/%ld, kernels at tp=%d mbs=%d\n", c.pass + 1, passes, t,
                            mbs[i]);
                profile_shape(&c, &m, t, mbs[i]);
            }
        }
        profile_optimizer(&c, max_params);
        if (waits) {
            if (rank == 0)
                fprintf(stderr, "triad: profile: pass %d/%ld, waits of ranks that sleep between polls\n", c.pass + 1,
                        passes);
            profile_waits(&c, world, &wait_coll[c.pass], &wake[c.pass]);
        }
    }
    write_rows(&c);
    free(c.rows);
    if (world > 1 && !kernels_only) {
        if (rank == 0)
            fprintf(stderr, "triad: profile: collectives over groups of 2..%d ranks\n", world);
        int64_t maxb = 4 * max_params;
        if (maxb < (1 << 20))
            maxb = 1 << 20;
        if (maxb > (64 << 20))
            maxb = 64 << 20;
        profile_collectives(&c, world, maxb * 4, nccl);
        if (waits && c.f) {
            qsort(wait_coll, (size_t)passes, sizeof wait_coll[0], cmp_double);
            qsort(wake, (size_t)passes, sizeof wake[0], cmp_double);
            double wc = 0.5 * (wait_coll[(passes - 1) / 2] + wait_coll[passes / 2]);
            double wk = 0.5 * (wake[(passes - 1) / 2] + wake[passes / 2]);
            fprintf(c.f, "param,wait_coll_s,%.4g,,,,,,,,,,,\nparam,wake_s,%.4g,,,,,,,,,,,\n", fmax(0.0, wc),
                    fmax(0.0, wk));
        }
    }
    free(wait_coll);
    free(wake);
    int rc = 0;
    if (rank == 0) {
        if (fclose(c.f) || rename(tmp, out)) {
            log_msg("profile: cannot write '%s'", out);
            remove(tmp);
            rc = TRIAD_EXIT_FAIL;
        } else
            fprintf(stderr, "triad: profile: wrote %s\n", out);
    }
    comm_groups_free(&wg);
    comm_finalize();
    return rc;
}
