#include "models/attention.h"

#include <math.h>

#include "nn/ops.h"
#include "nn/ops_attn.h"

/* A matrix operand of the per-(sample, head) GEMMs: the one of sample b and
 * head h starts at p + b * per_b + h * per_h, with leading dimension ld. In
 * qkv [B, T, 3d], head h of q starts at column h*hd (row stride 3d), k at
 * d + h*hd, v at 2d + h*hd; scores [B, H, T, T] are one T x T matrix each. */
typedef struct {
    const float *p;
    int64_t ld, per_b, per_h;
} bh_operand;

static bh_operand bh(const float *p, int64_t ld, int64_t per_b, int64_t per_h) {
    return (bh_operand){p, ld, per_b, per_h};
}

/* C(b, h) = alpha op(A(b, h)) op(B(b, h)) + beta C(b, h) for every sample and
 * head, as strided batched GEMMs over the larger of the two counts: on a GPU
 * that is H launches for a batch of B samples rather than B launches. Every
 * matrix is the same GEMM whichever way they are grouped. */
static int gemm_bh(kb_ctx *ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, bh_operand A,
                   bh_operand Bm, float beta, bh_operand C, int64_t B, int64_t H, kb_err *err) {
    int by_head = B >= H;
    int64_t outer = by_head ? H : B, batch = by_head ? B : H;
    for (int64_t o = 0; o < outer; o++) {
        int64_t offA = o * (by_head ? A.per_h : A.per_b), offB = o * (by_head ? Bm.per_h : Bm.per_b);
        int64_t offC = o * (by_head ? C.per_h : C.per_b);
        if (kb_gemm_batched(ctx, ta, tb, M, N, K, alpha, A.p + offA, A.ld, by_head ? A.per_b : A.per_h, Bm.p + offB,
                            Bm.ld, by_head ? Bm.per_b : Bm.per_h, beta, (float *)C.p + offC, C.ld,
                            by_head ? C.per_b : C.per_h, batch, err))
            return -1;
    }
    return 0;
}

int64_t kb_attention_saved_floats(int fused, int64_t B, int64_t T, int64_t H) {
    return fused ? B * H * T : B * H * T * T;
}

int64_t kb_attention_scratch_floats(int fused, int which, int64_t B, int64_t T, int64_t H) {
    if (fused) return which == 0 ? B * H * T : 0; /* D of the backward */
    return B * H * T * T;
}

int kb_attention_fwd(kb_ctx *ctx, int fused, float *out, float *saved, float *scratch, const float *qkv, int64_t B,
                     int64_t T, int64_t d, int64_t H, kb_err *err) {
    if (fused) return kb_attn_fused_fwd(ctx, out, saved, qkv, B, T, d, H, err);
    float *probs = saved, *scores = scratch;
    int64_t hd = d / H, TT = T * T, row = T * 3 * d;
    float scale = 1.0f / sqrtf((float)hd);
    bh_operand q = bh(qkv, 3 * d, row, hd), k = bh(qkv + d, 3 * d, row, hd), v = bh(qkv + 2 * d, 3 * d, row, hd);
    if (gemm_bh(ctx, false, true, T, T, hd, scale, q, k, 0.0f, bh(scores, T, H * TT, TT), B, H, err))
        return kb_fail_wrap(err, "attention scores");
    if (kb_softmax_fwd(ctx, probs, scores, B * H * T, T, err)) return kb_fail_wrap(err, "attention softmax");
    if (gemm_bh(ctx, false, false, T, hd, T, 1.0f, bh(probs, T, H * TT, TT), v, 0.0f, bh(out, d, T * d, hd), B, H, err))
        return kb_fail_wrap(err, "attention values");
    return 0;
}

int kb_attention_bwd(kb_ctx *ctx, int fused, float *dqkv, float *scratch0, float *scratch1, const float *dout,
                     const float *out, const float *qkv, const float *saved, int64_t B, int64_t T, int64_t d, int64_t H,
                     kb_err *err) {
    if (fused) return kb_attn_fused_bwd(ctx, dqkv, scratch0, dout, out, qkv, saved, B, T, d, H, err);
    float *dprobs = scratch0, *dscores = scratch1;
    const float *probs = saved;
    int64_t hd = d / H, TT = T * T, row = T * 3 * d;
    float scale = 1.0f / sqrtf((float)hd);
    bh_operand q = bh(qkv, 3 * d, row, hd), k = bh(qkv + d, 3 * d, row, hd), v = bh(qkv + 2 * d, 3 * d, row, hd);
    bh_operand dq = bh(dqkv, 3 * d, row, hd), dk = bh(dqkv + d, 3 * d, row, hd), dv = bh(dqkv + 2 * d, 3 * d, row, hd);
    bh_operand dy = bh(dout, d, T * d, hd), p = bh(probs, T, H * TT, TT);
    bh_operand dp = bh(dprobs, T, H * TT, TT), ds = bh(dscores, T, H * TT, TT);
    /* dP = dY V^T ; dV = P^T dY */
    if (gemm_bh(ctx, false, true, T, T, hd, 1.0f, dy, v, 0.0f, dp, B, H, err) ||
        gemm_bh(ctx, true, false, T, hd, T, 1.0f, p, dy, 0.0f, dv, B, H, err))
        return kb_fail_wrap(err, "attention backward (values)");
    if (kb_softmax_bwd(ctx, dscores, dprobs, probs, B * H * T, T, err))
        return kb_fail_wrap(err, "attention backward (softmax)");
    /* S = scale Q K^T: dQ = scale dS K ; dK = scale dS^T Q */
    if (gemm_bh(ctx, false, false, T, hd, T, scale, ds, k, 0.0f, dq, B, H, err) ||
        gemm_bh(ctx, true, false, T, hd, T, scale, ds, q, 0.0f, dk, B, H, err))
        return kb_fail_wrap(err, "attention backward (queries, keys)");
    return 0;
}
