/* A libFuzzer target for the safe PyTorch checkpoint reader (optional; not a
 * ctest test). Every input is parsed normally and in header-only mode, and
 * the float tensors of an accepted file are read. Build and run with clang:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/test_torch_pickle_libfuzzer.c \
 *     metrics/torch_pickle.c metrics/torch_pickle_file.c nn/tensor.c util/err.c util/fileio.c \
 *     $(pkg-config --cflags --libs libzip) -o fuzz_torch_pickle
 *   mkdir -p corpus && cp build/tests/fixtures/tp_small_*.pth corpus/
 *   ./fuzz_torch_pickle -max_total_time=600 -max_len=65536 corpus
 */
#include <stdint.h>
#include <stdlib.h>

#include "metrics/torch_pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int flags = 0; flags <= KB_TP_HEADER_ONLY; flags++) {
        kb_err err;
        kb_tp_file *f = kb_tp_open_mem(data, size, "fuzz", flags, &err);
        if (!f) {
            if (!err.msg[0]) abort(); /* every error must say why */
            continue;
        }
        for (int i = 0; i < kb_tp_count(f); i++) {
            const kb_tp_tensor *t = kb_tp_at(f, i);
            if (t->dtype != KB_F32 || t->numel > (1 << 20)) continue;
            float *buf = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            kb_tp_read_f32(f, t->name, -1, NULL, buf, (size_t)t->numel, &err);
            free(buf);
        }
        kb_tp_close(f);
    }
    return 0;
}
