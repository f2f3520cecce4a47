/* pretok.c -- tokenizer.json's pre_tokenizer: the Sequence of Split, Digits
 * and ByteLevel steps that BLOOM, StarCoder and other byte-level BPE
 * tokenizers declare, read from the file and run as the Rust `tokenizers`
 * library runs them (each step cuts every piece the steps before it made;
 * empty pieces vanish). GPT-2's own pre-tokenizer, ByteLevel alone, is not
 * run here: bpe.c splits with its pattern directly, which is faster. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/strbuf.h"
#include "../core/utf8.h"
#include "tokenizer.h"

/* Bounds that keep a hostile file from nesting or listing steps without end. */
#define PRETOK_MAX_STEPS 64
#define PRETOK_MAX_DEPTH 8
/* ... or a pattern without end: the longest Split pattern (bytes; BLOOM's
 * is 40), and the memory one match of it may take (KiB; PCRE2's default is
 * 20 GB). Its default step limit (10 million a match) bounds the time. */
#define PRETOK_MAX_PATTERN 65536
#define PRETOK_HEAP_LIMIT_KIB 65536

/* ---------------------------------------------------------------- Oniguruma
 * tokenizers compiles Split's Regex with Oniguruma; gpt2c has PCRE2. The two
 * agree on most syntax; what differs is rewritten here, the rest copied:
 * - a class inside a class is a union in Oniguruma ("[^(\s|[.,])]" is none
 *   of ( \s | . ,); PCRE2 has no nesting, so the inner class is written
 *   into the outer one;
 * - \s and [:space:] are Unicode's White_Space in Oniguruma (PCRE2's UCP
 *   ones also take U+180E, no longer a space since Unicode 6.3), \h a hex digit
 *   (PCRE2: horizontal space), \w the word characters of UTS #18, as
 *   Oniguruma's CR_Word (PCRE2's takes every N and no M); other POSIX
 *   brackets are copied;
 * - \uHHHH is a code point (PCRE2 wants \x{HHHH});
 * - (?m) lets . match a newline (PCRE2 calls that s);
 * - ^ and $ are always line anchors (PCRE2_MULTILINE);
 * - \C is a control character ("\C-a"), where PCRE2's is one byte that
 *   would cut a character in two: PCRE2_NEVER_BACKSLASH_C refuses it.
 * What has no flat PCRE2 form (a negated class or && inside a class, \H or
 * \W inside a class) is refused by name rather than guessed. */

/* Appends a C string (the replacements below). */
static int sb_str(strbuf *b, const char *s) { return sb_add(b, s, strlen(s)); }

/* Deeper nesting of character classes than this is refused (Oniguruma's
 * own parser stops at 4096; no real pattern nests more than two). */
#define ONIG_MAX_CLASS_DEPTH 32

#define ONIG_SPACE "\\p{White_Space}"
#define ONIG_NOT_SPACE "\\P{White_Space}"
#define ONIG_WORD "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"

/* Copies one whole UTF-8 character, so that no multi-byte character is
 * mistaken for syntax. */
static int copy_char(const char *s, size_t n, size_t *i, strbuf *o) {
    size_t k = 1;
    while (*i + k < n && ((unsigned char)s[*i + k] & 0xc0) == 0x80) k++;
    int rc = sb_add(o, s + *i, k);
    *i += k;
    return rc;
}

/* A hex digit of a \uHHHH escape. */
static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* The escape at s[*i] (a backslash), inside a class or not. Returns 0, -1
 * when out of memory, 1 (with *why) when it has no PCRE2 form there. */
static int tr_escape(const char *s, size_t n, size_t *i, int in_class, strbuf *o, const char **why) {
    if (*i + 1 >= n) { /* a lone trailing backslash: PCRE2 reports it */
        (*i)++;
        return sb_add(o, "\\", 1);
    }
    char c = s[*i + 1];
    const char *rep = NULL;
    switch (c) {
    case 's': rep = ONIG_SPACE; break;
    case 'S': rep = ONIG_NOT_SPACE; break;
    case 'h': rep = in_class ? "0-9a-fA-F" : "[0-9a-fA-F]"; break;
    case 'w': rep = in_class ? ONIG_WORD : "[" ONIG_WORD "]"; break;
    case 'H': rep = in_class ? NULL : "[^0-9a-fA-F]"; break;
    case 'W': rep = in_class ? NULL : "[^" ONIG_WORD "]"; break;
    case 'u':
        if (*i + 5 < n && is_hex(s[*i + 2]) && is_hex(s[*i + 3]) && is_hex(s[*i + 4]) && is_hex(s[*i + 5])) {
            *i += 6;
            return sb_str(o, "\\x{") || sb_add(o, s + *i - 4, 4) || sb_str(o, "}") ? -1 : 0;
        }
        break;
    default: break;
    }
    if ((c == 'H' || c == 'W') && in_class) {
        *why = c == 'H' ? "\\H inside a character class" : "\\W inside a character class";
        return 1;
    }
    if (rep) {
        *i += 2;
        return sb_str(o, rep);
    }
    (*i)++;
    return sb_add(o, "\\", 1) ? -1 : copy_char(s, n, i, o);
}

/* A POSIX bracket ("[:alpha:]", "[:^space:]") at s[i]: its length, else 0. */
static size_t posix_bracket(const char *s, size_t n, size_t i) {
    size_t k = i + 2;
    if (k > n || s[i] != '[' || s[i + 1] != ':') return 0;
    if (k < n && s[k] == '^') k++;
    while (k < n && ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z'))) k++;
    return k + 1 < n && s[k] == ':' && s[k + 1] == ']' ? k + 2 - i : 0;
}

/* A class body from s[*i] (just past its '[' and any '^') to its closing
 * ']', written into o without brackets, nested classes flattened into it
 * (nested: how deep this class is, 0 for the outermost; bounded, as the
 * recursion would otherwise let a hostile pattern of '[' exhaust the stack).
 * Returns as tr_escape does. */
static int tr_class_body(const char *s, size_t n, size_t *i, int nested, strbuf *o, const char **why) {
    size_t start = *i;
    int after_class = 0; /* the item just written was a nested class */
    if (nested > ONIG_MAX_CLASS_DEPTH) {
        *why = "character classes nested too deep";
        return 1;
    }
    while (*i < n) {
        char c = s[*i];
        if (c == ']' && *i > start) {
            (*i)++;
            return 0;
        }
        int rc, was_class = after_class;
        size_t pb;
        after_class = 0;
        if (c == ']') { /* first in its class: a literal, which must stay one wherever it lands */
            (*i)++;
            rc = sb_str(o, "\\]");
        } else if (c == '-' && (was_class || (nested && (*i == start || (*i + 1 < n && s[*i + 1] == ']'))))) {
            /* a literal at an inner class's edge, or just after an inner class
             * (Oniguruma's [[a]-z] is a, '-' and z), would make a range once
             * flattened */
            (*i)++;
            rc = sb_str(o, "\\-");
        } else if (c == '-' && *i > start && *i + 1 < n && s[*i + 1] == '[' && !posix_bracket(s, n, *i + 1)) {
            /* Oniguruma's [a-[bc]] is neither a range nor a union */
            *why = "a range that ends in a nested class";
            return 1;
        } else if (c == '\\') {
            rc = tr_escape(s, n, i, 1, o, why);
        } else if (c == '&' && *i + 1 < n && s[*i + 1] == '&') {
            *why = "a class intersection (&&)";
            return 1;
        } else if ((pb = posix_bracket(s, n, *i)) > 0) {
            /* [:space:] is White_Space in Oniguruma, as \s is */
            int sp = pb == 9 && !memcmp(s + *i, "[:space:]", 9), nsp = pb == 10 && !memcmp(s + *i, "[:^space:]", 10);
            rc = sp ? sb_str(o, ONIG_SPACE) : nsp ? sb_str(o, ONIG_NOT_SPACE) : sb_add(o, s + *i, pb);
            *i += pb;
        } else if (c == '[') {
            if (*i + 1 < n && s[*i + 1] == '^') {
                *why = "a negated class inside a class";
                return 1;
            }
            (*i)++;
            rc = tr_class_body(s, n, i, nested + 1, o, why);
            after_class = 1;
        } else {
            rc = copy_char(s, n, i, o);
        }
        if (rc) return rc;
    }
    *why = "a character class that is not closed";
    return 1;
}

/* Oniguruma pattern s[0..n) to PCRE2 syntax in o (see above). */
static int onig_to_pcre2(const char *s, size_t n, strbuf *o, const char **why) {
    size_t i = 0;
    while (i < n) {
        int rc;
        if (s[i] == '\\') {
            rc = tr_escape(s, n, &i, 0, o, why);
        } else if (s[i] == '[') {
            i++;
            rc = sb_add(o, "[", 1);
            if (!rc && i < n && s[i] == '^') rc = sb_add(o, "^", 1), i++;
            if (!rc) rc = tr_class_body(s, n, &i, 0, o, why);
            if (!rc) rc = sb_add(o, "]", 1);
        } else if (s[i] == '(' && i + 2 < n && s[i + 1] == '?' && strchr("imx-", s[i + 2])) {
            /* an option group: Oniguruma's m is PCRE2's s */
            size_t k = i + 2;
            while (k < n && s[k] && strchr("imx-", s[k])) k++;
            if (k < n && (s[k] == ':' || s[k] == ')')) {
                rc = sb_add(o, "(?", 2);
                for (size_t j = i + 2; !rc && j < k; j++) rc = sb_add(o, s[j] == 'm' ? "s" : s + j, 1);
                i = k;
            } else {
                rc = sb_add(o, s + i, 1), i++;
            }
        } else {
            rc = copy_char(s, n, &i, o);
        }
        if (rc) return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- loading */

/* A boolean field of a step: *out keeps dflt when the key is absent. */
static gpt2c_status get_bool(gpt2c_tokenizer *t, json_t *step, const char *key, int dflt, int *out,
                             const char *path, const char *field) {
    json_t *v = json_object_get(step, key);
    *out = dflt;
    if (!v) return GPT2C_OK;
    if (!json_is_boolean(v))
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: field '%s.%s' is not true or false", path, field, key);
    *out = json_is_true(v);
    return GPT2C_OK;
}

/* Appends one step to t->pretok (which then owns its pattern, freed here
 * on failure so no caller leaks it). */
static gpt2c_status push_step(gpt2c_tokenizer *t, tok_pretok step, const char *path, const char *field) {
    if (t->n_pretok >= PRETOK_MAX_STEPS) {
        if (step.re) pcre2_code_free(step.re);
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: field '%s': more than %d pre-tokenizer steps", path, field,
                       PRETOK_MAX_STEPS);
    }
    tok_pretok *p = realloc(t->pretok, (size_t)(t->n_pretok + 1) * sizeof *p);
    if (!p) {
        if (step.re) pcre2_code_free(step.re);
        return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    }
    t->pretok = p;
    t->pretok[t->n_pretok++] = step;
    return GPT2C_OK;
}

static gpt2c_status compile_pattern(gpt2c_tokenizer *t, const char *src, size_t len, int re, pcre2_code **out,
                                    const char *path, const char *field);

/* Split's pattern: {"Regex": Oniguruma syntax} or {"String": literal text},
 * compiled for PCRE2 (an empty String never matches, as in tokenizers). */
static gpt2c_status read_split_pattern(gpt2c_tokenizer *t, json_t *pat, tok_pretok *step, const char *path,
                                       const char *field) {
    json_t *re = json_object_get(pat, "Regex"), *str = json_object_get(pat, "String");
    if (!json_is_object(pat) || json_object_size(pat) != 1 || !(json_is_string(re) || json_is_string(str)))
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: field '%s.pattern' must be {\"Regex\": ...} or {\"String\": ...}",
                       path, field);
    json_t *v = re ? re : str;
    const char *src = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(src) != len)
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: field '%s.pattern' holds a NUL character", path, field);
    if (str && len == 0) return GPT2C_OK;
    return compile_pattern(t, src, len, re != NULL, &step->re, path, field);
}

/* src[0..len), Oniguruma syntax (regex) or literal text, compiled for PCRE2
 * into *out; `field` names the step in messages. */
static gpt2c_status compile_pattern(gpt2c_tokenizer *t, const char *src, size_t len, int re, pcre2_code **out,
                                    const char *path, const char *field) {
    if (len > PRETOK_MAX_PATTERN)
        return err_set(&t->err, GPT2C_ERR_UNSUPPORTED, "%s: field '%s.pattern' is %zu bytes long (at most %d)", path,
                       field, len, PRETOK_MAX_PATTERN);
    if (!t->pretok_match && (!(t->pretok_match = pcre2_match_context_create(NULL)) ||
                             pcre2_set_heap_limit(t->pretok_match, PRETOK_HEAP_LIMIT_KIB) != 0))
        return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    strbuf pcre = {0};
    const char *why = NULL;
    int rc = re ? onig_to_pcre2(src, len, &pcre, &why) : sb_add(&pcre, src, len);
    if (rc) {
        free(pcre.p);
        if (rc < 0) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
        return err_set(&t->err, GPT2C_ERR_UNSUPPORTED, "%s: field '%s.pattern': regex '%.80s' uses %s, which gpt2c cannot translate",
                       path, field, src, why);
    }
    int code;
    PCRE2_SIZE off;
    /* (PCRE2_LITERAL allows no UCP, which literal text has no use for) */
    uint32_t opts = re ? PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C : PCRE2_LITERAL;
    *out = pcre2_compile((PCRE2_SPTR)pcre.p, pcre.n, PCRE2_UTF | opts, &code, &off, NULL);
    free(pcre.p);
    if (!*out) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return err_set(&t->err, GPT2C_ERR_UNSUPPORTED, "%s: field '%s.pattern': regex '%.80s' does not compile: %s",
                       path, field, src, (const char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* faster where JIT exists; correct either way */
    return GPT2C_OK;
}

/* One pre-tokenizer object, at `field` for messages: a Sequence adds its
 * steps in order (flattened: a Sequence inside a Sequence cuts the same
 * pieces as its steps in line), any other type one step. */
static gpt2c_status read_step(gpt2c_tokenizer *t, json_t *p, const char *path, const char *field, int depth) {
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: field '%s.type' is not a string", path, field);
    tok_pretok step = {.kind = PRETOK_BYTELEVEL};
    gpt2c_status s = GPT2C_OK;
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list))
            return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: field '%s.pretokenizers' is not an array", path, field);
        if (depth >= PRETOK_MAX_DEPTH)
            return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: field '%s': Sequences nested more than %d deep", path, field,
                           PRETOK_MAX_DEPTH);
        for (size_t i = 0; s == GPT2C_OK && i < json_array_size(list); i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", field, i);
            s = read_step(t, json_array_get(list, i), path, sub, depth + 1);
        }
        return s;
    }
    if (!strcmp(type, "ByteLevel")) {
        /* tokenizers' defaults: add_prefix_space true, use_regex true */
        s = get_bool(t, p, "add_prefix_space", 1, &step.add_prefix_space, path, field);
        if (!s) s = get_bool(t, p, "use_regex", 1, &step.use_regex, path, field);
        /* tokenizers runs GPT-2's pattern with Oniguruma too: its \s is
         * White_Space, not PCRE2's (which takes U+180E) */
        if (!s && step.use_regex)
            s = compile_pattern(t, tok_gpt2_pattern, strlen(tok_gpt2_pattern), 1, &step.re, path, field);
    } else if (!strcmp(type, "Digits")) {
        int individual;
        step.kind = PRETOK_DIGITS;
        s = get_bool(t, p, "individual_digits", 0, &individual, path, field);
        step.behavior = individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
    } else if (!strcmp(type, "Split")) {
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        static const tok_split_behavior values[] = {SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT,
                                                    SPLIT_CONTIGUOUS};
        const char *b = json_string_value(json_object_get(p, "behavior"));
        int found = 0;
        for (int i = 0; b && i < 5; i++)
            if (!strcmp(b, names[i])) step.behavior = values[i], found = 1;
        step.kind = PRETOK_SPLIT;
        if (!found)
            return err_set(&t->err, GPT2C_ERR_FORMAT,
                           "%s: field '%s.behavior' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                           "Contiguous",
                           path, field);
        s = get_bool(t, p, "invert", 0, &step.invert, path, field);
        if (!s) s = read_split_pattern(t, json_object_get(p, "pattern"), &step, path, field);
    } else {
        return err_set(&t->err, GPT2C_ERR_UNSUPPORTED,
                       "%s: field '%s': pre-tokenizer '%.40s' is not supported (supported: Sequence, ByteLevel, Split, Digits)",
                       path, field, type);
    }
    if (s) {
        if (step.re) pcre2_code_free(step.re);
        return s;
    }
    return push_step(t, step, path, field);
}

gpt2c_status tok_read_pre_tokenizer(gpt2c_tokenizer *t, struct json_t *pt, const char *path) {
    /* No key at all: GPT-2's ByteLevel, as gpt2c has always read such files
     * (tokenizers itself writes the key in every file it saves). */
    if (!pt) return GPT2C_OK;
    t->custom_pretok = 1;
    if (json_is_null(pt)) return GPT2C_OK; /* no pre-tokenizer: the text is one piece */
    gpt2c_status s = read_step(t, pt, path, "pre_tokenizer", 0);
    if (s) return s;
    int byte_level = -1;
    for (int i = 0; i < t->n_pretok; i++) {
        if (t->pretok[i].kind != PRETOK_BYTELEVEL) continue;
        /* Mapped twice, the pieces would match no byte-level vocabulary. */
        if (byte_level >= 0)
            return err_set(&t->err, GPT2C_ERR_UNSUPPORTED, "%s: field 'pre_tokenizer': ByteLevel appears twice", path);
        byte_level = i;
        t->pretok[i].map_bytes = i + 1 < t->n_pretok;
    }
    /* GPT-2's own pre-tokenizer keeps bpe.c's direct path. */
    if (t->n_pretok == 1 && t->pretok[0].kind == PRETOK_BYTELEVEL && !t->pretok[0].add_prefix_space &&
        t->pretok[0].use_regex) {
        tok_pretok_free(t);
        t->custom_pretok = 0;
    }
    return GPT2C_OK;
}

/* Frees the steps (and their patterns); also used when the loader falls
 * back to bpe.c's direct GPT-2 path. */
void tok_pretok_free(gpt2c_tokenizer *t) {
    for (int i = 0; i < t->n_pretok; i++)
        if (t->pretok[i].re) pcre2_code_free(t->pretok[i].re);
    free(t->pretok);
    t->pretok = NULL;
    t->n_pretok = 0;
    pcre2_match_context_free(t->pretok_match);
    t->pretok_match = NULL;
}

/* ---------------------------------------------------------------- running */

/* Appends one span, growing the array by doubling. */
static int spans_push(tok_spans *a, size_t off, size_t len, int hit) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        tok_span *p = realloc(a->v, nc * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = (tok_span){off, len, hit};
    return 0;
}

/* Room for n more bytes of text; pieces are offsets, so growth moves none. */
static int text_reserve(tok_pieces *p, size_t n) {
    if (p->len + n <= p->cap) return 0;
    size_t nc = p->cap ? p->cap : 256;
    while (nc < p->len + n) nc *= 2;
    char *q = realloc(p->text, nc);
    if (!q) return -1;
    p->text = q;
    p->cap = nc;
    return 0;
}

/* The matches of re in one piece and the stretches between them, in order,
 * as tokenizers' Pattern::find_matches lists them. Empty matches follow
 * Oniguruma's find_iter: one right where the previous match ended is
 * skipped and the search moves on by a character. */
static gpt2c_status regex_hits(gpt2c_tokenizer *t, const pcre2_code *re, tok_pieces *p, tok_span piece) {
    const char *s = p->text + piece.off;
    size_t len = piece.len, prev = 0, start = 0, last_end = SIZE_MAX;
    while (start <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK, p->md, t->pretok_match);
        /* JIT code runs on a 32 KiB stack, which a long match of a
         * repeated group outgrows; the interpreter keeps to the heap limit. */
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, p->md, t->pretok_match);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return err_set(&t->err, GPT2C_ERR_INVALID, "tokenize: the pre-tokenizer's pattern failed on this text: %s",
                           (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md); /* rc 0: groups did not fit; the whole match did */
        size_t a = ov[0], b = ov[1];
        if (b < a || a < start || b > len)
            return err_set(&t->err, GPT2C_ERR_INVALID, "tokenize: pre-tokenizer regex gave a match outside its text (\\K?)");
        if (a == b && b == last_end) {
            start++;
            while (start < len && ((unsigned char)s[start] & 0xc0) == 0x80) start++;
            continue;
        }
        if ((a > prev && spans_push(&p->hits, piece.off + prev, a - prev, 0)) || spans_push(&p->hits, piece.off + a, b - a, 1))
            return err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
        prev = start = last_end = b;
    }
    if (prev < len && spans_push(&p->hits, piece.off + prev, len - prev, 0))
        return err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
    return GPT2C_OK;
}

/* Digits: every numeric character (Rust's char::is_numeric: Nd, Nl, No) is
 * a match of its own, as tokenizers' Pattern for a char predicate lists them. */
static int digit_hits(tok_pieces *p, tok_span piece) {
    const utf8proc_uint8_t *s = (const utf8proc_uint8_t *)p->text + piece.off;
    size_t prev = 0, i = 0;
    while (i < piece.len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(piece.len - i), &cp);
        if (k <= 0) k = 1, cp = -1; /* not reached: the text is valid UTF-8 */
        utf8proc_category_t c = cp < 0 ? UTF8PROC_CATEGORY_CN : utf8proc_category(cp);
        if (c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO) {
            if (i > prev && spans_push(&p->hits, piece.off + prev, i - prev, 0)) return -1;
            if (spans_push(&p->hits, piece.off + i, (size_t)k, 1)) return -1;
            prev = i + (size_t)k;
        }
        i += (size_t)k;
    }
    return prev < piece.len ? spans_push(&p->hits, piece.off + prev, piece.len - prev, 0) : 0;
}

/* The hits of one piece made into pieces as NormalizedString::split does
 * for each behavior (the merging looks only at this piece's hits), then
 * the empty ones dropped as PreTokenizedString::split drops them. */
static int apply_behavior(tok_split_behavior b, const tok_spans *h, tok_spans *out) {
    size_t first = out->n;
    int prev = 0;
    if (b == SPLIT_MERGED_NEXT) { /* tokenizers folds from the end, then reverses */
        for (size_t k = h->n; k-- > 0;) {
            tok_span x = h->v[k];
            if (x.hit && !prev && out->n > first) {
                tok_span *l = &out->v[out->n - 1];
                l->len += l->off - x.off;
                l->off = x.off;
            } else if (spans_push(out, x.off, x.len, 0)) {
                return -1;
            }
            prev = x.hit;
        }
        for (size_t i = first, j = out->n; i + 1 < j; i++, j--) {
            tok_span tmp = out->v[i];
            out->v[i] = out->v[j - 1];
            out->v[j - 1] = tmp;
        }
    } else {
        for (size_t k = 0; k < h->n; k++) {
            tok_span x = h->v[k];
            int join = out->n > first && ((b == SPLIT_CONTIGUOUS && x.hit == prev) ||
                                          (b == SPLIT_MERGED_PREV && x.hit && !prev));
            if (join) {
                tok_span *l = &out->v[out->n - 1];
                l->len = x.off + x.len - l->off;
            } else if (!(b == SPLIT_REMOVED && x.hit) && spans_push(out, x.off, x.len, 0)) {
                return -1;
            }
            prev = x.hit;
        }
    }
    size_t o = first;
    for (size_t i = first; i < out->n; i++)
        if (out->v[i].len) out->v[o++] = out->v[i];
    out->n = o;
    return 0;
}

/* ByteLevel on one piece: a space in front unless it has one, then GPT-2's
 * pattern, or the piece whole. */
static gpt2c_status byte_level(gpt2c_tokenizer *t, const tok_pretok *st, tok_pieces *p, tok_span piece) {
    if (st->add_prefix_space && p->text[piece.off] != ' ') {
        if (text_reserve(p, piece.len + 1)) return err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
        p->text[p->len] = ' ';
        memcpy(p->text + p->len + 1, p->text + piece.off, piece.len);
        piece = (tok_span){p->len, piece.len + 1, 0};
        p->len += piece.len;
    }
    if (!st->use_regex)
        return spans_push(&p->next, piece.off, piece.len, 0) ? err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory")
                                                             : GPT2C_OK;
    p->hits.n = 0;
    gpt2c_status s = regex_hits(t, st->re, p, piece);
    if (!s && apply_behavior(SPLIT_ISOLATED, &p->hits, &p->next))
        s = err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
    return s;
}

/* Rewrites every piece: bytes as GPT-2's printable code points (to = 1),
 * as ByteLevel leaves them for the steps after it, or back (to = 0) for BPE,
 * which gpt2c runs on raw bytes. */
static gpt2c_status remap(gpt2c_tokenizer *t, tok_pieces *p, int to) {
    int b2cp[256], cp2b[TOK_CP_LIMIT];
    if (to) tok_byte_table(b2cp);
    else tok_byte_table_inverse(cp2b);
    for (size_t k = 0; k < p->cur.n; k++) {
        tok_span *x = &p->cur.v[k];
        if (text_reserve(p, 2 * x->len)) return err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
        const unsigned char *s = (const unsigned char *)p->text + x->off;
        size_t o = p->len;
        if (to) {
            for (size_t i = 0; i < x->len; i++) o += utf8_encode((unsigned)b2cp[s[i]], p->text + o);
        } else {
            long nb = tok_string_to_bytes(cp2b, (const char *)s, x->len, p->text + o);
            if (nb < 0)
                return err_set(&t->err, GPT2C_ERR_INVALID, "tokenize: a pre-tokenizer step left a character that is no byte");
            o += (size_t)nb;
        }
        *x = (tok_span){p->len, o - p->len, 0};
        p->len = o;
    }
    return GPT2C_OK;
}

gpt2c_status tok_pretokenize(gpt2c_tokenizer *t, const char *s, size_t n, tok_pieces *p) {
    p->len = 0;
    p->cur.n = 0;
    if (n == 0) return GPT2C_OK; /* no piece: an empty stretch gets no prefix space either */
    if (!p->md && !(p->md = pcre2_match_data_create(1, NULL))) return err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
    if (text_reserve(p, n) || spans_push(&p->cur, 0, n, 0))
        return err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
    memcpy(p->text, s, n);
    p->len = n;
    int mapped = 0;
    for (int k = 0; k < t->n_pretok; k++) {
        const tok_pretok *st = &t->pretok[k];
        p->next.n = 0;
        for (size_t i = 0; i < p->cur.n; i++) {
            tok_span piece = p->cur.v[i];
            gpt2c_status e = GPT2C_OK;
            if (st->kind == PRETOK_BYTELEVEL) {
                e = byte_level(t, st, p, piece);
            } else {
                p->hits.n = 0;
                if (st->kind == PRETOK_DIGITS) {
                    if (digit_hits(p, piece)) e = err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
                } else if (st->re) {
                    e = regex_hits(t, st->re, p, piece);
                } else if (spans_push(&p->hits, piece.off, piece.len, 0)) { /* an empty String: no match */
                    e = err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
                }
                for (size_t h = 0; st->invert && h < p->hits.n; h++) p->hits.v[h].hit = !p->hits.v[h].hit;
                if (!e && apply_behavior(st->behavior, &p->hits, &p->next))
                    e = err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
            }
            if (e) return e;
        }
        tok_spans tmp = p->cur;
        p->cur = p->next;
        p->next = tmp;
        if (st->kind == PRETOK_BYTELEVEL && st->map_bytes) {
            gpt2c_status e = remap(t, p, 1);
            if (e) return e;
            mapped = 1;
        }
    }
    return mapped ? remap(t, p, 0) : GPT2C_OK;
}

void tok_pieces_free(tok_pieces *p) {
    free(p->text);
    free(p->cur.v);
    free(p->next.v);
    free(p->hits.v);
    if (p->md) pcre2_match_data_free(p->md);
}
