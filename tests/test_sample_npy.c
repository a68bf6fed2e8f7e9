/* util/npy: .npy/.npz written and read back for every dtype, byte-identical
 * reruns, headers equal to numpy's np.save byte for byte and the npz readable
 * by np.load (checked by $KB_PYTHON when set), and clear errors for missing,
 * foreign, truncated and unsupported files, with nothing left behind by a
 * failed write. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kbtest.h"
#include "util/fileio.h"
#include "util/npy.h"
#include "util/sha256.h"

#define NARR 7

typedef struct {
    uint8_t u8[24];
    int64_t i64[5];
    float f32s, empty[1];
    double f64[6];
    int32_t i32[2];
    uint16_t f16[3];
    kb_npz_entry e[NARR];
} arrays;

static void make_arrays(arrays *a) {
    for (int i = 0; i < 24; i++) a->u8[i] = (uint8_t)(i * 37 % 256);
    int64_t i64[5] = {-(1LL << 62), -1, 0, 5, (1LL << 62) + 3};
    memcpy(a->i64, i64, sizeof i64);
    a->f32s = 2.75f;
    for (int i = 0; i < 6; i++) a->f64[i] = i / 3.0;
    a->i32[0] = INT32_MIN, a->i32[1] = INT32_MAX;
    a->f16[0] = 0x3E00, a->f16[1] = 0xC000, a->f16[2] = 0x7BFF; /* 1.5, -2, 65504 */
    a->e[0] = (kb_npz_entry){"u8", kb_npy_view(KB_U8, 4, (int64_t[]){2, 3, 4, 1}, a->u8)};
    a->e[1] = (kb_npz_entry){"i64", kb_npy_view(KB_I64, 1, (int64_t[]){5}, a->i64)};
    a->e[2] = (kb_npz_entry){"f32", kb_npy_view(KB_F32, 0, NULL, &a->f32s)};
    a->e[3] = (kb_npz_entry){"f64", kb_npy_view(KB_F64, 2, (int64_t[]){3, 2}, a->f64)};
    a->e[4] = (kb_npz_entry){"i32", kb_npy_view(KB_I32, 1, (int64_t[]){2}, a->i32)};
    a->e[5] = (kb_npz_entry){"f16", kb_npy_view(KB_F16, 1, (int64_t[]){3}, a->f16)};
    a->e[6] = (kb_npz_entry){"empty", kb_npy_view(KB_F32, 2, (int64_t[]){0, 3}, a->empty)};
}

/* SHA-256 of t.npz (make_arrays' seven arrays) as kb_npz_write wrote it with
 * libzip 1.7.3 (Debian bookworm) through zip_open(tmp) + zip_close, before it
 * wrote through a user source onto its own temp file: printed by this check
 * run on that code. The writer changed, the bytes must not (another libzip
 * version may write other bytes: then recompute it with a writer known good). */
#define T_NPZ_SHA256 "e545cbed949aacac95f9701d06d4ccf75fcefa645a35a09c3aed97a294529f18"

static int same_array(const kb_npy *got, const kb_npy *want) {
    if (got->dtype != want->dtype || got->ndim != want->ndim || got->numel != want->numel) return 0;
    for (int i = 0; i < want->ndim; i++)
        if (got->shape[i] != want->shape[i]) return 0;
    return !memcmp(got->data, want->data, (size_t)want->numel * kb_dtype_size(want->dtype));
}

static void check_roundtrip(kbt_state *st, const char *dir, arrays *a) {
    char npz[4200], npz2[4200];
    kb_err err = {0};
    snprintf(npz, sizeof npz, "%s/t.npz", dir);
    snprintf(npz2, sizeof npz2, "%s/t2.npz", dir);
    int ok = !kb_npz_write(npz, a->e, NARR, &err) && !kb_npz_write(npz2, a->e, NARR, &err);
    KBT_CHECK(st, ok, "npz written", "%s", err.msg);
    for (int i = 0; ok && i < NARR; i++) {
        kb_npy got = {0};
        char label[64];
        snprintf(label, sizeof label, "npz round trip: %s", a->e[i].name);
        int r = kb_npz_read(npz, a->e[i].name, &got, &err);
        KBT_CHECK(st, !r && same_array(&got, &a->e[i].array), label, "%s", r ? err.msg : "differs");
        kb_npy_free(&got);
        char npy[4200];
        snprintf(npy, sizeof npy, "%s/%s.npy", dir, a->e[i].name);
        r = kb_npy_write(npy, &a->e[i].array, &err) || kb_npy_read(npy, &got, &err);
        snprintf(label, sizeof label, "npy round trip: %s", a->e[i].name);
        KBT_CHECK(st, !r && same_array(&got, &a->e[i].array), label, "%s", r ? err.msg : "differs");
        kb_npy_free(&got);
    }
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    ok = ok && !kb_read_file(npz, &b1, &n1, &err) && !kb_read_file(npz2, &b2, &n2, &err);
    KBT_CHECK(st, ok && n1 == n2 && !memcmp(b1, b2, n1), "npz rewrite is byte-identical", "%s", err.msg);
    char hex[65] = "";
    if (ok) kb_sha256_hex_of(b1, n1, hex);
    KBT_CHECK(st, ok && !strcmp(hex, T_NPZ_SHA256), "npz bytes equal the golden archive's",
              "sha256 %s, want " T_NPZ_SHA256, hex);
    free(b1), free(b2);
    char **names = NULL;
    int count = 0;
    ok = !kb_npz_names(npz, &names, &count, &err) && count == NARR;
    for (int i = 0; ok && i < NARR; i++) ok = !strcmp(names[i], a->e[i].name);
    KBT_CHECK(st, ok, "npz names in order", "%s (count %d)", err.msg, count);
    kb_npz_names_free(names, count);
}

/* numpy: np.load of the npz, and np.save's bytes for each .npy. */
static void check_numpy(kbt_state *st, const char *dir) {
    const char *py = getenv("KB_PYTHON");
    if (!py) return (void)printf("skip numpy check: KB_PYTHON not set\n");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s -c \"\n"
             "import io, sys, numpy as np\n"
             "d = sys.argv[1]\n"
             "want = dict(u8=(np.arange(24) * 37 %% 256).astype(np.uint8).reshape(2, 3, 4, 1),\n"
             "  i64=np.array([-(2**62), -1, 0, 5, 2**62 + 3], np.int64), f32=np.array(2.75, np.float32),\n"
             "  f64=(np.arange(6) / 3.0).reshape(3, 2), i32=np.array([-2**31, 2**31 - 1], np.int32),\n"
             "  f16=np.array([1.5, -2, 65504], np.float16), empty=np.zeros((0, 3), np.float32))\n"
             "z = np.load(d + '/t.npz')\n"
             "assert z.files == list(want), z.files\n"
             "for k, v in want.items():\n"
             "    g = z[k]\n"
             "    assert g.dtype == v.dtype and g.shape == v.shape and (g == v).all(), k\n"
             "    b = io.BytesIO(); np.save(b, v)\n"
             "    mine = open(d + '/' + k + '.npy', 'rb').read()\n"
             "    assert mine == b.getvalue(), (k, mine[:128], b.getvalue()[:128])\n"
             "print('numpy: npz loads and every npy equals np.save byte for byte')\n"
             "\" '%s'",
             py, dir);
    KBT_CHECK(st, system(cmd) == 0, "numpy reads the npz; .npy bytes equal np.save's", "python check failed");
}

/* np.load reads Fortran-order and big-endian arrays (np.save writes them
 * for F-contiguous arrays, e.g. a transposed matrix, and for '>' dtypes):
 * each such file, written by numpy, must read as the C-order native array
 * numpy returns, which numpy also writes as <name>_C.npy. */
static void check_numpy_layouts(kbt_state *st, const char *dir) {
    const char *py = getenv("KB_PYTHON");
    if (!py) return (void)printf("skip numpy layout check: KB_PYTHON not set\n");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s -c \"\n"
             "import sys, numpy as np\n"
             "d, r = sys.argv[1], np.random.default_rng(3)\n"
             "cases = dict(u8=r.integers(0, 256, (2, 3, 4, 5)).astype(np.uint8), f32=r.random((3, 7), np.float32),\n"
             "  f64=r.random((2, 3, 4)), i64=r.integers(-2**40, 2**40, (5, 2, 3)), i32=r.integers(-9, 9, (4, 1, 3)).astype(np.int32),\n"
             "  f16=r.random((4, 4)).astype(np.float16), v1=r.random(5))\n"
             "for k, v in cases.items():\n"
             "    np.save(d + '/L_' + k + '_C.npy', v)\n"
             "    f = np.asfortranarray(v); np.save(d + '/L_' + k + '_F.npy', f)\n"
             "    b = v.astype(v.dtype.newbyteorder('>')); np.save(d + '/L_' + k + '_B.npy', b)\n"
             "    np.save(d + '/L_' + k + '_FB.npy', np.asfortranarray(b))\n"
             "    assert v.ndim < 2 or open(d + '/L_' + k + '_F.npy', 'rb').read(128).find(b'True') > 0\n"
             "np.savez_compressed(d + '/L.npz', f64=np.asfortranarray(cases['f64']))\n"
             "\" '%s'",
             py, dir);
    if (system(cmd) != 0) {
        KBT_CHECK(st, 0, "numpy writes Fortran/big-endian files", "python failed");
        return;
    }
    const char *names[7] = {"u8", "f32", "f64", "i64", "i32", "f16", "v1"}, *kinds[3] = {"F", "B", "FB"};
    const char *labels[3] = {"Fortran-order", "big-endian", "Fortran-order big-endian"};
    char p[4400], name[64];
    for (int i = 0; i < 7; i++)
        for (int k = 0; k < 3; k++) {
            kb_err err = {0};
            kb_npy want = {0}, got = {0};
            snprintf(p, sizeof p, "%s/L_%s_C.npy", dir, names[i]);
            int r = kb_npy_read(p, &want, &err);
            snprintf(p, sizeof p, "%s/L_%s_%s.npy", dir, names[i], kinds[k]);
            r = r || kb_npy_read(p, &got, &err);
            snprintf(name, sizeof name, "%s %s as np.load reads it", labels[k], names[i]);
            KBT_CHECK(st, !r && same_array(&got, &want), name, "%s", r ? err.msg : "values differ");
            kb_npy_free(&want), kb_npy_free(&got);
        }
    kb_err err = {0};
    kb_npy want = {0}, got = {0};
    snprintf(p, sizeof p, "%s/L_f64_C.npy", dir);
    int r = kb_npy_read(p, &want, &err);
    snprintf(p, sizeof p, "%s/L.npz", dir);
    r = r || kb_npz_read(p, "f64", &got, &err);
    KBT_CHECK(st, !r && same_array(&got, &want), "Fortran-order array in a compressed npz", "%s", r ? err.msg : "values differ");
    kb_npy_free(&want), kb_npy_free(&got);
}

/* Reading `path` (as .npy, or entry name of an .npz) fails mentioning `needle`. */
static void expect_fail(kbt_state *st, const char *name, const char *path, const char *entry, const char *needle) {
    kb_err err = {0};
    kb_npy a = {0};
    int r = entry ? kb_npz_read(path, entry, &a, &err) : kb_npy_read(path, &a, &err);
    kb_npy_free(&a);
    KBT_CHECK(st, r != 0 && strstr(err.msg, needle), name, "rc %d, message '%s' (wanted '%s')", r, err.msg, needle);
    if (r) printf("     -> %s\n", err.msg);
}

/* Replaces the first `from` in buf[0, n) by `to` (same length). */
static void patch(char *buf, size_t n, const char *from, const char *to) {
    size_t l = strlen(from);
    for (size_t i = 0; i + l <= n; i++)
        if (!memcmp(buf + i, from, l)) {
            memcpy(buf + i, to, l);
            return;
        }
}

static void check_errors(kbt_state *st, const char *dir, arrays *a) {
    char p[4200], npz[4200], hdr[1024];
    size_t hl;
    kb_err err = {0};
    snprintf(npz, sizeof npz, "%s/t.npz", dir);
    snprintf(p, sizeof p, "%s/missing.npz", dir);
    expect_fail(st, "missing npz", p, "arr_0", "missing.npz");
    expect_fail(st, "missing entry", npz, "arr_0", "no array 'arr_0'");
    snprintf(p, sizeof p, "%s/foreign.npz", dir);
    kbt_write_file(p, "hello, not a zip at all", 23);
    expect_fail(st, "foreign file", p, "u8", "cannot open as npz");
    uint8_t *b = NULL;
    size_t n = 0;
    kb_read_file(npz, &b, &n, &err);
    snprintf(p, sizeof p, "%s/trunc.npz", dir);
    kbt_write_file(p, b, n / 2);
    expect_fail(st, "truncated npz", p, "u8", "trunc.npz");
    free(b);
    /* hand-patched headers: a dtype we do not take, a fortran_order that is
     * no Python bool, short data, bad magic */
    kb_npy v = kb_npy_view(KB_F32, 1, (int64_t[]){2}, a->f64);
    kb_npy_header(&v, hdr, sizeof hdr, &hl, &err);
    char buf[1100];
    const char *cases[4][3] = {{"'<f4'", "'<c8'", "unsupported npy dtype"}, {"False", "Fals0", "fortran_order"},
                               {NULL, NULL, "need 8"}, {"NUMPY", "NUMPX", "bad magic"}};
    for (int i = 0; i < 4; i++) {
        memcpy(buf, hdr, hl);
        memset(buf + hl, 0, 8);
        if (cases[i][0]) patch(buf, hl, cases[i][0], cases[i][1]);
        snprintf(p, sizeof p, "%s/bad%d.npy", dir, i);
        kbt_write_file(p, buf, hl + (cases[i][0] ? 8 : 5));
        expect_fail(st, cases[i][2], p, NULL, cases[i][2]);
    }
    /* a write into a missing directory fails and leaves nothing */
    snprintf(p, sizeof p, "%s/no/such/dir/x.npz", dir);
    KBT_CHECK(st, kb_npz_write(p, a->e, NARR, &err) != 0, "npz into a missing directory fails", "it succeeded");
}

/* kb_npz_peek: each member's dtype and shape from its header alone (no data),
 * and the header's checks: a missing member, a shape the stored bytes do not
 * fill (the header patched in place, so only its size check can tell). */
static void check_peek(kbt_state *st, const char *dir, arrays *a) {
    char npz[4200];
    kb_err err = {0};
    snprintf(npz, sizeof npz, "%s/t.npz", dir);
    kb_npz *z = kb_npz_open(npz, &err);
    for (int i = 0; z && i < NARR; i++) {
        kb_npy got = {0}, want = a->e[i].array;
        int r = kb_npz_peek(z, a->e[i].name, &got, &err), same = !r && got.dtype == want.dtype && got.ndim == want.ndim;
        for (int d = 0; same && d < want.ndim; d++) same = got.shape[d] == want.shape[d];
        KBT_CHECK(st, same && got.numel == want.numel && !got.data, "npz peek gives the header", "%s: %s", a->e[i].name,
                  r ? err.msg : "differs, or data read");
    }
    kb_npy h = {0};
    KBT_CHECK(st, z && kb_npz_peek(z, "nothing", &h, &err) && strstr(err.msg, "no array 'nothing'"), "npz peek of a missing member",
              "%s", err.msg);
    kb_npz_close(z);
    uint8_t x[8] = {0}, *b = NULL;
    size_t n = 0;
    char p[4200];
    snprintf(p, sizeof p, "%s/short.npz", dir);
    kb_npz_entry e = {"x", kb_npy_view(KB_U8, 1, (int64_t[]){8}, x)};
    int r = kb_npz_write(p, &e, 1, &err) || kb_read_file(p, &b, &n, &err);
    if (!r) patch((char *)b, n, "(8,)", "(9,)"), kbt_write_file(p, b, n);
    free(b);
    z = r ? NULL : kb_npz_open(p, &err);
    r = z ? kb_npz_peek(z, "x", &h, &err) : 0;
    KBT_CHECK(st, r && strstr(err.msg, "need 9"), "npz peek: a shape the data does not fill", "rc %d: %s", r, err.msg);
    kb_npz_close(z);
}

/* A 255-byte npz name: our temp name, the only file written, is cut to fit. */
static void check_long_name(kbt_state *st, const char *dir, arrays *a) {
    char name[256], p[4400];
    memset(name, 'n', 251);
    strcpy(name + 251, ".npz");
    snprintf(p, sizeof p, "%s/%s", dir, name);
    kb_err err = {0};
    kb_npy got = {0};
    int r = kb_npz_write(p, a->e, NARR, &err) || kb_npz_read(p, "i64", &got, &err);
    KBT_CHECK(st, !r && same_array(&got, &a->e[1].array), "npz with a 255-byte file name", "%s", err.msg);
    kb_npy_free(&got);
    unlink(p);
}

/* An npz gets the mode any output gets: 0666 & ~umask when new (it was
 * mkstemp's 0600, which libzip's own temp file copied), a replaced file's own. */
static void check_mode(kbt_state *st, const char *dir, arrays *a) {
    char p[4200];
    snprintf(p, sizeof p, "%s/mode.npz", dir);
    kb_err err = {0};
    struct stat sb;
    mode_t old = umask(022);
    int rc = kb_npz_write(p, a->e, NARR, &err);
    KBT_CHECK(st, !rc && stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0644, "a new npz is 0666 & ~umask (0644)",
              "%s mode %o", err.msg, rc ? 0 : (unsigned)(sb.st_mode & 0777));
    chmod(p, 0640);
    rc = kb_npz_write(p, a->e, NARR, &err);
    KBT_CHECK(st, !rc && stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0640, "a replaced npz keeps its mode (0640)",
              "%s mode %o", err.msg, rc ? 0 : (unsigned)(sb.st_mode & 0777));
    umask(old);
    unlink(p);
}

static void check_no_temp_files(kbt_state *st, const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    const char *found = NULL;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) found = e->d_name;
    KBT_CHECK(st, d && !found, "no temp files left behind", "%s", found ? found : "cannot list");
    if (d) closedir(d);
}

int main(void) {
    kbt_state st = {0, 0};
    char dir[] = "/tmp/kb_test_sample_npy.XXXXXX";
    if (!mkdtemp(dir)) return printf("FAIL mkdtemp\n"), 1;
    arrays a;
    make_arrays(&a);
    check_roundtrip(&st, dir, &a);
    check_numpy(&st, dir);
    check_numpy_layouts(&st, dir);
    check_errors(&st, dir, &a);
    check_peek(&st, dir, &a);
    check_long_name(&st, dir, &a);
    check_mode(&st, dir, &a);
    check_no_temp_files(&st, dir);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    return kbt_finish(&st);
}
