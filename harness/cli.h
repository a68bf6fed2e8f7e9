/* Subcommand plumbing for the kindbench CLI.
 *
 * Each subcommand is `int cmd(int argc, char **argv, kb_err *err)` with argv[0]
 * its own name. It returns KB_EXIT_OK, or KB_EXIT_FAIL with err->msg set (main
 * prints "kindbench: error: <msg>" as one line and exits 1), or KB_EXIT_USAGE
 * with err->msg set for bad options (exit 2, with a hint to use --help): wrong
 * alone or together, or not fitting the data or checkpoint they name, found
 * before any work starts (README, "Errors end the program ..."). --device cuda
 * on a machine without a GPU is a runtime failure (1): the options are right.
 * Options are parsed with getopt_long (GNU style: --name=value or --name value). */
#ifndef KB_CLI_H
#define KB_CLI_H

#include "util/err.h"

enum { KB_EXIT_OK = 0, KB_EXIT_FAIL = 1, KB_EXIT_USAGE = 2 };

typedef int (*kb_cmd_fn)(int argc, char **argv, kb_err *err);

typedef struct {
    const char *name;
    kb_cmd_fn fn;
    const char *summary;
} kb_subcommand;

/* Runs the subcommand named by argv[1] among cmds, or prints the list for
 * --help. prog is "kindbench data" etc. for messages. */
int kb_cli_dispatch(const char *prog, const kb_subcommand *cmds, int argc, char **argv, kb_err *err);

/* Parses a strictly positive/non-negative integer option value with a clear
 * message ("--resolution: expected a positive integer, got 'x'"). */
int kb_cli_parse_int(const char *opt, const char *s, long long min, long long max, long long *out, kb_err *err);
int kb_cli_parse_double(const char *opt, const char *s, double *out, kb_err *err);

/* Names the argument getopt_long rejected with '?' (buf holds at least 3
 * bytes): "-x" for a short option, also inside a cluster such as -qx where
 * optind has not moved past the word; otherwise the word before optind (an
 * unknown long option, or one missing its value). */
const char *kb_cli_bad_option(int argc, char **argv, char *buf);

/* The subcommands (harness/cmd_*.c). */
int kb_cmd_data(int argc, char **argv, kb_err *err);
int kb_cmd_eval(int argc, char **argv, kb_err *err);
int kb_cmd_device(int argc, char **argv, kb_err *err);
int kb_cmd_bench(int argc, char **argv, kb_err *err);
int kb_cmd_train(int argc, char **argv, kb_err *err);
int kb_cmd_sample(int argc, char **argv, kb_err *err);

#endif
