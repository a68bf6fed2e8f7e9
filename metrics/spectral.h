/* Spectral distance (kindbench's own metric; none of the peers offer it):
 * how far apart the radially averaged power spectra of two image sets are,
 * a cheap check of high-frequency artefacts (checkerboards, over-smoothing)
 * that Inception features barely see.
 *
 * Definition (tests/ref/metrics_ref.py implements the same in numpy):
 *  1. Each image becomes luminance Y = (0.299 R + 0.587 G + 0.114 B) / 255
 *     in double (grey images: Y = L / 255; alpha is ignored), no rounding.
 *  2. P(u, v) = |FFT2(Y)(u, v)|^2 / (H W) (FFTW, no window, mean kept).
 *  3. With signed frequency indices fu (numpy fftfreq(H) * H) and fv, and
 *     N = min(H, W): r = sqrt((fu N / H)^2 + (fv N / W)^2) and the bin is
 *     k = floor(r + 0.5); bins k = 1 .. K = floor(N / 2) are kept (k = 0 is
 *     the mean brightness; r beyond K + 1/2, the corners, is dropped).
 *  4. S_k = log10 of the mean of P over every image of the set and every
 *     frequency of bin k (over the full plane: FFTW's half spectrum is
 *     weighted by 2 where the mirrored frequency is implied).
 *  5. Distance = (1 / K) sum_k |S_k(A) - S_k(B)|: the mean absolute log10
 *     ratio of the two spectra, 0 for identical spectra; 0.1 means the
 *     power differs by a factor 10^0.1 = 1.26 on average over frequencies.
 * Both sets must have the same image size (the curves are compared bin by
 * bin). */
#ifndef KB_METRICS_SPECTRAL_H
#define KB_METRICS_SPECTRAL_H

#include <stdint.h>

#include "util/err.h"

/* An accumulator for one image set (owns an FFTW plan and buffers). */
typedef struct {
    int h, w;
    int nbins;          /* K: bins 1..K */
    int64_t images;
    double *power;      /* [K + 1] sums of P over images and frequencies */
    int64_t *count;     /* [K + 1] frequencies per bin in one image (full plane) */
    int *bin;           /* [h * (w/2 + 1)] bin of each half-spectrum entry, -1: dropped */
    double *in;         /* [h * w] luminance */
    void *out;          /* fftw_complex [h * (w/2 + 1)] */
    void *plan;         /* fftw_plan */
} kb_spectrum;

int kb_spectrum_init(kb_spectrum *s, int h, int w, kb_err *err);
void kb_spectrum_free(kb_spectrum *s);
/* Adds one image [h, w, c] uint8 (c = 1..4); its size must be the set's. */
int kb_spectrum_add(kb_spectrum *s, const uint8_t *img, int h, int w, int c, const char *what, kb_err *err);
/* S_1..S_K into curve[K]; fails when no image was added or a bin has zero
 * power (constant images), naming `what`. */
int kb_spectrum_curve(const kb_spectrum *s, double *curve, const char *what, kb_err *err);
/* (1/K) sum |a_k - b_k|; fails on different lengths or non-finite values. */
int kb_spectral_distance(const double *a, int ka, const double *b, int kb, double *out, kb_err *err);

#endif
