/* One training step on a host batch: buffers, forward and loss (see
 * models/train_step.h). */
#include <stdlib.h>
#include <string.h>

#include "models/train_step.h"

static void *host_alloc(size_t bytes, int *bad) {
    void *p = malloc(bytes ? bytes : 1);
    *bad |= !p;
    return p;
}

static void *dev_alloc(kb_ctx *ctx, void *host, size_t bytes, int *bad, kb_err *err) {
    if (ctx->device == KB_DEV_CPU) return host; /* the CPU "device" is host memory: no copies */
    void *p = kb_dev_alloc(ctx, bytes, err);
    *bad |= !p;
    return p;
}

int kb_train_bufs_alloc(kb_train_bufs *b, kb_ctx *ctx, const kb_dit_config *c, int batch, kb_err *err) {
    size_t B = (size_t)batch, hw = (size_t)c->input_size * (size_t)c->input_size;
    size_t n = B * (size_t)c->in_channels * hw, n_out = B * (size_t)kb_dit_out_channels(c) * hw;
    int bad = 0;
    memset(b, 0, sizeof *b);
    b->x0 = host_alloc(n * 4, &bad), b->noise = host_alloc(n * 4, &bad), b->x_t = host_alloc(n * 4, &bad);
    b->out = host_alloc(n_out * 4, &bad), b->d_out = host_alloc(n_out * 4, &bad), b->tf = host_alloc(B * 4, &bad);
    b->mse = host_alloc(B * 4, &bad), b->vb = host_alloc(B * 4, &bad), b->t = host_alloc(B * sizeof(int), &bad);
    b->y = host_alloc(B * 4, &bad);
    if (bad) return kb_fail(err, "out of host memory for a batch of %zu", B);
    b->x0_dev = dev_alloc(ctx, b->x0, n * 4, &bad, err);
    b->noise_dev = dev_alloc(ctx, b->noise, n * 4, &bad, err);
    b->x_t_dev = dev_alloc(ctx, b->x_t, n * 4, &bad, err);
    b->tf_dev = dev_alloc(ctx, b->tf, B * 4, &bad, err);
    b->y_dev = dev_alloc(ctx, b->y, B * 4, &bad, err);
    b->out_dev = dev_alloc(ctx, b->out, n_out * 4, &bad, err);
    b->d_out_dev = dev_alloc(ctx, b->d_out, n_out * 4, &bad, err);
    return bad ? kb_fail_wrap(err, "batch buffers on %s", kb_device_name(ctx->device)) : 0;
}

void kb_train_bufs_free(kb_train_bufs *b, kb_ctx *ctx) {
    if (ctx->device != KB_DEV_CPU) {
        kb_dev_free(ctx, b->x0_dev), kb_dev_free(ctx, b->noise_dev), kb_dev_free(ctx, b->x_t_dev);
        kb_dev_free(ctx, b->tf_dev), kb_dev_free(ctx, b->y_dev);
        kb_dev_free(ctx, b->out_dev), kb_dev_free(ctx, b->d_out_dev);
    }
    free(b->x0), free(b->noise), free(b->x_t), free(b->out), free(b->d_out), free(b->tf), free(b->mse);
    free(b->vb), free(b->t), free(b->y);
    memset(b, 0, sizeof *b);
}

static void batch_means(const kb_train_bufs *b, int B, kb_step_stats *s) {
    double m = 0.0, v = 0.0;
    for (int i = 0; i < B; i++) m += b->mse[i], v += b->vb[i];
    s->mse = (float)(m / B), s->vb = (float)(v / B);
}

/* Copies that are no-ops where the "device" buffer is the host one (CPU). */
static int to_dev(kb_ctx *ctx, void *dev, const void *host, size_t bytes, kb_err *err) {
    return dev == host ? 0 : kb_copy_to_dev(ctx, dev, host, bytes, err);
}
static int to_host(kb_ctx *ctx, void *host, const void *dev, size_t bytes, kb_err *err) {
    return dev == host ? 0 : kb_copy_to_host(ctx, host, dev, bytes, err);
}

int kb_train_forward_loss(kb_dit *m, const kb_diffusion *diff, kb_train_bufs *b, int B, kb_step_stats *s,
                          kb_err *err) {
    kb_ctx *ctx = m->ctx;
    int C = m->cfg.in_channels;
    int64_t HW = (int64_t)m->cfg.input_size * m->cfg.input_size, n_in = B * C * HW;
    for (int i = 0; i < B; i++) b->tf[i] = (float)b->t[i];
    if (to_dev(ctx, b->x0_dev, b->x0, (size_t)n_in * 4, err) ||
        (!b->noise_on_dev && to_dev(ctx, b->noise_dev, b->noise, (size_t)n_in * 4, err)) ||
        to_dev(ctx, b->tf_dev, b->tf, (size_t)B * 4, err) || to_dev(ctx, b->y_dev, b->y, (size_t)B * 4, err) ||
        kb_diffusion_q_sample_dev(ctx, diff, b->x0_dev, b->noise_dev, b->t, B, C, HW, b->x_t_dev, err) ||
        kb_dit_forward(m, b->x_t_dev, b->tf_dev, b->y_dev, B, b->out_dev, err) ||
        kb_diffusion_loss_dev(ctx, diff, b->x0_dev, b->noise_dev, b->x_t_dev, b->t, b->out_dev, m->cfg.learn_sigma, B,
                              C, HW, 1.0f, b->mse, b->vb, &s->loss, b->d_out_dev, err))
        return -1;
    batch_means(b, B, s);
    return 0;
}

int kb_train_output_to_host(const kb_dit *m, kb_train_bufs *b, int B, kb_err *err) {
    int64_t n_out = (int64_t)B * kb_dit_out_channels(&m->cfg) * m->cfg.input_size * m->cfg.input_size;
    return to_host(m->ctx, b->out, b->out_dev, (size_t)n_out * 4, err);
}
