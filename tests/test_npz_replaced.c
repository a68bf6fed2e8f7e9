/* A features-cache entry replaced while it is read: `eval` writes the entry
 * atomically (temp file, rename), and two evals of one reference at once
 * (other --threads or --batch: the same images, other low bits) both write
 * it. A reader must get one whole entry: kb_evalset_read_npz opened the file
 * once per array, so mu could come from one entry and sigma, pool or logits
 * from the other. Here a child process renames two entries onto one path in
 * a loop while the parent reads it; every read must be all of A or all of B.
 * (The old code mixed them within a few hundred reads on 2 cores.) */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "metrics/refstats.h"
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
    unlink(a), unlink(b), unlink(path), unlink(tmp), rmdir(dir);
    printf("%d passed, %d failed\n", st.passed, st.failed);
    return st.failed ? 1 : 0;
}
