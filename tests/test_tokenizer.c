/* test_tokenizer.c -- the tokenizer against transformers' slow
 * GPT2Tokenizer: every golden case's ids and decodes, streaming decode,
 * tokenizer.json loading (its pre-tokenizers included), invalid input and
 * pathological lengths. */
#include <dirent.h>
#include <time.h>

#include "testutil.h"
#include "tokenizer/tokenizer.h"

static gpt2c_tokenizer *tok;
static json_t *cases; /* array of case objects */

static int setup(void **state) {
    (void)state;
    /* The reference is parsed from the files; test_image turns images on. */
    setenv("GPT2C_CACHE_DIR", "", 1);
    if (gpt2c_tokenizer_load(TOKENIZER_DIR, &tok) != GPT2C_OK) {
        fprintf(stderr, "tokenizer: %s\n", gpt2c_tokenizer_errmsg(tok));
        return -1;
    }
    /* One JSON object per line; split on \n only, since some strings hold
     * U+2028 and other separators. */
    FILE *f = fopen(GOLDEN_JSON_DIR "/tokenizer.jsonl", "rb");
    if (!f) return -1;
    cases = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int first = 1;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &je);
        if (!j) return -1;
        if (first) json_decref(j); /* metadata */
        else json_array_append_new(cases, j);
        first = 0;
    }
    free(line);
    fclose(f);
    return json_array_size(cases) > 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    gpt2c_tokenizer_free(tok);
    json_decref(cases);
    return 0;
}

static char *hex_to_bytes(const char *hex, size_t *len) {
    size_t n = strlen(hex) / 2;
    char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        b[i] = (char)v;
    }
    *len = n;
    return b;
}

static void check_decode_with(gpt2c_tokenizer *t, const int32_t *ids, int n, unsigned flags, json_t *want,
                              const char *what, int i) {
    if (!want) return;
    char *text, msg[96];
    size_t len;
    assert_int_equal(gpt2c_detokenize(t, ids, n, flags, &text, &len), GPT2C_OK);
    snprintf(msg, sizeof msg, "case %d %s", i, what);
    assert_str_equal_n(text, len, json_string_value(want), json_string_length(want), msg);
    gpt2c_free(text);
}

static void check_decode(const int32_t *ids, int n, unsigned flags, json_t *want, const char *what, int i) {
    check_decode_with(tok, ids, n, flags, want, what, i);
}

static void test_golden_encode_decode(void **state) {
    (void)state;
    size_t k;
    json_t *c;
    int n_enc = 0, n_dec = 0;
    json_array_foreach(cases, k, c) {
        int i = (int)json_integer_value(json_object_get(c, "i"));
        int nw;
        int32_t *want = json_ids(json_object_get(c, "ids"), &nw);
        json_t *hex = json_object_get(c, "hex");
        if (hex) { /* an encode case */
            size_t len;
            char *text = hex_to_bytes(json_string_value(hex), &len), msg[64];
            int32_t *ids;
            int n;
            assert_int_equal(gpt2c_tokenize(tok, text, len, &ids, &n), GPT2C_OK);
            snprintf(msg, sizeof msg, "case %d encode", i);
            assert_ids_equal(ids, n, want, nw, msg);
            gpt2c_free(ids);
            free(text);
            n_enc++;
        } else {
            n_dec++;
        }
        check_decode(want, nw, 0, json_object_get(c, "decode"), "decode", i);
        check_decode(want, nw, GPT2C_DECODE_NO_CLEANUP, json_object_get(c, "decode_raw"), "decode_raw", i);
        /* The golden skip-special decodes were made with clean-up off. */
        check_decode(want, nw, GPT2C_DECODE_SKIP_SPECIAL | GPT2C_DECODE_NO_CLEANUP,
                     json_object_get(c, "decode_skip_special"),
                     "decode_skip_special", i);
        json_t *rh = json_object_get(c, "decode_raw_hex");
        if (rh) {
            size_t hl, len;
            char *bytes = hex_to_bytes(json_string_value(rh), &hl), *text;
            assert_int_equal(gpt2c_detokenize(tok, want, nw, GPT2C_DECODE_NO_CLEANUP, &text, &len), GPT2C_OK);
            assert_str_equal_n(text, len, bytes, hl, "decode_raw_hex");
            gpt2c_free(text);
            free(bytes);
        }
        free(want);
    }
    /* Guard against a silently empty fixture. */
    assert_true(n_enc > 200);
    assert_true(n_dec > 20);
}

/* The other families' tokenizers, with their companion files
 * (tokenizer_config.json's add_bos_token and special tokens,
 * special_tokens_map.json, added_tokens.json), against the goldens in
 * ../shared/golden/arch-tokenizers: every case whose references agree (the
 * codegen file marks where transformers' slow and fast tokenizers differ
 * around added whitespace tokens). Where they disagree, `follow` names the
 * reference gpt2c must match: "ids" (the primary, the fast tokenizer's) or
 * "xcheck" (the cross-check's, which for BLOOM and StarCoder is the Rust
 * library's semantics where the JS primary deviates); NULL skips those. */
static void arch_golden_follow(const char *name, const char *follow) {
    char dir[512], path[512];
    const char *g = getenv("GPT2C_GOLDEN");
    snprintf(path, sizeof path, "%s/arch-tokenizers/%s.jsonl", g ? g : "../shared/golden", name);
    snprintf(dir, sizeof dir, "%s/../tokenizers/%s", g ? g : "../shared/golden", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("skipped: %s is absent (../shared not here)\n", path);
        skip();
    }
    gpt2c_tokenizer *t;
    if (gpt2c_tokenizer_load(dir, &t) != GPT2C_OK) fail_msg("%s", gpt2c_tokenizer_errmsg(t));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int first = 1, checked = 0, disagreeing = 0;
    int broken = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        /* A few records of these files were split where their text holds
         * U+0085 or U+2028 (a raw newline in a string): not JSON, skipped. */
        json_t *c = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, NULL);
        if (!c || (!first && !json_object_get(c, "ids"))) {
            broken++;
            json_decref(c);
            continue;
        }
        if (!first && follow && json_is_false(json_object_get(c, "agree")) && json_object_get(c, "hex")) {
            json_t *ref = strcmp(follow, "xcheck") ? c : json_object_get(c, "xcheck");
            int nw, ni;
            int32_t *want = json_ids(json_object_get(ref, "ids"), &nw), *ids;
            size_t len;
            char *text = hex_to_bytes(json_string_value(json_object_get(c, "hex")), &len), msg[96];
            assert_int_equal(gpt2c_tokenize(t, text, len, &ids, &ni), GPT2C_OK);
            snprintf(msg, sizeof msg, "%s case %d encode (%s)", name, (int)json_integer_value(json_object_get(c, "i")),
                     follow);
            assert_ids_equal(ids, ni, want, nw, msg);
            gpt2c_free(ids);
            free(text);
            free(want);
            disagreeing++;
        }
        if (first || json_is_false(json_object_get(c, "agree"))) {
            first = 0;
            json_decref(c);
            continue;
        }
        int i = (int)json_integer_value(json_object_get(c, "i")), nw;
        int32_t *want = json_ids(json_object_get(c, "ids"), &nw);
        json_t *hex = json_object_get(c, "hex");
        if (hex) {
            size_t len;
            char *text = hex_to_bytes(json_string_value(hex), &len), msg[96];
            int32_t *ids;
            int ni;
            assert_int_equal(gpt2c_tokenize(t, text, len, &ids, &ni), GPT2C_OK);
            snprintf(msg, sizeof msg, "%s case %d encode", name, i);
            assert_ids_equal(ids, ni, want, nw, msg);
            gpt2c_free(ids);
            free(text);
        }
        check_decode_with(t, want, nw, GPT2C_DECODE_NO_CLEANUP, json_object_get(c, "decode"), "decode", i);
        check_decode_with(t, want, nw, GPT2C_DECODE_NO_CLEANUP | GPT2C_DECODE_SKIP_SPECIAL,
                          json_object_get(c, "decode_skip_special"), "decode_skip_special", i);
        check_decode_with(t, want, nw, 0, json_object_get(c, "decode_clean"), "decode_clean", i);
        free(want);
        json_decref(c);
        checked++;
    }
    free(line);
    fclose(f);
    gpt2c_tokenizer_free(t);
    printf("%s: %d golden cases (%d broken lines skipped)", name, checked, broken);
    if (follow) printf(", %d where the references disagree (as '%s')", disagreeing, follow);
    printf("\n");
    assert_true(checked > 200 && broken < 20);
    if (follow) assert_true(disagreeing > 0);
}

static void arch_golden(const char *name) { arch_golden_follow(name, NULL); }

/* The tokenizer in ../shared/tokenizers/name (the caller has checked that
 * it exists). */
static gpt2c_tokenizer *arch_tokenizer(const char *name) {
    char dir[512];
    const char *g = getenv("GPT2C_GOLDEN");
    snprintf(dir, sizeof dir, "%s/../tokenizers/%s", g ? g : "../shared/golden", name);
    gpt2c_tokenizer *t;
    if (gpt2c_tokenizer_load(dir, &t) != GPT2C_OK) fail_msg("%s", gpt2c_tokenizer_errmsg(t));
    return t;
}

/* text (n bytes) encodes to exactly want. */
static void expect_ids(gpt2c_tokenizer *t, const char *text, size_t n, const int32_t *want, int nw, const char *what) {
    int32_t *ids;
    int ni;
    if (gpt2c_tokenize(t, text, n, &ids, &ni) != GPT2C_OK) fail_msg("%s: %s", what, gpt2c_tokenizer_errmsg(t));
    assert_ids_equal(ids, ni, want, nw, what);
    gpt2c_free(ids);
}

static void test_opt_tokenizer(void **state) {
    (void)state;
    arch_golden("opt-synthetic");
}

static void test_neox_tokenizer(void **state) {
    (void)state;
    arch_golden("gpt-neox");
    /* Its NFC normalizer: a decomposed e + U+0301 encodes as the composed
     * U+00E9, the Hangul jamo as their syllable; NFC keeps U+FB01 (a
     * compatibility ligature, which only NFKC replaces). */
    char dir[512];
    const char *g = getenv("GPT2C_GOLDEN");
    snprintf(dir, sizeof dir, "%s/../tokenizers/gpt-neox", g ? g : "../shared/golden");
    gpt2c_tokenizer *t;
    if (gpt2c_tokenizer_load(dir, &t) != GPT2C_OK) fail_msg("%s", gpt2c_tokenizer_errmsg(t));
    static const char *const pairs[][2] = {{"caf" "e\xcc\x81", "caf\xc3\xa9"},
                                           {"\xe1\x84\x80\xe1\x85\xa1", "\xea\xb0\x80"},
                                           {"<|endoftext|>e\xcc\x81", "<|endoftext|>\xc3\xa9"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int32_t *a, *b;
        int na, nb;
        assert_int_equal(gpt2c_tokenize(t, pairs[i][0], strlen(pairs[i][0]), &a, &na), GPT2C_OK);
        assert_int_equal(gpt2c_tokenize(t, pairs[i][1], strlen(pairs[i][1]), &b, &nb), GPT2C_OK);
        assert_ids_equal(a, na, b, nb, "NFC");
        gpt2c_free(a);
        gpt2c_free(b);
    }
    int32_t *lig, *fi;
    int nl, nf;
    assert_int_equal(gpt2c_tokenize(t, "\xef\xac\x81", 3, &lig, &nl), GPT2C_OK);
    assert_int_equal(gpt2c_tokenize(t, "fi", 2, &fi, &nf), GPT2C_OK);
    assert_true(nl != nf || memcmp(lig, fi, sizeof(int32_t) * (size_t)nl) != 0);
    gpt2c_free(lig);
    gpt2c_free(fi);
    gpt2c_tokenizer_free(t);
}

/* CodeGen's added runs of spaces and tabs are matched whole before BPE;
 * where transformers' slow CodeGenTokenizer strips whitespace around them,
 * gpt2c gives the fast tokenizer's ids (the golden's primary). */
static void test_codegen_tokenizer(void **state) {
    (void)state;
    arch_golden_follow("codegen", "ids");
}

/* BLOOM: Sequence[Split(Oniguruma regex with a nested class, Isolated),
 * ByteLevel(use_regex false)]. */
static void test_bloom_tokenizer(void **state) {
    (void)state;
    arch_golden("bloom-synthetic");
    /* Two cases the golden file lost to its broken lines (their U+2028 and
     * U+0085 were written as raw newlines), ids from the fragments that
     * survive: both characters are White_Space, so Oniguruma's \s, and cut
     * the text (PCRE2's \s would too; U+180E, which PCRE2's UCP \s also takes
     * and White_Space does not, is checked in test_pre_tokenizers). */
    gpt2c_tokenizer *t = arch_tokenizer("bloom-synthetic");
    expect_ids(t, "line\xe2\x80\xa8sep", 10, (const int32_t[]){1374, 451, 105, 329, 83}, 5, "bloom U+2028");
    expect_ids(t, "x\xc2\x85y", 4, (const int32_t[]){91, 130, 231, 92}, 4, "bloom U+0085");
    gpt2c_tokenizer_free(t);
}

/* StarCoder: Sequence[Digits(individual_digits), ByteLevel(use_regex)];
 * where the JS reference's Digits (ASCII only) deviates, the Rust library's
 * (char::is_numeric) ids. Its FIM tokens are special added tokens: each
 * one id, the text between them encoded on its own. */
static void test_starcoder_tokenizer(void **state) {
    (void)state;
    arch_golden_follow("starcoder-synthetic", "xcheck");
    gpt2c_tokenizer *t = arch_tokenizer("starcoder-synthetic");
    static const char prompt[] = "<fim_prefix>def f(x):\n    <fim_suffix>\n    return y<fim_middle>";
    static const char pre[] = "def f(x):\n    ", suf[] = "\n    return y";
    int32_t *ids, *a, *b;
    int n, na, nb;
    assert_int_equal(gpt2c_tokenize(t, prompt, strlen(prompt), &ids, &n), GPT2C_OK);
    assert_int_equal(gpt2c_tokenize(t, pre, strlen(pre), &a, &na), GPT2C_OK);
    assert_int_equal(gpt2c_tokenize(t, suf, strlen(suf), &b, &nb), GPT2C_OK);
    int32_t *want = malloc(sizeof(int32_t) * (size_t)(na + nb + 3));
    int nw = 0;
    want[nw++] = 1; /* <fim_prefix> */
    for (int i = 0; i < na; i++) want[nw++] = a[i];
    want[nw++] = 3; /* <fim_suffix> */
    for (int i = 0; i < nb; i++) want[nw++] = b[i];
    want[nw++] = 2; /* <fim_middle> */
    assert_ids_equal(ids, n, want, nw, "starcoder FIM prompt");
    for (int i = 0; i < na; i++) assert_true(a[i] >= 19); /* no special id inside the text */
    for (int i = 0; i < nb; i++) assert_true(b[i] >= 19);
    char *text;
    size_t len;
    assert_int_equal(gpt2c_detokenize(t, ids, n, GPT2C_DECODE_NO_CLEANUP, &text, &len), GPT2C_OK);
    assert_str_equal_n(text, len, prompt, strlen(prompt), "starcoder FIM decode");
    gpt2c_free(text);
    assert_int_equal(gpt2c_detokenize(t, ids, n, GPT2C_DECODE_NO_CLEANUP | GPT2C_DECODE_SKIP_SPECIAL, &text, &len),
                     GPT2C_OK);
    assert_str_equal_n(text, len, "def f(x):\n    \n    return y", strlen(pre) + strlen(suf), "starcoder FIM skip");
    gpt2c_free(text);
    /* Digits: every digit its own piece, so " 2024" is " ", 2, 0, 2, 4. */
    int32_t *d;
    int nd;
    assert_int_equal(gpt2c_tokenize(t, "x 2024", 6, &d, &nd), GPT2C_OK);
    assert_int_equal(nd, 6);
    gpt2c_free(d);
    gpt2c_free(ids);
    gpt2c_free(a);
    gpt2c_free(b);
    free(want);
    gpt2c_tokenizer_free(t);
}

/* ------------------------------------------------ pre-tokenizers, no ../shared
 * A tiny byte-level BPE tokenizer.json: the 256 byte tokens (id = the byte)
 * and the merges below (ids 256 up, in this order), under a pre_tokenizer
 * given as JSON text. The ids the tests expect follow by hand from the Rust
 * `tokenizers` library's documented behaviour: its SplitDelimiterBehavior
 * example splits "the-final--countdown" on '-' into
 *   Removed            the | final | countdown
 *   Isolated           the | - | final | - | - | countdown
 *   MergedWithPrevious the- | final- | - | countdown
 *   MergedWithNext     the | -final | - | -countdown
 *   Contiguous         the | - | final | -- | countdown
 * and BPE never merges across pieces, so the merges that span a '-' show
 * where the cuts fell. */
static const char *const MINI_MERGES[] = {
    "a -", "- b", "- -", "1 2", "\xc4\xa0 a" /* Ġ a */, "b -", "- c", "x \xc3\x82" /* x Â */, "d \xc3\xa1" /* d á */,
    "\xc4\xb0 !" /* İ (the byte 0x8e) ! */};
enum { MINI_A_DASH = 256, MINI_DASH_B, MINI_DASH_DASH, MINI_12, MINI_SP_A, MINI_B_DASH, MINI_DASH_C, MINI_X_C2, MINI_D_E1,
       MINI_8E_BANG };

/* Writes the tokenizer.json into a new temporary folder (named in dir);
 * pre_json NULL leaves the pre_tokenizer key out, decoder_json NULL the decoder. */
static void mini_write(const char *pre_json, const char *decoder_json, char dir[64]) {
    int b2cp[256], k = 0;
    for (int b = 0; b < 256; b++) /* GPT-2's bytes_to_unicode */
        b2cp[b] = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff) ? b : 256 + k++;
    json_t *vocab = json_object(), *merges = json_array();
    for (int b = 0; b < 256; b++) {
        char u[3] = {0};
        if (b2cp[b] < 0x80) u[0] = (char)b2cp[b];
        else u[0] = (char)(0xc0 | (b2cp[b] >> 6)), u[1] = (char)(0x80 | (b2cp[b] & 0x3f));
        json_object_set_new(vocab, u, json_integer(b));
    }
    for (size_t i = 0; i < sizeof MINI_MERGES / sizeof *MINI_MERGES; i++) {
        char merged[16];
        const char *sp = strchr(MINI_MERGES[i], ' ');
        snprintf(merged, sizeof merged, "%.*s%s", (int)(sp - MINI_MERGES[i]), MINI_MERGES[i], sp + 1);
        json_object_set_new(vocab, merged, json_integer(256 + (int)i));
        json_array_append_new(merges, json_string(MINI_MERGES[i]));
    }
    json_t *root = json_pack("{s:{s:s,s:o,s:o}}", "model", "type", "BPE", "vocab", vocab, "merges", merges);
    if (pre_json) {
        json_error_t je;
        json_t *pre = json_loads(pre_json, JSON_DECODE_ANY, &je);
        if (!pre) fail_msg("test pre_tokenizer JSON: %s", je.text);
        json_object_set_new(root, "pre_tokenizer", pre);
    }
    if (decoder_json) json_object_set_new(root, "decoder", json_loads(decoder_json, 0, NULL));
    strcpy(dir, "/tmp/gpt2c-pretok-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    assert_int_equal(json_dump_file(root, path, 0), 0);
    json_decref(root);
}

static void mini_remove(const char *dir) {
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
}

/* text encodes to want under the pre-tokenizer pre_json; where nothing is
 * removed or added (add_prefix_space), it also decodes back to text. */
static void mini_expect(const char *pre_json, const char *text, const int32_t *want, int nw, int roundtrip) {
    char dir[64];
    mini_write(pre_json, "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true}", dir);
    gpt2c_tokenizer *t;
    if (gpt2c_tokenizer_load(dir, &t) != GPT2C_OK) fail_msg("%s: %s", pre_json, gpt2c_tokenizer_errmsg(t));
    expect_ids(t, text, strlen(text), want, nw, pre_json ? pre_json : "(no pre_tokenizer key)");
    if (roundtrip) {
        int32_t *ids;
        int n;
        char *back;
        size_t bl;
        assert_int_equal(gpt2c_tokenize(t, text, strlen(text), &ids, &n), GPT2C_OK);
        assert_int_equal(gpt2c_detokenize(t, ids, n, GPT2C_DECODE_NO_CLEANUP, &back, &bl), GPT2C_OK);
        assert_str_equal_n(back, bl, text, strlen(text), "round trip");
        gpt2c_free(back);
        gpt2c_free(ids);
    }
    gpt2c_tokenizer_free(t);
    mini_remove(dir);
}

/* The load fails with status st and a message holding each of want[]. */
static void mini_refused(const char *pre_json, const char *decoder_json, gpt2c_status st, const char *const *want, int nw) {
    char dir[64];
    mini_write(pre_json, decoder_json, dir);
    gpt2c_tokenizer *t;
    gpt2c_status got = gpt2c_tokenizer_load(dir, &t);
    const char *msg = gpt2c_tokenizer_errmsg(t);
    if (got != st) fail_msg("%s: status %d, wanted %d (%s)", pre_json, (int)got, (int)st, msg);
    assert_non_null(strstr(msg, "tokenizer.json"));
    for (int i = 0; i < nw; i++)
        if (!strstr(msg, want[i])) fail_msg("message '%s' does not name '%s'", msg, want[i]);
    gpt2c_tokenizer_free(t);
    mini_remove(dir);
}

#define IDS(...) (const int32_t[]){__VA_ARGS__}, (int)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))
/* Split on '-', then Digits (runs together), then ByteLevel without its regex. */
#define SEQ(split) \
    "{\"type\": \"Sequence\", \"pretokenizers\": [" split ", {\"type\": \"Digits\", \"individual_digits\": false}, " \
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}"
#define SPLIT(pattern, behavior, invert) \
    "{\"type\": \"Split\", \"pattern\": " pattern ", \"behavior\": \"" behavior "\", \"invert\": " invert "}"

static void test_pre_tokenizers(void **state) {
    (void)state;
    const char *text = "a-b--c12"; /* the example's shape: x-y--z, then digits */
    const int a = 'a', b = 'b', c = 'c', dash = '-';
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-\"}", "Removed", "false")), text, IDS(a, b, c, MINI_12), 0);
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-\"}", "Isolated", "false")), text, IDS(a, dash, b, dash, dash, c, MINI_12), 1);
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-\"}", "MergedWithPrevious", "false")), text,
                IDS(MINI_A_DASH, MINI_B_DASH, dash, c, MINI_12), 1);
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-\"}", "MergedWithNext", "false")), text,
                IDS(a, MINI_DASH_B, dash, MINI_DASH_C, MINI_12), 1);
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-\"}", "Contiguous", "false")), text, IDS(a, dash, b, MINI_DASH_DASH, c, MINI_12), 1);
    /* invert: the stretches between the dashes are what the split acts on */
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-\"}", "Removed", "true")), text, IDS(dash, dash, dash), 0);
    /* a String pattern is literal text: "--" once, "a-b" left whole */
    mini_expect(SEQ(SPLIT("{\"String\": \"--\"}", "Isolated", "false")), text, IDS(MINI_A_DASH, b, MINI_DASH_DASH, c, MINI_12), 1);
    mini_expect(SEQ(SPLIT("{\"String\": \".\"}", "Removed", "false")), "a.b", IDS(a, b), 0);
    /* A pattern that also matches empty ("-*" finds "", "-", "" in "a-b",
     * Oniguruma's find_iter skipping the empty match right after "-"): the
     * empty matches join the pieces beside them and then vanish. */
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-*\"}", "MergedWithPrevious", "false")), "a-b", IDS(MINI_A_DASH, b), 1);
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-*\"}", "MergedWithNext", "false")), "a-b", IDS(a, MINI_DASH_B), 1);
    mini_expect(SEQ(SPLIT("{\"Regex\": \"-*\"}", "Contiguous", "false")), "a-b", IDS(a, dash, b), 1);
    /* A long match of a repeated group outgrows JIT's stack (PCRE2 error
     * -46 from about 5,000 characters): the interpreter takes it over. */
    {
        enum { LONG = 20000 };
        char *ab = malloc(LONG + 3);
        assert_non_null(ab);
        for (int i = 0; i < LONG; i++) ab[i] = i % 2 ? 'b' : 'a';
        memcpy(ab + LONG, "-c", 3);
        mini_expect(SEQ(SPLIT("{\"Regex\": \"(a|b)+\"}", "Removed", "false")), ab, IDS(MINI_DASH_C), 0);
        free(ab);
    }
    /* Digits with individual_digits: 1 and 2 apart */
    mini_expect("{\"type\": \"Sequence\", \"pretokenizers\": [" SPLIT("{\"Regex\": \"-\"}", "Isolated", "false")
                ", {\"type\": \"Digits\", \"individual_digits\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                "false, \"use_regex\": false}]}",
                text, IDS(a, dash, b, dash, dash, c, '1', '2'), 1);
    /* pre_tokenizer null: no split at all, so merges span everything; the key
     * left out: GPT-2's ByteLevel, as before */
    mini_expect("null", text, IDS(MINI_A_DASH, b, MINI_DASH_DASH, c, MINI_12), 1);
    mini_expect(NULL, text, IDS(a, dash, b, MINI_DASH_DASH, c, MINI_12), 1);
    /* ByteLevel's add_prefix_space, with GPT-2's regex after it: " a" "-" "b" */
    mini_expect("{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true}", "a-b",
                IDS(MINI_SP_A, dash, b), 0);
    /* Steps after ByteLevel see its code points: the byte 0xb2 of U+00B2 is
     * itself U+00B2 there, a numeric character (No), so Digits cuts "x\xc2"
     * | "\xb2" | "1", and x + 0xc2 merge. */
    mini_expect("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                "\"use_regex\": false}, {\"type\": \"Digits\", \"individual_digits\": true}]}",
                "x\xc2\xb2" "1", IDS(MINI_X_C2, 0xb2, '1'), 1);
    /* BLOOM's shape: an Oniguruma class nested in a negated class, \s as
     * White_Space (U+00A0 and U+0085 are, U+180E is not), add_prefix_space on
     * every piece. "ab-c d\u00a0e" is ab | - | c | " d" | U+00A0 | e. */
#define BLOOMISH(pattern)                                                                                      \
    "{\"type\": \"Sequence\", \"pretokenizers\": [" SPLIT("{\"Regex\": \"" pattern "\"}", "Isolated", "false") \
    ", {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": false}]}"
    const int sp = ' ';
    mini_expect(BLOOMISH(" ?[^\\\\s[-]]+"), "ab-c d\xc2\xa0" "e",
                IDS(MINI_SP_A, b, sp, dash, sp, c, sp, 'd', sp, 0xc2, 0xa0, sp, 'e'), 0);
    mini_expect(BLOOMISH(" ?[^\\\\s[-]]+"), "d\xe1\xa0\x8e" "x\xc2\x85y",
                IDS(sp, MINI_D_E1, 0xa0, 0x8e, 'x', sp, 0xc2, 0x85, sp, 'y'), 0);
    /* the same class written with a \u escape and a POSIX bracket, whose
     * [:space:] is White_Space too: U+180E stays, U+0085 cuts */
    mini_expect(BLOOMISH(" ?[^[:space:][\\\\u002d]]+"), "ab-d\xe1\xa0\x8e\xc2\x85" "x",
                IDS(MINI_SP_A, b, sp, dash, sp, MINI_D_E1, 0xa0, 0x8e, sp, 0xc2, 0x85, sp, 'x'), 0);
    /* Oniguruma's ^ and $ are line anchors: "-" ends the first line and
     * starts the second (PCRE2's, without MULTILINE, matched neither). */
    mini_expect(SEQ(SPLIT("{\"Regex\": \"^-|-$\"}", "Isolated", "false")), "a-\n-b", IDS(a, dash, '\n', dash, b), 1);
    /* A '-' just after a nested class is a literal in Oniguruma ([[a]-c] is
     * a, '-' and c), not a range once the class is flattened. */
    mini_expect(SEQ(SPLIT("{\"Regex\": \"[[a]-c]\"}", "Isolated", "false")), text, IDS(a, dash, b, dash, dash, c, MINI_12), 1);
    /* ByteLevel's own regex (StarCoder's Digits + ByteLevel) is Oniguruma's
     * too: U+180E is no \s there, so " ?[^\s\p{L}\p{N}]+" keeps U+180E and
     * "!" in one piece (PCRE2's \s would cut them apart: no 0x8e+! merge). */
    mini_expect("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true}, "
                "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}]}",
                "\xe1\xa0\x8e!", IDS(0xe1, 0xa0, MINI_8E_BANG), 1);
}

static void test_pre_tokenizers_refused(void **state) {
    (void)state;
    mini_refused("{\"type\": \"Whitespace\"}", NULL, GPT2C_ERR_UNSUPPORTED,
                 (const char *const[]){"pre_tokenizer", "Whitespace"}, 2);
    mini_refused("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\"}, {\"type\": \"Metaspace\"}]}", NULL,
                 GPT2C_ERR_UNSUPPORTED, (const char *const[]){"pre_tokenizer.pretokenizers[1]", "Metaspace"}, 2);
    mini_refused(SPLIT("{\"Regex\": \"-\"}", "Merged", "false"), NULL, GPT2C_ERR_FORMAT,
                 (const char *const[]){"pre_tokenizer.behavior"}, 1);
    mini_refused(SPLIT("{\"Regex\": \"[a-z&&[^aeiou]]\"}", "Isolated", "false"), NULL, GPT2C_ERR_UNSUPPORTED,
                 (const char *const[]){"pre_tokenizer.pattern", "&&"}, 2);
    mini_refused(SPLIT("{\"Regex\": \"(\"}", "Isolated", "false"), NULL, GPT2C_ERR_UNSUPPORTED,
                 (const char *const[]){"pre_tokenizer.pattern", "does not compile"}, 2);
    mini_refused("{\"type\": \"ByteLevel\", \"add_prefix_space\": 1}", NULL, GPT2C_ERR_FORMAT,
                 (const char *const[]){"pre_tokenizer.add_prefix_space"}, 1);
    mini_refused(NULL, "{\"type\": \"WordPiece\"}", GPT2C_ERR_UNSUPPORTED, (const char *const[]){"decoder", "WordPiece"}, 2);
    /* PCRE2's \C matches one byte of a character, and the pieces it cut
     * would go to PCRE2 as invalid UTF-8 (Oniguruma's \C is "\C-x") */
    mini_refused(SPLIT("{\"Regex\": \"\\\\C\"}", "Isolated", "false"), NULL, GPT2C_ERR_UNSUPPORTED,
                 (const char *const[]){"pre_tokenizer.pattern", "does not compile"}, 2);
    mini_refused(SPLIT("{\"Regex\": \"[a-[bc]]\"}", "Isolated", "false"), NULL, GPT2C_ERR_UNSUPPORTED,
                 (const char *const[]){"pre_tokenizer.pattern", "nested class"}, 2);
    /* 60,000 nested classes: refused, not a stack overflow while
     * translating; a pattern of a million bytes: refused by its length */
    const int sizes[2] = {60000, 1000000};
    const char *why[2] = {"nested too deep", "at most 65536"};
    for (int i = 0; i < 2; i++) {
        char *deep = malloc((size_t)sizes[i] + 128);
        assert_non_null(deep);
        int k = snprintf(deep, 128, "{\"type\": \"Split\", \"behavior\": \"Isolated\", \"pattern\": {\"Regex\": \"");
        memset(deep + k, '[', (size_t)sizes[i]);
        strcpy(deep + k + sizes[i], "\"}}");
        mini_refused(deep, NULL, GPT2C_ERR_UNSUPPORTED, (const char *const[]){"pre_tokenizer.pattern", why[i]}, 2);
        free(deep);
    }
}

/* Streaming must release exactly the pipeline's new text:
 * decode(prompt + new)[len(decode(prompt)):], split at every token. */
static void stream_matches(const int32_t *ids, int n, int split, unsigned flags, int i) {
    char *full, *pre;
    size_t fl, pl;
    assert_int_equal(gpt2c_detokenize(tok, ids, n, flags, &full, &fl), GPT2C_OK);
    assert_int_equal(gpt2c_detokenize(tok, ids, split, flags, &pre, &pl), GPT2C_OK);
    /* Count code points of the prompt's text and skip as many in full. */
    size_t cps = 0, at = 0;
    for (size_t b = 0; b < pl; b++) cps += ((unsigned char)pre[b] & 0xc0) != 0x80;
    while (at < fl && cps > 0) {
        at++;
        while (at < fl && ((unsigned char)full[at] & 0xc0) == 0x80) at++;
        cps--;
    }
    gpt2c_stream *s;
    assert_int_equal(gpt2c_stream_new(tok, ids, split, flags, &s), GPT2C_OK);
    char *got = malloc(fl + 1);
    size_t gl = 0;
    for (int j = split; j <= n; j++) {
        const char *piece;
        size_t len;
        if (j < n) assert_int_equal(gpt2c_stream_push(s, ids[j], &piece, &len), GPT2C_OK);
        else assert_int_equal(gpt2c_stream_finish(s, &piece, &len), GPT2C_OK);
        assert_true(gl + len <= fl);
        memcpy(got + gl, piece, len);
        gl += len;
        /* Every released prefix is valid UTF-8 and a prefix of the result. */
        assert_memory_equal(got, full + at, gl);
    }
    char msg[64];
    snprintf(msg, sizeof msg, "case %d stream split %d", i, split);
    assert_str_equal_n(got, gl, full + at, fl - at, msg);
    free(got);
    free(full);
    free(pre);
    gpt2c_stream_free(s);
}

static void test_stream_equals_decode(void **state) {
    (void)state;
    size_t k;
    json_t *c;
    json_array_foreach(cases, k, c) {
        int n, i = (int)json_integer_value(json_object_get(c, "i"));
        int32_t *ids = json_ids(json_object_get(c, "ids"), &n);
        for (unsigned flags = 0; flags < 4; flags++) {
            stream_matches(ids, n, 0, flags, i);
            if (n > 1) stream_matches(ids, n, n / 2, flags, i);
        }
        free(ids);
    }
}

static void test_stream_holds_partial_utf8(void **state) {
    (void)state;
    /* "🤖" is two tokens here; the first alone must release nothing. */
    int32_t *ids;
    int n;
    assert_int_equal(gpt2c_tokenize(tok, "\xf0\x9f\xa4\x96", 4, &ids, &n), GPT2C_OK);
    assert_true(n >= 2);
    gpt2c_stream *s;
    assert_int_equal(gpt2c_stream_new(tok, NULL, 0, 0, &s), GPT2C_OK);
    const char *piece;
    size_t len;
    assert_int_equal(gpt2c_stream_push(s, ids[0], &piece, &len), GPT2C_OK);
    assert_int_equal(len, 0);
    for (int i = 1; i < n; i++) assert_int_equal(gpt2c_stream_push(s, ids[i], &piece, &len), GPT2C_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(piece, "\xf0\x9f\xa4\x96", 4);
    gpt2c_stream_free(s);
    gpt2c_free(ids);
}

/* Every golden text encodes the same with t2 as with the fixture tokenizer. */
static void assert_same_encoding(gpt2c_tokenizer *t2, const char *what) {
    size_t k;
    json_t *c;
    json_array_foreach(cases, k, c) {
        json_t *hex = json_object_get(c, "hex");
        if (!hex) continue;
        size_t len;
        char *text = hex_to_bytes(json_string_value(hex), &len);
        int32_t *a, *b;
        int na, nb;
        assert_int_equal(gpt2c_tokenize(tok, text, len, &a, &na), GPT2C_OK);
        assert_int_equal(gpt2c_tokenize(t2, text, len, &b, &nb), GPT2C_OK);
        assert_ids_equal(b, nb, a, na, what);
        gpt2c_free(a);
        gpt2c_free(b);
        free(text);
    }
}

/* Stop strings: for each golden text, a stop taken from its middle ends the
 * stream; the released pieces are exactly the text up to the stop, decoded
 * from the tokens so far. */
static void test_stream_stop_strings(void **state) {
    (void)state;
    size_t k;
    json_t *c;
    int tested = 0;
    json_array_foreach(cases, k, c) {
        json_t *dec = json_object_get(c, "decode");
        const char *full = json_string_value(dec);
        size_t fl = json_string_length(dec);
        if (fl < 9) continue;
        /* A 3-byte ASCII-only stop from the middle, so it is whole characters. */
        size_t at = fl / 2;
        if ((full[at] | full[at + 1] | full[at + 2]) & 0x80) continue;
        char stop[4] = {full[at], full[at + 1], full[at + 2], 0};
        int n;
        int32_t *ids = json_ids(json_object_get(c, "ids"), &n);
        gpt2c_stream *st;
        assert_int_equal(gpt2c_stream_new(tok, NULL, 0, 0, &st), GPT2C_OK);
        const char *stops[2] = {"\x01never", stop};
        assert_int_equal(gpt2c_stream_set_stops(st, stops, 2), GPT2C_OK);
        char *got = malloc(fl + 1);
        size_t gl = 0, len;
        const char *piece;
        int j = 0;
        for (; j < n && !gpt2c_stream_stopped(st); j++) {
            assert_int_equal(gpt2c_stream_push(st, ids[j], &piece, &len), GPT2C_OK);
            memcpy(got + gl, piece, len);
            gl += len;
        }
        assert_true(gpt2c_stream_stopped(st));
        assert_int_equal(gpt2c_stream_finish(st, &piece, &len), GPT2C_OK);
        assert_int_equal(len, 0); /* nothing after the stop */
        char *text;
        size_t tl;
        assert_int_equal(gpt2c_detokenize(tok, ids, j, 0, &text, &tl), GPT2C_OK);
        const char *hit = strstr(text, stop);
        assert_non_null(hit);
        char msg[64];
        snprintf(msg, sizeof msg, "case %d stop", (int)json_integer_value(json_object_get(c, "i")));
        assert_str_equal_n(got, gl, text, (size_t)(hit - text), msg);
        gpt2c_free(text);
        free(got);
        free(ids);
        gpt2c_stream_free(st);
        tested++;
    }
    assert_true(tested > 50);
}

/* Text that might begin a stop string is held back, and released at the
 * end when it turns out not to be one: nothing is lost. */
static void test_stream_stop_holdback(void **state) {
    (void)state;
    int32_t *ids;
    int n;
    assert_int_equal(gpt2c_tokenize(tok, "Hello world", 11, &ids, &n), GPT2C_OK);
    assert_int_equal(n, 2);
    gpt2c_stream *st;
    assert_int_equal(gpt2c_stream_new(tok, NULL, 0, 0, &st), GPT2C_OK);
    const char *stops[] = {" worlds"};
    assert_int_equal(gpt2c_stream_set_stops(st, stops, 1), GPT2C_OK);
    const char *piece;
    size_t len;
    assert_int_equal(gpt2c_stream_push(st, ids[0], &piece, &len), GPT2C_OK);
    assert_int_equal(len, 5);
    assert_int_equal(gpt2c_stream_push(st, ids[1], &piece, &len), GPT2C_OK);
    assert_int_equal(len, 0); /* " world" may be the start of " worlds" */
    assert_int_equal(gpt2c_stream_finish(st, &piece, &len), GPT2C_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(piece, " world", 6);
    assert_false(gpt2c_stream_stopped(st));
    const char *empty[] = {""};
    assert_int_equal(gpt2c_stream_set_stops(st, empty, 1), GPT2C_ERR_INVALID);
    gpt2c_stream_free(st);
    gpt2c_free(ids);
}

/* A tokenizer.json written from the same vocab and merges encodes the same. */
static void test_tokenizer_json(void **state) {
    (void)state;
    json_t *vocab = load_json_or_fail(TOKENIZER_DIR "/vocab.json");
    FILE *f = fopen(TOKENIZER_DIR "/merges.txt", "rb");
    assert_non_null(f);
    json_t *merges = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n') line[--n] = '\0';
        if (n == 0 || strncmp(line, "#version", 8) == 0) continue;
        json_array_append_new(merges, json_string(line));
    }
    free(line);
    fclose(f);
    json_t *root = json_pack("{s:{s:s,s:o,s:o},s:[{s:i,s:s,s:b}]}", "model", "type", "BPE", "vocab", vocab,
                             "merges", merges, "added_tokens", "id", 50256, "content", "<|endoftext|>", "special", 1);
    char dir[] = "/tmp/gpt2c-tokjson-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    assert_int_equal(json_dump_file(root, path, 0), 0);
    json_decref(root);
    gpt2c_tokenizer *t2;
    assert_int_equal(gpt2c_tokenizer_load(dir, &t2), GPT2C_OK);
    assert_same_encoding(t2, "tokenizer.json vs vocab+merges");
    gpt2c_tokenizer_free(t2);
    unlink(path);
    rmdir(dir);
}

/* vocab.json with every non-ASCII character escaped (\\uXXXX, surrogate
 * pairs included), as json.dump(ensure_ascii=True) writes it, reads the same
 * as the plain file: the fast vocab scanner against the escapes. */
static void test_escaped_vocab(void **state) {
    (void)state;
    json_t *vocab = load_json_or_fail(TOKENIZER_DIR "/vocab.json");
    json_object_set_new(vocab, "\xf0\x9f\xa4\x96", json_integer(50257)); /* needs a surrogate pair */
    char dir[] = "/tmp/gpt2c-escvocab-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], cmd[512];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    assert_int_equal(json_dump_file(vocab, path, JSON_ENSURE_ASCII), 0);
    json_decref(vocab);
    snprintf(cmd, sizeof cmd, "cp " TOKENIZER_DIR "/merges.txt %s/", dir);
    assert_int_equal(system(cmd), 0);
    gpt2c_tokenizer *t2;
    gpt2c_status st = gpt2c_tokenizer_load(dir, &t2);
    /* The added emoji token is outside the byte alphabet: refused, named. */
    assert_int_equal(st, GPT2C_ERR_FORMAT);
    assert_non_null(strstr(gpt2c_tokenizer_errmsg(t2), "byte alphabet"));
    gpt2c_tokenizer_free(t2);
    vocab = load_json_or_fail(TOKENIZER_DIR "/vocab.json");
    assert_int_equal(json_dump_file(vocab, path, JSON_ENSURE_ASCII | JSON_INDENT(1)), 0);
    json_decref(vocab);
    assert_int_equal(gpt2c_tokenizer_load(dir, &t2), GPT2C_OK);
    assert_same_encoding(t2, "escaped vocab.json vs plain");
    gpt2c_tokenizer_free(t2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_invalid_utf8_refused(void **state) {
    (void)state;
    int32_t *ids;
    int n;
    const char bad[] = "ok \xff here";
    assert_int_equal(gpt2c_tokenize(tok, bad, sizeof bad - 1, &ids, &n), GPT2C_ERR_INVALID);
    assert_non_null(strstr(gpt2c_tokenizer_errmsg(tok), "byte offset 3"));
    const char surrogate[] = "\xed\xa0\x80"; /* UTF-16 surrogates are not UTF-8 */
    assert_int_equal(gpt2c_tokenize(tok, surrogate, 3, &ids, &n), GPT2C_ERR_INVALID);
    const char overlong[] = "\xc0\xaf";
    assert_int_equal(gpt2c_tokenize(tok, overlong, 2, &ids, &n), GPT2C_ERR_INVALID);
    /* The tokenizer still works after a refusal. */
    assert_int_equal(gpt2c_tokenize(tok, "Hello", 5, &ids, &n), GPT2C_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 15496);
    gpt2c_free(ids);
}

static void test_bad_ids_refused(void **state) {
    (void)state;
    char *text;
    size_t len;
    int32_t bad[] = {15496, 50257};
    assert_int_equal(gpt2c_detokenize(tok, bad, 2, 0, &text, &len), GPT2C_ERR_INVALID);
    int32_t neg[] = {-1};
    assert_int_equal(gpt2c_detokenize(tok, neg, 1, 0, &text, &len), GPT2C_ERR_INVALID);
    assert_null(gpt2c_token_bytes(tok, 50257, &len));
    /* Generated ids past the tokenizer (a padded embedding: GPT-NeoX's 50304
     * rows) have no text, in one decode and streamed; negative ids stay
     * refused. */
    int32_t gen[] = {15496, 50300, 11, 60000};
    assert_int_equal(gpt2c_detokenize(tok, gen, 4, GPT2C_DECODE_SKIP_UNKNOWN, &text, &len), GPT2C_OK);
    assert_string_equal(text, "Hello,");
    gpt2c_free(text);
    assert_int_equal(gpt2c_detokenize(tok, neg, 1, GPT2C_DECODE_SKIP_UNKNOWN, &text, &len), GPT2C_ERR_INVALID);
    gpt2c_stream *st;
    const char *piece;
    assert_int_equal(gpt2c_stream_new(tok, gen, 1, GPT2C_DECODE_SKIP_UNKNOWN, &st), GPT2C_OK);
    for (int i = 1; i < 4; i++) assert_int_equal(gpt2c_stream_push(st, gen[i], &piece, &len), GPT2C_OK);
    assert_int_equal(gpt2c_stream_finish(st, &piece, &len), GPT2C_OK);
    assert_int_equal(gpt2c_stream_push(st, -1, &piece, &len), GPT2C_ERR_INVALID);
    gpt2c_stream_free(st);
}

/* One megabyte without a split point is one BPE piece: the heap-based merge
 * keeps it near-linear where the textbook loop would be quadratic. */
static void test_long_inputs(void **state) {
    (void)state;
    const size_t n = 1 << 20;
    char *text = malloc(n);
    const char fill[] = {'a', ' ', '1', '!', '\n'};
    for (size_t f = 0; f < sizeof fill; f++) {
        memset(text, fill[f], n);
        int32_t *ids;
        int m;
        clock_t t0 = clock();
        assert_int_equal(gpt2c_tokenize(tok, text, n, &ids, &m), GPT2C_OK);
        double dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
        assert_true(m > 0 && m <= (int)n); /* a space is one token per byte */
        /* Round trip: decoding gives the text back. */
        char *back;
        size_t bl;
        assert_int_equal(gpt2c_detokenize(tok, ids, m, GPT2C_DECODE_NO_CLEANUP, &back, &bl), GPT2C_OK);
        assert_int_equal(bl, n);
        assert_memory_equal(back, text, n);
        gpt2c_free(back);
        gpt2c_free(ids);
        /* Not a timing assertion in spirit: quadratic BPE would take hours. */
        assert_true(dt < 120.0);
    }
    free(text);
}

/* The cache must not change results: the same text twice, and a piece seen
 * before inside other text. */
static void test_cache_consistent(void **state) {
    (void)state;
    const char *texts[] = {" supercalifragilistic", "x supercalifragilistic y", " supercalifragilistic"};
    int32_t *first = NULL;
    int nf = 0;
    for (int r = 0; r < 3; r++) {
        int32_t *ids;
        int n;
        assert_int_equal(gpt2c_tokenize(tok, texts[r], strlen(texts[r]), &ids, &n), GPT2C_OK);
        if (r == 0) first = ids, nf = n;
        else if (r == 2) assert_ids_equal(ids, n, first, nf, "cached");
        if (r != 0) gpt2c_free(ids);
    }
    gpt2c_free(first);
}

/* The one image file in dir/tokenizers (its path into out), or -1. */
static int image_file(const char *dir, char out[512]) {
    char sub[300];
    snprintf(sub, sizeof sub, "%s/tokenizers", dir);
    DIR *d = opendir(sub);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".img")) snprintf(out, 512, "%.200s/%.250s", sub, e->d_name), n++;
    if (d) closedir(d);
    return n == 1 ? 0 : -1;
}

/* Every token's bytes and every golden text's ids are the same in t as in
 * the tokenizer parsed from the files. */
static void assert_same_tokenizer(gpt2c_tokenizer *t, const char *what) {
    assert_int_equal(gpt2c_tokenizer_vocab_size(t), gpt2c_tokenizer_vocab_size(tok));
    for (int32_t id = 0; id < gpt2c_tokenizer_vocab_size(tok); id++) {
        size_t la, lb;
        const char *a = gpt2c_token_bytes(tok, id, &la), *b = gpt2c_token_bytes(t, id, &lb);
        if ((a == NULL) != (b == NULL) || la != lb || (a && memcmp(a, b, la) != 0))
            fail_msg("%s: token %d differs from the parsed tokenizer's", what, id);
    }
    assert_int_equal(gpt2c_token_id(t, "<|endoftext|>"), gpt2c_token_id(tok, "<|endoftext|>"));
    assert_same_encoding(t, what);
}

/* The tokenizer image (image.c): written by the first load into the cache,
 * mapped by the next with the same tables as parsing gives; a damaged,
 * truncated or foreign image is not followed but rebuilt. */
static void test_image(void **state) {
    (void)state;
#ifdef GPT2C_NO_CRYPTO
    skip(); /* this build has no SHA-256 to key images by: it parses every time */
#endif
    char dir[] = "/tmp/gpt2c-image-XXXXXX", img[512];
    assert_non_null(mkdtemp(dir));
    setenv("GPT2C_CACHE_DIR", dir, 1);
    gpt2c_tokenizer *t;
    assert_int_equal(gpt2c_tokenizer_load(TOKENIZER_DIR, &t), GPT2C_OK);
    assert_null(t->image); /* parsed, then saved */
    assert_same_tokenizer(t, "parsed with images on");
    gpt2c_tokenizer_free(t);
    assert_int_equal(image_file(dir, img), 0);
    assert_int_equal(gpt2c_tokenizer_load(TOKENIZER_DIR, &t), GPT2C_OK);
    assert_non_null(t->image);
    assert_same_tokenizer(t, "mapped from the image");
    gpt2c_tokenizer_free(t);

    FILE *f = fopen(img, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *good = malloc((size_t)size), *bad = malloc((size_t)size);
    assert_int_equal(fread(good, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    /* The header is 128 bytes: magic, version, byte order, key, ten counts;
     * the first table (id -> offset, off[0] = 0) starts right after it, and
     * the last (the merge results, ids < n_vocab) ends the file. */
    struct {
        const char *what;
        long at, len; /* bytes set to 0xff; len -1: the file cut at `at` */
    } damage[] = {{"magic", 0, 1, }, {"version", 8, 1}, {"key", 16, 1}, {"a count", 48, 8}, {"off[0]", 128, 8},
                  {"the last merge's result", size - 4, 4}, {"cut short", size - 1, -1}, {"header only", 64, -1}};
    for (size_t k = 0; k < sizeof damage / sizeof *damage; k++) {
        memcpy(bad, good, (size_t)size);
        long n = damage[k].len < 0 ? damage[k].at : size;
        if (damage[k].len > 0) memset(bad + damage[k].at, 0xff, (size_t)damage[k].len);
        f = fopen(img, "wb");
        assert_int_equal(fwrite(bad, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        assert_int_equal(gpt2c_tokenizer_load(TOKENIZER_DIR, &t), GPT2C_OK);
        if (t->image) fail_msg("image with %s damaged: mapped", damage[k].what);
        assert_same_tokenizer(t, damage[k].what);
        gpt2c_tokenizer_free(t);
        /* ... and rewritten whole. */
        assert_int_equal(gpt2c_tokenizer_load(TOKENIZER_DIR, &t), GPT2C_OK);
        if (!t->image) fail_msg("image with %s damaged: not rewritten", damage[k].what);
        gpt2c_tokenizer_free(t);
    }
    free(good);
    free(bad);
    remove(img);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/tokenizers", dir);
    rmdir(sub);
    rmdir(dir);
    setenv("GPT2C_CACHE_DIR", "", 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_encode_decode), cmocka_unit_test(test_opt_tokenizer),
        cmocka_unit_test(test_codegen_tokenizer),    cmocka_unit_test(test_neox_tokenizer),
        cmocka_unit_test(test_bloom_tokenizer),      cmocka_unit_test(test_starcoder_tokenizer),
        cmocka_unit_test(test_pre_tokenizers),       cmocka_unit_test(test_pre_tokenizers_refused),    cmocka_unit_test(test_stream_equals_decode),
        cmocka_unit_test(test_stream_holds_partial_utf8), cmocka_unit_test(test_stream_stop_strings),
        cmocka_unit_test(test_stream_stop_holdback),      cmocka_unit_test(test_tokenizer_json),
        cmocka_unit_test(test_escaped_vocab),
        cmocka_unit_test(test_invalid_utf8_refused), cmocka_unit_test(test_bad_ids_refused),
        cmocka_unit_test(test_long_inputs), cmocka_unit_test(test_cache_consistent),
        cmocka_unit_test(test_image),
    };
    return cmocka_run_group_tests_name("tokenizer", tests, setup, teardown);
}
