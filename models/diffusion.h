/* Gaussian diffusion as in ADM (openai/guided-diffusion) and DiT
 * (facebookresearch/DiT diffusion/): linear betas 1e-4..0.02 over 1000 steps,
 * epsilon prediction, LEARNED_RANGE variance, loss = MSE(eps) + vb (bits),
 * timestep respacing, DDPM and DDIM reverse steps, classifier-free guidance.
 *
 * Layout: NCHW float32. x_start, noise, x_t are [B, C, HW]; the model output
 * is [B, 2C, HW]: channels [0, C) are eps, [C, 2C) are the variance value v
 * with log var = frac*log(beta_t) + (1-frac)*posterior_log_variance_clipped_t,
 * frac = (v+1)/2.
 *
 * Numerics mirror the PyTorch reference (see docs/diffusion.md):
 *   - the schedule is float64 and built the way DiT builds it: through
 *     SpacedDiffusion even for "all 1000 steps", so betas are re-derived as
 *     1 - abar_t/abar_{t-1} (they differ from linspace by ~4e-13 relative);
 *   - every per-timestep coefficient is rounded to float32 before it meets the
 *     data (ADM's _extract_into_tensor: float64 gather, then .float()), and the
 *     elementwise arithmetic is float32 in ADM's order of operations.
 *
 * Timesteps given to the functions below are indices into THIS (possibly
 * respaced) process, 0..num_steps-1. The model is called with
 * timestep_map[t] (the original 0..999 index, no rescaling, as DiT).
 *
 * Errors: functions return 0, or -1 with err filled in. */
#ifndef KB_DIFFUSION_H
#define KB_DIFFUSION_H

#include <stdint.h>

#include "models/diffusion_elem.h"
#include "nn/backend.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int num_steps;          /* T of this process (after respacing) */
    int original_num_steps; /* steps of the base schedule (1000 for DiT) */
    int *timestep_map;      /* [T] original step index the model sees for step t */
    /* float64 schedule arrays, each [T] (names as in ADM's GaussianDiffusion) */
    double *betas;
    double *log_betas; /* log(betas): LEARNED_RANGE's max_log */
    double *alphas_cumprod, *alphas_cumprod_prev, *alphas_cumprod_next;
    double *sqrt_alphas_cumprod, *sqrt_one_minus_alphas_cumprod, *log_one_minus_alphas_cumprod;
    double *sqrt_recip_alphas_cumprod, *sqrt_recipm1_alphas_cumprod;
    double *posterior_variance;
    double *posterior_log_variance_clipped; /* entry 0 replaced by entry 1 before the log */
    double *posterior_mean_coef1, *posterior_mean_coef2;
    double *storage_; /* one allocation behind all the double arrays */
} kb_diffusion;

/* ---- schedule (models/diffusion.c) ---- */

/* ADM's space_timesteps(num_timesteps, spec): keep[i] = 1 for kept steps.
 * spec: NULL or "" (all steps), "ddimN" (the integer stride s with
 * ceil(T/s) == N), or comma-separated section counts "250", "10,15,20"
 * (each equal section strided by round-half-to-even of a float64 running
 * index, as Python's round()). *n_kept receives the number of kept steps. */
int kb_space_timesteps(int num_timesteps, const char *spec, unsigned char *keep, int *n_kept, kb_err *err);

/* The linear schedule of ADM's get_named_beta_schedule("linear", n):
 * np.linspace(scale*1e-4, scale*0.02, n) with scale = 1000/n. */
void kb_linear_betas(double *betas, int n);

/* DiT's create_diffusion(spec, "linear", learn_sigma=True, diffusion_steps):
 * linear betas over num_diffusion_steps, respaced by spec (NULL/"" = all). */
int kb_diffusion_init(kb_diffusion *d, int num_diffusion_steps, const char *spec, kb_err *err);

/* A process from explicit float64 betas [n] (n >= 2, 0 < beta <= 1) and the
 * original index of each step (timestep_map may be NULL: identity). */
int kb_diffusion_init_betas(kb_diffusion *d, const double *betas, int n, const int *timestep_map,
                            int original_num_steps, kb_err *err);

void kb_diffusion_free(kb_diffusion *d);

/* Fills c for step t; -1 if t is outside [0, num_steps). */
int kb_diffusion_coefs_at(const kb_diffusion *d, int t, kb_diffusion_coefs *c, kb_err *err);
/* A malloc'ed array of the coefficients of t[0..B) (free() it); NULL with
 * err set ("<what>: ...") when out of memory or a t is out of range. */
kb_diffusion_coefs *kb_diffusion_coefs_batch(const kb_diffusion *d, const int *t, int B, const char *what, kb_err *err);

/* The element math (posterior, learned variance, loss terms and their
 * gradients) is in models/diffusion_elem.h, shared with the CUDA kernels. */

/* ---- training loss (models/diffusion_loss.c) ---- */

/* x_t = sqrt(abar_t) x_start + sqrt(1-abar_t) noise, per sample t[b]. */
int kb_diffusion_q_sample(const kb_diffusion *d, const float *x_start, const float *noise, const int *t, int B,
                          int C, int64_t HW, float *x_t, kb_err *err);

/* DiT's training loss for a batch: per sample,
 *   mse[b] = mean_{C,HW} (noise - eps)^2
 *   vb[b]  = mean_{C,HW} KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) / ln 2   (t > 0)
 *          = mean_{C,HW} -log p_discretised(x_0 | x_1) / ln 2           (t == 0)
 * with p's mean from the detached eps (no clipping), and
 *   *loss = mean_b (mse[b] + vb[b]).
 * x_t must be kb_diffusion_q_sample(x_start, noise, t) (the model's input).
 * mse, vb, loss may each be NULL. */
int kb_diffusion_loss_fwd(const kb_diffusion *d, const float *x_start, const float *noise, const float *x_t,
                          const int *t, const float *model_out, int B, int C, int64_t HW, float *mse, float *vb,
                          float *loss, kb_err *err);

/* Gradient of (dloss * loss) w.r.t. model_out [B, 2C, HW], OVERWRITTEN (this
 * is where backward starts; dloss = 1 for a plain step, 1/k when k
 * micro-batches make one batch). The eps half gets only the MSE gradient,
 * the v half only the vb gradient (the mean is detached in vb). */
int kb_diffusion_loss_bwd(const kb_diffusion *d, const float *x_start, const float *noise, const float *x_t,
                          const int *t, const float *model_out, int B, int C, int64_t HW, float dloss,
                          float *dmodel_out, kb_err *err);

/* ---- the training loss on the context's device ---- */

/* x_t = q_sample(x_start, noise, t) where x_start, noise and x_t live on
 * ctx's device and t [B] on the host. On the CPU this is
 * kb_diffusion_q_sample; on CUDA, models/diffusion_cuda.cu. */
int kb_diffusion_q_sample_dev(kb_ctx *ctx, const kb_diffusion *d, const float *x_start, const float *noise,
                              const int *t, int B, int C, int64_t HW, float *x_t, kb_err *err);

/* Forward and backward of DiT's loss in one pass, on ctx's device:
 * model_out [B, oc*C, HW] and dmodel_out (overwritten) on the device, with
 * oc = 2 for the learned-range model (kb_diffusion_loss_fwd/bwd) and oc = 1
 * for the MSE-only one (mse = mean (noise - eps)^2, vb = 0, gradient
 * -2 (noise - eps) / (B C HW) scaled by dloss). t, mse [B], vb [B] and loss
 * are on the host (mse, vb, loss may be NULL). The CUDA sums run in double in
 * a fixed order, so results repeat bit for bit; they agree with the CPU's to
 * rounding (exp/log/tanh differ by an ulp or two). */
int kb_diffusion_loss_dev(kb_ctx *ctx, const kb_diffusion *d, const float *x_start, const float *noise,
                          const float *x_t, const int *t, const float *model_out, int learn_sigma, int B, int C,
                          int64_t HW, float dloss, float *mse, float *vb, float *loss, float *dmodel_out, kb_err *err);

/* The CUDA implementations (stubs that fail in CPU-only builds); coefs [B]
 * are the per-sample coefficients on the host, checked by the callers above. */
int kb_diffusion_q_sample_cuda(kb_ctx *ctx, const kb_diffusion_coefs *coefs, const float *x_start, const float *noise,
                               int B, int64_t n, float *x_t, kb_err *err);
int kb_diffusion_loss_cuda(kb_ctx *ctx, const kb_diffusion_coefs *coefs, const int *t, const float *x_start,
                           const float *noise, const float *x_t, const float *model_out, int learn_sigma, int B,
                           int64_t n, float dloss, float *mse, float *vb, float *dmodel_out, kb_err *err);

/* ---- sampling (models/diffusion_sample.c) ---- */

/* One DDPM reverse step (ADM p_sample), per sample t[b]:
 *   pred_xstart = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps   (clamped to [-1,1] if clip_denoised)
 *   mean        = coef1 pred_xstart + coef2 x_t
 *   log_var     = LEARNED_RANGE from v
 *   x_prev      = mean + exp(log_var/2) noise   (no noise where t == 0)
 * mean, log_variance, pred_xstart are optional outputs [B, C, HW] (NULL to skip).
 * x_prev may alias x_t. noise may be NULL only if every t[b] == 0. */
int kb_ddpm_step(const kb_diffusion *d, const float *model_out, const float *x_t, const int *t, const float *noise,
                 int clip_denoised, int B, int C, int64_t HW, float *x_prev, float *mean, float *log_variance,
                 float *pred_xstart, kb_err *err);

/* One DDIM step (ADM ddim_sample) with eta:
 *   eps'   = (sqrt(1/abar) x_t - pred_xstart) / sqrt(1/abar - 1)
 *   sigma  = eta sqrt((1-abar_prev)/(1-abar)) sqrt(1 - abar/abar_prev)
 *   mean   = pred_xstart sqrt(abar_prev) + sqrt(1 - abar_prev - sigma^2) eps'
 *   x_prev = mean + sigma noise   (no noise where t == 0)
 * mean, pred_xstart [B, C, HW] and sigma [B] are optional. x_prev may alias x_t.
 * noise may be NULL when eta == 0 or every t[b] == 0. */
int kb_ddim_step(const kb_diffusion *d, const float *model_out, const float *x_t, const int *t, const float *noise,
                 float eta, int clip_denoised, int B, int C, int64_t HW, float *x_prev, float *mean, float *sigma,
                 float *pred_xstart, kb_err *err);

/* Classifier-free guidance (DiT forward_with_cfg): for the first
 * guided_channels channels out = u + scale (c - u), computed in float32 as
 * DiT does; the remaining channels (rest of eps, and the whole variance half)
 * are copied from the conditional output. cond, uncond, out are [B, C2, HW]
 * (C2 = 2C); out may alias cond or uncond. */
int kb_cfg_combine(const float *cond, const float *uncond, float scale, int guided_channels, int B, int C2,
                   int64_t HW, float *out, kb_err *err);

typedef enum {
    KB_CFG_DIT = 0, /* DiT's reference: guide channels [:3] of the 2C-channel output */
    KB_CFG_ALL = 1, /* guide all C eps channels (the "standard" form in DiT's comment) */
} kb_cfg_mode;

/* guided_channels for a mode and C eps channels: dit -> min(3, 2C), all -> C. */
int kb_cfg_guided_channels(kb_cfg_mode mode, int C);

/* The model as the sampler sees it: write model_out [B, 2C, HW] for input x_t
 * [B, C, HW] at original timesteps t_model[B] (timestep_map already applied).
 * A GPU model copies its output back to host memory here; CFG goes inside
 * (run [x; x] with labels [y; null], then kb_cfg_combine into model_out). */
typedef int (*kb_model_fn)(void *user, const float *x_t, const int *t_model, int B, int C, int64_t HW,
                           float *model_out, kb_err *err);

/* The noise for a step: fill noise [B*C*HW] for loop step k (k = 0 at the
 * first step, t = T-1). */
typedef int (*kb_noise_fn)(void *user, int step, float *noise, int64_t n, kb_err *err);

typedef enum { KB_SAMPLER_DDPM = 0, KB_SAMPLER_DDIM = 1 } kb_sampler;

typedef struct {
    kb_sampler sampler;
    float eta;          /* DDIM only */
    int clip_denoised;  /* DiT samples with 0 */
    kb_noise_fn noise;  /* NULL: Philox, see below */
    void *noise_user;
    uint64_t seed;      /* for the default noise: step k element i = */
    uint64_t stream;    /*   kb_rng_normal_at(seed, stream, (k+1)*n + i) */
} kb_sample_opts;

/* x_T for the default noise: element i = kb_rng_normal_at(seed, stream, i). */
void kb_sample_init_noise(const kb_sample_opts *opts, float *x, int64_t n);

/* The reverse loop (ADM p_sample_loop / ddim_sample_loop): x holds x_T on
 * entry and x_0 on return. For t = T-1 .. 0: model(x, timestep_map[t]),
 * then one DDPM or DDIM step in place. */
int kb_diffusion_sample_loop(const kb_diffusion *d, kb_model_fn model, void *model_user, const kb_sample_opts *opts,
                             int B, int C, int64_t HW, float *x, kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
