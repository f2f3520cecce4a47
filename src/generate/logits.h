/* logits.h -- the per-step processing of next-token scores, each function
 * one of transformers' (4.30) logits processors or warpers, applied by the
 * generation loop in transformers' order:
 *   processors: repetition penalty, no-repeat n-gram, bad words, min length,
 *               min new tokens, suppress tokens, then OpenAI's logit_bias
 *               and presence / frequency penalties;
 *   warpers (sampling only): temperature, top-k, top-p, typical-p;
 * then softmax and a draw. Removed tokens get -inf. */
#ifndef GPT2C_LOGITS_H
#define GPT2C_LOGITS_H

#include <stdint.h>

/* Every distinct id in ids: positive scores divided by penalty, others
 * multiplied. seen (n_vocab bytes, zeroed) is scratch, left zeroed. */
void logits_repetition_penalty(float *scores, int n_vocab, const int32_t *ids, int n_ids, float penalty,
                               unsigned char *seen);
/* Bans every token that would repeat an n-gram of ids. */
void logits_no_repeat_ngram(float *scores, int n_vocab, const int32_t *ids, int n_ids, int ngram);
/* Bans the last token of each word whose other tokens end ids. */
void logits_bad_words(float *scores, int n_vocab, const int32_t *ids, int n_ids, const int32_t *const *words,
                      const int *word_lens, int n_words);
/* OpenAI's presence and frequency penalties over ids (the new tokens):
 * score -= count * frequency + (count > 0) * presence. counts (n_vocab ints,
 * zeroed) is scratch, left zeroed. */
void logits_openai_penalties(float *scores, int n_vocab, const int32_t *ids, int n_ids, float presence,
                             float frequency, int *counts);
/* Sets the listed ids to -inf (ids outside the vocabulary are ignored). */
void logits_suppress(float *scores, int n_vocab, const int32_t *ids, int n_ids);

typedef struct logits_pair {
    float v;
    int32_t i;
} logits_pair;

void logits_temperature(float *scores, int n, float temperature);
/* Keeps the scores >= the k-th largest (ties at the k-th all survive);
 * k is raised to min_keep. scratch holds n floats. */
void logits_top_k(float *scores, int n, int k, int min_keep, float *scratch);
/* Keeps the smallest set of most probable tokens whose probability reaches
 * top_p, including the one that crosses it, at least min_keep. scratch holds
 * n pairs. */
void logits_top_p(float *scores, int n, float top_p, int min_keep, logits_pair *scratch);
/* Typical sampling: keeps the tokens whose surprise is closest to the
 * entropy until their mass reaches mass, at least min_keep. scratch as above. */
void logits_typical(float *scores, int n, float mass, int min_keep, logits_pair *scratch);

/* The index of the largest score; the first one on a tie, as torch.argmax. */
int logits_argmax(const float *scores, int n);
/* log(sum(exp(scores))), computed stably. */
double logits_logsumexp(const float *scores, int n);
/* The log-probability of `token` under softmax(row) into *chosen, and the k
 * most likely tokens with theirs, best first (k may be 0). */
void logits_logprobs(const float *row, int n, int token, int k, float *chosen, int32_t *top_ids, float *top_lps);
/* The k largest scores' indices, best first (ties: lower index first). */
void logits_top_indices(const float *scores, int n, int k, int32_t *idx);

/* The sampler's PRNG: xoshiro256** seeded through splitmix64. One stream per
 * sequence, derived from (seed, stream index), so a sequence's draws do not
 * depend on what else runs in the same batch. */
typedef struct rng {
    uint64_t s[4];
} rng;
void rng_seed(rng *r, uint64_t seed, uint64_t stream);
double rng_uniform(rng *r); /* [0, 1), 53 random bits */
/* Draws an index with probability softmax(scores); -inf scores never. */
int logits_sample(const float *scores, int n, rng *r);
/* p = softmax(scores), summed in double. */
void logits_softmax(const float *scores, int n, float *p);
/* Draws an index with probability p[i] (p sums to 1); zeros never. */
int logits_sample_probs(const float *p, int n, rng *r);

#endif
