/* Pieces of the trainer shared between models/train*.c (not a public API). */
#ifndef KB_TRAIN_INTERNAL_H
#define KB_TRAIN_INTERNAL_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "models/checkpoint.h"
#include "models/diffusion.h"
#include "models/dit.h"
#include "models/train.h"
#include "models/train_step.h"

#define KB_TRAIN_FORMAT "kindbench-train-1"

/* Sums over the steps since the last CSV row (saved in checkpoints so that a
 * resumed run writes the same rows as an unbroken one). */
typedef struct {
    int64_t n;
    double loss, mse, vb, grad_norm;
} kb_log_acc;

typedef struct {
    kb_train_opts *o;
    kb_ctx ctx;
    int have_ctx;
    kb_dataset ds;
    int have_ds;
    kb_train_data data;
    kb_dit model;
    kb_optim opt;
    kb_diffusion diff;
    kb_train_bufs b;
    kb_log_acc acc;
    FILE *csv;
    int lock_fd;               /* DIR/.train.lock (kb_dir_lock), held while this run writes DIR; -1 if not */
    int64_t start_step;
    double t_row;              /* time of the last CSV row */
    char data_abs[4096];       /* absolute paths, as recorded in train JSON */
    char out_abs[4096];
    char csv_path[4096];
    char ckpt_dir[4096];
    char prev_ckpt[4096];      /* the newest checkpoint on disk, "" when none */
    int prev_owned;            /* prev_ckpt lies in this run's checkpoints/ (may be deleted) */
    float first_loss, last_loss;
} kb_trainer;

/* ---- models/train_log.c ---- */
/* The run's settings as JSON; with_state adds the resumable state (step,
 * images seen, log accumulators). Caller frees. */
char *kb_train_json(const kb_trainer *tr, int with_state, int formatted);
/* Creates loss.csv with its header, or on resume keeps the rows up to
 * `keep_upto` of an existing one (rows after it belong to steps being
 * redone); then opens it for appending. */
int kb_train_csv_open(kb_trainer *tr, int resume, int64_t keep_upto, kb_err *err);
/* Appends the row for `step` from tr->acc and resets the accumulators. */
int kb_train_csv_row(kb_trainer *tr, int64_t step, double steps_per_sec, kb_err *err);

/* ---- models/train_resume.c ---- */
/* Fills the options not given on the command line from a checkpoint's
 * metadata, and refuses what cannot continue: KB_TRAIN_MISFIT for options
 * that ask for another model shape or split, -1 for unusable metadata. */
int kb_train_resume_options(kb_train_opts *o, const kb_checkpoint_info *info, cJSON **train_json, kb_err *err);
/* After the dataset is open: the checkpoint's dataset checksum, image shape
 * and class map must be the ones we are about to train on (KB_TRAIN_MISFIT
 * when they are not; -1 when the metadata lacks the checksum). */
int kb_train_resume_check_data(const kb_trainer *tr, const cJSON *train_json, kb_err *err);
/* The log accumulators saved in the checkpoint. */
int kb_train_resume_state(kb_trainer *tr, const cJSON *train_json, kb_err *err);

#endif
