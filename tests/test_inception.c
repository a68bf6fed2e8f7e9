/* The native FID Inception against PyTorch (fixture tests/ref/inception_ref.py:
 * torchvision's Inception-v3 with pytorch-fid's patches and random weights,
 * saved in torch.save's legacy format, as the real weights file, and in the
 * zip format), on the CPU.
 *
 * Tolerances, stated per output as max |got - ref| <= tol * max |ref|:
 *   - the network on PyTorch's own pytorch-fid inputs (5 images, batch size 2
 *     so that batches split and the last is partial): pool3, spatial, logits
 *     tol 1e-4;
 *   - end to end (our pre-processing + network): adm mode on 2 images against
 *     the network run on the numpy TF1-legacy resize, pytorch-fid mode with
 *     the zip-format weights on one image: tol 1e-4;
 *   - each resize (adm / pytorch-fid / clean, 6 images: odd sizes, no resize,
 *     grey, RGBA, a downscale) against numpy / F.interpolate / PIL:
 *     |d| <= 1e-5 (values in [-1, 1]).
 * Also: the weights look-up order and its messages, the SHA-256 check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kbtest.h"
#include "metrics/inception.h"
#include "nn/safetensors.h"

#define NPIX (KB_INCEPTION_INPUT * KB_INCEPTION_INPUT * 3)

static char g_path[4096];

static const char *fx(const char *name) {
    const char *d = getenv("KB_FIXTURES");
    snprintf(g_path, sizeof g_path, "%s/%s", d ? d : ".", name);
    return g_path;
}

/* max |got - ref| <= tol * max |ref| */
static void close_rel_max(kbt_state *st, const char *name, const float *got, const float *ref, int64_t n, double tol) {
    kbt_close(st, name, got, ref, n, tol * kbt_max_abs(ref, n), 0.0);
}

static float *read_f32(kb_st_file *f, const char *name, int64_t *count) {
    const kb_st_tensor *t = kb_st_find(f, name);
    if (!t) return NULL;
    float *p = malloc(sizeof(float) * (size_t)t->numel);
    kb_err err;
    if (kb_st_read_f32(f, name, -1, NULL, p, (size_t)t->numel, &err)) {
        free(p);
        return NULL;
    }
    if (count) *count = t->numel;
    return p;
}

typedef struct {
    uint8_t *px;
    int h, w, c;
} image;

static int read_image(kb_st_file *f, int i, image *im, kb_err *err) {
    char name[32];
    const kb_st_tensor *t;
    snprintf(name, sizeof name, "img.%d", i);
    if (kb_st_read_alloc(f, name, KB_U8, &t, (void **)&im->px, err)) return -1;
    im->h = (int)t->shape[0], im->w = (int)t->shape[1], im->c = (int)t->shape[2];
    return 0;
}

static void test_resizes(kbt_state *st, kb_st_file *ref, int nimg) {
    static const kb_preproc_mode modes[3] = {KB_PREPROC_ADM, KB_PREPROC_PYTORCH_FID, KB_PREPROC_CLEAN};
    float *got = malloc(sizeof(float) * NPIX);
    for (int i = 0; i < nimg; i++) {
        image im;
        kb_err err = {0};
        if (read_image(ref, i, &im, &err)) {
            KBT_CHECK(st, 0, "read test image", "%s", err.msg);
            continue;
        }
        for (int m = 0; m < 3; m++) {
            char name[128], key[64];
            snprintf(key, sizeof key, "in.%s.%d", kb_preproc_name(modes[m]), i);
            snprintf(name, sizeof name, "resize %s, image %d (%dx%dx%d)", kb_preproc_name(modes[m]), i, im.h, im.w, im.c);
            float *want = read_f32(ref, key, NULL);
            int rc = kb_inception_preprocess(im.px, im.h, im.w, im.c, modes[m], got, &err);
            KBT_CHECK(st, want && rc == 0, name, "missing reference or failed: %s", err.msg);
            if (want && rc == 0) kbt_close(st, name, got, want, NPIX, 1e-5, 0.0);
            free(want);
        }
        free(im.px);
    }
    free(got);
}

/* The three outputs of n images against "<tag>.pool" etc., rows [row0, row0+n). */
static void compare_features(kbt_state *st, kb_st_file *ref, const char *tag, const char *what, int row0, int n,
                             const float *pool, const float *spatial, const float *logits) {
    static const char *outs[3] = {"pool", "spatial", "logits"};
    const int dims[3] = {KB_INCEPTION_POOL_DIM, KB_INCEPTION_SPATIAL_DIM, KB_INCEPTION_LOGITS_DIM};
    const float *got[3] = {pool, spatial, logits};
    for (int k = 0; k < 3; k++) {
        char key[64], name[160];
        snprintf(key, sizeof key, "%s.%s", tag, outs[k]);
        snprintf(name, sizeof name, "%s: %s (max |d| <= 1e-4 max |ref|)", what, outs[k]);
        float *want = read_f32(ref, key, NULL);
        KBT_CHECK(st, want != NULL, name, "no reference %s", key);
        if (want) close_rel_max(st, name, got[k], want + (int64_t)row0 * dims[k], (int64_t)n * dims[k], 1e-4);
        free(want);
    }
}

typedef struct {
    float *pool, *spatial, *logits;
} feats;

static feats feats_new(int n) {
    feats f = {malloc(sizeof(float) * n * KB_INCEPTION_POOL_DIM), malloc(sizeof(float) * n * KB_INCEPTION_SPATIAL_DIM),
               malloc(sizeof(float) * n * KB_INCEPTION_LOGITS_DIM)};
    return f;
}

static void feats_free(feats *f) { free(f->pool), free(f->spatial), free(f->logits); }

/* The network alone on PyTorch's pytorch-fid inputs; batch 2 splits 5 images 2+2+1. */
static void test_network(kbt_state *st, kb_ctx *ctx, kb_st_file *ref, int nimg) {
    kb_err err = {0};
    setenv("KINDBENCH_INCEPTION_BATCH", "2", 1);
    kb_inception *net = kb_inception_load(ctx, fx("inception_rand_legacy.pth"), 1, &err);
    unsetenv("KINDBENCH_INCEPTION_BATCH");
    KBT_CHECK(st, net != NULL, "load random weights (legacy format)", "%s", err.msg);
    if (!net) return;
    float *in = malloc(sizeof(float) * NPIX * nimg);
    for (int i = 0; i < nimg; i++) {
        char key[64];
        snprintf(key, sizeof key, "in.pytorch-fid.%d", i);
        float *x = read_f32(ref, key, NULL);
        if (x) memcpy(in + (int64_t)i * NPIX, x, sizeof(float) * NPIX);
        free(x);
    }
    feats f = feats_new(nimg);
    int rc = kb_inception_forward(net, in, nimg, f.pool, f.spatial, f.logits, &err);
    KBT_CHECK(st, rc == 0, "forward of 5 inputs in batches of 2", "%s", err.msg);
    if (!rc) compare_features(st, ref, "pytorch-fid", "network on PyTorch's inputs, legacy weights", 0, nimg, f.pool, f.spatial, f.logits);
    /* End to end in adm mode: our TF1 resize + network, one image per call. */
    for (int i = 0; i < 2 && rc == 0; i++) {
        image im;
        char what[96];
        if (read_image(ref, i, &im, &err)) break;
        rc = kb_inception_features(net, im.px, 1, im.h, im.w, im.c, KB_PREPROC_ADM, f.pool, f.spatial, f.logits, &err);
        snprintf(what, sizeof what, "adm end to end, image %d (%dx%d)", i, im.h, im.w);
        KBT_CHECK(st, rc == 0, what, "%s", err.msg);
        if (!rc) compare_features(st, ref, "adm", what, i, 1, f.pool, f.spatial, f.logits);
        free(im.px);
    }
    feats_free(&f);
    free(in);
    kb_inception_free(net);
}

/* The zip-format copy of the same weights, end to end in pytorch-fid mode. */
static void test_zip(kbt_state *st, kb_ctx *ctx, kb_st_file *ref) {
    kb_err err = {0};
    kb_inception *net = kb_inception_load(ctx, fx("inception_rand_zip.pth"), 1, &err);
    KBT_CHECK(st, net != NULL, "load random weights (zip format)", "%s", err.msg);
    image im;
    if (!net || read_image(ref, 0, &im, &err)) {
        kb_inception_free(net);
        return;
    }
    feats f = feats_new(1);
    int rc = kb_inception_features(net, im.px, 1, im.h, im.w, im.c, KB_PREPROC_PYTORCH_FID, f.pool, f.spatial, f.logits, &err);
    KBT_CHECK(st, rc == 0, "zip weights, pytorch-fid mode end to end", "%s", err.msg);
    if (!rc) compare_features(st, ref, "pytorch-fid", "pytorch-fid end to end, zip weights, image 0", 0, 1, f.pool, f.spatial, f.logits);
    feats_free(&f);
    free(im.px);
    kb_inception_free(net);
}

static int has(const char *msg, const char *part) { return strstr(msg, part) != NULL; }

static void test_lookup(kbt_state *st, kb_ctx *ctx) {
    char out[4096], dir[4096], path[4300];
    kb_err err = {0};
    const char *legacy = strdup(fx("inception_rand_legacy.pth"));
    unsetenv("KINDBENCH_INCEPTION");
    setenv("XDG_CACHE_HOME", "/nonexistent/kb-xdg", 1);
    int rc = kb_inception_find_weights(NULL, out, sizeof out, &err);
    KBT_CHECK(st, rc != 0 && has(err.msg, KB_INCEPTION_FILENAME) && has(err.msg, KB_INCEPTION_SHA256) &&
                      has(err.msg, "fid_weights") && has(err.msg, "/nonexistent/kb-xdg/kindbench"),
              "missing weights: message names the file, its SHA-256, the source and the cache dir", "%s", err.msg);
    printf("     message: %s\n", err.msg);
    rc = kb_inception_find_weights("/nonexistent/w.pth", out, sizeof out, &err);
    KBT_CHECK(st, rc != 0 && has(err.msg, "/nonexistent/w.pth") && has(err.msg, KB_INCEPTION_SHA256),
              "explicit path that does not exist: error names it", "%s", err.msg);
    rc = kb_inception_find_weights(legacy, out, sizeof out, &err);
    KBT_CHECK(st, rc == 0 && !strcmp(out, legacy), "explicit path wins", "%s", err.msg);
    setenv("KINDBENCH_INCEPTION", legacy, 1);
    rc = kb_inception_find_weights(NULL, out, sizeof out, &err);
    KBT_CHECK(st, rc == 0 && !strcmp(out, legacy), "$KINDBENCH_INCEPTION is used", "%s", err.msg);
    setenv("KINDBENCH_INCEPTION", "/nonexistent/env.pth", 1);
    rc = kb_inception_find_weights(NULL, out, sizeof out, &err);
    KBT_CHECK(st, rc != 0 && has(err.msg, "KINDBENCH_INCEPTION"), "$KINDBENCH_INCEPTION to a missing file: error", "%s", err.msg);
    unsetenv("KINDBENCH_INCEPTION");
    snprintf(dir, sizeof dir, "%s", fx("xdg"));
    snprintf(path, sizeof path, "%s/kindbench", dir);
    mkdir(dir, 0755), mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/kindbench/%s", dir, KB_INCEPTION_FILENAME);
    FILE *fp = fopen(path, "wb");
    if (fp) fputs("not the weights", fp), fclose(fp);
    setenv("XDG_CACHE_HOME", dir, 1);
    rc = kb_inception_find_weights(NULL, out, sizeof out, &err);
    KBT_CHECK(st, rc == 0 && !strcmp(out, path), "$XDG_CACHE_HOME/kindbench/<file> is found", "%s", err.msg);
    kb_inception *net = kb_inception_load(ctx, out, 0, &err);
    KBT_CHECK(st, !net && has(err.msg, "SHA-256 mismatch") && has(err.msg, KB_INCEPTION_SHA256),
              "wrong file in the cache: SHA-256 mismatch names the expected hash", "%s", err.msg);
    net = kb_inception_load(ctx, legacy, 0, &err);
    KBT_CHECK(st, !net && has(err.msg, "SHA-256 mismatch"), "test weights refused without allow_unverified", "%s", err.msg);
    printf("     message: %s\n", err.msg);
    net = kb_inception_load(ctx, fx("inception_ref.safetensors"), 1, &err);
    KBT_CHECK(st, !net && has(err.msg, "not a PyTorch checkpoint"), "a non-checkpoint file: clear error", "%s", err.msg);
    net = kb_inception_load(ctx, fx("tp_small_legacy.pth"), 1, &err);
    KBT_CHECK(st, !net && has(err.msg, "Conv2d_1a_3x3.conv.weight"), "a checkpoint without the layers: names the missing tensor", "%s", err.msg);
    kb_preproc_mode m;
    KBT_CHECK(st, kb_preproc_parse("clean", &m, &err) == 0 && m == KB_PREPROC_CLEAN && kb_preproc_parse("tf", &m, &err) != 0,
              "kb_preproc_parse", "%s", err.msg);
    free((void *)legacy);
}

int main(void) {
    kbt_state st = {0};
    kb_err err = {0};
    kb_ctx ctx;
    kb_st_file *ref = kb_st_open(fx("inception_ref.safetensors"), &err);
    if (!ref || kb_ctx_init(&ctx, KB_DEV_CPU, NULL, &err)) {
        printf("FAIL setup: %s\n", err.msg);
        return 1;
    }
    const char *n = kb_st_meta(ref, "images"), *nr = kb_st_meta(ref, "resize_images");
    int nimg = n ? atoi(n) : 0;
    test_resizes(&st, ref, nr ? atoi(nr) : nimg);
    test_lookup(&st, &ctx);
    test_network(&st, &ctx, ref, nimg);
    test_zip(&st, &ctx, ref);
    kb_st_close(ref);
    kb_ctx_free(&ctx);
    return kbt_finish(&st);
}
