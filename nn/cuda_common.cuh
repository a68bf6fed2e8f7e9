/* Shared by the CUDA translation units (nn/cuda_backend.cu, nn/ops_cuda.cu):
 * the definition of kb_cuda_state (opaque to C code), status-checking macros
 * and the grow-on-demand scratch buffer. Not included from C. */
#ifndef KB_CUDA_COMMON_CUH
#define KB_CUDA_COMMON_CUH

#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "nn/ops_scalar.h"

/* These C headers have no extern "C" guards of their own. */
extern "C" {
#include "nn/backend.h"
#include "nn/cuda_backend.h"
#include "nn/tensor.h"
#include "util/err.h"
}

/* Everything the CUDA backend needs beyond an op's arguments; one per kb_ctx.
 * All work is queued on `stream`; the cuBLAS handle is bound to it. */
struct kb_cuda_state {
    int device;                  /* CUDA ordinal */
    int sm_count;                /* multiprocessors (informational; launch shapes do not depend on it) */
    int cc_major;                /* compute capability (the fused bf16 attention needs 8 or more) */
    size_t smem_optin;           /* shared memory a block may opt in to (the fused attention's kernels) */
    char name[256];              /* device name */
    cudaStream_t stream;         /* the one stream all ops run on */
    cublasHandle_t cublas;       /* bound to stream, workspace = workspace below */
    cublasLtHandle_t cublaslt;   /* for fused-epilogue GEMMs (models); same workspace */
    void *workspace;             /* cuBLAS/cuBLASLt workspace (fixed, so cuBLAS never allocates its own) */
    size_t workspace_bytes;
    /* The arithmetic of GEMMs (nn/backend.h): FP32 by default, so that results
     * are comparable with the CPU reference. TF32 and BF16 run on tensor
     * cores; convolutions then use TF32 (kb_cuda_apply_math_mode). */
    kb_matmul_precision matmul;
    void *scratch;               /* grow-on-demand scratch for multi-pass reductions */
    size_t scratch_bytes;
    struct kb_lt_cache *lt;      /* cuBLASLt plans of kb_gemm_bias (nn/ops_gemm_lt_cuda.cu), made on first use */
    float *tfreq;                /* the timestep embedding's frequency table on the device (kb_timestep_freq), */
    int64_t tfreq_half;          /* uploaded on first use and again only when its size or max period changes */
    float tfreq_period;
    int lt_gelu;                 /* KINDBENCH_LT_GELU=1 at context creation: the BF16 mode's MLP uses cuBLASLt's
                                    GELU epilogues (kb_gemm_bias_gelu, kb_gemm_dgelu); off by default */
    int bf16_operands;           /* KINDBENCH_BF16_OPERANDS=1 at context creation (or kb_cuda_set_bf16_operands):
                                    the BF16 mode's GEMMs convert their fp32 operands to bf16 in scratch
                                    and run as native bf16 x bf16 -> fp32 products (kb_cuda_stage_bf16)
                                    instead of cuBLAS's fp32-input _FAST_16BF; off by default until measured */
    int lt_bgrad;                /* KINDBENCH_LT_BGRAD=1 at context creation: the BF16 mode's weight gradients
                                    (kb_gemm_wgrad) sum the bias gradient in cuBLASLt's BGRADB epilogue; off by
                                    default until measured */
    float *bgrad;                /* that epilogue's output (it writes, kb_gemm_wgrad adds), grown on demand */
    int64_t bgrad_n;
    kb_cuda_gemm_counts counts;  /* GEMMs launched on the experimental paths (kb_cuda_gemm_counts_of) */
    int lt_off;                  /* KINDBENCH_CUBLASLT=0 at context creation: kb_gemm_bias takes the
                                    GEMM + bias kernel path (to compare the two on a GPU) */
};

/* The CUDA state of ctx, or -1 with "<op>: not a CUDA context" when ctx is
 * not a CUDA context: the first check of every CUDA entry point. */
static inline int kb_cuda_op_state(kb_ctx *ctx, const char *op, kb_cuda_state **st, kb_err *err) {
    if (!ctx || ctx->device != KB_DEV_CUDA || !ctx->cuda)
        return kb_fail(err, "%s: not a CUDA context (kb_ctx_init with KB_DEV_CUDA first)", op);
    *st = ctx->cuda;
    return 0;
}

/* Frees the plans of kb_gemm_bias (NULL is fine). */
void kb_lt_cache_free(struct kb_lt_cache *c);

/* Sets the cuBLAS math mode from st->matmul (CUBLAS_DEFAULT_MATH for FP32:
 * true FP32, no TF32). Returns 0 or -1 with err set. */
int kb_cuda_apply_math_mode(kb_cuda_state *st, kb_err *err);

/* A device buffer of at least `bytes`, owned by st, valid until the next call.
 * Growing waits for the stream (the old buffer may still be in use by queued
 * work). Only one op uses it at a time: ops are serialised on st->stream. */
void *kb_cuda_scratch(kb_cuda_state *st, size_t bytes, const char *op, kb_err *err);

/* A row-major fp32 operand on the device: batch matrices of rows x cols, rows
 * ld apart, matrices stride apart (stride 0: every batch entry is the same). */
typedef struct {
    const float *p;
    int64_t rows, cols, ld, stride, batch;
} kb_stage_operand;

/* Packed bf16 copies (round to nearest even) of a and b in st's scratch
 * buffer: rows x cols per matrix with leading dimension cols, matrices
 * rows*cols apart (one matrix when the stride is 0). *a16 and *b16 are
 * 256-byte aligned and valid until the next use of the scratch; the
 * conversions are queued on st->stream. */
int kb_cuda_stage_bf16(kb_cuda_state *st, const char *op, const kb_stage_operand *a, const kb_stage_operand *b,
                       void **a16, void **b16, kb_err *err);
/* One packed bf16 copy of n contiguous floats (kb_cuda_stage_bf16 with one operand). */
int kb_cuda_stage1_bf16(kb_cuda_state *st, const char *op, const float *p, int64_t n, void **p16, kb_err *err);
/* Row-major C = alpha op(A) op(B) + beta C with A and B bf16 (device bits of
 * uint16_t buffers), C fp32: cublasGemmEx, CUBLAS_COMPUTE_32F (bf16 x bf16
 * products, fp32 accumulation). K == 0 gives C = beta C. */
int kb_cuda_gemm16(kb_cuda_state *st, const char *op, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                   float alpha, const void *A16, int64_t lda, const void *B16, int64_t ldb, float beta, float *C,
                   int64_t ldc, kb_err *err);
/* C16 = bf16(op(A) op(B)): the same GEMM with a bf16 C, which cuBLAS rounds
 * from its fp32 accumulation itself (its rounding, not kb_sc_f32_to_bf16's);
 * K must be > 0. */
int kb_cuda_gemm16_c16(kb_cuda_state *st, const char *op, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                       const void *A16, int64_t lda, const void *B16, int64_t ldb, uint16_t *C16, int64_t ldc,
                       kb_err *err);
/* The bf16-activation matmuls with a bf16 D in cuBLASLt (nn/ops_gemm_lt_cuda.cu:
 * the qkv linear with its bias epilogue, the MLP's GELU epilogues):
 * 0 with *done = 1 when the matmul ran, *done = 0 when there is no usable
 * plan (switched off, alignment, or refused), -1 on an error. */
int kb_lt_bias_x16_y16(kb_cuda_state *st, const char *op, uint16_t *y16, const uint16_t *x16, const float *W,
                       const float *bias, int64_t rows, int64_t in, int64_t out, int *done, kb_err *err);
int kb_lt_gelu_x16(kb_cuda_state *st, const char *op, uint16_t *act16, uint16_t *pre16, const uint16_t *x16,
                   const float *W, const float *bias, int64_t rows, int64_t in, int64_t out, int *done, kb_err *err);
int kb_lt_dgelu_x16(kb_cuda_state *st, const char *op, uint16_t *dpre16, const uint16_t *dy16, const float *W,
                    const uint16_t *pre16, int64_t rows, int64_t in, int64_t out, int *done, kb_err *err);
/* dW += dy16^T x16 and db += the sums of dy16's rows in one cuBLASLt matmul
 * (BGRADB epilogue), in the BF16 mode with KINDBENCH_LT_BGRAD=1; *done = 0
 * when it did not run (off, alignment, no plan): the caller's fallback. */
int kb_lt_wgrad_x16(kb_ctx *ctx, const char *op, float *dW, float *db, const uint16_t *dy16, const uint16_t *x16,
                    int64_t rows, int64_t in, int64_t out, int *done, kb_err *err);
/* out[c] += sum_r in16[r, c] over bf16 values (kb_sum_rows's scheme and order). */
int kb_cuda_sum_rows_bf16(kb_cuda_state *st, const char *op, float *out, const uint16_t *in16, int64_t rows,
                          int64_t cols, kb_err *err);
/* 1 when st's GEMMs stage bf16 operands (the BF16 mode with bf16_operands on). */
static inline int kb_cuda_bf16_staging(const kb_cuda_state *st) {
    return st->bf16_operands && st->matmul == KB_MATMUL_BF16;
}

/* Elementwise launches: KB_CUDA_BLOCK threads per block and kb_grid_1d(n)
 * blocks (at most KB_CUDA_MAX_GRID); the kernels loop grid-stride
 * (KB_GRID_STRIDE) over the rest, so no result depends on the grid size. */
#define KB_CUDA_BLOCK 256
#define KB_CUDA_MAX_GRID ((int64_t)1 << 20)

static inline unsigned kb_grid_1d(int64_t n) {
    int64_t g = (n + KB_CUDA_BLOCK - 1) / KB_CUDA_BLOCK;
    if (g > KB_CUDA_MAX_GRID) g = KB_CUDA_MAX_GRID;
    return (unsigned)(g < 1 ? 1 : g);
}

#define KB_GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* The sum of one double per thread of a KB_CUDA_BLOCK-thread block, in a
 * fixed tree order (deterministic); every thread gets the total, and the
 * block may call it again straight away. */
static __device__ __forceinline__ double kb_block_sum_tree(double s) {
    __shared__ double shm[KB_CUDA_BLOCK];
    shm[threadIdx.x] = s;
    __syncthreads();
    for (int w = KB_CUDA_BLOCK / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) shm[threadIdx.x] += shm[threadIdx.x + w];
        __syncthreads();
    }
    double total = shm[0];
    __syncthreads(); /* shm is reused by the next call */
    return total;
}

/* Threads per block for the block-per-row kernels: the smallest of 32, 64,
 * 128, 256 that covers the row (a function of cols only, so the reduction
 * order, and thus the result, is fixed for a given shape). */
static inline int kb_row_block(int64_t cols) {
    int b = 32;
    while (b < 256 && b < cols) b *= 2;
    return b;
}

static inline unsigned kb_grid_rows(int64_t rows) {
    return (unsigned)(rows < KB_CUDA_MAX_GRID ? rows : KB_CUDA_MAX_GRID);
}

/* Warp and block sums in double. The xor butterfly leaves the same value in
 * every lane (+ is commutative), and the combination order is fixed by the
 * block size, so results are deterministic. blockDim.x must be a multiple of
 * 32 (at most 1024); `shm` holds 32 values. Every thread gets the result. */
static __device__ __forceinline__ double kb_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ double kb_block_sum_d(double v, double *shm) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = kb_warp_sum_d(v);
    __syncthreads(); /* shm may still be read by a previous reduction */
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    return kb_warp_sum_d(lane < nwarps ? shm[lane] : 0.0);
}

/* LayerNorm statistics of one row, by a whole block (blockDim.x threads, a
 * multiple of 32): two passes in double (mean, then the mean of squared
 * deviations), m = (float)mean, rs = (float)(1 / sqrt(var + eps)). Shared by
 * every LayerNorm kernel so that fused forms give the plain one's bits. */
static __device__ __forceinline__ void kb_row_stats(const float *x, int64_t cols, float eps, double *shm, float *m,
                                                    float *rs) {
    double s = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += (double)x[c];
    double mu = kb_block_sum_d(s, shm) / (double)cols;
    double v = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        double d = (double)x[c] - mu;
        v = __dadd_rn(v, __dmul_rn(d, d));
    }
    v = kb_block_sum_d(v, shm);
    *m = (float)mu;
    *rs = (float)(1.0 / sqrt(v / (double)cols + (double)eps));
}

/* LayerNorm backward of one row, by a whole block: with g_c = g_at(c) and
 * xhat_c = (x_c - m) * rs, the row means of g and g * xhat in double (tree
 * order), rounded to float, then dx_c += ((g_c - mean g) - xhat_c mean(g xhat))
 * * rs; visit(c, xhat_c) runs after each column's update (the fused
 * modulation's backward sums its columns there). Shared by every LayerNorm
 * backward kernel, so that fused forms give the plain one's bits. */
template <typename G, typename V>
static __device__ __forceinline__ void kb_ln_bwd_row(float *dx, const float *x, float m, float rs, int64_t cols,
                                                     double *shm, G g_at, V visit) {
    double sg = 0.0, sgx = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        float g = g_at(c), xhat = __fmul_rn(__fsub_rn(x[c], m), rs);
        sg += (double)g;
        sgx += (double)g * (double)xhat; /* exact product: an FMA here rounds the same */
    }
    float g_mean = (float)(kb_block_sum_d(sg, shm) / (double)cols);
    float gx_mean = (float)(kb_block_sum_d(sgx, shm) / (double)cols);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        float g = g_at(c), xhat = __fmul_rn(__fsub_rn(x[c], m), rs);
        dx[c] = __fadd_rn(dx[c], __fmul_rn(__fsub_rn(__fsub_rn(g, g_mean), __fmul_rn(xhat, gx_mean)), rs));
        visit(c, xhat);
    }
}

/* An input element as float: fp32 as it is, bf16 (uint16_t bits) widened exactly. */
static __device__ __forceinline__ float kb_elem_f32(float v) { return v; }
static __device__ __forceinline__ float kb_elem_f32(uint16_t h) { return kb_sc_bf16_to_f32(h); }

/* An output element: fp32 as it is, or (a bf16 activation, uint16_t bits) the
 * round to nearest even of it by nn/ops_scalar.h, the CPU path's function. */
static __device__ __forceinline__ void kb_store_elem(float *p, float v) { *p = v; }
static __device__ __forceinline__ void kb_store_elem(uint16_t *p, float v) { *p = kb_sc_f32_to_bf16(v); }

/* `return`s -1 from the enclosing function with "<op>: <call> failed: <error>". */
#define KB_CUDA_CHECK(op, call)                                                                                   \
    do {                                                                                                          \
        cudaError_t kb_e_ = (call);                                                                               \
        if (kb_e_ != cudaSuccess) {                                                                               \
            (void)cudaGetLastError();                                                                             \
            return kb_fail(err, "%s: %s failed: %s (%s)", (op), #call, cudaGetErrorName(kb_e_),                   \
                           cudaGetErrorString(kb_e_));                                                            \
        }                                                                                                         \
    } while (0)

#define KB_CUBLAS_CHECK(op, call)                                                                                 \
    do {                                                                                                          \
        cublasStatus_t kb_s_ = (call);                                                                            \
        if (kb_s_ != CUBLAS_STATUS_SUCCESS)                                                                       \
            return kb_fail(err, "%s: %s failed: %s (%d)", (op), #call, cublasGetStatusString(kb_s_), (int)kb_s_); \
    } while (0)

/* After a kernel launch: reports a bad launch configuration or an earlier
 * (sticky) asynchronous error, naming the op and the kernel. */
#define KB_LAUNCH_CHECK(op, kernel_name)                                                                          \
    do {                                                                                                          \
        cudaError_t kb_e_ = cudaGetLastError();                                                                   \
        if (kb_e_ != cudaSuccess)                                                                                 \
            return kb_fail(err, "%s: launch of %s failed: %s (%s)", (op), (kernel_name), cudaGetErrorName(kb_e_), \
                           cudaGetErrorString(kb_e_));                                                            \
    } while (0)

#endif
