/* CPU-only builds: the GPU pre-processing reports that there is no CUDA. */
#include "metrics/inception_impl.h"

int kb_inception_preprocess_cuda(kb_ctx *ctx, const uint8_t *images, int n, int H, int W, int C, kb_preproc_mode mode,
                                 const kb_lerp_tap *taps, float *out, kb_err *err) {
    (void)ctx, (void)images, (void)n, (void)H, (void)W, (void)C, (void)mode, (void)taps, (void)out;
    return kb_fail(err, "inception pre-processing on cuda: this kindbench was built without CUDA");
}
