#include "util/verified.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fileio.h"
#include "util/sha256.h"

/* Longer stamps are not ours: the text below is well under this. */
#define KB_STAMP_MAX 8192

int kb_file_version_of(int fd, const char *path, kb_file_version *v, kb_err *err) {
    memset(v, 0, sizeof *v);
    clock_gettime(CLOCK_REALTIME, &v->seen);
    if (fstat(fd, &v->st) != 0) return kb_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    char real[PATH_MAX];
    if (realpath(path, real) && strlen(real) < sizeof v->real_path) memcpy(v->real_path, real, strlen(real) + 1);
    return 0;
}

int kb_verified_dir(char *out, size_t outsz, kb_err *err) {
    if (kb_user_cache_dir("KINDBENCH_VERIFIED_DIR", "verified", out, outsz, err))
        return kb_fail_wrap(err, "verification stamps");
    return 0;
}

/* The stamp's whole text: a stamp matches when its bytes equal this. */
static int stamp_text(const kb_file_version *v, const char *sha256_hex, char *out, size_t outsz) {
    const struct stat *st = &v->st;
    int n = snprintf(out, outsz,
                     "kindbench verification stamp v1\npath %s\ndevice %llu\ninode %llu\nsize %lld\n"
                     "mtime %lld.%09ld\nctime %lld.%09ld\npayload_sha256 %s\n",
                     v->real_path, (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
                     (long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
                     (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, sha256_hex);
    return n > 0 && (size_t)n < outsz ? n : -1;
}

/* DIR/<sha256 of the real path>.stamp: one stamp per path, so that a cache
 * rewritten many times does not leave a stamp per version behind. */
static int stamp_path(const char *dir, const kb_file_version *v, char *out, size_t outsz) {
    char key[sizeof v->real_path + 32], hex[65], name[80];
    snprintf(key, sizeof key, "kindbench-verified-v1\n%s", v->real_path);
    if (kb_sha256_hex_of(key, strlen(key), hex)) return -1;
    snprintf(name, sizeof name, "%s.stamp", hex);
    return kb_path_join(out, outsz, dir, name, NULL);
}

int kb_stamp_found(const char *dir, const kb_file_version *v, const char *sha256_hex) {
    char path[4200], want[KB_STAMP_MAX], have[KB_STAMP_MAX];
    int n = stamp_text(v, sha256_hex, want, sizeof want);
    if (!v->real_path[0] || n < 0 || stamp_path(dir, v, path, sizeof path)) return 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t got = fread(have, 1, sizeof have, fp);
    fclose(fp);
    return got == (size_t)n && !memcmp(have, want, (size_t)n);
}

/* ctime at least KB_STAMP_SETTLED_S before the version was taken (and not in
 * the future, as on a server whose clock runs ahead). */
static int settled(const kb_file_version *v) {
    const struct timespec *c = &v->st.st_ctim, *now = &v->seen;
    long long age_ns = ((long long)now->tv_sec - (long long)c->tv_sec) * 1000000000LL + (now->tv_nsec - c->tv_nsec);
    return age_ns >= KB_STAMP_SETTLED_S * 1000000000LL;
}

/* 1 when name is the temp file of a stamp's atomic write that names its
 * writer: "<64 hex>.stamp.tmp.<pid>[.<letters>]". Without a pid it is not
 * ours (stamps came after kb_atomic_open put the pid in), and whether its
 * writer is alive could not be told: it stays. */
static int is_stamp_temp(const char *name, const void *unused) {
    (void)unused;
    static const char ext[] = ".stamp";
    const size_t hex = 64, stem = hex + sizeof ext - 1;
    char final_name[80];
    if (strlen(name) <= stem + 5 || strspn(name, "0123456789abcdef") != hex || strncmp(name + hex, ext, sizeof ext - 1))
        return 0;
    snprintf(final_name, sizeof final_name, "%.*s", (int)stem, name);
    return kb_is_temp_of(name, final_name) && name[stem + 5] >= '0' && name[stem + 5] <= '9';
}

/* A run killed (SIGKILL) while writing a stamp leaves its temp file in dir
 * for good: one for each kill, as no later write has its name. The stamps
 * dir has no lock (every kindbench on the machine writes there), so
 * kb_sweep_stale leaves the temps of live writers alone. Quietly: a few
 * bytes of a cache, not the user's files. */
static void sweep_stamp_temps(const char *dir) { kb_sweep_stale(dir, is_stamp_temp, NULL, 1); }

int kb_stamp_write(const char *dir, const kb_file_version *v, const char *sha256_hex, kb_err *err) {
    char path[4200], text[KB_STAMP_MAX];
    int n = stamp_text(v, sha256_hex, text, sizeof text);
    if (!v->real_path[0] || n < 0 || !settled(v)) return 0;
    if (stamp_path(dir, v, path, sizeof path)) return kb_fail(err, "%s: stamp path too long", dir);
    kb_atomic_file af;
    if (kb_mkdir_p(dir, err)) return -1;
    sweep_stamp_temps(dir);
    if (kb_atomic_open(&af, path, err)) return -1;
    if (kb_atomic_write(&af, text, (size_t)n, err) || kb_atomic_commit(&af, err)) {
        kb_atomic_abort(&af);
        return -1;
    }
    return 0;
}
