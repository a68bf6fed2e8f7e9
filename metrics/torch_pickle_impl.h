/* Internals of the safe PyTorch checkpoint reader, shared by the pickle
 * machine (metrics/torch_pickle.c) and the container formats
 * (metrics/torch_pickle_file.c). Not a public interface. */
#ifndef KB_TORCH_PICKLE_IMPL_H
#define KB_TORCH_PICKLE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "metrics/torch_pickle.h"

/* Caps that bound what a hostile file can make us allocate or loop over. */
#define KB_TP_MAX_STACK ((int64_t)1 << 22)   /* values on the pickle stack */
#define KB_TP_MAX_MARKS 256                  /* MARK nesting depth */
#define KB_TP_MAX_MEMO ((uint32_t)1 << 22)   /* memo slots */
#define KB_TP_MAX_STRING ((uint32_t)1 << 20) /* bytes in one string */
#define KB_TP_MAX_ARENA ((size_t)1 << 30)    /* bytes of parsed values in all */
#define KB_TP_MAX_ENTRIES (1 << 20)          /* storages, tensors, state-dict entries */
#define KB_TP_MAX_PICKLE ((size_t)1 << 30)   /* bytes of one pickle (zip: data.pkl) */

/* ---- a bump allocator that frees everything at once ---- */
typedef struct kb_tp_block kb_tp_block;
typedef struct {
    kb_tp_block *head;
    size_t total; /* bytes handed out, against KB_TP_MAX_ARENA */
} kb_tp_arena;

void *kb_tp_alloc(kb_tp_arena *a, size_t bytes); /* zeroed; NULL past the cap or out of memory */
void kb_tp_arena_free(kb_tp_arena *a);

/* ---- a string -> index map (open addressing) ---- */
typedef struct {
    const char **keys;
    int *vals;
    size_t cap, count;
} kb_tp_map;

int kb_tp_map_get(const kb_tp_map *m, const char *key); /* -1 when absent */
int kb_tp_map_put(kb_tp_map *m, const char *key, int val); /* key borrowed; -1 out of memory */
void kb_tp_map_free(kb_tp_map *m);

/* ---- pickle values ---- */
typedef enum {
    KB_TPV_NONE,
    KB_TPV_BOOL,
    KB_TPV_INT,
    KB_TPV_BIGINT, /* LONG1 wider than 64 bits: raw little-endian bytes in s/len (the magic number) */
    KB_TPV_FLOAT,
    KB_TPV_STR,
    KB_TPV_TUPLE,
    KB_TPV_LIST,
    KB_TPV_DICT, /* items: key0, value0, key1, value1, ... */
    KB_TPV_GLOBAL,
    KB_TPV_STORAGE,
    KB_TPV_TENSOR
} kb_tpv_kind;

typedef struct kb_tpv kb_tpv;
struct kb_tpv {
    kb_tpv_kind kind;
    int ordered;   /* DICT built by OrderedDict(): BUILD may give it attributes (dropped) */
    int64_t i;     /* BOOL, INT; GLOBAL: allow-list id; STORAGE: storage index; TENSOR: index in rebuilt */
    double f;      /* FLOAT */
    const char *s; /* STR (NUL-terminated, no inner NUL), BIGINT bytes */
    size_t len;
    kb_tpv **items; /* TUPLE, LIST, DICT */
    int64_t n, cap;
};

/* ---- the file ---- */
struct kb_tp_file {
    char label[512];
    kb_tp_format format;
    int flags;
    uint8_t *owned; /* the file's bytes when opened by path */
    const uint8_t *data;
    size_t size;
    kb_tp_arena arena;
    kb_tp_storage *storages;
    int nstorages, storages_cap;
    kb_tp_map storage_index;
    kb_tp_tensor *rebuilt; /* tensors made by REDUCE, not yet named */
    int nrebuilt, rebuilt_cap;
    kb_tp_tensor *tensors; /* the state dict's entries */
    int ntensors;
    kb_tp_map name_index;
    uint64_t missing, expected_size;
    uint8_t **zip_data; /* zip: one malloc'd buffer per storage */
};

/* Runs one pickle starting at buf[*pos] (buf_base: its offset in the file,
 * for messages) up to STOP; *pos moves past it. Persistent ids must be
 * storages; they go to f->storages. */
int kb_tp_run(kb_tp_file *f, const uint8_t *buf, size_t n, size_t *pos, size_t buf_base, kb_tpv **out, kb_err *err);
/* Names the tensors of a state-dict value (a dict of str -> tensor) into f->tensors. */
int kb_tp_collect(kb_tp_file *f, const kb_tpv *root, kb_err *err);
/* Element size of a storage dtype. */
size_t kb_tp_elsize(kb_dtype dt);
/* Checks each tensor's extent against its storage. */
int kb_tp_check_extents(kb_tp_file *f, kb_err *err);

#endif
