/* The cuDNN calls of kindbench's convolutions (nn/ops_conv_cuda.cu) on the
 * CPU (see kb_cuda_emu.h): NHWC fp32 cross-correlation with NHWC (KRSC)
 * filters, as im2col and OpenBLAS's sgemm, operands rounded to TF32 when
 * the descriptor's math type allows tensor cores. */
#include "emu_internal.h"

#include <cudnn.h>

#include <cblas.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

struct cudnnContext {
    int unused;
};
struct cudnnTensorStruct {
    cudnnTensorFormat_t format;
    cudnnDataType_t type;
    int n, c, h, w;
};
struct cudnnFilterStruct {
    cudnnTensorFormat_t format;
    cudnnDataType_t type;
    int k, c, h, w;
};
struct cudnnConvolutionStruct {
    int ph, pw, sh, sw, dh, dw;
    cudnnConvolutionMode_t mode;
    cudnnMathType_t math;
};

namespace {
float tf32(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
    std::memcpy(&v, &u, 4);
    return v;
}

/* The workspace an algorithm needs: none for IMPLICIT_GEMM; IMPLICIT_PRECOMP_GEMM
 * precomputes indices (on a GPU some bytes per filter tap and channel), so that
 * the caller's workspace path runs here too. */
size_t workspace_of(cudnnConvolutionFwdAlgo_t algo, const cudnnFilterStruct *f) {
    return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ? 4096 + (size_t)16 * f->h * f->w * f->c : 0;
}

/* Whether the convolution's fp32 operands go through TF32 tensor cores: with
 * TENSOR_OP_MATH, and with DEFAULT_MATH on compute capability 8.0 and newer
 * (the cuDNN guide: there TF32 is permitted unless FMA_MATH is asked for). */
bool uses_tf32(cudnnMathType_t m) {
    return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ||
           (m == CUDNN_DEFAULT_MATH && kb_emu::limits().cc_major >= 8);
}

bool supported(const cudnnTensorStruct *x, const cudnnFilterStruct *f, const cudnnConvolutionStruct *cv,
               const cudnnTensorStruct *y) {
    return x->format == CUDNN_TENSOR_NHWC && y->format == CUDNN_TENSOR_NHWC && f->format == CUDNN_TENSOR_NHWC &&
           x->type == CUDNN_DATA_FLOAT && y->type == CUDNN_DATA_FLOAT && f->type == CUDNN_DATA_FLOAT &&
           cv->mode == CUDNN_CROSS_CORRELATION && cv->dh == 1 &&
           cv->dw == 1 && f->c == x->c && f->k == y->c && x->n == y->n &&
           y->h == (x->h + 2 * cv->ph - f->h) / cv->sh + 1 && y->w == (x->w + 2 * cv->pw - f->w) / cv->sw + 1;
}
} // namespace

extern "C" {

cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
    *h = new cudnnContext{0};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) {
    delete h;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t, cudaStream_t) { return CUDNN_STATUS_SUCCESS; }
const char *cudnnGetErrorString(cudnnStatus_t s) {
    return s == CUDNN_STATUS_SUCCESS ? "CUDNN_STATUS_SUCCESS" : s == CUDNN_STATUS_BAD_PARAM ? "CUDNN_STATUS_BAD_PARAM"
                                                                                              : "CUDNN_STATUS_NOT_SUPPORTED";
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) {
    *d = new cudnnTensorStruct();
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
    delete d;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f, cudnnDataType_t t, int n,
                                         int c, int h, int w) {
    if (n < 1 || c < 1 || h < 1 || w < 1) return CUDNN_STATUS_BAD_PARAM;
    *d = cudnnTensorStruct{f, t, n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) {
    *d = new cudnnFilterStruct();
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
    delete d;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t, cudnnTensorFormat_t f, int k,
                                         int c, int h, int w) {
    if (k < 1 || c < 1 || h < 1 || w < 1) return CUDNN_STATUS_BAD_PARAM;
    *d = cudnnFilterStruct{f, t, k, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
    *d = new cudnnConvolutionStruct{0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DEFAULT_MATH};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
    delete d;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw, int sh, int sw, int dh,
                                              int dw, cudnnConvolutionMode_t mode, cudnnDataType_t) {
    if (ph < 0 || pw < 0 || sh < 1 || sw < 1 || dh < 1 || dw < 1) return CUDNN_STATUS_BAD_PARAM;
    cudnnMathType_t math = d->math;
    *d = cudnnConvolutionStruct{ph, pw, sh, sw, dh, dw, mode, math};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
    d->math = m;
    return CUDNN_STATUS_SUCCESS;
}

/* KB_EMU_CUDNN=refuse-first: cudnnConvolutionForward refuses the heuristic's
 * first algorithm (NOT_SUPPORTED), as cuDNN may at run time, so that
 * kindbench's move to the next candidate is exercised. */
bool refuse_first() {
    const char *v = std::getenv("KB_EMU_CUDNN");
    return v && !std::strcmp(v, "refuse-first");
}

/* Two algorithms (both the one product below), in the descriptor's math type. */
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                     const cudnnFilterDescriptor_t f,
                                                     const cudnnConvolutionDescriptor_t cv,
                                                     const cudnnTensorDescriptor_t y, const int requested, int *got,
                                                     cudnnConvolutionFwdAlgoPerf_t *perf) {
    *got = 0;
    if (requested < 1) return CUDNN_STATUS_BAD_PARAM;
    if (!supported(x, f, cv, y)) return CUDNN_STATUS_NOT_SUPPORTED;
    /* the one with a workspace first, as a GPU's heuristic often has it: the caller's workspace path runs */
    const cudnnConvolutionFwdAlgo_t algos[2] = {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                                CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM};
    for (int i = 0; i < 2 && i < requested; i++) {
        std::memset(&perf[i], 0, sizeof perf[i]);
        perf[i].algo = algos[i];
        perf[i].status = CUDNN_STATUS_SUCCESS;
        perf[i].mathType = cv->math == CUDNN_TENSOR_OP_MATH ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
        perf[i].memory = workspace_of(algos[i], f);
        *got = i + 1;
    }
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t, const void *alpha, const cudnnTensorDescriptor_t xd, const void *xv,
                                      const cudnnFilterDescriptor_t fd, const void *wv,
                                      const cudnnConvolutionDescriptor_t cv, cudnnConvolutionFwdAlgo_t algo, void *work,
                                      size_t ws_bytes, const void *beta, const cudnnTensorDescriptor_t yd, void *yv) {
    if (!supported(xd, fd, cv, yd)) return CUDNN_STATUS_NOT_SUPPORTED;
    if (algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM && refuse_first()) return CUDNN_STATUS_NOT_SUPPORTED;
    /* the algorithm's workspace: device memory of at least its size (less is an
     * error, not a refusal to try the next algorithm), and cuDNN's scratch */
    size_t need = workspace_of(algo, fd);
    if (need && (ws_bytes < need || !work || !kb_emu::is_device_range(work, ws_bytes))) {
        std::fprintf(stderr,
                     "kindbench CUDA emulator: cudnnConvolutionForward: algorithm %d needs %zu bytes of device "
                     "workspace, given %p (%zu bytes)\n",
                     (int)algo, need, work, ws_bytes);
        std::abort();
    }
    if (need) std::memset(work, 0xff, need);
    const float *x = (const float *)xv, *w = (const float *)wv;
    float *y = (float *)yv, a = *(const float *)alpha, b = *(const float *)beta;
    int C = xd->c, H = xd->h, W = xd->w, K = fd->k, R = fd->h, S = fd->w, OH = yd->h, OW = yd->w;
    size_t xs = (size_t)xd->n * H * W * C, ws = (size_t)K * R * S * C, ys = (size_t)yd->n * OH * OW * K;
    if (!kb_emu::is_device_range(x, xs * 4) || !kb_emu::is_device_range(w, ws * 4) ||
        !kb_emu::is_device_range(y, ys * 4))
        return CUDNN_STATUS_BAD_PARAM;
    bool round = uses_tf32(cv->math);
    std::vector<float> wf(w, w + ws), col((size_t)OH * OW * R * S * C), out((size_t)OH * OW * K);
    if (round)
        for (float &v : wf) v = tf32(v);
    for (int n = 0; n < xd->n; n++) {
        const float *xn = x + (size_t)n * H * W * C;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int r = 0; r < R; r++)
                    for (int s = 0; s < S; s++) {
                        int ih = oh * cv->sh - cv->ph + r, iw = ow * cv->sw - cv->pw + s;
                        float *dst = &col[(((size_t)oh * OW + ow) * R * S + (size_t)r * S + s) * C];
                        bool in = ih >= 0 && ih < H && iw >= 0 && iw < W;
                        for (int c = 0; c < C; c++) {
                            float v = in ? xn[((size_t)ih * W + iw) * C + c] : 0.0f;
                            dst[c] = round ? tf32(v) : v;
                        }
                    }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OH * OW, K, R * S * C, 1.0f, col.data(), R * S * C,
                    wf.data(), R * S * C, 0.0f, out.data(), K);
        float *yn = y + (size_t)n * OH * OW * K;
        for (size_t i = 0; i < out.size(); i++) yn[i] = a * out[i] + (b != 0.0f ? b * yn[i] : 0.0f);
    }
    return CUDNN_STATUS_SUCCESS;
}

} // extern "C"
