#define _GNU_SOURCE /* memmem */
#include "datasets/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/cache.h"
#include "util/exact_int.h"
#include "util/progress.h"
#include "util/sha256.h"
#include "util/verified.h"

/* Payloads this large show progress while they are hashed (a GiB takes a
 * few seconds; below it, a bar would only flicker). */
#define KB_VERIFY_PROGRESS_BYTES (1ULL << 30)

/* Labels are read in place as int32: the format is little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kindbench dataset caches are little-endian; add byte swapping for this host"
#endif

static const char *const split_names[] = {"train", "test"};
static const char *const role_names[] = {"pretrain", "novel", "unused"};

const char *kb_split_name(kb_split s) { return s == KB_SPLIT_TRAIN || s == KB_SPLIT_TEST ? split_names[s] : "any"; }
const char *kb_role_name(kb_class_role r) { return r >= 0 && r <= KB_ROLE_UNUSED ? role_names[r] : "any"; }

int kb_role_parse(const char *s) {
    for (int r = 0; r <= KB_ROLE_UNUSED; r++)
        if (!strcmp(s, role_names[r])) return r;
    return -1;
}

static int map_file(kb_dataset *ds, const char *path, kb_file_version *v, kb_err *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (kb_file_version_of(fd, path, v, err)) {
        close(fd);
        return -1;
    }
    if (!S_ISREG(v->st.st_mode)) {
        close(fd);
        return kb_fail(err, "%s: not a regular file", path);
    }
    if (v->st.st_size < 16) {
        close(fd);
        return kb_fail(err, "%s: truncated cache: %lld bytes, shorter than the 16-byte header", path,
                       (long long)v->st.st_size);
    }
    void *map = mmap(NULL, (size_t)v->st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return kb_fail(err, "%s: cannot map: %s", path, strerror(errno));
    ds->map = map;
    ds->map_size = (size_t)v->st.st_size;
    return 0;
}

/* An integer field, or fallback when absent or not an integer that a double
 * holds exactly (|x| <= 2^53; casting a larger one could be undefined). */
static int64_t json_int(const cJSON *obj, const char *key, int64_t fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) return fallback;
    double x = v->valuedouble;
    return kb_double_is_int_in(x, -9007199254740992.0, 9007199254740992.0) ? (int64_t)x : fallback;
}

static const char *json_string(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Magic, metadata length and JSON. */
static int parse_header(kb_dataset *ds, uint64_t *json_len, kb_err *err) {
    if (memcmp(ds->map, KB_DSET_MAGIC, 8))
        return kb_fail(err, "%s: not a kindbench dataset cache (bad magic, expected %s)", ds->path, KB_DSET_MAGIC);
    uint64_t len = 0;
    for (int i = 0; i < 8; i++) len |= (uint64_t)ds->map[8 + i] << (8 * i);
    if (len > ds->map_size - 16)
        return kb_fail(err, "%s: truncated cache: metadata length %llu exceeds the %zu bytes after the header",
                       ds->path, (unsigned long long)len, ds->map_size - 16);
    ds->meta = cJSON_ParseWithLength((const char *)ds->map + 16, (size_t)len);
    if (!cJSON_IsObject(ds->meta)) return kb_fail(err, "%s: corrupt cache: metadata is not valid JSON", ds->path);
    *json_len = len;
    return 0;
}

int kb_cache_header_digest(const uint8_t *header, size_t header_len, size_t hex_pos, char hex[65]) {
    static const char zeros[64] = "0000000000000000000000000000000000000000000000000000000000000000";
    kb_sha256 *h = kb_sha256_new();
    if (!h) return -1;
    uint8_t digest[32];
    kb_sha256_update(h, header, hex_pos);
    kb_sha256_update(h, zeros, sizeof zeros);
    kb_sha256_update(h, header + hex_pos + 64, header_len - hex_pos - 64);
    kb_sha256_final(h, digest);
    kb_sha256_hex(digest, hex);
    return 0;
}

/* The header's own digest, when it has one (caches written before it was
 * added do not; their metadata is checked for sense only). Its value is
 * found as the last quoted copy of itself in the JSON: the writer prints it
 * last. Checked before the metadata is believed, so a flipped class name or
 * role is reported as corruption, not used. */
static int check_header_digest(kb_dataset *ds, uint64_t json_len, kb_err *err) {
    const char *want = json_string(ds->meta, "metadata_sha256");
    if (!want) return 0;
    uint64_t header_len = kb_cache_align(16 + json_len);
    char quoted[67], hex[65];
    snprintf(quoted, sizeof quoted, "\"%.64s\"", want);
    const uint8_t *at = NULL, *end = ds->map + 16 + json_len;
    for (const uint8_t *p = ds->map + 16; (p = memmem(p, (size_t)(end - p), quoted, 66)); p++) at = p;
    if (strlen(want) != 64 || !at || header_len > ds->map_size)
        return kb_fail(err, "%s: corrupt cache: metadata_sha256 is garbled or the header is cut short", ds->path);
    if (kb_cache_header_digest(ds->map, header_len, (size_t)(at + 1 - ds->map), hex))
        return kb_fail(err, "%s: out of memory hashing the header", ds->path);
    if (strcmp(hex, want))
        return kb_fail(err, "%s: corrupt cache: header (metadata) SHA-256 is %s, metadata_sha256 says %s", ds->path,
                       hex, want);
    return 0;
}

static int parse_classes(kb_dataset *ds, kb_err *err) {
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(ds->meta, "classes");
    if (!cJSON_IsArray(classes) || cJSON_GetArraySize(classes) < 1)
        return kb_fail(err, "%s: corrupt cache: metadata has no \"classes\" list", ds->path);
    ds->nclasses = cJSON_GetArraySize(classes);
    ds->class_names = calloc((size_t)ds->nclasses, sizeof(char *));
    ds->class_role = calloc((size_t)ds->nclasses, sizeof(kb_class_role));
    if (!ds->class_names || !ds->class_role) return kb_fail(err, "%s: out of memory", ds->path);
    int c = 0;
    const cJSON *cls;
    cJSON_ArrayForEach(cls, classes) {
        const char *name = json_string(cls, "name"), *role = json_string(cls, "role");
        int r = role ? kb_role_parse(role) : -1;
        if (!name || r < 0) return kb_fail(err, "%s: corrupt cache: class %d lacks a name or a known role", ds->path, c);
        ds->class_names[c] = name;
        ds->class_role[c++] = (kb_class_role)r;
    }
    return 0;
}

static int parse_meta(kb_dataset *ds, kb_err *err) {
    int64_t version = json_int(ds->meta, "format_version", -1);
    if (version != KB_DSET_FORMAT_VERSION)
        return kb_fail(err, "%s: cache format version %lld, this build reads %d", ds->path, (long long)version,
                       KB_DSET_FORMAT_VERSION);
    int64_t resolution = json_int(ds->meta, "resolution", -1), channels = json_int(ds->meta, "channels", -1);
    ds->count = json_int(ds->meta, "count", -1);
    ds->name = json_string(ds->meta, "name");
    const char *sha = json_string(ds->meta, "payload_sha256");
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(ds->meta, "source");
    ds->source_kind = json_string(source, "kind");
    /* count is bounded by the file's size (5 bytes of label and split per
     * image at least), so that the payload size below cannot overflow. */
    if (resolution < 1 || resolution > 65535 || (channels != 1 && channels != 3) || ds->count < 0 ||
        (uint64_t)ds->count > ds->map_size / 5 || !ds->name || !ds->source_kind || !sha || strlen(sha) != 64)
        return kb_fail(err, "%s: corrupt cache: metadata lacks or garbles resolution/channels/count/name/source/"
                            "payload_sha256", ds->path);
    ds->resolution = (int)resolution, ds->channels = (int)channels;
    memcpy(ds->payload_sha256, sha, 65);
    return parse_classes(ds, err);
}

/* The payload's place: its size must be what the header says (a truncated
 * file is the common failure), checked before anything is hashed. */
static int check_sizes(kb_dataset *ds, uint64_t json_len, const uint8_t **payload, uint64_t *bytes, kb_err *err) {
    uint64_t start = kb_cache_align(16 + json_len);
    uint64_t images_off = kb_cache_align((uint64_t)ds->count * 5), image_bytes, need;
    if (__builtin_mul_overflow((uint64_t)ds->count, (uint64_t)kb_dataset_image_bytes(ds), &image_bytes) ||
        __builtin_add_overflow(images_off, image_bytes, &need))
        need = UINT64_MAX; /* sizes that overflow: no file holds them */
    uint64_t have = ds->map_size > start ? ds->map_size - start : 0;
    if (have != need)
        return kb_fail(err, "%s: %s cache: header says %lld images of %dx%dx%d (%llu payload bytes), file holds %llu",
                       ds->path, have < need ? "truncated" : "corrupt", (long long)ds->count, ds->resolution,
                       ds->resolution, ds->channels, (unsigned long long)need, (unsigned long long)have);
    *payload = ds->map + start;
    *bytes = need;
    ds->labels = (const int32_t *)*payload;
    ds->split = *payload + (size_t)ds->count * 4;
    ds->images = *payload + images_off;
    return 0;
}

/* SHA-256 of the payload into hex, in chunks so that a large one (an
 * ImageNet cache is ~250 GB) shows progress. Returns 1 when it did, -1
 * when no hash could be started. */
static int hash_payload(const kb_dataset *ds, const uint8_t *payload, uint64_t bytes, int quiet, char hex[65]) {
    const uint64_t chunk = 64ULL << 20;
    const char *base = strrchr(ds->path, '/');
    char label[64];
    snprintf(label, sizeof label, "SHA-256 of %.40s, MiB", base ? base + 1 : ds->path);
    int shown = bytes >= KB_VERIFY_PROGRESS_BYTES && !quiet;
    kb_sha256 *h = kb_sha256_new();
    if (!h) return -1;
    kb_progress pg;
    kb_progress_start(&pg, label, (int64_t)(bytes >> 20), !shown);
    uint8_t digest[32];
    for (uint64_t done = 0; done < bytes;) {
        uint64_t step = bytes - done < chunk ? bytes - done : chunk;
        kb_sha256_update(h, payload + done, (size_t)step);
        done += step;
        kb_progress_update(&pg, (int64_t)(done >> 20));
    }
    kb_sha256_final(h, digest);
    kb_sha256_hex(digest, hex);
    kb_progress_finish(&pg);
    return shown;
}

/* $KINDBENCH_VERIFY: "always" hashes at every open and uses no stamps;
 * "once" or unset is the default. */
static int stamps_wanted(int *wanted, kb_err *err) {
    const char *env = getenv("KINDBENCH_VERIFY");
    *wanted = !env || !env[0] || !strcmp(env, "once");
    if (*wanted || !strcmp(env, "always")) return 0;
    return kb_fail(err, "$KINDBENCH_VERIFY=%s: expected 'always' (hash every cache at every open) or 'once' "
                        "(the default: hash each version of a cache once)", env);
}

/* The digest, from a stamp of this file version or computed (and then
 * stamped). A stamp that cannot be written costs the next open a hash, not
 * this one an error; that is said only where the hash was long enough to
 * show progress, to keep small runs' output clean. */
static int check_digest(kb_dataset *ds, const kb_file_version *v, const uint8_t *payload, uint64_t bytes,
                        const kb_dataset_open_opts *o, kb_err *err) {
    int use_stamps;
    if (stamps_wanted(&use_stamps, err)) return -1;
    char dir[4096], hex[65];
    kb_err why = {0};
    int have_dir = use_stamps && kb_verified_dir(dir, sizeof dir, &why) == 0;
    if (have_dir && o->verify == KB_VERIFY_ONCE && kb_stamp_found(dir, v, ds->payload_sha256)) {
        ds->digest_from_stamp = 1;
        return 0;
    }
    int shown = hash_payload(ds, payload, bytes, o->quiet, hex);
    if (shown < 0) return kb_fail(err, "%s: out of memory starting a SHA-256", ds->path);
    if (strcmp(hex, ds->payload_sha256))
        return kb_fail(err, "%s: corrupt cache: payload SHA-256 is %s, metadata says %s", ds->path, hex,
                       ds->payload_sha256);
    if (use_stamps && (!have_dir || kb_stamp_write(dir, v, hex, &why)) && shown)
        fprintf(stderr, "kindbench: note: cannot record that %s was verified (%s), so its next open hashes it again\n",
                ds->path, why.msg);
    return 0;
}

static int check_labels(const kb_dataset *ds, kb_err *err) {
    for (int64_t i = 0; i < ds->count; i++) {
        if (ds->labels[i] < 0 || ds->labels[i] >= ds->nclasses)
            return kb_fail(err, "%s: corrupt cache: image %lld has label %d, outside 0..%d", ds->path, (long long)i,
                           ds->labels[i], ds->nclasses - 1);
        if (ds->split[i] > KB_SPLIT_TEST)
            return kb_fail(err, "%s: corrupt cache: image %lld has split %u", ds->path, (long long)i, ds->split[i]);
    }
    return 0;
}

int kb_dataset_open_with(kb_dataset *ds, const char *path, const kb_dataset_open_opts *o, kb_err *err) {
    static const kb_dataset_open_opts defaults = {KB_VERIFY_ONCE, 0};
    memset(ds, 0, sizeof *ds);
    if (snprintf(ds->path, sizeof ds->path, "%s", path) >= (int)sizeof ds->path)
        return kb_fail(err, "%s: path too long", path);
    kb_file_version v;
    uint64_t json_len = 0, payload_bytes = 0;
    const uint8_t *payload = NULL;
    if (map_file(ds, path, &v, err) || parse_header(ds, &json_len, err) ||
        check_header_digest(ds, json_len, err) || parse_meta(ds, err) ||
        check_sizes(ds, json_len, &payload, &payload_bytes, err) ||
        check_digest(ds, &v, payload, payload_bytes, o ? o : &defaults, err) || check_labels(ds, err)) {
        kb_dataset_close(ds);
        return -1;
    }
    return 0;
}

int kb_dataset_open(kb_dataset *ds, const char *path, kb_err *err) { return kb_dataset_open_with(ds, path, NULL, err); }

void kb_dataset_close(kb_dataset *ds) {
    if (ds->map) munmap(ds->map, ds->map_size);
    cJSON_Delete(ds->meta);
    free(ds->class_names);
    free(ds->class_role);
    memset(ds, 0, sizeof *ds);
}

size_t kb_dataset_image_bytes(const kb_dataset *ds) { return (size_t)ds->resolution * ds->resolution * ds->channels; }

const uint8_t *kb_dataset_image(const kb_dataset *ds, int64_t i) {
    return ds->images + (size_t)i * kb_dataset_image_bytes(ds);
}

int32_t kb_dataset_label(const kb_dataset *ds, int64_t i) { return ds->labels[i]; }
kb_split kb_dataset_split(const kb_dataset *ds, int64_t i) { return (kb_split)ds->split[i]; }
kb_class_role kb_dataset_class_role(const kb_dataset *ds, int cls) { return ds->class_role[cls]; }

int kb_dataset_class_index(const kb_dataset *ds, const char *name) {
    for (int c = 0; c < ds->nclasses; c++)
        if (!strcmp(ds->class_names[c], name)) return c;
    return -1;
}

static int matches(const kb_dataset *ds, int64_t i, kb_class_role role, kb_split split) {
    return (role == KB_ROLE_ANY || ds->class_role[ds->labels[i]] == role) &&
           (split == KB_SPLIT_ANY || ds->split[i] == (uint8_t)split);
}

int kb_dataset_select(const kb_dataset *ds, kb_class_role role, kb_split split, int64_t **out, int64_t *n,
                      kb_err *err) {
    *out = NULL;
    *n = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < ds->count; i++) k += matches(ds, i, role, split);
    if (k == 0) return 0;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)k);
    if (!idx) return kb_fail(err, "%s: out of memory selecting %lld images", ds->path, (long long)k);
    k = 0;
    for (int64_t i = 0; i < ds->count; i++)
        if (matches(ds, i, role, split)) idx[k++] = i;
    *out = idx;
    *n = k;
    return 0;
}

int kb_dataset_classes_with_role(const kb_dataset *ds, kb_class_role role, int **out, int *n, kb_err *err) {
    *out = NULL;
    *n = 0;
    int k = 0;
    for (int c = 0; c < ds->nclasses; c++) k += role == KB_ROLE_ANY || ds->class_role[c] == role;
    if (k == 0) return 0;
    int *cls = malloc(sizeof(int) * (size_t)k);
    if (!cls) return kb_fail(err, "%s: out of memory", ds->path);
    k = 0;
    for (int c = 0; c < ds->nclasses; c++)
        if (role == KB_ROLE_ANY || ds->class_role[c] == role) cls[k++] = c;
    *out = cls;
    *n = k;
    return 0;
}

int64_t kb_dataset_class_count(const kb_dataset *ds, int cls, kb_split split) {
    int64_t k = 0;
    for (int64_t i = 0; i < ds->count; i++)
        k += ds->labels[i] == cls && (split == KB_SPLIT_ANY || ds->split[i] == (uint8_t)split);
    return k;
}
