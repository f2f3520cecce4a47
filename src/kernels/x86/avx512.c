/* avx512.c -- the x86 kernels on 16-float vectors (AVX-512 F/BW/VL/DQ).
 * Compiled with those instruction sets enabled; chosen at run time only when
 * CPUID and XGETBV say the CPU and OS support them. */
#include "avx512.h"

/* The pairwise multiply-add, then the add: exact in int32. */
#define IDOT(acc, w, x) _mm512_add_epi32(acc, _mm512_madd_epi16(w, x))

#define FN(name) name##_avx512
#define KERNELS_NAME "avx512" /* simd_impl.h ends with the table, gpt2_kernels_avx512 */
#include "../simd_impl.h"
