/* cuda_emu.h — runs CUDA C++ device code on the host, to test a kernel's
 * indexing, tiling, masking, reductions and synchronisation on a machine
 * without a GPU. Not a substitute for the GPU run: timing, register
 * pressure, occupancy, memory ordering between blocks and the real fragment
 * layout are not modelled, and tests/gpu/test_kern_cuda.c on a GPU remains
 * the check that counts.
 *
 * What it does. A launch checks its configuration as the driver does (at
 * most 1024 threads a block, grid limits, dynamic shared memory above 48 KiB
 * only after cudaFuncSetAttribute, never above the 227 KiB of a Hopper
 * block) and records a refused one for cudaGetLastError instead of running
 * it. It runs the blocks of the grid one after the other; the threads of a
 * block are fibers on the calling thread, each with its own
 * stack and threadIdx, switched only where CUDA lets threads wait for each
 * other: __syncthreads (a barrier over the block's live threads),
 * __syncwarp and the warp shuffles (barriers over the warp's live lanes; a
 * shuffle whose mask names a lane that has exited, or that does not name a
 * live lane, is an error, as it is undefined on the GPU). Threads that wait
 * at different barriers forever are reported as a deadlock. The scheduler
 * lets threads drift as far apart as CUDA allows: one warp runs up to its
 * next __syncthreads (or its end) before the next warp starts, and within
 * it each lane runs alone to its next warp barrier; warps and lanes go in
 * index order in even-numbered blocks and in reverse in odd ones. So a read
 * of data another thread writes before a missing barrier sees the
 * unwritten value in one of the two orders (dynamic shared memory starts as
 * NaNs, and a wmma store is written by lane 0 only), and a write that a
 * missing barrier should hold back overwrites data another warp has yet to
 * read.
 *
 * Shared memory: dynamic, one buffer of exactly the launch's size per block
 * (AddressSanitizer sees overruns), 128-byte aligned; static __shared__
 * variables are function statics (the blocks run one at a time). Atomics
 * are plain read-modify-writes (one host thread runs every fiber).
 * nvcuda::wmma fragments hold their whole 16x16 tile in every thread (the
 * real element-to-lane map is opaque to code that, like triad's, never
 * indexes fragment elements); loads check the alignment and leading
 * dimension rules of the CUDA programming guide (256-bit aligned pointers,
 * ldm a multiple of 16 bytes). bf16 rounds to nearest even.
 *
 * The host API (cudaMalloc, cuBLAS, ...) is in include/ and cuda_emu_rt.cc;
 * the kernels of kernels/cuda compile against it after their <<<...>>> launches are
 * rewritten to cuda_emu::launcher(kernel, grid, block[, smem])(args...)
 * (the Makefile's rule for test_kern_cuda_emu). */
#ifndef TRIAD_CUDA_EMU_H
#define TRIAD_CUDA_EMU_H

#ifndef TRIAD_CUDA_EMU
#define TRIAD_CUDA_EMU 1
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <sys/mman.h>
#include <type_traits>
#include <vector>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define CUDA_EMU_ASAN 1
#else
#define CUDA_EMU_ASAN 0
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static
#define __restrict__ __restrict
#define __ldg(p) (*(p))

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

/* the running fiber's; plain globals, not thread_local (whose every read,
 * under AddressSanitizer, goes through __tls_get_addr): kernels are
 * launched from one host thread at a time */
inline dim3 threadIdx, blockIdx, blockDim, gridDim;
constexpr int warpSize = 32;

/* ---- a fiber's context: its stack pointer ------------------------------------
 * On x86-64 a switch saves the callee-saved registers on the old stack and
 * takes them from the new one (the System V ABI leaves every other register
 * to the caller): no system call, unlike swapcontext, which also saves the
 * signal mask. The SSE and x87 control words are left alone (saving them
 * cost more than the rest of a switch): every fiber runs in the rounding
 * mode of the launch, as kernels never change it. Elsewhere ucontext.
 * Weak symbols: every file that includes this header carries them. */
#if defined(__x86_64__)
extern "C" void cuda_emu_switch(void **save_sp, void *to_sp);
extern "C" void cuda_emu_fiber_start(void);
__asm__(R"(
    .text
    .weak cuda_emu_switch
    .type cuda_emu_switch, @function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch, .-cuda_emu_switch
    .weak cuda_emu_fiber_start
    .type cuda_emu_fiber_start, @function
cuda_emu_fiber_start:
    andq $-16, %rsp
    call cuda_emu_fiber_main
    ud2
    .size cuda_emu_fiber_start, .-cuda_emu_fiber_start
)");
#endif

namespace cuda_emu {

[[noreturn]] inline void fail(const char *what)
{
    fprintf(stderr, "cuda_emu: %s\n", what);
    abort();
}

/* ---- fibers: the threads of one block ------------------------------------- */
enum { RUNNING, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

struct context {
#if defined(__x86_64__)
    void *sp;
#else
    ucontext_t uc;
#endif
};
/* save the running context in from, continue in to */
inline void context_switch(context *from, context *to)
{
#if defined(__x86_64__)
    cuda_emu_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
}

struct fiber {
    context ctx;
    dim3 idx;           /* its threadIdx */
    unsigned tid;
    int state;
    unsigned wait_gen;  /* the barrier generation it waits to see pass */
    void *fake_stack;   /* AddressSanitizer's bookkeeping across switches */
};
struct warp_state {
    unsigned live_mask;           /* lanes that have not exited */
    unsigned live;                /* how many */
    unsigned arrived, gen;        /* the warp barrier */
    alignas(8) unsigned char slot[32][8]; /* a shuffle's values, one per lane */
};
struct block_run {
    unsigned nt, live, arrived, gen; /* the block barrier over live threads */
    std::vector<warp_state> warps;
    std::vector<fiber> fibers;
    unsigned char *smem;
    const std::function<void()> *body;
    context sched;
    fiber *cur;
    dim3 block;
    const void *sched_stack_bottom;
    size_t sched_stack_size;
};
inline block_run *tl_run; /* the block running now */

/* Stacks for up to 1024 fibers, reserved once (pages are touched lazily),
 * each with a guard page below it. */
inline unsigned char *stack_pool(size_t *each)
{
    static unsigned char *pool;
    const size_t STACK = (size_t)128 << 10, GUARD = 4096;
    if (!pool) {
        void *p = mmap(nullptr, 1024 * (STACK + GUARD), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (p == MAP_FAILED)
            fail("cannot reserve fiber stacks");
        pool = (unsigned char *)p;
        for (int i = 0; i < 1024; i++)
            mprotect(pool + (size_t)i * (STACK + GUARD), GUARD, PROT_NONE);
    }
    *each = STACK;
    return pool;
}
inline unsigned char *stack_of(unsigned tid, size_t *size)
{
    size_t s;
    unsigned char *pool = stack_pool(&s);
    *size = s;
    return pool + (size_t)tid * (s + 4096) + 4096;
}

/* switch from the running fiber back to the block's scheduler */
inline void to_scheduler(bool exiting)
{
    block_run *r = tl_run;
    fiber *f = r->cur;
#if CUDA_EMU_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &f->fake_stack, r->sched_stack_bottom, r->sched_stack_size);
#endif
    context_switch(&f->ctx, &r->sched);
#if CUDA_EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &r->sched_stack_bottom, &r->sched_stack_size);
#endif
    (void)exiting;
}

inline void warp_barrier();

/* a thread leaves: it drops out of its block's and its warp's barriers */
inline void thread_exit()
{
    block_run *r = tl_run;
    fiber *f = r->cur;
    warp_state &w = r->warps[f->tid / 32];
    f->state = DONE;
    r->live--;
    if (r->arrived > 0 && r->arrived == r->live)
        r->arrived = 0, r->gen++;
    w.live_mask &= ~(1u << (f->tid % 32));
    w.live--;
    if (w.arrived > 0 && w.arrived == w.live)
        w.arrived = 0, w.gen++;
}

/* a new fiber starts here (on its own stack) */
extern "C" __attribute__((weak, used)) void cuda_emu_fiber_main(void)
{
    block_run *r = tl_run;
#if CUDA_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &r->sched_stack_bottom, &r->sched_stack_size);
#endif
    (*r->body)();
    thread_exit();
    to_scheduler(true);
    fail("a finished thread was resumed");
}


/* Runs one block to completion: every fiber in turn until it waits or ends,
 * forward or reverse; a waiting fiber runs again once its barrier's
 * generation has moved on. */
inline void run_block(block_run &r, bool reverse, const char *kernel_name)
{
    unsigned nt = r.nt;
    if (r.fibers.size() != nt) { /* the first block of a launch */
        r.fibers.assign(nt, fiber{});
        r.warps.assign((nt + 31) / 32, warp_state{});
    }
    for (unsigned w = 0; w < r.warps.size(); w++) {
        unsigned lanes = nt - 32 * w < 32 ? nt - 32 * w : 32;
        r.warps[w].live_mask = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        r.warps[w].live = lanes, r.warps[w].arrived = 0, r.warps[w].gen = 0;
    }
    r.live = nt, r.arrived = 0, r.gen = 0;
    for (unsigned t = 0; t < nt; t++) {
        fiber &f = r.fibers[t];
        f.tid = t;
        f.idx = dim3(t % r.block.x, (t / r.block.x) % r.block.y, t / (r.block.x * r.block.y));
        f.state = RUNNING;
        f.fake_stack = nullptr;
        size_t size;
        unsigned char *stack = stack_of(t, &size);
#if defined(__x86_64__)
        /* the frame cuda_emu_switch pops: six registers, then "return"
         * into cuda_emu_fiber_start */
        /* tops staggered by 64 bytes a fiber: 128 KiB apart exactly, every
         * fiber's frames would fall in the same cache sets */
        uint64_t *sp = (uint64_t *)(((uintptr_t)stack + size - 64 * (t % 64)) & ~(uintptr_t)15);
        *--sp = 0;
        *--sp = (uint64_t)(uintptr_t)cuda_emu_fiber_start;
        for (int k = 0; k < 6; k++)
            *--sp = 0;
        f.ctx.sp = sp;
#else
        getcontext(&f.ctx.uc);
        f.ctx.uc.uc_stack.ss_sp = stack;
        f.ctx.uc.uc_stack.ss_size = size;
        f.ctx.uc.uc_link = nullptr;
        makecontext(&f.ctx.uc, cuda_emu_fiber_main, 0);
#endif
    }
    block_run *saved = tl_run;
    tl_run = &r;
    unsigned left = nt, nw = (unsigned)r.warps.size();
    while (left > 0) {
        bool progress = false;
        for (unsigned wk = 0; wk < nw; wk++) {
            /* one warp as far as it goes (to a __syncthreads or its end)
             * before the next, its lanes one at a time to their next warp
             * barrier: warps and lanes drift apart as far as CUDA allows */
            unsigned w = reverse ? nw - 1 - wk : wk, lo = 32 * w, n = nt - lo < 32 ? nt - lo : 32;
            for (bool moved = true; moved;) {
                moved = false;
                for (unsigned k = 0; k < n; k++) {
                    fiber &f = r.fibers[lo + (reverse ? n - 1 - k : k)];
                    if (f.state == DONE)
                        continue;
                    if (f.state == AT_BLOCK_BARRIER && f.wait_gen == r.gen)
                        continue;
                    if (f.state == AT_WARP_BARRIER && f.wait_gen == r.warps[w].gen)
                        continue;
                    r.cur = &f;
                    threadIdx = f.idx;
#if CUDA_EMU_ASAN
                    size_t size;
                    unsigned char *stack = stack_of(f.tid, &size);
                    void *fake = nullptr;
                    __sanitizer_start_switch_fiber(&fake, stack, size);
#endif
                    context_switch(&r.sched, &f.ctx);
#if CUDA_EMU_ASAN
                    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
                    moved = progress = true;
                    if (f.state == DONE)
                        left--;
                }
            }
        }
        if (!progress) {
            unsigned at_block = 0, at_warp = 0;
            for (const fiber &f : r.fibers)
                at_block += f.state == AT_BLOCK_BARRIER, at_warp += f.state == AT_WARP_BARRIER;
            fprintf(stderr,
                    "cuda_emu: deadlock in %s, block (%u,%u,%u): %u threads wait at __syncthreads, %u at a warp "
                    "barrier (__syncwarp or a shuffle), %u have exited\n",
                    kernel_name, blockIdx.x, blockIdx.y, blockIdx.z, at_block, at_warp, nt - r.live);
            abort();
        }
    }
    tl_run = saved;
}

/* ---- launch ------------------------------------------------------------- */
inline int last_error;                               /* cudaError_t of the last refused launch */
inline std::map<const void *, int> max_dyn_smem;      /* cudaFuncSetAttribute's opt-ins */
enum { SMEM_DEFAULT = 48 * 1024, SMEM_OPTIN_MAX = 227 * 1024 };
enum { ERR_INVALID_VALUE = 1, ERR_INVALID_CONFIGURATION = 9 };

inline int set_max_dyn_smem(const void *kernel, int bytes)
{
    if (bytes < 0 || bytes > SMEM_OPTIN_MAX)
        return ERR_INVALID_VALUE;
    max_dyn_smem[kernel] = bytes;
    return 0;
}

/* kernel<<<grid, block, smem_bytes>>>(args...): refused launches set
 * last_error (cudaGetLastError reads it) and run nothing */
template <typename... P, typename... A>
inline void launch_named(const char *name, dim3 grid, dim3 block, size_t smem_bytes, void (*kernel)(P...), A... args)
{
    unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
    auto it = max_dyn_smem.find(reinterpret_cast<const void *>(kernel));
    size_t smem_max = it != max_dyn_smem.end() ? (size_t)it->second : (size_t)SMEM_DEFAULT;
    if (nt == 0 || nt > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u ||
        grid.y > 65535 || grid.z > 65535) {
        last_error = ERR_INVALID_CONFIGURATION;
        return;
    }
    if (smem_bytes > smem_max) {
        last_error = ERR_INVALID_VALUE;
        return;
    }
    std::function<void()> body = [=]() { kernel(args...); };
    size_t n = (smem_bytes + 127) / 128 * 128;
    unsigned char *smem = (unsigned char *)std::aligned_alloc(128, n ? n : 128);
    block_run r;
    r.nt = (unsigned)nt;
    r.block = block;
    r.body = &body;
    r.smem = smem;
    dim3 saved_block = blockIdx, saved_dim = blockDim, saved_grid = gridDim, saved_thread = threadIdx;
    blockDim = block;
    gridDim = grid;
    unsigned long long b = 0;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++, b++) {
                /* NaNs, so a kernel that reads shared memory it never
                 * wrote does not see zeros (or the last block's data) */
                for (size_t i = 0; i + 4 <= n; i += 4)
                    memcpy(smem + i, "\xff\xff\xff\x7f", 4);
                blockIdx = dim3(bx, by, bz);
                run_block(r, b % 2 == 1, name);
            }
    std::free(smem);
    blockIdx = saved_block, blockDim = saved_dim, gridDim = saved_grid, threadIdx = saved_thread;
}

template <typename... P, typename... A>
inline void launch(dim3 grid, dim3 block, size_t smem_bytes, void (*kernel)(P...), A... args)
{
    launch_named("a kernel", grid, block, smem_bytes, kernel, args...);
}

/* the rewritten form of name<<<grid, block[, smem[, stream]]>>>(args...):
 * cuda_emu::launcher(name, grid, block[, smem[, stream]]).named("name")(args...) */
template <typename K> struct launch_of {
    K kernel;
    dim3 grid, block;
    size_t smem;
    const char *name;
    launch_of named(const char *n) const { return launch_of{kernel, grid, block, smem, n}; }
    template <typename... A> void operator()(A... args) const { launch_named(name, grid, block, smem, kernel, args...); }
};
template <typename... P>
inline launch_of<void (*)(P...)> launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0,
                                          const void *stream = nullptr)
{
    (void)stream; /* one stream: everything runs in order, at once */
    return launch_of<void (*)(P...)>{kernel, grid, block, smem, "a kernel"};
}

/* ---- inside a kernel ------------------------------------------------------- */
inline block_run *run_now()
{
    if (!tl_run)
        fail("a device function was called outside a kernel launch");
    return tl_run;
}
inline unsigned char *dyn_smem() { return run_now()->smem; }

inline void block_barrier()
{
    block_run *r = run_now();
    fiber *f = r->cur;
    if (++r->arrived == r->live) {
        r->arrived = 0, r->gen++;
        return;
    }
    f->state = AT_BLOCK_BARRIER;
    f->wait_gen = r->gen;
    to_scheduler(false);
    f->state = RUNNING;
}
inline void warp_barrier()
{
    block_run *r = run_now();
    fiber *f = r->cur;
    warp_state &w = r->warps[f->tid / 32];
    if (++w.arrived == w.live) {
        w.arrived = 0, w.gen++;
        return;
    }
    f->state = AT_WARP_BARRIER;
    f->wait_gen = w.gen;
    to_scheduler(false);
    f->state = RUNNING;
}

/* A shuffle: every live lane named by mask posts its value, then reads
 * lane src(lane)'s (its own where src is out of range or names a lane
 * outside the mask, as the hardware does for shfl_up/down at the edges). */
template <typename T, typename Src> inline T shuffle(unsigned mask, T v, Src src)
{
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    block_run *r = run_now();
    fiber *f = r->cur;
    warp_state &w = r->warps[f->tid / 32];
    unsigned lane = f->tid % 32;
    if (mask != w.live_mask) {
        fprintf(stderr,
                "cuda_emu: a shuffle with mask 0x%08x in warp %u whose live lanes are 0x%08x (undefined on the "
                "GPU: every lane the mask names must execute it, and only those)\n",
                mask, f->tid / 32, w.live_mask);
        abort();
    }
    memcpy(w.slot[lane], &v, sizeof(T));
    warp_barrier();
    int s = src((int)lane);
    T out = v;
    if (s >= 0 && s < 32 && (mask >> s) & 1u)
        memcpy(&out, w.slot[s], sizeof(T));
    warp_barrier(); /* nobody posts again before every lane has read */
    return out;
}
} // namespace cuda_emu

inline void __syncthreads() { cuda_emu::block_barrier(); }
inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    (void)mask;
    cuda_emu::warp_barrier();
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    return cuda_emu::shuffle(mask, v, [=](int l) { return (l & ~(width - 1)) + ((l ^ lane_mask) & (width - 1)); });
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    return cuda_emu::shuffle(mask, v, [=](int l) {
        int base = l & ~(width - 1), s = l + (int)delta;
        return s < base + width ? s : l;
    });
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    return cuda_emu::shuffle(mask, v, [=](int l) {
        int base = l & ~(width - 1), s = l - (int)delta;
        return s >= base ? s : l;
    });
}
template <typename T> inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32)
{
    return cuda_emu::shuffle(mask, v, [=](int l) { return (l & ~(width - 1)) + (src_lane & (width - 1)); });
}

#define FA_DYN_SMEM(name) unsigned char *name = cuda_emu::dyn_smem()
#define EMU_DYN_SMEM(type, name) type *name = (type *)cuda_emu::dyn_smem()

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
template <typename T> inline T atomicAdd(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}
inline int atomicMax(int *p, int v)
{
    int old = *p;
    *p = old > v ? old : v;
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
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return __float2bfloat16(x); }
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
    if (cuda_emu::run_now()->cur->tid % 32)
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

#endif /* TRIAD_CUDA_EMU_H */
