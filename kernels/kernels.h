/* kernels.h — the math of one device: GPT-2 forward and backward ops.
 *
 * Shapes use B (micro-batch), T (positions), C (hidden), OC (output
 * channels), NH (heads on this rank), HS (head size), V (vocabulary rows
 * this rank holds). Tensors are row-major, outermost first, fp32, and every
 * op takes the LOCAL (tensor-parallel sharded) sizes, so the same functions
 * serve every layout. Backward functions ACCUMULATE into parameter
 * gradients (+=) so micro-batches add up; activation gradients are
 * overwritten unless said otherwise.
 *
 * This is the CPU backend (kernels/cpu, OpenBLAS + OpenMP); the names carry
 * the backend (kern_cpu_). Deliberately left out: dropout (GPT-2 training at
 * this scale does without it, and the reference has none).
 */
#ifndef TRIAD_KERNELS_H
#define TRIAD_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out (B,T,C) = wte[tok - v0] (when v0 <= tok < v0 + V, else 0) + wpe[t]
 * (added only when add_pos). wte (V,C) holds vocabulary rows [v0, v0+V).
 * Vocabulary-parallel use: every tp rank calls it with its shard and
 * add_pos = 1 on tp rank 0 only, so the sum over the tp all-reduce is
 * exactly wte[tok] + wpe[t] (tokens are global ids). */
void kern_cpu_encoder_forward(float *out, const int *tok, const float *wte, const float *wpe, int B, int T,
                              int C, int v0, int V, int add_pos);
/* dwte += rows of dout for owned tokens; dwpe += sum over b (when add_pos). */
void kern_cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tok, int B, int T,
                               int C, int v0, int V, int add_pos);

/* out = (inp - mean) * rstd * w + b over C; mean, rstd (N) saved; N = B*T. */
void kern_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                const float *b, int N, int C);
/* dinp += ...; dw += ...; db += ... */
void kern_cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, const float *mean, const float *rstd, int N, int C);

/* out (N,OC) = inp (N,C) @ weight(OC,C)^T + bias (OC, may be NULL). */
void kern_cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                             int C, int OC);
/* dinp (N,C) = dout @ weight (overwrite when dinp_beta == 0, accumulate when
 * 1); dweight (OC,C) += dout^T @ inp; dbias (OC) += column sums (may be NULL). */
void kern_cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, int N, int C, int OC, float dinp_beta);

/* Causal self-attention. qkv (B,T,3*NH*HS) laid out [q heads | k heads | v
 * heads]; att (B,NH,T,T) keeps the softmax probabilities (zero above the
 * diagonal); out (B,T,NH*HS). */
void kern_cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH, int HS);
/* dqkv (overwritten), using att and a scratch datt (B,NH,T,T).
 * Selective recompute: when att was not kept, call attention_forward again
 * into scratch (out, att) buffers just before the backward; the result
 * equals the kept probabilities (same inputs, same kernels). */
void kern_cpu_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                                 const float *att, int B, int T, int NH, int HS);

/* Fused (flash) causal attention: no T x T matrix. Forward writes out
 * (B,T,NH*HS) and lse (B,NH,T), the natural log-sum-exp of each row's
 * scaled scores; backward recomputes the probabilities from qkv and lse and
 * overwrites dqkv (B,T,3*NH*HS). In bf16 math (set_math) the operands are
 * rounded to bf16 where the CUDA tensor-core kernels round them
 * (kernels/cuda/flash_tc.cuh); in fp32 nothing is, and the results equal
 * attention_forward / attention_backward up to the order of fp32 sums. */
void kern_cpu_attention_forward_flash(float *out, float *lse, const float *qkv, int B, int T, int NH, int HS);
void kern_cpu_attention_backward_flash(float *dqkv, const float *dout, const float *qkv, const float *out,
                                       const float *lse, int B, int T, int NH, int HS);

/* GELU, tanh approximation (GPT-2). dinp = gelu'(inp) * dout (overwrite). */
void kern_cpu_gelu_forward(float *out, const float *inp, int64_t n);
void kern_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n);

/* out = a + b */
void kern_cpu_residual_forward(float *out, const float *a, const float *b, int64_t n);
/* y += x */
void kern_cpu_add_inplace(float *y, const float *x, int64_t n);

/* Vocabulary-parallel cross-entropy in pieces, so the max and the sum of
 * exponentials can be reduced over the tensor-parallel group between them.
 * logits (N,V) hold vocabulary rows [v0, v0+V).
 *   rowmax (N) = max over the local V
 *   sumexp (N) = sum exp(logit - gmax) given the global max
 *   tlogit (N) = logit of the target when this rank owns it, else 0
 * then loss_n = log(gsum) + gmax - gtarget and, in place,
 *   logits <- (softmax - onehot(target)) * scale. */
void kern_cpu_xent_rowmax(float *rowmax, const float *logits, int N, int V);
void kern_cpu_xent_sumexp(float *sumexp, const float *logits, const float *gmax, int N, int V);
void kern_cpu_xent_target(float *tlogit, const float *logits, const int *targets, int N, int V, int v0);
void kern_cpu_xent_backward_inplace(float *logits, const float *gmax, const float *gsum, const int *targets,
                                    int N, int V, int v0, float scale);
/* The three forward pieces in one pass over the logits, for a rank that
 * holds the whole vocabulary or reduces them itself: rowmax (N) = max over
 * the local V, sumexp (N) = sum exp(logit - rowmax) (this rank's own max),
 * tlogit (N) as xent_target. The CPU form computes each row's pieces exactly
 * as the three functions above do (the row stays in cache), so the results
 * are the same bits. */
void kern_cpu_xent_forward(float *rowmax, float *sumexp, float *tlogit, const float *logits, const int *targets,
                           int N, int V, int v0);

/* AdamW (Loshchilov & Hutter 2019, PyTorch's form): m = b1 m + (1-b1) g,
 * v = b2 v + (1-b2) g^2, p -= lr (mhat / (sqrt(vhat) + eps) + wd p), with
 * bias corrections 1 - b^t (t counts from 1). Decoupled weight decay: wd
 * multiplies p itself, not the gradient. Which tensors decay is the
 * caller's choice per call; triad follows llm.c and GPT-2 practice: the
 * 2-D weights (matmul weights, wte, wpe) decay, biases and layernorm
 * parameters are called with wd = 0. */
void kern_cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                    float eps, float wd, int t);

/* sum of squares in double (for the global gradient norm). */
double kern_cpu_sum_squares(const float *x, int64_t n);
void kern_cpu_scale(float *x, float s, int64_t n);

/* GEMM math modes (set_math below, kern_cpu_set_math): plain fp32, or both
 * inputs rounded to bfloat16 with fp32 accumulation (tensor-core GEMMs on
 * bf16 operands; cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF). Storage stays fp32
 * either way. */
enum { KERN_MATH_FP32 = 0, KERN_MATH_BF16 = 1 };
void kern_cpu_set_math(int mode);
int kern_cpu_math(void);
/* x rounded to the nearest bfloat16 (ties to even), as an fp32 value */
float kern_bf16_round(float x);

/* ---- backend-neutral dispatch ------------------------------------------------
 * The same ops as a table of function pointers, so model code runs on either
 * backend. Buffers passed to a table's ops live where that table says: host
 * memory for kern_ops_cpu(), device memory (cudaMalloc, never managed) for
 * kern_ops_cuda(). Allocate, copy and free through the table. Every op has the
 * contract of the kern_cpu_ function of the same name above.
 *
 * Storage (set_storage): activation tensors — everything a model computes
 * and keeps per token: layer inputs and outputs, LayerNorm outputs, qkv,
 * the attention probabilities and outputs, the MLP's hidden activations,
 * logits, and the gradients of all of these — are `void *` in the table's
 * storage type: fp32 (float), or bf16 (uint16_t, the upper half of an fp32,
 * round to nearest even). So are the matmul weights the GEMMs read (a bf16
 * copy of the fp32 master weights). Everything else stays fp32 in either
 * storage: LayerNorm weights, the biases added outside a GEMM, every
 * parameter's gradient (accumulated in fp32), LayerNorm mean and rstd, the flash log-sum-exp,
 * the cross-entropy row statistics, AdamW's state. In bf16 storage each op
 * reads its bf16 operands, computes in fp32 and rounds what it writes to
 * bf16 once (the CPU table does exactly that around its fp32 kernels, the
 * reference the CUDA kernels are checked against). */
enum { KERN_STORE_FP32 = 0, KERN_STORE_BF16 = 1 };
typedef struct kern_ops {
    const char *name; /* "cpu", "emu" or "cuda" */
    void *(*alloc)(int64_t bytes);                         /* zero-filled; NULL on failure */
    void (*free)(void *p);
    void (*to_device)(void *dst, const void *src_host, int64_t bytes);
    void (*to_host)(void *dst_host, const void *src, int64_t bytes);
    void (*memset0)(void *p, int64_t bytes);
    void (*sync)(void);

    /* out, dout: activations; wte, wpe and their gradients: fp32 */
    void (*encoder_forward)(void *out, const int *tok, const float *wte, const float *wpe, int B, int T, int C,
                            int v0, int V, int add_pos);
    void (*encoder_backward)(float *dwte, float *dwpe, const void *dout, const int *tok, int B, int T, int C,
                             int v0, int V, int add_pos);
    /* out, inp, dinp (+=), dout: activations; w, b, dw, db, mean, rstd: fp32 */
    void (*layernorm_forward)(void *out, float *mean, float *rstd, const void *inp, const float *w,
                              const float *b, int N, int C);
    void (*layernorm_backward)(void *dinp, float *dw, float *db, const void *dout, const void *inp,
                               const float *w, const float *mean, const float *rstd, int N, int C);
    /* out, inp, dinp, dout, weight and bias in the storage type (the GEMM
     * adds the bias to its fp32 sums and rounds once; in bf16 storage the
     * bias, like the weight, is the bf16 copy: Megatron-LM's and llm.c's
     * bf16 parameters); dweight, dbias fp32 */
    void (*matmul_forward)(void *out, const void *inp, const void *weight, const void *bias, int N, int C, int OC);
    void (*matmul_backward)(void *dinp, float *dweight, float *dbias, const void *dout, const void *inp,
                            const void *weight, int N, int C, int OC, float dinp_beta);
    /* every tensor an activation */
    void (*attention_forward)(void *out, void *att, const void *qkv, int B, int T, int NH, int HS);
    void (*attention_backward)(void *dqkv, void *datt, const void *dout, const void *qkv, const void *att, int B,
                               int T, int NH, int HS);
    void (*gelu_forward)(void *out, const void *inp, int64_t n);
    void (*gelu_backward)(void *dinp, const void *inp, const void *dout, int64_t n);
    void (*residual_forward)(void *out, const void *a, const void *b, int64_t n);
    void (*add_inplace)(void *y, const void *x, int64_t n);
    /* logits: an activation; the row statistics fp32 */
    void (*xent_rowmax)(float *rowmax, const void *logits, int N, int V);
    void (*xent_sumexp)(float *sumexp, const void *logits, const float *gmax, int N, int V);
    void (*xent_target)(float *tlogit, const void *logits, const int *targets, int N, int V, int v0);
    void (*xent_backward_inplace)(void *logits, const float *gmax, const float *gsum, const int *targets, int N,
                                  int V, int v0, float scale);
    /* fp32 throughout (master weights, gradients, moments) */
    void (*adamw)(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                  float eps, float wd, int t);
    double (*sum_squares)(const float *x, int64_t n);
    void (*scale)(float *x, float s, int64_t n);

    /* Fused (flash) causal attention, every table: the contract of
     * kern_cpu_attention_forward_flash / _backward_flash; qkv, out, dout,
     * dqkv activations, lse fp32. CUDA: in bf16 math and HS in {16, 32, 64,
     * 128}, FlashAttention-2 tiles on tensor cores (kernels/cuda/
     * flash_tc.cuh); in fp32 math one thread per query row, exact but slow
     * (on an H100 at B=8 T=1024 NH=12 HS=64: 25 ms forward, 162 ms backward
     * vs 1.3 / 2.4 ms for the cuBLAS path that keeps att). HS <= 128. */
    void (*attention_forward_flash)(void *out, float *lse, const void *qkv, int B, int T, int NH, int HS);
    void (*attention_backward_flash)(void *dqkv, const void *dout, const void *qkv, const void *out,
                                     const float *lse, int B, int T, int NH, int HS);

    /* to_bf16: dst = bf16(src), n elements, round to nearest even (the bf16
     * copy of the master weights that bf16 storage's GEMMs read) */
    void (*to_bf16)(uint16_t *dst, const float *src, int64_t n);

    /* For the trainer (every table):
     *   copy: dst = src, bytes, both in this table's memory (may not overlap)
     *   bias_residual: x (N,C) (an activation) = (x + b) + res on every row:
     *   b (C) fp32, res (N,C) an activation or NULL (then x + b); in fp32
     *   exactly a bias add then a residual add, in bf16 rounded once */
    void (*copy)(void *dst, const void *src, int64_t bytes);
    void (*bias_residual)(void *x, const float *b, const void *res, int N, int C);
    /*   set_math: how every GEMM of the table computes from now on (KERN_MATH_*) */
    void (*set_math)(int mode);
    /*   sum_squares_many: out[i] (host, double) = sum of squares of
     *   base[off[i] .. off[i] + len[i]) for i < n (off, len on the host), each
     *   as sum_squares computes it, with one synchronisation for all n (the
     *   per-tensor sums of the gradient norm) */
    void (*sum_squares_many)(double *out, const float *base, const int64_t *off, const int64_t *len, int n);
    /*   xent_forward: kern_cpu_xent_forward's contract. CUDA: one warp per
     *   row reads the row once (online max and rescaled sum, Milakov &
     *   Gimelshein 2018), where xent_rowmax, _sumexp and _target read it
     *   three times: V = 50257 at B T = 8192 is 1.6 GB of fp32 logits a pass */
    void (*xent_forward)(float *rowmax, float *sumexp, float *tlogit, const void *logits, const int *targets,
                         int N, int V, int v0);
    /*   set_storage: how activation tensors are stored from now on
     *   (KERN_STORE_*, above); 0, or -1 when the table cannot (storage unchanged) */
    int (*set_storage)(int mode);
    /*   add_f32: y += x, fp32 whatever the storage (gradients: ZeRO's slices) */
    void (*add_f32)(float *y, const float *x, int64_t n);
    /*   The MLP's first GEMM and its GELU, and the second GEMM's backward
     *   through that GELU, as one op each (a GPU computes them in the
     *   GEMM's epilogue, as llm.c and Transformer Engine do; the CPU table
     *   runs the ops it fuses one after the other, in fp32 bit for bit):
     *   matmul_gelu_forward: pre (N,OC) = inp (N,C) @ weight (OC,C)^T + bias,
     *   out (N,OC) = gelu(pre) — in bf16 storage both rounded once from the
     *   same fp32 value (GELU of the fp32 sum, not of pre's rounding);
     *   matmul_gelu_backward: dpre (N,C) = gelu'(pre) * (dout (N,OC) @
     *   weight (OC,C)), the product rounded once, with dweight (OC,C) +=
     *   dout^T inp and dbias (OC) += the column sums of dout as
     *   matmul_backward; inp is gelu(pre), the forward's out. dscratch (N,C),
     *   an activation buffer, may be overwritten (a table that does not fuse
     *   the backward keeps dout @ weight there). */
    void (*matmul_gelu_forward)(void *out, void *pre, const void *inp, const void *weight, const void *bias, int N,
                                int C, int OC);
    void (*matmul_gelu_backward)(void *dpre, float *dweight, float *dbias, const void *dout, const void *inp,
                                 const void *pre, const void *weight, void *dscratch, int N, int C, int OC);
} kern_ops;

/* bf16 <-> fp32 on the host: bits of the nearest bf16 (ties to even; NaN
 * stays NaN), and the value of bf16 bits */
uint16_t kern_bf16_bits(float x);
float kern_bf16_value(uint16_t b);

/* The CPU table (host buffers); never NULL. */
const kern_ops *kern_ops_cpu(void);

/* An emulated device (kern_ops_emu.c): the CPU kernels on buffers the host
 * cannot touch outside an op (PROT_NONE mappings), for testing device code
 * paths on a machine without a GPU. kern_emu_is_device tells its buffers
 * from host memory (for the comm layer's staging). */
const kern_ops *kern_ops_emu(void);
int kern_emu_is_device(const void *p);

#if defined(TRIAD_HAVE_CUDA) && TRIAD_HAVE_CUDA
/* The CUDA table (device buffers, current device, default stream); ops are
 * asynchronous except to_host and sum_squares. Errors in CUDA or cuBLAS
 * print file:line and the error string on stderr and exit(1). Both
 * storages. */
const kern_ops *kern_ops_cuda(void);
/* Make GPU local_rank % (GPUs visible) current for this process; returns
 * the device picked, or -1 with the CUDA error in err (n bytes). */
int kern_cuda_use_device(int local_rank, char *err, int n);
/* GPUs visible to this process (0 when none). */
int kern_cuda_device_count(void);
/* Free and total bytes of the current GPU; 0, or -1 when CUDA cannot say. */
int kern_cuda_mem_info(int64_t *free_bytes, int64_t *total_bytes);
#endif

#ifdef __cplusplus
}
#endif

#endif /* TRIAD_KERNELS_H */
