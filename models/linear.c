#include "models/linear.h"

#include <stdio.h>

#include "nn/ops.h"

int kb_linear_register(kb_linear *l, kb_params *ps, const char *prefix, int in, int out, int bias, int trainable,
                       kb_err *err) {
    char name[128];
    l->kind = KB_LINEAR_DENSE;
    l->in = in;
    l->out = out;
    snprintf(name, sizeof name, "%s.weight", prefix);
    l->w = kb_params_add(ps, name, 2, (int64_t[]){out, in}, trainable, err);
    if (l->w < 0) return -1;
    l->b = -1;
    if (!bias) return 0;
    snprintf(name, sizeof name, "%s.bias", prefix);
    l->b = kb_params_add(ps, name, 1, (int64_t[]){out}, trainable, err);
    return l->b < 0 ? -1 : 0;
}

static int check_dense(const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond, kb_err *err) {
    if (l->kind != KB_LINEAR_DENSE)
        return kb_fail(err, "linear %s: form %d is not implemented by kb_linear", ps->items[l->w].name, (int)l->kind);
    if (cond && cond->gate) return kb_fail(err, "linear %s: the dense form takes no gate", ps->items[l->w].name);
    return 0;
}

int kb_linear_fwd(kb_ctx *ctx, const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond, float *y,
                  const float *x, int64_t rows, kb_err *err) {
    if (check_dense(l, ps, cond, err)) return -1;
    const float *bias = l->b >= 0 ? kb_param_data(ps, l->b) : NULL;
    if (kb_gemm_bias(ctx, y, x, kb_param_data(ps, l->w), bias, rows, l->in, l->out, err))
        return kb_fail_wrap(err, "linear %s", ps->items[l->w].name);
    return 0;
}

int kb_linear_fwd_gelu(kb_ctx *ctx, const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond, float *pre,
                       float *act, const float *x, int64_t rows, kb_err *err) {
    if (check_dense(l, ps, cond, err)) return -1;
    const float *bias = l->b >= 0 ? kb_param_data(ps, l->b) : NULL;
    if (kb_gemm_bias_gelu(ctx, act, pre, x, kb_param_data(ps, l->w), bias, rows, l->in, l->out, err))
        return kb_fail_wrap(err, "linear %s with GELU", ps->items[l->w].name);
    return 0;
}

/* dW, db of l, and (dx != NULL) dx written as dy W, or as (dy W) * gelu'(pre) with pre != NULL. */
static int linear_bwd(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond, float *dx,
                      kb_grad_mode dx_mode, const float *pre, const float *dy, const float *x, int64_t rows,
                      kb_err *err) {
    if (check_dense(l, ps, cond, err)) return -1;
    const float *W = kb_param_data(ps, l->w);
    float beta = dx_mode == KB_GRAD_SET ? 0.0f : 1.0f;
    int rc = !dx ? 0
             : pre ? kb_gemm_dgelu(ctx, dx, dy, W, pre, rows, l->in, l->out, err)
                   : kb_gemm(ctx, false, false, rows, l->in, l->out, 1.0f, dy, l->out, W, l->in, beta, dx, l->in, err);
    if (rc) return kb_fail_wrap(err, "linear %s backward (input)", ps->items[l->w].name);
    if (!ps->items[l->w].trainable) return 0;
    float *db = l->b >= 0 ? kb_param_grad(ps, l->b) : NULL;
    if (kb_gemm_wgrad(ctx, kb_param_grad(ps, l->w), db, dy, x, rows, l->in, l->out, err))
        return kb_fail_wrap(err, "linear %s backward (weight%s)", ps->items[l->w].name, db ? " and bias" : "");
    return 0;
}

int kb_linear_bwd(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond, float *dx,
                  kb_grad_mode dx_mode, const float *dy, const float *x, int64_t rows, kb_err *err) {
    return linear_bwd(ctx, l, ps, cond, dx, dx_mode, NULL, dy, x, rows, err);
}

int kb_linear_bwd_dgelu(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond, float *dpre,
                        const float *pre, const float *dy, const float *x, int64_t rows, kb_err *err) {
    return linear_bwd(ctx, l, ps, cond, dpre, KB_GRAD_SET, pre, dy, x, rows, err);
}

/* ---- bf16 activations ---- */

int kb_linear_fwd_x16_y16(kb_ctx *ctx, const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond,
                          uint16_t *y16, const uint16_t *x16, int64_t rows, kb_err *err) {
    if (check_dense(l, ps, cond, err)) return -1;
    const float *bias = l->b >= 0 ? kb_param_data(ps, l->b) : NULL;
    if (kb_gemm_bias_x16_y16(ctx, y16, x16, kb_param_data(ps, l->w), bias, rows, l->in, l->out, err))
        return kb_fail_wrap(err, "linear %s (bf16 input and output)", ps->items[l->w].name);
    return 0;
}

int kb_linear_fwd_gelu_x16(kb_ctx *ctx, const kb_linear *l, const kb_params *ps, const kb_linear_cond *cond,
                           uint16_t *pre16, uint16_t *act16, const uint16_t *x16, int64_t rows, kb_err *err) {
    if (check_dense(l, ps, cond, err)) return -1;
    const float *bias = l->b >= 0 ? kb_param_data(ps, l->b) : NULL;
    if (kb_gemm_bias_gelu_x16(ctx, act16, pre16, x16, kb_param_data(ps, l->w), bias, rows, l->in, l->out, err))
        return kb_fail_wrap(err, "linear %s with GELU (bf16 input and output)", ps->items[l->w].name);
    return 0;
}

/* dW, db from dy16 and x16, after the input's gradient (which the caller computed). */
static int linear_wgrad_x16(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const uint16_t *dy16, const uint16_t *x16,
                            int64_t rows, kb_err *err) {
    if (!ps->items[l->w].trainable) return 0;
    float *db = l->b >= 0 ? kb_param_grad(ps, l->b) : NULL;
    if (kb_gemm_wgrad_x16(ctx, kb_param_grad(ps, l->w), db, dy16, x16, rows, l->in, l->out, err))
        return kb_fail_wrap(err, "linear %s backward (weight%s, bf16 operands)", ps->items[l->w].name,
                            db ? " and bias" : "");
    return 0;
}

int kb_linear_bwd_x16_dx16(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond,
                           uint16_t *dx16, const uint16_t *dy16, const uint16_t *x16, int64_t rows, kb_err *err) {
    if (check_dense(l, ps, cond, err)) return -1;
    if (kb_gemm_dx_x16_y16(ctx, dx16, dy16, kb_param_data(ps, l->w), rows, l->in, l->out, err))
        return kb_fail_wrap(err, "linear %s backward (input, bf16 gradients)", ps->items[l->w].name);
    return linear_wgrad_x16(ctx, l, ps, dy16, x16, rows, err);
}

int kb_linear_bwd_dgelu_x16(kb_ctx *ctx, const kb_linear *l, kb_params *ps, const kb_linear_cond *cond,
                            uint16_t *dpre16, const uint16_t *pre16, const uint16_t *dy16, const uint16_t *x16,
                            int64_t rows, kb_err *err) {
    if (check_dense(l, ps, cond, err)) return -1;
    if (kb_gemm_dgelu_x16(ctx, dpre16, dy16, kb_param_data(ps, l->w), pre16, rows, l->in, l->out, err))
        return kb_fail_wrap(err, "linear %s backward through GELU (bf16 gradients)", ps->items[l->w].name);
    return linear_wgrad_x16(ctx, l, ps, dy16, x16, rows, err);
}
