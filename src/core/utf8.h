/* utf8.h -- UTF-8 validation and Python-compatible decoding with
 * replacement. The tokenizer works on bytes; these functions are the border
 * between those bytes and the text a user sees. */
#ifndef GPT2C_UTF8_H
#define GPT2C_UTF8_H

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence starting at s (at most n bytes
 * available), or 0 if the bytes there are not one. When 0 is returned,
 * *bad_len receives how many bytes form the maximal ill-formed subpart that
 * Python's decoder replaces with one U+FFFD, and *truncated is set when those
 * bytes are a valid but unfinished prefix cut by the end of the input. */
size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad_len, int *truncated);

/* Offset of the first byte that is not valid UTF-8, or n if all of it is. */
size_t utf8_validate(const char *s, size_t n);

/* Decodes n bytes as Python's bytes.decode("utf-8", errors="replace") does,
 * writing valid UTF-8 to out (which must hold 3 * n bytes). Returns the
 * output length. */
size_t utf8_replace(const char *in, size_t n, char *out);

/* Number of code points in valid UTF-8 text. */
size_t utf8_count(const char *s, size_t n);

/* Byte offset after the first k code points of valid UTF-8 text (n if the
 * text has fewer). */
size_t utf8_skip(const char *s, size_t n, size_t k);

/* Writes code point cp (below 0x110000, not a surrogate) as UTF-8 to out
 * (room for 4 bytes); returns the bytes written. */
size_t utf8_encode(unsigned cp, char *out);

#endif
