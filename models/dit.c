/* DiT construction: parameter registry in DiT's state_dict names, DiT's
 * initialisation, and activation buffers. Forward and backward are in
 * models/dit_forward.c and models/dit_backward.c. */
#include "models/dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/attention.h"
#include "nn/ops_attn.h"
#include "nn/rng.h"

void kb_dit_sincos_pos_embed(float *out, int dim, int grid) {
    /* MAE/DiT quirk: the first half of the channels encodes the column (w)
     * coordinate, the second half the row (h); each half is [sin, cos]. */
    int quarter = dim / 4;
    for (int i = 0; i < grid; i++)
        for (int j = 0; j < grid; j++) {
            float *row = out + (size_t)(i * grid + j) * dim;
            for (int k = 0; k < quarter; k++) {
                double omega = 1.0 / pow(10000.0, (double)k / (double)quarter);
                row[k] = (float)sin(j * omega);
                row[quarter + k] = (float)cos(j * omega);
                row[2 * quarter + k] = (float)sin(i * omega);
                row[3 * quarter + k] = (float)cos(i * omega);
            }
        }
}

static int register_block(kb_dit *m, int l, kb_err *err) {
    const kb_dit_config *c = &m->cfg;
    int d = c->hidden_size, h = kb_dit_mlp_hidden(c);
    kb_dit_block *b = &m->blocks[l];
    char p[64];
#define REG(lin, suffix, in, out)                                                                                  \
    snprintf(p, sizeof p, "blocks.%d.%s", l, suffix);                                                              \
    if (kb_linear_register(&b->lin, &m->params, p, in, out, 1, 1, err)) return -1;
    REG(qkv, "attn.qkv", d, 3 * d)
    REG(proj, "attn.proj", d, d)
    REG(fc1, "mlp.fc1", d, h)
    REG(fc2, "mlp.fc2", h, d)
    REG(ada, "adaLN_modulation.1", d, 6 * d)
#undef REG
    return 0;
}

static int register_params(kb_dit *m, kb_err *err) {
    const kb_dit_config *c = &m->cfg;
    int d = c->hidden_size, T = kb_dit_tokens(c), p = c->patch_size;
    kb_params *ps = &m->params;
    m->pos_embed = kb_params_add(ps, "pos_embed", 3, (int64_t[]){1, T, d}, 0, err);
    if (m->pos_embed < 0) return -1;
    /* The patch-embedding conv is a linear over CPQ patch vectors with a 4-D weight. */
    m->x_embed.kind = KB_LINEAR_DENSE;
    m->x_embed.in = kb_dit_patch_dim(c);
    m->x_embed.out = d;
    m->x_embed.w = kb_params_add(ps, "x_embedder.proj.weight", 4, (int64_t[]){d, c->in_channels, p, p}, 1, err);
    m->x_embed.b = kb_params_add(ps, "x_embedder.proj.bias", 1, (int64_t[]){d}, 1, err);
    if (m->x_embed.w < 0 || m->x_embed.b < 0) return -1;
    if (kb_linear_register(&m->t_mlp0, ps, "t_embedder.mlp.0", c->freq_dim, d, 1, 1, err) ||
        kb_linear_register(&m->t_mlp2, ps, "t_embedder.mlp.2", d, d, 1, 1, err))
        return -1;
    int rows = c->num_classes + (c->class_dropout > 0 ? 1 : 0);
    m->y_table = kb_params_add(ps, "y_embedder.embedding_table.weight", 2, (int64_t[]){rows, d}, 1, err);
    if (m->y_table < 0) return -1;
    for (int l = 0; l < c->depth; l++)
        if (register_block(m, l, err)) return -1;
    if (kb_linear_register(&m->final_linear, ps, "final_layer.linear", d, p * p * kb_dit_out_channels(c), 1, 1, err) ||
        kb_linear_register(&m->final_ada, ps, "final_layer.adaLN_modulation.1", d, 2 * d, 1, 1, err))
        return -1;
    return 0;
}

/* How DiT's initialize_weights sets each parameter. */
typedef enum { INIT_ZERO, INIT_XAVIER, INIT_NORMAL_002, INIT_POS } init_kind;

static init_kind init_for(const kb_dit *m, int i) {
    const char *n = m->params.items[i].name;
    size_t len = strlen(n);
    if (i == m->pos_embed) return INIT_POS;
    if (len > 5 && !strcmp(n + len - 5, ".bias")) return INIT_ZERO;
    if (strstr(n, "adaLN_modulation") || !strcmp(n, "final_layer.linear.weight")) return INIT_ZERO;
    if (i == m->y_table || strstr(n, "t_embedder.mlp.")) return INIT_NORMAL_002;
    return INIT_XAVIER;
}

static void init_param_host(const kb_dit *m, int i, float *dst, uint64_t seed) {
    const kb_param *p = &m->params.items[i];
    switch (init_for(m, i)) {
    case INIT_ZERO:
        memset(dst, 0, p->numel * sizeof(float));
        break;
    case INIT_POS:
        kb_dit_sincos_pos_embed(dst, m->cfg.hidden_size, m->cfg.input_size / m->cfg.patch_size);
        break;
    case INIT_NORMAL_002:
        for (size_t k = 0; k < p->numel; k++) dst[k] = kb_rng_normal_scaled(seed, (uint64_t)i, k, 0.0f, 0.02f);
        break;
    case INIT_XAVIER: {
        /* fan_out = shape[0], fan_in = the rest (a conv weight viewed as [out, -1]) */
        double fan_out = (double)p->shape[0], fan_in = (double)p->numel / fan_out;
        float a = (float)sqrt(6.0 / (fan_in + fan_out));
        for (size_t k = 0; k < p->numel; k++) dst[k] = kb_rng_uniform_scaled(seed, (uint64_t)i, k, -a, a);
        break;
    }
    }
}

int kb_dit_create(kb_dit *m, kb_ctx *ctx, const kb_dit_config *cfg, int with_grad, uint64_t seed, kb_err *err) {
    memset(m, 0, sizeof *m);
    if (kb_dit_config_validate(cfg, err)) return -1;
    m->cfg = *cfg;
    m->ctx = ctx;
    kb_params_init(&m->params, ctx);
    m->blocks = calloc((size_t)cfg->depth, sizeof *m->blocks);
    if (!m->blocks) return kb_fail(err, "DiT: out of memory for %d blocks", cfg->depth);
    if (register_params(m, err) || kb_params_alloc(&m->params, with_grad, err)) {
        kb_dit_free(m);
        return -1;
    }
    float *host = malloc(m->params.total * sizeof(float));
    if (!host) {
        kb_dit_free(m);
        return kb_fail(err, "DiT: out of host memory for %zu parameters", m->params.total);
    }
    memset(host, 0, m->params.total * sizeof(float));
    for (int i = 0; i < m->params.count; i++) init_param_host(m, i, host + m->params.items[i].offset, seed);
    int rc = kb_copy_to_dev(ctx, m->params.data, host, m->params.total * sizeof(float), err);
    free(host);
    if (rc) kb_dit_free(m);
    return rc;
}

void kb_dit_free(kb_dit *m) {
    if (m->acts.base) kb_dev_free(m->ctx, m->acts.base);
    kb_params_free(&m->params);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

/* Carves named buffers out of one allocation: pass 1 counts, pass 2 assigns. */
typedef struct {
    float *base;
    size_t used;
} carver;

static float *carve(carver *cv, size_t n) {
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += (n + 63) / 64 * 64;
    return p;
}

static void layout_acts(kb_dit_acts *a, const kb_dit_config *c, size_t B, int backward, carver *cv) {
    int fused = a->attn_fused;
    size_t act = a->bf16 ? 2 : 1; /* values per float of the tensors that may be bf16 */
    size_t d = (size_t)c->hidden_size, T = (size_t)kb_dit_tokens(c), L = (size_t)a->slots;
    size_t BT = B * T, mlp = (size_t)kb_dit_mlp_hidden(c), H = (size_t)c->num_heads;
    size_t K = (size_t)kb_dit_patch_dim(c), Kout = (size_t)(c->patch_size * c->patch_size) * kb_dit_out_channels(c);
    size_t wide = 3 * d > mlp ? 3 * d : mlp;
    if (Kout > wide) wide = Kout;
    a->tfreq = carve(cv, B * (size_t)c->freq_dim);
    a->t_h = carve(cv, B * d), a->t_hs = carve(cv, B * d), a->temb = carve(cv, B * d);
    a->yemb = carve(cv, B * d), a->c = carve(cv, B * d), a->c_silu = carve(cv, B * d);
    a->patches = carve(cv, BT * K);
    a->res = carve(cv, (L + 1) * BT * d);
    a->ada = carve(cv, (L < 2 ? 2 : L) * B * 6 * d); /* kb_dit_view_block: at least two slots */
    a->mod1 = carve(cv, (L * BT * d + act - 1) / act), a->qkv = carve(cv, (L * BT * 3 * d + act - 1) / act);
    a->att = carve(cv, L * (size_t)kb_attention_saved_floats(fused, B, T, H));
    a->atty = carve(cv, (L * BT * d + act - 1) / act), a->proj = carve(cv, (L * BT * d + act - 1) / act);
    a->mid = carve(cv, L * BT * d), a->mod2 = carve(cv, (L * BT * d + act - 1) / act);
    a->fc1 = carve(cv, (L * BT * mlp + act - 1) / act), a->gelu = carve(cv, (L * BT * mlp + act - 1) / act);
    a->fc2 = carve(cv, (L * BT * d + act - 1) / act);
    a->ln1_mean = carve(cv, L * BT), a->ln1_rstd = carve(cv, L * BT);
    a->ln2_mean = carve(cv, L * BT), a->ln2_rstd = carve(cv, L * BT);
    a->adaf = carve(cv, B * 2 * d), a->modf = carve(cv, BT * d);
    a->lnf_mean = carve(cv, BT), a->lnf_rstd = carve(cv, BT), a->out_tokens = carve(cv, BT * Kout);
    a->d_att = carve(cv, (size_t)kb_attention_scratch_floats(fused, 0, B, T, H)); /* also the forward's scratch */
    if (!backward) return;
    a->d_res = carve(cv, BT * d), a->d_a = carve(cv, BT * wide), a->d_b = carve(cv, BT * wide);
    a->d_ada = carve(cv, B * 6 * d), a->d_c = carve(cv, B * d), a->d_c_silu = carve(cv, B * d);
    a->d_t = carve(cv, B * d), a->d_att2 = carve(cv, (size_t)kb_attention_scratch_floats(fused, 1, B, T, H));
}

int kb_dit_reserve(kb_dit *m, int cap, kb_err *err) {
    /* the attention route follows the context's matmul mode, which may change between calls */
    int fused = kb_attn_fused_wanted(m->ctx, m->cfg.hidden_size / m->cfg.num_heads);
    int bf16 = kb_act_bf16_wanted(m->ctx, fused);
    if (cap <= m->acts.cap && fused == m->acts.attn_fused && bf16 == m->acts.bf16) return 0;
    if (cap < m->acts.cap) cap = m->acts.cap;
    if (m->acts.base) kb_dev_free(m->ctx, m->acts.base);
    int backward = m->params.grad != NULL;
    memset(&m->acts, 0, sizeof m->acts);
    m->acts.slots = backward ? m->cfg.depth : 1;
    m->acts.attn_fused = fused;
    m->acts.bf16 = bf16;
    carver cv = {NULL, 0};
    layout_acts(&m->acts, &m->cfg, (size_t)cap, backward, &cv);
    float *base = kb_dev_alloc(m->ctx, cv.used * sizeof(float), err);
    if (!base)
        return kb_fail_wrap(err, "DiT activations for batch %d (%.1f MiB, %s)", cap, cv.used * 4.0 / 1048576.0,
                            backward ? "kept for backward" : "forward only");
    cv = (carver){base, 0};
    layout_acts(&m->acts, &m->cfg, (size_t)cap, backward, &cv);
    m->acts.base = base;
    m->acts.floats = cv.used;
    m->acts.cap = cap;
    return 0;
}
