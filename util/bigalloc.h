/* Allocation of large work matrices (tens of MiB) on transparent huge pages.
 *
 * Why: the first touch of fresh memory costs a page fault per 4 KiB page,
 * and on the virtual machines we run on that is several microseconds each:
 * about 0.08 s for one 2048 x 2048 double matrix, a quarter of the whole
 * Fréchet distance. Aligned to 2 MiB and advised MADV_HUGEPAGE, the same
 * matrix takes 16 faults. Where the kernel offers no huge pages the advice is
 * ignored and this is an ordinary aligned allocation. Free with free(). */
#ifndef KB_BIGALLOC_H
#define KB_BIGALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* NULL when out of memory (or bytes == 0). */
void *kb_alloc_huge(size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
