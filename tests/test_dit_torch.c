/* The DiT engine against PyTorch (tests/ref/dit_ref.py, a copy of
 * facebookresearch/DiT's model with ADM's training loss), on the CPU:
 *   - model output for a batch with a null label and t = 0 (rel 1e-5 of scale)
 *   - per-sample mse and vb, and the batch loss (rel 1e-5)
 *   - every parameter gradient (max |g - g_ref| <= 1e-4 * max |g_ref| per tensor)
 *   - the losses of 10 AdamW steps (rel 1e-4) and the weights after them
 *     (max diff <= 1e-3 * max |w| per tensor: Adam divides by sqrt(v), so a
 *     gradient near zero turns ulp-level differences into update differences
 *     of up to lr; measured up to 0.07 of this bound)
 *   - a second run from the same start is bit-identical. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "models/diffusion.h"
#include "models/dit.h"
#include "models/optim.h"
#include "nn/safetensors.h"

typedef struct {
    kb_st_file *f;
    kb_dit model;
    kb_diffusion diff;
    kb_ctx ctx;
    int B, C, HW;
} fixture;

static float max_abs(const float *x, int64_t n) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

static int load_params(fixture *fx, const char *prefix, kb_err *err) {
    kb_params *ps = &fx->model.params;
    for (int i = 0; i < ps->count; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s.%s", prefix, ps->items[i].name);
        if (kb_st_read_f32(fx->f, name, ps->items[i].ndim, ps->items[i].shape, kb_param_data(ps, i),
                           ps->items[i].numel, err))
            return -1;
    }
    return 0;
}

static int setup(fixture *fx, kb_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/dit_ref.safetensors", getenv("KB_FIXTURES") ? getenv("KB_FIXTURES") : ".");
    memset(fx, 0, sizeof *fx);
    if (!(fx->f = kb_st_open(path, err))) return -1;
    kb_dit_config cfg;
    const char *json = kb_st_meta(fx->f, "config");
    if (!json) return kb_fail(err, "%s: no config metadata", path);
    if (kb_dit_config_from_json(json, &cfg, err) || kb_ctx_init(&fx->ctx, KB_DEV_CPU, NULL, err) ||
        kb_dit_create(&fx->model, &fx->ctx, &cfg, 1, 0, err) || load_params(fx, "param", err) ||
        kb_diffusion_init(&fx->diff, 1000, "", err))
        return -1;
    fx->C = cfg.in_channels;
    fx->HW = cfg.input_size * cfg.input_size;
    const kb_st_tensor *t = kb_st_get(fx->f, "g.t", err);
    if (!t) return -1;
    fx->B = (int)t->shape[0];
    return 0;
}

/* One training batch as the C engine runs it: x_t, forward, loss, and (when
 * d_out is given) the loss gradient w.r.t. the model output and backward. */
typedef struct {
    float *x0, *noise, *x_t, *out, *d_out, *tf, mse[64], vb[64], loss;
    int32_t t[64], y[64];
} batch;

static int read_batch(fixture *fx, const char *tag, batch *b, kb_err *err) {
    int64_t n = (int64_t)fx->B * fx->C * fx->HW, shape[4] = {fx->B, fx->C, -1, -1};
    char name[64];
    snprintf(name, sizeof name, "%s.x0", tag);
    if (kb_st_read_f32(fx->f, name, 4, shape, b->x0, (size_t)n, err)) return -1;
    snprintf(name, sizeof name, "%s.noise", tag);
    if (kb_st_read_f32(fx->f, name, 4, shape, b->noise, (size_t)n, err)) return -1;
    snprintf(name, sizeof name, "%s.t", tag);
    if (kb_st_read(fx->f, name, KB_I32, 1, (int64_t[]){fx->B}, b->t, (size_t)fx->B * 4, err)) return -1;
    snprintf(name, sizeof name, "%s.y", tag);
    return kb_st_read(fx->f, name, KB_I32, 1, (int64_t[]){fx->B}, b->y, (size_t)fx->B * 4, err);
}

static int run_batch(fixture *fx, batch *b, int backward, kb_err *err) {
    int B = fx->B, C = fx->C, HW = fx->HW;
    for (int i = 0; i < B; i++) b->tf[i] = (float)b->t[i];
    if (kb_diffusion_q_sample(&fx->diff, b->x0, b->noise, b->t, B, C, HW, b->x_t, err) ||
        kb_dit_forward(&fx->model, b->x_t, b->tf, b->y, B, b->out, err) ||
        kb_diffusion_loss_fwd(&fx->diff, b->x0, b->noise, b->x_t, b->t, b->out, B, C, HW, b->mse, b->vb, &b->loss, err))
        return -1;
    if (!backward) return 0;
    return kb_diffusion_loss_bwd(&fx->diff, b->x0, b->noise, b->x_t, b->t, b->out, B, C, HW, 1.0f, b->d_out, err) ||
           kb_params_zero_grad(&fx->model.params, err) || kb_dit_backward(&fx->model, b->d_out, b->y, B, err);
}

static void batch_alloc(batch *b, int64_t n_in, int64_t n_out) {
    memset(b, 0, sizeof *b);
    b->x0 = malloc(n_in * 4), b->noise = malloc(n_in * 4), b->x_t = malloc(n_in * 4);
    b->out = malloc(n_out * 4), b->d_out = malloc(n_out * 4), b->tf = malloc(64 * 4);
}

static void batch_free(batch *b) { free(b->x0), free(b->noise), free(b->x_t), free(b->out), free(b->d_out), free(b->tf); }

static void check_tensor(kbt_state *st, fixture *fx, const char *name, const float *got, int64_t n, double rel) {
    kb_err err = {{0}};
    float *want = malloc((size_t)n * 4);
    if (kb_st_read_f32(fx->f, name, -1, NULL, want, (size_t)n, &err)) {
        KBT_CHECK(st, 0, name, "%s", err.msg);
    } else {
        char label[200];
        snprintf(label, sizeof label, "%s (|d| <= %.0e max|ref|)", name, rel);
        kbt_close(st, label, got, want, n, rel * max_abs(want, n) + 1e-30, 0.0);
    }
    free(want);
}

static void test_gradients(kbt_state *st, fixture *fx, batch *b) {
    kb_err err = {{0}};
    int64_t n_out = (int64_t)fx->B * kb_dit_out_channels(&fx->model.cfg) * fx->HW;
    if (read_batch(fx, "g", b, &err) || run_batch(fx, b, 1, &err)) {
        KBT_CHECK(st, 0, "DiT forward/backward runs", "%s", err.msg);
        return;
    }
    check_tensor(st, fx, "g.out", b->out, n_out, 1e-5);
    check_tensor(st, fx, "g.mse", b->mse, fx->B, 1e-5);
    check_tensor(st, fx, "g.vb", b->vb, fx->B, 1e-5);
    float want_loss;
    kb_st_read_f32(fx->f, "g.loss", 1, (int64_t[]){1}, &want_loss, 1, &err);
    KBT_CHECK(st, fabsf(b->loss - want_loss) <= 1e-5f * fabsf(want_loss), "loss (rel 1e-5)", "got %.9g want %.9g",
              b->loss, want_loss);
    kb_params *ps = &fx->model.params;
    for (int i = 0; i < ps->count; i++) {
        if (!ps->items[i].trainable) continue;
        char name[160];
        snprintf(name, sizeof name, "grad.%s", ps->items[i].name);
        check_tensor(st, fx, name, kb_param_grad(ps, i), (int64_t)ps->items[i].numel, 1e-4);
    }
}

/* 10 AdamW steps from the fixture's initial weights; losses into out[10]. */
static int adamw_run(fixture *fx, batch *b, float *losses, kb_err *err) {
    if (load_params(fx, "param", err)) return -1;
    kb_optim opt;
    kb_optim_config oc = kb_optim_config_default();
    oc.lr = 1e-3;
    oc.weight_decay = 0.01;
    oc.ema_decay = 0.0;
    if (kb_optim_init(&opt, &fx->model.params, &oc, err)) return -1;
    int rc = 0;
    for (int k = 0; k < 10 && !rc; k++) {
        char tag[16];
        snprintf(tag, sizeof tag, "a%d", k);
        rc = read_batch(fx, tag, b, err) || run_batch(fx, b, 1, err) || kb_optim_step(&opt, err);
        losses[k] = b->loss;
    }
    kb_optim_free(&opt);
    return rc ? -1 : 0;
}

static void test_adamw(kbt_state *st, fixture *fx, batch *b) {
    kb_err err = {{0}};
    float losses[10], want[10], again[10];
    if (adamw_run(fx, b, losses, &err) || kb_st_read_f32(fx->f, "a.losses", 1, (int64_t[]){10}, want, 10, &err)) {
        KBT_CHECK(st, 0, "10 AdamW steps run", "%s", err.msg);
        return;
    }
    kbt_close(st, "losses of 10 AdamW steps (rel 1e-4)", losses, want, 10, 0.0, 1e-4);
    kb_params *ps = &fx->model.params;
    size_t bytes = ps->total * sizeof(float);
    float *weights = malloc(bytes);
    memcpy(weights, ps->data, bytes);
    for (int i = 0; i < ps->count; i++) {
        char name[160];
        snprintf(name, sizeof name, "final.%s", ps->items[i].name);
        check_tensor(st, fx, name, kb_param_data(ps, i), (int64_t)ps->items[i].numel, 1e-3);
    }
    if (adamw_run(fx, b, again, &err)) {
        KBT_CHECK(st, 0, "second AdamW run", "%s", err.msg);
    } else {
        KBT_CHECK(st, !memcmp(losses, again, sizeof losses) && !memcmp(weights, ps->data, bytes),
                  "rerun from the same start is bit-identical", "losses or weights differ");
    }
    free(weights);
}

int main(void) {
    kbt_state st = {0, 0};
    kb_err err = {{0}};
    fixture fx;
    if (setup(&fx, &err)) {
        KBT_CHECK(&st, 0, "load the PyTorch DiT fixture", "%s", err.msg);
        return kbt_finish(&st);
    }
    batch b;
    int64_t n_in = (int64_t)fx.B * fx.C * fx.HW, n_out = n_in * 2;
    batch_alloc(&b, n_in, n_out);
    test_gradients(&st, &fx, &b);
    test_adamw(&st, &fx, &b);
    batch_free(&b);
    kb_dit_free(&fx.model);
    kb_diffusion_free(&fx.diff);
    kb_st_close(fx.f);
    kb_ctx_free(&fx.ctx);
    return kbt_finish(&st);
}
