/* strbuf.h -- a growable byte buffer, always NUL-terminated (regex
 * patterns built for pcre2_compile, response bodies, server-sent events). */
#ifndef GPT2C_STRBUF_H
#define GPT2C_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *p;
    size_t n, cap;
} strbuf;
int sb_add(strbuf *b, const char *s, size_t n); /* 0, or -1 out of memory */
int sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_free(strbuf *b);

#endif
