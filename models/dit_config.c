#include "models/dit_config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util/exact_int.h"

kb_dit_config kb_dit_config_default(void) {
    kb_dit_config c;
    memset(&c, 0, sizeof c);
    c.mlp_ratio_x100 = 400;
    c.class_dropout = 0.1f;
    c.learn_sigma = 1;
    c.freq_dim = 256;
    c.in_channels = 4;
    c.input_size = 32;
    c.num_classes = 1000;
    return c;
}

typedef struct {
    const char *size;
    int depth, hidden, heads;
} preset;

static const preset presets[] = {
    {"S", 12, 384, 6}, {"B", 12, 768, 12}, {"L", 24, 1024, 16}, {"XL", 28, 1152, 16}};

int kb_dit_config_preset(const char *name, kb_dit_config *cfg, kb_err *err) {
    if (!strncmp(name, "DiT-", 4)) name += 4;
    const char *slash = strchr(name, '/');
    long long patch = 0; /* the whole text after '/': "S/4garbage" is no preset */
    if (slash && !kb_text_is_int_in(slash + 1, 1, 64, &patch)) patch = 0;
    size_t len = slash ? (size_t)(slash - name) : strlen(name);
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strlen(presets[i].size) != len || strncmp(presets[i].size, name, len)) continue;
        if (patch != 2 && patch != 4 && patch != 8) break;
        cfg->depth = presets[i].depth;
        cfg->hidden_size = presets[i].hidden;
        cfg->num_heads = presets[i].heads;
        cfg->patch_size = (int)patch;
        return 0;
    }
    return kb_fail(err, "unknown --model '%s': not a DiT preset (expected S|B|L|XL followed by /2, /4 or /8, e.g. B/4)", name);
}

int kb_dit_config_shape(kb_dit_config *cfg, const char *preset, const int given[4], kb_err *err) {
    if (preset && kb_dit_config_preset(preset, cfg, err)) return -1;
    int *dst[4] = {&cfg->depth, &cfg->hidden_size, &cfg->num_heads, &cfg->patch_size};
    for (int i = 0; i < 4; i++)
        if (given[i]) *dst[i] = given[i];
    return 0;
}

/* A size above its limit, or -1 with err set. */
typedef struct {
    const char *what;
    int value, max;
} size_limit;

static int check_limits(const size_limit *lim, size_t n, kb_err *err) {
    for (size_t i = 0; i < n; i++)
        if (lim[i].value > lim[i].max)
            return kb_fail(err, "DiT config: %s %d is above the supported %d", lim[i].what, lim[i].value, lim[i].max);
    return 0;
}

/* Upper limits, far beyond DiT-XL (width 1152, 28 blocks, 1000 classes, 256
 * tokens), chosen so that every product of sizes that the layers form in int
 * (width x MLP hidden, tokens^2, (classes+1) x width, patch dim x width)
 * stays below 2^31: a checkpoint's or a command line's absurd size is an
 * error here, not an overflow later. These are the network's own sizes; the
 * data's follow in check_data_limits. */
static int check_model_limits(const kb_dit_config *c, kb_err *err) {
    const size_limit lim[] = {{"patch size", c->patch_size, 32},          {"width", c->hidden_size, 8192},
                              {"depth", c->depth, 1024},                  {"mlp ratio x 100", c->mlp_ratio_x100, 1600},
                              {"frequency embedding size", c->freq_dim, 8192}};
    return check_limits(lim, sizeof lim / sizeof lim[0], err);
}

static int check_data_limits(const kb_dit_config *c, kb_err *err) {
    const size_limit lim[] = {{"image side", c->input_size, 4096},
                              {"channels", c->in_channels, 64},
                              {"classes", c->num_classes, 100000},
                              {"tokens per side (image / patch)", c->input_size / c->patch_size, 128}};
    return check_limits(lim, sizeof lim / sizeof lim[0], err);
}

int kb_dit_config_validate_model(const kb_dit_config *c, kb_err *err) {
    if (c->patch_size <= 0 || c->hidden_size <= 0 || c->depth <= 0 || c->num_heads <= 0 || c->mlp_ratio_x100 <= 0 ||
        c->freq_dim <= 0)
        return kb_fail(err, "DiT config: every size must be positive (patch %d, width %d, depth %d, heads %d, mlp "
                            "ratio %.2f, frequency embedding size %d)", c->patch_size, c->hidden_size, c->depth,
                       c->num_heads, c->mlp_ratio_x100 / 100.0, c->freq_dim);
    if (check_model_limits(c, err)) return -1;
    if (c->hidden_size % c->num_heads)
        return kb_fail(err, "DiT config: %d heads do not divide width %d", c->num_heads, c->hidden_size);
    if (c->hidden_size % 4)
        return kb_fail(err, "DiT config: width %d must be a multiple of 4 for the 2-D sin-cos position embedding",
                       c->hidden_size);
    if (c->freq_dim % 2) return kb_fail(err, "DiT config: frequency embedding size %d must be even", c->freq_dim);
    if (c->class_dropout < 0 || c->class_dropout >= 1)
        return kb_fail(err, "DiT config: class dropout %g outside [0, 1)", c->class_dropout);
    if ((c->hidden_size * c->mlp_ratio_x100) % 100)
        return kb_fail(err, "DiT config: width %d x mlp ratio %.2f is not an integer", c->hidden_size,
                       c->mlp_ratio_x100 / 100.0);
    return 0;
}

int kb_dit_config_validate(const kb_dit_config *c, kb_err *err) {
    if (kb_dit_config_validate_model(c, err)) return -1;
    if (c->input_size <= 0 || c->in_channels <= 0 || c->num_classes <= 0)
        return kb_fail(err, "DiT config: every size must be positive (image %d, channels %d, classes %d)",
                       c->input_size, c->in_channels, c->num_classes);
    if (check_data_limits(c, err)) return -1;
    if (c->input_size % c->patch_size)
        return kb_fail(err, "DiT config: image side %d is not divisible by patch size %d", c->input_size, c->patch_size);
    return 0;
}

int kb_dit_tokens(const kb_dit_config *c) {
    int g = c->input_size / c->patch_size;
    return g * g;
}
int kb_dit_out_channels(const kb_dit_config *c) { return c->learn_sigma ? 2 * c->in_channels : c->in_channels; }
int kb_dit_mlp_hidden(const kb_dit_config *c) { return c->hidden_size * c->mlp_ratio_x100 / 100; }
int kb_dit_patch_dim(const kb_dit_config *c) { return c->in_channels * c->patch_size * c->patch_size; }

char *kb_dit_config_to_json(const kb_dit_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "input_size", c->input_size);
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "patch_size", c->patch_size);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "depth", c->depth);
    cJSON_AddNumberToObject(o, "num_heads", c->num_heads);
    cJSON_AddNumberToObject(o, "mlp_ratio", c->mlp_ratio_x100 / 100.0);
    cJSON_AddNumberToObject(o, "num_classes", c->num_classes);
    cJSON_AddNumberToObject(o, "class_dropout_prob", c->class_dropout);
    cJSON_AddBoolToObject(o, "learn_sigma", c->learn_sigma);
    cJSON_AddNumberToObject(o, "frequency_embedding_size", c->freq_dim);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* An integer field; a fraction, or a value outside int (which the cast
 * would make undefined), is refused. */
static int get_int(const cJSON *o, const char *key, int *out, kb_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return kb_fail(err, "DiT config JSON: missing number '%s'", key);
    double x = v->valuedouble;
    if (!kb_double_is_int_in(x, INT_MIN, INT_MAX))
        return kb_fail(err, "DiT config JSON: '%s' is %g: expected an integer in int range", key, x);
    *out = (int)x;
    return 0;
}

int kb_dit_config_from_json(const char *json, kb_dit_config *c, kb_err *err) {
    cJSON *o = cJSON_Parse(json);
    if (!o) return kb_fail(err, "DiT config JSON: not valid JSON");
    *c = kb_dit_config_default();
    int rc = get_int(o, "input_size", &c->input_size, err) || get_int(o, "in_channels", &c->in_channels, err) ||
             get_int(o, "patch_size", &c->patch_size, err) || get_int(o, "hidden_size", &c->hidden_size, err) ||
             get_int(o, "depth", &c->depth, err) || get_int(o, "num_heads", &c->num_heads, err) ||
             get_int(o, "num_classes", &c->num_classes, err) ||
             get_int(o, "frequency_embedding_size", &c->freq_dim, err);
    const cJSON *ratio = cJSON_GetObjectItemCaseSensitive(o, "mlp_ratio");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(o, "class_dropout_prob");
    const cJSON *sigma = cJSON_GetObjectItemCaseSensitive(o, "learn_sigma");
    if (!rc && (!cJSON_IsNumber(ratio) || !cJSON_IsNumber(drop) || !cJSON_IsBool(sigma)))
        rc = kb_fail(err, "DiT config JSON: missing mlp_ratio, class_dropout_prob or learn_sigma");
    if (!rc && (!(ratio->valuedouble > 0 && ratio->valuedouble <= 16) ||
                !(drop->valuedouble >= 0 && drop->valuedouble < 1)))
        rc = kb_fail(err, "DiT config JSON: mlp_ratio %g outside (0, 16] or class_dropout_prob %g outside [0, 1)",
                     ratio->valuedouble, drop->valuedouble);
    if (!rc) {
        c->mlp_ratio_x100 = (int)(ratio->valuedouble * 100.0 + 0.5);
        c->class_dropout = (float)drop->valuedouble;
        c->learn_sigma = cJSON_IsTrue(sigma);
    }
    cJSON_Delete(o);
    return rc ? -1 : kb_dit_config_validate(c, err);
}

int kb_dit_config_same_shape(const kb_dit_config *a, const kb_dit_config *b) {
    return a->input_size == b->input_size && a->in_channels == b->in_channels && a->patch_size == b->patch_size &&
           a->hidden_size == b->hidden_size && a->depth == b->depth && a->num_heads == b->num_heads &&
           a->mlp_ratio_x100 == b->mlp_ratio_x100 && a->num_classes == b->num_classes &&
           a->learn_sigma == b->learn_sigma && a->freq_dim == b->freq_dim &&
           (a->class_dropout > 0) == (b->class_dropout > 0); /* the null class's embedding row */
}

double kb_dit_forward_macs(const kb_dit_config *c) {
    double d = c->hidden_size, T = kb_dit_tokens(c), mlp = kb_dit_mlp_hidden(c);
    double kout = (double)c->patch_size * c->patch_size * kb_dit_out_channels(c);
    double embed = T * kb_dit_patch_dim(c) * d + c->freq_dim * d + d * d;
    double block = d * 6 * d                  /* adaLN */
                   + T * d * 3 * d + T * d * d /* qkv, proj */
                   + 2 * T * T * d             /* scores and values */
                   + 2 * T * d * mlp;          /* fc1, fc2 */
    double final = d * 2 * d + T * d * kout;
    return embed + c->depth * block + final;
}
