/* cuda_emu_rt.cc — the host side of tests/cudaemu: the CUDA runtime calls
 * and cuBLAS GEMMs of include/cuda_runtime.h and include/cublas_v2.h, on
 * host memory. Contracts are the documented ones; where CUDA reports a
 * misuse with an error code, so does this, and where the GPU would read
 * the wrong memory (a host pointer given as a device one, a copy past the
 * end of an allocation) this prints what and returns an error, so the
 * caller's check macro stops the program. */
#include "include/cublasLt.h"
#include "include/cublas_v2.h"
#include "include/cuda_runtime.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

namespace {

std::map<uintptr_t, size_t> g_allocs; /* start -> bytes */
size_t g_allocated;
const size_t TOTAL_BYTES = (size_t)80 << 30; /* what cudaMemGetInfo reports in all */

/* the allocation holding [p, p + bytes), or g_allocs.end() */
std::map<uintptr_t, size_t>::const_iterator find_alloc(const void *p, size_t bytes)
{
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin())
        return g_allocs.end();
    --it;
    if (a >= it->first && a + bytes <= it->first + it->second && a + bytes >= a)
        return it;
    return g_allocs.end();
}

cudaError_t misuse(cudaError_t e, const char *fmt, const void *p, size_t bytes)
{
    fprintf(stderr, "cuda_emu: ");
    fprintf(stderr, fmt, p, bytes);
    fprintf(stderr, "\n");
    return e;
}

double now_ms()
{
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

} // namespace

struct cuda_emu_stream {
    uint64_t nccl_ops; /* NCCL operations issued on this stream (nccl_emu.cc) */
};
struct cuda_emu_event {
    double ms;
    cudaStream_t stream; /* where it was recorded, and that stream's NCCL operations then */
    uint64_t nccl_ops;
};

/* Set by nccl_emu.cc: completes the NCCL operations in flight on a stream
 * (NULL: on every stream) up to its n-th. A synchronisation with a stream,
 * with an event recorded on it, or with the device completes the
 * operations issued before it, as on a GPU, where a collective's or a
 * send's kernel ends when its peers have done their part. */
void (*cuda_emu_nccl_waiter)(cudaStream_t, uint64_t) = nullptr;
uint64_t cuda_emu_stream_count_nccl(cudaStream_t s) { return s ? ++s->nccl_ops : 0; }
struct cuda_emu_cublas {
    cublasMath_t math;
};

extern "C" {

size_t cuda_emu_allocated_bytes(void) { return g_allocated; }
int cuda_emu_is_device(const void *p, size_t bytes) { return find_alloc(p, bytes) != g_allocs.end(); }

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    if (!ptr)
        return cudaErrorInvalidValue;
    size_t n = (bytes + 255) / 256 * 256;
    if (n == 0 || g_allocated + n > TOTAL_BYTES) {
        *ptr = nullptr;
        return n == 0 ? cudaErrorInvalidValue : cudaErrorMemoryAllocation;
    }
    void *p = nullptr; /* exactly the bytes asked for: AddressSanitizer sees a kernel read past them */
    if (posix_memalign(&p, 256, bytes) != 0)
        return cudaErrorMemoryAllocation;
    memset(p, 0xff, bytes); /* uninitialised on the GPU: NaNs here, so reading it before writing shows */
    g_allocs[(uintptr_t)p] = bytes;
    g_allocated += n;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr)
{
    if (!ptr)
        return cudaSuccess;
    auto it = g_allocs.find((uintptr_t)ptr);
    if (it == g_allocs.end())
        return misuse(cudaErrorInvalidDevicePointer, "cudaFree(%p): not an allocation (%zu)", ptr, 0);
    g_allocated -= (it->second + 255) / 256 * 256;
    g_allocs.erase(it);
    std::free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (bytes == 0)
        return cudaSuccess;
    bool dst_dev = find_alloc(dst, bytes) != g_allocs.end(), src_dev = find_alloc(src, bytes) != g_allocs.end();
    switch (kind) {
    case cudaMemcpyHostToDevice:
        if (!dst_dev)
            return misuse(cudaErrorInvalidValue, "cudaMemcpy host to device: %p + %zu bytes is not device memory",
                          dst, bytes);
        break;
    case cudaMemcpyDeviceToHost:
        if (!src_dev)
            return misuse(cudaErrorInvalidValue, "cudaMemcpy device to host: %p + %zu bytes is not device memory",
                          src, bytes);
        break;
    case cudaMemcpyDeviceToDevice:
        if (!dst_dev || !src_dev)
            return misuse(cudaErrorInvalidValue, "cudaMemcpy device to device: %p + %zu bytes is not device memory",
                          dst_dev ? src : dst, bytes);
        break;
    case cudaMemcpyHostToHost:
    case cudaMemcpyDefault:
        break;
    default:
        return cudaErrorInvalidMemcpyDirection;
    }
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t)
{
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *ptr, int value, size_t bytes)
{
    if (bytes == 0)
        return cudaSuccess;
    if (find_alloc(ptr, bytes) == g_allocs.end())
        return misuse(cudaErrorInvalidValue, "cudaMemset: %p + %zu bytes is not device memory", ptr, bytes);
    memset(ptr, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t) { return cudaMemset(ptr, value, bytes); }
cudaError_t cudaMemset2DAsync(void *ptr, size_t pitch, int value, size_t width, size_t height, cudaStream_t)
{
    if (width == 0 || height == 0)
        return cudaSuccess;
    if (width > pitch)
        return cudaErrorInvalidValue;
    if (find_alloc(ptr, pitch * (height - 1) + width) == g_allocs.end())
        return misuse(cudaErrorInvalidValue, "cudaMemset2D: %p + %zu bytes is not device memory", ptr,
                      pitch * (height - 1) + width);
    for (size_t r = 0; r < height; r++)
        memset((unsigned char *)ptr + r * pitch, value, width);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    if (cuda_emu_nccl_waiter)
        cuda_emu_nccl_waiter(nullptr, UINT64_MAX);
    return cudaSuccess;
}
/* One GPU, or TRIAD_EMU_GPUS of them: each process emulates its own, so N
 * ranks on N emulated GPUs run NCCL as on a machine with a GPU per rank */
static int emu_gpus(void)
{
    const char *e = getenv("TRIAD_EMU_GPUS");
    int n = e ? atoi(e) : 1;
    return n >= 1 && n <= 64 ? n : 1;
}
cudaError_t cudaGetDeviceCount(int *count)
{
    *count = emu_gpus();
    return cudaSuccess;
}
static int g_device;
cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= emu_gpus())
        return cudaErrorInvalidDevice;
    g_device = device;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device)
{
    *device = g_device;
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = TOTAL_BYTES - g_allocated;
    *total_bytes = TOTAL_BYTES;
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void)
{
    cudaError_t e = (cudaError_t)cuda_emu::last_error;
    cuda_emu::last_error = 0;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return (cudaError_t)cuda_emu::last_error; }
const char *cudaGetErrorString(cudaError_t err)
{
    switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    }
    return "unknown error";
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned)
{
    *stream = new cuda_emu_stream{0};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (cuda_emu_nccl_waiter && stream)
        cuda_emu_nccl_waiter(stream, stream->nccl_ops);
    delete stream;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    if (cuda_emu_nccl_waiter)
        cuda_emu_nccl_waiter(stream, stream ? stream->nccl_ops : UINT64_MAX);
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    *event = new cuda_emu_event{0.0, nullptr, 0};
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned) { return cudaEventCreate(event); }
cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    delete event;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    event->ms = now_ms();
    event->stream = stream;
    event->nccl_ops = stream ? stream->nccl_ops : 0;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    if (cuda_emu_nccl_waiter && event->stream)
        cuda_emu_nccl_waiter(event->stream, event->nccl_ops);
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
        return cudaErrorInvalidValue;
    return (cudaError_t)cuda_emu::set_max_dyn_smem(func, value);
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *attr, const void *ptr)
{
    bool dev = find_alloc(ptr, 1) != g_allocs.end();
    attr->type = dev ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
    attr->device = dev ? 0 : -1;
    attr->devicePointer = dev ? (void *)ptr : nullptr;
    attr->hostPointer = dev ? nullptr : (void *)ptr;
    return cudaSuccess;
}

/* ---- cuBLAS -------------------------------------------------------------- */

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    *handle = new cuda_emu_cublas{CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    if (!handle)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t) { return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED; }
const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "unknown cuBLAS status";
}

} /* extern "C" */

namespace {

float bf16_round(float x) { return __bfloat162float(__float2bfloat16(x)); }

float load(const void *p, cudaDataType t, long long i)
{
    if (t == CUDA_R_16BF)
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    return ((const float *)p)[i];
}
void store(void *p, cudaDataType t, long long i, float x)
{
    if (t == CUDA_R_16BF)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16(x);
    else
        ((float *)p)[i] = x;
}
size_t type_bytes(cudaDataType t) { return t == CUDA_R_16BF ? 2 : 4; }

/* bytes a column-major rows x cols matrix with leading dimension ld spans */
size_t span_bytes(int rows, int cols, int ld, cudaDataType t)
{
    if (rows == 0 || cols == 0)
        return 0;
    return ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * type_bytes(t);
}

cublasStatus_t on_device(const char *call, const char *name, const void *p, size_t bytes)
{
    if (bytes == 0 || cuda_emu_is_device(p, bytes))
        return CUBLAS_STATUS_SUCCESS;
    fprintf(stderr, "cuda_emu: %s: matrix %s (%p, %zu bytes) is not in device memory\n", call, name, p, bytes);
    return CUBLAS_STATUS_EXECUTION_FAILED;
}

/* The one GEMM every entry point calls; bias (m values of C's type, or
 * NULL) is added to every column before the one rounding to C's type. */
/* cuBLASLt's epilogue (include/cublasLt.h): bias (D's type) added; with
 * gelu, aux (D's type, leading dimension aux_ld) = the sum and D =
 * gelu(sum); with dgelu, D = gelu'(aux) * the product */
struct lt_epilogue {
    const void *bias;
    bool gelu, dgelu;
    void *aux;
    long long aux_ld;
};
/* GELU, tanh approximation, and its derivative */
double gelu_tanh(double x)
{
    const double s = 0.7978845608028654; /* sqrt(2 / pi) */
    return 0.5 * x * (1.0 + tanh(s * (x + 0.044715 * x * x * x)));
}
double gelu_tanh_grad(double x)
{
    const double s = 0.7978845608028654;
    double t = tanh(s * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * s * (1.0 + 3.0 * 0.044715 * x * x);
}
cublasStatus_t gemm(const char *call, bool handle_ok, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, float alpha, const void *A, cudaDataType at, int lda, long long sa, const void *B,
                    cudaDataType bt, int ldb, long long sb, float beta, void *C, cudaDataType ct, int ldc,
                    long long sc, int batch, bool round_bf16, const lt_epilogue *epi = nullptr)
{
    const void *bias = epi ? epi->bias : nullptr;
    if (!handle_ok)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T && ta != CUBLAS_OP_C) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T && tb != CUBLAS_OP_C) || m < 0 || n < 0 || k < 0 || batch < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
    int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
    if (lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batch == 0)
        return CUBLAS_STATUS_SUCCESS;
    std::vector<float> a((size_t)m * k), b((size_t)n * k); /* op(A) by rows, op(B) by columns */
    for (int g = 0; g < batch; g++) {
        const void *Ag = (const char *)A + (size_t)g * sa * type_bytes(at);
        const void *Bg = (const char *)B + (size_t)g * sb * type_bytes(bt);
        void *Cg = (char *)C + (size_t)g * sc * type_bytes(ct);
        cublasStatus_t st;
        if (k > 0 && ((st = on_device(call, "A", Ag, span_bytes(arows, acols, lda, at))) != CUBLAS_STATUS_SUCCESS ||
                      (st = on_device(call, "B", Bg, span_bytes(brows, bcols, ldb, bt))) != CUBLAS_STATUS_SUCCESS))
            return st;
        if ((st = on_device(call, "C", Cg, span_bytes(m, n, ldc, ct))) != CUBLAS_STATUS_SUCCESS)
            return st;
        if (bias && (st = on_device(call, "bias", bias, (size_t)m * type_bytes(ct))) != CUBLAS_STATUS_SUCCESS)
            return st;
        if (epi && epi->aux &&
            (st = on_device(call, "aux", epi->aux, span_bytes(m, n, (int)epi->aux_ld, ct))) != CUBLAS_STATUS_SUCCESS)
            return st;
        for (int i = 0; i < m; i++)
            for (int l = 0; l < k; l++) {
                float x = ta == CUBLAS_OP_N ? load(Ag, at, i + (long long)l * lda) : load(Ag, at, l + (long long)i * lda);
                a[(size_t)i * k + l] = round_bf16 ? bf16_round(x) : x;
            }
        for (int j = 0; j < n; j++)
            for (int l = 0; l < k; l++) {
                float x = tb == CUBLAS_OP_N ? load(Bg, bt, l + (long long)j * ldb) : load(Bg, bt, j + (long long)l * ldb);
                b[(size_t)j * k + l] = round_bf16 ? bf16_round(x) : x;
            }
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const float *ar = &a[(size_t)i * k], *bc = &b[(size_t)j * k];
                double s = 0.0;
                for (int l = 0; l < k; l++)
                    s += (double)ar[l] * (double)bc[l];
                long long ci = i + (long long)j * ldc;
                double c = (double)alpha * s;
                if (beta != 0.0f) /* beta == 0: C is not read (it may hold NaNs) */
                    c += (double)beta * (double)load(Cg, ct, ci);
                if (bias)
                    c += (double)load(bias, ct, i);
                if (epi && epi->gelu) { /* the sum into aux, rounded to its type, GELU of the unrounded sum into D */
                    store(epi->aux, ct, i + (long long)j * epi->aux_ld, (float)c);
                    c = gelu_tanh(c);
                } else if (epi && epi->dgelu) {
                    c *= gelu_tanh_grad((double)load(epi->aux, ct, i + (long long)j * epi->aux_ld));
                }
                store(Cg, ct, ci, (float)c);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* compute types and storage types cuBLAS takes together (cublasGemmEx's table, the rows triad can use) */
cublasStatus_t ex_types(cudaDataType at, cudaDataType bt, cudaDataType ct, cublasComputeType_t compute,
                        bool *round_bf16)
{
    *round_bf16 = false;
    if (at != bt)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    switch (compute) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
        if (at == CUDA_R_32F && ct == CUDA_R_32F)
            return CUBLAS_STATUS_SUCCESS;
        if (at == CUDA_R_16BF && (ct == CUDA_R_16BF || ct == CUDA_R_32F))
            return CUBLAS_STATUS_SUCCESS;
        return CUBLAS_STATUS_NOT_SUPPORTED;
    case CUBLAS_COMPUTE_32F_FAST_16BF:
        if (at == CUDA_R_32F && ct == CUDA_R_32F) {
            *round_bf16 = true;
            return CUBLAS_STATUS_SUCCESS;
        }
        return CUBLAS_STATUS_NOT_SUPPORTED;
    default:
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

} // namespace

extern "C" {

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc)
{
    return gemm("cublasSgemm", handle != nullptr, transa, transb, m, n, k, *alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0,
                *beta, C, CUDA_R_32F, ldc, 0, 1, false);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float *alpha, const float *A, int lda,
                                         long long strideA, const float *B, int ldb, long long strideB,
                                         const float *beta, float *C, int ldc, long long strideC, int batchCount)
{
    return gemm("cublasSgemmStridedBatched", handle != nullptr, transa, transb, m, n, k, *alpha, A, CUDA_R_32F, lda, strideA, B,
                CUDA_R_32F, ldb, strideB, *beta, C, CUDA_R_32F, ldc, strideC, batchCount, false);
}
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t)
{
    bool r;
    cublasStatus_t st = ex_types(Atype, Btype, Ctype, computeType, &r);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    return gemm("cublasGemmEx", handle != nullptr, transa, transb, m, n, k, *(const float *)alpha, A, Atype, lda, 0, B, Btype, ldb,
                0, *(const float *)beta, C, Ctype, ldc, 0, 1, r);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long strideB, const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t)
{
    bool r;
    cublasStatus_t st = ex_types(Atype, Btype, Ctype, computeType, &r);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    return gemm("cublasGemmStridedBatchedEx", handle != nullptr, transa, transb, m, n, k, *(const float *)alpha, A, Atype, lda,
                strideA, B, Btype, ldb, strideB, *(const float *)beta, C, Ctype, ldc, strideC, batchCount, r);
}

} /* extern "C" */

/* ---- cuBLASLt (include/cublasLt.h) ---------------------------------------------------- */

struct cuda_emu_lt {
    int unused;
};
struct cuda_emu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType scale;
    int32_t transa, transb;
    uint32_t epilogue;
    const void *bias;
    int32_t bias_type;
    void *aux;
    int64_t aux_ld;
};
struct cuda_emu_lt_layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct cuda_emu_lt_pref {
    uint64_t workspace;
    uint32_t min_align[4]; /* A, B, C, D */
};

namespace {
template <typename T> cublasStatus_t set_attr(T *dst, const void *buf, size_t size)
{
    if (size != sizeof(T))
        return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(dst, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}
} // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle)
{
    *handle = new cuda_emu_lt{0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle)
{
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType)
{
    *desc = new cuda_emu_lt_desc{computeType, scaleType, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr, -1,
                                 nullptr, 0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc)
{
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t sizeInBytes)
{
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return set_attr(&desc->transa, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_TRANSB: return set_attr(&desc->transb, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return set_attr(&desc->epilogue, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set_attr(&desc->bias, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return set_attr(&desc->bias_type, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return set_attr(&desc->aux, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return set_attr(&desc->aux_ld, buf, sizeInBytes);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld)
{
    *layout = new cuda_emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout)
{
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref)
{
    *pref = new cuda_emu_lt_pref{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref)
{
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t sizeInBytes)
{
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return set_attr(&pref->workspace, buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return set_attr(&pref->min_align[0], buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return set_attr(&pref->min_align[1], buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return set_attr(&pref->min_align[2], buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return set_attr(&pref->min_align[3], buf, sizeInBytes);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                              int *returnAlgoCount)
{
    if (!handle || !desc || !Adesc || !Bdesc || !Cdesc || !Ddesc || !pref || requestedAlgoCount < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    memset(&heuristicResultsArray[0], 0, sizeof heuristicResultsArray[0]);
    /* the algorithm needs what the preference allowed (the worst case) */
    for (int i = 0; i < 4; i++)
        heuristicResultsArray[0].algo.data[i] = pref->min_align[i];
    heuristicResultsArray[0].state = CUBLAS_STATUS_SUCCESS;
    heuristicResultsArray[0].wavesCount = 1.0f;
    *returnAlgoCount = 1;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc,
                              const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspaceSizeInBytes, cudaStream_t)
{
    if (!desc || !Adesc || !Bdesc || !Cdesc || !Ddesc || !algo || desc->scale != CUDA_R_32F)
        return CUBLAS_STATUS_INVALID_VALUE;
    /* D (m x n) = op(A) (m x k) op(B) (k x n): the layouts as stored */
    cublasOperation_t ta = (cublasOperation_t)desc->transa, tb = (cublasOperation_t)desc->transb;
    uint64_t m = Ddesc->rows, n = Ddesc->cols, k = ta == CUBLAS_OP_N ? Adesc->cols : Adesc->rows;
    bool shapes = (ta == CUBLAS_OP_N ? Adesc->rows : Adesc->cols) == m &&
                  (tb == CUBLAS_OP_N ? Bdesc->rows : Bdesc->cols) == k &&
                  (tb == CUBLAS_OP_N ? Bdesc->cols : Bdesc->rows) == n && Cdesc->rows == m && Cdesc->cols == n &&
                  Cdesc->type == Ddesc->type && Cdesc->ld == Ddesc->ld;
    if (!shapes) {
        fprintf(stderr, "cuda_emu: cublasLtMatmul: layouts disagree with the transposes or with D's shape\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (C != D) {
        fprintf(stderr, "cuda_emu: cublasLtMatmul: C and D apart (triad's calls write in place)\n");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    lt_epilogue epi = {nullptr, false, false, nullptr, 0};
    bool bias = false, aux = false;
    switch (desc->epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT: break;
    case CUBLASLT_EPILOGUE_BIAS: bias = true; break;
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: bias = aux = epi.gelu = true; break;
    case CUBLASLT_EPILOGUE_DGELU: aux = epi.dgelu = true; break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    /* the bias is of D's type (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, outside fp8 and IMMA) */
    if (bias && (!desc->bias || (desc->bias_type != -1 && desc->bias_type != (int32_t)Ddesc->type)))
        return CUBLAS_STATUS_INVALID_VALUE;
    /* the GELU input matrix: D's type, its leading dimension a multiple of 8, at least D's rows
     * (cublasLt.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD) */
    if (aux && (!desc->aux || desc->aux_ld % 8 != 0 || desc->aux_ld < (int64_t)m)) {
        fprintf(stderr, "cuda_emu: cublasLtMatmul: GELU's aux matrix missing or its leading dimension %lld not a "
                        "multiple of 8 at least %llu\n", (long long)desc->aux_ld, (unsigned long long)m);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    epi.bias = bias ? desc->bias : nullptr;
    epi.aux = aux ? desc->aux : nullptr;
    epi.aux_ld = desc->aux_ld;
    if (aux && beta && *(const float *)beta != 0.0f)
        return CUBLAS_STATUS_NOT_SUPPORTED; /* triad's calls: beta = 0 */
    /* each matrix as aligned as the algorithm needs: its pointer and its leading dimension's bytes */
    const void *ptr[4] = {A, B, C, D};
    const cuda_emu_lt_layout *lay[4] = {Adesc, Bdesc, Cdesc, Ddesc};
    for (int i = 0; i < 4; i++) {
        uint64_t need = algo->data[i], at = (uint64_t)(uintptr_t)ptr[i] | (uint64_t)lay[i]->ld * type_bytes(lay[i]->type);
        if (need > 1 && at % need != 0) {
            fprintf(stderr, "cuda_emu: cublasLtMatmul: matrix %c (%p, ld %lld) is less aligned than the %llu bytes its "
                            "algorithm was chosen for\n", "ABCD"[i], ptr[i], (long long)lay[i]->ld,
                    (unsigned long long)need);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    }
    bool r;
    cublasStatus_t st = ex_types(Adesc->type, Bdesc->type, Ddesc->type, desc->compute, &r);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    (void)workspace, (void)workspaceSizeInBytes;
    return gemm("cublasLtMatmul", handle != nullptr, ta, tb, (int)m, (int)n, (int)k, *(const float *)alpha, A,
                Adesc->type, (int)Adesc->ld, 0, B, Bdesc->type, (int)Bdesc->ld, 0, *(const float *)beta, D, Ddesc->type,
                (int)Ddesc->ld, 0, 1, r, &epi);
}

} /* extern "C" */
