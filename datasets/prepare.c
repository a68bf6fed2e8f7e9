#include "datasets/prepare.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/cache.h"
#include "datasets/dataset.h"
#include "datasets/resize.h"
#include "util/fileio.h"
#include "util/progress.h"
#include "util/utf8.h"

/* Images decoded in parallel per chunk, then written in order. */
#define PREPARE_CHUNK 256
#define PREPARE_CHUNK_BYTES ((size_t)1 << 30)
/* --skip-unreadable: files listed one by one on stderr and in the metadata */
#define UNREADABLE_SHOWN 20
#define UNREADABLE_RECORDED 1000

void kb_prepare_opts_init(kb_prepare_opts *o) {
    memset(o, 0, sizeof *o);
    o->background.rgb[0] = o->background.rgb[1] = o->background.rgb[2] = 255;
    o->pad_square = -1;
    kb_split_opts_init(&o->split);
}

int kb_prepare_image(kb_image *img, int channels, const kb_background *bg, int pad_square, int resolution,
                     kb_err *err) {
    if (kb_image_flatten(img, channels, bg, err)) return -1;
    if (pad_square && kb_image_pad_square(img, bg, err)) return -1;
    return kb_center_crop_arr(img, resolution, err);
}

/* The texts the cache's JSON metadata records must be UTF-8 (Python's
 * json.loads, and so tests/ref/data_ref.py, refuse the whole file otherwise)
 * and the name must fit the summary: refused here rather than written
 * broken or cut. */
static int check_texts(const kb_source *src, const kb_prepare_opts *o, size_t name_cap, kb_err *err) {
    if (o->name && strlen(o->name) >= name_cap)
        return kb_fail(err, "--name: %zu bytes, at most %zu", strlen(o->name), name_cap - 1);
    if (o->name && kb_utf8_invalid_at(o->name) >= 0) return kb_fail(err, "--name: not valid UTF-8");
    if (o->name && !o->name[0]) /* `--name ""` or `--name=` wrote a cache with no name */
        return kb_fail(err, "--name: empty (leave it out for the default name)");
    if (kb_utf8_invalid_at(src->input) >= 0)
        return kb_fail(err, "%s: the input path is not valid UTF-8, which the cache's metadata must be; rename it",
                       src->input);
    for (int c = 0; c < src->nclasses; c++) {
        long bad = kb_utf8_invalid_at(src->class_names[c]);
        if (bad >= 0)
            return kb_fail(err, "%s: class %d's name is not valid UTF-8 (byte %ld), which the cache's metadata must "
                                "be; rename it", src->input, c, bad);
    }
    return 0;
}

/* --name, else the source's hint plus the resolution: "emoji-apple-64". */
static void default_name(const kb_source *src, const kb_prepare_opts *o, char *out, size_t n) {
    if (o->name) snprintf(out, n, "%s", o->name);
    else snprintf(out, n, "%s-%d", src->name_hint, o->resolution);
}

static void add_source_record(cJSON *meta, kb_source *src) {
    cJSON *s = cJSON_AddObjectToObject(meta, "source");
    cJSON_AddStringToObject(s, "kind", src->kind);
    cJSON_AddStringToObject(s, "path", src->input);
    if (src->package[0]) {
        cJSON_AddStringToObject(s, "package", src->package);
        cJSON_AddStringToObject(s, "package_version", src->package_version);
    }
    if (src->style[0]) cJSON_AddStringToObject(s, "style", src->style);
    cJSON_AddStringToObject(s, "label", src->label_mode);
    cJSON_AddItemToObject(s, "details", src->details);
    src->details = NULL; /* now owned by meta */
}

static void add_classes_record(cJSON *meta, const kb_source *src, const uint8_t *roles, const uint8_t *split) {
    cJSON *list = cJSON_AddArrayToObject(meta, "classes");
    for (int c = 0; c < src->nclasses; c++) {
        int64_t train = 0, test = 0;
        for (int64_t i = 0; i < src->count; i++)
            if (src->items[i].label == c) {
                if (split[i] == KB_SPLIT_TEST) test++;
                else train++;
            }
        cJSON *cls = cJSON_CreateObject();
        cJSON_AddStringToObject(cls, "name", src->class_names[c]);
        cJSON_AddStringToObject(cls, "role", kb_role_name((kb_class_role)roles[c]));
        cJSON_AddNumberToObject(cls, "train", (double)train);
        cJSON_AddNumberToObject(cls, "test", (double)test);
        cJSON_AddItemToArray(list, cls);
    }
}

static void add_recipe_record(cJSON *meta, const kb_prepare_opts *o, int pad_square) {
    cJSON *r = cJSON_AddObjectToObject(meta, "resize");
    cJSON_AddStringToObject(r, "recipe", "adm-center-crop-arr");
    cJSON_AddStringToObject(r, "steps",
                            "composite alpha onto background; grey->RGB replicate (except 1-channel caches); "
                            "pad to square if pad_to_square; while min(w,h) >= 2*res: BOX resize to (w//2, h//2); "
                            "BICUBIC resize to round-half-even(w*res/min, h*res/min); centre crop res x res at "
                            "((H-res)//2, (W-res)//2)");
    cJSON_AddStringToObject(r, "resampler", "Pillow Image.resize, 8-bit fixed point (libImaging/Resample.c)");
    cJSON_AddBoolToObject(r, "pad_to_square", pad_square);
    cJSON_AddStringToObject(r, "alpha_composite", "out = (c*a + bg*(255-a) + 127) / 255, integer division");
    int bg[3] = {o->background.rgb[0], o->background.rgb[1], o->background.rgb[2]};
    cJSON_AddItemToObject(meta, "background", cJSON_CreateIntArray(bg, 3));
}

/* One item: decode (errors name the file), then the recipe (errors are
 * given the file's name here). */
static int load_and_prepare(const kb_source *src, const kb_prepare_opts *o, int pad, int64_t i, uint8_t *out,
                            kb_err *err) {
    kb_image img;
    if (kb_source_load(src, i, &img, err)) return -1;
    int rc = kb_prepare_image(&img, src->channels, &o->background, pad, o->resolution, err);
    if (rc == 0) memcpy(out, img.px, (size_t)img.width * img.height * img.channels);
    kb_image_free(&img);
    if (rc && src->items[i].path) return kb_fail_wrap(err, "%s", src->items[i].path);
    if (rc) return kb_fail_wrap(err, "image %lld", (long long)i);
    return 0;
}

/* The error an image stops the run with. Only an image whose own content
 * does not decode (KB_ERR_BAD_DATA: corrupt, truncated, empty, not an image,
 * impossible dimensions) may be skipped; a failure to open or read the file
 * or to allocate memory is the machine's, and skipping it would turn a
 * machine problem into a silently smaller dataset. */
static int item_error(const kb_err *why, int skipping, kb_err *err) {
    if (why->kind == KB_ERR_BAD_DATA)
        return kb_fail_as(err, why->kind, "%s (--skip-unreadable leaves such images out and lists them)", why->msg);
    if (skipping)
        return kb_fail(err, "%s (not the image's content: --skip-unreadable leaves out only images that do not decode)",
                       why->msg);
    return kb_fail(err, "%s", why->msg);
}

/* Items [first, first+n) into out, in parallel; failed[k] says which
 * failed (errs[k] why). The error reported is the first failing item's in
 * item order, so it does not depend on timing. */
static int process_chunk(const kb_source *src, const kb_prepare_opts *o, int pad, int64_t first, int n,
                         uint8_t *out, int *failed, kb_err *errs, kb_err *err) {
    size_t bytes = (size_t)o->resolution * o->resolution * src->channels;
#pragma omp parallel for schedule(dynamic, 4)
    for (int k = 0; k < n; k++) failed[k] = load_and_prepare(src, o, pad, first + k, out + (size_t)k * bytes, &errs[k]);
    for (int k = 0; k < n; k++)
        if (failed[k]) return item_error(&errs[k], 0, err);
    return 0;
}

/* Images per chunk: PREPARE_CHUNK, but no more than there are, and no more
 * than fit in PREPARE_CHUNK_BYTES (one 4096 px RGB image is 48 MiB: 256 of
 * them would ask for 12.9 GB even to prepare one). */
static int chunk_images(size_t bytes, int64_t count) {
    int64_t n = (int64_t)(PREPARE_CHUNK_BYTES / bytes);
    if (n > PREPARE_CHUNK) n = PREPARE_CHUNK;
    if (n > count) n = count;
    return n < 1 ? 1 : (int)n;
}

/* A chunk buffer and its per-image error slots. */
typedef struct {
    uint8_t *buf;
    kb_err *errs;
    int failed[PREPARE_CHUNK];
    int chunk;
    size_t bytes;
} chunk_buf;

static int chunk_buf_alloc(chunk_buf *c, const kb_source *src, const kb_prepare_opts *o, kb_err *err) {
    memset(c, 0, sizeof *c);
    c->bytes = (size_t)o->resolution * o->resolution * src->channels;
    c->chunk = chunk_images(c->bytes, src->count);
    c->buf = malloc(c->bytes * c->chunk);
    c->errs = calloc((size_t)c->chunk, sizeof(kb_err));
    if (c->buf && c->errs) return 0;
    free(c->buf), free(c->errs);
    return kb_fail(err, "out of memory for a chunk of %d images of %zu bytes", c->chunk, c->bytes);
}

static void chunk_buf_free(chunk_buf *c) { free(c->buf), free(c->errs); }

/* The images into the cache: decoded here, or (spill) read back from
 * decode_to_spill's file. */
static int write_images(const kb_source *src, const kb_prepare_opts *o, int pad, FILE *spill, kb_cache_writer *w,
                        kb_err *err) {
    chunk_buf c;
    if (chunk_buf_alloc(&c, src, o, err)) return -1;
    kb_progress p;
    kb_progress_start(&p, spill ? "write" : "decode+resize", src->count, o->quiet);
    int rc = spill && fseeko(spill, 0, SEEK_SET) ? kb_fail(err, "cannot rewind the decoded images' temp file") : 0;
    for (int64_t first = 0; first < src->count && rc == 0; first += c.chunk) {
        int n = (int)(src->count - first < c.chunk ? src->count - first : c.chunk);
        if (!spill) rc = process_chunk(src, o, pad, first, n, c.buf, c.failed, c.errs, err);
        else if (fread(c.buf, c.bytes, (size_t)n, spill) != (size_t)n)
            rc = kb_fail(err, "cannot read back the decoded images' temp file: %s",
                         ferror(spill) ? strerror(errno) : "short file");
        for (int k = 0; k < n && rc == 0; k++) rc = kb_cache_writer_add(w, c.buf + (size_t)k * c.bytes, err);
        kb_progress_update(&p, first + n);
    }
    if (rc == 0) kb_progress_finish(&p);
    else if (!o->quiet && p.is_tty) fprintf(stderr, "\n"); /* end the bar line before the error */
    chunk_buf_free(&c);
    return rc;
}

/* An unlinked temp file beside out_path for the decoded images: it goes
 * with the process however that ends, and is on the output's filesystem,
 * which has to hold the cache anyway. */
static FILE *open_spill(const char *out_path, kb_err *err) {
    char tmp[4200];
    int fd = kb_temp_create(tmp, sizeof tmp, out_path, ".decoded.XXXXXX", err);
    if (fd < 0) return kb_fail_wrap(err, "the decoded images' temp file"), NULL;
    kb_temp_drop(tmp); /* the name; the open file stays */
    FILE *f = fdopen(fd, "w+b");
    if (!f) close(fd), kb_fail(err, "%s: fdopen failed: %s", tmp, strerror(errno));
    return f;
}

/* One unreadable image: said on stderr (the first UNREADABLE_SHOWN; on a
 * TTY over the progress bar's line, which the next update redraws) and
 * recorded for the metadata (the first UNREADABLE_RECORDED). */
static void note_unreadable(const kb_prepare_opts *o, const kb_progress *p, const kb_err *why, int64_t nth,
                            cJSON *list) {
    const char *clear = p->is_tty ? "\r\033[K" : "";
    if (!o->quiet && nth < UNREADABLE_SHOWN) fprintf(stderr, "%sskipped (unreadable): %s\n", clear, why->msg);
    if (!o->quiet && nth == UNREADABLE_SHOWN)
        fprintf(stderr, "%sskipped (unreadable): more; the summary counts them all\n", clear);
    if (nth < UNREADABLE_RECORDED) cJSON_AddItemToArray(list, cJSON_CreateString(why->msg));
}

/* Drops the items whose keep[i] is 0 (freeing their strings). A class left
 * without images is an error, as an empty class folder is. In-memory items
 * are loaded by index, so after this src's images come from the spill only. */
static int drop_items(kb_source *src, const uint8_t *keep, int64_t dropped, kb_err *err) {
    int64_t *per_class = calloc((size_t)src->nclasses, sizeof(int64_t)), j = 0;
    if (!per_class) return kb_fail(err, "out of memory");
    for (int64_t i = 0; i < src->count; i++) {
        if (!keep[i]) {
            free(src->items[i].key), free(src->items[i].path);
            continue;
        }
        per_class[src->items[i].label]++;
        src->items[j++] = src->items[i];
    }
    src->count = j;
    int empty = -1;
    for (int c = 0; c < src->nclasses && empty < 0; c++)
        if (!per_class[c]) empty = c;
    free(per_class);
    if (empty >= 0)
        return kb_fail(err, "class '%s' has no readable image (%lld unreadable images skipped in all)",
                       src->class_names[empty], (long long)dropped);
    return src->count ? 0 : kb_fail(err, "no readable image (%lld skipped)", (long long)dropped);
}

/* The class and split options on the full listing, before
 * --skip-unreadable's decoding pass (an hour for an ImageNet-sized folder):
 * their errors (an unknown class in a class list, --test-fraction on a source
 * with its own split) do not depend on which images decode, and without the
 * option they come before any decoding. build_cache assigns both again over
 * what is left. */
static int check_split_options(const kb_source *src, const kb_prepare_opts *o, kb_err *err) {
    uint8_t *roles = malloc((size_t)src->nclasses + 1), *split = malloc((size_t)src->count + 1);
    cJSON *scratch = cJSON_CreateObject();
    int rc = roles && split && scratch ? 0 : kb_fail(err, "out of memory for %lld labels", (long long)src->count);
    if (rc == 0 && kb_assign_class_roles(src, &o->split, roles, scratch, err)) rc = -1;
    if (rc == 0) rc = kb_assign_image_split(src, &o->split, split, scratch, err);
    cJSON_Delete(scratch);
    free(roles), free(split);
    return rc ? -1 : 0;
}

/* --skip-unreadable: every item is decoded once, the readable ones into
 * spill (in order), the ones whose content does not decode dropped from src,
 * each named in the list; any other failure (item_error) stops the run.
 * The split and labels are then drawn over what is left, exactly as for a
 * source without those files. */
static int decode_to_spill(kb_source *src, const kb_prepare_opts *o, int pad, FILE *spill, cJSON *list,
                           int64_t *dropped, kb_err *err) {
    chunk_buf c;
    uint8_t *keep = malloc((size_t)src->count + 1);
    if (!keep) return kb_fail(err, "out of memory for %lld flags", (long long)src->count);
    if (chunk_buf_alloc(&c, src, o, err)) return free(keep), -1;
    kb_progress p;
    kb_progress_start(&p, "decode+resize", src->count, o->quiet);
    int rc = 0;
    *dropped = 0;
    for (int64_t first = 0; first < src->count && rc == 0; first += c.chunk) {
        int n = (int)(src->count - first < c.chunk ? src->count - first : c.chunk);
        kb_err ignored;
        process_chunk(src, o, pad, first, n, c.buf, c.failed, c.errs, &ignored);
        for (int k = 0; k < n && rc == 0; k++) {
            keep[first + k] = !c.failed[k];
            if (c.failed[k] && c.errs[k].kind != KB_ERR_BAD_DATA) rc = item_error(&c.errs[k], 1, err);
            else if (c.failed[k]) note_unreadable(o, &p, &c.errs[k], (*dropped)++, list);
            else if (fwrite(c.buf + (size_t)k * c.bytes, c.bytes, 1, spill) != 1)
                rc = kb_fail(err, "cannot write the decoded images' temp file beside %s: %s", o->out_path, strerror(errno));
        }
        kb_progress_update(&p, first + n);
    }
    if (rc == 0 && fflush(spill) != 0)
        rc = kb_fail(err, "cannot write the decoded images' temp file beside %s: %s", o->out_path, strerror(errno));
    if (rc == 0) kb_progress_finish(&p);
    else if (!o->quiet && p.is_tty) fprintf(stderr, "\n");
    if (rc == 0 && *dropped) rc = drop_items(src, keep, *dropped, err);
    chunk_buf_free(&c);
    free(keep);
    return rc;
}

static void fill_summary(kb_prepare_summary *s, const kb_source *src, const uint8_t *roles, const uint8_t *split) {
    s->count = src->count;
    s->nclasses = src->nclasses;
    for (int64_t i = 0; i < src->count; i++) s->test += split[i] == KB_SPLIT_TEST;
    s->train = s->count - s->test;
    for (int c = 0; c < src->nclasses; c++) {
        s->pretrain += roles[c] == KB_ROLE_PRETRAIN;
        s->novel += roles[c] == KB_ROLE_NOVEL;
        s->unused += roles[c] == KB_ROLE_UNUSED;
    }
    const cJSON *ign = cJSON_GetObjectItemCaseSensitive(src->details, "ignored_entries");
    s->ignored = cJSON_IsNumber(ign) ? (int64_t)ign->valuedouble : 0;
}

/* What --skip-unreadable left out: the count and the first files, with why. */
static void add_unreadable_record(cJSON *meta, int64_t count, cJSON *list) {
    cJSON *u = cJSON_AddObjectToObject(meta, "unreadable_skipped");
    cJSON_AddNumberToObject(u, "count", (double)count);
    cJSON_AddNumberToObject(u, "listed", cJSON_GetArraySize(list));
    cJSON_AddItemReferenceToObject(u, "files", list);
}

/* Everything after the source is listed (and, with --skip-unreadable,
 * decoded into spill): splits, metadata, images, commit. */
static int build_cache(kb_source *src, const kb_prepare_opts *o, int pad, FILE *spill, cJSON *unreadable,
                       kb_prepare_summary *s, uint8_t *roles, uint8_t *split, int32_t *labels, kb_err *err) {
    cJSON *meta = kb_cache_meta_new();
    cJSON_AddStringToObject(meta, "name", s->name);
    cJSON_AddNumberToObject(meta, "resolution", o->resolution);
    cJSON_AddNumberToObject(meta, "channels", src->channels);
    cJSON_AddNumberToObject(meta, "count", (double)src->count);
    int rc = kb_assign_class_roles(src, &o->split, roles, meta, err) ? -1 : 0;
    if (rc == 0) rc = kb_assign_image_split(src, &o->split, split, meta, err);
    if (rc == 0) {
        fill_summary(s, src, roles, split);
        add_classes_record(meta, src, roles, split);
        add_recipe_record(meta, o, pad);
        add_source_record(meta, src);
        if (spill) add_unreadable_record(meta, s->unreadable, unreadable);
        for (int64_t i = 0; i < src->count; i++) labels[i] = src->items[i].label;
    }
    kb_cache_writer w;
    if (rc == 0) rc = kb_cache_writer_open(&w, o->out_path, meta, src->count, o->resolution, src->channels, labels,
                                           split, err);
    if (rc == 0 && write_images(src, o, pad, spill, &w, err)) {
        kb_cache_writer_abort(&w);
        rc = -1;
    }
    if (rc == 0) rc = kb_cache_writer_commit(&w, err);
    cJSON_Delete(meta);
    return rc;
}

int kb_prepare(const kb_prepare_opts *o, kb_prepare_summary *summary, kb_err *err) {
    memset(summary, 0, sizeof *summary);
    double t0 = kb_now();
    if (o->resolution < 1 || o->resolution > KB_MAX_RESOLUTION)
        return kb_fail(err, "--resolution must be in [1, %d], got %d", KB_MAX_RESOLUTION, o->resolution);
    if (!o->out_path) return kb_fail(err, "no output path (-o OUT.kbd)");
    kb_source src;
    if (kb_source_open(&src, &o->source, err)) return -1;
    if (check_texts(&src, o, sizeof summary->name, err)) return kb_source_free(&src), -1;
    default_name(&src, o, summary->name, sizeof summary->name);
    int pad = o->pad_square >= 0 ? o->pad_square : src.pad_square;
    FILE *spill = NULL;
    cJSON *unreadable = cJSON_CreateArray();
    int rc = 0;
    if (o->skip_unreadable) {
        rc = check_split_options(&src, o, err);
        if (rc == 0) rc = (spill = open_spill(o->out_path, err)) ? 0 : -1;
        if (rc == 0) rc = decode_to_spill(&src, o, pad, spill, unreadable, &summary->unreadable, err);
    }
    uint8_t *roles = malloc((size_t)src.nclasses), *split = malloc((size_t)src.count + 1);
    int32_t *labels = malloc(sizeof(int32_t) * ((size_t)src.count + 1));
    if (rc == 0)
        rc = roles && split && labels
                 ? build_cache(&src, o, pad, spill, unreadable, summary, roles, split, labels, err)
                 : kb_fail(err, "out of memory for %lld labels", (long long)src.count);
    if (spill) fclose(spill);
    cJSON_Delete(unreadable);
    free(roles);
    free(split);
    free(labels);
    kb_source_free(&src);
    summary->seconds = kb_now() - t0;
    return rc;
}
