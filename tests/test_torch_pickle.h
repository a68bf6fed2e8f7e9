/* Helpers shared by tests/test_torch_pickle.c and tests/test_torch_pickle_fuzz.c:
 * building legacy-format checkpoints by hand, byte by byte. */
#ifndef KB_TEST_TORCH_PICKLE_H
#define KB_TEST_TORCH_PICKLE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
} tp_buf;

static inline void tb_put(tp_buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static inline void tb_str(tp_buf *b, const char *s) { tb_put(b, s, strlen(s)); }

/* BINUNICODE s */
static inline void tb_unicode(tp_buf *b, const char *s) {
    uint32_t n = (uint32_t)strlen(s);
    uint8_t h[5] = {'X', (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    tb_put(b, h, 5);
    tb_put(b, s, n);
}

/* The legacy preamble: magic number, protocol version 1001, an empty sys_info. */
static inline void tb_preamble(tp_buf *b) {
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    static const uint8_t version[] = {0x80, 0x02, 'M', 0xe9, 0x03, '.'};
    tb_put(b, magic, sizeof magic);
    tb_put(b, version, sizeof version);
    tb_str(b, "\x80\x02}.");
}

/* A state-dict pickle {"t": tensor} over FloatStorage '0' of `numel`
 * elements, with the given size/stride tuples (2-D) and storage offset. */
static inline void tb_tensor_dict(tp_buf *b, int numel, int offset, int s0, int s1, int st0, int st1) {
    uint8_t k[2] = {'K', 0};
    tb_str(b, "\x80\x02}(");
    tb_unicode(b, "t");
    tb_str(b, "ctorch._utils\n_rebuild_tensor_v2\n((");
    tb_unicode(b, "storage");
    tb_str(b, "ctorch\nFloatStorage\n");
    tb_unicode(b, "0");
    tb_unicode(b, "cpu");
    k[1] = (uint8_t)numel, tb_put(b, k, 2);
    tb_str(b, "NtQ");
    k[1] = (uint8_t)offset, tb_put(b, k, 2);
    k[1] = (uint8_t)s0, tb_put(b, k, 2);
    k[1] = (uint8_t)s1, tb_put(b, k, 2);
    tb_str(b, "\x86");
    k[1] = (uint8_t)st0, tb_put(b, k, 2);
    k[1] = (uint8_t)st1, tb_put(b, k, 2);
    tb_str(b, "\x86\x89NtRu.");
}

/* The storage-key list ['0'] and storage '0': int64 count + floats 0, 1, 2, ... */
static inline void tb_keys_and_data(tp_buf *b, int numel) {
    tb_str(b, "\x80\x02](");
    tb_unicode(b, "0");
    tb_str(b, "e.");
    int64_t n = numel;
    tb_put(b, &n, 8);
    for (int i = 0; i < numel; i++) {
        float v = (float)i;
        tb_put(b, &v, 4);
    }
}

/* A complete valid file: t = [[0, 1], [2, 3], [4, 5]] (a 3x2 view of 6 floats). */
static inline tp_buf tb_valid_file(void) {
    tp_buf b = {0};
    tb_preamble(&b);
    tb_tensor_dict(&b, 6, 0, 3, 2, 2, 1);
    tb_keys_and_data(&b, 6);
    return b;
}

#endif
