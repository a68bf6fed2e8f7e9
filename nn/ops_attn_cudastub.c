/* CPU-only builds: the fused CUDA attention reports that CUDA is not compiled in. */
#include "nn/ops_attn.h"

int kb_attn_fused_fwd_cuda(kb_ctx *ctx, float *out, float *lse, const float *qkv, int64_t B, int64_t T, int64_t d,
                           int64_t H, kb_err *err) {
    return kb_fail(err, "kb_attn_fused_fwd: this kindbench was built without CUDA");
}

int kb_attn_fused_bwd_cuda(kb_ctx *ctx, float *dqkv, float *delta, const float *dout, const float *out,
                           const float *qkv, const float *lse, int64_t B, int64_t T, int64_t d, int64_t H,
                           kb_err *err) {
    return kb_fail(err, "kb_attn_fused_bwd: this kindbench was built without CUDA");
}

int kb_attn_fused_fwd_x16_cuda(kb_ctx *ctx, uint16_t *out16, float *lse, const uint16_t *qkv16, int64_t B, int64_t T,
                               int64_t d, int64_t H, kb_err *err) {
    return kb_fail(err, "kb_attn_fused_fwd_x16: this kindbench was built without CUDA");
}

int kb_attn_fused_bwd_x16_cuda(kb_ctx *ctx, uint16_t *dqkv16, float *delta, const uint16_t *dout16, const uint16_t *out16,
                               const uint16_t *qkv16, const float *lse, int64_t B, int64_t T, int64_t d, int64_t H,
                               kb_err *err) {
    return kb_fail(err, "kb_attn_fused_bwd_x16: this kindbench was built without CUDA");
}

int kb_attn_fused_cuda_allowed(const kb_ctx *ctx, int64_t head_dim) {
    return 0;
}

int kb_attn_mma_probe(kb_ctx *ctx, float *d, kb_err *err) {
    return kb_fail(err, "kb_attn_mma_probe: this kindbench was built without CUDA");
}
