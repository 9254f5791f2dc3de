/* comm_mpi.c — the comm layer (comm.h) over MPI on host buffers.
 *
 * Groups are MPI_Comm_split of MPI_COMM_WORLD with colours from the Megatron
 * rank order of common/rankmap.h. Every communicator has MPI_ERRORS_RETURN so
 * each error comes back to mpiCheck, which prints rank, host, file:line, the
 * call and MPI_Error_string, then MPI_Abort(MPI_COMM_WORLD, 1): a failing rank
 * takes the job down, never a hang.
 *
 * bf16 (COMM_BF16) travels as MPI_UINT16_T. MPI cannot sum bf16, so sums and
 * maxima of bf16 are done in fp32 on the host: the buffer is widened to float
 * in chunks of COMM_BF16_CHUNK_ELEMS, reduced as MPI_FLOAT and rounded back to
 * bf16 (round to nearest even). The result is the fp32 sum rounded once, which
 * is at least as accurate as a bf16 ring.
 *
 * COMM_BACKEND_NCCL (CUDA build): each group also gets an NCCL communicator
 * and every call on it is handed to comm_nccl.c (see comm_nccl.h).
 *
 * Device buffers (comm_mem COMM_MEM_DEVICE, CUDA build only) are staged: copy
 * to a host buffer (cudaMemcpy), MPI on the host, copy back. Without CUDA a
 * device group is refused at comm_groups_init.
 *
 * Waiting without spinning: when this node runs more ranks than it has
 * cores (a pipeline on a laptop, the test suite), a rank blocked in MPI
 * would otherwise spin and take a core from a rank that computes — in a
 * pipeline bubble that is most of the waiting. There every blocking call
 * becomes its non-blocking form and comm_idle_wait: MPI_Test a few times,
 * then sleep 50 us between tests. With a core per rank MPI's own blocking
 * calls run unchanged. TRIAD_IDLE_WAIT=0/1 forces either.
 *
 * Left out: non-blocking receives (sends may be non-blocking, comm_isend;
 * receives block); communicators other than the five of comm_groups.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if TRIAD_HAVE_CUDA
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wundef"
#include <cuda_runtime.h>
#pragma GCC diagnostic pop
#include "comm_nccl.h"
#endif

#include "../common/rankmap.h"
#include "comm.h"

#define COMM_BF16_CHUNK_ELEMS ((size_t)1 << 20)

struct comm_group {
    MPI_Comm comm;
    int size, rank;
    comm_mem mem;
    void *nccl;      /* comm_nccl * when the group runs on NCCL (CUDA build), else NULL */
};

/* NCCL dispatch: a group with an NCCL communicator hands a call to
 * comm_nccl.c when its buffers are device memory (CUDA build only); host
 * buffers (a flag, a loss, a norm) go through MPI on the same communicator.
 * a and b are the call's buffers (either may be NULL). */
#if TRIAD_HAVE_CUDA
static int comm_nccl_buffers(const void *a, const void *b);
#define COMM_NCCL(c, a, b, stmt)                            \
    do {                                                    \
        if ((c)->nccl && comm_nccl_buffers((a), (b))) {     \
            double t_ = comm_clock();                       \
            stmt;                                           \
            g_comm_s += comm_clock() - t_;                  \
            return;                                         \
        }                                                   \
    } while (0)
#else
#define COMM_NCCL(c, a, b, stmt) ((void)0)
#endif

/* Whether a point-to-point call on buf goes to NCCL (comm_exchange takes it there). */
#if TRIAD_HAVE_CUDA
#define comm_nccl_p2p(c, buf) ((c)->nccl && comm_nccl_buffers((buf), NULL))
#else
#define comm_nccl_p2p(c, buf) 0
#endif

struct comm_req {
    MPI_Request req;
    comm_group *c;
    void *user;      /* the caller's buffer (host or device) */
    void *host;      /* what MPI reduces: user itself, or a staging / fp32 buffer */
    size_t count;    /* elements */
    comm_dtype t;
    int is_send;     /* comm_isend: nothing comes back */
    void *nccl_event;/* NCCL: the event to synchronise, else NULL */
    const void *send;/* comm_ireducescatter_v_sum: the caller's send buffer, */
    void *send_host; /*   its staged copy (freed at the wait), */
    int *ic;         /*   MPI's counts (kept until the wait, as MPI asks) */
    char one[8];     /*   and MPI's buffer when I receive nothing */
};

static void comm_fail(int err, const char *call, const char *file, int line)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0, rank = -1;
    char host[256] = "?";
    MPI_Error_string(err, msg, &len);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    gethostname(host, sizeof host);
    fprintf(stderr, "triad: [rank %d on %s] %s:%d: %s failed: %s\n", rank, host, file, line, call, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

#define mpiCheck(call)                                                  \
    do {                                                                \
        int mpi_err_ = (call);                                          \
        if (mpi_err_ != MPI_SUCCESS)                                    \
            comm_fail(mpi_err_, #call, __FILE__, __LINE__);             \
    } while (0)

/* A failure that is not an MPI error code (allocation, CUDA, bad argument). */
static void comm_die(const char *what, const char *file, int line)
{
    int rank = -1;
    char host[256] = "?";
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    gethostname(host, sizeof host);
    fprintf(stderr, "triad: [rank %d on %s] %s:%d: %s\n", rank, host, file, line, what);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}
#define COMM_DIE(what) comm_die((what), __FILE__, __LINE__)

#if TRIAD_HAVE_CUDA
#define cudaCheck(call)                                                         \
    do {                                                                        \
        cudaError_t cu_err_ = (call);                                           \
        if (cu_err_ != cudaSuccess) {                                           \
            char cu_msg_[512];                                                  \
            snprintf(cu_msg_, sizeof cu_msg_, "%s failed: %s", #call,           \
                     cudaGetErrorString(cu_err_));                              \
            comm_die(cu_msg_, __FILE__, __LINE__);                              \
        }                                                                       \
    } while (0)
#endif

static void *comm_xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        COMM_DIE("out of host memory for a comm buffer");
    return p;
}

size_t comm_dtype_size(comm_dtype t)
{
    switch (t) {
    case COMM_F32: return 4;
    case COMM_BF16: return 2;
    case COMM_F64: return 8;
    case COMM_I64: return 8;
    }
    return 0;
}

static MPI_Datatype comm_mpi_type(comm_dtype t)
{
    switch (t) {
    case COMM_F32: return MPI_FLOAT;
    case COMM_BF16: return MPI_UINT16_T;
    case COMM_F64: return MPI_DOUBLE;
    case COMM_I64: return MPI_INT64_T;
    }
    COMM_DIE("unknown comm_dtype");
    return MPI_DATATYPE_NULL;
}

/* bf16 <-> fp32: bf16 is the top half of an fp32; rounding to nearest even. */
static float comm_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t comm_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) /* NaN stays NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static void comm_widen(const uint16_t *h, float *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        f[i] = comm_bf16_to_f32(h[i]);
}
static void comm_narrow(const float *f, uint16_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h[i] = comm_f32_to_bf16(f[i]);
}

/* ---- staging of device buffers ---------------------------------------------- */

/* How device memory is told apart and copied: set by the executor for its
 * backend (comm_set_device_hooks); in a CUDA build, when never set, CUDA's
 * own (cudaPointerGetAttributes, cudaMemcpy). */
static comm_device_hooks g_hooks;
static int g_have_hooks;

void comm_set_device_hooks(const comm_device_hooks *h)
{
    if (h)
        g_hooks = *h;
    g_have_hooks = h != NULL;
}

#if TRIAD_HAVE_CUDA
static int cuda_is_device(const void *p)
{
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError(); /* a plain host pointer on older runtimes */
        return 0;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}
static void cuda_to_host(void *dst, const void *src, int64_t bytes)
{
    cudaCheck(cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost));
}
static void cuda_to_device(void *dst, const void *src, int64_t bytes)
{
    cudaCheck(cudaMemcpy(dst, src, (size_t)bytes, cudaMemcpyHostToDevice));
}
#endif

static const comm_device_hooks *hooks(void)
{
#if TRIAD_HAVE_CUDA
    static const comm_device_hooks cuda = {cuda_is_device, cuda_to_host, cuda_to_device};
    return g_have_hooks ? &g_hooks : &cuda;
#else
    if (!g_have_hooks)
        COMM_DIE("device buffers need comm_set_device_hooks in a build without CUDA");
    return &g_hooks;
#endif
}

#if TRIAD_HAVE_CUDA
static int comm_nccl_buffers(const void *a, const void *b)
{
    return (a || b) && (!a || hooks()->is_device(a)) && (!b || hooks()->is_device(b));
}
#endif

/* Host view of count elements at p: p itself for host groups and for host
 * pointers in device groups (a device group's caller may pass either),
 * else a staged copy (filled from the device when fill). */
static void *comm_stage_in(const comm_group *c, const void *p, size_t count, comm_dtype t, int fill)
{
    if (c->mem == COMM_MEM_HOST || !p || !hooks()->is_device(p))
        return (void *)p;
    void *h = comm_xmalloc(count ? count * comm_dtype_size(t) : 1);
    if (fill && count)
        hooks()->to_host(h, p, (int64_t)(count * comm_dtype_size(t)));
    return h;
}
/* Copy a staged buffer h back to dev (when back) and free it; nothing when
 * h is dev itself (not staged). */
static void comm_stage_out(const comm_group *c, void *dev, void *h, size_t count, comm_dtype t, int back)
{
    if (c->mem == COMM_MEM_HOST || !dev || h == dev)
        return;
    if (back && count) {
        if (hooks()->is_device(dev))
            hooks()->to_device(dev, h, (int64_t)(count * comm_dtype_size(t)));
        else
            memcpy(dev, h, count * comm_dtype_size(t));
    }
    free(h);
}

/* ---- waiting ------------------------------------------------------------------ */

/* Wall time this rank has spent blocked in communication: MPI waits and
 * blocking calls, NCCL calls (which synchronise their stream) and waits. */
static double g_comm_s;

static double comm_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double comm_time_s(void) { return g_comm_s; }

static int g_idle_wait; /* more ranks than cores on this node: sleep while waiting */
static int g_node_ranks = 1; /* the most ranks any node of the job holds */

static void comm_idle_wait(MPI_Request *req)
{
    double t0 = comm_clock();
    if (!g_idle_wait) {
        mpiCheck(MPI_Wait(req, MPI_STATUS_IGNORE));
        g_comm_s += comm_clock() - t0;
        return;
    }
    int done = 0;
    for (int polls = 0;; polls++) {
        mpiCheck(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) {
            g_comm_s += comm_clock() - t0;
            return;
        }
        if (polls >= 64) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

/* A blocking MPI call: as is, or in idle-wait mode its non-blocking form
 * (which names its request rq_) and comm_idle_wait. */
#define COMM_BLOCKING(blocking, nonblocking)                                                       \
    do {                                                                                           \
        if (g_idle_wait) {                                                                         \
            MPI_Request rq_;                                                                       \
            mpiCheck(nonblocking);                                                                 \
            comm_idle_wait(&rq_);                                                                  \
        } else {                                                                                   \
            double t_ = comm_clock();                                                              \
            mpiCheck(blocking);                                                                    \
            g_comm_s += comm_clock() - t_;                                                         \
        }                                                                                          \
    } while (0)

/* ---- init and groups ------------------------------------------------------- */

void comm_init(int *argc, char ***argv, int *rank, int *world_size)
{
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int err = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (err != MPI_SUCCESS) {
            fprintf(stderr, "triad: MPI_Init_thread failed (code %d)\n", err);
            exit(1);
        }
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, world_size));
    /* ranks sharing this node's cores */
    MPI_Comm node;
    int local = 1;
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    mpiCheck(MPI_Comm_size(node, &local));
    MPI_Comm_free(&node);
    mpiCheck(MPI_Allreduce(&local, &g_node_ranks, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    const char *force = getenv("TRIAD_IDLE_WAIT");
    g_idle_wait = force && *force ? atoi(force) != 0 : local > sysconf(_SC_NPROCESSORS_ONLN);
}

int comm_node_ranks(void) { return g_node_ranks; }

int comm_world_min_int(int v)
{
    int m = v;
    mpiCheck(MPI_Allreduce(&v, &m, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    return m;
}

void comm_finalize(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin)
        MPI_Finalize();
}

static comm_group *comm_group_split(int color, int key, comm_mem mem, comm_backend backend)
{
    MPI_Comm comm;
    mpiCheck(MPI_Comm_split(MPI_COMM_WORLD, color, key, &comm));
    if (comm == MPI_COMM_NULL)
        return NULL;
    mpiCheck(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
    comm_group *c = comm_xmalloc(sizeof *c);
    c->comm = comm;
    c->mem = mem;
    mpiCheck(MPI_Comm_size(comm, &c->size));
    mpiCheck(MPI_Comm_rank(comm, &c->rank));
    c->nccl = NULL;
#if TRIAD_HAVE_CUDA
    if (backend == COMM_BACKEND_NCCL)
        c->nccl = comm_nccl_create(comm, c->rank, c->size);
#else
    (void)backend;
#endif
    return c;
}

void comm_groups_init(comm_groups *g, int tp, int dp, int pp, comm_backend backend, comm_mem mem)
{
    memset(g, 0, sizeof *g);
#if !TRIAD_HAVE_CUDA
    if (mem == COMM_MEM_DEVICE && !g_have_hooks)
        COMM_DIE("COMM_MEM_DEVICE needs a CUDA build or comm_set_device_hooks");
    if (backend == COMM_BACKEND_NCCL)
        COMM_DIE("COMM_BACKEND_NCCL needs a CUDA build");
#endif
    if (backend == COMM_BACKEND_NCCL && mem != COMM_MEM_DEVICE)
        COMM_DIE("COMM_BACKEND_NCCL works on device buffers (COMM_MEM_DEVICE)");
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &g->rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &g->world_size));
    if (tp < 1 || dp < 1 || pp < 1 || tp * dp * pp != g->world_size) {
        char msg[160];
        snprintf(msg, sizeof msg, "layout tp=%d dp=%d pp=%d needs %d ranks, the job has %d", tp, dp, pp,
                 tp * dp * pp, g->world_size);
        COMM_DIE(msg);
    }
    rankmap_coord rc = rankmap_coord_of(g->rank, tp, dp);
    g->tp_size = tp; g->dp_size = dp; g->pp_size = pp;
    g->tp_rank = rc.tp_rank; g->dp_rank = rc.dp_rank; g->pp_rank = rc.pp_rank;

    g->world = comm_group_split(0, g->rank, mem, backend);
    g->tp = comm_group_split(rc.dp_rank + dp * rc.pp_rank, rc.tp_rank, mem, backend);
    g->dp = comm_group_split(rc.tp_rank + tp * rc.pp_rank, rc.dp_rank, mem, backend);
    g->pp = comm_group_split(rc.tp_rank + tp * rc.dp_rank, rc.pp_rank, mem, backend);
    if (pp > 1) {
        int ends = rc.pp_rank == 0 || rc.pp_rank == pp - 1;
        g->embed = comm_group_split(ends ? rc.tp_rank + tp * rc.dp_rank : MPI_UNDEFINED, rc.pp_rank, mem, backend);
    } else {
        g->embed = NULL;
    }
}

static void comm_group_free(comm_group *c)
{
    if (!c)
        return;
#if TRIAD_HAVE_CUDA
    comm_nccl_destroy(c->nccl);
#endif
    MPI_Comm_free(&c->comm);
    free(c);
}

void comm_groups_free(comm_groups *g)
{
    if (!g)
        return;
    comm_group_free(g->world);
    comm_group_free(g->tp);
    comm_group_free(g->dp);
    comm_group_free(g->pp);
    comm_group_free(g->embed);
    memset(g, 0, sizeof *g);
}

int comm_group_size(const comm_group *c) { return c->size; }
int comm_group_rank(const comm_group *c) { return c->rank; }

/* ---- collectives ------------------------------------------------------------ */

static void comm_allreduce_op(comm_group *c, void *buf, size_t count, comm_dtype t, MPI_Op op)
{
    if (count == 0)
        return;
    COMM_NCCL(c, buf, NULL, comm_nccl_allreduce(c->nccl, buf, count, t, op == MPI_MAX));
    void *h = comm_stage_in(c, buf, count, t, 1);
    if (t == COMM_BF16) {
        size_t chunk = count < COMM_BF16_CHUNK_ELEMS ? count : COMM_BF16_CHUNK_ELEMS;
        float *f = comm_xmalloc(chunk * sizeof(float));
        for (size_t off = 0; off < count; off += chunk) {
            size_t n = count - off < chunk ? count - off : chunk;
            comm_widen((uint16_t *)h + off, f, n);
            COMM_BLOCKING(MPI_Allreduce(MPI_IN_PLACE, f, (int)n, MPI_FLOAT, op, c->comm),
                          MPI_Iallreduce(MPI_IN_PLACE, f, (int)n, MPI_FLOAT, op, c->comm, &rq_));
            comm_narrow(f, (uint16_t *)h + off, n);
        }
        free(f);
    } else {
        /* counts beyond INT_MAX go in pieces */
        size_t es = comm_dtype_size(t), step = (size_t)1 << 30;
        for (size_t off = 0; off < count; off += step) {
            size_t n = count - off < step ? count - off : step;
            COMM_BLOCKING(MPI_Allreduce(MPI_IN_PLACE, (char *)h + off * es, (int)n, comm_mpi_type(t), op, c->comm),
                          MPI_Iallreduce(MPI_IN_PLACE, (char *)h + off * es, (int)n, comm_mpi_type(t), op, c->comm,
                                         &rq_));
        }
    }
    comm_stage_out(c, buf, h, count, t, 1);
}

void comm_allreduce_sum(comm_group *c, void *buf, size_t count, comm_dtype t)
{
    comm_allreduce_op(c, buf, count, t, MPI_SUM);
}

void comm_allreduce_max(comm_group *c, void *buf, size_t count, comm_dtype t)
{
    comm_allreduce_op(c, buf, count, t, MPI_MAX);
}

static void comm_check_count(size_t count, int size)
{
    if (count * (size_t)size > (size_t)2147483647)
        COMM_DIE("collective of more than 2^31-1 elements");
}

void comm_allgather(comm_group *c, const void *send, void *recv, size_t count, comm_dtype t)
{
    comm_check_count(count, c->size);
    COMM_NCCL(c, send, recv, comm_nccl_allgather(c->nccl, send, recv, count, t));
    size_t total = count * (size_t)c->size;
    void *hs = comm_stage_in(c, send, count, t, 1);
    void *hr = comm_stage_in(c, recv, total, t, 0);
    /* bf16 moves as uint16: no arithmetic, no conversion */
    COMM_BLOCKING(MPI_Allgather(hs, (int)count, comm_mpi_type(t), hr, (int)count, comm_mpi_type(t), c->comm),
                  MPI_Iallgather(hs, (int)count, comm_mpi_type(t), hr, (int)count, comm_mpi_type(t), c->comm, &rq_));
    comm_stage_out(c, (void *)send, hs, count, t, 0);
    comm_stage_out(c, recv, hr, total, t, 1);
}

void comm_reducescatter_sum(comm_group *c, const void *send, void *recv, size_t count, comm_dtype t)
{
    comm_check_count(count, c->size);
    COMM_NCCL(c, send, recv, comm_nccl_reducescatter(c->nccl, send, recv, count, t));
    if (t != COMM_BF16) {
        /* MPI_Reduce_scatter with equal counts, not _block: Open MPI runs the
         * former 2-4x faster on 2 ranks of this machine (0.37 against 1.53 ms
         * for 1 MiB a rank), and as fast on 4 */
        size_t *counts = comm_xmalloc(sizeof(size_t) * (size_t)c->size);
        for (int q = 0; q < c->size; q++)
            counts[q] = count;
        comm_reducescatter_v_sum(c, send, recv, counts, t);
        free(counts);
        return;
    }
    size_t total = count * (size_t)c->size;
    void *hs = comm_stage_in(c, send, total, t, 1);
    void *hr = comm_stage_in(c, recv, count, t, 0);
    /* bf16: summed in fp32 */
    float *fs = comm_xmalloc(total * sizeof(float));
    float *fr = comm_xmalloc((count ? count : 1) * sizeof(float));
    comm_widen(hs, fs, total);
    COMM_BLOCKING(MPI_Reduce_scatter_block(fs, fr, (int)count, MPI_FLOAT, MPI_SUM, c->comm),
                  MPI_Ireduce_scatter_block(fs, fr, (int)count, MPI_FLOAT, MPI_SUM, c->comm, &rq_));
    comm_narrow(fr, hr, count);
    free(fs);
    free(fr);
    comm_stage_out(c, (void *)send, hs, total, t, 0);
    comm_stage_out(c, recv, hr, count, t, 1);
}

/* counts[] -> MPI's int counts and displacements (and the total); refuses
 * what MPI's int arguments cannot say and bf16 */
static size_t comm_v_counts(const comm_group *c, const size_t *counts, comm_dtype t, int *ic, int *id,
                            size_t *displs)
{
    if (t == COMM_BF16)
        COMM_DIE("uneven collective on bf16 (not supported)");
    size_t total = 0;
    for (int r = 0; r < c->size; r++) {
        displs[r] = total;
        ic[r] = (int)counts[r];
        id[r] = (int)total;
        total += counts[r];
    }
    if (total > (size_t)2147483647)
        COMM_DIE("collective of more than 2^31-1 elements");
    return total;
}

/* the one rank that receives anything, or -1 when none or several do */
static int comm_v_sole_owner(const comm_group *c, const size_t *counts)
{
    int owners = 0, root = -1;
    for (int q = 0; q < c->size; q++)
        if (counts[q])
            owners++, root = q;
    return owners == 1 ? root : -1;
}

void comm_reducescatter_v_sum(comm_group *c, const void *send, void *recv, const size_t *counts, comm_dtype t)
{
    int *ic = comm_xmalloc(2 * sizeof(int) * (size_t)c->size), *id = ic + c->size;
    size_t *displs = comm_xmalloc(sizeof(size_t) * (size_t)c->size);
    size_t total = comm_v_counts(c, counts, t, ic, id, displs), mine = counts[c->rank];
#if TRIAD_HAVE_CUDA
    if (c->nccl && comm_nccl_buffers(send, mine ? recv : NULL)) {
        double t_ = comm_clock();
        comm_nccl_reducescatter_v(c->nccl, send, recv, counts, displs, t);
        g_comm_s += comm_clock() - t_;
        free(ic), free(displs);
        return;
    }
#endif
    void *hs = comm_stage_in(c, send, total, t, 1);
    void *hr = comm_stage_in(c, recv, mine, t, 0);
    char one[8]; /* MPI wants a buffer even for no elements */
    void *r = hr ? hr : one;
    int root = comm_v_sole_owner(c, counts);
    if (root >= 0) {
        /* one rank gets it all: a reduce to it (Open MPI's MPI_Reduce_scatter
         * takes a path 6-8x slower for counts like {n, 0}: 1.3 ms against
         * 0.17 for 0.8 MB on 2 ranks of this machine) */
        const void *sb = c->rank == root ? MPI_IN_PLACE : hs;
        if (c->rank == root)
            memmove(r, hs, mine * comm_dtype_size(t));
        COMM_BLOCKING(MPI_Reduce(sb, r, ic[root], comm_mpi_type(t), MPI_SUM, root, c->comm),
                      MPI_Ireduce(sb, r, ic[root], comm_mpi_type(t), MPI_SUM, root, c->comm, &rq_));
    } else if (total) {
        COMM_BLOCKING(MPI_Reduce_scatter(hs, r, ic, comm_mpi_type(t), MPI_SUM, c->comm),
                      MPI_Ireduce_scatter(hs, r, ic, comm_mpi_type(t), MPI_SUM, c->comm, &rq_));
    }
    comm_stage_out(c, (void *)send, hs, total, t, 0);
    comm_stage_out(c, recv, hr, mine, t, 1);
    free(ic), free(displs);
}

void comm_allgather_v_inplace(comm_group *c, void *buf, const size_t *counts, comm_dtype t)
{
    int *ic = comm_xmalloc(2 * sizeof(int) * (size_t)c->size), *id = ic + c->size;
    size_t *displs = comm_xmalloc(sizeof(size_t) * (size_t)c->size);
    size_t total = comm_v_counts(c, counts, t, ic, id, displs);
#if TRIAD_HAVE_CUDA
    if (c->nccl && comm_nccl_buffers(buf, NULL)) {
        double t_ = comm_clock();
        comm_nccl_allgather_v_inplace(c->nccl, buf, counts, displs, t);
        g_comm_s += comm_clock() - t_;
        free(ic), free(displs);
        return;
    }
#endif
    void *h = comm_stage_in(c, buf, total, t, 1);
    COMM_BLOCKING(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, h, ic, id, comm_mpi_type(t), c->comm),
                  MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, h, ic, id, comm_mpi_type(t), c->comm, &rq_));
    comm_stage_out(c, buf, h, total, t, 1);
    free(ic), free(displs);
}

void comm_broadcast(comm_group *c, void *buf, size_t count, comm_dtype t, int root)
{
    comm_check_count(count, 1);
    COMM_NCCL(c, buf, NULL, comm_nccl_broadcast(c->nccl, buf, count, t, root));
    void *h = comm_stage_in(c, buf, count, t, c->rank == root);
    COMM_BLOCKING(MPI_Bcast(h, (int)count, comm_mpi_type(t), root, c->comm),
                  MPI_Ibcast(h, (int)count, comm_mpi_type(t), root, c->comm, &rq_));
    comm_stage_out(c, buf, h, count, t, c->rank != root);
}

void comm_barrier(comm_group *c)
{
    COMM_BLOCKING(MPI_Barrier(c->comm), MPI_Ibarrier(c->comm, &rq_));
}

/* ---- point to point --------------------------------------------------------- */

void comm_send(comm_group *c, const void *buf, size_t count, comm_dtype t, int peer, int tag)
{
    comm_check_count(count, 1);
    if (comm_nccl_p2p(c, buf)) {
        comm_exchange(c, &(const comm_p2p){(void *)buf, count, peer, tag, 1}, 1, t);
        return;
    }
    void *h = comm_stage_in(c, buf, count, t, 1);
    COMM_BLOCKING(MPI_Send(h, (int)count, comm_mpi_type(t), peer, tag, c->comm),
                  MPI_Isend(h, (int)count, comm_mpi_type(t), peer, tag, c->comm, &rq_));
    comm_stage_out(c, (void *)buf, h, count, t, 0);
}

void comm_recv(comm_group *c, void *buf, size_t count, comm_dtype t, int peer, int tag)
{
    comm_check_count(count, 1);
    if (comm_nccl_p2p(c, buf)) {
        comm_exchange(c, &(const comm_p2p){buf, count, peer, tag, 0}, 1, t);
        return;
    }
    void *h = comm_stage_in(c, buf, count, t, 0);
    COMM_BLOCKING(MPI_Recv(h, (int)count, comm_mpi_type(t), peer, tag, c->comm, MPI_STATUS_IGNORE),
                  MPI_Irecv(h, (int)count, comm_mpi_type(t), peer, tag, c->comm, &rq_));
    comm_stage_out(c, buf, h, count, t, 1);
}

void comm_sendrecv(comm_group *c, const void *sendbuf, size_t send_count, int dest,
                   void *recvbuf, size_t recv_count, int src, comm_dtype t, int tag)
{
    comm_p2p x[2];
    int n = 0;
    if (src >= 0)
        x[n++] = (comm_p2p){recvbuf, recv_count, src, tag, 0};
    if (dest >= 0)
        x[n++] = (comm_p2p){(void *)sendbuf, send_count, dest, tag, 1};
    comm_exchange(c, x, n, t);
}

int comm_group_nccl(const comm_group *c) { return c->nccl != NULL; }

void comm_exchange(comm_group *c, const comm_p2p *ops, int n, comm_dtype t)
{
    if (n <= 0)
        return;
    if (n > 8)
        COMM_DIE("comm_exchange: more than 8 transfers in one group");
    for (int i = 0; i < n; i++)
        comm_check_count(ops[i].count, 1);
#if TRIAD_HAVE_CUDA
    if (c->nccl) {
        int dev = 1;
        for (int i = 0; i < n; i++)
            dev &= comm_nccl_buffers(ops[i].buf, NULL);
        if (dev) {
            double t0 = comm_clock();
            comm_nccl_exchange(c->nccl, ops, n, t);
            g_comm_s += comm_clock() - t0;
            return;
        }
    }
#endif
    void *h[8];
    MPI_Request rq[8];
    for (int i = 0; i < n; i++) { /* MPI matches by tag: the order of posting is free */
        h[i] = comm_stage_in(c, ops[i].buf, ops[i].count, t, ops[i].is_send);
        if (ops[i].is_send)
            mpiCheck(MPI_Isend(h[i], (int)ops[i].count, comm_mpi_type(t), ops[i].peer, ops[i].tag, c->comm, &rq[i]));
        else
            mpiCheck(MPI_Irecv(h[i], (int)ops[i].count, comm_mpi_type(t), ops[i].peer, ops[i].tag, c->comm, &rq[i]));
    }
    for (int i = 0; i < n; i++)
        comm_idle_wait(&rq[i]);
    for (int i = 0; i < n; i++)
        comm_stage_out(c, ops[i].buf, h[i], ops[i].count, t, !ops[i].is_send);
}

/* ---- non-blocking calls ----------------------------------------------------- */

static comm_req *comm_req_new(comm_group *c, void *user, size_t count, comm_dtype t, int is_send)
{
    comm_req *r = comm_xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    r->c = c;
    r->user = user;
    r->count = count;
    r->t = t;
    r->is_send = is_send;
    r->req = MPI_REQUEST_NULL;
    return r;
}

comm_req *comm_iallreduce_sum(comm_group *c, void *buf, size_t count, comm_dtype t)
{
    comm_check_count(count, 1);
    comm_req *r = comm_req_new(c, buf, count, t, 0);
#if TRIAD_HAVE_CUDA
    if (c->nccl && comm_nccl_buffers(buf, NULL)) {
        r->nccl_event = comm_nccl_iallreduce(c->nccl, buf, count, t);
        return r;
    }
#endif
    r->host = comm_stage_in(c, buf, count, t, 1);
    if (t == COMM_BF16) {
        /* reduce an fp32 copy; narrowed back in comm_wait */
        float *f = comm_xmalloc((count ? count : 1) * sizeof(float));
        comm_widen(r->host, f, count);
        mpiCheck(MPI_Iallreduce(MPI_IN_PLACE, f, (int)count, MPI_FLOAT, MPI_SUM, c->comm, &r->req));
        if (r->host != buf)
            free(r->host);
        r->host = f;
    } else {
        mpiCheck(MPI_Iallreduce(MPI_IN_PLACE, r->host, (int)count, comm_mpi_type(t), MPI_SUM, c->comm, &r->req));
    }
    return r;
}

comm_req *comm_ireducescatter_v_sum(comm_group *c, const void *send, void *recv, const size_t *counts, comm_dtype t)
{
    int *ic = comm_xmalloc(2 * sizeof(int) * (size_t)c->size), *id = ic + c->size;
    size_t *displs = comm_xmalloc(sizeof(size_t) * (size_t)c->size);
    size_t total = comm_v_counts(c, counts, t, ic, id, displs), mine = counts[c->rank];
    comm_req *r = comm_req_new(c, mine ? recv : NULL, mine, t, 0);
#if TRIAD_HAVE_CUDA
    if (c->nccl && comm_nccl_buffers(send, mine ? recv : NULL)) {
        double t_ = comm_clock();
        r->nccl_event = comm_nccl_ireducescatter_v(c->nccl, send, recv, counts, displs, t);
        g_comm_s += comm_clock() - t_;
        free(ic), free(displs);
        return r;
    }
#endif
    free(displs);
    r->ic = ic;
    r->send = send;
    r->send_host = comm_stage_in(c, send, total, t, 1);
    r->host = comm_stage_in(c, r->user, mine, t, 0);
    void *rb = r->host ? r->host : r->one;
    int root = comm_v_sole_owner(c, counts);
    if (root >= 0) { /* one rank gets it all: a reduce to it (comm_reducescatter_v_sum) */
        const void *sb = c->rank == root ? MPI_IN_PLACE : r->send_host;
        if (c->rank == root)
            memmove(rb, r->send_host, mine * comm_dtype_size(t));
        mpiCheck(MPI_Ireduce(sb, rb, ic[root], comm_mpi_type(t), MPI_SUM, root, c->comm, &r->req));
    } else if (total) {
        mpiCheck(MPI_Ireduce_scatter(r->send_host, rb, ic, comm_mpi_type(t), MPI_SUM, c->comm, &r->req));
    }
    return r;
}

void comm_wait(comm_req *r)
{
    if (!r)
        return;
#if TRIAD_HAVE_CUDA
    if (r->nccl_event) {
        double t0 = comm_clock();
        comm_nccl_wait(r->nccl_event);
        g_comm_s += comm_clock() - t0;
        free(r);
        return;
    }
#endif
    comm_idle_wait(&r->req);
    if (r->ic) { /* a reduce-scatter: its staged send copy goes, my slice comes back */
        comm_stage_out(r->c, (void *)r->send, r->send_host, 0, r->t, 0);
        free(r->ic);
    }
    if (r->is_send) {
        comm_stage_out(r->c, r->user, r->host, r->count, r->t, 0);
    } else if (r->t == COMM_BF16) {
        if (r->c->mem == COMM_MEM_HOST) {
            comm_narrow(r->host, r->user, r->count);
        } else {
            uint16_t *h = comm_xmalloc((r->count ? r->count : 1) * 2);
            comm_narrow(r->host, h, r->count);
            comm_stage_out(r->c, r->user, h, r->count, COMM_BF16, 1);
        }
        free(r->host);
    } else {
        comm_stage_out(r->c, r->user, r->host, r->count, r->t, 1);
    }
    free(r);
}

comm_req *comm_isend(comm_group *c, const void *buf, size_t count, comm_dtype t, int peer, int tag)
{
    comm_check_count(count, 1);
    comm_req *r = comm_req_new(c, (void *)buf, count, t, 1);
#if TRIAD_HAVE_CUDA
    if (c->nccl && comm_nccl_buffers(buf, NULL)) {
        r->nccl_event = comm_nccl_isend(c->nccl, buf, count, t, peer);
        return r;
    }
#endif
    r->host = comm_stage_in(c, buf, count, t, 1);
    mpiCheck(MPI_Isend(r->host, (int)count, comm_mpi_type(t), peer, tag, c->comm, &r->req));
    return r;
}
