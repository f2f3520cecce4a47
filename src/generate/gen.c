/* gen.c -- the generation loop with transformers' generate() semantics
 * (4.30): lengths (max_length counts the prompt, max_new_tokens wins), EOS,
 * the logits processors and warpers in transformers' order, greedy choice,
 * multinomial sampling, and beam search as BeamSearchScorer does it.
 *
 * Every step runs the newest token of every live sequence as one batch, on
 * an engine (engine.c) that may be running other generations in the same
 * pass. The sequences of one prompt (num_return_sequences, or the beams) run
 * the prompt once and copy its KV cache. */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "logits.h"

#define GEN_MAX_LOGPROBS 20

typedef enum { MODE_GREEDY, MODE_SAMPLE, MODE_BEAM } gen_mode;

typedef struct gen_seq {
    int32_t *ids;           /* (limit,) prompt then new tokens */
    int n_prompt, n, limit; /* limit: the total length at which it stops */
    int reused;             /* prompt positions its slot already held (the prompt cache) */
    gpt2c_finish finish;
    float *lp;              /* (limit - n_prompt, 1 + 2k) chosen lp, then (id, lp) pairs */
    rng rng;
    double beam_score;      /* beam search: running sum of log-probabilities */
    /* Speculation: the draft's proposals of this step sit in ids[n, n + nd)
     * (kd the most this step may take), with, when sampling, the draft's
     * distribution each was drawn from. k: the proposals the next step
     * makes (spec_count); kept, tried: the decayed counts of proposals kept
     * and of proposals judged, whose ratio estimates the chance that the
     * next one holds; idle: steps since the last that drafted. */
    int k, kd, nd, idle;
    double kept, tried;
    float *dprob;           /* (GEN_MAX_DRAFT, V) sampling only */
} gen_seq;

/* Beam search: the finished hypotheses of one prompt (BeamHypotheses). */
typedef struct beam_hyp {
    int32_t *ids; /* the whole sequence, prompt included */
    int n;
    double score;
    int eos;      /* ended by EOS (which is appended to the output) */
} beam_hyp;

typedef struct beam_group {
    beam_hyp *hyps; /* (num_beams + 1,) */
    int n_hyps, done;
    double worst;
} beam_group;

struct gpt2c_gen {
    gpt2_err err;
    gpt2c_model *m;
    gpt2c_gen_params p; /* lists below point to gen-owned copies */
    gen_mode mode;
    int eos;
    int n_prompts, per_prompt; /* live sequences per prompt: num_return_sequences or num_beams */
    int n_live, n_out, started;
    gen_seq *seqs;             /* (n_live,) */
    beam_group *groups;        /* (n_prompts,) beam search only */
    beam_hyp *out;             /* (n_out,) beam search results, once done */
    int done;
    gpt2c_engine *e;           /* the engine this generation runs on */
    gpt2c_engine *own;         /* that engine, when private to this generation */
    int *slot;                 // (n_live,) the engine's KV slot of each sequence
    float *scores;             // (V,) one row after processing
    float *kept;               // (n_live, V) each sequence's latest processed row, when asked (output_scores)
    float *fscratch;           // (V,)
    logits_pair *pairs;        // (V,)
    float *cand;               // (2 * num_beams,) beam candidates' scores
    int *cand_idx;             // (2 * num_beams,) beam * V + token
    unsigned char *seen;       // (V,)
    int *counts;               // (V,) zeroed scratch for the OpenAI penalties
    int32_t *suppress, **bad, *bad_lens, *bias_ids;
    float *bias;
    double t_prefill, t_decode;
    int spec;                  /* its sequences speculate with the engine's draft */
    double draft_cost;         /* a draft pass's cost in passes of the model: their weight bytes' ratio */
    long drafted, accepted;    /* proposals made and kept */
    float *probs;              // (V,) the target's distribution, speculative sampling
};

void gpt2c_gen_params_init(gpt2c_gen_params *p) {
    *p = (gpt2c_gen_params){.max_new_tokens = -1, .max_length = 20, .temperature = 1.0f, .top_k = 50,
                            .top_p = 1.0f, .typical_p = 1.0f, .repetition_penalty = 1.0f, .num_beams = 1,
                            .length_penalty = 1.0f, .num_return_sequences = 1, .eos_token_id = -2,
                            .use_cache = 1, .num_assistant_tokens = 5};
}

static gpt2c_status check_params(gpt2c_gen *g, const gpt2c_gen_params *p) {
    const int V = g->m->cfg.n_vocab;
    gpt2_err *e = &g->err;
    if (p->max_new_tokens < 0 && p->max_length < 1)
        return err_set(e, GPT2C_ERR_INVALID, "max_length must be at least 1 (got %d)", p->max_length);
    if (p->min_length < 0 || p->min_new_tokens < 0)
        return err_set(e, GPT2C_ERR_INVALID, "min_length and min_new_tokens must be >= 0");
    if (p->do_sample && !(p->temperature > 0.0f && isfinite(p->temperature)))
        return err_set(e, GPT2C_ERR_INVALID, "temperature must be > 0 when sampling (got %g)", (double)p->temperature);
    if (p->top_k < 0) return err_set(e, GPT2C_ERR_INVALID, "top_k must be >= 0 (got %d)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return err_set(e, GPT2C_ERR_INVALID, "top_p must be in (0, 1] (got %g)", (double)p->top_p);
    if (!(p->typical_p > 0.0f && p->typical_p <= 1.0f))
        return err_set(e, GPT2C_ERR_INVALID, "typical_p must be in (0, 1] (got %g)", (double)p->typical_p);
    if (!(p->repetition_penalty > 0.0f && isfinite(p->repetition_penalty)))
        return err_set(e, GPT2C_ERR_INVALID, "repetition_penalty must be > 0 (got %g)", (double)p->repetition_penalty);
    if (p->no_repeat_ngram_size < 0)
        return err_set(e, GPT2C_ERR_INVALID, "no_repeat_ngram_size must be >= 0 (got %d)", p->no_repeat_ngram_size);
    if (p->num_beams < 1 || p->num_beams > 256)
        return err_set(e, GPT2C_ERR_INVALID, "num_beams must be in 1..256 (got %d)", p->num_beams);
    if (p->num_return_sequences < 1 || p->num_return_sequences > 256)
        return err_set(e, GPT2C_ERR_INVALID, "num_return_sequences must be in 1..256 (got %d)", p->num_return_sequences);
    if (p->num_beams == 1 && !p->do_sample && p->num_return_sequences > 1)
        return err_set(e, GPT2C_ERR_INVALID,
                       "num_return_sequences > 1 needs sampling or beam search: greedy decoding gives one sequence");
    if (p->num_return_sequences > p->num_beams && p->num_beams > 1)
        return err_set(e, GPT2C_ERR_INVALID, "num_return_sequences (%d) must be <= num_beams (%d)",
                       p->num_return_sequences, p->num_beams);
    if (p->num_beams > 1 && p->do_sample)
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "beam sampling (num_beams > 1 with do_sample) is not supported");
    if (p->num_beams > 1 && p->n_logprobs > 0)
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "logprobs are not available with beam search");
    if (!(fabsf(p->presence_penalty) <= 2.0f) || !(fabsf(p->frequency_penalty) <= 2.0f))
        return err_set(e, GPT2C_ERR_INVALID, "presence_penalty and frequency_penalty must be in [-2, 2]");
    if (!isfinite(p->length_penalty)) return err_set(e, GPT2C_ERR_INVALID, "length_penalty must be finite");
    if (p->eos_token_id < -2 || p->eos_token_id >= V)
        return err_set(e, GPT2C_ERR_INVALID, "eos_token_id %d is outside the vocabulary", p->eos_token_id);
    if (p->n_threads < 0 || p->n_threads > 1024)
        return err_set(e, GPT2C_ERR_INVALID, "n_threads must be in 0..1024 (got %d)", p->n_threads);
    if (p->n_logprobs < 0 || p->n_logprobs > GEN_MAX_LOGPROBS)
        return err_set(e, GPT2C_ERR_INVALID, "logprobs must be in 0..%d (got %d)", GEN_MAX_LOGPROBS, p->n_logprobs);
    if (p->assistant_model && (p->num_assistant_tokens < 1 || p->num_assistant_tokens > GEN_MAX_DRAFT))
        return err_set(e, GPT2C_ERR_INVALID, "num_assistant_tokens must be in 1..%d (got %d)", GEN_MAX_DRAFT,
                       p->num_assistant_tokens);
    if (p->n_suppress_tokens < 0 || p->n_bad_words < 0 || p->n_logit_bias < 0)
        return err_set(e, GPT2C_ERR_INVALID, "list lengths must be >= 0");
    for (int i = 0; i < p->n_logit_bias; i++) {
        if (p->logit_bias_ids[i] < 0 || p->logit_bias_ids[i] >= V)
            return err_set(e, GPT2C_ERR_INVALID, "logit_bias: token %d is outside the vocabulary", p->logit_bias_ids[i]);
        if (!isfinite(p->logit_bias[i]))
            return err_set(e, GPT2C_ERR_INVALID, "logit_bias: the bias for token %d is not finite", p->logit_bias_ids[i]);
    }
    for (int i = 0; i < p->n_bad_words; i++)
        if (p->bad_words_lens[i] < 1)
            return err_set(e, GPT2C_ERR_INVALID, "bad_words_ids[%d] is empty", i);
    return GPT2C_OK;
}

/* Copies the caller's lists so that the parameters outlive their arrays. */
static gpt2c_status copy_lists(gpt2c_gen *g) {
    gpt2c_gen_params *p = &g->p;
    size_t ns = (size_t)p->n_suppress_tokens, nb = (size_t)p->n_bad_words, nl = (size_t)p->n_logit_bias;
    g->suppress = malloc((ns + 1) * sizeof(int32_t));
    g->bad = calloc(nb + 1, sizeof(int32_t *));
    g->bad_lens = malloc((nb + 1) * sizeof(int32_t));
    g->bias_ids = malloc((nl + 1) * sizeof(int32_t));
    g->bias = malloc((nl + 1) * sizeof(float));
    if (!g->suppress || !g->bad || !g->bad_lens || !g->bias_ids || !g->bias)
        return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    if (ns) memcpy(g->suppress, p->suppress_tokens, ns * sizeof(int32_t));
    if (nl) memcpy(g->bias_ids, p->logit_bias_ids, nl * sizeof(int32_t));
    if (nl) memcpy(g->bias, p->logit_bias, nl * sizeof(float));
    for (size_t i = 0; i < nb; i++) {
        g->bad_lens[i] = p->bad_words_lens[i];
        g->bad[i] = malloc((size_t)g->bad_lens[i] * sizeof(int32_t));
        if (!g->bad[i]) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
        memcpy(g->bad[i], p->bad_words_ids[i], (size_t)g->bad_lens[i] * sizeof(int32_t));
    }
    p->suppress_tokens = g->suppress;
    p->bad_words_ids = (const int32_t *const *)g->bad;
    p->bad_words_lens = g->bad_lens;
    p->logit_bias_ids = g->bias_ids;
    p->logit_bias = g->bias;
    return GPT2C_OK;
}

/* A seed from the system when the caller gives none: each run differs. */
static uint64_t fresh_seed(void) {
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s) s = 0;
        close(fd);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return s ^ ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* Checks the parameters and prompts and sets up the sequences; *max_total
 * receives the most positions a sequence may need (its longest total
 * length less the last token, which is never fed). */
static gpt2c_status gen_create(gpt2c_model *m, const gpt2c_gen_params *p, int n_prompts,
                               const int32_t *const *prompts, const int *n_prompt_ids, gpt2c_gen **out,
                               int *max_total_out) {
    gpt2c_gen *g = calloc(1, sizeof *g);
    *out = g;
    if (!g) return GPT2C_ERR_NOMEM;
    g->m = m;
    if (p) g->p = *p;
    else gpt2c_gen_params_init(&g->p);
    gpt2c_status s = check_params(g, &g->p);
    if (s || (s = copy_lists(g))) return s;
    const gpt2_config *c = &m->cfg;
    const int V = c->n_vocab;
    g->eos = g->p.eos_token_id == -2 ? c->eos_id : g->p.eos_token_id;
    g->mode = g->p.num_beams > 1 ? MODE_BEAM : g->p.do_sample ? MODE_SAMPLE : MODE_GREEDY;
    if (n_prompts < 1 || n_prompts > 4096 || !prompts || !n_prompt_ids)
        return err_set(&g->err, GPT2C_ERR_INVALID, "need between 1 and 4096 prompts (got %d)", n_prompts);
    g->n_prompts = n_prompts;
    g->per_prompt = g->mode == MODE_BEAM ? g->p.num_beams : g->p.num_return_sequences;
    g->n_live = n_prompts * g->per_prompt;
    g->n_out = n_prompts * g->p.num_return_sequences;
    if (g->n_live > 65536) return err_set(&g->err, GPT2C_ERR_INVALID, "too many sequences (%d)", g->n_live);
    g->seqs = calloc((size_t)g->n_live, sizeof *g->seqs);
    g->slot = malloc((size_t)g->n_live * sizeof *g->slot);
    if (!g->seqs || !g->slot) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    uint64_t seed = g->p.has_seed ? g->p.seed : fresh_seed();
    int max_total = 1;
    for (int i = 0; i < n_prompts; i++) {
        int n = n_prompt_ids[i];
        if (n < 1)
            return err_set(&g->err, GPT2C_ERR_INVALID,
                           "prompt %d is empty: GPT-2 needs at least one token (use \"<|endoftext|>\" to start from nothing)", i);
        if (n > c->n_ctx)
            return err_set(&g->err, GPT2C_ERR_CONTEXT, "prompt %d has %d tokens, more than the model's context of %d",
                           i, n, c->n_ctx);
        for (int j = 0; j < n; j++)
            if (prompts[i][j] < 0 || prompts[i][j] >= V)
                return err_set(&g->err, GPT2C_ERR_INVALID, "prompt %d: token %d = %d is outside the vocabulary", i,
                               j, prompts[i][j]);
        /* transformers always generates at least one token, even when the
         * prompt already reaches max_length. Generation also ends at the
         * context's end: the token the last position predicts is the last
         * (transformers gives it, then fails to feed it: no position is
         * left). The last token is never fed, so a sequence of `limit`
         * tokens needs limit - 1 positions. */
        long limit = g->p.max_new_tokens >= 0 ? (long)n + g->p.max_new_tokens : g->p.max_length;
        if (limit < n + 1) limit = n + 1;
        if (limit > (long)c->n_ctx + 1) limit = (long)c->n_ctx + 1;
        for (int r = 0; r < g->per_prompt; r++) {
            gen_seq *q = &g->seqs[i * g->per_prompt + r];
            q->n_prompt = q->n = n;
            q->limit = (int)limit;
            q->ids = malloc((size_t)limit * sizeof *q->ids);
            q->lp = malloc((size_t)(limit - n + 1) * (1 + 2 * (size_t)g->p.n_logprobs) * sizeof(float));
            if (!q->ids || !q->lp) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
            memcpy(q->ids, prompts[i], (size_t)n * sizeof *q->ids);
            /* One stream per return sequence of a prompt: a prompt's draws do
             * not depend on the other prompts in the batch. */
            rng_seed(&q->rng, seed, (uint64_t)r);
            q->beam_score = r == 0 ? 0.0 : -1e9; /* only the first beam is live at the start */
        }
        if (limit - 1 > max_total) max_total = (int)limit - 1;
    }
    if (g->mode == MODE_BEAM) {
        g->groups = calloc((size_t)n_prompts, sizeof *g->groups);
        g->cand = malloc(2 * (size_t)g->p.num_beams * sizeof *g->cand);
        g->cand_idx = malloc(2 * (size_t)g->p.num_beams * sizeof *g->cand_idx);
        if (!g->groups || !g->cand || !g->cand_idx) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n_prompts; i++) {
            g->groups[i].hyps = calloc((size_t)g->p.num_beams + 1, sizeof(beam_hyp));
            if (!g->groups[i].hyps) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
            g->groups[i].worst = 1e9;
        }
    }
    *max_total_out = max_total;
    g->scores = malloc((size_t)V * sizeof(float));
    g->fscratch = malloc((size_t)V * sizeof(float));
    g->pairs = malloc((size_t)V * sizeof *g->pairs);
    g->seen = calloc((size_t)V, 1);
    g->counts = calloc((size_t)V, sizeof *g->counts);
    if (!g->counts || !g->scores || !g->fscratch || !g->pairs || !g->seen) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    return GPT2C_OK;
}

/* Takes free slots of e for every sequence and joins e's generations. */
static gpt2c_status attach(gpt2c_gen *g, gpt2c_engine *e) {
    if (gpt2c_engine_free_slots(e) < g->n_live)
        return err_set(&g->err, GPT2C_ERR_BUSY, "the engine has %d free slots; this generation needs %d",
                       gpt2c_engine_free_slots(e), g->n_live);
    /* A prompt's first sequence computes it (from what its slot holds of
     * it); the others copy that slot. */
    const size_t V = (size_t)g->m->cfg.n_vocab;
    g->spec = e->draft && g->mode != MODE_BEAM && g->p.use_cache;
    if (g->spec && g->mode == MODE_SAMPLE && !(g->probs = malloc(V * sizeof(float))))
        return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    if (g->spec) {
        gpt2c_model_info mi, di;
        gpt2c_model_get_info(g->m, &mi);
        gpt2c_model_get_info(e->draft->m, &di);
        g->draft_cost = (double)di.weight_bytes / (double)mi.weight_bytes;
    }
    for (int i = 0; g->spec && i < g->n_live; i++) {
        g->seqs[i].k = e->draft_k;
        if (g->mode == MODE_SAMPLE && !(g->seqs[i].dprob = malloc(GEN_MAX_DRAFT * V * sizeof(float))))
            return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory for the draft's distributions");
    }
    for (int i = 0; i < g->n_live; i++) {
        gen_seq *q = &g->seqs[i];
        int first = i % g->per_prompt == 0 && g->p.use_cache;
        g->slot[i] = engine_take_slot(e, q->ids, first ? q->n : 0, &q->reused);
    }
    e->gens[e->n_gens++] = g;
    g->e = e;
    return GPT2C_OK;
}

static void detach(gpt2c_gen *g) {
    gpt2c_engine *e = g->e;
    if (!e) return;
    for (int i = 0; i < g->n_live; i++) e->used[g->slot[i]] = 0;
    int at = 0;
    while (at < e->n_gens && e->gens[at] != g) at++;
    if (at < e->n_gens) {
        memmove(&e->gens[at], &e->gens[at + 1], (size_t)(e->n_gens - at - 1) * sizeof *e->gens);
        e->n_gens--;
    }
    g->e = NULL;
}

gpt2c_status gpt2c_gen_start(gpt2c_model *m, const gpt2c_gen_params *p, int n_prompts,
                             const int32_t *const *prompts, const int *n_prompt_ids, gpt2c_gen **out) {
    int max_total = 0;
    gpt2c_status s = gen_create(m, p, n_prompts, prompts, n_prompt_ids, out, &max_total);
    if (s) return s;
    gpt2c_gen *g = *out;
    /* A private engine sized for exactly these sequences and lengths. */
    if ((s = engine_create(m, g->n_live, max_total, g->p.n_threads, &g->own))) {
        err_set(&g->err, s, "%s", gpt2c_engine_errmsg(g->own));
        gpt2c_engine_free(g->own);
        g->own = NULL;
        return s;
    }
    if (g->p.assistant_model && (s = gpt2c_engine_set_draft(g->own, g->p.assistant_model, g->p.num_assistant_tokens)))
        return err_set(&g->err, s, "%s", gpt2c_engine_errmsg(g->own));
    return attach(g, g->own);
}

gpt2c_status gpt2c_engine_add(gpt2c_engine *e, const gpt2c_gen_params *p, int n_prompts,
                              const int32_t *const *prompts, const int *n_prompt_ids, gpt2c_gen **out) {
    int max_total = 0;
    gpt2c_status s = gen_create(e->m, p, n_prompts, prompts, n_prompt_ids, out, &max_total);
    if (s) return s;
    if (max_total > e->n_pos)
        return err_set(&(*out)->err, GPT2C_ERR_CONTEXT, "sequences of %d tokens do not fit the engine's %d positions",
                       max_total, e->n_pos);
    if (p && p->assistant_model && (!e->draft || e->draft->m != p->assistant_model))
        return err_set(&(*out)->err, GPT2C_ERR_INVALID,
                       "assistant_model must be the engine's draft model (gpt2c_engine_set_draft)");
    return attach(*out, e);
}

/* Queues tokens [from, to) of sequence i, asking for logits after each of
 * the last `rows`. */
static void queue(gpt2c_gen *g, int i, int from, int to, int rows) {
    engine_queue(g->e, g->slot[i], g->seqs[i].ids, from, to, rows);
}

/* The processors, in transformers' order, on sequence q's scores. */
static void process(gpt2c_gen *g, const gen_seq *q, float *s) {
    const int V = g->m->cfg.n_vocab;
    const gpt2c_gen_params *p = &g->p;
    logits_repetition_penalty(s, V, q->ids, q->n, p->repetition_penalty, g->seen);
    logits_no_repeat_ngram(s, V, q->ids, q->n, p->no_repeat_ngram_size);
    logits_bad_words(s, V, q->ids, q->n, p->bad_words_ids, p->bad_words_lens, p->n_bad_words);
    if (g->eos >= 0 && (q->n < p->min_length || q->n - q->n_prompt < p->min_new_tokens)) s[g->eos] = -INFINITY;
    logits_suppress(s, V, p->suppress_tokens, p->n_suppress_tokens);
    for (int i = 0; i < p->n_logit_bias; i++) s[p->logit_bias_ids[i]] += p->logit_bias[i];
    logits_openai_penalties(s, V, q->ids + q->n_prompt, q->n - q->n_prompt, p->presence_penalty, p->frequency_penalty,
                            g->counts);
}

/* The warpers, sampling only. */
static void warp(gpt2c_gen *g, float *s) {
    const int V = g->m->cfg.n_vocab;
    const gpt2c_gen_params *p = &g->p;
    if (p->temperature != 1.0f) logits_temperature(s, V, p->temperature);
    logits_top_k(s, V, p->top_k, 1, g->fscratch);
    logits_top_p(s, V, p->top_p, 1, g->pairs);
    logits_typical(s, V, p->typical_p, 1, g->pairs);
}

static void append(gpt2c_gen *g, gen_seq *q, int token) {
    q->ids[q->n++] = token;
    if (token == g->eos) q->finish = GPT2C_FINISH_EOS;
    else if (q->n >= q->limit) q->finish = GPT2C_FINISH_LENGTH;
}

/* Speculative sampling's verdict (Leviathan et al. 2023, Chen et al. 2023)
 * on the draft's token x, drawn from qd, where the model's warped scores
 * are s: x stays with probability min(1, p(x) / qd(x)); otherwise the token
 * is drawn from max(0, p - qd), renormalised. Either way the token follows
 * p exactly. */
static int spec_sample(gpt2c_gen *g, gen_seq *q, const float *s, int x, const float *qd) {
    const int V = g->m->cfg.n_vocab;
    float *p = g->probs;
    logits_softmax(s, V, p);
    if (rng_uniform(&q->rng) * qd[x] < p[x]) return x;
    double z = 0.0;
    for (int j = 0; j < V; j++)
        if (p[j] > qd[j]) z += (double)p[j] - qd[j];
    if (!(z > 0.0)) return logits_sample_probs(p, V, &q->rng); /* p == qd up to rounding */
    double u = rng_uniform(&q->rng) * z, cum = 0.0;
    int last = x;
    for (int j = 0; j < V; j++) {
        if (!(p[j] > qd[j])) continue;
        cum += (double)p[j] - qd[j];
        last = j;
        if (u < cum) return j;
    }
    return last;
}

/* Sequence i's next token from logits row `row`: the greedy or sampled
 * choice, or, given the draft's proposal (draft >= 0, and when sampling the
 * draft's distribution dprob), the verdict on it. Returns 1 if the token is
 * the draft's. */
static int choose(gpt2c_gen *g, int i, const float *row, int draft, const float *dprob) {
    const int V = g->m->cfg.n_vocab, k = g->p.n_logprobs;
    gen_seq *q = &g->seqs[i];
    float *lp = q->lp + (size_t)(q->n - q->n_prompt) * (1 + 2 * (size_t)k);
    memcpy(g->scores, row, (size_t)V * sizeof(float));
    process(g, q, g->scores);
    int next;
    if (g->mode == MODE_SAMPLE) {
        warp(g, g->scores);
        next = draft >= 0 ? spec_sample(g, q, g->scores, draft, dprob) : logits_sample(g->scores, V, &q->rng);
    } else {
        next = logits_argmax(g->scores, V);
    }
    if (g->kept) memcpy(g->kept + (size_t)i * V, g->scores, (size_t)V * sizeof(float));
    /* Log-probabilities come from the model's own distribution, before any
     * processing, so they mean the same whatever the knobs. They cost a pass
     * over the vocabulary, so only when asked for. */
    if (k > 0) {
        int32_t top[GEN_MAX_LOGPROBS];
        float top_lp[GEN_MAX_LOGPROBS];
        logits_logprobs(row, V, next, k, &lp[0], top, top_lp);
        for (int j = 0; j < k; j++) {
            lp[1 + 2 * j] = (float)top[j];
            lp[2 + 2 * j] = top_lp[j];
        }
    }
    append(g, q, next);
    return next == draft;
}

/* --------------------------------------------------- speculative decoding */

/* The cost of checking rows beyond the first, in passes of the model per
 * row: the streamed product of several rows is not free (gpt2-xl f16 here:
 * 4 rows 1.5 decode steps, 6 rows 1.9, 8 rows 2.2: 0.17-0.18 a row). */
#define SPEC_ROW_COST 0.18
/* Steps without drafting after which one proposal is tried again, so that
 * the estimate of the chance a proposal holds can recover. */
#define SPEC_RETRY 16

/* The proposals for sequence q's next step: the k in 0..GEN_MAX_DRAFT that
 * maximises the expected tokens a step, (1 - a^(k+1)) / (1 - a) when each
 * proposal holds with chance a independently, per unit of time, k draft
 * passes of draft_cost and a check of k + 1 rows, 1 + SPEC_ROW_COST * k
 * (k = 0 is plain decoding: 1 token for 1). a is estimated from the
 * sequence's own verdicts, decayed by 0.9 a step, from a prior of 4 in 5.
 * It depends only on the sequence's tokens, never on timings, so that a
 * seed still gives the same text every run. transformers' rule (+2 after a
 * step that kept all, -1 otherwise) never stops drafting, and a q8 draft
 * costs about half the model: at 65% of proposals kept it ran at 0.7-0.8x
 * plain decoding. */
static int spec_count(const gpt2c_gen *g, const gen_seq *q) {
    const double a = (q->kept + 4.0) / (q->tried + 5.0);
    int best = 0;
    double best_rate = 1.0, e = 1.0, ak = 1.0;
    for (int k = 1; k <= GEN_MAX_DRAFT; k++) {
        ak *= a;
        e += ak; /* 1 + a + ... + a^k */
        const double rate = e / (1.0 + k * (g->draft_cost + SPEC_ROW_COST));
        if (rate > best_rate * 1.02) best = k, best_rate = rate;
    }
    return best;
}

int gen_draft_plan(gpt2c_gen *g, int r) {
    if (!g->spec || !g->started || g->err.status || g->done) return 0;
    gpt2c_engine *d = g->e->draft;
    int active = 0;
    for (int i = 0; i < g->n_live; i++) {
        gen_seq *q = &g->seqs[i];
        if (q->finish) continue;
        const int slot = g->slot[i];
        if (r == 0) {
            /* Room for the proposals: the target's pass gives one token more
             * than were drafted, and the draft feeds positions up to
             * n + kd - 2 of its own context. */
            int kd = q->k;
            if (kd) q->idle = 0;
            else if (++q->idle >= SPEC_RETRY) kd = 1, q->idle = 0;
            if (kd > q->limit - q->n - 1) kd = q->limit - q->n - 1;
            if (kd > d->n_pos - q->n) kd = d->n_pos - q->n;
            q->kd = kd > 0 ? kd : 0;
            q->nd = 0;
            if (!q->kd) continue;
            /* The draft's slot still holds what it computed of this sequence
             * (all of it but the proposals the target turned down). */
            engine_queue(d, slot, q->ids, engine_held(d, slot, q->ids, q->n - 1), q->n, 1);
        } else {
            if (r >= q->kd || q->nd != r) continue;
            engine_queue(d, slot, q->ids, q->n + r - 1, q->n + r, 1);
        }
        active++;
    }
    return active;
}

void gen_draft_after(gpt2c_gen *g, int r) {
    if (!g->spec || !g->started || g->err.status || g->done) return;
    const int V = g->m->cfg.n_vocab;
    gpt2c_engine *d = g->e->draft;
    for (int i = 0; i < g->n_live; i++) {
        gen_seq *q = &g->seqs[i];
        if (q->finish || r >= q->kd || q->nd != r) continue;
        /* The draft's choice, made as the model's would be: the same
         * processors on the sequence as it would stand. */
        gen_seq at = *q;
        at.n = q->n + r;
        memcpy(g->scores, engine_row(d, g->slot[i], 0), (size_t)V * sizeof(float));
        process(g, &at, g->scores);
        int tok;
        if (g->mode == MODE_SAMPLE) {
            warp(g, g->scores);
            float *qd = q->dprob + (size_t)r * V;
            logits_softmax(g->scores, V, qd);
            tok = logits_sample_probs(qd, V, &q->rng);
        } else {
            tok = logits_argmax(g->scores, V);
        }
        q->ids[q->n + r] = tok;
        q->nd = r + 1;
        if (tok == g->eos) q->kd = q->nd; /* nothing follows an EOS */
    }
}

/* Sequence i's tokens from this step's rows: the verdict on each proposal
 * in turn, until one is turned down (its replacement is the last token) or
 * all held (the row after the last gives one more). With no proposals this
 * is the plain choice. */
static void verify(gpt2c_gen *g, int i) {
    gen_seq *q = &g->seqs[i];
    const int nd = q->nd;
    int32_t d[GEN_MAX_DRAFT];
    memcpy(d, q->ids + q->n, (size_t)nd * sizeof *d);
    int kept = 0, turned = 0;
    for (int r = 0; r <= nd && !q->finish; r++) {
        const float *dp = r < nd && q->dprob ? q->dprob + (size_t)r * g->m->cfg.n_vocab : NULL;
        if (!choose(g, i, engine_row(g->e, g->slot[i], r), r < nd ? d[r] : -1, dp)) {
            turned = r < nd;
            break;
        }
        kept++;
    }
    if (nd) {
        g->drafted += nd;
        g->accepted += kept;
        /* The verdicts: those kept and the one turned down, if any (an EOS
         * or the length ends a step without one). */
        q->kept = 0.9 * q->kept + kept;
        q->tried = 0.9 * q->tried + kept + turned;
        q->k = spec_count(g, q);
    }
    q->nd = 0;
}

void gpt2c_gen_draft_stats(const gpt2c_gen *g, long *drafted, long *accepted) {
    *drafted = g->drafted;
    *accepted = g->accepted;
}

/* ------------------------------------------------------------ beam search */

/* BeamHypotheses.add: keeps the num_beams best by score / length^penalty. */
static gpt2c_status hyp_add(gpt2c_gen *g, beam_group *grp, const int32_t *ids, int n, double sum_logprobs, int eos) {
    const int nb = g->p.num_beams;
    double score = sum_logprobs / pow((double)n, (double)g->p.length_penalty);
    if (grp->n_hyps >= nb && !(score > grp->worst)) return GPT2C_OK;
    beam_hyp *h = &grp->hyps[grp->n_hyps];
    /* An EOS-ended hypothesis is stored without its EOS (as transformers
     * scores it); the output writes the EOS back, in the spare slot. */
    h->ids = malloc((size_t)(n + 1) * sizeof *h->ids);
    if (!h->ids) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    memcpy(h->ids, ids, (size_t)n * sizeof *ids);
    h->ids[n] = g->eos;
    h->n = n;
    h->score = score;
    h->eos = eos;
    grp->n_hyps++;
    if (grp->n_hyps > nb) {
        /* Drop the worst (the first of equal worsts, as a stable sort does)
         * and take the next worst as the bar. */
        int w = 0;
        for (int i = 1; i < grp->n_hyps; i++)
            if (grp->hyps[i].score < grp->hyps[w].score) w = i;
        free(grp->hyps[w].ids);
        memmove(&grp->hyps[w], &grp->hyps[w + 1], (size_t)(grp->n_hyps - w - 1) * sizeof(beam_hyp));
        grp->n_hyps--;
        grp->worst = grp->hyps[0].score;
        for (int i = 1; i < grp->n_hyps; i++)
            if (grp->hyps[i].score < grp->worst) grp->worst = grp->hyps[i].score;
    } else if (score < grp->worst) {
        grp->worst = score;
    }
    return GPT2C_OK;
}

/* BeamHypotheses.is_done. */
static int hyp_done(const gpt2c_gen *g, const beam_group *grp, double best_sum, int cur_len) {
    if (grp->n_hyps < g->p.num_beams) return 0;
    if (g->p.early_stopping) return 1;
    return grp->worst >= best_sum / pow((double)cur_len, (double)g->p.length_penalty);
}

/* One beam step for prompt group gi (BeamSearchScorer.process), then the
 * beams are reordered: new beam j continues old beam src[j]. */
static gpt2c_status beam_step(gpt2c_gen *g, int gi) {
    const int V = g->m->cfg.n_vocab, nb = g->p.num_beams, nc = 2 * nb;
    beam_group *grp = &g->groups[gi];
    gen_seq *beams = &g->seqs[gi * nb];
    const int cur_len = beams[0].n;
    int have = 0;
    /* The best 2 * num_beams of (beam score + processed log-softmax) over
     * every beam and token; ties keep the lower flat index first. */
    for (int b = 0; b < nb; b++) {
        const float *row = engine_row(g->e, g->slot[gi * nb + b], 0);
        double lse = logits_logsumexp(row, V);
        for (int t = 0; t < V; t++) g->scores[t] = (float)(row[t] - lse);
        process(g, &beams[b], g->scores);
        for (int t = 0; t < V; t++) {
            float v = (float)(g->scores[t] + beams[b].beam_score);
            if (have == nc && !(v > g->cand[nc - 1])) continue;
            int j = have < nc ? have++ : nc - 1;
            while (j > 0 && v > g->cand[j - 1]) {
                g->cand[j] = g->cand[j - 1];
                g->cand_idx[j] = g->cand_idx[j - 1];
                j--;
            }
            g->cand[j] = v;
            g->cand_idx[j] = b * V + t;
        }
    }
    int src[256], tok[256], nn = 0;
    double sc[256];
    gpt2c_status s;
    for (int r = 0; r < have && nn < nb; r++) {
        int b = g->cand_idx[r] / V, t = g->cand_idx[r] % V;
        if (t == g->eos) {
            if (r >= nb) continue; /* an EOS outside the top num_beams is not a hypothesis */
            if ((s = hyp_add(g, grp, beams[b].ids, beams[b].n, g->cand[r], 1))) return s;
        } else {
            src[nn] = b;
            tok[nn] = t;
            sc[nn] = g->cand[r];
            nn++;
        }
    }
    /* nn < nb only with a vocabulary smaller than 2 * num_beams: end there. */
    grp->done = grp->done || hyp_done(g, grp, g->cand[0], cur_len) || nn < nb;
    /* Reorder: ids and the KV cache follow their source beam. */
    int32_t *tmp = malloc((size_t)nb * (size_t)cur_len * sizeof *tmp);
    int slot_src[256], slot_dst[256];
    if (!tmp) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    for (int j = 0; j < nn; j++) memcpy(tmp + (size_t)j * cur_len, beams[src[j]].ids, (size_t)cur_len * sizeof *tmp);
    for (int j = 0; j < nn; j++) {
        memcpy(beams[j].ids, tmp + (size_t)j * cur_len, (size_t)cur_len * sizeof *tmp);
        beams[j].beam_score = sc[j];
        beams[j].ids[cur_len] = tok[j];
        beams[j].n = cur_len + 1;
        slot_src[j] = g->slot[gi * nb + src[j]];
        slot_dst[j] = g->slot[gi * nb + j];
    }
    free(tmp);
    if (g->p.use_cache && (s = gpt2_state_copy_slots(&g->e->st, g->m, slot_src, slot_dst, nn, cur_len, &g->err)))
        return s;
    for (int j = 0; j < nn && g->p.use_cache; j++) engine_slot_holds(g->e, slot_dst[j], beams[j].ids, cur_len);
    if (grp->done || cur_len + 1 >= beams[0].limit)
        for (int b = 0; b < nb; b++) beams[b].finish = GPT2C_FINISH_LENGTH;
    return GPT2C_OK;
}

/* BeamSearchScorer.finalize for every group: the open beams join the
 * hypotheses (unless the group finished early), then the best come out. */
static gpt2c_status beam_finalize(gpt2c_gen *g) {
    const int nb = g->p.num_beams, nr = g->p.num_return_sequences;
    g->out = calloc((size_t)g->n_out, sizeof *g->out);
    if (!g->out) return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory");
    for (int gi = 0; gi < g->n_prompts; gi++) {
        beam_group *grp = &g->groups[gi];
        gpt2c_status s;
        if (!grp->done)
            for (int b = 0; b < nb; b++) {
                gen_seq *q = &g->seqs[gi * nb + b];
                if ((s = hyp_add(g, grp, q->ids, q->n, q->beam_score, 0))) return s;
            }
        for (int r = 0; r < nr && grp->n_hyps > 0; r++) {
            /* sorted(...).pop(): the highest score, the latest added on ties. */
            int best = 0;
            for (int i = 1; i < grp->n_hyps; i++)
                if (grp->hyps[i].score >= grp->hyps[best].score) best = i;
            g->out[gi * nr + r] = grp->hyps[best];
            memmove(&grp->hyps[best], &grp->hyps[best + 1], (size_t)(grp->n_hyps - best - 1) * sizeof(beam_hyp));
            grp->n_hyps--;
        }
    }
    return GPT2C_OK;
}

/* Marks the generation over; beam search then picks its results. */
static void gen_end(gpt2c_gen *g) {
    g->done = 1;
    if (g->mode == MODE_BEAM) beam_finalize(g);
}

int gen_plan(gpt2c_gen *g) {
    if (g->err.status || g->done) return 0;
    int active = 0;
    for (int i = 0; i < g->n_live; i++) {
        gen_seq *q = &g->seqs[i];
        if (q->finish) continue;
        active++;
        int first = i % g->per_prompt == 0;
        if (!g->p.use_cache) queue(g, i, 0, q->n, 1); /* recompute the whole sequence */
        else if (g->started) queue(g, i, q->n - 1, q->n + q->nd, q->nd + 1); /* with the draft's proposals */
        else if (first) queue(g, i, q->reused, q->n, 1); /* the prompt runs once per prompt */
    }
    if (active == 0) gen_end(g);
    return active;
}

void gen_after(gpt2c_gen *g, double seconds) {
    const int V = g->m->cfg.n_vocab;
    gpt2c_status s;
    if (!g->started && g->p.use_cache && g->per_prompt > 1) {
        /* Share each prompt's cache and logits with its sibling sequences. */
        for (int pi = 0; pi < g->n_prompts; pi++) {
            int first = pi * g->per_prompt;
            int src[256], dst[256];
            const float *row = engine_row(g->e, g->slot[first], 0);
            for (int r = 1; r < g->per_prompt; r++) {
                src[r - 1] = g->slot[first];
                dst[r - 1] = g->slot[first + r];
                memcpy(engine_row(g->e, dst[r - 1], 0), row, (size_t)V * sizeof(float));
            }
            if ((s = gpt2_state_copy_slots(&g->e->st, g->m, src, dst, g->per_prompt - 1, g->seqs[first].n, &g->err)))
                return;
            for (int r = 0; r < g->per_prompt - 1; r++)
                engine_slot_holds(g->e, dst[r], g->seqs[first].ids, g->seqs[first].n);
        }
    }
    if (g->mode == MODE_BEAM) {
        for (int gi = 0; gi < g->n_prompts; gi++)
            if (!g->seqs[gi * g->per_prompt].finish && (s = beam_step(g, gi))) return;
    } else {
        for (int i = 0; i < g->n_live; i++)
            if (!g->seqs[i].finish) verify(g, i);
    }
    if (g->started) g->t_decode += seconds;
    else g->t_prefill += seconds;
    g->started = 1;
    for (int i = 0; i < g->n_live; i++)
        if (!g->seqs[i].finish) return;
    gen_end(g);
}

void gen_fail(gpt2c_gen *g, const gpt2_err *err) {
    err_set(&g->err, err->status, "%s", err->msg);
    g->done = 1;
}

int gpt2c_gen_reused_tokens(const gpt2c_gen *g) {
    int n = 0;
    for (int i = 0; i < g->n_live; i++) n += g->seqs[i].reused;
    return n;
}

gpt2c_status gpt2c_gen_status(const gpt2c_gen *g) {
    if (g->err.status) return g->err.status;
    return g->done ? GPT2C_DONE : GPT2C_OK;
}

gpt2c_status gpt2c_gen_step(gpt2c_gen *g) {
    if (g->err.status || g->done) return gpt2c_gen_status(g);
    /* A misuse, refused without ending the generation (so without a
     * message: the message belongs to the error that ends it). */
    if (g->e != g->own) return GPT2C_ERR_INVALID;
    gpt2c_engine_step(g->own);
    return gpt2c_gen_status(g);
}

const char *gpt2c_gen_errmsg(const gpt2c_gen *g) { return err_msg_or_nomem(g ? &g->err : NULL); }
int gpt2c_gen_n_seqs(const gpt2c_gen *g) { return g->n_out; }

/* In beam search, result i is group i / nr's rank i % nr. */
static const beam_hyp *beam_out(const gpt2c_gen *g, int i) {
    return g->mode == MODE_BEAM && g->out && g->out[i].ids ? &g->out[i] : NULL;
}

static const gen_seq *live_seq(const gpt2c_gen *g, int i) {
    if (g->mode != MODE_BEAM) return &g->seqs[i];
    const int nr = g->p.num_return_sequences;
    return &g->seqs[(i / nr) * g->p.num_beams + i % nr];
}

const int32_t *gpt2c_gen_tokens(const gpt2c_gen *g, int i, int *n) {
    *n = 0;
    if (i < 0 || i >= g->n_out) return NULL;
    const beam_hyp *h = beam_out(g, i);
    const gen_seq *q = live_seq(g, i);
    if (h) {
        *n = h->n - q->n_prompt + (h->eos ? 1 : 0);
        return h->ids + q->n_prompt;
    }
    *n = q->n - q->n_prompt;
    return q->ids + q->n_prompt;
}

gpt2c_finish gpt2c_gen_finish_reason(const gpt2c_gen *g, int i) {
    if (i < 0 || i >= g->n_out) return GPT2C_FINISH_NONE;
    const beam_hyp *h = beam_out(g, i);
    if (h) return h->eos ? GPT2C_FINISH_EOS : GPT2C_FINISH_LENGTH;
    return g->mode == MODE_BEAM && !g->done ? GPT2C_FINISH_NONE : live_seq(g, i)->finish;
}

gpt2c_status gpt2c_gen_finish(gpt2c_gen *g, int i) {
    if (g->mode == MODE_BEAM) return err_set(&g->err, GPT2C_ERR_UNSUPPORTED, "sequences cannot be ended one by one in beam search");
    if (i < 0 || i >= g->n_out) return GPT2C_ERR_INVALID;
    if (!g->seqs[i].finish) g->seqs[i].finish = GPT2C_FINISH_STOP;
    return GPT2C_OK;
}

double gpt2c_gen_score(const gpt2c_gen *g, int i) {
    const beam_hyp *h = i >= 0 && i < g->n_out ? beam_out(g, i) : NULL;
    return h ? h->score : NAN;
}

int gpt2c_gen_logprobs(const gpt2c_gen *g, int i, int j, float *chosen, int32_t *top_ids, float *top_lps) {
    if (g->mode == MODE_BEAM || g->p.n_logprobs == 0 || i < 0 || i >= g->n_out || j < 0 ||
        j >= g->seqs[i].n - g->seqs[i].n_prompt)
        return -1;
    const int k = g->p.n_logprobs;
    const float *lp = g->seqs[i].lp + (size_t)j * (1 + 2 * (size_t)k);
    if (chosen) *chosen = lp[0];
    for (int t = 0; t < k; t++) {
        if (top_ids) top_ids[t] = (int32_t)lp[1 + 2 * t];
        if (top_lps) top_lps[t] = lp[2 + 2 * t];
    }
    return k;
}

gpt2c_status gpt2c_gen_keep_scores(gpt2c_gen *g) {
    if (g->mode == MODE_BEAM)
        return err_set(&g->err, GPT2C_ERR_UNSUPPORTED, "the scores of each step are not kept in beam search");
    if (g->started) return err_set(&g->err, GPT2C_ERR_INVALID, "scores must be asked for before the first step");
    if (!g->kept && !(g->kept = malloc((size_t)g->n_live * (size_t)g->m->cfg.n_vocab * sizeof(float))))
        return err_set(&g->err, GPT2C_ERR_NOMEM, "out of memory for the scores of %d sequences", g->n_live);
    return GPT2C_OK;
}

const float *gpt2c_gen_scores(const gpt2c_gen *g, int i) {
    if (!g->kept || i < 0 || i >= g->n_out || g->seqs[i].n == g->seqs[i].n_prompt) return NULL;
    return g->kept + (size_t)i * (size_t)g->m->cfg.n_vocab;
}

void gpt2c_gen_timings(const gpt2c_gen *g, double *prefill_s, double *decode_s) {
    *prefill_s = g->t_prefill;
    *decode_s = g->t_decode;
}

void gpt2c_gen_free(gpt2c_gen *g) {
    if (!g) return;
    for (int i = 0; i < g->n_live && g->seqs; i++) {
        free(g->seqs[i].ids);
        free(g->seqs[i].lp);
        free(g->seqs[i].dprob);
    }
    free(g->seqs);
    for (int i = 0; g->groups && i < g->n_prompts; i++) {
        for (int h = 0; h < g->groups[i].n_hyps; h++) free(g->groups[i].hyps[h].ids);
        free(g->groups[i].hyps);
    }
    free(g->groups);
    for (int i = 0; g->out && i < g->n_out; i++) free(g->out[i].ids);
    free(g->out);
    detach(g);
    gpt2c_engine_free(g->own);
    free(g->slot);
    free(g->scores);
    free(g->probs);
    free(g->kept);
    free(g->fscratch);
    free(g->pairs);
    free(g->cand);
    free(g->cand_idx);
    free(g->seen);
    free(g->counts);
    free(g->suppress);
    for (int i = 0; g->bad && i < g->p.n_bad_words; i++) free(g->bad[i]);
    free(g->bad);
    free(g->bad_lens);
    free(g->bias_ids);
    free(g->bias);
    free(g);
}
