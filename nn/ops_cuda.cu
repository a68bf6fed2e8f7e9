/* CUDA implementations of the ops in nn/ops.h (declared in nn/ops_cuda.h), in
 * llm.c style: cuBLAS for GEMMs, simple kernels for the rest, each checked
 * against the plain C reference nn/ops_ref.c by tests/test_ops_cuda.c.
 *
 * Rules that hold for every kernel here:
 *   - 64-bit indices, grid-stride loops, and grids capped well below the
 *     hardware limits (2^31-1 blocks in x, 65535 in y), so any size works;
 *     size 0 launches nothing.
 *   - Launch shapes depend only on the op's sizes (never on the GPU model or
 *     on timing) and there are no float atomics: every sum is taken in a fixed
 *     order, so reruns are bit-identical.
 *   - Float arithmetic mirrors nn/ops_ref.c operation by operation, written
 *     with the explicitly rounded intrinsics (__fadd_rn, __fmul_rn, ...) that
 *     nvcc never fuses into FMAs; per-element math (gelu, silu, exp, bf16,
 *     u8) is nn/ops_scalar.h itself, and random fills are nn/rng.h, so all
 *     elementwise ops, conversions and fills give the reference's bits.
 *   - Reductions are in double like the reference (GEMM aside: cuBLAS FP32),
 *     only in tree order instead of sequential order, so LayerNorm, softmax,
 *     sum_rows and kb_sum agree with it to the last bit or so. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/cuda_common.cuh"

#include <cuda_bf16.h>

extern "C" {
#include "nn/ops_cuda.h"
}
#include "nn/ops_scalar.h"
#include "nn/rng.h"

#define KB_COLSUM_CHUNK_MIN 256      /* column sums: at least this many rows per chunk */
#define KB_COLSUM_MAX_CHUNKS 1024    /* ... and at most this many chunks (grid y) */
#define KB_SUM_MAX_BLOCKS 1024       /* kb_sum: partial sums in the first pass */

/* ------------------------------------------------------------------ helpers */

/* Common prologue: the state, and a negative-size check. */
#define KB_OP_BEGIN(opname)                                                                                       \
    const char *op = (opname);                                                                                    \
    kb_cuda_state *st = NULL;                                                                                     \
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1

#define KB_NEED_NONNEG(x)                                                                                         \
    do {                                                                                                          \
        if ((x) < 0) return kb_fail(err, "%s: negative size %s = %lld", op, #x, (long long)(x));                  \
    } while (0)

/* Warp and block max (sums: kb_block_sum_d in nn/cuda_common.cuh). blockDim.x
 * must be a multiple of 32; `shm` holds 32 values; every thread gets the result. */
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ float block_max(float v, float *shm) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads(); /* shm may still be read by a previous reduction */
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    return warp_max(lane < nwarps ? shm[lane] : -INFINITY);
}
/* --------------------------------------------------------------------- GEMM */

/* The K == 0 case of GEMM, where op(A) @ op(B) is an empty sum, as the
 * reference computes it: C = alpha * 0 (+ beta * C unless beta == 0). */
__global__ void gemm_scale_c_kernel(float *C, int64_t M, int64_t N, int64_t ldc, int64_t strideC, int64_t batch,
                                    float alpha, float beta) {
    float ab = __fmul_rn(alpha, 0.0f);
    int64_t per = M * N;
    KB_GRID_STRIDE(i, per * batch) {
        int64_t b = i / per, rem = i - b * per;
        int64_t r = rem / N, c = rem - r * N;
        float *p = C + b * strideC + r * ldc + c;
        *p = beta == 0.0f ? ab : __fadd_rn(ab, __fmul_rn(beta, *p));
    }
}

/* out (packed: batch x rows x cols) = bf16 of a strided operand (rows x cols per matrix, ld apart, stride apart). */
__global__ void pack_bf16_kernel(__nv_bfloat16 *out, const float *in, int64_t rows, int64_t cols, int64_t ld,
                                 int64_t stride, int64_t n) {
    int64_t per = rows * cols;
    KB_GRID_STRIDE(i, n) {
        int64_t b = i / per, rem = i - b * per, r = rem / cols, c = rem - r * cols;
        out[i] = __float2bfloat16_rn(in[b * stride + r * ld + c]);
    }
}

/* Elements of an operand's packed copy: one matrix when all share it (stride 0). */
static int64_t packed_count(const kb_stage_operand *o) {
    return (o->stride ? o->batch : 1) * o->rows * o->cols;
}

int kb_cuda_stage_bf16(kb_cuda_state *st, const char *op, const kb_stage_operand *a, const kb_stage_operand *b,
                       void **a16, void **b16, kb_err *err) {
    int64_t na = packed_count(a), nb = packed_count(b);
    size_t abytes = ((size_t)na * sizeof(__nv_bfloat16) + 255) & ~(size_t)255;
    unsigned char *buf = (unsigned char *)kb_cuda_scratch(st, abytes + (size_t)nb * sizeof(__nv_bfloat16), op, err);
    if (!buf) return -1;
    *a16 = buf, *b16 = buf + abytes;
    const kb_stage_operand *ops[2] = {a, b};
    void *outs[2] = {*a16, *b16};
    for (int k = 0; k < 2; k++) {
        int64_t n = packed_count(ops[k]);
        if (n == 0) continue;
        pack_bf16_kernel<<<kb_grid_1d(n), KB_CUDA_BLOCK, 0, st->stream>>>(
            (__nv_bfloat16 *)outs[k], ops[k]->p, ops[k]->rows, ops[k]->cols, ops[k]->ld, ops[k]->stride, n);
        KB_LAUNCH_CHECK(op, "pack_bf16_kernel");
    }
    return 0;
}

int kb_cuda_stage1_bf16(kb_cuda_state *st, const char *op, const float *p, int64_t n, void **p16, kb_err *err) {
    kb_stage_operand a = {p, 1, n, n, 0, 1}, none = {p, 1, 0, 0, 0, 1};
    void *unused;
    return kb_cuda_stage_bf16(st, op, &a, &none, p16, &unused, err);
}

/* The BF16 mode's GEMM on packed bf16 copies of A and B (leading dimension =
 * columns, stride = one matrix or 0), bf16 x bf16 products, fp32 accumulation. */
static cublasStatus_t gemm_staged_bf16(kb_cuda_state *st, const char *op, bool transA, bool transB, int64_t M,
                                       int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                                       int64_t strideA, const float *B, int64_t ldb, int64_t strideB, float beta,
                                       float *C, int64_t ldc, int64_t strideC, int64_t batch, int *staged,
                                       kb_err *err) {
    void *A16, *B16;
    kb_stage_operand a = {A, transA ? K : M, transA ? M : K, lda, strideA, batch};
    kb_stage_operand b = {B, transB ? N : K, transB ? K : N, ldb, strideB, batch};
    *staged = kb_cuda_stage_bf16(st, op, &a, &b, &A16, &B16, err) == 0;
    if (!*staged) return CUBLAS_STATUS_SUCCESS; /* err is set */
    int64_t sa = strideA ? a.rows * a.cols : 0, sb = strideB ? b.rows * b.cols : 0;
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t s = cublasGemmStridedBatchedEx_64(st->cublas, opB, opA, N, M, K, &alpha, B16, CUDA_R_16BF, b.cols,
                                                     sb, A16, CUDA_R_16BF, a.cols, sa, &beta, C, CUDA_R_32F, ldc,
                                                     strideC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s == CUBLAS_STATUS_SUCCESS) st->counts.bf16_staged++;
    return s;
}

/* Row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T op(A)^T + beta C^T:
 * cuBLAS sees the row-major buffers as their transposes, so we pass B first, with the same
 * transpose flags, and swap M and N. */
static int gemm_common(kb_cuda_state *st, const char *op, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, int64_t strideA, const float *B, int64_t ldb,
                       int64_t strideB, float beta, float *C, int64_t ldc, int64_t strideC, int64_t batch,
                       kb_err *err) {
    KB_NEED_NONNEG(M);
    KB_NEED_NONNEG(N);
    KB_NEED_NONNEG(K);
    KB_NEED_NONNEG(batch);
    if (M == 0 || N == 0 || batch == 0) return 0;
    if (K == 0) {
        gemm_scale_c_kernel<<<kb_grid_1d(M * N * batch), KB_CUDA_BLOCK, 0, st->stream>>>(C, M, N, ldc, strideC,
                                                                                           batch, alpha, beta);
        KB_LAUNCH_CHECK(op, "gemm_scale_c_kernel");
        return 0;
    }
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t s;
    const char *call;
    int single = batch == 1 && strideA == 0 && strideB == 0 && strideC == 0;
    if (kb_cuda_bf16_staging(st)) {
        int staged = 0;
        call = "cublasGemmStridedBatchedEx_64 (staged bf16 operands)";
        s = gemm_staged_bf16(st, op, transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc,
                             strideC, batch, &staged, err);
        if (!staged) return -1;
    } else if (st->matmul == KB_MATMUL_BF16) {
        /* fp32 in and out, bf16 products on the tensor cores, fp32 accumulation */
        const cublasComputeType_t ct = CUBLAS_COMPUTE_32F_FAST_16BF;
        if (single) {
            call = "cublasGemmEx_64 (bf16 compute)";
            s = cublasGemmEx_64(st->cublas, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta,
                                C, CUDA_R_32F, ldc, ct, CUBLAS_GEMM_DEFAULT);
        } else {
            call = "cublasGemmStridedBatchedEx_64 (bf16 compute)";
            s = cublasGemmStridedBatchedEx_64(st->cublas, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, strideB, A,
                                              CUDA_R_32F, lda, strideA, &beta, C, CUDA_R_32F, ldc, strideC, batch, ct,
                                              CUBLAS_GEMM_DEFAULT);
        }
    } else if (single) {
        call = "cublasSgemm_64";
        s = cublasSgemm_64(st->cublas, opB, opA, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc);
    } else {
        call = "cublasSgemmStridedBatched_64";
        s = cublasSgemmStridedBatched_64(st->cublas, opB, opA, N, M, K, &alpha, B, ldb, strideB, A, lda, strideA,
                                         &beta, C, ldc, strideC, batch);
    }
    if (s != CUBLAS_STATUS_SUCCESS)
        return kb_fail(err,
                       "%s: %s failed: %s (%d) for M=%lld N=%lld K=%lld transA=%d transB=%d lda=%lld ldb=%lld "
                       "ldc=%lld batch=%lld",
                       op, call, cublasGetStatusString(s), (int)s, (long long)M, (long long)N, (long long)K,
                       (int)transA, (int)transB, (long long)lda, (long long)ldb, (long long)ldc, (long long)batch);
    return 0;
}

/* cublasGemmEx on bf16 A and B, fp32 accumulation, C of type ct (fp32 or bf16). */
static int gemm16_any(kb_cuda_state *st, const char *op, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                      float alpha, const void *A16, int64_t lda, const void *B16, int64_t ldb, float beta, void *C,
                      cudaDataType_t ct, int64_t ldc, kb_err *err) {
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B first (see gemm_common) */
    cublasStatus_t s = cublasGemmEx_64(st->cublas, opB, opA, N, M, K, &alpha, B16, CUDA_R_16BF, ldb, A16, CUDA_R_16BF,
                                       lda, &beta, C, ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return kb_fail(err, "%s: cublasGemmEx_64 (bf16 operands, %s C) failed: %s (%d) for M=%lld N=%lld K=%lld "
                            "transA=%d transB=%d lda=%lld ldb=%lld ldc=%lld",
                       op, ct == CUDA_R_16BF ? "bf16" : "fp32", cublasGetStatusString(s), (int)s, (long long)M,
                       (long long)N, (long long)K, (int)transA, (int)transB, (long long)lda, (long long)ldb,
                       (long long)ldc);
    return 0;
}

int kb_cuda_gemm16(kb_cuda_state *st, const char *op, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                   float alpha, const void *A16, int64_t lda, const void *B16, int64_t ldb, float beta, float *C,
                   int64_t ldc, kb_err *err) {
    if (M == 0 || N == 0) return 0;
    if (K == 0) {
        gemm_scale_c_kernel<<<kb_grid_1d(M * N), KB_CUDA_BLOCK, 0, st->stream>>>(C, M, N, ldc, 0, 1, alpha, beta);
        KB_LAUNCH_CHECK(op, "gemm_scale_c_kernel");
        return 0;
    }
    return gemm16_any(st, op, transA, transB, M, N, K, alpha, A16, lda, B16, ldb, beta, C, CUDA_R_32F, ldc, err);
}

int kb_cuda_gemm16_c16(kb_cuda_state *st, const char *op, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                       const void *A16, int64_t lda, const void *B16, int64_t ldb, uint16_t *C16, int64_t ldc,
                       kb_err *err) {
    if (M == 0 || N == 0) return 0;
    if (K == 0) return kb_fail(err, "%s: a bf16-output product needs K > 0 (the caller zeroes C itself)", op);
    return gemm16_any(st, op, transA, transB, M, N, K, 1.0f, A16, lda, B16, ldb, 0.0f, C16, CUDA_R_16BF, ldc, err);
}

extern "C" int kb_gemm_cuda(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                            const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                            int64_t ldc, kb_err *err) {
    KB_OP_BEGIN("gemm");
    return gemm_common(st, op, transA, transB, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, err);
}

extern "C" int kb_gemm_batched_cuda(kb_ctx *ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                                    float alpha, const float *A, int64_t lda, int64_t strideA, const float *B,
                                    int64_t ldb, int64_t strideB, float beta, float *C, int64_t ldc, int64_t strideC,
                                    int64_t batch, kb_err *err) {
    KB_OP_BEGIN("gemm_batched");
    return gemm_common(st, op, transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc,
                       strideC, batch, err);
}

/* -------------------------------------------------------------- elementwise */

__global__ void add_kernel(float *out, const float *a, const float *b, int64_t n) {
    KB_GRID_STRIDE(i, n) out[i] = __fadd_rn(a[i], b[i]);
}
__global__ void mul_kernel(float *out, const float *a, const float *b, int64_t n) {
    KB_GRID_STRIDE(i, n) out[i] = __fmul_rn(a[i], b[i]);
}
__global__ void axpy_kernel(float *y, float alpha, const float *x, int64_t n) {
    KB_GRID_STRIDE(i, n) y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i]));
}
__global__ void scale_kernel(float *x, float alpha, int64_t n) {
    KB_GRID_STRIDE(i, n) x[i] = __fmul_rn(x[i], alpha);
}
__global__ void fill_kernel(float *x, float value, int64_t n) {
    KB_GRID_STRIDE(i, n) x[i] = value;
}
__global__ void add_bias_kernel(float *out, const float *bias, int64_t rows, int64_t cols) {
    KB_GRID_STRIDE(i, rows * cols) out[i] = __fadd_rn(out[i], bias[i % cols]);
}

/* One launch of an elementwise kernel over n elements, with the checks. */
#define KB_LAUNCH_1D(kernel, n, ...)                                                                              \
    do {                                                                                                          \
        KB_NEED_NONNEG(n);                                                                                        \
        if ((n) == 0) return 0;                                                                                   \
        kernel<<<kb_grid_1d((n)), KB_CUDA_BLOCK, 0, st->stream>>>(__VA_ARGS__);                                   \
        KB_LAUNCH_CHECK(op, #kernel);                                                                             \
        return 0;                                                                                                 \
    } while (0)

extern "C" int kb_add_cuda(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err) {
    KB_OP_BEGIN("add");
    KB_LAUNCH_1D(add_kernel, n, out, a, b, n);
}
extern "C" int kb_mul_cuda(kb_ctx *ctx, float *out, const float *a, const float *b, int64_t n, kb_err *err) {
    KB_OP_BEGIN("mul");
    KB_LAUNCH_1D(mul_kernel, n, out, a, b, n);
}
extern "C" int kb_axpy_cuda(kb_ctx *ctx, float *y, float alpha, const float *x, int64_t n, kb_err *err) {
    KB_OP_BEGIN("axpy");
    KB_LAUNCH_1D(axpy_kernel, n, y, alpha, x, n);
}
extern "C" int kb_scale_cuda(kb_ctx *ctx, float *x, float alpha, int64_t n, kb_err *err) {
    KB_OP_BEGIN("scale");
    KB_LAUNCH_1D(scale_kernel, n, x, alpha, n);
}
extern "C" int kb_fill_cuda(kb_ctx *ctx, float *x, float value, int64_t n, kb_err *err) {
    KB_OP_BEGIN("fill");
    KB_LAUNCH_1D(fill_kernel, n, x, value, n);
}
extern "C" int kb_add_bias_cuda(kb_ctx *ctx, float *out, const float *bias, int64_t rows, int64_t cols, kb_err *err) {
    KB_OP_BEGIN("add_bias");
    KB_NEED_NONNEG(rows);
    KB_NEED_NONNEG(cols);
    KB_LAUNCH_1D(add_bias_kernel, rows * cols, out, bias, rows, cols);
}

/* ----------------------------------------------------- column sums (sum_rows)
 * Deterministic two-pass reduction over rows, in double like the reference:
 * the rows are split into nchunks chunks (a function of rows only); pass 1 has
 * one block per (32-column tile, chunk) writing partial[chunk, col] (32x8
 * threads: each of the 8 row lanes sums every 8th row of the chunk, then lane
 * 0 adds the 8 in order; a warp reads 32 consecutive floats of a row); pass 2
 * adds the partials of each column in chunk order and accumulates into out:
 * out[c] = out[c] + (float)sum. */

typedef struct {
    int64_t nchunks, rows_per_chunk;
} colsum_plan;

static colsum_plan colsum_plan_for(int64_t rows) {
    colsum_plan p;
    p.nchunks = (rows + KB_COLSUM_CHUNK_MIN - 1) / KB_COLSUM_CHUNK_MIN;
    if (p.nchunks > KB_COLSUM_MAX_CHUNKS) p.nchunks = KB_COLSUM_MAX_CHUNKS;
    if (p.nchunks < 1) p.nchunks = 1;
    p.rows_per_chunk = (rows + p.nchunks - 1) / p.nchunks; /* trailing chunks may be empty: they write 0 */
    return p;
}

static dim3 colsum_grid(int64_t cols, int64_t nchunks) {
    int64_t tiles = (cols + 31) / 32;
    if (tiles > 65535) tiles = 65535; /* the kernels loop over further tiles */
    return dim3((unsigned)tiles, (unsigned)nchunks, 1);
}

/* partial[chunk * cols + c] = sum over the chunk's rows of in[r, c] (T: float or bf16 bits) */
template <typename T>
__global__ void colsum_partial_kernel(double *partial, const T *in, int64_t rows, int64_t cols,
                                      int64_t rows_per_chunk) {
    __shared__ double acc[8][33];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk;
    int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    for (int64_t c0 = (int64_t)blockIdx.x * 32; c0 < cols; c0 += (int64_t)gridDim.x * 32) {
        int64_t c = c0 + tx;
        double s = 0.0;
        if (c < cols)
            for (int64_t r = r0 + ty; r < r1; r += 8) s += (double)kb_elem_f32(in[r * cols + c]);
        acc[ty][tx] = s;
        __syncthreads();
        if (ty == 0 && c < cols) {
            double t = acc[0][tx];
            for (int k = 1; k < 8; k++) t += acc[k][tx];
            partial[(int64_t)blockIdx.y * cols + c] = t;
        }
        __syncthreads();
    }
}

/* out[c] = out[c] + (float)(sum_k partial[k * cols + c]), k in order */
__global__ void colsum_finish_kernel(float *out, const double *partial, int64_t nchunks, int64_t cols) {
    KB_GRID_STRIDE(c, cols) {
        double s = 0.0;
        for (int64_t k = 0; k < nchunks; k++) s += partial[k * cols + c];
        out[c] = __fadd_rn(out[c], (float)s);
    }
}

/* kb_sum_rows for fp32 or bf16 rows: the partial pass, then the ordered finish. */
template <typename T>
static int sum_rows_any(kb_cuda_state *st, const char *op, float *out, const T *in, int64_t rows, int64_t cols,
                        kb_err *err) {
    if (rows == 0 || cols == 0) return 0; /* adds 0.0f: out is unchanged (up to the sign of a zero) */
    colsum_plan p = colsum_plan_for(rows);
    double *partial = (double *)kb_cuda_scratch(st, (size_t)(p.nchunks * cols) * sizeof(double), op, err);
    if (!partial) return -1;
    colsum_partial_kernel<T><<<colsum_grid(cols, p.nchunks), dim3(32, 8), 0, st->stream>>>(partial, in, rows, cols,
                                                                                           p.rows_per_chunk);
    KB_LAUNCH_CHECK(op, "colsum_partial_kernel");
    colsum_finish_kernel<<<kb_grid_1d(cols), KB_CUDA_BLOCK, 0, st->stream>>>(out, partial, p.nchunks, cols);
    KB_LAUNCH_CHECK(op, "colsum_finish_kernel");
    return 0;
}

extern "C" int kb_sum_rows_cuda(kb_ctx *ctx, float *out, const float *in, int64_t rows, int64_t cols, kb_err *err) {
    KB_OP_BEGIN("sum_rows");
    KB_NEED_NONNEG(rows);
    KB_NEED_NONNEG(cols);
    return sum_rows_any(st, op, out, in, rows, cols, err);
}

int kb_cuda_sum_rows_bf16(kb_cuda_state *st, const char *op, float *out, const uint16_t *in16, int64_t rows,
                          int64_t cols, kb_err *err) {
    if (rows < 0 || cols < 0)
        return kb_fail(err, "%s: negative size rows=%lld cols=%lld", op, (long long)rows, (long long)cols);
    return sum_rows_any(st, op, out, in16, rows, cols, err);
}

/* ------------------------------------------------------------ sum in double
 * Pass 1: nblocks (a function of n only) blocks, each thread summing a
 * grid-stride slice in double, reduced per block in fixed order; pass 2: one
 * block adds the nblocks partials in fixed order. */

__global__ void sum_partial_kernel(double *partial, const float *in, int64_t n) {
    __shared__ double shm[32];
    double s = 0.0;
    KB_GRID_STRIDE(i, n) s += (double)in[i];
    s = kb_block_sum_d(s, shm);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_finish_kernel(double *out, const double *partial, int64_t nparts) {
    __shared__ double shm[32];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < nparts; i += blockDim.x) s += partial[i];
    s = kb_block_sum_d(s, shm);
    if (threadIdx.x == 0) *out = s;
}

extern "C" int kb_sum_cuda(kb_ctx *ctx, double *out, const float *in, int64_t n, kb_err *err) {
    KB_OP_BEGIN("sum");
    KB_NEED_NONNEG(n);
    /* `out` should be device memory (ops.h: pointers live on the ctx's device);
     * host memory is accepted too, and is then written before we return. */
    cudaPointerAttributes attr;
    KB_CUDA_CHECK(op, cudaPointerGetAttributes(&attr, out));
    int out_on_device = attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
    int64_t nblocks = (n + KB_CUDA_BLOCK - 1) / KB_CUDA_BLOCK;
    if (nblocks > KB_SUM_MAX_BLOCKS) nblocks = KB_SUM_MAX_BLOCKS;
    if (nblocks < 1) nblocks = 1;
    double *partial = (double *)kb_cuda_scratch(st, (size_t)(nblocks + 1) * sizeof(double), op, err);
    if (!partial) return -1;
    /* n == 0 still runs: each block writes 0.0, and the total is 0.0 */
    sum_partial_kernel<<<(unsigned)nblocks, KB_CUDA_BLOCK, 0, st->stream>>>(partial, in, n);
    KB_LAUNCH_CHECK(op, "sum_partial_kernel");
    double *dst = out_on_device ? out : partial + nblocks;
    sum_finish_kernel<<<1, KB_CUDA_BLOCK, 0, st->stream>>>(dst, partial, nblocks);
    KB_LAUNCH_CHECK(op, "sum_finish_kernel");
    if (!out_on_device) {
        KB_CUDA_CHECK(op, cudaMemcpyAsync(out, dst, sizeof(double), cudaMemcpyDeviceToHost, st->stream));
        KB_CUDA_CHECK(op, cudaStreamSynchronize(st->stream));
    }
    return 0;
}

/* -------------------------------------------------------------- activations
 * nn/ops_scalar.h per element (the reference's own functions), and
 * dinp = dinp + dout * f'(x) with two roundings, as the reference. */

__global__ void gelu_tanh_fwd_kernel(float *out, const float *inp, int64_t n) {
    KB_GRID_STRIDE(i, n) out[i] = kb_sc_gelu_tanh(inp[i]);
}
__global__ void gelu_tanh_bwd_kernel(float *dinp, const float *inp, const float *dout, int64_t n, int set) {
    KB_GRID_STRIDE(i, n) {
        float g = __fmul_rn(dout[i], kb_sc_gelu_tanh_grad(inp[i]));
        dinp[i] = set ? g : __fadd_rn(dinp[i], g);
    }
}
__global__ void silu_fwd_kernel(float *out, const float *inp, int64_t n) {
    KB_GRID_STRIDE(i, n) out[i] = kb_sc_silu(inp[i]);
}
__global__ void silu_bwd_kernel(float *dinp, const float *inp, const float *dout, int64_t n) {
    KB_GRID_STRIDE(i, n) dinp[i] = __fadd_rn(dinp[i], __fmul_rn(dout[i], kb_sc_silu_grad(inp[i])));
}
__global__ void relu_fwd_kernel(float *out, const float *inp, int64_t n) {
    KB_GRID_STRIDE(i, n) out[i] = kb_sc_relu(inp[i]);
}
__global__ void relu_bwd_kernel(float *dinp, const float *inp, const float *dout, int64_t n) {
    KB_GRID_STRIDE(i, n) dinp[i] = __fadd_rn(dinp[i], inp[i] > 0.0f ? dout[i] : 0.0f);
}

extern "C" int kb_gelu_tanh_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    KB_OP_BEGIN("gelu_tanh_fwd");
    KB_LAUNCH_1D(gelu_tanh_fwd_kernel, n, out, inp, n);
}
extern "C" int kb_gelu_tanh_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n,
                                     kb_grad_mode mode, kb_err *err) {
    KB_OP_BEGIN("gelu_tanh_bwd");
    KB_LAUNCH_1D(gelu_tanh_bwd_kernel, n, dinp, inp, dout, n, mode == KB_GRAD_SET);
}
extern "C" int kb_silu_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    KB_OP_BEGIN("silu_fwd");
    KB_LAUNCH_1D(silu_fwd_kernel, n, out, inp, n);
}
extern "C" int kb_silu_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n,
                                kb_err *err) {
    KB_OP_BEGIN("silu_bwd");
    KB_LAUNCH_1D(silu_bwd_kernel, n, dinp, inp, dout, n);
}
extern "C" int kb_relu_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t n, kb_err *err) {
    KB_OP_BEGIN("relu_fwd");
    KB_LAUNCH_1D(relu_fwd_kernel, n, out, inp, n);
}
extern "C" int kb_relu_bwd_cuda(kb_ctx *ctx, float *dinp, const float *inp, const float *dout, int64_t n,
                                kb_err *err) {
    KB_OP_BEGIN("relu_bwd");
    KB_LAUNCH_1D(relu_bwd_kernel, n, dinp, inp, dout, n);
}

/* ---------------------------------------------------------------- LayerNorm
 * Forward: one block per row (grid-stride over rows). As the reference:
 * two-pass statistics in double (mean, then the mean of squared deviations
 * from it), m = (float)mean, rstd = (float)(1 / sqrt(var + eps)), and
 * y = ((x - m) * rstd) * weight + bias in float. In place (out == inp) is
 * safe: each element is read and written by the same thread. */

__global__ void layernorm_fwd_kernel(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                     const float *bias, int64_t rows, int64_t cols, float eps) {
    __shared__ double shm[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *x = inp + r * cols;
        float *o = out + r * cols;
        float m, rs;
        kb_row_stats(x, cols, eps, shm, &m, &rs);
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
            float y = __fmul_rn(__fsub_rn(x[c], m), rs);
            if (weight) y = __fmul_rn(y, weight[c]);
            if (bias) y = __fadd_rn(y, bias[c]);
            o[c] = y;
        }
        if (threadIdx.x == 0) {
            if (mean) mean[r] = m;
            if (rstd) rstd[r] = rs;
        }
    }
}

extern "C" int kb_layernorm_fwd_cuda(kb_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                                     const float *weight, const float *bias, int64_t rows, int64_t cols, float eps,
                                     kb_err *err) {
    KB_OP_BEGIN("layernorm_fwd");
    KB_NEED_NONNEG(rows);
    KB_NEED_NONNEG(cols);
    if (rows == 0 || cols == 0) return 0;
    layernorm_fwd_kernel<<<kb_grid_rows(rows), kb_row_block(cols), 0, st->stream>>>(out, mean, rstd, inp, weight, bias,
                                                                              rows, cols, eps);
    KB_LAUNCH_CHECK(op, "layernorm_fwd_kernel");
    return 0;
}

/* Backward, dinp: one block per row. With g = weight * dout and
 * xhat = (x - mean) * rstd (floats), the row means of g and g * xhat in
 * double, rounded to float, then
 *   dinp = dinp + ((g - mean(g)) - xhat * mean(g xhat)) * rstd   (floats) */
__global__ void layernorm_bwd_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                          const float *mean, const float *rstd, int64_t rows, int64_t cols) {
    __shared__ double shm[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *dy = dout + r * cols;
        kb_ln_bwd_row(dinp + r * cols, inp + r * cols, mean[r], rstd[r], cols, shm,
                      [&](int64_t c) { return weight ? __fmul_rn(weight[c], dy[c]) : dy[c]; }, [](int64_t, float) {});
    }
}

/* Backward, dweight/dbias: column sums in double of dout * xhat and of dout,
 * with the same chunked deterministic scheme as sum_rows. pw/pb may be NULL. */
__global__ void layernorm_bwd_wb_partial_kernel(double *pw, double *pb, const float *dout, const float *inp,
                                                const float *mean, const float *rstd, int64_t rows, int64_t cols,
                                                int64_t rows_per_chunk) {
    __shared__ double accw[8][33];
    __shared__ double accb[8][33];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk;
    int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    for (int64_t c0 = (int64_t)blockIdx.x * 32; c0 < cols; c0 += (int64_t)gridDim.x * 32) {
        int64_t c = c0 + tx;
        double sw = 0.0, sb = 0.0;
        if (c < cols)
            for (int64_t r = r0 + ty; r < r1; r += 8) {
                float dy = dout[r * cols + c];
                float xhat = __fmul_rn(__fsub_rn(inp[r * cols + c], mean[r]), rstd[r]);
                sw += (double)dy * (double)xhat;
                sb += (double)dy;
            }
        accw[ty][tx] = sw;
        accb[ty][tx] = sb;
        __syncthreads();
        if (ty == 0 && c < cols) {
            double tw = accw[0][tx], tb = accb[0][tx];
            for (int k = 1; k < 8; k++) {
                tw += accw[k][tx];
                tb += accb[k][tx];
            }
            int64_t at = (int64_t)blockIdx.y * cols + c;
            if (pw) pw[at] = tw;
            if (pb) pb[at] = tb;
        }
        __syncthreads();
    }
}

extern "C" int kb_layernorm_bwd_cuda(kb_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout,
                                     const float *inp, const float *weight, const float *mean, const float *rstd,
                                     int64_t rows, int64_t cols, kb_err *err) {
    KB_OP_BEGIN("layernorm_bwd");
    KB_NEED_NONNEG(rows);
    KB_NEED_NONNEG(cols);
    if (rows == 0 || cols == 0) return 0;
    if (dinp) {
        layernorm_bwd_dinp_kernel<<<kb_grid_rows(rows), kb_row_block(cols), 0, st->stream>>>(dinp, dout, inp, weight,
                                                                                       mean, rstd, rows, cols);
        KB_LAUNCH_CHECK(op, "layernorm_bwd_dinp_kernel");
    }
    if (!dweight && !dbias) return 0;
    colsum_plan p = colsum_plan_for(rows);
    size_t one = (size_t)(p.nchunks * cols);
    double *pw = (double *)kb_cuda_scratch(st, 2 * one * sizeof(double), op, err);
    if (!pw) return -1;
    double *pb = pw + one;
    layernorm_bwd_wb_partial_kernel<<<colsum_grid(cols, p.nchunks), dim3(32, 8), 0, st->stream>>>(
        dweight ? pw : NULL, dbias ? pb : NULL, dout, inp, mean, rstd, rows, cols, p.rows_per_chunk);
    KB_LAUNCH_CHECK(op, "layernorm_bwd_wb_partial_kernel");
    if (dweight) {
        colsum_finish_kernel<<<kb_grid_1d(cols), KB_CUDA_BLOCK, 0, st->stream>>>(dweight, pw, p.nchunks, cols);
        KB_LAUNCH_CHECK(op, "colsum_finish_kernel (dweight)");
    }
    if (dbias) {
        colsum_finish_kernel<<<kb_grid_1d(cols), KB_CUDA_BLOCK, 0, st->stream>>>(dbias, pb, p.nchunks, cols);
        KB_LAUNCH_CHECK(op, "colsum_finish_kernel (dbias)");
    }
    return 0;
}

/* ------------------------------------------------------------------ softmax
 * One block per row, as the reference: max; e = exp(x - max) by
 * nn/ops_scalar.h (stored in out) summed in double; out = e * (float)(1/sum).
 * In place (out == inp) is safe. */

__global__ void softmax_fwd_kernel(float *out, const float *inp, int64_t rows, int64_t cols) {
    __shared__ float shm[32];
    __shared__ double shm_d[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *x = inp + r * cols;
        float *o = out + r * cols;
        float mx = -INFINITY;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, x[c]);
        mx = block_max(mx, shm);
        double s = 0.0;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
            float em, e;
            kb_sc_exp_nonpos(__fsub_rn(x[c], mx), &em, &e);
            o[c] = e;
            s += (double)e;
        }
        float inv = (float)(1.0 / kb_block_sum_d(s, shm_d));
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = __fmul_rn(o[c], inv);
    }
}

/* dinp = out * (dout - (float)sum(dout * out)), the sum in double */
__global__ void softmax_bwd_kernel(float *dinp, const float *dout, const float *out, int64_t rows, int64_t cols) {
    __shared__ double shm[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *y = out + r * cols, *dy = dout + r * cols;
        float *dx = dinp + r * cols;
        double d = 0.0;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d += (double)dy[c] * (double)y[c];
        float df = (float)kb_block_sum_d(d, shm);
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
            dx[c] = __fmul_rn(y[c], __fsub_rn(dy[c], df));
    }
}

extern "C" int kb_softmax_fwd_cuda(kb_ctx *ctx, float *out, const float *inp, int64_t rows, int64_t cols,
                                   kb_err *err) {
    KB_OP_BEGIN("softmax_fwd");
    KB_NEED_NONNEG(rows);
    KB_NEED_NONNEG(cols);
    if (rows == 0 || cols == 0) return 0;
    softmax_fwd_kernel<<<kb_grid_rows(rows), kb_row_block(cols), 0, st->stream>>>(out, inp, rows, cols);
    KB_LAUNCH_CHECK(op, "softmax_fwd_kernel");
    return 0;
}

extern "C" int kb_softmax_bwd_cuda(kb_ctx *ctx, float *dinp, const float *dout, const float *out, int64_t rows,
                                   int64_t cols, kb_err *err) {
    KB_OP_BEGIN("softmax_bwd");
    KB_NEED_NONNEG(rows);
    KB_NEED_NONNEG(cols);
    if (rows == 0 || cols == 0) return 0;
    softmax_bwd_kernel<<<kb_grid_rows(rows), kb_row_block(cols), 0, st->stream>>>(dinp, dout, out, rows, cols);
    KB_LAUNCH_CHECK(op, "softmax_bwd_kernel");
    return 0;
}

/* -------------------------------------------------------------- conversions
 * nn/ops_scalar.h per element: u8 -> f32 with two roundings, f32 -> bf16
 * round-to-nearest-even on the bits (NaN -> quiet NaN keeping sign and top
 * payload), bf16 -> f32 by a shift. */

__global__ void u8_to_f32_kernel(float *out, const uint8_t *in, int64_t n, float scale, float offset) {
    KB_GRID_STRIDE(i, n) out[i] = kb_sc_u8_to_f32(in[i], scale, offset);
}
__global__ void f32_to_bf16_kernel(uint16_t *out, const float *in, int64_t n) {
    KB_GRID_STRIDE(i, n) out[i] = kb_sc_f32_to_bf16(in[i]);
}
__global__ void bf16_to_f32_kernel(float *out, const uint16_t *in, int64_t n) {
    KB_GRID_STRIDE(i, n) out[i] = kb_sc_bf16_to_f32(in[i]);
}

extern "C" int kb_u8_to_f32_cuda(kb_ctx *ctx, float *out, const uint8_t *in, int64_t n, float scale, float offset,
                                 kb_err *err) {
    KB_OP_BEGIN("u8_to_f32");
    KB_LAUNCH_1D(u8_to_f32_kernel, n, out, in, n, scale, offset);
}
extern "C" int kb_f32_to_bf16_cuda(kb_ctx *ctx, uint16_t *out, const float *in, int64_t n, kb_err *err) {
    KB_OP_BEGIN("f32_to_bf16");
    KB_LAUNCH_1D(f32_to_bf16_kernel, n, out, in, n);
}
extern "C" int kb_bf16_to_f32_cuda(kb_ctx *ctx, float *out, const uint16_t *in, int64_t n, kb_err *err) {
    KB_OP_BEGIN("bf16_to_f32");
    KB_LAUNCH_1D(bf16_to_f32_kernel, n, out, in, n);
}

/* ------------------------------------------------------------- random fills
 * Element i is a pure function of (seed, stream, i): nn/rng.h, compiled here
 * with the explicitly rounded intrinsics, gives the CPU's bits. */

__global__ void rand_uniform_kernel(float *out, int64_t n, uint64_t seed, uint64_t stream, float lo, float hi) {
    KB_GRID_STRIDE(i, n) out[i] = kb_rng_uniform_scaled(seed, stream, (uint64_t)i, lo, hi);
}
__global__ void rand_normal_kernel(float *out, int64_t n, uint64_t seed, uint64_t stream, float mean, float std) {
    KB_GRID_STRIDE(i, n) out[i] = kb_rng_normal_scaled(seed, stream, (uint64_t)i, mean, std);
}

extern "C" int kb_rand_uniform_cuda(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float lo,
                                    float hi, kb_err *err) {
    KB_OP_BEGIN("rand_uniform");
    KB_LAUNCH_1D(rand_uniform_kernel, n, out, n, seed, stream, lo, hi);
}
extern "C" int kb_rand_normal_cuda(kb_ctx *ctx, float *out, int64_t n, uint64_t seed, uint64_t stream, float mean,
                                   float std, kb_err *err) {
    KB_OP_BEGIN("rand_normal");
    KB_LAUNCH_1D(rand_normal_kernel, n, out, n, seed, stream, mean, std);
}
