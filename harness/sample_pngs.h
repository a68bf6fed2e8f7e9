/* The per-sample PNG folder of `kindbench sample`, DIR/png, replaced as one
 * set: a run writes its PNGs into DIR/.png.new.<pid>, and only once it has
 * succeeded does that folder become DIR/png (two renames). The earlier run's
 * sample PNGs go with the old folder; other files in it are carried over. A
 * run that fails or is stopped leaves DIR/png as it was, so a folder that
 * `eval` scores never mixes two runs. */
#ifndef KB_SAMPLE_PNGS_H
#define KB_SAMPLE_PNGS_H

#include "util/err.h"

typedef struct {
    char dir[4096];     /* DIR/png */
    char staging[4200]; /* DIR/.png.new.<pid>, where this run writes */
    char old[4200];     /* DIR/.png.old.<pid>, the earlier set while it is replaced */
    int staged;
} kb_png_set;

/* Creates the staging folder (a left-over one of this pid is emptied). */
int kb_png_set_begin(kb_png_set *s, const char *out_dir, kb_err *err);
/* Makes the staging folder DIR/png; *replaced counts the earlier sample PNGs. */
int kb_png_set_commit(kb_png_set *s, long long *replaced, kb_err *err);
/* Removes the staging folder and what this run wrote there. */
void kb_png_set_abort(kb_png_set *s);
/* --no-png: removes the sample PNGs (not other files) from DIR/png. */
int kb_png_set_clear(const char *out_dir, long long *removed, kb_err *err);

/* 1 when name is a sample PNG's, "<index, 6+ digits>_class<k>.png". */
int kb_is_sample_png_name(const char *name);

#endif
