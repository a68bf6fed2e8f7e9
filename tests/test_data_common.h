/* Helpers shared by the datasets tests: running the kindbench binary and
 * finding fixtures. */
#ifndef KB_TEST_DATA_COMMON_H
#define KB_TEST_DATA_COMMON_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* $name, or fallback when unset. */
static inline const char *kbt_env(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

/* Runs a shell command built printf-style; returns its exit status (-1 if it
 * could not run). Output goes to the test's log. */
static inline int kbt_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int kbt_run(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fflush(stdout);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

#endif
