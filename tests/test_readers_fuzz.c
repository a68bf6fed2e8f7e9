/* Fuzzing the binary readers that take files from users, in-process: every
 * truncation and thousands of mutants (tests/kbfuzz.h, fixed seed) of small
 * valid files written here must each give a clean error (a non-empty
 * message) or a result whose every byte can be read — never a crash, a hang,
 * or (under ASan, which CI runs: scripts/sanitize.sh) an out-of-bounds read
 * or a leak.
 *
 * Readers: .npy (in memory), .npz entries and the statistics reader on top
 * of it (an ADM reference batch; kindbench's own file with features,
 * spectrum and meta), safetensors (checkpoints), dataset caches (.kbd),
 * PNG, JPEG (baseline, progressive, greyscale, CMYK) and GIF (interlaced,
 * two frames, a transparent index), DiT checkpoints (inspect, the training record that
 * --resume reads, weights, EMA and moments). PNG mutants get their chunk
 * CRCs recomputed so that libpng parses the damaged chunk instead of
 * stopping at its checksum; half the safetensors and cache mutants damage
 * only the JSON header and get its length rewritten, so that the metadata
 * reaches the readers.
 *
 * Usage: test_readers_fuzz [MUTANTS per file, default 1500 [SEED, default 0]] */
#include <gif_lib.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>
#include <zlib.h>

#include "datasets/dataset.h"
#include "datasets/image_io.h"
#include "kbfuzz.h"
#include "kbtest.h"
#include "test_cache_small.h"
#include "metrics/refstats.h"
#include "models/checkpoint.h"
#include "models/train.h"
#include "models/train_internal.h"
#include "nn/safetensors.h"
#include "util/fileio.h"
#include "util/npy.h"

typedef struct {
    long runs, ok, errors, bad_messages;
    uint64_t checksum; /* of every byte an accepted result exposes: makes ASan see them read */
} tally;

static void touch(tally *t, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) t->checksum = t->checksum * 31 + b[i];
}

static void count_result(tally *t, int rc, const kb_err *err) {
    t->runs++;
    if (rc == 0) t->ok++;
    else if (t->errors++, !err->msg[0]) t->bad_messages++;
}

/* ---- one parse per reader: rc 0 only when the whole result was readable ---- */

static int parse_npy(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    kb_npy a;
    if (kb_npy_parse(d, n, "mutant.npy", &a, err)) return -1;
    touch(t, a.data, (size_t)a.numel * kb_dtype_size(a.dtype));
    kb_npy_free(&a);
    return 0;
}

static int parse_npz(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    if (kbt_write_file("fuzz.npz", d, n)) return kb_fail(err, "cannot write fuzz.npz");
    char **names;
    int count, rc = 0;
    if (kb_npz_names("fuzz.npz", &names, &count, err)) return -1;
    for (int i = 0; i < count && rc == 0; i++) {
        kb_npy a;
        if ((rc = kb_npz_read("fuzz.npz", names[i], &a, err)) == 0) {
            touch(t, a.data, (size_t)a.numel * kb_dtype_size(a.dtype));
            kb_npy_free(&a);
        }
    }
    kb_npz_names_free(names, count);
    return rc;
}

static void touch_gstats(tally *t, const kb_gstats *g) {
    touch(t, g->mu, (size_t)g->dim * sizeof(double));
    touch(t, g->sigma, (size_t)g->dim * (size_t)g->dim * sizeof(double));
}

static int parse_stats_at(const char *path, tally *t, kb_err *err) {
    kb_evalset s;
    kb_evalset_init(&s, "reference", path);
    int rc = kb_evalset_read_npz(path, 1, &s, err);
    if (rc == 0) {
        if (s.has_pool_stats) touch_gstats(t, &s.pool_stats);
        if (s.has_spatial_stats) touch_gstats(t, &s.spatial_stats);
        if (s.feat.pool) touch(t, s.feat.pool, (size_t)(s.feat.n * s.feat.pool_dim) * sizeof(float));
        if (s.feat.logits) touch(t, s.feat.logits, (size_t)(s.feat.n * s.feat.logits_dim) * sizeof(float));
        if (s.spectrum) touch(t, s.spectrum, (size_t)s.spectrum_bins * sizeof(double));
    }
    kb_evalset_free(&s);
    return rc;
}

static int parse_stats(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    if (kbt_write_file("fuzz_stats.npz", d, n)) return kb_fail(err, "cannot write fuzz_stats.npz");
    return parse_stats_at("fuzz_stats.npz", t, err);
}

static int parse_safetensors(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    if (kbt_write_file("fuzz.safetensors", d, n)) return kb_fail(err, "cannot write fuzz.safetensors");
    kb_st_file *f = kb_st_open("fuzz.safetensors", err);
    if (!f) return -1;
    int rc = 0;
    for (int i = 0; i < kb_st_count(f) && rc == 0; i++) {
        const kb_st_tensor *info = kb_st_at(f, i);
        void *data = NULL;
        if ((rc = kb_st_read_alloc(f, info->name, info->dtype, &info, &data, err)) == 0)
            touch(t, data, (size_t)info->numel * kb_dtype_size(info->dtype));
        free(data);
    }
    for (int i = 0; i < kb_st_meta_count(f); i++) {
        const char *k, *v;
        kb_st_meta_at(f, i, &k, &v);
        touch(t, k, strlen(k)), touch(t, v, strlen(v));
    }
    kb_st_close(f);
    return rc;
}

static int parse_cache(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    if (kbt_write_file("fuzz.kbd", d, n)) return kb_fail(err, "cannot write fuzz.kbd");
    kb_dataset ds;
    if (kb_dataset_open(&ds, "fuzz.kbd", err)) return -1;
    for (int64_t i = 0; i < ds.count; i++) {
        touch(t, kb_dataset_image(&ds, i), kb_dataset_image_bytes(&ds));
        int32_t y = kb_dataset_label(&ds, i);
        touch(t, &y, sizeof y);
        kb_split sp = kb_dataset_split(&ds, i);
        touch(t, &sp, sizeof sp);
    }
    for (int c = 0; c < ds.nclasses; c++) touch(t, ds.class_names[c], strlen(ds.class_names[c]));
    kb_dataset_close(&ds);
    return 0;
}

/* A checkpoint as `kindbench sample` and `train --resume` read it: the
 * header and metadata (inspect), the training record (resume options), then
 * the weights, EMA and AdamW moments into a model of the tiny config below. */
typedef struct {
    kb_ctx ctx;
    kb_dit m;
    kb_optim opt;
} tiny_model;
static tiny_model g_tiny;

static int parse_checkpoint(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    if (kbt_write_file("fuzz_ckpt.safetensors", d, n)) return kb_fail(err, "cannot write fuzz_ckpt.safetensors");
    kb_checkpoint_info info;
    if (kb_checkpoint_inspect("fuzz_ckpt.safetensors", &info, err)) return -1;
    kb_train_opts o;
    kb_train_opts_default(&o);
    o.resume = "fuzz_ckpt.safetensors";
    cJSON *train = NULL;
    int rc = kb_train_resume_options(&o, &info, &train, err);
    if (rc == 0) touch(t, &o.cfg, sizeof o.cfg), touch(t, o.data_path, strlen(o.data_path));
    cJSON_Delete(train);
    kb_checkpoint_info_free(&info);
    if (rc == 0) rc = kb_checkpoint_load("fuzz_ckpt.safetensors", &g_tiny.m, &g_tiny.opt, 0, err);
    if (rc == 0) rc = kb_checkpoint_load("fuzz_ckpt.safetensors", &g_tiny.m, NULL, 1, err);
    return rc;
}

/* PNG, JPEG and GIF through the one entry point that picks the decoder by
 * content; the path's extension is what users' folders have. */
static int parse_image_as(const char *path, const uint8_t *d, size_t n, tally *t, kb_err *err) {
    if (kbt_write_file(path, d, n)) return kb_fail(err, "cannot write %s", path);
    kb_image img;
    if (kb_image_read(path, &img, err)) return -1;
    touch(t, img.px, (size_t)img.width * img.height * img.channels);
    kb_image_free(&img);
    return 0;
}
static int parse_png(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    return parse_image_as("fuzz.png", d, n, t, err);
}
static int parse_jpeg(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    return parse_image_as("fuzz.jpg", d, n, t, err);
}
static int parse_gif(const uint8_t *d, size_t n, tally *t, kb_err *err) {
    return parse_image_as("fuzz.gif", d, n, t, err);
}

/* ---- valid files ---- */

typedef struct {
    uint8_t *p;
    size_t n;
} blob;

static blob slurp(const char *path) {
    blob b = {0};
    kb_err err = {0};
    if (kb_read_file(path, &b.p, &b.n, &err)) printf("FAIL reading back %s: %s\n", path, err.msg), b.p = NULL;
    return b;
}

static double g_sigma[16] = {4, 1, 0, 0, 1, 3, 0.5, 0, 0, 0.5, 2, 0.25, 0, 0, 0.25, 1};
static double g_mu[4] = {0.5, -1, 2, 0};
static uint8_t g_pixels[2 * 8 * 8 * 3];

static blob make_npy(void) {
    int64_t shape[2] = {4, 4};
    kb_npy a = kb_npy_view(KB_F64, 2, shape, g_sigma);
    kb_err err = {0};
    blob b = {0};
    if (kb_npy_write("base.npy", &a, &err) == 0) b = slurp("base.npy");
    return b;
}

/* arr_0, mu, sigma, mu_s and sigma_s as an ADM reference batch holds them. */
static blob make_stats_npz(const char *path) {
    int64_t s_mu[1] = {4}, s_sigma[2] = {4, 4}, s_img[4] = {2, 8, 8, 3};
    kb_npz_entry e[5] = {{"arr_0", kb_npy_view(KB_U8, 4, s_img, g_pixels)},
                         {"mu", kb_npy_view(KB_F64, 1, s_mu, g_mu)},
                         {"sigma", kb_npy_view(KB_F64, 2, s_sigma, g_sigma)},
                         {"mu_s", kb_npy_view(KB_F64, 1, s_mu, g_mu)},
                         {"sigma_s", kb_npy_view(KB_F64, 2, s_sigma, g_sigma)}};
    kb_err err = {0};
    blob b = {0};
    if (kb_npz_write(path, e, 5, &err) == 0) b = slurp(path);
    return b;
}

/* kindbench's own statistics file: pool and spatial statistics, features,
 * a spectrum and the kb_meta record, as `kindbench eval stats` writes it. */
static blob make_own_stats(void) {
    static float pool[3 * 4], logits[3 * 5];
    static double spectrum[6] = {1, 0.5, 0.25, 0.125, -1, 3};
    for (int i = 0; i < 12; i++) pool[i] = (float)i * 0.25f;
    for (int i = 0; i < 15; i++) logits[i] = (float)i - 7.0f;
    kb_evalset s;
    kb_evalset_init(&s, "reference", "base_own.npz");
    s.has_pool_stats = s.has_spatial_stats = 1;
    s.pool_stats = (kb_gstats){4, 3, g_mu, g_sigma};
    s.spatial_stats = (kb_gstats){4, 3, g_mu, g_sigma};
    s.feat = (kb_features){3, 4, 0, 5, pool, NULL, logits};
    s.spectrum_bins = 6, s.spectrum_h = s.spectrum_w = 8, s.spectrum = spectrum;
    snprintf(s.meta.mode, sizeof s.meta.mode, "adm");
    snprintf(s.meta.featurizer, sizeof s.meta.featurizer, "inception-2015-12-05");
    snprintf(s.meta.source, sizeof s.meta.source, "samples/");
    s.meta.count = 3;
    kb_err err = {0};
    blob b = {0};
    if (kb_evalset_write_npz("base_own.npz", &s, 1, NULL, &err) == 0) b = slurp("base_own.npz");
    else printf("FAIL writing base_own.npz: %s\n", err.msg);
    return b; /* s points at static arrays: nothing to free */
}

static blob make_safetensors(void) {
    static const float w[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    static const uint16_t h[4] = {0x3f80, 0xbf80, 0x0000, 0x7f80};
    static const int64_t steps = 12345;
    int64_t s_w[2] = {2, 3}, s_h[1] = {4};
    kb_err err = {0};
    kb_st_writer *wr = kb_st_writer_new(&err);
    blob b = {0};
    if (wr && kb_st_writer_add(wr, "blocks.0.weight", KB_F32, 2, s_w, w, &err) == 0 &&
        kb_st_writer_add(wr, "ema.bias", KB_BF16, 1, s_h, h, &err) == 0 &&
        kb_st_writer_add(wr, "step", KB_I64, 0, NULL, &steps, &err) == 0 &&
        kb_st_writer_meta(wr, "config", "{\"depth\": 2}", &err) == 0 &&
        kb_st_writer_write(wr, "base.safetensors", &err) == 0)
        b = slurp("base.safetensors");
    kb_st_writer_free(wr);
    return b;
}

static blob make_cache(void) {
    kb_err err = {0};
    blob b = {0};
    if (kbt_write_small_cache("base.kbd", &err) == 0) b = slurp("base.kbd");
    else printf("FAIL writing base.kbd: %s\n", err.msg);
    return b;
}

/* The training record `kindbench train` writes (abridged: the resume path
 * reads these fields). */
static const char kTrainJson[] =
    "{\"format\":\"kindbench-train-1\",\"model\":\"custom\",\"config\":{\"input_size\":8,\"in_channels\":1,"
    "\"patch_size\":4,\"hidden_size\":8,\"depth\":1,\"num_heads\":2,\"mlp_ratio\":4,\"num_classes\":3,"
    "\"class_dropout_prob\":0.1,\"learn_sigma\":true,\"frequency_embedding_size\":16},\"optim\":{\"lr\":0.0001,"
    "\"beta1\":0.9,\"beta2\":0.999,\"eps\":1e-08,\"weight_decay\":0,\"clip_norm\":0,\"ema_decay\":0.9999},"
    "\"data\":{\"path\":\"data.kbd\","
    "\"payload_sha256\":\"a8879456817b9b6d9d1dd6246930829c72455da1d644f82d6100825136175bf3\","
    "\"classes\":\"pretrain\",\"split\":\"train\",\"class_map\":[{\"id\":0,\"dataset_class\":0},{\"id\":1,"
    "\"dataset_class\":2},{\"id\":2,\"dataset_class\":5}]},\"seed\":7,\"batch\":2,\"steps\":4,\"flip\":true,"
    "\"log_every\":10,\"ckpt_every\":2,\"keep_checkpoints\":false,\"device\":\"cpu\",\"precision\":\"fp32\","
    "\"threads\":1,\"out\":\"run\",\"state\":{\"step\":2,\"images_seen\":4,\"log_acc\":{\"n\":2,\"loss\":2.0,"
    "\"mse\":1.9,\"vb\":0.1,\"grad_norm\":0.3}}}";

/* The tiny model (its weights, EMA and moments) saved with that record. */
static blob make_checkpoint(void) {
    kb_dit_config cfg = kb_dit_config_default();
    cfg.input_size = 8, cfg.in_channels = 1, cfg.patch_size = 4, cfg.hidden_size = 8, cfg.depth = 1;
    cfg.num_heads = 2, cfg.num_classes = 3, cfg.freq_dim = 16;
    kb_ctx_opts co = {.threads = 1};
    kb_optim_config oc = kb_optim_config_default();
    kb_err err = {0};
    blob b = {0};
    if (kb_ctx_init(&g_tiny.ctx, KB_DEV_CPU, &co, &err) || kb_dit_create(&g_tiny.m, &g_tiny.ctx, &cfg, 1, 3, &err) ||
        kb_optim_init(&g_tiny.opt, &g_tiny.m.params, &oc, &err) ||
        kb_checkpoint_save("base_ckpt.safetensors", &g_tiny.m, &g_tiny.opt, kTrainJson, &err))
        printf("FAIL writing base_ckpt.safetensors: %s\n", err.msg);
    else b = slurp("base_ckpt.safetensors");
    return b;
}

static void free_tiny_model(void) {
    kb_optim_free(&g_tiny.opt);
    kb_dit_free(&g_tiny.m);
    kb_ctx_free(&g_tiny.ctx);
}

/* RGB 8-bit (our writer), a 16-bit grey+alpha image and an RGBA palette
 * image (libpng's simplified writer): the conversions kb_png_read makes. */
static blob make_png(int kind) {
    uint8_t px[6 * 5 * 4];
    uint16_t px16[6 * 5 * 2];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof px16 / 2; i++) px16[i] = (uint16_t)(i * 2111);
    kb_err err = {0};
    blob b = {0};
    if (kind == 0) {
        kb_image img = {6, 5, 3, px};
        if (kb_png_write("base.png", &img, &err) == 0) b = slurp("base.png");
        return b;
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION, im.width = 6, im.height = 5;
    im.format = kind == 1 ? PNG_FORMAT_LINEAR_Y_ALPHA : PNG_FORMAT_RGBA_COLORMAP;
    uint8_t index[6 * 5], cmap[4 * 4] = {0, 0, 0, 0, 255, 0, 0, 128, 0, 255, 0, 255, 9, 9, 9, 255};
    for (size_t i = 0; i < sizeof index; i++) index[i] = (uint8_t)(i % 4);
    im.colormap_entries = 4;
    int ok = kind == 1 ? png_image_write_to_file(&im, "base.png", 0, px16, 0, NULL)
                       : png_image_write_to_file(&im, "base.png", 0, index, 0, cmap);
    png_image_free(&im);
    if (ok) b = slurp("base.png");
    return b;
}

/* A 16x12 JPEG: RGB baseline, RGB progressive, greyscale, or CMYK (with
 * libjpeg's Adobe marker, as ImageNet's few CMYK files have). */
enum { JPEG_RGB, JPEG_PROGRESSIVE, JPEG_GREY, JPEG_CMYK };
static blob make_jpeg(int kind) {
    enum { W = 16, H = 12 };
    static const int comps[] = {3, 3, 1, 4};
    static const J_COLOR_SPACE spaces[] = {JCS_RGB, JCS_RGB, JCS_GRAYSCALE, JCS_CMYK};
    uint8_t row[W * 4];
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *mem = NULL;
    unsigned long size = 0;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &size);
    c.image_width = W, c.image_height = H, c.input_components = comps[kind], c.in_color_space = spaces[kind];
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 85, TRUE);
    if (kind == JPEG_PROGRESSIVE) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W * comps[kind]; x++) row[x] = (uint8_t)(x * 5 + y * 17);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    blob b = {malloc(size), size};
    memcpy(b.p, mem, size);
    free(mem);
    return b;
}

/* Two 7x5 frames on an 8x6 screen, the first interlaced, with a graphics
 * control block naming a transparent index. */
static blob make_gif(void) {
    int gerr = 0;
    GifFileType *g = EGifOpenFileName("base.gif", 0, &gerr);
    blob b = {0};
    if (!g) return b;
    GifColorType colors[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    ColorMapObject *cmap = GifMakeMapObject(4, colors);
    GifByteType line[7];
    GraphicsControlBlock gcb = {.DisposalMode = DISPOSE_BACKGROUND, .TransparentColor = 0};
    GifByteType ext[4];
    size_t extlen = EGifGCBToExtension(&gcb, ext);
    int ok = EGifPutScreenDesc(g, 8, 6, 2, 0, cmap) == GIF_OK;
    for (int f = 0; f < 2 && ok; f++) {
        ok = EGifPutExtension(g, GRAPHICS_EXT_FUNC_CODE, (int)extlen, ext) == GIF_OK &&
             EGifPutImageDesc(g, f, 1, 7, 5, f == 0, NULL) == GIF_OK;
        for (int y = 0; y < 5 && ok; y++) {
            for (int x = 0; x < 7; x++) line[x] = (GifByteType)((x + y + f) % 4);
            ok = EGifPutLine(g, line, 7) == GIF_OK;
        }
    }
    ok = EGifCloseFile(g, &gerr) == GIF_OK && ok;
    GifFreeMapObject(cmap);
    if (ok) b = slurp("base.gif");
    return b;
}

/* ---- mutation and the run ---- */

/* Recomputes every chunk's CRC (length, type, data, CRC after the 8-byte
 * signature) so that the damage reaches the chunk's parser. */
static void png_fix_crcs(uint8_t *m, size_t n) {
    size_t at = 8;
    while (at + 12 <= n) {
        uint32_t len = (uint32_t)m[at] << 24 | (uint32_t)m[at + 1] << 16 | (uint32_t)m[at + 2] << 8 | m[at + 3];
        if (len > n - at - 12) return;
        uint32_t crc = (uint32_t)crc32(0L, m + at + 4, len + 4);
        uint8_t *p = m + at + 8 + len;
        p[0] = (uint8_t)(crc >> 24), p[1] = (uint8_t)(crc >> 16), p[2] = (uint8_t)(crc >> 8), p[3] = (uint8_t)crc;
        at += 12 + len;
    }
}

/* Files that frame a JSON header with its length: safetensors (u64 length
 * at 0, JSON from 8, data right after) and dataset caches (magic, u64 length
 * at 8, JSON from 16, payload at the next multiple of 64). Half their
 * mutants damage only the JSON and get the length (and the payload's
 * padding) rewritten, so that the damaged metadata is parsed instead of
 * failing the framing. */
typedef struct {
    size_t len_at, json_at, align;
} framing;
static const framing kSafetensorsFrame = {0, 8, 1}, kCacheFrame = {8, 16, 64};

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static uint8_t *mutate_framed(kbf_rng *rng, const framing *fr, const uint8_t *src, size_t n, size_t *out_n) {
    uint64_t hl = 0;
    for (int i = 7; i >= 0 && n >= fr->json_at; i--) hl = hl << 8 | src[fr->len_at + (size_t)i];
    if (n < fr->json_at || hl > n - fr->json_at || align_up(fr->json_at + hl, fr->align) > n)
        return kbf_mutate(rng, src, n, 0, out_n);
    size_t mh_n, payload_at = align_up(fr->json_at + (size_t)hl, fr->align);
    uint8_t *mh = kbf_mutate(rng, src + fr->json_at, (size_t)hl, 0, &mh_n);
    size_t new_at = align_up(fr->json_at + mh_n, fr->align), rest = n - payload_at;
    uint8_t *m = calloc(new_at + rest + 1, 1);
    memcpy(m, src, fr->json_at);
    for (int i = 0; i < 8; i++) m[fr->len_at + (size_t)i] = (uint8_t)((uint64_t)mh_n >> (8 * i));
    memcpy(m + fr->json_at, mh, mh_n), memcpy(m + new_at, src + payload_at, rest);
    free(mh);
    *out_n = new_at + rest;
    return m;
}

typedef struct {
    const char *label;
    int (*parse)(const uint8_t *d, size_t n, tally *t, kb_err *err);
    size_t focus; /* header bytes most mutations aim at; 0: anywhere */
    int fix_png_crcs;
    const framing *frame; /* half the mutants: mutate_framed (NULL: none) */
} reader;

static void run_one(const reader *r, const uint8_t *d, size_t n, tally *t) {
    kb_err err = {0};
    count_result(t, r->parse(d, n, t, &err), &err);
}

static void fuzz_reader(kbt_state *st, kbf_rng *rng, const reader *r, blob base, int mutants) {
    tally t = {0};
    KBT_CHECK(st, base.p != NULL, r->label, "could not write the valid file");
    if (!base.p) return;
    run_one(r, base.p, base.n, &t);
    KBT_CHECK(st, t.ok == 1, r->label, "the valid file itself was refused");
    /* Every truncation of a small file; of a large one (a checkpoint's
     * tensor data), every one inside the first 4 KiB and 256 more. */
    size_t every = base.n < 4096 ? base.n : 4096, truncations = every;
    for (size_t len = 0; len < every; len++) run_one(r, base.p, len, &t);
    for (int k = 0; k < 256 && every < base.n; k++, truncations++)
        run_one(r, base.p, every + kbf_rnd(rng, (uint32_t)(base.n - every)), &t);
    for (int i = 0; i < mutants; i++) {
        size_t mn;
        uint8_t *m = r->frame && kbf_rnd(rng, 2) ? mutate_framed(rng, r->frame, base.p, base.n, &mn)
                                                  : kbf_mutate(rng, base.p, base.n, r->focus, &mn);
        if (kbf_rnd(rng, 4) == 0) { /* twice */
            size_t m2n;
            uint8_t *m2 = kbf_mutate(rng, m, mn, r->focus, &m2n);
            free(m), m = m2, mn = m2n;
        }
        if (r->fix_png_crcs) png_fix_crcs(m, mn);
        run_one(r, m, mn, &t);
        free(m);
    }
    char name[200];
    snprintf(name, sizeof name, "%s: %zu truncations + %d mutants: no crash, every error has a message", r->label,
             truncations, mutants);
    KBT_CHECK(st, t.bad_messages == 0, name, "%ld errors without a message", t.bad_messages);
    printf("     %s: %zu-byte file, %ld parses, %ld accepted, %ld refused (checksum %016llx)\n", r->label, base.n,
           t.runs, t.ok, t.errors, (unsigned long long)t.checksum);
    free(base.p);
}

/* ---- statistics files whose entries are damaged inside a valid zip ----
 * The zip's CRCs stop most byte mutants of an .npz before the statistics
 * reader sees them; here each mutant rebuilds the archive (libzip, stored)
 * from .npy entries of which one or two are mutated, renamed or dropped, so
 * that wrong shapes, dtypes, values and kb_meta records reach the reader. */

typedef struct {
    char name[64];
    blob npy;
} npz_part;

/* The entries of a valid .npz as .npy images; returns how many. */
static int npz_parts(const char *path, npz_part *parts, int cap) {
    char **names;
    int count, n = 0;
    kb_err err = {0};
    if (kb_npz_names(path, &names, &count, &err)) return printf("FAIL %s\n", err.msg), 0;
    for (int i = 0; i < count && n < cap; i++) {
        kb_npy a;
        char head[4096];
        size_t hl;
        if (kb_npz_read(path, names[i], &a, &err) || kb_npy_header(&a, head, sizeof head, &hl, &err)) continue;
        size_t bytes = (size_t)a.numel * kb_dtype_size(a.dtype);
        npz_part *p = &parts[n++];
        snprintf(p->name, sizeof p->name, "%s.npy", names[i]);
        p->npy.n = hl + bytes, p->npy.p = malloc(p->npy.n + 1);
        memcpy(p->npy.p, head, hl), memcpy(p->npy.p + hl, a.data, bytes);
        kb_npy_free(&a);
    }
    kb_npz_names_free(names, count);
    return n;
}

static int zip_parts(const char *path, npz_part *parts, int n) {
    int zerr = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    if (!z) return -1;
    for (int i = 0; i < n; i++) {
        if (!parts[i].npy.p) continue; /* dropped */
        zip_source_t *src = zip_source_buffer(z, parts[i].npy.p, parts[i].npy.n, 0);
        zip_int64_t at = src ? zip_file_add(z, parts[i].name, src, ZIP_FL_OVERWRITE) : -1;
        if (at < 0) zip_source_free(src);
        else zip_set_file_compression(z, (zip_uint64_t)at, ZIP_CM_STORE, 0);
    }
    return zip_close(z) ? (zip_discard(z), -1) : 0;
}

static void mutate_part(kbf_rng *rng, npz_part *parts, int n, npz_part *out) {
    static const char *const names[] = {"mu.npy", "sigma.npy", "mu_s.npy", "sigma_s.npy", "pool.npy", "kb_meta.npy"};
    int k = (int)kbf_rnd(rng, (uint32_t)n);
    free(out[k].npy.p), out[k].npy.p = NULL;
    switch (kbf_rnd(rng, 8)) {
    case 0: break; /* dropped */
    case 1: /* another entry's name: duplicates and swaps */
        snprintf(out[k].name, sizeof out[k].name, "%s", names[kbf_rnd(rng, 6)]);
        out[k].npy.n = parts[k].npy.n, out[k].npy.p = malloc(parts[k].npy.n);
        memcpy(out[k].npy.p, parts[k].npy.p, parts[k].npy.n);
        break;
    default: out[k].npy.p = kbf_mutate(rng, parts[k].npy.p, parts[k].npy.n, 128, &out[k].npy.n);
    }
}

static void fuzz_stats_entries(kbt_state *st, kbf_rng *rng, const char *label, const char *base_path, int mutants) {
    npz_part parts[16], work[16];
    int n = npz_parts(base_path, parts, 16);
    tally t = {0};
    for (int i = 0; i < mutants && n > 0; i++) {
        for (int j = 0; j < n; j++) { /* copies, so that mutate_part may free them */
            work[j] = parts[j], work[j].npy.p = malloc(parts[j].npy.n + 1);
            memcpy(work[j].npy.p, parts[j].npy.p, parts[j].npy.n);
        }
        mutate_part(rng, parts, n, work);
        if (kbf_rnd(rng, 3) == 0) mutate_part(rng, parts, n, work);
        kb_err err = {0};
        int rc = zip_parts("fuzz_entries.npz", work, n) ? kb_fail(&err, "cannot write fuzz_entries.npz") : 0;
        if (rc == 0) rc = parse_stats_at("fuzz_entries.npz", &t, &err);
        count_result(&t, rc, &err);
        for (int j = 0; j < n; j++) free(work[j].npy.p);
    }
    char name[200];
    snprintf(name, sizeof name, "%s: %d archives with damaged entries: no crash, every error has a message", label,
             mutants);
    KBT_CHECK(st, n > 0 && t.bad_messages == 0, name, "%d entries, %ld errors without a message", n, t.bad_messages);
    printf("     %s: %d entries, %ld parses, %ld accepted, %ld refused (checksum %016llx)\n", label, n, t.runs, t.ok,
           t.errors, (unsigned long long)t.checksum);
    for (int j = 0; j < n; j++) free(parts[j].npy.p);
}

int main(int argc, char **argv) {
    kbt_state st = {0};
    int mutants = argc > 1 ? atoi(argv[1]) : 1500;
    unsigned long long seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0;
    kbf_rng rng = kbf_rng_seeded(0x9E3779B97F4A7C15ULL, seed);
    for (size_t i = 0; i < sizeof g_pixels; i++) g_pixels[i] = (uint8_t)(i * 13);
    reader ckpt = {"DiT checkpoint (inspect, resume record, load)", parse_checkpoint, 0, 0, &kSafetensorsFrame};
    const reader npy = {".npy (in memory)", parse_npy, 128, 0, NULL}, npz = {".npz entries", parse_npz, 0, 0, NULL},
                 stats = {"ADM reference batch .npz", parse_stats, 0, 0, NULL},
                 own = {"kindbench statistics .npz", parse_stats, 0, 0, NULL},
                 st_file = {"safetensors", parse_safetensors, 256, 0, &kSafetensorsFrame},
                 kbd = {"dataset cache .kbd", parse_cache, 2048, 0, &kCacheFrame},
                 png = {"PNG RGB (CRCs fixed up)", parse_png, 64, 1, NULL},
                 png16 = {"PNG 16-bit grey+alpha (CRCs fixed up)", parse_png, 64, 1, NULL},
                 pngp = {"PNG RGBA palette (CRCs fixed up)", parse_png, 96, 1, NULL},
                 jpg = {"JPEG baseline", parse_jpeg, 0, 0, NULL},
                 jpg_p = {"JPEG progressive", parse_jpeg, 0, 0, NULL},
                 jpg_g = {"JPEG greyscale", parse_jpeg, 0, 0, NULL},
                 jpg_c = {"JPEG CMYK", parse_jpeg, 0, 0, NULL}, gif = {"GIF", parse_gif, 0, 0, NULL};
    fuzz_reader(&st, &rng, &npy, make_npy(), mutants);
    fuzz_reader(&st, &rng, &npz, make_stats_npz("base.npz"), mutants);
    fuzz_reader(&st, &rng, &stats, make_stats_npz("base_stats.npz"), mutants);
    fuzz_reader(&st, &rng, &own, make_own_stats(), mutants);
    fuzz_stats_entries(&st, &rng, "ADM reference batch, entries damaged", "base_stats.npz", mutants);
    fuzz_stats_entries(&st, &rng, "kindbench statistics, entries damaged", "base_own.npz", mutants);
    fuzz_reader(&st, &rng, &st_file, make_safetensors(), mutants);
    blob ck = make_checkpoint();
    ckpt.focus = ck.n > 8 ? 8 + ((size_t)ck.p[0] | (size_t)ck.p[1] << 8 | (size_t)ck.p[2] << 16) : 0; /* the header */
    fuzz_reader(&st, &rng, &ckpt, ck, mutants);
    free_tiny_model();
    fuzz_reader(&st, &rng, &kbd, make_cache(), mutants);
    fuzz_reader(&st, &rng, &png, make_png(0), mutants);
    fuzz_reader(&st, &rng, &png16, make_png(1), mutants);
    fuzz_reader(&st, &rng, &pngp, make_png(2), mutants);
    fuzz_reader(&st, &rng, &jpg, make_jpeg(JPEG_RGB), mutants);
    fuzz_reader(&st, &rng, &jpg_p, make_jpeg(JPEG_PROGRESSIVE), mutants);
    fuzz_reader(&st, &rng, &jpg_g, make_jpeg(JPEG_GREY), mutants);
    fuzz_reader(&st, &rng, &jpg_c, make_jpeg(JPEG_CMYK), mutants);
    fuzz_reader(&st, &rng, &gif, make_gif(), mutants);
    return kbt_finish(&st);
}
