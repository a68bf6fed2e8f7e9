/* The Fréchet distance between two Gaussians, for FID (pool features,
 * 2048-d) and sFID (spatial features, 2023-d):
 *
 *   FD = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)
 *
 * The peers (pytorch-fid, the ADM evaluator, clean-fid) take tr sqrt(S1 S2)
 * from scipy.linalg.sqrtm of the non-symmetric product (a complex Schur
 * form). Its eigenvalues are those of the symmetric positive semi-definite
 * matrix S1^1/2 S2 S1^1/2, so we take sum sqrt(max(lambda, 0)) of that, in
 * double with LAPACK:
 *
 *  - KB_FD_EIGH (the definition): S1 = V diag(l) V^T by dsyevd, l < 0
 *    clamped to 0, Y = V diag(sqrt l); the eigenvalues of Y^T S2 Y
 *    (orthogonally similar to S1^1/2 S2 S1^1/2) by dsyevd.
 *  - KB_FD_CHOLESKY: S1 = L L^T by dpotrf; the eigenvalues of L^T S2 L,
 *    which is orthogonally similar to S1^1/2 S2 S1^1/2 as well (L = S1^1/2 Q
 *    with Q orthogonal), so the result is the same up to rounding while one
 *    of the two eigen-decompositions is saved (about 3x faster at 2048-d).
 *    Needs S1 positive definite.
 *  - KB_FD_PIVOTED: S1 = P L L^T P^T by pivoted Cholesky (dpstrf), which
 *    stops at S1's numerical rank r (largest remaining diagonal below
 *    d * eps * max diag); K = P L (d x r); the eigenvalues of K^T S2 K.
 *    S1 = K K^T, so these are the nonzero eigenvalues of S1 S2. For a
 *    singular S1 (fewer images than dimensions) it replaces the
 *    eigen-decomposition with vectors: 4-5x faster at 2048-d, 1000 images.
 *  - KB_FD_AUTO (default): Cholesky, falling back to PIVOTED when dpotrf
 *    finds S1 not positive definite.
 *
 * The routes differ only in rounding, and where S1 is singular in the
 * directions of rounding-size variance that EIGH keeps as tiny eigenvalues
 * and PIVOTED drops (about 1e-8 relative at 2048-d, rank 999; scipy's sqrtm
 * differs from both by as much).
 *
 * scipy's fallback is kept: when the result is not finite, 1e-6 is added to
 * both diagonals and the distance recomputed (info->eps_retry says so). */
#ifndef KB_METRICS_FID_H
#define KB_METRICS_FID_H

#include <stdint.h>

#include "metrics/stats.h"
#include "util/err.h"

typedef enum { KB_FD_AUTO = 0, KB_FD_EIGH, KB_FD_CHOLESKY, KB_FD_PIVOTED } kb_fd_method;

typedef struct {
    kb_fd_method method; /* the route that produced the value (EIGH, CHOLESKY or PIVOTED) */
    int eps_retry;       /* 1 when the 1e-6 I offset was needed */
    int clamped;         /* eigenvalues < 0 that were clamped to 0 (both decompositions) */
    int64_t rank1;       /* the rank of sigma1 the route used: d for CHOLESKY, r for PIVOTED, the
                            number of positive eigenvalues for EIGH */
    double mean_term;    /* |mu1 - mu2|^2 */
    double trace1, trace2, trace_sqrt;
    double seconds;      /* the whole call, the input checks included */
} kb_fd_info;

const char *kb_fd_method_name(kb_fd_method m);

/* FD of two statistics of equal dimension. info may be NULL. Fails on a
 * dimension mismatch, non-finite input, or a LAPACK failure (named).
 * Statistics of extreme scale (covariances beyond 2^+-256) are computed
 * scaled by an exact power of two, so products of covariances neither
 * overflow nor underflow double; the result is unchanged otherwise. */
int kb_frechet_distance(const kb_gstats *a, const kb_gstats *b, kb_fd_method method, double *fd, kb_fd_info *info,
                        kb_err *err);

#endif
