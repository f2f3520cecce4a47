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
#include <time.h>

#include "gpt2c.h"

enum { EXIT_RUN = 1, EXIT_USAGE = 2 };

static const char *prog = "gpt2c";

static const char MAIN_HELP[] =
    "usage: gpt2c <command> [options]\n"
    "\n"
    "Run GPT-2 models from Hugging Face checkpoint folders, with the same tokens as transformers.\n"
    "\n"
    "commands:\n"
    "  generate     continue a prompt (greedy, transformers' generate() semantics)\n"
    "  tokenize     print the token ids of a text\n"
    "  detokenize   print the text of token ids\n"
    "  info         print a checkpoint's configuration\n"
    "\n"
    "  gpt2c <command> --help   shows a command's options\n"
    "  gpt2c --version          prints the version\n"
    "\n"
    "exit codes: 0 success, 1 failure while running, 2 usage error\n";

static const char GENERATE_HELP[] =
    "usage: gpt2c generate -m DIR (-p TEXT | -f FILE | --ids N,N,...) [options]\n"
    "\n"
    "Continues the prompt with the model in DIR (config.json + model.safetensors + tokenizer files).\n"
    "Defaults are those of transformers' generate(): greedy, max_length 20 (prompt included).\n"
    "\n"
    "  -m, --model DIR            checkpoint folder\n"
    "  -p, --prompt TEXT          prompt text (UTF-8)\n"
    "  -f, --prompt-file FILE     read the prompt from FILE ('-' for standard input)\n"
    "      --ids N,N,...          prompt as token ids instead of text\n"
    "  -n, --max-new-tokens N     generate N new tokens (takes precedence over --max-length)\n"
    "      --max-length N         total length, prompt included (default 20)\n"
    "      --greedy               greedy decoding (the default; sampling is not built yet)\n"
    "      --repetition-penalty F penalise tokens already present (1.0 = off)\n"
    "      --eos-id N             end-of-sequence token (default: the model's; -1: none)\n"
    "      --no-cache             recompute the whole sequence each step (same tokens, slower)\n"
    "      --truncate             keep the last tokens of a prompt longer than the context\n"
    "                             (room is left for the new tokens) instead of failing\n"
    "      --logprobs N           also print the top-N log-probabilities at each new position (0..20)\n"
    "      --new-only             print only the new text, not the prompt\n"
    "      --no-cleanup           clean_up_tokenization_spaces=False when decoding\n"
    "      --json                 print one JSON object: text, token ids, finish reason, logprobs, timings\n"
    "  -v, --verbose              print timings to standard error\n"
    "  -h, --help                 this help\n"
    "\n"
    "Generation stops at EOS, at the length limit, or at the model's context end (finish reason \"length\").\n";

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

typedef struct gen_opts {
    const char *model, *prompt, *prompt_file, *ids;
    gpt2c_gen_params p;
    int json, verbose, new_only, truncate;
    unsigned flags;
} gen_opts;

static int print_logprobs(const gpt2c_gen *g, const gpt2c_tokenizer *t, int n_new, int k) {
    printf("\n--- logprobs (top %d per position) ---\n", k);
    for (int j = 0; j < n_new; j++) {
        int n;
        const int32_t *ids = gpt2c_gen_tokens(g, 0, &n);
        float chosen, lps[20];
        int32_t top[20];
        gpt2c_gen_logprobs(g, 0, j, &chosen, top, lps);
        json_t *s = token_text_json(t, ids[j]);
        char *st = json_dumps(s, JSON_ENCODE_ANY);
        printf("%3d %6d %-16s %9.4f |", j, ids[j], st ? st : "?", (double)chosen);
        free(st);
        json_decref(s);
        for (int i = 0; i < k; i++) {
            json_t *a = token_text_json(t, top[i]);
            char *as = json_dumps(a, JSON_ENCODE_ANY);
            printf(" %s %.4f", as ? as : "?", (double)lps[i]);
            free(as);
            json_decref(a);
        }
        printf("\n");
    }
    return 0;
}

static json_t *logprobs_json(const gpt2c_gen *g, const gpt2c_tokenizer *t, int n_new, int k) {
    json_t *arr = json_array();
    int n;
    const int32_t *ids = gpt2c_gen_tokens(g, 0, &n);
    for (int j = 0; j < n_new; j++) {
        float chosen, lps[20];
        int32_t top[20];
        gpt2c_gen_logprobs(g, 0, j, &chosen, top, lps);
        json_t *tops = json_array();
        for (int i = 0; i < k; i++)
            json_array_append_new(tops, json_pack("{s:i,s:o,s:f}", "id", (int)top[i], "token",
                                                  token_text_json(t, top[i]), "logprob", (double)lps[i]));
        json_array_append_new(arr, json_pack("{s:i,s:o,s:f,s:o}", "id", (int)ids[j], "token",
                                             token_text_json(t, ids[j]), "logprob", (double)chosen, "top", tops));
    }
    return arr;
}

static const char *finish_name(gpt2c_finish f) {
    return f == GPT2C_FINISH_EOS ? "eos" : f == GPT2C_FINISH_LENGTH ? "length" : "none";
}

static int run_generate(gen_opts *o) {
    int rc = EXIT_RUN;
    double t0 = now_s();
    gpt2c_tokenizer *tok = NULL;
    gpt2c_model *m = NULL;
    gpt2c_gen *g = NULL;
    gpt2c_stream *st = NULL;
    int32_t *ids = NULL;
    char *text = NULL, *prompt_text = NULL, *full = NULL;
    size_t text_len = 0;
    int n_ids = 0;
    if (gpt2c_model_load(o->model, &m) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        goto out;
    }
    if (!(tok = open_tokenizer(o->model))) goto out;
    double t_load = now_s() - t0;
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
    const int32_t *prompts[1] = {ids};
    if (gpt2c_gen_start(m, &o->p, 1, prompts, &n_ids, &g) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
        goto out;
    }
    if (gpt2c_stream_new(tok, ids, n_ids, o->flags, &st) != GPT2C_OK) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    size_t plen;
    if (gpt2c_detokenize(tok, ids, n_ids, o->flags, &prompt_text, &plen) != GPT2C_OK) {
        fprintf(stderr, "%s: --ids: an id is outside the vocabulary\n", prog);
        rc = EXIT_USAGE;
        goto out;
    }
    /* The pipeline's full text is the original prompt string plus the new
     * text; with --ids there is no string, so its decoding stands in. */
    const char *shown_prompt = text ? text : prompt_text;
    size_t shown_len = text ? text_len : plen;
    if (!o->json && !o->new_only) fwrite(shown_prompt, 1, shown_len, stdout);
    fflush(stdout);
    size_t cap = 4096, used = 0;
    full = malloc(cap);
    if (!full) goto out;
    int done_tokens = 0;
    for (;;) {
        gpt2c_status s = gpt2c_gen_step(g);
        if (s != GPT2C_OK && s != GPT2C_DONE) {
            fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
            goto out;
        }
        int n;
        const int32_t *new_ids = gpt2c_gen_tokens(g, 0, &n);
        for (; done_tokens < n; done_tokens++) {
            const char *piece;
            size_t len;
            if (gpt2c_stream_push(st, new_ids[done_tokens], &piece, &len) != GPT2C_OK) goto out;
            if (used + len + 1 > cap) {
                while (used + len + 1 > cap) cap *= 2;
                char *nf = realloc(full, cap);
                if (!nf) goto out;
                full = nf;
            }
            memcpy(full + used, piece, len);
            used += len;
            if (!o->json) {
                fwrite(piece, 1, len, stdout);
                fflush(stdout);
            }
        }
        if (s == GPT2C_DONE) break;
    }
    const char *piece;
    size_t len;
    if (gpt2c_stream_finish(st, &piece, &len) != GPT2C_OK) goto out;
    if (used + len + 1 > cap) {
        char *nf = realloc(full, used + len + 1);
        if (!nf) goto out;
        full = nf;
    }
    memcpy(full + used, piece, len);
    used += len;
    full[used] = '\0';
    int n_new;
    const int32_t *new_ids = gpt2c_gen_tokens(g, 0, &n_new);
    double pre, dec;
    gpt2c_gen_timings(g, &pre, &dec);
    if (o->json) {
        json_t *jids = json_array();
        for (int i = 0; i < n_new; i++) json_array_append_new(jids, json_integer(new_ids[i]));
        json_t *pids = json_array();
        for (int i = 0; i < n_ids; i++) json_array_append_new(pids, json_integer(ids[i]));
        json_t *root = json_pack("{s:s,s:s#,s:o,s:s#,s:o,s:s,s:{s:f,s:f,s:f,s:f,s:f}}", "model", o->model,
                                 "prompt", shown_prompt, (int)shown_len, "prompt_ids", pids, "text", full,
                                 (int)used, "token_ids", jids, "finish_reason",
                                 finish_name(gpt2c_gen_finish_reason(g, 0)), "timings", "load_s", t_load,
                                 "prefill_s", pre, "decode_s", dec, "prefill_tokens_per_s",
                                 pre > 0 ? n_ids / pre : 0.0, "decode_tokens_per_s",
                                 dec > 0 && n_new > 1 ? (n_new - 1) / dec : 0.0);
        if (!root) goto out;
        if (o->p.n_logprobs > 0) json_object_set_new(root, "logprobs", logprobs_json(g, tok, n_new, o->p.n_logprobs));
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        json_decref(root);
        if (!s) goto out;
        printf("%s\n", s);
        free(s);
    } else {
        fwrite(piece, 1, len, stdout);
        printf("\n");
        if (o->p.n_logprobs > 0) print_logprobs(g, tok, n_new, o->p.n_logprobs);
    }
    if (o->verbose)
        fprintf(stderr, "load %.3f s, prompt %d tokens in %.3f s, %d new tokens in %.3f s, finish: %s, kernels: %s\n",
                t_load, n_ids, pre, n_new, pre + dec, finish_name(gpt2c_gen_finish_reason(g, 0)), info.kernels);
    rc = 0;
out:
    fflush(stdout);
    free(full);
    free(text);
    gpt2c_free(prompt_text);
    gpt2c_free(ids);
    gpt2c_stream_free(st);
    gpt2c_gen_free(g);
    gpt2c_model_free(m);
    gpt2c_tokenizer_free(tok);
    return rc;
}

static int cmd_generate(int argc, char **argv) {
    gen_opts o = {0};
    gpt2c_gen_params_init(&o.p);
    enum { O_MAXLEN = 256, O_GREEDY, O_REP, O_EOS, O_NOCACHE, O_TRUNC, O_LOGPROBS, O_NEWONLY, O_NOCLEAN, O_JSON, O_IDS };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},        {"prompt", required_argument, 0, 'p'},
        {"prompt-file", required_argument, 0, 'f'},  {"ids", required_argument, 0, O_IDS},
        {"max-new-tokens", required_argument, 0, 'n'}, {"max-length", required_argument, 0, O_MAXLEN},
        {"greedy", no_argument, 0, O_GREEDY},        {"repetition-penalty", required_argument, 0, O_REP},
        {"eos-id", required_argument, 0, O_EOS},     {"no-cache", no_argument, 0, O_NOCACHE},
        {"truncate", no_argument, 0, O_TRUNC},       {"logprobs", required_argument, 0, O_LOGPROBS},
        {"new-only", no_argument, 0, O_NEWONLY},     {"no-cleanup", no_argument, 0, O_NOCLEAN},
        {"json", no_argument, 0, O_JSON},            {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:f:n:vh", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'p': o.prompt = optarg; break;
        case 'f': o.prompt_file = optarg; break;
        case O_IDS: o.ids = optarg; break;
        case 'n':
            if (parse_int(optarg, 0, 1 << 20, &o.p.max_new_tokens))
                return usage_error("--max-new-tokens: '%s' is not an integer in 0..1048576", optarg);
            break;
        case O_MAXLEN:
            if (parse_int(optarg, 1, 1 << 20, &o.p.max_length))
                return usage_error("--max-length: '%s' is not an integer in 1..1048576", optarg);
            break;
        case O_GREEDY: break;
        case O_REP:
            if (parse_float(optarg, &o.p.repetition_penalty) || !(o.p.repetition_penalty > 0))
                return usage_error("--repetition-penalty: '%s' is not a number > 0", optarg);
            break;
        case O_EOS:
            if (parse_int(optarg, -1, INT32_MAX, &o.p.eos_token_id))
                return usage_error("--eos-id: '%s' is not a token id or -1", optarg);
            break;
        case O_NOCACHE: o.p.use_cache = 0; break;
        case O_TRUNC: o.truncate = 1; break;
        case O_LOGPROBS:
            if (parse_int(optarg, 0, 20, &o.p.n_logprobs))
                return usage_error("--logprobs: '%s' is not an integer in 0..20", optarg);
            break;
        case O_NEWONLY: o.new_only = 1; break;
        case O_NOCLEAN: o.flags |= GPT2C_DECODE_NO_CLEANUP; break;
        case O_JSON: o.json = 1; break;
        case 'v': o.verbose = 1; break;
        case 'h': fputs(GENERATE_HELP, stdout); return 0;
        case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (!o.model) return usage_error("%s", "generate: -m DIR is required");
    if (!!o.prompt + !!o.prompt_file + !!o.ids != 1)
        return usage_error("%s", "generate: give exactly one of -p TEXT, -f FILE or --ids");
    o.flags |= GPT2C_DECODE_SKIP_SPECIAL; /* as the text-generation pipeline decodes */
    return run_generate(&o);
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
    gpt2c_tokenizer *t = open_tokenizer(model);
    int rc = EXIT_RUN;
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
    gpt2c_tokenizer *t = open_tokenizer(model);
    int rc = EXIT_RUN;
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
    double t0 = now_s();
    gpt2c_model *m;
    if (gpt2c_model_load(model, &m) != GPT2C_OK) {
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

int main(int argc, char **argv) {
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
    return usage_error("unknown command '%s'", cmd);
}
