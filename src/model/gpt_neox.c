/* gpt_neox.c -- EleutherAI's GPT-NeoX (GPTNeoXForCausalLM, model_type
 * "gpt_neox"; the Pythia suite): no learned positions but rotary ones on
 * the first rotary_pct of each head's dimensions (rotate-half form), q, k
 * and v fused per head, exact-erf GELU, an untied head (embed_out), and
 * attention and MLP either side by side or one after the other:
 *   a = attn(ln_in(x)), RoPE on q and k, scores / sqrt(head dim)
 *   parallel:   x = (mlp(ln_post(x)) + a) + x
 *   sequential: a = a + x; x = mlp(ln_post(a)) + a
 *   logits = final_layer_norm(x) @ embed_out^T
 * transformers 4.30 modeling_gpt_neox.py; ARCH-NOTES.md. */
#include <math.h>
#include <stdio.h>

#include "model.h"

static gpt2c_status config(json_t *r, const char *path, gpt2_config *c, gpt2_err *e) {
    /* GPTNeoXConfig's defaults. */
    c->n_vocab = 50432, c->n_ctx = 2048, c->n_embd = 6144, c->n_head = 64, c->n_layer = 44, c->n_inner = 24576;
    c->act = ACT_GELU_ERF;
    c->rope_base = 10000.0f;
    c->parallel_residual = 1;
    float pct = 0.25f;
    gpt2c_status s;
    if ((s = cfg_int(r, path, "vocab_size", 1, GPT2_MAX_VOCAB, &c->n_vocab, e)) ||
        (s = cfg_int(r, path, "max_position_embeddings", 1, GPT2_MAX_CTX, &c->n_ctx, e)) ||
        (s = cfg_int(r, path, "hidden_size", 1, GPT2_MAX_EMBD, &c->n_embd, e)) ||
        (s = cfg_int(r, path, "num_attention_heads", 1, GPT2_MAX_EMBD, &c->n_head, e)) ||
        (s = cfg_int(r, path, "num_hidden_layers", 1, GPT2_MAX_LAYER, &c->n_layer, e)) ||
        (s = cfg_int(r, path, "intermediate_size", 1, 4 * GPT2_MAX_EMBD, &c->n_inner, e)) ||
        (s = cfg_float(r, path, "layer_norm_eps", 1e-30, 0.999, &c->eps, e)) ||
        (s = cfg_float(r, path, "rotary_pct", 0, 1, &pct, e)) ||
        (s = cfg_float(r, path, "rotary_emb_base", 1e-30, 1e30, &c->rope_base, e)) ||
        (s = cfg_bool(r, path, "use_parallel_residual", &c->parallel_residual, e)) ||
        (s = cfg_bool(r, path, "tie_word_embeddings", &c->tied, e)) ||
        (s = cfg_act(r, path, "hidden_act", &c->act, e)))
        return s;
    if ((s = cfg_check(path, c, "hidden_size", "num_attention_heads", e))) return s;
    /* int(head_size * rotary_pct), as the model computes it (in double). */
    c->n_rot = (int)((double)(c->n_embd / c->n_head) * (double)pct);
    if (c->n_rot % 2 != 0)
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: rotary_pct gives %d rotary dimensions, which must be even", path,
                       c->n_rot);
    return GPT2C_OK;
}

static gpt2c_status load(gpt2c_model *m) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, F = c->n_inner;
    gpt2c_status s;
    if ((s = model_matrix(m, "gpt_neox.embed_in.weight", c->n_vocab, C, c->tied ? MAT_LINEAR : MAT_PLAIN, &m->wte)) ||
        (s = model_vector(m, "gpt_neox.final_layer_norm.weight", C, &m->lnf_g)) ||
        (s = model_vector(m, "gpt_neox.final_layer_norm.bias", C, &m->lnf_b)) ||
        (s = model_head(m, "embed_out.weight", c->tied)))
        return s;
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_layer *L = &m->layers[l];
        char n[96];
#define V(field, suffix, d0)                                          \
    snprintf(n, sizeof n, "gpt_neox.layers.%d.%s", l, suffix);        \
    if ((s = model_vector(m, n, d0, &L->field))) return s;
#define M(field, suffix, d0, d1)                                      \
    snprintf(n, sizeof n, "gpt_neox.layers.%d.%s", l, suffix);        \
    if ((s = model_matrix(m, n, d0, d1, MAT_LINEAR, &L->field))) return s;
        V(ln1_g, "input_layernorm.weight", C)
        V(ln1_b, "input_layernorm.bias", C)
        M(qkv_w, "attention.query_key_value.weight", 3 * C, C)
        V(qkv_b, "attention.query_key_value.bias", 3 * C)
        M(o_w, "attention.dense.weight", C, C)
        V(o_b, "attention.dense.bias", C)
        V(ln2_g, "post_attention_layernorm.weight", C)
        V(ln2_b, "post_attention_layernorm.bias", C)
        M(fc_w, "mlp.dense_h_to_4h.weight", F, C)
        V(fc_b, "mlp.dense_h_to_4h.bias", F)
        M(proj_w, "mlp.dense_4h_to_h.weight", C, F)
        V(proj_b, "mlp.dense_4h_to_h.bias", C)
#undef V
#undef M
    }
    return model_no_extra_layer(m, "gpt_neox.layers.%d.input_layernorm.weight");
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, F = c->n_inner, hd = C / c->n_head;
    float *x = s->x, *h = s->h, *fc = s->fc; // (n, C), (n, C), (n, F)
    float *mlp = s->att;                      // (n, C) once attention's output is projected

    fwd_embed(m, s, b, i0, n, C, x);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];

        /* Attention: q | k | v per head, rotated, scores / sqrt(head dim). */
        fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C);
        fwd_linear(m, s, s->qkv, h, L->qkv_w, L->qkv_b, n, C, 3 * C);
        fwd_unfuse_heads(s, n, C, c->n_head);
        fwd_rotary_half(m, s, b, i0, n);
        fwd_attention(m, s, b, i0, n, l, 0, sqrtf((float)hd));
        fwd_linear(m, s, h, s->att, L->o_w, L->o_b, n, C, C); // a
        if (!c->parallel_residual) fwd_add(x, h, (size_t)n * C); // a + x, the MLP's input and residual

        /* MLP. */
        fwd_layernorm(m, s, mlp, x, L->ln2_g, L->ln2_b, n, C);
        fwd_linear(m, s, fc, mlp, L->fc_w, L->fc_b, n, C, F);
        fwd_act(m, s, fc, (size_t)n * F);
        fwd_linear(m, s, mlp, fc, L->proj_w, L->proj_b, n, F, C);
        if (c->parallel_residual) fwd_add(mlp, h, (size_t)n * C); // mlp + a
        fwd_add(x, mlp, (size_t)n * C);
    }
    const int r = fwd_select(b, i0, n, x, C, s->att);
    fwd_layernorm(m, s, h, s->att, m->lnf_g, m->lnf_b, r, C);
    fwd_head(m, s, b, i0, n, h, r, logits);
}

const gpt2_arch arch_gpt_neox = {"gpt_neox", "gpt_neox.", config, load, forward};
