#define _POSIX_C_SOURCE 200809L
#include "util/progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double kb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void kb_progress_start(kb_progress *p, const char *label, int64_t total, int quiet) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->t_start = p->t_last_print = kb_now();
    p->is_tty = isatty(fileno(stderr));
    p->quiet = quiet;
}

void kb_progress_set_extra(kb_progress *p, const char *extra) { snprintf(p->extra, sizeof p->extra, "%s", extra); }

static void format_eta(double s, char *out, size_t n) {
    if (s < 0 || s > 1e7) {
        snprintf(out, n, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, n, "%02d:%02d", t / 60, t % 60);
}

static void print_line(kb_progress *p, double now, int final) {
    double el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0.0;
    double eta = (rate > 0 && p->total > 0) ? (double)(p->total - p->done) / rate : -1;
    char eta_s[32];
    format_eta(final ? el : eta, eta_s, sizeof eta_s);
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 0.0;
    if (p->is_tty) {
        char bar[31];
        int filled = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %lld/%lld %.1f/s %s %s %s%s", p->label, bar, (long long)p->done,
                (long long)p->total, rate, final ? "took" : "eta", eta_s, p->extra, final ? "\033[K\n" : "\033[K");
    } else {
        fprintf(stderr, "%s: %lld/%lld (%.0f%%) %.1f/s %s %s %s\n", p->label, (long long)p->done,
                (long long)p->total, 100.0 * frac, rate, final ? "took" : "eta", eta_s, p->extra);
    }
    fflush(stderr);
}

void kb_progress_update(kb_progress *p, int64_t done) {
    p->done = done;
    if (p->quiet) return;
    double now = kb_now();
    double every = p->is_tty ? 0.1 : 10.0;
    if (now - p->t_last_print < every) return;
    p->t_last_print = now;
    print_line(p, now, 0);
}

void kb_progress_finish(kb_progress *p) {
    if (p->quiet) return;
    print_line(p, kb_now(), 1);
}
