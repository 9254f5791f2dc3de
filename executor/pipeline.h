/* pipeline.h — one training step's micro-batches on this pipeline rank.
 *
 * Runs the op order of executor/schedule.h (GPipe, 1F1B, interleaved) and
 * moves the (mbs, T, C) activations forward and their gradients backward
 * between neighbouring stages over comm_groups.pp. The model plugs in
 * through two callbacks and a void * context, so this module knows nothing
 * of model.h:
 *
 *   forward(ctx, mb, chunk, in, out) -> loss
 *       in:  (mbs, T, C) input activation of chunk, or NULL on the first
 *            virtual stage (the model embeds micro-batch mb's tokens itself);
 *       out: (mbs, T, C) output to fill, or NULL on the last virtual stage,
 *            which returns micro-batch mb's mean loss (ignored elsewhere).
 *       The model keeps what its backward needs for (mb, chunk) itself.
 *   backward(ctx, mb, chunk, dout, din, last)
 *       dout: (mbs, T, C) gradient of the output, NULL on the last virtual
 *             stage (the loss is the start);
 *       din:  gradient of the input to fill, NULL on the first virtual stage;
 *       last: 1 when this is chunk's final backward of the step, so the
 *             caller may mark its gradients final (dpgrad_mark_ready).
 *
 * Communication: every forward receives its input (blocking comm_recv) just
 * before it runs and sends its output with comm_isend right after; the same
 * for gradients in backward. Receives block, sends never do, and every
 * message is tagged by (direction, micro-batch, chunk), so no op order of the
 * schedules can deadlock (each blocked receive waits on a send that an
 * earlier op of the peer has already posted or will post without waiting).
 * Send buffers are held until the end of the step (one per micro-batch and
 * chunk and direction, act_elems elements of act_dt each) and waited there.
 *
 * On NCCL that reasoning does not hold: NCCL matches a pair's messages in
 * order, without tags, and gives no guarantee that two operations of one
 * communicator progress at once — a send may sit in front of the receive
 * its peer waits for, and 1F1B's steady state (each neighbour sends, then
 * receives from the other) then deadlocks once messages outgrow NCCL's
 * buffers. So when the pp group runs on NCCL (or TRIAD_PP_GROUPED=1, which
 * runs the same order over MPI for the tests) the step runs grouped, as
 * Megatron's send_forward_recv_backward: the ops fall into blocks
 * (sched_blocks) and before each block one comm_exchange sends the previous
 * block's outputs and receives this block's inputs; the last outputs go in
 * a final exchange. Tests/unit/test_comm_schedule.c replays every schedule
 * under NCCL's worst case: the ungrouped order deadlocks, the grouped one
 * does not, and each pair's messages arrive in the order sent.
 *
 * Deliberately left out: overlap of p2p with compute beyond what isend (MPI)
 * and the grouped exchange (NCCL) give.
 */
#ifndef TRIAD_PIPELINE_H
#define TRIAD_PIPELINE_H

#include <stddef.h>

#include "../common/spec.h"
#include "comm.h"
#include "schedule.h"

typedef struct {
    void *ctx;
    float (*forward)(void *ctx, int mb, int chunk, const void *in, void *out);
    void (*backward)(void *ctx, int mb, int chunk, const void *dout, void *din, int last);
} pipe_stage_fns;

typedef struct {
    comm_group *pp;        /* pipeline group, ranks ordered by stage (not owned) */
    spec_schedule kind;
    int p, stage, m, v;    /* stages, this stage, micro-batches per step, chunks per rank */
    size_t act_elems;      /* mbs * T * C: one activation message, elements */
    comm_dtype act_dt;     /* their type (the model's storage: COMM_F32 or COMM_BF16) */
    size_t act_bytes;      /* one message, bytes */
    sched_op *ops;         /* 2 m v ops */
    int n_ops;
    void *in_buf, *grad_buf;   /* (act_elems) receive buffers */
    void *send_act, *send_grad; /* (slots, act_elems) send buffers, reused once their send completed */
    int act_slots, grad_slots;   /* cost_pipe_send_slots: the fewest that cannot deadlock */
    comm_req **act_req, **grad_req; /* the pending send of each slot, or NULL */
    int n_act_sent, n_grad_sent;
    int peak_inflight;     /* largest number of chunk-forwards without their backward, last step */
    int grouped;           /* the grouped exchange (below): on NCCL, or TRIAD_PP_GROUPED=1 */
    int *block;            /* sched_blocks of ops */
} pipe_exec;

/* Build the executor for this rank (stage = comm_group_rank(pp)). Returns 0,
 * or -1 when the schedule is invalid for (kind, p, m, v) with a message in
 * err. */
int pipe_init(pipe_exec *pe, comm_group *pp, spec_schedule kind, int m, int v, size_t act_elems, comm_dtype act_dt,
              char err[SPEC_ERR_LEN]);
void pipe_free(pipe_exec *pe);

/* Run one step: every op of the schedule through fns. Returns the sum of
 * the micro-batch losses computed on this rank (non-zero only on the rank
 * holding the last virtual stage). */
double pipe_run_step(pipe_exec *pe, const pipe_stage_fns *fns);

#endif /* TRIAD_PIPELINE_H */
