/* Per-op time profile of one context (kb_ctx.prof; off, and free of cost
 * beyond one branch per op, unless kb_profile_start was called). Each op
 * dispatcher brackets its work with kb_prof_begin / kb_prof_end: on the CPU
 * that is the wall clock around the op (CPU ops are synchronous), on CUDA a
 * pair of events on the context's stream, read when the profile is reported.
 * Times are summed per op name (the dispatcher's __func__), so a report says
 * where a training step's time goes: GEMMs, attention softmax, LayerNorm,
 * the optimiser, copies and fills. Used by `kindbench bench train --profile`. */
#ifndef KB_NN_PROFILE_H
#define KB_NN_PROFILE_H

#include <stdio.h>

#include "nn/backend.h"
#include "util/err.h"

typedef struct {
    int op;    /* index into the profile's table, -1 when not profiling */
    int slot;  /* CUDA: the event pair; CPU: unused */
    double t0; /* CPU: start time */
} kb_prof_mark;

kb_prof_mark kb_prof_begin(kb_ctx *ctx, const char *op);
/* Ends the bracket; returns rc unchanged, so a dispatcher can `return kb_prof_end(ctx, m, rc)`. */
int kb_prof_end(kb_ctx *ctx, kb_prof_mark m, int rc);

/* The body of an op dispatcher: runs cuda_call (an int expression) on a CUDA
 * context or cpu_call (a statement; the op then succeeded) on the CPU, and
 * returns the code, the op timed as __func__ when ctx is profiling. */
#define KB_PROF_DISPATCH(ctx, cuda_call, cpu_call)                                                              \
    do {                                                                                                        \
        kb_prof_mark kb_pm_ = kb_prof_begin((ctx), __func__);                                                   \
        int kb_rc_ = 0;                                                                                         \
        if ((ctx)->device == KB_DEV_CUDA) kb_rc_ = (cuda_call);                                                 \
        else cpu_call;                                                                                          \
        return kb_prof_end((ctx), kb_pm_, kb_rc_);                                                              \
    } while (0)

/* Turns profiling on for ctx (or clears what it gathered so far). */
int kb_profile_start(kb_ctx *ctx, kb_err *err);
/* Waits for the device, then prints one line per op, most time first: calls,
 * total and per-step milliseconds, share of the profiled time, and the
 * profiled time against the wall time of the same steps (the rest is host
 * work and launch gaps). */
int kb_profile_report(kb_ctx *ctx, FILE *out, int steps, double wall_seconds, kb_err *err);
/* Called by kb_ctx_free. */
void kb_profile_free(kb_ctx *ctx);

#endif
