/* How a uint8 image becomes the FID Inception's 299x299x3 input, in the three
 * ways the reference evaluators do it (metrics/inception.h):
 *
 *  adm          TF1 ResizeBilinear without half-pixel centres, inside the ADM
 *               evaluator's graph (torch-fidelity's "slow" port is bit-exact
 *               with it on CPU): src = dst * (in/out) in float, lo = floor,
 *               hi = min(lo + 1, in - 1), lerp in x then in y, all float; then
 *               (x - 128) / 128.
 *  pytorch-fid  x / 255, F.interpolate(bilinear, align_corners=False):
 *               src = (dst + 0.5) * (in/out) - 0.5 (scale a float division,
 *               src in double, clamped at 0), lo = trunc, hi = lo + 1 unless
 *               at the edge, l = float(src - lo), weights 1 - l and l (float);
 *               then 2x - 1.
 *  clean        clean-fid: each channel as a PIL 'F' image resized bicubic
 *               (datasets/resize.c, kb_resample_f32), clipped to [0, 255],
 *               then (x - 128) / 128.
 *
 * Channels: grey (and grey + alpha) is replicated to RGB and alpha dropped,
 * as PIL's .convert('RGB') does for L, LA and RGBA images (pytorch-fid reads
 * every image that way; note that it drops alpha without compositing, so a
 * transparent pixel keeps whatever colour it stores). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/resize.h"
#include "metrics/inception_impl.h"
#include "metrics/inception_preproc_elem.h"

static const char *const kModeNames[] = {"adm", "pytorch-fid", "clean"};

const char *kb_preproc_name(kb_preproc_mode m) {
    return (unsigned)m < sizeof kModeNames / sizeof kModeNames[0] ? kModeNames[m] : "?";
}

int kb_preproc_parse(const char *s, kb_preproc_mode *out, kb_err *err) {
    for (int i = 0; i < (int)(sizeof kModeNames / sizeof kModeNames[0]); i++)
        if (s && !strcmp(s, kModeNames[i])) {
            *out = (kb_preproc_mode)i;
            return 0;
        }
    return kb_fail(err, "unknown pre-processing mode '%s' (adm, pytorch-fid or clean)", s ? s : "(null)");
}

/* RGB values 0..255 as float, [H, W, 3]. */
static void to_rgb(const uint8_t *img, int64_t pixels, int C, float *rgb) {
    for (int64_t p = 0; p < pixels; p++) {
        const uint8_t *px = img + p * C;
        for (int ch = 0; ch < 3; ch++) rgb[p * 3 + ch] = (float)px[C >= 3 ? ch : 0];
    }
}

/* ---- adm: TF1 legacy bilinear ---- */

static void tf1_taps(int in, int out, kb_lerp_tap *t) {
    float scale = (float)in / (float)out; /* TF: in / static_cast<float>(out) */
    for (int o = 0; o < out; o++) {
        float src = (float)o * scale;
        int lo = (int)floorf(src);
        t[o].lo = lo;
        t[o].hi = lo + 1 < in - 1 ? lo + 1 : in - 1;
        t[o].frac = src - (float)lo;
    }
}

static void resize_adm(const float *rgb, int H, int W, float *out, kb_lerp_tap *tx, kb_lerp_tap *ty) {
    const int S = KB_INCEPTION_SIZE;
    tf1_taps(W, S, tx);
    tf1_taps(H, S, ty);
    for (int y = 0; y < S; y++) {
        const float *r0 = rgb + (size_t)ty[y].lo * W * 3, *r1 = rgb + (size_t)ty[y].hi * W * 3;
        for (int x = 0; x < S; x++)
            for (int ch = 0; ch < 3; ch++)
                out[((size_t)y * S + x) * 3 + ch] = kb_pp_adm(r0[tx[x].lo * 3 + ch], r0[tx[x].hi * 3 + ch],
                                                              r1[tx[x].lo * 3 + ch], r1[tx[x].hi * 3 + ch],
                                                              tx[x].frac, ty[y].frac);
    }
}

/* ---- pytorch-fid: torch bilinear, align_corners=False ---- */

/* ATen's weights as F.interpolate (torch 1.13, CPU) computes them: the scale
 * is a float division, the source coordinate is kept in double, the fraction
 * is rounded to float once, and 1 - fraction is taken in float. The taps are
 * the same; the outputs differ from torch's by up to about 1 ulp (2.4e-7
 * measured) where torch's vectorised kernel orders the float arithmetic
 * differently; only 299x299 inputs are bit-identical. */
static void torch_taps(int in, int out, kb_lerp_tap *t) {
    double scale = (double)((float)in / (float)out);
    for (int o = 0; o < out; o++) {
        double src = scale * ((double)o + 0.5) - 0.5;
        if (src < 0.0) src = 0.0;
        int lo = (int)src;
        t[o].lo = lo;
        t[o].hi = lo < in - 1 ? lo + 1 : lo;
        t[o].frac = (float)(src - (double)lo);
    }
}

static void resize_pytorch_fid(const float *rgb, int H, int W, float *out, kb_lerp_tap *tx, kb_lerp_tap *ty) {
    const int S = KB_INCEPTION_SIZE;
    torch_taps(W, S, tx);
    torch_taps(H, S, ty);
    for (int y = 0; y < S; y++) {
        const float *r0 = rgb + (size_t)ty[y].lo * W * 3, *r1 = rgb + (size_t)ty[y].hi * W * 3;
        for (int x = 0; x < S; x++)
            for (int ch = 0; ch < 3; ch++)
                out[((size_t)y * S + x) * 3 + ch] = kb_pp_torch(r0[tx[x].lo * 3 + ch], r0[tx[x].hi * 3 + ch],
                                                                r1[tx[x].lo * 3 + ch], r1[tx[x].hi * 3 + ch],
                                                                tx[x].frac, ty[y].frac);
    }
}

int kb_inception_taps(kb_preproc_mode mode, int in, kb_lerp_tap *taps) {
    if (mode == KB_PREPROC_ADM) tf1_taps(in, KB_INCEPTION_SIZE, taps);
    else if (mode == KB_PREPROC_PYTORCH_FID) torch_taps(in, KB_INCEPTION_SIZE, taps);
    else return -1;
    return 0;
}

/* ---- clean: PIL bicubic on float ---- */

static int resize_clean(const float *rgb, int H, int W, float *out, kb_err *err) {
    const int S = KB_INCEPTION_SIZE;
    if (kb_resample_f32(rgb, W, H, 3, S, S, KB_FILTER_BICUBIC, out, err)) return -1;
    for (size_t i = 0; i < (size_t)S * S * 3; i++) {
        float v = out[i] < 0.0f ? 0.0f : out[i] > 255.0f ? 255.0f : out[i];
        out[i] = (v - 128.0f) / 128.0f;
    }
    return 0;
}

int kb_inception_check_input(int H, int W, int C, kb_preproc_mode mode, kb_err *err) {
    if (H < 1 || W < 1 || H > (1 << 16) || W > (1 << 16) || C < 1 || C > 4)
        return kb_fail(err, "inception pre-processing: image %dx%d with %d channels (need 1-4 channels, sides 1..65536)",
                       H, W, C);
    if (mode != KB_PREPROC_ADM && mode != KB_PREPROC_PYTORCH_FID && mode != KB_PREPROC_CLEAN)
        return kb_fail(err, "inception pre-processing: unknown mode %d", (int)mode);
    return 0;
}

int kb_inception_preprocess(const uint8_t *image, int H, int W, int C, kb_preproc_mode mode, float *out, kb_err *err) {
    if (kb_inception_check_input(H, W, C, mode, err)) return -1;
    float *rgb = malloc(sizeof(float) * (size_t)H * W * 3);
    kb_lerp_tap *taps = malloc(sizeof(kb_lerp_tap) * 2 * KB_INCEPTION_SIZE);
    int rc = 0;
    if (!rgb || !taps) rc = kb_fail(err, "inception pre-processing: out of memory for a %dx%d image", W, H);
    else {
        to_rgb(image, (int64_t)H * W, C, rgb);
        if (mode == KB_PREPROC_ADM) resize_adm(rgb, H, W, out, taps, taps + KB_INCEPTION_SIZE);
        else if (mode == KB_PREPROC_PYTORCH_FID) resize_pytorch_fid(rgb, H, W, out, taps, taps + KB_INCEPTION_SIZE);
        else rc = resize_clean(rgb, H, W, out, err);
    }
    free(rgb);
    free(taps);
    return rc;
}
