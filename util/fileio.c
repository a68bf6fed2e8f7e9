#define _POSIX_C_SOURCE 200809L
#include "util/fileio.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads to EOF: a regular file's size sizes the buffer, but /proc files and
 * pipes report 0 (they were read as empty), and a directory is refused (its
 * seek end on ext4 is 2^63: an 8 EiB allocation was attempted). */
int kb_read_file(const char *path, uint8_t **data, size_t *size, kb_err *err) {
    *data = NULL;
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int e = fstat(fileno(fp), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (e) {
        fclose(fp);
        return kb_fail(err, "%s: cannot read: %s", path, strerror(e));
    }
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, fp);
        if (len < cap) break; /* EOF or a read error; len < cap leaves room for the NUL */
        uint8_t *grown = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!grown) free(buf);
        buf = grown, cap *= 2;
    }
    int rd_err = ferror(fp);
    fclose(fp);
    if (!buf) return kb_fail(err, "%s: out of memory reading %zu bytes", path, len);
    if (rd_err) {
        free(buf);
        return kb_fail(err, "%s: read error after %zu bytes", path, len);
    }
    buf[len] = 0;
    *data = buf;
    *size = len;
    return 0;
}

/* The signals whose handler removes the tracked temp files. */
static const int kb_cleanup_signals[] = {SIGINT, SIGTERM, SIGHUP};

/* Temp files to remove when a signal ends the process: fixed slots, so that
 * the handler only reads memory and calls unlink (async-signal-safe). A slot
 * is written while its `used` flag is 0 and only then marked used. */
static struct {
    volatile sig_atomic_t used;
    char path[4096];
} temp_slots[KB_TEMP_SLOTS];

void kb_temp_track(const char *tmp_path) {
    for (int i = 0; i < KB_TEMP_SLOTS; i++)
        if (!temp_slots[i].used) {
            snprintf(temp_slots[i].path, sizeof temp_slots[i].path, "%s", tmp_path);
            atomic_signal_fence(memory_order_seq_cst); /* the path is whole before the handler may read it */
            temp_slots[i].used = 1;
            return;
        }
}

void kb_temp_forget(const char *tmp_path) {
    for (int i = 0; i < KB_TEMP_SLOTS; i++)
        if (temp_slots[i].used && !strcmp(temp_slots[i].path, tmp_path)) {
            temp_slots[i].used = 0;
            return;
        }
}

/* kb_signals_defer's state: read and written by the handler, so
 * sig_atomic_t; process-wide by nature, as signal dispositions are. */
static volatile sig_atomic_t stop_deferred, stop_signal;

void kb_signals_defer(int on) { stop_deferred = on; }

int kb_stop_requested(void) { return stop_signal; }

void kb_die_of_signal(int sig) {
    signal(sig, SIG_DFL);
    raise(sig);
}

static void temp_cleanup_handler(int sig) {
    /* write(2) and unlink(2) only: both are async-signal-safe */
    static const char msg[] = "\nkindbench: interrupted; files being written were removed, finished ones are intact\n";
    static const char later[] = "\nkindbench: interrupted; stopping after this step with a checkpoint (interrupt "
                                "again to stop at once)\n";
    if (stop_deferred && !stop_signal) {
        stop_signal = sig;
        ssize_t w = write(STDERR_FILENO, later, sizeof later - 1);
        (void)w;
        return;
    }
    for (int i = 0; i < KB_TEMP_SLOTS; i++)
        if (temp_slots[i].used) unlink(temp_slots[i].path);
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    kb_die_of_signal(sig); /* signal() and raise() are async-signal-safe too */
}

void kb_signals_hold(sigset_t *old) {
    sigset_t cleanup_sigs;
    sigemptyset(&cleanup_sigs);
    for (size_t i = 0; i < sizeof kb_cleanup_signals / sizeof kb_cleanup_signals[0]; i++)
        sigaddset(&cleanup_sigs, kb_cleanup_signals[i]);
    pthread_sigmask(SIG_BLOCK, &cleanup_sigs, old);
}

void kb_signals_release(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }

void kb_temp_cleanup_on_signals(void) {
    const int *sigs = kb_cleanup_signals;
    for (size_t i = 0; i < sizeof kb_cleanup_signals / sizeof kb_cleanup_signals[0]; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = temp_cleanup_handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART; /* the handler may return (kb_signals_defer): reads and writes then go on */
        /* a signal ignored on entry (nohup, a background job's SIGINT) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sigs[i], &sa, NULL);
    }
}

int kb_temp_name(char *out, size_t cap, const char *path, const char *suffix) {
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash + 1 - path) : 0, name_len = strlen(path) - dir_len;
    size_t room = NAME_MAX > strlen(suffix) ? NAME_MAX - strlen(suffix) : 1, keep = name_len;
    if (keep > room) {
        keep = room;
        while (keep > 0 && ((unsigned char)path[dir_len + keep] & 0xC0) == 0x80) keep--;
    }
    return snprintf(out, cap, "%.*s%s", (int)(dir_len + keep), path, suffix) >= (int)cap ? -1 : 0;
}

mode_t kb_output_mode(const char *path) {
    /* umask can only be read by setting it; the CLI writes outputs from one thread */
    struct stat st;
    mode_t mask = umask(0);
    umask(mask);
    return stat(path, &st) == 0 ? (st.st_mode & 07777) : (0666 & ~mask);
}

/* suffix ("....XXXXXX") with the creator's pid before the X's: "....<pid>.XXXXXX". */
static int suffix_with_pid(char *out, size_t cap, const char *suffix) {
    size_t n = strlen(suffix);
    if (n < 6 || strcmp(suffix + n - 6, "XXXXXX")) return -1;
    return snprintf(out, cap, "%.*s%ld.XXXXXX", (int)(n - 6), suffix, (long)getpid()) >= (int)cap ? -1 : 0;
}

int kb_temp_create(char *tmp, size_t cap, const char *path, const char *suffix, kb_err *err) {
    char sfx[96];
    tmp[0] = 0;
    if (suffix_with_pid(sfx, sizeof sfx, suffix)) return kb_fail(err, "%s: bad temp suffix '%s'", path, suffix);
    if (kb_temp_name(tmp, cap, path, sfx)) return tmp[0] = 0, kb_fail(err, "%s: path too long", path);
    /* now, not at the rename: `data prepare -o DIR` decoded every image before failing */
    if (kb_is_dir(path)) return tmp[0] = 0, kb_fail(err, "%s: is a directory (a file name is needed here)", path);
    /* created and tracked with the cleanup's signals held back: one arriving
     * between the two left the file behind (a kill soon after a run starts) */
    sigset_t old;
    kb_signals_hold(&old);
    int fd = mkstemp(tmp);
    int saved = errno;
    if (fd >= 0) kb_temp_track(tmp);
    kb_signals_release(&old);
    if (fd < 0) {
        tmp[0] = 0;
        /* named by the output, not the temp name: "cache/x.kbd.tmp.FngAnw: cannot create temp file" hid which option */
        return kb_fail(err, "%s: cannot write there: %s", path, strerror(saved));
    }
    fchmod(fd, kb_output_mode(path));
    return fd;
}

/* Copies path into final (cap bytes each) and creates its "<path>.tmp.<pid>.XXXXXX". */
static int create_temp(char *final, char *tmp, size_t cap, const char *path, kb_err *err) {
    if (snprintf(final, cap, "%s", path) >= (int)cap) return tmp[0] = 0, kb_fail(err, "%s: path too long", path);
    return kb_temp_create(tmp, cap, path, ".tmp.XXXXXX", err);
}

int kb_atomic_open(kb_atomic_file *af, const char *path, kb_err *err) {
    memset(af, 0, sizeof *af);
    int fd = create_temp(af->final_path, af->tmp_path, sizeof af->tmp_path, path, err);
    if (fd < 0) return -1;
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        int saved = errno;
        close(fd);
        kb_temp_drop(af->tmp_path);
        return kb_fail(err, "%s: fdopen failed: %s", af->tmp_path, strerror(saved));
    }
    return 0;
}

int kb_atomic_write(kb_atomic_file *af, const void *buf, size_t n, kb_err *err) {
    if (n && fwrite(buf, 1, n, af->fp) != n)
        return kb_fail(err, "%s: write failed: %s", af->final_path, strerror(errno));
    return 0;
}

void kb_sync_parent_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

/* Removes a temp file, then stops tracking it (in that order: a signal in
 * between still removes it). */
void kb_temp_drop(const char *tmp_path) {
    unlink(tmp_path);
    kb_temp_forget(tmp_path);
}

/* The temp file stays tracked until it is renamed or removed: the fsync of a
 * large cache takes a while, and a Ctrl-C during it must still remove it. */
int kb_atomic_commit(kb_atomic_file *af, kb_err *err) {
    int bad = fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0;
    int saved = errno;
    bad |= fclose(af->fp) != 0;
    af->fp = NULL;
    if (bad) {
        kb_temp_drop(af->tmp_path);
        return kb_fail(err, "%s: cannot finish writing: %s", af->final_path, strerror(saved ? saved : errno));
    }
    if (rename(af->tmp_path, af->final_path) != 0) {
        saved = errno;
        kb_temp_drop(af->tmp_path);
        return kb_fail(err, "%s: cannot rename temp file into place: %s", af->final_path, strerror(saved));
    }
    kb_temp_forget(af->tmp_path);
    kb_sync_parent_dir(af->final_path);
    return 0;
}

int kb_staged_begin(kb_staged_file *s, const char *path, kb_err *err) {
    memset(s, 0, sizeof *s);
    int fd = create_temp(s->path, s->tmp, sizeof s->tmp, path, err);
    if (fd < 0) return -1;
    close(fd); /* the writers keep the mode of the file they replace: this one's */
    return 0;
}

int kb_staged_commit(kb_staged_file *s, kb_err *err) {
    if (rename(s->tmp, s->path) != 0) {
        int saved = errno;
        kb_staged_drop(s);
        return kb_fail(err, "%s: cannot rename temp file into place: %s", s->path, strerror(saved));
    }
    kb_temp_forget(s->tmp);
    s->tmp[0] = 0;
    kb_sync_parent_dir(s->path);
    return 0;
}

void kb_staged_drop(kb_staged_file *s) {
    if (s->tmp[0]) kb_temp_drop(s->tmp);
    s->tmp[0] = 0;
}

int kb_is_temp_of(const char *name, const char *final_name) {
    size_t n = strlen(final_name);
    if (strncmp(name, final_name, n) || strncmp(name + n, ".tmp.", 5) || !name[n + 5]) return 0;
    for (const char *c = name + n + 5; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.') return 0;
    return 1;
}

/* The pid after the last ".tmp." of name ("<pid>." or "<pid>" at the end),
 * or 0 when none is there (a temp of an older kindbench: mkstemp letters). */
static long temp_creator(const char *name) {
    const char *t = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) t = p + 5;
    if (!t || !isdigit((unsigned char)*t)) return 0;
    char *end;
    errno = 0;
    long pid = strtol(t, &end, 10);
    return errno == 0 && pid > 0 && pid <= INT_MAX && (*end == '.' || !*end) ? pid : 0;
}

int kb_temp_is_live(const char *name) {
    long pid = temp_creator(name);
    if (!pid) return 0;
    /* our own counts as live: a temp this run has open; EPERM is another user's live process */
    return pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

void kb_sweep_stale(const char *dir, int (*is_stale)(const char *name, const void *user), const void *user,
                    int quiet) {
    char path[4400];
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_stale(e->d_name, user) || kb_temp_is_live(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0 && !quiet) fprintf(stderr, "removed %s, left by an interrupted run\n", path);
    }
    closedir(d);
}

void kb_atomic_abort(kb_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    af->fp = NULL;
    if (af->tmp_path[0]) kb_temp_drop(af->tmp_path);
    af->tmp_path[0] = '\0';
}

/* The holder writes its pid into the lock file, for the message of the run
 * it refuses. Written over the old one, then cut to length: a reader sees a
 * whole pid (the old holder's at worst, just after the lock changed hands). */
static void lock_note_pid(int fd) {
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (pwrite(fd, line, (size_t)n, 0) == n) (void)ftruncate(fd, n);
}

/* The pid the lock file's holder wrote, 0 if none can be read or that
 * process is gone: a holder between its flock and its note, or a forked
 * child holding its parent's lock, leaves an earlier holder's pid there. */
static long lock_holder_pid(int fd) {
    char line[32];
    ssize_t n = pread(fd, line, sizeof line - 1, 0);
    if (n <= 0) return 0;
    line[n] = 0;
    char *end;
    long pid = strtol(line, &end, 10);
    if (pid <= 0 || *end != '\n') return 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM ? pid : 0;
}

int kb_dir_lock(const char *dir, const char *name, const char *who, int *fd, kb_err *err) {
    char path[4096], holder[48] = "";
    *fd = -1;
    if (kb_path_join(path, sizeof path, dir, name, err)) return -1;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (f < 0) return kb_fail(err, "%s: cannot create the lock file: %s", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? lock_holder_pid(f) : 0;
        close(f);
        if (pid) snprintf(holder, sizeof holder, " (pid %ld)", pid);
        if (e == EWOULDBLOCK)
            return kb_fail(err, "%s is in use by another %s%s; wait for it to finish or choose another directory "
                                "(the lock: %s)", dir, who, holder, path);
        /* a filesystem without flock (some NFS and FUSE mounts): the guard is
         * lost there, not the run */
        if (e == ENOLCK || e == EOPNOTSUPP || e == ENOSYS || e == EINVAL) {
            fprintf(stderr, "kindbench: warning: %s: cannot lock (%s); not guarded against a second %s there\n", path,
                    strerror(e), who);
            return 0;
        }
        return kb_fail(err, "%s: cannot lock: %s", path, strerror(e));
    }
    lock_note_pid(f);
    *fd = f;
    return 0;
}

void kb_dir_unlock(int *fd) {
    /* the pid goes with the lock; closing the only descriptor releases the flock */
    if (*fd >= 0) (void)!ftruncate(*fd, 0), close(*fd);
    *fd = -1;
}

int kb_mkdir_p(const char *path, kb_err *err) {
    char buf[4096];
    if (!path[0]) return kb_fail(err, "cannot create a directory with an empty name");
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return kb_fail(err, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return kb_fail(err, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return kb_fail(err, "%s: cannot create directory: %s", buf, strerror(errno));
    if (!kb_is_dir(buf)) return kb_fail(err, "%s: exists and is not a directory", buf);
    return 0;
}

int kb_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int kb_probe_writable(const char *path, kb_err *err) {
    char tmp[4200];
    int fd = kb_temp_create(tmp, sizeof tmp, path, ".probe.XXXXXX", err);
    if (fd < 0) return -1;
    close(fd);
    kb_temp_drop(tmp);
    return 0;
}

int kb_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int kb_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int kb_user_cache_dir(const char *env_override, const char *sub, char *out, size_t outsz, kb_err *err) {
    const char *env = env_override ? getenv(env_override) : NULL;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME"), *sep = sub ? "/" : "";
    int n;
    if (env && env[0]) n = snprintf(out, outsz, "%s", env);
    else if (xdg && xdg[0]) n = snprintf(out, outsz, "%s/kindbench%s%s", xdg, sep, sub ? sub : "");
    else if (home && home[0]) n = snprintf(out, outsz, "%s/.cache/kindbench%s%s", home, sep, sub ? sub : "");
    else return kb_fail(err, "neither $XDG_CACHE_HOME nor $HOME is set");
    if (n < 0 || (size_t)n >= outsz) return kb_fail(err, "cache directory path too long");
    return 0;
}

int kb_path_join(char *out, size_t outsz, const char *dir, const char *name, kb_err *err) {
    size_t dl = strlen(dir);
    const char *sep = (!dl || dir[dl - 1] == '/') ? "" : "/"; /* "" is the current directory, not "/" */
    if (snprintf(out, outsz, "%s%s%s", dir, sep, name) >= (int)outsz) return kb_fail(err, "%s/%s: path too long", dir, name);
    return 0;
}

int kb_has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}
