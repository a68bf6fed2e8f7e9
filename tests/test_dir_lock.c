/* kb_dir_lock's message names the process holding an output directory
 * ("DIR is in use by another WHO (pid N)") from the pid its holder writes
 * into the lock file. That pid is only true while its writer holds the lock:
 * a holder that has taken the flock but not yet written its pid, or a forked
 * child that inherited the lock, leaves an earlier holder's pid there, and
 * the old code named it, a process long gone. Now the releaser empties the
 * file and a pid that is not running is not named. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kbtest.h"
#include "util/fileio.h"

#define DIR_ "dir_lock.work"
#define LOCK DIR_ "/.lock"

/* A pid that is certainly not running: a child that has exited and been reaped. */
static pid_t dead_pid(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

/* A child holding the lock file's flock; with note, through kb_dir_lock (it
 * writes its pid), else with flock alone (the moment before it writes). */
static pid_t start_holder(int note) {
    int ready[2];
    if (pipe(ready) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        kb_err err = {0};
        int fd = -1;
        if (note) kb_dir_lock(DIR_, ".lock", "test", &fd, &err);
        else if ((fd = open(LOCK, O_RDWR | O_CREAT, 0666)) >= 0) flock(fd, LOCK_EX);
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    char c;
    close(ready[1]);
    (void)!read(ready[0], &c, 1);
    close(ready[0]);
    return pid;
}

static void stop(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void write_lock_file(const char *text) {
    FILE *fp = fopen(LOCK, "w");
    if (fp) fputs(text, fp), fclose(fp);
}

static int lock_file_size(void) {
    struct stat st;
    return stat(LOCK, &st) == 0 ? (int)st.st_size : -1;
}

/* Tries the lock while another process holds it; the message into msg. */
static int try_lock(char *msg, size_t cap) {
    kb_err err = {0};
    int fd = -1, rc = kb_dir_lock(DIR_, ".lock", "test", &fd, &err);
    kb_dir_unlock(&fd);
    snprintf(msg, cap, "%s", err.msg);
    return rc;
}

int main(void) {
    kbt_state st = {0, 0};
    char msg[800], want[64];
    mkdir(DIR_, 0777);

    pid_t holder = start_holder(1);
    int rc = try_lock(msg, sizeof msg);
    snprintf(want, sizeof want, "(pid %ld)", (long)holder);
    KBT_CHECK(&st, rc != 0 && strstr(msg, "in use by another test") && strstr(msg, want),
              "a held directory: the message names the holder's pid", "rc %d: %s", rc, msg);
    stop(holder);

    char stale[32];
    pid_t gone = dead_pid();
    snprintf(stale, sizeof stale, "%ld\n", (long)gone);
    write_lock_file(stale);
    holder = start_holder(0);
    rc = try_lock(msg, sizeof msg);
    snprintf(want, sizeof want, "pid %ld", (long)gone);
    KBT_CHECK(&st, rc != 0 && strstr(msg, "in use by another test") && !strstr(msg, want),
              "held, the file naming a process that is gone: that pid is not named", "rc %d: %s", rc, msg);
    stop(holder);

    kb_err err = {0};
    int fd = -1;
    rc = kb_dir_lock(DIR_, ".lock", "test", &fd, &err);
    int held = lock_file_size();
    kb_dir_unlock(&fd);
    KBT_CHECK(&st, rc == 0 && held > 0 && lock_file_size() == 0, "the holder's pid is in the file until it releases",
              "rc %d, %d bytes while held, %d after: %s", rc, held, lock_file_size(), err.msg);

    unlink(LOCK);
    rmdir(DIR_);
    return kbt_finish(&st);
}
