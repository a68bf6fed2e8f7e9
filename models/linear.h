/* The linear layer every DiT block uses: y[N, out] = x[N, in] W^T + b, with W
 * stored [out, in] as in PyTorch.
 *
 * The kind field keeps the layer open to the forms kindbench compares:
 *   KB_LINEAR_DENSE     plain W (pretraining from scratch, full fine-tuning)
 *   KB_LINEAR_FACTORED  KIND: W = U diag(sigma) V^T, components switched per
 *                       sample by a class gate: y = ((x V) * (sigma * g)) U^T + b
 *   KB_LINEAR_LORA      frozen W plus a scaled low-rank update B A
 * Only the dense form is implemented so far; the others are registered by
 * their own modules, and kb_linear_fwd/bwd reject kinds they do not know. */
#ifndef KB_LINEAR_H
#define KB_LINEAR_H

#include <stdint.h>

#include "models/params.h"
#include "nn/backend.h"
#include "util/err.h"

typedef enum { KB_LINEAR_DENSE = 0, KB_LINEAR_FACTORED = 1, KB_LINEAR_LORA = 2 } kb_linear_kind;

typedef struct {
    kb_linear_kind kind;
    int in, out;
    int w; /* param index of the dense weight [out, in] */
    int b; /* param index of the bias [out], or -1 */
} kb_linear;

/* Per-call conditioning for gated forms: row r of x belongs to sample
 * r / rows_per_sample, whose gate row is gate[sample * gate_ld ...]. NULL for
 * the dense form. */
typedef struct {
    const float *gate;
    int64_t gate_ld;
    int64_t rows_per_sample;
} kb_linear_cond;

/* Registers "<prefix>.weight" [out, in] and "<prefix>.bias" [out] (if bias). */
int kb_linear_register(kb_linear *l, kb_params *ps, const char *prefix, int in, int out, int bias, int trainable,
                       kb_err *err);
int kb_linear_fwd(kb_ctx *ctx, const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond, float *y,
                  const float *x, int64_t rows, kb_err *err);
/* Accumulates dW, db into ps->grad and, when dx is not NULL, dx += dy W, or
 * dx = dy W with dx_mode KB_GRAD_SET (nn/backend.h): then the GEMM runs with
 * beta 0 and neither needs dx cleared first nor reads it. */
int kb_linear_bwd(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond, float *dx,
                  kb_grad_mode dx_mode, const float *dy, const float *x, int64_t rows, kb_err *err);
/* An MLP's hidden layer: pre = x W^T + b and act = gelu_tanh(pre) (one
 * cuBLASLt matmul where nn/ops.h's kb_gemm_bias_gelu fuses them). */
int kb_linear_fwd_gelu(kb_ctx *ctx, const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond, float *pre,
                       float *act, const float *x, int64_t rows, kb_err *err);
/* kb_linear_bwd of the layer after that GELU, with its input gradient carried
 * through the GELU: dpre = (dy W) * gelu_tanh'(pre), written over dpre. */
int kb_linear_bwd_dgelu(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond, float *dpre,
                        const float *pre, const float *dy, const float *x, int64_t rows, kb_err *err);

/* The same layer on bf16 activations (nn/ops.h "*_x16": uint16_t bits of
 * bf16 values, weights and gradients fp32): the input x16, the GELU's input
 * pre16 and output act16 and, backward, the output gradient dy16, the
 * input gradient dx16 and the GELU's input gradient dpre16 are bf16. */
/* y16 = bf16(x16 W^T + b), the product accumulated in fp32 */
int kb_linear_fwd_x16_y16(kb_ctx *ctx, const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond,
                          uint16_t *y16, const uint16_t *x16, int64_t rows, kb_err *err);
int kb_linear_fwd_gelu_x16(kb_ctx *ctx, const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond,
                           uint16_t *pre16, uint16_t *act16, const uint16_t *x16, int64_t rows, kb_err *err);
/* the input's gradient written as bf16 (KB_GRAD_SET, rounded): dx16 = bf16(dy16 W) */
int kb_linear_bwd_x16_dx16(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond,
                           uint16_t *dx16, const uint16_t *dy16, const uint16_t *x16, int64_t rows, kb_err *err);
int kb_linear_bwd_dgelu_x16(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond,
                            uint16_t *dpre16, const uint16_t *pre16, const uint16_t *dy16, const uint16_t *x16,
                            int64_t rows, kb_err *err);

#endif
