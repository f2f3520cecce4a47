/* kernels.h -- the numeric kernels the model is written against. One table
 * per instruction set; the model calls through the table chosen at load, so
 * faster kernels slot in without touching the forward pass. The generic
 * table is plain C and is the oracle every other table is tested against.
 *
 * Contract every implementation keeps: each output row depends only on its
 * own input row, never on how many rows are computed together, so a token's
 * result is the same with and without the KV cache and in any batch. */
#ifndef GPT2C_KERNELS_H
#define GPT2C_KERNELS_H

#include <stddef.h>

typedef enum gpt2_act { ACT_GELU_TANH, ACT_GELU_ERF, ACT_RELU } gpt2_act;

typedef struct gpt2_kernels {
    const char *name;
    /* out (n, dout) = in (n, din) @ w (din, dout) + bias (dout); bias may be
     * NULL. GPT-2's Conv1D stores weights [in, out], as here. */
    void (*matmul)(float *out, const float *in, const float *w, const float *bias, int n, int din, int dout);
    /* out (n, dout) = in (n, din) @ w (dout, din)^T: the tied LM head. */
    void (*matmul_t)(float *out, const float *in, const float *w, int n, int din, int dout);
    /* out (n, d) = (in - mean) / sqrt(var + eps) * g + b, per row. */
    void (*layernorm)(float *out, const float *in, const float *g, const float *b, int n, int d, float eps);
    void (*activation)(float *x, size_t n, gpt2_act act);
    /* One head of one query token: out (hd) = softmax(q . k_t * scale) @ v
     * over t < T, where k_t = k + t * stride and likewise v. scores holds T
     * floats of scratch. */
    void (*attention)(float *out, const float *q, const float *k, const float *v, int T, int hd,
                      size_t stride, float scale_div, float *scores);
} gpt2_kernels;

extern const gpt2_kernels gpt2_kernels_generic;

/* The best table this CPU supports. GPT2C_KERNELS=generic forces the plain
 * C one. A pure function of the CPU and the environment: no state kept. */
const gpt2_kernels *gpt2_kernels_select(void);

#endif
