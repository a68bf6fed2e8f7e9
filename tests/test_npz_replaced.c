/* A features-cache entry replaced while it is read: `eval` writes the entry
 * atomically (temp file, rename), and two evals of one reference at once
 * (other --threads or --batch: the same images, other low bits) both write
 * it. A reader must get one whole entry: kb_evalset_read_npz opened the file
 * once per array, so mu could come from one entry and sigma, pool or logits
 * from the other. Here a child process renames two entries onto one path in
 * a loop while the parent reads it; every read must be all of A or all of B.
 * (The old code mixed them within a few hundred reads on 2 cores.)
 * The same for an `eval` input: an ADM batch (arr_0) probed, hashed (the
 * features cache key) and loaded while `sample` renames a new batch onto
 * it; the hash and the images must be of one file (kb_image_input opened the
 * path three times: a cache entry could hold one batch's features under the
 * other's hash). */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "metrics/eval_input.h"
#include "metrics/refstats.h"
#include "util/npy.h"
#include "util/sha256.h"
#include "tests/kbtest.h"

#define N_ROWS 512
#define DIM 64
#define LOGITS 16

/* An entry whose every number is v (pool and logits rows, mu, sigma's diagonal), source "v". */
static int write_entry(const char *path, double v, kb_err *err) {
    kb_evalset s;
    kb_evalset_init(&s, "reference", path);
    s.feat.n = N_ROWS, s.feat.pool_dim = DIM, s.feat.logits_dim = LOGITS;
    s.feat.pool = malloc(sizeof(float) * N_ROWS * DIM);
    s.feat.logits = malloc(sizeof(float) * N_ROWS * LOGITS);
    int rc = !s.feat.pool || !s.feat.logits ? kb_fail(err, "out of memory") : kb_gstats_alloc(&s.pool_stats, DIM, err);
    if (!rc) {
        for (int i = 0; i < N_ROWS * DIM; i++) s.feat.pool[i] = (float)v;
        for (int i = 0; i < N_ROWS * LOGITS; i++) s.feat.logits[i] = (float)v;
        for (int i = 0; i < DIM; i++) s.pool_stats.mu[i] = v, s.pool_stats.sigma[i * DIM + i] = v;
        s.has_pool_stats = 1;
        snprintf(s.meta.source, sizeof s.meta.source, "%g", v);
        rc = kb_evalset_write_npz(path, &s, 1, NULL, err);
    }
    kb_evalset_free(&s);
    return rc;
}

/* The child: renames links to a and b onto path, turn about, until killed
 * (tmp is unlinked after each: a rename between two links to one file does
 * nothing and leaves it). */
static void replace_forever(const char *a, const char *b, const char *path, const char *tmp) {
    for (;;)
        for (int k = 0; k < 2; k++) {
            if (link(k ? b : a, tmp) == 0) (void)rename(tmp, path);
            unlink(tmp);
        }
}

/* 1 when every number read is the one of mu[0], and the source names it too. */
static int one_entry(const kb_evalset *s) {
    double v = s->pool_stats.mu[0];
    char src[32];
    snprintf(src, sizeof src, "%g", v);
    if (strcmp(s->meta.source, src) || s->pool_stats.sigma[0] != v || s->feat.pool[0] != (float)v ||
        s->feat.pool[N_ROWS * DIM - 1] != (float)v || s->feat.logits[N_ROWS * LOGITS - 1] != (float)v)
        return 0;
    return 1;
}

#define BATCH 64
#define SIDE 32

/* An ADM batch of BATCH uint8 SIDExSIDE RGB images, every byte v. */
static int write_batch(const char *path, uint8_t v, kb_err *err) {
    static uint8_t px[BATCH * SIDE * SIDE * 3];
    memset(px, v, sizeof px);
    int64_t shape[4] = {BATCH, SIDE, SIDE, 3};
    kb_npz_entry e = {"arr_0", kb_npy_view(KB_U8, 4, shape, px)};
    return kb_npz_write(path, &e, 1, err);
}

/* Probe, hash and load path as `eval` does; which batch (10 or 20) the
 * images are and which the hash is: 0 for neither, -1 on failure. */
static int read_input(const char *path, const char hex_a[65], const char hex_b[65], int *images, int *hash,
                      kb_err *err) {
    kb_image_input in;
    char hex[65];
    if (kb_image_input_probe(path, NULL, 1, &in, err)) return -1;
    int rc = kb_image_input_hash(&in, hex, err) || kb_image_input_load_data(&in, err) ? -1 : 0;
    if (!rc) {
        const uint8_t *px = in.arr.data;
        size_t n = (size_t)BATCH * SIDE * SIDE * 3;
        *images = px[0] == px[n - 1] && (px[0] == 10 || px[0] == 20) ? px[0] : 0;
        *hash = !strcmp(hex, hex_a) ? 10 : !strcmp(hex, hex_b) ? 20 : 0;
    }
    kb_image_input_close(&in);
    return rc;
}

static int file_hex(const char *path, char hex[65], kb_err *err) {
    uint8_t dg[32];
    if (kb_sha256_file(path, dg, err)) return -1;
    kb_sha256_hex(dg, hex);
    return 0;
}

static void check_eval_input(kbt_state *st, const char *dir) {
    kb_err err = {0};
    char a[64], b[64], path[64], tmp[64], hex_a[65], hex_b[65];
    snprintf(a, sizeof a, "%s/batch_a.npz", dir), snprintf(b, sizeof b, "%s/batch_b.npz", dir);
    snprintf(path, sizeof path, "%s/samples.npz", dir), snprintf(tmp, sizeof tmp, "%s/samples.npz.tmp", dir);
    if (write_batch(a, 10, &err) || write_batch(b, 20, &err) || file_hex(a, hex_a, &err) ||
        file_hex(b, hex_b, &err) || link(a, path) != 0) {
        KBT_CHECK(st, 0, "write the batches", "%s", err.msg);
        return;
    }
    pid_t child = fork();
    if (child == 0) replace_forever(a, b, path, tmp);
    int reads = 0, mixed = 0, failed = 0, seen[2] = {0, 0};
    char first_bad[1100] = "";
    for (int k = 0; k < 300; k++) {
        int images = 0, hash = 0;
        if (read_input(path, hex_a, hex_b, &images, &hash, &err)) {
            if (!failed++) snprintf(first_bad, sizeof first_bad, "%s", err.msg);
            continue;
        }
        reads++;
        if (!images || images != hash) {
            if (!mixed++) snprintf(first_bad, sizeof first_bad, "images of batch %d, hash of batch %d", images, hash);
        } else seen[images == 20]++;
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    KBT_CHECK(st, reads > 0 && mixed == 0 && failed == 0,
              "an eval input replaced meanwhile: its hash and its images are of one batch",
              "%d reads: %d mixed two batches, %d failed; first: %s", reads, mixed, failed, first_bad);
    KBT_CHECK(st, seen[0] > 0 && seen[1] > 0, "the batch was replaced while it was read (both were read)",
              "%d reads of A, %d of B", seen[0], seen[1]);
    printf("     (%d reads: %d of A, %d of B)\n", reads, seen[0], seen[1]);
    unlink(a), unlink(b), unlink(path), unlink(tmp);
}

int main(void) {
    kbt_state st = {0, 0};
    kb_err err = {0};
    char dir[] = "/tmp/kb_npz_replaced.XXXXXX", a[64], b[64], path[64], tmp[64];
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    snprintf(a, sizeof a, "%s/a.npz", dir), snprintf(b, sizeof b, "%s/b.npz", dir);
    snprintf(path, sizeof path, "%s/entry.npz", dir), snprintf(tmp, sizeof tmp, "%s/entry.npz.tmp", dir);
    if (write_entry(a, 1.0, &err) || write_entry(b, 2.0, &err) || link(a, path) != 0) {
        printf("FAIL cannot write the entries: %s\n", err.msg);
        return 1;
    }
    pid_t child = fork();
    if (child == 0) replace_forever(a, b, path, tmp);
    int reads = 0, mixed = 0, failed = 0, seen[3] = {0, 0, 0};
    char first_bad[1100] = "";
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    t = t0;
    do { /* 600 reads or 10 s, whichever comes first */
        kb_evalset s;
        kb_evalset_init(&s, "reference", path);
        if (kb_evalset_read_npz(path, 1, &s, &err)) {
            if (!failed++) snprintf(first_bad, sizeof first_bad, "%s", err.msg);
            continue;
        }
        reads++;
        if (!one_entry(&s)) {
            if (!mixed++)
                snprintf(first_bad, sizeof first_bad, "mu %g, sigma %g, pool %g, logits %g, source %s", s.pool_stats.mu[0],
                         s.pool_stats.sigma[0], s.feat.pool[0], s.feat.logits[0], s.meta.source);
        } else seen[(int)s.pool_stats.mu[0]]++;
        kb_evalset_free(&s);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (reads + failed < 600 && (t.tv_sec - t0.tv_sec) < 10);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    KBT_CHECK(&st, reads > 0 && mixed == 0 && failed == 0, "every read of an entry replaced meanwhile is one whole entry",
              "%d reads: %d mixed two entries, %d failed; first: %s", reads, mixed, failed, first_bad);
    KBT_CHECK(&st, seen[1] > 0 && seen[2] > 0, "the entry was replaced while it was read (both were read)",
              "%d reads of A, %d of B", seen[1], seen[2]);
    printf("     (%d reads: %d of A, %d of B)\n", reads, seen[1], seen[2]);
    unlink(a), unlink(b), unlink(path), unlink(tmp);
    check_eval_input(&st, dir);
    rmdir(dir);
    printf("%d passed, %d failed\n", st.passed, st.failed);
    return st.failed ? 1 : 0;
}
