/* Everything the metrics know about one image set (an "evaluation set"),
 * and its .npz interchange with the peers:
 *
 *  ADM reference batch (openai/guided-diffusion evaluations/):
 *    arr_0 [N, H, W, 3] uint8 (NHWC; the images, used for precision/recall),
 *    mu [2048] f64, sigma [2048, 2048] f64 (pool statistics, for FID),
 *    mu_s [2023] f64, sigma_s [2023, 2023] f64 (spatial statistics, sFID).
 *    An ADM sample batch is arr_0 alone (plus arr_1 labels, ignored).
 *  pytorch-fid statistics (--save-stats): mu, sigma.
 *  kindbench statistics (`kindbench eval stats`, and the features cache):
 *    mu, sigma, mu_s, sigma_s as above, and optionally
 *    pool [N, 2048] f32       pool features (P/R, density/coverage, KID
 *                             against a statistics file without images),
 *    logits [N, 1008] f32     Inception Score of the set,
 *    spectrum [K] f64         log10 radial power spectrum (metrics/spectral.h)
 *    spectrum_hw [2] i64      the image size it was measured at,
 *    arr_0                    the images, when asked for (an ADM reference batch),
 *    kb_meta [L] uint8        UTF-8 JSON: format, mode, featuriser, weights
 *                             SHA-256, image count, source and its hash.
 *  numpy reads every key (np.load); pytorch-fid and the ADM evaluator read
 *  theirs and ignore the rest, so our files serve both tools unchanged.
 *
 * Statistics are read as float64 (float32 files are widened). A file with
 * mu but no sigma (or mu_s without sigma_s) is an error, as is a dimension
 * mismatch between mu and sigma. */
#ifndef KB_METRICS_REFSTATS_H
#define KB_METRICS_REFSTATS_H

#include <stddef.h>
#include <stdint.h>

#include "metrics/stats.h"
#include "util/err.h"

#define KB_STATS_FORMAT "kindbench-stats"
#define KB_STATS_VERSION 1

/* What is recorded about how features were made (kb_meta). Empty strings
 * mean unknown (files from ADM or pytorch-fid carry none of this). */
typedef struct {
    char mode[32];          /* "adm", "pytorch-fid", "clean" */
    char featurizer[64];    /* "inception-2015-12-05", "pixels" (tests) */
    char weights_sha256[65];
    char source[512];       /* the input it came from (path as given) */
    char source_sha256[65]; /* content hash of the images */
    int64_t count;          /* images; 0 unknown */
} kb_stats_meta;

typedef struct {
    char label[32];          /* "samples", "reference": for messages */
    char path[4096];
    kb_stats_meta meta;
    int has_pool_stats, has_spatial_stats;
    kb_gstats pool_stats, spatial_stats;
    kb_features feat;        /* pool and logits when known (spatial only while computing) */
    int spectrum_bins;       /* 0: none */
    int spectrum_h, spectrum_w;
    double *spectrum;        /* [spectrum_bins] */
    char spectrum_note[256]; /* why there is no spectrum, when known */
    int has_images;          /* the npz holds arr_0 (not loaded here) */
    int stats_from_file;     /* mu/sigma were read from the npz (not computed here) */
} kb_evalset;

void kb_evalset_init(kb_evalset *s, const char *label, const char *path);
void kb_evalset_free(kb_evalset *s);

/* Reads the statistics, features, spectrum and meta an .npz holds (not
 * arr_0: has_images tells whether it is there). want_features = 0 skips
 * the pool/logits arrays (large). */
int kb_evalset_read_npz(const char *path, int want_features, kb_evalset *out, kb_err *err);

/* Optional images to store as arr_0 ([n, h, w, c] uint8). */
typedef struct {
    const uint8_t *data;
    int64_t n;
    int h, w, c;
} kb_arr0;

/* Writes an .npz atomically with what s holds: mu/sigma, mu_s/sigma_s,
 * spectrum, kb_meta always (when present); pool/logits when with_features;
 * arr_0 when images is non-NULL. */
int kb_evalset_write_npz(const char *path, const kb_evalset *s, int with_features, const kb_arr0 *images,
                         kb_err *err);

/* ---- the features cache: one npz per (images, mode, featuriser, weights) ---- */

/* The cache directory: explicit, else $KINDBENCH_FEATURES_CACHE, else
 * $XDG_CACHE_HOME/kindbench/features, else ~/.cache/kindbench/features. */
int kb_features_cache_dir(const char *explicit_dir, char *out, size_t outsz, kb_err *err);
/* The file for a set: DIR/<sha256 of the key fields and KB_DECODE_VERSION>.npz. */
int kb_features_cache_path(const char *dir, const kb_stats_meta *m, char *out, size_t outsz, kb_err *err);
/* 1 if m and the file's meta agree on what the cached features depend on. */
int kb_stats_meta_same_features(const kb_stats_meta *a, const kb_stats_meta *b);

#endif
