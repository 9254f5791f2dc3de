/* nccl_emu.cc — NCCL for tests/cudaemu (include/nccl.h): each rank is a
 * process with its own emulated GPU (device memory is host memory, see
 * cuda_emu_rt.cc), and a communicator of n ranks carries its collectives
 * and sends over MPI, which the program using NCCL has initialised (triad
 * does, MPI launches its ranks). So comm_nccl.c runs its multi-rank code —
 * communicators per group from a unique id, grouped reduces, broadcasts and
 * send/receive pairs, sends left in flight on their own stream — on a
 * machine without GPUs; NCCL's own algorithms, kernels and transport are
 * not what runs (make check-gpu runs those).
 *
 * Semantics kept from NCCL's documentation: every buffer is device memory
 * of the count and type given; a collective runs when called, in the order
 * the ranks call them; inside ncclGroupStart/End sends and receives are
 * posted at once and complete at the outermost ncclGroupEnd (so a pair of
 * exchanges cannot deadlock), collectives run as they are called; a send
 * outside a group is left in flight and completes when its stream, an
 * event recorded on it after the send, or the device is synchronised — as
 * a send kernel ends only once its peer has received. Sends and receives
 * match per peer in issue order. bf16 reductions widen to fp32, reduce and
 * round once (to nearest even), as the MPI comm layer does.
 *
 * Left out: ncclAvg and ncclProd; communicators split from others; the
 * nonblocking communicator API. A communicator of one rank needs no MPI. */
#include "include/cuda_runtime.h"
#include "include/nccl.h"

#define OMPI_SKIP_MPICXX 1 /* the C API only */
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <vector>

extern void (*cuda_emu_send_waiter)(cudaStream_t, uint64_t);
uint64_t cuda_emu_stream_sends(cudaStream_t s);
void cuda_emu_stream_count_send(cudaStream_t s);

struct cuda_emu_nccl {
    int nranks, rank;
    MPI_Comm comm; /* MPI_COMM_NULL for one rank */
};

namespace {

const int TAG_INIT = 29000, TAG_P2P = 7; /* world tags of the id exchange; p2p on the communicator */

struct pending_send {
    MPI_Request req;
    cudaStream_t stream;
    uint64_t seq; /* the stream's send count after this one */
};
std::vector<pending_send> g_sends;          /* sends outside a group, in flight */
std::vector<MPI_Request> g_group;           /* sends and receives of the open group */
int g_group_depth;
int g_ids; /* unique ids this process made */

size_t type_bytes(ncclDataType_t t)
{
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    }
    return 0;
}

/* the MPI type of a reduction's elements; bf16 is reduced as fp32 */
MPI_Datatype mpi_type(ncclDataType_t t)
{
    switch (t) {
    case ncclInt8: return MPI_INT8_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclInt32: return MPI_INT32_T;
    case ncclUint32: return MPI_UINT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclUint64: return MPI_UINT64_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    case ncclFloat16: case ncclBfloat16: return MPI_DATATYPE_NULL;
    }
    return MPI_DATATYPE_NULL;
}

int mpi_op(ncclRedOp_t op, MPI_Op *out)
{
    switch (op) {
    case ncclSum: *out = MPI_SUM; return 0;
    case ncclMax: *out = MPI_MAX; return 0;
    case ncclMin: *out = MPI_MIN; return 0;
    default: return -1;
    }
}

float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) /* NaN stays NaN */
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

ncclResult_t bad(const char *call, const char *what)
{
    fprintf(stderr, "cuda_emu: %s: %s\n", call, what);
    return ncclInvalidArgument;
}

/* buffers and arguments of a call: device memory of the bytes given */
ncclResult_t check(const char *call, ncclComm_t comm, const void *a, const void *b, size_t bytes)
{
    if (!comm)
        return bad(call, "no communicator");
    if (bytes && ((a && !cuda_emu_is_device(a, bytes)) || (b && !cuda_emu_is_device(b, bytes)))) {
        fprintf(stderr, "cuda_emu: %s: a buffer of %zu bytes is not device memory\n", call, bytes);
        return ncclInvalidArgument;
    }
    return ncclSuccess;
}

ncclResult_t mpi_ok(int e) { return e == MPI_SUCCESS ? ncclSuccess : ncclSystemError; }

void wait_sends(cudaStream_t s, uint64_t upto)
{
    for (size_t i = 0; i < g_sends.size();) {
        if (!s || (g_sends[i].stream == s && g_sends[i].seq <= upto)) {
            MPI_Wait(&g_sends[i].req, MPI_STATUS_IGNORE);
            g_sends.erase(g_sends.begin() + (long)i);
        } else {
            i++;
        }
    }
}

/* a reduction of count elements over the communicator: to every rank
 * (root < 0) or to root; bf16 through fp32 */
ncclResult_t reduce(const char *call, const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                    int root, ncclComm_t comm)
{
    MPI_Op mop;
    if (mpi_op(op, &mop))
        return bad(call, "only sum, max and min are emulated");
    if (t == ncclFloat16)
        return bad(call, "fp16 is not emulated");
    int me_root = root < 0 || root == comm->rank;
    if (t == ncclBfloat16) {
        std::vector<float> a(count), r(me_root ? count : 0);
        for (size_t i = 0; i < count; i++)
            a[i] = bf16_to_f32(((const uint16_t *)send)[i]);
        int e = root < 0 ? MPI_Allreduce(a.data(), r.data(), (int)count, MPI_FLOAT, mop, comm->comm)
                         : MPI_Reduce(a.data(), me_root ? r.data() : nullptr, (int)count, MPI_FLOAT, mop, root,
                                      comm->comm);
        if (e != MPI_SUCCESS)
            return ncclSystemError;
        if (me_root)
            for (size_t i = 0; i < count; i++)
                ((uint16_t *)recv)[i] = f32_to_bf16(r[i]);
        return ncclSuccess;
    }
    MPI_Datatype mt = mpi_type(t);
    const void *sb = send == recv && me_root ? MPI_IN_PLACE : send;
    if (root < 0)
        return mpi_ok(MPI_Allreduce(sb, recv, (int)count, mt, mop, comm->comm));
    return mpi_ok(MPI_Reduce(sb, me_root ? recv : nullptr, (int)count, mt, mop, root, comm->comm));
}

} // namespace

extern "C" {

const char *ncclGetErrorString(ncclResult_t result)
{
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error (an MPI call of the emulator failed)";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage (the emulator needs MPI initialised for more than one rank)";
    }
    return "unknown result";
}

/* the id: a tag, the world rank that made it and its count of ids */
ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    int inited = 0, world_rank = 0;
    MPI_Initialized(&inited);
    if (inited)
        MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    memset(id, 0, sizeof *id);
    memcpy(id->internal, "cuda_emu", 8);
    int n = g_ids++;
    memcpy(id->internal + 8, &world_rank, sizeof world_rank);
    memcpy(id->internal + 12, &n, sizeof n);
    return ncclSuccess;
}

/* Rank 0 of the communicator (the id's maker) learns every member's world
 * rank and tells them all; the members then form an MPI communicator. */
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
    if (memcmp(id.internal, "cuda_emu", 8) != 0 || nranks < 1 || rank < 0 || rank >= nranks)
        return ncclInvalidArgument;
    if (nranks == 1) {
        *comm = new cuda_emu_nccl{1, 0, MPI_COMM_NULL};
        return ncclSuccess;
    }
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited)
        return ncclInvalidUsage;
    int root_world, n_id, me;
    memcpy(&root_world, id.internal + 8, sizeof root_world);
    memcpy(&n_id, id.internal + 12, sizeof n_id);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    int tag = TAG_INIT + 2 * (n_id % 500);
    std::vector<int> members((size_t)nranks, -1);
    if (rank == 0) {
        if (me != root_world)
            return bad("ncclCommInitRank", "rank 0 must be the rank that made the id");
        members[0] = me;
        for (int i = 1; i < nranks; i++) {
            int who[2];
            if (MPI_Recv(who, 2, MPI_INT, MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                return ncclSystemError;
            if (who[0] < 1 || who[0] >= nranks || members[(size_t)who[0]] >= 0)
                return bad("ncclCommInitRank", "two ranks claim one place");
            members[(size_t)who[0]] = who[1];
        }
        for (int i = 1; i < nranks; i++)
            if (MPI_Send(members.data(), nranks, MPI_INT, members[(size_t)i], tag + 1, MPI_COMM_WORLD) != MPI_SUCCESS)
                return ncclSystemError;
    } else {
        int who[2] = {rank, me};
        if (MPI_Send(who, 2, MPI_INT, root_world, tag, MPI_COMM_WORLD) != MPI_SUCCESS ||
            MPI_Recv(members.data(), nranks, MPI_INT, root_world, tag + 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE) !=
                MPI_SUCCESS)
            return ncclSystemError;
    }
    MPI_Group world_group, group;
    MPI_Comm c;
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    MPI_Group_incl(world_group, nranks, members.data(), &group);
    int e = MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, &c);
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    if (e != MPI_SUCCESS)
        return ncclSystemError;
    int crank = -1;
    MPI_Comm_rank(c, &crank);
    if (crank != rank)
        return bad("ncclCommInitRank", "the MPI communicator's order differs from the ranks given");
    *comm = new cuda_emu_nccl{nranks, rank, c};
    cuda_emu_send_waiter = wait_sends;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    if (!comm)
        return ncclSuccess;
    if (comm->comm != MPI_COMM_NULL) {
        wait_sends(nullptr, UINT64_MAX);
        MPI_Comm_free(&comm->comm);
    }
    delete comm;
    return ncclSuccess;
}
ncclResult_t ncclCommCount(const ncclComm_t comm, int *count)
{
    *count = comm->nranks;
    return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank)
{
    *rank = comm->rank;
    return ncclSuccess;
}

ncclResult_t ncclGroupStart(void)
{
    g_group_depth++;
    return ncclSuccess;
}
ncclResult_t ncclGroupEnd(void)
{
    if (g_group_depth == 0)
        return bad("ncclGroupEnd", "no group is open");
    if (--g_group_depth == 0 && !g_group.empty()) {
        int e = MPI_Waitall((int)g_group.size(), g_group.data(), MPI_STATUSES_IGNORE);
        g_group.clear();
        return mpi_ok(e);
    }
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t)
{
    size_t bytes = count * type_bytes(datatype);
    if (ncclResult_t r = check("ncclAllReduce", comm, sendbuff, recvbuff, bytes))
        return r;
    if (comm->nranks == 1) {
        if (sendbuff != recvbuff)
            memmove(recvbuff, sendbuff, bytes);
        return ncclSuccess;
    }
    return reduce("ncclAllReduce", sendbuff, recvbuff, count, datatype, op, -1, comm);
}

ncclResult_t ncclReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t)
{
    size_t bytes = count * type_bytes(datatype);
    if (!comm || root < 0 || root >= comm->nranks)
        return bad("ncclReduce", "root outside the communicator");
    if (ncclResult_t r = check("ncclReduce", comm, sendbuff, comm->rank == root ? recvbuff : nullptr, bytes))
        return r;
    if (comm->nranks == 1) {
        if (sendbuff != recvbuff)
            memmove(recvbuff, sendbuff, bytes);
        return ncclSuccess;
    }
    return reduce("ncclReduce", sendbuff, recvbuff, count, datatype, op, root, comm);
}

/* each rank's recvcount elements of the sum: block r of sendbuff summed over the ranks */
ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount, ncclDataType_t datatype,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t)
{
    size_t es = type_bytes(datatype);
    if (!comm)
        return bad("ncclReduceScatter", "no communicator");
    if (ncclResult_t r = check("ncclReduceScatter", comm, sendbuff, nullptr, recvcount * es * (size_t)comm->nranks))
        return r;
    if (ncclResult_t r = check("ncclReduceScatter", comm, recvbuff, nullptr, recvcount * es))
        return r;
    if (comm->nranks == 1) {
        if (sendbuff != recvbuff)
            memmove(recvbuff, sendbuff, recvcount * es);
        return ncclSuccess;
    }
    /* the sum everywhere, then this rank's block (the emulator's way, not NCCL's ring) */
    std::vector<unsigned char> all(recvcount * es * (size_t)comm->nranks);
    memcpy(all.data(), sendbuff, all.size());
    if (ncclResult_t r = reduce("ncclReduceScatter", all.data(), all.data(), recvcount * (size_t)comm->nranks,
                                datatype, op, -1, comm))
        return r;
    memcpy(recvbuff, all.data() + recvcount * es * (size_t)comm->rank, recvcount * es);
    return ncclSuccess;
}

ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t)
{
    size_t es = type_bytes(datatype);
    if (!comm)
        return bad("ncclAllGather", "no communicator");
    if (ncclResult_t r = check("ncclAllGather", comm, sendbuff, nullptr, sendcount * es))
        return r;
    if (ncclResult_t r = check("ncclAllGather", comm, recvbuff, nullptr, sendcount * es * (size_t)comm->nranks))
        return r;
    if (comm->nranks == 1) {
        if (sendbuff != recvbuff)
            memmove(recvbuff, sendbuff, sendcount * es);
        return ncclSuccess;
    }
    /* in place when sendbuff is this rank's block of recvbuff (NCCL's rule) */
    const void *sb = sendbuff == (const char *)recvbuff + sendcount * es * (size_t)comm->rank ? MPI_IN_PLACE : sendbuff;
    return mpi_ok(MPI_Allgather(sb, (int)(sendcount * es), MPI_BYTE, recvbuff, (int)(sendcount * es), MPI_BYTE,
                                comm->comm));
}

ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t)
{
    size_t bytes = count * type_bytes(datatype);
    if (!comm || root < 0 || root >= comm->nranks)
        return bad("ncclBroadcast", "root outside the communicator");
    if (ncclResult_t r = check("ncclBroadcast", comm, comm->rank == root ? sendbuff : nullptr, recvbuff, bytes))
        return r;
    if (comm->rank == root && sendbuff != recvbuff)
        memmove(recvbuff, sendbuff, bytes);
    if (comm->nranks == 1)
        return ncclSuccess;
    return mpi_ok(MPI_Bcast(recvbuff, (int)bytes, MPI_BYTE, root, comm->comm));
}

ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream)
{
    size_t bytes = count * type_bytes(datatype);
    if (!comm || peer < 0 || peer >= comm->nranks || peer == comm->rank || comm->nranks == 1)
        return bad("ncclSend", "peer outside the communicator, or the sender itself");
    if (ncclResult_t r = check("ncclSend", comm, sendbuff, nullptr, bytes))
        return r;
    MPI_Request rq;
    if (MPI_Isend(sendbuff, (int)bytes, MPI_BYTE, peer, TAG_P2P, comm->comm, &rq) != MPI_SUCCESS)
        return ncclSystemError;
    if (g_group_depth > 0) {
        g_group.push_back(rq);
    } else {
        cuda_emu_stream_count_send(stream);
        g_sends.push_back({rq, stream, cuda_emu_stream_sends(stream)});
    }
    return ncclSuccess;
}

ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t)
{
    size_t bytes = count * type_bytes(datatype);
    if (!comm || peer < 0 || peer >= comm->nranks || peer == comm->rank || comm->nranks == 1)
        return bad("ncclRecv", "peer outside the communicator, or the receiver itself");
    if (ncclResult_t r = check("ncclRecv", comm, recvbuff, nullptr, bytes))
        return r;
    MPI_Request rq;
    if (MPI_Irecv(recvbuff, (int)bytes, MPI_BYTE, peer, TAG_P2P, comm->comm, &rq) != MPI_SUCCESS)
        return ncclSystemError;
    if (g_group_depth > 0) {
        g_group.push_back(rq);
        return ncclSuccess;
    }
    return mpi_ok(MPI_Wait(&rq, MPI_STATUS_IGNORE));
}

} /* extern "C" */
