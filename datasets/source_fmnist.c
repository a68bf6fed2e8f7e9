/* Fashion-MNIST from Debian's dataset-fashion-mnist package: four gzipped idx
 * files, read with zlib. The idx header is validated against the data so that
 * a truncated or corrupt download is a clear error, never a short dataset. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "datasets/source.h"
#include "util/fileio.h"

#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned byte, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned byte, 1 dimension */

static const char *const fmnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                               "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* An idx file being read: the decompressed bytes consumed so far count
 * towards the "file holds N bytes" part of truncation messages. */
typedef struct {
    gzFile gz;
    const char *path;
    int64_t consumed;
} idx_reader;

static int idx_read(idx_reader *r, void *buf, size_t n, const char *what, kb_err *err) {
    size_t got = 0;
    while (got < n) {
        unsigned chunk = (unsigned)((n - got) > (1u << 30) ? (1u << 30) : (n - got));
        int k = gzread(r->gz, (uint8_t *)buf + got, chunk);
        if (k < 0) {
            int zerr;
            const char *msg = gzerror(r->gz, &zerr);
            size_t plen = strlen(r->path); /* zlib prefixes its message with the path */
            if (!strncmp(msg, r->path, plen) && !strncmp(msg + plen, ": ", 2)) msg += plen + 2;
            return kb_fail(err, "%s: corrupt gzip data while reading %s: %s", r->path, what, msg);
        }
        if (k == 0) break;
        got += (size_t)k;
    }
    r->consumed += (int64_t)got;
    if (got < n) return 1; /* short: the caller words the message */
    return 0;
}

static int idx_read_u32(idx_reader *r, uint32_t *v, const char *what, kb_err *err) {
    uint8_t b[4];
    int rc = idx_read(r, b, 4, what, err);
    if (rc < 0) return -1;
    if (rc > 0) return kb_fail(err, "%s: truncated idx file: ends inside the header (%s)", r->path, what);
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

static int idx_open(idx_reader *r, const char *path, kb_err *err) {
    r->path = path;
    r->consumed = 0;
    if (!kb_is_file(path)) return kb_fail(err, "%s: missing idx file (install dataset-fashion-mnist)", path);
    r->gz = gzopen(path, "rb");
    if (!r->gz) return kb_fail(err, "%s: cannot open", path);
    return 0;
}

/* Data after the declared payload means the header and the file disagree. */
static int idx_expect_end(idx_reader *r, kb_err *err) {
    uint8_t extra;
    int64_t before = r->consumed;
    int rc = idx_read(r, &extra, 1, "the end of the file", err);
    if (rc < 0) return -1;
    if (rc == 0) return kb_fail(err, "%s: idx file has data beyond the %lld bytes its header declares", r->path,
                                (long long)before);
    return 0;
}

static int read_images(const char *path, uint8_t **px, uint32_t *count, uint32_t *rows, uint32_t *cols,
                       kb_err *err) {
    idx_reader r;
    if (idx_open(&r, path, err)) return -1;
    uint32_t magic;
    int rc = -1;
    *px = NULL;
    if (idx_read_u32(&r, &magic, "magic", err)) goto done;
    if (magic != IDX_MAGIC_IMAGES) {
        kb_fail(err, "%s: not an idx image file: magic 0x%08x, expected 0x%08x", path, magic, IDX_MAGIC_IMAGES);
        goto done;
    }
    if (idx_read_u32(&r, count, "image count", err) || idx_read_u32(&r, rows, "rows", err) ||
        idx_read_u32(&r, cols, "columns", err))
        goto done;
    if (*count == 0 || *count > 10000000u || *rows == 0 || *rows > 4096 || *cols == 0 || *cols > 4096) {
        kb_fail(err, "%s: implausible idx header: %u images of %ux%u", path, *count, *rows, *cols);
        goto done;
    }
    size_t n = (size_t)*count * *rows * *cols;
    if (!(*px = malloc(n))) {
        kb_fail(err, "%s: out of memory for %zu bytes", path, n);
        goto done;
    }
    int short_read = idx_read(&r, *px, n, "pixels", err);
    if (short_read < 0) goto done;
    if (short_read) {
        kb_fail(err, "%s: truncated idx file: header says %u images of %ux%u, file holds %lld bytes (needs %lld)",
                path, *count, *rows, *cols, (long long)r.consumed, (long long)(16 + n));
        goto done;
    }
    rc = idx_expect_end(&r, err);
done:
    gzclose(r.gz);
    if (rc) {
        free(*px);
        *px = NULL;
    }
    return rc;
}

static int read_labels(const char *path, uint8_t **labels, uint32_t *count, kb_err *err) {
    idx_reader r;
    if (idx_open(&r, path, err)) return -1;
    uint32_t magic;
    int rc = -1;
    *labels = NULL;
    if (idx_read_u32(&r, &magic, "magic", err)) goto done;
    if (magic != IDX_MAGIC_LABELS) {
        kb_fail(err, "%s: not an idx label file: magic 0x%08x, expected 0x%08x", path, magic, IDX_MAGIC_LABELS);
        goto done;
    }
    if (idx_read_u32(&r, count, "label count", err)) goto done;
    if (*count == 0 || *count > 10000000u) {
        kb_fail(err, "%s: implausible idx header: %u labels", path, *count);
        goto done;
    }
    if (!(*labels = malloc(*count))) {
        kb_fail(err, "%s: out of memory", path);
        goto done;
    }
    int short_read = idx_read(&r, *labels, *count, "labels", err);
    if (short_read < 0) goto done;
    if (short_read) {
        kb_fail(err, "%s: truncated idx file: header says %u labels, file holds %lld bytes (needs %lld)", path,
                *count, (long long)r.consumed, (long long)(8 + (int64_t)*count));
        goto done;
    }
    for (uint32_t i = 0; i < *count; i++)
        if ((*labels)[i] >= 10) {
            kb_fail(err, "%s: label %u at index %u is outside 0..9", path, (*labels)[i], i);
            goto done;
        }
    rc = idx_expect_end(&r, err);
done:
    gzclose(r.gz);
    if (rc) {
        free(*labels);
        *labels = NULL;
    }
    return rc;
}

/* Appends one split (train or t10k) to the source's in-memory images. */
static int add_split(kb_source *src, const char *dir, const char *prefix, int split, kb_err *err) {
    char ipath[4096], lpath[4096], name[128];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    if (kb_path_join(ipath, sizeof ipath, dir, name, err)) return -1;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    if (kb_path_join(lpath, sizeof lpath, dir, name, err)) return -1;
    uint8_t *px = NULL, *labels = NULL;
    uint32_t n_img, rows, cols, n_lab;
    int rc = -1;
    if (read_images(ipath, &px, &n_img, &rows, &cols, err) || read_labels(lpath, &labels, &n_lab, err)) goto done;
    if (n_img != n_lab) {
        kb_fail(err, "%s: holds %u images but %s holds %u labels", ipath, n_img, lpath, n_lab);
        goto done;
    }
    if (src->mem && (src->mem_w != (int)cols || src->mem_h != (int)rows)) {
        kb_fail(err, "%s: images are %ux%u, the other split's are %dx%d", ipath, rows, cols, src->mem_h, src->mem_w);
        goto done;
    }
    size_t per = (size_t)rows * cols, have = (size_t)src->count * per;
    uint8_t *mem = realloc(src->mem, have + (size_t)n_img * per);
    if (!mem) {
        kb_fail(err, "%s: out of memory", ipath);
        goto done;
    }
    src->mem = mem;
    src->mem_w = (int)cols;
    src->mem_h = (int)rows;
    memcpy(mem + have, px, (size_t)n_img * per);
    rc = 0;
    for (uint32_t i = 0; i < n_img && rc == 0; i++) rc = kb_source_add_item(src, NULL, NULL, labels[i], split, err);
done:
    free(px);
    free(labels);
    return rc;
}

int kb_source_fmnist_check(const kb_source_opts *opts, kb_err *err) {
    if (opts->style || opts->label)
        return kb_fail(err, "fashion-mnist: --style and --label do not apply (its 10 classes are fixed)");
    return 0;
}

int kb_source_fmnist_open(kb_source *src, const kb_source_opts *opts, kb_err *err) {
    const char *dir = opts->input ? opts->input : FMNIST_DEFAULT_DIR;
    if (!kb_is_dir(dir)) return kb_fail(err, "%s: not a directory (install dataset-fashion-mnist or give --input)", dir);
    snprintf(src->input, sizeof src->input, "%s", dir);
    snprintf(src->label_mode, sizeof src->label_mode, "idx-labels");
    snprintf(src->name_hint, sizeof src->name_hint, "fashion-mnist");
    src->channels = 1;
    for (int c = 0; c < 10; c++)
        if (kb_source_add_class(src, fmnist_classes[c], err)) return -1;
    if (add_split(src, dir, "train", KB_SPLIT_TRAIN, err) || add_split(src, dir, "t10k", KB_SPLIT_TEST, err))
        return -1;
    cJSON_AddStringToObject(src->details, "files", "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz");
    cJSON_AddStringToObject(src->details, "split", "train-* files are the train split, t10k-* the test split");
    return 0;
}
