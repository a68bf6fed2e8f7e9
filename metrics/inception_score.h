/* Inception Score: exp(mean_x KL(p(y|x) || p(y))) per split, from the
 * 1008 unbiased Inception logits (pool_3 . W, no bias: the improved-gan
 * quirk kept by the ADM evaluator and torch-fidelity's "logits_unbiased").
 *
 * p(y|x) = softmax of the logits in double (log p by log-softmax, so a
 * probability that underflows to 0 adds 0 instead of NaN); p(y) = the mean of
 * p(y|x) over the split. Two split schemes:
 *
 *  KB_IS_ADM       the ADM evaluator: contiguous chunks of split_size (5000)
 *                  images in file order, the last chunk possibly shorter
 *                  (with fewer than 5000 images: one chunk of all of them);
 *                  the score is the mean over chunks, std is reported as 0
 *                  (ADM reports none). ADM's softmax runs in float32 in TF;
 *                  ours in double (differences ~1e-6 relative).
 *  KB_IS_FIDELITY  torch-fidelity: the rows are shuffled with
 *                  numpy.random.RandomState(seed=2020).permutation(N) (bit-
 *                  exact, metrics/stats.h), then split i is rows
 *                  [i*N//splits, (i+1)*N//splits); mean and numpy std (ddof 0)
 *                  over the 10 splits. Needs N >= splits. */
#ifndef KB_METRICS_INCEPTION_SCORE_H
#define KB_METRICS_INCEPTION_SCORE_H

#include <stdint.h>

#include "util/err.h"

typedef enum { KB_IS_ADM = 0, KB_IS_FIDELITY } kb_is_mode;

typedef struct {
    kb_is_mode mode;
    int64_t split_size; /* ADM: images per chunk (default 5000) */
    int splits;         /* fidelity: number of splits (default 10) */
    uint32_t seed;      /* fidelity: RandomState seed (default 2020) */
} kb_is_opts;

typedef struct {
    double mean, std;
    int splits;         /* splits actually scored */
    int64_t last_split; /* images in the last split (ADM: may be short) */
} kb_is_result;

void kb_is_opts_default(kb_is_opts *o, kb_is_mode mode);
const char *kb_is_mode_name(kb_is_mode m);
/* "adm" or "fidelity" (also "torch-fidelity"). */
int kb_is_mode_parse(const char *s, kb_is_mode *out, kb_err *err);

/* logits [n, nclasses] float32, row-major. Fails on NaN/inf logits, n == 0,
 * or (fidelity) n < splits. */
int kb_inception_score(const float *logits, int64_t n, int64_t nclasses, const kb_is_opts *o, kb_is_result *r,
                       kb_err *err);

#endif
