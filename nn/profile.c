/* Per-op profile (see nn/profile.h). */
#include "nn/profile.h"

#include <stdlib.h>
#include <string.h>

#include "nn/profile_gpu.h"
#include "nn/tensor.h"
#include "util/progress.h"

#define KB_PROF_OPS 128

struct kb_profile {
    const char *names[KB_PROF_OPS];
    double ms[KB_PROF_OPS];
    long calls[KB_PROF_OPS];
    int nops;
    kb_prof_gpu *gpu; /* CUDA contexts */
};

/* The table index of op (names are the dispatchers' __func__ strings), or -1 when the table is full. */
static int op_index(struct kb_profile *p, const char *op) {
    for (int i = 0; i < p->nops; i++)
        if (p->names[i] == op || !strcmp(p->names[i], op)) return i;
    if (p->nops == KB_PROF_OPS) return -1;
    p->names[p->nops] = op;
    return p->nops++;
}

kb_prof_mark kb_prof_begin(kb_ctx *ctx, const char *op) {
    kb_prof_mark m = {-1, -1, 0.0};
    struct kb_profile *p = ctx->prof;
    if (!p || (m.op = op_index(p, op)) < 0) return m;
    p->calls[m.op]++;
    if (ctx->device == KB_DEV_CUDA) m.slot = kb_prof_gpu_begin(p->gpu, ctx->cuda, m.op, p->ms);
    else m.t0 = kb_now();
    return m;
}

int kb_prof_end(kb_ctx *ctx, kb_prof_mark m, int rc) {
    struct kb_profile *p = ctx->prof;
    if (!p || m.op < 0) return rc;
    if (ctx->device == KB_DEV_CUDA) kb_prof_gpu_end(p->gpu, ctx->cuda, m.slot);
    else p->ms[m.op] += 1000.0 * (kb_now() - m.t0);
    return rc;
}

int kb_profile_start(kb_ctx *ctx, kb_err *err) {
    struct kb_profile *p = ctx->prof;
    if (!p) {
        if (!(p = calloc(1, sizeof *p))) return kb_fail(err, "profile: out of memory");
        if (ctx->device == KB_DEV_CUDA && !(p->gpu = kb_prof_gpu_create())) {
            free(p);
            return kb_fail(err, "profile: out of memory for CUDA events");
        }
        ctx->prof = p;
    }
    if (p->gpu) kb_prof_gpu_clear(p->gpu);
    memset(p->ms, 0, sizeof p->ms), memset(p->calls, 0, sizeof p->calls);
    return kb_ctx_sync(ctx, err);
}

/* order[0..n) by ms[order[k]], largest first (n is at most KB_PROF_OPS). */
static void sort_by_time(int *order, int n, const double *ms) {
    for (int k = 1; k < n; k++)
        for (int j = k; j > 0 && ms[order[j]] > ms[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
}

int kb_profile_report(kb_ctx *ctx, FILE *out, int steps, double wall_seconds, kb_err *err) {
    struct kb_profile *p = ctx->prof;
    if (!p) return kb_fail(err, "profile: not started on this context");
    if (kb_ctx_sync(ctx, err) || (p->gpu && kb_prof_gpu_flush(p->gpu, p->ms, err))) return -1;
    int order[KB_PROF_OPS], n = 0;
    double total = 0.0;
    for (int i = 0; i < p->nops; i++)
        if (p->calls[i]) order[n++] = i, total += p->ms[i];
    sort_by_time(order, n, p->ms);
    int per = steps > 0 ? steps : 1;
    fprintf(out, "profile: %d step%s on %s, op time %.1f ms per step, wall %.1f ms per step (%.0f%% in ops)\n", per,
            per == 1 ? "" : "s", kb_device_name(ctx->device), total / per, 1000.0 * wall_seconds / per,
            wall_seconds > 0 ? 100.0 * total / (1000.0 * wall_seconds) : 0.0);
    fprintf(out, "profile: %-24s %8s %12s %10s %7s\n", "op", "calls", "total ms", "ms/step", "share");
    for (int k = 0; k < n; k++) {
        int i = order[k];
        fprintf(out, "profile: %-24s %8ld %12.2f %10.3f %6.1f%%\n", p->names[i], p->calls[i], p->ms[i], p->ms[i] / per,
                total > 0 ? 100.0 * p->ms[i] / total : 0.0);
    }
    return 0;
}

void kb_profile_free(kb_ctx *ctx) {
    struct kb_profile *p = ctx->prof;
    if (!p) return;
    kb_prof_gpu_free(p->gpu);
    free(p);
    ctx->prof = NULL;
}
