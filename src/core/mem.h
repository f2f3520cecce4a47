/* mem.h -- large buffers (weights converted at load, the KV cache) placed
 * where the OS can back them with huge pages. */
#ifndef GPT2C_MEM_H
#define GPT2C_MEM_H

#include <stddef.h>

/* Like malloc, 64-byte aligned (a cache line: vector loads from it never
 * straddle two lines). Freed with free(). */
void *mem_aligned(size_t bytes);

/* Like mem_aligned; a buffer of 2 MiB or more is 2 MiB aligned and advised
 * for transparent huge pages. Freed with free(). */
void *mem_alloc(size_t bytes);

/* Advises a mapping [p, p + n) for huge pages; a no-op where unsupported. */
void mem_advise_huge(const void *p, size_t n);

#endif
