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

#endif /* TRIAD_LOG_H */
