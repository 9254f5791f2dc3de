/* kern_cpu.c — the CPU backend of kernels.h: matrix products through
 * OpenBLAS (cblas_sgemm), the rest as plain loops with OpenMP over rows.
 * Attention runs as two GEMMs per (batch, head) — scores and weighted values
 * — so the T x T work goes through BLAS too. */
#include "../kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- GEMM and its math mode -------------------------------------------------
 * KERN_MATH_BF16 rounds both inputs of every GEMM to bfloat16 (nearest even)
 * and accumulates in fp32, as tensor-core GEMMs on bf16 inputs do; the
 * default is plain fp32. */
static int g_math = KERN_MATH_FP32;

void kern_cpu_set_math(int mode) { g_math = mode; }
int kern_cpu_math(void) { return g_math; }

uint16_t kern_bf16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) /* Inf stays Inf, NaN stays (a quiet) NaN */
        return (uint16_t)((u >> 16) | ((u & 0x007fffffu) ? 0x40u : 0u));
    u += 0x7fffu + ((u >> 16) & 1u); /* finite: round to nearest even */
    return (uint16_t)(u >> 16);
}
float kern_bf16_value(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}
float kern_bf16_round(float x) { return kern_bf16_value(kern_bf16_bits(x)); }

/* a dense bf16-rounded copy of the rows x cols matrix at a (leading dim ld) */
static float *rounded(const float *a, int rows, int cols, int ld)
{
    float *r = malloc(sizeof(float) * (size_t)rows * (size_t)cols + 1);
    if (!r)
        abort();
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            r[(int64_t)i * cols + j] = kern_bf16_round(a[(int64_t)i * ld + j]);
    return r;
}

/* cblas_sgemm, row major, in the current math mode */
static void gemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (g_math != KERN_MATH_BF16) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int ar = ta == CblasNoTrans ? M : K, ac = ta == CblasNoTrans ? K : M;
    int br = tb == CblasNoTrans ? K : N, bc = tb == CblasNoTrans ? N : K;
    float *a = rounded(A, ar, ac, lda), *b = rounded(B, br, bc, ldb);
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, a, ac, b, bc, beta, C, ldc);
    free(a);
    free(b);
}

void kern_cpu_encoder_forward(float *out, const int *tok, const float *wte, const float *wpe, int B, int T,
                              int C, int v0, int V, int add_pos)
{
#pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T, id = tok[bt] - v0;
        float *o = out + (int64_t)bt * C;
        const float *p = wpe + (int64_t)t * C;
        if (id >= 0 && id < V) {
            const float *e = wte + (int64_t)id * C;
            for (int c = 0; c < C; c++)
                o[c] = e[c] + (add_pos ? p[c] : 0.0f);
        } else {
            for (int c = 0; c < C; c++)
                o[c] = add_pos ? p[c] : 0.0f;
        }
    }
}

void kern_cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tok, int B, int T,
                               int C, int v0, int V, int add_pos)
{
    /* serial over rows: several positions may hit the same token row */
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T, id = tok[bt] - v0;
        const float *d = dout + (int64_t)bt * C;
        if (id >= 0 && id < V) {
            float *e = dwte + (int64_t)id * C;
            for (int c = 0; c < C; c++)
                e[c] += d[c];
        }
        if (add_pos) {
            float *p = dwpe + (int64_t)t * C;
            for (int c = 0; c < C; c++)
                p[c] += d[c];
        }
    }
}

void kern_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                const float *b, int N, int C)
{
    const float eps = 1e-5f;
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *x = inp + (int64_t)i * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        float *o = out + (int64_t)i * C;
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

void kern_cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, const float *mean, const float *rstd, int N, int C)
{
    /* parameter gradients: serial over rows (shared accumulators) */
    for (int i = 0; i < N; i++) {
        const float *x = inp + (int64_t)i * C, *d = dout + (int64_t)i * C;
        float m = mean[i], s = rstd[i];
        for (int c = 0; c < C; c++) {
            db[c] += d[c];
            dw[c] += (x[c] - m) * s * d[c];
        }
    }
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *x = inp + (int64_t)i * C, *d = dout + (int64_t)i * C;
        float *di = dinp + (int64_t)i * C;
        float m = mean[i], s = rstd[i];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s, dnorm = w[c] * d[c];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s, dnorm = w[c] * d[c];
            di[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}

void kern_cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                             int C, int OC)
{
    if (bias) {
#pragma omp parallel for
        for (int i = 0; i < N; i++)
            memcpy(out + (int64_t)i * OC, bias, sizeof(float) * OC);
    }
    gemm(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C,
                bias ? 1.0f : 0.0f, out, OC);
}

void kern_cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, int N, int C, int OC, float dinp_beta)
{
    if (dinp) /* (N,OC) @ (OC,C) */
        gemm(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
                    dinp_beta, dinp, C);
    /* (OC,N) @ (N,C) */
    gemm(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) {
#pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int i = 0; i < N; i++)
                s += dout[(int64_t)i * OC + o];
            dbias[o] += s;
        }
    }
}

/* row[j] <- exp(row[j] - max) for j < n; returns the sum, *mx the max */
static float exp_row(float *row, int n, float *mx)
{
    float m = -INFINITY, sum = 0.0f;
    for (int j = 0; j < n; j++)
        m = row[j] > m ? row[j] : m;
    for (int j = 0; j < n; j++) {
        row[j] = expf(row[j] - m);
        sum += row[j];
    }
    *mx = m;
    return sum;
}

void kern_cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH, int HS)
{
    int C = NH * HS, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (int64_t)b * T * C3 + h * HS;
            const float *k = q + C, *v = q + 2 * C;
            float *a = att + ((int64_t)b * NH + h) * T * T;
            /* scores (T,T) = q (T,HS) k^T (HS,T) * scale */
            gemm(CblasNoTrans, CblasTrans, T, T, HS, scale, q, C3, k, C3, 0.0f, a, T);
            for (int t = 0; t < T; t++) {
                float *row = a + (int64_t)t * T, mx;
                float inv = 1.0f / exp_row(row, t + 1, &mx);
                for (int t2 = 0; t2 <= t; t2++)
                    row[t2] *= inv;
                for (int t2 = t + 1; t2 < T; t2++)
                    row[t2] = 0.0f;
            }
            /* out (T,HS) = att (T,T) v (T,HS) */
            gemm(CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, v, C3, 0.0f,
                        out + (int64_t)b * T * C + h * HS, C);
        }
}

void kern_cpu_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                                 const float *att, int B, int T, int NH, int HS)
{
    int C = NH * HS, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (int64_t)b * T * C3 + h * HS;
            const float *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + (int64_t)b * T * C3 + h * HS;
            float *dk = dq + C, *dv = dq + 2 * C;
            const float *a = att + ((int64_t)b * NH + h) * T * T;
            float *da = datt + ((int64_t)b * NH + h) * T * T;
            const float *dO = dout + (int64_t)b * T * C + h * HS;
            /* datt (T,T) = dO (T,HS) v^T; dv (T,HS) = att^T dO */
            gemm(CblasNoTrans, CblasTrans, T, T, HS, 1.0f, dO, C, v, C3, 0.0f, da, T);
            gemm(CblasTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, dO, C, 0.0f, dv, C3);
            /* softmax backward, in place: dpre = att (datt - sum att datt), masked */
            for (int t = 0; t < T; t++) {
                const float *ar = a + (int64_t)t * T;
                float *dr = da + (int64_t)t * T;
                float dot = 0.0f;
                for (int t2 = 0; t2 <= t; t2++)
                    dot += ar[t2] * dr[t2];
                for (int t2 = 0; t2 <= t; t2++)
                    dr[t2] = ar[t2] * (dr[t2] - dot) * scale;
                for (int t2 = t + 1; t2 < T; t2++)
                    dr[t2] = 0.0f;
            }
            /* dq = dpre k; dk = dpre^T q */
            gemm(CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, da, T, k, C3, 0.0f, dq, C3);
            gemm(CblasTrans, CblasNoTrans, T, HS, T, 1.0f, da, T, q, C3, 0.0f, dk, C3);
        }
}

/* Fused (flash) attention, the reference of kernels/cuda/flash_tc.cuh: no
 * T x T matrix, two passes per query row (scores and their max, then the
 * probabilities and the weighted values). In KERN_MATH_BF16 the operands
 * are rounded to bf16 where the GPU kernels round them (q, k, v, the
 * probabilities before P V, dO and dS before their products), every sum
 * in fp32; in KERN_MATH_FP32 nothing is rounded. */
static inline float att_round(float x) { return g_math == KERN_MATH_BF16 ? kern_bf16_round(x) : x; }

/* q, k, v of head h of sequence b as (T, HS) rows, each element as the
 * math mode rounds it (att_round), in a new buffer of 3 T HS + extra floats
 * (q, k, v, then `extra` of scratch at *scratch); the caller frees it. */
static float *att_head(const float *qkv, int b, int h, int T, int NH, int HS, size_t extra, const float **q,
                       const float **k, const float **v, float **scratch)
{
    size_t n = (size_t)T * HS;
    float *r = malloc(sizeof(float) * (3 * n + extra));
    if (!r)
        abort(); /* as rounded(): a kernel has no error path */
    int C = NH * HS, C3 = 3 * C;
    for (int part = 0; part < 3; part++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < HS; d++)
                r[((int64_t)part * T + t) * HS + d] = att_round(qkv[((int64_t)b * T + t) * C3 + part * C + h * HS + d]);
    *q = r, *k = r + n, *v = r + 2 * n, *scratch = r + 3 * n;
    return r;
}

void kern_cpu_attention_forward_flash(float *out, float *lse, const float *qkv, int B, int T, int NH, int HS)
{
    int C = NH * HS;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q, *k, *v;
            float *s; /* one row of scores, then probabilities */
            float *r = att_head(qkv, b, h, T, NH, HS, (size_t)T, &q, &k, &v, &s);
            for (int t = 0; t < T; t++) {
                for (int j = 0; j <= t; j++) {
                    float acc = 0.0f;
                    for (int d = 0; d < HS; d++)
                        acc += q[(int64_t)t * HS + d] * k[(int64_t)j * HS + d];
                    s[j] = acc * scale;
                }
                float mx, l = exp_row(s, t + 1, &mx);
                for (int j = 0; j <= t; j++)
                    s[j] = att_round(s[j]); /* the probabilities as P V sees them */
                float *o = out + ((int64_t)b * T + t) * C + h * HS, inv = 1.0f / l;
                for (int d = 0; d < HS; d++) {
                    float acc = 0.0f;
                    for (int j = 0; j <= t; j++)
                        acc += s[j] * v[(int64_t)j * HS + d];
                    o[d] = acc * inv;
                }
                lse[((int64_t)b * NH + h) * T + t] = mx + logf(l);
            }
            free(r);
        }
}

void kern_cpu_attention_backward_flash(float *dqkv, const float *dout, const float *qkv, const float *out,
                                       const float *lse, int B, int T, int NH, int HS)
{
    int C = NH * HS, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q, *k, *v;
            float *gr; /* one row of dO as the math rounds it */
            float *r = att_head(qkv, b, h, T, NH, HS, (size_t)HS, &q, &k, &v, &gr);
            float *dbase = dqkv + (int64_t)b * T * C3 + h * HS;
            for (int t = 0; t < T; t++)
                for (int part = 0; part < 3; part++)
                    memset(dbase + (int64_t)t * C3 + part * C, 0, sizeof(float) * (size_t)HS);
            for (int t = 0; t < T; t++) {
                const float *dO = dout + ((int64_t)b * T + t) * C + h * HS, *O = out + ((int64_t)b * T + t) * C + h * HS;
                const float *qt = q + (int64_t)t * HS;
                float D = 0.0f, L = lse[((int64_t)b * NH + h) * T + t];
                for (int d = 0; d < HS; d++) {
                    D += dO[d] * O[d];
                    gr[d] = att_round(dO[d]);
                }
                float *dq = dbase + (int64_t)t * C3;
                for (int j = 0; j <= t; j++) {
                    const float *kj = k + (int64_t)j * HS, *vj = v + (int64_t)j * HS;
                    float sc = 0.0f, dp = 0.0f;
                    for (int d = 0; d < HS; d++) {
                        sc += qt[d] * kj[d];
                        dp += gr[d] * vj[d];
                    }
                    float p = expf(sc * scale - L), ds = att_round(p * (dp - D)), pr = att_round(p);
                    float *dk = dbase + (int64_t)j * C3 + C, *dv = dk + C;
                    for (int d = 0; d < HS; d++) {
                        dq[d] += ds * kj[d] * scale;
                        dk[d] += ds * qt[d] * scale;
                        dv[d] += pr * gr[d];
                    }
                }
            }
            free(r);
        }
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

/* tanh through one expf (vectorisable, ~5x cheaper than tanhf here):
 * tanh(u) = 1 - 2 / (exp(2u) + 1); exact to float rounding, and saturates
 * to +-1 when exp overflows or underflows. */
static inline float fast_tanhf(float u) { return 1.0f - 2.0f / (expf(2.0f * u) + 1.0f); }

void kern_cpu_gelu_forward(float *out, const float *inp, int64_t n)
{
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + fast_tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

void kern_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n)
{
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float th = fast_tanhf(u), sech2 = 1.0f - th * th;
        float g = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] = g * dout[i];
    }
}

void kern_cpu_residual_forward(float *out, const float *a, const float *b, int64_t n)
{
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void kern_cpu_add_inplace(float *y, const float *x, int64_t n)
{
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* One row's pieces, shared by the piecewise functions and the one-pass
 * form (which so computes the same bits): the max of l[0..V), the sum of
 * exp(l - g) in double, the target's logit when this shard holds it. */
static float xent_row_max(const float *l, int V)
{
    float m = -INFINITY;
    for (int j = 0; j < V; j++)
        m = l[j] > m ? l[j] : m;
    return m;
}
static float xent_row_sumexp(const float *l, int V, float g)
{
    double s = 0.0;
    for (int j = 0; j < V; j++)
        s += expf(l[j] - g);
    return (float)s;
}
static float xent_row_target(const float *l, int V, int target, int v0)
{
    int id = target - v0;
    return (id >= 0 && id < V) ? l[id] : 0.0f;
}

void kern_cpu_xent_rowmax(float *rowmax, const float *logits, int N, int V)
{
#pragma omp parallel for
    for (int i = 0; i < N; i++)
        rowmax[i] = xent_row_max(logits + (int64_t)i * V, V);
}

void kern_cpu_xent_sumexp(float *sumexp, const float *logits, const float *gmax, int N, int V)
{
#pragma omp parallel for
    for (int i = 0; i < N; i++)
        sumexp[i] = xent_row_sumexp(logits + (int64_t)i * V, V, gmax[i]);
}

void kern_cpu_xent_target(float *tlogit, const float *logits, const int *targets, int N, int V, int v0)
{
    for (int i = 0; i < N; i++)
        tlogit[i] = xent_row_target(logits + (int64_t)i * V, V, targets[i], v0);
}

void kern_cpu_xent_forward(float *rowmax, float *sumexp, float *tlogit, const float *logits, const int *targets,
                           int N, int V, int v0)
{
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *l = logits + (int64_t)i * V;
        rowmax[i] = xent_row_max(l, V);
        sumexp[i] = xent_row_sumexp(l, V, rowmax[i]);
        tlogit[i] = xent_row_target(l, V, targets[i], v0);
    }
}

void kern_cpu_xent_backward_inplace(float *logits, const float *gmax, const float *gsum, const int *targets,
                                    int N, int V, int v0, float scale)
{
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        float *l = logits + (int64_t)i * V;
        float inv = 1.0f / gsum[i];
        for (int j = 0; j < V; j++)
            l[j] = expf(l[j] - gmax[i]) * inv * scale;
        int id = targets[i] - v0;
        if (id >= 0 && id < V)
            l[id] -= scale;
    }
}

void kern_cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                    float eps, float wd, int t)
{
    float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mh = mi / c1, vh = vi / c2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}

double kern_cpu_sum_squares(const float *x, int64_t n)
{
    double s = 0.0;
#pragma omp parallel for reduction(+ : s)
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * (double)x[i];
    return s;
}

void kern_cpu_scale(float *x, float s, int64_t n)
{
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}
