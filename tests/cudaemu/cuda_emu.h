/* cuda_emu.h — runs a small subset of CUDA C++ device code on the host, to
 * test a kernel's indexing, tiling, masking and synchronisation on a
 * machine without a GPU. Not a substitute for the GPU run: timing, register
 * pressure, occupancy and the real fragment layout are not modelled, and
 * tests/gpu/test_kern_cuda.c remains the check that counts.
 *
 * What it does: a launch runs the blocks of the grid one after the other;
 * every thread of a block is a std::thread with its own threadIdx;
 * __syncthreads is a barrier over the block, __syncwarp over the thread's
 * warp (a thread that returns drops out of both, as on the GPU). Dynamic
 * shared memory is one heap buffer of exactly the requested size per block
 * (AddressSanitizer sees overruns), refused above the 227 KiB a Hopper block
 * may opt into. nvcuda::wmma fragments hold their whole 16x16 tile in every
 * thread (the real element-to-lane map is opaque to code that, like triad's,
 * never indexes fragment elements); loads check the alignment and leading
 * dimension rules of the CUDA programming guide (256-bit aligned pointers,
 * ldm a multiple of 16 bytes) and abort on a violation; a store is written
 * by lane 0 only, so a kernel that reads another lane's stored tile without
 * __syncwarp is more likely to fail here. bf16 rounds to nearest even.
 * Supported: what kernels/cuda/flash_tc.cuh uses, nothing more. */
#ifndef TRIAD_CUDA_EMU_H
#define TRIAD_CUDA_EMU_H

#define TRIAD_CUDA_EMU 1

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace cuda_emu {
struct block_state {
    std::unique_ptr<std::barrier<>> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    unsigned char *smem;
};
inline thread_local block_state *tl_block;
inline thread_local int tl_warp;
inline std::mutex atomic_mutex;
[[noreturn]] inline void fail(const char *what)
{
    fprintf(stderr, "cuda_emu: %s\n", what);
    abort();
}
} // namespace cuda_emu

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#define FA_DYN_SMEM(name) unsigned char *name = cuda_emu::tl_block->smem

inline void __syncthreads() { cuda_emu::tl_block->block->arrive_and_wait(); }
inline void __syncwarp() { cuda_emu::tl_block->warps[cuda_emu::tl_warp]->arrive_and_wait(); }
inline int min(int a, int b) { return a < b ? a : b; }
inline float atomicAdd(float *p, float v)
{
    std::lock_guard<std::mutex> g(cuda_emu::atomic_mutex);
    float old = *p;
    *p = old + v;
    return old;
}

/* bfloat16: the upper half of an fp32, round to nearest even */
struct __nv_bfloat16 {
    uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) /* NaN stays NaN */
        return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40u)};
    u += 0x7FFFu + ((u >> 16) & 1u);
    return __nv_bfloat16{(uint16_t)(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b)
{
    uint32_t u = (uint32_t)b.bits << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}
inline float emu_to_float(float x) { return x; }
inline float emu_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    /* rows x cols of the tile this fragment holds */
    static constexpr int R = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int Cn = std::is_same<Use, matrix_a>::value ? K : N;
    float v[R * Cn];
};

#define EMU_CHECK(p, ldm, op)                                                                                    \
    do {                                                                                                       \
        if ((uintptr_t)(p) % 32) {                                                                             \
            fprintf(stderr, "cuda_emu: %s: pointer %p not 256-bit aligned\n", op, (const void *)(p));           \
            abort();                                                                                           \
        }                                                                                                      \
        if (((ldm) * sizeof(*(p))) % 16) {                                                                     \
            fprintf(stderr, "cuda_emu: %s: ldm %u is not a multiple of 16 bytes\n", op, (unsigned)(ldm));       \
            abort();                                                                                           \
        }                                                                                                      \
    } while (0)

template <typename Use, int M, int N, int K, typename T, typename L>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, float x)
{
    for (float &e : f.v)
        e = x;
}
/* matrix_a / matrix_b: layout from the fragment's type */
template <typename Use, int M, int N, int K, typename T, typename L, typename S>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const S *p, unsigned ldm)
{
    typedef fragment<Use, M, N, K, T, L> F;
    EMU_CHECK(p, ldm, "load_matrix_sync");
    for (int r = 0; r < F::R; r++)
        for (int c = 0; c < F::Cn; c++)
            f.v[r * F::Cn + c] = emu_to_float(std::is_same<L, col_major>::value ? p[r + (size_t)c * ldm]
                                                                               : p[(size_t)r * ldm + c]);
}
/* accumulator: layout given at the call */
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t l)
{
    EMU_CHECK(p, ldm, "load_matrix_sync");
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++)
            f.v[r * N + c] = l == mem_col_major ? p[r + (size_t)c * ldm] : p[(size_t)r * ldm + c];
}
template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t l)
{
    EMU_CHECK(p, ldm, "store_matrix_sync");
    if (threadIdx.x % 32)
        return;
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++)
            (l == mem_col_major ? p[r + (size_t)c * ldm] : p[(size_t)r * ldm + c]) = f.v[r * N + c];
}
template <int M, int N, int K, typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c)
{
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = c.v[i * N + j];
            for (int k = 0; k < K; k++)
                s += a.v[i * K + k] * b.v[k * N + j];
            out[i * N + j] = s;
        }
    memcpy(d.v, out, sizeof out);
}
} // namespace wmma
} // namespace nvcuda

namespace cuda_emu {
/* kernel<<<grid, block, smem_bytes>>>(args...) */
template <typename... P, typename... A>
inline void launch(dim3 grid, dim3 block, size_t smem_bytes, void (*kernel)(P...), A... args)
{
    const size_t MAX_SMEM = 227 * 1024;
    if (smem_bytes > MAX_SMEM) {
        fprintf(stderr, "cuda_emu: %zu bytes of shared memory requested, a block may have %zu\n", smem_bytes,
                MAX_SMEM);
        abort();
    }
    unsigned nt = block.x * block.y * block.z;
    if (nt == 0 || nt > 1024)
        fail("block size out of range");
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                block_state st;
                st.block = std::make_unique<std::barrier<>>(nt);
                for (unsigned w = 0; w < (nt + 31) / 32; w++)
                    st.warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, nt - 32 * w)));
                /* 128-byte aligned like __align__(128) extern __shared__;
                 * filled with NaNs, so a kernel that reads shared memory it
                 * never wrote does not see zeros */
                size_t n = (smem_bytes + 127) / 128 * 128;
                unsigned char *smem = (unsigned char *)std::aligned_alloc(128, n ? n : 128);
                for (size_t i = 0; i + 4 <= n; i += 4)
                    memcpy(smem + i, "\xff\xff\xff\x7f", 4);
                st.smem = smem;
                std::vector<std::thread> th;
                for (unsigned t = 0; t < nt; t++)
                    th.emplace_back([&, t] {
                        tl_block = &st;
                        tl_warp = (int)(t / 32);
                        threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
                        blockIdx = dim3(bx, by, bz);
                        blockDim = block;
                        gridDim = grid;
                        kernel(args...);
                        st.warps[tl_warp]->arrive_and_drop();
                        st.block->arrive_and_drop();
                    });
                for (auto &x : th)
                    x.join();
                std::free(smem);
            }
}
} // namespace cuda_emu

#endif /* TRIAD_CUDA_EMU_H */
