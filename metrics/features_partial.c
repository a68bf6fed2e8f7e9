/* Resumable featurisation files (see features_partial.h). */
#define _POSIX_C_SOURCE 200809L
#include "metrics/features_partial.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/source.h" /* kb_list_dir */
#include "util/fileio.h"

#define PARTIAL_MAGIC "KBFPART1"
#define PARTIAL_HEADER 512

static size_t row_floats(const kb_fpartial *pf) { return (size_t)(pf->dims[0] + pf->dims[1] + pf->dims[2]); }

/* The header: magic, then the text line, NUL-padded. */
static void make_header(char out[PARTIAL_HEADER], const char *tag, int64_t n, int batch, const int64_t dims[3]) {
    memset(out, 0, PARTIAL_HEADER);
    memcpy(out, PARTIAL_MAGIC, 8);
    snprintf(out + 8, PARTIAL_HEADER - 8, "n=%lld batch=%d pool=%lld spatial=%lld logits=%lld tag=%.400s\n",
             (long long)n, batch, (long long)dims[0], (long long)dims[1], (long long)dims[2], tag);
}

/* Reads the whole batches of an existing file of this header into the
 * arrays; returns the rows read (0 when the file is not of this header). */
static int64_t read_rows(kb_fpartial *pf, const char *header, int64_t n, int batch, float *out[3]) {
    char have[PARTIAL_HEADER];
    struct stat st;
    if (fread(have, 1, PARTIAL_HEADER, pf->fp) != PARTIAL_HEADER || memcmp(have, header, PARTIAL_HEADER) ||
        fstat(fileno(pf->fp), &st) != 0)
        return 0;
    size_t row = row_floats(pf) * sizeof(float);
    int64_t rows = row ? (int64_t)(((uint64_t)st.st_size - PARTIAL_HEADER) / row) : 0;
    if (rows > n) rows = n;
    if (rows < n) rows -= rows % batch; /* a batch cut short by a kill is done again */
    float *rec = malloc(row ? row : 1);
    if (!rec) return 0;
    for (int64_t i = 0; i < rows; i++) {
        if (fread(rec, 1, row, pf->fp) != row) return free(rec), 0;
        for (int d = 0, at = 0; d < 3; at += (int)pf->dims[d], d++)
            if (pf->dims[d]) memcpy(out[d] + i * pf->dims[d], rec + at, (size_t)pf->dims[d] * sizeof(float));
    }
    free(rec);
    return rows;
}

/* Opens path for reading and writing, created if missing, holding an
 * exclusive lock: two evals of one reference at once must not write one
 * file (with other settings one would truncate the other's rows). NULL
 * with *busy = 1 when another process holds it. */
static FILE *open_locked(const char *path, int *busy) {
    *busy = 0;
    int fd = open(path, O_RDWR | O_CREAT, 0666);
    if (fd < 0) return NULL;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        *busy = errno == EWOULDBLOCK;
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r+b");
    if (!f) close(fd);
    return f;
}

int kb_fpartial_open(kb_fpartial *pf, const char *path, const char *tag, int64_t n, int batch, const int64_t dims[3],
                     float *pool, float *spatial, float *logits, kb_err *err) {
    memset(pf, 0, sizeof *pf);
    snprintf(pf->path, sizeof pf->path, "%s", path);
    memcpy(pf->dims, dims, sizeof pf->dims);
    char header[PARTIAL_HEADER];
    make_header(header, tag, n, batch, dims);
    float *out[3] = {pool, spatial, logits};
    int busy;
    if (!(pf->fp = open_locked(path, &busy))) {
        pf->path[0] = 0; /* not ours to delete */
        return busy ? kb_fail(err, "%s is being written by another run", path)
                    : kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    }
    pf->done = read_rows(pf, header, n, batch, out);
    /* keep the rows read, drop what follows them (or everything, header and all, for another header) */
    off_t keep = pf->done ? PARTIAL_HEADER + (off_t)pf->done * (off_t)(row_floats(pf) * sizeof(float)) : 0;
    int bad = fflush(pf->fp) != 0 || ftruncate(fileno(pf->fp), keep) != 0 || fseeko(pf->fp, keep, SEEK_SET) != 0;
    if (!bad && !keep) bad = fwrite(header, 1, PARTIAL_HEADER, pf->fp) != PARTIAL_HEADER || fflush(pf->fp) != 0;
    if (bad) {
        int e = errno;
        kb_fpartial_close(pf, 1);
        return kb_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

int kb_fpartial_append(kb_fpartial *pf, int64_t first, int64_t k, const float *pool, const float *spatial,
                       const float *logits, kb_err *err) {
    if (first != pf->done)
        return kb_fail(err, "%s: rows %lld.. appended after %lld", pf->path, (long long)first, (long long)pf->done);
    const float *in[3] = {pool, spatial, logits};
    int bad = 0;
    for (int64_t i = first; i < first + k && !bad; i++)
        for (int d = 0; d < 3 && !bad; d++)
            if (pf->dims[d])
                bad = fwrite(in[d] + i * pf->dims[d], sizeof(float), (size_t)pf->dims[d], pf->fp) != (size_t)pf->dims[d];
    /* flushed per batch: a killed process leaves whole batches in the kernel's hands */
    if (bad || fflush(pf->fp) != 0) return kb_fail(err, "%s: cannot write: %s", pf->path, strerror(errno));
    pf->done += k;
    return 0;
}

void kb_fpartial_close(kb_fpartial *pf, int remove) {
    if (remove && pf->fp && pf->path[0]) unlink(pf->path); /* while locked: no other run has it open for writing */
    if (pf->fp) fclose(pf->fp);
    pf->fp = NULL;
}

/* 1 when another process holds path's lock (a run featurising into it). */
static int held_by_a_run(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* also drops the shared lock, if it was taken */
    return held;
}

int64_t kb_fpartial_stale(const char *dir, const char *except, int64_t *bytes) {
    char **names, path[4400];
    int n;
    kb_err e;
    int64_t count = 0;
    *bytes = 0;
    if (kb_list_dir(dir, &names, &n, &e)) return 0;
    const char *skip = except ? strrchr(except, '/') : NULL;
    skip = skip ? skip + 1 : except;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        struct stat st;
        if (len <= 8 || !kb_has_suffix(names[i], ".partial") || (skip && !strcmp(names[i], skip))) continue;
        if (kb_path_join(path, sizeof path, dir, names[i], &e)) continue;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || held_by_a_run(path)) continue;
        count++, *bytes += (int64_t)st.st_size;
    }
    kb_names_free(names, n);
    return count;
}
