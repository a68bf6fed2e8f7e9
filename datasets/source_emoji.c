/* Emoji from the npm packages emoji-datasource-<style> (iamcal/emoji-data):
 * package/emoji.json lists every emoji with its Unicode category and
 * subcategory and whether the style has an image (has_img_<style>); the
 * images are package/img/<style>/64/<image>, 64x64 RGBA PNGs.
 *
 * What is kept, and why:
 *  - one image per emoji, its default (yellow / no skin tone) form: the
 *    skin-tone variations are recoloured copies of the same drawing that
 *    would inflate "People & Body" and put near-duplicates on both sides of
 *    a train/test split;
 *  - not the "Component" category: its five entries are the Fitzpatrick
 *    skin-tone modifiers (U+1F3FB..U+1F3FF), drawn as plain colour swatches,
 *    not emoji a model should learn to draw;
 *  - only emoji the style has an image for (apple lacks a few).
 * The class list is built from all of emoji.json (not from the images one
 * style has), ordered by Unicode's emoji order (smallest sort_order), so the
 * apple and google caches share the same classes in the same order and form
 * a domain-shift pair. */
#include <stdlib.h>
#include <string.h>

#include "datasets/source.h"
#include "util/fileio.h"

#define EMOJI_DROPPED_CATEGORY "Component"

typedef struct {
    char *name;
    double first_sort_order;
} emoji_class;

static const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int cmp_class_order(const void *a, const void *b) {
    const emoji_class *x = a, *y = b;
    if (x->first_sort_order != y->first_sort_order) return x->first_sort_order < y->first_sort_order ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The fields every emoji.json entry must have, checked once up front. */
static int check_entry(const cJSON *e, int i, const char *path, const char *style_key, kb_err *err) {
    if (!json_str(e, "category") || !json_str(e, "subcategory") || !json_str(e, "image") || !json_str(e, "unified") ||
        !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, "sort_order")))
        return kb_fail(err, "%s: entry %d lacks category/subcategory/image/unified/sort_order", path, i);
    if (!cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(e, style_key)))
        return kb_fail(err, "%s: entry %d lacks the boolean \"%s\" (is this an emoji-datasource package?)", path, i,
                       style_key);
    return 0;
}

static int find_class(const emoji_class *cls, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(cls[i].name, name)) return i;
    return -1;
}

/* Distinct labels of all non-Component entries, in Unicode order. */
static int build_classes(kb_source *src, const cJSON *list, const char *label_key, kb_err *err) {
    int n = 0, cap = cJSON_GetArraySize(list);
    emoji_class *cls = calloc((size_t)(cap ? cap : 1), sizeof *cls);
    if (!cls) return kb_fail(err, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        if (!strcmp(json_str(e, "category"), EMOJI_DROPPED_CATEGORY)) continue;
        const char *name = json_str(e, label_key);
        double order = cJSON_GetObjectItemCaseSensitive(e, "sort_order")->valuedouble;
        int c = find_class(cls, n, name);
        if (c < 0) {
            cls[n].name = (char *)name;
            cls[n++].first_sort_order = order;
        } else if (order < cls[c].first_sort_order) {
            cls[c].first_sort_order = order;
        }
    }
    qsort(cls, (size_t)n, sizeof *cls, cmp_class_order);
    int rc = n ? 0 : kb_fail(err, "emoji.json lists no emoji outside '%s'", EMOJI_DROPPED_CATEGORY);
    for (int c = 0; c < n && rc == 0; c++) rc = kb_source_add_class(src, cls[c].name, err);
    free(cls);
    return rc;
}

typedef struct {
    int component, no_image, skin_variations;
} emoji_drops;

static int add_items(kb_source *src, const cJSON *list, const char *dir, const char *label_key,
                     const char *style_key, emoji_drops *drops, kb_err *err) {
    const cJSON *e;
    char rel[512], path[4096];
    cJSON_ArrayForEach(e, list) {
        const cJSON *skins = cJSON_GetObjectItemCaseSensitive(e, "skin_variations");
        if (cJSON_IsObject(skins)) drops->skin_variations += cJSON_GetArraySize(skins);
        if (!strcmp(json_str(e, "category"), EMOJI_DROPPED_CATEGORY)) {
            drops->component++;
            continue;
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, style_key))) {
            drops->no_image++;
            continue;
        }
        snprintf(rel, sizeof rel, "img/%s/64/%s", src->style, json_str(e, "image"));
        if (kb_path_join(path, sizeof path, dir, rel, err)) return -1;
        if (!kb_is_file(path))
            return kb_fail(err, "%s: missing image for %s (emoji.json says %s is true)", path, json_str(e, "unified"),
                           style_key);
        int label = -1;
        for (int c = 0; c < src->nclasses && label < 0; c++)
            if (!strcmp(src->class_names[c], json_str(e, label_key))) label = c;
        if (kb_source_add_item(src, json_str(e, "unified"), path, label, -1, err)) return -1;
    }
    return 0;
}

static void record_details(kb_source *src, const emoji_drops *d, int entries) {
    cJSON_AddNumberToObject(src->details, "emoji_json_entries", entries);
    cJSON_AddNumberToObject(src->details, "kept", (double)src->count);
    cJSON_AddNumberToObject(src->details, "dropped_component", d->component);
    cJSON_AddNumberToObject(src->details, "dropped_no_image_in_style", d->no_image);
    cJSON_AddNumberToObject(src->details, "skin_variations_not_used", d->skin_variations);
    cJSON_AddStringToObject(src->details, "why",
                            "one default-skin image per emoji; 'Component' entries are the five skin-tone "
                            "modifier swatches, not emoji; emoji without an image in this style are skipped; classes come from "
                            "all of emoji.json in Unicode order so every style shares them");
}

static int check_options(const kb_source_opts *opts, const char **style, const char **label, kb_err *err) {
    *style = opts->style ? opts->style : "apple";
    *label = opts->label ? opts->label : "category";
    static const char *const styles[] = {"apple", "google", "twitter", "facebook"};
    int ok = 0;
    for (int i = 0; i < 4; i++) ok |= !strcmp(*style, styles[i]);
    if (!ok) return kb_fail(err, "emoji: unknown --style '%s' (apple, google, twitter or facebook)", *style);
    if (strcmp(*label, "category") && strcmp(*label, "subcategory"))
        return kb_fail(err, "emoji: unknown --label '%s' (category or subcategory)", *label);
    return 0;
}

int kb_source_emoji_check(const kb_source_opts *opts, kb_err *err) {
    const char *style, *label;
    return check_options(opts, &style, &label, err);
}

int kb_source_emoji_open(kb_source *src, const kb_source_opts *opts, kb_err *err) {
    const char *style, *label;
    if (check_options(opts, &style, &label, err)) return -1;
    char pkg_name[64], dir[4096], path[4096], style_key[64];
    snprintf(pkg_name, sizeof pkg_name, "emoji-datasource-%s", style);
    if (opts->input) snprintf(dir, sizeof dir, "%s", opts->input);
    else snprintf(dir, sizeof dir, "%s/%s/package", kb_sources_dir(), pkg_name);
    if (!kb_is_dir(dir)) return kb_fail(err, "%s: not a directory (run scripts/fetch-sources.sh or give --input)", dir);
    snprintf(src->input, sizeof src->input, "%s", dir);
    snprintf(src->style, sizeof src->style, "%s", style);
    snprintf(src->label_mode, sizeof src->label_mode, "%s", label);
    snprintf(src->name_hint, sizeof src->name_hint, "emoji-%s%s%s", style, strcmp(label, "category") ? "-" : "",
             strcmp(label, "category") ? label : "");
    snprintf(style_key, sizeof style_key, "has_img_%s", style);
    src->channels = 3;
    if (kb_source_read_package(src, dir, pkg_name, err)) return -1;
    if (kb_path_join(path, sizeof path, dir, "emoji.json", err)) return -1;
    cJSON *list;
    if (kb_json_read_file(path, &list, err)) return -1;
    int rc = 0, i = 0;
    if (!cJSON_IsArray(list)) rc = kb_fail(err, "%s: expected a JSON array of emoji", path);
    const cJSON *e;
    if (rc == 0) cJSON_ArrayForEach(e, list) {
            if ((rc = check_entry(e, i++, path, style_key, err))) break;
        }
    emoji_drops drops = {0, 0, 0};
    if (rc == 0) rc = build_classes(src, list, label, err);
    if (rc == 0) rc = add_items(src, list, dir, label, style_key, &drops, err);
    if (rc == 0) record_details(src, &drops, cJSON_GetArraySize(list));
    cJSON_Delete(list);
    return rc;
}
