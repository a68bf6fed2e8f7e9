/* Optimiser ops over flat parameter buffers: AdamW as PyTorch 1.13's
 * single-tensor AdamW computes it (the Debian torch the tests compare with),
 * the EMA update DiT's train.py does, and the squared norm for gradient
 * clipping. Same scheme as nn/ops.h: kb_<op>(ctx, ..., err) dispatches to
 * kb_<op>_cpu(threads, ...) or kb_<op>_cuda(ctx, ..., err); kb_<op>_ref(...)
 * is the plain reference. Every element is independent, so all variants give
 * the same bits (no FMA contraction anywhere). */
#ifndef KB_OPS_OPTIM_H
#define KB_OPS_OPTIM_H

#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scalars of one AdamW step, derived on the host in double as PyTorch does,
 * then rounded to float where PyTorch's kernels round them. */
typedef struct {
    float decay_mul;       /* 1 - lr * weight_decay */
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float bc2_sqrt;        /* sqrt(1 - beta2^step) */
    float eps;
    float neg_step_size;   /* -lr / (1 - beta1^step) */
} kb_adamw_scalars;

kb_adamw_scalars kb_adamw_make_scalars(double lr, double beta1, double beta2, double eps, double weight_decay,
                                       int64_t step);

/* One AdamW step on n parameters (step counts from 1):
 *   p *= decay_mul; m = m*b1 + (1-b1)*g; v = v*b2 + ((1-b2)*g)*g;
 *   p += neg_step_size * m / (sqrt(v)/bc2_sqrt + eps) */
int kb_adamw_step(kb_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n, const kb_adamw_scalars *s,
                  kb_err *err);
/* ema = ema*(float)decay + (float)(1-decay)*p: decay in double, as PyTorch's Python scalar */
int kb_ema_update(kb_ctx *ctx, float *ema, const float *p, int64_t n, double decay, kb_err *err);
/* sum of squares in double (for the global gradient norm), deterministic;
 * out is HOST memory on every backend (the norm is needed on the host). */
int kb_sumsq(kb_ctx *ctx, double *out, const float *x, int64_t n, kb_err *err);

void kb_adamw_step_ref(float *p, const float *g, float *m, float *v, int64_t n, const kb_adamw_scalars *s);
void kb_ema_update_ref(float *ema, const float *p, int64_t n, double decay);
void kb_sumsq_ref(double *out, const float *x, int64_t n);

void kb_adamw_step_cpu(int threads, float *p, const float *g, float *m, float *v, int64_t n,
                       const kb_adamw_scalars *s);
void kb_ema_update_cpu(int threads, float *ema, const float *p, int64_t n, double decay);
void kb_sumsq_cpu(int threads, double *out, const float *x, int64_t n);

int kb_adamw_step_cuda(kb_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n,
                       const kb_adamw_scalars *s, kb_err *err);
int kb_ema_update_cuda(kb_ctx *ctx, float *ema, const float *p, int64_t n, double decay, kb_err *err);
int kb_sumsq_cuda(kb_ctx *ctx, double *out, const float *x, int64_t n, kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
