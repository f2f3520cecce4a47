/* avx512.h -- the vector vocabulary of the AVX-512 kernels (16-float
 * vectors), shared by the two tables built on it: avx512.c and
 * avx512vnni.c, which differ only in how Q8's integer sums are formed. */
#ifndef GPT2C_KERNELS_AVX512_H
#define GPT2C_KERNELS_AVX512_H
#include <immintrin.h>

typedef __m512 VEC;
#define VW 16
#define NV 3 /* a tile is 8 rows x 3 vectors: 24 accumulators of 32 registers */
#define MR 8
#define MRQ 8
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO() _mm512_setzero_ps()
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VDIV(a, b) _mm512_div_ps(a, b)
#define VSQRT(a) _mm512_sqrt_ps(a)
#define VMIN(a, b) _mm512_min_ps(a, b)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VABS(a) _mm512_abs_ps(a)
#define VCOPYSIGN(mag, sgn)                                                                              \
    _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag),                                       \
                                        _mm512_and_si512(_mm512_castps_si512(sgn), _mm512_set1_epi32((int)0x80000000u))))
#define VROUND(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE2(p, n) _mm512_scalef_ps(p, n)
#define VLOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VLOAD_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))

/* Q8: 32 int8 weights (16 columns x a k pair) widened to int16; the
 * pairwise multiply-add into 16 int32 lanes (IDOT) is each table's own. */
typedef __m512i IVEC;
typedef __m512i WVEC;
#define IZERO() _mm512_setzero_si512()
#define ILOAD_I8X2(p) _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(p)))
#define ISET1(v) _mm512_set1_epi32(v)
#define IADD(a, b) _mm512_add_epi32(a, b)
#define ICVT(a) _mm512_cvtepi32_ps(a)

/* A fixed reduction order: halves folded down to one lane. */
static inline float VREDUCE(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
}

/* VREDUCE of 16 vectors at once, lane i holding VREDUCE(v[i]) to the bit:
 * each level adds the same pairs as VREDUCE's (halves, then quarters, then
 * the two pairs of a quarter, then the pair), for two to eight vectors per
 * instruction. The scores of attention are sixteen dot products each;
 * reduced one by one, they took most of its time with the keys in cache. */
static inline __m512 VREDUCE_EACH(const __m512 *v) {
    __m512 e[8], f[4], g[2];
    _Pragma("GCC unroll 8") /* in registers, not on the stack */
    for (int m = 0; m < 8; m++) /* lanes 0-7: v[2m]'s halves added, 8-15: v[2m+1]'s */
        e[m] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    _Pragma("GCC unroll 4")
    for (int n = 0; n < 4; n++) /* quarter j: v[4n + j]'s quarters added */
        f[n] = _mm512_add_ps(_mm512_shuffle_f32x4(e[2 * n], e[2 * n + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(e[2 * n], e[2 * n + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    _Pragma("GCC unroll 2")
    for (int p = 0; p < 2; p++) /* quarter j: the pair sums of v[8p + j], then of v[8p + 4 + j] */
        g[p] = _mm512_add_ps(_mm512_shuffle_ps(f[2 * p], f[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(f[2 * p], f[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* Lane 4j + m: the sum of v[4m + j]; put it in lane 4m + j. */
    const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(g[0], g[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(g[0], g[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), s);
}
#define VREDUCE_EACH VREDUCE_EACH

#endif
