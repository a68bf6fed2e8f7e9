/* DiT backward pass: the forward of models/dit_forward.c in reverse, with
 * parameter gradients accumulated into m->params.grad. Scratch buffers:
 * d_res carries the residual-stream gradient from block to block; d_a and d_b
 * hold branch gradients; d_ada the adaLN output gradient of the current block;
 * d_c_silu collects every adaLN's contribution to SiLU(c). A branch gradient's
 * first writer overwrites its buffer (KB_GRAD_SET), so only the buffers that
 * really sum several contributions (d_res, d_ada, d_c_silu, ...) are zeroed. */
#include "models/attention.h"
#include "models/dit.h"
#include "models/dit_internal.h"
#include "nn/ops.h"
#include "nn/ops_attn.h"
#include "nn/ops_dit.h"

static int zero(kb_ctx *ctx, float *p, int64_t n, kb_err *err) {
    return kb_dev_zero(ctx, p, (size_t)n * sizeof(float), err);
}

static int final_bwd(kb_dit *m, const float *d_out, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    const kb_dit_config *c = &m->cfg;
    int64_t d = c->hidden_size, T = kb_dit_tokens(c), BT = B * T;
    float *x = kb_dit_res(m, c->depth, B);
    float *d_tokens = a->d_a, *d_modf = a->d_b, *d_adaf = a->d_ada;
    KB_TRY(kb_patchify(ctx, d_tokens, d_out, B, kb_dit_out_channels(c), c->input_size, c->input_size, c->patch_size,
                       KB_PATCH_PQC, err), "unpatchify backward");
    KB_TRY(zero(ctx, d_adaf, B * 2 * d, err), "final backward");
    KB_TRY(kb_linear_bwd(ctx, &m->final_linear, &m->params, NULL, d_modf, KB_GRAD_SET, d_tokens, a->modf, BT, err),
           "final linear backward");
    KB_TRY(zero(ctx, a->d_res, BT * d, err), "final backward");
    KB_TRY(kb_ln_modulate_bwd(ctx, a->d_res, d_adaf, d_adaf + d, d_modf, x, a->lnf_mean, a->lnf_rstd, a->adaf + d, 2 * d,
                              B, T, d, err), "final norm and modulate backward");
    KB_TRY(kb_linear_bwd(ctx, &m->final_ada, &m->params, NULL, a->d_c_silu, KB_GRAD_ADD, d_adaf, a->c_silu, B, err),
           "final adaLN backward");
    return 0;
}

/* MLP half of a block: d_res holds dL/dx_out on entry, dL/dmid on exit. */
static int block_mlp_bwd(kb_dit *m, int l, const kb_dit_block_view *v, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    const kb_dit_block *blk = &m->blocks[l];
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), BT = B * T, ld = 6 * d;
    /* each op reads one scratch buffer and writes the other (fc2's backward reads d_fc2 for dW after writing d_fc1) */
    float *d_fc2 = a->d_a, *d_fc1 = a->d_b, *d_mod2 = a->d_a;
    KB_TRY(kb_gated_add_bwd(ctx, d_fc2, a->d_ada + 5 * d, a->d_res, v->fc2, v->ada + 5 * d, ld, B, T, d, KB_GRAD_SET,
                            err), "block %d gate_mlp backward", l);
    KB_TRY(kb_linear_bwd_dgelu(ctx, &blk->fc2, &m->params, NULL, d_fc1, v->fc1, d_fc2, v->gelu, BT, err),
           "block %d fc2 and GELU backward", l);
    KB_TRY(kb_linear_bwd(ctx, &blk->fc1, &m->params, NULL, d_mod2, KB_GRAD_SET, d_fc1, v->mod2, BT, err),
           "block %d fc1 backward", l);
    KB_TRY(kb_ln_modulate_bwd(ctx, a->d_res, a->d_ada + 3 * d, a->d_ada + 4 * d, d_mod2, v->mid, v->ln2_mean,
                              v->ln2_rstd, v->ada + 4 * d, ld, B, T, d, err), "block %d norm2 and modulate2 backward", l);
    return 0;
}

/* Attention half: d_res holds dL/dmid on entry, dL/dx_in on exit. */
static int block_attn_bwd(kb_dit *m, int l, const kb_dit_block_view *v, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    const kb_dit_block *blk = &m->blocks[l];
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), BT = B * T, ld = 6 * d;
    float *d_proj = a->d_a, *d_atty = a->d_b, *d_qkv = a->d_a, *d_mod1 = a->d_b;
    KB_TRY(kb_gated_add_bwd(ctx, d_proj, a->d_ada + 2 * d, a->d_res, v->proj, v->ada + 2 * d, ld, B, T, d,
                            KB_GRAD_SET, err), "block %d gate_msa backward", l);
    KB_TRY(kb_linear_bwd(ctx, &blk->proj, &m->params, NULL, d_atty, KB_GRAD_SET, d_proj, v->atty, BT, err),
           "block %d proj backward", l);
    KB_TRY(kb_attention_bwd(ctx, a->attn_fused, d_qkv, a->d_att, a->d_att2, d_atty, v->atty, v->qkv, v->att, B, T, d,
                            m->cfg.num_heads, err),
           "block %d attention backward", l);
    KB_TRY(kb_linear_bwd(ctx, &blk->qkv, &m->params, NULL, d_mod1, KB_GRAD_SET, d_qkv, v->mod1, BT, err),
           "block %d qkv backward", l);
    KB_TRY(kb_ln_modulate_bwd(ctx, a->d_res, a->d_ada, a->d_ada + d, d_mod1, v->x_in, v->ln1_mean, v->ln1_rstd,
                              v->ada + d, ld, B, T, d, err), "block %d norm1 and modulate1 backward", l);
    return 0;
}

/* The two halves with bf16 activations (acts.bf16): the gradients flowing
 * into the linear layers (d_fc2, d_fc1, d_proj, d_qkv) are bf16 in d_a (d_fc1
 * right after d_fc2, which is still read); the linear layers' input
 * gradients (d_mod2, d_atty, d_mod1: read by the LayerNorm + modulation and
 * attention backwards, which round dout to bf16 for the tensor cores or, the
 * LayerNorm, widen it) bf16 in d_b, as PyTorch's autocast keeps them. */
static int block_mlp_bwd_x16(kb_dit *m, int l, const kb_dit_block_view *v, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    const kb_dit_block *blk = &m->blocks[l];
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), BT = B * T, ld = 6 * d;
    /* d_a holds 2 B T wide bf16 values (wide >= mlp hidden and >= 3d): room for d_fc2 and, after it, d_fc1 */
    uint16_t *d_fc2 = (uint16_t *)a->d_a, *d_fc1 = (uint16_t *)a->d_a + BT * d;
    uint16_t *d_mod2 = (uint16_t *)a->d_b;
    KB_TRY(kb_gated_add_bwd_x16(ctx, d_fc2, a->d_ada + 5 * d, a->d_res, NULL, v->fc2_16, v->ada + 5 * d, ld, B, T, d,
                                err),
           "block %d gate_mlp backward", l);
    KB_TRY(kb_linear_bwd_dgelu_x16(ctx, &blk->fc2, &m->params, NULL, d_fc1, v->fc1_16, d_fc2, v->gelu16, BT, err),
           "block %d fc2 and GELU backward", l);
    KB_TRY(kb_linear_bwd_x16_dx16(ctx, &blk->fc1, &m->params, NULL, d_mod2, d_fc1, v->mod2_16, BT, err),
           "block %d fc1 backward", l);
    KB_TRY(kb_ln_modulate_bwd_x16(ctx, a->d_res, a->d_ada + 3 * d, a->d_ada + 4 * d, d_mod2, v->mid, v->ln2_mean,
                                  v->ln2_rstd, v->ada + 4 * d, ld, B, T, d, err),
           "block %d norm2 and modulate2 backward", l);
    return 0;
}

static int block_attn_bwd_x16(kb_dit *m, int l, const kb_dit_block_view *v, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    const kb_dit_block *blk = &m->blocks[l];
    int64_t d = m->cfg.hidden_size, T = kb_dit_tokens(&m->cfg), BT = B * T, ld = 6 * d, H = m->cfg.num_heads;
    uint16_t *d_proj = (uint16_t *)a->d_a, *d_qkv = (uint16_t *)a->d_a;
    uint16_t *d_atty = (uint16_t *)a->d_b, *d_mod1 = (uint16_t *)a->d_b;
    KB_TRY(kb_gated_add_bwd_x16(ctx, d_proj, a->d_ada + 2 * d, a->d_res, NULL, v->proj16, v->ada + 2 * d, ld, B, T, d,
                                err),
           "block %d gate_msa backward", l);
    KB_TRY(kb_linear_bwd_x16_dx16(ctx, &blk->proj, &m->params, NULL, d_atty, d_proj, v->atty16, BT, err),
           "block %d proj backward", l);
    /* d_proj is read by then: d_qkv takes its place */
    KB_TRY(kb_attn_fused_bwd_x16(ctx, d_qkv, a->d_att, d_atty, v->atty16, v->qkv16, v->att, B, T, d, H, err),
           "block %d attention backward", l);
    KB_TRY(kb_linear_bwd_x16_dx16(ctx, &blk->qkv, &m->params, NULL, d_mod1, d_qkv, v->mod1_16, BT, err),
           "block %d qkv backward", l);
    KB_TRY(kb_ln_modulate_bwd_x16(ctx, a->d_res, a->d_ada, a->d_ada + d, d_mod1, v->x_in, v->ln1_mean, v->ln1_rstd,
                                  v->ada + d, ld, B, T, d, err),
           "block %d norm1 and modulate1 backward", l);
    return 0;
}

static int block_bwd(kb_dit *m, int l, int64_t B, kb_err *err) {
    kb_dit_block_view v = kb_dit_view_block(m, l, B);
    int64_t d = m->cfg.hidden_size;
    KB_TRY(zero(m->ctx, m->acts.d_ada, B * 6 * d, err), "block %d", l);
    if (m->acts.bf16 ? block_mlp_bwd_x16(m, l, &v, B, err) || block_attn_bwd_x16(m, l, &v, B, err)
                     : block_mlp_bwd(m, l, &v, B, err) || block_attn_bwd(m, l, &v, B, err))
        return -1;
    KB_TRY(kb_linear_bwd(m->ctx, &m->blocks[l].ada, &m->params, NULL, m->acts.d_c_silu, KB_GRAD_ADD, m->acts.d_ada,
                         m->acts.c_silu, B, err), "block %d adaLN backward", l);
    return 0;
}

static int conditioning_bwd(kb_dit *m, const int32_t *y, int64_t B, kb_err *err) {
    kb_ctx *ctx = m->ctx;
    kb_dit_acts *a = &m->acts;
    int64_t d = m->cfg.hidden_size;
    /* c = t_emb + y_emb, so both receive dL/dc. */
    KB_TRY(zero(ctx, a->d_c, B * d, err), "conditioning backward");
    KB_TRY(kb_silu_bwd(ctx, a->d_c, a->c, a->d_c_silu, B * d, err), "SiLU(c) backward");
    KB_TRY(kb_embedding_bwd(ctx, kb_param_grad(&m->params, m->y_table), a->d_c, y, B, d, err), "y_embedder backward");
    KB_TRY(kb_linear_bwd(ctx, &m->t_mlp2, &m->params, NULL, a->d_t, KB_GRAD_SET, a->d_c, a->t_hs, B, err),
           "t_embedder.mlp.2 backward");
    /* d_c_silu is free again: reuse it for dL/dt_h */
    KB_TRY(zero(ctx, a->d_c_silu, B * d, err), "conditioning backward");
    KB_TRY(kb_silu_bwd(ctx, a->d_c_silu, a->t_h, a->d_t, B * d, err), "t_embedder SiLU backward");
    KB_TRY(kb_linear_bwd(ctx, &m->t_mlp0, &m->params, NULL, NULL, KB_GRAD_SET, a->d_c_silu, a->tfreq, B, err),
           "t_embedder.mlp.0 backward");
    return 0;
}

int kb_dit_backward(kb_dit *m, const float *d_out, const int32_t *y, int B, kb_err *err) {
    if (!m->params.grad) return kb_fail(err, "DiT backward: model was created without gradients");
    if (B <= 0 || B > m->acts.cap) return kb_fail(err, "DiT backward: batch %d but the last forward reserved %d", B, m->acts.cap);
    const kb_dit_config *c = &m->cfg;
    int64_t d = c->hidden_size, T = kb_dit_tokens(c), BT = (int64_t)B * T;
    KB_TRY(zero(m->ctx, m->acts.d_c_silu, (int64_t)B * d, err), "DiT backward");
    if (final_bwd(m, d_out, B, err)) return -1;
    for (int l = c->depth - 1; l >= 0; l--)
        if (block_bwd(m, l, B, err)) return -1;
    /* d_res is dL/d(patch embedding + pos_embed); pos_embed is frozen. */
    KB_TRY(kb_linear_bwd(m->ctx, &m->x_embed, &m->params, NULL, NULL, KB_GRAD_SET, m->acts.d_res, m->acts.patches, BT, err),
           "x_embedder backward");
    return conditioning_bwd(m, y, B, err);
}
