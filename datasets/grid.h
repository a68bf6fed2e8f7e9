/* Image grids as PNG: for looking at a cache (one row per class) and, later,
 * at samples. */
#ifndef KB_DS_GRID_H
#define KB_DS_GRID_H

#include <stdint.h>

#include "datasets/dataset.h"
#include "datasets/image.h"
#include "util/err.h"

/* A PNG grid's side is at most this many pixels (kb_grid_compose refuses more). */
#define KB_GRID_MAX_SIDE 65535

/* How many cells of res px with `gap` px between and around them fit along
 * one side of a grid (0 when not even one does). */
int kb_grid_max_cells(int res, int gap);

/* Tiles rows x cols cells (cells[r*cols + c], each res x res x channels,
 * NULL for an empty cell) with `gap` pixels of `fill` between and around
 * them, into a new image. */
int kb_grid_compose(const uint8_t *const *cells, int rows, int cols, int res, int channels, int gap, uint8_t fill,
                    kb_image *out, kb_err *err);

/* kb_grid_compose + kb_png_write (atomic). */
int kb_grid_write_png(const char *path, const uint8_t *const *cells, int rows, int cols, int res, int channels,
                      int gap, kb_err *err);

/* One row per class with `role` (KB_ROLE_ANY: all), holding that class's
 * first per_class images of `split` (KB_SPLIT_ANY: both) in cache order;
 * *shown (may be NULL) gets how many; no image at all is an error. */
int kb_dataset_grid_png(const kb_dataset *ds, const char *path, int per_class, kb_split split, kb_class_role role,
                        int gap, int64_t *shown, kb_err *err);

#endif
