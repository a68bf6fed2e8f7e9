/* `kindbench sample`: class-conditional samples from a DiT checkpoint, as
 * DiT's sample_ddp.py makes them for FID: respaced DDPM (or DDIM), classifier-
 * free guidance, uint8 quantisation; written as PNGs, a grid, and an ADM-style
 * .npz batch (arr_0 [N,H,W,C] uint8, arr_1 [N] int64 labels). Everything that
 * can be wrong with the inputs is checked before any output is written. */
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "datasets/grid.h"
#include "datasets/image_io.h"
#include "harness/cli.h"
#include "harness/sample_pngs.h"
#include "models/checkpoint.h"
#include "models/sampler.h"
#include "util/fileio.h"
#include "util/npy.h"
#include "util/sha256.h"

#define SAMPLE_MAX_SEED 9007199254740991LL /* stored exactly in sample.json (a double) */
#define GRID_MAX_COLS 16

static void usage(void) {
    printf(
        "Usage: kindbench sample --ckpt CKPT --out DIR [options]\n\n"
        "Samples class-conditional images from a DiT checkpoint as DiT's sample_ddp.py does (respaced DDPM,\n"
        "classifier-free guidance, clamp(127.5x+128, 0, 255) -> uint8) and writes\n"
        "  DIR/samples.npz   arr_0 [N,H,W,C] uint8 and arr_1 [N] int64 labels (ADM evaluation format)\n"
        "  DIR/png/<index>_class<k>.png, DIR/grid.png (one row per class, as many as fit), DIR/sample.json\n"
        "Sample i's noise comes from its own Philox stream (seed, i): results do not depend on --batch,\n"
        "and a rerun with the same seed writes a byte-identical npz.\n\n"
        "Options:\n"
        "  --ckpt CKPT            kindbench checkpoint (required)\n"
        "  --out DIR              output directory, created if needed (required)\n"
        "  --classes all|0,3,5    classes to sample (default all)\n"
        "  --per-class N          N samples of each class, class after class (default 8)\n"
        "  --count N              N samples in all, labels cycling through the classes\n"
        "  --steps SPEC           sampling steps out of 1000: 250 (default), any 2..1000, or a respacing\n"
        "                         spec (ddim50, 10,15,20)\n"
        "  --sampler ddpm|ddim    (default ddpm)\n"
        "  --eta E                DDIM eta (default 0)\n"
        "  --cfg-scale S          guidance scale, >= 1; 1 = none (default 1.5, DiT's FID setting)\n"
        "  --cfg-mode dit|all     dit: guide the first 3 output channels as DiT's code (default);\n"
        "                         all: guide every eps channel (see docs/sampling.md)\n"
        "  --clip-denoised        clamp the predicted x0 to [-1, 1] at each step (DiT: off)\n"
        "  --seed S               noise seed (default 0)\n"
        "  --batch N              samples per model call, doubled with guidance (default 32)\n"
        "  --weights ema|raw      which weights of the checkpoint (default ema, as DiT evaluates)\n"
        "  --grid FILE.png        grid path (default DIR/grid.png)\n"
        "  --npz FILE.npz         npz path (default DIR/samples.npz)\n"
        "  --no-png               no per-sample PNG files\n"
        "  --device cpu|cuda      (default cpu)       --threads N   CPU threads (default: all cores)\n"
        "  --precision fp32|tf32|bf16   GEMM arithmetic on CUDA (default fp32)\n"
        "  --quiet                no progress output\n"
        "  -h, --help             this text\n");
}

enum {
    OPT_CKPT = 256, OPT_OUT, OPT_CLASSES, OPT_PER_CLASS, OPT_COUNT, OPT_STEPS, OPT_SAMPLER, OPT_ETA, OPT_CFG_SCALE,
    OPT_CFG_MODE, OPT_CLIP, OPT_SEED, OPT_BATCH, OPT_WEIGHTS, OPT_GRID, OPT_NPZ, OPT_NO_PNG, OPT_DEVICE, OPT_THREADS,
    OPT_QUIET, OPT_PRECISION
};

typedef struct {
    const char *ckpt, *out, *classes, *steps, *grid, *npz;
    long long per_class, count; /* count > 0 wins; else per_class */
    kb_sample_cfg s;
    int use_ema, no_png, quiet, threads, eta_given;
    kb_device device;
    kb_matmul_precision precision;
} sample_opts;

static int parse_choice(const char *opt, const char *arg, const char *a, const char *b, int *out, kb_err *err) {
    if (!strcmp(arg, a)) return *out = 0, 0;
    if (!strcmp(arg, b)) return *out = 1, 0;
    return kb_fail(err, "%s: expected %s or %s, got '%s'", opt, a, b, arg);
}

static int parse_float_opt(const char *opt, const char *arg, double lo, float *out, kb_err *err) {
    double v;
    if (kb_cli_parse_double(opt, arg, &v, err)) return -1;
    if (!(v >= lo && v <= FLT_MAX)) /* the sampler holds it as a float: 1e39 was infinity */
        return kb_fail(err, "%s: expected a number in [%g, %g], got '%s'", opt, lo, FLT_MAX, arg);
    *out = (float)v;
    return 0;
}

/* Applies one option; -1 with err set is a usage error. */
static int apply_option(int c, const char *arg, sample_opts *o, kb_err *err) {
    long long v;
    int k = 0;
    switch (c) {
    case OPT_CKPT: o->ckpt = arg; return 0;
    case OPT_OUT: o->out = arg; return 0;
    case OPT_CLASSES: o->classes = arg; return 0;
    case OPT_PER_CLASS: return kb_cli_parse_int("--per-class", arg, 1, 10000000, &o->per_class, err);
    case OPT_COUNT: return kb_cli_parse_int("--count", arg, 1, 1000000000, &o->count, err);
    case OPT_STEPS: o->steps = arg; return 0;
    case OPT_SAMPLER:
        if (parse_choice("--sampler", arg, "ddpm", "ddim", &k, err)) return -1;
        o->s.sampler = k ? KB_SAMPLER_DDIM : KB_SAMPLER_DDPM;
        return 0;
    case OPT_ETA: o->eta_given = 1; return parse_float_opt("--eta", arg, 0.0, &o->s.eta, err);
    case OPT_CFG_SCALE: return parse_float_opt("--cfg-scale", arg, 1.0, &o->s.cfg_scale, err);
    case OPT_CFG_MODE:
        if (parse_choice("--cfg-mode", arg, "dit", "all", &k, err)) return -1;
        o->s.cfg_mode = k ? KB_CFG_ALL : KB_CFG_DIT;
        return 0;
    case OPT_CLIP: o->s.clip_denoised = 1; return 0;
    case OPT_SEED:
        if (kb_cli_parse_int("--seed", arg, 0, SAMPLE_MAX_SEED, &v, err)) return -1;
        o->s.seed = (uint64_t)v;
        return 0;
    case OPT_BATCH:
        if (kb_cli_parse_int("--batch", arg, 1, 65536, &v, err)) return -1;
        o->s.batch = (int)v;
        return 0;
    case OPT_WEIGHTS:
        if (parse_choice("--weights", arg, "raw", "ema", &o->use_ema, err)) return -1;
        return 0;
    case OPT_GRID: o->grid = arg; return 0;
    case OPT_NPZ: o->npz = arg; return 0;
    case OPT_NO_PNG: o->no_png = 1; return 0;
    case OPT_DEVICE: return kb_device_parse(arg, &o->device, err) ? kb_fail_wrap(err, "--device") : 0;
    case OPT_PRECISION: return kb_matmul_precision_parse(arg, &o->precision, err);
    case OPT_THREADS:
        if (kb_cli_parse_int("--threads", arg, 1, KB_CTX_MAX_THREADS, &v, err)) return -1;
        o->threads = (int)v;
        return 0;
    case OPT_QUIET: o->quiet = 1; return 0;
    default: return kb_fail(err, "sample: unknown option (see 'kindbench sample --help')");
    }
}

/* --steps: a plain count in [2, 1000] (blanks around it allowed, as the
 * respacing parser allows them), or any spec kb_diffusion_init takes. */
static int check_steps(const char *spec, kb_err *err) {
    long long v;
    char count[32];
    size_t lead = strspn(spec, " \t"), len = strlen(spec + lead);
    while (len && (spec[lead + len - 1] == ' ' || spec[lead + len - 1] == '\t')) len--;
    /* ADM reads "" as no respacing (1000 steps): here it is far likelier an unset $STEPS in a script */
    if (len == 0) return kb_fail(err, "--steps: empty (a step count such as 250, 1000 for every step, or a spec like ddim50)");
    snprintf(count, sizeof count, "%.*s", (int)(len < sizeof count ? len : sizeof count - 1), spec + lead);
    if (count[0] >= '0' && count[0] <= '9' && !strchr(spec, ',') &&
        kb_cli_parse_int("--steps", count, 2, 1000, &v, err))
        return kb_fail(err, "--steps: expected a step count in [2, 1000] or a respacing spec like ddim50, got '%s'",
                       spec);
    kb_diffusion d;
    if (kb_diffusion_init(&d, 1000, spec, err)) return kb_fail_wrap(err, "--steps");
    kb_diffusion_free(&d);
    return 0;
}

/* --classes: "all" or a comma list of distinct non-negative ids (the range is
 * checked against the checkpoint later). */
static int check_classes(const char *spec, kb_err *err) {
    if (!strcmp(spec, "all")) return 0;
    char buf[4096];
    long long v;
    size_t l = strlen(spec);
    int ok = l > 0 && l < sizeof buf && spec[0] != ',' && spec[l - 1] != ',' && !strstr(spec, ",,");
    if (ok) memcpy(buf, spec, l + 1);
    for (char *save = NULL, *tok = ok ? strtok_r(buf, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save))
        ok = ok && !kb_cli_parse_int("--classes", tok, 0, 1 << 30, &v, err);
    return ok ? 0 : kb_fail(err, "--classes: expected all or class ids like 0,3,5, got '%s'", spec);
}

static int check_required(const sample_opts *o, kb_err *err) {
    if (!o->ckpt || !o->out) return kb_fail(err, "sample: --ckpt and --out are required");
    if (o->count && o->per_class) return kb_fail(err, "sample: give --per-class or --count, not both");
    if (o->eta_given && o->s.eta != 0.0f && o->s.sampler != KB_SAMPLER_DDIM)
        return kb_fail(err, "--eta: applies to --sampler ddim only");
    if (kb_matmul_precision_check(o->device, o->precision, err)) return -1;
    return check_classes(o->classes, err) || check_steps(o->steps, err) ? -1 : 0;
}

/* Returns KB_EXIT_OK, KB_EXIT_USAGE, or -1 after printing --help. */
static int parse(int argc, char **argv, sample_opts *o, kb_err *err) {
    static const struct option opts[] = {
        {"ckpt", required_argument, 0, OPT_CKPT},     {"out", required_argument, 0, OPT_OUT},
        {"classes", required_argument, 0, OPT_CLASSES}, {"per-class", required_argument, 0, OPT_PER_CLASS},
        {"count", required_argument, 0, OPT_COUNT},   {"steps", required_argument, 0, OPT_STEPS},
        {"sampler", required_argument, 0, OPT_SAMPLER}, {"eta", required_argument, 0, OPT_ETA},
        {"cfg-scale", required_argument, 0, OPT_CFG_SCALE}, {"cfg-mode", required_argument, 0, OPT_CFG_MODE},
        {"clip-denoised", no_argument, 0, OPT_CLIP},  {"seed", required_argument, 0, OPT_SEED},
        {"batch", required_argument, 0, OPT_BATCH},   {"weights", required_argument, 0, OPT_WEIGHTS},
        {"grid", required_argument, 0, OPT_GRID},     {"npz", required_argument, 0, OPT_NPZ},
        {"no-png", no_argument, 0, OPT_NO_PNG},       {"device", required_argument, 0, OPT_DEVICE},
        {"precision", required_argument, 0, OPT_PRECISION},
        {"threads", required_argument, 0, OPT_THREADS}, {"quiet", no_argument, 0, OPT_QUIET},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->s = kb_sample_cfg_default();
    o->classes = "all", o->steps = "250", o->use_ema = 1, o->device = KB_DEV_CPU;
    int c;
    char bad[3];
    optind = 0; /* GNU getopt: 0 re-initialises its internal state */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') return usage(), -1;
        if (c == '?')
            return kb_fail(err, "sample: unknown option or missing value: '%s'", kb_cli_bad_option(argc, argv, bad)),
                   KB_EXIT_USAGE;
        if (apply_option(c, optarg, o, err)) return KB_EXIT_USAGE;
    }
    if (optind < argc) return kb_fail(err, "sample: unexpected argument '%s'", argv[optind]), KB_EXIT_USAGE;
    if (check_required(o, err)) return KB_EXIT_USAGE;
    if (!o->count && !o->per_class) o->per_class = 8;
    return KB_EXIT_OK;
}

/* ---------------------------------------------------------------- labels */

/* The class list of --classes, checked against the model's classes:
 * KB_EXIT_USAGE for a class the model lacks or one listed twice. */
static int class_list(const char *spec, const char *ckpt, int num_classes, int **out, int *k, kb_err *err) {
    int all = !strcmp(spec, "all"), cap = all ? num_classes : 1;
    for (const char *p = spec; !all && *p; p++) cap += *p == ',';
    int *cls = malloc((size_t)cap * sizeof(int));
    if (!cls) return kb_fail(err, "out of memory");
    *out = cls, *k = cap;
    for (int i = 0; all && i < cap; i++) cls[i] = i;
    for (int i = 0; !all && i < cap; i++) {
        const char *p = spec;
        for (int j = 0; j < i; j++) p = strchr(p, ',') + 1;
        cls[i] = atoi(p);
        if (cls[i] >= num_classes)
            return kb_fail(err, "--classes: class %d outside [0, %d) of %s", cls[i], num_classes, ckpt), KB_EXIT_USAGE;
        for (int j = 0; j < i; j++)
            if (cls[j] == cls[i]) return kb_fail(err, "--classes: class %d listed twice", cls[i]), KB_EXIT_USAGE;
    }
    return 0;
}

/* --per-class N: class after class; --count N: cycling through the classes. */
static int32_t *make_labels(const sample_opts *o, const int *cls, int k, int64_t *n) {
    *n = o->count ? o->count : o->per_class * k;
    int32_t *y = malloc((size_t)*n * sizeof(int32_t));
    for (int64_t i = 0; y && i < *n; i++) y[i] = cls[o->count ? i % k : i / o->per_class];
    return y;
}

/* ---------------------------------------------------------------- outputs */

/* The final paths, and the npz, grid and JSON staged beside them
 * (kb_staged_file): each is written in full to its temp file, and only
 * when all are does commit_outputs rename them into place. */
typedef struct {
    char npz[4096], grid[4096], json[4096], png[4096];
    kb_staged_file npz_s, grid_s, json_s;
} out_paths;

/* Fails unless a file can be written at path, naming the option that chose
 * it: --npz DIR passed this check (a temp file fits beside it) and failed
 * only at its rename, after the sampling. */
static int probe_writable(const char *opt, const char *path, kb_err *err) {
    return kb_probe_writable(path, err) ? kb_fail_wrap(err, "%s", opt) : 0;
}

/* --npz or --grid naming the checkpoint replaced it with the samples. */
static int not_the_ckpt(const char *opt, const char *path, const char *ckpt, kb_err *err) {
    if (!kb_same_file(path, ckpt)) return 0;
    return kb_fail(err, "%s %s is the checkpoint itself (--ckpt): writing there would replace it", opt, path);
}

/* 1 when two output paths name one file, existing or not (same parent
 * directory, same name): --npz X --grid X made one output replace the other. */
static int same_output(const char *a, const char *b) {
    if (!strcmp(a, b) || kb_same_file(a, b)) return 1;
    char da[4096], db[4096], ra[PATH_MAX], rb[PATH_MAX];
    const char *na = strrchr(a, '/'), *nb = strrchr(b, '/');
    snprintf(da, sizeof da, "%.*s", na ? (int)(na - a) + 1 : 1, na ? a : ".");
    snprintf(db, sizeof db, "%.*s", nb ? (int)(nb - b) + 1 : 1, nb ? b : ".");
    return !strcmp(na ? na + 1 : a, nb ? nb + 1 : b) && realpath(da, ra) && realpath(db, rb) && !strcmp(ra, rb);
}

static int distinct_outputs(const sample_opts *o, const out_paths *p, kb_err *err) {
    const char *n = o->npz ? "--npz" : "--out", *g = o->grid ? "--grid" : "--out";
    if (same_output(p->npz, p->grid))
        return kb_fail(err, "%s and %s name one file (%s): each output needs its own", n, g, p->npz);
    if (same_output(p->npz, p->json)) return kb_fail(err, "%s %s is the run's sample.json", n, p->npz);
    if (same_output(p->grid, p->json)) return kb_fail(err, "%s %s is the run's sample.json", g, p->grid);
    return 0;
}

/* Creates an output's temp file (kb_staged_begin), naming the option that
 * chose the path when it cannot be (a directory, a missing folder). */
static int stage_output(const char *opt, kb_staged_file *s, const char *path, kb_err *err) {
    return kb_staged_begin(s, path, err) ? kb_fail_wrap(err, "%s", opt) : 0;
}

/* A temp file of DIR's own outputs (each staged npz is as large as the
 * samples), for kb_sweep_stale. */
static int is_output_temp(const char *name, const void *unused) {
    (void)unused;
    return kb_is_temp_of(name, "samples.npz") || kb_is_temp_of(name, "grid.png") || kb_is_temp_of(name, "sample.json");
}

/* The output paths, which must not name the checkpoint or each other:
 * KB_EXIT_USAGE when they do (options that cannot work together). */
static int plan_outputs(const sample_opts *o, out_paths *p, kb_err *err) {
    if (kb_path_join(p->npz, sizeof p->npz, o->out, "samples.npz", err) ||
        kb_path_join(p->grid, sizeof p->grid, o->out, "grid.png", err) ||
        kb_path_join(p->json, sizeof p->json, o->out, "sample.json", err) ||
        kb_path_join(p->png, sizeof p->png, o->out, "png", err))
        return -1;
    if (o->npz) snprintf(p->npz, sizeof p->npz, "%s", o->npz);
    if (o->grid) snprintf(p->grid, sizeof p->grid, "%s", o->grid);
    if (not_the_ckpt(o->npz ? "--npz" : "--out", p->npz, o->ckpt, err) ||
        not_the_ckpt(o->grid ? "--grid" : "--out", p->grid, o->ckpt, err) || not_the_ckpt("--out", p->json, o->ckpt, err) ||
        distinct_outputs(o, p, err))
        return KB_EXIT_USAGE;
    return 0;
}

/* The npz, grid and JSON temp files of plan_outputs's paths are created now,
 * before the sampling starts (so an unwritable location fails at once), and
 * the PNGs go to a staging folder that replaces DIR/png only at the end. */
static int prepare_outputs(const sample_opts *o, out_paths *p, kb_png_set *pngs, int *lock_fd, kb_err *err) {
    char probe[4300];
    /* the lock first: two runs into one DIR could leave one's npz beside the other's PNGs */
    if (kb_mkdir_p(o->out, err) || kb_dir_lock(o->out, ".sample.lock", "kindbench sample", lock_fd, err) ||
        (!o->no_png && kb_png_set_begin(pngs, o->out, err)))
        return kb_fail_wrap(err, "--out");
    /* unlocked (no flock there): a live run's may be among them */
    if (*lock_fd >= 0) kb_sweep_stale(o->out, is_output_temp, NULL, o->quiet);
    snprintf(probe, sizeof probe, "%s/probe.png", pngs->staging);
    return stage_output(o->npz ? "--npz" : "--out", &p->npz_s, p->npz, err) ||
                   stage_output(o->grid ? "--grid" : "--out", &p->grid_s, p->grid, err) ||
                   stage_output("--out", &p->json_s, p->json, err) || (!o->no_png && probe_writable("--out", probe, err))
               ? -1
               : 0;
}

/* Replaces the outputs of an earlier run with this run's, all written by
 * now: the earlier sample.json goes first, the new one comes last, so that
 * a sample.json in DIR always describes the npz, grid and PNGs beside it (a
 * kill in between leaves none). Before this nothing of the earlier run's
 * was touched. */
static int commit_outputs(const sample_opts *o, out_paths *p, kb_png_set *pngs, long long *replaced, kb_err *err) {
    if (unlink(p->json) != 0 && errno != ENOENT)
        return kb_fail(err, "%s: cannot replace the earlier run's file: %s", p->json, strerror(errno));
    return kb_staged_commit(&p->npz_s, err) || kb_staged_commit(&p->grid_s, err) ||
                   (o->no_png ? kb_png_set_clear(o->out, replaced, err) : kb_png_set_commit(pngs, replaced, err)) ||
                   kb_staged_commit(&p->json_s, err)
               ? -1
               : 0;
}

static void drop_staged_outputs(out_paths *p) {
    kb_staged_drop(&p->npz_s), kb_staged_drop(&p->grid_s), kb_staged_drop(&p->json_s);
}

/* Each finished batch: quantised into the NHWC buffer, and one PNG per sample. */
typedef struct {
    uint8_t *u8;
    int H, C, png;
    const char *png_dir;
} sink_ctx;

static int sink_fn(void *user, int64_t first, int B, const int32_t *labels, const float *x0, kb_err *err) {
    sink_ctx *s = user;
    int64_t hw = (int64_t)s->H * s->H, per = hw * s->C;
    for (int64_t i = 0; i < B * per; i++) /* quantised, a NaN would pass as a plausible pixel */
        if (!isfinite(x0[i]))
            return kb_fail(err, "sample %lld: the sampler produced a non-finite value (%g); a guidance scale or eta "
                                "this large, or a diverged checkpoint, gives no image", (long long)(first + i / per),
                           x0[i]);
    kb_quantize_nhwc(x0, B, s->C, hw, s->u8 + first * per);
    for (int b = 0; s->png && b < B; b++) {
        char name[64], path[4200];
        snprintf(name, sizeof name, "%06lld_class%d.png", (long long)(first + b), labels[b]);
        kb_image img = {s->H, s->H, s->C, s->u8 + (first + b) * per};
        if (kb_path_join(path, sizeof path, s->png_dir, name, err) || kb_png_write(path, &img, err)) return -1;
    }
    return 0;
}

/* Classes the grid shows: all k, but no more rows than one PNG can hold
 * (992 of 64 px): ImageNet's 1000 classes at 64 px made the grid fail after
 * every sample was drawn, and the run's PNGs were dropped with it. */
static int grid_rows(int H, int k) {
    int fit = kb_grid_max_cells(H, 2);
    return k < fit ? k : fit;
}

/* One row per class (in --classes order, the first grid_rows of them), its
 * first samples left to right. */
static int write_grid(const char *path, const sink_ctx *s, const int32_t *y, int64_t n, const int *cls, int k,
                      kb_err *err) {
    int64_t per = (int64_t)s->H * s->H * s->C, most = 0;
    k = grid_rows(s->H, k);
    int *filled = calloc((size_t)k, sizeof(int));
    const uint8_t **cells = calloc((size_t)k * GRID_MAX_COLS, sizeof *cells);
    if (!filled || !cells) return free(filled), free(cells), kb_fail(err, "%s: out of memory", path);
    for (int64_t i = 0; i < n; i++) {
        int r = 0;
        while (r < k && cls[r] != y[i]) r++;
        if (r == k) continue; /* a class past the grid's last row */
        if (filled[r] < GRID_MAX_COLS) cells[r * GRID_MAX_COLS + filled[r]++] = s->u8 + i * per;
        if (filled[r] > most) most = filled[r];
    }
    /* compact the rows to `most` columns */
    for (int r = 0; r < k; r++)
        for (int c = 0; c < most; c++) cells[r * most + c] = cells[r * GRID_MAX_COLS + c];
    int rc = kb_grid_write_png(path, cells, k, (int)most, s->H, s->C, 2, err);
    free(filled), free(cells);
    return rc;
}

static cJSON *int_array(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* The settings of the run (DIR/sample.json): enough to reproduce it. */
static cJSON *settings_json(const sample_opts *o, const kb_checkpoint_info *info, const kb_diffusion *d,
                            const int *cls, int k, int64_t n) {
    cJSON *j = cJSON_CreateObject();
    char *cfg = kb_dit_config_to_json(&info->cfg);
    cJSON_AddStringToObject(j, "format", "kindbench-samples-1");
    cJSON_AddStringToObject(j, "checkpoint", o->ckpt);
    cJSON_AddNumberToObject(j, "checkpoint_step", (double)info->step);
    cJSON_AddItemToObject(j, "model", cJSON_Parse(cfg));
    cJSON_AddStringToObject(j, "weights", o->use_ema ? "ema" : "raw");
    cJSON_AddStringToObject(j, "sampler", o->s.sampler == KB_SAMPLER_DDIM ? "ddim" : "ddpm");
    cJSON_AddStringToObject(j, "steps", o->steps);
    cJSON_AddNumberToObject(j, "num_steps", d->num_steps);
    cJSON_AddNumberToObject(j, "eta", o->s.eta);
    cJSON_AddNumberToObject(j, "cfg_scale", o->s.cfg_scale);
    cJSON_AddStringToObject(j, "cfg_mode", o->s.cfg_mode == KB_CFG_ALL ? "all" : "dit");
    cJSON_AddNumberToObject(j, "guided_channels", o->s.cfg_scale > 1.0f ? kb_cfg_guided_channels(o->s.cfg_mode, info->cfg.in_channels) : 0);
    cJSON_AddBoolToObject(j, "clip_denoised", o->s.clip_denoised);
    cJSON_AddNumberToObject(j, "seed", (double)o->s.seed);
    cJSON_AddStringToObject(j, "noise", "Philox4x32-10 normals; sample i: stream 0x73616d70<<32 + i, x_T elements "
                                        "[0, n), loop step k elements [(k+1)n, (k+2)n), n = C*H*W");
    cJSON_AddNumberToObject(j, "count", (double)n);
    cJSON_AddItemToObject(j, "classes", int_array(cls, k));
    cJSON_AddStringToObject(j, "labels", o->count ? "round-robin over classes" : "per-class, class after class");
    if (!o->count) cJSON_AddNumberToObject(j, "per_class", (double)o->per_class);
    cJSON_AddStringToObject(j, "quantisation", "clamp(127.5*x + 128, 0, 255) truncated to uint8 (DiT sample_ddp.py)");
    cJSON_AddNumberToObject(j, "batch", o->s.batch);
    cJSON_AddStringToObject(j, "device", kb_device_name(o->device));
    cJSON_AddStringToObject(j, "precision", kb_matmul_precision_name(o->precision));
    free(cfg);
    return j;
}

static int write_json(const char *path, cJSON *j, kb_err *err) {
    char *text = cJSON_Print(j);
    kb_atomic_file af;
    int rc = !text ? kb_fail(err, "%s: cannot format JSON", path) : kb_atomic_open(&af, path, err);
    if (!rc && (kb_atomic_write(&af, text, strlen(text), err) || kb_atomic_write(&af, "\n", 1, err))) {
        kb_atomic_abort(&af);
        rc = -1;
    } else if (!rc) {
        rc = kb_atomic_commit(&af, err);
    }
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- the run */

/* Everything a run holds, released by run_free. */
typedef struct {
    kb_ctx ctx;
    kb_dit model;
    kb_diffusion diff;
    int have_ctx, have_model;
    int *cls, k;
    int32_t *labels;
    int64_t *labels64;
    int64_t n;
    uint8_t *u8;
    out_paths paths;
    kb_png_set pngs;
    int lock_fd; /* DIR/.sample.lock, held for the run (kb_dir_lock) */
} run_state;

static void run_free(run_state *r) {
    if (r->have_model) kb_dit_free(&r->model);
    if (r->have_ctx) kb_ctx_free(&r->ctx);
    kb_diffusion_free(&r->diff);
    free(r->cls), free(r->labels), free(r->labels64), free(r->u8);
    kb_dir_unlock(&r->lock_fd);
}

/* Checks the request against the checkpoint; nothing is written yet.
 * KB_EXIT_USAGE when the options do not fit the checkpoint (--weights,
 * --classes, --cfg-scale): bad options, though found only once it is read;
 * -1 when the checkpoint cannot be sampled at all. */
static int check_request(const sample_opts *o, const kb_checkpoint_info *info, run_state *r, kb_err *err) {
    const kb_dit_config *c = &info->cfg;
    if (c->in_channels != 1 && c->in_channels != 3)
        return kb_fail(err, "%s: a model of %d channels (latents?) needs a decoder to make images; only 1 (grey) and "
                            "3 (RGB) channel pixel models can be sampled", o->ckpt, c->in_channels);
    if (o->use_ema && !info->has_ema)
        return kb_fail(err, "%s: checkpoint has no EMA weights (use --weights raw)", o->ckpt), KB_EXIT_USAGE;
    if (o->s.cfg_scale > 1.0f && !(c->class_dropout > 0) && c->learn_sigma) /* kb_sample_check's, naming the option */
        return kb_fail(err, "--cfg-scale %g: guidance needs the null class, but %s was trained without label dropout; "
                            "use --cfg-scale 1", o->s.cfg_scale, o->ckpt), KB_EXIT_USAGE;
    int rc = class_list(o->classes, o->ckpt, c->num_classes, &r->cls, &r->k, err);
    if (rc) return rc;
    if (!(r->labels = make_labels(o, r->cls, r->k, &r->n))) return kb_fail(err, "out of memory for %lld labels", (long long)r->n);
    if (kb_sample_check(c, &o->s, r->labels, r->n, err)) return kb_fail_wrap(err, "%s", o->ckpt);
    return kb_diffusion_init(&r->diff, 1000, o->steps, err) ? kb_fail_wrap(err, "--steps") : 0;
}

static int load_model(const sample_opts *o, const kb_checkpoint_info *info, run_state *r, kb_err *err) {
    kb_ctx_opts co = {.threads = o->threads, .matmul = o->precision};
    if (kb_ctx_init(&r->ctx, o->device, &co, err)) return -1;
    r->have_ctx = 1;
    if (kb_dit_create(&r->model, &r->ctx, &info->cfg, 0, 0, err)) return -1;
    r->have_model = 1;
    return kb_checkpoint_load(o->ckpt, &r->model, NULL, o->use_ema, err);
}

static int sample_all(const sample_opts *o, run_state *r, sink_ctx *sk, kb_err *err) {
    const kb_dit_config *c = &r->model.cfg;
    int64_t per = (int64_t)c->input_size * c->input_size * c->in_channels;
    *sk = (sink_ctx){NULL, c->input_size, c->in_channels, !o->no_png, r->pngs.staging};
    if (!(sk->u8 = r->u8 = malloc((size_t)(r->n * per))) || !(r->labels64 = malloc((size_t)r->n * sizeof(int64_t))))
        return kb_fail(err, "out of memory for %lld samples of %lld bytes", (long long)r->n, (long long)per);
    for (int64_t i = 0; i < r->n; i++) r->labels64[i] = r->labels[i];
    kb_progress p;
    kb_progress_start(&p, "sample", r->n, o->quiet);
    if (kb_sample_run(&r->model, &r->diff, &o->s, r->labels, r->n, sink_fn, sk, &p, err)) return -1;
    kb_progress_finish(&p);
    return 0;
}

static int write_outputs(const sample_opts *o, const kb_checkpoint_info *info, run_state *r, const sink_ctx *sk,
                         double seconds, kb_err *err) {
    const kb_dit_config *c = &r->model.cfg;
    out_paths *p = &r->paths;
    kb_npz_entry e[2] = {{"arr_0", kb_npy_view(KB_U8, 4, (int64_t[]){r->n, c->input_size, c->input_size, c->in_channels}, r->u8)},
                         {"arr_1", kb_npy_view(KB_I64, 1, (int64_t[]){r->n}, r->labels64)}};
    uint8_t digest[32];
    char hex[65];
    long long replaced = 0; /* the earlier run's sample PNGs in DIR/png */
    /* the writers' errors name the temp files; the wraps say which output */
    if (kb_npz_write(p->npz_s.tmp, e, 2, err) || kb_sha256_file(p->npz_s.tmp, digest, err))
        return kb_fail_wrap(err, "%s", p->npz);
    if (write_grid(p->grid_s.tmp, sk, r->labels, r->n, r->cls, r->k, err)) return kb_fail_wrap(err, "%s", p->grid);
    kb_sha256_hex(digest, hex);
    cJSON *j = settings_json(o, info, &r->diff, r->cls, r->k, r->n);
    cJSON_AddStringToObject(j, "npz", p->npz);
    cJSON_AddStringToObject(j, "npz_sha256", hex);
    cJSON_AddStringToObject(j, "grid", p->grid);
    int shown = grid_rows(c->input_size, r->k); /* as write_grid shows them */
    cJSON_AddNumberToObject(j, "grid_classes", shown);
    if (!o->no_png) cJSON_AddStringToObject(j, "png_dir", p->png);
    cJSON_AddNumberToObject(j, "seconds", seconds);
    cJSON_AddNumberToObject(j, "samples_per_second", seconds > 0 ? (double)r->n / seconds : 0.0);
    int rc = write_json(p->json_s.tmp, j, err) ? kb_fail_wrap(err, "%s", p->json)
                                                : commit_outputs(o, p, &r->pngs, &replaced, err);
    cJSON_Delete(j);
    if (!rc && shown < r->k)
        printf("%s shows the first %d of the %d classes (a PNG holds at most %d px)\n", p->grid, shown, r->k,
               KB_GRID_MAX_SIDE);
    if (!rc && replaced)
        printf("removed %lld sample PNG%s of an earlier run from %s\n", replaced, replaced == 1 ? "" : "s", p->png);
    if (!rc)
        printf("wrote %lld samples (%dx%dx%d, %d class%s) to %s; %.1f s, %.2f samples/s\n", (long long)r->n,
               c->input_size, c->input_size, c->in_channels, r->k, r->k == 1 ? "" : "es", p->npz, seconds,
               seconds > 0 ? (double)r->n / seconds : 0.0);
    return rc ? -1 : 0;
}

int kb_cmd_sample(int argc, char **argv, kb_err *err) {
    sample_opts o;
    int prc = parse(argc, argv, &o, err);
    if (prc) return prc < 0 ? KB_EXIT_OK : prc;
    kb_checkpoint_info info;
    if (kb_checkpoint_inspect(o.ckpt, &info, err)) return KB_EXIT_FAIL;
    run_state r;
    memset(&r, 0, sizeof r);
    r.lock_fd = -1;
    sink_ctx sk;
    double t0 = kb_now();
    int rc = check_request(&o, &info, &r, err);
    if (!rc) rc = plan_outputs(&o, &r.paths, err);
    if (!rc && (prepare_outputs(&o, &r.paths, &r.pngs, &r.lock_fd, err) || load_model(&o, &info, &r, err) ||
                sample_all(&o, &r, &sk, err) || write_outputs(&o, &info, &r, &sk, kb_now() - t0, err)))
        rc = -1;
    kb_png_set_abort(&r.pngs); /* after a failure: what this run staged; after success: nothing */
    drop_staged_outputs(&r.paths);
    run_free(&r);
    kb_checkpoint_info_free(&info);
    return rc == KB_EXIT_USAGE ? KB_EXIT_USAGE : rc ? KB_EXIT_FAIL : KB_EXIT_OK;
}
