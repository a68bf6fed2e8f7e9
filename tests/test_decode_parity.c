/* Decode parity of `kindbench eval`'s image folders with pytorch-fid, torch-fidelity and clean-fid,
 * which all read an image as numpy.asarray(Image.open(p).convert('RGB')): any pixel decoded
 * differently changes FID. tests/ref/decode_parity_ref.py writes, into a temp dir, a corpus of PNG
 * (every colour type and bit depth, tRNS, Adam7, gAMA, sBIT, 1x1), JPEG (quality, subsampling,
 * progressive, grey, CMYK with and without the Adobe marker, EXIF orientation) and GIF files, some with
 * lying extensions, and PIL's RGB for each. The folder goes through the eval reader itself
 * (kb_image_input_probe + kb_image_input_load): every file must be listed and decode to PIL's bytes
 * exactly (tolerance 0, JPEG included: the same libjpeg-turbo with the same settings).
 * Skips (77) when /usr/bin/python3 lacks PIL. */
#define _GNU_SOURCE /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/image_io.h"
#include "metrics/eval_input.h"
#include "tests/kbtest.h"
#include "tests/test_data_common.h"

#define MAX_FILES 256

typedef struct {
    char name[128];
    char mode[16]; /* PIL's mode of the opened file, for the messages */
    int w, h;
    int seen;
} expected_image;

static int read_manifest(const char *dir, expected_image *m, int cap) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    int n = 0;
    while (n < cap && fscanf(fp, "%127s %d %d %15s", m[n].name, &m[n].w, &m[n].h, m[n].mode) == 4) n++;
    fclose(fp);
    return n;
}

static expected_image *find_expected(expected_image *m, int n, const char *path) {
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].name, name)) return &m[i];
    return NULL;
}

static uint8_t *read_expected(const char *dir, const expected_image *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/expected/%s.rgb", dir, e->name);
    size_t n = (size_t)e->w * e->h * 3;
    uint8_t *px = malloc(n);
    FILE *fp = fopen(path, "rb");
    size_t got = fp && px ? fread(px, 1, n, fp) : 0;
    if (fp) fclose(fp);
    if (got != n) free(px), px = NULL;
    return px;
}

/* One image against PIL: size, then every byte; on a difference, how many and the first pixel. */
static void check_image(kbt_state *st, const char *dir, const kb_image_input *in, int64_t i, expected_image *e) {
    char label[256];
    snprintf(label, sizeof label, "%s (PIL mode %s, %dx%d) decodes as PIL's convert('RGB')", e->name, e->mode, e->w,
             e->h);
    e->seen = 1;
    kb_image img;
    kb_err err = {0};
    if (kb_image_input_load(in, i, &img, &err)) {
        KBT_CHECK(st, 0, label, "decode failed: %s", err.msg);
        return;
    }
    uint8_t *want = read_expected(dir, e);
    if (!want || img.width != e->w || img.height != e->h || img.channels != 3) {
        KBT_CHECK(st, 0, label, "got %dx%dx%d%s", img.width, img.height, img.channels, want ? "" : ", no PIL pixels");
    } else {
        size_t n = (size_t)e->w * e->h * 3, ndiff = 0, first = 0;
        for (size_t k = n; k-- > 0;)
            if (img.px[k] != want[k]) ndiff++, first = k;
        size_t pixel = first / 3, p = pixel * 3, x = pixel % (size_t)e->w, y = pixel / (size_t)e->w;
        KBT_CHECK(st, ndiff == 0, label, "%zu of %zu bytes differ; first at (%zu, %zu): got %u %u %u, PIL %u %u %u",
                  ndiff, n, x, y, img.px[p], img.px[p + 1], img.px[p + 2], want[p], want[p + 1], want[p + 2]);
    }
    free(want);
    kb_image_free(&img);
}

static void check_folder(kbt_state *st, const char *dir, expected_image *m, int n) {
    char images[4096];
    snprintf(images, sizeof images, "%s/images", dir);
    kb_image_input in;
    kb_err err = {0};
    int rc = kb_image_input_probe(images, NULL, 1, &in, &err);
    KBT_CHECK(st, rc == 0 && in.count == n && in.ignored == 0, "the eval folder reader lists every corpus file",
              "rc %d (%s), %lld listed, %lld ignored, %d in the corpus", rc, err.msg, (long long)in.count,
              (long long)in.ignored, n);
    if (rc) return;
    for (int64_t i = 0; i < in.count; i++) {
        expected_image *e = find_expected(m, n, in.files[i]);
        if (!e) KBT_CHECK(st, 0, in.files[i], "listed but not in the manifest");
        else if (strstr(e->name, ".gif") && !kb_gif_supported()) printf("skip %s: built without giflib\n", e->name);
        else check_image(st, dir, &in, i, e);
    }
    kb_image_input_close(&in);
}

/* A 16-bit grey PNG cut short: the clipping decoder's own buffer is on the error path too (valgrind-checked by
 * hand); the error must name the file and be the file's fault. */
static void check_truncated_grey16(kbt_state *st, const char *dir) {
    char src[4096], cut[4096];
    snprintf(src, sizeof src, "%s/images/grey16.png", dir);
    snprintf(cut, sizeof cut, "%s/grey16_cut.png", dir);
    uint8_t buf[4096];
    FILE *fp = fopen(src, "rb");
    size_t n = fp ? fread(buf, 1, sizeof buf, fp) : 0;
    if (fp) fclose(fp);
    kb_image img = {0};
    kb_err err = {0};
    int rc = n > 100 && !kbt_write_file(cut, buf, n - 40) ? kb_image_read_as_pil(cut, &img, &err) : 0;
    KBT_CHECK(st, rc == -1 && err.kind == KB_ERR_BAD_DATA && strstr(err.msg, cut) && strstr(err.msg, "truncated PNG"),
              "a truncated 16-bit grey PNG is bad data, named", "rc %d, kind %d: %s", rc, (int)err.kind, err.msg);
    if (rc == 0) kb_image_free(&img);
}

int main(void) {
    kbt_state st = {0};
    const char *py = kbt_env("KB_PYTHON", "/usr/bin/python3"), *src = kbt_env("KB_SOURCE_DIR", "..");
    char dir[] = "/tmp/kb_decode_parity.XXXXXX";
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    int rc = kbt_run("'%s' '%s/tests/ref/decode_parity_ref.py' '%s'", py, src, dir);
    if (rc == KBT_SKIP_CODE) {
        kbt_run("rm -rf '%s'", dir);
        return KBT_SKIP_CODE; /* the script said why */
    }
    static expected_image manifest[MAX_FILES];
    int n = rc == 0 ? read_manifest(dir, manifest, MAX_FILES) : 0;
    KBT_CHECK(&st, rc == 0 && n >= 50, "PIL corpus written", "decode_parity_ref.py exit %d, %d files", rc, n);
    if (n) check_folder(&st, dir, manifest, n);
    if (n) check_truncated_grey16(&st, dir);
    for (int i = 0; i < n; i++)
        if (!manifest[i].seen && !strstr(manifest[i].name, ".gif"))
            KBT_CHECK(&st, 0, manifest[i].name, "in the corpus but never decoded");
    if (st.failed) printf("corpus kept in %s\n", dir);
    else kbt_run("rm -rf '%s'", dir);
    return kbt_finish(&st);
}
