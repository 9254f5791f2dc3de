/* search.c — enumerate, prune, rank, re-rank (see search.h). */
#include "search.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../costmodel/shapes.h"
#include "../costmodel/sim.h"

void plan_search_opts_default(plan_search_opts *o)
{
    memset(o, 0, sizeof *o);
    o->top = 10;
    o->sim_top = 10;
    o->max_mbs = 16;
    o->milp = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void reject(plan_rejects *r, int kind, const char *fmt, int a, long long b)
{
    if (r->count[kind]++ == 0)
        snprintf(r->example[kind], sizeof r->example[kind], fmt, a, b);
}

typedef struct {
    plan_candidate *v;
    int n, cap;
} cand_vec;

static void push(cand_vec *cv, const plan_candidate *c)
{
    if (cv->n == cv->cap) {
        cv->cap = cv->cap ? 2 * cv->cap : 256;
        cv->v = realloc(cv->v, (size_t)cv->cap * sizeof *cv->v);
    }
    cv->v[cv->n++] = *c;
}

static double cand_time(const plan_candidate *c) { return c->has_sim ? c->sim.step_time_s : c->cf.step_time_s; }

static int by_closed_form(const void *a, const void *b)
{
    double x = ((const plan_candidate *)a)->cf.step_time_s, y = ((const plan_candidate *)b)->cf.step_time_s;
    return (x > y) - (x < y);
}

static int by_final(const void *a, const void *b)
{
    const plan_candidate *p = a, *q = b;
    /* simulated candidates first (they are the re-ranked top), then the rest */
    if (p->has_sim != q->has_sim)
        return q->has_sim - p->has_sim;
    double x = cand_time(p), y = cand_time(q);
    return (x > y) - (x < y);
}

void plan_stage_problem_of(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                           int64_t batch, const cost_profile *p, plan_stage_problem *pr,
                           double *t_extra, double *mem_extra, double *act_extra, int *in_flight)
{
    memset(pr, 0, sizeof *pr);
    cost_block blk;
    cost_block_times(m, c, l, l->recompute, p, &blk);
    cost_comm cm;
    cost_comm_times(m, c, l, p, &cm);
    cost_bytes cb; /* weights, gradients, optimizer state, activations (cost_layout_bytes) */
    cost_profile_bytes(l, p, &cb);
    int64_t dp = l->dp;
    int zero2 = l->zero == 2 && dp > 1, zero3 = l->zero >= 3 && dp > 1;
    /* bytes per parameter after ZeRO sharding (cost_memory_rank's rule); a
     * bf16 copy beside fp32 weights mirrors the weights a rank holds whole */
    double bpp = cb.weight / (l->zero >= 3 ? dp : 1) + (zero3 ? 0.0 : cb.weight16) + cb.grad / (l->zero >= 2 ? dp : 1) +
                 cb.optim / (l->zero >= 1 ? dp : 1);
    shapes_tensor t[64];
    int n = cost_shapes_layer_params(m, l, t, 64);
    pr->p = l->pp;
    pr->layers = (int)m->layers;
    pr->n_rc = 1;
    pr->rc[0] = l->recompute;
    pr->t_block_s[0] = blk.fwd_s + blk.bwd_s + blk.recompute_s + blk.tp_fwd_s + blk.tp_bwd_s +
                       (l->zero == 3 ? cm.zero3_fwd_layer_s + cm.zero3_bwd_layer_s : 0.0) + cm.zero2_bwd_layer_s;
    pr->act_block_bytes[0] = (double)blk.act_bytes;
    double block = (double)cost_shapes_sum_elems(t, n);
    pr->static_block_bytes = bpp * block;
    /* ZeRO-2 and -3 as the executor runs them (cost_memory_rank): the
     * extras keep their whole gradient too (ZeRO-3: and their whole
     * weights), and a stage holds one block's window of gradients (ZeRO-3:
     * and one of weights) and a landing buffer besides */
    double whole_w = cb.weight + cb.weight16; /* a weight held whole, with its bf16 copy */
    int64_t mb = spec_layout_n_micro(l, batch);
    for (int s = 0; s < l->pp; s++) {
        cost_extra ex;
        cost_extra_times(m, c, l, s, p, &ex);
        t_extra[s] = ex.fwd_s + ex.bwd_s + ex.tp_fwd_s + ex.tp_bwd_s + (l->pp > 1 ? 2.0 * cm.p2p_s : 0.0);
        n = cost_shapes_extra_params(m, l, s, t, 64);
        double extra_params = (double)cost_shapes_sum_elems(t, n);
        n = cost_shapes_scratch(m, l, s, t, 64);
        mem_extra[s] = (bpp + (zero2 ? cb.grad : zero3 ? whole_w + cb.grad : 0.0)) * extra_params +
                       (double)cost_shapes_sum_bytes(t, n, cb.act) +
                       (zero2 ? 2.0 * cb.grad * block : zero3 ? (whole_w + 2.0 * cb.grad) * block : 0.0);
        n = cost_shapes_extra_acts(m, l, s, t, 64);
        act_extra[s] = (double)cost_shapes_sum_bytes(t, n, cb.act);
        in_flight[s] = cost_in_flight(l, s, mb);
    }
    pr->t_extra_s = t_extra;
    pr->mem_extra_bytes = mem_extra;
    pr->act_extra_bytes = act_extra;
    pr->in_flight = in_flight;
    pr->mem_cap_bytes = c->mem_gb * 1e9;
}

/* Try MILP stage boundaries for a pipelined 1F1B / GPipe candidate; keep
 * them when they are predicted faster than uniform stages. */
static int improve_stages(const plan_search_opts *o, const spec_cluster *c, plan_candidate *cd,
                          char err[SPEC_ERR_LEN])
{
    spec_layout *l = &cd->layout;
    if (l->pp < 2 || l->schedule == SPEC_SCHED_INTERLEAVED || l->pp > SPEC_MAX_PP)
        return SPEC_OK;
    plan_stage_problem pr;
    double *te = malloc(sizeof(double) * l->pp * 3);
    int *inf = malloc(sizeof(int) * l->pp);
    plan_stage_problem_of(&o->model, c, l, o->global_batch, o->profile, &pr, te, te + l->pp,
                          te + 2 * l->pp, inf);
    plan_stage_solution sol;
    int rc = plan_stages_milp(&pr, &sol, err);
    if (rc == SPEC_OK && sol.feasible) {
        spec_layout trial = *l;
        trial.n_stage_layers = l->pp;
        for (int s = 0; s < l->pp; s++)
            trial.stage_layers[s] = sol.stage_layers[s];
        cost_result r;
        char e2[SPEC_ERR_LEN];
        if (cost_predict(&o->model, c, &trial, o->global_batch, o->profile, &r, e2) == SPEC_OK &&
            r.fits && r.step_time_s < cd->cf.step_time_s * (1 - 1e-9)) {
            cd->uniform_step_s = cd->cf.step_time_s;
            cd->layout = trial;
            cd->cf = r;
            cd->milp_stages = 1;
        }
    }
    free(te);
    free(inf);
    return rc;
}

/* Predict one layout: kept when it fits, else counted as a rejection
 * (the one closest to fitting remembered for the message). */
static void consider(const plan_search_opts *o, const spec_model *m, const spec_cluster *c, const spec_layout *l,
                     plan_result *res, cand_vec *cv)
{
    plan_rejects *rj = &res->rej;
    plan_candidate cd;
    memset(&cd, 0, sizeof cd);
    cd.layout = *l;
    char e2[SPEC_ERR_LEN];
    if (cost_predict(m, c, l, o->global_batch, o->profile, &cd.cf, e2)) {
        if (rj->count[PLAN_REJ_BATCH]++ == 0)
            snprintf(rj->example[PLAN_REJ_BATCH], sizeof rj->example[0], "%s", e2);
        return;
    }
    res->evaluated++;
    if (!cd.cf.fits) {
        if (rj->count[PLAN_REJ_MEMORY]++ == 0 || cd.cf.mem_peak_bytes < rj->closest_need_bytes) {
            rj->closest = *l;
            rj->closest_need_bytes = cd.cf.mem_peak_bytes;
            rj->closest_stage = cd.cf.mem_peak_stage;
            char lay[128];
            spec_layout_format(l, lay, sizeof lay);
            snprintf(rj->example[PLAN_REJ_MEMORY], sizeof rj->example[0],
                     "closest to fitting: %s needs %.1f GB on stage %d, device has %.1f GB", lay,
                     cd.cf.mem_peak_bytes / 1e9, cd.cf.mem_peak_stage, c->mem_gb);
        }
        return;
    }
    cd.uniform_step_s = cd.cf.step_time_s;
    push(cv, &cd);
}

int plan_search(const plan_search_opts *o, plan_result *res, char err[SPEC_ERR_LEN])
{
    memset(res, 0, sizeof *res);
    double t0 = now_s();
    const spec_model *m = &o->model;
    if (o->gpus < 1) {
        snprintf(err, SPEC_ERR_LEN, "plan: --gpus %d is not a positive integer", o->gpus);
        return SPEC_ERR;
    }
    spec_cluster c = o->cluster;
    /* a profile of triad's executor: plan only what triad train runs */
    int executor = cost_profile_is_executor(o->profile);
    int nodes = (o->gpus + c.gpus_per_node - 1) / c.gpus_per_node;
    if (nodes > c.nodes)
        c.nodes = nodes;
    cand_vec cv = {0};
    plan_rejects *rj = &res->rej;
    /* precision and attention: a measured executor profile offers what it
     * timed (both maths by default, and fused attention next to the
     * explicit one); datasheet curves describe bf16 training, with the
     * attention of the software they model (the H100 sheet's is fused) */
    spec_precision precs[2];
    int n_prec = 0;
    if (executor) {
        if (cost_profile_has_precision(o->profile, SPEC_PREC_BF16))
            precs[n_prec++] = SPEC_PREC_BF16;
        if (cost_profile_has_precision(o->profile, SPEC_PREC_FP32))
            precs[n_prec++] = SPEC_PREC_FP32;
    } else {
        precs[n_prec++] = SPEC_PREC_BF16;
    }
    int fused = cost_fused_attention(&c, o->profile);
    int n_attn = executor && cost_profile_has_kernel(o->profile, "attention_flash_fwd") ? 2 : 1;
    for (int pass = 0; pass < 2; pass++) {
        int allow_wide_tp = o->allow_cross_node_tp || pass == 1;
        for (int tp = 1; tp <= o->gpus; tp++) {
            if (o->gpus % tp)
                continue;
            if (tp > c.gpus_per_node && !allow_wide_tp) {
                reject(rj, PLAN_REJ_TP_NODE, "tp=%d spans nodes of %lld devices", tp, (long long)c.gpus_per_node);
                continue;
            }
            if (pass == 1 && tp <= c.gpus_per_node && !o->allow_cross_node_tp)
                continue; /* second pass only adds the wide tp groups */
            if (m->heads % tp) {
                reject(rj, PLAN_REJ_TP_HEADS, "tp=%d does not divide heads=%lld", tp, (long long)m->heads);
                continue;
            }
            if (m->ffn % tp) {
                reject(rj, PLAN_REJ_TP_FFN, "tp=%d does not divide ffn=%lld", tp, (long long)m->ffn);
                continue;
            }
            if (m->vocab % tp) {
                reject(rj, PLAN_REJ_TP_VOCAB, "tp=%d does not divide vocab=%lld", tp, (long long)m->vocab);
                continue;
            }
            for (int pp = 1; pp <= o->gpus / tp; pp++) {
                if ((o->gpus / tp) % pp)
                    continue;
                if (pp > m->layers || pp > SPEC_MAX_PP) {
                    reject(rj, PLAN_REJ_PP_LAYERS, "pp=%d exceeds layers=%lld", pp, (long long)m->layers);
                    continue;
                }
                int dp = o->gpus / tp / pp;
                for (int mbs = 1; mbs <= o->max_mbs; mbs *= 2) {
                    res->enumerated++;
                    if (o->global_batch % ((int64_t)dp * mbs)) {
                        reject(rj, PLAN_REJ_BATCH, "batch not divisible by dp*mbs = %d (mbs %lld)",
                               dp * mbs, (long long)mbs);
                        continue;
                    }
                    int64_t n_micro = o->global_batch / ((int64_t)dp * mbs);
                    /* 1F1B, GPipe, interleaved with v = 2, 4 and 3 (Megatron-LM's
                     * 530B run: 3 blocks a stage, one a chunk) */
                    for (int sched = 0; sched < 5; sched++) {
                        spec_layout l;
                        spec_layout_default(&l);
                        l.tp = tp, l.pp = pp, l.dp = dp, l.mbs = mbs;
                        if (sched == 0)
                            l.schedule = SPEC_SCHED_1F1B;
                        else if (sched == 1)
                            l.schedule = SPEC_SCHED_GPIPE;
                        else {
                            l.schedule = SPEC_SCHED_INTERLEAVED;
                            l.v = sched == 2 ? 2 : sched == 3 ? 4 : 3;
                        }
                        if (pp == 1 && sched > 0)
                            continue; /* one stage: the schedule does not matter */
                        if (sched >= 2 && (n_micro % pp || (int64_t)pp * l.v > m->layers)) {
                            reject(rj, PLAN_REJ_INTERLEAVE,
                                   "interleaved v=%d needs micro-batches divisible by pp and pp*v <= layers (pp %lld)",
                                   l.v, (long long)pp);
                            continue;
                        }
                        for (int rc = 0; rc < 3; rc++)
                            for (int zero = 0; zero <= (dp > 1 ? 3 : 0); zero++)
                                for (int sp = 0; sp <= (tp > 1 ? 1 : 0); sp++) {
                                    l.recompute = (spec_recompute)rc;
                                    l.zero = zero;
                                    l.sp = sp;
                                    if (sp && m->seq % tp) {
                                        reject(rj, PLAN_REJ_SP_SEQ, "sp needs tp=%d to divide seq=%lld", tp,
                                               (long long)m->seq);
                                        continue;
                                    }
                                    /* the maths and attentions a measured profile timed
                                     * (GEMMs in bf16 and fp32; fused attention rows) */
                                    for (int pi = 0; pi < n_prec; pi++)
                                        for (int fa = 0; fa < n_attn; fa++) {
                                            if (fa && rc == SPEC_RECOMPUTE_SELECTIVE)
                                                continue; /* fused keeps no s x s matrix: as rc=none */
                                            l.precision = precs[pi];
                                            l.flash = fa || fused;
                                            consider(o, m, &c, &l, res, &cv);
                                        }
                                }
                    }
                }
            }
        }
        if (cv.n > 0 || o->allow_cross_node_tp)
            break; /* a second pass (wide tp) only when nothing fits inside a node */
    }
    if (cv.n > 1) /* qsort on a NULL array, even of 0 items, is undefined */
        qsort(cv.v, (size_t)cv.n, sizeof *cv.v, by_closed_form);
    /* MILP stage boundaries for the best pipelined candidates, then
     * re-sort, then the simulator decides the order of the top. */
    int k_milp = cv.n < 4 * o->top ? cv.n : 4 * o->top;
    if (o->milp)
        for (int i = 0; i < k_milp; i++)
            if (improve_stages(o, &c, &cv.v[i], err)) {
                free(cv.v);
                return SPEC_ERR;
            }
    if (cv.n > 1)
        qsort(cv.v, (size_t)cv.n, sizeof *cv.v, by_closed_form);
    int k_sim = cv.n < o->sim_top ? cv.n : o->sim_top;
    /* a profile whose ranks shared its cores: the closed form charges that
     * sharing even in a pipeline's bubble, where it is gone (a 4-rank tp2 pp2
     * of one micro-batch: 79 ms closed form, 39 ms simulated and 41-52
     * measured), so it cannot pick the top; the simulator ranks them all */
    if (cost_profile_shares_cores(o->profile))
        k_sim = cv.n;
    for (int i = 0; i < k_sim; i++) {
        cost_sim_opts so;
        cost_sim_opts_default(&so);
        if (cost_sim_run(m, &c, &cv.v[i].layout, o->global_batch, o->profile, &so, NULL, &cv.v[i].sim,
                         err)) {
            free(cv.v);
            return SPEC_ERR;
        }
        cv.v[i].has_sim = 1;
    }
    if (cv.n > 1)
        qsort(cv.v, (size_t)cv.n, sizeof *cv.v, by_final);
    res->cand = cv.v;
    res->n = cv.n;
    res->seconds = now_s() - t0;
    return SPEC_OK;
}

void plan_result_free(plan_result *res)
{
    if (!res)
        return;
    free(res->cand);
    res->cand = NULL;
    res->n = 0;
}
