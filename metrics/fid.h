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
 *  - KB_FD_AUTO (default): Cholesky, falling back to EIGH when dpotrf finds
 *    S1 not positive definite (e.g. fewer images than dimensions).
 *
 * scipy's fallback is kept: when the result is not finite, 1e-6 is added to
 * both diagonals and the distance recomputed (info->eps_retry says so). */
#ifndef KB_METRICS_FID_H
#define KB_METRICS_FID_H

#include <stdint.h>

#include "metrics/stats.h"
#include "util/err.h"

typedef enum { KB_FD_AUTO = 0, KB_FD_EIGH, KB_FD_CHOLESKY } kb_fd_method;

typedef struct {
    kb_fd_method method; /* the route that produced the value (EIGH or CHOLESKY) */
    int eps_retry;       /* 1 when the 1e-6 I offset was needed */
    int clamped;         /* eigenvalues < 0 that were clamped to 0 (both decompositions) */
    double mean_term;    /* |mu1 - mu2|^2 */
    double trace1, trace2, trace_sqrt;
    double seconds;      /* the whole call, the input checks included */
} kb_fd_info;

const char *kb_fd_method_name(kb_fd_method m);

/* FD of two statistics of equal dimension. info may be NULL. Fails on a
 * dimension mismatch, non-finite input, or a LAPACK failure (named). */
int kb_frechet_distance(const kb_gstats *a, const kb_gstats *b, kb_fd_method method, double *fd, kb_fd_info *info,
                        kb_err *err);

#endif
