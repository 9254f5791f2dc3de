/* log.h — one-line messages on stderr, and the exit codes of triad.
 *
 * Exit status: 0 success, 1 runtime failure, 2 bad input (usage, spec,
 * layout that cannot run). Every bad-input message names the field and the
 * value: log_die_input("layout: tp=3 does not divide heads=4").
 */
#ifndef TRIAD_LOG_H
#define TRIAD_LOG_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

enum { TRIAD_EXIT_OK = 0, TRIAD_EXIT_FAIL = 1, TRIAD_EXIT_INPUT = 2 };

static inline void log_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("triad: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Prints "triad: <message>" and exits with status 2 (bad input). */
#define log_die_input(...) do { log_msg(__VA_ARGS__); exit(TRIAD_EXIT_INPUT); } while (0)
/* Prints "triad: <message>" and exits with status 1 (runtime failure). */
#define log_die(...) do { log_msg(__VA_ARGS__); exit(TRIAD_EXIT_FAIL); } while (0)

/* The integer value of command-line option --opt of command cmd, which
 * must lie in lo..hi; otherwise one line naming both and exit status 2. */
static inline long log_opt_long(const char *cmd, const char *opt, const char *s, long lo, long hi)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        log_die_input("%s: --%s '%s' is not an integer in %ld..%ld", cmd, opt, s, lo, hi);
    return v;
}

#endif /* TRIAD_LOG_H */
