/* Resizing matches Pillow: kb_resample against Image.resize() directly, and
 * `kindbench data prepare --source folder` against the PIL reference of the
 * whole recipe (tests/ref/data_ref.py) for varied PNG and JPEG files.
 * Tolerance: exact (0) for every lossless file; at most 1 level for JPEG
 * (decoded by the same libjpeg-turbo with the same settings as Pillow, so 0 is
 * expected and the measured maximum is printed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "datasets/resize.h"
#include "tests/kbtest.h"
#include "tests/test_data_common.h"
#include "util/fileio.h"

static int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *n_diff) {
    int worst = 0;
    *n_diff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d) (*n_diff)++;
        if (d > worst) worst = d;
    }
    return worst;
}

static void check_resample_cases(kbt_state *st, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/resample_cases.txt", dir);
    FILE *txt = fopen(path, "r");
    snprintf(path, sizeof path, "%s/resample_cases.bin", dir);
    FILE *bin = fopen(path, "rb");
    KBT_CHECK(st, txt && bin, "resample fixture present", "missing %s (fixture not run?)", path);
    if (!txt || !bin) return;
    int iw, ih, ch, ow, oh, n = 0;
    char filter[16];
    while (fscanf(txt, "%d %d %d %d %d %15s", &iw, &ih, &ch, &ow, &oh, filter) == 6) {
        kb_image in, out;
        kb_err err = {0};
        kb_image_alloc(&in, iw, ih, ch, &err);
        uint8_t *want = malloc((size_t)ow * oh * ch);
        size_t got = fread(in.px, 1, (size_t)iw * ih * ch, bin) + fread(want, 1, (size_t)ow * oh * ch, bin);
        int rc = kb_resample(&in, ow, oh, strcmp(filter, "box") ? KB_FILTER_BICUBIC : KB_FILTER_BOX, &out, &err);
        char name[128];
        snprintf(name, sizeof name, "resample %dx%dx%d -> %dx%d %s == PIL", iw, ih, ch, ow, oh, filter);
        size_t nd = 0;
        int worst = rc ? 256 : max_abs_diff(out.px, want, (size_t)ow * oh * ch, &nd);
        KBT_CHECK(st, got == (size_t)(iw * ih + ow * oh) * ch && rc == 0 && worst == 0, name,
                  "rc %d (%s), %zu values differ, max diff %d", rc, err.msg, nd, worst);
        if (rc == 0) kb_image_free(&out);
        kb_image_free(&in);
        free(want);
        n++;
    }
    KBT_CHECK(st, n >= 10, "resample fixture has cases", "only %d cases", n);
    fclose(txt);
    fclose(bin);
}

typedef struct {
    char key[256];
    int tol;
} manifest_entry;

static int read_manifest(const char *dir, manifest_entry *m, int cap) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    int n = 0;
    while (n < cap && fscanf(fp, "%255s %d", m[n].key, &m[n].tol) == 2) n++;
    fclose(fp);
    return n;
}

static const char *const expected_classes[] = {"a_rgb", "b_grey", "c_alpha", "d_jpeg"};

static void check_cache_against_pil(kbt_state *st, const kb_dataset *ds, const char *dir, int res,
                                    const manifest_entry *m, int n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/expected_%d.bin", dir, res);
    uint8_t *want;
    size_t size;
    kb_err err = {0};
    size_t per = (size_t)res * res * 3;
    if (kb_read_file(path, &want, &size, &err) || size != per * n) {
        KBT_CHECK(st, 0, "expected images present", "%s (%zu bytes)", err.msg, size);
        return;
    }
    int worst_png = 0, worst_jpeg = 0;
    for (int i = 0; i < n && i < ds->count; i++) {
        size_t nd;
        int d = max_abs_diff(kb_dataset_image(ds, i), want + per * i, per, &nd);
        char name[400];
        snprintf(name, sizeof name, "res %d: %s within %d of PIL", res, m[i].key, m[i].tol);
        KBT_CHECK(st, d <= m[i].tol, name, "%zu values differ, max diff %d", nd, d);
        if (m[i].tol) worst_jpeg = d > worst_jpeg ? d : worst_jpeg;
        else worst_png = d > worst_png ? d : worst_png;
    }
    printf("measured at res %d: max |C - PIL| = %d for lossless files, %d for JPEG\n", res, worst_png, worst_jpeg);
    free(want);
}

static void check_folder(kbt_state *st, const char *kindbench, const char *dir, int res, const manifest_entry *m,
                         int n) {
    char out[256], name[128];
    snprintf(out, sizeof out, "data_resize_%d.kbd", res);
    int rc = kbt_run("'%s' data prepare --source folder --input '%s/folder' --resolution %d -o %s --quiet", kindbench,
                     dir, res, out);
    snprintf(name, sizeof name, "res %d: data prepare --source folder succeeds", res);
    KBT_CHECK(st, rc == 0, name, "exit status %d", rc);
    kb_dataset ds;
    kb_err err = {0};
    snprintf(name, sizeof name, "res %d: cache opens and verifies", res);
    int ok = kb_dataset_open(&ds, out, &err) == 0;
    KBT_CHECK(st, ok, name, "%s", err.msg);
    if (!ok) return;
    int classes_ok = ds.nclasses == 4;
    for (int c = 0; classes_ok && c < 4; c++) classes_ok = !strcmp(ds.class_names[c], expected_classes[c]);
    snprintf(name, sizeof name, "res %d: classes are the sorted sub-folders, %d images, 3 channels", res, n);
    KBT_CHECK(st, classes_ok && ds.count == n && ds.channels == 3 && ds.resolution == res, name,
              "%d classes, %lld images, %d channels", ds.nclasses, (long long)ds.count, ds.channels);
    check_cache_against_pil(st, &ds, dir, res, m, n);
    kb_dataset_close(&ds);
}

int main(void) {
    kbt_state st = {0, 0};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/data_resize", kbt_env("KB_FIXTURES", "fixtures"));
    const char *kindbench = kbt_env("KINDBENCH", "./kindbench");
    check_resample_cases(&st, dir);
    manifest_entry m[64];
    int n = read_manifest(dir, m, 64);
    KBT_CHECK(&st, n >= 15, "manifest lists the fixture images", "%d entries in %s/manifest.txt", n, dir);
    static const int resolutions[] = {32, 20, 7};
    for (int r = 0; r < 3 && n; r++) check_folder(&st, kindbench, dir, resolutions[r], m, n);
    return kbt_finish(&st);
}
