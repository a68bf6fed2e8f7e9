/* Ops specific to DiT layers (adaLN modulation, gated residuals, patchify,
 * label-embedding lookup, timestep frequencies). Same scheme as nn/ops.h:
 * kb_<op>(ctx, ..., err) dispatches on ctx->device to kb_<op>_cpu(threads, ...)
 * or kb_<op>_cuda(ctx, ..., err); kb_<op>_ref(...) is the plain reference;
 * backward functions accumulate (+=), or write over the input gradient when
 * given KB_GRAD_SET; per-sample sums (dshift, dscale, dgate) always add.
 *
 * Layouts: token activations are [B, T, D] row-major. Per-sample conditioning
 * vectors (shift, scale, gate) are rows of a [B, ld] matrix (the adaLN output
 * chunked along its columns), so they are passed as a pointer plus the row
 * stride ld. */
#ifndef KB_OPS_DIT_H
#define KB_OPS_DIT_H

#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Order of a patch vector's elements. CPQ = (channel, row, col): the flattened
 * Conv2d weight of DiT's patch embedding. PQC = (row, col, channel): DiT's
 * final-layer output, undone by unpatchify ('nhwpqc->nchpwq'). */
typedef enum { KB_PATCH_CPQ = 0, KB_PATCH_PQC = 1 } kb_patch_order;

/* out[b,t,d] = x[b,t,d] * (1 + scale[b,d]) + shift[b,d] */
int kb_modulate_fwd(kb_ctx *ctx, float *out, const float *x, const float *shift, const float *scale, int64_t ld,
                    int64_t B, int64_t T, int64_t D, kb_err *err);
/* dx += dout*(1+scale) (dx = ... with dx_mode KB_GRAD_SET); dshift[b,d] += sum_t dout;
 * dscale[b,d] += sum_t dout*x */
int kb_modulate_bwd(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                    const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode, kb_err *err);
/* LayerNorm without affine (eps) fused with the adaLN modulation:
 *   out[b,t,:] = LN(x[b,t,:]) * (1 + scale[b,:]) + shift[b,:]
 * with the row statistics written to mean/rstd [B*T] for the backward. It is
 * kb_layernorm_fwd followed by kb_modulate_fwd, bit for bit on each backend,
 * in one pass over memory and without keeping LN(x). */
int kb_ln_modulate_fwd(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *x, const float *shift,
                       const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, float eps, kb_err *err);
/* Its backward, with xhat = (x - mean) * rstd recomputed and g = dout*(1+scale):
 *   dx += LayerNorm backward of g (accumulates, as kb_layernorm_bwd),
 *   dshift[b,:] += sum_t dout,  dscale[b,:] += sum_t dout * xhat.
 * dx equals kb_modulate_bwd then kb_layernorm_bwd bit for bit; the sums over t
 * are the same on the CPU and grouped in chunks of rows on the GPU. */
int kb_ln_modulate_bwd(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                       const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                       int64_t D, kb_err *err);
/* The two ops that produce a linear layer's input, with that input stored as
 * bf16 (uint16_t bits of the round-to-nearest-even value, nn/ops.h "*_x16"):
 * out16 = bf16(kb_ln_modulate_fwd's out), bit for bit, mean/rstd as it;
 * dy16 = bf16(gate * dx) (kb_gated_add_bwd with KB_GRAD_SET, rounded), dgate
 * as it, bit for bit; y is fp32 or (y16, exactly one of them) the bf16
 * output of the linear layer, read widened. */
int kb_ln_modulate_fwd_x16(kb_ctx *ctx, uint16_t *out16, float *mean, float *rstd, const float *x, const float *shift,
                           const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, float eps, kb_err *err);
/* kb_ln_modulate_bwd with dout given as bf16 (the bf16 input gradient of the
 * linear layer that reads the modulated output), widened: bit for bit
 * kb_ln_modulate_bwd on an fp32 copy of it, on each backend. */
int kb_ln_modulate_bwd_x16(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const uint16_t *dout16, const float *x,
                           const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                           int64_t D, kb_err *err);
int kb_gated_add_bwd_x16(kb_ctx *ctx, uint16_t *dy16, float *dgate, const float *dx, const float *y,
                         const uint16_t *y16, const float *gate, int64_t ld, int64_t B, int64_t T, int64_t D,
                         kb_err *err);
/* out[b,t,d] = x[b,t,d] + gate[b,d] * y[b,t,d] (the gated residual; out may be x) */
int kb_gated_add_fwd(kb_ctx *ctx, float *out, const float *x, const float *gate, const float *y, int64_t ld, int64_t B,
                     int64_t T, int64_t D, kb_err *err);
/* The gated residual and the LayerNorm + modulation that reads it, in one
 * pass (the DiT's gate_msa residual and norm2; gate_mlp and the next block's
 * norm1 or the final layer's norm):
 *   res = x + gate * y  (kb_gated_add_fwd, gate rows gate_ld apart; res may be x;
 *                        y fp32, or y16: bf16 bits read widened, exactly one),
 *   out (fp32) or out16 (bf16; exactly one of them) = LN(res) * (1 + scale) + shift
 *   with mean/rstd, as kb_ln_modulate_fwd or kb_ln_modulate_fwd_x16 on res.
 * Bit for bit the two ops in sequence on each backend, reading res back
 * while it is in cache instead of from memory. */
int kb_gated_add_ln_modulate_fwd(kb_ctx *ctx, float *res, float *out, uint16_t *out16, float *mean, float *rstd,
                                 const float *x, const float *gate, const float *y, const uint16_t *y16,
                                 int64_t gate_ld, const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D,
                                 float eps, kb_err *err);
/* dy += gate*dx (dy = ... with dy_mode KB_GRAD_SET); dgate[b,d] += sum_t dx*y */
int kb_gated_add_bwd(kb_ctx *ctx, float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                     int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode, kb_err *err);
/* tokens[B, (H/p)*(W/p), C*p*p] from img[B, C, H, W]: a permutation (writes). */
int kb_patchify(kb_ctx *ctx, float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p,
                kb_patch_order order, kb_err *err);
/* The inverse permutation: img[B, C, H, W] from tokens (writes). */
int kb_unpatchify(kb_ctx *ctx, float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p,
                  kb_patch_order order, kb_err *err);
/* out[b,:] = table[ids[b],:]; ids must lie in [0, rows). */
int kb_embedding_fwd(kb_ctx *ctx, float *out, const float *table, const int32_t *ids, int64_t B, int64_t D,
                     kb_err *err);
/* dtable[ids[b],:] += dout[b,:], summed in batch order (deterministic). */
int kb_embedding_bwd(kb_ctx *ctx, float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D,
                     kb_err *err);
/* out[b,:] = [cos(t_b*f), sin(t_b*f)], f_i = exp(-ln(max_period)*i/h), h = dim/2 (dim even),
 * in float32 as DiT's TimestepEmbedder.timestep_embedding. */
int kb_timestep_freq(kb_ctx *ctx, float *out, const float *t, int64_t B, int64_t dim, float max_period, kb_err *err);

void kb_modulate_fwd_ref(float *out, const float *x, const float *shift, const float *scale, int64_t ld, int64_t B,
                         int64_t T, int64_t D);
void kb_modulate_bwd_ref(float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                         const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode);
void kb_ln_modulate_fwd_ref(float *out, float *mean, float *rstd, const float *x, const float *shift, const float *scale,
                            int64_t ld, int64_t B, int64_t T, int64_t D, float eps);
void kb_ln_modulate_bwd_ref(float *dx, float *dshift, float *dscale, const float *dout, const float *x, const float *mean,
                            const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D);
void kb_gated_add_fwd_ref(float *out, const float *x, const float *gate, const float *y, int64_t ld, int64_t B, int64_t T,
                          int64_t D);
void kb_gated_add_bwd_ref(float *dy, float *dgate, const float *dx, const float *y, const float *gate, int64_t ld,
                          int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode);
/* (the fp32 output only; the bf16 form is its rounding) */
void kb_gated_add_ln_modulate_fwd_ref(float *res, float *out, float *mean, float *rstd, const float *x, const float *gate,
                                      const float *y, int64_t gate_ld, const float *shift, const float *scale,
                                      int64_t ld, int64_t B, int64_t T, int64_t D, float eps);
void kb_patchify_ref(float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p,
                     kb_patch_order order);
void kb_unpatchify_ref(float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p,
                       kb_patch_order order);
void kb_embedding_fwd_ref(float *out, const float *table, const int32_t *ids, int64_t B, int64_t D);
void kb_embedding_bwd_ref(float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D);
/* Frequency i of `half` (host code, the C library's expf): the CUDA path takes
 * this table from the host so both devices use the same frequencies. */
float kb_timestep_freq_at(int64_t i, int64_t half, float max_period);
void kb_timestep_freq_ref(float *out, const float *t, int64_t B, int64_t dim, float max_period);

void kb_modulate_fwd_cpu(int threads, float *out, const float *x, const float *shift, const float *scale, int64_t ld,
                         int64_t B, int64_t T, int64_t D);
void kb_modulate_bwd_cpu(int threads, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                         const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode);
void kb_ln_modulate_fwd_cpu(int threads, float *out, float *mean, float *rstd, const float *x, const float *shift,
                            const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, float eps);
void kb_ln_modulate_bwd_cpu(int threads, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                            const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                            int64_t D);
/* (these three need per-thread row buffers: -1 with err set when out of memory) */
int kb_ln_modulate_bwd_x16_cpu(int threads, float *dx, float *dshift, float *dscale, const uint16_t *dout16,
                               const float *x, const float *mean, const float *rstd, const float *scale, int64_t ld,
                               int64_t B, int64_t T, int64_t D, kb_err *err);
int kb_ln_modulate_fwd_x16_cpu(int threads, uint16_t *out16, float *mean, float *rstd, const float *x,
                               const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D,
                               float eps, kb_err *err);
int kb_gated_add_bwd_x16_cpu(int threads, uint16_t *dy16, float *dgate, const float *dx, const float *y,
                             const uint16_t *y16, const float *gate, int64_t ld, int64_t B, int64_t T, int64_t D, kb_err *err);
void kb_gated_add_fwd_cpu(int threads, float *out, const float *x, const float *gate, const float *y, int64_t ld,
                          int64_t B, int64_t T, int64_t D);
/* (a row buffer per thread with out16: -1 with err set when out of memory) */
int kb_gated_add_ln_modulate_fwd_cpu(int threads, float *res, float *out, uint16_t *out16, float *mean, float *rstd,
                                     const float *x, const float *gate, const float *y, const uint16_t *y16,
                                     int64_t gate_ld,
                                     const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T,
                                     int64_t D, float eps, kb_err *err);
void kb_gated_add_bwd_cpu(int threads, float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                          int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode);
void kb_patchify_cpu(int threads, float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t p, kb_patch_order order);
void kb_unpatchify_cpu(int threads, float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W,
                       int64_t p, kb_patch_order order);
void kb_embedding_fwd_cpu(int threads, float *out, const float *table, const int32_t *ids, int64_t B, int64_t D);
void kb_embedding_bwd_cpu(int threads, float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D);
void kb_timestep_freq_cpu(int threads, float *out, const float *t, int64_t B, int64_t dim, float max_period);

int kb_modulate_fwd_cuda(kb_ctx *ctx, float *out, const float *x, const float *shift, const float *scale, int64_t ld,
                         int64_t B, int64_t T, int64_t D, kb_err *err);
int kb_modulate_bwd_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                         const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode,
                         kb_err *err);
int kb_ln_modulate_fwd_cuda(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *x, const float *shift,
                            const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, float eps, kb_err *err);
int kb_ln_modulate_bwd_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                            const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                            int64_t D, kb_err *err);
int kb_ln_modulate_bwd_x16_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const uint16_t *dout16,
                                const float *x, const float *mean, const float *rstd, const float *scale, int64_t ld,
                                int64_t B, int64_t T, int64_t D, kb_err *err);
int kb_ln_modulate_fwd_x16_cuda(kb_ctx *ctx, uint16_t *out16, float *mean, float *rstd, const float *x,
                                const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D,
                                float eps, kb_err *err);
int kb_gated_add_bwd_x16_cuda(kb_ctx *ctx, uint16_t *dy16, float *dgate, const float *dx, const float *y,
                              const uint16_t *y16, const float *gate, int64_t ld, int64_t B, int64_t T, int64_t D, kb_err *err);
int kb_gated_add_fwd_cuda(kb_ctx *ctx, float *out, const float *x, const float *gate, const float *y, int64_t ld,
                          int64_t B, int64_t T, int64_t D, kb_err *err);
int kb_gated_add_ln_modulate_fwd_cuda(kb_ctx *ctx, float *res, float *out, uint16_t *out16, float *mean, float *rstd,
                                      const float *x, const float *gate, const float *y, const uint16_t *y16,
                                      int64_t gate_ld,
                                      const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T,
                                      int64_t D, float eps, kb_err *err);
int kb_gated_add_bwd_cuda(kb_ctx *ctx, float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                          int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode, kb_err *err);
int kb_patchify_cuda(kb_ctx *ctx, float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t p, kb_patch_order order, kb_err *err);
int kb_unpatchify_cuda(kb_ctx *ctx, float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W,
                       int64_t p, kb_patch_order order, kb_err *err);
int kb_embedding_fwd_cuda(kb_ctx *ctx, float *out, const float *table, const int32_t *ids, int64_t B, int64_t D,
                          kb_err *err);
int kb_embedding_bwd_cuda(kb_ctx *ctx, float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D,
                          kb_err *err);
int kb_timestep_freq_cuda(kb_ctx *ctx, float *out, const float *t, int64_t B, int64_t dim, float max_period,
                          kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
