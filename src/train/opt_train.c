/* opt_train.c -- OPT's training pass (OPTForCausalLM in train mode), on the
 * tape (tape.h), as opt.c runs it:
 *   x = dropout(project_in(embed_tokens[token]) + embed_positions[pos + 2])
 *   pre-LN:  x += dropout(out_proj(attn(ln(x)))); x += dropout(fc2(relu(fc1(ln(x)))))
 *   post-LN (do_layer_norm_before false, opt-350m): each sublayer's sum is
 *   then normalised
 *   q scaled by head_dim^-0.5 (here: scores divided by its inverse)
 *   loss = cross-entropy(project_out(final_layer_norm(x)) @ embed_tokens^T, next token)
 * Dropout: OPTConfig's dropout (embeddings, sublayer outputs) and
 * attention_dropout; activation_dropout (0 in the published configs) is
 * not applied. */
#include <math.h>

#include "tape.h"

static double build(tape *tp, trainer *t) {
    const gpt2c_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, E = c->n_proj;
    const float scale_div = (float)sqrt((double)(C / c->n_head));

    tv x = tp_tokens(tp, m->wte, E); // (N, E)
    if (E != C) x = tp_linear(tp, x, m->proj_in, NULL, C);
    x = tp_add(tp, x, tp_positions(tp, m->wpe, 2, C)); /* OPTLearnedPositionalEmbedding's offset */
    x = tp_dropout(tp, x, t->pdrop_embd);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];
        tv in = c->pre_ln ? tp_layernorm(tp, x, L->ln1_g, L->ln1_b, c->eps) : x;
        const tv qkv = tp_concat3(tp, tp_linear(tp, in, L->q_w, L->q_b, C), tp_linear(tp, in, L->k_w, L->k_b, C),
                                  tp_linear(tp, in, L->v_w, L->v_b, C)); // (N, 3C)
        const tv a = tp_attention(tp, qkv, c->n_head, scale_div, 0, NULL, t->pdrop_attn);
        x = tp_add(tp, x, tp_dropout(tp, tp_linear(tp, a, L->o_w, L->o_b, C), t->pdrop_resid));
        if (!c->pre_ln) x = tp_layernorm(tp, x, L->ln1_g, L->ln1_b, c->eps);

        in = c->pre_ln ? tp_layernorm(tp, x, L->ln2_g, L->ln2_b, c->eps) : x;
        x = tp_add(tp, x, tp_dropout(tp, tp_mlp(tp, m, L, in), t->pdrop_resid));
        if (!c->pre_ln) x = tp_layernorm(tp, x, L->ln2_g, L->ln2_b, c->eps);
    }
    if (c->final_ln) x = tp_layernorm(tp, x, m->lnf_g, m->lnf_b, c->eps);
    if (E != C) x = tp_linear(tp, x, m->proj_out, NULL, E);
    return tp_loss(tp, tp_linear(tp, x, m->lm_head, NULL, c->n_vocab));
}

const train_arch train_opt = {"opt", NULL, tape_forward, tape_backward, build,
                              {"dropout", "attention_dropout", "dropout"}, {0.1f, 0.0f, 0.1f}, "q_proj,v_proj"};
