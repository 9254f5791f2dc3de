/* flash_tc.cuh — causal flash attention on tensor cores (FlashAttention-2,
 * Dao 2023): bf16 operands, fp32 accumulation, no T x T matrix in memory.
 *
 * Device code only, in the subset of CUDA C++ that tests/cudaemu/cuda_emu.h
 * also runs on the host (threads, __syncthreads, __syncwarp, shared memory,
 * nvcuda::wmma 16x16x16 bf16 fragments, atomicAdd on floats; no warp
 * shuffles, no fragment element indexing), so the kernels' tiling, masking
 * and online softmax are tested on a machine without a GPU
 * (tests/cudaemu/test_flash_emu.cc); tests/gpu/test_kern_cuda.c checks them
 * on the GPU against the CPU backend.
 *
 * Layout (the contract of kern_ops.attention_forward_flash): qkv (B,T,3C)
 * as [q heads | k heads | v heads], C = NH*HS; out (B,T,C); lse (B,NH,T)
 * fp32, the natural log-sum-exp of each row's scaled scores. qkv, out, dout
 * and dqkv are T: float (fp32 storage) or bf16 (kernels.h's bf16 storage).
 * Operands are rounded to bf16 where they enter shared memory (already
 * bf16 in bf16 storage); scores, the softmax and every accumulation stay
 * fp32; what is written is rounded to T once. dQ, summed over key blocks
 * with atomics, accumulates in an fp32 buffer of the caller's (in fp32
 * storage dqkv's q columns themselves).
 *
 * Forward: one block of 4 warps per (64 query rows, b, h); each warp owns 16
 * rows. For every 64-key tile up to the diagonal: S = Q K^T (wmma), the
 * row's online softmax by one lane per row (running max m and sum l), P in
 * bf16, O <- alpha O + P V with O kept in shared memory (a fragment's rows
 * cannot be rescaled in place).
 * Backward: one block per (64 keys, b, h), each warp 16 keys; dK and dV stay
 * in registers over every query tile at or below the diagonal:
 * S^T = K Q^T, P^T = exp(S^T scale - lse), dP^T = V dO^T, dS^T = P^T (dP^T - D)
 * with D = rowsum(dO o O) (flash_rowdot_k), dV += P^T dO, dK += dS^T Q, and
 * dQ += dS K added into global memory with atomicAdd (FlashAttention-2's
 * choice: dQ is shared by all key blocks).
 * Deliberately left out: dropout, non-causal masks, head sizes that are not
 * a multiple of 16 or exceed 128 (the caller falls back to the fp32 path). */
#ifndef TRIAD_FLASH_TC_CUH
#define TRIAD_FLASH_TC_CUH

#include "storage.cuh"
#ifndef TRIAD_CUDA_EMU
#include <mma.h>
#define FA_DYN_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#define FA_LAUNCH(kernel, grid, block, smem, ...) kernel<<<grid, block, smem>>>(__VA_ARGS__)
#define FA_SET_SMEM(kernel, bytes) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
#else
#define FA_LAUNCH(kernel, grid, block, smem, ...) cuda_emu::launch_named(#kernel, grid, block, smem, kernel, __VA_ARGS__)
#define FA_SET_SMEM(kernel, bytes) cuda_emu::set_max_dyn_smem(reinterpret_cast<const void *>(kernel), bytes)
#endif

namespace flash_tc {

using namespace nvcuda;

enum { BR = 64, BC = 64, WARPS = 4, THREADS = 128, PADH = 8, PADF = 4 };

/* Shared memory of the forward kernel, bytes: Q, K, V tiles (bf16), the
 * scores S (fp32), the probabilities P (bf16), the output O (fp32). Every
 * part is a multiple of 32 bytes, so each stays aligned for wmma. */
__host__ __device__ constexpr int fwd_smem_bytes(int HS)
{
    return 3 * BR * (HS + PADH) * 2 + BR * (BC + PADF) * 4 + BR * (BC + PADH) * 2 + BR * (HS + PADF) * 4;
}
/* Backward: K, V, Q, dO tiles (bf16), P^T and dS^T (bf16), S^T and dP^T
 * (fp32), the dQ staging tile (fp32), lse and D of the query tile. */
__host__ __device__ constexpr int bwd_smem_bytes(int HS)
{
    return 4 * BR * (HS + PADH) * 2 + 2 * BC * (BR + PADH) * 2 + 2 * BC * (BR + PADF) * 4 + BR * (HS + PADF) * 4 +
           2 * BR * 4;
}

/* Two 64-row tiles into shared memory as bf16 (row stride HS + PADH): rows
 * t0.. of a and b (row strides lda, ldb elements), zeros from row T on.
 * Every thread of the block takes part; the caller synchronises. */
template <int HS, typename T_>
__device__ __forceinline__ void load_tiles(bf16 *da, const T_ *a, long long lda, bf16 *db, const T_ *b,
                                           long long ldb, int t0, int T, int tid)
{
    for (int i = tid; i < BR * HS; i += THREADS) {
        int r = i / HS, d = i % HS, t = t0 + r;
        da[r * (HS + PADH) + d] = __float2bfloat16(t < T ? ld(a[t * lda + d]) : 0.0f);
        db[r * (HS + PADH) + d] = __float2bfloat16(t < T ? ld(b[t * ldb + d]) : 0.0f);
    }
}

template <int HS, typename T_>
__global__ void __launch_bounds__(THREADS) fwd_k(T_ *out, float *lse, const T_ *qkv, int T, int NH, float scale)
{
    FA_DYN_SMEM(smem);
    constexpr int LDH = HS + PADH, LDS = BC + PADF, LDP = BC + PADH, LDO = HS + PADF;
    bf16 *Qs = (bf16 *)smem, *Ks = Qs + BR * LDH, *Vs = Ks + BC * LDH;
    float *Ss = (float *)(Vs + BC * LDH);
    bf16 *Ps = (bf16 *)(Ss + BR * LDS);
    float *Os = (float *)(Ps + BR * LDP);

    const int q0 = blockIdx.x * BR, h = blockIdx.y % NH, b = blockIdx.y / NH;
    /* the softmax and the rescaling of O take two lanes per row of the
     * warp's 16 (half = which half of the columns), so every lane works */
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, row = warp * 16 + lane / 2, half = lane % 2;
    const int C = NH * HS, C3 = 3 * C;
    const T_ *base = qkv + (long long)b * T * C3 + h * HS;

    for (int i = tid; i < BR * HS; i += THREADS) {
        int r = i / HS, d = i % HS, t = q0 + r;
        Qs[r * LDH + d] = __float2bfloat16(t < T ? ld(base[(long long)t * C3 + d]) : 0.0f);
        Os[r * LDO + d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f; /* the row's state, the same in its two lanes */
    const int last = min(q0 + BR - 1, T - 1), nkb = last / BC + 1;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = kb * BC;
        __syncthreads(); /* the previous tile's K and V are consumed, Q and O are written */
        load_tiles<HS>(Ks, base + C, C3, Vs, base + 2 * C, C3, k0, T, tid);
        __syncthreads();
        { /* S (16 rows of this warp, 64 keys) = Q K^T */
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s[BC / 16];
            for (int n = 0; n < BC / 16; n++)
                wmma::fill_fragment(s[n], 0.0f);
            for (int k = 0; k < HS; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::load_matrix_sync(a, Qs + warp * 16 * LDH + k, LDH);
                for (int n = 0; n < BC / 16; n++) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kt; /* K^T */
                    wmma::load_matrix_sync(kt, Ks + n * 16 * LDH + k, LDH);
                    wmma::mma_sync(s[n], a, kt, s[n]);
                }
            }
            for (int n = 0; n < BC / 16; n++)
                wmma::store_matrix_sync(Ss + warp * 16 * LDS + n * 16, s[n], LDS, wmma::mem_row_major);
        }
        __syncwarp();
        { /* online softmax of row q0 + row: this lane's columns half, half + 2, ... */
            const int t = q0 + row;
            float *s = Ss + row * LDS, mt = m;
            for (int j = half; j < BC; j += 2) {
                int key = k0 + j;
                float x = (key <= t && key < T) ? s[j] * scale : -INFINITY;
                s[j] = x;
                mt = fmaxf(mt, x);
            }
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
            /* mt is finite: key 0 of tile 0 is in every row's past, so m is
             * finite from the first tile on */
            float alpha = expf(m - mt), sum = 0.0f;
            for (int j = half; j < BC; j += 2) {
                float p = expf(s[j] - mt);
                Ps[row * LDP + j] = __float2bfloat16(p);
                sum += p;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            l = l * alpha + sum;
            m = mt;
            for (int d = half; d < HS; d += 2)
                Os[row * LDO + d] *= alpha;
        }
        __syncwarp();
        /* O (16 rows, HS) += P V */
        for (int n = 0; n < HS / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
            wmma::load_matrix_sync(o, Os + warp * 16 * LDO + n * 16, LDO, wmma::mem_row_major);
            for (int k = 0; k < BC; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> p;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> v;
                wmma::load_matrix_sync(p, Ps + warp * 16 * LDP + k, LDP);
                wmma::load_matrix_sync(v, Vs + k * LDH + n * 16, LDH);
                wmma::mma_sync(o, p, v, o);
            }
            wmma::store_matrix_sync(Os + warp * 16 * LDO + n * 16, o, LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if (q0 + row < T) {
        const int t = q0 + row;
        T_ *o = out + ((long long)b * T + t) * C + h * HS;
        float inv = 1.0f / l;
        for (int d = half; d < HS; d += 2)
            st(&o[d], Os[row * LDO + d] * inv);
        if (half == 0)
            lse[((long long)b * NH + h) * T + t] = m + logf(l);
    }
}

/* D (B,NH,T) = rowsum(dO o O): one thread per row */
template <typename T_>
__global__ void rowdot_k(float *D, const T_ *dout, const T_ *out, int B, int T, int NH, int HS)
{
    long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= (long long)B * NH * T)
        return;
    int t = (int)(r % T), h = (int)((r / T) % NH), b = (int)(r / ((long long)T * NH));
    long long off = ((long long)b * T + t) * NH * HS + h * HS;
    float s = 0.0f;
    for (int d = 0; d < HS; d++)
        s += ld(dout[off + d]) * ld(out[off + d]);
    D[r] = s;
}

/* dqkv: the k and v parts of this block's keys are overwritten; dQ is
 * added with atomics into dq (fp32, rows ldq apart), which must hold zeros */
template <int HS, typename T_>
__global__ void __launch_bounds__(THREADS)
    bwd_k(T_ *dqkv, float *dq, long long ldq, const T_ *dout, const T_ *qkv, const float *lse, const float *D,
          int T, int NH, float scale)
{
    FA_DYN_SMEM(smem);
    constexpr int LDH = HS + PADH, LDP = BR + PADH, LDS = BR + PADF, LDO = HS + PADF;
    bf16 *Ks = (bf16 *)smem, *Vs = Ks + BC * LDH, *Qs = Vs + BC * LDH, *dOs = Qs + BR * LDH;
    bf16 *PTs = dOs + BR * LDH, *dSTs = PTs + BC * LDP;
    float *STs = (float *)(dSTs + BC * LDP), *dPTs = STs + BC * LDS, *dQs = dPTs + BC * LDS;
    float *lse_s = dQs + BR * LDO, *D_s = lse_s + BR;

    const int k0 = blockIdx.x * BC, h = blockIdx.y % NH, b = blockIdx.y / NH;
    /* P^T and dS^T take two lanes per key row of the warp's 16 (half: which
     * half of the query columns), so every lane works */
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, kr = warp * 16 + lane / 2, half = lane % 2;
    const int C = NH * HS, C3 = 3 * C;
    const T_ *base = qkv + (long long)b * T * C3 + h * HS;
    const T_ *dobase = dout + (long long)b * T * C + h * HS;
    T_ *dbase = dqkv + (long long)b * T * C3 + h * HS;
    float *dqbase = dq + (long long)b * T * ldq + h * HS;
    const float *lse_r = lse + ((long long)b * NH + h) * T, *D_r = D + ((long long)b * NH + h) * T;

    load_tiles<HS>(Ks, base + C, C3, Vs, base + 2 * C, C3, k0, T, tid);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dK[HS / 16], dV[HS / 16];
    for (int n = 0; n < HS / 16; n++) {
        wmma::fill_fragment(dK[n], 0.0f);
        wmma::fill_fragment(dV[n], 0.0f);
    }
    const int nqb = (T + BR - 1) / BR;
    for (int qb = blockIdx.x; qb < nqb; qb++) { /* query tiles at or below the diagonal (BR == BC) */
        const int q0 = qb * BR;
        /* no barrier needed here: every read of Q, dO, lse and D of the
         * previous tile comes before its "dS^T rows are written" barrier,
         * and dS^T is next written after the one below (the host emulator,
         * which lets warps drift as far apart as CUDA allows, agrees) */
        load_tiles<HS>(Qs, base, C3, dOs, dobase, C, q0, T, tid);
        for (int i = tid; i < BR; i += THREADS) {
            lse_s[i] = q0 + i < T ? lse_r[q0 + i] : 0.0f;
            D_s[i] = q0 + i < T ? D_r[q0 + i] : 0.0f;
        }
        __syncthreads();
        { /* S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys */
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s[BR / 16], dp[BR / 16];
            for (int n = 0; n < BR / 16; n++) {
                wmma::fill_fragment(s[n], 0.0f);
                wmma::fill_fragment(dp[n], 0.0f);
            }
            for (int k = 0; k < HS; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> ka, va;
                wmma::load_matrix_sync(ka, Ks + warp * 16 * LDH + k, LDH);
                wmma::load_matrix_sync(va, Vs + warp * 16 * LDH + k, LDH);
                for (int n = 0; n < BR / 16; n++) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> qt, dot;
                    wmma::load_matrix_sync(qt, Qs + n * 16 * LDH + k, LDH);
                    wmma::load_matrix_sync(dot, dOs + n * 16 * LDH + k, LDH);
                    wmma::mma_sync(s[n], ka, qt, s[n]);
                    wmma::mma_sync(dp[n], va, dot, dp[n]);
                }
            }
            for (int n = 0; n < BR / 16; n++) {
                wmma::store_matrix_sync(STs + warp * 16 * LDS + n * 16, s[n], LDS, wmma::mem_row_major);
                wmma::store_matrix_sync(dPTs + warp * 16 * LDS + n * 16, dp[n], LDS, wmma::mem_row_major);
            }
        }
        __syncwarp();
        { /* P^T and dS^T of key k0 + kr, this lane's query columns */
            const int key = k0 + kr;
            for (int i = half; i < BR; i += 2) {
                int t = q0 + i;
                float p = (t < T && key <= t) ? expf(STs[kr * LDS + i] * scale - lse_s[i]) : 0.0f;
                PTs[kr * LDP + i] = __float2bfloat16(p);
                dSTs[kr * LDP + i] = __float2bfloat16(p * (dPTs[kr * LDS + i] - D_s[i]));
            }
        }
        __syncwarp();
        /* dV += P^T dO, dK += dS^T Q (16 keys, HS) */
        for (int k = 0; k < BR; k += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pa, dsa;
            wmma::load_matrix_sync(pa, PTs + warp * 16 * LDP + k, LDP);
            wmma::load_matrix_sync(dsa, dSTs + warp * 16 * LDP + k, LDP);
            for (int n = 0; n < HS / 16; n++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> dob, qb_;
                wmma::load_matrix_sync(dob, dOs + k * LDH + n * 16, LDH);
                wmma::load_matrix_sync(qb_, Qs + k * LDH + n * 16, LDH);
                wmma::mma_sync(dV[n], pa, dob, dV[n]);
                wmma::mma_sync(dK[n], dsa, qb_, dK[n]);
            }
        }
        __syncthreads(); /* every warp's dS^T rows are written */
        /* dQ (this warp's 16 queries, HS) = dS K: dS is dS^T read column-major */
        for (int n = 0; n < HS / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> dq;
            wmma::fill_fragment(dq, 0.0f);
            for (int k = 0; k < BC; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> dsq;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> kb_;
                wmma::load_matrix_sync(dsq, dSTs + k * LDP + warp * 16, LDP);
                wmma::load_matrix_sync(kb_, Ks + k * LDH + n * 16, LDH);
                wmma::mma_sync(dq, dsq, kb_, dq);
            }
            wmma::store_matrix_sync(dQs + warp * 16 * LDO + n * 16, dq, LDO, wmma::mem_row_major);
        }
        __syncwarp();
        for (int i = lane; i < 16 * HS; i += 32) {
            int r = i / HS, d = i % HS, t = q0 + warp * 16 + r;
            if (t < T)
                atomicAdd(&dqbase[(long long)t * ldq + d], dQs[(warp * 16 + r) * LDO + d] * scale);
        }
        __syncwarp();
    }
    /* dK (scaled) and dV of this warp's keys, staged through its rows of dQs */
    for (int part = 0; part < 2; part++) {
        for (int n = 0; n < HS / 16; n++)
            wmma::store_matrix_sync(dQs + warp * 16 * LDO + n * 16, part ? dV[n] : dK[n], LDO, wmma::mem_row_major);
        __syncwarp();
        const float f = part ? 1.0f : scale;
        for (int i = lane; i < 16 * HS; i += 32) {
            int r = i / HS, d = i % HS, t = k0 + warp * 16 + r;
            if (t < T)
                st(&dbase[(long long)t * C3 + (1 + part) * C + d], dQs[(warp * 16 + r) * LDO + d] * f);
        }
        __syncwarp();
    }
}

/* ---- host side: launches on the default stream ---------------------------- */

/* Head sizes with a kernel: multiples of 16 up to 128. */
inline bool supported(int HS) { return HS == 16 || HS == 32 || HS == 64 || HS == 128; }

template <int HS, typename T_> inline int forward_hs(T_ *out, float *lse, const T_ *qkv, int B, int T, int NH)
{
    const int bytes = fwd_smem_bytes(HS);
    void (*kernel)(T_ *, float *, const T_ *, int, int, float) = fwd_k<HS, T_>;
    if (FA_SET_SMEM(kernel, bytes) != 0)
        return -1;
    dim3 grid((unsigned)((T + BR - 1) / BR), (unsigned)(B * NH));
    FA_LAUNCH(kernel, grid, dim3(THREADS), bytes, out, lse, qkv, T, NH, 1.0f / sqrtf((float)HS));
    return 0;
}
/* out (B,T,NH*HS), lse (B,NH,T) from qkv (B,T,3*NH*HS), T_ float or bf16;
 * 0, or -1 when HS is not supported or the shared memory cannot be had
 * (nothing launched) */
template <typename T_> inline int forward(T_ *out, float *lse, const T_ *qkv, int B, int T, int NH, int HS)
{
    switch (HS) {
    case 16: return forward_hs<16>(out, lse, qkv, B, T, NH);
    case 32: return forward_hs<32>(out, lse, qkv, B, T, NH);
    case 64: return forward_hs<64>(out, lse, qkv, B, T, NH);
    case 128: return forward_hs<128>(out, lse, qkv, B, T, NH);
    default: return -1;
    }
}

template <int HS, typename T_>
inline int backward_hs(T_ *dqkv, float *dq, long long ldq, const T_ *dout, const T_ *qkv, const T_ *out,
                       const float *lse, float *D, int B, int T, int NH)
{
    const int bytes = bwd_smem_bytes(HS);
    void (*kernel)(T_ *, float *, long long, const T_ *, const T_ *, const float *, const float *, int, int, float) =
        bwd_k<HS, T_>;
    void (*rowdot)(float *, const T_ *, const T_ *, int, int, int, int) = rowdot_k<T_>;
    if (FA_SET_SMEM(kernel, bytes) != 0)
        return -1;
    long long rows = (long long)B * NH * T;
    FA_LAUNCH(rowdot, dim3((unsigned)((rows + 255) / 256)), dim3(256), 0, D, dout, out, B, T, NH, HS);
    dim3 grid((unsigned)((T + BC - 1) / BC), (unsigned)(B * NH));
    FA_LAUNCH(kernel, grid, dim3(THREADS), bytes, dqkv, dq, ldq, dout, qkv, lse, (const float *)D, T, NH,
              1.0f / sqrtf((float)HS));
    return 0;
}
/* The k and v parts of dqkv (B,T,3*NH*HS) from dout, qkv, the forward's out
 * and lse, and dQ added into dq (fp32, (B,T) rows ldq apart, holding zeros
 * on entry); D is scratch of B*NH*T floats. 0, or -1 as forward. */
template <typename T_>
inline int backward(T_ *dqkv, float *dq, long long ldq, const T_ *dout, const T_ *qkv, const T_ *out,
                    const float *lse, float *D, int B, int T, int NH, int HS)
{
    switch (HS) {
    case 16: return backward_hs<16>(dqkv, dq, ldq, dout, qkv, out, lse, D, B, T, NH);
    case 32: return backward_hs<32>(dqkv, dq, ldq, dout, qkv, out, lse, D, B, T, NH);
    case 64: return backward_hs<64>(dqkv, dq, ldq, dout, qkv, out, lse, D, B, T, NH);
    case 128: return backward_hs<128>(dqkv, dq, ldq, dout, qkv, out, lse, D, B, T, NH);
    default: return -1;
    }
}
/* fp32 storage: dQ accumulates in dqkv's own q columns, which must hold
 * zeros on entry */
inline int backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, float *D,
                    int B, int T, int NH, int HS)
{
    return backward<float>(dqkv, dqkv, 3LL * NH * HS, dout, qkv, out, lse, D, B, T, NH, HS);
}

} /* namespace flash_tc */

#endif /* TRIAD_FLASH_TC_CUH */
