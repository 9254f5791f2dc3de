/* pipeline.c — the pipeline executor (contract in pipeline.h). */
#include "pipeline.h"

#include "../costmodel/shapes.h"
#include "../kernels/kernels.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pipe_init(pipe_exec *pe, comm_group *pp, spec_schedule kind, int m, int v, size_t act_elems, comm_dtype act_dt,
              char err[SPEC_ERR_LEN])
{
    memset(pe, 0, sizeof *pe);
    pe->pp = pp;
    pe->kind = kind;
    pe->p = comm_group_size(pp);
    pe->stage = comm_group_rank(pp);
    pe->m = m;
    pe->v = v;
    pe->act_elems = act_elems;
    pe->act_dt = act_dt;
    pe->act_bytes = act_elems * comm_dtype_size(act_dt);
    int cap = sched_n_ops(m, v);
    pe->ops = malloc(sizeof *pe->ops * (size_t)cap);
    pe->block = malloc(sizeof *pe->block * (size_t)cap);
    pe->act_slots = cost_pipe_send_slots(kind, pe->p, pe->stage, m, v, 0);
    pe->grad_slots = cost_pipe_send_slots(kind, pe->p, pe->stage, m, v, 1);
    pe->act_req = calloc((size_t)pe->act_slots, sizeof *pe->act_req);
    pe->grad_req = calloc((size_t)pe->grad_slots, sizeof *pe->grad_req);
    /* the messages live where the model's activations do (exec_backend) */
    const kern_ops *ops = exec_backend();
    pe->in_buf = ops->alloc((int64_t)pe->act_bytes);
    pe->grad_buf = ops->alloc((int64_t)pe->act_bytes);
    pe->send_act = ops->alloc((int64_t)(pe->act_bytes * (size_t)pe->act_slots));
    pe->send_grad = ops->alloc((int64_t)(pe->act_bytes * (size_t)pe->grad_slots));
    if (!pe->ops || !pe->block || !pe->act_req || !pe->grad_req || !pe->in_buf || !pe->grad_buf || !pe->send_act ||
        !pe->send_grad) {
        snprintf(err, SPEC_ERR_LEN, "pipeline: out of memory for %d micro-batches x %d chunks of %zu elements", m,
                 v, act_elems);
        pipe_free(pe);
        return -1;
    }
    pe->n_ops = sched_build(kind, pe->p, pe->stage, m, v, pe->ops, cap);
    if (pe->n_ops < 0) {
        snprintf(err, SPEC_ERR_LEN, "pipeline: schedule %s is invalid for pp=%d, micro-batches=%d, v=%d%s",
                 spec_schedule_name(kind), pe->p, m, v,
                 kind == SPEC_SCHED_INTERLEAVED ? " (interleaved needs micro-batches % pp == 0)" : "");
        pipe_free(pe);
        return -1;
    }
    sched_blocks(pe->ops, pe->n_ops, v, pe->block);
    const char *g = getenv("TRIAD_PP_GROUPED");
    if (g && *g && strcmp(g, "0") && strcmp(g, "1")) {
        snprintf(err, SPEC_ERR_LEN, "pipeline: TRIAD_PP_GROUPED is '%s', not 0 or 1", g);
        pipe_free(pe);
        return -1;
    }
    pe->grouped = g && *g ? *g == '1' : comm_group_nccl(pp);
    return 0;
}

void pipe_free(pipe_exec *pe)
{
    if (!pe)
        return;
    free(pe->ops);
    free(pe->block);
    free(pe->act_req);
    free(pe->grad_req);
    const kern_ops *ops = exec_backend();
    if (pe->in_buf)
        ops->free(pe->in_buf);
    if (pe->grad_buf)
        ops->free(pe->grad_buf);
    if (pe->send_act)
        ops->free(pe->send_act);
    if (pe->send_grad)
        ops->free(pe->send_grad);
    memset(pe, 0, sizeof *pe);
}

/* A free send slot of a direction: the next in turn, after its previous
 * send has completed. */
static void *take_slot(void *bufs, comm_req **reqs, int slots, int *sent, size_t bytes, int *slot)
{
    *slot = (*sent)++ % slots;
    if (reqs[*slot]) {
        comm_wait(reqs[*slot]);
        reqs[*slot] = NULL;
    }
    return (char *)bufs + (size_t)*slot * bytes;
}

/* One step's running state: the losses of the last virtual stage, the
 * chunk-forwards without their backward, the backwards left per chunk. */
typedef struct {
    double loss_sum;
    int inflight;
    int *bwd_left;
} pipe_step;

/* Compute op o, its input already received (in_buf or grad_buf), its
 * output into out (NULL when it sends nothing). */
static void run_op(pipe_exec *pe, const pipe_stage_fns *fns, const sched_op *o, void *out, pipe_step *st)
{
    if (o->dir == SCHED_FWD) {
        float loss = fns->forward(fns->ctx, o->mb, o->chunk, o->recv_peer >= 0 ? pe->in_buf : NULL, out);
        if (o->send_peer < 0)
            st->loss_sum += loss;
        if (++st->inflight > pe->peak_inflight)
            pe->peak_inflight = st->inflight;
    } else {
        int last = --st->bwd_left[o->chunk] == 0;
        fns->backward(fns->ctx, o->mb, o->chunk, o->recv_peer >= 0 ? pe->grad_buf : NULL, out, last);
        st->inflight--;
    }
}

/* The grouped order (pipeline.h): block by block, each block's inputs
 * received in one exchange with the previous block's outputs. Every send
 * has completed when the exchange returns, so the first send slot of each
 * direction is reused at once (a block's two sends go in different
 * directions). */
static void run_grouped(pipe_exec *pe, const pipe_stage_fns *fns, pipe_step *st)
{
    size_t ae = pe->act_elems;
    comm_p2p x[4];
    int nx = 0;
    for (int i = 0; i < pe->n_ops;) {
        int end = i;
        while (end < pe->n_ops && pe->block[end] == pe->block[i])
            end++;
        for (int j = i; j < end; j++) {
            const sched_op *o = &pe->ops[j];
            if (o->recv_peer >= 0)
                x[nx++] = (comm_p2p){o->dir == SCHED_FWD ? pe->in_buf : pe->grad_buf, ae, o->recv_peer, o->recv_tag, 0};
        }
        comm_exchange(pe->pp, x, nx, pe->act_dt);
        nx = 0;
        for (int j = i; j < end; j++) {
            const sched_op *o = &pe->ops[j];
            void *out = o->send_peer < 0 ? NULL : o->dir == SCHED_FWD ? pe->send_act : pe->send_grad;
            run_op(pe, fns, o, out, st);
            if (out)
                x[nx++] = (comm_p2p){out, ae, o->send_peer, o->send_tag, 1};
        }
        i = end;
    }
    comm_exchange(pe->pp, x, nx, pe->act_dt);
}

/* The default order: each op receives its input (blocking) and sends its
 * output with comm_isend from the next free slot of its direction. */
static void run_isend(pipe_exec *pe, const pipe_stage_fns *fns, pipe_step *st)
{
    size_t ae = pe->act_elems, ab = pe->act_bytes;
    comm_dtype dt = pe->act_dt;
    pe->n_act_sent = pe->n_grad_sent = 0;
    for (int i = 0; i < pe->n_ops; i++) {
        const sched_op *o = &pe->ops[i];
        int fwd = o->dir == SCHED_FWD, slot = 0;
        if (o->recv_peer >= 0)
            comm_recv(pe->pp, fwd ? pe->in_buf : pe->grad_buf, ae, dt, o->recv_peer, o->recv_tag);
        void *out = NULL;
        if (o->send_peer >= 0)
            out = fwd ? take_slot(pe->send_act, pe->act_req, pe->act_slots, &pe->n_act_sent, ab, &slot)
                      : take_slot(pe->send_grad, pe->grad_req, pe->grad_slots, &pe->n_grad_sent, ab, &slot);
        run_op(pe, fns, o, out, st);
        if (out)
            (fwd ? pe->act_req : pe->grad_req)[slot] = comm_isend(pe->pp, out, ae, dt, o->send_peer, o->send_tag);
    }
    for (int i = 0; i < pe->act_slots; i++)
        if (pe->act_req[i]) {
            comm_wait(pe->act_req[i]);
            pe->act_req[i] = NULL;
        }
    for (int i = 0; i < pe->grad_slots; i++)
        if (pe->grad_req[i]) {
            comm_wait(pe->grad_req[i]);
            pe->grad_req[i] = NULL;
        }
}

double pipe_run_step(pipe_exec *pe, const pipe_stage_fns *fns)
{
    pipe_step st = {0, 0, calloc((size_t)pe->v, sizeof(int))};
    for (int c = 0; c < pe->v; c++)
        st.bwd_left[c] = pe->m;
    pe->peak_inflight = 0;
    if (pe->grouped)
        run_grouped(pe, fns, &st);
    else
        run_isend(pe, fns, &st);
    free(st.bwd_left);
    return st.loss_sum;
}
