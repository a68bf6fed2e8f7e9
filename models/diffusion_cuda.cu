/* The training loss on the GPU (models/diffusion.h, kb_diffusion_*_dev):
 * q_sample and DiT's loss forward and backward in one pass, so a training
 * step keeps the model output and its gradient on the device.
 *
 * Per-sample coefficients come from the host (float32-rounded schedule
 * entries, as the CPU uses) through the context's scratch buffer; the
 * element math is models/diffusion_elem.h, the CPU reference's own. One
 * block per sample sums its mse and vb terms in double in a fixed tree
 * order, so results repeat bit for bit on a given GPU. */
#include "nn/cuda_common.cuh"

#include "models/diffusion.h"
#include "models/diffusion_elem.h"

__global__ void q_sample_kernel(float *x_t, const float *x0, const float *noise, const kb_diffusion_coefs *k,
                                int64_t n, int64_t total) {
    KB_GRID_STRIDE(i, total) x_t[i] = kb_diff_q_sample(&k[i / n], x0[i], noise[i]);
}

/* Block b: sample b's terms and gradient. terms[b] = mse_b, terms[B + b] =
 * vb_b as the CPU rounds them (float32 means, vb / ln 2). learn: model_out is
 * [B, 2, n] (eps, v); else [B, n] (eps only, vb = 0). */
__global__ void loss_kernel(float *terms, float *dout, const kb_diffusion_coefs *coefs, const int *t0s,
                            const float *x0, const float *noise, const float *x_t, const float *out, int learn,
                            int64_t n, float g_mse, float g_vb, float dloss, float nb) {
    const int b = blockIdx.x, B = gridDim.x;
    const kb_diffusion_coefs k = coefs[b];
    const int t0 = t0s[b];
    const int64_t in0 = (int64_t)b * n, out0 = in0 * (learn ? 2 : 1);
    double ms = 0.0, vs = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += KB_CUDA_BLOCK) {
        float ns = noise[in0 + i], eps = out[out0 + i];
        if (learn) {
            float v = out[out0 + n + i], m, vb;
            kb_diff_loss_terms(&k, t0, x0[in0 + i], ns, x_t[in0 + i], eps, v, &m, &vb);
            ms += (double)m, vs += (double)vb;
            kb_diff_loss_grad(&k, t0, x0[in0 + i], ns, x_t[in0 + i], eps, v, g_mse, g_vb, &dout[out0 + i],
                              &dout[out0 + n + i]);
        } else {
            float d = KB_FSUB(ns, eps);
            ms += (double)KB_FMUL(d, d);
            dout[out0 + i] = KB_FMUL(dloss, kb_diff_mse_grad(ns, eps, nb));
        }
    }
    ms = kb_block_sum_tree(ms);
    vs = kb_block_sum_tree(vs);
    if (threadIdx.x == 0) {
        terms[b] = (float)(ms / (double)n);
        terms[B + b] = learn ? __fdiv_rn((float)(vs / (double)n), KB_DIFF_LN2F) : 0.0f;
    }
}

/* Copies the per-sample coefficients (and t == 0 flags) into the scratch
 * buffer and waits for the copies, since the callers free the host arrays
 * (a copy from pageable memory is not guaranteed to be done on return);
 * returns the device pointers, or NULL with err set. */
static char *upload_coefs(kb_cuda_state *st, const char *op, const kb_diffusion_coefs *coefs, const int *t, int B,
                          size_t extra, kb_err *err) {
    size_t kbytes = (size_t)B * sizeof(kb_diffusion_coefs), fbytes = t ? (size_t)B * sizeof(int) : 0;
    char *s = (char *)kb_cuda_scratch(st, kbytes + fbytes + extra, op, err);
    if (!s) return NULL;
    cudaError_t e = cudaMemcpyAsync(s, coefs, kbytes, cudaMemcpyHostToDevice, st->stream);
    if (e == cudaSuccess && t) {
        int *flags = (int *)malloc(fbytes);
        if (!flags) {
            kb_fail(err, "%s: out of host memory", op);
            return NULL;
        }
        for (int b = 0; b < B; b++) flags[b] = t[b] == 0;
        e = cudaMemcpyAsync(s + kbytes, flags, fbytes, cudaMemcpyHostToDevice, st->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(st->stream);
        free(flags);
    } else if (e == cudaSuccess) {
        e = cudaStreamSynchronize(st->stream);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        kb_fail(err, "%s: copying %d coefficient sets to the GPU failed: %s", op, B, cudaGetErrorString(e));
        return NULL;
    }
    return s;
}

extern "C" int kb_diffusion_q_sample_cuda(kb_ctx *ctx, const kb_diffusion_coefs *coefs, const float *x_start,
                                          const float *noise, int B, int64_t n, float *x_t, kb_err *err) {
    const char *op = "diffusion q_sample (cuda)";
    kb_cuda_state *st = ctx->cuda;
    char *s = upload_coefs(st, op, coefs, NULL, B, 0, err);
    if (!s) return -1;
    int64_t total = (int64_t)B * n;
    q_sample_kernel<<<kb_grid_1d(total), KB_CUDA_BLOCK, 0, st->stream>>>(x_t, x_start, noise,
                                                                         (const kb_diffusion_coefs *)s, n, total);
    KB_LAUNCH_CHECK(op, "q_sample_kernel");
    return 0;
}

extern "C" int kb_diffusion_loss_cuda(kb_ctx *ctx, const kb_diffusion_coefs *coefs, const int *t, const float *x_start,
                                      const float *noise, const float *x_t, const float *model_out, int learn_sigma,
                                      int B, int64_t n, float dloss, float *mse, float *vb, float *dmodel_out,
                                      kb_err *err) {
    const char *op = "diffusion loss (cuda)";
    kb_cuda_state *st = ctx->cuda;
    size_t kbytes = (size_t)B * sizeof(kb_diffusion_coefs), fbytes = (size_t)B * sizeof(int);
    char *s = upload_coefs(st, op, coefs, t, B, 2 * (size_t)B * sizeof(float), err);
    if (!s) return -1;
    float *terms = (float *)(s + kbytes + fbytes);
    /* the CPU's scalars: g = dloss / B, then / N (and / ln 2 for vb) */
    float g = dloss / (float)B, g_mse = g / (float)n, g_vb = (g / KB_DIFF_LN2F) / (float)n;
    loss_kernel<<<B, KB_CUDA_BLOCK, 0, st->stream>>>(terms, dmodel_out, (const kb_diffusion_coefs *)s,
                                                (const int *)(s + kbytes), x_start, noise, x_t, model_out,
                                                learn_sigma, n, g_mse, g_vb, dloss, (float)(n * B));
    KB_LAUNCH_CHECK(op, "loss_kernel");
    KB_CUDA_CHECK(op, cudaMemcpyAsync(mse, terms, (size_t)B * sizeof(float), cudaMemcpyDeviceToHost, st->stream));
    KB_CUDA_CHECK(op, cudaMemcpyAsync(vb, terms + B, (size_t)B * sizeof(float), cudaMemcpyDeviceToHost, st->stream));
    KB_CUDA_CHECK(op, cudaStreamSynchronize(st->stream));
    return 0;
}
