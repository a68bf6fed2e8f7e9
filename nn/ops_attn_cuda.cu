/* Fused bf16 attention on tensor cores (nn/ops_attn.h), FlashAttention-2's
 * scheme with warp-level mma.sync products (nn/mma_bf16.cuh: m16n8k16, bf16
 * in, fp32 accumulators) whose fragments stay in registers. The arithmetic is
 * the reference's (nn/ops_attn_ref.c).
 *
 * Blocks of 4 warps own 64 rows (queries, or keys in the dk/dv kernel); each
 * warp owns 16 of them and walks the other side in tiles of 64, staged in
 * shared memory as bf16 pairs (32-bit words), row-major, padded to HD
 * columns (32, 64, 80 or 128: the head dimension rounded up; the padding is
 * zero, so it adds nothing to any dot product) and to rows beyond T (zero
 * too; those keys are masked out of every softmax, those queries never
 * written). Fragments come out of the tiles by ldmatrix, four registers per
 * instruction; a tile that is a product's B operand along its rows (v in
 * p v, q in ds^T q, ...) by ldmatrix.trans, so every tile is read from global
 * memory once.
 *
 *   forward: one pass over the key tiles; scores, running row max and sum
 *            (exp of scores less the running max), and the output
 *            accumulators (rescaled when the max grows) all in registers:
 *            two adjacent 16 x 8 score tiles, rounded to bf16, are the A
 *            fragment of p v. out = o / l, lse = m + log l.
 *   backward: D = rowsum(dout * out); one kernel per key block for dk, dv
 *            (accumulated in registers over all query tiles), one per query
 *            block for dq: no atomics, so every sum has a fixed order. Both
 *            take the other side's 64 rows 32 at a time (fewer live
 *            registers). */
#include "nn/cuda_common.cuh"
#include "nn/mma_bf16.cuh"

extern "C" {
#include "nn/ops_attn.h"
}

#ifdef KB_EMU_DEVICE /* the emulator's host compiler: the GNU spelling */
#define KB_NOINLINE __attribute__((noinline))
#else
#define KB_NOINLINE __noinline__
#endif

namespace {

constexpr int kTile = 64;          /* rows per block and per tile of the other side */
constexpr int kWarps = kTile / 16; /* 16 rows per warp */
constexpr int kThreads = 32 * kWarps;
constexpr int kHalf = kTile / 2;   /* the backward's sub-tile of the other side */
constexpr unsigned kFull = 0xffffffffu;

/* Shared-memory geometry for a padded head dimension HD, in 32-bit words
 * (two bf16 each): a rows tile is [64][HD] row-major, word (r, c / 2). The 4
 * spare words per row keep every row 16-byte aligned (ldmatrix) and make
 * the 8 rows one ldmatrix phase reads fall in 32 different banks. */
template <int HD> struct geom {
    static constexpr int ldr = HD / 2 + 4;
    static constexpr size_t rows = size_t(kTile) * ldr * 4;
    static constexpr size_t vec = size_t(kTile) * 4; /* 64 floats (the dk/dv kernel's lse and D) */
};

__device__ __forceinline__ int lane_g() { return (threadIdx.x % 32) / 4; }
__device__ __forceinline__ int lane_t() { return threadIdx.x % 4; }

/* A vector load (the caller checked the alignment; the emulator checks it again). */
template <class V, class T> __device__ __forceinline__ V load_vec(const T *p) {
#ifdef KB_EMU_DEVICE
    if ((uintptr_t)p % sizeof(V)) kb_emu::trap("misaligned vector load (a GPU faults)");
    V v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    return *reinterpret_cast<const V *>(p);
#endif
}
/* 16 bytes of a row (4 fp32 or 8 bf16 values, or zeros when !in) to the
 * tile's words w: fp32 rounded to bf16 pairs, bf16 stored as it is (the
 * pairs path's words, but for a NaN's payload, which that path makes the
 * canonical NaN). */
__device__ __forceinline__ void copy16(uint32_t *w, const float *p, bool in) {
    float4 f = in ? load_vec<float4>(p) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    *reinterpret_cast<uint2 *>(w) = make_uint2(kb_pack_bf16x2(f.x, f.y), kb_pack_bf16x2(f.z, f.w));
}
__device__ __forceinline__ void copy16(uint32_t *w, const uint16_t *p, bool in) {
    *reinterpret_cast<uint4 *>(w) = in ? load_vec<uint4>(p) : make_uint4(0u, 0u, 0u, 0u);
}

/* Rows row0 .. row0+63 of one head (columns 0 .. hd-1 of rows `stride`
 * elements apart; fp32 or bf16 bits) into a rows tile, zero past T and hd
 * (a bf16 source keeps its values: widened, then rounded, or copied). With
 * vec (the host's rows_vec: 16-byte aligned rows, hd a multiple of 16
 * bytes) 16 bytes per load, the same words. */
template <int HD, typename S>
__device__ KB_NOINLINE void load_rows_pairs(uint32_t *dst, const S *src, int64_t stride, int row0, int T, int hd);

template <int HD, typename S>
__device__ void load_rows(uint32_t *dst, const S *src, int64_t stride, int row0, int T, int hd, bool vec) {
    if (!vec) return load_rows_pairs<HD>(dst, src, stride, row0, T, hd);
    constexpr int V = 16 / sizeof(S); /* values per load; HD is a multiple of 8 */
    for (int i = threadIdx.x; i < kTile * HD / V; i += kThreads) {
        int r = i / (HD / V), c = V * (i % (HD / V)), t = row0 + r;
        bool in = t < T && c < hd; /* t * stride + c < T * 3d fits an int (the entry points check) */
        copy16(dst + r * geom<HD>::ldr + c / 2, src + (in ? t * (int)stride + c : 0), in);
    }
}

/* The same two values at a time, any alignment and head dimension (a call:
 * the rare path keeps its registers out of the kernels' budget). */
template <int HD, typename S>
__device__ KB_NOINLINE void load_rows_pairs(uint32_t *dst, const S *src, int64_t stride, int row0, int T, int hd) {
    for (int i = threadIdx.x; i < kTile * HD / 2; i += kThreads) {
        int r = i / (HD / 2), c = 2 * (i % (HD / 2)), t = row0 + r;
        float lo = t < T && c < hd ? kb_elem_f32(src[(int64_t)t * stride + c]) : 0.0f;
        float hi = t < T && c + 1 < hd ? kb_elem_f32(src[(int64_t)t * stride + c + 1]) : 0.0f;
        dst[r * geom<HD>::ldr + c / 2] = kb_pack_bf16x2(lo, hi);
    }
}

/* The A fragment of rows row0 .. row0+15, columns k0 .. k0+15 of a rows
 * tile with ld words per row: lane l names row l%8 + 8((l/8)%2), column
 * k0 + 8(l/16), so the four matrices are a0 .. a3. */
__device__ __forceinline__ void frag_a(uint32_t (&a)[4], const uint32_t *tile, int ld, int row0, int k0) {
    int l = threadIdx.x % 32;
    kb_ldmatrix_x4(a, tile + (row0 + l % 8 + 8 * (l / 8 % 2)) * ld + (k0 + 8 * (l / 16)) / 2);
}

/* The B fragments of n = n0 .. n0+7 (b[0], b[1]) and n0+8 .. n0+15 (b[2],
 * b[3]), k = k0 .. k0+15, from a tile that holds B transposed ([n][k], ld
 * words per n: K in q k^T). */
__device__ __forceinline__ void frag_b2(uint32_t (&b)[4], const uint32_t *tile, int ld, int n0, int k0) {
    int l = threadIdx.x % 32;
    kb_ldmatrix_x4(b, tile + (n0 + l % 8 + 8 * (l / 16)) * ld + (k0 + 8 * (l / 8 % 2)) / 2);
}

/* The same for B stored as it is ([k][n]: V in p v), rows k0 .. k0+15 and
 * columns n0 .. n0+15 of a rows tile, by ldmatrix.trans. */
__device__ __forceinline__ void frag_b2_trans(uint32_t (&b)[4], const uint32_t *tile, int ld, int k0, int n0) {
    int l = threadIdx.x % 32;
    kb_ldmatrix_x4_trans(b, tile + (k0 + l % 8 + 8 * (l / 8 % 2)) * ld + (n0 + 8 * (l / 16)) / 2);
}

/* s[j], s[j+1] += a times the two B fragments in b. */
__device__ __forceinline__ void mma_pair(float (&s0)[4], float (&s1)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[4]) {
    const uint32_t lo[2] = {b[0], b[1]}, hi[2] = {b[2], b[3]};
    kb_mma_bf16_16816(s0, a, lo);
    kb_mma_bf16_16816(s1, a, hi);
}

template <int N> __device__ void zero_frags(float (&f)[N][4]) {
#pragma unroll
    for (int j = 0; j < N; j++) f[j][0] = f[j][1] = f[j][2] = f[j][3] = 0.0f;
}

/* s (16 x 8N, N fragments) += a B^T over columns k .. k+15: a the A fragment
 * of those columns, B rows b0 .. b0+8N-1 of a rows tile. */
template <int HD, int N>
__device__ void scores_step(float (&s)[N][4], const uint32_t (&a)[4], const uint32_t *B, int b0, int k) {
#pragma unroll
    for (int j = 0; j < N; j += 2) {
        uint32_t b[4];
        frag_b2(b, B, geom<HD>::ldr, b0 + 8 * j, k);
        mma_pair(s[j], s[j + 1], a, b);
    }
}

/* s (16 x 8N, as N fragments) = A B^T over the HD columns: A rows a0 .. a0+15
 * of one rows tile (its fragments read per 16 columns: fewer live
 * registers), B rows b0 .. b0+8N-1 of another. */
template <int HD, int N>
__device__ void warp_scores(float (&s)[N][4], const uint32_t *A, int a0, const uint32_t *B, int b0) {
    zero_frags(s);
#pragma unroll
    for (int k = 0; k < HD; k += 16) {
        uint32_t a[4];
        frag_a(a, A, geom<HD>::ldr, a0, k);
        scores_step<HD>(s, a, B, b0, k);
    }
}

/* The same with A's fragments already in registers (the forward's q, read
 * once instead of once per key tile), a[k] for columns 16k .. 16k+15. */
template <int HD, int N>
__device__ void warp_scores(float (&s)[N][4], const uint32_t (&a)[HD / 16][4], const uint32_t *B, int b0) {
    zero_frags(s);
#pragma unroll
    for (int k = 0; k < HD / 16; k++) scores_step<HD>(s, a[k], B, b0, 16 * k);
}

/* acc (16 x HD, HD/8 fragments) += P M: P 16 x 8N as N fp32 fragments,
 * rounded to bf16 here (two adjacent fragments are one A fragment), M rows
 * m0 .. m0+8N-1 of a rows tile. */
template <int HD, int N>
__device__ void warp_accumulate(float (&acc)[HD / 8][4], const float (&p)[N][4], const uint32_t *M, int m0) {
#pragma unroll
    for (int j = 0; j < N; j += 2) {
        uint32_t a[4] = {kb_pack_bf16x2(p[j][0], p[j][1]), kb_pack_bf16x2(p[j][2], p[j][3]),
                         kb_pack_bf16x2(p[j + 1][0], p[j + 1][1]), kb_pack_bf16x2(p[j + 1][2], p[j + 1][3])};
#pragma unroll
        for (int n = 0; n < HD / 8; n += 2) {
            uint32_t b[4];
            frag_b2_trans(b, M, geom<HD>::ldr, m0 + 8 * j, 8 * n);
            mma_pair(acc[n], acc[n + 1], a, b);
        }
    }
}

/* A warp's 16 x hd result (rows row0 + g and row0 + g + 8 of this lane),
 * times mul, to the rows < T of dst (`stride` elements apart; fp32, or bf16
 * bits rounded by kb_store_elem). */
template <int HD, typename O>
__device__ void store_rows(const float (&acc)[HD / 8][4], float mul, O *dst, int64_t stride, int row0, int T, int hd) {
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int r = row0 + lane_g() + 8 * (e / 2), c = 8 * n + 2 * lane_t() + e % 2;
            if (r < T && c < hd) kb_store_elem(dst + (int64_t)r * stride + c, __fmul_rn(acc[n][e], mul));
        }
}

/* Max and sum over the 4 lanes (t) that hold one row; (a + b) + (c + d) in
 * every lane, so all four get the same bits. */
__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(kFull, v, 1));
    return fmaxf(v, __shfl_xor_sync(kFull, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v = __fadd_rn(v, __shfl_xor_sync(kFull, v, 1));
    return __fadd_rn(v, __shfl_xor_sync(kFull, v, 2));
}

/* The forward's running softmax of this lane's two rows (g, g + 8). */
struct online_softmax {
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    /* s: one tile's raw scores (key k0 + 8j + 2t + e%2, row g + 8(e/2)) in,
     * exp(s * scale - m) out with m the new running max; l and o are rescaled
     * to it. Each lane sums its columns in order (j, then e), then the four
     * lanes of a row as quad_sum does: the reference's order. */
    template <int N, int NO> __device__ void tile(float (&s)[N][4], float (&o)[NO][4], int k0, int T, float scale) {
        float mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f}, alpha[2];
#pragma unroll
        for (int j = 0; j < N; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                bool key_ok = k0 + 8 * j + 2 * lane_t() + e % 2 < T;
                s[j][e] = key_ok ? __fmul_rn(s[j][e], scale) : -INFINITY;
                mx[e / 2] = fmaxf(mx[e / 2], s[j][e]);
            }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float m_new = fmaxf(m[i], quad_max(mx[i]));
            alpha[i] = expf(__fsub_rn(m[i], m_new));
            m[i] = m_new;
        }
#pragma unroll
        for (int j = 0; j < N; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[j][e] = expf(__fsub_rn(s[j][e], m[e / 2]));
                sum[e / 2] = __fadd_rn(sum[e / 2], s[j][e]);
            }
#pragma unroll
        for (int i = 0; i < 2; i++) l[i] = __fadd_rn(__fmul_rn(l[i], alpha[i]), quad_sum(sum[i]));
#pragma unroll
        for (int n = 0; n < NO; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[n][e] = __fmul_rn(o[n][e], alpha[e / 2]);
    }

    /* o / l, and the rows' log-sum-exp m + log l. */
    template <int NO> __device__ void finish(float (&o)[NO][4], float (&lse)[2]) {
#pragma unroll
        for (int i = 0; i < 2; i++) lse[i] = __fadd_rn(m[i], logf(l[i]));
#pragma unroll
        for (int n = 0; n < NO; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[n][e] = __fdiv_rn(o[n][e], l[e / 2]);
    }
};

struct attn_args {
    const float *qkv;  /* [B, T, 3d] */
    const uint16_t *qkv16; /* the same as bf16 (the *_x16 entry points): read instead of qkv when set */
    const float *dout; /* [B, T, d] */
    const uint16_t *dout16; /* the same as bf16 (kb_attn_fused_bwd_x16, with qkv16): read instead of dout when set */
    const float *out;  /* [B, T, d] */
    const uint16_t *out16; /* the same as bf16 (kb_attn_fused_bwd_x16): read instead of out when set */
    float *res;        /* out (forward) or dqkv (backward) */
    uint16_t *res16;   /* the same as bf16 (the *_x16 entry points): written instead of res when set */
    float *lse;        /* [B, H, T]: written by the forward, read by the backward */
    float *delta;      /* [B, H, T]: D, written by attn_delta_kernel */
    int T, d, H, hd;
    float scale;
    int qkv_vec, dout_vec; /* 1: qkv's (dout's) head rows load 16 bytes at a time (rows_vec) */
};

/* A warp's result to the kernel's output at element offset `at`: res16
 * (bf16) when the entry point asked for it, res otherwise. */
template <int HD>
__device__ void store_result(const float (&acc)[HD / 8][4], float mul, const attn_args &a, int64_t at,
                             int64_t stride, int row0) {
    if (a.res16) store_rows<HD>(acc, mul, a.res16 + at, stride, row0, a.T, a.hd);
    else store_rows<HD>(acc, mul, a.res + at, stride, row0, a.T, a.hd);
}

/* The qkv input as the kernels read it: fp32, or bf16 bits (qkv16). */
template <typename Q> __device__ const Q *qkv_of(const attn_args &a);
template <> __device__ const float *qkv_of<float>(const attn_args &a) { return a.qkv; }
template <> __device__ const uint16_t *qkv_of<uint16_t>(const attn_args &a) { return a.qkv16; }
/* dout likewise: bf16 (dout16) exactly when qkv is (the *_x16 entry point). */
template <typename Q> __device__ const Q *dout_of(const attn_args &a);
template <> __device__ const float *dout_of<float>(const attn_args &a) { return a.dout; }
template <> __device__ const uint16_t *dout_of<uint16_t>(const attn_args &a) { return a.dout16; }

/* ---------------------------------------------------------------- forward */

template <int HD, typename Q>
__global__ void __launch_bounds__(kThreads) attn_fwd_kernel(attn_args a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    extern __shared__ __align__(128) unsigned char smem[];
    using g = geom<HD>;
    uint32_t *Qs = (uint32_t *)smem, *Ks = (uint32_t *)(smem + g::rows), *Vs = (uint32_t *)(smem + 2 * g::rows);
    int warp = threadIdx.x / 32, b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile, T = a.T, d = a.d;
    const Q *base = qkv_of<Q>(a) + (int64_t)b * T * 3 * d + h * a.hd;

    load_rows<HD>(Qs, base, 3 * d, q0, T, a.hd, a.qkv_vec);
    __syncthreads();
    uint32_t qa[HD / 16][4]; /* the warp's 16 queries as A fragments, for every key tile */
#pragma unroll
    for (int k = 0; k < HD / 16; k++) frag_a(qa[k], Qs, g::ldr, warp * 16, 16 * k);
    online_softmax sm;
    float o[HD / 8][4];
    zero_frags(o);
    for (int k0 = 0; k0 < T; k0 += kTile) {
        __syncthreads(); /* the last tile's readers done */
        load_rows<HD>(Ks, base + d, 3 * d, k0, T, a.hd, a.qkv_vec);
        load_rows<HD>(Vs, base + 2 * d, 3 * d, k0, T, a.hd, a.qkv_vec);
        __syncthreads();
        float s[kTile / 8][4];
        warp_scores<HD, kTile / 8>(s, qa, Ks, 0);
        sm.tile(s, o, k0, T, a.scale);
        warp_accumulate<HD, kTile / 8>(o, s, Vs, 0);
    }
    float lse[2];
    sm.finish(o, lse);
    for (int i = 0; i < 2; i++) {
        int q = q0 + warp * 16 + lane_g() + 8 * i;
        if (lane_t() == 0 && q < T) a.lse[((int64_t)b * a.H + h) * T + q] = lse[i];
    }
    store_result<HD>(o, 1.0f, a, (int64_t)b * T * d + h * a.hd, d, q0 + warp * 16);
#else
    __trap(); /* built for a GPU without bf16 tensor cores: kb_attn_fused_cuda_allowed refuses those */
#endif
}

/* --------------------------------------------------------------- backward */

/* s += dout[c] out[c] for 4 columns, in order; out fp32 or bf16 bits. */
__device__ __forceinline__ float dot4(float s, float4 g, float4 o) {
    s = __fadd_rn(s, __fmul_rn(g.x, o.x)), s = __fadd_rn(s, __fmul_rn(g.y, o.y));
    s = __fadd_rn(s, __fmul_rn(g.z, o.z));
    return __fadd_rn(s, __fmul_rn(g.w, o.w));
}
__device__ __forceinline__ float4 widen4(const float *p) { return load_vec<float4>(p); }
__device__ __forceinline__ float4 widen4(const uint16_t *p) {
    uint2 w = load_vec<uint2>(p); /* four bf16, the first in the low half of w.x */
    return make_float4(kb_sc_bf16_to_f32((uint16_t)(w.x & 0xffffu)), kb_sc_bf16_to_f32((uint16_t)(w.x >> 16)),
                       kb_sc_bf16_to_f32((uint16_t)(w.y & 0xffffu)), kb_sc_bf16_to_f32((uint16_t)(w.y >> 16)));
}

/* D[b, h, i] = sum_c dout * out over head h's columns of row i, in column
 * order; dout and out both fp32 or both bf16 (widened). With hd and d
 * multiples of 4 (every row start 16-byte aligned for fp32, 8 for bf16)
 * four columns per load, the same sum. */
template <typename O> __global__ void attn_delta_kernel(attn_args a, const O *out, int64_t B, int vec4) {
    const O *dout = dout_of<O>(a);
    int64_t n = B * a.H * a.T;
    KB_GRID_STRIDE(i, n) {
        int64_t q = i % a.T, h = (i / a.T) % a.H, b = i / ((int64_t)a.T * a.H);
        int64_t at = (b * a.T + q) * a.d + h * a.hd;
        float s = 0.0f;
        int c = 0;
        if (vec4)
            for (; c < a.hd; c += 4) s = dot4(s, widen4(dout + at + c), widen4(out + at + c));
        for (; c < a.hd; c++) s = __fadd_rn(s, __fmul_rn(kb_elem_f32(dout[at + c]), kb_elem_f32(out[at + c])));
        a.delta[i] = s;
    }
}

/* p = exp(s * scale - lse) where `ok`, else 0; ds = p (dp - D): s and dp in,
 * p and ds out, in place. */
__device__ __forceinline__ void probs_and_ds(float &s, float &dp, bool ok, float scale, float lse, float D) {
    float p = ok ? expf(__fsub_rn(__fmul_rn(s, scale), lse)) : 0.0f;
    dp = __fmul_rn(p, __fsub_rn(dp, D));
    s = p;
}

/* One block per 64 keys: dv = sum over queries of p^T dout, dk = scale sum ds^T q.
 * Three blocks per multiprocessor up to HD 80: ptxas then fits it in 168
 * registers without spilling (190 unbounded at HD 64, two blocks per SM). */
template <int HD, typename Q>
__global__ void __launch_bounds__(kThreads, HD <= 80 ? 3 : 1) attn_dkv_kernel(attn_args a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    extern __shared__ __align__(128) unsigned char smem[];
    using g = geom<HD>;
    uint32_t *Ks = (uint32_t *)smem, *Vs = (uint32_t *)(smem + g::rows), *Qs = (uint32_t *)(smem + 2 * g::rows);
    uint32_t *dOs = (uint32_t *)(smem + 3 * g::rows);
    float *lse_s = (float *)(smem + 4 * g::rows), *D_s = lse_s + kTile;
    int warp = threadIdx.x / 32, b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * kTile, T = a.T, d = a.d;
    const Q *base = qkv_of<Q>(a) + (int64_t)b * T * 3 * d + h * a.hd;
    /* at HD 80 the kernel is at its 168-register cap (3 blocks per SM): the
     * 16-byte loads would spill a word there, so it loads value pairs */
    const bool qkv_vec = HD != 80 && a.qkv_vec, dout_vec = HD != 80 && a.dout_vec;
    const Q *gout = dout_of<Q>(a) + (int64_t)b * T * d + h * a.hd;
    const float *lse = a.lse + ((int64_t)b * a.H + h) * T, *delta = a.delta + ((int64_t)b * a.H + h) * T;

    load_rows<HD>(Ks, base + d, 3 * d, k0, T, a.hd, qkv_vec);
    load_rows<HD>(Vs, base + 2 * d, 3 * d, k0, T, a.hd, qkv_vec);
    float dk[HD / 8][4], dv[HD / 8][4];
    zero_frags(dk);
    zero_frags(dv);
    for (int q0 = 0; q0 < T; q0 += kTile) {
        __syncthreads();
        load_rows<HD>(Qs, base, 3 * d, q0, T, a.hd, qkv_vec);
        load_rows<HD>(dOs, gout, d, q0, T, a.hd, dout_vec);
        for (int i = threadIdx.x; i < kTile; i += kThreads) {
            lse_s[i] = q0 + i < T ? lse[q0 + i] : 0.0f;
            D_s[i] = q0 + i < T ? delta[q0 + i] : 0.0f;
        }
        __syncthreads();
        for (int half = 0; half < kTile; half += kHalf) {
            float p[kHalf / 8][4], ds[kHalf / 8][4];
            warp_scores<HD, kHalf / 8>(p, Ks, warp * 16, Qs, half);   /* s^T: 16 keys x 32 queries */
            warp_scores<HD, kHalf / 8>(ds, Vs, warp * 16, dOs, half); /* dp^T = v dout^T */
#pragma unroll
            for (int j = 0; j < kHalf / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int key = k0 + warp * 16 + lane_g() + 8 * (e / 2), qi = half + 8 * j + 2 * lane_t() + e % 2;
                    probs_and_ds(p[j][e], ds[j][e], key < T && q0 + qi < T, a.scale, lse_s[qi], D_s[qi]);
                }
            warp_accumulate<HD, kHalf / 8>(dv, p, dOs, half);
            warp_accumulate<HD, kHalf / 8>(dk, ds, Qs, half);
        }
    }
    int64_t at = (int64_t)b * T * 3 * d + h * a.hd;
    store_result<HD>(dk, a.scale, a, at + d, 3 * d, k0 + warp * 16);
    store_result<HD>(dv, 1.0f, a, at + 2 * d, 3 * d, k0 + warp * 16);
#else
    __trap(); /* built for a GPU without bf16 tensor cores: kb_attn_fused_cuda_allowed refuses those */
#endif
}

/* One block per 64 queries: dq = scale sum over keys of ds k. */
template <int HD, typename Q>
__global__ void __launch_bounds__(kThreads) attn_dq_kernel(attn_args a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    extern __shared__ __align__(128) unsigned char smem[];
    using g = geom<HD>;
    uint32_t *Qs = (uint32_t *)smem, *dOs = (uint32_t *)(smem + g::rows), *Ks = (uint32_t *)(smem + 2 * g::rows);
    uint32_t *Vs = (uint32_t *)(smem + 3 * g::rows);
    int warp = threadIdx.x / 32, b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile, T = a.T, d = a.d;
    const Q *base = qkv_of<Q>(a) + (int64_t)b * T * 3 * d + h * a.hd;
    const Q *gout = dout_of<Q>(a) + (int64_t)b * T * d + h * a.hd;
    float lse[2], D[2];
    for (int i = 0; i < 2; i++) {
        int q = q0 + warp * 16 + lane_g() + 8 * i;
        int64_t row = ((int64_t)b * a.H + h) * T + q;
        lse[i] = q < T ? a.lse[row] : 0.0f, D[i] = q < T ? a.delta[row] : 0.0f;
    }

    load_rows<HD>(Qs, base, 3 * d, q0, T, a.hd, a.qkv_vec);
    load_rows<HD>(dOs, gout, d, q0, T, a.hd, a.dout_vec);
    float dq[HD / 8][4];
    zero_frags(dq);
    for (int k0 = 0; k0 < T; k0 += kTile) {
        __syncthreads();
        load_rows<HD>(Ks, base + d, 3 * d, k0, T, a.hd, a.qkv_vec);
        load_rows<HD>(Vs, base + 2 * d, 3 * d, k0, T, a.hd, a.qkv_vec);
        __syncthreads();
        for (int half = 0; half < kTile; half += kHalf) {
            float p[kHalf / 8][4], ds[kHalf / 8][4];
            warp_scores<HD, kHalf / 8>(p, Qs, warp * 16, Ks, half);   /* s: 16 queries x 32 keys */
            warp_scores<HD, kHalf / 8>(ds, dOs, warp * 16, Vs, half); /* dp = dout v^T */
#pragma unroll
            for (int j = 0; j < kHalf / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int q = q0 + warp * 16 + lane_g() + 8 * (e / 2), key = k0 + half + 8 * j + 2 * lane_t() + e % 2;
                    probs_and_ds(p[j][e], ds[j][e], q < T && key < T, a.scale, lse[e / 2], D[e / 2]);
                }
            warp_accumulate<HD, kHalf / 8>(dq, ds, Ks, half);
        }
    }
    store_result<HD>(dq, a.scale, a, (int64_t)b * T * 3 * d + h * a.hd, 3 * d, q0 + warp * 16);
#else
    __trap(); /* built for a GPU without bf16 tensor cores: kb_attn_fused_cuda_allowed refuses those */
#endif
}

/* ---------------------------------------------------------------- launches */

template <int HD> constexpr size_t fwd_smem() { return 3 * geom<HD>::rows; }
template <int HD> constexpr size_t dkv_smem() { return 4 * geom<HD>::rows + 2 * geom<HD>::vec; }
template <int HD> constexpr size_t dq_smem() { return 4 * geom<HD>::rows; }
/* Opts the kernel in to `bytes` of dynamic shared memory (over 48 KiB needs
 * it), then launches it on a (T/64, H, B) grid. */
template <typename K>
int launch(kb_cuda_state *st, const char *op, const char *name, K kernel, size_t bytes, const attn_args &a, int64_t B,
           kb_err *err) {
    KB_CUDA_CHECK(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    dim3 grid((unsigned)((a.T + kTile - 1) / kTile), (unsigned)a.H, (unsigned)B);
    kernel<<<grid, kThreads, bytes, st->stream>>>(a);
    KB_LAUNCH_CHECK(op, name);
    return 0;
}

template <int HD> int fwd_hd(kb_cuda_state *st, const char *op, const attn_args &a, int64_t B, kb_err *err) {
    if (a.qkv16) return launch(st, op, "attn_fwd_kernel", attn_fwd_kernel<HD, uint16_t>, fwd_smem<HD>(), a, B, err);
    return launch(st, op, "attn_fwd_kernel", attn_fwd_kernel<HD, float>, fwd_smem<HD>(), a, B, err);
}

template <int HD, typename Q> int bwd_hd_q(kb_cuda_state *st, const char *op, const attn_args &a, int64_t B,
                                           kb_err *err) {
    if (launch(st, op, "attn_dkv_kernel", attn_dkv_kernel<HD, Q>, dkv_smem<HD>(), a, B, err)) return -1;
    return launch(st, op, "attn_dq_kernel", attn_dq_kernel<HD, Q>, dq_smem<HD>(), a, B, err);
}

template <int HD> int bwd_hd(kb_cuda_state *st, const char *op, const attn_args &a, int64_t B, kb_err *err) {
    return a.qkv16 ? bwd_hd_q<HD, uint16_t>(st, op, a, B, err) : bwd_hd_q<HD, float>(st, op, a, B, err);
}

/* The padded head dimension the kernels are instantiated for. */
int padded_hd(int hd) { return hd <= 32 ? 32 : hd <= 64 ? 64 : hd <= 80 ? 80 : 128; }

attn_args make_args(const float *qkv, int64_t T, int64_t d, int64_t H) {
    attn_args a = {};
    a.qkv = qkv, a.T = (int)T, a.d = (int)d, a.H = (int)H, a.hd = (int)(d / H);
    a.scale = 1.0f / sqrtf((float)a.hd);
    return a;
}

/* 1 when every head row of a [B, T, stride] tensor at p (elem-byte values;
 * a head's columns start at multiples of hd) starts 16-byte aligned and hd
 * values fill whole 16-byte loads: load_rows's vec. */
int rows_vec(const void *p, size_t elem, int64_t stride, int hd) {
    return p && (uintptr_t)p % 16 == 0 && (stride * (int64_t)elem) % 16 == 0 && (hd * elem) % 16 == 0;
}

/* Bytes of shared memory the largest of the kernels for head_dim needs. */
size_t smem_needed(int64_t head_dim) {
    switch (padded_hd((int)head_dim)) {
    case 32: return dkv_smem<32>();
    case 64: return dkv_smem<64>();
    case 80: return dkv_smem<80>();
    default: return dkv_smem<128>();
    }
}

int state_of(kb_ctx *ctx, const char *op, int64_t d, int64_t H, kb_cuda_state **st, kb_err *err) {
    if (kb_cuda_op_state(ctx, op, st, err)) return -1;
    if (!kb_attn_fused_cuda_allowed(ctx, d / H))
        return kb_fail(err, "%s: head dimension %lld needs a GPU of compute capability 8.0 or newer (bf16 tensor "
                            "cores) with %zu bytes of shared memory per block",
                       op, (long long)(d / H), smem_needed(d / H));
    return 0;
}

} // namespace

namespace {

int fwd_any(kb_ctx *ctx, const char *op, float *out, uint16_t *out16, float *lse, const float *qkv,
            const uint16_t *qkv16, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err) {
    kb_cuda_state *st;
    if (state_of(ctx, op, d, H, &st, err)) return -1;
    if ((int64_t)T * 3 * d > INT32_MAX)
        return kb_fail(err, "%s: T=%lld x 3d=%lld too large", op, (long long)T, (long long)(3 * d));
    attn_args a = make_args(qkv, T, d, H);
    a.qkv16 = qkv16, a.res = out, a.res16 = out16, a.lse = lse;
    a.qkv_vec = qkv16 ? rows_vec(qkv16, 2, 3 * d, a.hd) : rows_vec(qkv, 4, 3 * d, a.hd);
    switch (padded_hd(a.hd)) {
    case 32: return fwd_hd<32>(st, op, a, B, err);
    case 64: return fwd_hd<64>(st, op, a, B, err);
    case 80: return fwd_hd<80>(st, op, a, B, err);
    default: return fwd_hd<128>(st, op, a, B, err);
    }
}

/* fp32 (dqkv, dout, out, qkv) or bf16 (dqkv16, dout16, out16, qkv16) throughout. */
int bwd_any(kb_ctx *ctx, const char *op, float *dqkv, uint16_t *dqkv16, float *delta, const float *dout,
            const uint16_t *dout16, const float *out, const uint16_t *out16, const float *qkv, const uint16_t *qkv16,
            const float *lse, int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err) {
    kb_cuda_state *st;
    if (state_of(ctx, op, d, H, &st, err)) return -1;
    if ((int64_t)T * 3 * d > INT32_MAX)
        return kb_fail(err, "%s: T=%lld x 3d=%lld too large", op, (long long)T, (long long)(3 * d));
    attn_args a = make_args(qkv, T, d, H);
    a.dout = dout, a.dout16 = dout16, a.out = out, a.out16 = out16, a.qkv16 = qkv16, a.res = dqkv, a.res16 = dqkv16;
    a.qkv_vec = qkv16 ? rows_vec(qkv16, 2, 3 * d, a.hd) : rows_vec(qkv, 4, 3 * d, a.hd);
    a.dout_vec = dout16 ? rows_vec(dout16, 2, d, a.hd) : rows_vec(dout, 4, d, a.hd);
    a.lse = (float *)lse;
    a.delta = delta;
    /* four columns per load where every row start is aligned for it */
    int vec4 = a.hd % 4 == 0 && a.d % 4 == 0 &&
               (out16 ? (uintptr_t)dout16 % 8 == 0 && (uintptr_t)out16 % 8 == 0
                      : (uintptr_t)dout % 16 == 0 && (uintptr_t)out % 16 == 0);
    if (out16) attn_delta_kernel<uint16_t><<<kb_grid_1d(B * H * T), KB_CUDA_BLOCK, 0, st->stream>>>(a, out16, B, vec4);
    else attn_delta_kernel<float><<<kb_grid_1d(B * H * T), KB_CUDA_BLOCK, 0, st->stream>>>(a, out, B, vec4);
    KB_LAUNCH_CHECK(op, "attn_delta_kernel");
    switch (padded_hd(a.hd)) {
    case 32: return bwd_hd<32>(st, op, a, B, err);
    case 64: return bwd_hd<64>(st, op, a, B, err);
    case 80: return bwd_hd<80>(st, op, a, B, err);
    default: return bwd_hd<128>(st, op, a, B, err);
    }
}

} // namespace

extern "C" int kb_attn_fused_fwd_cuda(kb_ctx *ctx, float *out, float *lse, const float *qkv, int64_t B, int64_t T,
                                      int64_t d, int64_t H, kb_err *err) {
    return fwd_any(ctx, "kb_attn_fused_fwd", out, NULL, lse, qkv, NULL, B, T, d, H, err);
}

extern "C" int kb_attn_fused_fwd_x16_cuda(kb_ctx *ctx, uint16_t *out16, float *lse, const uint16_t *qkv16, int64_t B,
                                          int64_t T, int64_t d, int64_t H, kb_err *err) {
    return fwd_any(ctx, "kb_attn_fused_fwd_x16", NULL, out16, lse, NULL, qkv16, B, T, d, H, err);
}

extern "C" int kb_attn_fused_bwd_cuda(kb_ctx *ctx, float *dqkv, float *delta, const float *dout, const float *out,
                                      const float *qkv, const float *lse, int64_t B, int64_t T, int64_t d, int64_t H,
                                      kb_err *err) {
    return bwd_any(ctx, "kb_attn_fused_bwd", dqkv, NULL, delta, dout, NULL, out, NULL, qkv, NULL, lse, B, T, d, H,
                   err);
}

extern "C" int kb_attn_fused_bwd_x16_cuda(kb_ctx *ctx, uint16_t *dqkv16, float *delta, const uint16_t *dout16,
                                          const uint16_t *out16, const uint16_t *qkv16, const float *lse, int64_t B,
                                          int64_t T, int64_t d, int64_t H, kb_err *err) {
    return bwd_any(ctx, "kb_attn_fused_bwd_x16", NULL, dqkv16, delta, NULL, dout16, NULL, out16, NULL, qkv16, lse, B,
                   T, d, H, err);
}

extern "C" int kb_attn_fused_cuda_allowed(const kb_ctx *ctx, int64_t head_dim) {
    /* bf16 tensor cores, and the shared memory a block may opt in to (227 KiB on
     * H100/H200, 99 KiB on some 8.x parts: too little there for head_dim > 80) */
    return ctx && ctx->device == KB_DEV_CUDA && ctx->cuda && ctx->cuda->cc_major >= 8 && head_dim > 0 &&
           head_dim <= KB_ATTN_FUSED_MAX_HEAD_DIM && smem_needed(head_dim) <= ctx->cuda->smem_optin;
}

/* ------------------------------------------------------ the layout probe */

namespace {

/* One warp: D = A B (16 x 16) for ops_attn.h's probe formulas three ways,
 * into dst[v][16][16]: v = 0 with fragments built in registers by the
 * layouts nn/mma_bf16.cuh documents, v = 1 loaded by the kernels' frag_a and
 * frag_b2 (ldmatrix) from A and B^T in shared memory, v = 2 by frag_a and
 * frag_b2_trans (ldmatrix.trans) from B as it is. */
__global__ void mma_probe_kernel(float *dst) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    constexpr int ld = 12; /* words per row: 16 bf16 and 8 spare, rows 16-byte aligned */
    __shared__ __align__(16) uint32_t As[16 * ld];
    __shared__ __align__(16) uint32_t Bt[16 * ld];
    __shared__ __align__(16) uint32_t Bk[16 * ld];
    int g = lane_g(), t = lane_t();
    for (int i = threadIdx.x; i < 16 * 8; i += 32) {
        int r = i / 8, c = 2 * (i % 8);
        As[r * ld + c / 2] = kb_pack_bf16x2(KB_MMA_PROBE_A(r, c), KB_MMA_PROBE_A(r, c + 1));
        Bt[r * ld + c / 2] = kb_pack_bf16x2(KB_MMA_PROBE_B(c, r), KB_MMA_PROBE_B(c + 1, r)); /* row n, columns k */
        Bk[r * ld + c / 2] = kb_pack_bf16x2(KB_MMA_PROBE_B(r, c), KB_MMA_PROBE_B(r, c + 1)); /* row k, columns n */
    }
    __syncwarp();
    float d[3][2][4] = {};
    uint32_t a[4], b[4];
    for (int i = 0; i < 4; i++) {
        int r = g + 8 * (i % 2), k = 2 * t + 8 * (i / 2);
        a[i] = kb_pack_bf16x2(KB_MMA_PROBE_A(r, k), KB_MMA_PROBE_A(r, k + 1));
    }
    for (int j = 0; j < 2; j++) {
        int n = 8 * j + g;
        uint32_t bj[2] = {kb_pack_bf16x2(KB_MMA_PROBE_B(2 * t, n), KB_MMA_PROBE_B(2 * t + 1, n)),
                          kb_pack_bf16x2(KB_MMA_PROBE_B(2 * t + 8, n), KB_MMA_PROBE_B(2 * t + 9, n))};
        kb_mma_bf16_16816(d[0][j], a, bj);
    }
    frag_a(a, As, ld, 0, 0);
    frag_b2(b, Bt, ld, 0, 0);
    mma_pair(d[1][0], d[1][1], a, b);
    frag_b2_trans(b, Bk, ld, 0, 0);
    mma_pair(d[2][0], d[2][1], a, b);
    for (int v = 0; v < 3; v++)
        for (int j = 0; j < 2; j++)
            for (int e = 0; e < 4; e++) dst[v * 256 + (g + 8 * (e / 2)) * 16 + 8 * j + 2 * t + e % 2] = d[v][j][e];
#else
    __trap();
#endif
}

} // namespace

extern "C" int kb_attn_mma_probe(kb_ctx *ctx, float *d, kb_err *err) {
    const char *op = "kb_attn_mma_probe";
    kb_cuda_state *st;
    if (kb_cuda_op_state(ctx, op, &st, err)) return -1;
    if (st->cc_major < 8) return kb_fail(err, "%s: needs compute capability 8.0 or newer", op);
    mma_probe_kernel<<<1, 32, 0, st->stream>>>(d);
    KB_LAUNCH_CHECK(op, "mma_probe_kernel");
    return 0;
}
