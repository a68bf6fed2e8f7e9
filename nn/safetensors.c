/* safetensors reader and writer (see nn/safetensors.h). */
#include "nn/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util/exact_int.h"
#include "util/fileio.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader copies it as is and needs a little-endian host"
#endif

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    kb_dtype dt;
} kDtypes[] = {{"F32", KB_F32}, {"F64", KB_F64}, {"BF16", KB_BF16}, {"F16", KB_F16},
               {"I32", KB_I32}, {"I64", KB_I64}, {"U8", KB_U8}};
#define KB_ST_NDTYPES ((int)(sizeof kDtypes / sizeof kDtypes[0]))

const char *kb_st_dtype_name(kb_dtype dt) {
    for (int i = 0; i < KB_ST_NDTYPES; i++)
        if (kDtypes[i].dt == dt) return kDtypes[i].name;
    return "?";
}

int kb_st_dtype_parse(const char *s, kb_dtype *out) {
    for (int i = 0; i < KB_ST_NDTYPES; i++)
        if (strcmp(kDtypes[i].name, s) == 0) {
            *out = kDtypes[i].dt;
            return 0;
        }
    return -1;
}

static int dtype_valid(kb_dtype dt) { return strcmp(kb_st_dtype_name(dt), "?") != 0; }

/* Element count of a shape, or -1 when an entry is negative or the tensor's
 * bytes (count * elem_size) would exceed 2^62: a bound on the count alone let
 * an 8-byte dtype's byte size wrap past 2^64 and pass the size check. */
static int64_t shape_numel(int ndim, const int64_t *shape, size_t elem_size) {
    const int64_t limit = ((int64_t)1 << 62) / (int64_t)elem_size;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] > 0 && n > limit / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

/* ---------------------------------------------------------------- reader */

struct kb_st_file {
    char path[4096];
    FILE *fp;
    uint64_t data_start; /* 8 + header length */
    cJSON *root;         /* owns the names and metadata strings */
    int n;
    kb_st_tensor *t;   /* sorted by offset */
    int *by_name;      /* indices into t, sorted by name */
    int nmeta;
    cJSON **meta;      /* metadata string items, header order */
};

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!kb_double_is_int_in(v, 0.0, 9007199254740992.0)) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Parses one tensor entry of the header into *t. */
static int parse_entry(const kb_st_file *f, const cJSON *e, kb_st_tensor *t, kb_err *err) {
    const char *nm = e->string;
    t->name = nm;
    if (!cJSON_IsObject(e)) return kb_fail(err, "%s: tensor '%s': header entry is not a JSON object", f->path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return kb_fail(err, "%s: tensor '%s': missing or non-string \"dtype\"", f->path, nm);
    if (kb_st_dtype_parse(dt->valuestring, &t->dtype))
        return kb_fail(err, "%s: tensor '%s': dtype '%.32s' not supported (F32, F64, BF16, F16, I32, I64, U8)",
                       f->path, nm, dt->valuestring);
    if (!cJSON_IsArray(sh)) return kb_fail(err, "%s: tensor '%s': missing or non-array \"shape\"", f->path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > KB_MAX_DIMS)
        return kb_fail(err, "%s: tensor '%s': rank %d exceeds the supported %d", f->path, nm, nd, KB_MAX_DIMS);
    t->ndim = nd;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        uint64_t v;
        if (json_uint(d, &v) || v > ((uint64_t)1 << 62))
            return kb_fail(err, "%s: tensor '%s': shape entry %d is not a non-negative integer", f->path, nm, i);
        t->shape[i++] = (int64_t)v;
    }
    t->numel = shape_numel(nd, t->shape, kb_dtype_size(t->dtype));
    if (t->numel < 0) return kb_fail(err, "%s: tensor '%s': byte size of the shape overflows", f->path, nm);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(off->child, &t->begin) ||
        json_uint(off->child->next, &t->end))
        return kb_fail(err, "%s: tensor '%s': \"data_offsets\" must be [begin, end] non-negative integers", f->path,
                       nm);
    if (t->end < t->begin)
        return kb_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin", f->path, nm,
                       (unsigned long long)t->begin, (unsigned long long)t->end);
    uint64_t want = (uint64_t)t->numel * kb_dtype_size(t->dtype);
    if (t->end - t->begin != want) {
        char s[160];
        shape_str(t->ndim, t->shape, s, sizeof s);
        return kb_fail(err, "%s: tensor '%s': %s %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu", f->path,
                       nm, s, kb_st_dtype_name(t->dtype), (unsigned long long)want, (unsigned long long)t->begin,
                       (unsigned long long)t->end, (unsigned long long)(t->end - t->begin));
    }
    return 0;
}

static int parse_metadata(kb_st_file *f, const cJSON *m, kb_err *err) {
    if (!cJSON_IsObject(m)) return kb_fail(err, "%s: \"__metadata__\" is not a JSON object", f->path);
    f->meta = calloc((size_t)cJSON_GetArraySize(m) + 1, sizeof *f->meta);
    if (!f->meta) return kb_fail(err, "%s: out of memory", f->path);
    cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsString(e))
            return kb_fail(err, "%s: metadata '%s' is not a string (safetensors metadata maps strings to strings)",
                           f->path, e->string);
        f->meta[f->nmeta++] = e;
    }
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const kb_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* empty tensors sharing an offset: a fixed order */
}

/* The name index: indices sorted by name (merge sort: qsort's comparator
 * could not see the tensor array without global state). */
static void sort_by_name(const kb_st_tensor *t, int *idx, int *tmp, int n) {
    if (n < 2) return;
    int h = n / 2;
    sort_by_name(t, idx, tmp, h);
    sort_by_name(t, idx + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = strcmp(t[idx[i]].name, t[idx[j]].name) <= 0 ? idx[i++] : idx[j++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

/* The tensors, sorted by offset, must tile [0, data_size) exactly. */
static int check_layout(const kb_st_file *f, uint64_t data_size, kb_err *err) {
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const kb_st_tensor *t = &f->t[i];
        if (t->end > data_size)
            return kb_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] beyond the %llu-byte data section "
                                "(truncated file?)",
                           f->path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)data_size);
        if (t->begin < at)
            return kb_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' (ends at %llu)",
                           f->path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           f->t[i - 1].name, (unsigned long long)at);
        if (t->begin > at)
            return kb_fail(err, "%s: tensor '%s': gap of %llu bytes before its data at offset %llu", f->path, t->name,
                           (unsigned long long)(t->begin - at), (unsigned long long)t->begin);
        at = t->end;
    }
    if (at != data_size)
        return kb_fail(err, "%s: the tensors cover %llu bytes of a %llu-byte data section (trailing garbage?)",
                       f->path, (unsigned long long)at, (unsigned long long)data_size);
    return 0;
}

/* Reads the length and JSON header, returns the parsed root. */
static cJSON *read_header(kb_st_file *f, uint64_t file_size, kb_err *err) {
    if (file_size < 8) {
        kb_fail(err, "%s: %llu bytes is too short for a safetensors file (8-byte header length first)", f->path,
                (unsigned long long)file_size);
        return NULL;
    }
    uint8_t lenb[8];
    if (fread(lenb, 1, 8, f->fp) != 8) {
        kb_fail(err, "%s: cannot read the header length", f->path);
        return NULL;
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | lenb[i];
    if (hl > file_size - 8 || hl > KB_ST_MAX_HEADER || hl < 2) {
        kb_fail(err, "%s: header length %llu is impossible (file has %llu bytes after the length, limit %llu)",
                f->path, (unsigned long long)hl, (unsigned long long)(file_size - 8),
                (unsigned long long)KB_ST_MAX_HEADER);
        return NULL;
    }
    f->data_start = 8 + hl;
    char *buf = malloc((size_t)hl + 1);
    if (!buf) {
        kb_fail(err, "%s: out of memory for a %llu-byte header", f->path, (unsigned long long)hl);
        return NULL;
    }
    cJSON *root = NULL;
    if (fread(buf, 1, (size_t)hl, f->fp) != (size_t)hl) {
        kb_fail(err, "%s: cannot read the %llu-byte header", f->path, (unsigned long long)hl);
        goto done;
    }
    buf[hl] = '\0';
    if (buf[0] != '{') {
        kb_fail(err, "%s: header does not start with '{' (not a safetensors file?)", f->path);
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(buf, (size_t)hl, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long pos = at && at >= buf && at <= buf + hl ? (long)(at - buf) : -1;
        kb_fail(err, "%s: header is not valid JSON (error near byte %ld of %llu)", f->path, pos,
                (unsigned long long)hl);
        goto done;
    }
    for (const char *p = end; p && p < buf + hl; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            kb_fail(err, "%s: unexpected bytes after the header JSON (byte %ld)", f->path, (long)(p - buf));
            cJSON_Delete(root);
            root = NULL;
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        kb_fail(err, "%s: header JSON is not an object", f->path);
        cJSON_Delete(root);
        root = NULL;
    }
done:
    free(buf);
    return root;
}

static int parse_header(kb_st_file *f, kb_err *err) {
    int count = cJSON_GetArraySize(f->root);
    f->t = calloc((size_t)count + 1, sizeof *f->t);
    f->by_name = calloc((size_t)count + 1, sizeof *f->by_name);
    int *tmp = calloc((size_t)count + 1, sizeof *tmp);
    if (!f->t || !f->by_name || !tmp) {
        free(tmp);
        return kb_fail(err, "%s: out of memory for %d header entries", f->path, count);
    }
    int rc = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, f->root) {
        if (strcmp(e->string, "__metadata__") == 0) rc = f->meta ? kb_fail(err, "%s: two \"__metadata__\" entries", f->path)
                                                                 : parse_metadata(f, e, err);
        else rc = parse_entry(f, e, &f->t[f->n++], err);
        if (rc) break;
    }
    if (!rc) {
        qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_offset);
        for (int i = 0; i < f->n; i++) f->by_name[i] = i;
        sort_by_name(f->t, f->by_name, tmp, f->n);
        for (int i = 1; i < f->n && !rc; i++)
            if (strcmp(f->t[f->by_name[i]].name, f->t[f->by_name[i - 1]].name) == 0)
                rc = kb_fail(err, "%s: tensor '%s' appears twice in the header", f->path, f->t[f->by_name[i]].name);
    }
    free(tmp);
    return rc;
}

kb_st_file *kb_st_open(const char *path, kb_err *err) {
    kb_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        kb_fail(err, "%s: out of memory", path);
        return NULL;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    f->fp = fopen(path, "rb");
    if (!f->fp) {
        kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (fseeko(f->fp, 0, SEEK_END) != 0) {
        kb_fail(err, "%s: cannot seek: %s", path, strerror(errno));
        goto fail;
    }
    off_t size = ftello(f->fp);
    rewind(f->fp);
    if (size < 0) {
        kb_fail(err, "%s: cannot tell the file size", path);
        goto fail;
    }
    f->root = read_header(f, (uint64_t)size, err);
    if (!f->root || parse_header(f, err) || check_layout(f, (uint64_t)size - f->data_start, err)) goto fail;
    return f;
fail:
    kb_st_close(f);
    return NULL;
}

void kb_st_close(kb_st_file *f) {
    if (!f) return;
    if (f->fp) fclose(f->fp);
    cJSON_Delete(f->root);
    free(f->t);
    free(f->by_name);
    free(f->meta);
    free(f);
}

const char *kb_st_path(const kb_st_file *f) { return f->path; }
int kb_st_count(const kb_st_file *f) { return f->n; }
const kb_st_tensor *kb_st_at(const kb_st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }

const kb_st_tensor *kb_st_find(const kb_st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const kb_st_tensor *t = &f->t[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const kb_st_tensor *kb_st_get(const kb_st_file *f, const char *name, kb_err *err) {
    const kb_st_tensor *t = kb_st_find(f, name);
    if (!t) kb_fail(err, "%s: no tensor '%s' (file has %d tensors)", f->path, name, f->n);
    return t;
}

/* Shape check: ndim < 0 accepts any rank; -1 entries match any size. */
static int check_shape(const kb_st_file *f, const kb_st_tensor *t, int ndim, const int64_t *shape, kb_err *err) {
    if (ndim < 0) return 0;
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (ok) return 0;
    char want[160], got[160];
    shape_str(ndim, shape, want, sizeof want);
    shape_str(t->ndim, t->shape, got, sizeof got);
    return kb_fail(err, "%s: tensor '%s': expected shape %s, file has %s", f->path, t->name, want, got);
}

static int read_bytes(kb_st_file *f, const kb_st_tensor *t, void *dst, kb_err *err) {
    size_t n = (size_t)(t->end - t->begin);
    if (n == 0) return 0;
    if (fseeko(f->fp, (off_t)(f->data_start + t->begin), SEEK_SET) != 0 || fread(dst, 1, n, f->fp) != n)
        return kb_fail(err, "%s: tensor '%s': cannot read %zu bytes at offset %llu (file changed?)", f->path, t->name,
                       n, (unsigned long long)(f->data_start + t->begin));
    return 0;
}

int kb_st_read(kb_st_file *f, const char *name, kb_dtype dtype, int ndim, const int64_t *shape, void *dst,
               size_t dst_bytes, kb_err *err) {
    const kb_st_tensor *t = kb_st_get(f, name, err);
    if (!t) return -1;
    if (t->dtype != dtype)
        return kb_fail(err, "%s: tensor '%s': expected dtype %s, file has %s", f->path, name, kb_st_dtype_name(dtype),
                       kb_st_dtype_name(t->dtype));
    if (check_shape(f, t, ndim, shape, err)) return -1;
    if (dst_bytes != t->end - t->begin)
        return kb_fail(err, "%s: tensor '%s': destination holds %zu bytes, tensor has %llu", f->path, name, dst_bytes,
                       (unsigned long long)(t->end - t->begin));
    return read_bytes(f, t, dst, err);
}

/* IEEE half to float, exactly (every half is a float). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, u;
    if (e == 0x1f) u = sign | 0x7f800000u | (m << 13); /* inf, NaN */
    else if (e != 0) u = sign | ((e + 112) << 23) | (m << 13);
    else if (m == 0) u = sign;
    else { /* subnormal: m * 2^-24, normalised */
        int s = 0;
        while (!(m & 0x400u)) {
            m <<= 1;
            s++;
        }
        u = sign | ((uint32_t)(113 - s) << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int kb_st_read_f32(kb_st_file *f, const char *name, int ndim, const int64_t *shape, float *dst, size_t dst_count,
                   kb_err *err) {
    const kb_st_tensor *t = kb_st_get(f, name, err);
    if (!t) return -1;
    if (t->dtype != KB_F32 && t->dtype != KB_BF16 && t->dtype != KB_F16)
        return kb_fail(err, "%s: tensor '%s': dtype %s cannot be read as F32 without loss (F32, BF16, F16 can)",
                       f->path, name, kb_st_dtype_name(t->dtype));
    if (check_shape(f, t, ndim, shape, err)) return -1;
    if (dst_count != (size_t)t->numel)
        return kb_fail(err, "%s: tensor '%s': destination holds %zu floats, tensor has %lld elements", f->path, name,
                       dst_count, (long long)t->numel);
    if (t->dtype == KB_F32) return read_bytes(f, t, dst, err);
    /* 16-bit: read into the upper half of dst, widen from the front (element i
     * is written over bytes [4i, 4i+4), below the source of element i+1). */
    uint8_t *h = (uint8_t *)dst + 2 * (size_t)t->numel;
    if (read_bytes(f, t, h, err)) return -1;
    for (int64_t i = 0; i < t->numel; i++) {
        uint16_t v;
        memcpy(&v, h + 2 * i, 2);
        if (t->dtype == KB_BF16) {
            uint32_t u = (uint32_t)v << 16;
            memcpy(&dst[i], &u, 4);
        } else {
            dst[i] = half_to_float(v);
        }
    }
    return 0;
}

int kb_st_read_alloc(kb_st_file *f, const char *name, kb_dtype dtype, const kb_st_tensor **info, void **out,
                     kb_err *err) {
    *out = NULL;
    const kb_st_tensor *t = kb_st_get(f, name, err);
    if (!t) return -1;
    if (info) *info = t;
    size_t n = (size_t)(t->end - t->begin);
    void *p = malloc(n ? n : 1);
    if (!p) return kb_fail(err, "%s: tensor '%s': out of memory for %zu bytes", f->path, name, n);
    if (kb_st_read(f, name, dtype, -1, NULL, p, n, err)) {
        free(p);
        return -1;
    }
    *out = p;
    return 0;
}

const char *kb_st_meta(const kb_st_file *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[i]->string, key) == 0) return f->meta[i]->valuestring;
    return NULL;
}

int kb_st_meta_count(const kb_st_file *f) { return f->nmeta; }

void kb_st_meta_at(const kb_st_file *f, int i, const char **key, const char **value) {
    *key = i >= 0 && i < f->nmeta ? f->meta[i]->string : NULL;
    *value = i >= 0 && i < f->nmeta ? f->meta[i]->valuestring : NULL;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    kb_dtype dtype;
    int ndim;
    int64_t shape[KB_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
} st_entry;

struct kb_st_writer {
    st_entry *t;
    int n, cap;
    char **mkey, **mval;
    int nmeta, mcap;
};

kb_st_writer *kb_st_writer_new(kb_err *err) {
    kb_st_writer *w = calloc(1, sizeof *w);
    if (!w) kb_fail(err, "safetensors writer: out of memory");
    return w;
}

void kb_st_writer_free(kb_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    for (int i = 0; i < w->nmeta; i++) {
        free(w->mkey[i]);
        free(w->mval[i]);
    }
    free(w->t);
    free(w->mkey);
    free(w->mval);
    free(w);
}

int kb_st_writer_add(kb_st_writer *w, const char *name, kb_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, kb_err *err) {
    if (!name || !name[0] || strcmp(name, "__metadata__") == 0)
        return kb_fail(err, "safetensors writer: invalid tensor name '%s'", name ? name : "(null)");
    if (!dtype_valid(dtype)) return kb_fail(err, "safetensors writer: tensor '%s': unsupported dtype %d", name, dtype);
    if (ndim < 0 || ndim > KB_MAX_DIMS)
        return kb_fail(err, "safetensors writer: tensor '%s': rank %d outside 0..%d", name, ndim, KB_MAX_DIMS);
    int64_t numel = shape_numel(ndim, shape, kb_dtype_size(dtype));
    if (numel < 0) return kb_fail(err, "safetensors writer: tensor '%s': negative or overflowing shape", name);
    if (numel > 0 && !data) return kb_fail(err, "safetensors writer: tensor '%s': data is NULL", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return kb_fail(err, "safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        st_entry *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return kb_fail(err, "safetensors writer: out of memory");
        w->t = t;
        w->cap = cap;
    }
    st_entry *e = &w->t[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return kb_fail(err, "safetensors writer: out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = (uint64_t)numel * kb_dtype_size(dtype);
    w->n++;
    return 0;
}

int kb_st_writer_meta(kb_st_writer *w, const char *key, const char *value, kb_err *err) {
    if (!key || !value) return kb_fail(err, "safetensors writer: metadata key or value is NULL");
    char *v = strdup(value);
    if (!v) return kb_fail(err, "safetensors writer: out of memory");
    for (int i = 0; i < w->nmeta; i++)
        if (strcmp(w->mkey[i], key) == 0) {
            free(w->mval[i]);
            w->mval[i] = v;
            return 0;
        }
    if (w->nmeta == w->mcap) {
        int cap = w->mcap ? 2 * w->mcap : 8;
        char **k = realloc(w->mkey, (size_t)cap * sizeof *k);
        if (k) w->mkey = k;
        char **vv = k ? realloc(w->mval, (size_t)cap * sizeof *vv) : NULL;
        if (!vv) {
            free(v);
            return kb_fail(err, "safetensors writer: out of memory");
        }
        w->mval = vv;
        w->mcap = cap;
    }
    w->mkey[w->nmeta] = strdup(key);
    if (!w->mkey[w->nmeta]) {
        free(v);
        return kb_fail(err, "safetensors writer: out of memory");
    }
    w->mval[w->nmeta++] = v;
    return 0;
}

/* A JSON integer printed exactly (cJSON's numbers are doubles printed with %g). */
static cJSON *json_int(uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

/* The header JSON, or NULL when out of memory. */
static char *build_header(const kb_st_writer *w) {
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && w->nmeta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (int i = 0; ok && i < w->nmeta; i++) ok = cJSON_AddStringToObject(m, w->mkey[i], w->mval[i]) != NULL;
    }
    uint64_t at = 0;
    for (int i = 0; ok && i < w->n; i++) {
        const st_entry *e = &w->t[i];
        cJSON *o = cJSON_AddObjectToObject(root, e->name);
        cJSON *sh = o ? cJSON_AddArrayToObject(o, "shape") : NULL;
        cJSON *off = sh ? cJSON_AddArrayToObject(o, "data_offsets") : NULL;
        ok = off && cJSON_AddStringToObject(o, "dtype", kb_st_dtype_name(e->dtype));
        for (int d = 0; ok && d < e->ndim; d++) ok = cJSON_AddItemToArray(sh, json_int((uint64_t)e->shape[d]));
        ok = ok && cJSON_AddItemToArray(off, json_int(at)) && cJSON_AddItemToArray(off, json_int(at + e->nbytes));
        at += e->nbytes;
    }
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

int kb_st_writer_write(kb_st_writer *w, const char *path, kb_err *err) {
    char *hdr = build_header(w);
    if (!hdr) return kb_fail(err, "%s: out of memory building the safetensors header", path);
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    kb_atomic_file af;
    if (kb_atomic_open(&af, path, err)) {
        free(hdr);
        return -1;
    }
    int rc = kb_atomic_write(&af, lenb, 8, err);
    if (!rc) rc = kb_atomic_write(&af, hdr, hl, err);
    if (!rc) rc = kb_atomic_write(&af, spaces, padded - hl, err);
    for (int i = 0; !rc && i < w->n; i++) rc = kb_atomic_write(&af, w->t[i].data, (size_t)w->t[i].nbytes, err);
    free(hdr);
    if (rc) {
        kb_atomic_abort(&af);
        return -1;
    }
    return kb_atomic_commit(&af, err);
}
