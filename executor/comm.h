/* comm.h — the executor's communication layer: one interface, two
 * implementations (comm_mpi.c: MPI over host buffers, or GPU buffers staged
 * through the host; comm_nccl.c: NCCL on GPU buffers).
 *
 * A comm_group is one communicator (the whole world, a tp group, a dp group,
 * a pp group). Counts are ELEMENTS, never bytes; the element type is explicit
 * in the function name or the dtype argument. Every call is collective over
 * its group (all members call it in the same order) except send/recv.
 * Failures end the whole job (MPI_Abort with rank, host, file:line and the
 * library's message): no function here returns an error.
 *
 * Deliberately left out: non-blocking p2p other than the bucketed
 * all-reduce handles below; the schedules are written so blocking p2p with
 * the order of the schedule cannot deadlock (sends and receives are paired by
 * comm_sendrecv where both directions happen at once).
 */
#ifndef TRIAD_COMM_H
#define TRIAD_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { COMM_F32 = 0, COMM_BF16, COMM_F64, COMM_I64 } comm_dtype;
typedef enum { COMM_BACKEND_MPI = 0, COMM_BACKEND_NCCL } comm_backend;
typedef enum { COMM_MEM_HOST = 0, COMM_MEM_DEVICE } comm_mem;

typedef struct comm_group comm_group; /* opaque */

/* The process groups of one rank, built from the Megatron rank order in
 * common/rankmap.h: rank = tp_rank + tp * (dp_rank + dp * pp_rank). */
typedef struct {
    comm_group *world;
    comm_group *tp;     /* ranks with the same (dp, pp): size tp */
    comm_group *dp;     /* ranks with the same (tp, pp): size dp */
    comm_group *pp;     /* ranks with the same (tp, dp): size pp, ordered by stage */
    comm_group *embed;  /* first and last pp stage of the same (tp, dp): tied embedding;
                           NULL when pp == 1 */
    int rank, world_size;
    int tp_rank, dp_rank, pp_rank;
    int tp_size, dp_size, pp_size;
} comm_groups;

/* Initialise MPI (MPI_Init_thread, FUNNELED) if not yet done; returns world
 * rank and size. comm_finalize calls MPI_Finalize. */
void comm_init(int *argc, char ***argv, int *rank, int *world_size);
void comm_finalize(void);
/* After comm_init: the most ranks that share one node (MPI_COMM_TYPE_SHARED),
 * and the smallest v over the world (collective: every rank calls it). */
int comm_node_ranks(void);
int comm_world_min_int(int v);

/* Build the groups for a (tp, dp, pp) layout over MPI_COMM_WORLD. The world
 * size must equal tp * dp * pp (checked by the caller before). mem says
 * where the buffers passed to the collectives live; backend picks MPI or
 * NCCL (NCCL only in a CUDA build). */
void comm_groups_init(comm_groups *g, int tp, int dp, int pp, comm_backend backend, comm_mem mem);
void comm_groups_free(comm_groups *g);

int comm_group_size(const comm_group *c);
int comm_group_rank(const comm_group *c);

/* In-place sum over the group of count elements. */
void comm_allreduce_sum(comm_group *c, void *buf, size_t count, comm_dtype t);
/* In-place max (used for NaN/Inf flags and the vocab-parallel softmax). */
void comm_allreduce_max(comm_group *c, void *buf, size_t count, comm_dtype t);
/* recv (count * size elems) <- concatenation of every rank's send (count). */
void comm_allgather(comm_group *c, const void *send, void *recv, size_t count, comm_dtype t);
/* recv (count elems) <- this rank's slice of the sum of every rank's send
 * (count * size elems, slices in rank order). */
void comm_reducescatter_sum(comm_group *c, const void *send, void *recv, size_t count, comm_dtype t);
/* Uneven forms (ZeRO-2: a block's gradients and the parameter shards fall
 * unevenly on the dp ranks). counts[r] elements for group rank r (zeros
 * allowed), r's slice at the sum of counts[0..r) — MPI_Reduce_scatter and
 * MPI_Allgatherv; over NCCL one grouped ncclReduce / ncclBroadcast per rank.
 * reducescatter_v: recv (counts[me]) <- my slice of the sum of every rank's
 * send (sum of counts). allgather_v_inplace: every rank's slice of buf, in
 * place, from its owner. F32, F64 and I64 (bf16 is refused: no caller). */
void comm_reducescatter_v_sum(comm_group *c, const void *send, void *recv, const size_t *counts, comm_dtype t);
void comm_allgather_v_inplace(comm_group *c, void *buf, const size_t *counts, comm_dtype t);
void comm_broadcast(comm_group *c, void *buf, size_t count, comm_dtype t, int root);
void comm_barrier(comm_group *c);

/* Point to point inside a group (peer = group rank). Blocking. */
void comm_send(comm_group *c, const void *buf, size_t count, comm_dtype t, int peer, int tag);
void comm_recv(comm_group *c, void *buf, size_t count, comm_dtype t, int peer, int tag);
/* Send to one peer and receive from another at once (either may be -1). */
void comm_sendrecv(comm_group *c, const void *sendbuf, size_t send_count, int dest,
                   void *recvbuf, size_t recv_count, int src, comm_dtype t, int tag);

/* One group of point-to-point transfers that complete together (blocking):
 * every receive and send of ops[0..n) is posted at once and all are waited
 * (MPI: Irecv/Isend by tag; NCCL: one ncclGroupStart/End). The pipeline's
 * NCCL path (pipeline.h) pairs each op's sends with the next receives so, as
 * Megatron's send_forward_recv_backward, no send waits in front of a receive
 * its peer needs first. */
typedef struct {
    void *buf;
    size_t count;
    int peer, tag;
    int is_send;
} comm_p2p;
void comm_exchange(comm_group *c, const comm_p2p *ops, int n, comm_dtype t);
/* Whether the group's device-buffer calls run on NCCL. */
int comm_group_nccl(const comm_group *c);

/* Non-blocking all-reduce for data-parallel gradient buckets: start it as
 * soon as a bucket's gradients are final, wait before the optimizer. */
typedef struct comm_req comm_req;
comm_req *comm_iallreduce_sum(comm_group *c, void *buf, size_t count, comm_dtype t);
/* Non-blocking comm_reducescatter_v_sum (ZeRO-1's gradient buckets, as
 * Megatron's distributed optimizer overlaps them with backward): send must
 * stay untouched and recv unread until comm_wait. counts is copied. */
comm_req *comm_ireducescatter_v_sum(comm_group *c, const void *send, void *recv, const size_t *counts, comm_dtype t);
void comm_wait(comm_req *r); /* frees r */

/* Non-blocking send (added for the pipeline executor): buf must stay
 * untouched until comm_wait. Receives stay blocking, so a schedule whose
 * data dependencies are acyclic cannot deadlock whatever its op order. */
comm_req *comm_isend(comm_group *c, const void *buf, size_t count, comm_dtype t, int peer, int tag);

size_t comm_dtype_size(comm_dtype t);

/* Wall seconds this rank has spent blocked in communication since it
 * started: MPI waits and blocking calls (waiting for peers included: a
 * pipeline bubble is time in a receive), NCCL calls and waits. */
double comm_time_s(void);

/* Device memory for the MPI backend's staging: how to tell a device pointer
 * from a host one and copy between them. A device group (COMM_MEM_DEVICE)
 * accepts both kinds of pointer; only device ones are staged through the
 * host. A CUDA build uses CUDA's when none are set; a build without CUDA
 * needs them set before building device groups (the executor's emulated
 * device, exec_set_backend). NULL unsets. */
typedef struct {
    int (*is_device)(const void *p);
    void (*to_host)(void *dst, const void *src, int64_t bytes);
    void (*to_device)(void *dst, const void *src, int64_t bytes);
} comm_device_hooks;
void comm_set_device_hooks(const comm_device_hooks *h);

#endif /* TRIAD_COMM_H */
