/* Fused bf16 attention on tensor cores (nn/ops_attn.h), FlashAttention-2's
 * scheme written with the portable WMMA API (16x16x16 bf16 products, fp32
 * accumulators). The arithmetic is the reference's (nn/ops_attn_ref.c).
 *
 * Blocks of 4 warps own 64 rows (queries, or keys in the dk/dv kernel); each
 * warp owns 16 of them and walks the other side in tiles of 64. Everything a
 * warp reads of the other side is staged in shared memory as bf16, padded to
 * HD columns (32, 64, 80 or 128: the head dimension rounded up; the padding
 * is zero, so it adds nothing to any dot product) and to rows beyond T (zero
 * too; those keys are masked out of every softmax, those queries never
 * written). Score tiles go through per-warp fp32 shared buffers, where two
 * lanes per row apply the softmax arithmetic.
 *
 *   forward: pass 1 row max and sum over key tiles (online), lse = m + log l;
 *            pass 2 p = exp(s - lse), o += p v. Two score products per tile
 *            instead of one, for no rescaling of the output accumulators
 *            (WMMA does not expose which lane holds which row).
 *   backward: D = rowsum(dout * out); one kernel per key block for dk, dv
 *            (accumulated in registers over all query tiles), one per query
 *            block for dq: no atomics, so every sum has a fixed order. */
#include "nn/cuda_common.cuh"

#include <cuda_bf16.h>
#include <mma.h>

extern "C" {
#include "nn/ops_attn.h"
}

namespace {

using bf16 = __nv_bfloat16;
namespace wm = nvcuda::wmma;
typedef wm::fragment<wm::accumulator, 16, 16, 16, float> acc_frag;

constexpr int kTile = 64;             /* rows per block and per tile of the other side */
constexpr int kWarps = kTile / 16;    /* 16 rows per warp */
constexpr int kThreads = 32 * kWarps;
constexpr int kLdP = kTile + 8;       /* bf16 per-warp 16 x 64 tiles (ldm a multiple of 8) */
constexpr unsigned kFull = 0xffffffffu;

/* Shared-memory geometry for a padded head dimension HD. Every buffer's size
 * is a multiple of 128 bytes, so buffers laid end to end keep WMMA's 32-byte
 * alignment; so does every 16-row, 16-column fragment origin inside them. */
template <int HD> struct geom {
    static constexpr int ldh = HD + 8;                            /* bf16 [64][HD] tiles */
    static constexpr int ldo = (HD > kTile ? HD : kTile) + 4;     /* fp32 per-warp [16][max(HD, 64)] */
    static constexpr size_t tile = size_t(kTile) * ldh * sizeof(bf16);
    static constexpr size_t warp_f32 = size_t(kWarps) * 16 * ldo * sizeof(float);
    static constexpr size_t warp_bf16 = size_t(kWarps) * 16 * kLdP * sizeof(bf16);
    static constexpr size_t rows_f32 = size_t(kTile) * sizeof(float);
};

/* Rows row0 .. row0+63 of one head (columns col .. col+hd-1 of rows of
 * row_stride elements, fp32 or bf16 bits) into a bf16 [64][ldh] tile, zero
 * past T and hd (a bf16 source keeps its values: widened, then rounded). */
template <int HD, typename S>
__device__ void load_tile(bf16 *dst, const S *src, int64_t row_stride, int row0, int T, int hd) {
    for (int i = threadIdx.x; i < kTile * HD; i += kThreads) {
        int r = i / HD, c = i % HD, t = row0 + r;
        float v = (t < T && c < hd) ? kb_elem_f32(src[(int64_t)t * row_stride + c]) : 0.0f;
        dst[r * geom<HD>::ldh + c] = __float2bfloat16_rn(v);
    }
}

/* S (16 x 64 fp32, ld ldo) = A Bt^T: A is 16 rows of a bf16 tile, Bt a whole
 * 64-row bf16 tile (both [rows][HD], ld ldh). */
template <int HD>
__device__ void warp_scores(float *S, const bf16 *A, const bf16 *Bt) {
    constexpr int ldh = geom<HD>::ldh;
#pragma unroll
    for (int j = 0; j < kTile / 16; j++) {
        acc_frag acc;
        wm::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int k = 0; k < HD / 16; k++) {
            wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
            wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major> b; /* (k, n) at Bt[n][k] */
            wm::load_matrix_sync(a, A + k * 16, ldh);
            wm::load_matrix_sync(b, Bt + j * 16 * ldh + k * 16, ldh);
            wm::mma_sync(acc, a, b, acc);
        }
        wm::store_matrix_sync(S + j * 16, acc, geom<HD>::ldo, wm::mem_row_major);
    }
}

/* acc (16 x HD as HD/16 fragments) += P M: P a warp's 16 x 64 bf16 tile (ld
 * kLdP), M a whole 64-row bf16 tile ([64][HD], ld ldh). */
template <int HD>
__device__ void warp_accumulate(acc_frag (&acc)[HD / 16], const bf16 *P, const bf16 *M) {
    constexpr int ldh = geom<HD>::ldh;
#pragma unroll
    for (int k = 0; k < kTile / 16; k++) {
        wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
        wm::load_matrix_sync(a, P + k * 16, kLdP);
#pragma unroll
        for (int j = 0; j < HD / 16; j++) {
            wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major> b;
            wm::load_matrix_sync(b, M + k * 16 * ldh + j * 16, ldh);
            wm::mma_sync(acc[j], a, b, acc[j]);
        }
    }
}

template <int HD> __device__ void zero_acc(acc_frag (&acc)[HD / 16]) {
#pragma unroll
    for (int j = 0; j < HD / 16; j++) wm::fill_fragment(acc[j], 0.0f);
}

/* A warp's 16 x hd result, times mul, to rows row0.. (< T) of dst (row_stride
 * elements apart; fp32, or bf16 bits rounded by kb_store_elem), through the
 * warp's fp32 buffer buf. */
template <int HD, typename O>
__device__ void warp_store_rows(float *buf, acc_frag (&acc)[HD / 16], float mul, O *dst, int64_t row_stride,
                                int row0, int T, int hd) {
    constexpr int ldo = geom<HD>::ldo;
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
        for (int i = 0; i < acc[j].num_elements; i++) acc[j].x[i] = __fmul_rn(acc[j].x[i], mul);
        wm::store_matrix_sync(buf + j * 16, acc[j], ldo, wm::mem_row_major);
    }
    __syncwarp();
    for (int i = threadIdx.x % 32; i < 16 * hd; i += 32) {
        int r = i / hd, c = i % hd, t = row0 + r;
        if (t < T) kb_store_elem(dst + (int64_t)t * row_stride + c, buf[r * ldo + c]);
    }
    __syncwarp();
}

struct attn_args {
    const float *qkv;  /* [B, T, 3d] */
    const uint16_t *qkv16; /* the same as bf16 (the *_x16 entry points): read instead of qkv when set */
    const float *dout; /* [B, T, d] */
    const float *out;  /* [B, T, d] */
    const uint16_t *out16; /* the same as bf16 (kb_attn_fused_bwd_x16): read instead of out when set */
    float *res;        /* out (forward) or dqkv (backward) */
    uint16_t *res16;   /* the same as bf16 (the *_x16 entry points): written instead of res when set */
    float *lse;        /* [B, H, T]: written by the forward, read by the backward */
    float *delta;      /* [B, H, T]: D, written by attn_delta_kernel */
    int T, d, H, hd;
    float scale;
};

/* A warp's result to the kernel's output at element offset `at`: res16
 * (bf16) when the entry point asked for it, res otherwise. */
template <int HD>
__device__ void store_result(float *buf, acc_frag (&acc)[HD / 16], float mul, const attn_args &a, int64_t at,
                             int64_t row_stride, int row0, int T) {
    if (a.res16) warp_store_rows<HD>(buf, acc, mul, a.res16 + at, row_stride, row0, T, a.hd);
    else warp_store_rows<HD>(buf, acc, mul, a.res + at, row_stride, row0, T, a.hd);
}

/* The qkv input as the kernels read it: fp32, or bf16 bits (qkv16). */
template <typename Q> __device__ const Q *qkv_of(const attn_args &a);
template <> __device__ const float *qkv_of<float>(const attn_args &a) { return a.qkv; }
template <> __device__ const uint16_t *qkv_of<uint16_t>(const attn_args &a) { return a.qkv16; }

/* ---------------------------------------------------------------- forward */

template <int HD, typename Q>
__global__ void __launch_bounds__(kThreads) attn_fwd_kernel(attn_args a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    extern __shared__ __align__(128) unsigned char smem[];
    using g = geom<HD>;
    bf16 *Qs = (bf16 *)smem, *Ks = (bf16 *)(smem + g::tile), *Vs = (bf16 *)(smem + 2 * g::tile);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float *S = (float *)(smem + 3 * g::tile) + warp * 16 * g::ldo;
    bf16 *P = (bf16 *)(smem + 3 * g::tile + g::warp_f32) + warp * 16 * kLdP;
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile, T = a.T, d = a.d;
    const Q *base = qkv_of<Q>(a) + (int64_t)b * T * 3 * d + h * a.hd;
    const bf16 *Qw = Qs + warp * 16 * g::ldh;
    int r = lane / 2, c0 = (lane % 2) * 32; /* this lane's row of the warp's 16, and half of a tile's 64 columns */

    load_tile<HD>(Qs, base, 3 * d, q0, T, a.hd);
    float m = -INFINITY, l = 0.0f;
    for (int k0 = 0; k0 < T; k0 += kTile) { /* pass 1: row max and sum */
        __syncthreads();
        load_tile<HD>(Ks, base + d, 3 * d, k0, T, a.hd);
        __syncthreads();
        warp_scores<HD>(S, Qw, Ks);
        __syncwarp();
        float mx = -INFINITY, sum = 0.0f;
        for (int c = c0; c < c0 + 32; c++)
            if (k0 + c < T) mx = fmaxf(mx, __fmul_rn(S[r * g::ldo + c], a.scale));
        mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 1));
        float m_new = fmaxf(m, mx);
        for (int c = c0; c < c0 + 32; c++)
            if (k0 + c < T) sum = __fadd_rn(sum, expf(__fsub_rn(__fmul_rn(S[r * g::ldo + c], a.scale), m_new)));
        float other = __shfl_xor_sync(kFull, sum, 1);
        sum = lane % 2 ? __fadd_rn(other, sum) : __fadd_rn(sum, other); /* left half plus right half, as the reference */
        l = __fadd_rn(__fmul_rn(l, expf(m - m_new)), sum);
        m = m_new;
        __syncwarp();
    }
    float lse = __fadd_rn(m, logf(l));
    int q = q0 + warp * 16 + r;
    if (lane % 2 == 0 && q < T) a.lse[((int64_t)b * a.H + h) * T + q] = lse;

    acc_frag o[HD / 16];
    zero_acc<HD>(o);
    for (int k0 = 0; k0 < T; k0 += kTile) { /* pass 2: o += exp(s - lse) v */
        __syncthreads();
        load_tile<HD>(Ks, base + d, 3 * d, k0, T, a.hd);
        load_tile<HD>(Vs, base + 2 * d, 3 * d, k0, T, a.hd);
        __syncthreads();
        warp_scores<HD>(S, Qw, Ks);
        __syncwarp();
        for (int c = c0; c < c0 + 32; c++) {
            float p = k0 + c < T ? expf(__fsub_rn(__fmul_rn(S[r * g::ldo + c], a.scale), lse)) : 0.0f;
            P[r * kLdP + c] = __float2bfloat16_rn(p);
        }
        __syncwarp();
        warp_accumulate<HD>(o, P, Vs);
    }
    store_result<HD>(S, o, 1.0f, a, (int64_t)b * T * d + h * a.hd, d, q0 + warp * 16, T);
#else
    __trap(); /* built for a GPU without bf16 tensor cores: kb_attn_fused_cuda_allowed refuses those */
#endif
}

/* --------------------------------------------------------------- backward */

/* D[b, h, i] = sum_c dout * out over head h's columns of row i, in column order. */
__global__ void attn_delta_kernel(attn_args a, int64_t B) {
    int64_t n = B * a.H * a.T;
    KB_GRID_STRIDE(i, n) {
        int64_t q = i % a.T, h = (i / a.T) % a.H, b = i / ((int64_t)a.T * a.H);
        int64_t at = (b * a.T + q) * a.d + h * a.hd;
        float s = 0.0f;
        for (int c = 0; c < a.hd; c++) {
            float o = a.out16 ? kb_sc_bf16_to_f32(a.out16[at + c]) : a.out[at + c];
            s = __fadd_rn(s, __fmul_rn(a.dout[at + c], o));
        }
        a.delta[i] = s;
    }
}

/* One block per 64 keys: dv = sum over queries of p^T dout, dk = scale sum ds^T q. */
template <int HD, typename Q>
__global__ void __launch_bounds__(kThreads) attn_dkv_kernel(attn_args a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    extern __shared__ __align__(128) unsigned char smem[];
    using g = geom<HD>;
    bf16 *Ks = (bf16 *)smem, *Vs = (bf16 *)(smem + g::tile), *Qs = (bf16 *)(smem + 2 * g::tile);
    bf16 *dOs = (bf16 *)(smem + 3 * g::tile);
    float *lse_s = (float *)(smem + 4 * g::tile), *D_s = (float *)(smem + 4 * g::tile + g::rows_f32);
    unsigned char *w0 = smem + 4 * g::tile + 2 * g::rows_f32;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float *S = (float *)w0 + warp * 16 * g::ldo, *dP = (float *)(w0 + g::warp_f32) + warp * 16 * g::ldo;
    bf16 *P = (bf16 *)(w0 + 2 * g::warp_f32) + warp * 16 * kLdP;
    bf16 *dS = (bf16 *)(w0 + 2 * g::warp_f32 + g::warp_bf16) + warp * 16 * kLdP;
    int b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * kTile, T = a.T, d = a.d;
    const Q *base = qkv_of<Q>(a) + (int64_t)b * T * 3 * d + h * a.hd;
    const float *gout = a.dout + (int64_t)b * T * d + h * a.hd;
    const float *lse = a.lse + ((int64_t)b * a.H + h) * T, *delta = a.delta + ((int64_t)b * a.H + h) * T;
    int r = lane / 2, c0 = (lane % 2) * 32, key = k0 + warp * 16 + r;

    load_tile<HD>(Ks, base + d, 3 * d, k0, T, a.hd);
    load_tile<HD>(Vs, base + 2 * d, 3 * d, k0, T, a.hd);
    acc_frag dk[HD / 16], dv[HD / 16];
    zero_acc<HD>(dk);
    zero_acc<HD>(dv);
    for (int q0 = 0; q0 < T; q0 += kTile) {
        __syncthreads();
        load_tile<HD>(Qs, base, 3 * d, q0, T, a.hd);
        load_tile<HD>(dOs, gout, d, q0, T, a.hd);
        for (int i = threadIdx.x; i < kTile; i += kThreads) {
            lse_s[i] = q0 + i < T ? lse[q0 + i] : 0.0f;
            D_s[i] = q0 + i < T ? delta[q0 + i] : 0.0f;
        }
        __syncthreads();
        warp_scores<HD>(S, Ks + warp * 16 * g::ldh, Qs);   /* s^T: 16 keys x 64 queries */
        warp_scores<HD>(dP, Vs + warp * 16 * g::ldh, dOs); /* dp^T = v dout^T */
        __syncwarp();
        for (int c = c0; c < c0 + 32; c++) {
            bool ok = key < T && q0 + c < T;
            float p = ok ? expf(__fsub_rn(__fmul_rn(S[r * g::ldo + c], a.scale), lse_s[c])) : 0.0f;
            float ds = __fmul_rn(p, __fsub_rn(dP[r * g::ldo + c], D_s[c]));
            P[r * kLdP + c] = __float2bfloat16_rn(p);
            dS[r * kLdP + c] = __float2bfloat16_rn(ds);
        }
        __syncwarp();
        warp_accumulate<HD>(dv, P, dOs);
        warp_accumulate<HD>(dk, dS, Qs);
    }
    int64_t at = (int64_t)b * T * 3 * d + h * a.hd;
    store_result<HD>(S, dk, a.scale, a, at + d, 3 * d, k0 + warp * 16, T);
    store_result<HD>(S, dv, 1.0f, a, at + 2 * d, 3 * d, k0 + warp * 16, T);
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
    bf16 *Qs = (bf16 *)smem, *dOs = (bf16 *)(smem + g::tile), *Ks = (bf16 *)(smem + 2 * g::tile);
    bf16 *Vs = (bf16 *)(smem + 3 * g::tile);
    unsigned char *w0 = smem + 4 * g::tile;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float *S = (float *)w0 + warp * 16 * g::ldo, *dP = (float *)(w0 + g::warp_f32) + warp * 16 * g::ldo;
    bf16 *dS = (bf16 *)(w0 + 2 * g::warp_f32) + warp * 16 * kLdP;
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile, T = a.T, d = a.d;
    const Q *base = qkv_of<Q>(a) + (int64_t)b * T * 3 * d + h * a.hd;
    const float *gout = a.dout + (int64_t)b * T * d + h * a.hd;
    int r = lane / 2, c0 = (lane % 2) * 32, q = q0 + warp * 16 + r;
    int64_t row = ((int64_t)b * a.H + h) * T + q;
    float lse = q < T ? a.lse[row] : 0.0f, D = q < T ? a.delta[row] : 0.0f;

    load_tile<HD>(Qs, base, 3 * d, q0, T, a.hd);
    load_tile<HD>(dOs, gout, d, q0, T, a.hd);
    acc_frag dq[HD / 16];
    zero_acc<HD>(dq);
    for (int k0 = 0; k0 < T; k0 += kTile) {
        __syncthreads();
        load_tile<HD>(Ks, base + d, 3 * d, k0, T, a.hd);
        load_tile<HD>(Vs, base + 2 * d, 3 * d, k0, T, a.hd);
        __syncthreads();
        warp_scores<HD>(S, Qs + warp * 16 * g::ldh, Ks);   /* s: 16 queries x 64 keys */
        warp_scores<HD>(dP, dOs + warp * 16 * g::ldh, Vs); /* dp = dout v^T */
        __syncwarp();
        for (int c = c0; c < c0 + 32; c++) {
            bool ok = q < T && k0 + c < T;
            float p = ok ? expf(__fsub_rn(__fmul_rn(S[r * g::ldo + c], a.scale), lse)) : 0.0f;
            dS[r * kLdP + c] = __float2bfloat16_rn(__fmul_rn(p, __fsub_rn(dP[r * g::ldo + c], D)));
        }
        __syncwarp();
        warp_accumulate<HD>(dq, dS, Ks);
    }
    store_result<HD>(S, dq, a.scale, a, (int64_t)b * T * 3 * d + h * a.hd, 3 * d, q0 + warp * 16, T);
#else
    __trap(); /* built for a GPU without bf16 tensor cores: kb_attn_fused_cuda_allowed refuses those */
#endif
}

/* ---------------------------------------------------------------- launches */

template <int HD> constexpr size_t fwd_smem() { return 3 * geom<HD>::tile + geom<HD>::warp_f32 + geom<HD>::warp_bf16; }
template <int HD> constexpr size_t dkv_smem() {
    return 4 * geom<HD>::tile + 2 * geom<HD>::rows_f32 + 2 * geom<HD>::warp_f32 + 2 * geom<HD>::warp_bf16;
}
template <int HD> constexpr size_t dq_smem() {
    return 4 * geom<HD>::tile + 2 * geom<HD>::warp_f32 + geom<HD>::warp_bf16;
}

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
    switch (padded_hd(a.hd)) {
    case 32: return fwd_hd<32>(st, op, a, B, err);
    case 64: return fwd_hd<64>(st, op, a, B, err);
    case 80: return fwd_hd<80>(st, op, a, B, err);
    default: return fwd_hd<128>(st, op, a, B, err);
    }
}

int bwd_any(kb_ctx *ctx, const char *op, float *dqkv, uint16_t *dqkv16, float *delta, const float *dout,
            const float *out, const uint16_t *out16, const float *qkv, const uint16_t *qkv16, const float *lse,
            int64_t B, int64_t T, int64_t d, int64_t H, kb_err *err) {
    kb_cuda_state *st;
    if (state_of(ctx, op, d, H, &st, err)) return -1;
    if ((int64_t)T * 3 * d > INT32_MAX)
        return kb_fail(err, "%s: T=%lld x 3d=%lld too large", op, (long long)T, (long long)(3 * d));
    attn_args a = make_args(qkv, T, d, H);
    a.dout = dout, a.out = out, a.out16 = out16, a.qkv16 = qkv16, a.res = dqkv, a.res16 = dqkv16;
    a.lse = (float *)lse;
    a.delta = delta;
    attn_delta_kernel<<<kb_grid_1d(B * H * T), KB_CUDA_BLOCK, 0, st->stream>>>(a, B);
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
    return bwd_any(ctx, "kb_attn_fused_bwd", dqkv, NULL, delta, dout, out, NULL, qkv, NULL, lse, B, T, d, H, err);
}

extern "C" int kb_attn_fused_bwd_x16_cuda(kb_ctx *ctx, uint16_t *dqkv16, float *delta, const float *dout,
                                          const uint16_t *out16, const uint16_t *qkv16, const float *lse, int64_t B,
                                          int64_t T, int64_t d, int64_t H, kb_err *err) {
    return bwd_any(ctx, "kb_attn_fused_bwd_x16", NULL, dqkv16, delta, dout, NULL, out16, NULL, qkv16, lse, B, T, d,
                   H, err);
}

extern "C" int kb_attn_fused_cuda_allowed(const kb_ctx *ctx, int64_t head_dim) {
    /* bf16 tensor cores, and the shared memory a block may opt in to (227 KiB on
     * H100/H200, 99 KiB on some 8.x parts: too little there for head_dim > 64) */
    return ctx && ctx->device == KB_DEV_CUDA && ctx->cuda && ctx->cuda->cc_major >= 8 && head_dim > 0 &&
           head_dim <= KB_ATTN_FUSED_MAX_HEAD_DIM && smem_needed(head_dim) <= ctx->cuda->smem_optin;
}
