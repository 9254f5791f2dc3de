/* test_rankmap.c — the rank <-> (tp, dp, pp) mapping and which groups cross
 * nodes, against hand-computed Megatron examples and a brute-force reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "../../common/rankmap.h"

/* Every rank of every tp, dp, pp in 1..8 maps to coordinates in range and
 * back to itself, and no two ranks share coordinates: a bijection. */
static void test_bijection(void **state)
{
    (void)state;
    for (int tp = 1; tp <= 8; tp++)
        for (int dp = 1; dp <= 8; dp++)
            for (int pp = 1; pp <= 8; pp++) {
                int n = tp * dp * pp;
                unsigned char seen[512];
                memset(seen, 0, sizeof seen);
                for (int r = 0; r < n; r++) {
                    rankmap_coord c = rankmap_coord_of(r, tp, dp);
                    assert_true(c.tp_rank >= 0 && c.tp_rank < tp);
                    assert_true(c.dp_rank >= 0 && c.dp_rank < dp);
                    assert_true(c.pp_rank >= 0 && c.pp_rank < pp);
                    assert_int_equal(rankmap_rank(tp, dp, c.tp_rank, c.dp_rank, c.pp_rank), r);
                    int key = c.tp_rank + 8 * (c.dp_rank + 8 * c.pp_rank);
                    assert_false(seen[key]);
                    seen[key] = 1;
                }
            }
}

/* Megatron-LM's parallel_state.initialize_model_parallel docstring: 16 GPUs,
 * tp=2, pp=4 (so dp=2) give tensor groups [0,1] [2,3] ..., data groups
 * [0,2] [1,3] [4,6] ..., pipeline groups [0,4,8,12] [1,5,9,13] .... */
static void test_megatron_examples(void **state)
{
    (void)state;
    const int tp = 2, dp = 2;
    /* pipeline group of rank 1: 1, 5, 9, 13 */
    int pipe[4] = {1, 5, 9, 13};
    for (int p = 0; p < 4; p++)
        assert_int_equal(rankmap_rank(tp, dp, 1, 0, p), pipe[p]);
    /* data group of rank 4: 4, 6 */
    assert_int_equal(rankmap_rank(tp, dp, 0, 0, 1), 4);
    assert_int_equal(rankmap_rank(tp, dp, 0, 1, 1), 6);
    /* tensor group of rank 2: 2, 3 */
    assert_int_equal(rankmap_rank(tp, dp, 0, 1, 0), 2);
    assert_int_equal(rankmap_rank(tp, dp, 1, 1, 0), 3);

    /* tp2 dp2 pp2: rank 5 = 1 + 2 (0 + 2 * 1) */
    rankmap_coord c = rankmap_coord_of(5, 2, 2);
    assert_int_equal(c.tp_rank, 1);
    assert_int_equal(c.dp_rank, 0);
    assert_int_equal(c.pp_rank, 1);
    /* tp2 dp2 (pp4): rank 13 = 1 + 2 (0 + 2 * 3); rank 6 = 0 + 2 (1 + 2 * 1) */
    c = rankmap_coord_of(13, 2, 2);
    assert_int_equal(c.tp_rank, 1);
    assert_int_equal(c.dp_rank, 0);
    assert_int_equal(c.pp_rank, 3);
    c = rankmap_coord_of(6, 2, 2);
    assert_int_equal(c.tp_rank, 0);
    assert_int_equal(c.dp_rank, 1);
    assert_int_equal(c.pp_rank, 1);
    /* tp8 dp4 pp2 (64 ranks): rank 45 = 5 + 8 (1 + 4 * 1) */
    c = rankmap_coord_of(45, 8, 4);
    assert_int_equal(c.tp_rank, 5);
    assert_int_equal(c.dp_rank, 1);
    assert_int_equal(c.pp_rank, 1);
    assert_int_equal(rankmap_node(45, 8), 5);
    assert_int_equal(rankmap_node(7, 8), 0);
    assert_int_equal(rankmap_node(8, 8), 1);
}

static void test_crosses_hand(void **state)
{
    (void)state;
    assert_false(rankmap_tp_crosses_nodes(8, 8));  /* ranks 0..7, one DGX */
    assert_true(rankmap_tp_crosses_nodes(16, 8));  /* ranks 0..15, two */
    assert_false(rankmap_tp_crosses_nodes(1, 8));
    assert_true(rankmap_dp_crosses_nodes(8, 2, 8));   /* ranks 0, 8 */
    assert_false(rankmap_dp_crosses_nodes(2, 4, 8));  /* ranks 0, 2, 4, 6 */
    assert_true(rankmap_dp_crosses_nodes(2, 8, 8));   /* ranks 0 .. 14 */
    assert_false(rankmap_dp_crosses_nodes(8, 1, 8));  /* a group of one */
    assert_true(rankmap_pp_crosses_nodes(4, 2, 2, 8));  /* ranks 0, 8 */
    assert_false(rankmap_pp_crosses_nodes(2, 2, 2, 8)); /* ranks 0, 4 */
    assert_true(rankmap_pp_crosses_nodes(1, 1, 2, 1));  /* one device per node */
}

/* Brute force: a group kind crosses nodes if ANY of its groups has members on
 * two nodes. For powers of two (the contract's exact case) the helpers agree. */
static int brute_crosses(int tp, int dp, int pp, int gpn, int kind)
{
    int n = tp * dp * pp;
    for (int r = 0; r < n; r++) {
        rankmap_coord c = rankmap_coord_of(r, tp, dp);
        int size = kind == 0 ? tp : kind == 1 ? dp : pp;
        for (int i = 0; i < size; i++) {
            int other = kind == 0   ? rankmap_rank(tp, dp, i, c.dp_rank, c.pp_rank)
                        : kind == 1 ? rankmap_rank(tp, dp, c.tp_rank, i, c.pp_rank)
                                    : rankmap_rank(tp, dp, c.tp_rank, c.dp_rank, i);
            if (rankmap_node(other, gpn) != rankmap_node(r, gpn))
                return 1;
        }
    }
    return 0;
}

static void test_crosses_brute_force(void **state)
{
    (void)state;
    int pow2[5] = {1, 2, 4, 8, 16};
    int checked = 0;
    for (int g = 0; g < 5; g++)
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++)
                for (int c = 0; c < 4; c++) {
                    int gpn = pow2[g], tp = pow2[a], dp = pow2[b], pp = pow2[c];
                    assert_int_equal(rankmap_tp_crosses_nodes(tp, gpn), brute_crosses(tp, dp, pp, gpn, 0));
                    assert_int_equal(rankmap_dp_crosses_nodes(tp, dp, gpn), brute_crosses(tp, dp, pp, gpn, 1));
                    assert_int_equal(rankmap_pp_crosses_nodes(tp, dp, pp, gpn),
                                     brute_crosses(tp, dp, pp, gpn, 2));
                    checked++;
                }
    assert_int_equal(checked, 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bijection),
        cmocka_unit_test(test_megatron_examples),
        cmocka_unit_test(test_crosses_hand),
        cmocka_unit_test(test_crosses_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
