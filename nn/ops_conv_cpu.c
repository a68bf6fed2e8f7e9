/* The fast CPU path of nn/ops_conv.h.
 *
 * Convolutions are GEMMs on NHWC data: a pixel's channels are a row, so a 1x1
 * stride-1 convolution is one GEMM on the input as it lies in memory
 * (out[M, k] = in[M, c] . w[k, c]^T, M = n*h*w, row strides ldi and ldo), and
 * a k x k convolution is the same GEMM on an im2col matrix whose row holds an
 * output pixel's kh*kw*c taps in OHWI order (kw*c consecutive floats per
 * kernel row when the window lies inside the image: one memcpy).
 *
 * Work goes in chunks of whole output rows (about 1 MiB of im2col matrix,
 * fewer when the workspace is smaller; KB_CONV_CHUNK_PIXELS pixels for 1x1
 * layers): the chunk's matrices stay in cache between im2col, OpenBLAS's
 * packing and the bias + ReLU pass, and the workspace stays bounded
 * whatever the batch size.
 *
 * Determinism: OpenBLAS's partition depends on the sizes and the thread
 * count only; the loops here are static schedules of independent elements. */
/* Value-safe (as in nn/ops_cpu.c): lets GCC if-convert the ReLU and max
 * selects so those loops vectorise; results are the same IEEE operations. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <float.h>
#include <math.h>
#include <string.h>

#include <omp.h>

#include "nn/cpu_clones.h"
#include "nn/ops_conv.h"
#include "nn/ops_cpu.h"

/* Chunking (measured on a 2-core AVX-512 Xeon, single thread): an im2col
 * chunk of about 1 MiB stays in L2 while OpenBLAS packs it (+20-40% on the
 * 3x3 and 5x5 layers against 4096-pixel chunks); 1x1 layers use 2048 pixels. */
#define KB_CONV_CHUNK_BYTES ((int64_t)1 << 20)
#define KB_CONV_CHUNK_PIXELS 2048

size_t kb_conv2d_min_ws_floats(const kb_conv2d_desc *d) {
    return (size_t)kb_conv2d_out_w(d) * (size_t)d->kh * (size_t)d->kw * (size_t)d->c;
}

/* Output rows per im2col chunk: about 1 MiB of matrix, at least one row, at most all. */
static int64_t chunk_rows(const kb_conv2d_desc *d) {
    int64_t row = (int64_t)kb_conv2d_min_ws_floats(d), rows = d->n * kb_conv2d_out_h(d);
    int64_t want = (KB_CONV_CHUNK_BYTES / (int64_t)sizeof(float) + row - 1) / row;
    return want < 1 ? 1 : want > rows ? rows : want;
}

size_t kb_conv2d_ws_floats(const kb_conv2d_desc *d) {
    if (d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0) return 0;
    return (size_t)chunk_rows(d) * kb_conv2d_min_ws_floats(d);
}

/* The im2col rows of one output row (b, oy): ow rows of kh*kw*c taps. */
KB_CLONE_INLINE void im2col_row(const kb_conv2d_desc *d, float *col, const float *in, int64_t b, int64_t oy, int64_t ow) {
    int64_t c = d->c, kwc = (int64_t)d->kw * c, taps = (int64_t)d->kh * kwc;
    for (int64_t ox = 0; ox < ow; ox++) {
        int64_t ix0 = ox * d->sw - d->pw;
        int inside_x = ix0 >= 0 && ix0 + d->kw <= d->w;
        for (int i = 0; i < d->kh; i++) {
            float *dst = col + ox * taps + i * kwc;
            int64_t iy = oy * d->sh - d->ph + i;
            if (iy < 0 || iy >= d->h) {
                memset(dst, 0, sizeof(float) * (size_t)kwc);
                continue;
            }
            const float *src = in + ((b * d->h + iy) * d->w) * d->ldi;
            if (inside_x && d->ldi == c) { /* kw whole pixels side by side */
                memcpy(dst, src + ix0 * c, sizeof(float) * (size_t)kwc);
                continue;
            }
            for (int j = 0; j < d->kw; j++) {
                int64_t ix = ix0 + j;
                if (ix < 0 || ix >= d->w) memset(dst + j * c, 0, sizeof(float) * (size_t)c);
                else memcpy(dst + j * c, src + ix * d->ldi, sizeof(float) * (size_t)c);
            }
        }
    }
}

/* One pixel's k outputs: o = act(o + bias). The ReLU is v < 0 ? 0 : v, as
 * the reference's and torch's: NaN stays NaN (v > 0 ? v : 0 made it 0). */
KB_CLONE_INLINE void bias_act_pixel(float *restrict o, const float *restrict bias, int64_t k, int relu) {
    if (bias && relu) {
#pragma omp simd
        for (int64_t j = 0; j < k; j++) {
            float v = o[j] + bias[j];
            o[j] = v < 0.0f ? 0.0f : v;
        }
    } else if (bias) {
#pragma omp simd
        for (int64_t j = 0; j < k; j++) o[j] += bias[j];
    } else if (relu) {
#pragma omp simd
        for (int64_t j = 0; j < k; j++) o[j] = o[j] < 0.0f ? 0.0f : o[j];
    }
}

/* out[p, :k] = act(out[p, :k] + bias) for `pixels` rows of stride ldo. */
KB_CLONE_INLINE void bias_act(int threads, float *out, int64_t pixels, int64_t k, int64_t ldo, const float *bias, int relu) {
    if (!bias && !relu) return;
    int nt = pixels * k < 16384 ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t p = 0; p < pixels; p++) bias_act_pixel(out + p * ldo, bias, k, relu);
}

KB_CLONE_INLINE void conv_pointwise(int threads, const kb_conv2d_desc *d, float *out, const float *in, const float *w,
                           const float *bias) {
    int64_t m = d->n * d->h * d->w;
    for (int64_t p0 = 0; p0 < m; p0 += KB_CONV_CHUNK_PIXELS) {
        int64_t rows = m - p0 < KB_CONV_CHUNK_PIXELS ? m - p0 : KB_CONV_CHUNK_PIXELS;
        float *o = out + p0 * d->ldo;
        kb_gemm_cpu(threads, false, true, rows, d->k, d->c, 1.0f, in + p0 * d->ldi, d->ldi, w, d->c, 0.0f, o, d->ldo);
        bias_act(threads, o, rows, d->k, d->ldo, bias, d->relu);
    }
}

KB_SIMD_CLONES void kb_conv2d_cpu(int threads, const kb_conv2d_desc *d, float *out, const float *in, const float *w,
                   const float *bias, float *ws, size_t ws_floats) {
    if (d->n == 0) return;
    if (d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0) {
        conv_pointwise(threads, d, out, in, w, bias);
        return;
    }
    int64_t oh = kb_conv2d_out_h(d), ow = kb_conv2d_out_w(d), taps = (int64_t)d->kh * d->kw * d->c;
    int64_t rows_total = d->n * oh;
    int64_t chunk = (int64_t)(ws_floats / (size_t)(ow * taps)); /* output rows that fit, >= 1 by contract */
    if (chunk > chunk_rows(d)) chunk = chunk_rows(d);
    if (chunk < 1) chunk = 1;
    for (int64_t r0 = 0; r0 < rows_total; r0 += chunk) {
        int64_t nr = rows_total - r0 < chunk ? rows_total - r0 : chunk;
        int nt = nr * ow * taps < 16384 ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t r = 0; r < nr; r++)
            im2col_row(d, ws + r * ow * taps, in, (r0 + r) / oh, (r0 + r) % oh, ow);
        float *o = out + r0 * ow * d->ldo;
        kb_gemm_cpu(threads, false, true, nr * ow, d->k, taps, 1.0f, ws, taps, w, taps, 0.0f, o, d->ldo);
        bias_act(threads, o, nr * ow, d->k, d->ldo, bias, d->relu);
    }
}

/* ------------------------------------------------------------------ pooling */

/* acc = max(acc, px) (mode 0) or acc + px (mode 1) over c channels. The max
 * takes a NaN px and then keeps it (torch's max_pool2d): a NaN anywhere in
 * the window gives NaN, not only as its first element. */
KB_CLONE_INLINE void pool_accumulate(float *restrict acc, const float *restrict px, int64_t c, int mode) {
    if (mode) {
#pragma omp simd
        for (int64_t ci = 0; ci < c; ci++) acc[ci] += px[ci];
    } else {
#pragma omp simd
        for (int64_t ci = 0; ci < c; ci++) acc[ci] = px[ci] > acc[ci] || px[ci] != px[ci] ? px[ci] : acc[ci];
    }
}

/* One output pixel of max (mode 0) or mean over in-image elements (mode 1),
 * channels in the inner loop so that it vectorises; window in row order. */
KB_CLONE_INLINE void pool_pixel(const kb_pool2d_desc *d, float *restrict o, const float *in, int64_t b, int64_t y, int64_t x,
                       int mode) {
    int64_t y0 = y * d->s - d->p, x0 = x * d->s - d->p;
    int64_t y1 = y0 + d->k < d->h ? y0 + d->k : d->h, x1 = x0 + d->k < d->w ? x0 + d->k : d->w;
    if (y0 < 0) y0 = 0;
    if (x0 < 0) x0 = 0;
    int64_t c = d->c;
    memcpy(o, in + ((b * d->h + y0) * d->w + x0) * d->ldi, sizeof(float) * (size_t)c);
    for (int64_t iy = y0; iy < y1; iy++)
        for (int64_t ix = x0; ix < x1; ix++)
            if (iy != y0 || ix != x0) pool_accumulate(o, in + ((b * d->h + iy) * d->w + ix) * d->ldi, c, mode);
    if (mode) {
        float cnt = (float)((y1 - y0) * (x1 - x0)); /* divided, not multiplied by 1/cnt: as PyTorch */
#pragma omp simd
        for (int64_t ci = 0; ci < c; ci++) o[ci] /= cnt;
    }
}

KB_CLONE_INLINE void pool_cpu(int threads, const kb_pool2d_desc *d, float *out, const float *in, int mode) {
    int64_t oh = kb_pool2d_out_h(d), ow = kb_pool2d_out_w(d), rows = d->n * oh;
    int nt = rows * ow * d->c < 16384 ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = r / oh, y = r % oh;
        for (int64_t x = 0; x < ow; x++) pool_pixel(d, out + (r * ow + x) * d->ldo, in, b, y, x, mode);
    }
}

KB_SIMD_CLONES void kb_maxpool2d_cpu(int threads, const kb_pool2d_desc *d, float *out, const float *in) { pool_cpu(threads, d, out, in, 0); }
KB_SIMD_CLONES void kb_avgpool2d_cpu(int threads, const kb_pool2d_desc *d, float *out, const float *in) { pool_cpu(threads, d, out, in, 1); }

KB_SIMD_CLONES void kb_global_avgpool_cpu(int threads, float *out, const float *in, int64_t n, int64_t hw, int64_t c, int64_t ldi) {
    int nt = n * hw * c < 16384 ? 1 : threads;
#pragma omp parallel num_threads(nt)
    {
        double acc[256];
#pragma omp for schedule(static) collapse(2)
        for (int64_t b = 0; b < n; b++)
            for (int64_t c0 = 0; c0 < c; c0 += 256) {
                int64_t cn = c - c0 < 256 ? c - c0 : 256;
                for (int64_t j = 0; j < cn; j++) acc[j] = 0.0;
                for (int64_t p = 0; p < hw; p++) {
                    const float *px = in + (b * hw + p) * ldi + c0;
                    for (int64_t j = 0; j < cn; j++) acc[j] += px[j];
                }
                for (int64_t j = 0; j < cn; j++) out[b * c + c0 + j] = (float)(acc[j] / (double)hw);
            }
    }
}
