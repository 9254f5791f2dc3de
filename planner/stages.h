/* stages.h — partitioning transformer blocks into pipeline stages.
 *
 * The problem (ARCHITECTURE.md, "Planner search"): assign L uniform blocks to
 * p contiguous stages — stage 0 also holds the embedding, the last stage the
 * LM head — optionally choosing each block's recomputation, to minimise the
 * slowest stage's time per micro-batch subject to every stage's memory
 * fitting the device.
 *
 * Because blocks are identical, which blocks of a stage recompute does not
 * matter, only how many: the MILP has integer counts n[s][r] (blocks of
 * stage s with recompute option r) instead of per-block binaries. That is an
 * exact reformulation for uniform blocks, and small enough to solve in
 * microseconds for 128 layers and 64 stages. Contiguity holds by
 * construction: stage s holds the sum_r n[s][r] blocks after stage s-1's.
 *
 * plan_stages_milp solves it with GLPK; plan_stages_dp is an exact dynamic
 * program over (stage, blocks so far) — the test oracle.
 */
#ifndef TRIAD_STAGES_H
#define TRIAD_STAGES_H

#include "../common/spec.h"

#define PLAN_MAX_RC 3

typedef struct {
    int p;                        /* stages */
    int layers;                   /* uniform blocks to place, >= p */
    int n_rc;                     /* recompute options offered, 1..3 */
    spec_recompute rc[PLAN_MAX_RC];
    double t_block_s[PLAN_MAX_RC];   /* fwd + bwd (+ recompute) time of one block, one micro-batch */
    double act_block_bytes[PLAN_MAX_RC]; /* activations one block keeps per micro-batch */
    double static_block_bytes;    /* weights + grads + optimizer of one block */
    const double *t_extra_s;      /* [p] non-block time per micro-batch (embedding, head, p2p) */
    const double *mem_extra_bytes;/* [p] non-block memory (embedding/head weights, scratch) */
    const double *act_extra_bytes;/* [p] non-block activations per micro-batch (final LN) */
    const int *in_flight;         /* [p] micro-batches held at peak */
    double mem_cap_bytes;         /* device memory */
} plan_stage_problem;

typedef struct {
    int feasible;                 /* 0: no assignment fits memory */
    double t_max_s;               /* the slowest stage's time: the objective */
    int counts[SPEC_MAX_PP][PLAN_MAX_RC];
    int stage_layers[SPEC_MAX_PP];
    int worst_stage;              /* when infeasible: the stage closest to fitting fails here */
    double worst_over_bytes;      /* and by how much, for the explanation */
} plan_stage_solution;

/* Time and memory of stage s holding counts[r] blocks. */
double plan_stage_time(const plan_stage_problem *pr, int s, const int *counts);
double plan_stage_mem(const plan_stage_problem *pr, int s, const int *counts);

/* GLPK MILP. Returns SPEC_OK (sol->feasible says whether it fits) or
 * SPEC_ERR with the GLPK failure named in err (never a silent fallback). */
int plan_stages_milp(const plan_stage_problem *pr, plan_stage_solution *sol, char err[SPEC_ERR_LEN]);

/* Exact dynamic program of the same problem (the oracle). */
int plan_stages_dp(const plan_stage_problem *pr, plan_stage_solution *sol, char err[SPEC_ERR_LEN]);

#endif
