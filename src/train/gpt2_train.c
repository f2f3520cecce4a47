/* gpt2_train.c -- GPT-2's training pass (GPT2LMHeadModel in train mode,
 * dropout included): the forward pass of gpt2.c over B sequences of T tokens,
 * keeping what backward needs, and the backward pass, which mirrors it
 * from the loss back to the embeddings:
 *   x = dropout(wte[token] + wpe[pos])
 *   for each layer: x += dropout(attn(ln_1(x))); x += dropout(mlp(ln_2(x)))
 *   (attention drops its probabilities too)
 *   loss = cross-entropy(ln_f(x) @ head^T, next token)
 * Attention's probabilities are not kept: backward recomputes them. */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "train.h"

/* The saved activations, layer-major, each layer's rows N = B x T of the
 * largest batch apart; then backward's buffers and the shared scratch. */
typedef struct acts {
    float *enc;                       // (N, C) embeddings
    float *tmp_row;                   // (C,)
    float *ln1, *ln1_mean, *ln1_rstd; // (L, N, C), (L, N), (L, N)
    float *qkv;                       // (L, N, 3C)
    float *atty;                      // (L, N, C) attention's output, before its projection
    float *res2;                      // (L, N, C) the residual after attention
    float *ln2, *ln2_mean, *ln2_rstd; // (L, N, C), (L, N), (L, N)
    float *fch, *fch_act;             // (L, N, F) the MLP's hidden, before and after the activation
    float *res3;                      // (L, N, C) the residual after the MLP
    float *lnf, *lnf_mean, *lnf_rstd; // (N, C), (N,), (N,)
    float *logits;                    // (N, V); backward's d logits in place
    float *lse;                       // (N,) each row's log-sum-exp
    float *dres, *dtmp, *dqkv;        // (N, C), (N, C), (N, 3C)
    float *ddrop;                     // (N, C) a dropped sublayer output's gradient
    float *dfch, *dfch2;              // (N, F), (N, F)
    float *scratch;                   /* the products' and attention's */
} acts;

/* Lays the buffers out from base (NULL: only counts); returns the floats. */
static size_t layout(const gpt2_config *c, int B, int T, int nth, float *base, acts *a) {
    const size_t N = (size_t)B * T, C = (size_t)c->n_embd, L = (size_t)c->n_layer, F = (size_t)c->n_inner,
                 V = (size_t)c->n_vocab;
    size_t at = 0;
#define TAKE(field, count) (a->field = base ? base + at : NULL, at += ((count) + 15) / 16 * 16)
    TAKE(enc, N * C), TAKE(tmp_row, C);
    TAKE(ln1, L * N * C), TAKE(ln1_mean, L * N), TAKE(ln1_rstd, L * N);
    TAKE(qkv, L * N * 3 * C), TAKE(atty, L * N * C), TAKE(res2, L * N * C);
    TAKE(ln2, L * N * C), TAKE(ln2_mean, L * N), TAKE(ln2_rstd, L * N);
    TAKE(fch, L * N * F), TAKE(fch_act, L * N * F), TAKE(res3, L * N * C);
    TAKE(lnf, N * C), TAKE(lnf_mean, N), TAKE(lnf_rstd, N);
    TAKE(logits, N * V), TAKE(lse, N);
    TAKE(dres, N * C), TAKE(dtmp, N * C), TAKE(ddrop, N * C), TAKE(dqkv, N * 3 * C), TAKE(dfch, N * F), TAKE(dfch2, N * F);
    const size_t widest = V > 3 * C ? V : (F > 3 * C ? F : 3 * C);
    const size_t mm = op_matmul_dw_scratch(nth, (int)N, (int)widest), at_s = op_attention_scratch(nth, T, c->n_embd / c->n_head);
    TAKE(scratch, mm > at_s ? mm : at_s);
#undef TAKE
    return at;
}

static size_t act_floats(const gpt2_config *c, int B, int T, int n_threads) {
    acts a;
    return layout(c, B, T, n_threads, NULL, &a);
}

/* The attention scores' divisor in layer l (gpt2.c's). */
static float attn_scale(const gpt2_config *c, int l) {
    float s = 1.0f;
    if (c->scale_attn_weights) s = sqrtf((float)(c->n_embd / c->n_head));
    if (c->scale_by_inverse_layer) s *= (float)(l + 1);
    return s;
}

/* The layer's four products: q | k | v, the attention's output, the MLP's two. */
static void module(const gpt2c_model *m, int l, int mod, gpt2_weight *w, const float **bias, int *din, int *dout) {
    const gpt2_layer *ly = &m->layers[l];
    const int C = m->cfg.n_embd, F = m->cfg.n_inner;
    switch (mod) {
    case 0: *w = ly->qkv_w, *bias = ly->qkv_b, *din = C, *dout = 3 * C; break;
    case 1: *w = ly->o_w, *bias = ly->o_b, *din = C, *dout = C; break;
    case 2: *w = ly->fc_w, *bias = ly->fc_b, *din = C, *dout = F; break;
    default: *w = ly->proj_w, *bias = ly->proj_b, *din = F, *dout = C; break;
    }
}

static void product(trainer *t, int l, int mod, float *y, const float *x, int N) {
    gpt2_weight w;
    const float *bias;
    int din, dout;
    module(t->m, l, mod, &w, &bias, &din, &dout);
    train_linear(t, w, bias, y, x, N, din, dout);
}

static void product_dx(trainer *t, int l, int mod, float *dx, const float *dy, const float *x, int N, float *scratch) {
    gpt2_weight w;
    const float *bias;
    int din, dout;
    module(t->m, l, mod, &w, &bias, &din, &dout);
    train_linear_dx(t, w, bias, dx, dy, x, N, din, dout, scratch);
}

/* The dropout sites: per layer the attention's probabilities, its output
 * and the MLP's output (resid_pdrop both), then the embeddings. Off
 * outside training mode. */
enum { SITE_ATTN, SITE_ATTN_OUT, SITE_MLP_OUT, SITES_PER_LAYER };
static op_dropout dropout(const trainer *t, float p, int l, int site) {
    const uint64_t s = (uint64_t)l * SITES_PER_LAYER + (uint64_t)site;
    return (op_dropout){t->training ? p : 0.0f, op_dropout_key(t->drop_seed, t->drop_counter, s)};
}


static double forward(trainer *t, const int32_t *tokens, int B, int T) {
    const gpt2c_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, L = c->n_layer, F = c->n_inner, V = c->n_vocab, N = B * T;
    const size_t NM = (size_t)t->B * t->T; /* a layer's stride */
    gpt2_pool *p = t->pool;
    acts a;
    layout(c, t->B, t->T, pool_size(p), t->acts, &a);

    for (int i = 0; i < N; i++) { // (N, C), in whatever dtype the embeddings are (frozen under LoRA)
        float *x = a.enc + (size_t)i * C;
        weight_to_f32(m->wte, (size_t)tokens[i] * C, (size_t)C, x);
        weight_to_f32(m->wpe, (size_t)(i % T) * C, (size_t)C, a.tmp_row);
        fwd_add(x, a.tmp_row, (size_t)C);
    }
    op_dropout_apply(p, a.enc, (size_t)N * C, dropout(t, t->pdrop_embd, L, 0));

    for (int l = 0; l < L; l++) {
        const gpt2_layer *ly = &m->layers[l];
        const float *res = l ? a.res3 + (l - 1) * NM * C : a.enc;
        float *ln1 = a.ln1 + l * NM * C, *qkv = a.qkv + l * NM * 3 * C, *atty = a.atty + l * NM * C;
        float *res2 = a.res2 + l * NM * C, *ln2 = a.ln2 + l * NM * C, *fch = a.fch + l * NM * F;
        float *fch_act = a.fch_act + l * NM * F, *res3 = a.res3 + l * NM * C;

        op_layernorm(p, ln1, a.ln1_mean + l * NM, a.ln1_rstd + l * NM, res, ly->ln1_g, ly->ln1_b, N, C, c->eps);
        product(t, l, 0, qkv, ln1, N); // (N, 3C)
        const op_attn at = {B, T, C, c->n_head, attn_scale(c, l), 0, NULL, dropout(t, t->pdrop_attn, l, SITE_ATTN)};
        op_attention(p, m->k, atty, qkv, &at, a.scratch); // (N, C)
        product(t, l, 1, res2, atty, N);
        op_dropout_apply(p, res2, (size_t)N * C, dropout(t, t->pdrop_resid, l, SITE_ATTN_OUT));
        fwd_add(res2, res, (size_t)N * C);

        op_layernorm(p, ln2, a.ln2_mean + l * NM, a.ln2_rstd + l * NM, res2, ly->ln2_g, ly->ln2_b, N, C, c->eps);
        product(t, l, 2, fch, ln2, N); // (N, F)
        op_act(p, m->k, fch_act, fch, (size_t)N * F, c->act);
        product(t, l, 3, res3, fch_act, N);
        op_dropout_apply(p, res3, (size_t)N * C, dropout(t, t->pdrop_resid, l, SITE_MLP_OUT));
        fwd_add(res3, res2, (size_t)N * C);
    }
    op_layernorm(p, a.lnf, a.lnf_mean, a.lnf_rstd, a.res3 + (L - 1) * NM * C, m->lnf_g, m->lnf_b, N, C, c->eps);
    op_matmul(p, m->k, a.logits, a.lnf, (op_mat){m->lm_head.data, 1, m->lm_head.type}, NULL, N, C, V); // (N, V)
    return op_cross_entropy(p, a.lse, a.logits, t->targets, N, V);
}

static void backward(trainer *t, float scale) {
    const gpt2c_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const int B = t->fB, T = t->fT, C = c->n_embd, L = c->n_layer, F = c->n_inner, V = c->n_vocab, N = B * T;
    const size_t NM = (size_t)t->B * t->T;
    gpt2_pool *p = t->pool;
    const gpt2_kernels *k = m->k;
    acts a;
    layout(c, t->B, t->T, pool_size(p), t->acts, &a);
#define G(param) trainer_grad_of(t, param)

    /* The head: d logits in place, then d ln_f (N, C) and the head's matrix. */
    op_cross_entropy_dx(p, a.logits, a.lse, t->targets, N, V, scale);
    const op_mat head = {m->lm_head.data, 1, m->lm_head.type};
    op_matmul_dx(p, k, a.dtmp, a.logits, head, N, C, V);
    op_matmul_dw(p, k, G(m->lm_head.data), NULL, a.lnf, a.logits, 1, N, C, V, a.scratch);
    memset(a.dres, 0, sizeof(float) * (size_t)N * C); // (N, C) d of the residual stream
    op_layernorm_dx(p, a.dres, G(m->lnf_g), G(m->lnf_b), a.dtmp, a.res3 + (L - 1) * NM * C, a.lnf_mean,
                    a.lnf_rstd, m->lnf_g, N, C);

    for (int l = L - 1; l >= 0; l--) {
        const gpt2_layer *ly = &m->layers[l];
        const float *res = l ? a.res3 + (l - 1) * NM * C : a.enc;
        const float *ln1 = a.ln1 + l * NM * C, *qkv = a.qkv + l * NM * 3 * C, *atty = a.atty + l * NM * C;
        const float *res2 = a.res2 + l * NM * C, *ln2 = a.ln2 + l * NM * C, *fch = a.fch + l * NM * F;
        const float *fch_act = a.fch_act + l * NM * F;

        /* MLP: res3 = res2 + dropout(proj(act(fc(ln_2(res2))))). */
        memcpy(a.ddrop, a.dres, sizeof(float) * (size_t)N * C);
        op_dropout_apply(p, a.ddrop, (size_t)N * C, dropout(t, t->pdrop_resid, l, SITE_MLP_OUT));
        product_dx(t, l, 3, a.dfch2, a.ddrop, fch_act, N, a.scratch); // (N, F)
        op_act_dx(p, k, a.dfch, a.dfch2, fch, (size_t)N * F, c->act);
        product_dx(t, l, 2, a.dtmp, a.dfch, ln2, N, a.scratch); // (N, C)
        op_layernorm_dx(p, a.dres, G(ly->ln2_g), G(ly->ln2_b), a.dtmp, res2, a.ln2_mean + l * NM,
                        a.ln2_rstd + l * NM, ly->ln2_g, N, C);

        /* Attention: res2 = res + dropout(o(attn(qkv(ln_1(res))))). */
        memcpy(a.ddrop, a.dres, sizeof(float) * (size_t)N * C);
        op_dropout_apply(p, a.ddrop, (size_t)N * C, dropout(t, t->pdrop_resid, l, SITE_ATTN_OUT));
        product_dx(t, l, 1, a.dtmp, a.ddrop, atty, N, a.scratch); // (N, C) d atty
        const op_attn at = {B, T, C, c->n_head, attn_scale(c, l), 0, NULL, dropout(t, t->pdrop_attn, l, SITE_ATTN)};
        op_attention_dx(p, k, a.dqkv, a.dtmp, qkv, &at, a.scratch); // (N, 3C)
        product_dx(t, l, 0, a.dtmp, a.dqkv, ln1, N, a.scratch); // (N, C)
        op_layernorm_dx(p, a.dres, G(ly->ln1_g), G(ly->ln1_b), a.dtmp, res, a.ln1_mean + l * NM,
                        a.ln1_rstd + l * NM, ly->ln1_g, N, C);
    }

    /* The embeddings: each token's row and each position's row gather d x. */
    op_dropout_apply(p, a.dres, (size_t)N * C, dropout(t, t->pdrop_embd, L, 0));
    float *dwte = G(m->wte.data), *dwpe = G(m->wpe.data);
    for (int i = 0; dwte && dwpe && i < N; i++) {
        const float *d = a.dres + (size_t)i * C;
        fwd_add(dwte + (size_t)t->tokens[i] * C, d, (size_t)C);
        fwd_add(dwpe + (size_t)(i % T) * C, d, (size_t)C);
    }
#undef G
}

const train_arch train_gpt2 = {"gpt2", act_floats, forward, backward, NULL, {"embd_pdrop", "attn_pdrop", "resid_pdrop"},
                               {0.1f, 0.1f, 0.1f}, "c_attn"};
