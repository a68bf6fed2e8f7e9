/* In-memory 8-bit images and the pixel operations that turn a decoded source
 * image into the form the resize recipe expects: alpha composited onto a
 * background, grey replicated to RGB (or kept grey), optional padding to a
 * square. Pixels are interleaved, rows top to bottom, no row padding. */
#ifndef KB_DS_IMAGE_H
#define KB_DS_IMAGE_H

#include <stdint.h>

#include "util/err.h"

/* channels: 1 = grey (L), 2 = grey+alpha (LA), 3 = RGB, 4 = RGBA. */
typedef struct {
    int width;
    int height;
    int channels;
    uint8_t *px;
} kb_image;

/* Allocates an uninitialised image; fails on absurd sizes or no memory. */
int kb_image_alloc(kb_image *img, int width, int height, int channels, kb_err *err);
void kb_image_free(kb_image *img);

/* An RGB background colour for transparent pixels and padding. */
typedef struct {
    uint8_t rgb[3];
} kb_background;

/* Replaces img by an image with out_channels (1 or 3) and no alpha: alpha is
 * composited onto bg with out = (c*a + bg*(255-a) + 127) / 255 (integer, i.e.
 * the nearest integer; 255 is odd so there are no ties), grey is replicated to
 * RGB. For out_channels 1 an input with colour or alpha is an error: only
 * Fashion-MNIST is kept grey and its images are plain grey. */
int kb_image_flatten(kb_image *img, int out_channels, const kb_background *bg, kb_err *err);

/* Pads a flattened image (1 or 3 channels) to a square with bg, the image
 * centred; an odd leftover pixel goes to the right/bottom. */
int kb_image_pad_square(kb_image *img, const kb_background *bg, kb_err *err);

#endif
