/* `kindbench eval`'s metrics from two loaded sets: each metric's row, the
 * reason a metric cannot be had (shared with the plan, so both give the
 * same), the run in order, the CSV (harness/eval.h). */
#include <csv.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/eval.h"
#include "util/fileio.h"

const unsigned eval_metric_order[EVAL_N_METRICS] = {M_FID, M_SFID, M_IS, M_PR, M_DC, M_KID, M_SPECTRAL};

/* Which of the wanted metric bits a set can serve on its own. */
unsigned eval_satisfied(const kb_evalset *s) {
    unsigned ok = 0;
    if (s->has_pool_stats) ok |= M_FID;
    if (s->has_spatial_stats) ok |= M_SFID;
    if (s->feat.pool) ok |= M_PR | M_DC | M_KID;
    if (s->feat.logits) ok |= M_IS;
    if (s->spectrum_bins) ok |= M_SPECTRAL;
    return ok;
}

/* ------------------------------------------------------------- results */

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

side_caps eval_caps_of_set(const kb_evalset *s) {
    side_caps c = {s->path, eval_satisfied(s), s->feat.n, s->feat.n ? s->feat.n : s->meta.count, s->spectrum_note};
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
void eval_unavailable(const eval_opts *o, const side_caps *samp, const side_caps *ref, unsigned bit, char *out,
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

static size_t metric_index(unsigned bit) {
    size_t i = 0;
    while (i + 1 < EVAL_N_METRICS && eval_metric_order[i] != bit) i++;
    return i;
}

/* Why a requested metric is not computed: the plan's reason, or one only
 * the loaded sets show (a folder's images of two sizes have no spectrum). */
static void not_computed(const results *r, unsigned run, const char (*skip)[1200], unsigned bit, char *why, size_t n) {
    side_caps cs = eval_caps_of_set(r->samp), cr = eval_caps_of_set(r->ref);
    if (!(run & bit)) snprintf(why, n, "%s", skip[metric_index(bit)]);
    else eval_unavailable(r->o, &cs, &cr, bit, why, n);
}

/* Computes the metrics of run, in order; the other requested ones are
 * skipped with their reason from skip[] (indexed as eval_metric_order). */
int eval_run_all(results *r, unsigned run, const char (*skip)[1200], kb_err *err) {
    unsigned knn = 0;
    char why[1200];
    for (size_t i = 0; i < EVAL_N_METRICS; i++) {
        unsigned bit = eval_metric_order[i];
        if (!(r->o->metrics & bit)) continue;
        not_computed(r, run, skip, bit, why, sizeof why);
        if (why[0] && r->o->metrics_given) return kb_fail(err, "%s: %s", eval_metric_name(bit), why);
        if (why[0]) {
            printf("%-10s %14s    %-10s  skipped: %s\n", eval_metric_name(bit), "-", "", why);
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

int eval_write_csv(const results *r, const char *path, kb_err *err) {
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
