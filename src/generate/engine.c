/* engine.c -- continuous batching: one KV cache of n_slots sequences shared
 * by any number of generations that come and go. Each step queues the
 * newest token of every live sequence of every attached generation (and the
 * whole prompt of a generation that just joined) and runs them as one
 * forward pass, so the weights are read once per step for everybody. A
 * generation started alone (gpt2c_gen_start) runs on a private engine sized
 * for it, so there is one generation loop, not two. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "logits.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Tokens per forward chunk: bounds the scratch memory (about 52 x n_embd
 * bytes a token: 10 MB for gpt2, 21 MB for gpt2-xl). A prompt runs whole in
 * one step either way; a larger chunk gives the tiled products more rows
 * per pass over the weights. gpt2 f32 prefill, `gpt2c bench --runs 5`, two
 * alternating rounds, tokens/s, 128 -> 256: 256 tokens 1226 -> 1378-1392,
 * 512 1216-1240 -> 1346-1369, 1000 1140-1146 -> 1198-1228. */
#define ENGINE_CHUNK 256

gpt2c_status engine_create(gpt2c_model *m, int n_slots, int n_pos, int n_threads, gpt2c_engine **out) {
    gpt2c_engine *e = calloc(1, sizeof *e);
    *out = e;
    if (!e) return GPT2C_ERR_NOMEM;
    e->m = m;
    if (n_slots < 1 || n_slots > 65536)
        return err_set(&e->err, GPT2C_ERR_INVALID, "n_slots must be in 1..65536 (got %d)", n_slots);
    if (n_threads < 0 || n_threads > 1024)
        return err_set(&e->err, GPT2C_ERR_INVALID, "n_threads must be in 0..1024 (got %d)", n_threads);
    if (n_pos < 1 || n_pos > m->cfg.n_ctx) n_pos = m->cfg.n_ctx;
    gpt2c_status s = gpt2_state_init(&e->st, m, n_slots, n_pos, ENGINE_CHUNK, n_threads, &e->err);
    if (s) return s;
    e->n_slots = n_slots;
    e->n_pos = n_pos;
    e->n_threads = n_threads;
    e->rows = 1;
    /* Without the KV cache a step reruns every sequence whole. */
    e->cap = n_slots * n_pos;
    const size_t V = (size_t)m->cfg.n_vocab;
    e->used = calloc((size_t)n_slots, 1);
    e->planned = calloc((size_t)n_slots, 1);
    e->logits = malloc((size_t)n_slots * V * sizeof(float));
    e->gens = calloc((size_t)n_slots, sizeof *e->gens);
    e->b_tok = malloc((size_t)e->cap * sizeof *e->b_tok);
    e->b_pos = malloc((size_t)e->cap * sizeof *e->b_pos);
    e->b_slot = malloc((size_t)e->cap * sizeof *e->b_slot);
    e->b_row = malloc((size_t)e->cap * sizeof *e->b_row);
    e->hist = malloc((size_t)n_slots * (size_t)n_pos * sizeof *e->hist);
    e->hist_n = calloc((size_t)n_slots, sizeof *e->hist_n);
    e->prompt_cache = 1;
    if (!e->used || !e->planned || !e->logits || !e->gens || !e->b_tok || !e->b_pos || !e->b_slot || !e->b_row || !e->hist ||
        !e->hist_n)
        return err_set(&e->err, GPT2C_ERR_NOMEM, "out of memory for an engine of %d slots", n_slots);
    return GPT2C_OK;
}

gpt2c_status gpt2c_engine_new(gpt2c_model *m, int n_slots, int n_threads, gpt2c_engine **out) {
    return engine_create(m, n_slots, m->cfg.n_ctx, n_threads, out);
}

const char *gpt2c_engine_errmsg(const gpt2c_engine *e) { return err_msg_or_nomem(e ? &e->err : NULL); }

void gpt2c_engine_free(gpt2c_engine *e) {
    if (!e) return;
    gpt2c_engine_free(e->draft);
    gpt2_state_free(&e->st);
    free(e->used);
    free(e->planned);
    free(e->logits);
    free(e->gens);
    free(e->b_tok);
    free(e->b_pos);
    free(e->b_slot);
    free(e->b_row);
    free(e->hist);
    free(e->hist_n);
    free(e);
}

int gpt2c_engine_free_slots(const gpt2c_engine *e) {
    int n = 0;
    for (int i = 0; i < e->n_slots; i++) n += !e->used[i];
    return n;
}

int gpt2c_engine_n_slots(const gpt2c_engine *e) { return e->n_slots; }

void gpt2c_engine_set_prompt_cache(gpt2c_engine *e, int on) { e->prompt_cache = on != 0; }

int engine_take_slot(gpt2c_engine *e, const int32_t *ids, int n, int *reuse) {
    int best = -1, best_reuse = -1;
    for (int j = 0; j < e->n_slots; j++) {
        if (e->used[j]) continue;
        int k = 0;
        if (e->prompt_cache) k = engine_held(e, j, ids, n - 1);
        else if (best >= 0) {
            break; /* the first free slot */
        }
        if (k > best_reuse || (k == best_reuse && e->hist_n[j] < e->hist_n[best])) best = j, best_reuse = k;
    }
    e->used[best] = 1;
    *reuse = best_reuse;
    return best;
}

int engine_held(const gpt2c_engine *e, int slot, const int32_t *ids, int n) {
    const int32_t *h = e->hist + (size_t)slot * e->n_pos;
    int k = 0, lim = n < e->hist_n[slot] ? n : e->hist_n[slot];
    while (k < lim && h[k] == ids[k]) k++;
    return k;
}

void engine_slot_holds(gpt2c_engine *e, int slot, const int32_t *ids, int n) {
    memcpy(e->hist + (size_t)slot * e->n_pos, ids, (size_t)n * sizeof *ids);
    e->hist_n[slot] = n;
}

/* After a pass: the positions it wrote now hold its tokens, and a slot's
 * later positions no longer count (they were computed from other tokens, or
 * never); a failed pass leaves its slots holding nothing. */
static void note_batch(gpt2c_engine *e, const gpt2_batch *b, gpt2c_status s) {
    for (int i = 0; i < b->n; i++) {
        int slot = b->slot[i];
        e->hist[(size_t)slot * e->n_pos + b->pos[i]] = b->token[i];
        e->hist_n[slot] = s ? 0 : b->pos[i] + 1;
    }
}

void engine_queue(gpt2c_engine *e, int slot, const int32_t *ids, int from, int to, int rows) {
    for (int j = from; j < to; j++) {
        e->b_tok[e->nb] = ids[j];
        e->b_pos[e->nb] = j;
        e->b_slot[e->nb] = slot;
        e->b_row[e->nb] = j >= to - rows ? slot * e->rows + j - (to - rows) : -1;
        e->nb++;
    }
}

/* Runs the batch queued since e->nb was zeroed. */
static gpt2c_status run_batch(gpt2c_engine *e, gpt2_err *err) {
    gpt2_batch b = {e->nb, e->b_tok, e->b_pos, e->b_slot, e->b_row};
    gpt2c_status s = gpt2_forward(e->m, &e->st, &b, e->logits, err);
    note_batch(e, &b, s);
    return s;
}

/* The draft's rounds of a step: each proposes one more token for every
 * sequence still drafting, all in one pass of the draft model. */
static void draft_rounds(gpt2c_engine *e) {
    gpt2c_engine *d = e->draft;
    for (int r = 0; r < GEN_MAX_DRAFT; r++) {
        d->nb = 0;
        int any = 0;
        for (int i = 0; i < e->n_gens; i++) any |= gen_draft_plan(e->gens[i], r) > 0;
        if (!any) return;
        gpt2_err err = {0};
        gpt2c_status s = run_batch(d, &err);
        for (int i = 0; i < e->n_gens; i++)
            if (s) gen_fail(e->gens[i], &err);
            else gen_draft_after(e->gens[i], r);
        if (s) return;
    }
}

gpt2c_status gpt2c_engine_step(gpt2c_engine *e) {
    if (e->err.status) return e->err.status;
    double t0 = now_s();
    if (e->draft) draft_rounds(e);
    e->nb = 0;
    int any = 0;
    for (int i = 0; i < e->n_gens; i++) {
        e->planned[i] = gen_plan(e->gens[i]) > 0;
        any |= e->planned[i];
    }
    if (!any) return GPT2C_DONE;
    gpt2_err err = {0};
    gpt2c_status s = run_batch(e, &err);
    double dt = now_s() - t0;
    for (int i = 0; i < e->n_gens; i++) {
        if (!e->planned[i]) continue;
        /* A failed pass (which checked inputs make unreachable) ends the
         * generations that were in it; the engine itself stays usable. */
        if (s) gen_fail(e->gens[i], &err);
        else gen_after(e->gens[i], dt);
    }
    return s ? s : GPT2C_OK;
}

/* Checks a sequence the engine is to run whole and finds it a free slot. */
static gpt2c_status whole_sequence(gpt2c_engine *e, const int32_t *ids, int n, int *slot) {
    const int V = e->m->cfg.n_vocab;
    err_clear(&e->err);
    if (n < 1 || n > e->n_pos)
        return err_set(&e->err, GPT2C_ERR_CONTEXT, "%d tokens do not fit the context of %d", n, e->n_pos);
    for (int j = 0; j < n; j++)
        if (ids[j] < 0 || ids[j] >= V)
            return err_set(&e->err, GPT2C_ERR_INVALID, "token %d = %d is outside the vocabulary", j, ids[j]);
    *slot = 0;
    while (*slot < e->n_slots && e->used[*slot]) (*slot)++;
    if (*slot == e->n_slots) return err_set(&e->err, GPT2C_ERR_BUSY, "every slot of the engine is taken");
    return GPT2C_OK;
}

/* Runs ids[j0, j1) at their positions in slot, token j writing row j - j0
 * of logits. */
static gpt2c_status run_rows(gpt2c_engine *e, int slot, const int32_t *ids, int j0, int j1, float *logits) {
    for (int j = 0; j < j1 - j0; j++) {
        e->b_tok[j] = ids[j0 + j];
        e->b_pos[j] = j0 + j;
        e->b_slot[j] = slot;
        e->b_row[j] = j;
    }
    gpt2_batch b = {j1 - j0, e->b_tok, e->b_pos, e->b_slot, e->b_row};
    gpt2c_status s = gpt2_forward(e->m, &e->st, &b, logits, &e->err);
    note_batch(e, &b, s);
    return s;
}

gpt2c_status gpt2c_engine_score(gpt2c_engine *e, const int32_t *ids, int n, int k, float *chosen, int32_t *top_ids,
                                float *top_lps) {
    const int V = e->m->cfg.n_vocab;
    int slot;
    gpt2c_status s = whole_sequence(e, ids, n, &slot);
    if (s) return s;
    if (k < 0 || k > 20) return err_set(&e->err, GPT2C_ERR_INVALID, "k must be in 0..20 (got %d)", k);
    chosen[0] = NAN;
    for (int t = 0; t < k; t++) {
        top_ids[t] = -1;
        top_lps[t] = NAN;
    }
    /* Chunks of up to n_slots tokens, as many as the engine's logits hold:
     * the row of token j predicts token j + 1. */
    for (int j0 = 0; j0 < n - 1; j0 += e->n_slots) {
        int j1 = j0 + e->n_slots < n - 1 ? j0 + e->n_slots : n - 1;
        if ((s = run_rows(e, slot, ids, j0, j1, e->logits))) return s;
        for (int j = j0; j < j1; j++)
            logits_logprobs(e->logits + (size_t)(j - j0) * V, V, ids[j + 1], k, &chosen[j + 1],
                            top_ids + (size_t)(j + 1) * k, top_lps + (size_t)(j + 1) * k);
    }
    return GPT2C_OK;
}

gpt2c_status gpt2c_engine_set_draft(gpt2c_engine *e, gpt2c_model *draft, int num_assistant_tokens) {
    err_clear(&e->err);
    if (e->n_gens) return err_set(&e->err, GPT2C_ERR_BUSY, "a draft can only be set on an engine with no generations");
    if (num_assistant_tokens < 1 || num_assistant_tokens > GEN_MAX_DRAFT)
        return err_set(&e->err, GPT2C_ERR_INVALID, "num_assistant_tokens must be in 1..%d (got %d)", GEN_MAX_DRAFT,
                       num_assistant_tokens);
    if (draft && draft->cfg.n_vocab != e->m->cfg.n_vocab)
        return err_set(&e->err, GPT2C_ERR_INVALID,
                       "the draft model's vocabulary has %d tokens, the model's %d: a draft must share its tokenizer",
                       draft->cfg.n_vocab, e->m->cfg.n_vocab);
    gpt2c_engine_free(e->draft);
    e->draft = NULL;
    const int rows = draft ? 1 + GEN_MAX_DRAFT : 1;
    float *l = realloc(e->logits, (size_t)e->n_slots * rows * (size_t)e->m->cfg.n_vocab * sizeof(float));
    if (!l) return err_set(&e->err, GPT2C_ERR_NOMEM, "out of memory for the logits of %d drafted tokens", rows);
    e->logits = l;
    e->rows = rows;
    if (!draft) return GPT2C_OK;
    const int n_pos = e->n_pos < draft->cfg.n_ctx ? e->n_pos : draft->cfg.n_ctx;
    gpt2c_status s = engine_create(draft, e->n_slots, n_pos, e->n_threads, &e->draft);
    if (s) {
        err_set(&e->err, s, "the draft model: %s", gpt2c_engine_errmsg(e->draft));
        gpt2c_engine_free(e->draft);
        e->draft = NULL;
        return s;
    }
    e->draft_k = num_assistant_tokens;
    return GPT2C_OK;
}

gpt2c_status gpt2c_engine_logits(gpt2c_engine *e, const int32_t *ids, int n, float *logits) {
    const size_t V = (size_t)e->m->cfg.n_vocab;
    int slot;
    gpt2c_status s = whole_sequence(e, ids, n, &slot);
    /* The caller's array takes the rows directly, so chunks are bounded by
     * the pass's scratch and the batch arrays only. */
    const int chunk = e->cap < ENGINE_CHUNK ? e->cap : ENGINE_CHUNK;
    for (int j0 = 0; !s && j0 < n; j0 += chunk)
        s = run_rows(e, slot, ids, j0, j0 + chunk < n ? j0 + chunk : n, logits + (size_t)j0 * V);
    return s;
}
