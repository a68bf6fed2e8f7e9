/* DiT forward pass (DiT.forward): every intermediate the backward pass needs
 * is kept in m->acts. */
#include <string.h>

#include "models/attention.h"
#include "models/dit.h"
#include "models/dit_internal.h"
#include "nn/ops.h"
#include "nn/ops_attn.h"
#include "nn/ops_dit.h"

static int conditioning_fwd(kb_dit *m, const float *t, const int32_t *y, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    int64_t d = m->cfg.hidden_size;
    KB_TRY(kb_timestep_freq(ctx, a->tfreq, t, B, m->cfg.freq_dim, 10000.0f, err), "timestep embedding");
    KB_TRY(kb_linear_fwd(ctx, &m->t_mlp0, &m->params, NULL, a->t_h, a->tfreq, B, err), "t_embedder.mlp.0");
    KB_TRY(kb_silu_fwd(ctx, a->t_hs, a->t_h, B * d, err), "t_embedder SiLU");
    KB_TRY(kb_linear_fwd(ctx, &m->t_mlp2, &m->params, NULL, a->temb, a->t_hs, B, err), "t_embedder.mlp.2");
    KB_TRY(kb_embedding_fwd(ctx, a->yemb, kb_param_data(&m->params, m->y_table), y, B, d, err), "y_embedder");
    KB_TRY(kb_add(ctx, a->c, a->temb, a->yemb, B * d, err), "c = t + y");
    KB_TRY(kb_silu_fwd(ctx, a->c_silu, a->c, B * d, err), "SiLU(c)");
    return 0;
}

/* Block l's adaLN modulation: Linear(SiLU(c)) -> shift, scale, gate of
 * attention and MLP, [B, 6d] in its view's ada. */
static int ada_fwd(kb_dit *m, int l, int64_t B, kb_err *err) {
    kb_dit_block_view v = kb_dit_view_block(m, l, B);
    KB_TRY(kb_linear_fwd(m->ctx, &m->blocks[l].ada, &m->params, NULL, v.ada, m->acts.c_silu, B, err), "block %d adaLN",
           l);
    return 0;
}

/* Block 0's norm1 and modulation of the embedded tokens; every later block's
 * comes fused with the previous block's MLP residual (block_end_fwd). */
static int first_norm_fwd(kb_dit *m, int64_t B, kb_err *err) {
    kb_dit_block_view v = kb_dit_view_block(m, 0, B);
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), ld = 6 * d;
    if (m->acts.bf16)
        KB_TRY(kb_ln_modulate_fwd_x16(m->ctx, v.mod1_16, v.ln1_mean, v.ln1_rstd, v.x_in, v.ada, v.ada + d, ld, B, T, d,
                                      1e-6f, err), "block 0 norm1 and modulate1");
    else
        KB_TRY(kb_ln_modulate_fwd(m->ctx, v.mod1, v.ln1_mean, v.ln1_rstd, v.x_in, v.ada, v.ada + d, ld, B, T, d, 1e-6f,
                                  err), "block 0 norm1 and modulate1");
    return 0;
}

/* Block l's attention branch from its modulated input (mod1) to the gated
 * residual, fused with norm2 and its modulation: mid, mod2. bf16 activations
 * (acts.bf16): the linear layers' inputs, qkv and the attention output are
 * written and read as bf16. */
static int attention_half_fwd(kb_dit *m, int l, const kb_dit_block_view *v, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    const kb_dit_block *blk = &m->blocks[l];
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), BT = B * T, ld = 6 * d, H = m->cfg.num_heads;
    const float *ada = v->ada;
    if (m->acts.bf16) {
        KB_TRY(kb_linear_fwd_x16_y16(ctx, &blk->qkv, &m->params, NULL, v->qkv16, v->mod1_16, BT, err), "block %d qkv", l);
        KB_TRY(kb_attn_fused_fwd_x16(ctx, v->atty16, v->att, v->qkv16, B, T, d, H, err), "block %d attn", l);
        KB_TRY(kb_linear_fwd_x16_y16(ctx, &blk->proj, &m->params, NULL, v->proj16, v->atty16, BT, err), "block %d proj",
               l);
    } else {
        KB_TRY(kb_linear_fwd(ctx, &blk->qkv, &m->params, NULL, v->qkv, v->mod1, BT, err), "block %d qkv", l);
        KB_TRY(kb_attention_fwd(ctx, m->acts.attn_fused, v->atty, v->att, m->acts.d_att, v->qkv, B, T, d, H, err),
               "block %d attn", l);
        KB_TRY(kb_linear_fwd(ctx, &blk->proj, &m->params, NULL, v->proj, v->atty, BT, err), "block %d proj", l);
    }
    KB_TRY(kb_gated_add_ln_modulate_fwd(ctx, v->mid, v->mod2, v->mod2_16, v->ln2_mean, v->ln2_rstd, v->x_in,
                                        ada + 2 * d, v->proj, v->proj16, ld, ada + 3 * d, ada + 4 * d, ld, B, T, d,
                                        1e-6f, err),
           "block %d gate_msa, norm2 and modulate2", l);
    return 0;
}

/* Block l's MLP from mod2 to fc2 (GELU-tanh in between). */
static int mlp_fwd(kb_dit *m, int l, const kb_dit_block_view *v, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    const kb_dit_block *blk = &m->blocks[l];
    int64_t BT = B * kb_dit_tokens(&m->cfg);
    if (m->acts.bf16) {
        KB_TRY(kb_linear_fwd_gelu_x16(ctx, &blk->fc1, &m->params, NULL, v->fc1_16, v->gelu16, v->mod2_16, BT, err),
               "block %d fc1+GELU", l);
        KB_TRY(kb_linear_fwd_x16_y16(ctx, &blk->fc2, &m->params, NULL, v->fc2_16, v->gelu16, BT, err), "block %d fc2",
               l);
    } else {
        KB_TRY(kb_linear_fwd_gelu(ctx, &blk->fc1, &m->params, NULL, v->fc1, v->gelu, v->mod2, BT, err),
               "block %d fc1+GELU", l);
        KB_TRY(kb_linear_fwd(ctx, &blk->fc2, &m->params, NULL, v->fc2, v->gelu, BT, err), "block %d fc2", l);
    }
    return 0;
}

/* Block l's MLP residual x_out = mid + gate_mlp * fc2, fused with the norm
 * that reads it: block l+1's norm1 and modulation (its adaLN computed first;
 * the two blocks' ada slots differ, kb_dit_view_block), or after the last
 * block the final layer's (fp32 out, as the final linear reads it). */
static int block_end_fwd(kb_dit *m, int l, const kb_dit_block_view *v, int64_t B, kb_err *err) {
    kb_dit_acts *a = &m->acts;
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), ld = 6 * d;
    const float *gate = v->ada + 5 * d;
    if (l + 1 == m->cfg.depth) {
        KB_TRY(kb_linear_fwd(m->ctx, &m->final_ada, &m->params, NULL, a->adaf, a->c_silu, B, err), "final adaLN");
        KB_TRY(kb_gated_add_ln_modulate_fwd(m->ctx, v->x_out, a->modf, NULL, a->lnf_mean, a->lnf_rstd, v->mid, gate,
                                            v->fc2, v->fc2_16, ld, a->adaf, a->adaf + d, 2 * d, B, T, d, 1e-6f, err),
               "block %d gate_mlp, final norm and modulate", l);
        return 0;
    }
    if (ada_fwd(m, l + 1, B, err)) return -1;
    kb_dit_block_view w = kb_dit_view_block(m, l + 1, B);
    KB_TRY(kb_gated_add_ln_modulate_fwd(m->ctx, v->x_out, w.mod1, w.mod1_16, w.ln1_mean, w.ln1_rstd, v->mid, gate,
                                        v->fc2, v->fc2_16, ld, w.ada, w.ada + d, ld, B, T, d, 1e-6f, err),
           "block %d gate_mlp, block %d norm1 and modulate1", l, l + 1);
    return 0;
}

static int block_fwd(kb_dit *m, int l, int64_t B, kb_err *err) {
    kb_dit_block_view v = kb_dit_view_block(m, l, B);
    if (attention_half_fwd(m, l, &v, B, err) || mlp_fwd(m, l, &v, B, err)) return -1;
    return block_end_fwd(m, l, &v, B, err);
}

/* The final layer from its modulated input (block_end_fwd made it). */
static int final_fwd(kb_dit *m, int64_t B, float *out, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    const kb_dit_config *c = &m->cfg;
    int64_t BT = B * kb_dit_tokens(c);
    KB_TRY(kb_linear_fwd(ctx, &m->final_linear, &m->params, NULL, a->out_tokens, a->modf, BT, err), "final linear");
    KB_TRY(kb_unpatchify(ctx, out, a->out_tokens, B, kb_dit_out_channels(c), c->input_size, c->input_size, c->patch_size,
                      KB_PATCH_PQC, err), "unpatchify");
    return 0;
}

int kb_dit_forward(kb_dit *m, const float *x, const float *t, const int32_t *y, int B, float *out, kb_err *err) {
    const kb_dit_config *c = &m->cfg;
    if (B <= 0) return kb_fail(err, "DiT forward: batch %d", B);
    if (kb_dit_reserve(m, B, err)) return -1;
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    int64_t d = c->hidden_size, T = kb_dit_tokens(c), BT = (int64_t)B * T;
    KB_TRY(kb_patchify(ctx, a->patches, x, B, c->in_channels, c->input_size, c->input_size, c->patch_size, KB_PATCH_CPQ,
                    err), "patchify");
    KB_TRY(kb_linear_fwd(ctx, &m->x_embed, &m->params, NULL, a->res, a->patches, BT, err), "x_embedder");
    KB_TRY(kb_add_bias(ctx, a->res, kb_param_data(&m->params, m->pos_embed), B, T * d, err), "pos_embed");
    if (conditioning_fwd(m, t, y, B, err) || ada_fwd(m, 0, B, err) || first_norm_fwd(m, B, err)) return -1;
    for (int l = 0; l < c->depth; l++)
        if (block_fwd(m, l, B, err)) return -1;
    return final_fwd(m, B, out, err);
}
