/* The CUDA ops (nn/ops_cuda.cu) against the C reference (nn/ops_ref.c), plus
 * the CUDA context: init, device memory, copies, errors.
 *
 * Skipped (exit 77) when this build has no CUDA or no GPU is visible; a few
 * checks of the "no CUDA" error paths run first either way.
 *
 * Tolerances (the reference is the plain C loop; the GPU sums in other orders):
 *   GEMM (FP32, TF32 off)        |gpu - ref| <= 1e-5 * (|alpha| sum_k |a||b| + |beta c|)
 *   sum_rows, LN dweight/dbias   |gpu - ref| <= 1e-5 * (sum_r |term| + |initial out|)
 *   kb_sum (double)              |gpu - ref| <= 1e-12 * sum |x|
 *   add, mul, axpy, scale, fill, add_bias, gelu, silu, relu (fwd and bwd),
 *   u8->f32, bf16<->f32, random fills
 *                                bit-identical: the kernels evaluate the
 *                                reference's own nn/ops_scalar.h / nn/rng.h
 *                                functions (no CUDA tanhf/expf), rounding
 *                                every operation as the reference does
 *   layernorm, softmax           atol 1e-5 + rtol 1e-5 (softmax: atol 1e-7, as its values are <= 1);
 *                                both sum in double, so they usually agree to the bit
 *   every op, run twice on the GPU from the same inputs: bit-identical. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/cuda_backend.h"
#include "nn/ops.h"
#include "nn/ops_cuda.h"
#include "nn/ops_ref.h"
#include "nn/rng.h"
#include "tests/kbtest.h"

#define SEED 20240611u

typedef struct {
    kbt_state t;
    const char *tag; /* prefix of the GEMM checks' names ("" or "staged bf16: ") */
    kb_ctx ctx;
    kb_err err;
} env;

/* ------------------------------------------------------------------ helpers */

static void die(env *e, const char *what) {
    printf("FAIL %s: %s\n", what, e->err.msg);
    e->t.failed++;
    kbt_finish(&e->t);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    return p;
}

static void *dalloc(env *e, size_t bytes) {
    void *p = kb_dev_alloc(&e->ctx, bytes, &e->err);
    if (!p) die(e, "kb_dev_alloc");
    return p;
}

static void *to_dev(env *e, const void *h, size_t bytes) {
    void *d = dalloc(e, bytes);
    if (bytes && kb_copy_to_dev(&e->ctx, d, h, bytes, &e->err)) die(e, "kb_copy_to_dev");
    return d;
}

static void to_host(env *e, void *h, const void *d, size_t bytes) {
    if (bytes && kb_copy_to_host(&e->ctx, h, d, bytes, &e->err)) die(e, "kb_copy_to_host");
}

static void dfree(env *e, void *d) { kb_dev_free(&e->ctx, d); }

static float *host_uniform(int64_t n, uint64_t stream, float lo, float hi) {
    float *h = xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = kb_rng_uniform_scaled(SEED, stream, (uint64_t)i, lo, hi);
    return h;
}

static float *fdup(const float *h, int64_t n) {
    float *p = xmalloc((size_t)n * sizeof(float));
    if (n) memcpy(p, h, (size_t)n * sizeof(float));
    return p;
}

/* An op's return code: 0 expected. Returns 1 when it succeeded. */
static int op_ok(env *e, int rc, const char *name) {
    if (rc == 0) return 1;
    char buf[600];
    snprintf(buf, sizeof buf, "%.150s returned %d: %.400s", name, rc, e->err.msg);
    kbt_report(&e->t, 0, name, buf);
    return 0;
}

static void check_bits(env *e, const char *name, const void *got, const void *want, size_t bytes, size_t elem) {
    const unsigned char *a = got, *b = want;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < bytes; i += elem)
        if (memcmp(a + i, b + i, elem)) {
            if (!bad) first = i / elem;
            bad++;
        }
    char buf[256] = "";
    if (bad) {
        uint32_t ga = 0, wb = 0;
        memcpy(&ga, a + first * elem, elem < 4 ? elem : 4);
        memcpy(&wb, b + first * elem, elem < 4 ? elem : 4);
        snprintf(buf, sizeof buf, "%zu/%zu elements differ; first [%zu] got bits 0x%08x want 0x%08x", bad, bytes / elem,
                 first, ga, wb);
    }
    kbt_report(&e->t, bad == 0, name, buf);
}

/* |got - want| <= rtol * scale[i] for every element (scale >= 0). */
static void check_scaled(env *e, const char *name, const float *got, const float *want, const double *scale, int64_t n,
                         double rtol) {
    int64_t bad = 0, worst = -1;
    double worst_ratio = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double tol = rtol * scale[i];
        double ratio = d == 0 ? 0 : d / (tol > 0 ? tol : 1e-300);
        if (!(d <= tol)) bad++;
        if (!(ratio <= worst_ratio)) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    char buf[300] = "";
    if (bad)
        snprintf(buf, sizeof buf, "%lld/%lld outside %.0e of scale; worst [%lld] got %.9g want %.9g (scale %.3g)",
                 (long long)bad, (long long)n, rtol, (long long)worst, got[worst], want[worst], scale[worst]);
    kbt_report(&e->t, bad == 0, name, buf);
}

/* --------------------------------------------------------------------- GEMM */

typedef struct {
    int64_t M, N, K;
} mnk;

/* Leading dimensions and batch strides of one GEMM case. */
typedef struct {
    int64_t lda, ldb, ldc, strideA, strideB, strideC;
} gemm_layout;

/* Stacked matrices: pad added to every leading dimension and between batch
 * matrices (strideA = 0 broadcasts A). */
static gemm_layout layout_stacked(bool ta, bool tb, mnk s, int64_t pad, bool bcast_a) {
    gemm_layout L;
    int64_t rowsA = ta ? s.K : s.M, colsA = ta ? s.M : s.K;
    int64_t rowsB = tb ? s.N : s.K, colsB = tb ? s.K : s.N;
    L.lda = colsA + pad > 1 ? colsA + pad : 1;
    L.ldb = colsB + pad > 1 ? colsB + pad : 1;
    L.ldc = s.N + pad > 1 ? s.N + pad : 1;
    L.strideA = bcast_a ? 0 : rowsA * L.lda + 7 * pad;
    L.strideB = rowsB * L.ldb + 5 * pad;
    L.strideC = s.M * L.ldc + 3 * pad;
    return L;
}

/* Elements spanned by `batch` row-major matrices of rows x cols (stride ld, batch stride sb), plus one. */
static int64_t span(int64_t rows, int64_t cols, int64_t ld, int64_t sb, int64_t batch) {
    int64_t nb = batch > 0 ? batch : 1;
    return (rows > 0 && cols > 0 ? (nb - 1) * sb + (rows - 1) * ld + cols : 0) + 1;
}

/* One (batched) GEMM case against kb_gemm(_batched)_ref. Elements of C outside
 * the output matrices (padding) must stay untouched. Returns 1 on success, and
 * reports failures itself. */
static int gemm_case(env *e, bool ta, bool tb, mnk s, float alpha, float beta, gemm_layout L, int64_t batch,
                     bool batched_api, bool check_rerun, const char *label) {
    int64_t M = s.M, N = s.N, K = s.K;
    int64_t lda = L.lda, ldb = L.ldb, ldc = L.ldc, strideA = L.strideA, strideB = L.strideB, strideC = L.strideC;
    int64_t rowsA = ta ? K : M, colsA = ta ? M : K;
    int64_t rowsB = tb ? N : K, colsB = tb ? K : N;
    int64_t nA = span(rowsA, colsA, lda, strideA, batch), nB = span(rowsB, colsB, ldb, strideB, batch);
    int64_t nC = span(M, N, ldc, strideC, batch) + 5;
    float *A = host_uniform(nA, 1, -1, 1), *B = host_uniform(nB, 2, -1, 1), *C0 = host_uniform(nC, 3, -1, 1);
    float *Cref = fdup(C0, nC), *Cgpu = fdup(C0, nC);
    double *scale = xmalloc((size_t)nC * sizeof(double));
    for (int64_t i = 0; i < nC; i++) scale[i] = 0; /* padding: must be exact */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) {
                    float a = ta ? A[b * strideA + k * lda + i] : A[b * strideA + i * lda + k];
                    float bb = tb ? B[b * strideB + j * ldb + k] : B[b * strideB + k * ldb + j];
                    acc += fabs((double)a * (double)bb);
                }
                int64_t at = b * strideC + i * ldc + j;
                scale[at] = fabs((double)alpha) * acc + fabs((double)beta * (double)C0[at]) + 1e-30;
            }
    if (batched_api)
        kb_gemm_batched_ref(ta, tb, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, Cref, ldc, strideC, batch);
    else
        kb_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cref, ldc);

    float *dA = to_dev(e, A, (size_t)nA * 4), *dB = to_dev(e, B, (size_t)nB * 4), *dC = to_dev(e, C0, (size_t)nC * 4);
    int rc = batched_api ? kb_gemm_batched_cuda(&e->ctx, ta, tb, M, N, K, alpha, dA, lda, strideA, dB, ldb, strideB,
                                                beta, dC, ldc, strideC, batch, &e->err)
                         : kb_gemm_cuda(&e->ctx, ta, tb, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, ldc, &e->err);
    char name[200];
    snprintf(name, sizeof name, "%s %c%c M=%lld N=%lld K=%lld batch=%lld alpha=%g beta=%g lda=%lld ldb=%lld ldc=%lld%s",
             batched_api ? "gemm_batched" : "gemm", ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)M, (long long)N,
             (long long)K, (long long)batch, alpha, beta, (long long)lda, (long long)ldb, (long long)ldc, label);
    int ok = op_ok(e, rc, name);
    if (ok) {
        to_host(e, Cgpu, dC, (size_t)nC * 4);
        int before = e->t.failed;
        check_scaled(e, name, Cgpu, Cref, scale, nC, 1e-5);
        ok = e->t.failed == before;
        if (check_rerun) {
            float *again = xmalloc((size_t)nC * 4);
            if (kb_copy_to_dev(&e->ctx, dC, C0, (size_t)nC * 4, &e->err)) die(e, "kb_copy_to_dev");
            rc = batched_api ? kb_gemm_batched_cuda(&e->ctx, ta, tb, M, N, K, alpha, dA, lda, strideA, dB, ldb, strideB,
                                                    beta, dC, ldc, strideC, batch, &e->err)
                             : kb_gemm_cuda(&e->ctx, ta, tb, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, ldc, &e->err);
            char rname[240];
            snprintf(rname, sizeof rname, "rerun bit-identical: %s", name);
            if (op_ok(e, rc, rname)) {
                to_host(e, again, dC, (size_t)nC * 4);
                check_bits(e, rname, again, Cgpu, (size_t)nC * 4, 4);
            }
            free(again);
        }
    }
    dfree(e, dA);
    dfree(e, dB);
    dfree(e, dC);
    free(A);
    free(B);
    free(C0);
    free(Cref);
    free(Cgpu);
    free(scale);
    return ok;
}

static void test_gemm(env *e) {
    static const mnk shapes[] = {{1, 1, 1}, {7, 13, 5}, {64, 48, 33},   {131, 1, 17},   {1, 257, 31}, {3, 5, 0},
                                 {0, 4, 3}, {5, 0, 3},  {33, 65, 1024}, {256, 192, 64}, {2000, 3, 7}};
    static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, -1.25f}, {-2.0f, 1.0f}};
    int cases = 0, passed = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (size_t a = 0; a < sizeof ab / sizeof ab[0]; a++)
                for (int pad = 0; pad <= 3; pad += 3) {
                    cases++;
                    passed +=
                        gemm_case(e, t & 1, t & 2, shapes[s], ab[a][0], ab[a][1],
                                  layout_stacked(t & 1, t & 2, shapes[s], pad, false), 1, false, s == 2 && a == 1, "");
                }
    static const mnk bshapes[] = {{7, 5, 3}, {16, 24, 40}, {1, 1, 1}, {4, 4, 4}, {9, 2, 0}};
    static const int64_t batches[] = {3, 5, 1, 0, 2};
    for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int bc = 0; bc < 2; bc++) {
                cases++;
                passed += gemm_case(e, t & 1, t & 2, bshapes[s], 0.5f, -1.25f,
                                    layout_stacked(t & 1, t & 2, bshapes[s], 2, bc), batches[s], true, s == 1 && t == 3,
                                    bc ? " strideA=0" : " stacked");
            }
    /* attention heads side by side in [T, heads*hd] rows (as the models use it):
     * scores[h] = Q_h K_h^T (A, B interleaved, C stacked), then out_h = P[h] V_h (C interleaved) */
    for (int hd = 1; hd <= 8; hd += 7)
        for (int T = 1; T <= 17; T += 16) {
            int64_t heads = 3, D = heads * hd;
            mnk qk = {T, T, hd}, pv = {T, hd, T};
            gemm_layout Lqk = {D, D, T, hd, hd, (int64_t)T * T};
            gemm_layout Lpv = {T, D, D, (int64_t)T * T, hd, hd};
            cases += 2;
            passed += gemm_case(e, false, true, qk, 0.125f, 0.0f, Lqk, heads, true, false, " heads interleaved (QK^T)");
            passed += gemm_case(e, false, false, pv, 1.0f, 0.0f, Lpv, heads, true, T == 17 && hd == 8,
                                " heads interleaved (PV)");
        }
    printf("     (%d of %d gemm cases passed)\n", passed, cases);
}

/* TF32 and BF16 tensor-core GEMMs (kb_cuda_set_matmul), a plain and a
 * batched case: operands cut to 10 (TF32) or 7 (BF16) stored mantissa bits,
 * even by truncation, are off by less than 2^-10 (2^-7) each, so
 * |C - C_fp32| <= 2^-9 (2^-6) of sum_k |a_ik b_kj| with fp32 accumulation.
 * cuBLAS may also pick an fp32 kernel for a case, which only makes the error
 * smaller. */
static void test_gemm_precision(env *e) {
    static const struct {
        kb_matmul_precision p;
        double rtol;
    } modes[] = {{KB_MATMUL_TF32, 0x1p-9}, {KB_MATMUL_BF16, 0x1p-6}};
    const int64_t M = 256, N = 192, K = 64, batch = 3;
    size_t na = (size_t)(batch * M * K), nb = (size_t)(batch * K * N), nc = (size_t)(batch * M * N);
    float *A = host_uniform((int64_t)na, 70, -2, 2), *B = host_uniform((int64_t)nb, 71, -2, 2);
    float *absA = xmalloc(na * 4), *absB = xmalloc(nb * 4), *ref = xmalloc(nc * 4), *sc = xmalloc(nc * 4);
    float *got = xmalloc(nc * 4);
    double *scale = xmalloc(nc * sizeof(double));
    for (size_t i = 0; i < na; i++) absA[i] = fabsf(A[i]);
    for (size_t i = 0; i < nb; i++) absB[i] = fabsf(B[i]);
    kb_gemm_batched_ref(false, true, M, N, K, 1.0f, A, K, M * K, B, K, K * N, 0.0f, ref, N, M * N, batch);
    kb_gemm_batched_ref(false, true, M, N, K, 1.0f, absA, K, M * K, absB, K, K * N, 0.0f, sc, N, M * N, batch);
    for (size_t i = 0; i < nc; i++) scale[i] = sc[i];
    float *dA = to_dev(e, A, na * 4), *dB = to_dev(e, B, nb * 4), *dC = dalloc(e, nc * 4);
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        char name[128];
        const char *pn = kb_matmul_precision_name(modes[m].p);
        if (e->tag[0] && modes[m].p != KB_MATMUL_BF16) continue; /* staging only changes the BF16 mode */
        if (!op_ok(e, kb_cuda_set_matmul(e->ctx.cuda, modes[m].p, &e->err), "kb_cuda_set_matmul")) break;
        snprintf(name, sizeof name, "%sgemm %s 256x192x64 (A B^T)", e->tag, pn);
        if (op_ok(e, kb_gemm_cuda(&e->ctx, false, true, M, N, K, 1.0f, dA, K, dB, K, 0.0f, dC, N, &e->err), name)) {
            to_host(e, got, dC, (size_t)(M * N) * 4);
            check_scaled(e, name, got, ref, scale, M * N, modes[m].rtol);
        }
        snprintf(name, sizeof name, "%sgemm_batched %s 3 x 256x192x64 (A B^T)", e->tag, pn);
        if (op_ok(e, kb_gemm_batched_cuda(&e->ctx, false, true, M, N, K, 1.0f, dA, K, M * K, dB, K, K * N, 0.0f, dC, N,
                                          M * N, batch, &e->err), name)) {
            to_host(e, got, dC, nc * 4);
            check_scaled(e, name, got, ref, scale, (int64_t)nc, modes[m].rtol);
        }
    }
    op_ok(e, kb_cuda_set_matmul(e->ctx.cuda, KB_MATMUL_FP32, &e->err), "kb_cuda_set_matmul back to fp32");
    dfree(e, dA), dfree(e, dB), dfree(e, dC);
    free(A), free(B), free(absA), free(absB), free(ref), free(sc), free(got), free(scale);
}

/* One kb_gemm_bias case: inputs on the host and the device, the reference
 * and its scale (the same product of absolute values). */
typedef struct {
    int64_t rows, in, out;
    int variant; /* 0 no bias, 1 bias, 2 bias at an odd address */
    float *want, *got, *again;
    double *scale;
    float *dx, *dW, *db, *dy;
} gemm_bias_case;

static void gemm_bias_case_make(env *e, gemm_bias_case *c) {
    int64_t rows = c->rows, in = c->in, out = c->out;
    size_t nx = (size_t)(rows * in), nw = (size_t)(out * in), ny = (size_t)(rows * out);
    float *x = host_uniform((int64_t)nx, 90, -1, 1), *W = host_uniform((int64_t)nw, 91, -1, 1);
    float *b = host_uniform(out + 1, 92, -1, 1), *bias = c->variant == 2 ? b + 1 : b;
    float *ax = xmalloc(nx * 4 + 4), *aW = xmalloc(nw * 4 + 4), *ab = xmalloc((size_t)out * 4 + 4);
    float *sc = xmalloc(ny * 4 + 4);
    c->want = xmalloc(ny * 4 + 4), c->got = xmalloc(ny * 4 + 4), c->again = xmalloc(ny * 4 + 4);
    c->scale = xmalloc(ny * sizeof(double) + 8);
    for (size_t i = 0; i < nx; i++) ax[i] = fabsf(x[i]);
    for (size_t i = 0; i < nw; i++) aW[i] = fabsf(W[i]);
    for (int64_t i = 0; i < out; i++) ab[i] = fabsf(bias[i]);
    kb_gemm_bias_ref(c->want, x, W, c->variant ? bias : NULL, rows, in, out);
    kb_gemm_bias_ref(sc, ax, aW, c->variant ? ab : NULL, rows, in, out);
    for (size_t i = 0; i < ny; i++) c->scale[i] = sc[i] > 0 ? sc[i] : 1e-30;
    c->dx = to_dev(e, x, nx * 4), c->dW = to_dev(e, W, nw * 4);
    c->db = to_dev(e, b, (size_t)(out + 1) * 4), c->dy = dalloc(e, ny * 4);
    free(x), free(W), free(b), free(ax), free(aW), free(ab), free(sc);
}

static void gemm_bias_case_free(env *e, gemm_bias_case *c) {
    dfree(e, c->dx), dfree(e, c->dW), dfree(e, c->db), dfree(e, c->dy);
    free(c->want), free(c->got), free(c->again), free(c->scale);
}

/* The case in the context's current matmul precision p, then rerun. */
static void gemm_bias_case_run(env *e, gemm_bias_case *c, kb_matmul_precision p, double rtol) {
    size_t ny = (size_t)(c->rows * c->out);
    const float *dbias = c->variant == 0 ? NULL : c->variant == 2 ? c->db + 1 : c->db;
    char name[160];
    snprintf(name, sizeof name, "%sgemm_bias %s %lldx%lld -> %lld%s", e->tag, kb_matmul_precision_name(p),
             (long long)c->rows, (long long)c->in, (long long)c->out,
             c->variant == 0 ? "" : c->variant == 1 ? " + bias" : " + bias (4-byte aligned)");
    if (!op_ok(e, kb_gemm_bias_cuda(&e->ctx, c->dy, c->dx, c->dW, dbias, c->rows, c->in, c->out, &e->err), name))
        return;
    to_host(e, c->got, c->dy, ny * 4);
    check_scaled(e, name, c->got, c->want, c->scale, (int64_t)ny, rtol);
    snprintf(name + strlen(name), sizeof name - strlen(name), ": rerun bit-identical");
    if (op_ok(e, kb_gemm_bias_cuda(&e->ctx, c->dy, c->dx, c->dW, dbias, c->rows, c->in, c->out, &e->err), name)) {
        to_host(e, c->again, c->dy, ny * 4);
        check_bits(e, name, c->again, c->got, ny * 4, 4);
    }
}

/* kb_gemm_bias (cuBLASLt, bias in the epilogue; the plain GEMM + bias kernel
 * where cuBLASLt has no algorithm) against the reference in each matmul
 * precision, with and without a bias, reruns bit-identical (plans are cached
 * per shape), and a bias pointer that is not 16-byte aligned (fallback).
 * Each case's reference is computed once for all precisions (the plain
 * reference GEMM is most of this test's time on a GPU machine). */
static void test_gemm_bias(env *e) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {300, 257, 129}, {1024, 768, 2304}, {5, 0, 3}, {0, 4, 3}};
    static const struct {
        kb_matmul_precision p;
        double rtol;
    } modes[] = {{KB_MATMUL_FP32, 1e-5}, {KB_MATMUL_TF32, 0x1p-9}, {KB_MATMUL_BF16, 0x1p-6}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int variant = 0; variant < 3; variant++) {
            gemm_bias_case c = {.rows = shapes[si][0], .in = shapes[si][1], .out = shapes[si][2], .variant = variant};
            gemm_bias_case_make(e, &c);
            for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
                if (e->tag[0] && modes[m].p != KB_MATMUL_BF16) continue; /* staging only changes the BF16 mode */
                if (!op_ok(e, kb_cuda_set_matmul(e->ctx.cuda, modes[m].p, &e->err), "kb_cuda_set_matmul")) break;
                gemm_bias_case_run(e, &c, modes[m].p, modes[m].rtol);
            }
            gemm_bias_case_free(e, &c);
        }
    op_ok(e, kb_cuda_set_matmul(e->ctx.cuda, KB_MATMUL_FP32, &e->err), "kb_cuda_set_matmul back to fp32");
}

/* kb_gemm_bias_gelu / kb_gemm_dgelu in the BF16 mode with cuBLASLt's GELU
 * epilogues (a context made with KINDBENCH_LT_GELU=1) against the same ops
 * in a context without them (GEMM, then our gelu_tanh kernels). Whether the
 * epilogues ran is counted (kb_cuda_gemm_counts_of); where cuBLASLt offers
 * no such algorithm the comparisons below are of two equal two-pass runs and
 * are reported as not exercised. Checks:
 *  - pre-activations: the same bf16 products summed in another order,
 *    |d| <= 1e-4 max|pre|;
 *  - the epilogue's GELU against our gelu_tanh reference of its own
 *    pre-activations: |d| <= 2e-4 + 3e-4 |pre| (room for a hardware tanh,
 *    relative error ~2^-11); and that it is the tanh form, not the exact erf
 *    one (which differ by up to 4.7e-4): over |pre| in [1.5, 3.5] the mean
 *    distance to the tanh form is under half that to the erf form;
 *  - dpre = (dy W) gelu'(pre) against the two passes: |d| <= 1e-3 max|dpre|;
 *  - reruns bit-identical. */
static int gelu_close(const float *got, const float *want, const float *pre, size_t n, double *worst) {
    int bad = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]), tol = 2e-4 + 3e-4 * fabs(pre[i]);
        if (!(d <= tol)) bad++;
        if (d > *worst) *worst = d;
    }
    return bad;
}

static void gelu_form(const float *act, const float *pre, size_t n, double *to_tanh, double *to_erf, size_t *count) {
    *to_tanh = *to_erf = 0, *count = 0;
    for (size_t i = 0; i < n; i++) {
        double x = pre[i];
        if (fabs(x) < 1.5 || fabs(x) > 3.5) continue;
        double t = 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        double e = 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
        *to_tanh += fabs(act[i] - t), *to_erf += fabs(act[i] - e), (*count)++;
    }
}

/* e->tag + name in buf (the checks' names in the staged rerun) */
static const char *nm(const env *e, char *buf, const char *name) {
    snprintf(buf, 160, "%s%s", e->tag, name);
    return buf;
}

static void test_gemm_gelu(env *e, int staged) {
    char nmbuf[7][160];
    const int64_t rows = 1024, in = 256, out = 512, k2 = 384;
    size_t nx = (size_t)(rows * in), nw = (size_t)(out * in), ny = (size_t)(rows * out);
    size_t ndy = (size_t)(rows * k2), nw2 = (size_t)(k2 * out);
    float *x = host_uniform((int64_t)nx, 95, -1, 1), *W = host_uniform((int64_t)nw, 96, -0.25f, 0.25f);
    float *b = host_uniform(out, 97, -0.5f, 0.5f), *dy = host_uniform((int64_t)ndy, 98, -1, 1);
    float *W2 = host_uniform((int64_t)nw2, 99, -0.1f, 0.1f);
    float *h[7];
    for (int i = 0; i < 7; i++) h[i] = calloc(ny, 4);
    float *pre_lt = h[0], *act_lt = h[1], *pre_pl = h[2], *act_pl = h[3], *dpre_lt = h[4], *dpre_pl = h[5];
    float *act_ref = h[6];
    char *old = getenv("KINDBENCH_LT_GELU") ? strdup(getenv("KINDBENCH_LT_GELU")) : NULL;
    kb_ctx lt;
    kb_ctx_opts o = {.matmul = KB_MATMUL_BF16};
    setenv("KINDBENCH_LT_GELU", "1", 1);
    int made = kb_ctx_init(&lt, KB_DEV_CUDA, &o, &e->err) == 0;
    if (old) setenv("KINDBENCH_LT_GELU", old, 1);
    else unsetenv("KINDBENCH_LT_GELU");
    free(old);
    if (!op_ok(e, made ? 0 : -1, "context with KINDBENCH_LT_GELU=1")) goto done;
    kb_cuda_set_bf16_operands(lt.cuda, staged);
    if (!op_ok(e, kb_cuda_set_matmul(e->ctx.cuda, KB_MATMUL_BF16, &e->err), "kb_cuda_set_matmul bf16")) goto done_lt;
    kb_ctx *cx[2] = {&lt, &e->ctx};
    float *outs[2][3] = {{pre_lt, act_lt, dpre_lt}, {pre_pl, act_pl, dpre_pl}};
    int ran[2] = {0, 0};
    for (int c = 0; c < 2; c++) { /* the same inputs through each context */
        float *dx = to_dev(e, x, nx * 4), *dW = to_dev(e, W, nw * 4), *db = to_dev(e, b, (size_t)out * 4);
        float *ddy = to_dev(e, dy, ndy * 4), *dW2 = to_dev(e, W2, nw2 * 4);
        float *dpre = dalloc(e, ny * 4), *dact = dalloc(e, ny * 4), *dd = dalloc(e, ny * 4);
        const char *name = c == 0 ? "gemm_bias_gelu + gemm_dgelu, GELU epilogues allowed" : "the same, two passes";
        if (op_ok(e, kb_gemm_bias_gelu(cx[c], dact, dpre, dx, dW, db, rows, in, out, &e->err), name) &&
            op_ok(e, kb_gemm_dgelu(cx[c], dd, ddy, dW2, dpre, rows, out, k2, &e->err), name) &&
            op_ok(e, kb_ctx_sync(cx[c], &e->err), name)) {
            ran[c] = 1;
            to_host(e, outs[c][0], dpre, ny * 4), to_host(e, outs[c][1], dact, ny * 4), to_host(e, outs[c][2], dd, ny * 4);
            if (c == 0 && op_ok(e, kb_gemm_bias_gelu(cx[c], dact, dpre, dx, dW, db, rows, in, out, &e->err), name) &&
                op_ok(e, kb_gemm_dgelu(cx[c], dd, ddy, dW2, dpre, rows, out, k2, &e->err), "rerun") &&
                op_ok(e, kb_ctx_sync(cx[c], &e->err), "rerun")) {
                float *again = xmalloc(ny * 4);
                to_host(e, again, dact, ny * 4);
                check_bits(e, nm(e, nmbuf[0], "gemm_bias_gelu, epilogues allowed: rerun bit-identical"), again, act_lt, ny * 4, 4);
                to_host(e, again, dd, ny * 4);
                check_bits(e, nm(e, nmbuf[1], "gemm_dgelu, epilogues allowed: rerun bit-identical"), again, dpre_lt, ny * 4, 4);
                free(again);
            }
        }
        float *bufs[] = {dx, dW, db, ddy, dW2, dpre, dact, dd};
        for (int i = 0; i < 8; i++) dfree(e, bufs[i]); /* one device, one address space: either context frees */
    }
    long long fused = kb_cuda_gemm_counts_of(lt.cuda).gelu_epilogue;
    long long plain = kb_cuda_gemm_counts_of(e->ctx.cuda).gelu_epilogue;
    KBT_CHECK(&e->t, plain == 0, nm(e, nmbuf[2], "no GELU epilogue without KINDBENCH_LT_GELU=1"), "%lld fused calls", plain);
    printf("     %sGELU epilogues: %lld of 4 calls fused%s\n", e->tag, fused,
           fused ? "" : " (cuBLASLt offered no algorithm: the comparisons below are of two two-pass runs)");
    if (ran[0] && ran[1]) {
        kb_gelu_tanh_fwd_ref(act_ref, pre_lt, (int64_t)ny); /* our GELU of the epilogue's own pre-activations */
        kbt_close(&e->t, nm(e, nmbuf[3], "gemm_bias_gelu pre-activation vs two passes (|d| <= 1e-4 max|pre|)"), pre_lt, pre_pl,
                  (int64_t)ny, 1e-4 * kbt_max_abs(pre_pl, (int64_t)ny), 0.0);
        double worst, tt, te;
        size_t cnt;
        int bad = gelu_close(act_lt, act_ref, pre_lt, ny, &worst);
        KBT_CHECK(&e->t, bad == 0, nm(e, nmbuf[4], "gemm_bias_gelu: GELU vs gelu_tanh of its pre-activation (|d| <= 2e-4 + 3e-4|x|)"),
                  "%d elements outside, worst |d| %.3g", bad, worst);
        printf("     worst |GELU - gelu_tanh| %.3g\n", worst);
        gelu_form(act_lt, pre_lt, ny, &tt, &te, &cnt);
        KBT_CHECK(&e->t, cnt > 100 && tt < 0.5 * te, nm(e, nmbuf[5], "gemm_bias_gelu: the tanh form of GELU, not the erf one"),
                  "over %zu values with |x| in [1.5, 3.5]: mean distance %.3g to tanh form, %.3g to erf form", cnt,
                  cnt ? tt / cnt : 0.0, cnt ? te / cnt : 0.0);
        kbt_close(&e->t, nm(e, nmbuf[6], "gemm_dgelu vs two passes (|d| <= 1e-3 max|dpre|)"), dpre_lt, dpre_pl, (int64_t)ny,
                  1e-3 * kbt_max_abs(dpre_pl, (int64_t)ny), 0.0);
    }
    op_ok(e, kb_cuda_set_matmul(e->ctx.cuda, KB_MATMUL_FP32, &e->err), "kb_cuda_set_matmul back to fp32");
done_lt:
    kb_ctx_free(&lt);
done:
    for (int i = 0; i < 7; i++) free(h[i]);
    free(x), free(W), free(b), free(dy), free(W2);
}

/* kb_gemm_wgrad (dW += dy^T x, db += column sums of dy). FP32 mode: against
 * the reference (GEMM and sum_rows tolerances above). BF16 mode, a context
 * made with KINDBENCH_LT_BGRAD=1 (cuBLASLt's BGRADB epilogue) against one
 * without it (kb_gemm + kb_sum_rows), both accumulating into the same start:
 *  - dW: the same bf16 products summed in another order, |d| <= 1e-4 max|dW|;
 *  - db: per column |d| <= 2^-8 sum_r |dy| + 1e-6 (the epilogue may sum the
 *    bf16 copies of dy it multiplies);
 *  - reruns bit-identical; the epilogue never runs without the switch.
 * Where cuBLASLt offers no such algorithm the comparison is of two equal
 * two-pass runs and is reported as not exercised. */
static void test_gemm_wgrad(env *e, int staged) {
    char nmbuf[6][160];
    const int64_t rows = 2048, in = 384, out = 256;
    size_t ndy = (size_t)(rows * out), nx = (size_t)(rows * in), nw = (size_t)(out * in);
    float *dy = host_uniform((int64_t)ndy, 101, -1, 1), *x = host_uniform((int64_t)nx, 102, -1, 1);
    /* db starts far from 0 (|start| >> the db tolerance below): an epilogue that overwrote db
     * instead of adding to it could not pass */
    float *w0 = host_uniform((int64_t)nw, 103, -0.5f, 0.5f), *b0 = host_uniform(out, 104, 100.0f, 200.0f);
    float *hW[3], *hb[3];
    for (int i = 0; i < 3; i++) hW[i] = xmalloc(nw * 4), hb[i] = xmalloc((size_t)out * 4);
    float *ddy = to_dev(e, dy, ndy * 4), *dx = to_dev(e, x, nx * 4);
    float *dW = to_dev(e, w0, nw * 4), *db = to_dev(e, b0, (size_t)out * 4);
    if (!staged) { /* FP32 against the reference */
        memcpy(hW[2], w0, nw * 4), memcpy(hb[2], b0, (size_t)out * 4);
        kb_gemm_ref(true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, hW[2], in);
        kb_sum_rows_ref(hb[2], dy, rows, out);
        if (op_ok(e, kb_gemm_wgrad(&e->ctx, dW, db, ddy, dx, rows, in, out, &e->err), "gemm_wgrad fp32")) {
            to_host(e, hW[0], dW, nw * 4), to_host(e, hb[0], db, (size_t)out * 4);
            /* |x| <= 1, |dW start| <= 0.5, db start <= 200: every element's sum_r |dy||x| + |start| is
             * at most the largest column sum of |dy| plus 0.5 (dW) or 200 (db) */
            double scale = 0;
            for (int64_t c = 0; c < out; c++) {
                double s = 0;
                for (int64_t r = 0; r < rows; r++) s += fabs(dy[r * out + c]);
                if (s > scale) scale = s;
            }
            kbt_close(&e->t, "gemm_wgrad fp32 dW vs reference (|d| <= 1e-5 (max_c sum_r|dy| + 0.5))", hW[0], hW[2],
                      (int64_t)nw, 1e-5 * (scale + 0.5), 0.0);
            kbt_close(&e->t, "gemm_wgrad fp32 db vs reference (|d| <= 1e-5 (max_c sum_r|dy| + 200))", hb[0], hb[2], out,
                      1e-5 * (scale + 200.0), 0.0);
        }
    }
    char *old = getenv("KINDBENCH_LT_BGRAD") ? strdup(getenv("KINDBENCH_LT_BGRAD")) : NULL;
    kb_ctx lt;
    kb_ctx_opts o = {.matmul = KB_MATMUL_BF16};
    setenv("KINDBENCH_LT_BGRAD", "1", 1);
    int made = kb_ctx_init(&lt, KB_DEV_CUDA, &o, &e->err) == 0;
    if (old) setenv("KINDBENCH_LT_BGRAD", old, 1);
    else unsetenv("KINDBENCH_LT_BGRAD");
    free(old);
    if (!op_ok(e, made ? 0 : -1, "context with KINDBENCH_LT_BGRAD=1")) goto done;
    kb_cuda_set_bf16_operands(lt.cuda, staged);
    if (!op_ok(e, kb_cuda_set_matmul(e->ctx.cuda, KB_MATMUL_BF16, &e->err), "kb_cuda_set_matmul bf16")) goto done_lt;
    kb_ctx *cx[2] = {&lt, &e->ctx};
    int ran = 1;
    for (int c = 0; c < 2 && ran; c++)
        for (int run = 0; run < (c == 0 ? 2 : 1) && ran; run++) { /* the epilogue context twice: reruns */
            kb_copy_to_dev(&e->ctx, dW, w0, nw * 4, &e->err), kb_copy_to_dev(&e->ctx, db, b0, (size_t)out * 4, &e->err);
            ran = op_ok(e, kb_gemm_wgrad(cx[c], dW, db, ddy, dx, rows, in, out, &e->err),
                        c ? "gemm_wgrad bf16, two passes" : "gemm_wgrad bf16, epilogue allowed") &&
                  op_ok(e, kb_ctx_sync(cx[c], &e->err), "sync");
            if (!ran) break;
            int slot = c == 0 && run == 1 ? 2 : c;
            to_host(e, hW[slot], dW, nw * 4), to_host(e, hb[slot], db, (size_t)out * 4);
        }
    if (ran) {
        check_bits(e, nm(e, nmbuf[0], "gemm_wgrad, epilogue allowed: rerun dW bit-identical"), hW[2], hW[0], nw * 4, 4);
        check_bits(e, nm(e, nmbuf[1], "gemm_wgrad, epilogue allowed: rerun db bit-identical"), hb[2], hb[0],
                   (size_t)out * 4, 4);
        kbt_close(&e->t, nm(e, nmbuf[2], "gemm_wgrad dW vs two passes (|d| <= 1e-4 max|dW|)"), hW[0], hW[1],
                  (int64_t)nw, 1e-4 * kbt_max_abs(hW[1], (int64_t)nw), 0.0);
        int bad = 0;
        double worst = 0;
        for (int64_t c = 0; c < out; c++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++) s += fabs(dy[r * out + c]);
            double d = fabs((double)hb[0][c] - hb[1][c]), tol = s / 256.0 + 1e-6;
            if (!(d <= tol)) bad++;
            if (d / tol > worst) worst = d / tol;
        }
        KBT_CHECK(&e->t, bad == 0, nm(e, nmbuf[3], "gemm_wgrad db vs two passes (|d| <= 2^-8 sum_r|dy| per column)"),
                  "%d columns outside (worst %.2g of tolerance)", bad, worst);
    }
    long long fused = kb_cuda_gemm_counts_of(lt.cuda).bgrad_epilogue;
    long long plain = kb_cuda_gemm_counts_of(e->ctx.cuda).bgrad_epilogue;
    KBT_CHECK(&e->t, plain == 0, nm(e, nmbuf[4], "no bias-gradient epilogue without KINDBENCH_LT_BGRAD=1"),
              "%lld epilogue calls", plain);
    printf("     %sbias-gradient epilogue: %lld of 2 calls%s\n", e->tag, fused,
           fused ? "" : " (cuBLASLt offered no algorithm: the comparisons above are of two two-pass runs)");
    op_ok(e, kb_cuda_set_matmul(e->ctx.cuda, KB_MATMUL_FP32, &e->err), "kb_cuda_set_matmul back to fp32");
done_lt:
    kb_ctx_free(&lt);
done:
    dfree(e, ddy), dfree(e, dx), dfree(e, dW), dfree(e, db);
    for (int i = 0; i < 3; i++) free(hW[i]), free(hb[i]);
    free(dy), free(x), free(w0), free(b0);
}

/* -------------------------------------------------------------- elementwise */

static const int64_t sizes[] = {0, 1, 7, 1031, (1 << 20) + 3};
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))

typedef enum {
    EW_ADD,
    EW_MUL,
    EW_AXPY,
    EW_SCALE,
    EW_FILL,
    EW_GELU_F,
    EW_GELU_B,
    EW_GELU_BS,
    EW_SILU_F,
    EW_SILU_B,
    EW_RELU_F,
    EW_RELU_B,
    EW_COUNT
} ew_op;
static const char *const ew_names[EW_COUNT] = {"add",      "mul",           "axpy",          "scale",
                                               "fill",     "gelu_tanh_fwd", "gelu_tanh_bwd", "gelu_tanh_bwd (set)",
                                               "silu_fwd", "silu_bwd",      "relu_fwd",      "relu_bwd"};

/* Runs op on the GPU into dout (which holds `init`); returns the rc. */
static int ew_run_gpu(env *e, ew_op op, float *dout, const float *da, const float *db, int64_t n) {
    kb_ctx *c = &e->ctx;
    kb_err *err = &e->err;
    switch (op) {
    case EW_ADD: return kb_add_cuda(c, dout, da, db, n, err);
    case EW_MUL: return kb_mul_cuda(c, dout, da, db, n, err);
    case EW_AXPY: return kb_axpy_cuda(c, dout, -0.75f, da, n, err);
    case EW_SCALE: return kb_scale_cuda(c, dout, 1.3f, n, err);
    case EW_FILL: return kb_fill_cuda(c, dout, -2.5f, n, err);
    case EW_GELU_F: return kb_gelu_tanh_fwd_cuda(c, dout, da, n, err);
    case EW_GELU_B: return kb_gelu_tanh_bwd_cuda(c, dout, da, db, n, KB_GRAD_ADD, err);
    case EW_GELU_BS: return kb_gelu_tanh_bwd_cuda(c, dout, da, db, n, KB_GRAD_SET, err);
    case EW_SILU_F: return kb_silu_fwd_cuda(c, dout, da, n, err);
    case EW_SILU_B: return kb_silu_bwd_cuda(c, dout, da, db, n, err);
    case EW_RELU_F: return kb_relu_fwd_cuda(c, dout, da, n, err);
    case EW_RELU_B: return kb_relu_bwd_cuda(c, dout, da, db, n, err);
    default: return -1;
    }
}

static void ew_run_ref(ew_op op, float *out, const float *a, const float *b, int64_t n) {
    switch (op) {
    case EW_ADD: kb_add_ref(out, a, b, n); break;
    case EW_MUL: kb_mul_ref(out, a, b, n); break;
    case EW_AXPY: kb_axpy_ref(out, -0.75f, a, n); break;
    case EW_SCALE: kb_scale_ref(out, 1.3f, n); break;
    case EW_FILL: kb_fill_ref(out, -2.5f, n); break;
    case EW_GELU_F: kb_gelu_tanh_fwd_ref(out, a, n); break;
    case EW_GELU_B: kb_gelu_tanh_bwd_ref(out, a, b, n, KB_GRAD_ADD); break;
    case EW_GELU_BS: kb_gelu_tanh_bwd_ref(out, a, b, n, KB_GRAD_SET); break;
    case EW_SILU_F: kb_silu_fwd_ref(out, a, n); break;
    case EW_SILU_B: kb_silu_bwd_ref(out, a, b, n); break;
    case EW_RELU_F: kb_relu_fwd_ref(out, a, n); break;
    case EW_RELU_B: kb_relu_bwd_ref(out, a, b, n); break;
    default: break;
    }
}

static void test_elementwise(env *e) {
    for (int op = 0; op < EW_COUNT; op++)
        for (int si = 0; si < NSIZES; si++) {
            int64_t n = sizes[si];
            /* a in [-12, 12] with exact zeros and some extremes sprinkled in; b, dout in [-1, 1].
             * No NaN and no inputs that make NaN: NaN bits differ between x86 and CUDA. */
            static const float extremes[] = {0.0f,   -0.0f,   1e4f,   -1e4f,   87.0f, -87.0f, 100.0f, -100.0f,
                                             1e-30f, -1e-30f, 1e-40f, -1e-40f, 0.5f,  -0.5f,  3.0f,   -3.0f};
            float *a = host_uniform(n, 10, -12, 12), *b = host_uniform(n, 11, -1, 1),
                  *init = host_uniform(n, 12, -1, 1);
            for (int64_t i = 0; i < n; i += 97) a[i] = 0.0f;
            for (int64_t k = 0; k < (int64_t)(sizeof extremes / sizeof extremes[0]) && 13 * k + 1 < n; k++)
                a[13 * k + 1] = extremes[k];
            float *ref = fdup(init, n), *got = xmalloc((size_t)n * 4 + 4), *again = xmalloc((size_t)n * 4 + 4);
            ew_run_ref((ew_op)op, ref, a, b, n);
            float *da = to_dev(e, a, (size_t)n * 4), *db = to_dev(e, b, (size_t)n * 4),
                  *dout = to_dev(e, init, (size_t)n * 4);
            char name[160];
            snprintf(name, sizeof name, "%s n=%lld", ew_names[op], (long long)n);
            if (op_ok(e, ew_run_gpu(e, (ew_op)op, dout, da, db, n), name)) {
                to_host(e, got, dout, (size_t)n * 4);
                check_bits(e, name, got, ref, (size_t)n * 4, 4);
                if (n == sizes[NSIZES - 1]) {
                    char rname[200];
                    snprintf(rname, sizeof rname, "rerun bit-identical: %s", name);
                    if (kb_copy_to_dev(&e->ctx, dout, init, (size_t)n * 4, &e->err)) die(e, "kb_copy_to_dev");
                    if (op_ok(e, ew_run_gpu(e, (ew_op)op, dout, da, db, n), rname)) {
                        to_host(e, again, dout, (size_t)n * 4);
                        check_bits(e, rname, again, got, (size_t)n * 4, 4);
                    }
                }
            }
            dfree(e, da);
            dfree(e, db);
            dfree(e, dout);
            free(a);
            free(b);
            free(init);
            free(ref);
            free(got);
            free(again);
        }
}

/* In place: out aliases an input (models do x = x + y, x *= a). */
static void test_inplace(env *e) {
    int64_t n = 4099;
    float *a = host_uniform(n, 20, -2, 2), *b = host_uniform(n, 21, -2, 2);
    float *ref = fdup(a, n), *got = xmalloc((size_t)n * 4);
    kb_add_ref(ref, ref, b, n);
    float *da = to_dev(e, a, (size_t)n * 4), *db = to_dev(e, b, (size_t)n * 4);
    if (op_ok(e, kb_add_cuda(&e->ctx, da, da, db, n, &e->err), "add in place")) {
        to_host(e, got, da, (size_t)n * 4);
        check_bits(e, "add in place (out == a)", got, ref, (size_t)n * 4, 4);
    }
    dfree(e, da);
    dfree(e, db);
    free(a);
    free(b);
    free(ref);
    free(got);
}

/* ---------------------------------------------------- add_bias and sum_rows */

typedef struct {
    int64_t rows, cols;
} rc_shape;

static const rc_shape rc_shapes[] = {{1, 1},     {7, 3},      {3, 7}, {100000, 3}, {3, 5000},
                                     {1, 65536}, {513, 1152}, {0, 5}, {5, 0},      {262145, 2}};
#define NRC ((int)(sizeof rc_shapes / sizeof rc_shapes[0]))

static void test_bias_and_sum_rows(env *e) {
    for (int si = 0; si < NRC; si++) {
        int64_t rows = rc_shapes[si].rows, cols = rc_shapes[si].cols, n = rows * cols;
        float *in = host_uniform(n, 30, -1, 1), *bias = host_uniform(cols, 31, -1, 1),
              *acc0 = host_uniform(cols, 32, -1, 1);
        float *din = to_dev(e, in, (size_t)n * 4), *dbias = to_dev(e, bias, (size_t)cols * 4);
        float *got = xmalloc((size_t)(n > cols ? n : cols) * 4 + 4), *again = xmalloc((size_t)cols * 4 + 4);
        char name[160];

        /* add_bias: exact */
        float *ref = fdup(in, n);
        kb_add_bias_ref(ref, bias, rows, cols);
        snprintf(name, sizeof name, "add_bias rows=%lld cols=%lld", (long long)rows, (long long)cols);
        if (op_ok(e, kb_add_bias_cuda(&e->ctx, din, dbias, rows, cols, &e->err), name)) {
            to_host(e, got, din, (size_t)n * 4);
            check_bits(e, name, got, ref, (size_t)n * 4, 4);
        }
        free(ref);
        if (n && kb_copy_to_dev(&e->ctx, din, in, (size_t)n * 4, &e->err)) die(e, "kb_copy_to_dev");

        /* sum_rows: accumulates into out */
        float *sref = fdup(acc0, cols);
        kb_sum_rows_ref(sref, in, rows, cols);
        double *scale = xmalloc((size_t)cols * sizeof(double) + 8);
        for (int64_t c = 0; c < cols; c++) {
            double s = fabs((double)acc0[c]);
            for (int64_t r = 0; r < rows; r++) s += fabs((double)in[r * cols + c]);
            scale[c] = s;
        }
        float *dacc = to_dev(e, acc0, (size_t)cols * 4);
        snprintf(name, sizeof name, "sum_rows rows=%lld cols=%lld", (long long)rows, (long long)cols);
        if (op_ok(e, kb_sum_rows_cuda(&e->ctx, dacc, din, rows, cols, &e->err), name)) {
            to_host(e, got, dacc, (size_t)cols * 4);
            check_scaled(e, name, got, sref, scale, cols, 1e-5);
            char rname[200];
            snprintf(rname, sizeof rname, "rerun bit-identical: %s", name);
            if (cols && kb_copy_to_dev(&e->ctx, dacc, acc0, (size_t)cols * 4, &e->err)) die(e, "kb_copy_to_dev");
            if (op_ok(e, kb_sum_rows_cuda(&e->ctx, dacc, din, rows, cols, &e->err), rname)) {
                to_host(e, again, dacc, (size_t)cols * 4);
                check_bits(e, rname, again, got, (size_t)cols * 4, 4);
            }
        }
        dfree(e, dacc);
        dfree(e, din);
        dfree(e, dbias);
        free(sref);
        free(scale);
        free(in);
        free(bias);
        free(acc0);
        free(got);
        free(again);
    }
}

/* ------------------------------------------------------------- sum (double) */

static void test_sum(env *e) {
    static const int64_t ns[] = {0, 1, 7, 256, 257, 1000003, 5000011};
    for (size_t si = 0; si < sizeof ns / sizeof ns[0]; si++) {
        int64_t n = ns[si];
        float *in = host_uniform(n, 40, -1, 1);
        double want = 0, absum = 0;
        kb_sum_ref(&want, in, n);
        for (int64_t i = 0; i < n; i++) absum += fabs((double)in[i]);
        float *din = to_dev(e, in, (size_t)n * 4);
        double *dres = dalloc(e, sizeof(double));
        char name[160];
        double got = -1, again = -2, got_host = -3;
        snprintf(name, sizeof name, "sum n=%lld (device out)", (long long)n);
        if (op_ok(e, kb_sum_cuda(&e->ctx, dres, din, n, &e->err), name)) {
            to_host(e, &got, dres, sizeof got);
            KBT_CHECK(&e->t, fabs(got - want) <= 1e-12 * absum, name, "got %.17g want %.17g (sum|x| %.6g)", got, want,
                      absum);
            snprintf(name, sizeof name, "rerun bit-identical: sum n=%lld", (long long)n);
            if (op_ok(e, kb_sum_cuda(&e->ctx, dres, din, n, &e->err), name)) {
                to_host(e, &again, dres, sizeof again);
                check_bits(e, name, &again, &got, sizeof got, sizeof got);
            }
            snprintf(name, sizeof name, "sum n=%lld (host out, same bits)", (long long)n);
            if (op_ok(e, kb_sum_cuda(&e->ctx, &got_host, din, n, &e->err), name))
                check_bits(e, name, &got_host, &got, sizeof got, sizeof got);
        }
        dfree(e, din);
        dfree(e, dres);
        free(in);
    }
}

/* ---------------------------------------------------------------- layernorm */

static void test_layernorm(env *e) {
    static const rc_shape shapes[] = {{1, 1}, {3, 7}, {17, 1152}, {4096, 3}, {2, 5000}, {5, 33}, {0, 8}, {70000, 64}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int affine = 0; affine < 3; affine++) { /* 0: weight+bias, 1: none, 2: weight only */
            int64_t rows = shapes[si].rows, cols = shapes[si].cols, n = rows * cols;
            float eps = 1e-5f;
            float *x = host_uniform(n, 50, -2, 3), *w = affine == 1 ? NULL : host_uniform(cols, 51, 0.5f, 1.5f);
            float *b = affine == 0 ? host_uniform(cols, 52, -0.5f, 0.5f) : NULL;
            float *dy = host_uniform(n, 53, -1, 1), *dx0 = host_uniform(n, 54, -1, 1);
            float *dw0 = host_uniform(cols, 55, -1, 1), *db0 = host_uniform(cols, 56, -1, 1);
            /* reference */
            float *out = xmalloc((size_t)n * 4 + 4), *mean = xmalloc((size_t)rows * 4 + 4),
                  *rstd = xmalloc((size_t)rows * 4 + 4);
            float *dx = fdup(dx0, n), *dw = fdup(dw0, cols), *db = fdup(db0, cols);
            kb_layernorm_fwd_ref(out, mean, rstd, x, w, b, rows, cols, eps);
            bool want_dw = affine != 1, want_db = affine == 0;
            kb_layernorm_bwd_ref(dx, want_dw ? dw : NULL, want_db ? db : NULL, dy, x, w, mean, rstd, rows, cols);
            /* GPU */
            float *dX = to_dev(e, x, (size_t)n * 4), *dW = w ? to_dev(e, w, (size_t)cols * 4) : NULL;
            float *dB = b ? to_dev(e, b, (size_t)cols * 4) : NULL, *dOut = dalloc(e, (size_t)n * 4);
            float *dMean = dalloc(e, (size_t)rows * 4), *dRstd = dalloc(e, (size_t)rows * 4);
            float *dDy = to_dev(e, dy, (size_t)n * 4), *dDx = to_dev(e, dx0, (size_t)n * 4);
            float *dDw = to_dev(e, dw0, (size_t)cols * 4), *dDb = to_dev(e, db0, (size_t)cols * 4);
            int64_t gn = n > rows ? n : rows; /* host buffers for any of out, mean, dweight */
            gn = gn > cols ? gn : cols;
            float *g = xmalloc((size_t)gn * 4 + 4), *g2 = xmalloc((size_t)gn * 4 + 4);
            char name[200], tag[120];
            snprintf(tag, sizeof tag, "rows=%lld cols=%lld %s", (long long)rows, (long long)cols,
                     affine == 0   ? "weight+bias"
                     : affine == 1 ? "no affine"
                                   : "weight only");
            snprintf(name, sizeof name, "layernorm_fwd %s", tag);
            if (op_ok(e, kb_layernorm_fwd_cuda(&e->ctx, dOut, dMean, dRstd, dX, dW, dB, rows, cols, eps, &e->err),
                      name)) {
                to_host(e, g, dOut, (size_t)n * 4);
                kbt_close(&e->t, name, g, out, n, 1e-5, 1e-5);
                snprintf(name, sizeof name, "layernorm_fwd mean %s", tag);
                to_host(e, g, dMean, (size_t)rows * 4);
                kbt_close(&e->t, name, g, mean, rows, 1e-6, 1e-5);
                snprintf(name, sizeof name, "layernorm_fwd rstd %s", tag);
                to_host(e, g, dRstd, (size_t)rows * 4);
                kbt_close(&e->t, name, g, rstd, rows, 0, 1e-5);
                /* backward from the reference's saved statistics, so that only the backward is measured */
                if (rows && kb_copy_to_dev(&e->ctx, dMean, mean, (size_t)rows * 4, &e->err)) die(e, "copy");
                if (rows && kb_copy_to_dev(&e->ctx, dRstd, rstd, (size_t)rows * 4, &e->err)) die(e, "copy");
                snprintf(name, sizeof name, "layernorm_bwd %s", tag);
                if (op_ok(e,
                          kb_layernorm_bwd_cuda(&e->ctx, dDx, want_dw ? dDw : NULL, want_db ? dDb : NULL, dDy, dX, dW,
                                                dMean, dRstd, rows, cols, &e->err),
                          name)) {
                    snprintf(name, sizeof name, "layernorm_bwd dinp %s", tag);
                    to_host(e, g, dDx, (size_t)n * 4);
                    kbt_close(&e->t, name, g, dx, n, 1e-5, 1e-5);
                    double *scale_w = xmalloc((size_t)cols * 8 + 8), *scale_b = xmalloc((size_t)cols * 8 + 8);
                    for (int64_t c = 0; c < cols; c++) {
                        scale_w[c] = fabs((double)dw0[c]);
                        scale_b[c] = fabs((double)db0[c]);
                        for (int64_t r = 0; r < rows; r++) {
                            double xh = ((double)x[r * cols + c] - mean[r]) * rstd[r];
                            scale_w[c] += fabs(dy[r * cols + c] * xh);
                            scale_b[c] += fabs((double)dy[r * cols + c]);
                        }
                    }
                    snprintf(name, sizeof name, "layernorm_bwd dweight %s", tag);
                    to_host(e, g, dDw, (size_t)cols * 4);
                    check_scaled(e, name, g, dw, scale_w, cols, 1e-5);
                    snprintf(name, sizeof name, "layernorm_bwd dbias %s", tag);
                    to_host(e, g, dDb, (size_t)cols * 4);
                    check_scaled(e, name, g, db, scale_b, cols, 1e-5);
                    free(scale_w);
                    free(scale_b);
                    /* rerun of fwd + bwd: bit-identical */
                    if (affine == 0 && n) {
                        float *first = xmalloc((size_t)(n + 2 * cols) * 4);
                        to_host(e, first, dDx, (size_t)n * 4);
                        to_host(e, first + n, dDw, (size_t)cols * 4);
                        to_host(e, first + n + cols, dDb, (size_t)cols * 4);
                        to_host(e, g, dOut, (size_t)n * 4);
                        if (kb_copy_to_dev(&e->ctx, dDx, dx0, (size_t)n * 4, &e->err) ||
                            kb_copy_to_dev(&e->ctx, dDw, dw0, (size_t)cols * 4, &e->err) ||
                            kb_copy_to_dev(&e->ctx, dDb, db0, (size_t)cols * 4, &e->err))
                            die(e, "copy");
                        snprintf(name, sizeof name, "rerun bit-identical: layernorm fwd+bwd %s", tag);
                        int rc =
                            kb_layernorm_fwd_cuda(&e->ctx, dOut, dMean, dRstd, dX, dW, dB, rows, cols, eps, &e->err);
                        if (!rc) rc = kb_copy_to_dev(&e->ctx, dMean, mean, (size_t)rows * 4, &e->err);
                        if (!rc) rc = kb_copy_to_dev(&e->ctx, dRstd, rstd, (size_t)rows * 4, &e->err);
                        if (!rc)
                            rc = kb_layernorm_bwd_cuda(&e->ctx, dDx, dDw, dDb, dDy, dX, dW, dMean, dRstd, rows, cols,
                                                       &e->err);
                        if (op_ok(e, rc, name)) {
                            float *second = xmalloc((size_t)(n + 2 * cols) * 4);
                            to_host(e, g2, dOut, (size_t)n * 4);
                            to_host(e, second, dDx, (size_t)n * 4);
                            to_host(e, second + n, dDw, (size_t)cols * 4);
                            to_host(e, second + n + cols, dDb, (size_t)cols * 4);
                            snprintf(name, sizeof name, "rerun bit-identical: layernorm_fwd %s", tag);
                            check_bits(e, name, g2, g, (size_t)n * 4, 4);
                            snprintf(name, sizeof name, "rerun bit-identical: layernorm_bwd %s", tag);
                            check_bits(e, name, second, first, (size_t)(n + 2 * cols) * 4, 4);
                            free(second);
                        }
                        free(first);
                    }
                }
            }
            float *devs[] = {dX, dW, dB, dOut, dMean, dRstd, dDy, dDx, dDw, dDb};
            for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) dfree(e, devs[i]);
            float *hosts[] = {x, w, b, dy, dx0, dw0, db0, out, mean, rstd, dx, dw, db, g, g2};
            for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) free(hosts[i]);
        }
}

/* ------------------------------------------------------------------ softmax */

static void test_softmax(env *e) {
    static const rc_shape shapes[] = {{1, 1}, {5, 13}, {300, 257}, {2, 4097}, {10000, 2}, {0, 5}, {3, 0}, {64, 256}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t rows = shapes[si].rows, cols = shapes[si].cols, n = rows * cols;
        float *x = host_uniform(n, 60, -10, 10), *dy = host_uniform(n, 61, -1, 1), *dx0 = host_uniform(n, 62, -1, 1);
        float *y = xmalloc((size_t)n * 4 + 4), *dx = fdup(dx0, n), *g = xmalloc((size_t)n * 4 + 4),
              *g2 = xmalloc((size_t)n * 4 + 4), *yg = xmalloc((size_t)n * 4 + 4);
        kb_softmax_fwd_ref(y, x, rows, cols);
        kb_softmax_bwd_ref(dx, dy, y, rows, cols);
        float *dX = to_dev(e, x, (size_t)n * 4), *dY = dalloc(e, (size_t)n * 4), *dDy = to_dev(e, dy, (size_t)n * 4),
              *dDx = to_dev(e, dx0, (size_t)n * 4);
        char name[160];
        snprintf(name, sizeof name, "softmax_fwd rows=%lld cols=%lld", (long long)rows, (long long)cols);
        if (op_ok(e, kb_softmax_fwd_cuda(&e->ctx, dY, dX, rows, cols, &e->err), name)) {
            to_host(e, yg, dY, (size_t)n * 4);
            kbt_close(&e->t, name, yg, y, n, 1e-7, 1e-5);
            snprintf(name, sizeof name, "rerun bit-identical: softmax_fwd rows=%lld cols=%lld", (long long)rows,
                     (long long)cols);
            if (op_ok(e, kb_softmax_fwd_cuda(&e->ctx, dY, dX, rows, cols, &e->err), name)) {
                to_host(e, g2, dY, (size_t)n * 4);
                check_bits(e, name, g2, yg, (size_t)n * 4, 4);
            }
        }
        /* backward from the reference's y */
        if (n && kb_copy_to_dev(&e->ctx, dY, y, (size_t)n * 4, &e->err)) die(e, "copy");
        snprintf(name, sizeof name, "softmax_bwd rows=%lld cols=%lld", (long long)rows, (long long)cols);
        if (op_ok(e, kb_softmax_bwd_cuda(&e->ctx, dDx, dDy, dY, rows, cols, &e->err), name)) {
            to_host(e, g, dDx, (size_t)n * 4);
            kbt_close(&e->t, name, g, dx, n, 1e-6, 1e-5);
            snprintf(name, sizeof name, "rerun bit-identical: softmax_bwd rows=%lld cols=%lld", (long long)rows,
                     (long long)cols);
            if (n && kb_copy_to_dev(&e->ctx, dDx, dx0, (size_t)n * 4, &e->err)) die(e, "copy");
            if (op_ok(e, kb_softmax_bwd_cuda(&e->ctx, dDx, dDy, dY, rows, cols, &e->err), name)) {
                to_host(e, g2, dDx, (size_t)n * 4);
                check_bits(e, name, g2, g, (size_t)n * 4, 4);
            }
        }
        /* in place: out == inp */
        if (n) {
            snprintf(name, sizeof name, "softmax_fwd in place rows=%lld cols=%lld", (long long)rows, (long long)cols);
            if (op_ok(e, kb_softmax_fwd_cuda(&e->ctx, dX, dX, rows, cols, &e->err), name)) {
                to_host(e, g2, dX, (size_t)n * 4);
                check_bits(e, name, g2, yg, (size_t)n * 4, 4);
            }
        }
        dfree(e, dX);
        dfree(e, dY);
        dfree(e, dDy);
        dfree(e, dDx);
        free(x);
        free(dy);
        free(dx0);
        free(y);
        free(dx);
        free(g);
        free(g2);
        free(yg);
    }
}

/* -------------------------------------------------------------- conversions */

static void test_conversions(env *e) {
    /* u8 -> f32: every byte value, several (scale, offset) */
    int64_t n = 256 * 5 + 3;
    uint8_t *u8 = xmalloc((size_t)n);
    for (int64_t i = 0; i < n; i++) u8[i] = (uint8_t)((i * 37 + i / 256) & 255);
    static const float so[][2] = {{1.0f / 127.5f, -1.0f}, {1.0f / 255.0f, 0.0f}, {0.0078125f, -0.3f}};
    float *ref = xmalloc((size_t)n * 4), *got = xmalloc((size_t)n * 4);
    uint8_t *du8 = to_dev(e, u8, (size_t)n);
    float *dout = dalloc(e, (size_t)n * 4);
    for (size_t k = 0; k < sizeof so / sizeof so[0]; k++) {
        char name[120];
        snprintf(name, sizeof name, "u8_to_f32 scale=%g offset=%g", so[k][0], so[k][1]);
        kb_u8_to_f32_ref(ref, u8, n, so[k][0], so[k][1]);
        if (op_ok(e, kb_u8_to_f32_cuda(&e->ctx, dout, du8, n, so[k][0], so[k][1], &e->err), name)) {
            to_host(e, got, dout, (size_t)n * 4);
            check_bits(e, name, got, ref, (size_t)n * 4, 4);
        }
    }
    if (op_ok(e, kb_u8_to_f32_cuda(&e->ctx, dout, du8, 0, 1, 0, &e->err), "u8_to_f32 n=0"))
        kbt_report(&e->t, 1, "u8_to_f32 n=0", "");
    dfree(e, du8);
    dfree(e, dout);
    free(u8);
    free(ref);
    free(got);

    /* bf16 -> f32: all 65536 bit patterns */
    int64_t nb = 65536;
    uint16_t *bits = xmalloc((size_t)nb * 2);
    for (int64_t i = 0; i < nb; i++) bits[i] = (uint16_t)i;
    float *fref = xmalloc((size_t)nb * 4), *fgot = xmalloc((size_t)nb * 4);
    kb_bf16_to_f32_ref(fref, bits, nb);
    uint16_t *dbits = to_dev(e, bits, (size_t)nb * 2);
    float *df = dalloc(e, (size_t)nb * 4);
    if (op_ok(e, kb_bf16_to_f32_cuda(&e->ctx, df, dbits, nb, &e->err), "bf16_to_f32 all 65536 patterns")) {
        to_host(e, fgot, df, (size_t)nb * 4);
        check_bits(e, "bf16_to_f32 all 65536 patterns", fgot, fref, (size_t)nb * 4, 4);
    }
    dfree(e, dbits);
    dfree(e, df);
    free(bits);
    free(fref);
    free(fgot);

    /* f32 -> bf16: specials, ties, and 2^20 random bit patterns (NaNs, infs and denormals among them) */
    static const uint32_t special[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u,
                                       0x7f800001u, 0xff800001u, 0x7fbfffffu, 0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u,
                                       0x00000001u, 0x807fffffu, 0x00008000u, 0x00018000u, 0x3f808000u, 0x3f818000u,
                                       0x3f808001u, 0x3f807fffu, 0x3f800000u, 0x4049fdb0u, 0xc049fdb0u, 0x7fff8000u};
    int64_t ns = (int64_t)(sizeof special / sizeof special[0]), nf = ns + (1 << 20);
    float *fin = xmalloc((size_t)nf * 4);
    for (int64_t i = 0; i < ns; i++) memcpy(&fin[i], &special[i], 4);
    for (int64_t i = ns; i < nf; i++) {
        uint32_t u = kb_philox_block(SEED, 70, (uint64_t)(i - ns) >> 2).v[(i - ns) & 3];
        memcpy(&fin[i], &u, 4);
    }
    uint16_t *bref = xmalloc((size_t)nf * 2), *bgot = xmalloc((size_t)nf * 2);
    kb_f32_to_bf16_ref(bref, fin, nf);
    float *dfin = to_dev(e, fin, (size_t)nf * 4);
    uint16_t *dbo = dalloc(e, (size_t)nf * 2);
    if (op_ok(e, kb_f32_to_bf16_cuda(&e->ctx, dbo, dfin, nf, &e->err), "f32_to_bf16")) {
        to_host(e, bgot, dbo, (size_t)nf * 2);
        check_bits(e, "f32_to_bf16 specials (NaN, inf, ties, max) + 2^20 random patterns", bgot, bref, (size_t)nf * 2,
                   2);
    }
    dfree(e, dfin);
    dfree(e, dbo);
    free(fin);
    free(bref);
    free(bgot);
}

/* ------------------------------------------------------------- random fills */

static void test_random(env *e) {
    static const int64_t ns[] = {0, 1, 5, 1000003};
    static const uint64_t seeds[][2] = {{0, 0}, {42, 7}, {0x0123456789abcdefULL, (uint64_t)1 << 40}};
    for (size_t si = 0; si < sizeof ns / sizeof ns[0]; si++)
        for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
            int64_t n = ns[si];
            uint64_t seed = seeds[k][0], stream = seeds[k][1];
            float *ref = xmalloc((size_t)n * 4 + 4), *got = xmalloc((size_t)n * 4 + 4);
            float *d = dalloc(e, (size_t)n * 4);
            char name[160];
            float lo = k == 2 ? 2.5f : -1.0f, hi = k == 2 ? 7.0f : 1.0f;
            kb_rand_uniform_ref(ref, n, seed, stream, lo, hi);
            snprintf(name, sizeof name, "rand_uniform n=%lld seed=%llu stream=%llu [%g, %g)", (long long)n,
                     (unsigned long long)seed, (unsigned long long)stream, lo, hi);
            if (op_ok(e, kb_rand_uniform_cuda(&e->ctx, d, n, seed, stream, lo, hi, &e->err), name)) {
                to_host(e, got, d, (size_t)n * 4);
                check_bits(e, name, got, ref, (size_t)n * 4, 4);
            }
            float mean = k == 2 ? 0.5f : 0.0f, std = k == 2 ? 0.02f : 1.0f;
            kb_rand_normal_ref(ref, n, seed, stream, mean, std);
            snprintf(name, sizeof name, "rand_normal n=%lld seed=%llu stream=%llu mean=%g std=%g", (long long)n,
                     (unsigned long long)seed, (unsigned long long)stream, mean, std);
            if (op_ok(e, kb_rand_normal_cuda(&e->ctx, d, n, seed, stream, mean, std, &e->err), name)) {
                to_host(e, got, d, (size_t)n * 4);
                check_bits(e, name, got, ref, (size_t)n * 4, 4);
                /* and the header's formula, evaluated here on the host */
                int64_t bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    float h = kb_rng_normal_scaled(seed, stream, (uint64_t)i, mean, std);
                    bad += memcmp(&h, &got[i], 4) != 0;
                }
                KBT_CHECK(&e->t, bad == 0, "rand_normal equals nn/rng.h on the host", "%lld of %lld differ",
                          (long long)bad, (long long)n);
            }
            dfree(e, d);
            free(ref);
            free(got);
        }
}

/* ------------------------------------------------ through the dispatchers */

/* nn/ops.c on a CUDA context reaches these kernels (a smoke test; the ops
 * themselves are covered above) and rejects bad arguments before them. */
static void test_dispatch(env *e) {
    int64_t n = 1000;
    float *a = host_uniform(n, 90, -3, 3), *b = host_uniform(n, 91, -3, 3);
    float *ref = xmalloc((size_t)n * 4), *got = xmalloc((size_t)n * 4);
    float *da = to_dev(e, a, (size_t)n * 4), *db = to_dev(e, b, (size_t)n * 4), *dout = dalloc(e, (size_t)n * 4);
    kb_gelu_tanh_fwd_ref(ref, a, n);
    if (op_ok(e, kb_gelu_tanh_fwd(&e->ctx, dout, da, n, &e->err), "kb_gelu_tanh_fwd (dispatcher) on cuda")) {
        to_host(e, got, dout, (size_t)n * 4);
        check_bits(e, "kb_gelu_tanh_fwd (dispatcher) on cuda", got, ref, (size_t)n * 4, 4);
    }
    /* 10x10 @ 10x10 from the first 100 elements */
    kb_gemm_ref(false, true, 10, 10, 10, 1.0f, a, 10, b, 10, 0.0f, ref, 10);
    if (op_ok(e, kb_gemm(&e->ctx, false, true, 10, 10, 10, 1.0f, da, 10, db, 10, 0.0f, dout, 10, &e->err),
              "kb_gemm (dispatcher) on cuda")) {
        to_host(e, got, dout, 100 * 4);
        kbt_close(&e->t, "kb_gemm (dispatcher) on cuda", got, ref, 100, 1e-5, 1e-5);
    }
    double want = 0, gotd = 0;
    kb_sum_ref(&want, a, n);
    double *dsum = dalloc(e, sizeof(double));
    if (op_ok(e, kb_sum(&e->ctx, dsum, da, n, &e->err), "kb_sum (dispatcher) on cuda")) {
        to_host(e, &gotd, dsum, sizeof gotd);
        KBT_CHECK(&e->t, fabs(gotd - want) <= 1e-12 * 3 * (double)n, "kb_sum (dispatcher) on cuda", "got %.17g want %.17g",
                  gotd, want);
    }
    kb_err err = {0};
    int rc = kb_gemm(&e->ctx, false, false, 10, 10, 10, 1.0f, da, 5, db, 10, 0.0f, dout, 10, &err);
    KBT_CHECK(&e->t, rc != 0 && strstr(err.msg, "lda"), "kb_gemm (dispatcher) rejects lda < K on cuda",
              "rc %d, message '%.400s'", rc, err.msg);
    dfree(e, da);
    dfree(e, db);
    dfree(e, dout);
    dfree(e, dsum);
    free(a);
    free(b);
    free(ref);
    free(got);
}

/* ------------------------------------------------------- context and memory */

static void test_context(env *e) {
    int count = kb_cuda_device_count();
    char desc[256] = "";
    KBT_CHECK(&e->t, kb_cuda_describe(0, desc, sizeof desc, &e->err) == 0 && desc[0], "describe gpu 0", "%.400s",
              e->err.msg);
    printf("     gpu 0: %s\n", desc);
    kb_err err = {0};
    KBT_CHECK(&e->t, kb_cuda_describe(count, desc, sizeof desc, &err) != 0 && strstr(err.msg, "out of range"),
              "describe out-of-range ordinal fails", "message: '%.400s'", err.msg);

    /* out-of-range ordinals: through kb_ctx_init and the backend directly */
    kb_ctx bad;
    kb_ctx_opts opts = {.cuda_device = count};
    err.msg[0] = 0;
    int rc = kb_ctx_init(&bad, KB_DEV_CUDA, &opts, &err);
    KBT_CHECK(&e->t, rc != 0 && strstr(err.msg, "cuda") && bad.cuda == NULL, "ctx init on gpu ordinal = count fails",
              "rc %d, message: '%.400s'", rc, err.msg);
    if (rc == 0) kb_ctx_free(&bad);
    opts.cuda_device = -1;
    err.msg[0] = 0;
    rc = kb_ctx_init(&bad, KB_DEV_CUDA, &opts, &err);
    KBT_CHECK(&e->t, rc != 0 && strstr(err.msg, "out of range") && bad.cuda == NULL, "ctx init on gpu ordinal -1 fails",
              "rc %d, message: '%.400s'", rc, err.msg);
    if (rc == 0) kb_ctx_free(&bad);
    kb_cuda_state *st = (kb_cuda_state *)&bad; /* must be overwritten with NULL */
    err.msg[0] = 0;
    rc = kb_cuda_state_create(count + 3, &st, &err);
    KBT_CHECK(&e->t, rc != 0 && st == NULL && strstr(err.msg, "out of range"), "cuda state on ordinal count+3 fails",
              "rc %d, message: '%.400s'", rc, err.msg);

    /* memory: round trips through host->dev, dev->dev, dev->host; zeroing; 0 bytes; arenas */
    int64_t n = 1000003;
    float *h = host_uniform(n, 80, -100, 100), *back = xmalloc((size_t)n * 4);
    float *d1 = to_dev(e, h, (size_t)n * 4), *d2 = dalloc(e, (size_t)n * 4);
    KBT_CHECK(&e->t, ((uintptr_t)d1 & 255) == 0 && ((uintptr_t)d2 & 255) == 0, "device allocations 256-byte aligned",
              "%p %p", (void *)d1, (void *)d2);
    if (kb_copy_dev(&e->ctx, d2, d1, (size_t)n * 4, &e->err)) die(e, "kb_copy_dev");
    to_host(e, back, d2, (size_t)n * 4);
    check_bits(e, "host -> cuda -> cuda -> host round trip", back, h, (size_t)n * 4, 4);
    if (kb_dev_zero(&e->ctx, d2 + 5, (size_t)(n - 10) * 4, &e->err)) die(e, "kb_dev_zero");
    to_host(e, back, d2, (size_t)n * 4);
    int64_t badz = 0;
    for (int64_t i = 0; i < n; i++) {
        float want = (i >= 5 && i < n - 5) ? 0.0f : h[i];
        badz += memcmp(&back[i], &want, 4) != 0;
    }
    KBT_CHECK(&e->t, badz == 0, "kb_dev_zero zeroes exactly the range", "%lld wrong", (long long)badz);
    void *z = kb_dev_alloc(&e->ctx, 0, &e->err);
    KBT_CHECK(&e->t, z != NULL, "kb_dev_alloc(0) returns a usable pointer", "%.400s", e->err.msg);
    dfree(e, z);
    KBT_CHECK(&e->t,
              kb_copy_to_dev(&e->ctx, d1, h, 0, &e->err) == 0 && kb_copy_to_host(&e->ctx, back, d1, 0, &e->err) == 0,
              "0-byte copies succeed", "%.400s", e->err.msg);
    err.msg[0] = 0;
    void *huge = kb_dev_alloc(&e->ctx, (size_t)1 << 50, &err);
    KBT_CHECK(&e->t, huge == NULL && strstr(err.msg, "cannot allocate"), "a 1 PiB allocation fails with a message",
              "'%.400s'", err.msg);
    if (huge) dfree(e, huge);
    KBT_CHECK(&e->t, kb_ctx_sync(&e->ctx, &e->err) == 0, "sync after a failed allocation", "%.400s", e->err.msg);

    kb_arena ar;
    if (kb_arena_init(&ar, &e->ctx, (size_t)1 << 20, &e->err)) die(e, "kb_arena_init");
    kb_tensor t;
    int64_t shape[2] = {100, 1000};
    KBT_CHECK(&e->t, kb_arena_tensor(&ar, KB_F32, 2, shape, &t, &e->err) == 0 && t.device == KB_DEV_CUDA,
              "arena tensor on cuda", "%.400s", e->err.msg);
    if (t.data) {
        rc = kb_fill_cuda(&e->ctx, t.data, 3.0f, 100000, &e->err);
        if (!rc) to_host(e, back, t.data, 100000 * 4);
        int64_t badf = 0;
        for (int64_t i = 0; !rc && i < 100000; i++) badf += back[i] != 3.0f;
        KBT_CHECK(&e->t, rc == 0 && badf == 0, "fill an arena tensor", "rc %d, %lld wrong: %.400s", rc, (long long)badf,
                  e->err.msg);
    }
    err.msg[0] = 0;
    int64_t big[2] = {200, 1000}; /* 800 KB more does not fit in 1 MiB */
    KBT_CHECK(&e->t, kb_arena_tensor(&ar, KB_F32, 2, big, &t, &err) != 0 && strstr(err.msg, "arena"),
              "arena exhaustion is reported", "'%.400s'", err.msg);
    kb_arena_free(&ar);
    dfree(e, d1);
    dfree(e, d2);
    free(h);
    free(back);
}

/* Checks that hold in every build: a CUDA op on a CPU context, and --device
 * cuda without a GPU, fail with a message instead of crashing. */
static void test_error_paths(env *e, int have_gpu) {
    kb_ctx cpu;
    kb_err err = {0};
    if (kb_ctx_init(&cpu, KB_DEV_CPU, NULL, &err)) {
        kbt_report(&e->t, 0, "cpu ctx init", err.msg);
        return;
    }
    float x = 1.0f;
    int rc = kb_add_cuda(&cpu, &x, &x, &x, 1, &err);
    KBT_CHECK(&e->t, rc != 0 && strstr(err.msg, "add") && x == 1.0f, "a CUDA op on a CPU context fails cleanly",
              "rc %d, message '%.400s'", rc, err.msg);
    kb_ctx_free(&cpu);
    if (!have_gpu) {
        kb_ctx c;
        err.msg[0] = 0;
        rc = kb_ctx_init(&c, KB_DEV_CUDA, NULL, &err);
        KBT_CHECK(&e->t, rc != 0 && err.msg[0] && c.cuda == NULL, "--device cuda without a GPU fails with a message",
                  "rc %d, message '%.400s'", rc, err.msg);
        if (rc == 0) kb_ctx_free(&c);
        err.msg[0] = 0;
        char desc[64];
        KBT_CHECK(&e->t, kb_cuda_describe(0, desc, sizeof desc, &err) != 0 && err.msg[0],
                  "describe gpu 0 without a GPU fails with a message", "message '%.400s'", err.msg);
    }
}

int main(void) {
    static env e; /* zeroed */
    e.tag = "";
    /* the experimental GEMM paths are switched per context below; the main context has none of them */
    unsetenv("KINDBENCH_LT_GELU"), unsetenv("KINDBENCH_LT_BGRAD"), unsetenv("KINDBENCH_BF16_OPERANDS");
    int compiled = kb_cuda_compiled();
    int count = kb_cuda_device_count();
    printf("cuda compiled: %s, %d GPU(s) visible\n", compiled ? "yes" : "no", count);
    test_error_paths(&e, compiled && count > 0);
    if (!compiled || count == 0) {
        if (e.t.failed) return kbt_finish(&e.t);
        printf("skipped: no GPU (CUDA ops tests need a CUDA device)\n");
        return KBT_SKIP_CODE;
    }
    kb_ctx_opts opts = {0};
    if (kb_ctx_init(&e.ctx, KB_DEV_CUDA, &opts, &e.err)) die(&e, "kb_ctx_init(cuda:0)");
    test_context(&e);
    test_gemm(&e);
    test_gemm_precision(&e);
    test_gemm_bias(&e);
    test_gemm_gelu(&e, 0);
    test_gemm_wgrad(&e, 0);
    /* the BF16 GEMM checks again with staged bf16 operands (KINDBENCH_BF16_OPERANDS=1): native
     * bf16 x bf16 products of packed copies made by our conversion kernel, in cuBLAS and cuBLASLt */
    int was = kb_cuda_set_bf16_operands(e.ctx.cuda, 1);
    e.tag = "staged bf16: ";
    kb_cuda_gemm_counts c0 = kb_cuda_gemm_counts_of(e.ctx.cuda);
    test_gemm_precision(&e);
    test_gemm_bias(&e);
    test_gemm_gelu(&e, 1);
    test_gemm_wgrad(&e, 1);
    kb_cuda_gemm_counts c1 = kb_cuda_gemm_counts_of(e.ctx.cuda);
    KBT_CHECK(&e.t, c1.bf16_staged > c0.bf16_staged, "staged bf16 operands were used",
              "no GEMM staged its operands");
    printf("     staged bf16: %lld cuBLASLt matmuls on staged operands%s\n", c1.bf16_staged_lt - c0.bf16_staged_lt,
           c1.bf16_staged_lt > c0.bf16_staged_lt ? "" : " (cuBLASLt refused them: its bf16 path not exercised)");
    kb_cuda_set_bf16_operands(e.ctx.cuda, was);
    e.tag = "";
    test_elementwise(&e);
    test_inplace(&e);
    test_bias_and_sum_rows(&e);
    test_sum(&e);
    test_layernorm(&e);
    test_softmax(&e);
    test_conversions(&e);
    test_random(&e);
    test_dispatch(&e);
    KBT_CHECK(&e.t, kb_ctx_sync(&e.ctx, &e.err) == 0, "no asynchronous CUDA errors at the end", "%.400s", e.err.msg);
    kb_ctx_free(&e.ctx);
    return kbt_finish(&e.t);
}
