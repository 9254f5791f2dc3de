/* kern_ops_cpu.c — the CPU backend as a kern_ops table: host memory,
 * plain memcpy, and the kern_cpu_ ops of kern_cpu.c.
 *
 * In fp32 storage the ops are the kern_cpu_ functions themselves. In bf16
 * storage (set_storage) each op is the reference of what a bf16 kernel
 * computes: its bf16 operands widened to fp32, the fp32 kernel, and each
 * tensor it writes rounded to bf16 once (one that it accumulates into, or
 * updates in place, widened first). The fp32 copies live in scratch
 * buffers kept between calls. Slow (a conversion pass per operand): the
 * reference for the device backends, not a way to train on the CPU. */
#include "../kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *cpu_alloc(int64_t bytes) { return calloc(1, bytes > 0 ? (size_t)bytes : 1); }
static void cpu_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, int64_t bytes)
{
    if (bytes > 0)
        memcpy(dst, src, (size_t)bytes);
}
static void cpu_memset0(void *p, int64_t bytes)
{
    if (bytes > 0)
        memset(p, 0, (size_t)bytes);
}
static void cpu_sync(void) {}

/* ---- storage --------------------------------------------------------------- */

static int g_store = KERN_STORE_FP32;
static int cpu_set_storage(int mode)
{
    if (mode != KERN_STORE_FP32 && mode != KERN_STORE_BF16)
        return -1;
    g_store = mode;
    return 0;
}
#define BF16 (g_store == KERN_STORE_BF16)

/* fp32 scratch for the operands of one op: slot i, n elements */
enum { N_TMP = 6 };
static float *tmp_buf(int i, int64_t n)
{
    static float *buf[N_TMP];
    static int64_t cap[N_TMP];
    if (n > cap[i]) {
        free(buf[i]);
        buf[i] = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        if (!buf[i]) {
            fprintf(stderr, "triad: out of host memory for a bf16 operand (%lld elements)\n", (long long)n);
            exit(1);
        }
        cap[i] = n;
    }
    return buf[i];
}
/* bf16 src (n) widened into slot i; NULL stays NULL */
static float *widen(int i, const void *src, int64_t n)
{
    if (!src)
        return NULL;
    float *f = tmp_buf(i, n);
    const uint16_t *h = src;
    for (int64_t k = 0; k < n; k++)
        f[k] = kern_bf16_value(h[k]);
    return f;
}
static void narrow(void *dst, const float *src, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t k = 0; k < n; k++)
        h[k] = kern_bf16_bits(src[k]);
}

/* ---- the ops ----------------------------------------------------------------- */

static void cpu_encoder_forward(void *out, const int *tok, const float *wte, const float *wpe, int B, int T, int C,
                                int v0, int V, int add_pos)
{
    int64_t n = (int64_t)B * T * C;
    float *o = BF16 ? tmp_buf(0, n) : out;
    kern_cpu_encoder_forward(o, tok, wte, wpe, B, T, C, v0, V, add_pos);
    if (BF16)
        narrow(out, o, n);
}
static void cpu_encoder_backward(float *dwte, float *dwpe, const void *dout, const int *tok, int B, int T, int C,
                                 int v0, int V, int add_pos)
{
    const float *d = BF16 ? widen(0, dout, (int64_t)B * T * C) : dout;
    kern_cpu_encoder_backward(dwte, dwpe, d, tok, B, T, C, v0, V, add_pos);
}
static void cpu_layernorm_forward(void *out, float *mean, float *rstd, const void *inp, const float *w,
                                  const float *b, int N, int C)
{
    int64_t n = (int64_t)N * C;
    if (!BF16) {
        kern_cpu_layernorm_forward(out, mean, rstd, inp, w, b, N, C);
        return;
    }
    float *o = tmp_buf(0, n);
    kern_cpu_layernorm_forward(o, mean, rstd, widen(1, inp, n), w, b, N, C);
    narrow(out, o, n);
}
static void cpu_layernorm_backward(void *dinp, float *dw, float *db, const void *dout, const void *inp,
                                   const float *w, const float *mean, const float *rstd, int N, int C)
{
    int64_t n = (int64_t)N * C;
    if (!BF16) {
        kern_cpu_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
        return;
    }
    float *di = widen(0, dinp, n); /* accumulated into */
    kern_cpu_layernorm_backward(di, dw, db, widen(1, dout, n), widen(2, inp, n), w, mean, rstd, N, C);
    narrow(dinp, di, n);
}
static void cpu_matmul_forward(void *out, const void *inp, const void *weight, const void *bias, int N, int C,
                               int OC)
{
    if (!BF16) {
        kern_cpu_matmul_forward(out, inp, weight, bias, N, C, OC);
        return;
    }
    float *o = tmp_buf(0, (int64_t)N * OC);
    kern_cpu_matmul_forward(o, widen(1, inp, (int64_t)N * C), widen(2, weight, (int64_t)OC * C), widen(3, bias, OC), N,
                            C, OC);
    narrow(out, o, (int64_t)N * OC);
}
static void cpu_matmul_backward(void *dinp, float *dweight, float *dbias, const void *dout, const void *inp,
                                const void *weight, int N, int C, int OC, float dinp_beta)
{
    if (!BF16) {
        kern_cpu_matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC, dinp_beta);
        return;
    }
    int64_t ni = (int64_t)N * C;
    float *di = NULL;
    if (dinp)
        di = dinp_beta != 0.0f ? widen(0, dinp, ni) : tmp_buf(0, ni);
    kern_cpu_matmul_backward(di, dweight, dbias, widen(1, dout, (int64_t)N * OC), widen(2, inp, ni),
                             widen(3, weight, (int64_t)OC * C), N, C, OC, dinp_beta);
    if (dinp)
        narrow(dinp, di, ni);
}
/* the ops model.c would call one after the other, as one (kernels.h): in
 * fp32 storage exactly those ops; in bf16 storage each output rounded once
 * from the fp32 value the fused GPU epilogue holds */
static void cpu_matmul_gelu_forward(void *out, void *pre, const void *inp, const void *weight, const void *bias,
                                    int N, int C, int OC)
{
    int64_t n = (int64_t)N * OC;
    if (!BF16) {
        kern_cpu_matmul_forward(pre, inp, weight, bias, N, C, OC);
        kern_cpu_gelu_forward(out, pre, n);
        return;
    }
    float *p = tmp_buf(0, n), *o = tmp_buf(4, n);
    kern_cpu_matmul_forward(p, widen(1, inp, (int64_t)N * C), widen(2, weight, (int64_t)OC * C), widen(3, bias, OC), N,
                            C, OC);
    kern_cpu_gelu_forward(o, p, n);
    narrow(pre, p, n);
    narrow(out, o, n);
}
static void cpu_matmul_gelu_backward(void *dpre, float *dweight, float *dbias, const void *dout, const void *inp,
                                     const void *pre, const void *weight, void *dscratch, int N, int C, int OC)
{
    int64_t ni = (int64_t)N * C;
    if (!BF16) {
        kern_cpu_matmul_backward(dscratch, dweight, dbias, dout, inp, weight, N, C, OC, 0.0f);
        kern_cpu_gelu_backward(dpre, pre, dscratch, ni);
        return;
    }
    float *di = tmp_buf(0, ni), *d = tmp_buf(4, ni);
    kern_cpu_matmul_backward(di, dweight, dbias, widen(1, dout, (int64_t)N * OC), widen(2, inp, ni),
                             widen(3, weight, (int64_t)OC * C), N, C, OC, 0.0f);
    kern_cpu_gelu_backward(d, widen(5, pre, ni), di, ni);
    narrow(dpre, d, ni);
}
static void cpu_attention_forward(void *out, void *att, const void *qkv, int B, int T, int NH, int HS)
{
    if (!BF16) {
        kern_cpu_attention_forward(out, att, qkv, B, T, NH, HS);
        return;
    }
    int64_t no = (int64_t)B * T * NH * HS, na = (int64_t)B * NH * T * T;
    float *o = tmp_buf(0, no), *a = tmp_buf(1, na);
    kern_cpu_attention_forward(o, a, widen(2, qkv, 3 * no), B, T, NH, HS);
    narrow(out, o, no);
    narrow(att, a, na);
}
static void cpu_attention_backward(void *dqkv, void *datt, const void *dout, const void *qkv, const void *att,
                                   int B, int T, int NH, int HS)
{
    if (!BF16) {
        kern_cpu_attention_backward(dqkv, datt, dout, qkv, att, B, T, NH, HS);
        return;
    }
    int64_t no = (int64_t)B * T * NH * HS, na = (int64_t)B * NH * T * T;
    float *dq = tmp_buf(0, 3 * no), *da = tmp_buf(1, na);
    kern_cpu_attention_backward(dq, da, widen(2, dout, no), widen(3, qkv, 3 * no), widen(4, att, na), B, T, NH, HS);
    narrow(dqkv, dq, 3 * no);
    narrow(datt, da, na);
}
static void cpu_attention_forward_flash(void *out, float *lse, const void *qkv, int B, int T, int NH, int HS)
{
    if (!BF16) {
        kern_cpu_attention_forward_flash(out, lse, qkv, B, T, NH, HS);
        return;
    }
    int64_t no = (int64_t)B * T * NH * HS;
    float *o = tmp_buf(0, no);
    kern_cpu_attention_forward_flash(o, lse, widen(1, qkv, 3 * no), B, T, NH, HS);
    narrow(out, o, no);
}
static void cpu_attention_backward_flash(void *dqkv, const void *dout, const void *qkv, const void *out,
                                         const float *lse, int B, int T, int NH, int HS)
{
    if (!BF16) {
        kern_cpu_attention_backward_flash(dqkv, dout, qkv, out, lse, B, T, NH, HS);
        return;
    }
    int64_t no = (int64_t)B * T * NH * HS;
    float *dq = tmp_buf(0, 3 * no);
    kern_cpu_attention_backward_flash(dq, widen(1, dout, no), widen(2, qkv, 3 * no), widen(3, out, no), lse, B, T,
                                      NH, HS);
    narrow(dqkv, dq, 3 * no);
}
static void cpu_gelu_forward(void *out, const void *inp, int64_t n)
{
    if (!BF16) {
        kern_cpu_gelu_forward(out, inp, n);
        return;
    }
    float *o = tmp_buf(0, n);
    kern_cpu_gelu_forward(o, widen(1, inp, n), n);
    narrow(out, o, n);
}
static void cpu_gelu_backward(void *dinp, const void *inp, const void *dout, int64_t n)
{
    if (!BF16) {
        kern_cpu_gelu_backward(dinp, inp, dout, n);
        return;
    }
    float *d = tmp_buf(0, n);
    kern_cpu_gelu_backward(d, widen(1, inp, n), widen(2, dout, n), n);
    narrow(dinp, d, n);
}
static void cpu_residual_forward(void *out, const void *a, const void *b, int64_t n)
{
    if (!BF16) {
        kern_cpu_residual_forward(out, a, b, n);
        return;
    }
    float *o = tmp_buf(0, n);
    kern_cpu_residual_forward(o, widen(1, a, n), widen(2, b, n), n);
    narrow(out, o, n);
}
static void cpu_add_inplace(void *y, const void *x, int64_t n)
{
    if (!BF16) {
        kern_cpu_add_inplace(y, x, n);
        return;
    }
    float *f = widen(0, y, n);
    kern_cpu_add_inplace(f, widen(1, x, n), n);
    narrow(y, f, n);
}
static void cpu_bias_residual(void *x, const float *b, const void *res, int N, int C)
{
    int64_t n = (int64_t)N * C;
    float *f = BF16 ? widen(0, x, n) : x;
    const float *r = BF16 ? widen(1, res, n) : res;
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) {
            int64_t k = (int64_t)i * C + c;
            float v = f[k] + b[c]; /* rounded to fp32 here, as a separate bias add would */
            f[k] = r ? v + r[k] : v;
        }
    if (BF16)
        narrow(x, f, n);
}
/* the cross-entropy pieces read the logits (N, V) */
#define LOGITS(l, N, V) (BF16 ? widen(0, (l), (int64_t)(N) * (V)) : (const float *)(l))
static void cpu_xent_rowmax(float *rowmax, const void *logits, int N, int V)
{
    kern_cpu_xent_rowmax(rowmax, LOGITS(logits, N, V), N, V);
}
static void cpu_xent_sumexp(float *sumexp, const void *logits, const float *gmax, int N, int V)
{
    kern_cpu_xent_sumexp(sumexp, LOGITS(logits, N, V), gmax, N, V);
}
static void cpu_xent_target(float *tlogit, const void *logits, const int *targets, int N, int V, int v0)
{
    kern_cpu_xent_target(tlogit, LOGITS(logits, N, V), targets, N, V, v0);
}
static void cpu_xent_forward(float *rowmax, float *sumexp, float *tlogit, const void *logits, const int *targets,
                             int N, int V, int v0)
{
    kern_cpu_xent_forward(rowmax, sumexp, tlogit, LOGITS(logits, N, V), targets, N, V, v0);
}
static void cpu_xent_backward_inplace(void *logits, const float *gmax, const float *gsum, const int *targets, int N,
                                      int V, int v0, float scale)
{
    if (!BF16) {
        kern_cpu_xent_backward_inplace(logits, gmax, gsum, targets, N, V, v0, scale);
        return;
    }
    float *l = widen(0, logits, (int64_t)N * V);
    kern_cpu_xent_backward_inplace(l, gmax, gsum, targets, N, V, v0, scale);
    narrow(logits, l, (int64_t)N * V);
}
#undef LOGITS

static void cpu_to_bf16(uint16_t *dst, const float *src, int64_t n) { narrow(dst, src, n); }

static void cpu_sum_squares_many(double *out, const float *base, const int64_t *off, const int64_t *len, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = kern_cpu_sum_squares(base + off[i], len[i]);
}

static const kern_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
    .encoder_forward = cpu_encoder_forward,
    .encoder_backward = cpu_encoder_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .residual_forward = cpu_residual_forward,
    .add_inplace = cpu_add_inplace,
    .xent_rowmax = cpu_xent_rowmax,
    .xent_sumexp = cpu_xent_sumexp,
    .xent_target = cpu_xent_target,
    .xent_backward_inplace = cpu_xent_backward_inplace,
    .adamw = kern_cpu_adamw,
    .sum_squares = kern_cpu_sum_squares,
    .scale = kern_cpu_scale,
    .attention_forward_flash = cpu_attention_forward_flash,
    .attention_backward_flash = cpu_attention_backward_flash,
    .to_bf16 = cpu_to_bf16,
    .copy = cpu_copy,
    .bias_residual = cpu_bias_residual,
    .set_math = kern_cpu_set_math,
    .sum_squares_many = cpu_sum_squares_many,
    .xent_forward = cpu_xent_forward,
    .set_storage = cpu_set_storage,
    .add_f32 = kern_cpu_add_inplace,
    .matmul_gelu_forward = cpu_matmul_gelu_forward,
    .matmul_gelu_backward = cpu_matmul_gelu_backward,
};

const kern_ops *kern_ops_cpu(void) { return &cpu_ops; }
