/* The training loss on the GPU (kb_diffusion_q_sample_dev, kb_diffusion_loss_dev
 * on a CUDA context) against the CPU reference on the same batch, which
 * tests/test_diffusion.c checks against PyTorch:
 *   - x_t bit-identical (q_sample is two rounded products and a sum)
 *   - per-sample mse and vb, and the batch loss, within 1e-5 relative
 *   - the gradient w.r.t. the model output within 1e-5 of its scale
 *     (exp/log/tanh are CUDA's, an ulp or two from glibc's)
 *   - a second GPU run bit-identical
 * for the learned-range model (t = 0 hits the discretised likelihood, x0 = +-1
 * its open-ended bins) and the MSE-only one. Skipped (77) without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "models/diffusion.h"
#include "nn/rng.h"

enum { B = 6, C = 3, HW = 64 };
static const int kSteps[B] = {0, 1, 10, 500, 999, 0};

typedef struct {
    float x0[B * C * HW], noise[B * C * HW], x_t[B * C * HW];
    float out[B * 2 * C * HW], dout[B * 2 * C * HW];
    float mse[B], vb[B], loss;
} batch;

static void make_batch(batch *h) {
    int64_t n = B * C * HW;
    for (int64_t i = 0; i < n; i++) {
        h->x0[i] = (float)(int)(kb_rng_uniform_at(5, 1, (uint64_t)i) * 256.0f) / 127.5f - 1.0f;
        h->noise[i] = kb_rng_normal_at(5, 2, (uint64_t)i);
    }
    h->x0[0] = -1.0f, h->x0[1] = 1.0f; /* the open-ended bins of the t = 0 likelihood */
    for (int64_t i = 0; i < 2 * n; i++) h->out[i] = kb_rng_normal_at(5, 3, (uint64_t)i);
    for (int b = 0; b < B; b++) /* the v half in [-1, 1], as the model's range */
        for (int64_t i = 0; i < C * HW; i++) h->out[(b * 2 + 1) * C * HW + i] = tanhf(h->out[(b * 2 + 1) * C * HW + i]);
}

/* q_sample and the loss on ctx, from host inputs; results to *r (host). */
static int run(kb_ctx *ctx, const kb_diffusion *d, const batch *in, int learn, batch *r, kb_err *err) {
    size_t n = (size_t)B * C * HW * 4, no = n * (learn ? 2 : 1);
    float *x0 = kb_dev_alloc(ctx, n, err), *ns = kb_dev_alloc(ctx, n, err), *xt = kb_dev_alloc(ctx, n, err);
    float *out = kb_dev_alloc(ctx, no, err), *dout = kb_dev_alloc(ctx, no, err);
    int rc = !x0 || !ns || !xt || !out || !dout || kb_copy_to_dev(ctx, x0, in->x0, n, err) ||
             kb_copy_to_dev(ctx, ns, in->noise, n, err) || kb_copy_to_dev(ctx, out, in->out, no, err) ||
             kb_diffusion_q_sample_dev(ctx, d, x0, ns, kSteps, B, C, HW, xt, err) ||
             kb_diffusion_loss_dev(ctx, d, x0, ns, xt, kSteps, out, learn, B, C, HW, 1.0f, r->mse, r->vb, &r->loss,
                                   dout, err) ||
             kb_copy_to_host(ctx, r->x_t, xt, n, err) || kb_copy_to_host(ctx, r->dout, dout, no, err);
    kb_dev_free(ctx, x0), kb_dev_free(ctx, ns), kb_dev_free(ctx, xt), kb_dev_free(ctx, out), kb_dev_free(ctx, dout);
    return rc ? -1 : 0;
}

static void compare(kbt_state *st, kb_ctx *cpu, kb_ctx *gpu, const kb_diffusion *d, const batch *in, int learn) {
    static batch want, got, again;
    kb_err err = {0};
    const char *what = learn ? "learned range" : "mse only";
    char label[160];
    if (run(cpu, d, in, learn, &want, &err) || run(gpu, d, in, learn, &got, &err) ||
        run(gpu, d, in, learn, &again, &err)) {
        KBT_CHECK(st, 0, what, "%s", err.msg);
        return;
    }
    int64_t n = B * C * HW, no = n * (learn ? 2 : 1);
    snprintf(label, sizeof label, "%s: x_t bit-identical", what);
    kbt_close(st, label, got.x_t, want.x_t, n, 0.0, 0.0);
    snprintf(label, sizeof label, "%s: per-sample mse (rel 1e-5)", what);
    kbt_close(st, label, got.mse, want.mse, B, 0.0, 1e-5);
    snprintf(label, sizeof label, "%s: per-sample vb (rel 1e-5)", what);
    kbt_close(st, label, got.vb, want.vb, B, 1e-30, 1e-5);
    snprintf(label, sizeof label, "%s: loss (rel 1e-5)", what);
    kbt_close(st, label, &got.loss, &want.loss, 1, 0.0, 1e-5);
    snprintf(label, sizeof label, "%s: d model_out (1e-5 of max |ref|)", what);
    kbt_close(st, label, got.dout, want.dout, no, 1e-5 * kbt_max_abs(want.dout, no), 0.0);
    snprintf(label, sizeof label, "%s: second GPU run bit-identical", what);
    KBT_CHECK(st, !memcmp(got.dout, again.dout, (size_t)no * 4) && !memcmp(got.mse, again.mse, sizeof got.mse) &&
                      !memcmp(got.vb, again.vb, sizeof got.vb),
              label, "the gradient or the per-sample terms differ");
}

int main(void) {
    if (!kb_cuda_compiled() || kb_cuda_device_count() == 0) {
        printf("skipped: no GPU (the CUDA diffusion loss needs a CUDA device)\n");
        return KBT_SKIP_CODE;
    }
    kbt_state st = {0, 0};
    kb_err err = {0};
    kb_ctx cpu, gpu;
    kb_diffusion d;
    static batch in;
    if (kb_ctx_init(&cpu, KB_DEV_CPU, NULL, &err) || kb_ctx_init(&gpu, KB_DEV_CUDA, NULL, &err) ||
        kb_diffusion_init(&d, 1000, "", &err)) {
        printf("FAIL set-up: %s\n", err.msg);
        return 1;
    }
    make_batch(&in);
    compare(&st, &cpu, &gpu, &d, &in, 1);
    compare(&st, &cpu, &gpu, &d, &in, 0);
    kb_diffusion_free(&d);
    kb_ctx_free(&gpu);
    kb_ctx_free(&cpu);
    return kbt_finish(&st);
}
