/* bench_comm.c — comm layer bandwidth over the world group, nccl-tests style:
 * one timing driver over all-reduce, all-gather and reduce-scatter of f32;
 * 2 warm-up iterations excluded, median of the timed iterations; algbw =
 * bytes / time, busbw = algbw * 2(n-1)/n (all-reduce) or (n-1)/n (all-gather,
 * reduce-scatter), where bytes is the full buffer (count * n * 4 for the
 * gathers). Data checked after the last iteration with exact inputs.
 *   mpirun -np N bench_comm [max_bytes]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../executor/comm.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rank, world;
    comm_init(&argc, &argv, &rank, &world);
    size_t max_bytes = argc > 1 ? (size_t)atoll(argv[1]) : ((size_t)64 << 20);
    comm_groups g;
    comm_groups_init(&g, 1, world, 1, COMM_BACKEND_MPI, COMM_MEM_HOST);
    size_t max_elems = max_bytes / 4;
    float *a = malloc(sizeof(float) * max_elems), *b = malloc(sizeof(float) * max_elems);
    const char *names[3] = {"all_reduce", "all_gather", "reduce_scatter"};
    int wrong = 0;
    if (rank == 0) {
        printf("# comm_mpi over %d ranks, f32, world group; median of timed iterations after 2 warm-up\n", world);
        printf("%-16s %12s %10s %10s %10s %6s\n", "collective", "size", "time", "algbw", "busbw", "check");
        printf("%-16s %12s %10s %10s %10s %6s\n", "", "(bytes)", "(us)", "(GB/s)", "(GB/s)", "");
    }
    for (int op = 0; op < 3; op++)
        for (size_t bytes = 4096; bytes <= max_bytes; bytes *= 16) {
            size_t n = bytes / 4, per = n / (size_t)world; /* gathers: per-rank slice */
            int iters = bytes <= ((size_t)1 << 20) ? 20 : 5;
            double t[32];
            for (int it = 0; it < iters + 2; it++) {
                for (size_t i = 0; i < n; i++)
                    a[i] = (float)((rank + 1) * (int)(i % 3 + 1));
                comm_barrier(g.world);
                double t0 = MPI_Wtime();
                if (op == 0)
                    comm_allreduce_sum(g.world, a, n, COMM_F32);
                else if (op == 1)
                    comm_allgather(g.world, a, b, per, COMM_F32);
                else
                    comm_reducescatter_sum(g.world, a, b, per, COMM_F32);
                double dt = MPI_Wtime() - t0;
                comm_allreduce_max(g.world, &dt, 1, COMM_F64);
                if (it >= 2)
                    t[it - 2] = dt;
            }
            qsort(t, (size_t)iters, sizeof(double), cmp_d);
            double med = t[iters / 2];
            double S = world * (world + 1) / 2.0, f = op == 0 ? 2.0 * (world - 1) / world : (double)(world - 1) / world;
            int bad = 0;
            if (op == 0)
                for (size_t i = 0; i < n; i++)
                    bad += !(a[i] == (float)(S * (double)(i % 3 + 1)));
            else if (op == 1)
                for (size_t i = 0; i < per * (size_t)world; i++)
                    bad += !(b[i] == (float)((i / per + 1) * (i % per % 3 + 1)));
            else
                for (size_t i = 0; i < per; i++)
                    bad += !(b[i] == (float)(S * (double)((rank * per + i) % 3 + 1)));
            wrong += bad;
            if (rank == 0)
                printf("%-16s %12zu %10.1f %10.3f %10.3f %6s\n", names[op], bytes, med * 1e6, bytes / med / 1e9,
                       bytes / med / 1e9 * f, bad ? "WRONG" : "ok");
        }
    free(a);
    free(b);
    comm_groups_free(&g);
    comm_finalize();
    return wrong ? 1 : 0;
}
