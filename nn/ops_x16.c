/* Dispatchers and CPU paths of the linear-layer products on bf16 activations
 * (nn/ops.h, "*_x16"). The CPU path widens each bf16 operand into an fp32
 * buffer (exact), runs the fp32 fast path, and rounds a bf16 output (round to
 * nearest even, kb_f32_to_bf16's bits): the arithmetic the GPU path performs,
 * bf16 x bf16 products accumulated in fp32, up to the order of the sums. It
 * is slow (extra passes, allocations) and exists so that CI can check a model
 * wired for bf16 activations against PyTorch on the CPU. */
#include <stdlib.h>

#include "nn/ops.h"
#include "nn/ops_cpu.h"
#include "nn/ops_cuda.h"
#include "nn/ops_scalar.h"
#include "nn/profile.h"

#define KB_DISPATCH(cuda_call, cpu_call) KB_PROF_DISPATCH(ctx, cuda_call, cpu_call)

static int check_sizes(const char *op, kb_ctx *ctx, int64_t rows, int64_t in, int64_t out, kb_err *err) {
    if (!ctx) return kb_fail(err, "%s: ctx is NULL", op);
    if (rows < 0 || in < 0 || out < 0)
        return kb_fail(err, "%s: negative size rows=%lld in=%lld out=%lld", op, (long long)rows, (long long)in,
                       (long long)out);
    if (rows > INT32_MAX || in > INT32_MAX || out > INT32_MAX)
        return kb_fail(err, "%s: rows=%lld in=%lld out=%lld exceed the BLAS int range", op, (long long)rows,
                       (long long)in, (long long)out);
    return 0;
}

/* Every pointer given with a positive element count must be set. */
static int need(const char *op, const char *name, const void *p, int64_t n, kb_err *err) {
    if (!p && n > 0) return kb_fail(err, "%s: %s is NULL with %lld elements", op, name, (long long)n);
    return 0;
}

/* 1 when the byte ranges share memory. */
static int overlap(const void *a, int64_t abytes, const void *b, int64_t bbytes) {
    const char *x = a, *y = b;
    return abytes > 0 && bbytes > 0 && x < y + bbytes && y < x + abytes;
}

/* An fp32 copy of n bf16 values (NULL with err set when out of memory). */
static float *widen(int threads, const uint16_t *p, int64_t n, const char *op, kb_err *err) {
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!f) return kb_fail(err, "%s: out of memory widening %lld bf16 values", op, (long long)n), NULL;
    if (n > 0) kb_bf16_to_f32_cpu(threads, f, p, n);
    return f;
}

static int gemm_bias_x16_cpu(int threads, float *y, const uint16_t *x16, const float *W, const float *bias,
                             int64_t rows, int64_t in, int64_t out, kb_err *err) {
    float *x = widen(threads, x16, rows * in, "kb_gemm_bias_x16", err);
    if (!x) return -1;
    kb_gemm_bias_cpu(threads, y, x, W, bias, rows, in, out);
    free(x);
    return 0;
}

int kb_gemm_bias_x16(kb_ctx *ctx, float *y, const uint16_t *x16, const float *W, const float *bias, int64_t rows,
                     int64_t in, int64_t out, kb_err *err) {
    const char *op = "kb_gemm_bias_x16";
    if (check_sizes(op, ctx, rows, in, out, err) || need(op, "y", y, rows * out, err) ||
        need(op, "x16", x16, in > 0 && out > 0 ? rows * in : 0, err) || need(op, "W", W, rows > 0 ? out * in : 0, err))
        return -1;
    if (overlap(y, rows * out * 4, x16, rows * in * 2) || overlap(y, rows * out * 4, W, out * in * 4) ||
        (bias && overlap(y, rows * out * 4, bias, out * 4)))
        return kb_fail(err, "%s: y must not overlap x16, W or bias", op);
    KB_DISPATCH(kb_gemm_bias_x16_cuda(ctx, y, x16, W, bias, rows, in, out, err),
                kb_rc_ = gemm_bias_x16_cpu(ctx->threads, y, x16, W, bias, rows, in, out, err));
}

static int gemm_dx_x16_cpu(int threads, float *dx, kb_grad_mode mode, const uint16_t *dy16, const float *W,
                           int64_t rows, int64_t in, int64_t out, kb_err *err);

/* The layer's fp32 product in a new buffer (the caller frees it; NULL with
 * err set on failure): forward, x16 W^T + bias [rows, out]; backward through
 * the input, dy16 W [rows, in]. */
static float *product_temp(int threads, int forward, const uint16_t *a16, const float *W, const float *bias,
                           int64_t rows, int64_t in, int64_t out, const char *op, kb_err *err) {
    int64_t n = rows * (forward ? out : in);
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) return kb_fail(err, "%s: out of memory for %lld products", op, (long long)n), NULL;
    int rc = forward ? gemm_bias_x16_cpu(threads, p, a16, W, bias, rows, in, out, err)
                     : gemm_dx_x16_cpu(threads, p, KB_GRAD_SET, a16, W, rows, in, out, err);
    if (rc) free(p), p = NULL;
    return p;
}

/* product_temp's product rounded to bf16 into p16 (the y16/dx16 outputs). */
static int product_bf16(int threads, int forward, uint16_t *p16, const uint16_t *a16, const float *W,
                        const float *bias, int64_t rows, int64_t in, int64_t out, const char *op, kb_err *err) {
    float *p = product_temp(threads, forward, a16, W, bias, rows, in, out, op, err);
    if (!p) return -1;
    kb_f32_to_bf16_cpu(threads, p16, p, rows * (forward ? out : in));
    free(p);
    return 0;
}

int kb_gemm_bias_x16_y16(kb_ctx *ctx, uint16_t *y16, const uint16_t *x16, const float *W, const float *bias,
                         int64_t rows, int64_t in, int64_t out, kb_err *err) {
    const char *op = "kb_gemm_bias_x16_y16";
    if (check_sizes(op, ctx, rows, in, out, err) || need(op, "y16", y16, rows * out, err) ||
        need(op, "x16", x16, in > 0 && out > 0 ? rows * in : 0, err) || need(op, "W", W, rows > 0 ? out * in : 0, err))
        return -1;
    int64_t ny = rows * out * 2;
    if (overlap(y16, ny, x16, rows * in * 2) || overlap(y16, ny, W, out * in * 4) ||
        (bias && overlap(y16, ny, bias, out * 4)))
        return kb_fail(err, "%s: y16 must not overlap x16, W or bias", op);
    KB_DISPATCH(kb_gemm_bias_x16_y16_cuda(ctx, y16, x16, W, bias, rows, in, out, err),
                kb_rc_ = product_bf16(ctx->threads, 1, y16, x16, W, bias, rows, in, out, op, err));
}

static int gemm_bias_gelu_x16_cpu(int threads, uint16_t *act16, uint16_t *pre16, const uint16_t *x16, const float *W,
                                  const float *bias, int64_t rows, int64_t in, int64_t out, kb_err *err) {
    int64_t n = rows * out;
    float *p = product_temp(threads, 1, x16, W, bias, rows, in, out, "kb_gemm_bias_gelu_x16", err);
    if (!p) return -1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        pre16[i] = kb_sc_f32_to_bf16(p[i]);
        act16[i] = kb_sc_f32_to_bf16(kb_sc_gelu_tanh(p[i]));
    }
    free(p);
    return 0;
}

int kb_gemm_bias_gelu_x16(kb_ctx *ctx, uint16_t *act16, uint16_t *pre16, const uint16_t *x16, const float *W,
                          const float *bias, int64_t rows, int64_t in, int64_t out, kb_err *err) {
    const char *op = "kb_gemm_bias_gelu_x16";
    if (check_sizes(op, ctx, rows, in, out, err) || need(op, "pre16", pre16, rows * out, err) ||
        need(op, "act16", act16, rows * out, err) || need(op, "x16", x16, in > 0 && out > 0 ? rows * in : 0, err) ||
        need(op, "W", W, rows > 0 ? out * in : 0, err))
        return -1;
    int64_t na = rows * out * 2, nw = out * in * 4, nb = bias ? out * 4 : 0;
    int64_t nx = rows * in * 2;
    if (overlap(act16, na, pre16, na) || overlap(pre16, na, x16, nx) || overlap(act16, na, x16, nx) ||
        overlap(act16, na, W, nw) || overlap(pre16, na, W, nw) || overlap(act16, na, bias, nb) ||
        overlap(pre16, na, bias, nb))
        return kb_fail(err, "%s: act16 and pre16 must not overlap each other, x16, W or bias (pre16 is kept)", op);
    KB_DISPATCH(kb_gemm_bias_gelu_x16_cuda(ctx, act16, pre16, x16, W, bias, rows, in, out, err),
                kb_rc_ = gemm_bias_gelu_x16_cpu(ctx->threads, act16, pre16, x16, W, bias, rows, in, out, err));
}

static int gemm_dx_x16_cpu(int threads, float *dx, kb_grad_mode mode, const uint16_t *dy16, const float *W,
                           int64_t rows, int64_t in, int64_t out, kb_err *err) {
    float *dy = widen(threads, dy16, rows * out, "kb_gemm_dx_x16", err);
    if (!dy) return -1;
    kb_gemm_cpu(threads, false, false, rows, in, out, 1.0f, dy, out, W, in, mode == KB_GRAD_SET ? 0.0f : 1.0f, dx, in);
    free(dy);
    return 0;
}

int kb_gemm_dx_x16(kb_ctx *ctx, float *dx, kb_grad_mode mode, const uint16_t *dy16, const float *W, int64_t rows,
                   int64_t in, int64_t out, kb_err *err) {
    const char *op = "kb_gemm_dx_x16";
    if (check_sizes(op, ctx, rows, in, out, err) || need(op, "dx", dx, rows * in, err) ||
        need(op, "dy16", dy16, in > 0 ? rows * out : 0, err) || need(op, "W", W, rows > 0 ? out * in : 0, err))
        return -1;
    if (overlap(dx, rows * in * 4, dy16, rows * out * 2) || overlap(dx, rows * in * 4, W, out * in * 4))
        return kb_fail(err, "%s: dx must not overlap dy16 or W", op);
    KB_DISPATCH(kb_gemm_dx_x16_cuda(ctx, dx, mode, dy16, W, rows, in, out, err),
                kb_rc_ = gemm_dx_x16_cpu(ctx->threads, dx, mode, dy16, W, rows, in, out, err));
}

int kb_gemm_dx_x16_y16(kb_ctx *ctx, uint16_t *dx16, const uint16_t *dy16, const float *W, int64_t rows, int64_t in,
                       int64_t out, kb_err *err) {
    const char *op = "kb_gemm_dx_x16_y16";
    if (check_sizes(op, ctx, rows, in, out, err) || need(op, "dx16", dx16, rows * in, err) ||
        need(op, "dy16", dy16, in > 0 ? rows * out : 0, err) || need(op, "W", W, rows > 0 ? out * in : 0, err))
        return -1;
    int64_t n = rows * in * 2;
    if (overlap(dx16, n, dy16, rows * out * 2) || overlap(dx16, n, W, out * in * 4))
        return kb_fail(err, "%s: dx16 must not overlap dy16 or W", op);
    KB_DISPATCH(kb_gemm_dx_x16_y16_cuda(ctx, dx16, dy16, W, rows, in, out, err),
                kb_rc_ = product_bf16(ctx->threads, 0, dx16, dy16, W, NULL, rows, in, out, op, err));
}

static int gemm_dgelu_x16_cpu(int threads, uint16_t *dpre16, const uint16_t *dy16, const float *W,
                              const uint16_t *pre16, int64_t rows, int64_t in, int64_t out, kb_err *err) {
    int64_t n = rows * in;
    float *g = product_temp(threads, 0, dy16, W, NULL, rows, in, out, "kb_gemm_dgelu_x16", err);
    if (!g) return -1;
    /* the product of kb_gelu_tanh_bwd (KB_GRAD_SET) at the bf16 pre-activation, rounded */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++)
        dpre16[i] = kb_sc_f32_to_bf16(g[i] * kb_sc_gelu_tanh_grad(kb_sc_bf16_to_f32(pre16[i])));
    free(g);
    return 0;
}

int kb_gemm_dgelu_x16(kb_ctx *ctx, uint16_t *dpre16, const uint16_t *dy16, const float *W, const uint16_t *pre16,
                      int64_t rows, int64_t in, int64_t out, kb_err *err) {
    const char *op = "kb_gemm_dgelu_x16";
    if (check_sizes(op, ctx, rows, in, out, err) || need(op, "dpre16", dpre16, rows * in, err) ||
        need(op, "pre16", pre16, rows * in, err) || need(op, "dy16", dy16, in > 0 ? rows * out : 0, err) ||
        need(op, "W", W, rows > 0 ? out * in : 0, err))
        return -1;
    int64_t n = rows * in * 2;
    if (overlap(dpre16, n, pre16, n) || overlap(dpre16, n, dy16, rows * out * 2) || overlap(dpre16, n, W, out * in * 4))
        return kb_fail(err, "%s: dpre16 must not overlap pre16, dy16 or W", op);
    KB_DISPATCH(kb_gemm_dgelu_x16_cuda(ctx, dpre16, dy16, W, pre16, rows, in, out, err),
                kb_rc_ = gemm_dgelu_x16_cpu(ctx->threads, dpre16, dy16, W, pre16, rows, in, out, err));
}

static int gemm_wgrad_x16_cpu(int threads, float *dW, float *db, const uint16_t *dy16, const uint16_t *x16,
                              int64_t rows, int64_t in, int64_t out, kb_err *err) {
    float *dy = widen(threads, dy16, rows * out, "kb_gemm_wgrad_x16", err), *x = NULL;
    if (!dy || !(x = widen(threads, x16, rows * in, "kb_gemm_wgrad_x16", err))) {
        free(dy);
        return -1;
    }
    kb_gemm_cpu(threads, true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dW, in);
    if (db) kb_sum_rows_cpu(threads, db, dy, rows, out);
    free(dy), free(x);
    return 0;
}

int kb_gemm_wgrad_x16(kb_ctx *ctx, float *dW, float *db, const uint16_t *dy16, const uint16_t *x16, int64_t rows,
                      int64_t in, int64_t out, kb_err *err) {
    const char *op = "kb_gemm_wgrad_x16";
    if (check_sizes(op, ctx, rows, in, out, err) || need(op, "dW", dW, out * in, err) ||
        need(op, "dy16", dy16, rows * out, err) || need(op, "x16", x16, out > 0 ? rows * in : 0, err))
        return -1;
    if (overlap(dW, out * in * 4, dy16, rows * out * 2) || overlap(dW, out * in * 4, x16, rows * in * 2) ||
        (db && (overlap(db, out * 4, dW, out * in * 4) || overlap(db, out * 4, dy16, rows * out * 2) ||
                overlap(db, out * 4, x16, rows * in * 2))))
        return kb_fail(err, "%s: dW and db must not overlap each other, dy16 or x16", op);
    KB_DISPATCH(kb_gemm_wgrad_x16_cuda(ctx, dW, db, dy16, x16, rows, in, out, err),
                kb_rc_ = gemm_wgrad_x16_cpu(ctx->threads, dW, db, dy16, x16, rows, in, out, err));
}
