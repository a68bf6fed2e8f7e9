#include "harness/cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/exact_int.h"

/* To stdout when asked for (--help), to stderr with a usage error. */
static void print_list(FILE *out, const char *prog, const kb_subcommand *cmds) {
    fprintf(out, "Usage: %s COMMAND [OPTIONS]\n\nCommands:\n", prog);
    for (const kb_subcommand *c = cmds; c->name; c++) fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\nRun '%s COMMAND --help' for the options of a command.\n", prog);
}

int kb_cli_dispatch(const char *prog, const kb_subcommand *cmds, int argc, char **argv, kb_err *err) {
    if (argc < 2) {
        print_list(stderr, prog, cmds);
        kb_fail(err, "missing command for %s", prog);
        return KB_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_list(stdout, prog, cmds);
        return KB_EXIT_OK;
    }
    for (const kb_subcommand *c = cmds; c->name; c++)
        if (!strcmp(argv[1], c->name)) return c->fn(argc - 1, argv + 1, err);
    kb_fail(err, "unknown command '%s' for %s", argv[1], prog);
    return KB_EXIT_USAGE;
}

int kb_cli_parse_int(const char *opt, const char *s, long long min, long long max, long long *out, kb_err *err) {
    if (!kb_text_is_int_in(s, min, max, out))
        return kb_fail(err, "%s: expected an integer in [%lld, %lld], got '%s'", opt, min, max, s);
    return 0;
}

int kb_cli_parse_double(const char *opt, const char *s, double *out, kb_err *err) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s) return kb_fail(err, "%s: expected a number, got '%s'", opt, s);
    *out = v;
    return 0;
}

const char *kb_cli_bad_option(int argc, char **argv, char *buf) {
    int c = optopt;
    for (int i = optind - 1; c > 0 && c < 128 && isgraph(c) && i <= optind && i < argc; i++) {
        const char *w = i >= 1 ? argv[i] : "";
        if (w[0] == '-' && w[1] && w[1] != '-' && strchr(w + 1, c)) {
            buf[0] = '-', buf[1] = (char)c, buf[2] = '\0';
            return buf;
        }
    }
    return optind >= 1 && optind - 1 < argc ? argv[optind - 1] : "?";
}
