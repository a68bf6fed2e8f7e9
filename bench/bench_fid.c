/* Fréchet distance timing (not a test): 2048-d statistics from synthetic
 * Inception-like features (ReLU of correlated Gaussians, n = 4000, full rank),
 * each route (auto/cholesky, eigh) with 1 and 2 OpenBLAS threads; then
 * statistics of d/2 images (singular: auto takes the pivoted route) against
 * eigh on 2 threads. Prints the best and median of `reps` runs (at most 3 for
 * the singular case).
 * With --parts, instead: the Cholesky route's steps timed one by one on the
 * full-rank statistics (2 threads), the tridiagonal reduction through a copy
 * of LAPACK's blocked dsytrd loop (lower; dlatrd's panel, then dsyr2k) with
 * timers around its matrix-vector products, panel products and updates,
 * beside LAPACK's own dsytrd: where the time goes, and what each part's
 * throughput is.
 *   bench_fid [dim] [reps] [--parts]      (defaults 2048, 5) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "metrics/congruence.h"
#include "metrics/fid.h"
#include "util/npy.h"
#include "util/progress.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Features: max(z M + shift, 0) with z ~ N(0, 1), a fixed pseudo-random M. */
static float *features(int64_t n, int64_t d, double shift, uint32_t seed) {
    float *z = malloc((size_t)(n * d) * sizeof(float)), *m = malloc((size_t)(d * d) * sizeof(float));
    float *x = malloc((size_t)(n * d) * sizeof(float));
    srand(seed);
    for (int64_t i = 0; i < n * d; i++) z[i] = (float)((rand() / (double)RAND_MAX - 0.5) * 3.4);
    for (int64_t i = 0; i < d * d; i++) m[i] = (float)((rand() / (double)RAND_MAX - 0.5) * 0.1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)d, 1.0f, z, (int)d, m, (int)d, 0.0f, x,
                (int)d);
    for (int64_t i = 0; i < n * d; i++) x[i] = x[i] + (float)shift > 0 ? x[i] + (float)shift : 0.0f;
    free(z), free(m);
    return x;
}

static void run(const char *what, const kb_gstats *a, const kb_gstats *b, kb_fd_method m, int threads, int reps) {
    double t[64], fd = 0;
    kb_fd_info info;
    kb_err err = {0};
    openblas_set_num_threads(threads);
    for (int r = 0; r < reps; r++) {
        if (kb_frechet_distance(a, b, m, &fd, &info, &err)) {
            printf("%s: error: %s\n", what, err.msg);
            return;
        }
        t[r] = info.seconds;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp);
    printf("FD %-9s %lld-d, %d thread%s: best %.3f s, median %.3f s (route %s, FD %.9g)\n", what, (long long)a->dim,
           threads, threads > 1 ? "s" : " ", t[0], t[reps / 2], kb_fd_method_name(info.method), fd);
    fflush(stdout);
}

/* ---- --parts ---- */

typedef struct {
    double symv, panel, syr2k, tail;
} trd_times;

void dsytd2_(const char *uplo, const int *n, double *a, const int *lda, double *d, double *e, double *tau, int *info);

/* One panel of nb columns of the trailing n x n matrix a (dlatrd, lower):
 * the Householder vectors stay in a, W (n x nb, leading dimension ldw) gets
 * the products for the rank-2nb update. */
static void panel(int n, int nb, double *a, int lda, double *e, double *tau, double *w, int ldw, trd_times *tm) {
    for (int i = 0; i < nb; i++) {
        double t0 = kb_now(), *col = a + i + (size_t)i * lda;
        if (i > 0) { /* column i updated with the panel so far */
            cblas_dgemv(CblasColMajor, CblasNoTrans, n - i, i, -1.0, a + i, lda, w + i, ldw, 1.0, col, 1);
            cblas_dgemv(CblasColMajor, CblasNoTrans, n - i, i, -1.0, w + i, ldw, a + i, lda, 1.0, col, 1);
        }
        int m = n - i - 1;
        double *v = col + 1, *wi = w + (i + 1) + (size_t)i * ldw;
        LAPACKE_dlarfg_work(m, v, m > 1 ? v + 1 : v, 1, tau + i);
        e[i] = *v, *v = 1.0;
        double t1 = kb_now();
        cblas_dsymv(CblasColMajor, CblasLower, m, 1.0, a + (i + 1) + (size_t)(i + 1) * lda, lda, v, 1, 0.0, wi, 1);
        double t2 = kb_now(), *tmp = w + (size_t)i * ldw; /* W's column i above the diagonal: scratch */
        if (i > 0) {
            cblas_dgemv(CblasColMajor, CblasTrans, m, i, 1.0, w + (i + 1), ldw, v, 1, 0.0, tmp, 1);
            cblas_dgemv(CblasColMajor, CblasNoTrans, m, i, -1.0, a + (i + 1), lda, tmp, 1, 1.0, wi, 1);
            cblas_dgemv(CblasColMajor, CblasTrans, m, i, 1.0, a + (i + 1), lda, v, 1, 0.0, tmp, 1);
            cblas_dgemv(CblasColMajor, CblasNoTrans, m, i, -1.0, w + (i + 1), ldw, tmp, 1, 1.0, wi, 1);
        }
        cblas_dscal(m, tau[i], wi, 1);
        cblas_daxpy(m, -0.5 * tau[i] * cblas_ddot(m, wi, 1, v, 1), v, 1, wi, 1);
        tm->symv += t2 - t1, tm->panel += (t1 - t0) + (kb_now() - t2);
    }
}

/* The blocked reduction to tridiagonal form d, e (lower), panels of nb. */
static void tridiagonal(int n, int nb, double *a, double *d, double *e, double *tau, double *w, trd_times *tm) {
    int i = 0;
    for (; i < n - nb - 1; i += nb) {
        double *ai = a + i + (size_t)i * n;
        panel(n - i, nb, ai, n, e + i, tau + i, w, n, tm);
        double t0 = kb_now();
        cblas_dsyr2k(CblasColMajor, CblasLower, CblasNoTrans, n - i - nb, nb, -1.0, ai + nb, n, w + nb, n, 1.0,
                     ai + nb + (size_t)nb * n, n);
        tm->syr2k += kb_now() - t0;
        for (int j = i; j < i + nb; j++) a[j + 1 + (size_t)j * n] = e[j], d[j] = a[j + (size_t)j * n];
    }
    double t0 = kb_now();
    int m = n - i, info;
    dsytd2_("L", &m, a + i + (size_t)i * n, &n, d + i, e + i, tau + i, &info);
    tm->tail += kb_now() - t0;
}

static void parts(const kb_gstats *a, const kb_gstats *b, int reps) {
    int n = (int)a->dim, nb = 32;
    size_t dd = (size_t)n * n;
    double *l = malloc(dd * 8), *m = malloc(dd * 8), *keep = malloc(dd * 8);
    double *c = malloc((size_t)kb_congruence_work_size(n) * 8 + 8), *w = malloc((size_t)n * nb * 8);
    double *d = malloc((size_t)n * 8), *e = malloc((size_t)n * 8), *tau = malloc((size_t)n * 8);
    kb_err err = {0};
    openblas_set_num_threads(2);
    printf("Cholesky route, one step at a time (%d-d, 2 threads, the full-rank statistics above):\n", n);
    for (int r = 0; r < reps; r++) {
        double t0 = kb_now();
        memcpy(l, a->sigma, dd * 8); /* symmetric: the same in column-major order */
        LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', n, l, n);
        double t1 = kb_now();
        memcpy(m, b->sigma, dd * 8);
        double t2 = kb_now();
        if (kb_congruence_lower(n, m, l, n, c, &err)) return (void)printf("error: %s\n", err.msg);
        double t3 = kb_now();
        memcpy(keep, m, dd * 8);
        trd_times tm = {0};
        tridiagonal(n, nb, m, d, e, tau, w, &tm);
        double t4 = kb_now();
        LAPACKE_dsterf_work(n, d, e);
        double t5 = kb_now(), q;
        LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'L', n, keep, n, d, e, tau, &q, -1);
        double *work = malloc((size_t)q * 8), t6 = kb_now();
        LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'L', n, keep, n, d, e, tau, work, (lapack_int)q);
        double t7 = kb_now();
        free(work);
        double nn = n, sym_bytes = nn * nn * nn / 6 * 8, upd_flops = 2.0 / 3 * nn * nn * nn;
        printf("  dpotrf %.3f s | L^T S2 L %.3f s (%.0f GFLOP/s) | dsytrd copy %.3f s: symv %.3f s (%.0f GB/s), "
               "panel products %.3f s, dsyr2k %.3f s (%.0f GFLOP/s), dsytd2 %.3f s | LAPACK dsytrd %.3f s | "
               "dsterf %.3f s\n", t1 - t0, t3 - t2, nn * nn * nn / (t3 - t2) / 1e9, t4 - t3, tm.symv,
               sym_bytes / tm.symv / 1e9, tm.panel, tm.syr2k, upd_flops / tm.syr2k / 1e9, tm.tail, t7 - t6, t5 - t4);
        fflush(stdout);
    }
    free(l), free(m), free(keep), free(c), free(d), free(e), free(tau), free(w);
}

/* $KB_BENCH_FID_STATS=PATH: the two full-rank statistics as an npz (mu1,
 * sigma1, mu2, sigma2), so that bench_fid.sh times the peer on the same
 * matrices. */
static int save_stats(const kb_gstats *a, const kb_gstats *b, kb_err *err) {
    const char *path = getenv("KB_BENCH_FID_STATS");
    if (!path || !path[0]) return 0;
    int64_t d = a->dim, dd[2] = {d, d};
    kb_npz_entry e[4] = {{"mu1", kb_npy_view(KB_F64, 1, &d, a->mu)}, {"sigma1", kb_npy_view(KB_F64, 2, dd, a->sigma)},
                         {"mu2", kb_npy_view(KB_F64, 1, &d, b->mu)}, {"sigma2", kb_npy_view(KB_F64, 2, dd, b->sigma)}};
    return kb_npz_write(path, e, 4, err);
}

int main(int argc, char **argv) {
    int with_parts = argc > 1 && !strcmp(argv[argc - 1], "--parts");
    argc -= with_parts;
    int64_t d = argc > 1 ? atoll(argv[1]) : 2048, n = 2 * d > 4000 ? 2 * d : 4000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (d < 2 || reps < 1 || reps > 64) return fprintf(stderr, "usage: bench_fid [dim] [reps <= 64] [--parts]\n"), 2;
    printf("OpenBLAS kernels: %s%s\n", openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? " (set by $OPENBLAS_CORETYPE)" : " (OpenBLAS's choice for this CPU)");
    kb_err err = {0};
    kb_gstats a, b;
    float *x1 = features(n, d, 0.1, 1), *x2 = features(n, d, 0.12, 2);
    if (kb_gstats_compute(x1, n, d, "x1", &a, &err) || kb_gstats_compute(x2, n, d, "x2", &b, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    free(x1), free(x2);
    if (save_stats(&a, &b, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    if (with_parts) return parts(&a, &b, reps), kb_gstats_free(&a), kb_gstats_free(&b), 0;
    for (int th = 1; th <= 2; th++) {
        run("auto", &a, &b, KB_FD_AUTO, th, reps);
        run("eigh", &a, &b, KB_FD_EIGH, th, reps);
    }
    kb_gstats_free(&a), kb_gstats_free(&b);
    /* fewer images than dimensions: sigma1 singular, auto takes the pivoted route */
    int64_t few = d / 2 > 2 ? d / 2 : 2;
    x1 = features(few, d, 0.1, 3), x2 = features(few, d, 0.12, 4);
    if (kb_gstats_compute(x1, few, d, "x1", &a, &err) || kb_gstats_compute(x2, few, d, "x2", &b, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    free(x1), free(x2);
    printf("%lld images per set (singular covariances):\n", (long long)few);
    run("auto", &a, &b, KB_FD_AUTO, 2, reps < 3 ? reps : 3);
    run("eigh", &a, &b, KB_FD_EIGH, 2, reps < 3 ? reps : 3);
    kb_gstats_free(&a), kb_gstats_free(&b);
    return 0;
}
