/* Tensors: a typed, shaped view of memory on one device. Memory comes from a
 * kb_ctx (persistent allocations) or a kb_arena (scratch, freed in bulk). */
#ifndef KB_TENSOR_H
#define KB_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KB_MAX_DIMS 6

typedef enum { KB_F32 = 0, KB_BF16, KB_F16, KB_F64, KB_I32, KB_I64, KB_U8 } kb_dtype;

typedef enum { KB_DEV_CPU = 0, KB_DEV_CUDA = 1 } kb_device;

typedef struct {
    void *data;
    kb_dtype dtype;
    kb_device device;
    int ndim;
    int64_t shape[KB_MAX_DIMS];
} kb_tensor;

size_t kb_dtype_size(kb_dtype dt);
const char *kb_dtype_name(kb_dtype dt);
const char *kb_device_name(kb_device dev);
/* Parses "cpu" or "cuda". */
int kb_device_parse(const char *s, kb_device *out, kb_err *err);

int64_t kb_numel(const kb_tensor *t);
size_t kb_nbytes(const kb_tensor *t);
/* Fills a tensor header (no allocation). */
kb_tensor kb_tensor_view(void *data, kb_dtype dt, kb_device dev, int ndim, const int64_t *shape);
/* "[2, 3, 4] f32 cpu" into buf. */
void kb_tensor_describe(const kb_tensor *t, char *buf, size_t n);
/* Fails with "<what>: expected [..] <dtype>, got [..] <dtype>" on mismatch.
 * A shape entry of -1 matches any size. */
int kb_tensor_expect(const kb_tensor *t, kb_dtype dt, int ndim, const int64_t *shape, const char *what, kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
