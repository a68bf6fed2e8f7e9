/* Writes small DiT checkpoints for tests/test_sample_cli.sh (not a test):
 *   sample_mkckpt OUT [--no-ema] [--channels N [--classes K] [--size S] [--no-dropout]]
 * Default: the dit_ref fixture's model ($KB_FIXTURES/dit_ref.safetensors,
 * 3 channels, 8x8, 5 classes) with its weights as the raw weights and its
 * weights after 10 AdamW steps as the EMA, so that --weights ema and raw
 * differ. --channels N: a freshly initialised model of N channels instead
 * (5 classes of 8x8 unless --classes/--size say otherwise); --no-dropout:
 * built without label dropout, so with no null class for guidance. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/checkpoint.h"
#include "nn/safetensors.h"

static int load_group(kb_st_file *f, kb_params *ps, const char *prefix, float *dst, kb_err *err) {
    for (int i = 0; i < ps->count; i++) {
        char name[200];
        snprintf(name, sizeof name, "%s.%s", prefix, ps->items[i].name);
        if (kb_st_read_f32(f, name, ps->items[i].ndim, ps->items[i].shape, dst + ps->items[i].offset,
                           ps->items[i].numel, err))
            return -1;
    }
    return 0;
}

static int make(const char *out, int ema, int channels, int classes, int size, int dropout, kb_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/dit_ref.safetensors", getenv("KB_FIXTURES") ? getenv("KB_FIXTURES") : ".");
    kb_ctx ctx;
    kb_dit m;
    kb_optim opt;
    memset(&m, 0, sizeof m);
    kb_dit_config cfg = kb_dit_config_default();
    kb_st_file *f = channels ? NULL : kb_st_open(path, err);
    if (!channels && (!f || kb_dit_config_from_json(kb_st_meta(f, "config"), &cfg, err))) return -1;
    if (channels) {
        cfg.input_size = size, cfg.patch_size = size / 4, cfg.hidden_size = 32, cfg.depth = 1, cfg.num_heads = 2;
        cfg.num_classes = classes, cfg.in_channels = channels;
        if (!dropout) cfg.class_dropout = 0.0f;
    }
    kb_optim_config oc = kb_optim_config_default();
    int have_opt = 0, rc = kb_ctx_init(&ctx, KB_DEV_CPU, NULL, err) || kb_dit_create(&m, &ctx, &cfg, 0, 1, err);
    if (!rc && f) rc = load_group(f, &m.params, "param", m.params.data, err);
    if (!rc && ema) rc = kb_optim_init(&opt, &m.params, &oc, err), have_opt = !rc;
    if (!rc && ema && f) rc = load_group(f, &m.params, "final", opt.ema, err);
    if (!rc) rc = kb_checkpoint_save(out, &m, ema ? &opt : NULL, NULL, err);
    if (have_opt) kb_optim_free(&opt);
    kb_dit_free(&m);
    kb_ctx_free(&ctx);
    if (f) kb_st_close(f);
    return rc ? -1 : 0;
}

int main(int argc, char **argv) {
    kb_err err = {0};
    int ema = 1, channels = 0, classes = 5, size = 8, dropout = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--no-ema")) ema = 0;
        else if (!strcmp(argv[i], "--channels") && i + 1 < argc) channels = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--classes") && i + 1 < argc) classes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-dropout")) dropout = 0;
    }
    if (argc < 2) return fprintf(stderr, "usage: sample_mkckpt OUT [--no-ema] [--channels N]\n"), 2;
    if (make(argv[1], ema, channels, classes, size, dropout, &err)) return fprintf(stderr, "sample_mkckpt: %s\n", err.msg), 1;
    return 0;
}
