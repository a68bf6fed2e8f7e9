/* Image resizing that reproduces Pillow's Image.resize() for 8-bit images
 * bit for bit, and the ADM/DiT `center_crop_arr` recipe built on it, so that
 * caches match what the reference PyTorch pipelines feed their models.
 *
 * Pillow's algorithm (libImaging/Resample.c), which this follows:
 *  - separable: a horizontal pass (only when the width changes), then a
 *    vertical pass (only when the height changes);
 *  - output sample i is centred at (i + 0.5) * scale in input coordinates,
 *    scale = in/out; when downscaling the filter is stretched by scale
 *    (antialiasing), so its support is support * max(scale, 1);
 *  - taps are normalised to sum 1, then turned into fixed point with
 *    22 fraction bits (32 - 8 - 2), rounding half away from zero;
 *  - each output is (2^21 + sum pixel*tap) >> 22, clipped to 0..255, after
 *    each pass (the intermediate image is 8-bit too). */
#ifndef KB_DS_RESIZE_H
#define KB_DS_RESIZE_H

#include "datasets/image.h"
#include "util/err.h"

typedef enum { KB_FILTER_BOX = 0, KB_FILTER_BICUBIC = 1 } kb_resample_filter;

/* Resizes src (any channel count; channels are independent) into a new image
 * out of out_w x out_h, as Pillow's src.resize((out_w, out_h), filter). */
int kb_resample(const kb_image *src, int out_w, int out_h, kb_resample_filter filter, kb_image *out, kb_err *err);

/* Float images as Pillow's 'F' mode resizes them (clean-fid resizes each
 * channel of a uint8 image this way: Image.fromarray(ch.astype(float32),
 * mode='F').resize(...)): the same taps as kb_resample, kept in double, each
 * output the double sum of pixel*tap stored as float, after each pass; no
 * clipping, no rounding to integers. src and dst are interleaved
 * [h, w, channels] and [out_h, out_w, channels]; channels are independent. */
int kb_resample_f32(const float *src, int w, int h, int channels, int out_w, int out_h, kb_resample_filter filter,
                    float *dst, kb_err *err);

/* ADM's center_crop_arr(img, size), as in guided-diffusion and DiT:
 *   while min(w, h) >= 2*size: img = img.resize((w//2, h//2), BOX)
 *   scale = size / min(w, h)
 *   img = img.resize((round(w*scale), round(h*scale)), BICUBIC)
 *   crop size x size at ((H-size)//2, (W-size)//2)
 * round() is Python's: ties to even. Replaces *img with the size x size crop. */
int kb_center_crop_arr(kb_image *img, int size, kb_err *err);

#endif
