/* Dispatchers of the DiT ops: check sizes once, then run the backend. */
#include "nn/ops_dit.h"
#include "nn/profile.h"

static int check_btd(const char *op, int64_t ld, int64_t B, int64_t T, int64_t D, kb_err *err) {
    if (B < 0 || T < 0 || D < 0) return kb_fail(err, "%s: negative size B=%lld T=%lld D=%lld", op, (long long)B, (long long)T, (long long)D);
    if (ld < D) return kb_fail(err, "%s: conditioning row stride ld=%lld < D=%lld", op, (long long)ld, (long long)D);
    return 0;
}

static int check_patch(const char *op, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p, kb_patch_order order,
                       kb_err *err) {
    if (B < 0 || C <= 0 || H <= 0 || W <= 0 || p <= 0)
        return kb_fail(err, "%s: bad sizes B=%lld C=%lld H=%lld W=%lld p=%lld", op, (long long)B, (long long)C,
                       (long long)H, (long long)W, (long long)p);
    if (H % p || W % p)
        return kb_fail(err, "%s: image %lldx%lld not divisible by patch %lld", op, (long long)H, (long long)W, (long long)p);
    if (order != KB_PATCH_CPQ && order != KB_PATCH_PQC) return kb_fail(err, "%s: unknown patch order %d", op, (int)order);
    return 0;
}

#define DISPATCH(cpu_call, cuda_call) KB_PROF_DISPATCH(ctx, cuda_call, cpu_call)

int kb_modulate_fwd(kb_ctx *ctx, float *out, const float *x, const float *shift, const float *scale, int64_t ld,
                    int64_t B, int64_t T, int64_t D, kb_err *err) {
    if (check_btd("kb_modulate_fwd", ld, B, T, D, err)) return -1;
    DISPATCH(kb_modulate_fwd_cpu(ctx->threads, out, x, shift, scale, ld, B, T, D),
             kb_modulate_fwd_cuda(ctx, out, x, shift, scale, ld, B, T, D, err));
}

int kb_modulate_bwd(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                    const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dx_mode, kb_err *err) {
    if (check_btd("kb_modulate_bwd", ld, B, T, D, err)) return -1;
    DISPATCH(kb_modulate_bwd_cpu(ctx->threads, dx, dshift, dscale, dout, x, scale, ld, B, T, D, dx_mode),
             kb_modulate_bwd_cuda(ctx, dx, dshift, dscale, dout, x, scale, ld, B, T, D, dx_mode, err));
}

int kb_ln_modulate_fwd(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *x, const float *shift,
                       const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, float eps, kb_err *err) {
    if (check_btd("kb_ln_modulate_fwd", ld, B, T, D, err)) return -1;
    if (!mean || !rstd) return kb_fail(err, "kb_ln_modulate_fwd: mean and rstd are required (the backward reads them)");
    DISPATCH(kb_ln_modulate_fwd_cpu(ctx->threads, out, mean, rstd, x, shift, scale, ld, B, T, D, eps),
             kb_ln_modulate_fwd_cuda(ctx, out, mean, rstd, x, shift, scale, ld, B, T, D, eps, err));
}

int kb_ln_modulate_bwd(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const float *dout, const float *x,
                       const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                       int64_t D, kb_err *err) {
    if (check_btd("kb_ln_modulate_bwd", ld, B, T, D, err)) return -1;
    DISPATCH(kb_ln_modulate_bwd_cpu(ctx->threads, dx, dshift, dscale, dout, x, mean, rstd, scale, ld, B, T, D),
             kb_ln_modulate_bwd_cuda(ctx, dx, dshift, dscale, dout, x, mean, rstd, scale, ld, B, T, D, err));
}

int kb_ln_modulate_bwd_x16(kb_ctx *ctx, float *dx, float *dshift, float *dscale, const uint16_t *dout16, const float *x,
                           const float *mean, const float *rstd, const float *scale, int64_t ld, int64_t B, int64_t T,
                           int64_t D, kb_err *err) {
    if (check_btd("kb_ln_modulate_bwd_x16", ld, B, T, D, err)) return -1;
    DISPATCH(kb_rc_ = kb_ln_modulate_bwd_x16_cpu(ctx->threads, dx, dshift, dscale, dout16, x, mean, rstd, scale, ld, B,
                                                 T, D, err),
             kb_ln_modulate_bwd_x16_cuda(ctx, dx, dshift, dscale, dout16, x, mean, rstd, scale, ld, B, T, D, err));
}

int kb_ln_modulate_fwd_x16(kb_ctx *ctx, uint16_t *out16, float *mean, float *rstd, const float *x, const float *shift,
                           const float *scale, int64_t ld, int64_t B, int64_t T, int64_t D, float eps, kb_err *err) {
    if (check_btd("kb_ln_modulate_fwd_x16", ld, B, T, D, err)) return -1;
    if (!mean || !rstd) return kb_fail(err, "kb_ln_modulate_fwd_x16: mean and rstd are required (the backward reads them)");
    DISPATCH(kb_rc_ = kb_ln_modulate_fwd_x16_cpu(ctx->threads, out16, mean, rstd, x, shift, scale, ld, B, T, D, eps, err),
             kb_ln_modulate_fwd_x16_cuda(ctx, out16, mean, rstd, x, shift, scale, ld, B, T, D, eps, err));
}

int kb_gated_add_bwd_x16(kb_ctx *ctx, uint16_t *dy16, float *dgate, const float *dx, const float *y,
                         const uint16_t *y16, const float *gate, int64_t ld, int64_t B, int64_t T, int64_t D,
                         kb_err *err) {
    if (check_btd("kb_gated_add_bwd_x16", ld, B, T, D, err)) return -1;
    if (!y == !y16) return kb_fail(err, "kb_gated_add_bwd_x16: give exactly one of y (fp32) and y16 (bf16)");
    DISPATCH(kb_rc_ = kb_gated_add_bwd_x16_cpu(ctx->threads, dy16, dgate, dx, y, y16, gate, ld, B, T, D, err),
             kb_gated_add_bwd_x16_cuda(ctx, dy16, dgate, dx, y, y16, gate, ld, B, T, D, err));
}

int kb_gated_add_fwd(kb_ctx *ctx, float *out, const float *x, const float *gate, const float *y, int64_t ld, int64_t B,
                     int64_t T, int64_t D, kb_err *err) {
    if (check_btd("kb_gated_add_fwd", ld, B, T, D, err)) return -1;
    DISPATCH(kb_gated_add_fwd_cpu(ctx->threads, out, x, gate, y, ld, B, T, D),
             kb_gated_add_fwd_cuda(ctx, out, x, gate, y, ld, B, T, D, err));
}

int kb_gated_add_ln_modulate_fwd(kb_ctx *ctx, float *res, float *out, uint16_t *out16, float *mean, float *rstd,
                                 const float *x, const float *gate, const float *y, const uint16_t *y16,
                                 int64_t gate_ld, const float *shift, const float *scale, int64_t ld, int64_t B,
                                 int64_t T, int64_t D, float eps, kb_err *err) {
    const char *op = "kb_gated_add_ln_modulate_fwd";
    if (check_btd(op, ld, B, T, D, err)) return -1;
    if (gate_ld < D) return kb_fail(err, "%s: gate row stride %lld < D=%lld", op, (long long)gate_ld, (long long)D);
    if (!mean || !rstd) return kb_fail(err, "%s: mean and rstd are required (the backward reads them)", op);
    if (!out == !out16) return kb_fail(err, "%s: give exactly one of out (fp32) and out16 (bf16)", op);
    if (!y == !y16) return kb_fail(err, "%s: give exactly one of y (fp32) and y16 (bf16)", op);
    DISPATCH(kb_rc_ = kb_gated_add_ln_modulate_fwd_cpu(ctx->threads, res, out, out16, mean, rstd, x, gate, y, y16,
                                                       gate_ld, shift, scale, ld, B, T, D, eps, err),
             kb_gated_add_ln_modulate_fwd_cuda(ctx, res, out, out16, mean, rstd, x, gate, y, y16, gate_ld, shift, scale,
                                               ld, B, T, D, eps, err));
}

int kb_gated_add_bwd(kb_ctx *ctx, float *dy, float *dgate, const float *dx, const float *y, const float *gate,
                     int64_t ld, int64_t B, int64_t T, int64_t D, kb_grad_mode dy_mode, kb_err *err) {
    if (check_btd("kb_gated_add_bwd", ld, B, T, D, err)) return -1;
    DISPATCH(kb_gated_add_bwd_cpu(ctx->threads, dy, dgate, dx, y, gate, ld, B, T, D, dy_mode),
             kb_gated_add_bwd_cuda(ctx, dy, dgate, dx, y, gate, ld, B, T, D, dy_mode, err));
}

int kb_patchify(kb_ctx *ctx, float *tokens, const float *img, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p,
                kb_patch_order order, kb_err *err) {
    if (check_patch("kb_patchify", B, C, H, W, p, order, err)) return -1;
    DISPATCH(kb_patchify_cpu(ctx->threads, tokens, img, B, C, H, W, p, order),
             kb_patchify_cuda(ctx, tokens, img, B, C, H, W, p, order, err));
}

int kb_unpatchify(kb_ctx *ctx, float *img, const float *tokens, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p,
                  kb_patch_order order, kb_err *err) {
    if (check_patch("kb_unpatchify", B, C, H, W, p, order, err)) return -1;
    DISPATCH(kb_unpatchify_cpu(ctx->threads, img, tokens, B, C, H, W, p, order),
             kb_unpatchify_cuda(ctx, img, tokens, B, C, H, W, p, order, err));
}

int kb_embedding_fwd(kb_ctx *ctx, float *out, const float *table, const int32_t *ids, int64_t B, int64_t D,
                     kb_err *err) {
    if (B < 0 || D < 0) return kb_fail(err, "kb_embedding_fwd: negative size B=%lld D=%lld", (long long)B, (long long)D);
    DISPATCH(kb_embedding_fwd_cpu(ctx->threads, out, table, ids, B, D),
             kb_embedding_fwd_cuda(ctx, out, table, ids, B, D, err));
}

int kb_embedding_bwd(kb_ctx *ctx, float *dtable, const float *dout, const int32_t *ids, int64_t B, int64_t D,
                     kb_err *err) {
    if (B < 0 || D < 0) return kb_fail(err, "kb_embedding_bwd: negative size B=%lld D=%lld", (long long)B, (long long)D);
    DISPATCH(kb_embedding_bwd_cpu(ctx->threads, dtable, dout, ids, B, D),
             kb_embedding_bwd_cuda(ctx, dtable, dout, ids, B, D, err));
}

int kb_timestep_freq(kb_ctx *ctx, float *out, const float *t, int64_t B, int64_t dim, float max_period, kb_err *err) {
    if (B < 0 || dim <= 0 || dim % 2)
        return kb_fail(err, "kb_timestep_freq: need B >= 0 and an even dim > 0, got B=%lld dim=%lld", (long long)B,
                       (long long)dim);
    DISPATCH(kb_timestep_freq_cpu(ctx->threads, out, t, B, dim, max_period),
             kb_timestep_freq_cuda(ctx, out, t, B, dim, max_period, err));
}
