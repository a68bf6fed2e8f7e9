/* Plain references of the DiT ops (nn/ops_dit.h): straightforward loops,
 * sums accumulated in float in the natural order. */
#include <math.h>

#include "nn/ops_dit.h"
#include "nn/ops_dit_index.h"
#include "nn/ops_ref.h"

void kb_modulate_fwd_ref(float *out, const float *x, const float *shift, const float *scale, int64_t ld, int64_t B,
                         int64_t T, int64_t D) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++) {
                int64_t i = (b * T + t) * D + d;
                out[i] = x[i] * (1.0f + scale[b * ld + d]) + shift[b * ld + d];
            }
}

void kb_modulate_bwd_ref(float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                         const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < D; d++) {
            float s_shift = 0.0f, s_scale = 0.0f;
            for (int64_t t = 0; t < T; t++) {
                int64_t i = (b * T + t) * D + d;
                float g = dout[i] * (1.0f + scale[b * ld + d]);
                dx[i] = dx_mode == KB_GRAD_SET ? g : dx[i] + g;
                s_shift += dout[i];
                s_scale += dout[i] * x[i];
            }
            dshift[b * ld + d] += s_shift;
            dscale[b * ld + d] += s_scale;
        }
}

/* kb_layernorm_fwd_ref, then kb_modulate_fwd_ref in place. */
void kb_ln_modulate_fwd_ref(float *out, float *mean, float *rstd, const float *x, const float *shift, const float *scale,
                            int64_t ld, int64_t B, int64_t T, int64_t D, float eps) {
    kb_layernorm_fwd_ref(out, mean, rstd, x, NULL, NULL, B * T, D, eps);
    kb_modulate_fwd_ref(out, out, shift, scale, ld, B, T, D);
}

/* kb_gated_add_fwd_ref, then kb_ln_modulate_fwd_ref on its result. */
void kb_gated_add_ln_modulate_fwd_ref(float *res, float *out, float *mean, float *rstd, const float *x, const float *gate,
                                      const float *y, int64_t gate_ld, const float *shift, const float *scale,
                                      int64_t ld, int64_t B, int64_t T, int64_t D, float eps) {
    kb_gated_add_fwd_ref(res, x, gate, y, gate_ld, B, T, D);
    kb_ln_modulate_fwd_ref(out, mean, rstd, res, shift, scale, ld, B, T, D, eps);
}

/* The formulas of kb_modulate_bwd_ref and kb_layernorm_bwd_ref with the
 * LayerNorm output xhat = (x - mean) * rstd recomputed instead of read. */
void kb_ln_modulate_bwd_ref(float *dx, float *dshift, float *dscale, const float *dout, const float *x, const float *mean,
                            const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D) {
    for (int64_t r = 0; D > 0 && r < B * T; r++) {
        const float *xr = x + r * D, *dy = dout + r * D, *sc = scale + (r / T) * ld;
        float m = mean[r], rs = rstd[r];
        double sg = 0.0, sgx = 0.0;
        for (int64_t d = 0; d < D; d++) {
            float g = dy[d] * (1.0f + sc[d]), xhat = (xr[d] - m) * rs;
            sg += (double)g;
            sgx += (double)g * (double)xhat;
        }
        float g_mean = (float)(sg / (double)D), gx_mean = (float)(sgx / (double)D);
        for (int64_t d = 0; d < D; d++) {
            float g = dy[d] * (1.0f + sc[d]), xhat = (xr[d] - m) * rs;
            dx[r * D + d] = dx[r * D + d] + (g - g_mean - xhat * gx_mean) * rs;
        }
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < D; d++) {
            float s_shift = 0.0f, s_scale = 0.0f;
            for (int64_t t = 0; t < T; t++) {
                int64_t r = b * T + t, i = r * D + d;
                s_shift += dout[i];
                s_scale += dout[i] * ((x[i] - mean[r]) * rstd[r]);
            }
            dshift[b * ld + d] += s_shift;
            dscale[b * ld + d] += s_scale;
        }
}

void kb_gated_add_fwd_ref(float *out, const float *x, const float *gate, const float *y, int64_t ld, int64_t B, int64_t T,
                          int64_t D) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++) {
                int64_t i = (b * T + t) * D + d;
                out[i] = x[i] + gate[b * ld + d] * y[i];
            }
}

void kb_gated_add_bwd_ref(float *dy, float *dgate, const float *dx, const float *y, const float *gate, int64_t ld,
                          int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < D; d++) {
            float s = 0.0f;
            for (int64_t t = 0; t < T; t++) {
                int64_t i = (b * T + t) * D + d;
                float g = gate[b * ld + d] * dx[i];
                dy[i] = dy_mode == KB_GRAD_SET ? g : dy[i] + g;
                s += dx[i] * y[i];
            }
            dgate[b * ld + d] += s;
        }
}

void kb_patchify_ref(float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p,
                     kb_patch_order order) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++)
                    tokens[kb_patch_token_index(order, C, H, W, p, b, c, y, x)] = img[((b * C + c) * H + y) * W + x];
}

void kb_unpatchify_ref(float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p,
                       kb_patch_order order) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++)
                    img[((b * C + c) * H + y) * W + x] = tokens[kb_patch_token_index(order, C, H, W, p, b, c, y, x)];
}

void kb_embedding_fwd_ref(float *out, const float *table, const int32_t *ids, int64_t B, int64_t D) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < D; d++) out[b * D + d] = table[(int64_t)ids[b] * D + d];
}

void kb_embedding_bwd_ref(float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < D; d++) dtable[(int64_t)ids[b] * D + d] += dout[b * D + d];
}

float kb_timestep_freq_at(int64_t i, int64_t half, float max_period) {
    /* torch: exp(-math.log(max_period) * arange(half, float32) / half), all in float32 */
    float neg_log = (float)(-log((double)max_period));
    return expf(neg_log * (float)i / (float)half);
}

void kb_timestep_freq_ref(float *out, const float *t, int64_t B, int64_t dim, float max_period) {
    int64_t half = dim / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < half; i++) {
            float arg = t[b] * kb_timestep_freq_at(i, half, max_period);
            out[b * dim + i] = cosf(arg);
            out[b * dim + half + i] = sinf(arg);
        }
}
