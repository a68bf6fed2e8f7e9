/* The container formats of PyTorch checkpoints around the pickle machine of
 * metrics/torch_pickle.c: the legacy stream (magic, version, sys_info, state
 * dict, storage keys, then the raw storages) and the zip archive (data.pkl
 * and data/<key> records, through libzip). See metrics/torch_pickle.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>

#include "metrics/torch_pickle_impl.h"
#include "util/fileio.h"

/* 0x1950a86a20f9469cfc6c, as LONG1 writes it (little-endian). */
static const uint8_t kMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
#define KB_TP_LEGACY_VERSION 1001
#define KB_TP_MAX_RECORD ((uint64_t)1 << 32)

static const char *storage_owner(const kb_tp_file *f, int storage) {
    for (int i = 0; i < f->ntensors; i++)
        if (f->tensors[i].storage == storage) return f->tensors[i].name;
    return "(no state-dict entry)";
}

/* ------------------------------------------------------------------ legacy */

static const kb_tpv *dict_get(const kb_tpv *d, const char *key) {
    for (int64_t i = 0; i + 1 < d->n; i += 2)
        if (d->items[i]->kind == KB_TPV_STR && !strcmp(d->items[i]->s, key)) return d->items[i + 1];
    return NULL;
}

/* The three small pickles before the state dict. */
static int legacy_preamble(kb_tp_file *f, size_t *pos, kb_err *err) {
    kb_tpv *v;
    if (kb_tp_run(f, f->data, f->size, pos, 0, &v, err)) return -1;
    if (v->kind != KB_TPV_BIGINT || v->len != sizeof kMagic || memcmp(v->s, kMagic, sizeof kMagic))
        return kb_fail(err, "%s: not a PyTorch legacy checkpoint (magic number mismatch)", f->label);
    if (kb_tp_run(f, f->data, f->size, pos, 0, &v, err)) return -1;
    if (v->kind != KB_TPV_INT || v->i != KB_TP_LEGACY_VERSION)
        return kb_fail(err, "%s: legacy protocol version %lld, expected %d", f->label,
                       v->kind == KB_TPV_INT ? (long long)v->i : -1LL, KB_TP_LEGACY_VERSION);
    if (kb_tp_run(f, f->data, f->size, pos, 0, &v, err)) return -1;
    if (v->kind != KB_TPV_DICT) return kb_fail(err, "%s: sys_info is not a dict", f->label);
    /* type_sizes (short/int/long) is informational: storage counts are int64
     * whatever it says (the FID Inception file says long: 4). */
    const kb_tpv *le = dict_get(v, "little_endian");
    if (le && !(le->kind == KB_TPV_BOOL && le->i == 1))
        return kb_fail(err, "%s: written on a big-endian machine; not supported", f->label);
    return 0;
}

/* The storage-key list: every storage exactly once. *order gets indices. */
static int legacy_keys(kb_tp_file *f, const kb_tpv *list, int **order, kb_err *err) {
    if (list->kind != KB_TPV_LIST) return kb_fail(err, "%s: the storage-key list is not a list", f->label);
    if (list->n != f->nstorages)
        return kb_fail(err, "%s: %lld storage keys listed for %d storages", f->label, (long long)list->n, f->nstorages);
    int *ord = calloc((size_t)(f->nstorages ? f->nstorages : 1), sizeof *ord);
    char *seen = calloc((size_t)(f->nstorages ? f->nstorages : 1), 1);
    if (!ord || !seen) {
        free(ord);
        free(seen);
        return kb_fail(err, "%s: out of memory", f->label);
    }
    for (int64_t i = 0; i < list->n; i++) {
        const kb_tpv *k = list->items[i];
        int idx = k->kind == KB_TPV_STR ? kb_tp_map_get(&f->storage_index, k->s) : -1;
        if (idx < 0 || seen[idx]) {
            free(ord);
            free(seen);
            return kb_fail(err, "%s: storage-key list entry %lld is not a distinct known storage key", f->label, (long long)i);
        }
        seen[idx] = 1;
        ord[i] = idx;
    }
    free(seen);
    *order = ord;
    return 0;
}

static int legacy_truncated(kb_tp_file *f, size_t start, int first_missing, kb_err *err) {
    uint64_t need = f->expected_size - start, have = f->size > start ? f->size - start : 0;
    return kb_fail(err,
                   "%s: truncated: the %d storages need %llu bytes after the header (from byte %zu) but the file has "
                   "%llu: %llu bytes of storage data are missing (first incomplete: storage '%s' of tensor '%s'); "
                   "the complete file is %llu bytes",
                   f->label, f->nstorages, (unsigned long long)need, start, (unsigned long long)have,
                   (unsigned long long)f->missing, f->storages[first_missing].key, storage_owner(f, first_missing),
                   (unsigned long long)f->expected_size);
}

/* Walks the storages after the header: int64 count, then the bytes. */
static int legacy_storages(kb_tp_file *f, size_t start, const int *order, kb_err *err) {
    uint64_t off = start;
    int first_missing = -1;
    for (int i = 0; i < f->nstorages; i++) {
        kb_tp_storage *s = &f->storages[order[i]];
        uint64_t nbytes = (uint64_t)s->numel * kb_tp_elsize(s->dtype);
        if (off + 8 <= f->size) {
            int64_t count;
            memcpy(&count, f->data + off, 8);
            if (count != s->numel)
                return kb_fail(err, "%s: storage '%s' at byte %llu: element count %lld in the file, %lld expected",
                               f->label, s->key, (unsigned long long)off, (long long)count, (long long)s->numel);
        }
        if (off + 8 + nbytes <= f->size) s->data = f->data + off + 8;
        else if (first_missing < 0) first_missing = order[i];
        off += 8 + nbytes;
    }
    f->expected_size = off;
    if (off > f->size) {
        f->missing = off - f->size;
        if (!(f->flags & KB_TP_HEADER_ONLY)) return legacy_truncated(f, start, first_missing, err);
    } else if (off < f->size) {
        return kb_fail(err, "%s: %llu unexpected bytes after the last storage", f->label,
                       (unsigned long long)(f->size - off));
    }
    return 0;
}

static int open_legacy(kb_tp_file *f, kb_err *err) {
    size_t pos = 0;
    kb_tpv *root, *keys;
    int *order = NULL;
    f->format = KB_TP_LEGACY;
    if (legacy_preamble(f, &pos, err) || kb_tp_run(f, f->data, f->size, &pos, 0, &root, err) ||
        kb_tp_collect(f, root, err) || kb_tp_run(f, f->data, f->size, &pos, 0, &keys, err) ||
        legacy_keys(f, keys, &order, err))
        return -1;
    int rc = legacy_storages(f, pos, order, err);
    free(order);
    return rc ? rc : kb_tp_check_extents(f, err);
}

/* ------------------------------------------------------------------ zip */

static int zip_read_entry(kb_tp_file *f, zip_t *za, zip_int64_t idx, uint64_t want, uint8_t **out, kb_err *err) {
    const char *name = zip_get_name(za, (zip_uint64_t)idx, 0);
    zip_stat_t st;
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &st) || !(st.valid & ZIP_STAT_SIZE))
        return kb_fail(err, "%s: cannot stat zip record '%s'", f->label, name ? name : "?");
    if (st.size != want)
        return kb_fail(err, "%s: zip record '%s' has %llu bytes, %llu expected", f->label, name,
                       (unsigned long long)st.size, (unsigned long long)want);
    uint8_t *buf = malloc(want ? (size_t)want : 1);
    if (!buf) return kb_fail(err, "%s: out of memory for zip record '%s' (%llu bytes)", f->label, name, (unsigned long long)want);
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)idx, 0);
    zip_int64_t got = zf ? zip_fread(zf, buf, want) : -1;
    if (zf) zip_fclose(zf);
    if (got < 0 || (uint64_t)got != want) {
        free(buf);
        return kb_fail(err, "%s: cannot read zip record '%s': %s", f->label, name, zip_strerror(za));
    }
    *out = buf;
    return 0;
}

/* "<dir>/data.pkl" at the top level of the archive; *dir gets "<dir>/". */
static zip_int64_t zip_find_pickle(zip_t *za, char *dir, size_t dirsz) {
    zip_int64_t n = zip_get_num_entries(za, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        const char *slash = name ? strchr(name, '/') : NULL;
        if (!slash || strcmp(slash, "/data.pkl") || (size_t)(slash - name) + 2 > dirsz) continue;
        memcpy(dir, name, (size_t)(slash - name) + 1);
        dir[slash - name + 1] = 0;
        return i;
    }
    return -1;
}

static int zip_storages(kb_tp_file *f, zip_t *za, const char *dir, kb_err *err) {
    f->zip_data = calloc((size_t)(f->nstorages ? f->nstorages : 1), sizeof *f->zip_data);
    if (!f->zip_data) return kb_fail(err, "%s: out of memory", f->label);
    for (int i = 0; i < f->nstorages; i++) {
        kb_tp_storage *s = &f->storages[i];
        uint64_t nbytes = (uint64_t)s->numel * kb_tp_elsize(s->dtype);
        char rec[1024];
        if (snprintf(rec, sizeof rec, "%sdata/%s", dir, s->key) >= (int)sizeof rec)
            return kb_fail(err, "%s: storage key '%s' too long", f->label, s->key);
        zip_int64_t idx = zip_name_locate(za, rec, 0);
        if (idx < 0) {
            f->missing += nbytes;
            if (f->flags & KB_TP_HEADER_ONLY) continue;
            return kb_fail(err, "%s: truncated: no zip record '%s' for storage '%s' of tensor '%s'", f->label, rec,
                           s->key, storage_owner(f, i));
        }
        if (nbytes > KB_TP_MAX_RECORD) return kb_fail(err, "%s: storage '%s' of %llu bytes is too large", f->label, s->key, (unsigned long long)nbytes);
        if (zip_read_entry(f, za, idx, nbytes, &f->zip_data[i], err)) return -1;
        s->data = f->zip_data[i];
    }
    return 0;
}

static int zip_check_byteorder(kb_tp_file *f, zip_t *za, const char *dir, kb_err *err) {
    char rec[600];
    snprintf(rec, sizeof rec, "%sbyteorder", dir);
    zip_int64_t idx = zip_name_locate(za, rec, 0);
    if (idx < 0) return 0; /* older writers: little-endian */
    zip_stat_t st;
    uint8_t *buf = NULL;
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &st) || st.size > 16)
        return kb_fail(err, "%s: bad byteorder record", f->label);
    if (zip_read_entry(f, za, idx, st.size, &buf, err)) return -1;
    int little = st.size == 6 && !memcmp(buf, "little", 6);
    free(buf);
    return little ? 0 : kb_fail(err, "%s: written on a big-endian machine; not supported", f->label);
}

static int zip_contents(kb_tp_file *f, zip_t *za, kb_err *err) {
    char dir[512];
    zip_int64_t pk = zip_find_pickle(za, dir, sizeof dir);
    if (pk < 0) return kb_fail(err, "%s: zip archive without a '<dir>/data.pkl' record: not a torch.save checkpoint", f->label);
    zip_stat_t st;
    if (zip_stat_index(za, (zip_uint64_t)pk, 0, &st) || !(st.valid & ZIP_STAT_SIZE) || st.size > KB_TP_MAX_PICKLE)
        return kb_fail(err, "%s: bad data.pkl record", f->label);
    uint8_t *pkl = NULL;
    if (zip_check_byteorder(f, za, dir, err) || zip_read_entry(f, za, pk, st.size, &pkl, err)) return -1;
    size_t pos = 0;
    kb_tpv *root;
    int rc = kb_tp_run(f, pkl, (size_t)st.size, &pos, 0, &root, err);
    if (!rc && pos != st.size) rc = kb_fail(err, "%s: %llu bytes after data.pkl's STOP", f->label, (unsigned long long)(st.size - pos));
    free(pkl);
    if (rc || kb_tp_collect(f, root, err) || zip_storages(f, za, dir, err)) return -1;
    return kb_tp_check_extents(f, err);
}

static int open_zip(kb_tp_file *f, kb_err *err) {
    f->format = KB_TP_ZIP;
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(f->data, f->size, 0, &ze);
    zip_t *za = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
    if (!za) {
        int rc = kb_fail(err, "%s: not a readable zip archive: %s", f->label, zip_error_strerror(&ze));
        if (src) zip_source_free(src);
        zip_error_fini(&ze);
        return rc;
    }
    zip_error_fini(&ze);
    int rc = zip_contents(f, za, err);
    zip_discard(za); /* read-only: frees the source too */
    return rc;
}

/* ------------------------------------------------------------------ public */

kb_tp_file *kb_tp_open_mem(const uint8_t *data, size_t size, const char *label, int flags, kb_err *err) {
    kb_tp_file *f = calloc(1, sizeof *f);
    if (!f) {
        kb_fail(err, "%s: out of memory", label);
        return NULL;
    }
    snprintf(f->label, sizeof f->label, "%s", label ? label : "(memory)");
    f->data = data;
    f->size = size;
    f->flags = flags;
    int rc;
    if (size >= 4 && !memcmp(data, "PK\x03\x04", 4)) rc = open_zip(f, err);
    else if (size >= 3 && data[0] == 0x80 && data[1] == 2 && data[2] == 0x8a) rc = open_legacy(f, err);
    else rc = kb_fail(err, "%s: not a PyTorch checkpoint (neither torch.save's zip format nor its legacy format)", f->label);
    if (rc) {
        kb_tp_close(f);
        return NULL;
    }
    return f;
}

kb_tp_file *kb_tp_open(const char *path, int flags, kb_err *err) {
    uint8_t *data;
    size_t size;
    if (kb_read_file(path, &data, &size, err)) return NULL;
    kb_tp_file *f = kb_tp_open_mem(data, size, path, flags, err);
    if (!f) {
        free(data);
        return NULL;
    }
    f->owned = data;
    return f;
}

void kb_tp_close(kb_tp_file *f) {
    if (!f) return;
    if (f->zip_data)
        for (int i = 0; i < f->nstorages; i++) free(f->zip_data[i]);
    free(f->zip_data);
    free(f->storages);
    free(f->rebuilt);
    free(f->tensors);
    kb_tp_map_free(&f->storage_index);
    kb_tp_map_free(&f->name_index);
    kb_tp_arena_free(&f->arena);
    free(f->owned);
    free(f);
}

kb_tp_format kb_tp_format_of(const kb_tp_file *f) { return f->format; }
int kb_tp_count(const kb_tp_file *f) { return f->ntensors; }
const kb_tp_tensor *kb_tp_at(const kb_tp_file *f, int i) { return i >= 0 && i < f->ntensors ? &f->tensors[i] : NULL; }
int kb_tp_storage_count(const kb_tp_file *f) { return f->nstorages; }
const kb_tp_storage *kb_tp_storage_at(const kb_tp_file *f, int i) { return i >= 0 && i < f->nstorages ? &f->storages[i] : NULL; }
uint64_t kb_tp_missing_bytes(const kb_tp_file *f) { return f->missing; }
uint64_t kb_tp_expected_size(const kb_tp_file *f) { return f->expected_size; }

const kb_tp_tensor *kb_tp_find(const kb_tp_file *f, const char *name) {
    int i = kb_tp_map_get(&f->name_index, name);
    return i < 0 ? NULL : &f->tensors[i];
}

/* Row-major copy of a strided tensor: an odometer over the indices. */
static void gather_f32(const kb_tp_tensor *t, const uint8_t *base, float *dst) {
    int64_t idx[KB_MAX_DIMS] = {0};
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t off = t->offset;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        memcpy(dst + i, base + off * 4, 4);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

int kb_tp_read_f32(const kb_tp_file *f, const char *name, int ndim, const int64_t *shape, float *dst, size_t count,
                   kb_err *err) {
    const kb_tp_tensor *t = kb_tp_find(f, name);
    if (!t) return kb_fail(err, "%s: no tensor '%s'", f->label, name);
    if (t->dtype != KB_F32) return kb_fail(err, "%s: tensor '%s' is %s, float32 expected", f->label, name, kb_dtype_name(t->dtype));
    int ok = ndim < 0 || ndim == t->ndim;
    for (int d = 0; ok && ndim >= 0 && d < ndim; d++) ok = shape[d] < 0 || shape[d] == t->shape[d];
    if (!ok || (uint64_t)count != (uint64_t)t->numel) {
        char got[128] = "", want[128] = "";
        for (int d = 0; d < t->ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        for (int d = 0; d < ndim; d++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)shape[d]);
        return kb_fail(err, "%s: tensor '%s' has shape [%s], expected [%s] (%zu elements)", f->label, name, got,
                       ndim < 0 ? "any" : want, count);
    }
    const kb_tp_storage *s = &f->storages[t->storage];
    if (t->numel == 0) return 0;
    if (!s->data) return kb_fail(err, "%s: tensor '%s': its storage '%s' is not in the file (truncated)", f->label, name, s->key);
    int contiguous = 1;
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect) contiguous = 0;
        expect *= t->shape[d];
    }
    if (contiguous) memcpy(dst, s->data + t->offset * 4, (size_t)t->numel * 4);
    else gather_f32(t, s->data, dst);
    return 0;
}
