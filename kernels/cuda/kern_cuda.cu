/* kern_cuda.cu — the CUDA backend of kernels.h as a kern_ops table, in
 * both storages of set_storage: fp32, or bf16 activations and GEMM
 * weights with fp32 arithmetic, fp32 parameter gradients and optimizer
 * state (kernels.h says which tensor is which).
 *
 * Matrix products go through cuBLAS: in fp32 storage cublasSgemm (fp32
 * accumulation, no TF32) or, with set_math(KERN_MATH_BF16), cublasGemmEx on
 * the fp32 buffers with CUBLAS_COMPUTE_32F_FAST_16BF (bf16 tensor-core math,
 * fp32 accumulation); in bf16 storage cublasGemmEx on bf16 operands with
 * CUBLAS_COMPUTE_32F, writing bf16 activations or accumulating into fp32
 * weight gradients, and a forward GEMM with a bias through cuBLASLt with
 * the bias added in its epilogue (no pass that writes the bias first). Attention keeps the T x T probabilities as
 * strided-batched GEMMs over the heads of one sequence (the contract of
 * kern_cpu_attention_*), or runs fused (flash_tc.cuh on tensor cores in
 * bf16 math, exact row kernels in fp32). The rest are plain kernels: one
 * warp per row for row reductions, one thread per element otherwise, each a
 * template over the storage type T (float or bf16, storage.cuh) that
 * computes in fp32 and rounds what it writes once. Written as C-style CUDA
 * C++; the entry point is extern "C". Every call is on the default stream.
 *
 * Every CUDA or cuBLAS error prints file:line and the error string and
 * exits with status 1 (cudaCheck / cublasCheck). */
#ifndef TRIAD_HAVE_CUDA
#define TRIAD_HAVE_CUDA 1
#endif
#include "../kernels.h"
#include "flash_tc.cuh"
#include "storage.cuh"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A buffer kept between calls (all on the default stream, so calls in
 * order never share it at once), grown when a call needs more. */
static void *scratch_grow(void **buf, int64_t *cap, int64_t bytes)
{
    if (bytes > *cap) {
        cudaCheck(cudaFree(*buf));
        cudaCheck(cudaMalloc(buf, (size_t)bytes));
        *cap = bytes;
    }
    return *buf;
}

/* ---- math and storage ------------------------------------------------------ */

/* GEMM math mode (kern_ops set_math): plain fp32 (pedantic: no TF32), or
 * bf16 tensor-core math with fp32 accumulation */
static int g_math = KERN_MATH_FP32;
static void cu_set_math(int mode)
{
    g_math = mode;
    cublasCheck(cublasSetMathMode(handle(), mode == KERN_MATH_BF16 ? CUBLAS_DEFAULT_MATH : CUBLAS_PEDANTIC_MATH));
}
static int g_store = KERN_STORE_FP32;
static int cu_set_storage(int mode)
{
    if (mode != KERN_STORE_FP32 && mode != KERN_STORE_BF16)
        return -1;
    g_store = mode;
    return 0;
}
static bool store_bf16(void) { return g_store == KERN_STORE_BF16; }
static cudaDataType act_type(void) { return store_bf16() ? CUDA_R_16BF : CUDA_R_32F; }

/* C (ct) = alpha op(A) op(B) + beta C, A and B of type ab: cublasSgemm for
 * fp32 in fp32 math, FAST_16BF on fp32 operands in bf16 math, bf16
 * operands with CUBLAS_COMPUTE_32F */
static cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                           const void *A, int lda, const void *B, int ldb, float beta, void *C, cudaDataType ct,
                           int ldc)
{
    cudaDataType ab = act_type();
    if (ab == CUDA_R_32F && ct == CUDA_R_32F && g_math != KERN_MATH_BF16)
        return cublasSgemm(handle(), ta, tb, m, n, k, &alpha, (const float *)A, lda, (const float *)B, ldb, &beta,
                           (float *)C, ldc);
    cublasComputeType_t compute = ab == CUDA_R_32F ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    return cublasGemmEx(handle(), ta, tb, m, n, k, &alpha, A, ab, lda, B, ab, ldb, &beta, C, ct, ldc, compute,
                        CUBLAS_GEMM_DEFAULT);
}
/* the same over count matrices sa, sb, sc elements apart; C an activation */
static cublasStatus_t gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                                   const void *A, int lda, long long sa, const void *B, int ldb, long long sb,
                                   float beta, void *C, int ldc, long long sc, int count)
{
    cudaDataType ab = act_type();
    if (ab == CUDA_R_32F && g_math != KERN_MATH_BF16)
        return cublasSgemmStridedBatched(handle(), ta, tb, m, n, k, &alpha, (const float *)A, lda, sa,
                                         (const float *)B, ldb, sb, &beta, (float *)C, ldc, sc, count);
    cublasComputeType_t compute = ab == CUDA_R_32F ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    return cublasGemmStridedBatchedEx(handle(), ta, tb, m, n, k, &alpha, A, ab, lda, sa, B, ab, ldb, sb, &beta, C, ab,
                                      ldc, sc, count, compute, CUBLAS_GEMM_DEFAULT);
}

/* An op in the storage of the moment: name<float>(args) or name<bf16>(args),
 * the host template casting its void pointers to T */
#define BY_STORAGE(name, ...) (store_bf16() ? name<bf16>(__VA_ARGS__) : name<float>(__VA_ARGS__))

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
template <typename T>
__global__ void encoder_forward_k(T *out, const int *tok, const float *wte, const float *wpe, int B, int Tn, int C,
                                  int v0, int V, int add_pos)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * Tn * C)
        return;
    int64_t bt = i / C;
    int c = (int)(i % C), t = (int)(bt % Tn), id = tok[bt] - v0;
    float x = (id >= 0 && id < V) ? wte[(int64_t)id * C + c] : 0.0f;
    if (add_pos)
        x += wpe[(int64_t)t * C + c];
    st(&out[i], x);
}
template <typename T>
static void encoder_forward(void *out, const int *tok, const float *wte, const float *wpe, int B, int Tn, int C,
                            int v0, int V, int add_pos)
{
    int64_t n = (int64_t)B * Tn * C;
    encoder_forward_k<T><<<blocks_for(n, 256), 256>>>((T *)out, tok, wte, wpe, B, Tn, C, v0, V, add_pos);
    launchCheck();
}
static void cu_encoder_forward(void *out, const int *tok, const float *wte, const float *wpe, int B, int Tn, int C,
                               int v0, int V, int add_pos)
{
    BY_STORAGE(encoder_forward, out, tok, wte, wpe, B, Tn, C, v0, V, add_pos);
}

template <typename T>
__global__ void encoder_backward_k(float *dwte, float *dwpe, const T *dout, const int *tok, int B, int Tn, int C,
                                   int v0, int V, int add_pos)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * Tn * C)
        return;
    int64_t bt = i / C;
    int c = (int)(i % C), t = (int)(bt % Tn), id = tok[bt] - v0;
    float d = ld(dout[i]);
    if (id >= 0 && id < V)
        atomicAdd(&dwte[(int64_t)id * C + c], d);
    if (add_pos)
        atomicAdd(&dwpe[(int64_t)t * C + c], d);
}
template <typename T>
static void encoder_backward(float *dwte, float *dwpe, const void *dout, const int *tok, int B, int Tn, int C, int v0,
                             int V, int add_pos)
{
    int64_t n = (int64_t)B * Tn * C;
    encoder_backward_k<T><<<blocks_for(n, 256), 256>>>(dwte, dwpe, (const T *)dout, tok, B, Tn, C, v0, V, add_pos);
    launchCheck();
}
static void cu_encoder_backward(float *dwte, float *dwpe, const void *dout, const int *tok, int B, int Tn, int C,
                                int v0, int V, int add_pos)
{
    BY_STORAGE(encoder_backward, dwte, dwpe, dout, tok, B, Tn, C, v0, V, add_pos);
}

/* ---- layernorm: one warp per row ---------------------------------------- */
template <typename T>
__global__ void layernorm_forward_k(T *out, float *mean, float *rstd, const T *inp, const float *w, const float *b,
                                    int N, int C)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const T *x = inp + (int64_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32)
        s += ld(x[c]);
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = ld(x[c]) - m;
        v += d * d;
    }
    float r = rsqrtf(warp_sum(v) / C + 1e-5f);
    T *o = out + (int64_t)row * C;
    for (int c = lane; c < C; c += 32)
        st(&o[c], (ld(x[c]) - m) * r * w[c] + b[c]);
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}
template <typename T>
static void layernorm_forward(void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
                              int N, int C)
{
    layernorm_forward_k<T><<<blocks_for(N, 8), 256>>>((T *)out, mean, rstd, (const T *)inp, w, b, N, C);
    launchCheck();
}
static void cu_layernorm_forward(void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
                                 int N, int C)
{
    BY_STORAGE(layernorm_forward, out, mean, rstd, inp, w, b, N, C);
}

template <typename T>
__global__ void layernorm_backward_dinp_k(T *dinp, const T *dout, const T *inp, const float *w, const float *mean,
                                          const float *rstd, int N, int C)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const T *x = inp + (int64_t)row * C, *d = dout + (int64_t)row * C;
    T *di = dinp + (int64_t)row * C;
    float m = mean[row], s = rstd[row], a = 0.0f, bb = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float norm = (ld(x[c]) - m) * s, dn = w[c] * ld(d[c]);
        a += dn;
        bb += dn * norm;
    }
    a = warp_sum(a) / C;
    bb = warp_sum(bb) / C;
    for (int c = lane; c < C; c += 32) {
        float norm = (ld(x[c]) - m) * s, dn = w[c] * ld(d[c]);
        st(&di[c], ld(di[c]) + (dn - a - norm * bb) * s);
    }
}

/* Column sums of (N, C) matrices, for the gradients of LayerNorm weights
 * and of biases: db[c] += sum_r dout[r,c] and, for LayerNorm, dw[c] +=
 * sum_r dout[r,c] (inp[r,c] - mean[r]) rstd[r]. One thread per column
 * walking all N rows keeps C threads busy: 768 on a GPU of 132 SMs, and
 * gpt2-124m's LayerNorm backward then reads 100 MB at a few percent of the
 * HBM bandwidth. Two stages instead, deterministic (a fixed order of sums,
 * so a run repeats to the bit): blocks of 8 warps each take 32 columns x
 * COLSUM_ROWS rows (a warp a row at a time, lanes along the columns:
 * coalesced), sum their rows in shared memory into partials (chunk, 2, C);
 * then a thread per column adds the chunks in order. */
#define COLSUM_ROWS 256
template <typename T>
__global__ void colsum_partial_k(float *part, const T *dout, const T *inp, const float *mean, const float *rstd, int N,
                                 int C)
{
    __shared__ float sb[8][32], sw[8][32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, c = blockIdx.x * 32 + lane;
    const int r0 = blockIdx.y * COLSUM_ROWS, r1 = min(r0 + COLSUM_ROWS, N);
    float b = 0.0f, w = 0.0f;
    if (c < C)
        for (int r = r0 + warp; r < r1; r += 8) {
            float d = ld(dout[(int64_t)r * C + c]);
            b += d;
            if (inp)
                w += (ld(inp[(int64_t)r * C + c]) - mean[r]) * rstd[r] * d;
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
 * column sums of dout * xhat */
template <typename T>
static void colsum_add(float *db, float *dw, const T *dout, const T *inp, const float *mean, const float *rstd, int N,
                       int C)
{
    static void *part;
    static int64_t part_bytes;
    if (N <= 0 || C <= 0)
        return;
    int chunks = (N + COLSUM_ROWS - 1) / COLSUM_ROWS;
    float *p = (float *)scratch_grow(&part, &part_bytes, (int64_t)sizeof(float) * chunks * 2 * C);
    colsum_partial_k<T><<<dim3((unsigned)((C + 31) / 32), (unsigned)chunks), 256>>>(p, dout, inp, mean, rstd, N, C);
    launchCheck();
    colsum_final_k<<<blocks_for(C, 256), 256>>>(db, dw, p, chunks, C);
    launchCheck();
}
template <typename T>
static void layernorm_backward(void *dinp, float *dw, float *db, const void *dout, const void *inp, const float *w,
                               const float *mean, const float *rstd, int N, int C)
{
    colsum_add<T>(db, dw, (const T *)dout, (const T *)inp, mean, rstd, N, C);
    layernorm_backward_dinp_k<T><<<blocks_for(N, 8), 256>>>((T *)dinp, (const T *)dout, (const T *)inp, w, mean, rstd,
                                                           N, C);
    launchCheck();
}
static void cu_layernorm_backward(void *dinp, float *dw, float *db, const void *dout, const void *inp, const float *w,
                                  const float *mean, const float *rstd, int N, int C)
{
    BY_STORAGE(layernorm_backward, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}

/* ---- matmul (row-major, weight (OC,C) as llm.c) ------------------------- */
/* out (N,OC) = bias on every row, copied exactly (it is in out's type), so
 * that the GEMM's beta = 1 adds it to its fp32 sums before the one
 * rounding of the result */
template <typename T> __global__ void fill_bias_k(T *out, const T *bias, int N, int OC)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (int64_t)N * OC)
        out[i] = bias[i % OC];
}
template <typename T>
static void fill_bias(void *out, const void *bias, int N, int OC)
{
    fill_bias_k<T><<<blocks_for((int64_t)N * OC, 256), 256>>>((T *)out, (const T *)bias, N, OC);
    launchCheck();
}
/* bf16 storage: one GEMM through cuBLASLt with work fused into its
 * epilogue, on the fp32 sums before the one rounding of each output:
 *   CUBLASLT_EPILOGUE_BIAS          D = AB + bias (a bias of D's type):
 *     what fill_bias + beta = 1 computes, without writing D first and
 *     reading it back;
 *   CUBLASLT_EPILOGUE_GELU_AUX_BIAS aux = AB + bias, D = gelu(AB + bias);
 *   CUBLASLT_EPILOGUE_DGELU         D = gelu'(aux) * AB.
 * cuBLASLt's GELU is the tanh approximation GPT-2 and triad's gelu kernels
 * use (a public cuBLASLt epilogue test expects gelu(-1) = -0.158806 and
 * gelu(1) = 0.841194, the tanh form's values; the erf form's are -0.158655
 * and 0.841345). The two forms differ by under 5e-4 (at |x| near 2), a
 * tenth of a bf16 unit there, so either way the fused op stays within its
 * tolerance of the CPU's; make check-gpu compares them on a GPU.
 * Column-major, as cuBLAS sees triad's row-major tensors: D (m,n) =
 * op(A) (m,k) B (k,n), A stored (k,m) when ta is T and (m,k) when N, B
 * (k,n), D and aux (m,n), every leading dimension its row count. The
 * algorithm cuBLASLt's heuristic picks is kept per call shape and
 * alignments (the heuristic costs tens of microseconds of host time).
 * Alignment: the heuristic assumes 256-byte aligned matrices unless told
 * otherwise (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES, default 256) and
 * may pick an algorithm a less aligned one cannot run; triad's tensors are
 * carved from slabs at any multiple of their element size, so each
 * matrix's true alignment (its pointer's and its rows' stride's, up to 256)
 * is passed. Every pointer, the bias and aux ones too, must be 16-byte
 * aligned (as llm.c requires of its cuBLASLt calls).
 * 0, or -1 when cuBLASLt offers no algorithm, a pointer is less aligned or
 * the aux's leading dimension is not a multiple of 8 (cuBLASLt's rule): the
 * caller falls back to separate kernels. */
static uint32_t lt_align(const void *p, int64_t ld)
{
    uintptr_t a = (uintptr_t)p | (uintptr_t)(ld * (int64_t)sizeof(bf16));
    uint32_t al = 256;
    while (al > 1 && a % al)
        al /= 2;
    return al;
}
static int lt_gemm(cublasOperation_t ta, int m, int n, int k, const void *A, const void *B, void *D,
                   cublasLtEpilogue_t epi, const void *bias, const void *aux)
{
    enum { SLOTS = 64 };
    static const size_t WS = (size_t)32 << 20;
    static cublasLtHandle_t lt;
    static void *ws;
    static struct {
        int ta, m, n, k, epi, ok;
        uint32_t al[5];
        cublasLtMatmulAlgo_t algo;
    } cache[SLOTS];
    static int n_cache;
    int64_t lda = ta == CUBLAS_OP_T ? k : m;
    /* A, B, D, and the bias and aux pointers, whose values the heuristic
     * reads for their alignment too (cublasLt.h) */
    uint32_t al[5] = {lt_align(A, lda), lt_align(B, k), lt_align(D, m), lt_align(bias, 0), lt_align(aux, m)};
    if ((aux && m % 8 != 0) || al[0] < 16 || al[1] < 16 || al[2] < 16 || al[3] < 16 || al[4] < 16)
        return -1;
    if (!lt) {
        cublasCheck(cublasLtCreate(&lt));
        cudaCheck(cudaMalloc(&ws, WS));
    }
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasCheck(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t tb = CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias)
        cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (aux) {
        int64_t aux_ld = m;
        cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
        cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld));
    }
    if (ta == CUBLAS_OP_T)
        cublasCheck(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)k, (uint64_t)m, k));
    else
        cublasCheck(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)m, (uint64_t)k, m));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, (uint64_t)k, (uint64_t)n, k));
    cublasCheck(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, (uint64_t)m, (uint64_t)n, m));
    int i = 0;
    while (i < n_cache && !(cache[i].ta == (int)ta && cache[i].m == m && cache[i].n == n && cache[i].k == k &&
                            cache[i].epi == (int)epi && !memcmp(cache[i].al, al, sizeof al)))
        i++;
    if (i == n_cache) {
        cublasLtMatmulPreference_t pref;
        cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
        uint64_t wsb = WS;
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0],
                                                         sizeof al[0]));
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1],
                                                         sizeof al[1]));
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2],
                                                         sizeof al[2]));
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2],
                                                         sizeof al[2]));
        cublasLtMatmulHeuristicResult_t h;
        int found = 0;
        cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &h, &found);
        cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
        if (n_cache < SLOTS)
            n_cache++;
        else
            i = SLOTS - 1; /* full: the last slot is reused */
        cache[i].ta = (int)ta, cache[i].m = m, cache[i].n = n, cache[i].k = k, cache[i].epi = (int)epi;
        memcpy(cache[i].al, al, sizeof al);
        cache[i].ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
        if (cache[i].ok)
            cache[i].algo = h.algo;
    }
    int rc = -1;
    if (cache[i].ok) {
        float one = 1.0f, zero = 0.0f;
        cublasCheck(cublasLtMatmul(lt, op, &one, A, la, B, lb, &zero, D, ld, D, ld, &cache[i].algo, ws, WS, 0));
        rc = 0;
    }
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(ld));
    cublasCheck(cublasLtMatmulDescDestroy(op));
    return rc;
}

static void cu_matmul_forward(void *out, const void *inp, const void *weight, const void *bias, int N, int C, int OC)
{
    /* out^T (OC,N) = W (C,OC)^T x inp^T (C,N), the bias in the epilogue */
    if (bias && store_bf16() &&
        lt_gemm(CUBLAS_OP_T, OC, N, C, weight, inp, out, CUBLASLT_EPILOGUE_BIAS, bias, NULL) == 0)
        return;
    float beta = 0.0f;
    if (bias) {
        BY_STORAGE(fill_bias, out, bias, N, OC);
        beta = 1.0f;
    }
    /* column-major: out^T (OC,N) = W (C,OC)^T x inp^T (C,N) */
    cublasCheck(gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, 1.0f, weight, C, inp, C, beta, out, act_type(), OC));
}

static void cu_matmul_backward(void *dinp, float *dweight, float *dbias, const void *dout, const void *inp,
                               const void *weight, int N, int C, int OC, float dinp_beta)
{
    if (dinp) /* dinp^T (C,N) = W^T (C,OC) dout^T (OC,N) */
        cublasCheck(gemm(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, 1.0f, weight, C, dout, OC, dinp_beta, dinp, act_type(), C));
    /* dweight^T (C,OC) += inp^T (C,N) dout (N,OC), accumulated in fp32 */
    cublasCheck(gemm(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dweight, CUDA_R_32F, C));
    if (dbias) {
        if (store_bf16())
            colsum_add<bf16>(dbias, NULL, (const bf16 *)dout, (const bf16 *)NULL, NULL, NULL, N, OC);
        else
            colsum_add<float>(dbias, NULL, (const float *)dout, (const float *)NULL, NULL, NULL, N, OC);
    }
}

/* The MLP's GEMM + GELU and its backward (kernels.h): in bf16 storage one
 * cuBLASLt call each (GELU_AUX_BIAS writes pre and gelu(pre) from the same
 * fp32 sums; DGELU multiplies the fp32 product by gelu'(pre)), else, or
 * when cuBLASLt offers no algorithm, the separate kernels */
static void cu_gelu_forward(void *out, const void *inp, int64_t n);
static void cu_gelu_backward(void *dinp, const void *inp, const void *dout, int64_t n);
static void cu_matmul_gelu_forward(void *out, void *pre, const void *inp, const void *weight, const void *bias, int N,
                                   int C, int OC)
{
    if (store_bf16() && bias &&
        lt_gemm(CUBLAS_OP_T, OC, N, C, weight, inp, out, CUBLASLT_EPILOGUE_GELU_AUX_BIAS, bias, pre) == 0)
        return;
    cu_matmul_forward(pre, inp, weight, bias, N, C, OC);
    cu_gelu_forward(out, pre, (int64_t)N * OC);
}
static void cu_matmul_gelu_backward(void *dpre, float *dweight, float *dbias, const void *dout, const void *inp,
                                    const void *pre, const void *weight, void *dscratch, int N, int C, int OC)
{
    /* dpre^T (C,N) = gelu'(pre^T) * (W^T (C,OC) dout^T (OC,N)) */
    if (store_bf16() && lt_gemm(CUBLAS_OP_N, C, N, OC, weight, dout, dpre, CUBLASLT_EPILOGUE_DGELU, NULL, pre) == 0) {
        cu_matmul_backward(NULL, dweight, dbias, dout, inp, weight, N, C, OC, 0.0f);
        return;
    }
    cu_matmul_backward(dscratch, dweight, dbias, dout, inp, weight, N, C, OC, 0.0f);
    cu_gelu_backward(dpre, pre, dscratch, (int64_t)N * C);
}

/* ---- attention: probabilities kept, (B,NH,T,T) -------------------------- */
/* one warp per row (b,h,t): causal softmax in place, zeros above the
 * diagonal (in bf16 storage the scores it reads were rounded to bf16 by
 * their GEMM, as in llm.c) */
template <typename T> __global__ void causal_softmax_k(T *att, int rows, int Tn)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows)
        return;
    int t = row % Tn;
    T *a = att + (int64_t)row * Tn;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32)
        mx = fmaxf(mx, ld(a[j]));
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32)
        s += expf(ld(a[j]) - mx);
    float inv = 1.0f / warp_sum(s);
    for (int j = lane; j < Tn; j += 32)
        st(&a[j], j <= t ? expf(ld(a[j]) - mx) * inv : 0.0f);
}
template <typename T>
static void attention_forward(void *out, void *att, const void *qkv, int B, int Tn, int NH, int HS)
{
    int C = NH * HS, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    int64_t TT = (int64_t)Tn * Tn;
    for (int b = 0; b < B; b++) {
        const T *q = (const T *)qkv + (int64_t)b * Tn * C3, *k = q + C;
        T *a = (T *)att + (int64_t)b * NH * TT;
        /* att^T (t2,t) = k q^T: column-major (T,T) per head */
        cublasCheck(gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, Tn, Tn, HS, scale, k, C3, HS, q, C3, HS, 0.0f, a, Tn, TT, NH));
    }
    causal_softmax_k<T><<<blocks_for((int64_t)B * NH * Tn, 8), 256>>>((T *)att, B * NH * Tn, Tn);
    launchCheck();
    for (int b = 0; b < B; b++) {
        const T *v = (const T *)qkv + (int64_t)b * Tn * C3 + 2 * C;
        const T *a = (const T *)att + (int64_t)b * NH * TT;
        /* out^T (HS,T) = v^T (HS,T) att^T (T,T) */
        cublasCheck(gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, HS, Tn, Tn, 1.0f, v, C3, HS, a, Tn, TT, 0.0f,
                                 (T *)out + (int64_t)b * Tn * C, C, HS, NH));
    }
}
static void cu_attention_forward(void *out, void *att, const void *qkv, int B, int Tn, int NH, int HS)
{
    BY_STORAGE(attention_forward, out, att, qkv, B, Tn, NH, HS);
}

/* dpre = att (datt - sum att datt) * scale, masked; one warp per row */
template <typename T> __global__ void softmax_backward_k(T *datt, const T *att, int rows, int Tn, float scale)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows)
        return;
    int t = row % Tn;
    const T *a = att + (int64_t)row * Tn;
    T *d = datt + (int64_t)row * Tn;
    float dot = 0.0f;
    for (int j = lane; j <= t; j += 32)
        dot += ld(a[j]) * ld(d[j]);
    dot = warp_sum(dot);
    for (int j = lane; j < Tn; j += 32)
        st(&d[j], j <= t ? ld(a[j]) * (ld(d[j]) - dot) * scale : 0.0f);
}
template <typename T>
static void attention_backward(void *dqkv, void *datt, const void *dout, const void *qkv, const void *att, int B,
                               int Tn, int NH, int HS)
{
    int C = NH * HS, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    int64_t TT = (int64_t)Tn * Tn;
    for (int b = 0; b < B; b++) {
        const T *v = (const T *)qkv + (int64_t)b * Tn * C3 + 2 * C;
        const T *dO = (const T *)dout + (int64_t)b * Tn * C;
        const T *a = (const T *)att + (int64_t)b * NH * TT;
        T *da = (T *)datt + (int64_t)b * NH * TT;
        T *dv = (T *)dqkv + (int64_t)b * Tn * C3 + 2 * C;
        /* datt^T = v dO^T */
        cublasCheck(gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, Tn, Tn, HS, 1.0f, v, C3, HS, dO, C, HS, 0.0f, da, Tn, TT, NH));
        /* dv^T (HS,T) = dO^T (HS,T) att (T,T) */
        cublasCheck(gemm_batched(CUBLAS_OP_N, CUBLAS_OP_T, HS, Tn, Tn, 1.0f, dO, C, HS, a, Tn, TT, 0.0f, dv, C3, HS, NH));
    }
    softmax_backward_k<T><<<blocks_for((int64_t)B * NH * Tn, 8), 256>>>((T *)datt, (const T *)att, B * NH * Tn, Tn,
                                                                       scale);
    launchCheck();
    for (int b = 0; b < B; b++) {
        const T *q = (const T *)qkv + (int64_t)b * Tn * C3, *k = q + C;
        const T *da = (const T *)datt + (int64_t)b * NH * TT;
        T *dq = (T *)dqkv + (int64_t)b * Tn * C3, *dk = dq + C;
        /* dq^T (HS,T) = k^T dpre^T ; dk^T (HS,T) = q^T dpre */
        cublasCheck(gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, HS, Tn, Tn, 1.0f, k, C3, HS, da, Tn, TT, 0.0f, dq, C3, HS, NH));
        cublasCheck(gemm_batched(CUBLAS_OP_N, CUBLAS_OP_T, HS, Tn, Tn, 1.0f, q, C3, HS, da, Tn, TT, 0.0f, dk, C3, HS, NH));
    }
}
static void cu_attention_backward(void *dqkv, void *datt, const void *dout, const void *qkv, const void *att, int B,
                                  int Tn, int NH, int HS)
{
    BY_STORAGE(attention_backward, dqkv, datt, dout, qkv, att, B, Tn, NH, HS);
}

/* ---- fused attention ------------------------------------------------------- */
/* Scratch of the fused backward: D = rowsum(dO o O) (B*NH*T) and, in bf16
 * storage, dQ in fp32 (B*T*C; the tensor-core kernel adds it with atomics)
 * or, for the row kernel, the whole fp32 dqkv (B*T*3C). */
static float *flash_scratch(int which, int64_t elems)
{
    static void *buf[2];
    static int64_t cap[2];
    return (float *)scratch_grow(&buf[which], &cap[which], (int64_t)sizeof(float) * elems);
}
/* dst (rows, cols of a row stride ld_dst) = src (fp32, stride ld_src), rounded to T */
template <typename T>
__global__ void store_rows_k(T *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t rows, int cols)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols)
        return;
    int64_t r = i / cols;
    int c = (int)(i % cols);
    st(&dst[r * ld_dst + c], src[r * ld_src + c]);
}

/* fp32 math: one thread per query row, no T x T matrix, exact */
#define FLASH_MAX_HS 128
template <typename T>
__global__ void flash_forward_k(T *out, float *lse, const T *qkv, int B, int Tn, int NH, int HS, float scale)
{
    int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* (b,h,t) */
    if (r >= (int64_t)B * NH * Tn)
        return;
    int t = (int)(r % Tn), h = (int)((r / Tn) % NH), b = (int)(r / ((int64_t)Tn * NH));
    int C = NH * HS, C3 = 3 * C;
    const T *base = qkv + (int64_t)b * Tn * C3 + h * HS;
    const T *q = base + (int64_t)t * C3;
    float acc[FLASH_MAX_HS];
    for (int d = 0; d < HS; d++)
        acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= t; j++) {
        const T *k = base + (int64_t)j * C3 + C, *v = base + (int64_t)j * C3 + 2 * C;
        float sc = 0.0f;
        for (int d = 0; d < HS; d++)
            sc += ld(q[d]) * ld(k[d]);
        sc *= scale;
        float mn = fmaxf(m, sc), corr = expf(m - mn), p = expf(sc - mn);
        l = l * corr + p;
        for (int d = 0; d < HS; d++)
            acc[d] = acc[d] * corr + p * ld(v[d]);
        m = mn;
    }
    T *o = out + ((int64_t)b * Tn + t) * C + h * HS;
    for (int d = 0; d < HS; d++)
        st(&o[d], acc[d] / l);
    lse[r] = m + logf(l);
}
template <typename T>
static void attention_forward_flash(void *out, float *lse, const void *qkv, int B, int Tn, int NH, int HS)
{
    if (g_math == KERN_MATH_BF16 && flash_tc::supported(HS)) { /* tensor cores, bf16 operands */
        if (flash_tc::forward((T *)out, lse, (const T *)qkv, B, Tn, NH, HS) != 0)
            cudaCheck(cudaGetLastError());
        launchCheck();
        return;
    }
    int64_t rows = (int64_t)B * NH * Tn;
    flash_forward_k<T><<<blocks_for(rows, 128), 128>>>((T *)out, lse, (const T *)qkv, B, Tn, NH, HS,
                                                       1.0f / sqrtf((float)HS));
    launchCheck();
}
static void cu_attention_forward_flash(void *out, float *lse, const void *qkv, int B, int Tn, int NH, int HS)
{
    if (HS > FLASH_MAX_HS) {
        fprintf(stderr, "triad: attention_forward_flash: head size %d > %d\n", HS, FLASH_MAX_HS);
        exit(1);
    }
    BY_STORAGE(attention_forward_flash, out, lse, qkv, B, Tn, NH, HS);
}

/* backward per query row t: D = dO.O; for j <= t: p = exp(s - lse),
 * ds = p (dO.v_j - D); dq += ds k_j scale; dk_j += ds q scale; dv_j += p dO
 * (dk, dv by atomicAdd over the query rows, into dqkv: fp32, zeroed) */
template <typename T>
__global__ void flash_backward_k(float *dqkv, const T *dout, const T *qkv, const T *out, const float *lse, int B,
                                 int Tn, int NH, int HS, float scale)
{
    int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= (int64_t)B * NH * Tn)
        return;
    int t = (int)(r % Tn), h = (int)((r / Tn) % NH), b = (int)(r / ((int64_t)Tn * NH));
    int C = NH * HS, C3 = 3 * C;
    const T *base = qkv + (int64_t)b * Tn * C3 + h * HS;
    float *dbase = dqkv + (int64_t)b * Tn * C3 + h * HS;
    const T *q = base + (int64_t)t * C3;
    const T *dO = dout + ((int64_t)b * Tn + t) * C + h * HS, *O = out + ((int64_t)b * Tn + t) * C + h * HS;
    float D = 0.0f, L = lse[r];
    for (int d = 0; d < HS; d++)
        D += ld(dO[d]) * ld(O[d]);
    float dq[FLASH_MAX_HS];
    for (int d = 0; d < HS; d++)
        dq[d] = 0.0f;
    for (int j = 0; j <= t; j++) {
        const T *k = base + (int64_t)j * C3 + C, *v = base + (int64_t)j * C3 + 2 * C;
        float sc = 0.0f, dp = 0.0f;
        for (int d = 0; d < HS; d++) {
            sc += ld(q[d]) * ld(k[d]);
            dp += ld(dO[d]) * ld(v[d]);
        }
        float p = expf(sc * scale - L), ds = p * (dp - D) * scale;
        float *dk = dbase + (int64_t)j * C3 + C, *dv = dbase + (int64_t)j * C3 + 2 * C;
        for (int d = 0; d < HS; d++) {
            dq[d] += ds * ld(k[d]);
            atomicAdd(&dk[d], ds * ld(q[d]));
            atomicAdd(&dv[d], p * ld(dO[d]));
        }
    }
    float *dqo = dbase + (int64_t)t * C3;
    for (int d = 0; d < HS; d++)
        dqo[d] = dq[d];
}
template <typename T>
static void attention_backward_flash(void *dqkv, const void *dout, const void *qkv, const void *out, const float *lse,
                                     int B, int Tn, int NH, int HS)
{
    int64_t rows = (int64_t)B * NH * Tn, C = (int64_t)NH * HS, N = (int64_t)B * Tn;
    bool bf = sizeof(T) == 2;
    if (g_math == KERN_MATH_BF16 && flash_tc::supported(HS)) {
        /* dQ is added with atomics into zeros: dqkv's q columns in fp32
         * storage (the kernel overwrites dK and dV), an fp32 scratch in bf16 */
        float *dq = bf ? flash_scratch(1, N * C) : (float *)dqkv;
        if (bf)
            cudaCheck(cudaMemsetAsync(dq, 0, sizeof(float) * (size_t)(N * C)));
        else
            cudaCheck(cudaMemset2DAsync(dqkv, sizeof(float) * 3 * C, 0, sizeof(float) * C, (size_t)N));
        float *D = flash_scratch(0, rows);
        if (flash_tc::backward((T *)dqkv, dq, bf ? C : 3 * C, (const T *)dout, (const T *)qkv, (const T *)out, lse, D,
                               B, Tn, NH, HS) != 0)
            cudaCheck(cudaGetLastError());
        launchCheck();
        if (bf) {
            store_rows_k<T><<<blocks_for(N * C, 256), 256>>>((T *)dqkv, 3 * C, dq, C, N, (int)C);
            launchCheck();
        }
        return;
    }
    /* atomics into all three parts: fp32, zeroed (the scratch in bf16 storage) */
    float *d32 = bf ? flash_scratch(1, N * 3 * C) : (float *)dqkv;
    cudaCheck(cudaMemsetAsync(d32, 0, sizeof(float) * (size_t)(N * 3 * C)));
    flash_backward_k<T><<<blocks_for(rows, 128), 128>>>(d32, (const T *)dout, (const T *)qkv, (const T *)out, lse, B, Tn,
                                                        NH, HS, 1.0f / sqrtf((float)HS));
    launchCheck();
    if (bf) {
        store_rows_k<T><<<blocks_for(N * 3 * C, 256), 256>>>((T *)dqkv, 3 * C, d32, 3 * C, N, (int)(3 * C));
        launchCheck();
    }
}
static void cu_attention_backward_flash(void *dqkv, const void *dout, const void *qkv, const void *out,
                                        const float *lse, int B, int Tn, int NH, int HS)
{
    if (HS > FLASH_MAX_HS) {
        fprintf(stderr, "triad: attention_backward_flash: head size %d > %d\n", HS, FLASH_MAX_HS);
        exit(1);
    }
    BY_STORAGE(attention_backward_flash, dqkv, dout, qkv, out, lse, B, Tn, NH, HS);
}

/* ---- elementwise --------------------------------------------------------- */
#define GELU_SCALE 0.7978845608028654f

template <typename T> __global__ void gelu_forward_k(T *out, const T *inp, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = ld(inp[i]);
        st(&out[i], 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x))));
    }
}
template <typename T> __global__ void gelu_backward_k(T *dinp, const T *inp, const T *dout, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = ld(inp[i]);
        float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)), sech2 = 1.0f - th * th;
        float g = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        st(&dinp[i], g * ld(dout[i]));
    }
}
template <typename T> __global__ void residual_k(T *out, const T *a, const T *b, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        st(&out[i], ld(a[i]) + ld(b[i]));
}
/* x = (x + b) + res, one pass instead of a bias add and a residual add (one
 * read and write of x fewer); res NULL: x + b */
template <typename T> __global__ void bias_residual_k(T *x, const float *b, const T *res, int64_t n, int C)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = ld(x[i]) + b[i % C];
        st(&x[i], res ? v + ld(res[i]) : v);
    }
}
__global__ void scale_k(float *x, float s, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= s;
}
template <typename T> static void gelu_forward(void *out, const void *inp, int64_t n)
{
    gelu_forward_k<T><<<blocks_for(n, 256), 256>>>((T *)out, (const T *)inp, n);
    launchCheck();
}
template <typename T> static void gelu_backward(void *dinp, const void *inp, const void *dout, int64_t n)
{
    gelu_backward_k<T><<<blocks_for(n, 256), 256>>>((T *)dinp, (const T *)inp, (const T *)dout, n);
    launchCheck();
}
template <typename T> static void residual(void *out, const void *a, const void *b, int64_t n)
{
    residual_k<T><<<blocks_for(n, 256), 256>>>((T *)out, (const T *)a, (const T *)b, n);
    launchCheck();
}
template <typename T> static void bias_residual(void *x, const float *b, const void *res, int64_t n, int C)
{
    bias_residual_k<T><<<blocks_for(n, 256), 256>>>((T *)x, b, (const T *)res, n, C);
    launchCheck();
}
static void cu_gelu_forward(void *out, const void *inp, int64_t n)
{
    if (n > 0)
        BY_STORAGE(gelu_forward, out, inp, n);
}
static void cu_gelu_backward(void *dinp, const void *inp, const void *dout, int64_t n)
{
    if (n > 0)
        BY_STORAGE(gelu_backward, dinp, inp, dout, n);
}
static void cu_residual_forward(void *out, const void *a, const void *b, int64_t n)
{
    if (n > 0)
        BY_STORAGE(residual, out, a, b, n);
}
static void cu_add_inplace(void *y, const void *x, int64_t n)
{
    if (n > 0)
        BY_STORAGE(residual, y, y, x, n);
}
static void cu_bias_residual(void *x, const float *b, const void *res, int N, int C)
{
    int64_t n = (int64_t)N * C;
    if (n > 0)
        BY_STORAGE(bias_residual, x, b, res, n, C);
}
static void cu_add_f32(float *y, const float *x, int64_t n)
{
    if (n > 0)
        residual<float>(y, y, x, n);
}
static void cu_scale(float *x, float s, int64_t n)
{
    if (n <= 0)
        return;
    scale_k<<<blocks_for(n, 256), 256>>>(x, s, n);
    launchCheck();
}

/* ---- vocabulary-parallel cross-entropy pieces: one warp per row ----------- */
template <typename T> __global__ void xent_rowmax_k(float *rowmax, const T *logits, int N, int V)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const T *l = logits + (int64_t)row * V;
    float m = -INFINITY;
    for (int j = lane; j < V; j += 32)
        m = fmaxf(m, ld(l[j]));
    m = warp_max(m);
    if (lane == 0)
        rowmax[row] = m;
}
template <typename T> __global__ void xent_sumexp_k(float *sumexp, const T *logits, const float *gmax, int N, int V)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const T *l = logits + (int64_t)row * V;
    float g = gmax[row], s = 0.0f;
    for (int j = lane; j < V; j += 32)
        s += expf(ld(l[j]) - g);
    s = warp_sum(s);
    if (lane == 0)
        sumexp[row] = s;
}
template <typename T> __global__ void xent_target_k(float *tlogit, const T *logits, const int *targets, int N, int V, int v0)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N)
        return;
    int id = targets[i] - v0;
    tlogit[i] = (id >= 0 && id < V) ? ld(logits[(int64_t)i * V + id]) : 0.0f;
}
template <typename T>
__global__ void xent_backward_k(T *logits, const float *gmax, const float *gsum, const int *targets, int N, int V,
                                int v0, float scale)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    T *l = logits + (int64_t)row * V;
    float g = gmax[row], inv = 1.0f / gsum[row];
    int id = targets[row] - v0;
    for (int j = lane; j < V; j += 32)
        st(&l[j], expf(ld(l[j]) - g) * inv * scale - (j == id ? scale : 0.0f));
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
template <typename T>
__global__ void xent_forward_k(float *rowmax, float *sumexp, float *tlogit, const T *logits, const int *targets, int N,
                               int V, int v0)
{
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const T *l = logits + (int64_t)row * V;
    float m = -INFINITY, s = 0.0f;
    for (int j = lane; j < V; j += 32) {
        float x = ld(l[j]);
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
        tlogit[row] = (id >= 0 && id < V) ? ld(l[id]) : 0.0f;
    }
}
template <typename T>
static void xent_forward(float *rowmax, float *sumexp, float *tlogit, const void *logits, const int *targets, int N,
                         int V, int v0)
{
    xent_forward_k<T><<<blocks_for(N, 8), 256>>>(rowmax, sumexp, tlogit, (const T *)logits, targets, N, V, v0);
    launchCheck();
}
template <typename T> static void xent_rowmax(float *rowmax, const void *logits, int N, int V)
{
    xent_rowmax_k<T><<<blocks_for(N, 8), 256>>>(rowmax, (const T *)logits, N, V);
    launchCheck();
}
template <typename T> static void xent_sumexp(float *sumexp, const void *logits, const float *gmax, int N, int V)
{
    xent_sumexp_k<T><<<blocks_for(N, 8), 256>>>(sumexp, (const T *)logits, gmax, N, V);
    launchCheck();
}
template <typename T> static void xent_target(float *tlogit, const void *logits, const int *targets, int N, int V, int v0)
{
    xent_target_k<T><<<blocks_for(N, 256), 256>>>(tlogit, (const T *)logits, targets, N, V, v0);
    launchCheck();
}
template <typename T>
static void xent_backward(void *logits, const float *gmax, const float *gsum, const int *targets, int N, int V, int v0,
                          float scale)
{
    xent_backward_k<T><<<blocks_for(N, 8), 256>>>((T *)logits, gmax, gsum, targets, N, V, v0, scale);
    launchCheck();
}
static void cu_xent_forward(float *rowmax, float *sumexp, float *tlogit, const void *logits, const int *targets, int N,
                            int V, int v0)
{
    BY_STORAGE(xent_forward, rowmax, sumexp, tlogit, logits, targets, N, V, v0);
}
static void cu_xent_rowmax(float *rowmax, const void *logits, int N, int V) { BY_STORAGE(xent_rowmax, rowmax, logits, N, V); }
static void cu_xent_sumexp(float *sumexp, const void *logits, const float *gmax, int N, int V)
{
    BY_STORAGE(xent_sumexp, sumexp, logits, gmax, N, V);
}
static void cu_xent_target(float *tlogit, const void *logits, const int *targets, int N, int V, int v0)
{
    BY_STORAGE(xent_target, tlogit, logits, targets, N, V, v0);
}
static void cu_xent_backward_inplace(void *logits, const float *gmax, const float *gsum, const int *targets, int N,
                                     int V, int v0, float scale)
{
    BY_STORAGE(xent_backward, logits, gmax, gsum, targets, N, V, v0, scale);
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
static const kern_ops cuda_ops = {
    .name = "cuda",
    .alloc = cu_alloc,
    .free = cu_free,
    .to_device = cu_to_device,
    .to_host = cu_to_host,
    .memset0 = cu_memset0,
    .sync = cu_sync,
    .encoder_forward = cu_encoder_forward,
    .encoder_backward = cu_encoder_backward,
    .layernorm_forward = cu_layernorm_forward,
    .layernorm_backward = cu_layernorm_backward,
    .matmul_forward = cu_matmul_forward,
    .matmul_backward = cu_matmul_backward,
    .attention_forward = cu_attention_forward,
    .attention_backward = cu_attention_backward,
    .gelu_forward = cu_gelu_forward,
    .gelu_backward = cu_gelu_backward,
    .residual_forward = cu_residual_forward,
    .add_inplace = cu_add_inplace,
    .xent_rowmax = cu_xent_rowmax,
    .xent_sumexp = cu_xent_sumexp,
    .xent_target = cu_xent_target,
    .xent_backward_inplace = cu_xent_backward_inplace,
    .adamw = cu_adamw,
    .sum_squares = cu_sum_squares,
    .scale = cu_scale,
    .attention_forward_flash = cu_attention_forward_flash,
    .attention_backward_flash = cu_attention_backward_flash,
    .to_bf16 = cu_to_bf16,
    .copy = cu_copy,
    .bias_residual = cu_bias_residual,
    .set_math = cu_set_math,
    .sum_squares_many = cu_sum_squares_many,
    .xent_forward = cu_xent_forward,
    .set_storage = cu_set_storage,
    .add_f32 = cu_add_f32,
    .matmul_gelu_forward = cu_matmul_gelu_forward,
    .matmul_gelu_backward = cu_matmul_gelu_backward,
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
