/* shapes.h — every buffer of a training rank, named and shaped: the one
 * source of truth for memory (ARCHITECTURE.md, "One source of truth").
 *
 * The cost model sums these lists to predict memory; the executor carves its
 * slabs from the same lists, so a measured peak can be compared with the
 * prediction byte for byte. Shapes follow the executor's GPT-2 (llm.c-style
 * names), sharded Megatron-style over tp:
 *   qkv / fc are column-parallel (output dim / tp), attproj / fcproj are
 *   row-parallel (input dim / tp), wte is vocabulary-parallel (V / tp).
 * With sequence parallelism (sp=1) the tensors outside the tensor-parallel
 * regions (layer input, LayerNorm outputs and statistics, residuals) hold
 * s / tp positions.
 *
 * Deliberately left out: dropout (the executor has none), and optimizer
 * buffers, which are described in elements by cost_shapes_param_elems and
 * sized by the memory model according to precision and ZeRO stage.
 */
#ifndef TRIAD_SHAPES_H
#define TRIAD_SHAPES_H

#include <stdint.h>
#include "../common/spec.h"

#define SHAPES_MAX_DIMS 4
#define SHAPES_NAME_LEN 32

typedef struct {
    char name[SHAPES_NAME_LEN]; /* e.g. "qkvw", "att", "ln1_mean" */
    int ndim;
    int64_t dims[SHAPES_MAX_DIMS]; /* row-major, outermost first */
    int64_t elems;                 /* product of dims */
} shapes_tensor;

/* Per-layer parameter tensors of one tp shard, in storage order
 * (12 tensors: ln1w ln1b qkvw qkvb attprojw attprojb ln2w ln2b fcw fcb
 * fcprojw fcprojb). Returns the count written (<= max). */
int cost_shapes_layer_params(const spec_model *m, const spec_layout *l, shapes_tensor *out, int max);

/* Parameters of pipeline rank pp_rank that are not in a block:
 * wte (V/tp, C) and wpe (S, C) on the rank holding the first virtual stage;
 * lnfw, lnfb (C) and, when pp > 1, a copy of wte (tied LM head) on the rank
 * holding the last virtual stage. Returns the count written. */
int cost_shapes_extra_params(const spec_model *m, const spec_layout *l, int pp_rank,
                             shapes_tensor *out, int max);

/* Activations one block keeps for its backward pass, for one micro-batch of
 * l->mbs sequences, under the layout's recompute mode:
 *   none:      inp ln1 ln1_mean ln1_rstd qkv att atty res2 ln2 ln2_mean ln2_rstd fch fch_gelu
 *   selective: the same without att (the (b, a/tp, s, s) softmax is recomputed)
 *   full:      inp only (the block is recomputed from its input)
 * Returns the count written. */
int cost_shapes_layer_acts(const spec_model *m, const spec_layout *l, spec_recompute rc,
                           shapes_tensor *out, int max);

/* Activations a pipeline rank keeps per micro-batch outside its blocks:
 * on the last virtual stage, the final block output "lnf_in" (b,s,C), "lnf"
 * (b,s,C) and its statistics. Returns the count written. */
int cost_shapes_extra_acts(const spec_model *m, const spec_layout *l, int pp_rank,
                           shapes_tensor *out, int max);

/* Scratch a rank needs once, whatever the number of micro-batches in flight:
 * the logits shard (b, s, V/tp) and cross-entropy row statistics on the last
 * stage, the residual-stream gradient, the activation gradients of one block
 * (d_ln1 d_qkv d_att d_atty d_ln2 d_fch d_fch_gelu), the recompute buffers of
 * one block (rc_<name> for what the mode dropped), and a pipeline / sequence-
 * parallel transfer buffer when pp > 1 or sp. Returns the count written. */
int cost_shapes_scratch(const spec_model *m, const spec_layout *l, int pp_rank,
                        shapes_tensor *out, int max);

/* Send buffers the pipeline executor keeps per direction on stage `stage`
 * (grad = 0: activations sent forward, 1: gradients sent backward). A buffer
 * is reused once the send from it has completed. 1F1B keeps pp - s for
 * activations: stage s runs forward k only after backward k - (pp - s),
 * whose gradient came from a stage that had already received activation
 * k - (pp - s), so the send a reuse waits on has always been received and
 * the wait never stalls. GPipe and interleaved: 2 and 2, 1F1B's gradients 2.
 * No count can deadlock, not even one per direction: the replay of every
 * stage in tests/unit/test_comm_schedule.c, with sends that complete only
 * when received, finishes for every schedule. Never more than the messages
 * of the step. */
int cost_pipe_send_slots(spec_schedule kind, int pp, int stage, int64_t n_micro, int v, int grad);

/* Elements of the pipeline executor's transfer buffers on stage pp_rank:
 * one receive buffer per direction and the send slots above, (b, s, h)
 * each; 0 when pp = 1. (Megatron-LM's interleaved schedule keeps 4: one
 * receive and one send per direction.) */
int64_t cost_pipe_buffer_elems(const spec_model *m, const spec_layout *l, int pp_rank, int64_t n_micro);

/* Sum of elems over a list. */
int64_t cost_shapes_sum_elems(const shapes_tensor *t, int n);

/* Bytes an activation-side tensor (layer_acts, extra_acts, scratch) takes
 * when activations are stored in act_bytes per element (4: fp32, 2: bf16):
 * its elements at act_bytes, except the row statistics the executor keeps
 * in fp32 whatever the storage (LayerNorm means and rstds, the flash
 * log-sum-exp, the cross-entropy statistics, and their recompute
 * buffers) at 4; rounded up to a multiple of 4 bytes, so that every tensor
 * the executor carves after another starts aligned for fp32 (the executor
 * carves exactly these byte counts). In fp32 storage: 4 x elems. */
int64_t cost_shapes_tensor_bytes(const shapes_tensor *t, int act_bytes);
int64_t cost_shapes_sum_bytes(const shapes_tensor *t, int n, int act_bytes);

/* Parameter elements held by pipeline rank pp_rank (all its virtual stages,
 * one tp shard), blocks plus extras. */
int64_t cost_shapes_param_elems(const spec_model *m, const spec_layout *l, int pp_rank);

/* Parameter elements of one block (one tp shard): the sum of
 * cost_shapes_layer_params. */
int64_t cost_shapes_block_param_elems(const spec_model *m, const spec_layout *l);

/* Gradient elements the executor's slab holds on pipeline rank pp_rank:
 * one per parameter, or with ZeRO-2 and -3 (zero >= 2, dp > 1) one block's window,
 * which every block's backward writes and the reduce-scatter after it
 * empties (executor/dpgrad.h), plus the extras (the embedding, whose
 * gradient builds up over the whole backward and the step). The dp slice
 * of the mean gradient ZeRO keeps besides is the memory model's. */
int64_t cost_shapes_grad_elems(const spec_model *m, const spec_layout *l, int pp_rank);
/* Weight elements the executor's parameter slab holds: one per parameter,
 * or with ZeRO-3 (zero 3, dp > 1) one block's window, into which each
 * block's weights are gathered before its forward and its backward, plus
 * the extras kept whole. The dp slice of the weights (the fp32 master the
 * optimizer updates) is the memory model's. */
int64_t cost_shapes_weight_elems(const spec_model *m, const spec_layout *l, int pp_rank);

/* Blocks held by pipeline rank pp_rank over all its virtual stages. */
int cost_shapes_rank_layers(const spec_model *m, const spec_layout *l, int pp_rank);

#endif /* TRIAD_SHAPES_H */
