/* The counter-based RNG of nn/rng.h.
 *
 *  - Philox4x32-10 against the published known-answer vectors of Random123
 *    (DEShawResearch/random123, tests/kat_vectors, rows "philox4x32 10":
 *    all-zero counter/key, all-ones, and the pi-digits vector).
 *  - kb_philox_block's packing of (seed, stream, block) into key and counter.
 *  - Distributions over 1e6 samples with fixed seeds (so each run sees the same
 *    numbers; the thresholds are set for a 1e-4-level false alarm under a
 *    correct generator): mean, variance, Kolmogorov-Smirnov D <= 1.95/sqrt(n)
 *    (alpha = 0.001), normal tail counts.
 *  - kb_portable_logf over every value kb_u32_to_unit_open0 produces (2^24 of
 *    them) against log in double: |err| <= 1e-6 * |log u| + 1e-9 (measured max
 *    printed); kb_portable_sincos_2pi over every kb_u32_to_unit value:
 *    |err| <= 2e-7 absolute.
 *  - Reruns identical; the fast CPU fill with 1, 2, 3 threads identical to the
 *    reference; kb_rng_below in range, unbiased (chi-square), rejection works
 *    where modulo would be biased. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/ops.h"
#include "nn/ops_ref.h"
#include "nn/rng.h"
#include "tests/kbtest.h"

#define NSAMP 1000000

static void test_kat(kbt_state *st) {
    static const uint32_t kat[3][10] = {
        {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c,
         0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    static const char *names[3] = {"philox4x32-10 KAT zeros", "philox4x32-10 KAT ones", "philox4x32-10 KAT pi"};
    for (int k = 0; k < 3; k++) {
        const uint32_t *v = kat[k];
        kb_philox_out o = kb_philox4x32(v[0], v[1], v[2], v[3], v[4], v[5]);
        KBT_CHECK(st, memcmp(o.v, v + 6, 16) == 0, names[k], "got %08x %08x %08x %08x want %08x %08x %08x %08x",
                  o.v[0], o.v[1], o.v[2], o.v[3], v[6], v[7], v[8], v[9]);
    }
    /* (seed, stream, block) -> key (seed lo, hi), counter (block lo, hi, stream lo, hi) */
    kb_philox_out o = kb_philox_block(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull);
    KBT_CHECK(st, o.v[0] == 0xd16cfe09 && o.v[3] == 0x24126ea1, "kb_philox_block packs seed/stream/block as documented",
              "got %08x .. %08x", o.v[0], o.v[3]);
    kb_rng r;
    kb_rng_init(&r, 7, 9);
    int ok = 1;
    for (uint64_t i = 0; i < 64; i++) ok &= kb_rng_next_u32(&r) == kb_philox_block(7, 9, i / 4).v[i % 4];
    KBT_CHECK(st, ok, "kb_rng_next_u32 walks the block words in order", "mismatch");
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Kolmogorov-Smirnov D of sorted x against cdf. */
static double ks_d(float *x, int64_t n, double (*cdf)(double)) {
    qsort(x, (size_t)n, sizeof *x, cmp_float);
    double d = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double f = cdf((double)x[i]);
        double lo = f - (double)i / (double)n, hi = (double)(i + 1) / (double)n - f;
        if (lo > d) d = lo;
        if (hi > d) d = hi;
    }
    return d;
}

static double cdf_uniform(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }
static double cdf_normal(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static void moments(const float *x, int64_t n, double *mean, double *var) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *var = s2 / (double)n;
}

static void test_distributions(kbt_state *st) {
    float *u = malloc(NSAMP * sizeof(float)), *z = malloc(NSAMP * sizeof(float));
    kb_rand_uniform_ref(u, NSAMP, 2024, 1, 0.0f, 1.0f);
    kb_rand_normal_ref(z, NSAMP, 2024, 2, 0.0f, 1.0f);
    double ks_lim = 1.95 / sqrt((double)NSAMP), m, v;
    float umin = 1, umax = 0;
    for (int i = 0; i < NSAMP; i++) {
        umin = u[i] < umin ? u[i] : umin;
        umax = u[i] > umax ? u[i] : umax;
    }
    KBT_CHECK(st, umin >= 0.0f && umax < 1.0f, "uniform in [0, 1)", "min %g max %g", umin, umax);
    moments(u, NSAMP, &m, &v);
    printf("uniform: mean %.6f (0.5), var %.6f (%.6f)\n", m, v, 1.0 / 12);
    KBT_CHECK(st, fabs(m - 0.5) < 5 * sqrt(1.0 / 12 / NSAMP), "uniform mean within 5 sigma", "%.6f", m);
    KBT_CHECK(st, fabs(v - 1.0 / 12) < 5 * sqrt(1.0 / 180 / NSAMP), "uniform variance within 5 sigma", "%.6f", v);
    moments(z, NSAMP, &m, &v);
    int64_t tail4 = 0;
    float zmax = 0;
    for (int i = 0; i < NSAMP; i++) {
        tail4 += fabsf(z[i]) > 4.0f;
        zmax = fabsf(z[i]) > zmax ? fabsf(z[i]) : zmax;
    }
    printf("normal: mean %.6f, var %.6f, |z|>4: %lld (expect %.1f), max |z| %.3f\n", m, v, (long long)tail4,
           NSAMP * erfc(4.0 / sqrt(2.0)), zmax);
    KBT_CHECK(st, fabs(m) < 5 / sqrt((double)NSAMP), "normal mean within 5 sigma", "%.6f", m);
    KBT_CHECK(st, fabs(v - 1.0) < 5 * sqrt(2.0 / NSAMP), "normal variance within 5 sigma", "%.6f", v);
    KBT_CHECK(st, tail4 >= 30 && tail4 <= 110, "normal |z| > 4 count in [30, 110] (expect 63)", "%lld",
              (long long)tail4);
    double du = ks_d(u, NSAMP, cdf_uniform), dz = ks_d(z, NSAMP, cdf_normal);
    printf("KS D: uniform %.6f, normal %.6f (limit %.6f)\n", du, dz, ks_lim);
    KBT_CHECK(st, du <= ks_lim, "uniform KS D <= 1.95/sqrt(n)", "%.6f", du);
    KBT_CHECK(st, dz <= ks_lim, "normal KS D <= 1.95/sqrt(n)", "%.6f", dz);
    /* scaled values: mean/std applied as one FMA */
    float a[4];
    kb_rand_normal_ref(a, 4, 5, 6, 3.0f, 0.5f);
    KBT_CHECK(st, a[1] == fmaf(kb_rng_normal_at(5, 6, 1), 0.5f, 3.0f), "kb_rand_normal = fma(z, std, mean)", "%g",
              a[1]);
    free(u), free(z);
}

static void test_portable_math(kbt_state *st) {
    double worst_rel = 0, worst_abs = 0;
    uint32_t at_log = 0;
    int bad = 0;
    for (uint32_t k = 0; k < (1u << 24); k++) {
        float u = kb_u32_to_unit_open0(k << 8);
        double want = log((double)u), got = kb_portable_logf(u), e = fabs(got - want);
        if (e > 1e-6 * fabs(want) + 1e-9) bad++;
        if (want != 0 && e / fabs(want) > worst_rel) worst_rel = e / fabs(want), at_log = k;
        if (e > worst_abs) worst_abs = e;
    }
    printf("kb_portable_logf over all 2^24 inputs of (0,1]: max rel %.3g (at u=%.9g), max abs %.3g\n", worst_rel,
           kb_u32_to_unit_open0(at_log << 8), worst_abs);
    KBT_CHECK(st, bad == 0, "kb_portable_logf |err| <= 1e-6 |log u| + 1e-9", "%d inputs outside", bad);
    double ws = 0, wc = 0;
    for (uint32_t k = 0; k < (1u << 24); k++) {
        float u = kb_u32_to_unit(k << 8), s, c;
        kb_portable_sincos_2pi(u, &s, &c);
        double th = 2.0 * M_PI * (double)u;
        double es = fabs(s - sin(th)), ec = fabs(c - cos(th));
        ws = es > ws ? es : ws;
        wc = ec > wc ? ec : wc;
    }
    printf("kb_portable_sincos_2pi over all 2^24 inputs of [0,1): max abs err sin %.3g, cos %.3g\n", ws, wc);
    KBT_CHECK(st, ws <= 2e-7 && wc <= 2e-7, "kb_portable_sincos_2pi abs error <= 2e-7", "sin %.3g cos %.3g", ws, wc);
}

static void test_repeat_and_threads(kbt_state *st) {
    int64_t n = 300001;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    kb_rand_normal_ref(a, n, 99, 3, 0.0f, 1.0f);
    kb_rand_normal_ref(b, n, 99, 3, 0.0f, 1.0f);
    KBT_CHECK(st, memcmp(a, b, n * sizeof(float)) == 0, "reference normal fill rerun identical", "differs");
    kb_rand_normal_ref(b, n, 99, 4, 0.0f, 1.0f);
    KBT_CHECK(st, memcmp(a, b, n * sizeof(float)) != 0, "another stream gives other numbers", "same");
    /* element i does not depend on n: a prefix fill equals the prefix */
    kb_rand_normal_ref(b, 1001, 99, 3, 0.0f, 1.0f);
    KBT_CHECK(st, memcmp(a, b, 1001 * sizeof(float)) == 0, "fill of n=1001 is the prefix of a longer fill", "no");
    for (int threads = 1; threads <= 3; threads++) {
        kb_ctx ctx;
        kb_err err = {0};
        kb_ctx_opts o = {.threads = threads};
        if (kb_ctx_init(&ctx, KB_DEV_CPU, &o, &err) || kb_rand_normal(&ctx, c, n, 99, 3, 0.0f, 1.0f, &err)) {
            KBT_CHECK(st, 0, "kb_rand_normal on cpu", "%s", err.msg);
            continue;
        }
        char name[96];
        snprintf(name, sizeof name, "fast CPU normal fill with %d threads == reference", threads);
        KBT_CHECK(st, memcmp(a, c, n * sizeof(float)) == 0, name, "differs");
        kb_rand_uniform(&ctx, c, n, 99, 3, -1.0f, 1.0f, &err);
        kb_rand_uniform_ref(b, n, 99, 3, -1.0f, 1.0f);
        snprintf(name, sizeof name, "fast CPU uniform fill with %d threads == reference", threads);
        KBT_CHECK(st, memcmp(b, c, n * sizeof(float)) == 0, name, "differs");
        kb_ctx_free(&ctx);
    }
    free(a), free(b), free(c);
}

static void test_below(kbt_state *st) {
    static const uint32_t ns[] = {1, 2, 3, 7, 10, 1000, 0x80000001u, 0xC0000000u, 0xFFFFFFFFu};
    kb_rng r;
    kb_rng_init(&r, 31337, 0);
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int ok = 1;
        for (int i = 0; i < 100000; i++) ok &= kb_rng_below(&r, ns[k]) < ns[k];
        char name[64];
        snprintf(name, sizeof name, "kb_rng_below(%u) in range", ns[k]);
        KBT_CHECK(st, ok, name, "out of range");
    }
    /* chi-square, 10 cells, 1e6 draws: 9 dof, p = 1e-4 at 33.7 */
    int64_t cnt[10] = {0};
    for (int i = 0; i < NSAMP; i++) cnt[kb_rng_below(&r, 10)]++;
    double chi = 0;
    for (int i = 0; i < 10; i++) chi += (cnt[i] - NSAMP / 10.0) * (cnt[i] - NSAMP / 10.0) / (NSAMP / 10.0);
    printf("kb_rng_below(10): chi-square %.2f (9 dof; limit 33.7)\n", chi);
    KBT_CHECK(st, chi < 33.7, "kb_rng_below(10) chi-square < 33.7", "%.2f", chi);
    /* n = 3*2^30: plain modulo would put 1/2 of the draws below 2^30, unbiased is 1/3 */
    int64_t low = 0;
    for (int i = 0; i < 300000; i++) low += kb_rng_below(&r, 0xC0000000u) < 0x40000000u;
    double frac = (double)low / 300000;
    printf("kb_rng_below(3*2^30): fraction below 2^30 = %.4f (unbiased 0.3333, modulo 0.5)\n", frac);
    KBT_CHECK(st, fabs(frac - 1.0 / 3) < 0.005, "kb_rng_below rejects (no modulo bias)", "%.4f", frac);
}

int main(void) {
    kbt_state st = {0, 0};
    test_kat(&st);
    test_distributions(&st);
    test_portable_math(&st);
    test_repeat_and_threads(&st);
    test_below(&st);
    return kbt_finish(&st);
}
