#include "nn/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "nn/cuda_backend.h"
#include "nn/profile.h"
#include "util/exact_int.h"

/* $KINDBENCH_THREADS when it is a count in [1, KB_CTX_MAX_THREADS], else the online CPUs. */
static int default_threads(void) {
    const char *env = getenv("KINDBENCH_THREADS");
    long long t;
    if (env && kb_text_is_int_in(env, 1, KB_CTX_MAX_THREADS, &t)) return (int)t;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int kb_ctx_init(kb_ctx *ctx, kb_device dev, const kb_ctx_opts *opts, kb_err *err) {
    memset(ctx, 0, sizeof *ctx);
    ctx->device = dev;
    ctx->threads = (opts && opts->threads > 0) ? opts->threads : default_threads();
    ctx->cuda_device = opts ? opts->cuda_device : 0;
    /* A fixed thread count makes OpenBLAS's partitioning, and so its sums, repeatable. */
    openblas_set_num_threads(ctx->threads);
    ctx->matmul = opts ? opts->matmul : KB_MATMUL_FP32;
    ctx->attention = opts ? opts->attention : KB_ATTN_AUTO;
    const char *fa = getenv("KINDBENCH_FUSED_ATTENTION");
    if (ctx->attention == KB_ATTN_AUTO && fa && !strcmp(fa, "0")) ctx->attention = KB_ATTN_UNFUSED;
    ctx->activations = opts ? opts->activations : KB_ACTS_AUTO;
    if (ctx->activations == KB_ACTS_AUTO) {
        const char *ba = getenv("KINDBENCH_BF16_ACTS");
        int on = ba && !strcmp(ba, "1") && dev == KB_DEV_CUDA && ctx->matmul == KB_MATMUL_BF16;
        ctx->activations = on ? KB_ACTS_BF16 : KB_ACTS_F32;
    }
    if (kb_matmul_precision_check(dev, ctx->matmul, err)) return -1;
    if (dev == KB_DEV_CPU) return 0;
    if (!kb_cuda_compiled()) return kb_fail(err, "--device cuda: this kindbench was built without CUDA (nvcc not found at configure time)");
    if (kb_cuda_device_count() <= ctx->cuda_device)
        return kb_fail(err, "--device cuda: no CUDA GPU %d on this machine (%d found)", ctx->cuda_device, kb_cuda_device_count());
    if (kb_cuda_state_create(ctx->cuda_device, &ctx->cuda, err)) return -1;
    if (kb_cuda_set_matmul(ctx->cuda, ctx->matmul, err)) {
        kb_ctx_free(ctx);
        return -1;
    }
    return 0;
}

int kb_act_bf16_wanted(const kb_ctx *ctx, int attn_fused) {
    return ctx && ctx->activations == KB_ACTS_BF16 && attn_fused;
}

const char *kb_matmul_precision_name(kb_matmul_precision p) {
    return p == KB_MATMUL_BF16 ? "bf16" : p == KB_MATMUL_TF32 ? "tf32" : "fp32";
}

int kb_matmul_precision_parse(const char *s, kb_matmul_precision *out, kb_err *err) {
    static const kb_matmul_precision all[] = {KB_MATMUL_FP32, KB_MATMUL_TF32, KB_MATMUL_BF16};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, kb_matmul_precision_name(all[i]))) return *out = all[i], 0;
    return kb_fail(err, "--precision: expected fp32, tf32 or bf16, got '%s'", s ? s : "(none)");
}

int kb_matmul_precision_check(kb_device dev, kb_matmul_precision p, kb_err *err) {
    if (dev == KB_DEV_CUDA || p == KB_MATMUL_FP32) return 0;
    return kb_fail(err, "--precision %s needs --device cuda: the CPU path computes in fp32 only",
                   kb_matmul_precision_name(p));
}

void kb_ctx_free(kb_ctx *ctx) {
    kb_profile_free(ctx);
    if (ctx->cuda) kb_cuda_state_destroy(ctx->cuda);
    ctx->cuda = NULL;
}

int kb_ctx_sync(kb_ctx *ctx, kb_err *err) { return ctx->device == KB_DEV_CUDA ? kb_cuda_sync(ctx->cuda, err) : 0; }

void *kb_dev_alloc(kb_ctx *ctx, size_t bytes, kb_err *err) {
    if (ctx->device == KB_DEV_CUDA) return kb_cuda_malloc(ctx->cuda, bytes, err);
    size_t rounded = (bytes + 255) / 256 * 256;
    void *p = aligned_alloc(256, rounded ? rounded : 256);
    if (!p) kb_fail(err, "out of host memory allocating %zu bytes", bytes);
    return p;
}

void kb_dev_free(kb_ctx *ctx, void *p) {
    if (!p) return;
    if (ctx->device == KB_DEV_CUDA) kb_cuda_free(ctx->cuda, p);
    else free(p);
}

int kb_dev_zero(kb_ctx *ctx, void *p, size_t bytes, kb_err *err) {
    KB_PROF_DISPATCH(ctx, kb_cuda_memset0(ctx->cuda, p, bytes, err), memset(p, 0, bytes));
}

int kb_copy_to_dev(kb_ctx *ctx, void *dst, const void *src, size_t bytes, kb_err *err) {
    if (ctx->device == KB_DEV_CUDA) return kb_cuda_memcpy(ctx->cuda, dst, src, bytes, 0, err);
    memcpy(dst, src, bytes);
    return 0;
}

int kb_copy_to_host(kb_ctx *ctx, void *dst, const void *src, size_t bytes, kb_err *err) {
    if (ctx->device == KB_DEV_CUDA) return kb_cuda_memcpy(ctx->cuda, dst, src, bytes, 1, err);
    memcpy(dst, src, bytes);
    return 0;
}

int kb_copy_dev(kb_ctx *ctx, void *dst, const void *src, size_t bytes, kb_err *err) {
    KB_PROF_DISPATCH(ctx, kb_cuda_memcpy(ctx->cuda, dst, src, bytes, 2, err), memmove(dst, src, bytes));
}

int kb_arena_init(kb_arena *a, kb_ctx *ctx, size_t cap, kb_err *err) {
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
    a->base = kb_dev_alloc(ctx, cap, err);
    if (!a->base) return kb_fail_wrap(err, "arena of %zu bytes on %s", cap, kb_device_name(ctx->device));
    a->cap = cap;
    return 0;
}

void kb_arena_free(kb_arena *a) {
    if (a->base) kb_dev_free(a->ctx, a->base);
    a->base = NULL;
    a->cap = a->used = 0;
}

void *kb_arena_alloc(kb_arena *a, size_t bytes, kb_err *err) {
    size_t start = (a->used + 255) / 256 * 256;
    if (start + bytes > a->cap) {
        kb_fail(err, "arena exhausted: asked for %zu bytes with %zu of %zu in use", bytes, a->used, a->cap);
        return NULL;
    }
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + start;
}

size_t kb_arena_mark(const kb_arena *a) { return a->used; }

void kb_arena_reset(kb_arena *a, size_t mark) { a->used = mark < a->used ? mark : a->used; }

int kb_arena_tensor(kb_arena *a, kb_dtype dt, int ndim, const int64_t *shape, kb_tensor *out, kb_err *err) {
    if (ndim < 0 || ndim > KB_MAX_DIMS) return kb_fail(err, "tensor rank %d outside 0..%d", ndim, KB_MAX_DIMS);
    *out = kb_tensor_view(NULL, dt, a->ctx->device, ndim, shape);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return kb_fail(err, "negative dimension %lld at axis %d", (long long)shape[i], i);
    out->data = kb_arena_alloc(a, kb_nbytes(out), err);
    return out->data ? 0 : -1;
}
