/* Multi-head self-attention over a fused qkv projection (timm's Attention, as
 * DiT uses it): qkv [B, T, 3d] holds q, k, v side by side, each split into
 * heads of d/H columns. Softmax(q k^T / sqrt(d/H)) v, heads concatenated.
 * Built from batched GEMMs and the softmax op, so it runs on every backend. */
#ifndef KB_ATTENTION_H
#define KB_ATTENTION_H

#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

/* probs [B, H, T, T] (saved for backward), out [B, T, d]; scores is
 * [B, H, T, T] scratch. */
int kb_attention_fwd(kb_ctx *ctx, float *out, float *probs, float *scores, const float *qkv, int64_t B, int64_t T,
                     int64_t d, int64_t H, kb_err *err);
/* dqkv [B, T, 3d] is written (not accumulated); dprobs and dscores are
 * [B, H, T, T] scratch. */
int kb_attention_bwd(kb_ctx *ctx, float *dqkv, float *dprobs, float *dscores, const float *dout, const float *qkv,
                     const float *probs, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err);

#endif
