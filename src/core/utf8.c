/* utf8.c -- see utf8.h. The replacement rule is the Unicode "maximal subpart"
 * practice, which is what CPython implements: a lead byte followed by some
 * valid continuation bytes and then a bad byte is replaced by a single U+FFFD,
 * and decoding resumes at the bad byte. */
#include "utf8.h"

size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad_len, int *truncated) {
    *bad_len = 1;
    *truncated = 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c == 0xe0) need = 2, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec) need = 2;
    else if (c == 0xed) need = 2, hi = 0x9f;
    else if (c >= 0xee && c <= 0xef) need = 2;
    else if (c == 0xf0) need = 3, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else if (c == 0xf4) need = 3, hi = 0x8f;
    else return 0; /* 0x80..0xc1 and 0xf5..0xff never start a character */
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n) {
            *bad_len = i;
            *truncated = 1;
            return 0;
        }
        unsigned b = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xbf;
        if (b < l || b > h) {
            *bad_len = i;
            return 0;
        }
    }
    return need + 1;
}

size_t utf8_validate(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t bad, k;
        int trunc;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        k = utf8_seq(u + i, n - i, &bad, &trunc);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

size_t utf8_replace(const char *in, size_t n, char *out) {
    const unsigned char *u = (const unsigned char *)in;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t bad;
        int trunc;
        size_t k = utf8_seq(u + i, n - i, &bad, &trunc);
        if (k) {
            for (size_t j = 0; j < k; j++) out[o++] = (char)u[i + j];
            i += k;
        } else {
            out[o++] = (char)0xef;
            out[o++] = (char)0xbf;
            out[o++] = (char)0xbd;
            i += bad;
        }
    }
    return o;
}

size_t utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) c++;
    return c;
}

size_t utf8_skip(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (i < n && k > 0) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80) i++;
        k--;
    }
    return i;
}

size_t utf8_encode(unsigned cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18), out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}
