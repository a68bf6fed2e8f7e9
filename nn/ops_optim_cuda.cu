/* CUDA versions of the optimiser ops (nn/ops_optim.h): one thread per
 * element with the shared per-element arithmetic, and a two-pass
 * fixed-order reduction for the squared norm. */
#include "nn/cuda_common.cuh"

extern "C" {
#include "nn/ops_optim.h"
}
#include "nn/ops_optim_elem.h"

static const int kSumBlocks = 1024;

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, kb_adamw_scalars s) {
    KB_GRID_STRIDE(i, n) kb_adamw_elem(&p[i], g[i], &m[i], &v[i], &s);
}

__global__ void ema_kernel(float *ema, const float *p, int64_t n, float decay, float one_minus_decay) {
    KB_GRID_STRIDE(i, n) ema[i] = kb_ema_elem(ema[i], p[i], decay, one_minus_decay);
}

__global__ void sumsq_partial_kernel(double *partial, const float *x, int64_t n) {
    double s = 0.0;
    KB_GRID_STRIDE(i, n) s += (double)x[i] * (double)x[i];
    s = kb_block_sum_tree(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sumsq_finish_kernel(double *out, const double *partial, int nparts) {
    double s = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) s += partial[i];
    s = kb_block_sum_tree(s);
    if (threadIdx.x == 0) *out = s;
}

extern "C" {

int kb_adamw_step_cuda(kb_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n,
                       const kb_adamw_scalars *s, kb_err *err) {
    if (n == 0) return 0;
    adamw_kernel<<<kb_grid_1d(n), KB_CUDA_BLOCK, 0, ctx->cuda->stream>>>(p, g, m, v, n, *s);
    KB_LAUNCH_CHECK("kb_adamw_step", "adamw_kernel");
    return 0;
}

int kb_ema_update_cuda(kb_ctx *ctx, float *ema, const float *p, int64_t n, double decay, kb_err *err) {
    if (n == 0) return 0;
    ema_kernel<<<kb_grid_1d(n), KB_CUDA_BLOCK, 0, ctx->cuda->stream>>>(ema, p, n, (float)decay, (float)(1.0 - decay));
    KB_LAUNCH_CHECK("kb_ema_update", "ema_kernel");
    return 0;
}

int kb_sumsq_cuda(kb_ctx *ctx, double *out, const float *x, int64_t n, kb_err *err) {
    const char *op = "kb_sumsq";
    kb_cuda_state *st = ctx->cuda;
    int nblocks = (int)((n + KB_CUDA_BLOCK - 1) / KB_CUDA_BLOCK);
    nblocks = nblocks < 1 ? 1 : (nblocks > kSumBlocks ? kSumBlocks : nblocks);
    double *partial = (double *)kb_cuda_scratch(st, (size_t)(nblocks + 1) * sizeof(double), op, err);
    if (!partial) return -1;
    sumsq_partial_kernel<<<nblocks, KB_CUDA_BLOCK, 0, st->stream>>>(partial, x, n);
    KB_LAUNCH_CHECK(op, "sumsq_partial_kernel");
    sumsq_finish_kernel<<<1, KB_CUDA_BLOCK, 0, st->stream>>>(partial + nblocks, partial, nblocks);
    KB_LAUNCH_CHECK(op, "sumsq_finish_kernel");
    KB_CUDA_CHECK(op, cudaMemcpyAsync(out, partial + nblocks, sizeof(double), cudaMemcpyDeviceToHost, st->stream));
    KB_CUDA_CHECK(op, cudaStreamSynchronize(st->stream));
    return 0;
}

} /* extern "C" */
