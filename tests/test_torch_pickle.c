/* The safe PyTorch checkpoint reader (metrics/torch_pickle.h):
 *   - small state dicts written by torch 1.13 in both formats (fixture
 *     tests/ref/inception_ref.py): names in order, dtypes, shapes, a strided
 *     view, a storage offset, an nn.Parameter, a 0-d tensor, an OrderedDict
 *     with _metadata; values bit-identical to PyTorch's;
 *   - the real FID Inception file's header (../shared/weights, 818,371 bytes):
 *     all 566 entries as Python's pickle module lists them, then a clear
 *     "truncated" error with the number of missing bytes;
 *   - hand-made hostile pickles: a GLOBAL of os.system, REDUCE of a
 *     non-callable, other globals, deep MARK nesting, bad memo indices,
 *     huge lengths, other protocols, tensors reaching past their storage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "metrics/torch_pickle.h"
#include "nn/safetensors.h"
#include "test_torch_pickle.h"
#include "util/fileio.h"

static char g_path[4096];

static const char *fx(const char *name) {
    const char *d = getenv("KB_FIXTURES");
    snprintf(g_path, sizeof g_path, "%s/%s", d ? d : ".", name);
    return g_path;
}

static void test_small(kbt_state *st, const char *file, const char *label) {
    static const char *names[] = {"a.weight", "b.num_batches_tracked", "c.transposed", "d.offset", "e.double", "f.param", "g.scalar"};
    static const kb_dtype dtypes[] = {KB_F32, KB_I64, KB_F32, KB_F32, KB_F64, KB_F32, KB_F32};
    kb_err err = {0};
    char name[160];
    kb_tp_file *f = kb_tp_open(fx(file), 0, &err);
    snprintf(name, sizeof name, "%s: opens", label);
    KBT_CHECK(st, f != NULL, name, "%s", err.msg);
    kb_st_file *ref = kb_st_open(fx("tp_small.safetensors"), &err);
    if (!f || !ref) {
        kb_tp_close(f), kb_st_close(ref);
        return;
    }
    int ok = kb_tp_count(f) == 7;
    for (int i = 0; ok && i < 7; i++) ok = !strcmp(kb_tp_at(f, i)->name, names[i]) && kb_tp_at(f, i)->dtype == dtypes[i];
    snprintf(name, sizeof name, "%s: 7 entries in order with their dtypes", label);
    KBT_CHECK(st, ok, name, "got %d entries", kb_tp_count(f));
    const kb_tp_tensor *c = kb_tp_find(f, "c.transposed"), *d = kb_tp_find(f, "d.offset");
    snprintf(name, sizeof name, "%s: strided view and storage offset kept", label);
    KBT_CHECK(st, c && d && c->stride[0] == 1 && c->stride[1] == 5 && d->offset == 5 && c->storage == d->storage, name,
              "c strides %lld,%lld, d offset %lld", c ? (long long)c->stride[0] : -1, c ? (long long)c->stride[1] : -1,
              d ? (long long)d->offset : -1);
    static const char *floats[] = {"a.weight", "c.transposed", "d.offset", "f.param", "g.scalar"};
    for (int i = 0; i < 5; i++) {
        const kb_tp_tensor *t = kb_tp_find(f, floats[i]);
        const kb_st_tensor *r = kb_st_find(ref, floats[i]);
        if (!t || !r) continue;
        float *got = malloc(4 * (size_t)t->numel), *want = malloc(4 * (size_t)t->numel);
        int rc = kb_tp_read_f32(f, floats[i], t->ndim, t->shape, got, (size_t)t->numel, &err) ||
                 kb_st_read_f32(ref, floats[i], -1, NULL, want, (size_t)r->numel, &err);
        snprintf(name, sizeof name, "%s: %s values bit-identical to PyTorch's", label, floats[i]);
        KBT_CHECK(st, !rc && r->numel == t->numel && !memcmp(got, want, 4 * (size_t)t->numel), name, "%s", err.msg);
        free(got), free(want);
    }
    float tmp[16];
    int64_t shape[1] = {3};
    snprintf(name, sizeof name, "%s: float64 and int64 tensors refused by read_f32, wrong shape named", label);
    KBT_CHECK(st, kb_tp_read_f32(f, "e.double", -1, NULL, tmp, 3, &err) && strstr(err.msg, "f64") &&
                      kb_tp_read_f32(f, "b.num_batches_tracked", -1, NULL, tmp, 1, &err) &&
                      kb_tp_read_f32(f, "a.weight", 1, shape, tmp, 3, &err) && strstr(err.msg, "[3, 4]"),
              name, "%s", err.msg);
    kb_tp_close(f);
    kb_st_close(ref);
}

/* ---- the real file's header ---- */

typedef struct {
    char name[128], dtype[8], shape[64], key[32], stride[64];
    long long offset;
} listed;

static void shape_str(const int64_t *v, int n, char *out, size_t sz) {
    out[0] = 0;
    for (int i = 0; i < n; i++) snprintf(out + strlen(out), sz - strlen(out), "%s%lld", i ? "," : "", (long long)v[i]);
    if (!n) snprintf(out, sz, "-");
}

static int compare_listing(kbt_state *st, const kb_tp_file *f, FILE *lf) {
    int bad = 0, i = 0;
    listed e;
    while (fscanf(lf, "%127s %7s %63s %31s %lld %63s", e.name, e.dtype, e.shape, e.key, &e.offset, e.stride) == 6) {
        const kb_tp_tensor *t = kb_tp_at(f, i++);
        char shape[64], stride[64];
        if (!t) return -1;
        shape_str(t->shape, t->ndim, shape, sizeof shape);
        shape_str(t->stride, t->ndim, stride, sizeof stride);
        if (strcmp(t->name, e.name) || strcmp(kb_dtype_name(t->dtype), e.dtype) || strcmp(shape, e.shape) ||
            strcmp(kb_tp_storage_at(f, t->storage)->key, e.key) || t->offset != e.offset || strcmp(stride, e.stride)) {
            if (!bad++)
                KBT_CHECK(st, 0, "real header entry", "entry %d: got %s %s [%s] key %s; Python lists %s %s [%s] key %s", i - 1,
                          t->name, kb_dtype_name(t->dtype), shape, kb_tp_storage_at(f, t->storage)->key, e.name, e.dtype,
                          e.shape, e.key);
        }
    }
    return bad ? -1 : i;
}

static void test_real_header(kbt_state *st) {
    char path[4096];
    const char *src = getenv("KB_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/../shared/weights/pt_inception-2015-12-05-6726825d.head-818371.pth", src ? src : "..");
    if (!kb_is_file(path)) {
        printf("skip real header: %s is absent\n", path);
        return;
    }
    kb_err err = {0};
    kb_tp_file *f = kb_tp_open(path, 0, &err);
    KBT_CHECK(st, !f && strstr(err.msg, "truncated") && strstr(err.msg, path) && strstr(err.msg, "94809988 bytes"),
              "real header: 'truncated' error naming the file and the 94,809,988 missing bytes", "%s", err.msg);
    printf("     message: %s\n", err.msg);
    kb_tp_close(f);
    f = kb_tp_open(path, KB_TP_HEADER_ONLY, &err);
    KBT_CHECK(st, f != NULL, "real header: parses in header-only mode", "%s", err.msg);
    FILE *lf = fopen(fx("real_head_listing.txt"), "r");
    if (!f || !lf) {
        KBT_CHECK(st, lf != NULL, "real header listing from Python", "missing %s", fx("real_head_listing.txt"));
        kb_tp_close(f);
        if (lf) fclose(lf);
        return;
    }
    long long entries = 0, storages = 0, start = 0, expected = 0;
    int got = fscanf(lf, "entries %lld\nstorages %lld\ndata_start %lld\nexpected_size %lld\n", &entries, &storages, &start, &expected);
    KBT_CHECK(st, got == 4 && kb_tp_count(f) == 566 && entries == 566 && kb_tp_storage_count(f) == storages,
              "real header: 566 entries and storages", "C %d entries %d storages, Python %lld %lld", kb_tp_count(f),
              kb_tp_storage_count(f), entries, storages);
    KBT_CHECK(st, (long long)kb_tp_expected_size(f) == expected && kb_tp_missing_bytes(f) == (uint64_t)(expected - 818371),
              "real header: complete size 95,628,359 bytes as Python computes it", "C %llu, Python %lld",
              (unsigned long long)kb_tp_expected_size(f), expected);
    int n = compare_listing(st, f, lf);
    KBT_CHECK(st, n == 566, "real header: every name, dtype, shape, stride, offset and storage key as Python lists them",
              "%d entries matched", n);
    const kb_tp_tensor *nbt = kb_tp_find(f, "Conv2d_1a_3x3.bn.num_batches_tracked");
    KBT_CHECK(st, nbt && nbt->dtype == KB_I64 && nbt->ndim == 0, "real header: int64 num_batches_tracked", "missing or wrong");
    /* Storages wholly inside the head can be read; later ones say they are absent. */
    int read_ok = 0, refused = 0;
    for (int i = 0; i < kb_tp_count(f); i++) {
        const kb_tp_tensor *t = kb_tp_at(f, i);
        if (t->dtype != KB_F32 || t->numel > 4096) continue;
        float buf[4096];
        int rc = kb_tp_read_f32(f, t->name, -1, NULL, buf, (size_t)t->numel, &err);
        if (kb_tp_storage_at(f, t->storage)->data) read_ok += rc == 0;
        else refused += rc != 0 && strstr(err.msg, "truncated") != NULL;
    }
    KBT_CHECK(st, read_ok > 0 && refused > 0, "real header: present storages read, absent ones refused", "%d read, %d refused", read_ok, refused);
    fclose(lf);
    kb_tp_close(f);
}

/* ---- hostile pickles ---- */

static void expect_error(kbt_state *st, const char *what, tp_buf *b, const char *part) {
    kb_err err = {0};
    kb_tp_file *f = kb_tp_open_mem(b->p, b->n, "hostile", 0, &err);
    KBT_CHECK(st, !f && strstr(err.msg, part), what, "want an error with '%s', got %s", part, f ? "success" : err.msg);
    if (!f) printf("     message: %s\n", err.msg);
    kb_tp_close(f);
    free(b->p);
}

/* preamble + state pickle + empty key list */
static tp_buf with_state(const char *pickle, size_t n) {
    tp_buf b = {0};
    tb_preamble(&b);
    tb_put(&b, pickle, n);
    tb_str(&b, "\x80\x02].");
    return b;
}

#define STATE(lit) with_state(lit, sizeof(lit) - 1)

static void test_hostile(kbt_state *st) {
    tp_buf b = tb_valid_file();
    kb_err err = {0};
    kb_tp_file *f = kb_tp_open_mem(b.p, b.n, "handmade", 0, &err);
    float v[6];
    int64_t shape[2] = {3, 2};
    KBT_CHECK(st, f && kb_tp_read_f32(f, "t", 2, shape, v, 6, &err) == 0 && v[5] == 5.0f, "hand-made valid file reads", "%s", err.msg);
    kb_tp_close(f);
    free(b.p);

    b = STATE("\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00ls\x85R.");
    expect_error(st, "GLOBAL os.system refused", &b, "GLOBAL os.system is not allowed");
    b = STATE("\x80\x02" "cbuiltins\neval\n.");
    expect_error(st, "GLOBAL builtins.eval refused", &b, "not allowed");
    b = STATE("\x80\x02" "ctorch._utils\n_rebuild_tensor\n.");
    expect_error(st, "GLOBAL torch._utils._rebuild_tensor (v1) refused", &b, "not allowed");
    b = STATE("\x80\x02" "ctorch\nFloatStorage\n)R.");
    expect_error(st, "REDUCE of a storage type (not callable) refused", &b, "not callable");
    b = STATE("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R.");
    expect_error(st, "OrderedDict() with arguments refused", &b, "OrderedDict() with arguments");
    b = STATE("\x80\x02" "}K\x01K\x02\x86R.");
    expect_error(st, "REDUCE of a dict refused", &b, "REDUCE needs");
    b = STATE("\x80\x02]]b.");
    expect_error(st, "BUILD on a list refused", &b, "BUILD");
    b = STATE("\x80\x02" "c__builtin__\ngetattr\n.");
    expect_error(st, "GLOBAL __builtin__.getattr refused", &b, "not allowed");
    b = STATE("\x80\x02(I1\n.");
    expect_error(st, "text opcode INT refused", &b, "opcode 0x49 ('I') is not accepted");
    b = STATE("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}.");
    expect_error(st, "protocol 4 refused", &b, "pickle protocol 4");
    b = STATE("\x80\x02j\xff\xff\xff\x7f.");
    expect_error(st, "LONG_BINGET of an empty slot", &b, "memo slot");
    b = STATE("\x80\x02}r\xff\xff\xff\xff.");
    expect_error(st, "LONG_BINPUT at index 2^32-1", &b, "memo index");
    b = STATE("\x80\x02X\xf0\xff\xff\xff" "abc.");
    expect_error(st, "BINUNICODE longer than the file", &b, "string of");
    b = STATE("\x80\x02X\x10\x00\x00\x00" "abc.");
    expect_error(st, "BINUNICODE running past the end", &b, "truncated");
    b = STATE("\x80\x02X\x03\x00\x00\x00" "a\x00" "b.");
    expect_error(st, "string with a NUL byte", &b, "NUL");
    b = STATE("\x80\x02" "0.");
    expect_error(st, "POP refused", &b, "not accepted");
    b = STATE("\x80\x02u.");
    expect_error(st, "SETITEMS without MARK", &b, "no MARK");
    b = STATE("\x80\x02}(K\x01u.");
    expect_error(st, "SETITEMS with an odd count", &b, "odd");
    b = STATE("\x80\x02(a.");
    expect_error(st, "APPEND across a MARK (stack underflow)", &b, "underflow");
    b = STATE("\x80\x02K\x01K\x02.");
    expect_error(st, "STOP with two values", &b, "STOP with 2 values");
    b = STATE("\x80\x02]K\x01\x85Q.");
    expect_error(st, "persistent id that is not a storage", &b, "persistent id");
    b = STATE("\x80\x02}(X\x01\x00\x00\x00" "aK\x01u.");
    expect_error(st, "state-dict value that is not a tensor", &b, "'a' is not a tensor");
    b = STATE("\x80\x02\x8a\x11" "0123456789abcdefg.");
    expect_error(st, "LONG1 wider than 16 bytes", &b, "LONG1");
    /* deep nesting: 100000 MARKs, and 100000 nested lists (no recursion anywhere) */
    b = (tp_buf){0};
    tb_preamble(&b);
    tb_str(&b, "\x80\x02");
    for (int i = 0; i < 100000; i++) tb_str(&b, "(");
    tb_str(&b, ".");
    expect_error(st, "100000 nested MARKs", &b, "nested deeper");
    b = (tp_buf){0};
    tb_preamble(&b);
    tb_str(&b, "\x80\x02");
    for (int i = 0; i < 100000; i++) tb_str(&b, "]");
    for (int i = 0; i < 99999; i++) tb_str(&b, "a");
    tb_str(&b, ".\x80\x02].");
    expect_error(st, "100000 nested lists: parsed, then not a dict", &b, "not a dict");
    /* tensors reaching past their storage, wrong counts, views */
    b = (tp_buf){0};
    tb_preamble(&b);
    tb_tensor_dict(&b, 6, 1, 3, 2, 2, 1);
    tb_keys_and_data(&b, 6);
    expect_error(st, "tensor reaching past its storage", &b, "reaches element 6");
    b = (tp_buf){0};
    tb_preamble(&b);
    tb_tensor_dict(&b, 6, 0, 3, 2, 2, 1);
    tb_keys_and_data(&b, 5);
    expect_error(st, "storage count in the data differs from the header", &b, "element count 5");
    b = tb_valid_file();
    tb_str(&b, "junk");
    expect_error(st, "trailing bytes after the storages", &b, "unexpected bytes");
    b = tb_valid_file();
    b.n -= 3;
    expect_error(st, "truncated storage data", &b, "3 bytes of storage data are missing");
    b = (tp_buf){0};
    tb_str(&b, "\x80\x02\x8a\x0a" "0123456789.");
    expect_error(st, "wrong magic number", &b, "magic number");
    b = (tp_buf){0};
    tb_str(&b, "PK\x03\x04garbage");
    expect_error(st, "broken zip", &b, "zip");
}

int main(void) {
    kbt_state st = {0};
    test_small(&st, "tp_small_legacy.pth", "legacy");
    test_small(&st, "tp_small_zip.pth", "zip");
    test_real_header(&st);
    test_hostile(&st);
    return kbt_finish(&st);
}
