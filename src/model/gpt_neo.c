/* gpt_neo.c -- EleutherAI's GPT-Neo (GPTNeoForCausalLM, model_type
 * "gpt_neo"; gpt-neo-125M/1.3B, the TinyStories models): GPT-2's pre-LN
 * block with learned positions and a tied head, but
 *   - q, k, v are three nn.Linear without bias, and scores are not scaled:
 *     softmax(q k^T) v;
 *   - layers alternate global attention and local attention over the last
 *     window_size positions (config attention_types).
 * transformers 4.30 modeling_gpt_neo.py; ARCH-NOTES.md. */
#include <string.h>

#include "model.h"

/* attention_layers, or its expansion from attention_types
 * [[["global", "local"], 12]]: a pattern repeated, one kind per layer. */
static gpt2c_status layer_kinds(json_t *r, const char *path, gpt2_config *c, gpt2_err *e) {
    json_t *layers = json_object_get(r, "attention_layers"), *types = json_object_get(r, "attention_types");
    int n = 0;
    const char *kinds[GPT2_MAX_LAYER];
    if (json_is_array(layers)) {
        size_t i;
        json_t *k;
        json_array_foreach(layers, i, k) {
            if (n == GPT2_MAX_LAYER) break;
            kinds[n++] = json_string_value(k);
        }
    } else if (json_is_array(types)) {
        size_t i, j;
        json_t *t, *k;
        json_array_foreach(types, i, t) {
            json_t *pattern = json_array_get(t, 0), *rep = json_array_get(t, 1);
            if (!json_is_array(pattern) || !json_is_integer(rep) || json_integer_value(rep) < 0 ||
                json_integer_value(rep) > GPT2_MAX_LAYER)
                return err_set(e, GPT2C_ERR_FORMAT, "%s: field 'attention_types' must be a list of [[kinds], count]",
                               path);
            for (json_int_t k2 = 0; k2 < json_integer_value(rep); k2++)
                json_array_foreach(pattern, j, k) {
                    if (n == GPT2_MAX_LAYER) break;
                    kinds[n++] = json_string_value(k);
                }
        }
    } else {
        for (n = 0; n < 24 && n < GPT2_MAX_LAYER; n++) kinds[n] = n % 2 ? "local" : "global"; /* the class default */
    }
    if (n != c->n_layer)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: the attention types name %d layers, num_layers is %d", path, n,
                       c->n_layer);
    for (int l = 0; l < n; l++) {
        if (!kinds[l] || (strcmp(kinds[l], "local") && strcmp(kinds[l], "global")))
            return err_set(e, GPT2C_ERR_FORMAT, "%s: attention type of layer %d must be \"global\" or \"local\"", path,
                           l);
        c->local[l] = !strcmp(kinds[l], "local");
    }
    return GPT2C_OK;
}

static gpt2c_status config(json_t *r, const char *path, gpt2_config *c, gpt2_err *e) {
    /* GPTNeoConfig's defaults. */
    c->n_vocab = 50257, c->n_ctx = 2048, c->n_embd = 2048, c->n_head = 16, c->n_layer = 24;
    c->window = 256;
    c->act = ACT_GELU_TANH;
    c->tied = 1;
    gpt2c_status s;
    if ((s = cfg_int(r, path, "vocab_size", 1, GPT2_MAX_VOCAB, &c->n_vocab, e)) ||
        (s = cfg_int(r, path, "max_position_embeddings", 1, GPT2_MAX_CTX, &c->n_ctx, e)) ||
        (s = cfg_int(r, path, "hidden_size", 1, GPT2_MAX_EMBD, &c->n_embd, e)) ||
        (s = cfg_int(r, path, "num_heads", 1, GPT2_MAX_EMBD, &c->n_head, e)) ||
        (s = cfg_int(r, path, "num_layers", 1, GPT2_MAX_LAYER, &c->n_layer, e)) ||
        (s = cfg_int(r, path, "intermediate_size", 1, 4 * GPT2_MAX_EMBD, &c->n_inner, e)) ||
        (s = cfg_int(r, path, "window_size", 1, GPT2_MAX_CTX, &c->window, e)) ||
        (s = cfg_float(r, path, "layer_norm_epsilon", 1e-30, 0.999, &c->eps, e)) ||
        (s = cfg_act(r, path, "activation_function", &c->act, e)) ||
        (s = cfg_bool(r, path, "tie_word_embeddings", &c->tied, e)))
        return s;
    if ((s = layer_kinds(r, path, c, e))) return s;
    return cfg_check(path, c, "hidden_size", "num_heads", e);
}

/* A layer's tensors, after "transformer.h.N."; nn.Linear weights are (out, in). */
static const layer_tensor LAYER[] = {
    LAYER_VECTOR("ln_1.weight", ln1_g, DIM_C),
    LAYER_VECTOR("ln_1.bias", ln1_b, DIM_C),
    LAYER_MATRIX("attn.attention.q_proj.weight", q_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_MATRIX("attn.attention.k_proj.weight", k_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_MATRIX("attn.attention.v_proj.weight", v_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_MATRIX("attn.attention.out_proj.weight", o_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("attn.attention.out_proj.bias", o_b, DIM_C),
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
        (s = model_vector(m, "transformer.ln_f.bias", C, &m->lnf_b)) ||
        (s = model_layers(m, "transformer.h.%d.", LAYER, sizeof LAYER / sizeof *LAYER)))
        return s;
    for (int l = 0; l < c->n_layer; l++) m->layers[l].window = c->local[l] ? c->window : 0;
    return GPT2C_OK;
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd;
    float *x = s->x, *h = s->h; // (n, C) each

    fwd_embed(m, b, i0, n, C, x);
    fwd_add_positions(s, m->wpe, b, i0, n, C, 0, x);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];

        /* Attention: softmax(q k^T) v, unscaled, over the layer's window. */
        fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C);
        fwd_qkv_separate(m, s, L, h, n);
        fwd_attention(m, s, b, i0, n, l, L->window, 1.0f);
        fwd_linear(m, s, h, s->att, L->o_w, L->o_b, n, C, C);
        fwd_add(x, h, (size_t)n * C);

        /* MLP. */
        fwd_layernorm(m, s, h, x, L->ln2_g, L->ln2_b, n, C);
        fwd_mlp(m, s, L, h, h, n);
        fwd_add(x, h, (size_t)n * C);
    }
    fwd_final(m, s, b, i0, n, logits);
}

const gpt2_arch arch_gpt_neo = {"gpt_neo", "transformer.", config, load, forward};
