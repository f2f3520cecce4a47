/* dispatch.c -- chooses the kernel table from what the CPU and the OS
 * support: on x86, CPUID for the instruction sets and XGETBV for the OS
 * saving the vector registers (valgrind, for one, hides AVX-512 this way);
 * on AArch64, NEON always. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* 0 generic, 1 AVX2+FMA+F16C, 2 AVX-512 F/BW/VL/DQ, 3 and AVX512_VNNI, 4 and
 * AVX512_BF16 (leaf 7, subleaf 1). */
static int cpu_level(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return 0;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 6) != 6) return 0; /* SSE and AVX state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1;
    if (!(avx2 && fma && f16c)) return 0;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (!(f && dq && bw && vl && (xcr0 & 0xe6) == 0xe6)) return 1; /* opmask and ZMM state too */
    int vnni = (c >> 11) & 1;
    if (!vnni) return 2;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 3;
    return (a >> 5) & 1 ? 4 : 3;
}

int gpt2_kernels_available(const gpt2_kernels **out, int max) {
    const gpt2_kernels *all[5] = {&gpt2_kernels_generic, &gpt2_kernels_avx2, &gpt2_kernels_avx512,
                                  &gpt2_kernels_avx512vnni, &gpt2_kernels_avx512bf16};
    int n = cpu_level() + 1;
    for (int i = 0; i < n && i < max; i++) out[i] = all[i];
    return n < max ? n : max;
}
#elif defined(__aarch64__)
/* Advanced SIMD, half-precision conversions included, is part of every
 * AArch64 CPU: nothing to ask. */
int gpt2_kernels_available(const gpt2_kernels **out, int max) {
    const gpt2_kernels *all[2] = {&gpt2_kernels_generic, &gpt2_kernels_neon};
    int n = max < 2 ? max : 2;
    for (int i = 0; i < n; i++) out[i] = all[i];
    return n;
}
#else
int gpt2_kernels_available(const gpt2_kernels **out, int max) {
    if (max > 0) out[0] = &gpt2_kernels_generic;
    return max > 0;
}
#endif

const gpt2_kernels *gpt2_kernels_select(void) {
    const gpt2_kernels *avail[8];
    int n = gpt2_kernels_available(avail, 8);
    const char *force = getenv("GPT2C_KERNELS");
    if (force && *force)
        for (int i = 0; i < n; i++)
            if (strcmp(avail[i]->name, force) == 0) return avail[i];
    return avail[n - 1];
}
