/* codegen.c -- Salesforce's CodeGen (CodeGenForCausalLM, model_type
 * "codegen"; codegen-350M to 16B, mono/multi/nl): GPT-J's block -- one
 * LayerNorm feeding attention and MLP side by side, rotary positions on
 * the first rotary_dim dimensions of each head in interleaved pairs -- with
 * q, k, v fused in the layout of the model-parallel training (mp_num 4),
 * no biases in attention, and an untied head with a bias:
 *   x = wte[token]
 *   for each layer: h = ln_1(x); x = (out_proj(attn(h)) + mlp(h)) + x,
 *     scores = q.k / sqrt(head dim)
 *   logits = ln_f(x) @ lm_head^T + lm_head.bias
 * transformers 4.30 modeling_codegen.py; ARCH-NOTES.md. */
#include <math.h>
#include <string.h>

#include "model.h"

/* The model-parallel groups qkv_proj's output is laid out in (mp_num). */
#define MP_NUM 4

static gpt2c_status config(json_t *r, const char *path, gpt2_config *c, gpt2_err *e) {
    /* CodeGenConfig's defaults. n_positions sizes the rotary table and the
     * causal mask: the context; n_ctx is read by nothing. */
    c->n_vocab = 50400, c->n_ctx = 2048, c->n_embd = 4096, c->n_head = 16, c->n_layer = 28;
    c->act = ACT_GELU_TANH; /* gelu_new */
    c->n_rot = 64;
    c->rope_base = 10000.0f;
    gpt2c_status s;
    if ((s = cfg_int(r, path, "vocab_size", 1, GPT2_MAX_VOCAB, &c->n_vocab, e)) ||
        (s = cfg_int(r, path, "n_positions", 1, GPT2_MAX_CTX, &c->n_ctx, e)) ||
        (s = cfg_int(r, path, "n_embd", 1, GPT2_MAX_EMBD, &c->n_embd, e)) ||
        (s = cfg_int(r, path, "n_head", 1, GPT2_MAX_EMBD, &c->n_head, e)) ||
        (s = cfg_int(r, path, "n_layer", 1, GPT2_MAX_LAYER, &c->n_layer, e)) ||
        (s = cfg_int(r, path, "n_inner", 1, 4 * GPT2_MAX_EMBD, &c->n_inner, e)) ||
        (s = cfg_float(r, path, "layer_norm_epsilon", 1e-30, 0.999, &c->eps, e)) ||
        (s = cfg_bool(r, path, "tie_word_embeddings", &c->tied, e)) ||
        (s = cfg_act(r, path, "activation_function", &c->act, e)))
        return s;
    if ((s = cfg_check(path, c, "n_embd", "n_head", e))) return s;
    /* rotary_dim null: every dimension of the head. */
    json_t *rd = json_object_get(r, "rotary_dim");
    if (rd && json_is_null(rd)) c->n_rot = c->n_embd / c->n_head;
    else if ((s = cfg_int(r, path, "rotary_dim", 0, c->n_embd / c->n_head, &c->n_rot, e))) return s;
    if (c->n_rot % 2 != 0)
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: rotary_dim %d must be even", path, c->n_rot);
    if (c->n_head % MP_NUM != 0)
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: n_head %d must be a multiple of %d (qkv_proj's layout)", path,
                       c->n_head, MP_NUM);
    return GPT2C_OK;
}

/* A layer's tensors, after "transformer.h.N."; nn.Linear weights are (out,
 * in). The causal_mask buffer beside them is not a weight. */
static const layer_tensor LAYER[] = {
    LAYER_VECTOR("ln_1.weight", ln1_g, DIM_C),
    LAYER_VECTOR("ln_1.bias", ln1_b, DIM_C),
    LAYER_MATRIX("attn.qkv_proj.weight", qkv_w, DIM_3C, DIM_C, MAT_LINEAR),
    LAYER_MATRIX("attn.out_proj.weight", o_w, DIM_C, DIM_C, MAT_LINEAR),
    LAYER_MATRIX("mlp.fc_in.weight", fc_w, DIM_F, DIM_C, MAT_LINEAR),
    LAYER_VECTOR("mlp.fc_in.bias", fc_b, DIM_F),
    LAYER_MATRIX("mlp.fc_out.weight", proj_w, DIM_C, DIM_F, MAT_LINEAR),
    LAYER_VECTOR("mlp.fc_out.bias", proj_b, DIM_C),
};

static gpt2c_status load(gpt2c_model *m) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd;
    gpt2c_status s;
    if ((s = model_embedding_head(m, "transformer.wte.weight", "lm_head.weight")) ||
        (s = model_vector(m, "lm_head.bias", c->n_vocab, &m->lm_head_b)) ||
        (s = model_vector(m, "transformer.ln_f.weight", C, &m->lnf_g)) ||
        (s = model_vector(m, "transformer.ln_f.bias", C, &m->lnf_b)))
        return s;
    return model_layers(m, "transformer.h.%d.", LAYER, sizeof LAYER / sizeof *LAYER);
}

/* s->qkv (n, 3C) from qkv_proj's layout to q | k | v, each head-major: its
 * rows are MP_NUM groups of [q | v | k], each part C / MP_NUM wide, and
 * head h = g * (H / MP_NUM) + j is slot j of group g's parts
 * (CodeGenAttention.forward, _split_heads with mp_num), so group g's q
 * part is q's heads g * (H / MP_NUM) on, and likewise v and k. */
static void unfuse_mp(gpt2_state *s, int n, int C) {
    const size_t part = (size_t)C / MP_NUM;
    for (int i = 0; i < n; i++) {
        float *row = s->qkv + (size_t)i * 3 * C;
        memcpy(s->tmp, row, (size_t)3 * C * sizeof *row);
        for (int g = 0; g < MP_NUM; g++) {
            const float *src = s->tmp + (size_t)g * 3 * part; // [q | v | k] of group g
            memcpy(row + (size_t)g * part, src, part * sizeof *row);                    // q
            memcpy(row + (size_t)C + (size_t)g * part, src + 2 * part, part * sizeof *row); // k
            memcpy(row + (size_t)2 * C + (size_t)g * part, src + part, part * sizeof *row); // v
        }
    }
}

static void forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;
    const size_t nC = (size_t)n * C;
    float *x = s->x, *h = s->h; // (n, C) the residual stream; (n, C) ln_1's output, both sublayers' input
    float *a = s->qkv;          // (n, C) the attention's output, once it has read q, k, v

    fwd_embed(m, b, i0, n, C, x);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];
        fwd_layernorm(m, s, h, x, L->ln1_g, L->ln1_b, n, C);

        /* Attention: interleaved rotary, scores / sqrt(head dim). */
        fwd_linear(m, s, s->qkv, h, L->qkv_w, NULL, n, C, 3 * C);
        unfuse_mp(s, n, C);
        fwd_rotary(m, s, b, i0, n, 1);
        fwd_attention(m, s, b, i0, n, l, 0, sqrtf((float)hd));
        fwd_linear(m, s, a, s->att, L->o_w, NULL, n, C, C);

        /* MLP beside it, from the same LayerNorm. */
        fwd_mlp(m, s, L, h, s->att, n);
        fwd_add(a, s->att, nC);
        fwd_add(x, a, nC);
    }
    fwd_final(m, s, b, i0, n, logits);
}

const gpt2_arch arch_codegen = {"codegen", "transformer.", config, load, forward};
