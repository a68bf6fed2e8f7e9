/* Plain single-threaded C references of the ops in nn/ops.h (same arguments
 * minus ctx and err; sizes are validated by the dispatcher). These are the
 * ground truth: tested against PyTorch, and the fast CPU and CUDA paths are
 * tested against them. */
#ifndef KB_OPS_REF_H
#define KB_OPS_REF_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/backend.h" /* kb_grad_mode */

void kb_gemm_ref(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void kb_gemm_batched_ref(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB, float beta, float *C, int64_t ldc, int64_t strideC, int64_t batch);
void kb_add_ref(float *out, const float *a, const float *b, int64_t n);
void kb_mul_ref(float *out, const float *a, const float *b, int64_t n);
void kb_axpy_ref(float *y, float alpha, const float *x, int64_t n);
void kb_scale_ref(float *x, float alpha, int64_t n);
void kb_fill_ref(float *x, float value, int64_t n);
void kb_add_bias_ref(float *out, const float *bias, int64_t rows, int64_t cols);
void kb_gemm_bias_ref(float *y, const float *x, const float *W, const float *bias, int64_t rows, int64_t in, int64_t out);
void kb_sum_rows_ref(float *out, const float *in, int64_t rows, int64_t cols);
void kb_sum_ref(double *out, const float *in, int64_t n);
void kb_gelu_tanh_fwd_ref(float *out, const float *inp, int64_t n);
void kb_gelu_tanh_bwd_ref(float *dinp, const float *inp, const float *dout, int64_t n, kb_grad_mode mode);
void kb_silu_fwd_ref(float *out, const float *inp, int64_t n);
void kb_silu_bwd_ref(float *dinp, const float *inp, const float *dout, int64_t n);
void kb_relu_fwd_ref(float *out, const float *inp, int64_t n);
void kb_relu_bwd_ref(float *dinp, const float *inp, const float *dout, int64_t n);
void kb_layernorm_fwd_ref(float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias, int64_t rows, int64_t cols, float eps);
void kb_layernorm_bwd_ref(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight, const float *mean, const float *rstd, int64_t rows, int64_t cols);
void kb_softmax_fwd_ref(float *out, const float *inp, int64_t rows, int64_t cols);
void kb_softmax_bwd_ref(float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols);
void kb_u8_to_f32_ref(float *out, const uint8_t *in, int64_t n, float scale, float offset);
void kb_f32_to_bf16_ref(uint16_t *out, const float *in, int64_t n);
void kb_bf16_to_f32_ref(float *out, const uint16_t *in, int64_t n);
void kb_rand_uniform_ref(float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi);
void kb_rand_normal_ref(float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std);

#endif
