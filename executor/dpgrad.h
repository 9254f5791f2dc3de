/* dpgrad.h — data-parallel gradient averaging over the dp group: plain
 * (all-reduce), ZeRO-1, ZeRO-2 and ZeRO-3.
 *
 * The gradients of one rank are cut into segments (e.g. the parameters of
 * one transformer block, or the embedding): segment s is the flat range
 * [seg_off[s], seg_off[s+1]) of the rank's parameter vector, its gradients
 * at seg_ptr[s] (grads + seg_off[s] when the caller keeps one flat vector).
 * Backward finishes segments from the last to the first, so buckets are
 * formed in REVERSE segment order: consecutive segments from the end are
 * grouped until a bucket holds at least bucket_elems elements (PyTorch DDP /
 * Megatron: ~25-40 MB buckets).
 *
 * zero 0: dpgrad_mark_ready(s) after the last micro-batch's backward of
 * segment s; when every segment of a bucket is marked, its all-reduce starts
 * (comm_iallreduce_sum) and overlaps the rest of backward. dpgrad_finish
 * starts any bucket not yet started, waits for all and divides by dp: every
 * dp rank then holds the mean gradient.
 *
 * ZeRO (Rajbhandari et al. 2020): dp rank r owns the contiguous slice
 * [r*shard, (r+1)*shard) of the flat vector (shard = ceil(n_elems / dp); the
 * last slices may be short or empty) and gets its mean gradient in
 * shard_grad; dpgrad_zero_adamw updates only that slice of the parameters
 * with AdamW (m and v exist only for it) and all-gathers the parameters in
 * place (comm_allgather_v_inplace). No padded copy of anything is made: the
 * reductions are comm_reducescatter_v_sum straight from the gradients.
 *   zero 1 (optimizer state partitioned): the buckets as zero 0, each
 *     reduce-scattered (comm_ireducescatter_v_sum) into its part of my
 *     slice as soon as it is final, under the rest of backward, as
 *     Megatron-LM's distributed optimizer does with overlap_grad_reduce;
 *     dpgrad_finish starts the rest, waits and divides my slice by dp.
 *   zero 2 (gradients partitioned too): segments flagged per_micro[s] (the
 *     blocks, which may then share one gradient window) are reduce-scattered
 *     at EVERY dpgrad_mark_ready — after each micro-batch's backward of the
 *     segment — added into shard_grad, and their gradients zeroed for the
 *     next one; the rank never holds more than a window of them. The other
 *     segments (the embedding, written by the first and last stage of a
 *     backward) accumulate over the step and are reduce-scattered at
 *     dpgrad_finish. DeepSpeed's stage 2 reduces after every backward too:
 *     a rank that keeps only its partition cannot wait for the last
 *     micro-batch. The reductions are blocking (no overlap with backward).
 *   zero 3 (weights partitioned too; FSDP, DeepSpeed's stage 3): the
 *     gradients as zero 2; every rank keeps a tail [resident_lo, n_elems)
 *     of the weights whole (the embedding and final LayerNorm, used at both
 *     ends of a step), and of the rest only its slice, in wslice (the part
 *     of [lo, hi) below resident_lo; the tail's part of the slice is the
 *     resident copy). dpgrad_gather fills a block's weights from everyone's
 *     slices before the block computes; dpgrad_zero_adamw updates wslice
 *     and the slice's part of the tail, then gathers the tail.
 *
 * The gradient norm for clipping: dpgrad_grad_sumsq returns the sum of
 * squares of the mean gradient of this rank's (tp, pp) shard — over the
 * whole buffer without ZeRO, over the slices summed across dp with ZeRO.
 * The caller sums it over tp and pp (comm_allreduce_sum on those groups,
 * counting parameters replicated over tp once) and takes the square root.
 */
#ifndef TRIAD_DPGRAD_H
#define TRIAD_DPGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"

typedef struct {
    comm_group *dp;        /* not owned */
    float *grads;          /* the caller's flat gradients (zero 0 and 1), or NULL (zero 2) */
    size_t n_elems;
    int n_seg;
    size_t *seg_off;       /* (n_seg + 1) copied */
    float **seg_ptr;       /* (n_seg) where segment s's gradients live */
    unsigned char *per_micro; /* (n_seg) zero 2: reduced at every mark */
    int n_buckets;
    int *seg_bucket;       /* (n_seg) bucket of each segment */
    size_t *bucket_lo, *bucket_hi; /* element range of each bucket */
    int *bucket_left;      /* segments of the bucket not yet marked */
    comm_req **bucket_req; /* started all-reduces */
    int zero;              /* 0, 1, 2 or 3 */
    size_t shard_elems;    /* ZeRO: ceil(n_elems / dp) */
    float *shard_grad;     /* ZeRO: (shard_elems) mean gradient of my slice */
    float *adam_m, *adam_v;/* ZeRO: (shard_elems) optimizer state of my slice */
    float *wslice;         /* zero 3: (wslice_elems) my slice's weights below resident_lo (fp32 master) */
    size_t wslice_elems;
    size_t resident_lo;    /* zero 3: the flat tail [resident_lo, n_elems) every rank keeps whole */
    float *tmp;            /* zero 2, 3: (tmp_elems) a later micro-batch's part of my slice, before it is added */
    size_t tmp_elems;      /* min(shard_elems, the largest per_micro segment) */
    size_t *counts;        /* ZeRO: (dp) scratch for the uneven collectives */
    unsigned char *seen;   /* zero 2: (n_seg) segment already added into shard_grad this step */
    int n_early;           /* zero 0, 1: buckets started by dpgrad_mark_ready (under backward) since the last finish */
    int last_early;        /* n_early of the step dpgrad_finish last completed */
    int n_reduced;         /* zero 2: segment reductions since the last finish */
    int last_reduced;      /* n_reduced of the step dpgrad_finish last completed (its own included) */
} dpgrad;

/* seg_off: n_seg + 1 increasing offsets, seg_off[0] = 0, seg_off[n_seg] =
 * n_elems. bucket_elems >= 1. zero 0 and 1: grads is the flat vector
 * (seg_ptr may be NULL). zero 2 and 3: seg_ptr[s] for every segment and per_micro
 * (NULL: no segment reduced early; grads may be NULL). Returns 0, or -1 on
 * bad arguments or memory. */
int dpgrad_init(dpgrad *d, comm_group *dp, float *grads, size_t n_elems, const size_t *seg_off, int n_seg,
                size_t bucket_elems, int zero, float *const *seg_ptr, const unsigned char *per_micro);
void dpgrad_free(dpgrad *d);

/* Segment s's gradients are final for this step (zero 0), or for this
 * micro-batch (zero 2, per_micro segments: reduced now, then zeroed). */
void dpgrad_mark_ready(dpgrad *d, int s);
/* Start what is left, wait all, divide by dp (see the header comment).
 * Resets the marks for the next step. */
void dpgrad_finish(dpgrad *d);

/* Sum of squares of the mean gradient this rank's (tp, pp) shard holds,
 * after dpgrad_finish; identical on every dp rank. */
double dpgrad_grad_sumsq(dpgrad *d);
/* Multiply the gradient this rank will use by s (clipping). */
void dpgrad_scale(dpgrad *d, float s);

/* My slice of the flat vector: [*lo, *hi) (ZeRO; empty slices possible). */
void dpgrad_slice(const dpgrad *d, size_t *lo, size_t *hi);

/* ZeRO AdamW step on this rank's slice of params, then the in-place
 * all-gather of params (n_elems). decay (n_elems, 0/1 per element, NULL =
 * all) selects weight decay; step t counts from 1. Same update as
 * kern_cpu_adamw. zero 3: the slice is wslice, and params is the resident
 * tail (flat element resident_lo at params[0]), gathered after the update. */
void dpgrad_zero_adamw(dpgrad *d, float *params, const unsigned char *decay, float lr, float b1, float b2,
                       float eps, float wd, int t);

/* zero 3, after dpgrad_init: the tail [resident_lo, n_elems) is resident;
 * allocates wslice (its initial values are the caller's to write). 0, or
 * -1 on memory. */
int dpgrad_zero3_weights(dpgrad *d, size_t resident_lo);
/* zero 3: dst[x - lo] = weight x of the flat vector for x in [lo, hi),
 * from every dp rank's slice (an all-gather of their parts of the range;
 * collective over dp). A rank's part at or above resident_lo must be in dst
 * already (the resident tail, gathered in place). */
void dpgrad_gather(dpgrad *d, size_t lo, size_t hi, float *dst);

#endif /* TRIAD_DPGRAD_H */
