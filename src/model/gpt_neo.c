/* gpt_neo.c -- EleutherAI's GPT-Neo (GPTNeoForCausalLM, model_type
 * "gpt_neo"; gpt-neo-125M/1.3B, the TinyStories models): GPT-2's pre-LN
 * block with learned positions and a tied head, but
 *   - q, k, v are three nn.Linear without bias, and scores are not scaled:
 *     softmax(q k^T) v;
 *   - layers alternate global attention and local attention over the last
 *     window_size positions (config attention_types).
 * transformers 4.30 modeling_gpt_neo.py; ARCH-NOTES.md. */
#include <stdio.h>
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

static gpt2c_status load(gpt2c_model *m) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, F = c->n_inner;
    gpt2c_status s;
    if ((s = model_matrix(m, "transformer.wte.weight", c->n_vocab, C, c->tied ? MAT_LINEAR : MAT_PLAIN, &m->wte)) ||
        (s = model_matrix(m, "transformer.wpe.weight", c->n_ctx, C, MAT_PLAIN, &m->wpe)) ||
        (s = model_vector(m, "transformer.ln_f.weight", C, &m->lnf_g)) ||
        (s = model_vector(m, "transformer.ln_f.bias", C, &m->lnf_b)) || (s = model_head(m, "lm_head.weight", c->tied)))
        return s;
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_layer *L = &m->layers[l];
        char n[96];
#define V(field, suffix, d0)                                          \
    snprintf(n, sizeof n, "transformer.h.%d.%s", l, suffix);          \
    if ((s = model_vector(m, n, d0, &L->field))) return s;
#define M(field, suffix, d0, d1)                                      \
    snprintf(n, sizeof n, "transformer.h.%d.%s", l, suffix);          \
    if ((s = model_matrix(m, n, d0, d1, MAT_LINEAR, &L->field))) return s;
        V(ln1_g, "ln_1.weight", C)
        V(ln1_b, "ln_1.bias", C)
        M(q_w, "attn.attention.q_proj.weight", C, C)
        M(k_w, "attn.attention.k_proj.weight", C, C)
        M(v_w, "attn.attention.v_proj.weight", C, C)
        M(o_w, "attn.attention.out_proj.weight", C, C)
        V(o_b, "attn.attention.out_proj.bias", C)
        V(ln2_g, "ln_2.weight", C)
        V(ln2_b, "ln_2.bias", C)
        M(fc_w, "mlp.c_fc.weight", F, C)
        V(fc_b, "mlp.c_fc.bias", F)
        M(proj_w, "mlp.c_proj.weight", C, F)
        V(proj_b, "mlp.c_proj.bias", C)
#undef V
#undef M
        L->window = c->local[l] ? c->window : 0;
    }
    return model_no_extra_layer(m, "transformer.h.%d.ln_1.weight");
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, F = c->n_inner;
    float *x = s->x, *h = s->h, *fc = s->fc; // (n, C), (n, C), (n, F)

    fwd_embed(m, s, b, i0, n, C, x);
    fwd_add_positions(s, m->wpe, b, i0, n, C, 0, x);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];

        /* Attention: softmax(q k^T) v, unscaled, over the layer's window. */
        fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C);
        const gpt2_weight qkv[3] = {L->q_w, L->k_w, L->v_w};
        for (int part = 0; part < 3; part++) {
            fwd_linear(m, s, s->att, h, qkv[part], NULL, n, C, C);
            fwd_pack_qkv(s, s->att, n, C, part);
        }
        fwd_attention(m, s, b, i0, n, l, L->window, 1.0f);
        fwd_linear(m, s, h, s->att, L->o_w, L->o_b, n, C, C);
        fwd_add(x, h, (size_t)n * C);

        /* MLP. */
        fwd_layernorm(m, s, h, x, L->ln2_g, L->ln2_b, n, C);
        fwd_linear(m, s, fc, h, L->fc_w, L->fc_b, n, C, F);
        fwd_act(m, s, fc, (size_t)n * F);
        fwd_linear(m, s, h, fc, L->proj_w, L->proj_b, n, F, C);
        fwd_add(x, h, (size_t)n * C);
    }
    const int r = fwd_select(b, i0, n, x, C, s->att);
    fwd_layernorm(m, s, h, s->att, m->lnf_g, m->lnf_b, r, C);
    fwd_head(m, s, b, i0, n, h, r, logits);
}

const gpt2_arch arch_gpt_neo = {"gpt_neo", "transformer.", config, load, forward};
