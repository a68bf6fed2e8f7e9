/* CUDA implementations of the ops in nn/ops.h: same arguments as the dispatchers.
 * Defined in nn/ops_cuda.cu (CUDA builds) or nn/ops_cudastub.c (CPU-only builds,
 * where each reports that CUDA is not compiled in). Pointers are device pointers. */
#ifndef KB_OPS_CUDA_H
#define KB_OPS_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

int kb_gemm_cuda(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, kb_err *err);
int kb_gemm_batched_cuda(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB,
                    float beta, float *C, int64_t ldc, int64_t strideC, int64_t batch, kb_err *err);
/* nn/ops_gemm_lt_cuda.cu: cuBLASLt with the bias in the epilogue. */
int kb_gemm_bias_cuda(kb_ctx *ctx, float *y, const float *x, const float *W, const float *bias, int64_t rows, int64_t in,
                      int64_t out, kb_err *err);
int kb_gemm_bias_gelu_cuda(kb_ctx *ctx, float *act, float *pre, const float *x, const float *W, const float *bias,
                           int64_t rows, int64_t in, int64_t out, kb_err *err);
int kb_gemm_dgelu_cuda(kb_ctx *ctx, float *dpre, const float *dy, const float *W, const float *pre, int64_t rows,
                       int64_t in, int64_t out, kb_err *err);
int kb_gemm_wgrad_cuda(kb_ctx *ctx, float *dW, float *db, const float *dy, const float *x, int64_t rows, int64_t in,
                       int64_t out, kb_err *err);
/* bf16 activations (nn/ops.h "*_x16"; kb_gemm_bias_x16_cuda in nn/ops_gemm_lt_cuda.cu, the rest in nn/ops_x16_cuda.cu) */
int kb_gemm_bias_x16_cuda(kb_ctx *ctx, float *y, const uint16_t *x16, const float *W, const float *bias, int64_t rows,
                          int64_t in, int64_t out, kb_err *err);
int kb_gemm_bias_x16_y16_cuda(kb_ctx *ctx, uint16_t *y16, const uint16_t *x16, const float *W, const float *bias,
                              int64_t rows, int64_t in, int64_t out, kb_err *err);
int kb_gemm_bias_gelu_x16_cuda(kb_ctx *ctx, uint16_t *act16, uint16_t *pre16, const uint16_t *x16, const float *W,
                               const float *bias, int64_t rows, int64_t in, int64_t out, kb_err *err);
int kb_gemm_dx_x16_cuda(kb_ctx *ctx, float *dx, kb_grad_mode mode, const uint16_t *dy16, const float *W, int64_t rows,
                        int64_t in, int64_t out, kb_err *err);
int kb_gemm_dx_x16_y16_cuda(kb_ctx *ctx, uint16_t *dx16, const uint16_t *dy16, const float *W, int64_t rows,
                            int64_t in, int64_t out, kb_err *err);
int kb_gemm_dgelu_x16_cuda(kb_ctx *ctx, uint16_t *dpre16, const uint16_t *dy16, const float *W, const uint16_t *pre16,
                           int64_t rows, int64_t in, int64_t out, kb_err *err);
int kb_gemm_wgrad_x16_cuda(kb_ctx *ctx, float *dW, float *db, const uint16_t *dy16, const uint16_t *x16, int64_t rows,
                           int64_t in, int64_t out, kb_err *err);
int kb_add_cuda(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err);
int kb_mul_cuda(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err);
int kb_axpy_cuda(kb_ctx *ctx, float *y, float alpha, const float *x, int64_t n, kb_err *err);
int kb_scale_cuda(kb_ctx *ctx, float *x, float alpha, int64_t n, kb_err *err);
int kb_fill_cuda(kb_ctx *ctx, float *x, float value, int64_t n, kb_err *err);
int kb_add_bias_cuda(kb_ctx *ctx, float *out, const float *bias, int64_t rows, int64_t cols, kb_err *err);
int kb_sum_rows_cuda(kb_ctx *ctx, float *out, const float *in, int64_t rows, int64_t cols, kb_err *err);
int kb_sum_cuda(kb_ctx *ctx, double *out, const float *in, int64_t n, kb_err *err);
int kb_gelu_tanh_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err);
int kb_gelu_tanh_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_grad_mode mode,
                          kb_err *err);
int kb_silu_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err);
int kb_silu_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_err *err);
int kb_relu_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err);
int kb_relu_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_err *err);
int kb_layernorm_fwd_cuda(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *inp, const float *weight,
                     const float *bias, int64_t rows, int64_t cols, float eps, kb_err *err);
int kb_layernorm_bwd_cuda(kb_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, const float *mean, const float *rstd, int64_t rows, int64_t cols,
                     kb_err *err);
int kb_softmax_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t rows, int64_t cols, kb_err *err);
int kb_softmax_bwd_cuda(kb_ctx *ctx, float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols,
                   kb_err *err);
int kb_u8_to_f32_cuda(kb_ctx *ctx, float *out, const uint8_t *in, int64_t n, float scale, float offset, kb_err *err);
int kb_f32_to_bf16_cuda(kb_ctx *ctx, uint16_t *out, const float *in, int64_t n, kb_err *err);
int kb_bf16_to_f32_cuda(kb_ctx *ctx, float *out, const uint16_t *in, int64_t n, kb_err *err);
int kb_rand_uniform_cuda(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi,
                    kb_err *err);
int kb_rand_normal_cuda(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std,
                   kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
