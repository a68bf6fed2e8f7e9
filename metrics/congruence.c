/* L^T S L by halves (see congruence.h).
 *
 * With L = [L11 0; L21 L22] and S = [S11 S21^T; S21 S22] (first block n1
 * columns, second n2):
 *   M11 = L11^T S11 L11 + L21^T Z + Z^T L21,  Z = S21 L11 + S22 L21 / 2
 *   M21 = L22^T (S21 L11 + S22 L21)
 *   M22 = L22^T S22 L22
 * which is the block step of LAPACK's dsygst (itype 2, lower) with one large
 * block. Y = S22 L21 is computed once into the scratch and added in two
 * halves, so a step costs 3 n1 n2 n flops (3n^3/4 for halves) and the
 * recursion on the diagonal blocks (M11, M22: the same problem) brings the
 * total to n^3, as dsygst's. */
#include "metrics/congruence.h"

#include <cblas.h>
#include <lapacke.h>

int64_t kb_congruence_work_size(int64_t n) {
    /* the largest n2 x n1 block is at the top: n1 = n / 2, n2 = n - n1 */
    return n > KB_CONGRUENCE_BASE ? (n - n / 2) * (n / 2) : 0;
}

/* c (rows x cols, leading dimension ldc) += y / 2 (rows x cols, packed). */
static void add_half(int64_t rows, int64_t cols, double *c, int64_t ldc, const double *y) {
    for (int64_t j = 0; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) c[j * ldc + i] += 0.5 * y[j * rows + i];
}

int kb_congruence_lower(int64_t n, double *s, const double *l, int64_t ld, double *work, kb_err *err) {
    if (n <= KB_CONGRUENCE_BASE) {
        /* the _work form: the caller's inputs are checked, LAPACKE's NaN scan is not needed */
        lapack_int info = n > 0 ? LAPACKE_dsygst_work(LAPACK_COL_MAJOR, 2, 'L', (lapack_int)n, s, (lapack_int)ld,
                                                      l, (lapack_int)ld)
                                : 0;
        return info ? kb_fail(err, "L^T S L: LAPACK dsygst failed (info %d) on a %lldx%lld block", (int)info,
                              (long long)n, (long long)n)
                    : 0;
    }
    int64_t n1 = n / 2, n2 = n - n1;
    double *s11 = s, *s21 = s + n1, *s22 = s + n1 * ld + n1;
    const double *l11 = l, *l21 = l + n1, *l22 = l + n1 * ld + n1;
    int M = (int)n2, N = (int)n1, LD = (int)ld;
    if (kb_congruence_lower(n1, s11, l11, ld, work, err)) return -1;
    /* S21 <- S21 L11; Y = S22 L21 (S22 as it came in: M22 is formed last) */
    cblas_dtrmm(CblasColMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, M, N, 1.0, l11, LD, s21, LD);
    cblas_dsymm(CblasColMajor, CblasLeft, CblasLower, M, N, 1.0, s22, LD, l21, LD, 0.0, work, M);
    add_half(n2, n1, s21, ld, work); /* Z */
    cblas_dsyr2k(CblasColMajor, CblasLower, CblasTrans, N, M, 1.0, l21, LD, s21, LD, 1.0, s11, LD);
    add_half(n2, n1, s21, ld, work); /* S21 L11 + S22 L21 */
    cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, M, N, 1.0, l22, LD, s21, LD);
    return kb_congruence_lower(n2, s22, l22, ld, work, err);
}
