/* The convolution and pooling ops of nn/ops_conv.h: the fast CPU path (and
 * the dispatcher with its chunked im2col workspace) against the plain
 * references, on the shapes the FID Inception uses and awkward ones (channel
 * slices in and out, 1x7/7x1 with padding, stride 2, a 3-channel input, a
 * workspace that holds a single output row), with 1 and 2 threads.
 *
 * Tolerances:
 *   conv2d: |got - ref| <= 1e-5 * max|ref| + 1e-5 * |ref| (float GEMM against
 *     a double-accumulated reference);
 * *   max pool: bit-identical; avg pool: |d| <= 1e-6 + 1e-6 |ref| (inputs in [-1, 1]; float sums in window order
 *     against double); global avg pool: bit-identical (both sum in double in
 *     pixel order);
 *   a rerun with the same thread count is bit-identical;
 *   channels outside a written slice are untouched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "nn/backend.h"
#include "nn/ops_conv.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;

static float frand(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static float *rand_buf(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = frand(&g_rng);
    return p;
}

/* Output buffer pre-filled with a sentinel so untouched channels can be checked. */
static float *sentinel_buf(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) p[i] = 1234.5f;
    return p;
}

static int slice_untouched(const float *o, int64_t pixels, int64_t k, int64_t ldo, int64_t c0) {
    for (int64_t p = 0; p < pixels; p++)
        for (int64_t j = 0; j < ldo; j++)
            if ((j < c0 || j >= c0 + k) && o[p * ldo + j] != 1234.5f) return 0;
    return 1;
}

/* Compares the k channels at c0 of ldo-strided outputs. */
static void compare_slice(kbt_state *st, const char *name, const float *got, const float *ref, int64_t pixels,
                          int64_t k, int64_t ldo, int64_t c0, double atol, double rtol) {
    float *a = malloc(sizeof(float) * (size_t)(pixels * k)), *b = malloc(sizeof(float) * (size_t)(pixels * k));
    for (int64_t p = 0; p < pixels; p++)
        for (int64_t j = 0; j < k; j++) a[p * k + j] = got[p * ldo + c0 + j], b[p * k + j] = ref[p * ldo + c0 + j];
    if (atol < 0.0) atol = -atol * kbt_max_abs(b, pixels * k); /* relative to the largest reference value */
    if (atol == 0.0 && rtol == 0.0)
        KBT_CHECK(st, !memcmp(a, b, sizeof(float) * (size_t)(pixels * k)), name, "not bit-identical to the reference");
    else kbt_close(st, name, a, b, pixels * k, atol, rtol);
    free(a);
    free(b);
}

typedef struct {
    const char *name;
    kb_conv2d_desc d;
    int64_t c0_in, c0_out; /* channel offsets of the slices */
    size_t ws_cap_bytes;   /* engine workspace cap (0: default) */
    int bias;
} conv_case;

static void test_conv(kbt_state *st, kb_ctx *ctx, const conv_case *cc, int threads) {
    kb_conv2d_desc d = cc->d;
    int64_t oh = kb_conv2d_out_h(&d), ow = kb_conv2d_out_w(&d), opx = d.n * oh * ow;
    int64_t taps = (int64_t)d.kh * d.kw * d.c;
    float *in = rand_buf(d.n * d.h * d.w * d.ldi), *w = rand_buf(d.k * taps), *b = cc->bias ? rand_buf(d.k) : NULL;
    float *ref = sentinel_buf(opx * d.ldo), *got = sentinel_buf(opx * d.ldo), *again = sentinel_buf(opx * d.ldo);
    kb_conv2d_ref(&d, ref + cc->c0_out, in + cc->c0_in, w, b);
    kb_err err = {0};
    ctx->threads = threads;
    kb_conv_engine *e = kb_conv_engine_create(ctx, cc->ws_cap_bytes, &err);
    int rc = !e || kb_conv2d_fwd(ctx, e, &d, got + cc->c0_out, in + cc->c0_in, w, b, &err) ||
             kb_conv2d_fwd(ctx, e, &d, again + cc->c0_out, in + cc->c0_in, w, b, &err);
    char name[160];
    snprintf(name, sizeof name, "conv %s (%d threads)", cc->name, threads);
    KBT_CHECK(st, rc == 0, name, "failed: %s", err.msg);
    if (!rc) {
        compare_slice(st, name, got, ref, opx, d.k, d.ldo, cc->c0_out, -1e-5, 1e-5);
        snprintf(name, sizeof name, "conv %s (%d threads) rerun bit-identical, other channels untouched", cc->name, threads);
        KBT_CHECK(st, !memcmp(got, again, sizeof(float) * (size_t)(opx * d.ldo)) && slice_untouched(got, opx, d.k, d.ldo, cc->c0_out),
                  name, "rerun differs or a channel outside the slice was written");
    }
    kb_conv_engine_free(e);
    free(in), free(w), free(b), free(ref), free(got), free(again);
}

static const conv_case kConv[] = {
    {"1x1 35x35 192->64", {2, 35, 35, 192, 192, 64, 1, 1, 1, 1, 0, 0, 64, 1}, 0, 0, 0, 1},
    {"1x1 into a slice (ldo 256, c0 64), input slice (ldi 200, c0 8)", {2, 9, 11, 192, 200, 48, 1, 1, 1, 1, 0, 0, 256, 1}, 8, 64, 0, 1},
    {"3x3 s2 stem 3->32", {2, 33, 31, 3, 3, 32, 3, 3, 2, 2, 0, 0, 32, 1}, 0, 0, 0, 1},
    {"3x3 p1 32->64", {2, 21, 19, 32, 32, 64, 3, 3, 1, 1, 1, 1, 64, 1}, 0, 0, 0, 1},
    {"5x5 p2 48->64, no relu, no bias", {1, 13, 13, 48, 48, 64, 5, 5, 1, 1, 2, 2, 64, 0}, 0, 0, 0, 0},
    {"1x7 p(0,3) 160->160", {2, 17, 17, 160, 160, 160, 1, 7, 1, 1, 0, 3, 160, 1}, 0, 0, 0, 1},
    {"7x1 p(3,0) into slice", {2, 17, 17, 128, 128, 192, 7, 1, 1, 1, 3, 0, 768, 1}, 0, 192, 0, 1},
    {"1x3 / 3x1 slice input (ldi 1344)", {1, 8, 8, 384, 1344, 384, 3, 1, 1, 1, 1, 0, 384, 1}, 320, 0, 0, 1},
    {"3x3 s2 valid 288->384", {2, 35, 35, 288, 288, 384, 3, 3, 2, 2, 0, 0, 384, 1}, 0, 0, 0, 1},
    {"3x3 p1, workspace of one output row", {3, 10, 7, 16, 16, 24, 3, 3, 1, 1, 1, 1, 24, 1}, 0, 0, 1, 1},
    {"kernel as large as the padded input", {2, 3, 4, 5, 5, 6, 5, 6, 1, 1, 1, 1, 6, 1}, 0, 0, 0, 1},
};

typedef struct {
    const char *name;
    kb_pool2d_desc d;
    int64_t c0_in, c0_out;
} pool_case;

static const pool_case kPool[] = {
    {"3x3 s1 p1 35x35x192", {2, 35, 35, 192, 192, 192, 3, 1, 1}, 0, 0},
    {"3x3 s2 valid 147x147x64", {2, 147, 147, 64, 64, 64, 3, 2, 0}, 0, 0},
    {"3x3 s2 into a slice (ldo 768, c0 480)", {2, 35, 35, 288, 288, 768, 3, 2, 0}, 0, 480},
    {"3x3 s1 p1 odd sizes, input slice", {1, 5, 4, 7, 12, 7, 3, 1, 1}, 3, 0},
    {"2x2 s1 p1 (uneven windows)", {1, 6, 5, 3, 3, 3, 2, 1, 1}, 0, 0},
};

static void test_pool(kbt_state *st, kb_ctx *ctx, const pool_case *pc, int threads, int avg) {
    kb_pool2d_desc d = pc->d;
    int64_t opx = d.n * kb_pool2d_out_h(&d) * kb_pool2d_out_w(&d);
    float *in = rand_buf(d.n * d.h * d.w * d.ldi), *ref = sentinel_buf(opx * d.ldo), *got = sentinel_buf(opx * d.ldo);
    kb_err err = {0};
    ctx->threads = threads;
    if (avg) kb_avgpool2d_ref(&d, ref + pc->c0_out, in + pc->c0_in);
    else kb_maxpool2d_ref(&d, ref + pc->c0_out, in + pc->c0_in);
    int rc = avg ? kb_avgpool2d_fwd(ctx, &d, got + pc->c0_out, in + pc->c0_in, &err)
                 : kb_maxpool2d_fwd(ctx, &d, got + pc->c0_out, in + pc->c0_in, &err);
    char name[160];
    snprintf(name, sizeof name, "%s pool %s (%d threads)", avg ? "avg" : "max", pc->name, threads);
    KBT_CHECK(st, rc == 0 && slice_untouched(got, opx, d.c, d.ldo, pc->c0_out), name, "failed or wrote outside its slice: %s", err.msg);
    compare_slice(st, name, got, ref, opx, d.c, d.ldo, pc->c0_out, avg ? 1e-6 : 0.0, avg ? 1e-6 : 0.0);
    free(in), free(ref), free(got);
}

static void test_global(kbt_state *st, kb_ctx *ctx, int threads) {
    int64_t n = 3, hw = 64, c = 2048, ldi = 2100;
    float *in = rand_buf(n * hw * ldi), *ref = malloc(sizeof(float) * n * c), *got = malloc(sizeof(float) * n * c);
    kb_err err = {0};
    ctx->threads = threads;
    kb_global_avgpool_ref(ref, in, n, hw, c, ldi);
    int rc = kb_global_avgpool_fwd(ctx, got, in, n, hw, c, ldi, &err);
    char name[96];
    snprintf(name, sizeof name, "global avg pool 8x8x2048 (ldi 2100, %d threads) bit-identical", threads);
    KBT_CHECK(st, rc == 0 && !memcmp(got, ref, sizeof(float) * n * c), name, "differs: %s", err.msg);
    free(in), free(ref), free(got);
}

/* The references themselves on tiny hand-checked cases. */
static void test_ref_known(kbt_state *st) {
    /* 3x3 image 1..9, 3x3 max/avg s1 p1 at the corner and centre. */
    float img[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, out[9];
    kb_pool2d_desc d = {1, 3, 3, 1, 1, 1, 3, 1, 1};
    kb_avgpool2d_ref(&d, out, img);
    KBT_CHECK(st, out[0] == 3.0f && out[4] == 5.0f && out[8] == 7.0f && out[1] == 3.5f, "avg pool excludes padding",
              "corner %g (want (1+2+4+5)/4=3), edge %g (want 3.5), centre %g", out[0], out[1], out[4]);
    kb_maxpool2d_ref(&d, out, img);
    KBT_CHECK(st, out[0] == 5.0f && out[8] == 9.0f, "max pool ignores padding", "corner %g %g", out[0], out[8]);
    /* conv: all-ones 3x3 kernel, padding 1, bias 0.5 -> corner = 1+2+4+5 + 0.5 */
    float w[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, bias = 0.5f;
    kb_conv2d_desc c = {1, 3, 3, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 0};
    kb_conv2d_ref(&c, out, img, w, &bias);
    KBT_CHECK(st, out[0] == 12.5f && out[4] == 45.5f, "conv reference zero-pads", "corner %g centre %g", out[0], out[4]);
}

/* NaN as PyTorch treats it (F.relu and max_pool2d propagate it), the same in
 * the reference and the fast path: a NaN pixel anywhere in a max-pool
 * window makes the output NaN (the fast path used to pass it only when it
 * was the window's first element, the reference never), and a NaN reaching
 * a convolution's ReLU stays NaN (the fast path's bias + ReLU made it 0). */
static void test_nan(kbt_state *st, kb_ctx *ctx, int threads) {
    float img[9] = {1, 2, 3, 4, 5, 6, 7, 8, NAN}, ref[9], got[9];
    kb_err err = {0};
    ctx->threads = threads;
    img[0] = NAN; /* first element of the corner windows, last of the centre one */
    kb_pool2d_desc d = {1, 3, 3, 1, 1, 1, 3, 1, 1};
    kb_maxpool2d_ref(&d, ref, img);
    int rc = kb_maxpool2d_fwd(ctx, &d, got, img, &err);
    for (int i = 0; i < 9; i++) { /* the 3x3 s1 p1 windows all hold (0,0) or (2,2) but at (0,2) and (2,0) */
        int y = i / 3, x = i % 3, has_nan = (y <= 1 && x <= 1) || (y >= 1 && x >= 1);
        float want = y == 0 ? 6.0f : 8.0f; /* max of the window at (0,2): 2,3,5,6; at (2,0): 4,5,7,8 */
        KBT_CHECK(st, rc == 0 && (has_nan ? isnan(ref[i]) && isnan(got[i]) : ref[i] == want && got[i] == want),
                  "max pool propagates NaN (as torch)", "output %d: reference %g, fast path %g (%d threads) %s", i,
                  (double)ref[i], (double)got[i], threads, err.msg);
    }
    /* 1x1 conv with ReLU: identity weight, bias 0 (pointwise path) and a 3x3 one (im2col path) */
    float w1 = 1.0f, b0 = 0.0f, w9[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
    kb_conv2d_desc c1 = {1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1}, c3 = {1, 3, 3, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1};
    kb_conv_engine *e = kb_conv_engine_create(ctx, 0, &err);
    for (int k = 0; k < 2; k++) {
        const kb_conv2d_desc *c = k ? &c3 : &c1;
        const float *w = k ? w9 : &w1;
        kb_conv2d_ref(c, ref, img, w, &b0);
        rc = !e || kb_conv2d_fwd(ctx, e, c, got, img, w, &b0, &err);
        int same = rc == 0 && isnan(ref[0]) && isnan(ref[8]); /* 1x1: NaN at 0 and 8 only; 3x3: NaN everywhere (0 * NaN) */
        for (int i = 0; i < 9; i++) same = same && (isnan(ref[i]) ? isnan(got[i]) : got[i] == ref[i]);
        KBT_CHECK(st, same, "conv + ReLU keeps NaN (as torch)", "%s: reference %g %g %g, fast path %g %g %g (%d threads) %s",
                  k ? "3x3" : "1x1", (double)ref[0], (double)ref[4], (double)ref[8], (double)got[0], (double)got[4],
                  (double)got[8], threads, err.msg);
    }
    kb_conv_engine_free(e);
}

static void test_checks(kbt_state *st, kb_ctx *ctx) {
    kb_err err = {0};
    kb_conv2d_desc bad = {1, 4, 4, 8, 4, 8, 3, 3, 1, 1, 0, 0, 8, 1};
    KBT_CHECK(st, kb_conv2d_check(&bad, &err) != 0 && strstr(err.msg, "ldi"), "conv rejects ldi < c", "%s", err.msg);
    kb_pool2d_desc badp = {1, 4, 4, 8, 8, 8, 3, 1, 2};
    KBT_CHECK(st, kb_maxpool2d_fwd(ctx, &badp, NULL, NULL, &err) != 0 && strstr(err.msg, "p <= k/2"),
              "pool rejects padding > k/2", "%s", err.msg);
}

int main(void) {
    kbt_state st = {0};
    kb_ctx ctx;
    kb_err err = {0};
    if (kb_ctx_init(&ctx, KB_DEV_CPU, NULL, &err)) {
        printf("ctx: %s\n", err.msg);
        return 1;
    }
    test_ref_known(&st);
    test_checks(&st, &ctx);
    for (int t = 1; t <= 2; t++) {
        for (size_t i = 0; i < sizeof kConv / sizeof kConv[0]; i++) test_conv(&st, &ctx, &kConv[i], t);
        for (size_t i = 0; i < sizeof kPool / sizeof kPool[0]; i++) {
            test_pool(&st, &ctx, &kPool[i], t, 0);
            test_pool(&st, &ctx, &kPool[i], t, 1);
        }
        test_global(&st, &ctx, t);
        test_nan(&st, &ctx, t);
    }
    kb_ctx_free(&ctx);
    return kbt_finish(&st);
}
