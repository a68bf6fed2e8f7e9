/* DiT's training loss (ADM training_losses with ModelMeanType.EPSILON,
 * ModelVarType.LEARNED_RANGE, LossType.MSE) and its explicit gradient with
 * respect to the model output.
 *
 * Forward, per sample b with step t = t[b] and N = C*HW elements:
 *   mse_b = mean (noise - eps)^2
 *   vb_b  = mean KL(q || p) / ln 2          t > 0
 *         = mean -log p_disc(x0) / ln 2     t == 0
 *   loss  = mean_b (mse_b + vb_b)
 * where q = N(coef1 x0 + coef2 x_t, exp(L1)), L1 = min_log, and
 * p = N(coef1 pred_xstart(eps) + coef2 x_t, exp(L2)), L2 = learned log var.
 *
 * Backward. Write g = dloss/B for a sample's loss.
 *   eps half:  d/d eps = g/N * 2 (eps - noise)           (vb sees eps detached)
 *   v half:    d/d v = g/(N ln2) * dterm/dL2 * (max_log - min_log)/2
 *   KL:        dKL/dL2 = (1 - exp(L1-L2) - (m1-m2)^2 exp(-L2)) / 2
 *   NLL:       L2 enters through s = exp(-L2/2) scaling z = s (x0 - m +- 1/255);
 *              dz/dL2 = -z/2, and d cdf(z)/dz = 0.5 (1 - tanh^2 u) k (1 + 3a z^2)
 *              with u = k (z + a z^3), k = sqrt(2/pi), a = 0.044715.
 * The float32 operations follow PyTorch autograd's chain for the same
 * expression, so the gradient also agrees where float32 loses digits (the
 * tails of the discretised likelihood, where 1 - tanh^2 underflows). */
#include <math.h>
#include <string.h>

#include "models/diffusion.h"

#define KB_LN2F 0.693147180559945309f
#define KB_CDF_K 0.797884560802865355f /* sqrt(2/pi), rounded to float as torch does with the numpy scalar */
#define KB_CDF_A 0.044715f
#define KB_BIN ((float)(1.0 / 255.0)) /* the Python double 1/255, rounded once */
#define KB_LOG_FLOOR 1e-12f

static int check_batch(const kb_diffusion *d, const int *t, int B, int C, int64_t HW, kb_err *err) {
    if (B < 1 || C < 1 || HW < 1)
        return kb_fail(err, "diffusion loss: bad shape B=%d C=%d HW=%lld", B, C, (long long)HW);
    for (int b = 0; b < B; b++)
        if (t[b] < 0 || t[b] >= d->num_steps)
            return kb_fail(err, "diffusion loss: t[%d] = %d outside [0, %d)", b, t[b], d->num_steps);
    return 0;
}

int kb_diffusion_q_sample(const kb_diffusion *d, const float *x_start, const float *noise, const int *t, int B,
                          int C, int64_t HW, float *x_t, kb_err *err) {
    if (check_batch(d, t, B, C, HW, err) != 0) return -1;
    int64_t n = (int64_t)C * HW;
    for (int b = 0; b < B; b++) {
        kb_diffusion_coefs k;
        kb_diffusion_coefs_at(d, t[b], &k, NULL);
        const float *x0 = x_start + b * n, *ns = noise + b * n;
        float *xt = x_t + b * n;
        for (int64_t i = 0; i < n; i++) xt[i] = k.sqrt_alphas_cumprod * x0[i] + k.sqrt_one_minus_alphas_cumprod * ns[i];
    }
    return 0;
}

/* ADM normal_kl(m1, L1, m2, L2) for one element, in its order of operations. */
static float normal_kl(float m1, float L1, float m2, float L2) {
    float dm = m1 - m2;
    return 0.5f * ((((-1.0f + L2) - L1) + expf(L1 - L2)) + (dm * dm) * expf(-L2));
}

/* ADM approx_standard_normal_cdf: 0.5 (1 + tanh(k (x + a x^3))). */
static float approx_cdf(float x) {
    float x3 = (x * x) * x;
    return 0.5f * (1.0f + tanhf(KB_CDF_K * (x + KB_CDF_A * x3)));
}

/* ADM discretized_gaussian_log_likelihood for one element: the probability
 * of x0's 1/255-wide bin (open-ended beyond +-0.999), floored at 1e-12. */
static float disc_loglik(float x0, float mean, float log_scale) {
    float c = x0 - mean, inv = expf(-log_scale);
    float cdf_plus = approx_cdf(inv * (c + KB_BIN)), cdf_min = approx_cdf(inv * (c - KB_BIN));
    if (x0 < -0.999f) return logf(fmaxf(cdf_plus, KB_LOG_FLOOR));
    if (x0 > 0.999f) return logf(fmaxf(1.0f - cdf_min, KB_LOG_FLOOR));
    return logf(fmaxf(cdf_plus - cdf_min, KB_LOG_FLOOR));
}

/* Sums of one sample's mse and vb (nats, before the mean and the ln 2). */
static void sample_terms(const kb_diffusion_coefs *k, int t0, const float *x0, const float *ns, const float *xt,
                         const float *eps, const float *v, int64_t n, double *mse_sum, double *vb_sum) {
    double ms = 0.0, vs = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float d = ns[i] - eps[i];
        ms += (double)(d * d);
        float mean = kb_diff_posterior_mean(k, kb_diff_pred_xstart(k, xt[i], eps[i]), xt[i]);
        float L2 = kb_diff_learned_logvar(k, v[i]);
        if (t0) {
            vs += (double)(-disc_loglik(x0[i], mean, 0.5f * L2));
        } else {
            float true_mean = kb_diff_posterior_mean(k, x0[i], xt[i]);
            vs += (double)normal_kl(true_mean, k->min_log, mean, L2);
        }
    }
    *mse_sum = ms;
    *vb_sum = vs;
}

int kb_diffusion_loss_fwd(const kb_diffusion *d, const float *x_start, const float *noise, const float *x_t,
                          const int *t, const float *model_out, int B, int C, int64_t HW, float *mse, float *vb,
                          float *loss, kb_err *err) {
    if (check_batch(d, t, B, C, HW, err) != 0) return -1;
    int64_t n = (int64_t)C * HW;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        kb_diffusion_coefs k;
        kb_diffusion_coefs_at(d, t[b], &k, NULL);
        const float *out = model_out + (int64_t)b * 2 * n;
        double ms, vs;
        sample_terms(&k, t[b] == 0, x_start + b * n, noise + b * n, x_t + b * n, out, out + n, n, &ms, &vs);
        /* mean_flat gives a float32 mean; the bits division is float32 too */
        float mse_b = (float)(ms / (double)n), vb_b = (float)(vs / (double)n) / KB_LN2F;
        if (mse) mse[b] = mse_b;
        if (vb) vb[b] = vb_b;
        total += (double)(mse_b + vb_b);
    }
    if (loss) *loss = (float)(total / (double)B);
    return 0;
}

/* d(-log p_disc)/dL2 scaled by g, following autograd's float32 chain. */
static float disc_nll_grad_L2(float g, float x0, float mean, float L2) {
    float ls = 0.5f * L2, c = x0 - mean, inv = expf(-ls);
    float zp = inv * (c + KB_BIN), zm = inv * (c - KB_BIN);
    float up = KB_CDF_K * (zp + KB_CDF_A * ((zp * zp) * zp)), um = KB_CDF_K * (zm + KB_CDF_A * ((zm * zm) * zm));
    float yp = tanhf(up), ym = tanhf(um);
    float cdf_plus = 0.5f * (1.0f + yp), cdf_min = 0.5f * (1.0f + ym);
    float g_logp = -g, g_cp = 0.0f, g_cm = 0.0f;
    if (x0 < -0.999f) {
        if (cdf_plus >= KB_LOG_FLOOR) g_cp = g_logp / cdf_plus;
    } else if (x0 > 0.999f) {
        float q = 1.0f - cdf_min;
        if (q >= KB_LOG_FLOOR) g_cm = -(g_logp / q);
    } else {
        float delta = cdf_plus - cdf_min;
        if (delta >= KB_LOG_FLOOR) {
            g_cp = g_logp / delta;
            g_cm = -g_cp;
        }
    }
    /* cdf = 0.5 (1 + tanh u): dz = g * 0.5 * (1 - y^2) * k * (1 + a * 3 z^2) */
    float gwp = ((g_cp * 0.5f) * (1.0f - yp * yp)) * KB_CDF_K;
    float gwm = ((g_cm * 0.5f) * (1.0f - ym * ym)) * KB_CDF_K;
    float gzp = gwp + (gwp * KB_CDF_A) * (3.0f * (zp * zp));
    float gzm = gwm + (gwm * KB_CDF_A) * (3.0f * (zm * zm));
    float g_inv = gzp * (c + KB_BIN) + gzm * (c - KB_BIN);
    float g_ls = -(g_inv * inv); /* inv = exp(-ls) */
    return 0.5f * g_ls;
}

/* dKL/dL2 scaled by g (the mean is detached, L1 is a constant). */
static float kl_grad_L2(float g, float m1, float L1, float m2, float L2) {
    float dm = m1 - m2, gs = 0.5f * g;
    return gs - gs * expf(L1 - L2) - (gs * (dm * dm)) * expf(-L2);
}

static void sample_grad(const kb_diffusion_coefs *k, int t0, const float *x0, const float *ns, const float *xt,
                        const float *eps, const float *v, int64_t n, float g_mse, float g_vb, float *deps,
                        float *dv) {
    for (int64_t i = 0; i < n; i++) {
        deps[i] = g_mse * (2.0f * (eps[i] - ns[i]));
        float mean = kb_diff_posterior_mean(k, kb_diff_pred_xstart(k, xt[i], eps[i]), xt[i]);
        float L2 = kb_diff_learned_logvar(k, v[i]);
        float gL2 = t0 ? disc_nll_grad_L2(g_vb, x0[i], mean, L2)
                       : kl_grad_L2(g_vb, kb_diff_posterior_mean(k, x0[i], xt[i]), k->min_log, mean, L2);
        /* L2 = frac max_log + (1-frac) min_log, frac = (v+1)/2 */
        dv[i] = (gL2 * k->max_log - gL2 * k->min_log) / 2.0f;
    }
}

int kb_diffusion_loss_bwd(const kb_diffusion *d, const float *x_start, const float *noise, const float *x_t,
                          const int *t, const float *model_out, int B, int C, int64_t HW, float dloss,
                          float *dmodel_out, kb_err *err) {
    if (check_batch(d, t, B, C, HW, err) != 0) return -1;
    int64_t n = (int64_t)C * HW;
    /* loss = mean_b(...): g = dloss/B; mean over N; vb also / ln 2 */
    float g = dloss / (float)B;
    float g_mse = g / (float)n, g_vb = (g / KB_LN2F) / (float)n;
    for (int b = 0; b < B; b++) {
        kb_diffusion_coefs k;
        kb_diffusion_coefs_at(d, t[b], &k, NULL);
        const float *out = model_out + (int64_t)b * 2 * n;
        float *dout = dmodel_out + (int64_t)b * 2 * n;
        sample_grad(&k, t[b] == 0, x_start + b * n, noise + b * n, x_t + b * n, out, out + n, n, g_mse, g_vb, dout,
                    dout + n);
    }
    return 0;
}
