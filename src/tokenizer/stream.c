/* stream.c -- text for streaming output, and stop strings. Each push re-decodes the whole
 * sequence (a few KiB at most, so this costs microseconds) and releases only
 * the part that no later token can change: no unfinished UTF-8 character and
 * no tail that clean-up might still rewrite (" " before "." for instance).
 * The released pieces therefore always concatenate to exactly the text the
 * transformers pipeline returns. */
#include <stdlib.h>
#include <string.h>

#include "../core/utf8.h"
#include "tokenizer.h"

struct gpt2c_stream {
    const gpt2c_tokenizer *tok;
    unsigned flags;
    idvec ids;           /* prompt + new ids */
    size_t prompt_chars; /* code points of decode(prompt) */
    size_t emitted;      /* bytes of new text already released */
    char *piece;         /* the last released piece */
    char **stops;        /* stop strings, copied */
    int n_stops, stopped;
};

gpt2c_status gpt2c_stream_set_stops(gpt2c_stream *s, const char *const *stops, int n_stops) {
    if (n_stops < 0 || (n_stops > 0 && !stops)) return GPT2C_ERR_INVALID;
    for (int i = 0; i < n_stops; i++)
        if (!stops[i] || !stops[i][0]) return GPT2C_ERR_INVALID; /* an empty stop would match at once */
    char **copy = calloc((size_t)n_stops + 1, sizeof *copy);
    if (!copy) return GPT2C_ERR_NOMEM;
    for (int i = 0; i < n_stops; i++)
        if (!(copy[i] = strdup(stops[i]))) {
            for (int j = 0; j < i; j++) free(copy[j]);
            free(copy);
            return GPT2C_ERR_NOMEM;
        }
    for (int i = 0; i < s->n_stops; i++) free(s->stops[i]);
    free(s->stops);
    s->stops = copy;
    s->n_stops = n_stops;
    return GPT2C_OK;
}

int gpt2c_stream_stopped(const gpt2c_stream *s) { return s->stopped; }

/* The earliest position in t[0..n) where any stop string starts, or -1. */
static long find_stop(const gpt2c_stream *s, const char *t, size_t n) {
    long best = -1;
    for (int i = 0; i < s->n_stops; i++) {
        size_t l = strlen(s->stops[i]);
        for (size_t p = 0; l <= n && p <= n - l && (best < 0 || (long)p < best); p++)
            if (memcmp(t + p, s->stops[i], l) == 0) {
                best = (long)p;
                break;
            }
    }
    return best;
}

/* The longest tail of t[0..n) that is a proper prefix of a stop string:
 * text that may yet turn out to be the start of one. */
static size_t stop_holdback(const gpt2c_stream *s, const char *t, size_t n) {
    size_t best = 0;
    for (int i = 0; i < s->n_stops; i++) {
        size_t l = strlen(s->stops[i]);
        for (size_t k = l - 1; k > best; k--)
            if (k <= n && memcmp(t + n - k, s->stops[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

gpt2c_status gpt2c_stream_new(const gpt2c_tokenizer *t, const int32_t *prompt, int n_prompt, unsigned flags,
                              gpt2c_stream **out) {
    gpt2c_stream *s = calloc(1, sizeof *s);
    *out = s;
    if (!s) return GPT2C_ERR_NOMEM;
    s->tok = t;
    s->flags = flags;
    for (int i = 0; i < n_prompt; i++)
        if (idvec_push(&s->ids, prompt[i])) return GPT2C_ERR_NOMEM;
    char *text;
    size_t len;
    gpt2c_status st = gpt2c_detokenize(t, prompt, n_prompt, flags, &text, &len);
    if (st) return st;
    s->prompt_chars = utf8_count(text, len);
    free(text);
    return GPT2C_OK;
}

/* Bytes at the end of raw token bytes that start a character but do not
 * finish it yet. */
static size_t unfinished_tail(const char *b, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        size_t bad;
        int trunc;
        unsigned char c = (unsigned char)b[n - k];
        if ((c & 0xc0) == 0x80) continue; /* a continuation byte: look further back */
        if (c < 0x80) return 0;
        return utf8_seq((const unsigned char *)b + n - k, k, &bad, &trunc) == 0 && trunc && bad == k ? k : 0;
    }
    return 0;
}

/* How many trailing bytes of text could still be rewritten by clean-up:
 * the longest tail that is a proper prefix of one of its patterns. */
static size_t cleanup_holdback(const char *s, size_t n) {
    static const char *const pat[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    size_t best = 0;
    for (size_t p = 0; p < sizeof pat / sizeof pat[0]; p++) {
        size_t pl = strlen(pat[p]);
        for (size_t k = pl - 1; k > best; k--)
            if (k <= n && memcmp(s + n - k, pat[p], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

static gpt2c_status release(gpt2c_stream *s, int final, const char **piece, size_t *len) {
    *piece = "";
    *len = 0;
    char *bytes, *text;
    size_t nb, tlen;
    gpt2c_status st = tok_collect_bytes(s->tok, s->ids.v, s->ids.n, s->flags, &bytes, &nb);
    if (st) return st;
    if (!final) nb -= unfinished_tail(bytes, nb);
    st = tok_bytes_to_text(bytes, nb, s->flags, &text, &tlen);
    free(bytes);
    if (st) return st;
    /* The new text starts after as many code points as decode(prompt) has. */
    size_t start = utf8_skip(text, tlen, s->prompt_chars);
    size_t end = tlen;
    if (!final && !(s->flags & GPT2C_DECODE_NO_CLEANUP)) end -= cleanup_holdback(text, tlen);
    if (s->stopped || utf8_count(text, start) < s->prompt_chars) end = 0;
    if (end > start && s->n_stops > 0) {
        /* Only settled text can hold a stop string: clean-up may still
         * rewrite the tail. The text ends just before the stop. */
        long at = find_stop(s, text + start, end - start);
        if (at >= 0) {
            end = start + (size_t)at;
            s->stopped = 1;
        } else if (!final) {
            end -= stop_holdback(s, text + start, end - start);
        }
    }
    if (end <= start + s->emitted) {
        free(text);
        return GPT2C_OK;
    }
    size_t n = end - start - s->emitted;
    free(s->piece);
    s->piece = malloc(n + 1);
    if (!s->piece) {
        free(text);
        return GPT2C_ERR_NOMEM;
    }
    memcpy(s->piece, text + start + s->emitted, n);
    s->piece[n] = '\0';
    *piece = s->piece;
    *len = n;
    s->emitted += n;
    free(text);
    return GPT2C_OK;
}

gpt2c_status gpt2c_stream_push(gpt2c_stream *s, int32_t id, const char **piece, size_t *len) {
    *piece = "";
    *len = 0;
    if (id < 0 || (!(s->flags & GPT2C_DECODE_SKIP_UNKNOWN) && (id >= s->tok->n_vocab || !s->tok->present[id])))
        return GPT2C_ERR_INVALID;
    if (idvec_push(&s->ids, id)) return GPT2C_ERR_NOMEM;
    return release(s, 0, piece, len);
}

gpt2c_status gpt2c_stream_finish(gpt2c_stream *s, const char **piece, size_t *len) {
    return release(s, 1, piece, len);
}

void gpt2c_stream_free(gpt2c_stream *s) {
    if (!s) return;
    for (int i = 0; i < s->n_stops; i++) free(s->stops[i]);
    free(s->stops);
    free(s->ids.v);
    free(s->piece);
    free(s);
}
