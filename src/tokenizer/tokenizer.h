/* tokenizer.h -- internals of the byte-level BPE tokenizer shared by its
 * loader (tokenizer.c), its encoder/decoder (bpe.c) and streaming (stream.c). */
#ifndef GPT2C_TOKENIZER_H
#define GPT2C_TOKENIZER_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <utf8proc.h>

#include "../core/err.h"
#include "../core/strmap.h"
#include "gpt2c.h"

/* Hard limits that keep hostile files from driving allocations. */
#define TOK_MAX_VOCAB (1 << 21)
#define TOK_MAX_FILE (256u << 20)

typedef struct tok_special {
    char *text; /* raw UTF-8 as written in input text */
    size_t len;
    int id;
    int special; /* (while loading) a special token, not just an added one */
} tok_special;

struct gpt2c_tokenizer {
    gpt2_err err;
    int n_vocab;           /* 1 + the largest id */
    char *bytes;           /* pool of every token's raw bytes */
    size_t *off;           /* (n_vocab + 1,) token i is bytes[off[i] .. off[i+1]) */
    size_t max_token_bytes; /* the longest token: refuses oversized prompts early */
    unsigned char *special; /* (n_vocab,) 1 for special tokens (skipped on request) */
    unsigned char *present; /* (n_vocab,) 1 where the id exists */
    strmap vocab;          /* raw bytes -> id */
    int byte_id[256];      /* the id of each single-byte token */
    u64map merges;         /* (left id << 32 | right id) -> rank */
    int *merge_result;     /* (n_merges,) the id each rank produces */
    int n_merges;
    tok_special *specials; /* special and added tokens: matched in input text before the regex runs */
    int n_specials;
    int eos_id;
    int add_bos_id;        /* tokenizer_config.json's add_bos_token: prepended to every encoding; -1: none */
    int normalize;         /* tokenizer.json's normalizer as utf8proc options (NFC: UTF8PROC_COMPOSE); 0: none */
    pcre2_code *re;
    int jit;               /* 1 when the pattern was JIT-compiled */
    pthread_mutex_t cache_lock;
    strmap cache;          /* pre-token bytes -> index into cache_ids */
    int *cache_ids;        /* [n, id0, id1, ...] records */
    size_t cache_len, cache_cap;
    int no_cache;          /* 1: never use the cache (the differential fuzzer's reference) */
};

/* The GPT-2 byte <-> printable code point table (bytes_to_unicode). */
void tok_byte_table(int byte_to_cp[256]);

/* bpe.c */
gpt2c_status tok_compile_pattern(gpt2c_tokenizer *t);
/* Appends the BPE ids of one pre-token to *ids (growing it). */
typedef struct idvec {
    int32_t *v;
    int n, cap;
} idvec;
int idvec_push(idvec *a, int32_t x);
/* The raw bytes of ids (special tokens dropped when flags ask), malloc'd. */
gpt2c_status tok_collect_bytes(const gpt2c_tokenizer *t, const int32_t *ids, int n_ids, unsigned flags,
                               char **bytes, size_t *len);
/* Bytes to text: UTF-8 replacement, then clean-up unless flags turn it off. */
gpt2c_status tok_bytes_to_text(const char *bytes, size_t n, unsigned flags, char **text, size_t *len);

#endif
