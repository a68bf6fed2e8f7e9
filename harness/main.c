/* kindbench: benchmark and evaluation harness for transfer methods of
 * diffusion transformers. One binary; see `kindbench --help`. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness/cli.h"
#include "util/fileio.h"

static const kb_subcommand commands[] = {
    {"data", kb_cmd_data, "prepare, inspect and summarise dataset caches"},
    {"device", kb_cmd_device, "show the compute devices this build can use"},
    {"bench", kb_cmd_bench, "time training steps (bench/bench_train.sh compares with PyTorch)"},
    {"train", kb_cmd_train, "train or resume a class-conditional DiT on a dataset cache"},
    {"sample", kb_cmd_sample, "sample images from a DiT checkpoint (PNGs, grid, ADM-style .npz)"},
    {"eval", kb_cmd_eval, "score samples against a reference: FID, sFID, IS, P/R, D/C, KID, spectral"},
    {NULL, NULL, NULL},
};

/* The command a usage error belongs to, for its --help hint: "kindbench
 * data prepare", "kindbench eval" ... or "kindbench" before a command. */
static void help_hint(int argc, char **argv, char *out, size_t cap) {
    static const char *const subs[][2] = {{"data", "prepare"}, {"data", "info"}, {"data", "grid"}, {"eval", "stats"},
                                          {"bench", "train"}};
    snprintf(out, cap, "kindbench");
    int known = 0;
    for (const kb_subcommand *c = commands; argc > 1 && c->name && !known; c++) known = !strcmp(argv[1], c->name);
    if (!known) return;
    size_t n = strlen(out);
    snprintf(out + n, cap - n, " %s", argv[1]);
    for (size_t i = 0; argc > 2 && i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(argv[1], subs[i][0]) && !strcmp(argv[2], subs[i][1])) {
            n = strlen(out);
            snprintf(out + n, cap - n, " %s", argv[2]);
        }
}

int main(int argc, char **argv) {
    kb_err err = {0};
    int rc = KB_EXIT_OK;
    kb_temp_cleanup_on_signals(); /* an interrupted write leaves no OUT.tmp.* behind */
    if (argc == 2 && !strcmp(argv[1], "--version")) printf("kindbench 0.1.0\n");
    else rc = kb_cli_dispatch("kindbench", commands, argc, argv, &err);
    /* results go to stdout: a failed write there (a full disk) must not exit 0 */
    if ((fflush(stdout) != 0 || ferror(stdout)) && rc == KB_EXIT_OK) {
        kb_fail(&err, "cannot write to standard output: %s", strerror(errno));
        rc = KB_EXIT_FAIL;
    }
    if (rc != KB_EXIT_OK) {
        fprintf(stderr, "kindbench: error: %s\n", err.msg[0] ? err.msg : "failed");
        char hint[64];
        help_hint(argc, argv, hint, sizeof hint);
        if (rc == KB_EXIT_USAGE) fprintf(stderr, "Try '%s --help'.\n", hint);
    }
    return rc;
}
