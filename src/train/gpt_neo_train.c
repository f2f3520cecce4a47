/* gpt_neo_train.c -- GPT-Neo's training pass (GPTNeoForCausalLM in train
 * mode), on the tape (tape.h), as gpt_neo.c runs it:
 *   x = dropout(wte[token] + wpe[pos])
 *   for each layer: x += dropout(out_proj(attn(ln_1(x)))); x += dropout(mlp(ln_2(x)))
 *   attention: q, k, v separate, scores unscaled, local layers over their
 *   window, probabilities dropped
 *   loss = cross-entropy(ln_f(x) @ wte^T, next token)
 * Dropout: GPTNeoConfig's embed_dropout, attention_dropout, resid_dropout. */
#include "tape.h"

static double build(tape *tp, trainer *t) {
    const gpt2c_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd;

    tv x = tp_add(tp, tp_tokens(tp, m->wte, C), tp_positions(tp, m->wpe, 0, C)); // (N, C)
    x = tp_dropout(tp, x, t->pdrop_embd);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];
        tv h = tp_layernorm(tp, x, L->ln1_g, L->ln1_b, c->eps);
        const tv qkv = tp_concat3(tp, tp_linear(tp, h, L->q_w, L->q_b, C), tp_linear(tp, h, L->k_w, L->k_b, C),
                                  tp_linear(tp, h, L->v_w, L->v_b, C)); // (N, 3C)
        const tv a = tp_attention(tp, qkv, c->n_head, 1.0f, L->window, NULL, t->pdrop_attn);
        x = tp_add(tp, x, tp_dropout(tp, tp_linear(tp, a, L->o_w, L->o_b, C), t->pdrop_resid));

        h = tp_layernorm(tp, x, L->ln2_g, L->ln2_b, c->eps);
        x = tp_add(tp, x, tp_dropout(tp, tp_mlp(tp, m, L, h), t->pdrop_resid));
    }
    return tp_final_loss(tp, m, x);
}

const train_arch train_gpt_neo = {"gpt_neo", NULL, tape_forward, tape_backward, build,
                                  {"embed_dropout", "attention_dropout", "resid_dropout"}, {0.0f, 0.0f, 0.0f},
                                  "q_proj,v_proj"};
