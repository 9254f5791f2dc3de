/* test_comm_device.c — comm_mpi.c's host staging of device buffers
 * (COMM_MEM_DEVICE, CUDA build), on a machine with a GPU:
 *   mpirun -np 2 build/tests/mpi/test_comm_device
 * Every collective and p2p call of comm.h on cudaMalloc'd buffers, exact
 * small-integer inputs, results copied back and compared with ==, for every
 * (tp, dp, pp) factorisation of the world. Exit 0 only when all pass;
 * without CUDA it prints that it has nothing to test and exits 77.
 * With --nccl the groups use COMM_BACKEND_NCCL (comm_nccl.c) instead of
 * MPI staging; NCCL needs one GPU per rank.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../executor/comm.h"

#if TRIAD_HAVE_CUDA
#include <cuda_runtime.h>

static int n_fail, n_check;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        n_check++;                                                         \
        if (!(cond)) {                                                     \
            if (++n_fail < 20) {                                           \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);       \
                fprintf(stderr, __VA_ARGS__);                              \
                fprintf(stderr, "\n");                                     \
            }                                                              \
        }                                                                  \
    } while (0)
#define CU(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

enum { N = 4099 };

static void test_group(comm_group *c, int wrank)
{
    int n = comm_group_size(c), me = comm_group_rank(c);
    /* world ranks of the members, gathered on the host (int64) through the device */
    int64_t *d_i, *d_all, members[64], mine = wrank;
    CU(cudaMalloc((void **)&d_i, 8));
    CU(cudaMalloc((void **)&d_all, 8 * 64));
    CU(cudaMemcpy(d_i, &mine, 8, cudaMemcpyHostToDevice));
    comm_allgather(c, d_i, d_all, 1, COMM_I64);
    CU(cudaMemcpy(members, d_all, 8 * (size_t)n, cudaMemcpyDeviceToHost));
    CHECK(members[me] == wrank, "allgather: my slot holds %lld", (long long)members[me]);
    double S = 0;
    for (int j = 0; j < n; j++)
        S += members[j] + 1;

    float *h = malloc(sizeof(float) * N * 64), *d, *d2;
    CU(cudaMalloc((void **)&d, sizeof(float) * N * 64));
    CU(cudaMalloc((void **)&d2, sizeof(float) * N * 64));
    /* all-reduce */
    for (int i = 0; i < N; i++)
        h[i] = (float)((wrank + 1) * (i % 7 + 1));
    CU(cudaMemcpy(d, h, sizeof(float) * N, cudaMemcpyHostToDevice));
    comm_allreduce_sum(c, d, N, COMM_F32);
    CU(cudaMemcpy(h, d, sizeof(float) * N, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += !(h[i] == (float)(S * (i % 7 + 1)));
    CHECK(bad == 0, "allreduce: %d wrong", bad);
    /* non-blocking all-reduce */
    for (int i = 0; i < N; i++)
        h[i] = (float)(wrank + 1);
    CU(cudaMemcpy(d, h, sizeof(float) * N, cudaMemcpyHostToDevice));
    comm_req *r = comm_iallreduce_sum(c, d, N, COMM_F32);
    comm_wait(r);
    CU(cudaMemcpy(h, d, sizeof(float) * N, cudaMemcpyDeviceToHost));
    bad = 0;
    for (int i = 0; i < N; i++)
        bad += !(h[i] == (float)S);
    CHECK(bad == 0, "iallreduce: %d wrong", bad);
    /* reduce-scatter: send[j*N + i] = (rank+1)*(j+1) */
    for (int j = 0; j < n; j++)
        for (int i = 0; i < N; i++)
            h[j * N + i] = (float)((wrank + 1) * (j + 1));
    CU(cudaMemcpy(d, h, sizeof(float) * N * (size_t)n, cudaMemcpyHostToDevice));
    comm_reducescatter_sum(c, d, d2, N, COMM_F32);
    CU(cudaMemcpy(h, d2, sizeof(float) * N, cudaMemcpyDeviceToHost));
    bad = 0;
    for (int i = 0; i < N; i++)
        bad += !(h[i] == (float)(S * (me + 1)));
    CHECK(bad == 0, "reducescatter: %d wrong", bad);
    /* uneven reduce-scatter and in-place all-gather: rank j holds
     * N + 37 j - 40 (j = 1 of 2 ranks: N - 3) elements */
    {
        size_t cnt[64], off[65];
        off[0] = 0;
        for (int j = 0; j < n; j++)
            cnt[j] = (size_t)(j % 3 == 2 ? 0 : N + 37 * j - 40), off[j + 1] = off[j] + cnt[j];
        /* values by global index with a period (1009, prime) no block
         * offset divides: a rank reducing another block's elements is seen
         * (with i % 11 the first offset, 4059 = 11 x 369, hid exactly that) */
        for (size_t i = 0; i < off[n]; i++)
            h[i] = (float)((wrank + 1) * (int)(i % 1009 + 1));
        CU(cudaMemcpy(d, h, sizeof(float) * off[n], cudaMemcpyHostToDevice));
        comm_reducescatter_v_sum(c, d, d2, cnt, COMM_F32);
        CU(cudaMemcpy(h, d2, sizeof(float) * (cnt[me] ? cnt[me] : 1), cudaMemcpyDeviceToHost));
        bad = 0;
        for (size_t i = 0; i < cnt[me]; i++)
            bad += !(h[i] == (float)(S * (double)((off[me] + i) % 1009 + 1)));
        CHECK(bad == 0, "reducescatter_v: %d wrong", bad);
        /* the same non-blocking (d, d2 as above), beside a second one that
         * gives all 37 elements of d3 to the last rank (into d4); waited in
         * reverse, counts changed after the calls */
        float *d3, *d4;
        CU(cudaMalloc((void **)&d3, sizeof(float) * 37));
        CU(cudaMalloc((void **)&d4, sizeof(float) * 37));
        size_t c2[64];
        for (int j = 0; j < n; j++)
            c2[j] = j == n - 1 ? 37 : 0;
        for (size_t i = 0; i < off[n]; i++)
            h[i] = (float)((wrank + 1) * (int)(i % 1009 + 2));
        CU(cudaMemcpy(d, h, sizeof(float) * off[n], cudaMemcpyHostToDevice));
        for (int i = 0; i < 37; i++)
            h[i] = (float)((wrank + 1) * (i + 5));
        CU(cudaMemcpy(d3, h, sizeof(float) * 37, cudaMemcpyHostToDevice));
        comm_req *q1 = comm_ireducescatter_v_sum(c, d, d2, cnt, COMM_F32);
        comm_req *q2 = comm_ireducescatter_v_sum(c, d3, me == n - 1 ? d4 : NULL, c2, COMM_F32);
        size_t mine_n = cnt[me];
        for (int j = 0; j < n; j++)
            cnt[j] = c2[j] = 99;
        comm_wait(q2);
        comm_wait(q1);
        CU(cudaMemcpy(h, d2, sizeof(float) * (mine_n ? mine_n : 1), cudaMemcpyDeviceToHost));
        bad = 0;
        for (size_t i = 0; i < mine_n; i++)
            bad += !(h[i] == (float)(S * (double)((off[me] + i) % 1009 + 2)));
        if (me == n - 1) {
            CU(cudaMemcpy(h, d4, sizeof(float) * 37, cudaMemcpyDeviceToHost));
            for (int i = 0; i < 37; i++)
                bad += !(h[i] == (float)(S * (i + 5)));
        }
        CHECK(bad == 0, "ireducescatter_v: %d wrong", bad);
        CU(cudaFree(d3));
        CU(cudaFree(d4));
        for (int j = 0; j < n; j++)
            cnt[j] = (size_t)(j % 3 == 2 ? 0 : N + 37 * j - 40);
        for (size_t i = 0; i < off[n]; i++)
            h[i] = i >= off[me] && i < off[me + 1] ? (float)(wrank * 10 + (int)(i % 13)) : -1.0f;
        CU(cudaMemcpy(d, h, sizeof(float) * off[n], cudaMemcpyHostToDevice));
        comm_allgather_v_inplace(c, d, cnt, COMM_F32);
        CU(cudaMemcpy(h, d, sizeof(float) * off[n], cudaMemcpyDeviceToHost));
        bad = 0;
        for (int j = 0; j < n; j++)
            for (size_t i = off[j]; i < off[j + 1]; i++)
                bad += !(h[i] == (float)(members[j] * 10 + (int)(i % 13)));
        CHECK(bad == 0, "allgather_v_inplace: %d wrong", bad);
    }
    /* broadcast from group rank 0 */
    for (int i = 0; i < N; i++)
        h[i] = me == 0 ? (float)(i % 100) : -1.0f;
    CU(cudaMemcpy(d, h, sizeof(float) * N, cudaMemcpyHostToDevice));
    comm_broadcast(c, d, N, COMM_F32, 0);
    CU(cudaMemcpy(h, d, sizeof(float) * N, cudaMemcpyDeviceToHost));
    bad = 0;
    for (int i = 0; i < N; i++)
        bad += !(h[i] == (float)(i % 100));
    CHECK(bad == 0, "broadcast: %d wrong", bad);
    if (n > 1) {
        /* sendrecv ring, then isend + recv */
        for (int i = 0; i < N; i++)
            h[i] = (float)(wrank * 1000 + i % 50);
        CU(cudaMemcpy(d, h, sizeof(float) * N, cudaMemcpyHostToDevice));
        int next = (me + 1) % n, prev = (me + n - 1) % n;
        comm_sendrecv(c, d, N, next, d2, N, prev, COMM_F32, 3);
        CU(cudaMemcpy(h, d2, sizeof(float) * N, cudaMemcpyDeviceToHost));
        bad = 0;
        for (int i = 0; i < N; i++)
            bad += !(h[i] == (float)(members[prev] * 1000 + i % 50));
        CHECK(bad == 0, "sendrecv: %d wrong", bad);
        comm_req *s = comm_isend(c, d, N, COMM_F32, next, 4);
        comm_recv(c, d2, N, COMM_F32, prev, 4);
        comm_wait(s);
        CU(cudaMemcpy(h, d2, sizeof(float) * N, cudaMemcpyDeviceToHost));
        bad = 0;
        for (int i = 0; i < N; i++)
            bad += !(h[i] == (float)(members[prev] * 1000 + i % 50));
        CHECK(bad == 0, "isend/recv: %d wrong", bad);
    }
    free(h);
    CU(cudaFree(d));
    CU(cudaFree(d2));
    CU(cudaFree(d_i));
    CU(cudaFree(d_all));
}

int main(int argc, char **argv)
{
    int rank, world;
    comm_init(&argc, &argv, &rank, &world);
    comm_backend be = argc > 1 && !strcmp(argv[1], "--nccl") ? COMM_BACKEND_NCCL : COMM_BACKEND_MPI;
    int ndev = 0;
    CU(cudaGetDeviceCount(&ndev));
    CU(cudaSetDevice(rank % ndev));
    int n_layouts = 0;
    for (int tp = 1; tp <= world; tp++)
        for (int dp = 1; dp <= world; dp++) {
            if (world % (tp * dp))
                continue;
            comm_groups g;
            comm_groups_init(&g, tp, dp, world / (tp * dp), be, COMM_MEM_DEVICE);
            test_group(g.world, rank);
            test_group(g.tp, rank);
            test_group(g.dp, rank);
            test_group(g.pp, rank);
            if (g.embed)
                test_group(g.embed, rank);
            comm_groups_free(&g);
            n_layouts++;
        }
    int64_t tot[2] = {n_fail, n_check};
    comm_groups g;
    comm_groups_init(&g, 1, world, 1, COMM_BACKEND_MPI, COMM_MEM_HOST);
    comm_allreduce_sum(g.world, tot, 2, COMM_I64);
    comm_groups_free(&g);
    if (rank == 0)
        printf("test_comm_device: %s, np=%d on %d GPU(s), %d layouts, %lld checks, %lld failed\n",
               be == COMM_BACKEND_NCCL ? "NCCL" : "MPI staging", world, ndev, n_layouts, (long long)tot[1], (long long)tot[0]);
    comm_finalize();
    return tot[0] == 0 ? 0 : 1;
}
#else
int main(void)
{
    printf("test_comm_device: CPU build, nothing to test\n");
    return 77;
}
#endif
