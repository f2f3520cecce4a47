/* bloom_train.c -- BLOOM's training pass (BloomForCausalLM in train mode),
 * on the tape (tape.h), as bloom.c runs it:
 *   x = word_embeddings_layernorm(word_embeddings[token])
 *   for each layer (r: the residual, x or, with
 *   apply_residual_connection_post_layernorm, the LayerNorm's output):
 *     h = input_layernorm(x);  x = r + dropout(dense(attn(q | k | v of h)))
 *     h = post_attention_layernorm(x);  x = r + dropout(mlp(h))
 *   attention: scores / sqrt(head dim) + ALiBi, probabilities dropped
 *   loss = cross-entropy(ln_f(x) @ word_embeddings^T, next token)
 * Dropout: BloomConfig's attention_dropout and hidden_dropout. */
#include <math.h>

#include "tape.h"

static double build(tape *tp, trainer *t) {
    const gpt2c_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;

    tv x = tp_layernorm(tp, tp_tokens(tp, m->wte, C), m->emb_ln_g, m->emb_ln_b, c->eps); // (N, C)
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];
        tv h = tp_layernorm(tp, x, L->ln1_g, L->ln1_b, c->eps);
        const tv qkv = tp_unfuse_heads(tp, tp_linear(tp, h, L->qkv_w, L->qkv_b, 3 * C), c->n_head); // (N, 3C)
        const tv a = tp_attention(tp, qkv, c->n_head, sqrtf((float)hd), 0, m->alibi, t->pdrop_attn);
        x = tp_add(tp, c->residual_post_ln ? h : x, tp_dropout(tp, tp_linear(tp, a, L->o_w, L->o_b, C), t->pdrop_resid));

        h = tp_layernorm(tp, x, L->ln2_g, L->ln2_b, c->eps);
        x = tp_add(tp, c->residual_post_ln ? h : x, tp_dropout(tp, tp_mlp(tp, m, L, h), t->pdrop_resid));
    }
    return tp_final_loss(tp, m, x);
}

const train_arch train_bloom = {"bloom", NULL, tape_forward, tape_backward, build,
                                {NULL, "attention_dropout", "hidden_dropout"}, {0.0f, 0.0f, 0.0f}, "query_key_value"};
