/* perplexity.c -- `gpt2c perplexity`: a text file's perplexity under a
 * model by transformers' sliding-window recipe (gpt2c_perplexity), in any
 * weight dtype, to compare checkpoints, fine-tuning runs and dtypes. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char PERPLEXITY_HELP[] =
    "usage: gpt2c perplexity -m MODEL -f FILE [options]\n"
    "\n"
    "Prints the perplexity of FILE's text (tokenized whole) under MODEL, computed as transformers'\n"
    "perplexity guide does: windows of --context tokens every --stride tokens, each window scored\n"
    "on the tokens the previous one did not end with, perplexity = exp(mean of the windows' mean\n"
    "negative log-likelihoods).\n"
    "\n"
    "  -m, --model MODEL   checkpoint folder or hub name\n"
    "  -f, --file FILE     the text ('-': standard input)\n"
    "      --context N     tokens per window (the model's context)\n"
    "      --stride S      tokens between window starts (the context: no overlap)\n"
    "      --dtype T       weights converted at load: f32, f16, bf16 or q8 (as stored)\n"
    "      --compute T     the products' arithmetic: f32 (default) or bf16 (AVX512_BF16 CPUs)\n"
    "      --lora DIR      merge a LoRA adapter (PEFT's folder) at load\n"
    "  -t, --threads N     threads (one per core)\n"
    "      --json          print a JSON object\n"
    "  -h, --help          this help\n";

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *dtype = NULL, *compute = NULL, *lora = NULL;
    int context = 0, stride = 0, threads = 0, json = 0, c;
    enum { O_CONTEXT = 256, O_STRIDE, O_DTYPE, O_JSON, O_LORA, O_COMPUTE };
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},  {"file", required_argument, 0, 'f'},
                                       {"context", required_argument, 0, O_CONTEXT},
                                       {"stride", required_argument, 0, O_STRIDE},
                                       {"dtype", required_argument, 0, O_DTYPE},
                                       {"compute", required_argument, 0, O_COMPUTE},
                                       {"lora", required_argument, 0, O_LORA},
                                       {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, O_JSON},
                                       {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:f:t:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case O_CONTEXT:
            if (parse_int(optarg, 2, 1 << 20, &context)) return usage_error("%s", "--context: a whole number >= 2");
            break;
        case O_STRIDE:
            if (parse_int(optarg, 1, 1 << 20, &stride)) return usage_error("%s", "--stride: a whole number >= 1");
            break;
        case O_COMPUTE:
            if (check_compute(optarg)) return EXIT_USAGE;
            compute = optarg;
            break;
        case O_DTYPE:
            if (check_dtype(optarg)) return EXIT_USAGE;
            dtype = optarg;
            break;
        case 't':
            if (parse_int(optarg, 1, 1024, &threads)) return usage_error("%s", "--threads: a whole number in 1..1024");
            break;
        case O_JSON: json = 1; break;
        case O_LORA: lora = optarg; break;
        case 'h': fputs(PERPLEXITY_HELP, stdout); return 0;
        default: return option_error(c, argv, lo);
        }
    }
    if (optind < argc) return usage_error("perplexity: unexpected argument '%s'", argv[optind]);
    if (!model || !file) return usage_error("%s", "perplexity: -m MODEL and -f FILE are required");
    if (stride && context && stride > context) return usage_error("%s", "perplexity: --stride cannot exceed --context");
    size_t len = 0;
    char *text = read_file_arg(file, &len);
    if (!text) {
        fprintf(stderr, "%s: cannot read %s\n", prog, file);
        return EXIT_RUN;
    }
    int rc;
    char *dir = resolve_model(model, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc);
    if (!dir) return free(text), rc;
    gpt2c_tokenizer *tok = open_tokenizer(dir, NULL);
    gpt2c_model *m = NULL;
    gpt2c_model_params mp = {.dtype = dtype, .lora = lora, .compute = compute};
    int32_t *ids = NULL;
    int n = 0;
    rc = EXIT_RUN;
    if (!tok) goto done;
    gpt2c_status st = gpt2c_tokenize(tok, text, len, &ids, &n);
    if (st) {
        fprintf(stderr, "%s: %s: %s\n", prog, file, gpt2c_tokenizer_errmsg(tok));
        rc = st == GPT2C_ERR_INVALID ? EXIT_USAGE : EXIT_RUN;
        goto done;
    }
    if (gpt2c_model_load_ex(dir, &mp, &m)) {
        fprintf(stderr, "%s: %s\n", prog, m ? gpt2c_model_errmsg(m) : "out of memory");
        goto done;
    }
    gpt2c_perplexity_result r;
    const double t0 = now_s();
    st = gpt2c_perplexity(m, ids, n, context, stride, threads, &r);
    if (st) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        rc = st == GPT2C_ERR_INVALID ? EXIT_USAGE : EXIT_RUN;
        goto done;
    }
    const double secs = now_s() - t0;
    gpt2c_model_info info;
    gpt2c_model_get_info(m, &info);
    if (json) {
        json_t *j = json_pack("{s:f, s:f, s:I, s:I, s:I, s:s, s:f}", "perplexity", r.perplexity, "mean_nll", r.mean_nll,
                              "tokens", (json_int_t)n, "windows", (json_int_t)r.windows, "targets",
                              (json_int_t)r.targets, "dtype", info.weight_dtype, "seconds", secs);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
        if (s) printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        printf("perplexity %.4f (mean NLL %.6f) over %d tokens, %ld windows, %s weights, %.2f s\n", r.perplexity,
               r.mean_nll, n, r.windows, info.weight_dtype, secs);
    }
    rc = 0;
done:
    gpt2c_free(ids);
    gpt2c_model_free(m);
    gpt2c_tokenizer_free(tok);
    gpt2c_free(dir);
    free(text);
    return rc;
}
