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

/* One step of tokenizer.json's pre_tokenizer (pretok.c), as the Rust
 * `tokenizers` library defines it. */
typedef enum { PRETOK_SPLIT, PRETOK_DIGITS, PRETOK_BYTELEVEL } tok_pretok_kind;
/* What a split does with the stretches its pattern matches (tokenizers'
 * SplitDelimiterBehavior). */
typedef enum {
    SPLIT_REMOVED,     /* dropped */
    SPLIT_ISOLATED,    /* pieces of their own */
    SPLIT_MERGED_PREV, /* joined to the piece before */
    SPLIT_MERGED_NEXT, /* joined to the piece after */
    SPLIT_CONTIGUOUS   /* adjacent matches joined into one piece */
} tok_split_behavior;

typedef struct tok_pretok {
    tok_pretok_kind kind;
    tok_split_behavior behavior; /* Split; Digits (Isolated or Contiguous) */
    int invert;                  /* Split: what lies between matches is what is split off */
    pcre2_code *re;              /* Split: the pattern for PCRE2 (NULL: an empty String, which never matches);
                                    ByteLevel with use_regex: GPT-2's pattern with Oniguruma's \s */
    int add_prefix_space;        /* ByteLevel: a space before every piece that does not start with one */
    int use_regex;               /* ByteLevel: split each piece with GPT-2's pattern */
    int map_bytes;               /* ByteLevel with steps after it: they see bytes as printable code points */
} tok_pretok;

/* The pieces of one stretch of text as the pre-tokenizer cuts it: spans of
 * `text`, which holds the stretch and then every piece rewritten since (a
 * space put in front, bytes shown as code points). Kept for a whole
 * gpt2c_tokenize call so that its buffers are reused. */
typedef struct tok_span {
    size_t off, len;
    int hit; /* (pattern matches only) the stretch is a match */
} tok_span;
typedef struct tok_spans {
    tok_span *v;
    size_t n, cap;
} tok_spans;
typedef struct tok_pieces {
    char *text;
    size_t len, cap;
    tok_spans cur, next, hits;
    pcre2_match_data *md;
} tok_pieces;

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
    unsigned char special_first[256]; /* 1 for each byte some special or added token starts with */
    int eos_id;
    int add_bos_id;        /* tokenizer_config.json's add_bos_token: prepended to every encoding; -1: none */
    int normalize;         /* tokenizer.json's normalizer as utf8proc options (NFC: UTF8PROC_COMPOSE); 0: none */
    pcre2_code *re;        /* GPT-2's pattern (ByteLevel's use_regex) */
    int jit;               /* 1 when the pattern was JIT-compiled */
    int custom_pretok;     /* 1: tokenizer.json's own pre_tokenizer, pretok[] (none: no split); 0: GPT-2's pattern alone */
    tok_pretok *pretok;
    int n_pretok;
    pcre2_match_context *pretok_match; /* their patterns' limits (pretok.c); read-only while encoding */
    pthread_mutex_t cache_lock;
    strmap cache;          /* pre-token bytes -> index into cache_ids */
    int *cache_ids;        /* [n, id0, id1, ...] records */
    size_t cache_len, cache_cap;
    int no_cache;          /* 1: never use the cache (the differential fuzzer's reference) */
    void *image;           /* the mapped image (image.c) that bytes, off, present, special, vocab,
                              merges and merge_result point into; NULL: they are malloc'd */
    size_t image_size;
};

/* The tokenizer image (image.c): the tables vocab.json + merges.txt build,
 * cached by the SHA-256 of the source files. tok_image_key hashes them (an
 * absent file counts as such): 0, or -1 when there is no key (no OpenSSL in
 * this build, a file unreadable). tok_image_load maps a valid image for key
 * into t (1) or finds none (0); tok_image_save writes t's tables, best
 * effort, as they are right after the vocabulary and merges are built. */
int tok_image_key(const char *const *paths, int n, unsigned char key[32]);
int tok_image_load(gpt2c_tokenizer *t, const unsigned char key[32]);
void tok_image_save(const gpt2c_tokenizer *t, const unsigned char key[32]);

/* The GPT-2 byte <-> printable code point table (bytes_to_unicode); every
 * code point it uses is below TOK_CP_LIMIT. */
#define TOK_CP_LIMIT 324
void tok_byte_table(int byte_to_cp[256]);
/* Its inverse: cp_to_byte[cp] is the byte code point cp stands for, or -1. */
void tok_byte_table_inverse(int cp_to_byte[TOK_CP_LIMIT]);
/* A string of the table's code points (a vocabulary entry, or a piece a
 * ByteLevel step rewrote) back into raw bytes at out (n bytes at most):
 * the byte count, or -1 if a character is not in the table. */
long tok_string_to_bytes(const int cp_to_byte[TOK_CP_LIMIT], const char *s, size_t n, char *out);

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

/* bpe.c: the GPT-2 pattern (PCRE2 syntax, which pretok.c also reads as
 * Oniguruma's for tokenizer.json's ByteLevel step). */
extern const char tok_gpt2_pattern[];

/* pretok.c */
/* Reads tokenizer.json's "pre_tokenizer" (pt; NULL when the key is absent)
 * into t->pretok / t->custom_pretok; path names the file in messages. */
struct json_t; /* jansson's */
gpt2c_status tok_read_pre_tokenizer(gpt2c_tokenizer *t, struct json_t *pt, const char *path);
void tok_pretok_free(gpt2c_tokenizer *t);
/* Cuts s[0..n) into the pieces BPE encodes, each as raw bytes, into p. */
gpt2c_status tok_pretokenize(gpt2c_tokenizer *t, const char *s, size_t n, tok_pieces *p);
void tok_pieces_free(tok_pieces *p);

#endif
