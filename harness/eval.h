/* What the files of `kindbench eval` share (harness/cmd_eval.c: the
 * featurisers and the commands; eval_opts.c: options; eval_plan.c: the plan
 * made before any image is featurised; eval_metrics.c: the metrics, their
 * reasons for being skipped, the CSV). Internal to the harness. */
#ifndef KB_HARNESS_EVAL_H
#define KB_HARNESS_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "harness/cli.h"
#include "metrics/eval_input.h"
#include "metrics/fid.h"
#include "metrics/inception.h"
#include "metrics/inception_score.h"
#include "metrics/kid.h"
#include "metrics/prdc.h"
#include "metrics/refstats.h"
#include "metrics/spectral.h"

enum { M_FID = 1, M_SFID = 2, M_IS = 4, M_PR = 8, M_DC = 16, M_KID = 32, M_SPECTRAL = 64 };
#define M_DEFAULT (M_FID | M_SFID | M_IS | M_PR)

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

/* ---- eval_opts.c */
void eval_opts_init(eval_opts *o);
/* 0 to go on, 1 after --help, -1 with err set (a usage error). */
int eval_parse_opts(int argc, char **argv, eval_opts *o, kb_err *err);
const char *eval_metric_name(unsigned bit);

/* ---- eval_metrics.c */
#define EVAL_N_METRICS 7
/* The order metrics are computed and reported in. */
extern const unsigned eval_metric_order[EVAL_N_METRICS];

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

/* Which metric bits a set can serve on its own. */
unsigned eval_satisfied(const kb_evalset *s);
side_caps eval_caps_of_set(const kb_evalset *s);
/* Why both sides (only the samples for IS) cannot serve bit; "" when they can. */
void eval_unavailable(const eval_opts *o, const side_caps *samp, const side_caps *ref, unsigned bit, char *out,
                      size_t n);
/* Computes the metrics of run, in order; the other requested ones are
 * skipped with their reason from skip[] (indexed as eval_metric_order). */
int eval_run_all(results *r, unsigned run, const char (*skip)[1200], kb_err *err);
int eval_write_csv(const results *r, const char *path, kb_err *err);

/* ---- eval_plan.c */
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
    char skip[EVAL_N_METRICS][1200]; /* why each other requested one is not (indexed as eval_metric_order) */
} eval_plan;

int eval_check_meta(const kb_evalset *s, const eval_opts *o, kb_err *err);
int eval_same_weights(const kb_evalset *a, const kb_evalset *b, kb_err *err);
void eval_note_ignored(const kb_image_input *in);
/* Both inputs opened and checked, the metrics that will run decided: 0, -1
 * (an input that cannot be read) or KB_EXIT_USAGE. */
int eval_make_plan(const eval_opts *o, const char *samp_path, const char *ref_path, eval_plan *pl, kb_err *err);
void eval_side_plan_free(side_plan *p);

/* ---- cmd_eval.c */
/* The featuriser's pool and spatial sizes, known without loading it. */
void eval_featurizer_dims(const eval_opts *o, int64_t *pool, int64_t *spatial);

#endif
