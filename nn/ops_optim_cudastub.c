/* CPU-only builds: the CUDA optimiser ops report that CUDA is not compiled in. */
#include "nn/ops_optim.h"

int kb_adamw_step_cuda(kb_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n,
                       const kb_adamw_scalars *s, kb_err *err) {
    return kb_fail(err, "kb_adamw_step: this kindbench was built without CUDA");
}
int kb_ema_update_cuda(kb_ctx *ctx, float *ema, const float *p, int64_t n, double decay, kb_err *err) {
    return kb_fail(err, "kb_ema_update: this kindbench was built without CUDA");
}
int kb_sumsq_cuda(kb_ctx *ctx, double *out, const float *x, int64_t n, kb_err *err) {
    return kb_fail(err, "kb_sumsq: this kindbench was built without CUDA");
}
