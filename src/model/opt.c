/* opt.c -- Meta's OPT (OPTForCausalLM, model_type "opt"; opt-125m to
 * opt-1.3b): a decoder of nn.Linear layers with biases, ReLU, learned
 * positions read at position + 2, and q scaled by head_dim^-0.5 before its
 * product with k. Pre-LN for most sizes; opt-350m is post-LN
 * (do_layer_norm_before false: each sublayer's LayerNorm comes after its
 * residual sum, and there is no final LayerNorm), with token embeddings
 * and head of word_embed_proj_dim, projected in and out of the hidden size:
 *   x = project_in(embed_tokens[token]) + embed_positions[pos + 2]
 *   pre-LN:  x += attn(ln_a(x));  x += fc2(relu(fc1(ln_f(x))))
 *   post-LN: x = ln_a(x + attn(x)); x = ln_f(x + fc2(relu(fc1(x))))
 *   logits = project_out(final_layer_norm(x)) @ embed_tokens^T
 * transformers 4.30 modeling_opt.py; ARCH-NOTES.md. */
#include <math.h>
#include <stdio.h>

#include "model.h"

/* OPTLearnedPositionalEmbedding: row pos + 2 (rows 0 and 1 were kept for
 * fairseq's padding). */
#define POS_OFFSET 2

static gpt2c_status config(json_t *r, const char *path, gpt2_config *c, gpt2_err *e) {
    /* OPTConfig's defaults. */
    c->n_vocab = 50272, c->n_ctx = 2048, c->n_embd = 768, c->n_head = 12, c->n_layer = 12, c->n_inner = 3072;
    c->act = ACT_RELU;
    c->pre_ln = 1;
    c->tied = 1;
    int remove_final = 0, bias = 1, affine = 1;
    gpt2c_status s;
    if ((s = cfg_int(r, path, "vocab_size", 1, GPT2_MAX_VOCAB, &c->n_vocab, e)) ||
        (s = cfg_int(r, path, "max_position_embeddings", 1, GPT2_MAX_CTX, &c->n_ctx, e)) ||
        (s = cfg_int(r, path, "hidden_size", 1, GPT2_MAX_EMBD, &c->n_embd, e)) ||
        (s = cfg_int(r, path, "num_attention_heads", 1, GPT2_MAX_EMBD, &c->n_head, e)) ||
        (s = cfg_int(r, path, "num_hidden_layers", 1, GPT2_MAX_LAYER, &c->n_layer, e)) ||
        (s = cfg_int(r, path, "ffn_dim", 1, 4 * GPT2_MAX_EMBD, &c->n_inner, e)) ||
        (s = cfg_int(r, path, "word_embed_proj_dim", 1, GPT2_MAX_EMBD, &c->n_proj, e)) ||
        (s = cfg_bool(r, path, "do_layer_norm_before", &c->pre_ln, e)) ||
        (s = cfg_bool(r, path, "_remove_final_layer_norm", &remove_final, e)) ||
        (s = cfg_bool(r, path, "enable_bias", &bias, e)) ||
        (s = cfg_bool(r, path, "layer_norm_elementwise_affine", &affine, e)) ||
        (s = cfg_bool(r, path, "tie_word_embeddings", &c->tied, e)) ||
        (s = cfg_act(r, path, "activation_function", &c->act, e)))
        return s;
    if (!bias || !affine)
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: %s false is not supported", path,
                       bias ? "layer_norm_elementwise_affine" : "enable_bias");
    if (c->n_proj > c->n_embd)
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: word_embed_proj_dim %d above hidden_size %d is not supported",
                       path, c->n_proj, c->n_embd);
    c->final_ln = c->pre_ln && !remove_final;
    return cfg_check(path, c, "hidden_size", "num_attention_heads", e);
}

/* A layer's tensors, after "model.decoder.layers.N."; nn.Linear weights are (out, in). */
static const layer_tensor LAYER[] = {
    LAYER_MATRIX("self_attn.q_proj.weight", q_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("self_attn.q_proj.bias", q_b, DIM_C),
    LAYER_MATRIX("self_attn.k_proj.weight", k_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("self_attn.k_proj.bias", k_b, DIM_C),
    LAYER_MATRIX("self_attn.v_proj.weight", v_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("self_attn.v_proj.bias", v_b, DIM_C),
    LAYER_MATRIX("self_attn.out_proj.weight", o_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("self_attn.out_proj.bias", o_b, DIM_C),
    LAYER_VECTOR("self_attn_layer_norm.weight", ln1_g, DIM_C),
    LAYER_VECTOR("self_attn_layer_norm.bias", ln1_b, DIM_C),
    LAYER_MATRIX("fc1.weight", fc_w, DIM_F, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("fc1.bias", fc_b, DIM_F),
    LAYER_MATRIX("fc2.weight", proj_w, DIM_C, DIM_F, MAT_LINEAR),
    LAYER_VECTOR("fc2.bias", proj_b, DIM_C),
    LAYER_VECTOR("final_layer_norm.weight", ln2_g, DIM_C),
    LAYER_VECTOR("final_layer_norm.bias", ln2_b, DIM_C),
};

static gpt2c_status load(gpt2c_model *m) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, E = c->n_proj;
    gpt2c_status s;
    if ((s = model_embedding_head(m, "model.decoder.embed_tokens.weight", "lm_head.weight")) ||
        (s = model_matrix(m, "model.decoder.embed_positions.weight", c->n_ctx + POS_OFFSET, C, MAT_PLAIN, &m->wpe)))
        return s;
    if (c->final_ln && ((s = model_vector(m, "model.decoder.final_layer_norm.weight", C, &m->lnf_g)) ||
                        (s = model_vector(m, "model.decoder.final_layer_norm.bias", C, &m->lnf_b))))
        return s;
    if (E != C && ((s = model_matrix(m, "model.decoder.project_in.weight", C, E, MAT_LINEAR, &m->proj_in)) ||
                   (s = model_matrix(m, "model.decoder.project_out.weight", E, C, MAT_LINEAR, &m->proj_out))))
        return s;
    return model_layers(m, "model.decoder.layers.%d.", LAYER, sizeof LAYER / sizeof *LAYER);
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, E = c->n_proj;
    const float scaling = (float)(1.0 / sqrt((double)(C / c->n_head)));
    float *x = s->x, *h = s->h; // (n, C) each

    if (E != C) {
        fwd_embed(m, b, i0, n, E, h);
        fwd_linear(m, s, x, h, m->proj_in, NULL, n, E, C);
    } else {
        fwd_embed(m, b, i0, n, C, x);
    }
    fwd_add_positions(s, m->wpe, b, i0, n, C, POS_OFFSET, x);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];

        /* Attention: q = (x Wq + bq) * head_dim^-0.5, then softmax(q k^T) v. */
        const float *in = x;
        if (c->pre_ln) fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C), in = h;
        fwd_qkv_separate(m, s, L, in, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < C; j++) s->qkv[(size_t)i * 3 * C + j] *= scaling;
        fwd_attention(m, s, b, i0, n, l, 0, 1.0f);
        fwd_linear(m, s, h, s->att, L->o_w, L->o_b, n, C, C);
        fwd_add(x, h, (size_t)n * C);
        if (!c->pre_ln) fwd_layernorm(m, s, x, x, L->ln1_g, L->ln1_b, n, C);

        /* MLP. */
        in = x;
        if (c->pre_ln) fwd_layernorm(m, s, h, x, L->ln2_g, L->ln2_b, n, C), in = h;
        fwd_mlp(m, s, L, in, h, n);
        fwd_add(x, h, (size_t)n * C);
        if (!c->pre_ln) fwd_layernorm(m, s, x, x, L->ln2_g, L->ln2_b, n, C);
    }
    /* The head's end: the final LayerNorm when there is one, project_out
     * when the head is narrower than the layers. */
    const int r = fwd_select(b, i0, n, x, C, s->att);
    const float *out = s->att;
    if (c->final_ln) fwd_layernorm(m, s, h, s->att, m->lnf_g, m->lnf_b, r, C), out = h;
    if (E != C) { /* into x, whose rows are no longer needed */
        fwd_linear(m, s, x, out, m->proj_out, NULL, r, C, E);
        out = x;
    }
    fwd_head(m, s, b, i0, out, r, logits);
}

const gpt2_arch arch_opt = {"opt", "model.", config, load, forward};
