/* kern_ops_cpu.c — the CPU backend as a kern_ops table: host memory,
 * plain memcpy, and the kern_cpu_ ops of kern_cpu.c. */
#include "../kernels.h"

#include <stdlib.h>
#include <string.h>

static void *cpu_alloc(int64_t bytes) { return calloc(1, bytes > 0 ? (size_t)bytes : 1); }
static void cpu_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, int64_t bytes)
{
    if (bytes > 0)
        memcpy(dst, src, (size_t)bytes);
}
static void cpu_memset0(void *p, int64_t bytes)
{
    if (bytes > 0)
        memset(p, 0, (size_t)bytes);
}
static void cpu_sync(void) {}
static void cpu_add_bias(float *x, const float *b, int N, int C)
{
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            x[(int64_t)i * C + c] += b[c];
}

static void cpu_sum_squares_many(double *out, const float *base, const int64_t *off, const int64_t *len, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = kern_cpu_sum_squares(base + off[i], len[i]);
}

static const kern_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
    .encoder_forward = kern_cpu_encoder_forward,
    .encoder_backward = kern_cpu_encoder_backward,
    .layernorm_forward = kern_cpu_layernorm_forward,
    .layernorm_backward = kern_cpu_layernorm_backward,
    .matmul_forward = kern_cpu_matmul_forward,
    .matmul_backward = kern_cpu_matmul_backward,
    .attention_forward = kern_cpu_attention_forward,
    .attention_backward = kern_cpu_attention_backward,
    .gelu_forward = kern_cpu_gelu_forward,
    .gelu_backward = kern_cpu_gelu_backward,
    .residual_forward = kern_cpu_residual_forward,
    .add_inplace = kern_cpu_add_inplace,
    .xent_rowmax = kern_cpu_xent_rowmax,
    .xent_sumexp = kern_cpu_xent_sumexp,
    .xent_target = kern_cpu_xent_target,
    .xent_backward_inplace = kern_cpu_xent_backward_inplace,
    .adamw = kern_cpu_adamw,
    .sum_squares = kern_cpu_sum_squares,
    .scale = kern_cpu_scale,
    .attention_forward_flash = kern_cpu_attention_forward_flash,
    .attention_backward_flash = kern_cpu_attention_backward_flash,
    .to_bf16 = NULL, /* CUDA only */
    .matmul_forward_bf16 = NULL,
    .adamw_bf16 = NULL,
    .copy = cpu_copy,
    .add_bias = cpu_add_bias,
    .set_math = kern_cpu_set_math,
    .sum_squares_many = cpu_sum_squares_many,
    .xent_forward = kern_cpu_xent_forward,
};

const kern_ops *kern_ops_cpu(void) { return &cpu_ops; }
