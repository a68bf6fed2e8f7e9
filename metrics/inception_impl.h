/* Internals of the FID Inception-v3 shared by metrics/inception.c (loading,
 * batching), metrics/inception_net.c (layers, forward) and
 * metrics/inception_preproc.c. Not a public interface. */
#ifndef KB_INCEPTION_IMPL_H
#define KB_INCEPTION_IMPL_H

#include <stdint.h>

#include "metrics/inception.h"
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
    float *host_6d; /* [batch, 17, 17, 768] Mixed_6d output, for the spatial features */
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
/* Bytes of a worker's activation arena for a batch. */
size_t kb_incep_arena_bytes(int batch);

#endif
