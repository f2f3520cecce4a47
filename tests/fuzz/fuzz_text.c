/* fuzz_text.c -- libFuzzer target for the tokenizer and the streaming text
 * on arbitrary bytes, with the real GPT-2 vocabulary: valid UTF-8 must
 * round-trip exactly through encode and decode; anything else must be
 * refused; streaming with stop strings must release a prefix of the text. */
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "gpt2c.h"

static gpt2c_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok && gpt2c_tokenizer_load("tests/fixtures/gpt2-tokenizer", &tok) != GPT2C_OK) abort();
    const char *text = (const char *)data;
    int32_t *ids;
    int n;
    gpt2c_status s = gpt2c_tokenize(tok, text, size, &ids, &n);
    int valid = utf8_validate(text, size) == size;
    if (valid != (s == GPT2C_OK)) abort();
    if (s != GPT2C_OK) return 0;
    char *back;
    size_t len;
    if (gpt2c_detokenize(tok, ids, n, GPT2C_DECODE_NO_CLEANUP, &back, &len) != GPT2C_OK) abort();
    if (len != size || memcmp(back, data, size) != 0) abort(); /* the round trip is exact */
    gpt2c_free(back);
    gpt2c_stream *st;
    if (gpt2c_stream_new(tok, ids, n / 2, 0, &st) != GPT2C_OK) abort();
    const char *stops[] = {"the", " ."};
    gpt2c_stream_set_stops(st, stops, 2);
    for (int i = n / 2; i < n; i++) {
        const char *piece;
        size_t pl;
        if (gpt2c_stream_push(st, ids[i], &piece, &pl) != GPT2C_OK) abort();
        if (utf8_validate(piece, pl) != pl) abort(); /* never half a character */
    }
    const char *piece;
    size_t pl;
    if (gpt2c_stream_finish(st, &piece, &pl) != GPT2C_OK) abort();
    gpt2c_stream_free(st);
    gpt2c_free(ids);
    return 0;
}
