/* Fuzzing the safe PyTorch checkpoint reader in-process: thousands of
 * mutated and truncated versions of valid files (torch 1.13's legacy and zip
 * files of a small state dict from the fixture, and a hand-made legacy file)
 * must each give a clean error (a non-empty message) or a valid result whose
 * tensors can all be read — never a crash, a hang or a leak (run it under
 * ASan/UBSan too: see docs/inception.md).
 *
 * Mutations, from a fixed-seed xorshift generator (reproducible):
 *   - truncation at every length, for each base file;
 *   - 1-4 random byte overwrites;
 *   - insertion of a random opcode byte (with 0-8 random argument bytes);
 *   - deletion of a random run of bytes;
 *   - duplication of a random run (spliced back in);
 *   - a 2-, 4- or 8-byte field set to an extreme value (tests/kbfuzz.h);
 *   - targeted: known opcodes' argument bytes set to extremes (lengths, memo
 *     indices) at random opcode positions.
 * Each mutant is parsed both normally and in header-only mode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbfuzz.h"
#include "kbtest.h"
#include "metrics/torch_pickle.h"
#include "test_torch_pickle.h"
#include "util/fileio.h"

static kbf_rng g_rng = {0x2545F4914F6CDD1DULL};

static uint32_t rnd(uint32_t n) { return kbf_rnd(&g_rng, n); }

typedef struct {
    long runs, ok, errors, bad_messages, tensors_read;
} tally;

/* Parses one mutant; a success must have readable float tensors. */
static void run_one(const uint8_t *data, size_t n, int flags, tally *t) {
    kb_err err = {0};
    t->runs++;
    kb_tp_file *f = kb_tp_open_mem(data, n, "mutant", flags, &err);
    if (!f) {
        t->errors++;
        if (!err.msg[0]) t->bad_messages++;
        return;
    }
    t->ok++;
    for (int i = 0; i < kb_tp_count(f); i++) {
        const kb_tp_tensor *tt = kb_tp_at(f, i);
        if (tt->dtype != KB_F32 || tt->numel > (1 << 20)) continue;
        float *buf = malloc(sizeof(float) * (size_t)(tt->numel ? tt->numel : 1));
        if (kb_tp_read_f32(f, tt->name, -1, NULL, buf, (size_t)tt->numel, &err) == 0) t->tensors_read++;
        else if (!err.msg[0]) t->bad_messages++;
        free(buf);
    }
    kb_tp_close(f);
}

static void run_both(const uint8_t *data, size_t n, tally *t) {
    run_one(data, n, 0, t);
    run_one(data, n, KB_TP_HEADER_ONLY, t);
}

static const uint8_t kOpcodes[] = {'(', '.', 'J', 'K', 'M', 'N', 'Q', 'R', 'T', 'U', 'X', 'a', 'b', 'c', '}', 'e', 'h', 'j',
                                   ']', 'q', 'r', 's', 't', ')', 'u', 'G', 0x80, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, '0',
                                   '1', '2', 'I', 'L', 'S', 'V', 'F', 'i', 'o', 'p', 'g', 0x81, 0x8c, 0x8e, 0x93, 0x94, 0x95};

static uint8_t *mutate(const uint8_t *src, size_t n, size_t *out_n) {
    uint8_t *m = malloc(n + KBF_SLACK);
    memcpy(m, src, n);
    size_t len = n;
    switch (rnd(6)) {
    case 0: kbf_overwrite(&g_rng, m, &len, 0); break;
    case 1: { /* insert an opcode and 0-8 argument bytes */
        size_t at = rnd((uint32_t)len + 1), add = 1 + rnd(9);
        memmove(m + at + add, m + at, len - at);
        m[at] = kOpcodes[rnd(sizeof kOpcodes)];
        for (size_t i = 1; i < add; i++) m[at + i] = (uint8_t)(rnd(3) ? rnd(256) : 0xff);
        len += add;
        break;
    }
    case 2: kbf_delete_run(&g_rng, m, &len, 0); break;
    case 3: kbf_duplicate_run(&g_rng, m, &len, 0); break;
    case 4: kbf_extreme_field(&g_rng, m, &len, 0); break;
    default: { /* extreme argument after a random 'X', 'j', 'r', 'K', 'M', 'J' */
        for (int tries = 0; tries < 64; tries++) {
            size_t at = rnd((uint32_t)len);
            if (strchr("XjrJMKTh", m[at]) && m[at] && at + 4 < len) {
                static const uint8_t ext[4][4] = {{0xff, 0xff, 0xff, 0xff}, {0xff, 0xff, 0xff, 0x7f}, {0, 0, 0, 0x80}, {0, 0, 0, 0}};
                memcpy(m + at + 1, ext[rnd(4)], 4);
                break;
            }
        }
    }
    }
    *out_n = len;
    return m;
}

static void fuzz_base(kbt_state *st, const char *label, const uint8_t *base, size_t n, int mutants) {
    tally t = {0};
    for (size_t len = 0; len <= n; len++) run_both(base, len, &t); /* every truncation */
    long trunc_ok = t.ok;
    for (int i = 0; i < mutants; i++) {
        size_t mn;
        uint8_t *m = mutate(base, n, &mn);
        if (rnd(4) == 0) { /* mutate twice */
            size_t m2n;
            uint8_t *m2 = mutate(m, mn, &m2n);
            free(m);
            m = m2, mn = m2n;
        }
        run_both(m, mn, &t);
        free(m);
    }
    char name[160];
    snprintf(name, sizeof name, "%s: %zu truncations + %d mutants, each twice: no crash, every error has a message", label,
             n + 1, mutants);
    KBT_CHECK(st, t.bad_messages == 0, name, "%ld errors without a message", t.bad_messages);
    printf("     %s: %ld parses, %ld accepted (%ld of them truncations, header-only), %ld rejected, %ld tensors read\n",
           label, t.runs, t.ok, trunc_ok, t.errors, t.tensors_read);
}

static uint8_t *load(const char *name, size_t *n) {
    char path[4096];
    const char *d = getenv("KB_FIXTURES");
    snprintf(path, sizeof path, "%s/%s", d ? d : ".", name);
    uint8_t *data;
    kb_err err;
    if (kb_read_file(path, &data, n, &err)) {
        printf("FAIL %s\n", err.msg);
        return NULL;
    }
    return data;
}

int main(int argc, char **argv) {
    kbt_state st = {0};
    /* test_torch_pickle_fuzz [mutants [seed]] (see kbf_rng_seeded) */
    int mutants = argc > 1 ? atoi(argv[1]) : 3000;
    g_rng = kbf_rng_seeded(g_rng.state, argc > 2 ? strtoull(argv[2], NULL, 0) : 0);
    size_t n;
    uint8_t *legacy = load("tp_small_legacy.pth", &n);
    if (legacy) fuzz_base(&st, "torch 1.13 legacy file", legacy, n, mutants);
    free(legacy);
    uint8_t *zip = load("tp_small_zip.pth", &n);
    if (zip) fuzz_base(&st, "torch 1.13 zip file", zip, n, mutants / 3);
    free(zip);
    tp_buf hand = tb_valid_file();
    fuzz_base(&st, "hand-made legacy file", hand.p, hand.n, mutants);
    free(hand.p);
    KBT_CHECK(&st, legacy && zip, "fixture files present", "missing tp_small_*.pth");
    return kbt_finish(&st);
}
