/* Dispatchers of the fused attention (nn/ops_attn.h): check shapes once, then
 * run the CUDA kernels or, on the CPU, the reference. */
#include "nn/ops_attn.h"

#include <stdlib.h>

#include "nn/ops_scalar.h"
#include "nn/profile.h"

int kb_attn_fused_wanted(const kb_ctx *ctx, int64_t head_dim) {
    if (!ctx || head_dim <= 0 || head_dim > KB_ATTN_FUSED_MAX_HEAD_DIM || ctx->attention == KB_ATTN_UNFUSED) return 0;
    int gpu = ctx->device == KB_DEV_CUDA && kb_attn_fused_cuda_allowed(ctx, head_dim);
    if (ctx->attention == KB_ATTN_FUSED) return gpu || ctx->device == KB_DEV_CPU;
    return gpu && ctx->matmul == KB_MATMUL_BF16;
}

static int check_shape(const char *op, const kb_ctx *ctx, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err) {
    if (!ctx) return kb_fail(err, "%s: ctx is NULL", op);
    if (B < 0 || T < 0 || d <= 0 || H <= 0)
        return kb_fail(err, "%s: bad sizes B=%lld T=%lld d=%lld H=%lld", op, (long long)B, (long long)T, (long long)d,
                       (long long)H);
    if (d % H)
        return kb_fail(err, "%s: width d=%lld is not divisible by %lld heads", op, (long long)d, (long long)H);
    if (d / H > KB_ATTN_FUSED_MAX_HEAD_DIM)
        return kb_fail(err, "%s: head dimension %lld exceeds the fused kernels' %d", op, (long long)(d / H),
                       KB_ATTN_FUSED_MAX_HEAD_DIM);
    /* the kernels' grid is (T/64, H, B) */
    if (B > 65535 || H > 65535)
        return kb_fail(err, "%s: B=%lld or H=%lld exceeds 65535", op, (long long)B, (long long)H);
    return 0;
}

int kb_attn_fused_fwd(kb_ctx *ctx, float *out, float *lse, const float *qkv, int64_t B, int64_t T, int64_t d,
                      int64_t H, kb_err *err) {
    if (check_shape("kb_attn_fused_fwd", ctx, B, T, d, H, err)) return -1;
    if (B == 0 || T == 0) return 0;
    KB_PROF_DISPATCH(ctx, kb_attn_fused_fwd_cuda(ctx, out, lse, qkv, B, T, d, H, err),
                     kb_attn_fused_fwd_ref(out, lse, qkv, B, T, d, H));
}

int kb_attn_fused_bwd(kb_ctx *ctx, float *dqkv, float *delta, const float *dout, const float *out, const float *qkv,
                      const float *lse, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err) {
    if (check_shape("kb_attn_fused_bwd", ctx, B, T, d, H, err)) return -1;
    if (B == 0 || T == 0) return 0;
    KB_PROF_DISPATCH(ctx, kb_attn_fused_bwd_cuda(ctx, dqkv, delta, dout, out, qkv, lse, B, T, d, H, err),
                     kb_attn_fused_bwd_ref(dqkv, delta, dout, out, qkv, lse, B, T, d, H));
}

/* fp32 copies of n bf16 values; NULL when out of memory. */
static float *widen16(const uint16_t *h, int64_t n) {
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; f && i < n; i++) f[i] = kb_sc_bf16_to_f32(h[i]);
    return f;
}

/* The reference on fp32 copies: qkv16 (and out16, dout16) widened in, the results rounded out. */
static int fwd_x16_cpu(uint16_t *out16, float *lse, const uint16_t *qkv16, int64_t B, int64_t T, int64_t d, int64_t H,
                       kb_err *err) {
    int64_t n = B * T * d;
    float *out = malloc((size_t)n * sizeof(float)), *qkv = widen16(qkv16, 3 * n);
    if (!out || !qkv) {
        free(out), free(qkv);
        return kb_fail(err, "kb_attn_fused_fwd_x16: out of memory for fp32 copies of %lld values", (long long)(4 * n));
    }
    kb_attn_fused_fwd_ref(out, lse, qkv, B, T, d, H);
    for (int64_t i = 0; i < n; i++) out16[i] = kb_sc_f32_to_bf16(out[i]);
    free(out), free(qkv);
    return 0;
}

static int bwd_x16_cpu(uint16_t *dqkv16, float *delta, const uint16_t *dout16, const uint16_t *out16,
                       const uint16_t *qkv16, const float *lse, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err) {
    int64_t n = B * T * d;
    float *out = widen16(out16, n), *qkv = widen16(qkv16, 3 * n), *dqkv = malloc((size_t)(3 * n) * sizeof(float));
    float *dout = widen16(dout16, n);
    if (!out || !qkv || !dqkv || !dout) {
        free(out), free(qkv), free(dqkv), free(dout);
        return kb_fail(err, "kb_attn_fused_bwd_x16: out of memory for fp32 copies of %lld values", (long long)(8 * n));
    }
    kb_attn_fused_bwd_ref(dqkv, delta, dout, out, qkv, lse, B, T, d, H);
    for (int64_t i = 0; i < 3 * n; i++) dqkv16[i] = kb_sc_f32_to_bf16(dqkv[i]);
    free(out), free(qkv), free(dqkv), free(dout);
    return 0;
}

int kb_attn_fused_fwd_x16(kb_ctx *ctx, uint16_t *out16, float *lse, const uint16_t *qkv16, int64_t B, int64_t T,
                          int64_t d, int64_t H, kb_err *err) {
    if (check_shape("kb_attn_fused_fwd_x16", ctx, B, T, d, H, err)) return -1;
    if (B == 0 || T == 0) return 0;
    if (!out16 || !lse || !qkv16) return kb_fail(err, "kb_attn_fused_fwd_x16: out16, lse and qkv16 are required");
    KB_PROF_DISPATCH(ctx, kb_attn_fused_fwd_x16_cuda(ctx, out16, lse, qkv16, B, T, d, H, err),
                     kb_rc_ = fwd_x16_cpu(out16, lse, qkv16, B, T, d, H, err));
}

int kb_attn_fused_bwd_x16(kb_ctx *ctx, uint16_t *dqkv16, float *delta, const uint16_t *dout16, const uint16_t *out16,
                          const uint16_t *qkv16, const float *lse, int64_t B, int64_t T, int64_t d, int64_t H,
                          kb_err *err) {
    if (check_shape("kb_attn_fused_bwd_x16", ctx, B, T, d, H, err)) return -1;
    if (B == 0 || T == 0) return 0;
    if (!dqkv16 || !delta || !dout16 || !out16 || !qkv16 || !lse)
        return kb_fail(err, "kb_attn_fused_bwd_x16: every buffer is required");
    KB_PROF_DISPATCH(ctx, kb_attn_fused_bwd_x16_cuda(ctx, dqkv16, delta, dout16, out16, qkv16, lse, B, T, d, H, err),
                     kb_rc_ = bwd_x16_cpu(dqkv16, delta, dout16, out16, qkv16, lse, B, T, d, H, err));
}
