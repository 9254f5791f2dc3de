/* schedule.c — pipeline op orders (see schedule.h for the rules and source). */
#include "schedule.h"

/* peers and tags of one op from its virtual stage s = chunk * p + stage */
static void sched_fill_comm(sched_op *o, int p, int stage, int v)
{
    int s = o->chunk * p + stage, last = p * v - 1;
    int prev = s > 0 ? (s - 1) % p : -1, next = s < last ? (s + 1) % p : -1;
    if (o->dir == SCHED_FWD) {
        o->recv_peer = prev;
        o->send_peer = next;
    } else {
        o->recv_peer = next;
        o->send_peer = prev;
    }
    /* the chunk of the peer differs at the wrap-around; the tag names the
       chunk of the receiver for FWD sends (next virtual stage) and of the
       receiver for BWD sends (previous virtual stage) */
    int chunk_in = o->dir == SCHED_FWD ? (s > 0 ? (s - 1) / p : 0) : (s < last ? (s + 1) / p : 0);
    int chunk_out = o->dir == SCHED_FWD ? (s < last ? (s + 1) / p : 0) : (s > 0 ? (s - 1) / p : 0);
    /* a message is tagged by the sender's (dir, mb, chunk) */
    o->recv_tag = o->recv_peer >= 0 ? sched_tag(o->dir, o->mb, chunk_in, v) : -1;
    o->send_tag = o->send_peer >= 0 ? sched_tag(o->dir, o->mb, o->chunk, v) : -1;
    (void)chunk_out;
}

static sched_op sched_mk(sched_dir dir, int mb, int chunk, int p, int stage, int v)
{
    sched_op o = {dir, mb, chunk, -1, -1, -1, -1};
    sched_fill_comm(&o, p, stage, v);
    return o;
}

/* interleaved: chunk and micro-batch of the k-th forward / backward */
static int sched_il_chunk(int k, int p, int v, int fwd)
{
    int c = (k % (p * v)) / p;
    return fwd ? c : v - 1 - c;
}
static int sched_il_mb(int k, int p, int v) { return (k / (p * v)) * p + k % p; }

int sched_build(spec_schedule kind, int p, int stage, int m, int v, sched_op *ops, int cap)
{
    if (p < 1 || m < 1 || v < 1 || stage < 0 || stage >= p || cap < sched_n_ops(m, v))
        return -1;
    if (kind != SPEC_SCHED_INTERLEAVED && v != 1)
        return -1;
    int n = 0;
    if (kind == SPEC_SCHED_GPIPE) {
        for (int j = 0; j < m; j++)
            ops[n++] = sched_mk(SCHED_FWD, j, 0, p, stage, 1);
        for (int j = 0; j < m; j++)
            ops[n++] = sched_mk(SCHED_BWD, j, 0, p, stage, 1);
        return n;
    }
    if (kind == SPEC_SCHED_1F1B) {
        int warm = p - stage - 1 < m ? p - stage - 1 : m;
        int steady = m - warm;
        for (int j = 0; j < warm; j++)
            ops[n++] = sched_mk(SCHED_FWD, j, 0, p, stage, 1);
        for (int j = 0; j < steady; j++) {
            ops[n++] = sched_mk(SCHED_FWD, warm + j, 0, p, stage, 1);
            ops[n++] = sched_mk(SCHED_BWD, j, 0, p, stage, 1);
        }
        for (int j = steady; j < m; j++)
            ops[n++] = sched_mk(SCHED_BWD, j, 0, p, stage, 1);
        return n;
    }
    if (kind == SPEC_SCHED_INTERLEAVED) {
        if (m % p != 0)
            return -1;
        int total = m * v;
        int warm;
        if (m == p) {
            warm = total;
        } else {
            warm = (p - stage - 1) * 2 + (v - 1) * p;
            if (warm > total)
                warm = total;
        }
        int steady = total - warm;
        for (int k = 0; k < warm; k++)
            ops[n++] = sched_mk(SCHED_FWD, sched_il_mb(k, p, v), sched_il_chunk(k, p, v, 1), p, stage, v);
        for (int k = 0; k < steady; k++) {
            int kf = warm + k;
            ops[n++] = sched_mk(SCHED_FWD, sched_il_mb(kf, p, v), sched_il_chunk(kf, p, v, 1), p, stage, v);
            ops[n++] = sched_mk(SCHED_BWD, sched_il_mb(k, p, v), sched_il_chunk(k, p, v, 0), p, stage, v);
        }
        for (int k = steady; k < total; k++)
            ops[n++] = sched_mk(SCHED_BWD, sched_il_mb(k, p, v), sched_il_chunk(k, p, v, 0), p, stage, v);
        return n;
    }
    return -1;
}

int sched_peak_inflight(const sched_op *ops, int n)
{
    int cur = 0, peak = 0;
    for (int i = 0; i < n; i++) {
        cur += ops[i].dir == SCHED_FWD ? 1 : -1;
        if (cur > peak)
            peak = cur;
    }
    return peak;
}

int sched_blocks(const sched_op *ops, int n, int v, int *block)
{
    int first_bwd = -1, last_fwd = -1;
    for (int i = 0; i < n; i++) {
        if (ops[i].dir == SCHED_BWD && first_bwd < 0)
            first_bwd = i;
        if (ops[i].dir == SCHED_FWD)
            last_fwd = i;
    }
    /* the steady state: from the forward before the first backward to the
     * backward after the last forward, forward / backward alternating */
    int lo = v > 1 && first_bwd > 0 && last_fwd > first_bwd ? first_bwd - 1 : n;
    int nb = 0;
    for (int i = 0; i < n;) {
        int len = i >= lo && i < last_fwd + 1 && i + 1 < n && ops[i].dir == SCHED_FWD && ops[i + 1].dir == SCHED_BWD
                      ? 2 : 1;
        for (int k = 0; k < len; k++)
            block[i + k] = nb;
        nb++;
        i += len;
    }
    return nb;
}
