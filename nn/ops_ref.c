/* Plain single-threaded references of the ops in nn/ops.h (see nn/ops_ref.h).
 *
 * Precision: every reduction (GEMM dot products, row/column sums, LayerNorm
 * statistics and backward reductions, softmax normaliser) is accumulated in
 * double, sequentially in index order, so the reference is close to the exact
 * result and other implementations are measured against that rather than
 * against one particular float summation order. Everything else is float
 * arithmetic as written (no FMA contraction: -ffp-contract=off). Elementwise
 * math comes from nn/ops_scalar.h, shared with the fast CPU path. */
#include "nn/ops_ref.h"

#include <math.h>
#include <string.h>

#include "nn/ops_scalar.h"
#include "nn/rng.h"

/* ---- GEMM ---- */

/* op(A)[i, k] and op(B)[k, j] of the row-major stored matrices. */
static inline float at_a(bool transA, const float *A, int64_t lda, int64_t i, int64_t k) {
    return transA ? A[k * lda + i] : A[i * lda + k];
}
static inline float at_b(bool transB, const float *B, int64_t ldb, int64_t k, int64_t j) {
    return transB ? B[j * ldb + k] : B[k * ldb + j];
}

/* C = alpha * op(A) op(B) + beta * C. The dot product is exact-ish in double
 * (float*float is exact in double), rounded once to float; then
 * alpha * dot + beta * C in float. beta == 0 does not read C (BLAS rule:
 * NaNs in an uninitialised C must not leak). */
void kb_gemm_ref(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)at_a(transA, A, lda, i, k) * (double)at_b(transB, B, ldb, k, j);
            float ab = alpha * (float)acc;
            float *c = &C[i * ldc + j];
            *c = beta == 0.0f ? ab : ab + beta * *c;
        }
    }
}

void kb_gemm_batched_ref(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                         int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB, float beta,
                         float *C, int64_t ldc, int64_t strideC, int64_t batch) {
    for (int64_t b = 0; b < batch; b++)
        kb_gemm_ref(transA, transB, M, N, K, alpha, A + b * strideA, lda, B + b * strideB, ldb, beta,
                    C + b * strideC, ldc);
}

/* ---- elementwise ---- */

void kb_add_ref(float *out, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void kb_mul_ref(float *out, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void kb_axpy_ref(float *y, float alpha, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = y[i] + alpha * x[i];
}

void kb_scale_ref(float *x, float alpha, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * alpha;
}

void kb_fill_ref(float *x, float value, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = value;
}

void kb_add_bias_ref(float *out, const float *bias, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[r * cols + c] = out[r * cols + c] + bias[c];
}

void kb_gemm_bias_ref(float *y, const float *x, const float *W, const float *bias, int64_t rows, int64_t in, int64_t out) {
    kb_gemm_ref(false, true, rows, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    if (bias) kb_add_bias_ref(y, bias, rows, out);
}

/* out[c] += (float)(sum over rows in double). */
void kb_sum_rows_ref(float *out, const float *in, int64_t rows, int64_t cols) {
    for (int64_t c = 0; c < cols; c++) {
        double acc = 0.0;
        for (int64_t r = 0; r < rows; r++) acc += (double)in[r * cols + c];
        out[c] = out[c] + (float)acc;
    }
}

void kb_sum_ref(double *out, const float *in, int64_t n) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) acc += (double)in[i];
    *out = acc;
}

/* ---- activations ---- */

void kb_gelu_tanh_fwd_ref(float *out, const float *inp, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_gelu_tanh(inp[i]);
}

void kb_gelu_tanh_bwd_ref(float *dinp, const float *inp, const float *dout, int64_t n, kb_grad_mode mode) {
    for (int64_t i = 0; i < n; i++) {
        float g = dout[i] * kb_sc_gelu_tanh_grad(inp[i]);
        dinp[i] = mode == KB_GRAD_SET ? g : dinp[i] + g;
    }
}

void kb_silu_fwd_ref(float *out, const float *inp, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_silu(inp[i]);
}

void kb_silu_bwd_ref(float *dinp, const float *inp, const float *dout, int64_t n) {
    for (int64_t i = 0; i < n; i++) dinp[i] = dinp[i] + dout[i] * kb_sc_silu_grad(inp[i]);
}

void kb_relu_fwd_ref(float *out, const float *inp, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_relu(inp[i]);
}

void kb_relu_bwd_ref(float *dinp, const float *inp, const float *dout, int64_t n) {
    for (int64_t i = 0; i < n; i++) dinp[i] = dinp[i] + (inp[i] > 0.0f ? dout[i] : 0.0f);
}

/* ---- LayerNorm ---- */

/* Two-pass statistics in double: mean, then the biased variance (divide by
 * cols, as torch) of the deviations from that mean. rstd = 1/sqrt(var + eps)
 * in double, rounded once. The normalisation itself is float:
 * ((x - mean) * rstd) * weight + bias. cols == 0 does nothing. */
void kb_layernorm_fwd_ref(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                          const float *bias, int64_t rows, int64_t cols, float eps) {
    if (cols == 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = inp + r * cols;
        double s = 0.0;
        for (int64_t c = 0; c < cols; c++) s += (double)x[c];
        double mu = s / (double)cols;
        double v = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)x[c] - mu;
            v += d * d;
        }
        float m = (float)mu;
        float rs = (float)(1.0 / sqrt(v / (double)cols + (double)eps));
        float *o = out + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            float y = (x[c] - m) * rs;
            if (weight) y = y * weight[c];
            if (bias) y = y + bias[c];
            o[c] = y;
        }
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = rs;
    }
}

/* With xhat = (x - mean) * rstd and g = weight * dout (dout without weight):
 *   dinp    += (g - mean_c(g) - xhat * mean_c(g * xhat)) * rstd
 *   dweight += sum_r dout * xhat,  dbias += sum_r dout
 * (llm.c's layernorm_backward). Row means and column sums in double. */
void kb_layernorm_bwd_ref(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                          const float *weight, const float *mean, const float *rstd, int64_t rows, int64_t cols) {
    if (cols == 0) return;
    for (int64_t r = 0; dinp && r < rows; r++) {
        const float *x = inp + r * cols, *dy = dout + r * cols;
        float m = mean[r], rs = rstd[r];
        double sg = 0.0, sgx = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            float g = weight ? weight[c] * dy[c] : dy[c];
            float xhat = (x[c] - m) * rs;
            sg += (double)g;
            sgx += (double)g * (double)xhat;
        }
        float g_mean = (float)(sg / (double)cols), gx_mean = (float)(sgx / (double)cols);
        float *dx = dinp + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            float g = weight ? weight[c] * dy[c] : dy[c];
            float xhat = (x[c] - m) * rs;
            dx[c] = dx[c] + (g - g_mean - xhat * gx_mean) * rs;
        }
    }
    for (int64_t c = 0; (dweight || dbias) && c < cols; c++) {
        double sw = 0.0, sb = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            float dy = dout[r * cols + c];
            float xhat = (inp[r * cols + c] - mean[r]) * rstd[r];
            sw += (double)dy * (double)xhat;
            sb += (double)dy;
        }
        if (dweight) dweight[c] = dweight[c] + (float)sw;
        if (dbias) dbias[c] = dbias[c] + (float)sb;
    }
}

/* ---- softmax ---- */

/* e = exp(x - max) (argument <= 0), sum in double, out = e * (float)(1/sum).
 * In place (out == inp) is fine. */
void kb_softmax_fwd_ref(float *out, const float *inp, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *x = inp + r * cols;
        float *o = out + r * cols;
        float mx = -INFINITY;
        for (int64_t c = 0; c < cols; c++) mx = x[c] > mx ? x[c] : mx;
        double s = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            float em, e;
            kb_sc_exp_nonpos(x[c] - mx, &em, &e);
            o[c] = e;
            s += (double)e;
        }
        float inv = (float)(1.0 / s);
        for (int64_t c = 0; c < cols; c++) o[c] = o[c] * inv;
    }
}

/* dinp = out * (dout - sum_c(dout * out)), the dot product in double
 * (written, not accumulated: see nn/ops.h). */
void kb_softmax_bwd_ref(float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *y = out + r * cols, *dy = dout + r * cols;
        float *dx = dinp + r * cols;
        double d = 0.0;
        for (int64_t c = 0; c < cols; c++) d += (double)dy[c] * (double)y[c];
        float df = (float)d;
        for (int64_t c = 0; c < cols; c++) dx[c] = y[c] * (dy[c] - df);
    }
}

/* ---- conversions ---- */

void kb_u8_to_f32_ref(float *out, const uint8_t *in, int64_t n, float scale, float offset) {
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_u8_to_f32(in[i], scale, offset);
}

void kb_f32_to_bf16_ref(uint16_t *out, const float *in, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_f32_to_bf16(in[i]);
}

void kb_bf16_to_f32_ref(float *out, const uint16_t *in, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_bf16_to_f32(in[i]);
}

/* ---- random fills: element i is a pure function of (seed, stream, i) ---- */

void kb_rand_uniform_ref(float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) out[i] = kb_rng_uniform_scaled(seed, stream, (uint64_t)i, lo, hi);
}

void kb_rand_normal_ref(float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std) {
    for (int64_t i = 0; i < n; i++) out[i] = kb_rng_normal_scaled(seed, stream, (uint64_t)i, mean, std);
}
