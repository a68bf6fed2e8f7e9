/* Inception Score, ADM and torch-fidelity split schemes (see the header). */
#include "metrics/inception_score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/stats.h"

void kb_is_opts_default(kb_is_opts *o, kb_is_mode mode) {
    o->mode = mode;
    o->split_size = 5000;
    o->splits = 10;
    o->seed = 2020;
}

const char *kb_is_mode_name(kb_is_mode m) { return m == KB_IS_FIDELITY ? "fidelity" : "adm"; }

int kb_is_mode_parse(const char *s, kb_is_mode *out, kb_err *err) {
    if (!strcmp(s, "adm")) return *out = KB_IS_ADM, 0;
    if (!strcmp(s, "fidelity") || !strcmp(s, "torch-fidelity")) return *out = KB_IS_FIDELITY, 0;
    return kb_fail(err, "--is-splits: expected adm or fidelity, got '%s'", s);
}

/* log-softmax of one row of logits into lp (double). */
static void log_softmax(const float *x, int64_t c, double *lp) {
    double mx = -INFINITY, sum = 0.0;
    for (int64_t k = 0; k < c; k++) mx = x[k] > mx ? x[k] : mx;
    for (int64_t k = 0; k < c; k++) sum += exp((double)x[k] - mx);
    double lse = mx + log(sum);
    for (int64_t k = 0; k < c; k++) lp[k] = (double)x[k] - lse;
}

/* Score of the rows rows[0..m) (indices into logits; NULL: contiguous from
 * first). lp is [m, c] scratch, q [c] scratch. */
static double split_score(const float *logits, int64_t c, const int64_t *rows, int64_t first, int64_t m, double *lp,
                          double *q) {
    memset(q, 0, (size_t)c * sizeof *q);
    for (int64_t i = 0; i < m; i++) {
        int64_t r = rows ? rows[first + i] : first + i;
        log_softmax(logits + r * c, c, lp + i * c);
        for (int64_t k = 0; k < c; k++) q[k] += exp(lp[i * c + k]);
    }
    for (int64_t k = 0; k < c; k++) q[k] = log(q[k] / (double)m);
    double kl = 0.0;
    for (int64_t i = 0; i < m; i++) {
        double row = 0.0;
        for (int64_t k = 0; k < c; k++) {
            double p = exp(lp[i * c + k]);
            if (p > 0) row += p * (lp[i * c + k] - q[k]);
        }
        kl += row;
    }
    return exp(kl / (double)m);
}

static void mean_std(const double *s, int n, double *mean, double *std) {
    double m = 0.0, v = 0.0;
    for (int i = 0; i < n; i++) m += s[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (s[i] - m) * (s[i] - m);
    *mean = m, *std = sqrt(v / n);
}

static int check_args(const float *logits, int64_t n, int64_t c, const kb_is_opts *o, kb_err *err) {
    if (n < 1) return kb_fail(err, "Inception Score: no images");
    if (c < 2) return kb_fail(err, "Inception Score: %lld classes; logits need at least 2", (long long)c);
    if (o->mode == KB_IS_ADM && o->split_size < 1) return kb_fail(err, "Inception Score: split size must be >= 1");
    if (o->mode == KB_IS_FIDELITY && (o->splits < 1 || n < o->splits))
        return kb_fail(err, "Inception Score (fidelity splits): %lld images cannot fill %d splits (need at least %d)",
                       (long long)n, o->splits, o->splits);
    return kb_features_check(logits, n, c, "Inception Score logits", err);
}

int kb_inception_score(const float *logits, int64_t n, int64_t c, const kb_is_opts *o, kb_is_result *r,
                       kb_err *err) {
    memset(r, 0, sizeof *r);
    if (check_args(logits, n, c, o, err)) return -1;
    int adm = o->mode == KB_IS_ADM;
    int nsplits = adm ? (int)((n + o->split_size - 1) / o->split_size) : o->splits;
    int64_t maxm = adm ? (n < o->split_size ? n : o->split_size) : (n + o->splits - 1) / o->splits + 1;
    double *lp = malloc((size_t)(maxm * c) * sizeof(double)), *q = malloc((size_t)c * sizeof(double));
    double *scores = malloc((size_t)nsplits * sizeof(double));
    int64_t *perm = adm ? NULL : malloc((size_t)n * sizeof(int64_t));
    if (!lp || !q || !scores || (!adm && !perm)) {
        free(lp), free(q), free(scores), free(perm);
        return kb_fail(err, "Inception Score: out of memory for %lld x %lld logits", (long long)n, (long long)c);
    }
    if (!adm) {
        kb_np_rng rng;
        kb_np_rng_seed(&rng, o->seed);
        kb_np_permutation(&rng, n, perm);
    }
    for (int s = 0; s < nsplits; s++) {
        int64_t lo = adm ? s * o->split_size : s * n / nsplits;
        int64_t hi = adm ? (lo + o->split_size < n ? lo + o->split_size : n) : (s + 1) * n / nsplits;
        scores[s] = split_score(logits, c, perm, lo, hi - lo, lp, q);
        r->last_split = hi - lo;
    }
    r->splits = nsplits;
    mean_std(scores, nsplits, &r->mean, &r->std);
    if (adm) r->std = 0.0;
    free(lp), free(q), free(scores), free(perm);
    return 0;
}
