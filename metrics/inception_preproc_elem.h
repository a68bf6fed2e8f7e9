/* One output value of the FID Inception's bilinear pre-processing (see
 * metrics/inception_preproc.c), shared by the CPU loops and the CUDA kernel
 * (metrics/inception_preproc_cuda.cu) so that both produce the same bits.
 * a, b are the source row lo's values at columns lo and hi, c, d row hi's,
 * each a uint8 value as float (0..255). Products and sums are nn/rng.h's
 * KB_F* operations: rounded one at a time, never fused. */
#ifndef KB_INCEPTION_PREPROC_ELEM_H
#define KB_INCEPTION_PREPROC_ELEM_H

#include "nn/rng.h" /* KB_HD, KB_F* */

/* One tap of a bilinear resize along one axis: source indices and weight of hi. */
typedef struct {
    int lo, hi;
    float frac;
} kb_lerp_tap;

/* adm: TF1 legacy bilinear, lerp in x then in y, then (v - 128) / 128. */
KB_HD float kb_pp_adm(float a, float b, float c, float d, float fx, float fy) {
    float top = KB_FADD(a, KB_FMUL(KB_FSUB(b, a), fx));
    float bottom = KB_FADD(c, KB_FMUL(KB_FSUB(d, c), fx));
    float v = KB_FADD(top, KB_FMUL(KB_FSUB(bottom, top), fy));
    return KB_FDIV(KB_FSUB(v, 128.0f), 128.0f);
}

/* pytorch-fid: x / 255, ATen's bilinear weights (w0 = 1 - w1, h0 = 1 - h1), then 2v - 1. */
KB_HD float kb_pp_torch(float a, float b, float c, float d, float w1, float h1) {
    float w0 = KB_FSUB(1.0f, w1), h0 = KB_FSUB(1.0f, h1);
    a = KB_FDIV(a, 255.0f), b = KB_FDIV(b, 255.0f), c = KB_FDIV(c, 255.0f), d = KB_FDIV(d, 255.0f);
    float v = KB_FADD(KB_FMUL(h0, KB_FADD(KB_FMUL(w0, a), KB_FMUL(w1, b))),
                      KB_FMUL(h1, KB_FADD(KB_FMUL(w0, c), KB_FMUL(w1, d))));
    return KB_FSUB(KB_FMUL(2.0f, v), 1.0f);
}

#endif
