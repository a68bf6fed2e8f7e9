#include "harness/sample_pngs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/fileio.h"

int kb_is_sample_png_name(const char *name) {
    size_t i = 0, j = 0;
    while (isdigit((unsigned char)name[i])) i++;
    if (i < 6 || strncmp(name + i, "_class", 6)) return 0;
    const char *k = name + i + 6;
    while (isdigit((unsigned char)k[j])) j++;
    return j > 0 && strcmp(k + j, ".png") == 0;
}

/* What to do with each entry of a folder: remove it (all entries, or the
 * sample PNGs only), or move a file that is no sample PNG to move_to. */
typedef struct {
    int all;
    const char *move_to;
    long long removed;
} sweep;

static int sweep_entry(const char *dir, const char *name, sweep *s, kb_err *err) {
    char path[4400], to[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (s->all || kb_is_sample_png_name(name)) {
        if (unlink(path) != 0) return kb_fail(err, "%s: cannot remove: %s", path, strerror(errno));
        s->removed++;
        return 0;
    }
    if (!s->move_to) return 0;
    snprintf(to, sizeof to, "%s/%s", s->move_to, name);
    if (rename(path, to) != 0) return kb_fail(err, "%s: cannot move to %s: %s", path, to, strerror(errno));
    return 0;
}

static int sweep_dir(const char *dir, sweep *s, kb_err *err) {
    DIR *d = opendir(dir);
    if (!d) return kb_fail(err, "%s: cannot list: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) rc = sweep_entry(dir, e->d_name, s, err);
    closedir(d);
    return rc;
}

/* 1 when NAME is PREFIX<pid> of a run that is gone: a folder whose pid is
 * alive (kill(pid, 0) does not say ESRCH) is another run's at work. */
static int is_dead_run(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    char *end;
    if (strncmp(name, prefix, n) || !isdigit((unsigned char)name[n])) return 0;
    long pid = strtol(name + n, &end, 10);
    return !*end && pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* A dead run's DIR/.png.old.<pid>: the earlier set it was replacing. Killed
 * between its two renames, DIR/png is missing and this is put back;
 * otherwise the new set is in place and this goes as kb_png_set_commit would
 * have removed it (its sample PNGs removed, other files into DIR/png). */
static void recover_old_set(const char *old, const char *png_dir) {
    kb_err ignored = {0};
    if (!kb_is_dir(png_dir)) {
        rename(old, png_dir);
        return;
    }
    sweep carry = {0, png_dir, 0};
    if (!sweep_dir(old, &carry, &ignored)) rmdir(old);
}

/* Clears what killed runs (Ctrl-C or SIGKILL) left in out_dir: their staging
 * folders DIR/.png.new.<pid> of PNGs (every kill added one: 20 kills of
 * `sample --count 200` left 18 folders of up to 200 PNGs) and their
 * DIR/.png.old.<pid> (recover_old_set). A live run's are left alone. */
static void sweep_dead_runs(const char *out_dir, const char *png_dir) {
    char path[4400];
    DIR *d = opendir(out_dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        int old = is_dead_run(e->d_name, ".png.old.");
        if (!old && !is_dead_run(e->d_name, ".png.new.")) continue;
        snprintf(path, sizeof path, "%s/%s", out_dir, e->d_name);
        if (old) {
            recover_old_set(path, png_dir);
            continue;
        }
        kb_err ignored = {0};
        sweep all = {1, NULL, 0};
        if (!sweep_dir(path, &all, &ignored)) rmdir(path);
    }
    closedir(d);
}

int kb_png_set_begin(kb_png_set *s, const char *out_dir, kb_err *err) {
    char name[64];
    memset(s, 0, sizeof *s);
    snprintf(name, sizeof name, ".png.new.%ld", (long)getpid());
    if (kb_path_join(s->dir, sizeof s->dir, out_dir, "png", err) ||
        kb_path_join(s->staging, sizeof s->staging, out_dir, name, err))
        return -1;
    snprintf(name, sizeof name, ".png.old.%ld", (long)getpid());
    if (kb_path_join(s->old, sizeof s->old, out_dir, name, err)) return -1;
    sweep_dead_runs(out_dir, s->dir);
    sweep all = {1, NULL, 0};
    if (kb_is_dir(s->staging) && sweep_dir(s->staging, &all, err)) return -1;
    if (kb_mkdir_p(s->staging, err)) return -1;
    s->staged = 1;
    return 0;
}

int kb_png_set_commit(kb_png_set *s, long long *replaced, kb_err *err) {
    *replaced = 0;
    if (!kb_is_dir(s->dir)) {
        if (rename(s->staging, s->dir) != 0)
            return kb_fail(err, "%s: cannot rename to %s: %s", s->staging, s->dir, strerror(errno));
        s->staged = 0;
        return 0;
    }
    if (rename(s->dir, s->old) != 0) return kb_fail(err, "%s: cannot rename to %s: %s", s->dir, s->old, strerror(errno));
    if (rename(s->staging, s->dir) != 0) {
        int e = errno;
        rename(s->old, s->dir); /* the earlier set back in place */
        return kb_fail(err, "%s: cannot rename to %s: %s", s->staging, s->dir, strerror(e));
    }
    s->staged = 0;
    sweep carry = {0, s->dir, 0}; /* the earlier samples go, other files come along */
    int rc = sweep_dir(s->old, &carry, err);
    *replaced = carry.removed;
    if (!rc && rmdir(s->old) != 0) rc = kb_fail(err, "%s: cannot remove: %s", s->old, strerror(errno));
    return rc;
}

void kb_png_set_abort(kb_png_set *s) {
    if (!s->staged) return;
    kb_err ignored = {0};
    sweep all = {1, NULL, 0};
    sweep_dir(s->staging, &all, &ignored);
    rmdir(s->staging);
    s->staged = 0;
}

int kb_png_set_clear(const char *out_dir, long long *removed, kb_err *err) {
    char dir[4096];
    *removed = 0;
    if (kb_path_join(dir, sizeof dir, out_dir, "png", err)) return -1;
    if (!kb_is_dir(dir)) return 0;
    sweep samples = {0, NULL, 0};
    int rc = sweep_dir(dir, &samples, err);
    *removed = samples.removed;
    return rc;
}
