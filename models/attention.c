#include "models/attention.h"

#include <math.h>

#include "nn/ops.h"

/* Per sample b, the H heads form one strided batch: head h of q starts at
 * column h*hd of the qkv rows (row stride 3d), k at d + h*hd, v at 2d + h*hd. */

int kb_attention_fwd(kb_ctx *ctx, float *out, float *probs, float *scores, const float *qkv, int64_t B, int64_t T,
                     int64_t d, int64_t H, kb_err *err) {
    int64_t hd = d / H, TT = T * T;
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t b = 0; b < B; b++) {
        const float *q = qkv + b * T * 3 * d, *k = q + d;
        float *s = scores + b * H * TT;
        if (kb_gemm_batched(ctx, false, true, T, T, hd, scale, q, 3 * d, hd, k, 3 * d, hd, 0.0f, s, T, TT, H, err))
            return kb_fail_wrap(err, "attention scores");
    }
    if (kb_softmax_fwd(ctx, probs, scores, B * H * T, T, err)) return kb_fail_wrap(err, "attention softmax");
    for (int64_t b = 0; b < B; b++) {
        const float *v = qkv + b * T * 3 * d + 2 * d;
        if (kb_gemm_batched(ctx, false, false, T, hd, T, 1.0f, probs + b * H * TT, T, TT, v, 3 * d, hd, 0.0f,
                            out + b * T * d, d, hd, H, err))
            return kb_fail_wrap(err, "attention values");
    }
    return 0;
}

int kb_attention_bwd(kb_ctx *ctx, float *dqkv, float *dprobs, float *dscores, const float *dout, const float *qkv,
                     const float *probs, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err) {
    int64_t hd = d / H, TT = T * T;
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t b = 0; b < B; b++) {
        const float *v = qkv + b * T * 3 * d + 2 * d, *dy = dout + b * T * d, *p = probs + b * H * TT;
        float *dv = dqkv + b * T * 3 * d + 2 * d;
        /* dP = dY V^T ; dV = P^T dY */
        if (kb_gemm_batched(ctx, false, true, T, T, hd, 1.0f, dy, d, hd, v, 3 * d, hd, 0.0f, dprobs + b * H * TT, T,
                            TT, H, err) ||
            kb_gemm_batched(ctx, true, false, T, hd, T, 1.0f, p, T, TT, dy, d, hd, 0.0f, dv, 3 * d, hd, H, err))
            return kb_fail_wrap(err, "attention backward (values)");
    }
    if (kb_fill(ctx, dscores, 0.0f, B * H * TT, err) ||
        kb_softmax_bwd(ctx, dscores, dprobs, probs, B * H * T, T, err))
        return kb_fail_wrap(err, "attention backward (softmax)");
    for (int64_t b = 0; b < B; b++) {
        const float *q = qkv + b * T * 3 * d, *k = q + d, *ds = dscores + b * H * TT;
        float *dq = dqkv + b * T * 3 * d, *dk = dq + d;
        /* S = scale Q K^T: dQ = scale dS K ; dK = scale dS^T Q */
        if (kb_gemm_batched(ctx, false, false, T, hd, T, scale, ds, T, TT, k, 3 * d, hd, 0.0f, dq, 3 * d, hd, H, err) ||
            kb_gemm_batched(ctx, true, false, T, hd, T, scale, ds, T, TT, q, 3 * d, hd, 0.0f, dk, 3 * d, hd, H, err))
            return kb_fail_wrap(err, "attention backward (queries, keys)");
    }
    return 0;
}
