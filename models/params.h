/* A model's parameters as one flat float buffer on the compute device, with a
 * table of named tensors (PyTorch state_dict names, so checkpoints map onto
 * the reference implementations). One buffer means one AdamW kernel, one EMA
 * update and one checkpoint write for the whole model, as in llm.c.
 *
 * Parameters are registered first (names, shapes, whether they train), then
 * kb_params_alloc places them; gradients share the layout. Frozen entries
 * (DiT's sin-cos pos_embed, a LoRA base weight, KIND learngenes during
 * transfer) live in the same buffer but are skipped by the optimiser. */
#ifndef KB_PARAMS_H
#define KB_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    size_t offset; /* in floats, into data/grad */
    size_t numel;
    int trainable;
} kb_param;

typedef struct {
    kb_param *items;
    int count;
    int cap;
    size_t total;  /* floats */
    kb_ctx *ctx;
    float *data;   /* device, total floats */
    float *grad;   /* device, total floats (NULL when allocated without grads) */
} kb_params;

void kb_params_init(kb_params *ps, kb_ctx *ctx);
/* Registers a tensor; returns its index, or -1 on a bad shape or a full table. */
int kb_params_add(kb_params *ps, const char *name, int ndim, const int64_t *shape, int trainable, kb_err *err);
/* Allocates data (and grads when with_grad) on the context's device, zeroed. */
int kb_params_alloc(kb_params *ps, int with_grad, kb_err *err);
void kb_params_free(kb_params *ps);
int kb_params_find(const kb_params *ps, const char *name);
/* Device pointers of parameter i. */
float *kb_param_data(const kb_params *ps, int i);
float *kb_param_grad(const kb_params *ps, int i);
size_t kb_params_trainable_count(const kb_params *ps);
int kb_params_zero_grad(kb_params *ps, kb_err *err);

#endif
