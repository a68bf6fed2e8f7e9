/* Multi-head self-attention over a fused qkv projection (timm's Attention, as
 * DiT uses it): qkv [B, T, 3d] holds q, k, v side by side, each split into
 * heads of d/H columns. Softmax(q k^T / sqrt(d/H)) v, heads concatenated.
 * Built from batched GEMMs and the softmax op, so it runs on every backend. */
#ifndef KB_ATTENTION_H
#define KB_ATTENTION_H

#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

/* Two routes, chosen by the caller once per activation layout (the buffer
 * sizes differ): the unfused one (fused = 0: batched GEMMs and the softmax
 * op, exact fp32 on every backend, probabilities kept for backward) and the
 * fused bf16 kernels of nn/ops_attn.h (fused = 1, what kb_attn_fused_wanted
 * says for the context: CUDA in the BF16 matmul mode), which keep one
 * log-sum-exp per row instead. */

/* Floats of the buffer saved for backward (probs [B, H, T, T], or lse
 * [B, H, T] fused) and of each of the two scratch buffers (the forward uses
 * the first only; fused: [B, H, T] and none). */
int64_t kb_attention_saved_floats(int fused, int64_t B, int64_t T, int64_t H);
int64_t kb_attention_scratch_floats(int fused, int which, int64_t B, int64_t T, int64_t H);

/* out [B, T, d] and saved from qkv; scratch is the first scratch buffer. */
int kb_attention_fwd(kb_ctx *ctx, int fused, float *out, float *saved, float *scratch, const float *qkv, int64_t B,
                     int64_t T, int64_t d, int64_t H, kb_err *err);
/* dqkv [B, T, 3d] is written (not accumulated); scratch0 and scratch1 are the
 * scratch buffers; out and saved are the forward's. */
int kb_attention_bwd(kb_ctx *ctx, int fused, float *dqkv, float *scratch0, float *scratch1, const float *dout,
                     const float *out, const float *qkv, const float *saved, int64_t B, int64_t T, int64_t d, int64_t H,
                     kb_err *err);

#endif
