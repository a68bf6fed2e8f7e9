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

int main(int argc, char **argv) {
    kb_err err = {{0}};
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
        if (rc == KB_EXIT_USAGE) fprintf(stderr, "Try 'kindbench --help'.\n");
    }
    return rc;
}
