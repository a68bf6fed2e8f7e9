/* `kindbench eval`: sample quality metrics of a set of samples against a
 * reference (FID, sFID, IS, precision/recall, density/coverage, KID,
 * spectral distance), and `kindbench eval stats` to write reference
 * statistics. See docs/metrics.md. This file: the featurisers, the
 * features cache, the commands; options, plan and metrics are in
 * eval_opts.c, eval_plan.c and eval_metrics.c (harness/eval.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/eval.h"
#include "metrics/features_partial.h"
#include "util/fileio.h"
#include "util/sha256.h"

/* --------------------------------------------------------- featurisers */

typedef struct {
    kb_featurizer fz;
    kb_ctx *ctx;
    kb_inception *net;
    kb_preproc_mode mode;
    int ready;
    int stale_noted; /* note_stale_partials has looked */
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
void eval_featurizer_dims(const eval_opts *o, int64_t *pool, int64_t *spatial) {
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

/* Once a run, unless --quiet: the partial files of stopped runs other than
 * this one's stay until a rerun resumes them, possibly forever, so where
 * they are and what they take is said. */
static void note_stale_partials(feat_state *fs, const char *dir, const char *part, int quiet) {
    if (fs->stale_noted || quiet) return;
    fs->stale_noted = 1;
    int64_t bytes, n = kb_fpartial_stale(dir, part, &bytes);
    if (n)
        fprintf(stderr, "note: %s holds %lld partial featurisation%s of stopped runs (%.1f MB), kept to resume them; "
                        "delete the .partial files of runs that will not be repeated\n",
                dir, (long long)n, n == 1 ? "" : "s", (double)bytes / 1e6);
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
        note_stale_partials(env->fs, dir, part, env->o->quiet);
    }
    if (!rc && !cached) rc = kb_image_input_load_data(in, err);
    if (!rc && !cached) rc = kb_featurize_input(in, &env->fs->fz, &fo, out, err);
    if (!rc && !cached) snprintf(out->meta.source_sha256, sizeof out->meta.source_sha256, "%s", want.source_sha256);
    if (!rc && !cached && use_cache) cache_store(dir, cpath, out, env->o->quiet);
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
    if (!rc) rc = eval_same_weights(r.samp, r.ref, err);
    if (!rc) {
        describe_side("samples:", r.samp);
        describe_side("reference:", r.ref);
        printf("mode %s, featuriser %s\n", kb_preproc_name(o->mode),
               strcmp(o->featurizer, "pixels") ? "inception-2015-12-05" : "pixels (TEST ONLY: not Inception)");
        rc = eval_run_all(&r, pl->run, pl->skip, err);
    }
    if (!rc && o->csv) rc = eval_write_csv(&r, o->csv, err);
    if (!rc && o->csv) printf("wrote %s\n", o->csv);
    if (fs.net) kb_inception_free(fs.net);
    if (o->device != KB_DEV_CPU) kb_ctx_free(&dev);
    kb_ctx_free(&cpu);
    return rc;
}

/* 0, -1, or KB_EXIT_USAGE (found by the plan, before any work). */
static int evaluate(const eval_opts *o, const char *samp_path, const char *ref_path, kb_err *err) {
    eval_plan pl;
    int rc = eval_make_plan(o, samp_path, ref_path, &pl, err);
    if (!rc) rc = run_plan(o, &pl, err);
    eval_side_plan_free(&pl.samp), eval_side_plan_free(&pl.ref);
    return rc;
}

/* eval stats' plan: its input probed and able to give statistics, and the
 * images for --with-images packed (a folder of two image sizes fails here,
 * not after the featurisation). 0, -1 or KB_EXIT_USAGE. */
static int plan_stats(const eval_opts *o, const char *in_path, kb_image_input *in, kb_arr0 *a0, uint8_t **px,
                      kb_err *err) {
    int rc = kb_image_input_probe(in_path, &o->ref_filter, o->quiet, in, err);
    if (rc) return rc == KB_INPUT_MISFIT ? KB_EXIT_USAGE : -1;
    eval_note_ignored(in);
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
    eval_opts_init(&o);
    int stats = argc > 1 && !strcmp(argv[1], "stats");
    int rc = eval_parse_opts(argc - stats, argv + stats, &o, err);
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
