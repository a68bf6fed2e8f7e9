/* An ImageFolder tree (torchvision's layout): DIR/<class>/<image>. Class
 * names are the sub-folder names in byte order; images are the files ending
 * in .png, .jpg or .jpeg (any case), in byte order within a class. Anything
 * else (other files, hidden files, nested folders) is ignored and counted. A
 * class folder without images is an error: it would silently become a class
 * with no examples. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "datasets/source.h"
#include "util/fileio.h"

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return 0;
    return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg");
}

static int add_class_images(kb_source *src, const char *root, const char *cls, int label, int *ignored,
                            kb_err *err) {
    char dir[4096], path[4096], key[4096];
    if (kb_path_join(dir, sizeof dir, root, cls, err)) return -1;
    char **names;
    int n;
    if (kb_list_dir(dir, &names, &n, err)) return kb_fail_wrap(err, "class folder '%s'", cls);
    int rc = 0, added = 0, skipped = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if ((rc = kb_path_join(path, sizeof path, dir, names[i], err))) break;
        if (!is_image_name(names[i]) || !kb_is_file(path)) {
            skipped++;
            continue;
        }
        snprintf(key, sizeof key, "%s/%s", cls, names[i]);
        rc = kb_source_add_item(src, key, path, label, -1, err);
        added++;
    }
    kb_names_free(names, n);
    *ignored += skipped;
    if (rc == 0 && added == 0)
        rc = kb_fail(err, "%s: class folder '%s' holds no PNG or JPEG images (%d other entries ignored)", dir, cls,
                     skipped);
    return rc;
}

/* "folder-<last path component>", trailing slashes ignored. */
static void set_name_hint(kb_source *src, const char *root) {
    size_t end = strlen(root);
    while (end > 1 && root[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && root[start - 1] != '/') start--;
    snprintf(src->name_hint, sizeof src->name_hint, "folder-%.*s", (int)(end - start < 100 ? end - start : 100),
             root + start);
}

int kb_source_folder_check(const kb_source_opts *opts, kb_err *err) {
    if (!opts->input) return kb_fail(err, "folder: --input DIR is required (one sub-folder per class)");
    if (opts->style || opts->label)
        return kb_fail(err, "folder: --style and --label do not apply (classes are the sub-folders)");
    return 0;
}

int kb_source_folder_open(kb_source *src, const kb_source_opts *opts, kb_err *err) {
    const char *root = opts->input;
    snprintf(src->input, sizeof src->input, "%s", root);
    snprintf(src->label_mode, sizeof src->label_mode, "sub-folder");
    set_name_hint(src, root);
    src->channels = 3;
    char **names;
    int n, ignored = 0, rc = 0;
    if (kb_list_dir(root, &names, &n, err)) return -1;
    char path[4096];
    for (int i = 0; i < n && rc == 0; i++) {
        if ((rc = kb_path_join(path, sizeof path, root, names[i], err))) break;
        if (names[i][0] == '.' || !kb_is_dir(path)) {
            ignored++;
            continue;
        }
        int label = src->nclasses;
        rc = kb_source_add_class(src, names[i], err);
        if (rc == 0) rc = add_class_images(src, root, names[i], label, &ignored, err);
    }
    kb_names_free(names, n);
    if (rc) return -1;
    if (src->nclasses == 0) return kb_fail(err, "%s: no class sub-folders (expected DIR/<class>/<image>)", root);
    cJSON_AddNumberToObject(src->details, "ignored_entries", ignored);
    cJSON_AddStringToObject(src->details, "images", "*.png, *.jpg, *.jpeg (any case) in each class sub-folder");
    return 0;
}
