/* tape.c -- the recorded training pass (tape.h): the operations' forward
 * on ops.c as they are called, and the replay that is their backward. */
#include "tape.h"

#include <stdlib.h>
#include <string.h>

#include "../core/mem.h"

typedef enum { T_ROWS, T_ADD, T_LN, T_LINEAR, T_ACT, T_DROP, T_GATHER, T_CONCAT3, T_ROTARY, T_ATTN, T_LOSS } tkind;

typedef struct tval {
    float *x;            // (maxN, width) the value, made by the planning run
    size_t cap;          /* floats x holds */
    int width;
    float *g;            /* its gradient while one is live (a pool buffer, or x itself: the logits) */
} tval;

typedef struct tnode {
    tkind kind;
    tv out, in[3];
    tv aux;              /* saved statistics: LayerNorm's mean and rstd, the loss's log-sum-exp */
    gpt2_weight w;
    const float *bias, *g, *b; /* a product's bias; LayerNorm's gain and bias */
    int din, dout, H, n_rot, interleaved;
    int *idx;            /* a gather's columns, a row gather's rows (owned) */
    size_t idx_cap;
    gpt2_act act;
    float eps, base;
    op_attn at;          /* attention's shape, mask and dropout */
    op_dropout drop;
} tnode;

typedef struct gbuf {
    float *p;
    size_t cap;
    int used;
} gbuf;

struct tape {
    trainer *t;
    int plan, failed;
    int B, T, N, maxN;
    int site;            /* the next dropout site */
    tval *v;
    int nv, cap_v;
    tnode *n;
    int nn, cap_n;
    gbuf *pool;          /* gradient buffers */
    int n_pool, cap_pool;
    float *scratch;      /* products' d weight and attention's */
    size_t scratch_cap;
    int *index;          /* tp_index's */
    size_t index_cap;
};

tape *tape_new(trainer *t) {
    tape *tp = calloc(1, sizeof *tp);
    if (tp) tp->t = t, tp->maxN = t->B * t->T;
    return tp;
}

void tape_free(tape *tp) {
    if (!tp) return;
    for (int i = 0; i < tp->cap_v; i++) free(tp->v[i].x);
    for (int i = 0; i < tp->cap_n; i++) free(tp->n[i].idx);
    for (int i = 0; i < tp->n_pool; i++) free(tp->pool[i].p);
    free(tp->v), free(tp->n), free(tp->pool), free(tp->scratch), free(tp->index);
    free(tp);
}

int tape_failed(const tape *tp) { return tp->failed; }

/* ------------------------------------------------------------ the record */

/* A new value of `width` columns: the buffer the same place in the pass
 * had before, or a new one (the planning run). -1 once memory failed. */
static tv value(tape *tp, int width) {
    if (tp->failed) return -1;
    if (tp->nv == tp->cap_v) {
        const int cap = tp->cap_v ? 2 * tp->cap_v : 64;
        tval *v = realloc(tp->v, sizeof *v * (size_t)cap);
        if (!v) return tp->failed = 1, -1;
        memset(v + tp->cap_v, 0, sizeof *v * (size_t)(cap - tp->cap_v));
        tp->v = v, tp->cap_v = cap;
    }
    tval *x = &tp->v[tp->nv];
    const size_t need = (size_t)tp->maxN * (size_t)width;
    if (x->cap < need) {
        free(x->x);
        x->x = mem_alloc(need * sizeof(float));
        x->cap = x->x ? need : 0;
        if (!x->x) return tp->failed = 1, -1;
    }
    x->width = width, x->g = NULL;
    return tp->nv++;
}

/* The next node, cleared but for its index buffer; NULL once memory failed. */
static tnode *node(tape *tp, tkind kind) {
    if (tp->failed) return NULL;
    if (tp->nn == tp->cap_n) {
        const int cap = tp->cap_n ? 2 * tp->cap_n : 64;
        tnode *n = realloc(tp->n, sizeof *n * (size_t)cap);
        if (!n) return tp->failed = 1, NULL;
        memset(n + tp->cap_n, 0, sizeof *n * (size_t)(cap - tp->cap_n));
        tp->n = n, tp->cap_n = cap;
    }
    tnode *x = &tp->n[tp->nn++];
    int *idx = x->idx;
    const size_t cap = x->idx_cap;
    memset(x, 0, sizeof *x);
    x->idx = idx, x->idx_cap = cap, x->kind = kind, x->aux = -1, x->in[0] = x->in[1] = x->in[2] = -1;
    return x;
}

/* The node's index buffer, of at least n entries. */
static int *node_idx(tape *tp, tnode *x, size_t n) {
    if (x->idx_cap < n) {
        free(x->idx);
        x->idx = malloc(n * sizeof *x->idx);
        x->idx_cap = x->idx ? n : 0;
        if (!x->idx) tp->failed = 1;
    }
    return x->idx;
}

/* Scratch of at least n floats (grown by the planning run). */
static float *scratch(tape *tp, size_t n) {
    if (tp->scratch_cap < n) {
        free(tp->scratch);
        tp->scratch = mem_alloc(n * sizeof(float));
        tp->scratch_cap = tp->scratch ? n : 0;
        if (!tp->scratch) tp->failed = 1;
    }
    return tp->scratch;
}

#define X(id) (tp->v[id].x)
#define W(id) (tp->v[id].width)
#define RUN (!tp->plan && !tp->failed)

tv tp_rows(tape *tp, gpt2_weight w, const int32_t *ids, int width) {
    const tv out = value(tp, width);
    tnode *x = node(tp, T_ROWS);
    if (!x || out < 0 || !node_idx(tp, x, (size_t)tp->maxN)) return -1;
    x->out = out, x->w = w, x->dout = width;
    for (int i = 0; i < tp->N; i++) x->idx[i] = ids ? ids[i] : 0;
    if (RUN)
        for (int i = 0; i < tp->N; i++)
            weight_to_f32(w, (size_t)x->idx[i] * (size_t)width, (size_t)width, X(out) + (size_t)i * width);
    return out;
}

tv tp_tokens(tape *tp, gpt2_weight w, int width) { return tp_rows(tp, w, tp->plan ? NULL : tp->t->tokens, width); }

tv tp_positions(tape *tp, gpt2_weight w, int offset, int width) {
    int32_t *pos = (int32_t *)scratch(tp, (size_t)tp->maxN); /* read before anything else uses the scratch */
    if (!pos) return -1;
    for (int i = 0; i < tp->N; i++) pos[i] = i % tp->T + offset;
    return tp_rows(tp, w, pos, width);
}

tv tp_add(tape *tp, tv a, tv b) {
    const tv out = value(tp, a < 0 ? 0 : W(a));
    tnode *x = node(tp, T_ADD);
    if (!x || out < 0 || a < 0 || b < 0) return tp->failed = 1, -1;
    x->out = out, x->in[0] = a, x->in[1] = b;
    if (RUN)
        for (size_t i = 0; i < (size_t)tp->N * W(a); i++) X(out)[i] = X(a)[i] + X(b)[i];
    return out;
}

tv tp_layernorm(tape *tp, tv in, const float *g, const float *b, float eps) {
    const int d = in < 0 ? 0 : W(in);
    const tv out = value(tp, d), aux = value(tp, 2);
    tnode *x = node(tp, T_LN);
    if (!x || out < 0 || in < 0) return tp->failed = 1, -1;
    x->out = out, x->in[0] = in, x->aux = aux, x->g = g, x->b = b, x->eps = eps;
    if (RUN) op_layernorm(tp->t->pool, X(out), X(aux), X(aux) + tp->N, X(in), g, b, tp->N, d, eps);
    return out;
}

tv tp_linear(tape *tp, tv in, gpt2_weight w, const float *bias, int dout) {
    const tv out = value(tp, dout);
    tnode *x = node(tp, T_LINEAR);
    if (!x || out < 0 || in < 0) return tp->failed = 1, -1;
    x->out = out, x->in[0] = in, x->w = w, x->bias = bias, x->din = W(in), x->dout = dout;
    if (tp->plan) scratch(tp, op_matmul_dw_scratch(pool_size(tp->t->pool), tp->maxN, dout > x->din ? dout : x->din));
    if (RUN) train_linear(tp->t, w, bias, X(out), X(in), tp->N, x->din, dout);
    return out;
}

tv tp_act(tape *tp, tv in, gpt2_act act) {
    const tv out = value(tp, in < 0 ? 0 : W(in));
    tnode *x = node(tp, T_ACT);
    if (!x || out < 0 || in < 0) return tp->failed = 1, -1;
    x->out = out, x->in[0] = in, x->act = act;
    if (RUN) op_act(tp->t->pool, tp->t->m->k, X(out), X(in), (size_t)tp->N * W(in), act);
    return out;
}

/* The mask of the pass's next dropout site, off outside training mode. */
static op_dropout next_site(tape *tp, float p) {
    const trainer *t = tp->t;
    const uint64_t site = (uint64_t)tp->site++;
    return (op_dropout){t->training ? p : 0.0f, op_dropout_key(t->drop_seed, t->drop_counter, site)};
}

tv tp_dropout(tape *tp, tv in, float p) {
    const op_dropout d = next_site(tp, p);
    if (d.p <= 0.0f) return in; /* nothing recorded: the identity */
    const tv out = value(tp, in < 0 ? 0 : W(in));
    tnode *x = node(tp, T_DROP);
    if (!x || out < 0 || in < 0) return tp->failed = 1, -1;
    x->out = out, x->in[0] = in, x->drop = d;
    if (RUN) {
        memcpy(X(out), X(in), sizeof(float) * (size_t)tp->N * W(in));
        op_dropout_apply(tp->t->pool, X(out), (size_t)tp->N * W(in), d);
    }
    return out;
}

tv tp_gather(tape *tp, tv in, const int *idx, int dout) {
    const tv out = value(tp, dout);
    tnode *x = node(tp, T_GATHER);
    if (!x || out < 0 || in < 0 || !node_idx(tp, x, (size_t)dout)) return tp->failed = 1, -1;
    x->out = out, x->in[0] = in, x->din = W(in), x->dout = dout;
    memcpy(x->idx, idx, sizeof *idx * (size_t)dout);
    if (RUN) op_gather_cols(tp->t->pool, X(out), X(in), x->idx, tp->N, x->din, dout);
    return out;
}

int *tp_index(tape *tp, size_t n) {
    if (tp->index_cap < n) {
        free(tp->index);
        tp->index = malloc(n * sizeof *tp->index);
        tp->index_cap = tp->index ? n : 0;
    }
    if (!tp->index) tp->failed = 1;
    return tp->index;
}

tv tp_concat3(tape *tp, tv a, tv b, tv c) {
    const tv out = a < 0 || b < 0 || c < 0 ? -1 : value(tp, W(a) + W(b) + W(c));
    tnode *x = node(tp, T_CONCAT3);
    if (!x || out < 0) return tp->failed = 1, -1;
    x->out = out, x->in[0] = a, x->in[1] = b, x->in[2] = c;
    for (int i = 0; RUN && i < tp->N; i++)
        for (int k = 0, at = 0; k < 3; at += W(x->in[k]), k++)
            memcpy(X(out) + (size_t)i * W(out) + at, X(x->in[k]) + (size_t)i * W(x->in[k]),
                   sizeof(float) * (size_t)W(x->in[k]));
    return out;
}

tv tp_rotary(tape *tp, tv qkv, int H, int n_rot, float base, int interleaved) {
    const tv out = value(tp, qkv < 0 ? 0 : W(qkv));
    tnode *x = node(tp, T_ROTARY);
    if (!x || out < 0 || qkv < 0) return tp->failed = 1, -1;
    x->out = out, x->in[0] = qkv, x->H = H, x->n_rot = n_rot, x->base = base, x->interleaved = interleaved;
    if (RUN) {
        memcpy(X(out), X(qkv), sizeof(float) * (size_t)tp->N * W(qkv));
        const int C = W(qkv) / 3;
        fwd_rope(X(out), tp->N, NULL, tp->T, C, C / H, H, H, n_rot, base, interleaved, 0);
    }
    return out;
}

tv tp_attention(tape *tp, tv qkv, int H, float scale_div, int window, const float *alibi, float p) {
    const op_dropout d = next_site(tp, p);
    const int C = qkv < 0 ? 0 : W(qkv) / 3;
    const tv out = value(tp, C);
    tnode *x = node(tp, T_ATTN);
    if (!x || out < 0 || qkv < 0) return tp->failed = 1, -1;
    x->out = out, x->in[0] = qkv;
    x->at = (op_attn){tp->B, tp->T, C, H, scale_div, window, alibi, d};
    if (tp->plan) scratch(tp, op_attention_scratch(pool_size(tp->t->pool), tp->T, C / H));
    if (RUN) op_attention(tp->t->pool, tp->t->m->k, X(out), X(qkv), &x->at, tp->scratch);
    return out;
}

double tp_loss(tape *tp, tv logits) {
    const tv aux = value(tp, 1);
    tnode *x = node(tp, T_LOSS);
    if (!x || aux < 0 || logits < 0) return tp->failed = 1, 0.0;
    x->in[0] = logits, x->aux = aux, x->out = -1;
    return RUN ? op_cross_entropy(tp->t->pool, X(aux), X(logits), tp->t->targets, tp->N, W(logits)) : 0.0;
}

/* ---------------------------------------------------------------- blocks */

tv tp_mlp(tape *tp, const gpt2c_model *m, const gpt2_layer *L, tv x) {
    const tv h = tp_linear(tp, x, L->fc_w, L->fc_b, m->cfg.n_inner);
    return tp_linear(tp, tp_act(tp, h, m->cfg.act), L->proj_w, L->proj_b, m->cfg.n_embd);
}

tv tp_unfuse_heads(tape *tp, tv qkv, int H) {
    const int C = qkv < 0 ? 0 : W(qkv) / 3, hd = C / H;
    int *idx = tp_index(tp, (size_t)3 * C);
    if (!idx) return -1;
    for (int part = 0; part < 3; part++) // (H, 3, hd) -> (3, H, hd)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < hd; d++) idx[part * C + h * hd + d] = (h * 3 + part) * hd + d;
    return tp_gather(tp, qkv, idx, 3 * C);
}

double tp_final_loss(tape *tp, const gpt2c_model *m, tv x) {
    const gpt2_config *c = &m->cfg;
    x = tp_layernorm(tp, x, m->lnf_g, m->lnf_b, c->eps);
    return tp_loss(tp, tp_linear(tp, x, m->lm_head, m->lm_head_b, c->n_vocab));
}

/* ------------------------------------------------------------ the replay */

/* A gradient buffer for n floats from the pool (NULL: no memory). */
static float *pool_get(tape *tp, size_t n) {
    int best = -1;
    for (int i = 0; i < tp->n_pool; i++)
        if (!tp->pool[i].used && tp->pool[i].cap >= n && (best < 0 || tp->pool[i].cap < tp->pool[best].cap)) best = i;
    if (best < 0) {
        if (tp->n_pool == tp->cap_pool) {
            const int cap = tp->cap_pool ? 2 * tp->cap_pool : 16;
            gbuf *p = realloc(tp->pool, sizeof *p * (size_t)cap);
            if (!p) return tp->failed = 1, NULL;
            tp->pool = p, tp->cap_pool = cap;
        }
        float *p = mem_alloc(n * sizeof(float));
        if (!p) return tp->failed = 1, NULL;
        tp->pool[tp->n_pool] = (gbuf){p, n, 0};
        best = tp->n_pool++;
    }
    tp->pool[best].used = 1;
    return tp->pool[best].p;
}

static void pool_put(tape *tp, float *p) {
    for (int i = 0; i < tp->n_pool; i++)
        if (tp->pool[i].p == p) tp->pool[i].used = 0;
}

/* Value v's gradient to add to: made, zeroed, at its first use. */
static float *grad(tape *tp, tv v) {
    tval *x = &tp->v[v];
    if (!x->g) {
        x->g = pool_get(tp, (size_t)tp->maxN * (size_t)x->width);
        if (x->g && RUN) memset(x->g, 0, sizeof(float) * (size_t)tp->N * x->width);
    }
    return x->g;
}

/* Node x's backward: its output's gradient g to its inputs and parameters. */
static void backward_node(tape *tp, const tnode *x, const float *g, float scale) {
    trainer *t = tp->t;
    gpt2_pool *p = t->pool;
    const int N = tp->N;
    const size_t nw = x->out >= 0 ? (size_t)N * W(x->out) : 0;
    switch (x->kind) {
    case T_ROWS: { /* one thread: rows may repeat */
        float *dw = trainer_grad_of(t, x->w.data);
        for (int i = 0; RUN && dw && i < N; i++)
            fwd_add(dw + (size_t)x->idx[i] * x->dout, g + (size_t)i * x->dout, (size_t)x->dout);
        break;
    }
    case T_ADD:
        for (int k = 0; k < 2; k++) {
            float *d = grad(tp, x->in[k]);
            if (d && RUN) fwd_add(d, g, nw);
        }
        break;
    case T_LN: {
        float *d = grad(tp, x->in[0]);
        if (d && RUN)
            op_layernorm_dx(p, d, trainer_grad_of(t, x->g), trainer_grad_of(t, x->b), g, X(x->in[0]), X(x->aux),
                            X(x->aux) + N, x->g, N, W(x->in[0]));
        break;
    }
    case T_LINEAR: { /* dx is written: straight into a new gradient, else beside it and added */
        const int fresh = !tp->v[x->in[0]].g;
        float *d = grad(tp, x->in[0]), *tmp = fresh ? d : pool_get(tp, (size_t)tp->maxN * x->din);
        if (d && tmp && RUN) {
            train_linear_dx(t, x->w, x->bias, tmp, g, X(x->in[0]), N, x->din, x->dout, tp->scratch);
            if (!fresh) fwd_add(d, tmp, (size_t)N * x->din);
        }
        if (tmp && !fresh) pool_put(tp, tmp);
        break;
    }
    case T_GATHER: {
        float *d = grad(tp, x->in[0]);
        if (d && RUN) op_gather_cols_dx(p, d, g, x->idx, N, x->din, x->dout);
        break;
    }
    case T_CONCAT3:
        for (int k = 0, at = 0; k < 3; at += W(x->in[k]), k++) {
            float *d = grad(tp, x->in[k]);
            const int w = W(x->in[k]);
            for (int i = 0; d && RUN && i < N; i++)
                fwd_add(d + (size_t)i * w, g + (size_t)i * W(x->out) + at, (size_t)w);
        }
        break;
    case T_ACT:
    case T_DROP:
    case T_ROTARY:
    case T_ATTN: { /* d input written beside the gradient, then added */
        const size_t ni = (size_t)N * W(x->in[0]);
        float *d = grad(tp, x->in[0]), *tmp = pool_get(tp, (size_t)tp->maxN * W(x->in[0]));
        if (d && tmp && RUN) {
            if (x->kind == T_ACT) op_act_dx(p, t->m->k, tmp, g, X(x->in[0]), ni, x->act);
            else if (x->kind == T_ATTN) op_attention_dx(p, t->m->k, tmp, g, X(x->in[0]), &x->at, tp->scratch);
            else memcpy(tmp, g, sizeof(float) * ni);
            if (x->kind == T_DROP) op_dropout_apply(p, tmp, ni, x->drop); /* the same mask */
            if (x->kind == T_ROTARY) { /* rotated back: a rotation's transpose is its inverse */
                const int C = W(x->in[0]) / 3;
                fwd_rope(tmp, N, NULL, tp->T, C, C / x->H, x->H, x->H, x->n_rot, x->base, x->interleaved, 1);
            }
            fwd_add(d, tmp, ni);
        }
        if (tmp) pool_put(tp, tmp);
        break;
    }
    case T_LOSS: { /* d logits in place of the logits, which nothing needs now */
        tval *lg = &tp->v[x->in[0]];
        if (RUN) op_cross_entropy_dx(p, lg->x, X(x->aux), t->targets, N, lg->width, scale);
        lg->g = lg->x;
        break;
    }
    }
}

void tape_backward(trainer *t, float scale) {
    tape *tp = t->tape;
    for (int k = tp->nn - 1; k >= 0 && !tp->failed; k--) {
        const tnode *x = &tp->n[k];
        if (x->kind == T_LOSS) {
            backward_node(tp, x, NULL, scale);
            continue;
        }
        tval *o = &tp->v[x->out];
        if (!o->g) continue; /* no gradient reached it */
        backward_node(tp, x, o->g, scale);
        if (o->g != o->x) pool_put(tp, o->g);
        o->g = NULL;
    }
    /* Whatever gradient is left (the embeddings' own values) goes back. */
    for (int i = 0; i < tp->nv; i++) {
        if (tp->v[i].g && tp->v[i].g != tp->v[i].x) pool_put(tp, tp->v[i].g);
        tp->v[i].g = NULL;
    }
}

double tape_forward(trainer *t, const int32_t *tokens, int B, int T) {
    (void)tokens;
    tape *tp = t->tape;
    tp->B = B, tp->T = T, tp->N = B * T, tp->nv = tp->nn = tp->site = 0;
    return t->arch->build(tp, t);
}

gpt2c_status tape_plan(trainer *t, gpt2_err *e) {
    tape *tp = t->tape;
    tp->plan = 1;
    tp->B = t->B, tp->T = t->T, tp->N = t->B * t->T, tp->nv = tp->nn = tp->site = 0;
    t->arch->build(tp, t);
    tape_backward(t, 1.0f);
    tp->plan = 0;
    if (tp->failed)
        return err_set(e, GPT2C_ERR_NOMEM, "out of memory for the training pass's activations (%d x %d tokens)",
                       t->B, t->T);
    return GPT2C_OK;
}
