/* Gaussian statistics of feature sets, and numpy's RandomState. */
#include "metrics/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "util/bigalloc.h"

/* Rows per dsyrk call: the centred block is KB_COV_BLOCK x dim doubles
 * (16 MiB at dim 2048), big enough for BLAS-3 speed. */
#define KB_COV_BLOCK 1024

void kb_features_free(kb_features *f) {
    free(f->pool);
    free(f->spatial);
    free(f->logits);
    memset(f, 0, sizeof *f);
}

int kb_features_check(const float *x, int64_t n, int64_t dim, const char *what, kb_err *err) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < dim; j++)
            if (!isfinite(x[i * dim + j]))
                return kb_fail(err, "%s: feature [%lld, %lld] of [%lld, %lld] is %s (NaN or infinite features "
                                    "cannot be scored)",
                               what, (long long)i, (long long)j, (long long)n, (long long)dim,
                               isnan(x[i * dim + j]) ? "NaN" : "infinite");
    return 0;
}

int kb_gstats_alloc(kb_gstats *s, int64_t dim, kb_err *err) {
    memset(s, 0, sizeof *s);
    if (dim < 1 || dim > (1 << 16)) return kb_fail(err, "statistics: dimension %lld out of range [1, 65536]", (long long)dim);
    s->dim = dim;
    s->mu = calloc((size_t)dim, sizeof(double));
    /* on huge pages: the Frechet distance's checks and copies walk it in
     * tiles, a TLB miss per row and tile on 4 KiB pages (10-15 ms per
     * 2048-d matrix when it is not in cache, against 4 ms) */
    size_t bytes = (size_t)(dim * dim) * sizeof(double);
    s->sigma = kb_alloc_huge(bytes);
    if (s->sigma) memset(s->sigma, 0, bytes);
    if (!s->mu || !s->sigma) {
        kb_gstats_free(s);
        return kb_fail(err, "statistics: out of memory for a %lldx%lld covariance", (long long)dim, (long long)dim);
    }
    return 0;
}

void kb_gstats_free(kb_gstats *s) {
    free(s->mu);
    free(s->sigma);
    memset(s, 0, sizeof *s);
}

/* Column means in double, rows added in order (deterministic). */
static void column_means(const float *x, int64_t n, int64_t dim, double *mu) {
    memset(mu, 0, (size_t)dim * sizeof *mu);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < dim; j++) mu[j] += x[i * dim + j];
    for (int64_t j = 0; j < dim; j++) mu[j] /= (double)n;
}

/* sigma's lower triangle += (X_b - mu)^T (X_b - mu), block by block. */
static void accumulate_cov(const float *x, int64_t n, int64_t dim, const double *mu, double *buf, double *sigma) {
    for (int64_t r0 = 0; r0 < n; r0 += KB_COV_BLOCK) {
        int64_t rows = n - r0 < KB_COV_BLOCK ? n - r0 : KB_COV_BLOCK;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < dim; j++) buf[i * dim + j] = (double)x[(r0 + i) * dim + j] - mu[j];
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (int)dim, (int)rows, 1.0, buf, (int)dim, 1.0, sigma,
                    (int)dim);
    }
}

int kb_gstats_compute(const float *x, int64_t n, int64_t dim, const char *what, kb_gstats *out, kb_err *err) {
    memset(out, 0, sizeof *out);
    if (n < 2)
        return kb_fail(err, "%s: a covariance needs at least 2 images, got %lld", what, (long long)n);
    if (kb_features_check(x, n, dim, what, err)) return -1;
    if (kb_gstats_alloc(out, dim, err)) return kb_fail_wrap(err, "%s", what);
    int64_t block = n < KB_COV_BLOCK ? n : KB_COV_BLOCK;
    double *buf = malloc((size_t)(block * dim) * sizeof(double));
    if (!buf) {
        kb_gstats_free(out);
        return kb_fail(err, "%s: out of memory for the covariance", what);
    }
    out->count = n;
    column_means(x, n, dim, out->mu);
    accumulate_cov(x, n, dim, out->mu, buf, out->sigma);
    free(buf);
    double scale = 1.0 / (double)(n - 1);
    for (int64_t i = 0; i < dim; i++)
        for (int64_t j = 0; j <= i; j++) {
            double v = out->sigma[i * dim + j] * scale;
            out->sigma[i * dim + j] = v;
            out->sigma[j * dim + i] = v;
        }
    return 0;
}

/* The first non-finite or asymmetric entry of the strict lower triangle, in
 * row-major order, as an error (the message names it). */
static int report_asymmetry(const kb_gstats *s, double maxdiag, const char *what, kb_err *err) {
    int64_t d = s->dim;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < i; j++) {
            double a = s->sigma[i * d + j], b = s->sigma[j * d + i];
            if (!isfinite(a) || !isfinite(b))
                return kb_fail(err, "%s: sigma[%lld, %lld] is not finite", what, (long long)i, (long long)j);
            if (fabs(a - b) > 1e-6 * maxdiag)
                return kb_fail(err, "%s: sigma is not symmetric (sigma[%lld, %lld] = %g, sigma[%lld, %lld] = %g)", what,
                               (long long)i, (long long)j, a, (long long)j, (long long)i, b);
        }
    return 0;
}

/* 1 when some strict-lower entry or its mirror is not finite or they differ
 * by more than tol. Walks 64 x 64 tiles so that the mirrored reads stay in
 * cache: the plain row-major walk reads sigma[j, i] a column at a time, which
 * took 30-90 ms for the two 2048-d matrices of a Frechet distance (a cache
 * and TLB miss per entry). */
static int any_asymmetry(const double *sg, int64_t d, double tol) {
    enum { TILE = 64 };
    int64_t tiles = (d + TILE - 1) / TILE;
    int bad = 0;
    /* tile rows in turn across the threads (later rows hold more tiles) */
#pragma omp parallel for schedule(static, 1) reduction(| : bad)
    for (int64_t t = 0; t < tiles; t++) {
        int64_t i0 = t * TILE, i1 = i0 + TILE < d ? i0 + TILE : d;
        for (int64_t j0 = 0; j0 <= i0; j0 += TILE)
            for (int64_t i = i0; i < i1; i++) {
                int64_t j1 = j0 + TILE < i ? j0 + TILE : i;
                for (int64_t j = j0; j < j1; j++) {
                    double a = sg[i * d + j], b = sg[j * d + i];
                    /* written so that NaN and Inf make it true: no branch per entry */
                    bad |= !(fabs(a - b) <= tol) | !isfinite(a) | !isfinite(b);
                }
            }
    }
    return bad;
}

int kb_gstats_check(const kb_gstats *s, const char *what, kb_err *err) {
    int64_t d = s->dim;
    double maxdiag = 0.0;
    for (int64_t i = 0; i < d; i++) {
        if (!isfinite(s->mu[i])) return kb_fail(err, "%s: mu[%lld] is not finite", what, (long long)i);
        double v = s->sigma[i * d + i];
        if (!(v >= 0.0) || !isfinite(v))
            return kb_fail(err, "%s: sigma[%lld, %lld] = %g: a covariance needs a finite, non-negative diagonal", what,
                           (long long)i, (long long)i, v);
        if (v > maxdiag) maxdiag = v;
    }
    /* the fast walk says whether; the plain one finds the entry to name */
    return any_asymmetry(s->sigma, d, 1e-6 * maxdiag) ? report_asymmetry(s, maxdiag, what, err) : 0;
}

/* ---------------------------------------------------- numpy RandomState */

#define MT_N 624
#define MT_M 397

void kb_np_rng_seed(kb_np_rng *r, uint32_t seed) {
    r->key[0] = seed;
    for (int i = 1; i < MT_N; i++) r->key[i] = 1812433253u * (r->key[i - 1] ^ (r->key[i - 1] >> 30)) + (uint32_t)i;
    r->pos = MT_N;
}

static void mt_refill(kb_np_rng *r) {
    static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
    uint32_t *k = r->key, y;
    int i;
    for (i = 0; i < MT_N - MT_M; i++) {
        y = (k[i] & 0x80000000u) | (k[i + 1] & 0x7fffffffu);
        k[i] = k[i + MT_M] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; i < MT_N - 1; i++) {
        y = (k[i] & 0x80000000u) | (k[i + 1] & 0x7fffffffu);
        k[i] = k[i + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 1u];
    }
    y = (k[MT_N - 1] & 0x80000000u) | (k[0] & 0x7fffffffu);
    k[MT_N - 1] = k[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1u];
    r->pos = 0;
}

uint32_t kb_np_rng_u32(kb_np_rng *r) {
    if (r->pos >= MT_N) mt_refill(r);
    uint32_t y = r->key[r->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* numpy's next_uint64 for MT19937: two draws, high word first. */
static uint64_t rng_u64(kb_np_rng *r) {
    uint64_t hi = kb_np_rng_u32(r);
    return hi << 32 | kb_np_rng_u32(r);
}

uint64_t kb_np_rng_interval(kb_np_rng *r, uint64_t max) {
    if (max == 0) return 0;
    uint64_t mask = max, v;
    mask |= mask >> 1, mask |= mask >> 2, mask |= mask >> 4;
    mask |= mask >> 8, mask |= mask >> 16, mask |= mask >> 32;
    if (max <= 0xffffffffu) {
        while ((v = (kb_np_rng_u32(r) & mask)) > max) {
        }
    } else {
        while ((v = (rng_u64(r) & mask)) > max) {
        }
    }
    return v;
}

void kb_np_permutation(kb_np_rng *r, int64_t n, int64_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = n - 1; i >= 1; i--) { /* numpy's _shuffle_raw */
        int64_t j = (int64_t)kb_np_rng_interval(r, (uint64_t)i);
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

void kb_np_choice(kb_np_rng *r, int64_t n, int64_t m, int64_t *work, int64_t *out) {
    kb_np_permutation(r, n, work);
    memcpy(out, work, (size_t)m * sizeof *out);
}
