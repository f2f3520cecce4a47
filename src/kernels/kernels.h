/* kernels.h -- the numeric kernels the model is written against. One table
 * per instruction set; the model calls through the table chosen at load, so
 * faster kernels slot in without touching the forward pass. The generic
 * table is plain C and is the oracle every other table is tested against.
 *
 * Contracts every implementation keeps:
 *  - Each output row depends only on its own input row, computed the same
 *    way whatever n is, and each output element the same way whatever the
 *    range [j0, j1) around it: a token's result is bit for bit the same with
 *    and without the KV cache, in any batch and with any thread count.
 *  - A matrix product sums over k in fixed blocks of GPT2_KBLOCK rows: each
 *    block's partial sum starts from zero, and the partials are added to the
 *    bias in block order. Decode splits the blocks over threads (each thread
 *    streams contiguous rows), prefill tiles rows; both give the same bits.
 *  - Matrices keep the checkpoint's storage (F32, F16 or BF16) and are
 *    widened to f32 as they are read; all arithmetic is f32, but for the
 *    opt-in BF16P product (--compute bf16), whose operands are bf16.
 *  - Q8 matrices go through matmul_q8 alone, whose integer sums are exact,
 *    so every table gives the same bits (q8_dot_column). */
#ifndef GPT2C_KERNELS_H
#define GPT2C_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/half.h"

typedef enum gpt2_act { ACT_GELU_TANH, ACT_GELU_ERF, ACT_RELU } gpt2_act;

typedef enum gpt2_wtype { WT_F32, WT_F16, WT_BF16, WT_Q8, WT_BF16P } gpt2_wtype;

/* Q8, the 8-bit format, is built for integer dot products. It holds the
 * product matrix W (din, dout) -- k the input index, j the output -- as
 * int8 q with one f16 scale per block of GPT2_Q8_BLOCK consecutive k of a
 * column (its absmax / 127): W[k, j] = q[k, j] * scale[k / 32, j], the common
 * 8-bit scheme with blocks along the input, as llama.cpp's Q8_0. For a
 * Conv1D weight W is the stored matrix; for the LM head (and wte, tied to
 * it) W is the transpose of the (V, C) embedding. din is a whole number of
 * blocks, and columns are padded with zeros to a multiple of GPT2_Q8_GROUP.
 * Values are packed so that one block of one group of 16 columns is a
 * contiguous 512-byte chunk, and inside a chunk k pairs, then columns, then
 * the two k of a pair: the layout a 16-bit pairwise multiply-add (pmaddwd,
 * vmull) reads directly. Chunks go group by group, each group's blocks in k
 * order, so that the columns a thread computes are one contiguous run of
 * memory (two threads on column halves of block-major chunks measured 22
 * GB/s, on contiguous runs 26-30). Scales likewise: group, block, column. */
#define GPT2_Q8_BLOCK 32
#define GPT2_Q8_GROUP 16
#define GPT2_Q8_CHUNK (GPT2_Q8_BLOCK * GPT2_Q8_GROUP)

/* BF16P, the form of --compute bf16 (gpt2c_model_params.compute): the
 * product matrix W (din, dout), din even, as bf16 with each k pair of a
 * column in one 32-bit word -- W[k, j] in the low half, W[k + 1, j] in the
 * high half -- the operand vdpbf16ps multiplies pairwise with a pair of the
 * input row's values, rounded to bf16 (x_bf16_pairs). The words go in
 * groups of GPT2_BF16P_GROUP columns, each group's pairs in order, 16 words
 * a pair: a group is one contiguous run of memory, which decode streams
 * and prefill's tiles read without copying (the layout Q8 has for the same
 * reason); columns are padded with zeros to a whole group. One output is a
 * single chain from the bias over the pairs in order (bf16_dot_pair): no k
 * blocks, so the product of one row and of many, split over columns any
 * way, give the same bits. */
#define GPT2_BF16P_GROUP 16
static inline size_t bf16p_padded(size_t dout) { return (dout + GPT2_BF16P_GROUP - 1) / GPT2_BF16P_GROUP * GPT2_BF16P_GROUP; }
/* The word of pair p (k = 2p and 2p + 1) of column j, in a matrix of din / 2 pairs. */
static inline size_t bf16p_word(size_t p, size_t j, size_t pairs) {
    return j / GPT2_BF16P_GROUP * (pairs * GPT2_BF16P_GROUP) + p * GPT2_BF16P_GROUP + j % GPT2_BF16P_GROUP;
}
/* The bf16 element of W[k, j]. */
static inline size_t bf16p_index(size_t k, size_t j, size_t din) { return 2 * bf16p_word(k / 2, j, din / 2) + k % 2; }

/* One step of the chain, as vdpbf16ps computes a lane (Intel's definition,
 * which this AMD CPU matched on 2 million random pairs): the products of
 * two bf16 are exact in f32, and are added to acc high pair first, each
 * sum rounded to nearest even; denormal inputs and results are zeros (DAZ,
 * FTZ). x and w: a pair, the low 16 bits the even k. */
static inline float bf16_flush(float v) { return fabsf(v) < 1.17549435e-38f ? copysignf(0.0f, v) : v; }
static inline float bf16_dot_pair(float acc, uint32_t x, uint32_t w) {
    const float x0 = bf16_flush(bf16_to_f32((uint16_t)x)), x1 = bf16_flush(bf16_to_f32((uint16_t)(x >> 16)));
    const float w0 = bf16_flush(bf16_to_f32((uint16_t)w)), w1 = bf16_flush(bf16_to_f32((uint16_t)(w >> 16)));
    /* Separate statements: -std=c11 (gcc) and clang's default contract
     * only within an expression, and a fused multiply-add would keep a
     * product the instruction flushes. */
    const float p1 = x1 * w1, p0 = x0 * w0;
    acc = bf16_flush(bf16_flush(acc) + bf16_flush(p1));
    return bf16_flush(acc + bf16_flush(p0));
}

/* The input rows of a BF16P product: each value rounded to bf16 (nearest
 * even), so that row i's k pair p is the 32-bit word xb[i * din / 2 + p]. */
void x_bf16_pairs(uint32_t *xb, const float *x, size_t count);

/* The KV cache keeps each head's positions in runs of this many, hd
 * elements each (see gpt2_state): long enough that attention streams them
 * (runs of 64 positions read at 24-28 GB/s, of 256 at 32-34, as fast as one
 * run per head), short enough that a sequence's first positions do not
 * touch its whole slot. */
#define GPT2_KV_BLOCK 256
static inline size_t kv_offset(int t, int hd, size_t stride) {
    return (size_t)(t / GPT2_KV_BLOCK) * stride + (size_t)(t % GPT2_KV_BLOCK) * (size_t)hd;
}

/* The first position a query at position T - 1 attends to (gpt2_attention_fn). */
static inline int attn_first(int T, int window) { return window > 0 && T > window ? T - window : 0; }

static inline size_t q8_padded(size_t dout) { return (dout + GPT2_Q8_GROUP - 1) / GPT2_Q8_GROUP * GPT2_Q8_GROUP; }

/* The byte of q[k, j], and the scale of its block, in a Q8 matrix of din
 * inputs. */
static inline size_t q8_index(size_t k, size_t j, size_t din) {
    size_t chunk = j / GPT2_Q8_GROUP * (din / GPT2_Q8_BLOCK) + k / GPT2_Q8_BLOCK;
    return chunk * GPT2_Q8_CHUNK + k % GPT2_Q8_BLOCK / 2 * (2 * GPT2_Q8_GROUP) + j % GPT2_Q8_GROUP * 2 + k % 2;
}
static inline size_t q8_scale_index(size_t k, size_t j, size_t din) {
    return (j / GPT2_Q8_GROUP * (din / GPT2_Q8_BLOCK) + k / GPT2_Q8_BLOCK) * GPT2_Q8_GROUP + j % GPT2_Q8_GROUP;
}

/* A matrix in its stored element type; rows are contiguous (Q8: above). */
typedef struct gpt2_weight {
    const void *data;
    gpt2_wtype type;
    const uint16_t *scales; /* Q8 only */
    int rows, cols;         /* Q8 and BF16P only: din and dout of W */
    int linear;             /* stored (dout, din), an nn.Linear weight: the model's products use matmul_t */
} gpt2_weight;

/* Q8 and BF16P hold the product matrix W (din, dout), whatever the stored
 * orientation, and are multiplied by their own products (matmul_q8,
 * matmul_bf16). */
static inline int weight_holds_w(gpt2_weight w) { return w.type == WT_Q8 || w.type == WT_BF16P; }

/* Widens n elements starting at element `at` of w into out; for Q8 and
 * BF16P, `at` counts in W's row-major order (k * dout + j). */
void weight_to_f32(gpt2_weight w, size_t at, size_t n, float *out);
size_t weight_type_size(gpt2_wtype t);

/* The input rows of a Q8 product, quantised in blocks of GPT2_Q8_BLOCK:
 * d = absmax / 32767 and xq = round-half-even(x * (32767 / absmax)), so that
 * x ~ xq * d within about half a unit in 32767ths of the block's largest
 * value (a block with a NaN or an infinity gets d = NaN, which the product
 * passes on; one whose largest value is below 1e-30 is zeros). xq (n, din),
 * xd (n, din / 32). The same scalar code serves every instruction set, so
 * every table sees the same integers. */
void q8_quantize(int16_t *xq, float *xd, const float *x, int n, int din);

/* One output of the Q8 product: from `init`, for each block b in order,
 * out = fmaf(isum_b, scale[b, j] * xd[b], out), isum_b the exact integer dot
 * product of the block's xq and q. Every table computes exactly this. */
static inline float q8_dot_column(const int16_t *xq, const float *xd, gpt2_weight w, int din, int j, float init) {
    const int8_t *q = (const int8_t *)w.data;
    float acc = init;
    for (int b = 0; b < din / GPT2_Q8_BLOCK; b++) {
        int32_t isum = 0;
        for (int k = b * GPT2_Q8_BLOCK; k < (b + 1) * GPT2_Q8_BLOCK; k++)
            isum += (int32_t)xq[k] * q[q8_index((size_t)k, (size_t)j, (size_t)din)];
        const size_t s = q8_scale_index((size_t)b * GPT2_Q8_BLOCK, (size_t)j, (size_t)din);
        acc = fmaf((float)isum, f16_to_f32(w.scales[s]) * xd[b], acc);
    }
    return acc;
}

#define GPT2_KBLOCK 64

/* The kernels a table holds, as function types, so that a table may take
 * some entries from another (avx512vnni.c: all but the Q8 product). */

/* out[i, j] = bias[j] + sum_k in[i, k] * w[k, j] for i < n and j in
 * [j0, j1): in (n, din), w (din, dout) -- GPT-2's Conv1D layout -- and
 * out (n, dout). bias may be NULL. */
typedef void gpt2_matmul_fn(float *out, const float *in, gpt2_weight w, const float *bias, int n, int din, int dout,
                            int j0, int j1);
/* The partial sums of n input rows over k blocks [b0, b1):
 * part[b, i, j] = sum over k in block b of x[i, k] * w[k, j], for all
 * j; x is (n, din) and part (din / GPT2_KBLOCK rounded up, n, dout).
 * Decode and batched decode: the weights stream once for all n rows. */
typedef void gpt2_matmul_part_fn(float *part, const float *x, gpt2_weight w, int n, int din, int dout, int b0,
                                 int b1);
/* out[i, v] = sum_k in[i, k] * w[v, k] for v in [v0, v1): w (dout, din),
 * the LM head and nn.Linear weights (GPT-Neo, OPT, GPT-NeoX) as stored.
 * Each dot product is summed in one fixed order, whatever n and the range. */
typedef void gpt2_matmul_t_fn(float *out, const float *in, gpt2_weight w, int n, int din, int dout, int v0, int v1);
/* The Q8 product of q8_quantize's rows: out[i, j] = q8_dot_column(row i,
 * j, bias[j] or 0) for i < n and j in [j0, j1), j0 a multiple of
 * GPT2_Q8_GROUP and j1 too or dout. matmul, matmul_part and matmul_t
 * take the other types. */
typedef void gpt2_matmul_q8_fn(float *out, const int16_t *xq, const float *xd, gpt2_weight w, const float *bias, int n,
                               int din, int dout, int j0, int j1);
/* The BF16P product of x_bf16_pairs' rows: out[i, j] = the chain of
 * bf16_dot_pair over row i's pairs and column j's, from bias[j] or 0, for
 * i < n and j in [j0, j1), j0 a multiple of GPT2_BF16P_GROUP and j1 too or
 * dout. Only tables whose CPU has the instruction hold one, and the generic
 * table, as the oracle. */
typedef void gpt2_matmul_bf16_fn(float *out, const uint32_t *xb, gpt2_weight w, const float *bias, int n, int din,
                                 int dout, int j0, int j1);
/* out (n, d) = (in - mean) / sqrt(var + eps) * g + b, per row. */
typedef void gpt2_layernorm_fn(float *out, const float *in, const float *g, const float *b, int n, int d, float eps);
typedef void gpt2_activation_fn(float *x, size_t n, gpt2_act act);
/* Training's elementwise steps. activation_dx: dx = dy * act'(x) over n
 * values (written). adamw: torch.optim.AdamW's single-tensor update of n
 * parameters p with gradients g (scaled by clip first, and stored so), the
 * moments m and v, in its order of roundings, no operation fused:
 *   p *= decay;  m = m b1 + g (1 - b1);  v = v b2 + (g g) (1 - b2);
 *   p -= step_size (m / (sqrt(v) / bc2_sqrt + eps))
 * (decay 1 - lr wd, or 1), so that every table gives the same bits. */
typedef void gpt2_activation_dx_fn(float *dx, const float *dy, const float *x, size_t n, gpt2_act act);
typedef struct gpt2_adamw_args {
    float clip, decay, beta1, beta2, step_size, bc2_sqrt, eps;
} gpt2_adamw_args;
typedef void gpt2_adamw_fn(float *p, float *g, float *m, float *v, size_t n, const gpt2_adamw_args *a);
/* Which positions a group of queries attends to and how its scores are
 * made (gpt2_attention_fn): query i sees positions lo_i <= t < T + i * step
 * -- step 1 for a run of one sequence's tokens at consecutive positions,
 * step 0 for several heads of one token that share a key/value head
 * (multi-query attention reads the keys once for all of them); lo_i =
 * T + i * step - window when window > 0 and that is positive (GPT-Neo's
 * local layers see the last `window` positions), 0 otherwise. The score of
 * position t is q . k_t / scale_div + slope * t (slope: BLOOM's ALiBi bias,
 * 0 elsewhere, which adds nothing). */
typedef struct gpt2_attn_args {
    int T, step, window, hd;
    size_t stride; /* elements between runs of GPT2_KV_BLOCK positions */
    float scale_div, slope;
} gpt2_attn_args;

/* nq queries of one head size: query i (hd floats at q + i * qstride)
 * gets out + i * ostride (hd) = softmax(scores) @ v over its positions
 * (gpt2_attn_args), where k_t starts at element kv_offset(t, hd, stride)
 * of k, and likewise v: runs of GPT2_KV_BLOCK positions, stride elements
 * apart. k and v are the KV cache, F32 or F16. A query's output is the
 * same bits whatever nq: a prompt's tokens attend together, reading each
 * key once for several, decode's one by one. scores holds nq * (T + (nq -
 * 1) * step) floats of scratch. */
typedef void gpt2_attention_fn(float *out, size_t ostride, const float *q, size_t qstride, int nq, gpt2_weight k,
                               gpt2_weight v, const gpt2_attn_args *a, float *scores);
/* Probes of the hardware limits the benchmark reports against: reads n
 * bytes at p as fast as this ISA can (the result depends on every byte),
 * and runs iters rounds of independent f32 FMAs, returning the flops. */
typedef float gpt2_read_probe_fn(const void *p, size_t n);
typedef double gpt2_fma_probe_fn(long iters);

typedef struct gpt2_kernels {
    const char *name;
    gpt2_matmul_fn *matmul;
    gpt2_matmul_part_fn *matmul_part;
    gpt2_matmul_t_fn *matmul_t;
    gpt2_matmul_q8_fn *matmul_q8;
    gpt2_matmul_bf16_fn *matmul_bf16; /* NULL where the CPU lacks AVX512_BF16 */
    gpt2_layernorm_fn *layernorm;
    gpt2_activation_fn *activation;
    gpt2_activation_dx_fn *activation_dx;
    gpt2_adamw_fn *adamw;
    gpt2_attention_fn *attention;
    gpt2_read_probe_fn *read_probe;
    gpt2_fma_probe_fn *fma_probe;
} gpt2_kernels;

extern const gpt2_kernels gpt2_kernels_generic;
extern const gpt2_kernels gpt2_kernels_avx2;   /* AVX2 + FMA + F16C */
extern const gpt2_kernels gpt2_kernels_avx512; /* AVX-512 F/BW/VL */
extern const gpt2_kernels gpt2_kernels_avx512vnni; /* and AVX512_VNNI */
extern const gpt2_kernels gpt2_kernels_avx512bf16; /* and AVX512_BF16: matmul_bf16 */
extern const gpt2_kernels gpt2_kernels_neon;   /* AArch64 Advanced SIMD */

/* The best table this CPU supports (CPUID and XGETBV, read each call; no
 * state is kept). GPT2C_KERNELS=generic|avx2|avx512|avx512vnni|avx512bf16|neon forces a level, never
 * above what the CPU has. */
const gpt2_kernels *gpt2_kernels_select(void);
/* Every table this CPU can run, best last, for tests; returns the count. */
int gpt2_kernels_available(const gpt2_kernels **out, int max);

#endif
