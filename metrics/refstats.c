/* Evaluation sets and their .npz files (ADM / pytorch-fid / kindbench). */
#include "metrics/refstats.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/image_io.h"
#include "util/fileio.h"
#include "util/npy.h"
#include "util/sha256.h"

void kb_evalset_init(kb_evalset *s, const char *label, const char *path) {
    memset(s, 0, sizeof *s);
    snprintf(s->label, sizeof s->label, "%s", label ? label : "set");
    snprintf(s->path, sizeof s->path, "%s", path ? path : "");
}

void kb_evalset_free(kb_evalset *s) {
    kb_gstats_free(&s->pool_stats);
    kb_gstats_free(&s->spatial_stats);
    kb_features_free(&s->feat);
    free(s->spectrum);
    s->spectrum = NULL;
    s->spectrum_bins = 0;
    s->has_pool_stats = s->has_spatial_stats = 0;
}

/* ------------------------------------------------------------- reading */

typedef struct {
    char **names;
    int n;
} name_list;

static int has_key(const name_list *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], key)) return 1;
    return 0;
}

/* Reads key, which must be a float32/float64 array of ndim dimensions. */
static int read_float(kb_npz *z, const char *path, const char *key, int ndim, kb_npy *a, kb_err *err) {
    if (kb_npz_get(z, key, a, err)) return -1;
    if ((a->dtype != KB_F64 && a->dtype != KB_F32) || a->ndim != ndim) {
        kb_npy_free(a);
        return kb_fail(err, "%s: '%s' must be a %d-d float32/float64 array, got %s with %d dimensions", path, key, ndim,
                       kb_dtype_name(a->dtype), a->ndim);
    }
    return 0;
}

static void to_f64(const kb_npy *a, double *out) {
    for (int64_t i = 0; i < a->numel; i++)
        out[i] = a->dtype == KB_F64 ? ((const double *)a->data)[i] : ((const float *)a->data)[i];
}

/* mu_key/sigma_key into g. */
static int read_gstats(kb_npz *z, const char *path, const char *mu_key, const char *sigma_key, kb_gstats *g, kb_err *err) {
    kb_npy mu, sigma;
    if (read_float(z, path, mu_key, 1, &mu, err)) return -1;
    if (read_float(z, path, sigma_key, 2, &sigma, err)) return kb_npy_free(&mu), -1;
    int64_t d = mu.shape[0];
    int rc = 0;
    if (sigma.shape[0] != d || sigma.shape[1] != d)
        rc = kb_fail(err, "%s: '%s' is [%lld] but '%s' is [%lld, %lld] (expected [%lld, %lld])", path, mu_key,
                     (long long)d, sigma_key, (long long)sigma.shape[0], (long long)sigma.shape[1], (long long)d,
                     (long long)d);
    if (!rc) rc = kb_gstats_alloc(g, d, err);
    if (!rc) {
        to_f64(&mu, g->mu);
        to_f64(&sigma, g->sigma);
        char what[4200];
        snprintf(what, sizeof what, "%s: %s/%s", path, mu_key, sigma_key);
        rc = kb_gstats_check(g, what, err);
    }
    kb_npy_free(&mu);
    kb_npy_free(&sigma);
    return rc;
}

/* A float32 [n, d] array (pool or logits) into *x, with its n and d. */
static int read_features(kb_npz *z, const char *path, const char *key, float **x, int64_t *n, int64_t *d, kb_err *err) {
    kb_npy a;
    if (kb_npz_get(z, key, &a, err)) return -1;
    if (a.dtype != KB_F32 || a.ndim != 2 || a.shape[1] < 1) {
        kb_npy_free(&a);
        return kb_fail(err, "%s: '%s' must be float32 [N, D] features with D >= 1", path, key);
    }
    *x = a.data, *n = a.shape[0], *d = a.shape[1];
    return 0;
}

static void json_str(const cJSON *o, const char *key, char *out, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v)) snprintf(out, n, "%s", v->valuestring);
}

static int read_meta(kb_npz *z, const char *path, kb_stats_meta *m, char *note, size_t note_sz, kb_err *err) {
    kb_npy a;
    if (kb_npz_get(z, "kb_meta", &a, err)) return -1;
    cJSON *o = a.dtype == KB_U8 && a.ndim == 1 ? cJSON_ParseWithLength(a.data, (size_t)a.numel) : NULL;
    kb_npy_free(&a);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return kb_fail(err, "%s: 'kb_meta' is not a JSON object in a uint8 array", path);
    }
    json_str(o, "mode", m->mode, sizeof m->mode);
    json_str(o, "featurizer", m->featurizer, sizeof m->featurizer);
    json_str(o, "weights_sha256", m->weights_sha256, sizeof m->weights_sha256);
    json_str(o, "source", m->source, sizeof m->source);
    json_str(o, "source_sha256", m->source_sha256, sizeof m->source_sha256);
    json_str(o, "spectrum_note", note, note_sz);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "count");
    /* A count a double holds exactly, else unknown (casting a larger or
     * negative one would be undefined or meaningless). */
    if (cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble <= 9007199254740992.0)
        m->count = (int64_t)c->valuedouble;
    cJSON_Delete(o);
    return 0;
}

static int read_spectrum(kb_npz *z, const char *path, kb_evalset *s, kb_err *err) {
    kb_npy a, hw;
    if (read_float(z, path, "spectrum", 1, &a, err)) return -1;
    if (kb_npz_get(z, "spectrum_hw", &hw, err)) return kb_npy_free(&a), -1;
    int rc = 0;
    if (hw.dtype != KB_I64 || hw.numel != 2) rc = kb_fail(err, "%s: 'spectrum_hw' must be int64 [2]", path);
    const int64_t *h_w = hw.data;
    if (!rc && (h_w[0] < 1 || h_w[0] > INT_MAX || h_w[1] < 1 || h_w[1] > INT_MAX))
        rc = kb_fail(err, "%s: 'spectrum_hw' is [%lld, %lld], not an image size", path, (long long)h_w[0],
                     (long long)h_w[1]);
    if (!rc && (a.numel < 1 || a.numel > INT_MAX)) /* the bins of a radial spectrum: at least 1 */
        rc = kb_fail(err, "%s: 'spectrum' has %lld bins (expected 1 to %d)", path, (long long)a.numel, INT_MAX);
    s->spectrum = rc ? NULL : malloc((size_t)a.numel * sizeof(double));
    if (!rc && !s->spectrum) rc = kb_fail(err, "%s: out of memory", path);
    if (!rc) {
        to_f64(&a, s->spectrum);
        s->spectrum_bins = (int)a.numel;
        s->spectrum_h = (int)h_w[0], s->spectrum_w = (int)h_w[1];
    }
    kb_npy_free(&a);
    kb_npy_free(&hw);
    return rc;
}

static int check_pairs(const char *path, const name_list *l, kb_err *err) {
    static const char *pairs[2][2] = {{"mu", "sigma"}, {"mu_s", "sigma_s"}};
    for (int p = 0; p < 2; p++)
        if (has_key(l, pairs[p][0]) != has_key(l, pairs[p][1]))
            return kb_fail(err, "%s: has '%s' but not '%s' (statistics need both)", path,
                           has_key(l, pairs[p][0]) ? pairs[p][0] : pairs[p][1],
                           has_key(l, pairs[p][0]) ? pairs[p][1] : pairs[p][0]);
    if (has_key(l, "mu") || has_key(l, "arr_0") || has_key(l, "pool")) return 0;
    char keys[512] = "";
    for (int i = 0; i < l->n && strlen(keys) < 400; i++)
        snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", i ? ", " : "", l->names[i]);
    return kb_fail(err, "%s: neither statistics ('mu', 'sigma') nor images ('arr_0') nor features ('pool'): not an "
                        "ADM batch or FID statistics file (keys: %s)",
                   path, l->n ? keys : "none");
}

static int read_feature_parts(kb_npz *z, const char *path, const name_list *l, kb_evalset *s, kb_err *err) {
    kb_features *f = &s->feat;
    int64_t n2 = 0;
    if (has_key(l, "pool") && read_features(z, path, "pool", &f->pool, &f->n, &f->pool_dim, err)) return -1;
    if (has_key(l, "logits") && read_features(z, path, "logits", &f->logits, &n2, &f->logits_dim, err)) return -1;
    if (f->pool && f->logits && n2 != f->n)
        return kb_fail(err, "%s: 'pool' has %lld rows but 'logits' %lld", path, (long long)f->n, (long long)n2);
    if (!f->pool) f->n = n2;
    if (f->pool && s->has_pool_stats && f->pool_dim != s->pool_stats.dim)
        return kb_fail(err, "%s: 'pool' features are %lld-d but 'mu' is %lld-d", path, (long long)f->pool_dim,
                       (long long)s->pool_stats.dim);
    return 0;
}

static int read_parts(kb_npz *z, const char *path, const name_list *l, int want_features, kb_evalset *s, kb_err *err) {
    if (check_pairs(path, l, err)) return -1;
    if (has_key(l, "mu")) {
        if (read_gstats(z, path, "mu", "sigma", &s->pool_stats, err)) return -1;
        s->has_pool_stats = s->stats_from_file = 1;
    }
    if (has_key(l, "mu_s")) {
        if (read_gstats(z, path, "mu_s", "sigma_s", &s->spatial_stats, err)) return -1;
        s->has_spatial_stats = s->stats_from_file = 1;
    }
    if (want_features && read_feature_parts(z, path, l, s, err)) return -1;
    if (has_key(l, "spectrum") && read_spectrum(z, path, s, err)) return -1;
    if (has_key(l, "kb_meta") && read_meta(z, path, &s->meta, s->spectrum_note, sizeof s->spectrum_note, err)) return -1;
    s->has_images = has_key(l, "arr_0");
    return 0;
}

/* Every array from one open file (kb_npz_open): the features cache's entry
 * is replaced by any eval that featurises the same images, and read by path
 * array by array, mu could come from one entry and sigma or pool from the
 * next (other threads or batch: other low bits). */
int kb_evalset_read_npz(const char *path, int want_features, kb_evalset *out, kb_err *err) {
    name_list l;
    kb_npz *z = kb_npz_open(path, err);
    if (!z) return -1;
    if (kb_npz_list(z, &l.names, &l.n, err)) return kb_npz_close(z), -1;
    int rc = read_parts(z, path, &l, want_features, out, err);
    kb_npz_close(z);
    kb_npz_names_free(l.names, l.n);
    if (rc) kb_evalset_free(out);
    return rc;
}

/* ------------------------------------------------------------- writing */

static char *meta_json(const kb_stats_meta *m, const char *spectrum_note) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", KB_STATS_FORMAT);
    cJSON_AddNumberToObject(o, "version", KB_STATS_VERSION);
    cJSON_AddStringToObject(o, "mode", m->mode);
    cJSON_AddStringToObject(o, "featurizer", m->featurizer);
    cJSON_AddStringToObject(o, "weights_sha256", m->weights_sha256);
    cJSON_AddStringToObject(o, "source", m->source);
    cJSON_AddStringToObject(o, "source_sha256", m->source_sha256);
    cJSON_AddNumberToObject(o, "count", (double)m->count);
    if (spectrum_note[0]) cJSON_AddStringToObject(o, "spectrum_note", spectrum_note); /* why there is no spectrum */
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Entry list under construction; shapes live here so views can point at them. */
typedef struct {
    kb_npz_entry e[16];
    int64_t shapes[16][4];
    int n;
} entry_list;

static void add_entry(entry_list *l, const char *name, kb_dtype dt, int ndim, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3, const void *data) {
    int64_t *sh = l->shapes[l->n];
    sh[0] = d0, sh[1] = d1, sh[2] = d2, sh[3] = d3;
    l->e[l->n].name = name;
    l->e[l->n].array = kb_npy_view(dt, ndim, sh, data);
    l->n++;
}

static void add_stats(entry_list *l, const kb_evalset *s) {
    if (s->has_pool_stats) {
        int64_t d = s->pool_stats.dim;
        add_entry(l, "mu", KB_F64, 1, d, 0, 0, 0, s->pool_stats.mu);
        add_entry(l, "sigma", KB_F64, 2, d, d, 0, 0, s->pool_stats.sigma);
    }
    if (s->has_spatial_stats) {
        int64_t d = s->spatial_stats.dim;
        add_entry(l, "mu_s", KB_F64, 1, d, 0, 0, 0, s->spatial_stats.mu);
        add_entry(l, "sigma_s", KB_F64, 2, d, d, 0, 0, s->spatial_stats.sigma);
    }
}

int kb_evalset_write_npz(const char *path, const kb_evalset *s, int with_features, const kb_arr0 *images,
                         kb_err *err) {
    entry_list l;
    memset(&l, 0, sizeof l);
    int64_t hw[2] = {s->spectrum_h, s->spectrum_w};
    if (images) add_entry(&l, "arr_0", KB_U8, 4, images->n, images->h, images->w, images->c, images->data);
    add_stats(&l, s);
    if (with_features && s->feat.pool)
        add_entry(&l, "pool", KB_F32, 2, s->feat.n, s->feat.pool_dim, 0, 0, s->feat.pool);
    if (with_features && s->feat.logits)
        add_entry(&l, "logits", KB_F32, 2, s->feat.n, s->feat.logits_dim, 0, 0, s->feat.logits);
    if (s->spectrum_bins > 0) {
        add_entry(&l, "spectrum", KB_F64, 1, s->spectrum_bins, 0, 0, 0, s->spectrum);
        add_entry(&l, "spectrum_hw", KB_I64, 1, 2, 0, 0, 0, hw);
    }
    char *meta = meta_json(&s->meta, s->spectrum_bins ? "" : s->spectrum_note);
    if (!meta) return kb_fail(err, "%s: out of memory", path);
    add_entry(&l, "kb_meta", KB_U8, 1, (int64_t)strlen(meta), 0, 0, 0, meta);
    int rc = kb_npz_write(path, l.e, l.n, err);
    free(meta);
    return rc;
}

/* ---------------------------------------------------------------- cache */

int kb_features_cache_dir(const char *explicit_dir, char *out, size_t outsz, kb_err *err) {
    if (explicit_dir && explicit_dir[0]) {
        if (snprintf(out, outsz, "%s", explicit_dir) >= (int)outsz) return kb_fail(err, "features cache: directory path too long");
        return 0;
    }
    kb_err why = {0};
    if (kb_user_cache_dir("KINDBENCH_FEATURES_CACHE", "features", out, outsz, &why))
        return kb_fail(err, "features cache: %s (use --features-cache DIR)", why.msg);
    return 0;
}

int kb_features_cache_path(const char *dir, const kb_stats_meta *m, char *out, size_t outsz, kb_err *err) {
    if (!m->source_sha256[0] || !m->mode[0] || !m->featurizer[0])
        return kb_fail(err, "features cache: the key needs the content hash, mode and featuriser");
    char key[512], hex[65];
    /* the decoder's version too: a folder's content hash is of its files, and
     * a decoder that changed would give the same files other features */
    snprintf(key, sizeof key, "kindbench-features-v%d-decode-v%d\n%s\n%s\n%s\n%s", KB_STATS_VERSION, KB_DECODE_VERSION,
             m->source_sha256, m->mode, m->featurizer, m->weights_sha256);
    if (kb_sha256_hex_of(key, strlen(key), hex)) return kb_fail(err, "features cache: cannot hash the key");
    int n = snprintf(out, outsz, "%s/%s.npz", dir, hex);
    return n < 0 || (size_t)n >= outsz ? kb_fail(err, "features cache: path too long") : 0;
}

int kb_stats_meta_same_features(const kb_stats_meta *a, const kb_stats_meta *b) {
    return a->source_sha256[0] && !strcmp(a->source_sha256, b->source_sha256) && !strcmp(a->mode, b->mode) &&
           !strcmp(a->featurizer, b->featurizer) && !strcmp(a->weights_sha256, b->weights_sha256);
}
