/* `kindbench bench train`: times full DiT training steps (q_sample, forward,
 * ADM loss, backward, AdamW + EMA) of a stated config on synthetic data and
 * prints steps/s, images/s and achieved GFLOP/s. bench/bench_train.sh runs it
 * beside the PyTorch reference of the same config and prints the ratio. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/cli.h"
#include "models/diffusion.h"
#include "models/dit.h"
#include "models/optim.h"
#include "models/train_step.h"
#include "nn/profile.h"
#include "nn/rng.h"
#include "util/progress.h"

typedef struct {
    kb_dit_config cfg;
    int batch, steps, warmup, threads, pool;
    int profile; /* --profile: after the timed steps, the same number again with per-op times */
    kb_device device;
    kb_matmul_precision precision;
    double peak_tflops; /* 0: from the GPU's name when known */
} bench_opts;

static void usage(void) {
    printf("Usage: kindbench bench train [OPTIONS]\n\n"
           "Times DiT training steps (forward, ADM loss, backward, AdamW, EMA) on synthetic data.\n\n"
           "  --model NAME      a DiT preset (S/2 ... XL/8), or set the shape below\n"
           "  --depth N --width N --heads N --patch N   (default 4, 128, 4, 4)\n"
           "  --image N         input side (default 32)    --channels N  (default 1)\n"
           "  --classes N       number of classes (default 10)\n"
           "  --batch N         (default 32)   --steps N (default 20)   --warmup N (default 3)\n"
           "  --pool N          synthetic batches drawn before timing and cycled (default 4): the\n"
           "                    timed steps copy a batch to the device, train on it, and nothing else\n"
           "  --device cpu|cuda (default cpu)  --threads N (default: all cores)\n"
           "  --precision fp32|tf32|bf16  arithmetic of the GEMMs on CUDA (default fp32)\n"
           "  --peak-tflops X   the device's peak for that arithmetic, for the MFU line (default:\n"
           "                    the datasheet's dense figure for H100/H200 SXM and A100)\n"
           "  --profile         then run as many steps again, timing every op (CUDA events on a GPU),\n"
           "                    and print where a step's time goes (the timed figures above are\n"
           "                    from the unprofiled steps)\n");
}

static int parse(int argc, char **argv, bench_opts *o, kb_err *err) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"depth", required_argument, 0, 'd'}, {"width", required_argument, 0, 'w'},
        {"heads", required_argument, 0, 'H'}, {"patch", required_argument, 0, 'p'}, {"image", required_argument, 0, 'i'},
        {"channels", required_argument, 0, 'c'}, {"classes", required_argument, 0, 'k'},
        {"batch", required_argument, 0, 'b'}, {"steps", required_argument, 0, 's'}, {"warmup", required_argument, 0, 'W'},
        {"pool", required_argument, 0, 'L'},
        {"device", required_argument, 0, 'D'}, {"threads", required_argument, 0, 't'},
        {"precision", required_argument, 0, 'P'}, {"peak-tflops", required_argument, 0, 'F'},
        {"profile", no_argument, 0, 'R'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    o->cfg = kb_dit_config_default();
    o->cfg.depth = 4, o->cfg.hidden_size = 128, o->cfg.num_heads = 4, o->cfg.patch_size = 4;
    o->cfg.input_size = 32, o->cfg.in_channels = 1, o->cfg.num_classes = 10;
    o->batch = 32, o->steps = 20, o->warmup = 3, o->threads = 0, o->pool = 4, o->device = KB_DEV_CPU;
    o->precision = KB_MATMUL_FP32, o->peak_tflops = 0.0, o->profile = 0;
    int c, li = -1, shape[4] = {0, 0, 0, 0}; /* depth, width, heads, patch as given */
    long long v;
    char bad[3], name[40];
    const char *preset = NULL;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        if (c == 'h') {
            usage();
            return 1;
        }
        if (c == 'R') {
            o->profile = 1;
            continue;
        }
        if (c == 'm') {
            preset = optarg;
            continue;
        }
        if (c == 'D') {
            if (kb_device_parse(optarg, &o->device, err)) return kb_fail_wrap(err, "--device");
            continue;
        }
        if (c == 'P') {
            if (kb_matmul_precision_parse(optarg, &o->precision, err)) return -1;
            continue;
        }
        if (c == 'F') { /* inf and 1e999 (inf after overflow) passed and printed an MFU of 0.0% */
            double tf = 0.0;
            if (kb_cli_parse_double("--peak-tflops", optarg, &tf, err) || !(tf > 0 && isfinite(tf)))
                return kb_fail(err, "--peak-tflops: expected a positive number, got '%s'", optarg);
            o->peak_tflops = tf;
            continue;
        }
        if (c == '?')
            return kb_fail(err, "bench train: unknown option or missing value: '%s'", kb_cli_bad_option(argc, argv, bad));
        snprintf(name, sizeof name, "--%s", opts[li].name); /* every option but --help is a long one */
        /* --threads as train and sample take it: OpenBLAS was handed 100000 threads and crashed */
        if (kb_cli_parse_int(name, optarg, c == 'W' ? 0 : 1, c == 't' ? KB_CTX_MAX_THREADS : 1 << 20, &v, err))
            return -1;
        switch (c) {
        case 'd': shape[0] = (int)v; break;
        case 'w': shape[1] = (int)v; break;
        case 'H': shape[2] = (int)v; break;
        case 'p': shape[3] = (int)v; break;
        case 'i': o->cfg.input_size = (int)v; break;
        case 'c': o->cfg.in_channels = (int)v; break;
        case 'k': o->cfg.num_classes = (int)v; break;
        case 'b': o->batch = (int)v; break;
        case 's': o->steps = (int)v; break;
        case 'W': o->warmup = (int)v; break;
        case 't': o->threads = (int)v; break;
        case 'L': o->pool = (int)v; break;
        }
    }
    if (optind < argc) /* a stray word was ignored, and the run timed something else than asked */
        return kb_fail(err, "bench train: unexpected argument '%s'", argv[optind]);
    /* as `train` does, and bench/torch_train_bench.py: the preset, then the shape options given, in any order */
    if (kb_dit_config_shape(&o->cfg, preset, shape, err)) return -1;
    return kb_dit_config_validate(&o->cfg, err) || kb_matmul_precision_check(o->device, o->precision, err) ? -1 : 0;
}

/* Synthetic batch k: x0 on ADM's 8-bit grid, noise, t, labels. */
static void make_batch(const bench_opts *o, int k, float *x0, float *noise, int *t, int32_t *y) {
    int64_t n = (int64_t)o->batch * o->cfg.in_channels * o->cfg.input_size * o->cfg.input_size;
    for (int64_t i = 0; i < n; i++) {
        uint64_t idx = (uint64_t)k * (uint64_t)n + (uint64_t)i;
        x0[i] = (float)(int)(kb_rng_uniform_at(1, 1, idx) * 256.0f) / 127.5f - 1.0f;
        noise[i] = kb_rng_normal_at(1, 2, idx);
    }
    for (int b = 0; b < o->batch; b++) {
        t[b] = (int)(kb_rng_uniform_at(1, 3, (uint64_t)k * o->batch + b) * 1000.0f);
        y[b] = (int32_t)(kb_rng_uniform_at(1, 4, (uint64_t)k * o->batch + b) * o->cfg.num_classes);
    }
}

/* The trainer's own step (models/train_step.h) on a synthetic batch. */
static int train_step(kb_dit *m, kb_optim *opt, const kb_diffusion *diff, kb_train_bufs *b, int B, float *loss,
                      kb_err *err) {
    kb_step_stats s;
    if (kb_train_forward_loss(m, diff, b, B, &s, err) || kb_params_zero_grad(&m->params, err) ||
        kb_dit_backward(m, b->d_out_dev, b->y_dev, B, err) || kb_optim_step(opt, err))
        return -1;
    *loss = s.loss;
    return 0;
}

/* Dense peak TFLOP/s of the GPU for the arithmetic in use, from the vendor's
 * datasheets (SXM parts); 0 when the GPU is not in the table. */
static double datasheet_peak_tflops(const char *gpu, kb_matmul_precision p) {
    static const struct {
        const char *name;
        double fp32, tf32, bf16;
    } table[] = {{"H100", 66.9, 494.7, 989.4}, {"H200", 66.9, 494.7, 989.4}, {"A100", 19.5, 156.0, 312.0}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strstr(gpu, table[i].name))
            return p == KB_MATMUL_BF16 ? table[i].bf16 : p == KB_MATMUL_TF32 ? table[i].tf32 : table[i].fp32;
    return 0.0;
}

/* Model FLOP utilisation: achieved model FLOP/s over the device's peak. */
static void print_mfu(const bench_opts *o, const kb_ctx *ctx, double flops_per_s) {
    if (o->device != KB_DEV_CUDA) return;
    char gpu[512] = "";
    kb_err e = {0};
    if (kb_cuda_describe(ctx->cuda_device, gpu, sizeof gpu, &e)) snprintf(gpu, sizeof gpu, "unknown GPU");
    double peak = o->peak_tflops > 0 ? o->peak_tflops : datasheet_peak_tflops(gpu, o->precision);
    printf("kindbench train: %s, %s GEMMs\n", gpu, kb_matmul_precision_name(o->precision));
    if (peak > 0)
        printf("kindbench train: MFU %.1f%% (%.1f TFLOP/s of %.1f peak %s)\n", 100.0 * flops_per_s / (peak * 1e12),
               flops_per_s / 1e12, peak, kb_matmul_precision_name(o->precision));
    else
        printf("kindbench train: MFU unknown (no peak for this GPU: pass --peak-tflops)\n");
}

/* o->pool synthetic batches, drawn before the clock starts. */
typedef struct {
    int64_t n; /* floats of one batch's x0 (and noise) */
    float *x0, *noise;
    int *t;
    int32_t *y;
} batch_pool;

static int pool_make(const bench_opts *o, batch_pool *p, kb_err *err) {
    p->n = (int64_t)o->batch * o->cfg.in_channels * o->cfg.input_size * o->cfg.input_size;
    size_t k = (size_t)o->pool;
    p->x0 = malloc(k * (size_t)p->n * 4), p->noise = malloc(k * (size_t)p->n * 4);
    p->t = malloc(k * (size_t)o->batch * sizeof(int)), p->y = malloc(k * (size_t)o->batch * 4);
    if (!p->x0 || !p->noise || !p->t || !p->y)
        return kb_fail(err, "bench train: out of memory for %d batches of %lld values", o->pool, (long long)p->n);
    for (int j = 0; j < o->pool; j++)
        make_batch(o, j, p->x0 + j * p->n, p->noise + j * p->n, p->t + j * o->batch, p->y + j * o->batch);
    return 0;
}

static void pool_take(const bench_opts *o, const batch_pool *p, int k, kb_train_bufs *b) {
    int j = k % o->pool;
    memcpy(b->x0, p->x0 + j * p->n, (size_t)p->n * 4), memcpy(b->noise, p->noise + j * p->n, (size_t)p->n * 4);
    memcpy(b->t, p->t + j * o->batch, (size_t)o->batch * sizeof(int));
    memcpy(b->y, p->y + j * o->batch, (size_t)o->batch * 4);
}

static void pool_free(batch_pool *p) { free(p->x0), free(p->noise), free(p->t), free(p->y); }

/* Everything one bench run owns, zeroed first so that one teardown frees
 * whatever setup got as far as making. */
typedef struct {
    kb_ctx ctx;
    kb_dit m;
    kb_optim opt;
    kb_diffusion diff;
    kb_train_bufs b;
    batch_pool pool;
} bench_state;

static int bench_setup(const bench_opts *o, bench_state *s, kb_err *err) {
    kb_ctx_opts co = {.threads = o->threads, .matmul = o->precision};
    kb_optim_config oc = kb_optim_config_default();
    if (kb_ctx_init(&s->ctx, o->device, &co, err) || kb_dit_create(&s->m, &s->ctx, &o->cfg, 1, 0, err) ||
        kb_optim_init(&s->opt, &s->m.params, &oc, err) || kb_diffusion_init(&s->diff, 1000, "", err) ||
        kb_train_bufs_alloc(&s->b, &s->ctx, &o->cfg, o->batch, err))
        return -1;
    return pool_make(o, &s->pool, err);
}

static void bench_teardown(bench_state *s) {
    pool_free(&s->pool);
    kb_train_bufs_free(&s->b, &s->ctx);
    kb_diffusion_free(&s->diff);
    kb_optim_free(&s->opt);
    kb_dit_free(&s->m);
    kb_ctx_free(&s->ctx);
}

/* o->warmup untimed steps, then o->steps timed ones: steps per second. */
static int timed_steps(const bench_opts *o, bench_state *s, double *sps, float *loss, kb_err *err) {
    double t0 = 0.0;
    for (int k = 0; k < o->warmup + o->steps; k++) {
        if (k == o->warmup) {
            if (kb_ctx_sync(&s->ctx, err)) return -1;
            t0 = kb_now();
        }
        pool_take(o, &s->pool, k, &s->b);
        if (train_step(&s->m, &s->opt, &s->diff, &s->b, o->batch, loss, err)) return -1;
    }
    if (kb_ctx_sync(&s->ctx, err)) return -1;
    *sps = o->steps / (kb_now() - t0);
    return 0;
}

/* --profile: o->steps more steps with every op timed, then the table. */
static int profile_steps(const bench_opts *o, bench_state *s, kb_err *err) {
    float loss = 0.0f;
    if (kb_profile_start(&s->ctx, err)) return -1;
    double t0 = kb_now();
    for (int k = 0; k < o->steps; k++) {
        pool_take(o, &s->pool, k, &s->b);
        if (train_step(&s->m, &s->opt, &s->diff, &s->b, o->batch, &loss, err)) return -1;
    }
    if (kb_ctx_sync(&s->ctx, err)) return -1;
    return kb_profile_report(&s->ctx, stdout, o->steps, kb_now() - t0, err);
}

static void print_figures(const bench_opts *o, const bench_state *s, double sps, float loss) {
    double flops = 6.0 * kb_dit_forward_macs(&o->cfg) * o->batch;
    printf("kindbench train: depth %d width %d heads %d patch %d image %d channels %d batch %d, %zu params, %s x%d\n",
           o->cfg.depth, o->cfg.hidden_size, o->cfg.num_heads, o->cfg.patch_size, o->cfg.input_size,
           o->cfg.in_channels, o->batch, kb_params_trainable_count(&s->m.params), kb_device_name(o->device),
           s->ctx.threads);
    printf("kindbench train: %.3f steps/s, %.1f images/s, %.1f ms/step, %.2f GFLOP/s (6 x %.3f GMAC/image), "
           "last loss %.5f\n", sps, sps * o->batch, 1000.0 / sps, flops * sps / 1e9,
           kb_dit_forward_macs(&o->cfg) / 1e9, loss);
    printf("kindbench train: attention %s; activations %s\n",
           s->m.acts.attn_fused ? "fused bf16 kernels (nn/ops_attn.h)"
                                : "unfused (batched GEMMs + softmax, T x T scores kept)",
           s->m.acts.bf16 ? "bf16 around the linear layers (KINDBENCH_BF16_ACTS)" : "fp32");
    print_mfu(o, &s->ctx, flops * sps);
}

static int run_bench(const bench_opts *o, kb_err *err) {
    bench_state s;
    memset(&s, 0, sizeof s);
    double sps = 0.0;
    float loss = 0.0f;
    int rc = bench_setup(o, &s, err) || timed_steps(o, &s, &sps, &loss, err);
    if (!rc) {
        print_figures(o, &s, sps, loss);
        rc = o->profile ? profile_steps(o, &s, err) : 0;
    }
    bench_teardown(&s);
    if (rc) return -1;
    printf("steps_per_sec=%.6f\n", sps);
    return 0;
}

int kb_cmd_bench(int argc, char **argv, kb_err *err) {
    if (argc < 2 || strcmp(argv[1], "train")) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage();
            return KB_EXIT_OK;
        }
        kb_fail(err, "bench: expected 'train' (see 'kindbench bench train --help')");
        return KB_EXIT_USAGE;
    }
    bench_opts o;
    int rc = parse(argc - 1, argv + 1, &o, err);
    if (rc > 0) return KB_EXIT_OK;
    if (rc < 0) return KB_EXIT_USAGE;
    return run_bench(&o, err) ? KB_EXIT_FAIL : KB_EXIT_OK;
}
