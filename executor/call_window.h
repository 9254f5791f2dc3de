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
    double start, a, b; /* the repetitions began at start; the counted window is [a, b] */
    double last;        /* when the last call ended */
    int64_t n, n_a, n_b; /* calls ended: in all, before a, by b */
} call_window;

static inline call_window call_window_open(double start, double span)
{
    call_window w = {start, start + 0.25 * span, start + 0.75 * span, start, 0, 0, 0};
    return w;
}

/* A call ended at time t (t never decreases). */
static inline void call_window_end(call_window *w, double t)
{
    w->n++;
    w->last = t;
    if (t < w->a)
        w->n_a = w->n;
    if (t <= w->b)
        w->n_b = w->n;
}

/* Seconds per call: the window over the calls that ended in it; when none
 * did (calls longer than the window), the whole run over its calls; -1
 * before any call ended. */
static inline double call_window_per_call(const call_window *w)
{
    if (w->n_b > w->n_a)
        return (w->b - w->a) / (double)(w->n_b - w->n_a);
    return w->n > 0 ? (w->last - w->start) / (double)w->n : -1.0;
}

#endif
