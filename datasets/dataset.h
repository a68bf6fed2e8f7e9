/* A prepared dataset cache (*.kbd), opened for use by training and metrics.
 *
 * File layout (all integers little-endian; see docs/datasets.md):
 *   "KBDSET01"                 8-byte magic
 *   u64 L                      length of the JSON metadata
 *   L bytes of UTF-8 JSON      format_version, name, source, resolution,
 *                              channels, count, classes (names, roles, counts),
 *                              splits, resize recipe, background, payload_sha256,
 *                              metadata_sha256 (of the header, magic to payload)
 *   zero padding               to a multiple of 64 bytes from the file start
 *   payload (sha256 covers all of it, padding included):
 *     int32 labels[count]
 *     uint8 split[count]       KB_SPLIT_TRAIN or KB_SPLIT_TEST
 *     zero padding             to a multiple of 64 bytes from the payload start
 *     uint8 images[count][resolution][resolution][channels]   (NHWC)
 *
 * kb_dataset_open maps the file read-only and checks magic, sizes, metadata
 * and the payload checksum before returning, so a truncated or corrupted cache
 * is an error at open time and never reaches a model. The checksum is computed
 * once per version of the file: a full hash that matches leaves a verification
 * stamp (util/verified.h) under the user's cache directory, and a later open
 * of the same, unchanged file takes the digest from it instead of reading the
 * whole payload again (minutes for an ImageNet cache). $KINDBENCH_VERIFY=always
 * hashes at every open and reads and writes no stamps. */
#ifndef KB_DS_DATASET_H
#define KB_DS_DATASET_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define KB_DSET_MAGIC "KBDSET01"
#define KB_DSET_FORMAT_VERSION 1
#define KB_DSET_ALIGN 64

/* The header's digest ("metadata_sha256"): SHA-256 of the file's first
 * header_len bytes (magic, length, JSON, padding) with the 64 hex digits of
 * that digest itself, at hex_pos, read as '0's. -1 when out of memory. */
int kb_cache_header_digest(const uint8_t *header, size_t header_len, size_t hex_pos, char hex[65]);

typedef enum { KB_SPLIT_TRAIN = 0, KB_SPLIT_TEST = 1, KB_SPLIT_ANY = -1 } kb_split;

/* What a class is for in a transfer experiment: seen while pretraining,
 * held out as novel (the transfer target), or in neither list. */
typedef enum { KB_ROLE_PRETRAIN = 0, KB_ROLE_NOVEL = 1, KB_ROLE_UNUSED = 2, KB_ROLE_ANY = -1 } kb_class_role;

const char *kb_split_name(kb_split s);
const char *kb_role_name(kb_class_role r);
/* Parses "pretrain"/"novel"/"unused"; -1 if unknown. */
int kb_role_parse(const char *s);

typedef struct {
    char path[4096];
    /* The mapped file. */
    uint8_t *map;
    size_t map_size;
    /* Parsed metadata (owned; other fields point into it or into the map). */
    cJSON *meta;
    const char *name;
    const char *source_kind;
    int resolution;
    int channels;
    int64_t count;
    int nclasses;
    const char **class_names;  /* [nclasses], strings inside meta */
    kb_class_role *class_role; /* [nclasses] */
    const int32_t *labels;     /* [count] */
    const uint8_t *split;      /* [count] */
    const uint8_t *images;     /* [count][resolution][resolution][channels] */
    char payload_sha256[65];
    /* 1 when the payload's digest was taken from a verification stamp of
     * this very file version, 0 when it was computed by this open. */
    int digest_from_stamp;
} kb_dataset;

/* How an open checks the payload checksum. */
typedef enum {
    KB_VERIFY_ONCE = 0, /* hash unless a stamp vouches for this version (the default) */
    KB_VERIFY_ALWAYS,   /* hash whatever the stamps say (`data info`); a match still stamps */
} kb_verify_mode;

typedef struct {
    kb_verify_mode verify;
    int quiet; /* no progress while hashing (shown only for payloads of 1 GiB and more) */
} kb_dataset_open_opts;

/* Opens and verifies a cache (the checksum as o says; o NULL: the defaults,
 * all zero). On failure ds holds nothing to close. */
int kb_dataset_open_with(kb_dataset *ds, const char *path, const kb_dataset_open_opts *o, kb_err *err);
/* kb_dataset_open_with with the defaults. */
int kb_dataset_open(kb_dataset *ds, const char *path, kb_err *err);
void kb_dataset_close(kb_dataset *ds);

/* Bytes of one image: resolution * resolution * channels. */
size_t kb_dataset_image_bytes(const kb_dataset *ds);
/* Image i, NHWC uint8 (valid until close). */
const uint8_t *kb_dataset_image(const kb_dataset *ds, int64_t i);
int32_t kb_dataset_label(const kb_dataset *ds, int64_t i);
kb_split kb_dataset_split(const kb_dataset *ds, int64_t i);
kb_class_role kb_dataset_class_role(const kb_dataset *ds, int cls);
/* Index of a class by name, or -1. */
int kb_dataset_class_index(const kb_dataset *ds, const char *name);

/* Indices of the images whose class has `role` and whose split is `split`
 * (KB_ROLE_ANY / KB_SPLIT_ANY match everything), in cache order. *out is
 * malloc'd (NULL when *n is 0); the caller frees it. */
int kb_dataset_select(const kb_dataset *ds, kb_class_role role, kb_split split, int64_t **out, int64_t *n,
                      kb_err *err);
/* The classes with `role`, ascending; *out malloc'd (NULL when *n is 0). */
int kb_dataset_classes_with_role(const kb_dataset *ds, kb_class_role role, int **out, int *n, kb_err *err);
/* Number of images of class cls in split (KB_SPLIT_ANY for all). */
int64_t kb_dataset_class_count(const kb_dataset *ds, int cls, kb_split split);

#endif
