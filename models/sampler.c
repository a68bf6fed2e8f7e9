/* Many samples from a DiT: the guided model callback, per-sample noise
 * streams, batching and quantisation (see models/sampler.h). */
#include "models/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "nn/rng.h"

kb_sample_cfg kb_sample_cfg_default(void) {
    kb_sample_cfg c;
    memset(&c, 0, sizeof c);
    c.sampler = KB_SAMPLER_DDPM;
    c.cfg_scale = 1.5f;
    c.cfg_mode = KB_CFG_DIT;
    c.batch = 32;
    return c;
}

uint64_t kb_sample_stream(int64_t g) { return ((uint64_t)0x73616d70u << 32) + (uint64_t)g; }

/* ---------------------------------------------------------------- model callback */

int kb_dit_guided_init(kb_dit_guided *g, kb_dit *model, float cfg_scale, kb_cfg_mode mode, int cap, kb_err *err) {
    memset(g, 0, sizeof *g);
    const kb_dit_config *c = &model->cfg;
    if (!c->learn_sigma) /* the loop reads [eps, v] for 2C channels */
        return kb_fail(err, "DiT sampler: the model has no learned variance (learn_sigma 0)");
    if (cap < 1) return kb_fail(err, "DiT sampler: batch %d", cap);
    int copies = cfg_scale > 1.0f ? 2 : 1, C2 = kb_dit_out_channels(c);
    size_t rows = (size_t)copies * (size_t)cap, hw = (size_t)c->input_size * (size_t)c->input_size;
    g->model = model;
    g->cfg_scale = cfg_scale;
    g->guided = kb_cfg_guided_channels(mode, c->in_channels);
    g->cap = cap;
    kb_ctx *ctx = model->ctx;
    g->x_dev = kb_dev_alloc(ctx, rows * c->in_channels * hw * sizeof(float), err);
    g->t_dev = g->x_dev ? kb_dev_alloc(ctx, rows * sizeof(float), err) : NULL;
    g->y_dev = g->t_dev ? kb_dev_alloc(ctx, rows * sizeof(int32_t), err) : NULL;
    g->out_dev = g->y_dev ? kb_dev_alloc(ctx, rows * C2 * hw * sizeof(float), err) : NULL;
    g->out_host = malloc(rows * C2 * hw * sizeof(float));
    g->t_host = malloc(rows * sizeof(float));
    g->y_host = malloc(rows * sizeof(int32_t));
    if (!g->out_dev || !g->out_host || !g->t_host || !g->y_host) {
        if (g->out_dev) kb_fail(err, "out of memory");
        kb_dit_guided_free(g);
        return kb_fail_wrap(err, "DiT sampler buffers for a batch of %d", cap);
    }
    return 0;
}

void kb_dit_guided_free(kb_dit_guided *g) {
    if (!g->model) return;
    kb_ctx *ctx = g->model->ctx;
    if (g->x_dev) kb_dev_free(ctx, g->x_dev);
    if (g->t_dev) kb_dev_free(ctx, g->t_dev);
    if (g->y_dev) kb_dev_free(ctx, g->y_dev);
    if (g->out_dev) kb_dev_free(ctx, g->out_dev);
    free(g->out_host), free(g->t_host), free(g->y_host);
    memset(g, 0, sizeof *g);
}

/* Copies x (twice with guidance), the timesteps as floats and the labels
 * ([y; null] with guidance) to the device. */
static int upload_inputs(kb_dit_guided *g, const float *x_t, const int *t_model, int B, int copies, size_t nx,
                         kb_err *err) {
    kb_ctx *ctx = g->model->ctx;
    float *t_host = g->t_host;
    int32_t *y_host = g->y_host;
    for (int c = 0; c < copies; c++)
        for (int b = 0; b < B; b++) {
            t_host[c * B + b] = (float)t_model[b];
            y_host[c * B + b] = c == 0 ? g->y[b] : g->model->cfg.num_classes; /* the null class */
        }
    for (int c = 0; c < copies; c++)
        if (kb_copy_to_dev(ctx, g->x_dev + c * nx, x_t, nx * sizeof(float), err)) return -1;
    if (kb_copy_to_dev(ctx, g->t_dev, t_host, (size_t)copies * B * sizeof(float), err)) return -1;
    return kb_copy_to_dev(ctx, g->y_dev, y_host, (size_t)copies * B * sizeof(int32_t), err);
}

static void advance_progress(kb_dit_guided *g, int B) {
    g->calls++;
    if (g->progress && g->steps > 0)
        kb_progress_update(g->progress, g->progress_base + (int64_t)B * g->calls / g->steps);
}

int kb_dit_guided_fn(void *user, const float *x_t, const int *t_model, int B, int C, int64_t HW, float *model_out,
                     kb_err *err) {
    kb_dit_guided *g = user;
    const kb_dit_config *c = &g->model->cfg;
    if (B < 1 || B > g->cap || C != c->in_channels || HW != (int64_t)c->input_size * c->input_size)
        return kb_fail(err, "DiT sampler: batch %d x %d x %lld does not fit the model (C=%d, %dx%d) or buffers (%d)",
                       B, C, (long long)HW, c->in_channels, c->input_size, c->input_size, g->cap);
    int copies = g->cfg_scale > 1.0f ? 2 : 1, C2 = kb_dit_out_channels(c);
    size_t nx = (size_t)B * C * HW, no = (size_t)B * C2 * HW;
    kb_ctx *ctx = g->model->ctx;
    if (upload_inputs(g, x_t, t_model, B, copies, nx, err) ||
        kb_dit_forward(g->model, g->x_dev, g->t_dev, g->y_dev, copies * B, g->out_dev, err))
        return -1;
    if (copies == 1) {
        if (kb_copy_to_host(ctx, model_out, g->out_dev, no * sizeof(float), err)) return -1;
    } else if (kb_copy_to_host(ctx, g->out_host, g->out_dev, 2 * no * sizeof(float), err) ||
               kb_cfg_combine(g->out_host, g->out_host + no, g->cfg_scale, g->guided, B, C2, HW, model_out, err)) {
        return -1;
    }
    advance_progress(g, B);
    return 0;
}

/* ---------------------------------------------------------------- noise */

/* The samples of the current batch, for the loop's noise callback. */
typedef struct {
    const kb_sample_cfg *cfg;
    int64_t first;
    int B;
    int64_t per_sample;
    int threads;
} batch_noise;

/* Sample g's stream from element `offset` on, for each sample of the batch
 * (a pure function of the indices, so threads do not change the values). */
static void philox_fill(const batch_noise *bn, uint64_t offset, float *out) {
    int nt = bn->B > 1 && bn->per_sample >= 4096 ? bn->threads : 1;
#pragma omp parallel for num_threads(nt < 1 ? 1 : nt) schedule(static)
    for (int b = 0; b < bn->B; b++) {
        uint64_t stream = kb_sample_stream(bn->first + b);
        float *o = out + (int64_t)b * bn->per_sample;
        for (int64_t i = 0; i < bn->per_sample; i++) o[i] = kb_rng_normal_at(bn->cfg->seed, stream, offset + (uint64_t)i);
    }
}

static int batch_noise_fn(void *user, int step, float *noise, int64_t n, kb_err *err) {
    const batch_noise *bn = user;
    if (n != bn->B * bn->per_sample) return kb_fail(err, "sampler noise: %lld values asked for a batch of %d", (long long)n, bn->B);
    if (bn->cfg->noise) return bn->cfg->noise(bn->cfg->noise_user, bn->first, bn->B, step, noise, bn->per_sample, err);
    philox_fill(bn, (uint64_t)(step + 1) * (uint64_t)bn->per_sample, noise);
    return 0;
}

static int initial_noise(const batch_noise *bn, float *x, kb_err *err) {
    if (bn->cfg->noise) return bn->cfg->noise(bn->cfg->noise_user, bn->first, bn->B, -1, x, bn->per_sample, err);
    philox_fill(bn, 0, x);
    return 0;
}

/* ---------------------------------------------------------------- batching */

int kb_sample_check(const kb_dit_config *c, const kb_sample_cfg *cfg, const int32_t *labels, int64_t n, kb_err *err) {
    if (!c->learn_sigma)
        return kb_fail(err, "sampler: the model has no learned variance (learn_sigma 0); the sampler needs DiT's "
                            "LEARNED_RANGE output");
    if (n < 1) return kb_fail(err, "sampler: nothing to sample (%lld samples)", (long long)n);
    if (cfg->batch < 1) return kb_fail(err, "sampler: batch %d, expected >= 1", cfg->batch);
    if (cfg->sampler == KB_SAMPLER_DDIM && !(cfg->eta >= 0.0f)) return kb_fail(err, "sampler: DDIM eta %g < 0", cfg->eta);
    if (cfg->cfg_scale > 1.0f && !(c->class_dropout > 0))
        return kb_fail(err, "sampler: guidance (scale %g > 1) needs the null class, but the model was built without "
                            "label dropout; use a scale of 1", cfg->cfg_scale);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c->num_classes)
            return kb_fail(err, "sampler: class %d of sample %lld outside [0, %d)", labels[i], (long long)i,
                           c->num_classes);
    return 0;
}

/* One batch: x_T, the reverse loop, the sink. */
static int run_batch(kb_dit_guided *g, const kb_diffusion *d, const kb_sample_cfg *cfg, batch_noise *bn,
                     const int32_t *labels, float *x, kb_sample_sink sink, void *sink_user, kb_err *err) {
    const kb_dit_config *c = &g->model->cfg;
    kb_sample_opts o;
    memset(&o, 0, sizeof o);
    o.sampler = cfg->sampler, o.eta = cfg->eta, o.clip_denoised = cfg->clip_denoised;
    o.noise = batch_noise_fn, o.noise_user = bn;
    g->y = labels + bn->first;
    g->calls = 0;
    g->progress_base = bn->first;
    if (initial_noise(bn, x, err) ||
        kb_diffusion_sample_loop(d, kb_dit_guided_fn, g, &o, bn->B, c->in_channels, bn->per_sample / c->in_channels, x,
                                 err))
        return kb_fail_wrap(err, "samples %lld..%lld", (long long)bn->first, (long long)(bn->first + bn->B - 1));
    return sink ? sink(sink_user, bn->first, bn->B, labels + bn->first, x, err) : 0;
}

int kb_sample_run(kb_dit *m, const kb_diffusion *d, const kb_sample_cfg *cfg, const int32_t *labels, int64_t n,
                  kb_sample_sink sink, void *sink_user, kb_progress *progress, kb_err *err) {
    if (kb_sample_check(&m->cfg, cfg, labels, n, err)) return -1;
    const kb_dit_config *c = &m->cfg;
    int cap = n < cfg->batch ? (int)n : cfg->batch;
    batch_noise bn = {cfg, 0, 0, (int64_t)c->in_channels * c->input_size * c->input_size, m->ctx->threads};
    kb_dit_guided g;
    float *x = malloc((size_t)cap * (size_t)bn.per_sample * sizeof(float));
    if (!x) return kb_fail(err, "sampler: out of memory for a batch of %d", cap);
    if (kb_dit_guided_init(&g, m, cfg->cfg_scale, cfg->cfg_mode, cap, err)) {
        free(x);
        return -1;
    }
    g.progress = progress;
    g.steps = d->num_steps;
    int rc = 0;
    for (int64_t first = 0; !rc && first < n; first += cap) {
        bn.first = first;
        bn.B = n - first < cap ? (int)(n - first) : cap;
        rc = run_batch(&g, d, cfg, &bn, labels, x, sink, sink_user, err);
        if (!rc && progress) kb_progress_update(progress, first + bn.B);
    }
    kb_dit_guided_free(&g);
    free(x);
    return rc;
}

void kb_quantize_nhwc(const float *x, int B, int C, int64_t HW, uint8_t *out) {
    for (int b = 0; b < B; b++)
        for (int64_t p = 0; p < HW; p++)
            for (int c = 0; c < C; c++)
                out[((int64_t)b * HW + p) * C + c] = kb_quantize_u8(x[((int64_t)b * C + c) * HW + p]);
}
