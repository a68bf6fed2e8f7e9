/* The fast CPU path of the ops in nn/ops.h (see nn/ops_cpu.h): OpenBLAS for
 * GEMMs, OpenMP for the rest.
 *
 * GEMMs: OpenBLAS with `threads` threads (openblas_set_num_threads before
 * each call when the count differs). Its partition is fixed by the sizes and
 * the thread count, so reruns are bit-identical; across thread counts results
 * mostly agree bit for bit too, but not always (e.g. N = 3: measured).
 *
 * Determinism: every parallel loop has a static schedule whose partition is a
 * function of the sizes and the thread count only, and every reduction is
 * combined in a fixed order (per-thread partials, then thread 0, 1, 2, ...),
 * so a fixed thread count gives bit-identical results run to run.
 *
 * Elementwise ops, fills and conversions call the same per-element functions
 * as the reference (nn/ops_scalar.h), so they are bit-identical to it for any
 * thread count. Reductions accumulate in double like the reference but in a
 * different order (SIMD lanes, thread chunks): within a few float ulps. */
/* Value-safe: lets GCC if-convert the selects in nn/ops_scalar.h (tanh, sigmoid,
 * exp clamping) so the activation loops vectorise; it only drops the promise
 * to keep FP exception flags exact, results are the same IEEE operations. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "nn/ops_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "nn/cpu_clones.h"
#include "nn/cpu_rows.h"
#include "nn/ops_ref.h"
#include "nn/ops_scalar.h"
#include "nn/rng.h"

#define KB_CPU_MAX_THREADS 256
/* Below this many elements one thread is faster than waking a team. */
#define KB_CPU_GRAIN ((int64_t)1 << 15)
/* The random fills use fmaf (nn/rng.h), a library call unless the compiler
 * may emit the FMA instruction: on x86-64 a second copy of those functions is
 * built for FMA-capable CPUs and picked at load time. fmaf is correctly
 * rounded either way, so the bits are the same. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KB_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define KB_FMA_CLONES
#endif

/* Threads for `work` elements: 1 for small work, else the caller's count. */
static int team(int threads, int64_t work) {
    if (threads < 1) threads = 1;
    if (threads > KB_CPU_MAX_THREADS) threads = KB_CPU_MAX_THREADS;
    return work < KB_CPU_GRAIN ? 1 : threads;
}

/* ------------------------------------------------------------------ GEMM */

static void blas_threads(int threads) {
    if (threads < 1) threads = 1;
    if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
}

/* C = beta * C (beta == 0 writes zeros): the K == 0 case, where the product
 * is an empty sum and BLAS would reject lda = 0. */
static void scale_c(float *C, int64_t M, int64_t N, int64_t ldc, float beta) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

static void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        scale_c(C, M, N, ldc, beta);
        return;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, (blasint)M,
                (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void kb_gemm_cpu(int threads, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    blas_threads(threads);
    sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Batches of GEMMs of at least this many multiply-adds are spread over
 * OpenMP threads, one whole single-threaded GEMM per thread at a time
 * (measured crossover: 64x64x64 is faster in a loop, 128x128x64 split). */
#define KB_GEMM_BATCH_SPLIT ((int64_t)1 << 20)

/* Two strategies, both deterministic for a fixed thread count (every GEMM of
 * a given shape runs the same single- or multi-threaded OpenBLAS path):
 *  - medium and large GEMMs: OpenMP over the batch, OpenBLAS on one thread.
 *    A loop of multi-threaded OpenBLAS calls was measured up to 50x slower
 *    on a busy machine (48 GEMMs of 256x256x64, 2 threads): each call waits
 *    for both of OpenBLAS's threads to be scheduled.
 *  - small GEMMs: a plain loop (OpenBLAS threads those above 2^18 itself).
 *    Spreading them over threads was ~13x slower (512 GEMMs of 16x16x64):
 *    concurrent cblas_sgemm calls contend inside OpenBLAS (its buffer lock). */
void kb_gemm_batched_cpu(int threads, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB,
                         float beta, float *C, int64_t ldc, int64_t strideC, int64_t batch) {
    int nt = threads < 1 ? 1 : threads > KB_CPU_MAX_THREADS ? KB_CPU_MAX_THREADS : threads;
    if (nt > batch) nt = (int)batch;
    if (nt > 1 && M * N * K >= KB_GEMM_BATCH_SPLIT) {
        blas_threads(1);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t b = 0; b < batch; b++)
            sgemm(transA, transB, M, N, K, alpha, A + b * strideA, lda, B + b * strideB, ldb, beta, C + b * strideC,
                  ldc);
        return;
    }
    blas_threads(threads);
    for (int64_t b = 0; b < batch; b++)
        sgemm(transA, transB, M, N, K, alpha, A + b * strideA, lda, B + b * strideB, ldb, beta, C + b * strideC, ldc);
}

/* ----------------------------------------------------------- elementwise
 * `omp simd` loops: an output may be the same buffer as an input (in place),
 * but must not partially overlap one. */

KB_SIMD_CLONES void kb_add_cpu(int threads, float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

KB_SIMD_CLONES void kb_mul_cpu(int threads, float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

KB_SIMD_CLONES void kb_axpy_cpu(int threads, float *y, float alpha, const float *x, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = y[i] + alpha * x[i];
}

KB_SIMD_CLONES void kb_scale_cpu(int threads, float *x, float alpha, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * alpha;
}

void kb_fill_cpu(int threads, float *x, float value, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = value;
}

KB_SIMD_CLONES void kb_add_bias_cpu(int threads, float *out, const float *bias, int64_t rows, int64_t cols) {
#pragma omp parallel for num_threads(team(threads, rows * cols)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * cols;
#pragma omp simd
        for (int64_t c = 0; c < cols; c++) o[c] = o[c] + bias[c];
    }
}

void kb_gemm_bias_cpu(int threads, float *y, const float *x, const float *W, const float *bias, int64_t rows, int64_t in,
                      int64_t out) {
    if (rows == 0 || out == 0) return;
    kb_gemm_cpu(threads, false, true, rows, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    if (bias) kb_add_bias_cpu(threads, y, bias, rows, out);
}

/* ------------------------------------------------------------ reductions */

/* Contiguous chunk t of nt over [0, n). Inside a parallel region nt is the
 * team's actual size (omp_get_num_threads()): OpenMP may give fewer threads
 * than asked for (e.g. when called from inside another parallel region), and
 * every chunk must still be covered. */
static int64_t chunk_lo(int64_t n, int nt, int t) { return n / nt * t + (t < n % nt ? t : n % nt); }

/* Column sums when rows are few and columns many: each thread owns a column
 * range and walks all rows over 512-column blocks. Row order as in the
 * reference: bit-identical to it. */
KB_CLONE_INLINE void sum_rows_by_cols(int nt, float *out, const float *in, int64_t rows, int64_t cols) {
#pragma omp parallel num_threads(nt)
    {
        double acc[512];
        int t = omp_get_thread_num(), nthr = omp_get_num_threads();
        for (int64_t c0 = chunk_lo(cols, nthr, t), c1 = chunk_lo(cols, nthr, t + 1); c0 < c1; c0 += 512) {
            int64_t w = c1 - c0 < 512 ? c1 - c0 : 512;
            memset(acc, 0, sizeof acc);
            for (int64_t r = 0; r < rows; r++) acc_row(acc, in + r * cols + c0, w);
            for (int64_t c = 0; c < w; c++) out[c0 + c] = out[c0 + c] + (float)acc[c];
        }
    }
}

/* Column sums when rows are many: thread t sums its contiguous chunk of rows
 * into partial[t][cols] (double), then the partials are added in thread order. */
KB_CLONE_INLINE void sum_rows_by_rows(int nt, float *out, const float *in, int64_t rows, int64_t cols, double *partial) {
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), nthr = omp_get_num_threads();
        double *acc = partial + (int64_t)t * cols;
        memset(acc, 0, (size_t)cols * sizeof(double));
        for (int64_t r = chunk_lo(rows, nthr, t), r1 = chunk_lo(rows, nthr, t + 1); r < r1; r++)
            acc_row(acc, in + r * cols, cols);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t c = 0; c < cols; c++) {
            double s = partial[c];
            for (int u = 1; u < nthr; u++) s += partial[(int64_t)u * cols + c];
            out[c] = out[c] + (float)s;
        }
    }
}

KB_SIMD_CLONES void kb_sum_rows_cpu(int threads, float *out, const float *in, int64_t rows, int64_t cols) {
    if (rows == 0 || cols == 0) return;
    int nt = team(threads, rows * cols);
    double *partial = NULL;
    if (rows >= 8 * (int64_t)nt && cols <= ((int64_t)1 << 16)) partial = malloc((size_t)(nt * cols) * sizeof(double));
    if (partial) sum_rows_by_rows(nt, out, in, rows, cols, partial);
    else sum_rows_by_cols(nt, out, in, rows, cols);
    free(partial);
}

/* Thread chunks summed in double, combined in thread order. */
void kb_sum_cpu(int threads, double *out, const float *in, int64_t n) {
    int nt = team(threads, n);
    double part[KB_CPU_MAX_THREADS];
    int used = 1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), nthr = omp_get_num_threads();
        if (t == 0) used = nthr;
        double s = 0.0;
        int64_t hi = chunk_lo(n, nthr, t + 1);
#pragma omp simd reduction(+ : s)
        for (int64_t i = chunk_lo(n, nthr, t); i < hi; i++) s += (double)in[i];
        part[t] = s;
    }
    double s = 0.0;
    for (int t = 0; t < used; t++) s += part[t];
    *out = s;
}

/* ----------------------------------------------------------- activations */

KB_SIMD_CLONES void kb_gelu_tanh_fwd_cpu(int threads, float *out, const float *inp, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n / 8)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_gelu_tanh(inp[i]);
}

KB_SIMD_CLONES void kb_gelu_tanh_bwd_cpu(int threads, float *dinp, const float *inp, const float *dout, int64_t n, kb_grad_mode mode) {
    if (mode == KB_GRAD_SET) {
#pragma omp parallel for simd num_threads(team(threads, n / 8)) schedule(static)
        for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * kb_sc_gelu_tanh_grad(inp[i]);
        return;
    }
#pragma omp parallel for simd num_threads(team(threads, n / 8)) schedule(static)
    for (int64_t i = 0; i < n; i++) dinp[i] = dinp[i] + dout[i] * kb_sc_gelu_tanh_grad(inp[i]);
}

KB_SIMD_CLONES void kb_silu_fwd_cpu(int threads, float *out, const float *inp, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n / 8)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_silu(inp[i]);
}

KB_SIMD_CLONES void kb_silu_bwd_cpu(int threads, float *dinp, const float *inp, const float *dout, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n / 8)) schedule(static)
    for (int64_t i = 0; i < n; i++) dinp[i] = dinp[i] + dout[i] * kb_sc_silu_grad(inp[i]);
}

KB_SIMD_CLONES void kb_relu_fwd_cpu(int threads, float *out, const float *inp, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_relu(inp[i]);
}

KB_SIMD_CLONES void kb_relu_bwd_cpu(int threads, float *dinp, const float *inp, const float *dout, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = dout[i];
        dinp[i] = dinp[i] + (inp[i] > 0.0f ? g : 0.0f);
    }
}

/* ------------------------------------------------------------- LayerNorm */

KB_SIMD_CLONES void kb_layernorm_fwd_cpu(int threads, float *out, float *mean, float *rstd, const float *inp, const float *weight,
                          const float *bias, int64_t rows, int64_t cols, float eps) {
    if (cols == 0) return;
#pragma omp parallel for num_threads(team(threads, rows * cols)) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        layernorm_row(out + r * cols, mean ? mean + r : NULL, rstd ? rstd + r : NULL, inp + r * cols, weight, bias,
                      cols, eps);
}

/* Thread t handles a contiguous chunk of rows: dinp directly, dweight/dbias
 * into per-thread double partials that are then added in thread order. */
KB_SIMD_CLONES void kb_layernorm_bwd_cpu(int threads, float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                          const float *weight, const float *mean, const float *rstd, int64_t rows, int64_t cols) {
    if (rows == 0 || cols == 0) return;
    int nt = team(threads, rows * cols);
    if (nt > rows) nt = (int)rows;
    int nacc = (dweight ? 1 : 0) + (dbias ? 1 : 0);
    double *partial = nacc ? calloc((size_t)(nt * nacc) * (size_t)cols, sizeof(double)) : NULL;
    if (nacc && !partial) { /* out of memory: the reference gives the same result, slowly */
        kb_layernorm_bwd_ref(dinp, dweight, dbias, dout, inp, weight, mean, rstd, rows, cols);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), nthr = omp_get_num_threads();
        double *pw = dweight ? partial + (int64_t)t * nacc * cols : NULL;
        double *pb = dbias ? partial + ((int64_t)t * nacc + (dweight ? 1 : 0)) * cols : NULL;
        for (int64_t r = chunk_lo(rows, nthr, t), r1 = chunk_lo(rows, nthr, t + 1); r < r1; r++)
            layernorm_bwd_row(dinp ? dinp + r * cols : NULL, pw, pb, dout + r * cols, inp + r * cols, weight, mean[r],
                              rstd[r], cols);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t c = 0; c < cols; c++) {
            for (int k = 0; k < nacc; k++) {
                double s = partial[(int64_t)k * cols + c];
                for (int u = 1; u < nthr; u++) s += partial[((int64_t)u * nacc + k) * cols + c];
                float *o = (k == 0 && dweight) ? dweight : dbias;
                o[c] = o[c] + (float)s;
            }
        }
    }
    free(partial);
}

/* --------------------------------------------------------------- softmax */

KB_CLONE_INLINE void softmax_row(float *o, const float *x, int64_t cols) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t c = 0; c < cols; c++) mx = x[c] > mx ? x[c] : mx;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < cols; c++) {
        float em, e;
        kb_sc_exp_nonpos(x[c] - mx, &em, &e);
        o[c] = e;
        s += (double)e;
    }
    float inv = (float)(1.0 / s);
#pragma omp simd
    for (int64_t c = 0; c < cols; c++) o[c] = o[c] * inv;
}

KB_SIMD_CLONES void kb_softmax_fwd_cpu(int threads, float *out, const float *inp, int64_t rows, int64_t cols) {
#pragma omp parallel for num_threads(team(threads, rows * cols)) schedule(static)
    for (int64_t r = 0; r < rows; r++) softmax_row(out + r * cols, inp + r * cols, cols);
}

KB_SIMD_CLONES void kb_softmax_bwd_cpu(int threads, float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols) {
#pragma omp parallel for num_threads(team(threads, rows * cols)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *y = out + r * cols, *dy = dout + r * cols;
        float *dx = dinp + r * cols;
        double d = 0.0;
#pragma omp simd reduction(+ : d)
        for (int64_t c = 0; c < cols; c++) d += (double)dy[c] * (double)y[c];
        float df = (float)d;
#pragma omp simd
        for (int64_t c = 0; c < cols; c++) dx[c] = y[c] * (dy[c] - df);
    }
}

/* ----------------------------------------------------------- conversions */

KB_SIMD_CLONES void kb_u8_to_f32_cpu(int threads, float *out, const uint8_t *in, int64_t n, float scale, float offset) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_u8_to_f32(in[i], scale, offset);
}

void kb_f32_to_bf16_cpu(int threads, uint16_t *out, const float *in, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_f32_to_bf16(in[i]);
}

void kb_bf16_to_f32_cpu(int threads, float *out, const uint16_t *in, int64_t n) {
#pragma omp parallel for simd num_threads(team(threads, n)) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = kb_sc_bf16_to_f32(in[i]);
}

/* ---------------------------------------------------------- random fills */

/* Elements [lo, hi) with each Philox block computed once (the per-element
 * functions recompute the block for every element, and the normal's log and
 * sincos for both members of a Box-Muller pair). The same operations as
 * kb_rng_uniform_at / kb_rng_normal_at in nn/rng.h, which fill the partial
 * blocks at the ends; tests/test_ops_cpu.c compares the bits with the reference. */
KB_FMA_CLONES static void uniform_span(float *out, int64_t lo, int64_t hi, uint64_t seed, uint64_t stream, float lo_v, float hi_v) {
    int64_t i = lo;
    float width = KB_FSUB(hi_v, lo_v);
    for (; i < hi && (i & 3); i++) out[i] = kb_rng_uniform_scaled(seed, stream, (uint64_t)i, lo_v, hi_v);
    for (; i + 4 <= hi; i += 4) {
        kb_philox_out o = kb_philox_block(seed, stream, (uint64_t)i >> 2);
        for (int j = 0; j < 4; j++) out[i + j] = KB_FMA(kb_u32_to_unit(o.v[j]), width, lo_v);
    }
    for (; i < hi; i++) out[i] = kb_rng_uniform_scaled(seed, stream, (uint64_t)i, lo_v, hi_v);
}

KB_FMA_CLONES static void normal_span(float *out, int64_t lo, int64_t hi, uint64_t seed, uint64_t stream, float mean, float std) {
    int64_t i = lo;
    for (; i < hi && (i & 3); i++) out[i] = kb_rng_normal_scaled(seed, stream, (uint64_t)i, mean, std);
    for (; i + 4 <= hi; i += 4) {
        kb_philox_out o = kb_philox_block(seed, stream, (uint64_t)i >> 2);
        for (int p = 0; p < 2; p++) {
            float u1 = kb_u32_to_unit_open0(o.v[2 * p]), u2 = kb_u32_to_unit(o.v[2 * p + 1]);
            float r = KB_FSQRT(KB_FMUL(-2.0f, kb_portable_logf(u1)));
            float sn, cs;
            kb_portable_sincos_2pi(u2, &sn, &cs);
            out[i + 2 * p] = KB_FMA(KB_FMUL(r, cs), std, mean);
            out[i + 2 * p + 1] = KB_FMA(KB_FMUL(r, sn), std, mean);
        }
    }
    for (; i < hi; i++) out[i] = kb_rng_normal_scaled(seed, stream, (uint64_t)i, mean, std);
}

void kb_rand_uniform_cpu(int threads, float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi) {
    int nt = team(threads, n / 4);
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), nthr = omp_get_num_threads();
        uniform_span(out, chunk_lo(n, nthr, t), chunk_lo(n, nthr, t + 1), seed, stream, lo, hi);
    }
}

void kb_rand_normal_cpu(int threads, float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std) {
    int nt = team(threads, n / 16);
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), nthr = omp_get_num_threads();
        normal_span(out, chunk_lo(n, nthr, t), chunk_lo(n, nthr, t + 1), seed, stream, mean, std);
    }
}
