#include "datasets/cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"

/* Stands in for the digest while the header is written; same length as the
 * hex digest so the header does not move when it is filled in. */
#define SHA_PLACEHOLDER "0000000000000000000000000000000000000000000000000000000000000000"

uint64_t kb_cache_align(uint64_t n) { return (n + KB_DSET_ALIGN - 1) / KB_DSET_ALIGN * KB_DSET_ALIGN; }

cJSON *kb_cache_meta_new(void) {
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", "kindbench-dataset");
    cJSON_AddNumberToObject(meta, "format_version", KB_DSET_FORMAT_VERSION);
    return meta;
}

static int write_zeros(kb_atomic_file *af, kb_sha256 *hash, uint64_t n, kb_err *err) {
    static const uint8_t zeros[KB_DSET_ALIGN] = {0};
    if (hash) kb_sha256_update(hash, zeros, (size_t)n);
    return kb_atomic_write(af, zeros, (size_t)n, err);
}

static int write_hashed(kb_cache_writer *w, const void *buf, size_t n, kb_err *err) {
    kb_sha256_update(w->hash, buf, n);
    return kb_atomic_write(&w->af, buf, n, err);
}

static void add_layout(cJSON *meta, int64_t count, size_t image_bytes) {
    uint64_t images_offset = kb_cache_align((uint64_t)count * 5);
    cJSON *p = cJSON_AddObjectToObject(meta, "payload");
    cJSON_AddStringToObject(p, "layout", "int32le labels[count]; u8 split[count]; zero pad to 64; "
                                         "u8 images[count][res][res][channels]");
    cJSON_AddNumberToObject(p, "labels_offset", 0);
    cJSON_AddNumberToObject(p, "split_offset", (double)count * 4);
    cJSON_AddNumberToObject(p, "images_offset", (double)images_offset);
    cJSON_AddNumberToObject(p, "bytes", (double)(images_offset + (uint64_t)count * image_bytes));
}

/* Offset in json of the last quoted placeholder before `before`: the
 * digests are added to meta last, so the last ones printed are theirs. */
static long placeholder_before(const char *json, const char *before) {
    const char *mark = NULL;
    for (const char *p = strstr(json, "\"" SHA_PLACEHOLDER "\""); p && p < before;
         p = strstr(p + 1, "\"" SHA_PLACEHOLDER "\""))
        mark = p;
    return mark ? (long)(mark - json) + 1 : -1;
}

/* Magic, JSON length, JSON, padding, kept in w->header to be hashed at
 * commit; records where the two digests go. */
static int write_header(kb_cache_writer *w, cJSON *meta, kb_err *err) {
    cJSON_AddStringToObject(meta, "payload_sha256", SHA_PLACEHOLDER);
    cJSON_AddStringToObject(meta, "metadata_sha256", SHA_PLACEHOLDER);
    char *json = cJSON_Print(meta);
    if (!json) return kb_fail(err, "%s: cannot format metadata", w->af.final_path);
    size_t len = strlen(json);
    long meta_at = placeholder_before(json, json + len), sha_at = placeholder_before(json, json + meta_at - 1);
    w->header_len = (size_t)kb_cache_align(16 + len);
    w->header = calloc(1, w->header_len);
    if (!w->header) {
        free(json);
        return kb_fail(err, "%s: out of memory for the header (%zu bytes)", w->af.final_path, w->header_len);
    }
    w->sha_pos = 16 + sha_at, w->meta_sha_pos = 16 + meta_at;
    memcpy(w->header, KB_DSET_MAGIC, 8);
    for (int i = 0; i < 8; i++) w->header[8 + i] = (uint8_t)((uint64_t)len >> (8 * i));
    memcpy(w->header + 16, json, len);
    free(json);
    return kb_atomic_write(&w->af, w->header, w->header_len, err);
}

static int write_labels_and_split(kb_cache_writer *w, const int32_t *labels, const uint8_t *split, kb_err *err) {
    uint8_t buf[4096];
    for (int64_t i = 0; i < w->count;) {
        size_t n = 0;
        for (; n + 4 <= sizeof buf && i < w->count; i++, n += 4)
            for (int b = 0; b < 4; b++) buf[n + b] = (uint8_t)((uint32_t)labels[i] >> (8 * b));
        if (write_hashed(w, buf, n, err)) return -1;
    }
    if (w->count && write_hashed(w, split, (size_t)w->count, err)) return -1;
    uint64_t used = (uint64_t)w->count * 5;
    return write_zeros(&w->af, w->hash, kb_cache_align(used) - used, err);
}

int kb_cache_writer_open(kb_cache_writer *w, const char *path, cJSON *meta, int64_t count, int resolution,
                         int channels, const int32_t *labels, const uint8_t *split, kb_err *err) {
    memset(w, 0, sizeof *w);
    w->count = count;
    w->image_bytes = (size_t)resolution * resolution * channels;
    if (kb_atomic_open(&w->af, path, err)) return -1;
    if (!(w->hash = kb_sha256_new())) {
        kb_atomic_abort(&w->af);
        return kb_fail(err, "%s: out of memory starting a SHA-256", path);
    }
    add_layout(meta, count, w->image_bytes);
    if (write_header(w, meta, err) || write_labels_and_split(w, labels, split, err)) {
        kb_cache_writer_abort(w);
        return -1;
    }
    return 0;
}

int kb_cache_writer_add(kb_cache_writer *w, const uint8_t *image, kb_err *err) {
    if (w->written >= w->count)
        return kb_fail(err, "%s: more images than the %lld announced", w->af.final_path, (long long)w->count);
    if (write_hashed(w, image, w->image_bytes, err)) return -1;
    w->written++;
    return 0;
}

/* Writes the 64 hex digits at pos, in the file and in the kept header. */
static int fill_digest(kb_cache_writer *w, long pos, const char hex[65], kb_err *err) {
    memcpy(w->header + pos, hex, 64);
    if (fseek(w->af.fp, pos, SEEK_SET) != 0)
        return kb_fail(err, "%s: cannot seek back to fill in a checksum", w->af.final_path);
    return kb_atomic_write(&w->af, hex, 64, err);
}

int kb_cache_writer_commit(kb_cache_writer *w, kb_err *err) {
    if (w->written != w->count) {
        kb_fail(err, "%s: %lld of %lld images written", w->af.final_path, (long long)w->written, (long long)w->count);
        kb_cache_writer_abort(w);
        return -1;
    }
    uint8_t digest[32];
    char hex[65], meta_hex[65];
    kb_sha256_final(w->hash, digest);
    w->hash = NULL;
    kb_sha256_hex(digest, hex);
    /* the buffered tail first: its write error (a full disk) would otherwise show as a failed seek */
    int rc = fflush(w->af.fp) != 0 ? kb_fail(err, "%s: write failed: %s", w->af.final_path, strerror(errno))
                                   : fill_digest(w, w->sha_pos, hex, err);
    /* the header's digest covers the payload's digest, filled in above */
    if (!rc && kb_cache_header_digest(w->header, w->header_len, (size_t)w->meta_sha_pos, meta_hex))
        rc = kb_fail(err, "%s: out of memory hashing the header", w->af.final_path);
    if (!rc) rc = fill_digest(w, w->meta_sha_pos, meta_hex, err);
    if (rc) {
        kb_cache_writer_abort(w);
        return -1;
    }
    free(w->header), w->header = NULL;
    return kb_atomic_commit(&w->af, err);
}

void kb_cache_writer_abort(kb_cache_writer *w) {
    if (w->hash) {
        uint8_t discard[32];
        kb_sha256_final(w->hash, discard);
        w->hash = NULL;
    }
    free(w->header), w->header = NULL;
    kb_atomic_abort(&w->af);
}
