/* Numbers that stand for integers, read as doubles (JSON metadata of
 * checkpoints, caches, training records) or as text (options, environment
 * variables, metadata strings): before a cast, the value must be an integer
 * inside the target's range, since casting a double outside it (or NaN) to an
 * integer type is undefined in C, and atoi's overflow is too. */
#ifndef KB_EXACT_INT_H
#define KB_EXACT_INT_H

#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* 1 when x is an integer in [lo, hi] (NaN and infinities are not). */
static inline int kb_double_is_int_in(double x, double lo, double hi) { return x >= lo && x <= hi && x == floor(x); }

/* 1 when the whole of s is a decimal integer (strtoll's syntax) in [lo, hi],
 * stored in *out; 0 otherwise (empty, trailing text, overflow, range). */
static inline int kb_text_is_int_in(const char *s, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

#endif
