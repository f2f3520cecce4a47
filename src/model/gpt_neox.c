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

/* A layer's tensors, after "gpt_neox.layers.N."; nn.Linear weights are (out, in). The
 * query_key_value rows hold q, k, v head by head (fwd_unfuse_heads). */
static const layer_tensor LAYER[] = {
    LAYER_VECTOR("input_layernorm.weight", ln1_g, DIM_C),
    LAYER_VECTOR("input_layernorm.bias", ln1_b, DIM_C),
    LAYER_MATRIX("attention.query_key_value.weight", qkv_w, DIM_3C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("attention.query_key_value.bias", qkv_b, DIM_3C),
    LAYER_MATRIX("attention.dense.weight", o_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("attention.dense.bias", o_b, DIM_C),
    LAYER_VECTOR("post_attention_layernorm.weight", ln2_g, DIM_C),
    LAYER_VECTOR("post_attention_layernorm.bias", ln2_b, DIM_C),
    LAYER_MATRIX("mlp.dense_h_to_4h.weight", fc_w, DIM_F, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("mlp.dense_h_to_4h.bias", fc_b, DIM_F),
    LAYER_MATRIX("mlp.dense_4h_to_h.weight", proj_w, DIM_C, DIM_F, MAT_LINEAR),
    LAYER_VECTOR("mlp.dense_4h_to_h.bias", proj_b, DIM_C),
};

static gpt2c_status load(gpt2c_model *m) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd;
    gpt2c_status s;
    if ((s = model_embedding_head(m, "gpt_neox.embed_in.weight", "embed_out.weight")) ||
        (s = model_vector(m, "gpt_neox.final_layer_norm.weight", C, &m->lnf_g)) ||
        (s = model_vector(m, "gpt_neox.final_layer_norm.bias", C, &m->lnf_b)))
        return s;
    return model_layers(m, "gpt_neox.layers.%d.", LAYER, sizeof LAYER / sizeof *LAYER);
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;
    float *x = s->x, *h = s->h; // (n, C) each
    float *mlp = s->att;        // (n, C) once attention's output is projected

    fwd_embed(m, b, i0, n, C, x);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];

        /* Attention: q | k | v per head, rotated, scores / sqrt(head dim). */
        fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C);
        fwd_linear(m, s, s->qkv, h, L->qkv_w, L->qkv_b, n, C, 3 * C);
        fwd_unfuse_heads(s, n, C, c->n_head);
        fwd_rotary(m, s, b, i0, n, 0);
        fwd_attention(m, s, b, i0, n, l, 0, sqrtf((float)hd));
        fwd_linear(m, s, h, s->att, L->o_w, L->o_b, n, C, C); // a
        if (!c->parallel_residual) fwd_add(x, h, (size_t)n * C); // a + x, the MLP's input and residual

        /* MLP. */
        fwd_layernorm(m, s, mlp, x, L->ln2_g, L->ln2_b, n, C);
        fwd_mlp(m, s, L, mlp, mlp, n);
        if (c->parallel_residual) fwd_add(mlp, h, (size_t)n * C); // mlp + a
        fwd_add(x, mlp, (size_t)n * C);
    }
    fwd_final(m, s, b, i0, n, logits);
}

const gpt2_arch arch_gpt_neox = {"gpt_neox", "gpt_neox.", config, load, forward};
