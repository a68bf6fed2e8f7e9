/* The data side of training: which images, in which order, and every random
 * draw of a step, all pure functions of (seed, step) so that a resumed run
 * sees exactly the batches an unbroken one would. */
#include "models/train.h"
#include "nn/ops.h"

#include <stdlib.h>
#include <string.h>

#include "nn/rng.h"

static int select_classes(kb_train_data *d, kb_class_role role, kb_err *err) {
    const kb_dataset *ds = d->ds;
    if (kb_dataset_classes_with_role(ds, role, &d->classes, &d->nclasses, err)) return -1;
    if (d->nclasses == 0)
        return kb_fail(err, "%s: no classes with role '%s' (of %d classes); choose another --classes", ds->path,
                       kb_train_classes_name(role), ds->nclasses),
               KB_TRAIN_MISFIT;
    d->model_id = malloc(sizeof(int) * (size_t)ds->nclasses);
    if (!d->model_id) return kb_fail(err, "out of memory for the class map");
    for (int c = 0; c < ds->nclasses; c++) d->model_id[c] = -1;
    for (int k = 0; k < d->nclasses; k++) d->model_id[d->classes[k]] = k;
    return 0;
}

int kb_train_data_init(kb_train_data *d, const kb_dataset *ds, kb_class_role role, kb_split split, uint64_t seed,
                       int flip, float class_dropout, kb_err *err) {
    memset(d, 0, sizeof *d);
    d->ds = ds, d->seed = seed, d->flip = flip, d->class_dropout = class_dropout;
    d->num_timesteps = 1000;
    d->perm_epoch = -1;
    int rc = select_classes(d, role, err);
    if (rc || kb_dataset_select(ds, role, split, &d->items, &d->n, err)) {
        kb_train_data_free(d);
        return rc ? rc : -1;
    }
    if (d->n == 0 || d->n > (int64_t)UINT32_MAX) {
        int none = d->n == 0;
        kb_fail(err, "%s: %lld images of '%s' classes in split '%s' (need 1 .. 2^32-1)", ds->path, (long long)d->n,
                kb_train_classes_name(role), kb_train_split_name(split));
        kb_train_data_free(d);
        return none ? KB_TRAIN_MISFIT : -1;
    }
    d->perm = malloc(sizeof(int64_t) * (size_t)d->n);
    if (!d->perm) {
        kb_train_data_free(d);
        return kb_fail(err, "out of memory for a permutation of %lld images", (long long)d->n);
    }
    return 0;
}

void kb_train_data_free(kb_train_data *d) {
    free(d->items), free(d->classes), free(d->model_id), free(d->perm);
    memset(d, 0, sizeof *d);
}

/* Fisher-Yates over [0, n) from the epoch's own stream: any epoch can be
 * rebuilt on its own, which is what makes resuming mid-epoch exact. */
static void build_perm(kb_train_data *d, int64_t epoch) {
    kb_rng r;
    kb_rng_init(&r, d->seed, kb_train_stream(KB_TRAIN_STREAM_PERM, (uint64_t)epoch));
    for (int64_t i = 0; i < d->n; i++) d->perm[i] = i;
    for (int64_t i = d->n - 1; i > 0; i--) {
        int64_t j = kb_rng_below(&r, (uint32_t)(i + 1));
        int64_t tmp = d->perm[i];
        d->perm[i] = d->perm[j], d->perm[j] = tmp;
    }
    d->perm_epoch = epoch;
}

int64_t kb_train_data_item(kb_train_data *d, int64_t g, kb_err *err) {
    if (g < 0) return kb_fail(err, "sample position %lld is negative", (long long)g);
    int64_t epoch = g / d->n;
    if (epoch != d->perm_epoch) build_perm(d, epoch);
    return d->items[d->perm[g % d->n]];
}

/* uint8 HWC (optionally mirrored) to float CHW as ADM: x / 127.5 - 1. */
static void image_to_chw(const uint8_t *img, int R, int C, int mirror, float *out) {
    for (int h = 0; h < R; h++)
        for (int w = 0; w < R; w++) {
            const uint8_t *px = img + ((size_t)h * R + (size_t)(mirror ? R - 1 - w : w)) * (size_t)C;
            for (int c = 0; c < C; c++) out[((size_t)c * R + h) * R + w] = (float)px[c] / 127.5f - 1.0f;
        }
}

/* Uniform integer in [0, n) from one 32-bit word by multiply-shift (bias
 * below n / 2^32, 2.3e-7 for n = 1000; no rejection keeps it one draw). */
static int draw_below(uint64_t seed, uint64_t stream, uint64_t i, int n) {
    uint32_t u = kb_philox_block(seed, stream, i >> 2).v[i & 3];
    return (int)(((uint64_t)u * (uint64_t)n) >> 32);
}

int kb_train_data_batch(kb_train_data *d, int64_t step, int B, float *x0, int32_t *y, int *t, kb_err *err) {
    const kb_dataset *ds = d->ds;
    int R = ds->resolution, C = ds->channels;
    int64_t chw = (int64_t)C * R * R;
    uint64_t s = (uint64_t)step;
    for (int b = 0; b < B; b++) {
        int64_t item = kb_train_data_item(d, step * B + b, err);
        if (item < 0) return -1;
        int mirror = d->flip && kb_rng_uniform_at(d->seed, kb_train_stream(KB_TRAIN_STREAM_FLIP, s), b) < 0.5f;
        image_to_chw(kb_dataset_image(ds, item), R, C, mirror, x0 + b * chw);
        y[b] = d->model_id[kb_dataset_label(ds, item)];
        if (d->class_dropout > 0 &&
            kb_rng_uniform_at(d->seed, kb_train_stream(KB_TRAIN_STREAM_DROP, s), b) < d->class_dropout)
            y[b] = d->nclasses; /* DiT's null class (classifier-free guidance) */
        t[b] = draw_below(d->seed, kb_train_stream(KB_TRAIN_STREAM_T, s), (uint64_t)b, d->num_timesteps);
    }
    return 0;
}

int kb_train_data_noise(const kb_train_data *d, kb_ctx *ctx, int64_t step, int64_t n, float *noise_dev, kb_err *err) {
    /* mean 0, std 1: kb_rand_normal writes fma(z, 1, 0), which is z itself */
    return kb_rand_normal(ctx, noise_dev, n, d->seed, kb_train_stream(KB_TRAIN_STREAM_NOISE, (uint64_t)step), 0.0f,
                          1.0f, err);
}

const char *kb_train_classes_name(kb_class_role r) {
    return r == KB_ROLE_PRETRAIN ? "pretrain" : r == KB_ROLE_NOVEL ? "novel" : r == KB_ROLE_ANY ? "all" : "unused";
}

int kb_train_classes_parse(const char *s, kb_class_role *out) {
    if (!strcmp(s, "pretrain")) *out = KB_ROLE_PRETRAIN;
    else if (!strcmp(s, "novel")) *out = KB_ROLE_NOVEL;
    else if (!strcmp(s, "all")) *out = KB_ROLE_ANY;
    else return -1;
    return 0;
}

const char *kb_train_split_name(kb_split s) {
    return s == KB_SPLIT_TRAIN ? "train" : s == KB_SPLIT_TEST ? "test" : "all";
}

int kb_train_split_parse(const char *s, kb_split *out) {
    if (!strcmp(s, "train")) *out = KB_SPLIT_TRAIN;
    else if (!strcmp(s, "test")) *out = KB_SPLIT_TEST;
    else if (!strcmp(s, "all")) *out = KB_SPLIT_ANY;
    else return -1;
    return 0;
}
