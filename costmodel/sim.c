/* sim.c — the discrete-event simulator of one training step (contract in
 * sim.h).
 *
 * One representative rank per pipeline stage: the tp and dp ranks of a
 * stage run the same ops at the same times (their collectives synchronise
 * them), so simulating one of each is exact under the model's assumptions
 * and keeps a 1024-GPU job to pp ranks.
 *
 * Each rank runs its schedule's op list in order on a compute stream (tp
 * collectives are serialised with compute, as in Megatron-LM); an op starts
 * when the stream is free and its dependency is met: a forward needs the
 * previous virtual stage's forward of the same micro-batch plus the p2p
 * transfer, a backward the next virtual stage's backward plus the transfer
 * (or its own forward on the last virtual stage). A pipeline send occupies
 * the sender's pp stream, not its compute stream. Data-parallel gradient
 * buckets become ready during the last micro-batch's backward and run on a
 * dp stream, overlapping what backward work remains; then the optimizer.
 * Memory: static bytes (weights, grads, optimizer, scratch) plus the
 * activations of every forward whose backward has not finished.
 */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile_impl.h"
#include "sim_core.h"

void cost_sim_opts_default(cost_sim_opts *o)
{
    memset(o, 0, sizeof *o);
}

/* ---- schedules ---------------------------------------------------------------- */

/* Megatron-LM's interleaved order: the k-th forward (or backward) op of a
 * rank works on chunk (k mod p*v) / p and micro-batch (k / (p v)) p + k mod p. */
static void interleaved_id(int k, int p, int v, int forward, int *mb, int *chunk)
{
    int c = (k % (p * v)) / p;
    *chunk = forward ? c : v - 1 - c;
    *mb = (k / (p * v)) * p + k % p;
}

int sim_schedule_ops(spec_schedule sched, int p, int v, int m, int rank, sim_op *ops)
{
    int n = 0;
    if (sched == SPEC_SCHED_GPIPE) {
        for (int i = 0; i < m; i++)
            ops[n++] = (sim_op){SIM_FWD, i, 0};
        for (int i = 0; i < m; i++)
            ops[n++] = (sim_op){SIM_BWD, i, 0};
        return n;
    }
    if (sched == SPEC_SCHED_1F1B || v <= 1) {
        int warm = p - rank - 1 < m ? p - rank - 1 : m;
        int f = 0, b = 0;
        for (; f < warm; f++)
            ops[n++] = (sim_op){SIM_FWD, f, 0};
        while (f < m) {
            ops[n++] = (sim_op){SIM_FWD, f++, 0};
            ops[n++] = (sim_op){SIM_BWD, b++, 0};
        }
        while (b < m)
            ops[n++] = (sim_op){SIM_BWD, b++, 0};
        return n;
    }
    int total = m * v;
    int warm = (p - rank - 1) * 2 + (v - 1) * p;
    if (warm > total || m == p) /* every forward first when m == p (Megatron-LM, executor/schedule.c) */
        warm = total;
    int f = 0, b = 0, mb, ch;
    for (; f < warm; f++) {
        interleaved_id(f, p, v, 1, &mb, &ch);
        ops[n++] = (sim_op){SIM_FWD, mb, ch};
    }
    while (f < total) {
        interleaved_id(f++, p, v, 1, &mb, &ch);
        ops[n++] = (sim_op){SIM_FWD, mb, ch};
        interleaved_id(b++, p, v, 0, &mb, &ch);
        ops[n++] = (sim_op){SIM_BWD, mb, ch};
    }
    while (b < total) {
        interleaved_id(b++, p, v, 0, &mb, &ch);
        ops[n++] = (sim_op){SIM_BWD, mb, ch};
    }
    return n;
}

/* ---- the core ------------------------------------------------------------------- */

static void add_event(cost_sim *s, int rank, int stream, double t0, double t1, int kind, int mb,
                      int vs)
{
    if (!s->record || t1 <= t0)
        return;
    if (s->n_ev == s->cap_ev) {
        s->cap_ev = s->cap_ev ? 2 * s->cap_ev : 1024;
        s->ev = realloc(s->ev, (size_t)s->cap_ev * sizeof *s->ev);
    }
    s->ev[s->n_ev++] = (sim_event){rank, stream, kind, mb, vs, t0, t1};
}

static void add_mem(cost_sim *s, int rank, double t, int64_t bytes)
{
    if (!s->record)
        return;
    if (s->n_mem == s->cap_mem) {
        s->cap_mem = s->cap_mem ? 2 * s->cap_mem : 1024;
        s->mem = realloc(s->mem, (size_t)s->cap_mem * sizeof *s->mem);
    }
    s->mem[s->n_mem++] = (sim_mem_point){rank, t, bytes};
}

int sim_run_input(const sim_input *in, int record, cost_sim **out, char err[SPEC_ERR_LEN])
{
    int p = in->p, v = in->v > 0 ? in->v : 1, m = in->m, V = p * v;
    *out = NULL;
    if (p < 1 || m < 1 || p > SPEC_MAX_PP) {
        snprintf(err, SPEC_ERR_LEN, "simulate: bad pipeline (pp=%d, micro-batches=%d)", p, m);
        return SPEC_ERR;
    }
    cost_sim *s = calloc(1, sizeof *s);
    s->p = p;
    s->record = record;
    s->st = calloc((size_t)p, sizeof *s->st);
    int per_rank = 2 * m * v;
    sim_op *ops = malloc((size_t)p * per_rank * sizeof *ops);
    int *nops = calloc((size_t)p, sizeof *nops), *next = calloc((size_t)p, sizeof *next);
    /* finish times of F and B per (micro-batch, virtual stage); -1 = not yet */
    double *fdone = malloc((size_t)m * V * sizeof *fdone), *bdone = malloc((size_t)m * V * sizeof *bdone);
    double *free_at = calloc((size_t)p, sizeof *free_at), *send_free = calloc((size_t)p, sizeof *send_free);
    double *busy = calloc((size_t)p, sizeof *busy);
    double *pp_busy = calloc((size_t)p, sizeof *pp_busy); /* time each rank's pp stream sends */
    int64_t *act = calloc((size_t)p, sizeof *act);
    int *inflight = calloc((size_t)p, sizeof *inflight);
    /* last-micro-batch backward op of each virtual stage: when it finishes,
     * that chunk's gradients are final */
    double *chunk_final = malloc((size_t)V * sizeof *chunk_final), *chunk_start = malloc((size_t)V * sizeof *chunk_start);
    for (int i = 0; i < m * V; i++)
        fdone[i] = bdone[i] = -1;
    for (int r = 0; r < p; r++) {
        nops[r] = sim_schedule_ops(in->schedule, p, v, m, r, ops + (size_t)r * per_rank);
        s->st[r].mem_peak_bytes = in->static_bytes[r];
        add_mem(s, r, 0, in->static_bytes[r]);
    }
    int remaining = 0;
    for (int r = 0; r < p; r++)
        remaining += nops[r];
    /* List scheduling: each pass runs every op whose dependency is met, in
     * each rank's order; the op order per rank is fixed, so the result is
     * the unique as-soon-as-possible schedule. */
    while (remaining > 0) {
        int progressed = 0;
        for (int r = 0; r < p; r++) {
            while (next[r] < nops[r]) {
                sim_op op = ops[(size_t)r * per_rank + next[r]];
                int vs = op.chunk * p + r;
                double ready;
                if (op.kind == SIM_FWD) {
                    if (vs == 0)
                        ready = 0;
                    else if (fdone[op.mb * V + vs - 1] < 0)
                        break;
                    else
                        ready = fdone[op.mb * V + vs - 1] + in->p2p_s;
                } else {
                    if (vs == V - 1) {
                        if (fdone[op.mb * V + vs] < 0)
                            break;
                        ready = fdone[op.mb * V + vs];
                    } else if (bdone[op.mb * V + vs + 1] < 0)
                        break;
                    else
                        ready = bdone[op.mb * V + vs + 1] + in->p2p_s;
                }
                if (ready > free_at[r]) /* the rank idled: it wakes when the input is there */
                    ready += in->wake_s;
                double t0 = ready > free_at[r] ? ready : free_at[r];
                double dur = op.kind == SIM_FWD ? in->fwd_s[vs] : in->bwd_s[vs];
                size_t oi = (size_t)r * per_rank + next[r];
                if (in->op_scale)
                    dur *= in->op_scale[oi];
                const double *floor_s = op.kind == SIM_FWD ? in->fwd_floor_s : in->bwd_floor_s;
                if (floor_s && dur < floor_s[vs])
                    dur = floor_s[vs];
                double t1 = t0 + dur;
                if (in->op_t0)
                    in->op_t0[oi] = t0, in->op_t1[oi] = t1;
                if (op.kind == SIM_FWD) {
                    fdone[op.mb * V + vs] = t1;
                    act[r] += in->act_bytes[vs];
                    inflight[r]++;
                    int64_t now = in->static_bytes[r] + act[r];
                    if (now > s->st[r].mem_peak_bytes)
                        s->st[r].mem_peak_bytes = now;
                    add_mem(s, r, t0, now);
                    if (vs < V - 1 && in->p2p_s > 0) { /* send to the next stage */
                        double s0 = t1 > send_free[r] ? t1 : send_free[r];
                        send_free[r] = s0 + in->p2p_s;
                        pp_busy[r] += in->p2p_s;
                        add_event(s, r, SIM_STREAM_PP, s0, s0 + in->p2p_s, SIM_SEND, op.mb, vs);
                    }
                } else {
                    bdone[op.mb * V + vs] = t1;
                    act[r] -= in->act_bytes[vs];
                    add_mem(s, r, t1, in->static_bytes[r] + act[r]);
                    if (op.mb == m - 1) {
                        chunk_final[vs] = t1;
                        chunk_start[vs] = t0;
                    }
                    if (vs > 0 && in->p2p_s > 0) {
                        double s0 = t1 > send_free[r] ? t1 : send_free[r];
                        send_free[r] = s0 + in->p2p_s;
                        pp_busy[r] += in->p2p_s;
                        add_event(s, r, SIM_STREAM_PP, s0, s0 + in->p2p_s, SIM_SEND, op.mb, vs);
                    }
                }
                /* peak in-flight: forwards whose backward has not finished.
                 * For interleaved, counted in chunk micro-batches / v. */
                if (op.kind == SIM_FWD) {
                    int whole = (inflight[r] + v - 1) / v;
                    if (whole > s->st[r].peak_in_flight)
                        s->st[r].peak_in_flight = whole;
                } else {
                    inflight[r]--;
                }
                if (op.kind == SIM_FWD && in->tp_fwd_frac > 0)
                    add_event(s, r, SIM_STREAM_TP, t1 - dur * in->tp_fwd_frac, t1, SIM_TP, op.mb, vs);
                if (op.kind == SIM_BWD && in->tp_bwd_frac > 0)
                    add_event(s, r, SIM_STREAM_TP, t1 - dur * in->tp_bwd_frac, t1, SIM_TP, op.mb, vs);
                add_event(s, r, SIM_STREAM_COMPUTE, t0, t1, op.kind, op.mb, vs);
                free_at[r] = t1;
                busy[r] += dur;
                next[r]++;
                remaining--;
                progressed = 1;
            }
        }
        if (!progressed) {
            snprintf(err, SPEC_ERR_LEN, "simulate: schedule deadlocked (internal error)");
            free(ops); free(nops); free(next); free(fdone); free(bdone); free(free_at);
            free(send_free); free(busy); free(pp_busy); free(act); free(inflight); free(chunk_final);
            free(chunk_start);
            cost_sim_free(s);
            return SPEC_ERR;
        }
    }
    /* Data-parallel buckets: each chunk's gradients split into buckets that
     * become final evenly across that chunk's last backward op; one dp
     * stream per rank, buckets in order of readiness. */
    double step = 0;
    for (int r = 0; r < p; r++) {
        double dp_free = 0, compute_end = free_at[r], comm = 0;
        int nb = in->dp_buckets > 0 ? in->dp_buckets : 1;
        if (in->dp_s[r] > 0) {
            for (int c = v - 1; c >= 0; c--) {
                int vs = c * p + r;
                double per = in->dp_s[r] / v / nb;
                for (int k = 1; k <= nb; k++) {
                    double rdy = chunk_start[vs] + (chunk_final[vs] - chunk_start[vs]) * k / nb;
                    double t0 = rdy > dp_free ? rdy : dp_free;
                    dp_free = t0 + per;
                    add_event(s, r, SIM_STREAM_DP, t0, dp_free, SIM_DP, k, vs);
                }
            }
            comm += in->dp_s[r];
        }
        double end = compute_end > dp_free ? compute_end : dp_free;
        if (send_free[r] > end)
            end = send_free[r];
        s->st[r].exposed_comm_s = end - compute_end;
        double t = end;
        if (in->post_s[r] > 0) {
            add_event(s, r, SIM_STREAM_DP, t, t + in->post_s[r], SIM_SYNC, 0, 0);
            t += in->post_s[r];
            s->st[r].exposed_comm_s += in->post_s[r];
            comm += in->post_s[r];
        }
        add_event(s, r, SIM_STREAM_COMPUTE, t, t + in->optimizer_s[r], SIM_OPT, 0, 0);
        t += in->optimizer_s[r];
        busy[r] += in->optimizer_s[r];
        s->st[r].busy_s = busy[r];
        s->st[r].comm_s = comm + pp_busy[r];
        s->st[r].end_s = t;
        if (t > step)
            step = t;
    }
    s->step_s = step;
    double idle_max = 0;
    for (int r = 0; r < p; r++) {
        s->st[r].idle_s = step - s->st[r].busy_s;
        /* bubble: idle time of the compute stream before the optimizer */
        double b = step - s->st[r].busy_s - s->st[r].exposed_comm_s;
        if (b > idle_max)
            idle_max = b;
    }
    s->bubble_s = idle_max > 0 ? idle_max : 0;
    free(ops); free(nops); free(next); free(fdone); free(bdone); free(free_at); free(send_free);
    free(busy); free(pp_busy); free(act); free(inflight); free(chunk_final); free(chunk_start);
    *out = s;
    return SPEC_OK;
}

/* ---- more ranks than cores ---------------------------------------------------------- */

/* A measured profile timed every kernel with `ranks` ranks at once on
 * `cores` cores, so each time is ranks / cores of what one rank alone on a
 * core would take (when ranks > cores). A layout's ranks are not all busy
 * at once: in a pipeline bubble the waiting ranks leave their cores to the
 * busy ones. Processor sharing: an op that runs while k ranks compute takes
 * its alone-time times max(1, k / cores). The busy count comes from the
 * schedule itself (the tp * dp replicas of a stage compute at the same
 * times), so it is found by iteration: simulate, measure each op's mean
 * busy count over its interval, rescale, simulate again (damped by half,
 * until no factor moves by 1e-9, at most 60 rounds). Ranks blocked in a receive are counted idle; the
 * optimizer, which all ranks run at once as during profiling, and the
 * communication keep their measured times. */
typedef struct { double t; int d; } edge;

static int edge_cmp(const void *a, const void *b)
{
    double x = ((const edge *)a)->t, y = ((const edge *)b)->t;
    return x < y ? -1 : x > y;
}

int sim_contention_scales(sim_input *in, double ranks, double cores, double replicas, double **out,
                          char err[SPEC_ERR_LEN])
{
    int p = in->p, per_rank = 2 * in->m * (in->v > 0 ? in->v : 1), n = p * per_rank;
    double alone = ranks > cores ? cores / ranks : 1.0;
    double *scale = malloc(sizeof(double) * (size_t)n), *t0 = malloc(sizeof(double) * (size_t)n),
           *t1 = malloc(sizeof(double) * (size_t)n), *busy = malloc(sizeof(double) * (size_t)(2 * n + 1)),
           *at = malloc(sizeof(double) * (size_t)(2 * n + 1)), *cum = malloc(sizeof(double) * (size_t)(2 * n + 1));
    edge *e = malloc(sizeof(edge) * (size_t)(2 * n));
    int rc = scale && t0 && t1 && busy && at && cum && e ? SPEC_OK : SPEC_ERR;
    for (int i = 0; rc == SPEC_OK && i < n; i++)
        scale[i] = 1.0; /* start from the conditions of the profile */
    in->op_t0 = t0, in->op_t1 = t1;
    double moved = 1;
    for (int round = 0; rc == SPEC_OK && round < 60 && moved > 1e-9; round++) {
        in->op_scale = scale;
        cost_sim *s = NULL;
        for (int i = 0; i < n; i++)
            t0[i] = t1[i] = -1;
        rc = sim_run_input(in, 0, &s, err);
        cost_sim_free(s);
        if (rc != SPEC_OK)
            break;
        /* busy stages as a step function: sorted interval edges */
        int ne = 0;
        for (int i = 0; i < n; i++)
            if (t1[i] > t0[i] && t0[i] >= 0) {
                e[ne++] = (edge){t0[i], 1};
                e[ne++] = (edge){t1[i], -1};
            }
        qsort(e, (size_t)ne, sizeof *e, edge_cmp);
        /* at[j]: breakpoints; busy[j]: stages busy on [at[j], at[j+1]);
         * cum[j]: integral of busy up to at[j] */
        int nb = 0, k = 0;
        for (int j = 0; j < ne; j++) {
            k += e[j].d;
            if (nb > 0 && at[nb - 1] == e[j].t) {
                busy[nb - 1] = k;
                continue;
            }
            at[nb] = e[j].t;
            busy[nb] = k;
            nb++;
        }
        cum[0] = 0;
        moved = 0;
        for (int j = 1; j < nb; j++)
            cum[j] = cum[j - 1] + busy[j - 1] * (at[j] - at[j - 1]);
        for (int i = 0; i < n; i++) {
            if (!(t1[i] > t0[i]) || t0[i] < 0)
                continue;
            double integral = 0;
            for (int side = 0; side < 2; side++) { /* integral from 0 to t0, t1 (binary search) */
                double t = side ? t1[i] : t0[i];
                int lo = 0, hi = nb - 1;
                while (lo < hi) {
                    int mid = (lo + hi + 1) / 2;
                    if (at[mid] <= t)
                        lo = mid;
                    else
                        hi = mid - 1;
                }
                double v = cum[lo] + busy[lo] * (t - at[lo]);
                integral += side ? v : -v;
            }
            double k_mean = replicas * integral / (t1[i] - t0[i]);
            double want = alone * (k_mean > cores ? k_mean / cores : 1.0);
            double next = 0.5 * scale[i] + 0.5 * want;
            moved = fabs(next - scale[i]) > moved ? fabs(next - scale[i]) : moved;
            scale[i] = next;
        }
    }
    in->op_t0 = in->op_t1 = NULL;
    free(t0); free(t1); free(busy); free(at); free(cum); free(e);
    if (rc != SPEC_OK) {
        free(scale);
        scale = NULL;
    }
    *out = scale;
    return rc;
}

/* ---- from the cost model ------------------------------------------------------------- */

int cost_sim_run(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                 int64_t global_batch, const cost_profile *p, const cost_sim_opts *o,
                 cost_sim **simp, cost_result *out, char err[SPEC_ERR_LEN])
{
    cost_sim_opts def;
    if (!o) {
        cost_sim_opts_default(&def);
        o = &def;
    }
    cost_result cf;
    if (cost_predict(m, c, l, global_batch, p, &cf, err))
        return SPEC_ERR;
    int P = l->pp, v = l->schedule == SPEC_SCHED_INTERLEAVED ? l->v : 1, V = P * v;
    sim_input in;
    memset(&in, 0, sizeof in);
    in.p = P;
    in.v = v;
    in.m = (int)cf.n_micro;
    in.schedule = l->schedule;
    in.fwd_s = calloc((size_t)V, sizeof(double));
    in.bwd_s = calloc((size_t)V, sizeof(double));
    in.act_bytes = calloc((size_t)V, sizeof(int64_t));
    in.static_bytes = calloc((size_t)P, sizeof(int64_t));
    in.dp_s = calloc((size_t)P, sizeof(double));
    in.post_s = calloc((size_t)P, sizeof(double));
    in.optimizer_s = calloc((size_t)P, sizeof(double));
    cost_block blk;
    cost_block_times(m, c, l, l->recompute, p, &blk);
    cost_comm cm;
    cost_comm_times(m, c, l, p, &cm);
    cost_bytes cb; /* the closed form's bytes (cost_profile_bytes) */
    cost_profile_bytes(l, p, &cb);
    shapes_tensor ts[32];
    double tpf = 0, tpb = 0, fsum = 0, bsum = 0;
    /* Ranks that sleep between polls (a measured profile with more ranks
     * than cores): each collective after compute takes at least wait_coll_s
     * (its ranks arrive out of step and each round waits for a wake-up), so
     * an op takes at least its compute alone plus its collectives so; when
     * other ranks compute meanwhile the cores are not idle and processor
     * sharing is the longer of the two (sim_run_input). */
    const profile_params *pp = p ? profile_params_of(p) : NULL;
    /* the comm layer sleeps only where this layout puts more ranks on a
     * node than the profile's cores (comm_mpi.c) */
    int world = l->tp * l->dp * l->pp, node_ranks = world < c->gpus_per_node ? world : c->gpus_per_node;
    int sleeps = pp && !o->free_comm && pp->cores > 0 && node_ranks > pp->cores;
    double wc = sleeps ? pp->wait_coll_s : 0; /* seconds a collective after compute takes at least */
    double alone = pp && pp->cores > 0 && pp->ranks > pp->cores ? pp->cores / pp->ranks : 1.0;
    double *ffloor = wc > 0 ? calloc((size_t)V, sizeof(double)) : NULL;
    double *bfloor = wc > 0 ? calloc((size_t)V, sizeof(double)) : NULL;
    for (int vs = 0; vs < V; vs++) {
        int layers = spec_layout_stage_layers(l, m, vs);
        double f = layers * (blk.fwd_s + blk.tp_fwd_s);
        double b = layers * (blk.bwd_s + blk.recompute_s + blk.tp_bwd_s);
        if (l->zero == 3 && !o->free_comm) { /* exposed ZeRO-3 gathers / scatters (cost_comm_times) */
            f += layers * cm.zero3_fwd_layer_s + (vs == 0 ? 0.5 * cm.zero3_edge_s : 0);
            b += layers * cm.zero3_bwd_layer_s + (vs == 0 ? 0.5 * cm.zero3_edge_s : 0);
        }
        b += o->free_comm ? 0 : layers * cm.zero2_bwd_layer_s; /* ZeRO-2's reduce-scatters in every backward (0 otherwise) */
        int64_t a = layers * blk.act_bytes;
        /* the op's collectives: their time and how many */
        double coll_f_s = layers * blk.tp_fwd_s, coll_b_s = layers * blk.tp_bwd_s;
        int n_coll_f = layers * blk.tp_fwd_n, n_coll_b = layers * blk.tp_bwd_n;
        if (l->zero == 3 && !o->free_comm) {
            coll_f_s += layers * cm.zero3_fwd_layer_s + (vs == 0 ? 0.5 * cm.zero3_edge_s : 0);
            coll_b_s += layers * cm.zero3_bwd_layer_s + (vs == 0 ? 0.5 * cm.zero3_edge_s : 0);
            n_coll_f += layers + (vs == 0), n_coll_b += 2 * layers + (vs == 0);
        }
        if (!o->free_comm && cm.zero2_bwd_layer_s > 0)
            coll_b_s += layers * cm.zero2_bwd_layer_s, n_coll_b += layers;
        cost_extra ex;
        memset(&ex, 0, sizeof ex);
        if (vs == 0) { /* with pp == 1 rank 0 is also the last: this covers both ends */
            cost_extra_times(m, c, l, 0, p, &ex);
            f += ex.fwd_s + ex.tp_fwd_s;
            b += ex.bwd_s + ex.tp_bwd_s;
        } else if (vs == V - 1) {
            cost_extra_times(m, c, l, P - 1, p, &ex);
            f += ex.fwd_s + ex.tp_fwd_s;
            b += ex.bwd_s + ex.tp_bwd_s;
        }
        coll_f_s += ex.tp_fwd_s, coll_b_s += ex.tp_bwd_s, n_coll_f += ex.tp_fwd_n, n_coll_b += ex.tp_bwd_n;
        if (ffloor) {
            ffloor[vs] = (f - coll_f_s) * alone + fmax(coll_f_s * alone, n_coll_f * wc);
            bfloor[vs] = (b - coll_b_s) * alone + fmax(coll_b_s * alone, n_coll_b * wc);
        }
        if (vs == V - 1) {
            int n = cost_shapes_extra_acts(m, l, P - 1, ts, 32);
            a += cost_shapes_sum_bytes(ts, n, cb.act);
        }
        in.fwd_s[vs] = f;
        in.bwd_s[vs] = b;
        in.act_bytes[vs] = a;
        tpf += layers * blk.tp_fwd_s;
        tpb += layers * blk.tp_bwd_s;
        fsum += f;
        bsum += b;
    }
    in.tp_fwd_frac = fsum > 0 ? tpf / fsum : 0;
    in.tp_bwd_frac = bsum > 0 ? tpb / bsum : 0;
    in.p2p_s = o->free_comm ? 0 : cm.p2p_s;
    in.dp_buckets = 1;
    for (int r = 0; r < P; r++) {
        cost_mem mm;
        cost_memory_rank_profile(m, c, l, global_batch, r, p, &mm);
        in.static_bytes[r] = mm.param_bytes + mm.grad_bytes + mm.optim_bytes + mm.scratch_bytes;
        double traffic = l->zero == 0 ? cm.dp_allreduce_s : cm.zero_rs_s;
        int64_t Pr = cost_shapes_param_elems(m, l, r);
        double nb = cb.grad * (double)Pr / cm.dp_bucket_bytes;
        in.dp_buckets = nb > 1 ? (int)ceil(nb) : 1;
        /* without overlap (profile dp_overlap 0) the reduction runs after
         * the rank's last backward op, exposed like the all-gather after it */
        int overlap = profile_params_of(p ? p : cost_profile_builtin(c->gpu))->dp_overlap > 0;
        in.dp_s[r] = o->free_comm || !overlap ? 0 : traffic;
        in.post_s[r] = o->free_comm ? 0 : cm.zero_ag_s + cm.embed_sync_s + (overlap ? 0 : traffic);
        if (wc > 0) { /* the same collectives after compute, and the scalar ones of the step's end
                         (train.c: the loss over pp and dp, the gradient norm over tp, pp and ZeRO's dp) */
            double exposed_s = overlap ? 0 : traffic;
            int scalars = (P > 1 ? 2 : 0) + (l->tp > 1) + (l->dp > 1 ? 1 + (l->zero >= 1) : 0);
            in.post_s[r] = fmax(cm.zero_ag_s, cm.zero_ag_s > 0 ? wc : 0) +
                           fmax(cm.embed_sync_s, cm.embed_sync_s > 0 ? wc : 0) +
                           fmax(exposed_s, exposed_s > 0 ? wc : 0) + scalars * wc;
        }
        in.optimizer_s[r] = cm.optimizer_s;
    }
    if (o->free_comm) {
        for (int vs = 0; vs < V; vs++) {
            int layers = spec_layout_stage_layers(l, m, vs);
            in.fwd_s[vs] -= layers * blk.tp_fwd_s;
            in.bwd_s[vs] -= layers * blk.tp_bwd_s;
        }
        in.tp_fwd_frac = in.tp_bwd_frac = 0;
    }
    in.fwd_floor_s = ffloor, in.bwd_floor_s = bfloor;
    in.wake_s = sleeps && P > 1 ? pp->wake_s : 0;
    cost_sim *s = NULL;
    double replicas = (double)l->tp * l->dp;
    int rc = SPEC_OK;
    double *scale = NULL;
    if (pp && pp->cores > 0 && pp->ranks > 0 && (replicas * P > pp->cores || pp->ranks > pp->cores))
        rc = sim_contention_scales(&in, pp->ranks, pp->cores, replicas, &scale, err);
    in.op_scale = scale;
    if (rc == SPEC_OK)
        rc = sim_run_input(&in, o->record_events, &s, err);
    free(scale);
    if (rc == SPEC_OK) {
        s->layout = *l;
        *out = cf;
        out->step_time_s = s->step_s;
        out->tokens_per_s = (double)global_batch * (double)m->seq / s->step_s;
        out->tflops_per_gpu = cf.tflops_per_gpu * cf.step_time_s / s->step_s;
        out->mfu = cf.mfu * cf.step_time_s / s->step_s;
        out->hfu = cf.hfu * cf.step_time_s / s->step_s;
        out->bubble_s = s->bubble_s;
        out->bubble_frac = s->bubble_s / s->step_s;
        int64_t peak = 0;
        int ps = 0;
        for (int r = 0; r < P; r++)
            if (s->st[r].mem_peak_bytes > peak) {
                peak = s->st[r].mem_peak_bytes;
                ps = r;
            }
        out->mem_peak_bytes = peak;
        out->mem_peak_stage = ps;
        out->fits = (double)peak <= c->mem_gb * 1e9;
        snprintf(out->source, sizeof out->source, "simulator");
    }
    free(in.fwd_s); free(in.bwd_s); free(in.act_bytes); free(in.static_bytes); free(in.dp_s);
    free(in.post_s); free(in.optimizer_s); free(ffloor); free(bfloor);
    if (rc == SPEC_OK && simp)
        *simp = s;
    else
        cost_sim_free(s);
    return rc;
}

int cost_sim_stages(const cost_sim *s) { return s ? s->p : 0; }

void cost_sim_stage_at(const cost_sim *s, int i, cost_sim_stage *out)
{
    memset(out, 0, sizeof *out);
    if (!s || i < 0 || i >= s->p)
        return;
    out->busy_s = s->st[i].busy_s;
    out->idle_s = s->st[i].idle_s;
    out->comm_s = s->st[i].comm_s;
    out->exposed_comm_s = s->st[i].exposed_comm_s;
    out->mem_peak_bytes = s->st[i].mem_peak_bytes;
    out->peak_in_flight = s->st[i].peak_in_flight;
}

void cost_sim_free(cost_sim *s)
{
    if (!s)
        return;
    free(s->st);
    free(s->ev);
    free(s->mem);
    free(s);
}
