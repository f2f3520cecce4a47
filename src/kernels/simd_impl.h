/* simd_impl.h -- the SIMD kernels, written once over a few vector macros and
 * compiled once per instruction set: x86/avx2.c (8 floats a vector),
 * x86/avx512.c (16) and arm/neon.c (4). The file that includes this defines
 * VW, the vector type and operations, FN() and KERNELS_NAME; the file ends
 * with the kernel table, FN(gpt2_kernels). The entry points have external
 * linkage so that a table may borrow them: where the including file defines
 * BORROW(name) -- another table's entry -- only the Q8 product is compiled
 * here and every other entry is BORROW's (avx512vnni.c). Attention is in
 * simd_attention.h, a part of this file.
 *
 * Bit-exactness across batch shapes (see kernels.h): every output element is
 * a chain of fused multiply-adds in k order from its bias (or from zero and
 * then one fixed reduction for dot products), and a column that falls outside
 * the vectors is computed with fmaf(), which rounds exactly as the vector FMA
 * does. Decode (one row) and prefill (tiles of rows) thus agree to the bit. */
#include <math.h>
#include <string.h>

#include "../core/half.h"
#include "kernels.h"
#include "with_rows.h"

/* The small fixed loops over tile rows and vectors must unroll so that the
 * accumulators live in registers; GCC's -O2 would keep them on the stack. */
#define UNROLL _Pragma("GCC unroll 16")

#ifndef VREDUCE_EACH
/* Lane i of the result is VREDUCE(v[i]). An instruction set may define it
 * with shuffles that add the same pairs in the same order for all VW
 * vectors at once. */
static inline VEC VREDUCE_EACH(const VEC *v) {
    float s[VW];
    for (int i = 0; i < VW; i++) s[i] = VREDUCE(v[i]);
    return VLOAD(s);
}
#endif

/* Widens VW weights at element i of w to a vector (F32, F16, BF16). */
static inline __attribute__((always_inline)) VEC vloadw(gpt2_weight w, size_t i, gpt2_wtype t) {
    if (t == WT_F32) return VLOAD((const float *)w.data + i);
    if (t == WT_F16) return VLOAD_F16((const uint16_t *)w.data + i);
    return VLOAD_BF16((const uint16_t *)w.data + i);
}

static inline __attribute__((always_inline)) float loadw1(gpt2_weight w, size_t i, gpt2_wtype t) {
    if (t == WT_F32) return ((const float *)w.data)[i];
    uint16_t h;
    memcpy(&h, (const uint16_t *)w.data + i, 2);
    return t == WT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

#ifndef BORROW
/* ------------------------------------------------------------------ matmul */

/* Input rows per tile of a matrix product (the ISA file may set more). */
#ifndef MR
#define MR 4
#endif
#define MM_PACK_ROWS 64 /* rows from which the tiled product packs its weights (mm_typed) */
/* k rows a packed slice spans: four k blocks, 48 KiB of stack for AVX-512's
 * tiles. Each group of rows runs the slice's blocks one after the other
 * while its outputs are in L1, so the pass over the outputs (bias and
 * earlier blocks, from L3 at gpt2's sizes) comes once in four blocks. */
#define MM_KCHUNK (4 * GPT2_KBLOCK)
#define MM_PREFETCH 16384 /* bytes ahead in decode's weight stream (mm_part_r) */

/* Block partials of R input rows (decode, batched decode; R a compile-time
 * count): part[b, i] = the fma chain over the block's k, from zero, for
 * every column, the additions in k order. The rows of a block are
 * contiguous, so this streams memory once for all R rows, but how fast
 * depends on how many weight rows are read side by side: PR per pass over
 * the partials, U vectors of columns per step (a compile-time pair), and on
 * prefetching: lines are fetched into the outer caches PF bytes ahead of the
 * pass, at the pace the block is read. One input row (decode) streams one
 * weight row at a time, 16 KiB ahead (see mm_part_r). Several input rows
 * (batched decode) do more arithmetic per line of weights, so fewer loads
 * are in flight: they take sixteen weight rows per pass, a tile of R rows x
 * the vectors that hold one 64-byte line of a weight row (at most NV), and
 * (until the change below) prefetched half a block ahead (one thread, 8 rows, gpt2 fc_proj 7-11 ->
 * 17-18 GB/s). gpt2 batch 8, five alternating runs against the row-tiled
 * product the batch took before: f32 215-236 -> 245-311 tokens/s, f16
 * 333-384 -> 415-437. A line a row rather than NV vectors (AVX-512: 1 for
 * F32, 2 for F16 and BF16, against 3; AVX2 and NEON unchanged): 8 rows over
 * all of gpt2's products, two threads, 10 interleaved rounds, medians: f32
 * 25.5 -> 30.4 GB/s, f16 19.4 -> 19.6, bf16 17.7 -> 20.9; bench, batch 8, 6
 * alternating runs, tokens/s: f32 288-348 -> 307-381, f16 449-495 ->
 * 479-506, bf16 327-468 -> 337-509 (f32 batch 4 186-194 -> 197-209,
 * gpt2-medium batch 8 85-86 -> 92-106). Then, for gpt2-xl's wider rows
 * (speculative decoding checks up to 8 rows): fetching MM_PREFETCH ahead as
 * one row does, rather than half a block (820 KiB of a 6400-wide f16 block,
 * most of L2), and for 7 and 8 rows one vector a row per step (16 chains
 * rather than 32 beside the broadcasts). One thread, cold 1600 x 6400 f16,
 * GB/s: 2 rows 13.2-13.5 -> 19.6-25.2, 4 rows 13.2-16.5 -> 16.3-22.8, 6 rows
 * 11.6-15.3 -> 14.2-21.3, 8 rows 6.8-10.7 -> 16.5-16.9. bench, two threads,
 * 4 alternating rounds, medians, ms per step: gpt2-xl f16 batch 4 154 ->
 * 147, batch 6 207 -> 177, batch 8 240 -> 222; gpt2 batch 8 f32 48 -> 40,
 * f16 28.8 -> 28.1, bf16 30.8 -> 30.3, f16 batch 4 20.9 -> 20.6 (the
 * machine was busy: the spread within each is 10-40%). */
static inline __attribute__((always_inline)) void mm_part_ru(float *part, const float *x, gpt2_weight w, gpt2_wtype t,
                                                             const int R, int n, int din, int dout, int b0, int b1,
                                                             const int PR, const int U) {
    const int jv = dout / (VW * U) * (VW * U);
    const size_t esz = weight_type_size(t), block_bytes = (size_t)GPT2_KBLOCK * dout * esz;
    /* Lines of weights to prefetch per step of the loop below, PF bytes
     * ahead, at the pace the block is read (see above for PF). */
    const int steps = GPT2_KBLOCK / PR * (jv / (VW * U));
    const size_t pf_lines = steps ? (block_bytes / 64 + (size_t)steps - 1) / (size_t)steps : 0;
    const size_t PF = MM_PREFETCH;
    for (int b = b0; b < b1; b++) {
        /* The block's first pass starts its chains from zero in registers
         * rather than from a cleared partial (clearing cost 6% of f16 decode). */
        float *o = part + (size_t)b * n * dout; /* row r's partial: o + r * dout */
        int k = b * GPT2_KBLOCK, k1 = k + GPT2_KBLOCK < din ? k + GPT2_KBLOCK : din, first = 1;
        size_t pf = (size_t)k * dout * esz + PF; /* a byte offset in w */
        const size_t pf_end = (size_t)din * dout * esz;
        /* The block's inputs, k-major (xt[q][r] = x[r][k + q]), so that a
         * pass broadcasts them from one pointer rather than R row pointers
         * (GCC spilled those into vector registers). */
        float xt[GPT2_KBLOCK * MR];
        for (int q = 0; q < k1 - k; q++)
            for (int r = 0; r < R; r++) xt[q * R + r] = x[(size_t)r * din + k + q];
        for (; k + PR <= k1; k += PR, first = 0) {
            const size_t row = (size_t)k * dout;
            const float *xq = xt + (k - b * GPT2_KBLOCK) * R;
            for (int j = 0; j < jv; j += VW * U) { /* an R x U tile of accumulators */
                VEC acc[MR][4];
                UNROLL
                for (int r = 0; r < R; r++)
                    UNROLL
                    for (int u = 0; u < U; u++) acc[r][u] = first ? VZERO() : VLOAD(o + (size_t)r * dout + j + u * VW);
                for (size_t l = 0; l < pf_lines && pf < pf_end; l++, pf += 64)
                    __builtin_prefetch((const char *)w.data + pf, 0, 1);
                /* One pointer stepped down the rows: sixteen row pointers
                 * held at once spilled into vector registers, and every load
                 * waited on a move back (perf, f16 decode). */
                const char *wq = (const char *)w.data + (row + (size_t)j) * esz;
                UNROLL
                for (int q = 0; q < PR; q++, wq += (size_t)dout * esz) {
                    VEC wv[4];
                    __asm__("" : "+r"(wq)); /* keeps one pointer, stepped, not sixteen */
                    const gpt2_weight wr = {.data = wq};
                    UNROLL
                    for (int u = 0; u < U; u++) wv[u] = vloadw(wr, (size_t)u * VW, t);
                    UNROLL
                    for (int r = 0; r < R; r++) {
                        const VEC xr = VSET1(xq[q * R + r]);
                        UNROLL
                        for (int u = 0; u < U; u++) acc[r][u] = VFMA(xr, wv[u], acc[r][u]);
                    }
                }
                UNROLL
                for (int r = 0; r < R; r++)
                    UNROLL
                    for (int u = 0; u < U; u++) VSTORE(o + (size_t)r * dout + j + u * VW, acc[r][u]);
            }
            for (int r = 0; r < R; r++)
                for (int j = jv; j < dout; j++) { /* columns left over: the same chain, one by one */
                    float sum = first ? 0.0f : o[(size_t)r * dout + j];
                    for (int q = 0; q < PR; q++) sum = fmaf(x[(size_t)r * din + k + q], loadw1(w, row + (size_t)q * dout + j, t), sum);
                    o[(size_t)r * dout + j] = sum;
                }
        }
        for (; k < k1; k++, first = 0) /* rows left over at the end of a short block */
            for (int r = 0; r < R; r++)
                for (int j = 0; j < dout; j++) {
                    float *oj = o + (size_t)r * dout + j;
                    *oj = fmaf(x[(size_t)r * din + k], loadw1(w, (size_t)k * dout + j, t), first ? 0.0f : *oj);
                }
    }
}

/* One input row: one weight row at a time, two vectors a step (four for
 * BF16, whose widening is two instructions), prefetched MM_PREFETCH bytes
 * ahead. Measured on the checkpoints' own mappings, two threads, every
 * product of a model in decode order, 12 interleaved rounds (medians,
 * GB/s), against the shapes chosen before by row length with no prefetch
 * (f32 rows of up to 12 KiB one vector at a time, 16-bit rows of up to
 * 4 KiB four, longer rows sixteen side by side): f32 gpt2 26.6 -> 37.4,
 * gpt2-medium 28.1 -> 40.6, gpt2-xl 42.3 -> 41.8; f16 gpt2 34.7 -> 41.3,
 * gpt2-medium 28.8 -> 33.2, gpt2-xl 38.0 -> 45.4; bf16 gpt2 30.9 -> 41.7
 * (two vectors: 37.0); the read probe over the same bytes gave 37-51.
 * Sixteen rows side by side with the prefetch read 30.2 (f32 gpt2), 30.2
 * (f16 gpt2-medium) and 39.7 (f16 gpt2-xl); 64 KiB ahead measured as
 * 16, 256 KiB worse. */
static inline __attribute__((always_inline)) void mm_part_r(float *part, const float *x, gpt2_weight w, gpt2_wtype t,
                                                            const int R, int n, int din, int dout, int b0, int b1) {
    if (R > 1) { /* one line of each weight row a step, at most NV vectors; one vector for 7 and 8 rows */
        const int line = 64 / (VW * (t == WT_F32 ? 4 : 2));
        mm_part_ru(part, x, w, t, R, n, din, dout, b0, b1, 16, R > 6 || line < 1 ? 1 : line < NV ? line : NV);
    } else if (t == WT_BF16) mm_part_ru(part, x, w, t, 1, n, din, dout, b0, b1, 1, 4);
    else mm_part_ru(part, x, w, t, 1, n, din, dout, b0, b1, 1, 2);
}

/* Groups of up to MR input rows, each streaming the block's weights. */
static inline __attribute__((always_inline)) void mm_part(float *part, const float *x, gpt2_weight w, gpt2_wtype t,
                                                          int n, int din, int dout, int b0, int b1) {
    for (int i = 0; i < n; i += MR) {
        float *pi = part + (size_t)i * dout; /* row i of each block: rows are n apart */
        const float *xi = x + (size_t)i * din;
        WITH_ROWS(n - i < MR ? n - i : MR, MR, mm_part_r(pi, xi, w, t, R_, n, din, dout, b0, b1))
    }
}

void FN(matmul_part)(float *part, const float *x, gpt2_weight w, int n, int din, int dout, int b0, int b1) {
    switch (w.type) {
    case WT_F32: mm_part(part, x, w, WT_F32, n, din, dout, b0, b1); break;
    case WT_F16: mm_part(part, x, w, WT_F16, n, din, dout, b0, b1); break;
    case WT_BF16: mm_part(part, x, w, WT_BF16, n, din, dout, b0, b1); break;
    case WT_Q8: /* the model uses matmul_q8, and matmul_bf16 for BF16P */
    case WT_BF16P: gpt2_kernels_generic.matmul_part(part, x, w, n, din, dout, b0, b1); break;
    }
}

/* A tile's slice of k rows [k0, k1) (up to MM_KCHUNK): its C vectors of
 * columns of each weight row, widened to f32, one row after the other in
 * pk, so that every group of rows reads it as one contiguous run. Read in
 * place, a block's slice is GPT2_KBLOCK rows dout apart: with dout a multiple of
 * 1024 bytes (gpt2's 768 to 3072 columns in f32) they fall in a few sets of
 * the L1 and evict each other, so each group read it from L2 again. */
static inline __attribute__((always_inline)) void mm_pack(float *pk, gpt2_weight w, gpt2_wtype t, const int C,
                                                          int dout, int j, int k0, int k1) {
    for (int k = k0; k < k1; k++)
        UNROLL
        for (int c = 0; c < C; c++) VSTORE(pk + (size_t)(k - k0) * C * VW + c * VW, vloadw(w, (size_t)k * dout + j + c * VW, t));
}

/* A tile of R rows x C vectors of columns (compile-time counts) over one k
 * block [k0, k1): weight row k's vectors start at element at + (k - k0) *
 * stride of w -- a slice packed by mm_pack, or the matrix in place, whose
 * next tile is then fetched while this one is computed (a block's rows are
 * GPT2_KBLOCK strided streams, more than the hardware prefetcher follows).
 * The block's partial starts from zero and is then added to out (earlier
 * blocks), or for the first block (k0 = 0) to the bias, or zero: out is not
 * cleared beforehand, a pass over all of it (a scalar loop that took 6-8% of
 * the product's time, perf, gpt2 prefill). */
static inline __attribute__((always_inline)) void mm_tile_r(float *out, const float *in, gpt2_weight w, gpt2_wtype t,
                                                            size_t at, size_t stride, int prefetch, const int R,
                                                            const int C, int din, int dout, int j, int k0, int k1,
                                                            const float *bias) {
    VEC acc[MR][NV];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int c = 0; c < C; c++) acc[r][c] = VZERO();
    const size_t esz = weight_type_size(t);
    for (int k = k0; k < k1; k++, at += stride) {
        VEC wv[NV];
        if (prefetch) {
            const char *next = (const char *)w.data + (at + C * VW) * esz;
            UNROLL
            for (size_t b = 0; b < C * VW * esz; b += 64) __builtin_prefetch(next + b);
        }
        UNROLL
        for (int c = 0; c < C; c++) wv[c] = vloadw(w, at + c * VW, t);
        UNROLL
        for (int r = 0; r < R; r++) {
            const VEC xr = VSET1(in[(size_t)r * din + k]);
            UNROLL
            for (int c = 0; c < C; c++) acc[r][c] = VFMA(xr, wv[c], acc[r][c]);
        }
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int c = 0; c < C; c++) {
            float *o = out + (size_t)r * dout + j + c * VW;
            const VEC base = k0 > 0 ? VLOAD(o) : bias ? VLOAD(bias + j + c * VW) : VZERO();
            VSTORE(o, VADD(base, acc[r][c]));
        }
}

/* One tile of C vectors of columns at j over k rows [kc0, kc1) (whole k
 * blocks, the last perhaps short), for all n rows in groups of MR, each
 * group's blocks in order: packed (mm_pack) where there are MM_PACK_ROWS
 * rows or more, in place for fewer (one block at a time, kc1 - kc0 <=
 * GPT2_KBLOCK), which do not repay the copy (32 and 48 rows measured the
 * same or slower packed). bench/kernel_bench, f32, two threads, median
 * GFLOP/s in place -> packed: 512 x 768 x 2304 255-259 -> 303-320, 512 x
 * 3072 x 768 224-237 -> 301-302, 128 x 768 x 2304 225-248 -> 258-276
 * (docs/performance.md). Either way each output is the same chain: every
 * block's partial from zero, added in block order to the bias (or zero). */
static inline __attribute__((always_inline)) void mm_cols(float *out, const float *in, gpt2_weight w, gpt2_wtype t,
                                                          const int C, float *pk, const float *bias, int n, int din,
                                                          int dout, int j, int kc0, int kc1) {
    const int pack = n >= MM_PACK_ROWS, pf = j + 2 * C * VW <= dout;
    const gpt2_weight packed = {pk, WT_F32, NULL, 0, 0, 0};
    if (pack) mm_pack(pk, w, t, C, dout, j, kc0, kc1);
    for (int i = 0; i < n; i += MR) {
        float *o = out + (size_t)i * dout;
        const float *x = in + (size_t)i * din;
        for (int k0 = kc0; k0 < kc1; k0 += GPT2_KBLOCK) {
            const int k1 = k0 + GPT2_KBLOCK < kc1 ? k0 + GPT2_KBLOCK : kc1;
            if (pack)
                WITH_ROWS(n - i, MR, mm_tile_r(o, x, packed, WT_F32, (size_t)(k0 - kc0) * C * VW, C * VW, 0, R_, C,
                                               din, dout, j, k0, k1, bias))
            else
                WITH_ROWS(n - i, MR, mm_tile_r(o, x, w, t, (size_t)k0 * dout + j, dout, pf, R_, C, din, dout, j, k0,
                                               k1, bias))
        }
    }
}

static inline __attribute__((always_inline)) void mm_typed(float *out, const float *in, gpt2_weight w, gpt2_wtype t,
                                                           const float *bias, int n, int din, int dout, int j0,
                                                           int j1) {
    const int jv = j0 + (j1 - j0) / VW * VW;                /* [j0, jv) in whole vectors */
    const int jt = j0 + (jv - j0) / (NV * VW) * (NV * VW); /* [j0, jt) in whole tiles */
    if (din <= 0) /* no blocks: the bias alone (the first block starts from it) */
        for (int i = 0; i < n; i++)
            for (int j = j0; j < j1; j++) out[(size_t)i * dout + j] = bias ? bias[j] : 0.0f;
    /* k slices outside, then tiles of columns, each read once for every
     * group of rows; the vectors left after the whole tiles make a narrower
     * tile of the same kind. They had been one chain at a time (latency
     * bound) read in place, after the tiles: a thread's 512 columns of a
     * 1024-wide product (gpt2-medium's output projections) leave 32 after
     * ten tiles, and those 6% of the work took half its time. kernel_bench
     * 512 x 4096 x 1024, two threads, alternating builds: 146-151 ->
     * 305-334 GFLOP/s (1040 columns, 11 tiles a thread: 315-330).
     * Packed, a slice spans MM_KCHUNK k rows, so each group of rows adds
     * four blocks to its outputs while they are in L1 (one block a slice
     * before): gpt2 f32, 512-token prompts, 2 threads, four alternating
     * rounds, 1155-1267 -> 1315-1389 tokens/s (docs/performance.md). */
    const int chunk = n >= MM_PACK_ROWS ? MM_KCHUNK : GPT2_KBLOCK;
    _Alignas(64) float pk[MM_KCHUNK * NV * VW];
    for (int kc0 = 0; kc0 < din; kc0 += chunk) {
        const int kc1 = kc0 + chunk < din ? kc0 + chunk : din;
        for (int j = j0; j < jt; j += NV * VW) mm_cols(out, in, w, t, NV, pk, bias, n, din, dout, j, kc0, kc1);
        for (int j = jt; j < jv;) { /* fewer than NV vectors: two, then one */
            if (NV > 2 && jv - j >= 2 * VW) {
                mm_cols(out, in, w, t, NV > 2 ? 2 : 1, pk, bias, n, din, dout, j, kc0, kc1);
                j += 2 * VW;
            } else {
                mm_cols(out, in, w, t, 1, pk, bias, n, din, dout, j, kc0, kc1);
                j += VW;
            }
        }
        /* Columns outside the vectors: the same block partial from zero,
         * then added. */
        for (int i = 0; i < n && jv < j1; i++) {
            float *orow = out + (size_t)i * dout;
            const float *xr = in + (size_t)i * din;
            for (int k0 = kc0; k0 < kc1; k0 += GPT2_KBLOCK) {
                const int k1 = k0 + GPT2_KBLOCK < kc1 ? k0 + GPT2_KBLOCK : kc1;
                for (int j = jv; j < j1; j++) {
                    float a = 0.0f;
                    for (int k = k0; k < k1; k++) a = fmaf(xr[k], loadw1(w, (size_t)k * dout + j, t), a);
                    orow[j] = (k0 > 0 ? orow[j] : bias ? bias[j] : 0.0f) + a;
                }
            }
        }
    }
}

void FN(matmul)(float *out, const float *in, gpt2_weight w, const float *bias, int n, int din, int dout, int j0,
                int j1) {
    switch (w.type) {
    case WT_F32: mm_typed(out, in, w, WT_F32, bias, n, din, dout, j0, j1); break;
    case WT_F16: mm_typed(out, in, w, WT_F16, bias, n, din, dout, j0, j1); break;
    case WT_BF16: mm_typed(out, in, w, WT_BF16, bias, n, din, dout, j0, j1); break;
    case WT_Q8: /* the model uses matmul_q8, and matmul_bf16 for BF16P */
    case WT_BF16P: gpt2_kernels_generic.matmul(out, in, w, bias, n, din, dout, j0, j1); break;
    }
}

/* ---------------------------------------------------------------- matmul_t */

/* Dot products of R input rows (a compile-time count, so the accumulators
 * live in registers) with one weight row at a time; each pair's sum is a
 * vector accumulator over k, one fixed reduction, then the scalar tail.
 * Weight rows are read one after the other, a single forward stream: four
 * rows read side by side (to share the input loads) streamed DRAM at 8 GB/s
 * in f16 and 13 in f32 on one thread, one row at a time at 20 and 16. Up
 * to MT input rows share each weight load (eight measured slower than four
 * for a batch of eight: 5.8 against 8.7 GB/s of the f32 head). */
#define MT 4
#define MT_BLOCK 32 /* weight rows per block, see mt_typed */
static inline __attribute__((always_inline)) void mt_rows(float *out, const float *in, gpt2_weight w, gpt2_wtype t,
                                                          const int R, int din, int dout, int v0, int v1,
                                                          size_t pf_lo, size_t pf_hi) {
    const int kv = din / VW * VW;
    const size_t row_bytes = (size_t)din * weight_type_size(t);
    for (int v = v0; v < v1; v++) {
        const size_t row = (size_t)v * din;
        /* Bytes [pf_lo, pf_hi) of the row one block ahead, past v1 up to
         * the matrix's end (see mt_typed). */
        if (v + MT_BLOCK < dout)
            for (size_t b = pf_lo; b < pf_hi; b += 64)
                __builtin_prefetch((const char *)w.data + (size_t)(v + MT_BLOCK) * row_bytes + b, 0, 1);
        VEC acc[MT][2]; /* even and odd vectors of k: two chains halve the FMA latency */
        UNROLL
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = VZERO();
        int k = 0;
        for (; k + 2 * VW <= kv; k += 2 * VW) {
            const VEC w0 = vloadw(w, row + k, t), w1 = vloadw(w, row + k + VW, t);
            UNROLL
            for (int r = 0; r < R; r++) {
                acc[r][0] = VFMA(VLOAD(in + (size_t)r * din + k), w0, acc[r][0]);
                acc[r][1] = VFMA(VLOAD(in + (size_t)r * din + k + VW), w1, acc[r][1]);
            }
        }
        if (k < kv) {
            const VEC w0 = vloadw(w, row + k, t);
            UNROLL
            for (int r = 0; r < R; r++) acc[r][0] = VFMA(VLOAD(in + (size_t)r * din + k), w0, acc[r][0]);
        }
        UNROLL
        for (int r = 0; r < R; r++) {
            float s = VREDUCE(VADD(acc[r][0], acc[r][1]));
            for (int k = kv; k < din; k++) s = fmaf(in[(size_t)r * din + k], loadw1(w, row + k, t), s);
            out[(size_t)r * dout + v] = s;
        }
    }
}

/* Weight rows per block: every group of input rows goes over one block
 * (32 x 768 f32 for gpt2: 96 KiB, in L2) before the next, so a batch reads
 * the head from memory once, not once per group of MT rows. Only the first
 * group's pass reads memory, though, and the stream stood idle during the
 * others: each group prefetches its share of every row of the next block
 * into the outer caches while it computes on this one (gpt2 batch 8,
 * per-op timers, 3 alternating runs: the f32 head 16-17 -> 23-24 GB/s, f16
 * 10-11 -> 12-16). A single group (decode) prefetches whole rows: gpt2's
 * head on two threads, 12 interleaved rounds, medians, f32 21.9 -> 27.5
 * GB/s, f16 29.8 -> 30.7, bf16 20.5 -> 33.3 (the read probe: 29, 35, 40).
 * The prefetch runs on past v1 to the matrix's end: the model deals the
 * head out in units of columns, and a thread's next unit is most often the
 * next one. */
static inline __attribute__((always_inline)) void mt_typed(float *out, const float *in, gpt2_weight w, gpt2_wtype t,
                                                           int n, int din, int dout, int v0, int v1) {
    const int groups = (n + MT - 1) / MT;
    const size_t row_bytes = (size_t)din * weight_type_size(t);
    const size_t share = (row_bytes / (size_t)groups + 63) / 64 * 64;
    for (int vb = v0; vb < v1; vb += MT_BLOCK) {
        int ve = vb + MT_BLOCK < v1 ? vb + MT_BLOCK : v1;
        for (int g = 0, i = 0; i < n; g++, i += MT) {
            float *o = out + (size_t)i * dout;
            const float *x = in + (size_t)i * din;
            size_t lo = (size_t)g * share, hi = lo + share < row_bytes ? lo + share : row_bytes;
            WITH_ROWS(n - i < MT ? n - i : MT, MT, mt_rows(o, x, w, t, R_, din, dout, vb, ve, lo, hi))
        }
    }
}

void FN(matmul_t)(float *out, const float *in, gpt2_weight w, int n, int din, int dout, int v0, int v1) {
    switch (w.type) {
    case WT_F32: mt_typed(out, in, w, WT_F32, n, din, dout, v0, v1); break;
    case WT_F16: mt_typed(out, in, w, WT_F16, n, din, dout, v0, v1); break;
    case WT_BF16: mt_typed(out, in, w, WT_BF16, n, din, dout, v0, v1); break;
    case WT_Q8: /* the model uses matmul_q8, and matmul_bf16 for BF16P */
    case WT_BF16P: gpt2_kernels_generic.matmul_t(out, in, w, n, din, dout, v0, v1); break;
    }
}

#endif /* BORROW */

/* --------------------------------------------------------------- matmul_q8 */

/* Input rows per tile of the Q8 product: a chunk of weights is widened to
 * 16 bits once for the tile's rows. */
#ifndef MRQ
#define MRQ 4
#endif
#define QV (GPT2_Q8_GROUP / VW) /* vectors in a group of columns */
#define Q8_CHAINS 4 /* interleaved sums a row and block: vpdpwssd's latency (integers: same bits) */
#define Q8_PREFETCH 8192        /* bytes ahead in the weight stream (matmul_q8) */

/* R rows (a compile-time count) x the group of columns at j, over all
 * blocks: for each block, the chunk widened once, then each row's exact
 * integer sums over its 16 k pairs and one fma per output with the block's
 * scales, as q8_dot_column; the outputs stay in registers from the first
 * block to the last. xb is row 0's inputs and xd its block scales; rows are
 * din and nb apart; pf_left is how many bytes of the matrix follow chunk. */
static inline __attribute__((always_inline)) void q8_tile(float *out, const int16_t *xb, const float *xd,
                                                          const int8_t *chunk, const uint16_t *sc, const int R,
                                                          int din, int dout, int j, ptrdiff_t pf_left) {
    const int nb = din / GPT2_Q8_BLOCK;
    VEC acc[MRQ][QV];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int c = 0; c < QV; c++) acc[r][c] = VLOAD(out + (size_t)r * dout + j + c * VW);
    for (int b = 0; b < nb; b++, chunk += GPT2_Q8_CHUNK, sc += GPT2_Q8_GROUP) {
        if (R > 1 && pf_left > Q8_PREFETCH) /* several rows: see matmul_q8 */
            for (int l = 0; l < GPT2_Q8_CHUNK; l += 64) __builtin_prefetch(chunk + Q8_PREFETCH + l, 0, 1);
        pf_left -= GPT2_Q8_CHUNK;
        WVEC wv[GPT2_Q8_BLOCK / 2][QV];
        UNROLL
        for (int p = 0; p < GPT2_Q8_BLOCK / 2; p++)
            UNROLL
            for (int c = 0; c < QV; c++) wv[p][c] = ILOAD_I8X2(chunk + p * 2 * GPT2_Q8_GROUP + c * 2 * VW);
        UNROLL
        for (int r = 0; r < R; r++) {
            IVEC isum[QV][Q8_CHAINS];
            UNROLL
            for (int c = 0; c < QV; c++)
                UNROLL
                for (int a = 0; a < Q8_CHAINS; a++) isum[c][a] = IZERO();
            UNROLL
            for (int p = 0; p < GPT2_Q8_BLOCK / 2; p++) {
                int32_t pair; /* xq[2p] in the low half, as the weights' k order */
                memcpy(&pair, xb + (size_t)r * din + b * GPT2_Q8_BLOCK + 2 * p, sizeof pair);
                const WVEC xp = ISET1(pair);
                UNROLL
                for (int c = 0; c < QV; c++) isum[c][p % Q8_CHAINS] = IDOT(isum[c][p % Q8_CHAINS], wv[p][c], xp);
            }
            UNROLL
            for (int c = 0; c < QV; c++)
                UNROLL
                for (int a = 1; a < Q8_CHAINS; a++) isum[c][0] = IADD(isum[c][0], isum[c][a]);
            const VEC dr = VSET1(xd[(size_t)r * nb + b]);
            UNROLL
            for (int c = 0; c < QV; c++) acc[r][c] = VFMA(ICVT(isum[c][0]), VMUL(VLOAD_F16(sc + c * VW), dr), acc[r][c]);
        }
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int c = 0; c < QV; c++) VSTORE(out + (size_t)r * dout + j + c * VW, acc[r][c]);
}

/* Group by group of columns, each over tiles of rows: a group's chunks are
 * one contiguous run, read from memory once and from L1/L2 for the next
 * tile of rows; a thread's range of columns is one stream. Several rows do
 * enough integer work per chunk that too few loads are in flight for the
 * hardware prefetcher, so their tiles prefetch the stream Q8_PREFETCH bytes
 * ahead (gpt2 batch 8, 3 alternating runs: 532-569 -> 803-825 tokens/s with
 * 4-16 KiB, all alike; one row measured no better with it). */
void FN(matmul_q8)(float *out, const int16_t *xq, const float *xd, gpt2_weight w, const float *bias, int n,
                   int din, int dout, int j0, int j1) {
    const int jg = j0 + (j1 - j0) / GPT2_Q8_GROUP * GPT2_Q8_GROUP; /* [j0, jg) in whole groups */
    const int nb = din / GPT2_Q8_BLOCK;
    for (int i = 0; i < n; i++)
        for (int j = j0; j < jg; j++) out[(size_t)i * dout + j] = bias ? bias[j] : 0.0f;
    for (int j = j0; j < jg; j += GPT2_Q8_GROUP) {
        const int8_t *chunk = (const int8_t *)w.data + q8_index(0, (size_t)j, (size_t)din);
        const uint16_t *sc = w.scales + q8_scale_index(0, (size_t)j, (size_t)din);
        const ptrdiff_t left = (ptrdiff_t)(q8_padded((size_t)dout) / GPT2_Q8_GROUP * (size_t)nb * GPT2_Q8_CHUNK) -
                               (chunk - (const int8_t *)w.data);
        for (int i = 0; i < n; i += MRQ) {
            float *o = out + (size_t)i * dout;
            const int16_t *xb = xq + (size_t)i * din;
            const float *d = xd + (size_t)i * nb;
            WITH_ROWS(n - i < MRQ ? n - i : MRQ, MRQ, q8_tile(o, xb, d, chunk, sc, R_, din, dout, j, left))
        }
    }
    /* A last group cut short by dout: the reference's scalar form of the same sums. */
    if (jg < j1) gpt2_kernels_generic.matmul_q8(out, xq, xd, w, bias, n, din, dout, jg, j1);
}

#ifndef BORROW
/* --------------------------------------------------------------- elementwise */

/* exp(x) for a vector: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by its Taylor
 * polynomial to degree 7 (relative error below 2e-7), times 2^n. */
static inline VEC vexp(VEC x) {
    x = VMIN(VMAX(x, VSET1(-87.3f)), VSET1(88.3f));
    VEC n = VROUND(VMUL(x, VSET1(1.44269504088896341f)));
    VEC r = VFMA(n, VSET1(-0.693145751953125f), x); /* ln2 in two parts keeps r exact */
    r = VFMA(n, VSET1(-1.428606765330187e-06f), r);
    VEC p = VSET1(1.0f / 5040);
    p = VFMA(p, r, VSET1(1.0f / 720));
    p = VFMA(p, r, VSET1(1.0f / 120));
    p = VFMA(p, r, VSET1(1.0f / 24));
    p = VFMA(p, r, VSET1(1.0f / 6));
    p = VFMA(p, r, VSET1(0.5f));
    p = VFMA(p, r, VSET1(1.0f));
    p = VFMA(p, r, VSET1(1.0f));
    return VSCALE2(p, n);
}

void FN(activation)(float *x, size_t n, gpt2_act act) {
    if (act != ACT_GELU_TANH) { /* the rare ones: the reference is fast enough */
        gpt2_kernels_generic.activation(x, n, act);
        return;
    }
    const VEC c = VSET1(0.7978845608028654f), a = VSET1(0.044715f), half = VSET1(0.5f), one = VSET1(1.0f),
              m2 = VSET1(-2.0f);
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        VEC v = VLOAD(x + i);
        VEC y = VMUL(c, VFMA(VMUL(a, VMUL(v, v)), v, v)); /* c (v + a v^3) */
        /* tanh(y) = sign(y) (1 - e) / (1 + e), e = exp(-2 |y|): no overflow. */
        VEC e = vexp(VMUL(m2, VABS(y)));
        VEC th = VDIV(VSUB(one, e), VADD(one, e));
        th = VCOPYSIGN(th, y);
        VSTORE(x + i, VMUL(VMUL(half, v), VADD(one, th)));
    }
    if (i < n) gpt2_kernels_generic.activation(x + i, n - i, act);
}

/* GELU's derivative on the tanh curve: 0.5 (1 + t) + 0.5 x (1 - t^2) c
 * (1 + 3 a x^2), t = tanh(c (x + a x^3)) from vexp as the forward's. */
void FN(activation_dx)(float *dx, const float *dy, const float *x, size_t n, gpt2_act act) {
    if (act != ACT_GELU_TANH) {
        gpt2_kernels_generic.activation_dx(dx, dy, x, n, act);
        return;
    }
    const VEC c = VSET1(0.7978845608028654f), a = VSET1(0.044715f), a3 = VSET1(3.0f * 0.044715f),
              half = VSET1(0.5f), one = VSET1(1.0f), m2 = VSET1(-2.0f);
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        const VEC v = VLOAD(x + i), v2 = VMUL(v, v);
        const VEC y = VMUL(c, VFMA(VMUL(a, v2), v, v));
        const VEC e = vexp(VMUL(m2, VABS(y)));
        const VEC th = VCOPYSIGN(VDIV(VSUB(one, e), VADD(one, e)), y);
        const VEC inner = VMUL(VMUL(c, VFMA(a3, v2, one)), VMUL(VMUL(half, v), VSUB(one, VMUL(th, th))));
        VSTORE(dx + i, VMUL(VLOAD(dy + i), VFMA(half, VADD(one, th), inner)));
    }
    if (i < n) gpt2_kernels_generic.activation_dx(dx + i, dy + i, x + i, n - i, act);
}

void FN(adamw)(float *p, float *g, float *m, float *v, size_t n, const gpt2_adamw_args *a) {
    const VEC clip = VSET1(a->clip), decay = VSET1(a->decay), b1 = VSET1(a->beta1), b2 = VSET1(a->beta2),
              c1 = VSET1(1.0f - a->beta1), c2 = VSET1(1.0f - a->beta2), step = VSET1(a->step_size),
              bc2 = VSET1(a->bc2_sqrt), eps = VSET1(a->eps);
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        const VEC gi = VMUL(VLOAD(g + i), clip);
        VSTORE(g + i, gi);
        const VEC mi = VADD(VMUL(VLOAD(m + i), b1), VMUL(gi, c1));
        const VEC vi = VADD(VMUL(VLOAD(v + i), b2), VMUL(VMUL(gi, gi), c2));
        VSTORE(m + i, mi);
        VSTORE(v + i, vi);
        const VEC denom = VADD(VDIV(VSQRT(vi), bc2), eps);
        VSTORE(p + i, VSUB(VMUL(VLOAD(p + i), decay), VMUL(step, VDIV(mi, denom))));
    }
    if (i < n) gpt2_kernels_generic.adamw(p + i, g + i, m + i, v + i, n - i, a);
}

void FN(layernorm)(float *out, const float *in, const float *g, const float *b, int n, int d, float eps) {
    const int dv = d / VW * VW;
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * d;
        float *o = out + (size_t)i * d;
        VEC s = VZERO();
        for (int k = 0; k < dv; k += VW) s = VADD(s, VLOAD(x + k));
        float sum = VREDUCE(s);
        for (int k = dv; k < d; k++) sum += x[k];
        const float mean = sum / d;
        const VEC m = VSET1(mean);
        VEC q = VZERO();
        for (int k = 0; k < dv; k += VW) {
            VEC t = VSUB(VLOAD(x + k), m);
            q = VFMA(t, t, q);
        }
        float var = VREDUCE(q);
        for (int k = dv; k < d; k++) var += (x[k] - mean) * (x[k] - mean);
        const float rstd = 1.0f / sqrtf(var / d + eps);
        const VEC rs = VSET1(rstd);
        for (int k = 0; k < dv; k += VW)
            VSTORE(o + k, VFMA(VMUL(VSUB(VLOAD(x + k), m), rs), VLOAD(g + k), VLOAD(b + k)));
        for (int k = dv; k < d; k++) o[k] = (x[k] - mean) * rstd * g[k] + b[k];
    }
}

#include "simd_attention.h"

/* ------------------------------------------------------------------- probes */

float FN(read_probe)(const void *p, size_t n) {
    const float *f = p;
    size_t m = n / sizeof(float) / (4 * VW) * (4 * VW);
    VEC a = VZERO(), b = VZERO(), c = VZERO(), d = VZERO();
    for (size_t i = 0; i < m; i += 4 * VW) {
        a = VADD(a, VLOAD(f + i));
        b = VADD(b, VLOAD(f + i + VW));
        c = VADD(c, VLOAD(f + i + 2 * VW));
        d = VADD(d, VLOAD(f + i + 3 * VW));
    }
    return VREDUCE(VADD(VADD(a, b), VADD(c, d)));
}

/* Ten independent FMA chains: enough to cover the latency of two FMA pipes. */
double FN(fma_probe)(long iters) {
    VEC acc[10];
    const VEC m = VSET1(0.999999f), e = VSET1(1e-6f);
    UNROLL
    for (int i = 0; i < 10; i++) acc[i] = VSET1((float)i);
    for (long it = 0; it < iters; it++) {
        UNROLL
        for (int i = 0; i < 10; i++) acc[i] = VFMA(acc[i], m, e);
    }
    VEC s = acc[0];
    UNROLL
    for (int i = 1; i < 10; i++) s = VADD(s, acc[i]);
    volatile float sink = VREDUCE(s);
    (void)sink;
    return 2.0 * 10 * VW * (double)iters;
}

#define BORROW(name) FN(name)
#else
gpt2_matmul_fn BORROW(matmul);
gpt2_matmul_part_fn BORROW(matmul_part);
gpt2_matmul_t_fn BORROW(matmul_t);
gpt2_activation_fn BORROW(activation);
gpt2_activation_dx_fn BORROW(activation_dx);
gpt2_adamw_fn BORROW(adamw);
gpt2_layernorm_fn BORROW(layernorm);
gpt2_attention_fn BORROW(attention);
gpt2_read_probe_fn BORROW(read_probe);
gpt2_fma_probe_fn BORROW(fma_probe);
#endif /* BORROW */

const gpt2_kernels FN(gpt2_kernels) = {
    .name = KERNELS_NAME,
    .matmul = BORROW(matmul),
    .matmul_part = BORROW(matmul_part),
    .matmul_t = BORROW(matmul_t),
    .matmul_q8 = FN(matmul_q8),
    .layernorm = BORROW(layernorm),
    .activation = BORROW(activation),
    .activation_dx = BORROW(activation_dx),
    .adamw = BORROW(adamw),
    .attention = BORROW(attention),
    .read_probe = BORROW(read_probe),
    .fma_probe = BORROW(fma_probe),
};
