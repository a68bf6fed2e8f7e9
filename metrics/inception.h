/* The FID Inception-v3 (the 2015-12-05 TF network as pytorch-fid ports it),
 * natively: one pass gives the three feature sets the metrics need.
 *
 * Contract shared by the network (metrics/inception*.c) and the metrics
 * (metrics/fid.c and friends, harness/cmd_eval.c): */
#ifndef KB_INCEPTION_H
#define KB_INCEPTION_H

#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

#define KB_INCEPTION_POOL_DIM 2048    /* pool_3 */
#define KB_INCEPTION_SPATIAL_DIM 2023 /* mixed_6/conv[..., :7] flattened H, W, C (17*17*7) */
#define KB_INCEPTION_LOGITS_DIM 1008  /* pool3 . fc^T, no bias ("logits_unbiased") */
#define KB_INCEPTION_SHA256 "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
#define KB_INCEPTION_FILENAME "pt_inception-2015-12-05-6726825d.pth"
#define KB_INCEPTION_URL \
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
#define KB_INCEPTION_INPUT 299 /* the network's input: [299, 299, 3] float NHWC */

/* How uint8 images become the network's 299x299 input. */
typedef enum {
    KB_PREPROC_ADM = 0,     /* TF1 legacy bilinear (no half-pixel centres), (x-128)/128: ADM evaluator, torch-fidelity */
    KB_PREPROC_PYTORCH_FID, /* bilinear align_corners=False on [0,1], then 2x-1: pytorch-fid */
    KB_PREPROC_CLEAN        /* PIL bicubic on float per channel, (x-128)/128: clean-fid */
} kb_preproc_mode;

const char *kb_preproc_name(kb_preproc_mode m);
int kb_preproc_parse(const char *s, kb_preproc_mode *out, kb_err *err);

typedef struct kb_inception kb_inception; /* opaque */

/* Loads weights from path (legacy or zip PyTorch format, SHA-256 checked
 * unless the path is a test file and allow_unverified is set) onto ctx's
 * device, folding BatchNorm into the convolutions. */
kb_inception *kb_inception_load(kb_ctx *ctx, const char *path, int allow_unverified, kb_err *err);
void kb_inception_free(kb_inception *net);

/* Resolves the weights path: explicit (may be NULL), then $KINDBENCH_INCEPTION,
 * then $XDG_CACHE_HOME/kindbench (or ~/.cache/kindbench)/<filename>; fails
 * with a message naming the file, its SHA-256 and where to get it. */
int kb_inception_find_weights(const char *explicit_path, char *out, size_t outsz, kb_err *err);

/* Features of n uint8 images [n, H, W, C] (C = 1, 2, 3 or 4; grey is
 * replicated, alpha dropped, as pytorch-fid converts with PIL .convert('RGB')),
 * in host memory. Any output may be NULL. Host outputs:
 * pool [n, 2048], spatial [n, 2023], logits [n, 1008]. */
int kb_inception_features(kb_inception *net, const uint8_t *images, int64_t n, int H, int W, int C,
                          kb_preproc_mode mode, float *pool, float *spatial, float *logits, kb_err *err);

/* Pre-processes one uint8 image [H, W, C] (C = 1, 2, 3 or 4) into the
 * network input out[299, 299, 3] (NHWC, host) as `mode` prescribes. */
int kb_inception_preprocess(const uint8_t *image, int H, int W, int C, kb_preproc_mode mode, float *out, kb_err *err);

/* Features of n already pre-processed inputs [n, 299, 299, 3] (host), as
 * kb_inception_features. */
int kb_inception_forward(kb_inception *net, const float *inputs, int64_t n, float *pool, float *spatial,
                         float *logits, kb_err *err);

#endif
