/* A small reader and writer of the safetensors format
 * (https://github.com/huggingface/safetensors): an 8-byte little-endian header
 * length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the raw little-endian tensor data; offsets are relative to the end of
 * the header. Dtypes: F32, F64, BF16, F16, I32, I64, U8.
 *
 * The reader validates everything before handing out a byte: the header
 * length against the file size, the JSON, every dtype, shape and size, and
 * that the tensors tile the data section exactly (in range, no overlap, no
 * gap, nothing after the last one: the official library's rules). Tensor data
 * is read on demand (the file stays open), so a checkpoint need not fit in
 * memory twice. Errors name the file and the tensor.
 *
 * Used for test fixtures (PyTorch references) and model checkpoints (weights,
 * optimiser moments, RNG state, config JSON in the metadata). */
#ifndef KB_SAFETENSORS_H
#define KB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/tensor.h"
#include "util/err.h"

/* Header size limit, as the official library (100 MB). */
#define KB_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* One tensor's entry in the header. */
typedef struct {
    const char *name;
    kb_dtype dtype;
    int ndim; /* 0..KB_MAX_DIMS; 0 is a scalar (one element) */
    int64_t shape[KB_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte range within the data section */
} kb_st_tensor;

/* ---- reading ---- */

typedef struct kb_st_file kb_st_file; /* opaque */

/* Opens and validates a file; NULL with err set on any problem. */
kb_st_file *kb_st_open(const char *path, kb_err *err);
void kb_st_close(kb_st_file *f);
const char *kb_st_path(const kb_st_file *f);

/* Tensors in data order (by offset); i in [0, kb_st_count). */
int kb_st_count(const kb_st_file *f);
const kb_st_tensor *kb_st_at(const kb_st_file *f, int i);
/* NULL when absent. */
const kb_st_tensor *kb_st_find(const kb_st_file *f, const char *name);
/* Like kb_st_find, but fails with "<file>: no tensor 'name'" when absent. */
const kb_st_tensor *kb_st_get(const kb_st_file *f, const char *name, kb_err *err);

/* Reads a tensor's bytes as stored into dst, after checking its dtype and
 * shape: ndim < 0 accepts any rank (shape ignored), shape entries of -1 match
 * any size. dst_bytes must equal the tensor's size. */
int kb_st_read(kb_st_file *f, const char *name, kb_dtype dtype, int ndim, const int64_t *shape, void *dst,
               size_t dst_bytes, kb_err *err);
/* Reads into float: F32 as is, BF16 and F16 widened exactly (other dtypes
 * are refused: no silent narrowing). Shape checked as in kb_st_read;
 * dst_count must equal the element count. */
int kb_st_read_f32(kb_st_file *f, const char *name, int ndim, const int64_t *shape, float *dst, size_t dst_count,
                   kb_err *err);
/* Reads a tensor of the given dtype and any shape into malloc'd memory
 * (*out, to free()); *info (may be NULL) gets its entry. */
int kb_st_read_alloc(kb_st_file *f, const char *name, kb_dtype dtype, const kb_st_tensor **info, void **out,
                     kb_err *err);

/* Metadata (string to string). NULL when absent. */
const char *kb_st_meta(const kb_st_file *f, const char *key);
int kb_st_meta_count(const kb_st_file *f);
/* Entry i in header order. */
void kb_st_meta_at(const kb_st_file *f, int i, const char **key, const char **value);

/* ---- writing ---- */

typedef struct kb_st_writer kb_st_writer; /* opaque */

kb_st_writer *kb_st_writer_new(kb_err *err);
void kb_st_writer_free(kb_st_writer *w);
/* Adds a tensor (host memory). The data is NOT copied: it must stay valid
 * and unchanged until kb_st_writer_write. Names must be unique, non-empty
 * and not "__metadata__". Tensors are written in the order added. */
int kb_st_writer_add(kb_st_writer *w, const char *name, kb_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, kb_err *err);
/* Adds (or replaces) a metadata entry; key and value are copied. */
int kb_st_writer_meta(kb_st_writer *w, const char *key, const char *value, kb_err *err);
/* Writes the file atomically (temp file + fsync + rename): on failure the
 * previous file at path, if any, is untouched. The header is padded with
 * spaces to a multiple of 8 bytes so that the data section is aligned. */
int kb_st_writer_write(kb_st_writer *w, const char *path, kb_err *err);

/* "F32" etc.; kb_st_dtype_parse fails for names we do not support. */
const char *kb_st_dtype_name(kb_dtype dt);
int kb_st_dtype_parse(const char *s, kb_dtype *out);

#endif
