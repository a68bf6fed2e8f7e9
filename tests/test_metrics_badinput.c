/* Bad input to the metric functions and the npz interop: each case must fail
 * with a message naming the problem (never crash, never return a number),
 * plus the documented adaptations (IS with fewer images than a split, KID
 * with fewer images than a subset) and an npz round trip read back by numpy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/eval_input.h"
#include "metrics/fid.h"
#include "metrics/inception_score.h"
#include "metrics/kid.h"
#include "metrics/prdc.h"
#include "metrics/refstats.h"
#include "metrics/spectral.h"
#include "metrics/stats.h"
#include "tests/kbtest.h"
#include "util/npy.h"

/* Expects rc != 0 and pattern in the message. */
static void expect_fail(kbt_state *st, const char *name, int rc, const kb_err *err, const char *pattern) {
    KBT_CHECK(st, rc != 0 && strstr(err->msg, pattern) != NULL, name, "rc %d, message '%s' (expected '%s')", rc,
              err->msg, pattern);
    if (rc) printf("     -> %s\n", err->msg);
}

static float *randf(int64_t n, unsigned seed) {
    float *x = malloc((size_t)n * sizeof(float));
    srand(seed);
    for (int64_t i = 0; i < n; i++) x[i] = (float)rand() / (float)RAND_MAX;
    return x;
}

static void test_stats_fid(kbt_state *st) {
    kb_err err = {0};
    kb_gstats a, b;
    float *x = randf(50 * 8, 1), *y = randf(50 * 6, 2);
    expect_fail(st, "covariance of 1 image", kb_gstats_compute(x, 1, 8, "one.npz", &a, &err), &err, "at least 2 images");
    x[17] = NAN;
    expect_fail(st, "NaN feature", kb_gstats_compute(x, 50, 8, "nan set", &a, &err), &err, "feature [2, 1] of [50, 8] is NaN");
    x[17] = INFINITY;
    expect_fail(st, "infinite feature", kb_gstats_compute(x, 50, 8, "inf set", &a, &err), &err, "infinite");
    x[17] = 0.5f;
    kb_gstats_compute(x, 50, 8, "x", &a, &err);
    kb_gstats_compute(y, 50, 6, "y", &b, &err);
    double fd = 123;
    expect_fail(st, "FD of 8-d vs 6-d statistics", kb_frechet_distance(&a, &b, KB_FD_AUTO, &fd, NULL, &err), &err,
                "dimensions differ (8 vs 6)");
    kb_gstats_free(&b);
    kb_gstats_compute(x, 50, 8, "x", &b, &err);
    b.sigma[1 * 8 + 0] += 1.0; /* asymmetric */
    expect_fail(st, "asymmetric sigma", kb_frechet_distance(&a, &b, KB_FD_AUTO, &fd, NULL, &err), &err, "not symmetric");
    b.sigma[1 * 8 + 0] -= 1.0;
    b.sigma[3 * 8 + 3] = -1.0;
    expect_fail(st, "negative variance", kb_frechet_distance(&a, &b, KB_FD_AUTO, &fd, NULL, &err), &err, "non-negative diagonal");
    b.sigma[3 * 8 + 3] = NAN;
    expect_fail(st, "NaN in sigma", kb_frechet_distance(&a, &b, KB_FD_AUTO, &fd, NULL, &err), &err, "finite");
    kb_gstats_free(&a), kb_gstats_free(&b);
    free(x), free(y);
}

/* Covariance checks past the first 64 x 64 tile (kb_gstats_check walks tiles
 * across threads, then names the first bad entry in row-major order). */
static void test_sigma_check_tiles(kbt_state *st) {
    enum { D = 200 };
    kb_err err = {0};
    kb_gstats s;
    if (kb_gstats_alloc(&s, D, &err)) {
        KBT_CHECK(st, 0, "sigma check: alloc", "%s", err.msg);
        return;
    }
    for (int64_t i = 0; i < D; i++) {
        s.mu[i] = 0.0;
        for (int64_t j = 0; j <= i; j++) s.sigma[i * D + j] = s.sigma[j * D + i] = i == j ? 2.0 : 0.01 * (double)((i + 3 * j) % 7);
    }
    KBT_CHECK(st, kb_gstats_check(&s, "s", &err) == 0, "sigma check: symmetric 200-d passes", "%s", err.msg);
    s.sigma[70 * D + 150] = NAN; /* upper triangle: named by its lower mirror */
    s.sigma[190 * D + 10] += 1.0; /* a later row: not the first */
    expect_fail(st, "sigma check: NaN above the diagonal, 3rd tile row", kb_gstats_check(&s, "s", &err), &err,
                "s: sigma[150, 70] is not finite");
    s.sigma[70 * D + 150] = s.sigma[150 * D + 70];
    expect_fail(st, "sigma check: asymmetry in the last tile row", kb_gstats_check(&s, "s", &err), &err,
                "s: sigma is not symmetric (sigma[190, 10] = ");
    s.sigma[190 * D + 10] -= 1.0;
    s.sigma[10 * D + 190] += 1e-9; /* within 1e-6 of the largest variance */
    KBT_CHECK(st, kb_gstats_check(&s, "s", &err) == 0, "sigma check: rounding-size asymmetry passes", "%s", err.msg);
    kb_gstats_free(&s);
}

static void test_is(kbt_state *st) {
    kb_err err = {0};
    kb_is_opts o;
    kb_is_result r;
    float *lg = randf(7 * 20, 3);
    kb_is_opts_default(&o, KB_IS_FIDELITY);
    expect_fail(st, "IS fidelity splits with 7 images", kb_inception_score(lg, 7, 20, &o, &r, &err), &err,
                "cannot fill 10 splits");
    kb_is_opts_default(&o, KB_IS_ADM);
    int rc = kb_inception_score(lg, 7, 20, &o, &r, &err);
    KBT_CHECK(st, !rc && r.splits == 1 && r.last_split == 7 && r.mean >= 1.0, "IS adm with 7 images: one short split",
              "rc %d splits %d", rc, r.splits);
    expect_fail(st, "IS of no images", kb_inception_score(lg, 0, 20, &o, &r, &err), &err, "no images");
    lg[5] = NAN;
    expect_fail(st, "IS NaN logit", kb_inception_score(lg, 7, 20, &o, &r, &err), &err, "NaN");
    /* a probability that underflows to 0 must not give NaN */
    lg[5] = -1e30f;
    rc = kb_inception_score(lg, 7, 20, &o, &r, &err);
    KBT_CHECK(st, !rc && isfinite(r.mean), "IS with an underflowing probability is finite", "rc %d mean %g", rc, r.mean);
    free(lg);
}

static void test_prdc_kid(kbt_state *st, kb_ctx *ctx) {
    kb_err err = {0};
    kb_prdc_opts o;
    kb_prdc_result r;
    kb_prdc_opts_default(&o);
    float *a = randf(30 * 4, 4), *b = randf(30 * 4, 5);
    expect_fail(st, "P/R with 3 samples (k=3 needs 4)", kb_prdc(ctx, a, 30, b, 3, 4, &o, &r, &err), &err,
                "at least 4 reference and 4 sample");
    expect_fail(st, "D/C with 5 references (k=5 needs 6)", kb_prdc(ctx, a, 5, b, 30, 4, &o, &r, &err), &err,
                "density/coverage with k=5 needs at least 6 reference");
    o.pr_k = 0;
    expect_fail(st, "D/C alone with 5 references", kb_prdc(ctx, a, 5, b, 30, 4, &o, &r, &err), &err,
                "at least 6 reference");
    kb_prdc_opts_default(&o);
    b[9] = NAN;
    expect_fail(st, "P/R NaN feature", kb_prdc(ctx, a, 30, b, 30, 4, &o, &r, &err), &err, "sample features: feature [2, 1]");
    b[9] = 0.5f;
    int rc = kb_prdc(ctx, a, 30, b, 30, 4, &o, &r, &err);
    KBT_CHECK(st, !rc && r.precision >= 0 && r.precision <= 1 && r.coverage >= 0, "P/R/D/C on 30 x 30", "rc %d %s", rc, err.msg);
    kb_kid_opts ko;
    kb_kid_result kr;
    kb_kid_opts_default(&ko);
    ko.subsets = 3;
    rc = kb_kid(a, 30, b, 25, 4, &ko, &kr, &err);
    KBT_CHECK(st, !rc && kr.subset_size == 25, "KID clamps the subset size to the smaller set", "rc %d m %lld", rc,
              (long long)kr.subset_size);
    expect_fail(st, "KID with 1 image", kb_kid(a, 1, b, 25, 4, &ko, &kr, &err), &err, "at least 2 images");
    a[0] = INFINITY;
    expect_fail(st, "KID infinite feature", kb_kid(a, 30, b, 25, 4, &ko, &kr, &err), &err, "infinite");
    free(a), free(b);
}

static void test_spectral(kbt_state *st) {
    kb_err err = {0};
    kb_spectrum s;
    uint8_t img[8 * 8 * 3];
    memset(img, 77, sizeof img);
    expect_fail(st, "spectrum of 1x1 images", kb_spectrum_init(&s, 1, 1, &err), &err, "no frequency bins");
    kb_spectrum_init(&s, 8, 8, &err);
    kb_spectrum_add(&s, img, 8, 8, 3, "flat", &err);
    double c[4];
    expect_fail(st, "spectrum of constant images", kb_spectrum_curve(&s, c, "flat.npz", &err), &err, "zero power");
    expect_fail(st, "image of another size", kb_spectrum_add(&s, img, 4, 8, 3, "odd.png", &err), &err, "needs one size");
    kb_spectrum_free(&s);
    double d, x[3] = {1, 2, 3};
    expect_fail(st, "spectra of different lengths", kb_spectral_distance(x, 3, x, 2, &d, &err), &err, "3 and 2 frequency bins");
}

/* ------------------------------------------------------------------ npz */

#define TMP "metrics_badinput.tmp"

static void write_npz(const char *path, const char *const *names, const kb_npy *arrays, int n) {
    kb_npz_entry e[8];
    kb_err err = {0};
    for (int i = 0; i < n; i++) e[i].name = names[i], e[i].array = arrays[i];
    if (kb_npz_write(path, e, n, &err)) printf("FAIL writing %s: %s\n", path, err.msg);
}

static void test_npz_bad(kbt_state *st) {
    kb_err err = {0};
    kb_evalset s;
    double mu[4] = {0, 1, 2, 3}, sg[16] = {0}, sg3[9] = {0};
    float f32[4] = {0};
    int64_t d4[1] = {4}, d44[2] = {4, 4}, d33[2] = {3, 3}, img[4] = {2, 3, 3, 3};
    for (int i = 0; i < 4; i++) sg[i * 5] = 1.0;
    const char *n1[1] = {"foo"};
    kb_npy a1[1] = {kb_npy_view(KB_F32, 1, d4, f32)};
    write_npz(TMP "/nokeys.npz", n1, a1, 1);
    kb_evalset_init(&s, "reference", TMP "/nokeys.npz");
    expect_fail(st, "npz without the needed keys", kb_evalset_read_npz(TMP "/nokeys.npz", 1, &s, &err), &err,
                "neither statistics ('mu', 'sigma') nor images ('arr_0')");
    const char *n2[1] = {"mu"};
    kb_npy a2[1] = {kb_npy_view(KB_F64, 1, d4, mu)};
    write_npz(TMP "/musonly.npz", n2, a2, 1);
    expect_fail(st, "npz with mu but no sigma", kb_evalset_read_npz(TMP "/musonly.npz", 1, &s, &err), &err,
                "has 'mu' but not 'sigma'");
    const char *n3[2] = {"mu", "sigma"};
    kb_npy a3[2] = {kb_npy_view(KB_F64, 1, d4, mu), kb_npy_view(KB_F64, 2, d33, sg3)};
    write_npz(TMP "/shape.npz", n3, a3, 2);
    expect_fail(st, "sigma of the wrong shape", kb_evalset_read_npz(TMP "/shape.npz", 1, &s, &err), &err,
                "'mu' is [4] but 'sigma' is [3, 3]");
    sg[5] = NAN;
    kb_npy a4[2] = {kb_npy_view(KB_F64, 1, d4, mu), kb_npy_view(KB_F64, 2, d44, sg)};
    write_npz(TMP "/nan.npz", n3, a4, 2);
    expect_fail(st, "NaN in sigma", kb_evalset_read_npz(TMP "/nan.npz", 1, &s, &err), &err, "sigma[1, 1] = nan");
    sg[5] = 1.0;
    kb_npy a5[2] = {kb_npy_view(KB_I64, 1, d4, mu), kb_npy_view(KB_F64, 2, d44, sg)};
    write_npz(TMP "/int.npz", n3, a5, 2);
    expect_fail(st, "integer mu", kb_evalset_read_npz(TMP "/int.npz", 1, &s, &err), &err, "float32/float64");
    const char *n6[1] = {"arr_0"};
    float pix[54] = {0};
    kb_npy a6[1] = {kb_npy_view(KB_F32, 4, img, pix)};
    write_npz(TMP "/float_arr0.npz", n6, a6, 1);
    kb_image_input in;
    expect_fail(st, "arr_0 of floats", kb_image_input_open(TMP "/float_arr0.npz", NULL, 1, &in, &err), &err,
                "arr_0 must be uint8 images");
    FILE *f = fopen(TMP "/text.npz", "w");
    fputs("not a zip\n", f);
    fclose(f);
    expect_fail(st, "text file named .npz", kb_evalset_read_npz(TMP "/text.npz", 1, &s, &err), &err, "cannot open as npz");
    expect_fail(st, "missing npz", kb_evalset_read_npz(TMP "/missing.npz", 1, &s, &err), &err, "missing.npz");
    expect_fail(st, "missing input", kb_image_input_open(TMP "/nothing_here", NULL, 1, &in, &err), &err,
                "no such file or directory");
}

/* Writes an evalset, reads it back here and with numpy. */
static void test_roundtrip(kbt_state *st) {
    kb_err err = {0};
    kb_evalset s, r;
    kb_evalset_init(&s, "reference", "roundtrip");
    s.feat.n = 40, s.feat.pool_dim = 6, s.feat.logits_dim = 3;
    s.feat.pool = randf(40 * 6, 7), s.feat.logits = randf(40 * 3, 8);
    kb_gstats_compute(s.feat.pool, 40, 6, "pool", &s.pool_stats, &err);
    kb_gstats_compute(s.feat.logits, 40, 3, "logits", &s.spatial_stats, &err);
    s.has_pool_stats = s.has_spatial_stats = 1;
    s.spectrum_bins = 3, s.spectrum_h = 6, s.spectrum_w = 7;
    s.spectrum = malloc(3 * sizeof(double));
    s.spectrum[0] = -1.5, s.spectrum[1] = -2.25, s.spectrum[2] = 1.0 / 3.0;
    snprintf(s.meta.mode, sizeof s.meta.mode, "adm");
    snprintf(s.meta.featurizer, sizeof s.meta.featurizer, "pixels");
    snprintf(s.meta.source, sizeof s.meta.source, "a \"quoted\" path");
    s.meta.count = 40;
    int rc = kb_evalset_write_npz(TMP "/rt.npz", &s, 1, NULL, &err);
    kb_evalset_init(&r, "reference", TMP "/rt.npz");
    if (!rc) rc = kb_evalset_read_npz(TMP "/rt.npz", 1, &r, &err);
    int same = !rc && r.has_pool_stats && r.has_spatial_stats && r.feat.n == 40 &&
               !memcmp(r.pool_stats.sigma, s.pool_stats.sigma, 36 * sizeof(double)) &&
               !memcmp(r.spatial_stats.mu, s.spatial_stats.mu, 3 * sizeof(double)) &&
               !memcmp(r.feat.pool, s.feat.pool, 240 * sizeof(float)) && !memcmp(r.feat.logits, s.feat.logits, 120 * sizeof(float)) &&
               r.spectrum_bins == 3 && r.spectrum[2] == 1.0 / 3.0 && r.spectrum_w == 7 && !strcmp(r.meta.source, s.meta.source) &&
               r.meta.count == 40 && !strcmp(r.meta.mode, "adm");
    KBT_CHECK(st, same, "npz round trip (kindbench reads back what it wrote)", "rc %d %s", rc, err.msg);
    char cmd[2048];
    const char *py = getenv("KB_PYTHON");
    snprintf(cmd, sizeof cmd,
             "%s -c \"import numpy as np, json; f = np.load('" TMP "/rt.npz'); p = f['pool']; "
             "assert abs(np.cov(p, rowvar=False) - f['sigma']).max() < 1e-12; "
             "assert abs(p.astype(np.float64).mean(0) - f['mu']).max() < 1e-12; "
             "assert f['mu_s'].shape == (3,) and f['logits'].shape == (40, 3) and f['spectrum'][2] == 1/3; "
             "m = json.loads(bytes(f['kb_meta']).decode()); assert m['count'] == 40 and m['source'] == 'a \\\"quoted\\\" path', m; "
             "print('numpy read', sorted(f.files))\"",
             py ? py : "/usr/bin/python3");
    KBT_CHECK(st, system(cmd) == 0, "npz written by kindbench is read by numpy (np.cov/mean agree to 1e-12)", "python failed");
    kb_evalset_free(&s), kb_evalset_free(&r);
}

int main(void) {
    kbt_state st = {0, 0};
    kb_ctx ctx;
    kb_err err = {0};
    kb_ctx_opts co = {.threads = 1};
    if (kb_ctx_init(&ctx, KB_DEV_CPU, &co, &err) || system("rm -rf " TMP " && mkdir -p " TMP) != 0) {
        printf("FAIL setup: %s\n", err.msg);
        return 1;
    }
    test_stats_fid(&st);
    test_sigma_check_tiles(&st);
    test_is(&st);
    test_prdc_kid(&st, &ctx);
    test_spectral(&st);
    test_npz_bad(&st);
    test_roundtrip(&st);
    kb_ctx_free(&ctx);
    return kbt_finish(&st);
}
