/* Per-element arithmetic of the Gaussian diffusion (models/diffusion.h):
 * the posterior, ADM's normal_kl and discretised Gaussian likelihood, and
 * the explicit gradient of DiT's training loss. One definition serves the
 * CPU reference (models/diffusion_loss.c, models/diffusion_sample.c) and the
 * CUDA kernels (models/diffusion_cuda.cu), so both compute the same float32
 * expressions in ADM's order of operations.
 *
 * Products and sums go through nn/rng.h's KB_F* macros: plain rounded float
 * operations on the CPU (the build has -ffp-contract=off), __fmul_rn-style
 * intrinsics on the GPU, which nvcc never fuses into FMAs. exp, log and tanh
 * are each platform's own (glibc on the CPU, CUDA's on the GPU, both within
 * 2 ulp), so the two paths agree to rounding, not bit for bit. */
#ifndef KB_DIFFUSION_ELEM_H
#define KB_DIFFUSION_ELEM_H

#include <math.h>

#include "nn/rng.h" /* KB_HD and the KB_F* non-contracting arithmetic */

/* The coefficients of step t as the float32 math sees them: each float64
 * schedule entry rounded to float (ADM's _extract_into_tensor). GPU kernels
 * take these per sample to reproduce the CPU numbers. */
typedef struct {
    float sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod;
    float sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod;
    float posterior_mean_coef1, posterior_mean_coef2;
    float min_log; /* posterior_log_variance_clipped[t] */
    float max_log; /* log(betas[t]) */
    float alphas_cumprod, alphas_cumprod_prev;
} kb_diffusion_coefs;

#define KB_DIFF_LN2F 0.693147180559945309f
#define KB_DIFF_CDF_K 0.797884560802865355f /* sqrt(2/pi), rounded to float as torch does with the numpy scalar */
#define KB_DIFF_CDF_A 0.044715f
#define KB_DIFF_BIN ((float)(1.0 / 255.0)) /* the Python double 1/255, rounded once */
#define KB_DIFF_LOG_FLOOR 1e-12f

/* x_t = sqrt(abar) x0 + sqrt(1 - abar) noise */
KB_HD float kb_diff_q_sample(const kb_diffusion_coefs *k, float x0, float noise) {
    return KB_FADD(KB_FMUL(k->sqrt_alphas_cumprod, x0), KB_FMUL(k->sqrt_one_minus_alphas_cumprod, noise));
}
KB_HD float kb_diff_pred_xstart(const kb_diffusion_coefs *k, float x_t, float eps) {
    return KB_FSUB(KB_FMUL(k->sqrt_recip_alphas_cumprod, x_t), KB_FMUL(k->sqrt_recipm1_alphas_cumprod, eps));
}
/* posterior mean coef1 * x0 + coef2 * x_t, for the true x0 or a prediction */
KB_HD float kb_diff_posterior_mean(const kb_diffusion_coefs *k, float x0, float x_t) {
    return KB_FADD(KB_FMUL(k->posterior_mean_coef1, x0), KB_FMUL(k->posterior_mean_coef2, x_t));
}
/* LEARNED_RANGE: frac = (v+1)/2, log var = frac*max_log + (1-frac)*min_log */
KB_HD float kb_diff_learned_logvar(const kb_diffusion_coefs *k, float v) {
    float frac = KB_FDIV(KB_FADD(v, 1.0f), 2.0f);
    return KB_FADD(KB_FMUL(frac, k->max_log), KB_FMUL(KB_FSUB(1.0f, frac), k->min_log));
}

/* ADM normal_kl(m1, L1, m2, L2) for one element, in its order of operations. */
KB_HD float kb_diff_normal_kl(float m1, float L1, float m2, float L2) {
    float dm = KB_FSUB(m1, m2);
    float s = KB_FADD(KB_FSUB(KB_FADD(-1.0f, L2), L1), expf(KB_FSUB(L1, L2)));
    return KB_FMUL(0.5f, KB_FADD(s, KB_FMUL(KB_FMUL(dm, dm), expf(-L2))));
}

/* k (x + a x^3), the argument of ADM's approx_standard_normal_cdf's tanh */
KB_HD float kb_diff_cdf_arg(float x) {
    float x3 = KB_FMUL(KB_FMUL(x, x), x);
    return KB_FMUL(KB_DIFF_CDF_K, KB_FADD(x, KB_FMUL(KB_DIFF_CDF_A, x3)));
}
/* ADM approx_standard_normal_cdf: 0.5 (1 + tanh(k (x + a x^3))). */
KB_HD float kb_diff_approx_cdf(float x) { return KB_FMUL(0.5f, KB_FADD(1.0f, tanhf(kb_diff_cdf_arg(x)))); }

/* ADM discretized_gaussian_log_likelihood for one element: the probability
 * of x0's 1/255-wide bin (open-ended beyond +-0.999), floored at 1e-12. */
KB_HD float kb_diff_disc_loglik(float x0, float mean, float log_scale) {
    float c = KB_FSUB(x0, mean), inv = expf(-log_scale);
    float cdf_plus = kb_diff_approx_cdf(KB_FMUL(inv, KB_FADD(c, KB_DIFF_BIN)));
    float cdf_min = kb_diff_approx_cdf(KB_FMUL(inv, KB_FSUB(c, KB_DIFF_BIN)));
    if (x0 < -0.999f) return logf(fmaxf(cdf_plus, KB_DIFF_LOG_FLOOR));
    if (x0 > 0.999f) return logf(fmaxf(KB_FSUB(1.0f, cdf_min), KB_DIFF_LOG_FLOOR));
    return logf(fmaxf(KB_FSUB(cdf_plus, cdf_min), KB_DIFF_LOG_FLOOR));
}

/* One element's loss terms in nats: (noise - eps)^2 and the vb term (the
 * discretised NLL at t = 0, else the KL), with the mean from eps detached. */
KB_HD void kb_diff_loss_terms(const kb_diffusion_coefs *k, int t0, float x0, float noise, float x_t, float eps,
                              float v, float *mse_term, float *vb_term) {
    float d = KB_FSUB(noise, eps);
    *mse_term = KB_FMUL(d, d);
    float mean = kb_diff_posterior_mean(k, kb_diff_pred_xstart(k, x_t, eps), x_t);
    float L2 = kb_diff_learned_logvar(k, v);
    if (t0) *vb_term = -kb_diff_disc_loglik(x0, mean, KB_FMUL(0.5f, L2));
    else *vb_term = kb_diff_normal_kl(kb_diff_posterior_mean(k, x0, x_t), k->min_log, mean, L2);
}

/* d(-log p_disc)/dL2 scaled by g, following autograd's float32 chain. */
KB_HD float kb_diff_disc_nll_grad_L2(float g, float x0, float mean, float L2) {
    float ls = KB_FMUL(0.5f, L2), c = KB_FSUB(x0, mean), inv = expf(-ls);
    float cp = KB_FADD(c, KB_DIFF_BIN), cm = KB_FSUB(c, KB_DIFF_BIN);
    float zp = KB_FMUL(inv, cp), zm = KB_FMUL(inv, cm);
    float yp = tanhf(kb_diff_cdf_arg(zp)), ym = tanhf(kb_diff_cdf_arg(zm));
    float cdf_plus = KB_FMUL(0.5f, KB_FADD(1.0f, yp)), cdf_min = KB_FMUL(0.5f, KB_FADD(1.0f, ym));
    float g_logp = -g, g_cp = 0.0f, g_cm = 0.0f;
    if (x0 < -0.999f) {
        if (cdf_plus >= KB_DIFF_LOG_FLOOR) g_cp = KB_FDIV(g_logp, cdf_plus);
    } else if (x0 > 0.999f) {
        float q = KB_FSUB(1.0f, cdf_min);
        if (q >= KB_DIFF_LOG_FLOOR) g_cm = -KB_FDIV(g_logp, q);
    } else {
        float delta = KB_FSUB(cdf_plus, cdf_min);
        if (delta >= KB_DIFF_LOG_FLOOR) {
            g_cp = KB_FDIV(g_logp, delta);
            g_cm = -g_cp;
        }
    }
    /* cdf = 0.5 (1 + tanh u): dz = g * 0.5 * (1 - y^2) * k * (1 + a * 3 z^2) */
    float gwp = KB_FMUL(KB_FMUL(KB_FMUL(g_cp, 0.5f), KB_FSUB(1.0f, KB_FMUL(yp, yp))), KB_DIFF_CDF_K);
    float gwm = KB_FMUL(KB_FMUL(KB_FMUL(g_cm, 0.5f), KB_FSUB(1.0f, KB_FMUL(ym, ym))), KB_DIFF_CDF_K);
    float gzp = KB_FADD(gwp, KB_FMUL(KB_FMUL(gwp, KB_DIFF_CDF_A), KB_FMUL(3.0f, KB_FMUL(zp, zp))));
    float gzm = KB_FADD(gwm, KB_FMUL(KB_FMUL(gwm, KB_DIFF_CDF_A), KB_FMUL(3.0f, KB_FMUL(zm, zm))));
    float g_inv = KB_FADD(KB_FMUL(gzp, cp), KB_FMUL(gzm, cm));
    float g_ls = -KB_FMUL(g_inv, inv); /* inv = exp(-ls) */
    return KB_FMUL(0.5f, g_ls);
}

/* dKL/dL2 scaled by g (the mean is detached, L1 is a constant). */
KB_HD float kb_diff_kl_grad_L2(float g, float m1, float L1, float m2, float L2) {
    float dm = KB_FSUB(m1, m2), gs = KB_FMUL(0.5f, g);
    return KB_FSUB(KB_FSUB(gs, KB_FMUL(gs, expf(KB_FSUB(L1, L2)))), KB_FMUL(KB_FMUL(gs, KB_FMUL(dm, dm)), expf(-L2)));
}

/* One element's gradient of the loss w.r.t. the model output: the eps half
 * from the MSE (g_mse = dloss / (B N)), the v half from vb (g_vb = g_mse / ln 2). */
KB_HD void kb_diff_loss_grad(const kb_diffusion_coefs *k, int t0, float x0, float noise, float x_t, float eps,
                             float v, float g_mse, float g_vb, float *deps, float *dv) {
    *deps = KB_FMUL(g_mse, KB_FMUL(2.0f, KB_FSUB(eps, noise)));
    float mean = kb_diff_posterior_mean(k, kb_diff_pred_xstart(k, x_t, eps), x_t);
    float L2 = kb_diff_learned_logvar(k, v);
    float gL2 = t0 ? kb_diff_disc_nll_grad_L2(g_vb, x0, mean, L2)
                   : kb_diff_kl_grad_L2(g_vb, kb_diff_posterior_mean(k, x0, x_t), k->min_log, mean, L2);
    /* L2 = frac max_log + (1-frac) min_log, frac = (v+1)/2 */
    *dv = KB_FDIV(KB_FSUB(KB_FMUL(gL2, k->max_log), KB_FMUL(gL2, k->min_log)), 2.0f);
}

/* The MSE-only model (learn_sigma off): (noise - eps)^2 and its gradient
 * -2 (noise - eps) / (N B), in the order the CPU trainer has always used. */
KB_HD float kb_diff_mse_grad(float noise, float eps, float n_times_b) {
    return KB_FDIV(KB_FMUL(-2.0f, KB_FSUB(noise, eps)), n_times_b);
}

#endif
