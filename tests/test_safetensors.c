/* nn/safetensors.c: round trips of every dtype, files written by the Python
 * side (tests/ref/st.py, fixture st_sample) and read back by it, corrupt files
 * (each must fail with a message naming the file and the problem, never
 * crash), reader/writer misuse, atomic replacement. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/safetensors.h"
#include "tests/kbtest.h"
#include "util/fileio.h"

#define DIR "st_tmp"

/* ---- the sample both sides write (tests/ref/st.py sample()) ---- */

typedef struct {
    float f32[24];
    double f64[4];
    uint16_t f16[6], bf16[5];
    int32_t i32[4];
    int64_t i64[2];
    uint8_t u8[7];
    float scalar;
} sample_t;

static void make_sample(sample_t *s) {
    for (int i = 0; i < 24; i++) s->f32[i] = ((float)i - 7.5f) / 3.0f;
    s->f64[0] = 1.0 / 3.0, s->f64[1] = -2.5e300, s->f64[2] = 5e-324, s->f64[3] = M_PI;
    /* numpy float16 of 0, -1.5, 65504, 6e-8, inf, 1/3 */
    static const uint16_t f16[6] = {0x0000, 0xBE00, 0x7BFF, 0x0001, 0x7C00, 0x3555};
    memcpy(s->f16, f16, sizeof f16);
    static const uint16_t bf16[5] = {0x3F80, 0xC040, 0x7F80, 0x0001, 0x8000};
    memcpy(s->bf16, bf16, sizeof bf16);
    s->i32[0] = INT32_MIN, s->i32[1] = -1, s->i32[2] = 0, s->i32[3] = INT32_MAX;
    s->i64[0] = INT64_MIN, s->i64[1] = ((int64_t)1 << 62) + 12345;
    for (int i = 0; i < 7; i++) s->u8[i] = (uint8_t)(37 * i);
    s->scalar = 2.75f;
}

static const char *kConfig = "{\"depth\": 12, \"name\": \"DiT-S/2\"}";

static int write_sample(const char *path, const sample_t *s, kb_err *err) {
    kb_st_writer *w = kb_st_writer_new(err);
    if (!w) return -1;
    int64_t sh_f32[3] = {2, 3, 4}, sh22[2] = {2, 2}, sh6[1] = {6}, sh5[1] = {5}, sh4[1] = {4}, sh12[2] = {1, 2},
            sh7[1] = {7}, sh30[2] = {3, 0};
    int rc = kb_st_writer_meta(w, "format", "kindbench-sample", err) || kb_st_writer_meta(w, "config", kConfig, err) ||
             kb_st_writer_add(w, "f32", KB_F32, 3, sh_f32, s->f32, err) ||
             kb_st_writer_add(w, "f64", KB_F64, 2, sh22, s->f64, err) ||
             kb_st_writer_add(w, "f16", KB_F16, 1, sh6, s->f16, err) ||
             kb_st_writer_add(w, "bf16", KB_BF16, 1, sh5, s->bf16, err) ||
             kb_st_writer_add(w, "i32", KB_I32, 1, sh4, s->i32, err) ||
             kb_st_writer_add(w, "i64", KB_I64, 2, sh12, s->i64, err) ||
             kb_st_writer_add(w, "u8", KB_U8, 1, sh7, s->u8, err) ||
             kb_st_writer_add(w, "scalar", KB_F32, 0, NULL, &s->scalar, err) ||
             kb_st_writer_add(w, "empty", KB_F32, 2, sh30, NULL, err) || kb_st_writer_write(w, path, err);
    kb_st_writer_free(w);
    return rc ? -1 : 0;
}

/* Reads every sample tensor from path and compares bits and shapes. */
static void check_sample_file(kbt_state *st, const char *path, const char *label) {
    kb_err err = {0};
    char name[160];
    kb_st_file *f = kb_st_open(path, &err);
    snprintf(name, sizeof name, "%s: opens", label);
    KBT_CHECK(st, f != NULL, name, "%s", err.msg);
    if (!f) return;
    sample_t want, got;
    make_sample(&want);
    memset(&got, 0xAB, sizeof got);
    int64_t sh_f32[3] = {2, 3, 4}, anyr[2] = {-1, -1};
    int rc = kb_st_read(f, "f32", KB_F32, 3, sh_f32, got.f32, sizeof got.f32, &err) ||
             kb_st_read(f, "f64", KB_F64, 2, anyr, got.f64, sizeof got.f64, &err) ||
             kb_st_read(f, "f16", KB_F16, -1, NULL, got.f16, sizeof got.f16, &err) ||
             kb_st_read(f, "bf16", KB_BF16, -1, NULL, got.bf16, sizeof got.bf16, &err) ||
             kb_st_read(f, "i32", KB_I32, -1, NULL, got.i32, sizeof got.i32, &err) ||
             kb_st_read(f, "i64", KB_I64, 2, anyr, got.i64, sizeof got.i64, &err) ||
             kb_st_read(f, "u8", KB_U8, -1, NULL, got.u8, sizeof got.u8, &err) ||
             kb_st_read(f, "scalar", KB_F32, 0, NULL, &got.scalar, 4, &err) ||
             kb_st_read(f, "empty", KB_F32, 2, (int64_t[]){3, 0}, NULL, 0, &err);
    snprintf(name, sizeof name, "%s: every dtype reads back bit-exact", label);
    int same = !rc && memcmp(got.f32, want.f32, sizeof want.f32) == 0 && memcmp(got.f64, want.f64, 32) == 0 &&
               memcmp(got.f16, want.f16, 12) == 0 && memcmp(got.bf16, want.bf16, 10) == 0 &&
               memcmp(got.i32, want.i32, 16) == 0 && memcmp(got.i64, want.i64, 16) == 0 &&
               memcmp(got.u8, want.u8, 7) == 0 && got.scalar == want.scalar;
    KBT_CHECK(st, same, name, "rc=%d %s", rc, err.msg);
    const kb_st_tensor *t = kb_st_find(f, "scalar");
    snprintf(name, sizeof name, "%s: rank-0 tensor is a scalar, empty tensor has 0 elements", label);
    const kb_st_tensor *e = kb_st_find(f, "empty");
    KBT_CHECK(st, t && t->ndim == 0 && t->numel == 1 && e && e->numel == 0 && e->ndim == 2, name, "bad entries");
    snprintf(name, sizeof name, "%s: metadata", label);
    const char *cfg = kb_st_meta(f, "config"), *fmt = kb_st_meta(f, "format");
    KBT_CHECK(st, cfg && strcmp(cfg, kConfig) == 0 && fmt && strcmp(fmt, "kindbench-sample") == 0 &&
                      kb_st_meta(f, "nope") == NULL && kb_st_meta_count(f) == 2,
              name, "config=%s format=%s", cfg ? cfg : "(null)", fmt ? fmt : "(null)");
    snprintf(name, sizeof name, "%s: kb_st_count and data order", label);
    int ordered = kb_st_count(f) == 9;
    for (int i = 1; ordered && i < kb_st_count(f); i++) ordered = kb_st_at(f, i)->begin >= kb_st_at(f, i - 1)->end;
    KBT_CHECK(st, ordered, name, "count %d", kb_st_count(f));
    /* widening reads */
    float h[6], b[5];
    rc = kb_st_read_f32(f, "f16", 1, (int64_t[]){6}, h, 6, &err) || kb_st_read_f32(f, "bf16", -1, NULL, b, 5, &err);
    snprintf(name, sizeof name, "%s: kb_st_read_f32 widens F16 and BF16 exactly", label);
    KBT_CHECK(st, !rc && h[0] == 0.0f && h[1] == -1.5f && h[2] == 65504.0f && h[3] == ldexpf(1.0f, -24) &&
                      isinf(h[4]) && h[5] == 0.333251953125f && b[0] == 1.0f && b[1] == -3.0f && isinf(b[2]) &&
                      b[3] > 0 && b[3] < 1e-38f && b[4] == 0.0f && signbit(b[4]),
              name, "rc=%d %s h=%g %g %g %g b=%g %g", rc, err.msg, h[0], h[1], h[2], h[3], b[0], b[1]);
    kb_st_close(f);
}

/* ---- reader and writer misuse ---- */

static void expect_err(kbt_state *st, int failed, const kb_err *err, const char *needle, const char *name) {
    KBT_CHECK(st, failed && strstr(err->msg, needle), name, "failed=%d msg='%s' (wanted '%s')", failed, err->msg,
              needle);
    if (failed) printf("      -> %s\n", err->msg);
}

static void test_misuse(kbt_state *st, const char *path) {
    kb_err err = {0};
    kb_st_file *f = kb_st_open(path, &err);
    if (!f) return;
    float buf[32];
    expect_err(st, kb_st_read(f, "f32", KB_F64, -1, NULL, buf, 96, &err) != 0, &err,
               "tensor 'f32': expected dtype F64, file has F32", "read with the wrong dtype");
    expect_err(st, kb_st_read(f, "f32", KB_F32, 2, (int64_t[]){6, 4}, buf, 96, &err) != 0, &err,
               "expected shape [6, 4], file has [2, 3, 4]", "read with the wrong shape");
    expect_err(st, kb_st_read(f, "f32", KB_F32, -1, NULL, buf, 64, &err) != 0, &err,
               "destination holds 64 bytes, tensor has 96", "read into a short buffer");
    expect_err(st, kb_st_read_f32(f, "i32", -1, NULL, buf, 4, &err) != 0, &err, "dtype I32 cannot be read as F32",
               "read_f32 of an integer tensor");
    expect_err(st, kb_st_read(f, "missing", KB_F32, -1, NULL, buf, 4, &err) != 0, &err, "no tensor 'missing'",
               "read of a missing tensor");
    void *p = NULL;
    const kb_st_tensor *info = NULL;
    int rc = kb_st_read_alloc(f, "i64", KB_I64, &info, &p, &err);
    KBT_CHECK(st, rc == 0 && info && info->numel == 2 && ((int64_t *)p)[0] == INT64_MIN, "kb_st_read_alloc", "%s",
              err.msg);
    free(p);
    kb_st_close(f);

    kb_st_writer *w = kb_st_writer_new(&err);
    float x[4] = {1, 2, 3, 4};
    int64_t sh[1] = {4};
    kb_st_writer_add(w, "x", KB_F32, 1, sh, x, &err);
    expect_err(st, kb_st_writer_add(w, "x", KB_F32, 1, sh, x, &err) != 0, &err, "tensor 'x' added twice",
               "writer rejects a duplicate name");
    expect_err(st, kb_st_writer_add(w, "__metadata__", KB_F32, 1, sh, x, &err) != 0, &err, "invalid tensor name",
               "writer rejects the name __metadata__");
    expect_err(st, kb_st_writer_add(w, "y", KB_F32, 1, sh, NULL, &err) != 0, &err, "data is NULL",
               "writer rejects NULL data");
    expect_err(st, kb_st_writer_add(w, "z", KB_F32, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}, x, &err) != 0, &err,
               "rank 7 outside 0..6", "writer rejects rank 7");
    expect_err(st, kb_st_writer_add(w, "n", KB_F32, 1, (int64_t[]){-2}, x, &err) != 0, &err, "negative",
               "writer rejects a negative dimension");
    expect_err(st, kb_st_writer_add(w, "big", KB_F64, 2, (int64_t[]){(int64_t)1 << 31, (int64_t)1 << 31}, x, &err) != 0,
               &err, "overflowing shape", "writer rejects a shape whose byte size wraps past 2^64");
    expect_err(st, kb_st_writer_write(w, DIR "/no/such/dir/x.safetensors", &err) != 0, &err, "no/such/dir",
               "writing into a missing directory fails");
    /* atomic replace: an existing file is replaced whole */
    kb_st_writer_meta(w, "k", "v1", &err);
    kb_st_writer_meta(w, "k", "v2", &err);
    rc = kb_st_writer_write(w, DIR "/replace.safetensors", &err);
    x[0] = 42;
    rc |= kb_st_writer_write(w, DIR "/replace.safetensors", &err);
    kb_st_writer_free(w);
    f = rc ? NULL : kb_st_open(DIR "/replace.safetensors", &err);
    float y[4] = {0};
    KBT_CHECK(st, f && kb_st_read_f32(f, "x", 1, sh, y, 4, &err) == 0 && y[0] == 42 &&
                      strcmp(kb_st_meta(f, "k"), "v2") == 0,
              "rewrite replaces the file; metadata key set twice keeps the last value", "%s", err.msg);
    kb_st_close(f);
}

/* ---- corrupt files ---- */

/* Writes an 8-byte length (hl, or the header's own length when hl < 0), the
 * header text and `data` bytes of 0x11. */
static void write_raw(const char *path, const char *header, long long hl, size_t data) {
    FILE *fp = fopen(path, "wb");
    uint64_t n = hl < 0 ? strlen(header) : (uint64_t)hl;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(n >> (8 * i));
    fwrite(len, 1, 8, fp);
    fwrite(header, 1, strlen(header), fp);
    for (size_t i = 0; i < data; i++) fputc(0x11, fp);
    fclose(fp);
}

static void corrupt_case(kbt_state *st, const char *header, long long hl, size_t data, const char *needle,
                         const char *what) {
    char path[128];
    snprintf(path, sizeof path, DIR "/corrupt.safetensors");
    write_raw(path, header, hl, data);
    kb_err err = {0};
    kb_st_file *f = kb_st_open(path, &err);
    char name[160];
    snprintf(name, sizeof name, "corrupt: %s", what);
    int ok = f == NULL && strstr(err.msg, needle) && strstr(err.msg, path);
    KBT_CHECK(st, ok, name, "msg='%s' (wanted '%s' and the path)", err.msg, needle);
    if (f == NULL) printf("      -> %s\n", err.msg);
    kb_st_close(f);
}

#define T1(dt, shape, off) "{\"a\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}}"

static void test_corrupt(kbt_state *st, const char *good) {
    kb_err err = {0};
    FILE *fp = fopen(DIR "/short.safetensors", "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    kb_st_file *f = kb_st_open(DIR "/short.safetensors", &err);
    expect_err(st, f == NULL, &err, "too short", "corrupt: 3-byte file");
    f = kb_st_open(DIR "/does-not-exist.safetensors", &err);
    expect_err(st, f == NULL, &err, "cannot open", "missing file");

    const char *ok1 = T1("F32", "[2,3]", "[0,24]");
    corrupt_case(st, ok1, 1000, 24, "header length 1000 is impossible", "header length beyond the file");
    corrupt_case(st, ok1, (long long)1 << 40, 24, "is impossible", "header length 2^40");
    corrupt_case(st, ok1, -1, 20, "beyond the 20-byte data section", "truncated data");
    corrupt_case(st, "{\"a\":{\"dtype\":\"F32\",", -1, 0, "not valid JSON", "bad JSON");
    corrupt_case(st, "[1, 2, 3]", -1, 0, "does not start with '{'", "header not an object");
    corrupt_case(st, "{\"a\":1} x", -1, 0, "unexpected bytes after the header JSON", "junk after the JSON");
    corrupt_case(st, T1("F32", "[2,3]", "[0,28]"), -1, 28, "needs 24 bytes but data_offsets [0, 28] hold 28",
                 "shape/byte-size mismatch");
    corrupt_case(st, T1("F64", "[2,3]", "[0,24]"), -1, 24, "needs 48 bytes", "dtype/byte-size mismatch");
    corrupt_case(st, T1("BOOL", "[2]", "[0,2]"), -1, 2, "dtype 'BOOL' not supported", "unsupported dtype");
    corrupt_case(st, T1("F32", "[-2]", "[0,8]"), -1, 8, "shape entry 0 is not a non-negative integer",
                 "negative dimension");
    corrupt_case(st, T1("F32", "[2.5]", "[0,8]"), -1, 8, "shape entry 0", "fractional dimension");
    corrupt_case(st, T1("F32", "[1,1,1,1,1,1,1]", "[0,4]"), -1, 4, "rank 7 exceeds", "rank 7");
    /* 2^62 elements pass a bound on the count alone; times 4 bytes they wrap to 0 */
    corrupt_case(st, T1("F32", "[2147483648,2147483648]", "[0,0]"), -1, 0, "byte size of the shape overflows",
                 "F32 shape whose byte size wraps past 2^64");
    corrupt_case(st, T1("I64", "[2147483648,1073741824]", "[0,0]"), -1, 0, "byte size of the shape overflows",
                 "I64 shape whose byte size wraps past 2^64");
    corrupt_case(st, T1("F32", "[2]", "[0]"), -1, 8, "must be [begin, end]", "data_offsets with one entry");
    corrupt_case(st, T1("F32", "[2]", "[8,0]"), -1, 8, "end before begin", "data_offsets reversed");
    corrupt_case(st, T1("F32", "[2]", "[16,24]"), -1, 24, "gap of 16 bytes", "gap before the first tensor");
    corrupt_case(st, T1("F32", "[2]", "[0,8]"), -1, 12, "cover 8 bytes of a 12-byte data section", "trailing bytes");
    corrupt_case(st, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 -1, 12, "overlap tensor 'a'", "overlapping tensors");
    corrupt_case(st, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                 -1, 16, "tensor 'a' appears twice", "duplicate names");
    corrupt_case(st, "{\"__metadata__\":{\"k\":1}}", -1, 0, "metadata 'k' is not a string", "non-string metadata");
    corrupt_case(st, "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "missing or non-string \"dtype\"",
                 "missing dtype");
    corrupt_case(st, "{\"a\":5}", -1, 0, "not a JSON object", "entry not an object");
    /* a valid file cut at every length fails cleanly (no crash, no success) */
    uint8_t *data;
    size_t size;
    if (kb_read_file(good, &data, &size, &err) == 0) {
        int crashes_or_ok = 0;
        for (size_t cut = 0; cut < size; cut++) {
            fp = fopen(DIR "/cut.safetensors", "wb");
            fwrite(data, 1, cut, fp);
            fclose(fp);
            f = kb_st_open(DIR "/cut.safetensors", &err);
            if (f) crashes_or_ok++;
            kb_st_close(f);
        }
        KBT_CHECK(st, crashes_or_ok == 0, "every truncation of a valid file is rejected", "%d truncations accepted",
                  crashes_or_ok);
        /* and every single-byte corruption of the header is either rejected or still self-consistent */
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | data[i];
        int opened = 0;
        for (size_t i = 0; i < 8 + hl; i++) {
            uint8_t save = data[i];
            data[i] ^= 0x5A;
            fp = fopen(DIR "/flip.safetensors", "wb");
            fwrite(data, 1, size, fp);
            fclose(fp);
            data[i] = save;
            f = kb_st_open(DIR "/flip.safetensors", &err);
            if (f) { /* accepted: every tensor must still be readable */
                opened++;
                for (int k = 0; k < kb_st_count(f); k++) {
                    void *p = NULL;
                    if (kb_st_read_alloc(f, kb_st_at(f, k)->name, kb_st_at(f, k)->dtype, NULL, &p, &err) == 0) free(p);
                }
            }
            kb_st_close(f);
        }
        printf("      (%d of %llu single-byte header corruptions still parse as a consistent file)\n", opened,
               (unsigned long long)(8 + hl));
        KBT_CHECK(st, 1, "single-byte header corruptions: rejected or consistent, no crash", "%s", "");
        free(data);
    }
}

/* A file name of 245-255 bytes is legal, but "<name>.tmp.XXXXXX" is not: the
 * writer must still produce it (the temp name is cut) and leave no temp file.
 * The second name is 84 three-byte characters and ".st", so the cut at byte
 * 244 falls inside a character. */
static void test_long_names(kbt_state *st, const sample_t *s) {
    for (int k = 0; k < 2; k++) {
        char name[256] = "", path[512];
        if (k == 0) {
            memset(name, 'a', 243);
            strcpy(name + 243, ".safetensors");
        } else {
            for (int i = 0; i < 84; i++) strcat(name, "\xe2\x82\xac");
            strcat(name, ".st");
        }
        mkdir(DIR "/long", 0777);
        snprintf(path, sizeof path, DIR "/long/%s", name);
        kb_err err = {0};
        int rc = write_sample(path, s, &err);
        struct stat sb;
        KBT_CHECK(st, strlen(name) == 255 && rc == 0 && stat(path, &sb) == 0, "a 255-byte file name is written",
                  "%s", err.msg);
        if (rc == 0) check_sample_file(st, path, k ? "255-byte UTF-8 name" : "255-byte name");
        KBT_CHECK(st, system("test -z \"$(find " DIR "/long -name '*.tmp.*')\"") == 0,
                  "no temp file left beside a 255-byte name", "%s", DIR "/long");
        unlink(path);
    }
}

int main(void) {
    kbt_state st = {0, 0};
    kb_err err = {0};
    mkdir(DIR, 0777);
    sample_t s;
    make_sample(&s);
    const char *path = DIR "/sample_c.safetensors";
    int rc = write_sample(path, &s, &err);
    KBT_CHECK(&st, rc == 0, "writer: all dtypes, rank 0, empty tensor, metadata", "%s", err.msg);
    struct stat sb;
    KBT_CHECK(&st, rc == 0 && stat(path, &sb) == 0, "file exists after the atomic write", "%s", path);
    if (rc == 0) check_sample_file(&st, path, "C round trip");

    const char *fx = getenv("KB_FIXTURES");
    char pyfile[4096];
    if (fx) {
        snprintf(pyfile, sizeof pyfile, "%s/st_sample.safetensors", fx);
        check_sample_file(&st, pyfile, "file written by tests/ref/st.py");
    } else {
        printf("skip: KB_FIXTURES not set, no Python-written file to read\n");
    }
    const char *py = getenv("KB_PYTHON"), *src = getenv("KB_SOURCE_DIR");
    if (py && src && rc == 0) {
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "'%s' '%s/tests/ref/st.py' check-sample '%s'", py, src, path);
        int prc = system(cmd);
        KBT_CHECK(&st, prc == 0, "tests/ref/st.py reads the C-written file bit-exact", "exit status %d", prc);
    }
    if (rc == 0) {
        test_misuse(&st, path);
        test_corrupt(&st, path);
    }
    test_long_names(&st, &s);
    return kbt_finish(&st);
}
