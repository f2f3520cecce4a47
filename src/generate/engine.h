/* engine.h -- what the generation loop (gen.c) and the engine (engine.c)
 * share: the engine owns the KV cache, the logits and the batch being built;
 * each generation holds some of its slots and queues its tokens into the
 * batch, and one forward pass serves every generation attached. */
#ifndef GPT2C_ENGINE_H
#define GPT2C_ENGINE_H

#include "../model/model.h"

struct gpt2c_engine {
    gpt2_err err;
    gpt2c_model *m;
    gpt2_state st;               /* the KV cache: n_slots sequences of n_pos positions */
    int n_slots, n_pos;
    unsigned char *used;         // (n_slots,) 1 while a generation holds the slot
    float *logits;               // (n_slots, rows, V) rows per slot: 1, or 1 + GEN_MAX_DRAFT with a draft
    int rows;
    int nb, cap;                 /* tokens in the batch being built, and room */
    int32_t *b_tok;              // (cap,)
    int *b_pos, *b_slot, *b_row; // (cap,)
    gpt2c_gen **gens;            // (n_slots,) the attached generations, in arrival order
    unsigned char *planned;      // (n_slots,) by gens index: 1 if in this step's batch
    int n_gens;
    /* The prompt cache: what each slot's keys and values were computed from,
     * kept after its sequence ends, so that a new prompt sharing a prefix with
     * it starts after that prefix (positions depend only on the tokens
     * before them, and every pass sums in a fixed order, so the reused rows
     * are the bits a new computation would give). */
    int32_t *hist;               // (n_slots, n_pos) the tokens slot s holds, from position 0
    int *hist_n;                 // (n_slots,) how many
    int prompt_cache;            /* 1: new sequences take the slot holding the longest prefix of their prompt */
    int n_threads;
    /* Speculative decoding: a draft model's engine of as many slots, slot s
     * of it drafting for slot s here. The draft proposes up to
     * GEN_MAX_DRAFT tokens per sequence, one pass each, and this engine
     * checks them all in the next pass, one logits row per token. */
    gpt2c_engine *draft;
    int draft_k;                 /* tokens a sequence drafts at first (then adapted) */
};

/* At most this many proposals a step: with the token before them the model
 * checks 8 rows, the most its streamed product reads the weights once for
 * (forward.c's DECODE_ROWS; more take the tiled product, which measured 1.8x
 * slower for 13 rows than for 8 on gpt2-xl f16). gpt2-xl f16 drafted by its
 * q8 self, two runs each: 0.85 and 0.91x plain decode with up to 12, 0.85
 * and 0.93x with up to 7. */
#define GEN_MAX_DRAFT 7

/* Logits row r of slot's rows. */
static inline float *engine_row(const gpt2c_engine *e, int slot, int r) {
    return e->logits + ((size_t)slot * (size_t)e->rows + (size_t)r) * (size_t)e->m->cfg.n_vocab;
}
/* How many of ids[0..n) slot's keys and values were computed from. */
int engine_held(const gpt2c_engine *e, int slot, const int32_t *ids, int n);

/* Makes an engine of n_slots sequences of up to n_pos positions. */
gpt2c_status engine_create(gpt2c_model *m, int n_slots, int n_pos, int n_threads, gpt2c_engine **out);
/* Queues tokens [from, to) of ids, at those positions in `slot`, asking
 * for the logits after each of the last `rows` of them: rows 0.. of the
 * slot. */
void engine_queue(gpt2c_engine *e, int slot, const int32_t *ids, int from, int to, int rows);
/* Takes a free slot for a new sequence whose prompt is ids[0..n) (n 0: a
 * copy of another slot's will fill it): with the prompt cache, the one
 * holding the longest prefix of the prompt, the emptiest among equals; else
 * the first free. *reuse: the prompt's positions it already holds and the
 * sequence need not compute (at most n - 1: the last runs for its logits). */
int engine_take_slot(gpt2c_engine *e, const int32_t *ids, int n, int *reuse);
/* Slot now holds the keys and values of ids[0..n) (copied from another). */
void engine_slot_holds(gpt2c_engine *e, int slot, const int32_t *ids, int n);

/* The generation's side of a step (gen.c). gen_plan queues the tokens this
 * step runs and returns how many sequences take part (0: nothing to do, the
 * generation is over); gen_after consumes the logits. */
int gen_plan(gpt2c_gen *g);
void gen_after(gpt2c_gen *g, double seconds);
/* The draft's side of speculation, round r of a step: queues on the draft
 * engine the tokens that give the next proposal of each sequence still
 * drafting (returns how many sequences), then takes the proposals. */
int gen_draft_plan(gpt2c_gen *g, int r);
void gen_draft_after(gpt2c_gen *g, int r);
/* Ends the generation with the engine's error. */
void gen_fail(gpt2c_gen *g, const gpt2_err *err);

#endif
