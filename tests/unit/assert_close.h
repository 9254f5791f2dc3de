/* assert_close.h — comparisons of doubles for cmocka tests (cmocka 1.1.5
 * only compares floats). NaN and Inf fail every comparison. */
#ifndef TRIAD_ASSERT_CLOSE_H
#define TRIAD_ASSERT_CLOSE_H

#include <math.h>
#include <stdio.h>

/* Passes when |actual - expected| <= atol + rtol * |expected| and both are
 * finite. Written so that NaN makes the condition false. */
static inline int triad_close(double actual, double expected, double rtol, double atol)
{
    if (!isfinite(actual) || !isfinite(expected))
        return 0;
    return fabs(actual - expected) <= atol + rtol * fabs(expected);
}

#define assert_close(actual, expected, rtol, atol)                                                 \
    do {                                                                                           \
        double a_ = (double)(actual), e_ = (double)(expected);                                     \
        if (!triad_close(a_, e_, (rtol), (atol))) {                                                \
            print_error("%s:%d: %s = %.17g, expected %.17g (rtol %g, atol %g)\n", __FILE__,        \
                        __LINE__, #actual, a_, e_, (double)(rtol), (double)(atol));                \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

#endif
