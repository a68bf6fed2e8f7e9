/* Fréchet distance timing (not a test): 2048-d statistics from synthetic
 * Inception-like features (ReLU of correlated Gaussians, n = 4000, full rank),
 * each route (auto/cholesky, eigh) with 1 and 2 OpenBLAS threads; then
 * statistics of d/2 images (singular: auto takes the pivoted route) against
 * eigh on 2 threads. Prints the best and median of `reps` runs (at most 3 for
 * the singular case).
 *   bench_fid [dim] [reps]      (defaults 2048, 5) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "metrics/fid.h"

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
    kb_err err = {{0}};
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

int main(int argc, char **argv) {
    int64_t d = argc > 1 ? atoll(argv[1]) : 2048, n = 2 * d > 4000 ? 2 * d : 4000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (d < 2 || reps < 1 || reps > 64) return fprintf(stderr, "usage: bench_fid [dim] [reps <= 64]\n"), 2;
    printf("OpenBLAS kernels: %s%s\n", openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? " (set by $OPENBLAS_CORETYPE)" : " (OpenBLAS's choice for this CPU)");
    kb_err err = {{0}};
    kb_gstats a, b;
    float *x1 = features(n, d, 0.1, 1), *x2 = features(n, d, 0.12, 2);
    if (kb_gstats_compute(x1, n, d, "x1", &a, &err) || kb_gstats_compute(x2, n, d, "x2", &b, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    free(x1), free(x2);
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
