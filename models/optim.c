#include "models/optim.h"

#include <math.h>
#include <string.h>

#include "nn/ops.h"
#include "nn/ops_optim.h"

kb_optim_config kb_optim_config_default(void) {
    kb_optim_config c;
    c.lr = 1e-4;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = 0.0;
    c.clip_norm = 0.0;
    c.ema_decay = 0.9999;
    return c;
}

int kb_optim_init(kb_optim *o, kb_params *params, const kb_optim_config *cfg, kb_err *err) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->params = params;
    kb_ctx *ctx = params->ctx;
    size_t bytes = params->total * sizeof(float);
    o->m = kb_dev_alloc(ctx, bytes, err);
    o->v = o->m ? kb_dev_alloc(ctx, bytes, err) : NULL;
    if (!o->v || kb_dev_zero(ctx, o->m, bytes, err) || kb_dev_zero(ctx, o->v, bytes, err)) {
        kb_optim_free(o);
        return kb_fail_wrap(err, "AdamW moments for %zu parameters", params->total);
    }
    if (cfg->ema_decay <= 0) return 0;
    o->ema = kb_dev_alloc(ctx, bytes, err);
    if (!o->ema || kb_copy_dev(ctx, o->ema, params->data, bytes, err)) {
        kb_optim_free(o);
        return kb_fail_wrap(err, "EMA copy of %zu parameters", params->total);
    }
    return 0;
}

void kb_optim_free(kb_optim *o) {
    if (!o->params) return;
    kb_ctx *ctx = o->params->ctx;
    kb_dev_free(ctx, o->m);
    kb_dev_free(ctx, o->v);
    kb_dev_free(ctx, o->ema);
    memset(o, 0, sizeof *o);
}

/* One pass over the whole gradient buffer (one device sync per step): frozen
 * tensors' gradients are never written, so they stay at the zero they were
 * allocated and cleared with, and the sum is over the trainable ones. */
int kb_optim_grad_norm(kb_optim *o, double *norm, kb_err *err) {
    kb_params *ps = o->params;
    double total;
    if (kb_sumsq(ps->ctx, &total, ps->grad, (int64_t)ps->total, err)) return kb_fail_wrap(err, "gradient norm");
    *norm = sqrt(total);
    return 0;
}

/* The next run of consecutive trainable entries from item *i on, as one span
 * [*off, *off + *len) of the flat buffers, so that each optimiser op runs once
 * per run rather than once per tensor. The alignment padding between entries
 * comes along: it is zero in the parameters, gradients and moments, and
 * AdamW, EMA and scaling keep zeros zero. Returns 0 when no run is left. */
static int next_trainable_span(const kb_params *ps, int *i, size_t *off, size_t *len) {
    while (*i < ps->count && !ps->items[*i].trainable) (*i)++;
    if (*i >= ps->count) return 0;
    size_t start = ps->items[*i].offset, end = start;
    for (; *i < ps->count && ps->items[*i].trainable; (*i)++) end = ps->items[*i].offset + ps->items[*i].numel;
    *off = start, *len = end - start;
    return 1;
}

/* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1. */
static int clip_grads(kb_optim *o, kb_err *err) {
    kb_params *ps = o->params;
    double coef = o->cfg.clip_norm / (o->last_grad_norm + 1e-6);
    if (coef >= 1.0) return 0;
    size_t off, len;
    for (int i = 0; next_trainable_span(ps, &i, &off, &len);)
        if (kb_scale(ps->ctx, ps->grad + off, (float)coef, (int64_t)len, err)) return -1;
    return 0;
}

int kb_optim_step(kb_optim *o, kb_err *err) {
    double norm;
    if (!o->params->grad) return kb_fail(err, "optimiser step: parameters have no gradients");
    return kb_optim_grad_norm(o, &norm, err) ? -1 : kb_optim_apply(o, norm, err);
}

int kb_optim_apply(kb_optim *o, double grad_norm, kb_err *err) {
    kb_params *ps = o->params;
    if (!ps->grad) return kb_fail(err, "optimiser step: parameters have no gradients");
    o->last_grad_norm = grad_norm;
    if (o->cfg.clip_norm > 0 && clip_grads(o, err)) return -1;
    o->step++;
    kb_adamw_scalars s = kb_adamw_make_scalars(o->cfg.lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps,
                                               o->cfg.weight_decay, o->step);
    size_t off, len;
    for (int i = 0; next_trainable_span(ps, &i, &off, &len);) {
        if (kb_adamw_step(ps->ctx, ps->data + off, ps->grad + off, o->m + off, o->v + off, (int64_t)len, &s, err))
            return kb_fail_wrap(err, "AdamW on %zu parameters from offset %zu", len, off);
        if (o->ema && kb_ema_update(ps->ctx, o->ema + off, ps->data + off, (int64_t)len, o->cfg.ema_decay, err))
            return kb_fail_wrap(err, "EMA on %zu parameters from offset %zu", len, off);
    }
    return 0;
}
