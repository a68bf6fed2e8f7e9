/* Progress reporting for long work: a one-line bar with rate and ETA on a TTY,
 * plain periodic lines otherwise (logs, CI). Writes to stderr. */
#ifndef KB_PROGRESS_H
#define KB_PROGRESS_H

#include <stdint.h>

typedef struct {
    char label[64];
    int64_t total;
    int64_t done;
    double t_start;
    double t_last_print;
    int is_tty;
    int quiet;
    char extra[128]; /* e.g. "loss 0.1234" shown after the counters */
} kb_progress;

/* Wall clock in seconds (monotonic). */
double kb_now(void);

void kb_progress_start(kb_progress *p, const char *label, int64_t total, int quiet);
/* Sets the current count; prints at most ~10 times/s on a TTY, every 10 s otherwise. */
void kb_progress_update(kb_progress *p, int64_t done);
void kb_progress_set_extra(kb_progress *p, const char *extra);
/* Prints the final line with total time. */
void kb_progress_finish(kb_progress *p);

#endif
