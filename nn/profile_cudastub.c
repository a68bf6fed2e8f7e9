/* CPU-only builds: no CUDA contexts exist, so these are never reached with a
 * profile to fill; they keep nn/profile.c free of #ifdefs. */
#include "nn/profile_gpu.h"

kb_prof_gpu *kb_prof_gpu_create(void) { return NULL; }
void kb_prof_gpu_free(kb_prof_gpu *g) { (void)g; }
int kb_prof_gpu_begin(kb_prof_gpu *g, kb_cuda_state *st, int op, double *ms_by_op) {
    (void)g, (void)st, (void)op, (void)ms_by_op;
    return -1;
}
void kb_prof_gpu_end(kb_prof_gpu *g, kb_cuda_state *st, int slot) { (void)g, (void)st, (void)slot; }
int kb_prof_gpu_flush(kb_prof_gpu *g, double *ms_by_op, kb_err *err) {
    (void)g, (void)ms_by_op, (void)err;
    return 0;
}
void kb_prof_gpu_clear(kb_prof_gpu *g) { (void)g; }
