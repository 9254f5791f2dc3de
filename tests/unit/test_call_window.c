/* test_call_window.c — the profile's time per call of an op while ranks share
 * cores (executor/call_window.h), on exact synthetic schedules: a rank that
 * runs calls of a known length in scheduler slices and waits between them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../executor/call_window.h"
#include "assert_close.h"

/* Calls of call_s seconds run only inside slices [k period_s, k period_s +
 * on_s); a call that does not fit in what is left of a slice waits for the
 * next. The repetitions start at start_s (any phase of the slices) and go on
 * for span_s. Returns the window's seconds per call; *first_to_last_s gets
 * the span from the first counted call to the last over their count (the
 * profile's count before call_window.h). */
static double run_sliced(double call_s, double on_s, double period_s, double start_s, double span_s,
                         double *first_to_last_s)
{
    exec_call_window w = exec_call_window_open(start_s, span_s);
    double t_s = start_s, first_s = -1, last_s = -1;
    int64_t n_first = 0, n_last = 0;
    while (t_s < start_s + span_s) {
        double k = (double)(int64_t)(t_s / period_s), in_s = t_s - k * period_s;
        if (in_s + call_s > on_s + 1e-12) /* wait for the next slice */
            t_s = (k + 1) * period_s;
        t_s += call_s;
        exec_call_window_end(&w, t_s);
        if (first_s < 0 && t_s >= w.a_s)
            first_s = t_s, n_first = w.n_calls;
        if (t_s <= w.b_s)
            last_s = t_s, n_last = w.n_calls;
    }
    *first_to_last_s = (last_s - first_s) / (double)(n_last - n_first);
    return exec_call_window_per_call_s(&w);
}

/* Two ranks on a core, 3 ms slices each, calls of 100 us: 30 calls per 6 ms,
 * 200 us a call. The 25 ms counted hold four whole periods (120 calls) and
 * 1 ms more, in which 0 to 11 calls end (the window is closed) by its phase
 * against the slices: 25 ms / 131 to 25 ms / 120, 200 us on average over the
 * phases. The span from the
 * first counted call to the last (what the profile counted before) is low on
 * average and by 10% or more in some phase. */
static void test_sliced_rank(void **state)
{
    (void)state;
    double worst_old = 1.0, sum = 0, sum_old = 0;
    int phases = 600;
    for (int ph = 0; ph < phases; ph++) {
        double start = 1.0 + ph * 1e-5, old = 0; /* phases over one 6 ms period */
        double per = run_sliced(100e-6, 3e-3, 6e-3, start, 50e-3, &old);
        assert_true(per >= 25e-3 / 131 * (1 - 1e-9) && per <= 25e-3 / 120 * (1 + 1e-9));
        sum += per, sum_old += old;
        if (old / 200e-6 < worst_old)
            worst_old = old / 200e-6;
    }
    assert_close(sum / phases, 200e-6, 0.003, 0);
    assert_true(sum_old / phases < 0.97 * 200e-6);
    assert_true(worst_old < 0.9);
}

/* A rank alone on its core (no waits): exactly the call's length. */
static void test_alone(void **state)
{
    (void)state;
    double old = 0;
    assert_close(run_sliced(250e-6, 1.0, 1.0, 0.0, 0.1, &old), 250e-6, 0.011, 0);
}

/* Calls longer than the window's counted half: the whole run over its calls;
 * no call yet: -1. */
static void test_long_calls_and_empty(void **state)
{
    (void)state;
    exec_call_window w = exec_call_window_open(10.0, 1.0);
    assert_true(exec_call_window_per_call_s(&w) < 0);
    exec_call_window_end(&w, 10.2); /* before a = 10.25 */
    exec_call_window_end(&w, 10.9); /* after b = 10.75 */
    exec_call_window_end(&w, 11.6);
    assert_close(exec_call_window_per_call_s(&w), 1.6 / 3.0, 1e-12, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sliced_rank),
        cmocka_unit_test(test_alone),
        cmocka_unit_test(test_long_calls_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
