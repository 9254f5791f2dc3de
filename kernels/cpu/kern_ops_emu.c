/* kern_ops_emu.c — an emulated device for machines without a GPU: the CPU
 * kernels, run on memory the host cannot touch outside them.
 *
 * Every buffer the table allocates is its own mapping, kept PROT_NONE. An op
 * opens all of them for reading and writing, runs the CPU kernel and closes
 * them again; to_device / to_host / copy / memset0 do the same around a
 * memcpy or memset. Code that reads or writes a "device" buffer directly,
 * as it could not on a GPU, stops with SIGSEGV at that line (run it under gdb
 * or with a core dump to see where), and the numbers are the CPU table's to
 * the bit. Slow (two mprotect calls per buffer per op): for tests only.
 */
#include "../kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    char *base;
    size_t len; /* mapped length (whole pages) */
} emu_region;

static emu_region *g_reg;
static int g_n, g_cap;
static int g_open; /* nesting depth of open() */

static void die(const char *what)
{
    fprintf(stderr, "triad: emulated device: %s\n", what);
    exit(1);
}

static void protect_all(int prot)
{
    for (int i = 0; i < g_n; i++)
        if (mprotect(g_reg[i].base, g_reg[i].len, prot))
            die("mprotect failed");
}
static void open_all(void)
{
    if (g_open++ == 0)
        protect_all(PROT_READ | PROT_WRITE);
}
static void close_all(void)
{
    if (--g_open == 0)
        protect_all(PROT_NONE);
}

int kern_emu_is_device(const void *p)
{
    const char *c = p;
    for (int i = 0; i < g_n; i++)
        if (c >= g_reg[i].base && c < g_reg[i].base + g_reg[i].len)
            return 1;
    return 0;
}

static void *emu_alloc(int64_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = ((size_t)(bytes > 0 ? bytes : 1) + page - 1) / page * page;
    void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* zero-filled */
    if (p == MAP_FAILED)
        return NULL;
    if (g_n == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 64;
        emu_region *r = realloc(g_reg, sizeof *r * (size_t)g_cap);
        if (!r)
            die("out of memory for the region table");
        g_reg = r;
    }
    g_reg[g_n++] = (emu_region){p, len};
    if (g_open) /* allocated while open: open like the rest */
        mprotect(p, len, PROT_READ | PROT_WRITE);
    return p;
}

static void emu_free(void *p)
{
    if (!p)
        return;
    for (int i = 0; i < g_n; i++)
        if (g_reg[i].base == p) {
            munmap(p, g_reg[i].len);
            g_reg[i] = g_reg[--g_n];
            return;
        }
    die("free of a pointer this table did not allocate");
}

static void emu_copy(void *dst, const void *src, int64_t bytes)
{
    if (bytes <= 0)
        return;
    open_all();
    memcpy(dst, src, (size_t)bytes);
    close_all();
}
static void emu_memset0(void *p, int64_t bytes)
{
    if (bytes <= 0)
        return;
    open_all();
    memset(p, 0, (size_t)bytes);
    close_all();
}
static void emu_sync(void) {}

/* each op: open, the CPU kernel, close */
#define WRAP(name, params, args)                                                                   \
    static void emu_##name params                                                                   \
    {                                                                                               \
        open_all();                                                                                 \
        kern_ops_cpu()->name args;                                                                  \
        close_all();                                                                                \
    }

WRAP(encoder_forward, (void *out, const int *tok, const float *wte, const float *wpe, int B, int T, int C, int v0,
                       int V, int add_pos), (out, tok, wte, wpe, B, T, C, v0, V, add_pos))
WRAP(encoder_backward, (float *dwte, float *dwpe, const void *dout, const int *tok, int B, int T, int C, int v0,
                        int V, int add_pos), (dwte, dwpe, dout, tok, B, T, C, v0, V, add_pos))
WRAP(layernorm_forward, (void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
                         int N, int C), (out, mean, rstd, inp, w, b, N, C))
WRAP(layernorm_backward, (void *dinp, float *dw, float *db, const void *dout, const void *inp, const float *w,
                          const float *mean, const float *rstd, int N, int C),
     (dinp, dw, db, dout, inp, w, mean, rstd, N, C))
WRAP(matmul_forward, (void *out, const void *inp, const void *weight, const void *bias, int N, int C, int OC),
     (out, inp, weight, bias, N, C, OC))
WRAP(matmul_backward, (void *dinp, float *dweight, float *dbias, const void *dout, const void *inp,
                       const void *weight, int N, int C, int OC, float beta),
     (dinp, dweight, dbias, dout, inp, weight, N, C, OC, beta))
WRAP(attention_forward, (void *out, void *att, const void *qkv, int B, int T, int NH, int HS),
     (out, att, qkv, B, T, NH, HS))
WRAP(attention_backward, (void *dqkv, void *datt, const void *dout, const void *qkv, const void *att, int B,
                          int T, int NH, int HS), (dqkv, datt, dout, qkv, att, B, T, NH, HS))
WRAP(attention_forward_flash, (void *out, float *lse, const void *qkv, int B, int T, int NH, int HS),
     (out, lse, qkv, B, T, NH, HS))
WRAP(attention_backward_flash, (void *dqkv, const void *dout, const void *qkv, const void *out, const float *lse,
                                int B, int T, int NH, int HS), (dqkv, dout, qkv, out, lse, B, T, NH, HS))
WRAP(gelu_forward, (void *out, const void *inp, int64_t n), (out, inp, n))
WRAP(gelu_backward, (void *dinp, const void *inp, const void *dout, int64_t n), (dinp, inp, dout, n))
WRAP(residual_forward, (void *out, const void *a, const void *b, int64_t n), (out, a, b, n))
WRAP(add_inplace, (void *y, const void *x, int64_t n), (y, x, n))
WRAP(xent_rowmax, (float *rowmax, const void *logits, int N, int V), (rowmax, logits, N, V))
WRAP(xent_sumexp, (float *sumexp, const void *logits, const float *gmax, int N, int V), (sumexp, logits, gmax, N, V))
WRAP(xent_target, (float *tlogit, const void *logits, const int *targets, int N, int V, int v0),
     (tlogit, logits, targets, N, V, v0))
WRAP(xent_forward, (float *rowmax, float *sumexp, float *tlogit, const void *logits, const int *targets, int N,
                    int V, int v0), (rowmax, sumexp, tlogit, logits, targets, N, V, v0))
WRAP(xent_backward_inplace, (void *logits, const float *gmax, const float *gsum, const int *targets, int N, int V,
                             int v0, float scale), (logits, gmax, gsum, targets, N, V, v0, scale))
WRAP(adamw, (float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
             float wd, int t), (p, g, m, v, n, lr, b1, b2, eps, wd, t))
WRAP(scale, (float *x, float s, int64_t n), (x, s, n))
WRAP(bias_residual, (void *x, const float *b, const void *res, int N, int C), (x, b, res, N, C))
WRAP(to_bf16, (uint16_t *dst, const float *src, int64_t n), (dst, src, n))
WRAP(add_f32, (float *y, const float *x, int64_t n), (y, x, n))
WRAP(matmul_gelu_forward, (void *out, void *pre, const void *inp, const void *weight, const void *bias, int N, int C,
                           int OC), (out, pre, inp, weight, bias, N, C, OC))
WRAP(matmul_gelu_backward, (void *dpre, float *dweight, float *dbias, const void *dout, const void *inp,
                            const void *pre, const void *weight, void *dscratch, int N, int C, int OC),
     (dpre, dweight, dbias, dout, inp, pre, weight, dscratch, N, C, OC))

static double emu_sum_squares(const float *x, int64_t n)
{
    open_all();
    double s = kern_ops_cpu()->sum_squares(x, n);
    close_all();
    return s;
}

static void emu_sum_squares_many(double *out, const float *base, const int64_t *off, const int64_t *len, int n)
{
    open_all();
    kern_ops_cpu()->sum_squares_many(out, base, off, len, n);
    close_all();
}

/* the CPU table's storage: host state, no device memory */
static int emu_set_storage(int mode) { return kern_ops_cpu()->set_storage(mode); }

static const kern_ops emu_ops = {
    .name = "emu",
    .alloc = emu_alloc,
    .free = emu_free,
    .to_device = emu_copy,
    .to_host = emu_copy,
    .memset0 = emu_memset0,
    .sync = emu_sync,
    .encoder_forward = emu_encoder_forward,
    .encoder_backward = emu_encoder_backward,
    .layernorm_forward = emu_layernorm_forward,
    .layernorm_backward = emu_layernorm_backward,
    .matmul_forward = emu_matmul_forward,
    .matmul_backward = emu_matmul_backward,
    .attention_forward = emu_attention_forward,
    .attention_backward = emu_attention_backward,
    .gelu_forward = emu_gelu_forward,
    .gelu_backward = emu_gelu_backward,
    .residual_forward = emu_residual_forward,
    .add_inplace = emu_add_inplace,
    .xent_rowmax = emu_xent_rowmax,
    .xent_sumexp = emu_xent_sumexp,
    .xent_target = emu_xent_target,
    .xent_backward_inplace = emu_xent_backward_inplace,
    .adamw = emu_adamw,
    .sum_squares = emu_sum_squares,
    .scale = emu_scale,
    .attention_forward_flash = emu_attention_forward_flash,
    .attention_backward_flash = emu_attention_backward_flash,
    .to_bf16 = emu_to_bf16,
    .copy = emu_copy,
    .bias_residual = emu_bias_residual,
    .set_math = kern_cpu_set_math, /* the CPU kernels' mode: host state, no device memory */
    .sum_squares_many = emu_sum_squares_many,
    .xent_forward = emu_xent_forward,
    .set_storage = emu_set_storage,
    .add_f32 = emu_add_f32,
    .matmul_gelu_forward = emu_matmul_gelu_forward,
    .matmul_gelu_backward = emu_matmul_gelu_backward,
};

const kern_ops *kern_ops_emu(void) { return &emu_ops; }
