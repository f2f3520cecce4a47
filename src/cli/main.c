/* main.c -- the gpt2c command line: generate, tokenize, detokenize, info.
 * Uses only the public header. Exit codes: 0 success, 1 a failure while
 * running (files, model, generation), 2 a usage error (bad arguments). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "gpt2c.h"

enum { EXIT_RUN = 1, EXIT_USAGE = 2 };

static const char *prog = "gpt2c";

static const char MAIN_HELP[] =
    "usage: gpt2c <command> [options]\n"
    "\n"
    "Run GPT-2 models from Hugging Face checkpoint folders, with the same tokens as transformers.\n"
    "\n"
    "commands:\n"
    "  generate     continue a prompt (transformers' generate() semantics)\n"
    "  tokenize     print the token ids of a text\n"
    "  detokenize   print the text of token ids\n"
    "  info         print a checkpoint's configuration\n"
    "  pull NAME    download a model from the Hugging Face hub into the cache\n"
    "  ls           list the models in the cache, with their sizes\n"
    "  rm NAME      delete a model from the cache\n"
    "  bench        measure load time, prefill and decode speed against the hardware's limits\n"
    "\n"
    "-m takes a checkpoint folder or a hub name (gpt2, openai-community/gpt2-medium,\n"
    "distilbert/distilgpt2, org/name@revision). Names are looked up in the Hugging Face cache\n"
    "that Python's huggingface_hub uses, and downloaded when missing. Environment: HF_ENDPOINT,\n"
    "HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME, HF_TOKEN (or $HF_HOME/token), HF_HUB_OFFLINE=1.\n"
    "\n"
    "  gpt2c <command> --help   shows a command's options\n"
    "  gpt2c --version          prints the version\n"
    "\n"
    "exit codes: 0 success, 1 failure while running, 2 usage error\n";

static const char GENERATE_HELP[] =
    "usage: gpt2c generate -m DIR (-p TEXT | -f FILE | --ids N,N,...) [options]\n"
    "\n"
    "Continues the prompt with the model in DIR (config.json + model.safetensors + tokenizer files).\n"
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
    "                             (length, eos, stop), logprobs; timings. With --stream, first one\n"
    "                             JSON line per token\n"
    "      --logprobs N           the top-N log-probabilities at each new position (0..20)\n"
    "  -v, --verbose              print timings to standard error\n"
    "\n"
    "generation (transformers' names):\n"
    "  -n, --max-new-tokens N     new tokens (takes precedence over --max-length)\n"
    "      --max-length N         total length, prompt included\n"
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
    "      --pipeline             pipeline(\"text-generation\") defaults instead of generate()'s\n"
    "  -h, --help                 this help\n"
    "\n"
    "Sampling draws from a documented PRNG (xoshiro256**, one stream per returned sequence), not\n"
    "torch's, so seeded text differs from transformers' while following the same distribution.\n"
    "Generation also stops at the model's context end (finish reason \"length\").\n";

static const char TOKENIZE_HELP[] =
    "usage: gpt2c tokenize -m DIR [-p TEXT | -f FILE] [--json]\n"
    "\n"
    "Prints the token ids of TEXT (or of FILE, or of standard input), one line, space separated,\n"
    "exactly as transformers' GPT2Tokenizer encodes it. DIR holds vocab.json + merges.txt or\n"
    "tokenizer.json (DIR may also be a tokenizer.json path).\n"
    "\n"
    "  -m, --model DIR        tokenizer folder\n"
    "  -p, --prompt TEXT      text to encode\n"
    "  -f, --prompt-file FILE read the text from FILE ('-' for standard input, the default)\n"
    "      --json             print {\"ids\": [...], \"tokens\": [...]}\n"
    "  -h, --help             this help\n";

static const char DETOKENIZE_HELP[] =
    "usage: gpt2c detokenize -m DIR [--skip-special] [--no-cleanup] [ID ...]\n"
    "\n"
    "Prints the text of the token ids given as arguments (or read from standard input, separated by\n"
    "spaces, commas or newlines), decoded as transformers' tokenizer.decode() does.\n"
    "\n"
    "  -m, --model DIR     tokenizer folder\n"
    "      --skip-special  drop special tokens (skip_special_tokens=True)\n"
    "      --no-cleanup    clean_up_tokenization_spaces=False\n"
    "  -h, --help          this help\n";

static const char INFO_HELP[] =
    "usage: gpt2c info -m DIR\n"
    "\n"
    "Loads the checkpoint in DIR and prints its configuration as JSON.\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try '%s --help')\n", prog);
    return EXIT_USAGE;
}

static int parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end != '\0') return -1;
    *out = v;
    return 0;
}

/* Reads a whole stream; NULL on failure. */
static char *read_all(FILE *f, size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    if (buf && ferror(f)) {
        free(buf);
        return NULL;
    }
    if (buf) {
        buf[n < cap ? n : cap - 1] = '\0';
        *len = n;
    }
    return buf;
}

static char *read_file_arg(const char *path, size_t *len) {
    if (strcmp(path, "-") == 0) return read_all(stdin, len);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = read_all(f, len);
    fclose(f);
    return buf;
}

/* Parses "1,2 3\n4" into ids; -1 on a malformed number. */
static int parse_ids(const char *s, int32_t **ids, int *n) {
    int cap = 16;
    *n = 0;
    *ids = malloc((size_t)cap * sizeof **ids);
    if (!*ids) return -1;
    while (*s) {
        while (*s == ',' || *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX) return -1;
        if (*n == cap) {
            int32_t *p = realloc(*ids, (size_t)(cap *= 2) * sizeof *p);
            if (!p) return -1;
            *ids = p;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A progress bar on a terminal: bytes, rate, time left. */
typedef struct progress {
    double start, last;
    char file[128];
    int finished; /* the 100% line of this file is out */
} progress;

static void on_progress(void *user, const char *file, uint64_t done, uint64_t total) {
    progress *p = user;
    double now = now_s();
    if (strcmp(p->file, file) != 0) {
        snprintf(p->file, sizeof p->file, "%s", file);
        p->start = now;
        p->last = 0;
        p->finished = 0;
    }
    int end = total > 0 && done >= total;
    if (p->finished || (!end && now - p->last < 0.1)) return;
    p->finished = end;
    p->last = now;
    double mb = (double)done / 1e6, rate = now > p->start ? mb / (now - p->start) : 0;
    if (total > 0)
        fprintf(stderr, "\r%-30.30s %3d%% %8.1f / %.1f MB %7.1f MB/s  ETA %4.0f s ", file, (int)(100.0 * (double)done / (double)total),
                mb, (double)total / 1e6, rate, rate > 0 ? ((double)total / 1e6 - mb) / rate : 0.0);
    else
        fprintf(stderr, "\r%-30.30s %8.1f MB %7.1f MB/s ", file, mb, rate);
    if (end) fputc('\n', stderr);
}

/* A folder as given, or a hub name resolved (and downloaded) to one. NULL
 * after printing why; *rc is then the exit code (a malformed name is a usage
 * error). */
static char *resolve_model(const char *spec, unsigned what, int *rc) {
    gpt2c_hub *h;
    char *dir = NULL;
    progress pr = {0};
    gpt2c_status s = gpt2c_hub_new(&h);
    if (s == GPT2C_OK) {
        if (isatty(2)) gpt2c_hub_set_progress(h, on_progress, &pr);
        s = gpt2c_hub_resolve(h, spec, what, &dir);
    }
    if (s != GPT2C_OK) fprintf(stderr, "%s: %s\n", prog, gpt2c_hub_errmsg(h));
    *rc = s == GPT2C_ERR_INVALID ? EXIT_USAGE : EXIT_RUN;
    gpt2c_hub_free(h);
    return s == GPT2C_OK ? dir : NULL;
}

static gpt2c_tokenizer *open_tokenizer(const char *dir) {
    gpt2c_tokenizer *t;
    if (gpt2c_tokenizer_load(dir, &t) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_tokenizer_errmsg(t));
        gpt2c_tokenizer_free(t);
        return NULL;
    }
    return t;
}

static json_t *token_text_json(const gpt2c_tokenizer *t, int32_t id) {
    /* A single token may be part of a character: show it as decoded with
     * replacement, as transformers' convert_ids_to_tokens + decode would. */
    char *text;
    size_t len;
    if (gpt2c_detokenize(t, &id, 1, GPT2C_DECODE_NO_CLEANUP, &text, &len) != GPT2C_OK) return json_null();
    json_t *j = json_stringn(text, len);
    gpt2c_free(text);
    return j;
}

/* ------------------------------------------------------------- generate */

#define MAX_STOPS 16
#define MAX_LIST 1024

typedef struct gen_opts {
    const char *model, *prompt, *prompt_file, *ids, *dtype;
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
    O_TRUNC, O_LOGPROBS, O_NEWONLY, O_NOCLEAN, O_JSON, O_IDS, O_STOP, O_STREAM, O_NOSTREAM, O_THREADS, O_DTYPE
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
    {"help", no_argument, 0, 'h'},                 {0, 0, 0, 0}};

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
        if (strcmp(arg, "f32") && strcmp(arg, "f16") && strcmp(arg, "bf16") && strcmp(arg, "q8"))
            return usage_error("--dtype: '%s' is not one of f32, f16, bf16, q8", arg);
        o->dtype = arg;
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
    case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
    default: return usage_error("unknown option '%s'", argv[optind - 1]);
    }
    return -1;
}

static const char *finish_name(gpt2c_finish f) {
    return f == GPT2C_FINISH_EOS ? "eos" : f == GPT2C_FINISH_LENGTH ? "length" : f == GPT2C_FINISH_STOP ? "stop" : "none";
}

static json_t *logprobs_json(const gpt2c_gen *g, const gpt2c_tokenizer *t, int seq, int k) {
    json_t *arr = json_array();
    int n;
    const int32_t *ids = gpt2c_gen_tokens(g, seq, &n);
    for (int j = 0; j < n; j++) {
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

static void print_logprobs(const gpt2c_gen *g, const gpt2c_tokenizer *t, int seq, int k) {
    json_t *arr = logprobs_json(g, t, seq, k);
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

static int run_generate(gen_opts *o, int argc, char **argv) {
    int rc = EXIT_RUN;
    double t0 = now_s();
    gpt2c_tokenizer *tok = NULL;
    gpt2c_model *m = NULL;
    gpt2c_gen *g = NULL;
    seq_out *outs = NULL;
    int32_t *ids = NULL;
    char *text = NULL, *prompt_text = NULL;
    size_t text_len = 0;
    int n_ids = 0, n_seqs = 0;
    char *dir = resolve_model(o->model, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc);
    if (!dir) goto out;
    gpt2c_model_params mp = {.dtype = o->dtype};
    if (gpt2c_model_load_ex(dir, &mp, &m) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        goto out;
    }
    if (!(tok = open_tokenizer(dir))) goto out;
    double t_load = now_s() - t0;
    /* The checkpoint's defaults, then the command line's options on top. */
    gpt2c_model_gen_defaults(m, o->defaults, &o->p);
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, ":m:p:f:n:vh", GEN_OPTIONS, NULL)) != -1;) apply_option(o, c, optarg, argv);
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
        if (gpt2c_tokenize(tok, text, text_len, &ids, &n_ids) != GPT2C_OK) {
            fprintf(stderr, "%s: prompt: %s\n", prog, gpt2c_tokenizer_errmsg(tok));
            goto out;
        }
    }
    gpt2c_model_info info;
    gpt2c_model_get_info(m, &info);
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
    size_t plen;
    if (gpt2c_detokenize(tok, ids, n_ids, o->flags, &prompt_text, &plen) != GPT2C_OK) {
        fprintf(stderr, "%s: --ids: an id is outside the vocabulary\n", prog);
        rc = EXIT_USAGE;
        goto out;
    }
    const int32_t *prompts[1] = {ids};
    gpt2c_status st = gpt2c_gen_start(m, &o->p, 1, prompts, &n_ids, &g);
    if (st != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
        rc = st == GPT2C_ERR_INVALID ? EXIT_USAGE : EXIT_RUN; /* a bad parameter is a usage error */
        goto out;
    }
    n_seqs = gpt2c_gen_n_seqs(g);
    outs = calloc((size_t)n_seqs, sizeof *outs);
    if (!outs) goto out;
    for (int i = 0; i < n_seqs; i++)
        if (gpt2c_stream_new(tok, ids, n_ids, o->flags, &outs[i].st) != GPT2C_OK ||
            gpt2c_stream_set_stops(outs[i].st, o->stops, o->n_stops) != GPT2C_OK || out_append(&outs[i], "", 0)) {
            fprintf(stderr, "%s: out of memory\n", prog);
            goto out;
        }
    /* The pipeline's full text is the original prompt string plus the new
     * text; with --ids there is no string, so its decoding stands in. */
    const char *shown_prompt = text ? text : prompt_text;
    size_t shown_len = text ? text_len : plen;
    int beams = o->p.num_beams > 1;
    int live = !beams && (o->json || n_seqs == 1); /* plain text streams one sequence only */
    if (o->stream && live && !o->json && !o->new_only) fwrite(shown_prompt, 1, shown_len, stdout);
    for (;;) {
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
        if (gpt2c_stream_finish(outs[i].st, &piece, &len) != GPT2C_OK || out_append(&outs[i], piece, len)) goto out;
        if (o->stream && live && !o->json) fwrite(piece, 1, len, stdout);
    }
    double pre, dec;
    gpt2c_gen_timings(g, &pre, &dec);
    int total_new = 0;
    if (o->json) {
        json_t *seqs = json_array();
        for (int i = 0; i < n_seqs; i++) {
            int n;
            const int32_t *new_ids = gpt2c_gen_tokens(g, i, &n);
            total_new += n;
            json_t *jids = json_array();
            for (int k = 0; k < n; k++) json_array_append_new(jids, json_integer(new_ids[k]));
            gpt2c_finish f = gpt2c_stream_stopped(outs[i].st) ? GPT2C_FINISH_STOP : gpt2c_gen_finish_reason(g, i);
            json_t *sj = json_pack("{s:i,s:s#,s:o,s:s}", "index", i, "text", outs[i].text, (int)outs[i].len,
                                   "token_ids", jids, "finish_reason", finish_name(f));
            if (beams) json_object_set_new(sj, "score", json_real(gpt2c_gen_score(g, i)));
            if (o->p.n_logprobs > 0) json_object_set_new(sj, "logprobs", logprobs_json(g, tok, i, o->p.n_logprobs));
            json_array_append_new(seqs, sj);
        }
        json_t *pids = json_array();
        for (int i = 0; i < n_ids; i++) json_array_append_new(pids, json_integer(ids[i]));
        json_t *root = json_pack("{s:s,s:s#,s:o,s:o,s:o,s:{s:f,s:f,s:f}}", "model", o->model, "prompt", shown_prompt,
                                 (int)shown_len, "prompt_ids", pids, "params", params_json(&o->p, o->defaults),
                                 "sequences", seqs, "timings", "load_s", t_load, "prefill_s", pre, "decode_s", dec);
        char *s = root ? json_dumps(root, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
        json_decref(root);
        if (!s) goto out;
        printf("%s\n", s);
        free(s);
    } else {
        for (int i = 0; i < n_seqs; i++) {
            int n;
            gpt2c_gen_tokens(g, i, &n);
            total_new += n;
            if (!(o->stream && live)) {
                if (n_seqs > 1) printf("%s=== sequence %d ===\n", i ? "\n" : "", i);
                if (!o->new_only) fwrite(shown_prompt, 1, shown_len, stdout);
                fwrite(outs[i].text, 1, outs[i].len, stdout);
            }
            printf("\n");
            if (o->p.n_logprobs > 0) print_logprobs(g, tok, i, o->p.n_logprobs);
        }
    }
    if (o->verbose)
        fprintf(stderr, "load %.3f s, prompt %d tokens in %.3f s, %d new tokens in %.3f s, kernels: %s\n", t_load,
                n_ids, pre, total_new, pre + dec, info.kernels);
    rc = 0;
out:
    fflush(stdout);
    gpt2c_free(dir);
    for (int i = 0; outs && i < n_seqs; i++) {
        gpt2c_stream_free(outs[i].st);
        free(outs[i].text);
    }
    free(outs);
    free(text);
    gpt2c_free(prompt_text);
    gpt2c_free(ids);
    gpt2c_gen_free(g);
    gpt2c_model_free(m);
    gpt2c_tokenizer_free(tok);
    return rc;
}

static int cmd_generate(int argc, char **argv) {
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
        o->flags = GPT2C_DECODE_SKIP_SPECIAL; /* as the text-generation pipeline decodes */
        rc = run_generate(o, argc, argv);
    }
    free(o);
    return rc;
}

/* ------------------------------------------------------------- tokenize */

static int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    int json = 0, c;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
                                       {"prompt-file", required_argument, 0, 'f'}, {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:f:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': file = optarg; break;
        case 'j': json = 1; break;
        case 'h': fputs(TOKENIZE_HELP, stdout); return 0;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (!model) return usage_error("%s", "tokenize: -m DIR is required");
    if (prompt && file) return usage_error("%s", "tokenize: give -p TEXT or -f FILE, not both");
    size_t len;
    char *text = prompt ? strdup(prompt) : read_file_arg(file ? file : "-", &len);
    if (!text) {
        fprintf(stderr, "%s: %s: %s\n", prog, file ? file : "stdin", strerror(errno));
        return EXIT_RUN;
    }
    if (prompt) len = strlen(prompt);
    int rc = EXIT_RUN;
    char *dir = resolve_model(model, GPT2C_HUB_TOKENIZER, &rc);
    gpt2c_tokenizer *t = dir ? open_tokenizer(dir) : NULL;
    if (dir) rc = EXIT_RUN;
    gpt2c_free(dir);
    int32_t *ids = NULL;
    int n = 0;
    if (t && gpt2c_tokenize(t, text, len, &ids, &n) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_tokenizer_errmsg(t));
    } else if (t) {
        if (json) {
            json_t *ji = json_array(), *jt = json_array();
            for (int i = 0; i < n; i++) {
                json_array_append_new(ji, json_integer(ids[i]));
                json_array_append_new(jt, token_text_json(t, ids[i]));
            }
            json_t *root = json_pack("{s:o,s:o}", "ids", ji, "tokens", jt);
            char *s = json_dumps(root, JSON_ENSURE_ASCII);
            printf("%s\n", s ? s : "null");
            free(s);
            json_decref(root);
        } else {
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        }
        rc = 0;
    }
    gpt2c_free(ids);
    free(text);
    gpt2c_tokenizer_free(t);
    return rc;
}

static int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    unsigned flags = 0;
    int c;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"skip-special", no_argument, 0, 's'},
                                       {"no-cleanup", no_argument, 0, 'c'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 's': flags |= GPT2C_DECODE_SKIP_SPECIAL; break;
        case 'c': flags |= GPT2C_DECODE_NO_CLEANUP; break;
        case 'h': fputs(DETOKENIZE_HELP, stdout); return 0;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!model) return usage_error("%s", "detokenize: -m DIR is required");
    int32_t *ids = NULL;
    int n = 0;
    int bad;
    if (optind < argc) {
        size_t total = 0;
        for (int i = optind; i < argc; i++) total += strlen(argv[i]) + 1;
        char *joined = malloc(total + 1), *p = joined;
        if (!joined) return EXIT_RUN;
        for (int i = optind; i < argc; i++) p += sprintf(p, "%s ", argv[i]);
        bad = parse_ids(joined, &ids, &n);
        free(joined);
    } else {
        size_t len;
        char *in = read_all(stdin, &len);
        if (!in) return EXIT_RUN;
        bad = parse_ids(in, &ids, &n);
        free(in);
    }
    if (bad) {
        free(ids);
        return usage_error("%s", "detokenize: ids must be non-negative integers");
    }
    int rc = EXIT_RUN;
    char *dir = resolve_model(model, GPT2C_HUB_TOKENIZER, &rc);
    gpt2c_tokenizer *t = dir ? open_tokenizer(dir) : NULL;
    if (dir) rc = EXIT_RUN;
    gpt2c_free(dir);
    if (t) {
        int vs = gpt2c_tokenizer_vocab_size(t);
        for (int i = 0; i < n; i++)
            if (ids[i] >= vs || !gpt2c_token_bytes(t, ids[i], &(size_t){0})) {
                fprintf(stderr, "%s: detokenize: id %d is not in the vocabulary (size %d)\n", prog, ids[i], vs);
                rc = EXIT_USAGE;
                goto out;
            }
        char *text;
        size_t len;
        if (gpt2c_detokenize(t, ids, n, flags, &text, &len) == GPT2C_OK) {
            fwrite(text, 1, len, stdout);
            printf("\n");
            gpt2c_free(text);
            rc = 0;
        }
    }
out:
    free(ids);
    gpt2c_tokenizer_free(t);
    return rc;
}

static int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    int c;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'h': fputs(INFO_HELP, stdout); return 0;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!model) return usage_error("%s", "info: -m DIR is required");
    int rc;
    char *dir = resolve_model(model, GPT2C_HUB_MODEL, &rc);
    if (!dir) return rc;
    double t0 = now_s();
    gpt2c_model *m;
    gpt2c_status st = gpt2c_model_load(dir, &m);
    gpt2c_free(dir);
    if (st != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        gpt2c_model_free(m);
        return EXIT_RUN;
    }
    double dt = now_s() - t0;
    gpt2c_model_info i;
    gpt2c_model_get_info(m, &i);
    printf("{\"n_vocab\": %d, \"n_ctx\": %d, \"n_embd\": %d, \"n_head\": %d, \"n_layer\": %d, \"n_inner\": %d, "
           "\"bos_token_id\": %d, \"eos_token_id\": %d, \"pad_token_id\": %d, \"weight_dtype\": \"%s\", "
           "\"kernels\": \"%s\", \"load_s\": %.4f}\n",
           i.n_vocab, i.n_ctx, i.n_embd, i.n_head, i.n_layer, i.n_inner, i.bos_token_id, i.eos_token_id,
           i.pad_token_id, i.weight_dtype, i.kernels, dt);
    gpt2c_model_free(m);
    return 0;
}

static const char BENCH_HELP[] =
    "usage: gpt2c bench -m MODEL [--threads N] [--prompt-tokens N] [--gen-tokens N] [--batch B] [--json]\n"
    "\n"
    "Measures, in one run: load time (process start to model ready, and to the first token),\n"
    "prefill and decode speed, peak RSS, and the achieved bandwidth against a roofline measured\n"
    "in the same process (reading the model's own weights on the same threads) and the f32 FMA\n"
    "peak. The prompt is fixed pseudo-random token ids; decoding is greedy with EOS off.\n"
    "\n"
    "  -m, --model MODEL      folder or hub name\n"
    "      --threads N        threads (default: one per physical core)\n"
    "      --prompt-tokens N  prompt length (default 512)\n"
    "      --gen-tokens N     tokens to decode (default 128)\n"
    "      --batch B          decode B sequences together (default 1)\n"
    "      --dtype T          convert the weights at load: f32, f16, bf16, q8\n"
    "      --json             one JSON object\n";

static double process_start_s; /* CLOCK_MONOTONIC at the start of main */

static int cmd_bench(int argc, char **argv) {
    const char *model = NULL, *dtype = NULL;
    int threads = 0, prompt = 512, gen = 128, batch = 1, json = 0, c;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"threads", required_argument, 0, 't'},
                                       {"prompt-tokens", required_argument, 0, 'p'}, {"gen-tokens", required_argument, 0, 'g'},
                                       {"batch", required_argument, 0, 'b'}, {"json", no_argument, 0, 'j'},
                                       {"dtype", required_argument, 0, 'd'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': if (parse_int(optarg, 0, 1024, &threads)) return usage_error("--threads: '%s' is not an integer in 0..1024", optarg); break;
        case 'p': if (parse_int(optarg, 1, 1 << 20, &prompt)) return usage_error("--prompt-tokens: '%s' is not a positive integer", optarg); break;
        case 'g': if (parse_int(optarg, 1, 1 << 20, &gen)) return usage_error("--gen-tokens: '%s' is not a positive integer", optarg); break;
        case 'b': if (parse_int(optarg, 1, 4096, &batch)) return usage_error("--batch: '%s' is not an integer in 1..4096", optarg); break;
        case 'j': json = 1; break;
        case 'd': dtype = optarg; break;
        case 'h': fputs(BENCH_HELP, stdout); return 0;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (!model) return usage_error("%s", "bench: -m MODEL is required");
    int rc;
    char *dir = resolve_model(model, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc);
    if (!dir) return rc;
    double t0 = now_s();
    gpt2c_model *m;
    gpt2c_tokenizer *tok = NULL;
    gpt2c_model_params mp = {.dtype = dtype};
    gpt2c_status st = gpt2c_model_load_ex(dir, &mp, &m);
    double t_model = now_s() - t0;
    if (st == GPT2C_OK) tok = open_tokenizer(dir);
    double t_ready = now_s() - process_start_s, t_tok = now_s() - t0 - t_model;
    gpt2c_free(dir);
    if (st != GPT2C_OK || !tok) {
        if (st != GPT2C_OK) fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        gpt2c_model_free(m);
        gpt2c_tokenizer_free(tok);
        return EXIT_RUN;
    }
    gpt2c_model_info info;
    gpt2c_model_get_info(m, &info);
    if (prompt + gen > info.n_ctx) {
        gpt2c_model_free(m);
        gpt2c_tokenizer_free(tok);
        return usage_error("%s", "bench: --prompt-tokens + --gen-tokens exceed the model's context");
    }
    /* A fixed pseudo-random prompt, the same in every run and for every B. */
    int32_t *ids = malloc(sizeof *ids * (size_t)prompt);
    const int32_t **prompts = malloc(sizeof *prompts * (size_t)batch);
    int *lens = malloc(sizeof *lens * (size_t)batch);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < prompt; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)(info.n_vocab - 1));
    }
    for (int b = 0; b < batch; b++) prompts[b] = ids, lens[b] = prompt;
    gpt2c_gen_params p;
    gpt2c_gen_params_init(&p);
    p.max_new_tokens = gen;
    p.eos_token_id = -1;
    p.n_threads = threads;
    gpt2c_gen *g = NULL;
    double t_first = 0, pre = 0, dec = 0;
    rc = EXIT_RUN;
    if (gpt2c_gen_start(m, &p, batch, prompts, lens, &g) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
        goto out;
    }
    for (int step = 0;; step++) {
        gpt2c_status s = gpt2c_gen_step(g);
        if (step == 0) t_first = now_s() - process_start_s;
        if (s == GPT2C_DONE) break;
        if (s != GPT2C_OK) {
            fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
            goto out;
        }
    }
    gpt2c_gen_timings(g, &pre, &dec);
    double bw = 0, flops = 0;
    if (gpt2c_model_measure_limits(m, threads, &bw, &flops) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        goto out;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* The first token comes out of the prefill pass; the rest from decode steps. */
    double steps = gen - 1, step_s = steps > 0 ? dec / steps : 0;
    double prefill_tps = (double)prompt * batch / pre, decode_tps = step_s > 0 ? batch / step_s : 0;
    double achieved = step_s > 0 ? (double)info.weight_bytes / step_s : 0;
    double roof_tps = bw / (double)info.weight_bytes;
    /* 2 flops per weight per token, plus attention (small at these lengths). */
    double C = info.n_embd, weights = (double)info.n_vocab * C + info.n_layer * (4.0 * C * C + 2.0 * C * info.n_inner);
    double prefill_flops = 2.0 * weights * prefill_tps;
    if (json) {
        printf("{\"model\": \"%s\", \"weight_dtype\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, \"batch\": %d, "
               "\"prompt_tokens\": %d, \"gen_tokens\": %d, \"load_model_s\": %.4f, \"load_tokenizer_s\": %.4f, "
               "\"ready_s\": %.4f, \"first_token_s\": %.4f, \"prefill_tokens_per_s\": %.2f, "
               "\"decode_tokens_per_s\": %.2f, \"decode_ms_per_step\": %.3f, \"peak_rss_mb\": %.1f, "
               "\"weight_bytes_per_token\": %llu, \"achieved_gb_per_s\": %.2f, \"roofline_gb_per_s\": %.2f, "
               "\"roofline_decode_tokens_per_s\": %.2f, \"roofline_fraction\": %.3f, \"fma_peak_gflops\": %.1f, "
               "\"prefill_gflops\": %.1f, \"prefill_peak_fraction\": %.3f}\n",
               model, info.weight_dtype, info.kernels, threads, batch, prompt, gen, t_model, t_tok, t_ready, t_first,
               prefill_tps, decode_tps, step_s * 1e3, ru.ru_maxrss / 1024.0, (unsigned long long)info.weight_bytes,
               achieved / 1e9, bw / 1e9, roof_tps, achieved / bw, flops / 1e9, prefill_flops / 1e9, prefill_flops / flops);
    } else {
        printf("model %s (%s weights, %s kernels), %d threads, batch %d\n", model, info.weight_dtype, info.kernels,
               threads, batch);
        printf("load: model %.1f ms, tokenizer %.1f ms; ready %.1f ms and first token %.1f ms after process start\n",
               t_model * 1e3, t_tok * 1e3, t_ready * 1e3, t_first * 1e3);
        printf("prefill: %d tokens x %d in %.3f s = %.1f tokens/s (%.1f GFLOP/s, %.0f%% of the %.1f GFLOP/s FMA peak)\n",
               prompt, batch, pre, prefill_tps, prefill_flops / 1e9, 100 * prefill_flops / flops, flops / 1e9);
        printf("decode: %.2f ms per step = %.1f tokens/s; %.1f GB/s of weights, %.0f%% of the %.1f GB/s measured "
               "(roofline %.1f tokens/s)\n",
               step_s * 1e3, decode_tps, achieved / 1e9, 100 * achieved / bw, bw / 1e9, roof_tps);
        printf("peak RSS: %.1f MB\n", ru.ru_maxrss / 1024.0);
    }
    rc = 0;
out:
    free(ids);
    free(prompts);
    free(lens);
    gpt2c_gen_free(g);
    gpt2c_model_free(m);
    gpt2c_tokenizer_free(tok);
    return rc;
}

static const char PULL_HELP[] =
    "usage: gpt2c pull NAME[@REVISION]\n"
    "\n"
    "Downloads a model's config, weights and tokenizer from the Hugging Face hub into the cache\n"
    "(as huggingface_hub lays it out), resuming interrupted downloads and verifying each file's\n"
    "SHA-256. Prints the snapshot folder. HF_ENDPOINT, HF_TOKEN and HF_HUB_CACHE apply.\n";
static const char LS_HELP[] = "usage: gpt2c ls\n\nLists the models in the Hugging Face cache: name, size, revisions, folder.\n";
static const char RM_HELP[] = "usage: gpt2c rm NAME\n\nDeletes a model (every revision) from the Hugging Face cache.\n";

/* Commands that take exactly one name (pull, rm) or none (ls). */
static int one_arg(int argc, char **argv, const char *help, int want, const char **arg) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        fputs(help, stdout);
        return 0;
    }
    if (argc - 1 != want) return usage_error(want ? "%s: give one model name" : "%s: takes no arguments", argv[0]);
    if (want && argv[1][0] == '-') return usage_error("unknown option '%s'", argv[1]);
    *arg = want ? argv[1] : NULL;
    return -1;
}

static int cmd_pull(int argc, char **argv) {
    const char *name;
    int rc = one_arg(argc, argv, PULL_HELP, 1, &name);
    if (rc >= 0) return rc;
    char *dir = resolve_model(name, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc);
    if (!dir) return rc;
    printf("%s\n", dir);
    gpt2c_free(dir);
    return 0;
}

static void print_cached(void *user, const char *id, uint64_t bytes, const char *revs, const char *path) {
    (*(int *)user)++;
    printf("%-40s %9.1f MB  %-20s %s\n", id, (double)bytes / 1e6, revs[0] ? revs : "-", path);
}

static int hub_command(int argc, char **argv, int remove) {
    const char *name = NULL;
    int rc = one_arg(argc, argv, remove ? RM_HELP : LS_HELP, remove, &name);
    if (rc >= 0) return rc;
    gpt2c_hub *h;
    gpt2c_status s = gpt2c_hub_new(&h);
    int count = 0;
    if (s == GPT2C_OK) s = remove ? gpt2c_hub_remove(h, name) : gpt2c_hub_list(h, print_cached, &count);
    if (s != GPT2C_OK) fprintf(stderr, "%s: %s\n", prog, gpt2c_hub_errmsg(h));
    else if (!remove && count == 0) fprintf(stderr, "%s: no models in %s\n", prog, gpt2c_hub_cache_dir(h));
    gpt2c_hub_free(h);
    return s == GPT2C_OK ? 0 : s == GPT2C_ERR_INVALID ? EXIT_USAGE : EXIT_RUN;
}

int main(int argc, char **argv) {
    process_start_s = now_s();
    if (argc < 2) {
        fputs(MAIN_HELP, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(MAIN_HELP, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("gpt2c %s\n", gpt2c_version());
        return 0;
    }
    /* Each command parses argv[1..]: its name stands where getopt expects
     * the program name. */
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "detokenize")) return cmd_detokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "pull")) return cmd_pull(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "ls")) return hub_command(argc - 1, argv + 1, 0);
    if (!strcmp(cmd, "rm")) return hub_command(argc - 1, argv + 1, 1);
    return usage_error("unknown command '%s'", cmd);
}
