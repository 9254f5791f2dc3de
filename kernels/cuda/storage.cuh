/* storage.cuh — reading and writing a tensor element in either storage of
 * kernels.h's set_storage: fp32 (float) or bf16 (__nv_bfloat16, round to
 * nearest even). Kernels compute in fp32; ld widens what they read, st
 * rounds what they write, once. */
#ifndef TRIAD_STORAGE_CUH
#define TRIAD_STORAGE_CUH

#ifndef TRIAD_CUDA_EMU
#include <cuda_bf16.h>
#endif

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ld(float x) { return x; }
__device__ __forceinline__ float ld(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void st(float *p, float x) { *p = x; }
__device__ __forceinline__ void st(bf16 *p, float x) { *p = __float2bfloat16(x); }

#endif /* TRIAD_STORAGE_CUH */
