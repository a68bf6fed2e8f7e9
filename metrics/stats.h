/* Feature sets and their Gaussian statistics, the input of FID and sFID.
 *
 * Statistics are computed in double as the ADM evaluator and pytorch-fid do
 * (np.cov, rowvar=False: the N-1 denominator), from float32 features.
 * The mean is accumulated in double, as pytorch-fid has it (its activations
 * are a float64 array). The ADM evaluator takes np.mean of float32
 * activations along axis 0, which numpy sums row after row in float32 (not
 * pairwise): at N = 50000 its mean is off by up to ~1e-5 relative, which
 * moved a small FID by 3e-7 (features of mean 0.5) to 8e-6 (mean 5)
 * relative in a numpy check; against ADM's own statistics, expect that.
 *
 * Also here: numpy's legacy RandomState (MT19937 with its seeding, the
 * bounded-integer draw and the Fisher-Yates shuffle of permutation()), so
 * that torch-fidelity's shuffled IS splits and KID subsets are drawn exactly
 * as torch-fidelity draws them. */
#ifndef KB_METRICS_STATS_H
#define KB_METRICS_STATS_H

#include <stdint.h>

#include "util/err.h"

/* The three feature sets of one image set (any may be absent: NULL, dim 0),
 * each row-major [n, dim] float32 in host memory. */
typedef struct {
    int64_t n;
    int64_t pool_dim, spatial_dim, logits_dim;
    float *pool;    /* FID, precision/recall, density/coverage, KID */
    float *spatial; /* sFID */
    float *logits;  /* Inception Score */
} kb_features;

void kb_features_free(kb_features *f);

/* Fails when x holds a NaN or an infinity, naming `what`, the row and the
 * column: a non-finite feature would otherwise turn every metric into NaN
 * (or, for precision/recall, silently into a wrong count). */
int kb_features_check(const float *x, int64_t n, int64_t dim, const char *what, kb_err *err);

/* Mean and covariance of a feature set. */
typedef struct {
    int64_t dim;
    int64_t count;  /* images behind the statistics; 0 when unknown (read from a file) */
    double *mu;     /* [dim] */
    double *sigma;  /* [dim, dim] row-major, symmetric */
} kb_gstats;

int kb_gstats_alloc(kb_gstats *s, int64_t dim, kb_err *err);
void kb_gstats_free(kb_gstats *s);

/* mu = mean over rows, sigma = (X - mu)^T (X - mu) / (n - 1), all in double
 * (the centred rows go through dsyrk in blocks, so no n x dim double copy is
 * made). Needs n >= 2; checks the features for NaN/inf first. */
int kb_gstats_compute(const float *x, int64_t n, int64_t dim, const char *what, kb_gstats *out, kb_err *err);

/* Checks statistics that came from a file: finite, sigma symmetric (to 1e-6
 * of its diagonal scale) with a non-negative diagonal. */
int kb_gstats_check(const kb_gstats *s, const char *what, kb_err *err);

/* ---- numpy.random.RandomState, bit-exact for the calls we need ---- */
typedef struct {
    uint32_t key[624];
    int pos;
} kb_np_rng;

/* RandomState(seed) for an integer seed (init_genrand). */
void kb_np_rng_seed(kb_np_rng *r, uint32_t seed);
/* One MT19937 output (genrand_int32). */
uint32_t kb_np_rng_u32(kb_np_rng *r);
/* A uniform integer in [0, max], numpy's random_interval (masked rejection). */
uint64_t kb_np_rng_interval(kb_np_rng *r, uint64_t max);
/* RandomState.permutation(n): out[i] = i, then numpy's shuffle. */
void kb_np_permutation(kb_np_rng *r, int64_t n, int64_t *out);
/* RandomState.choice(n, m, replace=False): numpy draws permutation(n) and
 * keeps the first m. work [n] is scratch; out [m]. */
void kb_np_choice(kb_np_rng *r, int64_t n, int64_t m, int64_t *work, int64_t *out);

#endif
