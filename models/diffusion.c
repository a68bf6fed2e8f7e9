/* The float64 diffusion schedule and timestep respacing (ADM/DiT). The
 * arithmetic follows numpy's element order exactly (cumprod is a sequential
 * product, linspace is i*step + start with the last entry set to stop), so
 * the arrays agree with the reference to the last bit or so. */
#include "models/diffusion.h"

#include <ctype.h>
#include <errno.h>
#include <fenv.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void kb_linear_betas(double *betas, int n) {
    double scale = 1000.0 / (double)n;
    double start = scale * 0.0001, stop = scale * 0.02;
    if (n == 1) {
        betas[0] = start;
        return;
    }
    /* numpy.linspace: step = (stop-start)/(n-1); y = i*step + start; y[-1] = stop */
    double step = (stop - start) / (double)(n - 1);
    for (int i = 0; i < n; i++) betas[i] = (double)i * step + start;
    betas[n - 1] = stop;
}

#define KB_SPACE_MAX_COUNT 1000000000L

/* Parses a non-negative decimal count in [s, end), blanks around it allowed
 * as Python's int() (ADM's parser) allows them. A count past 10^9 is held as
 * 10^9, more steps than any schedule has, so it fails as too many rather
 * than as malformed. Signs are refused (ADM silently keeps no steps of a
 * negative section). */
static int parse_count(const char *s, const char *end, long *out) {
    while (s < end && isspace((unsigned char)*s)) s++;
    while (end > s && isspace((unsigned char)end[-1])) end--;
    if (s == end) return -1;
    long v = 0;
    for (const char *p = s; p < end; p++) {
        if (!isdigit((unsigned char)*p)) return -1;
        if (v < KB_SPACE_MAX_COUNT) v = v * 10 + (*p - '0');
    }
    *out = v < KB_SPACE_MAX_COUNT ? v : KB_SPACE_MAX_COUNT;
    return 0;
}

/* "ddimN": the smallest integer stride s whose range(0, T, s) has N entries. */
static int space_ddim(int T, const char *spec, unsigned char *keep, kb_err *err) {
    long want;
    if (parse_count(spec + 4, spec + strlen(spec), &want) != 0)
        return kb_fail(err, "timestep respacing \"%s\": expected ddim<N> with N a positive integer", spec);
    for (int s = 1; s < T; s++) {
        if ((T + s - 1) / s != want) continue;
        for (int i = 0; i < T; i += s) keep[i] = 1;
        return 0;
    }
    return kb_fail(err, "timestep respacing \"%s\": cannot create exactly that many steps out of %d with an integer "
                        "stride", spec, T);
}

/* One section of `size` steps starting at `start`, reduced to `count` steps at
 * a float64 stride, each index rounded half-to-even like Python's round(). */
static void space_section(int start, int size, long count, unsigned char *keep) {
    double stride = count <= 1 ? 1.0 : (double)(size - 1) / (double)(count - 1);
    double cur = 0.0;
    int old_mode = fegetround();
    fesetround(FE_TONEAREST); /* nearbyint rounds ties to even in this mode */
    for (long j = 0; j < count; j++) {
        keep[start + (int)nearbyint(cur)] = 1;
        cur += stride;
    }
    fesetround(old_mode);
}

int kb_space_timesteps(int T, const char *spec, unsigned char *keep, int *n_kept, kb_err *err) {
    if (T < 1) return kb_fail(err, "timestep respacing: num_timesteps must be >= 1, got %d", T);
    memset(keep, 0, (size_t)T);
    if (spec == NULL || spec[0] == '\0') {
        memset(keep, 1, (size_t)T);
    } else if (strncmp(spec, "ddim", 4) == 0) {
        if (space_ddim(T, spec, keep, err) != 0) return -1;
    } else {
        int nsec = 1;
        for (const char *p = spec; *p; p++) nsec += (*p == ',');
        int size_per = T / nsec, extra = T % nsec, start = 0, i = 0;
        for (const char *s = spec;; i++) {
            const char *e = strchr(s, ',');
            if (!e) e = s + strlen(s);
            long count;
            if (parse_count(s, e, &count) != 0)
                return kb_fail(err, "timestep respacing \"%s\": section %d is not a non-negative integer", spec, i);
            int size = size_per + (i < extra ? 1 : 0);
            if (size < count)
                return kb_fail(err, "timestep respacing \"%s\": cannot divide section %d of %d steps into %.*s", spec,
                               i, size, (int)(e - s), s);
            space_section(start, size, count, keep);
            start += size;
            if (*e == '\0') break;
            s = e + 1;
        }
    }
    int n = 0;
    for (int i = 0; i < T; i++) n += keep[i];
    if (n_kept) *n_kept = n;
    return 0;
}

/* Carves the schedule arrays out of one allocation. */
static int alloc_schedule(kb_diffusion *d, int n, kb_err *err) {
    enum { NARR = 16 };
    memset(d, 0, sizeof *d);
    d->storage_ = calloc((size_t)n * NARR, sizeof(double));
    d->timestep_map = calloc((size_t)n, sizeof(int));
    if (!d->storage_ || !d->timestep_map) {
        kb_diffusion_free(d);
        return kb_fail(err, "diffusion schedule: out of memory for %d steps", n);
    }
    double **arrs[NARR] = {&d->betas,
                           &d->log_betas,
                           &d->alphas_cumprod,
                           &d->alphas_cumprod_prev,
                           &d->alphas_cumprod_next,
                           &d->sqrt_alphas_cumprod,
                           &d->sqrt_one_minus_alphas_cumprod,
                           &d->log_one_minus_alphas_cumprod,
                           &d->sqrt_recip_alphas_cumprod,
                           &d->sqrt_recipm1_alphas_cumprod,
                           &d->posterior_variance,
                           &d->posterior_log_variance_clipped,
                           &d->posterior_mean_coef1,
                           &d->posterior_mean_coef2,
                           NULL,
                           NULL};
    for (int k = 0; k < NARR && arrs[k]; k++) *arrs[k] = d->storage_ + (size_t)k * n;
    d->num_steps = n;
    return 0;
}

/* ADM GaussianDiffusion.__init__, array by array, in numpy's operation order. */
static void fill_schedule(kb_diffusion *d) {
    int n = d->num_steps;
    double prod = 1.0;
    for (int i = 0; i < n; i++) {
        double b = d->betas[i], alpha = 1.0 - b;
        prod = i == 0 ? alpha : prod * alpha; /* np.cumprod: sequential */
        d->alphas_cumprod[i] = prod;
        d->log_betas[i] = log(b);
    }
    for (int i = 0; i < n; i++) {
        double b = d->betas[i], ac = d->alphas_cumprod[i];
        double acp = i == 0 ? 1.0 : d->alphas_cumprod[i - 1];
        d->alphas_cumprod_prev[i] = acp;
        d->alphas_cumprod_next[i] = i + 1 < n ? d->alphas_cumprod[i + 1] : 0.0;
        d->sqrt_alphas_cumprod[i] = sqrt(ac);
        d->sqrt_one_minus_alphas_cumprod[i] = sqrt(1.0 - ac);
        d->log_one_minus_alphas_cumprod[i] = log(1.0 - ac);
        d->sqrt_recip_alphas_cumprod[i] = sqrt(1.0 / ac);
        d->sqrt_recipm1_alphas_cumprod[i] = sqrt(1.0 / ac - 1.0);
        d->posterior_variance[i] = b * (1.0 - acp) / (1.0 - ac);
        d->posterior_mean_coef1[i] = b * sqrt(acp) / (1.0 - ac);
        d->posterior_mean_coef2[i] = (1.0 - acp) * sqrt(1.0 - b) / (1.0 - ac);
    }
    /* The posterior variance is 0 at t = 0, so ADM logs a copy whose first
     * entry is replaced by the second. */
    for (int i = 0; i < n; i++) d->posterior_log_variance_clipped[i] = log(d->posterior_variance[i == 0 ? 1 : i]);
}

int kb_diffusion_init_betas(kb_diffusion *d, const double *betas, int n, const int *timestep_map,
                            int original_num_steps, kb_err *err) {
    memset(d, 0, sizeof *d);
    if (n < 2)
        return kb_fail(err, "diffusion schedule: need at least 2 steps (the clipped posterior log-variance reads "
                            "step 1), got %d", n);
    for (int i = 0; i < n; i++)
        if (!(betas[i] > 0.0 && betas[i] <= 1.0))
            return kb_fail(err, "diffusion schedule: beta[%d] = %g, expected 0 < beta <= 1", i, betas[i]);
    if (alloc_schedule(d, n, err) != 0) return -1;
    memcpy(d->betas, betas, (size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) d->timestep_map[i] = timestep_map ? timestep_map[i] : i;
    d->original_num_steps = original_num_steps > 0 ? original_num_steps : n;
    fill_schedule(d);
    return 0;
}

/* DiT's SpacedDiffusion: keep the chosen steps of the base process and give
 * each the beta that reproduces the base alphas_cumprod at the kept steps. */
int kb_diffusion_init(kb_diffusion *d, int num_diffusion_steps, const char *spec, kb_err *err) {
    memset(d, 0, sizeof *d);
    int T = num_diffusion_steps, n_kept = 0, rc = -1;
    if (T < 2) return kb_fail(err, "diffusion: num_diffusion_steps must be >= 2, got %d", T);
    double *base = malloc((size_t)T * sizeof(double));
    double *new_betas = malloc((size_t)T * sizeof(double));
    int *map = malloc((size_t)T * sizeof(int));
    unsigned char *keep = malloc((size_t)T);
    kb_diffusion full;
    memset(&full, 0, sizeof full);
    if (!base || !new_betas || !map || !keep) {
        kb_fail(err, "diffusion: out of memory for %d steps", T);
        goto done;
    }
    kb_linear_betas(base, T);
    if (kb_diffusion_init_betas(&full, base, T, NULL, T, err) != 0) goto done;
    if (kb_space_timesteps(T, spec, keep, &n_kept, err) != 0) goto done;
    double last = 1.0;
    int k = 0;
    for (int i = 0; i < T; i++) {
        if (!keep[i]) continue;
        new_betas[k] = 1.0 - full.alphas_cumprod[i] / last;
        last = full.alphas_cumprod[i];
        map[k++] = i;
    }
    rc = kb_diffusion_init_betas(d, new_betas, n_kept, map, T, err);
    if (rc != 0) kb_fail_wrap(err, "timestep respacing \"%s\"", spec ? spec : "");
done:
    kb_diffusion_free(&full);
    free(base);
    free(new_betas);
    free(map);
    free(keep);
    return rc;
}

void kb_diffusion_free(kb_diffusion *d) {
    if (!d) return;
    free(d->storage_);
    free(d->timestep_map);
    memset(d, 0, sizeof *d);
}

int kb_diffusion_coefs_at(const kb_diffusion *d, int t, kb_diffusion_coefs *c, kb_err *err) {
    if (t < 0 || t >= d->num_steps)
        return kb_fail(err, "diffusion: timestep %d outside [0, %d)", t, d->num_steps);
    c->sqrt_alphas_cumprod = (float)d->sqrt_alphas_cumprod[t];
    c->sqrt_one_minus_alphas_cumprod = (float)d->sqrt_one_minus_alphas_cumprod[t];
    c->sqrt_recip_alphas_cumprod = (float)d->sqrt_recip_alphas_cumprod[t];
    c->sqrt_recipm1_alphas_cumprod = (float)d->sqrt_recipm1_alphas_cumprod[t];
    c->posterior_mean_coef1 = (float)d->posterior_mean_coef1[t];
    c->posterior_mean_coef2 = (float)d->posterior_mean_coef2[t];
    c->min_log = (float)d->posterior_log_variance_clipped[t];
    c->max_log = (float)d->log_betas[t];
    c->alphas_cumprod = (float)d->alphas_cumprod[t];
    c->alphas_cumprod_prev = (float)d->alphas_cumprod_prev[t];
    return 0;
}

kb_diffusion_coefs *kb_diffusion_coefs_batch(const kb_diffusion *d, const int *t, int B, const char *what, kb_err *err) {
    kb_diffusion_coefs *k = malloc((size_t)(B > 0 ? B : 1) * sizeof *k);
    if (!k) {
        kb_fail(err, "%s: out of memory for %d coefficient sets", what, B);
        return NULL;
    }
    for (int b = 0; b < B; b++)
        if (kb_diffusion_coefs_at(d, t[b], &k[b], err)) {
            free(k);
            kb_fail_wrap(err, "%s", what);
            return NULL;
        }
    return k;
}
