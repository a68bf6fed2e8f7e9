#include "nn/tensor.h"

#include <stdio.h>
#include <string.h>

size_t kb_dtype_size(kb_dtype dt) {
    switch (dt) {
    case KB_F32: case KB_I32: return 4;
    case KB_BF16: case KB_F16: return 2;
    case KB_F64: case KB_I64: return 8;
    case KB_U8: return 1;
    }
    return 0;
}

const char *kb_dtype_name(kb_dtype dt) {
    static const char *names[] = {"f32", "bf16", "f16", "f64", "i32", "i64", "u8"};
    return (unsigned)dt < sizeof names / sizeof names[0] ? names[dt] : "?";
}

const char *kb_device_name(kb_device dev) { return dev == KB_DEV_CUDA ? "cuda" : "cpu"; }

int kb_device_parse(const char *s, kb_device *out, kb_err *err) {
    if (strcmp(s, "cpu") == 0) *out = KB_DEV_CPU;
    else if (strcmp(s, "cuda") == 0) *out = KB_DEV_CUDA;
    else return kb_fail(err, "unknown device '%s' (expected cpu or cuda)", s);
    return 0;
}

int64_t kb_numel(const kb_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t kb_nbytes(const kb_tensor *t) { return (size_t)kb_numel(t) * kb_dtype_size(t->dtype); }

kb_tensor kb_tensor_view(void *data, kb_dtype dt, kb_device dev, int ndim, const int64_t *shape) {
    kb_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dt;
    t.device = dev;
    t.ndim = ndim;
    for (int i = 0; i < ndim && i < KB_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

void kb_tensor_describe(const kb_tensor *t, char *buf, size_t n) {
    char s[160];
    shape_str(t->ndim, t->shape, s, sizeof s);
    snprintf(buf, n, "%s %s %s", s, kb_dtype_name(t->dtype), kb_device_name(t->device));
}

int kb_tensor_expect(const kb_tensor *t, kb_dtype dt, int ndim, const int64_t *shape, const char *what, kb_err *err) {
    int ok = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (ok) return 0;
    char want[160], got[200];
    shape_str(ndim, shape, want, sizeof want);
    kb_tensor_describe(t, got, sizeof got);
    return kb_fail(err, "%s: expected %s %s, got %s", what, want, kb_dtype_name(dt), got);
}
