/* CUDA events for the per-op profile (nn/profile_gpu.h): a fixed pool of
 * start/end pairs recorded on the context's stream; when the pool is full,
 * the finished pairs are read (one stream wait) and the pool is reused. */
#include <stdlib.h>

#include "nn/cuda_common.cuh"

extern "C" {
#include "nn/profile_gpu.h"
}

#define KB_PROF_PAIRS 4096

struct kb_prof_gpu {
    cudaEvent_t start[KB_PROF_PAIRS], end[KB_PROF_PAIRS];
    int op[KB_PROF_PAIRS];
    int made; /* pairs created so far (created on first use) */
    int used; /* pairs recorded since the last flush */
};

extern "C" kb_prof_gpu *kb_prof_gpu_create(void) { return (kb_prof_gpu *)calloc(1, sizeof(kb_prof_gpu)); }

extern "C" void kb_prof_gpu_free(kb_prof_gpu *g) {
    if (!g) return;
    for (int i = 0; i < g->made; i++) (void)cudaEventDestroy(g->start[i]), (void)cudaEventDestroy(g->end[i]);
    free(g);
}

extern "C" void kb_prof_gpu_clear(kb_prof_gpu *g) { g->used = 0; }

extern "C" int kb_prof_gpu_flush(kb_prof_gpu *g, double *ms_by_op, kb_err *err) {
    if (g->used == 0) return 0;
    cudaError_t e = cudaEventSynchronize(g->end[g->used - 1]);
    for (int i = 0; i < g->used && e == cudaSuccess; i++) {
        float ms = 0.0f;
        e = cudaEventElapsedTime(&ms, g->start[i], g->end[i]);
        if (e == cudaSuccess) ms_by_op[g->op[i]] += ms;
    }
    g->used = 0;
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return err ? kb_fail(err, "profile: reading CUDA events failed: %s", cudaGetErrorString(e)) : -1;
    }
    return 0;
}

extern "C" int kb_prof_gpu_begin(kb_prof_gpu *g, kb_cuda_state *st, int op, double *ms_by_op) {
    if (g->used == KB_PROF_PAIRS && kb_prof_gpu_flush(g, ms_by_op, NULL)) return -1;
    int i = g->used;
    if (i == g->made) {
        if (cudaEventCreate(&g->start[i]) != cudaSuccess) return (void)cudaGetLastError(), -1;
        if (cudaEventCreate(&g->end[i]) != cudaSuccess) {
            (void)cudaEventDestroy(g->start[i]);
            return (void)cudaGetLastError(), -1;
        }
        g->made++;
    }
    if (cudaEventRecord(g->start[i], st->stream) != cudaSuccess) return (void)cudaGetLastError(), -1;
    g->op[i] = op;
    g->used++;
    return i;
}

extern "C" void kb_prof_gpu_end(kb_prof_gpu *g, kb_cuda_state *st, int slot) {
    if (slot < 0) return;
    if (cudaEventRecord(g->end[slot], st->stream) != cudaSuccess) (void)cudaGetLastError();
}
