/* gpt2.h -- the GPT-2 architecture: its configuration, its weights as mapped
 * from a checkpoint, the KV-cache state, and the batched forward pass. */
#ifndef GPT2C_MODEL_GPT2_H
#define GPT2C_MODEL_GPT2_H

#include <stdint.h>

#include "../core/err.h"
#include "../core/safetensors.h"
#include "../kernels/kernels.h"
#include "gpt2c.h"

/* Refuse configs beyond these before allocating anything (gpt2-xl is
 * 1600 x 48 x 25 heads over 1024 positions). */
#define GPT2_MAX_EMBD 65536
#define GPT2_MAX_LAYER 1024
#define GPT2_MAX_CTX (1 << 20)
#define GPT2_MAX_VOCAB (1 << 21)

typedef struct gpt2_config {
    int n_vocab, n_ctx, n_embd, n_head, n_layer, n_inner;
    float eps;
    gpt2_act act;
    int scale_attn_weights;       /* divide scores by sqrt(head dim) */
    int scale_by_inverse_layer;   /* and by layer index + 1 */
    int bos_id, eos_id, pad_id;   /* -1 when unset */
} gpt2_config;

typedef struct gpt2_layer {
    const float *ln1_g, *ln1_b;   // (C,)
    gpt2_weight attn_w;           // (C, 3C) q | k | v
    const float *attn_b;          // (3C,)
    gpt2_weight attn_proj_w;      // (C, C)
    const float *attn_proj_b;     // (C,)
    const float *ln2_g, *ln2_b;   // (C,)
    gpt2_weight fc_w;             // (C, F)
    const float *fc_b;            // (F,)
    gpt2_weight fc_proj_w;        // (F, C)
    const float *fc_proj_b;       // (C,)
} gpt2_layer;

struct gpt2c_model {
    gpt2_err err;
    gpt2_config cfg;
    st_file *st;          /* (n_st,) the weight file, or the shards of an index (weights.h) */
    int n_st;
    const char *weights_path; /* for messages: the file, or the index */
    char *dir;            /* the checkpoint folder it was loaded from */
    gpt2_weight wte;      // (V, C); as Q8, the head's product matrix (C, V)
    gpt2_weight wpe;      // (P, C)
    const float *lnf_g, *lnf_b; // (C,)
    gpt2_weight lm_head;  // (V, C) likewise: wte unless the checkpoint has lm_head.weight
    gpt2_layer *layers;   // (L,)
    void **owned;         /* copies: vectors widened to f32, misaligned matrices */
    int n_owned;
    const char *dtype;    /* dtype of the checkpoint's weights */
    gpt2_wtype kv_type;   /* the KV cache's element type (gpt2c_model_params.kv_cache) */
    size_t weight_bytes;  /* bytes of the matrices read for one token */
    gpt2c_gen_params gen_defaults[2]; /* by gpt2c_defaults: generate(), pipeline */
    const gpt2_kernels *k;
};

/* "F32", "F16", "BF16", "Q8". */
const char *wtype_name(gpt2_wtype t);

gpt2c_status gpt2_config_load(const char *dir, gpt2_config *c, gpt2c_gen_params gen[2], gpt2_err *e);

/* Per-generation state: the KV cache of n_slots sequences of up to n_pos
 * positions, and scratch for up to max_tokens tokens per pass. */
typedef struct gpt2_pool gpt2_pool;

typedef struct gpt2_state {
    int n_slots, n_pos, max_tokens;
    gpt2_pool *pool;          /* the threads this state's passes run on */
    /* The KV cache, of the model's kv_type: (L, n_slots, n_pos / run, H,
     * run, C / H), run = min(GPT2_KV_BLOCK, n_pos), n_pos rounded up to
     * whole runs (forward.c: kv_index). Each head's positions come in runs,
     * so attention streams them (a head's slice of position-major rows, hd
     * floats every C, read at 13-17 GB/s, runs of 256 at 32-35: per-op
     * timers, gpt2 q8, 512 positions),
     * while a sequence's first positions touch only its slot's first blocks
     * (one run per head over all n_pos would touch the whole slot at once,
     * 75 MB for gpt2 at 1024 positions, and the first touch of memory runs
     * at 0.26 GB/s on these VMs). */
    void *k_cache, *v_cache;
    float *x, *h, *qkv, *att, *fc; // (max_tokens, C), (.., C), (.., 3C), (.., C), (.., F)
    float *scores;            // (n_threads, n_pos) attention scratch per thread
    float *tmp;               // (C,) embedding rows
    int16_t *xq;              // (max_tokens, max din) a Q8 product's input rows, quantised
    float *xd;                // (max_tokens, max din / 32) and their block scales
    float *part;              // (din / GPT2_KBLOCK, up to 8 rows, dout) of the largest product: decode partial sums
    float *head;              // (head_rows, V) LM-head output of a group of tokens
    int head_rows;
} gpt2_state;

/* n_threads 0: one per physical core. */
gpt2c_status gpt2_state_init(gpt2_state *s, const gpt2c_model *m, int n_slots, int n_pos, int max_tokens,
                             int n_threads, gpt2_err *e);
void gpt2_state_free(gpt2_state *s);
/* Copies the cache of slot src[i] to slot dst[i] for positions 0..n_pos-1,
 * for all i at once (a permutation is fine: sources are read first). */
gpt2c_status gpt2_state_copy_slots(gpt2_state *s, const gpt2c_model *m, const int *src, const int *dst, int n,
                                   int n_pos, gpt2_err *e);

/* A set of tokens to run together, each belonging to a cache slot at a
 * position. A token attends to its own slot's positions 0..pos, so tokens of
 * one slot must come in position order and positions below pos must already
 * be cached or earlier in the batch. */
typedef struct gpt2_batch {
    int n;
    const int32_t *token; // (n,)
    const int *pos;       // (n,)
    const int *slot;      // (n,)
    const int *out_row;   // (n,) row of logits to write, or -1 for none
} gpt2_batch;

gpt2c_status gpt2_forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, float *logits, gpt2_err *e);

#endif
