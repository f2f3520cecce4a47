/* gpt2.c -- the GPT-2 architecture (GPT2LMHeadModel, model_type "gpt2"), as
 * in "Language Models are Unsupervised Multitask Learners":
 *   x = wte[token] + wpe[pos]
 *   for each layer: x += attn(ln_1(x)); x += mlp(ln_2(x))
 *   logits = ln_f(x) @ wte^T
 * Its matrices are Conv1D, stored (in, out); q, k and v are one c_attn. */
#include <math.h>

#include "model.h"

static gpt2c_status config(json_t *r, const char *path, gpt2_config *c, gpt2_err *e) {
    /* transformers' GPT2Config defaults, for fields a config leaves out. */
    c->n_vocab = 50257, c->n_ctx = 1024, c->n_embd = 768, c->n_head = 12, c->n_layer = 12;
    c->act = ACT_GELU_TANH;
    c->scale_attn_weights = 1;
    gpt2c_status s;
    if ((s = cfg_int(r, path, "vocab_size", 1, GPT2_MAX_VOCAB, &c->n_vocab, e)) ||
        (s = cfg_int(r, path, "n_ctx", 1, GPT2_MAX_CTX, &c->n_ctx, e)) ||
        (s = cfg_int(r, path, "n_positions", 1, GPT2_MAX_CTX, &c->n_ctx, e)) ||
        (s = cfg_int(r, path, "n_embd", 1, GPT2_MAX_EMBD, &c->n_embd, e)) ||
        (s = cfg_int(r, path, "n_head", 1, GPT2_MAX_EMBD, &c->n_head, e)) ||
        (s = cfg_int(r, path, "n_layer", 1, GPT2_MAX_LAYER, &c->n_layer, e)) ||
        (s = cfg_int(r, path, "n_inner", 1, 4 * GPT2_MAX_EMBD, &c->n_inner, e)) ||
        (s = cfg_bool(r, path, "scale_attn_weights", &c->scale_attn_weights, e)) ||
        (s = cfg_bool(r, path, "scale_attn_by_inverse_layer_idx", &c->scale_by_inverse_layer, e)) ||
        (s = cfg_float(r, path, "layer_norm_epsilon", 1e-30, 0.999, &c->eps, e)) ||
        (s = cfg_act(r, path, "activation_function", &c->act, e)))
        return s;
    /* reorder_and_upcast_attn only changes the order in which an fp16 model
     * scales and upcasts; gpt2c computes attention in fp32 throughout, which
     * is what that option exists to achieve, so it is honoured as is. */
    int cross = 0;
    if ((s = cfg_bool(r, path, "add_cross_attention", &cross, e))) return s;
    if (cross) return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: add_cross_attention is not supported", path);
    int tie = 1;
    if ((s = cfg_bool(r, path, "tie_word_embeddings", &tie, e))) return s;
    return cfg_check(path, c, "n_embd", "n_head", e);
}

/* A layer's tensors, after "h.N." (Conv1D weights are stored (in, out)). */
static const layer_tensor LAYER[] = {
    LAYER_VECTOR("ln_1.weight", ln1_g, DIM_C),
    LAYER_VECTOR("ln_1.bias", ln1_b, DIM_C),
    LAYER_MATRIX("attn.c_attn.weight", qkv_w, DIM_C, DIM_3C, MAT_CONV1D),
    LAYER_VECTOR("attn.c_attn.bias", qkv_b, DIM_3C),
    LAYER_MATRIX("attn.c_proj.weight", o_w, DIM_C, DIM_C, MAT_CONV1D),
    LAYER_VECTOR("attn.c_proj.bias", o_b, DIM_C),
    LAYER_VECTOR("ln_2.weight", ln2_g, DIM_C),
    LAYER_VECTOR("ln_2.bias", ln2_b, DIM_C),
    LAYER_MATRIX("mlp.c_fc.weight", fc_w, DIM_C, DIM_F, MAT_CONV1D),
    LAYER_VECTOR("mlp.c_fc.bias", fc_b, DIM_F),
    LAYER_MATRIX("mlp.c_proj.weight", proj_w, DIM_F, DIM_C, MAT_CONV1D),
    LAYER_VECTOR("mlp.c_proj.bias", proj_b, DIM_C),
};

static gpt2c_status load(gpt2c_model *m) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd;
    gpt2c_status s;
    if ((s = model_matrix(m, "wte.weight", c->n_vocab, C, MAT_LINEAR, &m->wte)) ||
        (s = model_matrix(m, "wpe.weight", c->n_ctx, C, MAT_PLAIN, &m->wpe)) ||
        (s = model_vector(m, "ln_f.weight", C, &m->lnf_g)) || (s = model_vector(m, "ln_f.bias", C, &m->lnf_b)) ||
        /* GPT-2 has used a file's lm_head.weight whenever there is one. */
        (s = model_head(m, "lm_head.weight", !model_has(m, "lm_head.weight"))))
        return s;
    return model_layers(m, "h.%d.", LAYER, sizeof LAYER / sizeof *LAYER);
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;
    float *x = s->x, *h = s->h; // (n, C) the residual stream; (n, C) normalised input / sublayer output

    fwd_embed(m, b, i0, n, C, x);
    fwd_add_positions(s, m->wpe, b, i0, n, C, 0, x);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];

        /* Attention: q | k | v in one product, scores divided by
         * sqrt(head dim) (and by the layer's number when asked). */
        fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C);
        fwd_linear(m, s, s->qkv, h, L->qkv_w, L->qkv_b, n, C, 3 * C); // (n, 3C)
        float scale = 1.0f;
        if (c->scale_attn_weights) scale = sqrtf((float)hd);
        if (c->scale_by_inverse_layer) scale *= (float)(l + 1);
        fwd_attention(m, s, b, i0, n, l, 0, scale);
        fwd_linear(m, s, h, s->att, L->o_w, L->o_b, n, C, C);
        fwd_add(x, h, (size_t)n * C);

        /* MLP. */
        fwd_layernorm(m, s, h, x, L->ln2_g, L->ln2_b, n, C);
        fwd_mlp(m, s, L, h, h, n);
        fwd_add(x, h, (size_t)n * C);
    }
    fwd_final(m, s, b, i0, n, logits); /* only for the tokens whose logits were asked for */
}

const gpt2_arch arch_gpt2 = {"gpt2", "transformer.", config, load, forward};
