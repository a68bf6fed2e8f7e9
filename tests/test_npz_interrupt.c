/* kb_npz_write of a large archive, interrupted or failing part way:
 *  - Ctrl-C: libzip wrote the archive through its own temp file
 *    "<our temp>.XXXXXX", a name the signal cleanup could not know, so the
 *    signals were held until zip_close was done: a 10 GB npz ignored Ctrl-C
 *    for minutes. A child writes a 512 MiB npz and gets SIGINT once the
 *    archive is under way; it must die of it within 2 s, before the archive
 *    is whole, leaving no temp file and the earlier file at its path as it was.
 *  - A write error (RLIMIT_FSIZE, SIGXFSZ ignored: a full disk's EFBIG/ENOSPC
 *    path) fails with a message naming the output, leaving nothing behind. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kbtest.h"
#include "util/fileio.h"
#include "util/npy.h"

#define BIG_BYTES (512LL << 20)
#define UNDER_WAY_BYTES (32LL << 20) /* the archive's writing has begun: SIGINT now */
#define OLD_CONTENT "an earlier archive, to be left as it is\n"

static double seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* How many entries of dir are not named keep (the first into first), and
 * the size of the largest of them into *largest (temp files, whoever's). */
static int others(const char *dir, const char *keep, char *first, size_t cap, long long *largest) {
    DIR *d = opendir(dir);
    int count = 0;
    first[0] = 0, *largest = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, keep)) continue;
        char path[4400];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) == 0 && sb.st_size > *largest) *largest = sb.st_size;
        if (!count++) snprintf(first, cap, "%s", e->d_name);
    }
    if (d) closedir(d);
    return count;
}

/* 1 when path still holds OLD_CONTENT, byte for byte. */
static int old_intact(const char *path) {
    uint8_t *b = NULL;
    size_t n = 0;
    kb_err err = {0};
    int same = !kb_read_file(path, &b, &n, &err) && n == strlen(OLD_CONTENT) && !memcmp(b, OLD_CONTENT, n);
    free(b);
    return same;
}

/* The child: one array of `bytes` zeros into path, as `kindbench sample`
 * writes its npz (the cleanup on); its error, if any, on stdout. calloc's
 * untouched pages cost no memory. Exits 0 on success, 1 on an error. */
static void write_zeros(const char *path, long long bytes, int ready_fd) {
    kb_temp_cleanup_on_signals();
    uint8_t *zeros = calloc((size_t)bytes, 1);
    if (!zeros) _exit(3);
    kb_npz_entry e = {"x", kb_npy_view(KB_U8, 1, (int64_t[]){bytes}, zeros)};
    if (ready_fd >= 0 && write(ready_fd, "r", 1) != 1) _exit(3);
    kb_err err = {0};
    int rc = kb_npz_write(path, &e, 1, &err);
    if (rc) printf("%s\n", err.msg);
    fflush(stdout);
    _exit(rc ? 1 : 0);
}

/* Polls dir until a file other than keep reaches `size` bytes or the child
 * ends (or 60 s pass); 1 when the size was reached. */
static int wait_for_temp_size(const char *dir, const char *keep, long long size, pid_t child) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char name[256];
    long long largest = 0;
    while (seconds_since(&t0) < 60) {
        others(dir, keep, name, sizeof name, &largest);
        if (largest >= size) return 1;
        if (waitpid(child, NULL, WNOHANG) == child) return 0;
        sleep_ms(1);
    }
    return 0;
}

static void check_interrupt(kbt_state *st, const char *dir) {
    char path[4200], name[256];
    snprintf(path, sizeof path, "%s/big.npz", dir);
    kbt_write_file(path, OLD_CONTENT, strlen(OLD_CONTENT));
    int ready[2];
    if (pipe(ready) != 0) {
        KBT_CHECK(st, 0, "a pipe to the writer", "%s", strerror(errno));
        return;
    }
    fflush(stdout); /* or the child's exit could print it again */
    pid_t child = fork();
    if (child == 0) write_zeros(path, BIG_BYTES, ready[1]);
    close(ready[1]);
    char c;
    int started = read(ready[0], &c, 1) == 1 && wait_for_temp_size(dir, "big.npz", UNDER_WAY_BYTES, child);
    close(ready[0]);
    KBT_CHECK(st, started, "the 512 MiB archive's writing began", "no temp file reached %lld bytes", UNDER_WAY_BYTES);
    if (!started) {
        kill(child, SIGKILL), waitpid(child, NULL, 0), unlink(path);
        return;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kill(child, SIGINT);
    /* until it is gone: how long, and how far its temp files grew meanwhile */
    int status = 0;
    long long largest = 0, now = 0;
    while (waitpid(child, &status, WNOHANG) == 0) {
        if (seconds_since(&t0) > 60) kill(child, SIGKILL);
        others(dir, "big.npz", name, sizeof name, &now);
        if (now > largest) largest = now;
        sleep_ms(1);
    }
    double took = seconds_since(&t0);
    printf("     (SIGINT to exit: %.3f s; its temp file reached %lld of %lld bytes)\n", took, largest, BIG_BYTES);
    KBT_CHECK(st, WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "the writer dies of the SIGINT",
              "status 0x%x", status);
    KBT_CHECK(st, took <= 2.0, "SIGINT during an npz write ends the process within 2 s", "%.2f s", took);
    KBT_CHECK(st, largest < BIG_BYTES / 2, "it stops without finishing the archive",
              "a temp file reached %lld of %lld bytes after the SIGINT", largest, BIG_BYTES);
    int left = others(dir, "big.npz", name, sizeof name, &now);
    KBT_CHECK(st, left == 0, "no temp file left by the interrupted npz write", "%d left, e.g. %s", left, name);
    KBT_CHECK(st, old_intact(path), "the earlier file at the npz's path is untouched", "it changed");
    unlink(path);
}

/* The child's write fails at 1 MiB (RLIMIT_FSIZE; SIGXFSZ ignored, so
 * write(2) says EFBIG), as it would on a full disk. */
static void check_write_error(kbt_state *st, const char *dir) {
    char path[4200], name[256], msg[4096] = "";
    snprintf(path, sizeof path, "%s/capped.npz", dir);
    kbt_write_file(path, OLD_CONTENT, strlen(OLD_CONTENT));
    int out[2];
    if (pipe(out) != 0) {
        KBT_CHECK(st, 0, "a pipe to the writer", "%s", strerror(errno));
        return;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        dup2(out[1], STDOUT_FILENO);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = {1 << 20, 1 << 20};
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(3);
        write_zeros(path, 4 << 20, -1);
    }
    close(out[1]);
    size_t got = 0;
    for (ssize_t r; got < sizeof msg - 1 && (r = read(out[0], msg + got, sizeof msg - 1 - got)) > 0;) got += (size_t)r;
    msg[got] = 0;
    close(out[0]);
    int status = 0;
    waitpid(child, &status, 0);
    printf("     -> %s", msg);
    KBT_CHECK(st, WIFEXITED(status) && WEXITSTATUS(status) == 1, "a write error fails the npz write",
              "status 0x%x", status);
    KBT_CHECK(st, strstr(msg, path) && strstr(msg, strerror(EFBIG)), "its message names the output and the cause",
              "'%s'", msg);
    long long largest;
    int left = others(dir, "capped.npz", name, sizeof name, &largest);
    KBT_CHECK(st, left == 0, "no temp file left by the failed npz write", "%d left, e.g. %s", left, name);
    KBT_CHECK(st, old_intact(path), "the earlier file at the failed npz's path is untouched", "it changed");
    unlink(path);
}

int main(void) {
    kbt_state st = {0, 0};
    char dir[] = "/tmp/kb_npz_interrupt.XXXXXX";
    if (!mkdtemp(dir)) return printf("FAIL mkdtemp\n"), 1;
    check_interrupt(&st, dir);
    check_write_error(&st, dir);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    return kbt_finish(&st);
}
