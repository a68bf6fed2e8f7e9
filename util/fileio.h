/* File helpers: whole-file reads with clear errors, and atomic writes
 * (temp file in the destination directory + fsync + rename) so that a crash,
 * a full disk or a bad input never leaves a half-written output behind. */
#ifndef KB_FILEIO_H
#define KB_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <sys/types.h>

#include "util/err.h"

/* Reads a whole file into a malloc'd buffer (NUL-terminated for convenience;
 * *size excludes the NUL). */
int kb_read_file(const char *path, uint8_t **data, size_t *size, kb_err *err);

/* An output file being written atomically. */
typedef struct {
    FILE *fp;
    char final_path[4096];
    char tmp_path[4096];
} kb_atomic_file;

/* Writes "<path><suffix>" to out, the file name part of path cut (at a UTF-8
 * character boundary) where the whole would pass the 255 bytes a name may
 * have, so outputs with names of 245-255 bytes (legal themselves) still get
 * a temp file beside them. -1 if out is too small. */
int kb_temp_name(char *out, size_t cap, const char *path, const char *suffix);

/* After a rename the new directory entry is durable only once the directory
 * is synced: without it a power cut can bring back the old file (never a torn
 * one). Best effort: the file is already in place, and some filesystems
 * refuse fsync on a directory, so a failure is not reported. */
void kb_sync_parent_dir(const char *path);

/* The mode a file written in place of path gets: a replaced file keeps its
 * mode, a new one gets the umask's (0666 & ~umask), as open(2) would give it;
 * for temp files, which mkstemp creates 0600. */
mode_t kb_output_mode(const char *path);

/* Creates the temp file "<path><suffix>" (suffix ending in XXXXXX, which
 * becomes "<pid>.XXXXXX": the name says which process writes it, so that a
 * sweep of killed runs' temp files can tell a live one's; the name cut as
 * kb_temp_name does) with the mode path's output gets, and
 * returns its descriptor. The file is tracked for the signal cleanup from
 * its creation on (kb_temp_cleanup_on_signals): the caller ends that with
 * kb_temp_drop (removed) or kb_temp_forget (after renaming it). Fails,
 * naming path, when path is a directory or nothing can be created beside
 * it; tmp is then "". */
int kb_temp_create(char *tmp, size_t cap, const char *path, const char *suffix, kb_err *err);

/* Creates "<path>.tmp.<pid>.XXXXXX" beside path (the name part cut where the
 * whole would pass 255 bytes) and opens it for writing. */
int kb_atomic_open(kb_atomic_file *af, const char *path, kb_err *err);
/* Writes n bytes; fails with a message naming the file on a short write. */
int kb_atomic_write(kb_atomic_file *af, const void *buf, size_t n, kb_err *err);
/* Flushes, fsyncs and renames onto the final path. On failure the temp file is
 * removed and the previous file at path (if any) is untouched. */
int kb_atomic_commit(kb_atomic_file *af, kb_err *err);
/* Closes and removes the temp file (safe to call after a failed commit). */
void kb_atomic_abort(kb_atomic_file *af);

/* A file written in full beside its final path and renamed into place
 * later, with others (`sample` replaces its npz, grid and JSON as near
 * together as it can). kb_staged_begin creates "<path>.tmp.<pid>.XXXXXX" (the
 * atomic writers' temp name family) with the mode path's output would get,
 * tracked for the signal cleanup; a writer then fills s->tmp (e.g. an atomic
 * write onto it); kb_staged_commit renames it onto path, kb_staged_drop
 * removes it (safe to call after a commit, or on a zeroed struct). */
typedef struct {
    char path[4096];
    char tmp[4096];
} kb_staged_file;
int kb_staged_begin(kb_staged_file *s, const char *path, kb_err *err);
int kb_staged_commit(kb_staged_file *s, kb_err *err);
void kb_staged_drop(kb_staged_file *s);

/* 1 when name is a temp file that an atomic write of final_name (a bare
 * file name) leaves when killed: "<final_name>.tmp.<letters, digits, dots>"
 * (the dots: "<pid>.XXXXXX", and a temp of a temp, "<...>.XXXXXX.XXXXXX", as
 * libzip made of kb_npz_write's before it wrote onto kb_npz_write's own). */
int kb_is_temp_of(const char *name, const char *final_name);

/* 1 when the temp file name (kb_temp_create's "<...>.tmp.<pid>.XXXXXX", or
 * "<...>.tmp.<pid>") names a process that is alive: this one, or another
 * (kill(pid, 0) does not say ESRCH). 0 for a dead one, or no pid in the name. */
int kb_temp_is_live(const char *name);

/* Removes the entries of dir that is_stale(name, user) picks, each said on
 * stderr unless quiet ("removed DIR/NAME, left by an interrupted run"): the
 * temp files killed runs left (a SIGKILL skips the unlink). The caller holds
 * dir's lock (kb_dir_lock), so no run of its own kind writes dir; a file
 * whose creator is alive (kb_temp_is_live) is left alone all the same: it
 * may be another command's output there (sample --npz into another run's
 * DIR: the sweep removed that run's file as it was being written). Pids are
 * this machine's: a run on another host sharing dir is not seen. */
void kb_sweep_stale(const char *dir, int (*is_stale)(const char *name, const void *user), const void *user, int quiet);

/* On SIGINT, SIGTERM or SIGHUP, says so on stderr and removes the temp files of atomic writes still
 * open (kb_atomic_open's, kb_npz_write's), then dies of the signal as before:
 * an interrupted `data prepare` of ImageNet left a hidden OUT.tmp.XXXXXX of
 * tens of GB. Called once by main; writes from other threads are not tracked
 * beyond the first KB_TEMP_SLOTS at a time. */
#define KB_TEMP_SLOTS 8
void kb_temp_cleanup_on_signals(void);
/* A stop at a safe point (train: after a step, with a checkpoint). While
 * deferred, the first of those signals only records itself and says so on
 * stderr; kb_stop_requested then returns it (0 while none came), and the
 * caller ends when it can. A second signal ends the process at once, as
 * without deferral. kb_die_of_signal ends the process of that signal with
 * the default action, so the exit status says so (130 for SIGINT). */
void kb_signals_defer(int on);
int kb_stop_requested(void);
void kb_die_of_signal(int sig);
/* Tracks or forgets a temp file for that cleanup (kb_temp_create tracks its files). */
void kb_temp_track(const char *tmp_path);
void kb_temp_forget(const char *tmp_path);
/* Removes a tracked temp file, then forgets it. */
void kb_temp_drop(const char *tmp_path);
/* Hold back the cleanup's signals (SIGINT, SIGTERM, SIGHUP) in this thread
 * while a file the cleanup cannot know of exists (kb_temp_create: made and
 * tracked in two steps); release delivers any that came. Only for a moment:
 * a held Ctrl-C is a Ctrl-C ignored meanwhile. */
void kb_signals_hold(sigset_t *old);
void kb_signals_release(const sigset_t *old);

/* Takes an exclusive advisory lock (flock) on DIR/NAME, created if needed, so
 * that two processes never write one output directory at once. The kernel
 * drops the lock with the process (also on SIGKILL), so no stale lock is ever
 * left to clear. On success *fd holds the lock until kb_dir_unlock (or is -1,
 * with a warning, on a filesystem without flock); when another process holds
 * it, -1 with a message naming that process (the holder writes its pid into
 * the lock file, and empties it at release; a pid no longer running is not
 * named) and the lock file: "DIR is in use by another WHO (pid N)". */
int kb_dir_lock(const char *dir, const char *name, const char *who, int *fd, kb_err *err);
/* Releases a lock of kb_dir_lock (the file stays; *fd becomes -1). */
void kb_dir_unlock(int *fd);

/* Fails unless a file can be written at path: path is no directory, and a
 * temp file can be created beside it (and is removed again). For outputs
 * written at the end of long work, checked before the work starts. */
int kb_probe_writable(const char *path, kb_err *err);

/* 1 when both paths exist and name the same file (device and inode: links
 * and other spellings of one path count), 0 otherwise. An output that is one
 * of the command's inputs would be replaced by the write. */
int kb_same_file(const char *a, const char *b);

/* Creates a directory and its parents (like mkdir -p). */
int kb_mkdir_p(const char *path, kb_err *err);

/* 1 if path exists as a regular file, 0 otherwise. */
int kb_is_file(const char *path);
/* 1 if path exists as a directory, 0 otherwise. */
int kb_is_dir(const char *path);

/* kindbench's directory under the user's cache, sub appended when not NULL:
 * $<env_override> when that variable is named and set (used as is), else
 * $XDG_CACHE_HOME/kindbench[/sub], else $HOME/.cache/kindbench[/sub]. The one
 * place that finds it (weights, the features cache, verification stamps). Fails
 * when neither variable is set or the path does not fit. */
int kb_user_cache_dir(const char *env_override, const char *sub, char *out, size_t outsz, kb_err *err);

/* Joins a directory and a name into out (size outsz); fails if too long. */
int kb_path_join(char *out, size_t outsz, const char *dir, const char *name, kb_err *err);
/* 1 when s ends with suffix (".kbd", ".partial"). */
int kb_has_suffix(const char *s, const char *suffix);

#endif
