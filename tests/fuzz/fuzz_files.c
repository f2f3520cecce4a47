/* fuzz_files.c -- libFuzzer target for everything gpt2c reads from a
 * checkpoint folder: the input is split into config.json, vocab.json,
 * merges.txt, model.safetensors, generation_config.json and tokenizer.json
 * (by a 0xff 0x00 separator; the last two are written only when present),
 * written to a private folder, and loaded; a model that loads generates two
 * tokens with the KV cache and again without it, which must agree. Any
 * crash, leak or out-of-bounds read (the build uses ASan and UBSan) is a
 * bug; errors are fine. Run with
 *   make fuzz && build-fuzz/fuzz_files -max_total_time=600 tests/fuzz/corpus_files */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpt2c.h"

static char dir[64];

static void put(const char *name, const uint8_t *p, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static const char *names[] = {"config.json", "vocab.json", "merges.txt", "model.safetensors",
                              "generation_config.json", "tokenizer.json"};
#define N_NAMES ((int)(sizeof names / sizeof *names))

/* The folder and its files go when the run ends (each run had left one in
 * /tmp). */
static void cleanup(void) {
    char path[128];
    for (int i = 0; i < N_NAMES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/gpt2c-fuzz-XXXXXX");
        if (!mkdtemp(dir)) abort();
        atexit(cleanup);
        /* No tokenizer images: each valid input would leave one in the cache. */
        setenv("GPT2C_CACHE_DIR", "", 1);
    }
    const uint8_t *p = data, *end = data + size;
    for (int i = 0; i < N_NAMES; i++) {
        const uint8_t *q = p;
        while (q + 1 < end && !(q[0] == 0xff && q[1] == 0x00)) q++;
        if (q + 1 >= end) q = end;
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (i < 4 || q > p) put(names[i], p, (size_t)(q - p));
        else unlink(path); /* optional files: absent unless given */
        p = q < end ? q + 2 : end;
    }
    gpt2c_model *m;
    if (gpt2c_model_load(dir, &m) == GPT2C_OK) {
        int32_t ids[3] = {0, 1, 2};
        const int32_t *pr[1] = {ids};
        int n = 3;
        gpt2c_gen_params gp;
        gpt2c_gen_params_init(&gp);
        gp.max_new_tokens = 2;
        gp.n_threads = 1;
        /* Differential: the KV cache against recomputing every step gives
         * the same tokens, whatever the weights (the kernels sum in a fixed
         * order, so even NaNs come out alike). */
        gpt2c_gen *g, *g2;
        gpt2c_status s1 = gpt2c_gen_start(m, &gp, 1, pr, &n, &g);
        gp.use_cache = 0;
        gpt2c_status s2 = gpt2c_gen_start(m, &gp, 1, pr, &n, &g2);
        if (s1 != s2) abort();
        if (s1 == GPT2C_OK) {
            while (gpt2c_gen_step(g) == GPT2C_OK) {
            }
            while (gpt2c_gen_step(g2) == GPT2C_OK) {
            }
            int n1, n2;
            const int32_t *t1 = gpt2c_gen_tokens(g, 0, &n1), *t2 = gpt2c_gen_tokens(g2, 0, &n2);
            if (gpt2c_gen_status(g) != gpt2c_gen_status(g2) || n1 != n2 || (n1 && memcmp(t1, t2, sizeof *t1 * (size_t)n1)))
                abort();
        }
        gpt2c_gen_free(g);
        gpt2c_gen_free(g2);
    }
    gpt2c_model_free(m);
    gpt2c_tokenizer *t;
    if (gpt2c_tokenizer_load(dir, &t) == GPT2C_OK) {
        int32_t *ids;
        int n;
        if (gpt2c_tokenize(t, (const char *)data, size < 256 ? size : 256, &ids, &n) == GPT2C_OK) gpt2c_free(ids);
    }
    gpt2c_tokenizer_free(t);
    t = NULL;
    /* tokenizer.json on its own (a path to the file). */
    char tj[128];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    if (access(tj, F_OK) == 0 && gpt2c_tokenizer_load(tj, &t) == GPT2C_OK) {
        int32_t *ids;
        int n;
        if (gpt2c_tokenize(t, (const char *)data, size < 256 ? size : 256, &ids, &n) == GPT2C_OK) gpt2c_free(ids);
    }
    gpt2c_tokenizer_free(t);
    return 0;
}
