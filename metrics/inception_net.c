/* The FID Inception-v3's layers and forward pass: torchvision's Inception-v3
 * (1008 classes, no aux head) as pytorch-fid patches it:
 *   - BasicConv2d = conv (no bias) + BatchNorm(eps 1e-3) + ReLU; BatchNorm is
 *     folded into the convolution at load time (in double, then float);
 *   - Mixed_5b/5c/5d (A), 6b-6e (C) and 7b (E_1) pool with a 3x3 s1 p1
 *     average that excludes the padding (TF's behaviour); Mixed_7c (E_2)
 *     pools with a 3x3 s1 p1 max (a quirk of the TF graph pytorch-fid keeps);
 *   - Mixed_6a (B) and 7a (D) are unchanged (3x3 s2 max pool, no padding).
 * Outputs: pool3 (the 2048-d global average after Mixed_7c), the sFID spatial
 * features (Mixed_6d.branch1x1 after BN+ReLU, 17x17x192, first 7 channels in
 * H, W, C order) and the logits without bias (pool3 . fc.weight^T).
 *
 * Activations are NHWC; every branch writes into its channel slice of the
 * block's output, so torch.cat costs nothing. Two ping-pong buffers hold a
 * block's input and output, branch temporaries come from the arena and are
 * released after each block. The same code runs on CPU and CUDA (the ops
 * dispatch on the context). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/inception_impl.h"
#include "nn/ops.h"

/* ------------------------------------------------------------------ layers */

static void layer(kb_inception *net, int *k, const char *block, const char *name, int cin, int cout, int kh, int kw,
                  int s, int ph, int pw) {
    kb_incep_conv *c = &net->conv[(*k)++];
    snprintf(c->name, sizeof c->name, "%s%s%s", block, *block ? "." : "", name);
    c->cin = cin, c->cout = cout, c->kh = kh, c->kw = kw, c->sh = c->sw = s, c->ph = ph, c->pw = pw;
}

static void layers_a(kb_inception *net, int *k, const char *b, int cin, int pool_features) {
    layer(net, k, b, "branch1x1", cin, 64, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch5x5_1", cin, 48, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch5x5_2", 48, 64, 5, 5, 1, 2, 2);
    layer(net, k, b, "branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    layer(net, k, b, "branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1);
    layer(net, k, b, "branch_pool", cin, pool_features, 1, 1, 1, 0, 0);
}

static void layers_c(kb_inception *net, int *k, const char *b, int c7) {
    layer(net, k, b, "branch1x1", 768, 192, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch7x7_1", 768, c7, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch7x7_2", c7, c7, 1, 7, 1, 0, 3);
    layer(net, k, b, "branch7x7_3", c7, 192, 7, 1, 1, 3, 0);
    layer(net, k, b, "branch7x7dbl_1", 768, c7, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0);
    layer(net, k, b, "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3);
    layer(net, k, b, "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0);
    layer(net, k, b, "branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3);
    layer(net, k, b, "branch_pool", 768, 192, 1, 1, 1, 0, 0);
}

static void layers_e(kb_inception *net, int *k, const char *b, int cin) {
    layer(net, k, b, "branch1x1", cin, 320, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch3x3_1", cin, 384, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch3x3_2a", 384, 384, 1, 3, 1, 0, 1);
    layer(net, k, b, "branch3x3_2b", 384, 384, 3, 1, 1, 1, 0);
    layer(net, k, b, "branch3x3dbl_1", cin, 448, 1, 1, 1, 0, 0);
    layer(net, k, b, "branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1);
    layer(net, k, b, "branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1);
    layer(net, k, b, "branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0);
    layer(net, k, b, "branch_pool", cin, 192, 1, 1, 1, 0, 0);
}

void kb_incep_layers(kb_inception *net) {
    int k = 0;
    layer(net, &k, "", "Conv2d_1a_3x3", 3, 32, 3, 3, 2, 0, 0);
    layer(net, &k, "", "Conv2d_2a_3x3", 32, 32, 3, 3, 1, 0, 0);
    layer(net, &k, "", "Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1);
    layer(net, &k, "", "Conv2d_3b_1x1", 64, 80, 1, 1, 1, 0, 0);
    layer(net, &k, "", "Conv2d_4a_3x3", 80, 192, 3, 3, 1, 0, 0);
    layers_a(net, &k, "Mixed_5b", 192, 32);
    layers_a(net, &k, "Mixed_5c", 256, 64);
    layers_a(net, &k, "Mixed_5d", 288, 64);
    layer(net, &k, "Mixed_6a", "branch3x3", 288, 384, 3, 3, 2, 0, 0);
    layer(net, &k, "Mixed_6a", "branch3x3dbl_1", 288, 64, 1, 1, 1, 0, 0);
    layer(net, &k, "Mixed_6a", "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    layer(net, &k, "Mixed_6a", "branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0);
    layers_c(net, &k, "Mixed_6b", 128);
    layers_c(net, &k, "Mixed_6c", 160);
    layers_c(net, &k, "Mixed_6d", 160);
    layers_c(net, &k, "Mixed_6e", 192);
    layer(net, &k, "Mixed_7a", "branch3x3_1", 768, 192, 1, 1, 1, 0, 0);
    layer(net, &k, "Mixed_7a", "branch3x3_2", 192, 320, 3, 3, 2, 0, 0);
    layer(net, &k, "Mixed_7a", "branch7x7x3_1", 768, 192, 1, 1, 1, 0, 0);
    layer(net, &k, "Mixed_7a", "branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
    layer(net, &k, "Mixed_7a", "branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
    layer(net, &k, "Mixed_7a", "branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0);
    layers_e(net, &k, "Mixed_7b", 1280);
    layers_e(net, &k, "Mixed_7c", 2048);
}

/* ------------------------------------------------------------------ weights */

static int read_vec(const kb_tp_file *f, const char *prefix, const char *what, int n, double *out, kb_err *err) {
    char name[96];
    float tmp[512];
    snprintf(name, sizeof name, "%s.bn.%s", prefix, what);
    int64_t shape[1] = {n};
    if (n > 512 || kb_tp_read_f32(f, name, 1, shape, tmp, (size_t)n, err)) return -1;
    for (int i = 0; i < n; i++) out[i] = tmp[i];
    return 0;
}

/* conv.weight [cout, cin, kh, kw] and bn.* -> OHWI weights and a bias:
 * s = gamma / sqrt(var + eps), w' = w * s, b' = beta - mean * s (double). */
static int fold_layer(const kb_tp_file *f, const kb_incep_conv *c, float *w, float *b, kb_err *err) {
    char name[96];
    double g[512], beta[512], mean[512], var[512];
    int64_t per = (int64_t)c->cin * c->kh * c->kw, shape[4] = {c->cout, c->cin, c->kh, c->kw};
    float *raw = malloc(sizeof(float) * (size_t)(c->cout * per));
    if (!raw) return kb_fail(err, "out of memory for %s", c->name);
    snprintf(name, sizeof name, "%s.conv.weight", c->name);
    int rc = kb_tp_read_f32(f, name, 4, shape, raw, (size_t)(c->cout * per), err);
    if (!rc) rc = read_vec(f, c->name, "weight", c->cout, g, err) || read_vec(f, c->name, "bias", c->cout, beta, err) ||
                  read_vec(f, c->name, "running_mean", c->cout, mean, err) ||
                  read_vec(f, c->name, "running_var", c->cout, var, err);
    for (int o = 0; !rc && o < c->cout; o++) {
        double s = g[o] / sqrt(var[o] + KB_INCEPTION_BN_EPS);
        b[o] = (float)(beta[o] - mean[o] * s);
        for (int ci = 0; ci < c->cin; ci++)
            for (int i = 0; i < c->kh; i++)
                for (int j = 0; j < c->kw; j++)
                    w[((int64_t)(o * c->kh + i) * c->kw + j) * c->cin + ci] =
                        (float)(raw[((int64_t)(o * c->cin + ci) * c->kh + i) * c->kw + j] * s);
    }
    free(raw);
    return rc ? -1 : 0;
}

static float *upload(kb_ctx *ctx, const float *host, size_t n, kb_err *err) {
    float *d = kb_dev_alloc(ctx, n * sizeof(float), err);
    if (d && kb_copy_to_dev(ctx, d, host, n * sizeof(float), err)) {
        kb_dev_free(ctx, d);
        return NULL;
    }
    return d;
}

int kb_incep_load_weights(kb_inception *net, const kb_tp_file *f, kb_err *err) {
    for (int k = 0; k < KB_INCEPTION_NCONV; k++) {
        kb_incep_conv *c = &net->conv[k];
        size_t nw = (size_t)c->cout * c->cin * c->kh * c->kw;
        float *w = malloc(nw * sizeof(float)), *b = malloc((size_t)c->cout * sizeof(float));
        int rc = !w || !b ? kb_fail(err, "out of memory for %s", c->name) : fold_layer(f, c, w, b, err);
        if (!rc && (!(c->w = upload(net->ctx, w, nw, err)) || !(c->b = upload(net->ctx, b, (size_t)c->cout, err)))) rc = -1;
        free(w);
        free(b);
        if (rc) return -1;
    }
    size_t nfc = (size_t)KB_INCEPTION_LOGITS_DIM * KB_INCEPTION_POOL_DIM;
    int64_t shape[2] = {KB_INCEPTION_LOGITS_DIM, KB_INCEPTION_POOL_DIM};
    float *fc = malloc(nfc * sizeof(float));
    if (!fc) return kb_fail(err, "out of memory for fc.weight");
    int rc = kb_tp_read_f32(f, "fc.weight", 2, shape, fc, nfc, err);
    if (!rc && !(net->fc_w = upload(net->ctx, fc, nfc, err))) rc = -1;
    free(fc);
    return rc;
}

/* ------------------------------------------------------------------ forward */

/* An NHWC activation, possibly a channel slice of a wider one (pixel stride ld). */
typedef struct {
    float *p;
    int64_t n, h, w, c, ld;
} act;

static act slice(act a, int64_t c0, int64_t c) {
    act s = a;
    s.p = a.p + c0;
    s.c = c;
    return s;
}

static int new_act(kb_incep_worker *wk, int64_t n, int64_t h, int64_t w, int64_t c, act *out, kb_err *err) {
    float *p = kb_arena_alloc(&wk->arena, (size_t)(n * h * w * c) * sizeof(float), err);
    if (!p) return -1;
    *out = (act){p, n, h, w, c, c};
    return 0;
}

/* Runs layer k on x into y (y's shape must be the layer's output). */
static int conv(kb_incep_worker *wk, int k, act x, act y, kb_err *err) {
    const kb_incep_conv *c = &wk->net->conv[k];
    kb_conv2d_desc d = {.n = x.n, .h = x.h, .w = x.w, .c = x.c, .ldi = x.ld, .k = c->cout, .kh = c->kh, .kw = c->kw,
                        .sh = c->sh, .sw = c->sw, .ph = c->ph, .pw = c->pw, .ldo = y.ld, .relu = 1};
    if (x.c != c->cin || y.c != c->cout || kb_conv2d_out_h(&d) != y.h || kb_conv2d_out_w(&d) != y.w)
        return kb_fail(err, "inception: layer %s: %lldx%lldx%lld -> %lldx%lldx%lld does not fit %dx%d conv %d->%d",
                       c->name, (long long)x.h, (long long)x.w, (long long)x.c, (long long)y.h, (long long)y.w,
                       (long long)y.c, c->kh, c->kw, c->cin, c->cout);
    if (kb_conv2d_fwd(&wk->ctx, wk->eng, &d, y.p, x.p, c->w, c->b, err)) return kb_fail_wrap(err, "inception layer %s", c->name);
    return 0;
}

/* Layer k into a new arena tensor. */
static int conv_new(kb_incep_worker *wk, int k, act x, act *y, kb_err *err) {
    const kb_incep_conv *c = &wk->net->conv[k];
    int64_t oh = (x.h + 2 * c->ph - c->kh) / c->sh + 1, ow = (x.w + 2 * c->pw - c->kw) / c->sw + 1;
    return new_act(wk, x.n, oh, ow, c->cout, y, err) || conv(wk, k, x, *y, err);
}

enum { POOL_MAX, POOL_AVG };

static int pool(kb_incep_worker *wk, int kind, int k, int s, int p, act x, act y, kb_err *err) {
    kb_pool2d_desc d = {.n = x.n, .h = x.h, .w = x.w, .c = x.c, .ldi = x.ld, .ldo = y.ld, .k = k, .s = s, .p = p};
    return kind == POOL_MAX ? kb_maxpool2d_fwd(&wk->ctx, &d, y.p, x.p, err) : kb_avgpool2d_fwd(&wk->ctx, &d, y.p, x.p, err);
}

/* Mixed_5b/5c/5d (FIDInceptionA): layers k..k+6, out = [64, 64, 96, pool_features]. */
static int block_a(kb_incep_worker *wk, int k, act x, act out, kb_err *err) {
    act t1, t2, t3, tp;
    return conv(wk, k, x, slice(out, 0, 64), err) || conv_new(wk, k + 1, x, &t1, err) ||
           conv(wk, k + 2, t1, slice(out, 64, 64), err) || conv_new(wk, k + 3, x, &t2, err) ||
           conv_new(wk, k + 4, t2, &t3, err) || conv(wk, k + 5, t3, slice(out, 128, 96), err) ||
           new_act(wk, x.n, x.h, x.w, x.c, &tp, err) || pool(wk, POOL_AVG, 3, 1, 1, x, tp, err) ||
           conv(wk, k + 6, tp, slice(out, 224, wk->net->conv[k + 6].cout), err);
}

/* Mixed_6a (InceptionB): out = [384, 96, 288 (max pool)]. */
static int block_b(kb_incep_worker *wk, int k, act x, act out, kb_err *err) {
    act t1, t2;
    return conv(wk, k, x, slice(out, 0, 384), err) || conv_new(wk, k + 1, x, &t1, err) ||
           conv_new(wk, k + 2, t1, &t2, err) || conv(wk, k + 3, t2, slice(out, 384, 96), err) ||
           pool(wk, POOL_MAX, 3, 2, 0, x, slice(out, 480, x.c), err);
}

/* Mixed_6b-6e (FIDInceptionC): out = [192, 192, 192, 192]. */
static int block_c(kb_incep_worker *wk, int k, act x, act out, kb_err *err) {
    act a, b, c, d, e, f, tp;
    return conv(wk, k, x, slice(out, 0, 192), err) || conv_new(wk, k + 1, x, &a, err) ||
           conv_new(wk, k + 2, a, &b, err) || conv(wk, k + 3, b, slice(out, 192, 192), err) ||
           conv_new(wk, k + 4, x, &c, err) || conv_new(wk, k + 5, c, &d, err) || conv_new(wk, k + 6, d, &e, err) ||
           conv_new(wk, k + 7, e, &f, err) || conv(wk, k + 8, f, slice(out, 384, 192), err) ||
           new_act(wk, x.n, x.h, x.w, x.c, &tp, err) || pool(wk, POOL_AVG, 3, 1, 1, x, tp, err) ||
           conv(wk, k + 9, tp, slice(out, 576, 192), err);
}

/* Mixed_7a (InceptionD): out = [320, 192, 768 (max pool)]. */
static int block_d(kb_incep_worker *wk, int k, act x, act out, kb_err *err) {
    act a, b, c, d;
    return conv_new(wk, k, x, &a, err) || conv(wk, k + 1, a, slice(out, 0, 320), err) ||
           conv_new(wk, k + 2, x, &b, err) || conv_new(wk, k + 3, b, &c, err) || conv_new(wk, k + 4, c, &d, err) ||
           conv(wk, k + 5, d, slice(out, 320, 192), err) || pool(wk, POOL_MAX, 3, 2, 0, x, slice(out, 512, x.c), err);
}

/* Mixed_7b (FIDInceptionE_1, average pool) and 7c (E_2, max pool):
 * out = [320, 384, 384, 384, 384, 192]. */
static int block_e(kb_incep_worker *wk, int k, int pool_kind, act x, act out, kb_err *err) {
    act a, b, c, tp;
    return conv(wk, k, x, slice(out, 0, 320), err) || conv_new(wk, k + 1, x, &a, err) ||
           conv(wk, k + 2, a, slice(out, 320, 384), err) || conv(wk, k + 3, a, slice(out, 704, 384), err) ||
           conv_new(wk, k + 4, x, &b, err) || conv_new(wk, k + 5, b, &c, err) ||
           conv(wk, k + 6, c, slice(out, 1088, 384), err) || conv(wk, k + 7, c, slice(out, 1472, 384), err) ||
           new_act(wk, x.n, x.h, x.w, x.c, &tp, err) || pool(wk, pool_kind, 3, 1, 1, x, tp, err) ||
           conv(wk, k + 8, tp, slice(out, 1856, 192), err);
}

/* Ping-pong: the next activation [n, h, w, c] in the buffer x is not in. */
static act next_act(float *bufs[2], act x, int64_t h, int64_t w, int64_t c) {
    float *p = x.p == bufs[0] ? bufs[1] : bufs[0];
    return (act){p, x.n, h, w, c, c};
}

/* Conv2d_1a .. maxpool2: [n, 299, 299, 3] -> [n, 35, 35, 192]. */
static int stem(kb_incep_worker *wk, float *bufs[2], act *x, kb_err *err) {
    static const int64_t hw[5] = {149, 147, 147, 73, 71};
    act y = *x;
    for (int k = 0; k < 5; k++) {
        if (k == 3) { /* maxpool1 3x3 s2 */
            act p = next_act(bufs, y, 73, 73, 64);
            if (pool(wk, POOL_MAX, 3, 2, 0, y, p, err)) return -1;
            y = p;
        }
        act o = next_act(bufs, y, hw[k], hw[k], wk->net->conv[k].cout);
        if (conv(wk, k, y, o, err)) return -1;
        y = o;
    }
    act p = next_act(bufs, y, 35, 35, 192); /* maxpool2 3x3 s2 */
    if (pool(wk, POOL_MAX, 3, 2, 0, y, p, err)) return -1;
    *x = p;
    return 0;
}

typedef int (*block_fn)(kb_incep_worker *, int, act, act, kb_err *);

/* One Inception block from x into the other ping-pong buffer; temporaries are released after. */
static int run_block(kb_incep_worker *wk, float *bufs[2], act *x, block_fn fn, int k, int64_t hw, int64_t c, kb_err *err) {
    act y = next_act(bufs, *x, hw, hw, c);
    size_t mark = kb_arena_mark(&wk->arena);
    int rc = fn(wk, k, *x, y, err);
    kb_arena_reset(&wk->arena, mark);
    *x = y;
    return rc;
}

static int block_e1(kb_incep_worker *wk, int k, act x, act out, kb_err *err) { return block_e(wk, k, POOL_AVG, x, out, err); }
static int block_e2(kb_incep_worker *wk, int k, act x, act out, kb_err *err) { return block_e(wk, k, POOL_MAX, x, out, err); }

/* Max activation per image: Conv2d_2b's output, 147*147*64 floats. */
#define KB_INCEP_MAX_ACT ((size_t)147 * 147 * 64)
/* Branch temporaries per image: Mixed_5d's 48+64+96 channels and a 288-channel pool at 35x35. */
#define KB_INCEP_MAX_TMP ((size_t)35 * 35 * (48 + 64 + 96 + 288))

size_t kb_incep_arena_bytes(int batch) {
    size_t per = 2 * KB_INCEP_MAX_ACT + (size_t)KB_INCEPTION_SIZE * KB_INCEPTION_SIZE * 3 + KB_INCEP_MAX_TMP +
                 KB_INCEPTION_SPATIAL_DIM + KB_INCEPTION_POOL_DIM + KB_INCEPTION_LOGITS_DIM;
    return (size_t)batch * per * sizeof(float) + 16 * 256; /* + alignment of each allocation */
}

/* The sFID features: channels [0, 7) of Mixed_6d's output (its branch1x1
 * after BN+ReLU, TF's mixed_6/conv) packed as [n, 17, 17, 7], which is the
 * H, W, C order of the 2023 values, gathered on the device by a 1x1 max
 * pool (a strided copy) so only those bytes reach the host. */
static int spatial_features(kb_incep_worker *wk, act x, int n, float *spatial, kb_err *err) {
    float *s = kb_arena_alloc(&wk->arena, (size_t)n * KB_INCEPTION_SPATIAL_DIM * sizeof(float), err);
    kb_pool2d_desc d = {.n = n, .h = 17, .w = 17, .c = 7, .ldi = x.ld, .ldo = 7, .k = 1, .s = 1, .p = 0};
    return !s || kb_maxpool2d_fwd(&wk->ctx, &d, s, x.p, err) ||
           kb_copy_to_host(&wk->ctx, spatial, s, (size_t)n * KB_INCEPTION_SPATIAL_DIM * sizeof(float), err);
}

/* Everything up to Mixed_7c, taking the spatial features (when wanted) on the way. */
static int trunk(kb_incep_worker *wk, float *bufs[2], act *x, int n, float *spatial, kb_err *err) {
    if (stem(wk, bufs, x, err) || run_block(wk, bufs, x, block_a, 5, 35, 256, err) ||
        run_block(wk, bufs, x, block_a, 12, 35, 288, err) || run_block(wk, bufs, x, block_a, 19, 35, 288, err) ||
        run_block(wk, bufs, x, block_b, 26, 17, 768, err) || run_block(wk, bufs, x, block_c, 30, 17, 768, err) ||
        run_block(wk, bufs, x, block_c, 40, 17, 768, err) || run_block(wk, bufs, x, block_c, 50, 17, 768, err))
        return -1;
    if (spatial && spatial_features(wk, *x, n, spatial, err)) return -1;
    return run_block(wk, bufs, x, block_c, 60, 17, 768, err) || run_block(wk, bufs, x, block_d, 70, 8, 1280, err) ||
           run_block(wk, bufs, x, block_e1, 76, 8, 2048, err) || run_block(wk, bufs, x, block_e2, 85, 8, 2048, err);
}

/* pool3 = mean over the 8x8 pixels; logits = pool3 . fc^T (no bias). */
static int head(kb_incep_worker *wk, act x, int n, float *pool3, float *logits, kb_err *err) {
    float *p = kb_arena_alloc(&wk->arena, (size_t)n * KB_INCEPTION_POOL_DIM * sizeof(float), err);
    float *l = kb_arena_alloc(&wk->arena, (size_t)n * KB_INCEPTION_LOGITS_DIM * sizeof(float), err);
    if (!p || !l || kb_global_avgpool_fwd(&wk->ctx, p, x.p, n, 64, 2048, x.ld, err)) return -1;
    if (pool3 && kb_copy_to_host(&wk->ctx, pool3, p, (size_t)n * KB_INCEPTION_POOL_DIM * sizeof(float), err)) return -1;
    if (!logits) return 0;
    if (kb_gemm(&wk->ctx, false, true, n, KB_INCEPTION_LOGITS_DIM, KB_INCEPTION_POOL_DIM, 1.0f, p, KB_INCEPTION_POOL_DIM,
                wk->net->fc_w, KB_INCEPTION_POOL_DIM, 0.0f, l, KB_INCEPTION_LOGITS_DIM, err))
        return -1;
    return kb_copy_to_host(&wk->ctx, logits, l, (size_t)n * KB_INCEPTION_LOGITS_DIM * sizeof(float), err);
}

/* Starts a pass of n <= wk->batch images: the two activation buffers, and
 * the network input [n, 299, 299, 3] on the worker's device (returned). */
static float *pass_begin(kb_incep_worker *wk, int n, float *bufs[2], kb_err *err) {
    kb_arena_reset(&wk->arena, 0);
    size_t act_bytes = (size_t)wk->batch * KB_INCEP_MAX_ACT * sizeof(float);
    size_t in_bytes = (size_t)n * KB_INCEPTION_SIZE * KB_INCEPTION_SIZE * 3 * sizeof(float);
    bufs[0] = kb_arena_alloc(&wk->arena, act_bytes, err), bufs[1] = kb_arena_alloc(&wk->arena, act_bytes, err);
    float *in = kb_arena_alloc(&wk->arena, in_bytes, err);
    return bufs[0] && bufs[1] ? in : NULL;
}

/* The network on the input pass_begin returned, outputs to the host. */
static int pass_run(kb_incep_worker *wk, float *bufs[2], float *in, int n, float *pool3, float *spatial,
                    float *logits, kb_err *err) {
    act x = {in, n, KB_INCEPTION_SIZE, KB_INCEPTION_SIZE, 3, 3};
    return trunk(wk, bufs, &x, n, spatial, err) || head(wk, x, n, pool3, logits, err) ? -1 : 0;
}

/* One pass of n <= wk->batch pre-processed images (host) through one worker. */
static int worker_forward(kb_incep_worker *wk, const float *host_in, int n, float *pool3, float *spatial,
                          float *logits, kb_err *err) {
    float *bufs[2], *in = pass_begin(wk, n, bufs, err);
    size_t in_bytes = (size_t)n * KB_INCEPTION_SIZE * KB_INCEPTION_SIZE * 3 * sizeof(float);
    if (!in || kb_copy_to_dev(&wk->ctx, in, host_in, in_bytes, err)) return -1;
    return pass_run(wk, bufs, in, n, pool3, spatial, logits, err);
}

/* The worker's device buffers for on-device pre-processing: room for `bytes`
 * of uint8 images (grown on demand) and the taps of this image size and mode
 * (the same for every pass of one call, so uploaded once per call). */
static int device_images_ready(kb_incep_worker *wk, size_t bytes, int H, int W, kb_preproc_mode mode, kb_err *err) {
    if (bytes > wk->dev_images_bytes) {
        kb_dev_free(&wk->ctx, wk->dev_images);
        wk->dev_images_bytes = 0;
        if (!(wk->dev_images = kb_dev_alloc(&wk->ctx, bytes, err))) return -1;
        wk->dev_images_bytes = bytes;
    }
    if (!wk->dev_taps && !(wk->dev_taps = kb_dev_alloc(&wk->ctx, 2 * KB_INCEPTION_SIZE * sizeof(kb_lerp_tap), err)))
        return -1;
    kb_lerp_tap taps[2 * KB_INCEPTION_SIZE];
    if (kb_inception_taps(mode, W, taps) || kb_inception_taps(mode, H, taps + KB_INCEPTION_SIZE))
        return kb_fail(err, "inception: mode %s cannot be pre-processed on the device", kb_preproc_name(mode));
    return kb_copy_to_dev(&wk->ctx, wk->dev_taps, taps, sizeof taps, err);
}

int kb_incep_forward_images(kb_inception *net, const uint8_t *images, int64_t n, int H, int W, int C,
                            kb_preproc_mode mode, float *pool3, float *spatial, float *logits, kb_err *err) {
    kb_incep_worker *wk = &net->workers[0];
    if (net->nworkers != 1 || wk->ctx.device != KB_DEV_CUDA)
        return kb_fail(err, "inception: on-device pre-processing needs the CUDA network");
    if (n <= 0) return 0;
    size_t img = (size_t)H * W * C;
    if (device_images_ready(wk, img * (size_t)(n < wk->batch ? n : wk->batch), H, W, mode, err)) return -1;
    for (int64_t i = 0; i < n; i += wk->batch) {
        int nb = (int)(n - i < wk->batch ? n - i : wk->batch);
        float *bufs[2], *in = pass_begin(wk, nb, bufs, err);
        if (!in || kb_copy_to_dev(&wk->ctx, wk->dev_images, images + i * img, img * (size_t)nb, err) ||
            kb_inception_preprocess_cuda(&wk->ctx, wk->dev_images, nb, H, W, C, mode, wk->dev_taps, in, err) ||
            pass_run(wk, bufs, in, nb, kb_incep_rows(pool3, i, KB_INCEPTION_POOL_DIM),
                     kb_incep_rows(spatial, i, KB_INCEPTION_SPATIAL_DIM),
                     kb_incep_rows(logits, i, KB_INCEPTION_LOGITS_DIM), err))
            return -1;
    }
    return 0;
}

/* Worker t's images [lo, hi) of n, in passes of at most its batch. */
static int worker_range(kb_incep_worker *wk, const float *host_in, int lo, int hi, float *pool3, float *spatial,
                        float *logits, kb_err *err) {
    const int64_t per = (int64_t)KB_INCEPTION_SIZE * KB_INCEPTION_SIZE * 3;
    for (int i = lo; i < hi; i += wk->batch) {
        int nb = hi - i < wk->batch ? hi - i : wk->batch;
        if (worker_forward(wk, host_in + i * per, nb, kb_incep_rows(pool3, i, KB_INCEPTION_POOL_DIM),
                           kb_incep_rows(spatial, i, KB_INCEPTION_SPATIAL_DIM),
                           kb_incep_rows(logits, i, KB_INCEPTION_LOGITS_DIM), err))
            return -1;
    }
    return 0;
}

int kb_incep_forward(kb_inception *net, const float *host_in, int n, float *pool3, float *spatial, float *logits,
                     kb_err *err) {
    if (n < 1 || n > net->batch) return kb_fail(err, "inception: forward of %d images (batch %d)", n, net->batch);
    int nw = net->nworkers < n ? net->nworkers : n, bad = 0;
    if (nw == 1) return worker_range(&net->workers[0], host_in, 0, n, pool3, spatial, logits, err);
    /* CPU: images are split between workers, each a single-threaded network:
     * no synchronisation inside the forward pass (robust on a busy machine). */
#pragma omp parallel for num_threads(nw) schedule(static, 1) reduction(|| : bad)
    for (int t = 0; t < nw; t++) {
        kb_incep_worker *wk = &net->workers[t];
        wk->failed = worker_range(wk, host_in, (int)((int64_t)n * t / nw), (int)((int64_t)n * (t + 1) / nw), pool3,
                                  spatial, logits, &wk->err) != 0;
        bad = bad || wk->failed;
    }
    for (int t = 0; bad && t < nw; t++)
        if (net->workers[t].failed) {
            if (err) *err = net->workers[t].err;
            return -1;
        }
    return 0;
}
