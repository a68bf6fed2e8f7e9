/* `kindbench data prepare`: source -> decoded, flattened, resized images ->
 * a checksummed cache, written atomically. Decoding runs in parallel over
 * chunks of images (OpenMP); the result does not depend on the thread count. */
#ifndef KB_DS_PREPARE_H
#define KB_DS_PREPARE_H

#include <stdint.h>

#include "datasets/image.h"
#include "datasets/source.h"
#include "datasets/split.h"
#include "util/err.h"

#define KB_MAX_RESOLUTION 4096

typedef struct {
    kb_source_opts source;
    const char *out_path;
    const char *name;          /* NULL: derived from source, style and resolution */
    int resolution;            /* 1..KB_MAX_RESOLUTION */
    kb_background background;  /* for transparency and padding */
    int pad_square;            /* -1: the source's default; 0 or 1 to force */
    kb_split_opts split;
    int quiet;                 /* no progress output */
    int skip_unreadable;       /* drop images whose content does not decode (KB_ERR_BAD_DATA; listed)
                                  instead of stopping; other load failures still stop */
} kb_prepare_opts;

void kb_prepare_opts_init(kb_prepare_opts *o);

typedef struct {
    int64_t count, train, test;
    int nclasses, pretrain, novel, unused;
    int64_t ignored;           /* source entries skipped (folder: non-image files) */
    int64_t unreadable;        /* images dropped by skip_unreadable */
    char name[256];
    double seconds;
} kb_prepare_summary;

int kb_prepare(const kb_prepare_opts *o, kb_prepare_summary *summary, kb_err *err);

/* The per-image recipe on its own (decode aside): flatten to channels over
 * bg, optionally pad to a square, ADM center_crop_arr to resolution. */
int kb_prepare_image(kb_image *img, int channels, const kb_background *bg, int pad_square, int resolution,
                     kb_err *err);

#endif
