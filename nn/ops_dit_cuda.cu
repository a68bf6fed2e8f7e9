/* CUDA versions of the DiT ops (nn/ops_dit.h). Reductions over tokens run one
 * thread per (sample, feature) summing t in ascending order, like the CPU
 * reference (the fused LayerNorm + modulation backward sums them in fixed
 * 16-token chunks, then the chunks in order), so results are deterministic;
 * products and sums use explicit round-to-nearest intrinsics so nvcc does not
 * contract them into FMAs the reference does not have. */
#include "nn/cuda_common.cuh"

extern "C" {
#include "nn/ops_dit.h"
}
#include "nn/ops_dit_index.h"
#include "nn/ops_scalar.h"


__global__ void modulate_fwd_kernel(float *out, const float *x, const float *shift, const float *scale, int64_t ld,
                                    int64_t T, int64_t D, int64_t n) {
    KB_GRID_STRIDE(i, n) {
        int64_t b = i / (T * D), d = i % D;
        out[i] = __fadd_rn(__fmul_rn(x[i], __fadd_rn(1.0f, scale[b * ld + d])), shift[b * ld + d]);
    }
}

__global__ void modulate_bwd_kernel(float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                                    const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, int set) {
    KB_GRID_STRIDE(j, B * D) {
        int64_t b = j / D, d = j % D;
        float one_s = __fadd_rn(1.0f, scale[b * ld + d]), s_shift = 0.0f, s_scale = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = (b * T + t) * D + d;
            float g = __fmul_rn(dout[i], one_s);
            dx[i] = set ? g : __fadd_rn(dx[i], g);
            s_shift = __fadd_rn(s_shift, dout[i]);
            s_scale = __fadd_rn(s_scale, __fmul_rn(dout[i], x[i]));
        }
        dshift[b * ld + d] = __fadd_rn(dshift[b * ld + d], s_shift);
        dscale[b * ld + d] = __fadd_rn(dscale[b * ld + d], s_scale);
    }
}

__global__ void gated_add_fwd_kernel(float *out, const float *x, const float *gate, const float *y, int64_t ld,
                                     int64_t T, int64_t D, int64_t n) {
    KB_GRID_STRIDE(i, n) {
        int64_t b = i / (T * D), d = i % D;
        out[i] = __fadd_rn(x[i], __fmul_rn(gate[b * ld + d], y[i]));
    }
}

/* gated_add_bwd_kernel with KB_GRAD_SET, dy stored as bf16; y fp32 or bf16 bits (Y). */
template <typename Y>
__global__ void gated_add_bwd_x16_kernel(uint16_t *dy16, float *dgate, const float *dx, const Y *y,
                                         const float *gate, int64_t ld, int64_t B, int64_t T, int64_t D) {
    KB_GRID_STRIDE(j, B * D) {
        int64_t b = j / D, d = j % D;
        float g = gate[b * ld + d], s = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = (b * T + t) * D + d;
            dy16[i] = kb_sc_f32_to_bf16(__fmul_rn(g, dx[i]));
            s = __fadd_rn(s, __fmul_rn(dx[i], kb_elem_f32(y[i])));
        }
        dgate[b * ld + d] = __fadd_rn(dgate[b * ld + d], s);
    }
}

__global__ void gated_add_bwd_kernel(float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                                     int64_t ld, int64_t B, int64_t T, int64_t D, int set) {
    KB_GRID_STRIDE(j, B * D) {
        int64_t b = j / D, d = j % D;
        float g = gate[b * ld + d], s = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = (b * T + t) * D + d;
            float v = __fmul_rn(g, dx[i]);
            dy[i] = set ? v : __fadd_rn(dy[i], v);
            s = __fadd_rn(s, __fmul_rn(dx[i], y[i]));
        }
        dgate[b * ld + d] = __fadd_rn(dgate[b * ld + d], s);
    }
}

/* One thread per image element; to_tokens selects the direction. */
__global__ void patch_kernel(float *tokens, float *img, const float *src, int64_t B, int64_t C, int64_t H, int64_t W,
                             int64_t p, kb_patch_order order, int to_tokens) {
    KB_GRID_STRIDE(i, B * C * H * W) {
        int64_t x = i % W, y = (i / W) % H, c = (i / (W * H)) % C, b = i / (W * H * C);
        int64_t k = kb_patch_token_index(order, C, H, W, p, b, c, y, x);
        if (to_tokens) tokens[k] = src[i];
        else img[i] = src[k];
    }
}

__global__ void embedding_fwd_kernel(float *out, const float *table, const int32_t *ids, int64_t B, int64_t D) {
    KB_GRID_STRIDE(i, B * D) out[i] = table[(int64_t)ids[i / D] * D + i % D];
}

__global__ void embedding_bwd_kernel(float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D) {
    KB_GRID_STRIDE(d, D) {
        for (int64_t b = 0; b < B; b++) {
            int64_t k = (int64_t)ids[b] * D + d;
            dtable[k] = __fadd_rn(dtable[k], dout[b * D + d]);
        }
    }
}

__global__ void timestep_freq_kernel(float *out, const float *t, const float *freq, int64_t B, int64_t half) {
    KB_GRID_STRIDE(j, B * half) {
        int64_t b = j / half, i = j % half;
        float arg = __fmul_rn(t[b], freq[i]);
        out[b * 2 * half + i] = cosf(arg);
        out[b * 2 * half + half + i] = sinf(arg);
    }
}

/* LayerNorm (no affine) fused with the modulation of one row x, by the whole
 * block: the statistics of layernorm_fwd_kernel (nn/ops_cuda.cu;
 * kb_row_stats) and the statements of modulate_fwd_kernel in one pass, so the
 * output has their bits. Each thread reads only the columns c = threadIdx.x
 * + k blockDim.x of x, so a caller's own writes to those are seen. */
template <typename O>
__device__ void ln_modulate_row(O *o, float *mean, float *rstd, const float *x, const float *sh, const float *sc,
                                int64_t cols, float eps, double *shm) {
    float m, rs;
    kb_row_stats(x, cols, eps, shm, &m, &rs);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        float y = __fmul_rn(__fsub_rn(x[c], m), rs);
        kb_store_elem(o + c, __fadd_rn(__fmul_rn(y, __fadd_rn(1.0f, sc[c])), sh[c]));
    }
    if (threadIdx.x == 0) *mean = m, *rstd = rs;
}

/* One block per row. */
template <typename O>
__global__ void ln_modulate_fwd_kernel(O *out, float *mean, float *rstd, const float *inp, const float *shift,
                                       const float *scale, int64_t ld, int64_t T, int64_t rows, int64_t cols,
                                       float eps) {
    __shared__ double shm[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
        ln_modulate_row(out + r * cols, mean + r, rstd + r, inp + r * cols, shift + (r / T) * ld, scale + (r / T) * ld,
                        cols, eps, shm);
}

/* gated_add_fwd_kernel's statement for one row into res (each thread its own
 * columns; y fp32 or bf16 bits, Y), then ln_modulate_row on it. */
template <typename O, typename Y>
__global__ void gated_add_ln_modulate_fwd_kernel(float *res, O *out, float *mean, float *rstd, const float *x,
                                                 const float *gate, const Y *y, int64_t gate_ld,
                                                 const float *shift, const float *scale, int64_t ld, int64_t T,
                                                 int64_t rows, int64_t cols, float eps) {
    __shared__ double shm[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *g = gate + (r / T) * gate_ld;
        float *xr = res + r * cols;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
            xr[c] = __fadd_rn(x[r * cols + c], __fmul_rn(g[c], kb_elem_f32(y[r * cols + c])));
        ln_modulate_row(out + r * cols, mean + r, rstd + r, xr, shift + (r / T) * ld, scale + (r / T) * ld, cols, eps,
                        shm);
    }
}

/* Tokens per block of the fused backward: a constant, so the grouping of the
 * sums over t (and thus the result) is the same on every GPU. */
#define KB_LNMOD_ROWS 16

/* Backward, one block per (sample, chunk of KB_LNMOD_ROWS tokens). Per row:
 * g = dout*(1+scale) and xhat recomputed, layernorm_bwd_dinp_kernel's row
 * (kb_ln_bwd_row) on g (so dx has the bits of modulate_bwd then
 * layernorm_bwd); meanwhile every thread sums dout and dout*xhat over the
 * chunk's rows for its own columns (shared memory, 2*D floats: no other
 * thread touches them, so no barrier), written to part[chunk][2][D]. */
template <typename E> /* dout's element: float, or uint16_t (bf16 bits, widened) */
__global__ void ln_modulate_bwd_kernel(float *dx, float *part, const E *dout, const float *x, const float *mean,
                                       const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                                       int64_t D, int64_t nch) {
    extern __shared__ float colsum[];
    __shared__ double shm[32];
    for (int64_t blk = blockIdx.x; blk < B * nch; blk += gridDim.x) {
        int64_t b = blk / nch, t0 = (blk % nch) * KB_LNMOD_ROWS;
        int64_t t1 = t0 + KB_LNMOD_ROWS < T ? t0 + KB_LNMOD_ROWS : T;
        const float *sc = scale + b * ld;
        for (int64_t c = threadIdx.x; c < D; c += blockDim.x) colsum[c] = 0.0f, colsum[D + c] = 0.0f;
        for (int64_t t = t0; t < t1; t++) {
            int64_t r = b * T + t;
            const E *dy = dout + r * D;
            kb_ln_bwd_row(dx + r * D, x + r * D, mean[r], rstd[r], D, shm,
                          [&](int64_t c) { return __fmul_rn(kb_elem_f32(dy[c]), __fadd_rn(1.0f, sc[c])); },
                          [&](int64_t c, float xhat) {
                              float g = kb_elem_f32(dy[c]);
                              colsum[c] = __fadd_rn(colsum[c], g);
                              colsum[D + c] = __fadd_rn(colsum[D + c], __fmul_rn(g, xhat));
                          });
        }
        float *p = part + blk * 2 * D;
        for (int64_t c = threadIdx.x; c < D; c += blockDim.x) p[c] = colsum[c], p[D + c] = colsum[D + c];
    }
}

/* dshift/dscale[b, d] += the chunks' partial sums, in chunk order. */
__global__ void ln_modulate_bwd_finish_kernel(float *dshift, float *dscale, const float *part, int64_t ld, int64_t B,
                                              int64_t D, int64_t nch) {
    KB_GRID_STRIDE(j, B * D) {
        int64_t b = j / D, d = j % D;
        float s_shift = 0.0f, s_scale = 0.0f;
        for (int64_t ch = 0; ch < nch; ch++) {
            const float *p = part + (b * nch + ch) * 2 * D;
            s_shift = __fadd_rn(s_shift, p[d]);
            s_scale = __fadd_rn(s_scale, p[D + d]);
        }
        dshift[b * ld + d] = __fadd_rn(dshift[b * ld + d], s_shift);
        dscale[b * ld + d] = __fadd_rn(dscale[b * ld + d], s_scale);
    }
}

#define LAUNCH(op, kernel, n, ...)                                                                                 \
    do {                                                                                                           \
        if ((n) > 0) {                                                                                             \
            kernel<<<kb_grid_1d(n), KB_CUDA_BLOCK, 0, ctx->cuda->stream>>>(__VA_ARGS__);                           \
            KB_LAUNCH_CHECK(op, #kernel);                                                                          \
        }                                                                                                          \
        return 0;                                                                                                  \
    } while (0)

/* The launch of one instantiation (output type O, y type Y). */
template <typename O, typename Y>
static void gated_add_ln_modulate_launch(kb_cuda_state *st, float *res, O *out, float *mean, float *rstd,
                                         const float *x, const float *gate, const Y *y, int64_t gate_ld,
                                         const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T,
                                         int64_t D, float eps) {
    gated_add_ln_modulate_fwd_kernel<O, Y><<<kb_grid_rows(B * T), kb_row_block(D), 0, st->stream>>>(
        res, out, mean, rstd, x, gate, y, gate_ld, shift, scale, ld, T, B * T, D, eps);
}

template <typename E>
static int ln_modulate_bwd_any(kb_ctx *ctx, const char *op, float *dx, float *dshift, float *dscale, const E *dout,
                               const float *x, const float *mean, const float *rstd, const float *scale, int64_t ld,
                               int64_t B, int64_t T, int64_t D, kb_err *err) {
    kb_cuda_state *st = NULL;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (B * T == 0 || D == 0) return 0;
    /* 48 KiB per block without an opt-in, less the kernel's own 32 doubles: width <= 6112 */
    size_t smem = 2 * (size_t)D * sizeof(float), limit = 48 * 1024 - 32 * sizeof(double);
    if (smem > limit)
        return kb_fail(err, "%s: width %lld needs %zu bytes of shared memory per block (at most %zu: width <= %zu)", op,
                       (long long)D, smem, limit, limit / (2 * sizeof(float)));
    int64_t nch = (T + KB_LNMOD_ROWS - 1) / KB_LNMOD_ROWS;
    float *part = (float *)kb_cuda_scratch(st, (size_t)(B * nch) * smem, op, err);
    if (!part) return -1;
    ln_modulate_bwd_kernel<E><<<kb_grid_rows(B * nch), kb_row_block(D), smem, st->stream>>>(dx, part, dout, x, mean,
                                                                                           rstd, scale, ld, B, T, D,
                                                                                           nch);
    KB_LAUNCH_CHECK(op, "ln_modulate_bwd_kernel");
    ln_modulate_bwd_finish_kernel<<<kb_grid_1d(B * D), KB_CUDA_BLOCK, 0, st->stream>>>(dshift, dscale, part, ld, B, D,
                                                                                       nch);
    KB_LAUNCH_CHECK(op, "ln_modulate_bwd_finish_kernel");
    return 0;
}

extern "C" {

int kb_modulate_fwd_cuda(kb_ctx *ctx, float *out, const float *x, const float *shift, const float *scale, int64_t ld,
                         int64_t B, int64_t T, int64_t D, kb_err *err) {
    LAUNCH("kb_modulate_fwd", modulate_fwd_kernel, B * T * D, out, x, shift, scale, ld, T, D, B * T * D);
}

int kb_modulate_bwd_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                         const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode,
                         kb_err *err) {
    LAUNCH("kb_modulate_bwd", modulate_bwd_kernel, B * D, dx, dshift, dscale, dout, x, scale, ld, B, T, D,
           dx_mode == KB_GRAD_SET);
}

int kb_ln_modulate_fwd_cuda(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *x, const float *shift,
                            const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, float eps, kb_err *err) {
    const char *op = "kb_ln_modulate_fwd";
    kb_cuda_state *st = NULL;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (B * T == 0 || D == 0) return 0;
    ln_modulate_fwd_kernel<float><<<kb_grid_rows(B * T), kb_row_block(D), 0, st->stream>>>(
        out, mean, rstd, x, shift, scale, ld, T, B * T, D, eps);
    KB_LAUNCH_CHECK(op, "ln_modulate_fwd_kernel");
    return 0;
}

int kb_ln_modulate_fwd_x16_cuda(kb_ctx *ctx, uint16_t *out16, float *mean, float *rstd, const float *x,
                                const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D,
                                float eps, kb_err *err) {
    const char *op = "kb_ln_modulate_fwd_x16";
    kb_cuda_state *st = NULL;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (B * T == 0 || D == 0) return 0;
    ln_modulate_fwd_kernel<uint16_t><<<kb_grid_rows(B * T), kb_row_block(D), 0, st->stream>>>(
        out16, mean, rstd, x, shift, scale, ld, T, B * T, D, eps);
    KB_LAUNCH_CHECK(op, "ln_modulate_fwd_kernel (bf16 out)");
    return 0;
}

int kb_gated_add_ln_modulate_fwd_cuda(kb_ctx *ctx, float *res, float *out, uint16_t *out16, float *mean, float *rstd,
                                      const float *x, const float *gate, const float *y, const uint16_t *y16,
                                      int64_t gate_ld, const float *shift, const float *scale, int64_t ld, int64_t B,
                                      int64_t T, int64_t D, float eps, kb_err *err) {
    const char *op = "kb_gated_add_ln_modulate_fwd";
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (B * T == 0 || D == 0) return 0;
    if (out16 && y16)
        gated_add_ln_modulate_launch(st, res, out16, mean, rstd, x, gate, y16, gate_ld, shift, scale, ld, B, T, D, eps);
    else if (out16)
        gated_add_ln_modulate_launch(st, res, out16, mean, rstd, x, gate, y, gate_ld, shift, scale, ld, B, T, D, eps);
    else if (y16)
        gated_add_ln_modulate_launch(st, res, out, mean, rstd, x, gate, y16, gate_ld, shift, scale, ld, B, T, D, eps);
    else
        gated_add_ln_modulate_launch(st, res, out, mean, rstd, x, gate, y, gate_ld, shift, scale, ld, B, T, D, eps);
    KB_LAUNCH_CHECK(op, "gated_add_ln_modulate_fwd_kernel");
    return 0;
}

int kb_gated_add_bwd_x16_cuda(kb_ctx *ctx, uint16_t *dy16, float *dgate, const float *dx, const float *y,
                              const uint16_t *y16, const float *gate, int64_t ld, int64_t B, int64_t T, int64_t D,
                              kb_err *err) {
    const char *op = "kb_gated_add_bwd_x16";
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (B * D == 0) return 0;
    if (y16)
        gated_add_bwd_x16_kernel<uint16_t><<<kb_grid_1d(B * D), KB_CUDA_BLOCK, 0, st->stream>>>(dy16, dgate, dx, y16,
                                                                                              gate, ld, B, T, D);
    else
        gated_add_bwd_x16_kernel<float><<<kb_grid_1d(B * D), KB_CUDA_BLOCK, 0, st->stream>>>(dy16, dgate, dx, y, gate,
                                                                                           ld, B, T, D);
    KB_LAUNCH_CHECK(op, "gated_add_bwd_x16_kernel");
    return 0;
}

int kb_ln_modulate_bwd_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                            const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                            int64_t D, kb_err *err) {
    return ln_modulate_bwd_any(ctx, "kb_ln_modulate_bwd", dx, dshift, dscale, dout, x, mean, rstd, scale, ld, B, T, D,
                               err);
}

int kb_ln_modulate_bwd_x16_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const uint16_t *dout16,
                                const float *x, const float *mean, const float *rstd, const float *scale, int64_t ld,
                                int64_t B, int64_t T, int64_t D, kb_err *err) {
    return ln_modulate_bwd_any(ctx, "kb_ln_modulate_bwd_x16", dx, dshift, dscale, dout16, x, mean, rstd, scale, ld, B,
                               T, D, err);
}

int kb_gated_add_fwd_cuda(kb_ctx *ctx, float *out, const float *x, const float *gate, const float *y, int64_t ld,
                          int64_t B, int64_t T, int64_t D, kb_err *err) {
    LAUNCH("kb_gated_add_fwd", gated_add_fwd_kernel, B * T * D, out, x, gate, y, ld, T, D, B * T * D);
}

int kb_gated_add_bwd_cuda(kb_ctx *ctx, float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                          int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode, kb_err *err) {
    LAUNCH("kb_gated_add_bwd", gated_add_bwd_kernel, B * D, dy, dgate, dx, y, gate, ld, B, T, D, dy_mode == KB_GRAD_SET);
}

int kb_patchify_cuda(kb_ctx *ctx, float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t p, kb_patch_order order, kb_err *err) {
    LAUNCH("kb_patchify", patch_kernel, B * C * H * W, tokens, (float *)NULL, img, B, C, H, W, p, order, 1);
}

int kb_unpatchify_cuda(kb_ctx *ctx, float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W,
                       int64_t p, kb_patch_order order, kb_err *err) {
    LAUNCH("kb_unpatchify", patch_kernel, B * C * H * W, (float *)NULL, img, tokens, B, C, H, W, p, order, 0);
}

int kb_embedding_fwd_cuda(kb_ctx *ctx, float *out, const float *table, const int32_t *ids, int64_t B, int64_t D,
                          kb_err *err) {
    LAUNCH("kb_embedding_fwd", embedding_fwd_kernel, B * D, out, table, ids, B, D);
}

int kb_embedding_bwd_cuda(kb_ctx *ctx, float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D,
                          kb_err *err) {
    LAUNCH("kb_embedding_bwd", embedding_bwd_kernel, D, dtable, dout, ids, B, D);
}

/* The context's table of the `half` frequencies (from the host,
 * kb_timestep_freq_at: the device's expf is within 2 ulp of the C library's,
 * and at t = 999 one ulp of a frequency moves cos/sin by up to 6e-5; only
 * cosf/sinf then differ). Uploaded once: the copy waits for the stream, which
 * every forward would otherwise pay. */
static const float *freq_table(kb_cuda_state *st, int64_t half, float max_period, const char *op, kb_err *err) {
    if (st->tfreq && st->tfreq_half == half && st->tfreq_period == max_period) return st->tfreq;
    float *host = (float *)malloc((size_t)half * sizeof(float));
    if (!host) return kb_fail(err, "%s: out of host memory for %lld frequencies", op, (long long)half), nullptr;
    for (int64_t i = 0; i < half; i++) host[i] = kb_timestep_freq_at(i, half, max_period);
    cudaError_t e = cudaStreamSynchronize(st->stream); /* queued work may still read the old table */
    if (st->tfreq) {
        cudaError_t f = cudaFree(st->tfreq);
        if (e == cudaSuccess) e = f;
    }
    st->tfreq = nullptr;
    if (e == cudaSuccess) e = cudaMalloc(&st->tfreq, (size_t)half * sizeof(float));
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(st->tfreq, host, (size_t)half * sizeof(float), cudaMemcpyHostToDevice, st->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st->stream); /* host is freed next */
    free(host);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (st->tfreq) (void)cudaFree(st->tfreq);
        st->tfreq = nullptr;
        return kb_fail(err, "%s: the table of %lld frequencies on the GPU: %s", op, (long long)half,
                       cudaGetErrorString(e)), nullptr;
    }
    st->tfreq_half = half, st->tfreq_period = max_period;
    return st->tfreq;
}

int kb_timestep_freq_cuda(kb_ctx *ctx, float *out, const float *t, int64_t B, int64_t dim, float max_period,
                          kb_err *err) {
    const char *op = "kb_timestep_freq";
    int64_t half = dim / 2;
    if (B * half == 0) return 0;
    const float *freq = freq_table(ctx->cuda, half, max_period, op, err);
    if (!freq) return -1;
    LAUNCH(op, timestep_freq_kernel, B * half, out, t, freq, B, half);
}

} /* extern "C" */
