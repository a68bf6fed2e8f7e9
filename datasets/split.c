#include "datasets/split.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "nn/rng.h"

/* Philox stream ids: "class" and "test" in ASCII, so the two draws never
 * share random numbers even under the same seed. */
#define KB_STREAM_CLASS_SPLIT 0x636c617373ull
#define KB_STREAM_TEST_SPLIT 0x74657374ull

void kb_split_opts_init(kb_split_opts *o) {
    memset(o, 0, sizeof *o);
    o->novel_fraction = -1.0;
    o->test_fraction = -1.0;
}

static int class_index(const kb_source *src, const char *name) {
    for (int c = 0; c < src->nclasses; c++)
        if (!strcmp(src->class_names[c], name)) return c;
    return -1;
}

/* Strips surrounding white space in place (class names may contain inner spaces). */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* "3 classes: a, b, c" (the first few, then "..."), for error messages. */
static void describe_classes(const kb_source *src, char *out, size_t n) {
    size_t len = (size_t)snprintf(out, n, "%d classes:", src->nclasses);
    for (int c = 0; c < src->nclasses && len < n; c++) {
        if (len + strlen(src->class_names[c]) + 8 > n || c == 12) {
            snprintf(out + len, n - len, " ...");
            return;
        }
        len += (size_t)snprintf(out + len, n - len, "%s '%s'", c ? "," : "", src->class_names[c]);
    }
}

/* A line's class name: the line without its end ("\n" or "\r\n") when that
 * is exactly a class's name, so a folder named " cat " can be listed;
 * otherwise the line trimmed of surrounding blanks. */
static char *line_name(const kb_source *src, char *line) {
    size_t n = strlen(line);
    if (n && line[n - 1] == '\n') line[--n] = '\0';
    if (n && line[n - 1] == '\r') line[--n] = '\0';
    return class_index(src, line) >= 0 ? line : trim(line);
}

/* Marks every class named in path (one per line, '#' comments, blank lines
 * skipped) with role; seen[] catches repeats within and across files. Lines
 * are read whole (getline), so a long line is one line in the messages. A
 * leading backslash is dropped, so "\#tag" names the class "#tag"; a comment
 * that reads as a class's name is an error, not silently skipped. */
static int read_class_file(const kb_source *src, const char *path, uint8_t role, uint8_t *roles, char *seen,
                           kb_err *err) {
    FILE *fp = fopen(path, "r");
    if (!fp) return kb_fail(err, "%s: cannot open class list: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, fp) >= 0) {
        lineno++;
        char *name = line_name(src, line);
        if (name[0] == '#' && class_index(src, name) >= 0) {
            rc = kb_fail(err, "%s:%d: '%s' is a comment here, but a class has that name: write \\%s to list it",
                         path, lineno, name, name);
            break;
        }
        if (!name[0] || name[0] == '#') continue;
        if (name[0] == '\\') name++;
        int c = class_index(src, name);
        if (c < 0) {
            char known[512];
            describe_classes(src, known, sizeof known);
            /* a name longer than any folder name is shown cut at 200 bytes */
            int cut = strlen(name) > 200;
            rc = kb_fail(err, "%s:%d: unknown class '%.200s'%s (the %s source has %s)", path, lineno, name,
                         cut ? "... (a name of over 200 bytes)" : "", src->kind, known);
        }
        else if (seen[c])
            rc = kb_fail(err, "%s:%d: class '%s' is listed twice (or in both class files)", path, lineno, name);
        else {
            seen[c] = 1;
            roles[c] = role;
        }
    }
    /* getline also stops (without the error flag) when it cannot grow the line */
    if (rc == 0 && (ferror(fp) || !feof(fp))) rc = kb_fail(err, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(fp);
    return rc;
}

static int roles_from_files(const kb_source *src, const kb_split_opts *o, uint8_t *roles, kb_err *err) {
    char *seen = calloc((size_t)src->nclasses, 1);
    if (!seen) return kb_fail(err, "out of memory");
    /* With one file, the unlisted classes take the other role. */
    uint8_t rest = o->pretrain_file && o->novel_file ? KB_ROLE_UNUSED : o->pretrain_file ? KB_ROLE_NOVEL
                                                                                          : KB_ROLE_PRETRAIN;
    for (int c = 0; c < src->nclasses; c++) roles[c] = rest;
    int rc = 0;
    if (o->pretrain_file) rc = read_class_file(src, o->pretrain_file, KB_ROLE_PRETRAIN, roles, seen, err);
    if (rc == 0 && o->novel_file) rc = read_class_file(src, o->novel_file, KB_ROLE_NOVEL, roles, seen, err);
    free(seen);
    return rc;
}

static int roles_random(const kb_source *src, const kb_split_opts *o, uint8_t *roles, int *n_novel, kb_err *err) {
    if (!(o->novel_fraction >= 0.0 && o->novel_fraction <= 1.0))
        return kb_fail(err, "--novel-fraction must be in [0, 1], got %g", o->novel_fraction);
    int n = src->nclasses;
    int *perm = malloc(sizeof(int) * (size_t)n);
    if (!perm) return kb_fail(err, "out of memory");
    for (int c = 0; c < n; c++) perm[c] = c;
    kb_rng rng;
    kb_rng_init(&rng, o->split_seed, KB_STREAM_CLASS_SPLIT);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)kb_rng_below(&rng, (uint32_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    *n_novel = (int)floor(o->novel_fraction * n + 0.5);
    for (int c = 0; c < n; c++) roles[c] = KB_ROLE_PRETRAIN;
    for (int k = 0; k < *n_novel; k++) roles[perm[k]] = KB_ROLE_NOVEL;
    free(perm);
    return 0;
}

int kb_split_opts_check(const kb_split_opts *o, kb_err *err) {
    if ((o->pretrain_file || o->novel_file) && o->novel_fraction >= 0.0)
        return kb_fail(err, "give either class files (--pretrain-classes/--novel-classes) or --novel-fraction, not both");
    return 0;
}

int kb_assign_class_roles(const kb_source *src, const kb_split_opts *o, uint8_t *roles, cJSON *meta, kb_err *err) {
    int use_files = o->pretrain_file || o->novel_file, use_random = o->novel_fraction >= 0.0;
    if (kb_split_opts_check(o, err)) return -1;
    cJSON *rec = cJSON_AddObjectToObject(meta, "class_split");
    if (use_files) {
        if (roles_from_files(src, o, roles, err)) return -1;
        cJSON_AddStringToObject(rec, "mode", "files");
        if (o->pretrain_file) cJSON_AddStringToObject(rec, "pretrain_file", o->pretrain_file);
        if (o->novel_file) cJSON_AddStringToObject(rec, "novel_file", o->novel_file);
    } else if (use_random) {
        int n_novel = 0;
        if (roles_random(src, o, roles, &n_novel, err)) return -1;
        cJSON_AddStringToObject(rec, "mode", "random");
        cJSON_AddNumberToObject(rec, "novel_fraction", o->novel_fraction);
        cJSON_AddNumberToObject(rec, "seed", (double)o->split_seed);
        cJSON_AddNumberToObject(rec, "novel_count", n_novel);
        cJSON_AddStringToObject(rec, "method", "Fisher-Yates over class indices, kb_rng(seed, stream 'class')");
    } else {
        for (int c = 0; c < src->nclasses; c++) roles[c] = KB_ROLE_PRETRAIN;
        cJSON_AddStringToObject(rec, "mode", "all-pretrain");
    }
    return 0;
}

/* FNV-1a: a stable 64-bit name for an item key, used as the Philox counter. */
static uint64_t fnv1a64(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

typedef struct {
    uint64_t rank;
    const char *key;
    int64_t index;
} ranked_item;

static int cmp_ranked(const void *a, const void *b) {
    const ranked_item *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    int k = strcmp(x->key, y->key);
    if (k) return k;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Marks the round(F * n) lowest-ranked items of class c as test. */
static void split_class(const kb_source *src, int c, double fraction, uint64_t seed, ranked_item *buf,
                           uint8_t *split) {
    int64_t n = 0;
    char fallback[32];
    for (int64_t i = 0; i < src->count; i++) {
        if (src->items[i].label != c) continue;
        const char *key = src->items[i].key;
        if (!key) {
            snprintf(fallback, sizeof fallback, "#%lld", (long long)i);
            key = fallback;
        }
        kb_philox_out r = kb_philox_block(seed, KB_STREAM_TEST_SPLIT, fnv1a64(key));
        buf[n].rank = (uint64_t)r.v[0] << 32 | r.v[1];
        buf[n].key = src->items[i].key ? src->items[i].key : "";
        buf[n++].index = i;
    }
    qsort(buf, (size_t)n, sizeof *buf, cmp_ranked);
    int64_t n_test = (int64_t)floor(fraction * (double)n + 0.5);
    for (int64_t k = 0; k < n_test; k++) split[buf[k].index] = KB_SPLIT_TEST;
}

static int split_random(const kb_source *src, const kb_split_opts *o, uint8_t *split, kb_err *err) {
    if (!(o->test_fraction >= 0.0 && o->test_fraction <= 1.0))
        return kb_fail(err, "--test-fraction must be in [0, 1], got %g", o->test_fraction);
    ranked_item *buf = malloc(sizeof *buf * (size_t)(src->count ? src->count : 1));
    if (!buf) return kb_fail(err, "out of memory");
    for (int64_t i = 0; i < src->count; i++) split[i] = KB_SPLIT_TRAIN;
    for (int c = 0; c < src->nclasses; c++) split_class(src, c, o->test_fraction, o->seed, buf, split);
    free(buf);
    return 0;
}

static int source_has_split(const kb_source *src) {
    if (src->count == 0) return 0;
    for (int64_t i = 0; i < src->count; i++)
        if (src->items[i].split < 0) return 0;
    return 1;
}

int kb_assign_image_split(const kb_source *src, const kb_split_opts *o, uint8_t *split, cJSON *meta, kb_err *err) {
    cJSON *rec = cJSON_AddObjectToObject(meta, "image_split");
    if (source_has_split(src)) {
        if (o->test_fraction >= 0.0)
            return kb_fail(err, "%s has its own train/test split; --test-fraction does not apply", src->kind);
        for (int64_t i = 0; i < src->count; i++) split[i] = (uint8_t)src->items[i].split;
        cJSON_AddStringToObject(rec, "mode", "source");
    } else if (o->test_fraction > 0.0) {
        if (split_random(src, o, split, err)) return -1;
        cJSON_AddStringToObject(rec, "mode", "random");
        cJSON_AddNumberToObject(rec, "test_fraction", o->test_fraction);
        cJSON_AddNumberToObject(rec, "seed", (double)o->seed);
        cJSON_AddStringToObject(rec, "method",
                                "per class, round(F*n) items with the lowest Philox(seed, stream 'test', "
                                "counter FNV-1a64(item key)) draw are test");
    } else {
        memset(split, KB_SPLIT_TRAIN, (size_t)src->count);
        cJSON_AddStringToObject(rec, "mode", "none");
    }
    int64_t n_test = 0;
    for (int64_t i = 0; i < src->count; i++) n_test += split[i] == KB_SPLIT_TEST;
    cJSON_AddNumberToObject(rec, "train", (double)(src->count - n_test));
    cJSON_AddNumberToObject(rec, "test", (double)n_test);
    return 0;
}
