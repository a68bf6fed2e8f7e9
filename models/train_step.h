/* One DiT training step on a batch already in host memory, shared by the
 * trainer (models/train.c) and the speed benchmark (harness/cmd_bench.c) so
 * that what is timed is exactly what trains. The sequence is the one
 * tests/test_dit_torch.c checks against PyTorch: q_sample, forward, ADM loss
 * (plain MSE without learned sigma), loss gradient; then the caller zeroes
 * gradients, runs kb_dit_backward and the optimiser. */
#ifndef KB_TRAIN_STEP_H
#define KB_TRAIN_STEP_H

#include <stdint.h>

#include "models/diffusion.h"
#include "models/dit.h"
#include "nn/backend.h"
#include "util/err.h"

/* Host batch buffers, and their device copies (aliases on the CPU, where the
 * "device" is host memory and nothing is copied). */
typedef struct {
    float *x0, *noise, *x_t, *out, *d_out, *tf, *mse, *vb;
    int *t;
    int32_t *y;
    float *x0_dev, *noise_dev, *x_t_dev, *tf_dev, *out_dev, *d_out_dev;
    int32_t *y_dev;
    int noise_on_dev; /* 1: the caller drew the noise into noise_dev itself (not copied from noise) */
} kb_train_bufs;

typedef struct {
    float loss, mse, vb; /* batch means */
    double grad_norm;
} kb_step_stats;

int kb_train_bufs_alloc(kb_train_bufs *b, kb_ctx *ctx, const kb_dit_config *cfg, int batch, kb_err *err);
void kb_train_bufs_free(kb_train_bufs *b, kb_ctx *ctx);

/* From b->x0, b->noise (or noise_dev), b->t, b->y (host, B samples): x_t, the model's
 * output, the loss and its gradient, all on the model's device (the gradient
 * in b->d_out_dev); only the batch goes to the device and the per-sample
 * loss terms (b->mse, b->vb) come back. */
int kb_train_forward_loss(kb_dit *m, const kb_diffusion *diff, kb_train_bufs *b, int B, kb_step_stats *s,
                          kb_err *err);

/* The model output of the last kb_train_forward_loss into b->out (host):
 * a copy on a GPU, nothing on the CPU where b->out is the output itself. */
int kb_train_output_to_host(const kb_dit *m, kb_train_bufs *b, int B, kb_err *err);

#endif
