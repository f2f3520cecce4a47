/* api.c -- the OpenAI Completions request: parsing and checking a
 * /v1/completions body into generation parameters, with OpenAI's error
 * shape. The fields and their defaults follow OpenAI's legacy Completions
 * API; top_k, repetition_penalty, typical_p, min_tokens and ignore_eos are the
 * extensions users of transformers expect. Unknown fields are ignored (as
 * llama.cpp and vLLM do), known fields of the wrong type are refused. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static int utf8_seq(const unsigned char *s) {
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
          : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0; /* overlong, surrogate */
    if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return n;
}

/* OpenAI's error type for a status. */
static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

json_t *api_error_json(const api_error *e) {
    /* Messages quote the request (a parser's complaint, a model name cut to
     * a length) and so may hold invalid UTF-8, which JSON cannot carry:
     * such bytes become '?'. */
    char msg[sizeof e->message];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)e->message; *p && n + 1 < sizeof msg;) {
        int k = utf8_seq(p);
        if (k == 0) {
            msg[n++] = '?';
            p++;
            continue;
        }
        if (n + (size_t)k >= sizeof msg) break; /* no room for the whole character */
        for (int i = 0; i < k; i++) msg[n++] = (char)*p++;
    }
    msg[n] = 0;
    return json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", msg, "type", error_type(e->status), "param", e->param, "code",
                     e->code);
}

static int fail(api_error *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(api_error *e, int status, const char *param, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    e->status = status;
    e->param = param;
    e->code = code;
    return -1;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static int type_error(api_error *e, const char *field, const char *want, const json_t *v) {
    return fail(e, 400, field, "invalid_type", "'%s' must be %s, not %s", field, want, json_kind(v));
}

/* Optional fields: absent or null leaves *out at its default. */
static int get_number(const json_t *o, const char *f, double lo, double hi, double *out, api_error *e) {
    json_t *v = json_object_get(o, f);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return type_error(e, f, "a number", v);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return fail(e, 400, f, "invalid_value", "'%s' must be between %g and %g (got %g)", f, lo, hi, x);
    *out = x;
    return 0;
}

static int get_int(const json_t *o, const char *f, long long lo, long long hi, long long *out, api_error *e) {
    json_t *v = json_object_get(o, f);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return type_error(e, f, "an integer", v);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return fail(e, 400, f, "invalid_value", "'%s' must be between %lld and %lld (got %lld)", f, lo, hi, x);
    *out = x;
    return 0;
}

static int get_bool(const json_t *o, const char *f, int *out, api_error *e) {
    json_t *v = json_object_get(o, f);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return type_error(e, f, "a boolean", v);
    *out = json_is_true(v);
    return 0;
}

/* One prompt: a string (tokenized) or an array of token ids. */
static int add_prompt(completion_req *r, json_t *v, const gpt2c_tokenizer *t, const gpt2c_model_info *info,
                      api_error *e) {
    int i = r->n_prompts;
    int32_t *ids = NULL;
    int n = 0;
    if (json_is_string(v) && !t)
        return fail(e, 400, "prompt", "invalid_value",
                    "this model has no tokenizer files: send each prompt as an array of token ids");
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        size_t least = len / gpt2c_tokenizer_max_token_bytes(t);
        if (least > (size_t)info->n_ctx) /* certainly too long: not worth tokenizing */
            return fail(e, 400, "prompt", "context_length_exceeded",
                        "This model's maximum context length is %d tokens; prompt %d is %zu bytes, at least %zu tokens",
                        info->n_ctx, i, len, least);
        gpt2c_status st = gpt2c_tokenize((gpt2c_tokenizer *)t, s, len, &ids, &n);
        if (st) return fail(e, st == GPT2C_ERR_NOMEM ? 500 : 400, "prompt", NULL, "prompt %d: %s", i, gpt2c_status_string(st));
        r->prompt_text[i] = malloc(len + 1);
        if (r->prompt_text[i]) memcpy(r->prompt_text[i], s, len + 1);
    } else if (json_is_array(v)) {
        size_t k = json_array_size(v);
        ids = malloc((k + 1) * sizeof *ids);
        if (!ids) return fail(e, 500, NULL, NULL, "out of memory");
        for (size_t j = 0; j < k; j++) {
            json_t *x = json_array_get(v, j);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= info->n_vocab) {
                free(ids);
                return fail(e, 400, "prompt", "invalid_value", "prompt %d: element %zu is not a token id in 0..%d", i, j,
                            info->n_vocab - 1);
            }
            ids[j] = (int32_t)json_integer_value(x);
        }
        n = (int)k;
        size_t tl = 0;
        if (n && t && gpt2c_detokenize(t, ids, n, 0, &r->prompt_text[i], &tl) != GPT2C_OK) r->prompt_text[i] = NULL;
    } else {
        return type_error(e, "prompt", "a string, an array of strings, or token ids", v);
    }
    if (!r->prompt_text[i]) r->prompt_text[i] = calloc(1, 1);
    /* A model needs at least one token: an empty prompt starts from its bos
     * token (GPT-2's <|endoftext|>, the token it saw between documents). */
    if (n == 0) {
        int32_t *one = realloc(ids, sizeof *ids);
        if (!one) {
            free(ids);
            return fail(e, 500, NULL, NULL, "out of memory");
        }
        ids = one;
        ids[0] = info->start_token_id >= 0 ? info->start_token_id : 0;
        n = 1;
    }
    r->prompts[i] = ids;
    r->prompt_lens[i] = n;
    r->n_prompts++;
    return r->prompt_text[i] ? 0 : fail(e, 500, NULL, NULL, "out of memory");
}

/* Fill-in-the-middle markers, in StarCoder's and in SantaCoder's spelling.
 * A model whose tokenizer has all three as tokens of their own was trained
 * to fill in: given prefix, then suffix, it writes the middle. */
static const char *const FIM[][3] = {{"<fim_prefix>", "<fim_suffix>", "<fim_middle>"},
                                     {"<fim-prefix>", "<fim-suffix>", "<fim-middle>"}};

/* The markers this tokenizer has (each text encodes to one id), or NULL. */
static const char *const *fim_markers(const gpt2c_tokenizer *t) {
    for (size_t f = 0; t && f < sizeof FIM / sizeof *FIM; f++) {
        int whole = 1;
        for (int i = 0; i < 3 && whole; i++) {
            int32_t *ids = NULL;
            int n = 0;
            whole = gpt2c_tokenize((gpt2c_tokenizer *)t, FIM[f][i], strlen(FIM[f][i]), &ids, &n) == GPT2C_OK && n == 1;
            gpt2c_free(ids);
        }
        if (whole) return FIM[f];
    }
    return NULL;
}

/* The fill-in-the-middle prompt of a prompt string and the suffix, in the
 * prefix-suffix-middle order StarCoder and SantaCoder were trained on:
 * <fim_prefix>prompt<fim_suffix>suffix<fim_middle>, which the tokenizer
 * splits at the markers. */
static json_t *fim_prompt(const char *const *fim, json_t *prompt, json_t *suffix) {
    strbuf b = {0};
    json_t *v = NULL;
    if (!sb_add(&b, fim[0], strlen(fim[0])) && !sb_add(&b, json_string_value(prompt), json_string_length(prompt)) &&
        !sb_add(&b, fim[1], strlen(fim[1])) && !sb_add(&b, json_string_value(suffix), json_string_length(suffix)) &&
        !sb_add(&b, fim[2], strlen(fim[2])))
        v = json_stringn_nocheck(b.p, b.n);
    sb_free(&b);
    return v;
}

/* The request's prompts; with a suffix (fim: the model's markers), each
 * string prompt becomes its fill-in-the-middle prompt. */
static int parse_prompts(completion_req *r, json_t *v, const gpt2c_tokenizer *t, const gpt2c_model_info *info,
                         const char *const *fim, json_t *suffix, api_error *e) {
    size_t np = 1;
    /* An array is either one prompt of token ids or a list of prompts. */
    int list = json_is_array(v) && json_array_size(v) > 0 &&
               (json_is_string(json_array_get(v, 0)) || json_is_array(json_array_get(v, 0)));
    if (json_is_array(v) && json_array_size(v) == 0)
        return fail(e, 400, "prompt", "invalid_value", "'prompt' is an empty array");
    if (list) np = json_array_size(v);
    if (np > 64) return fail(e, 400, "prompt", "invalid_value", "at most 64 prompts per request (got %zu)", np);
    r->prompts = calloc(np, sizeof *r->prompts);
    r->prompt_lens = calloc(np, sizeof *r->prompt_lens);
    r->prompt_text = calloc(np + 1, sizeof *r->prompt_text); /* + 1: see api_req_free */
    if (!r->prompts || !r->prompt_lens || !r->prompt_text) return fail(e, 500, NULL, NULL, "out of memory");
    for (size_t i = 0; i < np; i++) {
        json_t *p = list ? json_array_get(v, i) : v;
        if (list && json_is_array(json_array_get(v, 0)) != json_is_array(p))
            return fail(e, 400, "prompt", "invalid_type", "'prompt' mixes strings and token arrays");
        if (!fim) {
            if (add_prompt(r, p, t, info, e)) return -1;
            continue;
        }
        if (!json_is_string(p))
            return fail(e, 400, "prompt", "invalid_type", "with 'suffix', each prompt must be a string");
        json_t *w = fim_prompt(fim, p, suffix);
        if (!w) return fail(e, 500, NULL, NULL, "out of memory");
        int bad = add_prompt(r, w, t, info, e);
        json_decref(w);
        if (bad) return -1;
    }
    return 0;
}

static int parse_stops(completion_req *r, json_t *v, api_error *e) {
    if (!v || json_is_null(v)) return 0;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_string(v) && !json_is_array(v)) return type_error(e, "stop", "a string or an array of strings", v);
    if (n > 4) return fail(e, 400, "stop", "invalid_value", "'stop' takes at most 4 strings (got %zu)", n);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s)) return type_error(e, "stop", "a string or an array of strings", s);
        if (json_string_length(s) == 0) continue; /* an empty stop string would stop everything: ignored */
        if (json_string_length(s) > 1024) return fail(e, 400, "stop", "invalid_value", "a stop string is over 1024 bytes");
        if (strlen(json_string_value(s)) != json_string_length(s))
            return fail(e, 400, "stop", "invalid_value", "a stop string contains U+0000, which gpt2c does not match");
        r->stops[r->n_stops] = strdup(json_string_value(s));
        if (!r->stops[r->n_stops++]) return fail(e, 500, NULL, NULL, "out of memory");
    }
    return 0;
}

static int parse_bias(completion_req *r, json_t *v, const gpt2c_model_info *info, api_error *e) {
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v)) return type_error(e, "logit_bias", "an object of token id -> bias", v);
    size_t n = json_object_size(v), i = 0;
    if (n > 1024) return fail(e, 400, "logit_bias", "invalid_value", "'logit_bias' takes at most 1024 entries");
    r->bias_ids = malloc((n + 1) * sizeof *r->bias_ids);
    r->bias = malloc((n + 1) * sizeof *r->bias);
    if (!r->bias_ids || !r->bias) return fail(e, 500, NULL, NULL, "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id >= info->n_vocab)
            return fail(e, 400, "logit_bias", "invalid_value", "logit_bias: '%.40s' is not a token id in 0..%d", key,
                        info->n_vocab - 1);
        if (!json_is_number(val) || !(json_number_value(val) >= -100 && json_number_value(val) <= 100))
            return fail(e, 400, "logit_bias", "invalid_value", "logit_bias: the bias of %ld must be a number in -100..100", id);
        r->bias_ids[i] = (int32_t)id;
        r->bias[i++] = (float)json_number_value(val);
    }
    r->p.logit_bias_ids = r->bias_ids;
    r->p.logit_bias = r->bias;
    r->p.n_logit_bias = (int)i;
    return 0;
}

json_t *api_load_body(const char *body, size_t len, api_error *e) {
    memset(e, 0, sizeof *e);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_ALLOW_NUL, &je);
    if (!root) {
        fail(e, 400, NULL, "invalid_json", "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        type_error(e, "body", "a JSON object", root);
        json_decref(root);
        return NULL;
    }
    return root;
}

int api_body_model(const json_t *root, const char **name, api_error *e) {
    json_t *v = json_object_get(root, "model");
    *name = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return type_error(e, "model", "a string", v);
    *name = json_string_value(v);
    return 0;
}

int api_parse_completion(const json_t *root, const gpt2c_tokenizer *t, const gpt2c_model_info *info,
                         const server_opts *o, int n_slots, completion_req *r, api_error *e) {
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    int rc = -1;
    json_t *v;
    /* A suffix asks for the text between the prompt and it: models trained
     * for fill-in-the-middle do that; others only continue text. */
    json_t *suffix = json_object_get(root, "suffix");
    const char *const *fim = NULL;
    if (suffix && !json_is_null(suffix) && !json_is_string(suffix)) {
        type_error(e, "suffix", "a string", suffix);
        goto out;
    }
    if (json_is_string(suffix) && json_string_length(suffix) > 0 && !(fim = fim_markers(t))) {
        fail(e, 400, "suffix", "unsupported",
             "'suffix' needs a fill-in-the-middle model, whose tokenizer has <fim_prefix>, <fim_suffix> and "
             "<fim_middle>: this model only continues text");
        goto out;
    }
    v = json_object_get(root, "user");
    if (v && !json_is_null(v) && !json_is_string(v)) {
        type_error(e, "user", "a string", v);
        goto out;
    }
    gpt2c_gen_params_init(&r->p);
    r->p.top_k = 0; /* OpenAI samples from the whole distribution unless asked */
    double temperature = 1.0, top_p = 1.0, typical_p = 1.0, rep = 1.0, presence = 0, frequency = 0;
    long long max_tokens = 16, n = 1, logprobs = -1, seed = 0, top_k = 0, min_tokens = 0, best_of = 0;
    int has_seed = 0, ignore_eos = 0;
    v = json_object_get(root, "max_tokens");
    int max_tokens_null = v && json_is_null(v);
    json_t *so = json_object_get(root, "stream_options");
    if (get_int(root, "max_tokens", 0, 1 << 30, &max_tokens, e) || get_number(root, "temperature", 0, 2, &temperature, e) ||
        get_number(root, "top_p", 0, 1, &top_p, e) || get_int(root, "n", 1, 128, &n, e) ||
        get_bool(root, "stream", &r->stream, e) || get_bool(root, "echo", &r->echo, e) ||
        get_int(root, "logprobs", 0, 5, &logprobs, e) || get_number(root, "presence_penalty", -2, 2, &presence, e) ||
        get_number(root, "frequency_penalty", -2, 2, &frequency, e) || get_int(root, "best_of", 1, 128, &best_of, e) ||
        get_int(root, "top_k", 0, 1 << 30, &top_k, e) || get_number(root, "repetition_penalty", 1e-6, 1e6, &rep, e) ||
        get_number(root, "typical_p", 0, 1, &typical_p, e) || get_int(root, "min_tokens", 0, 1 << 30, &min_tokens, e) ||
        get_bool(root, "ignore_eos", &ignore_eos, e) || parse_stops(r, json_object_get(root, "stop"), e) ||
        parse_bias(r, json_object_get(root, "logit_bias"), info, e))
        goto out;
    v = json_object_get(root, "seed");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)) {
            type_error(e, "seed", "an integer", v);
            goto out;
        }
        seed = json_integer_value(v);
        has_seed = 1;
    }
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            type_error(e, "stream_options", "an object", so);
            goto out;
        }
        if (get_bool(so, "include_usage", &r->include_usage, e)) goto out;
    }
    if (top_p == 0 || typical_p == 0) {
        fail(e, 400, top_p == 0 ? "top_p" : "typical_p", "invalid_value", "'%s' must be greater than 0", top_p == 0 ? "top_p" : "typical_p");
        goto out;
    }
    if (best_of && best_of != n) {
        fail(e, 400, "best_of", "unsupported", "'best_of' other than n is not supported");
        goto out;
    }
    v = json_object_get(root, "prompt");
    if (!v || json_is_null(v)) {
        json_t *eos = json_string(fim ? "" : "<|endoftext|>"); /* OpenAI's default prompt; FIM: no prefix */
        int bad = parse_prompts(r, eos, t, info, fim, suffix, e);
        json_decref(eos);
        if (bad) goto out;
    } else if (parse_prompts(r, v, t, info, fim, suffix, e)) {
        goto out;
    }
    if (!t && r->n_stops) {
        fail(e, 400, "stop", "invalid_value", "this model has no tokenizer files: stop strings cannot be matched");
        goto out;
    }
    if (max_tokens > o->max_tokens_limit) {
        fail(e, 400, "max_tokens", "invalid_value", "'max_tokens' is %lld; this server allows at most %d", max_tokens,
             o->max_tokens_limit);
        goto out;
    }
    for (int i = 0; i < r->n_prompts; i++) {
        long long need = r->prompt_lens[i] + (max_tokens_null ? 0 : max_tokens);
        if (need > info->n_ctx || (max_tokens_null && r->prompt_lens[i] >= info->n_ctx)) {
            fail(e, 400, r->prompt_lens[i] >= info->n_ctx ? "prompt" : "max_tokens", "context_length_exceeded",
                 "This model's maximum context length is %d tokens, however you requested %lld tokens (%d in your "
                 "prompt; %lld for the completion). Please reduce your prompt or completion length.",
                 info->n_ctx, need, r->prompt_lens[i], max_tokens_null ? 0 : max_tokens);
            goto out;
        }
    }
    if (n * r->n_prompts > n_slots) {
        fail(e, 400, "n", "invalid_value", "%lld choices x %d prompts is more than the %d sequences this server runs at once",
             n, r->n_prompts, n_slots);
        goto out;
    }
    r->n = (int)n;
    r->logprobs = (int)logprobs;
    r->max_tokens = max_tokens_null ? info->n_ctx : (int)max_tokens;
    gpt2c_gen_params *p = &r->p;
    if (max_tokens_null) { /* as many as the context holds */
        p->max_new_tokens = -1;
        p->max_length = info->n_ctx;
    } else {
        p->max_new_tokens = (int)max_tokens;
    }
    p->do_sample = temperature > 0;
    p->temperature = p->do_sample ? (float)temperature : 1.0f;
    p->top_p = (float)top_p;
    p->top_k = (int)top_k;
    p->typical_p = (float)typical_p;
    p->repetition_penalty = (float)rep;
    p->min_new_tokens = (int)min_tokens;
    p->presence_penalty = (float)presence;
    p->frequency_penalty = (float)frequency;
    p->eos_token_id = ignore_eos ? -1 : -2;
    p->has_seed = has_seed;
    p->seed = (uint64_t)seed;
    p->n_logprobs = logprobs < 0 ? 0 : logprobs == 0 ? 1 : (int)logprobs;
    /* Greedy choices are all the same: the scheduler repeats the prompt. */
    p->num_return_sequences = p->do_sample ? (int)n : 1;
    rc = 0;
out:
    return rc;
}

void api_req_free(completion_req *r) {
    for (int i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i]);
        free(r->prompt_text[i]);
    }
    /* A prompt whose tokenization failed half way may have left its text. */
    if (r->prompt_text && r->prompt_text[r->n_prompts]) free(r->prompt_text[r->n_prompts]);
    free(r->prompts);
    free(r->prompt_lens);
    free(r->prompt_text);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->bias_ids);
    free(r->bias);
    memset(r, 0, sizeof *r);
}
