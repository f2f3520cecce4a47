/* data.c -- training data (data.h): examples from text or JSON lines,
 * tokenized, grouped into blocks as run_clm.py's group_texts does. */
#include "data.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "train.h"

/* A growing run of tokens and their labels. */
typedef struct seq {
    int32_t *tok, *lab;
    long n, cap;
} seq;

static int seq_push(seq *s, const int32_t *ids, int n, int labelled) {
    if (s->n + n > s->cap) {
        long cap = s->cap ? s->cap : 4096;
        while (cap < s->n + n) cap *= 2;
        int32_t *t = realloc(s->tok, (size_t)cap * sizeof *t);
        if (t) s->tok = t;
        int32_t *l = realloc(s->lab, (size_t)cap * sizeof *l);
        if (l) s->lab = l;
        if (!t || !l) return -1;
        s->cap = cap;
    }
    for (int i = 0; i < n; i++) {
        s->tok[s->n + i] = ids[i];
        s->lab[s->n + i] = labelled ? ids[i] : TRAIN_IGNORE;
    }
    s->n += n;
    return 0;
}

/* Tokenizes len bytes of text onto s. */
static gpt2c_status push_text(gpt2c_tokenizer *tok, seq *s, const char *text, size_t len, int labelled,
                              const char *path, long line, gpt2_err *e) {
    int32_t *ids = NULL;
    int n = 0;
    gpt2c_status st = gpt2c_tokenize(tok, text, len, &ids, &n);
    if (st) return err_set(e, st, "%s:%ld: %s", path, line, gpt2c_tokenizer_errmsg(tok));
    const int bad = seq_push(s, ids, n, labelled);
    gpt2c_free(ids);
    return bad ? err_set(e, GPT2C_ERR_NOMEM, "out of memory reading %s", path) : GPT2C_OK;
}

/* Cuts s into whole blocks (group_texts). */
static gpt2c_status group(seq *s, int block, long examples, train_data *d, const char *path, const char *which,
                          gpt2_err *e) {
    memset(d, 0, sizeof *d);
    d->block = block, d->n_examples = examples, d->n_tokens = s->n;
    d->n_blocks = s->n / block;
    if (d->n_blocks == 0)
        return err_set(e, GPT2C_ERR_INVALID, "%s: %s has %ld tokens, fewer than one block of %d (give a smaller "
                       "--block-size)", path, which, s->n, block);
    d->tokens = s->tok, d->labels = s->lab;
    s->tok = s->lab = NULL;
    return GPT2C_OK;
}

gpt2c_status train_data_load(gpt2c_tokenizer *tok, const char *path, int block, int eos, double val_percent,
                             train_data *train, train_data *val, gpt2_err *e) {
    char *data = NULL;
    size_t size = 0;
    gpt2c_status st = file_read(path, (size_t)1 << 34, &data, &size, e);
    if (st) return st;
    const size_t plen = strlen(path);
    const int jsonl = (plen > 6 && !strcmp(path + plen - 6, ".jsonl")) || (plen > 5 && !strcmp(path + plen - 5, ".json"));

    /* The examples: each line (JSON lines: each non-blank line). */
    long n_ex = 0;
    for (size_t i = 0; i < size;) {
        const char *nl = memchr(data + i, '\n', size - i);
        const size_t end = nl ? (size_t)(nl - data) + 1 : size;
        int blank = 1;
        for (size_t j = i; j < end && blank; j++) blank = data[j] == ' ' || data[j] == '\t' || data[j] == '\r' || data[j] == '\n';
        n_ex += !(jsonl && blank);
        i = end;
    }
    const long n_val = val_percent > 0 ? lround((double)n_ex * val_percent / 100.0) : 0;
    seq parts[2] = {{0}, {0}}; /* validation, training */
    long ex = 0, line = 0;
    for (size_t i = 0; !st && i < size;) {
        const char *nl = memchr(data + i, '\n', size - i);
        const size_t end = nl ? (size_t)(nl - data) + 1 : size;
        line++;
        seq *s = &parts[ex >= n_val];
        if (!jsonl) {
            st = push_text(tok, s, data + i, end - i, 1, path, line, e);
            ex++;
        } else {
            json_error_t je;
            json_t *r = json_loadb(data + i, end - i, JSON_DECODE_ANY, &je);
            const char *txt = NULL, *prompt = NULL, *compl = NULL;
            if (!r) {
                int blank = 1;
                for (size_t j = i; j < end && blank; j++) blank = data[j] == ' ' || data[j] == '\t' || data[j] == '\r' || data[j] == '\n';
                if (!blank) st = err_set(e, GPT2C_ERR_FORMAT, "%s:%ld: not JSON: %s", path, line, je.text);
                i = end;
                continue;
            }
            if (json_is_object(r)) {
                txt = json_string_value(json_object_get(r, "text"));
                prompt = json_string_value(json_object_get(r, "prompt"));
                compl = json_string_value(json_object_get(r, "completion"));
            }
            if (txt) st = push_text(tok, s, txt, strlen(txt), 1, path, line, e);
            else if (prompt && compl) {
                st = push_text(tok, s, prompt, strlen(prompt), 0, path, line, e);
                if (!st) st = push_text(tok, s, compl, strlen(compl), 1, path, line, e);
            } else
                st = err_set(e, GPT2C_ERR_FORMAT, "%s:%ld: a record needs a string \"text\", or strings \"prompt\" "
                             "and \"completion\"", path, line);
            json_decref(r);
            /* Each record is a document. */
            if (!st && eos >= 0 && seq_push(s, &(int32_t){eos}, 1, 1))
                st = err_set(e, GPT2C_ERR_NOMEM, "out of memory reading %s", path);
            ex++;
        }
        i = end;
    }
    /* A text file is one document: EOS after its last line. */
    if (!st && !jsonl && eos >= 0 && seq_push(&parts[1], &(int32_t){eos}, 1, 1))
        st = err_set(e, GPT2C_ERR_NOMEM, "out of memory reading %s", path);
    free(data);
    if (!st && n_ex == 0) st = err_set(e, GPT2C_ERR_INVALID, "%s: no examples", path);
    if (!st) st = group(&parts[1], block, n_ex - n_val, train, path, n_val ? "the training split" : "the file", e);
    if (!st && n_val) {
        st = group(&parts[0], block, n_val, val, path, "the validation split", e);
        if (st) train_data_free(train);
    }
    for (int k = 0; k < 2; k++) free(parts[k].tok), free(parts[k].lab);
    return st;
}

void train_data_free(train_data *d) {
    free(d->tokens);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void train_shuffle(long *order, long n, uint64_t seed, long epoch) {
    uint64_t x = seed * 0x100000001b3ull + (uint64_t)epoch;
    for (long i = 0; i < n; i++) order[i] = i;
    for (long i = n - 1; i > 0; i--) {
        const long j = (long)(splitmix64(&x) % (uint64_t)(i + 1));
        const long tmp = order[i];
        order[i] = order[j], order[j] = tmp;
    }
}
