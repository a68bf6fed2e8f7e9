/* CPU-only builds: the CUDA backend entry points, each reporting that this
 * binary has no CUDA support. */
#include "nn/cuda_backend.h"

#include <string.h>

int kb_cuda_compiled(void) { return 0; }
int kb_cuda_device_count(void) { return 0; }
int kb_cuda_describe(int ordinal, char *buf, size_t n, kb_err *err) {
    return kb_fail(err, "cuda device %d: this kindbench was built without CUDA", ordinal);
}
int kb_cuda_state_create(int ordinal, kb_cuda_state **out, kb_err *err) {
    *out = NULL;
    return kb_fail(err, "cuda device %d: this kindbench was built without CUDA", ordinal);
}
void kb_cuda_state_destroy(kb_cuda_state *st) { (void)st; }
int kb_cuda_set_matmul(kb_cuda_state *st, kb_matmul_precision p, kb_err *err) {
    (void)st, (void)p;
    return kb_fail(err, "built without CUDA");
}
int kb_cuda_sync(kb_cuda_state *st, kb_err *err) { return kb_fail(err, "built without CUDA"); }
void *kb_cuda_malloc(kb_cuda_state *st, size_t bytes, kb_err *err) {
    kb_fail(err, "cannot allocate %zu bytes on CUDA: built without CUDA", bytes);
    return NULL;
}
void kb_cuda_free(kb_cuda_state *st, void *p) { (void)st; (void)p; }
int kb_cuda_memset0(kb_cuda_state *st, void *p, size_t bytes, kb_err *err) { return kb_fail(err, "built without CUDA"); }
int kb_cuda_memcpy(kb_cuda_state *st, void *dst, const void *src, size_t bytes, int kind, kb_err *err) {
    return kb_fail(err, "built without CUDA");
}
int kb_cuda_set_bf16_operands(kb_cuda_state *st, int on) {
    (void)st, (void)on;
    return 0;
}
kb_cuda_gemm_counts kb_cuda_gemm_counts_of(const kb_cuda_state *st) {
    (void)st;
    kb_cuda_gemm_counts none;
    memset(&none, 0, sizeof none);
    return none;
}
