/* fuzz_request.c -- libFuzzer target for the server's request parser
 * (src/server/api.c) on arbitrary bytes, with the real GPT-2 vocabulary:
 * every body is either refused with an OpenAI error (a status, a type and a
 * message) or accepted with parameters inside every limit the server
 * promises: prompts of 1..n_ctx valid ids, n x prompts within the slots,
 * max_tokens within the ceiling and the context, at most 4 stop strings. */
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

static gpt2c_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok && gpt2c_tokenizer_load("tests/fixtures/gpt2-tokenizer", &tok) != GPT2C_OK) abort();
    const gpt2c_model_info info = {.n_vocab = 50257, .n_ctx = 64, .n_embd = 32, .n_head = 2, .n_layer = 1,
                                   .n_inner = 128, .bos_token_id = 50256, .eos_token_id = 50256, .pad_token_id = -1};
    server_opts o = {.max_tokens_limit = 48, .slots = 8};
    completion_req r = {0};
    api_error e;
    const char *model;
    json_t *root = api_load_body((const char *)data, size, &e);
    int rc = root && !api_body_model(root, &model, &e) ? api_parse_completion(root, tok, &info, &o, o.slots, &r, &e) : -1;
    json_decref(root);
    if (rc == 0) {
        if (r.n_prompts < 1 || r.n < 1 || r.n * r.n_prompts > o.slots || r.n_stops > 4) abort();
        if (r.max_tokens < 0 || r.logprobs < -1 || r.logprobs > 5) abort();
        for (int i = 0; i < r.n_prompts; i++) {
            if (r.prompt_lens[i] < 1 || r.prompt_lens[i] > info.n_ctx || !r.prompt_text[i]) abort();
            if (r.p.max_new_tokens >= 0 && r.prompt_lens[i] + r.p.max_new_tokens > info.n_ctx) abort();
            for (int j = 0; j < r.prompt_lens[i]; j++)
                if (r.prompts[i][j] < 0 || r.prompts[i][j] >= info.n_vocab) abort();
        }
        if (r.p.max_new_tokens > o.max_tokens_limit) abort();
        for (int i = 0; i < r.n_stops; i++)
            if (!r.stops[i] || !r.stops[i][0]) abort();
    } else {
        if (e.status < 400 || e.status > 599 || !e.message[0]) abort();
        json_t *j = api_error_json(&e);
        const char *type = json_string_value(json_object_get(json_object_get(j, "error"), "type"));
        char *s = j ? json_dumps(j, 0) : NULL;
        if (!s || !type || !type[0]) abort();
        free(s);
        json_decref(j);
    }
    api_req_free(&r);
    return 0;
}
