/* test_comm_schedule.c — executor/schedule.c: pipeline op orders.
 *
 * References: Megatron-LM schedules.py (forward_backward_pipelining_without_
 * interleaving: p - i - 1 warm-up forwards; with_interleaving: warm-up
 * (p - i - 1) * 2 + (v - 1) * p, chunk and micro-batch of the k-th op), written
 * out by hand for a small interleaved case; and a message-passing replay of
 * all stages (blocking receives, non-blocking sends, tags matched) which must
 * complete for every schedule: no deadlock, every message consumed once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../costmodel/cost.h"
#include "../../costmodel/shapes.h"
#include "../../executor/schedule.h"

#define CAP 4096

static void check_each_once(const sched_op *ops, int n, int m, int v)
{
    assert_int_equal(n, 2 * m * v);
    int seen[2][64][8];
    memset(seen, 0, sizeof seen);
    int fwd_done[64][8];
    memset(fwd_done, 0, sizeof fwd_done);
    for (int i = 0; i < n; i++) {
        assert_in_range(ops[i].mb, 0, m - 1);
        assert_in_range(ops[i].chunk, 0, v - 1);
        seen[ops[i].dir][ops[i].mb][ops[i].chunk]++;
        if (ops[i].dir == SCHED_FWD)
            fwd_done[ops[i].mb][ops[i].chunk] = 1;
        else
            assert_int_equal(fwd_done[ops[i].mb][ops[i].chunk], 1); /* F before its B */
    }
    for (int d = 0; d < 2; d++)
        for (int j = 0; j < m; j++)
            for (int c = 0; c < v; c++)
                assert_int_equal(seen[d][j][c], 1);
}

static void test_1f1b_order(void **state)
{
    (void)state;
    sched_op ops[CAP];
    for (int p = 1; p <= 6; p++)
        for (int m = 1; m <= 10; m++)
            for (int i = 0; i < p; i++) {
                int n = sched_build(SPEC_SCHED_1F1B, p, i, m, 1, ops, CAP);
                check_each_once(ops, n, m, 1);
                int warm = p - i - 1 < m ? p - i - 1 : m;
                int k = 0;
                for (int j = 0; j < warm; j++, k++) { /* warm-up forwards */
                    assert_int_equal(ops[k].dir, SCHED_FWD);
                    assert_int_equal(ops[k].mb, j);
                }
                for (int j = 0; j < m - warm; j++) { /* steady 1F-1B */
                    assert_int_equal(ops[k].dir, SCHED_FWD);
                    assert_int_equal(ops[k++].mb, warm + j);
                    assert_int_equal(ops[k].dir, SCHED_BWD);
                    assert_int_equal(ops[k++].mb, j);
                }
                for (int j = m - warm; j < m; j++, k++) { /* cool-down backwards */
                    assert_int_equal(ops[k].dir, SCHED_BWD);
                    assert_int_equal(ops[k].mb, j);
                }
                assert_int_equal(k, n);
                assert_int_equal(sched_peak_inflight(ops, n), p - i < m ? p - i : m);
                /* peers: stage i receives activations from i-1, sends to i+1 */
                assert_int_equal(ops[0].recv_peer, i > 0 ? i - 1 : -1);
                assert_int_equal(ops[0].send_peer, i < p - 1 ? i + 1 : -1);
                assert_int_equal(ops[n - 1].recv_peer, i < p - 1 ? i + 1 : -1);
                assert_int_equal(ops[n - 1].send_peer, i > 0 ? i - 1 : -1);
            }
}

static void test_gpipe_order(void **state)
{
    (void)state;
    sched_op ops[CAP];
    for (int p = 1; p <= 5; p++)
        for (int m = 1; m <= 9; m++)
            for (int i = 0; i < p; i++) {
                int n = sched_build(SPEC_SCHED_GPIPE, p, i, m, 1, ops, CAP);
                check_each_once(ops, n, m, 1);
                for (int j = 0; j < m; j++) {
                    assert_int_equal(ops[j].dir, SCHED_FWD);
                    assert_int_equal(ops[j].mb, j);
                    assert_int_equal(ops[m + j].dir, SCHED_BWD);
                }
                assert_int_equal(sched_peak_inflight(ops, n), m);
            }
}

/* p = 2, v = 2, m = 4, by hand from Megatron's formulas:
 * stage 0: warm-up (2-0-1)*2 + (2-1)*2 = 4; stage 1: 0*2 + 2 = 2.
 * k-th forward: chunk (k % 4) / 2, mb (k / 4) * 2 + k % 2;
 * k-th backward: chunk 1 - (k % 4) / 2, same mb. Written "F mb.chunk". */
static void test_interleaved_hand(void **state)
{
    (void)state;
    static const char *want0[] = {"F0.0", "F1.0", "F0.1", "F1.1", "F2.0", "B0.1", "F3.0", "B1.1",
                                  "F2.1", "B0.0", "F3.1", "B1.0", "B2.1", "B3.1", "B2.0", "B3.0"};
    static const char *want1[] = {"F0.0", "F1.0", "F0.1", "B0.1", "F1.1", "B1.1", "F2.0", "B0.0",
                                  "F3.0", "B1.0", "F2.1", "B2.1", "F3.1", "B3.1", "B2.0", "B3.0"};
    const char **want[2] = {want0, want1};
    sched_op ops[CAP];
    for (int i = 0; i < 2; i++) {
        int n = sched_build(SPEC_SCHED_INTERLEAVED, 2, i, 4, 2, ops, CAP);
        assert_int_equal(n, 16);
        check_each_once(ops, n, 4, 2);
        for (int k = 0; k < n; k++) {
            char got[8];
            snprintf(got, sizeof got, "%c%d.%d", ops[k].dir == SCHED_FWD ? 'F' : 'B', ops[k].mb, ops[k].chunk);
            assert_string_equal(got, want[i][k]);
        }
    }
    /* wrap-around peers: stage 0 chunk 1 receives from stage 1 (chunk 0);
       stage 1 chunk 0 sends to stage 0; last virtual stage sends nothing */
    sched_build(SPEC_SCHED_INTERLEAVED, 2, 0, 4, 2, ops, CAP);
    assert_int_equal(ops[2].recv_peer, 1); /* F0.1 */
    assert_int_equal(ops[0].recv_peer, -1); /* F0.0: first virtual stage */
    sched_build(SPEC_SCHED_INTERLEAVED, 2, 1, 4, 2, ops, CAP);
    assert_int_equal(ops[0].send_peer, 0);  /* F0.0 of stage 1 -> stage 0 chunk 1 */
    assert_int_equal(ops[2].send_peer, -1); /* F0.1 of stage 1: last virtual stage */
    /* m == p: all forwards first (older Megatron) */
    sched_build(SPEC_SCHED_INTERLEAVED, 2, 0, 2, 2, ops, CAP);
    for (int k = 0; k < 4; k++)
        assert_int_equal(ops[k].dir, SCHED_FWD);
}

/* Replay all stages as pipeline.c runs them, with rendezvous sends (the
 * worst case of MPI, and NCCL's): a stage blocks on a receive whose message
 * is not yet sent; a send takes the next of its direction's send slots
 * (cost_pipe_send_slots, or `slots` when > 0) and, when that slot still
 * holds an earlier message, waits until the receiver has taken it. Every
 * schedule must finish with every message consumed once, and each peer must
 * receive a stage's messages in the order that stage sent them (NCCL
 * matches sends and receives by order, not tag). */
typedef struct {
    int from, to, tag, dir, used, seq; /* seq: the sender's count of messages to `to` before this one */
} msg;

static void replay_slots(spec_schedule kind, int p, int m, int v, int slots)
{
    static sched_op ops[8][CAP];
    int n[8], pc[8], got[8] = {0}, n_slot[8][2], sent[8][2] = {{0}}, sent_to[8][8] = {{0}}, recv_from[8][8] = {{0}};
    static int slot_msg[8][2][CAP];
    static msg box[8 * CAP];
    int n_box = 0;
    for (int i = 0; i < p; i++) {
        n[i] = sched_build(kind, p, i, m, v, ops[i], CAP);
        assert_true(n[i] > 0);
        pc[i] = 0;
        for (int d = 0; d < 2; d++) {
            n_slot[i][d] = slots > 0 ? slots : cost_pipe_send_slots(kind, p, i, m, v, d);
            assert_in_range(n_slot[i][d], 1, CAP);
            for (int k = 0; k < n_slot[i][d]; k++)
                slot_msg[i][d][k] = -1;
        }
    }
    int progress = 1, done = 0;
    while (progress) {
        progress = 0;
        for (int i = 0; i < p; i++) {
            while (pc[i] < n[i]) {
                const sched_op *o = &ops[i][pc[i]];
                if (o->recv_peer >= 0 && !got[i]) {
                    int found = -1;
                    for (int b = 0; b < n_box; b++)
                        if (!box[b].used && box[b].from == o->recv_peer && box[b].to == i &&
                            box[b].tag == o->recv_tag && box[b].dir == (int)o->dir)
                            found = b;
                    if (found < 0)
                        break; /* blocked on the receive */
                    box[found].used = 1;
                    assert_int_equal(box[found].seq, recv_from[i][o->recv_peer]++); /* in send order */
                    got[i] = 1;
                    progress = 1;
                }
                if (o->send_peer >= 0) {
                    int d = (int)o->dir, k = sent[i][d] % n_slot[i][d], old = slot_msg[i][d][k];
                    if (old >= 0 && !box[old].used)
                        break; /* blocked until the slot's earlier message is received */
                    slot_msg[i][d][k] = n_box;
                    sent[i][d]++;
                    box[n_box++] = (msg){i, o->send_peer, o->send_tag, (int)o->dir, 0, sent_to[i][o->send_peer]++};
                }
                got[i] = 0;
                pc[i]++;
                progress = 1;
            }
        }
    }
    for (int i = 0; i < p; i++) {
        assert_int_equal(pc[i], n[i]); /* no stage stuck: no deadlock */
        done += n[i];
    }
    for (int b = 0; b < n_box; b++)
        assert_int_equal(box[b].used, 1); /* every message consumed */
    assert_int_equal(done, 2 * m * v * p);
}

static void replay(spec_schedule kind, int p, int m, int v) { replay_slots(kind, p, m, v, CAP); }

static void test_replay_no_deadlock(void **state)
{
    (void)state;
    for (int p = 1; p <= 8; p++)
        for (int m = 1; m <= 12; m++) {
            replay(SPEC_SCHED_GPIPE, p, m, 1);
            replay(SPEC_SCHED_1F1B, p, m, 1);
            if (m % p == 0)
                for (int v = 1; v <= 3; v++)
                    replay(SPEC_SCHED_INTERLEAVED, p, m, v);
        }
}

/* The executor's send buffers (cost_pipe_send_slots, which the memory model
 * counts) never deadlock, even when every send waits for its receiver; nor
 * does a single send buffer per direction, for any schedule (what the
 * executor keeps beyond one lets a send stay in flight while the next op
 * computes). */
static void test_replay_bounded_sends(void **state)
{
    (void)state;
    for (int p = 1; p <= 8; p++)
        for (int m = 1; m <= 16; m++) {
            replay_slots(SPEC_SCHED_GPIPE, p, m, 1, 0);
            replay_slots(SPEC_SCHED_1F1B, p, m, 1, 0);
            replay_slots(SPEC_SCHED_GPIPE, p, m, 1, 1);
            replay_slots(SPEC_SCHED_1F1B, p, m, 1, 1);
            if (m % p == 0)
                for (int v = 2; v <= 4; v++) {
                    assert_int_equal(cost_pipe_send_slots(SPEC_SCHED_INTERLEAVED, p, 0, m, v, 0), 2);
                    replay_slots(SPEC_SCHED_INTERLEAVED, p, m, v, 0);
                    replay_slots(SPEC_SCHED_INTERLEAVED, p, m, v, 1);
                }
        }
}

/* The memory model's activation slots (cost_in_flight_chunks, which the
 * trainer allocates) are the peak of chunk-micro-batches the op order
 * really holds, for every stage of every schedule. */
static void test_inflight_matches_model(void **state)
{
    (void)state;
    static sched_op ops[CAP];
    const spec_schedule kinds[3] = {SPEC_SCHED_GPIPE, SPEC_SCHED_1F1B, SPEC_SCHED_INTERLEAVED};
    for (int k = 0; k < 3; k++)
        for (int p = 1; p <= 8; p++)
            for (int m = 1; m <= 16; m++)
                for (int v = kinds[k] == SPEC_SCHED_INTERLEAVED ? 2 : 1; v <= (kinds[k] == SPEC_SCHED_INTERLEAVED ? 4 : 1); v++) {
                    if (kinds[k] == SPEC_SCHED_INTERLEAVED && m % p)
                        continue;
                    spec_layout l;
                    spec_layout_default(&l);
                    l.pp = p, l.schedule = kinds[k], l.v = v;
                    for (int i = 0; i < p; i++) {
                        int n = sched_build(kinds[k], p, i, m, v, ops, CAP);
                        assert_int_equal(cost_in_flight_chunks(&l, i, m), sched_peak_inflight(ops, n));
                    }
                }
}

static void test_invalid(void **state)
{
    (void)state;
    sched_op ops[CAP];
    assert_int_equal(sched_build(SPEC_SCHED_INTERLEAVED, 4, 0, 6, 2, ops, CAP), -1); /* m % p */
    assert_int_equal(sched_build(SPEC_SCHED_1F1B, 4, 0, 6, 2, ops, CAP), -1);        /* v without interleaving */
    assert_int_equal(sched_build(SPEC_SCHED_1F1B, 4, 4, 6, 1, ops, CAP), -1);        /* stage */
    assert_int_equal(sched_build(SPEC_SCHED_1F1B, 4, 0, 6, 1, ops, 11), -1);         /* capacity */
    assert_int_equal(sched_build(SPEC_SCHED_GPIPE, 0, 0, 6, 1, ops, CAP), -1);
}

/* NCCL's worst case: the transfers of one rank run one group after another
 * (a group ends when each of its sends and receives has met its peer's
 * counterpart), a pair's messages match in order without tags, and a send
 * completes only when its receive is posted. Events of rank i: groups of
 * (is_send, peer, tag). grouped: the executor's NCCL order (sched_blocks:
 * block b's sends with block b+1's receives); else one group per receive and
 * per send, in op order (the MPI order, isend then blocking recv). Returns
 * whether every rank finishes; asserts that each match carries the tag the
 * receiver expects. */
typedef struct {
    int is_send, peer, tag, grp, done;
} xfer;

static int nccl_replay(spec_schedule kind, int p, int m, int v, int grouped)
{
    static sched_op ops[8][CAP];
    static xfer ev[8][2 * CAP + 2];
    static int block[CAP];
    int ne[8], pos[8];
    for (int i = 0; i < p; i++) {
        int n = sched_build(kind, p, i, m, v, ops[i], CAP), g = 0;
        assert_true(n > 0);
        ne[i] = pos[i] = 0;
        if (grouped) {
            int nb = sched_blocks(ops[i], n, v, block);
            assert_in_range(nb, (n + 1) / 2, n);
            for (int b = 0; b <= nb; b++) {
                for (int k = 0; k < n; k++)
                    if (block[k] == b - 1 && ops[i][k].send_peer >= 0)
                        ev[i][ne[i]++] = (xfer){1, ops[i][k].send_peer, ops[i][k].send_tag, b, 0};
                for (int k = 0; k < n; k++)
                    if (block[k] == b && ops[i][k].recv_peer >= 0)
                        ev[i][ne[i]++] = (xfer){0, ops[i][k].recv_peer, ops[i][k].recv_tag, b, 0};
            }
        } else {
            for (int k = 0; k < n; k++) {
                if (ops[i][k].recv_peer >= 0)
                    ev[i][ne[i]++] = (xfer){0, ops[i][k].recv_peer, ops[i][k].recv_tag, g++, 0};
                if (ops[i][k].send_peer >= 0)
                    ev[i][ne[i]++] = (xfer){1, ops[i][k].send_peer, ops[i][k].send_tag, g++, 0};
            }
        }
    }
    for (int progress = 1; progress;) {
        progress = 0;
        for (int a = 0; a < p; a++)
            while (pos[a] < ne[a] && ev[a][pos[a]].done)
                pos[a]++;
        for (int a = 0; a < p; a++) {
            if (pos[a] == ne[a])
                continue;
            for (int i = pos[a]; i < ne[a] && ev[a][i].grp == ev[a][pos[a]].grp; i++) {
                xfer *x = &ev[a][i];
                int b = x->peer;
                if (x->done || pos[b] == ne[b])
                    continue;
                for (int j = 0; j < ne[b]; j++) { /* the peer's first open counterpart, in order */
                    xfer *y = &ev[b][j];
                    if (y->done || y->peer != a || y->is_send == x->is_send)
                        continue;
                    if (y->grp == ev[b][pos[b]].grp) { /* posted now: they meet */
                        assert_int_equal(x->tag, y->tag);
                        x->done = y->done = 1;
                        progress = 1;
                    }
                    break;
                }
            }
        }
    }
    int finished = 1;
    for (int a = 0; a < p; a++) {
        while (pos[a] < ne[a] && ev[a][pos[a]].done)
            pos[a]++;
        finished &= pos[a] == ne[a];
    }
    return finished;
}

/* The grouped order never deadlocks under NCCL's worst case, for every
 * schedule; the ungrouped one does for 1F1B and interleaved (why the
 * executor groups on NCCL), and not for GPipe. */
static void test_nccl_grouped_no_deadlock(void **state)
{
    (void)state;
    for (int p = 2; p <= 8; p++)
        for (int m = 1; m <= 12; m++) {
            assert_true(nccl_replay(SPEC_SCHED_GPIPE, p, m, 1, 1));
            assert_true(nccl_replay(SPEC_SCHED_1F1B, p, m, 1, 1));
            assert_true(nccl_replay(SPEC_SCHED_GPIPE, p, m, 1, 0));
            if (m >= 2)
                assert_false(nccl_replay(SPEC_SCHED_1F1B, p, m, 1, 0));
            if (m % p == 0)
                for (int v = 1; v <= 3; v++)
                    assert_true(nccl_replay(SPEC_SCHED_INTERLEAVED, p, m, v, 1));
        }
    assert_false(nccl_replay(SPEC_SCHED_INTERLEAVED, 2, 4, 2, 0));
    /* stage 0 of p=2, m=4, v=2: 4 warm-up forwards, 4 steady (forward,
     * backward) pairs, 4 cool-down backwards: 12 blocks of 16 ops */
    sched_op ops[CAP];
    int block[CAP], n = sched_build(SPEC_SCHED_INTERLEAVED, 2, 0, 4, 2, ops, CAP);
    assert_int_equal(n, 16);
    assert_int_equal(sched_blocks(ops, n, 2, block), 12);
    assert_int_equal(block[3], 3);
    assert_int_equal(block[4], 4), assert_int_equal(block[5], 4); /* the first pair */
    assert_int_equal(block[15], 11);
    /* 1F1B and GPipe: one op a block */
    n = sched_build(SPEC_SCHED_1F1B, 4, 1, 8, 1, ops, CAP);
    assert_int_equal(sched_blocks(ops, n, 1, block), n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_1f1b_order),      cmocka_unit_test(test_gpipe_order),
        cmocka_unit_test(test_interleaved_hand), cmocka_unit_test(test_replay_no_deadlock),
        cmocka_unit_test(test_replay_bounded_sends), cmocka_unit_test(test_inflight_matches_model),
        cmocka_unit_test(test_invalid),         cmocka_unit_test(test_nccl_grouped_no_deadlock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
