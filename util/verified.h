/* Verification stamps: a small file under the user's cache directory that
 * says "this version of this file was hashed in full and its checksum was
 * right", so that a large file (a dataset cache of hundreds of GB) is hashed
 * once per version instead of at every open.
 *
 * A version is the file's real path, device, inode, size, mtime and ctime.
 * ctime cannot be set back by user code and every write, rename or chmod
 * moves it, so an edited or replaced file never matches an old stamp. A stamp
 * is only written for a file whose ctime was already KB_STAMP_SETTLED_S old
 * when it was looked at: a write within the same clock tick as the last one
 * (timestamps are as coarse as a jiffy, 2 s on FAT) could otherwise leave
 * ctime unchanged under a stamp that trusts it, which is git's "racily clean"
 * problem. Stamps are best effort: where none can be read or written, the
 * caller hashes as before. */
#ifndef KB_VERIFIED_H
#define KB_VERIFIED_H

#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

#include "util/err.h"

#define KB_STAMP_SETTLED_S 2

typedef struct {
    char real_path[4096]; /* "" when realpath failed: no stamps for this file */
    struct stat st;       /* fstat of the open file */
    struct timespec seen; /* CLOCK_REALTIME just before that fstat */
} kb_file_version;

/* Takes the version of fd (opened from path): the clock, fstat, realpath. */
int kb_file_version_of(int fd, const char *path, kb_file_version *v, kb_err *err);

/* Where stamps live: $KINDBENCH_VERIFIED_DIR, else
 * ${XDG_CACHE_HOME:-$HOME/.cache}/kindbench/verified. */
int kb_verified_dir(char *out, size_t outsz, kb_err *err);

/* 1 when dir holds a stamp for exactly this version and digest (64 hex). */
int kb_stamp_found(const char *dir, const kb_file_version *v, const char *sha256_hex);

/* Records that v's content has digest sha256_hex, atomically, replacing the
 * stamp of an older version of the same path (one stamp per path); first
 * removes from dir the temp files of stamp writes whose process is dead (a
 * run killed while writing one). Does
 * nothing and returns 0 when v is not settled (see above) or has no real
 * path; -1 with err when the stamp cannot be written. */
int kb_stamp_write(const char *dir, const kb_file_version *v, const char *sha256_hex, kb_err *err);

#endif
