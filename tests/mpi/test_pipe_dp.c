/* test_pipe_dp.c — executor/pipeline.c and executor/dpgrad.c under mpirun.
 *
 * A toy model whose every number is a small integer, so results are exact:
 * virtual stage s (of pp * v) multiplies its (K) input element-wise by
 * weights w_s[k] = 2 if (s + k) % 3 == 0 else 1; the loss of micro-batch j is the sum of the
 * last output; the input of micro-batch j on dp rank d is x[k] = (d*m + j) % 5
 * + k % 4 + 1. The reference (computed serially on every rank) is
 *   loss_j = sum_k x_j[k] prod_s w_s[k],  dL/dw_s[k] = sum_j x_j[k] prod_{t!=s} w_t[k],
 * averaged over dp (dp is a power of two, so the mean is exact too).
 * For every (tp, dp, pp) factorisation of the world, every schedule (GPipe,
 * 1F1B, interleaved v=2) and ZeRO off, 1, 2 and 3 (2: every chunk's
 * gradients in one shared window, reduce-scattered after each of its
 * backwards; 3: besides, each chunk's weights gathered from the dp slices
 * into one window before each of its forwards and backwards, with E more
 * weights after the chunks kept whole on every rank, as the embedding is),
 * checks with ==: the step's loss sum, every gradient (the rank's slice with
 * ZeRO), every gathered window, the in-flight peak of 1F1B (min(p - i, m))
 * and GPipe (m), and after the ZeRO AdamW the parameters against a full
 * local AdamW.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../executor/comm.h"
#include "../../executor/dpgrad.h"
#include "../../executor/pipeline.h"
#include "../../kernels/kernels.h"

enum { K = 24, M = 8, VMAX = 2, E = 7 };

static int n_fail, n_check, g_rank;
#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        n_check++;                                                                        \
        if (!(cond)) {                                                                    \
            if (++n_fail < 20) {                                                          \
                fprintf(stderr, "FAIL rank %d %s:%d: ", g_rank, __FILE__, __LINE__);      \
                fprintf(stderr, __VA_ARGS__);                                             \
                fprintf(stderr, "\n");                                                    \
            }                                                                             \
        }                                                                                 \
    } while (0)

typedef struct {
    int p, stage, v, dp_rank, m;
    float *w;                 /* (v, K) weights of my chunks */
    float *g;                 /* (v, K) gradients */
    float *gp[VMAX];          /* chunk c's gradients: g + c K, or (ZeRO-2) one shared window */
    int every;                /* ZeRO-2 and -3: mark after every backward */
    float saved[M][VMAX][K];  /* input of (mb, chunk) */
    dpgrad *dg;
    float *wwin;              /* ZeRO-3: the window chunks' weights are gathered into, or NULL */
    int gathers, bad_gathers;
} toy;

/* ZeRO-3: chunk c's weights, gathered from the dp slices, must be t->w's */
static const float *toy_weights(toy *t, int chunk)
{
    if (!t->wwin)
        return t->w + chunk * K;
    dpgrad_gather(t->dg, (size_t)chunk * K, (size_t)(chunk + 1) * K, t->wwin);
    t->gathers++;
    t->bad_gathers += memcmp(t->wwin, t->w + chunk * K, sizeof(float) * K) != 0;
    return t->wwin;
}

static float toy_x(int dp_rank, int m, int j, int k) { return (float)((dp_rank * m + j) % 5 + k % 4 + 1); }
static float toy_w(int s, int k) { return (s + k) % 3 == 0 ? 2.0f : 1.0f; } /* powers of two: exact products */

static float toy_forward(void *ctx, int mb, int chunk, const void *vin, void *vout)
{
    toy *t = ctx;
    const float *in = vin;
    float *out = vout;
    float *x = t->saved[mb][chunk];
    for (int k = 0; k < K; k++)
        x[k] = in ? in[k] : toy_x(t->dp_rank, t->m, mb, k);
    const float *w = toy_weights(t, chunk);
    double loss = 0;
    for (int k = 0; k < K; k++) {
        float y = w[k] * x[k];
        if (out)
            out[k] = y;
        loss += y;
    }
    return out ? 0.0f : (float)loss;
}

static void toy_backward(void *ctx, int mb, int chunk, const void *vdout, void *vdin, int last)
{
    toy *t = ctx;
    const float *dout = vdout;
    float *din = vdin;
    const float *x = t->saved[mb][chunk];
    const float *w = toy_weights(t, chunk);
    for (int k = 0; k < K; k++) {
        float d = dout ? dout[k] : 1.0f;
        t->gp[chunk][k] += d * x[k];
        if (din)
            din[k] = w[k] * d;
    }
    if ((last || t->every) && t->dg)
        dpgrad_mark_ready(t->dg, chunk);
}

static void run_case(const comm_groups *g, spec_schedule kind, int v, int zero)
{
    int p = g->pp_size, stage = g->pp_rank, dp = g->dp_size, S = p * v;
    toy t = {p, stage, v, g->dp_rank, M, NULL, NULL, {NULL}, zero >= 2, {{{0}}}, NULL, NULL, 0, 0};
    /* ZeRO-3: the flat vector is the chunks' weights then E resident ones
     * (their gradient is 0: only weight decay moves them) */
    int ne = zero == 3 ? E : 0, n = v * K + ne;
    t.w = malloc(sizeof(float) * n);
    t.g = calloc((size_t)n, sizeof(float));
    float window[K] = {0}, wwin[K] = {0}, resident[E];
    unsigned char per_micro[VMAX + 1] = {0};
    for (int c = 0; c < v; c++)
        t.gp[c] = zero >= 2 ? window : t.g + c * K, per_micro[c] = 1;
    float *seg_ptr[VMAX + 1] = {NULL};
    for (int c = 0; c < v; c++)
        seg_ptr[c] = t.gp[c];
    seg_ptr[v] = t.g + v * K; /* the resident weights' gradients */
    for (int c = 0; c < v; c++)
        for (int k = 0; k < K; k++)
            t.w[c * K + k] = toy_w(c * p + stage, k);
    for (int k = 0; k < ne; k++)
        t.w[v * K + k] = resident[k] = (float)(k + 1);
    dpgrad dg;
    size_t seg[VMAX + 2];
    for (int c = 0; c <= v; c++)
        seg[c] = (size_t)c * K;
    seg[v + 1] = (size_t)n;
    CHECK(dpgrad_init(&dg, g->dp, zero >= 2 ? NULL : t.g, (size_t)n, seg, v + (ne > 0), K, zero, seg_ptr,
                      per_micro) == 0,
          "dpgrad_init");
    t.dg = &dg;
    size_t zlo = 0, zhi = 0;
    if (zero == 3 && dg.dp) {
        CHECK(dpgrad_zero3_weights(&dg, (size_t)v * K) == 0, "dpgrad_zero3_weights");
        dpgrad_slice(&dg, &zlo, &zhi);
        CHECK(dg.wslice_elems == (zhi < (size_t)v * K ? zhi : (size_t)v * K) - (zlo < (size_t)v * K ? zlo : (size_t)v * K),
              "wslice %zu elements for slice [%zu, %zu)", dg.wslice_elems, zlo, zhi);
        if (dg.wslice_elems)
            memcpy(dg.wslice, t.w + zlo, sizeof(float) * dg.wslice_elems);
        t.wwin = wwin;
    }
    pipe_exec pe;
    char err[SPEC_ERR_LEN];
    CHECK(pipe_init(&pe, g->pp, kind, M, v, K, COMM_F32, err) == 0, "pipe_init: %s", err);
    pipe_stage_fns fns = {&t, toy_forward, toy_backward};
    double loss = pipe_run_step(&pe, &fns);
    dpgrad_finish(&dg);
    if (zero == 3) /* each chunk before each of its M forwards and M backwards */
        CHECK(t.gathers == 2 * M * v && t.bad_gathers == 0, "zero3: %d gathers (want %d), %d windows wrong",
              t.gathers, 2 * M * v, t.bad_gathers);

    /* reference */
    double ref_loss = 0;
    for (int j = 0; j < M; j++)
        for (int k = 0; k < K; k++) {
            double prod = toy_x(g->dp_rank, M, j, k);
            for (int s = 0; s < S; s++)
                prod *= toy_w(s, k);
            ref_loss += prod;
        }
    int holds_last = stage == (S - 1) % p;
    CHECK(loss == (holds_last ? ref_loss : 0.0), "%s v=%d loss %g, want %g", spec_schedule_name(kind), v, loss,
          holds_last ? ref_loss : 0.0);
    int bad = 0;
    double sumsq_ref = 0;
    float ref_g[VMAX * K + E] = {0}; /* the resident weights' are 0 */
    for (int c = 0; c < v; c++)
        for (int k = 0; k < K; k++) {
            int s = c * p + stage;
            double tot = 0;
            for (int d = 0; d < dp; d++)
                for (int j = 0; j < M; j++) {
                    double prod = toy_x(d, M, j, k);
                    for (int u = 0; u < S; u++)
                        if (u != s)
                            prod *= toy_w(u, k);
                    tot += prod;
                }
            ref_g[c * K + k] = (float)(tot / dp);
            sumsq_ref += (double)ref_g[c * K + k] * ref_g[c * K + k];
            if (!zero)
                bad += !(t.g[c * K + k] == ref_g[c * K + k]);
        }
    if (zero) {
        size_t lo, hi;
        dpgrad_slice(&dg, &lo, &hi);
        CHECK(lo == (size_t)comm_group_rank(g->dp) * dg.shard_elems || lo == (size_t)n, "slice at %zu", lo);
        for (size_t e = lo; e < hi; e++)
            bad += !(dg.shard_grad[e - lo] == ref_g[e]);
    }
    if (zero <= 1) /* each chunk is its own bucket, started in its last backward (ZeRO-1: reduce-scattered) */
        CHECK(dg.last_early == (dp > 1 ? v : 0), "zero%d: %d buckets started under backward, want %d", zero,
              dg.last_early, dp > 1 ? v : 0);
    if (zero >= 2) { /* every chunk reduced after each of its M backwards (the resident part once); the window left clean */
        CHECK(dg.last_reduced == M * v + (ne > 0), "zero%d: %d reductions, want %d", zero, dg.last_reduced,
              M * v + (ne > 0));
        for (int k = 0; k < K; k++)
            bad += !(window[k] == 0.0f);
    }
    CHECK(bad == 0, "%s v=%d zero=%d: %d gradients wrong", spec_schedule_name(kind), v, zero, bad);
    double sumsq = dpgrad_grad_sumsq(&dg);
    CHECK(fabs(sumsq - sumsq_ref) <= 1e-12 * sumsq_ref, "sumsq %.17g want %.17g", sumsq, sumsq_ref);
    if (kind == SPEC_SCHED_1F1B)
        CHECK(pe.peak_inflight == (p - stage < M ? p - stage : M), "1f1b peak %d stage %d", pe.peak_inflight, stage);
    if (kind == SPEC_SCHED_GPIPE)
        CHECK(pe.peak_inflight == M, "gpipe peak %d", pe.peak_inflight);
    if (zero) {
        /* ZeRO AdamW vs a full local AdamW on the reference gradients */
        float ref_p[VMAX * K + E], m0[VMAX * K + E] = {0}, v0[VMAX * K + E] = {0};
        unsigned char decay[VMAX * K + E];
        for (int i = 0; i < n; i++)
            decay[i] = i % 5 != 0;
        memcpy(ref_p, t.w, sizeof(float) * n);
        for (int i = 0; i < n; i++)
            kern_cpu_adamw(ref_p + i, ref_g + i, m0 + i, v0 + i, 1, 1e-2f, 0.9f, 0.95f, 1e-8f,
                           decay[i] ? 0.1f : 0.0f, 1);
        int badp = 0;
        if (zero == 3) { /* the slice's part of the chunks, and the resident weights on every rank */
            dpgrad_zero_adamw(&dg, resident, decay, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
            for (size_t i = 0; i < dg.wslice_elems; i++)
                badp += !(dg.wslice[i] == ref_p[zlo + i]);
            for (int k = 0; k < ne; k++)
                badp += !(resident[k] == ref_p[v * K + k]);
        } else {
            dpgrad_zero_adamw(&dg, t.w, decay, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
            for (int i = 0; i < n; i++)
                badp += !(t.w[i] == ref_p[i]);
        }
        CHECK(badp == 0, "zero%d adamw: %d params differ", zero, badp);
    }
    pipe_free(&pe);
    dpgrad_free(&dg);
    free(t.w);
    free(t.g);
}

int main(int argc, char **argv)
{
    int rank, world;
    comm_init(&argc, &argv, &rank, &world);
    g_rank = rank;
    int n_cases = 0;
    for (int tp = 1; tp <= world; tp *= 2)
        for (int dp = 1; tp * dp <= world; dp *= 2) {
            int pp = world / (tp * dp);
            if (tp * dp * pp != world)
                continue;
            comm_groups g;
            comm_groups_init(&g, tp, dp, pp, COMM_BACKEND_MPI, COMM_MEM_HOST);
            for (int zero = 0; zero <= 3; zero++) {
                run_case(&g, SPEC_SCHED_GPIPE, 1, zero);
                run_case(&g, SPEC_SCHED_1F1B, 1, zero);
                run_case(&g, SPEC_SCHED_INTERLEAVED, 2, zero);
                n_cases += 3;
            }
            comm_groups_free(&g);
        }
    int64_t tot[2] = {n_fail, n_check};
    comm_groups g;
    comm_groups_init(&g, 1, world, 1, COMM_BACKEND_MPI, COMM_MEM_HOST);
    comm_allreduce_sum(g.world, tot, 2, COMM_I64);
    comm_groups_free(&g);
    if (rank == 0)
        printf("test_pipe_dp: np=%d, %d cases, %lld checks over all ranks, %lld failed\n", world, n_cases,
               (long long)tot[1], (long long)tot[0]);
    comm_finalize();
    return tot[0] == 0 ? 0 : 1;
}
