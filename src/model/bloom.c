/* bloom.c -- BigScience's BLOOM (BloomForCausalLM, model_type "bloom";
 * bloom-560m to bloom-7b1, bloomz): no position embeddings but ALiBi, a
 * bias on each attention score that grows with the key's position at a
 * per-head slope; a LayerNorm right after the token embedding; q, k and v
 * fused per head; the tanh GELU; the head tied to the embedding:
 *   x = word_embeddings_layernorm(word_embeddings[token])
 *   for each layer: h = input_layernorm(x)
 *     a = dense(attn(h)) + (post-LN residual ? h : x),
 *         scores = q.k / sqrt(head dim) + slope_h * key position
 *     h = post_attention_layernorm(a)
 *     x = mlp(h) + (post-LN residual ? h : a)
 *   logits = ln_f(x) @ word_embeddings^T
 * transformers 4.30 modeling_bloom.py; ARCH-NOTES.md. */
#include <math.h>
#include <string.h>

#include "model.h"

static gpt2c_status config(json_t *r, const char *path, gpt2_config *c, gpt2_err *e) {
    /* BloomConfig's defaults. It names its shapes n_layer and n_head, with
     * the usual names as aliases (attribute_map), and takes n_embed for
     * hidden_size. It has no position limit: ALiBi extends to any length;
     * gpt2c bounds a sequence by seq_length, the trained length, when the
     * config gives it, else by 2048, BLOOM's. */
    c->n_vocab = 250880, c->n_ctx = 2048, c->n_embd = 64, c->n_head = 8, c->n_layer = 2;
    c->act = ACT_GELU_TANH; /* bloom_gelu_forward: the tanh curve, written with 0.79788456 */
    c->tied = 1;
    gpt2c_status s;
    if ((s = cfg_int(r, path, "vocab_size", 1, GPT2_MAX_VOCAB, &c->n_vocab, e)) ||
        (s = cfg_int(r, path, "seq_length", 1, GPT2_MAX_CTX, &c->n_ctx, e)) ||
        (s = cfg_int(r, path, "hidden_size", 1, GPT2_MAX_EMBD, &c->n_embd, e)) ||
        (s = cfg_int(r, path, "n_embed", 1, GPT2_MAX_EMBD, &c->n_embd, e)) ||
        (s = cfg_int(r, path, "num_attention_heads", 1, GPT2_MAX_EMBD, &c->n_head, e)) ||
        (s = cfg_int(r, path, "n_head", 1, GPT2_MAX_EMBD, &c->n_head, e)) ||
        (s = cfg_int(r, path, "num_hidden_layers", 1, GPT2_MAX_LAYER, &c->n_layer, e)) ||
        (s = cfg_int(r, path, "n_layer", 1, GPT2_MAX_LAYER, &c->n_layer, e)) ||
        (s = cfg_float(r, path, "layer_norm_epsilon", 1e-30, 0.999, &c->eps, e)) ||
        (s = cfg_bool(r, path, "apply_residual_connection_post_layernorm", &c->residual_post_ln, e)) ||
        (s = cfg_bool(r, path, "tie_word_embeddings", &c->tied, e)))
        return s;
    /* pretraining_tp with slow_but_exact splits the products into slices
     * summed one after another: the same sums in another rounding order. */
    return cfg_check(path, c, "hidden_size", "n_head", e); /* the MLP is 4 x hidden_size wide */
}

/* A layer's tensors, after "transformer.h.N."; nn.Linear weights are (out,
 * in). The query_key_value rows hold q, k, v head by head (fwd_unfuse_heads). */
static const layer_tensor LAYER[] = {
    LAYER_VECTOR("input_layernorm.weight", ln1_g, DIM_C),
    LAYER_VECTOR("input_layernorm.bias", ln1_b, DIM_C),
    LAYER_MATRIX("self_attention.query_key_value.weight", qkv_w, DIM_3C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("self_attention.query_key_value.bias", qkv_b, DIM_3C),
    LAYER_MATRIX("self_attention.dense.weight", o_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("self_attention.dense.bias", o_b, DIM_C),
    LAYER_VECTOR("post_attention_layernorm.weight", ln2_g, DIM_C),
    LAYER_VECTOR("post_attention_layernorm.bias", ln2_b, DIM_C),
    LAYER_MATRIX("mlp.dense_h_to_4h.weight", fc_w, DIM_F, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("mlp.dense_h_to_4h.bias", fc_b, DIM_F),
    LAYER_MATRIX("mlp.dense_4h_to_h.weight", proj_w, DIM_C, DIM_F, MAT_LINEAR),
    LAYER_VECTOR("mlp.dense_4h_to_h.bias", proj_b, DIM_C),
};

/* The ALiBi slopes (build_alibi_tensor): for the largest power of two p <=
 * H, head k (from 1) gets base^k with base = 2^(-2^-(log2 p - 3)); the H - p
 * heads beyond p take the odd powers 1, 3, 5, ... of the base for 2p. Each
 * base is rounded to float32 and each power taken in float32, as torch
 * does: the slopes are not exact powers of two when log2 p is odd. */
static void alibi_slopes(int H, float *slope) {
    int p = 1;
    while (p * 2 <= H) p *= 2;
    const float base = (float)pow(2.0, -pow(2.0, -(log2((double)p) - 3.0)));
    for (int k = 1; k <= p; k++) slope[k - 1] = powf(base, (float)k);
    const float extra = (float)pow(2.0, -pow(2.0, -(log2(2.0 * p) - 3.0)));
    for (int k = 0; k < H - p; k++) slope[p + k] = powf(extra, (float)(2 * k + 1));
}

static gpt2c_status load(gpt2c_model *m) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd;
    gpt2c_status s;
    if ((s = model_embedding_head(m, "transformer.word_embeddings.weight", "lm_head.weight")) ||
        (s = model_vector(m, "transformer.word_embeddings_layernorm.weight", C, &m->emb_ln_g)) ||
        (s = model_vector(m, "transformer.word_embeddings_layernorm.bias", C, &m->emb_ln_b)) ||
        (s = model_vector(m, "transformer.ln_f.weight", C, &m->lnf_g)) ||
        (s = model_vector(m, "transformer.ln_f.bias", C, &m->lnf_b)))
        return s;
    float *slope = model_own(m, (size_t)c->n_head * sizeof *slope);
    if (!slope) return GPT2C_ERR_NOMEM;
    alibi_slopes(c->n_head, slope);
    m->alibi = slope;
    return model_layers(m, "transformer.h.%d.", LAYER, sizeof LAYER / sizeof *LAYER);
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;
    const size_t nC = (size_t)n * C;
    float *x = s->x, *h = s->h; // (n, C) the residual stream; (n, C) a sublayer's normalised input
    float *out = s->qkv;        // (n, C) a sublayer's output, once attention has read q, k, v

    fwd_embed(m, b, i0, n, C, h);
    fwd_layernorm(m, s, x, h, m->emb_ln_g, m->emb_ln_b, n, C);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];

        /* Attention: q | k | v per head, scores / sqrt(head dim) + ALiBi
         * (m->alibi, which fwd_attention applies). */
        fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C);
        fwd_linear(m, s, s->qkv, h, L->qkv_w, L->qkv_b, n, C, 3 * C);
        fwd_unfuse_heads(s, n, C, c->n_head);
        fwd_attention(m, s, b, i0, n, l, 0, sqrtf((float)hd));
        fwd_linear(m, s, out, s->att, L->o_w, L->o_b, n, C, C);
        if (c->residual_post_ln) memcpy(x, h, nC * sizeof *x);
        fwd_add(x, out, nC); // a

        /* MLP. */
        fwd_layernorm(m, s, h, x, L->ln2_g, L->ln2_b, n, C);
        fwd_mlp(m, s, L, h, out, n);
        if (c->residual_post_ln) memcpy(x, h, nC * sizeof *x);
        fwd_add(x, out, nC);
    }
    fwd_final(m, s, b, i0, n, logits);
}

const gpt2_arch arch_bloom = {"bloom", "transformer.", config, load, forward};
