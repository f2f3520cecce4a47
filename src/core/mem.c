/* mem.c -- large buffers backed by huge pages where the OS offers them.
 *
 * Decode streams every weight once per token, so it lives on memory
 * bandwidth, and on these virtual machines a TLB miss costs a nested page
 * walk: reading 2.4 MB matrices from 4 KiB pages measured 16 GB/s against
 * 24-25 GB/s from 2 MiB pages (one thread, same run), and the Q8 product
 * followed (13-14 against 16-22 GB/s). Transparent huge pages are often in
 * "madvise" mode, so the buffers must ask for them. */
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void mem_advise_huge(const void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    /* The whole huge pages inside the range; failure only means small pages. */
    const uintptr_t mask = ~(uintptr_t)(HUGE_PAGE - 1);
    uintptr_t lo = ((uintptr_t)p + HUGE_PAGE - 1) & mask, hi = ((uintptr_t)p + n) & mask;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p, (void)n;
#endif
}

void *mem_aligned(size_t bytes) {
    if (bytes > SIZE_MAX - 63) return NULL;
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

void *mem_alloc(size_t bytes) {
    if (bytes < HUGE_PAGE) return mem_aligned(bytes);
    if (bytes > SIZE_MAX - HUGE_PAGE) return NULL;
    size_t n = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *p = aligned_alloc(HUGE_PAGE, n);
    if (p) mem_advise_huge(p, n);
    return p;
}
