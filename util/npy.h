/* NumPy's .npy and .npz files, the exchange format of the ADM evaluation
 * suite (openai/guided-diffusion evaluations/): a sample batch is an .npz
 * with "arr_0" [N, H, W, C] uint8 and, for class-conditional models, "arr_1"
 * [N] int64 labels; reference batches add float64 "mu"/"sigma" and friends.
 *
 * .npy (format 1.0; 2.0 when the header outgrows 64 KiB, as numpy does):
 *   "\x93NUMPY", major, minor, header length (uint16 LE; uint32 in 2.0/3.0),
 *   then a Python dict literal
 *     {'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }
 *   padded with spaces (and numpy's 21-digit growth-axis reserve) and ended
 *   by '\n' so that the data starts at a multiple of 64 bytes, then the raw
 *   C-order little-endian data. The writer reproduces numpy 1.24's header
 *   byte for byte. .npz is a zip (libzip) of "<name>.npy" entries, stored
 *   uncompressed like np.savez; the reader also takes np.savez_compressed.
 *
 * Dtypes: U8 '|u1', I32 '<i4', I64 '<i8', F16 '<f2', F32 '<f4', F64 '<f8'.
 * Fortran order and big-endian data are refused with a clear message. */
#ifndef KB_NPY_H
#define KB_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "nn/tensor.h"
#include "util/err.h"

/* An array in host memory. */
typedef struct {
    kb_dtype dtype;
    int ndim; /* 0..KB_MAX_DIMS; 0 is a scalar */
    int64_t shape[KB_MAX_DIMS];
    int64_t numel;
    void *data; /* malloc'd by the readers (kb_npy_free); borrowed by the writers */
} kb_npy;

/* A named array for kb_npz_write ("arr_0": the entry becomes "arr_0.npy"). */
typedef struct {
    const char *name;
    kb_npy array;
} kb_npz_entry;

/* Fills a (borrowed) array view; numel is computed from the shape. */
kb_npy kb_npy_view(kb_dtype dt, int ndim, const int64_t *shape, const void *data);

/* The .npy header (magic, version, length, padded dict) for an array into
 * out[cap]; *len gets its size (a multiple of 64). */
int kb_npy_header(const kb_npy *a, char *out, size_t cap, size_t *len, kb_err *err);

/* Writes a .npy file atomically. */
int kb_npy_write(const char *path, const kb_npy *a, kb_err *err);

/* Writes an .npz atomically (temp file beside path, fsync, rename): on any
 * failure nothing is left at path (nor a temp file), and a previous file
 * there is untouched. The temp file is the only file made (libzip writes
 * onto it), so the signal cleanup (kb_temp_cleanup_on_signals) removes it
 * and ends the process at once, however large the archive. Entries are
 * stored uncompressed, in the given order, with a fixed 1980-01-01
 * timestamp so that reruns are byte-identical. */
int kb_npz_write(const char *path, const kb_npz_entry *entries, int n, kb_err *err);

/* Parses a whole .npy image in memory (a copy of the data is made). `what`
 * names it in messages ("x.npz:arr_0"). */
int kb_npy_parse(const uint8_t *buf, size_t n, const char *what, kb_npy *out, kb_err *err);
/* Reads a .npy file. */
int kb_npy_read(const char *path, kb_npy *out, kb_err *err);
/* Reads entry `name` (with or without ".npy") of an .npz. */
int kb_npz_read(const char *path, const char *name, kb_npy *out, kb_err *err);
/* The array names of an .npz (".npy" stripped), in archive order: *names is
 * a malloc'd array of malloc'd strings (kb_npz_names_free). */
int kb_npz_names(const char *path, char ***names, int *count, kb_err *err);
void kb_npz_names_free(char **names, int count);

/* An .npz held open, to read several arrays of one file: the file opened
 * once, so a writer that renames a new file onto path meanwhile (an atomic
 * write: the features cache of two evals at once) is not seen; reading each
 * array by path could mix two files' arrays. NULL with err set on failure. */
typedef struct kb_npz kb_npz;
kb_npz *kb_npz_open(const char *path, kb_err *err);
/* The same from a file the caller has open (read through a dup; fd stays the
 * caller's): what is read is the file fd names, whatever path names later.
 * path is for messages. */
kb_npz *kb_npz_fdopen(int fd, const char *path, kb_err *err);
int kb_npz_get(kb_npz *z, const char *name, kb_npy *out, kb_err *err);
/* The dtype, ndim, shape and numel of entry `name` (data NULL), from its npy
 * header alone: an arr_0 of 50 000 images is described without reading it.
 * The header gets kb_npz_get's checks, its size against the entry's too. */
int kb_npz_peek(kb_npz *z, const char *name, kb_npy *out, kb_err *err);
int kb_npz_list(kb_npz *z, char ***names, int *count, kb_err *err);
void kb_npz_close(kb_npz *z);

void kb_npy_free(kb_npy *a);

#endif
