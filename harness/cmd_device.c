/* `kindbench device`: what this build can compute on. */
#include <getopt.h>
#include <stdio.h>

#include "harness/cli.h"
#include <cblas.h>

#include "nn/backend.h"

static void usage(void) {
    printf("Usage: kindbench device [--help]\n\n"
           "Prints the CPU thread count the fast CPU path uses ($KINDBENCH_THREADS overrides) and\n"
           "OpenBLAS's kernel family (its choice for this CPU unless $OPENBLAS_CORETYPE names one),\n"
           "whether this binary has the CUDA backend, and the CUDA GPUs it can see.\n");
}

int kb_cmd_device(int argc, char **argv, kb_err *err) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    char bad[3];
    optind = 0; /* GNU getopt: 0 re-initialises its internal state */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage();
            return KB_EXIT_OK;
        }
        kb_fail(err, "device: unknown option '%s'", kb_cli_bad_option(argc, argv, bad));
        return KB_EXIT_USAGE;
    }
    if (optind < argc) { /* it takes none: a word after it was ignored */
        kb_fail(err, "device: unexpected argument '%s'", argv[optind]);
        return KB_EXIT_USAGE;
    }
    kb_ctx ctx;
    if (kb_ctx_init(&ctx, KB_DEV_CPU, NULL, err)) return KB_EXIT_FAIL;
    printf("cpu: %d threads, OpenBLAS kernels %s\n", ctx.threads, openblas_get_corename());
    kb_ctx_free(&ctx);
    if (!kb_cuda_compiled()) {
        printf("cuda: not compiled in (CPU-only build)\n");
        return KB_EXIT_OK;
    }
    int n = kb_cuda_device_count();
    printf("cuda: compiled in, %d GPU(s) visible\n", n);
    for (int i = 0; i < n; i++) {
        char desc[256];
        if (kb_cuda_describe(i, desc, sizeof desc, err)) return KB_EXIT_FAIL;
        printf("  gpu %d: %s\n", i, desc);
    }
    return KB_EXIT_OK;
}
