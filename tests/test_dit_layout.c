/* The forward-only activation layout (a DiT without gradients: one slot of
 * per-block buffers, two of the residual stream) against the layout kept for
 * backward: the same weights and inputs give bit-identical outputs at odd
 * and even depth, the allocation is several times smaller, and a model
 * without gradients refuses backward. Runs on the CPU, or on the GPU with
 * the argument `cuda` (skipped, 77, without one); each with the default
 * attention route, again with the fused one (nn/ops_attn.h), whose saved
 * buffers are sized differently, and with the fused one and bf16 activations
 * (half-size slots for six tensors per block). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "models/dit.h"
#include "nn/rng.h"

/* Every parameter from N(0, 0.1): DiT's own init zeroes adaLN and the final
 * layer, which would make every output zero whatever the layout. */
static int randomise(kb_dit *m, uint64_t seed, kb_err *err) {
    size_t n = m->params.total;
    float *host = malloc(n * sizeof(float));
    if (!host) return kb_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++) host[i] = kb_rng_normal_scaled(seed, 0, i, 0.0f, 0.1f);
    int rc = kb_copy_to_dev(m->ctx, m->params.data, host, n * sizeof(float), err);
    free(host);
    return rc;
}

typedef struct {
    float *x, *t, *out; /* device */
    int32_t *y;
} batch;

static int batch_make(kb_ctx *ctx, const kb_dit_config *c, int B, batch *b, kb_err *err) {
    size_t nx = (size_t)B * c->in_channels * c->input_size * c->input_size;
    size_t nout = (size_t)B * kb_dit_out_channels(c) * c->input_size * c->input_size;
    float *x = malloc(nx * sizeof(float)), t[8];
    int32_t y[8];
    if (!x || B > 8) return free(x), kb_fail(err, "batch setup");
    for (size_t i = 0; i < nx; i++) x[i] = kb_rng_normal_scaled(7, 1, i, 0.0f, 1.0f);
    for (int i = 0; i < B; i++) t[i] = (float)(100 * i + 17), y[i] = i % (c->num_classes + 1); /* incl. the null class */
    memset(b, 0, sizeof *b);
    b->x = kb_dev_alloc(ctx, nx * sizeof(float), err), b->out = kb_dev_alloc(ctx, nout * sizeof(float), err);
    b->t = kb_dev_alloc(ctx, (size_t)B * sizeof(float), err), b->y = kb_dev_alloc(ctx, (size_t)B * sizeof(int32_t), err);
    int rc = !b->x || !b->out || !b->t || !b->y || kb_copy_to_dev(ctx, b->x, x, nx * sizeof(float), err) ||
             kb_copy_to_dev(ctx, b->t, t, (size_t)B * sizeof(float), err) ||
             kb_copy_to_dev(ctx, b->y, y, (size_t)B * sizeof(int32_t), err);
    free(x);
    return rc ? -1 : 0;
}

static void batch_free(kb_ctx *ctx, batch *b) {
    kb_dev_free(ctx, b->x), kb_dev_free(ctx, b->t), kb_dev_free(ctx, b->out), kb_dev_free(ctx, b->y);
}

/* Forward of one model on the batch; the output copied to `host`. */
static int forward(kb_dit *m, batch *b, int B, float *host, size_t n, size_t *act_floats, kb_err *err) {
    if (kb_dit_forward(m, b->x, b->t, b->y, B, b->out, err) || kb_copy_to_host(m->ctx, host, b->out, n * sizeof(float), err))
        return -1;
    *act_floats = m->acts.floats;
    return 0;
}

/* Returns the kept layout's size in floats (0 when the models could not run). */
static size_t check_depth(kbt_state *st, kb_ctx *ctx, int depth, const char *route, int want_bf16) {
    kb_err err = {0};
    kb_dit_config c = kb_dit_config_default();
    c.input_size = 8, c.patch_size = 2, c.in_channels = 3, c.hidden_size = 32, c.num_heads = 4, c.depth = depth;
    c.num_classes = 5;
    const int B = 3;
    size_t n = (size_t)B * kb_dit_out_channels(&c) * c.input_size * c.input_size, keep_floats = 0, fwd_floats = 0;
    float *out_keep = malloc(n * sizeof(float)), *out_fwd = malloc(n * sizeof(float));
    kb_dit keep = {0}, fwd = {0};
    batch b = {0};
    char name[160];
    int rc = kb_dit_create(&keep, ctx, &c, 1, 3, &err) || kb_dit_create(&fwd, ctx, &c, 0, 3, &err) ||
             randomise(&keep, 11, &err) || randomise(&fwd, 11, &err) || batch_make(ctx, &c, B, &b, &err) ||
             forward(&keep, &b, B, out_keep, n, &keep_floats, &err) || forward(&fwd, &b, B, out_fwd, n, &fwd_floats, &err);
    snprintf(name, sizeof name, "%s, depth %d: forward runs in both layouts", route, depth);
    KBT_CHECK(st, !rc, name, "%s", err.msg);
    if (!rc) {
        snprintf(name, sizeof name, "%s, depth %d: forward-only output bit-identical to the kept layout", route, depth);
        KBT_CHECK(st, !memcmp(out_keep, out_fwd, n * sizeof(float)), name, "outputs differ");
        snprintf(name, sizeof name, "%s, depth %d: forward-only activations smaller", route, depth);
        KBT_CHECK(st, depth < 2 || fwd_floats * 2 < keep_floats, name, "%zu floats vs %zu kept", fwd_floats, keep_floats);
        printf("     depth %d: activations %zu floats forward-only, %zu kept for backward\n", depth, fwd_floats,
               keep_floats);
        kb_err e2 = {0};
        snprintf(name, sizeof name, "%s, depth %d: bf16 activations %s", route, depth, want_bf16 ? "on" : "off");
        KBT_CHECK(st, keep.acts.bf16 == want_bf16 && fwd.acts.bf16 == want_bf16, name, "acts.bf16 = %d / %d",
                  keep.acts.bf16, fwd.acts.bf16);
        snprintf(name, sizeof name, "%s, depth %d: backward refused without gradients", route, depth);
        KBT_CHECK(st, kb_dit_backward(&fwd, b.out, b.y, B, &e2) != 0 && strstr(e2.msg, "without gradients"), name,
                  "got '%s'", e2.msg);
    }
    batch_free(ctx, &b);
    kb_dit_free(&keep), kb_dit_free(&fwd);
    free(out_keep), free(out_fwd);
    return rc ? 0 : keep_floats;
}

int main(int argc, char **argv) {
    kb_device dev = argc > 1 && !strcmp(argv[1], "cuda") ? KB_DEV_CUDA : KB_DEV_CPU;
    if (dev == KB_DEV_CUDA && kb_cuda_device_count() == 0) {
        printf("skipped: no GPU\n");
        return KBT_SKIP_CODE;
    }
    kbt_state st = {0, 0};
    const kb_attention_route routes[] = {KB_ATTN_AUTO, KB_ATTN_FUSED, KB_ATTN_FUSED};
    const kb_act_storage acts[] = {KB_ACTS_AUTO, KB_ACTS_F32, KB_ACTS_BF16};
    const char *names[] = {"default attention", "fused attention", "fused attention, bf16 activations"};
    size_t kept[3][5] = {{0}};
    for (int r = 0; r < 3; r++) {
        kb_err err = {0};
        kb_ctx ctx;
        kb_ctx_opts o = {.attention = routes[r], .activations = acts[r]};
        if (kb_ctx_init(&ctx, dev, &o, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        for (int depth = 1; depth <= 4; depth++) kept[r][depth] = check_depth(&st, &ctx, depth, names[r], r == 2);
        kb_ctx_free(&ctx);
    }
    for (int depth = 1; depth <= 4; depth++) /* six tensors per block at half size */
        KBT_CHECK(&st, kept[2][depth] && kept[2][depth] < kept[1][depth], "bf16 activations: a smaller kept layout",
                  "depth %d: %zu floats against %zu with fp32 activations", depth, kept[2][depth], kept[1][depth]);
    printf("%d passed, %d failed\n", st.passed, st.failed);
    return st.failed ? 1 : 0;
}
