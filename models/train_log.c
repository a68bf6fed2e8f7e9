/* The trainer's records: the run's settings as JSON (DIR/train.json and the
 * checkpoints' "train" metadata) and the loss log DIR/loss.csv (libcsv). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>

#include "models/train_internal.h"
#include "util/fileio.h"

static cJSON *data_json(const kb_trainer *tr) {
    const kb_train_opts *o = tr->o;
    const kb_train_data *d = &tr->data;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", tr->data_abs);
    cJSON_AddStringToObject(j, "name", tr->ds.name);
    cJSON_AddStringToObject(j, "payload_sha256", tr->ds.payload_sha256);
    cJSON_AddNumberToObject(j, "resolution", tr->ds.resolution);
    cJSON_AddNumberToObject(j, "channels", tr->ds.channels);
    cJSON_AddStringToObject(j, "classes", kb_train_classes_name(o->classes));
    cJSON_AddStringToObject(j, "split", kb_train_split_name(o->split));
    cJSON_AddNumberToObject(j, "images", (double)d->n);
    cJSON_AddStringToObject(j, "input_scaling", "x / 127.5 - 1 (uint8 NHWC to float NCHW)");
    cJSON *map = cJSON_AddArrayToObject(j, "class_map");
    for (int k = 0; k < d->nclasses; k++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "id", k);
        cJSON_AddNumberToObject(e, "dataset_class", d->classes[k]);
        cJSON_AddStringToObject(e, "name", tr->ds.class_names[d->classes[k]]);
        cJSON_AddItemToArray(map, e);
    }
    cJSON_AddNumberToObject(j, "null_class_id", d->nclasses);
    return j;
}

static cJSON *rng_json(void) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "generator", "philox4x32-10 (nn/rng.h)");
    cJSON_AddStringToObject(j, "stream", "purpose << 48 | step (permutation: | epoch); index = sample or element");
    cJSON_AddNumberToObject(j, "permutation", KB_TRAIN_STREAM_PERM);
    cJSON_AddNumberToObject(j, "flip", KB_TRAIN_STREAM_FLIP);
    cJSON_AddNumberToObject(j, "label_dropout", KB_TRAIN_STREAM_DROP);
    cJSON_AddNumberToObject(j, "timestep", KB_TRAIN_STREAM_T);
    cJSON_AddNumberToObject(j, "noise", KB_TRAIN_STREAM_NOISE);
    cJSON_AddStringToObject(j, "init", "parameter i from stream i (kb_dit_create)");
    return j;
}

/* A JSON string produced by one of our serialisers, as an object. */
static void add_parsed(cJSON *j, const char *key, char *json) {
    cJSON_AddItemToObject(j, key, json ? cJSON_Parse(json) : cJSON_CreateNull());
    free(json);
}

static cJSON *state_json(const kb_trainer *tr) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddNumberToObject(s, "step", (double)tr->opt.step);
    cJSON_AddNumberToObject(s, "images_seen", (double)tr->opt.step * tr->o->batch);
    cJSON *acc = cJSON_AddObjectToObject(s, "log_acc");
    /* cJSON prints doubles with up to 17 digits when needed: exact round trip. */
    cJSON_AddNumberToObject(acc, "n", (double)tr->acc.n);
    cJSON_AddNumberToObject(acc, "loss", tr->acc.loss);
    cJSON_AddNumberToObject(acc, "mse", tr->acc.mse);
    cJSON_AddNumberToObject(acc, "vb", tr->acc.vb);
    cJSON_AddNumberToObject(acc, "grad_norm", tr->acc.grad_norm);
    return s;
}

char *kb_train_json(const kb_trainer *tr, int with_state, int formatted) {
    const kb_train_opts *o = tr->o;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", KB_TRAIN_FORMAT);
    cJSON_AddStringToObject(j, "model", o->model_name[0] ? o->model_name : "custom");
    add_parsed(j, "config", kb_dit_config_to_json(&tr->model.cfg));
    cJSON *opt = cJSON_AddObjectToObject(j, "optim");
    cJSON_AddNumberToObject(opt, "lr", o->optim.lr);
    cJSON_AddNumberToObject(opt, "beta1", o->optim.beta1);
    cJSON_AddNumberToObject(opt, "beta2", o->optim.beta2);
    cJSON_AddNumberToObject(opt, "eps", o->optim.eps);
    cJSON_AddNumberToObject(opt, "weight_decay", o->optim.weight_decay);
    cJSON_AddNumberToObject(opt, "clip_norm", o->optim.clip_norm);
    cJSON_AddNumberToObject(opt, "ema_decay", o->optim.ema_decay);
    cJSON_AddItemToObject(j, "data", data_json(tr));
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "steps", (double)o->steps);
    cJSON_AddBoolToObject(j, "flip", o->flip);
    cJSON_AddNumberToObject(j, "log_every", (double)o->log_every);
    cJSON_AddNumberToObject(j, "ckpt_every", (double)o->ckpt_every);
    cJSON_AddBoolToObject(j, "keep_checkpoints", o->keep_checkpoints);
    cJSON_AddStringToObject(j, "device", kb_device_name(o->device));
    cJSON_AddStringToObject(j, "precision", kb_matmul_precision_name(o->precision));
    cJSON_AddNumberToObject(j, "threads", tr->ctx.threads);
    cJSON_AddStringToObject(j, "out", tr->out_abs);
    cJSON *diff = cJSON_AddObjectToObject(j, "diffusion");
    cJSON_AddNumberToObject(diff, "num_timesteps", tr->diff.num_steps);
    cJSON_AddStringToObject(diff, "schedule", "linear");
    cJSON_AddStringToObject(diff, "loss", tr->model.cfg.learn_sigma ? "mse + vb (ADM, learned range)" : "mse");
    cJSON_AddItemToObject(j, "rng", rng_json());
    if (with_state) cJSON_AddItemToObject(j, "state", state_json(tr));
    char *s = formatted ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---- loss.csv ---- */

static const char *const csv_header[] = {"step", "loss", "mse", "vb", "grad_norm", "lr", "steps_per_sec",
                                         "images_seen"};
#define CSV_COLS 8

/* One record through libcsv (it quotes every field; readers unquote). */
static int write_record(FILE *fp, char fields[][64], int n) {
    for (int i = 0; i < n; i++)
        if ((i && fputc(',', fp) == EOF) || csv_fwrite(fp, fields[i], strlen(fields[i])) != 0) return -1;
    return fputc('\n', fp) == EOF ? -1 : 0;
}

/* State of the libcsv parse that copies the kept rows of an old log. */
typedef struct {
    char fields[CSV_COLS][64];
    int nf;
    int64_t row;
    int64_t keep_upto;
    kb_atomic_file *af;
    int bad;
} csv_copy;

static void on_field(void *s, size_t len, void *user) {
    csv_copy *c = user;
    if (c->nf < CSV_COLS) {
        size_t k = len < 63 ? len : 63;
        memcpy(c->fields[c->nf], s, k);
        c->fields[c->nf][k] = '\0';
    }
    c->nf++;
}

/* Keeps the header (which must be ours) and the complete rows of steps up to
 * keep_upto; an incomplete row (a run killed mid-write) is dropped. */
static void on_record(int term, void *user) {
    csv_copy *c = user;
    int keep = c->nf == CSV_COLS;
    if (c->row == 0)
        for (int i = 0; keep && i < CSV_COLS; i++) keep = !strcmp(c->fields[i], csv_header[i]);
    if (c->row == 0 && !keep) c->bad = 1;
    if (c->row > 0) keep = keep && strtoll(c->fields[0], NULL, 10) <= c->keep_upto;
    if (keep && !c->bad && write_record(c->af->fp, c->fields, CSV_COLS)) c->bad = 2;
    c->nf = 0;
    c->row++;
}

/* Rewrites an existing log keeping the header and rows of steps <= keep_upto. */
static int csv_truncate(const char *path, int64_t keep_upto, kb_err *err) {
    uint8_t *text;
    size_t n;
    if (kb_read_file(path, &text, &n, err)) return -1;
    kb_atomic_file af;
    csv_copy c = {.keep_upto = keep_upto, .af = &af};
    struct csv_parser p;
    if (kb_atomic_open(&af, path, err)) {
        free(text);
        return -1;
    }
    if (csv_init(&p, CSV_APPEND_NULL)) {
        kb_atomic_abort(&af);
        free(text);
        return kb_fail(err, "%s: out of memory for the CSV parser", path);
    }
    csv_parse(&p, text, n, on_field, on_record, &c);
    csv_fini(&p, on_field, on_record, &c);
    csv_free(&p);
    free(text);
    if (c.bad) {
        kb_atomic_abort(&af);
        return kb_fail(err, "%s: %s", path,
                       c.bad == 2 ? "cannot write the kept rows" : "not a kindbench loss log (unexpected header)");
    }
    return kb_atomic_commit(&af, err);
}

static int csv_create(const char *path, kb_err *err) {
    kb_atomic_file af;
    char fields[CSV_COLS][64];
    for (int i = 0; i < CSV_COLS; i++) snprintf(fields[i], 64, "%s", csv_header[i]);
    if (kb_atomic_open(&af, path, err)) return -1;
    if (write_record(af.fp, fields, CSV_COLS)) {
        kb_atomic_abort(&af);
        return kb_fail(err, "%s: cannot write the header: %s", path, strerror(errno));
    }
    return kb_atomic_commit(&af, err);
}

int kb_train_csv_open(kb_trainer *tr, int resume, int64_t keep_upto, kb_err *err) {
    if (kb_path_join(tr->csv_path, sizeof tr->csv_path, tr->o->out_dir, "loss.csv", err)) return -1;
    int rc = resume && kb_is_file(tr->csv_path) ? csv_truncate(tr->csv_path, keep_upto, err)
                                                : csv_create(tr->csv_path, err);
    if (rc) return -1;
    tr->csv = fopen(tr->csv_path, "ab");
    if (!tr->csv) return kb_fail(err, "%s: cannot open for appending: %s", tr->csv_path, strerror(errno));
    return 0;
}

int kb_train_csv_row(kb_trainer *tr, int64_t step, double steps_per_sec, kb_err *err) {
    char f[CSV_COLS][64];
    double n = tr->acc.n > 0 ? (double)tr->acc.n : 1.0;
    snprintf(f[0], 64, "%lld", (long long)step);
    snprintf(f[1], 64, "%.9g", tr->acc.loss / n);
    snprintf(f[2], 64, "%.9g", tr->acc.mse / n);
    snprintf(f[3], 64, "%.9g", tr->acc.vb / n);
    snprintf(f[4], 64, "%.9g", tr->acc.grad_norm / n);
    snprintf(f[5], 64, "%.9g", tr->o->optim.lr);
    snprintf(f[6], 64, "%.4f", steps_per_sec);
    snprintf(f[7], 64, "%lld", (long long)(step * tr->o->batch));
    memset(&tr->acc, 0, sizeof tr->acc);
    if (write_record(tr->csv, f, CSV_COLS) || fflush(tr->csv))
        return kb_fail(err, "%s: cannot append the row of step %lld: %s", tr->csv_path, (long long)step,
                       strerror(errno));
    return 0;
}
