/* gpt_bigcode_train.c -- GPTBigCode's training pass (SantaCoder,
 * StarCoder: GPTBigCodeForCausalLM in train mode), on the tape (tape.h),
 * as gpt_bigcode.c runs it: GPT-2's wiring with nn.Linear weights, and
 * under multi-query attention one key and value head that every query head
 * reads (here repeated for each, so backward sums their gradients):
 *   x = dropout(wte[token] + wpe[pos])
 *   for each layer: x += dropout(c_proj(attn(ln_1(x)))); x += dropout(mlp(ln_2(x)))
 *   loss = cross-entropy(ln_f(x) @ wte^T, next token)
 * Dropout: GPTBigCodeConfig's embd_pdrop, attn_pdrop, resid_pdrop. */
#include <math.h>

#include "tape.h"

/* c_attn's output to q | k | v (N, 3C): multi-query rows are q of every
 * head, then one k and one v (hd each), repeated for every head; with as
 * many key heads as query heads, [q_h k_h v_h] per head. */
static tv spread_qkv(tape *tp, tv qkv, const gpt2_config *c) {
    const int C = c->n_embd, H = c->n_head, hd = C / H;
    if (c->n_kv_head != 1 || H == 1) return tp_unfuse_heads(tp, qkv, H);
    int *idx = tp_index(tp, (size_t)3 * C);
    if (!idx) return -1;
    for (int j = 0; j < C; j++) idx[j] = j, idx[C + j] = C + j % hd, idx[2 * C + j] = C + hd + j % hd;
    return tp_gather(tp, qkv, idx, 3 * C);
}

static double build(tape *tp, trainer *t) {
    const gpt2c_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;

    tv x = tp_add(tp, tp_tokens(tp, m->wte, C), tp_positions(tp, m->wpe, 0, C)); // (N, C)
    x = tp_dropout(tp, x, t->pdrop_embd);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];
        tv h = tp_layernorm(tp, x, L->ln1_g, L->ln1_b, c->eps);
        const tv qkv = spread_qkv(tp, tp_linear(tp, h, L->qkv_w, L->qkv_b, C + 2 * gpt2_kv_width(c)), c); // (N, 3C)
        const tv a = tp_attention(tp, qkv, c->n_head, c->scale_attn_weights ? sqrtf((float)hd) : 1.0f, 0, NULL,
                                  t->pdrop_attn);
        x = tp_add(tp, x, tp_dropout(tp, tp_linear(tp, a, L->o_w, L->o_b, C), t->pdrop_resid));

        h = tp_layernorm(tp, x, L->ln2_g, L->ln2_b, c->eps);
        x = tp_add(tp, x, tp_dropout(tp, tp_mlp(tp, m, L, h), t->pdrop_resid));
    }
    return tp_final_loss(tp, m, x);
}

const train_arch train_gpt_bigcode = {"gpt_bigcode", NULL, tape_forward, tape_backward, build,
                                      {"embd_pdrop", "attn_pdrop", "resid_pdrop"}, {0.1f, 0.1f, 0.1f}, "c_attn"};
