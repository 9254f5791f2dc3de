/* sim.h — the discrete-event simulator of one training step.
 *
 * Every simulated rank has a compute stream and communication streams (tp,
 * pp send/recv, dp). The schedule (GPipe, 1F1B, interleaved 1F1B) emits
 * forward, backward and recompute ops per micro-batch and per stage, fed by
 * the same per-op costs as the closed form (cost.h). Collectives start when
 * every member of their group is ready; a pipeline receive waits for its
 * send. Ranks that are symmetric (same pp stage, different tp / dp rank) are
 * simulated once: one representative rank per stage.
 */
#ifndef TRIAD_SIM_H
#define TRIAD_SIM_H

#include <stdint.h>
#include "cost.h"

typedef struct {
    int record_events;   /* keep every op for a trace / SVG (costs memory) */
    int free_comm;       /* zero-cost communication (for exact tests) */
} cost_sim_opts;

void cost_sim_opts_default(cost_sim_opts *o);

typedef struct cost_sim cost_sim; /* the result of one simulation, opaque */

/* Simulate one step. Returns SPEC_OK and a result the caller frees with
 * cost_sim_free, or SPEC_ERR with a message. out->source is "simulator". */
int cost_sim_run(const spec_model *m, const spec_cluster *c, const spec_layout *l,
                 int64_t global_batch, const cost_profile *p, const cost_sim_opts *o,
                 cost_sim **sim, cost_result *out, char err[SPEC_ERR_LEN]);

/* Write the timeline as Chrome trace-event JSON (one process per rank, one
 * thread per stream) / as an SVG picture. Need record_events. */
int cost_sim_write_trace(const cost_sim *s, const char *path, char err[SPEC_ERR_LEN]);
int cost_sim_write_svg(const cost_sim *s, const char *path, char err[SPEC_ERR_LEN]);

/* Per-stage breakdown, for tables: busy, idle and communication seconds and
 * the memory peak of the representative rank of pp stage i. */
typedef struct {
    double busy_s, idle_s, comm_s, exposed_comm_s;
    int64_t mem_peak_bytes;
    int peak_in_flight; /* micro-batches whose activations were held at once */
} cost_sim_stage;

int cost_sim_stages(const cost_sim *s);
void cost_sim_stage_at(const cost_sim *s, int i, cost_sim_stage *out);

void cost_sim_free(cost_sim *s);

#endif /* TRIAD_SIM_H */
