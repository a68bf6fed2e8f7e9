/* Fused attention speed (the kindbench side of bench/bench_attn.sh): the
 * fused bf16 kernels (nn/ops_attn.h) on random qkv of a DiT shape, forward
 * and backward timed separately after two warm-up rounds. Prints the mean
 * times and TFLOP/s counted as FlashAttention counts them (forward
 * 4 B H T^2 hd, backward 2.5 times that), then fwd_ms=<x> and bwd_ms=<y>.
 *
 *   bench_attn [--device cuda|cpu] [--batch 256] [--tokens 256] [--width 768] [--heads 12]
 *              [--reps 20] [--fp32-io]
 * By default q, k, v, out and the gradients are bf16 in memory (the *_x16
 * entry points, as the DiT with KINDBENCH_BF16_ACTS=1 and PyTorch's bf16
 * scaled_dot_product_attention); --fp32-io times the fp32-storage entry
 * points. On the CPU the fused route is the single-threaded reference: for
 * small shapes only (a check that the program runs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/ops_attn.h"
#include "nn/ops_scalar.h"
#include "util/progress.h"

typedef struct {
    const char *device;
    int B, T, d, H, reps, fp32_io;
} options;

static int parse(int argc, char **argv, options *o) {
    *o = (options){"cuda", 256, 256, 768, 12, 20, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--fp32-io")) o->fp32_io = 1;
        else if (v && !strcmp(a, "--device")) o->device = v, i++;
        else if (v && !strcmp(a, "--batch")) o->B = atoi(v), i++;
        else if (v && !strcmp(a, "--tokens")) o->T = atoi(v), i++;
        else if (v && !strcmp(a, "--width")) o->d = atoi(v), i++;
        else if (v && !strcmp(a, "--heads")) o->H = atoi(v), i++;
        else if (v && !strcmp(a, "--reps")) o->reps = atoi(v), i++;
        else return fprintf(stderr, "bench_attn: unknown or incomplete option %s\n", a), -1;
    }
    if (o->B < 1 || o->T < 1 || o->H < 1 || o->d < o->H || o->d % o->H || o->reps < 1)
        return fprintf(stderr, "bench_attn: need positive sizes, heads dividing the width, reps >= 1\n"), -1;
    return 0;
}

/* The device buffers of one problem: fp32 or bf16 storage per --fp32-io. */
typedef struct {
    void *qkv, *out, *dout, *dqkv;
    float *lse, *delta;
    size_t elem;
} buffers;

/* n random values in [-2, 2) (fixed seed) to a new device buffer, as fp32 or bf16. */
static void *random_dev(kb_ctx *ctx, int64_t n, size_t elem, uint64_t seed, kb_err *err) {
    void *h = malloc((size_t)n * elem), *d = NULL;
    if (!h) return kb_fail(err, "bench_attn: out of host memory for %lld values", (long long)n), NULL;
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float v = (float)(s >> 40) / (float)(1 << 24) * 4.0f - 2.0f;
        if (elem == 4) ((float *)h)[i] = v;
        else ((uint16_t *)h)[i] = kb_sc_f32_to_bf16(v);
    }
    if ((d = kb_dev_alloc(ctx, (size_t)n * elem, err)) && kb_copy_to_dev(ctx, d, h, (size_t)n * elem, err))
        kb_dev_free(ctx, d), d = NULL;
    free(h);
    return d;
}

static int run_fwd(kb_ctx *ctx, const options *o, buffers *b, kb_err *err) {
    if (o->fp32_io) return kb_attn_fused_fwd(ctx, b->out, b->lse, b->qkv, o->B, o->T, o->d, o->H, err);
    return kb_attn_fused_fwd_x16(ctx, b->out, b->lse, b->qkv, o->B, o->T, o->d, o->H, err);
}

static int run_bwd(kb_ctx *ctx, const options *o, buffers *b, kb_err *err) {
    if (o->fp32_io)
        return kb_attn_fused_bwd(ctx, b->dqkv, b->delta, b->dout, b->out, b->qkv, b->lse, o->B, o->T, o->d, o->H, err);
    return kb_attn_fused_bwd_x16(ctx, b->dqkv, b->delta, b->dout, b->out, b->qkv, b->lse, o->B, o->T, o->d, o->H, err);
}

/* Mean seconds of reps calls of f after two warm-up calls; -1 on error. */
static double time_mean(int (*f)(kb_ctx *, const options *, buffers *, kb_err *), kb_ctx *ctx, const options *o,
                        buffers *b, kb_err *err) {
    for (int i = 0; i < 2; i++)
        if (f(ctx, o, b, err)) return -1.0;
    if (kb_ctx_sync(ctx, err)) return -1.0;
    double t0 = kb_now();
    for (int i = 0; i < o->reps; i++)
        if (f(ctx, o, b, err)) return -1.0;
    if (kb_ctx_sync(ctx, err)) return -1.0;
    return (kb_now() - t0) / o->reps;
}

int main(int argc, char **argv) {
    options o;
    if (parse(argc, argv, &o)) return 2;
    kb_err err = {0};
    kb_ctx ctx;
    kb_device dev;
    kb_ctx_opts copts = {0};
    if (kb_device_parse(o.device, &dev, &err)) return fprintf(stderr, "bench_attn: %s\n", err.msg), 1;
    copts.matmul = dev == KB_DEV_CUDA ? KB_MATMUL_BF16 : KB_MATMUL_FP32; /* the CPU has no bf16 mode */
    if (kb_ctx_init(&ctx, dev, &copts, &err)) return fprintf(stderr, "bench_attn: %s\n", err.msg), 1;
    if (dev == KB_DEV_CUDA && !kb_attn_fused_cuda_allowed(&ctx, o.d / o.H))
        return fprintf(stderr, "bench_attn: this GPU cannot run the fused kernels for head dimension %d\n", o.d / o.H), 1;
    int64_t n_qkv = (int64_t)o.B * o.T * 3 * o.d, n_out = (int64_t)o.B * o.T * o.d, n_rows = (int64_t)o.B * o.H * o.T;
    buffers b = {0};
    b.elem = o.fp32_io ? 4 : 2;
    b.qkv = random_dev(&ctx, n_qkv, b.elem, 0x9E3779B97F4A7C15ULL, &err);
    b.dout = random_dev(&ctx, n_out, b.elem, 0xD1B54A32D192ED03ULL, &err); /* as the DiT passes it: bf16 with bf16 io */
    b.out = b.qkv && b.dout ? kb_dev_alloc(&ctx, (size_t)n_out * b.elem, &err) : NULL;
    b.dqkv = b.out ? kb_dev_alloc(&ctx, (size_t)n_qkv * b.elem, &err) : NULL;
    b.lse = b.dqkv ? kb_dev_alloc(&ctx, (size_t)n_rows * 4, &err) : NULL;
    b.delta = b.lse ? kb_dev_alloc(&ctx, (size_t)n_rows * 4, &err) : NULL;
    double fwd = b.delta ? time_mean(run_fwd, &ctx, &o, &b, &err) : -1.0;
    double bwd = fwd > 0 ? time_mean(run_bwd, &ctx, &o, &b, &err) : -1.0;
    if (bwd < 0) return fprintf(stderr, "bench_attn: %s\n", err.msg), 1;
    double flop = 4.0 * o.B * o.H * (double)o.T * o.T * (o.d / o.H);
    printf("kindbench fused attention, %s, %s storage: B=%d T=%d d=%d H=%d (hd %d), %d reps\n", o.device,
           o.fp32_io ? "fp32" : "bf16", o.B, o.T, o.d, o.H, o.d / o.H, o.reps);
    printf("  forward %.3f ms (%.1f TFLOP/s), backward %.3f ms (%.1f TFLOP/s)\n", fwd * 1e3, flop / fwd * 1e-12,
           bwd * 1e3, 2.5 * flop / bwd * 1e-12);
    printf("fwd_ms=%.4f\nbwd_ms=%.4f\n", fwd * 1e3, bwd * 1e3);
    void *bufs[] = {b.qkv, b.out, b.dout, b.dqkv, b.lse, b.delta};
    for (int i = 0; i < 6; i++) kb_dev_free(&ctx, bufs[i]);
    kb_ctx_free(&ctx);
    return 0;
}
