/* DiT model configuration: the presets of facebookresearch/DiT (S/B/L/XL with
 * patch 2/4/8) and small configs for CPU work, all fields settable. */
#ifndef KB_DIT_CONFIG_H
#define KB_DIT_CONFIG_H

#include <stdint.h>

#include "util/err.h"

typedef struct {
    int input_size;      /* image (or latent) side in pixels; square */
    int in_channels;     /* 3 for pixels, 4 for SD-VAE latents, 1 for grayscale */
    int patch_size;      /* p: patchify conv kernel = stride */
    int hidden_size;     /* d */
    int depth;           /* number of DiT blocks */
    int num_heads;
    int mlp_ratio_x100;  /* mlp hidden = hidden * ratio; DiT uses 4.0 (stored as 400 to stay integral) */
    int num_classes;     /* the null (CFG) class id is num_classes */
    float class_dropout; /* probability of replacing a label by the null class in training (0.1) */
    int learn_sigma;     /* 1: output 2*in_channels (eps and variance interpolation v) */
    int freq_dim;        /* timestep frequency embedding size (256) */
} kb_dit_config;

/* DiT defaults (ratio 4, dropout 0.1, learn_sigma, 256 frequencies) with the
 * given shape fields left zero. */
kb_dit_config kb_dit_config_default(void);
/* Fills the width/depth/heads/patch of a preset name: "S/2", "B/4", "XL/2",
 * also "DiT-B/2"; returns -1 for an unknown name (message lists the names). */
int kb_dit_config_preset(const char *name, kb_dit_config *cfg, kb_err *err);
/* The command-line shape: the preset (NULL: none), then each of depth, width,
 * heads, patch given (0: not given) over it, whatever their order. */
int kb_dit_config_shape(kb_dit_config *cfg, const char *preset, const int given[4], kb_err *err);
/* Checks that the config can be built: heads divide width, the image side is
 * divisible by the patch, width even for the sin-cos embeddings, etc. */
int kb_dit_config_validate(const kb_dit_config *cfg, kb_err *err);
/* The part of kb_dit_config_validate that needs no data: the network's own
 * sizes (width, depth, heads, patch, MLP ratio, frequencies, class dropout)
 * and their limits, not the image side, channels or classes, which a trainer
 * learns only from its dataset. Lets a bad shape be refused before a
 * dataset is opened (and perhaps hashed). */
int kb_dit_config_validate_model(const kb_dit_config *cfg, kb_err *err);

int kb_dit_tokens(const kb_dit_config *cfg);       /* T = (input/p)^2 */
int kb_dit_out_channels(const kb_dit_config *cfg); /* 2C with learned sigma, else C */
int kb_dit_mlp_hidden(const kb_dit_config *cfg);
int kb_dit_patch_dim(const kb_dit_config *cfg);    /* C*p*p */

/* Multiply-accumulates of one forward pass for one sample (DiT's "Gflops"
 * count: linear layers, patch embedding and attention matmuls). */
double kb_dit_forward_macs(const kb_dit_config *cfg);

/* Serialises the config as a compact JSON object string (caller frees) and
 * parses it back; used in checkpoint metadata. */
char *kb_dit_config_to_json(const kb_dit_config *cfg);
int kb_dit_config_from_json(const char *json, kb_dit_config *cfg, kb_err *err);
/* 1 if the two configs describe the same network shape (the same tensors:
 * a class dropout > 0 adds the null class's embedding row). */
int kb_dit_config_same_shape(const kb_dit_config *a, const kb_dit_config *b);

#endif
