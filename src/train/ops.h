/* ops.h -- the operations a training pass is written with, forward and
 * backward, over n = B x T rows. Products run on the kernel table the model
 * chose (kernels.h), split over the pool's threads; the rest is plain C
 * split by rows or heads. Each product has a plain-C reference (ref_*)
 * that tests hold the fast one to. No two threads write one value, so
 * results do not depend on the thread count. */
#ifndef GPT2C_TRAIN_OPS_H
#define GPT2C_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/pool.h"
#include "../kernels/kernels.h"

/* A product's matrix as stored: GPT-2's Conv1D (din, dout), or an
 * nn.Linear weight and the LM head, (dout, din); F32 unless type says
 * otherwise (a frozen F16 or BF16 matrix under LoRA: products and d input
 * only). */
typedef struct op_mat {
    const void *w;
    int linear;
    gpt2_wtype type;
} op_mat;

/* Dropout as torch's training mode applies it: each value kept with
 * probability 1 - p and then scaled by 1 / (1 - p), else zeroed. The masks
 * are not stored: value i of a site's tensor is kept when
 *   mix(key + (i + 1) * 0x9E3779B97F4A7C15) >> 40  >=  p * 2^24
 * with mix SplitMix64's finaliser and key = op_dropout_key(seed, counter,
 * site), so backward regenerates them, a resumed run draws the same ones,
 * and another program can reproduce them (tests/test_train.py does, in
 * numpy). p 0: off. */
typedef struct op_dropout {
    float p;
    uint64_t key;
} op_dropout;
uint64_t op_dropout_mix(uint64_t z);
/* The key of a site (a tensor the pass drops values of) in micro-batch
 * `counter` of a run seeded with `seed`. */
static inline uint64_t op_dropout_key(uint64_t seed, uint64_t counter, uint64_t site) {
    return op_dropout_mix(op_dropout_mix(seed * 0x9E3779B97F4A7C15ull + counter) + site * 0xD1B54A32D192ED03ull);
}
/* What value i is multiplied by: 0 or 1 / (1 - p). */
static inline float op_dropout_scale(op_dropout d, uint64_t i) {
    const uint64_t u = op_dropout_mix(d.key + (i + 1) * 0x9E3779B97F4A7C15ull) >> 40;
    return (double)u >= (double)d.p * 16777216.0 ? 1.0f / (1.0f - d.p) : 0.0f;
}
/* x (count,) *= the mask: forward on a value, and backward on its
 * gradient alike. */
void op_dropout_apply(gpt2_pool *p, float *x, size_t count, op_dropout d);

/* y (n, dout) = x (n, din) A + bias (bias may be NULL). */
void op_matmul(gpt2_pool *p, const gpt2_kernels *k, float *y, const float *x, op_mat a, const float *bias, int n,
               int din, int dout);
/* dx (n, din) = dy (n, dout) A^T, written (not added). */
void op_matmul_dx(gpt2_pool *p, const gpt2_kernels *k, float *dx, const float *dy, op_mat a, int n, int din,
                  int dout);
/* dA += x^T dy in A's storage (f32), and dbias (dout,) += the column sums
 * of dy; either may be NULL (frozen). scratch: op_matmul_dw_scratch
 * floats. */
void op_matmul_dw(gpt2_pool *p, const gpt2_kernels *k, float *dA, float *dbias, const float *x, const float *dy,
                  int linear, int n, int din, int dout, float *scratch);
size_t op_matmul_dw_scratch(int n_threads, int n, int widest);

/* The references: plain loops in one fixed order, single-threaded. */
void ref_matmul(float *y, const float *x, op_mat a, const float *bias, int n, int din, int dout);
void ref_matmul_dx(float *dx, const float *dy, op_mat a, int n, int din, int dout);
void ref_matmul_dw(float *dA, float *dbias, const float *x, const float *dy, int linear, int n, int din, int dout);

/* LayerNorm of rows of d: y = (x - mean) * rstd * g + b, keeping mean and
 * rstd (n,) for backward; and backward, adding to dx, dg and db (dg and db
 * NULL: frozen). */
void op_layernorm(gpt2_pool *p, float *y, float *mean, float *rstd, const float *x, const float *g, const float *b,
                  int n, int d, float eps);
void op_layernorm_dx(gpt2_pool *p, float *dx, float *dg, float *db, const float *dy, const float *x,
                     const float *mean, const float *rstd, const float *g, int n, int d);

/* y = act(x) over count values (the table's activation, as inference); dx = dy * act'(x) (written; the
 * table's activation_dx, whose reference is the generic table's). */
void op_act(gpt2_pool *p, const gpt2_kernels *k, float *y, const float *x, size_t count, gpt2_act act);
void op_act_dx(gpt2_pool *p, const gpt2_kernels *k, float *dx, const float *dy, const float *x, size_t count,
               gpt2_act act);

/* Causal self-attention of B sequences of T tokens: qkv (B, T, 3C) holds
 * q | k | v, each H heads of hd = C / H; out (B, T, C) = dropout(softmax(S))
 * v per head, with S[t, t2] = q_t . k_t2 / scale_div + alibi[h] t2 for
 * the keys t2 <= t that query t sees (all, or with window > 0 those with
 * t - t2 < window: GPT-Neo's local layers), as the inference kernels make
 * scores (kernels.h). The probability of query t for key t2 of head h in
 * sequence b is value ((b H + h) T + t) T + t2 of the dropout site.
 * Backward recomputes the probabilities and writes dqkv (B, T, 3C) from
 * dout. Each (sequence, head) runs as products on the kernel table:
 * S = Q K^T, P = softmax(S), O = P V; dP = G V^T,
 * dS = P (dP - rowsum(P dP)) / scale_div, dQ = dS K, dK = dS^T Q,
 * dV = P^T G. scratch: op_attention_scratch floats. */
typedef struct op_attn {
    int B, T, C, H;
    float scale_div;
    int window;          /* 0: every earlier key */
    const float *alibi;  /* (H,) BLOOM's slopes, or NULL */
    op_dropout drop;
} op_attn;
void op_attention(gpt2_pool *p, const gpt2_kernels *k, float *out, const float *qkv, const op_attn *a,
                  float *scratch);
void op_attention_dx(gpt2_pool *p, const gpt2_kernels *k, float *dqkv, const float *dout, const float *qkv,
                     const op_attn *a, float *scratch);
size_t op_attention_scratch(int n_threads, int T, int hd);
/* The references: one query and one key at a time, in plain loops. */
void ref_attention(float *out, const float *qkv, const op_attn *a);
void ref_attention_dx(float *dqkv, const float *dout, const float *qkv, const op_attn *a);

/* y (n, dout) = the columns idx (dout,) of x (n, din): q | k | v taken
 * out of a fused product's layout, keys and values repeated for every
 * head under multi-query attention. Backward adds dy's columns back:
 * dx[:, idx[j]] += dy[:, j]. */
void op_gather_cols(gpt2_pool *p, float *y, const float *x, const int *idx, int n, int din, int dout);
void op_gather_cols_dx(gpt2_pool *p, float *dx, const float *dy, const int *idx, int n, int din, int dout);

/* Cross-entropy of the rows of logits (n, V) against target[i]
 * (TRAIN_IGNORE: none): returns the summed loss of the rows with a target
 * and keeps each row's log-sum-exp in lse (n,). Backward turns logits into
 * d(scale x that sum) / d logits in place (rows without a target: zero). */
double op_cross_entropy(gpt2_pool *p, float *lse, const float *logits, const int32_t *target, int n, int V);
void op_cross_entropy_dx(gpt2_pool *p, float *logits, const float *lse, const int32_t *target, int n, int V,
                         float scale);

#endif
