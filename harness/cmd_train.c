/* `kindbench train`: trains (or resumes) a class-conditional DiT on a dataset
 * cache with DiT's recipe; see models/train.h and docs/training.md. */
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness/cli.h"
#include "models/train.h"
#include "util/fileio.h"

static void usage(void) {
    printf(
        "Usage: kindbench train --data CACHE.kbd --out DIR --steps N [--model NAME | --depth N --width N --heads N\n"
        "                       --patch N] [options]\n"
        "       kindbench train --resume DIR/last.safetensors [--steps N] [options]\n\n"
        "Trains a class-conditional DiT with DiT's recipe (AdamW, EMA, ADM loss MSE + vb, random flips, label\n"
        "dropout for classifier-free guidance). Writes DIR/train.json (settings), DIR/loss.csv (one row every\n"
        "--log-every steps), DIR/checkpoints/step-N.safetensors and DIR/last.safetensors (the newest), all\n"
        "atomically. Every random draw is a function of (seed, step): a run resumed from a checkpoint equals\n"
        "an unbroken one bit for bit (same thread count and device).\n\n"
        "Data:\n"
        "  --data CACHE          dataset cache (kindbench data prepare); image size and channels come from it\n"
        "  --classes pretrain|novel|all   classes to train on (default pretrain); model ids are the selected\n"
        "                        classes in ascending dataset order (recorded as data.class_map)\n"
        "  --split train|test|all   (default train)\n"
        "  --no-flip, --flip     without / with random horizontal flips (default: flip with probability\n"
        "                        0.5; a resume keeps the checkpoint's)\n"
        "  --image-size N --channels N   state the expected image shape (an error if the data differ)\n"
        "Model:\n"
        "  --model NAME          DiT preset: S|B|L|XL with /2, /4 or /8 (e.g. S/4); the options below override\n"
        "  --depth N --width N --heads N --patch N   an explicit shape\n"
        "  --mlp-ratio R         (default 4)       --class-dropout P   label dropout (default 0.1)\n"
        "  --learn-sigma, --no-learn-sigma        learned variance and the vb loss term (default on)\n"
        "Optimisation:\n"
        "  --steps N             total optimiser steps (counting resumed ones)\n"
        "  --batch N             (default 32)      --seed S   (default 0)\n"
        "  --lr X (1e-4)  --weight-decay X (0)  --beta1 X (0.9)  --beta2 X (0.999)  --eps X (1e-8)\n"
        "  --clip-norm X         clip the global gradient norm (default 0: off)\n"
        "  --ema-decay X         (default 0.9999; 0: no EMA)\n"
        "Output:\n"
        "  --out DIR             run directory (a fresh run refuses a DIR that holds last.safetensors)\n"
        "  --log-every K         a loss.csv row with the means of every K steps (default 10)\n"
        "  --ckpt-every K        checkpoint every K steps (default 1000; 0: only at the end)\n"
        "  --keep-checkpoints    keep every checkpoint (default: only the newest)\n"
        "  --resume CKPT         continue from a checkpoint; options not given are taken from it\n"
        "Compute:\n"
        "  --device cpu|cuda     (default cpu)    --threads N   CPU threads (default: all; recorded)\n"
        "  --precision fp32|tf32|bf16  GEMM arithmetic on CUDA (default fp32; recorded)\n"
        "  --quiet               no progress output, no summary lines (errors and warnings still)\n"
        "  -h, --help            this text\n");
}

enum {
    O_DATA = 256, O_OUT, O_MODEL, O_DEPTH, O_WIDTH, O_HEADS, O_PATCH, O_MLP, O_DROPOUT, O_SIGMA, O_NO_SIGMA,
    O_IMAGE, O_CHANNELS, O_STEPS, O_BATCH, O_LR, O_WD, O_BETA1, O_BETA2, O_EPS, O_CLIP, O_EMA, O_SEED, O_CKPT,
    O_KEEP, O_LOG, O_RESUME, O_DEVICE, O_THREADS, O_CLASSES, O_SPLIT, O_FLIP, O_NO_FLIP, O_QUIET, O_PRECISION
};

static const struct option long_opts[] = {
    {"data", required_argument, 0, O_DATA}, {"out", required_argument, 0, O_OUT},
    {"model", required_argument, 0, O_MODEL}, {"depth", required_argument, 0, O_DEPTH},
    {"width", required_argument, 0, O_WIDTH}, {"heads", required_argument, 0, O_HEADS},
    {"patch", required_argument, 0, O_PATCH}, {"mlp-ratio", required_argument, 0, O_MLP},
    {"class-dropout", required_argument, 0, O_DROPOUT}, {"learn-sigma", no_argument, 0, O_SIGMA},
    {"no-learn-sigma", no_argument, 0, O_NO_SIGMA}, {"image-size", required_argument, 0, O_IMAGE},
    {"channels", required_argument, 0, O_CHANNELS}, {"steps", required_argument, 0, O_STEPS},
    {"batch", required_argument, 0, O_BATCH}, {"lr", required_argument, 0, O_LR},
    {"weight-decay", required_argument, 0, O_WD}, {"beta1", required_argument, 0, O_BETA1},
    {"beta2", required_argument, 0, O_BETA2}, {"eps", required_argument, 0, O_EPS},
    {"clip-norm", required_argument, 0, O_CLIP}, {"ema-decay", required_argument, 0, O_EMA},
    {"seed", required_argument, 0, O_SEED}, {"ckpt-every", required_argument, 0, O_CKPT},
    {"keep-checkpoints", no_argument, 0, O_KEEP}, {"log-every", required_argument, 0, O_LOG},
    {"resume", required_argument, 0, O_RESUME}, {"device", required_argument, 0, O_DEVICE},
    {"precision", required_argument, 0, O_PRECISION},
    {"threads", required_argument, 0, O_THREADS}, {"classes", required_argument, 0, O_CLASSES},
    {"split", required_argument, 0, O_SPLIT}, {"flip", no_argument, 0, O_FLIP},
    {"no-flip", no_argument, 0, O_NO_FLIP}, {"quiet", no_argument, 0, O_QUIET},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};

/* The explicit shape, applied over a --model preset whatever the order. */
typedef struct {
    const char *preset;
    int depth, width, heads, patch;
} shape_opts;

static int int_opt(const char *name, const char *arg, long long lo, long long hi, long long *v, kb_err *err) {
    return kb_cli_parse_int(name, arg, lo, hi, v, err);
}

/* A real-valued option within [lo, hi] (NaN refused). */
static int real_opt(const char *name, const char *arg, double lo, double hi, double *v, kb_err *err) {
    if (kb_cli_parse_double(name, arg, v, err)) return -1;
    if (!(*v >= lo && *v <= hi)) return kb_fail(err, "%s: expected a number in [%g, %g], got '%s'", name, lo, hi, arg);
    return 0;
}

static int shape_option(int c, const char *arg, kb_train_opts *o, shape_opts *sh, kb_err *err) {
    long long v;
    const char *names[] = {"--depth", "--width", "--heads", "--patch"};
    int *dst[] = {&sh->depth, &sh->width, &sh->heads, &sh->patch};
    if (int_opt(names[c - O_DEPTH], arg, 1, 1 << 16, &v, err)) return -1;
    *dst[c - O_DEPTH] = (int)v;
    o->set |= (unsigned)KB_TSET_DEPTH << (c - O_DEPTH);
    return 0;
}

static int model_option(int c, const char *arg, kb_train_opts *o, kb_err *err) {
    double r;
    switch (c) {
    case O_MLP:
        if (real_opt("--mlp-ratio", arg, 0.01, 16, &r, err)) return -1;
        /* held in hundredths: a finer ratio would be rounded into another MLP width than DiT's int(d * r) */
        if (fabs(r * 100.0 - (double)lround(r * 100.0)) > 1e-9 * r * 100.0)
            return kb_fail(err, "--mlp-ratio: at most two decimals (e.g. 4 or 2.5), got '%s'", arg);
        o->cfg.mlp_ratio_x100 = (int)lround(r * 100.0), o->set |= KB_TSET_MLP;
        return 0;
    case O_DROPOUT:
        if (real_opt("--class-dropout", arg, 0, 0.999999, &r, err)) return -1;
        o->cfg.class_dropout = (float)r, o->set |= KB_TSET_DROPOUT;
        return 0;
    case O_SIGMA: case O_NO_SIGMA: o->cfg.learn_sigma = c == O_SIGMA, o->set |= KB_TSET_SIGMA; return 0;
    }
    return 1;
}

static int optim_option(int c, const char *arg, kb_train_opts *o, kb_err *err) {
    kb_optim_config *q = &o->optim;
    switch (c) {
    case O_LR: o->set |= KB_TSET_LR; return real_opt("--lr", arg, 1e-300, 1e300, &q->lr, err);
    case O_WD: o->set |= KB_TSET_WD; return real_opt("--weight-decay", arg, 0, 1e6, &q->weight_decay, err);
    case O_BETA1: o->set |= KB_TSET_BETA1; return real_opt("--beta1", arg, 0, 0.999999999, &q->beta1, err);
    case O_BETA2: o->set |= KB_TSET_BETA2; return real_opt("--beta2", arg, 0, 0.999999999, &q->beta2, err);
    case O_EPS: /* AdamW adds eps in float32: below FLT_MIN it is a denormal or 0 */
        o->set |= KB_TSET_EPS;
        return real_opt("--eps", arg, FLT_MIN, 1, &q->eps, err);
    case O_CLIP: o->set |= KB_TSET_CLIP; return real_opt("--clip-norm", arg, 0, 1e300, &q->clip_norm, err);
    case O_EMA: o->set |= KB_TSET_EMA; return real_opt("--ema-decay", arg, 0, 0.999999999, &q->ema_decay, err);
    }
    return 1;
}

static const struct {
    int id;
    const char *name;
    long long lo, hi;
    unsigned bit;
} count_specs[] = {
    {O_STEPS, "--steps", 1, KB_TRAIN_MAX_STEPS, KB_TSET_STEPS},
    {O_BATCH, "--batch", 1, KB_TRAIN_MAX_BATCH, KB_TSET_BATCH},
    {O_SEED, "--seed", 0, KB_TRAIN_MAX_SEED, KB_TSET_SEED},
    {O_CKPT, "--ckpt-every", 0, KB_TRAIN_MAX_STEPS, KB_TSET_CKPT},
    {O_LOG, "--log-every", 1, KB_TRAIN_MAX_STEPS, KB_TSET_LOG},
    {O_THREADS, "--threads", 1, KB_TRAIN_MAX_THREADS, KB_TSET_THREADS},
    {O_IMAGE, "--image-size", 1, 1 << 16, KB_TSET_IMAGE},   {O_CHANNELS, "--channels", 1, 64, KB_TSET_CHANNELS},
};

static void store_count(kb_train_opts *o, int c, long long v) {
    switch (c) {
    case O_STEPS: o->steps = v; break;
    case O_BATCH: o->batch = (int)v; break;
    case O_SEED: o->seed = (uint64_t)v; break;
    case O_CKPT: o->ckpt_every = v; break;
    case O_LOG: o->log_every = v; break;
    case O_THREADS: o->threads = (int)v; break;
    case O_IMAGE: o->image_size = (int)v; break;
    case O_CHANNELS: o->channels = (int)v; break;
    }
}

static int count_option(int c, const char *arg, kb_train_opts *o, kb_err *err) {
    long long v;
    for (size_t i = 0; i < sizeof count_specs / sizeof count_specs[0]; i++) {
        if (count_specs[i].id != c) continue;
        if (int_opt(count_specs[i].name, arg, count_specs[i].lo, count_specs[i].hi, &v, err)) return -1;
        o->set |= count_specs[i].bit;
        store_count(o, c, v);
        return 0;
    }
    return 1;
}

static int run_option(int c, const char *arg, kb_train_opts *o, kb_err *err) {
    switch (c) {
    case O_DATA: o->data_path = arg, o->set |= KB_TSET_DATA; return 0;
    case O_OUT: o->out_dir = arg, o->set |= KB_TSET_OUT; return 0;
    case O_RESUME: o->resume = arg; return 0;
    case O_KEEP: o->keep_checkpoints = 1, o->set |= KB_TSET_KEEP; return 0;
    case O_FLIP: case O_NO_FLIP: o->flip = c == O_FLIP, o->set |= KB_TSET_FLIP; return 0;
    case O_QUIET: o->quiet = 1; return 0;
    case O_DEVICE: /* the library's message names the value only */
        o->set |= KB_TSET_DEVICE;
        return kb_device_parse(arg, &o->device, err) ? kb_fail_wrap(err, "--device") : 0;
    case O_PRECISION: o->set |= KB_TSET_PRECISION; return kb_matmul_precision_parse(arg, &o->precision, err);
    case O_CLASSES:
        o->set |= KB_TSET_CLASSES;
        if (!kb_train_classes_parse(arg, &o->classes)) return 0;
        return kb_fail(err, "--classes: expected pretrain, novel or all, got '%s'", arg);
    case O_SPLIT:
        o->set |= KB_TSET_SPLIT;
        if (!kb_train_split_parse(arg, &o->split)) return 0;
        return kb_fail(err, "--split: expected train, test or all, got '%s'", arg);
    }
    return 1;
}

static int apply_option(int c, const char *arg, kb_train_opts *o, shape_opts *sh, kb_err *err) {
    if (c == O_MODEL) {
        sh->preset = arg;
        return 0;
    }
    if (c >= O_DEPTH && c <= O_PATCH) return shape_option(c, arg, o, sh, err);
    int rc = model_option(c, arg, o, err);
    if (rc <= 0) return rc;
    if ((rc = optim_option(c, arg, o, err)) <= 0) return rc;
    if ((rc = count_option(c, arg, o, err)) <= 0) return rc;
    if ((rc = run_option(c, arg, o, err)) <= 0) return rc;
    return kb_fail(err, "train: unknown option (see 'kindbench train --help')");
}

static int apply_shape(kb_train_opts *o, const shape_opts *sh, kb_err *err) {
    const int given[4] = {sh->depth, sh->width, sh->heads, sh->patch};
    if (kb_dit_config_shape(&o->cfg, sh->preset, given, err)) return -1;
    if (sh->preset) { /* the name stands for the preset only while no shape option changes it */
        int changed = sh->depth || sh->width || sh->heads || sh->patch;
        snprintf(o->model_name, sizeof o->model_name, "%s", changed ? "" : sh->preset);
        o->set |= KB_TSET_DEPTH | KB_TSET_WIDTH | KB_TSET_HEADS | KB_TSET_PATCH;
    }
    return 0;
}

/* 1: --help shown, 0: parsed, -1: usage error. */
static int parse(int argc, char **argv, kb_train_opts *o, kb_err *err) {
    shape_opts sh = {0};
    int c;
    char bad[3];
    kb_train_opts_default(o);
    optind = 0; /* GNU getopt: 0 re-initialises its internal state */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (c == 'h') {
            usage();
            return 1;
        }
        if (c == '?')
            return kb_fail(err, "train: unknown option or missing value: '%s'", kb_cli_bad_option(argc, argv, bad));
        if (apply_option(c, optarg, o, &sh, err)) return -1;
    }
    if (optind < argc) return kb_fail(err, "train: unexpected argument '%s'", argv[optind]);
    return apply_shape(o, &sh, err);
}

int kb_cmd_train(int argc, char **argv, kb_err *err) {
    kb_train_opts o;
    int rc = parse(argc, argv, &o, err);
    if (rc > 0) return KB_EXIT_OK;
    if (rc < 0) return KB_EXIT_USAGE;
    /* a fresh run's required options are a usage error (exit 2); a resumed one takes them from the checkpoint */
    if (!o.resume && kb_train_opts_check(&o, err)) return KB_EXIT_USAGE;
    rc = kb_train_run(&o, err);
    /* options that do not fit the data or checkpoint they name are bad options too: nothing has run */
    if (rc == KB_TRAIN_MISFIT) return KB_EXIT_USAGE;
    if (rc == 1) { /* stopped by a signal, after its checkpoint: ends of that signal, as it would have at once */
        fflush(NULL); /* what was printed to a redirected stdout; raise() ends without exit()'s flush */
        kb_die_of_signal(kb_stop_requested());
    }
    return rc ? KB_EXIT_FAIL : KB_EXIT_OK;
}
