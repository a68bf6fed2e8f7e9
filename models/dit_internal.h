/* Private helpers shared by the DiT forward and backward passes. */
#ifndef KB_DIT_INTERNAL_H
#define KB_DIT_INTERNAL_H

#include "models/attention.h"
#include "models/dit.h"

#define KB_TRY(call, ...)                                                                                             \
    do {                                                                                                           \
        if (call) return kb_fail_wrap(err, __VA_ARGS__);                                                           \
    } while (0)

/* Per-block views into the activation buffers for batch B. */
typedef struct {
    float *x_in, *x_out, *ada, *ln1_mean, *ln1_rstd, *mod1, *qkv, *att, *atty, *proj, *mid;
    float *ln2_mean, *ln2_rstd, *mod2, *fc1, *gelu, *fc2;
    /* with bf16 activations (acts.bf16): these instead of mod1, qkv, atty, proj, mod2, fc1, gelu, fc2 (then NULL) */
    uint16_t *mod1_16, *qkv16, *atty16, *proj16, *mod2_16, *fc1_16, *gelu16, *fc2_16;
} kb_dit_block_view;

/* The residual stream entering block l (l = depth: the final layer): its
 * own slot when activations are kept for backward, else one of two slots
 * used in turn. */
static inline float *kb_dit_res(const kb_dit *m, int l, int64_t B) {
    int64_t slot = m->acts.slots == m->cfg.depth ? l : l % 2;
    return m->acts.res + slot * B * kb_dit_tokens(&m->cfg) * m->cfg.hidden_size;
}

/* Block l's views; without gradients every block shares slot 0 (ada: two). */
static inline kb_dit_block_view kb_dit_view_block(const kb_dit *m, int l, int64_t B) {
    const kb_dit_acts *a = &m->acts;
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), BT = B * T, mlp = kb_dit_mlp_hidden(&m->cfg);
    int64_t H = m->cfg.num_heads;
    kb_dit_block_view v;
    v.x_in = kb_dit_res(m, l, B);
    v.x_out = kb_dit_res(m, l + 1, B);
    /* adaLN outputs: two slots in turn without gradients, as the forward
     * computes block l+1's before it is done with block l's gate */
    v.ada = a->ada + (a->slots == m->cfg.depth ? l : l % 2) * B * 6 * d;
    l = a->slots == m->cfg.depth ? l : 0;
    v.att = a->att + l * kb_attention_saved_floats(a->attn_fused, B, T, H);
    v.mid = a->mid + l * BT * d;
    v.mod1 = v.qkv = v.atty = v.proj = v.mod2 = v.fc1 = v.gelu = v.fc2 = NULL;
    v.mod1_16 = v.qkv16 = v.atty16 = v.proj16 = v.mod2_16 = v.fc1_16 = v.gelu16 = v.fc2_16 = NULL;
    if (a->bf16) { /* half-size slots: the offsets count uint16_t values */
        v.mod1_16 = (uint16_t *)a->mod1 + l * BT * d, v.atty16 = (uint16_t *)a->atty + l * BT * d;
        v.qkv16 = (uint16_t *)a->qkv + l * BT * 3 * d, v.proj16 = (uint16_t *)a->proj + l * BT * d;
        v.mod2_16 = (uint16_t *)a->mod2 + l * BT * d, v.fc1_16 = (uint16_t *)a->fc1 + l * BT * mlp;
        v.gelu16 = (uint16_t *)a->gelu + l * BT * mlp, v.fc2_16 = (uint16_t *)a->fc2 + l * BT * d;
    } else {
        v.mod1 = a->mod1 + l * BT * d, v.atty = a->atty + l * BT * d, v.qkv = a->qkv + l * BT * 3 * d;
        v.proj = a->proj + l * BT * d, v.mod2 = a->mod2 + l * BT * d, v.fc1 = a->fc1 + l * BT * mlp;
        v.gelu = a->gelu + l * BT * mlp, v.fc2 = a->fc2 + l * BT * d;
    }
    v.ln1_mean = a->ln1_mean + l * BT, v.ln1_rstd = a->ln1_rstd + l * BT;
    v.ln2_mean = a->ln2_mean + l * BT, v.ln2_rstd = a->ln2_rstd + l * BT;
    return v;
}

#endif
