/* Decoding and encoding of image files through well-kept libraries: libpng,
 * libjpeg(-turbo) and giflib. Decoders return 8-bit images with 1 (grey),
 * 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, mirroring what Pillow gives
 * for the same file:
 *  - PNG: palette -> RGB(A), tRNS -> alpha, 1/2/4-bit grey -> 8-bit,
 *    16-bit -> the high byte (Pillow's RGB;16B raw mode does the same; for
 *    16-bit grey see kb_image_read_as_pil);
 *  - JPEG: grey or RGB as libjpeg decodes it with its defaults (the same
 *    library and settings Pillow uses); CMYK is converted with Pillow's
 *    formula (Adobe CMYK JPEGs store inverted values);
 *  - GIF: the first frame on the logical screen, transparent index (and any
 *    screen area the frame does not cover) as alpha 0.
 * Errors name the file and what was wrong. All functions are thread-safe. */
#ifndef KB_DS_IMAGE_IO_H
#define KB_DS_IMAGE_IO_H

#include "datasets/image.h"
#include "util/err.h"

/* Raised whenever a decoder gives some file other pixels than before, so that
 * features cached from the old pixels are not reused (it is part of the
 * features cache key, metrics/refstats.h). 2: kb_image_read_as_pil clips
 * 16-bit grey; an index past a short PNG palette is grey, not black. */
#define KB_DECODE_VERSION 2

int kb_png_read(const char *path, kb_image *img, kb_err *err);
int kb_jpeg_read(const char *path, kb_image *img, kb_err *err);
int kb_gif_read(const char *path, kb_image *img, kb_err *err);
/* 1 if this build has giflib (KB_HAVE_GIF); without it kb_gif_read fails
 * with a message saying so. */
int kb_gif_supported(void);

/* Picks the decoder from the file's first bytes (not its name), so that a
 * mislabelled file still decodes and a non-image file gets a clear error. */
int kb_image_read(const char *path, kb_image *img, kb_err *err);

/* As kb_image_read, but a 16-bit grey PNG is clipped at 255 rather than
 * reduced to its high byte: with alpha dropped and grey replicated, the
 * result is byte for byte Pillow's Image.open(path).convert('RGB'), which is
 * what pytorch-fid, torch-fidelity and clean-fid measure (the eval path). */
int kb_image_read_as_pil(const char *path, kb_image *img, kb_err *err);

/* Writes a 1- or 3-channel 8-bit image as PNG, atomically (temp + rename). */
int kb_png_write(const char *path, const kb_image *img, kb_err *err);

#endif
