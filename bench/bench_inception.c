/* FID Inception feature-extraction speed (the kindbench side of
 * bench/bench_inception.sh): N random uint8 images of S x S x 3 (fixed seed),
 * featurised with kb_inception_features (pool3, spatial and logits), timed
 * on a second pass: the first, untimed, has met every batch shape (the full
 * batches and the tail; cuDNN chooses its algorithms per shape) on every
 * worker, as the PyTorch side warms up the same way. Prints
 * images_per_sec=<x>.
 *
 *   bench_inception --weights PATH [--unverified] [--n 64] [--size 256]
 *                   [--threads T] [--device cpu|cuda] [--mode adm|pytorch-fid|clean]
 *                   [--precision fp32|tf32]   (cuDNN's arithmetic on CUDA; default fp32)
 * The batch size is $KINDBENCH_INCEPTION_BATCH (default 4 per CPU worker, 64 on CUDA). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/inception.h"
#include "nn/backend.h"
#include "util/progress.h"

typedef struct {
    const char *weights, *device, *mode, *precision;
    int unverified, n, size, threads;
} options;

static int parse(int argc, char **argv, options *o) {
    *o = (options){NULL, "cpu", "adm", "fp32", 0, 64, 256, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--unverified")) o->unverified = 1;
        else if (v && !strcmp(a, "--weights")) o->weights = v, i++;
        else if (v && !strcmp(a, "--device")) o->device = v, i++;
        else if (v && !strcmp(a, "--mode")) o->mode = v, i++;
        else if (v && !strcmp(a, "--precision")) o->precision = v, i++;
        else if (v && !strcmp(a, "--n")) o->n = atoi(v), i++;
        else if (v && !strcmp(a, "--size")) o->size = atoi(v), i++;
        else if (v && !strcmp(a, "--threads")) o->threads = atoi(v), i++;
        else return fprintf(stderr, "bench_inception: unknown or incomplete option %s\n", a), -1;
    }
    if (o->n < 1 || o->size < 1) return fprintf(stderr, "bench_inception: --n and --size must be positive\n"), -1;
    return 0;
}

int main(int argc, char **argv) {
    options o;
    if (parse(argc, argv, &o)) return 2;
    kb_err err = {0};
    kb_ctx ctx;
    kb_device dev;
    kb_preproc_mode mode;
    char path[4096];
    kb_ctx_opts copts = {.threads = o.threads};
    if (kb_device_parse(o.device, &dev, &err) || kb_preproc_parse(o.mode, &mode, &err) ||
        kb_matmul_precision_parse(o.precision, &copts.matmul, &err) ||
        kb_inception_find_weights(o.weights, path, sizeof path, &err) || kb_ctx_init(&ctx, dev, &copts, &err)) {
        fprintf(stderr, "bench_inception: %s\n", err.msg);
        return 1;
    }
    kb_inception *net = kb_inception_load(&ctx, path, o.unverified, &err);
    size_t img = (size_t)o.size * o.size * 3;
    uint8_t *images = malloc(img * (size_t)o.n);
    float *pool = malloc(sizeof(float) * KB_INCEPTION_POOL_DIM * (size_t)o.n);
    float *spatial = malloc(sizeof(float) * KB_INCEPTION_SPATIAL_DIM * (size_t)o.n);
    float *logits = malloc(sizeof(float) * KB_INCEPTION_LOGITS_DIM * (size_t)o.n);
    if (!net || !images || !pool || !spatial || !logits) {
        fprintf(stderr, "bench_inception: %s\n", net ? "out of memory" : err.msg);
        return 1;
    }
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < img * (size_t)o.n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        images[i] = (uint8_t)(s >> 56);
    }
    if (kb_inception_features(net, images, o.n, o.size, o.size, 3, mode, pool, spatial, logits, &err) ||
        kb_ctx_sync(&ctx, &err)) {
        fprintf(stderr, "bench_inception: %s\n", err.msg);
        return 1;
    }
    double t0 = kb_now();
    int rc = kb_inception_features(net, images, o.n, o.size, o.size, 3, mode, pool, spatial, logits, &err);
    if (!rc) rc = kb_ctx_sync(&ctx, &err);
    double dt = kb_now() - t0;
    if (rc) {
        fprintf(stderr, "bench_inception: %s\n", err.msg);
        return 1;
    }
    printf("kindbench: %d images %dx%d, %s mode, %s (%s), %d threads: %.2f s\n", o.n, o.size, o.size, o.mode,
           o.device, o.precision, ctx.threads, dt);
    printf("images_per_sec=%.4f\n", o.n / dt);
    kb_inception_free(net);
    kb_ctx_free(&ctx);
    free(images), free(pool), free(spatial), free(logits);
    return 0;
}
