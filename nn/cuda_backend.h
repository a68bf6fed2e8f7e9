/* Internal interface between nn/backend.c and the CUDA backend
 * (nn/cuda_backend.cu when built with CUDA, nn/cuda_backend_cudastub.c otherwise). */
#ifndef KB_CUDA_BACKEND_H
#define KB_CUDA_BACKEND_H

#include <stddef.h>

#include "nn/backend.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

int kb_cuda_state_create(int ordinal, kb_cuda_state **out, kb_err *err);
void kb_cuda_state_destroy(kb_cuda_state *st);
/* The arithmetic of GEMMs and convolutions from now on (nn/backend.h). */
int kb_cuda_set_matmul(kb_cuda_state *st, kb_matmul_precision p, kb_err *err);
int kb_cuda_sync(kb_cuda_state *st, kb_err *err);
/* The BF16 mode's GEMMs on staged bf16 operands (KINDBENCH_BF16_OPERANDS=1 at
 * context creation sets it too); returns the previous setting. */
int kb_cuda_set_bf16_operands(kb_cuda_state *st, int on);
/* How many GEMMs a context launched on its experimental paths, so that tests
 * tell them from the fallbacks they replace where cuBLASLt refuses them. */
typedef struct {
    long long gelu_epilogue;   /* cuBLASLt matmuls with a GELU epilogue (kb_gemm_bias_gelu, kb_gemm_dgelu) */
    long long bf16_staged;     /* GEMMs (cuBLAS or cuBLASLt) on staged bf16 operands */
    long long bf16_staged_lt;  /* of which cuBLASLt matmuls */
    long long bgrad_epilogue;  /* cuBLASLt matmuls with the bias-gradient epilogue (kb_gemm_wgrad) */
    long long bf16_acts;       /* cuBLASLt matmuls on a bf16 activation (the *_x16 ops' bias and GELU plans) */
} kb_cuda_gemm_counts;
/* All zero without CUDA. */
kb_cuda_gemm_counts kb_cuda_gemm_counts_of(const kb_cuda_state *st);
void *kb_cuda_malloc(kb_cuda_state *st, size_t bytes, kb_err *err);
void kb_cuda_free(kb_cuda_state *st, void *p);
int kb_cuda_memset0(kb_cuda_state *st, void *p, size_t bytes, kb_err *err);
/* kind: 0 host->device, 1 device->host, 2 device->device. Synchronous with
 * respect to the host for kinds 0 and 1. */
int kb_cuda_memcpy(kb_cuda_state *st, void *dst, const void *src, size_t bytes, int kind, kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
