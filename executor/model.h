/* model.h — the GPT-2 model of one rank: its pipeline stage's blocks (and
 * the embedding and/or LM head when the stage holds them), sharded over tp.
 *
 * Every buffer is carved from slabs whose sizes come from costmodel/shapes.h
 * — the same inventory the cost model sums to predict memory — so the
 * measured peak (exec_mem_peak_bytes) can be checked against the prediction.
 * Initialisation is a pure function of (seed, tensor, layer, global element
 * index), so every layout computes the same numbers.
 *
 * Storage: fp32 throughout on the CPU and for precision=fp32. With
 * precision=bf16 (on a device backend; kernels.h set_storage) every
 * activation, activation gradient, pipeline message and tensor-parallel
 * exchange of them is bf16, and the GEMMs read a bf16 copy of the weights
 * (wbf, refreshed from the fp32 master by exec_model_sync_weights); the
 * master weights, their gradients, the optimizer state and the row
 * statistics stay fp32 (costmodel/cost.h cost_layout_bytes, executor).
 *
 * Tensor parallelism is Megatron's: qkv and fc column-parallel, attproj and
 * fcproj row-parallel with one all-reduce each (bias added once, after it),
 * the input gradients of the column-parallel GEMMs all-reduced in backward,
 * a vocabulary-parallel embedding (one all-reduce) and cross-entropy (max,
 * sum of exponentials and target logit reduced; no rank holds the full
 * logits).
 *
 * Sequence parallelism (sp=1, Korthikanti et al. 2022): outside the tp
 * regions (LayerNorms, bias + residual adds, the residual stream itself)
 * each tp rank holds 1/tp of the token rows — rows [r Ns, (r+1) Ns) of the
 * micro-batch's B*T tokens, contiguous like Megatron's first ([s, b, h])
 * dimension. Each all-reduce becomes an all-gather before the
 * column-parallel GEMM and a reduce-scatter after the row-parallel one;
 * backward gathers the output gradient, re-gathers the LayerNorm output it
 * kept sharded (the weight gradient needs it whole) and reduce-scatters the
 * input gradient. LayerNorm weight gradients are then partial sums over the
 * token shards: exec_model_sp_sync_grads sums them over tp once per step.
 * Pipeline stages exchange the sharded (Ns, C) activations.
 *
 * Interleaved pipelines (Narayanan et al. 2021, Sec 2.2): a rank holds v
 * model chunks, chunk c being virtual stage c * pp + pp_rank, its blocks
 * stored after those of chunk c - 1. An activation slot then holds one
 * chunk-micro-batch: the blocks of the largest chunk (chunk_max) and the
 * extras; the stage functions take the chunk to run.
 */
#ifndef TRIAD_MODEL_H
#define TRIAD_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../common/spec.h"
#include "../costmodel/shapes.h"
#include "comm.h"

#define EXEC_LAYER_PARAMS 12 /* ln1w ln1b qkvw qkvb attprojw attprojb ln2w ln2b fcw fcb fcprojw fcprojb */
#define EXEC_LAYER_ACTS 13   /* inp ln1 ln1_mean ln1_rstd qkv att atty res2 ln2 ln2_mean ln2_rstd fch fch_gelu */
#define EXEC_MAX_LAYERS 256 /* blocks one rank may hold */
#define EXEC_MAX_CHUNKS 64  /* model chunks per rank (the largest v spec.c accepts) */

enum { P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_ATTPROJW, P_ATTPROJB, P_LN2W, P_LN2B, P_FCW, P_FCB, P_FCPROJW, P_FCPROJB };
enum { A_INP, A_LN1, A_LN1_MEAN, A_LN1_RSTD, A_QKV, A_ATT, A_ATTY, A_RES2, A_LN2, A_LN2_MEAN, A_LN2_RSTD, A_FCH,
       A_FCH_GELU };

/* One named parameter tensor of this rank, with its place in the slabs. */
typedef struct {
    shapes_tensor shape;  /* local (sharded) shape */
    int layer;            /* global block index, -1 for extras */
    int64_t offset;       /* element offset in params / grads */
    int decay;            /* AdamW weight decay applies (2-D weights) */
} exec_param;

/* ZeRO-3: fills dst with the weights [offset, offset + count) of the flat
 * vector (the trainer's all-gather over dp) before a block computes. */
typedef struct {
    void (*gather)(void *ctx, float *dst, int64_t offset, int64_t count);
    void *ctx;
} exec_weight_hook;

typedef struct {
    spec_model m;
    spec_layout l;
    int tp_rank, pp_rank;
    int n_layers;              /* this rank's blocks, over all its chunks */
    int v;                     /* model chunks on this rank: the interleaved schedule's v, else 1 */
    int chunk_lo[EXEC_MAX_CHUNKS + 1]; /* chunk c: local blocks [chunk_lo[c], chunk_lo[c + 1]) */
    int chunk_max;             /* the most blocks one chunk holds: an activation slot holds that many */
    int has_embed, has_head;   /* on chunk 0 of stage 0, and chunk v - 1 of the last stage */
    int B, T, C, NH, HS, F, V; /* local sizes: NH, F, V divided by tp */
    int sp;                    /* sequence parallelism (sp=1 and tp > 1) */
    int Ns;                    /* token rows this rank holds outside the tp regions: B*T, or B*T/tp with sp */

    exec_param *p;             /* every parameter tensor, storage order */
    int n_p;
    int act_bytes;             /* bytes of an activation element: 4, or 2 in bf16 storage */
    comm_dtype act_dt;         /* the same for the comm layer: COMM_F32 or COMM_BF16 */
    uint16_t *wbf;             /* bf16 storage: the weight slab's bf16 copy the GEMMs read (weight_elems, laid
                                  out as params), else NULL */
    float *params;             /* the weight slab (weight_elems): the flat vector, or with ZeRO-3 (zero 3,
                                  dp > 1) one block's window then the extras */
    int64_t weight_elems;
    int zero3;                 /* blocks' weights gathered into the window before each forward and backward */
    exec_weight_hook wgather;  /* zero3: set by the trainer */
    float *grads;              /* the gradient slab (grad_elems): the flat vector like params, or with
                                  ZeRO-2 (zero 2, dp > 1) one block's window then the extras */
    int64_t n_params, grad_elems;
    int grads_flat;            /* grads + p[i].offset is p[i]'s gradient (not with ZeRO-2) */
    float *gext;               /* the extras' gradients (in the slab; == grads + their offset when flat) */
    float *lp[EXEC_MAX_LAYERS][EXEC_LAYER_PARAMS]; /* per local block */
    float *lg[EXEC_MAX_LAYERS][EXEC_LAYER_PARAMS];
    float *wte, *wpe, *lnfw, *lnfb, *dwte, *dwpe, *dlnfw, *dlnfb;

    void *acts;                /* activation slab: n_slots micro-batches of every local block + extras */
    int n_slots;               /* micro-batches in flight (cost_in_flight) */
    int64_t slot_bytes;        /* one slot: every local block's kept activations + extras */
    int slot;                  /* the slot la / lnf_* point into now */
    /* activations in the storage type, except the fp32 statistics A_*_MEAN,
     * A_*_RSTD and, with flash, A_ATT (its lse) */
    void *la[EXEC_MAX_LAYERS][EXEC_LAYER_ACTS]; /* A_ATT: att (B,NH,T,T), or lse (B,NH,T) with flash */
    void *la0[EXEC_MAX_LAYERS][EXEC_LAYER_ACTS]; /* slot 0 (or the shared recompute buffer) */
    unsigned char kept[EXEC_MAX_LAYERS][EXEC_LAYER_ACTS]; /* 1: per slot, 0: recompute buffer */
    void *lnf_in, *lnf;        /* storage type */
    float *lnf_mean, *lnf_rstd;
    void *lnf0[4];
    int logits_slot;           /* whose logits the scratch holds (-1: none) */
    comm_group *tpg;           /* tensor-parallel group (set by the trainer when tp > 1), not owned */
    int recompute_att;         /* att is recomputed in backward (selective, explicit attention) */
    int flash;                 /* fused attention (attn=flash): la[..][A_ATT] holds lse (B,NH,T), not att */
    int recompute_full;        /* only inp kept; the block is recomputed */

    void *scratch;             /* scratch slab (shapes.h cost_shapes_scratch) */
    void *xfer;                /* (B*T, C): sp gather / reduce-scatter buffer */
    void *logits, *dres, *d_ln1, *d_qkv, *d_att, *d_atty, *d_ln2, *d_fch, *d_fch_gelu; /* storage type */
    float *xent_stats;
    void *rc[EXEC_LAYER_ACTS]; /* recompute buffers (NULL where kept) */
    int64_t act_slab_bytes, scratch_bytes;

    const struct kern_ops *ops; /* the backend every buffer above lives in (exec_backend at init) */
    int *d_tokens;              /* device backends: tokens then targets (2 B T), NULL on the host */
    float *h_stats;             /* host copy of the cross-entropy statistics (3 B T) */
    float *ln_sync;             /* sp: the LayerNorm gradients packed for their tp sum (backend memory) */
} exec_model;

/* Allocate and initialise, with n_slots activation slots (the micro-batches
 * the schedule keeps in flight on this stage). Returns 0, or -1 with a
 * message in err. */
int exec_model_init(exec_model *md, const spec_model *m, const spec_layout *l, int tp_rank, int pp_rank,
                    int n_slots, uint64_t seed, char err[SPEC_ERR_LEN]);
void exec_model_free(exec_model *md);

/* Forward of one micro-batch: tokens, targets (B*T each). Returns the mean
 * loss over the micro-batch's B*T positions (last stage). */
float exec_model_forward(exec_model *md, const int *tokens, const int *targets);
/* Called during backward when the gradients of a contiguous range of the
 * gradient slab are final for this micro-batch: after each block (in
 * reverse order), then once for the non-block parameters. The trainer uses
 * it on the last micro-batch of a step to start data-parallel buckets while
 * backward goes on. */
typedef struct {
    void (*ready)(void *ctx, int64_t offset, int64_t count);
    void *ctx;
} exec_grad_hook;

/* Backward of the same micro-batch; parameter gradients accumulate, scaled
 * by grad_scale (1 / micro-batches per step for a mean over the step).
 * hook may be NULL. */
void exec_model_backward(exec_model *md, const int *tokens, const int *targets, float grad_scale,
                         const exec_grad_hook *hook);

void exec_model_zero_grad(exec_model *md);

/* bf16 storage: the GEMMs' bf16 copy of the weights from the fp32 master
 * (the whole slab; ZeRO-3's blocks are converted again as each is
 * gathered). Call after the master changes (initialisation, a checkpoint,
 * the optimizer): train.c does before every step. No-op in fp32. */
void exec_model_sync_weights(exec_model *md);

/* ZeRO-3: write the initial weights [lo, hi) of the flat vector (a dp
 * slice) into dst (backend memory), as exec_model_init would have put
 * them in a whole vector. 0, or -1 on memory. */
int exec_model_init_slice(exec_model *md, uint64_t seed, int64_t lo, int64_t hi, float *dst);

/* With sp: sum the LayerNorm weight gradients (partial over token shards)
 * over the tp group. grads[o] is element o of the flat gradient vector for
 * o in [lo, hi) (a ZeRO slice, or the whole vector). No-op without sp. */
void exec_model_sp_sync_grads(exec_model *md, float *grads, int64_t lo, int64_t hi);

/* The dimension tensor parallelism splits a parameter tensor along (by
 * name): 0 for column-parallel weights and biases (qkv, fc) and the
 * vocabulary rows of wte, 1 for row-parallel weights (attproj, fcproj), -1
 * for tensors replicated on every tp rank. Header-only: the checkpoint
 * manifest parser checks shard shapes with it without the model. */
static inline int exec_param_tp_split_dim(const char *name)
{
    if (!strcmp(name, "attprojw") || !strcmp(name, "fcprojw"))
        return 1;
    if (!strcmp(name, "qkvw") || !strcmp(name, "qkvb") || !strcmp(name, "fcw") || !strcmp(name, "fcb") ||
        !strcmp(name, "wte") || !strcmp(name, "wte_head"))
        return 0;
    return -1;
}
static inline int exec_param_tp_sharded(const char *name) { return exec_param_tp_split_dim(name) >= 0; }

/* The parameter table of pipeline stage pp_rank under layout l (local,
 * tp-sharded shapes; the same on every tp rank): blocks in order (chunk by
 * chunk when interleaved: global block indices jump between chunks), then
 * the extras. *out is malloc'd; returns the count, or -1. */
int exec_param_table(const spec_model *m, const spec_layout *l, int pp_rank, exec_param **out);

/* Global flat index of element i of tp rank r's shard t of tensor `name`
 * (row blocks for column-parallel weights, column blocks for row-parallel
 * ones, vocabulary rows for wte; qkv keeps q, k and v heads of rank r). */
uint64_t exec_param_global_index(const char *name, const shapes_tensor *t, int64_t hidden, int tp, int r, int64_t i);
/* The whole tensor's shape (dims[1] = 1 for vectors) from a tp shard's. */
void exec_param_global_shape(const char *name, const shapes_tensor *t, int tp, int64_t dims[2]);

/* Pipeline stage versions: forward of chunk `chunk` (0 unless the
 * schedule is interleaved) of the micro-batch in activation slot `slot`. `in` (Ns, C) is the received activation (NULL on the first stage,
 * which embeds tokens); `out` receives this stage's output (NULL on the
 * last stage, which returns the loss; the first and last stages are
 * chunk 0 of pp rank 0 and chunk v - 1 of the last pp rank). Backward: `dout` is the received
 * gradient (NULL on the last stage), `din` receives the gradient of `in`
 * (NULL on the first stage). */
float exec_model_stage_forward(exec_model *md, int chunk, int slot, const int *tokens, const int *targets,
                               const void *in, void *out);
void exec_model_stage_backward(exec_model *md, int chunk, int slot, const int *tokens, const int *targets,
                               float grad_scale, const void *dout, void *din, const exec_grad_hook *hook);

/* The kern_ops table (kernels/kernels.h) the executor computes with and
 * allocates from: set once, before any model is built (cmd_train's
 * --device); the host CPU table when never set. Every float buffer of a
 * model, of the optimizer and of the pipeline lives in its memory; the
 * comm groups must be built for it (COMM_MEM_DEVICE unless
 * exec_backend_is_host). */
struct kern_ops;
void exec_set_backend(const struct kern_ops *ops);
const struct kern_ops *exec_backend(void);
int exec_backend_is_host(void); /* the CPU table: buffers are plain host memory */

/* Set the backend by name (device.c): cpu, cuda (the GPU of this rank's
 * local rank, OMPI_COMM_WORLD_LOCAL_RANK, modulo the GPUs visible), emu
 * (the emulated device, with the comm layer's staging hooks), or auto (cuda
 * when the build has CUDA and a GPU answers, else cpu). *units (may be
 * NULL): what the ranks share, CPU cores or GPUs. 0, or -1 with err. */
int exec_use_device(const char *name, long *units, char err[SPEC_ERR_LEN]);

/* The comm layer under the parallel groups (--comm): mpi (host buffers, or
 * device buffers staged through the host), nccl (device buffers; needs the
 * cuda backend and a GPU per rank on every node), or auto (nccl where it
 * can run, else mpi). exec_comm_name_ok checks the name alone (before MPI
 * starts); exec_pick_comm decides after comm_init and is collective: every
 * rank calls it. *nccl = 1 for NCCL. 0, or -1 with err. */
int exec_comm_name_ok(const char *want);
/* Whether the current device has need bytes free (the cuda backend asks the
 * GPU; host backends always have room). 0, or -1 with a line in err. */
int exec_device_room(int64_t need, char err[SPEC_ERR_LEN]);
int exec_pick_comm(const char *want, int *nccl, char err[SPEC_ERR_LEN]);

/* Memory the run has allocated through exec_mem_alloc (in the backend's
 * memory): now and at peak. */
void *exec_mem_alloc(size_t bytes);
void exec_mem_free(void *p, size_t bytes);
int64_t exec_mem_peak_bytes(void);
int64_t exec_mem_now_bytes(void);
/* Count memory allocated elsewhere (e.g. by dpgrad) in the run's total. */
void exec_mem_account(int64_t bytes);

/* Write every parameter (or gradient) tensor as raw little-endian float32
 * files DIR/<prefix><name>[.<layer>].bin plus DIR/<prefix>manifest.txt. */
int exec_model_dump(const exec_model *md, const char *dir, const char *prefix, int grads);

#endif
