/* generate.c -- the smallest complete gpt2c program: a model by hub name or
 * folder, a prompt, and greedy text streamed to stdout as it is generated.
 *
 *   cc -Iinclude examples/generate.c -Lbuild -lgpt2c -Wl,-rpath,$PWD/build -o generate
 *   ./generate gpt2 "Hello, I'm a language model," 40
 */
#include <gpt2c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT N_TOKENS\n", argv[0]);
        return 2;
    }
    const char *spec = argv[1], *prompt = argv[2];
    int rc = 1;
    char *dir = NULL;
    gpt2c_hub *hub = NULL;
    gpt2c_tokenizer *tok = NULL;
    gpt2c_model *model = NULL;
    gpt2c_gen *gen = NULL;
    gpt2c_stream *stream = NULL;
    int32_t *ids = NULL;
    int n_ids = 0;

    /* A hub name is downloaded once into the Hugging Face cache; a folder is used as it is. */
    if (gpt2c_hub_new(&hub) != GPT2C_OK ||
        gpt2c_hub_resolve(hub, spec, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &dir) != GPT2C_OK) {
        fprintf(stderr, "%s\n", gpt2c_hub_errmsg(hub));
        goto out;
    }
    if (gpt2c_tokenizer_load(dir, &tok) != GPT2C_OK) {
        fprintf(stderr, "%s\n", gpt2c_tokenizer_errmsg(tok));
        goto out;
    }
    if (gpt2c_model_load(dir, &model) != GPT2C_OK) {
        fprintf(stderr, "%s\n", gpt2c_model_errmsg(model));
        goto out;
    }
    if (gpt2c_tokenize(tok, prompt, strlen(prompt), &ids, &n_ids) != GPT2C_OK) {
        fprintf(stderr, "the prompt cannot be tokenized\n");
        goto out;
    }

    gpt2c_gen_params p;
    gpt2c_model_gen_defaults(model, GPT2C_DEFAULTS_GENERATE, &p); /* as generate() would */
    p.do_sample = 0;
    p.max_new_tokens = atoi(argv[3]);
    const int32_t *prompts[1] = {ids};
    if (gpt2c_gen_start(model, &p, 1, prompts, &n_ids, &gen) != GPT2C_OK ||
        gpt2c_stream_new(tok, ids, n_ids, 0, &stream) != GPT2C_OK) {
        fprintf(stderr, "%s\n", gen ? gpt2c_gen_errmsg(gen) : gpt2c_model_errmsg(model));
        goto out;
    }

    /* The prompt, then one token a step; the stream turns tokens into whole UTF-8 text. */
    fputs(prompt, stdout);
    int shown = 0;
    const char *piece;
    size_t len;
    gpt2c_status s;
    while ((s = gpt2c_gen_step(gen)) == GPT2C_OK || s == GPT2C_DONE) {
        int n;
        const int32_t *out = gpt2c_gen_tokens(gen, 0, &n);
        for (; shown < n; shown++)
            if (gpt2c_stream_push(stream, out[shown], &piece, &len) == GPT2C_OK) fwrite(piece, 1, len, stdout);
        fflush(stdout);
        if (s == GPT2C_DONE) break;
    }
    if (s != GPT2C_DONE) {
        fprintf(stderr, "%s\n", gpt2c_gen_errmsg(gen));
        goto out;
    }
    if (gpt2c_stream_finish(stream, &piece, &len) == GPT2C_OK) fwrite(piece, 1, len, stdout);
    putchar('\n');
    rc = 0;
out:
    gpt2c_stream_free(stream);
    gpt2c_gen_free(gen);
    gpt2c_free(ids);
    gpt2c_model_free(model);
    gpt2c_tokenizer_free(tok);
    gpt2c_free(dir);
    gpt2c_hub_free(hub);
    return rc;
}
