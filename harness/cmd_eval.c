/* `kindbench eval`: sample quality metrics of a set of samples against a
 * reference (FID, sFID, IS, precision/recall, density/coverage, KID,
 * spectral distance), and `kindbench eval stats` to write reference
 * statistics. See docs/metrics.md. */
#include <csv.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/cli.h"
#include "metrics/eval_input.h"
#include "metrics/fid.h"
#include "metrics/inception.h"
#include "metrics/inception_score.h"
#include "metrics/kid.h"
#include "metrics/prdc.h"
#include "metrics/refstats.h"
#include "metrics/spectral.h"
#include "util/fileio.h"
#include "util/sha256.h"

enum { M_FID = 1, M_SFID = 2, M_IS = 4, M_PR = 8, M_DC = 16, M_KID = 32, M_SPECTRAL = 64 };
#define M_DEFAULT (M_FID | M_SFID | M_IS | M_PR)

static const struct {
    const char *name;
    unsigned bit;
} metric_names[] = {{"fid", M_FID}, {"sfid", M_SFID}, {"is", M_IS}, {"pr", M_PR},
                    {"dc", M_DC},   {"kid", M_KID},   {"spectral", M_SPECTRAL}};

typedef struct {
    unsigned metrics;
    int metrics_given;
    kb_preproc_mode mode;
    const char *csv, *weights, *cache_dir, *featurizer, *out;
    int allow_unverified, no_cache, quiet, threads, batch, with_features, with_images, samples_filter_given;
    kb_device device;
    kb_is_mode is_mode;
    kb_input_filter ref_filter, samples_filter;
    kb_dist_precision pr_precision;
    int pr_k, dc_k, kid_subsets;
    long long kid_subset_size;
    kb_fd_method fd_method;
    char compare_opt[40], stats_opt[40]; /* the first option given that applies to one form only ("" if none) */
} eval_opts;

static void opts_init(eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->metrics = M_DEFAULT;
    o->mode = KB_PREPROC_ADM;
    o->featurizer = "inception";
    o->device = KB_DEV_CPU;
    o->batch = 64;
    o->is_mode = KB_IS_ADM;
    kb_input_filter_all(&o->ref_filter);
    kb_input_filter_all(&o->samples_filter);
    o->pr_k = 3, o->dc_k = 5, o->kid_subsets = 100, o->kid_subset_size = 1000;
}

static void usage(void) {
    printf(
        "Usage: kindbench eval SAMPLES REFERENCE [options]\n"
        "       kindbench eval stats INPUT -o OUT.npz [options]\n\n"
        "Scores SAMPLES against REFERENCE. Each may be an image folder (PNG/JPEG/GIF, searched recursively), an\n"
        "ADM batch .npz (arr_0 uint8 NHWC, with or without precomputed mu/sigma/mu_s/sigma_s), a pytorch-fid\n"
        "statistics .npz (mu, sigma), a kindbench statistics .npz, or a .kbd dataset cache. Precomputed\n"
        "statistics are used as they are (as the ADM evaluator does); images are featurised with the FID\n"
        "Inception-v3, and a reference's features are cached so that it is featurised once. Both inputs are\n"
        "checked against the options and each other before any image is featurised.\n"
        "`eval stats` writes mu, sigma, mu_s, sigma_s, the spectrum and kb_meta for INPUT (readable by the ADM\n"
        "evaluator, pytorch-fid and numpy); arr_0 and the features only when asked.\n\n"
        "Options:\n"
        "  --metrics LIST          comma-separated: fid,sfid,is,pr,dc,kid,spectral, or all (default\n"
        "                          fid,sfid,is,pr: those the inputs cannot give are skipped with a note;\n"
        "                          a metric named explicitly that cannot be computed is an error)\n"
        "  --mode adm|pytorch-fid|clean   pre-processing (default adm: TF1 bilinear, (x-128)/128)\n"
        "  --csv FILE              also write the results as CSV (written atomically)\n"
        "  --inception-weights PATH  the FID Inception weights (default: $KINDBENCH_INCEPTION, then\n"
        "                          ${XDG_CACHE_HOME:-~/.cache}/kindbench/%s)\n"
        "  --device cpu|cuda       where Inception runs (default cpu); --threads N CPU threads\n"
        "  --batch N               images decoded and featurised per step (default 64)\n"
        "  --is-splits adm|fidelity  IS splits: ADM's contiguous 5000-image chunks (default), or\n"
        "                          torch-fidelity's 10 shuffled splits (mean +- std)\n"
        "  --ref-split train|test|all, --ref-classes pretrain|novel|unused|all\n"
        "                          select images of a .kbd REFERENCE or eval stats INPUT\n"
        "                          (--samples-split/--samples-classes: of SAMPLES)\n"
        "  --pr-k K, --dc-k K      neighbourhoods (default 3 as ADM, 5 as prdc)\n"
        "  --pr-precision fp32|fp16  distance arithmetic (default fp32; fp16 emulates ADM's GEMM)\n"
        "  --kid-subsets N, --kid-subset-size N   (default 100 x 1000; clamped to the smaller set)\n"
        "  --fd-method auto|eigh|cholesky|pivoted  Frechet distance route (default auto)\n"
        "  --features-cache DIR    cache directory (default $KINDBENCH_FEATURES_CACHE or\n"
        "                          ${XDG_CACHE_HOME:-~/.cache}/kindbench/features)\n"
        "  --no-cache              neither read nor write the features cache\n"
        "  -o, --output OUT.npz    eval stats: the file to write (required there)\n"
        "  --with-features         eval stats: also store pool and logits features (P/R, KID, IS later)\n"
        "  --with-images           eval stats: also store the images as arr_0 (an ADM reference batch)\n"
        "  --featurizer pixels     TESTS ONLY: 8x8 pixel averages instead of Inception (not FID)\n"
        "  --allow-unverified-weights  TESTS ONLY: load Inception weights whose SHA-256 is not the FID file's\n"
        "  --quiet                 no progress output\n"
        "  -h, --help              this text\n"
        "--metrics, --csv, --is-splits, --pr-k, --dc-k, --pr-precision, --kid-subsets, --kid-subset-size,\n"
        "--fd-method and --samples-split/--samples-classes apply to a comparison only; -o, --with-features and\n"
        "--with-images to eval stats only: given to the other form, they are an error.\n",
        KB_INCEPTION_FILENAME);
}

/* ------------------------------------------------------------- options */

enum {
    O_METRICS = 256, O_MODE, O_CSV, O_WEIGHTS, O_DEVICE, O_BATCH, O_IS_SPLITS, O_REF_SPLIT, O_REF_CLASSES,
    O_SAMP_SPLIT, O_SAMP_CLASSES, O_PR_K, O_DC_K, O_PR_PREC, O_KID_SUBSETS, O_KID_SIZE, O_FD_METHOD, O_CACHE,
    O_NO_CACHE, O_WITH_FEATURES, O_WITH_IMAGES, O_FEATURIZER, O_QUIET, O_THREADS, O_UNVERIFIED
};

static int parse_metrics(const char *s, unsigned *out, kb_err *err) {
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf) return kb_fail(err, "--metrics: list too long");
    *out = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        unsigned bit = 0;
        if (!strcmp(t, "all")) bit = 127;
        for (size_t i = 0; i < sizeof metric_names / sizeof metric_names[0]; i++)
            if (!strcmp(t, metric_names[i].name)) bit = metric_names[i].bit;
        if (!bit) return kb_fail(err, "--metrics: unknown metric '%s' (known: fid, sfid, is, pr, dc, kid, spectral, all)", t);
        *out |= bit;
    }
    return *out ? 0 : kb_fail(err, "--metrics: empty list");
}

static int parse_split(const char *opt, const char *s, kb_split *out, kb_err *err) {
    if (!strcmp(s, "train")) return *out = KB_SPLIT_TRAIN, 0;
    if (!strcmp(s, "test")) return *out = KB_SPLIT_TEST, 0;
    if (!strcmp(s, "all")) return *out = KB_SPLIT_ANY, 0;
    return kb_fail(err, "%s: expected train, test or all, got '%s'", opt, s);
}

static int parse_role(const char *opt, const char *s, kb_class_role *out, kb_err *err) {
    if (!strcmp(s, "all")) return *out = KB_ROLE_ANY, 0;
    int r = kb_role_parse(s);
    if (r < 0) return kb_fail(err, "%s: expected pretrain, novel, unused or all, got '%s'", opt, s);
    *out = (kb_class_role)r;
    return 0;
}

static int parse_choice(const char *opt, const char *s, const char *const *names, int n, int *out, kb_err *err) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return *out = i, 0;
    return kb_fail(err, "%s: unknown value '%s'", opt, s);
}

static int int_opt(const char *opt, const char *s, long long lo, long long hi, int *out, kb_err *err) {
    long long v;
    if (kb_cli_parse_int(opt, s, lo, hi, &v, err)) return -1;
    *out = (int)v;
    return 0;
}

static int apply_option(int c, const char *a, eval_opts *o, kb_err *err) {
    static const char *const prec[] = {"fp32", "fp16"}, *const fdm[] = {"auto", "eigh", "cholesky", "pivoted"};
    int v = 0;
    switch (c) {
    case O_METRICS: o->metrics_given = 1; return parse_metrics(a, &o->metrics, err);
    case O_MODE: return kb_preproc_parse(a, &o->mode, err) ? kb_fail_wrap(err, "--mode") : 0; /* names the value only */
    case O_CSV: o->csv = a; return 0;
    case O_WEIGHTS: o->weights = a; return 0;
    case O_DEVICE: return kb_device_parse(a, &o->device, err) ? kb_fail_wrap(err, "--device") : 0;
    case O_BATCH: return int_opt("--batch", a, 1, 4096, &o->batch, err);
    case O_THREADS: return int_opt("--threads", a, 1, KB_CTX_MAX_THREADS, &o->threads, err);
    case O_IS_SPLITS: return kb_is_mode_parse(a, &o->is_mode, err);
    case O_REF_SPLIT: return parse_split("--ref-split", a, &o->ref_filter.split, err);
    case O_REF_CLASSES: return parse_role("--ref-classes", a, &o->ref_filter.role, err);
    case O_SAMP_SPLIT:
        o->samples_filter_given = 1;
        return parse_split("--samples-split", a, &o->samples_filter.split, err);
    case O_SAMP_CLASSES:
        o->samples_filter_given = 1;
        return parse_role("--samples-classes", a, &o->samples_filter.role, err);
    case O_PR_K: return int_opt("--pr-k", a, 1, 64, &o->pr_k, err);
    case O_DC_K: return int_opt("--dc-k", a, 1, 64, &o->dc_k, err);
    case O_PR_PREC: return parse_choice("--pr-precision", a, prec, 2, &v, err) ? -1 : (o->pr_precision = v, 0);
    case O_FD_METHOD: return parse_choice("--fd-method", a, fdm, 4, &v, err) ? -1 : (o->fd_method = v, 0);
    case O_KID_SUBSETS: return int_opt("--kid-subsets", a, 1, 100000, &o->kid_subsets, err);
    case O_KID_SIZE: return kb_cli_parse_int("--kid-subset-size", a, 2, 1LL << 30, &o->kid_subset_size, err);
    case O_CACHE: o->cache_dir = a; return 0;
    case O_NO_CACHE: o->no_cache = 1; return 0;
    case O_WITH_FEATURES: o->with_features = 1; return 0;
    case O_WITH_IMAGES: o->with_images = 1; return 0;
    case O_FEATURIZER:
        if (strcmp(a, "inception") && strcmp(a, "pixels"))
            return kb_fail(err, "--featurizer: expected inception or pixels, got '%s'", a);
        o->featurizer = a;
        return 0;
    case O_UNVERIFIED: o->allow_unverified = 1; return 0;
    case O_QUIET: o->quiet = 1; return 0;
    case 'o': o->out = a; return 0;
    default: return kb_fail(err, "eval: unknown option");
    }
}

/* Options of one form only: eval stats dropped a comparison's without a word
 * (--csv wrote no file, exit 0), and a comparison eval stats' (-o). */
static int compare_only(int c) {
    return c == O_METRICS || c == O_CSV || c == O_IS_SPLITS || c == O_PR_K || c == O_DC_K || c == O_PR_PREC ||
           c == O_KID_SUBSETS || c == O_KID_SIZE || c == O_FD_METHOD;
}
static int stats_only(int c) { return c == 'o' || c == O_WITH_FEATURES || c == O_WITH_IMAGES; }

static void note_form(int c, const char *name, eval_opts *o) {
    if (compare_only(c) && !o->compare_opt[0]) snprintf(o->compare_opt, sizeof o->compare_opt, "%s", name);
    if (stats_only(c) && !o->stats_opt[0]) snprintf(o->stats_opt, sizeof o->stats_opt, "%s", name);
}

/* Parses argv; positional arguments are left in argv[optind..argc). 1 = --help shown. */
static int parse_opts(int argc, char **argv, eval_opts *o, kb_err *err) {
    static const struct option lo[] = {
        {"metrics", 1, 0, O_METRICS}, {"mode", 1, 0, O_MODE}, {"csv", 1, 0, O_CSV},
        {"inception-weights", 1, 0, O_WEIGHTS}, {"device", 1, 0, O_DEVICE}, {"batch", 1, 0, O_BATCH},
        {"threads", 1, 0, O_THREADS}, {"is-splits", 1, 0, O_IS_SPLITS}, {"ref-split", 1, 0, O_REF_SPLIT},
        {"ref-classes", 1, 0, O_REF_CLASSES}, {"samples-split", 1, 0, O_SAMP_SPLIT},
        {"samples-classes", 1, 0, O_SAMP_CLASSES}, {"pr-k", 1, 0, O_PR_K}, {"dc-k", 1, 0, O_DC_K},
        {"pr-precision", 1, 0, O_PR_PREC}, {"fd-method", 1, 0, O_FD_METHOD}, {"kid-subsets", 1, 0, O_KID_SUBSETS},
        {"kid-subset-size", 1, 0, O_KID_SIZE}, {"features-cache", 1, 0, O_CACHE}, {"no-cache", 0, 0, O_NO_CACHE},
        {"with-features", 0, 0, O_WITH_FEATURES}, {"with-images", 0, 0, O_WITH_IMAGES},
        {"featurizer", 1, 0, O_FEATURIZER}, {"allow-unverified-weights", 0, 0, O_UNVERIFIED},
        {"quiet", 0, 0, O_QUIET}, {"output", 1, 0, 'o'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c, li = -1;
    char bad[3], name[40];
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", lo, &li)) != -1) {
        if (c == 'h') return usage(), 1;
        if (c == '?')
            return kb_fail(err, "eval: unknown option or missing value: '%s'", kb_cli_bad_option(argc, argv, bad));
        if (apply_option(c, optarg, o, err)) return -1;
        if (li >= 0) snprintf(name, sizeof name, "--%s", lo[li].name);
        else snprintf(name, sizeof name, "-%c", c); /* -o, the one short option with a value */
        note_form(c, name, o);
        li = -1;
    }
    return 0;
}

/* --------------------------------------------------------- featurisers */

typedef struct {
    kb_featurizer fz;
    kb_ctx *ctx;
    kb_inception *net;
    kb_preproc_mode mode;
    int ready;
} feat_state;

static int inception_fn(void *user, const uint8_t *rgb, int64_t n, int h, int w, float *pool, float *spatial,
                        float *logits, kb_err *err) {
    feat_state *s = user;
    return kb_inception_features(s->net, rgb, n, h, w, 3, s->mode, pool, spatial, logits, err);
}

/* Mean of each cell of a g x g grid over image [h, w, 3], /255, into out[g*g*3]. */
static void cell_means(const uint8_t *img, int h, int w, int g, float *out) {
    double sum[64 * 3] = {0};
    int cnt[64] = {0};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int c = (int)((int64_t)y * g / h) * g + (int)((int64_t)x * g / w);
            cnt[c]++;
            for (int k = 0; k < 3; k++) sum[c * 3 + k] += img[((int64_t)y * w + x) * 3 + k];
        }
    for (int c = 0; c < g * g; c++) {
        int y = (c / g) * h / g, x = (c % g) * w / g; /* an empty cell (image smaller than g) takes its pixel */
        for (int k = 0; k < 3; k++)
            out[c * 3 + k] = (float)((cnt[c] ? sum[c * 3 + k] / cnt[c] : img[((int64_t)y * w + x) * 3 + k]) / 255.0);
    }
}

/* TESTS ONLY: pool = 8x8x3 cell means, spatial = 4x4x3, logits = 8 * pool[0..16). */
enum { PIXELS_POOL_DIM = 192, PIXELS_SPATIAL_DIM = 48 };
static int pixels_fn(void *user, const uint8_t *rgb, int64_t n, int h, int w, float *pool, float *spatial,
                     float *logits, kb_err *err) {
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *img = rgb + (size_t)i * h * w * 3;
        float p[192];
        cell_means(img, h, w, 8, p);
        if (pool) memcpy(pool + i * 192, p, sizeof p);
        if (spatial) cell_means(img, h, w, 4, spatial + i * 48);
        for (int k = 0; logits && k < 16; k++) logits[i * 16 + k] = 8.0f * p[k];
    }
    return 0;
}

static int setup_inception(feat_state *s, const eval_opts *o, kb_err *err) {
    char path[4096];
    if (kb_inception_find_weights(o->weights, path, sizeof path, err)) return -1;
    if (!(s->net = kb_inception_load(s->ctx, path, o->allow_unverified, err))) return -1;
    s->fz.fn = inception_fn;
    s->fz.pool_dim = KB_INCEPTION_POOL_DIM, s->fz.spatial_dim = KB_INCEPTION_SPATIAL_DIM;
    s->fz.logits_dim = KB_INCEPTION_LOGITS_DIM;
    snprintf(s->fz.id, sizeof s->fz.id, "inception-2015-12-05");
    if (!o->allow_unverified) {
        snprintf(s->fz.weights_sha256, sizeof s->fz.weights_sha256, "%s", KB_INCEPTION_SHA256);
        return 0;
    }
    uint8_t dg[32]; /* unverified weights: the cache key must still name them */
    if (kb_sha256_file(path, dg, err)) return -1;
    kb_sha256_hex(dg, s->fz.weights_sha256);
    return 0;
}

/* The sizes of the featuriser's pool and spatial features, known without
 * loading it (the plan compares them with statistics files'). */
static void featurizer_dims(const eval_opts *o, int64_t *pool, int64_t *spatial) {
    int pixels = !strcmp(o->featurizer, "pixels");
    *pool = pixels ? PIXELS_POOL_DIM : KB_INCEPTION_POOL_DIM;
    *spatial = pixels ? PIXELS_SPATIAL_DIM : KB_INCEPTION_SPATIAL_DIM;
}

/* Loads the featuriser on first use (the Inception weights only when images need it). */
static int featurizer_ready(feat_state *s, const eval_opts *o, kb_err *err) {
    if (s->ready) return 0;
    s->mode = o->mode;
    s->fz.user = s;
    s->fz.batch = o->batch;
    snprintf(s->fz.mode, sizeof s->fz.mode, "%s", kb_preproc_name(o->mode));
    if (!strcmp(o->featurizer, "pixels")) {
        s->fz.fn = pixels_fn;
        s->fz.pool_dim = PIXELS_POOL_DIM, s->fz.spatial_dim = PIXELS_SPATIAL_DIM, s->fz.logits_dim = 16;
        snprintf(s->fz.id, sizeof s->fz.id, "pixels");
        snprintf(s->fz.weights_sha256, sizeof s->fz.weights_sha256, "none");
    } else if (setup_inception(s, o, err)) {
        return -1;
    }
    s->ready = 1;
    return 0;
}

/* ------------------------------------------------------ evaluation sets */

/* Which of the wanted metric bits a set can serve on its own. */
static unsigned satisfied(const kb_evalset *s) {
    unsigned ok = 0;
    if (s->has_pool_stats) ok |= M_FID;
    if (s->has_spatial_stats) ok |= M_SFID;
    if (s->feat.pool) ok |= M_PR | M_DC | M_KID;
    if (s->feat.logits) ok |= M_IS;
    if (s->spectrum_bins) ok |= M_SPECTRAL;
    return ok;
}

/* Statistics written with another mode or featuriser must not be mixed in. */
static int check_meta(const kb_evalset *s, const eval_opts *o, kb_err *err) {
    const char *mode = kb_preproc_name(o->mode);
    if (s->meta.mode[0] && strcmp(s->meta.mode, mode))
        return kb_fail(err, "%s: its statistics were computed in mode %s, but this evaluation uses --mode %s", s->path,
                       s->meta.mode, mode);
    const char *fz = strcmp(o->featurizer, "pixels") ? "inception-2015-12-05" : "pixels";
    if (s->meta.featurizer[0] && strcmp(s->meta.featurizer, fz))
        return kb_fail(err, "%s: its features come from featuriser '%s', this evaluation uses '%s'", s->path,
                       s->meta.featurizer, fz);
    /* the weights: known without loading them unless --allow-unverified-weights (then see same_weights) */
    const char *w = !strcmp(fz, "pixels") ? "none" : o->allow_unverified ? NULL : KB_INCEPTION_SHA256;
    if (w && s->meta.weights_sha256[0] && strcmp(s->meta.weights_sha256, w))
        return kb_fail(err, "%s: its features come from weights with sha256 %.16s..., this evaluation's are %.16s...",
                       s->path, s->meta.weights_sha256, w);
    return 0;
}

/* The two sides' recorded weights agree (either may be unrecorded, as in an
 * ADM or pytorch-fid file): statistics of two networks are not comparable. */
static int same_weights(const kb_evalset *a, const kb_evalset *b, kb_err *err) {
    const char *wa = a->meta.weights_sha256, *wb = b->meta.weights_sha256;
    if (!wa[0] || !wb[0] || !strcmp(wa, wb)) return 0;
    return kb_fail(err, "%s and %s were featurised with different weights (sha256 %.16s... and %.16s...): their "
                        "statistics cannot be compared", a->path, b->path, wa, wb);
}

/* Moves the parts dst lacks from src (src is freed after). */
static void take_missing(kb_evalset *dst, kb_evalset *src) {
    if (!dst->has_pool_stats && src->has_pool_stats)
        dst->pool_stats = src->pool_stats, dst->has_pool_stats = 1, memset(&src->pool_stats, 0, sizeof src->pool_stats);
    if (!dst->has_spatial_stats && src->has_spatial_stats)
        dst->spatial_stats = src->spatial_stats, dst->has_spatial_stats = 1,
        memset(&src->spatial_stats, 0, sizeof src->spatial_stats);
    if ((!dst->feat.pool || !dst->feat.logits) && src->feat.pool) { /* the images' features, whole */
        kb_features_free(&dst->feat);
        dst->feat = src->feat;
        memset(&src->feat, 0, sizeof src->feat);
    }
    if (!dst->spectrum_bins && src->spectrum_bins) {
        dst->spectrum = src->spectrum, dst->spectrum_bins = src->spectrum_bins;
        dst->spectrum_h = src->spectrum_h, dst->spectrum_w = src->spectrum_w, src->spectrum = NULL;
    }
    if (!dst->spectrum_bins) snprintf(dst->spectrum_note, sizeof dst->spectrum_note, "%s", src->spectrum_note);
    if (!dst->stats_from_file && !dst->meta.mode[0]) dst->meta = src->meta; /* file statistics keep their (unknown) provenance */
}

/* A cached featurisation of these images, if one exists and matches. */
static int cache_lookup(const char *path, const kb_stats_meta *want, kb_evalset *out) {
    kb_err e;
    if (!kb_is_file(path) || kb_evalset_read_npz(path, 1, out, &e)) return 0;
    int n = (int)out->meta.count;
    int ok = kb_stats_meta_same_features(want, &out->meta) && out->feat.pool && out->feat.logits &&
             out->feat.n == out->meta.count && (n < 2 || (out->has_pool_stats && out->has_spatial_stats));
    if (!ok) kb_evalset_free(out);
    return ok;
}

static void cache_store(const char *dir, const char *path, const kb_evalset *s, int quiet) {
    kb_err e;
    if (kb_mkdir_p(dir, &e) || kb_evalset_write_npz(path, s, 1, NULL, &e))
        fprintf(stderr, "kindbench: warning: features not cached: %s\n", e.msg);
    else if (!quiet) fprintf(stderr, "cached the features in %s\n", path);
}

typedef struct {
    const eval_opts *o;
    feat_state *fs;
} eval_env;

/* The partial-features file beside the cache file cpath ("<key>.npz" ->
 * "<key>.partial"), and the tag of what else the rows depend on. */
static void resume_names(const feat_state *fs, const char *cpath, char *part, size_t cap, char *tag, size_t tagcap) {
    size_t n = strlen(cpath);
    snprintf(part, cap, "%.*s.partial", (int)(n > 4 ? n - 4 : n), cpath);
    snprintf(tag, tagcap, "device=%s cuda_device=%d threads=%d", kb_device_name(fs->ctx->device),
             fs->ctx->cuda_device, fs->ctx->threads);
}

/* A note on the input, not progress: shown with --quiet too. */
static void note_ignored(const kb_image_input *in) {
    if (in->ignored)
        fprintf(stderr, "%s: ignored %lld file%s that are not PNG/JPEG/GIF images\n", in->path, (long long)in->ignored,
                in->ignored == 1 ? "" : "s");
}

/* Featurises the images of in, which the plan probed (through the cache
 * when use_cache; an npz's arr_0 is read only when the cache misses).
 * Unless --no-cache, the features so far are kept in the cache directory
 * while it runs, so that a stopped run resumes (samples too, which are not
 * cached). */
static int featurize_images(const eval_env *env, kb_image_input *in, int use_cache, kb_evalset *out, kb_err *err) {
    if (featurizer_ready(env->fs, env->o, err)) return -1;
    kb_stats_meta want;
    memset(&want, 0, sizeof want);
    snprintf(want.mode, sizeof want.mode, "%s", env->fs->fz.mode);
    snprintf(want.featurizer, sizeof want.featurizer, "%s", env->fs->fz.id);
    snprintf(want.weights_sha256, sizeof want.weights_sha256, "%s", env->fs->fz.weights_sha256);
    char dir[4096], cpath[4300], part[4400], tag[128];
    int rc = 0, cached = 0, keep = !env->o->no_cache;
    kb_featurize_opts fo = {env->o->quiet, NULL, NULL};
    rc = kb_image_input_hash(in, want.source_sha256, err); /* recorded in kb_meta even without the cache */
    if (!rc && keep) rc = kb_features_cache_dir(env->o->cache_dir, dir, sizeof dir, err) ||
                          kb_features_cache_path(dir, &want, cpath, sizeof cpath, err);
    if (!rc && use_cache) want.count = in->count, cached = cache_lookup(cpath, &want, out);
    if (!rc && cached && !env->o->quiet) fprintf(stderr, "%s: features from the cache (%s)\n", in->path, cpath);
    if (!rc && !cached && keep && kb_mkdir_p(dir, err) == 0) {
        resume_names(env->fs, cpath, part, sizeof part, tag, sizeof tag);
        fo.resume_path = part, fo.resume_tag = tag;
    }
    if (!rc && !cached) rc = kb_image_input_load_data(in, err);
    if (!rc && !cached) rc = kb_featurize_input(in, &env->fs->fz, &fo, out, err);
    if (!rc && !cached) snprintf(out->meta.source_sha256, sizeof out->meta.source_sha256, "%s", want.source_sha256);
    if (!rc && !cached && use_cache) cache_store(dir, cpath, out, env->o->quiet);
    return rc;
}

/* ------------------------------------------------------------- results */

typedef struct {
    char metric[16];
    double value, std;
    int has_std;
    char details[320];
} result_row;

typedef struct {
    result_row rows[16];
    int n;
    const eval_opts *o;
    const kb_evalset *samp, *ref;
    kb_ctx *cpu;
} results;

static void add_row(results *r, const char *metric, double v, double sd, int has_std, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add_row(results *r, const char *metric, double v, double sd, int has_std, const char *fmt, ...) {
    result_row *row = &r->rows[r->n++];
    snprintf(row->metric, sizeof row->metric, "%s", metric);
    row->value = v, row->std = sd, row->has_std = has_std;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(row->details, sizeof row->details, fmt, ap);
    va_end(ap);
    printf("%-10s %14.6f", metric, v);
    if (has_std) printf(" +- %-10.6f", sd);
    else printf("    %-10s", "");
    printf("  [mode %s] %s\n", kb_preproc_name(r->o->mode), row->details);
    fflush(stdout);
}

/* Images behind statistics g (or the set when g is NULL); 0: unknown (an ADM/pytorch-fid file). */
static int64_t count_of(const kb_evalset *s, const kb_gstats *g) {
    if (g && g->count) return g->count;
    if (g && s->stats_from_file) return s->meta.count;
    return s->meta.count ? s->meta.count : s->feat.n;
}

/* "5000 samples", or "samples statistics from the file" when the count is not known. */
static const char *count_str(const kb_evalset *s, const kb_gstats *g, char *buf, size_t n) {
    int64_t c = count_of(s, g);
    if (c) snprintf(buf, n, "%lld %s", (long long)c, s->label);
    else snprintf(buf, n, "precomputed %s statistics", s->label);
    return buf;
}

static int do_fd(results *r, const char *name, int spatial, kb_err *err) {
    const kb_gstats *a = spatial ? &r->samp->spatial_stats : &r->samp->pool_stats;
    const kb_gstats *b = spatial ? &r->ref->spatial_stats : &r->ref->pool_stats;
    double fd;
    kb_fd_info info;
    if (kb_frechet_distance(a, b, r->o->fd_method, &fd, &info, err)) return kb_fail_wrap(err, "%s", name);
    char ca[64], cb[64], rank[64] = "";
    if (info.rank1 < a->dim) /* fewer images than dimensions, typically */
        snprintf(rank, sizeof rank, " (sigma1 of rank %lld)", (long long)info.rank1);
    add_row(r, name, fd, 0, 0, "%lld-d %s features, %s vs %s; %s route%s%s", (long long)a->dim,
            spatial ? "spatial" : "pool", count_str(r->samp, a, ca, sizeof ca), count_str(r->ref, b, cb, sizeof cb),
            kb_fd_method_name(info.method), rank, info.eps_retry ? ", eps 1e-6 fallback" : "");
    return 0;
}

static int do_is(results *r, kb_err *err) {
    kb_is_opts io;
    kb_is_result res;
    kb_is_opts_default(&io, r->o->is_mode);
    const kb_features *f = &r->samp->feat;
    if (kb_inception_score(f->logits, f->n, f->logits_dim, &io, &res, err)) return -1;
    if (r->o->is_mode == KB_IS_ADM)
        add_row(r, "IS", res.mean, 0, 0, "samples; adm splits: %d of up to %lld images in file order (last %lld)",
                res.splits, (long long)io.split_size, (long long)res.last_split);
    else
        add_row(r, "IS", res.mean, res.std, 1, "samples; fidelity splits: %d shuffled (RandomState 2020)", res.splits);
    return 0;
}

static int check_dims(const results *r, kb_err *err) {
    if (r->samp->feat.pool_dim != r->ref->feat.pool_dim)
        return kb_fail(err, "feature dimensions differ: samples %lld-d, reference %lld-d", (long long)r->samp->feat.pool_dim,
                       (long long)r->ref->feat.pool_dim);
    return 0;
}

static int do_prdc(results *r, unsigned which, kb_err *err) {
    kb_prdc_opts po;
    kb_prdc_result res;
    kb_progress pg;
    kb_prdc_opts_default(&po);
    po.pr_k = (which & M_PR) ? r->o->pr_k : 0, po.dc_k = (which & M_DC) ? r->o->dc_k : 0;
    po.precision = r->o->pr_precision;
    const kb_features *s = &r->samp->feat, *f = &r->ref->feat;
    if (check_dims(r, err)) return -1;
    kb_progress_start(&pg, "k-NN distance blocks", kb_prdc_blocks(f->n, s->n, &po), r->o->quiet);
    po.progress = &pg;
    int rc = kb_prdc(r->cpu, f->pool, f->n, s->pool, s->n, s->pool_dim, &po, &res, err);
    kb_progress_finish(&pg);
    if (rc) return -1;
    const char *prec = po.precision == KB_DIST_FP16 ? "fp16-emulated" : "fp32";
    if (which & M_PR) {
        add_row(r, "precision", res.precision, 0, 0, "k=%d, %s distances, %lld samples vs %lld reference", po.pr_k, prec,
                (long long)s->n, (long long)f->n);
        add_row(r, "recall", res.recall, 0, 0, "k=%d, %s distances", po.pr_k, prec);
    }
    if (which & M_DC) {
        add_row(r, "density", res.density, 0, 0, "k=%d (prdc), %lld samples vs %lld reference", po.dc_k, (long long)s->n,
                (long long)f->n);
        add_row(r, "coverage", res.coverage, 0, 0, "k=%d (prdc)", po.dc_k);
    }
    return 0;
}

static int do_kid(results *r, kb_err *err) {
    kb_kid_opts ko;
    kb_kid_result res;
    kb_progress pg;
    kb_kid_opts_default(&ko);
    ko.subsets = r->o->kid_subsets, ko.subset_size = r->o->kid_subset_size;
    if (check_dims(r, err)) return -1;
    kb_progress_start(&pg, "KID subsets", ko.subsets, r->o->quiet);
    ko.progress = &pg;
    const kb_features *s = &r->samp->feat, *f = &r->ref->feat;
    int rc = kb_kid(s->pool, s->n, f->pool, f->n, s->pool_dim, &ko, &res, err);
    kb_progress_finish(&pg);
    if (rc) return -1;
    add_row(r, "KID", res.mean, res.std, 1, "%d subsets of %lld (RandomState 2020), cubic kernel", res.subsets,
            (long long)res.subset_size);
    return 0;
}

static int do_spectral(results *r, kb_err *err) {
    const kb_evalset *a = r->samp, *b = r->ref;
    if (a->spectrum_h != b->spectrum_h || a->spectrum_w != b->spectrum_w)
        return kb_fail(err, "spectral distance: samples are %dx%d but the reference %dx%d (the spectra need one size)",
                       a->spectrum_w, a->spectrum_h, b->spectrum_w, b->spectrum_h);
    double d;
    if (kb_spectral_distance(a->spectrum, a->spectrum_bins, b->spectrum, b->spectrum_bins, &d, err)) return -1;
    add_row(r, "spectral", d, 0, 0, "mean |log10 power ratio| over %d radial bins, %dx%d luminance", a->spectrum_bins,
            a->spectrum_w, a->spectrum_h);
    return 0;
}

/* What one side can give the metrics: as the plan foresees it, before any
 * image is featurised, or as loaded; the reasons a metric cannot be had come
 * from this alone, so the plan and the results give the same ones. */
typedef struct {
    const char *path;
    unsigned serves;           /* the metric bits it can serve */
    int64_t n_feat;            /* images with features (0: none) */
    int64_t count;             /* images behind it (0: unknown) */
    const char *spectrum_note; /* why there is no spectrum, when known */
} side_caps;

static side_caps caps_of_set(const kb_evalset *s) {
    side_caps c = {s->path, satisfied(s), s->feat.n, s->feat.n ? s->feat.n : s->meta.count, s->spectrum_note};
    return c;
}

/* What a side lacks for a metric, as a phrase ("" when it has it). */
static void lack(const side_caps *s, unsigned bit, char *out, size_t n) {
    out[0] = '\0';
    if (s->serves & bit) return;
    if ((bit & (M_FID | M_SFID)) && s->count == 1)
        snprintf(out, n, "%.900s has 1 image: a covariance needs at least 2", s->path);
    else if (bit & (M_FID | M_SFID))
        snprintf(out, n, "%.900s has no %s statistics (%s) and no images to compute them from", s->path,
                 bit == M_FID ? "pool" : "spatial", bit == M_FID ? "mu, sigma" : "mu_s, sigma_s");
    else if (bit == M_SPECTRAL && s->spectrum_note[0])
        snprintf(out, n, "%.900s: %.250s", s->path, s->spectrum_note);
    else if (bit == M_SPECTRAL)
        snprintf(out, n, "%.900s has no power spectrum (a statistics file without images)", s->path);
    else
        snprintf(out, n, "%.900s holds statistics only: %s needs its %s (images in arr_0, or 'pool'/'logits' from "
                 "`eval stats --with-features`)", s->path, bit == M_IS ? "IS" : "this metric", bit == M_IS ? "logits" : "features");
}

/* What a side with features lacks in count for a neighbourhood metric or
 * KID ("" when it has enough); so a default P/R on 3 images is skipped with
 * a note, as the docs promise, and a named one fails with this reason. */
static void too_few(const eval_opts *o, const side_caps *s, int is_ref, unsigned bit, char *out, size_t n) {
    int need = bit == M_PR ? o->pr_k + 1 : bit == M_DC ? (is_ref ? o->dc_k + 1 : 1) : bit == M_KID ? 2 : 0;
    if (bit == M_IS) need = o->is_mode == KB_IS_FIDELITY ? 10 : 1;
    const char *what = bit == M_PR ? "precision/recall" : bit == M_DC ? "density/coverage" : "KID";
    int k = bit == M_PR ? o->pr_k : o->dc_k;
    out[0] = '\0';
    if (s->n_feat >= need) return;
    if (bit == M_IS)
        snprintf(out, n, "%.900s has %lld image(s): Inception Score with --is-splits %s needs at least %d", s->path,
                 (long long)s->n_feat, o->is_mode == KB_IS_FIDELITY ? "fidelity" : "adm", need);
    else if (bit == M_KID) snprintf(out, n, "%.900s has %lld image(s): KID needs at least 2", s->path, (long long)s->n_feat);
    else snprintf(out, n, "%.900s has %lld image(s): %s with k=%d needs at least %d", s->path, (long long)s->n_feat,
                  what, k, need);
}

/* Empty reason when both sides (only the samples for IS) can serve bit. */
static void unavailable(const eval_opts *o, const side_caps *samp, const side_caps *ref, unsigned bit, char *out,
                        size_t n) {
    lack(samp, bit, out, n);
    if (!out[0] && bit != M_IS) lack(ref, bit, out, n);
    if (!out[0]) too_few(o, samp, 0, bit, out, n);
    if (!out[0] && bit != M_IS) too_few(o, ref, 1, bit, out, n);
}

static int run_metric(results *r, unsigned bit, kb_err *err) {
    switch (bit) {
    case M_FID: return do_fd(r, "FID", 0, err);
    case M_SFID: return do_fd(r, "sFID", 1, err);
    case M_IS: return do_is(r, err);
    case M_KID: return do_kid(r, err);
    case M_SPECTRAL: return do_spectral(r, err);
    default: return 0;
    }
}

static const char *metric_name(unsigned bit) {
    for (size_t i = 0; i < sizeof metric_names / sizeof metric_names[0]; i++)
        if (metric_names[i].bit == bit) return metric_names[i].name;
    return "?";
}

static const unsigned metric_order[] = {M_FID, M_SFID, M_IS, M_PR, M_DC, M_KID, M_SPECTRAL};
#define N_METRICS (sizeof metric_order / sizeof metric_order[0])

static size_t metric_index(unsigned bit) {
    size_t i = 0;
    while (i + 1 < N_METRICS && metric_order[i] != bit) i++;
    return i;
}

/* Why a requested metric is not computed: the plan's reason, or one only
 * the loaded sets show (a folder's images of two sizes have no spectrum). */
static void not_computed(const results *r, unsigned run, const char (*skip)[1200], unsigned bit, char *why, size_t n) {
    side_caps cs = caps_of_set(r->samp), cr = caps_of_set(r->ref);
    if (!(run & bit)) snprintf(why, n, "%s", skip[metric_index(bit)]);
    else unavailable(r->o, &cs, &cr, bit, why, n);
}

/* Computes the metrics of run, in order; the other requested ones are
 * skipped with their reason from skip[] (indexed as metric_order). */
static int run_all(results *r, unsigned run, const char (*skip)[1200], kb_err *err) {
    unsigned knn = 0;
    char why[1200];
    for (size_t i = 0; i < N_METRICS; i++) {
        unsigned bit = metric_order[i];
        if (!(r->o->metrics & bit)) continue;
        not_computed(r, run, skip, bit, why, sizeof why);
        if (why[0] && r->o->metrics_given) return kb_fail(err, "%s: %s", metric_name(bit), why);
        if (why[0]) {
            printf("%-10s %14s    %-10s  skipped: %s\n", metric_name(bit), "-", "", why);
            continue;
        }
        if (bit == M_PR) { /* P/R and D/C share one pass over the distances */
            char dc_why[1200];
            not_computed(r, run, skip, M_DC, dc_why, sizeof dc_why);
            knn = M_PR;
            if ((r->o->metrics & M_DC) && !dc_why[0]) continue;
        }
        if (bit & (M_PR | M_DC)) {
            if (do_prdc(r, knn | bit, err)) return -1;
            knn = 0;
            continue;
        }
        if (run_metric(r, bit, err)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ CSV */

static int csv_field(kb_atomic_file *af, const char *s, int last, kb_err *err) {
    size_t n = strlen(s), cap = 2 * n + 3;
    char *buf = malloc(cap);
    if (!buf) return kb_fail(err, "out of memory");
    size_t w = csv_write(buf, cap, s, n); /* quotes the field, doubling inner quotes */
    int rc = kb_atomic_write(af, buf, w, err) || kb_atomic_write(af, last ? "\n" : ",", 1, err);
    free(buf);
    return rc ? -1 : 0;
}

static int csv_row(kb_atomic_file *af, const char *const *f, int n, kb_err *err) {
    for (int i = 0; i < n; i++)
        if (csv_field(af, f[i], i == n - 1, err)) return -1;
    return 0;
}

static int write_csv(const results *r, const char *path, kb_err *err) {
    static const char *const head[] = {"metric", "value", "std", "mode", "featurizer", "samples", "reference",
                                       "n_samples", "n_reference", "details"};
    kb_atomic_file af;
    if (kb_atomic_open(&af, path, err)) return -1;
    int rc = csv_row(&af, head, 10, err);
    const char *fz = strcmp(r->o->featurizer, "pixels") ? "inception-2015-12-05" : "pixels";
    for (int i = 0; !rc && i < r->n; i++) {
        const result_row *row = &r->rows[i];
        char v[40], sd[40] = "", ns[24], nr[24];
        snprintf(v, sizeof v, "%.17g", row->value);
        if (row->has_std) snprintf(sd, sizeof sd, "%.17g", row->std);
        int64_t cs = count_of(r->samp, NULL), cr = count_of(r->ref, NULL); /* 0: unknown (statistics file) */
        snprintf(ns, sizeof ns, cs ? "%lld" : "", (long long)cs);
        snprintf(nr, sizeof nr, cr ? "%lld" : "", (long long)cr);
        const char *f[10] = {row->metric, v, sd, kb_preproc_name(r->o->mode), fz, r->samp->path, r->ref->path, ns, nr,
                             row->details};
        rc = csv_row(&af, f, 10, err);
    }
    if (rc) {
        kb_atomic_abort(&af);
        return -1;
    }
    return kb_atomic_commit(&af, err);
}

/* ---------------------------------------------------------------- plan */

/* Everything that decides whether a comparison can run is found here,
 * before any image is featurised (an hour of Inception for 50k images on a
 * CPU): both inputs opened (an npz's statistics, features and meta read; the
 * images counted, an npz's arr_0 by its header), their modes, featurisers,
 * weights and dimensions, and what each requested metric needs of them.
 * Errors are -1 (an input that cannot be read) or KB_EXIT_USAGE (options
 * or inputs that do not fit together, README "Errors end the program"). */

/* What each side must provide for the chosen metrics. */
static unsigned side_wants(unsigned metrics, int samples) {
    unsigned w = metrics & (M_FID | M_SFID | M_PR | M_DC | M_KID | M_SPECTRAL);
    if (samples) w |= metrics & M_IS;
    return w;
}

/* One side before any image is featurised: what its npz holds, and its
 * images, probed (in_open), when they are to be featurised. */
typedef struct {
    const char *label;
    const kb_input_filter *filter;
    int use_cache;
    kb_evalset set;
    kb_image_input in;
    int in_open;
} side_plan;

typedef struct {
    side_plan samp, ref;
    unsigned run;            /* the requested metrics that will be computed */
    char skip[N_METRICS][1200]; /* why each other requested one is not (indexed as metric_order) */
} eval_plan;

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int is_npz_path(const char *path) { return kb_is_file(path) && !has_suffix(path, ".kbd"); }

static int filtered(const kb_input_filter *f) { return f->split != KB_SPLIT_ANY || f->role != KB_ROLE_ANY; }

static void side_plan_init(side_plan *p, const char *label, const char *path, const kb_input_filter *f, int use_cache) {
    memset(p, 0, sizeof *p);
    p->label = label, p->filter = f, p->use_cache = use_cache;
    kb_evalset_init(&p->set, label, path);
}

static void side_plan_free(side_plan *p) {
    kb_evalset_free(&p->set);
    if (p->in_open) kb_image_input_close(&p->in);
    p->in_open = 0;
}

/* Opens one side: an npz's statistics, features (when a wanted metric
 * needs them) and meta, checked against the options; then its images,
 * probed, when the file does not hold all that is wanted. */
static int plan_side(const eval_opts *o, const char *path, unsigned want, side_plan *p, kb_err *err) {
    int has_images = 1;
    if (is_npz_path(path)) {
        if (filtered(p->filter))
            return kb_fail(err, "%s: split and class filters apply to .kbd dataset caches only", path), KB_EXIT_USAGE;
        if (kb_evalset_read_npz(path, (want & (M_PR | M_DC | M_KID | M_IS)) != 0, &p->set, err)) return -1;
        if (check_meta(&p->set, o, err)) return KB_EXIT_USAGE;
        has_images = p->set.has_images;
    }
    if (!(want & ~satisfied(&p->set)) || !has_images) return 0;
    int rc = kb_image_input_probe(path, p->filter, o->quiet, &p->in, err);
    if (rc) return rc == KB_INPUT_MISFIT ? KB_EXIT_USAGE : -1;
    p->in_open = 1;
    note_ignored(&p->in);
    return 0;
}

/* The side's images will be featurised and give its features (take_missing). */
static int features_from_images(const side_plan *p) {
    return p->in_open && (!p->set.feat.pool || !p->set.feat.logits);
}

/* What the side will serve once loaded: its file's parts, and what its
 * images give (features of each; statistics of two or more; a spectrum,
 * unless the pass finds images of two sizes or without power). */
static side_caps plan_caps(const side_plan *p) {
    side_caps c = caps_of_set(&p->set);
    if (!p->in_open) return c;
    c.serves |= M_PR | M_DC | M_KID | M_IS | M_SPECTRAL;
    if (p->in.count >= 2) c.serves |= M_FID | M_SFID;
    if (features_from_images(p)) c.n_feat = p->in.count;
    c.count = p->in.count;
    return c;
}

/* The sizes a side's pool statistics, spatial statistics, features and
 * spectrum will have (0: none, or not known before the pass). */
typedef struct {
    int64_t pool, spatial, feat;
    int spec_h, spec_w;
} side_dims;

static side_dims plan_dims(const eval_opts *o, const side_plan *p) {
    side_dims d = {0, 0, 0, 0, 0};
    int64_t fpool, fspatial;
    featurizer_dims(o, &fpool, &fspatial);
    d.pool = p->set.has_pool_stats ? p->set.pool_stats.dim : p->in_open ? fpool : 0;
    d.spatial = p->set.has_spatial_stats ? p->set.spatial_stats.dim : p->in_open ? fspatial : 0;
    d.feat = features_from_images(p) ? fpool : p->set.feat.pool_dim;
    if (p->set.spectrum_bins) d.spec_h = p->set.spectrum_h, d.spec_w = p->set.spectrum_w;
    else if (p->in_open && p->in.kind != KB_INPUT_FOLDER) d.spec_h = p->in.h, d.spec_w = p->in.w; /* one size */
    return d;
}

static int dims_differ(const char *metric, const char *what, int64_t a, int64_t b, const eval_plan *pl, kb_err *err) {
    if (!a || !b || a == b) return 0;
    return kb_fail(err, "%s: %s gives %lld-d %s, %s %lld-d: dimensions differ (%lld vs %lld), so they come from "
                        "different feature extractors and cannot be compared", metric, pl->samp.set.path, (long long)a,
                   what, pl->ref.set.path, (long long)b, (long long)a, (long long)b),
           KB_EXIT_USAGE;
}

/* The two sides' sizes agree for each metric that will run. */
static int plan_dims_fit(const eval_opts *o, const eval_plan *pl, kb_err *err) {
    side_dims s = plan_dims(o, &pl->samp), r = plan_dims(o, &pl->ref);
    if ((pl->run & M_FID) && dims_differ("fid", "pool statistics", s.pool, r.pool, pl, err)) return KB_EXIT_USAGE;
    if ((pl->run & M_SFID) && dims_differ("sfid", "spatial statistics", s.spatial, r.spatial, pl, err)) return KB_EXIT_USAGE;
    for (size_t i = 0; i < N_METRICS; i++) {
        unsigned bit = metric_order[i];
        if ((pl->run & bit & (M_PR | M_DC | M_KID)) && dims_differ(metric_name(bit), "features", s.feat, r.feat, pl, err))
            return KB_EXIT_USAGE;
    }
    if ((pl->run & M_SPECTRAL) && s.spec_h && r.spec_h && (s.spec_h != r.spec_h || s.spec_w != r.spec_w))
        return kb_fail(err, "spectral: %s are %dx%d images but %s %dx%d (the spectra need one size)", pl->samp.set.path,
                       s.spec_w, s.spec_h, pl->ref.set.path, r.spec_w, r.spec_h),
               KB_EXIT_USAGE;
    return 0;
}

/* Decides which requested metrics run: one named that the inputs cannot
 * give is an error, a default one is skipped with its reason. */
static int plan_metrics(const eval_opts *o, eval_plan *pl, kb_err *err) {
    side_caps cs = plan_caps(&pl->samp), cr = plan_caps(&pl->ref);
    pl->run = 0;
    for (size_t i = 0; i < N_METRICS; i++) {
        unsigned bit = metric_order[i];
        if (!(o->metrics & bit)) continue;
        unavailable(o, &cs, &cr, bit, pl->skip[i], sizeof pl->skip[i]);
        if (pl->skip[i][0] && o->metrics_given)
            return kb_fail(err, "%s: %s", metric_name(bit), pl->skip[i]), KB_EXIT_USAGE;
        if (!pl->skip[i][0]) pl->run |= bit;
    }
    return 0;
}

/* Images no metric that runs needs are not featurised (a default metric
 * skipped may have been the only reason to). */
static void drop_unneeded(side_plan *p, unsigned want) {
    if (p->in_open && !(want & ~satisfied(&p->set))) kb_image_input_close(&p->in), p->in_open = 0;
}

static int make_plan(const eval_opts *o, const char *samp_path, const char *ref_path, eval_plan *pl, kb_err *err) {
    side_plan_init(&pl->samp, "samples", samp_path, &o->samples_filter, 0);
    side_plan_init(&pl->ref, "reference", ref_path, &o->ref_filter, !o->no_cache);
    int rc = plan_side(o, samp_path, side_wants(o->metrics, 1), &pl->samp, err);
    if (!rc) rc = plan_side(o, ref_path, side_wants(o->metrics, 0), &pl->ref, err);
    if (!rc && same_weights(&pl->samp.set, &pl->ref.set, err)) rc = KB_EXIT_USAGE;
    if (!rc) rc = plan_metrics(o, pl, err);
    if (!rc) rc = plan_dims_fit(o, pl, err);
    if (!rc) drop_unneeded(&pl->samp, side_wants(pl->run, 1)), drop_unneeded(&pl->ref, side_wants(pl->run, 0));
    return rc;
}

/* ------------------------------------------------------------ commands */

static void describe_side(const char *label, const kb_evalset *s) {
    char have[160] = "";
    const char *parts[5] = {s->has_pool_stats ? "pool statistics" : NULL, s->has_spatial_stats ? "spatial statistics" : NULL,
                            s->feat.pool ? "features" : NULL, s->feat.logits ? "logits" : NULL,
                            s->spectrum_bins ? "spectrum" : NULL};
    for (int i = 0; i < 5; i++)
        if (parts[i]) snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", have[0] ? ", " : "", parts[i]);
    printf("%-10s %s: %s", label, s->path, have[0] ? have : "nothing loaded (not needed)");
    if (s->feat.n) printf("; %lld image%s featurised", (long long)s->feat.n, s->feat.n == 1 ? "" : "s");
    if (s->stats_from_file)
        printf("; statistics from the file (mode %s)", s->meta.mode[0] ? s->meta.mode : "not recorded, assumed to match");
    printf("\n");
}

static int contexts(const eval_opts *o, kb_ctx *dev, kb_ctx *cpu, kb_err *err) {
    kb_ctx_opts co = {.threads = o->threads};
    if (kb_ctx_init(cpu, KB_DEV_CPU, &co, err)) return -1;
    if (o->device == KB_DEV_CPU) return *dev = *cpu, 0;
    return kb_ctx_init(dev, o->device, &co, err);
}

/* A file's recorded weights against the featuriser's, once loaded: before
 * that, check_meta knows the FID weights' hash, not that of weights taken
 * with --allow-unverified-weights. */
static int weights_fit(const side_plan *p, const feat_state *fs, kb_err *err) {
    const char *w = p->set.meta.weights_sha256, *mine = fs->fz.weights_sha256;
    if (!w[0] || !strcmp(w, mine)) return 0;
    return kb_fail(err, "%s: its features come from weights with sha256 %.16s..., this evaluation's are %.16s...",
                   p->set.path, w, mine),
           KB_EXIT_USAGE;
}

/* Featurises a side's probed images and fills in what its file lacked; the
 * images (an npz's arr_0) are let go at once. */
static int load_images(const eval_env *env, side_plan *p, kb_err *err) {
    if (!p->in_open) return 0;
    kb_evalset fresh;
    kb_evalset_init(&fresh, p->label, p->set.path);
    int rc = featurize_images(env, &p->in, p->use_cache, &fresh, err);
    if (!rc) take_missing(&p->set, &fresh);
    kb_evalset_free(&fresh);
    kb_image_input_close(&p->in), p->in_open = 0;
    return rc;
}

/* The work of a plan: the featuriser (only when images are to be
 * featurised), each side's images, the metrics, the CSV. */
static int run_plan(const eval_opts *o, eval_plan *pl, kb_err *err) {
    kb_ctx dev, cpu;
    if (contexts(o, &dev, &cpu, err)) return -1;
    feat_state fs;
    memset(&fs, 0, sizeof fs);
    fs.ctx = &dev;
    eval_env env = {o, &fs};
    int rc = 0;
    if (pl->samp.in_open || pl->ref.in_open) {
        rc = featurizer_ready(&fs, o, err);
        if (!rc) rc = weights_fit(&pl->samp, &fs, err);
        if (!rc) rc = weights_fit(&pl->ref, &fs, err);
    }
    if (!rc) rc = load_images(&env, &pl->samp, err);
    if (!rc) rc = load_images(&env, &pl->ref, err);
    results r = {.n = 0, .o = o, .samp = &pl->samp.set, .ref = &pl->ref.set, .cpu = &cpu};
    if (!rc) rc = same_weights(r.samp, r.ref, err);
    if (!rc) {
        describe_side("samples:", r.samp);
        describe_side("reference:", r.ref);
        printf("mode %s, featuriser %s\n", kb_preproc_name(o->mode),
               strcmp(o->featurizer, "pixels") ? "inception-2015-12-05" : "pixels (TEST ONLY: not Inception)");
        rc = run_all(&r, pl->run, pl->skip, err);
    }
    if (!rc && o->csv) rc = write_csv(&r, o->csv, err);
    if (!rc && o->csv) printf("wrote %s\n", o->csv);
    if (fs.net) kb_inception_free(fs.net);
    if (o->device != KB_DEV_CPU) kb_ctx_free(&dev);
    kb_ctx_free(&cpu);
    return rc;
}

/* 0, -1, or KB_EXIT_USAGE (found by the plan, before any work). */
static int evaluate(const eval_opts *o, const char *samp_path, const char *ref_path, kb_err *err) {
    eval_plan pl;
    int rc = make_plan(o, samp_path, ref_path, &pl, err);
    if (!rc) rc = run_plan(o, &pl, err);
    side_plan_free(&pl.samp), side_plan_free(&pl.ref);
    return rc;
}

/* eval stats' plan: its input probed and able to give statistics, and the
 * images for --with-images packed (a folder of two image sizes fails here,
 * not after the featurisation). 0, -1 or KB_EXIT_USAGE. */
static int plan_stats(const eval_opts *o, const char *in_path, kb_image_input *in, kb_arr0 *a0, uint8_t **px,
                      kb_err *err) {
    int rc = kb_image_input_probe(in_path, &o->ref_filter, o->quiet, in, err);
    if (rc) return rc == KB_INPUT_MISFIT ? KB_EXIT_USAGE : -1;
    note_ignored(in);
    if (in->count < 2)
        rc = kb_fail(err, "%s: statistics need at least 2 images, it has %lld", in_path, (long long)in->count);
    if (!rc && o->with_images) {
        a0->n = in->count, a0->c = 3;
        rc = kb_image_input_load_data(in, err) || kb_image_input_pack(in, px, &a0->h, &a0->w, err) ? -1 : 0;
        a0->data = *px;
    }
    if (rc) kb_image_input_close(in);
    return rc;
}

/* `eval stats INPUT -o OUT.npz`: statistics (and optionally features and images) of INPUT. */
static int write_stats(const eval_opts *o, const char *in_path, kb_err *err) {
    kb_image_input in;
    kb_arr0 a0 = {0};
    uint8_t *px = NULL;
    int rc = plan_stats(o, in_path, &in, &a0, &px, err);
    if (rc) return free(px), rc;
    kb_ctx dev, cpu;
    if (contexts(o, &dev, &cpu, err)) return kb_image_input_close(&in), free(px), -1;
    feat_state fs;
    memset(&fs, 0, sizeof fs);
    fs.ctx = &dev;
    eval_env env = {o, &fs};
    kb_evalset s;
    kb_evalset_init(&s, "input", in_path);
    rc = featurize_images(&env, &in, !o->no_cache, &s, err);
    kb_image_input_close(&in);
    if (!rc && !s.has_pool_stats) rc = kb_fail(err, "%s: statistics need at least 2 images", in_path);
    if (!rc) rc = kb_evalset_write_npz(o->out, &s, o->with_features, o->with_images ? &a0 : NULL, err);
    if (!rc)
        printf("wrote %s: %lld images, mode %s, featuriser %s; mu/sigma %lld-d, mu_s/sigma_s %lld-d%s%s%s\n", o->out,
               (long long)s.meta.count, s.meta.mode, s.meta.featurizer, (long long)s.pool_stats.dim,
               (long long)s.spatial_stats.dim, s.spectrum_bins ? ", spectrum" : "",
               o->with_features ? ", pool/logits features" : "", o->with_images ? ", arr_0 images" : "");
    free(px);
    kb_evalset_free(&s);
    if (fs.net) kb_inception_free(fs.net);
    if (o->device != KB_DEV_CPU) kb_ctx_free(&dev);
    kb_ctx_free(&cpu);
    return rc;
}

/* The files written at the end, checked before any image is featurised: a
 * --csv or -o that was a directory or in a missing folder failed only after
 * the whole evaluation (hours of Inception on 50k images). KB_EXIT_USAGE
 * when the output is an input (arguments that cannot work together), -1
 * when it cannot be written. */
static int check_outputs(const eval_opts *o, int stats, char **pos, int npos, kb_err *err) {
    const char *opt = stats ? "-o" : "--csv", *out = stats ? o->out : o->csv;
    for (int i = 0; out && i < npos; i++) /* eval stats X.npz -o X.npz replaced its input, images and all */
        if (kb_same_file(out, pos[i]))
            return kb_fail(err, "%s %s is an input of this evaluation: writing there would replace it", opt, out),
                   KB_EXIT_USAGE;
    if (o->csv && kb_probe_writable(o->csv, err)) return kb_fail_wrap(err, "--csv");
    if (stats && kb_probe_writable(o->out, err)) return kb_fail_wrap(err, "-o");
    return 0;
}

int kb_cmd_eval(int argc, char **argv, kb_err *err) {
    eval_opts o;
    opts_init(&o);
    int stats = argc > 1 && !strcmp(argv[1], "stats");
    int rc = parse_opts(argc - stats, argv + stats, &o, err);
    if (rc) return rc > 0 ? KB_EXIT_OK : KB_EXIT_USAGE;
    int npos = argc - stats - optind;
    char **pos = argv + stats + optind;
    if (stats && (npos != 1 || !o.out)) {
        kb_fail(err, "eval stats: expected one INPUT and -o OUT.npz");
        return KB_EXIT_USAGE;
    }
    if (stats && o.samples_filter_given) { /* they were dropped without a word */
        kb_fail(err, "eval stats: INPUT's images are selected with --ref-split/--ref-classes; --samples-split and "
                     "--samples-classes select the SAMPLES of a comparison");
        return KB_EXIT_USAGE;
    }
    if (stats && o.compare_opt[0]) {
        kb_fail(err, "eval stats: %s applies to a comparison (kindbench eval SAMPLES REFERENCE), not to eval stats",
                o.compare_opt);
        return KB_EXIT_USAGE;
    }
    if (!stats && npos >= 1 && !strcmp(pos[0], "stats") && !kb_is_file(pos[0]) && !kb_is_dir(pos[0])) {
        kb_fail(err, "eval: 'stats' must come right after 'eval': kindbench eval stats INPUT -o OUT.npz [options]");
        return KB_EXIT_USAGE;
    }
    if (!stats && npos != 2) {
        kb_fail(err, "eval: expected SAMPLES and REFERENCE, got %d argument%s", npos, npos == 1 ? "" : "s");
        return KB_EXIT_USAGE;
    }
    if (!stats && o.stats_opt[0]) {
        kb_fail(err, "eval: %s applies to eval stats only (kindbench eval stats INPUT -o OUT.npz)", o.stats_opt);
        return KB_EXIT_USAGE;
    }
    if ((rc = check_outputs(&o, stats, pos, npos, err))) return rc == KB_EXIT_USAGE ? rc : KB_EXIT_FAIL;
    rc = stats ? write_stats(&o, pos[0], err) : evaluate(&o, pos[0], pos[1], err);
    return rc == KB_EXIT_USAGE ? KB_EXIT_USAGE : rc ? KB_EXIT_FAIL : KB_EXIT_OK;
}
