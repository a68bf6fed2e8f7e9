/* Sampling many images from a class-conditional DiT: batching, the DiT model
 * callback for the diffusion loop (with DiT's classifier-free guidance by
 * batch doubling), per-sample noise streams and DiT's uint8 quantisation.
 * See docs/sampling.md.
 *
 * Where things run: the DiT forward runs on the model's kb_ctx device; x_t is
 * copied in and the output copied back at every step, and the DDPM/DDIM step
 * math is host-side (models/diffusion_sample.c).
 *
 * Noise: sample g (its global index in the run, not its place in a batch)
 * draws from its own Philox stream kb_sample_stream(g) under the seed:
 *   x_T[i]              = kb_rng_normal_at(seed, stream(g), i)
 *   noise of loop step k = kb_rng_normal_at(seed, stream(g), (k+1)*n + i)
 * with n = C*H*W (the layout kb_diffusion_sample_loop uses for a batch of
 * one), so results do not depend on the batch size, and reruns are
 * bit-identical. */
#ifndef KB_SAMPLER_H
#define KB_SAMPLER_H

#include <stdint.h>

#include "models/diffusion.h"
#include "models/dit.h"
#include "util/err.h"
#include "util/progress.h"

/* Noise override (tests replay PyTorch's noise): fill out[B*C*HW] for the
 * samples [first, first+B) at loop step `step`, or their x_T when step < 0. */
typedef int (*kb_sample_noise_fn)(void *user, int64_t first, int B, int step, float *out, int64_t per_sample,
                                  kb_err *err);

typedef struct {
    kb_sampler sampler;  /* KB_SAMPLER_DDPM (DiT's default) or KB_SAMPLER_DDIM */
    float eta;           /* DDIM's eta (0: deterministic) */
    int clip_denoised;   /* 0, as DiT's sample.py / sample_ddp.py */
    float cfg_scale;     /* guidance runs only when > 1 (DiT's sample_ddp: using_cfg = scale > 1) */
    kb_cfg_mode cfg_mode;
    uint64_t seed;
    int batch;           /* samples per loop (the model sees 2x this with guidance) */
    kb_sample_noise_fn noise; /* NULL: the Philox streams above */
    void *noise_user;
} kb_sample_cfg;

/* DDPM, eta 0, no clipping, scale 1.5, DiT's guidance, seed 0, batch 32. */
kb_sample_cfg kb_sample_cfg_default(void);

/* The Philox stream of sample g ("samp" in the high word, away from the
 * training streams). */
uint64_t kb_sample_stream(int64_t g);

/* ---- the DiT model callback (usable with kb_diffusion_sample_loop directly) ---- */

typedef struct {
    kb_dit *model;
    const int32_t *y; /* host [B] labels of the current batch; set before each loop */
    float cfg_scale;  /* <= 1: one plain forward */
    int guided;       /* channels guided (kb_cfg_guided_channels) */
    int cap;          /* samples (before doubling) the buffers hold */
    /* device buffers for 2*cap samples, and the host copy of the output */
    float *x_dev, *t_dev, *out_dev, *out_host, *t_host;
    int32_t *y_dev, *y_host;
    kb_progress *progress; /* optional: advanced once per model call */
    int64_t progress_base;
    int steps;             /* of the loop, for the progress fraction */
    int calls;
} kb_dit_guided;

/* Allocates buffers for batches of up to cap samples on the model's device. */
int kb_dit_guided_init(kb_dit_guided *g, kb_dit *model, float cfg_scale, kb_cfg_mode mode, int cap, kb_err *err);
void kb_dit_guided_free(kb_dit_guided *g);

/* kb_model_fn: runs the DiT on x_t (with guidance: on [x; x] with labels
 * [y; null] and kb_cfg_combine) and writes model_out [B, 2C, HW] on the host. */
int kb_dit_guided_fn(void *user, const float *x_t, const int *t_model, int B, int C, int64_t HW, float *model_out,
                     kb_err *err);

/* ---- many samples ---- */

/* Receives each finished batch: x0 [B, C, H, W] float for samples
 * [first, first+B) with their labels. */
typedef int (*kb_sample_sink)(void *user, int64_t first, int B, const int32_t *labels, const float *x0, kb_err *err);

/* Checks what can be checked before any work (from the config alone, so a
 * CLI can check before loading weights): labels in [0, num_classes),
 * guidance needs the null class (class_dropout > 0), learned sigma, batch. */
int kb_sample_check(const kb_dit_config *c, const kb_sample_cfg *cfg, const int32_t *labels, int64_t n, kb_err *err);

/* Samples n images with the given labels in batches of cfg->batch, handing
 * each batch to sink in order. progress (optional) counts samples. */
int kb_sample_run(kb_dit *m, const kb_diffusion *d, const kb_sample_cfg *cfg, const int32_t *labels, int64_t n,
                  kb_sample_sink sink, void *sink_user, kb_progress *progress, kb_err *err);

/* DiT's sample_ddp.py quantisation, torch.clamp(127.5 * x + 128, 0, 255)
 * then .to(uint8) (truncation; the +128 makes it round half up), in float32
 * with the products unfused; NaN becomes 0. */
static inline uint8_t kb_quantize_u8(float x) {
    float v = 127.5f * x + 128.0f;
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v > 255.0f) v = 255.0f;
    return (uint8_t)v;
}

/* x [B, C, H*W] float -> out [B, H*W, C] uint8 (NHWC, as DiT's permute(0, 2, 3, 1)). */
void kb_quantize_nhwc(const float *x, int B, int C, int64_t HW, uint8_t *out);

#endif
