/* gen.c -- the generation loop with transformers' generate() semantics:
 * lengths (max_length counts the prompt, max_new_tokens wins), EOS, the
 * repetition penalty, greedy choice, and several prompts decoded together.
 * Each step runs every unfinished sequence's newest token as one batch. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../model/gpt2.h"
#include "logits.h"

#define GEN_MAX_LOGPROBS 20
#define GEN_PREFILL_CHUNK 128 /* tokens per pass: bounds scratch memory */

typedef struct gen_seq {
    int32_t *ids;     /* (n_prompt + max_new,) prompt then new tokens */
    int n_prompt, n, limit; /* limit: total length at which it stops */
    gpt2c_finish finish;
    float *lp;        /* (max_new, 1 + 2 * n_logprobs) chosen lp, then (id, lp) pairs */
} gen_seq;

struct gpt2c_gen {
    gpt2_err err;
    gpt2c_model *m;
    gpt2c_gen_params p;
    int eos;
    int n_seqs, started;
    gen_seq *seqs;
    gpt2_state st;
    float *logits;        // (n_seqs, V) the model's output
    float *scores;        // (V,) one row after processing
    unsigned char *seen;  // (V,) scratch for the repetition penalty
    int32_t *b_tok;       // batch arrays, sized for the largest pass
    int *b_pos, *b_slot, *b_row;
    double t_prefill, t_decode;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void gpt2c_gen_params_init(gpt2c_gen_params *p) {
    *p = (gpt2c_gen_params){.max_new_tokens = -1, .max_length = 20, .repetition_penalty = 1.0f,
                            .eos_token_id = -2, .use_cache = 1, .n_logprobs = 0};
}

static gpt2c_status check_params(gpt2c_gen *g, const gpt2c_gen_params *p) {
    const gpt2_config *c = &g->m->cfg;
    if (p->max_new_tokens < 0 && p->max_length < 1)
        return err_set(&g->err, GPT2C_ERR_INVALID, "max_length must be at least 1 (got %d)", p->max_length);
    if (!(p->repetition_penalty > 0.0f))
        return err_set(&g->err, GPT2C_ERR_INVALID, "repetition_penalty must be > 0 (got %g)",
                       (double)p->repetition_penalty);
    if (p->eos_token_id < -2 || p->eos_token_id >= c->n_vocab)
        return err_set(&g->err, GPT2C_ERR_INVALID, "eos_token_id %d is outside the vocabulary", p->eos_token_id);
    if (p->n_logprobs < 0 || p->n_logprobs > GEN_MAX_LOGPROBS)
        return err_set(&g->err, GPT2C_ERR_INVALID, "logprobs must be in 0..%d (got %d)", GEN_MAX_LOGPROBS,
                       p->n_logprobs);
    return GPT2C_OK;
}

gpt2c_status gpt2c_gen_start(gpt2c_model *m, const gpt2c_gen_params *p, int n_prompts,
                             const int32_t *const *prompts, const int *n_prompt_ids, gpt2c_gen **out) {
    gpt2c_gen *g = calloc(1, sizeof *g);
    *out = g;
    if (!g) return GPT2C_ERR_NOMEM;
    g->m = m;
    gpt2c_gen_params defaults;
    gpt2c_gen_params_init(&defaults);
    g->p = p ? *p : defaults;
    gpt2c_status s = check_params(g, &g->p);
    if (s) return s;
    const gpt2_config *c = &m->cfg;
    g->eos = g->p.eos_token_id == -2 ? c->eos_id : g->p.eos_token_id;
    if (n_prompts < 1 || n_prompts > 4096 || !prompts || !n_prompt_ids)
        return err_set(&g->err, GPT2C_ERR_INVALID, "need between 1 and 4096 prompts (got %d)", n_prompts);
    g->n_seqs = n_prompts;
    g->seqs = calloc((size_t)n_prompts, sizeof *g->seqs);
    if (!g->seqs) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    int max_total = 1, max_prompt = 1;
    for (int i = 0; i < n_prompts; i++) {
        gen_seq *q = &g->seqs[i];
        int n = n_prompt_ids[i];
        if (n < 1)
            return err_set(&g->err, GPT2C_ERR_INVALID,
                           "prompt %d is empty: GPT-2 needs at least one token (use \"<|endoftext|>\" to start from nothing)", i);
        if (n > c->n_ctx)
            return err_set(&g->err, GPT2C_ERR_CONTEXT, "prompt %d has %d tokens, more than the model's context of %d",
                           i, n, c->n_ctx);
        for (int j = 0; j < n; j++)
            if (prompts[i][j] < 0 || prompts[i][j] >= c->n_vocab)
                return err_set(&g->err, GPT2C_ERR_INVALID, "prompt %d: token %d = %d is outside the vocabulary", i,
                               j, prompts[i][j]);
        /* transformers always generates at least one token, even when the
         * prompt already reaches max_length. Generation also ends at the
         * context's end, where GPT-2 has no more position embeddings. */
        long limit = g->p.max_new_tokens >= 0 ? (long)n + g->p.max_new_tokens : g->p.max_length;
        if (limit < n + 1) limit = n + 1;
        if (limit > c->n_ctx) limit = c->n_ctx;
        q->n_prompt = q->n = n;
        q->limit = (int)limit;
        q->ids = malloc((size_t)(limit > n ? limit : n) * sizeof *q->ids);
        int max_new = (int)limit - n;
        q->lp = malloc((size_t)(max_new > 0 ? max_new : 1) * (1 + 2 * (size_t)g->p.n_logprobs) * sizeof(float));
        if (!q->ids || !q->lp) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
        memcpy(q->ids, prompts[i], (size_t)n * sizeof *q->ids);
        if (n >= c->n_ctx) q->finish = GPT2C_FINISH_LENGTH; /* no room for even one token */
        if (q->limit > max_total) max_total = q->limit;
        if (n > max_prompt) max_prompt = n;
    }
    /* Without the cache every step reruns whole sequences. */
    int batch_cap = n_prompts * (g->p.use_cache ? max_prompt : max_total);
    s = gpt2_state_init(&g->st, m, n_prompts, max_total, GEN_PREFILL_CHUNK, &g->err);
    if (s) return s;
    g->logits = malloc((size_t)n_prompts * c->n_vocab * sizeof(float));
    g->scores = malloc((size_t)c->n_vocab * sizeof(float));
    g->seen = calloc((size_t)c->n_vocab, 1);
    g->b_tok = malloc((size_t)batch_cap * sizeof *g->b_tok);
    g->b_pos = malloc((size_t)batch_cap * sizeof *g->b_pos);
    g->b_slot = malloc((size_t)batch_cap * sizeof *g->b_slot);
    g->b_row = malloc((size_t)batch_cap * sizeof *g->b_row);
    if (!g->logits || !g->scores || !g->seen || !g->b_tok || !g->b_pos || !g->b_slot || !g->b_row)
        return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    return GPT2C_OK;
}

/* Queues tokens [from, to) of sequence i, asking for logits after the last. */
static void queue(gpt2c_gen *g, int *nb, int i, int from, int to) {
    for (int j = from; j < to; j++) {
        g->b_tok[*nb] = g->seqs[i].ids[j];
        g->b_pos[*nb] = j;
        g->b_slot[*nb] = i;
        g->b_row[*nb] = j == to - 1 ? i : -1;
        (*nb)++;
    }
}

/* Chooses the next token of sequence i from its row of logits. */
static void choose(gpt2c_gen *g, int i) {
    const int V = g->m->cfg.n_vocab, k = g->p.n_logprobs;
    gen_seq *q = &g->seqs[i];
    const float *row = g->logits + (size_t)i * V;
    float *lp = q->lp + (size_t)(q->n - q->n_prompt) * (1 + 2 * (size_t)k);
    memcpy(g->scores, row, (size_t)V * sizeof(float));
    logits_repetition_penalty(g->scores, V, q->ids, q->n, g->p.repetition_penalty, g->seen);
    int next = logits_argmax(g->scores, V);
    /* Log-probabilities come from the model's own distribution, before any
     * processing, so they mean the same whatever the knobs. */
    double lse = logits_logsumexp(row, V);
    lp[0] = (float)(row[next] - lse);
    if (k > 0) {
        int32_t top[GEN_MAX_LOGPROBS];
        logits_top_k(row, V, k, top);
        for (int j = 0; j < k; j++) {
            lp[1 + 2 * j] = (float)top[j];
            lp[2 + 2 * j] = (float)(row[top[j]] - lse);
        }
    }
    q->ids[q->n++] = next;
    if (next == g->eos) q->finish = GPT2C_FINISH_EOS;
    else if (q->n >= q->limit) q->finish = GPT2C_FINISH_LENGTH;
}

gpt2c_status gpt2c_gen_step(gpt2c_gen *g) {
    if (g->err.status) return g->err.status;
    int nb = 0, active = 0;
    for (int i = 0; i < g->n_seqs; i++) {
        gen_seq *q = &g->seqs[i];
        if (q->finish) continue;
        active++;
        if (!g->p.use_cache) queue(g, &nb, i, 0, q->n); /* recompute the whole sequence */
        else queue(g, &nb, i, g->started ? q->n - 1 : 0, q->n);
    }
    if (active == 0) return GPT2C_DONE;
    double t0 = now_s();
    gpt2_batch b = {nb, g->b_tok, g->b_pos, g->b_slot, g->b_row};
    gpt2c_status s = gpt2_forward(g->m, &g->st, &b, g->logits, &g->err);
    if (s) return s;
    for (int i = 0; i < g->n_seqs; i++)
        if (!g->seqs[i].finish) choose(g, i);
    double dt = now_s() - t0;
    if (g->started) g->t_decode += dt;
    else g->t_prefill += dt;
    g->started = 1;
    for (int i = 0; i < g->n_seqs; i++)
        if (!g->seqs[i].finish) return GPT2C_OK;
    return GPT2C_DONE;
}

const char *gpt2c_gen_errmsg(const gpt2c_gen *g) { return err_msg_or_nomem(g ? &g->err : NULL); }
int gpt2c_gen_n_seqs(const gpt2c_gen *g) { return g->n_seqs; }

const int32_t *gpt2c_gen_tokens(const gpt2c_gen *g, int i, int *n) {
    if (i < 0 || i >= g->n_seqs) {
        *n = 0;
        return NULL;
    }
    *n = g->seqs[i].n - g->seqs[i].n_prompt;
    return g->seqs[i].ids + g->seqs[i].n_prompt;
}

gpt2c_finish gpt2c_gen_finish_reason(const gpt2c_gen *g, int i) {
    return i >= 0 && i < g->n_seqs ? g->seqs[i].finish : GPT2C_FINISH_NONE;
}

int gpt2c_gen_logprobs(const gpt2c_gen *g, int i, int j, float *chosen, int32_t *top_ids, float *top_lps) {
    if (i < 0 || i >= g->n_seqs || j < 0 || j >= g->seqs[i].n - g->seqs[i].n_prompt) return -1;
    const int k = g->p.n_logprobs;
    const float *lp = g->seqs[i].lp + (size_t)j * (1 + 2 * (size_t)k);
    if (chosen) *chosen = lp[0];
    for (int t = 0; t < k; t++) {
        if (top_ids) top_ids[t] = (int32_t)lp[1 + 2 * t];
        if (top_lps) top_lps[t] = lp[2 + 2 * t];
    }
    return k;
}

void gpt2c_gen_timings(const gpt2c_gen *g, double *prefill_s, double *decode_s) {
    *prefill_s = g->t_prefill;
    *decode_s = g->t_decode;
}

void gpt2c_gen_free(gpt2c_gen *g) {
    if (!g) return;
    for (int i = 0; i < g->n_seqs && g->seqs; i++) {
        free(g->seqs[i].ids);
        free(g->seqs[i].lp);
    }
    free(g->seqs);
    gpt2_state_free(&g->st);
    free(g->logits);
    free(g->scores);
    free(g->seen);
    free(g->b_tok);
    free(g->b_pos);
    free(g->b_slot);
    free(g->b_row);
    free(g);
}
