/* Builds without CUDA (or without cuDNN): the CUDA convolution and pooling
 * entry points report that they are not compiled in. */
#include "nn/ops_conv.h"

#define NO_CUDA(op) return kb_fail(err, "%s: this kindbench was built without CUDA/cuDNN", op)

int kb_conv_engine_init_cuda(kb_ctx *ctx, kb_conv_engine *e, kb_err *err) { NO_CUDA("kb_conv_engine_create"); }
void kb_conv_engine_free_cuda(kb_conv_engine *e) { (void)e; }
int kb_conv2d_cuda(kb_ctx *ctx, kb_conv_engine *e, const kb_conv2d_desc *d, float *out, const float *in,
                   const float *w, const float *bias, kb_err *err) { NO_CUDA("kb_conv2d"); }
int kb_maxpool2d_cuda(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err) {
    NO_CUDA("kb_maxpool2d");
}
int kb_avgpool2d_cuda(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err) {
    NO_CUDA("kb_avgpool2d");
}
int kb_global_avgpool_cuda(kb_ctx *ctx, float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi,
                           kb_err *err) { NO_CUDA("kb_global_avgpool"); }
