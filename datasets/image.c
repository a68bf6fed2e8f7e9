#include "datasets/image.h"

#include <stdlib.h>
#include <string.h>

/* The pixel count bounds memory (a corrupt header's size fails here) and
 * keeps w*h*c inside size_t; a side may be long, as the intermediate of
 * center_crop_arr is for a thin image (1x2000 at 64 px: 64x128000). */
#define KB_IMAGE_MAX_SIDE (1 << 24)
#define KB_IMAGE_MAX_PIXELS ((int64_t)1 << 30)

int kb_image_alloc(kb_image *img, int width, int height, int channels, kb_err *err) {
    img->px = NULL;
    img->width = width;
    img->height = height;
    img->channels = channels;
    if (width < 1 || height < 1 || width > KB_IMAGE_MAX_SIDE || height > KB_IMAGE_MAX_SIDE ||
        (int64_t)width * height > KB_IMAGE_MAX_PIXELS || channels < 1 || channels > 4)
        return kb_fail_as(err, KB_ERR_BAD_DATA, "unsupported image size %dx%d with %d channels", width, height,
                          channels);
    img->px = malloc((size_t)width * height * channels);
    if (!img->px) return kb_fail(err, "out of memory for a %dx%d image", width, height);
    return 0;
}

void kb_image_free(kb_image *img) {
    free(img->px);
    img->px = NULL;
}

static uint8_t over(uint8_t c, uint8_t a, uint8_t bg) {
    return (uint8_t)(((unsigned)c * a + (unsigned)bg * (255u - a) + 127u) / 255u);
}

/* One source pixel (any channel count) to RGB over bg. */
static void pixel_to_rgb(const uint8_t *s, int ch, const kb_background *bg, uint8_t *d) {
    switch (ch) {
    case 1: d[0] = d[1] = d[2] = s[0]; break;
    case 2:
        for (int k = 0; k < 3; k++) d[k] = over(s[0], s[1], bg->rgb[k]);
        break;
    case 3: memcpy(d, s, 3); break;
    default:
        for (int k = 0; k < 3; k++) d[k] = over(s[k], s[3], bg->rgb[k]);
        break;
    }
}

int kb_image_flatten(kb_image *img, int out_channels, const kb_background *bg, kb_err *err) {
    if (img->channels == out_channels) return 0;
    if (out_channels == 1)
        return kb_fail(err, "image has %d channels, but this dataset keeps 1 (grey)", img->channels);
    if (out_channels != 3) return kb_fail(err, "flatten: unsupported output channel count %d", out_channels);
    kb_image out;
    if (kb_image_alloc(&out, img->width, img->height, 3, err)) return -1;
    size_t n = (size_t)img->width * img->height;
    for (size_t i = 0; i < n; i++) pixel_to_rgb(img->px + i * img->channels, img->channels, bg, out.px + i * 3);
    kb_image_free(img);
    *img = out;
    return 0;
}

int kb_image_pad_square(kb_image *img, const kb_background *bg, kb_err *err) {
    int c = img->channels;
    if (c != 1 && c != 3) return kb_fail(err, "pad: image must be flattened first (has %d channels)", c);
    int side = img->width > img->height ? img->width : img->height;
    if (img->width == side && img->height == side) return 0;
    kb_image out;
    if (kb_image_alloc(&out, side, side, c, err)) return -1;
    /* Grey images pad with the background's first component. */
    for (size_t i = 0; i < (size_t)side * side; i++)
        for (int k = 0; k < c; k++) out.px[i * c + k] = bg->rgb[k];
    int x0 = (side - img->width) / 2, y0 = (side - img->height) / 2;
    size_t row = (size_t)img->width * c;
    for (int y = 0; y < img->height; y++)
        memcpy(out.px + ((size_t)(y0 + y) * side + x0) * c, img->px + (size_t)y * row, row);
    kb_image_free(img);
    *img = out;
    return 0;
}
