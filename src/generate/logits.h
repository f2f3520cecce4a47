/* logits.h -- the per-step processing of next-token scores, in the order
 * transformers applies it. */
#ifndef GPT2C_LOGITS_H
#define GPT2C_LOGITS_H

#include <stdint.h>

/* Repetition penalty over every distinct id in ids (prompt and generated):
 * positive scores are divided by penalty, negative ones multiplied.
 * seen (n_vocab bytes, zeroed) is scratch. */
void logits_repetition_penalty(float *scores, int n_vocab, const int32_t *ids, int n_ids, float penalty,
                               unsigned char *seen);
/* The index of the largest score; the first one on a tie, as torch.argmax. */
int logits_argmax(const float *scores, int n);
/* log(sum(exp(scores))), computed stably. */
double logits_logsumexp(const float *scores, int n);
/* The k largest scores' indices, best first (ties: lower index first). */
void logits_top_k(const float *scores, int n, int k, int32_t *idx);

#endif
