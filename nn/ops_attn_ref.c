/* Reference of the fused bf16 attention (nn/ops_attn.h): the kernels'
 * arithmetic written out plainly, one (sample, head) at a time. It rounds
 * where the kernels round and forms the row statistics over 64-key tiles in
 * the kernels' order; the kernels' tensor-core dot products sum in an order
 * of their own, so the two agree to fp32 rounding of those sums (and the odd
 * bf16 ulp where that rounding tips a value over a bf16 boundary). */
#include "nn/ops_attn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TILE 64 /* keys per tile of the row statistics, as in the kernels */

float kb_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x; /* NaN, infinities */
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

/* Head h of sample b of part (0 q, 1 k, 2 v) of qkv, rounded to bf16: [T, hd]. */
static void gather_bf16(float *dst, const float *src, int64_t row_stride, int64_t T, int64_t hd) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < hd; c++) dst[t * hd + c] = kb_bf16_round(src[t * row_stride + c]);
}

static float dot(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* One row's forward over tiles of 64 keys as the kernels run it
 * (FlashAttention-2's online softmax): s the row's scaled scores, v the
 * head's bf16 values [T][hd]; o (hd) gets out, the return value is lse. Each
 * tile's sum is taken in the kernels' order: a lane t of the four that hold
 * a row sums columns 8j + 2t and 8j + 2t + 1 for j = 0..7 in turn, and the
 * row's sum is (lane 0 + lane 1) + (lane 2 + lane 3). */
static float row_forward(float *o, const float *s, const float *v, int64_t T, int64_t hd) {
    float m = -INFINITY, l = 0.0f, p[TILE];
    for (int64_t c = 0; c < hd; c++) o[c] = 0.0f;
    for (int64_t k0 = 0; k0 < T; k0 += TILE) {
        int64_t n = T - k0 < TILE ? T - k0 : TILE;
        float mx = -INFINITY, part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int64_t j = 0; j < n; j++) mx = fmaxf(mx, s[k0 + j]);
        float m_new = fmaxf(m, mx), alpha = expf(m - m_new);
        m = m_new;
        for (int64_t j = 0; j < TILE; j++) p[j] = j < n ? expf(s[k0 + j] - m) : 0.0f;
        for (int64_t j = 0; j < TILE; j++) part[(j % 8) / 2] += p[j]; /* j ascending: each lane's order */
        l = l * alpha + ((part[0] + part[1]) + (part[2] + part[3]));
        for (int64_t c = 0; c < hd; c++) o[c] *= alpha;
        for (int64_t j = 0; j < n; j++) {
            float pb = kb_bf16_round(p[j]);
            for (int64_t c = 0; c < hd; c++) o[c] += pb * v[(k0 + j) * hd + c];
        }
    }
    for (int64_t c = 0; c < hd; c++) o[c] /= l;
    return m + logf(l);
}

typedef struct {
    float *q, *k, *v, *s;
} head_bufs;

static int bufs_alloc(head_bufs *hb, int64_t T, int64_t hd) {
    hb->q = malloc((size_t)(T * hd) * sizeof(float)), hb->k = malloc((size_t)(T * hd) * sizeof(float));
    hb->v = malloc((size_t)(T * hd) * sizeof(float)), hb->s = malloc((size_t)T * sizeof(float));
    return hb->q && hb->k && hb->v && hb->s ? 0 : -1;
}

static void bufs_free(head_bufs *hb) {
    free(hb->q), free(hb->k), free(hb->v), free(hb->s);
}

static void load_head(head_bufs *hb, const float *qkv, int64_t b, int64_t h, int64_t T, int64_t d, int64_t hd) {
    const float *base = qkv + b * T * 3 * d + h * hd;
    gather_bf16(hb->q, base, 3 * d, T, hd);
    gather_bf16(hb->k, base + d, 3 * d, T, hd);
    gather_bf16(hb->v, base + 2 * d, 3 * d, T, hd);
}

void kb_attn_fused_fwd_ref(float *out, float *lse, const float *qkv, int64_t B, int64_t T, int64_t d, int64_t H) {
    int64_t hd = d / H;
    float scale = 1.0f / sqrtf((float)hd);
    head_bufs hb;
    if (bufs_alloc(&hb, T, hd)) abort(); /* a reference: test-sized inputs only */
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            load_head(&hb, qkv, b, h, T, d, hd);
            for (int64_t i = 0; i < T; i++) {
                for (int64_t j = 0; j < T; j++) hb.s[j] = dot(hb.q + i * hd, hb.k + j * hd, hd) * scale;
                lse[(b * H + h) * T + i] = row_forward(out + (b * T + i) * d + h * hd, hb.s, hb.v, T, hd);
            }
        }
    bufs_free(&hb);
}

/* D[b, h, i] = sum_c dout[b, i, h*hd + c] * out[b, i, h*hd + c] */
static void row_delta(float *delta, const float *dout, const float *out, int64_t B, int64_t T, int64_t d, int64_t H) {
    int64_t hd = d / H;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                int64_t at = (b * T + i) * d + h * hd;
                delta[(b * H + h) * T + i] = dot(dout + at, out + at, hd);
            }
}

void kb_attn_fused_bwd_ref(float *dqkv, float *delta, const float *dout, const float *out, const float *qkv,
                           const float *lse, int64_t B, int64_t T, int64_t d, int64_t H) {
    int64_t hd = d / H;
    float scale = 1.0f / sqrtf((float)hd);
    head_bufs hb;
    float *go = malloc((size_t)(T * hd) * sizeof(float));
    if (bufs_alloc(&hb, T, hd) || !go) abort();
    row_delta(delta, dout, out, B, T, d, H);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            load_head(&hb, qkv, b, h, T, d, hd);
            gather_bf16(go, dout + b * T * d + h * hd, d, T, hd);
            float *dq = dqkv + b * T * 3 * d + h * hd, *dk = dq + d, *dv = dq + 2 * d;
            for (int64_t t = 0; t < T; t++)
                for (int64_t c = 0; c < hd; c++) dq[t * 3 * d + c] = dk[t * 3 * d + c] = dv[t * 3 * d + c] = 0.0f;
            for (int64_t i = 0; i < T; i++) {
                float l = lse[(b * H + h) * T + i], D = delta[(b * H + h) * T + i];
                for (int64_t j = 0; j < T; j++) {
                    float p = expf(dot(hb.q + i * hd, hb.k + j * hd, hd) * scale - l);
                    float dp = dot(go + i * hd, hb.v + j * hd, hd);
                    float pb = kb_bf16_round(p), ds = kb_bf16_round(p * (dp - D));
                    for (int64_t c = 0; c < hd; c++) {
                        dv[j * 3 * d + c] += pb * go[i * hd + c];
                        dk[j * 3 * d + c] += ds * hb.q[i * hd + c];
                        dq[i * 3 * d + c] += ds * hb.k[j * hd + c];
                    }
                }
            }
            for (int64_t t = 0; t < T; t++)
                for (int64_t c = 0; c < hd; c++) dq[t * 3 * d + c] *= scale, dk[t * 3 * d + c] *= scale;
        }
    free(go);
    bufs_free(&hb);
}
