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
 *    widened to f32 as they are read; all arithmetic is f32. */
#ifndef GPT2C_KERNELS_H
#define GPT2C_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef enum gpt2_act { ACT_GELU_TANH, ACT_GELU_ERF, ACT_RELU } gpt2_act;

typedef enum gpt2_wtype { WT_F32, WT_F16, WT_BF16, WT_Q8 } gpt2_wtype;

/* Q8: int8 values in blocks of GPT2_Q8_BLOCK consecutive elements, each
 * block with an f16 scale (its absmax / 127): value = q * scale. Rows are a
 * whole number of blocks. */
#define GPT2_Q8_BLOCK 32

/* A matrix in its stored element type; rows are contiguous. */
typedef struct gpt2_weight {
    const void *data;
    gpt2_wtype type;
    const uint16_t *scales; /* Q8 only: one f16 per block */
} gpt2_weight;

/* Widens n elements starting at element `at` of w into out. */
void weight_to_f32(gpt2_weight w, size_t at, size_t n, float *out);
size_t weight_type_size(gpt2_wtype t);

#define GPT2_KBLOCK 64

typedef struct gpt2_kernels {
    const char *name;
    /* out[i, j] = bias[j] + sum_k in[i, k] * w[k, j] for i < n and j in
     * [j0, j1): in (n, din), w (din, dout) -- GPT-2's Conv1D layout -- and
     * out (n, dout). bias may be NULL. */
    void (*matmul)(float *out, const float *in, gpt2_weight w, const float *bias, int n, int din, int dout, int j0,
                   int j1);
    /* The partial sums of one input row over k blocks [b0, b1):
     * part[b, j] = sum over k in block b of x[k] * w[k, j], for all j;
     * part is (din / GPT2_KBLOCK rounded up, dout). */
    void (*matmul_part)(float *part, const float *x, gpt2_weight w, int din, int dout, int b0, int b1);
    /* out[i, v] = sum_k in[i, k] * w[v, k] for v in [v0, v1): w (dout, din),
     * the tied LM head. */
    void (*matmul_t)(float *out, const float *in, gpt2_weight w, int n, int din, int dout, int v0, int v1);
    /* out (n, d) = (in - mean) / sqrt(var + eps) * g + b, per row. */
    void (*layernorm)(float *out, const float *in, const float *g, const float *b, int n, int d, float eps);
    void (*activation)(float *x, size_t n, gpt2_act act);
    /* One head of one query token: out (hd) = softmax(q . k_t / scale_div)
     * @ v over t < T, where k_t starts at element t * stride of k, and
     * likewise v. k and v are the KV cache, F32 or F16. scores holds T
     * floats of scratch. */
    void (*attention)(float *out, const float *q, gpt2_weight k, gpt2_weight v, int T, int hd, size_t stride,
                      float scale_div, float *scores);
    /* Probes of the hardware limits the benchmark reports against: reads n
     * bytes at p as fast as this ISA can (the result depends on every byte),
     * and runs iters rounds of independent f32 FMAs, returning the flops. */
    float (*read_probe)(const void *p, size_t n);
    double (*fma_probe)(long iters);
} gpt2_kernels;

extern const gpt2_kernels gpt2_kernels_generic;
extern const gpt2_kernels gpt2_kernels_avx2;   /* AVX2 + FMA + F16C */
extern const gpt2_kernels gpt2_kernels_avx512; /* AVX-512 F/BW/VL */
extern const gpt2_kernels gpt2_kernels_neon;   /* AArch64 Advanced SIMD */

/* The best table this CPU supports (CPUID and XGETBV, read each call; no
 * state is kept). GPT2C_KERNELS=generic|avx2|avx512|neon forces a level, never
 * above what the CPU has. */
const gpt2_kernels *gpt2_kernels_select(void);
/* Every table this CPU can run, best last, for tests; returns the count. */
int gpt2_kernels_available(const gpt2_kernels **out, int max);

#endif
