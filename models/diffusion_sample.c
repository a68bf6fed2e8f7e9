/* Reverse-process math: DDPM (ADM p_sample) and DDIM (ADM ddim_sample)
 * steps on host buffers, DiT's classifier-free guidance combination, and a
 * loop driver that asks a callback for the model output at each step, so a
 * GPU model can plug in without the sampler knowing where it runs.
 *
 * The element loops and the Philox noise are OpenMP-parallel over elements:
 * every value depends on its own inputs and counter only, so results are the
 * same bits for any thread count. */
#include <math.h>
#include <stdlib.h>

#include "models/diffusion.h"
#include "nn/rng.h"

static int check_step(const kb_diffusion *d, const int *t, const float *noise, int need_noise, int B, int C,
                      int64_t HW, const char *what, kb_err *err) {
    if (B < 1 || C < 1 || HW < 1)
        return kb_fail(err, "%s: bad shape B=%d C=%d HW=%lld", what, B, C, (long long)HW);
    for (int b = 0; b < B; b++) {
        if (t[b] < 0 || t[b] >= d->num_steps)
            return kb_fail(err, "%s: t[%d] = %d outside [0, %d)", what, b, t[b], d->num_steps);
        if (need_noise && t[b] != 0 && !noise)
            return kb_fail(err, "%s: t[%d] = %d needs noise but noise is NULL", what, b, t[b]);
    }
    return 0;
}

/* pred_xstart, clamped to [-1, 1] when asked (torch clamp) */
static float pred_xstart(const kb_diffusion_coefs *k, float x, float eps, int clip) {
    float p = kb_diff_pred_xstart(k, x, eps);
    if (clip) p = p < -1.0f ? -1.0f : (p > 1.0f ? 1.0f : p);
    return p;
}

int kb_ddpm_step(const kb_diffusion *d, const float *model_out, const float *x_t, const int *t, const float *noise,
                 int clip_denoised, int B, int C, int64_t HW, float *x_prev, float *mean, float *log_variance,
                 float *pred_xstart_out, kb_err *err) {
    if (check_step(d, t, noise, 1, B, C, HW, "ddpm step", err) != 0) return -1;
    int64_t n = (int64_t)C * HW;
    kb_diffusion_coefs *ks = kb_diffusion_coefs_batch(d, t, B, "ddpm step", err);
    if (!ks) return -1;
#pragma omp parallel for schedule(static) if (B * n >= 65536)
    for (int64_t j = 0; j < B * n; j++) {
        int64_t b = j / n, i = j - b * n;
        const kb_diffusion_coefs *k = &ks[b];
        const float *eps = model_out + b * 2 * n, *v = eps + n;
        float mask = t[b] != 0 ? 1.0f : 0.0f; /* no noise at the last step */
        float x = x_t[j];
        float p = pred_xstart(k, x, eps[i], clip_denoised);
        float m = kb_diff_posterior_mean(k, p, x);
        float lv = kb_diff_learned_logvar(k, v[i]);
        if (mean) mean[j] = m;
        if (log_variance) log_variance[j] = lv;
        if (pred_xstart_out) pred_xstart_out[j] = p;
        x_prev[j] = mask != 0.0f ? m + (mask * expf(0.5f * lv)) * noise[j] : m;
    }
    free(ks);
    return 0;
}

/* DDIM's sigma for step k, in ADM's float32 order. */
static float ddim_sigma(const kb_diffusion_coefs *k, float eta) {
    float ab = k->alphas_cumprod, abp = k->alphas_cumprod_prev;
    return (eta * sqrtf((1.0f - abp) / (1.0f - ab))) * sqrtf(1.0f - ab / abp);
}

int kb_ddim_step(const kb_diffusion *d, const float *model_out, const float *x_t, const int *t, const float *noise,
                 float eta, int clip_denoised, int B, int C, int64_t HW, float *x_prev, float *mean, float *sigma,
                 float *pred_xstart_out, kb_err *err) {
    if (check_step(d, t, noise, eta != 0.0f, B, C, HW, "ddim step", err) != 0) return -1;
    int64_t n = (int64_t)C * HW;
    kb_diffusion_coefs *ks = kb_diffusion_coefs_batch(d, t, B, "ddim step", err);
    if (!ks) return -1;
    float *sc = malloc((size_t)B * 3 * sizeof(float)); /* per sample: c_pred, c_eps, masked sigma */
    if (!sc) {
        free(ks);
        return kb_fail(err, "ddim step: out of memory for %d samples", B);
    }
    for (int b = 0; b < B; b++) {
        float sg = ddim_sigma(&ks[b], eta), abp = ks[b].alphas_cumprod_prev;
        sc[3 * b] = sqrtf(abp), sc[3 * b + 1] = sqrtf((1.0f - abp) - sg * sg);
        sc[3 * b + 2] = (t[b] != 0 ? 1.0f : 0.0f) * sg; /* no noise at the last step */
        if (sigma) sigma[b] = sg;
    }
#pragma omp parallel for schedule(static) if (B * n >= 65536)
    for (int64_t j = 0; j < B * n; j++) {
        int64_t b = j / n, i = j - b * n;
        const kb_diffusion_coefs *k = &ks[b];
        const float *eps = model_out + b * 2 * n;
        float c_pred = sc[3 * b], c_eps = sc[3 * b + 1], mask_sg = sc[3 * b + 2];
        float x = x_t[j];
        float p = pred_xstart(k, x, eps[i], clip_denoised);
        /* eps re-derived from the (possibly clipped) pred_xstart, as ADM */
        float e = (k->sqrt_recip_alphas_cumprod * x - p) / k->sqrt_recipm1_alphas_cumprod;
        float m = p * c_pred + c_eps * e;
        if (mean) mean[j] = m;
        if (pred_xstart_out) pred_xstart_out[j] = p;
        x_prev[j] = mask_sg != 0.0f ? m + mask_sg * noise[j] : m;
    }
    free(sc);
    free(ks);
    return 0;
}

int kb_cfg_guided_channels(kb_cfg_mode mode, int C) {
    if (mode == KB_CFG_ALL) return C;
    return 3 < 2 * C ? 3 : 2 * C; /* DiT: model_out[:, :3] of the 2C channels */
}

int kb_cfg_combine(const float *cond, const float *uncond, float scale, int guided_channels, int B, int C2,
                   int64_t HW, float *out, kb_err *err) {
    if (B < 1 || C2 < 1 || HW < 1 || guided_channels < 0 || guided_channels > C2)
        return kb_fail(err, "cfg combine: bad shape B=%d channels=%d HW=%lld guided=%d (expected 0..channels)", B,
                       C2, (long long)HW, guided_channels);
    int64_t per = (int64_t)C2 * HW, g = (int64_t)guided_channels * HW;
    for (int b = 0; b < B; b++) {
        const float *c = cond + b * per, *u = uncond + b * per;
        float *o = out + b * per;
        for (int64_t i = 0; i < g; i++) o[i] = u[i] + scale * (c[i] - u[i]);
        if (o != c)
            for (int64_t i = g; i < per; i++) o[i] = c[i]; /* the rest comes from the conditional half */
    }
    return 0;
}

void kb_sample_init_noise(const kb_sample_opts *opts, float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) x[i] = kb_rng_normal_at(opts->seed, opts->stream, (uint64_t)i);
}

/* Noise for loop step k: the caller's callback, or the Philox stream after x_T. */
static int step_noise(const kb_sample_opts *opts, int k, float *noise, int64_t n, kb_err *err) {
    if (opts->noise) return opts->noise(opts->noise_user, k, noise, n, err);
    uint64_t base = (uint64_t)(k + 1) * (uint64_t)n;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) noise[i] = kb_rng_normal_at(opts->seed, opts->stream, base + (uint64_t)i);
    return 0;
}

int kb_diffusion_sample_loop(const kb_diffusion *d, kb_model_fn model, void *model_user, const kb_sample_opts *opts,
                             int B, int C, int64_t HW, float *x, kb_err *err) {
    if (B < 1 || C < 1 || HW < 1)
        return kb_fail(err, "sample loop: bad shape B=%d C=%d HW=%lld", B, C, (long long)HW);
    int64_t n = (int64_t)B * C * HW;
    float *out = malloc((size_t)(2 * n) * sizeof(float));
    float *noise = malloc((size_t)n * sizeof(float));
    int *t = malloc((size_t)B * sizeof(int)), *t_model = malloc((size_t)B * sizeof(int));
    int rc = -1;
    if (!out || !noise || !t || !t_model) {
        kb_fail(err, "sample loop: out of memory for %lld elements", (long long)n);
        goto done;
    }
    for (int k = 0; k < d->num_steps; k++) {
        int step = d->num_steps - 1 - k;
        for (int b = 0; b < B; b++) {
            t[b] = step;
            t_model[b] = d->timestep_map[step]; /* DiT: original index, not rescaled */
        }
        if (model(model_user, x, t_model, B, C, HW, out, err) != 0) {
            kb_fail_wrap(err, "sample loop: model at step t=%d (model t=%d)", step, t_model[0]);
            goto done;
        }
        if (step_noise(opts, k, noise, n, err) != 0) goto done;
        int r = opts->sampler == KB_SAMPLER_DDIM
                    ? kb_ddim_step(d, out, x, t, noise, opts->eta, opts->clip_denoised, B, C, HW, x, NULL, NULL, NULL,
                                   err)
                    : kb_ddpm_step(d, out, x, t, noise, opts->clip_denoised, B, C, HW, x, NULL, NULL, NULL, err);
        if (r != 0) goto done;
    }
    rc = 0;
done:
    free(out);
    free(noise);
    free(t);
    free(t_model);
    return rc;
}
