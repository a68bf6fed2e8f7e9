/* Per-element kernels shared by the reference (nn/ops_ref.c) and the fast CPU
 * path (nn/ops_cpu.c): both call exactly these functions, so for every
 * elementwise op the fast path gives the reference's bits, vectorised or not.
 *
 * exp and tanh are our own (range reduction + polynomial, ~1 ulp), not libm:
 * glibc's expf/tanhf are scalar calls that stop GCC from vectorising the
 * loops, and these are written only with +, -, *, / and bit operations, so
 * `#pragma omp simd` loops over them stay bit-identical to the scalar code
 * (-ffp-contract=off: no FMA contraction). The activation formulas follow
 * PyTorch's CPU kernels operation by operation.
 *
 * Usable from CUDA device code too (KB_HD and the KB_F* rounding macros come
 * from nn/rng.h). */
#ifndef KB_OPS_SCALAR_H
#define KB_OPS_SCALAR_H

#include <stdint.h>

#include "nn/rng.h"

KB_HD float kb_sc_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
KB_HD uint32_t kb_sc_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* e^y - 1 and e^y for y <= 0 (callers only need non-positive arguments),
 * written to both outputs. y = k ln2 + r with |r| <= ln2/2 (Cody-Waite: the
 * high part of ln2 has 16 bits, so k*ln2_hi and y - k*ln2_hi are exact), then
 * e^r - 1 = q by its Taylor series to r^8 (truncation < 1e-9 relative), and
 * e^y - 1 = (2^k - 1) + 2^k q, e^y = 2^k + 2^k q: one rounding each after q.
 * y < -87 is clamped to -87 (e^-87 = 1.6e-38, the smallest normal range), so
 * e^y >= 1.6e-38 instead of flushing towards 0; NaN propagates. */
KB_HD void kb_sc_exp_nonpos(float y, float *expm1_out, float *exp_out) {
    y = y < -87.0f ? -87.0f : y;
    /* round(y / ln2) with the 1.5*2^23 trick (no floorf: keeps loops vectorisable) */
    float kf = KB_FSUB(KB_FADD(KB_FMUL(y, 1.44269504088896341f), 12582912.0f), 12582912.0f);
    kf = kf == kf ? kf : 0.0f; /* NaN: any k; r stays NaN below */
    int k = (int)kf;
    float r = KB_FSUB(KB_FSUB(y, KB_FMUL(kf, 0.693145751953125f)), KB_FMUL(kf, 1.428606765330187e-06f));
    float p = KB_FADD(1.0f / 5040.0f, KB_FMUL(r, 1.0f / 40320.0f));
    p = KB_FADD(1.0f / 720.0f, KB_FMUL(r, p));
    p = KB_FADD(1.0f / 120.0f, KB_FMUL(r, p));
    p = KB_FADD(1.0f / 24.0f, KB_FMUL(r, p));
    p = KB_FADD(1.0f / 6.0f, KB_FMUL(r, p));
    p = KB_FADD(0.5f, KB_FMUL(r, p));
    float q = KB_FADD(r, KB_FMUL(KB_FMUL(r, r), p));
    float two_k = kb_sc_from_bits((uint32_t)(k + 127) << 23); /* k in [-126, 0]: a normal power of two */
    float tq = KB_FMUL(two_k, q);                            /* exact: scaling by a power of two */
    *expm1_out = KB_FADD(KB_FSUB(two_k, 1.0f), tq);
    *exp_out = KB_FADD(two_k, tq);
}

/* tanh(x) = -(e^{-2|x|} - 1) / (e^{-2|x|} + 1) with the sign of x: through
 * expm1 there is no cancellation near 0. */
KB_HD float kb_sc_tanh(float x) {
    float em, e;
    kb_sc_exp_nonpos(KB_FMUL(-2.0f, fabsf(x)), &em, &e);
    return copysignf(KB_FDIV(-em, KB_FADD(2.0f, em)), x);
}

/* GELU, tanh approximation, as torch's gelu(approximate='tanh') CPU kernel:
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
#define KB_SC_GELU_BETA 0.7978845608028654f /* M_SQRT2 * M_2_SQRTPI * 0.5 */
#define KB_SC_GELU_KAPPA 0.044715f

KB_HD float kb_sc_gelu_tanh(float x) {
    float x_cube = KB_FMUL(KB_FMUL(x, x), x);
    float inner = KB_FMUL(KB_SC_GELU_BETA, KB_FADD(x, KB_FMUL(KB_SC_GELU_KAPPA, x_cube)));
    return KB_FMUL(KB_FMUL(0.5f, x), KB_FADD(1.0f, kb_sc_tanh(inner)));
}

/* d gelu / dx, as torch's GeluBackward (tanh) CPU kernel. */
KB_HD float kb_sc_gelu_tanh_grad(float x) {
    float x_sq = KB_FMUL(x, x);
    float x_cube = KB_FMUL(x_sq, x);
    float inner = KB_FMUL(KB_SC_GELU_BETA, KB_FADD(x, KB_FMUL(KB_SC_GELU_KAPPA, x_cube)));
    float t = kb_sc_tanh(inner);
    float left = KB_FMUL(0.5f, x);
    float right = KB_FADD(1.0f, t);
    float left_derivative = KB_FMUL(0.5f, right);
    float tanh_derivative = KB_FSUB(1.0f, KB_FMUL(t, t));
    float inner_derivative = KB_FMUL(KB_SC_GELU_BETA, KB_FADD(1.0f, KB_FMUL(3.0f * KB_SC_GELU_KAPPA, x_sq)));
    float right_derivative = KB_FMUL(KB_FMUL(left, tanh_derivative), inner_derivative);
    return KB_FADD(left_derivative, right_derivative);
}

/* sigmoid(x) = 1 / (1 + e^-x), through e^{-|x|} so that the exponential never
 * overflows. */
KB_HD float kb_sc_sigmoid(float x) {
    float em, e;
    kb_sc_exp_nonpos(-fabsf(x), &em, &e);
    float d = KB_FADD(1.0f, e);
    float neg = KB_FDIV(e, d), pos = KB_FDIV(1.0f, d); /* both, then select: keeps loops branch-free */
    return x < 0.0f ? neg : pos;
}

/* Below this, kb_sc_exp_nonpos(x) is clamped to e^-87 = 1.6e-38, which is
 * harmless in a ratio but not times x: silu(-3e38) came out as -4.9. There
 * x e^x is below 1e-36 in magnitude (torch: -0 from -88.7 on), so the SiLU
 * functions give x * 0 (-0, and NaN at -inf as torch's -inf / inf). */
#define KB_SC_SILU_FLOOR (-87.0f)

/* silu(x) = x / (1 + e^-x) (torch's formula); for x < 0 as x e^x / (1 + e^x). */
KB_HD float kb_sc_silu(float x) {
    float em, e;
    kb_sc_exp_nonpos(-fabsf(x), &em, &e);
    float d = KB_FADD(1.0f, e);
    float neg = KB_FDIV(KB_FMUL(x, e), d), pos = KB_FDIV(x, d);
    neg = x < KB_SC_SILU_FLOOR ? KB_FMUL(x, 0.0f) : neg; /* a select: keeps loops branch-free */
    return x < 0.0f ? neg : pos;
}

/* d silu / dx = s (1 + x (1 - s)), s = sigmoid(x), as torch's SiluBackward;
 * x * 0 below KB_SC_SILU_FLOOR (s there is the clamped 1.6e-38, not e^x). */
KB_HD float kb_sc_silu_grad(float x) {
    float s = kb_sc_sigmoid(x);
    float g = KB_FMUL(s, KB_FADD(1.0f, KB_FMUL(x, KB_FSUB(1.0f, s))));
    return x < KB_SC_SILU_FLOOR ? KB_FMUL(x, 0.0f) : g;
}

/* relu keeps NaN (as torch's clamp_min does); the gradient is 1 where x > 0. */
KB_HD float kb_sc_relu(float x) { return x < 0.0f ? 0.0f : x; }

/* float -> bfloat16 bits, round to nearest even; NaN -> quiet NaN keeping the
 * sign and the top payload bits. */
KB_HD uint16_t kb_sc_f32_to_bf16(float f) {
    uint32_t u = kb_sc_to_bits(f);
    uint16_t nan = (uint16_t)((u >> 16) | 0x0040u);
    uint16_t rounded = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return (u & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
}
KB_HD float kb_sc_bf16_to_f32(uint16_t h) { return kb_sc_from_bits((uint32_t)h << 16); }

/* u8 pixel to float: x * scale + offset, two roundings (no FMA). */
KB_HD float kb_sc_u8_to_f32(uint8_t x, float scale, float offset) {
    return KB_FADD(KB_FMUL((float)x, scale), offset);
}

#endif
