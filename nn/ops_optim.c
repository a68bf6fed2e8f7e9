/* Optimiser ops: host-side scalars, reference and fast CPU loops, dispatch. */
#include <math.h>
#include <stdlib.h>

#include "nn/cpu_clones.h"
#include "nn/ops_optim.h"
#include "nn/ops_optim_elem.h"
#include "nn/profile.h"

kb_adamw_scalars kb_adamw_make_scalars(double lr, double beta1, double beta2, double eps, double weight_decay,
                                       int64_t step) {
    kb_adamw_scalars s;
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    s.decay_mul = (float)(1.0 - lr * weight_decay);
    s.beta1 = (float)beta1;
    s.one_minus_beta1 = (float)(1.0 - beta1);
    s.beta2 = (float)beta2;
    s.one_minus_beta2 = (float)(1.0 - beta2);
    s.bc2_sqrt = (float)sqrt(bc2);
    s.eps = (float)eps;
    s.neg_step_size = (float)(-lr / bc1);
    return s;
}

void kb_adamw_step_ref(float *p, const float *g, float *m, float *v, int64_t n, const kb_adamw_scalars *s) {
    for (int64_t i = 0; i < n; i++) kb_adamw_elem(&p[i], g[i], &m[i], &v[i], s);
}

void kb_ema_update_ref(float *ema, const float *p, int64_t n, double decay) {
    float dec = (float)decay, omd = (float)(1.0 - decay);
    for (int64_t i = 0; i < n; i++) ema[i] = kb_ema_elem(ema[i], p[i], dec, omd);
}

void kb_sumsq_ref(double *out, const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    *out = s;
}

KB_SIMD_CLONES void kb_adamw_step_cpu(int threads, float *p, const float *g, float *m, float *v, int64_t n,
                       const kb_adamw_scalars *s) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) kb_adamw_elem(&p[i], g[i], &m[i], &v[i], s);
}

KB_SIMD_CLONES void kb_ema_update_cpu(int threads, float *ema, const float *p, int64_t n, double decay) {
    float dec = (float)decay, omd = (float)(1.0 - decay);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) ema[i] = kb_ema_elem(ema[i], p[i], dec, omd);
}

/* Fixed chunks summed in index order, so the result does not depend on the
 * thread count (the reference's single running sum differs only by rounding). */
#define SUMSQ_CHUNK 65536

void kb_sumsq_cpu(int threads, double *out, const float *x, int64_t n) {
    int64_t chunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    double *part = calloc((size_t)(chunks ? chunks : 1), sizeof(double));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t end = (c + 1) * SUMSQ_CHUNK < n ? (c + 1) * SUMSQ_CHUNK : n;
        double s = 0.0;
        for (int64_t i = c * SUMSQ_CHUNK; i < end; i++) s += (double)x[i] * (double)x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int64_t c = 0; c < chunks; c++) s += part[c];
    free(part);
    *out = s;
}

static int check_n(const char *op, int64_t n, kb_err *err) {
    return n < 0 ? kb_fail(err, "%s: negative size %lld", op, (long long)n) : 0;
}

int kb_adamw_step(kb_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n, const kb_adamw_scalars *s,
                  kb_err *err) {
    if (check_n("kb_adamw_step", n, err)) return -1;
    KB_PROF_DISPATCH(ctx, kb_adamw_step_cuda(ctx, p, g, m, v, n, s, err), kb_adamw_step_cpu(ctx->threads, p, g, m, v, n, s));
}

int kb_ema_update(kb_ctx *ctx, float *ema, const float *p, int64_t n, double decay, kb_err *err) {
    if (check_n("kb_ema_update", n, err)) return -1;
    KB_PROF_DISPATCH(ctx, kb_ema_update_cuda(ctx, ema, p, n, decay, err), kb_ema_update_cpu(ctx->threads, ema, p, n, decay));
}

int kb_sumsq(kb_ctx *ctx, double *out, const float *x, int64_t n, kb_err *err) {
    if (check_n("kb_sumsq", n, err)) return -1;
    KB_PROF_DISPATCH(ctx, kb_sumsq_cuda(ctx, out, x, n, err), kb_sumsq_cpu(ctx->threads, out, x, n));
}
