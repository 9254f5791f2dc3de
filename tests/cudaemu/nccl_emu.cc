/* nccl_emu.cc — NCCL for tests/cudaemu (include/nccl.h): each rank is a
 * process with its own emulated GPU (device memory is host memory, see
 * cuda_emu_rt.cc), and a communicator of n ranks carries its collectives
 * and sends over MPI, which the program using NCCL has initialised (triad
 * does, MPI launches its ranks). So comm_nccl.c runs its multi-rank code —
 * communicators per group from a unique id, grouped reduces, broadcasts and
 * send/receive pairs, collectives and sends left in flight on their own
 * streams — on a machine without GPUs; NCCL's own algorithms, kernels and
 * transport are not what runs (make check-gpu runs those).
 *
 * In flight, as on a GPU: a collective or a send outside a group is issued
 * (MPI's nonblocking form, on copies of its inputs taken then) and ends
 * only when its stream, an event recorded on that stream after it, or the
 * device is synchronised. Until then its output buffer holds a signalling
 * NaN (poison_byte), so a read that did not wait computes with NaN;
 * at the end the output must still hold them and the inputs must be what
 * they were at the call, or the emulator names the call and aborts: a
 * program that writes a buffer an operation in flight reads or writes has
 * a race a GPU would make silent. Receives, and sends inside
 * ncclGroupStart/End, use the caller's buffers and end at the outer
 * ncclGroupEnd (so a pair of exchanges cannot deadlock).
 *
 * Semantics kept from NCCL's documentation: every buffer is device memory
 * of the count and type given; collectives are issued in the order the
 * ranks call them; sends and receives match per peer in issue order. bf16
 * reductions widen to fp32, reduce and round once (to nearest even), as the
 * MPI comm layer does.
 *
 * Left out: ncclAvg and ncclProd; fp16; communicators split from others;
 * the nonblocking communicator API. A communicator of one rank needs no
 * MPI: its collectives are copies, done at the call. */
#include "include/cuda_bf16.h"
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

extern void (*cuda_emu_nccl_waiter)(cudaStream_t, uint64_t);
uint64_t cuda_emu_stream_count_nccl(cudaStream_t s);

struct cuda_emu_nccl {
    int nranks, rank;
    MPI_Comm comm; /* MPI_COMM_NULL for one rank */
};

namespace {

const int TAG_INIT = 29000, TAG_P2P = 7; /* world tags of the id exchange; p2p on the communicator */

/* an operation in flight: its MPI request, its stream and place there, the
 * output it will write and the input it read at the call */
struct inflight {
    const char *call;
    MPI_Request req;
    cudaStream_t stream;
    uint64_t seq;
    unsigned char *out;              /* output buffer (poisoned until the end), or NULL */
    size_t out_bytes;
    std::vector<unsigned char> res;  /* what MPI writes, copied to out at the end */
    size_t res_off;                  /* where in res the output starts (reduce-scatter: my block) */
    int bf16;                        /* res holds fp32, out takes bf16 */
    const unsigned char *in;         /* an input the call read (not also the output), or NULL */
    std::vector<unsigned char> in_copy, send; /* the input as read; what MPI sends */
};
std::vector<inflight *> g_ops;     /* in issue order */
std::vector<MPI_Request> g_group;  /* sends and receives of the open group */
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

/* The output of an operation in flight: 0x7fa0 in every 16 bits, a
 * signalling NaN as bf16 and as fp32 (0x7fa07fa0), which arithmetic turns
 * into another pattern (a quiet NaN), so that scaling or accumulating into
 * the buffer before the wait is seen, and a read computes NaN. */
unsigned char poison_byte(size_t i) { return i % 2 ? 0x7f : 0xa0; }

[[noreturn]] void race(const inflight *op, const char *what)
{
    int r = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    fprintf(stderr, "cuda_emu: [rank %d] %s: %s while the call was in flight (a race on a GPU)\n", r, op->call, what);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    abort();
}

/* the end of an operation: MPI's part done, the buffers left alone, the output written */
void finish(inflight *op)
{
    MPI_Wait(&op->req, MPI_STATUS_IGNORE);
    /* the input as it was, but where it is also the output (in place) */
    for (size_t i = 0; op->in && i < op->in_copy.size(); i++) {
        const unsigned char *p = op->in + i;
        int in_out = op->out && p >= op->out && p < op->out + op->out_bytes;
        if (!in_out && *p != op->in_copy[i])
            race(op, "its input was written");
    }
    if (op->out) {
        for (size_t i = 0; i < op->out_bytes; i++)
            if (op->out[i] != poison_byte(i))
                race(op, "its output was written");
        if (op->bf16) {
            const float *f = (const float *)(op->res.data() + op->res_off);
            for (size_t i = 0; i < op->out_bytes / 2; i++) {
                __nv_bfloat16 h = __float2bfloat16(f[i]);
                memcpy(op->out + 2 * i, &h.bits, 2);
            }
        } else {
            memcpy(op->out, op->res.data() + op->res_off, op->out_bytes);
        }
    }
    delete op;
}

/* complete the operations of stream s (every stream when NULL) issued up to its upto-th */
void wait_ops(cudaStream_t s, uint64_t upto)
{
    for (size_t i = 0; i < g_ops.size();) {
        inflight *op = g_ops[i];
        if (!s || (op->stream == s && op->seq <= upto)) {
            g_ops.erase(g_ops.begin() + (long)i);
            finish(op);
        } else {
            i++;
        }
    }
}

/* A new operation writing out_bytes at out (NULL: none) and reading
 * in_bytes at in (NULL, or in == out: nothing beyond the output): the
 * input copied for MPI (widened to fp32 for a bf16 reduction), the output
 * poisoned. The caller starts MPI's part on op->send and op->res. */
inflight *begin(const char *call, cudaStream_t stream, const void *in, size_t in_bytes, void *out, size_t out_bytes,
                size_t res_bytes, int widen_bf16)
{
    inflight *op = new inflight();
    op->call = call;
    op->req = MPI_REQUEST_NULL;
    op->stream = stream;
    op->bf16 = widen_bf16;
    if (in && in_bytes) {
        const unsigned char *p = (const unsigned char *)in;
        if (widen_bf16) {
            op->send.resize(in_bytes * 2);
            for (size_t i = 0; i < in_bytes / 2; i++) {
                __nv_bfloat16 h;
                memcpy(&h.bits, p + 2 * i, 2);
                float f = __bfloat162float(h);
                memcpy(op->send.data() + 4 * i, &f, 4);
            }
        } else {
            op->send.assign(p, p + in_bytes);
        }
        if (in != out) { /* an input apart from the output: it must stay as it is */
            op->in = p;
            op->in_copy.assign(p, p + in_bytes);
        }
    }
    op->res.resize(res_bytes ? res_bytes : 1);
    if (out && out_bytes) {
        op->out = (unsigned char *)out;
        op->out_bytes = out_bytes;
        for (size_t i = 0; i < out_bytes; i++)
            op->out[i] = poison_byte(i);
    }
    return op;
}

/* queue op on its stream (an operation on the default stream ends at once) */
ncclResult_t launch(inflight *op, int mpi_err)
{
    if (mpi_err != MPI_SUCCESS) {
        delete op;
        return ncclSystemError;
    }
    cuda_emu_nccl_waiter = wait_ops;
    if (!op->stream) {
        finish(op);
        return ncclSuccess;
    }
    op->seq = cuda_emu_stream_count_nccl(op->stream);
    g_ops.push_back(op);
    return ncclSuccess;
}

/* a reduction of count elements over the communicator, to every rank
 * (root < 0) or to root; out_off: where the output starts in the result
 * (elements), out_count: how many it takes */
ncclResult_t reduce(const char *call, const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                    int root, size_t out_off, size_t out_count, ncclComm_t comm, cudaStream_t stream)
{
    MPI_Op mop;
    if (mpi_op(op, &mop))
        return bad(call, "only sum, max and min are emulated");
    if (t == ncclFloat16)
        return bad(call, "fp16 is not emulated");
    int bf = t == ncclBfloat16, me_root = root < 0 || root == comm->rank;
    size_t es = type_bytes(t), wes = bf ? 4 : es;
    inflight *o = begin(call, stream, send, count * es, me_root ? recv : nullptr, me_root ? out_count * es : 0,
                        me_root ? count * wes : 0, bf);
    o->res_off = out_off * wes;
    MPI_Datatype mt = bf ? MPI_FLOAT : mpi_type(t);
    int e = root < 0 ? MPI_Iallreduce(o->send.data(), o->res.data(), (int)count, mt, mop, comm->comm, &o->req)
                     : MPI_Ireduce(o->send.data(), me_root ? o->res.data() : nullptr, (int)count, mt, mop, root,
                                   comm->comm, &o->req);
    return launch(o, e);
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
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    if (!comm)
        return ncclSuccess;
    if (comm->comm != MPI_COMM_NULL) {
        wait_ops(nullptr, UINT64_MAX);
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
                           ncclComm_t comm, cudaStream_t stream)
{
    size_t bytes = count * type_bytes(datatype);
    if (ncclResult_t r = check("ncclAllReduce", comm, sendbuff, recvbuff, bytes))
        return r;
    if (comm->nranks == 1) {
        if (sendbuff != recvbuff)
            memmove(recvbuff, sendbuff, bytes);
        return ncclSuccess;
    }
    return reduce("ncclAllReduce", sendbuff, recvbuff, count, datatype, op, -1, 0, count, comm, stream);
}

ncclResult_t ncclReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream)
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
    return reduce("ncclReduce", sendbuff, recvbuff, count, datatype, op, root, 0, count, comm, stream);
}

/* each rank's recvcount elements of the sum: block r of sendbuff summed
 * over the ranks (the emulator reduces it all and keeps its block) */
ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount, ncclDataType_t datatype,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream)
{
    size_t es = type_bytes(datatype);
    if (!comm)
        return bad("ncclReduceScatter", "no communicator");
    size_t all = recvcount * (size_t)comm->nranks;
    if (ncclResult_t r = check("ncclReduceScatter", comm, sendbuff, nullptr, all * es))
        return r;
    if (ncclResult_t r = check("ncclReduceScatter", comm, recvbuff, nullptr, recvcount * es))
        return r;
    if (comm->nranks == 1) {
        if (sendbuff != recvbuff)
            memmove(recvbuff, sendbuff, recvcount * es);
        return ncclSuccess;
    }
    return reduce("ncclReduceScatter", sendbuff, recvbuff, all, datatype, op, -1, recvcount * (size_t)comm->rank,
                  recvcount, comm, stream);
}

ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream)
{
    size_t bytes = sendcount * type_bytes(datatype);
    if (!comm)
        return bad("ncclAllGather", "no communicator");
    if (ncclResult_t r = check("ncclAllGather", comm, sendbuff, nullptr, bytes))
        return r;
    if (ncclResult_t r = check("ncclAllGather", comm, recvbuff, nullptr, bytes * (size_t)comm->nranks))
        return r;
    if (comm->nranks == 1) {
        if (sendbuff != recvbuff)
            memmove(recvbuff, sendbuff, bytes);
        return ncclSuccess;
    }
    /* in place (sendbuff this rank's block of recvbuff, NCCL's rule) the
     * input is copied before the output is poisoned */
    inflight *o = begin("ncclAllGather", stream, sendbuff, bytes, recvbuff, bytes * (size_t)comm->nranks,
                        bytes * (size_t)comm->nranks, 0);
    return launch(o, MPI_Iallgather(o->send.data(), (int)bytes, MPI_BYTE, o->res.data(), (int)bytes, MPI_BYTE,
                                    comm->comm, &o->req));
}

ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream)
{
    size_t bytes = count * type_bytes(datatype);
    if (!comm || root < 0 || root >= comm->nranks)
        return bad("ncclBroadcast", "root outside the communicator");
    int me_root = comm->rank == root;
    if (ncclResult_t r = check("ncclBroadcast", comm, me_root ? sendbuff : nullptr, recvbuff, bytes))
        return r;
    if (comm->nranks == 1) {
        if (sendbuff != recvbuff)
            memmove(recvbuff, sendbuff, bytes);
        return ncclSuccess;
    }
    inflight *o = begin("ncclBroadcast", stream, me_root ? sendbuff : nullptr, bytes, recvbuff, bytes, bytes, 0);
    if (me_root)
        o->res = o->send; /* the root's result is its input */
    return launch(o, MPI_Ibcast(o->res.data(), (int)bytes, MPI_BYTE, root, comm->comm, &o->req));
}

ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream)
{
    size_t bytes = count * type_bytes(datatype);
    if (!comm || peer < 0 || peer >= comm->nranks || peer == comm->rank || comm->nranks == 1)
        return bad("ncclSend", "peer outside the communicator, or the sender itself");
    if (ncclResult_t r = check("ncclSend", comm, sendbuff, nullptr, bytes))
        return r;
    if (g_group_depth > 0) { /* ends at the outer ncclGroupEnd */
        MPI_Request rq;
        if (MPI_Isend(sendbuff, (int)bytes, MPI_BYTE, peer, TAG_P2P, comm->comm, &rq) != MPI_SUCCESS)
            return ncclSystemError;
        g_group.push_back(rq);
        return ncclSuccess;
    }
    inflight *o = begin("ncclSend", stream, sendbuff, bytes, nullptr, 0, 0, 0);
    return launch(o, MPI_Isend(o->send.data(), (int)bytes, MPI_BYTE, peer, TAG_P2P, comm->comm, &o->req));
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
