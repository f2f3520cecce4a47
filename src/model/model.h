/* model.h -- a decoder-only model of any supported architecture: the
 * config every architecture fills, its weights as mapped from a checkpoint,
 * the KV-cache state, the batched forward pass, and the seam an
 * architecture plugs into (gpt2_arch; one file per architecture: gpt2.c,
 * gpt_neo.c, opt.c, gpt_neox.c, bloom.c, gpt_bigcode.c, codegen.c) with
 * the blocks they share (forward.c). */
#ifndef GPT2C_MODEL_MODEL_H
#define GPT2C_MODEL_MODEL_H

#include <jansson.h>
#include <stddef.h>
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

/* The shapes and the math, under the names transformers' configs give
 * them; each architecture's config() reads its own field names into these.
 * Fields an architecture does not use keep their zero. */
typedef struct gpt2_config {
    int n_vocab, n_ctx, n_embd, n_head, n_layer, n_inner;
    int n_kv_head;                /* key/value heads: n_head, or 1 with multi-query attention (GPTBigCode) */
    int n_proj;                   /* token embedding and LM head width: n_embd, or OPT's word_embed_proj_dim */
    float eps;
    gpt2_act act;
    int bos_id, eos_id, pad_id;   /* -1 when unset */
    int tied;                     /* tie_word_embeddings: the LM head is the token embedding */
    /* GPT-2 */
    int scale_attn_weights;       /* divide scores by sqrt(head dim) */
    int scale_by_inverse_layer;   /* and by layer index + 1 */
    /* GPT-Neo */
    unsigned char local[GPT2_MAX_LAYER]; /* layer l attends to its last `window` positions only */
    int window;
    /* OPT */
    int pre_ln;                   /* do_layer_norm_before */
    int final_ln;                 /* the decoder has a final LayerNorm */
    /* GPT-NeoX */
    int n_rot;                    /* rotary dimensions of each head */
    float rope_base;
    int parallel_residual;
    /* BLOOM */
    int residual_post_ln;         /* apply_residual_connection_post_layernorm: the residual is the LN's output */
} gpt2_config;

/* A layer's tensors, by role: each architecture fills those it has and
 * says in its own file how they are wired (NULL vectors: no bias). */
typedef struct gpt2_layer {
    const float *ln1_g, *ln1_b;   // (C,) the attention's LayerNorm
    gpt2_weight qkv_w;            // q | k | v fused: GPT-2's (C, 3C) Conv1D, GPT-NeoX's (3C, C) per head,
                                  // GPTBigCode's multi-query (C + 2 hd, C)
    const float *qkv_b;           // (3C,) or (C + 2 hd,)
    gpt2_weight q_w, k_w, v_w;    // (C, C) each, separate (GPT-Neo, OPT)
    const float *q_b, *k_b, *v_b; // (C,)
    gpt2_weight o_w;              // (C, C) the attention's output projection
    const float *o_b;             // (C,)
    const float *ln2_g, *ln2_b;   // (C,) the MLP's LayerNorm
    gpt2_weight fc_w;             // (C, F)
    const float *fc_b;            // (F,)
    gpt2_weight proj_w;           // (F, C)
    const float *proj_b;          // (C,)
    int window;                   /* attention sees the last `window` positions; 0: all */
} gpt2_layer;

/* How a checkpoint matrix (d0, d1) is used: read by rows (position and
 * untied token embeddings), as a Conv1D weight (din d0, dout d1), or as an
 * nn.Linear weight or the LM head (din d1, dout d0) -- which says what its
 * Q8 form holds (kernels.h). */
typedef enum { MAT_PLAIN, MAT_CONV1D, MAT_LINEAR } mat_use;

/* A tensor the model took from the checkpoint, kept for conversion
 * (gpt2c_model_load_ex's dtype) and for writing the model back (save.c):
 * its name as the architecture spells it, its stored shape, and where the
 * model holds it. */
typedef struct gpt2_tensor {
    char name[96];
    int d0, d1;           /* d1 0: a vector */
    mat_use use;
    gpt2_weight *w;       /* matrices */
    const float **v;      /* vectors, held as f32 */
} gpt2_tensor;

/* The width of a cached position: n_kv_head heads of keys (and as many of
 * values) -- all n_head, but with multi-query attention, where one serves
 * every query head. */
static inline int gpt2_kv_width(const gpt2_config *c) { return c->n_kv_head * (c->n_embd / c->n_head); }

typedef struct gpt2_state gpt2_state;
typedef struct gpt2_batch gpt2_batch;

/* An architecture: what config.json's model_type names. */
typedef struct gpt2_arch {
    const char *model_type;
    /* The prefix save_pretrained's *ForCausalLM puts on the model's tensor
     * names; a tensor is found with or without it, as from_pretrained
     * finds a base model's file. */
    const char *prefix;
    /* config.json's fields into c: the shapes, the math, the class's
     * defaults for fields left out (the special ids are read after). */
    gpt2c_status (*config)(json_t *root, const char *path, gpt2_config *c, gpt2_err *e);
    /* The tensors, by name, checked against the config (model.c's
     * model_matrix, model_vector). */
    gpt2c_status (*load)(gpt2c_model *m);
    /* Tokens [i0, i0 + n) of the batch through every layer and, for those
     * with an out_row, the LM head. */
    void (*forward)(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits);
} gpt2_arch;

extern const gpt2_arch arch_gpt2, arch_gpt_neo, arch_opt, arch_gpt_neox, arch_bloom, arch_gpt_bigcode, arch_codegen;

struct gpt2c_model {
    gpt2_err err;
    gpt2_config cfg;
    const gpt2_arch *arch;
    st_file *st;          /* (n_st,) the weight file, or the shards of an index (weights.h) */
    int n_st;
    const char *weights_path; /* for messages: the file, or the index */
    char *dir;            /* the checkpoint folder it was loaded from */
    gpt2_weight wte;      // (V, E) token embedding, E = n_proj; as Q8, the head's product matrix (E, V)
    gpt2_weight wpe;      // (P, C) learned positions, where the architecture has them
    const float *lnf_g, *lnf_b; // (C,) the final LayerNorm
    const float *emb_ln_g, *emb_ln_b; // (C,) BLOOM's word_embeddings_layernorm
    const float *alibi;   // (H,) BLOOM's ALiBi slopes, or NULL
    gpt2_weight lm_head;  // (V, E) likewise: wte when tied
    const float *lm_head_b; // (V,) CodeGen's head bias, or NULL
    gpt2_weight proj_in, proj_out; // OPT's (C, E) and (E, C) Linear projections when E != C
    gpt2_layer *layers;   // (L,)
    gpt2_tensor *tensors; /* (n_tensors,) what was taken from the checkpoint */
    int n_tensors;
    void **owned;         /* copies: vectors widened to f32, misaligned matrices */
    int n_owned;
    const char *dtype;    /* dtype of the checkpoint's weights */
    gpt2_wtype kv_type;   /* the KV cache's element type (gpt2c_model_params.kv_cache) */
    size_t weight_bytes;  /* bytes of the matrices read for one token */
    gpt2c_gen_params gen_defaults[2]; /* by gpt2c_defaults: generate(), pipeline */
    const gpt2_kernels *k;
};

/* config.json helpers for the architectures: an optional integer in [lo,
 * hi], a boolean, a number in [lo, hi] (absent and null keep *out). */
gpt2c_status cfg_int(json_t *root, const char *path, const char *key, long lo, long hi, int *out, gpt2_err *e);
gpt2c_status cfg_bool(json_t *root, const char *path, const char *key, int *out, gpt2_err *e);
gpt2c_status cfg_float(json_t *root, const char *path, const char *key, double lo, double hi, float *out,
                       gpt2_err *e);
/* activation_function / hidden_act by name. */
gpt2c_status cfg_act(json_t *root, const char *path, const char *key, gpt2_act *out, gpt2_err *e);
/* n_embd divisible by n_head (named by the config's keys for them), n_proj
 * and n_inner set: what every architecture's config() ends with. */
gpt2c_status cfg_check(const char *path, gpt2_config *c, const char *embd_key, const char *head_key, gpt2_err *e);

/* A matrix of the checkpoint, checked to be (d0, d1), used as `use`;
 * recorded in m->tensors. */
gpt2c_status model_matrix(gpt2c_model *m, const char *name, int d0, int d1, mat_use use, gpt2_weight *out);
/* A vector (d0,) as f32. */
gpt2c_status model_vector(gpt2c_model *m, const char *name, int d0, const float **out);
/* Whether the checkpoint has a tensor of that name. */
int model_has(const gpt2c_model *m, const char *name);
/* The LM head: the token embedding when tied, whatever the file holds (as
 * from_pretrained ties them); otherwise the tensor `name` -- unless it lies
 * on the embedding's own storage (a .bin saves a tied head twice). */
gpt2c_status model_head(gpt2c_model *m, const char *name, int tied);
/* The token embedding `wte` (V, n_proj) and the head, by cfg.tied: a tied
 * embedding is also the head's product matrix; an untied one is read by
 * rows only, and the head is the tensor `head` (model_head). */
gpt2c_status model_embedding_head(gpt2c_model *m, const char *wte, const char *head);
/* Fails when the checkpoint has layer n_layer (named by fmt): more layers
 * than config.json says is a mismatch, not something to truncate. */
gpt2c_status model_no_extra_layer(gpt2c_model *m, const char *fmt);

/* A layer's tensors as an architecture lists them: the name after the
 * layer's prefix, the gpt2_layer field it fills, its shape in the config's
 * terms and how a matrix is used (d1 DIM_NONE: a vector). */
typedef enum { DIM_NONE, DIM_C, DIM_3C, DIM_F, DIM_QKV /* C + 2 * n_kv_head * hd */ } gpt2_dim;
typedef struct layer_tensor {
    const char *name;
    size_t field; /* offsetof(gpt2_layer, ...) */
    gpt2_dim d0, d1;
    mat_use use;
} layer_tensor;
#define LAYER_VECTOR(name, field, d0) {name, offsetof(gpt2_layer, field), d0, DIM_NONE, MAT_PLAIN}
#define LAYER_MATRIX(name, field, d0, d1, use) {name, offsetof(gpt2_layer, field), d0, d1, use}
/* Every layer's tensors from the table (n entries), named prefix (with %d
 * for the layer) + name; then model_no_extra_layer on the first entry. */
gpt2c_status model_layers(gpt2c_model *m, const char *prefix, const layer_tensor *t, int n);
/* bytes of memory the model owns and frees with itself (NULL: out of
 * memory, with m's error set). */
void *model_own(gpt2c_model *m, size_t bytes);

/* LoRA adapters (lora.c): one adapted matrix, named as the architecture
 * names its tensor ("h.0.attn.c_attn.weight"), A (r, din) and B (dout, r). */
typedef struct lora_adapter {
    char name[128];
    int r, din, dout;
    const float *A, *B;
} lora_adapter;
/* W += scale (B A) for each adapter, in W's orientation (Conv1D (din, dout)
 * or Linear (dout, din)), in f32, then back to W's type (F32, F16, BF16)
 * in memory the model owns. */
gpt2c_status model_lora_merge(gpt2c_model *m, const lora_adapter *a, int n, float scale);
/* The same from a PEFT adapter folder: adapter_config.json's r and
 * lora_alpha, adapter_model.safetensors' base_model.model.PATH.lora_A.weight
 * and lora_B.weight for each adapted module PATH. */
gpt2c_status model_lora_load(gpt2c_model *m, const char *dir);

/* "F32", "F16", "BF16", "Q8". */
const char *wtype_name(gpt2_wtype t);

gpt2c_status gpt2_config_load(const char *dir, const gpt2_arch **arch, gpt2_config *c, gpt2c_gen_params gen[2],
                              gpt2_err *e);

/* Per-generation state: the KV cache of n_slots sequences of up to n_pos
 * positions, and scratch for up to max_tokens tokens per pass. */
typedef struct gpt2_pool gpt2_pool;

struct gpt2_state {
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
};

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
struct gpt2_batch {
    int n;
    const int32_t *token; // (n,)
    const int *pos;       // (n,)
    const int *slot;      // (n,)
    const int *out_row;   // (n,) row of logits to write, or -1 for none
};

gpt2c_status gpt2_forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, float *logits, gpt2_err *e);

/* ------------------------------------------------------------------ blocks
 * What each architecture's forward pass is written with (forward.c): the
 * operations over the n tokens of a chunk, [i0, i0 + n) of the batch, run on
 * the state's threads. */

/* x (n, E) = the rows of the token embedding (V, E) of the chunk's tokens. */
void fwd_embed(const gpt2c_model *m, const gpt2_batch *b, int i0, int n, int E, float *x);
/* x (n, C) += row pos + offset of the position embedding w (P, C). */
void fwd_add_positions(gpt2_state *s, gpt2_weight w, const gpt2_batch *b, int i0, int n, int C, int offset, float *x);
/* out (n, d) = LayerNorm(in) with gain g and bias bb. */
void fwd_layernorm(const gpt2c_model *m, gpt2_state *s, float *out, const float *in, const float *g, const float *bb,
                   int n, int d);
/* out (n, dout) = in (n, din) W + bias, whatever W's layout and type. */
void fwd_linear(const gpt2c_model *m, gpt2_state *s, float *out, const float *in, gpt2_weight w, const float *bias,
                int n, int din, int dout);
/* x (count,) = act(x), the config's activation. */
void fwd_act(const gpt2c_model *m, gpt2_state *s, float *x, size_t count);
/* x (count,) += y. */
void fwd_add(float *x, const float *y, size_t count);
/* s->qkv (n, 3C) = q | k | v of the layer's separate q_w, k_w, v_w (and
 * their biases, where it has them) over in (n, C). */
void fwd_qkv_separate(const gpt2c_model *m, gpt2_state *s, const gpt2_layer *L, const float *in, int n);
/* s->qkv (n, 3C) from per-head interleaved [q_h k_h v_h] for each head h
 * (GPT-NeoX's query_key_value) to q | k | v, each head-major. */
void fwd_unfuse_heads(gpt2_state *s, int n, int C, int H);
/* Rotary position embedding on the first cfg.n_rot dimensions of every q
 * and k head in s->qkv, at each token's position: rotate-half pairs
 * (GPT-NeoX), or interleaved ones (GPT-J, CodeGen). */
void fwd_rotary(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, int interleaved);
/* The rotation itself, which training shares (forward, and backward on a
 * gradient with inverse 1: a rotation's transpose is its inverse): the
 * first n_rot dimensions of the n_q query and n_k key heads (hd wide) of n
 * rows of q | k | v (each C wide), row i at position pos[i] (pos NULL:
 * i % T). */
void fwd_rope(float *qkv, int n, const int *pos, int T, int C, int hd, int n_q, int n_k, int n_rot, float base,
              int interleaved, int inverse);
/* Attention in layer l: s->qkv (n, 3C) holds each token's q | k | v,
 * heads head-major; k and v go into the cache, and s->att (n, C) gets
 * softmax(q k^T / scale_div) v over the token's own sequence, its last
 * `window` positions when window > 0. */
void fwd_attention(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, int l, int window,
                   float scale_div);
/* out (n, C) = proj(act(fc(in))), the layer's MLP (s->fc holds the hidden
 * (n, F)). */
void fwd_mlp(const gpt2c_model *m, gpt2_state *s, const gpt2_layer *L, const float *in, float *out, int n);
/* The end of a pre-LN decoder: the final LayerNorm of s->x's rows whose
 * token has an out_row, then the LM head. */
void fwd_final(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits);
/* Copies the rows of x (n, d) whose token has an out_row into out, in
 * order; returns how many. */
int fwd_select(const gpt2_batch *b, int i0, int n, const float *x, int d, float *out);
/* The LM head over h (r, E), the final states of the chunk's tokens that
 * have an out_row, in order: their logits, written to those rows. */
void fwd_head(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, const float *h, int r,
              float *logits);

#endif
