/* Fréchet distance through symmetric eigenvalue problems (see fid.h). */
#include "metrics/fid.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "metrics/congruence.h"
#include "util/bigalloc.h"
#include "util/progress.h"

const char *kb_fd_method_name(kb_fd_method m) {
    switch (m) {
    case KB_FD_EIGH: return "eigh";
    case KB_FD_CHOLESKY: return "cholesky";
    case KB_FD_PIVOTED: return "pivoted";
    default: return "auto";
    }
}

/* Scratch of d x d doubles (on huge pages: their first touch is a
 * measurable part of the run otherwise, see util/bigalloc.h): a and m for
 * every route, t only for the eigh and pivoted routes (sqrt_trace_of_factor), c
 * (kb_congruence_work_size) only for the Cholesky route (each allocated
 * there). */
typedef struct {
    int64_t d;
    double *a, *t, *m, *w, *c;
} fd_work;

static void work_free(fd_work *w) {
    free(w->a);
    free(w->t);
    free(w->m);
    free(w->w);
    free(w->c);
}

static int work_alloc(fd_work *w, int64_t d, kb_err *err) {
    size_t dd = (size_t)(d * d) * sizeof(double);
    w->d = d;
    w->a = kb_alloc_huge(dd), w->t = NULL, w->c = NULL, w->m = kb_alloc_huge(dd);
    w->w = malloc((size_t)d * sizeof(double));
    if (w->a && w->m && w->w) return 0;
    work_free(w);
    return kb_fail(err, "Frechet distance: out of memory for %lldx%lld matrices", (long long)d, (long long)d);
}

/* The lower triangle of the symmetric d x d matrix src into dst (column-major;
 * the strict upper triangle of dst is left as it is, LAPACK does not read it). */
static void copy_lower(double *dst, const double *src, int64_t d) {
    for (int64_t j = 0; j < d; j++) memcpy(dst + j * d + j, src + j * d + j, (size_t)(d - j) * sizeof(double));
}

/* The eigenvalues of the symmetric r x r matrix m (lower triangle,
 * column-major; destroyed) into w by dsyevd. The _work form: LAPACKE's own
 * form would first scan m for NaN, which kb_gstats_check has ruled out for
 * the inputs (a NaN made on the way is caught by isfinite on the result). */
static lapack_int syevd_values(double *m, int64_t r, double *w) {
    double qwork;
    lapack_int qiwork, n = (lapack_int)r;
    lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'N', 'L', n, m, n, w, &qwork, -1, &qiwork, -1);
    if (info != 0) return info;
    lapack_int lwork = (lapack_int)qwork, liwork = qiwork;
    double *work = malloc((size_t)lwork * sizeof(double));
    lapack_int *iwork = malloc((size_t)liwork * sizeof(lapack_int));
    info = work && iwork ? LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'N', 'L', n, m, n, w, work, lwork, iwork, liwork)
                         : LAPACK_WORK_MEMORY_ERROR;
    free(work);
    free(iwork);
    return info;
}

/* sum sqrt(max(l, 0)) over the eigenvalues of the symmetric r x r matrix m,
 * of which only the lower triangle in column-major order is read (the upper
 * one in row-major order); m is destroyed. dsyevd is faster on the lower
 * triangle here (0.30 s against 0.36 s at 2048-d on 2 cores). */
static int sqrt_trace(double *m, int64_t r, double *w, double *out, int *clamped, kb_err *err) {
    *out = 0.0;
    if (r == 0) return 0;
    lapack_int info = syevd_values(m, r, w);
    if (info != 0) return kb_fail(err, "Frechet distance: LAPACK dsyevd failed (info %d) on a %lldx%lld matrix", (int)info, (long long)r, (long long)r);
    for (int64_t i = 0; i < r; i++) {
        if (w[i] > 0) *out += sqrt(w[i]);
        else if (w[i] < 0) (*clamped)++;
    }
    return 0;
}

/* X = w->m (d x r, row-major, leading dimension d), a factor S1 = X X^T: sum
 * sqrt(max(l, 0)) over the eigenvalues of X^T S2 X (r x r), whose nonzero
 * ones are those of S1 S2. Uses w->t (allocated here) and w->a. */
static int sqrt_trace_of_factor(const double *s2, fd_work *w, int64_t r, double *tr, int *clamped, kb_err *err) {
    int64_t d = w->d;
    if (r == 0) return *tr = 0.0, 0;
    if (!w->t && !(w->t = kb_alloc_huge((size_t)(d * d) * sizeof(double))))
        return kb_fail(err, "Frechet distance: out of memory for a %lldx%lld matrix", (long long)d, (long long)d);
    /* T = S2 X (d x r), M = X^T T (r x r) */
    cblas_dsymm(CblasRowMajor, CblasLeft, CblasLower, (int)d, (int)r, 1.0, s2, (int)d, w->m, (int)d, 0.0, w->t, (int)r);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)r, (int)d, 1.0, w->m, (int)d, w->t, (int)r, 0.0,
                w->a, (int)r);
    return sqrt_trace(w->a, r, w->w, tr, clamped, err);
}

/* The definition: S1 = V diag(l) V^T, Y = V diag(sqrt(max(l,0))), eigenvalues
 * of Y^T S2 Y. Columns of Y with l <= 0 are exactly zero, so they are dropped
 * (their rows and columns of Y^T S2 Y are zero: eigenvalue 0 either way). */
static int trace_eigh(const double *s1, const double *s2, fd_work *w, double *tr, int *clamped, int64_t *rank,
                      kb_err *err) {
    int64_t d = w->d, r = 0;
    memcpy(w->a, s1, (size_t)(d * d) * sizeof(double));
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', (lapack_int)d, w->a, (lapack_int)d, w->w);
    if (info != 0) return kb_fail(err, "Frechet distance: LAPACK dsyevd failed (info %d) on sigma1 (%lldx%lld)", (int)info, (long long)d, (long long)d);
    /* Y (d x r, row-major, packed into w->m) */
    for (int64_t k = 0; k < d; k++) {
        if (!(w->w[k] > 0)) {
            if (w->w[k] < 0) (*clamped)++;
            continue;
        }
        double s = sqrt(w->w[k]);
        for (int64_t i = 0; i < d; i++) w->m[i * d + r] = w->a[i * d + k] * s;
        r++;
    }
    *rank = r;
    return sqrt_trace_of_factor(s2, w, r, tr, clamped, err);
}

/* S1 = L L^T, eigenvalues of L^T S2 L (what LAPACK's dsygst forms with itype
 * 2, here by halves: metrics/congruence.h; in place of a copy of S2's lower
 * triangle). Returns 1 (no error) when S1 is not positive definite, so that
 * the caller falls back to trace_eigh. The symmetric inputs are the same
 * matrices in row- and column-major order, so everything here is
 * column-major with no transposed copies. dpotrf's _work form skips
 * LAPACKE's NaN scan, as in syevd_values. */
static int trace_cholesky(const double *s1, const double *s2, fd_work *w, double *tr, int *clamped, kb_err *err) {
    int64_t d = w->d;
    copy_lower(w->a, s1, d);
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)d, w->a, (lapack_int)d);
    if (info > 0) return 1;
    if (info < 0) return kb_fail(err, "Frechet distance: LAPACK dpotrf argument %d invalid", (int)-info);
    copy_lower(w->m, s2, d);
    int64_t scratch = kb_congruence_work_size(d);
    if (scratch && !w->c && !(w->c = kb_alloc_huge((size_t)scratch * sizeof(double))))
        return kb_fail(err, "Frechet distance: out of memory for %lld doubles of scratch", (long long)scratch);
    if (kb_congruence_lower(d, w->m, w->a, d, w->c, err)) return kb_fail_wrap(err, "Frechet distance");
    return sqrt_trace(w->m, d, w->w, tr, clamped, err);
}

/* S1 = P L L^T P^T by pivoted Cholesky (dpstrf; it stops at the rank r where
 * the largest remaining diagonal is below d * eps * max diag), K = P L (d x r),
 * the eigenvalues of K^T S2 K (r x r), whose nonzero eigenvalues are those of
 * S1 S2 (S1 = K K^T). For a singular S1 (fewer images than dimensions) this
 * replaces the eigen-decomposition with vectors of trace_eigh; the directions
 * it drops have variance below that tolerance (the eigh route keeps them as
 * eigenvalues of rounding size). */
static int trace_pivoted(const double *s1, const double *s2, fd_work *w, double *tr, int *clamped, int64_t *rank,
                         kb_err *err) {
    int64_t d = w->d;
    lapack_int *piv = malloc((size_t)d * sizeof(lapack_int));
    double *work = malloc((size_t)(2 * d) * sizeof(double));
    if (!piv || !work) {
        free(piv), free(work);
        return kb_fail(err, "Frechet distance: out of memory");
    }
    copy_lower(w->a, s1, d);
    lapack_int r = 0;
    lapack_int info = LAPACKE_dpstrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)d, w->a, (lapack_int)d, piv, &r, -1.0, work);
    free(work);
    if (info < 0) {
        free(piv);
        return kb_fail(err, "Frechet distance: LAPACK dpstrf argument %d invalid", (int)-info);
    }
    /* K = P L[:, :r] into m (d x r, row-major, leading dimension d): row piv[k] of K is row k of L */
    for (int64_t k = 0; k < d; k++)
        for (int64_t j = 0; j < r; j++) w->m[(piv[k] - 1) * d + j] = k >= j ? w->a[j * d + k] : 0.0;
    free(piv);
    *rank = r;
    return sqrt_trace_of_factor(s2, w, r, tr, clamped, err);
}

/* One attempt on the given covariances; info gets the route and terms. */
static int fd_once(const kb_gstats *a, const double *s1, const double *s2, const kb_gstats *b, kb_fd_method method,
                   fd_work *w, double *fd, kb_fd_info *info, kb_err *err) {
    int64_t d = a->dim;
    double mean = 0.0, t1 = 0.0, t2 = 0.0, tr = 0.0;
    for (int64_t i = 0; i < d; i++) {
        double diff = a->mu[i] - b->mu[i];
        mean += diff * diff;
        t1 += s1[i * d + i], t2 += s2[i * d + i];
    }
    info->clamped = 0;
    info->rank1 = d;
    int rc = 1;
    info->method = KB_FD_CHOLESKY;
    if (method == KB_FD_AUTO || method == KB_FD_CHOLESKY) rc = trace_cholesky(s1, s2, w, &tr, &info->clamped, err);
    if (rc < 0) return -1;
    if (rc == 1 && method == KB_FD_CHOLESKY)
        return kb_fail(err, "Frechet distance: sigma1 is not positive definite, the Cholesky route cannot be used "
                            "(use the auto, pivoted or eigh method)");
    if (rc == 1 && method == KB_FD_EIGH) {
        info->method = KB_FD_EIGH;
        if (trace_eigh(s1, s2, w, &tr, &info->clamped, &info->rank1, err)) return -1;
    } else if (rc == 1) { /* pivoted, or auto with a singular sigma1 */
        info->method = KB_FD_PIVOTED;
        if (trace_pivoted(s1, s2, w, &tr, &info->clamped, &info->rank1, err)) return -1;
    }
    info->mean_term = mean, info->trace1 = t1, info->trace2 = t2, info->trace_sqrt = tr;
    *fd = mean + t1 + t2 - 2.0 * tr;
    return 0;
}

/* Copies of both covariances with eps added to the diagonals (scipy's
 * fallback adds 1e-6; the caller passes it in the statistics' scale). */
static int fd_retry_eps(const kb_gstats *a, const kb_gstats *b, double eps, kb_fd_method method, fd_work *w,
                        double *fd, kb_fd_info *info, kb_err *err) {
    int64_t d = a->dim;
    size_t dd = (size_t)(d * d) * sizeof(double);
    double *s1 = kb_alloc_huge(dd), *s2 = kb_alloc_huge(dd);
    int rc = -1;
    if (!s1 || !s2) kb_fail(err, "Frechet distance: out of memory");
    else {
        memcpy(s1, a->sigma, dd), memcpy(s2, b->sigma, dd);
        for (int64_t i = 0; i < d; i++) s1[i * d + i] += eps, s2[i * d + i] += eps;
        rc = fd_once(a, s1, s2, b, method, w, fd, info, err);
    }
    free(s1);
    free(s2);
    return rc;
}

/* The even power-of-two exponent k that brings statistics of extreme scale
 * near 1, or 0 for any ordinary ones. Covariances of scale 2^e make products
 * of scale 2^2e on the way (S2 X, X^T S2 X), which overflow double beyond
 * e ~ 511 (LAPACK then fails on infinities) and underflow to zero below
 * e ~ -511 (a wrong FD of 0, silently). FD is homogeneous of degree 2 in the
 * features and scaling by a power of two is exact, so the FD of the scaled
 * statistics times 2^-k is the same number. The mean term counts with the
 * scale of |mu1 - mu2|^2 (halves first: the difference itself may overflow). */
static int fd_scale_exponent(const kb_gstats *a, const kb_gstats *b) {
    int64_t d = a->dim;
    double maxdiag = 0.0, maxdiff = 0.0;
    for (int64_t i = 0; i < d; i++) {
        maxdiag = fmax(maxdiag, fmax(a->sigma[i * d + i], b->sigma[i * d + i]));
        maxdiff = fmax(maxdiff, fabs(0.5 * a->mu[i] - 0.5 * b->mu[i]));
    }
    int e = INT_MIN;
    if (maxdiag > 0.0) e = ilogb(maxdiag);
    if (maxdiff > 0.0 && 2 * (ilogb(maxdiff) + 1) > e) e = 2 * (ilogb(maxdiff) + 1);
    if (e == INT_MIN || (e >= -256 && e <= 256)) return 0;
    return -(e - (e & 1)); /* even, so that the means scale by the exact 2^(k/2) */
}

/* Copies of a and b scaled by 2^(k/2) (means) and 2^k (covariances). */
static int scaled_copies(const kb_gstats *a, const kb_gstats *b, int k, kb_gstats *sa, kb_gstats *sb, kb_err *err) {
    int64_t d = a->dim;
    memset(sa, 0, sizeof *sa), memset(sb, 0, sizeof *sb);
    if (kb_gstats_alloc(sa, d, err) || kb_gstats_alloc(sb, d, err))
        return kb_fail_wrap(err, "Frechet distance: scaled copies of %lld-d statistics", (long long)d);
    sa->count = a->count, sb->count = b->count;
    for (int64_t i = 0; i < d; i++) sa->mu[i] = ldexp(a->mu[i], k / 2), sb->mu[i] = ldexp(b->mu[i], k / 2);
    for (int64_t i = 0; i < d * d; i++) sa->sigma[i] = ldexp(a->sigma[i], k), sb->sigma[i] = ldexp(b->sigma[i], k);
    return 0;
}

/* The FD with the eps retry; a and b already checked and in range. */
static int fd_checked(const kb_gstats *a, const kb_gstats *b, int k, kb_fd_method method, double *fd,
                      kb_fd_info *info, kb_err *err) {
    fd_work w;
    if (work_alloc(&w, a->dim, err)) return -1;
    int rc = fd_once(a, a->sigma, b->sigma, b, method, &w, fd, info, err);
    if (!rc && !isfinite(*fd)) {
        info->eps_retry = 1;
        rc = fd_retry_eps(a, b, ldexp(1e-6, k), method, &w, fd, info, err);
        if (!rc && !isfinite(*fd)) rc = kb_fail(err, "Frechet distance is not finite even with 1e-6 added to the diagonals");
    }
    work_free(&w);
    return rc;
}

int kb_frechet_distance(const kb_gstats *a, const kb_gstats *b, kb_fd_method method, double *fd, kb_fd_info *info,
                        kb_err *err) {
    kb_fd_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    if (a->dim != b->dim)
        return kb_fail(err, "Frechet distance: feature dimensions differ (%lld vs %lld): statistics from different "
                            "feature extractors or layers cannot be compared",
                       (long long)a->dim, (long long)b->dim);
    double t0 = kb_now(); /* the checks are part of what a caller waits for */
    if (kb_gstats_check(a, "Frechet distance: first statistics", err) ||
        kb_gstats_check(b, "Frechet distance: second statistics", err))
        return -1;
    int k = fd_scale_exponent(a, b), rc;
    if (k == 0) rc = fd_checked(a, b, 0, method, fd, info, err);
    else {
        kb_gstats sa, sb;
        rc = scaled_copies(a, b, k, &sa, &sb, err);
        if (rc == 0) rc = fd_checked(&sa, &sb, k, method, fd, info, err);
        kb_gstats_free(&sa), kb_gstats_free(&sb);
        if (rc == 0) {
            *fd = ldexp(*fd, -k);
            info->mean_term = ldexp(info->mean_term, -k), info->trace1 = ldexp(info->trace1, -k);
            info->trace2 = ldexp(info->trace2, -k), info->trace_sqrt = ldexp(info->trace_sqrt, -k);
            /* finite while scaled, the distance itself may pass double's range (means 1e200 apart):
             * unscaled it would have been infinite and failed, so it fails here too (never inf) */
            if (!isfinite(*fd))
                rc = kb_fail(err, "Frechet distance: beyond double's range (statistics of scale 2^%d)", -k);
        }
    }
    info->seconds = kb_now() - t0;
    return rc;
}
