/* CPU-only builds: the CUDA DiT ops report that CUDA is not compiled in. */
#include "nn/ops_dit.h"

#define NO_CUDA(op) return kb_fail(err, "%s: this kindbench was built without CUDA", op)

int kb_modulate_fwd_cuda(kb_ctx *ctx, float *out, const float *x, const float *shift, const float *scale, int64_t ld,
                         int64_t B, int64_t T, int64_t D, kb_err *err) { NO_CUDA("kb_modulate_fwd"); }
int kb_modulate_bwd_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                         const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode,
                         kb_err *err) { NO_CUDA("kb_modulate_bwd"); }
int kb_ln_modulate_fwd_cuda(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *x, const float *shift,
                            const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, float eps,
                            kb_err *err) { NO_CUDA("kb_ln_modulate_fwd"); }
int kb_ln_modulate_bwd_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                            const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                            int64_t D, kb_err *err) { NO_CUDA("kb_ln_modulate_bwd"); }
int kb_ln_modulate_bwd_x16_cuda(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const uint16_t *dout16,
                                const float *x, const float *mean, const float *rstd, const float *scale, int64_t ld,
                                int64_t B, int64_t T, int64_t D, kb_err *err) { NO_CUDA("kb_ln_modulate_bwd_x16"); }
int kb_ln_modulate_fwd_x16_cuda(kb_ctx *ctx, uint16_t *out16, float *mean, float *rstd, const float *x,
                                const float *shift, const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D,
                                float eps, kb_err *err) { NO_CUDA("kb_ln_modulate_fwd_x16"); }
int kb_gated_add_bwd_x16_cuda(kb_ctx *ctx, uint16_t *dy16, float *dgate, const float *dx, const float *y,
                              const uint16_t *y16, const float *gate, int64_t ld, int64_t B, int64_t T, int64_t D,
                              kb_err *err) { NO_CUDA("kb_gated_add_bwd_x16"); }
int kb_gated_add_fwd_cuda(kb_ctx *ctx, float *out, const float *x, const float *gate, const float *y, int64_t ld,
                          int64_t B, int64_t T, int64_t D, kb_err *err) { NO_CUDA("kb_gated_add_fwd"); }
int kb_gated_add_bwd_cuda(kb_ctx *ctx, float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                          int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode,
                          kb_err *err) { NO_CUDA("kb_gated_add_bwd"); }
int kb_patchify_cuda(kb_ctx *ctx, float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t p, kb_patch_order order, kb_err *err) { NO_CUDA("kb_patchify"); }
int kb_unpatchify_cuda(kb_ctx *ctx, float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W,
                       int64_t p, kb_patch_order order, kb_err *err) { NO_CUDA("kb_unpatchify"); }
int kb_embedding_fwd_cuda(kb_ctx *ctx, float *out, const float *table, const int32_t *ids, int64_t B, int64_t D,
                          kb_err *err) { NO_CUDA("kb_embedding_fwd"); }
int kb_embedding_bwd_cuda(kb_ctx *ctx, float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D,
                          kb_err *err) { NO_CUDA("kb_embedding_bwd"); }
int kb_timestep_freq_cuda(kb_ctx *ctx, float *out, const float *t, int64_t B, int64_t dim, float max_period,
                          kb_err *err) { NO_CUDA("kb_timestep_freq"); }

int kb_gated_add_ln_modulate_fwd_cuda(kb_ctx *ctx, float *res, float *out, uint16_t *out16, float *mean, float *rstd,
                                      const float *x, const float *gate, const float *y, const uint16_t *y16,
                                      int64_t gate_ld, const float *shift, const float *scale, int64_t ld, int64_t B,
                                      int64_t T, int64_t D, float eps,
                                      kb_err *err) { NO_CUDA("kb_gated_add_ln_modulate_fwd"); }
