/* Numbers read as doubles (JSON metadata of checkpoints, caches, training
 * records) that stand for integers: before a cast, the value must be an
 * integer inside the target's range, since casting a double outside it (or
 * NaN) to an integer type is undefined in C. */
#ifndef KB_EXACT_INT_H
#define KB_EXACT_INT_H

#include <math.h>

/* 1 when x is an integer in [lo, hi] (NaN and infinities are not). */
static inline int kb_double_is_int_in(double x, double lo, double hi) { return x >= lo && x <= hi && x == floor(x); }

#endif
