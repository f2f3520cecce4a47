/* avx512vnni.c -- the AVX-512 kernels with VNNI (AVX512_VNNI), chosen where
 * CPUID has it: vpdpwssd multiplies the 16-bit pairs and adds them into the
 * int32 sums in one instruction, the same integers as avx512.c's two. In
 * cache, one thread, the Q8 product of 8 rows went from 65-79 to 76-93
 * GMAC/s with it (and matmul_q8's row-interleaved sums, which its latency
 * needs); every other entry of its table is avx512.c's function, not
 * compiled again here. */
#include "avx512.h"

#define IDOT(acc, w, x) _mm512_dpwssd_epi32(acc, w, x)

#define FN(name) name##_avx512vnni
#define BORROW(name) name##_avx512 /* every kernel but the Q8 product is avx512.c's */
#define KERNELS_NAME "avx512vnni" /* simd_impl.h ends with the table, gpt2_kernels_avx512vnni */
#include "../simd_impl.h"
