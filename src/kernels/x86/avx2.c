/* avx2.c -- the x86 kernels on 8-float vectors (AVX2 + FMA + F16C): every
 * x86-64-v3 CPU, and the level valgrind can run. */
#include <immintrin.h>

typedef __m256 VEC;
#define VW 8
#define NV 2 /* a tile is 4 rows x 2 vectors: 8 accumulators of 16 registers */
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VDIV(a, b) _mm256_div_ps(a, b)
#define VSQRT(a) _mm256_sqrt_ps(a)
#define VMIN(a, b) _mm256_min_ps(a, b)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VABS(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define VCOPYSIGN(mag, sgn) _mm256_or_ps(mag, _mm256_and_ps(sgn, _mm256_set1_ps(-0.0f)))
#define VROUND(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* p * 2^n for integral n in [-126, 127] (vexp clamps its input to that). */
#define VSCALE2(p, n) \
    _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)))
#define VLOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VLOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

/* Q8: 16 int8 weights (8 columns x a k pair) widened to int16, and the
 * pairwise multiply-add into 8 int32 lanes, exact. */
typedef __m256i IVEC;
typedef __m256i WVEC;
#define IZERO() _mm256_setzero_si256()
#define ILOAD_I8X2(p) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p)))
#define ISET1(v) _mm256_set1_epi32(v)
#define IDOT(acc, w, x) _mm256_add_epi32(acc, _mm256_madd_epi16(w, x))
#define IADD(a, b) _mm256_add_epi32(a, b)
#define ICVT(a) _mm256_cvtepi32_ps(a)

static inline float VREDUCE(__m256 v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
}

/* VREDUCE of 8 vectors at once, lane i holding VREDUCE(v[i]) to the bit:
 * the halves, then the two pairs of a half, then the pair, as VREDUCE
 * adds them (see avx512.h). */
static inline __m256 VREDUCE_EACH(const __m256 *v) {
    __m256 e[4], g[2];
    _Pragma("GCC unroll 4") /* in registers, not on the stack */
    for (int m = 0; m < 4; m++) /* half 0: v[2m]'s halves added, half 1: v[2m+1]'s */
        e[m] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * m], v[2 * m + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * m], v[2 * m + 1], 0x31));
    _Pragma("GCC unroll 2")
    for (int p = 0; p < 2; p++) /* half j: the pair sums of v[4p + j], then of v[4p + 2 + j] */
        g[p] = _mm256_add_ps(_mm256_shuffle_ps(e[2 * p], e[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(e[2 * p], e[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* Lane 4j + m: the sum of v[2m + j]; put it in lane 2m + j. */
    const __m256 s = _mm256_add_ps(_mm256_shuffle_ps(g[0], g[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(g[0], g[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
#define VREDUCE_EACH VREDUCE_EACH

#define FN(name) name##_avx2
#define KERNELS_NAME "avx2" /* simd_impl.h ends with the table, gpt2_kernels_avx2 */
#include "../simd_impl.h"
