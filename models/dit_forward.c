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

/* block_fwd's attention and MLP halves with bf16 activations: the linear
 * layers' inputs mod1, atty, mod2 and gelu, the attention's input qkv and the
 * GELU's input fc1 are written and read as bf16. */
static int block_fwd_x16(kb_dit *m, int l, const kb_dit_block_view *v, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    const kb_dit_block *blk = &m->blocks[l];
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), BT = B * T, ld = 6 * d, H = m->cfg.num_heads;
    const float *ada = v->ada;
    KB_TRY(kb_ln_modulate_fwd_x16(ctx, v->mod1_16, v->ln1_mean, v->ln1_rstd, v->x_in, ada, ada + d, ld, B, T, d, 1e-6f,
                                  err), "block %d norm1 and modulate1", l);
    KB_TRY(kb_linear_fwd_x16_y16(ctx, &blk->qkv, &m->params, NULL, v->qkv16, v->mod1_16, BT, err), "block %d qkv", l);
    KB_TRY(kb_attn_fused_fwd_x16(ctx, v->atty16, v->att, v->qkv16, B, T, d, H, err), "block %d attn", l);
    KB_TRY(kb_linear_fwd_x16(ctx, &blk->proj, &m->params, NULL, v->proj, v->atty16, BT, err), "block %d proj", l);
    KB_TRY(kb_gated_add_fwd(ctx, v->mid, v->x_in, ada + 2 * d, v->proj, ld, B, T, d, err), "block %d gate_msa", l);
    KB_TRY(kb_ln_modulate_fwd_x16(ctx, v->mod2_16, v->ln2_mean, v->ln2_rstd, v->mid, ada + 3 * d, ada + 4 * d, ld, B, T,
                                  d, 1e-6f, err), "block %d norm2 and modulate2", l);
    KB_TRY(kb_linear_fwd_gelu_x16(ctx, &blk->fc1, &m->params, NULL, v->fc1_16, v->gelu16, v->mod2_16, BT, err),
           "block %d fc1+GELU", l);
    KB_TRY(kb_linear_fwd_x16(ctx, &blk->fc2, &m->params, NULL, v->fc2, v->gelu16, BT, err), "block %d fc2", l);
    KB_TRY(kb_gated_add_fwd(ctx, v->x_out, v->mid, ada + 5 * d, v->fc2, ld, B, T, d, err), "block %d gate_mlp", l);
    return 0;
}

static int block_fwd(kb_dit *m, int l, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    const kb_dit_block *blk = &m->blocks[l];
    kb_dit_block_view v = kb_dit_view_block(m, l, B);
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), BT = B * T, ld = 6 * d;
    float *shift_msa = v.ada, *scale_msa = v.ada + d, *gate_msa = v.ada + 2 * d;
    float *shift_mlp = v.ada + 3 * d, *scale_mlp = v.ada + 4 * d, *gate_mlp = v.ada + 5 * d;
    KB_TRY(kb_linear_fwd(ctx, &blk->ada, &m->params, NULL, v.ada, m->acts.c_silu, B, err), "block %d adaLN", l);
    if (m->acts.bf16) return block_fwd_x16(m, l, &v, B, err);
    /* attention branch */
    KB_TRY(kb_ln_modulate_fwd(ctx, v.mod1, v.ln1_mean, v.ln1_rstd, v.x_in, shift_msa, scale_msa, ld, B, T, d, 1e-6f, err),
           "block %d norm1 and modulate1", l);
    KB_TRY(kb_linear_fwd(ctx, &blk->qkv, &m->params, NULL, v.qkv, v.mod1, BT, err), "block %d qkv", l);
    KB_TRY(kb_attention_fwd(ctx, m->acts.attn_fused, v.atty, v.att, m->acts.d_att, v.qkv, B, T, d, m->cfg.num_heads,
                            err), "block %d attn", l);
    KB_TRY(kb_linear_fwd(ctx, &blk->proj, &m->params, NULL, v.proj, v.atty, BT, err), "block %d proj", l);
    KB_TRY(kb_gated_add_fwd(ctx, v.mid, v.x_in, gate_msa, v.proj, ld, B, T, d, err), "block %d gate_msa", l);
    /* MLP branch */
    KB_TRY(kb_ln_modulate_fwd(ctx, v.mod2, v.ln2_mean, v.ln2_rstd, v.mid, shift_mlp, scale_mlp, ld, B, T, d, 1e-6f, err),
           "block %d norm2 and modulate2", l);
    KB_TRY(kb_linear_fwd_gelu(ctx, &blk->fc1, &m->params, NULL, v.fc1, v.gelu, v.mod2, BT, err), "block %d fc1+GELU", l);
    KB_TRY(kb_linear_fwd(ctx, &blk->fc2, &m->params, NULL, v.fc2, v.gelu, BT, err), "block %d fc2", l);
    KB_TRY(kb_gated_add_fwd(ctx, v.x_out, v.mid, gate_mlp, v.fc2, ld, B, T, d, err), "block %d gate_mlp", l);
    return 0;
}

static int final_fwd(kb_dit *m, int64_t B, float *out, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    const kb_dit_config *c = &m->cfg;
    int64_t d = c->hidden_size, T = kb_dit_tokens(c), BT = B * T;
    float *x = kb_dit_res(m, c->depth, B);
    KB_TRY(kb_linear_fwd(ctx, &m->final_ada, &m->params, NULL, a->adaf, a->c_silu, B, err), "final adaLN");
    KB_TRY(kb_ln_modulate_fwd(ctx, a->modf, a->lnf_mean, a->lnf_rstd, x, a->adaf, a->adaf + d, 2 * d, B, T, d, 1e-6f, err),
           "final norm and modulate");
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
    if (conditioning_fwd(m, t, y, B, err)) return -1;
    for (int l = 0; l < c->depth; l++)
        if (block_fwd(m, l, B, err)) return -1;
    return final_fwd(m, B, out, err);
}
