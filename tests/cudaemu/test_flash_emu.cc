/* test_flash_emu.cc — the tensor-core flash attention kernels of
 * kernels/cuda/flash_tc.cuh, run on the host by tests/cudaemu/cuda_emu.h,
 * against an independent double-precision causal attention on the same
 * bf16-rounded operands.
 *
 * What it proves: the kernels' tiling, causal masking, tails (T not a
 * multiple of 64, a single position), online softmax, the backward's
 * transposed tiles and dQ atomics compute attention and its gradient. What
 * it does not: that they run on a GPU, or fast — tests/gpu/test_kern_cuda.c
 * does that on the device (make check-gpu).
 *
 * Tolerance, element by element: |kernel - ref| <= 4 u S + 1e-6, u = 2^-9
 * the unit roundoff of bf16, S the reference's sum of |terms| of that
 * element (for out: sum_j p_j |v_j| / l; for dq: scale sum_j |ds_ij|' |k_j|
 * with |ds|' = |ds| + p sum_d |dO_d| S(o_d), since D = dO . O takes the
 * kernel's own O; ...): the kernels round each probability and each dS to
 * bf16 before their products (relative error <= u per term); the factor 4
 * covers fp32 accumulation in another order and exp in fp32. An indexing or masking
 * error moves a value by O(S), far outside. NaN fails. Exit status: 0 when
 * every check passes, 1 otherwise. */
#include "cuda_emu.h"

#include "../../kernels/cuda/flash_tc.cuh"

#include <cmath>
#include <cstdio>
#include <vector>

static int n_fail, n_pass;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand() /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static double bf(float x) { return (double)__bfloat162float(__float2bfloat16(x)); }

static void check(const char *what, const std::vector<float> &got, const std::vector<double> &ref,
                  const std::vector<double> &mag)
{
    const double u = 1.0 / 512.0;
    double worst = 0.0;
    long long bad = -1;
    for (size_t i = 0; i < ref.size(); i++) {
        double err = std::fabs((double)got[i] - ref[i]), tol = 4 * u * mag[i] + 1e-6;
        if (!(err <= tol)) { /* NaN fails */
            bad = (long long)i;
            break;
        }
        if (tol > 0 && err / tol > worst)
            worst = err / tol;
    }
    if (bad >= 0) {
        printf("FAIL %-40s element %lld: %.6g vs reference %.6g (tolerance %.3g)\n", what, bad, got[bad], ref[bad],
               4 * u * mag[bad] + 1e-6);
        n_fail++;
    } else {
        printf("ok   %-40s %zu elements, worst error %.2f of its tolerance\n", what, ref.size(), worst);
        n_pass++;
    }
}

static void run(int B, int T, int NH, int HS)
{
    const int C = NH * HS, C3 = 3 * C;
    const double scale = 1.0 / std::sqrt((double)HS);
    std::vector<float> qkv((size_t)B * T * C3), dout((size_t)B * T * C);
    for (auto &x : qkv)
        x = 2.0f * frand(); /* scores of a few units: a peaked softmax */
    for (auto &x : dout)
        x = frand();
    std::vector<float> out((size_t)B * T * C, NAN), lse((size_t)B * NH * T, NAN);
    if (flash_tc::forward(out.data(), lse.data(), qkv.data(), B, T, NH, HS) != 0) {
        printf("FAIL forward refused HS=%d\n", HS);
        n_fail++;
        return;
    }
    std::vector<float> dqkv((size_t)B * T * C3, 0.0f), D((size_t)B * NH * T, NAN);
    for (size_t i = 0; i < dqkv.size(); i++) /* the k and v parts must be overwritten */
        if ((i % C3) >= (size_t)C)
            dqkv[i] = NAN;
    flash_tc::backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), D.data(), B, T, NH, HS);

    /* the reference, in double, on the kernel's bf16 operands */
    std::vector<double> ro(out.size()), mo(out.size()), rl(lse.size()), ml(lse.size(), 0.0);
    std::vector<double> rdq(dqkv.size(), 0.0), mdq(dqkv.size(), 0.0);
    auto Q = [&](int b, int t, int h, int d) { return bf(qkv[((size_t)b * T + t) * C3 + h * HS + d]); };
    auto K = [&](int b, int t, int h, int d) { return bf(qkv[((size_t)b * T + t) * C3 + C + h * HS + d]); };
    auto V = [&](int b, int t, int h, int d) { return bf(qkv[((size_t)b * T + t) * C3 + 2 * C + h * HS + d]); };
    auto dO = [&](int b, int t, int h, int d) { return (double)dout[((size_t)b * T + t) * C + h * HS + d]; };
    std::vector<double> p(T), dp(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double mx = -INFINITY, l = 0.0;
                for (int j = 0; j <= t; j++) {
                    double s = 0.0;
                    for (int d = 0; d < HS; d++)
                        s += Q(b, t, h, d) * K(b, j, h, d);
                    p[j] = s * scale;
                    mx = std::fmax(mx, p[j]);
                }
                for (int j = 0; j <= t; j++)
                    l += (p[j] = std::exp(p[j] - mx));
                size_t r = ((size_t)b * NH + h) * T + t;
                rl[r] = mx + std::log(l);
                ml[r] = std::fabs(rl[r]) * 0.005; /* exact bf16 products, fp32 sums, exp, log: 4e-5 relative */
                for (int d = 0; d < HS; d++) {
                    double o = 0.0, a = 0.0;
                    for (int j = 0; j <= t; j++) {
                        o += p[j] * V(b, j, h, d);
                        a += p[j] * std::fabs(V(b, j, h, d));
                    }
                    size_t i = ((size_t)b * T + t) * C + h * HS + d;
                    ro[i] = o / l;
                    mo[i] = a / l;
                }
                /* backward of row t: p_j = softmax, dp_j = dO . v_j, Dt = dO . o */
                double Dt = 0.0, mD = 0.0;
                for (int d = 0; d < HS; d++) {
                    size_t io = ((size_t)b * T + t) * C + h * HS + d;
                    Dt += dO(b, t, h, d) * ro[io];
                    mD += std::fabs(dO(b, t, h, d)) * mo[io]; /* D = dO . O takes the kernel's O */
                }
                for (int j = 0; j <= t; j++) {
                    p[j] /= l;
                    double s = 0.0;
                    for (int d = 0; d < HS; d++)
                        s += bf((float)dO(b, t, h, d)) * V(b, j, h, d);
                    double ds = p[j] * (s - Dt), mds = std::fabs(ds) + p[j] * mD;
                    for (int d = 0; d < HS; d++) {
                        size_t iq = ((size_t)b * T + t) * C3 + h * HS + d;
                        size_t ik = ((size_t)b * T + j) * C3 + C + h * HS + d, iv = ik + C;
                        rdq[iq] += ds * K(b, j, h, d) * scale;
                        mdq[iq] += mds * std::fabs(K(b, j, h, d)) * scale;
                        rdq[ik] += ds * Q(b, t, h, d) * scale;
                        mdq[ik] += mds * std::fabs(Q(b, t, h, d)) * scale;
                        double g = bf((float)dO(b, t, h, d));
                        rdq[iv] += p[j] * g;
                        mdq[iv] += std::fabs(p[j] * g);
                    }
                }
            }
    char name[96];
    snprintf(name, sizeof name, "forward out  B=%d T=%d NH=%d HS=%d", B, T, NH, HS);
    check(name, out, ro, mo);
    snprintf(name, sizeof name, "forward lse  B=%d T=%d NH=%d HS=%d", B, T, NH, HS);
    check(name, lse, rl, ml);
    snprintf(name, sizeof name, "backward dqkv B=%d T=%d NH=%d HS=%d", B, T, NH, HS);
    check(name, dqkv, rdq, mdq);
}

int main()
{
    run(1, 1, 1, 16);    /* a single position */
    run(2, 64, 2, 16);   /* one tile exactly */
    run(1, 100, 3, 32);  /* a tail of 36 */
    run(2, 130, 2, 64);  /* three tiles, a tail of 2 */
    run(1, 192, 1, 128); /* the largest head size */
    printf("test_flash_emu: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
