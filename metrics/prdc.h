/* k-nearest-neighbour manifold metrics on pool features:
 *
 *  precision, recall  Kynkäänniemi et al. 2019 as the ADM evaluator's
 *                     ManifoldEstimator computes them (k = 3):
 *                     d(u, v) = max(|u|^2 - 2 u.v + |v|^2, 0) (squared L2,
 *                     by GEMM); radius of a point = the (k+1)-th smallest
 *                     distance to its own set, self included (= the k-th
 *                     neighbour); precision = fraction of samples s with some
 *                     reference r such that d(r, s) <= radius(r); recall =
 *                     fraction of references r with some sample s such that
 *                     d(r, s) <= radius(s).
 *  density, coverage  Naeem et al. 2020 as the prdc package computes them
 *                     (k = 5, strict <, reference radii only):
 *                     density = 1/(k M) sum_s #{r : d(r, s) < radius(r)};
 *                     coverage = fraction of r with min_s d(r, s) < radius(r).
 *
 * Distances are computed block by block (rows x cols of `block`), so a
 * 50k x 50k problem never holds more than one block; results do not depend
 * on the block size beyond GEMM rounding.
 *
 * Precision of the distances: ADM runs the GEMM in float16 (inputs cast to
 * fp16; fp32 for a whole 10000 x 10000 batch pair when any of its fp16
 * distances overflows). KB_DIST_FP32 (default) computes
 * u.v in float32 by GEMM and the norms and the sum in double, rounded to
 * float; distances closer to a radius than float16 resolution (about 1e-3
 * relative) can then compare differently from ADM, which moves P/R by a few
 * points in the 4th decimal. KB_DIST_FP16 emulates ADM: inputs rounded to
 * fp16, then norms, products, and each addition rounded to fp16 (the GEMM
 * accumulates in fp32 as GPU fp16 GEMMs do); a batch pair of ADM's (10000
 * rows x 10000 columns, whatever `block` is) with an fp16 overflow anywhere
 * is computed in fp32, as ADM does (found by a first fp16 pass over the
 * pair, so fp16 mode costs up to twice the GEMMs). The emulation is not
 * bit-exact to TensorFlow (its reduction order is unknown). */
#ifndef KB_METRICS_PRDC_H
#define KB_METRICS_PRDC_H

#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"
#include "util/progress.h"

typedef enum { KB_DIST_FP32 = 0, KB_DIST_FP16 } kb_dist_precision;

typedef struct {
    int pr_k;                    /* precision/recall neighbourhood (3); 0: skip P/R */
    int dc_k;                    /* density/coverage neighbourhood (5); 0: skip D/C */
    int64_t block;               /* rows and columns per distance block (default 2048) */
    kb_dist_precision precision; /* distance arithmetic */
    kb_progress *progress;       /* optional: counts distance blocks */
} kb_prdc_opts;

typedef struct {
    double precision, recall; /* NaN when pr_k == 0 */
    double density, coverage; /* NaN when dc_k == 0 */
} kb_prdc_result;

void kb_prdc_opts_default(kb_prdc_opts *o);

/* Squared distances of the (k+1)-th nearest point of each row of x within x
 * itself, self included, for each k in ks[0..nk): radii[j * n + i]. */
int kb_knn_radii(kb_ctx *ctx, const float *x, int64_t n, int64_t dim, const int *ks, int nk, const kb_prdc_opts *o,
                 float *radii, kb_err *err);

/* All four metrics (those with k > 0) in one pass over reference x sample
 * distances. ctx must be a CPU context (features are host memory). */
int kb_prdc(kb_ctx *ctx, const float *ref, int64_t n_ref, const float *samp, int64_t n_samp, int64_t dim,
            const kb_prdc_opts *o, kb_prdc_result *r, kb_err *err);

/* Number of distance blocks kb_prdc will compute (for a progress total). */
int64_t kb_prdc_blocks(int64_t n_ref, int64_t n_samp, const kb_prdc_opts *o);

#endif
