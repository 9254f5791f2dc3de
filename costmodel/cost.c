/* cost.c — the analytic cost model (contract and sources in cost.h).
 *
 * Step time is built bottom-up: GEMM and element-wise times of one block
 * for one micro-batch, tensor-parallel collectives inside the block, the
 * per-stage sums, pipeline sends, the data-parallel gradient traffic and the
 * optimizer. Then the schedule's closed form puts them together.
 * Deliberately left out: dropout kernels (the executor has none; Megatron's
 * dropout traffic is folded into the element-wise passes), and compute /
 * communication contention on the same device.
 */
#include "cost.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../common/rankmap.h"
#include "profile_impl.h"
#include "shapes.h"

static const cost_profile *prof_or_builtin(const cost_profile *p, const spec_cluster *c)
{
    return p ? p : cost_profile_builtin(c->gpu);
}

static double elem_bytes(spec_precision p) { return p == SPEC_PREC_FP32 ? 4.0 : 2.0; }

void cost_layout_bytes(const spec_layout *l, int executor, cost_bytes *out)
{
    if (l->precision == SPEC_PREC_FP32)
        *out = (cost_bytes){4.0, 0.0, 4.0, 8.0, 4};
    else if (executor)
        *out = (cost_bytes){4.0, 2.0, 4.0, 8.0, 2};
    else
        *out = (cost_bytes){2.0, 0.0, 2.0, 12.0, 2};
}

void cost_profile_bytes(const spec_layout *l, const cost_profile *p, cost_bytes *out)
{
    cost_layout_bytes(l, profile_has_kernels(p), out);
}

/* ---- FLOPs ------------------------------------------------------------------ */

double cost_layer_fwd_flops(const spec_model *m, int64_t b)
{
    double s = (double)m->seq, h = (double)m->hidden, f = (double)m->ffn, B = (double)b;
    /* Narayanan et al. 2021 Sec 5.1: QKV 6bsh^2, scores 2bs^2h, values
     * 2bs^2h, projection 2bsh^2, MLP 2 x 2bsh*ffn (= 16bsh^2 for ffn=4h):
     * total 24bsh^2 + 4bs^2h. */
    return 8.0 * B * s * h * h + 4.0 * B * s * s * h + 4.0 * B * s * h * f;
}

double cost_head_fwd_flops(const spec_model *m, int64_t b)
{
    return 2.0 * (double)b * (double)m->seq * (double)m->hidden * (double)m->vocab;
}

double cost_model_flops(const spec_model *m, int64_t global_batch)
{
    /* forward + backward (2x) = 3x forward, no recompute:
     * 72 B s l h^2 (1 + s/(6h) + V/(12 l h)) for ffn = 4h. */
    return 3.0 * ((double)m->layers * cost_layer_fwd_flops(m, global_batch) +
                  cost_head_fwd_flops(m, global_batch));
}

double cost_hardware_flops(const spec_model *m, spec_recompute rc, int64_t global_batch)
{
    double f = cost_model_flops(m, global_batch);
    double s = (double)m->seq, h = (double)m->hidden, B = (double)global_batch;
    if (rc == SPEC_RECOMPUTE_FULL) /* one more forward of every block: Megatron's 96 */
        f += (double)m->layers * cost_layer_fwd_flops(m, global_batch);
    else if (rc == SPEC_RECOMPUTE_SELECTIVE) /* the attention core: 4 b s^2 h */
        f += (double)m->layers * 4.0 * B * s * s * h;
    return f;
}

/* ---- memory -------------------------------------------------------------------- */

int cost_in_flight_chunks(const spec_layout *l, int pp_rank, int64_t n_micro)
{
    int64_t p = l->pp, i = pp_rank, m = n_micro;
    if (l->schedule == SPEC_SCHED_GPIPE)
        return (int)m;
    if (l->schedule == SPEC_SCHED_INTERLEAVED && l->v > 1) {
        /* Megatron-LM's interleaved schedule (and executor/schedule.c): a
         * warm-up of (p - i - 1) * 2 + (v - 1) * p chunk-forwards, then one
         * forward before each backward; every forward first when m == p */
        int64_t v = l->v, all = m * v, warm = (p - i - 1) * 2 + (v - 1) * p;
        if (m == p || warm >= all)
            return (int)all;
        return (int)(warm + 1);
    }
    return (int)(p - i < m ? p - i : m); /* 1F1B: min(p - i, m) */
}

int cost_in_flight(const spec_layout *l, int pp_rank, int64_t n_micro)
{
    int chunks = cost_in_flight_chunks(l, pp_rank, n_micro);
    int v = l->schedule == SPEC_SCHED_INTERLEAVED && l->v > 1 ? l->v : 1;
    return (chunks + v - 1) / v;
}

int cost_chunk_max_layers(const spec_model *m, const spec_layout *l, int pp_rank)
{
    int v = l->v > 0 ? l->v : 1, most = 0;
    for (int c = 0; c < v; c++) {
        int n = spec_layout_stage_layers(l, m, c * l->pp + pp_rank);
        most = n > most ? n : most;
    }
    return most;
}

/* The layout as the software a profile describes runs it: with fused
 * attention (the profile's flash_attention; FlashAttention, cuDNN) its
 * memory and activations are those of attn=flash (shapes.c: one
 * log-sum-exp per row instead of the s x s probabilities, no gradient of
 * them, nothing for selective recomputation to drop). */
int cost_fused_attention(const spec_cluster *c, const cost_profile *p)
{
    return profile_params_of(prof_or_builtin(p, c))->flash_attention > 0;
}

static spec_layout profile_layout(const spec_layout *l, const cost_profile *p, const spec_cluster *c)
{
    spec_layout out = *l;
    out.flash = out.flash || cost_fused_attention(c, p);
    return out;
}

static void memory_rank(const spec_model *m, const spec_layout *l, int64_t global_batch, int pp_rank, int executor,
                        cost_mem *out);

void cost_memory_rank_profile(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                              int64_t global_batch, int pp_rank, const cost_profile *p, cost_mem *out)
{
    spec_layout lp = profile_layout(l, p, c);
    memory_rank(m, &lp, global_batch, pp_rank, profile_has_kernels(p), out);
}

void cost_memory_rank(const spec_model *m, const spec_layout *l, int64_t global_batch, int pp_rank,
                      cost_mem *out)
{
    memory_rank(m, l, global_batch, pp_rank, 0, out);
}

void cost_memory_rank_exec(const spec_model *m, const spec_layout *l, int64_t global_batch, int pp_rank,
                           cost_mem *out)
{
    memory_rank(m, l, global_batch, pp_rank, 1, out);
}

static void memory_rank(const spec_model *m, const spec_layout *l, int64_t global_batch, int pp_rank, int executor,
                        cost_mem *out)
{
    memset(out, 0, sizeof *out);
    shapes_tensor t[64];
    int64_t P = cost_shapes_param_elems(m, l, pp_rank);
    int64_t dp = l->dp;
    out->param_elems = P;
    /* Bytes per weight, gradient, optimizer state and activation by the
     * software's rule (cost_layout_bytes). ZeRO-1 shards optimizer state,
     * ZeRO-2 also grads, ZeRO-3 also weights. */
    cost_bytes eb;
    cost_layout_bytes(l, executor, &eb);
    int64_t shard = (P + dp - 1) / dp;
    int64_t Pw = P; /* ZeRO-3 below: with dp 1 there is nothing to shard */
    int64_t Po = l->zero >= 1 ? shard : P;
    /* ZeRO-2 and -3 as triad's executor runs them (dpgrad.h): each
     * micro-batch's block gradients pass through one block's window into
     * the dp slice; the extras' gradients build up whole
     * (cost_shapes_grad_elems). A ZeRO-2 rank that kept a whole gradient
     * until the last micro-batch would hold ZeRO-1's memory; DeepSpeed's
     * stage 2 likewise reduces after every backward. ZeRO-3's weights: the
     * dp slice, one block's window each block is gathered into before its
     * forward and its backward, and the extras (the embedding, used at
     * both ends of a step) whole (cost_shapes_weight_elems); the slice
     * holds no second copy of the extras' part of it. DeepSpeed's
     * stage 3 and FSDP prefetch the next block under the current one: a
     * second window of weights and of gradients, which triad's blocking
     * executor does not need. */
    int64_t Pg = cost_shapes_grad_elems(m, l, pp_rank) + (l->zero >= 2 && dp > 1 ? shard : 0);
    if (l->zero >= 3 && dp > 1) { /* dp rank 0's slice holds the most of the blocks: the fullest */
        int64_t blocks = cost_shapes_block_param_elems(m, l) * cost_shapes_rank_layers(m, l, pp_rank);
        Pw = cost_shapes_weight_elems(m, l, pp_rank) + (shard < blocks ? shard : blocks);
    }
    /* the bf16 copy mirrors the weight slab: the whole, or ZeRO-3's window and extras */
    out->param_bytes = (int64_t)(eb.weight * (double)Pw + eb.weight16 * (double)cost_shapes_weight_elems(m, l, pp_rank));
    out->grad_bytes = (int64_t)(eb.grad * (double)Pg);
    out->optim_bytes = (int64_t)(eb.optim * (double)Po);

    int64_t n_micro = global_batch > 0 ? spec_layout_n_micro(l, global_batch) : 1;
    out->in_flight = cost_in_flight(l, pp_rank, n_micro);
    /* triad's executor: one slot per chunk-micro-batch in flight, each the
     * largest chunk's blocks plus the extras (model.c); v = 1: the rank's
     * blocks per micro-batch in flight */
    int slots = cost_in_flight_chunks(l, pp_rank, n_micro);
    int n = cost_shapes_layer_acts(m, l, l->recompute, t, 64);
    int64_t per_layer = cost_shapes_sum_bytes(t, n, eb.act);
    n = cost_shapes_extra_acts(m, l, pp_rank, t, 64);
    int64_t extra = cost_shapes_sum_bytes(t, n, eb.act);
    int layers = cost_chunk_max_layers(m, l, pp_rank);
    out->act_bytes = (per_layer * layers + extra) * slots;
    n = cost_shapes_scratch(m, l, pp_rank, t, 64);
    /* ZeRO-1: the slice of the mean gradient the reduce-scatter fills
     * (triad's executor, dpgrad.c; Megatron-LM's distributed optimizer
     * likewise keeps a separate main-gradient buffer). ZeRO-2: where a later
     * micro-batch's part of the slice lands before it is added, the largest
     * block's part of it at most (ZeRO-3 the same). */
    int64_t zero_stage = 0;
    if (l->zero == 1 && dp > 1)
        zero_stage = shard;
    if (l->zero >= 2 && dp > 1 && cost_shapes_rank_layers(m, l, pp_rank) > 0) {
        int64_t block = cost_shapes_block_param_elems(m, l);
        zero_stage = block < shard ? block : shard;
    }
    out->scratch_bytes = cost_shapes_sum_bytes(t, n, eb.act) + eb.act * cost_pipe_buffer_elems(m, l, pp_rank, n_micro) +
                         (int64_t)(eb.grad * (double)zero_stage);
    out->total_bytes = out->param_bytes + out->grad_bytes + out->optim_bytes + out->act_bytes +
                       out->scratch_bytes;
}

double cost_act_korthikanti_bytes(const spec_model *m, int64_t b, int tp, int sp, spec_recompute rc)
{
    /* Korthikanti et al. 2022, Sec 4 (eqs. 1-3) and Table 2. */
    double s = (double)m->seq, h = (double)m->hidden, a = (double)m->heads, t = tp, B = (double)b;
    double att = 5.0 * a * s / h;
    if (rc == SPEC_RECOMPUTE_FULL)
        return 2.0 * s * B * h / (sp ? t : 1.0);
    if (rc == SPEC_RECOMPUTE_SELECTIVE)
        att = 0.0;
    if (sp)
        return s * B * h / t * (34.0 + att);
    if (tp > 1)
        return s * B * h * (10.0 + 24.0 / t + att / t);
    return s * B * h * (34.0 + att);
}

/* ---- communication ---------------------------------------------------------------- */

double cost_busbw_factor(cost_coll op, int n)
{
    if (n <= 1)
        return 0.0;
    switch (op) {
    case COST_ALLREDUCE:
        return 2.0 * (n - 1) / n;
    case COST_ALLGATHER:
    case COST_REDUCESCATTER:
        return (double)(n - 1) / n;
    default:
        return 1.0;
    }
}

double cost_collective_s(cost_coll op, int n, double bytes, int crosses_nodes,
                         const spec_cluster *c, const cost_profile *p)
{
    if (n <= 1 && op != COST_P2P)
        return 0.0;
    p = prof_or_builtin(p, c);
    double measured = profile_coll_time(p, (int)op, n, bytes);
    if (measured >= 0)
        return measured;
    const profile_params *pp = profile_params_of(p);
    double bw = crosses_nodes ? c->inter_gbps * pp->ib_eff : c->intra_gbps * pp->nvlink_eff;
    double lat = (crosses_nodes ? c->inter_lat_us : c->intra_lat_us) * 1e-6;
    bw *= 1e9;
    switch (op) {
    case COST_ALLREDUCE: /* ring: 2(n-1)/n S/B + 2(n-1) alpha */
        return 2.0 * (n - 1) / n * bytes / bw + 2.0 * (n - 1) * lat;
    case COST_ALLGATHER:
    case COST_REDUCESCATTER: /* (n-1)/n S/B + (n-1) alpha */
        return (double)(n - 1) / n * bytes / bw + (n - 1) * lat;
    case COST_BROADCAST:
        return bytes / bw + (n - 1) * lat;
    case COST_P2P:
    default:
        return bytes / bw + lat;
    }
}

/* ---- compute ------------------------------------------------------------------------- */

double cost_gemm_s(int64_t m, int64_t n, int64_t k, const spec_cluster *c, const cost_profile *p,
                   spec_precision prec)
{
    p = prof_or_builtin(p, c);
    double measured = profile_gemm_time(p, prec, (double)m, (double)n, (double)k);
    if (measured >= 0)
        return measured;
    const profile_params *pp = profile_params_of(p);
    double d = pp->gemm_dim_half;
    double eff = pp->gemm_eff_max / (1.0 + d / (double)m + d / (double)n + d / (double)k);
    double peak = c->peak_tflops * 1e12;
    if (prec == SPEC_PREC_FP32 && c->gpu != SPEC_GPU_CPU)
        peak /= 16.0; /* fp32 without tensor cores: A100 19.5 of 312 */
    /* device time only: launches are counted per block (cost_block_times) */
    return 2.0 * (double)m * (double)n * (double)k / (peak * eff);
}

double cost_elementwise_s(double bytes, const spec_cluster *c, const cost_profile *p)
{
    p = prof_or_builtin(p, c);
    const profile_params *pp = profile_params_of(p);
    return bytes / (c->hbm_gbps * 1e9 * pp->hbm_eff);
}

/* ---- per-block times -------------------------------------------------------------------- */

/* Attention core of one micro-batch on one rank: scores and weighted values
 * (two batched GEMMs of b*a/t problems, head size k = h/a) plus the softmax
 * over the (b, a/t, s, s) matrix (scale+mask+softmax fused as in Megatron's
 * kernel: read + write forward; read output and its gradient, write the
 * input gradient backward) and, in Megatron-LM, dropout on the
 * probabilities (read, write the kept values and a 1-byte mask; backward
 * reads mask and gradient and writes the gradient; Korthikanti et al. 2022
 * Sec 4.1 list the mask). Backward: data and weight gradient of each GEMM. */
static double attention_core_s(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                               const cost_profile *p, int backward)
{
    double B = l->mbs, s = (double)m->seq, hd = (double)(m->hidden / m->heads);
    double heads = (double)(m->heads / l->tp);
    double eb = elem_bytes(l->precision);
    const profile_params *pp = profile_params_of(prof_or_builtin(p, c));
    double dropout = pp->dropout;
    if (pp->flash_attention > 0) {
        /* Fused attention (FlashAttention, Dao et al. 2022; the cuDNN /
         * Transformer Engine kernels of Megatron-Core): the s x s matrix
         * never reaches memory, dropout is drawn inside the kernel, and a
         * causal mask skips the blocks above the diagonal, so the two
         * GEMMs do 2 b (a/t) s^2 d of the 4 b (a/t) s^2 d a dense pair
         * would. Backward recomputes the scores: five GEMMs of that size
         * for the forward's two (x 2.5). */
        double flops = 2.0 * B * heads * s * s * hd;
        double t = flops / (c->peak_tflops * 1e12 * pp->attn_eff);
        return backward ? 2.5 * t : t;
    }
    double g1 = cost_gemm_s((int64_t)s, (int64_t)s, (int64_t)hd, c, p, l->precision);
    double g2 = cost_gemm_s((int64_t)s, (int64_t)hd, (int64_t)s, c, p, l->precision);
    double gemm = (g1 + g2) * B * heads;
    double e = B * heads * s * s; /* elements of the score matrix */
    double sm_bytes = (backward ? 3.0 : 2.0) * e * eb + dropout * e * (2.0 * eb + 1.0);
    return (backward ? 2.0 : 1.0) * gemm + cost_elementwise_s(sm_bytes, c, p);
}

/* ---- measured kernels (a profile from `triad profile`) ------------------------------------ */

/* A measured kernel; a missing row is a profile that does not cover the
 * job (another model or micro-batch): fall back to nearest-by-work, and to
 * 0 only when the kernel was never measured at all. */
static double K(const cost_profile *p, spec_precision pr, const char *name, double m, double n, double k)
{
    double t = profile_kernel_time(p, name, pr, m, n, k);
    return t > 0 ? t : 0.0;
}

/* One block in triad's executor call order (executor/model.c block_forward
 * and the backward loop), each kernel at its measured time: GEMMs by their
 * (m, n, k), the rest by their own dimensions. The row-parallel bias add is
 * a broadcast add over b s h, timed as the residual add. */
static void measured_block(const spec_model *m, const spec_cluster *c, const spec_layout *l, spec_recompute rc,
                           const cost_profile *p, cost_block *out)
{
    double N = (double)l->mbs * m->seq, C = m->hidden, t = l->tp;
    double Ns = l->sp ? N / t : N; /* rows outside the tp regions */
    double NH = m->heads / t, HS = (double)m->hidden / m->heads, F = m->ffn / t, C3 = 3 * NH * HS;
    spec_precision pr = l->precision;
#define MMF(oc, ic) cost_gemm_s((int64_t)N, (int64_t)(oc), (int64_t)(ic), c, p, pr)
#define MMB(oc, ic) K(p, pr, "matmul_bwd", N, (oc), (ic))
    double ln_f = K(p, pr, "layernorm_fwd", Ns, C, 1), ln_b = K(p, pr, "layernorm_bwd", Ns, C, 1);
    /* the row-parallel GEMMs' bias and residual, one pass each
     * (bias_residual); profiles before it timed the two adds ("add") */
    double br = K(p, pr, "bias_residual", Ns * C, 1, 1);
    if (br == 0.0)
        br = 2.0 * K(p, pr, "add", Ns * C, 1, 1);
    /* fused attention (attn=flash): its own kernels, and nothing for
     * selective recomputation to redo (the log-sum-exp is kept) */
    const char *af = l->flash ? "attention_flash_fwd" : "attention_fwd";
    const char *ab = l->flash ? "attention_flash_bwd" : "attention_bwd";
    double att_f = K(p, pr, af, l->mbs * NH, m->seq, HS);
    double att_b = K(p, pr, ab, l->mbs * NH, m->seq, HS);
    /* the MLP's first GEMM with its GELU, and the second's backward through
     * the GELU: one op each (matmul_gelu_*; a GPU fuses them into the
     * GEMM); profiles before them timed the parts */
    double mlp_f = K(p, pr, "matmul_gelu_fwd", N, F, C), mlp_b = K(p, pr, "matmul_gelu_bwd", N, C, F);
    if (mlp_f == 0.0)
        mlp_f = MMF(F, C) + K(p, pr, "gelu_fwd", N * F, 1, 1);
    if (mlp_b == 0.0)
        mlp_b = MMB(C, F) + K(p, pr, "gelu_bwd", N * F, 1, 1);
    out->fwd_s = 2 * ln_f + MMF(C3, C) + att_f + MMF(C, NH * HS) + 2 * br + mlp_f + MMF(C, F);
    out->bwd_s = mlp_b + MMB(F, C) + 2 * ln_b + MMB(C, NH * HS) + att_b + MMB(C3, C);
#undef MMF
#undef MMB
    out->recompute_s = 0.0;
    if (rc == SPEC_RECOMPUTE_FULL)
        out->recompute_s = out->fwd_s;
    else if (rc == SPEC_RECOMPUTE_SELECTIVE && !l->flash)
        out->recompute_s = att_f;
}

void cost_block_times(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                      spec_recompute rc, const cost_profile *p, cost_block *out)
{
    memset(out, 0, sizeof *out);
    const profile_params *pp = profile_params_of(prof_or_builtin(p, c));
    int64_t B = l->mbs, s = m->seq, h = m->hidden, t = l->tp, f = m->ffn;
    int64_t bs = B * s;
    spec_precision pr = l->precision;
    cost_bytes cb;
    cost_profile_bytes(l, p, &cb);
    double eb = cb.act;
    /* GEMMs, forward: qkv (column-parallel), attention projection (row-),
     * fc (column-), fc projection (row-). Backward: data + weight gradient,
     * two GEMMs of the same size each. */
    double g = cost_gemm_s(bs, 3 * h / t, h, c, p, pr) + cost_gemm_s(bs, h, h / t, c, p, pr) +
               cost_gemm_s(bs, f / t, h, c, p, pr) + cost_gemm_s(bs, h, f / t, c, p, pr);
    double core_f = attention_core_s(m, c, l, p, 0), core_b = attention_core_s(m, c, l, p, 1);
    /* Element-wise passes, in elements of b s h over the rows this rank
     * holds (s/t with sp) and of b s f/t, each read or write once
     * (a row fits on chip, so a LayerNorm reads its input once):
     *  forward: 2 LayerNorms (read x, write y: 4), 2 fused
     *    bias-dropout-residual adds (read x and residual, write: 6), fused
     *    bias-GELU (read, write: 2 of b s f/t);
     *  backward: 2 LayerNorms (read x and dy, write dx: 6), the residual
     *    gradient summed with each branch's (read 2, write 1: 6), 2 dropouts
     *    (read dy, write dx: 4), bias gradients of the two row-parallel
     *    GEMMs (read dy: 2) and of the column-parallel ones (read dy: b s
     *    f/t + 3 b s h/t), GELU (read x and dy, write dx: 3 of b s f/t).
     * Dropout masks (1 byte, both residual branches) are written forward and
     * read backward. */
    double ss = (double)(l->sp ? s / t : s);
    double E = B * ss * h, Ef = (double)bs * (double)(f / t), Eq = (double)bs * (double)(3 * h / t);
    double ew_f = cost_elementwise_s(eb * (10.0 * E + 2.0 * Ef) + pp->dropout * 2.0 * E, c, p);
    double ew_b = cost_elementwise_s(eb * (18.0 * E + 4.0 * Ef + Eq) + pp->dropout * 2.0 * E, c, p);
    /* Kernels are issued asynchronously: a block costs its device time plus
     * a small gap per kernel, unless issuing them takes the host longer. */
    double k = pp->kernels_per_layer;
    double dev_f = g + core_f + ew_f + k * pp->kernel_gap_s;
    double dev_b = 2.0 * g + core_b + ew_b + 2.0 * k * pp->kernel_gap_s;
    out->fwd_s = fmax(dev_f, k * pp->launch_s);
    out->bwd_s = fmax(dev_b, 2.0 * k * pp->launch_s);
    if (rc == SPEC_RECOMPUTE_FULL)
        out->recompute_s = out->fwd_s;
    else if (rc == SPEC_RECOMPUTE_SELECTIVE)
        out->recompute_s = core_f;
    if (profile_has_kernels(p))
        measured_block(m, c, l, rc, p, out);
    /* Tensor parallel (Narayanan et al. 2021 Sec 3.3): two all-reduces of
     * b s h per block forward, two backward; with sp each becomes a
     * reduce-scatter + all-gather of the same volume (Korthikanti et al.
     * 2022 Sec 4.2.2). tp groups stay inside a node when tp <= gpus/node. */
    if (t > 1) {
        int cross = rankmap_tp_crosses_nodes((int)t, c->gpus_per_node);
        double bytes = eb * (double)bs * (double)h;
        double rs = cost_collective_s(COST_REDUCESCATTER, (int)t, bytes, cross, c, p);
        double ag = cost_collective_s(COST_ALLGATHER, (int)t, bytes, cross, c, p);
        double one = l->sp ? rs + ag : cost_collective_s(COST_ALLREDUCE, (int)t, bytes, cross, c, p);
        out->tp_fwd_s = 2.0 * one;
        out->tp_fwd_n = l->sp ? 4 : 2;
        /* Backward, per sub-layer (attention, MLP): the row-parallel GEMM's
         * output gradient is all-gathered with sp (the backward of the
         * forward reduce-scatter; nothing without sp), the column-parallel
         * GEMM's input gradient is all-reduced (sp: reduce-scattered, and
         * its input all-gathered again for the weight gradient). Megatron-LM
         * starts those two asynchronously and computes the data / weight
         * gradient meanwhile: only what a GEMM does not cover is exposed.
         * triad's executor runs them one after another. */
        double exposed[2];
        double col_dgrad[2] = {cost_gemm_s(bs, h, 3 * h / t, c, p, pr), cost_gemm_s(bs, h, f / t, c, p, pr)};
        double col_wgrad[2] = {cost_gemm_s(3 * h / t, h, bs, c, p, pr), cost_gemm_s(f / t, h, bs, c, p, pr)};
        int overlap = pp->tp_bwd_overlap > 0 && !profile_has_kernels(p);
        /* hidden is not free: the collective's kernels hold comm_sm_frac
         * of the SMs, and the GEMM under it runs that much slower */
        double sm = pp->comm_sm_frac;
        for (int i = 0; i < 2; i++) {
            if (!l->sp)
                exposed[i] = overlap ? fmax(0.0, one - col_wgrad[i]) + sm * fmin(one, col_wgrad[i]) : one;
            else if (overlap)
                exposed[i] = ag + fmax(0.0, ag - col_dgrad[i]) + sm * fmin(ag, col_dgrad[i]) +
                             fmax(0.0, rs - col_wgrad[i]) + sm * fmin(rs, col_wgrad[i]);
            else
                exposed[i] = ag + ag + rs;
        }
        out->tp_bwd_s = exposed[0] + exposed[1] + (rc == SPEC_RECOMPUTE_FULL ? 2.0 * one : 0.0);
        out->tp_bwd_n = (l->sp ? 6 : 2) + (rc == SPEC_RECOMPUTE_FULL ? out->tp_fwd_n : 0);
    }
    shapes_tensor ts[32];
    spec_layout lp = profile_layout(l, p, c);
    int n = cost_shapes_layer_acts(m, &lp, rc, ts, 32);
    out->act_bytes = cost_shapes_sum_bytes(ts, n, cb.act);
}

void cost_extra_times(const spec_model *m, const spec_cluster *c, const spec_layout *l, int pp_rank,
                      const cost_profile *p, cost_extra *out)
{
    memset(out, 0, sizeof *out);
    int64_t B = l->mbs, s = m->seq, h = m->hidden, t = l->tp;
    int64_t bs = B * s, Vt = m->vocab / t;
    cost_bytes cb;
    cost_profile_bytes(l, p, &cb);
    double eb = cb.act;
    int cross = rankmap_tp_crosses_nodes((int)t, c->gpus_per_node);
    double act = eb * (double)bs * (double)h;
    int first = pp_rank == 0, last = pp_rank == l->pp - 1;
    spec_precision pr = l->precision;
    if (profile_has_kernels(p)) { /* measured kernels, executor call order (model.c) */
        double N = (double)bs, C = (double)h, V = (double)Vt, Ns = l->sp ? N / t : N;
        if (first) {
            out->fwd_s += K(p, pr, "encoder_fwd", N, C, 1);
            out->bwd_s += K(p, pr, "encoder_bwd", N, C, 1);
        }
        if (last) {
            out->fwd_s += K(p, pr, "layernorm_fwd", Ns, C, 1) + cost_gemm_s(bs, Vt, h, c, p, pr) +
                          K(p, pr, "xent_fwd", N, V, 1);
            out->bwd_s += K(p, pr, "xent_bwd", N, V, 1) + K(p, pr, "matmul_bwd", N, V, C) +
                          K(p, pr, "layernorm_bwd", Ns, C, 1);
        }
    } else {
        if (first) /* embedding lookup + positions: a gather and a write of b s h */
            out->fwd_s += cost_elementwise_s(3.0 * act, c, p), out->bwd_s += cost_elementwise_s(3.0 * act, c, p);
        if (last) {
            double head = cost_gemm_s(bs, Vt, h, c, p, l->precision);
            /* final LayerNorm, logits softmax + loss (read logits twice, write grads) */
            double ew = cost_elementwise_s(4.0 * act + 3.0 * eb * (double)bs * (double)Vt, c, p);
            out->fwd_s += head + ew;
            out->bwd_s += 2.0 * head + ew;
        }
    }
    if (t > 1 && l->sp) { /* sp: reduce-scatter / all-gather at the tp regions' edges */
        double rs = cost_collective_s(COST_REDUCESCATTER, (int)t, act, cross, c, p);
        double ag = cost_collective_s(COST_ALLGATHER, (int)t, act, cross, c, p);
        if (first) /* embedding partial sums scattered; its gradient gathered */
            out->tp_fwd_s += rs, out->tp_bwd_s += ag, out->tp_fwd_n++, out->tp_bwd_n++;
        if (last) { /* final LayerNorm output gathered for the head (and again in backward) */
            out->tp_fwd_s += ag, out->tp_bwd_s += rs + (profile_has_kernels(p) ? ag : 0.0);
            out->tp_fwd_n++, out->tp_bwd_n += profile_has_kernels(p) ? 2 : 1;
        }
    } else if (t > 1 && first) { /* vocabulary-parallel embedding: one all-reduce */
        out->tp_fwd_s += cost_collective_s(COST_ALLREDUCE, (int)t, act, cross, c, p);
        out->tp_fwd_n++;
    }
    if (t > 1) {
        if (last) { /* vocabulary-parallel cross-entropy */
            if (profile_has_kernels(p)) /* triad: row max, then sum-exp and target together */
                out->tp_fwd_s += cost_collective_s(COST_ALLREDUCE, (int)t, 4.0 * (double)bs, cross, c, p) +
                                 cost_collective_s(COST_ALLREDUCE, (int)t, 8.0 * (double)bs, cross, c, p);
            else /* Megatron-LM: max, target logit, sum-exp */
                out->tp_fwd_s += 3.0 * cost_collective_s(COST_ALLREDUCE, (int)t, 4.0 * (double)bs, cross, c, p);
            out->tp_fwd_n += profile_has_kernels(p) ? 2 : 3;
            if (!l->sp) { /* d lnf: summed over the vocabulary shards */
                out->tp_bwd_s += cost_collective_s(COST_ALLREDUCE, (int)t, act, cross, c, p);
                out->tp_bwd_n++;
            }
        }
    }
}

void cost_comm_times(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                     const cost_profile *p, cost_comm *out)
{
    memset(out, 0, sizeof *out);
    /* activations between stages, gradients over dp, weights gathered by
     * ZeRO: each in its own bytes (cost_layout_bytes) */
    cost_bytes cb;
    cost_profile_bytes(l, p, &cb);
    double eb = cb.act;
    int64_t B = l->mbs, s = m->seq, h = m->hidden;
    /* Pipeline p2p: one b s h activation per micro-batch per boundary. With
     * tp > 1 Megatron's scatter/gather sends 1/t of it per rank across nodes
     * and all-gathers inside the node (Narayanan et al. 2021 Sec 4.1). */
    if (l->pp > 1) {
        int cross = rankmap_pp_crosses_nodes(l->tp, l->dp, l->pp, c->gpus_per_node);
        double bytes = eb * (double)(B * s * h);
        if (l->tp > 1 && l->sp) /* the boundary tensor is already sequence-sharded: 1/t per rank */
            out->p2p_s = cost_collective_s(COST_P2P, 2, bytes / l->tp, cross, c, p);
        else if (l->tp > 1 && cross)
            out->p2p_s = cost_collective_s(COST_P2P, 2, bytes / l->tp, 1, c, p) +
                         cost_collective_s(COST_ALLGATHER, l->tp, bytes, 0, c, p);
        else
            out->p2p_s = cost_collective_s(COST_P2P, 2, bytes, cross, c, p);
    }
    /* Data parallel: gradients of the busiest rank (stage 0 or the last). */
    int64_t P = 0;
    int busiest = 0;
    for (int r = 0; r < l->pp; r++) {
        int64_t x = cost_shapes_param_elems(m, l, r);
        if (x > P)
            P = x, busiest = r;
    }
    double gbytes = cb.grad * (double)P;
    out->dp_bucket_bytes = 40e6; /* Megatron / PyTorch DDP default bucket: 40 MB */
    if (l->dp > 1) {
        int cross = rankmap_dp_crosses_nodes(l->tp, l->dp, c->gpus_per_node);
        if (l->zero == 0) {
            out->dp_allreduce_s = cost_collective_s(COST_ALLREDUCE, l->dp, gbytes, cross, c, p);
        } else if (l->zero >= 2) {
            /* each block's gradients reduce-scattered after each of its
             * backwards, the extras' once a step; ZeRO-3 also gathers each
             * block's weights before each forward and each backward and,
             * after the step, only the extras' (it keeps them whole) */
            int64_t block = cost_shapes_block_param_elems(m, l);
            int64_t extras = P - block * cost_shapes_rank_layers(m, l, busiest); /* not in a block */
            out->zero_rs_s = cost_collective_s(COST_REDUCESCATTER, l->dp, cb.grad * (double)extras, cross, c, p);
            out->zero_ag_s = cost_collective_s(COST_ALLGATHER, l->dp, cb.weight * (double)(l->zero == 2 ? P : extras),
                                               cross, c, p);
            double rs = cost_collective_s(COST_REDUCESCATTER, l->dp, cb.grad * (double)block, cross, c, p);
            cost_block blk;
            cost_block_times(m, c, l, l->recompute, p, &blk);
            double bwd = blk.bwd_s + blk.recompute_s + blk.tp_bwd_s;
            /* with dp_overlap (the collectives on their own stream, the next
             * block's prefetched: DeepSpeed, FSDP) only the excess over the
             * block's compute is exposed, and the first gathers of forward
             * and backward (zero3_edge_s). triad's executor (what a profile
             * with kernel rows times) blocks on each, over NCCL too: there
             * dp_overlap says its ZeRO-0 buckets overlap, not these */
            int overlap = profile_params_of(prof_or_builtin(p, c))->dp_overlap > 0 && !profile_has_kernels(p);
            out->zero2_rs_layer_s = rs;
            if (l->zero == 2) {
                out->zero2_bwd_layer_s = overlap ? fmax(0.0, rs - bwd) : rs;
            } else {
                double ag = cost_collective_s(COST_ALLGATHER, l->dp, cb.weight * (double)block, cross, c, p);
                out->zero3_ag_layer_s = ag;
                out->zero3_fwd_layer_s = overlap ? fmax(0.0, ag - (blk.fwd_s + blk.tp_fwd_s)) : ag;
                out->zero3_bwd_layer_s = overlap ? fmax(0.0, ag + rs - bwd) : ag + rs;
                out->zero3_edge_s = overlap ? 2.0 * ag : 0.0;
            }
        } else {
            out->zero_rs_s = cost_collective_s(COST_REDUCESCATTER, l->dp, gbytes, cross, c, p);
            out->zero_ag_s = cost_collective_s(COST_ALLGATHER, l->dp, cb.weight * (double)P, cross, c, p);
        }
    }
    /* Optimizer: memory-bound passes over the (sharded) state, as the
     * mixed-precision optimizers of Megatron-LM and DeepSpeed run them:
     * gradient norm for clipping (read grads), fused Adam (read grads,
     * master, m, v; write master, m, v), copy of the master weights to the
     * 16-bit ones (read 4, write 2), zeroing the grads (write). bf16:
     * 2 + (2 + 12 + 12) + 6 + 2 = 36 bytes per parameter; fp32 (no master
     * copy): 4 + (4 + 12 + 12) + 4 = 36. */
    int64_t Po = l->zero >= 1 ? (P + l->dp - 1) / l->dp : P;
    double per = 36.0;
    out->optimizer_s = cost_elementwise_s(per * (double)Po, c, p);
    if (profile_has_kernels(p)) {
        /* triad's executor (train.c, dpgrad.c): zero the gradients, the
         * data-parallel mean (over the shard with ZeRO-1), the norm over
         * what the rank holds, AdamW; rows a profile lacks count 0 */
        spec_precision pr = l->precision;
        out->optimizer_s = K(p, pr, "zero_grad", (double)P, 1, 1) + K(p, pr, "grad_norm", (double)Po, 1, 1) +
                           K(p, pr, "adamw", (double)Po, 1, 1);
        if (l->dp > 1)
            out->optimizer_s += K(p, pr, "scale", (double)Po, 1, 1);
    }
    /* Tied embedding: first and last stage all-reduce the wte gradient. */
    if (l->pp > 1) {
        int cross = rankmap_pp_crosses_nodes(l->tp, l->dp, l->pp, c->gpus_per_node);
        double wb = cb.grad * (double)(m->vocab / l->tp) * (double)h;
        out->embed_sync_s = cost_collective_s(COST_ALLREDUCE, 2, wb, cross, c, p);
    }
}

/* ---- closed form ------------------------------------------------------------------------- */

spec_cluster cost_cluster_for_layout(const spec_cluster *c, const spec_layout *l)
{
    spec_cluster r = *c;
    int64_t dev = (int64_t)l->dp * l->tp * l->pp;
    int64_t nodes = (dev + c->gpus_per_node - 1) / c->gpus_per_node;
    if (nodes > r.nodes)
        r.nodes = (int)nodes;
    return r;
}

int cost_predict(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                 int64_t global_batch, const cost_profile *p, cost_result *out,
                 char err[SPEC_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    if (spec_layout_check(l, m, global_batch, -1, err))
        return SPEC_ERR;
    if (!cost_profile_has_precision(p, l->precision)) { /* its kernels' times would be another math's */
        snprintf(err, SPEC_ERR_LEN,
                 "layout: precision=%s was not measured by profile '%s' (profile it with triad profile "
                 "--precision %s)", spec_precision_name(l->precision), cost_profile_name(p),
                 spec_precision_name(l->precision));
        return SPEC_ERR;
    }
    int64_t mb = spec_layout_n_micro(l, global_batch);
    int P = l->pp, v = l->schedule == SPEC_SCHED_INTERLEAVED ? l->v : 1;
    out->n_micro = mb;

    cost_comm cm;
    cost_comm_times(m, c, l, p, &cm);

    /* Per-stage times for one micro-batch (all chunks of the rank). */
    cost_block blk;
    cost_block_times(m, c, l, l->recompute, p, &blk);
    double worst = 0, worst_comp = 0, worst_tp = 0, worst_pp = 0, worst_z3 = 0;
    /* With uniform stages the first rank holds the most blocks (the extra
     * ones of an uneven split), the embedding and the most in-flight
     * micro-batches, and the last holds the LM head: every middle rank is
     * dominated by rank 0 in time and memory, so only the two ends matter. */
    int ends_only = l->n_stage_layers == 0 && P > 2;
    for (int r = 0; r < P; r++) {
        if (ends_only && r != 0 && r != P - 1)
            continue;
        int layers = cost_shapes_rank_layers(m, l, r);
        cost_extra ex;
        cost_extra_times(m, c, l, r, p, &ex);
        double comp = layers * (blk.fwd_s + blk.bwd_s + blk.recompute_s) + ex.fwd_s + ex.bwd_s;
        double tp = layers * (blk.tp_fwd_s + blk.tp_bwd_s) + ex.tp_fwd_s + ex.tp_bwd_s;
        double z3 = l->zero == 3 ? layers * (cm.zero3_fwd_layer_s + cm.zero3_bwd_layer_s) + cm.zero3_edge_s : 0;
        z3 += layers * cm.zero2_bwd_layer_s; /* ZeRO-2: in every backward (0 otherwise) */
        /* Blocking sends: a forward send and a backward send per micro-batch
         * per chunk on the critical path (Megatron p2p_communication). */
        double pcomm = P > 1 ? 2.0 * v * cm.p2p_s : 0.0;
        double stage = comp + tp + pcomm + z3;
        if (stage > worst) {
            worst = stage;
            worst_comp = comp;
            worst_tp = tp;
            worst_pp = pcomm;
            worst_z3 = z3;
        }
    }
    /* 1F1B and GPipe: (m + p - 1)(t_f + t_b) (Narayanan et al. 2021 eq. 1
     * + the m ideal); interleaved: bubble (p - 1)/v of a stage time
     * (ibid. Sec 2.2.2). */
    double bubble = (P - 1) * worst / v;
    out->compute_s = mb * worst_comp;
    out->tp_comm_s = mb * worst_tp;
    out->pp_comm_s = mb * worst_pp;
    out->bubble_s = bubble;

    /* Data-parallel traffic overlaps the backward pass of the last
     * micro-batch, bucket by bucket: the first bucket can start only when
     * its layers' gradients are final, so at least one bucket is exposed,
     * and everything beyond the last micro-batch's backward time is exposed
     * too. ZeRO-1/2 reduce-scatter overlaps the same way; its parameter
     * all-gather follows the optimizer and is exposed. Tied embedding sync
     * is exposed. */
    double dp_traffic = l->zero == 0 ? cm.dp_allreduce_s : cm.zero_rs_s;
    double exposed = 0;
    if (dp_traffic > 0) {
        int layers0 = cost_shapes_rank_layers(m, l, 0);
        double window = layers0 * (blk.bwd_s + blk.recompute_s + blk.tp_bwd_s) / v;
        int64_t P0 = cost_shapes_param_elems(m, l, 0);
        cost_bytes cb;
        cost_profile_bytes(l, p, &cb);
        double gbytes = cb.grad * (double)P0;
        double nb = gbytes / cm.dp_bucket_bytes;
        double bucket = nb > 1 ? dp_traffic / nb : dp_traffic;
        exposed = dp_traffic - window;
        if (exposed < bucket)
            exposed = bucket;
        if (!(profile_params_of(prof_or_builtin(p, c))->dp_overlap > 0)) /* reduced when the step waits for it */
            exposed = dp_traffic;
    }
    exposed += cm.zero_ag_s + cm.embed_sync_s + mb * worst_z3; /* ZeRO-2 and 3: per micro-batch, in the stages */
    out->dp_comm_exposed_s = exposed;
    out->optimizer_s = cm.optimizer_s;
    out->step_time_s = out->compute_s + out->tp_comm_s + out->pp_comm_s + out->bubble_s +
                       out->dp_comm_exposed_s + out->optimizer_s;

    int64_t devices = (int64_t)l->dp * l->tp * l->pp;
    out->tokens_per_s = (double)global_batch * (double)m->seq / out->step_time_s;
    double mf = cost_model_flops(m, global_batch), hf = cost_hardware_flops(m, l->recompute, global_batch);
    out->tflops_per_gpu = mf / out->step_time_s / (double)devices / 1e12;
    out->mfu = mf / out->step_time_s / ((double)devices * c->peak_tflops * 1e12);
    out->hfu = hf / out->step_time_s / ((double)devices * c->peak_tflops * 1e12);
    out->bubble_frac = out->bubble_s / out->step_time_s;

    for (int r = 0; r < P; r++) {
        if (ends_only && r != 0 && r != P - 1)
            continue;
        cost_mem mm;
        cost_memory_rank_profile(m, c, l, global_batch, r, p, &mm);
        if (mm.total_bytes > out->mem_peak_bytes) {
            out->mem_peak_bytes = mm.total_bytes;
            out->mem_peak_stage = r;
        }
    }
    out->fits = (double)out->mem_peak_bytes <= c->mem_gb * 1e9;
    snprintf(out->source, sizeof out->source, "closed-form");
    return SPEC_OK;
}
