/* Plain references of the convolution and pooling ops (nn/ops_conv.h): the
 * definitions written as loops, sums in double, one thread. Slow; the tests
 * hold the fast paths to them. */
#include <float.h>
#include <math.h>

#include "nn/ops_conv.h"

int64_t kb_conv2d_out_h(const kb_conv2d_desc *d) { return (d->h + 2 * (int64_t)d->ph - d->kh) / d->sh + 1; }
int64_t kb_conv2d_out_w(const kb_conv2d_desc *d) { return (d->w + 2 * (int64_t)d->pw - d->kw) / d->sw + 1; }
int64_t kb_pool2d_out_h(const kb_pool2d_desc *d) { return (d->h + 2 * (int64_t)d->p - d->k) / d->s + 1; }
int64_t kb_pool2d_out_w(const kb_pool2d_desc *d) { return (d->w + 2 * (int64_t)d->p - d->k) / d->s + 1; }

/* One output pixel's k channels. */
static void conv_pixel(const kb_conv2d_desc *d, float *o, const float *in, const float *w, const float *bias,
                       int64_t b, int64_t y, int64_t x) {
    int64_t taps = (int64_t)d->kh * d->kw * d->c;
    for (int64_t oc = 0; oc < d->k; oc++) {
        double acc = bias ? bias[oc] : 0.0;
        for (int i = 0; i < d->kh; i++) {
            int64_t iy = y * d->sh - d->ph + i;
            if (iy < 0 || iy >= d->h) continue;
            for (int j = 0; j < d->kw; j++) {
                int64_t ix = x * d->sw - d->pw + j;
                if (ix < 0 || ix >= d->w) continue;
                const float *px = in + ((b * d->h + iy) * d->w + ix) * d->ldi;
                const float *wt = w + oc * taps + ((int64_t)i * d->kw + j) * d->c;
                for (int64_t ci = 0; ci < d->c; ci++) acc += (double)px[ci] * (double)wt[ci];
            }
        }
        float v = (float)acc;
        o[oc] = d->relu && v < 0.0f ? 0.0f : v;
    }
}

void kb_conv2d_ref(const kb_conv2d_desc *d, float *out, const float *in, const float *w, const float *bias) {
    int64_t oh = kb_conv2d_out_h(d), ow = kb_conv2d_out_w(d);
    for (int64_t b = 0; b < d->n; b++)
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0; x < ow; x++) conv_pixel(d, out + ((b * oh + y) * ow + x) * d->ldo, in, w, bias, b, y, x);
}

/* Window bounds clipped to the image: rows [*y0, *y1), columns [*x0, *x1). */
static void pool_window(const kb_pool2d_desc *d, int64_t y, int64_t x, int64_t *y0, int64_t *y1, int64_t *x0,
                        int64_t *x1) {
    *y0 = y * d->s - d->p;
    *x0 = x * d->s - d->p;
    *y1 = *y0 + d->k < d->h ? *y0 + d->k : d->h;
    *x1 = *x0 + d->k < d->w ? *x0 + d->k : d->w;
    if (*y0 < 0) *y0 = 0;
    if (*x0 < 0) *x0 = 0;
}

/* mode 0: max, 1: mean over in-image elements. The max takes a NaN and keeps
 * it, as torch's max_pool2d. */
static void pool_ref(const kb_pool2d_desc *d, float *out, const float *in, int mode) {
    int64_t oh = kb_pool2d_out_h(d), ow = kb_pool2d_out_w(d);
    for (int64_t b = 0; b < d->n; b++)
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0; x < ow; x++) {
                int64_t y0, y1, x0, x1;
                pool_window(d, y, x, &y0, &y1, &x0, &x1);
                float *o = out + ((b * oh + y) * ow + x) * d->ldo;
                for (int64_t ci = 0; ci < d->c; ci++) {
                    double acc = mode ? 0.0 : -INFINITY;
                    for (int64_t iy = y0; iy < y1; iy++)
                        for (int64_t ix = x0; ix < x1; ix++) {
                            double v = in[((b * d->h + iy) * d->w + ix) * d->ldi + ci];
                            acc = mode ? acc + v : (v > acc || v != v ? v : acc);
                        }
                    o[ci] = (float)(mode ? acc / (double)((y1 - y0) * (x1 - x0)) : acc);
                }
            }
}

void kb_maxpool2d_ref(const kb_pool2d_desc *d, float *out, const float *in) { pool_ref(d, out, in, 0); }
void kb_avgpool2d_ref(const kb_pool2d_desc *d, float *out, const float *in) { pool_ref(d, out, in, 1); }

void kb_global_avgpool_ref(float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi) {
    for (int64_t b = 0; b < n; b++)
        for (int64_t ci = 0; ci < c; ci++) {
            double acc = 0.0;
            for (int64_t p = 0; p < hw; p++) acc += in[(b * hw + p) * ldi + ci];
            out[b * c + ci] = (float)(acc / (double)hw);
        }
}
