/* Dispatchers of nn/ops.h: validate the arguments (sizes, strides, pointers),
 * then run the fast CPU path with ctx->threads or the CUDA path. The reference
 * (nn/ops_ref.c) is never dispatched to; tests call it directly. */
#include "nn/ops.h"

#include <limits.h>
#include <math.h>

#include "nn/ops_cpu.h"
#include "nn/ops_cuda.h"
#include "nn/profile.h"

/* ---- argument checks: each returns 0 or fails naming the op ---- */

static int check_ctx(const char *op, const kb_ctx *ctx, kb_err *err) {
    if (!ctx) return kb_fail(err, "%s: ctx is NULL", op);
    if (ctx->device != KB_DEV_CPU && ctx->device != KB_DEV_CUDA)
        return kb_fail(err, "%s: unknown device %d in ctx", op, (int)ctx->device);
    return 0;
}

static int check_size(const char *op, const char *what, int64_t v, kb_err *err) {
    if (v < 0) return kb_fail(err, "%s: %s=%lld is negative", op, what, (long long)v);
    return 0;
}

/* A buffer of `count` elements must not be NULL when count > 0. */
static int check_ptr(const char *op, const char *what, const void *p, int64_t count, kb_err *err) {
    if (!p && count > 0) return kb_fail(err, "%s: %s is NULL with %lld elements", op, what, (long long)count);
    return 0;
}

/* rows*cols without overflow. */
static int check_matrix(const char *op, int64_t rows, int64_t cols, kb_err *err) {
    if (check_size(op, "rows", rows, err) || check_size(op, "cols", cols, err)) return -1;
    if (cols > 0 && rows > INT64_MAX / cols)
        return kb_fail(err, "%s: rows=%lld x cols=%lld overflows", op, (long long)rows, (long long)cols);
    return 0;
}

/* One stored GEMM operand (name "A", "B" or "C"): rows of `width` elements
 * as stored (op() undone), row stride ld. Only checked when the product reads it. */
static int check_operand(const char *op, const char *name, const void *p, int64_t ld, int64_t width, int trans,
                         const char *wname, kb_err *err) {
    char ldname[4] = {'l', 'd', (char)(name[0] - 'A' + 'a'), 0};
    if (!p) return kb_fail(err, "%s: %s is NULL", op, name);
    if (ld < width || ld < 1) {
        if (trans < 0)
            return kb_fail(err, "%s: %s=%lld < %s=%lld for %s", op, ldname, (long long)ld, wname, (long long)width, name);
        return kb_fail(err, "%s: %s=%lld < %s=%lld for %s (trans%s=%d)", op, ldname, (long long)ld, wname,
                       (long long)width, name, name, trans);
    }
    if (ld > INT_MAX) return kb_fail(err, "%s: %s=%lld exceeds the BLAS int range", op, ldname, (long long)ld);
    return 0;
}

static int check_gemm(const char *op, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float *A,
                      int64_t lda, const float *B, int64_t ldb, const float *C, int64_t ldc, kb_err *err) {
    if (check_size(op, "M", M, err) || check_size(op, "N", N, err) || check_size(op, "K", K, err)) return -1;
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX)
        return kb_fail(err, "%s: M=%lld N=%lld K=%lld exceed the BLAS int range", op, (long long)M, (long long)N,
                       (long long)K);
    if (M == 0 || N == 0) return 0;
    if (check_operand(op, "C", C, ldc, N, -1, "N", err)) return -1;
    if (K == 0) return 0;
    /* stored A is M x K (lda >= K), or K x M when transposed (lda >= M); B likewise */
    if (check_operand(op, "A", A, lda, transA ? M : K, (int)transA, transA ? "M" : "K", err)) return -1;
    if (check_operand(op, "B", B, ldb, transB ? K : N, (int)transB, transB ? "K" : "N", err)) return -1;
    return 0;
}

#define KB_DISPATCH(cuda_call, cpu_call) KB_PROF_DISPATCH(ctx, cuda_call, cpu_call)

/* ---- GEMM ---- */

int kb_gemm(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, kb_err *err) {
    const char *op = "kb_gemm";
    if (check_ctx(op, ctx, err) || check_gemm(op, transA, transB, M, N, K, A, lda, B, ldb, C, ldc, err)) return -1;
    KB_DISPATCH(kb_gemm_cuda(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, err),
                kb_gemm_cpu(ctx->threads, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
}

int kb_gemm_batched(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB,
                    float beta, float *C, int64_t ldc, int64_t strideC, int64_t batch, kb_err *err) {
    const char *op = "kb_gemm_batched";
    if (check_ctx(op, ctx, err) || check_size(op, "batch", batch, err)) return -1;
    if (batch == 0) return 0;
    if (check_gemm(op, transA, transB, M, N, K, A, lda, B, ldb, C, ldc, err)) return -1;
    if (check_size(op, "strideA", strideA, err) || check_size(op, "strideB", strideB, err) ||
        check_size(op, "strideC", strideC, err))
        return -1;
    /* Outputs of different batch entries must not overlap (inputs may: stride 0
     * broadcasts). They may be stacked (each after the previous one's last
     * element) or interleaved within the rows, as attention heads side by side
     * in one [T, heads*hd] matrix (N <= strideC, all of them within ldc). */
    int stacked = strideC >= (M - 1) * ldc + N;
    int interleaved = N <= strideC && (batch - 1) * strideC + N <= ldc;
    if (batch > 1 && M > 0 && N > 0 && !stacked && !interleaved)
        return kb_fail(err, "%s: strideC=%lld < (M-1)*ldc+N=%lld: the %lld output matrices would overlap", op,
                       (long long)strideC, (long long)((M - 1) * ldc + N), (long long)batch);
    KB_DISPATCH(kb_gemm_batched_cuda(ctx, transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C,
                                     ldc, strideC, batch, err),
                kb_gemm_batched_cpu(ctx->threads, transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB,
                                    beta, C, ldc, strideC, batch));
}

int kb_gemm_bias(kb_ctx *ctx, float *y, const float *x, const float *W, const float *bias, int64_t rows, int64_t in,
                 int64_t out, kb_err *err) {
    const char *op = "kb_gemm_bias";
    if (check_ctx(op, ctx, err) || check_gemm(op, false, true, rows, out, in, x, in, W, in, y, out, err) ||
        check_ptr(op, "y", y, rows * out, err))
        return -1;
    KB_DISPATCH(kb_gemm_bias_cuda(ctx, y, x, W, bias, rows, in, out, err),
                kb_gemm_bias_cpu(ctx->threads, y, x, W, bias, rows, in, out));
}

static void gemm_bias_gelu_cpu(int threads, float *act, float *pre, const float *x, const float *W, const float *bias,
                               int64_t rows, int64_t in, int64_t out) {
    kb_gemm_bias_cpu(threads, pre, x, W, bias, rows, in, out);
    kb_gelu_tanh_fwd_cpu(threads, act, pre, rows * out);
}

static void gemm_dgelu_cpu(int threads, float *dpre, const float *dy, const float *W, const float *pre, int64_t rows,
                           int64_t in, int64_t out) {
    kb_gemm_cpu(threads, false, false, rows, in, out, 1.0f, dy, out, W, in, 0.0f, dpre, in);
    kb_gelu_tanh_bwd_cpu(threads, dpre, pre, dpre, rows * in, KB_GRAD_SET); /* elementwise: in place is exact */
}

/* 1 when the float ranges [a, a+na) and [b, b+nb) share memory. */
static int overlap(const float *a, int64_t na, const float *b, int64_t nb) {
    return na > 0 && nb > 0 && a < b + nb && b < a + na;
}

int kb_gemm_bias_gelu(kb_ctx *ctx, float *act, float *pre, const float *x, const float *W, const float *bias,
                      int64_t rows, int64_t in, int64_t out, kb_err *err) {
    const char *op = "kb_gemm_bias_gelu";
    if (check_ctx(op, ctx, err) || check_gemm(op, false, true, rows, out, in, x, in, W, in, pre, out, err) ||
        check_ptr(op, "pre", pre, rows * out, err) || check_ptr(op, "act", act, rows * out, err))
        return -1;
    if (overlap(act, rows * out, pre, rows * out) || overlap(pre, rows * out, x, rows * in) ||
        overlap(act, rows * out, x, rows * in))
        return kb_fail(err, "%s: act, pre and x must not overlap (pre is kept for the backward)", op);
    KB_DISPATCH(kb_gemm_bias_gelu_cuda(ctx, act, pre, x, W, bias, rows, in, out, err),
                gemm_bias_gelu_cpu(ctx->threads, act, pre, x, W, bias, rows, in, out));
}

int kb_gemm_dgelu(kb_ctx *ctx, float *dpre, const float *dy, const float *W, const float *pre, int64_t rows,
                  int64_t in, int64_t out, kb_err *err) {
    const char *op = "kb_gemm_dgelu";
    if (check_ctx(op, ctx, err) || check_gemm(op, false, false, rows, in, out, dy, out, W, in, dpre, in, err) ||
        check_ptr(op, "pre", pre, rows * in, err))
        return -1;
    if (overlap(dpre, rows * in, pre, rows * in) || overlap(dpre, rows * in, dy, rows * out) ||
        overlap(dpre, rows * in, W, out * in))
        return kb_fail(err, "%s: dpre must not overlap pre, dy or W (the GEMM writes dpre before GELU' reads pre)", op);
    KB_DISPATCH(kb_gemm_dgelu_cuda(ctx, dpre, dy, W, pre, rows, in, out, err),
                gemm_dgelu_cpu(ctx->threads, dpre, dy, W, pre, rows, in, out));
}

static void gemm_wgrad_cpu(int threads, float *dW, float *db, const float *dy, const float *x, int64_t rows,
                           int64_t in, int64_t out) {
    kb_gemm_cpu(threads, true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dW, in);
    if (db) kb_sum_rows_cpu(threads, db, dy, rows, out);
}

int kb_gemm_wgrad(kb_ctx *ctx, float *dW, float *db, const float *dy, const float *x, int64_t rows, int64_t in,
                  int64_t out, kb_err *err) {
    const char *op = "kb_gemm_wgrad";
    if (check_ctx(op, ctx, err) || check_gemm(op, true, false, out, in, rows, dy, out, x, in, dW, in, err) ||
        (db && check_ptr(op, "dy", dy, rows * out, err)))
        return -1;
    if (overlap(dW, out * in, dy, rows * out) || overlap(dW, out * in, x, rows * in) ||
        (db && (overlap(db, out, dy, rows * out) || overlap(db, out, x, rows * in) || overlap(db, out, dW, out * in))))
        return kb_fail(err, "%s: dW and db must not overlap each other, dy or x", op);
    KB_DISPATCH(kb_gemm_wgrad_cuda(ctx, dW, db, dy, x, rows, in, out, err),
                gemm_wgrad_cpu(ctx->threads, dW, db, dy, x, rows, in, out));
}

/* ---- elementwise ---- */

static int check_1d(const char *op, int64_t n, const void *p0, const char *n0, const void *p1, const char *n1,
                    const void *p2, const char *n2, kb_ctx *ctx, kb_err *err) {
    if (check_ctx(op, ctx, err) || check_size(op, "n", n, err)) return -1;
    if (check_ptr(op, n0, p0, n, err)) return -1;
    if (n1 && check_ptr(op, n1, p1, n, err)) return -1;
    if (n2 && check_ptr(op, n2, p2, n, err)) return -1;
    return 0;
}

int kb_add(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err) {
    if (check_1d("kb_add", n, out, "out", a, "a", b, "b", ctx, err)) return -1;
    KB_DISPATCH(kb_add_cuda(ctx, out, a, b, n, err), kb_add_cpu(ctx->threads, out, a, b, n));
}

int kb_mul(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err) {
    if (check_1d("kb_mul", n, out, "out", a, "a", b, "b", ctx, err)) return -1;
    KB_DISPATCH(kb_mul_cuda(ctx, out, a, b, n, err), kb_mul_cpu(ctx->threads, out, a, b, n));
}

int kb_axpy(kb_ctx *ctx, float *y, float alpha, const float *x, int64_t n, kb_err *err) {
    if (check_1d("kb_axpy", n, y, "y", x, "x", NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_axpy_cuda(ctx, y, alpha, x, n, err), kb_axpy_cpu(ctx->threads, y, alpha, x, n));
}

int kb_scale(kb_ctx *ctx, float *x, float alpha, int64_t n, kb_err *err) {
    if (check_1d("kb_scale", n, x, "x", NULL, NULL, NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_scale_cuda(ctx, x, alpha, n, err), kb_scale_cpu(ctx->threads, x, alpha, n));
}

int kb_fill(kb_ctx *ctx, float *x, float value, int64_t n, kb_err *err) {
    if (check_1d("kb_fill", n, x, "x", NULL, NULL, NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_fill_cuda(ctx, x, value, n, err), kb_fill_cpu(ctx->threads, x, value, n));
}

int kb_add_bias(kb_ctx *ctx, float *out, const float *bias, int64_t rows, int64_t cols, kb_err *err) {
    const char *op = "kb_add_bias";
    if (check_ctx(op, ctx, err) || check_matrix(op, rows, cols, err) || check_ptr(op, "out", out, rows * cols, err) ||
        check_ptr(op, "bias", bias, rows > 0 ? cols : 0, err))
        return -1;
    KB_DISPATCH(kb_add_bias_cuda(ctx, out, bias, rows, cols, err), kb_add_bias_cpu(ctx->threads, out, bias, rows, cols));
}

int kb_sum_rows(kb_ctx *ctx, float *out, const float *in, int64_t rows, int64_t cols, kb_err *err) {
    const char *op = "kb_sum_rows";
    if (check_ctx(op, ctx, err) || check_matrix(op, rows, cols, err) || check_ptr(op, "out", out, cols, err) ||
        check_ptr(op, "in", in, rows * cols, err))
        return -1;
    KB_DISPATCH(kb_sum_rows_cuda(ctx, out, in, rows, cols, err), kb_sum_rows_cpu(ctx->threads, out, in, rows, cols));
}

int kb_sum(kb_ctx *ctx, double *out, const float *in, int64_t n, kb_err *err) {
    const char *op = "kb_sum";
    if (check_ctx(op, ctx, err) || check_size(op, "n", n, err) || check_ptr(op, "out", out, 1, err) ||
        check_ptr(op, "in", in, n, err))
        return -1;
    KB_DISPATCH(kb_sum_cuda(ctx, out, in, n, err), kb_sum_cpu(ctx->threads, out, in, n));
}

/* ---- activations ---- */

int kb_gelu_tanh_fwd(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    if (check_1d("kb_gelu_tanh_fwd", n, out, "out", inp, "inp", NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_gelu_tanh_fwd_cuda(ctx, out, inp, n, err), kb_gelu_tanh_fwd_cpu(ctx->threads, out, inp, n));
}

int kb_gelu_tanh_bwd(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_grad_mode mode,
                     kb_err *err) {
    if (check_1d("kb_gelu_tanh_bwd", n, dinp, "dinp", inp, "inp", dout, "dout", ctx, err)) return -1;
    KB_DISPATCH(kb_gelu_tanh_bwd_cuda(ctx, dinp, inp, dout, n, mode, err),
                kb_gelu_tanh_bwd_cpu(ctx->threads, dinp, inp, dout, n, mode));
}

int kb_silu_fwd(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    if (check_1d("kb_silu_fwd", n, out, "out", inp, "inp", NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_silu_fwd_cuda(ctx, out, inp, n, err), kb_silu_fwd_cpu(ctx->threads, out, inp, n));
}

int kb_silu_bwd(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_err *err) {
    if (check_1d("kb_silu_bwd", n, dinp, "dinp", inp, "inp", dout, "dout", ctx, err)) return -1;
    KB_DISPATCH(kb_silu_bwd_cuda(ctx, dinp, inp, dout, n, err), kb_silu_bwd_cpu(ctx->threads, dinp, inp, dout, n));
}

int kb_relu_fwd(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    if (check_1d("kb_relu_fwd", n, out, "out", inp, "inp", NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_relu_fwd_cuda(ctx, out, inp, n, err), kb_relu_fwd_cpu(ctx->threads, out, inp, n));
}

int kb_relu_bwd(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_err *err) {
    if (check_1d("kb_relu_bwd", n, dinp, "dinp", inp, "inp", dout, "dout", ctx, err)) return -1;
    KB_DISPATCH(kb_relu_bwd_cuda(ctx, dinp, inp, dout, n, err), kb_relu_bwd_cpu(ctx->threads, dinp, inp, dout, n));
}

/* ---- LayerNorm ---- */

int kb_layernorm_fwd(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *inp, const float *weight,
                     const float *bias, int64_t rows, int64_t cols, float eps, kb_err *err) {
    const char *op = "kb_layernorm_fwd";
    if (check_ctx(op, ctx, err) || check_matrix(op, rows, cols, err)) return -1;
    int64_t n = rows * cols;
    /* mean/rstd may be NULL (inference: nothing saved for backward) */
    if (check_ptr(op, "out", out, n, err) || check_ptr(op, "inp", inp, n, err)) return -1;
    if (!(eps >= 0.0f) || isinf(eps)) return kb_fail(err, "%s: eps=%g must be finite and >= 0", op, (double)eps);
    KB_DISPATCH(kb_layernorm_fwd_cuda(ctx, out, mean, rstd, inp, weight, bias, rows, cols, eps, err),
                kb_layernorm_fwd_cpu(ctx->threads, out, mean, rstd, inp, weight, bias, rows, cols, eps));
}

int kb_layernorm_bwd(kb_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, const float *mean, const float *rstd, int64_t rows, int64_t cols,
                     kb_err *err) {
    const char *op = "kb_layernorm_bwd";
    if (check_ctx(op, ctx, err) || check_matrix(op, rows, cols, err)) return -1;
    int64_t n = rows * cols;
    /* dinp, dweight, dbias may each be NULL (that gradient is not wanted) */
    if (check_ptr(op, "dout", dout, n, err) ||
        check_ptr(op, "inp", inp, n, err) || check_ptr(op, "mean", mean, n > 0 ? rows : 0, err) ||
        check_ptr(op, "rstd", rstd, n > 0 ? rows : 0, err))
        return -1;
    KB_DISPATCH(kb_layernorm_bwd_cuda(ctx, dinp, dweight, dbias, dout, inp, weight, mean, rstd, rows, cols, err),
                kb_layernorm_bwd_cpu(ctx->threads, dinp, dweight, dbias, dout, inp, weight, mean, rstd, rows, cols));
}

/* ---- softmax ---- */

int kb_softmax_fwd(kb_ctx *ctx, float *out, const float *inp, int64_t rows, int64_t cols, kb_err *err) {
    const char *op = "kb_softmax_fwd";
    if (check_ctx(op, ctx, err) || check_matrix(op, rows, cols, err) || check_ptr(op, "out", out, rows * cols, err) ||
        check_ptr(op, "inp", inp, rows * cols, err))
        return -1;
    KB_DISPATCH(kb_softmax_fwd_cuda(ctx, out, inp, rows, cols, err), kb_softmax_fwd_cpu(ctx->threads, out, inp, rows, cols));
}

int kb_softmax_bwd(kb_ctx *ctx, float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols,
                   kb_err *err) {
    const char *op = "kb_softmax_bwd";
    if (check_ctx(op, ctx, err) || check_matrix(op, rows, cols, err) ||
        check_ptr(op, "dinp", dinp, rows * cols, err) || check_ptr(op, "dout", dout, rows * cols, err) ||
        check_ptr(op, "out", out, rows * cols, err))
        return -1;
    KB_DISPATCH(kb_softmax_bwd_cuda(ctx, dinp, dout, out, rows, cols, err),
                kb_softmax_bwd_cpu(ctx->threads, dinp, dout, out, rows, cols));
}

/* ---- conversions ---- */

int kb_u8_to_f32(kb_ctx *ctx, float *out, const uint8_t *in, int64_t n, float scale, float offset, kb_err *err) {
    if (check_1d("kb_u8_to_f32", n, out, "out", in, "in", NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_u8_to_f32_cuda(ctx, out, in, n, scale, offset, err),
                kb_u8_to_f32_cpu(ctx->threads, out, in, n, scale, offset));
}

int kb_f32_to_bf16(kb_ctx *ctx, uint16_t *out, const float *in, int64_t n, kb_err *err) {
    if (check_1d("kb_f32_to_bf16", n, out, "out", in, "in", NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_f32_to_bf16_cuda(ctx, out, in, n, err), kb_f32_to_bf16_cpu(ctx->threads, out, in, n));
}

int kb_bf16_to_f32(kb_ctx *ctx, float *out, const uint16_t *in, int64_t n, kb_err *err) {
    if (check_1d("kb_bf16_to_f32", n, out, "out", in, "in", NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_bf16_to_f32_cuda(ctx, out, in, n, err), kb_bf16_to_f32_cpu(ctx->threads, out, in, n));
}

/* ---- random fills ---- */

int kb_rand_uniform(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi,
                    kb_err *err) {
    if (check_1d("kb_rand_uniform", n, out, "out", NULL, NULL, NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_rand_uniform_cuda(ctx, out, n, seed, stream, lo, hi, err),
                kb_rand_uniform_cpu(ctx->threads, out, n, seed, stream, lo, hi));
}

int kb_rand_normal(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std,
                   kb_err *err) {
    if (check_1d("kb_rand_normal", n, out, "out", NULL, NULL, NULL, NULL, ctx, err)) return -1;
    KB_DISPATCH(kb_rand_normal_cuda(ctx, out, n, seed, stream, mean, std, err),
                kb_rand_normal_cpu(ctx->threads, out, n, seed, stream, mean, std));
}
