/* models/diffusion*.c against tests/ref/diffusion_ref.py (an independent
 * PyTorch re-implementation of ADM/DiT's formulas: float64 numpy schedule,
 * float32 torch tensors). Fixtures: $KB_FIXTURES/diffusion/<name>.bin, raw
 * little-endian, described by manifest.txt ("name dtype ndim dims...").
 *
 * Tolerances (stated per check; every check also prints what it measured):
 *   schedule and respaced schedules  rel <= 1e-12 (double)
 *   timestep maps, CFG               exact (bitwise)
 *   q_sample                         rel <= 1e-6
 *   loss, per-sample mse and vb      rel <= 1e-5
 *   d loss / d model_out             max|err| <= 1e-4 * max|ref|, per half
 *   DDPM / DDIM steps                |err| <= 1e-6 + 1e-5 |ref|
 *   whole sampling loops             |err| <= 1e-5 + 1e-5 |ref| */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "kbtest.h"
#include "models/diffusion.h"

/* ------------------------------------------------------------ fixtures */
typedef struct {
    void *data;
    int64_t n;
    int ndim;
    int64_t dims[8];
} fx_tensor;

static char g_dir[1024];

/* Loads fixture `name` of dtype "f32"/"f64"/"i32"; exits the test on any mismatch. */
static fx_tensor fx(const char *name, const char *dtype) {
    fx_tensor t;
    memset(&t, 0, sizeof t);
    char path[1200], line[512];
    snprintf(path, sizeof path, "%s/manifest.txt", g_dir);
    FILE *m = fopen(path, "r");
    if (!m) {
        fprintf(stderr, "cannot open %s (did the diffusion_fixtures fixture run?)\n", path);
        exit(1);
    }
    int found = 0;
    while (fgets(line, sizeof line, m)) {
        char nm[256], dt[8];
        int off = 0;
        if (sscanf(line, "%255s %7s %d%n", nm, dt, &t.ndim, &off) != 3 || strcmp(nm, name) != 0) continue;
        if (strcmp(dt, dtype) != 0 || t.ndim > 8) {
            fprintf(stderr, "fixture %s: dtype %s ndim %d, expected %s\n", name, dt, t.ndim, dtype);
            exit(1);
        }
        t.n = 1;
        char *p = line + off;
        for (int i = 0; i < t.ndim; i++) {
            t.dims[i] = strtoll(p, &p, 10);
            t.n *= t.dims[i];
        }
        found = 1;
        break;
    }
    fclose(m);
    if (!found) {
        fprintf(stderr, "fixture %s not in the manifest\n", name);
        exit(1);
    }
    size_t es = strcmp(dtype, "f64") == 0 ? 8 : 4;
    snprintf(path, sizeof path, "%s/%s.bin", g_dir, name);
    FILE *f = fopen(path, "rb");
    t.data = malloc((size_t)t.n * es + 1);
    if (!f || !t.data || fread(t.data, es, (size_t)t.n, f) != (size_t)t.n) {
        fprintf(stderr, "fixture %s: cannot read %lld elements from %s\n", name, (long long)t.n, path);
        exit(1);
    }
    fclose(f);
    return t;
}
#define F32(t) ((float *)(t).data)
#define F64(t) ((double *)(t).data)
#define I32(t) ((int *)(t).data)

/* ------------------------------------------------------------ comparisons */
static double max_rel_d(const double *a, const double *b, int64_t n) {
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / (fabs(b[i]) > 0 ? fabs(b[i]) : 1.0);
        if (!(d <= w)) w = d;
    }
    return w;
}

static double max_rel_f(const float *a, const float *b, int64_t n) {
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) > 0 ? fabs((double)b[i]) : 1.0);
        if (!(d <= w)) w = d;
    }
    return w;
}

static void check_rel_d(kbt_state *s, const char *name, const double *a, const double *b, int64_t n, double tol) {
    double e = max_rel_d(a, b, n);
    KBT_CHECK(s, e <= tol, name, "max rel err %.3g > %.1g", e, tol);
    printf("      %-34s max rel err %.3g (tol %.0e)\n", name, e, tol);
}

static void check_rel_f(kbt_state *s, const char *name, const float *a, const float *b, int64_t n, double tol) {
    double e = max_rel_f(a, b, n);
    KBT_CHECK(s, e <= tol, name, "max rel err %.3g > %.1g", e, tol);
    printf("      %-34s max rel err %.3g (tol %.0e)\n", name, e, tol);
}

/* max|a-b| <= tol * max|b| */
static void check_maxabs(kbt_state *s, const char *name, const float *a, const float *b, int64_t n, double tol) {
    double e = 0.0, r = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = d;
        if (fabs((double)b[i]) > r) r = fabs((double)b[i]);
    }
    KBT_CHECK(s, e <= tol * r, name, "max abs err %.3g > %.1g * max|ref| %.3g", e, tol, r);
    printf("      %-34s max abs err / max|ref| = %.3g (tol %.0e)\n", name, r > 0 ? e / r : e, tol);
}

/* kbt_close plus a printed measurement */
static void check_close(kbt_state *s, const char *name, const float *a, const float *b, int64_t n, double atol,
                        double rtol) {
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(d <= w)) w = d;
    }
    kbt_close(s, name, a, b, n, atol, rtol);
    printf("      %-34s worst |err|/(atol+rtol|ref|) = %.3g (atol %.0e rtol %.0e)\n", name, w, atol, rtol);
}

static void check_bits(kbt_state *s, const char *name, const float *a, const float *b, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    KBT_CHECK(s, bad == 0, name, "%lld of %lld elements differ in bits", (long long)bad, (long long)n);
}

/* ------------------------------------------------------------ schedule */
static void test_schedule(kbt_state *s) {
    kb_err err = {0};
    kb_diffusion d;
    int rc = kb_diffusion_init(&d, 1000, "", &err);
    KBT_CHECK(s, rc == 0 && d.num_steps == 1000, "schedule: init 1000 steps", "%.300s", err.msg);
    if (rc) return;
    fx_tensor base = fx("base_betas", "f64");
    double lin[1000];
    kb_linear_betas(lin, 1000);
    check_rel_d(s, "schedule: linspace betas", lin, F64(base), 1000, 1e-12);
    struct {
        const char *name;
        const double *arr;
    } arrs[] = {{"sched_betas", d.betas},
                {"sched_ac", d.alphas_cumprod},
                {"sched_ac_prev", d.alphas_cumprod_prev},
                {"sched_ac_next", d.alphas_cumprod_next},
                {"sched_sqrt_ac", d.sqrt_alphas_cumprod},
                {"sched_sqrt_1m_ac", d.sqrt_one_minus_alphas_cumprod},
                {"sched_log_1m_ac", d.log_one_minus_alphas_cumprod},
                {"sched_sqrt_recip_ac", d.sqrt_recip_alphas_cumprod},
                {"sched_sqrt_recipm1_ac", d.sqrt_recipm1_alphas_cumprod},
                {"sched_post_var", d.posterior_variance},
                {"sched_post_logvar_clipped", d.posterior_log_variance_clipped},
                {"sched_coef1", d.posterior_mean_coef1},
                {"sched_coef2", d.posterior_mean_coef2},
                {"sched_log_betas", d.log_betas}};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
        fx_tensor r = fx(arrs[i].name, "f64");
        char nm[96];
        snprintf(nm, sizeof nm, "schedule: %s", arrs[i].name + 6);
        check_rel_d(s, nm, arrs[i].arr, F64(r), 1000, 1e-12);
        free(r.data);
    }
    int ident = 1;
    for (int i = 0; i < 1000; i++) ident &= d.timestep_map[i] == i;
    KBT_CHECK(s, ident, "schedule: identity timestep_map for \"\"", "map differs");
    /* DiT's training betas are re-derived through SpacedDiffusion: not linspace's bits */
    KBT_CHECK(s, d.posterior_log_variance_clipped[0] == d.posterior_log_variance_clipped[1],
              "schedule: clipped log variance[0] == [1]", "%.17g vs %.17g", d.posterior_log_variance_clipped[0],
              d.posterior_log_variance_clipped[1]);
    free(base.data);
    kb_diffusion_free(&d);
}

static void test_respacing(kbt_state *s) {
    const char *specs[][2] = {{"250", "250"}, {"25", "25"},         {"ddim50", "ddim50"},
                              {"ddim25", "ddim25"}, {"10,15,20", "multi"}, {"100,1,7", "multi2"}};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        kb_err err = {0};
        kb_diffusion d;
        char nm[128], fxn[64];
        int rc = kb_diffusion_init(&d, 1000, specs[i][0], &err);
        snprintf(fxn, sizeof fxn, "resp_%s_map", specs[i][1]);
        fx_tensor map = fx(fxn, "i32");
        snprintf(nm, sizeof nm, "respacing \"%s\": %lld steps, timestep_map exact", specs[i][0], (long long)map.n);
        KBT_CHECK(s, rc == 0 && d.num_steps == map.n && memcmp(d.timestep_map, map.data, map.n * sizeof(int)) == 0,
                  nm, "rc=%d steps=%d want %lld (%.300s)", rc, d.num_steps, (long long)map.n, err.msg);
        if (rc == 0 && d.num_steps == map.n) {
            const char *fields[] = {"betas", "ac", "plvc", "coef1"};
            const double *arrs[] = {d.betas, d.alphas_cumprod, d.posterior_log_variance_clipped,
                                    d.posterior_mean_coef1};
            for (int k = 0; k < 4; k++) {
                snprintf(fxn, sizeof fxn, "resp_%s_%s", specs[i][1], fields[k]);
                fx_tensor r = fx(fxn, "f64");
                snprintf(nm, sizeof nm, "respacing \"%s\": %s", specs[i][0], fields[k]);
                check_rel_d(s, nm, arrs[k], F64(r), r.n, 1e-12);
                free(r.data);
            }
        }
        free(map.data);
        kb_diffusion_free(&d);
    }
    /* Python's round() is half-to-even: "25" strides by 41.625 and keeps 166 (166.5), 500 (499.5), 832 (832.5) */
    unsigned char keep[1000];
    int n = 0;
    kb_err err = {0};
    int rc = kb_space_timesteps(1000, "25", keep, &n, &err);
    KBT_CHECK(s, rc == 0 && n == 25 && keep[166] && !keep[167] && keep[500] && !keep[499] && keep[832] && !keep[833],
              "respacing: round half to even", "rc=%d n=%d", rc, n);
    /* blanks around a count are allowed, as Python's int() allows them in ADM's space_timesteps */
    unsigned char keep2[1000];
    int n2 = 0;
    rc = kb_space_timesteps(1000, "10,20", keep, &n, &err) || kb_space_timesteps(1000, " 10 , 20 ", keep2, &n2, &err);
    KBT_CHECK(s, rc == 0 && n == 30 && n2 == 30 && !memcmp(keep, keep2, sizeof keep), "respacing: \" 10 , 20 \" = \"10,20\"",
              "rc=%d n=%d n2=%d %s", rc, n, n2, err.msg);
    rc = kb_space_timesteps(1000, "ddim 50", keep2, &n2, &err) || kb_space_timesteps(1000, "ddim50", keep, &n, &err);
    KBT_CHECK(s, rc == 0 && n == 50 && n2 == 50 && !memcmp(keep, keep2, sizeof keep), "respacing: \"ddim 50\" = \"ddim50\"",
              "rc=%d %s", rc, err.msg);
    /* a huge count is too many steps, not malformed */
    kb_err e3 = {0};
    rc = kb_space_timesteps(1000, "1,100000000000", keep, &n, &e3);
    KBT_CHECK(s, rc == -1 && strstr(e3.msg, "cannot divide section 1 of 500 steps into 100000000000"),
              "respacing: a count past 10^9 is reported as too many", "%s", e3.msg);
    const char *bad[] = {"ddim3000", "2000", "abc", "250,", "ddim", "10,-5", "+250", "ddim100000000000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kb_err e2 = {0};
        char nm[96];
        snprintf(nm, sizeof nm, "respacing: \"%s\" rejected", bad[i]);
        rc = kb_space_timesteps(1000, bad[i], keep, &n, &e2);
        KBT_CHECK(s, rc == -1 && e2.msg[0], nm, "rc=%d", rc);
        if (rc == -1) printf("      message: %s\n", e2.msg);
    }
}

/* ------------------------------------------------------------ training loss */
static void test_loss_case(kbt_state *s, const kb_diffusion *d, const char *tag) {
    char nm[128];
#define FX(var, suffix, dt)                                                                                            \
    snprintf(nm, sizeof nm, "%s_%s", tag, suffix);                                                                     \
    fx_tensor var = fx(nm, dt)
    FX(x0, "x0", "f32");
    FX(noise, "noise", "f32");
    FX(out, "out", "f32");
    FX(tt, "t", "i32");
    FX(xt_ref, "xt", "f32");
    FX(mse_ref, "mse", "f32");
    FX(vb_ref, "vb", "f32");
    FX(loss_ref, "loss", "f32");
    FX(grad_ref, "grad", "f32");
#undef FX
    int B = (int)x0.dims[0], C = (int)x0.dims[1];
    int64_t HW = x0.dims[2] * x0.dims[3], n = (int64_t)B * C * HW;
    float *xt = malloc(n * sizeof(float)), *grad = malloc(2 * n * sizeof(float));
    float *mse = malloc(B * sizeof(float)), *vb = malloc(B * sizeof(float)), loss = 0.0f;
    kb_err err = {0};
    int rc = kb_diffusion_q_sample(d, F32(x0), F32(noise), I32(tt), B, C, HW, xt, &err);
    snprintf(nm, sizeof nm, "%s [B=%d C=%d HW=%lld]: q_sample", tag, B, C, (long long)HW);
    KBT_CHECK(s, rc == 0, nm, "%.300s", err.msg);
    check_rel_f(s, nm, xt, F32(xt_ref), n, 1e-6);
    /* the loss is computed from the reference x_t, the model's actual input */
    rc = kb_diffusion_loss_fwd(d, F32(x0), F32(noise), F32(xt_ref), I32(tt), F32(out), B, C, HW, mse, vb, &loss, &err);
    KBT_CHECK(s, rc == 0, "loss fwd runs", "%.300s", err.msg);
    snprintf(nm, sizeof nm, "%s: per-sample mse", tag);
    check_rel_f(s, nm, mse, F32(mse_ref), B, 1e-5);
    snprintf(nm, sizeof nm, "%s: per-sample vb (bits)", tag);
    check_rel_f(s, nm, vb, F32(vb_ref), B, 1e-5);
    snprintf(nm, sizeof nm, "%s: batch-mean loss", tag);
    check_rel_f(s, nm, &loss, F32(loss_ref), 1, 1e-5);
    for (int b = 0; b < B; b++)
        printf("      t=%-4d mse %.7g (ref %.7g)  vb %.7g (ref %.7g)\n", I32(tt)[b], mse[b], F32(mse_ref)[b], vb[b],
               F32(vb_ref)[b]);
    rc = kb_diffusion_loss_bwd(d, F32(x0), F32(noise), F32(xt_ref), I32(tt), F32(out), B, C, HW, 1.0f, grad, &err);
    KBT_CHECK(s, rc == 0, "loss bwd runs", "%.300s", err.msg);
    /* the eps and v halves have different scales: compare each on its own */
    float *ge = malloc(n * sizeof(float)), *gv = malloc(n * sizeof(float));
    float *re = malloc(n * sizeof(float)), *rv = malloc(n * sizeof(float));
    int64_t per = (int64_t)C * HW;
    for (int b = 0; b < B; b++) {
        memcpy(ge + b * per, grad + 2 * b * per, per * sizeof(float));
        memcpy(gv + b * per, grad + (2 * b + 1) * per, per * sizeof(float));
        memcpy(re + b * per, F32(grad_ref) + 2 * b * per, per * sizeof(float));
        memcpy(rv + b * per, F32(grad_ref) + (2 * b + 1) * per, per * sizeof(float));
    }
    snprintf(nm, sizeof nm, "%s: d loss/d eps", tag);
    check_maxabs(s, nm, ge, re, n, 1e-4);
    snprintf(nm, sizeof nm, "%s: d loss/d v", tag);
    check_maxabs(s, nm, gv, rv, n, 1e-4);
    /* Per sample (the t == 0 NLL branch and the t > 0 KL branch, each on its
     * own scale), elementwise |err_i| <= 1e-4 max|ref_b| + floor_i. The floor
     * is float32's conditioning, which the PyTorch reference shares:
     * dv = (g max_log - g min_log)/2 with g = dterm/dL2, and at large t
     * max_log = log beta ~ min_log = log beta~, so the two products (size
     * |g log beta|) cancel to |g| |dlog|/2, dlog = max_log - min_log. With
     * |g_i| = 2 |ref_i| / |dlog| read back from the reference:
     *   floor_i = 2^-22 (|g_i| |log beta_t| + g_vb |dlog|)
     * i.e. 4 float32 ulps of each product plus 4 ulps of g's unit-size terms. */
    float g_vb = (1.0f / (float)B / 0.693147180559945309f) / (float)per;
    for (int b = 0; b < B; b++) {
        kb_diffusion_coefs k;
        kb_diffusion_coefs_at(d, I32(tt)[b], &k, NULL);
        double dlog = fabs((double)k.max_log - k.min_log), lb = fabs((double)k.max_log), r = 0.0;
        for (int64_t i = 0; i < per; i++)
            if (fabs((double)rv[b * per + i]) > r) r = fabs((double)rv[b * per + i]);
        double worst = 0.0, worst_e = 0.0;
        int bad = 0;
        for (int64_t i = 0; i < per; i++) {
            double ref = rv[b * per + i], e = fabs((double)gv[b * per + i] - ref);
            double gi = 2.0 * fabs(ref) / dlog, tol = 1e-4 * r + ldexp(gi * lb + g_vb * dlog, -22);
            bad += !(e <= tol);
            if (!(e / tol <= worst)) worst = e / tol;
            if (e > worst_e) worst_e = e;
        }
        snprintf(nm, sizeof nm, "%s: d loss/d v, sample %d (t=%d)", tag, b, I32(tt)[b]);
        KBT_CHECK(s, bad == 0, nm, "%d elements outside tolerance, worst err/tol %.3g", bad, worst);
        printf("      %-34s max abs err %.3g = %.3g x max|ref_b|; worst err/tol %.3g\n", nm, worst_e,
               r > 0 ? worst_e / r : 0.0, worst);
    }
    /* dloss scales linearly (micro-batching) */
    float *g2 = malloc(2 * n * sizeof(float));
    kb_diffusion_loss_bwd(d, F32(x0), F32(noise), F32(xt_ref), I32(tt), F32(out), B, C, HW, 0.25f, g2, &err);
    int lin = 1;
    for (int64_t i = 0; i < 2 * n; i++) lin &= fabsf(g2[i] - 0.25f * grad[i]) <= 1e-6f * fabsf(grad[i]) + 1e-30f;
    snprintf(nm, sizeof nm, "%s: dloss=0.25 scales the gradient", tag);
    KBT_CHECK(s, lin, nm, "not linear in dloss");
    free(g2);
    free(ge), free(gv), free(re), free(rv);
    free(xt), free(grad), free(mse), free(vb);
    free(x0.data), free(noise.data), free(out.data), free(tt.data), free(xt_ref.data);
    free(mse_ref.data), free(vb_ref.data), free(loss_ref.data), free(grad_ref.data);
}

/* With eps = the true noise and v = -1 (log var = the true posterior's), the
 * KL is 0 up to float32 rounding and its gradient vanishes. */
static void test_loss_analytic(kbt_state *s, const kb_diffusion *d) {
    enum { B = 4, C = 3, HW = 64 };
    int t[B] = {1, 10, 500, 999};
    static float x0[B * C * HW], noise[B * C * HW], xt[B * C * HW], out[B * 2 * C * HW], grad[B * 2 * C * HW];
    for (int i = 0; i < B * C * HW; i++) {
        x0[i] = (float)((i * 37) % 256) / 127.5f - 1.0f;
        noise[i] = sinf(0.7f * (float)i) * 1.5f;
    }
    kb_err err = {0};
    kb_diffusion_q_sample(d, x0, noise, t, B, C, HW, xt, &err);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < C * HW; i++) {
            out[(2 * b) * C * HW + i] = noise[b * C * HW + i];
            out[(2 * b + 1) * C * HW + i] = -1.0f;
        }
    float mse[B], vb[B], loss;
    kb_diffusion_loss_fwd(d, x0, noise, xt, t, out, B, C, HW, mse, vb, &loss, &err);
    kb_diffusion_loss_bwd(d, x0, noise, xt, t, out, B, C, HW, 1.0f, grad, &err);
    double worst_vb = 0.0, worst_g = 0.0;
    for (int b = 0; b < B; b++) {
        if (fabs(vb[b]) > worst_vb) worst_vb = fabs(vb[b]);
        for (int i = 0; i < 2 * C * HW; i++)
            if (fabs(grad[b * 2 * C * HW + i]) > worst_g) worst_g = fabs(grad[b * 2 * C * HW + i]);
    }
    KBT_CHECK(s, mse[0] == 0 && mse[3] == 0, "analytic: mse == 0 with the true eps", "mse %g %g", mse[0], mse[3]);
    KBT_CHECK(s, worst_vb <= 1e-6, "analytic: KL ~ 0 with true eps and true variance", "max |vb| %.3g bits",
              worst_vb);
    printf("      max |vb| %.3g bits, max |grad| %.3g\n", worst_vb, worst_g);
    KBT_CHECK(s, worst_g <= 1e-8, "analytic: gradient ~ 0 at the optimum", "max |grad| %.3g", worst_g);
    /* moving v away from -1 raises the KL (the minimum is at the true variance) */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < C * HW; i++) out[(2 * b + 1) * C * HW + i] = 0.0f;
    float vb2[B];
    kb_diffusion_loss_fwd(d, x0, noise, xt, t, out, B, C, HW, NULL, vb2, NULL, &err);
    KBT_CHECK(s, vb2[0] > 1e-3f && vb2[1] > vb[1] && vb2[2] > vb[2], "analytic: KL grows away from the true variance",
              "vb %g %g %g", vb2[0], vb2[1], vb2[2]);
    int bad_t[1] = {1000};
    int rc = kb_diffusion_loss_fwd(d, x0, noise, xt, bad_t, out, 1, C, HW, NULL, NULL, &loss, &err);
    KBT_CHECK(s, rc == -1 && strstr(err.msg, "1000"), "loss: t out of range rejected", "rc=%d msg=%.300s", rc, err.msg);
}

/* ------------------------------------------------------------ samplers */
static void test_ddpm(kbt_state *s, const char *tag, int clip) {
    kb_err err = {0};
    kb_diffusion d;
    kb_diffusion_init(&d, 1000, "250", &err);
    char nm[128];
#define FX(var, suffix, dt)                                                                                            \
    snprintf(nm, sizeof nm, "%s_%s", tag, suffix);                                                                     \
    fx_tensor var = fx(nm, dt)
    FX(x, "x", "f32");
    FX(out, "out", "f32");
    FX(noise, "noise", "f32");
    FX(tt, "t", "i32");
    FX(mean_ref, "mean", "f32");
    FX(lv_ref, "logvar", "f32");
    FX(pred_ref, "pred", "f32");
    FX(xprev_ref, "xprev", "f32");
#undef FX
    int B = (int)x.dims[0], C = (int)x.dims[1];
    int64_t HW = x.dims[2] * x.dims[3], n = x.n;
    float *mean = malloc(n * 4), *lv = malloc(n * 4), *pred = malloc(n * 4), *xp = malloc(n * 4);
    int rc = kb_ddpm_step(&d, F32(out), F32(x), I32(tt), F32(noise), clip, B, C, HW, xp, mean, lv, pred, &err);
    snprintf(nm, sizeof nm, "%s (\"250\", clip=%d): step runs", tag, clip);
    KBT_CHECK(s, rc == 0, nm, "%.300s", err.msg);
    snprintf(nm, sizeof nm, "%s: pred_xstart", tag);
    check_close(s, nm, pred, F32(pred_ref), n, 1e-6, 1e-5);
    snprintf(nm, sizeof nm, "%s: posterior mean", tag);
    check_close(s, nm, mean, F32(mean_ref), n, 1e-6, 1e-5);
    snprintf(nm, sizeof nm, "%s: log variance", tag);
    check_close(s, nm, lv, F32(lv_ref), n, 1e-6, 1e-5);
    snprintf(nm, sizeof nm, "%s: x_prev", tag);
    check_close(s, nm, xp, F32(xprev_ref), n, 1e-6, 1e-5);
    /* in place: x_prev aliasing x_t */
    float *xi = malloc(n * 4);
    memcpy(xi, x.data, n * 4);
    kb_ddpm_step(&d, F32(out), xi, I32(tt), F32(noise), clip, B, C, HW, xi, NULL, NULL, NULL, &err);
    snprintf(nm, sizeof nm, "%s: in place == out of place", tag);
    check_bits(s, nm, xi, xp, n);
    free(xi), free(mean), free(lv), free(pred), free(xp);
    free(x.data), free(out.data), free(noise.data), free(tt.data), free(mean_ref.data), free(lv_ref.data);
    free(pred_ref.data), free(xprev_ref.data);
    kb_diffusion_free(&d);
}

static void test_ddim(kbt_state *s, const char *tag, float eta, int clip) {
    kb_err err = {0};
    kb_diffusion d;
    kb_diffusion_init(&d, 1000, "ddim50", &err);
    char nm[128];
#define FX(var, suffix, dt)                                                                                            \
    snprintf(nm, sizeof nm, "%s_%s", tag, suffix);                                                                     \
    fx_tensor var = fx(nm, dt)
    FX(x, "x", "f32");
    FX(out, "out", "f32");
    FX(noise, "noise", "f32");
    FX(tt, "t", "i32");
    FX(mean_ref, "mean", "f32");
    FX(sigma_ref, "sigma", "f32");
    FX(pred_ref, "pred", "f32");
    FX(xprev_ref, "xprev", "f32");
#undef FX
    int B = (int)x.dims[0], C = (int)x.dims[1];
    int64_t HW = x.dims[2] * x.dims[3], n = x.n;
    float *mean = malloc(n * 4), *sigma = malloc(B * 4), *pred = malloc(n * 4), *xp = malloc(n * 4);
    int rc =
        kb_ddim_step(&d, F32(out), F32(x), I32(tt), F32(noise), eta, clip, B, C, HW, xp, mean, sigma, pred, &err);
    snprintf(nm, sizeof nm, "%s (\"ddim50\", eta=%g, clip=%d): step runs", tag, eta, clip);
    KBT_CHECK(s, rc == 0, nm, "%.300s", err.msg);
    snprintf(nm, sizeof nm, "%s: pred_xstart", tag);
    check_close(s, nm, pred, F32(pred_ref), n, 1e-6, 1e-5);
    snprintf(nm, sizeof nm, "%s: mean", tag);
    check_close(s, nm, mean, F32(mean_ref), n, 1e-6, 1e-5);
    snprintf(nm, sizeof nm, "%s: sigma", tag);
    check_close(s, nm, sigma, F32(sigma_ref), B, 1e-7, 1e-5);
    snprintf(nm, sizeof nm, "%s: x_prev", tag);
    check_close(s, nm, xp, F32(xprev_ref), n, 1e-6, 1e-5);
    free(mean), free(sigma), free(pred), free(xp);
    free(x.data), free(out.data), free(noise.data), free(tt.data), free(mean_ref.data), free(sigma_ref.data);
    free(pred_ref.data), free(xprev_ref.data);
    kb_diffusion_free(&d);
}

static void test_cfg(kbt_state *s) {
    fx_tensor mo = fx("cfg_model_out", "f32");
    int B2 = (int)mo.dims[0], B = B2 / 2, C2 = (int)mo.dims[1];
    int64_t HW = mo.dims[2] * mo.dims[3], half = (int64_t)B * C2 * HW;
    const float *cond = F32(mo), *uncond = F32(mo) + half;
    const char *stags[] = {"s4", "s15", "s03"};
    float scales[] = {4.0f, 1.5f, 0.3f};
    kb_cfg_mode modes[] = {KB_CFG_DIT, KB_CFG_ALL};
    const char *mtags[] = {"dit", "all"};
    float *o = malloc(half * 4), *inplace = malloc(half * 4);
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < 3; k++) {
            char nm[96];
            snprintf(nm, sizeof nm, "cfg_%s_%s", mtags[m], stags[k]);
            fx_tensor ref = fx(nm, "f32");
            int g = kb_cfg_guided_channels(modes[m], C2 / 2);
            kb_err err = {0};
            int rc = kb_cfg_combine(cond, uncond, scales[k], g, B, C2, HW, o, &err);
            snprintf(nm, sizeof nm, "cfg %s (guided %d of %d channels) scale %g: exact", mtags[m], g, C2, scales[k]);
            KBT_CHECK(s, rc == 0, nm, "%.300s", err.msg);
            check_bits(s, nm, o, F32(ref), half);
            memcpy(inplace, cond, half * 4);
            kb_cfg_combine(inplace, uncond, scales[k], g, B, C2, HW, inplace, &err);
            snprintf(nm, sizeof nm, "cfg %s scale %g: in place on cond", mtags[m], scales[k]);
            check_bits(s, nm, inplace, F32(ref), half);
            free(ref.data);
        }
    KBT_CHECK(s, kb_cfg_guided_channels(KB_CFG_DIT, 4) == 3 && kb_cfg_guided_channels(KB_CFG_ALL, 4) == 4,
              "cfg: guided channels dit=3, all=4 for latents", "got %d %d", kb_cfg_guided_channels(KB_CFG_DIT, 4),
              kb_cfg_guided_channels(KB_CFG_ALL, 4));
    free(o), free(inplace), free(mo.data);
}

/* ------------------------------------------------------------ loops */
typedef struct {
    const float *noise; /* [steps, n] */
    const int *tcalls;
    int calls, bad_t;
    float vconst[3];
} loop_ctx;

/* The fixture's toy model: eps = 0.9 x_t, v = a per-channel constant. */
static int toy_model(void *user, const float *x_t, const int *t_model, int B, int C, int64_t HW, float *out,
                     kb_err *err) {
    loop_ctx *lc = user;
    for (int b = 0; b < B; b++) {
        if (t_model[b] != lc->tcalls[lc->calls]) lc->bad_t++;
        for (int c = 0; c < C; c++)
            for (int64_t p = 0; p < HW; p++) {
                out[((int64_t)b * 2 * C + c) * HW + p] = x_t[((int64_t)b * C + c) * HW + p] * 0.9f;
                out[((int64_t)b * 2 * C + C + c) * HW + p] = lc->vconst[c];
            }
    }
    lc->calls++;
    return 0;
}

static int fixture_noise(void *user, int step, float *noise, int64_t n, kb_err *err) {
    loop_ctx *lc = user;
    memcpy(noise, lc->noise + (int64_t)step * n, (size_t)n * sizeof(float));
    return 0;
}

static void test_loop(kbt_state *s, const char *tag, const char *spec, kb_sampler sampler, float eta) {
    kb_err err = {0};
    kb_diffusion d;
    kb_diffusion_init(&d, 1000, spec, &err);
    char nm[128];
    snprintf(nm, sizeof nm, "%s_xT", tag);
    fx_tensor xT = fx(nm, "f32");
    snprintf(nm, sizeof nm, "%s_noise", tag);
    fx_tensor noise = fx(nm, "f32");
    snprintf(nm, sizeof nm, "%s_tcalls", tag);
    fx_tensor tc = fx(nm, "i32");
    snprintf(nm, sizeof nm, "%s_x0", tag);
    fx_tensor x0 = fx(nm, "f32");
    int B = (int)xT.dims[0], C = (int)xT.dims[1];
    int64_t HW = xT.dims[2] * xT.dims[3];
    loop_ctx lc = {F32(noise), I32(tc), 0, 0, {-0.5f, 0.0f, 0.75f}};
    kb_sample_opts opts = {sampler, eta, 0, fixture_noise, &lc, 0, 0};
    float *x = malloc(xT.n * 4);
    memcpy(x, xT.data, xT.n * 4);
    int rc = kb_diffusion_sample_loop(&d, toy_model, &lc, &opts, B, C, HW, x, &err);
    snprintf(nm, sizeof nm, "loop %s (\"%s\"): %d model calls at the mapped t", tag, spec, d.num_steps);
    KBT_CHECK(s, rc == 0 && lc.calls == d.num_steps && lc.bad_t == 0, nm, "rc=%d calls=%d bad_t=%d %.300s", rc, lc.calls,
              lc.bad_t, err.msg);
    snprintf(nm, sizeof nm, "loop %s: x_0", tag);
    check_close(s, nm, x, F32(x0), x0.n, 1e-5, 1e-5);
    free(x), free(xT.data), free(noise.data), free(tc.data), free(x0.data);
    kb_diffusion_free(&d);
}

/* The default noise (Philox) is a pure function of (seed, stream): reruns match bit for bit. */
static void test_loop_philox(kbt_state *s) {
    kb_err err = {0};
    kb_diffusion d;
    kb_diffusion_init(&d, 1000, "ddim10", &err);
    enum { B = 2, C = 3, HW = 16, N = B * C * HW };
    int tcalls[10];
    for (int i = 0; i < 10; i++) tcalls[i] = d.timestep_map[9 - i];
    float a[N], b[N];
    kb_sample_opts opts = {KB_SAMPLER_DDPM, 0.0f, 1, NULL, NULL, 1234, 7};
    for (int r = 0; r < 2; r++) {
        float *x = r ? b : a;
        loop_ctx lc = {NULL, tcalls, 0, 0, {0.1f, -0.2f, 0.3f}};
        kb_sample_init_noise(&opts, x, N);
        kb_diffusion_sample_loop(&d, toy_model, &lc, &opts, B, C, HW, x, &err);
    }
    int finite = 1;
    for (int i = 0; i < N; i++) finite &= isfinite(a[i]) && a[i] >= -1.5f && a[i] <= 1.5f;
    check_bits(s, "loop: Philox noise reruns bit-identical", a, b, N);
    KBT_CHECK(s, finite, "loop: clipped DDPM samples finite and bounded", "non-finite or out of range");
    kb_diffusion_free(&d);
}

/* The OpenMP element loops and the noise give the same bits at any thread
 * count: a batch large enough to run in parallel, with 1 and 3 threads. */
static void test_threads_invariance(kbt_state *s) {
    kb_err err = {0};
    kb_diffusion d;
    kb_diffusion_init(&d, 1000, "ddim10", &err);
    enum { B = 5, C = 4, HW = 32 * 32, N = B * C * HW };
    int t[B] = {9, 5, 0, 3, 7};
    static float out[2 * N], x[N], noise[N], res[2][3][N];
    kb_sample_opts opts = {KB_SAMPLER_DDPM, 0.0f, 0, NULL, NULL, 99, 3};
    kb_sample_init_noise(&opts, out, 2 * N);
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(r ? 3 : 1);
        kb_sample_init_noise(&opts, x, N);
        opts.seed = 100, kb_sample_init_noise(&opts, noise, N), opts.seed = 99;
        kb_ddpm_step(&d, out, x, t, noise, 1, B, C, HW, res[r][0], NULL, NULL, NULL, &err);
        kb_ddim_step(&d, out, x, t, noise, 0.5f, 0, B, C, HW, res[r][1], NULL, NULL, NULL, &err);
        memcpy(res[r][2], x, sizeof x);
    }
    omp_set_num_threads(omp_get_num_procs());
    check_bits(s, "x_T noise: 1 and 3 threads bit-identical", res[1][2], res[0][2], N);
    check_bits(s, "ddpm step: 1 and 3 threads bit-identical", res[1][0], res[0][0], N);
    check_bits(s, "ddim step: 1 and 3 threads bit-identical", res[1][1], res[0][1], N);
    KBT_CHECK(s, err.msg[0] == 0, "steps run", "%s", err.msg);
    kb_diffusion_free(&d);
}

int main(void) {
    const char *fxdir = getenv("KB_FIXTURES");
    if (!fxdir) {
        fprintf(stderr, "KB_FIXTURES is not set (run through ctest)\n");
        return KBT_SKIP_CODE;
    }
    snprintf(g_dir, sizeof g_dir, "%s/diffusion", fxdir);
    kbt_state s = {0, 0};
    test_schedule(&s);
    test_respacing(&s);
    kb_err err = {0};
    kb_diffusion train;
    if (kb_diffusion_init(&train, 1000, NULL, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_loss_case(&s, &train, "lossA");
    test_loss_case(&s, &train, "lossB");
    test_loss_analytic(&s, &train);
    kb_diffusion_free(&train);
    test_ddpm(&s, "ddpm", 0);
    test_ddpm(&s, "ddpmclip", 1);
    test_ddim(&s, "ddim0", 0.0f, 0);
    test_ddim(&s, "ddim05", 0.5f, 0);
    test_ddim(&s, "ddim05clip", 0.5f, 1);
    test_cfg(&s);
    test_loop(&s, "loopddpm", "25", KB_SAMPLER_DDPM, 0.0f);
    test_loop(&s, "loopddim", "ddim10", KB_SAMPLER_DDIM, 0.5f);
    test_loop_philox(&s);
    test_threads_invariance(&s);
    return kbt_finish(&s);
}
