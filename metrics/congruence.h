/* The congruence M = L^T S L that the Cholesky route of the Fréchet distance
 * needs (S1 = L L^T, then the eigenvalues of L^T S2 L): what LAPACK's dsygst
 * computes with itype 2 and the lower triangle, recursively in halves so that
 * almost all of its n^3 flops are a few large level-3 calls (dtrmm, dsymm,
 * dsyr2k). LAPACK's dsygst works in 64-column blocks whose many small calls
 * run at about 55 GFLOP/s on our 2-core machines; this at about 65, with the
 * same flop count. Blocks of up to KB_CONGRUENCE_BASE columns go to dsygst. */
#ifndef KB_METRICS_CONGRUENCE_H
#define KB_METRICS_CONGRUENCE_H

#include <stdint.h>

#include "util/err.h"

#define KB_CONGRUENCE_BASE 256

/* Doubles of scratch that kb_congruence_lower needs for order n. */
int64_t kb_congruence_work_size(int64_t n);

/* s (n x n, column-major, leading dimension ld): on entry its lower triangle
 * holds the symmetric S, on return the lower triangle of L^T S L. l holds
 * the lower-triangular L (its strict upper triangle is not read; same ld).
 * work: kb_congruence_work_size(n) doubles. The strict upper triangle of s
 * is left as it was. Fails only on a LAPACK error (named). */
int kb_congruence_lower(int64_t n, double *s, const double *l, int64_t ld, double *work, kb_err *err);

#endif
