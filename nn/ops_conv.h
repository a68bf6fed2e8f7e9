/* Convolution and pooling ops on NHWC activations, for inference networks
 * (the FID Inception-v3). Same scheme as nn/ops.h: kb_<op>(ctx, ...)
 * validates and dispatches on ctx->device to kb_<op>_cpu(threads, ...) or
 * kb_<op>_cuda(ctx, ...); kb_<op>_ref(...) is the plain reference the fast
 * paths are tested against. Forward only.
 *
 * Layout: activations are NHWC, channels fastest. Every op takes a pixel
 * stride for its input (ldi) and its output (ldo), in elements, so that an op
 * can read a channel slice of a wider tensor and write its result straight
 * into a channel slice of a concatenated output (Inception's branches write
 * side by side into one [n, h, w, sum of channels] tensor: concatenation
 * costs nothing). Pointers are passed already offset to the first channel.
 *
 * Convolution weights are OHWI, [k, kh, kw, c] (cuDNN's NHWC filter layout,
 * KRSC): row o of the [k, kh*kw*c] matrix holds output channel o's taps in
 * the order of an NHWC im2col row. */
#ifndef KB_OPS_CONV_H
#define KB_OPS_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backend.h"
#include "util/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A 2-D convolution with zero padding, bias and optional ReLU:
 * out[b, y, x, o] = act(bias[o] + sum_{i,j,ci} in[b, y*sh-ph+i, x*sw-pw+j, ci] * w[o, i, j, ci]). */
typedef struct {
    int64_t n, h, w, c; /* input [n, h, w, c] */
    int64_t ldi;        /* elements between consecutive input pixels (>= c) */
    int64_t k;          /* output channels */
    int kh, kw;         /* kernel */
    int sh, sw;         /* stride (>= 1) */
    int ph, pw;         /* zero padding on each side */
    int64_t ldo;        /* elements between consecutive output pixels (>= k) */
    int relu;           /* 1: max(0, .) after the bias */
} kb_conv2d_desc;

/* Output height/width: (h + 2ph - kh)/sh + 1 (floor), as PyTorch. */
int64_t kb_conv2d_out_h(const kb_conv2d_desc *d);
int64_t kb_conv2d_out_w(const kb_conv2d_desc *d);
/* Fails naming the first bad field (sizes, strides, a kernel larger than the padded input). */
int kb_conv2d_check(const kb_conv2d_desc *d, kb_err *err);

/* Per-context state of the convolutions: the im2col workspace on the CPU,
 * the cuDNN handle (bound to the ctx's stream) and its workspace on CUDA.
 * One per kb_ctx and thread of use; create it once, reuse it for every call. */
typedef struct kb_conv_engine kb_conv_engine;

/* CPU: the im2col workspace is capped at max_ws_bytes (0: 64 MiB; the CPU
 * path wants about 1 MiB); the batch is processed in chunks of output rows
 * that fit (at least one row of output pixels, whatever the cap). */
kb_conv_engine *kb_conv_engine_create(kb_ctx *ctx, size_t max_ws_bytes, kb_err *err);
void kb_conv_engine_free(kb_conv_engine *e);

/* out = act(conv(in, w) + bias); bias may be NULL (zero). */
int kb_conv2d_fwd(kb_ctx *ctx, kb_conv_engine *e, const kb_conv2d_desc *d, float *out, const float *in,
                  const float *w, const float *bias, kb_err *err);

/* A k x k pooling window with stride s and padding p on each side. */
typedef struct {
    int64_t n, h, w, c; /* input [n, h, w, c] */
    int64_t ldi, ldo;   /* pixel strides of input and output (>= c) */
    int k, s, p;
} kb_pool2d_desc;

/* Output height/width: (h + 2p - k)/s + 1 (floor, PyTorch's ceil_mode=False). */
int64_t kb_pool2d_out_h(const kb_pool2d_desc *d);
int64_t kb_pool2d_out_w(const kb_pool2d_desc *d);
int kb_pool2d_check(const kb_pool2d_desc *d, kb_err *err);

/* Max over the window's in-image elements (padding never wins: PyTorch pads
 * max pooling with -inf). Needs p <= k/2 so every window has one. */
int kb_maxpool2d_fwd(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err);
/* Mean over the window's in-image elements only: count_include_pad=False,
 * as TensorFlow's average pooling (and pytorch-fid's patched Inception). */
int kb_avgpool2d_fwd(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err);
/* out[b, ci] = mean over the hw pixels of in[b, :, ci] (pixel stride ldi),
 * summed in double in pixel order. out is [n, c] (row stride c). */
int kb_global_avgpool_fwd(kb_ctx *ctx, float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi,
                          kb_err *err);

/* ---- references (plain loops, sums in double, single-threaded) ---- */
void kb_conv2d_ref(const kb_conv2d_desc *d, float *out, const float *in, const float *w, const float *bias);
void kb_maxpool2d_ref(const kb_pool2d_desc *d, float *out, const float *in);
void kb_avgpool2d_ref(const kb_pool2d_desc *d, float *out, const float *in);
void kb_global_avgpool_ref(float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi);

/* ---- fast CPU path: OpenBLAS GEMMs, OpenMP loops ---- */
/* ws: im2col workspace of ws_floats floats (ignored by 1x1 stride-1 unpadded
 * convolutions, which are one GEMM on the input itself); must hold at least
 * one output row: kb_conv2d_min_ws_floats(d). */
size_t kb_conv2d_min_ws_floats(const kb_conv2d_desc *d);
/* The workspace the CPU path uses when it can have it: about 1 MiB of
 * im2col matrix (0 for 1x1 stride-1 unpadded convolutions). */
size_t kb_conv2d_ws_floats(const kb_conv2d_desc *d);
void kb_conv2d_cpu(int threads, const kb_conv2d_desc *d, float *out, const float *in, const float *w,
                   const float *bias, float *ws, size_t ws_floats);
void kb_maxpool2d_cpu(int threads, const kb_pool2d_desc *d, float *out, const float *in);
void kb_avgpool2d_cpu(int threads, const kb_pool2d_desc *d, float *out, const float *in);
void kb_global_avgpool_cpu(int threads, float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi);

/* ---- CUDA path (cuDNN convolutions, our pooling kernels); stubs without CUDA ---- */
int kb_conv_engine_init_cuda(kb_ctx *ctx, kb_conv_engine *e, kb_err *err);
void kb_conv_engine_free_cuda(kb_conv_engine *e);
int kb_conv2d_cuda(kb_ctx *ctx, kb_conv_engine *e, const kb_conv2d_desc *d, float *out, const float *in,
                   const float *w, const float *bias, kb_err *err);
int kb_maxpool2d_cuda(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err);
int kb_avgpool2d_cuda(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err);
int kb_global_avgpool_cuda(kb_ctx *ctx, float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi,
                           kb_err *err);

/* The engine's fields, shared by nn/ops_conv.c and the backends. */
struct kb_conv_engine {
    kb_device device;
    float *ws;          /* CPU: im2col workspace (grown on demand up to ws_cap floats) */
    size_t ws_floats;
    size_t ws_cap;      /* floats */
    void *cuda;         /* CUDA: opaque cuDNN state (nn/ops_conv_cuda.cu) */
};

#ifdef __cplusplus
}
#endif

#endif
