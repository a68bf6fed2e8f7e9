/* AdamW with decoupled weight decay (torch.optim.AdamW semantics), optional
 * global-norm gradient clipping (torch.nn.utils.clip_grad_norm_), and the EMA
 * of the weights DiT's train.py keeps, over a kb_params buffer. Frozen
 * parameters are skipped by all three. Moments and the EMA share the
 * parameter layout, so a checkpoint saves them tensor by tensor. */
#ifndef KB_OPTIM_H
#define KB_OPTIM_H

#include <stdint.h>

#include "models/params.h"
#include "util/err.h"

typedef struct {
    double lr;           /* 1e-4 (DiT) */
    double beta1, beta2; /* 0.9, 0.999 (torch defaults) */
    double eps;          /* 1e-8 */
    double weight_decay; /* 0 (DiT) */
    double clip_norm;    /* <= 0: no clipping */
    double ema_decay;    /* 0.9999 (DiT); <= 0: no EMA */
} kb_optim_config;

kb_optim_config kb_optim_config_default(void);

typedef struct {
    kb_optim_config cfg;
    kb_params *params;
    float *m, *v; /* device, params->total floats */
    float *ema;   /* device, params->total floats, or NULL */
    int64_t step; /* completed steps */
    double last_grad_norm;
} kb_optim;

/* Allocates zeroed moments and, when cfg.ema_decay > 0, an EMA initialised as
 * a copy of the current parameters (DiT's update_ema(ema, model, decay=0)). */
int kb_optim_init(kb_optim *o, kb_params *params, const kb_optim_config *cfg, kb_err *err);
void kb_optim_free(kb_optim *o);
/* Global L2 norm of the trainable gradients (double). */
int kb_optim_grad_norm(kb_optim *o, double *norm, kb_err *err);
/* One step: clip (if set), AdamW on every trainable tensor, EMA update. The
 * gradient norm before clipping is left in o->last_grad_norm. */
int kb_optim_step(kb_optim *o, kb_err *err);
/* The same with the gradient norm already computed by kb_optim_grad_norm
 * (callers that check it first, e.g. for divergence, need not pay twice). */
int kb_optim_apply(kb_optim *o, double grad_norm, kb_err *err);

#endif
