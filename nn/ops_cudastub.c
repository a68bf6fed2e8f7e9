/* CPU-only builds: the CUDA op entry points of nn/ops_cuda.h, each reporting
 * that this binary has no CUDA support (the dispatchers in nn/ops.c pass the
 * message on). CUDA builds use nn/ops_cuda.cu instead. */
#include "nn/ops_cuda.h"

int kb_gemm_cuda(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, kb_err *err) {
    return kb_fail(err, "gemm: this kindbench was built without CUDA");
}
int kb_gemm_batched_cuda(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB,
                         float beta, float *C, int64_t ldc, int64_t strideC, int64_t batch, kb_err *err) {
    return kb_fail(err, "gemm_batched: this kindbench was built without CUDA");
}
int kb_gemm_bias_cuda(kb_ctx *ctx, float *y, const float *x, const float *W, const float *bias, int64_t rows, int64_t in,
                      int64_t out, kb_err *err) {
    return kb_fail(err, "gemm_bias: this kindbench was built without CUDA");
}
int kb_gemm_bias_gelu_cuda(kb_ctx *ctx, float *act, float *pre, const float *x, const float *W, const float *bias,
                           int64_t rows, int64_t in, int64_t out, kb_err *err) {
    return kb_fail(err, "gemm_bias_gelu: this kindbench was built without CUDA");
}
int kb_gemm_dgelu_cuda(kb_ctx *ctx, float *dpre, const float *dy, const float *W, const float *pre, int64_t rows,
                       int64_t in, int64_t out, kb_err *err) {
    return kb_fail(err, "gemm_dgelu: this kindbench was built without CUDA");
}
int kb_gemm_wgrad_cuda(kb_ctx *ctx, float *dW, float *db, const float *dy, const float *x, int64_t rows, int64_t in,
                       int64_t out, kb_err *err) {
    return kb_fail(err, "gemm_wgrad: this kindbench was built without CUDA");
}
int kb_add_cuda(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err) {
    return kb_fail(err, "add: this kindbench was built without CUDA");
}
int kb_mul_cuda(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err) {
    return kb_fail(err, "mul: this kindbench was built without CUDA");
}
int kb_axpy_cuda(kb_ctx *ctx, float *y, float alpha, const float *x, int64_t n, kb_err *err) {
    return kb_fail(err, "axpy: this kindbench was built without CUDA");
}
int kb_scale_cuda(kb_ctx *ctx, float *x, float alpha, int64_t n, kb_err *err) {
    return kb_fail(err, "scale: this kindbench was built without CUDA");
}
int kb_fill_cuda(kb_ctx *ctx, float *x, float value, int64_t n, kb_err *err) {
    return kb_fail(err, "fill: this kindbench was built without CUDA");
}
int kb_add_bias_cuda(kb_ctx *ctx, float *out, const float *bias, int64_t rows, int64_t cols, kb_err *err) {
    return kb_fail(err, "add_bias: this kindbench was built without CUDA");
}
int kb_sum_rows_cuda(kb_ctx *ctx, float *out, const float *in, int64_t rows, int64_t cols, kb_err *err) {
    return kb_fail(err, "sum_rows: this kindbench was built without CUDA");
}
int kb_sum_cuda(kb_ctx *ctx, double *out, const float *in, int64_t n, kb_err *err) {
    return kb_fail(err, "sum: this kindbench was built without CUDA");
}
int kb_gelu_tanh_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    return kb_fail(err, "gelu_tanh_fwd: this kindbench was built without CUDA");
}
int kb_gelu_tanh_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_grad_mode mode,
                          kb_err *err) {
    return kb_fail(err, "gelu_tanh_bwd: this kindbench was built without CUDA");
}
int kb_silu_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    return kb_fail(err, "silu_fwd: this kindbench was built without CUDA");
}
int kb_silu_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_err *err) {
    return kb_fail(err, "silu_bwd: this kindbench was built without CUDA");
}
int kb_relu_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    return kb_fail(err, "relu_fwd: this kindbench was built without CUDA");
}
int kb_relu_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_err *err) {
    return kb_fail(err, "relu_bwd: this kindbench was built without CUDA");
}
int kb_layernorm_fwd_cuda(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *inp, const float *weight,
                          const float *bias, int64_t rows, int64_t cols, float eps, kb_err *err) {
    return kb_fail(err, "layernorm_fwd: this kindbench was built without CUDA");
}
int kb_layernorm_bwd_cuda(kb_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                          const float *weight, const float *mean, const float *rstd, int64_t rows, int64_t cols,
                          kb_err *err) {
    return kb_fail(err, "layernorm_bwd: this kindbench was built without CUDA");
}
int kb_softmax_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t rows, int64_t cols, kb_err *err) {
    return kb_fail(err, "softmax_fwd: this kindbench was built without CUDA");
}
int kb_softmax_bwd_cuda(kb_ctx *ctx, float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols,
                        kb_err *err) {
    return kb_fail(err, "softmax_bwd: this kindbench was built without CUDA");
}
int kb_u8_to_f32_cuda(kb_ctx *ctx, float *out, const uint8_t *in, int64_t n, float scale, float offset, kb_err *err) {
    return kb_fail(err, "u8_to_f32: this kindbench was built without CUDA");
}
int kb_f32_to_bf16_cuda(kb_ctx *ctx, uint16_t *out, const float *in, int64_t n, kb_err *err) {
    return kb_fail(err, "f32_to_bf16: this kindbench was built without CUDA");
}
int kb_bf16_to_f32_cuda(kb_ctx *ctx, float *out, const uint16_t *in, int64_t n, kb_err *err) {
    return kb_fail(err, "bf16_to_f32: this kindbench was built without CUDA");
}
int kb_rand_uniform_cuda(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi,
                         kb_err *err) {
    return kb_fail(err, "rand_uniform: this kindbench was built without CUDA");
}
int kb_rand_normal_cuda(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std,
                        kb_err *err) {
    return kb_fail(err, "rand_normal: this kindbench was built without CUDA");
}
