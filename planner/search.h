/* search.h — the outer layout search of `triad plan`.
 *
 * Enumerates every (dp, tp, pp) with dp*tp*pp = gpus, micro-batch sizes,
 * schedules (1f1b, gpipe, interleaved v=2,4), recomputation, ZeRO stage and
 * sequence parallelism; rejects what cannot run (divisibility, memory,
 * layouts triad train does not run when the profile measured its executor,
 * tensor-parallel groups wider than a node while anything else fits) with a
 * reason a person can read; ranks the rest by the closed form; gives the
 * best pipelined candidates MILP-optimised stage boundaries (stages.h); and
 * re-ranks the top ones with the event simulator, whose order is final.
 */
#ifndef TRIAD_SEARCH_H
#define TRIAD_SEARCH_H

#include "../costmodel/cost.h"
#include "stages.h"

typedef struct {
    spec_model model;
    spec_cluster cluster;     /* nodes are set from gpus */
    int gpus;
    int64_t global_batch;
    const cost_profile *profile;
    int top;                  /* candidates kept and printed */
    int sim_top;              /* how many of the best are re-run in the simulator */
    int max_mbs;              /* largest micro-batch tried (power of two) */
    int allow_cross_node_tp;  /* 0: tp groups wider than a node only if nothing else fits */
    int milp;                 /* optimise stage boundaries with the MILP (1) */
} plan_search_opts;

void plan_search_opts_default(plan_search_opts *o);

typedef struct {
    spec_layout layout;
    cost_result cf;           /* closed form */
    cost_result sim;          /* simulator (when has_sim) */
    int has_sim;
    int milp_stages;          /* stage boundaries came from the MILP */
    double uniform_step_s;    /* closed-form step time with uniform stages */
} plan_candidate;

enum {
    PLAN_REJ_TP_HEADS = 0, PLAN_REJ_TP_FFN, PLAN_REJ_TP_VOCAB, PLAN_REJ_PP_LAYERS, PLAN_REJ_BATCH,
    PLAN_REJ_INTERLEAVE, PLAN_REJ_SP_SEQ, PLAN_REJ_MEMORY, PLAN_REJ_TP_NODE, PLAN_REJ_COUNT
};

typedef struct {
    long count[PLAN_REJ_COUNT];
    char example[PLAN_REJ_COUNT][256]; /* the first reason of each kind */
    /* memory: the rejected layout that came closest to fitting */
    spec_layout closest;
    int64_t closest_need_bytes;
    int closest_stage;
} plan_rejects;

typedef struct {
    plan_candidate *cand;     /* best first; n entries */
    int n;
    long evaluated;           /* layouts predicted */
    long enumerated;          /* layouts considered */
    plan_rejects rej;
    double seconds;           /* wall time of the search */
} plan_result;

/* Run the search. Returns SPEC_OK (res->n may be 0 when nothing fits; then
 * rej explains why) or SPEC_ERR on bad options or a solver failure. */
int plan_search(const plan_search_opts *o, plan_result *res, char err[SPEC_ERR_LEN]);
void plan_result_free(plan_result *res);

/* Build the stage-partition problem of a layout (arrays owned by the
 * caller, each of l->pp entries) and apply a solution's boundaries. */
void plan_stage_problem_of(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                           int64_t batch, const cost_profile *p, plan_stage_problem *pr,
                           double *t_extra, double *mem_extra, double *act_extra, int *in_flight);

#endif
