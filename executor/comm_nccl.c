/* comm_nccl.c — NCCL under the comm layer (contract in comm_nccl.h).
 * Built only with CUDA (the Makefile lists it among the CUDA-only files).
 * Tags of comm.h's p2p calls are not needed: NCCL matches sends and
 * receives in issue order per peer, which the schedules respect.
 */
#include "comm_nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* the CUDA and NCCL headers test __cplusplus with #if: -Wundef off for them */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wundef"
#include <cuda_runtime.h>
#include <nccl.h>
#pragma GCC diagnostic pop

struct comm_nccl {
    ncclComm_t comm;
    cudaStream_t stream, send_stream;
    cudaEvent_t ready; /* the compute stream's work so far */
};

static void comm_nccl_die(const char *call, const char *msg, const char *file, int line)
{
    int rank = -1;
    char host[256] = "?";
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    gethostname(host, sizeof host);
    fprintf(stderr, "triad: [rank %d on %s] %s:%d: %s failed: %s\n", rank, host, file, line, call, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

#define ncclCheck(call)                                                              \
    do {                                                                             \
        ncclResult_t nc_err_ = (call);                                               \
        if (nc_err_ != ncclSuccess)                                                  \
            comm_nccl_die(#call, ncclGetErrorString(nc_err_), __FILE__, __LINE__);   \
    } while (0)
#define cudaCheck(call)                                                              \
    do {                                                                             \
        cudaError_t cu_err_ = (call);                                                \
        if (cu_err_ != cudaSuccess)                                                  \
            comm_nccl_die(#call, cudaGetErrorString(cu_err_), __FILE__, __LINE__);   \
    } while (0)
#define mpiCheckN(call)                                                              \
    do {                                                                             \
        int mp_err_ = (call);                                                        \
        if (mp_err_ != MPI_SUCCESS) {                                                \
            char m_[MPI_MAX_ERROR_STRING];                                           \
            int l_ = 0;                                                              \
            MPI_Error_string(mp_err_, m_, &l_);                                      \
            comm_nccl_die(#call, m_, __FILE__, __LINE__);                            \
        }                                                                            \
    } while (0)

static ncclDataType_t comm_nccl_type(comm_dtype t)
{
    switch (t) {
    case COMM_F32: return ncclFloat32;
    case COMM_BF16: return ncclBfloat16;
    case COMM_F64: return ncclFloat64;
    case COMM_I64: return ncclInt64;
    }
    comm_nccl_die("comm_nccl_type", "unknown comm_dtype", __FILE__, __LINE__);
    return ncclFloat32;
}

comm_nccl *comm_nccl_create(MPI_Comm comm, int rank, int size)
{
    comm_nccl *n = calloc(1, sizeof *n);
    if (!n)
        comm_nccl_die("calloc", "out of host memory", __FILE__, __LINE__);
    ncclUniqueId id;
    if (rank == 0)
        ncclCheck(ncclGetUniqueId(&id));
    mpiCheckN(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm));
    ncclCheck(ncclCommInitRank(&n->comm, size, id, rank));
    cudaCheck(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    cudaCheck(cudaStreamCreateWithFlags(&n->send_stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming));
    return n;
}

void comm_nccl_destroy(comm_nccl *n)
{
    if (!n)
        return;
    cudaStreamSynchronize(n->stream);
    cudaStreamSynchronize(n->send_stream);
    ncclCommDestroy(n->comm);
    cudaEventDestroy(n->ready);
    cudaStreamDestroy(n->stream);
    cudaStreamDestroy(n->send_stream);
    free(n);
}

/* The comm streams are non-blocking: they do not wait for the default
 * stream by themselves, where the kernels that wrote the buffers run (and
 * may still be running: launches are asynchronous). Every call first makes
 * its stream wait for the default stream's work issued so far; the default
 * stream is not held back by the comm streams, so a bucket's all-reduce
 * overlaps the backward kernels issued after it. */
static cudaStream_t after_compute(comm_nccl *n, cudaStream_t s)
{
    cudaCheck(cudaEventRecord(n->ready, 0));
    cudaCheck(cudaStreamWaitEvent(s, n->ready, 0));
    return s;
}

void comm_nccl_allreduce(comm_nccl *n, void *buf, size_t count, comm_dtype t, int is_max)
{
    ncclCheck(ncclAllReduce(buf, buf, count, comm_nccl_type(t), is_max ? ncclMax : ncclSum, n->comm,
                            after_compute(n, n->stream)));
    cudaCheck(cudaStreamSynchronize(n->stream));
}

void comm_nccl_allgather(comm_nccl *n, const void *send, void *recv, size_t count, comm_dtype t)
{
    ncclCheck(ncclAllGather(send, recv, count, comm_nccl_type(t), n->comm, after_compute(n, n->stream)));
    cudaCheck(cudaStreamSynchronize(n->stream));
}

void comm_nccl_reducescatter(comm_nccl *n, const void *send, void *recv, size_t count, comm_dtype t)
{
    ncclCheck(ncclReduceScatter(send, recv, count, comm_nccl_type(t), ncclSum, n->comm,
                                after_compute(n, n->stream)));
    cudaCheck(cudaStreamSynchronize(n->stream));
}

void comm_nccl_broadcast(comm_nccl *n, void *buf, size_t count, comm_dtype t, int root)
{
    ncclCheck(ncclBroadcast(buf, buf, count, comm_nccl_type(t), root, n->comm, after_compute(n, n->stream)));
    cudaCheck(cudaStreamSynchronize(n->stream));
}

/* the uneven reduce-scatter enqueued on the comm stream, which it returns */
static cudaStream_t issue_reducescatter_v(comm_nccl *n, const void *send, void *recv, const size_t *counts,
                                          const size_t *displs, comm_dtype t)
{
    int me = 0, size = 0;
    ncclCheck(ncclCommUserRank(n->comm, &me));
    ncclCheck(ncclCommCount(n->comm, &size));
    size_t es = comm_dtype_size(t);
    cudaStream_t s = after_compute(n, n->stream);
    ncclCheck(ncclGroupStart());
    for (int r = 0; r < size; r++)
        if (counts[r]) /* recvbuff is used on the root only: elsewhere any device pointer */
            ncclCheck(ncclReduce((const char *)send + displs[r] * es, r == me ? recv : (void *)send, counts[r],
                                 comm_nccl_type(t), ncclSum, r, n->comm, s));
    ncclCheck(ncclGroupEnd());
    return s;
}

void comm_nccl_reducescatter_v(comm_nccl *n, const void *send, void *recv, const size_t *counts,
                               const size_t *displs, comm_dtype t)
{
    cudaCheck(cudaStreamSynchronize(issue_reducescatter_v(n, send, recv, counts, displs, t)));
}

void comm_nccl_allgather_v_inplace(comm_nccl *n, void *buf, const size_t *counts, const size_t *displs,
                                   comm_dtype t)
{
    int size = 0;
    ncclCheck(ncclCommCount(n->comm, &size));
    size_t es = comm_dtype_size(t);
    cudaStream_t s = after_compute(n, n->stream);
    ncclCheck(ncclGroupStart());
    for (int r = 0; r < size; r++)
        if (counts[r]) {
            char *p = (char *)buf + displs[r] * es;
            ncclCheck(ncclBroadcast(p, p, counts[r], comm_nccl_type(t), r, n->comm, s));
        }
    ncclCheck(ncclGroupEnd());
    cudaCheck(cudaStreamSynchronize(s));
}

void comm_nccl_exchange(comm_nccl *n, const comm_p2p *ops, int k, comm_dtype t)
{
    after_compute(n, n->stream);
    ncclCheck(ncclGroupStart());
    for (int i = 0; i < k; i++)
        if (ops[i].is_send)
            ncclCheck(ncclSend(ops[i].buf, ops[i].count, comm_nccl_type(t), ops[i].peer, n->comm, n->stream));
        else
            ncclCheck(ncclRecv(ops[i].buf, ops[i].count, comm_nccl_type(t), ops[i].peer, n->comm, n->stream));
    ncclCheck(ncclGroupEnd());
    cudaCheck(cudaStreamSynchronize(n->stream));
}

static void *comm_nccl_event(cudaStream_t s)
{
    cudaEvent_t *e = malloc(sizeof *e);
    if (!e)
        comm_nccl_die("malloc", "out of host memory", __FILE__, __LINE__);
    cudaCheck(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
    cudaCheck(cudaEventRecord(*e, s));
    return e;
}

void *comm_nccl_iallreduce(comm_nccl *n, void *buf, size_t count, comm_dtype t)
{
    ncclCheck(ncclAllReduce(buf, buf, count, comm_nccl_type(t), ncclSum, n->comm,
                            after_compute(n, n->stream)));
    return comm_nccl_event(n->stream);
}

void *comm_nccl_ireducescatter_v(comm_nccl *n, const void *send, void *recv, const size_t *counts,
                                 const size_t *displs, comm_dtype t)
{
    return comm_nccl_event(issue_reducescatter_v(n, send, recv, counts, displs, t));
}

void *comm_nccl_isend(comm_nccl *n, const void *buf, size_t count, comm_dtype t, int peer)
{
    ncclCheck(ncclSend(buf, count, comm_nccl_type(t), peer, n->comm, after_compute(n, n->send_stream)));
    return comm_nccl_event(n->send_stream);
}

void comm_nccl_wait(void *handle)
{
    cudaEvent_t *e = handle;
    cudaCheck(cudaEventSynchronize(*e));
    cudaCheck(cudaEventDestroy(*e));
    free(e);
}
