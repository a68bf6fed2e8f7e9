/* Radially averaged power spectra and their distance (see spectral.h). */
#include "metrics/spectral.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <fftw3.h>

/* Signed frequency index of position u of an n-point FFT (numpy fftfreq * n). */
static int64_t signed_freq(int64_t u, int64_t n) { return u < (n + 1) / 2 ? u : u - n; }

/* Bin of each half-spectrum entry and the full-plane count per bin. */
static void make_bins(kb_spectrum *s) {
    int64_t h = s->h, w = s->w, wc = w / 2 + 1, n = h < w ? h : w;
    for (int64_t u = 0; u < h; u++)
        for (int64_t v = 0; v < wc; v++) {
            double a = (double)signed_freq(u, h) * (double)n / (double)h, b = (double)v * (double)n / (double)w;
            int64_t k = (int64_t)floor(sqrt(a * a + b * b) + 0.5);
            int mirrored = v > 0 && !(w % 2 == 0 && v == w / 2); /* (-u, -v) is implied */
            s->bin[u * wc + v] = k <= s->nbins ? (int)k : -1;
            if (k <= s->nbins) s->count[k] += mirrored ? 2 : 1;
        }
}

int kb_spectrum_init(kb_spectrum *s, int h, int w, kb_err *err) {
    memset(s, 0, sizeof *s);
    if (h < 2 || w < 2)
        return kb_fail(err, "spectral distance: images of %dx%d have no frequency bins (need at least 2x2)", w, h);
    if (h > 16384 || w > 16384)
        return kb_fail(err, "spectral distance: images of %dx%d are past the supported 16384 per side", w, h);
    s->h = h, s->w = w, s->nbins = (h < w ? h : w) / 2;
    size_t wc = (size_t)(w / 2 + 1);
    s->power = calloc((size_t)s->nbins + 1, sizeof(double));
    s->count = calloc((size_t)s->nbins + 1, sizeof(int64_t));
    s->bin = malloc((size_t)h * wc * sizeof(int));
    s->in = fftw_malloc((size_t)h * (size_t)w * sizeof(double));
    s->out = fftw_malloc((size_t)h * wc * sizeof(fftw_complex));
    if (s->power && s->count && s->bin && s->in && s->out)
        s->plan = fftw_plan_dft_r2c_2d(h, w, s->in, (fftw_complex *)s->out, FFTW_ESTIMATE);
    if (!s->plan) {
        kb_spectrum_free(s);
        return kb_fail(err, "spectral distance: cannot set up a %dx%d FFT (out of memory)", w, h);
    }
    make_bins(s);
    return 0;
}

void kb_spectrum_free(kb_spectrum *s) {
    if (s->plan) fftw_destroy_plan((fftw_plan)s->plan);
    fftw_free(s->in);
    fftw_free(s->out);
    free(s->power);
    free(s->count);
    free(s->bin);
    memset(s, 0, sizeof *s);
}

static void luminance(const uint8_t *img, int64_t npx, int c, double *y) {
    for (int64_t i = 0; i < npx; i++) {
        const uint8_t *p = img + i * c;
        y[i] = c < 3 ? p[0] / 255.0 : (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]) / 255.0;
    }
}

int kb_spectrum_add(kb_spectrum *s, const uint8_t *img, int h, int w, int c, const char *what, kb_err *err) {
    if (h != s->h || w != s->w)
        return kb_fail(err, "%s: image is %dx%d, the set's spectrum is %dx%d (the spectral distance needs one size)", what,
                       w, h, s->w, s->h);
    if (c < 1 || c > 4) return kb_fail(err, "%s: %d channels (expected 1 to 4)", what, c);
    luminance(img, (int64_t)h * w, c, s->in);
    fftw_execute((fftw_plan)s->plan);
    const fftw_complex *f = (const fftw_complex *)s->out;
    int64_t wc = w / 2 + 1, hw = (int64_t)h * w;
    for (int64_t u = 0; u < h; u++)
        for (int64_t v = 0; v < wc; v++) {
            int k = s->bin[u * wc + v];
            if (k < 0) continue;
            const double *z = f[u * wc + v];
            int mirrored = v > 0 && !(w % 2 == 0 && v == w / 2);
            s->power[k] += (mirrored ? 2.0 : 1.0) * (z[0] * z[0] + z[1] * z[1]) / (double)hw;
        }
    s->images++;
    return 0;
}

int kb_spectrum_curve(const kb_spectrum *s, double *curve, const char *what, kb_err *err) {
    if (s->images < 1) return kb_fail(err, "%s: no images for the spectral distance", what);
    for (int k = 1; k <= s->nbins; k++) {
        double mean = s->power[k] / ((double)s->count[k] * (double)s->images);
        if (!(mean > 0))
            return kb_fail(err, "%s: zero power in spectral bin %d of %d (constant images have no spectrum to compare)",
                           what, k, s->nbins);
        curve[k - 1] = log10(mean);
    }
    return 0;
}

int kb_spectral_distance(const double *a, int ka, const double *b, int kb, double *out, kb_err *err) {
    if (ka != kb || ka < 1)
        return kb_fail(err, "spectral distance: the spectra have %d and %d frequency bins (images of different sizes?)",
                       ka, kb);
    double s = 0.0;
    for (int k = 0; k < ka; k++) {
        if (!isfinite(a[k]) || !isfinite(b[k])) return kb_fail(err, "spectral distance: bin %d is not finite", k + 1);
        s += fabs(a[k] - b[k]);
    }
    *out = s / ka;
    return 0;
}
