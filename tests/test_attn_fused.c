/* The fused bf16 attention (nn/ops_attn.h).
 *   test_attn_fused cpu   its reference against the exact fp32 attention of
 *                         models/attention.c (the unfused route on the CPU);
 *   test_attn_fused cuda  the CUDA kernels against that reference and against
 *                         the fp32 attention; skipped (77) without a GPU.
 * Errors are measured relative to the largest magnitude of the tensor
 * compared (atol = tol * max|want|), since single elements of a gradient may
 * sit near zero. Tolerances:
 *  - bf16 reference vs fp32: q, k, v, dout and the probabilities are rounded
 *    to 8-bit mantissas (relative error <= 2^-9 each); outputs are sums of
 *    such products, so about 2^-8 of the largest magnitude: 1e-2 for out,
 *    2e-2 for the gradients, whose ds = p (dp - D) subtracts nearby values;
 *    lse is about the row's largest score, whose two rounded factors put it
 *    within ~2^-8 relative: 4e-3 of max|lse|. What each shape measures is
 *    printed on every run.
 *  - CUDA vs the reference: the same roundings; only the order of the
 *    tensor-core fp32 sums differs (and expf's last ulp), which can tip the
 *    odd value over a bf16 rounding boundary: 4e-3 of the largest magnitude,
 *    lse 1e-4 absolute. Every kernel writes every element it owns (the device
 *    buffers start as NaN), and reruns on the GPU are bit-identical.
 *  - the bf16-storage entry points (*_x16), on each device, given qkv16 =
 *    bf16(qkv): bf16 of the fp32 entry points' out and dqkv, bit for bit, lse
 *    and D unchanged (the fp32 backward given out widened from out16). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "models/attention.h"
#include "nn/backend.h"
#include "nn/ops_attn.h"
#include "nn/ops_scalar.h"
#include "nn/rng.h"

typedef struct {
    int64_t B, T, d, H;
} shape;

/* The shapes: DiT-B/2's head dimension at its 256 tokens, tokens not a
 * multiple of the 64-row tiles, head dimensions padded to 32, 80, 128, and
 * an odd one (33: a bf16 pair half padding, no four-column loads), and 36
 * (16-byte loads of fp32 rows, value pairs of bf16 ones). */
static const shape kShapes[] = {{2, 256, 128, 2}, {2, 17, 32, 2}, {1, 100, 144, 2}, {1, 64, 256, 2}, {3, 130, 96, 3},
                                {1, 70, 66, 2}, {1, 40, 72, 2}};

typedef struct {
    shape s;
    int64_t n_qkv, n_out, n_rows;
    float *qkv, *dout;                           /* inputs */
    float *out32, *dqkv32;                       /* exact fp32 attention */
    float *out, *lse, *dqkv, *delta;             /* bf16 reference */
} problem;

static float *rand_buf(int64_t n, uint64_t stream, float sd) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = kb_rng_normal_scaled(11, stream, (uint64_t)i, 0.0f, sd);
    return p;
}

/* got against want within tol of want's largest magnitude. */
static void close_scaled(kbt_state *st, const char *what, const shape *s, const float *got, const float *want,
                         int64_t n, double tol) {
    char name[160];
    snprintf(name, sizeof name, "%s B=%lld T=%lld d=%lld H=%lld (tol %.0e of max %.3g)", what, (long long)s->B,
             (long long)s->T, (long long)s->d, (long long)s->H, tol, kbt_max_abs(want, n));
    kbt_close(st, name, got, want, n, tol * kbt_max_abs(want, n), 0.0);
}

static int problem_init(problem *p, shape s, kb_ctx *cpu, kb_err *err) {
    memset(p, 0, sizeof *p);
    p->s = s;
    p->n_qkv = s.B * s.T * 3 * s.d, p->n_out = s.B * s.T * s.d, p->n_rows = s.B * s.H * s.T;
    p->qkv = rand_buf(p->n_qkv, 1, 1.5f); /* scores with sd ~2.25: peaked rows, not uniform ones */
    p->dout = rand_buf(p->n_out, 2, 1.0f);
    p->out32 = malloc(p->n_out * 4), p->dqkv32 = malloc(p->n_qkv * 4);
    p->out = malloc(p->n_out * 4), p->dqkv = malloc(p->n_qkv * 4);
    p->lse = malloc(p->n_rows * 4), p->delta = malloc(p->n_rows * 4);
    int64_t tt = kb_attention_saved_floats(0, s.B, s.T, s.H);
    float *probs = malloc(tt * 4), *s0 = malloc(tt * 4), *s1 = malloc(tt * 4);
    int rc = kb_attention_fwd(cpu, 0, p->out32, probs, s0, p->qkv, s.B, s.T, s.d, s.H, err) ||
             kb_attention_bwd(cpu, 0, p->dqkv32, s0, s1, p->dout, p->out32, p->qkv, probs, s.B, s.T, s.d, s.H, err) ||
             kb_attn_fused_fwd(cpu, p->out, p->lse, p->qkv, s.B, s.T, s.d, s.H, err) ||
             kb_attn_fused_bwd(cpu, p->dqkv, p->delta, p->dout, p->out, p->qkv, p->lse, s.B, s.T, s.d, s.H, err);
    free(probs), free(s0), free(s1);
    return rc;
}

static void problem_free(problem *p) {
    free(p->qkv), free(p->dout), free(p->out32), free(p->dqkv32), free(p->out), free(p->lse), free(p->dqkv);
    free(p->delta);
}

/* lse from the fp32 route: log sum exp of each row of scores, in double. */
static void exact_lse(float *lse, const problem *p) {
    const shape *s = &p->s;
    int64_t hd = s->d / s->H;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->H; h++)
            for (int64_t i = 0; i < s->T; i++) {
                const float *q = p->qkv + (b * s->T + i) * 3 * s->d + h * hd;
                double mx = -INFINITY, sum = 0.0, *sc = malloc((size_t)s->T * sizeof(double));
                for (int64_t j = 0; j < s->T; j++) {
                    const float *k = p->qkv + (b * s->T + j) * 3 * s->d + s->d + h * hd;
                    double dot = 0.0;
                    for (int64_t c = 0; c < hd; c++) dot += (double)q[c] * k[c];
                    sc[j] = dot / sqrt((double)hd);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int64_t j = 0; j < s->T; j++) sum += exp(sc[j] - mx);
                lse[(b * s->H + h) * s->T + i] = (float)(mx + log(sum));
                free(sc);
            }
}

static void *dev_bytes(kb_ctx *g, const void *h, size_t bytes, kb_err *err) {
    void *d = kb_dev_alloc(g, bytes, err);
    if (d && h) kb_copy_to_dev(g, d, h, bytes, err);
    return d;
}

static void *host_bytes(kb_ctx *g, const void *d, size_t bytes, kb_err *err) {
    void *h = malloc(bytes);
    kb_copy_to_host(g, h, d, bytes, err);
    return h;
}

/* The *_x16 entry points on ctx g against its fp32 ones (see the header). */
static void check_x16(kbt_state *st, kb_ctx *g, const problem *p, kb_err *err) {
    const shape *s = &p->s;
    size_t no = (size_t)p->n_out, nq = (size_t)p->n_qkv, nr = (size_t)p->n_rows;
    float *qkv = dev_bytes(g, p->qkv, nq * 4, err), *dout = dev_bytes(g, p->dout, no * 4, err);
    float *out = dev_bytes(g, NULL, no * 4, err), *lse = dev_bytes(g, NULL, nr * 4, err);
    float *lse2 = dev_bytes(g, NULL, nr * 4, err), *dqkv = dev_bytes(g, NULL, nq * 4, err);
    float *delta = dev_bytes(g, NULL, nr * 4, err), *delta2 = dev_bytes(g, NULL, nr * 4, err);
    uint16_t *out16 = dev_bytes(g, NULL, no * 2, err), *dqkv16 = dev_bytes(g, NULL, nq * 2, err);
    uint16_t *h_qkv16 = malloc(nq * 2); /* the x16 forms read qkv as bf16: the values the kernels round to on load */
    for (size_t i = 0; i < nq; i++) h_qkv16[i] = kb_sc_f32_to_bf16(p->qkv[i]);
    uint16_t *qkv16 = dev_bytes(g, h_qkv16, nq * 2, err);
    free(h_qkv16);
    char name[160];
    snprintf(name, sizeof name, "%s x16 forms B=%lld T=%lld d=%lld H=%lld run", g->device == KB_DEV_CUDA ? "cuda" : "cpu",
             (long long)s->B, (long long)s->T, (long long)s->d, (long long)s->H);
    int rc = kb_attn_fused_fwd(g, out, lse, qkv, s->B, s->T, s->d, s->H, err) ||
             kb_attn_fused_fwd_x16(g, out16, lse2, qkv16, s->B, s->T, s->d, s->H, err);
    float *h_out = rc ? NULL : host_bytes(g, out, no * 4, err);
    uint16_t *h_out16 = rc ? NULL : host_bytes(g, out16, no * 2, err);
    uint16_t *dout16 = dev_bytes(g, NULL, no * 2, err);
    if (!rc) { /* the fp32 backward gets the bf16 output and the bf16 dout, widened */
        float *w = malloc(no * 4);
        uint16_t *h_dout16 = malloc(no * 2);
        for (size_t i = 0; i < no; i++) w[i] = kb_sc_bf16_to_f32(h_out16[i]);
        kb_copy_to_dev(g, out, w, no * 4, err);
        for (size_t i = 0; i < no; i++) h_dout16[i] = kb_sc_f32_to_bf16(p->dout[i]), w[i] = kb_sc_bf16_to_f32(h_dout16[i]);
        kb_copy_to_dev(g, dout, w, no * 4, err);
        kb_copy_to_dev(g, dout16, h_dout16, no * 2, err);
        free(w), free(h_dout16);
        rc = kb_attn_fused_bwd(g, dqkv, delta, dout, out, qkv, lse, s->B, s->T, s->d, s->H, err) ||
             kb_attn_fused_bwd_x16(g, dqkv16, delta2, dout16, out16, qkv16, lse, s->B, s->T, s->d, s->H, err);
    }
    KBT_CHECK(st, rc == 0, name, "%s", err->msg);
    if (!rc) {
        float *a = host_bytes(g, lse, nr * 4, err), *b = host_bytes(g, lse2, nr * 4, err);
        float *c = host_bytes(g, delta, nr * 4, err), *d = host_bytes(g, delta2, nr * 4, err);
        float *h_dqkv = host_bytes(g, dqkv, nq * 4, err);
        uint16_t *h_dqkv16 = host_bytes(g, dqkv16, nq * 2, err), *want = malloc(nq * 2);
        int fwd_ok = 1, bwd_ok = 1;
        for (size_t i = 0; i < no; i++) fwd_ok &= h_out16[i] == kb_sc_f32_to_bf16(h_out[i]);
        for (size_t i = 0; i < nq; i++) want[i] = kb_sc_f32_to_bf16(h_dqkv[i]);
        bwd_ok = !memcmp(want, h_dqkv16, nq * 2);
        KBT_CHECK(st, fwd_ok && !memcmp(a, b, nr * 4), "fwd_x16: out16 = bf16(out), lse the same (bits)", "differ");
        KBT_CHECK(st, bwd_ok && !memcmp(c, d, nr * 4),
                  "bwd_x16: dqkv16 = bf16(dqkv) given out16 and dout16, D the same (bits)", "differ");
        free(a), free(b), free(c), free(d), free(h_dqkv), free(h_dqkv16), free(want);
    }
    free(h_out), free(h_out16);
    void *bufs[] = {qkv, dout, out, lse, lse2, dqkv, delta, delta2, out16, dqkv16, qkv16, dout16};
    for (int i = 0; i < 12; i++) kb_dev_free(g, bufs[i]);
}

static int run_cpu(void) {
    kbt_state st = {0, 0};
    kb_ctx cpu;
    kb_err err = {0};
    if (kb_ctx_init(&cpu, KB_DEV_CPU, NULL, &err)) return printf("FAIL cpu context: %s\n", err.msg), 1;
    for (size_t i = 0; i < sizeof kShapes / sizeof kShapes[0]; i++) {
        problem p;
        if (problem_init(&p, kShapes[i], &cpu, &err)) {
            KBT_CHECK(&st, 0, "reference runs", "%s", err.msg);
            problem_free(&p);
            continue;
        }
        float *lse = malloc(p.n_rows * 4);
        exact_lse(lse, &p);
        close_scaled(&st, "bf16 reference out vs fp32", &p.s, p.out, p.out32, p.n_out, 1e-2);
        close_scaled(&st, "bf16 reference lse vs double", &p.s, p.lse, lse, p.n_rows, 4e-3);
        close_scaled(&st, "bf16 reference dqkv vs fp32", &p.s, p.dqkv, p.dqkv32, p.n_qkv, 2e-2);
        check_x16(&st, &cpu, &p, &err);
        free(lse);
        problem_free(&p);
    }
    /* the route is never chosen on the CPU */
    KBT_CHECK(&st, !kb_attn_fused_wanted(&cpu, 64), "no fused route on the CPU", "kb_attn_fused_wanted said 1");
    kb_ctx_free(&cpu);
    return kbt_finish(&st);
}

static float *to_dev(kb_ctx *g, const float *h, int64_t n, kb_err *err) {
    float *d = kb_dev_alloc(g, (size_t)n * 4, err);
    if (d && h) kb_copy_to_dev(g, d, h, (size_t)n * 4, err);
    return d;
}

/* Device buffer of n floats filled with NaN, so anything a kernel leaves unwritten fails the comparison. */
static float *nan_dev(kb_ctx *g, int64_t n, kb_err *err) {
    float *h = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) h[i] = NAN;
    float *d = to_dev(g, h, n, err);
    free(h);
    return d;
}

static float *to_host(kb_ctx *g, const float *d, int64_t n, kb_err *err) {
    float *h = malloc((size_t)n * 4);
    kb_copy_to_host(g, h, d, (size_t)n * 4, err);
    return h;
}

static void cuda_shape(kbt_state *st, kb_ctx *g, const problem *p, kb_err *err) {
    const shape *s = &p->s;
    float *qkv = to_dev(g, p->qkv, p->n_qkv, err), *dout = to_dev(g, p->dout, p->n_out, err);
    float *out = nan_dev(g, p->n_out, err), *lse = nan_dev(g, p->n_rows, err);
    float *dqkv = nan_dev(g, p->n_qkv, err), *delta = nan_dev(g, p->n_rows, err);
    float *hout = NULL, *hlse = NULL, *hdqkv = NULL, *again = NULL;
    if (kb_attn_fused_fwd(g, out, lse, qkv, s->B, s->T, s->d, s->H, err) ||
        kb_attn_fused_bwd(g, dqkv, delta, dout, out, qkv, lse, s->B, s->T, s->d, s->H, err)) {
        KBT_CHECK(st, 0, "fused kernels run", "%s", err->msg);
        goto done;
    }
    hout = to_host(g, out, p->n_out, err), hlse = to_host(g, lse, p->n_rows, err);
    hdqkv = to_host(g, dqkv, p->n_qkv, err);
    close_scaled(st, "cuda out vs bf16 reference", s, hout, p->out, p->n_out, 4e-3);
    kbt_close(st, "cuda lse vs bf16 reference (atol 1e-4)", hlse, p->lse, p->n_rows, 1e-4, 0.0);
    close_scaled(st, "cuda dqkv vs bf16 reference", s, hdqkv, p->dqkv, p->n_qkv, 4e-3);
    close_scaled(st, "cuda out vs fp32", s, hout, p->out32, p->n_out, 1e-2);
    close_scaled(st, "cuda dqkv vs fp32", s, hdqkv, p->dqkv32, p->n_qkv, 2e-2);
    /* a rerun writes the same bits */
    if (kb_attn_fused_bwd(g, dqkv, delta, dout, out, qkv, lse, s->B, s->T, s->d, s->H, err) == 0) {
        again = to_host(g, dqkv, p->n_qkv, err);
        KBT_CHECK(st, !memcmp(again, hdqkv, (size_t)p->n_qkv * 4), "cuda backward rerun bit-identical",
                  "dqkv differs between two runs");
    }
done:
    free(hout), free(hlse), free(hdqkv), free(again);
    float *bufs[] = {qkv, dout, out, lse, dqkv, delta};
    for (int i = 0; i < 6; i++) kb_dev_free(g, bufs[i]);
}

/* One mma.sync through the fragment layouts the kernels assume, against the
 * exact product (small integers and halves: every order of summation gives
 * the same fp32 value). If the GPU disagrees, the kernels are wrong. */
static void check_mma_layout(kbt_state *st, kb_ctx *g, kb_err *err) {
    static const char *how[3] = {"mma.sync m16n8k16 with fragments built by the PTX layouts",
                                 "the same with A and B^T loaded by ldmatrix", "the same with B loaded by ldmatrix.trans"};
    float *d = nan_dev(g, 768, err), *got = NULL;
    if (d && kb_attn_mma_probe(g, d, err) == 0 && (got = to_host(g, d, 768, err))) {
        for (int v = 0; v < 3; v++) {
            int bad = 0;
            for (int r = 0; r < 16; r++)
                for (int n = 0; n < 16; n++) {
                    double want = 0.0;
                    for (int k = 0; k < 16; k++) want += (double)KB_MMA_PROBE_A(r, k) * KB_MMA_PROBE_B(k, n);
                    float have = got[v * 256 + r * 16 + n];
                    if (have != (float)want && bad++ < 4) printf("     %s: D[%d][%d] = %g, want %g\n", how[v], r, n, have, want);
                }
            KBT_CHECK(st, bad == 0, how[v], "%d of 256 elements differ from the exact product", bad);
        }
    } else {
        KBT_CHECK(st, 0, "mma layout probe runs", "%s", err->msg);
    }
    free(got);
    kb_dev_free(g, d);
}

static int run_cuda(void) {
    if (!kb_cuda_compiled() || kb_cuda_device_count() == 0) {
        printf("skipped: no GPU (the fused attention kernels need a CUDA device)\n");
        return KBT_SKIP_CODE;
    }
    kbt_state st = {0, 0};
    kb_ctx cpu, g;
    kb_err err = {0};
    kb_ctx_opts o = {0};
    o.matmul = KB_MATMUL_BF16;
    if (kb_ctx_init(&cpu, KB_DEV_CPU, NULL, &err) || kb_ctx_init(&g, KB_DEV_CUDA, &o, &err))
        return printf("FAIL contexts: %s\n", err.msg), 1;
    if (!kb_attn_fused_cuda_allowed(&g, 64)) {
        printf("skipped: this GPU has no bf16 tensor cores (compute capability < 8.0)\n");
        return KBT_SKIP_CODE;
    }
    KBT_CHECK(&st, kb_attn_fused_wanted(&g, 64) && !kb_attn_fused_wanted(&g, 129), "fused route for hd 64, not 129",
              "kb_attn_fused_wanted disagrees");
    check_mma_layout(&st, &g, &err);
    for (size_t i = 0; i < sizeof kShapes / sizeof kShapes[0]; i++) {
        problem p;
        if (!kb_attn_fused_cuda_allowed(&g, kShapes[i].d / kShapes[i].H)) {
            printf("     head dimension %lld: too little shared memory per block on this GPU, not run\n",
                   (long long)(kShapes[i].d / kShapes[i].H));
            continue;
        }
        if (problem_init(&p, kShapes[i], &cpu, &err)) KBT_CHECK(&st, 0, "reference runs", "%s", err.msg);
        else cuda_shape(&st, &g, &p, &err), check_x16(&st, &g, &p, &err);
        problem_free(&p);
    }
    KBT_CHECK(&st, err.msg[0] == 0, "no CUDA errors", "%s", err.msg);
    kb_ctx_free(&g);
    kb_ctx_free(&cpu);
    return kbt_finish(&st);
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "cpu")) return run_cpu();
    if (argc == 2 && !strcmp(argv[1], "cuda")) return run_cuda();
    fprintf(stderr, "usage: test_attn_fused cpu|cuda\n");
    return 2;
}
