#include "models/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kb_params_init(kb_params *ps, kb_ctx *ctx) {
    memset(ps, 0, sizeof *ps);
    ps->ctx = ctx;
}

int kb_params_add(kb_params *ps, const char *name, int ndim, const int64_t *shape, int trainable, kb_err *err) {
    if (ps->data) return kb_fail(err, "parameter %s: registered after allocation", name);
    if (ndim < 1 || ndim > 4) return kb_fail(err, "parameter %s: rank %d outside 1..4", name, ndim);
    if (ps->count == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 64;
        kb_param *grown = realloc(ps->items, (size_t)cap * sizeof *grown);
        if (!grown) return kb_fail(err, "parameter %s: out of memory", name);
        ps->items = grown;
        ps->cap = cap;
    }
    kb_param *p = &ps->items[ps->count];
    memset(p, 0, sizeof *p);
    if (snprintf(p->name, sizeof p->name, "%s", name) >= (int)sizeof p->name)
        return kb_fail(err, "parameter name too long: %s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) return kb_fail(err, "parameter %s: dimension %d is %lld", name, i, (long long)shape[i]);
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    /* 64-float alignment keeps every tensor 256-byte aligned for vector loads. */
    p->offset = (ps->total + 63) / 64 * 64;
    p->trainable = trainable;
    ps->total = p->offset + p->numel;
    return ps->count++;
}

int kb_params_alloc(kb_params *ps, int with_grad, kb_err *err) {
    size_t bytes = ps->total * sizeof(float);
    ps->data = kb_dev_alloc(ps->ctx, bytes, err);
    if (!ps->data) return kb_fail_wrap(err, "allocating %zu parameters", ps->total);
    if (kb_dev_zero(ps->ctx, ps->data, bytes, err)) return -1;
    if (!with_grad) return 0;
    ps->grad = kb_dev_alloc(ps->ctx, bytes, err);
    if (!ps->grad) return kb_fail_wrap(err, "allocating %zu gradients", ps->total);
    return kb_dev_zero(ps->ctx, ps->grad, bytes, err);
}

void kb_params_free(kb_params *ps) {
    if (ps->data) kb_dev_free(ps->ctx, ps->data);
    if (ps->grad) kb_dev_free(ps->ctx, ps->grad);
    free(ps->items);
    kb_ctx *ctx = ps->ctx;
    memset(ps, 0, sizeof *ps);
    ps->ctx = ctx;
}

int kb_params_find(const kb_params *ps, const char *name) {
    for (int i = 0; i < ps->count; i++)
        if (!strcmp(ps->items[i].name, name)) return i;
    return -1;
}

float *kb_param_data(const kb_params *ps, int i) { return ps->data + ps->items[i].offset; }
float *kb_param_grad(const kb_params *ps, int i) { return ps->grad ? ps->grad + ps->items[i].offset : NULL; }

size_t kb_params_trainable_count(const kb_params *ps) {
    size_t n = 0;
    for (int i = 0; i < ps->count; i++)
        if (ps->items[i].trainable) n += ps->items[i].numel;
    return n;
}

int kb_params_zero_grad(kb_params *ps, kb_err *err) {
    if (!ps->grad) return 0;
    return kb_dev_zero(ps->ctx, ps->grad, ps->total * sizeof(float), err);
}
