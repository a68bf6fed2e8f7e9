/* A tiny valid dataset cache (.kbd) for the tests that need one on disk:
 * 5 images of 4x4x3 in 3 classes (pretrain, novel, unused), image i filled
 * with bytes i*40 + k. */
#ifndef KB_TEST_CACHE_SMALL_H
#define KB_TEST_CACHE_SMALL_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "datasets/cache.h"
#include "util/err.h"

#define KBT_SMALL_RES 4
#define KBT_SMALL_CH 3
#define KBT_SMALL_COUNT 5

static inline int kbt_write_small_cache(const char *path, kb_err *err) {
    enum { RES = KBT_SMALL_RES, CH = KBT_SMALL_CH, COUNT = KBT_SMALL_COUNT };
    static const char *const names[3] = {"cat", "dog", "Ankle boot"}, *const roles[3] = {"pretrain", "novel", "unused"};
    static const int32_t labels[COUNT] = {0, 1, 2, 1, 0};
    static const uint8_t split[COUNT] = {0, 0, 1, 1, 0};
    cJSON *meta = kb_cache_meta_new();
    cJSON_AddStringToObject(meta, "name", "tiny");
    cJSON_AddNumberToObject(meta, "resolution", RES);
    cJSON_AddNumberToObject(meta, "channels", CH);
    cJSON_AddNumberToObject(meta, "count", COUNT);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(meta, "source"), "kind", "test");
    cJSON *cls = cJSON_AddArrayToObject(meta, "classes");
    for (int c = 0; c < 3; c++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", names[c]);
        cJSON_AddStringToObject(o, "role", roles[c]);
        cJSON_AddItemToArray(cls, o);
    }
    kb_cache_writer w;
    int rc = kb_cache_writer_open(&w, path, meta, COUNT, RES, CH, labels, split, err);
    uint8_t img[RES * RES * CH];
    for (int i = 0; i < COUNT && rc == 0; i++) {
        for (int k = 0; k < RES * RES * CH; k++) img[k] = (uint8_t)(i * 40 + k);
        rc = kb_cache_writer_add(&w, img, err);
    }
    if (rc == 0) rc = kb_cache_writer_commit(&w, err);
    else kb_cache_writer_abort(&w);
    cJSON_Delete(meta);
    return rc;
}

#endif
