/* dpgrad.h — data-parallel gradient averaging over the dp group, and ZeRO-1.
 *
 * The gradients of one rank are one flat fp32 buffer (n_elems) cut into
 * segments (e.g. the parameters of one transformer block, or the embedding):
 * segment s is [seg_off[s], seg_off[s+1]). Backward finishes segments from
 * the last to the first, so buckets are formed in REVERSE segment order:
 * consecutive segments from the end are grouped until a bucket holds at
 * least bucket_elems elements (PyTorch DDP / Megatron: ~25 MB buckets).
 *
 * Without ZeRO: dpgrad_mark_ready(s) after the last micro-batch's backward of
 * segment s; when every segment of a bucket is marked, its all-reduce starts
 * (comm_iallreduce_sum) and overlaps the rest of backward. dpgrad_finish
 * starts any bucket not yet started, waits for all and divides by dp: every
 * dp rank then holds the mean gradient.
 *
 * ZeRO-1 (Rajbhandari et al. 2020, stage 1: optimizer states partitioned):
 * dpgrad_finish reduce-scatters the gradients (padded to a multiple of dp):
 * dp rank r owns elements [r*shard, (r+1)*shard) and gets their mean;
 * dpgrad_zero1_adamw updates only that shard of the parameters with AdamW
 * (m and v exist only for the shard) and all-gathers the parameters.
 * Marking is a no-op for the reduction in this mode (one reduce-scatter at
 * the end; comm.h has no non-blocking reduce-scatter).
 *
 * The gradient norm for clipping: dpgrad_grad_sumsq returns the sum of
 * squares of the mean gradient of this rank's (tp, pp) shard — over the
 * whole buffer without ZeRO, over the shards summed across dp with ZeRO-1.
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
    float *grads;          /* (n_elems) the caller's flat gradients */
    size_t n_elems;
    int n_seg;
    size_t *seg_off;       /* (n_seg + 1) copied */
    int n_buckets;
    int *seg_bucket;       /* (n_seg) bucket of each segment */
    size_t *bucket_lo, *bucket_hi; /* element range of each bucket */
    int *bucket_left;      /* segments of the bucket not yet marked */
    comm_req **bucket_req; /* started all-reduces */
    int zero1;
    size_t shard_elems;    /* ZeRO-1: ceil(n_elems / dp) */
    float *shard_grad;     /* ZeRO-1: (shard_elems) mean gradient of my shard */
    float *adam_m, *adam_v;/* ZeRO-1: (shard_elems) optimizer state of my shard */
    float *padded;         /* ZeRO-1: (shard_elems * dp) staging for reduce-scatter / all-gather */
    int n_early;           /* buckets started by dpgrad_mark_ready (under backward) since the last finish */
    int last_early;        /* n_early of the step dpgrad_finish last completed */
} dpgrad;

/* seg_off: n_seg + 1 increasing offsets, seg_off[0] = 0, seg_off[n_seg] =
 * n_elems. bucket_elems >= 1. Returns 0, or -1 on bad arguments or memory. */
int dpgrad_init(dpgrad *d, comm_group *dp, float *grads, size_t n_elems, const size_t *seg_off, int n_seg,
                size_t bucket_elems, int zero1);
void dpgrad_free(dpgrad *d);

/* Segment s's gradients are final for this step (no-op when dp == 1). */
void dpgrad_mark_ready(dpgrad *d, int s);
/* Start what is left, wait all, divide by dp (see the header comment).
 * Resets the marks for the next step. */
void dpgrad_finish(dpgrad *d);

/* Sum of squares of the mean gradient this rank's (tp, pp) shard holds,
 * after dpgrad_finish; identical on every dp rank. */
double dpgrad_grad_sumsq(dpgrad *d);
/* Multiply the gradient this rank will use by s (clipping). */
void dpgrad_scale(dpgrad *d, float s);

/* ZeRO-1 AdamW step on this rank's shard, then all-gather of params
 * (n_elems). decay (n_elems, 0/1 per element, NULL = all) selects weight
 * decay; step t counts from 1. Same update as kern_cpu_adamw. */
void dpgrad_zero1_adamw(dpgrad *d, float *params, const unsigned char *decay, float lr, float b1, float b2,
                        float eps, float wd, int t);

#endif /* TRIAD_DPGRAD_H */
