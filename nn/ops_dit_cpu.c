/* Fast CPU versions of the DiT ops: OpenMP over independent rows, inner loops
 * over the contiguous feature dim. Every reduction sums in the same order as
 * the reference (t ascending, b ascending), so results equal the reference
 * bit for bit whatever the thread count; the one exception is the LayerNorm
 * row statistics of the fused LayerNorm + modulation, which are the SIMD
 * sums of kb_layernorm_*_cpu (nn/cpu_rows.h), equal to those bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "nn/cpu_clones.h"
#include "nn/cpu_rows.h"
#include "nn/ops_dit.h"
#include "nn/ops_dit_index.h"
#include "nn/ops_scalar.h"

/* Per-thread buffers of n floats each for a team of `threads` (at most `work`). */
static float *team_buffers(int threads, int64_t work, int64_t n, int *nt, const char *op, kb_err *err) {
    *nt = threads < 1 ? 1 : (int64_t)threads > work ? (int)(work > 0 ? work : 1) : threads;
    float *p = malloc((size_t)*nt * (size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) kb_fail(err, "%s: out of memory for %d row buffers of %lld floats", op, *nt, (long long)n);
    return p;
}

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
    int set = dx_mode == KB_GRAD_SET, nt;
    if (B == 0 || D == 0) return;
    kb_err err = {0};
    float *bufs = team_buffers(threads, B, 2 * D, &nt, "kb_modulate_bwd", &err);
    if (!bufs) { /* out of memory: the reference needs none and sums in the same order */
        kb_modulate_bwd_ref(dx, dshift, dscale, dout, x, scale, ld, B, T, D, dx_mode);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        float *acc = bufs + (size_t)omp_get_thread_num() * 2 * (size_t)D;
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
    }
    free(bufs);
}

/* One row: LayerNorm by nn/cpu_rows.h's row kernel (the one of
 * kb_layernorm_fwd_cpu) into o, then the modulation while the row is in
 * cache, in place in o or rounded to bf16 into o16 when that is set:
 * kb_layernorm_fwd_cpu then kb_modulate_fwd_cpu, bit for bit. */
KB_CLONE_INLINE void ln_modulate_row(float *o, uint16_t *o16, float *mean, float *rstd, const float *x,
                                     const float *sh, const float *sc, int64_t D, float eps) {
    layernorm_row(o, mean, rstd, x, NULL, NULL, D, eps);
    if (o16)
        for (int64_t d = 0; d < D; d++) o16[d] = kb_sc_f32_to_bf16(o[d] * (1.0f + sc[d]) + sh[d]);
    else
        for (int64_t d = 0; d < D; d++) o[d] = o[d] * (1.0f + sc[d]) + sh[d];
}

/* One row at a time (ln_modulate_row). */
KB_SIMD_CLONES void kb_ln_modulate_fwd_cpu(int threads, float *out, float *mean, float *rstd, const float *x,
                                           const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T,
                                           int64_t D, float eps) {
    if (D == 0) return;
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t r = b * T + t;
            ln_modulate_row(out + r * D, NULL, mean + r, rstd + r, x + r * D, shift + b * ld, scale + b * ld, D, eps);
        }
}

/* Per sample (one thread each): for every row, g = dout*(1+scale) into a row
 * buffer, the shift/scale sums over t in the order of kb_modulate_bwd_cpu,
 * then kb_layernorm_bwd_cpu's row kernel on g. Bit for bit the two separate
 * ops, without writing g (or reading LN(x)) through memory. dout is fp32, or
 * (dout16, bf16 bits) widened a row at a time into the thread's 4th buffer.
 * bufs: 3 (fp32 dout) or 4 (bf16) row buffers of D floats per thread. */
KB_SIMD_CLONES static void ln_modulate_bwd_samples(int nt, float *bufs, float *dx, float *dshift, float *dscale,
                                                   const float *dout, const uint16_t *dout16, const float *x,
                                                   const float *mean, const float *rstd, const float *scale,
                                                   int64_t ld, int64_t B, int64_t T, int64_t D) {
    size_t per = (dout16 ? 4 : 3) * (size_t)D;
#pragma omp parallel num_threads(nt)
    {
        float *acc = bufs + (size_t)omp_get_thread_num() * per;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            float *s_shift = acc, *s_scale = acc + D, *g = acc + 2 * D, *wide = acc + 3 * D;
            memset(acc, 0, 2 * (size_t)D * sizeof(float));
            const float *sc = scale + b * ld;
            for (int64_t t = 0; t < T; t++) {
                int64_t r = b * T + t;
                const float *dy = dout16 ? wide : dout + r * D, *xr = x + r * D;
                if (dout16)
                    for (int64_t d = 0; d < D; d++) wide[d] = kb_sc_bf16_to_f32(dout16[r * D + d]);
                float m = mean[r], rs = rstd[r];
                for (int64_t d = 0; d < D; d++) {
                    g[d] = dy[d] * (1.0f + sc[d]);
                    s_shift[d] += dy[d];
                    s_scale[d] += dy[d] * ((xr[d] - m) * rs);
                }
                layernorm_bwd_row(dx + r * D, NULL, NULL, g, xr, NULL, m, rs, D);
            }
            for (int64_t d = 0; d < D; d++) {
                dshift[b * ld + d] += s_shift[d];
                dscale[b * ld + d] += s_scale[d];
            }
        }
    }
}

void kb_ln_modulate_bwd_cpu(int threads, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                            const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                            int64_t D) {
    if (D == 0 || B == 0) return;
    int nt;
    kb_err err = {0};
    float *bufs = team_buffers(threads, B, 3 * D, &nt, "kb_ln_modulate_bwd", &err);
    if (!bufs) { /* out of memory: the reference needs none (same sums up to SIMD order) */
        kb_ln_modulate_bwd_ref(dx, dshift, dscale, dout, x, mean, rstd, scale, ld, B, T, D);
        return;
    }
    ln_modulate_bwd_samples(nt, bufs, dx, dshift, dscale, dout, NULL, x, mean, rstd, scale, ld, B, T, D);
    free(bufs);
}

int kb_ln_modulate_bwd_x16_cpu(int threads, float *dx, float *dshift, float *dscale, const uint16_t *dout16,
                               const float *x, const float *mean, const float *rstd, const float *scale, int64_t ld,
                               int64_t B, int64_t T, int64_t D, kb_err *err) {
    if (D == 0 || B == 0) return 0;
    int nt;
    float *bufs = team_buffers(threads, B, 4 * D, &nt, "kb_ln_modulate_bwd_x16", err);
    if (!bufs) return -1;
    ln_modulate_bwd_samples(nt, bufs, dx, dshift, dscale, NULL, dout16, x, mean, rstd, scale, ld, B, T, D);
    free(bufs);
    return 0;
}

/* ln_modulate_row through a row buffer, rounded to bf16 on the way out. */
KB_SIMD_CLONES int kb_ln_modulate_fwd_x16_cpu(int threads, uint16_t *out16, float *mean, float *rstd, const float *x,
                                              const float *shift, const float *scale, int64_t ld, int64_t B,
                                              int64_t T, int64_t D, float eps, kb_err *err) {
    if (D == 0 || B * T == 0) return 0;
    int nt;
    float *bufs = team_buffers(threads, B * T, D, &nt, "kb_ln_modulate_fwd_x16", err);
    if (!bufs) return -1;
#pragma omp parallel num_threads(nt)
    {
        float *o = bufs + (size_t)omp_get_thread_num() * (size_t)D;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < B * T; r++)
            ln_modulate_row(o, out16 + r * D, mean + r, rstd + r, x + r * D, shift + (r / T) * ld, scale + (r / T) * ld,
                            D, eps);
    }
    free(bufs);
    return 0;
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

/* Per row: kb_gated_add_fwd_cpu's statement into res, then ln_modulate_row
 * on it while it is in cache: the two ops in sequence, bit for bit. */
KB_SIMD_CLONES int kb_gated_add_ln_modulate_fwd_cpu(int threads, float *res, float *out, uint16_t *out16, float *mean,
                                                    float *rstd, const float *x, const float *gate, const float *y,
                                                    const uint16_t *y16, int64_t gate_ld, const float *shift,
                                                    const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D,
                                                    float eps, kb_err *err) {
    if (D == 0 || B * T == 0) return 0;
    int nt = threads < 1 ? 1 : threads;
    float *bufs = out16 ? team_buffers(threads, B * T, D, &nt, "kb_gated_add_ln_modulate_fwd", err) : NULL;
    if (out16 && !bufs) return -1;
#pragma omp parallel num_threads(nt)
    {
        float *buf = bufs ? bufs + (size_t)omp_get_thread_num() * (size_t)D : NULL;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < B * T; r++) {
            const float *g = gate + (r / T) * gate_ld;
            float *xr = res + r * D;
            if (y16)
                for (int64_t d = 0; d < D; d++) xr[d] = x[r * D + d] + g[d] * kb_sc_bf16_to_f32(y16[r * D + d]);
            else
                for (int64_t d = 0; d < D; d++) xr[d] = x[r * D + d] + g[d] * y[r * D + d];
            ln_modulate_row(buf ? buf : out + r * D, buf ? out16 + r * D : NULL, mean + r, rstd + r, xr,
                            shift + (r / T) * ld, scale + (r / T) * ld, D, eps);
        }
    }
    free(bufs);
    return 0;
}

/* One sample of the gated residual's backward: dy = gate * dx (into dy as
 * dy_mode says, or rounded into dy16 when that is set), dgate += sum_t dx * y
 * in t order through the row acc (y fp32, or y16 widened). */
KB_CLONE_INLINE void gated_add_bwd_sample(float *dy, uint16_t *dy16, int set, float *dgate, const float *dx,
                                          const float *y, const uint16_t *y16, const float *g, int64_t T, int64_t D,
                                          float *acc) {
    memset(acc, 0, (size_t)D * sizeof(float));
    for (int64_t t = 0; t < T; t++) {
        int64_t row = t * D;
        for (int64_t d = 0; d < D; d++) {
            float v = g[d] * dx[row + d];
            if (dy16) dy16[row + d] = kb_sc_f32_to_bf16(v);
            else dy[row + d] = set ? v : dy[row + d] + v;
        }
        if (y16)
            for (int64_t d = 0; d < D; d++) acc[d] += dx[row + d] * kb_sc_bf16_to_f32(y16[row + d]);
        else
            for (int64_t d = 0; d < D; d++) acc[d] += dx[row + d] * y[row + d];
    }
    for (int64_t d = 0; d < D; d++) dgate[d] += acc[d];
}

/* Per sample (one thread each), through per-thread row buffers; -1 with err
 * set when those cannot be had. */
KB_CLONE_INLINE int gated_add_bwd_any(int threads, float *dy, uint16_t *dy16, int set, float *dgate, const float *dx,
                                     const float *y, const uint16_t *y16, const float *gate, int64_t ld, int64_t B,
                                     int64_t T, int64_t D, kb_err *err) {
    if (D == 0 || B == 0) return 0;
    int nt;
    float *bufs = team_buffers(threads, B, D, &nt, dy16 ? "kb_gated_add_bwd_x16" : "kb_gated_add_bwd", err);
    if (!bufs) return -1;
#pragma omp parallel num_threads(nt)
    {
        float *acc = bufs + (size_t)omp_get_thread_num() * (size_t)D;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++)
            gated_add_bwd_sample(dy ? dy + b * T * D : NULL, dy16 ? dy16 + b * T * D : NULL, set, dgate + b * ld,
                                 dx + b * T * D, y ? y + b * T * D : NULL, y16 ? y16 + b * T * D : NULL,
                                 gate + b * ld, T, D, acc);
    }
    free(bufs);
    return 0;
}

KB_SIMD_CLONES void kb_gated_add_bwd_cpu(int threads, float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                          int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode) {
    kb_err err = {0};
    if (gated_add_bwd_any(threads, dy, NULL, dy_mode == KB_GRAD_SET, dgate, dx, y, NULL, gate, ld, B, T, D, &err))
        kb_gated_add_bwd_ref(dy, dgate, dx, y, gate, ld, B, T, D, dy_mode); /* out of memory: the same sums, slowly */
}

/* kb_gated_add_bwd_cpu with KB_GRAD_SET, dy rounded to bf16; dgate from the fp32 terms as there. */
KB_SIMD_CLONES int kb_gated_add_bwd_x16_cpu(int threads, uint16_t *dy16, float *dgate, const float *dx, const float *y,
                                            const uint16_t *y16, const float *gate, int64_t ld, int64_t B, int64_t T,
                                            int64_t D, kb_err *err) {
    return gated_add_bwd_any(threads, NULL, dy16, 1, dgate, dx, y, y16, gate, ld, B, T, D, err);
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
