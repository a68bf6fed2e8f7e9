/* The sampler (models/sampler.c) against PyTorch (tests/ref/sample_ref.py:
 * DiT's forward_with_cfg and sample loop over ADM's p_sample/ddim_sample), on
 * the CPU, replaying the reference's noise:
 *   - 10-step DDIM (eta 0, 0.5) and DDPM, CFG scale 4 in both modes, no CFG,
 *     clip_denoised, for 3-, 1- and 4-channel DiTs, in batches of 2 over 3
 *     samples: max |x0 - ref| <= 1e-4 * max |ref| (measured: see the output);
 *   - the modes agree bitwise for 3 channels and differ for 1 and 4;
 *   - DiT's quantisation on every truncation boundary: exact;
 * and, with the default Philox noise: batch 1, 2 and 3 agree (to the DiT
 * forward's float differences between batch sizes), reruns are
 * bit-identical, and bad requests are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kbtest.h"
#include "models/sampler.h"
#include "nn/safetensors.h"

#define REL_TOL 1e-4

typedef struct {
    kb_st_file *f;
    kb_ctx ctx;
    kb_dit models[3];
    char tags[3][16];
    int nmodels;
} fixture;

static int load_model(fixture *fx, const char *tag, kb_dit *m, kb_err *err) {
    char key[64];
    snprintf(key, sizeof key, "config.%s", tag);
    const char *json = kb_st_meta(fx->f, key);
    kb_dit_config cfg;
    if (!json) return kb_fail(err, "no %s metadata", key);
    if (kb_dit_config_from_json(json, &cfg, err) || kb_dit_create(m, &fx->ctx, &cfg, 0, 0, err)) return -1;
    kb_params *ps = &m->params;
    for (int i = 0; i < ps->count; i++) {
        char name[200];
        snprintf(name, sizeof name, "%s.param.%s", tag, ps->items[i].name);
        if (kb_st_read_f32(fx->f, name, ps->items[i].ndim, ps->items[i].shape, kb_param_data(ps, i),
                           ps->items[i].numel, err))
            return -1;
    }
    return 0;
}

static kb_dit *model_of(fixture *fx, const char *tag, kb_err *err) {
    for (int i = 0; i < fx->nmodels; i++)
        if (!strcmp(fx->tags[i], tag)) return &fx->models[i];
    if (fx->nmodels == 3) return kb_fail(err, "too many models"), NULL;
    kb_dit *m = &fx->models[fx->nmodels];
    if (load_model(fx, tag, m, err)) return NULL;
    snprintf(fx->tags[fx->nmodels++], sizeof fx->tags[0], "%s", tag);
    return m;
}

/* The reference's noise, replayed by global sample index. */
typedef struct {
    float *xT, *noise; /* [N, n], [steps, N, n] */
    int N;
} replay;

static int replay_noise(void *user, int64_t first, int B, int step, float *out, int64_t n, kb_err *err) {
    replay *r = user;
    const float *src = step < 0 ? r->xT : r->noise + (int64_t)step * r->N * n;
    if (first + B > r->N) return kb_fail(err, "replay: samples %lld+%d beyond %d", (long long)first, B, r->N);
    memcpy(out, src + first * n, (size_t)(B * n) * sizeof(float));
    return 0;
}

/* Collects every batch's x0 at its global position. */
typedef struct {
    float *x;
    int64_t per;
} collect;

static int collect_fn(void *user, int64_t first, int B, const int32_t *labels, const float *x0, kb_err *err) {
    collect *c = user;
    memcpy(c->x + first * c->per, x0, (size_t)(B * c->per) * sizeof(float));
    return 0;
}

static float *read_alloc(kb_st_file *f, const char *tag, const char *what, int64_t *n, kb_err *err) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", tag, what);
    const kb_st_tensor *t = kb_st_get(f, name, err);
    if (!t) return NULL;
    float *x = malloc((size_t)t->numel * sizeof(float));
    if (n) *n = t->numel;
    if (kb_st_read_f32(f, name, -1, NULL, x, (size_t)t->numel, err)) return free(x), NULL;
    return x;
}

static int cfg_from_case(const cJSON *c, kb_sample_cfg *s) {
    *s = kb_sample_cfg_default();
    const char *sampler = cJSON_GetObjectItem(c, "sampler")->valuestring;
    s->sampler = !strcmp(sampler, "ddim") ? KB_SAMPLER_DDIM : KB_SAMPLER_DDPM;
    s->eta = (float)cJSON_GetObjectItem(c, "eta")->valuedouble;
    s->cfg_scale = (float)cJSON_GetObjectItem(c, "scale")->valuedouble;
    s->cfg_mode = !strcmp(cJSON_GetObjectItem(c, "mode")->valuestring, "all") ? KB_CFG_ALL : KB_CFG_DIT;
    s->clip_denoised = cJSON_IsTrue(cJSON_GetObjectItem(c, "clip"));
    s->batch = 2;
    return 0;
}

/* Runs one reference case; returns the samples (malloc'd) for the mode checks. */
static float *run_case(kbt_state *st, fixture *fx, const cJSON *c, int64_t *count) {
    kb_err err = {0};
    const char *tag = cJSON_GetObjectItem(c, "tag")->valuestring;
    kb_dit *m = model_of(fx, cJSON_GetObjectItem(c, "model")->valuestring, &err);
    kb_diffusion d = {0};
    replay r = {0};
    float *ref = NULL, *got = NULL;
    int64_t n_ref = 0;
    int32_t y[16];
    kb_sample_cfg s;
    cfg_from_case(c, &s);
    int ok = m && !kb_diffusion_init(&d, 1000, cJSON_GetObjectItem(c, "spec")->valuestring, &err) &&
             (r.xT = read_alloc(fx->f, tag, "xT", NULL, &err)) && (r.noise = read_alloc(fx->f, tag, "noise", NULL, &err)) &&
             (ref = read_alloc(fx->f, tag, "x0", &n_ref, &err));
    char yname[64];
    snprintf(yname, sizeof yname, "%s.y", tag);
    const kb_st_tensor *yt = ok ? kb_st_get(fx->f, yname, &err) : NULL;
    ok = ok && yt && yt->numel <= 16 && !kb_st_read(fx->f, yname, KB_I32, 1, yt->shape, y, (size_t)yt->numel * 4, &err);
    if (ok) {
        r.N = (int)yt->numel;
        collect col = {got = calloc((size_t)n_ref, sizeof(float)), n_ref / r.N};
        s.noise = replay_noise, s.noise_user = &r;
        ok = !kb_sample_run(m, &d, &s, y, r.N, collect_fn, &col, NULL, &err);
    }
    if (!ok) {
        KBT_CHECK(st, 0, tag, "%s", err.msg);
        free(got), got = NULL;
    } else {
        char label[160];
        snprintf(label, sizeof label, "%s x0 vs torch (|d| <= %.0e max|ref| = %.3g)", tag, REL_TOL, kbt_max_abs(ref, n_ref));
        kbt_close(st, label, got, ref, n_ref, REL_TOL * kbt_max_abs(ref, n_ref), 0.0);
    }
    *count = n_ref;
    kb_diffusion_free(&d);
    free(r.xT), free(r.noise), free(ref);
    return got;
}

static int same_bits(const float *a, const float *b, int64_t n) { return a && b && !memcmp(a, b, (size_t)n * sizeof(float)); }

static void check_torch(kbt_state *st, fixture *fx) {
    const char *json = kb_st_meta(fx->f, "cases");
    cJSON *cases = json ? cJSON_Parse(json) : NULL;
    KBT_CHECK(st, cases != NULL, "cases metadata", "missing or not JSON");
    float *out[16] = {0};
    int64_t n[16] = {0};
    int k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        if (k < 16) out[k] = run_case(st, fx, c, &n[k]);
        k++;
    }
    /* pairs (dit, all) of the same noise: cases 0/1 (m3), 6/7 (m4), 8/9 (m1) */
    KBT_CHECK(st, same_bits(out[0], out[1], n[0]), "3 channels: dit and all modes agree bitwise", "they differ");
    KBT_CHECK(st, out[6] && out[7] && !same_bits(out[6], out[7], n[6]), "4 channels: dit and all modes differ", "same");
    KBT_CHECK(st, out[8] && out[9] && !same_bits(out[8], out[9], n[8]), "1 channel: dit and all modes differ", "same");
    for (int i = 0; i < 16; i++) free(out[i]);
    cJSON_Delete(cases);
}

static void check_quant(kbt_state *st, fixture *fx) {
    kb_err err = {0};
    const kb_st_tensor *t = kb_st_get(fx->f, "quant.x", &err);
    if (!t) {
        KBT_CHECK(st, 0, "quant fixture", "%s", err.msg);
        return;
    }
    int64_t n = t->numel, bad = -1;
    float *x = malloc((size_t)n * 4);
    uint8_t *want = malloc((size_t)n);
    int ok = !kb_st_read(fx->f, "quant.x", KB_F32, 1, t->shape, x, (size_t)n * 4, &err) &&
             !kb_st_read(fx->f, "quant.u8", KB_U8, 1, t->shape, want, (size_t)n, &err);
    for (int64_t i = 0; ok && i < n; i++)
        if (kb_quantize_u8(x[i]) != want[i]) bad = i;
    KBT_CHECK(st, ok && bad < 0, "quantisation = torch.clamp(127.5x+128, 0, 255).to(uint8) on boundaries",
              "%s x=%.9g got %d want %d", err.msg, bad >= 0 ? x[bad] : 0.0, bad >= 0 ? kb_quantize_u8(x[bad]) : 0,
              bad >= 0 ? want[bad] : 0);
    KBT_CHECK(st, kb_quantize_u8(NAN) == 0 && kb_quantize_u8(-1.0039f) == 0 && kb_quantize_u8(-1.0f) == 0 &&
                      kb_quantize_u8(0.0f) == 128 && kb_quantize_u8(1.0f) == 255 && kb_quantize_u8(1.0039f) == 255,
              "quantisation edges (NaN -> 0, -1.0039, -1, 0, 1, 1.0039)", "wrong");
    /* NHWC layout: x[b][c][p] -> out[b][p][c] */
    float xs[2 * 3 * 2];
    uint8_t q[12];
    for (int i = 0; i < 12; i++) xs[i] = ((float)i - 128.0f) / 127.5f + 1.0f / 255.0f;
    kb_quantize_nhwc(xs, 2, 3, 2, q);
    KBT_CHECK(st, q[0] == kb_quantize_u8(xs[0]) && q[1] == kb_quantize_u8(xs[2]) && q[3] == kb_quantize_u8(xs[1]) &&
                      q[6] == kb_quantize_u8(xs[6]) && q[11] == kb_quantize_u8(xs[11]),
              "kb_quantize_nhwc layout", "wrong element order");
    free(x), free(want);
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) m = fabs((double)a[i] - b[i]) > m ? fabs((double)a[i] - b[i]) : m;
    return m;
}

/* Philox noise by global index: samples do not depend on the batch size up
 * to the model's own float differences (OpenBLAS picks other kernels for
 * small GEMMs, so a DiT forward of 2 samples and of 6 differ in the last
 * bits: measured up to 1e-6 of max |x| after 10 steps); reruns are
 * bit-identical. */
static void check_batching(kbt_state *st, fixture *fx) {
    kb_err err = {0};
    kb_dit *m = model_of(fx, "m3", &err);
    kb_diffusion d;
    if (!m || kb_diffusion_init(&d, 1000, "10", &err)) {
        KBT_CHECK(st, 0, "batching setup", "%s", err.msg);
        return;
    }
    int32_t y[5] = {1, 0, 4, 4, 2};
    int64_t per = (int64_t)m->cfg.in_channels * m->cfg.input_size * m->cfg.input_size, n = 5 * per;
    float *outs[4];
    int batches[4] = {1, 2, 3, 3};
    for (int i = 0; i < 4; i++) {
        kb_sample_cfg s = kb_sample_cfg_default();
        s.cfg_scale = 4.0f, s.seed = 7, s.batch = batches[i];
        collect col = {outs[i] = calloc((size_t)n, sizeof(float)), per};
        if (kb_sample_run(m, &d, &s, y, 5, collect_fn, &col, NULL, &err)) KBT_CHECK(st, 0, "batching run", "%s", err.msg);
    }
    double scale = kbt_max_abs(outs[0], n), d2 = max_diff(outs[0], outs[1], n), d3 = max_diff(outs[0], outs[2], n);
    KBT_CHECK(st, d2 <= 1e-5 * scale && d3 <= 1e-5 * scale, "batch 1, 2, 3 agree (|d| <= 1e-5 max|x|)",
              "max |d| %.3g, %.3g of max |x| %.3g", d2, d3, scale);
    printf("     measured: batch 2 vs 1 max |d| %.3g, batch 3 vs 1 %.3g (max |x| %.3g)\n", d2, d3, scale);
    KBT_CHECK(st, same_bits(outs[2], outs[3], n), "rerun: bit-identical samples", "they differ");
    KBT_CHECK(st, scale > 0 && memcmp(outs[0], outs[0] + per, (size_t)per * 4), "samples are not trivial",
              "zero or repeated");
    for (int i = 0; i < 4; i++) free(outs[i]);
    kb_diffusion_free(&d);
}

static void check_refusals(kbt_state *st, fixture *fx) {
    kb_err err = {0};
    kb_dit *m = model_of(fx, "m3", &err);
    if (!m) return;
    kb_sample_cfg s = kb_sample_cfg_default();
    int32_t bad[2] = {0, 5}, neg[1] = {-1};
    KBT_CHECK(st, kb_sample_check(&m->cfg, &s, bad, 2, &err) && strstr(err.msg, "class 5"), "class 5 of 5 refused",
              "%s", err.msg);
    KBT_CHECK(st, kb_sample_check(&m->cfg, &s, neg, 1, &err) != 0, "class -1 refused", "accepted");
    KBT_CHECK(st, kb_sample_check(&m->cfg, &s, bad, 0, &err) && strstr(err.msg, "nothing"), "0 samples refused", "%s",
              err.msg);
    kb_dit_config c = m->cfg;
    c.class_dropout = 0;
    KBT_CHECK(st, kb_sample_check(&c, &s, bad, 1, &err) && strstr(err.msg, "null class"),
              "guidance without a null class refused", "%s", err.msg);
    s.cfg_scale = 1.0f;
    KBT_CHECK(st, kb_sample_check(&c, &s, bad, 1, &err) == 0, "scale 1 without a null class accepted", "%s", err.msg);
    c.learn_sigma = 0;
    KBT_CHECK(st, kb_sample_check(&c, &s, bad, 1, &err) && strstr(err.msg, "learn_sigma"), "no learned sigma refused",
              "%s", err.msg);
}

int main(void) {
    kbt_state st = {0, 0};
    kb_err err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/sample_ref.safetensors", getenv("KB_FIXTURES") ? getenv("KB_FIXTURES") : ".");
    fixture fx;
    memset(&fx, 0, sizeof fx);
    kb_ctx_opts co = {.threads = 1};
    if (!(fx.f = kb_st_open(path, &err)) || kb_ctx_init(&fx.ctx, KB_DEV_CPU, &co, &err)) {
        printf("FAIL setup: %s\n", err.msg);
        return 1;
    }
    check_torch(&st, &fx);
    check_quant(&st, &fx);
    check_batching(&st, &fx);
    check_refusals(&st, &fx);
    for (int i = 0; i < fx.nmodels; i++) kb_dit_free(&fx.models[i]);
    kb_ctx_free(&fx.ctx);
    kb_st_close(fx.f);
    return kbt_finish(&st);
}
