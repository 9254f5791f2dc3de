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

/* Calls of `call` seconds run only inside slices [k period, k period + on);
 * a call that does not fit in what is left of a slice waits for the next.
 * The repetitions start at `start` (any phase of the slices) and go on for
 * `span`. The rank's true time per call: period / (calls per slice). */
static double run_sliced(double call, double on, double period, double start, double span, double *old_style)
{
    call_window w = call_window_open(start, span);
    double t = start, first = -1, last = -1;
    int64_t n_first = 0, n_last = 0;
    while (t < start + span) {
        double k = (double)(int64_t)(t / period), in = t - k * period;
        if (in + call > on + 1e-12) /* wait for the next slice */
            t = (k + 1) * period;
        t += call;
        call_window_end(&w, t);
        if (first < 0 && t >= w.a)
            first = t, n_first = w.n;
        if (t <= w.b)
            last = t, n_last = w.n;
    }
    *old_style = (last - first) / (double)(n_last - n_first);
    return call_window_per_call(&w);
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
    call_window w = call_window_open(10.0, 1.0);
    assert_true(call_window_per_call(&w) < 0);
    call_window_end(&w, 10.2); /* before a = 10.25 */
    call_window_end(&w, 10.9); /* after b = 10.75 */
    call_window_end(&w, 11.6);
    assert_close(call_window_per_call(&w), 1.6 / 3.0, 1e-12, 0);
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
