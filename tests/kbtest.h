/* A tiny test harness: named checks with stated tolerances, a summary line
 * "N passed, N failed" at the end, exit 1 on any failure, 77 for "skipped"
 * (ctest's SKIP_RETURN_CODE). */
#ifndef KB_TEST_H
#define KB_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int passed;
    int failed;
} kbt_state;

#define KBT_SKIP_CODE 77

static inline void kbt_report(kbt_state *s, int ok, const char *name, const char *detail) {
    if (ok) s->passed++;
    else s->failed++;
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name, detail && detail[0] ? ": " : "", detail ? detail : "");
    fflush(stdout);
}

/* A condition, with a printf-style detail on failure. */
#define KBT_CHECK(st, cond, name, ...)                                                                             \
    do {                                                                                                           \
        char kbt_buf_[1200] = "";                                                                                   \
        int kbt_ok_ = (cond);                                                                                      \
        if (!kbt_ok_) snprintf(kbt_buf_, sizeof kbt_buf_, __VA_ARGS__);                                            \
        kbt_report((st), kbt_ok_, (name), kbt_buf_);                                                               \
    } while (0)

/* Compares n floats: passes when |a-b| <= atol + rtol*|b| for every element
 * (b is the reference). Prints the worst element either way. */
static inline int kbt_close(kbt_state *s, const char *name, const float *a, const float *b, int64_t n, double atol,
                            double rtol) {
    int64_t worst = -1, bad = 0;
    double worst_ratio = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double tol = atol + rtol * fabs((double)b[i]);
        double ratio = d / (tol > 0 ? tol : 1e-300);
        if (!(d <= tol)) bad++;
        if (!(ratio <= worst_ratio)) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    char detail[256] = "";
    if (worst >= 0 && bad)
        snprintf(detail, sizeof detail, "%lld/%lld outside atol=%.1e rtol=%.1e; worst [%lld] got %.9g want %.9g",
                 (long long)bad, (long long)n, atol, rtol, (long long)worst, a[worst], b[worst]);
    else if (worst >= 0) /* passing: say how close, so measured errors are on record */
        snprintf(detail, sizeof detail, "worst |d| = %.3g (%.2g of tolerance)",
                 fabs((double)a[worst] - (double)b[worst]), worst_ratio);
    kbt_report(s, bad == 0, name, detail);
    return bad == 0;
}

/* The largest |x[i]| (0 for none; NaNs are skipped): the scale tolerances
 * relative to a whole tensor are taken of. */
static inline float kbt_max_abs(const float *x, int64_t n) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* Writes n bytes to path (made or replaced): 0, or -1 when it cannot be
 * opened or written whole. Test files written with chosen bytes. */
static inline int kbt_write_file(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = n ? fwrite(data, 1, n, fp) : 0;
    return (fclose(fp) || w != n) ? -1 : 0;
}

/* Prints "N passed, N failed" and returns the process exit code. */
static inline int kbt_finish(kbt_state *s) {
    printf("%d passed, %d failed\n", s->passed, s->failed);
    return s->failed ? 1 : 0;
}

#endif
