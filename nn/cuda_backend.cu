/* The CUDA backend: device discovery, the per-context state (stream, cuBLAS
 * and cuBLASLt handles, workspace, scratch), device memory and copies.
 * CPU-only builds use nn/cuda_backend_cudastub.c instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cuda_common.cuh"

extern "C" {
#include "nn/cuda_backend.h"
}

/* cuBLAS recommends 32 MiB of workspace on Hopper. */
#define KB_CUDA_WORKSPACE_BYTES ((size_t)32 << 20)

extern "C" int kb_cuda_compiled(void) { return 1; }

extern "C" int kb_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        /* no driver, no device, driver too old...: "no usable GPU" */
        (void)cudaGetLastError();
        return 0;
    }
    return n > 0 ? n : 0;
}

static int check_ordinal(int ordinal, kb_err *err) {
    int count = kb_cuda_device_count();
    if (ordinal < 0 || ordinal >= count)
        return kb_fail(err, "cuda device %d: out of range (%d CUDA GPU(s) visible%s)", ordinal, count,
                       count ? "" : "; no driver or no device");
    return 0;
}

extern "C" int kb_cuda_describe(int ordinal, char *buf, size_t n, kb_err *err) {
    if (check_ordinal(ordinal, err)) return -1;
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, ordinal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return kb_fail(err, "cuda device %d: cudaGetDeviceProperties failed: %s", ordinal, cudaGetErrorString(e));
    }
    int drv = 0, rt = 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    if (cudaRuntimeGetVersion(&rt) != cudaSuccess) rt = 0;
    (void)cudaGetLastError();
    if (buf && n)
        snprintf(buf, n, "%s, %.1f GiB, compute capability %d.%d, %d SMs, driver %d.%d, runtime %d.%d", p.name,
                 (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), p.major, p.minor, p.multiProcessorCount,
                 drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
    return 0;
}

int kb_cuda_apply_math_mode(kb_cuda_state *st, kb_err *err) {
    const char *op = "cuda context";
    /* CUBLAS_DEFAULT_MATH: FP32 GEMMs in FP32 (no TF32, no BF16x9 emulation).
     * BF16 GEMMs choose their compute type per call (ops_cuda.cu's gemm_common). */
    cublasMath_t mode = st->matmul == KB_MATMUL_FP32 ? CUBLAS_DEFAULT_MATH : CUBLAS_TF32_TENSOR_OP_MATH;
    KB_CUBLAS_CHECK(op, cublasSetMathMode(st->cublas, mode));
    return 0;
}

extern "C" int kb_cuda_set_matmul(kb_cuda_state *st, kb_matmul_precision p, kb_err *err) {
    st->matmul = p;
    return kb_cuda_apply_math_mode(st, err);
}

extern "C" void kb_cuda_state_destroy(kb_cuda_state *st) {
    if (!st) return;
    int prev = -1;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    (void)cudaSetDevice(st->device);
    if (st->stream) (void)cudaStreamSynchronize(st->stream);
    kb_lt_cache_free(st->lt);
    if (st->cublaslt) (void)cublasLtDestroy(st->cublaslt);
    if (st->cublas) (void)cublasDestroy(st->cublas);
    if (st->workspace) (void)cudaFree(st->workspace);
    if (st->scratch) (void)cudaFree(st->scratch);
    if (st->tfreq) (void)cudaFree(st->tfreq);
    if (st->bgrad) (void)cudaFree(st->bgrad);
    if (st->stream) (void)cudaStreamDestroy(st->stream);
    if (prev >= 0 && prev != st->device) (void)cudaSetDevice(prev);
    (void)cudaGetLastError();
    free(st);
}

#ifndef KB_CUDA_ARCHS
#define KB_CUDA_ARCHS "(unknown)"
#endif

/* Does nothing: its attributes can be read only where this build holds code
 * the GPU can run. */
__global__ void kb_kernel_image_probe(void) {}

/* A build holds machine code and PTX for CMAKE_CUDA_ARCHITECTURES only (90 by
 * default): on an older GPU (an A100 is 8.0) every kernel launch would fail
 * later, op by op, with "no kernel image"; this says so at context creation,
 * with the fix. */
static int check_kernel_image(const cudaDeviceProp *p, kb_err *err) {
    cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, (const void *)kb_kernel_image_probe);
    if (e == cudaSuccess) return 0;
    (void)cudaGetLastError();
    return kb_fail(err,
                   "%s (compute capability %d.%d) cannot run this build's kernels (%s): kindbench was built for "
                   "CUDA architectures %s; rebuild with KB_CMAKE_ARGS=-DCMAKE_CUDA_ARCHITECTURES=%d%d bash "
                   "scripts/build.sh",
                   p->name, p->major, p->minor, cudaGetErrorString(e), KB_CUDA_ARCHS, p->major, p->minor);
}

static int state_init(kb_cuda_state *st, int ordinal, kb_err *err) {
    const char *op = "cuda context";
    st->device = ordinal;
    st->matmul = KB_MATMUL_FP32;
    KB_CUDA_CHECK(op, cudaSetDevice(ordinal));
    cudaDeviceProp p;
    KB_CUDA_CHECK(op, cudaGetDeviceProperties(&p, ordinal));
    st->sm_count = p.multiProcessorCount;
    st->cc_major = p.major;
    st->smem_optin = p.sharedMemPerBlockOptin;
    snprintf(st->name, sizeof st->name, "%s", p.name);
    if (check_kernel_image(&p, err)) return -1;
    /* A blocking stream: it also orders with anything a caller puts on the legacy default stream. */
    KB_CUDA_CHECK(op, cudaStreamCreateWithFlags(&st->stream, cudaStreamDefault));
    st->workspace_bytes = KB_CUDA_WORKSPACE_BYTES;
    KB_CUDA_CHECK(op, cudaMalloc(&st->workspace, st->workspace_bytes));
    KB_CUBLAS_CHECK(op, cublasCreate(&st->cublas));
    /* cublasSetStream resets the workspace to cuBLAS's own pool: set the stream first. */
    KB_CUBLAS_CHECK(op, cublasSetStream(st->cublas, st->stream));
    KB_CUBLAS_CHECK(op, cublasSetWorkspace(st->cublas, st->workspace, st->workspace_bytes));
    KB_CUBLAS_CHECK(op, cublasSetPointerMode(st->cublas, CUBLAS_POINTER_MODE_HOST));
    /* No atomics: cuBLAS results are then bit-wise reproducible run to run on one GPU model. */
    KB_CUBLAS_CHECK(op, cublasSetAtomicsMode(st->cublas, CUBLAS_ATOMICS_NOT_ALLOWED));
    if (kb_cuda_apply_math_mode(st, err)) return -1;
    KB_CUBLAS_CHECK(op, cublasLtCreate(&st->cublaslt));
    const char *lt = getenv("KINDBENCH_CUBLASLT");
    st->lt_off = lt && !strcmp(lt, "0");
    const char *lg = getenv("KINDBENCH_LT_GELU");
    st->lt_gelu = lg && !strcmp(lg, "1");
    const char *bo = getenv("KINDBENCH_BF16_OPERANDS");
    st->bf16_operands = bo && !strcmp(bo, "1");
    const char *bg = getenv("KINDBENCH_LT_BGRAD");
    st->lt_bgrad = bg && !strcmp(bg, "1");
    return 0;
}

extern "C" int kb_cuda_state_create(int ordinal, kb_cuda_state **out, kb_err *err) {
    *out = NULL;
    if (check_ordinal(ordinal, err)) return -1;
    kb_cuda_state *st = (kb_cuda_state *)calloc(1, sizeof *st);
    if (!st) return kb_fail(err, "cuda device %d: out of host memory for the context", ordinal);
    if (state_init(st, ordinal, err)) {
        kb_fail_wrap(err, "cuda device %d", ordinal);
        kb_cuda_state_destroy(st);
        return -1;
    }
    *out = st;
    return 0;
}

static int need_state(kb_cuda_state *st, const char *op, kb_err *err) {
    if (!st) return kb_fail(err, "%s: no CUDA context (the kb_ctx was not initialised for --device cuda)", op);
    return 0;
}

extern "C" int kb_cuda_sync(kb_cuda_state *st, kb_err *err) {
    const char *op = "cuda sync";
    if (need_state(st, op, err)) return -1;
    KB_CUDA_CHECK(op, cudaStreamSynchronize(st->stream));
    KB_CUDA_CHECK(op, cudaGetLastError());
    return 0;
}

extern "C" void *kb_cuda_malloc(kb_cuda_state *st, size_t bytes, kb_err *err) {
    if (need_state(st, "cuda malloc", err)) return NULL;
    void *p = NULL;
    /* cudaMalloc returns 256-byte aligned memory; never hand out NULL for 0 bytes. */
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) free_b = total_b = 0;
        (void)cudaGetLastError();
        kb_fail(err, "cuda device %d: cannot allocate %zu bytes (%.1f MiB free of %.1f MiB): %s", st->device, bytes,
                (double)free_b / 1048576.0, (double)total_b / 1048576.0, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void kb_cuda_free(kb_cuda_state *st, void *p) {
    (void)st;
    if (!p) return;
    /* cudaFree waits for work that may still use p. */
    if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}

extern "C" int kb_cuda_memset0(kb_cuda_state *st, void *p, size_t bytes, kb_err *err) {
    const char *op = "cuda memset";
    if (need_state(st, op, err)) return -1;
    if (bytes == 0) return 0;
    KB_CUDA_CHECK(op, cudaMemsetAsync(p, 0, bytes, st->stream));
    return 0;
}

extern "C" int kb_cuda_memcpy(kb_cuda_state *st, void *dst, const void *src, size_t bytes, int kind, kb_err *err) {
    static const char *const ops[3] = {"copy host->cuda", "copy cuda->host", "copy cuda->cuda"};
    if (kind < 0 || kind > 2) return kb_fail(err, "cuda memcpy: invalid kind %d (0 h2d, 1 d2h, 2 d2d)", kind);
    const char *op = ops[kind];
    if (need_state(st, op, err)) return -1;
    if (bytes == 0) return 0;
    static const cudaMemcpyKind kinds[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice};
    /* On st->stream, so the copy is ordered after the ops queued before it. */
    KB_CUDA_CHECK(op, cudaMemcpyAsync(dst, src, bytes, kinds[kind], st->stream));
    if (kind != 2) KB_CUDA_CHECK(op, cudaStreamSynchronize(st->stream));
    return 0;
}

void *kb_cuda_scratch(kb_cuda_state *st, size_t bytes, const char *op, kb_err *err) {
    if (st->scratch && bytes <= st->scratch_bytes) return st->scratch;
    size_t want = st->scratch_bytes * 2;
    if (want < bytes) want = bytes;
    if (want < ((size_t)1 << 20)) want = (size_t)1 << 20;
    want = (want + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (st->scratch) {
        /* queued work may still read the old buffer */
        cudaError_t e = cudaStreamSynchronize(st->stream);
        if (e == cudaSuccess) e = cudaFree(st->scratch);
        st->scratch = NULL;
        st->scratch_bytes = 0;
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            kb_fail(err, "%s: releasing the old scratch buffer failed: %s", op, cudaGetErrorString(e));
            return NULL;
        }
    }
    cudaError_t e = cudaMalloc(&st->scratch, want);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        st->scratch = NULL;
        kb_fail(err, "%s: cannot allocate %zu bytes of scratch on cuda device %d: %s", op, want, st->device,
                cudaGetErrorString(e));
        return NULL;
    }
    st->scratch_bytes = want;
    return st->scratch;
}

extern "C" int kb_cuda_set_bf16_operands(kb_cuda_state *st, int on) {
    int was = st ? st->bf16_operands : 0;
    if (st) st->bf16_operands = on != 0;
    return was;
}

extern "C" kb_cuda_gemm_counts kb_cuda_gemm_counts_of(const kb_cuda_state *st) {
    kb_cuda_gemm_counts none = {0, 0, 0};
    return st ? st->counts : none;
}
