/* main.c -- the gpt2c command line: the command dispatch, and the small
 * commands (tokenize, detokenize, info, pull, ls, rm). generate.c,
 * bench.c and serve.c hold the large ones, common.c what they share. Uses only the
 * public header. Exit codes (cli.h): 0 success; 1 a file, folder, download or
 * model that cannot be used, or a failure while running; 2 a usage error: what
 * was asked cannot work whatever the files hold (bad options or values, a
 * prompt the model cannot take). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

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
    "  convert      write a checkpoint with f16, bf16 or 8-bit weights that loads with no conversion\n"
    "  bench        measure load time, prefill and decode speed against the hardware's limits\n"
    "  serve        serve the model over HTTP with OpenAI's Completions API\n"
    "  finetune     train a model further on your text (AdamW, as transformers' Trainer)\n"
    "  perplexity   score a text file under a model (transformers' sliding-window recipe)\n"
    "\n"
    "-m takes a checkpoint folder or a hub name (gpt2, openai-community/gpt2-medium,\n"
    "distilbert/distilgpt2, org/name@revision). Names are looked up in the Hugging Face cache\n"
    "that Python's huggingface_hub uses, and downloaded when missing. Environment: HF_ENDPOINT,\n"
    "HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME, HF_TOKEN (or $HF_HOME/token), HF_HUB_OFFLINE=1.\n"
    "\n"
    "  gpt2c <command> --help   shows a command's options\n"
    "  gpt2c --version          prints the version\n"
    "\n"
    "exit codes:\n"
    "  0  success\n"
    "  1  failure while running: a file, folder, download or model that cannot be used (missing,\n"
    "     unreadable, malformed), out of memory, a write that fails\n"
    "  2  usage error: what was asked cannot work, whatever the files hold: unknown options, bad\n"
    "     values, parameters that do not go together (--num-beams with --logprobs), a prompt the\n"
    "     model cannot take (longer than its context, not UTF-8, ids outside the vocabulary)\n";

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
    "      --json             print {\"ids\": [...], \"tokens\": [...]}, the tokens as transformers'\n"
    "                         convert_ids_to_tokens() gives them: vocab.json's strings, each byte\n"
    "                         as GPT-2's printable stand-in (\" world\" is \"\u0120world\")\n"
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
        default: return option_error(c, argv, lo);
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
    gpt2c_tokenizer *t = dir ? open_tokenizer(dir, NULL) : NULL;
    if (dir) rc = EXIT_RUN;
    gpt2c_free(dir);
    int32_t *ids = NULL;
    int n = 0;
    gpt2c_status st = t ? gpt2c_tokenize(t, text, len, &ids, &n) : GPT2C_OK;
    if (st != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_tokenizer_errmsg(t));
        if (st == GPT2C_ERR_INVALID) rc = EXIT_USAGE; /* the text itself: not UTF-8, a word too long */
    } else if (t) {
        if (json) {
            /* The tokens as convert_ids_to_tokens() shows them: the
             * vocabulary's strings, which say which bytes each token holds
             * (decoded text would show half a character as U+FFFD). */
            json_t *ji = json_array(), *jt = json_array();
            for (int i = 0; i < n; i++) {
                char *ts = gpt2c_token_string(t, ids[i]);
                json_array_append_new(ji, json_integer(ids[i]));
                json_array_append_new(jt, ts ? json_string(ts) : json_null());
                gpt2c_free(ts);
            }
            json_t *root = json_pack("{s:o,s:o}", "ids", ji, "tokens", jt);
            char *s = root ? json_dumps(root, 0) : NULL;
            json_decref(root);
            if (!s) {
                fprintf(stderr, "%s: out of memory\n", prog);
                goto out;
            }
            printf("%s\n", s);
            free(s);
        } else {
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        }
        rc = 0;
    }
out:
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
        default: return option_error(c, argv, lo);
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
    gpt2c_tokenizer *t = dir ? open_tokenizer(dir, NULL) : NULL;
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
        default: return option_error(c, argv, lo);
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
           "\"kernels\": \"%s\", \"model_type\": \"%s\", \"load_s\": %.4f}\n",
           i.n_vocab, i.n_ctx, i.n_embd, i.n_head, i.n_layer, i.n_inner, i.bos_token_id, i.eos_token_id,
           i.pad_token_id, i.weight_dtype, i.kernels, i.model_type, dt);
    gpt2c_model_free(m);
    return 0;
}

static const char CONVERT_HELP[] =
    "usage: gpt2c convert -m MODEL --dtype f16|bf16|q8|f32 -o DIR\n"
    "\n"
    "Writes MODEL with its weight matrices in another dtype as a new checkpoint folder DIR that\n"
    "loads by mmap with no conversion at start-up: model.safetensors plus MODEL's config and\n"
    "tokenizer files. f16 and bf16 folders are ordinary Hugging Face checkpoints; q8 (int8 in\n"
    "blocks of 32 with an f16 absmax scale) stores each matrix as I8 plus an F16 NAME_scale\n"
    "tensor, which gpt2c reads. DIR must not exist; it appears complete or not at all.\n"
    "\n"
    "  -m, --model MODEL   checkpoint folder or hub name\n"
    "      --dtype T       f16, bf16, q8 or f32\n"
    "  -o, --output DIR    the folder to create\n"
    "  -h, --help          this help\n";

static int cmd_convert(int argc, char **argv) {
    const char *model = NULL, *dtype = NULL, *outdir = NULL;
    int c;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"dtype", required_argument, 0, 'd'},
                                       {"output", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': dtype = optarg; break;
        case 'o': outdir = optarg; break;
        case 'h': fputs(CONVERT_HELP, stdout); return 0;
        default: return option_error(c, argv, lo);
        }
    }
    if (optind < argc) return usage_error("convert: unexpected argument '%s'", argv[optind]);
    if (!model || !dtype || !outdir) return usage_error("%s", "convert: -m MODEL, --dtype T and -o DIR are required");
    if (check_dtype(dtype)) return EXIT_USAGE;
    struct stat sb; /* fail before loading; gpt2c_model_save checks again */
    if (lstat(outdir, &sb) == 0) return usage_error("convert: %s exists; give a new folder", outdir);
    int rc;
    char *dir = resolve_model(model, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc);
    if (!dir) return rc;
    double t0 = now_s();
    gpt2c_model *m;
    gpt2c_model_params mp = {.dtype = dtype};
    gpt2c_status st = gpt2c_model_load_ex(dir, &mp, &m);
    gpt2c_free(dir);
    if (st == GPT2C_OK) st = gpt2c_model_save(m, outdir);
    if (st != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        gpt2c_model_free(m);
        return st == GPT2C_ERR_INVALID ? EXIT_USAGE : EXIT_RUN;
    }
    gpt2c_model_info i;
    gpt2c_model_get_info(m, &i);
    fprintf(stderr, "%s: wrote %s (%s weights, %.1f MB of matrices per token) in %.2f s\n", prog, outdir,
            i.weight_dtype, (double)i.weight_bytes / 1e6, now_s() - t0);
    gpt2c_model_free(m);
    return 0;
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
    double process_start_s = now_s();
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
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {{"generate", cmd_generate}, {"tokenize", cmd_tokenize}, {"detokenize", cmd_detokenize},
                    {"info", cmd_info},         {"pull", cmd_pull},         {"convert", cmd_convert},
                    {"serve", cmd_serve},       {"finetune", cmd_finetune},
                    {"perplexity", cmd_perplexity}};
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(cmd, commands[i].name)) {
            set_command(commands[i].name); /* usage errors point to its help */
            return commands[i].run(argc - 1, argv + 1);
        }
    if (!strcmp(cmd, "bench") || !strcmp(cmd, "ls") || !strcmp(cmd, "rm")) { /* those that take more */
        set_command(cmd);
        return !strcmp(cmd, "bench") ? cmd_bench(argc - 1, argv + 1, process_start_s)
                                     : hub_command(argc - 1, argv + 1, !strcmp(cmd, "rm"));
    }
    return usage_error("unknown command '%s'", cmd);
}
