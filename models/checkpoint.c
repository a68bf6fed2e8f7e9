#include "models/checkpoint.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nn/safetensors.h"
#include "util/exact_int.h"

static char *optim_json(const kb_optim_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "lr", c->lr);
    cJSON_AddNumberToObject(o, "beta1", c->beta1);
    cJSON_AddNumberToObject(o, "beta2", c->beta2);
    cJSON_AddNumberToObject(o, "eps", c->eps);
    cJSON_AddNumberToObject(o, "weight_decay", c->weight_decay);
    cJSON_AddNumberToObject(o, "clip_norm", c->clip_norm);
    cJSON_AddNumberToObject(o, "ema_decay", c->ema_decay);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The optimiser settings, each within the range the command line accepts
 * (a file's lr of -1 or beta1 of 5 would train, silently, into nonsense). */
static int parse_optim_json(const char *path, const char *s, kb_optim_config *c, kb_err *err) {
    cJSON *o = cJSON_Parse(s);
    const struct {
        const char *key;
        double *dst, lo, hi;
    } f[] = {{"lr", &c->lr, 1e-300, 1e300},           {"beta1", &c->beta1, 0, 0.999999999},
             {"beta2", &c->beta2, 0, 0.999999999},    {"eps", &c->eps, FLT_MIN, 1},
             {"weight_decay", &c->weight_decay, 0, 1e6}, {"clip_norm", &c->clip_norm, 0, 1e300},
             {"ema_decay", &c->ema_decay, 0, 0.999999999}};
    for (size_t i = 0; o && i < sizeof f / sizeof f[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f[i].key);
        double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        int bad = !(x >= f[i].lo && x <= f[i].hi);
        if (bad && !cJSON_IsNumber(v)) kb_fail(err, "%s: optimiser metadata lacks '%s'", path, f[i].key);
        else if (bad)
            kb_fail(err, "%s: optimiser metadata: '%s' is %g, outside [%.10g, %.10g]", path, f[i].key, x, f[i].lo,
                    f[i].hi);
        if (bad) return cJSON_Delete(o), -1;
        *f[i].dst = x;
    }
    if (!o) return kb_fail(err, "%s: optimiser metadata is not JSON", path);
    cJSON_Delete(o);
    return 0;
}

/* Copies a device buffer to a new host buffer (NULL on failure). */
static float *to_host(kb_ctx *ctx, const float *dev, size_t n, kb_err *err) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h) {
        kb_fail(err, "out of memory copying %zu floats for a checkpoint", n);
        return NULL;
    }
    if (kb_copy_to_host(ctx, h, dev, n * sizeof(float), err)) {
        free(h);
        return NULL;
    }
    return h;
}

/* Adds "<prefix>.<name>" for each parameter (trainable ones only when asked). */
static int add_group(kb_st_writer *w, const kb_params *ps, const char *prefix, const float *host, int trainable_only,
                     kb_err *err) {
    for (int i = 0; i < ps->count; i++) {
        const kb_param *p = &ps->items[i];
        if (trainable_only && !p->trainable) continue;
        char name[160];
        snprintf(name, sizeof name, "%s.%s", prefix, p->name);
        if (kb_st_writer_add(w, name, KB_F32, p->ndim, p->shape, host + p->offset, err)) return -1;
    }
    return 0;
}

int kb_checkpoint_save(const char *path, const kb_dit *m, const kb_optim *opt, const char *train_json, kb_err *err) {
    const kb_params *ps = &m->params;
    kb_ctx *ctx = m->ctx;
    float *w_h = NULL, *ema_h = NULL, *m_h = NULL, *v_h = NULL;
    char *cfg = kb_dit_config_to_json(&m->cfg), *ocfg = opt ? optim_json(&opt->cfg) : NULL, step[32];
    kb_st_writer *w = kb_st_writer_new(err);
    int rc = !w || !(w_h = to_host(ctx, ps->data, ps->total, err)) || add_group(w, ps, "model", w_h, 0, err);
    if (!rc && opt && opt->ema)
        rc = !(ema_h = to_host(ctx, opt->ema, ps->total, err)) || add_group(w, ps, "ema", ema_h, 0, err);
    if (!rc && opt)
        rc = !(m_h = to_host(ctx, opt->m, ps->total, err)) || !(v_h = to_host(ctx, opt->v, ps->total, err)) ||
             add_group(w, ps, "adam_m", m_h, 1, err) || add_group(w, ps, "adam_v", v_h, 1, err);
    snprintf(step, sizeof step, "%lld", (long long)(opt ? opt->step : 0));
    if (!rc)
        rc = kb_st_writer_meta(w, "format", KB_CHECKPOINT_FORMAT, err) || kb_st_writer_meta(w, "model", "dit", err) ||
             kb_st_writer_meta(w, "config", cfg, err) || kb_st_writer_meta(w, "step", step, err) ||
             (ocfg && kb_st_writer_meta(w, "optim", ocfg, err)) ||
             (train_json && kb_st_writer_meta(w, "train", train_json, err)) || kb_st_writer_write(w, path, err);
    kb_st_writer_free(w);
    free(w_h), free(ema_h), free(m_h), free(v_h), free(cfg), free(ocfg);
    return rc ? kb_fail_wrap(err, "saving checkpoint %s", path) : 0;
}

static int inspect_open(kb_st_file *f, const char *path, kb_checkpoint_info *info, kb_err *err) {
    memset(info, 0, sizeof *info);
    const char *fmt = kb_st_meta(f, "format"), *cfg = kb_st_meta(f, "config"), *step = kb_st_meta(f, "step");
    if (!fmt || strcmp(fmt, KB_CHECKPOINT_FORMAT))
        return kb_fail(err, "%s: not a kindbench checkpoint (format '%s', expected '%s')", path, fmt ? fmt : "none",
                       KB_CHECKPOINT_FORMAT);
    if (!cfg || !step) return kb_fail(err, "%s: checkpoint metadata lacks config or step", path);
    if (kb_dit_config_from_json(cfg, &info->cfg, err)) return kb_fail_wrap(err, "%s", path);
    long long st;
    if (!kb_text_is_int_in(step, 0, LLONG_MAX, &st))
        return kb_fail(err, "%s: checkpoint step '%s' is not a non-negative integer", path, step);
    info->step = st;
    info->has_ema = kb_st_find(f, "ema.pos_embed") != NULL;
    info->optim = kb_optim_config_default();
    const char *ocfg = kb_st_meta(f, "optim"), *train = kb_st_meta(f, "train");
    info->has_optim = ocfg != NULL;
    if (ocfg && parse_optim_json(path, ocfg, &info->optim, err)) return -1;
    if (train) info->train_json = strdup(train);
    return 0;
}

int kb_checkpoint_inspect(const char *path, kb_checkpoint_info *info, kb_err *err) {
    kb_st_file *f = kb_st_open(path, err);
    if (!f) return kb_fail_wrap(err, "checkpoint");
    int rc = inspect_open(f, path, info, err);
    kb_st_close(f);
    return rc;
}

void kb_checkpoint_info_free(kb_checkpoint_info *info) {
    free(info->train_json);
    info->train_json = NULL;
}

/* Reads "<prefix>.<name>" of every (trainable) parameter into host, then the device buffer. */
static int load_group(kb_st_file *f, const kb_params *ps, const char *prefix, float *dev, int trainable_only,
                      kb_err *err) {
    float *host = calloc(ps->total ? ps->total : 1, sizeof(float));
    if (!host) return kb_fail(err, "out of memory loading %s.*", prefix);
    int rc = 0;
    if (trainable_only) rc = kb_copy_to_host(ps->ctx, host, dev, ps->total * sizeof(float), err);
    for (int i = 0; !rc && i < ps->count; i++) {
        const kb_param *p = &ps->items[i];
        if (trainable_only && !p->trainable) continue;
        char name[160];
        snprintf(name, sizeof name, "%s.%s", prefix, p->name);
        rc = kb_st_read_f32(f, name, p->ndim, p->shape, host + p->offset, p->numel, err);
    }
    if (!rc) rc = kb_copy_to_dev(ps->ctx, dev, host, ps->total * sizeof(float), err);
    free(host);
    return rc;
}

static int describe_mismatch(const char *path, const kb_dit_config *a, const kb_dit_config *b, kb_err *err) {
    char *ja = kb_dit_config_to_json(a), *jb = kb_dit_config_to_json(b);
    kb_fail(err, "%s: checkpoint of another config: file has %s, the model is %s", path, ja, jb);
    free(ja), free(jb);
    return -1;
}

int kb_checkpoint_load(const char *path, kb_dit *m, kb_optim *opt, int use_ema, kb_err *err) {
    kb_checkpoint_info info;
    kb_st_file *f = kb_st_open(path, err);
    if (!f) return kb_fail_wrap(err, "checkpoint");
    int rc = inspect_open(f, path, &info, err);
    if (!rc && !kb_dit_config_same_shape(&info.cfg, &m->cfg)) rc = describe_mismatch(path, &info.cfg, &m->cfg, err);
    if (!rc && use_ema && !info.has_ema) rc = kb_fail(err, "%s: checkpoint has no EMA weights", path);
    if (!rc && opt && !info.has_optim) rc = kb_fail(err, "%s: checkpoint has no optimiser state to resume", path);
    if (!rc) rc = load_group(f, &m->params, use_ema ? "ema" : "model", m->params.data, 0, err);
    if (!rc && opt) {
        rc = load_group(f, &m->params, "adam_m", opt->m, 1, err) || load_group(f, &m->params, "adam_v", opt->v, 1, err);
        if (!rc && opt->ema) rc = info.has_ema ? load_group(f, &m->params, "ema", opt->ema, 0, err)
                                              : kb_fail(err, "%s: checkpoint has no EMA weights to resume", path);
        opt->step = info.step;
    }
    kb_checkpoint_info_free(&info);
    kb_st_close(f);
    return rc;
}
