/* The CPU reference (nn/ops_ref.c) against PyTorch 1.13 (float32, CPU):
 * tests/ref/ops_ref.py writes inputs, outputs and autograd gradients to
 * $KB_FIXTURES/ops_torch.safetensors; here the reference recomputes them.
 *
 * Tolerances (|got - torch| <= atol + rtol * |torch| unless stated):
 *   gelu/silu/relu fwd, silu/relu bwd ..... atol 1e-6, rtol 1e-5
 *   gelu bwd .............................. atol 1e-6 + 4 eps |dy| (1 + |x|(1 + 0.134 x^2)),
 *                                           rtol 1e-5 (cancellation for x < -3, see below)
 *   layer_norm y, dx, dw, db, mean, rstd .. atol 1e-5, rtol 1e-5 (values O(1);
 *                                           torch sums in float, we in double). The
 *                                           one-column and mean-offset cases compare
 *                                           with torch run in float64: torch's float32
 *                                           kernel is the less accurate one there
 *   softmax y ............................. atol 1e-7, rtol 1e-5;  dx: atol 1e-6, rtol 1e-5
 *   matmul/addmm/bmm and their gradients .. |d| <= 1e-5 * (|alpha| |A||B| + |beta| |C0|)
 *   sum over rows ......................... |d| <= 1e-6 * sum_r |x|;  sum (double): rel 1e-12
 *   f32 -> bf16 ........................... bit-exact (no NaN in the inputs: torch's NaN
 *                                           bits differ by design, see nn/ops.h), and back */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops_ref.h"
#include "nn/safetensors.h"
#include "tests/kbtest.h"

typedef struct {
    kbt_state st;
    kb_st_file *f;
    int missing;
} tctx;

/* A float tensor from the fixture (malloc'd), its element count in *n. */
static float *load(tctx *t, const char *name, int64_t *n) {
    kb_err err = {0};
    const kb_st_tensor *info = kb_st_get(t->f, name, &err);
    float *p = info ? malloc((size_t)(info->numel > 0 ? info->numel : 1) * sizeof(float)) : NULL;
    if (!p || kb_st_read_f32(t->f, name, -1, NULL, p, (size_t)info->numel, &err)) {
        printf("FAIL load %s: %s\n", name, err.msg);
        t->missing++;
        free(p);
        *n = 0;
        return calloc(1, sizeof(float));
    }
    *n = info->numel;
    return p;
}

/* kbt_close plus a line with the worst absolute and relative error. */
static void close_report(tctx *t, const char *name, const float *got, const float *want, int64_t n, double atol,
                         double rtol) {
    double wa = 0, wr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        wa = d > wa ? d : wa;
        if (want[i] != 0) wr = d / fabs(want[i]) > wr ? d / fabs(want[i]) : wr;
    }
    char label[160];
    snprintf(label, sizeof label, "%s (max abs %.2g, max rel %.2g)", name, wa, wr);
    kbt_close(&t->st, label, got, want, n, atol, rtol);
}

/* gelu'(x) in float cancels where tanh(inner) is near -1 (x < -3): torch's
 * and our float formulas both carry an absolute error of about
 * eps * |dy| * (1 + |x| (1 + 0.134 x^2)) there (eps = 2^-24; the terms of the
 * derivative before they cancel). So the tolerance against torch is
 * |d| <= 1e-6 + 1e-5 |torch| + 4 eps s, s = |dy| (1 + |x| (1 + 0.134 x^2)), and
 * the reference alone must stay within 2 eps s of the formula in double. */
static void gelu_bwd_check(tctx *t, const float *x, const float *dy, const float *got, const float *want, int64_t n) {
    const double eps = ldexp(1.0, -24), k = 0.7978845608028654, c = 0.044715;
    double worst_t = 0, worst_d = 0;
    int64_t bad_t = 0, bad_d = 0;
    for (int64_t i = 0; i < n; i++) {
        double X = x[i], th = tanh(k * (X + c * X * X * X));
        double truth = dy[i] * (0.5 * (1 + th) + 0.5 * X * (1 - th * th) * k * (1 + 3 * c * X * X));
        double sc = eps * fabs(dy[i]) * (1 + fabs(X) * (1 + 3 * c * X * X));
        double dt = fabs((double)got[i] - want[i]), dd = fabs((double)got[i] - truth);
        double tol_t = 1e-6 + 1e-5 * fabs(want[i]) + 4 * sc;
        bad_t += !(dt <= tol_t);
        bad_d += !(dd <= 2 * sc + 1e-12);
        worst_t = dt / tol_t > worst_t ? dt / tol_t : worst_t;
        worst_d = sc > 0 && dd / sc > worst_d ? dd / sc : worst_d;
    }
    char label[160];
    snprintf(label, sizeof label, "gelu backward vs torch autograd (worst %.2g of the tolerance)", worst_t);
    KBT_CHECK(&t->st, bad_t == 0, label, "%lld outside", (long long)bad_t);
    snprintf(label, sizeof label, "gelu backward vs the formula in double (worst %.2g eps s, limit 2)", worst_d);
    KBT_CHECK(&t->st, bad_d == 0, label, "%lld outside", (long long)bad_d);
}

static void test_activations(tctx *t) {
    int64_t n, n2;
    float *x = load(t, "act.x", &n), *dy = load(t, "act.dy", &n2);
    float *y = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    static const char *names[3] = {"gelu", "silu", "relu"};
    for (int k = 0; k < 3; k++) {
        char nm[64];
        int64_t m;
        if (k == 0) kb_gelu_tanh_fwd_ref(y, x, n);
        if (k == 1) kb_silu_fwd_ref(y, x, n);
        if (k == 2) kb_relu_fwd_ref(y, x, n);
        memset(dx, 0, n * sizeof(float));
        if (k == 0) kb_gelu_tanh_bwd_ref(dx, x, dy, n, KB_GRAD_ADD);
        if (k == 1) kb_silu_bwd_ref(dx, x, dy, n);
        if (k == 2) kb_relu_bwd_ref(dx, x, dy, n);
        snprintf(nm, sizeof nm, "%s.y", names[k]);
        float *wy = load(t, nm, &m);
        snprintf(nm, sizeof nm, "%s forward vs torch", names[k]);
        close_report(t, nm, y, wy, m == n ? n : 0, 1e-6, 1e-5);
        snprintf(nm, sizeof nm, "%s.dx", names[k]);
        float *wdx = load(t, nm, &m);
        snprintf(nm, sizeof nm, "%s backward vs torch autograd", names[k]);
        if (k == 0) gelu_bwd_check(t, x, dy, dx, wdx, m == n ? n : 0);
        else close_report(t, nm, dx, wdx, m == n ? n : 0, 1e-6, 1e-5);
        free(wy), free(wdx);
    }
    free(x), free(dy), free(y), free(dx);
}

/* "<tag>.<suffix>" with exactly `count` elements (a failure and zeros otherwise). */
static float *need(tctx *t, const char *tag, const char *suffix, int64_t count) {
    char nm[96];
    int64_t n;
    snprintf(nm, sizeof nm, "%s.%s", tag, suffix);
    float *p = load(t, nm, &n);
    if (n == count) return p;
    printf("FAIL %s has %lld elements, expected %lld\n", nm, (long long)n, (long long)count);
    t->missing++;
    free(p);
    return calloc((size_t)(count > 0 ? count : 1), sizeof(float));
}

static void test_layernorm(tctx *t, const char *tag, double atol) {
    int64_t nx, cols;
    char nm[96];
    snprintf(nm, sizeof nm, "%s.x", tag);
    float *x = load(t, nm, &nx);
    snprintf(nm, sizeof nm, "%s.w", tag);
    float *w = load(t, nm, &cols);
    int64_t rows = cols ? nx / cols : 0, n = rows * cols;
    float *b = need(t, tag, "b", cols), *dy = need(t, tag, "dy", n), *eps = need(t, tag, "eps", 1);
    float *y = malloc(n * 4), *mean = malloc(rows * 4), *rstd = malloc(rows * 4), *dx = calloc(n, 4);
    float *dw = calloc(cols, 4), *db = calloc(cols, 4);
    kb_layernorm_fwd_ref(y, mean, rstd, x, w, b, rows, cols, eps[0]);
    kb_layernorm_bwd_ref(dx, dw, db, dy, x, w, mean, rstd, rows, cols);
    struct {
        const float *got;
        const char *suffix;
        int64_t count;
    } cmp[] = {{mean, "mean", rows}, {rstd, "rstd", rows}, {y, "y", n}, {dx, "dx", n}, {dw, "dw", cols},
               {db, "db", cols}};
    for (size_t k = 0; k < sizeof cmp / sizeof cmp[0]; k++) {
        float *want = need(t, tag, cmp[k].suffix, cmp[k].count);
        char label[128];
        snprintf(label, sizeof label, "layernorm %s %lldx%lld: %s (affine)", tag, (long long)rows, (long long)cols,
                 cmp[k].suffix);
        close_report(t, label, cmp[k].got, want, cmp[k].count, atol, 1e-5);
        free(want);
    }
    memset(dx, 0, n * 4);
    kb_layernorm_fwd_ref(y, mean, rstd, x, NULL, NULL, rows, cols, eps[0]);
    kb_layernorm_bwd_ref(dx, NULL, NULL, dy, x, NULL, mean, rstd, rows, cols);
    float *ty = need(t, tag, "y_noaffine", n), *tdx = need(t, tag, "dx_noaffine", n);
    char label[128];
    snprintf(label, sizeof label, "layernorm %s %lldx%lld: y (no affine)", tag, (long long)rows, (long long)cols);
    close_report(t, label, y, ty, n, atol, 1e-5);
    snprintf(label, sizeof label, "layernorm %s %lldx%lld: dx (no affine)", tag, (long long)rows, (long long)cols);
    close_report(t, label, dx, tdx, n, atol, 1e-5);
    free(x), free(w), free(b), free(dy), free(eps), free(y), free(mean), free(rstd), free(dx), free(dw), free(db);
    free(ty), free(tdx);
}

static void test_softmax(tctx *t) {
    int64_t n, m;
    float *x = load(t, "softmax.x", &n), *dy = load(t, "softmax.dy", &m), *ty = load(t, "softmax.y", &m);
    float *tdx = load(t, "softmax.dx", &m);
    int64_t cols = 257, rows = n / cols;
    float *y = malloc(n * 4), *dx = calloc(n, 4);
    kb_softmax_fwd_ref(y, x, rows, cols);
    kb_softmax_bwd_ref(dx, dy, y, rows, cols);
    close_report(t, "softmax forward vs torch", y, ty, n, 1e-7, 1e-5);
    close_report(t, "softmax backward vs torch autograd", dx, tdx, n, 1e-6, 1e-5);
    free(x), free(dy), free(ty), free(tdx), free(y), free(dx);
}

/* |got - want| <= 1e-5 * (|alpha| |op(A)||op(B)| + |beta||C0|), the scale
 * computed with the reference on absolute values. */
static void gemm_check(tctx *t, const char *name, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta,
                       const float *C0, const float *want, int64_t batch) {
    int64_t na = batch * sA, nb = batch * sB, nc = batch * M * N;
    float *C = malloc(nc * 4), *S = malloc(nc * 4), *aa = malloc(na * 4), *ab = malloc(nb * 4);
    for (int64_t i = 0; i < nc; i++) C[i] = C0 ? C0[i] : NAN;
    for (int64_t i = 0; i < na; i++) aa[i] = fabsf(A[i]);
    for (int64_t i = 0; i < nb; i++) ab[i] = fabsf(B[i]);
    kb_gemm_batched_ref(ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, N, M * N, batch);
    kb_gemm_batched_ref(ta, tb, M, N, K, 1.0f, aa, lda, sA, ab, ldb, sB, 0.0f, S, N, M * N, batch);
    double worst = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < nc; i++) {
        double scale = fabs(alpha) * S[i] + (C0 ? fabs(beta * C0[i]) : 0.0);
        double e = fabs((double)C[i] - want[i]) / scale;
        worst = e > worst ? e : worst;
        bad += !(e <= 1e-5);
    }
    char label[160];
    snprintf(label, sizeof label, "%s (max err %.2g of |A||B|)", name, worst);
    KBT_CHECK(&t->st, bad == 0, label, "%lld elements beyond 1e-5", (long long)bad);
    free(C), free(S), free(aa), free(ab);
}

static void test_matmul(tctx *t) {
    const int64_t M = 37, N = 29, K = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            char nm[64], label[96];
            int64_t n;
#define L(var, s)                                                                                                  \
    snprintf(nm, sizeof nm, "mm%d%d.%s", ta, tb, s);                                                               \
    float *var = load(t, nm, &n)
            L(a, "a");
            L(b, "b");
            L(c0, "c0");
            L(dy, "dy");
            L(y, "y");
            L(da, "da");
            L(db, "db");
            L(yab, "y_ab");
#undef L
            int64_t lda = ta ? M : K, ldb = tb ? K : N;
            snprintf(label, sizeof label, "matmul tA=%d tB=%d vs torch", ta, tb);
            gemm_check(t, label, ta, tb, M, N, K, 1.0f, a, lda, M * K, b, ldb, K * N, 0.0f, NULL, y, 1);
            snprintf(label, sizeof label, "addmm 0.7 op(A)op(B) - 1.3 C0, tA=%d tB=%d", ta, tb);
            gemm_check(t, label, ta, tb, M, N, K, 0.7f, a, lda, M * K, b, ldb, K * N, -1.3f, c0, yab, 1);
            /* gradients as the models compute them, through transposed GEMMs */
            snprintf(label, sizeof label, "matmul dA (tA=%d tB=%d) vs torch autograd", ta, tb);
            if (!ta) gemm_check(t, label, false, !tb, M, K, N, 1.0f, dy, N, M * N, b, ldb, K * N, 0.0f, NULL, da, 1);
            else gemm_check(t, label, tb, true, K, M, N, 1.0f, b, ldb, K * N, dy, N, M * N, 0.0f, NULL, da, 1);
            snprintf(label, sizeof label, "matmul dB (tA=%d tB=%d) vs torch autograd", ta, tb);
            if (!tb) gemm_check(t, label, !ta, false, K, N, M, 1.0f, a, lda, M * K, dy, N, M * N, 0.0f, NULL, db, 1);
            else gemm_check(t, label, true, ta, N, K, M, 1.0f, dy, N, M * N, a, lda, M * K, 0.0f, NULL, db, 1);
            free(a), free(b), free(c0), free(dy), free(y), free(da), free(db), free(yab);
        }
    int64_t n;
    float *a = load(t, "bmm.a", &n), *b = load(t, "bmm.b", &n), *y = load(t, "bmm.y", &n);
    gemm_check(t, "bmm A^T B, batch 3 (strided)", true, false, M, N, K, 1.0f, a, M, K * M, b, N, K * N, 0.0f, NULL, y,
               3);
    free(a), free(b), free(y);
    a = load(t, "bmm2.a", &n), b = load(t, "bmm2.b", &n), y = load(t, "bmm2.y", &n);
    gemm_check(t, "bmm A B^T, batch 3 (strided)", false, true, M, N, K, 1.0f, a, K, M * K, b, K, N * K, 0.0f, NULL, y,
               3);
    free(a), free(b), free(y);
}

static void test_sums(tctx *t) {
    static const struct {
        const char *x, *y;
        int64_t cols;
    } cases[2] = {{"sumrows.x", "sumrows.y", 17}, {"sumrows2.x", "sumrows2.y", 3001}};
    for (int k = 0; k < 2; k++) {
        int64_t n, m, cols = cases[k].cols;
        float *x = load(t, cases[k].x, &n), *want = load(t, cases[k].y, &m);
        int64_t rows = n / cols;
        float *got = calloc(cols, 4);
        kb_sum_rows_ref(got, x, rows, cols);
        double worst = 0;
        for (int64_t c = 0; c < cols && m == cols; c++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++) s += fabs(x[r * cols + c]);
            double e = fabs((double)got[c] - want[c]) / s;
            worst = e > worst ? e : worst;
        }
        char label[128];
        snprintf(label, sizeof label, "sum over rows %lldx%lld vs torch x.sum(0) (max err %.2g of sum|x|)",
                 (long long)rows, (long long)cols, worst);
        KBT_CHECK(&t->st, m == cols && worst <= 1e-6, label, "worst %.3g", worst);
        free(x), free(want), free(got);
    }
    int64_t n;
    float *x = load(t, "sum.x", &n);
    double got, want, absum = 0;
    kb_err err = {0};
    int rc = kb_st_read(t->f, "sum.y", KB_F64, 1, (int64_t[]){1}, &want, 8, &err);
    kb_sum_ref(&got, x, n);
    for (int64_t i = 0; i < n; i++) absum += fabs(x[i]);
    double e = fabs(got - want) / absum;
    char label[128];
    snprintf(label, sizeof label, "sum (double) vs torch x.double().sum() (rel err %.2g)", e);
    KBT_CHECK(&t->st, rc == 0 && e <= 1e-12, label, "%.17g vs %.17g %s", got, want, err.msg);
    free(x);
}

static void test_bf16(tctx *t) {
    int64_t n, m;
    float *x = load(t, "bf16.x", &n), *back = load(t, "bf16.back", &m);
    uint16_t *want = malloc(n * 2), *got = malloc(n * 2);
    kb_err err = {0};
    int rc = kb_st_read(t->f, "bf16.bits", KB_BF16, 1, (int64_t[]){n}, want, (size_t)n * 2, &err);
    kb_f32_to_bf16_ref(got, x, n);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            bad++;
            if (first < 0) first = i;
        }
    KBT_CHECK(&t->st, rc == 0 && bad == 0, "f32 -> bf16 bit-exact vs torch .to(bfloat16) (ties, overflow, subnormals)",
              "%lld differ, first [%lld] x=%.9g got %04x want %04x %s", (long long)bad, (long long)first,
              first >= 0 ? x[first] : 0.0, first >= 0 ? got[first] : 0, first >= 0 ? want[first] : 0, err.msg);
    float *f = malloc(n * 4);
    kb_bf16_to_f32_ref(f, want, n);
    KBT_CHECK(&t->st, m == n && memcmp(f, back, n * 4) == 0, "bf16 -> f32 bit-exact vs torch .float()", "differs");
    free(x), free(back), free(want), free(got), free(f);
}

int main(void) {
    tctx t = {{0, 0}, NULL, 0};
    const char *fx = getenv("KB_FIXTURES");
    if (!fx) {
        printf("KB_FIXTURES not set (run through ctest: the fixture tests/ref/ops_ref.py makes the file)\n");
        return KBT_SKIP_CODE;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ops_torch.safetensors", fx);
    kb_err err = {0};
    t.f = kb_st_open(path, &err);
    if (!t.f) {
        printf("FAIL %s\n", err.msg);
        return 1;
    }
    printf("fixture %s: %d tensors, torch %s\n", path, kb_st_count(t.f), kb_st_meta(t.f, "torch"));
    test_activations(&t);
    test_layernorm(&t, "ln", 1e-5);
    test_layernorm(&t, "ln_one", 1e-5);    /* torch in float64 (see ops_ref.py) */
    test_layernorm(&t, "ln_offset", 1e-5); /* torch in float64 */
    test_softmax(&t);
    test_matmul(&t);
    test_sums(&t);
    test_bf16(&t);
    kb_st_close(t.f);
    KBT_CHECK(&t.st, t.missing == 0, "every fixture tensor present", "%d missing", t.missing);
    return kbt_finish(&t.st);
}
