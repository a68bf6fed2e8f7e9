/* Warp-level bf16 tensor-core products (mma.sync m16n8k16, fp32 accumulate)
 * for kernels that keep their fragments in registers (nn/ops_attn_cuda.cu).
 * Not included from C.
 *
 * The PTX ISA's fragment layouts, lane = 4 g + t (g = lane / 4, t = lane % 4);
 * every 32-bit register holds two bf16, the lower column (or row of B) in its
 * low half:
 *   A (16 x 16, row-major): a0 (row g, k 2t..2t+1), a1 (g+8, 2t..),
 *                           a2 (g, 2t+8..), a3 (g+8, 2t+8..)
 *   B (16 x 8, "col"):      b0 (k 2t..2t+1, col g), b1 (k 2t+8.., col g)
 *   C, D (16 x 8, fp32):    c0 c1 (row g, cols 2t, 2t+1), c2 c3 (row g+8, ...)
 * So a B fragment is two words of a row-major [n][k] array (K in Q K^T), and
 * two horizontally adjacent C tiles, packed to bf16, are one A fragment (the
 * probabilities of P V): what FlashAttention-2 relies on. ldmatrix loads A
 * and B fragments from shared memory four registers at a time, and with
 * .trans the B fragments of a row-major [k][n] array (V in P V).
 *
 * Under the CPU emulator (tests/cuda_emu) the product and the loads are its
 * warp collectives with the same layouts; kb_attn_mma_probe
 * (nn/ops_attn_cuda.cu) lets a GPU run check them against the hardware. */
#ifndef KB_MMA_BF16_CUH
#define KB_MMA_BF16_CUH

#include <stdint.h>

#include <cuda_bf16.h>

#include "nn/ops_scalar.h"

/* d += a b for one 16 x 8 tile (all 32 lanes of the warp, converged). */
static __device__ __forceinline__ void kb_mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4],
                                                        const uint32_t (&b)[2]) {
#ifdef KB_EMU_DEVICE
    kb_emu::mma_m16n8k16_bf16(d, a, b, d);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: four 8 x 8 matrices of
 * 16-bit values from shared memory; lane l gives the address of row l % 8 of
 * matrix l / 8 (16 bytes, 16-byte aligned). r[i] gets matrix i's (row l/4,
 * columns 2(l%4) and 2(l%4)+1), exactly an mma fragment register; with
 * .trans its (rows 2(l%4) and 2(l%4)+1, column l/4), the fragment register
 * of the transposed matrix. The first value is in the low half. */
static __device__ __forceinline__ void kb_ldmatrix_x4(uint32_t (&r)[4], const void *row) {
#ifdef KB_EMU_DEVICE
    kb_emu::ldmatrix_x4(r, row, false);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((unsigned)__cvta_generic_to_shared(row)));
#endif
}

static __device__ __forceinline__ void kb_ldmatrix_x4_trans(uint32_t (&r)[4], const void *row) {
#ifdef KB_EMU_DEVICE
    kb_emu::ldmatrix_x4(r, row, true);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((unsigned)__cvta_generic_to_shared(row)));
#endif
}

/* Two floats rounded to bf16 (nearest even), lo in the low half. */
static __device__ __forceinline__ uint32_t kb_pack_bf16x2(float lo, float hi) {
#ifdef __CUDA_ARCH__
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (lo) is the low half */
    return *reinterpret_cast<uint32_t *>(&v);
#else
    return (uint32_t)kb_sc_f32_to_bf16(lo) | ((uint32_t)kb_sc_f32_to_bf16(hi) << 16);
#endif
}

#endif
