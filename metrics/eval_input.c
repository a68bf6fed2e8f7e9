/* Image inputs of `kindbench eval` and the featurisation pass (see the header). */
#include "metrics/eval_input.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/image_io.h"
#include "datasets/source.h"
#include "metrics/features_partial.h"
#include "metrics/spectral.h"
#include "util/fileio.h"
#include "util/progress.h"
#include "util/sha256.h"

#define KB_FOLDER_MAX_DEPTH 32

void kb_input_filter_all(kb_input_filter *f) {
    f->split = KB_SPLIT_ANY;
    f->role = KB_ROLE_ANY;
}

const char *kb_input_kind_name(kb_input_kind k) {
    switch (k) {
    case KB_INPUT_FOLDER: return "image folder";
    case KB_INPUT_NPZ: return "npz arr_0";
    default: return "dataset cache";
    }
}

/* ------------------------------------------------------------- folders */

/* 1: an image we decode, 2: an image format we cannot decode, 0: other.
 * Together the two lists hold pytorch-fid's IMAGE_EXTENSIONS (bmp jpg jpeg
 * pgm png ppm tif tiff webp) plus gif, which we decode and it does not: a
 * file pytorch-fid would measure is never silently left out here, and one
 * we cannot decode is an error naming it. Unlike pytorch-fid (lower-case
 * names, top level only, hidden files too) any case is taken, folders are
 * scanned recursively and hidden entries skipped (docs/metrics.md). */
static int image_kind(const char *name) {
    static const char *ok[] = {"png", "jpg", "jpeg", "gif"};
    static const char *no[] = {"bmp", "tif", "tiff", "webp", "pgm", "ppm"};
    const char *dot = strrchr(name, '.');
    char ext[8] = "";
    if (!dot || strlen(dot + 1) >= sizeof ext) return 0;
    for (int i = 0; dot[1 + i]; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(ext, ok[i])) return 1;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (!strcmp(ext, no[i])) return 2;
    return 0;
}

static int add_file(kb_image_input *in, const char *path, kb_err *err) {
    if (in->count == in->files_cap) {
        int64_t cap = in->files_cap ? in->files_cap * 2 : 256;
        char **g = realloc(in->files, (size_t)cap * sizeof *g);
        if (!g) return kb_fail(err, "%s: out of memory listing images", in->path);
        in->files = g, in->files_cap = cap;
    }
    if (!(in->files[in->count] = strdup(path))) return kb_fail(err, "%s: out of memory listing images", in->path);
    in->count++;
    return 0;
}

static int scan_dir(kb_image_input *in, const char *dir, int depth, kb_err *err) {
    if (depth > KB_FOLDER_MAX_DEPTH) return kb_fail(err, "%s: folders nested deeper than %d (a symlink loop?)", dir, KB_FOLDER_MAX_DEPTH);
    char **names;
    int n, rc = 0;
    if (kb_list_dir(dir, &names, &n, err)) return -1;
    for (int i = 0; !rc && i < n; i++) {
        char p[4096];
        if (names[i][0] == '.') continue;
        if (kb_path_join(p, sizeof p, dir, names[i], err)) rc = -1;
        else if (kb_is_dir(p)) rc = scan_dir(in, p, depth + 1, err);
        else if (image_kind(names[i]) == 2)
            rc = kb_fail(err, "%s: image format not supported (PNG, JPEG and GIF are; convert it or move it out)", p);
        else if (image_kind(names[i]) == 1) rc = add_file(in, p, err);
        else in->ignored++;
    }
    kb_names_free(names, n);
    return rc;
}

/* --------------------------------------------------------- npz and kbd */

/* arr_0 described from its header (not read: kb_image_input_load_data).
 * The file is opened once and held until kb_image_input_close, so its hash
 * (the features cache key), its shape (the plan) and its images come from
 * one file even when a writer renames another onto the path meanwhile
 * (`sample` writing there again): opening it by path for each, a cache entry
 * could be stored under the other file's hash. */
static int open_npz(kb_image_input *in, kb_err *err) {
    int fd = open(in->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kb_fail(err, "%s: cannot open: %s", in->path, strerror(errno));
    if (!(in->npz = kb_npz_fdopen(fd, in->path, err))) return close(fd), -1;
    in->npz_fd = fd;
    if (kb_npz_peek(in->npz, "arr_0", &in->arr, err)) return -1;
    kb_npy *a = &in->arr;
    if (a->dtype != KB_U8 || (a->ndim != 4 && a->ndim != 3))
        return kb_fail(err, "%s: arr_0 must be uint8 images [N, H, W, C] (an ADM batch), got %s with %d dimensions",
                       in->path, kb_dtype_name(a->dtype), a->ndim);
    in->count = a->shape[0], in->h = (int)a->shape[1], in->w = (int)a->shape[2];
    in->c = a->ndim == 4 ? (int)a->shape[3] : 1;
    if (in->c < 1 || in->c > 4) return kb_fail(err, "%s: arr_0 has %d channels (expected 1, 3 or 4)", in->path, in->c);
    if (in->count > 0 && (in->h < 1 || in->w < 1)) return kb_fail(err, "%s: arr_0 images are %dx%d", in->path, in->w, in->h);
    return 0;
}

int kb_image_input_load_data(kb_image_input *in, kb_err *err) {
    if (in->kind != KB_INPUT_NPZ || in->arr.data) return 0;
    kb_npy a;
    if (kb_npz_get(in->npz, "arr_0", &a, err)) return -1;
    int same = a.dtype == in->arr.dtype && a.ndim == in->arr.ndim;
    for (int d = 0; same && d < a.ndim; d++) same = a.shape[d] == in->arr.shape[d];
    if (!same) { /* written over in place since it was probed: the plan's counts would be wrong */
        kb_npy_free(&a);
        return kb_fail(err, "%s: arr_0 changed while this evaluation ran (its shape is no longer the one opened)",
                       in->path);
    }
    in->arr = a;
    return 0;
}

static int open_kbd(kb_image_input *in, int quiet, kb_err *err) {
    const kb_dataset_open_opts o = {.verify = KB_VERIFY_ONCE, .quiet = quiet};
    if (kb_dataset_open_with(&in->ds, in->path, &o, err)) return -1;
    in->ds_open = 1;
    in->h = in->w = in->ds.resolution, in->c = in->ds.channels;
    return kb_dataset_select(&in->ds, in->filter.role, in->filter.split, &in->index, &in->count, err);
}

int kb_image_input_probe(const char *path, const kb_input_filter *f, int quiet, kb_image_input *in, kb_err *err) {
    memset(in, 0, sizeof *in);
    if (f) in->filter = *f;
    else kb_input_filter_all(&in->filter);
    int filtered = in->filter.split != KB_SPLIT_ANY || in->filter.role != KB_ROLE_ANY;
    if (snprintf(in->path, sizeof in->path, "%s", path) >= (int)sizeof in->path) return kb_fail(err, "%s: path too long", path);
    int rc;
    if (kb_is_dir(path)) in->kind = KB_INPUT_FOLDER, rc = scan_dir(in, path, 0, err);
    else if (!kb_is_file(path)) return kb_fail(err, "%s: no such file or directory", path);
    else if (kb_has_suffix(path, ".kbd")) in->kind = KB_INPUT_KBD, rc = open_kbd(in, quiet, err);
    else in->kind = KB_INPUT_NPZ, rc = open_npz(in, err);
    if (!rc && in->kind != KB_INPUT_KBD && filtered)
        rc = (kb_fail(err, "%s: split and class filters apply to .kbd dataset caches only", path), KB_INPUT_MISFIT);
    else if (!rc && in->count == 0 && in->kind == KB_INPUT_KBD && filtered)
        rc = (kb_fail(err, "%s: no images match the split/class filter", path), KB_INPUT_MISFIT);
    else if (!rc && in->count == 0)
        rc = kb_fail(err, "%s: no images%s", path,
                     in->kind == KB_INPUT_FOLDER ? " (PNG, JPEG or GIF files, searched recursively)"
                     : in->kind == KB_INPUT_KBD  ? " in the cache"
                                                 : " in arr_0");
    if (rc) kb_image_input_close(in);
    return rc;
}

int kb_image_input_open(const char *path, const kb_input_filter *f, int quiet, kb_image_input *in, kb_err *err) {
    int rc = kb_image_input_probe(path, f, quiet, in, err);
    if (!rc && (rc = kb_image_input_load_data(in, err))) kb_image_input_close(in);
    return rc;
}

void kb_image_input_close(kb_image_input *in) {
    for (int64_t i = 0; i < in->count && in->files; i++) free(in->files[i]);
    free(in->files);
    kb_npy_free(&in->arr);
    if (in->npz) kb_npz_close(in->npz), close(in->npz_fd);
    if (in->ds_open) kb_dataset_close(&in->ds);
    free(in->index);
    memset(in, 0, sizeof *in);
}

/* ------------------------------------------------------------- loading */

/* Replaces img by its RGB version (PIL convert('RGB'): grey replicated, alpha dropped). */
static int to_rgb(kb_image *img, kb_err *err) {
    if (img->channels == 3) return 0;
    kb_image out;
    if (kb_image_alloc(&out, img->width, img->height, 3, err)) return -1;
    int c = img->channels;
    for (int64_t i = 0; i < (int64_t)img->width * img->height; i++)
        for (int k = 0; k < 3; k++) out.px[i * 3 + k] = img->px[i * c + (c >= 3 ? k : 0)];
    kb_image_free(img);
    *img = out;
    return 0;
}

static int load_fixed(const uint8_t *src, int h, int w, int c, kb_image *img, kb_err *err) {
    if (kb_image_alloc(img, w, h, c, err)) return -1;
    memcpy(img->px, src, (size_t)h * w * c);
    return 0;
}

int kb_image_input_load(const kb_image_input *in, int64_t i, kb_image *img, kb_err *err) {
    memset(img, 0, sizeof *img);
    int rc;
    if (in->kind == KB_INPUT_FOLDER) rc = kb_image_read_as_pil(in->files[i], img, err); /* pytorch-fid's pixels */
    else if (in->kind == KB_INPUT_NPZ)
        rc = load_fixed((const uint8_t *)in->arr.data + (size_t)i * in->h * in->w * in->c, in->h, in->w, in->c, img, err);
    else rc = load_fixed(kb_dataset_image(&in->ds, in->index[i]), in->h, in->w, in->c, img, err);
    if (!rc) rc = to_rgb(img, err);
    if (rc) kb_image_free(img);
    return rc;
}

/* ------------------------------------------------------------- hashing */

static void hash_u64(kb_sha256 *h, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    kb_sha256_update(h, b, 8);
}

static int hash_folder(const kb_image_input *in, kb_sha256 *h, kb_err *err) {
    size_t root = strlen(in->path);
    for (int64_t i = 0; i < in->count; i++) {
        uint8_t *data;
        size_t n;
        if (kb_read_file(in->files[i], &data, &n, err)) return -1;
        const char *rel = in->files[i] + root;
        kb_sha256_update(h, rel, strlen(rel) + 1);
        hash_u64(h, n);
        kb_sha256_update(h, data, n);
        free(data);
    }
    return 0;
}

int kb_image_input_hash(const kb_image_input *in, char out[65], kb_err *err) {
    uint8_t dg[32];
    if (in->kind == KB_INPUT_NPZ) {
        if (kb_sha256_fd(in->npz_fd, in->path, dg, err)) return -1;
        kb_sha256_hex(dg, out);
        return 0;
    }
    kb_sha256 *h = kb_sha256_new();
    if (!h) return kb_fail(err, "%s: cannot start a SHA-256", in->path);
    int rc = 0;
    if (in->kind == KB_INPUT_FOLDER) rc = hash_folder(in, h, err);
    else {
        char sel[160];
        snprintf(sel, sizeof sel, "kbd %s split %d role %d", in->ds.payload_sha256, (int)in->filter.split,
                 (int)in->filter.role);
        kb_sha256_update(h, sel, strlen(sel));
    }
    kb_sha256_final(h, dg); /* also frees h on the error path */
    if (!rc) kb_sha256_hex(dg, out);
    return rc;
}

int kb_image_input_pack(const kb_image_input *in, uint8_t **data, int *h, int *w, kb_err *err) {
    *data = NULL;
    uint8_t *out = NULL;
    for (int64_t i = 0; i < in->count; i++) {
        kb_image img;
        if (kb_image_input_load(in, i, &img, err)) return free(out), -1;
        int ih = img.height, iw = img.width;
        if (i == 0) {
            *h = ih, *w = iw;
            out = malloc((size_t)in->count * (size_t)ih * (size_t)iw * 3);
        }
        size_t bytes = (size_t)ih * iw * 3;
        if (out && ih == *h && iw == *w) memcpy(out + (size_t)i * bytes, img.px, bytes);
        kb_image_free(&img);
        if (!out) return kb_fail(err, "%s: out of memory packing %lld images", in->path, (long long)in->count);
        if (ih != *h || iw != *w)
            return free(out), kb_fail(err, "%s: image %lld is %dx%d, the first %dx%d: arr_0 needs one size", in->path,
                                      (long long)i, iw, ih, *w, *h);
    }
    *data = out;
    return 0;
}

/* --------------------------------------------------------- featurising */

typedef struct {
    const kb_image_input *in;
    const kb_featurizer *fz;
    kb_features *f;
    float *spatial;  /* [n, spatial_dim] until summarised */
    uint8_t *buf;    /* one run of same-size images, packed */
    size_t bufcap;
    kb_spectrum spec;
    int spec_state;  /* 0: not started, 1: accumulating, -1: off (spectrum_note says why) */
    char note[256];
    kb_fpartial part; /* the features so far, on file (part.fp NULL: not kept) */
} fz_pass;

/* Images per featuriser call, which is also the partial file's batch. */
static int pass_batch(const kb_featurizer *fz) { return fz->batch > 0 ? fz->batch : 64; }

static float *row_of(float *base, int64_t row, int64_t dim) { return base && dim ? base + row * dim : NULL; }

/* Decodes images [first, first+n) in parallel; the first failure (in index order) is reported. */
static int decode_chunk(const kb_image_input *in, int64_t first, int64_t n, kb_image *imgs, kb_err *err) {
    kb_err *errs = calloc((size_t)n, sizeof *errs);
    int *bad = calloc((size_t)n, sizeof *bad);
    if (!errs || !bad) return free(errs), free(bad), kb_fail(err, "%s: out of memory decoding", in->path);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) bad[i] = kb_image_input_load(in, first + i, &imgs[i], &errs[i]) != 0;
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++)
        if (bad[i]) rc = kb_fail(err, "%s", errs[i].msg);
    free(errs);
    free(bad);
    return rc;
}

static void spectrum_add(fz_pass *p, const kb_image *img, int64_t idx) {
    kb_err e;
    if (p->spec_state == 0) {
        if (kb_spectrum_init(&p->spec, img->height, img->width, &e)) {
            p->spec_state = -1;
            snprintf(p->note, sizeof p->note, "%.250s", e.msg);
            return;
        }
        p->spec_state = 1;
    }
    if (p->spec_state != 1) return;
    if (img->height != p->spec.h || img->width != p->spec.w) {
        snprintf(p->note, sizeof p->note, "image %lld is %dx%d, the first %dx%d: the spectrum needs one size",
                 (long long)idx, img->width, img->height, p->spec.w, p->spec.h);
        kb_spectrum_free(&p->spec);
        p->spec_state = -1;
        return;
    }
    kb_spectrum_add(&p->spec, img->px, img->height, img->width, 3, p->in->path, &e);
}

/* Featurises imgs[a..b) (same size), rows first+a onwards. */
static int run_featurizer(fz_pass *p, kb_image *imgs, int64_t a, int64_t b, int64_t first, kb_err *err) {
    int h = imgs[a].height, w = imgs[a].width;
    size_t one = (size_t)h * w * 3, need = one * (size_t)(b - a);
    if (need > p->bufcap) {
        uint8_t *g = realloc(p->buf, need);
        if (!g) return kb_fail(err, "%s: out of memory for a batch of %lld %dx%d images", p->in->path, (long long)(b - a), w, h);
        p->buf = g, p->bufcap = need;
    }
    for (int64_t i = a; i < b; i++) memcpy(p->buf + (size_t)(i - a) * one, imgs[i].px, one);
    const kb_featurizer *fz = p->fz;
    int64_t r = first + a;
    if (fz->fn(fz->user, p->buf, b - a, h, w, row_of(p->f->pool, r, fz->pool_dim), row_of(p->spatial, r, fz->spatial_dim),
               row_of(p->f->logits, r, fz->logits_dim), err))
        return kb_fail_wrap(err, "%s: images %lld..%lld", p->in->path, (long long)r, (long long)(first + b - 1));
    return 0;
}

/* One chunk: decode, spectrum, featurise runs of equal size (not when
 * its features came from the partial file: then the images are decoded for
 * the spectrum only, which adds them in image order either way). */
static int do_chunk(fz_pass *p, int64_t first, int64_t n, kb_image *imgs, int featurize, kb_err *err) {
    if (!featurize && p->spec_state == -1) return 0;
    int rc = decode_chunk(p->in, first, n, imgs, err);
    for (int64_t i = 0; !rc && i < n; i++) spectrum_add(p, &imgs[i], first + i);
    for (int64_t a = 0; !rc && featurize && a < n;) {
        int64_t b = a + 1;
        while (b < n && imgs[b].height == imgs[a].height && imgs[b].width == imgs[a].width) b++;
        rc = run_featurizer(p, imgs, a, b, first, err);
        a = b;
    }
    for (int64_t i = 0; i < n; i++) kb_image_free(&imgs[i]);
    return rc;
}

static int alloc_outputs(fz_pass *p, int64_t n, kb_err *err) {
    const kb_featurizer *fz = p->fz;
    kb_features *f = p->f;
    f->n = n, f->pool_dim = fz->pool_dim, f->logits_dim = fz->logits_dim;
    if (fz->pool_dim) f->pool = malloc((size_t)(n * fz->pool_dim) * sizeof(float));
    if (fz->logits_dim) f->logits = malloc((size_t)(n * fz->logits_dim) * sizeof(float));
    if (fz->spatial_dim) p->spatial = malloc((size_t)(n * fz->spatial_dim) * sizeof(float));
    if ((fz->pool_dim && !f->pool) || (fz->logits_dim && !f->logits) || (fz->spatial_dim && !p->spatial))
        return kb_fail(err, "%s: out of memory for the features of %lld images", p->in->path, (long long)n);
    return 0;
}

/* Keeps a chunk's features on file; a failure to (a full disk) only ends
 * the keeping, with a warning: the featurisation itself goes on. */
static void keep_chunk(fz_pass *p, int64_t first, int64_t k) {
    kb_err e;
    if (!p->part.fp || !kb_fpartial_append(&p->part, first, k, p->f->pool, p->spatial, p->f->logits, &e)) return;
    fprintf(stderr, "kindbench: warning: %s; this featurisation cannot be resumed\n", e.msg);
    kb_fpartial_close(&p->part, 1);
}

static int run_pass(fz_pass *p, const char *what, int quiet, kb_err *err) {
    int64_t n = p->in->count, batch = pass_batch(p->fz), start = p->part.done;
    kb_image *imgs = calloc((size_t)batch, sizeof *imgs);
    if (!imgs) return kb_fail(err, "out of memory");
    kb_progress pg;
    char label[64];
    snprintf(label, sizeof label, "features of %s", what);
    if (start && !quiet)
        fprintf(stderr, "%s: resuming at image %lld of %lld (features so far in %s)\n", p->in->path, (long long)start,
                (long long)n, p->part.path);
    kb_progress_start(&pg, label, n, quiet);
    int rc = 0;
    for (int64_t first = 0; !rc && first < n; first += batch) {
        int64_t k = first + batch < n ? batch : n - first;
        rc = do_chunk(p, first, k, imgs, first >= start, err);
        if (!rc && first >= start) keep_chunk(p, first, k);
        kb_progress_update(&pg, first + k);
    }
    kb_progress_finish(&pg); /* ends the bar's line before any error message */
    free(imgs);
    return rc;
}

/* Statistics of the pool and spatial features (n >= 2), spectrum curve. */
static int summarise(fz_pass *p, kb_evalset *out, kb_err *err) {
    const kb_featurizer *fz = p->fz;
    int64_t n = out->feat.n;
    char what[4200];
    snprintf(what, sizeof what, "%s (%s)", p->in->path, out->label);
    if (n >= 2 && fz->pool_dim) {
        if (kb_gstats_compute(out->feat.pool, n, fz->pool_dim, what, &out->pool_stats, err)) return -1;
        out->has_pool_stats = 1;
    }
    if (n >= 2 && fz->spatial_dim) {
        if (kb_gstats_compute(p->spatial, n, fz->spatial_dim, what, &out->spatial_stats, err)) return -1;
        out->has_spatial_stats = 1;
    }
    if (p->spec_state == 1) {
        kb_err e;
        out->spectrum = malloc((size_t)p->spec.nbins * sizeof(double));
        if (!out->spectrum) return kb_fail(err, "out of memory");
        if (kb_spectrum_curve(&p->spec, out->spectrum, p->in->path, &e)) {
            free(out->spectrum), out->spectrum = NULL;
            snprintf(out->spectrum_note, sizeof out->spectrum_note, "%.250s", e.msg);
        } else {
            out->spectrum_bins = p->spec.nbins, out->spectrum_h = p->spec.h, out->spectrum_w = p->spec.w;
        }
    } else {
        snprintf(out->spectrum_note, sizeof out->spectrum_note, "%s", p->note);
    }
    return 0;
}

static void record_meta(const kb_image_input *in, const kb_featurizer *fz, kb_evalset *out) {
    kb_stats_meta *m = &out->meta;
    snprintf(m->mode, sizeof m->mode, "%s", fz->mode);
    snprintf(m->featurizer, sizeof m->featurizer, "%s", fz->id);
    snprintf(m->weights_sha256, sizeof m->weights_sha256, "%s", fz->weights_sha256);
    snprintf(m->source, sizeof m->source, "%.500s", in->path);
    m->count = in->count;
}

/* Opens the partial file, loading the rows a stopped run left; a failure
 * is a warning (the featurisation runs without it). */
static void open_partial(fz_pass *p, const kb_featurize_opts *fo) {
    const kb_featurizer *fz = p->fz;
    kb_err e;
    int64_t dims[3] = {fz->pool_dim, fz->spatial_dim, fz->logits_dim};
    int batch = pass_batch(fz);
    if (!fo->resume_path) return;
    if (kb_fpartial_open(&p->part, fo->resume_path, fo->resume_tag ? fo->resume_tag : "", p->in->count, batch, dims,
                         p->f->pool, p->spatial, p->f->logits, &e))
        fprintf(stderr, "kindbench: warning: %s; this featurisation cannot be resumed\n", e.msg);
}

int kb_featurize_input(const kb_image_input *in, const kb_featurizer *fz, const kb_featurize_opts *fo, kb_evalset *out,
                       kb_err *err) {
    fz_pass p;
    memset(&p, 0, sizeof p);
    p.in = in, p.fz = fz, p.f = &out->feat;
    int rc = alloc_outputs(&p, in->count, err);
    if (!rc) open_partial(&p, fo);
    if (!rc) rc = run_pass(&p, out->label, fo->quiet, err);
    kb_fpartial_close(&p.part, rc == 0); /* kept after a failure, for the rerun */
    if (!rc) rc = summarise(&p, out, err);
    if (!rc) record_meta(in, fz, out);
    if (p.spec_state == 1) kb_spectrum_free(&p.spec);
    free(p.spatial);
    free(p.buf);
    if (rc) kb_features_free(&out->feat);
    return rc;
}
