/* The real FID Inception weights, when ../shared/weights holds the complete
 * pt_inception-2015-12-05-6726825d.pth (skipped otherwise, exit 77): loaded in
 * real mode (SHA-256 verified), features of 2 test images in adm mode against
 * PyTorch running the same file (fixture inception_real_ref.safetensors):
 * max |d| <= 1e-4 * max |ref| per output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbtest.h"
#include "metrics/inception.h"
#include "nn/safetensors.h"
#include "util/fileio.h"

int main(void) {
    char path[4096], refp[4096], imgp[4096];
    const char *src = getenv("KB_SOURCE_DIR"), *fxd = getenv("KB_FIXTURES");
    snprintf(path, sizeof path, "%s/../shared/weights/%s", src ? src : "..", KB_INCEPTION_FILENAME);
    if (!kb_is_file(path)) {
        printf("skipped: the real weights %s are not present (only tests with random weights ran)\n", path);
        return KBT_SKIP_CODE;
    }
    kbt_state st = {0};
    kb_err err = {0};
    kb_ctx ctx;
    snprintf(refp, sizeof refp, "%s/inception_real_ref.safetensors", fxd ? fxd : ".");
    snprintf(imgp, sizeof imgp, "%s/inception_ref.safetensors", fxd ? fxd : ".");
    kb_inception *net = kb_ctx_init(&ctx, KB_DEV_CPU, NULL, &err) ? NULL : kb_inception_load(&ctx, path, 0, &err);
    KBT_CHECK(&st, net != NULL, "real weights load, SHA-256 verified", "%s", err.msg);
    kb_st_file *ref = net ? kb_st_open(refp, &err) : NULL, *imgs = ref ? kb_st_open(imgp, &err) : NULL;
    KBT_CHECK(&st, imgs != NULL, "PyTorch reference with the real weights", "%s", err.msg);
    for (int i = 0; imgs && i < 2; i++) {
        char key[32];
        const kb_st_tensor *t;
        uint8_t *img;
        snprintf(key, sizeof key, "img.%d", i);
        if (kb_st_read_alloc(imgs, key, KB_U8, &t, (void **)&img, &err)) break;
        float pool[KB_INCEPTION_POOL_DIM], spatial[KB_INCEPTION_SPATIAL_DIM], logits[KB_INCEPTION_LOGITS_DIM];
        int rc = kb_inception_features(net, img, 1, (int)t->shape[0], (int)t->shape[1], (int)t->shape[2], KB_PREPROC_ADM,
                                       pool, spatial, logits, &err);
        KBT_CHECK(&st, rc == 0, "features with the real weights", "%s", err.msg);
        const float *got[3] = {pool, spatial, logits};
        const int64_t dims[3] = {KB_INCEPTION_POOL_DIM, KB_INCEPTION_SPATIAL_DIM, KB_INCEPTION_LOGITS_DIM};
        static const char *names[3] = {"adm.pool", "adm.spatial", "adm.logits"};
        for (int k = 0; k < 3 && !rc; k++) {
            float *want = malloc(sizeof(float) * 2 * dims[k]);
            if (!kb_st_read_f32(ref, names[k], -1, NULL, want, (size_t)(2 * dims[k]), &err))
                kbt_close(&st, names[k], got[k], want + i * dims[k], dims[k], 1e-4 * kbt_max_abs(want + i * dims[k], dims[k]), 0.0);
            free(want);
        }
        free(img);
    }
    kb_st_close(imgs);
    kb_st_close(ref);
    kb_inception_free(net);
    kb_ctx_free(&ctx);
    return kbt_finish(&st);
}
