/* Kernel Inception Distance, torch-fidelity's estimator (see kid.h). */
#include "metrics/kid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "metrics/stats.h"

void kb_kid_opts_default(kb_kid_opts *o) {
    memset(o, 0, sizeof *o);
    o->subsets = 100;
    o->subset_size = 1000;
    o->degree = 3;
    o->gamma = 0.0;
    o->coef0 = 1.0;
    o->seed = 2020;
}

static double kernel(double g, double gamma, double coef0, int degree) {
    double b = g * gamma + coef0, v = 1.0;
    for (int i = 0; i < degree; i++) v *= b;
    return v;
}

/* Sum over i != j of k(G_ij) for a Gram matrix whose lower triangle is set. */
static double offdiag_sum(const double *g, int64_t m, double gamma, double coef0, int degree) {
    double s = 0.0;
    for (int64_t i = 1; i < m; i++)
        for (int64_t j = 0; j < i; j++) s += kernel(g[i * m + j], gamma, coef0, degree);
    return 2.0 * s;
}

int kb_kid_mmd2(const double *x, const double *y, int64_t m, int64_t dim, const kb_kid_opts *o, double *out,
                kb_err *err) {
    if (m < 2) return kb_fail(err, "KID: subsets need at least 2 images each, got %lld", (long long)m);
    double *g = malloc((size_t)(m * m) * sizeof(double));
    if (!g) return kb_fail(err, "KID: out of memory for a %lld^2 kernel matrix", (long long)m);
    double gamma = o->gamma > 0 ? o->gamma : 1.0 / (double)dim, c0 = o->coef0;
    int deg = o->degree;
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)m, (int)dim, 1.0, x, (int)dim, 0.0, g, (int)m);
    double kxx = offdiag_sum(g, m, gamma, c0, deg);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)m, (int)dim, 1.0, y, (int)dim, 0.0, g, (int)m);
    double kyy = offdiag_sum(g, m, gamma, c0, deg);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)m, (int)dim, 1.0, x, (int)dim, y, (int)dim, 0.0,
                g, (int)m);
    double kxy = 0.0;
    for (int64_t i = 0; i < m * m; i++) kxy += kernel(g[i], gamma, c0, deg);
    free(g);
    *out = (kxx + kyy) / ((double)m * (double)(m - 1)) - 2.0 * kxy / ((double)m * (double)m);
    return 0;
}

static void gather(const float *src, const int64_t *idx, int64_t m, int64_t dim, double *dst) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < dim; k++) dst[i * dim + k] = src[idx[i] * dim + k];
}

static int kid_check(const float *samp, int64_t ns, const float *ref, int64_t nr, int64_t dim, const kb_kid_opts *o,
                     kb_err *err) {
    if (o->subsets < 1) return kb_fail(err, "KID: the number of subsets must be >= 1");
    if (o->degree < 1) return kb_fail(err, "KID: kernel degree must be >= 1");
    if (ns < 2 || nr < 2)
        return kb_fail(err, "KID needs at least 2 images in each set, got %lld samples and %lld reference", (long long)ns,
                       (long long)nr);
    return kb_features_check(samp, ns, dim, "KID sample features", err) ||
                   kb_features_check(ref, nr, dim, "KID reference features", err)
               ? -1
               : 0;
}

int kb_kid(const float *samp, int64_t ns, const float *ref, int64_t nr, int64_t dim, const kb_kid_opts *o,
           kb_kid_result *r, kb_err *err) {
    memset(r, 0, sizeof *r);
    if (kid_check(samp, ns, ref, nr, dim, o, err)) return -1;
    int64_t m = o->subset_size > 0 ? o->subset_size : 1000;
    if (m > ns) m = ns;
    if (m > nr) m = nr;
    int64_t nmax = ns > nr ? ns : nr;
    int64_t *work = malloc((size_t)nmax * sizeof(int64_t)), *ix = malloc((size_t)m * sizeof(int64_t)),
            *iy = malloc((size_t)m * sizeof(int64_t));
    double *x = malloc((size_t)(m * dim) * sizeof(double)), *y = malloc((size_t)(m * dim) * sizeof(double));
    double *mmd = malloc((size_t)o->subsets * sizeof(double));
    int rc = (!work || !ix || !iy || !x || !y || !mmd) ? kb_fail(err, "KID: out of memory") : 0;
    kb_np_rng rng;
    kb_np_rng_seed(&rng, o->seed);
    for (int s = 0; !rc && s < o->subsets; s++) {
        kb_np_choice(&rng, ns, m, work, ix);
        kb_np_choice(&rng, nr, m, work, iy);
        gather(samp, ix, m, dim, x);
        gather(ref, iy, m, dim, y);
        rc = kb_kid_mmd2(x, y, m, dim, o, &mmd[s], err);
        if (o->progress) kb_progress_update(o->progress, o->progress->done + 1);
    }
    if (!rc) {
        double mean = 0.0, var = 0.0;
        for (int s = 0; s < o->subsets; s++) mean += mmd[s];
        mean /= o->subsets;
        for (int s = 0; s < o->subsets; s++) var += (mmd[s] - mean) * (mmd[s] - mean);
        r->mean = mean, r->std = sqrt(var / o->subsets), r->subset_size = m, r->subsets = o->subsets;
    }
    free(work), free(ix), free(iy), free(x), free(y), free(mmd);
    return rc;
}
