/* Dataset sources: each turns something on disk (Debian's Fashion-MNIST idx
 * files, an unpacked npm emoji or Pokémon sprite package, an ImageFolder
 * tree) into one list: class names, and items with a label, an optional
 * train/test split of the source's own, and how to load the item's pixels.
 * Images are decoded later, item by item (kb_source_load), so that a big
 * folder is never held in memory twice. */
#ifndef KB_DS_SOURCE_H
#define KB_DS_SOURCE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "datasets/dataset.h"
#include "datasets/image.h"
#include "util/err.h"

typedef struct {
    char *key;     /* stable identity (relative path, emoji code point): seeds the test split */
    char *path;    /* file to decode; NULL for images held in memory */
    int32_t label; /* index into class_names */
    int8_t split;  /* the source's own split (KB_SPLIT_*), or -1 when it has none */
} kb_source_item;

typedef struct {
    const char *kind;  /* "fashion-mnist", "emoji", "pokemon" or "folder" */
    const char *input; /* NULL: the source's default location */
    const char *style; /* emoji: "apple" (default) or "google" */
    const char *label; /* emoji: "category" (default) | "subcategory"; pokemon: "none" (default) | "variant" */
} kb_source_opts;

typedef struct {
    char kind[32];
    char input[4096];
    char package[128];        /* npm package name, "" when not from a package */
    char package_version[64]; /* its version from package.json */
    char style[32];           /* emoji style, "" otherwise */
    char label_mode[32];      /* how classes were defined */
    char name_hint[128];      /* default dataset name without the resolution: "emoji-apple", "folder-<dir>" */
    int channels;             /* channels of the cache: 1 (grey) or 3 (RGB) */
    int pad_square;           /* whether this source pads to a square by default */
    int nclasses;
    char **class_names;
    int64_t count, cap;
    kb_source_item *items;
    /* Images held in memory (Fashion-MNIST): count x mem_h x mem_w grey. */
    uint8_t *mem;
    int mem_w, mem_h;
    cJSON *details; /* what was kept and dropped, and why: goes into the cache metadata */
} kb_source;

/* Lists the source named opts->kind; an unknown name is an error listing the
 * known ones. On failure src holds nothing to free. */
int kb_source_open(kb_source *src, const kb_source_opts *opts, kb_err *err);
/* The options alone, before anything is read: the source's name, and the
 * --style/--label/--input it takes (a command-line error, not a data one). */
int kb_source_opts_check(const kb_source_opts *opts, kb_err *err);
/* Decodes item i (thread-safe: only reads src). */
int kb_source_load(const kb_source *src, int64_t i, kb_image *img, kb_err *err);
void kb_source_free(kb_source *src);

/* Where the npm packages are unpacked: $KINDBENCH_SOURCES, else ./sources. */
const char *kb_sources_dir(void);

/* For the source implementations. */
int kb_source_add_class(kb_source *src, const char *name, kb_err *err);
int kb_source_add_item(kb_source *src, const char *key, const char *path, int32_t label, int split, kb_err *err);
/* Reads package.json in dir, checks its "name" and stores name and version. */
int kb_source_read_package(kb_source *src, const char *dir, const char *expect_name, kb_err *err);
/* Entries of a directory except "." and "..", sorted by strcmp (byte
 * order, so the same on every machine and locale). Free with kb_names_free. */
int kb_list_dir(const char *dir, char ***names, int *n, kb_err *err);
void kb_names_free(char **names, int n);
/* Reads and parses a JSON file. */
int kb_json_read_file(const char *path, cJSON **out, kb_err *err);

int kb_source_fmnist_open(kb_source *src, const kb_source_opts *opts, kb_err *err);
int kb_source_emoji_open(kb_source *src, const kb_source_opts *opts, kb_err *err);
int kb_source_pokemon_open(kb_source *src, const kb_source_opts *opts, kb_err *err);
int kb_source_folder_open(kb_source *src, const kb_source_opts *opts, kb_err *err);
int kb_source_fmnist_check(const kb_source_opts *opts, kb_err *err);
int kb_source_emoji_check(const kb_source_opts *opts, kb_err *err);
int kb_source_pokemon_check(const kb_source_opts *opts, kb_err *err);
int kb_source_folder_check(const kb_source_opts *opts, kb_err *err);

#endif
