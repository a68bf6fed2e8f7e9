/* Mutation fuzzing for the readers' tests: a fixed-seed xorshift generator
 * (reproducible runs) and the format-blind mutations that every reader's
 * fuzz test applies to its valid files. Format-aware mutations (pickle
 * opcodes, ...) stay in the test that knows the format. */
#ifndef KB_FUZZ_H
#define KB_FUZZ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t state;
} kbf_rng;

/* A test's default stream (seed 0) or another one, so that a longer hunt than
 * ctest's can take other seeds: `test_..._fuzz MUTANTS SEED`. */
static inline kbf_rng kbf_rng_seeded(uint64_t base, unsigned long long seed) {
    kbf_rng r = {base ^ (uint64_t)seed * 0xD1B54A32D192ED03ULL};
    if (!r.state) r.state = base; /* xorshift's one fixed point */
    return r;
}

/* Uniform in [0, n); 0 when n is 0. */
static inline uint32_t kbf_rnd(kbf_rng *r, uint32_t n) {
    r->state ^= r->state << 13, r->state ^= r->state >> 7, r->state ^= r->state << 17;
    return n ? (uint32_t)((r->state >> 11) % n) : 0;
}

/* A position in [0, len): with probability 3/4 inside the first `focus`
 * bytes (where headers are: mutating bulk data mostly tests checksums). */
static inline size_t kbf_pos(kbf_rng *r, size_t len, size_t focus) {
    if (focus && focus < len && kbf_rnd(r, 4)) return kbf_rnd(r, (uint32_t)focus);
    return kbf_rnd(r, (uint32_t)len);
}

/* The mutations below work in place on m[*len], which has room for
 * KBF_SLACK more bytes than the file they were given. */
#define KBF_SLACK 64

static inline void kbf_overwrite(kbf_rng *r, uint8_t *m, size_t *len, size_t focus) {
    for (int k = 1 + (int)kbf_rnd(r, 4); k > 0 && *len; k--) m[kbf_pos(r, *len, focus)] = (uint8_t)kbf_rnd(r, 256);
}

static inline void kbf_delete_run(kbf_rng *r, uint8_t *m, size_t *len, size_t focus) {
    if (!*len) return;
    size_t at = kbf_pos(r, *len, focus), k = 1 + kbf_rnd(r, 16);
    if (at + k > *len) k = *len - at;
    memmove(m + at, m + at + k, *len - at - k);
    *len -= k;
}

/* A run of up to 32 bytes spliced back in after itself. */
static inline void kbf_duplicate_run(kbf_rng *r, uint8_t *m, size_t *len, size_t focus) {
    if (!*len) return;
    size_t at = kbf_pos(r, *len, focus), k = 1 + kbf_rnd(r, 32);
    if (at + k > *len) k = *len - at;
    memmove(m + at + k, m + at, *len - at);
    *len += k;
}

/* 1-8 random bytes inserted (0xff often: large lengths). */
static inline void kbf_insert_bytes(kbf_rng *r, uint8_t *m, size_t *len, size_t focus) {
    size_t at = *len ? kbf_pos(r, *len + 1, focus) : 0, add = 1 + kbf_rnd(r, 8);
    memmove(m + at + add, m + at, *len - at);
    for (size_t i = 0; i < add; i++) m[at + i] = (uint8_t)(kbf_rnd(r, 3) ? kbf_rnd(r, 256) : 0xff);
    *len += add;
}

/* A little-endian 2-, 4- or 8-byte field set to an extreme (all ones, the
 * sign bit, the largest positive, zero): length and offset fields. */
static inline void kbf_extreme_field(kbf_rng *r, uint8_t *m, size_t *len, size_t focus) {
    size_t w = (size_t)2 << kbf_rnd(r, 3);
    if (*len < w) return;
    size_t at = kbf_pos(r, *len - w + 1, focus);
    switch (kbf_rnd(r, 4)) {
    case 0: memset(m + at, 0xff, w); break;
    case 1: memset(m + at, 0, w), m[at + w - 1] = 0x80; break;
    case 2: memset(m + at, 0xff, w), m[at + w - 1] = 0x7f; break;
    default: memset(m + at, 0, w);
    }
}

/* A decimal number in a text header (JSON, a Python dict literal) replaced
 * by one that breaks arithmetic: negative, zero, past 2^32 or 2^63. */
static inline void kbf_number_text(kbf_rng *r, uint8_t *m, size_t *len, size_t focus) {
    static const char *const repl[] = {"-1", "0", "4294967296", "9223372036854775807", "18446744073709551616",
                                       "1e308", "99999999999999999999999", "1.5"};
    for (int tries = 0; tries < 64 && *len; tries++) {
        size_t at = kbf_pos(r, *len, focus);
        if (m[at] < '0' || m[at] > '9') continue;
        size_t end = at;
        while (at > 0 && m[at - 1] >= '0' && m[at - 1] <= '9') at--;
        while (end < *len && m[end] >= '0' && m[end] <= '9') end++;
        const char *s = repl[kbf_rnd(r, sizeof repl / sizeof *repl)];
        size_t k = strlen(s), old = end - at;
        if (k > old + KBF_SLACK / 2) return;
        memmove(m + at + k, m + end, *len - end);
        memcpy(m + at, s, k);
        *len = *len - old + k;
        return;
    }
}

/* One of the mutations above on a copy of src[n] (malloc'd, to free);
 * *out_n gets its length. */
static inline uint8_t *kbf_mutate(kbf_rng *r, const uint8_t *src, size_t n, size_t focus, size_t *out_n) {
    uint8_t *m = malloc(n + KBF_SLACK);
    if (!m) abort();
    memcpy(m, src, n);
    size_t len = n;
    switch (kbf_rnd(r, 6)) {
    case 0: kbf_overwrite(r, m, &len, focus); break;
    case 1: kbf_delete_run(r, m, &len, focus); break;
    case 2: kbf_duplicate_run(r, m, &len, focus); break;
    case 3: kbf_insert_bytes(r, m, &len, focus); break;
    case 4: kbf_extreme_field(r, m, &len, focus); break;
    default: kbf_number_text(r, m, &len, focus);
    }
    *out_n = len;
    return m;
}

#endif
