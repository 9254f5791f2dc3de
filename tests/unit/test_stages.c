/* test_stages.c — the stage-partition MILP (GLPK) against the exact DP
 * oracle on hundreds of random instances, and hand-solved cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "assert_close.h"
#include "../../planner/stages.h"

typedef struct {
    plan_stage_problem pr;
    double t_extra[SPEC_MAX_PP], mem_extra[SPEC_MAX_PP], act_extra[SPEC_MAX_PP];
    int in_flight[SPEC_MAX_PP];
} inst;

static void inst_init(inst *x, int p, int L, int n_rc)
{
    memset(x, 0, sizeof *x);
    x->pr.p = p;
    x->pr.layers = L;
    x->pr.n_rc = n_rc;
    x->pr.t_extra_s = x->t_extra;
    x->pr.mem_extra_bytes = x->mem_extra;
    x->pr.act_extra_bytes = x->act_extra;
    x->pr.in_flight = x->in_flight;
    for (int s = 0; s < p; s++)
        x->in_flight[s] = p - s;
}

static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* 8 uniform blocks on 4 stages, nothing else: 2 each, time 2 t. */
static void test_uniform_even(void **state)
{
    (void)state;
    inst x;
    inst_init(&x, 4, 8, 1);
    x.pr.t_block_s[0] = 1.5;
    x.pr.mem_cap_bytes = 1e12;
    plan_stage_solution a, b;
    char err[SPEC_ERR_LEN];
    assert_int_equal(plan_stages_milp(&x.pr, &a, err), SPEC_OK);
    assert_int_equal(plan_stages_dp(&x.pr, &b, err), SPEC_OK);
    assert_true(a.feasible && b.feasible);
    assert_close(a.t_max_s, 3.0, 1e-12, 0);
    assert_close(b.t_max_s, 3.0, 1e-12, 0);
    for (int s = 0; s < 4; s++)
        assert_int_equal(a.stage_layers[s], 2);
}

/* A heavy LM head (3 block-times) on the last of 2 stages with 9 blocks:
 * best is 6 | 3 (times 6 and 3+3 = 6). */
static void test_heavy_head(void **state)
{
    (void)state;
    inst x;
    inst_init(&x, 2, 9, 1);
    x.pr.t_block_s[0] = 1.0;
    x.t_extra[1] = 3.0;
    x.pr.mem_cap_bytes = 1e12;
    plan_stage_solution a;
    char err[SPEC_ERR_LEN];
    assert_int_equal(plan_stages_milp(&x.pr, &a, err), SPEC_OK);
    assert_close(a.t_max_s, 6.0, 1e-12, 0);
    assert_int_equal(a.stage_layers[0], 6);
    assert_int_equal(a.stage_layers[1], 3);
}

/* Memory forces recomputation: 4 blocks on 1 stage, 10 GB cap, blocks of
 * 1 GB static + 2 GB activations without recompute (3 GB each, 12 > 10) or
 * 0.25 GB with full recompute (1.25 each) at 1.33x the time. Best: 3 blocks
 * without, 1 with recompute: 9 + 1.25 = 10.25 > 10, so 2 + 2: 6 + 2.5 =
 * 8.5 fits; time 2*1 + 2*1.33 = 4.66. */
static void test_recompute_choice(void **state)
{
    (void)state;
    inst x;
    inst_init(&x, 1, 4, 2);
    x.in_flight[0] = 1;
    x.pr.rc[0] = SPEC_RECOMPUTE_NONE, x.pr.rc[1] = SPEC_RECOMPUTE_FULL;
    x.pr.t_block_s[0] = 1.0, x.pr.t_block_s[1] = 1.33;
    x.pr.act_block_bytes[0] = 2e9, x.pr.act_block_bytes[1] = 0.25e9;
    x.pr.static_block_bytes = 1e9;
    x.pr.mem_cap_bytes = 10e9;
    plan_stage_solution a, b;
    char err[SPEC_ERR_LEN];
    assert_int_equal(plan_stages_milp(&x.pr, &a, err), SPEC_OK);
    assert_int_equal(plan_stages_dp(&x.pr, &b, err), SPEC_OK);
    assert_close(a.t_max_s, 4.66, 1e-12, 0);
    assert_close(b.t_max_s, 4.66, 1e-12, 0);
    assert_int_equal(a.counts[0][0], 2);
    assert_int_equal(a.counts[0][1], 2);
}

/* Nothing fits: both say so, and name the stage. */
static void test_infeasible(void **state)
{
    (void)state;
    inst x;
    inst_init(&x, 2, 4, 1);
    x.pr.t_block_s[0] = 1.0;
    x.pr.static_block_bytes = 5e9;
    x.pr.mem_cap_bytes = 6e9;
    plan_stage_solution a, b;
    char err[SPEC_ERR_LEN];
    assert_int_equal(plan_stages_milp(&x.pr, &a, err), SPEC_OK);
    assert_int_equal(plan_stages_dp(&x.pr, &b, err), SPEC_OK);
    assert_false(a.feasible);
    assert_false(b.feasible);
    assert_true(a.worst_over_bytes > 0);
}

/* Hundreds of random instances: same optimum, and the MILP's assignment is
 * feasible, has every stage non-empty and places every block. */
static void test_random_oracle(void **state)
{
    (void)state;
    int agree = 0, infeasible = 0;
    for (int it = 0; it < 400; it++) {
        int p = 1 + (int)(urand() * 6), L = p + (int)(urand() * 14), R = 1 + (int)(urand() * 3);
        inst x;
        inst_init(&x, p, L, R);
        int m = 1 + (int)(urand() * 8);
        for (int s = 0; s < p; s++) {
            x.in_flight[s] = p - s < m ? p - s : m;
            x.t_extra[s] = urand() * 2.0;
            x.mem_extra[s] = urand() * 4e9;
            x.act_extra[s] = urand() * 0.5e9;
        }
        double t = 0.5 + urand(), a = 0.5e9 + urand() * 2e9;
        for (int r = 0; r < R; r++) {
            x.pr.rc[r] = (spec_recompute)r;
            x.pr.t_block_s[r] = t * (1.0 + 0.2 * r + 0.05 * urand());
            x.pr.act_block_bytes[r] = a / (1.0 + 3.0 * r);
        }
        x.pr.static_block_bytes = 0.2e9 + urand() * 1e9;
        x.pr.mem_cap_bytes = 5e9 + urand() * 40e9;
        plan_stage_solution ms, ds;
        char err[SPEC_ERR_LEN];
        assert_int_equal(plan_stages_milp(&x.pr, &ms, err), SPEC_OK);
        assert_int_equal(plan_stages_dp(&x.pr, &ds, err), SPEC_OK);
        assert_int_equal(ms.feasible, ds.feasible);
        if (!ms.feasible) {
            infeasible++;
            continue;
        }
        assert_close(ms.t_max_s, ds.t_max_s, 1e-9, 0);
        int sum = 0;
        for (int s = 0; s < p; s++) {
            assert_true(ms.stage_layers[s] >= 1);
            sum += ms.stage_layers[s];
            assert_true(plan_stage_mem(&x.pr, s, ms.counts[s]) <= x.pr.mem_cap_bytes * (1 + 1e-9));
        }
        assert_int_equal(sum, L);
        agree++;
    }
    /* the instances must exercise both outcomes */
    assert_true(agree >= 200);
    assert_true(infeasible >= 5);
    print_message("MILP == DP on %d feasible random instances (%d infeasible, both agree)\n", agree,
                  infeasible);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_even),    cmocka_unit_test(test_heavy_head),
        cmocka_unit_test(test_recompute_choice), cmocka_unit_test(test_infeasible),
        cmocka_unit_test(test_random_oracle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
