/* CPU-only builds: the CUDA products on bf16 activations report that CUDA is not compiled in. */
#include "nn/ops_cuda.h"

#define NO_CUDA(op) return kb_fail(err, "%s: this kindbench was built without CUDA", op)

int kb_gemm_bias_x16_cuda(kb_ctx *ctx, float *y, const uint16_t *x16, const float *W, const float *bias, int64_t rows,
                          int64_t in, int64_t out, kb_err *err) { NO_CUDA("gemm_bias_x16"); }
int kb_gemm_bias_x16_y16_cuda(kb_ctx *ctx, uint16_t *y16, const uint16_t *x16, const float *W, const float *bias,
                              int64_t rows, int64_t in, int64_t out, kb_err *err) { NO_CUDA("gemm_bias_x16_y16"); }
int kb_gemm_bias_gelu_x16_cuda(kb_ctx *ctx, uint16_t *act16, uint16_t *pre16, const uint16_t *x16, const float *W,
                               const float *bias, int64_t rows, int64_t in, int64_t out,
                               kb_err *err) { NO_CUDA("gemm_bias_gelu_x16"); }
int kb_gemm_dx_x16_cuda(kb_ctx *ctx, float *dx, kb_grad_mode mode, const uint16_t *dy16, const float *W, int64_t rows,
                        int64_t in, int64_t out, kb_err *err) { NO_CUDA("gemm_dx_x16"); }
int kb_gemm_dx_x16_y16_cuda(kb_ctx *ctx, uint16_t *dx16, const uint16_t *dy16, const float *W, int64_t rows,
                            int64_t in, int64_t out, kb_err *err) { NO_CUDA("gemm_dx_x16_y16"); }
int kb_gemm_dgelu_x16_cuda(kb_ctx *ctx, uint16_t *dpre16, const uint16_t *dy16, const float *W, const uint16_t *pre16,
                           int64_t rows, int64_t in, int64_t out, kb_err *err) { NO_CUDA("gemm_dgelu_x16"); }
int kb_gemm_wgrad_x16_cuda(kb_ctx *ctx, float *dW, float *db, const uint16_t *dy16, const uint16_t *x16, int64_t rows,
                           int64_t in, int64_t out, kb_err *err) { NO_CUDA("gemm_wgrad_x16"); }
