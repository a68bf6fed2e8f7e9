/* Counter-based random numbers (Philox4x32-10) that are identical on the CPU
 * and in CUDA kernels, across runs and thread counts: the value of element i of
 * a stream is a pure function of (seed, stream, i). Normals use Box-Muller with
 * our own log/sin/cos built only from correctly rounded IEEE operations
 * (+, *, /, sqrt, fma) written without implicit contraction, so the host and
 * the device produce the same bits (libm and CUDA's logf/sinf differ).
 *
 * Usable from C and from CUDA device code. */
#ifndef KB_RNG_H
#define KB_RNG_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define KB_HD __host__ __device__ __forceinline__
#else
#include <math.h>
#define KB_HD static inline
#endif

/* device code (and the CPU emulator's, tests/cuda_emu, which contracts a*b+c as nvcc does) */
#if defined(__CUDA_ARCH__) || defined(KB_EMU_DEVICE)
#define KB_FMUL(a, b) __fmul_rn((a), (b))
#define KB_FADD(a, b) __fadd_rn((a), (b))
#define KB_FSUB(a, b) __fsub_rn((a), (b))
#define KB_FDIV(a, b) __fdiv_rn((a), (b))
#define KB_FSQRT(a) __fsqrt_rn(a)
#define KB_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#else
#define KB_FMUL(a, b) ((float)((float)(a) * (float)(b)))
#define KB_FADD(a, b) ((float)((float)(a) + (float)(b)))
#define KB_FSUB(a, b) ((float)((float)(a) - (float)(b)))
#define KB_FDIV(a, b) ((float)((float)(a) / (float)(b)))
#define KB_FSQRT(a) sqrtf(a)
#define KB_FMA(a, b, c) fmaf((a), (b), (c))
#endif

typedef struct {
    uint32_t v[4];
} kb_philox_out;

/* Philox4x32-10 (Salmon et al. 2011, the generator of curand and of
 * torch.cuda): counter (c0..c3) under key (k0, k1). */
KB_HD kb_philox_out kb_philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    kb_philox_out o;
    o.v[0] = c0; o.v[1] = c1; o.v[2] = c2; o.v[3] = c3;
    return o;
}

/* Block b of stream s under seed: four 32-bit words. */
KB_HD kb_philox_out kb_philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
    return kb_philox4x32((uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32),
                         (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* Uniform in [0, 1) with 24 random bits (exact in float). */
KB_HD float kb_u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }
/* Uniform in (0, 1]: safe for log. */
KB_HD float kb_u32_to_unit_open0(uint32_t x) { return (float)((x >> 8) + 1u) * (1.0f / 16777216.0f); }

/* Natural log of u in (0, 1]: u = m * 2^e with m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(s), s = (m-1)/(m+1), by its odd series to s^11. */
KB_HD float kb_portable_logf(float u) {
    uint32_t bits;
    memcpy(&bits, &u, 4);
    int e = (int)((bits >> 23) & 0xff) - 127;
    uint32_t mbits = (bits & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    float m;
    memcpy(&m, &mbits, 4);
    if (m > 1.41421356f) {
        m = KB_FMUL(m, 0.5f);
        e += 1;
    }
    float s = KB_FDIV(KB_FSUB(m, 1.0f), KB_FADD(m, 1.0f));
    float s2 = KB_FMUL(s, s);
    float p = KB_FMA(s2, 1.0f / 11.0f, 1.0f / 9.0f);
    p = KB_FMA(s2, p, 1.0f / 7.0f);
    p = KB_FMA(s2, p, 1.0f / 5.0f);
    p = KB_FMA(s2, p, 1.0f / 3.0f);
    p = KB_FMA(s2, p, 1.0f);
    float logm = KB_FMUL(KB_FMUL(2.0f, s), p);
    /* ln 2 split in a high part exact in float times small integers, plus the rest. */
    float fe = (float)e;
    return KB_FADD(KB_FMA(fe, 0.693145751953125f, logm), KB_FMUL(fe, 1.428606765330187e-06f));
}

/* sin and cos of 2*pi*u for u in [0, 1): quadrant from 4u (exact), then
 * Taylor polynomials on [0, pi/2]. */
KB_HD void kb_portable_sincos_2pi(float u, float *s_out, float *c_out) {
    float t = KB_FMUL(u, 4.0f);
    int q = (int)t;
    float f = KB_FSUB(t, (float)q);
    float th = KB_FMUL(f, 1.57079632679489662f);
    float x2 = KB_FMUL(th, th);
    float sp = KB_FMA(x2, -1.0f / 39916800.0f, 1.0f / 362880.0f);
    sp = KB_FMA(x2, sp, -1.0f / 5040.0f);
    sp = KB_FMA(x2, sp, 1.0f / 120.0f);
    sp = KB_FMA(x2, sp, -1.0f / 6.0f);
    sp = KB_FMA(x2, sp, 1.0f);
    float s = KB_FMUL(th, sp);
    float cp = KB_FMA(x2, 1.0f / 479001600.0f, -1.0f / 3628800.0f);
    cp = KB_FMA(x2, cp, 1.0f / 40320.0f);
    cp = KB_FMA(x2, cp, -1.0f / 720.0f);
    cp = KB_FMA(x2, cp, 1.0f / 24.0f);
    cp = KB_FMA(x2, cp, -0.5f);
    float c = KB_FMA(x2, cp, 1.0f);
    switch (q & 3) {
    case 0: *s_out = s; *c_out = c; break;
    case 1: *s_out = c; *c_out = -s; break;
    case 2: *s_out = -s; *c_out = -c; break;
    default: *s_out = -c; *c_out = s; break;
    }
}

/* Element i of a uniform [0,1) stream. */
KB_HD float kb_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t i) {
    kb_philox_out o = kb_philox_block(seed, stream, i >> 2);
    return kb_u32_to_unit(o.v[i & 3]);
}

/* Element i of a standard normal stream: block i/4 gives two Box-Muller pairs. */
KB_HD float kb_rng_normal_at(uint64_t seed, uint64_t stream, uint64_t i) {
    kb_philox_out o = kb_philox_block(seed, stream, i >> 2);
    int pair = (int)((i >> 1) & 1);
    float u1 = kb_u32_to_unit_open0(o.v[2 * pair]);
    float u2 = kb_u32_to_unit(o.v[2 * pair + 1]);
    float r = KB_FSQRT(KB_FMUL(-2.0f, kb_portable_logf(u1)));
    float s, c;
    kb_portable_sincos_2pi(u2, &s, &c);
    return KB_FMUL(r, (i & 1) ? s : c);
}

/* The values kb_rand_uniform / kb_rand_normal write: every backend must use
 * exactly these (same operations, same rounding). */
KB_HD float kb_rng_uniform_scaled(uint64_t seed, uint64_t stream, uint64_t i, float lo, float hi) {
    return KB_FMA(kb_rng_uniform_at(seed, stream, i), KB_FSUB(hi, lo), lo);
}
KB_HD float kb_rng_normal_scaled(uint64_t seed, uint64_t stream, uint64_t i, float mean, float std) {
    return KB_FMA(kb_rng_normal_at(seed, stream, i), std, mean);
}

/* A sequential host-side stream (data order, class splits, dropout draws). */
typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter;
} kb_rng;

KB_HD void kb_rng_init(kb_rng *r, uint64_t seed, uint64_t stream) {
    r->seed = seed;
    r->stream = stream;
    r->counter = 0;
}

KB_HD uint32_t kb_rng_next_u32(kb_rng *r) {
    uint64_t i = r->counter++;
    return kb_philox_block(r->seed, r->stream, i >> 2).v[i & 3];
}

/* Uniform integer in [0, n) without modulo bias (rejection); 0 when n == 0. */
KB_HD uint32_t kb_rng_below(kb_rng *r, uint32_t n) {
    if (n == 0) return 0;
    uint32_t limit = (uint32_t)(0x100000000ull - (0x100000000ull % n));
    for (;;) {
        uint32_t x = kb_rng_next_u32(r);
        if (limit == 0 || x < limit) return x % n;
    }
}

KB_HD float kb_rng_next_uniform(kb_rng *r) { return kb_u32_to_unit(kb_rng_next_u32(r)); }

#endif
