/* A signal that ends a process while it creates a temp file must not leave
 * that file behind. kb_temp_create made the file (mkstemp) and its callers
 * registered it for the signal handler's cleanup afterwards: a SIGTERM in
 * between (test_data_badinput's "prepare killed by SIGTERM", now and then
 * under load) left OUT.tmp.* forever. Each trial: a child creates and drops
 * atomic files, staged files and probe files in a loop, the parent kills it
 * after a random delay, and no temp file may be left but the npz it wrote
 * in full. Probabilistic by
 * nature; the window was a large part of each iteration (fchmod, fdopen),
 * so the old code left files in most runs of this many trials. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kbtest.h"
#include "util/fileio.h"
#include "util/npy.h"

#define DIR_ "fileio_signals.work"
#define TRIALS 300

static void churn(void) {
    if (!freopen("/dev/null", "w", stderr)) _exit(3); /* the handler's "interrupted" line, 300 times */
    kb_temp_cleanup_on_signals();
    static float values[4096];
    const int64_t shape[1] = {4096};
    const kb_npz_entry npz = {"arr_0", kb_npy_view(KB_F32, 1, shape, values)};
    for (unsigned i = 0;; i++) {
        kb_err err = {0};
        kb_atomic_file af;
        kb_staged_file sf;
        if (kb_atomic_open(&af, DIR_ "/out.bin", &err) == 0) kb_atomic_abort(&af);
        if (kb_staged_begin(&sf, DIR_ "/staged.bin", &err) == 0) kb_staged_drop(&sf);
        (void)kb_probe_writable(DIR_ "/probe.bin", &err);
        if (i % 4 == 0) (void)kb_npz_write(DIR_ "/arrays.npz", &npz, 1, &err);
    }
}

/* Names of files left in DIR_ (into out), and how many. */
static int leftovers(char *out, size_t n) {
    DIR *d = opendir(DIR_);
    int count = 0;
    out[0] = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        if (!strcmp(e->d_name, "arrays.npz")) continue; /* a finished output, not a temp file */
        char path[512];
        snprintf(path, sizeof path, DIR_ "/%s", e->d_name);
        unlink(path);
        if (count++ < 3) snprintf(out + strlen(out), n - strlen(out), "%s ", e->d_name);
    }
    if (d) closedir(d);
    return count;
}

int main(void) {
    kbt_state st = {0, 0};
    mkdir(DIR_, 0777);
    char names[600];
    leftovers(names, sizeof names);
    srand(12345);
    int left_trials = 0, killed = 0;
    const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (int t = 0; t < TRIALS; t++) {
        pid_t pid = fork();
        if (pid == 0) churn();
        struct timespec ts = {0, 200000 + (rand() % 2000) * 1000L}; /* 0.2 to 2.2 ms */
        nanosleep(&ts, NULL);
        kill(pid, sigs[t % 3]);
        int status;
        waitpid(pid, &status, 0);
        killed += WIFSIGNALED(status);
        if (leftovers(names, sizeof names)) {
            if (!left_trials) printf("trial %d left: %s\n", t, names);
            left_trials++;
        }
    }
    KBT_CHECK(&st, killed == TRIALS, "every child died of its signal", "%d of %d", killed, TRIALS);
    KBT_CHECK(&st, left_trials == 0, "no temp file left by a signal while temp files are made, written and dropped",
              "%d of %d trials left files", left_trials, TRIALS);
    rmdir(DIR_);
    return kbt_finish(&st);
}
