/* `kindbench eval`'s plan (harness/eval.h). Everything that decides
 * whether a comparison can run is found here, before any image is
 * featurised (an hour of Inception for 50k images on a CPU): both inputs opened (an npz's statistics, features and meta read; the
 * images counted, an npz's arr_0 by its header), their modes, featurisers,
 * weights and dimensions, and what each requested metric needs of them.
 * Errors are -1 (an input that cannot be read) or KB_EXIT_USAGE (options
 * or inputs that do not fit together, README "Errors end the program"). */
#include <stdio.h>
#include <string.h>

#include "harness/eval.h"
#include "util/fileio.h"

/* Statistics written with another mode or featuriser must not be mixed in. */
int eval_check_meta(const kb_evalset *s, const eval_opts *o, kb_err *err) {
    const char *mode = kb_preproc_name(o->mode);
    if (s->meta.mode[0] && strcmp(s->meta.mode, mode))
        return kb_fail(err, "%s: its statistics were computed in mode %s, but this evaluation uses --mode %s", s->path,
                       s->meta.mode, mode);
    const char *fz = strcmp(o->featurizer, "pixels") ? "inception-2015-12-05" : "pixels";
    if (s->meta.featurizer[0] && strcmp(s->meta.featurizer, fz))
        return kb_fail(err, "%s: its features come from featuriser '%s', this evaluation uses '%s'", s->path,
                       s->meta.featurizer, fz);
    /* the weights: known without loading them unless --allow-unverified-weights (then see eval_same_weights) */
    const char *w = !strcmp(fz, "pixels") ? "none" : o->allow_unverified ? NULL : KB_INCEPTION_SHA256;
    if (w && s->meta.weights_sha256[0] && strcmp(s->meta.weights_sha256, w))
        return kb_fail(err, "%s: its features come from weights with sha256 %.16s..., this evaluation's are %.16s...",
                       s->path, s->meta.weights_sha256, w);
    return 0;
}

/* The two sides' recorded weights agree (either may be unrecorded, as in an
 * ADM or pytorch-fid file): statistics of two networks are not comparable. */
int eval_same_weights(const kb_evalset *a, const kb_evalset *b, kb_err *err) {
    const char *wa = a->meta.weights_sha256, *wb = b->meta.weights_sha256;
    if (!wa[0] || !wb[0] || !strcmp(wa, wb)) return 0;
    return kb_fail(err, "%s and %s were featurised with different weights (sha256 %.16s... and %.16s...): their "
                        "statistics cannot be compared", a->path, b->path, wa, wb);
}

/* A note on the input, not progress: shown with --quiet too. */
void eval_note_ignored(const kb_image_input *in) {
    if (in->ignored)
        fprintf(stderr, "%s: ignored %lld file%s that are not PNG/JPEG/GIF images\n", in->path, (long long)in->ignored,
                in->ignored == 1 ? "" : "s");
}

/* What each side must provide for the chosen metrics. */
static unsigned side_wants(unsigned metrics, int samples) {
    unsigned w = metrics & (M_FID | M_SFID | M_PR | M_DC | M_KID | M_SPECTRAL);
    if (samples) w |= metrics & M_IS;
    return w;
}

static int is_npz_path(const char *path) { return kb_is_file(path) && !kb_has_suffix(path, ".kbd"); }

static int filtered(const kb_input_filter *f) { return f->split != KB_SPLIT_ANY || f->role != KB_ROLE_ANY; }

static void side_plan_init(side_plan *p, const char *label, const char *path, const kb_input_filter *f, int use_cache) {
    memset(p, 0, sizeof *p);
    p->label = label, p->filter = f, p->use_cache = use_cache;
    kb_evalset_init(&p->set, label, path);
}

void eval_side_plan_free(side_plan *p) {
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
        if (eval_check_meta(&p->set, o, err)) return KB_EXIT_USAGE;
        has_images = p->set.has_images;
    }
    if (!(want & ~eval_satisfied(&p->set)) || !has_images) return 0;
    int rc = kb_image_input_probe(path, p->filter, o->quiet, &p->in, err);
    if (rc) return rc == KB_INPUT_MISFIT ? KB_EXIT_USAGE : -1;
    p->in_open = 1;
    eval_note_ignored(&p->in);
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
    side_caps c = eval_caps_of_set(&p->set);
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
    eval_featurizer_dims(o, &fpool, &fspatial);
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
    for (size_t i = 0; i < EVAL_N_METRICS; i++) {
        unsigned bit = eval_metric_order[i];
        if ((pl->run & bit & (M_PR | M_DC | M_KID)) && dims_differ(eval_metric_name(bit), "features", s.feat, r.feat, pl, err))
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
    for (size_t i = 0; i < EVAL_N_METRICS; i++) {
        unsigned bit = eval_metric_order[i];
        if (!(o->metrics & bit)) continue;
        eval_unavailable(o, &cs, &cr, bit, pl->skip[i], sizeof pl->skip[i]);
        if (pl->skip[i][0] && o->metrics_given)
            return kb_fail(err, "%s: %s", eval_metric_name(bit), pl->skip[i]), KB_EXIT_USAGE;
        if (!pl->skip[i][0]) pl->run |= bit;
    }
    return 0;
}

/* Images no metric that runs needs are not featurised (a default metric
 * skipped may have been the only reason to). */
static void drop_unneeded(side_plan *p, unsigned want) {
    if (p->in_open && !(want & ~eval_satisfied(&p->set))) kb_image_input_close(&p->in), p->in_open = 0;
}

int eval_make_plan(const eval_opts *o, const char *samp_path, const char *ref_path, eval_plan *pl, kb_err *err) {
    side_plan_init(&pl->samp, "samples", samp_path, &o->samples_filter, 0);
    side_plan_init(&pl->ref, "reference", ref_path, &o->ref_filter, !o->no_cache);
    int rc = plan_side(o, samp_path, side_wants(o->metrics, 1), &pl->samp, err);
    if (!rc) rc = plan_side(o, ref_path, side_wants(o->metrics, 0), &pl->ref, err);
    if (!rc && eval_same_weights(&pl->samp.set, &pl->ref.set, err)) rc = KB_EXIT_USAGE;
    if (!rc) rc = plan_metrics(o, pl, err);
    if (!rc) rc = plan_dims_fit(o, pl, err);
    if (!rc) drop_unneeded(&pl->samp, side_wants(pl->run, 1)), drop_unneeded(&pl->ref, side_wants(pl->run, 0));
    return rc;
}
