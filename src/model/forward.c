/* forward.c -- the GPT-2 forward pass over a batch of tokens with a KV
 * cache, as in "Language Models are Unsupervised Multitask Learners":
 *   x = wte[token] + wpe[pos]
 *   for each layer: x += attn(ln_1(x)); x += mlp(ln_2(x))
 *   logits = ln_f(x) @ wte^T
 * Tokens of different sequences run together: the matrix products see one
 * (n, C) block, and only attention looks at which sequence a token is in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"

gpt2c_status gpt2_state_init(gpt2_state *s, const gpt2c_model *m, int n_slots, int n_pos, int max_tokens,
                             gpt2_err *e) {
    memset(s, 0, sizeof *s);
    const gpt2_config *c = &m->cfg;
    if (n_slots < 1 || n_pos < 1 || n_pos > c->n_ctx || max_tokens < 1)
        return err_set(e, GPT2C_ERR_INVALID, "state: bad size (%d slots, %d positions)", n_slots, n_pos);
    s->n_slots = n_slots;
    s->n_pos = n_pos;
    s->max_tokens = max_tokens;
    const size_t C = (size_t)c->n_embd, T = (size_t)max_tokens;
    const size_t cache = (size_t)c->n_layer * (size_t)n_slots * (size_t)n_pos * C;
    s->k_cache = malloc(cache * sizeof(float));
    s->v_cache = malloc(cache * sizeof(float));
    s->x = malloc(T * C * sizeof(float));
    s->h = malloc(T * C * sizeof(float));
    s->qkv = malloc(T * 3 * C * sizeof(float));
    s->att = malloc(T * C * sizeof(float));
    s->fc = malloc(T * (size_t)c->n_inner * sizeof(float));
    s->scores = malloc((size_t)n_pos * sizeof(float));
    if (!s->k_cache || !s->v_cache || !s->x || !s->h || !s->qkv || !s->att || !s->fc || !s->scores) {
        gpt2_state_free(s);
        return err_set(e, GPT2C_ERR_NOMEM, "out of memory for a KV cache of %d x %d positions (%.1f MiB)", n_slots,
                       n_pos, 2.0 * (double)cache * 4 / 1048576.0);
    }
    return GPT2C_OK;
}

void gpt2_state_free(gpt2_state *s) {
    free(s->k_cache);
    free(s->v_cache);
    free(s->x);
    free(s->h);
    free(s->qkv);
    free(s->att);
    free(s->fc);
    free(s->scores);
    memset(s, 0, sizeof *s);
}

gpt2c_status gpt2_state_copy_slots(gpt2_state *s, const gpt2c_model *m, const int *src, const int *dst, int n,
                                   int n_pos, gpt2_err *e) {
    const size_t C = (size_t)m->cfg.n_embd, slot = (size_t)s->n_pos * C, span = (size_t)n_pos * C;
    const size_t layer = (size_t)s->n_slots * slot;
    float *tmp = malloc((size_t)n * span * sizeof(float));
    if (!tmp) return err_set(e, GPT2C_ERR_NOMEM, "out of memory copying the KV cache");
    for (int pass = 0; pass < 2; pass++) {
        float *cache = pass ? s->v_cache : s->k_cache;
        for (int l = 0; l < m->cfg.n_layer; l++) {
            float *base = cache + (size_t)l * layer; // (n_slots, n_pos, C)
            /* A slot that keeps its own content is neither read nor written. */
            for (int i = 0; i < n; i++)
                if (src[i] != dst[i]) memcpy(tmp + i * span, base + (size_t)src[i] * slot, span * sizeof(float));
            for (int i = 0; i < n; i++)
                if (src[i] != dst[i]) memcpy(base + (size_t)dst[i] * slot, tmp + i * span, span * sizeof(float));
        }
    }
    free(tmp);
    return GPT2C_OK;
}

/* Runs tokens [i0, i0 + n) of the batch through every layer. */
static void forward_chunk(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const gpt2_config *c = &m->cfg;
    const gpt2_kernels *k = m->k;
    const int C = c->n_embd, F = c->n_inner, H = c->n_head, hd = C / H;
    const size_t slot_stride = (size_t)s->n_pos * C;                 // one slot in one layer
    const size_t layer_stride = (size_t)s->n_slots * slot_stride;    // one layer of the cache
    float *x = s->x;     // (n, C) the residual stream
    float *h = s->h;     // (n, C) normalised input / sublayer output
    float *qkv = s->qkv; // (n, 3C)
    float *att = s->att; // (n, C)
    float *fc = s->fc;   // (n, F)

    for (int i = 0; i < n; i++) {
        const float *te = m->wte + (size_t)b->token[i0 + i] * C, *pe = m->wpe + (size_t)b->pos[i0 + i] * C;
        for (int j = 0; j < C; j++) x[(size_t)i * C + j] = te[j] + pe[j];
    }
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *L = &m->layers[l];
        float *kc = s->k_cache + (size_t)l * layer_stride; // (n_slots, n_pos, C)
        float *vc = s->v_cache + (size_t)l * layer_stride;

        /* Attention: project, store this chunk's keys and values in the
         * cache, then let each token attend to its slot's positions 0..pos. */
        k->layernorm(h, x, L->ln1_g, L->ln1_b, n, C, c->eps);
        k->matmul(qkv, h, L->attn_w, L->attn_b, n, C, 3 * C);
        for (int i = 0; i < n; i++) {
            size_t at = (size_t)b->slot[i0 + i] * slot_stride + (size_t)b->pos[i0 + i] * C;
            memcpy(kc + at, qkv + (size_t)i * 3 * C + C, (size_t)C * sizeof(float));
            memcpy(vc + at, qkv + (size_t)i * 3 * C + 2 * C, (size_t)C * sizeof(float));
        }
        float scale = 1.0f;
        if (c->scale_attn_weights) scale = sqrtf((float)hd);
        if (c->scale_by_inverse_layer) scale *= (float)(l + 1);
        for (int i = 0; i < n; i++) {
            const size_t base = (size_t)b->slot[i0 + i] * slot_stride;
            for (int hh = 0; hh < H; hh++)
                k->attention(att + (size_t)i * C + hh * hd, qkv + (size_t)i * 3 * C + hh * hd,
                             kc + base + hh * hd, vc + base + hh * hd, b->pos[i0 + i] + 1, hd, (size_t)C, scale,
                             s->scores);
        }
        k->matmul(h, att, L->attn_proj_w, L->attn_proj_b, n, C, C);
        for (size_t j = 0; j < (size_t)n * C; j++) x[j] += h[j];

        /* MLP. */
        k->layernorm(h, x, L->ln2_g, L->ln2_b, n, C, c->eps);
        k->matmul(fc, h, L->fc_w, L->fc_b, n, C, F);
        k->activation(fc, (size_t)n * F, c->act);
        k->matmul(h, fc, L->fc_proj_w, L->fc_proj_b, n, F, C);
        for (size_t j = 0; j < (size_t)n * C; j++) x[j] += h[j];
    }
    /* The LM head, only for the tokens whose logits were asked for. */
    for (int i = 0; i < n; i++) {
        int row = b->out_row ? b->out_row[i0 + i] : -1;
        if (row < 0) continue;
        k->layernorm(h, x + (size_t)i * C, m->lnf_g, m->lnf_b, 1, C, c->eps);
        k->matmul_t(logits + (size_t)row * c->n_vocab, h, m->lm_head, 1, C, c->n_vocab);
    }
}

gpt2c_status gpt2_forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, float *logits, gpt2_err *e) {
    const gpt2_config *c = &m->cfg;
    for (int i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= c->n_vocab)
            return err_set(e, GPT2C_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)", b->token[i],
                           c->n_vocab - 1);
        if (b->pos[i] < 0 || b->pos[i] >= s->n_pos)
            return err_set(e, GPT2C_ERR_CONTEXT, "position %d is beyond the context of %d", b->pos[i], s->n_pos);
        if (b->slot[i] < 0 || b->slot[i] >= s->n_slots)
            return err_set(e, GPT2C_ERR_INVALID, "sequence slot %d does not exist", b->slot[i]);
    }
    for (int i0 = 0; i0 < b->n; i0 += s->max_tokens) {
        int n = b->n - i0 < s->max_tokens ? b->n - i0 : s->max_tokens;
        forward_chunk(m, s, b, i0, n, logits);
    }
    return GPT2C_OK;
}
