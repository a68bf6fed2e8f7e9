/* `kindbench eval` options: the metric names, defaults, --help, parsing
 * (harness/eval.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/eval.h"

static const struct {
    const char *name;
    unsigned bit;
} metric_names[] = {{"fid", M_FID}, {"sfid", M_SFID}, {"is", M_IS}, {"pr", M_PR},
                    {"dc", M_DC},   {"kid", M_KID},   {"spectral", M_SPECTRAL}};

void eval_opts_init(eval_opts *o) {
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
int eval_parse_opts(int argc, char **argv, eval_opts *o, kb_err *err) {
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

const char *eval_metric_name(unsigned bit) {
    for (size_t i = 0; i < sizeof metric_names / sizeof metric_names[0]; i++)
        if (metric_names[i].bit == bit) return metric_names[i].name;
    return "?";
}
