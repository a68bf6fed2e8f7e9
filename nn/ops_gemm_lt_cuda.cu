/* kb_gemm_bias on CUDA: y = x W^T + bias as one cuBLASLt matmul with the bias
 * added in the epilogue (CUBLASLT_EPILOGUE_BIAS), instead of a cuBLAS GEMM
 * followed by a bias kernel that reads and writes y once more. When
 * cuBLASLt offers no algorithm for a shape (or there is no bias), the op
 * falls back to exactly that pair (kb_gemm_cuda + kb_add_bias_cuda), as it
 * does everywhere when KINDBENCH_CUBLASLT=0 was set when the context was made.
 *
 * Layout: row-major y[rows, out] is column-major D (out x rows, ld out);
 * D = op(A) B with A = W stored column-major as (in x out, ld in) and
 * op = transpose, B = x as (in x rows, ld in). The bias has one value per row
 * of D, i.e. per output feature, which is what the epilogue broadcasts.
 *
 * Arithmetic follows st->matmul like the cuBLAS path: CUBLAS_COMPUTE_32F
 * (true FP32), _FAST_TF32 or _FAST_16BF on fp32 operands, or, with staged
 * operands (kb_cuda_bf16_staging), CUBLAS_COMPUTE_32F on bf16 copies of W and
 * x; D, bias and aux are fp32 throughout. Reruns are bit-identical: the
 * heuristic's choice is cached per shape, and cuBLASLt's split-K reduction
 * schemes all sum in a fixed order (the in-place one keeps counters in the
 * workspace to stay sequential).
 *
 * The same file carries the MLP's GELU epilogues (kb_gemm_bias_gelu,
 * kb_gemm_dgelu) and the weight gradient with the bias gradient in its
 * epilogue (kb_gemm_wgrad; below). Plans (descriptors + algorithm) are cached per
 * (epilogue, staged operands, rows, in, out, precision, alignment) in a small
 * round-robin table owned by the CUDA state, since a DiT step uses a handful
 * of shapes and the heuristic query costs more than the small GEMMs it plans. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cuda_common.cuh"

extern "C" {
#include "nn/ops_cuda.h"
}

/* Plans kept: a DiT step uses about 10 forward (bias) and 10 weight-gradient
 * shapes, plus the GELU and bf16-activation ones; round-robin replacement
 * must not evict a step's plans before the next step reuses them. */
#define KB_LT_PLANS 64

/* The epilogues kindbench uses. LT_GELU_AUX_BIAS: D = gelu(op(A) B + bias),
 * with the pre-activation written to the aux matrix; LT_DGELU: D = (A B) *
 * gelu'(aux), the backward through that GELU, A not transposed; LT_BGRADB:
 * D += A op(B) with A = x, B = dy transposed (a weight gradient, beta 1), and
 * the sums of B over the k (rows) dimension written to the bias pointer. */
typedef enum { LT_BIAS = 0, LT_GELU_AUX_BIAS, LT_DGELU, LT_BGRADB } lt_epi;

typedef struct {
    int used;
    lt_epi epi;
    int ops16; /* A and B bf16 (native bf16 products): staged copies (kb_cuda_bf16_staging), or B an activation */
    int a16;   /* A is a bf16 activation of the caller's (kb_gemm_wgrad_x16's x16): aligned as `align` says, not staged */
    int b16;   /* B is a bf16 activation of the caller's (kb_gemm_bias_x16): aligned as `align` says, not staged */
    int d16;   /* D (and the GELU epilogues' aux) bf16: the bf16-activation MLP (kb_lt_gelu_x16, kb_lt_dgelu_x16) */
    int64_t rows, in, out;
    kb_matmul_precision prec;
    unsigned align;   /* bytes every operand pointer is aligned to (<= 256) */
    int usable;       /* 0: cuBLASLt offered no algorithm, use the fallback */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} lt_plan;

struct kb_lt_cache {
    lt_plan plans[KB_LT_PLANS];
    int next; /* round-robin victim */
};

static void plan_release(lt_plan *p) {
    if (p->desc) (void)cublasLtMatmulDescDestroy(p->desc);
    if (p->a) (void)cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) (void)cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) (void)cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

void kb_lt_cache_free(struct kb_lt_cache *c) {
    if (!c) return;
    for (int i = 0; i < KB_LT_PLANS; i++) plan_release(&c->plans[i]);
    free(c);
}

static unsigned pointer_alignment(const void *p) {
    uintptr_t v = (uintptr_t)p;
    unsigned a = 256;
    while (a > 2 && (v % a)) a /= 2; /* bf16 activations may sit at 2-byte boundaries */
    return a;
}

static cublasComputeType_t compute_type(kb_matmul_precision p) {
    if (p == KB_MATMUL_BF16) return CUBLAS_COMPUTE_32F_FAST_16BF;
    if (p == KB_MATMUL_TF32) return CUBLAS_COMPUTE_32F_FAST_TF32;
    return CUBLAS_COMPUTE_32F;
}

#define LT_TRY(call)                                                                                              \
    do {                                                                                                          \
        cublasStatus_t s_ = (call);                                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS) return s_;                                                               \
    } while (0)

/* Descriptors, layouts and the heuristic's first algorithm for one shape.
 * Returns a cuBLAS status; p->usable says whether an algorithm was found. */
static cublasStatus_t plan_build(kb_cuda_state *st, lt_plan *p) {
    /* forward: D (out x rows) = W^T-as-stored (in x out, transposed) x (in x rows);
     * DGELU: D (in x rows) = W (in x out) dy (out x rows);
     * BGRADB: D (in x out) += x (in x rows) dy^T (dy stored out x rows, transposed) */
    int dgelu = p->epi == LT_DGELU, wgrad = p->epi == LT_BGRADB;
    cublasOperation_t ta = dgelu || wgrad ? CUBLAS_OP_N : CUBLAS_OP_T, tb = wgrad ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = p->epi == LT_BIAS            ? CUBLASLT_EPILOGUE_BIAS
                             : p->epi == LT_GELU_AUX_BIAS ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                             : p->epi == LT_DGELU         ? CUBLASLT_EPILOGUE_DGELU
                                                          : CUBLASLT_EPILOGUE_BGRADB;
    int64_t k = dgelu ? p->out : p->in, drows = dgelu ? p->in : p->out;
    /* A, B and D as (rows, cols, ld) of their column-major layouts */
    int64_t a_r = p->in, a_c = wgrad ? p->rows : p->out, b_r = wgrad ? p->out : k, b_c = p->rows;
    int64_t d_r = wgrad ? p->in : drows, d_c = wgrad ? p->out : p->rows;
    cudaDataType_t ab = p->ops16 ? CUDA_R_16BF : CUDA_R_32F;
    LT_TRY(cublasLtMatmulDescCreate(&p->desc, p->ops16 ? CUBLAS_COMPUTE_32F : compute_type(p->prec), CUDA_R_32F));
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    /* The heuristic reads the bias and aux pointers' values for their alignment
     * (cublasLt.h): stand-ins aligned as the plan's key says, the real ones per call. */
    const void *stand_in = (const void *)(uintptr_t)p->align;
    if (p->epi != LT_DGELU) /* for BGRADB the bias pointer is the output (an fp32 buffer of ours, 256-aligned) */
        LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &stand_in, sizeof stand_in));
    if (p->epi == LT_GELU_AUX_BIAS || p->epi == LT_DGELU) { /* the aux matrix (pre-activation) has D's shape */
        int64_t ld = drows;
        LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld));
        LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &stand_in,
                                              sizeof stand_in));
    }
    LT_TRY(cublasLtMatrixLayoutCreate(&p->a, ab, (uint64_t)a_r, (uint64_t)a_c, a_r));
    LT_TRY(cublasLtMatrixLayoutCreate(&p->b, ab, (uint64_t)b_r, (uint64_t)b_c, b_r));
    LT_TRY(cublasLtMatrixLayoutCreate(&p->d, p->d16 ? CUDA_R_16BF : CUDA_R_32F, (uint64_t)d_r, (uint64_t)d_c, d_r));
    if (p->d16 && p->epi != LT_DGELU) { /* our bias stays fp32 (its default type is D's); the aux is D's type, bf16 */
        cudaDataType_t bt = CUDA_R_32F;
        LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    cublasLtMatmulPreference_t pref;
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = st->workspace_bytes;
    uint32_t align = p->align;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    const cublasLtMatmulPreferenceAttributes_t aligns[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    uint32_t staged = 256; /* the staged bf16 copies of A and B (kb_cuda_stage_bf16) */
    for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; i++) {
        int is_staged = p->ops16 && ((i == 0 && !p->a16) || (i == 1 && !p->b16));
        s = cublasLtMatmulPreferenceSetAttribute(pref, aligns[i], is_staged ? &staged : &align, sizeof align);
    }
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(st->cublaslt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &res, &found);
    (void)cublasLtMatmulPreferenceDestroy(pref);
    if (s == CUBLAS_STATUS_NOT_SUPPORTED) s = CUBLAS_STATUS_SUCCESS, found = 0; /* no algorithm: fall back */
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    p->usable = found > 0 && res.state == CUBLAS_STATUS_SUCCESS;
    if (p->usable) p->algo = res.algo;
    return CUBLAS_STATUS_SUCCESS;
}

/* The cached plan for this call, built on first use; NULL with err set.
 * ops16: bf16 operands (staged copies, or with b16 a bf16 activation as B). */
static lt_plan *plan_for(kb_cuda_state *st, const char *op, lt_epi epi, int ops16, int a16, int b16, int d16,
                         int64_t rows, int64_t in, int64_t out, unsigned align, kb_err *err) {
    if (!st->lt && !(st->lt = (struct kb_lt_cache *)calloc(1, sizeof *st->lt))) {
        kb_fail(err, "%s: out of host memory for the cuBLASLt plan cache", op);
        return NULL;
    }
    struct kb_lt_cache *c = st->lt;
    for (int i = 0; i < KB_LT_PLANS; i++) {
        lt_plan *p = &c->plans[i];
        if (p->used && p->epi == epi && p->ops16 == ops16 && p->a16 == a16 && p->b16 == b16 && p->d16 == d16 &&
            p->rows == rows &&
            p->in == in && p->out == out && p->prec == st->matmul && p->align == align)
            return p;
    }
    lt_plan *p = &c->plans[c->next];
    c->next = (c->next + 1) % KB_LT_PLANS;
    plan_release(p);
    p->used = 1, p->epi = epi, p->ops16 = ops16, p->a16 = a16, p->b16 = b16, p->d16 = d16, p->rows = rows, p->in = in;
    p->out = out, p->prec = st->matmul, p->align = align;
    cublasStatus_t s = plan_build(st, p);
    if (s != CUBLAS_STATUS_SUCCESS && (epi != LT_BIAS || ops16)) {
        /* the epilogues other than the bias and bf16 operands are newer paths: a
         * combination cuBLASLt refuses (status other than NOT_SUPPORTED) means the
         * unfused passes, not an error */
        plan_release(p);
        p->used = 1, p->epi = epi, p->ops16 = ops16, p->a16 = a16, p->b16 = b16, p->d16 = d16, p->rows = rows;
        p->in = in, p->out = out, p->prec = st->matmul, p->align = align, p->usable = 0;
        return p;
    }
    if (s != CUBLAS_STATUS_SUCCESS) {
        plan_release(p);
        kb_fail(err, "%s: planning the cuBLASLt matmul %lldx%lld -> %lld failed: %s (%d)", op, (long long)rows,
                (long long)in, (long long)out, cublasGetStatusString(s), (int)s);
        return NULL;
    }
    return p;
}

static unsigned min_alignment(const void *const *ptrs, int n) {
    unsigned align = 256;
    for (int i = 0; i < n; i++) {
        unsigned a = pointer_alignment(ptrs[i]);
        if (a < align) align = a;
    }
    return align;
}

/* D = epilogue(op(A) op(B)) (+ D for the weight gradient) with the plan's
 * shapes; aux and bias may be NULL. 0 when it ran; 1 when cuBLASLt refused
 * a bf16-output plan at run time (then marked unusable; nothing written). */
static int lt_run(kb_cuda_state *st, const char *op, lt_plan *p, void *D, const void *A, const void *B,
                  const float *bias, const void *aux, kb_err *err) {
    const float alpha = 1.0f, beta = p->epi == LT_BGRADB ? 1.0f : 0.0f;
    if (bias)
        KB_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (aux)
        KB_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                                           sizeof aux));
    cublasStatus_t s = cublasLtMatmul(st->cublaslt, p->desc, &alpha, A, p->a, B, p->b, &beta, D, p->d, D, p->d,
                                      &p->algo, st->workspace, st->workspace_bytes, st->stream);
    int refused = s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE;
    if (p->d16 && refused) {
        p->usable = 0; /* the bf16-output epilogues (fp32 bias with bf16 D is not documented): the caller's fallback */
        return 1;
    }
    if (s != CUBLAS_STATUS_SUCCESS)
        return kb_fail(err, "%s: cublasLtMatmul %lldx%lld -> %lld (%s) failed: %s (%d)", op, (long long)p->rows,
                       (long long)p->in, (long long)p->out, kb_matmul_precision_name(st->matmul),
                       cublasGetStatusString(s), (int)s);
    return 0;
}

/* Runs plan p on the operands A (nA elements: W, or x for the weight
 * gradient; bf16 when the plan's a16 is set) and B (nB elements: x, or dy;
 * bf16 when its b16 is set), on staged bf16 copies of the fp32 ones when the
 * plan was made for bf16 operands. Returns lt_run's 0, 1 (refused, see
 * there) or -1. */
static int lt_exec(kb_cuda_state *st, const char *op, lt_plan *p, void *D, const void *A, int64_t nA, const void *B,
                   int64_t nB, const float *bias, const void *aux, kb_err *err) {
    const void *a = A, *b = B;
    if (p->ops16 && !(p->a16 && p->b16)) { /* contiguous: one matrix each, packed as they are */
        void *a16, *b16;
        kb_stage_operand sa = {(const float *)A, 1, p->a16 ? 0 : nA, nA, 0, 1};
        kb_stage_operand sb = {(const float *)B, 1, p->b16 ? 0 : nB, nB, 0, 1};
        if (kb_cuda_stage_bf16(st, op, &sa, &sb, &a16, &b16, err)) return -1;
        if (!p->a16) a = a16;
        if (!p->b16) b = b16;
    }
    int rc = lt_run(st, op, p, D, a, b, bias, aux, err);
    if (rc) return rc;
    if (p->ops16 && !p->a16 && !p->b16) st->counts.bf16_staged++, st->counts.bf16_staged_lt++;
    if (p->a16 || p->b16) st->counts.bf16_acts++;
    if (p->epi == LT_GELU_AUX_BIAS || p->epi == LT_DGELU) st->counts.gelu_epilogue++;
    if (p->epi == LT_BGRADB) st->counts.bgrad_epilogue++;
    return 0;
}

/* The CUDA state of op's context, and whether the product has anything to
 * do: -1 on an error (no CUDA context, a negative size), 1 when it is empty
 * (rows or out 0: the outputs are left as they are), 0 otherwise. */
static int lt_op_begin(kb_ctx *ctx, const char *op, int64_t rows, int64_t in, int64_t out, kb_cuda_state **st,
                       kb_err *err) {
    if (kb_cuda_op_state(ctx, op, st, err)) return -1;
    if (rows < 0 || in < 0 || out < 0)
        return kb_fail(err, "%s: negative size rows=%lld in=%lld out=%lld", op, (long long)rows, (long long)in,
                       (long long)out);
    return rows == 0 || out == 0;
}

extern "C" int kb_gemm_bias_cuda(kb_ctx *ctx, float *y, const float *x, const float *W, const float *bias,
                                 int64_t rows, int64_t in, int64_t out, kb_err *err) {
    const char *op = "gemm_bias";
    kb_cuda_state *st;
    int empty = lt_op_begin(ctx, op, rows, in, out, &st, err);
    if (empty) return empty < 0 ? -1 : 0;
    lt_plan *p = NULL;
    if (bias && in > 0 && !st->lt_off) {
        /* staged operands are 256-byte aligned copies: then only y and bias count */
        const void *ptrs[] = {y, bias, x, W};
        unsigned align = min_alignment(ptrs, kb_cuda_bf16_staging(st) ? 2 : 4);
        if (align >= 16 && !(p = plan_for(st, op, LT_BIAS, kb_cuda_bf16_staging(st), 0, 0, 0, rows, in, out, align, err)))
            return -1;
    }
    if (!p || !p->usable) {
        if (kb_gemm_cuda(ctx, false, true, rows, out, in, 1.0f, x, in, W, in, 0.0f, y, out, err)) return -1;
        return bias ? kb_add_bias_cuda(ctx, y, bias, rows, out, err) : 0;
    }
    return lt_exec(st, op, p, y, W, out * in, x, rows * in, bias, NULL, err);
}

/* ---- the GELU epilogues (nn/ops.h: kb_gemm_bias_gelu, kb_gemm_dgelu) ----
 * Only in the BF16 mode, and only with KINDBENCH_LT_GELU=1 until a GPU run
 * has measured them (test_ops_cuda: the epilogue's GELU against our
 * gelu_tanh on the same pre-activations; bench_train with and without).
 * Otherwise, and where cuBLASLt offers no algorithm, the ops are the two
 * passes they replace. */

static int lt_gelu_on(const kb_cuda_state *st) {
    return st->lt_gelu && !st->lt_off && st->matmul == KB_MATMUL_BF16;
}

extern "C" int kb_gemm_bias_gelu_cuda(kb_ctx *ctx, float *act, float *pre, const float *x, const float *W,
                                      const float *bias, int64_t rows, int64_t in, int64_t out, kb_err *err) {
    const char *op = "gemm_bias_gelu";
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (rows == 0 || out == 0) return 0;
    lt_plan *p = NULL;
    /* the aux matrix's leading dimension must be a multiple of 8 */
    if (lt_gelu_on(st) && bias && in > 0 && out % 8 == 0) {
        const void *ptrs[] = {act, pre, bias, x, W};
        unsigned align = min_alignment(ptrs, kb_cuda_bf16_staging(st) ? 3 : 5);
        if (align >= 16 &&
            !(p = plan_for(st, op, LT_GELU_AUX_BIAS, kb_cuda_bf16_staging(st), 0, 0, 0, rows, in, out, align, err)))
            return -1;
    }
    if (!p || !p->usable) {
        if (kb_gemm_bias_cuda(ctx, pre, x, W, bias, rows, in, out, err)) return -1;
        return kb_gelu_tanh_fwd_cuda(ctx, act, pre, rows * out, err);
    }
    return lt_exec(st, op, p, act, W, out * in, x, rows * in, bias, pre, err);
}

extern "C" int kb_gemm_dgelu_cuda(kb_ctx *ctx, float *dpre, const float *dy, const float *W, const float *pre,
                                  int64_t rows, int64_t in, int64_t out, kb_err *err) {
    const char *op = "gemm_dgelu";
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (rows == 0 || in == 0) return 0;
    lt_plan *p = NULL;
    if (lt_gelu_on(st) && out > 0 && in % 8 == 0) {
        const void *ptrs[] = {dpre, pre, dy, W};
        unsigned align = min_alignment(ptrs, kb_cuda_bf16_staging(st) ? 2 : 4);
        if (align >= 16 && !(p = plan_for(st, op, LT_DGELU, kb_cuda_bf16_staging(st), 0, 0, 0, rows, in, out, align, err)))
            return -1;
    }
    if (!p || !p->usable) {
        if (kb_gemm_cuda(ctx, false, false, rows, in, out, 1.0f, dy, out, W, in, 0.0f, dpre, in, err)) return -1;
        return kb_gelu_tanh_bwd_cuda(ctx, dpre, pre, dpre, rows * in, KB_GRAD_SET, err); /* elementwise, in place */
    }
    return lt_exec(st, op, p, dpre, W, out * in, dy, rows * out, NULL, pre, err);
}

/* ---- the weight gradient with the bias gradient in its epilogue
 * (nn/ops.h: kb_gemm_wgrad) ----
 * Only in the BF16 mode and with KINDBENCH_LT_BGRAD=1 until a GPU run has
 * measured it (test_ops_cuda against kb_gemm + kb_sum_rows; bench_train with
 * and without). The epilogue writes the sums over dy's rows to a buffer of
 * the context's, and a small kernel adds them to db (gradients accumulate). */

/* The epilogue's output buffer, of at least n floats (cudaMalloc: 256-byte
 * aligned); NULL with err set on failure. */
static float *bgrad_buffer(kb_cuda_state *st, int64_t n, const char *op, kb_err *err) {
    if (st->bgrad && st->bgrad_n >= n) return st->bgrad;
    cudaError_t e = cudaSuccess;
    if (st->bgrad) { /* queued work may still use the old buffer */
        e = cudaStreamSynchronize(st->stream);
        if (e == cudaSuccess) (void)cudaFree(st->bgrad), st->bgrad = NULL, st->bgrad_n = 0;
    }
    if (e == cudaSuccess) e = cudaMalloc(&st->bgrad, (size_t)n * sizeof(float));
    if (e != cudaSuccess) { /* the old buffer, if any, stays the context's (freed with it) */
        (void)cudaGetLastError();
        if (st->bgrad_n == 0) st->bgrad = NULL;
        kb_fail(err, "%s: %lld floats for the bias gradient: %s", op, (long long)n, cudaGetErrorString(e));
        return nullptr;
    }
    st->bgrad_n = n;
    return st->bgrad;
}

static int lt_bgrad_on(const kb_cuda_state *st) {
    return st->lt_bgrad && !st->lt_off && st->matmul == KB_MATMUL_BF16;
}

/* dW += x^T dy (as the plan's operand flags say: ops16 bf16 operands, acts16
 * both the caller's bf16 activations) with dy's row sums in the BGRADB
 * epilogue, then db += sums. *done = 0 where there is no usable plan. */
static int lt_wgrad_bgrad(kb_ctx *ctx, const char *op, float *dW, float *db, const void *x, const void *dy, int ops16,
                          int acts16, unsigned align, int64_t rows, int64_t in, int64_t out, int *done, kb_err *err) {
    kb_cuda_state *st = ctx->cuda;
    *done = 0;
    if (align < 16) return 0;
    lt_plan *p = plan_for(st, op, LT_BGRADB, ops16, acts16, acts16, 0, rows, in, out, align, err);
    if (!p) return -1;
    if (!p->usable) return 0;
    float *sums = bgrad_buffer(st, out, op, err);
    if (!sums || lt_exec(st, op, p, dW, x, rows * in, dy, rows * out, sums, NULL, err)) return -1;
    *done = 1;
    return kb_axpy_cuda(ctx, db, 1.0f, sums, out, err); /* db += sums, exactly (1 * s is s) */
}

extern "C" int kb_gemm_wgrad_cuda(kb_ctx *ctx, float *dW, float *db, const float *dy, const float *x, int64_t rows,
                                  int64_t in, int64_t out, kb_err *err) {
    const char *op = "gemm_wgrad";
    kb_cuda_state *st;
    int empty = lt_op_begin(ctx, op, rows, in, out, &st, err);
    if (empty) return empty < 0 ? -1 : 0;
    int done = 0;
    if (db && in > 0 && lt_bgrad_on(st)) {
        /* the sums' buffer is the context's (256-byte aligned): only dW, x and dy count */
        const void *ptrs[] = {dW, x, dy};
        int staged = kb_cuda_bf16_staging(st);
        unsigned align = min_alignment(ptrs, staged ? 1 : 3);
        if (lt_wgrad_bgrad(ctx, op, dW, db, x, dy, staged, 0, align, rows, in, out, &done, err)) return -1;
    }
    if (done) return 0;
    if (kb_gemm_cuda(ctx, true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dW, in, err)) return -1;
    return db ? kb_sum_rows_cuda(ctx, db, dy, rows, out, err) : 0;
}

/* The bf16-activation weight gradient with the bias gradient in the BGRADB
 * epilogue (kb_gemm_wgrad_x16 with KINDBENCH_LT_BGRAD=1): dW += dy16^T x16
 * on both operands as stored. *done = 0 where the epilogue is off or has no
 * usable plan (the caller then runs its GEMM and bias-gradient kernel). */
int kb_lt_wgrad_x16(kb_ctx *ctx, const char *op, float *dW, float *db, const uint16_t *dy16, const uint16_t *x16,
                    int64_t rows, int64_t in, int64_t out, int *done, kb_err *err) {
    *done = 0;
    if (!db || in == 0 || rows == 0 || !lt_bgrad_on(ctx->cuda)) return 0;
    const void *ptrs[] = {dW, x16, dy16};
    return lt_wgrad_bgrad(ctx, op, dW, db, x16, dy16, 1, 1, min_alignment(ptrs, 3), rows, in, out, done, err);
}

/* ---- a bf16 activation as the input (nn/ops.h: kb_gemm_bias_x16) ----
 * y = x16 W^T + bias: one cuBLASLt matmul on a staged bf16 copy of W and x16
 * as it is (native bf16 products, fp32 accumulation and output, the bias in
 * the epilogue); without a bias, or where cuBLASLt offers no algorithm,
 * cublasGemmEx on the same operands and then the bias kernel. */
extern "C" int kb_gemm_bias_x16_cuda(kb_ctx *ctx, float *y, const uint16_t *x16, const float *W, const float *bias,
                                     int64_t rows, int64_t in, int64_t out, kb_err *err) {
    const char *op = "gemm_bias_x16";
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (rows == 0 || out == 0) return 0;
    lt_plan *p = NULL;
    if (bias && in > 0 && !st->lt_off) {
        const void *ptrs[] = {y, bias, x16};
        unsigned align = min_alignment(ptrs, 3);
        if (align >= 16 && !(p = plan_for(st, op, LT_BIAS, 1, 0, 1, 0, rows, in, out, align, err))) return -1;
    }
    if (p && p->usable) return lt_exec(st, op, p, y, W, out * in, x16, rows * in, bias, NULL, err);
    void *W16 = NULL;
    if (in > 0 && kb_cuda_stage1_bf16(st, op, W, out * in, &W16, err)) return -1;
    if (kb_cuda_gemm16(st, op, false, true, rows, out, in, 1.0f, x16, in, W16, in, 0.0f, y, out, err)) return -1;
    return bias ? kb_add_bias_cuda(ctx, y, bias, rows, out, err) : 0;
}

/* ---- the GELU epilogues on bf16 activations (asked by nn/ops_x16_cuda.cu) ----
 * With KINDBENCH_LT_GELU=1 (as for the fp32-activation MLP): act16 and pre16
 * (the aux matrix, D's type) straight from the matmul, and the backward's
 * dpre16 from the DGELU epilogue reading pre16. *done = 0 where there is no
 * usable plan (the caller then runs its GEMM and kernel). */
/* The shared body of the three bf16-output entry points below: the plan for
 * (epi, bf16 operands, caller's bf16 B, bf16 D) at the pointers' alignment,
 * run on W (A, staged) and B16 (nB values). *done = 1 when the matmul ran. */
static int lt_try_d16(kb_cuda_state *st, const char *op, lt_epi epi, const void *const *ptrs, int nptrs, void *D,
                      const float *W, const uint16_t *B16, int64_t nB, const float *bias, const void *aux, int64_t rows,
                      int64_t in, int64_t out, int *done, kb_err *err) {
    unsigned align = min_alignment(ptrs, nptrs);
    if (align < 16) return 0;
    lt_plan *p = plan_for(st, op, epi, 1, 0, 1, 1, rows, in, out, align, err);
    if (!p) return -1;
    if (!p->usable) return 0;
    int rc = lt_exec(st, op, p, D, W, out * in, B16, nB, bias, aux, err);
    *done = rc == 0;
    return rc < 0 ? -1 : 0;
}

int kb_lt_gelu_x16(kb_cuda_state *st, const char *op, uint16_t *act16, uint16_t *pre16, const uint16_t *x16,
                   const float *W, const float *bias, int64_t rows, int64_t in, int64_t out, int *done, kb_err *err) {
    *done = 0;
    if (!lt_gelu_on(st) || !bias || in == 0 || out % 8) return 0;
    const void *ptrs[] = {act16, pre16, bias, x16};
    return lt_try_d16(st, op, LT_GELU_AUX_BIAS, ptrs, 4, act16, W, x16, rows * in, bias, pre16, rows, in, out, done,
                      err);
}

int kb_lt_dgelu_x16(kb_cuda_state *st, const char *op, uint16_t *dpre16, const uint16_t *dy16, const float *W,
                    const uint16_t *pre16, int64_t rows, int64_t in, int64_t out, int *done, kb_err *err) {
    *done = 0;
    if (!lt_gelu_on(st) || out == 0 || in % 8) return 0;
    const void *ptrs[] = {dpre16, pre16, dy16};
    return lt_try_d16(st, op, LT_DGELU, ptrs, 3, dpre16, W, dy16, rows * out, NULL, pre16, rows, in, out, done, err);
}

/* y16 = bf16(x16 W^T + bias) in one matmul (bias epilogue, bf16 D), the
 * bf16-activation qkv; *done = 0 where there is no usable plan. */
int kb_lt_bias_x16_y16(kb_cuda_state *st, const char *op, uint16_t *y16, const uint16_t *x16, const float *W,
                       const float *bias, int64_t rows, int64_t in, int64_t out, int *done, kb_err *err) {
    *done = 0;
    if (st->lt_off || !bias || in == 0) return 0;
    const void *ptrs[] = {y16, bias, x16};
    return lt_try_d16(st, op, LT_BIAS, ptrs, 3, y16, W, x16, rows * in, bias, NULL, rows, in, out, done, err);
}
