/* Micro-benchmark of the fast CPU ops (nn/ops_cpu.c), with the reference
 * beside some of them for scale. Not a test: prints best-of-N wall times.
 *   bench_ops [threads] [filter]     (threads default 2; filter: substring of op names) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/ops_cpu.h"
#include "nn/ops_ref.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int threads;
    const char *filter;
    float *a, *b, *c, *d;
} bench;

/* Runs body until ~0.3 s or 50 reps have passed, returns the best time. */
#define TIME_BEST(best, body)                                                                                     \
    do {                                                                                                          \
        best = 1e30;                                                                                              \
        double t_end = now() + 0.3;                                                                               \
        for (int rep_ = 0; rep_ < 50 && (rep_ < 2 || now() < t_end); rep_++) {                                   \
            double t0_ = now();                                                                                   \
            body;                                                                                                 \
            double dt_ = now() - t0_;                                                                             \
            if (dt_ < best) best = dt_;                                                                           \
        }                                                                                                         \
    } while (0)

static int want(const bench *b, const char *name) { return !b->filter || strstr(name, b->filter); }

static void report(const char *name, double sec, double work, const char *unit) {
    printf("%-44s %10.3f ms  %9.2f %s\n", name, sec * 1e3, work / sec * 1e-9, unit);
}

static void bench_gemm(bench *b) {
    static const int64_t sizes[][3] = {{1024, 1024, 1024}, {8192, 384, 384}, {8192, 1536, 384}, {384, 384, 8192}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int64_t M = sizes[i][0], N = sizes[i][1], K = sizes[i][2];
        char name[96];
        snprintf(name, sizeof name, "gemm %lldx%lldx%lld", (long long)M, (long long)N, (long long)K);
        if (!want(b, name)) continue;
        double t;
        TIME_BEST(t, kb_gemm_cpu(b->threads, false, false, M, N, K, 1.0f, b->a, K, b->b, N, 0.0f, b->c, N));
        report(name, t, 2.0 * M * N * K, "GFLOP/s");
        snprintf(name, sizeof name, "gemm %lldx%lldx%lld B^T", (long long)M, (long long)N, (long long)K);
        TIME_BEST(t, kb_gemm_cpu(b->threads, false, true, M, N, K, 1.0f, b->a, K, b->b, K, 0.0f, b->c, N));
        report(name, t, 2.0 * M * N * K, "GFLOP/s");
    }
    /* attention-shaped batches: B*heads = 48, T = 256, head dim 64; and tiny ones */
    static const int64_t bsz[][4] = {{48, 256, 256, 64}, {48, 256, 64, 256}, {512, 16, 16, 64},
                                     {512, 32, 32, 32}, {256, 64, 64, 64}, {3, 512, 512, 512}};
    for (size_t i = 0; i < sizeof bsz / sizeof bsz[0]; i++) {
        int64_t batch = bsz[i][0], M = bsz[i][1], N = bsz[i][2], K = bsz[i][3];
        char name[96];
        snprintf(name, sizeof name, "gemm_batched %lld x %lldx%lldx%lld", (long long)batch, (long long)M,
                 (long long)N, (long long)K);
        if (!want(b, name)) continue;
        double t;
        TIME_BEST(t, kb_gemm_batched_cpu(b->threads, false, true, M, N, K, 1.0f, b->a, K, M * K, b->b, K, N * K,
                                         0.0f, b->c, N, M * N, batch));
        report(name, t, 2.0 * batch * M * N * K, "GFLOP/s");
    }
}

static void bench_elementwise(bench *b) {
    const int64_t n = (int64_t)1 << 24;
    double t;
#define EW(label, bytes, call)                                                                                    \
    if (want(b, label)) {                                                                                         \
        TIME_BEST(t, call);                                                                                       \
        report(label, t, (double)(bytes) * n, "GB/s");                                                            \
    }
    EW("add (16M)", 12, kb_add_cpu(b->threads, b->c, b->a, b->b, n));
    EW("axpy (16M)", 12, kb_axpy_cpu(b->threads, b->c, 0.5f, b->a, n));
    EW("gelu_tanh_fwd (16M)", 8, kb_gelu_tanh_fwd_cpu(b->threads, b->c, b->a, n));
    EW("gelu_tanh_fwd ref (16M)", 8, kb_gelu_tanh_fwd_ref(b->c, b->a, n));
    EW("gelu_tanh_bwd (16M)", 16, kb_gelu_tanh_bwd_cpu(b->threads, b->c, b->a, b->b, n, KB_GRAD_ADD));
    EW("silu_fwd (16M)", 8, kb_silu_fwd_cpu(b->threads, b->c, b->a, n));
    EW("silu_bwd (16M)", 16, kb_silu_bwd_cpu(b->threads, b->c, b->a, b->b, n));
    EW("f32_to_bf16 (16M)", 6, kb_f32_to_bf16_cpu(b->threads, (uint16_t *)b->c, b->a, n));
    EW("rand_uniform (16M)", 4, kb_rand_uniform_cpu(b->threads, b->c, n, 1, 2, 0.0f, 1.0f));
    EW("rand_normal (16M)", 4, kb_rand_normal_cpu(b->threads, b->c, n, 1, 2, 0.0f, 1.0f));
    EW("rand_normal ref (16M)", 4, kb_rand_normal_ref(b->c, n, 1, 2, 0.0f, 1.0f));
    EW("sum (16M, double)", 4, kb_sum_cpu(b->threads, (double *)b->d, b->a, n));
#undef EW
}

static void bench_rows(bench *b) {
    static const int64_t shapes[][2] = {{8192, 384}, {32768, 64}, {1 << 20, 16}, {16, 1 << 20}, {4, 1 << 22}};
    double t;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t r = shapes[i][0], c = shapes[i][1];
        char name[96];
        snprintf(name, sizeof name, "sum_rows %lldx%lld", (long long)r, (long long)c);
        if (want(b, name)) {
            TIME_BEST(t, kb_sum_rows_cpu(b->threads, b->d, b->a, r, c));
            report(name, t, 4.0 * r * c, "GB/s");
            snprintf(name, sizeof name, "sum_rows %lldx%lld ref", (long long)r, (long long)c);
            TIME_BEST(t, kb_sum_rows_ref(b->d, b->a, r, c));
            report(name, t, 4.0 * r * c, "GB/s");
        }
    }
    static const int64_t ln[][2] = {{8192, 384}, {8192, 1152}, {48 * 256, 256}};
    for (size_t i = 0; i < sizeof ln / sizeof ln[0]; i++) {
        int64_t r = ln[i][0], c = ln[i][1];
        char name[96];
        snprintf(name, sizeof name, "layernorm_fwd %lldx%lld", (long long)r, (long long)c);
        if (want(b, name)) {
            TIME_BEST(t, kb_layernorm_fwd_cpu(b->threads, b->c, b->d, b->d + r, b->a, b->b, b->b, r, c, 1e-6f));
            report(name, t, 8.0 * r * c, "GB/s");
            snprintf(name, sizeof name, "layernorm_bwd %lldx%lld", (long long)r, (long long)c);
            TIME_BEST(t, kb_layernorm_bwd_cpu(b->threads, b->c, b->d + 2 * r, b->d + 2 * r + c, b->b, b->a, b->b,
                                              b->d, b->d + r, r, c));
            report(name, t, 12.0 * r * c, "GB/s");
        }
        snprintf(name, sizeof name, "softmax_fwd %lldx%lld", (long long)r, (long long)c);
        if (want(b, name)) {
            TIME_BEST(t, kb_softmax_fwd_cpu(b->threads, b->c, b->a, r, c));
            report(name, t, 8.0 * r * c, "GB/s");
            snprintf(name, sizeof name, "softmax_bwd %lldx%lld", (long long)r, (long long)c);
            TIME_BEST(t, kb_softmax_bwd_cpu(b->threads, b->c, b->b, b->a, r, c));
            report(name, t, 12.0 * r * c, "GB/s");
        }
    }
}

int main(int argc, char **argv) {
    bench b = {argc > 1 ? atoi(argv[1]) : 2, argc > 2 ? argv[2] : NULL, NULL, NULL, NULL, NULL};
    if (b.threads < 1) b.threads = 1;
    const int64_t n = (int64_t)1 << 24; /* 64 MiB per buffer: covers every shape above */
    b.a = malloc(n * 4), b.b = malloc(n * 4), b.c = malloc(n * 4), b.d = malloc(n * 4);
    if (!b.a || !b.b || !b.c || !b.d) return 1;
    kb_rand_normal_cpu(b.threads, b.a, n, 1, 1, 0.0f, 1.0f);
    kb_rand_normal_cpu(b.threads, b.b, n, 1, 2, 0.0f, 1.0f);
    kb_rand_uniform_cpu(b.threads, b.d, n, 1, 3, 0.5f, 1.5f); /* positive: usable as rstd */
    printf("bench_ops: %d threads\n", b.threads);
    bench_gemm(&b);
    bench_elementwise(&b);
    bench_rows(&b);
    free(b.a), free(b.b), free(b.c), free(b.d);
    return 0;
}
