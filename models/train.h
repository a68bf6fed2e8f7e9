/* DiT training (facebookresearch/DiT train.py on a kindbench dataset cache):
 * AdamW, EMA, optional gradient clipping, ADM's loss (MSE + vb), random
 * horizontal flips and label dropout, loss log as CSV, periodic atomic
 * checkpoints, and a --resume that continues bit for bit.
 *
 * Determinism: every random draw of a step is counter-based (nn/rng.h), a
 * pure function of (seed, stream, index) with
 *     stream = purpose << 48 | step      (purpose: KB_TRAIN_STREAM_*)
 *     stream = purpose << 48 | epoch     (the data permutation)
 * and the index the sample (or element) within that step. The data order is
 * a per-epoch Fisher-Yates permutation of the selected images; sample b of
 * step s is element (s*B + b) of the concatenated epochs. So the only state a
 * resume needs beyond the weights, AdamW moments and EMA is the step count
 * (plus the loss-log accumulators, kept in the checkpoint's train JSON).
 * Parameter initialisation uses (seed, stream = parameter index), which never
 * collides with the training streams (purpose >= 1). See docs/training.md. */
#ifndef KB_TRAIN_H
#define KB_TRAIN_H

#include <stdint.h>

#include "datasets/dataset.h"
#include "models/dit_config.h"
#include "models/optim.h"
#include "nn/backend.h"
#include "nn/tensor.h"
#include "util/err.h"

/* Purposes of the random streams (fixed: changing one changes every run). */
enum {
    KB_TRAIN_STREAM_PERM = 1,  /* data permutation of an epoch (sequential draws, counter = epoch) */
    KB_TRAIN_STREAM_FLIP = 2,  /* horizontal flip of sample b: uniform < 0.5 */
    KB_TRAIN_STREAM_DROP = 3,  /* label dropout of sample b: uniform < class_dropout */
    KB_TRAIN_STREAM_T = 4,     /* timestep of sample b: uniform integer in [0, 1000) */
    KB_TRAIN_STREAM_NOISE = 5, /* Gaussian noise, element i of the [B, C, H, W] batch */
};

static inline uint64_t kb_train_stream(int purpose, uint64_t counter) {
    return ((uint64_t)purpose << 48) | (counter & 0xFFFFFFFFFFFFull);
}

/* ---- the data side (models/train_data.c) ---- */

/* The images a run trains on and the draws of each step. */
typedef struct {
    const kb_dataset *ds;
    int64_t *items;    /* selected image indices, cache order */
    int64_t n;
    int *classes;      /* model class id -> dataset class index (ascending) */
    int nclasses;
    int *model_id;     /* dataset class index -> model id, -1 when not selected */
    uint64_t seed;
    int flip;          /* random horizontal flips */
    float class_dropout;
    int num_timesteps; /* 1000 */
    int64_t *perm;     /* permutation of the cached epoch */
    int64_t perm_epoch;
} kb_train_data;

/* Selects the images of the classes with `role` (KB_ROLE_ANY: all) in `split`
 * (KB_SPLIT_ANY: both). Returns KB_TRAIN_MISFIT naming the cache when
 * nothing is selected (the options select no image), -1 on other failures. */
int kb_train_data_init(kb_train_data *d, const kb_dataset *ds, kb_class_role role, kb_split split, uint64_t seed,
                       int flip, float class_dropout, kb_err *err);
void kb_train_data_free(kb_train_data *d);

/* The dataset image index at global sample position g (= step * B + b). */
int64_t kb_train_data_item(kb_train_data *d, int64_t g, kb_err *err);

/* The inputs of step `step` (0-based: the step that makes opt->step = step+1):
 * x0 [B, C, H, W] in [-1, 1] (x/127.5 - 1, flipped when drawn), y [B] model
 * class ids with dropped labels set to nclasses, t [B] in [0, 1000). All
 * host memory; the noise comes from kb_train_data_noise. */
int kb_train_data_batch(kb_train_data *d, int64_t step, int B, float *x0, int32_t *y, int *t, kb_err *err);

/* Step `step`'s Gaussian noise [n], drawn on ctx's device straight into
 * noise_dev: element i is kb_rng_normal_at(seed, noise stream of `step`, i)
 * on every backend, so a GPU run draws the values a CPU run draws, without
 * host work or a copy. */
int kb_train_data_noise(const kb_train_data *d, kb_ctx *ctx, int64_t step, int64_t n, float *noise_dev, kb_err *err);

/* ---- the trainer (models/train.c) ---- */

/* The ranges of the run's counts, for the command line and for the values a
 * checkpoint's training record brings back on --resume. The seed's limit is
 * the largest integer the JSON metadata (a double) stores exactly. */
#define KB_TRAIN_MAX_SEED 9007199254740991LL
#define KB_TRAIN_MAX_STEPS (1LL << 40)
#define KB_TRAIN_MAX_BATCH (1 << 20)
#define KB_TRAIN_MAX_THREADS KB_CTX_MAX_THREADS

/* Options given explicitly (on --resume the others come from the checkpoint). */
enum {
    KB_TSET_DATA = 1 << 0, KB_TSET_OUT = 1 << 1, KB_TSET_STEPS = 1 << 2, KB_TSET_BATCH = 1 << 3,
    KB_TSET_SEED = 1 << 4, KB_TSET_CKPT = 1 << 5, KB_TSET_LOG = 1 << 6, KB_TSET_THREADS = 1 << 7,
    KB_TSET_CLASSES = 1 << 8, KB_TSET_SPLIT = 1 << 9, KB_TSET_FLIP = 1 << 10, KB_TSET_KEEP = 1 << 11,
    KB_TSET_DEPTH = 1 << 12, KB_TSET_WIDTH = 1 << 13, KB_TSET_HEADS = 1 << 14, KB_TSET_PATCH = 1 << 15,
    KB_TSET_MLP = 1 << 16, KB_TSET_DROPOUT = 1 << 17, KB_TSET_SIGMA = 1 << 18, KB_TSET_LR = 1 << 19,
    KB_TSET_WD = 1 << 20, KB_TSET_BETA1 = 1 << 21, KB_TSET_BETA2 = 1 << 22, KB_TSET_EPS = 1 << 23,
    KB_TSET_CLIP = 1 << 24, KB_TSET_EMA = 1 << 25, KB_TSET_DEVICE = 1 << 26, KB_TSET_IMAGE = 1 << 27,
    KB_TSET_CHANNELS = 1 << 28, KB_TSET_PRECISION = 1 << 29,
};

typedef struct {
    const char *data_path;
    const char *out_dir;
    const char *resume;      /* checkpoint to continue from, or NULL */
    char model_name[32];     /* preset given with --model, "" for an explicit shape */
    kb_dit_config cfg;       /* shape fields; image size, channels and classes come from the data */
    kb_optim_config optim;
    int64_t steps;           /* total optimiser steps (global, counting resumed ones) */
    int batch;
    uint64_t seed;
    int64_t ckpt_every;      /* 0: only the final checkpoint */
    int64_t log_every;       /* a CSV row every K steps (means over those K) */
    int keep_checkpoints;    /* 0: delete the previous checkpoint once a newer one is safe */
    int threads;             /* 0: $KINDBENCH_THREADS or all CPUs */
    kb_device device;
    kb_matmul_precision precision; /* GEMM arithmetic on CUDA (nn/backend.h); fp32 on the CPU */
    kb_class_role classes;   /* KB_ROLE_PRETRAIN (default), KB_ROLE_NOVEL, KB_ROLE_ANY */
    kb_split split;          /* KB_SPLIT_TRAIN (default) */
    int flip;
    int image_size, channels; /* stated expectations (--image-size/--channels): must match the data */
    int quiet;
    unsigned set;            /* KB_TSET_* of the options given */
} kb_train_opts;

/* DiT's recipe: AdamW lr 1e-4 no decay, EMA 0.9999, flips, pretrain classes,
 * train split, seed 0, batch 32, log every 10, checkpoint every 1000. */
void kb_train_opts_default(kb_train_opts *o);

/* What kb_train_run (and the set-up steps below that say so) return when the
 * options do not fit the data or checkpoint they name: a model shape the
 * image size does not allow, a stated image size other than the data's,
 * classes or a split that select no image, a resume with another shape,
 * split, dataset or classes, --precision bf16 on the CPU. Known before any
 * step or output: the CLI makes it a usage error (exit 2). */
#define KB_TRAIN_MISFIT 2

/* Runs (or resumes) training as the options say. Returns 0 when it reached
 * --steps, 1 when a signal stopped it before (after a checkpoint of the
 * step it was at: kb_signals_defer), KB_TRAIN_MISFIT with err set, or -1
 * with err set (an unreadable or corrupt file, a divergence, a full disk). */
int kb_train_run(kb_train_opts *o, kb_err *err);
/* The options a run needs (data, out, steps, a model shape), their ranges,
 * the model shape's own checks (kb_dit_config_validate_model: those that need
 * no data) and --precision on --device; kb_train_run checks them too, after a
 * resume has filled them in. Opens no file. */
int kb_train_opts_check(const kb_train_opts *o, kb_err *err);

/* Names used in train JSON and on the command line. */
const char *kb_train_classes_name(kb_class_role r); /* "pretrain" | "novel" | "all" */
int kb_train_classes_parse(const char *s, kb_class_role *out);
const char *kb_train_split_name(kb_split s);        /* "train" | "test" | "all" */
int kb_train_split_parse(const char *s, kb_split *out);

#endif
