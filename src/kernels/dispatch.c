/* dispatch.c -- chooses the kernel table at model load. Only the generic
 * table exists so far; ISA-specific tables (kernels/x86, kernels/arm) will be
 * picked here from CPUID, with GPT2C_KERNELS to force a level. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

const gpt2_kernels *gpt2_kernels_select(void) {
    const char *force = getenv("GPT2C_KERNELS");
    (void)force; /* every choice resolves to generic until faster tables exist */
    return &gpt2_kernels_generic;
}
