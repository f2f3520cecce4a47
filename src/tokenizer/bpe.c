/* bpe.c -- GPT-2 encoding and decoding, token for token what transformers'
 * slow GPT2Tokenizer produces: special tokens are cut out of the text first,
 * the rest is split by the GPT-2 pattern (PCRE2 with Unicode properties),
 * or by tokenizer.json's own pre-tokenizer (pretok.c) where it declares
 * another, and each piece is merged by byte-level BPE, lowest rank first. */
#include <stdlib.h>
#include <string.h>

#include "../core/utf8.h"
#include "tokenizer.h"

/* Contractions, letter runs, digit runs, other symbols, and whitespace,
 * each optionally led by one space; trailing whitespace stays apart from the
 * word that follows it. */
const char tok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Pieces longer than this are not cached: they are rare, and caching them
 * would let one hostile prompt fill memory. */
#define CACHE_MAX_PIECE 64
#define CACHE_MAX_ENTRIES 65536

gpt2c_status tok_compile_pattern(gpt2c_tokenizer *t) {
    int code;
    PCRE2_SIZE off;
    t->re = pcre2_compile((PCRE2_SPTR)tok_gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code,
                          &off, NULL);
    if (!t->re) return err_set(&t->err, GPT2C_ERR_UNSUPPORTED, "PCRE2 could not compile the GPT-2 pattern (%d)", code);
    /* JIT makes the split several times faster; the interpreter is a
     * correct fallback where JIT is unavailable. */
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return GPT2C_OK;
}

int idvec_push(idvec *a, int32_t x) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->v, (size_t)nc * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

/* A min-heap of candidate merges (rank, left symbol index). Entries go
 * stale when a symbol they name is merged away; they are checked on pop. */
typedef struct cand {
    int rank, left;
} cand;

static int cand_less(cand a, cand b) { return a.rank < b.rank || (a.rank == b.rank && a.left < b.left); }

static void heap_push(cand *h, int *n, cand c) {
    int i = (*n)++;
    h[i] = c;
    while (i > 0 && cand_less(h[i], h[(i - 1) / 2])) {
        cand tmp = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static cand heap_pop(cand *h, int *n) {
    cand top = h[0];
    h[0] = h[--*n];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && cand_less(h[l], h[m])) m = l;
        if (r < *n && cand_less(h[r], h[m])) m = r;
        if (m == i) break;
        cand tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
    return top;
}

static int pair_rank(const gpt2c_tokenizer *t, int a, int b) {
    const int *r = u64map_get(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
    return r ? *r : -1;
}

/* BPE over one piece of n bytes. transformers repeatedly takes the pair of
 * lowest rank and merges all its occurrences left to right before looking
 * again; popping every candidate of that rank as one batch, in position
 * order, does exactly that in O(n log n) instead of O(n^2). */
static int bpe_piece(const gpt2c_tokenizer *t, const unsigned char *s, int n, idvec *out) {
    int *sym = malloc((size_t)n * 3 * sizeof *sym);
    cand *heap = malloc((size_t)(3 * n + 1) * sizeof *heap), *batch = malloc((size_t)(3 * n + 1) * sizeof *batch);
    if (!sym || !heap || !batch) {
        free(sym);
        free(heap);
        free(batch);
        return -1;
    }
    int *prev = sym + n, *next = sym + 2 * n, hn = 0;
    for (int i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
    }
    for (int i = 0; i + 1 < n; i++) {
        int r = pair_rank(t, sym[i], sym[i + 1]);
        if (r >= 0) heap_push(heap, &hn, (cand){r, i});
    }
    while (hn > 0) {
        int rank = heap[0].rank, nb = 0;
        while (hn > 0 && heap[0].rank == rank) batch[nb++] = heap_pop(heap, &hn);
        /* The heap yields equal ranks in position order already. */
        for (int k = 0; k < nb; k++) {
            int l = batch[k].left, r = sym[l] >= 0 ? next[l] : -1;
            if (r < 0 || pair_rank(t, sym[l], sym[r]) != rank) continue; /* stale */
            sym[l] = t->merge_result[rank];
            next[l] = next[r];
            if (next[r] >= 0) prev[next[r]] = l;
            sym[r] = -1;
            int p = prev[l], q = next[l], pr;
            if (p >= 0 && (pr = pair_rank(t, sym[p], sym[l])) >= 0) heap_push(heap, &hn, (cand){pr, p});
            if (q >= 0 && (pr = pair_rank(t, sym[l], sym[q])) >= 0) heap_push(heap, &hn, (cand){pr, l});
        }
    }
    int rc = 0;
    for (int i = 0; i >= 0 && rc == 0; i = next[i]) rc = idvec_push(out, sym[i]);
    free(sym);
    free(heap);
    free(batch);
    return rc;
}

/* BPE with the per-tokenizer cache of short pieces. */
static int encode_piece(gpt2c_tokenizer *t, const char *s, int n, idvec *out) {
    if (t->no_cache) return bpe_piece(t, (const unsigned char *)s, n, out) ? -1 : 0;
    if (n <= CACHE_MAX_PIECE) {
        pthread_mutex_lock(&t->cache_lock);
        int *at = strmap_get(&t->cache, s, (size_t)n);
        int rc = 0;
        if (at) {
            const int *rec = t->cache_ids + *at;
            for (int i = 0; i < rec[0] && rc == 0; i++) rc = idvec_push(out, rec[1 + i]);
        }
        pthread_mutex_unlock(&t->cache_lock);
        if (at) return rc;
    }
    int start = out->n;
    if (bpe_piece(t, (const unsigned char *)s, n, out)) return -1;
    if (n > CACHE_MAX_PIECE) return 0;
    int cnt = out->n - start;
    pthread_mutex_lock(&t->cache_lock);
    if (t->cache.n >= CACHE_MAX_ENTRIES) { /* bounded: start afresh */
        strmap_clear(&t->cache);
        t->cache_len = 0;
    }
    if (t->cache_len + (size_t)cnt + 1 > t->cache_cap) {
        size_t nc = t->cache_cap ? t->cache_cap * 2 : 65536;
        int *p = realloc(t->cache_ids, nc * sizeof *p);
        if (p) t->cache_ids = p, t->cache_cap = nc;
    }
    if (t->cache_len + (size_t)cnt + 1 <= t->cache_cap &&
        strmap_put(&t->cache, s, (size_t)n, (int)t->cache_len) == 0) {
        t->cache_ids[t->cache_len] = cnt;
        memcpy(t->cache_ids + t->cache_len + 1, out->v + start, (size_t)cnt * sizeof(int));
        t->cache_len += (size_t)cnt + 1;
    }
    pthread_mutex_unlock(&t->cache_lock);
    return 0;
}

/* Splits text (no special tokens in it) with the GPT-2 pattern. */
static gpt2c_status encode_ordinary(gpt2c_tokenizer *t, const char *s, size_t n, pcre2_match_data *md,
                                    idvec *out) {
    size_t pos = 0;
    while (pos < n) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return err_set(&t->err, GPT2C_ERR_INVALID, "tokenizer: regex match failed (PCRE2 error %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] <= ov[0]) break; /* the pattern cannot match empty; be safe */
        if (ov[1] - ov[0] > (size_t)INT32_MAX / 4)
            return err_set(&t->err, GPT2C_ERR_INVALID, "tokenizer: a single word of %zu bytes is too long",
                           (size_t)(ov[1] - ov[0]));
        if (encode_piece(t, s + ov[0], (int)(ov[1] - ov[0]), out))
            return err_set(&t->err, GPT2C_ERR_NOMEM, "tokenizer: out of memory");
        pos = ov[1];
    }
    return GPT2C_OK;
}

/* Text (no special tokens in it) through tokenizer.json's own
 * pre-tokenizer (pretok.c), each piece then encoded by BPE. */
static gpt2c_status encode_pretokenized(gpt2c_tokenizer *t, const char *s, size_t n, tok_pieces *p, idvec *out) {
    gpt2c_status st = tok_pretokenize(t, s, n, p);
    for (size_t i = 0; st == GPT2C_OK && i < p->cur.n; i++) {
        tok_span x = p->cur.v[i];
        if (x.len > (size_t)INT32_MAX / 4)
            return err_set(&t->err, GPT2C_ERR_INVALID, "tokenizer: a single word of %zu bytes is too long", x.len);
        if (encode_piece(t, p->text + x.off, (int)x.len, out))
            st = err_set(&t->err, GPT2C_ERR_NOMEM, "tokenizer: out of memory");
    }
    return st;
}

/* GPT-2's split, or the tokenizer's own pre-tokenizer when it has one. */
static gpt2c_status encode_text(gpt2c_tokenizer *t, const char *s, size_t n, pcre2_match_data *md, tok_pieces *p,
                                idvec *out) {
    return t->custom_pretok ? encode_pretokenized(t, s, n, p, out) : encode_ordinary(t, s, n, md, out);
}

/* The leftmost special token at or after pos (longest on a tie). */
static const tok_special *next_special(const gpt2c_tokenizer *t, const char *s, size_t n, size_t pos,
                                       size_t *at) {
    for (size_t i = pos; i < n; i++) {
        /* Most bytes start no token: with StarCoder's 19 special tokens,
         * trying each at every byte was most of the encoding time. */
        if (!t->special_first[(unsigned char)s[i]]) continue;
        const tok_special *best = NULL;
        for (int k = 0; k < t->n_specials; k++) {
            const tok_special *sp = &t->specials[k];
            if (sp->len && sp->len <= n - i && memcmp(s + i, sp->text, sp->len) == 0 &&
                (!best || sp->len > best->len))
                best = sp;
        }
        if (best) {
            *at = i;
            return best;
        }
    }
    return NULL;
}

gpt2c_status gpt2c_tokenize(gpt2c_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    err_clear(&t->err);
    if (!text && len) return err_set(&t->err, GPT2C_ERR_INVALID, "tokenize: text is NULL");
    if (len > (size_t)INT32_MAX / 2) return err_set(&t->err, GPT2C_ERR_INVALID, "tokenize: text of %zu bytes is too long", len);
    size_t bad = utf8_validate(text, len);
    if (bad != len)
        return err_set(&t->err, GPT2C_ERR_INVALID, "tokenize: text is not valid UTF-8 (byte offset %zu, 0x%02x)", bad,
                       (unsigned char)text[bad]);
    /* GPT-2's split matches here; a pre-tokenizer of the file's own keeps
     * its match data in `pieces`. */
    pcre2_match_data *md = t->custom_pretok ? NULL : pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!t->custom_pretok && !md) return err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
    idvec out = {0};
    tok_pieces pieces = {0};
    gpt2c_status s = GPT2C_OK;
    /* tokenizer_config.json's add_bos_token (OPT's </s>): as encode() with
     * add_special_tokens, the transformers default. */
    if (t->add_bos_id >= 0 && idvec_push(&out, t->add_bos_id)) s = err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
    size_t pos = 0;
    while (s == GPT2C_OK && pos < len) {
        size_t at = len;
        const tok_special *sp = next_special(t, text, len, pos, &at);
        if (t->normalize && at > pos) { /* the text between special tokens, normalised first */
            utf8proc_uint8_t *norm = NULL;
            utf8proc_ssize_t nn = utf8proc_map((const utf8proc_uint8_t *)text + pos, (utf8proc_ssize_t)(at - pos), &norm,
                                               (utf8proc_option_t)t->normalize);
            if (nn < 0) s = err_set(&t->err, nn == UTF8PROC_ERROR_NOMEM ? GPT2C_ERR_NOMEM : GPT2C_ERR_INVALID,
                                    "tokenize: normalizing the text: %s", utf8proc_errmsg(nn));
            else s = encode_text(t, (const char *)norm, (size_t)nn, md, &pieces, &out);
            free(norm);
        } else {
            s = encode_text(t, text + pos, at - pos, md, &pieces, &out);
        }
        if (s == GPT2C_OK && sp && idvec_push(&out, sp->id)) s = err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
        pos = sp ? at + sp->len : len;
    }
    pcre2_match_data_free(md);
    tok_pieces_free(&pieces);
    if (s) {
        free(out.v);
        return s;
    }
    *ids = out.v ? out.v : malloc(sizeof(int32_t));
    *n_ids = out.n;
    return *ids ? GPT2C_OK : err_set(&t->err, GPT2C_ERR_NOMEM, "tokenize: out of memory");
}

/* transformers' clean_up_tokenization, applied in its order. Every
 * replacement shortens the text, so it runs in place. */
static size_t cleanup_spaces(char *s, size_t n) {
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (size_t r = 0; r < sizeof from / sizeof from[0]; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), o = 0;
        for (size_t i = 0; i < n;) {
            if (i + fl <= n && memcmp(s + i, from[r], fl) == 0) {
                memcpy(s + o, to[r], tl);
                o += tl;
                i += fl;
            } else {
                s[o++] = s[i++];
            }
        }
        n = o;
    }
    s[n] = '\0';
    return n;
}

gpt2c_status tok_collect_bytes(const gpt2c_tokenizer *t, const int32_t *ids, int n_ids, unsigned flags,
                               char **bytes, size_t *len) {
    *bytes = NULL;
    *len = 0;
    if (n_ids < 0 || (n_ids > 0 && !ids)) return GPT2C_ERR_INVALID;
    size_t raw = 0;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0) return GPT2C_ERR_INVALID;
        if (ids[i] >= t->n_vocab || !t->present[ids[i]]) {
            if (flags & GPT2C_DECODE_SKIP_UNKNOWN) continue;
            return GPT2C_ERR_INVALID;
        }
        raw += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    char *b = malloc(raw + 1);
    if (!b) return GPT2C_ERR_NOMEM;
    size_t n = 0;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] >= t->n_vocab || !t->present[ids[i]]) continue; /* GPT2C_DECODE_SKIP_UNKNOWN */
        if ((flags & GPT2C_DECODE_SKIP_SPECIAL) && t->special[ids[i]]) continue;
        size_t l = t->off[ids[i] + 1] - t->off[ids[i]];
        memcpy(b + n, t->bytes + t->off[ids[i]], l);
        n += l;
    }
    *bytes = b;
    *len = n;
    return GPT2C_OK;
}

gpt2c_status tok_bytes_to_text(const char *bytes, size_t n, unsigned flags, char **text, size_t *len) {
    char *out = malloc(3 * n + 1);
    *text = out;
    *len = 0;
    if (!out) return GPT2C_ERR_NOMEM;
    size_t m = utf8_replace(bytes, n, out);
    out[m] = '\0';
    if (!(flags & GPT2C_DECODE_NO_CLEANUP)) m = cleanup_spaces(out, m);
    *len = m;
    return GPT2C_OK;
}

gpt2c_status gpt2c_detokenize(const gpt2c_tokenizer *t, const int32_t *ids, int n_ids, unsigned flags,
                              char **text, size_t *len) {
    char *bytes;
    size_t n;
    *text = NULL;
    *len = 0;
    gpt2c_status s = tok_collect_bytes(t, ids, n_ids, flags, &bytes, &n);
    if (s) return s;
    s = tok_bytes_to_text(bytes, n, flags, text, len);
    free(bytes);
    return s;
}
