/* Dispatchers of the convolution and pooling ops (nn/ops_conv.h): validate
 * the descriptors once, then run the fast CPU path or the CUDA path. */
#include <stdlib.h>
#include <string.h>

#include "nn/ops_conv.h"
#include "nn/profile.h"

#define KB_CONV_DEFAULT_WS ((size_t)64 << 20)

static int bad(kb_err *err, const char *op, const char *what, long long v) {
    return kb_fail(err, "%s: invalid %s = %lld", op, what, v);
}

int kb_conv2d_check(const kb_conv2d_desc *d, kb_err *err) {
    const char *op = "kb_conv2d";
    if (d->n < 0) return bad(err, op, "batch n", (long long)d->n);
    if (d->h < 1 || d->w < 1 || d->c < 1 || d->k < 1)
        return kb_fail(err, "%s: need h, w, c, k >= 1, got h=%lld w=%lld c=%lld k=%lld", op, (long long)d->h,
                       (long long)d->w, (long long)d->c, (long long)d->k);
    if (d->ldi < d->c) return kb_fail(err, "%s: input pixel stride ldi=%lld < c=%lld", op, (long long)d->ldi, (long long)d->c);
    if (d->ldo < d->k) return kb_fail(err, "%s: output pixel stride ldo=%lld < k=%lld", op, (long long)d->ldo, (long long)d->k);
    if (d->kh < 1 || d->kw < 1 || d->sh < 1 || d->sw < 1 || d->ph < 0 || d->pw < 0)
        return kb_fail(err, "%s: bad kernel %dx%d, stride %dx%d or padding %dx%d", op, d->kh, d->kw, d->sh, d->sw,
                       d->ph, d->pw);
    if (d->h + 2 * (int64_t)d->ph < d->kh || d->w + 2 * (int64_t)d->pw < d->kw)
        return kb_fail(err, "%s: kernel %dx%d larger than the padded input %lldx%lld", op, d->kh, d->kw,
                       (long long)(d->h + 2 * d->ph), (long long)(d->w + 2 * d->pw));
    if (d->kh * (int64_t)d->kw * d->c > ((int64_t)1 << 31) - 1) return bad(err, op, "kh*kw*c", (long long)d->kh * d->kw * d->c);
    return 0;
}

int kb_pool2d_check(const kb_pool2d_desc *d, kb_err *err) {
    const char *op = "kb_pool2d";
    if (d->n < 0) return bad(err, op, "batch n", (long long)d->n);
    if (d->h < 1 || d->w < 1 || d->c < 1)
        return kb_fail(err, "%s: need h, w, c >= 1, got h=%lld w=%lld c=%lld", op, (long long)d->h, (long long)d->w,
                       (long long)d->c);
    if (d->ldi < d->c || d->ldo < d->c)
        return kb_fail(err, "%s: pixel strides ldi=%lld ldo=%lld must be >= c=%lld", op, (long long)d->ldi,
                       (long long)d->ldo, (long long)d->c);
    /* p <= k/2: every window overlaps the image (PyTorch's own rule). */
    if (d->k < 1 || d->s < 1 || d->p < 0 || 2 * d->p > d->k)
        return kb_fail(err, "%s: bad window k=%d stride s=%d padding p=%d (need p <= k/2)", op, d->k, d->s, d->p);
    if (d->h + 2 * (int64_t)d->p < d->k || d->w + 2 * (int64_t)d->p < d->k)
        return kb_fail(err, "%s: window %d larger than the padded input %lldx%lld", op, d->k,
                       (long long)(d->h + 2 * d->p), (long long)(d->w + 2 * d->p));
    return 0;
}

static int check_ctx(const char *op, const kb_ctx *ctx, kb_err *err) {
    if (!ctx || (ctx->device != KB_DEV_CPU && ctx->device != KB_DEV_CUDA))
        return kb_fail(err, "%s: no valid context", op);
    return 0;
}

kb_conv_engine *kb_conv_engine_create(kb_ctx *ctx, size_t max_ws_bytes, kb_err *err) {
    if (check_ctx("kb_conv_engine_create", ctx, err)) return NULL;
    kb_conv_engine *e = calloc(1, sizeof *e);
    if (!e) {
        kb_fail(err, "kb_conv_engine_create: out of memory");
        return NULL;
    }
    e->device = ctx->device;
    e->ws_cap = (max_ws_bytes ? max_ws_bytes : KB_CONV_DEFAULT_WS) / sizeof(float);
    if (ctx->device == KB_DEV_CUDA && kb_conv_engine_init_cuda(ctx, e, err)) {
        kb_conv_engine_free_cuda(e);
        free(e);
        return NULL;
    }
    return e;
}

void kb_conv_engine_free(kb_conv_engine *e) {
    if (!e) return;
    if (e->device == KB_DEV_CUDA) kb_conv_engine_free_cuda(e);
    free(e->ws);
    free(e);
}

/* Grows the CPU workspace to what the call can use (kb_conv2d_ws_floats),
 * within the cap but never less than one output row. */
static int cpu_workspace(kb_conv_engine *e, const kb_conv2d_desc *d, kb_err *err) {
    size_t row = kb_conv2d_min_ws_floats(d), want = kb_conv2d_ws_floats(d);
    if (want > e->ws_cap) want = e->ws_cap;
    if (want < row) want = row;
    if (want <= e->ws_floats) return 0;
    free(e->ws);
    e->ws_floats = 0;
    e->ws = aligned_alloc(64, (want * sizeof(float) + 63) / 64 * 64);
    if (!e->ws) return kb_fail(err, "kb_conv2d: out of memory for a %zu-byte im2col workspace", want * sizeof(float));
    e->ws_floats = want;
    return 0;
}

int kb_conv2d_fwd(kb_ctx *ctx, kb_conv_engine *e, const kb_conv2d_desc *d, float *out, const float *in,
                  const float *w, const float *bias, kb_err *err) {
    const char *op = "kb_conv2d";
    if (check_ctx(op, ctx, err) || kb_conv2d_check(d, err)) return -1;
    if (!e || e->device != ctx->device) return kb_fail(err, "%s: engine missing or made for another device", op);
    if (d->n == 0) return 0;
    if (!out || !in || !w) return kb_fail(err, "%s: NULL output, input or weight", op);
    kb_prof_mark pm = kb_prof_begin(ctx, __func__);
    if (ctx->device == KB_DEV_CUDA) return kb_prof_end(ctx, pm, kb_conv2d_cuda(ctx, e, d, out, in, w, bias, err));
    int pointwise = d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
    if (!pointwise && cpu_workspace(e, d, err)) return kb_prof_end(ctx, pm, -1);
    kb_conv2d_cpu(ctx->threads, d, out, in, w, bias, e->ws, e->ws_floats);
    return kb_prof_end(ctx, pm, 0);
}

int kb_maxpool2d_fwd(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err) {
    if (check_ctx("kb_maxpool2d", ctx, err) || kb_pool2d_check(d, err)) return -1;
    if (d->n == 0) return 0;
    KB_PROF_DISPATCH(ctx, kb_maxpool2d_cuda(ctx, d, out, in, err), kb_maxpool2d_cpu(ctx->threads, d, out, in));
}

int kb_avgpool2d_fwd(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err) {
    if (check_ctx("kb_avgpool2d", ctx, err) || kb_pool2d_check(d, err)) return -1;
    if (d->n == 0) return 0;
    KB_PROF_DISPATCH(ctx, kb_avgpool2d_cuda(ctx, d, out, in, err), kb_avgpool2d_cpu(ctx->threads, d, out, in));
}

int kb_global_avgpool_fwd(kb_ctx *ctx, float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi,
                          kb_err *err) {
    const char *op = "kb_global_avgpool";
    if (check_ctx(op, ctx, err)) return -1;
    if (n < 0 || hw < 1 || c < 1 || ldi < c)
        return kb_fail(err, "%s: bad sizes n=%lld hw=%lld c=%lld ldi=%lld", op, (long long)n, (long long)hw,
                       (long long)c, (long long)ldi);
    if (n == 0) return 0;
    KB_PROF_DISPATCH(ctx, kb_global_avgpool_cuda(ctx, out, in, n, hw, c, ldi, err), kb_global_avgpool_cpu(ctx->threads, out, in, n, hw, c, ldi));
}
