/* bench_kernels.c — speed of the kernels of one device at GPT-2 124M shapes
 * (C = 768, 12 heads of 64, 4C MLP): matmul forward and backward in GFLOP/s
 * per layer shape, causal attention forward and backward in milliseconds,
 * the cross-entropy forward over GPT-2's vocabulary (one pass, three pieces),
 * each the median of REPS runs after one warm-up. With "cpu" it also times
 * the plain-loop matmul of llm.c's train_gpt2.c (OpenMP over rows) as the
 * baseline the BLAS path replaces.
 *
 *   bench_kernels cpu|cuda [N=B*T rows] [T] [REPS]      (tests/bench_kernels.sh) */
#include "../kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const kern_ops *K;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static void *dev_rand(int64_t n)
{
    float *h = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    void *d = K->alloc(n * (int64_t)sizeof(float));
    if (!d) {
        fprintf(stderr, "bench_kernels: allocation failed\n");
        exit(1);
    }
    K->to_device(d, h, n * (int64_t)sizeof(float));
    free(h);
    return d;
}

/* llm.c train_gpt2.c matmul_forward_naive: out[bt,o] = bias[o] + sum_i inp[bt,i] w[o,i] */
static void naive_matmul(float *out, const float *inp, const float *w, const float *bias, int N, int C, int OC)
{
#pragma omp parallel for
    for (int bt = 0; bt < N; bt++)
        for (int o = 0; o < OC; o++) {
            float v = bias ? bias[o] : 0.0f;
            const float *x = inp + (int64_t)bt * C, *wr = w + (int64_t)o * C;
            for (int i = 0; i < C; i++)
                v += x[i] * wr[i];
            out[(int64_t)bt * OC + o] = v;
        }
}

#define MAXREPS 64
typedef void (*thunk)(void *);
static double median_s(thunk f, void *arg, int reps)
{
    double t[MAXREPS];
    f(arg); /* warm-up */
    K->sync();
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        f(arg);
        K->sync();
        t[r] = now_s() - t0;
    }
    qsort(t, reps, sizeof(double), cmp_d);
    return t[reps / 2];
}

typedef struct {
    float *out, *inp, *w, *b, *dout, *dinp, *dw, *db;
    int N, C, OC;
} mm_args;
static void mm_fwd(void *p)
{
    mm_args *a = p;
    K->matmul_forward(a->out, a->inp, a->w, a->b, a->N, a->C, a->OC);
}
static void mm_bwd(void *p)
{
    mm_args *a = p;
    K->matmul_backward(a->dinp, a->dw, a->db, a->dout, a->inp, a->w, a->N, a->C, a->OC, 0.0f);
}
static void mm_naive(void *p)
{
    mm_args *a = p;
    naive_matmul(a->out, a->inp, a->w, a->b, a->N, a->C, a->OC);
}

typedef struct {
    float *out, *att, *qkv, *dout, *dqkv, *datt;
    int B, T, NH, HS;
} at_args;
static void at_fwd(void *p)
{
    at_args *a = p;
    K->attention_forward(a->out, a->att, a->qkv, a->B, a->T, a->NH, a->HS);
}
static void fl_fwd(void *p)
{
    at_args *a = p; /* lse in datt's space (B*NH*T floats) */
    K->attention_forward_flash(a->out, a->datt, a->qkv, a->B, a->T, a->NH, a->HS);
}
static void fl_bwd(void *p)
{
    at_args *a = p;
    K->attention_backward_flash(a->dqkv, a->dout, a->qkv, a->out, a->datt, a->B, a->T, a->NH, a->HS);
}
static void at_bwd(void *p)
{
    at_args *a = p;
    K->attention_backward(a->dqkv, a->datt, a->dout, a->qkv, a->att, a->B, a->T, a->NH, a->HS);
}

typedef struct {
    float *logits, *mx, *se, *tl;
    int *tgt;
    int N, V;
} xe_args;
static void xe_one(void *p)
{
    xe_args *a = p;
    K->xent_forward(a->mx, a->se, a->tl, a->logits, a->tgt, a->N, a->V, 0);
}
static void xe_three(void *p)
{
    xe_args *a = p;
    K->xent_rowmax(a->mx, a->logits, a->N, a->V);
    K->xent_sumexp(a->se, a->logits, a->mx, a->N, a->V);
    K->xent_target(a->tl, a->logits, a->tgt, a->N, a->V, 0);
}

int main(int argc, char **argv)
{
    const char *backend = argc > 1 ? argv[1] : "cpu";
    int N = argc > 2 ? atoi(argv[2]) : 1024, T = argc > 3 ? atoi(argv[3]) : 1024;
    int reps = argc > 4 ? atoi(argv[4]) : 5;
    if (strcmp(backend, "cpu") == 0)
        K = kern_ops_cpu();
#if TRIAD_HAVE_CUDA
    else if (strcmp(backend, "cuda") == 0)
        K = kern_ops_cuda();
#endif
    else {
        fprintf(stderr, "triad: bench_kernels: backend '%s' not available (cpu%s)\n", backend,
                TRIAD_HAVE_CUDA ? "|cuda" : "");
        return 2;
    }
    if (N < 1 || T < 1 || N % T != 0 || reps < 1 || reps > MAXREPS) {
        fprintf(stderr, "triad: bench_kernels: need N (%d) a multiple of T (%d) and 1 <= REPS (%d) <= %d\n", N, T,
                reps, MAXREPS);
        return 2;
    }
    const int C = 768, NH = 12, HS = 64, B = N / T;
    struct {
        const char *name;
        int C, OC;
    } shapes[] = {{"qkv      768->2304", C, 3 * C},
                  {"attproj  768->768", C, C},
                  {"fc       768->3072", C, 4 * C},
                  {"fcproj  3072->768", 4 * C, C}};
    printf("backend %s, N = B*T = %d rows, median of %d\n", K->name, N, reps);
    printf("%-20s %12s %12s\n", "matmul", "fwd GFLOP/s", "bwd GFLOP/s");
    for (int s = 0; s < 4; s++) {
        int c = shapes[s].C, oc = shapes[s].OC;
        mm_args a = {dev_rand((int64_t)N * oc), dev_rand((int64_t)N * c), dev_rand((int64_t)oc * c), dev_rand(oc),
                     dev_rand((int64_t)N * oc), dev_rand((int64_t)N * c), dev_rand((int64_t)oc * c), dev_rand(oc),
                     N, c, oc};
        double flop = 2.0 * N * c * oc;
        double tf = median_s(mm_fwd, &a, reps), tb = median_s(mm_bwd, &a, reps);
        printf("%-20s %12.1f %12.1f\n", shapes[s].name, flop / tf * 1e-9, 2 * flop / tb * 1e-9);
        if (s == 0 && K == kern_ops_cpu()) {
            double tn = median_s(mm_naive, &a, reps < 3 ? reps : 3);
            printf("%-20s %12.1f %12s   (llm.c train_gpt2.c loops; BLAS path %.1fx faster)\n", "  naive loops",
                   flop / tn * 1e-9, "-", tn / tf);
        }
        float *bufs[] = {a.out, a.inp, a.w, a.b, a.dout, a.dinp, a.dw, a.db};
        for (int i = 0; i < 8; i++)
            K->free(bufs[i]);
    }
    at_args at = {dev_rand((int64_t)N * C),           dev_rand((int64_t)B * NH * T * T), dev_rand((int64_t)N * 3 * C),
                  dev_rand((int64_t)N * C),           dev_rand((int64_t)N * 3 * C),      dev_rand((int64_t)B * NH * T * T),
                  B,                                  T,                                 NH,
                  HS};
    double tf = median_s(at_fwd, &at, reps), tb = median_s(at_bwd, &at, reps);
    printf("attention B=%d T=%d NH=%d HS=%d: forward %.3f ms, backward %.3f ms\n", B, T, NH, HS, tf * 1e3,
           tb * 1e3);
    if (K->attention_forward_flash) {
        tf = median_s(fl_fwd, &at, reps), tb = median_s(fl_bwd, &at, reps);
        printf("attention flash (no T x T): forward %.3f ms, backward %.3f ms\n", tf * 1e3, tb * 1e3);
    }
    /* cross-entropy forward over GPT-2's vocabulary: the one pass the trainer
     * runs at tp 1 against the three pieces tp > 1 needs (GB/s of logits read) */
    {
        const int V = 50257;
        xe_args xe = {dev_rand((int64_t)N * V), dev_rand(N), dev_rand(N), dev_rand(N), NULL, N, V};
        int *h = malloc(sizeof(int) * (size_t)N);
        for (int i = 0; i < N; i++)
            h[i] = (int)((i * 7919u) % (unsigned)V);
        xe.tgt = K->alloc((int64_t)sizeof(int) * N);
        K->to_device(xe.tgt, h, (int64_t)sizeof(int) * N);
        free(h);
        double t1 = median_s(xe_one, &xe, reps), t3 = median_s(xe_three, &xe, reps), gb = 4.0 * N * V * 1e-9;
        printf("cross-entropy fwd %d x %d: one pass %.3f ms (%.0f GB/s), three pieces %.3f ms\n", N, V, t1 * 1e3,
               gb / t1, t3 * 1e3);
        float *bufs[] = {xe.logits, xe.mx, xe.se, xe.tl};
        for (int i = 0; i < 4; i++)
            K->free(bufs[i]);
        K->free(xe.tgt);
    }
    return 0;
}
