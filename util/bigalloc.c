/* Huge-page allocations (see bigalloc.h). */
#define _GNU_SOURCE
#include "util/bigalloc.h"

#include <stdlib.h>
#include <sys/mman.h>

enum { HUGE_PAGE = 2u << 20 };

void *kb_alloc_huge(size_t bytes) {
    if (bytes == 0) return NULL;
    /* below one huge page the advice cannot help: a plain cache-line alignment */
    size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : 64;
    size_t rounded = (bytes + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, rounded)) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE) (void)madvise(p, rounded, MADV_HUGEPAGE); /* advice only: failure is harmless */
#endif
    return p;
}
