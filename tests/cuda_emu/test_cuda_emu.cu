/* The CUDA emulator's own test (built only with -DKB_CUDA_EMU=ON): what it
 * must show for the CUDA checks run on it to mean anything. Barriers and
 * warp collectives behave as on a GPU, and a kernel that lacks one reads
 * stale data here (the emulator runs warps and lanes as far apart as the
 * barriers allow); mma.sync products and shuffles give the right values; launch
 * limits fail as on a GPU; a diverged warp or a deadlock aborts with the
 * kernel's name. Built with ThreadSanitizer (KB_EMU_TSAN) the kernels that
 * race on purpose run only under KB_EMU_SELFTEST_RACE (race_selftest). */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>

/* Built with ThreadSanitizer (KB_EMU_TSAN): the kernels that race on
 * purpose run only when KB_EMU_SELFTEST_RACE names one (a race report ends
 * the process), so that run_checks.sh can show each is caught. */
#if defined(__SANITIZE_THREAD__)
static const bool g_tsan = true;
#else
static const bool g_tsan = false;
#endif

static int g_pass = 0, g_fail = 0;
static void check(bool ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    (ok ? g_pass : g_fail)++;
}

/* out[block] = sum of in[block*256 .. +256) by a shared-memory tree. */
__global__ void block_sum(float *out, const float *in) {
    __shared__ float s[256];
    int t = threadIdx.x;
    s[t] = in[blockIdx.x * 256 + t];
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (t < w) s[t] += s[t + w];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

/* out[t] = s[t-1] + s[t+1] after every thread wrote s[t] = in[t] (+ base),
 * with or without the __syncthreads between: one neighbour is not written
 * yet whichever order the threads run in. */
__global__ void neighbours(float *out, const float *in, int barrier, float base) {
    __shared__ float s[256];
    int t = threadIdx.x;
    s[t] = in[t] + base;
    if (barrier) __syncthreads();
    out[t] = (t > 0 ? s[t - 1] : 0.0f) + (t < 255 ? s[t + 1] : 0.0f);
}

/* Each lane writes its value to shared memory; every lane then sums all 32
 * (with or without __syncwarp in between: in either lane order some lane
 * reads before another wrote), and the butterfly sum too. */
__global__ void warp_sums(float *out, float *shfl_out, int barrier, int base) {
    __shared__ float s[32];
    unsigned lane = threadIdx.x;
    s[lane] = (float)(lane + 1 + base); /* base: other values than the last launch left */
    if (barrier) __syncwarp();
    float t = 0.0f;
    for (int i = 0; i < 32; i++) t += s[i];
    out[lane] = t;
    float v = (float)(lane + 1 + base);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    shfl_out[lane] = v;
}

/* D (16 x 8 fp32, row-major) = A (16 x 16, row-major bf16 bits) B (given as
 * its transpose Bt [8][16]) through one mma.sync m16n8k16, each lane loading
 * its fragments by the PTX ISA's layouts (lane = 4 g + t; see nn/mma_bf16.cuh). */
__global__ void mma_product(float *D, const uint16_t *A, const uint16_t *Bt) {
    unsigned g = threadIdx.x / 4, t = threadIdx.x % 4;
    auto pair = [](const uint16_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 16; };
    uint32_t a[4] = {pair(A + g * 16 + 2 * t), pair(A + (g + 8) * 16 + 2 * t), pair(A + g * 16 + 2 * t + 8),
                     pair(A + (g + 8) * 16 + 2 * t + 8)};
    uint32_t b[2] = {pair(Bt + g * 16 + 2 * t), pair(Bt + g * 16 + 2 * t + 8)};
    float c[4] = {0.5f, 0.5f, 0.5f, 0.5f}, d[4];
    kb_emu::mma_m16n8k16_bf16(d, a, b, c);
    for (int i = 0; i < 4; i++) D[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = d[i];
}

/* Thread 0 overwrites s[0] while the others read it, with or without a
 * __syncthreads between: without it each reader gets the old value or the
 * new one, and when the two are equal (in[0] == in[32]) every order of the
 * threads, forward or reverse, gives the same output. A race nonetheless,
 * which only the ThreadSanitizer mode sees. */
__global__ void overwrite(float *out, const float *in, int barrier) {
    __shared__ float s[32];
    int t = threadIdx.x;
    s[t] = in[t];
    __syncthreads();
    if (t == 0) s[0] = in[32];
    if (barrier) __syncthreads();
    out[t] = s[0];
}

/* Thread 0 of block 0 writes a flag before a __syncthreads, thread 32 of
 * the last block reads it after: in one block the barrier orders the two; in
 * two it does not (a barrier orders one block's threads, not the blocks). */
__global__ void flag_across_barrier(float *flag, float *out) {
    if (blockIdx.x == 0 && threadIdx.x == 0) flag[0] = 1.0f;
    __syncthreads();
    if (blockIdx.x == gridDim.x - 1 && threadIdx.x == 32) out[0] = flag[0];
}

__global__ void touch(float *p) { p[threadIdx.x] = 1.0f; }

/* Only block 0 fills its static shared array; block 1 reads its own. */
__global__ void static_smem(float *out) {
    __shared__ float s[32];
    if (blockIdx.x == 0) s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}

__global__ void touch_smem(float *p) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    p[threadIdx.x] = dyn[255 - threadIdx.x];
}

/* Block 0 publishes a value that block 1 reads in the same launch: no
 * order between blocks on a GPU, so with KB_EMU_ORDER=reverse (blocks last
 * first) block 1 reads the poison of a fresh allocation. */
__global__ void across_blocks(float *flag, float *out) {
    if (blockIdx.x == 0) flag[0] = 1.0f;
    else out[0] = flag[0];
}

/* Two half-warp shuffles: lanes 0-15 (mask 0x0000ffff) ask lane l ^ 16,
 * outside their mask (undefined on a GPU: NaN bits here), lanes 16-31 their
 * neighbour l ^ 1, inside theirs. */
__global__ void half_shuffles(float *out) {
    unsigned l = threadIdx.x;
    float v = (float)l;
    if (l < 16) v = __shfl_xor_sync(0x0000ffffu, v, 16);
    else v = __shfl_xor_sync(0xffff0000u, v, 1);
    out[l] = v;
}

/* 2 KiB of static shared memory and the launch's dynamic part. */
__global__ void static_and_dynamic(float *p) {
    __shared__ float s[512];
    extern __shared__ float dyn[];
    s[threadIdx.x] = dyn[threadIdx.x] = 1.0f;
    __syncthreads();
    p[threadIdx.x] = s[threadIdx.x] + dyn[threadIdx.x];
}

/* Lane 0 skips a warp collective that the others reach. */
__global__ void diverged(float *p) {
    float v = p[threadIdx.x];
    if (threadIdx.x != 0) v = __shfl_xor_sync(0xffffffffu, v, 1);
    p[threadIdx.x] = v;
}

/* Warp 1 is split: half of it waits at __syncthreads, half at __syncwarp. */
__global__ void deadlock(float *p) {
    if (threadIdx.x < 48) __syncthreads();
    else __syncwarp();
    p[threadIdx.x] = 0.0f;
}

/* Declared for at most 64 threads per block. */
__global__ void __launch_bounds__(64, 2) bounded(float *p) { p[threadIdx.x] = 1.0f; }

/* Warps 0 and 1 wait at two different __syncthreads. */
__global__ void split_barrier(float *p) {
    if (threadIdx.x < 32) __syncthreads();
    else __syncthreads();
    p[threadIdx.x] = 0.0f;
}

static void test_block_barriers() {
    float h[512], *in, *out, r[2];
    for (int i = 0; i < 512; i++) h[i] = (float)(i % 7);
    cudaMalloc((void **)&in, sizeof h);
    cudaMalloc((void **)&out, sizeof r);
    cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice);
    float want0 = 0, want1 = 0;
    for (int i = 0; i < 256; i++) want0 += h[i], want1 += h[256 + i];
    block_sum<<<2, 256>>>(out, in);
    cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost);
    check(r[0] == want0 && r[1] == want1, "block tree sum with __syncthreads is right");
    float *nb, hn[256];
    cudaMalloc((void **)&nb, sizeof hn);
    neighbours<<<1, 256>>>(nb, in, 1, 0.0f);
    cudaMemcpy(hn, nb, sizeof hn, cudaMemcpyDeviceToHost);
    int right = 0;
    for (int t = 0; t < 256; t++) right += hn[t] == (t > 0 ? h[t - 1] : 0.0f) + (t < 255 ? h[t + 1] : 0.0f);
    check(right == 256, "neighbours' shared-memory writes seen after __syncthreads");
    if (g_tsan) return cudaFree(nb), cudaFree(in), cudaFree(out), (void)0; /* the racy launch: KB_EMU_SELFTEST_RACE */
    neighbours<<<1, 256>>>(nb, in, 0, 1000.0f); /* other values than the last launch left */
    cudaMemcpy(hn, nb, sizeof hn, cudaMemcpyDeviceToHost);
    right = 0;
    for (int t = 0; t < 256; t++) right += hn[t] == (t > 0 ? h[t - 1] + 1000.0f : 0.0f) + (t < 255 ? h[t + 1] + 1000.0f : 0.0f);
    check(right < 256, "without __syncthreads some threads read a neighbour's stale value");
    cudaFree(nb);
    cudaFree(in);
    cudaFree(out);
}

static void test_warp_barriers() {
    float *out, *sh, h[32], hs[32];
    cudaMalloc((void **)&out, sizeof h);
    cudaMalloc((void **)&sh, sizeof hs);
    warp_sums<<<1, 32>>>(out, sh, 1, 0);
    cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost);
    cudaMemcpy(hs, sh, sizeof hs, cudaMemcpyDeviceToHost);
    int right = 0, shfl_right = 0;
    for (int i = 0; i < 32; i++) right += h[i] == 528.0f, shfl_right += hs[i] == 528.0f;
    check(right == 32, "lanes' shared-memory writes seen after __syncwarp");
    check(shfl_right == 32, "__shfl_xor_sync butterfly sum in every lane");
    if (g_tsan) return cudaFree(out), cudaFree(sh), (void)0; /* the racy launch: KB_EMU_SELFTEST_RACE */
    warp_sums<<<1, 32>>>(out, sh, 0, 100);
    cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost);
    right = 0;
    for (int i = 0; i < 32; i++) right += h[i] == 528.0f + 3200.0f;
    check(right < 32, "without __syncwarp some lanes read stale shared memory");
    cudaFree(out);
    cudaFree(sh);
}

static void test_half_shuffles() {
    float *d, h[32];
    cudaMalloc((void **)&d, sizeof h);
    half_shuffles<<<1, 32>>>(d);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    bool outside = true, inside = true;
    for (int l = 0; l < 16; l++) outside = outside && std::isnan(h[l]);
    for (int l = 16; l < 32; l++) inside = inside && h[l] == (float)(l ^ 1);
    check(outside, "a shuffle from a lane outside the mask reads NaN bits (undefined on a GPU)");
    check(inside, "a half-warp shuffle inside its mask reads its neighbour");
    cudaFree(d);
}

static void test_static_smem() {
    float *d, h[64];
    cudaMalloc((void **)&d, sizeof h);
    static_smem<<<2, 32>>>(d);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    bool first = true, second = true;
    for (int i = 0; i < 32; i++) first = first && h[i] == 1.0f, second = second && std::isnan(h[32 + i]);
    check(first && second, "a static __shared__ array starts as NaN bits in every block, not as the last block left it");
    cudaFree(d);
}

static uint16_t bf16_bits(float f) { /* small exact values only */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

static void test_mma() {
    uint16_t ha[256], hbt[128];
    float ref[128], got[128];
    for (int i = 0; i < 256; i++) ha[i] = bf16_bits((float)((i * 37) % 19 - 9) / 8.0f);
    for (int i = 0; i < 128; i++) hbt[i] = bf16_bits((float)((i * 11) % 23 - 11) / 4.0f);
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 8; n++) {
            double s = 0.5;
            for (int k = 0; k < 16; k++) {
                uint32_t ua = (uint32_t)ha[r * 16 + k] << 16, ub = (uint32_t)hbt[n * 16 + k] << 16;
                float fa, fb;
                memcpy(&fa, &ua, 4), memcpy(&fb, &ub, 4);
                s += (double)fa * fb;
            }
            ref[r * 8 + n] = (float)s;
        }
    uint16_t *a, *bt;
    float *d;
    cudaMalloc((void **)&a, sizeof ha);
    cudaMalloc((void **)&bt, sizeof hbt);
    cudaMalloc((void **)&d, sizeof got);
    cudaMemcpy(a, ha, sizeof ha, cudaMemcpyHostToDevice);
    cudaMemcpy(bt, hbt, sizeof hbt, cudaMemcpyHostToDevice);
    mma_product<<<1, 32>>>(d, a, bt);
    cudaMemcpy(got, d, sizeof got, cudaMemcpyDeviceToHost);
    bool same = true;
    for (int i = 0; i < 128; i++) same = same && got[i] == ref[i]; /* small multiples of 1/32: exact */
    check(same, "mma.sync m16n8k16 bf16 (PTX fragment layouts) equals the exact product plus C");
    cudaFree(a);
    cudaFree(bt);
    cudaFree(d);
}

static void test_async_copy() {
    float *d, h[4] = {0.0f, 0.0f, 0.0f, 0.0f}, v[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    cudaMalloc((void **)&d, sizeof h);
    cudaMemcpy(d, v, sizeof v, cudaMemcpyHostToDevice);
    cudaStream_t s;
    cudaStreamCreate(&s);
    cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, s);
    bool early = std::isnan(h[0]) && std::isnan(h[3]);
    touch<<<1, 4, 0, s>>>(d); /* queued after the copy: the copy keeps the values before it */
    cudaStreamSynchronize(s);
    check(early, "a device-to-host cudaMemcpyAsync's host bytes read NaN before the stream is synchronised");
    check(h[0] == 1.0f && h[3] == 4.0f, "... and after it, the device's bytes as of the copy's place in the stream");
    cudaStreamDestroy(s);
    cudaFree(d);
}

static void test_block_order() {
    float *flag, *out, h = 0.0f;
    cudaMalloc((void **)&flag, sizeof h);
    cudaMalloc((void **)&out, sizeof h);
    across_blocks<<<2, 1>>>(flag, out);
    cudaMemcpy(&h, out, sizeof h, cudaMemcpyDeviceToHost);
    const char *o = getenv("KB_EMU_ORDER");
    if (o && !strcmp(o, "reverse"))
        check(std::isnan(h), "KB_EMU_ORDER=reverse: a block reading a later block's write reads poison");
    else
        check(h == 1.0f, "blocks run in order (block 1 sees block 0's write; KB_EMU_ORDER=reverse undoes it)");
    cudaFree(flag);
    cudaFree(out);
}

static void test_launch_limits() {
    float *p, h[256];
    cudaMalloc((void **)&p, 2048 * sizeof(float));
    (void)cudaGetLastError();
    touch<<<1, 1025>>>(p);
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "1025 threads per block: invalid configuration");
    touch_smem<<<1, 256, 64 * 1024>>>(p);
    check(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB of dynamic shared memory without the opt-in: refused");
    check(cudaFuncSetAttribute(touch_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess,
          "opt in to 64 KiB");
    touch_smem<<<1, 256, 64 * 1024>>>(p);
    cudaError_t e = cudaGetLastError();
    cudaMemcpy(h, p, sizeof h, cudaMemcpyDeviceToHost);
    check(e == cudaSuccess && h[0] == 255.0f && h[255] == 0.0f, "with the opt-in it runs (dynamic shared memory)");
    static_and_dynamic<<<1, 32, 46 * 1024>>>(p); /* 2 + 46 KiB: exactly the 48 without the opt-in */
    e = cudaGetLastError();
    cudaMemcpy(h, p, 32 * sizeof(float), cudaMemcpyDeviceToHost);
    check(e == cudaSuccess && h[0] == 2.0f && h[31] == 2.0f, "2 KiB static and 46 KiB dynamic shared memory run");
    cudaPointerAttributes at;
    cudaPointerGetAttributes(&at, p + 100);
    check(at.type == cudaMemoryTypeDevice, "cudaPointerGetAttributes: inside a cudaMalloc block is device memory");
    cudaPointerGetAttributes(&at, h);
    check(at.type != cudaMemoryTypeDevice, "cudaPointerGetAttributes: a host array is not");
    cudaFree(p);
}

/* The libraries refuse what the real ones refuse: a cublasGemmEx type
 * combination outside cuBLAS's table, a cublasLtMatmul given less workspace
 * than its algorithm asked for; a bf16 output NaN is the canonical NaN. */
static void test_library_checks() {
    cublasHandle_t h;
    cublasCreate(&h);
    float *A, *B, *C;
    cudaMalloc((void **)&A, 64 * sizeof(float));
    cudaMalloc((void **)&B, 64 * sizeof(float));
    cudaMalloc((void **)&C, 64 * sizeof(float));
    float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasGemmEx_64(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_16BF, 4, B, CUDA_R_32F, 4,
                                    &zero, C, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    check(s == CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx with bf16 A and fp32 B: not supported");
    s = cublasGemmEx_64(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, CUDA_R_16BF, 4, B, CUDA_R_16BF, 4, &zero, C,
                     CUDA_R_16BF, 4, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
    check(s == CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx with bf16 operands and a FAST_TF32 compute type: not supported");
    check(cublasSetWorkspace(h, (char *)C + 16, 128) == CUBLAS_STATUS_INVALID_VALUE,
          "cublasSetWorkspace with a workspace not 256-byte aligned: invalid value");
    uint32_t nan_lo = 0x7f800001u; /* a NaN whose payload is all in the low half */
    float a_nan;
    memcpy(&a_nan, &nan_lo, 4);
    float hA[16], hB[16]; /* D = A B: row 0 NaN, the other rows 4 x 0.25 = 1 */
    for (int i = 0; i < 16; i++) hA[i] = i == 0 ? a_nan : 0.25f, hB[i] = 1.0f;
    cudaMemcpy(A, hA, sizeof hA, cudaMemcpyHostToDevice);
    cudaMemcpy(B, hB, sizeof hB, cudaMemcpyHostToDevice);
    cublasLtHandle_t lt;
    cublasLtCreate(&lt);
    cublasLtMatmulDesc_t d;
    cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatrixLayout_t la, ld16;
    cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, 4, 4, 4);
    cublasLtMatrixLayoutCreate(&ld16, CUDA_R_16BF, 4, 4, 4);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    uint64_t ws_max = 1 << 20;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_max, sizeof ws_max);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasLtMatmulAlgoGetHeuristic(lt, d, la, la, ld16, ld16, pref, 1, &res, &found);
    void *ws;
    cudaMalloc(&ws, res.workspaceSize);
    s = found ? cublasLtMatmul(lt, d, &one, A, la, B, la, &zero, C, ld16, C, ld16, &res.algo, ws, 0, 0)
              : CUBLAS_STATUS_SUCCESS;
    check(found && res.workspaceSize > 0 && s == CUBLAS_STATUS_INVALID_VALUE,
          "cublasLtMatmul given less workspace than its algorithm asked for: invalid value");
    s = cublasLtMatmul(lt, d, &one, A, la, B, la, &zero, C, ld16, C, ld16, &res.algo, ws, res.workspaceSize, 0);
    uint16_t out[16];
    cudaMemcpy(out, C, sizeof out, cudaMemcpyDeviceToHost);
    check(s == CUBLAS_STATUS_SUCCESS && out[0] == 0x7fffu && out[1] == 0x3f80u,
          "a bf16 D: NaN as the canonical NaN (0x7fff), 1.0 as 0x3f80");
    cudaFree(ws);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(ld16);
    cublasLtMatmulDescDestroy(d);
    cublasLtDestroy(lt);
    cublasDestroy(h);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
}

/* A cublasLtMatmul whose A is less aligned than the preference promised the heuristic. */
static void lt_misaligned(float *p) {
    cublasLtHandle_t lt;
    cublasLtCreate(&lt);
    cublasLtMatmulDesc_t d;
    cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatrixLayout_t l;
    cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 4, 4, 4);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref); /* alignments not set: 256 bytes promised */
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasLtMatmulAlgoGetHeuristic(lt, d, l, l, l, l, pref, 1, &res, &found);
    float one = 1.0f, zero = 0.0f;
    cublasLtMatmul(lt, d, &one, p + 4, l, p + 32, l, &zero, p + 32, l, p + 32, l, &res.algo, NULL, 0, 0);
}

/* A convolution whose algorithm needs a workspace, run without one. */
static void cudnn_no_workspace(float *p) {
    cudnnHandle_t h;
    cudnnCreate(&h);
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t f;
    cudnnConvolutionDescriptor_t cv;
    cudnnCreateTensorDescriptor(&x), cudnnCreateTensorDescriptor(&y);
    cudnnCreateFilterDescriptor(&f), cudnnCreateConvolutionDescriptor(&cv);
    cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 1, 4, 4);
    cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 1, 4, 4);
    cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 1, 1, 1, 1);
    cudnnSetConvolution2dDescriptor(cv, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
    cudnnSetConvolutionMathType(cv, CUDNN_FMA_MATH);
    cudnnConvolutionFwdAlgoPerf_t perf[2];
    int got = 0;
    cudnnGetConvolutionForwardAlgorithm_v7(h, x, f, cv, y, 2, &got, perf);
    for (int i = 0; i < got; i++)
        if (perf[i].memory > 0) {
            float one = 1.0f, zero = 0.0f;
            cudnnConvolutionForward(h, &one, x, p, f, p + 16, cv, perf[i].algo, NULL, 0, &zero, y, p + 32);
        }
}

/* Runs kernel k in a child process: it must abort, saying `expect`. */
static void expect_abort(void (*launch)(float *), const char *expect, const char *what) {
    int fds[2];
    if (pipe(fds)) return check(false, what);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        float *p;
        cudaMalloc((void **)&p, 64 * sizeof(float));
        launch(p);
        _exit(0);
    }
    close(fds[1]);
    char buf[4096] = {0};
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf - 1 && (k = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)k;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    check(aborted && strstr(buf, expect) != NULL, what);
    if (!aborted || !strstr(buf, expect)) fprintf(stderr, "     child said: %s\n", buf);
}

static void launch_diverged(float *p) { diverged<<<1, 32>>>(p); }
static void launch_deadlock(float *p) { deadlock<<<1, 64>>>(p); }
static void launch_split_barrier(float *p) { split_barrier<<<1, 64>>>(p); }
static void launch_over_bounds(float *p) { bounded<<<1, 96>>>(p); }
static void launch_static_dyn_over_48k(float *p) { static_and_dynamic<<<1, 32, 47 * 1024>>>(p); }

/* KB_EMU_SELFTEST_RACE=shared|warp|blocks|blocks_far: one racy kernel (ThreadSanitizer
 * must report it; run_checks.sh expects its exit status 66); =none: their
 * correct versions, which must run without a report. 1 for an unknown name. */
static int race_selftest(const char *which) {
    float h[64], *in, *out, *flag;
    for (int i = 0; i < 64; i++) h[i] = i == 32 ? 5.0f : (float)i;
    h[0] = 5.0f; /* in[0] == in[32]: the race does not change the output */
    cudaMalloc((void **)&in, sizeof h);
    cudaMalloc((void **)&out, sizeof h);
    cudaMalloc((void **)&flag, sizeof h);
    cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice);
    bool none = !strcmp(which, "none");
    if (none || !strcmp(which, "shared")) {
        overwrite<<<1, 32>>>(out, in, none);
        cudaMemcpy(h, out, 32 * sizeof(float), cudaMemcpyDeviceToHost);
        check(h[0] == 5.0f && h[31] == 5.0f, "overwrite: every thread reads 5 (in any order)");
    }
    if (none || !strcmp(which, "warp")) warp_sums<<<1, 32>>>(out, out + 32, none, 0);
    if (none) {
        flag_across_barrier<<<1, 64>>>(flag, out); /* one block: the barrier orders the write and the read */
        cudaMemcpy(h, out, sizeof(float), cudaMemcpyDeviceToHost);
        check(h[0] == 1.0f, "one block: the flag written before __syncthreads is read after it");
    } else if (!strcmp(which, "blocks")) {
        flag_across_barrier<<<2, 64>>>(flag, out);
    } else if (!strcmp(which, "blocks_far")) {
        /* blocks 0 and 8: as far apart as the emulator's 8 slots (b % 8 put them in one slot, ordered) */
        flag_across_barrier<<<9, 64>>>(flag, out);
    } else if (strcmp(which, "shared") && strcmp(which, "warp")) {
        fprintf(stderr, "KB_EMU_SELFTEST_RACE=%s: not shared, warp, blocks, blocks_far or none\n", which);
        return 1;
    }
    cudaDeviceSynchronize();
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}

int main(void) {
    if (getenv("KB_EMU_SELFTEST_RACE")) return race_selftest(getenv("KB_EMU_SELFTEST_RACE"));
    test_block_barriers();
    test_warp_barriers();
    test_mma();
    test_static_smem();
    test_half_shuffles();
    test_async_copy();
    test_library_checks();
    if (!g_tsan) test_block_order(); /* a race between blocks on purpose: KB_EMU_SELFTEST_RACE=blocks */
    test_launch_limits();
    expect_abort(launch_diverged, "waits for a lane that has returned", "a collective that lane 0 skips aborts");
    expect_abort(launch_deadlock, "deadlock", "__syncthreads against __syncwarp aborts as a deadlock");
    expect_abort(launch_split_barrier, "wait at different __syncthreads",
                 "two warps at two different __syncthreads abort, naming both");
    expect_abort(launch_over_bounds, "over bounded's __launch_bounds__ of 64",
                 "a launch over a kernel's __launch_bounds__ aborts");
    expect_abort(lt_misaligned, "chosen for 256",
                 "a cublasLtMatmul operand less aligned than the heuristic was promised aborts (a GPU may refuse or fault)");
    expect_abort(cudnn_no_workspace, "needs",
                 "a cuDNN algorithm that needs a workspace, run without one, aborts");
    expect_abort(launch_static_dyn_over_48k, "together over 48 KiB without cudaFuncSetAttribute",
                 "2 KiB static and 47 KiB dynamic shared memory without the opt-in abort (a GPU refuses the launch)");
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
