/* gpt_bigcode.c -- BigCode's GPTBigCode (GPTBigCodeForCausalLM, model_type
 * "gpt_bigcode"; SantaCoder, tiny_starcoder, StarCoder): GPT-2's skeleton in
 * nn.Linear layers, with multi-query attention -- one key head and one
 * value head shared by all query heads, so the KV cache holds n_head times
 * less (gpt2_config.n_kv_head 1) -- unless multi_query is false:
 *   x = wte[token] + wpe[pos]
 *   for each layer: x += c_proj(attn(ln_1(x))); x += mlp(ln_2(x))
 *   logits = ln_f(x) @ wte^T
 * c_attn's rows are q of every head, then the shared k, then v (multi-query),
 * or q, k, v head by head. transformers 4.30 modeling_gpt_bigcode.py;
 * ARCH-NOTES.md. */
#include <math.h>
#include <string.h>

#include "model.h"

static gpt2c_status config(json_t *r, const char *path, gpt2_config *c, gpt2_err *e) {
    /* GPTBigCodeConfig's defaults. In float32 the attention's softmax
     * options (attention_softmax_in_fp32, scale_attention_softmax_in_fp32)
     * change nothing: they upcast and rescale half-precision scores only. */
    c->n_vocab = 50257, c->n_ctx = 1024, c->n_embd = 768, c->n_head = 12, c->n_layer = 12;
    c->act = ACT_GELU_TANH; /* gelu_pytorch_tanh */
    c->scale_attn_weights = 1;
    c->tied = 1;
    int multi_query = 1;
    gpt2c_status s;
    if ((s = cfg_int(r, path, "vocab_size", 1, GPT2_MAX_VOCAB, &c->n_vocab, e)) ||
        (s = cfg_int(r, path, "n_positions", 1, GPT2_MAX_CTX, &c->n_ctx, e)) ||
        (s = cfg_int(r, path, "n_embd", 1, GPT2_MAX_EMBD, &c->n_embd, e)) ||
        (s = cfg_int(r, path, "n_head", 1, GPT2_MAX_EMBD, &c->n_head, e)) ||
        (s = cfg_int(r, path, "n_layer", 1, GPT2_MAX_LAYER, &c->n_layer, e)) ||
        (s = cfg_int(r, path, "n_inner", 1, 4 * GPT2_MAX_EMBD, &c->n_inner, e)) ||
        (s = cfg_float(r, path, "layer_norm_epsilon", 1e-30, 0.999, &c->eps, e)) ||
        (s = cfg_bool(r, path, "scale_attn_weights", &c->scale_attn_weights, e)) ||
        (s = cfg_bool(r, path, "multi_query", &multi_query, e)) ||
        (s = cfg_bool(r, path, "tie_word_embeddings", &c->tied, e)) ||
        (s = cfg_act(r, path, "activation_function", &c->act, e)))
        return s;
    c->n_kv_head = multi_query ? 1 : c->n_head;
    return cfg_check(path, c, "n_embd", "n_head", e);
}

/* A layer's tensors, after "transformer.h.N."; nn.Linear weights are (out, in). */
static const layer_tensor LAYER[] = {
    LAYER_VECTOR("ln_1.weight", ln1_g, DIM_C),
    LAYER_VECTOR("ln_1.bias", ln1_b, DIM_C),
    LAYER_MATRIX("attn.c_attn.weight", qkv_w, DIM_QKV, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("attn.c_attn.bias", qkv_b, DIM_QKV),
    LAYER_MATRIX("attn.c_proj.weight", o_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("attn.c_proj.bias", o_b, DIM_C),
    LAYER_VECTOR("ln_2.weight", ln2_g, DIM_C),
    LAYER_VECTOR("ln_2.bias", ln2_b, DIM_C),
    LAYER_MATRIX("mlp.c_fc.weight", fc_w, DIM_F, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("mlp.c_fc.bias", fc_b, DIM_F),
    LAYER_MATRIX("mlp.c_proj.weight", proj_w, DIM_C, DIM_F, MAT_LINEAR),
    LAYER_VECTOR("mlp.c_proj.bias", proj_b, DIM_C),
};

static gpt2c_status load(gpt2c_model *m) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd;
    gpt2c_status s;
    if ((s = model_embedding_head(m, "transformer.wte.weight", "lm_head.weight")) ||
        (s = model_matrix(m, "transformer.wpe.weight", c->n_ctx, C, MAT_PLAIN, &m->wpe)) ||
        (s = model_vector(m, "transformer.ln_f.weight", C, &m->lnf_g)) ||
        (s = model_vector(m, "transformer.ln_f.bias", C, &m->lnf_b)))
        return s;
    return model_layers(m, "transformer.h.%d.", LAYER, sizeof LAYER / sizeof *LAYER);
}

/* s->qkv from c_attn's multi-query rows (n, C + 2 hd) -- q of every head,
 * the k, the v -- to the (n, 3C) rows attention reads (q | k | v, k and v
 * hd wide), back to front: a row only moves up, past the rows before it. */
static void spread_multi_query(gpt2_state *s, int n, int C, int hd) {
    const size_t w = (size_t)C + 2 * (size_t)hd;
    for (int i = n - 1; i >= 0; i--) {
        const float *src = s->qkv + (size_t)i * w;
        float *dst = s->qkv + (size_t)i * 3 * C;
        memmove(dst + 2 * C, src + C + hd, (size_t)hd * sizeof *dst); // v
        memmove(dst + C, src + C, (size_t)hd * sizeof *dst);          // k
        memmove(dst, src, (size_t)C * sizeof *dst);                   // q
    }
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head, multi_query = c->n_kv_head == 1 && c->n_head > 1;
    float *x = s->x, *h = s->h; // (n, C) the residual stream; (n, C) normalised input / sublayer output

    fwd_embed(m, b, i0, n, C, x);
    fwd_add_positions(s, m->wpe, b, i0, n, C, 0, x);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];

        /* Attention: scores / sqrt(head dim). */
        fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C);
        fwd_linear(m, s, s->qkv, h, L->qkv_w, L->qkv_b, n, C, C + 2 * gpt2_kv_width(c));
        if (multi_query) spread_multi_query(s, n, C, hd);
        else fwd_unfuse_heads(s, n, C, c->n_head);
        fwd_attention(m, s, b, i0, n, l, 0, c->scale_attn_weights ? sqrtf((float)hd) : 1.0f);
        fwd_linear(m, s, h, s->att, L->o_w, L->o_b, n, C, C);
        fwd_add(x, h, (size_t)n * C);

        /* MLP. */
        fwd_layernorm(m, s, h, x, L->ln2_g, L->ln2_b, n, C);
        fwd_mlp(m, s, L, h, h, n);
        fwd_add(x, h, (size_t)n * C);
    }
    fwd_final(m, s, b, i0, n, logits);
}

const gpt2_arch arch_gpt_bigcode = {"gpt_bigcode", "transformer.", config, load, forward};
