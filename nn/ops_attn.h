/* Fused multi-head self-attention with bf16 tensor-core arithmetic, the
 * attention of the BF16 matmul mode on CUDA (models/attention.c chooses it).
 *
 * Same layouts as models/attention.h: qkv [B, T, 3d] holds q, k, v side by
 * side, head h of each at columns h*hd .. h*hd+hd-1 (hd = d/H); out and dout
 * are [B, T, d]. Instead of the [B, H, T, T] probabilities of the unfused
 * route, the forward saves one log-sum-exp per row, lse [B, H, T] (natural
 * log of sum_j exp(s_ij), s = q k^T / sqrt(hd)), and the backward recomputes
 * the probabilities from it (FlashAttention-2's scheme), so no T x T matrix is
 * ever stored: on DiT-B/2 at batch 256 that is 0.8 GB of fp32 scores per
 * layer, written and read several times per step, that the fused route does
 * not move.
 *
 * Arithmetic (the same in the CUDA kernels and in the reference below):
 *  - q, k, v and dout are rounded to bf16 (round to nearest even) on load;
 *  - s = (q . k) * scale with fp32 accumulation; row statistics in fp32;
 *  - forward, one pass over tiles of 64 keys per row (FlashAttention-2):
 *    m = running max, p = exp(s - m) in fp32, l = l exp(m_old - m) + sum p
 *    (each tile's sum in a fixed order), o = o exp(m_old - m) + bf16(p) v;
 *    out = o / l, lse = m + log l;
 *  - backward: p = exp(s - lse) in fp32, rounded to bf16 for p^T dout;
 *  - backward: D_i = sum_c dout_ic out_ic (fp32, from the fp32 out),
 *    dp = dout . v (fp32 accumulation), ds = p (dp - D_i) in fp32, rounded to
 *    bf16 for dq = scale ds k and dk = scale ds^T q.
 * Every sum has a fixed order, so reruns are bit-identical.
 *
 * kb_attn_fused_* dispatch like every op: the CUDA kernels, or on the CPU the
 * reference (kb_attn_fused_*_ref), which rounds where the kernels round. */
#ifndef KB_OPS_ATTN_H
#define KB_OPS_ATTN_H

#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest head dimension the fused kernels take (they pad hd up to 32,
 * 64, 80 or 128 columns in shared memory). */
#define KB_ATTN_FUSED_MAX_HEAD_DIM 128

/* 1 when models should take the fused route on ctx for heads of head_dim
 * columns (head_dim <= KB_ATTN_FUSED_MAX_HEAD_DIM): with ctx->attention
 * AUTO, a CUDA context in the BF16 matmul mode on a GPU of compute
 * capability 8.0 or newer (on the CPU the unfused route is the exact fp32
 * one); with FUSED, on any such GPU and on the CPU (the reference). */
int kb_attn_fused_wanted(const kb_ctx *ctx, int64_t head_dim);

/* out [B, T, d] and lse [B, H, T] from qkv [B, T, 3d]. */
int kb_attn_fused_fwd(kb_ctx *ctx, float *out, float *lse, const float *qkv, int64_t B, int64_t T, int64_t d,
                      int64_t H, kb_err *err);
/* dqkv [B, T, 3d] is written (not accumulated); delta [B, H, T] is scratch
 * (it receives D). out and lse are the forward's. */
int kb_attn_fused_bwd(kb_ctx *ctx, float *dqkv, float *delta, const float *dout, const float *out, const float *qkv,
                      const float *lse, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err);

/* The same with the tensors the linear layers around the attention read or
 * write stored as bf16 (uint16_t bits, nn/ops.h "*_x16"): qkv16 and dout16
 * in, out16 = bf16(out) and dqkv16 = bf16(dqkv) out. Given qkv16 = bf16(qkv)
 * and dout16 = bf16(dout) they equal bf16 of kb_attn_fused_fwd/bwd's results
 * bit for bit (q, k, v and dout are rounded to bf16 on load anyway), except
 * that the backward forms D from dout16 and out16 (D_i = sum_c dout16_ic *
 * out16_ic, widened). On the CPU: the reference on fp32 copies. */
int kb_attn_fused_fwd_x16(kb_ctx *ctx, uint16_t *out16, float *lse, const uint16_t *qkv16, int64_t B, int64_t T,
                          int64_t d, int64_t H, kb_err *err);
int kb_attn_fused_bwd_x16(kb_ctx *ctx, uint16_t *dqkv16, float *delta, const uint16_t *dout16, const uint16_t *out16,
                          const uint16_t *qkv16, const float *lse, int64_t B, int64_t T, int64_t d, int64_t H,
                          kb_err *err);

/* Plain references (single-threaded, the arithmetic above). */
void kb_attn_fused_fwd_ref(float *out, float *lse, const float *qkv, int64_t B, int64_t T, int64_t d, int64_t H);
void kb_attn_fused_bwd_ref(float *dqkv, float *delta, const float *dout, const float *out, const float *qkv,
                           const float *lse, int64_t B, int64_t T, int64_t d, int64_t H);
/* float -> bf16 -> float, round to nearest even (NaN and infinities kept). */
float kb_bf16_round(float x);

/* CUDA kernels (nn/ops_attn_cuda.cu; stubs without CUDA). */
int kb_attn_fused_fwd_cuda(kb_ctx *ctx, float *out, float *lse, const float *qkv, int64_t B, int64_t T, int64_t d,
                           int64_t H, kb_err *err);
int kb_attn_fused_bwd_cuda(kb_ctx *ctx, float *dqkv, float *delta, const float *dout, const float *out,
                           const float *qkv, const float *lse, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err);
int kb_attn_fused_fwd_x16_cuda(kb_ctx *ctx, uint16_t *out16, float *lse, const uint16_t *qkv16, int64_t B, int64_t T,
                               int64_t d, int64_t H, kb_err *err);
int kb_attn_fused_bwd_x16_cuda(kb_ctx *ctx, uint16_t *dqkv16, float *delta, const uint16_t *dout16, const uint16_t *out16,
                               const uint16_t *qkv16, const float *lse, int64_t B, int64_t T, int64_t d, int64_t H,
                               kb_err *err);
/* 1 when the CUDA context's GPU runs the fused kernels for heads of head_dim
 * columns (compute capability >= 8.0 and enough shared memory per block for
 * the padded head dimension); 0 without CUDA. */
int kb_attn_fused_cuda_allowed(const kb_ctx *ctx, int64_t head_dim);

/* For tests: d (768 floats of device memory) gets A B (16 x 16, row-major)
 * three times, by mma.sync through the fragment layouts nn/mma_bf16.cuh
 * assumes: fragments built in registers, then loaded by ldmatrix from A and
 * B^T, then by ldmatrix.trans from B, as the kernels load them. A(r, k) and
 * B(k, n) are these formulas (small integers and halves: exact in bf16 and
 * in any summation order). A GPU that disagrees with them would make every
 * fused attention result wrong. */
#define KB_MMA_PROBE_A(r, k) ((float)(((r) * 5 + (k) * 3) % 11 - 5))
#define KB_MMA_PROBE_B(k, n) (0.5f * (float)(((k) * 7 + (n) * 2) % 9 - 4))
int kb_attn_mma_probe(kb_ctx *ctx, float *d, kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
