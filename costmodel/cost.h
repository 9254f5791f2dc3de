/* cost.h — the analytic cost model: FLOPs, memory, collective and compute
 * times, and the closed-form step time of a layout.
 *
 * Pure functions of (model, cluster, layout, global batch, profile). No MPI,
 * no CUDA, no GLPK here: the planner builds on a laptop.
 * Sources of the formulas are cited next to each in cost.c:
 *   Narayanan et al. 2021 (SC21) — FLOPs, 1F1B / interleaved step time;
 *   Korthikanti et al. 2022 — activation memory, sequence parallelism,
 *   selective recomputation; Rajbhandari et al. 2020 — ZeRO memory;
 *   nccl-tests PERFORMANCE.md — ring collectives, algbw / busbw.
 */
#ifndef TRIAD_COST_H
#define TRIAD_COST_H

#include <stdint.h>
#include "../common/spec.h"
#include "profile.h"

/* ---- FLOPs ----------------------------------------------------------- */

/* Forward FLOPs of one transformer block for b sequences of length s:
 * 24 b s h^2 + 4 b s^2 h (Narayanan et al. 2021, eq. 2 derivation; with
 * ffn != 4h the MLP term is 4 b s h ffn instead of 16 b s h^2). */
double cost_layer_fwd_flops(const spec_model *m, int64_t b);
/* Forward FLOPs of the LM head: 2 b s h V. */
double cost_head_fwd_flops(const spec_model *m, int64_t b);
/* Model FLOPs of one iteration of batch B (no recompute):
 * 72 B s l h^2 (1 + s/(6h) + V/(12 l h)) for ffn = 4h. */
double cost_model_flops(const spec_model *m, int64_t global_batch);
/* Hardware FLOPs: model FLOPs plus the recomputed forward work. Full
 * recompute gives Megatron's 96 B s l h^2 (1 + s/(6h) + V/(16 l h)). */
double cost_hardware_flops(const spec_model *m, spec_recompute rc, int64_t global_batch);

/* ---- memory ------------------------------------------------------------ */

typedef struct {
    int64_t param_bytes;   /* working weights (bf16: 2 B, fp32: 4 B), ZeRO-3 sharded */
    int64_t grad_bytes;    /* gradients, ZeRO-2/3 sharded */
    int64_t optim_bytes;   /* fp32 master (bf16 only) + Adam m + v, ZeRO-1+ sharded */
    int64_t act_bytes;     /* activations kept for backward, all in-flight micro-batches */
    int64_t scratch_bytes; /* one-off buffers (shapes.h scratch) */
    int64_t total_bytes;   /* the sum: the predicted peak */
    int64_t param_elems;   /* this rank's parameters before ZeRO sharding */
    int in_flight;         /* micro-batches whose activations are held at peak */
} cost_mem;

/* Micro-batches whose activations pipeline rank i holds at its peak, in
 * units of the rank's whole set of blocks: GPipe m; 1F1B min(pp - i, m);
 * interleaved with v chunks: cost_in_flight_chunks / v, rounded up (the
 * bound is exact for the rank's whole set when v = 1). */
int cost_in_flight(const spec_layout *l, int pp_rank, int64_t n_micro);
/* Chunk-micro-batches (one chunk's blocks of one micro-batch) rank i holds
 * at its peak, as the schedule runs (executor/schedule.c, Megatron-LM):
 * interleaved min(m v, (pp - i - 1) * 2 + (v - 1) * pp + 1), or m v when
 * m == pp (every forward runs first); the same as cost_in_flight when v = 1. */
int cost_in_flight_chunks(const spec_layout *l, int pp_rank, int64_t n_micro);
/* Blocks of rank pp_rank's largest chunk (all its blocks when v = 1). */
int cost_chunk_max_layers(const spec_model *m, const spec_layout *l, int pp_rank);

/* Bytes per element of what a rank holds and moves, by precision and by
 * the software that holds it.
 *  fp32 (either software): weights, gradients 4, Adam's moments 8,
 *    activations 4.
 *  bf16, the mixed precision of Megatron-LM and DeepSpeed as the ZeRO
 *    paper counts it (Rajbhandari et al. 2020 Sec 3): bf16 weights and
 *    gradients 2, fp32 master weights and moments 12, activations 2.
 *  bf16 in triad's executor (executor = 1): fp32 weights (the master the
 *    optimizer updates and ZeRO gathers) 4 plus a bf16 copy the GEMMs read
 *    2, fp32 gradients 4 (accumulated and reduced in fp32, as Megatron-LM's
 *    main_grad), moments 8, bf16 activations 2. 18 bytes a parameter, as
 *    Megatron-LM with fp32 gradient accumulation.
 * Row statistics are fp32 whatever the activations (shapes.h
 * cost_shapes_tensor_bytes). */
typedef struct {
    double weight;   /* a weight as updated, gathered and checkpointed */
    double weight16; /* the bf16 copy the GEMMs read beside fp32 weights, else 0 */
    double grad;     /* a gradient as accumulated and reduced over dp */
    double optim;    /* optimizer state per parameter */
    int act;         /* an activation element (and a pipeline or tp message's) */
} cost_bytes;
void cost_layout_bytes(const spec_layout *l, int executor, cost_bytes *out);

/* Memory of pipeline rank pp_rank, summed from shapes.h, as Megatron-LM
 * and DeepSpeed hold it (cost_layout_bytes); in fp32 that is triad's
 * executor's too (which keeps the s x s attention probabilities unless the
 * layout says attn=flash). */
void cost_memory_rank(const spec_model *m, const spec_layout *l, int64_t global_batch, int pp_rank,
                      cost_mem *out);
/* The same as triad's executor holds it, byte for byte, in either
 * precision (its storage: bf16 on a device backend, fp32 on the CPU). */
void cost_memory_rank_exec(const spec_model *m, const spec_layout *l, int64_t global_batch, int pp_rank,
                           cost_mem *out);
/* The same for the software a profile describes: with flash_attention
 * (fused attention) as for attn=flash — no s x s probabilities kept,
 * recomputed or differentiated in memory (the kernel keeps one log-sum-exp
 * per row); under a profile of triad's executor (kernel rows) as
 * cost_memory_rank_exec counts it. */
void cost_memory_rank_profile(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                              int64_t global_batch, int pp_rank, const cost_profile *p, cost_mem *out);

/* Activation bytes per block by the closed forms of Korthikanti et al. 2022
 * (16-bit, with dropout masks): s b h (34 + 5 a s / h) unsharded;
 * s b h (10 + 24/t + 5 a s/(h t)) with tp; s b h/t (34 + 5 a s/h) with sp;
 * 2 s b h with full recompute; selective drops the 5 a s/h term.
 * Used to check the inventory against the paper, not to size buffers. */
double cost_act_korthikanti_bytes(const spec_model *m, int64_t b, int tp, int sp, spec_recompute rc);

/* ---- communication ------------------------------------------------------ */

typedef enum {
    COST_ALLREDUCE = 0,
    COST_ALLGATHER,
    COST_REDUCESCATTER,
    COST_P2P,
    COST_BROADCAST
} cost_coll;

/* Time of one collective over n ranks on a buffer of `bytes` (the full
 * buffer: the all-reduce's input, the all-gather's output), ring algorithm,
 * alpha-beta: all-reduce 2(n-1)/n S/B + 2(n-1) a; all-gather and
 * reduce-scatter (n-1)/n S/B + (n-1) a; p2p S/B + a. B is the per-device
 * bandwidth of the link class (intra- or inter-node) times the profile's
 * achievable fraction, or the profile's measured busbw at that size. */
double cost_collective_s(cost_coll op, int n, double bytes, int crosses_nodes,
                         const spec_cluster *c, const cost_profile *p);

/* nccl-tests bus-bandwidth factor: 2(n-1)/n all-reduce, (n-1)/n gather and
 * scatter, 1 for p2p and broadcast. */
double cost_busbw_factor(cost_coll op, int n);

/* ---- compute ------------------------------------------------------------ */

/* Time of one GEMM (m x k) @ (k x n) on one device, from the profile's
 * measured throughput at that shape (interpolated) or peak x efficiency. */
double cost_gemm_s(int64_t m, int64_t n, int64_t k, const spec_cluster *c, const cost_profile *p,
                   spec_precision prec);
/* Time of a memory-bound element-wise pass over `bytes`. */
double cost_elementwise_s(double bytes, const spec_cluster *c, const cost_profile *p);

/* 1 when the software the profile describes (the cluster's built-in one
 * when p is NULL) runs fused attention: every layout is predicted as
 * attn=flash (the H100 sheet: Megatron-Core with cuDNN / FlashAttention). */
int cost_fused_attention(const spec_cluster *c, const cost_profile *p);

/* Bytes per element as the software the profile describes holds a layout
 * (cost_layout_bytes; triad's executor's under a profile of it). */
void cost_profile_bytes(const spec_layout *l, const cost_profile *p, cost_bytes *out);

/* ---- per-stage costs (for the simulator and the planner) ---------------- */

/* Times of one block for one micro-batch on one rank, seconds. */
typedef struct {
    double fwd_s;       /* forward compute (GEMMs, attention, element-wise) */
    double bwd_s;       /* backward compute, excluding recompute */
    double recompute_s; /* forward work redone in backward for the mode */
    double tp_fwd_s;    /* tp collectives in forward (2 all-reduces, or sp gathers) */
    double tp_bwd_s;    /* tp collectives in backward */
    int tp_fwd_n, tp_bwd_n; /* how many collectives those are (each a wait, sim.c) */
    int64_t act_bytes;  /* activations kept per micro-batch (shapes.h) */
} cost_block;

void cost_block_times(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                      spec_recompute rc, const cost_profile *p, cost_block *out);

/* Non-block work of pipeline rank pp_rank per micro-batch (embedding on the
 * first stage; final LayerNorm, LM head and cross-entropy on the last). */
typedef struct {
    double fwd_s, bwd_s, tp_fwd_s, tp_bwd_s;
    int tp_fwd_n, tp_bwd_n; /* how many collectives tp_fwd_s and tp_bwd_s are */
} cost_extra;

void cost_extra_times(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                      int pp_rank, const cost_profile *p, cost_extra *out);

/* Communication of a layout that is not per block. */
typedef struct {
    double p2p_s;             /* one (b, s, h) activation send between stages */
    double dp_allreduce_s;    /* whole gradient all-reduce of the busiest rank (zero 0) */
    double dp_bucket_bytes;   /* bucket size used for overlap */
    double zero_rs_s;         /* reduce-scatter of gradients (zero 1), of the extras' (zero 2, 3) */
    double zero_ag_s;         /* all-gather of parameters after the step (zero 1, 2), of the extras' (zero 3) */
    double zero3_ag_layer_s;  /* per-block parameter all-gather (zero 3) */
    /* ZeRO-3 (DeepSpeed stage 3, FSDP full sharding; triad's dpgrad.h), per
     * micro-batch: each block's weights are all-gathered before its forward
     * and again before its backward, its gradient reduce-scattered after
     * (zero2_rs_layer_s). With overlapping software (dp_overlap 1) the next
     * block's gather is prefetched under the current block's compute:
     * exposed per block is what compute does not cover, and per stage and
     * micro-batch the first gather of forward and of backward, which
     * nothing precedes (zero3_edge_s). Without, as triad's executor runs
     * it, all of every gather and reduce-scatter (zero3_edge_s 0). */
    double zero3_fwd_layer_s, zero3_bwd_layer_s, zero3_edge_s;
    /* ZeRO-2 (DeepSpeed stage 2; triad's dpgrad.h): every micro-batch's
     * backward reduce-scatters each block's gradient, since a rank that
     * keeps only its slice cannot accumulate the others' until the last
     * micro-batch; the extras' once a step (zero_rs_s). Exposed per block
     * and micro-batch: with overlapping software (profile dp_overlap 1)
     * what the block's backward does not cover, else all of it. */
    double zero2_rs_layer_s, zero2_bwd_layer_s;
    double optimizer_s;       /* AdamW update of this rank's (sharded) state */
    double embed_sync_s;      /* tied-embedding gradient all-reduce first<->last stage */
} cost_comm;

void cost_comm_times(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                     const cost_profile *p, cost_comm *out);

/* ---- closed-form step time ------------------------------------------------ */

typedef struct {
    double step_time_s;
    double tokens_per_s;
    double tflops_per_gpu;  /* model FLOPs / step time / devices, TFLOP/s */
    double mfu;             /* model FLOPs utilisation (no recompute counted) */
    double hfu;             /* hardware FLOPs utilisation (recompute counted) */
    double bubble_frac;     /* bubble time / step time */
    int64_t n_micro;
    int64_t mem_peak_bytes; /* the largest pp rank's predicted peak */
    int mem_peak_stage;     /* which pp rank */
    int fits;               /* mem_peak_bytes <= device memory */
    /* breakdown, seconds, summing to step_time_s */
    double compute_s;       /* forward + backward + recompute on the critical rank */
    double tp_comm_s;       /* tp collectives (not overlapped) */
    double pp_comm_s;       /* exposed pipeline sends */
    double dp_comm_exposed_s; /* data-parallel / ZeRO traffic not hidden by backward */
    double bubble_s;        /* pipeline fill and drain */
    double optimizer_s;     /* optimizer step */
    char source[16];        /* "closed-form" or "simulator" */
} cost_result;

/* Predict one layout. Checks the layout first (spec_layout_check with
 * gpus = -1); returns SPEC_ERR with the message on failure. A layout that
 * does not fit memory is not an error: fits = 0. */
int cost_predict(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                 int64_t global_batch, const cost_profile *p, cost_result *out,
                 char err[SPEC_ERR_LEN]);

/* The cluster a layout needs: a copy of c whose node count covers dp*tp*pp
 * devices (ceil(devices / gpus_per_node)). */
spec_cluster cost_cluster_for_layout(const spec_cluster *c, const spec_layout *l);

#endif /* TRIAD_COST_H */
