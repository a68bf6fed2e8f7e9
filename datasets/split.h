/* Which classes are pretraining classes and which are novel (held out for the
 * transfer step), and which images are train and which test. Both are
 * reproducible: from files, from the source itself, or drawn with a seed
 * through kb_rng (Philox), which gives the same draw on every machine. */
#ifndef KB_DS_SPLIT_H
#define KB_DS_SPLIT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "datasets/source.h"
#include "util/err.h"

typedef struct {
    const char *pretrain_file; /* one class name per line; NULL if not given */
    const char *novel_file;
    double novel_fraction; /* < 0: not given (kb_split_opts_init sets -1) */
    uint64_t split_seed;   /* seeds the class draw; < 2^53 so JSON stores it exactly */
    double test_fraction;  /* < 0: not given */
    uint64_t seed;         /* seeds the per-image test draw */
} kb_split_opts;

void kb_split_opts_init(kb_split_opts *o);

/* Fills roles[nclasses] (kb_class_role values) and adds a "class_split"
 * record to meta. Modes:
 *  - files: --pretrain-classes and/or --novel-classes. With one file the
 *    other classes take the other role; with both, classes in neither file
 *    are "unused". An unknown or repeated name is an error naming file:line.
 *  - random: round(F * nclasses) novel classes drawn by a Fisher-Yates
 *    shuffle of the class indices with kb_rng(split_seed, stream "class").
 *  - all-pretrain: the default. */
int kb_assign_class_roles(const kb_source *src, const kb_split_opts *o, uint8_t *roles, cJSON *meta, kb_err *err);
/* The options alone: class files and --novel-fraction are not both given. */
int kb_split_opts_check(const kb_split_opts *o, kb_err *err);

/* Fills split[count] (KB_SPLIT_TRAIN/TEST) and adds an "image_split" record.
 *  - source: the source's own split (Fashion-MNIST); --test-fraction is then
 *    an error;
 *  - random: per class, round(F * n_class) test images: the class's items
 *    ordered by a Philox draw keyed by (seed, item key), so an item's side
 *    depends on its own identity, not on which other files exist (the apple
 *    and google emoji caches then split the same emoji the same way);
 *  - none: everything train (the default, --test-fraction 0). */
int kb_assign_image_split(const kb_source *src, const kb_split_opts *o, uint8_t *split, cJSON *meta, kb_err *err);

#endif
