/* Resumable featurisation: the features computed so far, kept in a file
 * while `eval` featurises a large set (50k images take about 40 minutes on
 * two CPU cores), so that a run stopped by Ctrl-C, a kill or an error
 * continues where it stopped instead of starting over.
 *
 * The file ("<features cache key>.partial" in the features cache directory)
 * is a 512-byte header (magic "KBFPART1" and a text line naming the image
 * count, batch, feature sizes and the caller's tag: device and threads) and
 * then one record per image: pool, spatial and logits features, float32.
 * Rows are appended a batch at a time and flushed, so a killed run leaves a
 * whole prefix (a partly written batch is dropped on reopening). A file with
 * another header is started over. Rows are computed in the same batches as
 * an unbroken run's, so a resumed run's features are that run's, bit for
 * bit, for the same device, threads and batch (which the tag ensures). */
#ifndef KB_FEATURES_PARTIAL_H
#define KB_FEATURES_PARTIAL_H

#include <stdint.h>
#include <stdio.h>

#include "util/err.h"

typedef struct {
    FILE *fp;
    char path[4300];
    int64_t done;     /* rows on file (a multiple of the batch, or all n) */
    int64_t dims[3];  /* pool, spatial, logits */
} kb_fpartial;

/* Opens (or starts) path for n images in batches of `batch`, with dims
 * {pool, spatial, logits} (0 for an absent one). A file of the same header
 * gives its whole batches of rows into the arrays (row-major [n, dim]; NULL
 * where the dim is 0) and pf->done says how many. */
int kb_fpartial_open(kb_fpartial *pf, const char *path, const char *tag, int64_t n, int batch, const int64_t dims[3],
                     float *pool, float *spatial, float *logits, kb_err *err);
/* Appends rows [first, first + k) of the arrays (first must be pf->done). */
int kb_fpartial_append(kb_fpartial *pf, int64_t first, int64_t k, const float *pool, const float *spatial,
                       const float *logits, kb_err *err);
/* Closes the file; remove = 1 deletes it (the featurisation finished). */
void kb_fpartial_close(kb_fpartial *pf, int remove);
/* The partial files in dir (but `except`, when given) that no live run
 * holds: stopped runs' featurisations, kept until a rerun resumes them, so
 * possibly forever (about 1 GB for 50k images). Their count, and their size
 * into *bytes; 0 when dir cannot be read. */
int64_t kb_fpartial_stale(const char *dir, const char *except, int64_t *bytes);

#endif
