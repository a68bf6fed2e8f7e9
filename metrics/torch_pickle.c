/* The pickle machine of the safe PyTorch checkpoint reader (see
 * metrics/torch_pickle.h): a protocol-2 subset that builds values, never
 * code. Accepted opcodes:
 *   PROTO (2 only), STOP, MARK, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE,
 *   TUPLE, TUPLE1, TUPLE2, TUPLE3, APPEND, APPENDS, SETITEM, SETITEMS,
 *   BINPUT, LONG_BINPUT, BINGET, LONG_BINGET, BININT, BININT1, BININT2,
 *   LONG1, BINFLOAT, BINUNICODE, SHORT_BINSTRING, BINSTRING, NONE,
 *   NEWTRUE, NEWFALSE, GLOBAL (allow-list below), REDUCE (allow-listed
 *   callables only), BUILD (attributes of an OrderedDict, dropped: torch's
 *   state_dict()._metadata), BINPERSID (storages only).
 * Everything else (INST, OBJ, NEWOBJ, EXT*, FRAME, the text opcodes, ...) is
 * an error naming the opcode and its byte offset.
 *
 * Pops respect the innermost MARK as Python's unpickler does (a pop below it
 * is "stack underflow"), so a malformed pickle cannot take values apart
 * across a MARK. Nothing recurses: cyclic or deep structures cost nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/torch_pickle_impl.h"

/* ------------------------------------------------------------------ arena */

struct kb_tp_block {
    kb_tp_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define KB_TP_BLOCK ((size_t)64 << 10)

void *kb_tp_alloc(kb_tp_arena *a, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    if (bytes > KB_TP_MAX_ARENA || a->total + bytes > KB_TP_MAX_ARENA) return NULL;
    kb_tp_block *b = a->head;
    if (!b || b->cap - b->used < bytes) {
        size_t cap = bytes > KB_TP_BLOCK ? bytes : KB_TP_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    a->total += bytes;
    memset(p, 0, bytes);
    return p;
}

void kb_tp_arena_free(kb_tp_arena *a) {
    while (a->head) {
        kb_tp_block *n = a->head->next;
        free(a->head);
        a->head = n;
    }
    a->total = 0;
}

/* ------------------------------------------------------------------ string map */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int kb_tp_map_get(const kb_tp_map *m, const char *key) {
    if (!m->cap) return -1;
    for (size_t i = fnv1a(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return -1;
        if (!strcmp(m->keys[i], key)) return m->vals[i];
    }
}

static int map_grow(kb_tp_map *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    const char **keys = calloc(cap, sizeof *keys);
    int *vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->keys[j]) continue;
        size_t i = fnv1a(m->keys[j]) & (cap - 1);
        while (keys[i]) i = (i + 1) & (cap - 1);
        keys[i] = m->keys[j];
        vals[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int kb_tp_map_put(kb_tp_map *m, const char *key, int val) {
    if ((m->count + 1) * 2 > m->cap && map_grow(m)) return -1;
    size_t i = fnv1a(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key)) i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->count++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}

void kb_tp_map_free(kb_tp_map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ allow-list */

enum { G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER, G_FIRST_STORAGE };

static const struct {
    const char *module, *name;
    kb_dtype dtype; /* storages only */
} kGlobals[] = {
    {"collections", "OrderedDict", KB_F32},        {"torch._utils", "_rebuild_tensor_v2", KB_F32},
    {"torch._utils", "_rebuild_parameter", KB_F32}, {"torch", "FloatStorage", KB_F32},
    {"torch", "DoubleStorage", KB_F64},            {"torch", "HalfStorage", KB_F16},
    {"torch", "BFloat16Storage", KB_BF16},         {"torch", "LongStorage", KB_I64},
    {"torch", "IntStorage", KB_I32},               {"torch", "ByteStorage", KB_U8},
};
#define N_GLOBALS ((int)(sizeof kGlobals / sizeof kGlobals[0]))

size_t kb_tp_elsize(kb_dtype dt) { return kb_dtype_size(dt); }

/* ------------------------------------------------------------------ machine */

typedef struct {
    kb_tp_file *f;
    const uint8_t *buf;
    size_t n, pos, base, op_pos;
    kb_tpv **stack;
    int64_t sp, scap;
    int64_t marks[KB_TP_MAX_MARKS];
    int nmarks;
    kb_tpv **memo;
    uint32_t memo_cap;
    kb_err *err;
} vm;

__attribute__((format(printf, 2, 3))) static int vfail(vm *m, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kb_fail(m->err, "%s: pickle opcode at byte %zu: %s", m->f->label, m->base + m->op_pos, msg);
}

static kb_tpv *newv(vm *m, kb_tpv_kind kind) {
    kb_tpv *v = kb_tp_alloc(&m->f->arena, sizeof *v);
    if (!v) {
        vfail(m, "out of memory (parsed values exceed %zu bytes)", KB_TP_MAX_ARENA);
        return NULL;
    }
    v->kind = kind;
    return v;
}

static int push(vm *m, kb_tpv *v) {
    if (!v) return -1;
    if (m->sp == m->scap) {
        if (m->scap >= KB_TP_MAX_STACK) return vfail(m, "stack deeper than %lld values", (long long)KB_TP_MAX_STACK);
        int64_t cap = m->scap ? m->scap * 2 : 256;
        kb_tpv **s = realloc(m->stack, (size_t)cap * sizeof *s);
        if (!s) return vfail(m, "out of memory for the stack");
        m->stack = s;
        m->scap = cap;
    }
    m->stack[m->sp++] = v;
    return 0;
}

static int64_t fence(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static kb_tpv *pop(vm *m) {
    if (m->sp <= fence(m)) {
        vfail(m, "stack underflow");
        return NULL;
    }
    return m->stack[--m->sp];
}

static kb_tpv *top(vm *m) {
    if (m->sp <= fence(m)) {
        vfail(m, "stack underflow");
        return NULL;
    }
    return m->stack[m->sp - 1];
}

/* Removes the innermost mark; *from is where its items start. */
static int pop_mark(vm *m, int64_t *from) {
    if (!m->nmarks) return vfail(m, "no MARK on the stack");
    *from = m->marks[--m->nmarks];
    return 0;
}

static const uint8_t *take(vm *m, size_t k) {
    if (m->n - m->pos < k) {
        vfail(m, "truncated: needs %zu more bytes, %zu left", k, m->n - m->pos);
        return NULL;
    }
    const uint8_t *p = m->buf + m->pos;
    m->pos += k;
    return p;
}

static int rd_uint(vm *m, int bytes, uint32_t *out) {
    const uint8_t *p = take(m, (size_t)bytes);
    if (!p) return -1;
    uint32_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    *out = v;
    return 0;
}

/* Grows a container's item array to hold `extra` more. */
static int reserve(vm *m, kb_tpv *c, int64_t extra) {
    if (c->n + extra <= c->cap) return 0;
    if (c->n + extra > KB_TP_MAX_STACK) return vfail(m, "container of more than %lld items", (long long)KB_TP_MAX_STACK);
    int64_t cap = c->cap * 2 > c->n + extra ? c->cap * 2 : c->n + extra;
    if (cap < 8) cap = 8;
    kb_tpv **items = kb_tp_alloc(&m->f->arena, (size_t)cap * sizeof *items);
    if (!items) return vfail(m, "out of memory (parsed values exceed %zu bytes)", KB_TP_MAX_ARENA);
    if (c->n) memcpy(items, c->items, (size_t)c->n * sizeof *items);
    c->items = items;
    c->cap = cap;
    return 0;
}

/* A new tuple/list of stack[from, sp), which are removed. */
static int collect_to(vm *m, kb_tpv *c, int64_t from) {
    int64_t k = m->sp - from;
    if (!k) return 0; /* (memcpy of nothing from NULL is still undefined) */
    if (reserve(m, c, k)) return -1;
    memcpy(c->items + c->n, m->stack + from, (size_t)k * sizeof *c->items);
    c->n += k;
    m->sp = from;
    return 0;
}

/* ---- strings, numbers, globals ---- */

static int op_string(vm *m, int len_bytes, int is_signed) {
    uint32_t len;
    if (rd_uint(m, len_bytes, &len)) return -1;
    if (is_signed && (len & 0x80000000u)) return vfail(m, "negative string length");
    if (len > KB_TP_MAX_STRING) return vfail(m, "string of %u bytes (limit %u)", len, KB_TP_MAX_STRING);
    const uint8_t *p = take(m, len);
    if (!p) return -1;
    if (memchr(p, 0, len)) return vfail(m, "string with a NUL byte");
    kb_tpv *v = newv(m, KB_TPV_STR);
    char *s = v ? kb_tp_alloc(&m->f->arena, (size_t)len + 1) : NULL;
    if (!s) return v ? vfail(m, "out of memory for a %u-byte string", len) : -1;
    memcpy(s, p, len);
    v->s = s;
    v->len = len;
    return push(m, v);
}

static int op_int(vm *m, int64_t value, kb_tpv_kind kind) {
    kb_tpv *v = newv(m, kind);
    if (!v) return -1;
    v->i = value;
    return push(m, v);
}

/* LONG1: n-byte little-endian two's complement. Up to 8 bytes is an int;
 * 9..16 bytes are kept as raw bytes (the legacy format's magic number). */
static int op_long1(vm *m) {
    uint32_t nb;
    if (rd_uint(m, 1, &nb)) return -1;
    if (nb > 16) return vfail(m, "LONG1 of %u bytes (at most 16 accepted)", nb);
    const uint8_t *p = take(m, nb);
    if (!p) return -1;
    if (nb > 8) {
        kb_tpv *v = newv(m, KB_TPV_BIGINT);
        uint8_t *raw = v ? kb_tp_alloc(&m->f->arena, nb) : NULL;
        if (!raw) return v ? vfail(m, "out of memory") : -1;
        memcpy(raw, p, nb);
        v->s = (const char *)raw;
        v->len = nb;
        return push(m, v);
    }
    uint64_t u = 0;
    for (int i = (int)nb - 1; i >= 0; i--) u = (u << 8) | p[i];
    if (nb && nb < 8 && (p[nb - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * nb); /* sign-extend */
    int64_t value;
    memcpy(&value, &u, sizeof value);
    return op_int(m, value, KB_TPV_INT);
}

static int op_binfloat(vm *m) {
    const uint8_t *p = take(m, 8);
    if (!p) return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = (u << 8) | p[i]; /* big-endian */
    kb_tpv *v = newv(m, KB_TPV_FLOAT);
    if (!v) return -1;
    memcpy(&v->f, &u, sizeof v->f);
    return push(m, v);
}

/* One "text\n" line of GLOBAL's argument: printable ASCII, at most 255 chars. */
static int global_line(vm *m, char *out, size_t outsz) {
    size_t k = 0;
    for (;;) {
        const uint8_t *p = take(m, 1);
        if (!p) return -1;
        if (*p == '\n') break;
        if (*p < 0x21 || *p > 0x7e || k + 1 >= outsz) return vfail(m, "malformed GLOBAL name");
        out[k++] = (char)*p;
    }
    out[k] = 0;
    return 0;
}

static int op_global(vm *m) {
    char mod[256], name[256];
    if (global_line(m, mod, sizeof mod) || global_line(m, name, sizeof name)) return -1;
    for (int g = 0; g < N_GLOBALS; g++)
        if (!strcmp(mod, kGlobals[g].module) && !strcmp(name, kGlobals[g].name)) return op_int(m, g, KB_TPV_GLOBAL);
    return vfail(m, "GLOBAL %s.%s is not allowed (this reader only rebuilds tensors of a state dict)", mod, name);
}

/* ---- memo ---- */

static int op_put(vm *m, int idx_bytes) {
    uint32_t idx;
    if (rd_uint(m, idx_bytes, &idx)) return -1;
    if (idx >= KB_TP_MAX_MEMO) return vfail(m, "memo index %u beyond the limit %u", idx, KB_TP_MAX_MEMO);
    if (m->sp < 1) return vfail(m, "memo put on an empty stack");
    if (idx >= m->memo_cap) {
        uint32_t cap = m->memo_cap ? m->memo_cap : 256;
        while (cap <= idx) cap *= 2;
        kb_tpv **memo = realloc(m->memo, (size_t)cap * sizeof *memo);
        if (!memo) return vfail(m, "out of memory for the memo");
        memset(memo + m->memo_cap, 0, (size_t)(cap - m->memo_cap) * sizeof *memo);
        m->memo = memo;
        m->memo_cap = cap;
    }
    m->memo[idx] = m->stack[m->sp - 1];
    return 0;
}

static int op_get(vm *m, int idx_bytes) {
    uint32_t idx;
    if (rd_uint(m, idx_bytes, &idx)) return -1;
    if (idx >= m->memo_cap || !m->memo[idx]) return vfail(m, "memo slot %u is empty", idx);
    return push(m, m->memo[idx]);
}

/* ---- containers ---- */

static int op_tuple_n(vm *m, int k) {
    kb_tpv *t = newv(m, KB_TPV_TUPLE);
    if (!t || reserve(m, t, k)) return -1;
    for (int i = k - 1; i >= 0; i--) {
        kb_tpv *v = pop(m);
        if (!v) return -1;
        t->items[i] = v;
    }
    t->n = k;
    return push(m, t);
}

static int op_tuple_mark(vm *m) {
    int64_t from = 0;
    if (pop_mark(m, &from)) return -1;
    kb_tpv *t = newv(m, KB_TPV_TUPLE);
    if (!t || collect_to(m, t, from)) return -1;
    return push(m, t);
}

/* APPENDS / SETITEMS: the items after the mark go into the container just below it. */
static int op_extend(vm *m, kb_tpv_kind want) {
    int64_t from = 0;
    if (pop_mark(m, &from)) return -1;
    if (from - 1 < fence(m) || from < 1) return vfail(m, "stack underflow (no container below the MARK)");
    kb_tpv *c = m->stack[from - 1];
    if (c->kind != want) return vfail(m, "%s on a value that is not a %s", want == KB_TPV_LIST ? "APPENDS" : "SETITEMS",
                                      want == KB_TPV_LIST ? "list" : "dict");
    if (want == KB_TPV_DICT && (m->sp - from) % 2) return vfail(m, "SETITEMS with an odd number of items");
    return collect_to(m, c, from);
}

static int op_append(vm *m) {
    kb_tpv *v = pop(m), *list = v ? top(m) : NULL;
    if (!list) return -1;
    if (list->kind != KB_TPV_LIST) return vfail(m, "APPEND to a value that is not a list");
    if (reserve(m, list, 1)) return -1;
    list->items[list->n++] = v;
    return 0;
}

static int op_setitem(vm *m) {
    kb_tpv *v = pop(m), *k = v ? pop(m) : NULL, *d = k ? top(m) : NULL;
    if (!d) return -1;
    if (d->kind != KB_TPV_DICT) return vfail(m, "SETITEM on a value that is not a dict");
    if (reserve(m, d, 2)) return -1;
    d->items[d->n++] = k;
    d->items[d->n++] = v;
    return 0;
}

/* ---- storages and tensors ---- */

static int is_str(const kb_tpv *v, const char *s) { return v->kind == KB_TPV_STR && !strcmp(v->s, s); }

static int add_storage(vm *m, const char *key, kb_dtype dt, int64_t numel) {
    kb_tp_file *f = m->f;
    if (f->nstorages >= KB_TP_MAX_ENTRIES) return vfail(m, "more than %d storages", KB_TP_MAX_ENTRIES);
    if (f->nstorages == f->storages_cap) {
        int cap = f->storages_cap ? f->storages_cap * 2 : 64;
        kb_tp_storage *s = realloc(f->storages, (size_t)cap * sizeof *s);
        if (!s) return vfail(m, "out of memory for the storage table");
        f->storages = s;
        f->storages_cap = cap;
    }
    f->storages[f->nstorages] = (kb_tp_storage){.key = key, .dtype = dt, .numel = numel, .data = NULL};
    if (kb_tp_map_put(&f->storage_index, key, f->nstorages)) return vfail(m, "out of memory for the storage index");
    return f->nstorages++;
}

/* BINPERSID: ('storage', <XStorage>, key, location, numel[, None]). */
static int op_persid(vm *m) {
    kb_tpv *pid = pop(m);
    if (!pid) return -1;
    if (pid->kind != KB_TPV_TUPLE || (pid->n != 5 && pid->n != 6) || !is_str(pid->items[0], "storage"))
        return vfail(m, "persistent id is not ('storage', type, key, location, numel[, view])");
    kb_tpv **a = pid->items;
    if (a[1]->kind != KB_TPV_GLOBAL || a[1]->i < G_FIRST_STORAGE)
        return vfail(m, "persistent id: second item is not an allowed storage type");
    if (a[2]->kind != KB_TPV_STR || a[3]->kind != KB_TPV_STR || a[4]->kind != KB_TPV_INT)
        return vfail(m, "persistent id: key/location must be strings and numel an int");
    if (pid->n == 6 && a[5]->kind != KB_TPV_NONE) return vfail(m, "storage views are not supported (storage '%s')", a[2]->s);
    kb_dtype dt = kGlobals[a[1]->i].dtype;
    int64_t numel = a[4]->i;
    if (numel < 0 || numel > ((int64_t)1 << 40)) return vfail(m, "storage '%s' has %lld elements", a[2]->s, (long long)numel);
    int idx = kb_tp_map_get(&m->f->storage_index, a[2]->s);
    if (idx < 0) {
        idx = add_storage(m, a[2]->s, dt, numel);
        if (idx < 0) return -1;
    } else if (m->f->storages[idx].dtype != dt || m->f->storages[idx].numel != numel) {
        return vfail(m, "storage '%s' referenced with two different types or sizes", a[2]->s);
    }
    return op_int(m, idx, KB_TPV_STORAGE);
}

/* backward_hooks / metadata arguments: None or an empty dict. */
static int empty_or_none(const kb_tpv *v) { return v->kind == KB_TPV_NONE || (v->kind == KB_TPV_DICT && v->n == 0); }

static int int_tuple(const kb_tpv *v, int64_t *out, int *n) {
    if (v->kind != KB_TPV_TUPLE || v->n > KB_MAX_DIMS) return -1;
    for (int64_t i = 0; i < v->n; i++) {
        if (v->items[i]->kind != KB_TPV_INT || v->items[i]->i < 0) return -1;
        out[i] = v->items[i]->i;
    }
    *n = (int)v->n;
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static int rebuild_tensor(vm *m, const kb_tpv *args) {
    if (args->n != 6 && args->n != 7) return vfail(m, "_rebuild_tensor_v2 with %lld arguments", (long long)args->n);
    kb_tpv *const *a = args->items;
    kb_tp_tensor t = {0};
    int nst = -1;
    if (a[0]->kind != KB_TPV_STORAGE || a[1]->kind != KB_TPV_INT || a[1]->i < 0 || int_tuple(a[2], t.shape, &t.ndim) ||
        int_tuple(a[3], t.stride, &nst) || nst != t.ndim || a[4]->kind != KB_TPV_BOOL || !empty_or_none(a[5]) ||
        (args->n == 7 && !empty_or_none(a[6])))
        return vfail(m, "_rebuild_tensor_v2: arguments are not (storage, offset, size, stride, bool, hooks)");
    t.storage = (int)a[0]->i;
    t.dtype = m->f->storages[t.storage].dtype;
    t.offset = a[1]->i;
    t.numel = 1;
    for (int d = 0; d < t.ndim; d++)
        if (__builtin_mul_overflow(t.numel, t.shape[d], &t.numel) || t.numel > ((int64_t)1 << 40))
            return vfail(m, "_rebuild_tensor_v2: size overflows");
    kb_tp_file *f = m->f;
    if (f->nrebuilt >= KB_TP_MAX_ENTRIES) return vfail(m, "more than %d tensors", KB_TP_MAX_ENTRIES);
    if (f->nrebuilt == f->rebuilt_cap) {
        int cap = f->rebuilt_cap ? f->rebuilt_cap * 2 : 64;
        kb_tp_tensor *r = realloc(f->rebuilt, (size_t)cap * sizeof *r);
        if (!r) return vfail(m, "out of memory for the tensor table");
        f->rebuilt = r;
        f->rebuilt_cap = cap;
    }
    f->rebuilt[f->nrebuilt] = t;
    return op_int(m, f->nrebuilt++, KB_TPV_TENSOR);
}

static int op_reduce(vm *m) {
    kb_tpv *args = pop(m), *fn = args ? pop(m) : NULL;
    if (!fn) return -1;
    if (fn->kind != KB_TPV_GLOBAL || args->kind != KB_TPV_TUPLE) return vfail(m, "REDUCE needs an allowed callable and a tuple");
    switch (fn->i) {
    case G_ORDERED_DICT: {
        if (args->n) return vfail(m, "OrderedDict() with arguments");
        kb_tpv *d = newv(m, KB_TPV_DICT);
        if (!d) return -1;
        d->ordered = 1;
        return push(m, d);
    }
    case G_REBUILD_TENSOR_V2: return rebuild_tensor(m, args);
    case G_REBUILD_PARAMETER: /* (tensor, requires_grad, hooks): the tensor itself */
        if (args->n != 3 || args->items[0]->kind != KB_TPV_TENSOR || args->items[1]->kind != KB_TPV_BOOL ||
            !empty_or_none(args->items[2]))
            return vfail(m, "_rebuild_parameter: arguments are not (tensor, bool, hooks)");
        return push(m, args->items[0]);
    default: return vfail(m, "REDUCE of %s.%s, which is not callable", kGlobals[fn->i].module, kGlobals[fn->i].name);
    }
}

/* BUILD: only an OrderedDict's attribute dict (state_dict()._metadata), dropped. */
static int op_build(vm *m) {
    kb_tpv *state = pop(m), *obj = state ? top(m) : NULL;
    if (!obj) return -1;
    if (obj->kind != KB_TPV_DICT || !obj->ordered || (state->kind != KB_TPV_DICT && state->kind != KB_TPV_NONE))
        return vfail(m, "BUILD is only accepted for an OrderedDict's attributes");
    return 0;
}

/* ---- the loop ---- */

static int op_proto(vm *m) {
    uint32_t v;
    if (rd_uint(m, 1, &v)) return -1;
    if (v != 2) return vfail(m, "pickle protocol %u (only protocol 2, torch.save's default, is accepted)", v);
    return 0;
}

static int op_const(vm *m, kb_tpv_kind kind, int64_t value) { return op_int(m, value, kind); }

static int op_uint(vm *m, int bytes, int is_signed) {
    uint32_t u;
    if (rd_uint(m, bytes, &u)) return -1;
    int64_t v = is_signed ? (int64_t)(int32_t)u : (int64_t)u;
    return op_int(m, v, KB_TPV_INT);
}

static int op_mark(vm *m) {
    if (m->nmarks >= KB_TP_MAX_MARKS) return vfail(m, "MARKs nested deeper than %d", KB_TP_MAX_MARKS);
    m->marks[m->nmarks++] = m->sp;
    return 0;
}

static int step(vm *m, uint8_t op) {
    switch (op) {
    case 0x80: return op_proto(m);
    case '(': return op_mark(m);
    case '}': return push(m, newv(m, KB_TPV_DICT));
    case ']': return push(m, newv(m, KB_TPV_LIST));
    case ')': return push(m, newv(m, KB_TPV_TUPLE));
    case 't': return op_tuple_mark(m);
    case 0x85: return op_tuple_n(m, 1);
    case 0x86: return op_tuple_n(m, 2);
    case 0x87: return op_tuple_n(m, 3);
    case 'a': return op_append(m);
    case 'e': return op_extend(m, KB_TPV_LIST);
    case 's': return op_setitem(m);
    case 'u': return op_extend(m, KB_TPV_DICT);
    case 'q': return op_put(m, 1);
    case 'r': return op_put(m, 4);
    case 'h': return op_get(m, 1);
    case 'j': return op_get(m, 4);
    case 'J': return op_uint(m, 4, 1);
    case 'K': return op_uint(m, 1, 0);
    case 'M': return op_uint(m, 2, 0);
    case 0x8a: return op_long1(m);
    case 'G': return op_binfloat(m);
    case 'X': return op_string(m, 4, 0);
    case 'U': return op_string(m, 1, 0);
    case 'T': return op_string(m, 4, 1);
    case 'N': return op_const(m, KB_TPV_NONE, 0);
    case 0x88: return op_const(m, KB_TPV_BOOL, 1);
    case 0x89: return op_const(m, KB_TPV_BOOL, 0);
    case 'c': return op_global(m);
    case 'R': return op_reduce(m);
    case 'b': return op_build(m);
    case 'Q': return op_persid(m);
    default:
        if (op >= 0x20 && op < 0x7f) return vfail(m, "opcode 0x%02x ('%c') is not accepted", op, op);
        return vfail(m, "opcode 0x%02x is not accepted", op);
    }
}

int kb_tp_run(kb_tp_file *f, const uint8_t *buf, size_t n, size_t *pos, size_t buf_base, kb_tpv **out, kb_err *err) {
    vm m = {.f = f, .buf = buf, .n = n, .pos = *pos, .base = buf_base, .err = err};
    int rc = -1;
    for (;;) {
        m.op_pos = m.pos;
        if (m.pos >= m.n) {
            vfail(&m, "the pickle ends without STOP (file truncated?)");
            break;
        }
        uint8_t op = m.buf[m.pos++];
        if (op == '.') {
            if (m.sp != 1 || m.nmarks) {
                vfail(&m, "STOP with %lld values and %d marks on the stack (want 1 and 0)", (long long)m.sp, m.nmarks);
                break;
            }
            *out = m.stack[0];
            *pos = m.pos;
            rc = 0;
            break;
        }
        if (step(&m, op)) break;
    }
    free(m.stack);
    free(m.memo);
    return rc;
}

/* ------------------------------------------------------------------ state dict */

int kb_tp_collect(kb_tp_file *f, const kb_tpv *root, kb_err *err) {
    if (root->kind != KB_TPV_DICT) return kb_fail(err, "%s: the pickled object is not a dict (state dict expected)", f->label);
    int64_t n = root->n / 2;
    if (n > KB_TP_MAX_ENTRIES) return kb_fail(err, "%s: %lld entries (limit %d)", f->label, (long long)n, KB_TP_MAX_ENTRIES);
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) return kb_fail(err, "%s: out of memory", f->label);
    for (int64_t i = 0; i < n; i++) {
        const kb_tpv *k = root->items[2 * i], *v = root->items[2 * i + 1];
        if (k->kind != KB_TPV_STR) return kb_fail(err, "%s: state-dict entry %lld has a key that is not a string", f->label, (long long)i);
        if (v->kind != KB_TPV_TENSOR) return kb_fail(err, "%s: state-dict entry '%s' is not a tensor", f->label, k->s);
        if (kb_tp_map_get(&f->name_index, k->s) >= 0) return kb_fail(err, "%s: state-dict entry '%s' appears twice", f->label, k->s);
        f->tensors[f->ntensors] = f->rebuilt[v->i];
        f->tensors[f->ntensors].name = k->s;
        if (kb_tp_map_put(&f->name_index, k->s, f->ntensors)) return kb_fail(err, "%s: out of memory", f->label);
        f->ntensors++;
    }
    return 0;
}

int kb_tp_check_extents(kb_tp_file *f, kb_err *err) {
    for (int i = 0; i < f->ntensors; i++) {
        const kb_tp_tensor *t = &f->tensors[i];
        if (t->numel == 0) continue;
        int64_t last = t->offset, step;
        for (int d = 0; d < t->ndim; d++)
            if (__builtin_mul_overflow(t->shape[d] - 1, t->stride[d], &step) || __builtin_add_overflow(last, step, &last))
                return kb_fail(err, "%s: tensor '%s': strides overflow", f->label, t->name);
        const kb_tp_storage *s = &f->storages[t->storage];
        if (last >= s->numel)
            return kb_fail(err, "%s: tensor '%s' reaches element %lld of storage '%s', which has %lld", f->label,
                           t->name, (long long)last, s->key, (long long)s->numel);
    }
    return 0;
}
