/* kern_cuda.cu — the CUDA backend of kernels.h as a kern_ops table: fp32
 * throughout, plus bf16 conversion, a bf16 matmul forward (fp32
 * accumulation) and AdamW keeping a bf16 copy of the fp32 master.
 *
 * Matrix products go through cuBLAS (cublasSgemm, fp32 accumulation, no
 * TF32; with set_math(KERN_MATH_BF16) cublasGemmEx on the same fp32 buffers
 * with CUBLAS_COMPUTE_32F_FAST_16BF: bf16 tensor-core math, fp32
 * accumulation), attention as strided-batched GEMMs over the heads of one sequence
 * with the T x T probabilities kept (the contract of kern_cpu_attention_*),
 * the rest as plain kernels: one warp per row for row reductions, one
 * thread per element otherwise. Written as C-style CUDA C++; the entry
 * point is extern "C". Every call is on the default stream.
 *
 * Every CUDA or cuBLAS error prints file:line and the error string and
 * exits with status 1 (cudaCheck / cublasCheck). */
#ifndef TRIAD_HAVE_CUDA
#define TRIAD_HAVE_CUDA 1
#endif
#include "../kernels.h"
#include "flash_tc.cuh"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define cudaCheck(call)                                                                                        \
    do {                                                                                                       \
        cudaError_t err_ = (call);                                                                             \
        if (err_ != cudaSuccess) {                                                                             \
            fprintf(stderr, "triad: CUDA error at %s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(err_)); \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

#define cublasCheck(call)                                                                                      \
    do {                                                                                                       \
        cublasStatus_t st_ = (call);                                                                           \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                                    \
            fprintf(stderr, "triad: cuBLAS error at %s:%d: %s\n", __FILE__, __LINE__,                          \
                    cublasGetStatusString(st_));                                                               \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

#define launchCheck() cudaCheck(cudaGetLastError())

static cublasHandle_t g_handle;
static cublasHandle_t handle(void)
{
    if (!g_handle) {
        cublasCheck(cublasCreate(&g_handle));
        cublasCheck(cublasSetMathMode(g_handle, CUBLAS_PEDANTIC_MATH)); /* fp32, no TF32 */
    }
    return g_handle;
}

static inline int blocks_for(int64_t n, int threads) { return (int)((n + threads - 1) / threads); }

/* GEMM math mode (kern_ops set_math): plain fp32 (pedantic: no TF32), or
 * fp32 storage with bf16 tensor-core math and fp32 accumulation */
static int g_math = KERN_MATH_FP32;
static void cu_set_math(int mode)
{
    g_math = mode;
    cublasCheck(cublasSetMathMode(handle(), mode == KERN_MATH_BF16 ? CUBLAS_DEFAULT_MATH : CUBLAS_PEDANTIC_MATH));
}
static cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    if (g_math != KERN_MATH_BF16)
        return cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return cublasGemmEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, beta, C, CUDA_R_32F, ldc,
                        CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT);
}
static cublasStatus_t gemm_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const float *alpha, const float *A, int lda, long long sa, const float *B, int ldb,
                                   long long sb, const float *beta, float *C, int ldc, long long sc, int count)
{
    if (g_math != KERN_MATH_BF16)
        return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, count);
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb, sb, beta,
                                      C, CUDA_R_32F, ldc, sc, count, CUBLAS_COMPUTE_32F_FAST_16BF,
                                      CUBLAS_GEMM_DEFAULT);
}

__device__ inline float warp_sum(float x)
{
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ inline float warp_max(float x)
{
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

/* ---- memory ------------------------------------------------------------- */
static void *cu_alloc(int64_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes > 0 ? (size_t)bytes : 1) != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is the caller's to report: not left for the next check */
        return NULL;
    }
    cudaCheck(cudaMemset(p, 0, bytes > 0 ? (size_t)bytes : 1));
    return p;
}
static void cu_free(void *p)
{
    if (p)
        cudaCheck(cudaFree(p));
}
static void cu_to_device(void *dst, const void *src, int64_t bytes)
{
    if (bytes > 0)
        cudaCheck(cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyHostToDevice));
}
static void cu_to_host(void *dst, const void *src, int64_t bytes)
{
    if (bytes > 0)
        cudaCheck(cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost));
}
static void cu_memset0(void *p, int64_t bytes)
{
    if (bytes > 0)
        cudaCheck(cudaMemset(p, 0, (size_t)bytes));
}
static void cu_sync(void) { cudaCheck(cudaDeviceSynchronize()); }
static void cu_copy(void *dst, const void *src, int64_t bytes)
{
    if (bytes > 0)
        cudaCheck(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, 0));
}

/* ---- encoder (vocabulary-parallel embedding) ---------------------------- */
__global__ void encoder_forward_k(float *out, const int *tok, const float *wte, const float *wpe, int B, int T,
                                  int C, int v0, int V, int add_pos)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * T * C)
        return;
    int64_t bt = i / C;
    int c = (int)(i % C), t = (int)(bt % T), id = tok[bt] - v0;
    float x = (id >= 0 && id < V) ? wte[(int64_t)id * C + c] : 0.0f;
    if (add_pos)
        x += wpe[(int64_t)t * C + c];
    out[i] = x;
}
static void cu_encoder_forward(float *out, const int *tok, const float *wte, const float *wpe, int B, int T,
                               int C, int v0, int V, int add_pos)
{
    int64_t n = (int64_t)B * T * C;
    encoder_forward_k<<<blocks_for(n, 256), 256>>>(out, tok, wte, wpe, B, T, C, v0, V, add_pos);
    launchCheck();
}

__global__ void encoder_backward_k(float *dwte, float *dwpe, const float *dout, const int *tok, int B, int T,
                                   int C, int v0, int V, int add_pos)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * T * C)
        return;
    int64_t bt = i / C;
    int c = (int)(i % C), t = (int)(bt % T), id = tok[bt] - v0;
    float d = dout[i];
    if (id >= 0 && id < V)
        atomicAdd(&dwte[(int64_t)id * C + c], d);
    if (add_pos)
        atomicAdd(&dwpe[(int64_t)t * C + c], d);
}
static void cu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tok, int B, int T,
                                int C, int v0, int V, int add_pos)
{
    int64_t n = (int64_t)B * T * C;
    encoder_backward_k<<<blocks_for(n, 256), 256>>>(dwte, dwpe, dout, tok, B, T, C, v0, V, add_pos);
    launchCheck();
}

/* ---- layernorm: one warp per row ---------------------------------------- */
__global__ void layernorm_forward_k(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                    const float *b, int N, int C)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *x = inp + (int64_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32)
        s += x[c];
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32)
        v += (x[c] - m) * (x[c] - m);
    float r = rsqrtf(warp_sum(v) / C + 1e-5f);
    float *o = out + (int64_t)row * C;
    for (int c = lane; c < C; c += 32)
        o[c] = (x[c] - m) * r * w[c] + b[c];
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}
static void cu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                 const float *b, int N, int C)
{
    layernorm_forward_k<<<blocks_for(N, 8), 256>>>(out, mean, rstd, inp, w, b, N, C);
    launchCheck();
}

__global__ void layernorm_backward_dinp_k(float *dinp, const float *dout, const float *inp, const float *w,
                                          const float *mean, const float *rstd, int N, int C)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *x = inp + (int64_t)row * C, *d = dout + (int64_t)row * C;
    float *di = dinp + (int64_t)row * C;
    float m = mean[row], s = rstd[row], a = 0.0f, bb = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float norm = (x[c] - m) * s, dn = w[c] * d[c];
        a += dn;
        bb += dn * norm;
    }
    a = warp_sum(a) / C;
    bb = warp_sum(bb) / C;
    for (int c = lane; c < C; c += 32) {
        float norm = (x[c] - m) * s, dn = w[c] * d[c];
        di[c] += (dn - a - norm * bb) * s;
    }
}
/* Column sums of (N, C) matrices, for the gradients of LayerNorm weights
 * and of biases: db[c] += sum_r dout[r,c] and, for LayerNorm, dw[c] +=
 * sum_r dout[r,c] (inp[r,c] - mean[r]) rstd[r]. One thread per column
 * walking all N rows (what this was) keeps C threads busy: 768 on a GPU of
 * 132 SMs, and gpt2-124m's LayerNorm backward then reads 100 MB at a few
 * percent of the HBM bandwidth. Two stages instead, deterministic (a fixed
 * order of sums, so a run repeats to the bit): blocks of 8 warps each take
 * 32 columns x COLSUM_ROWS rows (a warp a row at a time, lanes along the
 * columns: 128-byte loads), sum their rows in shared memory into partials
 * (chunk, 2, C); then a thread per column adds the chunks in order. */
#define COLSUM_ROWS 256
__global__ void colsum_partial_k(float *part, const float *dout, const float *inp, const float *mean,
                                 const float *rstd, int N, int C)
{
    __shared__ float sb[8][32], sw[8][32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, c = blockIdx.x * 32 + lane;
    const int r0 = blockIdx.y * COLSUM_ROWS, r1 = min(r0 + COLSUM_ROWS, N);
    float b = 0.0f, w = 0.0f;
    if (c < C)
        for (int r = r0 + warp; r < r1; r += 8) {
            float d = dout[(int64_t)r * C + c];
            b += d;
            if (inp)
                w += (inp[(int64_t)r * C + c] - mean[r]) * rstd[r] * d;
        }
    sb[warp][lane] = b, sw[warp][lane] = w;
    __syncthreads();
    if (warp == 0 && c < C) {
        for (int k = 1; k < 8; k++)
            b += sb[k][lane], w += sw[k][lane];
        float *p = part + (int64_t)blockIdx.y * 2 * C;
        p[c] = b;
        p[C + c] = w;
    }
}
__global__ void colsum_final_k(float *db, float *dw, const float *part, int chunks, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    float b = 0.0f, w = 0.0f;
    for (int k = 0; k < chunks; k++)
        b += part[(int64_t)k * 2 * C + c], w += part[(int64_t)k * 2 * C + C + c];
    db[c] += b;
    if (dw)
        dw[c] += w;
}
/* db (C) += column sums of dout (N, C); with inp (LayerNorm) also dw (C) +=
 * column sums of dout * xhat. The partials live in a scratch kept between
 * calls (grown when needed; all on the default stream, so calls in order
 * never share it at once). */
static void colsum_add(float *db, float *dw, const float *dout, const float *inp, const float *mean,
                       const float *rstd, int N, int C)
{
    static float *part;
    static int64_t part_elems;
    if (N <= 0 || C <= 0)
        return;
    int chunks = (N + COLSUM_ROWS - 1) / COLSUM_ROWS;
    int64_t need = (int64_t)chunks * 2 * C;
    if (need > part_elems) {
        cudaCheck(cudaFree(part));
        cudaCheck(cudaMalloc((void **)&part, sizeof(float) * (size_t)need));
        part_elems = need;
    }
    colsum_partial_k<<<dim3((unsigned)((C + 31) / 32), (unsigned)chunks), 256>>>(part, dout, inp, mean, rstd, N, C);
    launchCheck();
    colsum_final_k<<<blocks_for(C, 256), 256>>>(db, dw, part, chunks, C);
    launchCheck();
}
static void cu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                  const float *w, const float *mean, const float *rstd, int N, int C)
{
    colsum_add(db, dw, dout, inp, mean, rstd, N, C);
    layernorm_backward_dinp_k<<<blocks_for(N, 8), 256>>>(dinp, dout, inp, w, mean, rstd, N, C);
    launchCheck();
}

/* ---- matmul (row-major, weight (OC,C) as llm.c) ------------------------- */
__global__ void fill_bias_k(float *out, const float *bias, int N, int OC)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (int64_t)N * OC)
        out[i] = bias[i % OC];
}
static void cu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                              int OC)
{
    float one = 1.0f, beta = 0.0f;
    if (bias) {
        fill_bias_k<<<blocks_for((int64_t)N * OC, 256), 256>>>(out, bias, N, OC);
        launchCheck();
        beta = 1.0f;
    }
    /* column-major: out^T (OC,N) = weight^T... i.e. W (C,OC)^T x inp^T (C,N) */
    cublasCheck(gemm(handle(), CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, weight, C, inp, C, &beta, out, OC));
}

static void cu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, int N, int C, int OC, float dinp_beta)
{
    float one = 1.0f;
    if (dinp) /* dinp^T (C,N) = W^T (C,OC) dout^T (OC,N) */
        cublasCheck(gemm(handle(), CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one, weight, C, dout, OC, &dinp_beta,
                                dinp, C));
    /* dweight^T (C,OC) += inp^T (C,N) dout (N,OC) */
    cublasCheck(gemm(handle(), CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one, inp, C, dout, OC, &one, dweight, C));
    if (dbias)
        colsum_add(dbias, NULL, dout, NULL, NULL, NULL, N, OC);
}

/* ---- attention: probabilities kept, (B,NH,T,T) -------------------------- */
/* one warp per row (b,h,t): causal softmax in place, zeros above the diagonal */
__global__ void causal_softmax_k(float *att, int rows, int T)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows)
        return;
    int t = row % T;
    float *a = att + (int64_t)row * T;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32)
        mx = fmaxf(mx, a[j]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) {
        float e = expf(a[j] - mx);
        a[j] = e;
        s += e;
    }
    float inv = 1.0f / warp_sum(s);
    for (int j = lane; j < T; j += 32)
        a[j] = j <= t ? a[j] * inv : 0.0f;
}
static void cu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH, int HS)
{
    int C = NH * HS, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS), one = 1.0f, zero = 0.0f;
    int64_t TT = (int64_t)T * T;
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (int64_t)b * T * C3, *k = q + C;
        float *a = att + (int64_t)b * NH * TT;
        /* att^T (t2,t) = k q^T: column-major (T,T) per head */
        cublasCheck(gemm_batched(handle(), CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, &scale, k, C3, HS, q, C3,
                                              HS, &zero, a, T, TT, NH));
    }
    causal_softmax_k<<<blocks_for((int64_t)B * NH * T, 8), 256>>>(att, B * NH * T, T);
    launchCheck();
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (int64_t)b * T * C3 + 2 * C;
        const float *a = att + (int64_t)b * NH * TT;
        /* out^T (HS,T) = v^T (HS,T) att^T (T,T) */
        cublasCheck(gemm_batched(handle(), CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, &one, v, C3, HS, a, T, TT,
                                              &zero, out + (int64_t)b * T * C, C, HS, NH));
    }
}

/* dpre = att (datt - sum att datt) * scale, masked; one warp per row */
__global__ void softmax_backward_k(float *datt, const float *att, int rows, int T, float scale)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows)
        return;
    int t = row % T;
    const float *a = att + (int64_t)row * T;
    float *d = datt + (int64_t)row * T;
    float dot = 0.0f;
    for (int j = lane; j <= t; j += 32)
        dot += a[j] * d[j];
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += 32)
        d[j] = j <= t ? a[j] * (d[j] - dot) * scale : 0.0f;
}
static void cu_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                                  int B, int T, int NH, int HS)
{
    int C = NH * HS, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS), one = 1.0f, zero = 0.0f;
    int64_t TT = (int64_t)T * T;
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (int64_t)b * T * C3 + 2 * C;
        const float *dO = dout + (int64_t)b * T * C;
        const float *a = att + (int64_t)b * NH * TT;
        float *da = datt + (int64_t)b * NH * TT;
        float *dv = dqkv + (int64_t)b * T * C3 + 2 * C;
        /* datt^T = v dO^T */
        cublasCheck(gemm_batched(handle(), CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, &one, v, C3, HS, dO, C, HS,
                                              &zero, da, T, TT, NH));
        /* dv^T (HS,T) = dO^T (HS,T) att (T,T) */
        cublasCheck(gemm_batched(handle(), CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, &one, dO, C, HS, a, T, TT,
                                              &zero, dv, C3, HS, NH));
    }
    softmax_backward_k<<<blocks_for((int64_t)B * NH * T, 8), 256>>>(datt, att, B * NH * T, T, scale);
    launchCheck();
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (int64_t)b * T * C3, *k = q + C;
        const float *da = datt + (int64_t)b * NH * TT;
        float *dq = dqkv + (int64_t)b * T * C3, *dk = dq + C;
        /* dq^T (HS,T) = k^T dpre^T ; dk^T (HS,T) = q^T dpre */
        cublasCheck(gemm_batched(handle(), CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, &one, k, C3, HS, da, T, TT,
                                              &zero, dq, C3, HS, NH));
        cublasCheck(gemm_batched(handle(), CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, &one, q, C3, HS, da, T, TT,
                                              &zero, dk, C3, HS, NH));
    }
}

/* ---- flash-style attention: one thread per query row, no T x T matrix ---- */
#define FLASH_MAX_HS 128
__global__ void flash_forward_k(float *out, float *lse, const float *qkv, int B, int T, int NH, int HS, float scale)
{
    int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* (b,h,t) */
    if (r >= (int64_t)B * NH * T)
        return;
    int t = (int)(r % T), h = (int)((r / T) % NH), b = (int)(r / ((int64_t)T * NH));
    int C = NH * HS, C3 = 3 * C;
    const float *base = qkv + (int64_t)b * T * C3 + h * HS;
    const float *q = base + (int64_t)t * C3;
    float acc[FLASH_MAX_HS];
    for (int d = 0; d < HS; d++)
        acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= t; j++) {
        const float *k = base + (int64_t)j * C3 + C, *v = base + (int64_t)j * C3 + 2 * C;
        float sc = 0.0f;
        for (int d = 0; d < HS; d++)
            sc += q[d] * k[d];
        sc *= scale;
        float mn = fmaxf(m, sc), corr = expf(m - mn), p = expf(sc - mn);
        l = l * corr + p;
        for (int d = 0; d < HS; d++)
            acc[d] = acc[d] * corr + p * v[d];
        m = mn;
    }
    float *o = out + ((int64_t)b * T + t) * C + h * HS;
    for (int d = 0; d < HS; d++)
        o[d] = acc[d] / l;
    lse[r] = m + logf(l);
}
static void cu_attention_forward_flash(float *out, float *lse, const float *qkv, int B, int T, int NH, int HS)
{
    if (HS > FLASH_MAX_HS) {
        fprintf(stderr, "triad: attention_forward_flash: head size %d > %d\n", HS, FLASH_MAX_HS);
        exit(1);
    }
    if (g_math == KERN_MATH_BF16 && flash_tc::supported(HS)) { /* tensor cores, bf16 operands */
        if (flash_tc::forward(out, lse, qkv, B, T, NH, HS) != 0)
            cudaCheck(cudaGetLastError());
        launchCheck();
        return;
    }
    int64_t rows = (int64_t)B * NH * T;
    flash_forward_k<<<blocks_for(rows, 128), 128>>>(out, lse, qkv, B, T, NH, HS, 1.0f / sqrtf((float)HS));
    launchCheck();
}

/* backward per query row t: D = dO.O; for j <= t: p = exp(s - lse),
 * ds = p (dO.v_j - D); dq += ds k_j scale; dk_j += ds q scale; dv_j += p dO
 * (dk, dv by atomicAdd over the query rows) */
__global__ void flash_backward_k(float *dqkv, const float *dout, const float *qkv, const float *out,
                                 const float *lse, int B, int T, int NH, int HS, float scale)
{
    int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= (int64_t)B * NH * T)
        return;
    int t = (int)(r % T), h = (int)((r / T) % NH), b = (int)(r / ((int64_t)T * NH));
    int C = NH * HS, C3 = 3 * C;
    const float *base = qkv + (int64_t)b * T * C3 + h * HS;
    float *dbase = dqkv + (int64_t)b * T * C3 + h * HS;
    const float *q = base + (int64_t)t * C3;
    const float *dO = dout + ((int64_t)b * T + t) * C + h * HS, *O = out + ((int64_t)b * T + t) * C + h * HS;
    float D = 0.0f, L = lse[r];
    for (int d = 0; d < HS; d++)
        D += dO[d] * O[d];
    float dq[FLASH_MAX_HS];
    for (int d = 0; d < HS; d++)
        dq[d] = 0.0f;
    for (int j = 0; j <= t; j++) {
        const float *k = base + (int64_t)j * C3 + C, *v = base + (int64_t)j * C3 + 2 * C;
        float sc = 0.0f, dp = 0.0f;
        for (int d = 0; d < HS; d++) {
            sc += q[d] * k[d];
            dp += dO[d] * v[d];
        }
        float p = expf(sc * scale - L), ds = p * (dp - D) * scale;
        float *dk = dbase + (int64_t)j * C3 + C, *dv = dbase + (int64_t)j * C3 + 2 * C;
        for (int d = 0; d < HS; d++) {
            dq[d] += ds * k[d];
            atomicAdd(&dk[d], ds * q[d]);
            atomicAdd(&dv[d], p * dO[d]);
        }
    }
    float *dqo = dbase + (int64_t)t * C3;
    for (int d = 0; d < HS; d++)
        dqo[d] = dq[d];
}
static void cu_attention_backward_flash(float *dqkv, const float *dout, const float *qkv, const float *out,
                                        const float *lse, int B, int T, int NH, int HS)
{
    if (HS > FLASH_MAX_HS) {
        fprintf(stderr, "triad: attention_backward_flash: head size %d > %d\n", HS, FLASH_MAX_HS);
        exit(1);
    }
    int64_t rows = (int64_t)B * NH * T;
    if (g_math == KERN_MATH_BF16 && flash_tc::supported(HS)) {
        /* only the q columns start at zero (dQ is added with atomics); the
         * kernel overwrites dK and dV */
        size_t C = (size_t)NH * HS;
        cudaCheck(cudaMemset2DAsync(dqkv, sizeof(float) * 3 * C, 0, sizeof(float) * C, (size_t)B * T));
        /* D = rowsum(dO o O): scratch kept between calls, grown when needed */
        static float *D;
        static int64_t D_rows;
        if (rows > D_rows) {
            cudaCheck(cudaFree(D));
            cudaCheck(cudaMalloc((void **)&D, sizeof(float) * (size_t)rows));
            D_rows = rows;
        }
        if (flash_tc::backward(dqkv, dout, qkv, out, lse, D, B, T, NH, HS) != 0)
            cudaCheck(cudaGetLastError());
        launchCheck();
        return;
    }
    cudaCheck(cudaMemsetAsync(dqkv, 0, sizeof(float) * (size_t)B * T * 3 * NH * HS)); /* atomics into all three */
    flash_backward_k<<<blocks_for(rows, 128), 128>>>(dqkv, dout, qkv, out, lse, B, T, NH, HS,
                                                      1.0f / sqrtf((float)HS));
    launchCheck();
}

/* ---- elementwise --------------------------------------------------------- */
#define GELU_SCALE 0.7978845608028654f

__global__ void gelu_forward_k(float *out, const float *inp, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}
__global__ void gelu_backward_k(float *dinp, const float *inp, const float *dout, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = inp[i];
        float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)), sech2 = 1.0f - th * th;
        float g = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] = g * dout[i];
    }
}
__global__ void residual_k(float *out, const float *a, const float *b, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = a[i] + b[i];
}
__global__ void add_inplace_k(float *y, const float *x, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] += x[i];
}
__global__ void scale_k(float *x, float s, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= s;
}
static void cu_gelu_forward(float *out, const float *inp, int64_t n)
{
    if (n <= 0)
        return;
    gelu_forward_k<<<blocks_for(n, 256), 256>>>(out, inp, n);
    launchCheck();
}
static void cu_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n)
{
    if (n <= 0)
        return;
    gelu_backward_k<<<blocks_for(n, 256), 256>>>(dinp, inp, dout, n);
    launchCheck();
}
static void cu_residual_forward(float *out, const float *a, const float *b, int64_t n)
{
    if (n <= 0)
        return;
    residual_k<<<blocks_for(n, 256), 256>>>(out, a, b, n);
    launchCheck();
}
__global__ void add_bias_k(float *x, const float *b, int64_t n, int C)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += b[i % C];
}
static void cu_add_bias(float *x, const float *b, int N, int C)
{
    int64_t n = (int64_t)N * C;
    if (n <= 0)
        return;
    add_bias_k<<<blocks_for(n, 256), 256>>>(x, b, n, C);
    launchCheck();
}
static void cu_add_inplace(float *y, const float *x, int64_t n)
{
    if (n <= 0)
        return;
    add_inplace_k<<<blocks_for(n, 256), 256>>>(y, x, n);
    launchCheck();
}
static void cu_scale(float *x, float s, int64_t n)
{
    if (n <= 0)
        return;
    scale_k<<<blocks_for(n, 256), 256>>>(x, s, n);
    launchCheck();
}

/* ---- vocabulary-parallel cross-entropy pieces: one warp per row ----------- */
__global__ void xent_rowmax_k(float *rowmax, const float *logits, int N, int V)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *l = logits + (int64_t)row * V;
    float m = -INFINITY;
    for (int j = lane; j < V; j += 32)
        m = fmaxf(m, l[j]);
    m = warp_max(m);
    if (lane == 0)
        rowmax[row] = m;
}
__global__ void xent_sumexp_k(float *sumexp, const float *logits, const float *gmax, int N, int V)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *l = logits + (int64_t)row * V;
    float g = gmax[row], s = 0.0f;
    for (int j = lane; j < V; j += 32)
        s += expf(l[j] - g);
    s = warp_sum(s);
    if (lane == 0)
        sumexp[row] = s;
}
__global__ void xent_target_k(float *tlogit, const float *logits, const int *targets, int N, int V, int v0)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N)
        return;
    int id = targets[i] - v0;
    tlogit[i] = (id >= 0 && id < V) ? logits[(int64_t)i * V + id] : 0.0f;
}
__global__ void xent_backward_k(float *logits, const float *gmax, const float *gsum, const int *targets, int N,
                                int V, int v0, float scale)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    float *l = logits + (int64_t)row * V;
    float g = gmax[row], inv = 1.0f / gsum[row];
    int id = targets[row] - v0;
    for (int j = lane; j < V; j += 32)
        l[j] = expf(l[j] - g) * inv * scale - (j == id ? scale : 0.0f);
}
/* One pass: each lane keeps a running max m and the sum s of exp(x - m)
 * over its columns, rescaling s when m grows; the warp then merges the
 * lanes' (m, s) pairs: M = max(m1, m2), S = s1 exp(m1 - M) + s2 exp(m2 - M)
 * (a lane that saw no column holds (-inf, 0) and adds nothing). */
__device__ inline void xent_merge(float &m, float &s, float m2, float s2)
{
    float M = fmaxf(m, m2);
    if (M == -INFINITY)
        return; /* both empty */
    s = (m == -INFINITY ? 0.0f : s * expf(m - M)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - M));
    m = M;
}
__global__ void xent_forward_k(float *rowmax, float *sumexp, float *tlogit, const float *logits, const int *targets,
                               int N, int V, int v0)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *l = logits + (int64_t)row * V;
    float m = -INFINITY, s = 0.0f;
    for (int j = lane; j < V; j += 32) {
        float x = l[j];
        if (x > m) {
            s = (m == -INFINITY ? 0.0f : s * expf(m - x)) + 1.0f;
            m = x;
        } else
            s += expf(x - m);
    }
    for (int off = 16; off > 0; off /= 2) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
        xent_merge(m, s, m2, s2);
    }
    if (lane == 0) {
        int id = targets[row] - v0;
        rowmax[row] = m;
        sumexp[row] = s;
        tlogit[row] = (id >= 0 && id < V) ? l[id] : 0.0f;
    }
}
static void cu_xent_forward(float *rowmax, float *sumexp, float *tlogit, const float *logits, const int *targets,
                            int N, int V, int v0)
{
    xent_forward_k<<<blocks_for(N, 8), 256>>>(rowmax, sumexp, tlogit, logits, targets, N, V, v0);
    launchCheck();
}
static void cu_xent_rowmax(float *rowmax, const float *logits, int N, int V)
{
    xent_rowmax_k<<<blocks_for(N, 8), 256>>>(rowmax, logits, N, V);
    launchCheck();
}
static void cu_xent_sumexp(float *sumexp, const float *logits, const float *gmax, int N, int V)
{
    xent_sumexp_k<<<blocks_for(N, 8), 256>>>(sumexp, logits, gmax, N, V);
    launchCheck();
}
static void cu_xent_target(float *tlogit, const float *logits, const int *targets, int N, int V, int v0)
{
    xent_target_k<<<blocks_for(N, 256), 256>>>(tlogit, logits, targets, N, V, v0);
    launchCheck();
}
static void cu_xent_backward_inplace(float *logits, const float *gmax, const float *gsum, const int *targets, int N,
                                     int V, int v0, float scale)
{
    xent_backward_k<<<blocks_for(N, 8), 256>>>(logits, gmax, gsum, targets, N, V, v0, scale);
    launchCheck();
}

/* ---- optimizer and norms --------------------------------------------------- */
__global__ void adamw_k(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                        float eps, float wd, float c1, float c2)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float gi = g[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + wd * p[i]);
}
static void cu_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                     float eps, float wd, int t)
{
    if (n <= 0)
        return;
    float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    adamw_k<<<blocks_for(n, 256), 256>>>(p, g, m, v, n, lr, b1, b2, eps, wd, c1, c2);
    launchCheck();
}

/* grid-stride partial sums in double, one atomicAdd per warp */
__device__ inline void sum_squares_add(double *acc, const float *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        s += (double)x[i] * (double)x[i];
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x % 32 == 0)
        atomicAdd(acc, s);
}
__global__ void sum_squares_k(double *acc, const float *x, int64_t n) { sum_squares_add(acc, x, n); }
static double cu_sum_squares(const float *x, int64_t n)
{
    static double *acc;
    if (!acc)
        cudaCheck(cudaMalloc((void **)&acc, sizeof(double)));
    cudaCheck(cudaMemset(acc, 0, sizeof(double)));
    if (n > 0) {
        int blocks = blocks_for(n, 256);
        if (blocks > 1024)
            blocks = 1024;
        sum_squares_k<<<blocks, 256>>>(acc, x, n);
        launchCheck();
    }
    double h = 0.0;
    cudaCheck(cudaMemcpy(&h, acc, sizeof(double), cudaMemcpyDeviceToHost));
    return h;
}

/* n segments at once: blockIdx.y is the segment, partial sums as above */
__global__ void sum_squares_many_k(double *acc, const float *base, const int64_t *meta, int n)
{
    int seg = blockIdx.y;
    sum_squares_add(acc + seg, base + meta[seg], meta[n + seg]);
}
static void cu_sum_squares_many(double *out, const float *base, const int64_t *off, const int64_t *len, int n)
{
    static int64_t *meta, *h_meta; /* off then len, device and host copies; grown as needed */
    static double *acc;
    static int cap;
    if (n <= 0)
        return;
    if (n > cap) {
        if (meta) {
            cudaCheck(cudaFree(meta));
            cudaCheck(cudaFree(acc));
            free(h_meta);
        }
        cudaCheck(cudaMalloc((void **)&meta, sizeof(int64_t) * 2 * (size_t)n));
        cudaCheck(cudaMalloc((void **)&acc, sizeof(double) * (size_t)n));
        h_meta = (int64_t *)malloc(sizeof(int64_t) * 2 * (size_t)n);
        if (!h_meta) {
            fprintf(stderr, "triad: out of host memory in sum_squares_many\n");
            exit(1);
        }
        cap = n;
    }
    int64_t longest = 0;
    for (int i = 0; i < n; i++) {
        h_meta[i] = off[i], h_meta[n + i] = len[i];
        longest = len[i] > longest ? len[i] : longest;
    }
    cudaCheck(cudaMemcpy(meta, h_meta, sizeof(int64_t) * 2 * (size_t)n, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemset(acc, 0, sizeof(double) * (size_t)n));
    int bx = blocks_for(longest > 0 ? longest : 1, 256);
    bx = bx > 64 ? 64 : bx;
    for (int lo = 0; lo < n; lo += 65535) { /* gridDim.y <= 65535 */
        int m = n - lo < 65535 ? n - lo : 65535;
        sum_squares_many_k<<<dim3((unsigned)bx, (unsigned)m), 256>>>(acc + lo, base, meta + lo, n);
        launchCheck();
    }
    cudaCheck(cudaMemcpy(out, acc, sizeof(double) * (size_t)n, cudaMemcpyDeviceToHost));
}

/* ---- bf16 ---------------------------------------------------------------- */
__global__ void to_bf16_k(__nv_bfloat16 *dst, const float *src, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __float2bfloat16_rn(src[i]);
}
static void cu_to_bf16(uint16_t *dst, const float *src, int64_t n)
{
    if (n <= 0)
        return;
    to_bf16_k<<<blocks_for(n, 256), 256>>>((__nv_bfloat16 *)dst, src, n);
    launchCheck();
}
static void cu_matmul_forward_bf16(float *out, const uint16_t *inp, const uint16_t *weight, const float *bias, int N,
                                   int C, int OC)
{
    float one = 1.0f, beta = 0.0f;
    if (bias) {
        fill_bias_k<<<blocks_for((int64_t)N * OC, 256), 256>>>(out, bias, N, OC);
        launchCheck();
        beta = 1.0f;
    }
    cublasCheck(cublasGemmEx(handle(), CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, weight, CUDA_R_16BF, C, inp,
                             CUDA_R_16BF, C, &beta, out, CUDA_R_32F, OC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
__global__ void adamw_bf16_k(float *p, __nv_bfloat16 *pb, const float *g, float *m, float *v, int64_t n, float lr,
                             float b1, float b2, float eps, float wd, float c1, float c2)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float gi = g[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = p[i] - lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + wd * p[i]);
    p[i] = pi;
    pb[i] = __float2bfloat16_rn(pi);
}
static void cu_adamw_bf16(float *p, uint16_t *p_bf16, const float *g, float *m, float *v, int64_t n, float lr,
                          float b1, float b2, float eps, float wd, int t)
{
    if (n <= 0)
        return;
    float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    adamw_bf16_k<<<blocks_for(n, 256), 256>>>(p, (__nv_bfloat16 *)p_bf16, g, m, v, n, lr, b1, b2, eps, wd, c1, c2);
    launchCheck();
}

static const kern_ops cuda_ops = {
    "cuda",
    cu_alloc,
    cu_free,
    cu_to_device,
    cu_to_host,
    cu_memset0,
    cu_sync,
    cu_encoder_forward,
    cu_encoder_backward,
    cu_layernorm_forward,
    cu_layernorm_backward,
    cu_matmul_forward,
    cu_matmul_backward,
    cu_attention_forward,
    cu_attention_backward,
    cu_gelu_forward,
    cu_gelu_backward,
    cu_residual_forward,
    cu_add_inplace,
    cu_xent_rowmax,
    cu_xent_sumexp,
    cu_xent_target,
    cu_xent_backward_inplace,
    cu_adamw,
    cu_sum_squares,
    cu_scale,
    cu_attention_forward_flash,
    cu_attention_backward_flash,
    cu_to_bf16,
    cu_matmul_forward_bf16,
    cu_adamw_bf16,
    cu_copy,
    cu_add_bias,
    cu_set_math,
    cu_sum_squares_many,
    cu_xent_forward,
};

extern "C" const kern_ops *kern_ops_cuda(void) { return &cuda_ops; }

extern "C" int kern_cuda_use_device(int local_rank, char *err, int n)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count < 1) {
        snprintf(err, (size_t)n, "%s", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device visible");
        return -1;
    }
    int d = (local_rank > 0 ? local_rank : 0) % count;
    e = cudaSetDevice(d);
    if (e != cudaSuccess) {
        snprintf(err, (size_t)n, "cudaSetDevice(%d): %s", d, cudaGetErrorString(e));
        return -1;
    }
    return d;
}

extern "C" int kern_cuda_mem_info(int64_t *free_bytes, int64_t *total_bytes)
{
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    *free_bytes = (int64_t)f, *total_bytes = (int64_t)t;
    return 0;
}

extern "C" int kern_cuda_device_count(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count;
}
