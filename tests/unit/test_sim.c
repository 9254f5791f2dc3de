/* test_sim.c — the event simulator where the answer is known exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "assert_close.h"
#include "../../costmodel/sim_core.h"
#include "../../costmodel/profile_impl.h"

typedef struct {
    sim_input in;
    double f[256], b[256], dp[64], post[64], opt[64];
    int64_t act[256], st[64];
} synth;

/* Uniform stages, free communication: every virtual stage takes tf/v
 * forward and tb/v backward. */
static void synth_init(synth *s, spec_schedule sched, int p, int v, int m, double tf, double tb)
{
    memset(s, 0, sizeof *s);
    s->in.p = p, s->in.v = v, s->in.m = m, s->in.schedule = sched;
    for (int i = 0; i < p * v; i++)
        s->f[i] = tf / v, s->b[i] = tb / v, s->act[i] = 1000 / v;
    s->in.fwd_s = s->f, s->in.bwd_s = s->b, s->in.act_bytes = s->act, s->in.static_bytes = s->st;
    s->in.dp_s = s->dp, s->in.post_s = s->post, s->in.optimizer_s = s->opt;
    s->in.dp_buckets = 1;
}

static double run(synth *s, cost_sim **keep)
{
    cost_sim *sim = NULL;
    char err[SPEC_ERR_LEN];
    assert_int_equal(sim_run_input(&s->in, 0, &sim, err), SPEC_OK);
    double t = sim->step_s;
    if (keep)
        *keep = sim;
    else
        cost_sim_free(sim);
    return t;
}

/* More ranks than cores (sim_contention_scales). Times measured with
 * `ranks` ranks sharing `cores` cores are ranks/cores of a rank alone. */
static double run_contended(synth *s, double ranks, double cores, double replicas)
{
    double *scale = NULL;
    char err[SPEC_ERR_LEN];
    assert_int_equal(sim_contention_scales(&s->in, ranks, cores, replicas, &scale, err), SPEC_OK);
    s->in.op_scale = scale;
    double t = run(s, NULL);
    s->in.op_scale = NULL;
    free(scale);
    return t;
}

static void test_contention(void **state)
{
    (void)state;
    synth s;
    /* one micro-batch through two stages: never two ranks busy at once, so
     * each op runs alone on a core, at half its measured (2 on 1) time */
    synth_init(&s, SPEC_SCHED_GPIPE, 2, 1, 1, 1.0, 2.0);
    assert_close(run_contended(&s, 2, 1, 1), 0.5 * (1 + 2 - 1) * 3.0, 1e-6, 0);
    /* two data-parallel replicas on one core: always both busy, as when
     * measured: unchanged */
    synth_init(&s, SPEC_SCHED_1F1B, 1, 1, 3, 1.0, 2.0);
    assert_close(run_contended(&s, 2, 1, 2), 3 * 3.0, 1e-6, 0);
    /* a core per rank: no contention, the closed form holds */
    synth_init(&s, SPEC_SCHED_1F1B, 2, 1, 8, 1.0, 2.0);
    assert_close(run_contended(&s, 2, 2, 1), (8 + 2 - 1) * 3.0, 1e-6, 0);
    /* a 4-stage GPipe on 2 cores measured with 4 ranks: in the fill and
     * drain fewer than 2 stages compute, so the step is shorter than the
     * measured times say, and never shorter than all work at 2 cores */
    synth_init(&s, SPEC_SCHED_GPIPE, 4, 1, 4, 1.0, 2.0);
    double plain = run(&s, NULL), shared = run_contended(&s, 4, 2, 1);
    assert_true(shared < plain);
    assert_true(shared >= 4 * 4 * 3.0 * 0.5 / 2 - 1e-9);
}

/* Ranks that sleep between polls: an op that waited for its input starts a
 * wake-up later, and no op ends sooner than its floor. */
static void test_sleeping_waits(void **state)
{
    (void)state;
    synth s;
    /* one micro-batch through p stages: every forward but the first and
     * every backward but the last stage's waited, 2 (p - 1) wake-ups */
    for (int p = 1; p <= 6; p++) {
        synth_init(&s, SPEC_SCHED_1F1B, p, 1, 1, 1.0, 2.0);
        s.in.wake_s = 0.1;
        assert_close(run(&s, NULL), p * 3.0 + 2 * (p - 1) * 0.1, 1e-12, 0);
    }
    /* 1F1B, p = 2, m = 2 (f 1, b 2): stage 1 runs F0 [1.1, 2.1], B0 [2.1,
     * 4.1] and then F1 without waiting (its input came at 2), B1 [5.1, 7.1];
     * stage 0 runs F0, F1, then B0 from 4.2, B1 from 7.2: 9.2, not 9 */
    synth_init(&s, SPEC_SCHED_1F1B, 2, 1, 2, 1.0, 2.0);
    assert_close(run(&s, NULL), 9.0, 1e-12, 0);
    s.in.wake_s = 0.1;
    assert_close(run(&s, NULL), 9.2, 1e-12, 0);
    /* floors: a forward of 1 that cannot end before 1.5, a backward of 2
     * whose floor 1.8 never binds */
    double ff[2] = {1.5, 1.5}, bf[2] = {1.8, 1.8};
    synth_init(&s, SPEC_SCHED_GPIPE, 2, 1, 1, 1.0, 2.0);
    s.in.fwd_floor_s = ff, s.in.bwd_floor_s = bf;
    assert_close(run(&s, NULL), 1.5 + 1.5 + 2 + 2, 1e-12, 0);
    /* measured 2 ranks on 1 core, each op alone runs at half its time (0.5,
     * 1): the forwards' floor binds, the backwards' (0.8 < 1) does not */
    ff[0] = ff[1] = 1.5, bf[0] = bf[1] = 0.8;
    assert_close(run_contended(&s, 2, 1, 1), 1.5 + 1.5 + 1 + 1, 1e-6, 0);
    /* two replicas always busy on one core: sharing (f 1, b 2 as measured)
     * is longer than the floors, which change nothing */
    synth_init(&s, SPEC_SCHED_1F1B, 1, 1, 3, 1.0, 2.0);
    ff[0] = 0.8, bf[0] = 1.6;
    s.in.fwd_floor_s = ff, s.in.bwd_floor_s = bf;
    assert_close(run_contended(&s, 2, 1, 2), 3 * 3.0, 1e-6, 0);
}

/* GPipe and 1F1B: (m + p - 1)(t_f + t_b) (Narayanan et al. 2021, Sec 2.2). */
static void test_gpipe_1f1b_closed_form(void **state)
{
    (void)state;
    for (int sched = 0; sched < 2; sched++)
        for (int p = 1; p <= 8; p++)
            for (int m = 1; m <= 16; m++) {
                synth s;
                synth_init(&s, sched == 0 ? SPEC_SCHED_GPIPE : SPEC_SCHED_1F1B, p, 1, m, 1.25, 2.5);
                assert_close(run(&s, NULL), (m + p - 1) * 3.75, 1e-12, 0);
            }
}

/* Interleaved 1F1B with v chunks: the bubble is (p - 1)/v stage times,
 * i.e. (p - 1)/(v m) of the ideal m (t_f + t_b), for m a multiple of p. */
static void test_interleaved_bubble(void **state)
{
    (void)state;
    int ps[] = {2, 4, 8}, vs[] = {2, 3, 4};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 1; k <= 3; k++) {
                int p = ps[i], v = vs[j], m = k * p;
                synth s;
                synth_init(&s, SPEC_SCHED_INTERLEAVED, p, v, m, 1.0, 2.0);
                double ideal = m * 3.0;
                double bubble = run(&s, NULL) - ideal;
                assert_close(bubble / ideal, (p - 1.0) / (v * m), 1e-9, 0);
            }
}

/* 1F1B holds min(p - i, m) micro-batches on stage i at its peak; GPipe m;
 * interleaved what the memory model counts. */
static void test_in_flight_peak(void **state)
{
    (void)state;
    for (int p = 1; p <= 6; p++)
        for (int m = 1; m <= 10; m++) {
            synth s;
            cost_sim *sim;
            synth_init(&s, SPEC_SCHED_1F1B, p, 1, m, 1.0, 2.0);
            run(&s, &sim);
            for (int i = 0; i < p; i++) {
                cost_sim_stage st;
                cost_sim_stage_at(sim, i, &st);
                assert_int_equal(st.peak_in_flight, p - i < m ? p - i : m);
                assert_int_equal(st.mem_peak_bytes, (int64_t)(p - i < m ? p - i : m) * 1000);
            }
            cost_sim_free(sim);
            synth_init(&s, SPEC_SCHED_GPIPE, p, 1, m, 1.0, 2.0);
            run(&s, &sim);
            for (int i = 0; i < p; i++) {
                cost_sim_stage st;
                cost_sim_stage_at(sim, i, &st);
                assert_int_equal(st.peak_in_flight, m);
            }
            cost_sim_free(sim);
            /* interleaved: the chunk-micro-batches the memory model counts
             * (cost_in_flight_chunks, every forward first when m == p) */
            for (int v = 2; v <= 4 && p > 1 && m % p == 0; v++) {
                synth_init(&s, SPEC_SCHED_INTERLEAVED, p, v, m, 1.0, 2.0);
                run(&s, &sim);
                spec_layout l;
                spec_layout_default(&l);
                l.pp = p, l.v = v, l.schedule = SPEC_SCHED_INTERLEAVED;
                for (int i = 0; i < p; i++) {
                    cost_sim_stage st;
                    cost_sim_stage_at(sim, i, &st);
                    assert_int_equal(st.mem_peak_bytes, (int64_t)cost_in_flight_chunks(&l, i, m) * (1000 / v));
                    assert_int_equal(st.peak_in_flight, cost_in_flight(&l, i, m));
                }
                cost_sim_free(sim);
            }
        }
}

/* Data-parallel buckets overlap the last backward: one rank, m = 2,
 * t_f = 1, t_b = 2, 4 buckets of 0.25 s (1 s in all). Buckets become ready
 * at 4.5, 5, 5.5, 6 (the last backward runs 4..6); each takes 0.25 s, so the
 * last ends at 6.25: 0.25 s exposed, then the 0.5 s optimizer: 6.75 s. */
static void test_dp_overlap(void **state)
{
    (void)state;
    synth s;
    synth_init(&s, SPEC_SCHED_1F1B, 1, 1, 2, 1.0, 2.0);
    s.dp[0] = 1.0;
    s.in.dp_buckets = 4;
    s.opt[0] = 0.5;
    cost_sim *sim;
    assert_close(run(&s, &sim), 6.75, 1e-12, 0);
    cost_sim_stage st;
    cost_sim_stage_at(sim, 0, &st);
    assert_close(st.exposed_comm_s, 0.25, 1e-12, 0);
    cost_sim_free(sim);
    /* with traffic longer than the backward, all but the overlap is exposed:
     * 4 buckets of 1 s from 4.5: ends 8.5 */
    s.dp[0] = 4.0;
    s.opt[0] = 0;
    assert_close(run(&s, NULL), 8.5, 1e-12, 0);
}

/* Communication only ever delays: step time grows with the p2p time. */
static void test_monotone_in_comm(void **state)
{
    (void)state;
    double last = 0;
    for (int k = 0; k < 6; k++) {
        synth s;
        synth_init(&s, SPEC_SCHED_1F1B, 4, 1, 8, 1.0, 2.0);
        s.in.p2p_s = 0.1 * k;
        double t = run(&s, NULL);
        assert_true(t >= last);
        last = t;
    }
}

/* Pipeline sends per stage, p = 3, m = 4, 0.1 s each: stage 0 sends 4
 * forwards, stage 2 4 backwards, stage 1 both: 0.4, 0.8, 0.4 s — the same
 * whether or not the simulation keeps its events. */
static void test_comm_time_with_and_without_events(void **state)
{
    (void)state;
    double expect[3] = {0.4, 0.8, 0.4};
    for (int record = 0; record <= 1; record++) {
        synth s;
        synth_init(&s, SPEC_SCHED_1F1B, 3, 1, 4, 1.0, 2.0);
        s.in.p2p_s = 0.1;
        cost_sim *sim = NULL;
        char err[SPEC_ERR_LEN];
        assert_int_equal(sim_run_input(&s.in, record, &sim, err), SPEC_OK);
        for (int i = 0; i < 3; i++) {
            cost_sim_stage st;
            cost_sim_stage_at(sim, i, &st);
            assert_close(st.comm_s, expect[i], 1e-12, 0);
        }
        cost_sim_free(sim);
    }
}

/* One rank, no communication: the simulator equals the closed form. */
static void test_one_rank_equals_closed_form(void **state)
{
    (void)state;
    spec_model m;
    spec_cluster c;
    spec_layout l;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse("gpt2-124m", &m, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    const char *lays[] = {"mbs=4", "mbs=2,recompute=full", "mbs=8,recompute=selective"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(spec_layout_parse(lays[i], &l, err), SPEC_OK);
        cost_result cf, sr;
        cost_sim *sim = NULL;
        assert_int_equal(cost_predict(&m, &c, &l, 64, NULL, &cf, err), SPEC_OK);
        assert_int_equal(cost_sim_run(&m, &c, &l, 64, NULL, NULL, &sim, &sr, err), SPEC_OK);
        assert_close(sr.step_time_s, cf.step_time_s, 1e-9, 0);
        assert_int_equal(sr.mem_peak_bytes, cf.mem_peak_bytes);
        cost_sim_free(sim);
    }
}

/* ZeRO-2 on one pipeline stage, data parallel without overlap (dp_overlap
 * 0, as the MPI comm): the simulator's backwards carry every micro-batch's
 * block reduce-scatters and its step ends with the extras' reduce-scatter
 * and the all-gather, which is the closed form's sum exactly; it differs
 * from ZeRO-1 by 16 micro-batches x 12 blocks of reductions. */
static void test_zero2_equals_closed_form(void **state)
{
    (void)state;
    spec_model m;
    spec_cluster c;
    spec_layout l1, l2;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse("gpt2-124m", &m, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("dp=2,zero=2,mbs=2", &l2, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("dp=2,zero=1,mbs=2", &l1, err), SPEC_OK);
    cost_profile p = *cost_profile_builtin(c.gpu);
    p.params.dp_overlap = 0;
    cost_result cf, sr, cf1;
    cost_sim *sim = NULL;
    assert_int_equal(cost_predict(&m, &c, &l2, 64, &p, &cf, err), SPEC_OK);
    assert_int_equal(cost_sim_run(&m, &c, &l2, 64, &p, NULL, &sim, &sr, err), SPEC_OK);
    assert_int_equal(cf.n_micro, 16);
    assert_close(sr.step_time_s, cf.step_time_s, 1e-9, 0);
    assert_int_equal(sr.mem_peak_bytes, cf.mem_peak_bytes);
    cost_sim_free(sim);
    assert_int_equal(cost_predict(&m, &c, &l1, 64, &p, &cf1, err), SPEC_OK);
    cost_comm c1, c2;
    cost_comm_times(&m, &c, &l1, &p, &c1);
    cost_comm_times(&m, &c, &l2, &p, &c2);
    assert_true(c2.zero2_rs_layer_s > 0);
    assert_close(cf.step_time_s - cf1.step_time_s,
                 16 * 12 * c2.zero2_rs_layer_s + c2.zero_rs_s - c1.zero_rs_s, 1e-9, 0);
    assert_true(cf.mem_peak_bytes < cf1.mem_peak_bytes);
    /* ZeRO-3 on the same profile: the simulator's step is the closed
     * form's, and it pays ZeRO-2's step plus two block gathers per block
     * and micro-batch, and the extras' gather after the step in place of
     * the whole vector's */
    spec_layout l3;
    assert_int_equal(spec_layout_parse("dp=2,zero=3,mbs=2", &l3, err), SPEC_OK);
    cost_result cf3, sr3;
    assert_int_equal(cost_predict(&m, &c, &l3, 64, &p, &cf3, err), SPEC_OK);
    assert_int_equal(cost_sim_run(&m, &c, &l3, 64, &p, NULL, &sim, &sr3, err), SPEC_OK);
    assert_close(sr3.step_time_s, cf3.step_time_s, 1e-9, 0);
    assert_int_equal(sr3.mem_peak_bytes, cf3.mem_peak_bytes);
    cost_sim_free(sim);
    cost_comm c3;
    cost_comm_times(&m, &c, &l3, &p, &c3);
    assert_close(cf3.step_time_s - cf.step_time_s,
                 16 * 12 * 2 * c3.zero3_ag_layer_s + c3.zero_ag_s - c2.zero_ag_s, 1e-9, 0);
    assert_true(cf3.mem_peak_bytes < cf.mem_peak_bytes);
}

/* A pipelined layout of a real model: free communication and uniform
 * stages give the 1F1B closed form exactly. */
static void test_pipeline_free_comm(void **state)
{
    (void)state;
    spec_model m;
    spec_cluster c;
    spec_layout l;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse("gpt2-124m,vocab=50304", &m, err), SPEC_OK);
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    assert_int_equal(spec_layout_parse("pp=4,mbs=1", &l, err), SPEC_OK);
    cost_sim_opts o;
    cost_sim_opts_default(&o);
    o.free_comm = 1;
    cost_result sr;
    cost_sim *sim = NULL;
    assert_int_equal(cost_sim_run(&m, &c, &l, 16, NULL, &o, &sim, &sr, err), SPEC_OK);
    /* stage times from the per-block costs */
    cost_block blk;
    cost_block_times(&m, &c, &l, l.recompute, NULL, &blk);
    cost_comm cm;
    cost_comm_times(&m, &c, &l, NULL, &cm);
    cost_extra e0, e3;
    cost_extra_times(&m, &c, &l, 0, NULL, &e0);
    cost_extra_times(&m, &c, &l, 3, NULL, &e3);
    double s0 = 3 * (blk.fwd_s + blk.bwd_s) + e0.fwd_s + e0.bwd_s;
    double s3 = 3 * (blk.fwd_s + blk.bwd_s) + e3.fwd_s + e3.bwd_s;
    assert_true(s3 > s0); /* the LM head makes the last stage the slowest */
    /* the step is bounded by the slowest stage: (m + p - 1) stage times at
     * most and m of the slowest at least, plus the optimizer */
    double t = sr.step_time_s - cm.optimizer_s;
    assert_true(t >= 16 * s3 - 1e-12);
    assert_true(t <= 19 * s3 + 1e-12);
    cost_sim_free(sim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpipe_1f1b_closed_form), cmocka_unit_test(test_interleaved_bubble),
        cmocka_unit_test(test_in_flight_peak),         cmocka_unit_test(test_dp_overlap),
        cmocka_unit_test(test_monotone_in_comm),       cmocka_unit_test(test_one_rank_equals_closed_form),
        cmocka_unit_test(test_zero2_equals_closed_form),
        cmocka_unit_test(test_comm_time_with_and_without_events),
        cmocka_unit_test(test_pipeline_free_comm),     cmocka_unit_test(test_contention),
        cmocka_unit_test(test_sleeping_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
