/* Row kernels of the fast CPU ops, shared by nn/ops_cpu.c (LayerNorm, column
 * sums) and nn/ops_dit_cpu.c (LayerNorm fused with adaLN modulation), so the
 * fused op runs the very loops of the separate ones and gives their bits.
 * KB_CLONE_INLINE: inlined into each caller's SIMD clone (nn/cpu_clones.h). */
#ifndef KB_NN_CPU_ROWS_H
#define KB_NN_CPU_ROWS_H

#include <math.h>
#include <stdint.h>

#include "nn/cpu_clones.h"

/* acc[c] += row[c] for c < cols, in double. */
KB_CLONE_INLINE void acc_row(double *acc, const float *row, int64_t cols) {
#pragma omp simd
    for (int64_t c = 0; c < cols; c++) acc[c] += (double)row[c];
}

/* One row, same formulas as kb_layernorm_fwd_ref; the sums are SIMD
 * reductions in double. */
KB_CLONE_INLINE void layernorm_row(float *o, float *mean, float *rstd, const float *x, const float *weight,
                          const float *bias, int64_t cols, float eps) {
    double s = 0.0, v = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < cols; c++) s += (double)x[c];
    double mu = s / (double)cols;
#pragma omp simd reduction(+ : v)
    for (int64_t c = 0; c < cols; c++) {
        double d = (double)x[c] - mu;
        v += d * d;
    }
    float m = (float)mu;
    float rs = (float)(1.0 / sqrt(v / (double)cols + (double)eps));
    if (weight && bias) {
#pragma omp simd
        for (int64_t c = 0; c < cols; c++) o[c] = (x[c] - m) * rs * weight[c] + bias[c];
    } else {
#pragma omp simd
        for (int64_t c = 0; c < cols; c++) {
            float y = (x[c] - m) * rs;
            if (weight) y = y * weight[c];
            if (bias) y = y + bias[c];
            o[c] = y;
        }
    }
    if (mean) *mean = m;
    if (rstd) *rstd = rs;
}

/* Row means of g = weight*dout (dout when weight is NULL) and of g*xhat, in
 * double. Separate loops for the two cases keep them branch-free (vectorised). */
KB_CLONE_INLINE void layernorm_bwd_means(double *sg_out, double *sgx_out, const float *dy, const float *x, const float *weight,
                                float m, float rs, int64_t cols) {
    double sg = 0.0, sgx = 0.0;
    if (weight) {
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t c = 0; c < cols; c++) {
            float g = weight[c] * dy[c];
            sg += (double)g;
            sgx += (double)g * (double)((x[c] - m) * rs);
        }
    } else {
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t c = 0; c < cols; c++) {
            sg += (double)dy[c];
            sgx += (double)dy[c] * (double)((x[c] - m) * rs);
        }
    }
    *sg_out = sg;
    *sgx_out = sgx;
}

/* dinp of one row (see kb_layernorm_bwd_ref), and its contribution to the
 * dweight/dbias partials pw/pb (double, may be NULL). */
KB_CLONE_INLINE void layernorm_bwd_row(float *dx, double *pw, double *pb, const float *dy, const float *x, const float *weight,
                              float m, float rs, int64_t cols) {
    if (dx) {
        double sg, sgx;
        layernorm_bwd_means(&sg, &sgx, dy, x, weight, m, rs, cols);
        float g_mean = (float)(sg / (double)cols), gx_mean = (float)(sgx / (double)cols);
        if (weight) {
#pragma omp simd
            for (int64_t c = 0; c < cols; c++)
                dx[c] = dx[c] + (weight[c] * dy[c] - g_mean - (x[c] - m) * rs * gx_mean) * rs;
        } else {
#pragma omp simd
            for (int64_t c = 0; c < cols; c++) dx[c] = dx[c] + (dy[c] - g_mean - (x[c] - m) * rs * gx_mean) * rs;
        }
    }
    if (pw) {
#pragma omp simd
        for (int64_t c = 0; c < cols; c++) pw[c] += (double)dy[c] * (double)((x[c] - m) * rs);
    }
    if (pb) acc_row(pb, dy, cols);
}

#endif
