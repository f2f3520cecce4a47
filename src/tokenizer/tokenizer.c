/* tokenizer.c -- loading a GPT-2 byte-level BPE tokenizer from vocab.json +
 * merges.txt (what the slow GPT2Tokenizer reads) or from tokenizer.json (what
 * newer hub repos ship), into one in-memory form. */
#include "tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../core/file.h"
#include "../core/utf8.h"

void tok_byte_table(int byte_to_cp[256]) {
    /* Printable bytes stand for themselves; the others are mapped, in byte
     * order, onto code points from 256 up, so every token is printable. */
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        byte_to_cp[b] = printable ? b : 256 + n++;
    }
}

void tok_byte_table_inverse(int cp_to_byte[TOK_CP_LIMIT]) {
    int b2cp[256];
    tok_byte_table(b2cp);
    for (int i = 0; i < TOK_CP_LIMIT; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[b2cp[b]] = b;
}

long tok_string_to_bytes(const int cp_to_byte[TOK_CP_LIMIT], const char *s, size_t n, char *out) {
    size_t i = 0;
    long o = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        int cp, k;
        if (c < 0x80) cp = c, k = 1;
        else if ((c & 0xe0) == 0xc0 && i + 1 < n) cp = ((c & 0x1f) << 6) | (s[i + 1] & 0x3f), k = 2;
        else return -1; /* every table code point is below U+0800 */
        if (cp >= TOK_CP_LIMIT || cp_to_byte[cp] < 0) return -1;
        out[o++] = (char)cp_to_byte[cp];
        i += (size_t)k;
    }
    return o;
}

typedef struct loader {
    gpt2c_tokenizer *t;
    int cp_to_byte[TOK_CP_LIMIT];
    char *scratch; /* decoding buffer for one token string */
    size_t scratch_cap;
    tok_special *added; /* added_tokens.json: ids beyond vocab.json's */
    int n_added;
} loader;

static int ensure_scratch(loader *L, size_t n) {
    if (n <= L->scratch_cap) return 0;
    char *p = realloc(L->scratch, n);
    if (!p) return -1;
    L->scratch = p;
    L->scratch_cap = n;
    return 0;
}

/* One vocabulary entry: a token string (printable code points) and its id. */
static gpt2c_status add_vocab_entry(loader *L, const char *key, size_t klen, long long id, const char *where,
                                    int *max_id) {
    gpt2c_tokenizer *t = L->t;
    if (id < 0 || id >= TOK_MAX_VOCAB)
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: token '%.40s': id is not an integer in [0, %d)", where, key,
                       TOK_MAX_VOCAB);
    if (t->vocab.n >= TOK_MAX_VOCAB)
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: more than the %d tokens allowed", where, TOK_MAX_VOCAB);
    if (ensure_scratch(L, klen + 1)) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    long n = tok_string_to_bytes(L->cp_to_byte, key, klen, L->scratch);
    if (n < 0)
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: token '%.40s' has a character outside GPT-2's byte alphabet",
                       where, key);
    int rc = strmap_add(&t->vocab, L->scratch, (size_t)n, (int)id);
    if (rc == 1) return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: token '%.40s' appears twice", where, key);
    if (rc) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    if (id > *max_id) *max_id = (int)id;
    return GPT2C_OK;
}

/* Builds the id -> bytes table once every entry is in. */
static gpt2c_status finish_vocab(loader *L, int max_id, const char *where) {
    gpt2c_tokenizer *t = L->t;
    if (max_id < 0) return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: vocabulary is empty", where);
    for (int i = 0; i < L->n_added; i++)
        if (L->added[i].id > max_id) max_id = L->added[i].id;
    t->n_vocab = max_id + 1;
    t->off = calloc((size_t)t->n_vocab + 1, sizeof *t->off);
    t->present = calloc((size_t)t->n_vocab, 1);
    t->special = calloc((size_t)t->n_vocab, 1);
    size_t *len = calloc((size_t)t->n_vocab, sizeof *len);
    const char **src = calloc((size_t)t->n_vocab, sizeof *src);
    if (!t->off || !t->present || !t->special || !len || !src) {
        free(len);
        free(src);
        return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < t->vocab.n; i++) {
        int id = t->vocab.e[i].val;
        if (t->present[id]) {
            free(len);
            free(src);
            return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: id %d is given to two tokens", where, id);
        }
        t->present[id] = 1;
        src[id] = strmap_key(&t->vocab, i, &len[id]);
    }
    /* Added tokens decode to their text as written. One the vocabulary
     * already has (tokenizer.json lists its special tokens in both) is the
     * same token. */
    for (int i = 0; i < L->n_added; i++) {
        const tok_special *a = &L->added[i];
        if (t->present[a->id] && len[a->id] == a->len && !memcmp(src[a->id], a->text, a->len)) continue;
        if (t->present[a->id]) {
            free(len);
            free(src);
            return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: added token id %d ('%.40s') is another token's", where,
                           a->id, a->text);
        }
        t->present[a->id] = 1;
        src[a->id] = a->text;
        len[a->id] = a->len;
    }
    size_t total = 0;
    t->max_token_bytes = 1;
    for (int i = 0; i < t->n_vocab; i++) {
        t->off[i] = total;
        total += len[i];
        if (len[i] > t->max_token_bytes) t->max_token_bytes = len[i];
    }
    t->off[t->n_vocab] = total;
    t->bytes = malloc(total ? total : 1);
    if (!t->bytes) {
        free(len);
        free(src);
        return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < t->n_vocab; i++)
        if (len[i]) memcpy(t->bytes + t->off[i], src[i], len[i]);
    free(len);
    free(src);
    return GPT2C_OK;
}

static gpt2c_status load_vocab_object(loader *L, json_t *obj, const char *where) {
    if (!json_is_object(obj)) return err_set(&L->t->err, GPT2C_ERR_FORMAT, "%s: vocabulary is not a JSON object", where);
    const char *key;
    json_t *v;
    int max_id = -1;
    gpt2c_status s;
    json_object_foreach(obj, key, v) {
        if (!json_is_integer(v))
            return err_set(&L->t->err, GPT2C_ERR_FORMAT, "%s: token '%.40s': id is not an integer in [0, %d)", where,
                           key, TOK_MAX_VOCAB);
        if ((s = add_vocab_entry(L, key, strlen(key), json_integer_value(v), where, &max_id))) return s;
    }
    return finish_vocab(L, max_id, where);
}

/* vocab.json is one flat object of 50k string keys and integer values.
 * jansson's DOM for it costs about 45 ms to build and 10 to free, most of a
 * tokenizer's load time (measured: 75 ms in all); this scanner reads exactly
 * that shape in a few ms. Anything else in the file -- nesting, floats --
 * returns 1 and the caller falls back to jansson, which then judges it. */
static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

static int scan_vocab(loader *L, const char *p, const char *end, const char *where, gpt2c_status *status) {
    size_t cap = 256;
    char *key = malloc(cap); /* an empty key still needs its terminator (found by fuzz_files) */
    int max_id = -1, rc = 1;
    if (!key) goto out;
#define WS() while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++
    WS();
    if (p >= end || *p++ != '{') goto out;
    WS();
    if (p < end && *p == '}') goto out; /* empty: let jansson and finish_vocab say so */
    for (;;) {
        WS();
        if (p >= end || *p++ != '"') goto out;
        size_t k = 0;
        while (p < end && *p != '"') {
            if (k + 8 > cap) {
                char *nk = realloc(key, cap *= 2);
                if (!nk) goto out;
                key = nk;
            }
            unsigned char c = (unsigned char)*p++;
            if (c < 0x20) goto out;
            if (c != '\\') {
                key[k++] = (char)c;
                continue;
            }
            if (p >= end) goto out;
            char e = *p++;
            int cp;
            switch (e) {
            case '"': case '\\': case '/': key[k++] = e; continue;
            case 'b': key[k++] = '\b'; continue;
            case 'f': key[k++] = '\f'; continue;
            case 'n': key[k++] = '\n'; continue;
            case 'r': key[k++] = '\r'; continue;
            case 't': key[k++] = '\t'; continue;
            case 'u':
                if (end - p < 4 || (cp = hex4(p)) < 0) goto out;
                p += 4;
                if (cp >= 0xd800 && cp <= 0xdbff) { /* a surrogate pair */
                    int lo;
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || (lo = hex4(p + 2)) < 0xdc00 || lo > 0xdfff) goto out;
                    p += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    goto out;
                }
                if (cp == 0) goto out; /* as jansson without JSON_ALLOW_NUL */
                k += utf8_encode((unsigned)cp, key + k);
                continue;
            default: goto out;
            }
        }
        if (p >= end) goto out;
        p++; /* closing quote */
        key[k] = '\0';
        WS();
        if (p >= end || *p++ != ':') goto out;
        WS();
        long long id = 0;
        int digits = 0;
        while (p < end && *p >= '0' && *p <= '9' && digits < 12) id = id * 10 + (*p++ - '0'), digits++;
        if (!digits || (p < end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9')))) goto out;
        if ((*status = add_vocab_entry(L, key, k, id, where, &max_id))) {
            rc = 0;
            goto out;
        }
        WS();
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p >= end || *p++ != '}') goto out;
        WS();
        if (p != end) goto out;
        break;
    }
#undef WS
    *status = finish_vocab(L, max_id, where);
    rc = 0;
out:
    free(key);
    if (rc == 1) { /* start over cleanly for the fallback */
        strmap_clear(&L->t->vocab);
    }
    return rc;
}

static gpt2c_status add_merge(loader *L, const char *a, size_t alen, const char *b, size_t blen,
                              const char *where, long line) {
    gpt2c_tokenizer *t = L->t;
    if (ensure_scratch(L, alen + blen + 1)) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    long na = tok_string_to_bytes(L->cp_to_byte, a, alen, L->scratch);
    long nb = na < 0 ? -1 : tok_string_to_bytes(L->cp_to_byte, b, blen, L->scratch + na);
    if (na <= 0 || nb <= 0)
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: merge %ld ('%.*s %.*s'): not two GPT-2 byte-alphabet tokens",
                       where, line, (int)(alen > 40 ? 40 : alen), a, (int)(blen > 40 ? 40 : blen), b);
    int *ia = strmap_get(&t->vocab, L->scratch, (size_t)na);
    int *ib = strmap_get(&t->vocab, L->scratch + na, (size_t)nb);
    int *im = strmap_get(&t->vocab, L->scratch, (size_t)(na + nb));
    if (!ia || !ib || !im)
        return err_set(&t->err, GPT2C_ERR_FORMAT,
                       "%s: merge %ld ('%.*s %.*s'): %s is not in the vocabulary (vocab and merges do not match)",
                       where, line, (int)(alen > 40 ? 40 : alen), a, (int)(blen > 40 ? 40 : blen), b,
                       !ia ? "the left part" : !ib ? "the right part" : "the merged token");
    if ((t->n_merges & (t->n_merges - 1)) == 0) { /* grow at powers of two */
        int *p = realloc(t->merge_result, (size_t)(t->n_merges ? t->n_merges * 2 : 1024) * sizeof *p);
        if (!p) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
        t->merge_result = p;
    }
    /* A pair listed twice keeps its last rank, as Python's dict(zip()) does. */
    if (u64map_put(&t->merges, ((uint64_t)(uint32_t)*ia << 32) | (uint32_t)*ib, t->n_merges))
        return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    t->merge_result[t->n_merges++] = *im;
    return GPT2C_OK;
}

/* A tokenizer text file, read whole and checked to be UTF-8. */
static gpt2c_status read_utf8_file(gpt2c_tokenizer *t, const char *path, char **data, size_t *n) {
    gpt2c_status s = file_read(path, TOK_MAX_FILE, data, n, &t->err);
    if (s == GPT2C_OK && utf8_validate(*data, *n) != *n) {
        free(*data);
        *data = NULL;
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: not valid UTF-8", path);
    }
    return s;
}

static gpt2c_status load_merges_txt(loader *L, const char *path) {
    char *data;
    size_t n;
    gpt2c_status s = read_utf8_file(L->t, path, &data, &n);
    if (s) return s;
    long line = 0;
    char *p = data, *end = data + n;
    size_t lines = 1; /* a rank per line: sized once */
    for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) lines++;
    if (u64map_reserve(&L->t->merges, lines)) {
        free(data);
        return err_set(&L->t->err, GPT2C_ERR_NOMEM, "out of memory");
    }
    while (p < end && s == GPT2C_OK) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        line++;
        if (le > p && le[-1] == '\r') le--;
        int header = line == 1 && le - p >= 8 && memcmp(p, "#version", 8) == 0;
        if (!header && le > p) {
            char *sp = memchr(p, ' ', (size_t)(le - p));
            if (!sp || sp == p || sp + 1 >= le || memchr(sp + 1, ' ', (size_t)(le - sp - 1)))
                s = err_set(&L->t->err, GPT2C_ERR_FORMAT, "%s: line %ld is not two tokens separated by a space",
                            path, line);
            else
                s = add_merge(L, p, (size_t)(sp - p), sp + 1, (size_t)(le - sp - 1), path, line);
        }
        p = nl ? nl + 1 : end;
    }
    free(data);
    return s;
}

static gpt2c_status load_json_file(gpt2c_tokenizer *t, const char *path, json_t **root) {
    char *data;
    size_t n;
    gpt2c_status s = file_read(path, TOK_MAX_FILE, &data, &n, &t->err);
    if (s) return s;
    json_error_t je;
    *root = json_loadb(data, n, 0, &je);
    free(data);
    if (!*root)
        return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    return GPT2C_OK;
}

/* A token matched whole in input text; `special` ones are also skipped when
 * decoding asks (added tokens are not). */
static gpt2c_status add_unit(gpt2c_tokenizer *t, const char *text, size_t len, int id, int special) {
    for (int i = 0; i < t->n_specials; i++)
        if (t->specials[i].id == id && t->specials[i].len == len && !memcmp(t->specials[i].text, text, len)) {
            t->special[id] |= (unsigned char)special;
            return GPT2C_OK;
        }
    tok_special *p = realloc(t->specials, (size_t)(t->n_specials + 1) * sizeof *p);
    if (!p) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    t->specials = p;
    char *copy = malloc(len + 1);
    if (!copy) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    t->specials[t->n_specials++] = (tok_special){copy, len, id, special};
    if (len) t->special_first[(unsigned char)copy[0]] = 1;
    t->special[id] = (unsigned char)special;
    return GPT2C_OK;
}

/* tokenizer.json's added_tokens: [{"id", "content", "special"}], every one
 * matched whole in input text (as the fast tokenizer splits them out first);
 * ids beyond model.vocab (GPT-NeoX's runs of spaces) extend it. */
static gpt2c_status read_added_array(loader *L, json_t *added, const char *path) {
    gpt2c_tokenizer *t = L->t;
    if (!json_array_size(added)) return GPT2C_OK;
    if (!(L->added = calloc(json_array_size(added), sizeof *L->added))) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(content) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= TOK_MAX_VOCAB || json_string_length(content) == 0 ||
            strlen(json_string_value(content)) != json_string_length(content))
            return err_set(&t->err, GPT2C_ERR_FORMAT,
                           "%s: added_tokens[%zu] needs an integer 'id' and a non-empty string 'content'", path, i);
        tok_special *x = &L->added[L->n_added];
        if (!(x->text = strdup(json_string_value(content)))) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
        x->len = json_string_length(content);
        x->id = (int)json_integer_value(id);
        x->special = json_is_true(json_object_get(a, "special"));
        L->n_added++;
    }
    return GPT2C_OK;
}

/* tokenizer.json's normalizer: none, one of the Unicode normal forms, or a
 * Sequence of them, as utf8proc options (Unicode normalization is
 * utf8proc's, a well-kept library: the composition tables are not ours to
 * write). Any other normalizer would change the text in ways gpt2c does
 * not reproduce: refused by name. */
static gpt2c_status read_normalizer(loader *L, json_t *n, const char *path, int *opts) {
    if (!n || json_is_null(n)) return GPT2C_OK;
    const char *type = json_string_value(json_object_get(n, "type"));
    static const char *const forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    static const int form_opts[] = {UTF8PROC_STABLE | UTF8PROC_COMPOSE, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
                                    UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                                    UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
    for (int i = 0; type && i < 4; i++)
        if (!strcmp(type, forms[i])) {
            if (*opts && *opts != form_opts[i])
                return err_set(&L->t->err, GPT2C_ERR_UNSUPPORTED, "%s: a sequence of different normal forms is not supported",
                               path);
            *opts = form_opts[i];
            return GPT2C_OK;
        }
    if (type && !strcmp(type, "Sequence") && json_is_array(json_object_get(n, "normalizers"))) {
        size_t i;
        json_t *each;
        json_array_foreach(json_object_get(n, "normalizers"), i, each) {
            gpt2c_status s = read_normalizer(L, each, path, opts);
            if (s) return s;
        }
        return GPT2C_OK;
    }
    return err_set(&L->t->err, GPT2C_ERR_UNSUPPORTED, "%s: normalizer '%.40s' is not supported (supported: NFC, NFD, NFKC, NFKD)",
                   path, type ? type : "?");
}

/* tokenizer.json's decoder. gpt2c keeps every token as its raw bytes, so
 * ByteLevel's decoding (code points back to bytes, then UTF-8) is what
 * detokenizing always does; none (absent or null) is read the same way, as
 * before. Any other decoder would make different text: refused by name. */
static gpt2c_status read_decoder(loader *L, json_t *d, const char *path) {
    if (!d || json_is_null(d)) return GPT2C_OK;
    const char *type = json_string_value(json_object_get(d, "type"));
    if (type && !strcmp(type, "ByteLevel")) return GPT2C_OK;
    return err_set(&L->t->err, GPT2C_ERR_UNSUPPORTED, "%s: field 'decoder': decoder '%.40s' is not supported (supported: ByteLevel)",
                   path, type ? type : "?");
}

static gpt2c_status load_tokenizer_json(loader *L, const char *path) {
    gpt2c_tokenizer *t = L->t;
    json_t *root;
    gpt2c_status s = load_json_file(t, path, &root);
    if (s) return s;
    json_t *model = json_object_get(root, "model");
    json_t *type = json_object_get(model, "type");
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(model) || !json_is_string(type) || strcmp(json_string_value(type), "BPE") != 0) {
        s = err_set(&t->err, GPT2C_ERR_UNSUPPORTED, "%s: field 'model.type' must be \"BPE\"", path);
    } else if (!json_is_array(merges)) {
        s = err_set(&t->err, GPT2C_ERR_FORMAT, "%s: field 'model.merges' is not an array", path);
    } else {
        s = read_normalizer(L, json_object_get(root, "normalizer"), path, &t->normalize);
        if (!s) s = tok_read_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), path);
        if (!s) s = read_decoder(L, json_object_get(root, "decoder"), path);
        if (!s) s = read_added_array(L, json_object_get(root, "added_tokens"), path);
        if (!s) s = load_vocab_object(L, json_object_get(model, "vocab"), path);
    }
    for (size_t i = 0; s == GPT2C_OK && i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (json_is_string(m)) { /* "A B" */
            const char *str = json_string_value(m);
            const char *sp = strchr(str, ' ');
            if (sp && !strchr(sp + 1, ' ')) a = str, alen = (size_t)(sp - str), b = sp + 1, blen = strlen(sp + 1);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) { /* ["A", "B"] */
            a = json_string_value(json_array_get(m, 0)), alen = strlen(a);
            b = json_string_value(json_array_get(m, 1)), blen = strlen(b);
        }
        if (!a) s = err_set(&t->err, GPT2C_ERR_FORMAT, "%s: model.merges[%zu] is not a pair of tokens", path, i);
        else s = add_merge(L, a, alen, b, blen, path, (long)i);
    }
    json_decref(root);
    return s;
}

static gpt2c_status load_vocab_merges(loader *L, const char *vocab_path, const char *merges_path) {
    char *data;
    size_t n;
    gpt2c_status s = read_utf8_file(L->t, vocab_path, &data, &n);
    if (s) return s;
    /* Sized once (GPT-2's file: 50k entries in 1 MB, keys a third of it). */
    if (strmap_reserve(&L->t->vocab, n / 16, n / 3)) {
        free(data);
        return err_set(&L->t->err, GPT2C_ERR_NOMEM, "out of memory");
    }
    if (scan_vocab(L, data, data + n, vocab_path, &s) == 1) {
        json_error_t je;
        json_t *root = json_loadb(data, n, JSON_REJECT_DUPLICATES, &je);
        if (!root) s = err_set(&L->t->err, GPT2C_ERR_FORMAT, "%s: invalid JSON at line %d: %s", vocab_path, je.line, je.text);
        else s = load_vocab_object(L, root, vocab_path);
        json_decref(root);
    }
    free(data);
    if (s) return s;
    return load_merges_txt(L, merges_path);
}

/* The same, from the image of an earlier load of these very files when the
 * cache has one (image.c), else parsed and then saved as one. added_tokens.json
 * is part of the key: its ids extend the id -> bytes table. */
static gpt2c_status load_vocab_merges_cached(loader *L, const char *dir, const char *vocab_path,
                                             const char *merges_path) {
    char *added = path_join(dir, "added_tokens.json");
    const char *sources[3] = {vocab_path, merges_path, added};
    unsigned char key[32];
    int keyed = added && tok_image_key(sources, 3, key) == 0;
    free(added);
    if (keyed && tok_image_load(L->t, key)) return GPT2C_OK;
    gpt2c_status s = load_vocab_merges(L, vocab_path, merges_path);
    if (s == GPT2C_OK && keyed) tok_image_save(L->t, key);
    return s;
}

/* ---------------------------------------- the slow tokenizer's companion files
 * What transformers' from_pretrained reads beside vocab.json + merges.txt
 * (tokenization_utils_base.py, _from_pretrained): added_tokens.json, then
 * tokenizer_config.json's arguments, then special_tokens_map.json on top. */

/* The optional JSON object in dir/name (NULL when absent); *where, when
 * asked for, gets the file's path for messages (the caller frees it). */
static gpt2c_status read_optional(gpt2c_tokenizer *t, const char *dir, const char *name, json_t **root,
                                  char **where) {
    *root = NULL;
    char *path = path_join(dir, name);
    if (!path) return err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    gpt2c_status s = file_exists(path) ? load_json_file(t, path, root) : GPT2C_OK;
    if (!s && *root && !json_is_object(*root)) s = err_set(&t->err, GPT2C_ERR_FORMAT, "%s: not a JSON object", path);
    if (where) *where = path;
    else free(path);
    return s;
}

/* added_tokens.json: {"text": id}, tokens added after the BPE was trained
 * (CodeGen's runs of spaces): matched whole in input text and decoded as
 * written. Read before the vocabulary is finished: their ids extend it. */
static gpt2c_status read_added_tokens(loader *L, const char *dir) {
    gpt2c_tokenizer *t = L->t;
    json_t *root;
    char *path = NULL;
    gpt2c_status s = read_optional(t, dir, "added_tokens.json", &root, &path);
    if (!s && root && !(L->added = calloc(json_object_size(root) + 1, sizeof *L->added)))
        s = err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (s) break;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOK_MAX_VOCAB || !*key) {
            s = err_set(&t->err, GPT2C_ERR_FORMAT, "%s: token '%.40s': id is not an integer in [0, %d)", path, key,
                        TOK_MAX_VOCAB);
            break;
        }
        tok_special *a = &L->added[L->n_added];
        if (!(a->text = strdup(key))) s = err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
        else a->len = strlen(key), a->id = (int)json_integer_value(v), L->n_added++;
    }
    json_decref(root);
    free(path);
    return s;
}

/* vocab.json's entry spelled `text` (the byte alphabet's code points), with
 * buf (len bytes) to decode it into; -1 if there is none. */
static int vocab_id(const gpt2c_tokenizer *t, const int cp_to_byte[TOK_CP_LIMIT], const char *text, size_t len,
                    char *buf) {
    long n = tok_string_to_bytes(cp_to_byte, text, len, buf);
    const int *id = n >= 0 ? strmap_get(&t->vocab, buf, (size_t)n) : NULL;
    return id ? *id : -1;
}

/* The id of a token named by its text, as convert_tokens_to_ids finds it:
 * an added token's, else vocab.json's entry of that string; -1 if neither. */
static int token_id(loader *L, const char *text, size_t len) {
    for (int i = 0; i < L->n_added; i++)
        if (L->added[i].len == len && !memcmp(L->added[i].text, text, len)) return L->added[i].id;
    if (ensure_scratch(L, len + 1)) return -1;
    return vocab_id(L->t, L->cp_to_byte, text, len, L->scratch);
}

/* A special token's text: a string, or an AddedToken's "content". */
static const char *special_text(json_t *v) {
    return json_string_value(json_is_object(v) ? json_object_get(v, "content") : v);
}

/* The special tokens (GPT2Tokenizer's defaults: <|endoftext|> as unk, bos
 * and eos), then tokenizer_config.json's, then special_tokens_map.json's:
 * each matched whole in input text and skipped on request; the eos token's
 * id; add_bos_token. */
static gpt2c_status read_special_tokens(loader *L, const char *dir) {
    static const char *const KEYS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token"};
    enum { N_KEYS = sizeof KEYS / sizeof KEYS[0] };
    gpt2c_tokenizer *t = L->t;
    json_t *src[2];
    gpt2c_status s = read_optional(t, dir, "tokenizer_config.json", &src[0], NULL);
    if (!s) s = read_optional(t, dir, "special_tokens_map.json", &src[1], NULL);
    const char *text[N_KEYS] = {"<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
    json_t *extra = NULL;
    for (int f = 0; !s && f < 2; f++) {
        for (int k = 0; k < N_KEYS; k++) {
            json_t *v = json_object_get(src[f], KEYS[k]);
            if (v) text[k] = special_text(v); /* null: none */
        }
        if (json_is_array(json_object_get(src[f], "additional_special_tokens")))
            extra = json_object_get(src[f], "additional_special_tokens");
    }
    int ids[N_KEYS];
    for (int k = 0; k < N_KEYS; k++) {
        ids[k] = text[k] ? token_id(L, text[k], strlen(text[k])) : -1;
        if (!s && ids[k] >= 0) s = add_unit(t, text[k], strlen(text[k]), ids[k], 1);
    }
    for (size_t i = 0; !s && i < json_array_size(extra); i++) {
        const char *x = special_text(json_array_get(extra, i));
        int id = x ? token_id(L, x, strlen(x)) : -1;
        if (id >= 0) s = add_unit(t, x, strlen(x), id, 1);
    }
    t->eos_id = ids[1];
    t->add_bos_id = json_is_true(json_object_get(src[0], "add_bos_token")) ? ids[0] : -1;
    json_decref(src[0]);
    json_decref(src[1]);
    return s;
}

/* Added tokens are matched whole in text, after the vocabulary is built. */
static gpt2c_status add_added_tokens(loader *L) {
    gpt2c_status s = GPT2C_OK;
    for (int i = 0; !s && i < L->n_added; i++)
        s = add_unit(L->t, L->added[i].text, L->added[i].len, L->added[i].id, L->added[i].special);
    return s;
}

static gpt2c_status finish_load(gpt2c_tokenizer *t, const char *where) {
    int b2cp[256];
    tok_byte_table(b2cp);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int *id = strmap_get(&t->vocab, &c, 1);
        /* Bytes that never occur in UTF-8 (0xc0, 0xc1, 0xf5-0xff) may lack
         * one (GPT-NeoX's vocabulary): input is validated UTF-8. */
        int never = b == 0xc0 || b == 0xc1 || b >= 0xf5;
        if (!id && !never)
            return err_set(&t->err, GPT2C_ERR_FORMAT, "%s: the vocabulary has no token for byte 0x%02x", where, b);
        t->byte_id[b] = id ? *id : -1;
    }
    int *eos = strmap_get(&t->vocab, "<|endoftext|>", 13);
    t->eos_id = eos ? *eos : -1;
    return tok_compile_pattern(t);
}

gpt2c_status gpt2c_tokenizer_load(const char *dir, gpt2c_tokenizer **out) {
    gpt2c_tokenizer *t = calloc(1, sizeof *t);
    *out = t;
    if (!t) return GPT2C_ERR_NOMEM;
    strmap_init(&t->vocab);
    u64map_init(&t->merges);
    strmap_init(&t->cache);
    pthread_mutex_init(&t->cache_lock, NULL);
    t->eos_id = t->add_bos_id = -1;
    if (!dir) return err_set(&t->err, GPT2C_ERR_INVALID, "tokenizer path is NULL");
    loader L = {.t = t};
    tok_byte_table_inverse(L.cp_to_byte);

    char *vocab = path_join(dir, "vocab.json"), *merges = path_join(dir, "merges.txt"),
         *tj = path_join(dir, "tokenizer.json");
    gpt2c_status s;
    const char *where = dir;
    int slow = 0; /* vocab.json + merges.txt, with their companion files */
    if (!vocab || !merges || !tj) s = err_set(&t->err, GPT2C_ERR_NOMEM, "out of memory");
    else if (path_has_suffix(dir, ".json") && file_exists(dir)) s = load_tokenizer_json(&L, dir);
    else if (file_exists(vocab) && file_exists(merges)) {
        where = vocab;
        if (!(s = read_added_tokens(&L, dir)) && !(s = load_vocab_merges_cached(&L, dir, vocab, merges)) &&
            !(s = finish_load(t, where)) && !(s = add_added_tokens(&L)))
            s = read_special_tokens(&L, dir);
        slow = 1;
    }
    else if (file_exists(tj)) s = load_tokenizer_json(&L, tj), where = tj;
    else
        s = err_set(&t->err, GPT2C_ERR_NOT_FOUND, "%s: no tokenizer found (need vocab.json + merges.txt, or tokenizer.json)", dir);
    if (s == GPT2C_OK && !slow && (s = finish_load(t, where)) == GPT2C_OK) s = add_added_tokens(&L);
    for (int i = 0; i < L.n_added; i++) free(L.added[i].text);
    free(L.added);
    free(vocab);
    free(merges);
    free(tj);
    free(L.scratch);
    return s;
}

const char *gpt2c_tokenizer_errmsg(const gpt2c_tokenizer *t) { return err_msg_or_nomem(t ? &t->err : NULL); }

void gpt2c_tokenizer_free(gpt2c_tokenizer *t) {
    if (!t) return;
    if (t->image) { /* the tables are the image's */
        munmap(t->image, t->image_size);
    } else {
        strmap_free(&t->vocab);
        u64map_free(&t->merges);
        free(t->merge_result);
        free(t->bytes);
        free(t->off);
        free(t->present);
        free(t->special);
    }
    strmap_free(&t->cache);
    for (int i = 0; i < t->n_specials; i++) free(t->specials[i].text);
    free(t->specials);
    free(t->cache_ids);
    if (t->re) pcre2_code_free(t->re);
    tok_pretok_free(t);
    pthread_mutex_destroy(&t->cache_lock);
    free(t);
}

int gpt2c_tokenizer_vocab_size(const gpt2c_tokenizer *t) { return t->n_vocab; }
int gpt2c_tokenizer_eos_id(const gpt2c_tokenizer *t) { return t->eos_id; }

size_t gpt2c_tokenizer_max_token_bytes(const gpt2c_tokenizer *t) { return t->max_token_bytes; }

const char *gpt2c_token_bytes(const gpt2c_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || !t->present[id]) return NULL;
    *len = t->off[id + 1] - t->off[id];
    return t->bytes + t->off[id];
}

char *gpt2c_token_string(const gpt2c_tokenizer *t, int32_t id) {
    size_t n;
    const char *b = gpt2c_token_bytes(t, id, &n);
    if (!b) return NULL;
    int b2cp[256];
    tok_byte_table(b2cp);
    char *s = malloc(2 * n + 1); /* every stand-in is below U+0800: 2 bytes at most */
    if (!s) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += utf8_encode((unsigned)b2cp[(unsigned char)b[i]], s + o);
    s[o] = '\0';
    return s;
}

int32_t gpt2c_token_id(const gpt2c_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t len = strlen(token);
    for (int i = 0; i < t->n_specials; i++)
        if (t->specials[i].len == len && !memcmp(t->specials[i].text, token, len)) return t->specials[i].id;
    if (len == 0) return -1; /* "" names no vocabulary entry here */
    char *bytes = malloc(len + 1);
    if (!bytes) return -1;
    int cp2b[TOK_CP_LIMIT];
    tok_byte_table_inverse(cp2b);
    int id = vocab_id(t, cp2b, token, len, bytes);
    free(bytes);
    return id;
}

void gpt2c_free(void *p) { free(p); }
