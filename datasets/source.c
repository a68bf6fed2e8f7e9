#include "datasets/source.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/image_io.h"
#include "util/fileio.h"

typedef int (*kb_source_open_fn)(kb_source *, const kb_source_opts *, kb_err *);
typedef int (*kb_source_check_fn)(const kb_source_opts *, kb_err *);

static const struct {
    const char *kind;
    kb_source_open_fn open;
    kb_source_check_fn check;
} source_kinds[] = {
    {"fashion-mnist", kb_source_fmnist_open, kb_source_fmnist_check},
    {"emoji", kb_source_emoji_open, kb_source_emoji_check},
    {"pokemon", kb_source_pokemon_open, kb_source_pokemon_check},
    {"folder", kb_source_folder_open, kb_source_folder_check},
};

/* The source_kinds entry named opts->kind once its options pass that
 * source's check, or -1 with the error set. */
static int checked_kind(const kb_source_opts *opts, kb_err *err) {
    const char *kind = opts->kind ? opts->kind : "";
    for (size_t i = 0; i < sizeof source_kinds / sizeof source_kinds[0]; i++)
        if (!strcmp(kind, source_kinds[i].kind)) return source_kinds[i].check(opts, err) ? -1 : (int)i;
    return kb_fail(err, "unknown --source '%s' (known: fashion-mnist, emoji, pokemon, folder)", kind);
}

int kb_source_opts_check(const kb_source_opts *opts, kb_err *err) { return checked_kind(opts, err) < 0 ? -1 : 0; }

const char *kb_sources_dir(void) {
    const char *env = getenv("KINDBENCH_SOURCES");
    return env && env[0] ? env : "sources";
}

int kb_source_open(kb_source *src, const kb_source_opts *opts, kb_err *err) {
    memset(src, 0, sizeof *src);
    int i = checked_kind(opts, err);
    if (i < 0) return -1;
    snprintf(src->kind, sizeof src->kind, "%s", source_kinds[i].kind);
    src->details = cJSON_CreateObject();
    if (source_kinds[i].open(src, opts, err) == 0) return 0;
    kb_source_free(src);
    return -1;
}

int kb_source_add_class(kb_source *src, const char *name, kb_err *err) {
    char **names = realloc(src->class_names, sizeof(char *) * (size_t)(src->nclasses + 1));
    if (!names) return kb_fail(err, "out of memory adding class '%s'", name);
    src->class_names = names;
    if (!(names[src->nclasses] = strdup(name))) return kb_fail(err, "out of memory adding class '%s'", name);
    src->nclasses++;
    return 0;
}

int kb_source_add_item(kb_source *src, const char *key, const char *path, int32_t label, int split, kb_err *err) {
    if (src->count == src->cap) {
        int64_t cap = src->cap ? src->cap * 2 : 1024;
        kb_source_item *items = realloc(src->items, sizeof(kb_source_item) * (size_t)cap);
        if (!items) return kb_fail(err, "out of memory listing %lld items", (long long)cap);
        src->items = items;
        src->cap = cap;
    }
    kb_source_item *it = &src->items[src->count];
    it->key = key ? strdup(key) : NULL;
    it->path = path ? strdup(path) : NULL;
    it->label = label;
    it->split = (int8_t)split;
    if ((key && !it->key) || (path && !it->path)) {
        free(it->key);
        free(it->path);
        return kb_fail(err, "out of memory listing items");
    }
    src->count++;
    return 0;
}

int kb_json_read_file(const char *path, cJSON **out, kb_err *err) {
    uint8_t *data;
    size_t size;
    *out = NULL;
    if (kb_read_file(path, &data, &size, err)) return -1;
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
    if (!json) {
        long at = end ? (long)(end - (const char *)data) : -1;
        free(data);
        return kb_fail(err, "%s: invalid JSON near byte %ld", path, at);
    }
    free(data);
    *out = json;
    return 0;
}

int kb_source_read_package(kb_source *src, const char *dir, const char *expect_name, kb_err *err) {
    char path[4096];
    if (kb_path_join(path, sizeof path, dir, "package.json", err)) return -1;
    cJSON *pkg;
    if (kb_json_read_file(path, &pkg, err)) return -1;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(pkg, "name");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(pkg, "version");
    int rc = 0;
    if (!cJSON_IsString(name) || !cJSON_IsString(version))
        rc = kb_fail(err, "%s: missing \"name\" or \"version\"", path);
    else if (strcmp(name->valuestring, expect_name))
        rc = kb_fail(err, "%s: package is '%s', expected '%s'", path, name->valuestring, expect_name);
    else {
        snprintf(src->package, sizeof src->package, "%s", name->valuestring);
        snprintf(src->package_version, sizeof src->package_version, "%s", version->valuestring);
    }
    cJSON_Delete(pkg);
    return rc;
}

int kb_source_load(const kb_source *src, int64_t i, kb_image *img, kb_err *err) {
    if (i < 0 || i >= src->count) return kb_fail(err, "item %lld out of range", (long long)i);
    const kb_source_item *it = &src->items[i];
    if (it->path) return kb_image_read(it->path, img, err);
    if (kb_image_alloc(img, src->mem_w, src->mem_h, 1, err)) return -1;
    size_t n = (size_t)src->mem_w * src->mem_h;
    memcpy(img->px, src->mem + (size_t)i * n, n);
    return 0;
}

void kb_source_free(kb_source *src) {
    for (int64_t i = 0; i < src->count; i++) {
        free(src->items[i].key);
        free(src->items[i].path);
    }
    free(src->items);
    for (int c = 0; c < src->nclasses; c++) free(src->class_names[c]);
    free(src->class_names);
    free(src->mem);
    cJSON_Delete(src->details);
    memset(src, 0, sizeof *src);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

void kb_names_free(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int kb_list_dir(const char *dir, char ***names_out, int *n_out, kb_err *err) {
    *names_out = NULL;
    *n_out = 0;
    if (!kb_is_dir(dir)) {
        if (access(dir, F_OK) != 0) return kb_fail(err, "%s: no such directory", dir);
        return kb_fail(err, "%s: not a directory", dir);
    }
    DIR *d = opendir(dir);
    if (!d) return kb_fail(err, "%s: cannot read directory: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, sizeof(char *) * (size_t)cap);
            if (!grown) {
                rc = kb_fail(err, "%s: out of memory listing", dir);
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = kb_fail(err, "%s: out of memory listing", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        kb_names_free(names, n);
        return -1;
    }
    if (n) qsort(names, (size_t)n, sizeof(char *), cmp_str);
    *names_out = names;
    *n_out = n;
    return 0;
}
