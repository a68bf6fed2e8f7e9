/* The CUDA path of nn/ops_conv.h: cuDNN convolutions on NHWC tensors, and
 * our own kernels for pooling, the bias + ReLU epilogue and strided copies.
 *
 * Math: FP32 by default. cuDNN's CUDNN_DEFAULT_MATH lets Ampere and newer
 * GPUs use TF32 tensor cores (about 10 mantissa bits), so the convolution
 * descriptor asks for CUDNN_FMA_MATH (FP32 FMA kernels only) unless the
 * context's matmul precision is TF32 or BF16 (kb_cuda_state.matmul), and the algorithm is the
 * first of cuDNN's heuristic list that honours that choice (and needs at
 * most 512 MiB of workspace).
 *
 * Strided tensors: cuDNN wants packed NHWC, so an input that is a channel
 * slice (ldi > c) is first gathered into a packed buffer, and the output goes
 * to a packed buffer that the epilogue kernel writes (bias, ReLU) into its
 * channel slice (ldo > k); when both are packed cuDNN reads and writes the
 * caller's memory and the epilogue runs in place.
 *
 * Pooling and global average pooling follow the fast CPU path's arithmetic
 * (window order, float sums for the window pools; double sums in pixel order
 * for the global pool, which is the reference's exact arithmetic). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cudnn.h>

#include "nn/cuda_common.cuh"

extern "C" {
#include "nn/ops_conv.h"
}

#define KB_CONV_MAX_ALGOS 16
#define KB_CONV_MAX_WS ((size_t)512 << 20) /* skip algorithms that want more workspace */

#define KB_CUDNN_CHECK(op, call)                                                                                  \
    do {                                                                                                          \
        cudnnStatus_t kb_s_ = (call);                                                                             \
        if (kb_s_ != CUDNN_STATUS_SUCCESS)                                                                        \
            return kb_fail(err, "%s: %s failed: %s", (op), #call, cudnnGetErrorString(kb_s_));                    \
    } while (0)

#define KB_CONV_PLANS 128 /* shapes remembered per engine (Inception-v3 has 94 convolutions) */

/* One algorithm cuDNN's heuristic offered, with the math type it ran under. */
typedef struct {
    cudnnConvolutionFwdAlgo_t algo;
    cudnnMathType_t math;
    size_t ws;
} conv_algo;

/* The candidates for one convolution shape, best first, and the one that
 * ran (the later ones are tried only when cuDNN refuses the earlier at run
 * time, as PyTorch does; the choice then stays, so reruns are identical). */
typedef struct {
    int used;
    kb_conv2d_desc shape; /* pointers and strides cleared: the key */
    int tf32;
    int n, chosen;
    conv_algo cand[KB_CONV_MAX_ALGOS];
} conv_plan;

/* The cuDNN state of one engine (kb_conv_engine.cuda). */
struct kb_conv_cuda {
    cudnnHandle_t handle;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t f;
    cudnnConvolutionDescriptor_t conv;
    char *buf;        /* device: [cuDNN workspace | packed input | packed output] */
    size_t buf_bytes;
    kb_cuda_state *st;
    conv_plan plans[KB_CONV_PLANS];
    int next_plan; /* round-robin victim once every slot is used */
};


extern "C" int kb_conv_engine_init_cuda(kb_ctx *ctx, kb_conv_engine *e, kb_err *err) {
    const char *op = "kb_conv_engine_create";
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    kb_conv_cuda *c = (kb_conv_cuda *)calloc(1, sizeof *c);
    if (!c) return kb_fail(err, "%s: out of memory", op);
    e->cuda = c;
    c->st = st;
    KB_CUDA_CHECK(op, cudaSetDevice(st->device));
    KB_CUDNN_CHECK(op, cudnnCreate(&c->handle));
    KB_CUDNN_CHECK(op, cudnnSetStream(c->handle, st->stream));
    KB_CUDNN_CHECK(op, cudnnCreateTensorDescriptor(&c->x));
    KB_CUDNN_CHECK(op, cudnnCreateTensorDescriptor(&c->y));
    KB_CUDNN_CHECK(op, cudnnCreateFilterDescriptor(&c->f));
    KB_CUDNN_CHECK(op, cudnnCreateConvolutionDescriptor(&c->conv));
    return 0;
}

extern "C" void kb_conv_engine_free_cuda(kb_conv_engine *e) {
    kb_conv_cuda *c = (kb_conv_cuda *)e->cuda;
    if (!c) return;
    if (c->st) cudaStreamSynchronize(c->st->stream);
    if (c->conv) cudnnDestroyConvolutionDescriptor(c->conv);
    if (c->f) cudnnDestroyFilterDescriptor(c->f);
    if (c->y) cudnnDestroyTensorDescriptor(c->y);
    if (c->x) cudnnDestroyTensorDescriptor(c->x);
    if (c->handle) cudnnDestroy(c->handle);
    if (c->buf) cudaFree(c->buf);
    free(c);
    e->cuda = NULL;
}

/* Grows the engine's device buffer; waits for queued work that may use the old one. */
static int ensure_buf(kb_conv_cuda *c, size_t bytes, kb_err *err) {
    const char *op = "kb_conv2d";
    if (bytes <= c->buf_bytes) return 0;
    KB_CUDA_CHECK(op, cudaStreamSynchronize(c->st->stream));
    if (c->buf) cudaFree(c->buf);
    c->buf = NULL;
    c->buf_bytes = 0;
    KB_CUDA_CHECK(op, cudaMalloc((void **)&c->buf, bytes));
    c->buf_bytes = bytes;
    return 0;
}

__global__ void gather_pixels_kernel(float *dst, const float *src, int64_t pixels, int64_t c, int64_t ld) {
    KB_GRID_STRIDE(i, pixels * c) dst[i] = src[(i / c) * ld + i % c];
}

/* dst[p*ldo + j] = act(src[p*k + j] + bias[j]); src may equal dst when ldo == k. */
__global__ void bias_act_kernel(float *dst, const float *src, const float *bias, int64_t pixels, int64_t k,
                                int64_t ldo, int relu) {
    KB_GRID_STRIDE(i, pixels * k) {
        int64_t p = i / k, j = i % k;
        float v = src[i];
        if (bias) v = __fadd_rn(v, bias[j]);
        if (relu) v = v < 0.0f ? 0.0f : v; /* NaN stays NaN, as the CPU path and torch */
        dst[p * ldo + j] = v;
    }
}

static size_t align256(size_t b) { return (b + 255) / 256 * 256; }

/* d with what does not change the algorithm choice cleared: a plan's key. */
static kb_conv2d_desc shape_key(const kb_conv2d_desc *d) {
    kb_conv2d_desc k;
    memset(&k, 0, sizeof k);
    k.n = d->n, k.h = d->h, k.w = d->w, k.c = d->c, k.k = d->k, k.kh = d->kh, k.kw = d->kw;
    k.sh = d->sh, k.sw = d->sw, k.ph = d->ph, k.pw = d->pw;
    return k;
}

/* Sets the engine's descriptors for d. */
static int set_descriptors(kb_conv_cuda *c, const kb_conv2d_desc *d, kb_err *err) {
    const char *op = "kb_conv2d";
    int64_t oh = kb_conv2d_out_h(d), ow = kb_conv2d_out_w(d);
    if (d->n * d->h * d->w * d->c > INT32_MAX || d->n * oh * ow * d->k > INT32_MAX)
        return kb_fail(err, "%s: tensor of more than 2^31 elements (n=%lld): use a smaller batch", op, (long long)d->n);
    KB_CUDNN_CHECK(op, cudnnSetTensor4dDescriptor(c->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)d->n, (int)d->c,
                                                  (int)d->h, (int)d->w));
    KB_CUDNN_CHECK(op, cudnnSetTensor4dDescriptor(c->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)d->n, (int)d->k,
                                                  (int)oh, (int)ow));
    KB_CUDNN_CHECK(op, cudnnSetFilter4dDescriptor(c->f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, (int)d->k, (int)d->c,
                                                  d->kh, d->kw));
    KB_CUDNN_CHECK(op, cudnnSetConvolution2dDescriptor(c->conv, d->ph, d->pw, d->sh, d->sw, 1, 1,
                                                       CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    return 0;
}

/* The candidates of cuDNN's heuristic for the shape the descriptors hold, in
 * its order, keeping those that respect the FP32/TF32 setting and the
 * workspace limit. */
static int heuristic_candidates(kb_conv_cuda *c, const kb_conv2d_desc *d, conv_plan *p, kb_err *err) {
    const char *op = "kb_conv2d";
    KB_CUDNN_CHECK(op, cudnnSetConvolutionMathType(c->conv, p->tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    cudnnConvolutionFwdAlgoPerf_t perf[KB_CONV_MAX_ALGOS];
    int got = 0;
    KB_CUDNN_CHECK(op, cudnnGetConvolutionForwardAlgorithm_v7(c->handle, c->x, c->f, c->conv, c->y, KB_CONV_MAX_ALGOS,
                                                              &got, perf));
    p->n = 0, p->chosen = -1;
    for (int i = 0; i < got; i++) {
        /* FP32 takes only FMA-math results: CUDNN_DEFAULT_MATH would let
         * TF32 back in on Ampere and newer (PyTorch asserts the same). */
        if (perf[i].status != CUDNN_STATUS_SUCCESS || (!p->tf32 && perf[i].mathType != CUDNN_FMA_MATH) ||
            perf[i].memory > KB_CONV_MAX_WS)
            continue;
        p->cand[p->n++] = (conv_algo){perf[i].algo, p->tf32 ? perf[i].mathType : CUDNN_FMA_MATH, perf[i].memory};
    }
    if (p->n == 0)
        return kb_fail(err, "%s: cuDNN offers no %s algorithm for %lldx%lldx%lldx%lld * %dx%d -> %lld channels", op,
                       p->tf32 ? "" : "FP32 (non-TF32) ", (long long)d->n, (long long)d->h, (long long)d->w,
                       (long long)d->c, d->kh, d->kw, (long long)d->k);
    return 0;
}

/* Sets the descriptors for d and returns its plan: the cached one for this
 * shape and precision, or a new one from the heuristic. NULL with err set. */
static conv_plan *plan_conv(kb_conv_cuda *c, const kb_conv2d_desc *d, kb_err *err) {
    if (set_descriptors(c, d, err)) return NULL;
    kb_conv2d_desc key = shape_key(d);
    int tf32 = c->st->matmul != KB_MATMUL_FP32;
    for (int i = 0; i < KB_CONV_PLANS; i++) {
        conv_plan *p = &c->plans[i];
        if (p->used && p->tf32 == tf32 && !memcmp(&p->shape, &key, sizeof key)) return p;
    }
    conv_plan *p = NULL;
    for (int i = 0; i < KB_CONV_PLANS && !p; i++)
        if (!c->plans[i].used) p = &c->plans[i];
    if (!p) p = &c->plans[c->next_plan], c->next_plan = (c->next_plan + 1) % KB_CONV_PLANS;
    memset(p, 0, sizeof *p);
    p->shape = key, p->tf32 = tf32;
    if (heuristic_candidates(c, d, p, err)) return NULL;
    p->used = 1;
    return p;
}

/* cuDNN's answers that mean "not this algorithm here" (the next one may run). */
static int refused(cudnnStatus_t s) {
    return s == CUDNN_STATUS_NOT_SUPPORTED || s == CUDNN_STATUS_EXECUTION_FAILED || s == CUDNN_STATUS_BAD_PARAM;
}

/* The input as cuDNN reads it: in itself, or packed to c channels per pixel
 * at p (in_bytes of the engine's buffer). */
static const float *packed_input(kb_ctx *ctx, const kb_conv2d_desc *d, const float *in, char *p, size_t in_bytes,
                                 kb_err *err) {
    if (!in_bytes) return in;
    int64_t in_px = d->n * d->h * d->w;
    gather_pixels_kernel<<<kb_grid_1d(in_px * d->c), KB_CUDA_BLOCK, 0, ctx->cuda->stream>>>((float *)p, in, in_px,
                                                                                          d->c, d->ldi);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return kb_fail(err, "kb_conv2d: gather_pixels_kernel: %s", cudaGetErrorString(e)), nullptr;
    return (const float *)p;
}

/* Runs the plan's chosen algorithm, or (first call) its candidates in order
 * until cuDNN accepts one; *y_out is where the raw output went. */
static int run_conv(kb_ctx *ctx, kb_conv_cuda *c, conv_plan *p, const kb_conv2d_desc *d, const float *in,
                    const float *w, float *out, float **y_out, kb_err *err) {
    const char *op = "kb_conv2d";
    int64_t oh = kb_conv2d_out_h(d), ow = kb_conv2d_out_w(d);
    size_t in_bytes = d->ldi != d->c ? align256((size_t)(d->n * d->h * d->w * d->c) * 4) : 0;
    size_t out_bytes = d->ldo != d->k ? align256((size_t)(d->n * oh * ow * d->k) * 4) : 0;
    cudnnStatus_t last = CUDNN_STATUS_SUCCESS;
    int tried = 0;
    for (int i = p->chosen >= 0 ? p->chosen : 0; i < p->n; i++, tried++) {
        const conv_algo *a = &p->cand[i];
        if (ensure_buf(c, align256(a->ws) + in_bytes + out_bytes + 256, err)) return -1;
        char *buf = c->buf + align256(a->ws);
        const float *x = packed_input(ctx, d, in, buf, in_bytes, err);
        if (!x) return -1;
        float *y = out_bytes ? (float *)(buf + in_bytes) : out;
        KB_CUDNN_CHECK(op, cudnnSetConvolutionMathType(c->conv, a->math));
        const float one = 1.0f, zero = 0.0f;
        last = cudnnConvolutionForward(c->handle, &one, c->x, x, c->f, w, c->conv, a->algo, a->ws ? c->buf : NULL,
                                       a->ws, &zero, c->y, y);
        if (last == CUDNN_STATUS_SUCCESS) {
            p->chosen = i, *y_out = y;
            return 0;
        }
        if (p->chosen >= 0 || !refused(last)) { /* a chosen algorithm that fails now is an error */
            tried++;
            break;
        }
    }
    return kb_fail(err, "%s: cudnnConvolutionForward failed: %s (%s, %d of cuDNN's %d candidate algorithms tried, for "
                        "%lldx%lldx%lldx%lld * %dx%d -> %lld channels)",
                   op, cudnnGetErrorString(last), p->chosen >= 0 ? "the algorithm chosen earlier" : "first use", tried,
                   p->n, (long long)d->n, (long long)d->h, (long long)d->w, (long long)d->c, d->kh, d->kw,
                   (long long)d->k);
}

extern "C" int kb_conv2d_cuda(kb_ctx *ctx, kb_conv_engine *e, const kb_conv2d_desc *d, float *out, const float *in,
                              const float *w, const float *bias, kb_err *err) {
    const char *op = "kb_conv2d";
    kb_conv_cuda *c = (kb_conv_cuda *)e->cuda;
    if (!c || !ctx->cuda) return kb_fail(err, "%s: engine has no cuDNN state", op);
    conv_plan *p = plan_conv(c, d, err);
    float *y = NULL;
    if (!p || run_conv(ctx, c, p, d, in, w, out, &y, err)) return -1;
    if (!bias && !d->relu && y == out) return 0;
    int64_t out_px = d->n * kb_conv2d_out_h(d) * kb_conv2d_out_w(d);
    bias_act_kernel<<<kb_grid_1d(out_px * d->k), KB_CUDA_BLOCK, 0, ctx->cuda->stream>>>(out, y, bias, out_px, d->k,
                                                                                       d->ldo, d->relu);
    KB_LAUNCH_CHECK(op, "bias_act_kernel");
    return 0;
}

/* ------------------------------------------------------------------ pooling */

/* One thread per output element; mode 0 max, 1 mean over in-image elements. */
__global__ void pool_kernel(float *out, const float *in, kb_pool2d_desc d, int64_t oh, int64_t ow, int mode) {
    KB_GRID_STRIDE(i, d.n * oh * ow * d.c) {
        int64_t ci = i % d.c, px = i / d.c, x = px % ow, y = (px / ow) % oh, b = px / (ow * oh);
        int64_t y0 = y * d.s - d.p, x0 = x * d.s - d.p;
        int64_t y1 = y0 + d.k < d.h ? y0 + d.k : d.h, x1 = x0 + d.k < d.w ? x0 + d.k : d.w;
        if (y0 < 0) y0 = 0;
        if (x0 < 0) x0 = 0;
        float acc = in[((b * d.h + y0) * d.w + x0) * d.ldi + ci];
        for (int64_t iy = y0; iy < y1; iy++)
            for (int64_t ix = x0; ix < x1; ix++) {
                if (iy == y0 && ix == x0) continue;
                float v = in[((b * d.h + iy) * d.w + ix) * d.ldi + ci];
                acc = mode ? __fadd_rn(acc, v) : (v > acc || v != v ? v : acc); /* NaN wins, as torch */
            }
        if (mode) acc = __fdiv_rn(acc, (float)((y1 - y0) * (x1 - x0)));
        out[px * d.ldo + ci] = acc;
    }
}

static int pool_cuda(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, int mode, const char *op,
                     kb_err *err) {
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    int64_t oh = kb_pool2d_out_h(d), ow = kb_pool2d_out_w(d);
    pool_kernel<<<kb_grid_1d(d->n * oh * ow * d->c), KB_CUDA_BLOCK, 0, st->stream>>>(out, in, *d, oh, ow, mode);
    KB_LAUNCH_CHECK(op, "pool_kernel");
    return 0;
}

extern "C" int kb_maxpool2d_cuda(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err) {
    return pool_cuda(ctx, d, out, in, 0, "kb_maxpool2d", err);
}

extern "C" int kb_avgpool2d_cuda(kb_ctx *ctx, const kb_pool2d_desc *d, float *out, const float *in, kb_err *err) {
    return pool_cuda(ctx, d, out, in, 1, "kb_avgpool2d", err);
}

__global__ void global_avgpool_kernel(float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi) {
    KB_GRID_STRIDE(i, n * c) {
        int64_t b = i / c, ci = i % c;
        double acc = 0.0;
        for (int64_t p = 0; p < hw; p++) acc += (double)in[(b * hw + p) * ldi + ci];
        out[i] = (float)(acc / (double)hw);
    }
}

extern "C" int kb_global_avgpool_cuda(kb_ctx *ctx, float *out, const float *in, int64_t n, int64_t hw, int64_t c,
                                      int64_t ldi, kb_err *err) {
    const char *op = "kb_global_avgpool";
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    global_avgpool_kernel<<<kb_grid_1d(n * c), KB_CUDA_BLOCK, 0, st->stream>>>(out, in, n, hw, c, ldi);
    KB_LAUNCH_CHECK(op, "global_avgpool_kernel");
    return 0;
}
