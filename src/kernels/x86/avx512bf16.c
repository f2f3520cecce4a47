/* avx512bf16.c -- the table of CPUs with AVX512_BF16 (every one of which has
 * AVX512_VNNI too): avx512vnni.c's kernels, plus the BF16P product of
 * --compute bf16 in vdpbf16ps, which multiplies 16 pairs of bf16 and adds
 * them into 16 f32 sums, 32 multiply-adds an instruction where an f32 FMA
 * does 16. Each lane computes bf16_dot_pair (kernels.h), so the product has
 * the generic table's bits. */
#include <immintrin.h>

#include "../kernels.h"
#include "../with_rows.h"

#define MB 8  /* a tile: 8 rows x NB vectors of 16 columns, 24 accumulators of 32 registers */
#define NB 3
#define KP 64 /* pairs (128 k) per block of the tiled loop: a tile's slice is 3 runs of 4 KiB */
#define UNROLL _Pragma("GCC unroll 8") /* the tile's loops, whole: its accumulators stay in registers */

/* R rows (a compile-time count) x NC vectors of columns over pairs
 * [p0, p1): each sum goes on from out's value, the chain the product
 * defines. Vector c's words for pair p are at w + c * gstride + 16 (p - p0):
 * its column group's contiguous run; the last vector's lanes outside `last`
 * are padding, neither stored nor loaded from out. */
static inline __attribute__((always_inline)) void bf_tile(float *out, const uint32_t *x, const uint32_t *w,
                                                          size_t gstride, const int R, const int NC, __mmask16 last,
                                                          int dinp, int dout, int p0, int p1) {
    __m512 acc[MB][NB];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int c = 0; c < NC; c++)
            acc[r][c] = _mm512_maskz_loadu_ps(c == NC - 1 ? last : 0xffff, out + (size_t)r * dout + 16 * c);
    for (int p = p0; p < p1; p++, w += 16) {
        __m512i wv[NB];
        UNROLL
        for (int c = 0; c < NC; c++) wv[c] = _mm512_loadu_si512(w + c * gstride);
        UNROLL
        for (int r = 0; r < R; r++) {
            const __m512bh xr = (__m512bh)_mm512_set1_epi32((int)x[(size_t)r * dinp + p]);
            UNROLL
            for (int c = 0; c < NC; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xr, (__m512bh)wv[c]);
        }
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int c = 0; c < NC; c++)
            _mm512_mask_storeu_ps(out + (size_t)r * dout + 16 * c, c == NC - 1 ? last : 0xffff, acc[r][c]);
}

static void bf_tile_any(float *out, const uint32_t *x, const uint32_t *w, size_t gstride, int rows, int nc,
                        __mmask16 last, int dinp, int dout, int p0, int p1) {
    if (nc == NB) WITH_ROWS(rows, MB, bf_tile(out, x, w, gstride, R_, NB, last, dinp, dout, p0, p1))
    else if (nc == 2) WITH_ROWS(rows, MB, bf_tile(out, x, w, gstride, R_, 2, last, dinp, dout, p0, p1))
    else WITH_ROWS(rows, MB, bf_tile(out, x, w, gstride, R_, 1, last, dinp, dout, p0, p1))
}

/* Tiles of 8 rows x 48 columns. A few rows (decode) go down each tile's
 * three column groups in one pass, reading every weight once, as three
 * sequential streams; more go k block by k block, each block's slice of a
 * tile (three 4 KiB runs, no copy needed) read for every group of rows.
 * Whatever the path, an output is the same chain. */
static void matmul_bf16_avx512bf16(float *out, const uint32_t *xb, gpt2_weight w, const float *bias, int n, int din,
                                   int dout, int j0, int j1) {
    const int dinp = din / 2;
    const size_t gstride = (size_t)dinp * GPT2_BF16P_GROUP; /* words from one column group to the next */
    const uint32_t *wp = w.data;
    for (int i = 0; i < n; i++)
        for (int j = j0; j < j1; j++) out[(size_t)i * dout + j] = bias ? bias[j] : 0.0f;
    const int kp = n <= MB ? dinp : KP;
    for (int p0 = 0; p0 < dinp; p0 += kp) {
        const int p1 = p0 + kp < dinp ? p0 + kp : dinp;
        for (int j = j0; j < j1; j += NB * 16) {
            const int cols = j1 - j < NB * 16 ? j1 - j : NB * 16, nc = (cols + 15) / 16, tail = cols - 16 * (nc - 1);
            const __mmask16 last = (__mmask16)(tail == 16 ? 0xffffu : (1u << tail) - 1);
            const uint32_t *src = wp + bf16p_word((size_t)p0, (size_t)j, (size_t)dinp);
            for (int i = 0; i < n; i += MB)
                bf_tile_any(out + (size_t)i * dout + j, xb + (size_t)i * dinp, src, gstride, n - i < MB ? n - i : MB,
                            nc, last, dinp, dout, p0, p1);
        }
    }
}

/* Everything else is avx512vnni.c's table: its Q8 product, and avx512.c's
 * other kernels (named here, as a constant initializer must). */
gpt2_matmul_fn matmul_avx512;
gpt2_matmul_part_fn matmul_part_avx512;
gpt2_matmul_t_fn matmul_t_avx512;
gpt2_matmul_q8_fn matmul_q8_avx512vnni;
gpt2_layernorm_fn layernorm_avx512;
gpt2_activation_fn activation_avx512;
gpt2_activation_dx_fn activation_dx_avx512;
gpt2_adamw_fn adamw_avx512;
gpt2_attention_fn attention_avx512;
gpt2_read_probe_fn read_probe_avx512;
gpt2_fma_probe_fn fma_probe_avx512;

const gpt2_kernels gpt2_kernels_avx512bf16 = {
    .name = "avx512bf16",
    .matmul = matmul_avx512,
    .matmul_part = matmul_part_avx512,
    .matmul_t = matmul_t_avx512,
    .matmul_q8 = matmul_q8_avx512vnni,
    .matmul_bf16 = matmul_bf16_avx512bf16,
    .layernorm = layernorm_avx512,
    .activation = activation_avx512,
    .activation_dx = activation_dx_avx512,
    .adamw = adamw_avx512,
    .attention = attention_avx512,
    .read_probe = read_probe_avx512,
    .fma_probe = fma_probe_avx512,
};
