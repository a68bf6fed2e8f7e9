#include "datasets/grid.h"

#include <stdlib.h>
#include <string.h>

#include "datasets/image_io.h"

#define GRID_FILL 255 /* white between cells and in empty ones */

int kb_grid_max_cells(int res, int gap) {
    if (res < 1 || gap < 0 || (int64_t)res + 2 * gap > KB_GRID_MAX_SIDE) return 0;
    return (int)((KB_GRID_MAX_SIDE - gap) / ((int64_t)res + gap));
}

int kb_grid_compose(const uint8_t *const *cells, int rows, int cols, int res, int channels, int gap, uint8_t fill,
                    kb_image *out, kb_err *err) {
    if (rows < 1 || cols < 1 || res < 1 || gap < 0 || (channels != 1 && channels != 3))
        return kb_fail(err, "grid: invalid layout %dx%d cells of %dpx, %d channels, gap %d", rows, cols, res,
                       channels, gap);
    int64_t w = (int64_t)cols * (res + gap) + gap, h = (int64_t)rows * (res + gap) + gap;
    if (w > KB_GRID_MAX_SIDE || h > KB_GRID_MAX_SIDE) return kb_fail(err, "grid: %lldx%lld pixels is too large for one PNG", (long long)w,
                                                (long long)h);
    if (kb_image_alloc(out, (int)w, (int)h, channels, err)) return -1;
    memset(out->px, fill, (size_t)w * h * channels);
    size_t row_bytes = (size_t)res * channels;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const uint8_t *cell = cells[(size_t)r * cols + c];
            if (!cell) continue;
            int x0 = gap + c * (res + gap), y0 = gap + r * (res + gap);
            for (int y = 0; y < res; y++)
                memcpy(out->px + ((size_t)(y0 + y) * w + x0) * channels, cell + (size_t)y * row_bytes, row_bytes);
        }
    return 0;
}

int kb_grid_write_png(const char *path, const uint8_t *const *cells, int rows, int cols, int res, int channels,
                      int gap, kb_err *err) {
    kb_image img;
    if (kb_grid_compose(cells, rows, cols, res, channels, gap, GRID_FILL, &img, err)) return -1;
    int rc = kb_png_write(path, &img, err);
    kb_image_free(&img);
    return rc;
}

/* Fills one row of cells with class cls's first images of split; returns how many. */
static int fill_class_row(const kb_dataset *ds, int cls, kb_split split, int per_class, const uint8_t **row) {
    int k = 0;
    for (int64_t i = 0; i < ds->count && k < per_class; i++)
        if (ds->labels[i] == cls && (split == KB_SPLIT_ANY || ds->split[i] == (uint8_t)split))
            row[k++] = kb_dataset_image(ds, i);
    return k;
}

int kb_dataset_grid_png(const kb_dataset *ds, const char *path, int per_class, kb_split split, kb_class_role role,
                        int gap, int64_t *shown, kb_err *err) {
    int *classes, n;
    int64_t total = 0;
    if (per_class < 1) return kb_fail(err, "grid: --per-class must be at least 1, got %d", per_class);
    if (kb_dataset_classes_with_role(ds, role, &classes, &n, err)) return -1;
    if (n == 0) return kb_fail(err, "%s: no class has role '%s'", ds->path, kb_role_name(role));
    const uint8_t **cells = calloc((size_t)n * per_class, sizeof *cells);
    if (!cells) {
        free(classes);
        return kb_fail(err, "grid: out of memory");
    }
    for (int r = 0; r < n; r++) total += fill_class_row(ds, classes[r], split, per_class, cells + (size_t)r * per_class);
    int rc = total ? kb_grid_write_png(path, cells, n, per_class, ds->resolution, ds->channels, gap, err)
                   : kb_fail(err, "%s: no images of split '%s' in the classes of role '%s'", ds->path,
                             split == KB_SPLIT_ANY ? "any" : kb_split_name(split), kb_role_name(role));
    if (shown) *shown = total;
    free(cells);
    free(classes);
    return rc;
}
