/* dpgrad.c — bucketed dp gradient averaging and ZeRO-1 (contract in dpgrad.h). */
#include "dpgrad.h"

#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "model.h"

/* every float buffer here lives in the executor's backend (exec_backend) */
#define OPS exec_backend()

int dpgrad_init(dpgrad *d, comm_group *dp, float *grads, size_t n_elems, const size_t *seg_off, int n_seg,
                size_t bucket_elems, int zero1)
{
    memset(d, 0, sizeof *d);
    if (n_seg < 1 || bucket_elems < 1 || seg_off[0] != 0 || seg_off[n_seg] != n_elems)
        return -1;
    for (int s = 0; s < n_seg; s++)
        if (seg_off[s + 1] < seg_off[s])
            return -1;
    d->dp = dp;
    d->grads = grads;
    d->n_elems = n_elems;
    d->n_seg = n_seg;
    d->zero1 = zero1;
    d->seg_off = malloc(sizeof(size_t) * (size_t)(n_seg + 1));
    d->seg_bucket = malloc(sizeof(int) * (size_t)n_seg);
    d->bucket_lo = malloc(sizeof(size_t) * (size_t)n_seg);
    d->bucket_hi = malloc(sizeof(size_t) * (size_t)n_seg);
    d->bucket_left = calloc((size_t)n_seg, sizeof(int));
    d->bucket_req = calloc((size_t)n_seg, sizeof(comm_req *));
    if (!d->seg_off || !d->seg_bucket || !d->bucket_lo || !d->bucket_hi || !d->bucket_left || !d->bucket_req)
        goto fail;
    memcpy(d->seg_off, seg_off, sizeof(size_t) * (size_t)(n_seg + 1));
    /* buckets from the last segment backwards */
    int b = -1;
    size_t filled = bucket_elems;
    for (int s = n_seg - 1; s >= 0; s--) {
        if (filled >= bucket_elems) {
            b++;
            d->bucket_hi[b] = seg_off[s + 1];
            filled = 0;
        }
        d->seg_bucket[s] = b;
        d->bucket_lo[b] = seg_off[s];
        filled += seg_off[s + 1] - seg_off[s];
    }
    d->n_buckets = b + 1;
    for (int s = 0; s < n_seg; s++)
        d->bucket_left[d->seg_bucket[s]]++;
    if (zero1) {
        int n = comm_group_size(dp);
        d->shard_elems = (n_elems + (size_t)n - 1) / (size_t)n;
        int64_t shard_bytes = (int64_t)sizeof(float) * (int64_t)(d->shard_elems ? d->shard_elems : 1);
        d->shard_grad = OPS->alloc(shard_bytes);
        d->adam_m = OPS->alloc(shard_bytes);
        d->adam_v = OPS->alloc(shard_bytes);
        d->padded = OPS->alloc((int64_t)sizeof(float) * (int64_t)(d->shard_elems * (size_t)n + 1));
        if (!d->shard_grad || !d->adam_m || !d->adam_v || !d->padded)
            goto fail;
    }
    return 0;
fail:
    dpgrad_free(d);
    return -1;
}

void dpgrad_free(dpgrad *d)
{
    if (!d)
        return;
    free(d->seg_off);
    free(d->seg_bucket);
    free(d->bucket_lo);
    free(d->bucket_hi);
    free(d->bucket_left);
    free(d->bucket_req);
    float *dev[] = {d->shard_grad, d->adam_m, d->adam_v, d->padded};
    for (int i = 0; i < 4; i++)
        if (dev[i])
            OPS->free(dev[i]);
    memset(d, 0, sizeof *d);
}

static void dpgrad_start(dpgrad *d, int b)
{
    if (d->bucket_req[b] || d->bucket_hi[b] == d->bucket_lo[b])
        return;
    d->bucket_req[b] = comm_iallreduce_sum(d->dp, d->grads + d->bucket_lo[b], d->bucket_hi[b] - d->bucket_lo[b],
                                           COMM_F32);
}

void dpgrad_mark_ready(dpgrad *d, int s)
{
    if (s < 0 || s >= d->n_seg)
        return;
    int b = d->seg_bucket[s];
    if (--d->bucket_left[b] == 0 && !d->zero1 && comm_group_size(d->dp) > 1) {
        dpgrad_start(d, b);
        d->n_early++;
    }
}

void dpgrad_finish(dpgrad *d)
{
    int n = comm_group_size(d->dp);
    float inv = 1.0f / (float)n;
    if (d->zero1) {
        OPS->memset0(d->padded, (int64_t)(sizeof(float) * d->shard_elems * (size_t)n));
        OPS->copy(d->padded, d->grads, (int64_t)(sizeof(float) * d->n_elems));
        comm_reducescatter_sum(d->dp, d->padded, d->shard_grad, d->shard_elems, COMM_F32);
        if (n > 1)
            OPS->scale(d->shard_grad, inv, (int64_t)d->shard_elems);
    } else if (n > 1) {
        for (int b = 0; b < d->n_buckets; b++)
            dpgrad_start(d, b);
        for (int b = 0; b < d->n_buckets; b++) {
            comm_wait(d->bucket_req[b]);
            d->bucket_req[b] = NULL;
        }
        OPS->scale(d->grads, inv, (int64_t)d->n_elems);
    }
    for (int b = 0; b < d->n_buckets; b++)
        d->bucket_left[b] = 0;
    for (int s = 0; s < d->n_seg; s++)
        d->bucket_left[d->seg_bucket[s]]++;
    d->last_early = d->n_early;
    d->n_early = 0;
}

double dpgrad_grad_sumsq(dpgrad *d)
{
    if (!d->zero1)
        return OPS->sum_squares(d->grads, (int64_t)d->n_elems);
    double s = OPS->sum_squares(d->shard_grad, (int64_t)d->shard_elems); /* padding is zero */
    comm_allreduce_sum(d->dp, &s, 1, COMM_F64);
    return s;
}

void dpgrad_scale(dpgrad *d, float s)
{
    if (d->zero1)
        OPS->scale(d->shard_grad, s, (int64_t)d->shard_elems);
    else
        OPS->scale(d->grads, s, (int64_t)d->n_elems);
}

void dpgrad_zero1_adamw(dpgrad *d, float *params, const unsigned char *decay, float lr, float b1, float b2,
                        float eps, float wd, int t)
{
    int n = comm_group_size(d->dp), r = comm_group_rank(d->dp);
    size_t lo = (size_t)r * d->shard_elems, hi = lo + d->shard_elems;
    if (hi > d->n_elems)
        hi = d->n_elems;
    OPS->copy(d->padded, params, (int64_t)(sizeof(float) * d->n_elems));
    float *p = d->padded;
    /* runs of equal decay inside the shard */
    size_t i = lo;
    while (i < hi) {
        int dec = decay ? decay[i] != 0 : 1;
        size_t j = i + 1;
        while (j < hi && (decay ? decay[j] != 0 : 1) == dec)
            j++;
        OPS->adamw(p + i, d->shard_grad + (i - lo), d->adam_m + (i - lo), d->adam_v + (i - lo),
                       (int64_t)(j - i), lr, b1, b2, eps, dec ? wd : 0.0f, t);
        i = j;
    }
    /* all-gather the updated shards: my shard is sent from a copy */
    float *mine = d->shard_grad; /* the gradient shard is no longer needed */
    OPS->copy(mine, p + lo, (int64_t)(sizeof(float) * (hi > lo ? hi - lo : 0)));
    if (hi - lo < d->shard_elems)
        OPS->memset0(mine + (hi > lo ? hi - lo : 0),
                     (int64_t)(sizeof(float) * (d->shard_elems - (hi > lo ? hi - lo : 0))));
    comm_allgather(d->dp, mine, d->padded, d->shard_elems, COMM_F32);
    OPS->copy(params, d->padded, (int64_t)(sizeof(float) * d->n_elems));
    (void)n;
}
