/* --resume: the options a run continues with come from the checkpoint's
 * metadata unless given again; what would change the model's shape or its
 * data is refused, what would only change the trajectory is warned about
 * (the run then no longer equals an unbroken one). */
#include <stdio.h>
#include <string.h>

#include "models/train_internal.h"
#include "util/exact_int.h"

static const cJSON *item(const cJSON *j, const char *key) { return cJSON_GetObjectItemCaseSensitive(j, key); }

static double num(const cJSON *j, const char *key, double dflt) {
    const cJSON *v = item(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *str(const cJSON *j, const char *key) {
    const cJSON *v = item(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void warn_differs(const char *ckpt, const char *what, const char *given, const char *recorded) {
    fprintf(stderr, "kindbench: warning: --resume %s: %s %s differs from the checkpoint's %s; the run will not "
                    "equal an unbroken one\n", ckpt, what, given, recorded);
}

/* A shape option given again must agree with the checkpoint. */
static int check_shape(const kb_train_opts *o, const kb_dit_config *file, kb_err *err) {
    const kb_dit_config *c = &o->cfg;
    kb_dit_config want = *file;
    if (o->set & KB_TSET_DEPTH) want.depth = c->depth;
    if (o->set & KB_TSET_WIDTH) want.hidden_size = c->hidden_size;
    if (o->set & KB_TSET_HEADS) want.num_heads = c->num_heads;
    if (o->set & KB_TSET_PATCH) want.patch_size = c->patch_size;
    if (o->set & KB_TSET_MLP) want.mlp_ratio_x100 = c->mlp_ratio_x100;
    if (o->set & KB_TSET_SIGMA) want.learn_sigma = c->learn_sigma;
    if (o->set & KB_TSET_DROPOUT) want.class_dropout = c->class_dropout;
    if (kb_dit_config_same_shape(&want, file)) return 0;
    kb_fail(err, "--resume %s: checkpoint of another config: it has depth %d, width %d, heads %d, patch %d, "
                        "mlp ratio %.2f, learn sigma %d, null class %d; the options ask for depth %d, width %d, "
                        "heads %d, patch %d, mlp ratio %.2f, learn sigma %d, null class %d (class dropout > 0)",
                   o->resume, file->depth, file->hidden_size, file->num_heads, file->patch_size,
                   file->mlp_ratio_x100 / 100.0, file->learn_sigma, file->class_dropout > 0, want.depth,
                   want.hidden_size, want.num_heads, want.patch_size, want.mlp_ratio_x100 / 100.0, want.learn_sigma,
                   want.class_dropout > 0);
    return KB_TRAIN_MISFIT;
}

/* One optimiser setting: the checkpoint's unless given (then warn if it differs). */
static void merge_double(const kb_train_opts *o, unsigned bit, const char *name, double *v, double recorded) {
    if (!(o->set & bit)) {
        *v = recorded;
    } else if (*v != recorded) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%g", *v), snprintf(b, sizeof b, "%g", recorded);
        warn_differs(o->resume, name, a, b);
    }
}

/* A count from the training record: an integer in [lo, hi] (a cast of
 * anything else would be undefined or nonsense), else an error naming it. */
static int recorded_count(const kb_train_opts *o, const cJSON *j, const char *key, double dflt, double lo, double hi,
                          int64_t *out, kb_err *err) {
    double x = num(j, key, dflt);
    if (!kb_double_is_int_in(x, lo, hi))
        return kb_fail(err, "--resume %s: training metadata: %s is %g, not an integer in [%.0f, %.0f]", o->resume, key,
                       x, lo, hi);
    *out = (int64_t)x;
    return 0;
}

/* One count: the checkpoint's unless given (then warn if it differs, when
 * name is set). */
static void merge_int(const kb_train_opts *o, unsigned bit, const char *name, int64_t *v, int64_t recorded) {
    if (!(o->set & bit)) {
        *v = recorded;
    } else if (name && *v != recorded) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%lld", (long long)*v), snprintf(b, sizeof b, "%lld", (long long)recorded);
        warn_differs(o->resume, name, a, b);
    }
}

static void merge_optim(kb_train_opts *o, const kb_optim_config *f) {
    kb_optim_config *c = &o->optim;
    merge_double(o, KB_TSET_LR, "--lr", &c->lr, f->lr);
    merge_double(o, KB_TSET_WD, "--weight-decay", &c->weight_decay, f->weight_decay);
    merge_double(o, KB_TSET_BETA1, "--beta1", &c->beta1, f->beta1);
    merge_double(o, KB_TSET_BETA2, "--beta2", &c->beta2, f->beta2);
    merge_double(o, KB_TSET_EPS, "--eps", &c->eps, f->eps);
    merge_double(o, KB_TSET_CLIP, "--clip-norm", &c->clip_norm, f->clip_norm);
    merge_double(o, KB_TSET_EMA, "--ema-decay", &c->ema_decay, f->ema_decay);
}

/* The run's counts: recorded values unless given. */
static int merge_counts(kb_train_opts *o, const cJSON *j, kb_err *err) {
    int64_t steps, log, ckpt, seed, batch, threads, v;
    if (recorded_count(o, j, "steps", 0, 0, KB_TRAIN_MAX_STEPS, &steps, err) ||
        recorded_count(o, j, "log_every", 10, 1, KB_TRAIN_MAX_STEPS, &log, err) ||
        recorded_count(o, j, "ckpt_every", 1000, 0, KB_TRAIN_MAX_STEPS, &ckpt, err) ||
        recorded_count(o, j, "seed", 0, 0, KB_TRAIN_MAX_SEED, &seed, err) ||
        recorded_count(o, j, "batch", 32, 1, KB_TRAIN_MAX_BATCH, &batch, err) ||
        recorded_count(o, j, "threads", 0, 0, KB_TRAIN_MAX_THREADS, &threads, err))
        return -1;
    merge_int(o, KB_TSET_STEPS, NULL, &o->steps, steps);
    merge_int(o, KB_TSET_LOG, NULL, &o->log_every, log);
    merge_int(o, KB_TSET_CKPT, NULL, &o->ckpt_every, ckpt);
    v = (int64_t)o->seed, merge_int(o, KB_TSET_SEED, "--seed", &v, seed), o->seed = (uint64_t)v;
    v = o->batch, merge_int(o, KB_TSET_BATCH, "--batch", &v, batch), o->batch = (int)v;
    v = o->threads, merge_int(o, KB_TSET_THREADS, "--threads", &v, threads), o->threads = (int)v;
    return 0;
}

/* Run settings: recorded values unless given. */
static int merge_run(kb_train_opts *o, const cJSON *j, kb_err *err) {
    if (merge_counts(o, j, err)) return -1;
    if (!(o->set & KB_TSET_FLIP)) o->flip = cJSON_IsTrue(item(j, "flip"));
    else if (o->flip != cJSON_IsTrue(item(j, "flip"))) warn_differs(o->resume, "flip", o->flip ? "on" : "off",
                                                                   o->flip ? "off" : "on");
    if (!(o->set & KB_TSET_KEEP)) o->keep_checkpoints = cJSON_IsTrue(item(j, "keep_checkpoints"));
    const cJSON *data = item(j, "data");
    const char *classes = str(data, "classes"), *split = str(data, "split"), *dev = str(j, "device");
    if ((!(o->set & KB_TSET_CLASSES) && (!classes || kb_train_classes_parse(classes, &o->classes))) ||
        (!(o->set & KB_TSET_SPLIT) && (!split || kb_train_split_parse(split, &o->split))))
        return kb_fail(err, "--resume %s: training metadata lacks data.classes or data.split", o->resume);
    if ((o->set & KB_TSET_SPLIT) && split && strcmp(split, kb_train_split_name(o->split)))
        return kb_fail(err, "--resume %s: --split %s is not the checkpoint's split '%s' (other images); train on it "
                            "in a new run", o->resume, kb_train_split_name(o->split), split),
               KB_TRAIN_MISFIT;
    if (!(o->set & KB_TSET_DEVICE) && dev && kb_device_parse(dev, &o->device, err)) return -1;
    if ((o->set & KB_TSET_DEVICE) && dev && strcmp(dev, kb_device_name(o->device)))
        warn_differs(o->resume, "--device", kb_device_name(o->device), dev);
    const char *prec = str(j, "precision"); /* absent in runs from before --precision: fp32 */
    if (!(o->set & KB_TSET_PRECISION) && prec && kb_matmul_precision_parse(prec, &o->precision, err))
        return kb_fail_wrap(err, "--resume %s: training metadata", o->resume);
    if ((o->set & KB_TSET_PRECISION) && strcmp(prec ? prec : "fp32", kb_matmul_precision_name(o->precision)))
        warn_differs(o->resume, "--precision", kb_matmul_precision_name(o->precision), prec ? prec : "fp32");
    if (!(o->set & KB_TSET_DATA)) o->data_path = str(data, "path");
    if (!(o->set & KB_TSET_OUT)) o->out_dir = str(j, "out");
    if (!o->data_path || !o->out_dir)
        return kb_fail(err, "--resume %s: training metadata lacks the data path or output directory", o->resume);
    return 0;
}

int kb_train_resume_options(kb_train_opts *o, const kb_checkpoint_info *info, cJSON **train_json, kb_err *err) {
    *train_json = info->train_json ? cJSON_Parse(info->train_json) : NULL;
    const char *fmt = *train_json ? str(*train_json, "format") : NULL;
    if (!fmt || strcmp(fmt, KB_TRAIN_FORMAT))
        return kb_fail(err, "--resume %s: a model checkpoint without training metadata ('%s'); it cannot be resumed",
                       o->resume, KB_TRAIN_FORMAT);
    if (!info->has_optim) return kb_fail(err, "--resume %s: checkpoint has no optimiser state", o->resume);
    int rc = check_shape(o, &info->cfg, err);
    if (rc) return rc;
    float dropout = o->cfg.class_dropout;
    o->cfg = info->cfg;
    if (o->set & KB_TSET_DROPOUT) {
        if (dropout != info->cfg.class_dropout) {
            char a[32], b[32];
            snprintf(a, sizeof a, "%g", dropout), snprintf(b, sizeof b, "%g", info->cfg.class_dropout);
            warn_differs(o->resume, "--class-dropout", a, b);
        }
        o->cfg.class_dropout = dropout;
    }
    const char *model = str(*train_json, "model");
    if (!o->model_name[0] && model && strcmp(model, "custom"))
        snprintf(o->model_name, sizeof o->model_name, "%s", model);
    merge_optim(o, &info->optim);
    return merge_run(o, *train_json, err);
}

/* A record without the map, or with an entry lacking its numeric
 * dataset_class, is a damaged checkpoint (exit 1), not classes that do not
 * fit the selection (exit 2). */
static int class_map_damaged(const char *resume, const cJSON *map, kb_err *err) {
    if (!cJSON_IsArray(map)) return kb_fail(err, "--resume %s: training metadata lacks data.class_map", resume);
    int k = 0;
    for (const cJSON *e = map->child; e; e = e->next, k++)
        if (!cJSON_IsNumber(item(e, "dataset_class")))
            return kb_fail(err, "--resume %s: training metadata: data.class_map[%d] lacks a numeric dataset_class",
                           resume, k);
    return 0;
}

static int check_class_map(const kb_trainer *tr, const cJSON *map, kb_err *err) {
    const kb_train_data *d = &tr->data;
    int n = cJSON_GetArraySize(map), same = cJSON_IsArray(map) && n == d->nclasses;
    for (int k = 0; same && k < n; k++) /* compared as doubles: the file's number is never cast */
        same = num(cJSON_GetArrayItem(map, k), "dataset_class", -1) == (double)d->classes[k];
    if (same) return 0;
    return kb_fail(err, "--resume %s: the checkpoint's model classes (%d, data.class_map) are not the %d '%s' "
                        "classes selected from %s", tr->o->resume, n, d->nclasses,
                   kb_train_classes_name(tr->o->classes), tr->ds.path);
}

int kb_train_resume_check_data(const kb_trainer *tr, const cJSON *j, kb_err *err) {
    const cJSON *data = item(j, "data");
    const char *sha = str(data, "payload_sha256"), *path = str(data, "path");
    if (!sha) return kb_fail(err, "--resume %s: training metadata lacks data.payload_sha256", tr->o->resume);
    if (strcmp(sha, tr->ds.payload_sha256))
        return kb_fail(err, "--resume %s: dataset %s (payload sha256 %.16s...) is not the one the checkpoint was "
                            "trained on (%s, sha256 %.16s...)", tr->o->resume, tr->ds.path, tr->ds.payload_sha256,
                       path ? path : "?", sha),
               KB_TRAIN_MISFIT;
    const cJSON *map = item(data, "class_map");
    if (class_map_damaged(tr->o->resume, map, err)) return -1;
    return check_class_map(tr, map, err) ? KB_TRAIN_MISFIT : 0;
}

int kb_train_resume_state(kb_trainer *tr, const cJSON *j, kb_err *err) {
    const cJSON *state = item(j, "state"), *acc = item(state, "log_acc");
    double step = num(state, "step", -1);
    if (!cJSON_IsObject(acc) || step != (double)tr->opt.step)
        return kb_fail(err, "--resume %s: training state (step %.0f) does not match the checkpoint's step %lld",
                       tr->o->resume, step, (long long)tr->opt.step);
    int64_t n;
    if (recorded_count(tr->o, acc, "n", 0, 0, KB_TRAIN_MAX_STEPS, &n, err)) return -1;
    tr->acc.n = n;
    tr->acc.loss = num(acc, "loss", 0), tr->acc.mse = num(acc, "mse", 0);
    tr->acc.vb = num(acc, "vb", 0), tr->acc.grad_norm = num(acc, "grad_norm", 0);
    return 0;
}
