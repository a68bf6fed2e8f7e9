/* Fréchet distance through symmetric eigenvalue problems (see fid.h). */
#include "metrics/fid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "util/bigalloc.h"
#include "util/progress.h"

const char *kb_fd_method_name(kb_fd_method m) {
    switch (m) {
    case KB_FD_EIGH: return "eigh";
    case KB_FD_CHOLESKY: return "cholesky";
    default: return "auto";
    }
}

/* Scratch of three d x d doubles (on huge pages: their first touch is a
 * measurable part of the run otherwise, see util/bigalloc.h). */
typedef struct {
    int64_t d;
    double *a, *t, *m, *w;
} fd_work;

static void work_free(fd_work *w) {
    free(w->a);
    free(w->t);
    free(w->m);
    free(w->w);
}

static int work_alloc(fd_work *w, int64_t d, kb_err *err) {
    size_t dd = (size_t)(d * d) * sizeof(double);
    w->d = d;
    w->a = kb_alloc_huge(dd), w->t = kb_alloc_huge(dd), w->m = kb_alloc_huge(dd);
    w->w = malloc((size_t)d * sizeof(double));
    if (w->a && w->t && w->m && w->w) return 0;
    work_free(w);
    return kb_fail(err, "Frechet distance: out of memory for %lldx%lld matrices", (long long)d, (long long)d);
}

/* sum sqrt(max(l, 0)) over the eigenvalues of the symmetric r x r matrix m,
 * of which only the lower triangle in column-major order is read (the upper
 * one in row-major order); m is destroyed. dsyevd is faster on the lower
 * triangle here (0.30 s against 0.36 s at 2048-d on 2 cores). */
static int sqrt_trace(double *m, int64_t r, double *w, double *out, int *clamped, kb_err *err) {
    *out = 0.0;
    if (r == 0) return 0;
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'N', 'L', (lapack_int)r, m, (lapack_int)r, w);
    if (info != 0) return kb_fail(err, "Frechet distance: LAPACK dsyevd failed (info %d) on a %lldx%lld matrix", (int)info, (long long)r, (long long)r);
    for (int64_t i = 0; i < r; i++) {
        if (w[i] > 0) *out += sqrt(w[i]);
        else if (w[i] < 0) (*clamped)++;
    }
    return 0;
}

/* The definition: S1 = V diag(l) V^T, Y = V diag(sqrt(max(l,0))), eigenvalues
 * of Y^T S2 Y. Columns of Y with l <= 0 are exactly zero, so they are dropped
 * (their rows and columns of Y^T S2 Y are zero: eigenvalue 0 either way). */
static int trace_eigh(const double *s1, const double *s2, fd_work *w, double *tr, int *clamped, kb_err *err) {
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
    if (r == 0) return *tr = 0.0, 0;
    /* T = S2 Y (d x r), M = Y^T T (r x r) */
    cblas_dsymm(CblasRowMajor, CblasLeft, CblasLower, (int)d, (int)r, 1.0, s2, (int)d, w->m, (int)d, 0.0, w->t, (int)r);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)r, (int)d, 1.0, w->m, (int)d, w->t, (int)r, 0.0,
                w->a, (int)r);
    return sqrt_trace(w->a, r, w->w, tr, clamped, err);
}

/* Block width of the triangular products below: dgemm runs near its peak
 * from about 128 columns, and the zeros multiplied in the diagonal blocks
 * cost d * FD_BLOCK^2 flops, a few percent of the d^3 total. */
enum { FD_BLOCK = 128 };

/* T = S2 L for lower-triangular L, by block columns: T[:, J] = S2[:, J:] L[J:, J]
 * (rows above the block's diagonal are zero in L). All column-major, d x d. */
static void mul_sym_lower(int64_t d, const double *s2, const double *l, double *t) {
    for (int64_t j = 0; j < d; j += FD_BLOCK) {
        int64_t nb = d - j < FD_BLOCK ? d - j : FD_BLOCK;
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)d, (int)nb, (int)(d - j), 1.0, s2 + j * d, (int)d,
                    l + j * d + j, (int)d, 0.0, t + j * d, (int)d);
    }
}

/* The lower triangle (and the diagonal blocks) of M = L^T T, which is
 * symmetric, by block rows: M[I, :I+mb] = L[I:, I]^T T[I:, :I+mb]. A third
 * of the flops of the full product, and dsyevd reads only that triangle. */
static void mul_lower_t_lower_half(int64_t d, const double *l, const double *t, double *m) {
    for (int64_t i = 0; i < d; i += FD_BLOCK) {
        int64_t mb = d - i < FD_BLOCK ? d - i : FD_BLOCK;
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)mb, (int)(i + mb), (int)(d - i), 1.0, l + i * d + i,
                    (int)d, t + i, (int)d, 0.0, m + i, (int)d);
    }
}

/* S1 = L L^T, eigenvalues of L^T S2 L. Returns 1 (no error) when S1 is not
 * positive definite, so that the caller falls back to trace_eigh. The
 * symmetric inputs are the same matrices in row- and column-major order, so
 * everything here is column-major with no transposed copies. */
static int trace_cholesky(const double *s1, const double *s2, fd_work *w, double *tr, int *clamped, kb_err *err) {
    int64_t d = w->d;
    memcpy(w->a, s1, (size_t)(d * d) * sizeof(double));
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)d, w->a, (lapack_int)d);
    if (info > 0) return 1;
    if (info < 0) return kb_fail(err, "Frechet distance: LAPACK dpotrf argument %d invalid", (int)-info);
    for (int64_t j = 1; j < d; j++) memset(w->a + j * d, 0, (size_t)j * sizeof(double)); /* dpotrf leaves the upper part as it was */
    mul_sym_lower(d, s2, w->a, w->t);
    mul_lower_t_lower_half(d, w->a, w->t, w->m);
    return sqrt_trace(w->m, d, w->w, tr, clamped, err);
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
    int rc = 1;
    info->method = KB_FD_CHOLESKY;
    if (method != KB_FD_EIGH) rc = trace_cholesky(s1, s2, w, &tr, &info->clamped, err);
    if (rc < 0) return -1;
    if (rc == 1 && method == KB_FD_CHOLESKY)
        return kb_fail(err, "Frechet distance: sigma1 is not positive definite, the Cholesky route cannot be used "
                            "(use the eigh or auto method)");
    if (rc == 1) {
        info->method = KB_FD_EIGH;
        if (trace_eigh(s1, s2, w, &tr, &info->clamped, err)) return -1;
    }
    info->mean_term = mean, info->trace1 = t1, info->trace2 = t2, info->trace_sqrt = tr;
    *fd = mean + t1 + t2 - 2.0 * tr;
    return 0;
}

/* Copies of both covariances with eps added to the diagonals (scipy fallback). */
static int fd_retry_eps(const kb_gstats *a, const kb_gstats *b, kb_fd_method method, fd_work *w, double *fd,
                        kb_fd_info *info, kb_err *err) {
    int64_t d = a->dim;
    size_t dd = (size_t)(d * d) * sizeof(double);
    double *s1 = kb_alloc_huge(dd), *s2 = kb_alloc_huge(dd);
    int rc = -1;
    if (!s1 || !s2) kb_fail(err, "Frechet distance: out of memory");
    else {
        memcpy(s1, a->sigma, dd), memcpy(s2, b->sigma, dd);
        for (int64_t i = 0; i < d; i++) s1[i * d + i] += 1e-6, s2[i * d + i] += 1e-6;
        rc = fd_once(a, s1, s2, b, method, w, fd, info, err);
    }
    free(s1);
    free(s2);
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
    if (kb_gstats_check(a, "Frechet distance: first statistics", err) ||
        kb_gstats_check(b, "Frechet distance: second statistics", err))
        return -1;
    double t0 = kb_now();
    fd_work w;
    if (work_alloc(&w, a->dim, err)) return -1;
    int rc = fd_once(a, a->sigma, b->sigma, b, method, &w, fd, info, err);
    if (!rc && !isfinite(*fd)) {
        info->eps_retry = 1;
        rc = fd_retry_eps(a, b, method, &w, fd, info, err);
        if (!rc && !isfinite(*fd)) rc = kb_fail(err, "Frechet distance is not finite even with 1e-6 added to the diagonals");
    }
    work_free(&w);
    info->seconds = kb_now() - t0;
    return rc;
}
