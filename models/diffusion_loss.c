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
 * tails of the discretised likelihood, where 1 - tanh^2 underflows). The
 * element math is models/diffusion_elem.h, shared with the CUDA kernels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/diffusion.h"
#include "nn/profile.h"

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
        for (int64_t i = 0; i < n; i++) xt[i] = kb_diff_q_sample(&k, x0[i], ns[i]);
    }
    return 0;
}

/* Sums of one sample's mse and vb (nats, before the mean and the ln 2). */
static void sample_terms(const kb_diffusion_coefs *k, int t0, const float *x0, const float *ns, const float *xt,
                         const float *eps, const float *v, int64_t n, double *mse_sum, double *vb_sum) {
    double ms = 0.0, vs = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float m, vb;
        kb_diff_loss_terms(k, t0, x0[i], ns[i], xt[i], eps[i], v[i], &m, &vb);
        ms += (double)m;
        vs += (double)vb;
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
        float mse_b = (float)(ms / (double)n), vb_b = (float)(vs / (double)n) / KB_DIFF_LN2F;
        if (mse) mse[b] = mse_b;
        if (vb) vb[b] = vb_b;
        total += (double)(mse_b + vb_b);
    }
    if (loss) *loss = (float)(total / (double)B);
    return 0;
}

int kb_diffusion_loss_bwd(const kb_diffusion *d, const float *x_start, const float *noise, const float *x_t,
                          const int *t, const float *model_out, int B, int C, int64_t HW, float dloss,
                          float *dmodel_out, kb_err *err) {
    if (check_batch(d, t, B, C, HW, err) != 0) return -1;
    int64_t n = (int64_t)C * HW;
    /* loss = mean_b(...): g = dloss/B; mean over N; vb also / ln 2 */
    float g = dloss / (float)B;
    float g_mse = g / (float)n, g_vb = (g / KB_DIFF_LN2F) / (float)n;
    for (int b = 0; b < B; b++) {
        kb_diffusion_coefs k;
        kb_diffusion_coefs_at(d, t[b], &k, NULL);
        const float *out = model_out + (int64_t)b * 2 * n;
        float *dout = dmodel_out + (int64_t)b * 2 * n;
        int t0 = t[b] == 0;
        for (int64_t i = 0; i < n; i++)
            kb_diff_loss_grad(&k, t0, x_start[b * n + i], noise[b * n + i], x_t[b * n + i], out[i], out[n + i], g_mse,
                              g_vb, &dout[i], &dout[n + i]);
    }
    return 0;
}

/* ---- the MSE-only loss and the device dispatch ---- */

/* loss = mean_b mean_N (noise - eps)^2 and its gradient, for a model without
 * learned sigma (model_out [B, C, HW]). */
static void mse_only(const float *noise, const float *eps, int B, int64_t n, float dloss, float *mse, float *vb,
                     float *loss, float *deps) {
    double total = 0.0;
    float nb = (float)(n * B);
    for (int b = 0; b < B; b++) {
        double acc = 0.0;
        for (int64_t i = b * n; i < (b + 1) * n; i++) {
            float d = noise[i] - eps[i];
            acc += (double)(d * d);
            deps[i] = dloss * kb_diff_mse_grad(noise[i], eps[i], nb);
        }
        float m = (float)(acc / (double)n);
        if (mse) mse[b] = m;
        if (vb) vb[b] = 0.0f;
        total += m;
    }
    if (loss) *loss = (float)(total / B);
}

static int q_sample_dev(kb_ctx *ctx, const kb_diffusion *d, const float *x_start, const float *noise, const int *t,
                        int B, int C, int64_t HW, float *x_t, kb_err *err) {
    if (ctx->device == KB_DEV_CPU) return kb_diffusion_q_sample(d, x_start, noise, t, B, C, HW, x_t, err);
    if (check_batch(d, t, B, C, HW, err)) return -1;
    kb_diffusion_coefs *k = kb_diffusion_coefs_batch(d, t, B, "diffusion loss", err);
    int rc = k ? kb_diffusion_q_sample_cuda(ctx, k, x_start, noise, B, (int64_t)C * HW, x_t, err) : -1;
    free(k);
    return rc;
}

static int loss_dev(kb_ctx *ctx, const kb_diffusion *d, const float *x_start, const float *noise, const float *x_t,
                    const int *t, const float *model_out, int learn_sigma, int B, int C, int64_t HW, float dloss,
                    float *mse, float *vb, float *loss, float *dmodel_out, kb_err *err) {
    if (check_batch(d, t, B, C, HW, err)) return -1;
    int64_t n = (int64_t)C * HW;
    if (ctx->device == KB_DEV_CPU) {
        if (!learn_sigma) return mse_only(noise, model_out, B, n, dloss, mse, vb, loss, dmodel_out), 0;
        return kb_diffusion_loss_fwd(d, x_start, noise, x_t, t, model_out, B, C, HW, mse, vb, loss, err) ||
                       kb_diffusion_loss_bwd(d, x_start, noise, x_t, t, model_out, B, C, HW, dloss, dmodel_out, err)
                   ? -1
                   : 0;
    }
    float *m = malloc((size_t)B * 2 * sizeof(float));
    kb_diffusion_coefs *k = m ? kb_diffusion_coefs_batch(d, t, B, "diffusion loss", err) : NULL;
    int rc = -1;
    if (!m) kb_fail(err, "diffusion loss: out of memory for %d per-sample terms", B);
    else if (k) rc = kb_diffusion_loss_cuda(ctx, k, t, x_start, noise, x_t, model_out, learn_sigma, B, n, dloss, m,
                                            m + B, dmodel_out, err);
    if (!rc) {
        /* the same float32 means and double batch mean as the CPU */
        double total = 0.0;
        for (int b = 0; b < B; b++) total += (double)(m[b] + m[B + b]);
        if (mse) memcpy(mse, m, (size_t)B * sizeof(float));
        if (vb) memcpy(vb, m + B, (size_t)B * sizeof(float));
        if (loss) *loss = (float)(total / (double)B);
    }
    free(m);
    free(k);
    return rc;
}

/* The two entry points, timed per op when ctx is profiling (nn/profile.h). */
int kb_diffusion_q_sample_dev(kb_ctx *ctx, const kb_diffusion *d, const float *x_start, const float *noise,
                              const int *t, int B, int C, int64_t HW, float *x_t, kb_err *err) {
    kb_prof_mark pm = kb_prof_begin(ctx, __func__);
    return kb_prof_end(ctx, pm, q_sample_dev(ctx, d, x_start, noise, t, B, C, HW, x_t, err));
}

int kb_diffusion_loss_dev(kb_ctx *ctx, const kb_diffusion *d, const float *x_start, const float *noise,
                          const float *x_t, const int *t, const float *model_out, int learn_sigma, int B, int C,
                          int64_t HW, float dloss, float *mse, float *vb, float *loss, float *dmodel_out, kb_err *err) {
    kb_prof_mark pm = kb_prof_begin(ctx, __func__);
    return kb_prof_end(ctx, pm, loss_dev(ctx, d, x_start, noise, x_t, t, model_out, learn_sigma, B, C, HW, dloss, mse,
                                         vb, loss, dmodel_out, err));
}
