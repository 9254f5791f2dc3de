/* cuda_bf16.h for tests/cudaemu: __nv_bfloat16 and its conversions are in
 * cuda_emu.h (C++ only, as the real header's device functions are). */
#ifndef TRIAD_CUDAEMU_CUDA_BF16_H
#define TRIAD_CUDAEMU_CUDA_BF16_H
#include "../cuda_emu.h"
#endif
