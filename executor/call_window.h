/* call_window.h — the time per call of an op repeated while ranks share
 * cores, counted over a fixed window (triad profile, cmd_profile.c).
 *
 * A rank that shares its core runs in scheduler slices of milliseconds and
 * waits between them. The calls that end inside the fixed window [a, b] over
 * its length is the rank's steady rate, waits included. The span from the
 * first call that ends in the window to the last is not: a window that
 * starts or ends while the rank waits has its first counted call at the
 * start of the rank's next slice and its last at the end of one, so the span
 * leaves out the waits at both ends and the time per call comes out low.
 */
#ifndef TRIAD_CALL_WINDOW_H
#define TRIAD_CALL_WINDOW_H

#include <stdint.h>

typedef struct {
    double start_s, a_s, b_s; /* clock seconds: the repetitions began at start_s; counted: [a_s, b_s] */
    double last_s;            /* when the last call ended */
    int64_t n_calls, n_before_a, n_by_b; /* calls ended: in all, before a_s, by b_s */
} exec_call_window;

/* The window of repetitions that begin at start_s and last span_s: the
 * middle half of it counts. */
static inline exec_call_window exec_call_window_open(double start_s, double span_s)
{
    exec_call_window w = {start_s, start_s + 0.25 * span_s, start_s + 0.75 * span_s, start_s, 0, 0, 0};
    return w;
}

/* A call ended at clock time t_s (never decreasing). */
static inline void exec_call_window_end(exec_call_window *w, double t_s)
{
    w->n_calls++;
    w->last_s = t_s;
    if (t_s < w->a_s)
        w->n_before_a = w->n_calls;
    if (t_s <= w->b_s)
        w->n_by_b = w->n_calls;
}

/* Seconds per call: the counted half's length over the calls that ended in
 * it; when none did (calls longer than it), the whole run over its calls;
 * -1 before any call ended. */
static inline double exec_call_window_per_call_s(const exec_call_window *w)
{
    if (w->n_by_b > w->n_before_a)
        return (w->b_s - w->a_s) / (double)(w->n_by_b - w->n_before_a);
    return w->n_calls > 0 ? (w->last_s - w->start_s) / (double)w->n_calls : -1.0;
}

#endif
