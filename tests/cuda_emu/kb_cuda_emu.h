/* A CUDA emulator for tests: kindbench's own .cu files, compiled as C++ for
 * the CPU, with every CUDA thread a fiber (tests/cuda_emu/emu_core.cpp) and
 * the runtime, cuBLAS, cuBLASLt and cuDNN calls served by CPU stand-ins
 * (emu_cudart.cpp, emu_cublas.cpp, emu_cudnn.cpp). Force-included (-include)
 * into each .cu after tests/cuda_emu/rewrite_launches.pl has turned its
 * `k<<<grid, block, smem, stream>>>(args)` launches into
 * `(kb_emu::launch(grid, block, smem, stream, "k") % k)(args)`.
 *
 * What it checks, beyond the numbers: block and warp barriers are real
 * (a thread runs until it waits, threads of a block run in turn), so a
 * missing __syncthreads/__syncwarp shows as wrong results; a warp collective
 * (shuffle, mma.sync) that not all of its lanes reach, or a barrier mismatch, is
 * reported as a deadlock or divergence and aborts with the kernel's name;
 * launch limits (threads per block, dynamic shared memory over 48 KiB
 * without cudaFuncSetAttribute) fail as on a GPU. What it does not check:
 * speed, the hardware's exact rounding of tensor-core sums, memory-model
 * subtleties beyond barrier order. The build: cmake -DKB_CUDA_EMU=ON
 * (tests/cuda_emu/README.md). */
#ifndef KB_CUDA_EMU_H
#define KB_CUDA_EMU_H

/* Block-shared variables: blocks run one at a time, so a function's static
 * storage is exactly one block's shared memory (refilled with NaN bits for
 * each block: kb_emu::shared_static). Defined before the CUDA headers, which
 * then keep it. */
#define __shared__ static
#define __launch_bounds__(...)

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

namespace kb_emu {

struct thread_state {
    uint3 tid, bid;
    dim3 bdim, gdim;
};

/* The running CUDA thread (fails loudly outside a kernel). */
thread_state *current();
/* The launch's dynamic shared memory (extern __shared__ arrays). */
void *dynamic_smem();
/* A static __shared__ array's declaration reached (rewrite_launches.pl adds
 * the call): the block's first thread there fills it with NaN bits, as a new
 * block's shared memory holds garbage on a GPU, not the last block's values. */
void shared_static(void *p, size_t bytes);
/* The same, giving the block's copy of the array: under ThreadSanitizer each
 * block gets its own (as on a GPU), so that TSan does not take two blocks'
 * use of one function static for a race. */
void *shared_static_at(void *p, size_t bytes);
template <class T> T *block_copy(T *decl) { return (T *)shared_static_at(decl, sizeof(T)); }
/* 1 when p .. p+bytes lies in the block's shared memory (dynamic, or a
 * static array already reached). */
bool in_shared(const void *p, size_t bytes);
/* __syncthreads at `site` (file:line): every thread of the block that has not
 * returned must wait at the same one (the programming guide: a barrier in
 * conditional code only if the condition is the same across the block). */
void sync_block(const char *site);
/* The first statement of a kernel declared with __launch_bounds__(max, ...)
 * (rewrite_launches.pl adds it): a block of more than max threads aborts. */
void launch_bounds(unsigned max, const char *kernel);
/* A warp collective: every lane of mask must reach one with the same `what`. */
void sync_warp(unsigned mask, const char *what);
unsigned lane_id();
/* 32 slots of 16 bytes, the current warp's exchange area for shuffles. */
unsigned char *warp_slots();
[[noreturn]] void trap(const char *what);

struct config {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const char *name;
};

/* Runs body(arg) as every thread of the grid; launch errors are kept for
 * cudaGetLastError as on a GPU. */
void run_grid(const config &c, const void *kernel, void (*body)(void *), void *arg);
/* Aborts unless p is null or points into a cudaMalloc'd block (a kernel
 * given a host pointer would fault on a GPU). */
void check_kernel_pointer(const config &c, int index, const void *p);

template <class T> void check_argument(const config &c, int index, const T &v) {
    if constexpr (std::is_pointer<T>::value) check_kernel_pointer(c, index, (const void *)v);
}
template <class... P> struct kernel_launch {
    config c;
    void (*k)(P...);
    template <class... A> void operator()(A &&...a) const {
        struct pack {
            void (*k)(P...);
            std::tuple<P...> args; /* the parameters, converted as a launch converts them */
        } p{k, std::tuple<P...>(std::forward<A>(a)...)};
        int index = 0;
        std::apply([&](const auto &...v) { (check_argument(c, index++, v), ...); }, p.args);
        run_grid(c, (const void *)k,
                 [](void *v) {
                     pack *q = (pack *)v;
                     std::tuple<P...> mine = q->args; /* each thread its own copy, as kernel parameters are */
                     std::apply(q->k, mine);
                 },
                 &p);
    }
};

inline config launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const char *name) {
    return config{grid, block, smem, stream, name};
}
inline config launch(dim3 grid, dim3 block, const char *name) { return config{grid, block, 0, 0, name}; }
inline config launch(dim3 grid, dim3 block, size_t smem, const char *name) { return config{grid, block, smem, 0, name}; }

template <class... P> kernel_launch<P...> operator%(const config &c, void (*k)(P...)) { return kernel_launch<P...>{c, k}; }

/* Shuffle: every lane deposits v, then reads lane src's. A src outside the
 * mask gives NaN bits (the programming guide: a value read from a thread not
 * taking part in the shuffle is undefined), not whatever that lane last left. */
template <class T> T shuffle_from(unsigned mask, T v, unsigned src, const char *what) {
    static_assert(sizeof(T) <= 16, "shuffle of a value wider than 16 bytes");
    unsigned char *slots = warp_slots();
    std::memcpy(slots + 16 * lane_id(), &v, sizeof v);
    sync_warp(mask, what);
    T r; /* a lane outside the mask: its slot is not read (under TSan that would be a race with its writer) */
    if (mask >> (src & 31) & 1u) std::memcpy(&r, slots + 16 * (src & 31), sizeof r);
    else std::memset(&r, 0xff, sizeof r);
    sync_warp(mask, what); /* nobody overwrites a slot before every lane has read */
    std::memset(slots + 16 * lane_id(), 0xff, 16); /* a later read of a lane outside the mask gets NaN bits */
    return r;
}

/* Every lane's n bytes (mine) into all[32][n], lane order, through the
 * warp's 16-byte slots: a collective like a shuffle, in rounds of 16 bytes. */
inline void gather_warp(unsigned mask, const void *mine, size_t n, unsigned char *all, const char *what) {
    unsigned char *slots = warp_slots();
    for (size_t at = 0; at < n; at += 16) {
        size_t len = n - at < 16 ? n - at : 16;
        std::memcpy(slots + 16 * lane_id(), (const unsigned char *)mine + at, len);
        sync_warp(mask, what);
        for (unsigned l = 0; l < 32; l++) std::memcpy(all + l * n + at, slots + 16 * l, len);
        sync_warp(mask, what);
        std::memset(slots + 16 * lane_id(), 0xff, 16);
    }
}

inline float bf16_bits_to_float(uint32_t h) {
    uint32_t u = (h & 0xffffu) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, d = a b + c, with the
 * PTX ISA's fragment layouts (lane = 4 g + t): A (16x16) a0 (g, 2t..2t+1),
 * a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); B (16x8) b0 (k 2t..2t+1,
 * n g), b1 (k 2t+8.., n g); C/D (16x8) c0 c1 (g, 2t and 2t+1), c2 c3 (g+8,
 * ...). A 32-bit register holds two bf16, the lower k (or n) in its low half.
 * Products exact, summed in double, rounded once (the tensor cores' order
 * and rounding of the sum differ in the last bits). */
inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    struct frag {
        uint32_t a[4], b[2];
        float c[4];
    } mine, all[32];
    std::memcpy(mine.a, a, sizeof mine.a), std::memcpy(mine.b, b, sizeof mine.b), std::memcpy(mine.c, c, sizeof mine.c);
    gather_warp(0xffffffffu, &mine, sizeof mine, (unsigned char *)all, "mma.sync m16n8k16");
    auto A = [&](int r, int k) {
        uint32_t w = all[(r % 8) * 4 + (k % 8) / 2].a[(r / 8) + 2 * (k / 8)];
        return bf16_bits_to_float(k % 2 ? w >> 16 : w);
    };
    auto B = [&](int k, int n) {
        uint32_t w = all[n * 4 + (k % 8) / 2].b[k / 8];
        return bf16_bits_to_float(k % 2 ? w >> 16 : w);
    };
    auto C = [&](int r, int n) { return all[(r % 8) * 4 + n / 2].c[2 * (r / 8) + n % 2]; };
    unsigned g = lane_id() / 4, t = lane_id() % 4;
    for (int i = 0; i < 4; i++) {
        int r = (int)g + 8 * (i / 2), n = 2 * (int)t + i % 2;
        double s = 0.0;
        for (int k = 0; k < 16; k++) s += (double)A(r, k) * (double)B(k, n);
        d[i] = (float)(s + (double)C(r, n));
    }
}

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane l names row l % 8
 * of 8 x 8 matrix l / 8 (16 bytes of shared memory, 16-byte aligned); r[i]
 * gets matrix i's (row l/4, columns 2(l%4) and 2(l%4)+1), or with .trans its
 * (rows 2(l%4) and 2(l%4)+1, column l/4), the first in the low half. Memory
 * is read when the whole warp has arrived, as the instruction reads it. */
inline void ldmatrix_x4(uint32_t r[4], const void *row, bool trans) {
    const char *what = trans ? "ldmatrix.trans" : "ldmatrix";
    if ((uintptr_t)row % 16 || !in_shared(row, 16))
        trap("ldmatrix: a row address not 16-byte aligned or not in shared memory");
    unsigned char *slots = warp_slots();
    unsigned l = lane_id();
    std::memcpy(slots + 16 * l, &row, sizeof row);
    sync_warp(0xffffffffu, what);
    /* every lane reads before any leaves the collective: no lane's later
     * store can reach another's load */
    auto at = [&](int m, int rr, int c) {
        const unsigned char *p;
        uint16_t v;
        std::memcpy(&p, slots + 16 * (8 * m + rr), sizeof p);
        std::memcpy(&v, p + 2 * c, 2);
        return (uint32_t)v;
    };
    for (int i = 0; i < 4; i++) {
        int a = trans ? (int)(2 * (l % 4)) : (int)(l / 4), b = trans ? (int)(l / 4) : (int)(2 * (l % 4));
        r[i] = trans ? at(i, a, b) | at(i, a + 1, b) << 16 : at(i, a, b) | at(i, a, b + 1) << 16;
    }
    sync_warp(0xffffffffu, what);
    std::memset(slots + 16 * l, 0xff, 16);
}

} // namespace kb_emu

/* The runtime's C++ overloads (cuda_runtime.h declares them for nvcc only). */
template <class T> static inline cudaError_t cudaFuncSetAttribute(T *f, cudaFuncAttribute attr, int value) {
    return cudaFuncSetAttribute((const void *)f, attr, value);
}
template <class T> static inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, T *f) {
    return cudaFuncGetAttributes(a, (const void *)f);
}

#define threadIdx (kb_emu::current()->tid)
#define blockIdx (kb_emu::current()->bid)
#define blockDim (kb_emu::current()->bdim)
#define gridDim (kb_emu::current()->gdim)
#define warpSize 32

#define KB_EMU_STR2(x) #x
#define KB_EMU_STR(x) KB_EMU_STR2(x)
/* rewrite_launches.pl turns `__shared__ T name[N];` into
 * `__shared__ T KB_EMU_SHARED_NAME(name)[N]; KB_EMU_SHARED_STATIC(name)`: the
 * function static itself, or under ThreadSanitizer a reference `name` to the
 * block's copy of it. */
#if defined(__SANITIZE_THREAD__)
#define KB_EMU_SHARED_NAME(n) n##_kb_emu_decl
#define KB_EMU_SHARED_STATIC(n) auto &n = *kb_emu::block_copy(&n##_kb_emu_decl);
#else
#define KB_EMU_SHARED_NAME(n) n
#define KB_EMU_SHARED_STATIC(n) kb_emu::shared_static(n, sizeof n);
#endif
#define __syncthreads() kb_emu::sync_block(__FILE__ ":" KB_EMU_STR(__LINE__))
static inline void __syncwarp(unsigned mask = 0xffffffffu) { kb_emu::sync_warp(mask, "__syncwarp"); }
[[noreturn]] static inline void __trap() { kb_emu::trap("__trap() in a kernel"); }

template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    unsigned me = kb_emu::lane_id(), src = me ^ (unsigned)lane_mask;
    if (src / (unsigned)width > me / (unsigned)width) src = me; /* a later group: the caller's own value (CUDA) */
    return kb_emu::shuffle_from(mask, v, src, "__shfl_xor_sync");
}
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    unsigned me = kb_emu::lane_id(), base = me - me % (unsigned)width;
    return kb_emu::shuffle_from(mask, v, base + (unsigned)src_lane % (unsigned)width, "__shfl_sync");
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    unsigned me = kb_emu::lane_id(), src = me + delta;
    if (src / (unsigned)width != me / (unsigned)width) src = me;
    return kb_emu::shuffle_from(mask, v, src, "__shfl_down_sync");
}

/* Correctly rounded single and double arithmetic. The emulated .cu files are
 * compiled as nvcc compiles device code, contracting a*b+c into FMAs
 * (-mfma -ffp-contract=fast, cuda_emu.cmake); these intrinsics never are, as
 * on a GPU: the empty asm statements keep GCC from fusing them. */
#define KB_EMU_DEVICE 1
#define KB_EMU_OPAQUE(x) __asm__("" : "+x"(x))
static inline float __fadd_rn(float a, float b) { KB_EMU_OPAQUE(a); KB_EMU_OPAQUE(b); float r = a + b; KB_EMU_OPAQUE(r); return r; }
static inline float __fsub_rn(float a, float b) { KB_EMU_OPAQUE(a); KB_EMU_OPAQUE(b); float r = a - b; KB_EMU_OPAQUE(r); return r; }
static inline float __fmul_rn(float a, float b) { KB_EMU_OPAQUE(a); KB_EMU_OPAQUE(b); float r = a * b; KB_EMU_OPAQUE(r); return r; }
static inline float __fdiv_rn(float a, float b) { KB_EMU_OPAQUE(a); KB_EMU_OPAQUE(b); float r = a / b; KB_EMU_OPAQUE(r); return r; }
static inline float __fsqrt_rn(float a) { return std::sqrt(a); }
static inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
static inline float __frcp_rn(float a) { KB_EMU_OPAQUE(a); float r = 1.0f / a; KB_EMU_OPAQUE(r); return r; }
static inline double __dadd_rn(double a, double b) { KB_EMU_OPAQUE(a); KB_EMU_OPAQUE(b); double r = a + b; KB_EMU_OPAQUE(r); return r; }
static inline double __dsub_rn(double a, double b) { KB_EMU_OPAQUE(a); KB_EMU_OPAQUE(b); double r = a - b; KB_EMU_OPAQUE(r); return r; }
static inline double __dmul_rn(double a, double b) { KB_EMU_OPAQUE(a); KB_EMU_OPAQUE(b); double r = a * b; KB_EMU_OPAQUE(r); return r; }
static inline double __ddiv_rn(double a, double b) { KB_EMU_OPAQUE(a); KB_EMU_OPAQUE(b); double r = a / b; KB_EMU_OPAQUE(r); return r; }
static inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
static inline double rsqrt(double a) { return 1.0 / std::sqrt(a); }
static inline float __saturatef(float a) { return a < 0.0f ? 0.0f : a > 1.0f ? 1.0f : a; }
static inline unsigned __float_as_uint(float a) { unsigned u; std::memcpy(&u, &a, 4); return u; }
static inline float __uint_as_float(unsigned u) { float a; std::memcpy(&a, &u, 4); return a; }
static inline int __float_as_int(float a) { int u; std::memcpy(&u, &a, 4); return u; }
static inline float __int_as_float(int u) { float a; std::memcpy(&a, &u, 4); return a; }
template <class T> static inline T __ldg(const T *p) { return *p; }
/* Device code's integer min/max overloads (host code has std::min/max). */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

#endif
