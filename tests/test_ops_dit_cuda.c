/* The CUDA DiT-layer and optimiser ops against their C references.
 * Skipped (exit 77, "skipped: no GPU") without a CUDA build or a GPU.
 * Tolerances: every op but timestep_freq is bit-identical (the kernels round
 * each operation as the reference does and sum tokens in the same order);
 * timestep_freq uses CUDA's expf/cosf/sinf (<= 2 ulp), and an ulp of
 * f at t = 999 moves the argument by ~6e-5 rad: |gpu - ref| <= 1e-4.
 * kb_sumsq: rel 1e-12 (different summation tree). LayerNorm fused with
 * modulation: the GPU's own LayerNorm and modulate kernels in sequence give
 * its output and dx bit for bit; against the reference (double sums in
 * another order) within 1e-6 of scale, and its dshift/dscale (summed over
 * tokens in chunks of 16) within 1e-5 of scale. Reruns are bit-identical. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "nn/backend.h"
#include "nn/ops.h"
#include "nn/ops_dit.h"
#include "nn/ops_optim.h"
#include "nn/ops_scalar.h"
#include "nn/rng.h"

typedef struct {
    kbt_state st;
    kb_ctx ctx;
    kb_err err;
} env;

static float *host_rand(int64_t n, uint64_t stream) {
    float *p = malloc((size_t)(n ? n : 1) * 4);
    for (int64_t i = 0; i < n; i++) p[i] = kb_rng_normal_scaled(3, stream, (uint64_t)i, 0.0f, 1.0f);
    return p;
}

static float *to_dev(env *e, const float *h, int64_t n) {
    float *d = kb_dev_alloc(&e->ctx, (size_t)(n ? n : 1) * 4, &e->err);
    if (d) kb_copy_to_dev(&e->ctx, d, h, (size_t)n * 4, &e->err);
    return d;
}

static void expect_same(env *e, const char *name, float *dev, const float *ref, int64_t n, double atol) {
    float *h = malloc((size_t)(n ? n : 1) * 4);
    kb_copy_to_host(&e->ctx, h, dev, (size_t)n * 4, &e->err);
    if (atol == 0.0) KBT_CHECK(&e->st, !memcmp(h, ref, (size_t)n * 4), name, "GPU result differs from the reference bits");
    else kbt_close(&e->st, name, h, ref, n, atol, 0.0);
    free(h);
}

static void test_modulate_gate(env *e, int64_t B, int64_t T, int64_t D) {
    int64_t n = B * T * D, ld = 6 * D, nc = B * ld;
    float *x = host_rand(n, 1), *cond = host_rand(nc, 2), *dout = host_rand(n, 3), *y = host_rand(n, 4);
    float *o = host_rand(n, 5), *dx = host_rand(n, 6), *dc = host_rand(nc, 7);
    float *gx = to_dev(e, x, n), *gc = to_dev(e, cond, nc), *gd = to_dev(e, dout, n), *gy = to_dev(e, y, n);
    float *go = to_dev(e, o, n), *gdx = to_dev(e, dx, n), *gdc = to_dev(e, dc, nc);
    kb_modulate_fwd_ref(o, x, cond, cond + D, ld, B, T, D);
    kb_modulate_fwd(&e->ctx, go, gx, gc, gc + D, ld, B, T, D, &e->err);
    expect_same(e, "modulate_fwd bit-identical", go, o, n, 0.0);
    kb_modulate_bwd_ref(dx, dc, dc + D, dout, x, cond + D, ld, B, T, D, KB_GRAD_ADD);
    kb_modulate_bwd(&e->ctx, gdx, gdc, gdc + D, gd, gx, gc + D, ld, B, T, D, KB_GRAD_ADD, &e->err);
    expect_same(e, "modulate_bwd dx bit-identical", gdx, dx, n, 0.0);
    expect_same(e, "modulate_bwd dshift/dscale bit-identical", gdc, dc, nc, 0.0);
    kb_gated_add_fwd_ref(x, x, cond + 2 * D, y, ld, B, T, D); /* in place */
    kb_gated_add_fwd(&e->ctx, gx, gx, gc + 2 * D, gy, ld, B, T, D, &e->err);
    expect_same(e, "gated_add_fwd bit-identical", gx, x, n, 0.0);
    kb_gated_add_fwd_ref(o, x, cond + 2 * D, y, ld, B, T, D); /* out of place */
    kb_gated_add_fwd(&e->ctx, go, gx, gc + 2 * D, gy, ld, B, T, D, &e->err);
    expect_same(e, "gated_add_fwd out of place bit-identical", go, o, n, 0.0);
    kb_gated_add_bwd_ref(dx, dc + 2 * D, dout, y, cond + 2 * D, ld, B, T, D, KB_GRAD_ADD);
    kb_gated_add_bwd(&e->ctx, gdx, gdc + 2 * D, gd, gy, gc + 2 * D, ld, B, T, D, KB_GRAD_ADD, &e->err);
    expect_same(e, "gated_add_bwd dy bit-identical", gdx, dx, n, 0.0);
    expect_same(e, "gated_add_bwd dgate bit-identical", gdc, dc, nc, 0.0);
    /* KB_GRAD_SET: dx/dy written over (their old contents stay as they are on both sides: random) */
    kb_modulate_bwd_ref(dx, dc, dc + D, dout, x, cond + D, ld, B, T, D, KB_GRAD_SET);
    kb_modulate_bwd(&e->ctx, gdx, gdc, gdc + D, gd, gx, gc + D, ld, B, T, D, KB_GRAD_SET, &e->err);
    expect_same(e, "modulate_bwd KB_GRAD_SET dx bit-identical", gdx, dx, n, 0.0);
    expect_same(e, "modulate_bwd KB_GRAD_SET dshift/dscale bit-identical", gdc, dc, nc, 0.0);
    kb_gated_add_bwd_ref(dx, dc + 2 * D, dout, y, cond + 2 * D, ld, B, T, D, KB_GRAD_SET);
    kb_gated_add_bwd(&e->ctx, gdx, gdc + 2 * D, gd, gy, gc + 2 * D, ld, B, T, D, KB_GRAD_SET, &e->err);
    expect_same(e, "gated_add_bwd KB_GRAD_SET dy bit-identical", gdx, dx, n, 0.0);
    expect_same(e, "gated_add_bwd KB_GRAD_SET dgate bit-identical", gdc, dc, nc, 0.0);
    float *bufs[] = {gx, gc, gd, gy, go, gdx, gdc};
    for (int i = 0; i < 7; i++) kb_dev_free(&e->ctx, bufs[i]);
    free(x), free(cond), free(dout), free(y), free(o), free(dx), free(dc);
}

/* gated_add_bwd_x16 on the GPU: bf16 of the fp32 op's dy (KB_GRAD_SET), dgate bit for bit. */
static void test_gated_x16(env *e, int64_t B, int64_t T, int64_t D) {
    int64_t n = B * T * D, ld = 6 * D, nc = B * ld;
    float *dx = host_rand(n, 21), *y = host_rand(n, 22), *cond = host_rand(nc, 23), *dc0 = host_rand(nc, 24);
    float *gdx = to_dev(e, dx, n), *gy = to_dev(e, y, n), *gc = to_dev(e, cond, nc), *gdc = to_dev(e, dc0, nc);
    float *gdy = to_dev(e, dx, n), *dy = malloc((size_t)n * 4), *dc1 = malloc((size_t)nc * 4);
    uint16_t *gdy16 = kb_dev_alloc(&e->ctx, (size_t)n * 2, &e->err), *dy16 = malloc((size_t)n * 2);
    uint16_t *want = malloc((size_t)n * 2);
    kb_gated_add_bwd(&e->ctx, gdy, gdc, gdx, gy, gc + 2 * D, ld, B, T, D, KB_GRAD_SET, &e->err);
    kb_copy_to_host(&e->ctx, dy, gdy, (size_t)n * 4, &e->err);
    kb_copy_to_host(&e->ctx, dc1, gdc, (size_t)nc * 4, &e->err);
    kb_copy_to_dev(&e->ctx, gdc, dc0, (size_t)nc * 4, &e->err);
    kb_gated_add_bwd_x16(&e->ctx, gdy16, gdc, gdx, gy, NULL, gc + 2 * D, ld, B, T, D, &e->err);
    kb_copy_to_host(&e->ctx, dy16, gdy16, (size_t)n * 2, &e->err);
    for (int64_t i = 0; i < n; i++) want[i] = kb_sc_f32_to_bf16(dy[i]);
    KBT_CHECK(&e->st, !memcmp(dy16, want, (size_t)n * 2), "gated_add_bwd_x16 dy16 = bf16(gated_add_bwd dy) (bits)",
              "differs");
    expect_same(e, "gated_add_bwd_x16 dgate = gated_add_bwd's (bits)", gdc, dc1, nc, 0.0);
    /* y as bf16 bits (y16) = y as the same values widened, dgate from the same start */
    uint16_t *y16 = malloc((size_t)n * 2), *gy16 = kb_dev_alloc(&e->ctx, (size_t)n * 2, &e->err);
    for (int64_t i = 0; i < n; i++) y16[i] = kb_sc_f32_to_bf16(y[i]), y[i] = kb_sc_bf16_to_f32(y16[i]);
    kb_copy_to_dev(&e->ctx, gy16, y16, (size_t)n * 2, &e->err);
    kb_copy_to_dev(&e->ctx, gy, y, (size_t)n * 4, &e->err);
    kb_copy_to_dev(&e->ctx, gdc, dc0, (size_t)nc * 4, &e->err);
    kb_gated_add_bwd_x16(&e->ctx, gdy16, gdc, gdx, gy, NULL, gc + 2 * D, ld, B, T, D, &e->err);
    kb_copy_to_host(&e->ctx, want, gdy16, (size_t)n * 2, &e->err);
    kb_copy_to_host(&e->ctx, dc1, gdc, (size_t)nc * 4, &e->err);
    kb_copy_to_dev(&e->ctx, gdc, dc0, (size_t)nc * 4, &e->err);
    kb_gated_add_bwd_x16(&e->ctx, gdy16, gdc, gdx, NULL, gy16, gc + 2 * D, ld, B, T, D, &e->err);
    kb_copy_to_host(&e->ctx, dy16, gdy16, (size_t)n * 2, &e->err);
    KBT_CHECK(&e->st, !memcmp(dy16, want, (size_t)n * 2), "gated_add_bwd_x16: y16 = y widened, dy16 (bits)", "differs");
    expect_same(e, "gated_add_bwd_x16: y16 = y widened, dgate (bits)", gdc, dc1, nc, 0.0);
    kb_dev_free(&e->ctx, gy16), free(y16);
    float *bufs[] = {gdx, gy, gc, gdc, gdy};
    for (int i = 0; i < 5; i++) kb_dev_free(&e->ctx, bufs[i]);
    kb_dev_free(&e->ctx, gdy16);
    free(dx), free(y), free(cond), free(dc0), free(dy), free(dc1), free(dy16), free(want);
}

static float *host_copy(env *e, const float *dev, int64_t n) {
    float *h = malloc((size_t)(n ? n : 1) * 4);
    kb_copy_to_host(&e->ctx, h, dev, (size_t)n * 4, &e->err);
    return h;
}

/* LayerNorm + modulation, fused, against the GPU's two separate ops and the
 * fused reference; T not a multiple of the 16-token chunks, widths over 256
 * (several columns per thread). */
static void test_ln_modulate(env *e, int64_t B, int64_t T, int64_t D) {
    int64_t n = B * T * D, ld = 6 * D, nc = B * ld, rows = B * T;
    float *x = host_rand(n, 11), *cond = host_rand(nc, 12), *dout = host_rand(n, 13), *dx = host_rand(n, 14);
    float *dc = host_rand(nc, 15), *o = malloc((size_t)n * 4), *stats = malloc(2 * (size_t)rows * 4);
    for (int64_t i = 0; i < n; i++) x[i] = 3.0f * x[i] + 0.5f;
    float *gx = to_dev(e, x, n), *gc = to_dev(e, cond, nc), *gd = to_dev(e, dout, n);
    float *go = to_dev(e, x, n), *gp = to_dev(e, x, n), *gs = to_dev(e, x, 2 * rows), *gsp = to_dev(e, x, 2 * rows);
    float *gdx = to_dev(e, dx, n), *gdxp = to_dev(e, dx, n), *gdc = to_dev(e, dc, nc), *gdcp = to_dev(e, dc, nc);
    float *gg = to_dev(e, x, n);
    char name[160];
    kb_ln_modulate_fwd_ref(o, stats, stats + rows, x, cond, cond + D, ld, B, T, D, 1e-6f);
    kb_ln_modulate_fwd(&e->ctx, go, gs, gs + rows, gx, gc, gc + D, ld, B, T, D, 1e-6f, &e->err);
    kb_layernorm_fwd(&e->ctx, gp, gsp, gsp + rows, gx, NULL, NULL, rows, D, 1e-6f, &e->err);
    kb_modulate_fwd(&e->ctx, gp, gp, gc, gc + D, ld, B, T, D, &e->err);
    float *h_o = host_copy(e, go, n), *h_s = host_copy(e, gs, 2 * rows);
    snprintf(name, sizeof name, "ln_modulate_fwd B=%lld T=%lld D=%lld = GPU layernorm then modulate (bits)", (long long)B,
             (long long)T, (long long)D);
    expect_same(e, name, gp, h_o, n, 0.0);
    expect_same(e, "ln_modulate_fwd statistics = GPU layernorm's (bits)", gsp, h_s, 2 * rows, 0.0);
    expect_same(e, "ln_modulate_fwd vs reference (1e-6 of scale)", go, o, n, 1e-6 * kbt_max_abs(o, n));
    /* backward: the GPU pair is modulate_bwd into g, then layernorm_bwd of g accumulating into dx */
    kb_ln_modulate_bwd_ref(dx, dc, dc + D, dout, x, stats, stats + rows, cond + D, ld, B, T, D);
    kb_ln_modulate_bwd(&e->ctx, gdx, gdc, gdc + D, gd, gx, gs, gs + rows, gc + D, ld, B, T, D, &e->err);
    kb_layernorm_fwd(&e->ctx, gp, NULL, NULL, gx, NULL, NULL, rows, D, 1e-6f, &e->err); /* LN(x) for the pair */
    kb_modulate_bwd(&e->ctx, gg, gdcp, gdcp + D, gd, gp, gc + D, ld, B, T, D, KB_GRAD_SET, &e->err);
    kb_layernorm_bwd(&e->ctx, gdxp, NULL, NULL, gg, gx, NULL, gsp, gsp + rows, rows, D, &e->err);
    float *h_dx = host_copy(e, gdx, n), *h_dc = host_copy(e, gdc, nc);
    expect_same(e, "ln_modulate_bwd dx = GPU modulate_bwd then layernorm_bwd (bits)", gdxp, h_dx, n, 0.0);
    expect_same(e, "ln_modulate_bwd dx vs reference (1e-6 of scale)", gdx, dx, n, 1e-6 * kbt_max_abs(dx, n));
    expect_same(e, "ln_modulate_bwd dshift/dscale vs reference (1e-5 of scale)", gdc, dc, nc, 1e-5 * kbt_max_abs(dc, nc));
    /* the bf16-output form: bf16 of the fp32 op's output, statistics the same */
    uint16_t *go16 = kb_dev_alloc(&e->ctx, (size_t)n * 2, &e->err);
    kb_ln_modulate_fwd_x16(&e->ctx, go16, gsp, gsp + rows, gx, gc, gc + D, ld, B, T, D, 1e-6f, &e->err);
    uint16_t *h16 = malloc((size_t)n * 2), *want16 = malloc((size_t)n * 2);
    kb_copy_to_host(&e->ctx, h16, go16, (size_t)n * 2, &e->err);
    for (int64_t i = 0; i < n; i++) want16[i] = kb_sc_f32_to_bf16(h_o[i]);
    KBT_CHECK(&e->st, !memcmp(h16, want16, (size_t)n * 2), "ln_modulate_fwd_x16 = bf16(ln_modulate_fwd) (bits)",
              "differs");
    expect_same(e, "ln_modulate_fwd_x16 statistics (bits)", gsp, h_s, 2 * rows, 0.0);
    kb_dev_free(&e->ctx, go16), free(h16), free(want16);
    /* dout as bf16 (dout16): bit for bit the fp32 backward on its widened values */
    {
        uint16_t *d16 = malloc((size_t)n * 2), *gd16 = kb_dev_alloc(&e->ctx, (size_t)n * 2, &e->err);
        float *dw = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) d16[i] = kb_sc_f32_to_bf16(dout[i]), dw[i] = kb_sc_bf16_to_f32(d16[i]);
        float *gdw = to_dev(e, dw, n), *gxa = to_dev(e, h_dx, n), *gxb = to_dev(e, h_dx, n);
        float *gca = to_dev(e, h_dc, nc), *gcb = to_dev(e, h_dc, nc);
        kb_copy_to_dev(&e->ctx, gd16, d16, (size_t)n * 2, &e->err);
        kb_ln_modulate_bwd(&e->ctx, gxa, gca, gca + D, gdw, gx, gs, gs + rows, gc + D, ld, B, T, D, &e->err);
        int rc = kb_ln_modulate_bwd_x16(&e->ctx, gxb, gcb, gcb + D, gd16, gx, gs, gs + rows, gc + D, ld, B, T, D, &e->err);
        float *h_xa = host_copy(e, gxa, n), *h_ca = host_copy(e, gca, nc);
        KBT_CHECK(&e->st, rc == 0, "ln_modulate_bwd_x16 runs", "%s", e->err.msg);
        expect_same(e, "ln_modulate_bwd_x16 dx = ln_modulate_bwd on dout16 widened (bits)", gxb, h_xa, n, 0.0);
        expect_same(e, "ln_modulate_bwd_x16 dshift/dscale (bits)", gcb, h_ca, nc, 0.0);
        void *bufs[] = {gd16, gdw, gxa, gxb, gca, gcb};
        for (int i = 0; i < 6; i++) kb_dev_free(&e->ctx, bufs[i]);
        free(d16), free(dw), free(h_xa), free(h_ca);
    }
    /* two more runs, each adding to the first run's results, give the same bits */
    for (int run = 0; run < 2; run++) {
        float *rdx = run ? gdxp : gdx, *rdc = run ? gdcp : gdc;
        kb_copy_to_dev(&e->ctx, rdx, h_dx, (size_t)n * 4, &e->err);
        kb_copy_to_dev(&e->ctx, rdc, h_dc, (size_t)nc * 4, &e->err);
        kb_ln_modulate_bwd(&e->ctx, rdx, rdc, rdc + D, gd, gx, gs, gs + rows, gc + D, ld, B, T, D, &e->err);
    }
    float *h_dx2 = host_copy(e, gdx, n), *h_dc2 = host_copy(e, gdc, nc);
    expect_same(e, "ln_modulate_bwd rerun dx bit-identical", gdxp, h_dx2, n, 0.0);
    expect_same(e, "ln_modulate_bwd rerun dshift/dscale bit-identical", gdcp, h_dc2, nc, 0.0);
    float *bufs[] = {gx, gc, gd, go, gp, gs, gsp, gdx, gdxp, gdc, gdcp, gg};
    for (int i = 0; i < 12; i++) kb_dev_free(&e->ctx, bufs[i]);
    free(x), free(cond), free(dout), free(dx), free(dc), free(o), free(stats), free(h_o), free(h_s), free(h_dx);
    free(h_dc), free(h_dx2), free(h_dc2);
}

/* The gated residual fused with the following LayerNorm + modulation: the
 * GPU's gated_add then ln_modulate (fp32 and bf16 out) bit for bit, in place
 * too; the gate and the modulation rows of different strides. */
static void test_gated_ln_modulate(env *e, int64_t B, int64_t T, int64_t D) {
    int64_t n = B * T * D, rows = B * T, gl = 6 * D, ml = 2 * D;
    float *x = host_rand(n, 21), *y = host_rand(n, 22), *gcond = host_rand(B * gl, 23), *mcond = host_rand(B * ml, 24);
    float *gx = to_dev(e, x, n), *gy = to_dev(e, y, n), *gg = to_dev(e, gcond, B * gl), *gm = to_dev(e, mcond, B * ml);
    float *res_p = to_dev(e, x, n), *o_p = to_dev(e, x, n), *s_p = to_dev(e, x, 2 * rows);
    float *res_f = to_dev(e, x, n), *o_f = to_dev(e, x, n), *s_f = to_dev(e, x, 2 * rows), *res_in = to_dev(e, x, n);
    uint16_t *o16 = kb_dev_alloc(&e->ctx, (size_t)n * 2, &e->err), *h16 = malloc((size_t)n * 2);
    uint16_t *want16 = malloc((size_t)n * 2);
    const float *gate = gg + 5 * D, *shift = gm, *scale = gm + D;
    char name[160];
    kb_gated_add_fwd(&e->ctx, res_p, gx, gate, gy, gl, B, T, D, &e->err);
    kb_ln_modulate_fwd(&e->ctx, o_p, s_p, s_p + rows, res_p, shift, scale, ml, B, T, D, 1e-6f, &e->err);
    kb_gated_add_ln_modulate_fwd(&e->ctx, res_f, o_f, NULL, s_f, s_f + rows, gx, gate, gy, NULL, gl, shift, scale, ml, B,
                                 T, D, 1e-6f, &e->err);
    float *h_res = host_copy(e, res_p, n), *h_o = host_copy(e, o_p, n), *h_s = host_copy(e, s_p, 2 * rows);
    snprintf(name, sizeof name, "gated_add_ln_modulate_fwd B=%lld T=%lld D=%lld = GPU gated_add then ln_modulate (bits)",
             (long long)B, (long long)T, (long long)D);
    expect_same(e, name, o_f, h_o, n, 0.0);
    expect_same(e, "gated_add_ln_modulate_fwd residual (bits)", res_f, h_res, n, 0.0);
    expect_same(e, "gated_add_ln_modulate_fwd statistics (bits)", s_f, h_s, 2 * rows, 0.0);
    kb_gated_add_ln_modulate_fwd(&e->ctx, res_in, NULL, o16, s_f, s_f + rows, res_in, gate, gy, NULL, gl, shift, scale,
                                 ml, B, T, D, 1e-6f, &e->err);
    kb_copy_to_host(&e->ctx, h16, o16, (size_t)n * 2, &e->err);
    for (int64_t i = 0; i < n; i++) want16[i] = kb_sc_f32_to_bf16(h_o[i]);
    KBT_CHECK(&e->st, !memcmp(h16, want16, (size_t)n * 2),
              "gated_add_ln_modulate_fwd in place, bf16 out = bf16 of the pair's (bits)", "differs");
    expect_same(e, "gated_add_ln_modulate_fwd in place: residual (bits)", res_in, h_res, n, 0.0);
    /* y as bf16 bits (y16) = y as the same values widened */
    uint16_t *y16 = malloc((size_t)n * 2), *gy16 = kb_dev_alloc(&e->ctx, (size_t)n * 2, &e->err);
    for (int64_t i = 0; i < n; i++) y16[i] = kb_sc_f32_to_bf16(y[i]), y[i] = kb_sc_bf16_to_f32(y16[i]);
    kb_copy_to_dev(&e->ctx, gy16, y16, (size_t)n * 2, &e->err);
    kb_copy_to_dev(&e->ctx, gy, y, (size_t)n * 4, &e->err);
    kb_gated_add_ln_modulate_fwd(&e->ctx, res_p, o_p, NULL, s_p, s_p + rows, gx, gate, gy, NULL, gl, shift, scale, ml, B,
                                 T, D, 1e-6f, &e->err);
    kb_gated_add_ln_modulate_fwd(&e->ctx, res_f, o_f, NULL, s_f, s_f + rows, gx, gate, NULL, gy16, gl, shift, scale, ml,
                                 B, T, D, 1e-6f, &e->err);
    float *h_o2 = host_copy(e, o_p, n), *h_res2 = host_copy(e, res_p, n);
    expect_same(e, "gated_add_ln_modulate_fwd: y16 = y widened, out (bits)", o_f, h_o2, n, 0.0);
    expect_same(e, "gated_add_ln_modulate_fwd: y16 = y widened, residual (bits)", res_f, h_res2, n, 0.0);
    kb_dev_free(&e->ctx, gy16), free(y16), free(h_o2), free(h_res2);
    float *bufs[] = {gx, gy, gg, gm, res_p, o_p, s_p, res_f, o_f, s_f, res_in};
    for (int i = 0; i < 11; i++) kb_dev_free(&e->ctx, bufs[i]);
    kb_dev_free(&e->ctx, o16);
    free(x), free(y), free(gcond), free(mcond), free(h16), free(want16), free(h_res), free(h_o), free(h_s);
}

static void test_patch_embed_freq(env *e) {
    int64_t B = 2, C = 3, H = 8, W = 8, p = 2, n = B * C * H * W;
    float *img = host_rand(n, 8), *tok = malloc(n * 4), *back = malloc(n * 4);
    float *gi = to_dev(e, img, n), *gt = to_dev(e, img, n), *gb = to_dev(e, img, n);
    for (int order = 0; order < 2; order++) {
        kb_patchify_ref(tok, img, B, C, H, W, p, (kb_patch_order)order);
        kb_patchify(&e->ctx, gt, gi, B, C, H, W, p, (kb_patch_order)order, &e->err);
        expect_same(e, order ? "patchify PQC" : "patchify CPQ", gt, tok, n, 0.0);
        kb_unpatchify(&e->ctx, gb, gt, B, C, H, W, p, (kb_patch_order)order, &e->err);
        expect_same(e, "unpatchify inverts", gb, img, n, 0.0);
    }
    int64_t V = 6, D = 33, NB = 7;
    int32_t ids[7] = {5, 0, 5, 1, 2, 5, 3}, *gids = kb_dev_alloc(&e->ctx, sizeof ids, &e->err);
    kb_copy_to_dev(&e->ctx, gids, ids, sizeof ids, &e->err);
    float *table = host_rand(V * D, 9), *dout = host_rand(NB * D, 10), *out = malloc(NB * D * 4);
    float *gtab = to_dev(e, table, V * D), *gdo = to_dev(e, dout, NB * D), *gout = to_dev(e, dout, NB * D);
    kb_embedding_fwd_ref(out, table, ids, NB, D);
    kb_embedding_fwd(&e->ctx, gout, gtab, gids, NB, D, &e->err);
    expect_same(e, "embedding_fwd", gout, out, NB * D, 0.0);
    kb_embedding_bwd_ref(table, dout, ids, NB, D);
    kb_embedding_bwd(&e->ctx, gtab, gdo, gids, NB, D, &e->err);
    expect_same(e, "embedding_bwd bit-identical", gtab, table, V * D, 0.0);
    float t[4] = {0, 1, 500, 999}, freq[4 * 256], *gtt = to_dev(e, t, 4), *gf = kb_dev_alloc(&e->ctx, sizeof freq, &e->err);
    kb_timestep_freq_ref(freq, t, 4, 256, 10000.0f);
    kb_timestep_freq(&e->ctx, gf, gtt, 4, 256, 10000.0f, &e->err);
    expect_same(e, "timestep_freq (|d| <= 1e-6: the same frequencies, the device's cosf/sinf)", gf, freq, 4 * 256, 1e-6);
    /* the context keeps the table: a second call reuses it, another size or period replaces it */
    kb_timestep_freq(&e->ctx, gf, gtt, 4, 256, 10000.0f, &e->err);
    expect_same(e, "timestep_freq again (cached table)", gf, freq, 4 * 256, 1e-6);
    kb_timestep_freq_ref(freq, t, 4, 128, 1000.0f);
    kb_timestep_freq(&e->ctx, gf, gtt, 4, 128, 1000.0f, &e->err);
    expect_same(e, "timestep_freq with another size and period", gf, freq, 4 * 128, 1e-6);
    kb_timestep_freq_ref(freq, t, 4, 256, 10000.0f);
    kb_timestep_freq(&e->ctx, gf, gtt, 4, 256, 10000.0f, &e->err);
    expect_same(e, "timestep_freq back to the first table", gf, freq, 4 * 256, 1e-6);
    float *bufs[] = {gi, gt, gb, gtab, gdo, gout, gtt, gf};
    for (int i = 0; i < 8; i++) kb_dev_free(&e->ctx, bufs[i]);
    kb_dev_free(&e->ctx, gids);
    free(img), free(tok), free(back), free(table), free(dout), free(out);
}

static void test_optim(env *e) {
    int64_t n = 300007;
    float *p = host_rand(n, 11), *g = host_rand(n, 12), *m = host_rand(n, 13), *v = host_rand(n, 14);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *gp = to_dev(e, p, n), *gg = to_dev(e, g, n), *gm = to_dev(e, m, n), *gv = to_dev(e, v, n);
    kb_adamw_scalars s = kb_adamw_make_scalars(1e-3, 0.9, 0.999, 1e-8, 0.01, 7);
    kb_adamw_step_ref(p, g, m, v, n, &s);
    kb_adamw_step(&e->ctx, gp, gg, gm, gv, n, &s, &e->err);
    expect_same(e, "adamw param bit-identical", gp, p, n, 0.0);
    expect_same(e, "adamw moments bit-identical", gv, v, n, 0.0);
    kb_ema_update_ref(m, p, n, 0.9999);
    kb_ema_update(&e->ctx, gm, gp, n, 0.9999, &e->err);
    expect_same(e, "ema bit-identical", gm, m, n, 0.0);
    double want, got, again;
    kb_sumsq_ref(&want, g, n);
    kb_sumsq(&e->ctx, &got, gg, n, &e->err);
    kb_sumsq(&e->ctx, &again, gg, n, &e->err);
    KBT_CHECK(&e->st, fabs(got - want) <= 1e-12 * want && got == again, "sumsq rel 1e-12, rerun identical",
              "gpu %.17g ref %.17g rerun %.17g", got, want, again);
    kb_dev_free(&e->ctx, gp), kb_dev_free(&e->ctx, gg), kb_dev_free(&e->ctx, gm), kb_dev_free(&e->ctx, gv);
    free(p), free(g), free(m), free(v);
}

int main(void) {
    if (!kb_cuda_compiled() || kb_cuda_device_count() == 0) {
        printf("skipped: no GPU (the CUDA DiT and optimiser op tests need a CUDA device)\n");
        return KBT_SKIP_CODE;
    }
    env e;
    memset(&e, 0, sizeof e);
    if (kb_ctx_init(&e.ctx, KB_DEV_CUDA, NULL, &e.err)) {
        printf("FAIL cuda context: %s\n", e.err.msg);
        return 1;
    }
    test_modulate_gate(&e, 3, 17, 13);
    test_modulate_gate(&e, 4, 256, 384);
    test_gated_x16(&e, 3, 17, 13);
    test_gated_x16(&e, 4, 256, 384);
    test_ln_modulate(&e, 3, 17, 13);
    test_gated_ln_modulate(&e, 3, 17, 13);
    test_gated_ln_modulate(&e, 2, 256, 768);
    test_ln_modulate(&e, 4, 256, 384);
    test_ln_modulate(&e, 2, 40, 1152);
    test_patch_embed_freq(&e);
    test_optim(&e);
    KBT_CHECK(&e.st, e.err.msg[0] == 0, "no CUDA errors", "%s", e.err.msg);
    kb_ctx_free(&e.ctx);
    return kbt_finish(&e.st);
}
