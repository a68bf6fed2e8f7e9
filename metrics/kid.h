/* Kernel Inception Distance (Binkowski et al. 2018) as torch-fidelity
 * computes it: the polynomial kernel k(x, y) = (gamma x.y + coef0)^degree
 * with gamma = 1/dim, coef0 = 1, degree 3; `subsets` (100) times, a subset
 * of m = subset_size (1000) rows from each set, drawn without replacement by
 * numpy.random.RandomState(seed = 2020).choice, samples first, then the
 * reference (the order torch-fidelity draws input1, input2 in); the unbiased
 * MMD^2 estimate of each subset pair,
 *
 *   (sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)) / (m (m - 1))
 *     - 2 sum_{i, j} k(x_i, y_j) / m^2,
 *
 * and the mean and numpy std (ddof 0) over subsets. The draws are bit-exact
 * to torch-fidelity's (metrics/stats.h); the kernels and their sums are
 * computed in double. torch-fidelity sums float32 kernel matrices in float32
 * (sums near 1e6, an ulp of 0.06-0.25), so its KID differs from ours by
 * 1e-5 to 1e-4 relative (1.5e-5 and 2.6e-5 on the test fixtures, 5.7e-5 on
 * 2048-d features); the double value is the accurate one.
 *
 * One adaptation: torch-fidelity refuses sets smaller than subset_size; we
 * use m = min(subset_size, n_samples, n_reference) (reported in the result)
 * and refuse only m < 2. */
#ifndef KB_METRICS_KID_H
#define KB_METRICS_KID_H

#include <stdint.h>

#include "util/err.h"
#include "util/progress.h"

typedef struct {
    int subsets;          /* 100 */
    int64_t subset_size;  /* 1000 */
    int degree;           /* 3 */
    double gamma;         /* 0: 1/dim */
    double coef0;         /* 1 */
    uint32_t seed;        /* 2020 */
    kb_progress *progress; /* optional: counts subsets */
} kb_kid_opts;

typedef struct {
    double mean, std;
    int64_t subset_size; /* m actually used */
    int subsets;
} kb_kid_result;

void kb_kid_opts_default(kb_kid_opts *o);

/* samp [n_samp, dim] and ref [n_ref, dim] float32 features. */
int kb_kid(const float *samp, int64_t n_samp, const float *ref, int64_t n_ref, int64_t dim, const kb_kid_opts *o,
           kb_kid_result *r, kb_err *err);

/* The unbiased MMD^2 of two sets of m rows each (double), for tests. */
int kb_kid_mmd2(const double *x, const double *y, int64_t m, int64_t dim, const kb_kid_opts *o, double *out, kb_err *err);

#endif
