/* Image sets as `kindbench eval` takes them, and the pass that turns one
 * into an evaluation set (metrics/refstats.h): features, statistics and the
 * power spectrum.
 *
 * Inputs:
 *  - an image folder, read recursively: every *.png, *.jpg, *.jpeg, *.gif
 *    (any case) below it, depth first, each directory's entries in byte
 *    order; hidden entries (".name") skipped; other files are ignored and
 *    counted, except image formats we cannot decode (bmp, tif(f), webp, pgm,
 *    ppm), which are an error rather than silently dropped images. A flat
 *    folder (pytorch-fid's layout) and an ImageFolder tree both work; where
 *    pytorch-fid lists other files (subfolders, case, hidden files, GIF),
 *    see docs/metrics.md.
 *  - an .npz with arr_0 [N, H, W, C] (or [N, H, W]) uint8: an ADM batch;
 *  - a .kbd dataset cache, optionally filtered by split and class role.
 * Each image reaches the featuriser as RGB: grey replicated, alpha dropped,
 * which is what pytorch-fid's PIL .convert('RGB') does; a folder's files are
 * decoded to PIL's bytes exactly (kb_image_read_as_pil: a 16-bit grey PNG is
 * clipped at 255, as Pillow's mode "I" converts).
 *
 * The featuriser is a callback so that the pass is testable without the
 * Inception weights (`kindbench eval --featurizer pixels`, tests only). */
#ifndef KB_METRICS_EVAL_INPUT_H
#define KB_METRICS_EVAL_INPUT_H

#include <stdint.h>

#include "datasets/dataset.h"
#include "datasets/image.h"
#include "metrics/refstats.h"
#include "util/err.h"
#include "util/npy.h"

typedef enum { KB_INPUT_FOLDER = 0, KB_INPUT_NPZ, KB_INPUT_KBD } kb_input_kind;

typedef struct {
    kb_split split;     /* .kbd only; KB_SPLIT_ANY: all */
    kb_class_role role; /* .kbd only; KB_ROLE_ANY: all */
} kb_input_filter;

typedef struct {
    kb_input_kind kind;
    char path[4096];
    int64_t count;
    int64_t ignored;       /* folder: files that are not images */
    char **files;          /* folder: [count] paths */
    int64_t files_cap;
    kb_npy arr;            /* npz: arr_0 */
    struct kb_npz *npz;    /* npz: the archive, held open from probe to close */
    int npz_fd;            /* npz: its file (valid while npz is set) */
    int h, w, c;           /* npz and kbd: the fixed image size */
    kb_dataset ds;         /* kbd */
    int ds_open;
    int64_t *index;        /* kbd: selected images */
    kb_input_filter filter;
} kb_image_input;

void kb_input_filter_all(kb_input_filter *f);

/* What kb_image_input_open/probe return, besides 0 and -1, when the filter
 * does not fit the input (given for a folder or npz, or selecting no image
 * of the cache): the options are wrong for it, not the file. */
#define KB_INPUT_MISFIT 2

/* Opens a folder, an npz (reads arr_0 wholly) or a .kbd (verified; quiet:
 * no progress while its payload is hashed). Fails on an empty set, naming
 * the path: -1, or KB_INPUT_MISFIT. */
int kb_image_input_open(const char *path, const kb_input_filter *f, int quiet, kb_image_input *in, kb_err *err);
/* kb_image_input_open with an npz's arr_0 described (count, size, dtype
 * checked) but not read, so that an evaluation can check both its inputs
 * before it holds either's images; kb_image_input_load_data reads it
 * (nothing to do for a folder or cache), which loading images needs. */
int kb_image_input_probe(const char *path, const kb_input_filter *f, int quiet, kb_image_input *in, kb_err *err);
int kb_image_input_load_data(kb_image_input *in, kb_err *err);
void kb_image_input_close(kb_image_input *in);
const char *kb_input_kind_name(kb_input_kind k);

/* Image i as RGB (3 channels). Thread-safe. */
int kb_image_input_load(const kb_image_input *in, int64_t i, kb_image *img, kb_err *err);

/* SHA-256 (hex) of what the features depend on: a folder's relative paths
 * and file bytes in order; an npz file's bytes; a cache's payload checksum
 * and the filter. */
int kb_image_input_hash(const kb_image_input *in, char out[65], kb_err *err);

/* All images packed as [count, h, w, 3] uint8 (for arr_0); fails when they
 * differ in size. *data malloc'd. */
int kb_image_input_pack(const kb_image_input *in, uint8_t **data, int *h, int *w, kb_err *err);

/* Features of n RGB images [n, h, w, 3]; any output may be NULL. */
typedef int (*kb_featurize_fn)(void *user, const uint8_t *rgb, int64_t n, int h, int w, float *pool, float *spatial,
                               float *logits, kb_err *err);

typedef struct {
    kb_featurize_fn fn;
    void *user;
    int64_t pool_dim, spatial_dim, logits_dim;
    char id[64];             /* recorded as meta.featurizer */
    char weights_sha256[65]; /* recorded; part of the cache key */
    char mode[32];           /* preprocessing mode name, recorded */
    int batch;               /* images per call */
} kb_featurizer;

/* How a featurisation runs: quiet = no progress output; resume_path, when
 * set, is a file of the features so far (metrics/features_partial.h), read
 * to continue a stopped run and deleted once all images are done;
 * resume_tag names what else the rows depend on (device, threads). */
typedef struct {
    int quiet;
    const char *resume_path;
    const char *resume_tag;
} kb_featurize_opts;

/* Featurises every image of in: out->feat gets pool and logits, out gets
 * pool and spatial statistics (when count >= 2; spatial features are freed
 * once summarised) and the spectrum (when all images share one size of at
 * least 2x2), and out->meta the featuriser's identity, count and source. */
int kb_featurize_input(const kb_image_input *in, const kb_featurizer *fz, const kb_featurize_opts *fo, kb_evalset *out,
                       kb_err *err);

#endif
