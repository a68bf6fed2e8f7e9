#include "datasets/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fixed-point fraction bits: 8 bits for the result, 2 for the overshoot of
 * filters with negative lobes, 32-bit accumulator (Pillow's PRECISION_BITS). */
#define KB_PRECISION_BITS (32 - 8 - 2)

typedef struct {
    double (*weight)(double x);
    double support;
} kb_filter_def;

static double box_weight(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

/* Keys' cubic convolution with a = -0.5, written in the same operation order
 * as Pillow so the double-precision taps are identical. */
static double bicubic_weight(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static const kb_filter_def filter_defs[] = {{box_weight, 0.5}, {bicubic_weight, 2.0}};

/* Taps for one axis: for output i, taps[i*ksize .. +count[i]) apply to input
 * samples first[i] ... */
typedef struct {
    int ksize;
    int *first;
    int *count;
    int32_t *taps;  /* fixed point, for 8-bit images */
    double *dtaps;  /* the normalised double taps, for float images ('F' mode) */
} kb_axis_taps;

static void axis_taps_free(kb_axis_taps *t) {
    free(t->first);
    free(t->count);
    free(t->taps);
    free(t->dtaps);
}

static int32_t to_fixed(double k) {
    double s = k * (double)(1 << KB_PRECISION_BITS);
    return (int32_t)(k < 0 ? -0.5 + s : 0.5 + s);
}

/* Float taps for output sample i, normalised, then made fixed point. */
static void taps_for_output(int i, int in_size, double scale, double filterscale, double support,
                            const kb_filter_def *f, double *work, kb_axis_taps *t) {
    /* Pillow computes the centre from a float box origin (0) and a float
     * in-size; both are exact, so doubles reproduce it. */
    double center = 0.0 + (i + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; x++) {
        double w = f->weight((x + xmin - center + 0.5) * ss);
        work[x] = w;
        ww += w;
    }
    int32_t *k = t->taps + (size_t)i * t->ksize;
    double *dk = t->dtaps + (size_t)i * t->ksize;
    for (int x = 0; x < t->ksize; x++) k[x] = 0, dk[x] = 0.0;
    for (int x = 0; x < xmax; x++) {
        dk[x] = ww != 0.0 ? work[x] / ww : work[x];
        k[x] = to_fixed(dk[x]);
    }
    t->first[i] = xmin;
    t->count[i] = xmax;
}

static int axis_taps_make(int in_size, int out_size, const kb_filter_def *f, kb_axis_taps *t, kb_err *err) {
    memset(t, 0, sizeof *t);
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->first = malloc(sizeof(int) * out_size);
    t->count = malloc(sizeof(int) * out_size);
    t->taps = malloc(sizeof(int32_t) * (size_t)out_size * t->ksize);
    t->dtaps = malloc(sizeof(double) * (size_t)out_size * t->ksize);
    double *work = malloc(sizeof(double) * t->ksize);
    if (!t->first || !t->count || !t->taps || !t->dtaps || !work) {
        free(work);
        axis_taps_free(t);
        return kb_fail(err, "resize: out of memory for %d->%d taps", in_size, out_size);
    }
    for (int i = 0; i < out_size; i++) taps_for_output(i, in_size, scale, filterscale, support, f, work, t);
    free(work);
    return 0;
}

static uint8_t clip8(int32_t acc) {
    int32_t v = acc >> KB_PRECISION_BITS; /* arithmetic shift, as in Pillow */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* One output value: taps k over count samples spaced stride bytes apart. */
static uint8_t convolve(const uint8_t *p, size_t stride, const int32_t *k, int count) {
    int32_t acc = 1 << (KB_PRECISION_BITS - 1);
    for (int j = 0; j < count; j++) acc += (int32_t)p[(size_t)j * stride] * k[j];
    return clip8(acc);
}

static void pass_horizontal(const kb_image *in, const kb_axis_taps *t, kb_image *out) {
    int c = in->channels;
    for (int y = 0; y < out->height; y++) {
        const uint8_t *row = in->px + (size_t)y * in->width * c;
        uint8_t *orow = out->px + (size_t)y * out->width * c;
        for (int x = 0; x < out->width; x++) {
            const int32_t *k = t->taps + (size_t)x * t->ksize;
            for (int ch = 0; ch < c; ch++)
                orow[x * c + ch] = convolve(row + (size_t)t->first[x] * c + ch, c, k, t->count[x]);
        }
    }
}

static void pass_vertical(const kb_image *in, const kb_axis_taps *t, kb_image *out) {
    int c = in->channels;
    size_t stride = (size_t)in->width * c;
    for (int y = 0; y < out->height; y++) {
        const int32_t *k = t->taps + (size_t)y * t->ksize;
        const uint8_t *col0 = in->px + (size_t)t->first[y] * stride;
        uint8_t *orow = out->px + (size_t)y * out->width * c;
        for (size_t i = 0; i < (size_t)out->width * c; i++) orow[i] = convolve(col0 + i, stride, k, t->count[y]);
    }
}

static int copy_image(const kb_image *src, kb_image *out, kb_err *err) {
    if (kb_image_alloc(out, src->width, src->height, src->channels, err)) return -1;
    memcpy(out->px, src->px, (size_t)src->width * src->height * src->channels);
    return 0;
}

/* One separable pass along x (horizontal) or y into a freshly allocated image. */
static int run_pass(const kb_image *in, int out_w, int out_h, int horizontal, const kb_filter_def *f, kb_image *out,
                    kb_err *err) {
    kb_axis_taps t;
    int in_size = horizontal ? in->width : in->height, out_size = horizontal ? out_w : out_h;
    if (axis_taps_make(in_size, out_size, f, &t, err)) return -1;
    if (kb_image_alloc(out, out_w, out_h, in->channels, err)) {
        axis_taps_free(&t);
        return -1;
    }
    if (horizontal) pass_horizontal(in, &t, out);
    else pass_vertical(in, &t, out);
    axis_taps_free(&t);
    return 0;
}

int kb_resample(const kb_image *src, int out_w, int out_h, kb_resample_filter filter, kb_image *out, kb_err *err) {
    out->px = NULL;
    if (out_w < 1 || out_h < 1) return kb_fail(err, "resize: invalid target size %dx%d", out_w, out_h);
    const kb_filter_def *f = &filter_defs[filter == KB_FILTER_BOX ? 0 : 1];
    /* Like Pillow: an unchanged axis gets no pass at all. */
    if (out_w == src->width && out_h == src->height) return copy_image(src, out, err);
    if (out_h == src->height) return run_pass(src, out_w, out_h, 1, f, out, err);
    if (out_w == src->width) return run_pass(src, out_w, out_h, 0, f, out, err);
    kb_image tmp;
    if (run_pass(src, out_w, src->height, 1, f, &tmp, err)) return -1;
    int rc = run_pass(&tmp, out_w, out_h, 0, f, out, err);
    kb_image_free(&tmp);
    return rc;
}

static int replace_by_resample(kb_image *img, int w, int h, kb_resample_filter filter, kb_err *err) {
    kb_image out;
    if (kb_resample(img, w, h, filter, &out, err)) return -1;
    kb_image_free(img);
    *img = out;
    return 0;
}

int kb_center_crop_arr(kb_image *img, int size, kb_err *err) {
    if (size < 1) return kb_fail(err, "center_crop_arr: size must be positive, got %d", size);
    while ((img->width < img->height ? img->width : img->height) >= 2 * size)
        if (replace_by_resample(img, img->width / 2, img->height / 2, KB_FILTER_BOX, err)) return -1;
    int short_side = img->width < img->height ? img->width : img->height;
    double scale = (double)size / (double)short_side;
    /* nearbyint rounds ties to even under the default rounding mode: Python's round(). */
    double wd = nearbyint((double)img->width * scale), hd = nearbyint((double)img->height * scale);
    if (wd * hd > (double)(1 << 30)) /* before the cast: a thin image at a large size overflows int */
        return kb_fail_as(err, KB_ERR_BAD_DATA,
                          "center_crop_arr: a %dx%d image scaled so its short side is %d would be %.0fx%.0f pixels, "
                          "past the supported 2^30", img->width, img->height, size, wd, hd);
    int w = (int)wd, h = (int)hd;
    if (replace_by_resample(img, w, h, KB_FILTER_BICUBIC, err))
        return kb_fail_wrap(err, "center_crop_arr: %dx%d scaled to %dx%d", img->width, img->height, w, h);
    if (w < size || h < size) return kb_fail(err, "center_crop_arr: resized to %dx%d, smaller than %d", w, h, size);
    int y0 = (h - size) / 2, x0 = (w - size) / 2, c = img->channels;
    kb_image out;
    if (kb_image_alloc(&out, size, size, c, err)) return -1;
    for (int y = 0; y < size; y++)
        memcpy(out.px + (size_t)y * size * c, img->px + ((size_t)(y0 + y) * w + x0) * c, (size_t)size * c);
    kb_image_free(img);
    *img = out;
    return 0;
}

/* ---- float images (Pillow's 'F' mode, ImagingResample*_32bpc) ----
 * Same taps in double, no fixed point: each output is the double sum of
 * pixel * tap in tap order, stored as float (rounded), after each pass. */

static void pass_f32(const float *in, int in_w, int in_h, int c, const kb_axis_taps *t, int horizontal, float *out,
                     int out_w, int out_h) {
    size_t sx = (size_t)c, sy = (size_t)in_w * c;
    for (int y = 0; y < out_h; y++)
        for (int x = 0; x < out_w; x++) {
            int i = horizontal ? x : y;
            const double *k = t->dtaps + (size_t)i * t->ksize;
            size_t step = horizontal ? sx : sy;
            const float *p = in + (horizontal ? (size_t)y * sy + (size_t)t->first[i] * sx : (size_t)t->first[i] * sy + (size_t)x * sx);
            for (int ch = 0; ch < c; ch++) {
                double ss = 0.0;
                for (int j = 0; j < t->count[i]; j++) ss += (double)p[(size_t)j * step + ch] * k[j];
                out[((size_t)y * out_w + x) * c + ch] = (float)ss;
            }
        }
    (void)in_h;
}

static int run_pass_f32(const float *in, int in_w, int in_h, int c, int out_w, int out_h, int horizontal,
                        const kb_filter_def *f, float *out, kb_err *err) {
    kb_axis_taps t;
    if (axis_taps_make(horizontal ? in_w : in_h, horizontal ? out_w : out_h, f, &t, err)) return -1;
    pass_f32(in, in_w, in_h, c, &t, horizontal, out, out_w, out_h);
    axis_taps_free(&t);
    return 0;
}

int kb_resample_f32(const float *src, int w, int h, int channels, int out_w, int out_h, kb_resample_filter filter,
                    float *dst, kb_err *err) {
    if (w < 1 || h < 1 || channels < 1 || out_w < 1 || out_h < 1)
        return kb_fail(err, "resize: invalid sizes %dx%dx%d -> %dx%d", w, h, channels, out_w, out_h);
    const kb_filter_def *f = &filter_defs[filter == KB_FILTER_BOX ? 0 : 1];
    if (out_w == w && out_h == h) {
        memcpy(dst, src, sizeof(float) * (size_t)w * h * channels);
        return 0;
    }
    if (out_h == h) return run_pass_f32(src, w, h, channels, out_w, out_h, 1, f, dst, err);
    if (out_w == w) return run_pass_f32(src, w, h, channels, out_w, out_h, 0, f, dst, err);
    float *tmp = malloc(sizeof(float) * (size_t)out_w * h * channels);
    if (!tmp) return kb_fail(err, "resize: out of memory for a %dx%d float image", out_w, h);
    int rc = run_pass_f32(src, w, h, channels, out_w, h, 1, f, tmp, err);
    if (!rc) rc = run_pass_f32(tmp, out_w, h, channels, out_w, out_h, 0, f, dst, err);
    free(tmp);
    return rc;
}
