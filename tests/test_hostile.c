/* test_hostile.c -- bad checkpoints, configs, tokenizer files and
 * generation requests: each must give its status code and a message naming
 * the file and field, never a crash or an out-of-bounds read (the suite also
 * runs under ASan and UBSan). Every case starts from a valid miniature
 * checkpoint, which the first test proves loads and generates. */
#include "model/model.h"
#include "testutil.h"

enum { V = 16, C = 8, P = 8 };

static char root[64];

typedef struct spec {
    const char *name;
    int d0, d1; /* d1 = 0: one dimension */
} spec;

static const spec SPECS[] = {
    {"wte.weight", V, C}, {"wpe.weight", P, C}, {"ln_f.weight", C, 0}, {"ln_f.bias", C, 0},
    {"h.0.ln_1.weight", C, 0}, {"h.0.ln_1.bias", C, 0}, {"h.0.attn.c_attn.weight", C, 3 * C},
    {"h.0.attn.c_attn.bias", 3 * C, 0}, {"h.0.attn.c_proj.weight", C, C}, {"h.0.attn.c_proj.bias", C, 0},
    {"h.0.ln_2.weight", C, 0}, {"h.0.ln_2.bias", C, 0}, {"h.0.mlp.c_fc.weight", C, 4 * C},
    {"h.0.mlp.c_fc.bias", 4 * C, 0}, {"h.0.mlp.c_proj.weight", 4 * C, C}, {"h.0.mlp.c_proj.bias", C, 0},
};

static void write_file(const char *dir, const char *name, const void *data, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_str(const char *dir, const char *name, const char *s) { write_file(dir, name, s, strlen(s)); }

static const char *CONFIG =
    "{\"model_type\": \"gpt2\", \"vocab_size\": 16, \"n_positions\": 8, \"n_embd\": 8, \"n_head\": 2, "
    "\"n_layer\": 1, \"eos_token_id\": 15, \"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": 1e-5}";

/* The valid header as JSON, with sequential offsets; returns the data size. */
static json_t *valid_header(size_t *data_size) {
    json_t *h = json_object();
    size_t off = 0;
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++) {
        const spec *s = &SPECS[i];
        size_t n = (size_t)s->d0 * (s->d1 ? (size_t)s->d1 : 1) * 4;
        json_t *shape = s->d1 ? json_pack("[i,i]", s->d0, s->d1) : json_pack("[i]", s->d0);
        json_object_set_new(h, s->name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape,
                                                  "data_offsets", (json_int_t)off, (json_int_t)(off + n)));
        off += n;
    }
    json_object_set_new(h, "h.0.attn.bias", json_pack("{s:s,s:[i,i,i,i],s:[I,I]}", "dtype", "F32", "shape", 1, 1, P,
                                                       P, "data_offsets", (json_int_t)off, (json_int_t)(off + P * P * 4)));
    *data_size = off + P * P * 4;
    return h;
}

/* Writes model.safetensors from a header text and data_size zero bytes
 * (LayerNorm gains of zero are fine: the math stays finite). */
static void write_safetensors(const char *dir, const char *header, size_t data_size) {
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, 8 + hl + data_size);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    write_file(dir, "model.safetensors", buf, 8 + hl + data_size);
    free(buf);
}

/* A fresh valid checkpoint in its own folder. */
static const char *fresh(const char *name) {
    static char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0755);
    write_str(dir, "config.json", CONFIG);
    size_t ds;
    json_t *h = valid_header(&ds);
    char *txt = json_dumps(h, JSON_COMPACT);
    write_safetensors(dir, txt, ds);
    free(txt);
    json_decref(h);
    return dir;
}

static void write_header_json(const char *dir, json_t *h, size_t ds) {
    char *txt = json_dumps(h, JSON_COMPACT);
    write_safetensors(dir, txt, ds);
    free(txt);
    json_decref(h);
}

/* Loads dir and checks the status and that the message holds every needle. */
#define expect_load(dir, want, n1, n2) expect_load_at(__LINE__, dir, want, n1, n2)
static void expect_load_at(int line, const char *dir, gpt2c_status want, const char *needle1, const char *needle2) {
    gpt2c_model *m;
    gpt2c_status s = gpt2c_model_load(dir, &m);
    const char *msg = gpt2c_model_errmsg(m);
    if (s != want)
        fail_msg("case at line %d: %s: status %d (%s), expected %d; message: %s", line, dir, s,
                 gpt2c_status_string(s), want, msg);
    if (needle1 && !strstr(msg, needle1)) fail_msg("message lacks '%s': %s", needle1, msg);
    if (needle2 && !strstr(msg, needle2)) fail_msg("message lacks '%s': %s", needle2, msg);
    gpt2c_model_free(m);
}

static int setup(void **state) {
    (void)state;
    strcpy(root, "/tmp/gpt2c-hostile-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_valid_control(void **state) {
    (void)state;
    const char *dir = fresh("valid");
    gpt2c_model *m;
    assert_int_equal(gpt2c_model_load(dir, &m), GPT2C_OK);
    int32_t prompt[] = {1, 2, 3};
    int n = 3;
    const int32_t *p[1] = {prompt};
    gpt2c_gen_params gp;
    gpt2c_gen_params_init(&gp);
    gp.max_new_tokens = 10; /* more than the 8-position context allows */
    gpt2c_gen *g;
    assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_OK);
    while (gpt2c_gen_step(g) == GPT2C_OK) {
    }
    int got;
    gpt2c_gen_tokens(g, 0, &got);
    /* Stopped at the context's end: the last position's prediction is the
     * last token (transformers gives it too, then has no position for it). */
    assert_int_equal(got, P + 1 - 3);
    assert_int_equal(gpt2c_gen_finish_reason(g, 0), GPT2C_FINISH_LENGTH);
    gpt2c_gen_free(g);
    gpt2c_model_free(m);
}

static void test_config_errors(void **state) {
    (void)state;
    expect_load("/nonexistent/gpt2c", GPT2C_ERR_IO, "/nonexistent/gpt2c/config.json", "No such file");
    const char *dir = fresh("cfg");
    write_str(dir, "config.json", "{\"n_embd\": 8,");
    expect_load(dir, GPT2C_ERR_FORMAT, "config.json", "invalid JSON");
    write_str(dir, "config.json", "[1, 2]");
    expect_load(dir, GPT2C_ERR_FORMAT, "config.json", "not a JSON object");
    write_str(dir, "config.json", "{\"n_embd\": 9, \"n_head\": 2}");
    expect_load(dir, GPT2C_ERR_FORMAT, "config.json", "n_embd 9 is not divisible by n_head 2");
    write_str(dir, "config.json", "{\"model_type\": \"llama\"}");
    expect_load(dir, GPT2C_ERR_UNSUPPORTED, "config.json", "model_type 'llama' is not supported (supported: gpt2, gpt_neo, opt, gpt_neox, bloom, gpt_bigcode, codegen)");
    write_str(dir, "config.json", "{\"activation_function\": \"swish\"}");
    expect_load(dir, GPT2C_ERR_UNSUPPORTED, "config.json", "activation_function 'swish'");
    write_str(dir, "config.json", "{\"n_layer\": \"two\"}");
    expect_load(dir, GPT2C_ERR_FORMAT, "config.json", "'n_layer' must be an integer");
    write_str(dir, "config.json", "{\"n_embd\": 1000000000}");
    expect_load(dir, GPT2C_ERR_UNSUPPORTED, "config.json", "'n_embd' = 1000000000");
    write_str(dir, "config.json", "{\"layer_norm_epsilon\": -1}");
    expect_load(dir, GPT2C_ERR_FORMAT, "config.json", "layer_norm_epsilon");
    /* An id outside the vocabulary is tolerated (as transformers does: the
     * load goes on to the tensors); one that is no integer is not. */
    write_str(dir, "config.json", "{\"vocab_size\": 16, \"eos_token_id\": 99}");
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors", "'wte.weight' has shape");
    write_str(dir, "config.json", "{\"vocab_size\": 16, \"eos_token_id\": 1.5}");
    expect_load(dir, GPT2C_ERR_FORMAT, "config.json", "eos_token_id");
    write_str(dir, "config.json", "{\"add_cross_attention\": true}");
    expect_load(dir, GPT2C_ERR_UNSUPPORTED, "config.json", "add_cross_attention");
    /* A config that disagrees with the tensors. */
    write_str(dir, "config.json", "{\"vocab_size\": 16, \"n_positions\": 8, \"n_embd\": 8, \"n_head\": 2, \"n_layer\": 2}");
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors", "'h.1.ln_1.weight' is missing");
    write_str(dir, "config.json", "{\"vocab_size\": 16, \"n_positions\": 8, \"n_embd\": 8, \"n_head\": 2, \"n_layer\": 1, \"n_inner\": 16}");
    expect_load(dir, GPT2C_ERR_FORMAT, "'h.0.mlp.c_fc.weight' has shape [8, 32]", "implies [8, 16]");
    /* generation_config.json is checked too. */
    dir = fresh("gencfg");
    write_str(dir, "generation_config.json", "{\"eos_token_id\": \"x\"}");
    expect_load(dir, GPT2C_ERR_FORMAT, "generation_config.json", "eos_token_id");
}

static void test_safetensors_errors(void **state) {
    (void)state;
    const char *dir = fresh("st");
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    expect_load(dir, GPT2C_ERR_IO, "no weights", "pytorch_model.bin");
    write_file(dir, "model.safetensors", "\x05\x00\x00", 3);
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors", "truncated");
    write_file(dir, "model.safetensors", "\xff\xff\x00\x00\x00\x00\x00\x00{}", 10);
    expect_load(dir, GPT2C_ERR_FORMAT, "header length 65535", "runs past the end");
    write_file(dir, "model.safetensors", "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors", "runs past the end");
    write_safetensors(dir, "{\"wte.weight\": ", 0);
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors", "not valid JSON");
    write_safetensors(dir, "[]", 0);
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors", "not a JSON object");
    write_safetensors(dir, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                           "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors", "duplicate");

    size_t ds;
    json_t *h = valid_header(&ds);
    json_array_set_new(json_object_get(json_object_get(h, "ln_f.bias"), "data_offsets"), 1, json_integer((json_int_t)ds + 4));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "'ln_f.bias'", "outside the");

    h = valid_header(&ds); /* ln_f.bias moved onto ln_f.weight's bytes */
    json_t *w = json_object_get(json_object_get(h, "ln_f.weight"), "data_offsets");
    json_object_set(json_object_get(h, "ln_f.bias"), "data_offsets", w);
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "overlap", "ln_f.");

    h = valid_header(&ds);
    json_object_set_new(json_object_get(h, "wpe.weight"), "dtype", json_string("F13"));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "'wpe.weight'", "unknown dtype 'F13'");

    h = valid_header(&ds);
    json_object_set_new(json_object_get(h, "wpe.weight"), "dtype", json_string("I32"));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_UNSUPPORTED, "'wpe.weight'", "dtype I32");

    h = valid_header(&ds); /* shape disagrees with its byte span */
    json_object_set_new(json_object_get(h, "wpe.weight"), "shape", json_pack("[i,i]", P, C + 1));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "'wpe.weight'", "data_offsets span");

    h = valid_header(&ds);
    json_object_set_new(json_object_get(h, "wpe.weight"), "shape", json_pack("[i,i,i]", -1, 2, 3));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "'wpe.weight'", "shape[0]");

    h = valid_header(&ds); /* an enormous shape must not overflow the size check */
    json_object_set_new(json_object_get(h, "wpe.weight"), "shape",
                        json_pack("[I,I,I]", (json_int_t)1 << 40, (json_int_t)1 << 40, (json_int_t)1 << 40));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "'wpe.weight'", "absurdly large");

    h = valid_header(&ds); /* consistent bytes, but not the shape config.json implies */
    json_object_set_new(json_object_get(h, "wpe.weight"), "shape", json_pack("[i,i]", P / 2, C * 2));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "'wpe.weight' has shape [4, 16]", "implies [8, 8]");
    h = valid_header(&ds);
    json_object_set_new(json_object_get(h, "wte.weight"), "shape", json_pack("[i,i]", V * 2, C / 2));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "'wte.weight' has shape [32, 4]", "implies [16, 8]");

    h = valid_header(&ds);
    json_object_del(h, "h.0.attn.c_proj.bias");
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "'h.0.attn.c_proj.bias' is missing", NULL);

    h = valid_header(&ds); /* two tensors on the same bytes */
    json_object_set(h, "h.1.ln_1.weight", json_object_get(h, "h.0.ln_1.weight"));
    write_header_json(dir, h, ds);
    expect_load(dir, GPT2C_ERR_FORMAT, "overlap", NULL);

    h = valid_header(&ds); /* a layer more than config.json says */
    json_object_set_new(h, "h.1.ln_1.weight", json_pack("{s:s,s:[i],s:[I,I]}", "dtype", "F32", "shape", C,
                                                         "data_offsets", (json_int_t)ds, (json_int_t)ds + 4 * C));
    write_header_json(dir, h, ds + 4 * C);
    expect_load(dir, GPT2C_ERR_FORMAT, "has a layer 1", "more layers than config.json's 1");

    /* Sharded checkpoints: the index must name files in the folder, which
     * must exist. */
    unlink(path);
    write_str(dir, "model.safetensors.index.json", "{\"weight_map\": {\"wte.weight\": \"../../etc/passwd\"}}");
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors.index.json", "not a file name in the folder");
    write_str(dir, "model.safetensors.index.json", "{\"weight_map\": {\"wte.weight\": \"part-1.safetensors\"}}");
    expect_load(dir, GPT2C_ERR_IO, "part-1.safetensors", "No such file");
    write_str(dir, "model.safetensors.index.json", "{\"weight_map\": []}");
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors.index.json", "weight_map");
    write_str(dir, "model.safetensors.index.json", "{\"weight_map\": {");
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors.index.json", "invalid JSON");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    unlink(path);

    /* A file cut short: the offsets now run past its end. */
    h = valid_header(&ds);
    write_header_json(dir, h, ds - 100);
    expect_load(dir, GPT2C_ERR_FORMAT, "model.safetensors", "outside the");
}

static void expect_tok(const char *dir, gpt2c_status want, const char *needle1, const char *needle2) {
    gpt2c_tokenizer *t;
    gpt2c_status s = gpt2c_tokenizer_load(dir, &t);
    const char *msg = gpt2c_tokenizer_errmsg(t);
    if (s != want) fail_msg("%s: status %d, expected %d; message: %s", dir, s, want, msg);
    if (needle1 && !strstr(msg, needle1)) fail_msg("message lacks '%s': %s", needle1, msg);
    if (needle2 && !strstr(msg, needle2)) fail_msg("message lacks '%s': %s", needle2, msg);
    gpt2c_tokenizer_free(t);
}

static void copy_vocab(const char *dir) {
    FILE *f = fopen(TOKENIZER_DIR "/vocab.json", "rb");
    assert_non_null(f);
    char *buf = malloc(2 << 20);
    size_t n = fread(buf, 1, 2 << 20, f);
    fclose(f);
    write_file(dir, "vocab.json", buf, n);
    free(buf);
}

static void test_tokenizer_file_errors(void **state) {
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/tok", root);
    mkdir(dir, 0755);
    expect_tok(dir, GPT2C_ERR_NOT_FOUND, "no tokenizer found", NULL);
    copy_vocab(dir);
    write_str(dir, "merges.txt", "#version: 0.2\n\xc4\xa0 t\nzzzq qqqx\n");
    expect_tok(dir, GPT2C_ERR_FORMAT, "merges.txt: merge 3", "vocab and merges do not match");
    write_str(dir, "merges.txt", "#version: 0.2\n\xc4\xa0 t\nonlyone\n");
    expect_tok(dir, GPT2C_ERR_FORMAT, "merges.txt: line 3", "two tokens");
    write_str(dir, "merges.txt", "#version: 0.2\n\xff\xfe\n");
    expect_tok(dir, GPT2C_ERR_FORMAT, "merges.txt", "UTF-8");
    write_str(dir, "vocab.json", "{\"a\": 0");
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "invalid JSON");
    write_str(dir, "vocab.json", "{\"a\": 0, \"b\": 1}");
    write_str(dir, "merges.txt", "#version: 0.2\n");
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "no token for byte 0x00");
    write_str(dir, "vocab.json", "{\"a\": 0, \"b\": 0}");
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "id 0 is given to two tokens");
    write_str(dir, "vocab.json", "{\"a\": -5}");
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "token 'a'");
    write_str(dir, "vocab.json", "{\"\xe4\xb8\xad\": 0}"); /* outside the byte alphabet */
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "byte alphabet");
    write_str(dir, "vocab.json", "{\"\": 1}"); /* an empty token: once a crash in the vocab scanner */
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "no token for byte");
    write_str(dir, "vocab.json", "{}");
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "empty");
    /* tokenizer.json */
    char tj[160];
    snprintf(tj, sizeof tj, "%s/tj", root);
    mkdir(tj, 0755);
    write_str(tj, "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\"}}");
    expect_tok(tj, GPT2C_ERR_UNSUPPORTED, "tokenizer.json", "model.type");
    write_str(tj, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": 3}}");
    expect_tok(tj, GPT2C_ERR_FORMAT, "tokenizer.json", "model.merges");
}

/* Resource limits: inputs that would make gpt2c allocate blindly are refused
 * with a message, not followed. */
static void test_resource_limits(void **state) {
    (void)state;
    char dir[160];
    snprintf(dir, sizeof dir, "%s/limits", root);
    mkdir(dir, 0755);
    write_str(dir, "merges.txt", "#version: 0.2\n");
    /* A vocabulary of 3 million entries (about 30 MB): past the 2^21 ids a
     * vocabulary may have (ids are unique, so the count is bounded too), refused
     * while it is read. */
    char path[256];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputc('{', f);
    for (int i = 0; i < 3000000; i++) fprintf(f, "%s\"t%d\": %d", i ? "," : "", i, i);
    fputs("}", f);
    fclose(f);
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "not an integer in [0, 2097152)");
    /* A 10-million-entry vocabulary's size (300 MB, sparse here) is refused
     * before a byte of it is read. */
    assert_int_equal(truncate(path, 300l << 20), 0);
    expect_tok(dir, GPT2C_ERR_FORMAT, "vocab.json", "limit");
    unlink(path);
    /* The real vocabulary's longest token bounds how few tokens a text can
     * be, which lets callers refuse megabyte prompts before tokenizing. */
    gpt2c_tokenizer *t;
    assert_int_equal(gpt2c_tokenizer_load(TOKENIZER_DIR, &t), GPT2C_OK);
    size_t most = gpt2c_tokenizer_max_token_bytes(t);
    assert_true(most >= 13 && most <= 256); /* "<|endoftext|>" is 13 bytes */
    gpt2c_tokenizer_free(t);
}

static void test_generation_errors(void **state) {
    (void)state;
    const char *dir = fresh("gen");
    gpt2c_model *m;
    assert_int_equal(gpt2c_model_load(dir, &m), GPT2C_OK);
    gpt2c_gen_params gp;
    gpt2c_gen_params_init(&gp);
    gpt2c_gen *g;
    int32_t ids[16] = {0};
    const int32_t *p[1] = {ids};
    int n = 9; /* the context is 8 */
    assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_ERR_CONTEXT);
    assert_non_null(strstr(gpt2c_gen_errmsg(g), "9 tokens, more than the model's context of 8"));
    gpt2c_gen_free(g);
    n = 0;
    assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_ERR_INVALID);
    assert_non_null(strstr(gpt2c_gen_errmsg(g), "empty"));
    gpt2c_gen_free(g);
    n = 2;
    ids[1] = V;
    assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_ERR_INVALID);
    assert_non_null(strstr(gpt2c_gen_errmsg(g), "outside the vocabulary"));
    gpt2c_gen_free(g);
    ids[1] = 1;
    gp.repetition_penalty = 0;
    assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_ERR_INVALID);
    assert_non_null(strstr(gpt2c_gen_errmsg(g), "repetition_penalty"));
    gpt2c_gen_free(g);
    gpt2c_gen_params_init(&gp);
    gp.n_logprobs = 21;
    assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_ERR_INVALID);
    assert_non_null(strstr(gpt2c_gen_errmsg(g), "logprobs"));
    gpt2c_gen_free(g);
    gpt2c_gen_params_init(&gp);
    gp.max_length = 0;
    assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_ERR_INVALID);
    assert_non_null(strstr(gpt2c_gen_errmsg(g), "max_length"));
    gpt2c_gen_free(g);
    /* Sampling and beam parameters: each refused with its name. */
    for (int c = 0; c < 8; c++) {
        gpt2c_gen_params_init(&gp);
        const char *needle = NULL;
        gpt2c_status want = GPT2C_ERR_INVALID;
        int32_t far = V + 5;
        float bias = 1.0f;
        switch (c) {
        case 0: gp.do_sample = 1, gp.temperature = 0.0f, needle = "temperature must be > 0"; break;
        case 1: gp.top_p = 0.0f, needle = "top_p must be in (0, 1]"; break;
        case 2: gp.top_p = 1.5f, needle = "top_p"; break;
        case 3: gp.top_k = -1, needle = "top_k must be >= 0"; break;
        case 4: gp.num_return_sequences = 2, needle = "needs sampling or beam search"; break;
        case 5: gp.num_beams = 2, gp.num_return_sequences = 3, needle = "must be <= num_beams"; break;
        case 6: gp.num_beams = 2, gp.do_sample = 1, want = GPT2C_ERR_UNSUPPORTED, needle = "beam sampling"; break;
        case 7: gp.logit_bias_ids = &far, gp.logit_bias = &bias, gp.n_logit_bias = 1, needle = "logit_bias: token 21"; break;
        }
        assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), want);
        if (!strstr(gpt2c_gen_errmsg(g), needle)) fail_msg("case %d: message lacks '%s': %s", c, needle, gpt2c_gen_errmsg(g));
        gpt2c_gen_free(g);
    }
    /* max_length below the prompt still yields one token, as transformers. */
    gpt2c_gen_params_init(&gp);
    gp.max_length = 1;
    assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_OK);
    while (gpt2c_gen_step(g) == GPT2C_OK) {
    }
    int got;
    gpt2c_gen_tokens(g, 0, &got);
    assert_int_equal(got, 1);
    gpt2c_gen_free(g);
    gpt2c_model_free(m);
    /* NULL paths and the out-of-memory message. */
    assert_int_equal(gpt2c_model_load(NULL, &m), GPT2C_ERR_INVALID);
    gpt2c_model_free(m);
    assert_string_equal(gpt2c_model_errmsg(NULL), "out of memory");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_control),        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_safetensors_errors),   cmocka_unit_test(test_tokenizer_file_errors),
        cmocka_unit_test(test_resource_limits), cmocka_unit_test(test_generation_errors),
    };
    return cmocka_run_group_tests_name("hostile inputs", tests, setup, teardown);
}
