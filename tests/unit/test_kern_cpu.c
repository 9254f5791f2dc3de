/* test_kern_cpu.c — every CPU kernel against an independent naive
 * reference in double precision; every backward against central finite
 * differences of that reference (loss = sum(out * R) for a random R). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assert_close.h"
#include "../../kernels/kernels.h"

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static double urand(void)
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
static void fill(float *x, int n, double s)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)(s * urand());
}
static void tod(double *d, const float *f, int n)
{
    for (int i = 0; i < n; i++)
        d[i] = f[i];
}
static void assert_all_close(const float *a, const double *ref, int n, double rtol, double atol, const char *what)
{
    for (int i = 0; i < n; i++)
        if (!triad_close(a[i], ref[i], rtol, atol)) {
            print_error("%s[%d] = %.9g, reference %.9g\n", what, i, a[i], ref[i]);
            fail();
        }
}

/* ---- double references -------------------------------------------------------- */

static void ref_layernorm(double *out, const double *x, const double *w, const double *b, int N, int C)
{
    for (int i = 0; i < N; i++) {
        double m = 0, v = 0;
        for (int c = 0; c < C; c++)
            m += x[i * C + c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[i * C + c] - m) * (x[i * C + c] - m);
        v /= C;
        for (int c = 0; c < C; c++)
            out[i * C + c] = (x[i * C + c] - m) / sqrt(v + 1e-5) * w[c] + b[c];
    }
}

static void ref_matmul(double *out, const double *x, const double *w, const double *b, int N, int C, int OC)
{
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0;
            for (int c = 0; c < C; c++)
                s += x[i * C + c] * w[o * C + c];
            out[i * OC + o] = s;
        }
}

static void ref_attention(double *out, const double *qkv, int B, int T, int NH, int HS)
{
    int C = NH * HS;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double sc[64], mx = -1e300, sum = 0;
                for (int u = 0; u <= t; u++) {
                    double s = 0;
                    for (int d = 0; d < HS; d++)
                        s += qkv[(b * T + t) * 3 * C + h * HS + d] * qkv[(b * T + u) * 3 * C + C + h * HS + d];
                    sc[u] = s / sqrt((double)HS);
                    mx = sc[u] > mx ? sc[u] : mx;
                }
                for (int u = 0; u <= t; u++)
                    sum += (sc[u] = exp(sc[u] - mx));
                for (int d = 0; d < HS; d++) {
                    double o = 0;
                    for (int u = 0; u <= t; u++)
                        o += sc[u] / sum * qkv[(b * T + u) * 3 * C + 2 * C + h * HS + d];
                    out[(b * T + t) * C + h * HS + d] = o;
                }
            }
}

static double ref_gelu(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

/* ---- finite differences ---------------------------------------------------------- */

typedef void (*ref_fn)(double *out, double *in, void *ctx);

/* d(sum out*R)/d in[i] by central differences, h relative to |in|. */
static void fd_grad(ref_fn f, void *ctx, double *in, int n_in, int n_out, const double *R, double *grad)
{
    double *o1 = malloc(sizeof(double) * n_out), *o2 = malloc(sizeof(double) * n_out);
    for (int i = 0; i < n_in; i++) {
        double x = in[i], h = 1e-6 * (fabs(x) > 1 ? fabs(x) : 1);
        in[i] = x + h;
        f(o1, in, ctx);
        in[i] = x - h;
        f(o2, in, ctx);
        in[i] = x;
        double s = 0;
        for (int j = 0; j < n_out; j++)
            s += (o1[j] - o2[j]) * R[j];
        grad[i] = s / (2 * h);
    }
    free(o1);
    free(o2);
}

/* ---- layernorm -------------------------------------------------------------------------- */

typedef struct { int N, C, which; double *x, *w, *b; } ln_ctx;
static void ln_fn(double *out, double *in, void *vc)
{
    ln_ctx *c = vc;
    ref_layernorm(out, c->which == 0 ? in : c->x, c->which == 1 ? in : c->w, c->which == 2 ? in : c->b, c->N, c->C);
}

static void test_layernorm(void **state)
{
    (void)state;
    enum { N = 6, C = 16 };
    float x[N * C], w[C], b[C], out[N * C], mean[N], rstd[N], R[N * C];
    fill(x, N * C, 2.0), fill(w, C, 1.0), fill(b, C, 0.5), fill(R, N * C, 1.0);
    kern_cpu_layernorm_forward(out, mean, rstd, x, w, b, N, C);
    double xd[N * C], wd[C], bd[C], od[N * C], Rd[N * C];
    tod(xd, x, N * C), tod(wd, w, C), tod(bd, b, C), tod(Rd, R, N * C);
    ref_layernorm(od, xd, wd, bd, N, C);
    assert_all_close(out, od, N * C, 1e-5, 1e-5, "layernorm");
    float dx[N * C] = {0}, dw[C] = {0}, db[C] = {0};
    kern_cpu_layernorm_backward(dx, dw, db, R, x, w, mean, rstd, N, C);
    double g[N * C];
    ln_ctx c = {N, C, 0, xd, wd, bd};
    fd_grad(ln_fn, &c, xd, N * C, N * C, Rd, g);
    assert_all_close(dx, g, N * C, 1e-3, 1e-4, "layernorm dx");
    c.which = 1;
    fd_grad(ln_fn, &c, wd, C, N * C, Rd, g);
    assert_all_close(dw, g, C, 1e-3, 1e-4, "layernorm dw");
    c.which = 2;
    fd_grad(ln_fn, &c, bd, C, N * C, Rd, g);
    assert_all_close(db, g, C, 1e-3, 1e-4, "layernorm db");
}

/* ---- matmul ------------------------------------------------------------------------------- */

typedef struct { int N, C, OC, which; double *x, *w, *b; } mm_ctx;
static void mm_fn(double *out, double *in, void *vc)
{
    mm_ctx *c = vc;
    ref_matmul(out, c->which == 0 ? in : c->x, c->which == 1 ? in : c->w, c->which == 2 ? in : c->b, c->N, c->C,
               c->OC);
}

static void test_matmul(void **state)
{
    (void)state;
    enum { N = 5, C = 12, OC = 7 };
    float x[N * C], w[OC * C], b[OC], out[N * OC], R[N * OC];
    fill(x, N * C, 1.0), fill(w, OC * C, 1.0), fill(b, OC, 1.0), fill(R, N * OC, 1.0);
    kern_cpu_matmul_forward(out, x, w, b, N, C, OC);
    double xd[N * C], wd[OC * C], bd[OC], od[N * OC], Rd[N * OC];
    tod(xd, x, N * C), tod(wd, w, OC * C), tod(bd, b, OC), tod(Rd, R, N * OC);
    ref_matmul(od, xd, wd, bd, N, C, OC);
    assert_all_close(out, od, N * OC, 1e-5, 1e-5, "matmul");
    float dx[N * C], dw[OC * C] = {0}, db[OC] = {0};
    kern_cpu_matmul_backward(dx, dw, db, R, x, w, N, C, OC, 0.0f);
    double g[OC * C];
    mm_ctx c = {N, C, OC, 0, xd, wd, bd};
    fd_grad(mm_fn, &c, xd, N * C, N * OC, Rd, g);
    assert_all_close(dx, g, N * C, 1e-4, 1e-5, "matmul dx");
    c.which = 1;
    fd_grad(mm_fn, &c, wd, OC * C, N * OC, Rd, g);
    assert_all_close(dw, g, OC * C, 1e-4, 1e-5, "matmul dw");
    c.which = 2;
    fd_grad(mm_fn, &c, bd, OC, N * OC, Rd, g);
    assert_all_close(db, g, OC, 1e-4, 1e-5, "matmul db");
    /* accumulation: a second backward doubles the parameter gradients */
    kern_cpu_matmul_backward(dx, dw, db, R, x, w, N, C, OC, 0.0f);
    for (int o = 0; o < OC; o++)
        assert_close(db[o], 2 * g[o], 1e-4, 1e-5);
}

/* ---- attention ------------------------------------------------------------------------------ */

typedef struct { int B, T, NH, HS; } at_ctx;
static void at_fn(double *out, double *in, void *vc)
{
    at_ctx *c = vc;
    ref_attention(out, in, c->B, c->T, c->NH, c->HS);
}

static void test_attention(void **state)
{
    (void)state;
    enum { B = 2, T = 5, NH = 2, HS = 4, C = NH * HS };
    float qkv[B * T * 3 * C], out[B * T * C], att[B * NH * T * T], R[B * T * C];
    fill(qkv, B * T * 3 * C, 1.0), fill(R, B * T * C, 1.0);
    kern_cpu_attention_forward(out, att, qkv, B, T, NH, HS);
    double qd[B * T * 3 * C], od[B * T * C], Rd[B * T * C];
    tod(qd, qkv, B * T * 3 * C), tod(Rd, R, B * T * C);
    ref_attention(od, qd, B, T, NH, HS);
    assert_all_close(out, od, B * T * C, 1e-5, 1e-5, "attention");
    /* the softmax rows sum to one and are causal */
    for (int r = 0; r < B * NH * T; r++) {
        double s = 0;
        for (int u = 0; u < T; u++)
            s += att[r * T + u];
        assert_close(s, 1.0, 1e-6, 0);
        for (int u = r % T + 1; u < T; u++)
            assert_true(att[r * T + u] == 0.0f);
    }
    float dqkv[B * T * 3 * C], datt[B * NH * T * T];
    kern_cpu_attention_backward(dqkv, datt, R, qkv, att, B, T, NH, HS);
    double g[B * T * 3 * C];
    at_ctx c = {B, T, NH, HS};
    fd_grad(at_fn, &c, qd, B * T * 3 * C, B * T * C, Rd, g);
    assert_all_close(dqkv, g, B * T * 3 * C, 1e-3, 1e-5, "attention dqkv");
}

/* Fused attention: the double reference for out, lse = log sum exp of the
 * scaled scores (by hand below), finite differences for dqkv; in bf16 math
 * the result of the fp32 path on bf16-rounded q, k, v to within what
 * rounding the probabilities and dS costs (4 u of the terms, u = 2^-9). */
static void test_attention_flash(void **state)
{
    (void)state;
    enum { B = 2, T = 7, NH = 2, HS = 4, C = NH * HS };
    float qkv[B * T * 3 * C], out[B * T * C], lse[B * NH * T], R[B * T * C], dqkv[B * T * 3 * C];
    fill(qkv, B * T * 3 * C, 1.5), fill(R, B * T * C, 1.0);
    for (int i = 0; i < B * T * 3 * C; i++)
        dqkv[i] = NAN; /* overwritten */
    kern_cpu_attention_forward_flash(out, lse, qkv, B, T, NH, HS);
    double qd[B * T * 3 * C], od[B * T * C], Rd[B * T * C], g[B * T * 3 * C];
    tod(qd, qkv, B * T * 3 * C), tod(Rd, R, B * T * C);
    ref_attention(od, qd, B, T, NH, HS);
    assert_all_close(out, od, B * T * C, 1e-5, 1e-5, "flash attention");
    for (int b = 0; b < B; b++) /* lse of row (b, h, t) */
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double s = 0;
                for (int u = 0; u <= t; u++) {
                    double x = 0;
                    for (int d = 0; d < HS; d++)
                        x += qd[(b * T + t) * 3 * C + h * HS + d] * qd[(b * T + u) * 3 * C + C + h * HS + d];
                    s += exp(x / sqrt((double)HS));
                }
                assert_close(lse[(b * NH + h) * T + t], log(s), 1e-6, 1e-6);
            }
    kern_cpu_attention_backward_flash(dqkv, R, qkv, out, lse, B, T, NH, HS);
    at_ctx c = {B, T, NH, HS};
    fd_grad(at_fn, &c, qd, B * T * 3 * C, B * T * C, Rd, g);
    assert_all_close(dqkv, g, B * T * 3 * C, 1e-3, 1e-5, "flash attention dqkv");

    /* bf16 math against fp32 math on rounded operands */
    float qr[B * T * 3 * C], o32[B * T * C], l32[B * NH * T], d32[B * T * 3 * C], o16[B * T * C], l16[B * NH * T],
        d16[B * T * 3 * C];
    for (int i = 0; i < B * T * 3 * C; i++)
        qr[i] = kern_bf16_round(qkv[i]);
    for (int i = 0; i < B * T * C; i++)
        R[i] = kern_bf16_round(R[i]);
    kern_cpu_attention_forward_flash(o32, l32, qr, B, T, NH, HS);
    kern_cpu_attention_backward_flash(d32, R, qr, o32, l32, B, T, NH, HS);
    kern_cpu_set_math(KERN_MATH_BF16);
    kern_cpu_attention_forward_flash(o16, l16, qkv, B, T, NH, HS);
    kern_cpu_attention_backward_flash(d16, R, qkv, o16, l16, B, T, NH, HS);
    kern_cpu_set_math(KERN_MATH_FP32);
    double o32d[B * T * C], d32d[B * T * 3 * C], l32d[B * NH * T];
    tod(o32d, o32, B * T * C), tod(d32d, d32, B * T * 3 * C), tod(l32d, l32, B * NH * T);
    assert_all_close(l16, l32d, B * NH * T, 1e-6, 1e-6, "flash lse, bf16 math"); /* no rounding on that path */
    assert_all_close(o16, o32d, B * T * C, 0, 4.0 / 512 * 1.5, "flash out, bf16 math"); /* 4 u max|v| */
    int differ = 0;
    for (int i = 0; i < B * T * 3 * C; i++)
        differ += d16[i] != d32[i];
    assert_true(differ > 0); /* the probabilities and dS were rounded */
    /* each gradient element sums terms of at most the gradient's largest
     * size, each rounded once (u): 4 u of the largest |gradient| */
    double gmax = 0, emax = 0;
    for (int i = 0; i < B * T * 3 * C; i++)
        gmax = fmax(gmax, fabs(d32d[i])), emax = fmax(emax, fabs(d16[i] - d32d[i]));
    print_message("flash dqkv, bf16 math: max |bf16 - fp32| %.3g, largest |gradient| %.3g\n", emax, gmax);
    assert_all_close(d16, d32d, B * T * 3 * C, 0, 4.0 / 512 * gmax, "flash dqkv, bf16 math");
}

/* ---- gelu, residual, encoder ----------------------------------------------------------------- */

static void test_gelu(void **state)
{
    (void)state;
    enum { n = 200 };
    float x[n], out[n], dout[n], dx[n];
    for (int i = 0; i < n; i++)
        x[i] = (float)(-10 + 20.0 * i / (n - 1)), dout[i] = 1.0f;
    kern_cpu_gelu_forward(out, x, n);
    kern_cpu_gelu_backward(dx, x, dout, n);
    for (int i = 0; i < n; i++) {
        assert_close(out[i], ref_gelu(x[i]), 1e-5, 1e-6);
        double h = 1e-5, fd = (ref_gelu(x[i] + h) - ref_gelu(x[i] - h)) / (2 * h);
        assert_close(dx[i], fd, 1e-4, 1e-5);
    }
    float big[2] = {100.0f, -100.0f}, ob[2];
    kern_cpu_gelu_forward(ob, big, 2); /* saturates, never NaN */
    assert_close(ob[0], 100.0, 1e-6, 0);
    assert_close(ob[1], 0.0, 0, 1e-6);
}

static void test_encoder_vocab_parallel(void **state)
{
    (void)state;
    enum { B = 2, T = 3, C = 4, V = 6 };
    float wte[V * C], wpe[T * C], full[B * T * C], a[B * T * C], b[B * T * C];
    fill(wte, V * C, 1.0), fill(wpe, T * C, 1.0);
    int tok[B * T] = {0, 5, 2, 3, 3, 1};
    kern_cpu_encoder_forward(full, tok, wte, wpe, B, T, C, 0, V, 1);
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++)
            assert_close(full[i * C + c], (double)wte[tok[i] * C + c] + wpe[(i % T) * C + c], 1e-7, 0);
    /* two shards of 3 rows; positions added by shard 0 only: their sum is the whole */
    kern_cpu_encoder_forward(a, tok, wte, wpe, B, T, C, 0, 3, 1);
    kern_cpu_encoder_forward(b, tok, wte + 3 * C, wpe, B, T, C, 3, 3, 0);
    for (int i = 0; i < B * T * C; i++)
        assert_close(a[i] + b[i], full[i], 1e-6, 1e-7);
    /* backward: token 3 appears twice, its row gets both */
    float dwte[V * C] = {0}, dwpe[T * C] = {0}, d[B * T * C];
    for (int i = 0; i < B * T * C; i++)
        d[i] = 1.0f;
    kern_cpu_encoder_backward(dwte, dwpe, d, tok, B, T, C, 0, V, 1);
    assert_close(dwte[3 * C], 2.0, 0, 0);
    assert_close(dwte[4 * C], 0.0, 0, 0);
    assert_close(dwpe[0], 2.0, 0, 0);
}

/* ---- cross-entropy, in vocabulary shards -------------------------------------------------------- */

static void test_crossentropy_sharded(void **state)
{
    (void)state;
    enum { N = 4, V = 10 };
    float lg[N * V];
    fill(lg, N * V, 3.0);
    int tgt[N] = {0, 9, 4, 5};
    /* reference: double log-softmax */
    double loss_ref[N], grad_ref[N * V];
    for (int i = 0; i < N; i++) {
        double mx = -1e300, s = 0;
        for (int j = 0; j < V; j++)
            mx = lg[i * V + j] > mx ? lg[i * V + j] : mx;
        for (int j = 0; j < V; j++)
            s += exp(lg[i * V + j] - mx);
        loss_ref[i] = log(s) + mx - lg[i * V + tgt[i]];
        for (int j = 0; j < V; j++)
            grad_ref[i * V + j] = (exp(lg[i * V + j] - mx) / s - (j == tgt[i])) * 0.25;
    }
    /* two shards of 6 and 4 columns, reduced by hand as the tp group would */
    float s0[N * 6], s1[N * 4];
    for (int i = 0; i < N; i++) {
        memcpy(s0 + i * 6, lg + i * V, 6 * sizeof(float));
        memcpy(s1 + i * 4, lg + i * V + 6, 4 * sizeof(float));
    }
    float m0[N], m1[N], gmax[N], e0[N], e1[N], gsum[N], t0[N], t1[N];
    kern_cpu_xent_rowmax(m0, s0, N, 6);
    kern_cpu_xent_rowmax(m1, s1, N, 4);
    for (int i = 0; i < N; i++)
        gmax[i] = m0[i] > m1[i] ? m0[i] : m1[i];
    kern_cpu_xent_sumexp(e0, s0, gmax, N, 6);
    kern_cpu_xent_sumexp(e1, s1, gmax, N, 4);
    kern_cpu_xent_target(t0, s0, tgt, N, 6, 0);
    kern_cpu_xent_target(t1, s1, tgt, N, 4, 6);
    for (int i = 0; i < N; i++) {
        gsum[i] = e0[i] + e1[i];
        assert_close(log(gsum[i]) + gmax[i] - (t0[i] + t1[i]), loss_ref[i], 1e-5, 1e-6);
    }
    kern_cpu_xent_backward_inplace(s0, gmax, gsum, tgt, N, 6, 0, 0.25f);
    kern_cpu_xent_backward_inplace(s1, gmax, gsum, tgt, N, 4, 6, 0.25f);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < V; j++)
            assert_close(j < 6 ? s0[i * 6 + j] : s1[i * 4 + j - 6], grad_ref[i * V + j], 1e-5, 1e-6);
}

/* The one-pass forward is the three pieces' arithmetic row by row: the same
 * bits, on a whole vocabulary (tp 1, v0 0) and on a shard whose targets
 * partly lie outside it; and the loss it gives is the double reference's. */
static void test_crossentropy_one_pass(void **state)
{
    (void)state;
    enum { N = 7, V = 37 };
    float lg[N * V];
    fill(lg, N * V, 4.0);
    int tgt[N] = {0, 36, 5, 40, 12, 80, 20};
    for (int v0 = 0; v0 <= 37; v0 += 37) {
        float m1[N], s1[N], t1[N], m3[N], s3[N], t3[N];
        kern_cpu_xent_forward(m1, s1, t1, lg, tgt, N, V, v0);
        kern_cpu_xent_rowmax(m3, lg, N, V);
        kern_cpu_xent_sumexp(s3, lg, m3, N, V);
        kern_cpu_xent_target(t3, lg, tgt, N, V, v0);
        assert_memory_equal(m1, m3, sizeof m1);
        assert_memory_equal(s1, s3, sizeof s1);
        assert_memory_equal(t1, t3, sizeof t1);
        for (int i = 0; i < N; i++) {
            int id = tgt[i] - v0;
            if (v0 == 0 && id < V) { /* the whole row here: the loss itself */
                double mx = -1e300, s = 0;
                for (int j = 0; j < V; j++)
                    mx = lg[i * V + j] > mx ? lg[i * V + j] : mx;
                for (int j = 0; j < V; j++)
                    s += exp(lg[i * V + j] - mx);
                assert_close(log(s1[i]) + m1[i] - t1[i], log(s) + mx - lg[i * V + id], 1e-6, 1e-6);
            } else if (id < 0 || id >= V)
                assert_close(t1[i], 0.0, 0, 0); /* another rank's target */
        }
    }
}

/* ---- optimizer and reductions --------------------------------------------------------------------- */

/* One AdamW step by hand, with betas that are exact in binary (0.5, 0.75)
 * so every intermediate is exact: g = 0.5, m = 0.25, v = 0.0625,
 * mhat = 0.25 / 0.5 = 0.5, vhat = 0.0625 / 0.25 = 0.25,
 * p -= lr (0.5 / (0.5 + eps) + wd p). */
static void test_adamw(void **state)
{
    (void)state;
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.5f}, m[2] = {0}, v[2] = {0};
    kern_cpu_adamw(p, g, m, v, 2, 0.1f, 0.5f, 0.75f, 1e-8f, 0.01f, 1);
    assert_true(m[0] == 0.25f && v[0] == 0.0625f);
    assert_close(p[0], 1.0 - 0.1 * (0.5 / (0.5 + 1e-8) + 0.01 * 1.0), 1e-7, 0);
    assert_close(p[1], -2.0 - 0.1 * (0.5 / (0.5 + 1e-8) + 0.01 * -2.0), 1e-7, 0);
    /* second step with g = 0: m = 0.125, v = 0.046875, mhat = 0.125/0.75,
     * vhat = 0.046875/0.4375 */
    float p1 = p[0];
    g[0] = 0.0f;
    kern_cpu_adamw(p, g, m, v, 1, 0.1f, 0.5f, 0.75f, 1e-8f, 0.0f, 2);
    double mh = 0.125 / 0.75, vh = 0.046875 / 0.4375;
    assert_close(p[0], p1 - 0.1 * mh / (sqrt(vh) + 1e-8), 1e-6, 0);
}

static void test_sum_squares_exact(void **state)
{
    (void)state;
    enum { n = 1000 };
    float x[n];
    double expect = 0;
    for (int i = 0; i < n; i++) {
        x[i] = (float)(i % 7 - 3);
        expect += (double)(i % 7 - 3) * (i % 7 - 3);
    }
    assert_true(kern_cpu_sum_squares(x, n) == expect);
    x[5] = NAN;
    assert_false(triad_close(kern_cpu_sum_squares(x, n), expect, 1e-3, 1e-3)); /* NaN fails */
}

/* residual, add, scale: exact on small integers */
static void test_elementwise_exact(void **state)
{
    (void)state;
    enum { n = 37 };
    float a[n], b[n], o[n];
    for (int i = 0; i < n; i++)
        a[i] = (float)(i - 18), b[i] = (float)(3 * i);
    kern_cpu_residual_forward(o, a, b, n);
    for (int i = 0; i < n; i++)
        assert_close(o[i], (double)(i - 18) + 3.0 * i, 0, 0);
    kern_cpu_add_inplace(o, a, n);
    for (int i = 0; i < n; i++)
        assert_close(o[i], 2.0 * (i - 18) + 3.0 * i, 0, 0);
    kern_cpu_scale(o, 0.5f, n);
    for (int i = 0; i < n; i++)
        assert_close(o[i], 0.5 * (2.0 * (i - 18) + 3.0 * i), 0, 0);
}

/* the CPU dispatch table: host memory round trip, and every op with a
 * signature shared by another op reaches the function of its name */
static void test_ops_table(void **state)
{
    (void)state;
    const kern_ops *K = kern_ops_cpu();
    assert_string_equal(K->name, "cpu");
    enum { n = 64 };
    float *d = K->alloc(n * sizeof(float)), x[n], y[n], want[n], got[n];
    assert_non_null(d);
    for (int i = 0; i < n; i++)
        assert_true(d[i] == 0.0f); /* zero-filled */
    fill(x, n, 2.0), fill(y, n, 1.0);
    K->to_device(d, x, n * sizeof(float));
    K->to_host(got, d, n * sizeof(float));
    assert_memory_equal(got, x, sizeof x);
    /* (float *, const float *, int64_t): gelu_forward vs add_inplace */
    kern_cpu_gelu_forward(want, x, n);
    K->gelu_forward(got, x, n);
    assert_memory_equal(got, want, sizeof want);
    memcpy(want, y, sizeof y), memcpy(got, y, sizeof y);
    kern_cpu_add_inplace(want, x, n);
    K->add_inplace(got, x, n);
    assert_memory_equal(got, want, sizeof want);
    /* (float *, const float *, const float *, int64_t): gelu_backward vs residual */
    kern_cpu_gelu_backward(want, x, y, n);
    K->gelu_backward(got, x, y, n);
    assert_memory_equal(got, want, sizeof want);
    kern_cpu_residual_forward(want, x, y, n);
    K->residual_forward(got, x, y, n);
    assert_memory_equal(got, want, sizeof want);
    /* rowmax vs sumexp are distinct signatures; rowmax through the table */
    float rm[2], rmw[2];
    kern_cpu_xent_rowmax(rmw, x, 2, n / 2);
    K->xent_rowmax(rm, x, 2, n / 2);
    assert_memory_equal(rm, rmw, sizeof rm);
    assert_true(K->sum_squares(x, n) == kern_cpu_sum_squares(x, n));
    { /* segments: each equal to sum_squares of its range, an empty one 0 */
        int64_t off[3] = {0, 3, 5}, len[3] = {3, 0, n - 5};
        double ss[3] = {-1, -1, -1};
        K->sum_squares_many(ss, x, off, len, 3);
        assert_true(ss[0] == kern_cpu_sum_squares(x, 3) && ss[1] == 0.0 &&
                    ss[2] == kern_cpu_sum_squares(x + 5, n - 5));
    }
    K->memset0(d, n * sizeof(float));
    K->to_host(got, d, n * sizeof(float));
    for (int i = 0; i < n; i++)
        assert_true(got[i] == 0.0f);
    K->free(d);
}

/* The trainer's ops copy and bias_residual in the CPU table, by hand; and
 * in bf16 storage, (x + b) + res rounded to bf16 once. */
static void test_copy_add_bias(void **state)
{
    (void)state;
    const kern_ops *K = kern_ops_cpu();
    float x[6] = {1, 2, 3, 4, 5, 6}, b[3] = {0.5f, -1, 2}, y[6], r[6] = {0.25f, 0, -3, 1, 2, -0.5f};
    K->copy(y, x, sizeof x);
    assert_memory_equal(y, x, sizeof x);
    K->bias_residual(y, b, NULL, 2, 3);
    const float want[6] = {1.5f, 1, 5, 4.5f, 4, 8};
    assert_memory_equal(y, want, sizeof want);
    K->bias_residual(y, b, r, 2, 3);
    const float want2[6] = {2.25f, 0, 4, 6, 5, 9.5f};
    assert_memory_equal(y, want2, sizeof want2);
    /* bf16: 1 + 2^-8 (bias) + 2^-8 (residual) = 1 + 2^-7, representable;
     * two roundings would round 1 + 2^-8 to 1 (ties to even) first */
    uint16_t xb[1] = {kern_bf16_bits(1.0f)}, rb[1] = {kern_bf16_bits(1.0f / 256)};
    float bb[1] = {1.0f / 256};
    assert_int_equal(K->set_storage(KERN_STORE_BF16), 0);
    K->bias_residual(xb, bb, rb, 1, 1);
    assert_int_equal(K->set_storage(KERN_STORE_FP32), 0);
    assert_true(kern_bf16_value(xb[0]) == 1.0f + 1.0f / 128);
}

/* bf16 math mode: round to nearest even (known bit patterns), and a GEMM
 * equal to the fp32 GEMM of the rounded inputs (a naive double loop here),
 * different from the unrounded one. */
static void test_bf16_math(void **state)
{
    (void)state;
    assert_true(kern_bf16_round(1.0f) == 1.0f);
    assert_true(kern_bf16_round(1.0f + 1.0f / 256) == 1.0f);              /* halfway: ties to even (down) */
    assert_true(kern_bf16_round(1.0f + 3.0f / 256) == 1.0f + 4.0f / 256); /* halfway: ties to even (up) */
    assert_true(kern_bf16_round(1.0f + 1.5f / 256) == 1.0f + 2.0f / 256); /* above halfway: up */
    assert_true(isnan(kern_bf16_round(NAN)) && isinf(kern_bf16_round(INFINITY)));
    enum { N = 5, C = 7, OC = 3 };
    float x[N * C], w[OC * C], out[N * OC], ref[N * OC], exact[N * OC];
    for (int i = 0; i < N * C; i++)
        x[i] = 0.1f * (float)(i % 9) + 0.0013f * (float)i;
    for (int i = 0; i < OC * C; i++)
        w[i] = 0.07f * (float)((i * 5) % 11) - 0.3f + 0.0007f * (float)i;
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double sr = 0, se = 0;
            for (int c = 0; c < C; c++) {
                sr += (double)kern_bf16_round(x[i * C + c]) * (double)kern_bf16_round(w[o * C + c]);
                se += (double)x[i * C + c] * (double)w[o * C + c];
            }
            ref[i * OC + o] = (float)sr, exact[i * OC + o] = (float)se;
        }
    kern_cpu_set_math(KERN_MATH_BF16);
    assert_int_equal(kern_cpu_math(), KERN_MATH_BF16);
    kern_cpu_matmul_forward(out, x, w, NULL, N, C, OC);
    kern_cpu_set_math(KERN_MATH_FP32);
    double diff_exact = 0;
    for (int i = 0; i < N * OC; i++) {
        assert_close(out[i], ref[i], 1e-6, 1e-6);
        diff_exact = fmax(diff_exact, fabs((double)out[i] - exact[i]));
    }
    assert_true(diff_exact > 1e-4); /* the rounding is really there */
    kern_cpu_matmul_forward(out, x, w, NULL, N, C, OC);
    for (int i = 0; i < N * OC; i++)
        assert_close(out[i], exact[i], 1e-6, 1e-6);
}

/* The emulated device: its buffers cannot be touched from the host (a
 * child that tries dies of SIGSEGV), every op gives the CPU table's bits,
 * and kern_emu_is_device tells its buffers from host memory. */
static void test_emu_device(void **state)
{
    (void)state;
    const kern_ops *E = kern_ops_emu(), *K = kern_ops_cpu();
    enum { N = 4, C = 8 };
    float x[N * C], w[C], bias[C], host[N * C], want[N * C];
    for (int i = 0; i < N * C; i++)
        x[i] = (float)((i * 37) % 11) - 5.0f;
    for (int c = 0; c < C; c++)
        w[c] = 1.0f + 0.1f * (float)c, bias[c] = 0.01f * (float)c;
    float *dx = E->alloc(sizeof x), *dw = E->alloc(sizeof w), *db = E->alloc(sizeof bias), *dy = E->alloc(sizeof x);
    float *dm = E->alloc(N * sizeof(float)), *dr = E->alloc(N * sizeof(float));
    assert_non_null(dx);
    assert_true(kern_emu_is_device(dx) && kern_emu_is_device(dx + N * C - 1) && !kern_emu_is_device(x));
    E->to_device(dx, x, sizeof x), E->to_device(dw, w, sizeof w), E->to_device(db, bias, sizeof bias);
    E->layernorm_forward(dy, dm, dr, dx, dw, db, N, C);
    E->bias_residual(dy, db, NULL, N, C);
    E->to_host(host, dy, sizeof host);
    float m[N], r[N];
    K->layernorm_forward(want, m, r, x, w, bias, N, C);
    K->bias_residual(want, bias, NULL, N, C);
    assert_memory_equal(host, want, sizeof want);
    assert_true(E->sum_squares(dy, N * C) == K->sum_squares(want, N * C));
    {
        int64_t off[2] = {1, C}, len[2] = {C - 1, (N - 1) * C};
        double e[2], k[2];
        E->sum_squares_many(e, dy, off, len, 2);
        K->sum_squares_many(k, want, off, len, 2);
        assert_true(e[0] == k[0] && e[1] == k[1] && e[1] > 0);
    }
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler would report it as this test failing */
        volatile float v = dx[0]; /* a host read of device memory */
        (void)v;
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    float *all[] = {dx, dw, db, dy, dm, dr};
    for (int i = 0; i < 6; i++)
        E->free(all[i]);
    assert_false(kern_emu_is_device(dx));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm),        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_attention),        cmocka_unit_test(test_attention_flash),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_encoder_vocab_parallel), cmocka_unit_test(test_crossentropy_sharded),
        cmocka_unit_test(test_crossentropy_one_pass),
        cmocka_unit_test(test_adamw),            cmocka_unit_test(test_sum_squares_exact),
        cmocka_unit_test(test_elementwise_exact), cmocka_unit_test(test_ops_table),
        cmocka_unit_test(test_copy_add_bias),    cmocka_unit_test(test_emu_device),
        cmocka_unit_test(test_bf16_math),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
