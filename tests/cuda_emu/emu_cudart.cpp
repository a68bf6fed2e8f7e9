/* The CUDA runtime calls kindbench makes, served on the CPU (see
 * kb_cuda_emu.h): device memory is host memory from malloc (exact sizes, so
 * that AddressSanitizer sees overruns), streams and events run in order, and
 * every call checks what the real one checks that matters to us (device
 * pointers for cudaPointerGetAttributes, launch limits, sticky errors). */
#include "emu_internal.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

struct CUstream_st {
    int id;
};
struct CUevent_st {
    double ms;
    bool recorded;
};

namespace kb_emu {
namespace {
std::mutex g_mem_mutex;
std::map<const char *, size_t> g_allocs; /* device allocations: start -> bytes */
cudaError_t g_last_error = cudaSuccess;
const char *g_last_error_kernel = "";
long long g_launches = 0;

/* Device-to-host cudaMemcpyAsync copies not yet "done": the device bytes as
 * they were when the copy was queued (stream order), landing in host memory
 * at the next synchronisation. */
struct pending_copy {
    void *dst;
    std::vector<char> bytes;
};
std::vector<pending_copy> g_pending;

/* What a synchronisation (stream, device, event, or a call that implies one)
 * completes: every queued device-to-host copy lands. */
void land_copies() {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    for (pending_copy &c : g_pending) std::memcpy(c.dst, c.bytes.data(), c.bytes.size());
    g_pending.clear();
}

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}
} // namespace

/* An H100's, or with KB_EMU_CC=M.N another compute capability (to check
 * what a GPU the build has no code for gets; see cudaFuncGetAttributes). */
static emu_limits make_limits() {
    emu_limits l = {1024, 48 * 1024, 227 * 1024, 132, 9, 0, (size_t)80 << 30};
    const char *cc = std::getenv("KB_EMU_CC");
    int major, minor;
    if (cc && std::sscanf(cc, "%d.%d", &major, &minor) == 2) l.cc_major = major, l.cc_minor = minor;
    return l;
}

const emu_limits &limits() {
    static const emu_limits l = make_limits();
    return l;
}

void set_launch_error(cudaError_t e, const char *kernel) {
    g_last_error = e;
    g_last_error_kernel = kernel;
    if (std::getenv("KB_EMU_VERBOSE")) std::fprintf(stderr, "kindbench CUDA emulator: launch of %s failed: %d\n", kernel, (int)e);
}

void count_launch() { g_launches++; }

bool is_device_range(const void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    const char *c = (const char *)p;
    auto it = g_allocs.upper_bound(c);
    if (it == g_allocs.begin()) return false;
    --it;
    return c >= it->first && c + bytes <= it->first + it->second;
}

} // namespace kb_emu

using namespace kb_emu;

extern "C" {

cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (!p) return cudaErrorInvalidValue;
    /* cudaMalloc's alignment (256 bytes), but exactly the bytes asked for */
    if (posix_memalign(p, 256, bytes ? bytes : 1)) return *p = nullptr, cudaErrorMemoryAllocation;
    std::memset(*p, 0xff, bytes); /* uninitialised device memory reads as NaN, not as zeros */
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    g_allocs[(const char *)*p] = bytes ? bytes : 1;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    land_copies(); /* cudaFree waits for the device */
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = g_allocs.find((const char *)p);
    if (it == g_allocs.end()) {
        std::fprintf(stderr, "kindbench CUDA emulator: cudaFree of %p, which cudaMalloc did not return\n", p);
        std::abort();
    }
    g_allocs.erase(it);
    std::free(p);
    return cudaSuccess;
}

} // extern "C"

namespace {
/* A copy carried out now (overlapping ranges abort: memmove here, undefined on a GPU). */
cudaError_t copy_now(void *dst, const void *src, size_t bytes) {
    const char *d = (const char *)dst, *sp = (const char *)src;
    if (bytes && d != sp && d < sp + bytes && sp < d + bytes) {
        std::fprintf(stderr, "kindbench CUDA emulator: cudaMemcpy of %zu bytes between overlapping ranges\n", bytes);
        std::abort();
    }
    if (bytes) std::memmove(dst, src, bytes);
    return cudaSuccess;
}
} // namespace

extern "C" {

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    (void)kind;
    land_copies(); /* a plain cudaMemcpy waits for the work queued before it */
    return copy_now(dst, src, bytes);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    (void)s;
    bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (bytes && ((dst_dev && !is_device_range(dst, bytes)) || (src_dev && !is_device_range(src, bytes)))) {
        std::fprintf(stderr, "kindbench CUDA emulator: cudaMemcpyAsync of %zu bytes (kind %d) outside device memory\n",
                     bytes, (int)kind);
        std::abort();
    }
    /* Device to host: asynchronous with respect to the host (a GPU may return
     * before the copy is done; from pageable memory it "might be synchronous",
     * which nothing may rely on). The host bytes read as NaN until the stream
     * is synchronised, so that a result read before cudaStreamSynchronize
     * shows; the device bytes are taken now, as the stream's order has it. */
    if (kind == cudaMemcpyDeviceToHost && bytes && !is_device_range(dst, 1)) {
        pending_copy c{dst, std::vector<char>((const char *)src, (const char *)src + bytes)};
        std::memset(dst, 0xff, bytes);
        std::lock_guard<std::mutex> lock(g_mem_mutex);
        g_pending.push_back(std::move(c));
        return cudaSuccess;
    }
    return copy_now(dst, src, bytes); /* host to device: a pageable source is staged before the return */
}

cudaError_t cudaMemset(void *p, int v, size_t bytes) {
    if (bytes && !is_device_range(p, bytes)) return cudaErrorInvalidValue;
    std::memset(p, v, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s) {
    (void)s;
    return cudaMemset(p, v, bytes);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    (void)flags;
    *s = new CUstream_st{1};
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    land_copies();
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    land_copies();
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    default: return "cudaError (emulator)";
    }
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    default: return "unknown error (emulator)";
    }
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    const emu_limits &l = limits();
    std::memset(p, 0, sizeof *p);
    std::snprintf(p->name, sizeof p->name, "kindbench CUDA emulator (CPU)");
    p->major = l.cc_major, p->minor = l.cc_minor;
    p->multiProcessorCount = l.sm_count;
    p->totalGlobalMem = l.global_mem;
    p->sharedMemPerBlock = l.smem_default;
    p->sharedMemPerBlockOptin = l.smem_optin_max;
    p->maxThreadsPerBlock = l.max_threads;
    p->warpSize = 32;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = CUDART_VERSION;
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) {
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *free_b = *total_b = limits().global_mem;
    return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p) {
    std::memset(a, 0, sizeof *a);
    bool dev = is_device_range(p, 1);
    a->type = dev ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
    a->device = 0;
    a->devicePointer = dev ? (void *)p : nullptr;
    a->hostPointer = dev ? nullptr : (void *)p;
    return cudaSuccess;
}

/* The emulated build holds code for compute capability 9.0 (as the default
 * CMAKE_CUDA_ARCHITECTURES 90: sm_90 code and compute_90 PTX), so a device
 * below 9.0 has no kernel image, as an A100 under that build. */
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *f) {
    (void)f;
    if (limits().cc_major < 9) return cudaErrorNoKernelImageForDevice;
    std::memset(a, 0, sizeof *a);
    a->maxThreadsPerBlock = limits().max_threads;
    a->maxDynamicSharedSizeBytes = (int)limits().smem_default;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *f, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || (size_t)value > limits().smem_optin_max) return cudaErrorInvalidValue;
    set_smem_optin(f, value);
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new CUevent_st{0.0, false};
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
    (void)flags;
    return cudaEventCreate(e);
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)s;
    e->ms = now_ms();
    e->recorded = true;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e->recorded) return cudaErrorInvalidResourceHandle;
    land_copies(); /* one stream: everything before the event, copies included */
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    if (!a->recorded || !b->recorded) return cudaErrorInvalidResourceHandle;
    *ms = (float)(b->ms - a->ms);
    return cudaSuccess;
}

} // extern "C"
