/* KB_SIMD_CLONES: builds a CPU function three times (AVX-512, AVX2, baseline
 * x86-64) and picks the widest the machine runs at load time (GCC's
 * target_clones), so the elementwise and row loops use the vector width of
 * the CPU at hand while the binary still runs anywhere. The IEEE operations
 * are the same in every clone (and -ffp-contract=off keeps FMAs out), so
 * elementwise results keep the reference's bits; only sums taken with
 * `omp simd reduction` are split differently by vector width (their tests
 * compare with tolerances). A no-op on other compilers and architectures. */
#ifndef KB_NN_CPU_CLONES_H
#define KB_NN_CPU_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KB_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KB_SIMD_CLONES
#endif

/* For the static helpers those functions call: inlined into each clone, so
 * they are compiled for its vector width too (a plain static function would
 * be built once, for the baseline). */
#if defined(__GNUC__)
#define KB_CLONE_INLINE static inline __attribute__((always_inline))
#else
#define KB_CLONE_INLINE static inline
#endif

#endif
