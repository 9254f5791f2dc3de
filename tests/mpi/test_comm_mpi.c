/* test_comm_mpi.c — every collective of executor/comm.h on every group of
 * every (tp, dp, pp) factorisation of the world size, under real mpirun.
 *
 * Inputs are small integers (world rank + 1, index patterns) so every sum is
 * exact in float, double, int64 and bf16 (all values stay below 256 for bf16)
 * and results are compared with ==. Group membership is checked against
 * common/rankmap.h: the members of each group are recomputed from the rank
 * order and compared with an all-gather of world ranks over the group.
 * Exit status: 0 when every rank saw every check pass, 1 otherwise.
 *
 *   mpirun -np N build/tests/mpi/test_comm_mpi
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/rankmap.h"
#include "../../executor/comm.h"

static int n_fail, n_check;
static int g_rank;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        n_check++;                                                            \
        if (!(cond)) {                                                        \
            n_fail++;                                                         \
            if (n_fail < 20) {                                                \
                fprintf(stderr, "FAIL rank %d %s:%d: ", g_rank, __FILE__, __LINE__); \
                fprintf(stderr, __VA_ARGS__);                                 \
                fprintf(stderr, "\n");                                        \
            }                                                                 \
        }                                                                     \
    } while (0)

static uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16); /* exact for the small integers used here */
}
static float f_of_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* members[j] = world rank of group rank j, from the rank map */
static int expected_members(const comm_groups *g, const char *which, int *members)
{
    int tp = g->tp_size, dp = g->dp_size, pp = g->pp_size;
    if (!strcmp(which, "world")) {
        for (int j = 0; j < g->world_size; j++)
            members[j] = j;
        return g->world_size;
    }
    if (!strcmp(which, "tp")) {
        for (int j = 0; j < tp; j++)
            members[j] = rankmap_rank(tp, dp, j, g->dp_rank, g->pp_rank);
        return tp;
    }
    if (!strcmp(which, "dp")) {
        for (int j = 0; j < dp; j++)
            members[j] = rankmap_rank(tp, dp, g->tp_rank, j, g->pp_rank);
        return dp;
    }
    if (!strcmp(which, "pp")) {
        for (int j = 0; j < pp; j++)
            members[j] = rankmap_rank(tp, dp, g->tp_rank, g->dp_rank, j);
        return pp;
    }
    /* embed: first and last stage */
    members[0] = rankmap_rank(tp, dp, g->tp_rank, g->dp_rank, 0);
    members[1] = rankmap_rank(tp, dp, g->tp_rank, g->dp_rank, pp - 1);
    return 2;
}

static void test_group(const comm_groups *g, comm_group *c, const char *which)
{
    int members[64];
    int n = expected_members(g, which, members);
    int size = comm_group_size(c), me = comm_group_rank(c);
    CHECK(size == n, "%s size %d, expected %d", which, size, n);
    if (size != n)
        return;
    CHECK(members[me] == g->rank, "%s: group rank %d is world %d, expected %d", which, me, g->rank, members[me]);

    /* membership: all-gather world ranks (int64) */
    int64_t wr = g->rank, all[64];
    comm_allgather(c, &wr, all, 1, COMM_I64);
    for (int j = 0; j < n; j++)
        CHECK(all[j] == members[j], "%s allgather[%d] = %lld, expected %d", which, j, (long long)all[j], members[j]);

    /* sums of world rank + 1 over the members, times an index pattern */
    double S = 0;
    for (int j = 0; j < n; j++)
        S += members[j] + 1;
    enum { N = 1031 };
    float f[N];
    double d[N];
    int64_t l[N];
    uint16_t h[N];
    for (int i = 0; i < N; i++) {
        int pat = i % 5 + 1;
        f[i] = (float)((g->rank + 1) * pat);
        d[i] = (double)((g->rank + 1) * pat) + 0.5 * i;
        l[i] = (int64_t)(g->rank + 1) * pat - i;
        h[i] = bf16_of((float)((g->rank + 1) * (i % 2 + 1)));
    }
    comm_allreduce_sum(c, f, N, COMM_F32);
    comm_allreduce_sum(c, d, N, COMM_F64);
    comm_allreduce_sum(c, l, N, COMM_I64);
    comm_allreduce_sum(c, h, N, COMM_BF16);
    int bad_f = 0, bad_d = 0, bad_l = 0, bad_h = 0;
    for (int i = 0; i < N; i++) {
        int pat = i % 5 + 1;
        bad_f += !(f[i] == (float)(S * pat));
        bad_d += !(d[i] == S * pat + 0.5 * i * n);
        bad_l += !(l[i] == (int64_t)S * pat - (int64_t)i * n);
        bad_h += !(f_of_bf16(h[i]) == (float)(S * (i % 2 + 1)));
    }
    CHECK(bad_f == 0, "%s allreduce f32: %d wrong (f[1]=%g want %g)", which, bad_f, f[1], S * 2);
    CHECK(bad_d == 0, "%s allreduce f64: %d wrong", which, bad_d);
    CHECK(bad_l == 0, "%s allreduce i64: %d wrong", which, bad_l);
    CHECK(bad_h == 0, "%s allreduce bf16: %d wrong", which, bad_h);

    /* max: world rank, and a NaN-free index pattern */
    float mx[3] = {(float)g->rank, (float)-g->rank, (float)(g->rank % 3)};
    comm_allreduce_max(c, mx, 3, COMM_F32);
    int mmax = members[n - 1], mmin = members[0], m3 = 0;
    for (int j = 0; j < n; j++)
        if (members[j] % 3 > m3)
            m3 = members[j] % 3;
    CHECK(mx[0] == (float)mmax && mx[1] == (float)-mmin && mx[2] == (float)m3, "%s allreduce max: %g %g %g", which,
          mx[0], mx[1], mx[2]);
    uint16_t hm[2] = {bf16_of((float)g->rank), bf16_of(-(float)g->rank)};
    comm_allreduce_max(c, hm, 2, COMM_BF16);
    CHECK(f_of_bf16(hm[0]) == (float)mmax && f_of_bf16(hm[1]) == (float)-mmin, "%s allreduce max bf16", which);

    /* all-gather f32 and bf16: each rank sends K values (rank*100 + k) */
    enum { K = 37 };
    float gs[K], gr[K * 64];
    uint16_t hs[K], hr[K * 64];
    for (int k = 0; k < K; k++) {
        gs[k] = (float)(g->rank * 100 + k);
        hs[k] = bf16_of((float)((g->rank * 7 + k) % 64));
    }
    comm_allgather(c, gs, gr, K, COMM_F32);
    comm_allgather(c, hs, hr, K, COMM_BF16);
    int bad_g = 0;
    for (int j = 0; j < n; j++)
        for (int k = 0; k < K; k++) {
            bad_g += !(gr[j * K + k] == (float)(members[j] * 100 + k));
            bad_g += !(f_of_bf16(hr[j * K + k]) == (float)((members[j] * 7 + k) % 64));
        }
    CHECK(bad_g == 0, "%s allgather: %d wrong", which, bad_g);

    /* reduce-scatter f32, f64, bf16: send[j*K + k] = (rank+1) * (j + 1) + k */
    float rs[K * 64], rr[K];
    double rsd[K * 64], rrd[K];
    uint16_t rsh[K * 64], rrh[K];
    for (int j = 0; j < n; j++)
        for (int k = 0; k < K; k++) {
            rs[j * K + k] = (float)((g->rank + 1) * (j + 1) + k);
            rsd[j * K + k] = (double)((g->rank + 1) * (j + 1) + k);
            rsh[j * K + k] = bf16_of((float)((g->rank + 1) * (j + 1) % 8));
        }
    comm_reducescatter_sum(c, rs, rr, K, COMM_F32);
    comm_reducescatter_sum(c, rsd, rrd, K, COMM_F64);
    comm_reducescatter_sum(c, rsh, rrh, K, COMM_BF16);
    double hsum = 0;
    for (int j = 0; j < n; j++)
        hsum += (members[j] + 1) * (me + 1) % 8;
    int bad_r = 0;
    for (int k = 0; k < K; k++) {
        bad_r += !(rr[k] == (float)(S * (me + 1) + (double)k * n));
        bad_r += !(rrd[k] == S * (me + 1) + (double)k * n);
        bad_r += !(f_of_bf16(rrh[k]) == (float)hsum);
    }
    CHECK(bad_r == 0, "%s reducescatter: %d wrong (rr[0]=%g want %g)", which, bad_r, rr[0], S * (me + 1));

    /* uneven reduce-scatter and in-place all-gather (ZeRO-2): rank j's
     * slice holds (3 j + 1) % 5 elements (none for some j with 4+ ranks) */
    {
        size_t cnt[64], off[65];
        off[0] = 0;
        for (int j = 0; j < n; j++)
            cnt[j] = (size_t)((3 * j + 1) % 5), off[j + 1] = off[j] + cnt[j];
        float vs[5 * 64], vr[5], vg[5 * 64];
        for (size_t i = 0; i < off[n]; i++)
            vs[i] = (float)((g->rank + 1) * (int)(i + 1));
        for (int k = 0; k < 5; k++)
            vr[k] = -7.0f; /* past my count: must stay */
        comm_reducescatter_v_sum(c, vs, vr, cnt, COMM_F32);
        int bad_v = 0;
        for (size_t k = 0; k < 5; k++)
            bad_v += !(vr[k] == (k < cnt[me] ? (float)(S * (double)(off[me] + k + 1)) : -7.0f));
        CHECK(bad_v == 0, "%s reducescatter_v: %d wrong (vr[0]=%g)", which, bad_v, vr[0]);
        for (size_t i = 0; i < off[n]; i++) /* mine: my value; the rest: garbage to be overwritten */
            vg[i] = i >= off[me] && i < off[me + 1] ? (float)(members[me] * 100 + (int)i) : -1.0f;
        comm_allgather_v_inplace(c, vg, cnt, COMM_F32);
        bad_v = 0;
        for (int j = 0; j < n; j++)
            for (size_t i = off[j]; i < off[j + 1]; i++)
                bad_v += !(vg[i] == (float)(members[j] * 100 + (int)i));
        CHECK(bad_v == 0, "%s allgather_v_inplace: %d wrong", which, bad_v);

        /* non-blocking uneven reduce-scatters (ZeRO-1's buckets), three in
         * flight, waited in reverse: the counts above; all to the last rank
         * (a reduce); and a range cut across the ranks as a bucket cuts the
         * slices. Their counts arrays are changed after the calls. */
        size_t cb[64], cc[64], ob[65];
        ob[0] = 0;
        for (int j = 0; j < n; j++)
            cb[j] = j == n - 1 ? 9 : 0, cc[j] = (size_t)(j % 2 ? 2 : 3), ob[j + 1] = ob[j] + cc[j];
        float ws[5 * 64], wr[5], xs[9], xr[9] = {-7, -7, -7, -7, -7, -7, -7, -7, -7}, ys[3 * 64], yr[3];
        for (size_t i = 0; i < off[n]; i++)
            ws[i] = (float)((g->rank + 1) * (int)(i + 1));
        for (int i = 0; i < 9; i++)
            xs[i] = (float)((g->rank + 1) * (i + 2));
        for (size_t i = 0; i < ob[n]; i++)
            ys[i] = (float)((g->rank + 1) * (int)(i % 1009 + 3));
        for (int k = 0; k < 5; k++)
            wr[k] = -7.0f;
        for (int k = 0; k < 3; k++)
            yr[k] = -7.0f;
        comm_req *v1 = comm_ireducescatter_v_sum(c, ws, wr, cnt, COMM_F32);
        comm_req *v2 = comm_ireducescatter_v_sum(c, xs, me == n - 1 ? xr : NULL, cb, COMM_F32);
        comm_req *v3 = comm_ireducescatter_v_sum(c, ys, yr, cc, COMM_F32);
        for (int j = 0; j < n; j++)
            cnt[j] = cb[j] = cc[j] = 99;
        comm_wait(v3);
        comm_wait(v2);
        comm_wait(v1);
        bad_v = 0;
        for (size_t k = 0; k < 5; k++)
            bad_v += !(wr[k] == (k < (off[me + 1] - off[me]) ? (float)(S * (double)(off[me] + k + 1)) : -7.0f));
        for (int k = 0; k < 9; k++)
            bad_v += !(xr[k] == (me == n - 1 ? (float)(S * (k + 2)) : -7.0f));
        for (size_t k = 0; k < 3; k++)
            bad_v += !(yr[k] == (k < ob[me + 1] - ob[me] ? (float)(S * (double)((ob[me] + k) % 1009 + 3)) : -7.0f));
        CHECK(bad_v == 0, "%s ireducescatter_v: %d wrong (wr[0]=%g xr[0]=%g yr[0]=%g)", which, bad_v, wr[0], xr[0],
              yr[0]);
    }

    /* broadcast from the last group rank */
    int64_t b[5];
    for (int k = 0; k < 5; k++)
        b[k] = me == n - 1 ? 1000 * members[n - 1] + k : -1;
    comm_broadcast(c, b, 5, COMM_I64, n - 1);
    int bad_b = 0;
    for (int k = 0; k < 5; k++)
        bad_b += !(b[k] == 1000 * members[n - 1] + k);
    CHECK(bad_b == 0, "%s broadcast: %d wrong", which, bad_b);

    comm_barrier(c);

    if (n > 1) {
        /* sendrecv around the ring: send to next, receive from previous */
        float s[K], r[K];
        int next = (me + 1) % n, prev = (me + n - 1) % n;
        for (int k = 0; k < K; k++) {
            s[k] = (float)(g->rank * 10 + k);
            r[k] = -1;
        }
        comm_sendrecv(c, s, K, next, r, K, prev, COMM_F32, 7);
        int bad_s = 0;
        for (int k = 0; k < K; k++)
            bad_s += !(r[k] == (float)(members[prev] * 10 + k));
        CHECK(bad_s == 0, "%s sendrecv: %d wrong", which, bad_s);

        /* chain as a pipeline does: the first only sends, the last only receives */
        for (int k = 0; k < K; k++)
            r[k] = -1;
        comm_sendrecv(c, s, K, me + 1 < n ? me + 1 : -1, r, K, me > 0 ? me - 1 : -1, COMM_F32, 8);
        bad_s = 0;
        if (me > 0)
            for (int k = 0; k < K; k++)
                bad_s += !(r[k] == (float)(members[me - 1] * 10 + k));
        CHECK(bad_s == 0, "%s sendrecv chain: %d wrong", which, bad_s);

        /* blocking send/recv pairs: even ranks send first, odd ranks receive first */
        double ds[3] = {g->rank + 0.25, g->rank + 0.5, g->rank + 0.75}, dr[3] = {-1, -1, -1};
        if (me % 2 == 0) {
            if (me + 1 < n) {
                comm_send(c, ds, 3, COMM_F64, me + 1, 11);
                comm_recv(c, dr, 3, COMM_F64, me + 1, 12);
            }
        } else {
            comm_recv(c, dr, 3, COMM_F64, me - 1, 11);
            comm_send(c, ds, 3, COMM_F64, me - 1, 12);
        }
        int partner = me % 2 == 0 ? me + 1 : me - 1;
        if (partner < n)
            CHECK(dr[0] == members[partner] + 0.25 && dr[2] == members[partner] + 0.75, "%s send/recv: %g", which,
                  dr[0]);
    }

    /* non-blocking all-reduces, several in flight, waited in reverse */
    float a1[N], a2[7];
    uint16_t a3[9];
    for (int i = 0; i < N; i++)
        a1[i] = (float)((g->rank + 1) * (i % 3));
    for (int i = 0; i < 7; i++)
        a2[i] = (float)(g->rank + 1 + i);
    for (int i = 0; i < 9; i++)
        a3[i] = bf16_of((float)(g->rank + 1));
    comm_req *q1 = comm_iallreduce_sum(c, a1, N, COMM_F32);
    comm_req *q2 = comm_iallreduce_sum(c, a2, 7, COMM_F32);
    comm_req *q3 = comm_iallreduce_sum(c, a3, 9, COMM_BF16);
    comm_wait(q3);
    comm_wait(q2);
    comm_wait(q1);
    int bad_i = 0;
    for (int i = 0; i < N; i++)
        bad_i += !(a1[i] == (float)(S * (i % 3)));
    for (int i = 0; i < 7; i++)
        bad_i += !(a2[i] == (float)(S + (double)n * i));
    for (int i = 0; i < 9; i++)
        bad_i += !(f_of_bf16(a3[i]) == (float)S);
    CHECK(bad_i == 0, "%s iallreduce: %d wrong", which, bad_i);
}

int main(int argc, char **argv)
{
    int rank, world;
    comm_init(&argc, &argv, &rank, &world);
    g_rank = rank;
    if (argc > 1 && !strcmp(argv[1], "--abort")) {
        /* a failing rank must take the job down: rank 1 sends to a peer that
           does not exist, the others wait in a barrier that never completes */
        comm_groups g;
        comm_groups_init(&g, 1, world, 1, COMM_BACKEND_MPI, COMM_MEM_HOST);
        float x = 1;
        if (rank == world - 1)
            comm_send(g.world, &x, 1, COMM_F32, world + 5, 0);
        comm_barrier(g.world);
        comm_finalize();
        return 0;
    }
    int n_layouts = 0;
    for (int tp = 1; tp <= world; tp++)
        for (int dp = 1; dp <= world; dp++) {
            if (world % (tp * dp))
                continue;
            int pp = world / (tp * dp);
            comm_groups g;
            comm_groups_init(&g, tp, dp, pp, COMM_BACKEND_MPI, COMM_MEM_HOST);
            rankmap_coord rc = rankmap_coord_of(rank, tp, dp);
            CHECK(g.tp_rank == rc.tp_rank && g.dp_rank == rc.dp_rank && g.pp_rank == rc.pp_rank,
                  "coords of rank %d", rank);
            test_group(&g, g.world, "world");
            test_group(&g, g.tp, "tp");
            test_group(&g, g.dp, "dp");
            test_group(&g, g.pp, "pp");
            int ends = pp > 1 && (g.pp_rank == 0 || g.pp_rank == pp - 1);
            CHECK((g.embed != NULL) == ends, "embed group present=%d, expected %d (pp=%d stage %d)", g.embed != NULL,
                  ends, pp, g.pp_rank);
            if (g.embed)
                test_group(&g, g.embed, pp == 1 ? "world" : "embed");
            comm_groups_free(&g);
            n_layouts++;
        }
    int64_t tot[2] = {n_fail, n_check};
    comm_groups g;
    comm_groups_init(&g, 1, world, 1, COMM_BACKEND_MPI, COMM_MEM_HOST);
    comm_allreduce_sum(g.world, tot, 2, COMM_I64);
    comm_groups_free(&g);
    if (rank == 0)
        printf("test_comm_mpi: np=%d, %d layouts, %lld checks over all ranks, %lld failed\n", world, n_layouts,
               (long long)tot[1], (long long)tot[0]);
    comm_finalize();
    return tot[0] == 0 ? 0 : 1;
}
