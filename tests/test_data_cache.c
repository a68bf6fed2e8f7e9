/* The dataset cache and its pieces, without sources on disk: writer/loader
 * round trip and accessors; the loader refusing corrupt, truncated and foreign
 * files (a renamed class caught by the header digest); no file left after an
 * aborted or short write; class roles from files
 * (errors name file:line) and from a seed; the keyed test split; grids; PNG
 * write/read round trip; verification stamps (a cache hashed once per
 * version of its file, never trusted for a changed or replaced file; the
 * temp files of killed stamp writes removed by the next); the
 * kind of a decoder's error (the file's content, which
 * `prepare --skip-unreadable` skips, or a read failure, which it must not). */
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datasets/cache.h"
#include "datasets/dataset.h"
#include "datasets/grid.h"
#include "datasets/image_io.h"
#include "datasets/split.h"
#include "tests/kbtest.h"
#include "tests/test_cache_small.h"
#include "util/fileio.h"
#include "util/verified.h"

#define RES KBT_SMALL_RES
#define CH KBT_SMALL_CH
#define COUNT KBT_SMALL_COUNT

static int no_temp_files(const char *path) {
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s.tmp.*", path);
    glob_t g;
    int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    globfree(&g);
    return n == 0;
}

static void check_roundtrip(kbt_state *st) {
    kb_err err = {0};
    KBT_CHECK(st, kbt_write_small_cache("cache_rt.kbd", &err) == 0, "writer produces a cache", "%s", err.msg);
    kb_dataset ds;
    int ok = kb_dataset_open(&ds, "cache_rt.kbd", &err) == 0;
    KBT_CHECK(st, ok, "loader opens and verifies it", "%s", err.msg);
    if (!ok) return;
    KBT_CHECK(st, ds.count == COUNT && ds.resolution == RES && ds.channels == CH && ds.nclasses == 3 &&
                      !strcmp(ds.name, "tiny") && !strcmp(ds.class_names[2], "Ankle boot"),
              "header fields", "count %lld res %d ch %d classes %d", (long long)ds.count, ds.resolution, ds.channels,
              ds.nclasses);
    KBT_CHECK(st, kb_dataset_label(&ds, 2) == 2 && kb_dataset_split(&ds, 3) == KB_SPLIT_TEST &&
                      kb_dataset_image(&ds, 3)[5] == 3 * 40 + 5 && kb_dataset_class_role(&ds, 1) == KB_ROLE_NOVEL,
              "label, split, image and role accessors", "mismatch");
    KBT_CHECK(st, ((uintptr_t)ds.images % 64) == 0 && ((uintptr_t)ds.labels % 64) == 0,
              "payload and images are 64-byte aligned", "misaligned");
    int64_t *idx, n;
    kb_dataset_select(&ds, KB_ROLE_PRETRAIN, KB_SPLIT_TRAIN, &idx, &n, &err);
    KBT_CHECK(st, n == 2 && idx[0] == 0 && idx[1] == 4, "select pretrain/train", "n %lld", (long long)n);
    free(idx);
    kb_dataset_select(&ds, KB_ROLE_NOVEL, KB_SPLIT_ANY, &idx, &n, &err);
    KBT_CHECK(st, n == 2 && idx[0] == 1 && idx[1] == 3, "select novel/any", "n %lld", (long long)n);
    free(idx);
    int *cls, nc;
    kb_dataset_classes_with_role(&ds, KB_ROLE_UNUSED, &cls, &nc, &err);
    KBT_CHECK(st, nc == 1 && cls[0] == 2, "classes with role unused", "n %d", nc);
    free(cls);
    KBT_CHECK(st, kb_dataset_class_count(&ds, 1, KB_SPLIT_TEST) == 1 && kb_dataset_class_index(&ds, "dog") == 1,
              "class counts and lookup", "mismatch");
    kb_dataset_close(&ds);
}

/* Writes a damaged copy of cache_rt.kbd and expects open to fail with `want` in the message. */
static void check_damaged(kbt_state *st, const char *what, long offset, int flip, long truncate_by, const char *want) {
    uint8_t *data;
    size_t size;
    kb_err err = {0};
    kb_read_file("cache_rt.kbd", &data, &size, &err);
    if (offset < 0) offset += (long)size;
    if (flip) data[offset] ^= 0x5a;
    FILE *fp = fopen("cache_bad.kbd", "wb");
    fwrite(data, 1, size - (size_t)truncate_by, fp);
    fclose(fp);
    free(data);
    kb_dataset ds;
    int rc = kb_dataset_open(&ds, "cache_bad.kbd", &err);
    if (rc == 0) kb_dataset_close(&ds);
    KBT_CHECK(st, rc != 0 && strstr(err.msg, want) && strstr(err.msg, "cache_bad.kbd"), what, "rc %d, message: %s", rc,
              err.msg);
}

/* Offset of the first `needle` in cache_rt.kbd's header, -1 if absent. */
static long header_offset_of(const char *needle) {
    uint8_t *data;
    size_t size;
    kb_err err = {0};
    if (kb_read_file("cache_rt.kbd", &data, &size, &err)) return -1;
    long at = -1;
    for (size_t i = 0; i + strlen(needle) <= size && i < 4096 && at < 0; i++)
        if (!memcmp(data + i, needle, strlen(needle))) at = (long)i;
    free(data);
    return at;
}

/* The header's own digest: a class renamed in the JSON (still valid JSON,
 * payload digest untouched) was accepted before metadata_sha256 existed. */
static void check_header_damage(kbt_state *st) {
    long dog = header_offset_of("\"dog\""), digest = header_offset_of("\"metadata_sha256\":\t\"");
    KBT_CHECK(st, dog > 0 && digest > 0, "header holds the class name and metadata_sha256", "dog %ld digest %ld", dog,
              digest);
    if (dog <= 0 || digest <= 0) return;
    check_damaged(st, "renamed class -> header digest error", dog + 1, 1, 0, "header (metadata) SHA-256");
    check_damaged(st, "flipped header digest -> header digest error", digest + 22, 1, 0, "header (metadata) SHA-256");
}

static void check_failures(kbt_state *st) {
    check_damaged(st, "flipped image byte -> checksum error", -3, 1, 0, "SHA-256");
    check_header_damage(st);
    check_damaged(st, "truncated file -> truncated error", 0, 0, 7, "truncated cache");
    check_damaged(st, "bad magic -> not a cache", 2, 1, 0, "bad magic");
    kb_err err = {0};
    kb_dataset ds;
    int rc = kb_dataset_open(&ds, "no_such_cache.kbd", &err);
    KBT_CHECK(st, rc != 0 && strstr(err.msg, "no_such_cache.kbd"), "missing file -> error naming it", "%s", err.msg);
    /* A short write must leave nothing behind and keep an existing file. */
    FILE *fp = fopen("cache_keep.kbd", "w");
    fputs("precious", fp);
    fclose(fp);
    kb_cache_writer w;
    cJSON *meta = kb_cache_meta_new();
    int32_t labels[2] = {0, 0};
    uint8_t split[2] = {0, 0}, img[RES * RES * CH] = {0};
    rc = kb_cache_writer_open(&w, "cache_keep.kbd", meta, 2, RES, CH, labels, split, &err);
    if (rc == 0) rc = kb_cache_writer_add(&w, img, &err);
    if (rc == 0) rc = kb_cache_writer_commit(&w, &err); /* one image short */
    uint8_t *kept;
    size_t size;
    kb_read_file("cache_keep.kbd", &kept, &size, &err);
    KBT_CHECK(st, rc != 0 && size == 8 && !memcmp(kept, "precious", 8) && no_temp_files("cache_keep.kbd"),
              "short write fails, keeps the old file, leaves no temp file", "rc %d size %zu", rc, size);
    free(kept);
    cJSON_Delete(meta);
}

static void make_source(kb_source *src, kb_err *err) {
    memset(src, 0, sizeof *src);
    snprintf(src->kind, sizeof src->kind, "test");
    const char *names[10] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "Ankle boot"};
    for (int c = 0; c < 10; c++) kb_source_add_class(src, names[c], err);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
}

static void check_class_roles(kbt_state *st) {
    kb_source src;
    kb_err err = {0};
    make_source(&src, &err);
    uint8_t roles[10], again[10];
    kb_split_opts o;
    kb_split_opts_init(&o);
    write_text("classes_novel.txt", "# held out\nc3\n\n  Ankle boot  \n");
    o.novel_file = "classes_novel.txt";
    cJSON *meta = cJSON_CreateObject();
    int rc = kb_assign_class_roles(&src, &o, roles, meta, &err);
    KBT_CHECK(st, rc == 0 && roles[3] == KB_ROLE_NOVEL && roles[9] == KB_ROLE_NOVEL && roles[0] == KB_ROLE_PRETRAIN,
              "novel file: listed classes novel, the rest pretrain", "%s", err.msg);
    write_text("classes_bad.txt", "c1\nc2\nzebra\n");
    o.novel_file = "classes_bad.txt";
    rc = kb_assign_class_roles(&src, &o, roles, meta, &err);
    KBT_CHECK(st, rc != 0 && strstr(err.msg, "classes_bad.txt:3") && strstr(err.msg, "zebra"),
              "unknown class name -> error naming file:line", "%s", err.msg);
    write_text("classes_pre.txt", "c1\nc3\n");
    o.pretrain_file = "classes_pre.txt";
    o.novel_file = "classes_novel.txt";
    rc = kb_assign_class_roles(&src, &o, roles, meta, &err);
    KBT_CHECK(st, rc != 0 && strstr(err.msg, "classes_novel.txt:2"), "class in both files -> error", "%s", err.msg);
    kb_split_opts_init(&o);
    o.novel_fraction = 0.3;
    o.split_seed = 11;
    kb_assign_class_roles(&src, &o, roles, meta, &err);
    kb_assign_class_roles(&src, &o, again, meta, &err);
    int novel = 0, differs = 0;
    for (int c = 0; c < 10; c++) novel += roles[c] == KB_ROLE_NOVEL;
    for (uint64_t seed = 12; seed < 20; seed++) {
        o.split_seed = seed;
        kb_assign_class_roles(&src, &o, again, meta, &err);
        differs |= memcmp(roles, again, 10) != 0;
    }
    KBT_CHECK(st, novel == 3 && differs, "--novel-fraction 0.3 of 10: 3 novel, seed-dependent", "novel %d", novel);
    o.split_seed = 11;
    kb_assign_class_roles(&src, &o, again, meta, &err);
    KBT_CHECK(st, !memcmp(roles, again, 10), "same seed, same novel classes", "differs");
    cJSON_Delete(meta);
    kb_source_free(&src);
}

/* The test split depends on item keys, not on listing order or neighbours. */
static void check_image_split(kbt_state *st) {
    kb_source a, b;
    kb_err err = {0};
    make_source(&a, &err);
    make_source(&b, &err);
    char key[32];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "item%02d", i);
        kb_source_add_item(&a, key, NULL, i % 2, -1, &err);
        snprintf(key, sizeof key, "item%02d", 39 - i);
        kb_source_add_item(&b, key, NULL, (39 - i) % 2, -1, &err);
    }
    kb_split_opts o;
    kb_split_opts_init(&o);
    o.test_fraction = 0.25;
    o.seed = 5;
    uint8_t sa[40], sb[40];
    cJSON *meta = cJSON_CreateObject();
    kb_assign_image_split(&a, &o, sa, meta, &err);
    kb_assign_image_split(&b, &o, sb, meta, &err);
    int n_test = 0, same = 1;
    for (int i = 0; i < 40; i++) {
        n_test += sa[i];
        same &= sa[i] == sb[39 - i];
    }
    KBT_CHECK(st, n_test == 10 && same, "--test-fraction 0.25: 5 of 20 per class, keyed by item",
              "test %d, order-independent %d", n_test, same);
    cJSON_Delete(meta);
    kb_source_free(&a);
    kb_source_free(&b);
}

static void check_grid_and_png(kbt_state *st) {
    uint8_t c0[2 * 2 * 3], c1[2 * 2 * 3];
    memset(c0, 10, sizeof c0);
    memset(c1, 200, sizeof c1);
    const uint8_t *cells[4] = {c0, NULL, NULL, c1};
    kb_image g;
    kb_err err = {0};
    int rc = kb_grid_compose(cells, 2, 2, 2, 3, 1, 255, &g, &err);
    KBT_CHECK(st, rc == 0 && g.width == 7 && g.height == 7 && g.px[(1 * 7 + 1) * 3] == 10 &&
                      g.px[(4 * 7 + 4) * 3] == 200 && g.px[(1 * 7 + 4) * 3] == 255 && g.px[0] == 255,
              "grid places cells with gaps, empty cells white", "%s", err.msg);
    rc = kb_png_write("grid_rt.png", &g, &err);
    kb_image back;
    int rc2 = kb_png_read("grid_rt.png", &back, &err);
    KBT_CHECK(st, rc == 0 && rc2 == 0 && back.width == 7 && back.channels == 3 &&
                      !memcmp(back.px, g.px, (size_t)7 * 7 * 3),
              "PNG write/read round trip", "%s", err.msg);
    if (rc2 == 0) kb_image_free(&back);
    kb_image_free(&g);
}

/* ---- verification stamps ---- */

#define STAMPS "stamps.work"

static int count_stamps(void) {
    DIR *d = opendir(STAMPS);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".stamp") != NULL;
    if (d) closedir(d);
    return n;
}

static void clear_stamps(void) {
    DIR *d = opendir(STAMPS);
    char path[600];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, STAMPS "/%s", e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
}

/* Opens path with the given mode: -1 on failure (message in err), else 1
 * when the digest came from a stamp and 0 when it was computed. */
static int open_how(const char *path, kb_verify_mode mode, kb_err *err) {
    kb_dataset ds;
    kb_dataset_open_opts o = {.verify = mode, .quiet = 1};
    kb_err_clear(err); /* a message in a failure report is this open's */
    if (kb_dataset_open_with(&ds, path, &o, err)) return -1;
    int from_stamp = ds.digest_from_stamp;
    kb_dataset_close(&ds);
    return from_stamp;
}

/* Stamps are only written for files whose ctime is KB_STAMP_SETTLED_S old. */
static void wait_until_settled(const char *path) {
    struct stat st;
    struct timespec now;
    for (int i = 0; i < 100 && stat(path, &st) == 0; i++) {
        clock_gettime(CLOCK_REALTIME, &now);
        double age = (double)(now.tv_sec - st.st_ctim.tv_sec) + 1e-9 * (double)(now.tv_nsec - st.st_ctim.tv_nsec);
        if (age > KB_STAMP_SETTLED_S + 0.05) return;
        usleep(100000);
    }
}

/* Flips one payload byte of path in place and sets mtime back, as a tool
 * that "preserves timestamps" would: only ctime can tell. */
static int flip_in_place(const char *path, long from_end) {
    struct stat before;
    if (stat(path, &before)) return -1;
    FILE *fp = fopen(path, "r+b");
    if (!fp || fseek(fp, -from_end, SEEK_END)) return fp ? fclose(fp), -1 : -1;
    int c = fgetc(fp);
    fseek(fp, -from_end, SEEK_END);
    fputc(c ^ 0x5a, fp);
    fclose(fp);
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    return utimensat(AT_FDCWD, path, times, 0);
}

/* path replaced (a new file renamed over it, as cp/rsync/an atomic writer do)
 * by one of the same size, one payload byte different, the old mtime set. */
static int replace_same_size(const char *path, long from_end) {
    uint8_t *data;
    size_t size;
    kb_err err = {0};
    struct stat before;
    if (stat(path, &before) || kb_read_file(path, &data, &size, &err)) return -1;
    data[size - (size_t)from_end] ^= 0x5a;
    FILE *fp = fopen("cache_stamp_new.kbd", "wb");
    size_t put = fp ? fwrite(data, 1, size, fp) : 0;
    if (fp) fclose(fp);
    free(data);
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    if (put != size || utimensat(AT_FDCWD, "cache_stamp_new.kbd", times, 0)) return -1;
    return rename("cache_stamp_new.kbd", path);
}

static void check_stamps_fresh(kbt_state *st) {
    kb_err err = {0};
    int rc = open_how("cache_stamp.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, rc == 0 && count_stamps() == 0,
              "a cache written just now is hashed and not stamped (a write in the same clock tick would keep its ctime)",
              "rc %d, %d stamps: %s", rc, count_stamps(), err.msg);
}

static void check_stamps_kept(kbt_state *st) {
    kb_err err = {0};
    int first = open_how("cache_stamp.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, first == 0 && count_stamps() == 1, "first open of a settled cache hashes it and writes a stamp",
              "rc %d, %d stamps: %s", first, count_stamps(), err.msg);
    int second = open_how("cache_stamp.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, second == 1, "second open takes the digest from the stamp", "rc %d: %s", second, err.msg);
    int full = open_how("cache_stamp.kbd", KB_VERIFY_ALWAYS, &err);
    KBT_CHECK(st, full == 0, "KB_VERIFY_ALWAYS (data info) hashes despite the stamp", "rc %d: %s", full, err.msg);
    setenv("KINDBENCH_VERIFY", "always", 1);
    int env = open_how("cache_stamp.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, env == 0, "$KINDBENCH_VERIFY=always hashes despite the stamp", "rc %d: %s", env, err.msg);
    setenv("KINDBENCH_VERIFY", "sometimes", 1);
    int bad = open_how("cache_stamp.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, bad == -1 && strstr(err.msg, "KINDBENCH_VERIFY=sometimes") && strstr(err.msg, "'always'"),
              "$KINDBENCH_VERIFY=sometimes: an error naming it and the values", "rc %d: %s", bad, err.msg);
    setenv("KINDBENCH_VERIFY", "once", 1);
    int once = open_how("cache_stamp.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, once == 1, "$KINDBENCH_VERIFY=once is the default", "rc %d: %s", once, err.msg);
    unsetenv("KINDBENCH_VERIFY");
}

static void check_stamps_distrusted(kbt_state *st) {
    kb_err err = {0};
    int rc = flip_in_place("cache_stamp.kbd", 3);
    int after = rc ? -2 : open_how("cache_stamp.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, after == -1 && strstr(err.msg, "payload SHA-256"),
              "a byte changed in place, mtime set back: the stamp is not trusted (ctime moved)", "rc %d: %s", after,
              err.msg);
    int stamped = open_how("cache_stamp_b.kbd", KB_VERIFY_ONCE, &err);
    int trusted = open_how("cache_stamp_b.kbd", KB_VERIFY_ONCE, &err);
    rc = stamped == 0 && trusted == 1 ? replace_same_size("cache_stamp_b.kbd", 3) : -1;
    after = rc ? -2 : open_how("cache_stamp_b.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, after == -1 && strstr(err.msg, "payload SHA-256"),
              "a file replaced by another of the same size and mtime: the stale stamp is not trusted",
              "stamped %d trusted %d replaced %d, then %d: %s", stamped, trusted, rc, after, err.msg);
}

static void check_stamps_unwritable(kbt_state *st) {
    kb_err err = {0};
    /* a regular file where a directory should be: fails for root too */
    setenv("KINDBENCH_VERIFIED_DIR", "cache_rt.kbd/stamps", 1);
    int a = open_how("cache_rt.kbd", KB_VERIFY_ONCE, &err), b = open_how("cache_rt.kbd", KB_VERIFY_ONCE, &err);
    KBT_CHECK(st, a == 0 && b == 0, "stamp directory that cannot be made: caches open, hashed every time",
              "rc %d then %d: %s", a, b, err.msg);
    setenv("KINDBENCH_VERIFIED_DIR", STAMPS, 1);
}

/* The stamps go to this test's own directory (set in main), emptied first.
 * Two caches written now; each version is checked once it has settled. */
static void check_stamps(kbt_state *st) {
    kb_err err = {0};
    unsetenv("KINDBENCH_VERIFY");
    clear_stamps();
    int rc = kbt_write_small_cache("cache_stamp.kbd", &err) || kbt_write_small_cache("cache_stamp_b.kbd", &err);
    KBT_CHECK(st, rc == 0, "caches for the stamp checks", "%s", err.msg);
    if (rc) return;
    check_stamps_fresh(st);
    wait_until_settled("cache_stamp_b.kbd");
    check_stamps_kept(st);
    check_stamps_distrusted(st);
    check_stamps_unwritable(st);
}

/* Writes n bytes of text to path (a file the decoders are to refuse). */
static void write_bytes(const char *path, const char *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) fwrite(bytes, 1, n, f), fclose(f);
}

/* A run killed (SIGKILL) while writing a stamp left "<hash>.stamp.tmp.<pid>.XXXXXX" in the stamps dir for
 * good; the next stamp written removes those of dead pids (99999999 is past any pid_max), and leaves a live
 * writer's (this process's), a temp that names no writer and files that are not stamp temps. */
#define SWEEP_DIR "stamps_sweep.work"
#define HASH_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HASH_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static void check_stamp_temps_swept(kbt_state *st) {
    kb_err err = {0};
    char live[200], path[300];
    snprintf(live, sizeof live, HASH_B ".stamp.tmp.%ld.Lv12Ab", (long)getpid());
    const char *dead[] = {HASH_A ".stamp.tmp.99999999.Qw12Er", HASH_B ".stamp.tmp.99999999"};
    const char *kept[] = {live, HASH_A ".stamp.tmp.AbC123", "notes.stamp.tmp.99999999", HASH_A ".stamp"};
    mkdir(SWEEP_DIR, 0755);
    for (size_t i = 0; i < 2; i++) snprintf(path, sizeof path, SWEEP_DIR "/%s", dead[i]), write_bytes(path, "x", 1);
    for (size_t i = 0; i < 4; i++) snprintf(path, sizeof path, SWEEP_DIR "/%s", kept[i]), write_bytes(path, "x", 1);
    /* a version settled long ago: the stamp is written (no file behind it is needed) */
    kb_file_version v;
    memset(&v, 0, sizeof v);
    snprintf(v.real_path, sizeof v.real_path, "/nowhere/swept.kbd");
    clock_gettime(CLOCK_REALTIME, &v.seen);
    int rc = kb_stamp_write(SWEEP_DIR, &v, HASH_A, &err);
    int gone = 0, stayed = 0;
    for (size_t i = 0; i < 2; i++) snprintf(path, sizeof path, SWEEP_DIR "/%s", dead[i]), gone += !kb_is_file(path);
    for (size_t i = 0; i < 4; i++) snprintf(path, sizeof path, SWEEP_DIR "/%s", kept[i]), stayed += kb_is_file(path);
    KBT_CHECK(st, rc == 0 && kb_stamp_found(SWEEP_DIR, &v, HASH_A), "a stamp is written beside stale temp files",
              "rc %d: %s", rc, err.msg);
    KBT_CHECK(st, gone == 2, "writing a stamp removes the stamp temp files of dead writers", "%d of 2 removed", gone);
    KBT_CHECK(st, stayed == 4, "a live writer's stamp temp, one naming no writer and other files are kept",
              "%d of 4 kept", stayed);
}

/* decode(path) fails with an error of kind want whose message holds text. */
static void check_kind(kbt_state *st, int (*decode)(const char *, kb_image *, kb_err *), const char *path,
                       kb_err_kind want, const char *text, const char *name) {
    kb_err err = {0};
    kb_image img;
    int rc = decode(path, &img, &err);
    if (rc == 0) kb_image_free(&img);
    KBT_CHECK(st, rc == -1 && err.kind == want && strstr(err.msg, text), name, "rc %d, kind %d (want %d): %s", rc,
              (int)err.kind, (int)want, err.msg);
}

/* The content's faults are KB_ERR_BAD_DATA; a read that fails is not. A read
 * of /proc/self/mem at offset 0 (never mapped) fails with EIO in every process. */
static void check_error_kinds(kbt_state *st) {
    kb_err err = {0};
    kb_fail_as(&err, KB_ERR_BAD_DATA, "x");
    kb_fail_wrap(&err, "f.png");
    int wrapped = err.kind;
    kb_fail(&err, "y");
    KBT_CHECK(st, wrapped == KB_ERR_BAD_DATA && err.kind == KB_ERR_OTHER,
              "kb_fail_wrap keeps the kind, kb_fail resets it", "%d, %d", wrapped, (int)err.kind);
    write_bytes("kind_empty.png", "", 0);
    write_bytes("kind_text.png", "hello\n", 6);
    write_bytes("kind_cut.jpg", "\xff\xd8\xff\xe0\x00\x10JFIF", 10);
    write_bytes("kind_cut.gif", "GIF89a\x10\x00", 8);
    write_bytes("kind_cut.png", "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", 16);
    check_kind(st, kb_image_read, "kind_empty.png", KB_ERR_BAD_DATA, "empty file", "empty file: bad data");
    check_kind(st, kb_image_read, "kind_text.png", KB_ERR_BAD_DATA, "not a PNG, JPEG or GIF", "text: bad data");
    check_kind(st, kb_image_read, "kind_cut.png", KB_ERR_BAD_DATA, "corrupt or truncated PNG", "cut PNG: bad data");
    check_kind(st, kb_image_read, "kind_cut.jpg", KB_ERR_BAD_DATA, "corrupt or truncated JPEG", "cut JPEG: bad data");
    check_kind(st, kb_image_read, "kind_cut.gif", KB_ERR_BAD_DATA, "corrupt or truncated GIF", "cut GIF: bad data");
    check_kind(st, kb_image_read, "kind_missing.png", KB_ERR_OTHER, "cannot open", "missing file: not bad data");
    check_kind(st, kb_image_read, "/proc/self/mem", KB_ERR_OTHER, "read failed: Input/output error",
               "EIO while sniffing the format: not bad data");
    check_kind(st, kb_png_read, "/proc/self/mem", KB_ERR_OTHER, "read failed: Input/output error", "PNG reader, EIO");
    check_kind(st, kb_jpeg_read, "/proc/self/mem", KB_ERR_OTHER, "read failed: Input/output error", "JPEG reader, EIO");
    if (kb_gif_supported())
        check_kind(st, kb_gif_read, "/proc/self/mem", KB_ERR_OTHER, "read failed: Input/output error",
                   "GIF reader, EIO");
    kb_image img;
    int rc = kb_image_alloc(&img, 40000, 40000, 3, &err);
    KBT_CHECK(st, rc == -1 && err.kind == KB_ERR_BAD_DATA, "an image past 2^30 pixels: bad data", "%s", err.msg);
}

int main(void) {
    kbt_state st = {0, 0};
    /* every open of this test stamps into its own directory, never ~/.cache */
    setenv("KINDBENCH_VERIFIED_DIR", STAMPS, 1);
    check_roundtrip(&st);
    check_failures(&st);
    check_class_roles(&st);
    check_image_split(&st);
    check_grid_and_png(&st);
    check_stamps(&st);
    check_stamp_temps_swept(&st);
    check_error_kinds(&st);
    return kbt_finish(&st);
}
