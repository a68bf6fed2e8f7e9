/* The DiT trainer: set-up (fresh or resumed), the step loop, checkpoints.
 * One step is exactly tests/test_dit_torch.c's sequence (checked against
 * PyTorch): q_sample, forward, ADM loss, loss gradient, zero grads,
 * backward, AdamW + EMA. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/train_internal.h"
#include "nn/ops_optim.h"
#include "util/fileio.h"
#include "util/progress.h"

void kb_train_opts_default(kb_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->cfg = kb_dit_config_default();
    o->cfg.depth = o->cfg.hidden_size = o->cfg.num_heads = o->cfg.patch_size = 0;
    o->optim = kb_optim_config_default();
    o->batch = 32;
    o->ckpt_every = 1000;
    o->log_every = 10;
    o->device = KB_DEV_CPU;
    o->precision = KB_MATMUL_FP32;
    o->classes = KB_ROLE_PRETRAIN;
    o->split = KB_SPLIT_TRAIN;
    o->flip = 1;
}

/* ---- one step ---- */

/* Draws step `step`'s batch from the dataset, then forward and loss. */
static int forward_loss(kb_trainer *tr, int64_t step, kb_step_stats *s, kb_err *err) {
    kb_train_bufs *b = &tr->b;
    int B = tr->o->batch;
    int64_t n = (int64_t)B * tr->model.cfg.in_channels * tr->model.cfg.input_size * tr->model.cfg.input_size;
    if (kb_train_data_batch(&tr->data, step, B, b->x0, b->y, b->t, err) ||
        kb_train_data_noise(&tr->data, &tr->ctx, step, n, b->noise_dev, err))
        return -1;
    b->noise_on_dev = 1;
    return kb_train_forward_loss(&tr->model, &tr->diff, b, B, s, err);
}

static int diverged(kb_trainer *tr, int64_t step, const char *what, double value, kb_err *err) {
    char last[4200];
    if (tr->prev_ckpt[0]) snprintf(last, sizeof last, "the last good checkpoint is %s", tr->prev_ckpt);
    else snprintf(last, sizeof last, "no checkpoint had been written yet");
    char v[32] = "NaN";
    if (!isnan(value)) snprintf(v, sizeof v, "%g", value);
    return kb_fail(err, "step %lld: %s is %s: training diverged and stopped (lr %g); no checkpoint is written for "
                        "it; %s", (long long)step, what, v, tr->o->optim.lr, last);
}

/* One optimiser step; the weights are only touched once loss and gradient
 * norm are known to be finite, so a divergence never reaches a checkpoint. */
static int train_step(kb_trainer *tr, kb_step_stats *s, kb_err *err) {
    int64_t step = tr->opt.step;
    int B = tr->o->batch;
    if (forward_loss(tr, step, s, err)) return kb_fail_wrap(err, "step %lld", (long long)step + 1);
    if (!isfinite(s->loss)) return diverged(tr, step + 1, "the loss", s->loss, err);
    if (kb_params_zero_grad(&tr->model.params, err) ||
        kb_dit_backward(&tr->model, tr->b.d_out_dev, tr->b.y_dev, B, err) ||
        kb_optim_grad_norm(&tr->opt, &s->grad_norm, err))
        return kb_fail_wrap(err, "step %lld", (long long)step + 1);
    if (!isfinite(s->grad_norm)) return diverged(tr, step + 1, "the gradient norm", s->grad_norm, err);
    return kb_optim_apply(&tr->opt, s->grad_norm, err) ? kb_fail_wrap(err, "step %lld", (long long)step + 1) : 0;
}

/* ---- checkpoints ---- */

/* Refuses to save weights that are not all finite (sum of squares in double
 * cannot overflow for finite floats). */
static int check_finite(kb_trainer *tr, kb_err *err) {
    double w = 0.0, e = 0.0;
    kb_params *ps = &tr->model.params;
    if (kb_sumsq(&tr->ctx, &w, ps->data, (int64_t)ps->total, err) ||
        (tr->opt.ema && kb_sumsq(&tr->ctx, &e, tr->opt.ema, (int64_t)ps->total, err)))
        return -1;
    if (isfinite(w) && isfinite(e)) return 0;
    return diverged(tr, tr->opt.step, isfinite(w) ? "the EMA weights' sum of squares" : "the weights' sum of squares",
                    isfinite(w) ? e : w, err);
}

/* DIR/last.safetensors becomes the newest checkpoint: a hard link (a plain
 * file for any reader) made under a temp name and renamed over, so it is
 * always a whole checkpoint; a symlink where hard links are not allowed. */
static int link_last(kb_trainer *tr, const char *ckpt, int64_t step, kb_err *err) {
    char last[4096], tmp[4200], rel[128];
    if (kb_path_join(last, sizeof last, tr->o->out_dir, "last.safetensors", err)) return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", last, (long)getpid());
    snprintf(rel, sizeof rel, "checkpoints/step-%lld.safetensors", (long long)step);
    unlink(tmp);
    if (link(ckpt, tmp) != 0 && symlink(rel, tmp) != 0)
        return kb_fail(err, "%s: cannot link to %s: %s", last, ckpt, strerror(errno));
    if (rename(tmp, last) != 0) {
        int e = errno;
        unlink(tmp);
        return kb_fail(err, "%s: cannot rename into place: %s", last, strerror(e));
    }
    return 0;
}

static int save_checkpoint(kb_trainer *tr, kb_err *err) {
    char path[4096], name[64];
    int64_t step = tr->opt.step;
    snprintf(name, sizeof name, "step-%lld.safetensors", (long long)step);
    if (check_finite(tr, err) || kb_path_join(path, sizeof path, tr->ckpt_dir, name, err)) return -1;
    char *json = kb_train_json(tr, 1, 0);
    int rc = kb_checkpoint_save(path, &tr->model, &tr->opt, json, err);
    free(json);
    if (rc) {
        if (tr->prev_ckpt[0])
            return kb_fail_wrap(err, "step %lld: could not save a checkpoint (the previous checkpoint %s is intact)",
                                (long long)step, tr->prev_ckpt);
        return kb_fail_wrap(err, "step %lld: could not save a checkpoint (no earlier one exists)", (long long)step);
    }
    if (link_last(tr, path, step, err)) return -1;
    if (!tr->o->keep_checkpoints && tr->prev_owned && strcmp(tr->prev_ckpt, path)) unlink(tr->prev_ckpt);
    snprintf(tr->prev_ckpt, sizeof tr->prev_ckpt, "%s", path);
    tr->prev_owned = 1;
    return 0;
}

/* ---- set-up ---- */

/* A stated image shape (0 = not stated) must be the data's. */
static int check_image_shape(const kb_dataset *ds, int r, int c, const char *who, kb_err *err) {
    if ((!r || r == ds->resolution) && (!c || c == ds->channels)) return 0;
    return kb_fail(err, "%s: images are %dx%d with %d channel(s), but %s %dx%d with %d channel(s)", ds->path,
                   ds->resolution, ds->resolution, ds->channels, who, r ? r : ds->resolution, r ? r : ds->resolution,
                   c ? c : ds->channels);
}

/* The image shape comes from the data; a stated or resumed shape must match. */
static int fit_config(kb_trainer *tr, int resumed, kb_err *err) {
    kb_train_opts *o = tr->o;
    const kb_dataset *ds = &tr->ds;
    if (check_image_shape(ds, o->image_size, o->channels, "the options state", err) ||
        (resumed && check_image_shape(ds, o->cfg.input_size, o->cfg.in_channels, "the checkpoint's model takes", err)))
        return -1;
    o->cfg.input_size = ds->resolution;
    o->cfg.in_channels = ds->channels;
    if (resumed && o->cfg.num_classes != tr->data.nclasses)
        return kb_fail(err, "--resume %s: the checkpoint's model has %d classes, %s selects %d '%s' classes",
                       o->resume, o->cfg.num_classes, ds->path, tr->data.nclasses, kb_train_classes_name(o->classes));
    o->cfg.num_classes = tr->data.nclasses;
    return kb_dit_config_validate(&o->cfg, err);
}

static int write_train_json(kb_trainer *tr, kb_err *err) {
    char path[4096];
    char *json = kb_train_json(tr, 0, 1);
    kb_atomic_file af;
    int rc = !json || kb_path_join(path, sizeof path, tr->o->out_dir, "train.json", err) ||
             kb_atomic_open(&af, path, err);
    if (!rc && (kb_atomic_write(&af, json, strlen(json), err) || kb_atomic_write(&af, "\n", 1, err))) {
        kb_atomic_abort(&af);
        rc = -1;
    } else if (!rc) rc = kb_atomic_commit(&af, err);
    free(json);
    return rc ? -1 : 0;
}

/* 1 when `file` lies directly in the directory whose real path is dir_abs. */
static int lies_in(const char *file, const char *dir_abs) {
    char copy[4096], dir_real[4096];
    snprintf(copy, sizeof copy, "%s", file);
    char *slash = strrchr(copy, '/');
    const char *dir = slash ? (slash == copy ? "/" : (*slash = 0, copy)) : ".";
    return realpath(dir, dir_real) && strcmp(dir_real, dir_abs) == 0;
}

/* 1 when name is the temp file of an atomic write of one of this run's files
 * ("<file>.tmp.<pid>.<mkstemp letters>", "<file>.tmp.<pid>", or an older
 * kindbench's "<file>.tmp.<letters>"): in checkpoints/ of
 * step-<N>.safetensors, in DIR of last.safetensors, loss.csv or train.json. */
static int is_run_temp(const char *name, const void *ckpt_dir_flag) {
    int in_ckpt_dir = *(const int *)ckpt_dir_flag;
    if (!in_ckpt_dir)
        return kb_is_temp_of(name, "last.safetensors") || kb_is_temp_of(name, "loss.csv") ||
               kb_is_temp_of(name, "train.json");
    char ckpt[64];
    size_t d = 5;
    if (strncmp(name, "step-", 5)) return 0; /* first: a shorter name ends before name[5] */
    while (d < 25 && isdigit((unsigned char)name[d])) d++;
    if (d == 5 || d == 25) return 0;
    snprintf(ckpt, sizeof ckpt, "%.*s.safetensors", (int)d, name);
    return kb_is_temp_of(name, ckpt);
}

/* Removes the temp files that killed runs left in dir: each was
 * checkpoint-sized, and no later run removed them (40 kills while
 * checkpointing left 13). Called with DIR's lock held. */
static void sweep_run_temps(const char *dir, int in_ckpt_dir, int quiet) {
    kb_sweep_stale(dir, is_run_temp, &in_ckpt_dir, quiet);
}

/* A run must not silently overwrite another run's checkpoints: a fresh run
 * needs an --out without last.safetensors, and a resumed one continues into
 * such an --out only from that run's own checkpoint (OUT/last.safetensors or
 * OUT/checkpoints/); otherwise the checkpoint it resumed from would be
 * judged by name to be that run's own, and deleted. */
static int prepare_out(kb_trainer *tr, int resumed, kb_err *err) {
    char last[4096], ckpt_abs[4096];
    /* The lock comes before every check and write below: two runs started
     * into one DIR (the "holds a run" check sees no last.safetensors until
     * the first checkpoint) both passed and mixed their loss.csv rows and
     * checkpoints. */
    if (kb_mkdir_p(tr->o->out_dir, err) || kb_dir_lock(tr->o->out_dir, ".train.lock", "kindbench train",
                                                       &tr->lock_fd, err))
        return -1;
    if (kb_path_join(tr->ckpt_dir, sizeof tr->ckpt_dir, tr->o->out_dir, "checkpoints", err) ||
        kb_mkdir_p(tr->ckpt_dir, err) || kb_path_join(last, sizeof last, tr->o->out_dir, "last.safetensors", err))
        return -1;
    if (!realpath(tr->o->out_dir, tr->out_abs)) snprintf(tr->out_abs, sizeof tr->out_abs, "%s", tr->o->out_dir);
    if (tr->lock_fd >= 0) { /* unlocked (no flock there), a live run's temp files may be among them */
        sweep_run_temps(tr->o->out_dir, 0, tr->o->quiet);
        sweep_run_temps(tr->ckpt_dir, 1, tr->o->quiet);
    }
    if (!resumed && kb_is_file(last))
        return kb_fail(err, "%s already holds a training run (%s); continue it with --resume %s or choose another "
                            "--out", tr->o->out_dir, last, last);
    if (!resumed) return 0;
    int own = lies_in(tr->o->resume, tr->out_abs) ||
              (realpath(tr->ckpt_dir, ckpt_abs) && lies_in(tr->o->resume, ckpt_abs));
    if (!own) {
        if (kb_is_file(last))
            return kb_fail(err, "--resume %s: --out %s already holds another training run (%s); resume into a new "
                                "directory, or into that one from one of its own checkpoints",
                           tr->o->resume, tr->o->out_dir, last);
        snprintf(tr->prev_ckpt, sizeof tr->prev_ckpt, "%s", tr->o->resume); /* never deleted: not ours */
        return 0;
    }
    char name[64]; /* the checkpoint resumed from is the newest one in this directory */
    snprintf(name, sizeof name, "step-%lld.safetensors", (long long)tr->opt.step);
    if (kb_path_join(tr->prev_ckpt, sizeof tr->prev_ckpt, tr->ckpt_dir, name, err)) return -1;
    tr->prev_owned = kb_is_file(tr->prev_ckpt);
    if (!tr->prev_owned) snprintf(tr->prev_ckpt, sizeof tr->prev_ckpt, "%s", tr->o->resume);
    return 0;
}

static int open_data(kb_trainer *tr, kb_err *err) {
    kb_train_opts *o = tr->o;
    const kb_dataset_open_opts oo = {.verify = KB_VERIFY_ONCE, .quiet = o->quiet};
    if (kb_dataset_open_with(&tr->ds, o->data_path, &oo, err)) return -1;
    tr->have_ds = 1;
    if (!realpath(o->data_path, tr->data_abs)) snprintf(tr->data_abs, sizeof tr->data_abs, "%s", o->data_path);
    return kb_train_data_init(&tr->data, &tr->ds, o->classes, o->split, o->seed, o->flip, o->cfg.class_dropout, err);
}

static int build(kb_trainer *tr, kb_err *err) {
    kb_train_opts *o = tr->o;
    kb_ctx_opts co = {.threads = o->threads, .matmul = o->precision};
    if (kb_ctx_init(&tr->ctx, o->device, &co, err)) return -1;
    tr->have_ctx = 1;
    if (kb_dit_create(&tr->model, &tr->ctx, &o->cfg, 1, o->seed, err) ||
        kb_optim_init(&tr->opt, &tr->model.params, &o->optim, err) ||
        kb_diffusion_init(&tr->diff, 1000, "", err) ||
        kb_train_bufs_alloc(&tr->b, &tr->ctx, &tr->model.cfg, tr->o->batch, err))
        return -1;
    tr->data.num_timesteps = tr->diff.num_steps;
    return 0;
}

int kb_train_opts_check(const kb_train_opts *o, kb_err *err) {
    if (!o->data_path || !o->out_dir) return kb_fail(err, "train: --data and --out are required");
    if (o->steps <= 0) return kb_fail(err, "train: --steps N is required (N >= 1)");
    if (o->cfg.depth <= 0 || o->cfg.hidden_size <= 0 || o->cfg.num_heads <= 0 || o->cfg.patch_size <= 0)
        return kb_fail(err, "train: give --model NAME (e.g. S/4) or all of --depth, --width, --heads, --patch");
    /* the shape alone, before the data are opened: a large cache's first open hashes it for minutes, and heads
     * that do not divide the width would be just as wrong after; what needs the data is fit_config's */
    if (kb_dit_config_validate_model(&o->cfg, err)) return -1;
    if (!(o->optim.lr > 0) || !(o->optim.eps > 0) || !(o->optim.beta1 >= 0 && o->optim.beta1 < 1) ||
        !(o->optim.beta2 >= 0 && o->optim.beta2 < 1) || !(o->optim.weight_decay >= 0) || !(o->optim.ema_decay < 1))
        return kb_fail(err, "train: optimiser settings out of range (lr %g > 0, eps %g > 0, betas %g %g in [0, 1), "
                            "weight decay %g >= 0, EMA decay %g < 1)", o->optim.lr, o->optim.eps, o->optim.beta1,
                       o->optim.beta2, o->optim.weight_decay, o->optim.ema_decay);
    return kb_matmul_precision_check(o->device, o->precision, err);
}

/* 0, -1 with err set, or KB_TRAIN_MISFIT: the options (a resume's merged
 * with the checkpoint's record) do not fit the data or the checkpoint they
 * name; known before any step or output. */
static int setup(kb_trainer *tr, cJSON **resume_json, kb_err *err) {
    kb_train_opts *o = tr->o;
    kb_checkpoint_info info = {0};
    int rc;
    if (o->resume) {
        if (kb_checkpoint_inspect(o->resume, &info, err))
            return kb_fail_wrap(err, "--resume %s: not a usable kindbench checkpoint", o->resume);
        rc = kb_train_resume_options(o, &info, resume_json, err);
        kb_checkpoint_info_free(&info);
        if (rc) return rc;
        if (kb_train_opts_check(o, err)) return kb_fail_wrap(err, "--resume %s", o->resume), KB_TRAIN_MISFIT;
    }
    if ((rc = open_data(tr, err))) return rc;
    if (fit_config(tr, o->resume != NULL, err)) return KB_TRAIN_MISFIT;
    if (o->resume && (rc = kb_train_resume_check_data(tr, *resume_json, err))) return rc;
    if (build(tr, err)) return -1;
    if (o->resume && (kb_checkpoint_load(o->resume, &tr->model, &tr->opt, 0, err) ||
                      kb_train_resume_state(tr, *resume_json, err)))
        return -1;
    tr->start_step = tr->opt.step;
    return 0;
}

/* The run's directory, train.json and loss.csv: touched only once there is a
 * step to take (a resume at its target step changes no file). */
static int open_outputs(kb_trainer *tr, kb_err *err) {
    int resumed = tr->o->resume != NULL;
    return prepare_out(tr, resumed, err) || write_train_json(tr, err) ||
           kb_train_csv_open(tr, resumed, tr->start_step, err);
}

/* ---- the loop ---- */

static void show_progress(kb_trainer *tr, kb_progress *p, const kb_step_stats *s) {
    char extra[96];
    snprintf(extra, sizeof extra, "step %lld loss %.4f", (long long)tr->opt.step, s->loss);
    kb_progress_set_extra(p, extra);
    kb_progress_update(p, tr->opt.step - tr->start_step);
}

/* Whether step k ends with a checkpoint: the last step and every --ckpt-every. */
static int checkpoint_due(const kb_trainer *tr, int64_t k) {
    return k == tr->o->steps || (tr->o->ckpt_every > 0 && k % tr->o->ckpt_every == 0);
}

static int after_step(kb_trainer *tr, const kb_step_stats *s, kb_err *err) {
    int64_t k = tr->opt.step;
    tr->acc.n++;
    tr->acc.loss += s->loss, tr->acc.mse += s->mse, tr->acc.vb += s->vb, tr->acc.grad_norm += s->grad_norm;
    if (k == tr->start_step + 1) tr->first_loss = s->loss;
    tr->last_loss = s->loss;
    if (k % tr->o->log_every == 0) {
        double now = kb_now(), sps = (double)tr->acc.n / (now - tr->t_row > 0 ? now - tr->t_row : 1e-9);
        tr->t_row = now;
        if (kb_train_csv_row(tr, k, sps, err)) return -1;
    }
    if (checkpoint_due(tr, k)) return save_checkpoint(tr, err);
    return 0;
}

/* A stop asked for by SIGINT/SIGTERM/SIGHUP (kb_signals_defer): a
 * checkpoint of the step just finished, unless after_step saved one, so
 * that --resume loses nothing (a cluster's preemption sends SIGTERM first). */
static int stop_here(kb_trainer *tr, kb_err *err) {
    if (!checkpoint_due(tr, tr->opt.step) && save_checkpoint(tr, err)) return -1;
    fprintf(stderr, "stopped at step %lld: checkpoint %s; continue with --resume %s/last.safetensors\n",
            (long long)tr->opt.step, tr->prev_ckpt, tr->o->out_dir);
    return 0;
}

static int loop(kb_trainer *tr, kb_err *err) {
    kb_train_opts *o = tr->o;
    kb_progress p;
    kb_step_stats s = {0};
    kb_progress_start(&p, "train", o->steps - tr->start_step, o->quiet);
    double t0 = kb_now();
    tr->t_row = t0;
    kb_signals_defer(1); /* from here a Ctrl-C ends after a step, with a checkpoint */
    int rc = 0;
    while (rc == 0 && tr->opt.step < o->steps) {
        rc = train_step(tr, &s, err) || after_step(tr, &s, err) ? -1 : 0;
        if (rc == 0) show_progress(tr, &p, &s);
        /* a signal during the last step lets the run finish as it would have */
        if (rc == 0 && kb_stop_requested() && tr->opt.step < o->steps) rc = 1;
    }
    kb_signals_defer(0); /* a signal from now on (while stop_here saves, say) ends the process at once */
    if (rc == 1) return stop_here(tr, err) ? -1 : 1;
    if (rc) return -1;
    kb_progress_finish(&p);
    double dt = kb_now() - t0;
    if (!o->quiet)
        printf("trained steps %lld..%lld (batch %d) in %.1f s, %.3f steps/s; loss %.5f at the first step, %.5f at the "
               "last; checkpoint %s\n", (long long)tr->start_step + 1, (long long)o->steps, o->batch, dt,
               (double)(o->steps - tr->start_step) / (dt > 0 ? dt : 1e-9), tr->first_loss, tr->last_loss,
               tr->prev_ckpt);
    return 0;
}

static void teardown(kb_trainer *tr) {
    if (tr->csv) fclose(tr->csv);
    kb_dir_unlock(&tr->lock_fd);
    if (tr->have_ctx) kb_train_bufs_free(&tr->b, &tr->ctx);
    kb_optim_free(&tr->opt);
    kb_diffusion_free(&tr->diff);
    kb_dit_free(&tr->model);
    kb_train_data_free(&tr->data);
    if (tr->have_ds) kb_dataset_close(&tr->ds);
    if (tr->have_ctx) kb_ctx_free(&tr->ctx);
}

int kb_train_run(kb_train_opts *o, kb_err *err) {
    kb_trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.lock_fd = -1;
    tr.o = o;
    cJSON *resume_json = NULL;
    int rc = setup(&tr, &resume_json, err);
    if (!rc && o->resume && tr.opt.step >= o->steps) {
        if (!o->quiet) printf("%s is at step %lld, --steps is %lld: nothing to do\n", o->resume,
                              (long long)tr.opt.step, (long long)o->steps);
    } else if (!rc) {
        rc = open_outputs(&tr, err) ? -1 : loop(&tr, err);
    }
    teardown(&tr);
    cJSON_Delete(resume_json);
    if (rc == KB_TRAIN_MISFIT) return rc; /* from setup: nothing ran */
    return rc < 0 || rc > 1 ? -1 : rc;
}
