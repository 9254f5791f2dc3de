/* sim_core.h — the inside of the simulator, shared by sim.c, trace.c and the
 * unit tests (which drive it with synthetic per-stage costs so the exact
 * answers do not depend on the cost model's numbers). */
#ifndef TRIAD_SIM_CORE_H
#define TRIAD_SIM_CORE_H

#include "sim.h"
#include "shapes.h"

enum { SIM_FWD = 0, SIM_BWD, SIM_SEND, SIM_TP, SIM_DP, SIM_SYNC, SIM_OPT };
enum { SIM_STREAM_COMPUTE = 0, SIM_STREAM_TP, SIM_STREAM_PP, SIM_STREAM_DP, SIM_N_STREAMS };

typedef struct { int kind, mb, chunk; } sim_op;

/* Per-stage costs of one step (seconds, bytes). Arrays of V = p*v virtual
 * stages (fwd_s, bwd_s, act_bytes) or of p ranks (the rest). */
typedef struct {
    int p, v, m;
    spec_schedule schedule;
    double *fwd_s, *bwd_s;   /* per virtual stage, one micro-batch, tp comm included */
    int64_t *act_bytes;      /* activations kept per micro-batch per virtual stage */
    int64_t *static_bytes;   /* per rank: weights + grads + optimizer + scratch */
    double p2p_s;            /* one activation transfer between neighbours */
    double *dp_s;            /* per rank: data-parallel gradient traffic */
    int dp_buckets;
    double *post_s;          /* per rank: exposed traffic after backward (ZeRO gather, embed sync) */
    double *optimizer_s;     /* per rank */
    double tp_fwd_frac, tp_bwd_frac; /* share of fwd/bwd time that is tp comm (for the trace) */
    /* optional, ranks that sleep between polls (profile wait_coll_s,
     * wake_s): per virtual stage the least an op takes however idle the
     * cores (its compute alone plus its collectives after compute), and
     * the wake-up of a rank whose op waited for a transfer */
    const double *fwd_floor_s, *bwd_floor_s;
    double wake_s;
    /* optional, (p, 2 m v) by rank then op index: a factor on each compute
     * op's duration, and where each op ran (filled) */
    const double *op_scale;
    double *op_t0, *op_t1;
} sim_input;

typedef struct { int rank, stream, kind, mb, vs; double t0, t1; } sim_event;
typedef struct { int rank; double t; int64_t bytes; } sim_mem_point;

typedef struct {
    double busy_s, idle_s, comm_s, exposed_comm_s, end_s;
    int64_t mem_peak_bytes;
    int peak_in_flight;
} sim_stage_state;

struct cost_sim {
    int p, record;
    spec_layout layout;
    double step_s, bubble_s;
    sim_stage_state *st;
    sim_event *ev;
    int n_ev, cap_ev;
    sim_mem_point *mem;
    int n_mem, cap_mem;
};

/* Op order of pipeline rank `rank` (ops must hold 2*m*v entries). */
int sim_schedule_ops(spec_schedule sched, int p, int v, int m, int rank, sim_op *ops);
/* More ranks than cores: the factor on each compute op's duration (into
 * *out, malloc'd, per rank and op) when the costs in `in` were measured
 * with `ranks` ranks at once on `cores` cores and each stage runs on
 * `replicas` ranks (tp * dp). See sim.c. */
int sim_contention_scales(sim_input *in, double ranks, double cores, double replicas, double **out,
                          char err[SPEC_ERR_LEN]);
/* Simulate from explicit per-stage costs. */
int sim_run_input(const sim_input *in, int record, cost_sim **out, char err[SPEC_ERR_LEN]);

#endif
