/* Fashion-MNIST from Debian's idx files: `data prepare` at 32 px gives the
 * 60000/10000 train/test split, the 10 named classes, one channel, and images
 * equal (exactly) to the PIL reference of the same recipe. Skips (77) when
 * the dataset-fashion-mnist package is not installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "tests/kbtest.h"
#include "tests/test_data_common.h"
#include "util/fileio.h"

static const char *const class_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static void check_counts(kbt_state *st, const kb_dataset *ds) {
    int names_ok = ds->nclasses == 10;
    for (int c = 0; names_ok && c < 10; c++) names_ok = !strcmp(ds->class_names[c], class_names[c]);
    KBT_CHECK(st, names_ok, "10 classes with Fashion-MNIST's names", "%d classes", ds->nclasses);
    KBT_CHECK(st, ds->count == 70000 && ds->resolution == 32 && ds->channels == 1, "70000 images, 32x32, 1 channel",
              "%lld images, %dx%d, %d channels", (long long)ds->count, ds->resolution, ds->resolution, ds->channels);
    int64_t test = 0, per_class_ok = 1;
    for (int64_t i = 0; i < ds->count; i++) test += kb_dataset_split(ds, i) == KB_SPLIT_TEST;
    int64_t train = ds->count - test;
    for (int c = 0; c < ds->nclasses; c++)
        per_class_ok &= kb_dataset_class_count(ds, c, KB_SPLIT_TRAIN) == 6000 &&
                        kb_dataset_class_count(ds, c, KB_SPLIT_TEST) == 1000;
    KBT_CHECK(st, train == 60000 && test == 10000, "train/test split is 60000/10000", "train %lld, test %lld",
              (long long)train, (long long)test);
    KBT_CHECK(st, per_class_ok, "6000 train and 1000 test images per class", "per-class counts differ");
    int first_test = kb_dataset_split(ds, 59999) == KB_SPLIT_TRAIN && kb_dataset_split(ds, 60000) == KB_SPLIT_TEST;
    KBT_CHECK(st, first_test, "train images come first, then t10k", "split of 59999/60000 wrong");
}

static void check_pixels(kbt_state *st, const kb_dataset *ds, const char *fx) {
    char path[4096];
    snprintf(path, sizeof path, "%s/indices.txt", fx);
    FILE *fp = fopen(path, "r");
    uint8_t *want = NULL;
    size_t size = 0;
    kb_err err = {0};
    snprintf(path, sizeof path, "%s/expected_32.bin", fx);
    if (!fp || kb_read_file(path, &want, &size, &err)) {
        KBT_CHECK(st, 0, "reference images present", "%s", err.msg[0] ? err.msg : "no indices.txt");
        if (fp) fclose(fp);
        return;
    }
    long long idx;
    int k = 0;
    while (fscanf(fp, "%lld", &idx) == 1 && (size_t)(k + 1) * 1024 <= size) {
        char name[128];
        snprintf(name, sizeof name, "image %lld equals the PIL reference (exact)", idx);
        KBT_CHECK(st, memcmp(kb_dataset_image(ds, idx), want + (size_t)k * 1024, 1024) == 0, name, "pixels differ");
        k++;
    }
    KBT_CHECK(st, k >= 6, "compared the reference images", "only %d", k);
    fclose(fp);
    free(want);
}

int main(void) {
    kbt_state st = {0, 0};
    char fx[4096], absent[4200];
    snprintf(fx, sizeof fx, "%s/data_fmnist", kbt_env("KB_FIXTURES", "fixtures"));
    snprintf(absent, sizeof absent, "%s/absent.txt", fx);
    if (!kb_is_dir("/usr/share/datasets/fashion-mnist") || kb_is_file(absent)) {
        printf("skipped: /usr/share/datasets/fashion-mnist is not installed (apt-get install dataset-fashion-mnist)\n");
        return KBT_SKIP_CODE;
    }
    int rc = kbt_run("'%s' data prepare --source fashion-mnist --resolution 32 -o data_fmnist_32.kbd --quiet",
                     kbt_env("KINDBENCH", "./kindbench"));
    KBT_CHECK(&st, rc == 0, "data prepare --source fashion-mnist --resolution 32", "exit status %d", rc);
    kb_dataset ds;
    kb_err err = {0};
    int ok = kb_dataset_open(&ds, "data_fmnist_32.kbd", &err) == 0;
    KBT_CHECK(&st, ok, "cache opens and verifies", "%s", err.msg);
    if (ok) {
        check_counts(&st, &ds);
        check_pixels(&st, &ds, fx);
        kb_dataset_close(&ds);
    }
    return kbt_finish(&st);
}
