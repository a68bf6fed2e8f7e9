/* Metric maths against numpy/scipy/torch references (fixture: tests/ref/
 * metrics_ref.py) on synthetic features: Gaussian statistics, Fréchet
 * distance (every route), Inception Score (ADM and torch-fidelity splits),
 * precision/recall and density/coverage, KID, spectral distance, numpy's
 * RandomState; the Cholesky route's L^T S L against LAPACK's dsygst.
 * Measured errors are printed on every line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "metrics/congruence.h"
#include "metrics/fid.h"
#include "metrics/inception_score.h"
#include "metrics/kid.h"
#include "metrics/prdc.h"
#include "metrics/spectral.h"
#include "metrics/stats.h"
#include "tests/kbtest.h"
#include "util/npy.h"

static char g_dir[4096];

/* Loads key of fixture file (exits the test on failure: the fixture is broken). */
static kb_npy load(const char *file, const char *key) {
    char path[4200];
    kb_npy a;
    kb_err err = {0};
    snprintf(path, sizeof path, "%s/%s", g_dir, file);
    if (kb_npz_read(path, key, &a, &err)) {
        printf("FAIL fixture: %s\n", err.msg);
        exit(1);
    }
    return a;
}

static double scalar(const char *file, const char *key) {
    kb_npy a = load(file, key);
    double v = a.dtype == KB_F64 ? *(double *)a.data : a.dtype == KB_I64 ? (double)*(int64_t *)a.data : NAN;
    kb_npy_free(&a);
    return v;
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-300 ? fabs(b) : 1e-300); }

/* ------------------------------------------------------------------ rng */

static void test_rng(kbt_state *st) {
    kb_np_rng r;
    kb_np_rng_seed(&r, 5489);
    KBT_CHECK(st, kb_np_rng_u32(&r) == 3499211612u, "MT19937 first output for seed 5489", "wrong");
    kb_npy u = load("rng.npz", "u32");
    kb_np_rng_seed(&r, 2020);
    int ok = 1;
    for (int i = 0; i < 5; i++) ok &= kb_np_rng_u32(&r) == (uint32_t)((int64_t *)u.data)[i];
    KBT_CHECK(st, ok, "RandomState(2020) raw outputs", "differ from numpy");
    kb_npy_free(&u);
    const char *keys[4] = {"perm12345", "perm7", "choice5000", "choice3"};
    int64_t n[4] = {12345, 7, 5000, 3}, m[4] = {12345, 7, 1000, 3};
    int64_t *work = malloc(12345 * sizeof(int64_t)), *out = malloc(12345 * sizeof(int64_t));
    kb_np_rng_seed(&r, 2020); /* the fixture draws all four from one RandomState, in this order */
    for (int k = 0; k < 4; k++) {
        kb_npy ref = load("rng.npz", keys[k]);
        if (k < 2) kb_np_permutation(&r, n[k], out);
        else kb_np_choice(&r, n[k], m[k], work, out);
        int same = ref.numel == m[k] && !memcmp(out, ref.data, (size_t)m[k] * sizeof(int64_t));
        KBT_CHECK(st, same, keys[k], "differs from numpy's RandomState");
        kb_npy_free(&ref);
    }
    free(work);
    free(out);
}

/* ------------------------------------------------------------ stats/FID */

static int stats_of(const kb_npy *x, kb_gstats *g) {
    kb_err err = {0};
    int rc = kb_gstats_compute(x->data, x->shape[0], x->shape[1], "fixture", g, &err);
    if (rc) printf("     %s\n", err.msg);
    return rc;
}

static void check_stats(kbt_state *st, const char *name, const kb_gstats *g, const char *file, const char *mk,
                        const char *sk) {
    kb_npy mu = load(file, mk), sg = load(file, sk);
    double emu = 0, esg = 0, scale = 0;
    int64_t d = g->dim;
    for (int64_t i = 0; i < d; i++) scale = fmax(scale, ((double *)sg.data)[i * d + i]);
    for (int64_t i = 0; i < d; i++) emu = fmax(emu, fabs(g->mu[i] - ((double *)mu.data)[i]));
    for (int64_t i = 0; i < d * d; i++) esg = fmax(esg, fabs(g->sigma[i] - ((double *)sg.data)[i]));
    KBT_CHECK(st, emu <= 1e-12 * (1 + scale) && esg <= 1e-12 * scale, name, "mu err %.3g, sigma err %.3g (scale %.3g)",
              emu, esg, scale);
    printf("     %s: max |mu - np.mean(float64)| %.3g, max |sigma - np.cov| %.3g (max var %.3g)\n", name, emu, esg, scale);
    kb_npy_free(&mu);
    kb_npy_free(&sg);
}

/* One FD computation with `m`, compared with each of the references. */
static void fid_route(kbt_state *st, const char *file, const kb_gstats *a, const kb_gstats *b, kb_fd_method m,
                      const double *want, const double *tol, const char *const *against, int nref) {
    kb_err err = {0};
    kb_fd_info info;
    double fd = NAN;
    char name[256];
    int rc = kb_frechet_distance(a, b, m, &fd, &info, &err);
    if (rc && m == KB_FD_CHOLESKY) {
        snprintf(name, sizeof name, "%s FD cholesky refused for a singular sigma1", file);
        KBT_CHECK(st, strstr(err.msg, "not positive definite") != NULL, name, "unexpected error: %s", err.msg);
        return;
    }
    printf("     %s FD %s: %.12g (route %s, rank of sigma1 %lld of %lld, %d eigenvalues clamped, eps retry %d, %.3f s)\n",
           file, kb_fd_method_name(m), fd, kb_fd_method_name(info.method), (long long)info.rank1, (long long)a->dim,
           info.clamped, info.eps_retry, info.seconds);
    for (int k = 0; k < nref; k++) {
        snprintf(name, sizeof name, "%s FD %s vs %s", file, kb_fd_method_name(m), against[k]);
        KBT_CHECK(st, !rc && rel(fd, want[k]) <= tol[k], name, "rc %d (%s): got %.12g want %.12g rel %.3g > %.1g", rc,
                  err.msg, fd, want[k], rel(fd, want[k]), tol[k]);
        printf("       rel err %.3g vs %s (tolerance %.0e)\n", rel(fd, want[k]), against[k], tol[k]);
    }
}

/* Tolerances: 1e-6 against pytorch-fid (the requirement); 1e-7 against the
 * numpy eigh route, which is itself only that accurate on the
 * ill-conditioned case (it differs from scipy's sqrtm by 1.2e-8 there). */
static void test_fid_case(kbt_state *st, const char *file) {
    kb_npy x1 = load(file, "x1"), x2 = load(file, "x2");
    kb_gstats a, b;
    if (stats_of(&x1, &a) || stats_of(&x2, &b)) {
        KBT_CHECK(st, 0, file, "statistics failed");
        return;
    }
    check_stats(st, "stats x1 vs numpy", &a, file, "mu1", "sigma1");
    check_stats(st, "stats x2 vs numpy", &b, file, "mu2", "sigma2");
    double want[3] = {scalar(file, "fd_pytorch_fid"), scalar(file, "fd_pytorch_fid_mu64"), scalar(file, "fd_eigh")};
    double tol[3] = {1e-6, 1e-6, 1e-7};
    const char *const against[3] = {"pytorch-fid (float32 means)", "pytorch-fid (float64 means)", "numpy eigh"};
    kb_fd_method ms[4] = {KB_FD_AUTO, KB_FD_EIGH, KB_FD_CHOLESKY, KB_FD_PIVOTED};
    for (int k = 0; k < 4; k++) fid_route(st, file, &a, &b, ms[k], want, tol, against, 3);
    printf("     (arguments swapped)\n");
    fid_route(st, file, &b, &a, KB_FD_AUTO, want + 1, tol + 1, against + 1, 2);
    kb_gstats_free(&a), kb_gstats_free(&b);
    kb_npy_free(&x1), kb_npy_free(&x2);
}

static void test_fid_identical(kbt_state *st) {
    kb_npy x = load("fid_small.npz", "x1");
    kb_gstats a;
    kb_err err = {0};
    double fd = NAN;
    stats_of(&x, &a);
    int rc = kb_frechet_distance(&a, &a, KB_FD_AUTO, &fd, NULL, &err);
    double tr = 0;
    for (int64_t i = 0; i < a.dim; i++) tr += a.sigma[i * a.dim + i];
    KBT_CHECK(st, !rc && fabs(fd) <= 1e-10 * tr, "FD of a set with itself is 0", "got %.3g (trace %.3g)", fd, tr);
    printf("     FD(x, x) = %.3g (trace %.3g)\n", fd, tr);
    kb_gstats_free(&a);
    kb_npy_free(&x);
}

/* A set of identical feature vectors has sigma = 0 (rank 0): every route but
 * cholesky must give |mu1 - mu2|^2 + tr S2 exactly as the formula has it, with
 * sigma1 of rank 0; cholesky must refuse it by name. */
static void test_fid_zero_sigma(kbt_state *st) {
    kb_npy x = load("fid_small.npz", "x1");
    kb_gstats a, b;
    kb_err err = {0};
    stats_of(&x, &b);
    if (kb_gstats_alloc(&a, b.dim, &err)) {
        KBT_CHECK(st, 0, "FD with a zero sigma1", "alloc: %s", err.msg);
        return;
    }
    a.count = 10;
    double want = 0;
    for (int64_t i = 0; i < a.dim; i++) {
        a.mu[i] = 0.25 * (double)(i % 5);
        want += (a.mu[i] - b.mu[i]) * (a.mu[i] - b.mu[i]) + b.sigma[i * a.dim + i];
    }
    kb_fd_method ms[3] = {KB_FD_AUTO, KB_FD_PIVOTED, KB_FD_EIGH};
    for (int k = 0; k < 3; k++) {
        kb_fd_info info;
        double fd = NAN;
        int rc = kb_frechet_distance(&a, &b, ms[k], &fd, &info, &err);
        char name[96];
        snprintf(name, sizeof name, "FD %s with a zero sigma1 = |mu1-mu2|^2 + tr S2", kb_fd_method_name(ms[k]));
        KBT_CHECK(st, !rc && info.rank1 == 0 && fabs(fd - want) <= 1e-12 * want, name,
                  "rc %d (%s), rank %lld, got %.15g want %.15g", rc, err.msg, (long long)info.rank1, fd, want);
    }
    int rc = kb_frechet_distance(&a, &b, KB_FD_CHOLESKY, &(double){0}, NULL, &err);
    KBT_CHECK(st, rc && strstr(err.msg, "not positive definite"), "FD cholesky refuses a zero sigma1", "rc %d: %s", rc,
              err.msg);
    kb_gstats_free(&a), kb_gstats_free(&b);
    kb_npy_free(&x);
}

/* Statistics of extreme scale (features times 2^j): FD is homogeneous of
 * degree 2, so FD(2^j x) must be 2^2j FD(x). At j = +-300 the covariance
 * products leave double's range (an overflow made LAPACK fail, an underflow
 * gave 0); kb_frechet_distance scales by a power of two, which is exact, so
 * the result must equal ldexp(FD(x), 2j) bit for bit, by every route. */
static void test_fid_extreme_scale(kbt_state *st) {
    kb_npy x1 = load("fid_small.npz", "x1"), x2 = load("fid_small.npz", "x2");
    kb_gstats a, b, sa, sb;
    kb_err err = {0};
    if (stats_of(&x1, &a) || stats_of(&x2, &b) || kb_gstats_alloc(&sa, a.dim, &err) ||
        kb_gstats_alloc(&sb, a.dim, &err)) {
        KBT_CHECK(st, 0, "FD at extreme scales", "statistics failed: %s", err.msg);
        return;
    }
    int64_t d = a.dim;
    const int js[3] = {300, -300, 500};
    kb_fd_method ms[3] = {KB_FD_AUTO, KB_FD_EIGH, KB_FD_PIVOTED};
    for (int m = 0; m < 3; m++) {
        double fd = NAN;
        int rc0 = kb_frechet_distance(&a, &b, ms[m], &fd, NULL, &err);
        for (int t = 0; t < 3; t++) {
            int j = js[t];
            for (int64_t i = 0; i < d; i++) sa.mu[i] = ldexp(a.mu[i], j), sb.mu[i] = ldexp(b.mu[i], j);
            for (int64_t i = 0; i < d * d; i++) sa.sigma[i] = ldexp(a.sigma[i], 2 * j), sb.sigma[i] = ldexp(b.sigma[i], 2 * j);
            double got = NAN;
            int rc = kb_frechet_distance(&sa, &sb, ms[m], &got, NULL, &err);
            char name[96];
            snprintf(name, sizeof name, "FD %s of features x 2^%d = 2^%d FD", kb_fd_method_name(ms[m]), j, 2 * j);
            KBT_CHECK(st, !rc0 && !rc && got == ldexp(fd, 2 * j), name, "rc %d/%d (%s): got %.17g want %.17g", rc0, rc,
                      err.msg, got, ldexp(fd, 2 * j));
        }
    }
    kb_gstats_free(&a), kb_gstats_free(&b), kb_gstats_free(&sa), kb_gstats_free(&sb);
    kb_npy_free(&x1), kb_npy_free(&x2);
}

/* A distance beyond double's range (means 2^520 apart: |mu1 - mu2|^2 ~
 * 2^1040) is an error, as it was before the scaling: the scaled distance is
 * finite, and scaled back it became +inf, returned as a success. */
static void test_fid_out_of_range(kbt_state *st) {
    kb_npy x1 = load("fid_small.npz", "x1"), x2 = load("fid_small.npz", "x2");
    kb_gstats a, b;
    kb_err err = {0};
    if (stats_of(&x1, &a) || stats_of(&x2, &b)) {
        KBT_CHECK(st, 0, "FD beyond double's range", "statistics failed: %s", err.msg);
        return;
    }
    for (int64_t i = 0; i < a.dim; i++) a.mu[i] = ldexp(a.mu[i], 520), b.mu[i] = ldexp(b.mu[i], 520);
    kb_fd_method ms[3] = {KB_FD_AUTO, KB_FD_EIGH, KB_FD_PIVOTED};
    for (int m = 0; m < 3; m++) {
        double fd = 0.0;
        err.msg[0] = 0;
        int rc = kb_frechet_distance(&a, &b, ms[m], &fd, NULL, &err);
        char name[96];
        snprintf(name, sizeof name, "FD %s beyond double's range is an error, not inf", kb_fd_method_name(ms[m]));
        KBT_CHECK(st, rc != 0 && strstr(err.msg, "range"), name, "rc %d, fd %g, '%s'", rc, fd, err.msg);
    }
    kb_gstats_free(&a), kb_gstats_free(&b);
    kb_npy_free(&x1), kb_npy_free(&x2);
}

/* kb_congruence_lower against LAPACK's dsygst (itype 2, lower) on random
 * data: below, at and above the recursion's base size, odd splits, a leading
 * dimension larger than n. Rounding differs (other block sums), so the
 * tolerance is 1e-12 of the largest entry; the strict upper triangle must be
 * untouched (bit for bit). */
static void test_congruence(kbt_state *st) {
    const int64_t sizes[] = {1, 7, KB_CONGRUENCE_BASE, KB_CONGRUENCE_BASE + 1, 600, 1031};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k], ld = n + 3;
        size_t sz = (size_t)(ld * n);
        double *l = malloc(sz * sizeof(double)), *s = malloc(sz * sizeof(double)), *ref = malloc(sz * sizeof(double));
        double *work = malloc((size_t)(kb_congruence_work_size(n) + 1) * sizeof(double));
        uint64_t seed = 0x9e3779b97f4a7c15ull + (uint64_t)n;
        for (size_t i = 0; i < sz; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            s[i] = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
            l[i] = s[i] * 0.3;
        }
        for (int64_t j = 0; j < n; j++) l[j * ld + j] = 1.0 + 0.001 * (double)j; /* a well-scaled factor */
        memcpy(ref, s, sz * sizeof(double));
        kb_err err = {0};
        int rc = kb_congruence_lower(n, s, l, ld, work, &err);
        lapack_int info = LAPACKE_dsygst_work(LAPACK_COL_MAJOR, 2, 'L', (lapack_int)n, ref, (lapack_int)ld, l,
                                              (lapack_int)ld);
        double worst = 0, big = 0;
        int upper_same = 1;
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < n; i++) {
                double a = s[j * ld + i], b = ref[j * ld + i];
                if (i < j) upper_same &= memcmp(&a, &b, sizeof a) == 0;
                else worst = fmax(worst, fabs(a - b)), big = fmax(big, fabs(b));
            }
        char name[128];
        snprintf(name, sizeof name, "L^T S L n=%lld (ld %lld) vs LAPACK dsygst", (long long)n, (long long)ld);
        KBT_CHECK(st, !rc && !info && upper_same && worst <= 1e-12 * big, name,
                  "rc %d (%s), dsygst info %d, upper untouched %d, max |d| %.3g > 1e-12 x %.3g", rc, err.msg, (int)info,
                  upper_same, worst, big);
        printf("       max |d| = %.3g (%.2g of the largest entry)\n", worst, big > 0 ? worst / big : 0.0);
        free(l), free(s), free(ref), free(work);
    }
}

/* ------------------------------------------------------------------- IS */

static void test_is_case(kbt_state *st, const char *file) {
    kb_npy lg = load(file, "logits");
    int64_t n = lg.shape[0], c = lg.shape[1];
    kb_is_opts o;
    kb_is_result r;
    kb_err err = {0};
    kb_is_opts_default(&o, KB_IS_ADM);
    int rc = kb_inception_score(lg.data, n, c, &o, &r, &err);
    double want = scalar(file, "adm"), w32 = scalar(file, "adm_f32");
    KBT_CHECK(st, !rc && rel(r.mean, want) <= 1e-9, file, "ADM IS %.12g want %.12g (%s)", r.mean, want, err.msg);
    printf("     %s ADM splits: %.12g (%d splits, last %lld), rel err %.3g vs float64 numpy, %.3g vs float32 softmax\n",
           file, r.mean, r.splits, (long long)r.last_split, rel(r.mean, want), rel(r.mean, w32));
    rc = kb_inception_score(lg.data, n < 3000 ? n : 3000, c, &o, &r, &err);
    want = n >= 3000 ? scalar(file, "adm_one_split") : want;
    KBT_CHECK(st, !rc && r.splits == 1 && rel(r.mean, want) <= 1e-9, "ADM IS with fewer images than a split",
              "%.12g want %.12g", r.mean, want);
    kb_is_opts_default(&o, KB_IS_FIDELITY);
    rc = kb_inception_score(lg.data, n, c, &o, &r, &err);
    double fm = scalar(file, "fid_mean"), fs = scalar(file, "fid_std");
    KBT_CHECK(st, !rc && rel(r.mean, fm) <= 1e-9 && rel(r.std, fs) <= 1e-7, file,
              "fidelity IS %.12g +- %.9g want %.12g +- %.9g", r.mean, r.std, fm, fs);
    printf("     %s fidelity splits: %.12g +- %.9g, rel err mean %.3g std %.3g vs torch-fidelity\n", file, r.mean, r.std,
           rel(r.mean, fm), rel(r.std, fs));
    kb_npy_free(&lg);
}

/* ------------------------------------------------------------------- PR */

static void prdc_run(kbt_state *st, kb_ctx *ctx, const char *file, int64_t block, kb_dist_precision prec,
                     const char *key, int exact_dc) {
    kb_npy ref = load(file, "ref"), samp = load(file, "samp"), want = load(file, key);
    kb_prdc_opts o;
    kb_prdc_result r;
    kb_err err = {0};
    kb_prdc_opts_default(&o);
    o.block = block, o.precision = prec;
    int rc = kb_prdc(ctx, ref.data, ref.shape[0], samp.data, samp.shape[0], ref.shape[1], &o, &r, &err);
    const double *w = want.data;
    double got[4] = {r.precision, r.recall, r.density, r.coverage};
    double dc_err = fmax(fabs(got[2] - w[2]), fabs(got[3] - w[3]));
    int pr_same = !rc && got[0] == w[0] && got[1] == w[1];
    char name[256];
    snprintf(name, sizeof name, "%s %s block %lld vs %s", file, prec == KB_DIST_FP16 ? "fp16" : "fp32", (long long)block, key);
    KBT_CHECK(st, pr_same && dc_err <= (exact_dc ? 1e-12 : 2e-3), name,
              "rc %d (%s): P %.9g R %.9g D %.9g C %.9g, want %.9g %.9g %.9g %.9g", rc, err.msg, got[0], got[1], got[2],
              got[3], w[0], w[1], w[2], w[3]);
    printf("     %s: P %.6f R %.6f D %.6f C %.6f (|D/C err| %.3g)\n", name, got[0], got[1], got[2], got[3], dc_err);
    kb_npy_free(&ref), kb_npy_free(&samp), kb_npy_free(&want);
}

static void test_radii(kbt_state *st, kb_ctx *ctx, const char *file) {
    kb_npy ref = load(file, "ref"), want = load(file, "radii_ref");
    kb_prdc_opts o;
    kb_err err = {0};
    kb_prdc_opts_default(&o);
    o.block = 100;
    int k = 3;
    float *rad = malloc((size_t)ref.shape[0] * sizeof(float));
    int rc = kb_knn_radii(ctx, ref.data, ref.shape[0], ref.shape[1], &k, 1, &o, rad, &err);
    double worst = 0;
    for (int64_t i = 0; !rc && i < ref.shape[0]; i++) worst = fmax(worst, fabs(rad[i] - ((double *)want.data)[i]));
    KBT_CHECK(st, !rc && worst == 0, "k=3 radii (4th smallest incl. self) exact", "rc %d %s worst %.3g", rc, err.msg, worst);
    free(rad);
    kb_npy_free(&ref), kb_npy_free(&want);
}

static void test_prdc(kbt_state *st, kb_ctx *ctx) {
    test_radii(st, ctx, "pr_quant.npz");
    int64_t blocks[3] = {64, 333, 2048};
    for (int b = 0; b < 3; b++) prdc_run(st, ctx, "pr_quant.npz", blocks[b], KB_DIST_FP32, "exact", 1);
    prdc_run(st, ctx, "pr_quant.npz", 200, KB_DIST_FP16, "fp16", 1);
    prdc_run(st, ctx, "pr_quant_small.npz", 2, KB_DIST_FP32, "exact", 1);
    prdc_run(st, ctx, "pr_cont.npz", 500, KB_DIST_FP32, "exact", 0);
    prdc_run(st, ctx, "pr_cont.npz", 2048, KB_DIST_FP32, "fp32", 0);
    /* one reference row overflows fp16: ADM computes each whole 10000 x
     * 10000 batch pair holding it in fp32, whatever our block size */
    prdc_run(st, ctx, "pr_overflow.npz", 2048, KB_DIST_FP16, "fp16", 1);
    prdc_run(st, ctx, "pr_overflow.npz", 333, KB_DIST_FP16, "fp16", 1);
}

/* ------------------------------------------------------------------ KID */

static void test_kid_case(kbt_state *st, const char *file) {
    kb_npy s = load(file, "samp"), r = load(file, "ref");
    kb_kid_opts o;
    kb_kid_result res;
    kb_err err = {0};
    kb_kid_opts_default(&o);
    o.subsets = (int)scalar(file, "subsets");
    int rc = kb_kid(s.data, s.shape[0], r.data, r.shape[0], s.shape[1], &o, &res, &err);
    double m = scalar(file, "mean"), sd = scalar(file, "std"), m32 = scalar(file, "mean_f32");
    KBT_CHECK(st, !rc && rel(res.mean, m) <= 1e-6 && rel(res.std, sd) <= 1e-5, file,
              "rc %d (%s) KID %.12g +- %.6g want %.12g +- %.6g", rc, err.msg, res.mean, res.std, m, sd);
    printf("     %s: KID %.12g +- %.6g (m = %lld), rel err %.3g (std %.3g) vs float64 numpy, %.3g vs torch-fidelity "
           "float32\n",
           file, res.mean, res.std, (long long)res.subset_size, rel(res.mean, m), rel(res.std, sd), rel(res.mean, m32));
    kb_npy_free(&s), kb_npy_free(&r);
}

/* ------------------------------------------------------------- spectral */

static int curve_of(const kb_npy *imgs, double *curve, int *bins, kb_err *err) {
    kb_spectrum s;
    int h = (int)imgs->shape[1], w = (int)imgs->shape[2], c = (int)imgs->shape[3];
    if (kb_spectrum_init(&s, h, w, err)) return -1;
    int rc = 0;
    for (int64_t i = 0; !rc && i < imgs->shape[0]; i++)
        rc = kb_spectrum_add(&s, (uint8_t *)imgs->data + i * h * w * c, h, w, c, "fixture", err);
    if (!rc) rc = kb_spectrum_curve(&s, curve, "fixture", err);
    *bins = s.nbins;
    kb_spectrum_free(&s);
    return rc;
}

static void test_spectral(kbt_state *st) {
    const char *cases[4] = {"sq", "rect", "grey", "rgba"};
    for (int k = 0; k < 4; k++) {
        char key[64];
        double ca[64], cb[64], d = NAN;
        int na = 0, nb = 0;
        kb_err err = {0};
        snprintf(key, sizeof key, "%s_a", cases[k]);
        kb_npy a = load("spectral.npz", key);
        snprintf(key, sizeof key, "%s_b", cases[k]);
        kb_npy b = load("spectral.npz", key);
        snprintf(key, sizeof key, "%s_sa", cases[k]);
        kb_npy sa = load("spectral.npz", key);
        snprintf(key, sizeof key, "%s_dist", cases[k]);
        double want = scalar("spectral.npz", key);
        int rc = curve_of(&a, ca, &na, &err) || curve_of(&b, cb, &nb, &err) ||
                 kb_spectral_distance(ca, na, cb, nb, &d, &err);
        double cerr = 0;
        for (int i = 0; !rc && i < na; i++) cerr = fmax(cerr, fabs(ca[i] - ((double *)sa.data)[i]));
        KBT_CHECK(st, !rc && na == sa.numel && cerr <= 1e-10 && fabs(d - want) <= 1e-10, cases[k],
                  "rc %d (%s) bins %d/%lld curve err %.3g distance %.12g want %.12g", rc, err.msg, na,
                  (long long)sa.numel, cerr, d, want);
        printf("     spectral %s: %d bins, max |curve - numpy| %.3g, distance %.12g (err %.3g)\n", cases[k], na, cerr, d,
               fabs(d - want));
        kb_npy_free(&a), kb_npy_free(&b), kb_npy_free(&sa);
    }
}

int main(void) {
    kbt_state st = {0, 0};
    const char *fx = getenv("KB_FIXTURES");
    snprintf(g_dir, sizeof g_dir, "%s/metrics", fx ? fx : "fixtures");
    kb_ctx ctx;
    kb_err err = {0};
    /* one BLAS thread: on a shared 2-core machine OpenMP threads that wait
     * for a busy core make LAPACK's eigensolvers 10x slower, never faster */
    kb_ctx_opts co = {.threads = 1};
    if (kb_ctx_init(&ctx, KB_DEV_CPU, &co, &err)) {
        printf("FAIL context: %s\n", err.msg);
        return 1;
    }
    test_rng(&st);
    test_is_case(&st, "is_a.npz");
    test_is_case(&st, "is_b.npz");
    test_prdc(&st, &ctx);
    test_kid_case(&st, "kid_a.npz");
    test_kid_case(&st, "kid_small.npz");
    test_spectral(&st);
    test_fid_identical(&st);
    test_congruence(&st);
    test_fid_zero_sigma(&st);
    test_fid_extreme_scale(&st);
    test_fid_out_of_range(&st);
    const char *fids[4] = {"fid_small.npz", "fid_illcond.npz", "fid_rankdef.npz", "fid_close2048.npz"};
    for (int i = 0; i < 4; i++) test_fid_case(&st, fids[i]);
    kb_ctx_free(&ctx);
    return kbt_finish(&st);
}
