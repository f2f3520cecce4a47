/* gpt_neox_train.c -- GPT-NeoX's training pass (GPTNeoXForCausalLM, the
 * Pythia suite), on the tape (tape.h), as gpt_neox.c runs it:
 *   a = dense(attn(rotary(q | k | v of input_layernorm(x)))), scores / sqrt(head dim)
 *   parallel:   x = x + (mlp(post_attention_layernorm(x)) + a)
 *   sequential: x = x + a; x = x + mlp(post_attention_layernorm(x))
 *   loss = cross-entropy(final_layer_norm(x) @ embed_out^T, next token)
 * transformers 4.30's GPT-NeoX has no dropout. */
#include <math.h>

#include "tape.h"

static double build(tape *tp, trainer *t) {
    const gpt2c_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;

    tv x = tp_tokens(tp, m->wte, C); // (N, C)
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];
        const tv h = tp_layernorm(tp, x, L->ln1_g, L->ln1_b, c->eps);
        tv qkv = tp_unfuse_heads(tp, tp_linear(tp, h, L->qkv_w, L->qkv_b, 3 * C), c->n_head); // (N, 3C)
        qkv = tp_rotary(tp, qkv, c->n_head, c->n_rot, c->rope_base, 0);
        const tv a = tp_linear(tp, tp_attention(tp, qkv, c->n_head, sqrtf((float)hd), 0, NULL, 0.0f), L->o_w, L->o_b, C);
        if (c->parallel_residual) {
            const tv f = tp_mlp(tp, m, L, tp_layernorm(tp, x, L->ln2_g, L->ln2_b, c->eps));
            x = tp_add(tp, x, tp_add(tp, f, a));
        } else {
            x = tp_add(tp, x, a);
            x = tp_add(tp, x, tp_mlp(tp, m, L, tp_layernorm(tp, x, L->ln2_g, L->ln2_b, c->eps)));
        }
    }
    return tp_final_loss(tp, m, x);
}

const train_arch train_gpt_neox = {"gpt_neox", NULL, tape_forward, tape_backward, build, {NULL, NULL, NULL},
                                   {0.0f, 0.0f, 0.0f}, "query_key_value"};
