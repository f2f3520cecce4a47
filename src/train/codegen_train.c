/* codegen_train.c -- CodeGen's training pass (CodeGenForCausalLM in train
 * mode), on the tape (tape.h), as codegen.c runs it: attention and MLP side
 * by side from one LayerNorm,
 *   h = ln_1(x);  x = x + (dropout(out_proj(attn(h))) + dropout(mlp(h)))
 *   attention: qkv_proj's mp_num-grouped layout, interleaved rotary,
 *   scores / sqrt(head dim), probabilities dropped
 *   loss = cross-entropy(ln_f(x) @ lm_head^T + lm_head.bias, next token)
 * Dropout: CodeGenConfig's embd_pdrop, attn_pdrop, resid_pdrop. */
#include <math.h>

#include "tape.h"

/* modeling_codegen.py's mp_num (codegen.c's MP_NUM): qkv_proj's rows are
 * MP_NUM groups of [q | v | k], each part C / MP_NUM wide, group g holding
 * heads g (H / MP_NUM) on. */
#define MP_NUM 4

static tv unfuse_mp(tape *tp, tv qkv, int C) {
    const int part = C / MP_NUM;
    int *idx = tp_index(tp, (size_t)3 * C);
    if (!idx) return -1;
    for (int g = 0; g < MP_NUM; g++)
        for (int j = 0; j < part; j++) {
            const int src = g * 3 * part + j;
            idx[g * part + j] = src;                // q
            idx[C + g * part + j] = src + 2 * part; // k
            idx[2 * C + g * part + j] = src + part; // v
        }
    return tp_gather(tp, qkv, idx, 3 * C);
}

static double build(tape *tp, trainer *t) {
    const gpt2c_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;

    tv x = tp_dropout(tp, tp_tokens(tp, m->wte, C), t->pdrop_embd); // (N, C)
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];
        const tv h = tp_layernorm(tp, x, L->ln1_g, L->ln1_b, c->eps);
        tv qkv = unfuse_mp(tp, tp_linear(tp, h, L->qkv_w, NULL, 3 * C), C); // (N, 3C)
        qkv = tp_rotary(tp, qkv, c->n_head, c->n_rot, c->rope_base, 1);
        const tv a = tp_attention(tp, qkv, c->n_head, sqrtf((float)hd), 0, NULL, t->pdrop_attn);
        const tv o = tp_dropout(tp, tp_linear(tp, a, L->o_w, NULL, C), t->pdrop_resid);
        x = tp_add(tp, x, tp_add(tp, o, tp_dropout(tp, tp_mlp(tp, m, L, h), t->pdrop_resid)));
    }
    return tp_final_loss(tp, m, x);
}

const train_arch train_codegen = {"codegen", NULL, tape_forward, tape_backward, build,
                                  {"embd_pdrop", "attn_pdrop", "resid_pdrop"}, {0.0f, 0.0f, 0.0f}, "qkv_proj"};
