/* generate.c -- `gpt2c generate`: options with transformers' names on top
 * of the checkpoint's own defaults, streaming text, several sequences, stop
 * strings, JSON output. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char GENERATE_HELP[] =
    "usage: gpt2c generate -m DIR (-p TEXT | -f FILE | --ids N,N,...) [options]\n"
    "\n"
    "Continues the prompt with the model in DIR (config.json + model.safetensors + tokenizer files).\n"
    "An empty prompt starts from <|endoftext|>, the model's end-of-text token, as the\n"
    "text-generation pipeline, OpenAI's API and `gpt2c serve` do.\n"
    "\n"
    "Defaults are those transformers' generate() takes from this checkpoint: its own defaults (greedy,\n"
    "max_length 20, top_k 50 when sampling) overridden by generation_config.json. --pipeline takes\n"
    "those of pipeline(\"text-generation\") instead, which add config.json's task_specific_params\n"
    "(for gpt2: do_sample, max_length 50). --json shows the parameters used.\n"
    "\n"
    "input and output:\n"
    "  -m, --model DIR            checkpoint folder\n"
    "  -p, --prompt TEXT          prompt text (UTF-8)\n"
    "  -f, --prompt-file FILE     read the prompt from FILE ('-' for standard input)\n"
    "      --ids N,N,...          prompt as token ids instead of text\n"
    "      --truncate             keep the last tokens of a prompt longer than the context\n"
    "                             (room is left for the new tokens) instead of failing\n"
    "      --new-only             print only the new text (return_full_text=False)\n"
    "      --no-cleanup           clean_up_tokenization_spaces=False when decoding\n"
    "      --stop TEXT            end a sequence where TEXT appears (not included); repeatable\n"
    "      --stream / --no-stream print text as it is generated (default: on, one sequence)\n"
    "      --json                 one JSON object: parameters, per sequence text, ids, finish reason\n"
    "                             (length, eos, stop), logprobs; timings. With --stream, JSON Lines:\n"
    "                             one object per token, then the result, each on one line. When a\n"
    "                             stop string cuts the text, token_ids (and logprobs) end with the\n"
    "                             last token whose text begins before the cut: the tokens wholly\n"
    "                             after it are dropped (the last one kept may reach past the cut)\n"
    "      --logprobs N           the top-N log-probabilities at each new position (0..20)\n"
    "  -v, --verbose              print timings to standard error\n"
    "\n"
    "generation (transformers' names):\n"
    "  -n, --max-new-tokens N     new tokens (takes precedence over --max-length); 0: none\n"
    "      --max-length N         total length, prompt included (transformers' default: 20); a\n"
    "                             prompt that long still gets one new token, with a warning\n"
    "      --min-length N         no EOS before this total length\n"
    "      --min-new-tokens N     no EOS before this many new tokens\n"
    "      --greedy               greedy decoding (do_sample=False)\n"
    "      --do-sample            multinomial sampling (do_sample=True)\n"
    "      --temperature F        sampling temperature, > 0\n"
    "      --top-k N              keep the N most likely tokens (0 = off)\n"
    "      --top-p F              nucleus sampling, in (0, 1]\n"
    "      --typical-p F          typical sampling, in (0, 1]\n"
    "      --repetition-penalty F penalise tokens already present (1.0 = off)\n"
    "      --no-repeat-ngram-size N  never repeat an n-gram of this size\n"
    "      --suppress-tokens N,N  never generate these ids\n"
    "      --bad-words-ids 'N,N;N' never complete these id sequences (';' separates them)\n"
    "      --logit-bias ID:B,...  add B to the score of token ID (OpenAI's logit_bias)\n"
    "      --num-beams N          beam search with N beams\n"
    "      --length-penalty F     beam score = log-probability / length^F\n"
    "      --early-stopping       beam search ends once N hypotheses are complete\n"
    "      --num-return-sequences N  sequences per prompt (sampling or beam search)\n"
    "      --seed N               seed for sampling; same seed and parameters, same text\n"
    "                             (without it, every run differs)\n"
    "      --eos-id N             end-of-sequence token (default: the model's; -1: none)\n"
    "      --no-cache             recompute the whole sequence each step (same tokens, slower)\n"
    "      --threads N            threads (default: one per physical core; same tokens for any N)\n"
    "      --dtype T              convert the weights at load: f32, f16, bf16, or q8 (8-bit, blocks\n"
    "                             of 32 with an f16 scale); default: as stored in the checkpoint\n"
    "      --compute T            the products' arithmetic: f32 (default), or bf16 (AVX512_BF16\n"
    "                             CPUs: bf16-rounded inputs and weights, f32 sums; products at up\n"
    "                             to twice the f32 rate, close to bf16 weights' tokens)\n"
    "      --kv-cache T           the KV cache in f32 (default) or f16 (half the memory)\n"
    "      --lora DIR             merge a LoRA adapter (PEFT's adapter_config.json + safetensors) at load\n"
    "      --draft MODEL          speculative decoding: MODEL (of the same tokenizer, smaller)\n"
    "                             proposes tokens that the model checks in one pass; greedy\n"
    "                             text is the same as without it, sampled text follows the\n"
    "                             same distribution\n"
    "      --draft-dtype T        the draft's dtype (f32, f16, bf16, q8); without --draft, the\n"
    "                             draft is the model itself in T (self-speculation)\n"
    "      --num-assistant-tokens N  tokens drafted at first (1..7, default 5; then adapted)\n"
    "      --pipeline             pipeline(\"text-generation\") defaults instead of generate()'s\n"
    "  -h, --help                 this help\n"
    "\n"
    "Sampling draws from a documented PRNG (xoshiro256**, one stream per returned sequence), not\n"
    "torch's, so seeded text differs from transformers' while following the same distribution.\n"
    "Generation also stops at the model's context end (finish reason \"length\").\n"
    "\n"
    "Exit codes: 0 success; 1 a file, folder, download or model that cannot be used, or a failure\n"
    "while running; 2 a usage error: bad options or values, parameters that do not go together\n"
    "(--num-beams with --logprobs), a prompt the model cannot take (longer than its context\n"
    "without --truncate, not UTF-8, ids outside the vocabulary).\n";

/* ------------------------------------------------------------- generate */

#define MAX_STOPS 16
#define MAX_LIST 1024

typedef struct gen_opts {
    const char *model, *prompt, *prompt_file, *ids, *dtype, *compute, *kv_cache, *draft, *draft_dtype, *lora;
    gpt2c_gen_params p;
    gpt2c_defaults defaults;
    int json, verbose, new_only, truncate, stream;
    unsigned flags;
    const char *stops[MAX_STOPS];
    int n_stops;
    /* Storage for the list options the params point into. */
    int32_t suppress[MAX_LIST], bias_ids[MAX_LIST], bad_flat[MAX_LIST];
    float bias[MAX_LIST];
    const int32_t *bad[MAX_LIST];
    int bad_lens[MAX_LIST];
} gen_opts;

enum {
    O_MAXLEN = 256, O_MINLEN, O_MINNEW, O_GREEDY, O_SAMPLE, O_TEMP, O_TOPK, O_TOPP, O_TYPICAL, O_REP, O_NGRAM,
    O_SUPPRESS, O_BADWORDS, O_BIAS, O_BEAMS, O_LENPEN, O_EARLY, O_NRET, O_SEED, O_EOS, O_NOCACHE, O_PIPELINE,
    O_TRUNC, O_LOGPROBS, O_NEWONLY, O_NOCLEAN, O_JSON, O_IDS, O_STOP, O_STREAM, O_NOSTREAM, O_THREADS, O_DTYPE, O_COMPUTE, O_KV,
    O_DRAFT, O_DRAFT_DTYPE, O_NASSIST, O_LORA
};

static const struct option GEN_OPTIONS[] = {
    {"model", required_argument, 0, 'm'},          {"prompt", required_argument, 0, 'p'},
    {"prompt-file", required_argument, 0, 'f'},    {"ids", required_argument, 0, O_IDS},
    {"max-new-tokens", required_argument, 0, 'n'}, {"max-length", required_argument, 0, O_MAXLEN},
    {"min-length", required_argument, 0, O_MINLEN}, {"min-new-tokens", required_argument, 0, O_MINNEW},
    {"greedy", no_argument, 0, O_GREEDY},          {"do-sample", no_argument, 0, O_SAMPLE},
    {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
    {"top-p", required_argument, 0, O_TOPP},       {"typical-p", required_argument, 0, O_TYPICAL},
    {"repetition-penalty", required_argument, 0, O_REP}, {"no-repeat-ngram-size", required_argument, 0, O_NGRAM},
    {"suppress-tokens", required_argument, 0, O_SUPPRESS}, {"bad-words-ids", required_argument, 0, O_BADWORDS},
    {"logit-bias", required_argument, 0, O_BIAS},  {"num-beams", required_argument, 0, O_BEAMS},
    {"length-penalty", required_argument, 0, O_LENPEN}, {"early-stopping", no_argument, 0, O_EARLY},
    {"num-return-sequences", required_argument, 0, O_NRET}, {"seed", required_argument, 0, O_SEED},
    {"eos-id", required_argument, 0, O_EOS},       {"no-cache", no_argument, 0, O_NOCACHE},
    {"pipeline", no_argument, 0, O_PIPELINE},      {"truncate", no_argument, 0, O_TRUNC},
    {"logprobs", required_argument, 0, O_LOGPROBS}, {"new-only", no_argument, 0, O_NEWONLY},
    {"no-cleanup", no_argument, 0, O_NOCLEAN},     {"json", no_argument, 0, O_JSON},
    {"stop", required_argument, 0, O_STOP},        {"stream", no_argument, 0, O_STREAM},
    {"no-stream", no_argument, 0, O_NOSTREAM},     {"verbose", no_argument, 0, 'v'},
    {"threads", required_argument, 0, O_THREADS},  {"dtype", required_argument, 0, O_DTYPE},
    {"kv-cache", required_argument, 0, O_KV},      {"draft", required_argument, 0, O_DRAFT},
    {"compute", required_argument, 0, O_COMPUTE},
    {"draft-dtype", required_argument, 0, O_DRAFT_DTYPE}, {"num-assistant-tokens", required_argument, 0, O_NASSIST},
    {"lora", required_argument, 0, O_LORA},        {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

/* "1,2,3" into at most MAX_LIST ids; -1 if malformed. */
static int parse_id_list(const char *s, int32_t *out, int max) {
    int32_t *ids;
    int n;
    if (parse_ids(s, &ids, &n) || n > max) {
        free(ids);
        return -1;
    }
    memcpy(out, ids, (size_t)n * sizeof *ids);
    free(ids);
    return n;
}

/* Applies one option to o. Returns -1 when handled, 0 for --help, or an exit
 * code for a usage error. Numbers are checked for form here; ranges that
 * depend on each other are the library's to check. */
static int apply_option(gen_opts *o, int c, const char *arg, char **argv) {
    gpt2c_gen_params *p = &o->p;
    switch (c) {
    case 'm': o->model = arg; break;
    case 'p': o->prompt = arg; break;
    case 'f': o->prompt_file = arg; break;
    case O_IDS: o->ids = arg; break;
    case 'n':
        if (parse_int(arg, 0, 1 << 20, &p->max_new_tokens)) return usage_error("--max-new-tokens: '%s' is not an integer in 0..1048576", arg);
        break;
    case O_MAXLEN:
        if (parse_int(arg, 1, 1 << 20, &p->max_length)) return usage_error("--max-length: '%s' is not an integer in 1..1048576", arg);
        break;
    case O_MINLEN:
        if (parse_int(arg, 0, 1 << 20, &p->min_length)) return usage_error("--min-length: '%s' is not an integer >= 0", arg);
        break;
    case O_MINNEW:
        if (parse_int(arg, 0, 1 << 20, &p->min_new_tokens)) return usage_error("--min-new-tokens: '%s' is not an integer >= 0", arg);
        break;
    case O_GREEDY: p->do_sample = 0; break;
    case O_SAMPLE: p->do_sample = 1; break;
    case O_TEMP:
        if (parse_float(arg, &p->temperature) || !(p->temperature > 0)) return usage_error("--temperature: '%s' is not a number > 0", arg);
        break;
    case O_TOPK:
        if (parse_int(arg, 0, INT32_MAX, &p->top_k)) return usage_error("--top-k: '%s' is not an integer >= 0", arg);
        break;
    case O_TOPP:
        if (parse_float(arg, &p->top_p) || !(p->top_p > 0 && p->top_p <= 1)) return usage_error("--top-p: '%s' is not a number in (0, 1]", arg);
        break;
    case O_TYPICAL:
        if (parse_float(arg, &p->typical_p) || !(p->typical_p > 0 && p->typical_p <= 1)) return usage_error("--typical-p: '%s' is not a number in (0, 1]", arg);
        break;
    case O_REP:
        if (parse_float(arg, &p->repetition_penalty) || !(p->repetition_penalty > 0)) return usage_error("--repetition-penalty: '%s' is not a number > 0", arg);
        break;
    case O_NGRAM:
        if (parse_int(arg, 0, 1 << 20, &p->no_repeat_ngram_size)) return usage_error("--no-repeat-ngram-size: '%s' is not an integer >= 0", arg);
        break;
    case O_SUPPRESS:
        if ((p->n_suppress_tokens = parse_id_list(arg, o->suppress, MAX_LIST)) < 0) return usage_error("--suppress-tokens: '%s' is not a list of ids", arg);
        p->suppress_tokens = o->suppress;
        break;
    case O_BADWORDS: {
        int used = 0, nw = 0;
        const char *w = arg;
        while (*w && nw < MAX_LIST) {
            const char *end = strchr(w, ';');
            size_t len = end ? (size_t)(end - w) : strlen(w);
            char buf[4096];
            if (len >= sizeof buf) return usage_error("--bad-words-ids: '%s' is too long", arg);
            memcpy(buf, w, len);
            buf[len] = '\0';
            int n = parse_id_list(buf, o->bad_flat + used, MAX_LIST - used);
            if (n <= 0) return usage_error("--bad-words-ids: '%s' is not ';'-separated lists of ids", arg);
            o->bad[nw] = o->bad_flat + used;
            o->bad_lens[nw++] = n;
            used += n;
            w = end ? end + 1 : w + len;
        }
        p->bad_words_ids = o->bad;
        p->bad_words_lens = o->bad_lens;
        p->n_bad_words = nw;
        break;
    }
    case O_BIAS: {
        int n = 0;
        const char *q = arg;
        while (*q && n < MAX_LIST) {
            char *end;
            long id = strtol(q, &end, 10);
            if (end == q || *end != ':' || id < 0 || id > INT32_MAX) return usage_error("--logit-bias: '%s' is not ID:BIAS,...", arg);
            q = end + 1;
            float b = strtof(q, &end);
            if (end == q || (*end && *end != ',')) return usage_error("--logit-bias: '%s' is not ID:BIAS,...", arg);
            o->bias_ids[n] = (int32_t)id;
            o->bias[n++] = b;
            q = *end ? end + 1 : end;
        }
        p->logit_bias_ids = o->bias_ids;
        p->logit_bias = o->bias;
        p->n_logit_bias = n;
        break;
    }
    case O_BEAMS:
        if (parse_int(arg, 1, 256, &p->num_beams)) return usage_error("--num-beams: '%s' is not an integer in 1..256", arg);
        break;
    case O_LENPEN:
        if (parse_float(arg, &p->length_penalty)) return usage_error("--length-penalty: '%s' is not a number", arg);
        break;
    case O_EARLY: p->early_stopping = 1; break;
    case O_NRET:
        if (parse_int(arg, 1, 256, &p->num_return_sequences)) return usage_error("--num-return-sequences: '%s' is not an integer in 1..256", arg);
        break;
    case O_SEED: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-') return usage_error("--seed: '%s' is not a non-negative integer", arg);
        p->seed = v;
        p->has_seed = 1;
        break;
    }
    case O_EOS:
        if (parse_int(arg, -1, INT32_MAX, &p->eos_token_id)) return usage_error("--eos-id: '%s' is not a token id or -1", arg);
        break;
    case O_NOCACHE: p->use_cache = 0; break;
    case O_THREADS:
        if (parse_int(arg, 0, 1024, &p->n_threads)) return usage_error("--threads: '%s' is not an integer in 0..1024", arg);
        break;
    case O_DTYPE:
        if (check_dtype(arg)) return EXIT_USAGE;
        o->dtype = arg;
        break;
    case O_COMPUTE:
        if (check_compute(arg)) return EXIT_USAGE;
        o->compute = arg;
        break;
    case O_DRAFT: o->draft = arg; break;
    case O_DRAFT_DTYPE:
        if (check_dtype(arg)) return EXIT_USAGE;
        o->draft_dtype = arg;
        break;
    case O_NASSIST:
        if (parse_int(arg, 1, 7, &p->num_assistant_tokens)) return usage_error("--num-assistant-tokens: '%s' is not an integer in 1..7", arg);
        break;
    case O_LORA: o->lora = arg; break;
    case O_KV:
        if (strcmp(arg, "f32") && strcmp(arg, "f16")) return usage_error("--kv-cache: '%s' is not one of f32, f16", arg);
        o->kv_cache = arg;
        break;
    case O_PIPELINE: o->defaults = GPT2C_DEFAULTS_PIPELINE; break;
    case O_TRUNC: o->truncate = 1; break;
    case O_LOGPROBS:
        if (parse_int(arg, 0, 20, &p->n_logprobs)) return usage_error("--logprobs: '%s' is not an integer in 0..20", arg);
        break;
    case O_NEWONLY: o->new_only = 1; break;
    case O_NOCLEAN: o->flags |= GPT2C_DECODE_NO_CLEANUP; break;
    case O_JSON: o->json = 1; break;
    case O_STOP:
        if (!arg[0]) return usage_error("%s", "--stop: the stop string is empty");
        if (o->n_stops == MAX_STOPS) return usage_error("--stop: at most %s stop strings", "16");
        o->stops[o->n_stops++] = arg;
        break;
    case O_STREAM: o->stream = 1; break;
    case O_NOSTREAM: o->stream = 0; break;
    case 'v': o->verbose = 1; break;
    case 'h': fputs(GENERATE_HELP, stdout); return 0;
    default: return option_error(c, argv, GEN_OPTIONS);
    }
    return -1;
}

static const char *finish_name(gpt2c_finish f) {
    return f == GPT2C_FINISH_EOS ? "eos" : f == GPT2C_FINISH_LENGTH ? "length" : f == GPT2C_FINISH_STOP ? "stop" : "none";
}

/* The log-probabilities of sequence seq's first n tokens (those it keeps). */
static json_t *logprobs_json(const gpt2c_gen *g, const gpt2c_tokenizer *t, int seq, int n, int k) {
    json_t *arr = json_array();
    int all;
    const int32_t *ids = gpt2c_gen_tokens(g, seq, &all);
    for (int j = 0; j < n && j < all; j++) {
        float chosen, lps[20];
        int32_t top[20];
        if (gpt2c_gen_logprobs(g, seq, j, &chosen, top, lps) < 0) break;
        json_t *tops = json_array();
        for (int i = 0; i < k; i++)
            json_array_append_new(tops, json_pack("{s:i,s:o,s:f}", "id", (int)top[i], "token",
                                                  token_text_json(t, top[i]), "logprob", (double)lps[i]));
        json_array_append_new(arr, json_pack("{s:i,s:o,s:f,s:o}", "id", (int)ids[j], "token",
                                             token_text_json(t, ids[j]), "logprob", (double)chosen, "top", tops));
    }
    return arr;
}

static void print_logprobs(const gpt2c_gen *g, const gpt2c_tokenizer *t, int seq, int n, int k) {
    json_t *arr = logprobs_json(g, t, seq, n, k);
    printf("--- logprobs (top %d per position) ---\n", k);
    size_t j;
    json_t *e;
    json_array_foreach(arr, j, e) {
        char *tok = json_dumps(json_object_get(e, "token"), JSON_ENCODE_ANY);
        printf("%3zu %6d %-18s %9.4f |", j, (int)json_integer_value(json_object_get(e, "id")), tok ? tok : "?",
               json_real_value(json_object_get(e, "logprob")));
        free(tok);
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(e, "top"), i, a) {
            char *at = json_dumps(json_object_get(a, "token"), JSON_ENCODE_ANY);
            printf(" %s %.4f", at ? at : "?", json_real_value(json_object_get(a, "logprob")));
            free(at);
        }
        printf("\n");
    }
    json_decref(arr);
}

static json_t *params_json(const gpt2c_gen_params *p, gpt2c_defaults d) {
    json_t *j = json_pack("{s:s,s:b,s:f,s:i,s:f,s:f,s:f,s:i,s:i,s:f,s:b,s:i,s:i,s:i,s:i,s:b}", "defaults",
                          d == GPT2C_DEFAULTS_PIPELINE ? "pipeline" : "generate", "do_sample", p->do_sample,
                          "temperature", (double)p->temperature, "top_k", p->top_k, "top_p", (double)p->top_p,
                          "typical_p", (double)p->typical_p, "repetition_penalty", (double)p->repetition_penalty,
                          "no_repeat_ngram_size", p->no_repeat_ngram_size, "num_beams", p->num_beams,
                          "length_penalty", (double)p->length_penalty, "early_stopping", p->early_stopping,
                          "num_return_sequences", p->num_return_sequences, "max_length", p->max_length,
                          "min_length", p->min_length, "min_new_tokens", p->min_new_tokens, "use_cache", p->use_cache);
    json_object_set_new(j, "max_new_tokens", p->max_new_tokens >= 0 ? json_integer(p->max_new_tokens) : json_null());
    json_object_set_new(j, "seed", p->has_seed ? json_integer((json_int_t)p->seed) : json_null());
    return j;
}

/* Text collected per sequence. */
typedef struct seq_out {
    gpt2c_stream *st;
    char *text;
    size_t len, cap;
    int pushed; /* tokens fed to the stream */
} seq_out;

static int out_append(seq_out *s, const char *piece, size_t len) {
    if (s->len + len + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 256;
        while (s->len + len + 1 > nc) nc *= 2;
        char *t = realloc(s->text, nc);
        if (!t) return -1;
        s->text = t;
        s->cap = nc;
    }
    memcpy(s->text + s->len, piece, len);
    s->len += len;
    s->text[s->len] = '\0';
    return 0;
}

/* Feeds sequence i's new tokens to its stream; prints what settles when
 * streaming; ends the sequence at a stop string. */
static int feed(gpt2c_gen *g, seq_out *o, int i, const gen_opts *opt, int live) {
    int n;
    const int32_t *ids = gpt2c_gen_tokens(g, i, &n);
    for (; o->pushed < n; o->pushed++) {
        const char *piece;
        size_t len;
        if (!o->st) { /* no tokenizer: ids only */
            if (live && opt->stream && opt->json) {
                printf("{\"index\":%d,\"token_id\":%d}\n", i, (int)ids[o->pushed]);
                fflush(stdout);
            }
            continue;
        }
        if (gpt2c_stream_push(o->st, ids[o->pushed], &piece, &len) != GPT2C_OK || out_append(o, piece, len)) return -1;
        if (live && opt->stream) {
            if (opt->json) {
                json_t *ev = json_pack("{s:i,s:i,s:s#}", "index", i, "token_id", (int)ids[o->pushed], "text", piece, (int)len);
                char *s = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
                printf("%s\n", s ? s : "{}");
                free(s);
                json_decref(ev);
            } else {
                fwrite(piece, 1, len, stdout);
            }
            fflush(stdout);
        }
        if (live && gpt2c_stream_stopped(o->st)) {
            gpt2c_gen_finish(g, i);
            break;
        }
    }
    return 0;
}

/* Bytes of the first `chars` code points of UTF-8 text (as decoded: valid). */
static size_t utf8_prefix(const char *s, size_t len, size_t chars) {
    size_t i = 0;
    for (; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80 && chars-- == 0) break;
    return i;
}

/* How many of a sequence's n new tokens to report when a stop string cut its
 * text to kept[0..kept_len): the fewest whose new text (as the stream
 * computes it: decode(prompt + tokens) after the characters of the decoded
 * prompt, prompt_text[0..prompt_len)) already holds all the kept text. The
 * tokens after those lie wholly after the cut; the last one kept may reach
 * past it. */
static int tokens_before_cut(const gpt2c_tokenizer *tok, const int32_t *prompt, int n_prompt, const char *prompt_text,
                             size_t prompt_len, const int32_t *new_ids, int n, unsigned flags, const char *kept,
                             size_t kept_len) {
    int32_t *all = malloc((size_t)(n_prompt + n) * sizeof *all);
    if (!all) return n; /* out of memory: keep them all */
    size_t prompt_chars = 0;
    for (size_t i = 0; i < prompt_len; i++) prompt_chars += ((unsigned char)prompt_text[i] & 0xc0) != 0x80;
    memcpy(all, prompt, (size_t)n_prompt * sizeof *all);
    memcpy(all + n_prompt, new_ids, (size_t)n * sizeof *all);
    int k = 0;
    for (; k < n; k++) {
        char *text;
        size_t len;
        if (gpt2c_detokenize(tok, all, n_prompt + k, flags, &text, &len) != GPT2C_OK) {
            k = n;
            break;
        }
        size_t start = utf8_prefix(text, len, prompt_chars);
        int holds = len - start >= kept_len && memcmp(text + start, kept, kept_len) == 0;
        gpt2c_free(text);
        if (holds) break;
    }
    free(all);
    return k;
}

static int run_generate(gen_opts *o, int argc, char **argv) {
    int rc = EXIT_RUN;
    double t0 = now_s();
    gpt2c_tokenizer *tok = NULL;
    gpt2c_model *m = NULL, *draft = NULL;
    gpt2c_gen *g = NULL;
    seq_out *outs = NULL;
    int *n_kept = NULL; /* per sequence: the new tokens reported (fewer after a stop string) */
    int32_t *ids = NULL;
    char *text = NULL, *prompt_text = NULL;
    size_t text_len = 0;
    int n_ids = 0, n_seqs = 0;
    char *dir = resolve_model(o->model, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc);
    if (!dir) goto out;
    gpt2c_model_params mp = {.dtype = o->dtype, .kv_cache = o->kv_cache, .lora = o->lora, .compute = o->compute};
    if (gpt2c_model_load_ex(dir, &mp, &m) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        goto out;
    }
    if ((o->draft || o->draft_dtype) && !(draft = load_draft(o->draft, o->draft_dtype, dir, o->kv_cache, &rc))) goto out;
    /* A folder without tokenizer files runs from --ids, and answers in ids. */
    int no_tokenizer = 0;
    if (!(tok = open_tokenizer(dir, &no_tokenizer)) && !no_tokenizer) goto out;
    if (!tok && (!o->ids || o->n_stops)) {
        fprintf(stderr, "%s: %s has no tokenizer files (vocab.json + merges.txt, or tokenizer.json): give the prompt "
                "as token ids (--ids), without --stop\n", prog, dir);
        rc = EXIT_USAGE;
        goto out;
    }
    double t_load = now_s() - t0;
    /* The checkpoint's defaults, then the command line's options on top. */
    gpt2c_model_gen_defaults(m, o->defaults, &o->p);
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, ":m:p:f:n:vh", GEN_OPTIONS, NULL)) != -1;) apply_option(o, c, optarg, argv);
    o->p.assistant_model = draft;
    if (o->ids) {
        if (parse_ids(o->ids, &ids, &n_ids)) {
            fprintf(stderr, "%s: --ids: not a list of token ids\n", prog);
            rc = EXIT_USAGE;
            goto out;
        }
    } else {
        if (o->prompt_file) {
            text = read_file_arg(o->prompt_file, &text_len);
            if (!text) {
                fprintf(stderr, "%s: %s: %s\n", prog, o->prompt_file, strerror(errno));
                goto out;
            }
        } else {
            text = strdup(o->prompt);
            text_len = strlen(o->prompt);
        }
        gpt2c_model_info mi;
        gpt2c_model_get_info(m, &mi);
        size_t least = text_len / gpt2c_tokenizer_max_token_bytes(tok);
        if (!o->truncate && least > (size_t)mi.n_ctx) { /* refused before tokenizing megabytes */
            fprintf(stderr, "%s: prompt: %zu bytes is at least %zu tokens, more than the model's context of %d (--truncate keeps the end)\n",
                    prog, text_len, least, mi.n_ctx);
            rc = EXIT_USAGE;
            goto out;
        }
        gpt2c_status ts = gpt2c_tokenize(tok, text, text_len, &ids, &n_ids);
        if (ts != GPT2C_OK) {
            fprintf(stderr, "%s: prompt: %s\n", prog, gpt2c_tokenizer_errmsg(tok));
            if (ts == GPT2C_ERR_INVALID) rc = EXIT_USAGE; /* not UTF-8, or a word too long */
            goto out;
        }
    }
    gpt2c_model_info info;
    gpt2c_model_get_info(m, &info);
    if (o->ids) {
        int vs = tok ? gpt2c_tokenizer_vocab_size(tok) : info.n_vocab;
        for (int i = 0; i < n_ids; i++)
            if (ids[i] >= vs || (tok && !gpt2c_token_bytes(tok, ids[i], &(size_t){0}))) {
                fprintf(stderr, "%s: --ids: id %d is not in the vocabulary (ids 0..%d)\n", prog, ids[i], vs - 1);
                rc = EXIT_USAGE;
                goto out;
            }
    }
    if (n_ids == 0) {
        /* A model needs a token to start from: an empty prompt starts from
         * the bos token, as generate() and the text-generation pipeline do
         * (for GPT-2, <|endoftext|>, the token it saw between documents).
         * The server does the same with "prompt": "" (as OpenAI's API).
         * Decoded without special tokens, the prompt stays "". */
        int start = info.start_token_id;
        int32_t *one = start >= 0 ? malloc(sizeof *one) : NULL;
        if (start < 0) {
            fprintf(stderr, "%s: the prompt is empty, and the model has no end-of-text or bos token to start from\n", prog);
            rc = EXIT_USAGE;
            goto out;
        }
        if (!one) goto out;
        one[0] = start;
        gpt2c_free(ids);
        ids = one;
        n_ids = 1;
    }
    if (o->truncate && n_ids > 0) {
        /* Keep the last tokens, leaving room for the new ones. */
        int room = o->p.max_new_tokens >= 0 ? o->p.max_new_tokens : 1;
        int keep = info.n_ctx - room;
        if (keep < 1) keep = 1;
        if (n_ids > keep) {
            memmove(ids, ids + (n_ids - keep), (size_t)keep * sizeof *ids);
            n_ids = keep;
        }
    }
    if (o->p.max_new_tokens < 0 && n_ids >= o->p.max_length && n_ids < info.n_ctx)
        /* As transformers warns: max_length counts the prompt, and leaves it
         * room for no new token; one is generated all the same. */
        fprintf(stderr,
                "%s: warning: the prompt is %d token%s, but max_length is %d (it counts the prompt), so only one new "
                "token is generated; ask for N new tokens with -n/--max-new-tokens N\n",
                prog, n_ids, plural(n_ids), o->p.max_length);
    size_t plen = 0;
    if (tok && gpt2c_detokenize(tok, ids, n_ids, o->flags, &prompt_text, &plen) != GPT2C_OK) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    const int32_t *prompts[1] = {ids};
    gpt2c_status st = gpt2c_gen_start(m, &o->p, 1, prompts, &n_ids, &g);
    if (st != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
        /* Parameters out of range or that do not go together, a prompt too
         * long for the context: the command line's fault, not the files'. */
        rc = st == GPT2C_ERR_INVALID || st == GPT2C_ERR_UNSUPPORTED || st == GPT2C_ERR_CONTEXT ? EXIT_USAGE : EXIT_RUN;
        goto out;
    }
    n_seqs = gpt2c_gen_n_seqs(g);
    outs = calloc((size_t)n_seqs, sizeof *outs);
    n_kept = calloc((size_t)n_seqs, sizeof *n_kept);
    if (!outs || !n_kept) goto out;
    for (int i = 0; tok && i < n_seqs; i++)
        if (gpt2c_stream_new(tok, ids, n_ids, o->flags, &outs[i].st) != GPT2C_OK ||
            gpt2c_stream_set_stops(outs[i].st, o->stops, o->n_stops) != GPT2C_OK || out_append(&outs[i], "", 0)) {
            fprintf(stderr, "%s: out of memory\n", prog);
            goto out;
        }
    /* The pipeline's full text is the original prompt string plus the new
     * text; with --ids there is no string, so its decoding stands in. */
    const char *shown_prompt = text ? text : prompt_text ? prompt_text : "";
    size_t shown_len = text ? text_len : plen;
    int beams = o->p.num_beams > 1;
    /* Plain text streams one sequence only; ids (no tokenizer) print at the end. */
    int live = !beams && (o->json || (n_seqs == 1 && tok));
    if (o->stream && live && !o->json && !o->new_only) fwrite(shown_prompt, 1, shown_len, stdout);
    /* max_new_tokens 0 asks for nothing: the library, as transformers,
     * always generates one token, so no step is run at all. */
    int nothing = o->p.max_new_tokens == 0;
    while (!nothing) {
        gpt2c_status s = gpt2c_gen_step(g);
        if (s != GPT2C_OK && s != GPT2C_DONE) {
            fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
            goto out;
        }
        if (!beams)
            for (int i = 0; i < n_seqs; i++)
                if (feed(g, &outs[i], i, o, live)) goto out;
        if (s == GPT2C_DONE) break;
    }
    for (int i = 0; i < n_seqs; i++) {
        const char *piece;
        size_t len;
        if (beams && feed(g, &outs[i], i, o, 0)) goto out;
        if (!tok) continue;
        if (gpt2c_stream_finish(outs[i].st, &piece, &len) != GPT2C_OK || out_append(&outs[i], piece, len)) goto out;
        if (o->stream && live && !o->json) fwrite(piece, 1, len, stdout);
    }
    double pre, dec;
    gpt2c_gen_timings(g, &pre, &dec);
    int total_new = 0;
    for (int i = 0; i < n_seqs; i++) {
        int n;
        const int32_t *new_ids = gpt2c_gen_tokens(g, i, &n);
        total_new += n;
        n_kept[i] = tok && gpt2c_stream_stopped(outs[i].st)
                      ? tokens_before_cut(tok, ids, n_ids, prompt_text, plen, new_ids, n, o->flags, outs[i].text,
                                          outs[i].len)
                      : n;
    }
    if (o->json) {
        json_t *seqs = json_array();
        for (int i = 0; i < n_seqs; i++) {
            int n;
            const int32_t *new_ids = gpt2c_gen_tokens(g, i, &n);
            json_t *jids = json_array();
            for (int k = 0; k < n_kept[i]; k++) json_array_append_new(jids, json_integer(new_ids[k]));
            gpt2c_finish f = tok && gpt2c_stream_stopped(outs[i].st) ? GPT2C_FINISH_STOP
                             : nothing                        ? GPT2C_FINISH_LENGTH
                                                              : gpt2c_gen_finish_reason(g, i);
            json_t *sj = json_pack("{s:i,s:s#,s:o,s:s}", "index", i, "text", outs[i].text ? outs[i].text : "", (int)outs[i].len,
                                   "token_ids", jids, "finish_reason", finish_name(f));
            double score = gpt2c_gen_score(g, i); /* none without a step (max_new_tokens 0) */
            if (beams) json_object_set_new(sj, "score", isfinite(score) ? json_real(score) : json_null());
            if (!tok) json_object_del(sj, "text"); /* ids only: no text to show */
            if (o->p.n_logprobs > 0)
                json_object_set_new(sj, "logprobs", logprobs_json(g, tok, i, n_kept[i], o->p.n_logprobs));
            json_array_append_new(seqs, sj);
        }
        json_t *pids = json_array();
        for (int i = 0; i < n_ids; i++) json_array_append_new(pids, json_integer(ids[i]));
        json_t *root = json_pack("{s:s,s:s#,s:o,s:o,s:o,s:{s:f,s:f,s:f}}", "model", o->model, "prompt", shown_prompt,
                                 (int)shown_len, "prompt_ids", pids, "params", params_json(&o->p, o->defaults),
                                 "sequences", seqs, "timings", "load_s", t_load, "prefill_s", pre, "decode_s", dec);
        if (draft) {
            long drafted, kept;
            gpt2c_gen_draft_stats(g, &drafted, &kept);
            json_object_set_new(root, "draft", json_pack("{s:I,s:I}", "proposed", (json_int_t)drafted, "accepted", (json_int_t)kept));
        }
        /* Streamed, the result is the last line of JSON Lines; else indented. */
        if (!tok) json_object_del(root, "prompt");
        char *s = root ? json_dumps(root, (o->stream ? JSON_COMPACT : JSON_INDENT(2)) | JSON_ENSURE_ASCII) : NULL;
        json_decref(root);
        if (!s) goto out;
        printf("%s\n", s);
        free(s);
    } else {
        for (int i = 0; i < n_seqs; i++) {
            if (!(o->stream && live)) {
                if (n_seqs > 1) printf("%s=== sequence %d ===\n", i ? "\n" : "", i);
                if (!tok) { /* the ids, as --ids takes them */
                    int n;
                    const int32_t *new_ids = gpt2c_gen_tokens(g, i, &n);
                    for (int k = o->new_only ? n_ids : 0; k < n_ids + n; k++)
                        printf("%s%d", k > (o->new_only ? n_ids : 0) ? "," : "", (int)(k < n_ids ? ids[k] : new_ids[k - n_ids]));
                }
                if (!o->new_only) fwrite(shown_prompt, 1, shown_len, stdout);
                if (outs[i].len) fwrite(outs[i].text, 1, outs[i].len, stdout);
            }
            printf("\n");
            if (o->p.n_logprobs > 0) print_logprobs(g, tok, i, n_kept[i], o->p.n_logprobs);
        }
    }
    if (o->verbose)
        fprintf(stderr, "load %.3f s, prompt %d token%s in %.3f s, %d new token%s in %.3f s, kernels: %s\n", t_load,
                n_ids, plural(n_ids), pre, total_new, plural(total_new), pre + dec, info.kernels);
    if (o->verbose && draft) {
        long drafted, kept;
        gpt2c_gen_draft_stats(g, &drafted, &kept);
        fprintf(stderr, "draft: %ld of %ld proposed token%s accepted (%.0f%%)\n", kept, drafted, plural(drafted),
                drafted ? 100.0 * (double)kept / (double)drafted : 0.0);
    }
    rc = 0;
out:
    fflush(stdout);
    gpt2c_free(dir);
    for (int i = 0; outs && i < n_seqs; i++) {
        gpt2c_stream_free(outs[i].st);
        free(outs[i].text);
    }
    free(outs);
    free(n_kept);
    free(text);
    gpt2c_free(prompt_text);
    gpt2c_free(ids);
    gpt2c_gen_free(g);
    gpt2c_model_free(draft);
    gpt2c_model_free(m);
    gpt2c_tokenizer_free(tok);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    /* Two passes over the options: this one checks them all and finds the
     * model, before anything is loaded; run_generate applies them again on
     * top of the checkpoint's own defaults. */
    gen_opts *o = calloc(1, sizeof *o);
    if (!o) return EXIT_RUN;
    gpt2c_gen_params_init(&o->p);
    o->stream = -1; /* default: stream plain text, not JSON */
    opterr = 0;
    int c, rc = -1;
    while (rc < 0 && (c = getopt_long(argc, argv, ":m:p:f:n:vh", GEN_OPTIONS, NULL)) != -1) rc = apply_option(o, c, optarg, argv);
    if (rc < 0 && optind < argc) rc = usage_error("unexpected argument '%s'", argv[optind]);
    if (rc < 0 && !o->model) rc = usage_error("%s", "generate: -m DIR is required");
    if (rc < 0 && !!o->prompt + !!o->prompt_file + !!o->ids != 1)
        rc = usage_error("%s", "generate: give exactly one of -p TEXT, -f FILE or --ids");
    if (rc < 0) {
        if (o->stream < 0) o->stream = !o->json;
        o->n_stops = 0; /* collected again by the second pass */
        /* As the text-generation pipeline decodes; ids past the tokenizer's
         * vocabulary (a padded embedding) have no text. */
        o->flags = GPT2C_DECODE_SKIP_SPECIAL | GPT2C_DECODE_SKIP_UNKNOWN;
        rc = run_generate(o, argc, argv);
    }
    free(o);
    return rc;
}

