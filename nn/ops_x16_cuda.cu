/* CUDA paths of the linear-layer products on bf16 activations (nn/ops.h,
 * "*_x16"; kb_gemm_bias_x16_cuda, which uses the cuBLASLt plans, is in
 * nn/ops_gemm_lt_cuda.cu). The bf16 operands go straight into cuBLAS's
 * bf16 x bf16 -> fp32 GEMMs; the fp32 weight is converted into a bf16 copy
 * in the context's scratch per call (a weight is small beside the
 * activations it multiplies). Our kernels round to bf16 with nn/ops_scalar.h's
 * kb_sc_f32_to_bf16, the CPU path's own function, applied to the same fp32
 * values the fp32 kernels compute; where cuBLASLt's GELU epilogues run
 * (KINDBENCH_LT_GELU=1), the matmul computes and rounds the GELU itself, and
 * the bf16 input gradient (kb_gemm_dx_x16_y16) is a cuBLAS GEMM with a bf16
 * C, rounded by cuBLAS. */
#include "nn/cuda_common.cuh"

extern "C" {
#include "nn/ops_cuda.h"
}
#include "nn/ops_scalar.h"

/* p = prod + bias (per column of out): pre16 = bf16(p), act16 = bf16(gelu_tanh(p)) */
__global__ void gelu_split_bf16_kernel(uint16_t *act16, uint16_t *pre16, const float *prod, const float *bias,
                                       int64_t out, int64_t n) {
    KB_GRID_STRIDE(i, n) {
        float p = bias ? __fadd_rn(prod[i], bias[i % out]) : prod[i];
        pre16[i] = kb_sc_f32_to_bf16(p);
        act16[i] = kb_sc_f32_to_bf16(kb_sc_gelu_tanh(p));
    }
}

/* y16 = bf16(prod + bias) */
__global__ void bias_bf16_kernel(uint16_t *y16, const float *prod, const float *bias, int64_t out, int64_t n) {
    KB_GRID_STRIDE(i, n) y16[i] = kb_sc_f32_to_bf16(bias ? __fadd_rn(prod[i], bias[i % out]) : prod[i]);
}

/* dpre16 = bf16(g * gelu_tanh'(pre16)), the product as gelu_tanh_bwd_kernel forms it */
__global__ void dgelu_tanh_bf16_kernel(uint16_t *dpre16, const float *g, const uint16_t *pre16, int64_t n) {
    KB_GRID_STRIDE(i, n) {
        dpre16[i] = kb_sc_f32_to_bf16(__fmul_rn(g[i], kb_sc_gelu_tanh_grad(kb_sc_bf16_to_f32(pre16[i]))));
    }
}

__global__ void to_bf16_kernel(uint16_t *o, const float *in, int64_t n) {
    KB_GRID_STRIDE(i, n) o[i] = kb_sc_f32_to_bf16(in[i]);
}

/* W's bf16 copy and an fp32 buffer of nprod values, from one scratch request
 * (a second request could move the memory of the first). */
static int scratch_w16_prod(kb_cuda_state *st, const char *op, const float *W, int64_t nw, int64_t nprod, void **W16,
                            float **prod, kb_err *err) {
    size_t wbytes = ((size_t)nw * 2 + 255) & ~(size_t)255;
    unsigned char *buf = (unsigned char *)kb_cuda_scratch(st, wbytes + (size_t)nprod * sizeof(float), op, err);
    if (!buf) return -1;
    *W16 = buf, *prod = (float *)(buf + wbytes);
    if (nw > 0) {
        to_bf16_kernel<<<kb_grid_1d(nw), KB_CUDA_BLOCK, 0, st->stream>>>((uint16_t *)buf, W, nw);
        KB_LAUNCH_CHECK(op, "to_bf16_kernel");
    }
    return 0;
}

/* The layer's product into fp32 scratch, with W's bf16 copy from the same
 * request: forward, prod [rows, out] = a16 [rows, in] W^T; backward (through
 * the layer's input), prod [rows, in] = a16 [rows, out] W. */
static int product_in_scratch(kb_cuda_state *st, const char *op, bool forward, const uint16_t *a16, const float *W,
                              int64_t rows, int64_t in, int64_t out, float **prod, kb_err *err) {
    int64_t N = forward ? out : in, K = forward ? in : out;
    void *W16;
    if (scratch_w16_prod(st, op, W, K > 0 ? out * in : 0, rows * N, &W16, prod, err)) return -1;
    return kb_cuda_gemm16(st, op, false, forward, rows, N, K, 1.0f, a16, K, W16, in, 0.0f, *prod, N, err);
}

#define KB_X16_BEGIN(opname)                                                                                      \
    const char *op = (opname);                                                                                    \
    kb_cuda_state *st = NULL;                                                                                     \
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1

/* One cuBLASLt matmul with the bias in the epilogue and a bf16 D where it has
 * a plan (nn/ops_gemm_lt_cuda.cu), else the GEMM into scratch and one kernel. */
extern "C" int kb_gemm_bias_x16_y16_cuda(kb_ctx *ctx, uint16_t *y16, const uint16_t *x16, const float *W,
                                         const float *bias, int64_t rows, int64_t in, int64_t out, kb_err *err) {
    KB_X16_BEGIN("gemm_bias_x16_y16");
    int64_t n = rows * out;
    if (n == 0) return 0;
    int done = 0;
    if (kb_lt_bias_x16_y16(st, op, y16, x16, W, bias, rows, in, out, &done, err)) return -1;
    if (done) return 0;
    float *prod;
    if (product_in_scratch(st, op, true, x16, W, rows, in, out, &prod, err)) return -1;
    bias_bf16_kernel<<<kb_grid_1d(n), KB_CUDA_BLOCK, 0, st->stream>>>(y16, prod, bias, out, n);
    KB_LAUNCH_CHECK(op, "bias_bf16_kernel");
    return 0;
}

/* With cuBLASLt's GELU epilogue where it has a plan (nn/ops_gemm_lt_cuda.cu:
 * bf16 pre-activation and activation from the matmul itself), else the GEMM
 * into scratch and one kernel for both outputs. */
extern "C" int kb_gemm_bias_gelu_x16_cuda(kb_ctx *ctx, uint16_t *act16, uint16_t *pre16, const uint16_t *x16,
                                          const float *W, const float *bias, int64_t rows, int64_t in, int64_t out,
                                          kb_err *err) {
    KB_X16_BEGIN("gemm_bias_gelu_x16");
    int64_t n = rows * out;
    if (n == 0) return 0;
    int done = 0;
    if (kb_lt_gelu_x16(st, op, act16, pre16, x16, W, bias, rows, in, out, &done, err)) return -1;
    if (done) return 0;
    float *prod;
    if (product_in_scratch(st, op, true, x16, W, rows, in, out, &prod, err)) return -1;
    gelu_split_bf16_kernel<<<kb_grid_1d(n), KB_CUDA_BLOCK, 0, st->stream>>>(act16, pre16, prod, bias, out, n);
    KB_LAUNCH_CHECK(op, "gelu_split_bf16_kernel");
    return 0;
}

/* dx = dy16 W (+ dx): row-major [rows, out] x [out, in] on a bf16 copy of W. */
static int dx_x16(kb_cuda_state *st, const char *op, float *dx, float beta, const uint16_t *dy16, const float *W,
                  int64_t rows, int64_t in, int64_t out, kb_err *err) {
    if (rows == 0 || in == 0) return 0;
    void *W16 = NULL;
    if (out > 0 && kb_cuda_stage1_bf16(st, op, W, out * in, &W16, err)) return -1;
    return kb_cuda_gemm16(st, op, false, false, rows, in, out, 1.0f, dy16, out, W16, in, beta, dx, in, err);
}

extern "C" int kb_gemm_dx_x16_cuda(kb_ctx *ctx, float *dx, kb_grad_mode mode, const uint16_t *dy16, const float *W,
                                   int64_t rows, int64_t in, int64_t out, kb_err *err) {
    KB_X16_BEGIN("gemm_dx_x16");
    return dx_x16(st, op, dx, mode == KB_GRAD_SET ? 0.0f : 1.0f, dy16, W, rows, in, out, err);
}

/* dx16 = bf16(dy16 W): the GEMM writes bf16 itself (no fp32 pass). */
extern "C" int kb_gemm_dx_x16_y16_cuda(kb_ctx *ctx, uint16_t *dx16, const uint16_t *dy16, const float *W,
                                       int64_t rows, int64_t in, int64_t out, kb_err *err) {
    KB_X16_BEGIN("gemm_dx_x16_y16");
    if (rows == 0 || in == 0) return 0;
    if (out == 0) { /* an empty sum: bf16 zeros are zero bits */
        KB_CUDA_CHECK(op, cudaMemsetAsync(dx16, 0, (size_t)(rows * in) * sizeof(uint16_t), st->stream));
        return 0;
    }
    void *W16 = NULL;
    if (kb_cuda_stage1_bf16(st, op, W, out * in, &W16, err)) return -1;
    return kb_cuda_gemm16_c16(st, op, false, false, rows, in, out, dy16, out, W16, in, dx16, in, err);
}

/* With cuBLASLt's DGELU epilogue where it has a plan, else the GEMM into
 * scratch and the GELU' kernel. */
extern "C" int kb_gemm_dgelu_x16_cuda(kb_ctx *ctx, uint16_t *dpre16, const uint16_t *dy16, const float *W,
                                      const uint16_t *pre16, int64_t rows, int64_t in, int64_t out, kb_err *err) {
    KB_X16_BEGIN("gemm_dgelu_x16");
    int64_t n = rows * in;
    if (n == 0) return 0;
    int done = 0;
    if (kb_lt_dgelu_x16(st, op, dpre16, dy16, W, pre16, rows, in, out, &done, err)) return -1;
    if (done) return 0;
    float *prod;
    if (product_in_scratch(st, op, false, dy16, W, rows, in, out, &prod, err)) return -1;
    dgelu_tanh_bf16_kernel<<<kb_grid_1d(n), KB_CUDA_BLOCK, 0, st->stream>>>(dpre16, prod, pre16, n);
    KB_LAUNCH_CHECK(op, "dgelu_tanh_bf16_kernel");
    return 0;
}

/* dW[out, in] += dy16^T x16 (both operands bf16 as they are), then db:
 * one cuBLASLt matmul with the BGRADB epilogue when that is on. */
extern "C" int kb_gemm_wgrad_x16_cuda(kb_ctx *ctx, float *dW, float *db, const uint16_t *dy16, const uint16_t *x16,
                                      int64_t rows, int64_t in, int64_t out, kb_err *err) {
    KB_X16_BEGIN("gemm_wgrad_x16");
    int done = 0;
    if (kb_lt_wgrad_x16(ctx, op, dW, db, dy16, x16, rows, in, out, &done, err)) return -1;
    if (done) return 0;
    if (kb_cuda_gemm16(st, op, true, false, out, in, rows, 1.0f, dy16, out, x16, in, 1.0f, dW, in, err)) return -1;
    return db ? kb_cuda_sum_rows_bf16(st, op, db, dy16, rows, out, err) : 0;
}
