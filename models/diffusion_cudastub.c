/* CPU-only builds: the CUDA diffusion-loss entry points report that this
 * binary has no CUDA support. */
#include "models/diffusion.h"

int kb_diffusion_q_sample_cuda(kb_ctx *ctx, const kb_diffusion_coefs *coefs, const float *x_start, const float *noise,
                               int B, int64_t n, float *x_t, kb_err *err) {
    (void)ctx, (void)coefs, (void)x_start, (void)noise, (void)B, (void)n, (void)x_t;
    return kb_fail(err, "diffusion q_sample on cuda: this kindbench was built without CUDA");
}

int kb_diffusion_loss_cuda(kb_ctx *ctx, const kb_diffusion_coefs *coefs, const int *t, const float *x_start,
                           const float *noise, const float *x_t, const float *model_out, int learn_sigma, int B,
                           int64_t n, float dloss, float *mse, float *vb, float *dmodel_out, kb_err *err) {
    (void)ctx, (void)coefs, (void)t, (void)x_start, (void)noise, (void)x_t, (void)model_out, (void)learn_sigma;
    (void)B, (void)n, (void)dloss, (void)mse, (void)vb, (void)dmodel_out;
    return kb_fail(err, "diffusion loss on cuda: this kindbench was built without CUDA");
}
