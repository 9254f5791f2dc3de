/* mma.h for tests/cudaemu: nvcuda::wmma is in cuda_emu.h. */
#ifndef TRIAD_CUDAEMU_MMA_H
#define TRIAD_CUDAEMU_MMA_H
#include "../cuda_emu.h"
#endif
