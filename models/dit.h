/* Class-conditional DiT (facebookresearch/DiT): patchify, fixed 2-D sin-cos
 * position embedding, timestep and label embeddings, N adaLN-Zero blocks,
 * final adaLN layer and unpatchify, learned variance. Explicit forward and
 * backward on whatever device the context uses.
 *
 * Parameter names follow DiT's state_dict ("blocks.3.attn.qkv.weight"), so
 * weights move between kindbench and the PyTorch reference unchanged. */
#ifndef KB_DIT_H
#define KB_DIT_H

#include <stdint.h>

#include "models/dit_config.h"
#include "models/linear.h"
#include "models/params.h"
#include "nn/backend.h"
#include "util/err.h"

typedef struct {
    kb_linear ada;  /* adaLN_modulation.1: d -> 6d */
    kb_linear qkv;  /* attn.qkv: d -> 3d */
    kb_linear proj; /* attn.proj: d -> d */
    kb_linear fc1;  /* mlp.fc1: d -> mlp */
    kb_linear fc2;  /* mlp.fc2: mlp -> d */
} kb_dit_block;

/* Activations of one forward pass kept for backward, and backward scratch;
 * all device buffers carved from one allocation sized for `cap` samples.
 * A model without gradients can only run forward, so it keeps one slot of
 * the per-block buffers (reused by every block), two of the residual stream
 * (ping-pong) and no backward scratch: a depth-fold smaller allocation, which
 * is what lets sampling run large batches. */
typedef struct {
    int cap;
    int slots; /* per-block slots: depth with gradients (kept for backward), 1 without */
    int attn_fused; /* the attention route of this layout (models/attention.h): sizes att, d_att, d_att2 */
    int bf16;       /* bf16 activations (kb_act_bf16_wanted): mod1, qkv, atty, proj, mod2, fc1, gelu and fc2
                       hold uint16_t bits, at half size, and the backward's linear-layer gradients are bf16
                       too (models/dit_internal.h) */
    float *base;
    size_t floats; /* size of the allocation at base */
    /* conditioning, [B, *] */
    float *tfreq, *t_h, *t_hs, *temb, *yemb, *c, *c_silu;
    /* tokens */
    float *patches;    /* [B, T, C p p] */
    float *res;        /* [slots + 1, B, T, d]: input of each block, then of the final layer (kb_dit_res) */
    float *ada;        /* [slots, B, 6d] */
    float *mod1, *qkv, *att, *atty, *proj, *mid, *mod2, *fc1, *gelu, *fc2;             /* [slots, ...] */
                                                                                         /* (see bf16 above) */
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;                                    /* [slots, B T] */
    float *adaf, *lnf_mean, *lnf_rstd, *modf, *out_tokens;
    /* backward scratch (NULL without gradients, but d_att: the forward's attention scratch) */
    float *d_res, *d_a, *d_b, *d_ada, *d_c, *d_c_silu, *d_t, *d_att, *d_att2;
} kb_dit_acts;

typedef struct {
    kb_dit_config cfg;
    kb_ctx *ctx;
    kb_params params;
    int pos_embed;     /* param index of the frozen [1, T, d] sin-cos table */
    kb_linear x_embed; /* x_embedder.proj as a linear over CPQ patch vectors (weight [d, C, p, p]) */
    kb_linear t_mlp0, t_mlp2;
    int y_table;       /* y_embedder.embedding_table.weight [classes (+1), d] */
    kb_dit_block *blocks;
    kb_linear final_ada, final_linear;
    kb_dit_acts acts;
} kb_dit;

/* Registers and allocates parameters (with gradients when with_grad) on ctx's
 * device and initialises them as DiT's initialize_weights does (xavier-uniform
 * linears with zero bias, N(0, 0.02) label table and timestep MLP, zero adaLN
 * and final layer, sin-cos pos_embed), drawing from (seed, stream = parameter
 * index) so the result is the same on every device. */
int kb_dit_create(kb_dit *m, kb_ctx *ctx, const kb_dit_config *cfg, int with_grad, uint64_t seed, kb_err *err);
void kb_dit_free(kb_dit *m);

/* Allocates activations for up to `cap` samples (reallocates when larger);
 * the layout follows whether the model has gradients (see kb_dit_acts). */
int kb_dit_reserve(kb_dit *m, int cap, kb_err *err);

/* Forward: x [B, C, H, W], t [B] (float timesteps), y [B] (class ids; the
 * null class for CFG is cfg.num_classes), all device pointers; writes the
 * model output [B, out_channels, H, W]. Label dropout is the caller's job
 * (it replaces ids before the call) so that this function is deterministic. */
int kb_dit_forward(kb_dit *m, const float *x, const float *t, const int32_t *y, int B, float *out, kb_err *err);
/* Backward of the last forward: accumulates parameter gradients from
 * d_out [B, out_channels, H, W] (callers zero gradients first). */
int kb_dit_backward(kb_dit *m, const float *d_out, const int32_t *y, int B, kb_err *err);

/* Fills the 2-D sin-cos table as DiT's get_2d_sincos_pos_embed (computed in
 * double, rounded to float): out [grid*grid, dim] on the host. */
void kb_dit_sincos_pos_embed(float *out, int dim, int grid);

#endif
