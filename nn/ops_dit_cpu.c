/* Fast CPU versions of the DiT ops: OpenMP over independent rows, inner loops
 * over the contiguous feature dim. Every reduction sums in the same order as
 * the reference (t ascending, b ascending), so results equal the reference
 * bit for bit whatever the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cpu_clones.h"
#include "nn/ops_dit.h"
#include "nn/ops_dit_index.h"

KB_SIMD_CLONES void kb_modulate_fwd_cpu(int threads, float *out, const float *x, const float *shift, const float *scale, int64_t ld,
                         int64_t B, int64_t T, int64_t D) {
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *sh = shift + b * ld, *sc = scale + b * ld;
            const float *xr = x + (b * T + t) * D;
            float *o = out + (b * T + t) * D;
            for (int64_t d = 0; d < D; d++) o[d] = xr[d] * (1.0f + sc[d]) + sh[d];
        }
}

KB_SIMD_CLONES void kb_modulate_bwd_cpu(int threads, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                         const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode) {
    int set = dx_mode == KB_GRAD_SET;
#pragma omp parallel num_threads(threads)
    {
        float *acc = malloc(2 * (size_t)(D ? D : 1) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            float *s_shift = acc, *s_scale = acc + D;
            memset(acc, 0, 2 * (size_t)D * sizeof(float));
            const float *sc = scale + b * ld;
            for (int64_t t = 0; t < T; t++) {
                int64_t row = (b * T + t) * D;
                for (int64_t d = 0; d < D; d++) {
                    float g = dout[row + d] * (1.0f + sc[d]);
                    dx[row + d] = set ? g : dx[row + d] + g;
                    s_shift[d] += dout[row + d];
                    s_scale[d] += dout[row + d] * x[row + d];
                }
            }
            for (int64_t d = 0; d < D; d++) {
                dshift[b * ld + d] += s_shift[d];
                dscale[b * ld + d] += s_scale[d];
            }
        }
        free(acc);
    }
}

KB_SIMD_CLONES void kb_gated_add_fwd_cpu(int threads, float *out, const float *x, const float *gate, const float *y, int64_t ld,
                          int64_t B, int64_t T, int64_t D) {
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *g = gate + b * ld;
            int64_t row = (b * T + t) * D;
            for (int64_t d = 0; d < D; d++) out[row + d] = x[row + d] + g[d] * y[row + d];
        }
}

KB_SIMD_CLONES void kb_gated_add_bwd_cpu(int threads, float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                          int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode) {
    int set = dy_mode == KB_GRAD_SET;
#pragma omp parallel num_threads(threads)
    {
        float *acc = malloc((size_t)(D ? D : 1) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            memset(acc, 0, (size_t)D * sizeof(float));
            const float *g = gate + b * ld;
            for (int64_t t = 0; t < T; t++) {
                int64_t row = (b * T + t) * D;
                for (int64_t d = 0; d < D; d++) {
                    float v = g[d] * dx[row + d];
                    dy[row + d] = set ? v : dy[row + d] + v;
                    acc[d] += dx[row + d] * y[row + d];
                }
            }
            for (int64_t d = 0; d < D; d++) dgate[b * ld + d] += acc[d];
        }
        free(acc);
    }
}

void kb_patchify_cpu(int threads, float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t p, kb_patch_order order) {
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++)
                    tokens[kb_patch_token_index(order, C, H, W, p, b, c, y, x)] = img[((b * C + c) * H + y) * W + x];
}

void kb_unpatchify_cpu(int threads, float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W,
                       int64_t p, kb_patch_order order) {
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++)
                    img[((b * C + c) * H + y) * W + x] = tokens[kb_patch_token_index(order, C, H, W, p, b, c, y, x)];
}

void kb_embedding_fwd_cpu(int threads, float *out, const float *table, const int32_t *ids, int64_t B, int64_t D) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < B; b++) memcpy(out + b * D, table + (int64_t)ids[b] * D, (size_t)D * sizeof(float));
}

void kb_embedding_bwd_cpu(int threads, float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D) {
    /* Parallel over feature columns; each column sums the batch in order. */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t d = 0; d < D; d++)
        for (int64_t b = 0; b < B; b++) dtable[(int64_t)ids[b] * D + d] += dout[b * D + d];
}

void kb_timestep_freq_cpu(int threads, float *out, const float *t, int64_t B, int64_t dim, float max_period) {
    (void)threads; /* B x dim is tiny (256 x 256 at most); threads would cost more than they save */
    kb_timestep_freq_ref(out, t, B, dim, max_period);
}
