/* The CUDA side of nn/profile.c: event pairs on the context's stream
 * (nn/profile_cuda.cu; CPU-only builds link nn/profile_cudastub.c). */
#ifndef KB_NN_PROFILE_GPU_H
#define KB_NN_PROFILE_GPU_H

#include "nn/backend.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kb_prof_gpu kb_prof_gpu;

kb_prof_gpu *kb_prof_gpu_create(void);
void kb_prof_gpu_free(kb_prof_gpu *g);
/* Records a start event for op; returns its slot, or -1 (no event: the op
 * goes unmeasured). When all slots are taken the finished pairs are added to
 * ms_by_op first (that waits for the stream). */
int kb_prof_gpu_begin(kb_prof_gpu *g, kb_cuda_state *st, int op, double *ms_by_op);
void kb_prof_gpu_end(kb_prof_gpu *g, kb_cuda_state *st, int slot);
/* Waits for the recorded events and adds each pair's time to ms_by_op[op]. */
int kb_prof_gpu_flush(kb_prof_gpu *g, double *ms_by_op, kb_err *err);
/* Drops what was recorded and not yet flushed. */
void kb_prof_gpu_clear(kb_prof_gpu *g);

#ifdef __cplusplus
}
#endif

#endif
