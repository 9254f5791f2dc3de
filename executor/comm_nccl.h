/* comm_nccl.h — NCCL under the comm layer (internal to executor/comm_mpi.c,
 * CUDA build only). comm_mpi.c owns the groups and their MPI communicators;
 * a group built with COMM_BACKEND_NCCL also carries one NCCL communicator
 * (ncclGetUniqueId on group rank 0, broadcast over the group's MPI
 * communicator, ncclCommInitRank) and every call of comm.h on that group
 * goes here. Buffers are device buffers; each call is enqueued on the
 * communicator's stream and synchronised before returning, except
 * comm_nccl_iallreduce, comm_nccl_ireducescatter_v and comm_nccl_isend,
 * which record an event that
 * comm_nccl_wait synchronises. comm_nccl_isend uses a second stream; the
 * pipeline does not use it on NCCL (NCCL may run one communicator's
 * operations one at a time, so a pending send can still sit in front of a
 * receive): it exchanges through comm_nccl_exchange, one group per block of
 * its schedule (pipeline.h). Failures end the job (ncclCheck +
 * MPI_Abort). The caller selects the device (cudaSetDevice) before init.
 */
#ifndef TRIAD_COMM_NCCL_H
#define TRIAD_COMM_NCCL_H

#include <mpi.h>
#include <stddef.h>

#include "comm.h"

typedef struct comm_nccl comm_nccl;

comm_nccl *comm_nccl_create(MPI_Comm comm, int rank, int size);
void comm_nccl_destroy(comm_nccl *n);
/* comm_exchange on NCCL: the sends and receives of ops[0..n) in one group. */
void comm_nccl_exchange(comm_nccl *n, const comm_p2p *ops, int k, comm_dtype t);

void comm_nccl_allreduce(comm_nccl *n, void *buf, size_t count, comm_dtype t, int is_max);
void comm_nccl_allgather(comm_nccl *n, const void *send, void *recv, size_t count, comm_dtype t);
void comm_nccl_reducescatter(comm_nccl *n, const void *send, void *recv, size_t count, comm_dtype t);
void comm_nccl_broadcast(comm_nccl *n, void *buf, size_t count, comm_dtype t, int root);
/* comm.h's uneven forms: one grouped ncclReduce / ncclBroadcast per rank
 * (rank r's slice at displs[r], counts[r] elements) */
void comm_nccl_reducescatter_v(comm_nccl *n, const void *send, void *recv, const size_t *counts,
                               const size_t *displs, comm_dtype t);
void comm_nccl_allgather_v_inplace(comm_nccl *n, void *buf, const size_t *counts, const size_t *displs,
                                   comm_dtype t);
/* asynchronous: returns a handle for comm_nccl_wait */
void *comm_nccl_iallreduce(comm_nccl *n, void *buf, size_t count, comm_dtype t);
void *comm_nccl_ireducescatter_v(comm_nccl *n, const void *send, void *recv, const size_t *counts,
                                 const size_t *displs, comm_dtype t);
void *comm_nccl_isend(comm_nccl *n, const void *buf, size_t count, comm_dtype t, int peer);
void comm_nccl_wait(void *handle);

#endif /* TRIAD_COMM_NCCL_H */
