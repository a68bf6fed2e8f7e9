/* The FID Inception's public entry points (metrics/inception.h): finding and
 * verifying the weights file, loading it onto a context, and featurising
 * batches of uint8 images. The layers and forward pass are in
 * metrics/inception_net.c, the pre-processing in metrics/inception_preproc.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/inception_impl.h"
#include "util/exact_int.h"
#include "util/fileio.h"
#include "util/sha256.h"

/* Images per pass of one worker (CPU: per thread, about 15 MB of activations each). */
#define KB_INCEP_BATCH_CPU 4
#define KB_INCEP_BATCH_CUDA 64

static int missing_weights(const char *where, kb_err *err) {
    return kb_fail(err,
                   "FID Inception weights not found%s. kindbench needs %s (SHA-256 %s), pytorch-fid's port of the "
                   "TF inception-2015-12-05 graph, from its GitHub release 'fid_weights': %s . Put it in "
                   "$XDG_CACHE_HOME/kindbench/ (default ~/.cache/kindbench/), or point $KINDBENCH_INCEPTION or "
                   "--inception-weights at it",
                   where, KB_INCEPTION_FILENAME, KB_INCEPTION_SHA256, KB_INCEPTION_URL);
}

static int copy_path(char *out, size_t outsz, const char *path, kb_err *err) {
    if (snprintf(out, outsz, "%s", path) >= (int)outsz) return kb_fail(err, "path too long: %s", path);
    return 0;
}

int kb_inception_find_weights(const char *explicit_path, char *out, size_t outsz, kb_err *err) {
    char where[4600];
    if (explicit_path && *explicit_path) {
        if (kb_is_file(explicit_path)) return copy_path(out, outsz, explicit_path, err);
        snprintf(where, sizeof where, " at %s (given explicitly)", explicit_path);
        return missing_weights(where, err);
    }
    const char *env = getenv("KINDBENCH_INCEPTION");
    if (env && *env) {
        if (kb_is_file(env)) return copy_path(out, outsz, env, err);
        snprintf(where, sizeof where, " at %s ($KINDBENCH_INCEPTION)", env);
        return missing_weights(where, err);
    }
    char dir[4096];
    kb_err why = {0};
    if (kb_user_cache_dir(NULL, NULL, dir, sizeof dir, &why)) {
        snprintf(where, sizeof where, " (no cache directory: %s)", why.msg);
        return missing_weights(where, err);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, KB_INCEPTION_FILENAME);
    if (kb_is_file(path)) return copy_path(out, outsz, path, err);
    snprintf(where, sizeof where, " in %s", dir);
    return missing_weights(where, err);
}

/* The file's bytes, SHA-256 checked unless allowed otherwise. */
static int read_verified(const char *path, int allow_unverified, uint8_t **data, size_t *size, kb_err *err) {
    if (kb_read_file(path, data, size, err)) return -1;
    if (allow_unverified) return 0;
    uint8_t digest[32];
    char hex[65];
    kb_sha256 *h = kb_sha256_new();
    if (!h) return kb_fail(err, "%s: cannot start SHA-256", path);
    kb_sha256_update(h, *data, *size);
    kb_sha256_final(h, digest);
    kb_sha256_hex(digest, hex);
    if (!strcmp(hex, KB_INCEPTION_SHA256)) return 0;
    free(*data);
    *data = NULL;
    return kb_fail(err,
                   "%s: SHA-256 mismatch: expected %s (%s), got %s; the file is damaged or not the FID Inception "
                   "weights (get it from %s)",
                   path, KB_INCEPTION_SHA256, KB_INCEPTION_FILENAME, hex, KB_INCEPTION_URL);
}

/* Images per pass of one worker: $KINDBENCH_INCEPTION_BATCH, else the default. */
static int worker_batch(const kb_ctx *ctx, int *batch, kb_err *err) {
    *batch = ctx->device == KB_DEV_CUDA ? KB_INCEP_BATCH_CUDA : KB_INCEP_BATCH_CPU;
    const char *env = getenv("KINDBENCH_INCEPTION_BATCH");
    if (!env || !*env) return 0;
    long long b;
    if (!kb_text_is_int_in(env, 1, 4096, &b)) return kb_fail(err, "$KINDBENCH_INCEPTION_BATCH=%s: expected 1..4096", env);
    *batch = (int)b;
    return 0;
}

static int worker_init(kb_inception *net, kb_incep_worker *wk, int batch, kb_err *err) {
    wk->net = net;
    wk->ctx = *net->ctx;
    if (wk->ctx.device == KB_DEV_CPU) wk->ctx.threads = 1;
    wk->batch = batch;
    if (!(wk->eng = kb_conv_engine_create(&wk->ctx, 0, err))) return -1;
    return kb_arena_init(&wk->arena, &wk->ctx, kb_incep_arena_bytes(batch), err);
}

static int setup(kb_inception *net, kb_ctx *ctx, const kb_tp_file *f, kb_err *err) {
    int batch;
    net->ctx = ctx;
    net->nworkers = ctx->device == KB_DEV_CUDA || ctx->threads < 1 ? 1 : ctx->threads;
    kb_incep_layers(net);
    if (worker_batch(ctx, &batch, err) || kb_incep_load_weights(net, f, err)) return -1;
    net->batch = net->nworkers * batch;
    net->workers = calloc((size_t)net->nworkers, sizeof *net->workers);
    net->host_in = malloc(sizeof(float) * (size_t)net->batch * KB_INCEPTION_SIZE * KB_INCEPTION_SIZE * 3);
    if (!net->workers || !net->host_in) return kb_fail(err, "inception: out of host memory for a batch of %d", net->batch);
    for (int t = 0; t < net->nworkers; t++)
        if (worker_init(net, &net->workers[t], batch, err)) return -1;
    return 0;
}

kb_inception *kb_inception_load(kb_ctx *ctx, const char *path, int allow_unverified, kb_err *err) {
    uint8_t *data = NULL;
    size_t size = 0;
    if (read_verified(path, allow_unverified, &data, &size, err)) return NULL;
    kb_tp_file *f = kb_tp_open_mem(data, size, path, 0, err);
    kb_inception *net = f ? calloc(1, sizeof *net) : NULL;
    int rc = !f ? -1 : !net ? kb_fail(err, "inception: out of memory") : setup(net, ctx, f, err);
    kb_tp_close(f);
    free(data);
    if (rc) {
        if (f) kb_fail_wrap(err, "loading FID Inception weights");
        kb_inception_free(net);
        return NULL;
    }
    return net;
}

void kb_inception_free(kb_inception *net) {
    if (!net) return;
    for (int k = 0; k < KB_INCEPTION_NCONV && net->ctx; k++) {
        kb_dev_free(net->ctx, net->conv[k].w);
        kb_dev_free(net->ctx, net->conv[k].b);
    }
    if (net->ctx) kb_dev_free(net->ctx, net->fc_w);
    for (int t = 0; net->workers && t < net->nworkers; t++) {
        kb_arena_free(&net->workers[t].arena);
        kb_conv_engine_free(net->workers[t].eng);
        kb_dev_free(&net->workers[t].ctx, net->workers[t].dev_images);
        kb_dev_free(&net->workers[t].ctx, net->workers[t].dev_taps);
    }
    free(net->workers);
    free(net->host_in);
    free(net);
}

int kb_inception_forward(kb_inception *net, const float *inputs, int64_t n, float *pool, float *spatial,
                         float *logits, kb_err *err) {
    const int64_t per = (int64_t)KB_INCEPTION_SIZE * KB_INCEPTION_SIZE * 3;
    for (int64_t i = 0; i < n; i += net->batch) {
        int nb = (int)(n - i < net->batch ? n - i : net->batch);
        if (kb_incep_forward(net, inputs + i * per, nb, kb_incep_rows(pool, i, KB_INCEPTION_POOL_DIM),
                             kb_incep_rows(spatial, i, KB_INCEPTION_SPATIAL_DIM),
                             kb_incep_rows(logits, i, KB_INCEPTION_LOGITS_DIM), err))
            return -1;
    }
    return 0;
}

int kb_inception_features(kb_inception *net, const uint8_t *images, int64_t n, int H, int W, int C,
                          kb_preproc_mode mode, float *pool, float *spatial, float *logits, kb_err *err) {
    const int64_t per = (int64_t)KB_INCEPTION_SIZE * KB_INCEPTION_SIZE * 3, img = (int64_t)H * W * C;
    if (n < 0) return kb_fail(err, "inception: negative image count %lld", (long long)n);
    if (net->ctx->device == KB_DEV_CUDA && mode != KB_PREPROC_CLEAN && n > 0) {
        if (kb_inception_check_input(H, W, C, mode, err)) return -1;
        return kb_incep_forward_images(net, images, n, H, W, C, mode, pool, spatial, logits, err);
    }
    for (int64_t i = 0; i < n; i += net->batch) {
        int nb = (int)(n - i < net->batch ? n - i : net->batch), bad = 0;
        kb_err perr = {0};
        /* Images are independent: pre-process them in parallel (each call is single-threaded). */
#pragma omp parallel for num_threads(net->ctx->threads > 0 ? net->ctx->threads : 1) schedule(dynamic) reduction(|| : bad)
        for (int j = 0; j < nb; j++) {
            kb_err e = {0};
            if (kb_inception_preprocess(images + (i + j) * img, H, W, C, mode, net->host_in + j * per, &e)) {
                bad = 1;
#pragma omp critical
                perr = e;
            }
        }
        if (bad) {
            if (err) *err = perr;
            return kb_fail_wrap(err, "image %lld", (long long)i);
        }
        if (kb_incep_forward(net, net->host_in, nb, kb_incep_rows(pool, i, KB_INCEPTION_POOL_DIM),
                             kb_incep_rows(spatial, i, KB_INCEPTION_SPATIAL_DIM),
                             kb_incep_rows(logits, i, KB_INCEPTION_LOGITS_DIM), err))
            return -1;
    }
    return 0;
}
