/* schedule.h — the op order of one pipeline rank (pure, no MPI).
 *
 * For p pipeline stages, m micro-batches and v model chunks per rank, lists
 * the forward and backward passes one stage runs in one training step, in
 * Megatron-LM's order (megatron/core/pipeline_parallel/schedules.py):
 *
 *   GPipe:        all m forwards, then all m backwards (backwards in
 *                 micro-batch order).
 *   1F1B:         warm-up of min(p - i - 1, m) forwards on stage i, then
 *                 one forward / one backward alternating (steady state), then
 *                 the remaining backwards (cool-down).
 *   interleaved:  v chunks per rank, virtual stage s = chunk * p + i; warm-up
 *                 of min((p - i - 1) * 2 + (v - 1) * p, m v) chunk-forwards
 *                 (all m v when m == p), the k-th forward runs chunk
 *                 (k mod p v) / p on micro-batch (k / (p v)) p + k mod p,
 *                 the k-th backward chunk v - 1 - (k mod p v) / p on the same
 *                 micro-batch formula. Needs m % p == 0 (as Megatron).
 *
 * Each op also names what it receives before it runs and sends after: a
 * forward of virtual stage s receives its input activation from virtual
 * stage s - 1 and sends its output to s + 1; a backward receives the output
 * gradient from s + 1 and sends the input gradient to s - 1 (none at the two
 * ends). Peers are pp-group ranks; tags identify (direction, micro-batch,
 * chunk) so messages can never be confused.
 */
#ifndef TRIAD_SCHEDULE_H
#define TRIAD_SCHEDULE_H

#include "../common/spec.h"

typedef enum { SCHED_FWD = 0, SCHED_BWD } sched_dir;

typedef struct {
    sched_dir dir;
    int mb;        /* micro-batch, 0 .. m-1 */
    int chunk;     /* model chunk on this rank, 0 .. v-1 */
    int recv_peer; /* pp rank to receive the input (FWD: activation, BWD: gradient) from, -1 none */
    int recv_tag;
    int send_peer; /* pp rank to send the output (FWD: activation, BWD: gradient) to, -1 none */
    int send_tag;
} sched_op;

/* Number of ops of one rank: 2 m v. */
static inline int sched_n_ops(int m, int v) { return 2 * m * v; }

/* Fill ops (capacity cap >= 2 m v) with the order of stage `stage` of p.
 * v must be 1 unless kind is SPEC_SCHED_INTERLEAVED. Returns the number of
 * ops, or -1 when the arguments are invalid (p, m, v < 1, stage out of range,
 * interleaved with m % p != 0, capacity too small). */
int sched_build(spec_schedule kind, int p, int stage, int m, int v, sched_op *ops, int cap);

/* Tag of the message carrying micro-batch mb of chunk for direction dir:
 * unique per (dir, mb, chunk) for chunk < v. */
static inline int sched_tag(sched_dir dir, int mb, int chunk, int v) { return (mb * v + chunk) * 2 + (int)dir; }

/* The op blocks of the grouped (NCCL) exchange: block[i] for each of the n
 * ops of one rank, and the number of blocks. Every op is its own block,
 * except that in the steady state of an interleaved schedule (v > 1) a
 * forward and the backward after it form one (Megatron's interleaved
 * steady state: compute both, then one group sends both outputs and
 * receives both next inputs). The executor sends block b's outputs in the
 * same group as block b + 1's inputs. Under NCCL's worst case (the
 * operations of a communicator run one after another and a send completes
 * only when its receive is posted) these groups cannot deadlock for any
 * schedule, p and m (tests/unit/test_comm_schedule.c), where one operation
 * per receive and per send does for 1F1B and interleaved. */
int sched_blocks(const sched_op *ops, int n, int v, int *block);
/* Largest number of chunk-forwards whose backward has not yet run, over the
 * op list: the peak of activations held (1F1B: min(p - i, m); GPipe: m). */
int sched_peak_inflight(const sched_op *ops, int n);

#endif /* TRIAD_SCHEDULE_H */
