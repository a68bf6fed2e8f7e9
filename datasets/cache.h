/* Writing dataset caches (*.kbd; layout in datasets/dataset.h and
 * docs/datasets.md). Images are streamed in, so a cache larger than memory
 * can be written; the whole file goes through util/fileio's atomic writer, so
 * a failure at any point leaves neither a partial cache nor a temp file, and
 * an existing file at the path stays as it was. */
#ifndef KB_DS_CACHE_H
#define KB_DS_CACHE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "util/err.h"
#include "util/fileio.h"
#include "util/sha256.h"

typedef struct {
    kb_atomic_file af;
    kb_sha256 *hash;
    long sha_pos;      /* file offset of the payload's 64 hex digits, filled in at commit */
    long meta_sha_pos; /* and of the header's own digest's */
    uint8_t *header;   /* the header as written (magic to payload start), to hash at commit */
    size_t header_len;
    int64_t count;
    int64_t written;
    size_t image_bytes;
} kb_cache_writer;

/* A metadata object that starts with the format fields; the caller adds the
 * rest (name, source, classes, ...) before kb_cache_writer_open. */
cJSON *kb_cache_meta_new(void);

/* Writes the header (meta plus the "payload" layout and placeholders for
 * "payload_sha256" and "metadata_sha256", all added to meta here), the labels
 * and the splits.
 * meta must already hold "count", "resolution" and "channels" matching the
 * arguments. Then call kb_cache_writer_add count times and commit. */
int kb_cache_writer_open(kb_cache_writer *w, const char *path, cJSON *meta, int64_t count, int resolution,
                         int channels, const int32_t *labels, const uint8_t *split, kb_err *err);
/* Appends the next image (resolution*resolution*channels bytes, HWC). */
int kb_cache_writer_add(kb_cache_writer *w, const uint8_t *image, kb_err *err);
/* Fills in the checksums, fsyncs and renames into place. */
int kb_cache_writer_commit(kb_cache_writer *w, kb_err *err);
/* Drops the temp file (safe after a failed add/commit). */
void kb_cache_writer_abort(kb_cache_writer *w);

/* Rounds n up to a multiple of KB_DSET_ALIGN. */
uint64_t kb_cache_align(uint64_t n);

#endif
