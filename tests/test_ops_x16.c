/* The linear-layer products on bf16 activations (nn/ops.h "*_x16") on one
 * device: `test_ops_x16 cpu` (CI) or `test_ops_x16 cuda` (exit 77 without a
 * GPU). Inputs: bf16 activations and gradients, fp32 weights.
 *
 * References are double sums of exact products. The GPU multiplies the bf16
 * activations by a bf16 copy of W (its tensor cores take bf16 operands); the
 * CPU path widens the activations and multiplies by the fp32 W. Each device
 * is compared with the reference of what it multiplies (the weight gradient
 * has no W: one reference): |d| <= 1e-5 (sum of |products| + |added values|)
 * per element, fp32 accumulation in any order.
 * The GELU layer's bf16 outputs (pre16, act16) and the GELU backward's
 * dpre16 are within that bound plus the bf16 rounding (2^-8 of the value:
 * the largest half ulp) of the reference; on the GPU with
 * KINDBENCH_LT_GELU=1, where cuBLASLt's GELU epilogues may run (the context
 * is in the BF16 mode there), plus room for a hardware tanh (2e-4 + 3e-4|x|;
 * 1e-3 of the largest dpre). A rerun gives the same bits. Shapes: odd sizes,
 * a DiT-like one, and in = 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "nn/backend.h"
#include "nn/cuda_backend.h"
#include "nn/ops.h"
#include "nn/ops_ref.h"
#include "nn/ops_scalar.h"
#include "nn/rng.h"

typedef struct {
    kbt_state st;
    kb_ctx ctx;
    kb_err err;
    int cuda;
    int lt;    /* CUDA with KINDBENCH_LT_GELU=1: cuBLASLt's GELU epilogues may run */
    int bgrad; /* CUDA with KINDBENCH_LT_BGRAD=1: the weight gradients' BGRADB epilogue may run */
} env;

static float *uniform(int64_t n, uint64_t stream, float lo, float hi) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = kb_rng_uniform_scaled(11, stream, (uint64_t)i, lo, hi);
    return p;
}

static uint16_t *to_bf16(const float *f, int64_t n) {
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++) h[i] = kb_sc_f32_to_bf16(f[i]);
    return h;
}

static float *widen(const uint16_t *h, int64_t n) {
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) f[i] = kb_sc_bf16_to_f32(h[i]);
    return f;
}

static void *dev(env *e, const void *h, size_t bytes) {
    void *d = kb_dev_alloc(&e->ctx, bytes ? bytes : 4, &e->err);
    if (d && h && bytes) kb_copy_to_dev(&e->ctx, d, h, bytes, &e->err);
    return d;
}

static void *host(env *e, const void *d, size_t bytes) {
    void *h = malloc(bytes ? bytes : 4);
    if (bytes) kb_copy_to_host(&e->ctx, h, d, bytes, &e->err);
    return h;
}

/* C[M,N] = sum_k A[m,k] B[k,n] (A row stride lda, B given by element function) in double, plus its |.| scale. */
typedef struct {
    double *v, *scale;
} dref;

static dref ref_matmul(int64_t M, int64_t N, int64_t K, const float *A, int64_t sam, int64_t sak, const float *B,
                       int64_t sbk, int64_t sbn) {
    size_t cells = (size_t)(M * N > 0 ? M * N : 1);
    dref r = {calloc(cells, sizeof(double)), calloc(cells, sizeof(double))};
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)A[m * sam + k * sak] * (double)B[k * sbk + n * sbn];
                s += p, a += fabs(p);
            }
            r.v[m * N + n] = s, r.scale[m * N + n] = a;
        }
    return r;
}

static void dref_free(dref r) { free(r.v), free(r.scale); }

/* got within 1e-5 * (scale + |extra|) of want + extra, element by element. */
static void check_near(env *e, const char *name, const float *got, dref want, const float *extra, const float *bias,
                       int64_t rows, int64_t cols) {
    int64_t bad = 0, worst_i = 0;
    double worst = 0;
    for (int64_t i = 0; i < rows * cols; i++) {
        double add = (extra ? extra[i] : 0) + (bias ? bias[i % cols] : 0);
        double w = want.v[i] + add, tol = 1e-5 * (want.scale[i] + fabs(add)) + 1e-30;
        double d = fabs(got[i] - w);
        if (!(d <= tol)) bad++;
        if (d / tol > worst) worst = d / tol, worst_i = i;
    }
    KBT_CHECK(&e->st, bad == 0, name, "%lld of %lld outside 1e-5 of scale; worst [%lld] %.3g of tolerance",
              (long long)bad, (long long)(rows * cols), (long long)worst_i, worst);
    if (bad == 0) printf("     worst %.2g of tolerance\n", worst);
}

static void check_bits(env *e, const char *name, const void *a, const void *b, size_t bytes) {
    KBT_CHECK(&e->st, memcmp(a, b, bytes) == 0, name, "bits differ");
}

static void test_shape(env *e, int64_t rows, int64_t in, int64_t out) {
    char name[160];
    int64_t nx = rows * in, ny = rows * out, nw = out * in;
    float *xf = uniform(nx, 1, -1, 1), *W = uniform(nw, 2, -0.5f, 0.5f), *b = uniform(out, 3, -0.5f, 0.5f);
    float *dyf = uniform(ny, 4, -1, 1), *start = uniform(nx, 5, -1, 1), *dW0 = uniform(nw, 6, -1, 1);
    uint16_t *x16 = to_bf16(xf, nx), *dy16 = to_bf16(dyf, ny);
    float *x = widen(x16, nx), *dy = widen(dy16, ny);
    uint16_t *Wh = to_bf16(W, nw);
    float *Wr = e->cuda ? widen(Wh, nw) : W; /* the weight the device multiplies by */
    /* forward: y = x W^T + b, and the GELU of it */
    dref fy = ref_matmul(rows, out, in, x, in, 1, Wr, 1, in);
    uint16_t *gx = dev(e, x16, (size_t)nx * 2);
    float *gW = dev(e, W, (size_t)nw * 4), *gb = dev(e, b, (size_t)out * 4), *gy = dev(e, NULL, (size_t)ny * 4);
    uint16_t *gact = dev(e, NULL, (size_t)ny * 2);
    snprintf(name, sizeof name, "gemm_bias_x16 %lldx%lld -> %lld", (long long)rows, (long long)in, (long long)out);
    if (!kb_gemm_bias_x16(&e->ctx, gy, gx, gW, gb, rows, in, out, &e->err)) {
        float *y = host(e, gy, (size_t)ny * 4);
        check_near(e, name, y, fy, NULL, b, rows, out);
        free(y);
    } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    /* the bf16 output form: within the bf16 rounding (2^-8 of the value) of the reference */
    uint16_t *gy16 = dev(e, NULL, (size_t)ny * 2);
    snprintf(name, sizeof name, "gemm_bias_x16_y16 %lldx%lld -> %lld", (long long)rows, (long long)in, (long long)out);
    if (!kb_gemm_bias_x16_y16(&e->ctx, gy16, gx, gW, gb, rows, in, out, &e->err)) {
        uint16_t *y16 = host(e, gy16, (size_t)ny * 2);
        int64_t bad = 0;
        for (int64_t i = 0; i < ny; i++) {
            double want = fy.v[i] + b[i % out], tol = 1e-5 * (fy.scale[i] + fabs(b[i % out])) + 0x1p-8 * fabs(want);
            bad += !(fabs(kb_sc_bf16_to_f32(y16[i]) - want) <= tol);
        }
        KBT_CHECK(&e->st, bad == 0, name, "%lld of %lld outside the bf16 rounding of the reference", (long long)bad,
                  (long long)ny);
        kb_gemm_bias_x16_y16(&e->ctx, gy16, gx, gW, gb, rows, in, out, &e->err); /* rerun */
        uint16_t *again = host(e, gy16, (size_t)ny * 2);
        check_bits(e, "gemm_bias_x16_y16 rerun bit-identical", again, y16, (size_t)ny * 2);
        free(y16), free(again);
    } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    /* without a bias, x16 2-byte aligned: on the GPU the GEMM + kernel path */
    uint16_t *gx_odd16 = dev(e, NULL, (size_t)(nx + 1) * 2);
    if (gx_odd16 && nx) kb_copy_to_dev(&e->ctx, gx_odd16 + 1, x16, (size_t)nx * 2, &e->err);
    snprintf(name, sizeof name, "gemm_bias_x16_y16 %lldx%lld -> %lld, no bias, x16 2-byte aligned", (long long)rows,
             (long long)in, (long long)out);
    if (!kb_gemm_bias_x16_y16(&e->ctx, gy16, gx_odd16 + 1, gW, NULL, rows, in, out, &e->err)) {
        uint16_t *y16 = host(e, gy16, (size_t)ny * 2);
        int64_t bad = 0;
        for (int64_t i = 0; i < ny; i++)
            bad += !(fabs(kb_sc_bf16_to_f32(y16[i]) - fy.v[i]) <= 1e-5 * fy.scale[i] + 0x1p-8 * fabs(fy.v[i]));
        KBT_CHECK(&e->st, bad == 0, name, "%lld of %lld outside the bf16 rounding of the reference", (long long)bad,
                  (long long)ny);
        free(y16);
    } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    kb_dev_free(&e->ctx, gx_odd16), kb_dev_free(&e->ctx, gy16);
    /* no bias and x16 at an odd address (2-byte aligned): on the GPU the cuBLAS path, not cuBLASLt's */
    uint16_t *gx_odd = dev(e, NULL, (size_t)(nx + 1) * 2);
    if (gx_odd && nx) kb_copy_to_dev(&e->ctx, gx_odd + 1, x16, (size_t)nx * 2, &e->err);
    snprintf(name, sizeof name, "gemm_bias_x16 %lldx%lld -> %lld, no bias, x16 2-byte aligned", (long long)rows,
             (long long)in, (long long)out);
    if (!kb_gemm_bias_x16(&e->ctx, gy, gx_odd + 1, gW, NULL, rows, in, out, &e->err)) {
        float *y = host(e, gy, (size_t)ny * 4);
        check_near(e, name, y, fy, NULL, NULL, rows, out);
        free(y);
    } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    kb_dev_free(&e->ctx, gx_odd);
    snprintf(name, sizeof name, "gemm_bias_gelu_x16 %lldx%lld -> %lld", (long long)rows, (long long)in, (long long)out);
    uint16_t *gpre16 = dev(e, NULL, (size_t)ny * 2);
    if (!kb_gemm_bias_gelu_x16(&e->ctx, gact, gpre16, gx, gW, gb, rows, in, out, &e->err)) {
        uint16_t *pre = host(e, gpre16, (size_t)ny * 2), *act = host(e, gact, (size_t)ny * 2);
        int64_t bad_p = 0, bad_a = 0;
        for (int64_t i = 0; i < ny; i++) {
            double p = fy.v[i] + b[i % out], sc = 1e-5 * (fy.scale[i] + fabs(b[i % out])) + 0x1p-8 * fabs(p);
            double g = 0.5 * p * (1.0 + tanh(0.7978845608028654 * (p + 0.044715 * p * p * p)));
            /* act16 is gelu of the unrounded p: the GEMM's error through gelu' (|.| <= 1.2), its own rounding, and
             * room for a hardware tanh where cuBLASLt's epilogue may run */
            double ga = 1.2e-5 * (fy.scale[i] + fabs(b[i % out])) + 0x1p-8 * fabs(g);
            if (e->lt) ga += 2e-4 + 3e-4 * fabs(p);
            bad_p += !(fabs(kb_sc_bf16_to_f32(pre[i]) - p) <= sc);
            bad_a += !(fabs(kb_sc_bf16_to_f32(act[i]) - g) <= ga);
        }
        KBT_CHECK(&e->st, bad_p == 0 && bad_a == 0, name,
                  "%lld pre16 and %lld act16 of %lld outside the bf16 rounding of the reference", (long long)bad_p,
                  (long long)bad_a, (long long)ny);
        kb_gemm_bias_gelu_x16(&e->ctx, gact, gpre16, gx, gW, gb, rows, in, out, &e->err); /* rerun */
        uint16_t *act2 = host(e, gact, (size_t)ny * 2), *pre2 = host(e, gpre16, (size_t)ny * 2);
        check_bits(e, "gemm_bias_gelu_x16 rerun bit-identical (act16)", act2, act, (size_t)ny * 2);
        check_bits(e, "gemm_bias_gelu_x16 rerun bit-identical (pre16)", pre2, pre, (size_t)ny * 2);
        free(pre), free(act), free(act2), free(pre2);
    } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    dref_free(fy);
    /* backward through the input: dx = dy W, written over or added to a start */
    dref fdx = ref_matmul(rows, in, out, dy, out, 1, Wr, in, 1);
    uint16_t *gdy = dev(e, dy16, (size_t)ny * 2);
    float *gdx = dev(e, start, (size_t)nx * 4);
    for (int mode = 0; mode < 2; mode++) {
        kb_copy_to_dev(&e->ctx, gdx, start, (size_t)nx * 4, &e->err);
        snprintf(name, sizeof name, "gemm_dx_x16 %s %lldx%lld <- %lld", mode ? "KB_GRAD_SET" : "KB_GRAD_ADD",
                 (long long)rows, (long long)in, (long long)out);
        if (!kb_gemm_dx_x16(&e->ctx, gdx, mode ? KB_GRAD_SET : KB_GRAD_ADD, gdy, gW, rows, in, out, &e->err)) {
            float *dx = host(e, gdx, (size_t)nx * 4);
            check_near(e, name, dx, fdx, mode ? NULL : start, NULL, rows, in);
            free(dx);
        } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    }
    /* bf16 output: dx16 = bf16(dy W), within the product's bound plus the bf16 rounding of the reference */
    uint16_t *gdx16 = dev(e, NULL, (size_t)nx * 2);
    snprintf(name, sizeof name, "gemm_dx_x16_y16 %lldx%lld <- %lld", (long long)rows, (long long)in, (long long)out);
    if (!kb_gemm_dx_x16_y16(&e->ctx, gdx16, gdy, gW, rows, in, out, &e->err)) {
        uint16_t *dx16 = host(e, gdx16, (size_t)nx * 2);
        int64_t bad = 0;
        for (int64_t i = 0; i < nx; i++) {
            double tol = 1e-5 * fdx.scale[i] + 0x1p-8 * fabs(fdx.v[i]) + 1e-30;
            bad += !(fabs(kb_sc_bf16_to_f32(dx16[i]) - fdx.v[i]) <= tol);
        }
        KBT_CHECK(&e->st, bad == 0, name, "%lld of %lld outside the bf16 rounding of the reference", (long long)bad,
                  (long long)nx);
        if (!e->cuda) { /* the CPU path: exactly kb_gemm_dx_x16's product, rounded */
            kb_gemm_dx_x16(&e->ctx, gdx, KB_GRAD_SET, gdy, gW, rows, in, out, &e->err);
            float *dx = host(e, gdx, (size_t)nx * 4);
            uint16_t *r16 = to_bf16(dx, nx);
            check_bits(e, "gemm_dx_x16_y16 (CPU) = bf16 of gemm_dx_x16's product", dx16, r16, (size_t)nx * 2);
            free(dx), free(r16);
        }
        kb_gemm_dx_x16_y16(&e->ctx, gdx16, gdy, gW, rows, in, out, &e->err); /* rerun */
        uint16_t *again = host(e, gdx16, (size_t)nx * 2);
        check_bits(e, "gemm_dx_x16_y16 rerun bit-identical", again, dx16, (size_t)nx * 2);
        free(dx16), free(again);
    } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    kb_dev_free(&e->ctx, gdx16);
    /* through a GELU: dpre16 = bf16((dy W) * gelu'(pre16)), pre16 = bf16(start) here */
    uint16_t *pre16 = to_bf16(start, nx), *gp16 = dev(e, pre16, (size_t)nx * 2), *gdpre = dev(e, NULL, (size_t)nx * 2);
    snprintf(name, sizeof name, "gemm_dgelu_x16 %lldx%lld <- %lld", (long long)rows, (long long)in, (long long)out);
    if (!kb_gemm_dgelu_x16(&e->ctx, gdpre, gdy, gW, gp16, rows, in, out, &e->err)) {
        uint16_t *dpre = host(e, gdpre, (size_t)nx * 2);
        int64_t bad = 0;
        double mx = 0;
        for (int64_t i = 0; i < nx; i++)
            mx = fmax(mx, fabs(fdx.v[i] * kb_sc_gelu_tanh_grad(kb_sc_bf16_to_f32(pre16[i]))));
        for (int64_t i = 0; i < nx; i++) {
            double gr = kb_sc_gelu_tanh_grad(kb_sc_bf16_to_f32(pre16[i])), want = fdx.v[i] * gr;
            double tol = 1e-5 * fdx.scale[i] * fabs(gr) + 0x1p-8 * fabs(want) + (e->lt ? 1e-3 * mx : 0.0);
            bad += !(fabs(kb_sc_bf16_to_f32(dpre[i]) - want) <= tol + 1e-30);
        }
        KBT_CHECK(&e->st, bad == 0, name, "%lld of %lld outside the bf16 rounding of the reference", (long long)bad,
                  (long long)nx);
        free(dpre);
    } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    dref_free(fdx);
    /* parameter gradients: dW += dy^T x, db += column sums of dy */
    dref fdw = ref_matmul(out, in, rows, dy, 1, out, x, in, 1);
    dref fdb = ref_matmul(1, out, rows, (float[]){1.0f}, 0, 0, dy, out, 1);
    float *gdW = dev(e, dW0, (size_t)nw * 4), *gdb = dev(e, b, (size_t)out * 4);
    snprintf(name, sizeof name, "gemm_wgrad_x16 %lldx%lld -> %lld: dW", (long long)rows, (long long)in, (long long)out);
    if (!kb_gemm_wgrad_x16(&e->ctx, gdW, gdb, gdy, gx, rows, in, out, &e->err)) {
        float *dWh = host(e, gdW, (size_t)nw * 4), *dbh = host(e, gdb, (size_t)out * 4);
        check_near(e, name, dWh, fdw, dW0, NULL, out, in);
        check_near(e, "gemm_wgrad_x16: db", dbh, fdb, b, NULL, 1, out);
        free(dWh), free(dbh);
    } else KBT_CHECK(&e->st, 0, name, "%s", e->err.msg);
    dref_free(fdw), dref_free(fdb);
    void *bufs[] = {gx, gW, gb, gy, gact, gpre16, gdy, gdx, gp16, gdpre, gdW, gdb};
    for (int i = 0; i < 12; i++) kb_dev_free(&e->ctx, bufs[i]);
    free(pre16);
    if (Wr != W) free(Wr);
    free(xf), free(W), free(b), free(dyf), free(start), free(dW0), free(x16), free(dy16), free(x), free(dy), free(Wh);
}

int main(int argc, char **argv) {
    static env e;
    e.cuda = argc > 1 && !strcmp(argv[1], "cuda");
    if (e.cuda && (!kb_cuda_compiled() || kb_cuda_device_count() == 0)) {
        printf("skipped: no GPU (the CUDA products on bf16 activations need a CUDA device)\n");
        return KBT_SKIP_CODE;
    }
    /* on the GPU the BF16 mode, where the GELU epilogues may run (the x16 products are bf16 in any mode) */
    kb_ctx_opts o = {.threads = 2, .matmul = e.cuda ? KB_MATMUL_BF16 : KB_MATMUL_FP32};
    const char *lg = getenv("KINDBENCH_LT_GELU");
    const char *lb = getenv("KINDBENCH_LT_BGRAD");
    e.lt = e.cuda && lg && !strcmp(lg, "1");
    e.bgrad = e.cuda && lb && !strcmp(lb, "1");
    if (kb_ctx_init(&e.ctx, e.cuda ? KB_DEV_CUDA : KB_DEV_CPU, &o, &e.err)) {
        printf("FAIL context: %s\n", e.err.msg);
        return 1;
    }
    test_shape(&e, 37, 24, 40);  /* odd rows: no alignment to lean on */
    test_shape(&e, 256, 128, 384);
    test_shape(&e, 5, 0, 8);     /* in = 0: y = bias, dx = 0 (or the start) */
    test_shape(&e, 5, 8, 0);     /* out = 0: an empty y, dx = 0 (an empty sum; bf16 zeros) */
    KBT_CHECK(&e.st, kb_ctx_sync(&e.ctx, &e.err) == 0, "no asynchronous errors", "%s", e.err.msg);
    if (e.cuda) { /* which paths ran (cuBLASLt may refuse a combination: then the GEMM + kernel ones did) */
        kb_cuda_gemm_counts c = kb_cuda_gemm_counts_of(e.ctx.cuda);
        printf("     cuBLASLt matmuls on bf16 activations: %lld, of which with GELU epilogues: %lld%s\n", c.bf16_acts,
               c.gelu_epilogue,
               !e.lt ? " (KINDBENCH_LT_GELU unset: none expected)"
               : c.gelu_epilogue ? "" : " (cuBLASLt refused them: the epilogue paths were NOT exercised)");
        KBT_CHECK(&e.st, e.lt || c.gelu_epilogue == 0, "no GELU epilogue without KINDBENCH_LT_GELU=1", "%lld ran",
                  c.gelu_epilogue);
        printf("     weight gradients with the BGRADB epilogue: %lld%s\n", c.bgrad_epilogue,
               !e.bgrad ? " (KINDBENCH_LT_BGRAD unset: none expected)"
               : c.bgrad_epilogue ? "" : " (cuBLASLt refused it: the epilogue path was NOT exercised)");
        KBT_CHECK(&e.st, e.bgrad || c.bgrad_epilogue == 0, "no BGRADB epilogue without KINDBENCH_LT_BGRAD=1",
                  "%lld ran", c.bgrad_epilogue);
    }
    kb_ctx_free(&e.ctx);
    return kbt_finish(&e.st);
}
