/* Internals of the FID Inception-v3 shared by metrics/inception.c (loading,
 * batching), metrics/inception_net.c (layers, forward) and
 * metrics/inception_preproc.c. Not a public interface. */
#ifndef KB_INCEPTION_IMPL_H
#define KB_INCEPTION_IMPL_H

#include <stdint.h>

#include "metrics/inception.h"
#include "metrics/inception_preproc_elem.h"
#include "metrics/torch_pickle.h"
#include "nn/ops_conv.h"

#define KB_INCEPTION_SIZE 299   /* network input: 299 x 299 x 3, NHWC */
#define KB_INCEPTION_NCONV 94   /* BasicConv2d layers (conv + BN + ReLU) */
#define KB_INCEPTION_BN_EPS 1e-3

/* One BasicConv2d with its BatchNorm folded in: weights OHWI, bias [cout]. */
typedef struct {
    char name[40]; /* state-dict prefix, e.g. "Mixed_5b.branch5x5_1" */
    int cin, cout, kh, kw, sh, sw, ph, pw;
    float *w, *b;  /* on the ctx's device */
} kb_incep_conv;

/* One executor of the forward pass: its own context view, convolution
 * workspace and activation arena. CUDA: one worker on the caller's context.
 * CPU: ctx->threads workers, each a copy of the context with one thread, so
 * that images (not layers) are spread over the cores. */
typedef struct {
    kb_inception *net;
    kb_ctx ctx;
    kb_conv_engine *eng;
    kb_arena arena;
    int batch;      /* images per pass of this worker */
    uint8_t *dev_images;     /* CUDA: a batch of uint8 images to pre-process on the device (grown on demand) */
    size_t dev_images_bytes;
    kb_lerp_tap *dev_taps;   /* CUDA: [2 * 299] resize taps, x then y */
    int failed;
    kb_err err;
} kb_incep_worker;

struct kb_inception {
    kb_ctx *ctx;
    kb_incep_conv conv[KB_INCEPTION_NCONV];
    float *fc_w; /* [1008, 2048] on the device */
    int nworkers;
    kb_incep_worker *workers;
    int batch;      /* images per kb_incep_forward: nworkers * worker batch */
    float *host_in; /* [batch, 299, 299, 3] pre-processed inputs */
};

/* Fills net->conv with the 94 layer shapes in forward order (no weights). */
void kb_incep_layers(kb_inception *net);
/* Reads, folds and uploads every layer and fc.weight from a parsed file. */
int kb_incep_load_weights(kb_inception *net, const kb_tp_file *f, kb_err *err);
/* One forward pass of n <= net->batch pre-processed images (host [n,299,299,3]),
 * spread over the workers:
 * host outputs as kb_inception_features (any may be NULL). */
int kb_incep_forward(kb_inception *net, const float *host_in, int n, float *pool, float *spatial, float *logits,
                     kb_err *err);
/* CUDA, adm and pytorch-fid modes: n uint8 images [n, H, W, C] (host), in
 * passes of the batch, copied to the GPU as they are and pre-processed there
 * (kb_inception_preprocess_cuda), then the forward pass: a quarter of the
 * bytes of pre-processed floats cross the bus, and the host does nothing. */
int kb_incep_forward_images(kb_inception *net, const uint8_t *images, int64_t n, int H, int W, int C,
                            kb_preproc_mode mode, float *pool, float *spatial, float *logits, kb_err *err);

/* Row `row` of a [rows, dim] output, or NULL for an output not wanted. */
static inline float *kb_incep_rows(float *base, int64_t row, int64_t dim) { return base ? base + row * dim : NULL; }

/* Fails, naming the problem, unless images H x W x C and the mode can be pre-processed. */
int kb_inception_check_input(int H, int W, int C, kb_preproc_mode mode, kb_err *err);
/* The taps of the adm (TF1) or pytorch-fid (ATen) resize of an axis of `in`
 * pixels to 299; -1 for any other mode. */
int kb_inception_taps(kb_preproc_mode mode, int in, kb_lerp_tap *taps);
/* The adm or pytorch-fid pre-processing on ctx's GPU: images [n, H, W, C]
 * uint8 and out [n, 299, 299, 3] on the device, taps [299 x, then 299 y] on
 * the device. The same bits as kb_inception_preprocess (the arithmetic is
 * metrics/inception_preproc_elem.h). Stub without CUDA. */
int kb_inception_preprocess_cuda(kb_ctx *ctx, const uint8_t *images, int n, int H, int W, int C, kb_preproc_mode mode,
                                 const kb_lerp_tap *taps, float *out, kb_err *err);

/* Bytes of a worker's activation arena for a batch. */
size_t kb_incep_arena_bytes(int batch);

#endif
