/* A safe reader of PyTorch state-dict checkpoints (torch.save of a dict of
 * tensors), in both container formats:
 *
 *  - legacy (torch < 1.6, and _use_new_zipfile_serialization=False): five
 *    pickles back to back (the magic number 0x1950a86a20f9469cfc6c, the
 *    protocol version 1001, a sys_info dict, the state dict, the list of
 *    storage keys), then for each listed key an int64 element count and the
 *    storage's raw little-endian bytes. The FID Inception file is one.
 *  - zip (torch >= 1.6 by default): "<dir>/data.pkl" holds the state dict and
 *    "<dir>/data/<key>" each storage's raw bytes (read with libzip).
 *
 * The pickles are run by a small stack machine that knows only what a state
 * dict needs (protocol 2: dicts, lists, tuples, strings, ints, floats, bools,
 * None, memo, persistent ids) and builds tensors itself: GLOBAL accepts an
 * allow-list (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
 * _rebuild_parameter, torch.<Float|Double|Half|BFloat16|Long|Int|Byte>Storage)
 * and REDUCE calls nothing but those; any other opcode or global is an error.
 * Nothing is ever executed. Every read is bounds-checked and the stack, memo,
 * mark depth, string lengths and total memory are capped; errors name the
 * file and the byte offset.
 *
 * Tensors keep their shape, strides and storage offset, checked against their
 * storage's size; data is little-endian as stored (big-endian files are
 * refused). */
#ifndef KB_TORCH_PICKLE_H
#define KB_TORCH_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "nn/tensor.h"
#include "util/err.h"

typedef enum { KB_TP_LEGACY = 1, KB_TP_ZIP = 2 } kb_tp_format;

/* Open flag: parse the pickles and lay out the storages, but accept storage
 * data that is missing (a truncated download, the header-only test file);
 * such storages have data == NULL and kb_tp_missing_bytes() says how much is
 * absent. Without it, any missing byte is an error. */
#define KB_TP_HEADER_ONLY 1

typedef struct {
    const char *key;     /* the storage key in the file */
    kb_dtype dtype;
    int64_t numel;       /* elements */
    const uint8_t *data; /* numel * element size bytes; NULL when absent (header only) */
} kb_tp_storage;

typedef struct {
    const char *name; /* state-dict key */
    kb_dtype dtype;
    int ndim;         /* 0..KB_MAX_DIMS */
    int64_t shape[KB_MAX_DIMS];
    int64_t stride[KB_MAX_DIMS]; /* elements */
    int64_t offset;              /* storage offset, elements */
    int64_t numel;
    int storage;                 /* index for kb_tp_storage_at */
} kb_tp_tensor;

typedef struct kb_tp_file kb_tp_file; /* opaque */

/* Reads and parses a whole file. */
kb_tp_file *kb_tp_open(const char *path, int flags, kb_err *err);
/* Parses a file already in memory; data is borrowed and must outlive the
 * handle. label names it in messages (e.g. its path). */
kb_tp_file *kb_tp_open_mem(const uint8_t *data, size_t size, const char *label, int flags, kb_err *err);
void kb_tp_close(kb_tp_file *f);

kb_tp_format kb_tp_format_of(const kb_tp_file *f);
/* State-dict entries in the file's (dict) order. */
int kb_tp_count(const kb_tp_file *f);
const kb_tp_tensor *kb_tp_at(const kb_tp_file *f, int i);
const kb_tp_tensor *kb_tp_find(const kb_tp_file *f, const char *name); /* NULL when absent */
int kb_tp_storage_count(const kb_tp_file *f);
const kb_tp_storage *kb_tp_storage_at(const kb_tp_file *f, int i);
/* Bytes of storage data absent from the file (0 for a complete file). For
 * the legacy format, also the size the complete file must have. */
uint64_t kb_tp_missing_bytes(const kb_tp_file *f);
uint64_t kb_tp_expected_size(const kb_tp_file *f);

/* Copies tensor `name` (float32, any strides) into dst in row-major order
 * after checking its shape: ndim < 0 accepts any rank; shape entries of -1
 * match any size; count must equal its element count. */
int kb_tp_read_f32(const kb_tp_file *f, const char *name, int ndim, const int64_t *shape, float *dst, size_t count,
                   kb_err *err);

#endif
