/* Basics of nn/tensor.c and nn/backend.c: dtype table, tensor views and
 * kb_tensor_expect messages, the CPU context, device memory helpers, the
 * arena (256-byte alignment, exhaustion message, mark/reset, peak), and a
 * CUDA context request in a build or on a machine without CUDA. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/tensor.h"
#include "tests/kbtest.h"

static void test_tensor(kbt_state *st) {
    KBT_CHECK(st, kb_dtype_size(KB_F32) == 4 && kb_dtype_size(KB_BF16) == 2 && kb_dtype_size(KB_F16) == 2 &&
                      kb_dtype_size(KB_F64) == 8 && kb_dtype_size(KB_I32) == 4 && kb_dtype_size(KB_I64) == 8 &&
                      kb_dtype_size(KB_U8) == 1,
              "dtype sizes", "wrong");
    KBT_CHECK(st, strcmp(kb_dtype_name(KB_BF16), "bf16") == 0 && strcmp(kb_dtype_name((kb_dtype)99), "?") == 0,
              "dtype names", "%s", kb_dtype_name(KB_BF16));
    float buf[24];
    int64_t shape[3] = {2, 3, 4};
    kb_tensor t = kb_tensor_view(buf, KB_F32, KB_DEV_CPU, 3, shape);
    KBT_CHECK(st, kb_numel(&t) == 24 && kb_nbytes(&t) == 96, "numel/nbytes", "%lld", (long long)kb_numel(&t));
    kb_tensor s = kb_tensor_view(buf, KB_F32, KB_DEV_CPU, 0, NULL);
    KBT_CHECK(st, kb_numel(&s) == 1, "rank-0 tensor has one element", "%lld", (long long)kb_numel(&s));
    char d[128];
    kb_tensor_describe(&t, d, sizeof d);
    KBT_CHECK(st, strcmp(d, "[2, 3, 4] f32 cpu") == 0, "describe", "'%s'", d);
    kb_err err = {0};
    KBT_CHECK(st, kb_tensor_expect(&t, KB_F32, 3, (int64_t[]){2, -1, 4}, "x", &err) == 0, "expect with a wildcard",
              "%s", err.msg);
    int rc = kb_tensor_expect(&t, KB_F32, 3, (int64_t[]){2, 5, 4}, "attn.qkv", &err);
    KBT_CHECK(st, rc == -1 && strcmp(err.msg, "attn.qkv: expected [2, 5, 4] f32, got [2, 3, 4] f32 cpu") == 0,
              "expect shape mismatch message", "'%s'", err.msg);
    rc = kb_tensor_expect(&t, KB_BF16, 3, shape, "w", &err);
    KBT_CHECK(st, rc == -1 && strstr(err.msg, "expected [2, 3, 4] bf16, got [2, 3, 4] f32"), "expect dtype mismatch",
              "'%s'", err.msg);
    rc = kb_tensor_expect(&t, KB_F32, 2, shape, "w", &err);
    KBT_CHECK(st, rc == -1 && strstr(err.msg, "expected [2, 3] f32"), "expect rank mismatch", "'%s'", err.msg);
    kb_device dev;
    KBT_CHECK(st, kb_device_parse("cuda", &dev, &err) == 0 && dev == KB_DEV_CUDA, "parse cuda", "%s", err.msg);
    rc = kb_device_parse("tpu", &dev, &err);
    KBT_CHECK(st, rc == -1 && strstr(err.msg, "unknown device 'tpu'"), "parse unknown device", "'%s'", err.msg);
}

static void test_ctx_and_arena(kbt_state *st) {
    kb_ctx ctx;
    kb_err err = {0};
    kb_ctx_opts o = {.threads = 3};
    int rc = kb_ctx_init(&ctx, KB_DEV_CPU, &o, &err);
    KBT_CHECK(st, rc == 0 && ctx.device == KB_DEV_CPU && ctx.threads == 3 && ctx.cuda == NULL, "cpu ctx", "%s",
              err.msg);
    KBT_CHECK(st, kb_ctx_sync(&ctx, &err) == 0, "cpu sync is a no-op", "%s", err.msg);
    kb_ctx dflt;
    rc = kb_ctx_init(&dflt, KB_DEV_CPU, NULL, &err);
    KBT_CHECK(st, rc == 0 && dflt.threads >= 1, "cpu ctx with default options has >= 1 thread", "%d", dflt.threads);
    kb_ctx_free(&dflt);

    uint8_t *p = kb_dev_alloc(&ctx, 1000, &err);
    KBT_CHECK(st, p && ((uintptr_t)p & 255) == 0, "kb_dev_alloc is 256-byte aligned", "%p", (void *)p);
    uint8_t host[1000], back[1000];
    for (int i = 0; i < 1000; i++) host[i] = (uint8_t)i;
    rc = kb_copy_to_dev(&ctx, p, host, 1000, &err) || kb_copy_to_host(&ctx, back, p, 1000, &err);
    KBT_CHECK(st, rc == 0 && memcmp(host, back, 1000) == 0, "copy to device and back", "%s", err.msg);
    rc = kb_dev_zero(&ctx, p, 500, &err) || kb_copy_to_host(&ctx, back, p, 1000, &err);
    KBT_CHECK(st, rc == 0 && back[0] == 0 && back[499] == 0 && back[500] == (uint8_t)500, "kb_dev_zero", "%s",
              err.msg);
    kb_dev_free(&ctx, p);

    kb_arena a;
    rc = kb_arena_init(&a, &ctx, 4096, &err);
    KBT_CHECK(st, rc == 0, "arena init", "%s", err.msg);
    void *x = kb_arena_alloc(&a, 10, &err), *y = kb_arena_alloc(&a, 1, &err);
    KBT_CHECK(st, x && y && ((uintptr_t)x & 255) == 0 && ((uintptr_t)y & 255) == 0 && (uint8_t *)y - (uint8_t *)x == 256,
              "arena allocations are 256-byte aligned and packed", "%p %p", x, y);
    size_t mark = kb_arena_mark(&a);
    void *z = kb_arena_alloc(&a, 1000, &err);
    kb_arena_reset(&a, mark);
    void *z2 = kb_arena_alloc(&a, 1000, &err);
    /* used was 257 (256 + 1); the next block starts at 512 */
    KBT_CHECK(st, mark == 257 && z && z == z2 && kb_arena_mark(&a) == 512 + 1000, "reset to a mark reuses the memory",
              "mark %zu, %p %p, used %zu", mark, z, z2, kb_arena_mark(&a));
    void *big = kb_arena_alloc(&a, 5000, &err);
    KBT_CHECK(st, big == NULL && strstr(err.msg, "arena exhausted: asked for 5000 bytes") &&
                      strstr(err.msg, "of 4096 in use"),
              "exhaustion names the request and the capacity", "'%s'", err.msg);
    KBT_CHECK(st, a.peak >= kb_arena_mark(&a) && a.peak <= 4096, "peak tracks the high-water mark", "%zu", a.peak);
    kb_arena_reset(&a, 0);
    kb_tensor t;
    rc = kb_arena_tensor(&a, KB_BF16, 2, (int64_t[]){3, 5}, &t, &err);
    KBT_CHECK(st, rc == 0 && t.data && t.dtype == KB_BF16 && t.device == KB_DEV_CPU && kb_nbytes(&t) == 30,
              "arena tensor", "%s", err.msg);
    rc = kb_arena_tensor(&a, KB_F32, 2, (int64_t[]){3, -5}, &t, &err);
    KBT_CHECK(st, rc == -1 && strstr(err.msg, "negative dimension -5 at axis 1"), "arena tensor rejects -5", "'%s'",
              err.msg);
    rc = kb_arena_tensor(&a, KB_F32, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}, &t, &err);
    KBT_CHECK(st, rc == -1 && strstr(err.msg, "rank 7"), "arena tensor rejects rank 7", "'%s'", err.msg);
    rc = kb_arena_tensor(&a, KB_F32, 2, (int64_t[]){100, 100}, &t, &err);
    KBT_CHECK(st, rc == -1 && strstr(err.msg, "arena exhausted"), "arena tensor too large", "'%s'", err.msg);
    kb_arena_free(&a);
    kb_ctx_free(&ctx);
}

static void test_cuda_request(kbt_state *st) {
    kb_ctx ctx;
    kb_err err = {0};
    int rc = kb_ctx_init(&ctx, KB_DEV_CUDA, NULL, &err);
    if (!kb_cuda_compiled()) {
        KBT_CHECK(st, rc == -1 && strstr(err.msg, "built without CUDA"),
                  "CUDA ctx in a CPU-only build fails with a clear message", "rc=%d '%s'", rc, err.msg);
        printf("      -> %s\n", err.msg);
    } else if (kb_cuda_device_count() == 0) {
        KBT_CHECK(st, rc == -1 && strstr(err.msg, "no CUDA GPU"), "CUDA ctx without a GPU fails clearly", "'%s'",
                  err.msg);
    } else {
        KBT_CHECK(st, rc == 0 && ctx.cuda != NULL, "CUDA ctx on a machine with a GPU", "%s", err.msg);
    }
    if (rc == 0) kb_ctx_free(&ctx);
}

int main(void) {
    kbt_state st = {0, 0};
    test_tensor(&st);
    test_ctx_and_arena(&st);
    test_cuda_request(&st);
    return kbt_finish(&st);
}
