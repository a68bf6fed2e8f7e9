/* DiT checkpoints as safetensors files, written atomically (temp + fsync +
 * rename: a crash or a full disk leaves the previous checkpoint in place).
 *
 * Tensors (float32):  model.<param>   every parameter (DiT state_dict names)
 *                     ema.<param>     the EMA weights, when kept
 *                     adam_m.<param>, adam_v.<param>   AdamW moments (trainable only)
 * Metadata (strings): format  = "kindbench-checkpoint-1"
 *                     model   = "dit"
 *                     config  = the DiT config as JSON (models/dit_config.h)
 *                     optim   = the optimiser config as JSON
 *                     step    = completed optimiser steps
 *                     train   = the trainer's own JSON (seed, data order, RNG
 *                               counters ...), opaque here
 * Loading checks the format, that the config has the model's shape, and that
 * every tensor is present with the right shape, with errors that name the
 * file and what differs. */
#ifndef KB_CHECKPOINT_H
#define KB_CHECKPOINT_H

#include <stdint.h>

#include "models/dit.h"
#include "models/optim.h"
#include "util/err.h"

#define KB_CHECKPOINT_FORMAT "kindbench-checkpoint-1"

typedef struct {
    kb_dit_config cfg;
    kb_optim_config optim;
    int has_ema;
    int has_optim;
    int64_t step;
    char *train_json; /* malloc'd, may be NULL */
} kb_checkpoint_info;

/* opt may be NULL (weights only); train_json may be NULL. */
int kb_checkpoint_save(const char *path, const kb_dit *m, const kb_optim *opt, const char *train_json, kb_err *err);
/* Reads and validates the header and metadata only. */
int kb_checkpoint_inspect(const char *path, kb_checkpoint_info *info, kb_err *err);
void kb_checkpoint_info_free(kb_checkpoint_info *info);
/* Loads weights into m (whose config must have the checkpoint's shape): the
 * EMA weights when use_ema (an error if the file has none), else the raw
 * weights. When opt is not NULL, also the raw weights' AdamW moments, EMA and
 * step count (for --resume). */
int kb_checkpoint_load(const char *path, kb_dit *m, kb_optim *opt, int use_ema, kb_err *err);

#endif
