/* Index arithmetic shared by every variant of the DiT ops (reference, fast CPU,
 * CUDA), so the layouts are defined once. */
#ifndef KB_OPS_DIT_INDEX_H
#define KB_OPS_DIT_INDEX_H

#include <stdint.h>

#include "nn/ops_dit.h"
#include "nn/rng.h" /* KB_HD */

/* Position inside a token's patch vector of pixel (c, i, j) of the patch. */
KB_HD int64_t kb_patch_slot(kb_patch_order order, int64_t C, int64_t p, int64_t c, int64_t i, int64_t j) {
    return order == KB_PATCH_CPQ ? (c * p + i) * p + j : (i * p + j) * C + c;
}

/* Flat index in tokens[B, T, C*p*p] of image element img[b, c, y, x]. */
KB_HD int64_t kb_patch_token_index(kb_patch_order order, int64_t C, int64_t H, int64_t W, int64_t p, int64_t b,
                                   int64_t c, int64_t y, int64_t x) {
    int64_t gw = W / p, T = (H / p) * gw, K = C * p * p;
    int64_t t = (y / p) * gw + (x / p);
    return (b * T + t) * K + kb_patch_slot(order, C, p, c, y % p, x % p);
}

#endif
