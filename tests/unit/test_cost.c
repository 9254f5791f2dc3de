/* test_cost.c — the cost model against hand-computed values from the
 * papers (Narayanan et al. 2021, Korthikanti et al. 2022) and exact
 * alpha-beta arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "assert_close.h"
#include "../../costmodel/cost.h"
#include "../../costmodel/shapes.h"
#include "../../costmodel/profile_impl.h"

static spec_model model(const char *name)
{
    spec_model m;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_model_parse(name, &m, err), SPEC_OK);
    return m;
}

static spec_layout layout(const char *s)
{
    spec_layout l;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_layout_parse(s, &l, err), SPEC_OK);
    return l;
}

/* Model FLOPs, GPT-3 175B, B = 1536, s = 2048: 72 B s l h^2 (1 + s/(6h) +
 * V/(12 l h)); hardware FLOPs with full recompute: Megatron's eq. (3),
 * 96 B s l h^2 (1 + s/(6h) + V/(16 l h)). */
static void test_flops_175b(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    double B = 1536, s = 2048, l = 96, h = 12288, V = 51200;
    double mf = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
    double hf = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
    assert_close(cost_model_flops(&m, 1536), mf, 1e-12, 0);
    assert_close(cost_hardware_flops(&m, SPEC_RECOMPUTE_FULL, 1536), hf, 1e-12, 0);
    /* independent check: the 6 N D rule (N = 174.6e9 parameters, D =
     * 1536 x 2048 tokens) gives 3.295e18; the exact count adds attention
     * (s/6h = 2.8%) and differs from 6ND by under 5% */
    assert_close(mf, 6.0 * 174.6e9 * 1536 * 2048, 0.05, 0);
    /* one block forward: 24 b s h^2 + 4 b s^2 h */
    assert_close(cost_layer_fwd_flops(&m, 1), 24 * s * h * h + 4 * s * s * h, 1e-12, 0);
}

/* Parameters of one full model (tp = pp = 1) equal the closed form
 * 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)) + 2h (final LayerNorm). */
static void test_param_count(void **state)
{
    (void)state;
    const char *names[] = {"gpt3-175b", "gpt2-124m", "megatron-1t", "tiny"};
    for (int i = 0; i < 4; i++) {
        spec_model m = model(names[i]);
        spec_layout l = layout("");
        double h = (double)m.hidden, L = (double)m.layers, V = (double)m.vocab, s = (double)m.seq;
        double expect = 12 * L * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * L * h)) + 2 * h;
        assert_close((double)cost_shapes_param_elems(&m, &l, 0), expect, 1e-12, 0);
    }
    /* with tp = 8, pp = 8 the shards cover every block weight once */
    spec_model m = model("gpt3-175b");
    spec_layout l = layout("tp=8,pp=8");
    double sum = 0;
    for (int r = 0; r < 8; r++)
        sum += (double)cost_shapes_param_elems(&m, &l, r);
    /* 96 blocks x (12 h^2 / 8 + replicated LN (4h) and row-parallel biases
     * (2h) + column-parallel biases (3h + 4h)/8)
     * + wte/8 twice (stage 0 and the tied copy on stage 7) + wpe + final LN */
    double h = 12288, per = 12 * h * h / 8 + 6 * h + 7 * h / 8;
    assert_close(sum, 96 * per + 2 * 51200.0 / 8 * h + 2048 * h + 2 * h, 1e-12, 0);
}

/* Korthikanti et al. 2022: GPT-3 175B, s = 2048, b = 1, a = 96, h = 12288,
 * 5as/h = 80, sbh = 25,165,824:
 *   no parallelism: sbh (34 + 80) = 2,868,903,936 B
 *   tp = 8:         sbh (10 + 24/8 + 80/8) = 23 sbh = 578,813,952 B
 *   tp = 8, sp:     sbh/8 (34 + 80) = 358,612,992 B
 *   selective, sp:  sbh/8 * 34 = 106,954,752 B
 *   full:           2 sbh = 50,331,648 B */
static void test_korthikanti(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    assert_close(cost_act_korthikanti_bytes(&m, 1, 1, 0, SPEC_RECOMPUTE_NONE), 2868903936.0, 1e-12, 0);
    assert_close(cost_act_korthikanti_bytes(&m, 1, 8, 0, SPEC_RECOMPUTE_NONE), 578813952.0, 1e-12, 0);
    assert_close(cost_act_korthikanti_bytes(&m, 1, 8, 1, SPEC_RECOMPUTE_NONE), 358612992.0, 1e-12, 0);
    assert_close(cost_act_korthikanti_bytes(&m, 1, 8, 1, SPEC_RECOMPUTE_SELECTIVE), 106954752.0, 1e-12, 0);
    assert_close(cost_act_korthikanti_bytes(&m, 1, 1, 0, SPEC_RECOMPUTE_FULL), 50331648.0, 1e-12, 0);
}

/* The executor's inventory (shapes.h) is Korthikanti's set without dropout:
 * 34 sbh minus the two 1-byte dropout masks (2 sbh) = 32 sbh, 5 a s^2 b
 * minus the dropout mask and output (3 a s^2 b) = 2 a s^2 b, plus the fp32
 * LayerNorm statistics the executor keeps in the working precision
 * (4 tensors of s b elements). In bf16, tp = 1. */
static void test_inventory_vs_paper(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    spec_layout l = layout("precision=bf16");
    shapes_tensor t[32];
    int n = cost_shapes_layer_acts(&m, &l, SPEC_RECOMPUTE_NONE, t, 32);
    double ours = 2.0 * (double)cost_shapes_sum_elems(t, n);
    double s = 2048, h = 12288, a = 96;
    double paper = cost_act_korthikanti_bytes(&m, 1, 1, 0, SPEC_RECOMPUTE_NONE);
    assert_close(ours, paper - 2 * s * h - 3 * a * s * s + 4 * 2 * s, 1e-12, 0);
    /* full recompute keeps the block input only: Korthikanti's 2 sbh */
    n = cost_shapes_layer_acts(&m, &l, SPEC_RECOMPUTE_FULL, t, 32);
    assert_close(2.0 * (double)cost_shapes_sum_elems(t, n),
                 cost_act_korthikanti_bytes(&m, 1, 1, 0, SPEC_RECOMPUTE_FULL), 1e-12, 0);
}

/* Ring all-reduce of 1 GB over 8 devices of one DGX A100 node:
 * 2 (7/8) 1e9 / (300e9 x nvlink_eff) + 2 x 7 x 3 us. */
static void test_collectives(void **state)
{
    (void)state;
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    const cost_profile *p = cost_profile_builtin(c.gpu);
    double eff = 0.77, bw = 300e9 * eff;
    assert_close(cost_collective_s(COST_ALLREDUCE, 8, 1e9, 0, &c, p), 1.75e9 / bw + 14 * 3e-6, 1e-12, 0);
    assert_close(cost_collective_s(COST_ALLGATHER, 8, 1e9, 0, &c, p), 0.875e9 / bw + 7 * 3e-6, 1e-12, 0);
    /* across nodes: 25 GB/s per GPU x ib_eff, 5 us */
    assert_close(cost_collective_s(COST_REDUCESCATTER, 4, 1e9, 1, &c, p), 0.75e9 / (25e9 * 0.88) + 3 * 5e-6,
                 1e-12, 0);
    assert_close(cost_collective_s(COST_P2P, 2, 1e6, 1, &c, p), 1e6 / (25e9 * 0.88) + 5e-6, 1e-12, 0);
    assert_close(cost_collective_s(COST_ALLREDUCE, 1, 1e9, 0, &c, p), 0.0, 0, 0);
    assert_close(cost_busbw_factor(COST_ALLREDUCE, 8), 1.75, 1e-15, 0);
    assert_close(cost_busbw_factor(COST_ALLGATHER, 8), 0.875, 1e-15, 0);
    assert_close(cost_busbw_factor(COST_P2P, 2), 1.0, 1e-15, 0);
}

static void test_in_flight(void **state)
{
    (void)state;
    spec_layout l = layout("pp=4,schedule=1f1b");
    int expect8[4] = {4, 3, 2, 1}, expect2[4] = {2, 2, 2, 1};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cost_in_flight(&l, i, 8), expect8[i]);
        assert_int_equal(cost_in_flight(&l, i, 2), expect2[i]);
    }
    l = layout("pp=4,schedule=gpipe");
    assert_int_equal(cost_in_flight(&l, 0, 8), 8);
    assert_int_equal(cost_in_flight(&l, 3, 8), 8);
    /* interleaved, p = 4, v = 2, m = 8: rank 0 holds (3*2 + 1*4 + 1) = 11
     * chunk micro-batches = 6 whole micro-batches (rounded up) */
    l = layout("pp=4,schedule=interleaved,v=2");
    assert_int_equal(cost_in_flight(&l, 0, 8), 6);
    assert_int_equal(cost_in_flight(&l, 3, 8), 3);
}

/* The breakdown sums to the step time; memory decides what fits; ZeRO-1
 * divides the optimizer state by dp. */
static void test_predict_175b(void **state)
{
    (void)state;
    spec_model m = model("gpt3-175b");
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    spec_layout l = layout("tp=8,pp=8,dp=16,recompute=full");
    c = cost_cluster_for_layout(&c, &l);
    cost_result r;
    assert_int_equal(cost_predict(&m, &c, &l, 1536, NULL, &r, err), SPEC_OK);
    double sum = r.compute_s + r.tp_comm_s + r.pp_comm_s + r.dp_comm_exposed_s + r.bubble_s + r.optimizer_s;
    assert_close(sum, r.step_time_s, 1e-12, 0);
    assert_true(r.fits);
    assert_int_equal(r.n_micro, 96);
    /* the bubble is (p - 1) of (m + p - 1) stage times: 7/103 of the
     * pipeline part */
    assert_close(r.bubble_s / (r.compute_s + r.tp_comm_s + r.pp_comm_s + r.bubble_s), 7.0 / 103.0, 1e-9, 0);
    /* MFU from its definition */
    assert_close(r.mfu, cost_model_flops(&m, 1536) / r.step_time_s / (1024 * 312e12), 1e-12, 0);
    /* no parallelism at all: 175B x 16 B = 2.8 TB, cannot fit 80 GB */
    spec_layout one = layout("");
    assert_int_equal(cost_predict(&m, &c, &one, 8, NULL, &r, err), SPEC_OK);
    assert_false(r.fits);
    assert_true(r.mem_peak_bytes > 2.79e12);
    /* ZeRO-1 shards the 12 B/param optimizer state over dp = 16 */
    cost_mem a, b;
    spec_layout z0 = layout("tp=8,pp=8,dp=16"), z1 = layout("tp=8,pp=8,dp=16,zero=1");
    cost_memory_rank(&m, &z0, 1536, 3, &a);
    cost_memory_rank(&m, &z1, 1536, 3, &b);
    assert_close((double)b.optim_bytes, (double)((a.param_elems + 15) / 16) * 12, 0, 0);
    assert_int_equal(a.param_bytes, b.param_bytes);
}

/* Bad layouts are refused with the field named. */
static void test_predict_rejects(void **state)
{
    (void)state;
    spec_model m = model("tiny");
    spec_cluster c;
    char err[SPEC_ERR_LEN];
    assert_int_equal(spec_cluster_parse("dgx-a100-80gb", &c, err), SPEC_OK);
    cost_result r;
    spec_layout l = layout("tp=3");
    assert_int_equal(cost_predict(&m, &c, &l, 8, NULL, &r, err), SPEC_ERR);
    assert_non_null(strstr(err, "tp=3"));
    l = layout("dp=3");
    assert_int_equal(cost_predict(&m, &c, &l, 8, NULL, &r, err), SPEC_ERR);
    assert_non_null(strstr(err, "global batch 8"));
}

/* The shipped profile CSV holds the same parameters as the built-in one. */
static void test_profile_file_matches_builtin(void **state)
{
    (void)state;
    cost_profile *p = NULL;
    char err[SPEC_ERR_LEN];
    int rc = cost_profile_load("profiles/dgx-a100-80gb.csv", &p, err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, SPEC_OK);
    const profile_params *a = profile_params_of(p), *b = profile_params_of(cost_profile_builtin(SPEC_GPU_A100_80GB));
    assert_close(a->gemm_eff_max, b->gemm_eff_max, 0, 0);
    assert_close(a->gemm_dim_half, b->gemm_dim_half, 0, 0);
    assert_close(a->hbm_eff, b->hbm_eff, 0, 0);
    assert_close(a->nvlink_eff, b->nvlink_eff, 0, 0);
    assert_close(a->ib_eff, b->ib_eff, 0, 0);
    assert_close(a->launch_s, b->launch_s, 0, 0);
    assert_close(a->kernels_per_layer, b->kernels_per_layer, 0, 0);
    assert_close(a->dropout, b->dropout, 0, 0);
    cost_profile_free(p);
    cost_profile_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flops_175b),      cmocka_unit_test(test_param_count),
        cmocka_unit_test(test_korthikanti),     cmocka_unit_test(test_inventory_vs_paper),
        cmocka_unit_test(test_collectives),     cmocka_unit_test(test_in_flight),
        cmocka_unit_test(test_predict_175b),    cmocka_unit_test(test_predict_rejects),
        cmocka_unit_test(test_profile_file_matches_builtin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
