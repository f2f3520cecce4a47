/* data.h -- training data as run_clm.py prepares it: examples read from a
 * file (the lines of a plain text file, or the records of a JSON-lines
 * file: {"text": ...}, or {"prompt": ..., "completion": ...} with the loss
 * on the completion only), tokenized, documents ended with EOS, the whole
 * concatenated and cut into blocks of block_size tokens (group_texts: the
 * remainder is dropped); and the seeded order of the blocks each epoch. */
#ifndef GPT2C_TRAIN_DATA_H
#define GPT2C_TRAIN_DATA_H

#include <stdint.h>

#include "../core/err.h"
#include "gpt2c.h"

typedef struct train_data {
    int32_t *tokens, *labels; // (n_blocks, block) labels: the token, or TRAIN_IGNORE (a prompt's)
    long n_blocks;
    int block;
    long n_examples;
    long n_tokens; /* before cutting */
} train_data;

/* Reads path into train and val: the first val_percent % of its examples
 * (rounded to the nearest) go to val (0: none, val untouched), as
 * run_clm.py's validation_split_percentage takes train[:5%]. A file whose
 * name ends in .jsonl or .json is JSON lines; anything else plain text,
 * whose lines (line breaks kept) are its examples and which is one
 * document. eos -1: documents are not ended. Messages name the file and
 * line. */
gpt2c_status train_data_load(gpt2c_tokenizer *tok, const char *path, int block, int eos, double val_percent,
                             train_data *train, train_data *val, gpt2_err *e);
void train_data_free(train_data *d);

/* order (n,) = a permutation of 0..n-1 for epoch `epoch`: Fisher-Yates
 * driven by SplitMix64 seeded with seed and the epoch (documented, so that
 * another program can reproduce it). */
void train_shuffle(long *order, long n, uint64_t seed, long epoch);

#endif
