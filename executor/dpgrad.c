/* dpgrad.c — bucketed dp gradient averaging, ZeRO-1, -2 and -3 (contract in dpgrad.h). */
#include "dpgrad.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "model.h"

/* every float buffer here lives in the executor's backend (exec_backend) */
#define OPS exec_backend()

int dpgrad_init(dpgrad *d, comm_group *dp, float *grads, size_t n_elems, const size_t *seg_off, int n_seg,
                size_t bucket_elems, int zero, float *const *seg_ptr, const unsigned char *per_micro)
{
    memset(d, 0, sizeof *d);
    if (n_seg < 1 || bucket_elems < 1 || seg_off[0] != 0 || seg_off[n_seg] != n_elems || zero < 0 || zero > 3 ||
        (zero >= 2 ? !seg_ptr : !grads))
        return -1;
    for (int s = 0; s < n_seg; s++)
        if (seg_off[s + 1] < seg_off[s] || (seg_ptr && !seg_ptr[s] && seg_off[s + 1] > seg_off[s]))
            return -1;
    d->dp = dp;
    d->grads = zero >= 2 ? NULL : grads;
    d->n_elems = n_elems;
    d->n_seg = n_seg;
    d->zero = zero;
    d->seg_off = malloc(sizeof(size_t) * (size_t)(n_seg + 1));
    d->seg_ptr = malloc(sizeof(float *) * (size_t)n_seg);
    d->per_micro = calloc((size_t)n_seg, 1);
    d->seen = calloc((size_t)n_seg, 1);
    d->seg_bucket = malloc(sizeof(int) * (size_t)n_seg);
    d->bucket_lo = malloc(sizeof(size_t) * (size_t)n_seg);
    d->bucket_hi = malloc(sizeof(size_t) * (size_t)n_seg);
    d->bucket_left = calloc((size_t)n_seg, sizeof(int));
    d->bucket_req = calloc((size_t)n_seg, sizeof(comm_req *));
    if (!d->seg_off || !d->seg_ptr || !d->per_micro || !d->seen || !d->seg_bucket || !d->bucket_lo ||
        !d->bucket_hi || !d->bucket_left || !d->bucket_req)
        goto fail;
    memcpy(d->seg_off, seg_off, sizeof(size_t) * (size_t)(n_seg + 1));
    for (int s = 0; s < n_seg; s++) {
        d->seg_ptr[s] = seg_ptr ? seg_ptr[s] : grads + seg_off[s];
        d->per_micro[s] = zero >= 2 && per_micro && per_micro[s];
    }
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
    if (zero >= 1) {
        int n = comm_group_size(dp);
        d->shard_elems = (n_elems + (size_t)n - 1) / (size_t)n;
        int64_t shard_bytes = (int64_t)sizeof(float) * (int64_t)(d->shard_elems ? d->shard_elems : 1);
        d->shard_grad = OPS->alloc(shard_bytes);
        d->adam_m = OPS->alloc(shard_bytes);
        d->adam_v = OPS->alloc(shard_bytes);
        d->counts = malloc(sizeof(size_t) * (size_t)n);
        if (!d->shard_grad || !d->adam_m || !d->adam_v || !d->counts)
            goto fail;
        for (int s = 0; s < n_seg; s++)
            if (d->per_micro[s] && seg_off[s + 1] - seg_off[s] > d->tmp_elems)
                d->tmp_elems = seg_off[s + 1] - seg_off[s];
        if (d->tmp_elems > d->shard_elems)
            d->tmp_elems = d->shard_elems;
        if (d->tmp_elems && !(d->tmp = OPS->alloc((int64_t)sizeof(float) * (int64_t)d->tmp_elems)))
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
    free(d->seg_ptr);
    free(d->per_micro);
    free(d->seen);
    free(d->seg_bucket);
    free(d->bucket_lo);
    free(d->bucket_hi);
    free(d->bucket_left);
    free(d->bucket_req);
    free(d->counts);
    float *dev[] = {d->shard_grad, d->adam_m, d->adam_v, d->tmp, d->wslice};
    for (int i = 0; i < 5; i++)
        if (dev[i])
            OPS->free(dev[i]);
    memset(d, 0, sizeof *d);
}

void dpgrad_slice(const dpgrad *d, size_t *lo, size_t *hi)
{
    size_t r = (size_t)comm_group_rank(d->dp);
    *lo = r * d->shard_elems;
    *hi = *lo + d->shard_elems;
    if (*lo > d->n_elems)
        *lo = d->n_elems;
    if (*hi > d->n_elems)
        *hi = d->n_elems;
}

/* counts[q] = how much of the flat range [lo, hi) falls in rank q's slice */
static void slice_counts(dpgrad *d, size_t lo, size_t hi)
{
    int n = comm_group_size(d->dp);
    for (int q = 0; q < n; q++) {
        size_t a = (size_t)q * d->shard_elems, b = a + d->shard_elems;
        a = a > lo ? a : lo;
        b = b < hi ? b : hi;
        d->counts[q] = b > a ? b - a : 0;
    }
}

/* ZeRO: reduce-scatter segment s's gradients (the flat range [lo, hi))
 * into my slice: written the first time this step, added after */
static void reduce_segment(dpgrad *d, int s)
{
    size_t lo = d->seg_off[s], hi = d->seg_off[s + 1], mlo, mhi;
    if (hi == lo)
        return;
    slice_counts(d, lo, hi);
    dpgrad_slice(d, &mlo, &mhi);
    size_t a = mlo > lo ? mlo : lo, mine = d->counts[comm_group_rank(d->dp)];
    float *dst = mine ? d->shard_grad + (a - mlo) : NULL;
    if (!d->seen[s] || !mine) {
        comm_reducescatter_v_sum(d->dp, d->seg_ptr[s], dst, d->counts, COMM_F32);
    } else {
        comm_reducescatter_v_sum(d->dp, d->seg_ptr[s], d->tmp, d->counts, COMM_F32);
        OPS->add_f32(dst, d->tmp, (int64_t)mine);
    }
    d->seen[s] = 1;
    d->n_reduced++;
}

/* bucket b's reduction: zero 0 all-reduces it in place; zero 1
 * reduce-scatters it into its part of my slice (the buckets tile the
 * vector, so their parts tile the slice) */
static void dpgrad_start(dpgrad *d, int b)
{
    size_t lo = d->bucket_lo[b], hi = d->bucket_hi[b];
    if (d->bucket_req[b] || hi == lo)
        return;
    if (d->zero == 0) {
        d->bucket_req[b] = comm_iallreduce_sum(d->dp, d->grads + lo, hi - lo, COMM_F32);
        return;
    }
    size_t mlo, mhi;
    slice_counts(d, lo, hi);
    dpgrad_slice(d, &mlo, &mhi);
    float *dst = d->counts[comm_group_rank(d->dp)] ? d->shard_grad + ((lo > mlo ? lo : mlo) - mlo) : NULL;
    d->bucket_req[b] = comm_ireducescatter_v_sum(d->dp, d->grads + lo, dst, d->counts, COMM_F32);
}

void dpgrad_mark_ready(dpgrad *d, int s)
{
    if (s < 0 || s >= d->n_seg)
        return;
    if (d->zero >= 2) {
        if (d->per_micro[s]) { /* this micro-batch's part, then a clean window for the next */
            reduce_segment(d, s);
            OPS->memset0(d->seg_ptr[s], (int64_t)(sizeof(float) * (d->seg_off[s + 1] - d->seg_off[s])));
        }
        return;
    }
    int b = d->seg_bucket[s];
    if (--d->bucket_left[b] == 0 && comm_group_size(d->dp) > 1) {
        dpgrad_start(d, b);
        d->n_early++;
    }
}

void dpgrad_finish(dpgrad *d)
{
    int n = comm_group_size(d->dp);
    float inv = 1.0f / (float)n;
    if (d->zero >= 2) {
        for (int s = 0; s < d->n_seg; s++) {
            if (!d->per_micro[s]) {
                reduce_segment(d, s);
            } else if (!d->seen[s] && d->seg_off[s + 1] > d->seg_off[s]) {
                /* its window may hold another segment's gradients by now */
                fprintf(stderr, "triad: dpgrad: ZeRO-2 segment %d was never reduced this step\n", s);
                abort();
            }
        }
        memset(d->seen, 0, (size_t)d->n_seg);
    } else if (n > 1 || d->zero == 1) {
        for (int b = 0; b < d->n_buckets; b++)
            dpgrad_start(d, b);
        for (int b = 0; b < d->n_buckets; b++) {
            comm_wait(d->bucket_req[b]);
            d->bucket_req[b] = NULL;
        }
        if (d->zero == 0)
            OPS->scale(d->grads, inv, (int64_t)d->n_elems);
    }
    if (d->zero >= 1 && n > 1)
        OPS->scale(d->shard_grad, inv, (int64_t)d->shard_elems);
    for (int b = 0; b < d->n_buckets; b++)
        d->bucket_left[b] = 0;
    for (int s = 0; s < d->n_seg; s++)
        d->bucket_left[d->seg_bucket[s]]++;
    d->last_early = d->n_early;
    d->n_early = 0;
    d->last_reduced = d->n_reduced;
    d->n_reduced = 0;
}

double dpgrad_grad_sumsq(dpgrad *d)
{
    if (d->zero == 0)
        return OPS->sum_squares(d->grads, (int64_t)d->n_elems);
    size_t lo, hi;
    dpgrad_slice(d, &lo, &hi);
    double s = hi > lo ? OPS->sum_squares(d->shard_grad, (int64_t)(hi - lo)) : 0.0;
    comm_allreduce_sum(d->dp, &s, 1, COMM_F64);
    return s;
}

void dpgrad_scale(dpgrad *d, float s)
{
    if (d->zero >= 1)
        OPS->scale(d->shard_grad, s, (int64_t)d->shard_elems);
    else
        OPS->scale(d->grads, s, (int64_t)d->n_elems);
}

int dpgrad_zero3_weights(dpgrad *d, size_t resident_lo)
{
    size_t lo, hi;
    dpgrad_slice(d, &lo, &hi);
    d->resident_lo = resident_lo;
    hi = hi < resident_lo ? hi : resident_lo;
    d->wslice_elems = hi > lo ? hi - lo : 0;
    if (d->wslice_elems && !(d->wslice = OPS->alloc((int64_t)(sizeof(float) * d->wslice_elems))))
        return -1;
    return 0;
}

void dpgrad_gather(dpgrad *d, size_t lo, size_t hi, float *dst)
{
    if (hi <= lo)
        return;
    size_t mlo, mhi;
    dpgrad_slice(d, &mlo, &mhi);
    slice_counts(d, lo, hi);
    /* my part in place (what of it lies in the resident tail already is),
     * then everyone's */
    size_t a = mlo > lo ? mlo : lo, b = a + d->counts[comm_group_rank(d->dp)];
    b = b < d->resident_lo ? b : d->resident_lo;
    if (b > a)
        OPS->copy(dst + (a - lo), d->wslice + (a - mlo), (int64_t)(sizeof(float) * (b - a)));
    comm_allgather_v_inplace(d->dp, dst, d->counts, COMM_F32);
}

/* AdamW on the part [a, b) of my slice [lo, hi): at points to element
 * max(a, lo) of the flat vector, at[k] to the k-th after it; runs of equal
 * decay updated in place */
static void range_adamw(dpgrad *d, size_t a, size_t b, float *at, const unsigned char *decay, float lr, float b1,
                        float b2, float eps, float wd, int t)
{
    size_t lo, hi;
    dpgrad_slice(d, &lo, &hi);
    a = a > lo ? a : lo;
    hi = b < hi ? b : hi;
    size_t i = a;
    while (i < hi) {
        int dec = decay ? decay[i] != 0 : 1;
        size_t j = i + 1;
        while (j < hi && (decay ? decay[j] != 0 : 1) == dec)
            j++;
        OPS->adamw(at + (i - a), d->shard_grad + (i - lo), d->adam_m + (i - lo), d->adam_v + (i - lo),
                   (int64_t)(j - i), lr, b1, b2, eps, dec ? wd : 0.0f, t);
        i = j;
    }
}

void dpgrad_zero_adamw(dpgrad *d, float *params, const unsigned char *decay, float lr, float b1, float b2,
                       float eps, float wd, int t)
{
    size_t lo, hi;
    dpgrad_slice(d, &lo, &hi);
    if (d->zero == 3) { /* params: the tail [resident_lo, n_elems) the rank keeps whole */
        range_adamw(d, lo, d->resident_lo, d->wslice, decay, lr, b1, b2, eps, wd, t);
        if (hi > d->resident_lo) /* my part of the tail: its master is the resident copy */
            range_adamw(d, d->resident_lo, hi, params + (lo > d->resident_lo ? lo - d->resident_lo : 0), decay, lr,
                        b1, b2, eps, wd, t);
        dpgrad_gather(d, d->resident_lo, d->n_elems, params);
        return;
    }
    range_adamw(d, lo, hi, params + lo, decay, lr, b1, b2, eps, wd, t);
    slice_counts(d, 0, d->n_elems);
    comm_allgather_v_inplace(d->dp, params, d->counts, COMM_F32);
}
