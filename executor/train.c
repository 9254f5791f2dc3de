/* train.c — the training loop (see train.h). */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../costmodel/cost.h"
#include "../kernels/kernels.h"
#include "checkpoint.h"
#include "comm.h"
#include "data.h"
#include "dpgrad.h"
#include "pipeline.h"
#include "model.h"

void exec_train_opts_default(exec_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 100;
    o->lr = 3e-4;
    o->warmup = 0;
    o->min_lr_frac = 0.1;
    o->weight_decay = 0.1;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-8;
    o->clip = 1.0;
    o->seed = 1337;
    o->bucket_mb = 40.0; /* Megatron-LM's and the cost model's (cost.c dp_bucket_bytes) */
    o->ckpt_keep = 3;
    o->comm = "auto";
}

double exec_train_lr(const exec_train_opts *o, int step)
{
    if (o->warmup > 0 && step <= o->warmup)
        return o->lr * step / o->warmup;
    int decay = o->steps - o->warmup;
    if (decay <= 0)
        return o->lr;
    double frac = (double)(step - o->warmup) / decay; /* (0, 1] */
    double c = 0.5 * (1.0 + cos(M_PI * frac));
    return o->lr * (o->min_lr_frac + (1.0 - o->min_lr_frac) * c);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The model reports a contiguous range of final gradients per block, in
 * reverse order, then the non-block parameters: segment = block index, the
 * last segment the extras. */
typedef struct {
    dpgrad *dg;
    const exec_model *md;
    int blocks_only; /* pipelines: the extras wait for the tied-embedding sum after the step */
} dp_hook_ctx;

static void dp_ready(void *ctx, int64_t offset, int64_t count)
{
    dp_hook_ctx *c = ctx;
    (void)count;
    int n = c->md->n_layers;
    int seg = n; /* the extras, unless the range starts a block */
    for (int L = 0; L < n; L++)
        if (c->md->p[L * EXEC_LAYER_PARAMS].offset == offset)
            seg = L;
    if (seg == n && c->blocks_only)
        return; /* dpgrad_finish starts it */
    dpgrad_mark_ready(c->dg, seg);
}

/* ZeRO-3: the model asks for a block's weights before it computes */
typedef struct {
    dpgrad *dg;
    int n; /* gathers since the last reset */
} zero3_ctx;

static void zero3_gather(void *ctx, float *dst, int64_t offset, int64_t count)
{
    zero3_ctx *z = ctx;
    dpgrad_gather(z->dg, (size_t)offset, (size_t)(offset + count), dst);
    z->n++;
}

/* ZeRO-3 keeps the blocks' weights in the dp slices: the final dump or a checkpoint
 * (which read and write md->params + offset) sees the stage's whole flat
 * vector, gathered into a temporary buffer for as long as it runs
 * (collective over dp, and a rank short of memory for it stops every
 * rank's; not in the run's memory figures, like the host
 * buffers a checkpoint is written through). zero3_unflatten puts the slab
 * back, after copying the flat vector into the slice and the resident
 * extras when `loaded` (a resumed run). No-ops without ZeRO-3. */
typedef struct {
    float *slab, *full;
} zero3_view;

/* ZeRO-3: where the resident tail (flat element resident_lo on) lives in
 * the weight slab: after the block window */
static float *zero3_tail(const exec_model *md, const dpgrad *dg)
{
    return md->params + (md->weight_elems - (md->n_params - (int64_t)dg->resident_lo));
}

static int zero3_flatten(exec_model *md, dpgrad *dg, zero3_view *z)
{
    memset(z, 0, sizeof *z);
    if (!md->zero3)
        return 0;
    size_t bytes = sizeof(float) * (size_t)md->n_params, tail = (size_t)md->n_params - dg->resident_lo;
    z->full = md->ops->alloc((int64_t)bytes);
    int64_t short_of_room = !z->full; /* every dp rank gathers, or none */
    comm_allreduce_max(dg->dp, &short_of_room, 1, COMM_I64);
    if (short_of_room) {
        if (z->full)
            md->ops->free(z->full);
        z->full = NULL;
        return -1;
    }
    dpgrad_gather(dg, 0, dg->resident_lo, z->full);
    md->ops->copy(z->full + dg->resident_lo, zero3_tail(md, dg), (int64_t)(sizeof(float) * tail));
    z->slab = md->params;
    md->params = z->full;
    return 0;
}

static void zero3_unflatten(exec_model *md, dpgrad *dg, zero3_view *z, int loaded)
{
    if (!z->full)
        return;
    size_t lo, hi, tail = (size_t)md->n_params - dg->resident_lo;
    if (loaded) {
        dpgrad_slice(dg, &lo, &hi);
        if (dg->wslice_elems)
            md->ops->copy(dg->wslice, z->full + lo, (int64_t)(sizeof(float) * dg->wslice_elems));
        md->params = z->slab;
        md->ops->copy(zero3_tail(md, dg), z->full + dg->resident_lo, (int64_t)(sizeof(float) * tail));
    }
    md->params = z->slab;
    md->ops->free(z->full);
    memset(z, 0, sizeof *z);
}

/* The model as a pipeline stage (pipeline.h callbacks). With one chunk per
 * rank, micro-batch mb of the current step lives in activation slot
 * mb % n_slots (1F1B and GPipe free them in forward order). Interleaved,
 * chunk c of micro-batch mb takes a free slot at its forward and gives it
 * back after its backward (backwards do not run in forward order). */
typedef struct {
    exec_model *md;
    const exec_data *data;
    int *tok, *tgt;
    int64_t first_sample; /* this dp rank's first sample of the step */
    int n_micro;
    const exec_grad_hook *hook; /* dp > 1: a chunk's blocks start their buckets in its last backward, or NULL */
    int hook_every;       /* ZeRO-2 and -3: every backward reduces its blocks (not only the chunk's last) */
    int *slot_of;         /* interleaved: (mb * v + chunk) -> its slot while in flight; NULL otherwise */
    int *free_slots, n_free;
} stage_ctx;

static int take_act_slot(stage_ctx *c, int mb, int chunk)
{
    if (!c->slot_of)
        return mb % c->md->n_slots;
    if (c->n_free == 0) { /* cannot happen: n_slots is the schedule's peak (cost_in_flight_chunks) */
        fprintf(stderr, "triad: train: more chunk-micro-batches in flight than the %d slots\n", c->md->n_slots);
        abort();
    }
    int s = c->free_slots[--c->n_free];
    c->slot_of[mb * c->md->v + chunk] = s;
    return s;
}

static int act_slot_of(const stage_ctx *c, int mb, int chunk)
{
    return c->slot_of ? c->slot_of[mb * c->md->v + chunk] : mb % c->md->n_slots;
}

static float stage_fwd(void *vc, int mb, int chunk, const void *in, void *out)
{
    stage_ctx *c = vc;
    exec_model *md = c->md;
    int slot = take_act_slot(c, mb, chunk), BT = md->B * md->T;
    int *tk = c->tok + (int64_t)slot * BT, *tg = c->tgt + (int64_t)slot * BT;
    for (int b = 0; b < md->B; b++)
        exec_data_sample(c->data, c->first_sample + (int64_t)mb * md->B + b, tk + (int64_t)b * md->T,
                         tg + (int64_t)b * md->T);
    return exec_model_stage_forward(md, chunk, slot, tk, tg, in, out);
}

static void stage_bwd(void *vc, int mb, int chunk, const void *dout, void *din, int last)
{
    stage_ctx *c = vc;
    exec_model *md = c->md;
    int slot = act_slot_of(c, mb, chunk), BT = md->B * md->T;
    /* the chunk's last backward of the step: each block's gradients are
     * final as it ends, and its data-parallel bucket may start (Megatron-LM
     * overlaps the dp reduction with the pipeline's cool-down likewise) */
    exec_model_stage_backward(md, chunk, slot, c->tok + (int64_t)slot * BT, c->tgt + (int64_t)slot * BT,
                              1.0f / (float)c->n_micro, dout, din, last || c->hook_every ? c->hook : NULL);
    if (c->slot_of)
        c->free_slots[c->n_free++] = slot;
}

static int write_ints(const char *dir, const char *name, const int *x, int64_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fwrite(x, sizeof(int), (size_t)n, f);
    return fclose(f);
}

int exec_train_run(const exec_train_opts *o)
{
    const spec_model *m = &o->model;
    spec_layout l = o->layout;
    char err[SPEC_ERR_LEN];
    exec_backend()->set_math(KERN_MATH_FP32);
    const char *math = "fp32"; /* what the GEMMs and attention compute in (the metrics header says) */
    if (l.precision != SPEC_PREC_FP32) {
        if (exec_backend_is_host()) {
            log_msg("train: the cpu backend trains in fp32 (layout said %s)", spec_precision_name(l.precision));
            l.precision = SPEC_PREC_FP32;
        } else {
            /* device backends: bf16 activations and GEMM operands with fp32
             * accumulation, fp32 master weights, gradients and optimizer
             * state (model.h; the memory model counts the same,
             * cost_memory_rank_exec) */
            exec_backend()->set_math(KERN_MATH_BF16);
            math = "bf16";
            if (!o->quiet)
                log_msg("train: %s: bf16 activations and GEMM weights, fp32 accumulation; fp32 master weights, "
                        "gradients and optimizer state", exec_backend()->name);
        }
    }
    if (spec_layout_check(&l, m, o->global_batch, -1, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    exec_data *data = NULL;
    if (exec_data_open(o->data, m->seq, m->vocab, &data, err)) {
        log_msg("%s", err);
        return TRIAD_EXIT_INPUT;
    }
    int64_t n_micro = spec_layout_n_micro(&l, o->global_batch); /* per data-parallel rank */
    /* data and pipeline parallelism over MPI: each dp rank takes its slice
     * of the batch, each pp rank its stage's blocks */
    comm_groups g;
    memset(&g, 0, sizeof g);
    int rank = 0, world = 1, multi = l.dp * l.pp * l.tp > 1;
    if (multi) {
        comm_init(NULL, NULL, &rank, &world);
        /* device backends: NCCL with a GPU per rank, else MPI with the
         * buffers staged through the host */
        int nccl = 0;
        if (exec_pick_comm(o->comm, &nccl, err)) {
            if (rank == 0)
                log_msg("train: %s", err);
            exec_data_close(data);
            comm_finalize();
            return TRIAD_EXIT_INPUT;
        }
        if (!o->quiet && rank == 0 && !exec_backend_is_host())
            log_msg("train: collectives on %s", nccl ? "NCCL" : "the MPI comm, staged through host memory");
        comm_groups_init(&g, l.tp, l.dp, l.pp, nccl ? COMM_BACKEND_NCCL : COMM_BACKEND_MPI,
                         exec_backend_is_host() ? COMM_MEM_HOST : COMM_MEM_DEVICE);
    }
    exec_model md;
    /* activation slots: the (chunk-)micro-batches the schedule holds at once */
    int n_slots = cost_in_flight_chunks(&l, g.pp_rank, n_micro);
    /* the memory prediction this run will be compared with; a layout the
     * GPU cannot hold is refused before any of it is allocated */
    cost_mem pred;
    cost_memory_rank_exec(m, &l, o->global_batch, g.pp_rank, &pred);
    {
        int64_t short_of_room = exec_device_room(pred.total_bytes, err) != 0;
        if (short_of_room)
            log_msg("%s", err);
        if (multi) /* every rank stops when one must */
            comm_allreduce_max(g.world, &short_of_room, 1, COMM_I64);
        if (short_of_room) {
            exec_data_close(data);
            if (multi) {
                comm_groups_free(&g);
                comm_finalize();
            }
            return TRIAD_EXIT_INPUT;
        }
    }
    if (exec_model_init(&md, m, &l, g.tp_rank, g.pp_rank, n_slots, o->seed, err)) {
        log_msg("%s", err);
        exec_data_close(data);
        return TRIAD_EXIT_INPUT;
    }
    md.tpg = g.tp;
    int64_t n = md.n_params;
    /* AdamW state: full here, or 1/dp of it inside dpgrad with ZeRO */
    size_t adam_bytes = l.zero >= 1 && l.dp > 1 ? 0 : sizeof(float) * (size_t)n;
    float *am = adam_bytes ? exec_mem_alloc(adam_bytes) : NULL, *av = adam_bytes ? exec_mem_alloc(adam_bytes) : NULL;
    int B = l.mbs, T = (int)m->seq;
    /* tokens and targets of every micro-batch slot (a pipeline stage holds
     * several micro-batches between their forward and backward) */
    int *tok = malloc(sizeof(int) * (size_t)B * T * n_slots), *tgt = malloc(sizeof(int) * (size_t)B * T * n_slots);
    /* the gradient norm's per-tensor segments */
    int64_t *norm_off = malloc(sizeof(int64_t) * (size_t)md.n_p), *norm_len = malloc(sizeof(int64_t) * (size_t)md.n_p);
    double *norm_ss = malloc(sizeof(double) * (size_t)md.n_p);
    char *norm_sharded = malloc((size_t)md.n_p);
    if ((adam_bytes && (!am || !av)) || !tok || !tgt || !norm_off || !norm_len || !norm_ss || !norm_sharded) {
        log_msg("train: cannot allocate the optimizer state (2 x %zu bytes on the %s backend) or the token buffers",
                adam_bytes, exec_backend()->name);
        return TRIAD_EXIT_FAIL;
    }
    pipe_exec pe;
    memset(&pe, 0, sizeof pe);
    int *il_slot_of = NULL, *il_free = NULL; /* interleaved: activation slots by chunk-micro-batch */
    if (l.pp > 1) {
        /* stages exchange (Ns, C): with sp each tp rank sends its token rows */
        size_t msg = (size_t)md.Ns * (size_t)m->hidden;
        if (pipe_init(&pe, g.pp, l.schedule, (int)n_micro, md.v, msg, md.act_dt, err)) {
            log_msg("%s", err);
            return TRIAD_EXIT_INPUT;
        }
        /* its receive buffers and send slots (cost_pipe_buffer_elems counts the same) */
        exec_mem_account((int64_t)(2 + pe.act_slots + pe.grad_slots) * (int64_t)pe.act_bytes);
        if (md.v > 1) {
            il_slot_of = malloc(sizeof(int) * (size_t)(n_micro * md.v));
            il_free = malloc(sizeof(int) * (size_t)n_slots);
            if (!il_slot_of || !il_free) {
                log_msg("train: cannot allocate the slot table of %lld chunk-micro-batches",
                        (long long)(n_micro * md.v));
                return TRIAD_EXIT_FAIL;
            }
        }
    }
    int lead = rank == 0; /* writes metrics and progress */
    dpgrad dg;
    memset(&dg, 0, sizeof dg);
    dp_hook_ctx hctx = {&dg, &md, 0}, pipe_hctx = {&dg, &md, 1};
    exec_grad_hook hook = {dp_ready, &hctx}, pipe_hook = {dp_ready, &pipe_hctx};
    unsigned char *decay_mask = NULL;
    if (l.dp > 1) {
        size_t *seg = malloc(sizeof(size_t) * (size_t)(md.n_layers + 2));
        for (int L = 0; L <= md.n_layers; L++)
            seg[L] = (size_t)md.p[L * EXEC_LAYER_PARAMS].offset;
        seg[md.n_layers + 1] = (size_t)n;
        /* --bucket-mb of fp32 gradients a bucket (40 MB: Megatron-LM's, and the cost model's) */
        size_t bucket = (size_t)(o->bucket_mb * 1e6 / sizeof(float));
        /* ZeRO-2: the blocks' gradients share the model's window and are
         * reduced after every backward; the extras' build up over the step */
        float **seg_ptr = malloc(sizeof(float *) * (size_t)(md.n_layers + 1));
        unsigned char *per_micro = calloc((size_t)(md.n_layers + 1), 1);
        for (int L = 0; L < md.n_layers; L++)
            seg_ptr[L] = md.lg[L][P_LN1W], per_micro[L] = 1;
        seg_ptr[md.n_layers] = md.gext;
        if (dpgrad_init(&dg, g.dp, md.grads_flat ? md.grads : NULL, (size_t)n, seg, md.n_layers + 1,
                        bucket > 0 ? bucket : 1, l.zero, seg_ptr, per_micro)) {
            log_msg("train: cannot set up data-parallel gradient buckets");
            free(seg), free(seg_ptr), free(per_micro);
            return TRIAD_EXIT_FAIL;
        }
        free(seg), free(seg_ptr), free(per_micro);
        if (l.zero >= 1) {
            /* the slice's gradient and optimizer state (ZeRO-2's and -3's
             * landing buffer, ZeRO-3's weights) are memory this run holds */
            size_t resident_lo = (size_t)md.p[md.n_layers * EXEC_LAYER_PARAMS].offset;
            if (md.zero3 && dpgrad_zero3_weights(&dg, resident_lo)) {
                log_msg("train: cannot allocate the ZeRO-3 weight slice");
                return TRIAD_EXIT_FAIL;
            }
            int64_t extra = (int64_t)sizeof(float) * (int64_t)(3 * dg.shard_elems + dg.tmp_elems + dg.wslice_elems);
            exec_mem_account(extra);
            decay_mask = calloc((size_t)n, 1);
            for (int i = 0; i < md.n_p; i++)
                if (md.p[i].decay)
                    memset(decay_mask + md.p[i].offset, 1, (size_t)md.p[i].shape.elems);
        }
        if (md.zero3) {
            /* the rank's slice of the blocks' weights (the model holds the extras whole) */
            size_t lo, hi;
            dpgrad_slice(&dg, &lo, &hi);
            if (exec_model_init_slice(&md, o->seed, (int64_t)lo, (int64_t)(lo + dg.wslice_elems), dg.wslice)) {
                log_msg("train: cannot initialise the ZeRO-3 weight slice");
                return TRIAD_EXIT_FAIL;
            }
        }
    }
    zero3_ctx z3 = {&dg, 0};
    md.wgather = (exec_weight_hook){zero3_gather, &z3};
    zero3_view zv;
    /* measured and predicted peaks of every pipeline stage (pp > 1) */
    int64_t *stage_mem = calloc((size_t)(2 * l.pp), sizeof(int64_t));

    FILE *mf = NULL;
    if (o->metrics_path && lead) {
        /* a resumed run appends to the metrics it continues */
        int append = o->resume && access(o->metrics_path, F_OK) == 0;
        mf = fopen(o->metrics_path, append ? "a" : "w");
        if (!mf) {
            log_msg("train: cannot write metrics '%s'", o->metrics_path);
            exec_model_free(&md);
            exec_data_close(data);
            return TRIAD_EXIT_INPUT;
        }
        if (!append) { /* a resumed run appends rows under the header it continues */
            char sched[32] = "";
            if (l.pp > 1 && l.schedule == SPEC_SCHED_INTERLEAVED)
                snprintf(sched, sizeof sched, " interleaved v%d", l.v);
            else if (l.pp > 1)
                snprintf(sched, sizeof sched, " %s", spec_schedule_name(l.schedule));
            fprintf(mf, "# triad train: model %s (%lld layers, hidden %lld), layout dp%d tp%d pp%d mbs%d%s, "
                        "math %s, global batch %lld, data %s, seed %llu\n",
                    m->name, (long long)m->layers, (long long)m->hidden, l.dp, l.tp, l.pp, l.mbs, sched, math,
                    (long long)o->global_batch, o->data, (unsigned long long)o->seed);
            fprintf(mf, "# predicted mem_peak_bytes (triad's executor, %s storage): %lld\n",
                    spec_precision_name(l.precision), (long long)pred.total_bytes);
            /* for MFU: the model's FLOPs of one step (no recomputation counted), all ranks */
            fprintf(mf, "# model_flops_per_step %.6e (72 B s l h^2 (1 + s/(6h) + V/(12 l h)), B = %lld)\n",
                    cost_model_flops(m, o->global_batch), (long long)o->global_batch);
            fprintf(mf, "step,loss,lr,grad_norm,step_time_s,tokens_per_s,mem_peak_bytes,mem_pred_bytes,comm_s");
            for (int st = 0; l.pp > 1 && st < l.pp; st++)
                fprintf(mf, ",mem_peak_bytes_stage%d,mem_pred_bytes_stage%d", st, st);
            fprintf(mf, "\n");
        }
    }
    if (o->dump_dir) {
        mkdir(o->dump_dir, 0755);
        exec_model_dump(&md, o->dump_dir, "init_", 0); /* one rank (cmd_train): never ZeRO-3's slices */
        char path[4096];
        snprintf(path, sizeof path, "%s/config.txt", o->dump_dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "layers %lld\nhidden %lld\nheads %lld\nffn %lld\nvocab %lld\nseq %lld\nmbs %d\n"
                       "global_batch %lld\nlr %.17g\nwarmup %d\nmin_lr_frac %.17g\nsteps %d\nweight_decay %.17g\n"
                       "beta1 %.17g\nbeta2 %.17g\neps %.17g\nclip %.17g\n",
                    (long long)m->layers, (long long)m->hidden, (long long)m->heads, (long long)m->ffn,
                    (long long)m->vocab, (long long)m->seq, l.mbs, (long long)o->global_batch, o->lr, o->warmup,
                    o->min_lr_frac, o->steps, o->weight_decay, o->beta1, o->beta2, o->eps, o->clip);
            fclose(f);
        }
    }
    /* what this rank puts into (and takes from) a checkpoint: with ZeRO
     * the moments are its dp shard of the flat vector */
    exec_ckpt_ctx ck = {g.world, rank, g.dp_rank, am, av, 0, n, 0, o->global_batch};
    if (l.dp > 1 && l.zero >= 1) {
        size_t lo, hi;
        dpgrad_slice(&dg, &lo, &hi);
        ck.m = dg.adam_m, ck.v = dg.adam_v, ck.moments_sharded = 1;
        ck.lo = (int64_t)lo, ck.hi = (int64_t)hi;
    }
    int first_step = 1;
    if (o->resume) {
        int got = 0;
        int rc = zero3_flatten(&md, &dg, &zv) ? -1 : exec_ckpt_load_latest(o->ckpt_dir, &md, &ck, &got, err);
        if (rc < 0 && !zv.full && md.zero3)
            snprintf(err, SPEC_ERR_LEN, "train: cannot allocate %lld weights to load a checkpoint into",
                     (long long)md.n_params);
        zero3_unflatten(&md, &dg, &zv, rc == 0);
        if (rc < 0)
            log_msg("%s", err);
        /* every rank resumes from the same step, or none does */
        int64_t mine = rc == 0 ? got : -1, agree[3] = {rc < 0, mine, -mine};
        if (multi) {
            comm_allreduce_sum(g.world, agree, 1, COMM_I64);
            comm_allreduce_max(g.world, agree + 1, 2, COMM_I64);
        }
        if (agree[0] == 0 && agree[1] != -agree[2]) { /* max != min */
            log_msg("checkpoint: the ranks found different newest checkpoints in %s", o->ckpt_dir);
            agree[0] = 1;
        }
        if (agree[0]) {
            exec_model_free(&md);
            exec_data_close(data);
            if (multi) {
                comm_groups_free(&g);
                comm_finalize();
            }
            return TRIAD_EXIT_INPUT;
        }
        if (rc == 0) {
            first_step = got + 1;
            if (lead) /* said even when quiet: where a run starts matters */
                fprintf(stderr, "triad: resuming from %s/step_%d\n", o->ckpt_dir, got);
        } else if (lead) {
            fprintf(stderr, "triad: no checkpoint in %s; starting from step 1\n", o->ckpt_dir);
        }
    }
    double t_start = now_s();
    int status = TRIAD_EXIT_OK;
    for (int step = first_step; step <= o->steps; step++) {
        double t0 = now_s(), comm0 = comm_time_s();
        exec_model_zero_grad(&md);
        exec_model_sync_weights(&md); /* bf16 storage: the GEMMs' copy of what the last step (or a checkpoint) set */
        double loss = 0.0;
        if (l.pp > 1) {
            stage_ctx sc = {&md, data, tok, tgt,
                            (int64_t)(step - 1) * o->global_batch + (int64_t)g.dp_rank * n_micro * B,
                            (int)n_micro, l.dp > 1 ? &pipe_hook : NULL, l.dp > 1 && l.zero >= 2, il_slot_of,
                            il_free, 0};
            if (il_slot_of) /* every slot free; slot 0 is taken first */
                for (int k = 0; k < n_slots; k++)
                    il_free[sc.n_free++] = n_slots - 1 - k;
            pipe_stage_fns fns = {&sc, stage_fwd, stage_bwd};
            loss = pipe_run_step(&pe, &fns); /* sum of micro-batch losses, last stage only */
            comm_allreduce_sum(g.pp, &loss, 1, COMM_F64);
            /* the tied embedding: stage 0's wte and the last stage's copy
             * receive the sum of both gradients, so they stay equal */
            if (g.embed)
                comm_allreduce_sum(g.embed, md.dwte, (size_t)md.V * md.C, COMM_F32);
        }
        for (int64_t mb = 0; mb < (l.pp > 1 ? 0 : n_micro); mb++) {
            for (int b = 0; b < B; b++) {
                int64_t sample = (int64_t)(step - 1) * o->global_batch + (int64_t)g.dp_rank * n_micro * B +
                                 mb * B + b;
                exec_data_sample(data, sample, tok + (int64_t)b * T, tgt + (int64_t)b * T);
            }
            if (o->dump_dir && step <= 5) {
                char name[64];
                snprintf(name, sizeof name, "batch_%d_%lld_tokens.bin", step, (long long)mb);
                write_ints(o->dump_dir, name, tok, (int64_t)B * T);
                snprintf(name, sizeof name, "batch_%d_%lld_targets.bin", step, (long long)mb);
                write_ints(o->dump_dir, name, tgt, (int64_t)B * T);
            }
            loss += exec_model_forward(&md, tok, tgt);
            /* the last micro-batch starts the buckets; ZeRO-2 and -3 reduce every one */
            int hooked = l.dp > 1 && (mb == n_micro - 1 || l.zero >= 2);
            exec_model_backward(&md, tok, tgt, 1.0f / (float)n_micro, hooked ? &hook : NULL);
        }
        loss /= (double)n_micro;
        double norm;
        if (l.dp > 1) {
            dpgrad_finish(&dg); /* mean over dp (or my ZeRO slice of it) */
            if (step == first_step && lead && !o->quiet && l.zero <= 1)
                log_msg("train: data-parallel gradients in %d bucket%s (--bucket-mb %g), %d of them %s under "
                        "backward", dg.n_buckets, dg.n_buckets == 1 ? "" : "s", o->bucket_mb, dg.last_early,
                        l.zero ? "reduce-scattered to their ZeRO-1 slices" : "all-reduced");
            if (step == first_step && lead && !o->quiet && l.zero == 2)
                log_msg("train: ZeRO-2: %d reduce-scatters a step (each block after each of its %lld backward%s, "
                        "the embedding once); gradients held: one block's window, the embedding's and a 1/%d slice",
                        dg.last_reduced, (long long)n_micro, n_micro == 1 ? "" : "s", l.dp);
            if (step == first_step && lead && !o->quiet && l.zero == 3)
                log_msg("train: ZeRO-3: %d weight gathers and %d gradient reduce-scatters a step (each block "
                        "before each of its %lld forward%s and backward%s, the embedding's gradient once); held: "
                        "one block's window of weights and one of gradients, the embedding whole, a 1/%d slice "
                        "of the rest",
                        z3.n, dg.last_reduced, (long long)n_micro, n_micro == 1 ? "" : "s", n_micro == 1 ? "" : "s",
                        l.dp);
            z3.n = 0;
            comm_allreduce_sum(g.dp, &loss, 1, COMM_F64);
            loss /= l.dp;
        }
        if (o->inject_nan > 0 && step == o->inject_nan && md.n_layers > 0) {
            /* testing only: one non-finite gradient element where the
             * optimizer will read it — after the data-parallel reduction,
             * which would otherwise overwrite it (or spread it): the last
             * block's fcw, or with ZeRO the first element of dp rank 0's slice */
            const float nan = NAN;
            float *at = !(l.dp > 1 && l.zero >= 1) ? md.grads + md.p[EXEC_LAYER_PARAMS * (md.n_layers - 1) + P_FCW].offset
                        : g.dp_rank == 0 && ck.hi > ck.lo ? dg.shard_grad : NULL;
            if (at)
                exec_backend()->to_device(at, &nan, (int64_t)sizeof nan);
        }
        /* with sp the LayerNorm gradients are partial over the token
         * shards: summed over tp (after the dp mean: the two commute) */
        if (md.sp) {
            if (l.dp > 1 && l.zero >= 1)
                exec_model_sp_sync_grads(&md, dg.shard_grad - ck.lo, ck.lo, ck.hi);
            else
                exec_model_sp_sync_grads(&md, md.grads, 0, n);
        }
        {
            /* every parameter once: tp-sharded tensors summed over the tp
             * group, replicated ones (LayerNorms, row-parallel biases, wpe)
             * counted once, the last stage's tied wte copy left out. With
             * ZeRO each dp rank holds one shard of the mean gradient:
             * each tensor's part of it, summed over dp. */
            int zero_sharded = l.dp > 1 && l.zero >= 1;
            int64_t lo = zero_sharded ? ck.lo : 0, hi = zero_sharded ? ck.hi : n;
            const float *gsrc = zero_sharded ? dg.shard_grad - lo : md.grads;
            double ss_sh = 0, ss_rep = 0;
            int ns = 0;
            for (int i = 0; i < md.n_p; i++) {
                const exec_param *q = &md.p[i];
                const char *nm = q->shape.name;
                if (l.pp > 1 && !strcmp(nm, "wte_head"))
                    continue;
                int64_t a = q->offset > lo ? q->offset : lo;
                int64_t b = q->offset + q->shape.elems < hi ? q->offset + q->shape.elems : hi;
                if (b <= a)
                    continue;
                norm_off[ns] = a, norm_len[ns] = b - a, norm_sharded[ns] = (char)exec_param_tp_sharded(nm);
                ns++;
            }
            /* every tensor's sum at once: one wait for a device backend */
            exec_backend()->sum_squares_many(norm_ss, gsrc, norm_off, norm_len, ns);
            for (int i = 0; i < ns; i++)
                *(norm_sharded[i] ? &ss_sh : &ss_rep) += norm_ss[i];
            if (zero_sharded) {
                double two[2] = {ss_sh, ss_rep};
                comm_allreduce_sum(g.dp, two, 2, COMM_F64);
                ss_sh = two[0], ss_rep = two[1];
            }
            if (l.tp > 1)
                comm_allreduce_sum(g.tp, &ss_sh, 1, COMM_F64);
            double ss = ss_sh + ss_rep;
            if (l.pp > 1)
                comm_allreduce_sum(g.pp, &ss, 1, COMM_F64);
            norm = sqrt(ss);
        }
        if (!isfinite(loss) || !isfinite(norm)) {
            /* name the first tensor of this rank whose gradient is not finite */
            /* name the first tensor of this stage whose gradient is not
             * finite: in what this rank holds (its whole gradient, or its
             * ZeRO slice), the first over the dp ranks */
            char where[160] = "a tensor of another pipeline stage";
            int sliced = l.dp > 1 && l.zero >= 1;
            int64_t lo = sliced ? ck.lo : 0, hi = sliced ? ck.hi : n, first = md.n_p;
            const float *gsrc = sliced ? dg.shard_grad - lo : md.grads;
            for (int i = 0; i < md.n_p && first == md.n_p; i++) {
                const exec_param *q = &md.p[i];
                int64_t a = q->offset > lo ? q->offset : lo;
                int64_t b = q->offset + q->shape.elems < hi ? q->offset + q->shape.elems : hi;
                if (b > a && !isfinite(exec_backend()->sum_squares(gsrc + a, b - a)))
                    first = i;
            }
            if (sliced) { /* every dp rank reaches this step's end: the norm is global */
                int64_t rev = md.n_p - first;
                comm_allreduce_max(g.dp, &rev, 1, COMM_I64);
                first = md.n_p - rev;
            }
            if (first < md.n_p) {
                const exec_param *q = &md.p[first];
                if (q->layer >= 0)
                    snprintf(where, sizeof where, "gradient of %s in block %d", q->shape.name, q->layer);
                else
                    snprintf(where, sizeof where, "gradient of %s", q->shape.name);
            }
            if (g.dp_rank == 0 && g.tp_rank == 0) /* one line per pipeline stage */
                log_msg("train: step %d: loss %g, gradient norm %g is not finite (first: %s); stopping, the last "
                        "checkpoint is left as it was", step, loss, norm, where);
            status = TRIAD_EXIT_FAIL;
            break;
        }
        if (o->dump_dir && step == 1) {
            if (exec_model_dump(&md, o->dump_dir, "grad1_", 1) && !md.grads_flat && lead)
                log_msg("train: ZeRO-%d holds no whole gradient: no grad1_ dump", l.zero);
            char path[4096];
            snprintf(path, sizeof path, "%s/loss1.txt", o->dump_dir);
            FILE *f = fopen(path, "w");
            if (f) {
                fprintf(f, "%.9g\n", loss);
                fclose(f);
            }
        }
        if (o->clip > 0 && norm > o->clip) {
            if (l.dp > 1)
                dpgrad_scale(&dg, (float)(o->clip / norm));
            else
                exec_backend()->scale(md.grads, (float)(o->clip / norm), n);
        }
        double lr = exec_train_lr(o, step);
        if (l.dp > 1 && l.zero >= 1) /* ZeRO-3: the resident extras, after the window */
            dpgrad_zero_adamw(&dg, md.zero3 ? zero3_tail(&md, &dg) : md.params,
                              decay_mask, (float)lr, (float)o->beta1, (float)o->beta2, (float)o->eps,
                              (float)o->weight_decay, step);
        else
        for (int i = 0; i < md.n_p; i++) {
            exec_param *p = &md.p[i];
            exec_backend()->adamw(md.params + p->offset, md.grads + p->offset, am + p->offset, av + p->offset,
                           p->shape.elems, (float)lr, (float)o->beta1, (float)o->beta2, (float)o->eps,
                           p->decay ? (float)o->weight_decay : 0.0f, step);
        }
        if (o->dump_dir && step == 5)
            exec_model_dump(&md, o->dump_dir, "step5_", 0);
        /* collective: every rank writes its shard, rank 0 the manifest */
        if (o->ckpt_dir && o->ckpt_every > 0 && (step % o->ckpt_every == 0 || step == o->steps)) {
            int rc = zero3_flatten(&md, &dg, &zv);
            if (rc)
                snprintf(err, SPEC_ERR_LEN, "train: cannot allocate %lld weights to write a checkpoint from",
                         (long long)md.n_params);
            else
                rc = exec_ckpt_save(o->ckpt_dir, step, &md, &ck, o->ckpt_keep, err);
            zero3_unflatten(&md, &dg, &zv, 0);
            if (rc) {
                log_msg("%s", err);
                status = TRIAD_EXIT_FAIL;
                break;
            }
        }
        exec_backend()->sync(); /* a device backend's last kernels belong to this step */
        double dt = now_s() - t0, comm_s = comm_time_s() - comm0;
        double tps = (double)o->global_batch * T / dt;
        int64_t peak = exec_mem_peak_bytes(), peak_pred = pred.total_bytes;
        if (l.pp > 1) { /* every stage's peaks; the step's figure is the largest */
            int64_t mine[2] = {exec_mem_peak_bytes(), pred.total_bytes};
            comm_allgather(g.pp, mine, stage_mem, 2, COMM_I64);
            for (int st = 0; st < l.pp; st++) {
                peak = stage_mem[2 * st] > peak ? stage_mem[2 * st] : peak;
                peak_pred = stage_mem[2 * st + 1] > peak_pred ? stage_mem[2 * st + 1] : peak_pred;
            }
        }
        if (mf) {
            fprintf(mf, "%d,%.9g,%.9g,%.9g,%.6g,%.6g,%lld,%lld,%.6g", step, loss, lr, norm, dt, tps, (long long)peak,
                    (long long)peak_pred, comm_s);
            for (int st = 0; l.pp > 1 && st < l.pp; st++)
                fprintf(mf, ",%lld,%lld", (long long)stage_mem[2 * st], (long long)stage_mem[2 * st + 1]);
            fprintf(mf, "\n");
            fflush(mf);
        }
        if (o->exit_after > 0 && step == o->exit_after) {
            if (mf)
                fclose(mf);
            /* every rank past this step's row before any exits: the first
             * rank gone takes the job down with it, the metrics writer too */
            comm_barrier(g.world);
            _exit(0); /* as if the job were killed here: no cleanup, no final checkpoint */
        }
        if (lead && !o->quiet && (step == 1 || step == o->steps || step % 10 == 0)) {
            double eta = (now_s() - t_start) / step * (o->steps - step);
            fprintf(stderr, "step %5d/%d  loss %.4f  lr %.2e  norm %.3f  %.0f tok/s  ETA %.0f s\n", step,
                    o->steps, loss, lr, norm, tps, eta);
        }
    }
    /* one rank of every pipeline stage writes its part of the final weights */
    if (o->final_dir && status == TRIAD_EXIT_OK) {
        int rc = zero3_flatten(&md, &dg, &zv); /* every dp rank gathers */
        if (!rc && g.dp_rank == 0)
            rc = exec_model_dump(&md, o->final_dir, "final_", 0);
        zero3_unflatten(&md, &dg, &zv, 0);
        if (rc) {
            log_msg("train: cannot write the final weights into '%s'", o->final_dir);
            status = TRIAD_EXIT_FAIL;
        }
    }
    if (lead && !o->quiet)
        fprintf(stderr, "triad: memory peak %.3f MB measured, %.3f MB predicted (%+.2f%%)\n",
                exec_mem_peak_bytes() / 1e6, pred.total_bytes / 1e6,
                100.0 * (double)(exec_mem_peak_bytes() - pred.total_bytes) / (double)pred.total_bytes);
    if (mf)
        fclose(mf);
    free(tok);
    free(tgt);
    free(norm_off), free(norm_len), free(norm_ss), free(norm_sharded);
    exec_mem_free(am, adam_bytes);
    exec_mem_free(av, adam_bytes);
    free(decay_mask);
    free(stage_mem);
    exec_model_free(&md);
    exec_data_close(data);
    if (l.pp > 1)
        pipe_free(&pe);
    free(il_slot_of);
    free(il_free);
    if (l.dp > 1)
        dpgrad_free(&dg);
    if (multi) {
        comm_groups_free(&g);
        comm_finalize();
    }
    return status;
}
