/* Numeric ops shared by the models and the metrics, in llm.c style: explicit
 * forward and backward functions over raw row-major buffers.
 *
 * Every op exists three times:
 *   kb_<op>_ref   plain single-threaded C loops: the reference (tested against PyTorch)
 *   kb_<op>_cpu   the fast CPU path (OpenBLAS GEMMs, OpenMP threads), tested against _ref
 *   kb_<op>_cuda  the CUDA path (cuBLAS/cuBLASLt and our kernels), tested against _ref
 * and kb_<op>(ctx, ...) dispatches on ctx->device. Pointers must live on the
 * ctx's device. Sizes are int64_t element counts.
 *
 * Conventions:
 *   - Backward functions ACCUMULATE into their gradient outputs (+=), as llm.c
 *     does, so that residual branches add up; callers zero gradients first.
 *     Those that take a kb_grad_mode (nn/backend.h) write over their input
 *     gradient with KB_GRAD_SET instead (no zeroing needed); softmax's
 *     backward always writes over.
 *   - GEMMs are row-major: C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C,
 *     op(X) = X or X^T; lda/ldb/ldc are row strides of the stored matrices.
 *   - Random fills are counter-based (nn/rng.h): element i of (seed, stream)
 *     has the same bits on every backend and thread count.
 *   - CPU-only builds provide the _cuda symbols as stubs that report an error
 *     through the dispatcher; the dispatchers return -1 with err filled in on
 *     failure (bad sizes, CUDA errors), 0 on success. */
#ifndef KB_OPS_H
#define KB_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

/* ---- GEMM ----
 * beta == 0 does not read C (NaN/garbage in C is overwritten, BLAS rule);
 * K == 0 gives C = beta * C. lda/ldb/ldc are only checked (and A/B/C only
 * read) when the product touches them. */
int kb_gemm(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
            int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, kb_err *err);
/* batch independent GEMMs with fixed strides (elements) between consecutive
 * matrices. Strides are >= 0; strideA/strideB may be 0 (broadcast), the C
 * matrices must not overlap (strideC >= (M-1)*ldc + N when batch > 1). */
int kb_gemm_batched(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB,
                    float beta, float *C, int64_t ldc, int64_t strideC, int64_t batch, kb_err *err);

/* y[rows, out] = x[rows, in] W[out, in]^T (+ bias[out] when bias is not NULL),
 * all contiguous: a linear layer's forward (PyTorch's F.linear) as one op, so
 * that the CUDA path adds the bias in the GEMM's epilogue (cuBLASLt) instead
 * of a second pass over y. On the CPU it is kb_gemm then kb_add_bias. */
int kb_gemm_bias(kb_ctx *ctx, float *y, const float *x, const float *W, const float *bias, int64_t rows, int64_t in,
                 int64_t out, kb_err *err);
/* An MLP's first layer and its GELU: pre = x W^T + bias ([rows, out]) and
 * act = gelu_tanh(pre). kb_gemm_bias then kb_gelu_tanh_fwd, bit for bit,
 * except on CUDA with the cuBLASLt GELU epilogue switched on (BF16 mode and
 * KINDBENCH_LT_GELU=1, see nn/ops_gemm_lt_cuda.cu): one matmul writes both. */
int kb_gemm_bias_gelu(kb_ctx *ctx, float *act, float *pre, const float *x, const float *W, const float *bias,
                      int64_t rows, int64_t in, int64_t out, kb_err *err);
/* The matching backward through the next layer's input: dpre[rows, in] =
 * (dy[rows, out] W[out, in]) * gelu_tanh'(pre[rows, in]), written over dpre.
 * kb_gemm (beta 0) then kb_gelu_tanh_bwd in place, or the DGELU epilogue. */
int kb_gemm_dgelu(kb_ctx *ctx, float *dpre, const float *dy, const float *W, const float *pre, int64_t rows,
                  int64_t in, int64_t out, kb_err *err);
/* A linear layer's parameter gradients: dW[out, in] += dy[rows, out]^T x[rows, in]
 * and, when db is not NULL, db[out] += sum_r dy[r, :]. kb_gemm (beta 1) then
 * kb_sum_rows, bit for bit, except on CUDA with cuBLASLt's bias-gradient
 * epilogue switched on (BF16 mode and KINDBENCH_LT_BGRAD=1, see
 * nn/ops_gemm_lt_cuda.cu): the matmul sums dy's rows while it reads them for
 * dW, instead of a second pass over dy. */
int kb_gemm_wgrad(kb_ctx *ctx, float *dW, float *db, const float *dy, const float *x, int64_t rows, int64_t in,
                  int64_t out, kb_err *err);

/* ---- the same linear-layer products on activations stored as bf16 ----
 * A bf16 activation is a uint16_t buffer holding the round-to-nearest-even
 * bf16 of each value (kb_f32_to_bf16's bits); weights, biases, pre-activations
 * and weight gradients stay fp32. Each op says which of its operands are bf16
 * (uint16_t *); the fp32 weight is converted to a bf16 copy per call. On the
 * GPU the products are native bf16 x bf16 -> fp32 (cuBLAS/cuBLASLt); on the
 * CPU the bf16 operands are widened to fp32 (exactly) and the fp32 ops above
 * run, so both compute the same products of the same bf16 values, summed in
 * different orders. They are what a model uses when kb_act_bf16_wanted. */
/* y = x16 W^T (+ bias) */
int kb_gemm_bias_x16(kb_ctx *ctx, float *y, const uint16_t *x16, const float *W, const float *bias, int64_t rows,
                     int64_t in, int64_t out, kb_err *err);
/* y16 = bf16(x16 W^T + bias): the output stored as bf16 too (for a consumer
 * that rounds it to bf16 anyway, as the fused attention does its qkv) */
int kb_gemm_bias_x16_y16(kb_ctx *ctx, uint16_t *y16, const uint16_t *x16, const float *W, const float *bias,
                         int64_t rows, int64_t in, int64_t out, kb_err *err);
/* With p = x16 W^T + bias (fp32): pre16 = bf16(p), kept for the backward, and
 * act16 = bf16(gelu_tanh(p)) (the pre-activation stored as bf16, as
 * torch.autocast stores it; the GELU here is of the fp32 value). */
int kb_gemm_bias_gelu_x16(kb_ctx *ctx, uint16_t *act16, uint16_t *pre16, const uint16_t *x16, const float *W,
                          const float *bias, int64_t rows, int64_t in, int64_t out, kb_err *err);
/* dx[rows, in] = dy16[rows, out] W[out, in] (KB_GRAD_SET) or dx += that (KB_GRAD_ADD) */
int kb_gemm_dx_x16(kb_ctx *ctx, float *dx, kb_grad_mode mode, const uint16_t *dy16, const float *W, int64_t rows,
                   int64_t in, int64_t out, kb_err *err);
/* dx16[rows, in] = bf16(dy16[rows, out] W[out, in]), for a consumer that
 * reads bf16: on the CPU kb_gemm_dx_x16's product (KB_GRAD_SET) rounded, bit
 * for bit; on a GPU the GEMM writes bf16 itself (cuBLAS's rounding) */
int kb_gemm_dx_x16_y16(kb_ctx *ctx, uint16_t *dx16, const uint16_t *dy16, const float *W, int64_t rows, int64_t in,
                       int64_t out, kb_err *err);
/* dpre16 = bf16((dy16 W) * gelu_tanh'(pre16)), the product in fp32 */
int kb_gemm_dgelu_x16(kb_ctx *ctx, uint16_t *dpre16, const uint16_t *dy16, const float *W, const uint16_t *pre16,
                      int64_t rows, int64_t in, int64_t out, kb_err *err);
/* dW += dy16^T x16, db += column sums of dy16 (db may be NULL) */
int kb_gemm_wgrad_x16(kb_ctx *ctx, float *dW, float *db, const uint16_t *dy16, const uint16_t *x16, int64_t rows,
                      int64_t in, int64_t out, kb_err *err);

/* ---- elementwise ---- */
int kb_add(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err);      /* out = a + b */
int kb_mul(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err);      /* out = a * b */
int kb_axpy(kb_ctx *ctx, float *y, float alpha, const float *x, int64_t n, kb_err *err);          /* y += alpha x */
int kb_scale(kb_ctx *ctx, float *x, float alpha, int64_t n, kb_err *err);                         /* x *= alpha */
int kb_fill(kb_ctx *ctx, float *x, float value, int64_t n, kb_err *err);
/* out[r, c] += bias[c] */
int kb_add_bias(kb_ctx *ctx, float *out, const float *bias, int64_t rows, int64_t cols, kb_err *err);
/* out[c] += sum_r in[r, c]   (bias gradient) */
int kb_sum_rows(kb_ctx *ctx, float *out, const float *in, int64_t rows, int64_t cols, kb_err *err);
/* sum of all elements, accumulated in double */
int kb_sum(kb_ctx *ctx, double *out, const float *in, int64_t n, kb_err *err);

/* ---- activations (backward: dinp += f'(inp) * dout) ---- */
int kb_gelu_tanh_fwd(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err);
int kb_gelu_tanh_bwd(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_grad_mode mode,
                     kb_err *err); /* mode KB_GRAD_SET: dinp = f'(inp) * dout */
int kb_silu_fwd(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err);
int kb_silu_bwd(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_err *err);
int kb_relu_fwd(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err);
int kb_relu_bwd(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n, kb_err *err);

/* ---- LayerNorm over the last dim (cols); weight/bias may be NULL (no affine),
 * each independently. Biased variance (divide by cols) as torch.
 * mean/rstd [rows] are saved for backward (forward: may be NULL when no
 * backward follows). dinp, dweight, dbias may each be NULL (not wanted);
 * dweight/dbias accumulate sum_r dout*xhat and sum_r dout, whether or not
 * weight is NULL. cols == 0 is a no-op. ---- */
int kb_layernorm_fwd(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *inp, const float *weight,
                     const float *bias, int64_t rows, int64_t cols, float eps, kb_err *err);
int kb_layernorm_bwd(kb_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, const float *mean, const float *rstd, int64_t rows, int64_t cols,
                     kb_err *err);

/* ---- softmax over the last dim; backward: din = out * (dout - sum(dout*out)) ----
 * Unlike the other backward ops, softmax's writes din instead of adding to
 * it: its one user (attention) would otherwise zero B*H*T*T scores first. */
int kb_softmax_fwd(kb_ctx *ctx, float *out, const float *inp, int64_t rows, int64_t cols, kb_err *err);
int kb_softmax_bwd(kb_ctx *ctx, float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols,
                   kb_err *err);

/* ---- conversions ---- */
/* out = in * scale + offset (uint8 images to float) */
int kb_u8_to_f32(kb_ctx *ctx, float *out, const uint8_t *in, int64_t n, float scale, float offset, kb_err *err);
/* round-to-nearest-even float -> bfloat16 (bits in uint16), and back. Inf
 * stays inf, overflow rounds to inf; NaN -> (bits >> 16) | 0x0040 (quiet,
 * sign and top payload kept; torch 1.13's CPU conversion gives 0xFFFF for
 * every NaN, so NaN bits are ours, not torch's; all other values match it). */
int kb_f32_to_bf16(kb_ctx *ctx, uint16_t *out, const float *in, int64_t n, kb_err *err);
int kb_bf16_to_f32(kb_ctx *ctx, float *out, const uint16_t *in, int64_t n, kb_err *err);

/* ---- random fills (bit-identical on every backend) ---- */
int kb_rand_uniform(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi,
                    kb_err *err);
int kb_rand_normal(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std,
                   kb_err *err);

/* ---- reference and backend-specific entry points (same arguments minus ctx/err
 * for _ref and _cpu; the _cpu ones take the thread count). Declared in
 * nn/ops_ref.h, nn/ops_cpu.h and nn/ops_cuda.h. ---- */

#endif
