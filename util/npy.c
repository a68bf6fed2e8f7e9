/* .npy headers written and parsed by hand (a format, not a codec); the zip
 * container of .npz through libzip. */
#include "util/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zip.h>

#include "util/fileio.h"

/* numpy's ARRAY_ALIGN and GROWTH_AXIS_MAX_DIGITS (numpy/lib/format.py). */
#define NPY_ALIGN 64
#define NPY_GROWTH_DIGITS 21
#define NPY_MAGIC "\x93NUMPY"

static const struct {
    kb_dtype dt;
    const char *descr;
} descrs[] = {{KB_U8, "|u1"}, {KB_I32, "<i4"}, {KB_I64, "<i8"}, {KB_F16, "<f2"}, {KB_F32, "<f4"}, {KB_F64, "<f8"}};

static const char *descr_of(kb_dtype dt) {
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++)
        if (descrs[i].dt == dt) return descrs[i].descr;
    return NULL;
}

kb_npy kb_npy_view(kb_dtype dt, int ndim, const int64_t *shape, const void *data) {
    kb_npy a;
    memset(&a, 0, sizeof a);
    a.dtype = dt;
    a.ndim = ndim;
    a.numel = 1;
    for (int i = 0; i < ndim && i < KB_MAX_DIMS; i++) a.shape[i] = shape[i], a.numel *= shape[i];
    a.data = (void *)data;
    return a;
}

void kb_npy_free(kb_npy *a) {
    free(a->data);
    a->data = NULL;
}

/* ---------------------------------------------------------------- writing */

/* The dict as numpy's _write_array_header builds it (keys sorted, repr
 * values, a trailing ", "), plus the growth-axis reserve. */
static int header_dict(const kb_npy *a, char *out, size_t cap, kb_err *err) {
    const char *descr = descr_of(a->dtype);
    if (!descr) return kb_fail(err, "npy: dtype %s has no numpy equivalent here", kb_dtype_name(a->dtype));
    if (a->ndim < 0 || a->ndim > KB_MAX_DIMS) return kb_fail(err, "npy: %d dimensions", a->ndim);
    char shape[KB_MAX_DIMS * 24 + 8] = "(";
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] < 0) return kb_fail(err, "npy: negative dimension %lld", (long long)a->shape[i]);
        size_t l = strlen(shape);
        snprintf(shape + l, sizeof shape - l, i ? ", %lld" : "%lld", (long long)a->shape[i]);
    }
    strcat(shape, a->ndim == 1 ? ",)" : ")");
    int len = snprintf(out, cap, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    if (a->ndim > 0) {
        char first[24];
        int spare = NPY_GROWTH_DIGITS - snprintf(first, sizeof first, "%lld", (long long)a->shape[0]);
        for (int i = 0; i < spare && len + 1 < (int)cap; i++) out[len++] = ' ';
        out[len] = '\0';
    }
    return len + 1 < (int)cap ? 0 : kb_fail(err, "npy: header too long");
}

int kb_npy_header(const kb_npy *a, char *out, size_t cap, size_t *len, kb_err *err) {
    char dict[512];
    if (header_dict(a, dict, sizeof dict, err)) return -1;
    size_t dl = strlen(dict) + 1; /* + the final '\n' */
    int v2 = 0;
    size_t prefix = 10, pad = NPY_ALIGN - (prefix + dl) % NPY_ALIGN;
    if (dl + pad > 65535) v2 = 1, prefix = 12, pad = NPY_ALIGN - (prefix + dl) % NPY_ALIGN;
    size_t total = prefix + dl + pad, hlen = dl + pad;
    if (total > cap) return kb_fail(err, "npy: header of %zu bytes exceeds the buffer", total);
    memcpy(out, NPY_MAGIC, 6);
    out[6] = v2 ? 2 : 1, out[7] = 0;
    for (size_t i = 0; i < prefix - 8; i++) out[8 + i] = (char)((hlen >> (8 * i)) & 0xff);
    memcpy(out + prefix, dict, dl - 1);
    memset(out + prefix + dl - 1, ' ', pad);
    out[total - 1] = '\n';
    *len = total;
    return 0;
}

static size_t npy_data_bytes(const kb_npy *a) { return (size_t)a->numel * kb_dtype_size(a->dtype); }

int kb_npy_write(const char *path, const kb_npy *a, kb_err *err) {
    char hdr[1024];
    size_t hl;
    kb_atomic_file af;
    if (kb_npy_header(a, hdr, sizeof hdr, &hl, err)) return kb_fail_wrap(err, "%s", path);
    if (kb_atomic_open(&af, path, err)) return -1;
    if (kb_atomic_write(&af, hdr, hl, err) || kb_atomic_write(&af, a->data, npy_data_bytes(a), err)) {
        kb_atomic_abort(&af);
        return -1;
    }
    return kb_atomic_commit(&af, err);
}

static int zip_fail(kb_err *err, const char *path, const char *what, zip_t *za) {
    return kb_fail(err, "%s: %s: %s", path, what, za ? zip_strerror(za) : "libzip failed");
}

/* Adds "<name>.npy" as two fragments (header, borrowed data): no copy of the data. */
static int npz_add(zip_t *za, const char *path, const kb_npz_entry *e, char *hdr, kb_err *err) {
    size_t hl;
    char fname[256];
    if (!e->name || !e->name[0] || snprintf(fname, sizeof fname, "%s.npy", e->name) >= (int)sizeof fname)
        return kb_fail(err, "%s: bad array name", path);
    if (kb_npy_header(&e->array, hdr, 1024, &hl, err)) return kb_fail_wrap(err, "%s: array %s", path, e->name);
    zip_buffer_fragment_t frags[2] = {{(zip_uint8_t *)hdr, hl}, {(zip_uint8_t *)e->array.data, npy_data_bytes(&e->array)}};
    zip_source_t *src = zip_source_buffer_fragment(za, frags, frags[1].length ? 2 : 1, 0);
    if (!src) return zip_fail(err, path, "cannot buffer an entry", za);
    zip_int64_t idx = zip_file_add(za, fname, src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
        zip_source_free(src);
        return zip_fail(err, path, fname, za);
    }
    /* stored like np.savez; a fixed DOS time (1980-01-01 00:00) for byte-identical reruns */
    if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0) ||
        zip_file_set_dostime(za, (zip_uint64_t)idx, 0, (1 << 5) | 1, 0))
        return zip_fail(err, path, fname, za);
    return 0;
}

/* Where libzip writes the archive: our temp file's descriptor, in place.
 * libzip's own file source (zip_open(tmp)) wrote "<tmp>.XXXXXX" and renamed
 * it, a name the signal cleanup could not know: the signals were held for
 * all of zip_close, and Ctrl-C waited minutes for a 10 GB npz. */
typedef struct {
    int fd;
    zip_error_t error; /* the last command's, for ZIP_SOURCE_ERROR */
} npz_sink;

static zip_int64_t sink_fail(npz_sink *s, int zip_code) {
    zip_error_set(&s->error, zip_code, errno);
    return -1;
}

/* All n bytes: write(2) may take fewer (a full disk: the next one says why). */
static zip_int64_t sink_write(npz_sink *s, const void *data, zip_uint64_t n) {
    const char *p = data;
    for (zip_uint64_t left = n; left > 0;) {
        ssize_t w = write(s->fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return sink_fail(s, ZIP_ER_WRITE);
        p += w, left -= (zip_uint64_t)w;
    }
    return (zip_int64_t)n;
}

/* libzip's whence is SEEK_SET, SEEK_CUR or SEEK_END, as lseek takes them
 * (its own file source hands them to fseeko the same way). */
static zip_int64_t sink_seek(npz_sink *s, void *data, zip_uint64_t len) {
    zip_source_args_seek_t *args = ZIP_SOURCE_GET_ARGS(zip_source_args_seek_t, data, len, &s->error);
    if (!args) return -1;
    return lseek(s->fd, (off_t)args->offset, args->whence) < 0 ? sink_fail(s, ZIP_ER_SEEK) : 0;
}

/* Empties the file: a write begins, or one is abandoned. */
static zip_int64_t sink_empty(npz_sink *s) {
    return ftruncate(s->fd, 0) != 0 || lseek(s->fd, 0, SEEK_SET) != 0 ? sink_fail(s, ZIP_ER_WRITE) : 0;
}

/* The source's commands (zip_source_function(3)) for a new archive. */
static zip_int64_t sink_command(void *user, void *data, zip_uint64_t len, zip_source_cmd_t cmd) {
    npz_sink *s = user;
    off_t at;
    switch (cmd) {
    case ZIP_SOURCE_SUPPORTS: /* libzip writes only to a source that says it can be read and seeked too */
        return ZIP_SOURCE_SUPPORTS_WRITABLE;
    case ZIP_SOURCE_STAT: /* zip_open_from_source reads ZIP_ER_READ + ENOENT as "no archive yet": reads nothing */
        zip_error_set(&s->error, ZIP_ER_READ, ENOENT);
        return -1;
    case ZIP_SOURCE_BEGIN_WRITE:
    case ZIP_SOURCE_ROLLBACK_WRITE:
    case ZIP_SOURCE_REMOVE: /* an archive of no entries; kb_npz_write never makes one */
        return sink_empty(s);
    case ZIP_SOURCE_WRITE: return sink_write(s, data, len);
    case ZIP_SOURCE_SEEK_WRITE: return sink_seek(s, data, len);
    case ZIP_SOURCE_TELL_WRITE:
        at = lseek(s->fd, 0, SEEK_CUR);
        return at < 0 ? sink_fail(s, ZIP_ER_TELL) : (zip_int64_t)at;
    case ZIP_SOURCE_COMMIT_WRITE: /* whole on disk before kb_npz_write renames it into place */
        return fsync(s->fd) != 0 ? sink_fail(s, ZIP_ER_WRITE) : 0;
    case ZIP_SOURCE_ERROR: return zip_error_to_data(&s->error, data, len);
    case ZIP_SOURCE_FREE: return 0; /* the descriptor is kb_npz_write's to close */
    default: /* OPEN, READ, SEEK, TELL, CLOSE: a new archive is never read */
        zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
}

/* A new, empty archive whose bytes go to sink; NULL with a message naming path. */
static zip_t *npz_create(npz_sink *sink, const char *path, kb_err *err) {
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_function_create(sink_command, sink, &ze);
    zip_t *za = src ? zip_open_from_source(src, ZIP_CREATE | ZIP_TRUNCATE, &ze) : NULL;
    if (!za) {
        kb_fail(err, "%s: cannot start the archive: %s", path, zip_error_strerror(&ze));
        if (src) zip_source_free(src);
    }
    zip_error_fini(&ze);
    return za;
}

/* libzip writes the archive through npz_sink onto tmp, the only file made,
 * tracked for the signal cleanup from its creation to its rename: a signal
 * meanwhile removes it and ends the process at once. tmp is synced (the
 * sink's commit), then renamed onto path, so path only ever holds a whole
 * archive. */
int kb_npz_write(const char *path, const kb_npz_entry *entries, int n, kb_err *err) {
    char tmp[4096];
    if (n < 1) return kb_fail(err, "%s: an npz needs at least one array", path);
    npz_sink sink = {.fd = kb_temp_create(tmp, sizeof tmp, path, ".tmp.XXXXXX", err)};
    if (sink.fd < 0) return -1;
    zip_error_init(&sink.error);
    char(*hdrs)[1024] = calloc((size_t)n, 1024);
    int rc = hdrs ? 0 : kb_fail(err, "%s: out of memory", path);
    zip_t *za = rc ? NULL : npz_create(&sink, path, err);
    if (!za) rc = -1;
    for (int i = 0; !rc && i < n; i++) rc = npz_add(za, path, &entries[i], hdrs[i], err);
    if (!rc && zip_close(za) != 0) rc = zip_fail(err, path, "cannot write the archive", za);
    else if (!rc) za = NULL;
    if (za) zip_discard(za); /* after a failure: nothing more is written */
    free(hdrs);
    zip_error_fini(&sink.error);
    if (close(sink.fd) != 0 && !rc) rc = kb_fail(err, "%s: cannot write the archive: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = kb_fail(err, "%s: cannot rename temp file into place: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    kb_temp_forget(tmp); /* only now: a signal until the rename must still remove it */
    if (!rc) kb_sync_parent_dir(path);
    return rc;
}

/* ---------------------------------------------------------------- reading */

/* The value after 'key': in a dict literal, or NULL. */
static const char *dict_value(const char *d, const char *key) {
    char pat[2][32];
    snprintf(pat[0], sizeof pat[0], "'%s'", key);
    snprintf(pat[1], sizeof pat[1], "\"%s\"", key);
    for (int q = 0; q < 2; q++) {
        const char *p = strstr(d, pat[q]);
        if (!p) continue;
        p += strlen(pat[q]);
        while (*p == ' ') p++;
        if (*p++ != ':') return NULL;
        while (*p == ' ') p++;
        return p;
    }
    return NULL;
}

/* The dtype; *swap = 1 for big-endian data ('>f8': numpy writes it for an
 * array of that byte order, and np.load reads it), byte-swapped after reading. */
static int parse_descr(const char *v, const char *what, kb_dtype *dt, int *swap, kb_err *err) {
    if (!v || (*v != '\'' && *v != '"')) return kb_fail(err, "%s: npy header has no 'descr' string", what);
    char s[16] = "";
    const char *end = strchr(v + 1, *v);
    if (!end || end - v - 1 >= (long)sizeof s) return kb_fail(err, "%s: npy header has a bad 'descr'", what);
    memcpy(s, v + 1, (size_t)(end - v - 1));
    *swap = s[0] == '>';
    if (s[0] == '>' || s[0] == '=') s[0] = '<'; /* '=': native, little-endian on every machine we build for */
    if (!strcmp(s, "<u1")) strcpy(s, "|u1");
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++)
        if (!strcmp(s, descrs[i].descr)) return *dt = descrs[i].dt, 0;
    return kb_fail(err, "%s: unsupported npy dtype '%s' (supported: u1 i4 i8 f2 f4 f8, either byte order)", what, s);
}

/* The shape tuple, after the dtype: the array's bytes (numel * item size)
 * must stay below 2^63, or a huge shape could wrap to the size of a small
 * payload and pass the size check. */
static int parse_shape(const char *v, const char *what, kb_npy *a, kb_err *err) {
    if (!v || *v++ != '(') return kb_fail(err, "%s: npy header has no 'shape' tuple", what);
    const int64_t max_numel = INT64_MAX / (int64_t)kb_dtype_size(a->dtype);
    a->ndim = 0, a->numel = 1;
    for (;;) {
        while (*v == ' ') v++;
        if (*v == ')') return 0;
        char *end;
        errno = 0;
        long long d = strtoll(v, &end, 10);
        if (end == v || errno || d < 0 || a->ndim == KB_MAX_DIMS)
            return kb_fail(err, "%s: npy shape is not a tuple of at most %d sizes", what, KB_MAX_DIMS);
        if (d && a->numel > max_numel / d)
            return kb_fail(err, "%s: npy shape: the array's byte size overflows (array is too big)", what);
        a->shape[a->ndim++] = d, a->numel *= d;
        v = end;
        while (*v == ' ') v++;
        if (*v == ',') v++;
        else if (*v != ')') return kb_fail(err, "%s: bad npy shape tuple", what);
    }
}

/* How the stored data differs from kindbench's C-order little-endian. */
typedef struct {
    int fortran, swap;
} npy_layout;

/* Header checks on buf[n] (at least the header) of an npy image of `total`
 * bytes; *data_off gets where the data starts. */
static int parse_header(const uint8_t *buf, size_t n, size_t total, const char *what, kb_npy *a, size_t *data_off,
                        npy_layout *lay, kb_err *err) {
    if (n < 10 || memcmp(buf, NPY_MAGIC, 6)) return kb_fail(err, "%s: not an npy array (bad magic)", what);
    int major = buf[6];
    if (major < 1 || major > 3) return kb_fail(err, "%s: npy format version %d.%d not supported", what, major, buf[7]);
    size_t prefix = major == 1 ? 10 : 12;
    if (n < prefix) return kb_fail(err, "%s: truncated npy header", what);
    size_t hlen = buf[8] | (size_t)buf[9] << 8;
    if (major > 1) hlen |= (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    if (hlen > n - prefix) return kb_fail(err, "%s: npy header length %zu beyond the data", what, hlen);
    char *d = malloc(hlen + 1);
    if (!d) return kb_fail(err, "%s: out of memory", what);
    memcpy(d, buf + prefix, hlen);
    d[hlen] = '\0';
    memset(a, 0, sizeof *a);
    const char *fo = dict_value(d, "fortran_order");
    int rc = parse_descr(dict_value(d, "descr"), what, &a->dtype, &lay->swap, err) ||
             parse_shape(dict_value(d, "shape"), what, a, err);
    if (!rc && fo && !strncmp(fo, "True", 4)) lay->fortran = 1;
    else if (!rc && (!fo || strncmp(fo, "False", 5)))
        rc = kb_fail(err, "%s: npy header's 'fortran_order' is neither True nor False", what);
    free(d);
    *data_off = prefix + hlen;
    if (!rc && npy_data_bytes(a) != total - *data_off)
        rc = kb_fail(err, "%s: npy data is %zu bytes, the header's shape and dtype need %zu", what, total - *data_off,
                     npy_data_bytes(a));
    return rc ? -1 : 0;
}

static void swap_bytes(uint8_t *p, int64_t numel, size_t size) {
    for (int64_t i = 0; i < numel; i++, p += size)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b], p[b] = t;
        }
}

/* Fortran order (first index fastest) into C order, as np.load returns it:
 * the source is walked in its own order with the multi-index counted up,
 * and each element goes to its C-order offset. */
static int fortran_to_c(kb_npy *a, const char *what, kb_err *err) {
    size_t size = kb_dtype_size(a->dtype);
    if (a->ndim < 2 || a->numel == 0) return 0;
    uint8_t *c = malloc((size_t)a->numel * size), *f = a->data;
    if (!c) return kb_fail(err, "%s: out of memory to reorder a Fortran-order array", what);
    int64_t idx[KB_MAX_DIMS] = {0}, stride[KB_MAX_DIMS];
    stride[a->ndim - 1] = 1;
    for (int d = a->ndim - 2; d >= 0; d--) stride[d] = stride[d + 1] * a->shape[d + 1];
    int64_t off = 0; /* C offset of idx */
    for (int64_t i = 0; i < a->numel; i++) {
        memcpy(c + (size_t)off * size, f + (size_t)i * size, size);
        for (int d = 0; d < a->ndim; d++) { /* idx++ with index 0 fastest */
            if (++idx[d] < a->shape[d]) {
                off += stride[d];
                break;
            }
            off -= (idx[d] - 1) * stride[d];
            idx[d] = 0;
        }
    }
    free(a->data);
    a->data = c;
    return 0;
}

/* The data as stored into C order, native byte order. */
static int normalise(kb_npy *a, const npy_layout *lay, const char *what, kb_err *err) {
    if (lay->swap) swap_bytes(a->data, a->numel, kb_dtype_size(a->dtype));
    return lay->fortran ? fortran_to_c(a, what, err) : 0;
}

int kb_npy_parse(const uint8_t *buf, size_t n, const char *what, kb_npy *out, kb_err *err) {
    size_t off;
    npy_layout lay = {0, 0};
    if (parse_header(buf, n, n, what, out, &off, &lay, err)) return -1;
    out->data = malloc(n - off ? n - off : 1);
    if (!out->data) return kb_fail(err, "%s: out of memory for %zu bytes", what, n - off);
    memcpy(out->data, buf + off, n - off);
    if (normalise(out, &lay, what, err)) return kb_npy_free(out), -1;
    return 0;
}

/* Parses buf and keeps it as the array's storage (data moved to the front). */
static int parse_take(uint8_t *buf, size_t n, const char *what, kb_npy *out, kb_err *err) {
    size_t off;
    npy_layout lay = {0, 0};
    if (parse_header(buf, n, n, what, out, &off, &lay, err)) {
        free(buf);
        return -1;
    }
    memmove(buf, buf + off, n - off);
    out->data = buf;
    if (normalise(out, &lay, what, err)) return kb_npy_free(out), -1;
    return 0;
}

int kb_npy_read(const char *path, kb_npy *out, kb_err *err) {
    uint8_t *buf;
    size_t n;
    if (kb_read_file(path, &buf, &n, err)) return -1;
    return parse_take(buf, n, path, out, err);
}

/* zip_fdopen takes ownership of the fd it is given (closing it at once on
 * success: it reads through its own dup) and leaves it open on failure. */
static zip_t *zip_fdopen_dup(int fd, int *code) {
    int mine = dup(fd);
    if (mine < 0) return *code = ZIP_ER_OPEN, NULL;
    zip_t *za = zip_fdopen(mine, 0, code); /* 0: libzip 1.7 takes ZIP_CHECKCONS only; we never write */
    if (!za) close(mine);
    return za;
}

/* From path, or from fd (>= 0; libzip reads a dup of it, fd stays ours). */
static zip_t *npz_open(const char *path, int fd, kb_err *err) {
    int code = 0;
    zip_t *za = fd >= 0 ? zip_fdopen_dup(fd, &code) : zip_open(path, ZIP_RDONLY, &code);
    if (!za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, code);
        kb_fail(err, "%s: cannot open as npz: %s", path, code == ZIP_ER_NOENT ? strerror(ENOENT) : zip_error_strerror(&ze));
        zip_error_fini(&ze);
    }
    return za;
}

/* Reads entry idx wholly into a malloc'd buffer. */
static int read_entry(zip_t *za, zip_uint64_t idx, const char *what, uint8_t **buf, size_t *n, kb_err *err) {
    zip_stat_t st;
    if (zip_stat_index(za, idx, 0, &st) || !(st.valid & ZIP_STAT_SIZE)) return kb_fail(err, "%s: %s", what, zip_strerror(za));
    zip_file_t *zf = zip_fopen_index(za, idx, 0);
    *buf = malloc(st.size ? st.size : 1);
    if (!zf || !*buf) {
        if (zf) zip_fclose(zf);
        free(*buf);
        return kb_fail(err, "%s: cannot read: %s", what, zf ? "out of memory" : zip_strerror(za));
    }
    zip_int64_t got = zip_fread(zf, *buf, st.size);
    int bad = got < 0 || (zip_uint64_t)got != st.size;
    if (bad) kb_fail(err, "%s: read %lld of %llu bytes: %s", what, (long long)got, (unsigned long long)st.size,
                     zip_file_strerror(zf));
    /* libzip checks the entry's CRC-32 only on a read that reaches its end:
     * without this one, a flipped bit in a stored member went unnoticed
     * (numpy's zipfile raises "Bad CRC-32"). */
    uint8_t extra;
    zip_int64_t more = bad ? 0 : zip_fread(zf, &extra, 1);
    if (more != 0) {
        bad = 1;
        kb_fail(err, "%s: %s", what, more < 0 ? zip_file_strerror(zf) : "member holds more bytes than its stated size");
    }
    zip_fclose(zf);
    if (bad) free(*buf);
    *n = st.size;
    return bad ? -1 : 0;
}

/* The index of the last member named `name`, or -1: numpy (Python's zipfile)
 * reads the last of duplicated names, as left by appending to an archive. */
static zip_int64_t locate_last(zip_t *za, const char *name) {
    zip_int64_t n = zip_get_num_entries(za, 0), found = -1;
    for (zip_int64_t i = 0; i < n; i++) {
        const char *s = zip_get_name(za, (zip_uint64_t)i, 0);
        if (s && strcmp(s, name) == 0) found = i;
    }
    return found;
}

struct kb_npz {
    zip_t *za; /* libzip keeps the file open from zip_open to zip_discard */
    char path[4096];
};

static kb_npz *npz_hold(const char *path, int fd, kb_err *err) {
    kb_npz *z = calloc(1, sizeof *z);
    if (!z) return kb_fail(err, "%s: out of memory", path), NULL;
    snprintf(z->path, sizeof z->path, "%s", path);
    if (!(z->za = npz_open(path, fd, err))) return free(z), NULL;
    return z;
}

kb_npz *kb_npz_open(const char *path, kb_err *err) { return npz_hold(path, -1, err); }

kb_npz *kb_npz_fdopen(int fd, const char *path, kb_err *err) { return npz_hold(path, fd, err); }

void kb_npz_close(kb_npz *z) {
    if (!z) return;
    zip_discard(z->za);
    free(z);
}

/* The index of array `name`'s member ("<name>.npy"; the last of that name,
 * as numpy reads it), and "<path>:<member>" into what[4400] for messages. */
static zip_int64_t locate_array(const kb_npz *z, const char *name, char *what, kb_err *err) {
    char fname[256];
    size_t l = strlen(name);
    snprintf(fname, sizeof fname, "%s%s", name, l > 4 && !strcmp(name + l - 4, ".npy") ? "" : ".npy");
    snprintf(what, 4400, "%s:%s", z->path, fname);
    zip_int64_t idx = locate_last(z->za, fname);
    if (idx < 0) kb_fail(err, "%s: no array '%s' in the npz", z->path, name);
    return idx;
}

int kb_npz_get(kb_npz *z, const char *name, kb_npy *out, kb_err *err) {
    char what[4400];
    zip_int64_t idx = locate_array(z, name, what, err);
    uint8_t *buf = NULL;
    size_t n = 0;
    if (idx < 0) return -1;
    if (read_entry(z->za, (zip_uint64_t)idx, what, &buf, &n, err)) return -1;
    return parse_take(buf, n, what, out, err);
}

/* The first n bytes of entry idx (its size in *total) into buf. */
static int read_prefix(zip_t *za, zip_uint64_t idx, const char *what, uint8_t *buf, size_t n, size_t *total,
                       kb_err *err) {
    zip_stat_t st;
    if (zip_stat_index(za, idx, 0, &st) || !(st.valid & ZIP_STAT_SIZE)) return kb_fail(err, "%s: %s", what, zip_strerror(za));
    zip_file_t *zf = zip_fopen_index(za, idx, 0);
    if (!zf) return kb_fail(err, "%s: cannot read: %s", what, zip_strerror(za));
    *total = st.size;
    if (n > st.size) n = st.size;
    zip_int64_t got = zip_fread(zf, buf, n);
    if (got < 0 || (zip_uint64_t)got != n)
        kb_fail(err, "%s: read %lld of %zu bytes: %s", what, (long long)got, n, zip_file_strerror(zf));
    zip_fclose(zf);
    return got < 0 || (zip_uint64_t)got != n ? -1 : 0;
}

int kb_npz_peek(kb_npz *z, const char *name, kb_npy *out, kb_err *err) {
    char what[4400];
    size_t total = 0, off;
    zip_int64_t idx = locate_array(z, name, what, err);
    if (idx < 0) return -1;
    uint8_t pre[12] = {0};
    if (read_prefix(z->za, (zip_uint64_t)idx, what, pre, sizeof pre, &total, err)) return -1;
    /* the header's length, as parse_header reads it; then the whole header */
    size_t hlen = total < 10 ? 0 : pre[8] | (size_t)pre[9] << 8;
    if (total >= 12 && pre[6] > 1) hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    size_t n = (pre[6] > 1 ? 12 : 10) + hlen;
    if (n > total) n = total; /* parse_header names the short header */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return kb_fail(err, "%s: out of memory for an npy header of %zu bytes", what, n);
    npy_layout lay = {0, 0};
    int rc = read_prefix(z->za, (zip_uint64_t)idx, what, buf, n, &total, err) ||
             parse_header(buf, n, total, what, out, &off, &lay, err);
    free(buf);
    out->data = NULL;
    return rc ? -1 : 0;
}

int kb_npz_list(kb_npz *z, char ***names, int *count, kb_err *err) {
    *names = NULL, *count = 0;
    zip_int64_t n = zip_get_num_entries(z->za, 0);
    char **out = calloc((size_t)(n > 0 ? n : 1), sizeof *out);
    int k = 0, oom = !out;
    for (zip_int64_t i = 0; !oom && i < n; i++) {
        const char *s = zip_get_name(z->za, (zip_uint64_t)i, 0);
        size_t l = s ? strlen(s) : 0;
        if (l < 4 || strcmp(s + l - 4, ".npy")) continue; /* numpy lists only the .npy members */
        oom = !(out[k++] = strndup(s, l - 4));
    }
    if (oom) {
        kb_npz_names_free(out, k);
        return kb_fail(err, "%s: out of memory listing the npz", z->path);
    }
    *names = out, *count = k;
    return 0;
}

int kb_npz_read(const char *path, const char *name, kb_npy *out, kb_err *err) {
    kb_npz *z = kb_npz_open(path, err);
    int rc = z ? kb_npz_get(z, name, out, err) : -1;
    kb_npz_close(z);
    return rc;
}

int kb_npz_names(const char *path, char ***names, int *count, kb_err *err) {
    *names = NULL, *count = 0;
    kb_npz *z = kb_npz_open(path, err);
    int rc = z ? kb_npz_list(z, names, count, err) : -1;
    kb_npz_close(z);
    return rc;
}

void kb_npz_names_free(char **names, int count) {
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}
