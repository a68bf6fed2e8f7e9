/* DiT-layer and optimiser ops: the fast CPU path (1, 2 and 3 threads) against
 * the plain reference. These ops sum in the reference's order, so the
 * comparison is bit-exact; LayerNorm fused with modulation (whose row sums
 * are SIMD, as kb_layernorm_*_cpu's) is bit-exact against the separate fast
 * ops and within rounding of the reference. Known values are checked too (patchify orders,
 * timestep frequencies, AdamW's first step). The CUDA path is checked in
 * test_ops_dit_cuda. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "nn/backend.h"
#include "nn/ops_cpu.h"
#include "nn/ops_dit.h"
#include "nn/ops_ref.h"
#include "nn/ops_optim.h"
#include "nn/ops_scalar.h"
#include "nn/rng.h"

static float *randv(int64_t n, uint64_t stream) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = kb_rng_normal_scaled(7, stream, (uint64_t)i, 0.0f, 1.0f);
    return p;
}

static float *copyv(const float *src, int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

/* KB_GRAD_SET: the gradient output's old contents (random here) are written
 * over, the fast path gives the reference's bits, and the values equal those
 * of KB_GRAD_ADD into zeros; the per-sample sums still accumulate. */
static void check_set_mode(kbt_state *st, int threads, int64_t B, int64_t T, int64_t D, const float *x,
                           const float *cond, const float *dout, const float *y) {
    int64_t n = B * T * D, ld = 6 * D, nc = B * ld;
    float *g_r = randv(n, 20), *g_c = randv(n, 21), *g_0 = calloc((size_t)(n ? n : 1), sizeof(float));
    float *c_r = randv(nc, 22), *c_c = copyv(c_r, nc), *c_0 = copyv(c_r, nc);
    char name[128];
    for (int op = 0; op < 2; op++) {
        if (op == 0) {
            kb_modulate_bwd_ref(g_r, c_r, c_r + D, dout, x, cond + D, ld, B, T, D, KB_GRAD_SET);
            kb_modulate_bwd_cpu(threads, g_c, c_c, c_c + D, dout, x, cond + D, ld, B, T, D, KB_GRAD_SET);
            kb_modulate_bwd_ref(g_0, c_0, c_0 + D, dout, x, cond + D, ld, B, T, D, KB_GRAD_ADD);
        } else {
            kb_gated_add_bwd_ref(g_r, c_r + 2 * D, dout, y, cond + 2 * D, ld, B, T, D, KB_GRAD_SET);
            kb_gated_add_bwd_cpu(threads, g_c, c_c + 2 * D, dout, y, cond + 2 * D, ld, B, T, D, KB_GRAD_SET);
            kb_gated_add_bwd_ref(g_0, c_0 + 2 * D, dout, y, cond + 2 * D, ld, B, T, D, KB_GRAD_ADD);
        }
        int64_t differ = 0;
        for (int64_t i = 0; i < n; i++) differ += g_r[i] != g_0[i];
        snprintf(name, sizeof name, "%s KB_GRAD_SET threads=%d: fast path bit-exact, = add into zeros",
                 op ? "gated_add_bwd" : "modulate_bwd", threads);
        KBT_CHECK(st, same_bits(g_r, g_c, n) && same_bits(c_r, c_c, nc) && differ == 0 && same_bits(c_r, c_0, nc), name,
                  "%lld values differ from add-into-zeros, fast path %s", (long long)differ,
                  same_bits(g_r, g_c, n) && same_bits(c_r, c_c, nc) ? "same" : "differs");
        memset(g_0, 0, (size_t)n * sizeof(float));
    }
    free(g_r), free(g_c), free(g_0), free(c_r), free(c_c), free(c_0);
}

static void test_modulate_and_gate(kbt_state *st, int threads, int64_t B, int64_t T, int64_t D) {
    int64_t n = B * T * D, ld = 6 * D, nc = B * ld;
    float *x = randv(n, 1), *cond = randv(nc, 2), *dout = randv(n, 3), *y = randv(n, 4);
    float *o_ref = randv(n, 5), *o_cpu = copyv(o_ref, n);
    kb_modulate_fwd_ref(o_ref, x, cond, cond + D, ld, B, T, D);
    kb_modulate_fwd_cpu(threads, o_cpu, x, cond, cond + D, ld, B, T, D);
    char name[128];
    snprintf(name, sizeof name, "modulate_fwd B=%lld T=%lld D=%lld threads=%d bit-exact", (long long)B, (long long)T,
             (long long)D, threads);
    KBT_CHECK(st, same_bits(o_ref, o_cpu, n), name, "fast path differs from reference");

    float *dx_r = randv(n, 6), *dx_c = copyv(dx_r, n), *dc_r = randv(nc, 7), *dc_c = copyv(dc_r, nc);
    kb_modulate_bwd_ref(dx_r, dc_r, dc_r + D, dout, x, cond + D, ld, B, T, D, KB_GRAD_ADD);
    kb_modulate_bwd_cpu(threads, dx_c, dc_c, dc_c + D, dout, x, cond + D, ld, B, T, D, KB_GRAD_ADD);
    snprintf(name, sizeof name, "modulate_bwd B=%lld T=%lld D=%lld threads=%d bit-exact", (long long)B, (long long)T,
             (long long)D, threads);
    KBT_CHECK(st, same_bits(dx_r, dx_c, n) && same_bits(dc_r, dc_c, nc), name, "fast path differs from reference");
    check_set_mode(st, threads, B, T, D, x, cond, dout, y);

    float *xr = copyv(x, n), *xc = copyv(x, n);
    kb_gated_add_fwd_ref(xr, xr, cond + 2 * D, y, ld, B, T, D);
    kb_gated_add_fwd_cpu(threads, xc, xc, cond + 2 * D, y, ld, B, T, D);
    snprintf(name, sizeof name, "gated_add_fwd in place threads=%d bit-exact", threads);
    KBT_CHECK(st, same_bits(xr, xc, n), name, "fast path differs from reference");
    kb_gated_add_fwd_cpu(threads, o_cpu, x, cond + 2 * D, y, ld, B, T, D);
    snprintf(name, sizeof name, "gated_add_fwd out of place threads=%d = in place on a copy", threads);
    KBT_CHECK(st, same_bits(xr, o_cpu, n), name, "out-of-place result differs");
    float *dy_r = randv(n, 8), *dy_c = copyv(dy_r, n);
    memcpy(dc_c, dc_r, (size_t)nc * sizeof(float));
    kb_gated_add_bwd_ref(dy_r, dc_r + 2 * D, dout, y, cond + 2 * D, ld, B, T, D, KB_GRAD_ADD);
    kb_gated_add_bwd_cpu(threads, dy_c, dc_c + 2 * D, dout, y, cond + 2 * D, ld, B, T, D, KB_GRAD_ADD);
    snprintf(name, sizeof name, "gated_add_bwd threads=%d bit-exact", threads);
    KBT_CHECK(st, same_bits(dy_r, dy_c, n) && same_bits(dc_r, dc_c, nc), name, "fast path differs from reference");
    free(x), free(cond), free(dout), free(y), free(o_ref), free(o_cpu), free(dx_r), free(dx_c), free(dc_r);
    free(dc_c), free(xr), free(xc), free(dy_r), free(dy_c);
}

/* LayerNorm fused with modulation: the fused reference equals the two
 * references in sequence bit for bit, the fused fast path equals the two fast
 * ops in sequence bit for bit (it runs their row kernels), and the fast path
 * is within float rounding of the reference (SIMD sums). */
static void test_ln_modulate(kbt_state *st, int threads, int64_t B, int64_t T, int64_t D) {
    int64_t n = B * T * D, ld = 6 * D, nc = B * ld, rows = B * T;
    float *x = randv(n, 31), *cond = randv(nc, 32), *dout = randv(n, 33);
    for (int64_t i = 0; i < n; i++) x[i] = 3.0f * x[i] + 0.5f; /* rows with a mean and a spread to take out */
    float *ln = malloc((size_t)n * sizeof(float)), *o_pair = malloc((size_t)n * sizeof(float));
    float *o_ref = malloc((size_t)n * sizeof(float)), *o_cpu = malloc((size_t)n * sizeof(float));
    float *st_pair = malloc(2 * (size_t)rows * sizeof(float)), *st_ref = malloc(2 * (size_t)rows * sizeof(float));
    float *st_cpu = malloc(2 * (size_t)rows * sizeof(float));
    char name[160];
    /* forward */
    kb_layernorm_fwd_ref(ln, st_pair, st_pair + rows, x, NULL, NULL, rows, D, 1e-6f);
    kb_modulate_fwd_ref(o_pair, ln, cond, cond + D, ld, B, T, D);
    kb_ln_modulate_fwd_ref(o_ref, st_ref, st_ref + rows, x, cond, cond + D, ld, B, T, D, 1e-6f);
    snprintf(name, sizeof name, "ln_modulate_fwd_ref B=%lld T=%lld D=%lld = layernorm then modulate (bits)", (long long)B,
             (long long)T, (long long)D);
    KBT_CHECK(st, same_bits(o_ref, o_pair, n) && same_bits(st_ref, st_pair, 2 * rows), name, "differs");
    kb_layernorm_fwd_cpu(threads, ln, st_pair, st_pair + rows, x, NULL, NULL, rows, D, 1e-6f);
    kb_modulate_fwd_cpu(threads, o_pair, ln, cond, cond + D, ld, B, T, D);
    kb_ln_modulate_fwd_cpu(threads, o_cpu, st_cpu, st_cpu + rows, x, cond, cond + D, ld, B, T, D, 1e-6f);
    snprintf(name, sizeof name, "ln_modulate_fwd_cpu threads=%d = the two fast ops (bits)", threads);
    KBT_CHECK(st, same_bits(o_cpu, o_pair, n) && same_bits(st_cpu, st_pair, 2 * rows), name, "differs");
    snprintf(name, sizeof name, "ln_modulate_fwd_cpu threads=%d vs reference", threads);
    kbt_close(st, name, o_cpu, o_ref, n, 1e-6 * kbt_max_abs(o_ref, n), 1e-6);
    /* backward, accumulating into random dx and per-sample sums; ln is the fast path's LN(x) */
    float *g = malloc((size_t)n * sizeof(float)), *dx_pair = randv(n, 34), *dx_ref = copyv(dx_pair, n);
    float *dx_cpu = copyv(dx_pair, n), *dc_pair = randv(nc, 35), *dc_ref = copyv(dc_pair, nc), *dc_cpu = copyv(dc_pair, nc);
    float *dx_rpair = copyv(dx_pair, n), *dc_rpair = copyv(dc_pair, nc);
    kb_modulate_bwd_cpu(threads, g, dc_pair, dc_pair + D, dout, ln, cond + D, ld, B, T, D, KB_GRAD_SET);
    kb_layernorm_bwd_cpu(threads, dx_pair, NULL, NULL, g, x, NULL, st_pair, st_pair + rows, rows, D);
    kb_ln_modulate_bwd_cpu(threads, dx_cpu, dc_cpu, dc_cpu + D, dout, x, st_cpu, st_cpu + rows, cond + D, ld, B, T, D);
    snprintf(name, sizeof name, "ln_modulate_bwd_cpu threads=%d = the two fast ops (bits)", threads);
    KBT_CHECK(st, same_bits(dx_cpu, dx_pair, n) && same_bits(dc_cpu, dc_pair, nc), name, "dx %s, dshift/dscale %s",
              same_bits(dx_cpu, dx_pair, n) ? "same" : "differ", same_bits(dc_cpu, dc_pair, nc) ? "same" : "differ");
    kb_ln_modulate_fwd_ref(o_ref, st_ref, st_ref + rows, x, cond, cond + D, ld, B, T, D, 1e-6f);
    kb_layernorm_fwd_ref(ln, NULL, NULL, x, NULL, NULL, rows, D, 1e-6f);
    kb_modulate_bwd_ref(g, dc_rpair, dc_rpair + D, dout, ln, cond + D, ld, B, T, D, KB_GRAD_SET);
    kb_layernorm_bwd_ref(dx_rpair, NULL, NULL, g, x, NULL, st_ref, st_ref + rows, rows, D);
    kb_ln_modulate_bwd_ref(dx_ref, dc_ref, dc_ref + D, dout, x, st_ref, st_ref + rows, cond + D, ld, B, T, D);
    snprintf(name, sizeof name, "ln_modulate_bwd_ref B=%lld T=%lld D=%lld = modulate then layernorm backward (bits)",
             (long long)B, (long long)T, (long long)D);
    KBT_CHECK(st, same_bits(dx_ref, dx_rpair, n) && same_bits(dc_ref, dc_rpair, nc), name, "differs");
    snprintf(name, sizeof name, "ln_modulate_bwd_cpu threads=%d vs reference: dx", threads);
    kbt_close(st, name, dx_cpu, dx_ref, n, 1e-5 * kbt_max_abs(dx_ref, n), 1e-5);
    snprintf(name, sizeof name, "ln_modulate_bwd_cpu threads=%d vs reference: dshift, dscale", threads);
    kbt_close(st, name, dc_cpu, dc_ref, nc, 1e-5 * kbt_max_abs(dc_ref, nc), 1e-5);
    free(x), free(cond), free(dout), free(ln), free(o_pair), free(o_ref), free(o_cpu), free(st_pair), free(st_ref);
    free(st_cpu), free(g), free(dx_pair), free(dx_ref), free(dx_cpu), free(dc_pair), free(dc_ref), free(dc_cpu);
    free(dx_rpair), free(dc_rpair);
}

/* The bf16-output forms: the fp32 op's results rounded to bf16, bit for bit,
 * and its other outputs (statistics, dgate) unchanged. */
static void test_x16_forms(kbt_state *st, int threads, int64_t B, int64_t T, int64_t D) {
    int64_t n = B * T * D, ld = 6 * D, nc = B * ld, rows = B * T;
    float *x = randv(n, 41), *cond = randv(nc, 42), *dx = randv(n, 43), *y = randv(n, 44);
    float *o = malloc((size_t)(n ? n : 1) * sizeof(float)), *s1 = malloc(2 * (size_t)(rows ? rows : 1) * sizeof(float));
    float *s2 = malloc(2 * (size_t)(rows ? rows : 1) * sizeof(float)), *dyf = malloc((size_t)(n ? n : 1) * sizeof(float));
    uint16_t *o16 = malloc((size_t)(n ? n : 1) * 2), *dy16 = malloc((size_t)(n ? n : 1) * 2);
    uint16_t *want = malloc((size_t)(n ? n : 1) * 2);
    float *dc1 = randv(nc, 45), *dc2 = copyv(dc1, nc);
    kb_err err = {0};
    char name[128];
    kb_ln_modulate_fwd_cpu(threads, o, s1, s1 + rows, x, cond, cond + D, ld, B, T, D, 1e-6f);
    int rc = kb_ln_modulate_fwd_x16_cpu(threads, o16, s2, s2 + rows, x, cond, cond + D, ld, B, T, D, 1e-6f, &err);
    for (int64_t i = 0; i < n; i++) want[i] = kb_sc_f32_to_bf16(o[i]);
    snprintf(name, sizeof name, "ln_modulate_fwd_x16 threads=%d = bf16(ln_modulate_fwd) (bits)", threads);
    KBT_CHECK(st, rc == 0 && !memcmp(o16, want, (size_t)n * 2) && same_bits(s1, s2, 2 * rows), name, "rc %d %s", rc,
              err.msg);
    kb_gated_add_bwd_cpu(threads, dyf, dc1, dx, y, cond + 2 * D, ld, B, T, D, KB_GRAD_SET);
    rc = kb_gated_add_bwd_x16_cpu(threads, dy16, dc2, dx, y, NULL, cond + 2 * D, ld, B, T, D, &err);
    for (int64_t i = 0; i < n; i++) want[i] = kb_sc_f32_to_bf16(dyf[i]);
    snprintf(name, sizeof name, "gated_add_bwd_x16 threads=%d = bf16(gated_add_bwd) (bits), dgate the same", threads);
    KBT_CHECK(st, rc == 0 && !memcmp(dy16, want, (size_t)n * 2) && same_bits(dc1, dc2, nc), name, "rc %d %s", rc,
              err.msg);
    /* dout as bf16 bits (dout16): bit for bit the fp32 backward on its widened values */
    {
        uint16_t *d16 = malloc((size_t)(n ? n : 1) * 2);
        float *dw = malloc((size_t)(n ? n : 1) * sizeof(float)), *dxa = randv(n, 46), *dxb = copyv(dxa, n);
        float *dca = randv(nc, 47), *dcb = copyv(dca, nc);
        for (int64_t i = 0; i < n; i++) d16[i] = kb_sc_f32_to_bf16(dx[i]), dw[i] = kb_sc_bf16_to_f32(d16[i]);
        kb_ln_modulate_bwd_cpu(threads, dxa, dca, dca + D, dw, x, s1, s1 + rows, cond + D, ld, B, T, D);
        rc = kb_ln_modulate_bwd_x16_cpu(threads, dxb, dcb, dcb + D, d16, x, s1, s1 + rows, cond + D, ld, B, T, D, &err);
        snprintf(name, sizeof name, "ln_modulate_bwd_x16 threads=%d = ln_modulate_bwd on dout16 widened (bits)", threads);
        KBT_CHECK(st, rc == 0 && same_bits(dxa, dxb, n) && same_bits(dca, dcb, nc), name, "rc %d %s", rc, err.msg);
        free(d16), free(dw), free(dxa), free(dxb), free(dca), free(dcb);
    }
    /* y as bf16 bits (y16) = y as the same values widened */
    uint16_t *y16 = malloc((size_t)(n ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++) y16[i] = kb_sc_f32_to_bf16(y[i]), y[i] = kb_sc_bf16_to_f32(y16[i]);
    memcpy(dc2, dc1, (size_t)nc * 4);
    rc = kb_gated_add_bwd_x16_cpu(threads, want, dc1, dx, y, NULL, cond + 2 * D, ld, B, T, D, &err);
    rc |= kb_gated_add_bwd_x16_cpu(threads, dy16, dc2, dx, NULL, y16, cond + 2 * D, ld, B, T, D, &err);
    snprintf(name, sizeof name, "gated_add_bwd_x16 threads=%d: y16 = y widened (bits)", threads);
    KBT_CHECK(st, rc == 0 && !memcmp(dy16, want, (size_t)n * 2) && same_bits(dc1, dc2, nc), name, "rc %d %s", rc,
              err.msg);
    free(y16);
    free(x), free(cond), free(dx), free(y), free(o), free(s1), free(s2), free(dyf), free(o16), free(dy16), free(want);
    free(dc1), free(dc2);
}

/* The gated residual fused with the LayerNorm + modulation that follows it:
 * bit for bit the two fast ops in sequence (res, out, statistics), in place
 * too, its bf16 form their rounded output, and within rounding of the fused
 * reference. The gate and the modulation come from buffers of different
 * strides, as in the DiT's last block (gate_mlp, then the final layer's norm). */
static void test_gated_ln_modulate(kbt_state *st, int threads, int64_t B, int64_t T, int64_t D) {
    int64_t n = B * T * D, rows = B * T, gl = 6 * D, ml = 2 * D;
    float *x = randv(n, 51), *y = randv(n, 52), *gcond = randv(B * gl, 53), *mcond = randv(B * ml, 54);
    float *res_p = malloc((size_t)n * 4), *o_p = malloc((size_t)n * 4), *s_p = malloc(2 * (size_t)rows * 4);
    float *res_f = malloc((size_t)n * 4), *o_f = malloc((size_t)n * 4), *s_f = malloc(2 * (size_t)rows * 4);
    float *res_r = malloc((size_t)n * 4), *o_r = malloc((size_t)n * 4), *s_r = malloc(2 * (size_t)rows * 4);
    float *res_in = copyv(x, n);
    uint16_t *o16 = malloc((size_t)n * 2), *want16 = malloc((size_t)n * 2);
    kb_err err = {0};
    char name[160];
    const float *gate = gcond + 5 * D, *shift = mcond, *scale = mcond + D;
    kb_gated_add_fwd_cpu(threads, res_p, x, gate, y, gl, B, T, D);
    kb_ln_modulate_fwd_cpu(threads, o_p, s_p, s_p + rows, res_p, shift, scale, ml, B, T, D, 1e-6f);
    int rc = kb_gated_add_ln_modulate_fwd_cpu(threads, res_f, o_f, NULL, s_f, s_f + rows, x, gate, y, NULL, gl, shift,
                                              scale,
                                              ml, B, T, D, 1e-6f, &err);
    snprintf(name, sizeof name, "gated_add_ln_modulate_fwd_cpu B=%lld T=%lld D=%lld threads=%d = the two fast ops (bits)",
             (long long)B, (long long)T, (long long)D, threads);
    KBT_CHECK(st, rc == 0 && same_bits(res_f, res_p, n) && same_bits(o_f, o_p, n) && same_bits(s_f, s_p, 2 * rows),
              name, "rc %d res %s out %s", rc, same_bits(res_f, res_p, n) ? "same" : "differs",
              same_bits(o_f, o_p, n) ? "same" : "differs");
    rc = kb_gated_add_ln_modulate_fwd_cpu(threads, res_in, NULL, o16, s_f, s_f + rows, res_in, gate, y, NULL, gl, shift,
                                          scale,
                                          ml, B, T, D, 1e-6f, &err);
    for (int64_t i = 0; i < n; i++) want16[i] = kb_sc_f32_to_bf16(o_p[i]);
    snprintf(name, sizeof name, "gated_add_ln_modulate_fwd_cpu threads=%d in place, bf16 out = bf16 of the two ops (bits)",
             threads);
    KBT_CHECK(st, rc == 0 && same_bits(res_in, res_p, n) && !memcmp(o16, want16, (size_t)n * 2) &&
                      same_bits(s_f, s_p, 2 * rows), name, "rc %d %s", rc, err.msg);
    kb_gated_add_ln_modulate_fwd_ref(res_r, o_r, s_r, s_r + rows, x, gate, y, gl, shift, scale, ml, B, T, D, 1e-6f);
    snprintf(name, sizeof name, "gated_add_ln_modulate_fwd_cpu threads=%d vs reference", threads);
    KBT_CHECK(st, same_bits(res_r, res_p, n), name, "res differs from the reference's");
    kbt_close(st, name, o_p, o_r, n, 1e-6 * kbt_max_abs(o_r, n), 1e-6);
    /* y as bf16 bits (y16) = y as the same values widened */
    uint16_t *y16 = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) y16[i] = kb_sc_f32_to_bf16(y[i]), y[i] = kb_sc_bf16_to_f32(y16[i]);
    rc = kb_gated_add_ln_modulate_fwd_cpu(threads, res_p, o_p, NULL, s_p, s_p + rows, x, gate, y, NULL, gl, shift, scale,
                                          ml, B, T, D, 1e-6f, &err);
    rc |= kb_gated_add_ln_modulate_fwd_cpu(threads, res_f, o_f, NULL, s_f, s_f + rows, x, gate, NULL, y16, gl, shift,
                                           scale, ml, B, T, D, 1e-6f, &err);
    snprintf(name, sizeof name, "gated_add_ln_modulate_fwd_cpu threads=%d: y16 = y widened (bits)", threads);
    KBT_CHECK(st, rc == 0 && same_bits(res_f, res_p, n) && same_bits(o_f, o_p, n) && same_bits(s_f, s_p, 2 * rows),
              name, "rc %d %s", rc, err.msg);
    free(y16);
    free(x), free(y), free(gcond), free(mcond), free(res_p), free(o_p), free(s_p), free(res_f), free(o_f), free(s_f);
    free(res_r), free(o_r), free(s_r), free(res_in), free(o16), free(want16);
}

/* The dispatcher refuses both outputs or neither. */
static void test_gated_ln_modulate_args(kbt_state *st) {
    kb_ctx ctx;
    kb_err err = {0};
    float v[8] = {0}, s[2];
    uint16_t h[8];
    if (kb_ctx_init(&ctx, KB_DEV_CPU, NULL, &err)) {
        KBT_CHECK(st, 0, "CPU context", "%s", err.msg);
        return;
    }
    int both = kb_gated_add_ln_modulate_fwd(&ctx, v, v, h, s, s + 1, v, v, v, NULL, 8, v, v, 8, 1, 1, 8, 1e-6f, &err);
    KBT_CHECK(st, both == -1 && strstr(err.msg, "exactly one"), "gated_add_ln_modulate_fwd: both outputs refused",
              "rc %d: %s", both, err.msg);
    err.msg[0] = 0;
    int none = kb_gated_add_ln_modulate_fwd(&ctx, v, NULL, NULL, s, s + 1, v, v, v, NULL, 8, v, v, 8, 1, 1, 8, 1e-6f,
                                            &err);
    KBT_CHECK(st, none == -1 && strstr(err.msg, "exactly one"), "gated_add_ln_modulate_fwd: no output refused",
              "rc %d: %s", none, err.msg);
    err.msg[0] = 0;
    int ys = kb_gated_add_ln_modulate_fwd(&ctx, v, v, NULL, s, s + 1, v, v, v, h, 8, v, v, 8, 1, 1, 8, 1e-6f, &err);
    KBT_CHECK(st, ys == -1 && strstr(err.msg, "y16"), "gated_add_ln_modulate_fwd: both y and y16 refused", "rc %d: %s",
              ys, err.msg);
    err.msg[0] = 0;
    ys = kb_gated_add_bwd_x16(&ctx, h, v, v, NULL, NULL, v, 8, 1, 1, 8, &err);
    KBT_CHECK(st, ys == -1 && strstr(err.msg, "y16"), "gated_add_bwd_x16: neither y nor y16 refused", "rc %d: %s", ys,
              err.msg);
    kb_ctx_free(&ctx);
}

/* Known layout: for a 1x2x4x4 image with p = 2, token 1 (top-right patch)
 * holds pixels (c, y, x) = (c, 0..1, 2..3) in CPQ or PQC order. */
static void test_patch_layout(kbt_state *st) {
    float img[32], tok[32], back[32];
    for (int i = 0; i < 32; i++) img[i] = (float)i;
    kb_patchify_ref(tok, img, 1, 2, 4, 4, 2, KB_PATCH_CPQ);
    /* token 1 = patch row 0, col 1; CPQ slot (c, i, j) -> img[c*16 + i*4 + 2 + j] */
    const float want_cpq[8] = {2, 3, 6, 7, 18, 19, 22, 23};
    KBT_CHECK(st, !memcmp(tok + 8, want_cpq, sizeof want_cpq), "patchify CPQ layout", "token 1 = %g %g %g %g ...",
              tok[8], tok[9], tok[10], tok[11]);
    kb_patchify_ref(tok, img, 1, 2, 4, 4, 2, KB_PATCH_PQC);
    const float want_pqc[8] = {2, 18, 3, 19, 6, 22, 7, 23};
    KBT_CHECK(st, !memcmp(tok + 8, want_pqc, sizeof want_pqc), "patchify PQC layout", "token 1 = %g %g %g %g ...",
              tok[8], tok[9], tok[10], tok[11]);
    kb_unpatchify_ref(back, tok, 1, 2, 4, 4, 2, KB_PATCH_PQC);
    KBT_CHECK(st, !memcmp(back, img, sizeof img), "unpatchify inverts patchify", "round trip differs");
    for (int threads = 1; threads <= 3; threads++) {
        float tc[32], bc[32];
        kb_patchify_cpu(threads, tc, img, 1, 2, 4, 4, 2, KB_PATCH_PQC);
        kb_unpatchify_cpu(threads, bc, tc, 1, 2, 4, 4, 2, KB_PATCH_PQC);
        KBT_CHECK(st, !memcmp(tc, tok, sizeof tc) && !memcmp(bc, img, sizeof bc), "patchify fast path bit-exact",
                  "threads=%d", threads);
    }
}

static void test_embedding_and_freq(kbt_state *st, int threads) {
    int64_t V = 5, D = 7, B = 9;
    int32_t ids[9] = {4, 0, 4, 2, 1, 4, 3, 0, 4};
    float *table = randv(V * D, 11), *dout = randv(B * D, 12), out_r[63], out_c[63];
    kb_embedding_fwd_ref(out_r, table, ids, B, D);
    kb_embedding_fwd_cpu(threads, out_c, table, ids, B, D);
    KBT_CHECK(st, same_bits(out_r, out_c, B * D) && out_r[D] == table[0], "embedding_fwd", "threads=%d", threads);
    float *dt_r = randv(V * D, 13), *dt_c = copyv(dt_r, V * D);
    kb_embedding_bwd_ref(dt_r, dout, ids, B, D);
    kb_embedding_bwd_cpu(threads, dt_c, dout, ids, B, D);
    KBT_CHECK(st, same_bits(dt_r, dt_c, V * D), "embedding_bwd bit-exact", "threads=%d", threads);
    float t[3] = {0.0f, 1.0f, 999.0f}, f_r[3 * 256], f_c[3 * 256];
    kb_timestep_freq_ref(f_r, t, 3, 256, 10000.0f);
    kb_timestep_freq_cpu(threads, f_c, t, 3, 256, 10000.0f);
    /* t = 0: cos = 1, sin = 0; t = 1, i = 0: cos(1), sin(1) */
    int ok = same_bits(f_r, f_c, 3 * 256) && f_r[0] == 1.0f && f_r[128] == 0.0f &&
             fabsf(f_r[256] - cosf(1.0f)) < 1e-7f && fabsf(f_r[256 + 128] - sinf(1.0f)) < 1e-7f;
    KBT_CHECK(st, ok, "timestep_freq (cos first, known values)", "threads=%d f[256]=%g", threads, f_r[256]);
    free(table), free(dout), free(dt_r), free(dt_c);
}

static void test_optim(kbt_state *st, int threads) {
    int64_t n = 100003;
    float *p_r = randv(n, 21), *g = randv(n, 22), *m_r = randv(n, 23), *v_r = randv(n, 24);
    for (int64_t i = 0; i < n; i++) v_r[i] = fabsf(v_r[i]);
    float *p_c = copyv(p_r, n), *m_c = copyv(m_r, n), *v_c = copyv(v_r, n);
    kb_adamw_scalars s = kb_adamw_make_scalars(1e-3, 0.9, 0.999, 1e-8, 0.01, 3);
    kb_adamw_step_ref(p_r, g, m_r, v_r, n, &s);
    kb_adamw_step_cpu(threads, p_c, g, m_c, v_c, n, &s);
    KBT_CHECK(st, same_bits(p_r, p_c, n) && same_bits(m_r, m_c, n) && same_bits(v_r, v_c, n),
              "adamw_step fast path bit-exact", "threads=%d", threads);
    kb_ema_update_ref(m_r, p_r, n, 0.9999);
    kb_ema_update_cpu(threads, m_c, p_c, n, 0.9999);
    KBT_CHECK(st, same_bits(m_r, m_c, n), "ema_update fast path bit-exact", "threads=%d", threads);
    double s_r, s_c, s_c1;
    kb_sumsq_ref(&s_r, g, n);
    kb_sumsq_cpu(threads, &s_c, g, n);
    kb_sumsq_cpu(1, &s_c1, g, n);
    KBT_CHECK(st, fabs(s_r - s_c) <= 1e-12 * s_r && s_c == s_c1, "sumsq (rel 1e-12, thread-count independent)",
              "ref %.17g fast %.17g fast(1 thread) %.17g", s_r, s_c, s_c1);
    free(p_r), free(g), free(m_r), free(v_r), free(p_c), free(m_c), free(v_c);
}

/* First AdamW step from zero moments moves each weight by lr*sign(g)
 * (|m_hat/sqrt(v_hat)| = 1), minus the decoupled decay. */
static void test_adamw_first_step(kbt_state *st) {
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.3f, -4.0f, 1e-3f}, m[3] = {0}, v[3] = {0};
    kb_adamw_scalars s = kb_adamw_make_scalars(1e-2, 0.9, 0.999, 1e-8, 0.1, 1);
    kb_adamw_step_ref(p, g, m, v, 3, &s);
    float want[3] = {1.0f * 0.999f - 0.01f, -2.0f * 0.999f + 0.01f, 0.5f * 0.999f - 0.01f};
    int ok = 1;
    for (int i = 0; i < 3; i++) ok &= fabsf(p[i] - want[i]) < 2e-6f;
    KBT_CHECK(st, ok, "adamw first step = lr*sign(g) after decay", "got %g %g %g want %g %g %g", p[0], p[1], p[2],
              want[0], want[1], want[2]);
}

int main(void) {
    kbt_state st = {0, 0};
    test_patch_layout(&st);
    test_adamw_first_step(&st);
    test_gated_ln_modulate_args(&st);
    for (int threads = 1; threads <= 3; threads++) {
        test_modulate_and_gate(&st, threads, 3, 17, 13);
        test_modulate_and_gate(&st, threads, 1, 1, 1);
        test_modulate_and_gate(&st, threads, 5, 64, 96);
        test_ln_modulate(&st, threads, 3, 17, 13);
        test_ln_modulate(&st, threads, 1, 1, 1);
        test_ln_modulate(&st, threads, 5, 64, 96);
        test_gated_ln_modulate(&st, threads, 3, 17, 13);
        test_gated_ln_modulate(&st, threads, 5, 64, 96);
        test_x16_forms(&st, threads, 3, 17, 13);
        test_x16_forms(&st, threads, 5, 64, 96);
        test_embedding_and_freq(&st, threads);
        test_optim(&st, threads);
    }
    return kbt_finish(&st);
}
