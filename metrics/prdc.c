/* Precision/recall (ADM ManifoldEstimator) and density/coverage (prdc), by
 * blocked GEMM distances (see prdc.h). */
#include "metrics/prdc.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/stats.h"
#include "nn/ops.h"

#define KB_KNN_MAX_K 64

void kb_prdc_opts_default(kb_prdc_opts *o) {
    memset(o, 0, sizeof *o);
    o->pr_k = 3;
    o->dc_k = 5;
    o->block = 2048;
    o->precision = KB_DIST_FP32;
}

/* ADM's ManifoldEstimator works in batches of 10000 rows x 10000 columns
 * (row_batch_size, col_batch_size), and its DistanceBlock chooses fp16 or
 * fp32 once per batch pair: when any fp16 distance of the pair is not
 * finite, the whole pair is recomputed in fp32. Our blocks are walked batch
 * pair by batch pair so that the fp16 emulation can make the same choice
 * whatever the block size (it changes which distances are fp16-rounded). */
#define KB_ADM_BATCH 10000

static int64_t nblocks(int64_t n, int64_t b) { return (n + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Blocks of b rows covering n rows cut into ADM batches. */
static int64_t batched_blocks(int64_t n, int64_t b) {
    int64_t full = n / KB_ADM_BATCH, rest = n % KB_ADM_BATCH;
    return full * nblocks(KB_ADM_BATCH, b) + nblocks(rest, b);
}

int64_t kb_prdc_blocks(int64_t n_ref, int64_t n_samp, const kb_prdc_opts *o) {
    int64_t b = o->block > 0 ? o->block : 2048, r = batched_blocks(n_ref, b), s = batched_blocks(n_samp, b);
    return r * r + (o->pr_k > 0 ? s * s : 0) + r * s;
}

/* ------------------------------------------------------------ distances */

/* x rounded to the nearest float16 value (ties to even), as a float;
 * |x| >= 65520 becomes infinity, as the conversion does. */
static float round_half(float x) {
    float ax = fabsf(x);
    if (isnan(x)) return x;
    if (ax >= 65520.0f) return copysignf(INFINITY, x);
    if (ax < 6.103515625e-05f) { /* subnormal half: a fixed quantum of 2^-24 */
        const float q = 5.9604644775390625e-08f;
        return copysignf(nearbyintf(ax / q) * q, x);
    }
    uint32_t b;
    memcpy(&b, &ax, sizeof b);
    b += 0x0fffu + ((b >> 13) & 1u); /* round the 23-bit mantissa to 10 bits, ties to even */
    b &= ~0x1fffu;
    memcpy(&ax, &b, sizeof ax);
    return copysignf(ax, x);
}

/* Squared norms of n rows: double (fp32 mode) or fp16-emulated. */
static void row_norms(const float *x, int64_t n, int64_t dim, kb_dist_precision p, double *out) {
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * dim;
        double s = 0.0;
        if (p == KB_DIST_FP16) {
            float f = 0.0f;
            for (int64_t k = 0; k < dim; k++) f += round_half(r[k] * r[k]);
            s = round_half(f);
        } else {
            for (int64_t k = 0; k < dim; k++) s += (double)r[k] * r[k];
        }
        out[i] = s;
    }
}

/* A copy of x rounded to fp16 values (the fp16 mode's GEMM input). */
static float *half_copy(const float *x, int64_t n, int64_t dim, kb_err *err) {
    float *h = malloc((size_t)(n * dim) * sizeof(float));
    if (!h) {
        kb_fail(err, "precision/recall: out of memory for %lld x %lld fp16 features", (long long)n, (long long)dim);
        return NULL;
    }
    for (int64_t i = 0; i < n * dim; i++) h[i] = round_half(x[i]);
    return h;
}

/* Inputs of one distance computation: rows of a and b with their norms. */
typedef struct {
    kb_ctx *ctx;
    int64_t dim;
    kb_dist_precision prec;
    const float *a, *b;        /* fp32 features */
    const float *a16, *b16;    /* fp16-rounded copies (fp16 mode) */
    const double *na, *nb;     /* norms in the mode's arithmetic */
    const double *na32, *nb32; /* double norms (the fp16 mode's fp32 fallback) */
} dist_src;

/* d[i, j] for a rows [a0, a0+ra), b rows [b0, b0+rb), fp32 arithmetic. */
static int block_fp32(const dist_src *s, const float *a, const float *b, const double *na, const double *nb,
                      int64_t ra, int64_t rb, float *d, kb_err *err) {
    if (kb_gemm(s->ctx, false, true, ra, rb, s->dim, 1.0f, a, s->dim, b, s->dim, 0.0f, d, rb, err)) return -1;
    for (int64_t i = 0; i < ra; i++)
        for (int64_t j = 0; j < rb; j++) {
            double v = na[i] - 2.0 * (double)d[i * rb + j] + nb[j];
            d[i * rb + j] = v > 0 ? (float)v : 0.0f;
        }
    return 0;
}

/* The fp16 emulation; returns 1 when some value overflowed fp16. */
static int block_fp16(const dist_src *s, int64_t a0, int64_t b0, int64_t ra, int64_t rb, float *d, kb_err *err) {
    const float *a = s->a16 + a0 * s->dim, *b = s->b16 + b0 * s->dim;
    if (kb_gemm(s->ctx, false, true, ra, rb, s->dim, 1.0f, a, s->dim, b, s->dim, 0.0f, d, rb, err)) return -1;
    int overflow = 0;
    for (int64_t i = 0; i < ra; i++)
        for (int64_t j = 0; j < rb; j++) {
            float g = round_half(d[i * rb + j]);
            float t = round_half((float)s->na[a0 + i] - round_half(2.0f * g));
            float v = round_half(t + (float)s->nb[b0 + j]);
            overflow |= !isfinite(v) || !isfinite(g) || !isfinite(t);
            d[i * rb + j] = v > 0 ? v : 0.0f;
        }
    return overflow;
}

/* One block; fp32 = 1 when the fp16 emulation's batch pair overflowed
 * (batch_overflows), so ADM computes all of it in fp32. */
static int dist_block(const dist_src *s, int fp32, int64_t a0, int64_t ra, int64_t b0, int64_t rb, float *d,
                      kb_err *err) {
    if (s->prec == KB_DIST_FP16) {
        int rc = fp32 ? 1 : block_fp16(s, a0, b0, ra, rb, d, err);
        if (rc <= 0) return rc;
        return block_fp32(s, s->a + a0 * s->dim, s->b + b0 * s->dim, s->na32 + a0, s->nb32 + b0, ra, rb, d, err);
    }
    return block_fp32(s, s->a + a0 * s->dim, s->b + b0 * s->dim, s->na + a0, s->nb + b0, ra, rb, d, err);
}

/* fp16 emulation: 1 when some fp16 distance of the ADM batch pair rows
 * [a0, a0+na) x [b0, b0+nb) is not finite, 0 when none is (or in fp32
 * mode), -1 on error. A pass of its own, so that no block is used before the
 * pair's precision is known; d is block scratch. */
static int batch_overflows(const dist_src *s, int64_t a0, int64_t na, int64_t b0, int64_t nb, int64_t blk, float *d,
                           kb_err *err) {
    if (s->prec != KB_DIST_FP16) return 0;
    for (int64_t r0 = a0; r0 < a0 + na; r0 += blk)
        for (int64_t c0 = b0; c0 < b0 + nb; c0 += blk) {
            int rc = block_fp16(s, r0, c0, min64(blk, a0 + na - r0), min64(blk, b0 + nb - c0), d, err);
            if (rc) return rc;
        }
    return 0;
}

/* Norms (and fp16 copies) of one feature set. */
typedef struct {
    double *n32, *nmode;
    float *h16;
} set_prep;

static void prep_free(set_prep *p) {
    if (p->nmode != p->n32) free(p->nmode);
    free(p->n32);
    free(p->h16);
    memset(p, 0, sizeof *p);
}

static int prep_set(const float *x, int64_t n, int64_t dim, kb_dist_precision prec, set_prep *p, kb_err *err) {
    memset(p, 0, sizeof *p);
    p->n32 = malloc((size_t)n * sizeof(double));
    if (!p->n32) return kb_fail(err, "precision/recall: out of memory");
    row_norms(x, n, dim, KB_DIST_FP32, p->n32);
    p->nmode = p->n32;
    if (prec != KB_DIST_FP16) return 0;
    p->nmode = malloc((size_t)n * sizeof(double));
    p->h16 = half_copy(x, n, dim, err);
    if (!p->nmode || !p->h16) {
        prep_free(p);
        return kb_fail(err, "precision/recall: out of memory for fp16 features");
    }
    row_norms(p->h16, n, dim, KB_DIST_FP16, p->nmode);
    return 0;
}

static dist_src make_src(kb_ctx *ctx, int64_t dim, kb_dist_precision prec, const float *a, const set_prep *pa,
                         const float *b, const set_prep *pb) {
    dist_src s = {ctx, dim, prec, a, b, pa->h16, pb->h16, pa->nmode, pb->nmode, pa->n32, pb->n32};
    return s;
}

/* ---------------------------------------------------------------- radii */

/* Inserts v into the ascending list top[0..m) if it is smaller than the last. */
static inline void top_insert(float *top, int m, float v) {
    if (!(v < top[m - 1])) return;
    int p = m - 1;
    while (p > 0 && top[p - 1] > v) {
        top[p] = top[p - 1];
        p--;
    }
    top[p] = v;
}

static int check_ks(const int *ks, int nk, int64_t n, int *kmax, kb_err *err) {
    *kmax = 0;
    for (int j = 0; j < nk; j++) {
        if (ks[j] < 1 || ks[j] > KB_KNN_MAX_K) return kb_fail(err, "k-NN radii: k = %d outside [1, %d]", ks[j], KB_KNN_MAX_K);
        if (ks[j] > *kmax) *kmax = ks[j];
    }
    if (n < *kmax + 1)
        return kb_fail(err, "k-NN radii need at least k+1 = %d images in a set, got %lld", *kmax + 1, (long long)n);
    return 0;
}

/* A block's distances d [ra x rb] of rows [r0, r0+ra) x [c0, c0+rb), to a pass. */
typedef void (*block_fn)(void *acc, const float *d, int64_t r0, int64_t ra, int64_t c0, int64_t rb);

/* Every distance of rows [0, na) x [0, nb), in blocks of blk, walked ADM
 * batch pair by batch pair (each pair's fp16/fp32 choice made first, as ADM
 * makes it; batch_overflows), each block handed to visit; d is blk^2 scratch. */
static int walk_blocks(const dist_src *s, int64_t na, int64_t nb, int64_t blk, float *d, block_fn visit, void *acc,
                       kb_progress *pg, kb_err *err) {
    for (int64_t R0 = 0; R0 < na; R0 += KB_ADM_BATCH)
        for (int64_t C0 = 0; C0 < nb; C0 += KB_ADM_BATCH) {
            int64_t RA = min64(KB_ADM_BATCH, na - R0), CB = min64(KB_ADM_BATCH, nb - C0);
            int fp32 = batch_overflows(s, R0, RA, C0, CB, blk, d, err);
            if (fp32 < 0) return -1;
            for (int64_t r0 = R0; r0 < R0 + RA; r0 += blk)
                for (int64_t c0 = C0; c0 < C0 + CB; c0 += blk) {
                    int64_t ra = min64(blk, R0 + RA - r0), rb = min64(blk, C0 + CB - c0);
                    if (dist_block(s, fp32, r0, ra, c0, rb, d, err)) return -1;
                    visit(acc, d, r0, ra, c0, rb);
                    if (pg) kb_progress_update(pg, pg->done + 1);
                }
        }
    return 0;
}

/* The k smallest distances of each row so far (tops [n x m], ascending). */
typedef struct {
    float *tops;
    int m;
} radii_acc;

static void radii_update(void *acc, const float *d, int64_t r0, int64_t ra, int64_t c0, int64_t rb) {
    radii_acc *a = acc;
    (void)c0;
    for (int64_t i = 0; i < ra; i++)
        for (int64_t j = 0; j < rb; j++) top_insert(a->tops + (r0 + i) * a->m, a->m, d[i * rb + j]);
}

static int radii_pass(const dist_src *s, int64_t n, int64_t blk, int m, float *tops, float *d, kb_progress *pg,
                      kb_err *err) {
    for (int64_t i = 0; i < n * m; i++) tops[i] = INFINITY;
    radii_acc a = {tops, m};
    return walk_blocks(s, n, n, blk, d, radii_update, &a, pg, err);
}

/* Radii of a prepared set (the set against itself). */
static int radii_prepared(kb_ctx *ctx, const float *x, const set_prep *p, int64_t n, int64_t dim, const int *ks, int nk,
                          const kb_prdc_opts *o, float *radii, kb_err *err) {
    int kmax;
    if (check_ks(ks, nk, n, &kmax, err)) return -1;
    int64_t blk = o->block > 0 ? o->block : 2048;
    int m = kmax + 1;
    float *tops = malloc((size_t)(n * m) * sizeof(float));
    float *d = malloc((size_t)(blk * blk) * sizeof(float));
    int rc = (!tops || !d) ? kb_fail(err, "k-NN radii: out of memory") : 0;
    dist_src s = make_src(ctx, dim, o->precision, x, p, x, p);
    if (!rc) rc = radii_pass(&s, n, blk, m, tops, d, o->progress, err);
    for (int j = 0; !rc && j < nk; j++)
        for (int64_t i = 0; i < n; i++) radii[j * n + i] = tops[i * m + ks[j]];
    free(tops);
    free(d);
    return rc;
}

static int check_ctx(kb_ctx *ctx, kb_err *err) {
    if (!ctx || ctx->device != KB_DEV_CPU)
        return kb_fail(err, "precision/recall: needs a CPU context (features are in host memory)");
    return 0;
}

int kb_knn_radii(kb_ctx *ctx, const float *x, int64_t n, int64_t dim, const int *ks, int nk, const kb_prdc_opts *o,
                 float *radii, kb_err *err) {
    int kmax;
    if (check_ctx(ctx, err) || check_ks(ks, nk, n, &kmax, err) || kb_features_check(x, n, dim, "k-NN features", err))
        return -1;
    set_prep p;
    if (prep_set(x, n, dim, o->precision, &p, err)) return -1;
    int rc = radii_prepared(ctx, x, &p, n, dim, ks, nk, o, radii, err);
    prep_free(&p);
    return rc;
}

/* --------------------------------------------------------- cross pass */

/* Per-point results of the reference x sample pass. */
typedef struct {
    const float *rr_pr, *rs_pr, *rr_dc; /* radii (NULL when not wanted) */
    bool *prec_flag, *rec_flag;         /* [n_samp], [n_ref] */
    int64_t *dens_count;                /* [n_samp] */
    float *cov_min;                     /* [n_ref] */
} cross_acc;

static void cross_update(void *acc, const float *d, int64_t r0, int64_t ra, int64_t s0, int64_t sb) {
    cross_acc *a = acc;
    for (int64_t i = 0; i < ra; i++) {
        const float *row = d + i * sb;
        int64_t ri = r0 + i;
        for (int64_t j = 0; j < sb; j++) {
            float v = row[j];
            if (a->rr_pr) {
                if (v <= a->rr_pr[ri]) a->prec_flag[s0 + j] = true;
                if (v <= a->rs_pr[s0 + j]) a->rec_flag[ri] = true;
            }
            if (a->rr_dc) {
                if (v < a->rr_dc[ri]) a->dens_count[s0 + j]++;
                if (v < a->cov_min[ri]) a->cov_min[ri] = v;
            }
        }
    }
}

static int cross_pass(const dist_src *s, int64_t nr, int64_t ns, int64_t blk, cross_acc *a, kb_progress *pg,
                      kb_err *err) {
    float *d = malloc((size_t)(blk * blk) * sizeof(float));
    if (!d) return kb_fail(err, "precision/recall: out of memory for a %lld^2 distance block", (long long)blk);
    int rc = walk_blocks(s, nr, ns, blk, d, cross_update, a, pg, err);
    free(d);
    return rc;
}

/* --------------------------------------------------------------- driver */

static int prdc_check(kb_ctx *ctx, const float *ref, int64_t nr, const float *samp, int64_t ns, int64_t dim,
                      const kb_prdc_opts *o, kb_err *err) {
    if (check_ctx(ctx, err)) return -1;
    if (o->pr_k <= 0 && o->dc_k <= 0) return kb_fail(err, "precision/recall: neither P/R nor D/C asked for");
    if (o->pr_k > 0 && (nr < o->pr_k + 1 || ns < o->pr_k + 1))
        return kb_fail(err, "precision/recall with k=%d needs at least %d reference and %d sample images, got %lld and %lld",
                       o->pr_k, o->pr_k + 1, o->pr_k + 1, (long long)nr, (long long)ns);
    if (o->dc_k > 0 && nr < o->dc_k + 1)
        return kb_fail(err, "density/coverage with k=%d needs at least %d reference images, got %lld", o->dc_k,
                       o->dc_k + 1, (long long)nr);
    if (o->dc_k > 0 && ns < 1) return kb_fail(err, "density/coverage: no sample images");
    if (kb_features_check(ref, nr, dim, "reference features", err) ||
        kb_features_check(samp, ns, dim, "sample features", err))
        return -1;
    return 0;
}

/* Reference radii for pr_k and dc_k, sample radii for pr_k. rr [2][nr], rs [ns]. */
static int all_radii(kb_ctx *ctx, const float *ref, const set_prep *pr, int64_t nr, const float *samp,
                     const set_prep *ps, int64_t ns, int64_t dim, const kb_prdc_opts *o, float *rr, float *rs,
                     kb_err *err) {
    int ks[2], nk = 0;
    if (o->pr_k > 0) ks[nk++] = o->pr_k;
    if (o->dc_k > 0) ks[nk++] = o->dc_k;
    if (radii_prepared(ctx, ref, pr, nr, dim, ks, nk, o, rr, err)) return -1;
    if (o->pr_k > 0 && radii_prepared(ctx, samp, ps, ns, dim, ks, 1, o, rs, err)) return -1;
    return 0;
}

static void finish(const cross_acc *a, int64_t nr, int64_t ns, const kb_prdc_opts *o, kb_prdc_result *r) {
    r->precision = r->recall = r->density = r->coverage = NAN;
    if (o->pr_k > 0) {
        int64_t p = 0, q = 0;
        for (int64_t j = 0; j < ns; j++) p += a->prec_flag[j];
        for (int64_t i = 0; i < nr; i++) q += a->rec_flag[i];
        r->precision = (double)p / (double)ns, r->recall = (double)q / (double)nr;
    }
    if (o->dc_k > 0) {
        int64_t dsum = 0, c = 0;
        for (int64_t j = 0; j < ns; j++) dsum += a->dens_count[j];
        for (int64_t i = 0; i < nr; i++) c += a->cov_min[i] < a->rr_dc[i];
        r->density = (double)dsum / ((double)o->dc_k * (double)ns);
        r->coverage = (double)c / (double)nr;
    }
}

int kb_prdc(kb_ctx *ctx, const float *ref, int64_t nr, const float *samp, int64_t ns, int64_t dim,
            const kb_prdc_opts *o, kb_prdc_result *r, kb_err *err) {
    if (prdc_check(ctx, ref, nr, samp, ns, dim, o, err)) return -1;
    set_prep pr, ps;
    if (prep_set(ref, nr, dim, o->precision, &pr, err)) return -1;
    if (prep_set(samp, ns, dim, o->precision, &ps, err)) return prep_free(&pr), -1;
    float *rr = malloc((size_t)(2 * nr) * sizeof(float)), *rs = malloc((size_t)ns * sizeof(float));
    cross_acc a = {0};
    a.prec_flag = calloc((size_t)ns, sizeof(bool)), a.rec_flag = calloc((size_t)nr, sizeof(bool));
    a.dens_count = calloc((size_t)ns, sizeof(int64_t)), a.cov_min = malloc((size_t)nr * sizeof(float));
    int rc = (!rr || !rs || !a.prec_flag || !a.rec_flag || !a.dens_count || !a.cov_min)
                 ? kb_fail(err, "precision/recall: out of memory")
                 : all_radii(ctx, ref, &pr, nr, samp, &ps, ns, dim, o, rr, rs, err);
    if (!rc) {
        for (int64_t i = 0; i < nr; i++) a.cov_min[i] = INFINITY;
        a.rr_pr = o->pr_k > 0 ? rr : NULL, a.rs_pr = o->pr_k > 0 ? rs : NULL;
        a.rr_dc = o->dc_k > 0 ? rr + (o->pr_k > 0 ? nr : 0) : NULL;
        dist_src s = make_src(ctx, dim, o->precision, ref, &pr, samp, &ps);
        rc = cross_pass(&s, nr, ns, o->block > 0 ? o->block : 2048, &a, o->progress, err);
    }
    if (!rc) finish(&a, nr, ns, o, r);
    free(rr), free(rs), free(a.prec_flag), free(a.rec_flag), free(a.dens_count), free(a.cov_min);
    prep_free(&pr), prep_free(&ps);
    return rc;
}
