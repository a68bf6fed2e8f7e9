/* Fast CPU implementations of the ops in nn/ops.h: OpenBLAS GEMMs and OpenMP
 * loops over `threads` threads. Same arguments as the references plus the
 * thread count; for a fixed thread count results are bit-identical run to run. */
#ifndef KB_OPS_CPU_H
#define KB_OPS_CPU_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/backend.h" /* kb_grad_mode */

void kb_gemm_cpu(int threads, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void kb_gemm_batched_cpu(int threads, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB, float beta, float *C, int64_t ldc, int64_t strideC, int64_t batch);
void kb_add_cpu(int threads, float *out, const float *a, const float *b, int64_t n);
void kb_mul_cpu(int threads, float *out, const float *a, const float *b, int64_t n);
void kb_axpy_cpu(int threads, float *y, float alpha, const float *x, int64_t n);
void kb_scale_cpu(int threads, float *x, float alpha, int64_t n);
void kb_fill_cpu(int threads, float *x, float value, int64_t n);
void kb_add_bias_cpu(int threads, float *out, const float *bias, int64_t rows, int64_t cols);
void kb_gemm_bias_cpu(int threads, float *y, const float *x, const float *W, const float *bias, int64_t rows, int64_t in,
                      int64_t out);
void kb_sum_rows_cpu(int threads, float *out, const float *in, int64_t rows, int64_t cols);
void kb_sum_cpu(int threads, double *out, const float *in, int64_t n);
void kb_gelu_tanh_fwd_cpu(int threads, float *out, const float *inp, int64_t n);
void kb_gelu_tanh_bwd_cpu(int threads, float *dinp, const float *inp, const float *dout, int64_t n, kb_grad_mode mode);
void kb_silu_fwd_cpu(int threads, float *out, const float *inp, int64_t n);
void kb_silu_bwd_cpu(int threads, float *dinp, const float *inp, const float *dout, int64_t n);
void kb_relu_fwd_cpu(int threads, float *out, const float *inp, int64_t n);
void kb_relu_bwd_cpu(int threads, float *dinp, const float *inp, const float *dout, int64_t n);
void kb_layernorm_fwd_cpu(int threads, float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias, int64_t rows, int64_t cols, float eps);
void kb_layernorm_bwd_cpu(int threads, float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight, const float *mean, const float *rstd, int64_t rows, int64_t cols);
void kb_softmax_fwd_cpu(int threads, float *out, const float *inp, int64_t rows, int64_t cols);
void kb_softmax_bwd_cpu(int threads, float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols);
void kb_u8_to_f32_cpu(int threads, float *out, const uint8_t *in, int64_t n, float scale, float offset);
void kb_f32_to_bf16_cpu(int threads, uint16_t *out, const float *in, int64_t n);
void kb_bf16_to_f32_cpu(int threads, float *out, const uint16_t *in, int64_t n);
void kb_rand_uniform_cpu(int threads, float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi);
void kb_rand_normal_cpu(int threads, float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std);

#endif
