/* The adm and pytorch-fid pre-processing of the FID Inception on the GPU
 * (kb_inception_preprocess_cuda, metrics/inception_impl.h): one thread per
 * output value, the per-value arithmetic of metrics/inception_preproc_elem.h,
 * so the result is bit-identical to the CPU's. Channels as the CPU: grey (and
 * grey + alpha) replicated, alpha dropped. */
#include "nn/cuda_common.cuh"

#include "metrics/inception_preproc_elem.h"
extern "C" { /* C headers without guards of their own */
#include "metrics/inception_impl.h"
}

__global__ void preprocess_kernel(float *out, const uint8_t *images, int64_t total, int H, int W, int C, int adm,
                                  const kb_lerp_tap *tx, const kb_lerp_tap *ty) {
    const int S = KB_INCEPTION_SIZE;
    KB_GRID_STRIDE(i, total) {
        int ch = (int)(i % 3);
        int64_t p = i / 3;
        int x = (int)(p % S), y = (int)((p / S) % S);
        int64_t img = p / ((int64_t)S * S);
        int sc = C >= 3 ? ch : 0;
        const uint8_t *base = images + img * H * W * C;
        const uint8_t *r0 = base + (int64_t)ty[y].lo * W * C, *r1 = base + (int64_t)ty[y].hi * W * C;
        float a = r0[tx[x].lo * C + sc], b = r0[tx[x].hi * C + sc];
        float c = r1[tx[x].lo * C + sc], d = r1[tx[x].hi * C + sc];
        out[i] = adm ? kb_pp_adm(a, b, c, d, tx[x].frac, ty[y].frac) : kb_pp_torch(a, b, c, d, tx[x].frac, ty[y].frac);
    }
}

extern "C" int kb_inception_preprocess_cuda(kb_ctx *ctx, const uint8_t *images, int n, int H, int W, int C,
                                            kb_preproc_mode mode, const kb_lerp_tap *taps, float *out, kb_err *err) {
    const char *op = "inception pre-processing (cuda)";
    if (mode != KB_PREPROC_ADM && mode != KB_PREPROC_PYTORCH_FID)
        return kb_fail(err, "%s: mode %s runs on the host only", op, kb_preproc_name(mode));
    int64_t total = (int64_t)n * KB_INCEPTION_SIZE * KB_INCEPTION_SIZE * 3;
    if (total == 0) return 0;
    preprocess_kernel<<<kb_grid_1d(total), KB_CUDA_BLOCK, 0, ctx->cuda->stream>>>(out, images, total, H, W, C,
                                                                           mode == KB_PREPROC_ADM, taps,
                                                                           taps + KB_INCEPTION_SIZE);
    KB_LAUNCH_CHECK(op, "preprocess_kernel");
    return 0;
}
