/* bench.c -- `gpt2c bench`: load, prefill and decode speed against the
 * limits measured in the same run. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static const char BENCH_HELP[] =
    "usage: gpt2c bench -m MODEL [--threads N] [--prompt-tokens N] [--gen-tokens N] [--batch B] [--json]\n"
    "                   [--runs N] [--dtype T] [--compute T] [--draft MODEL] [--draft-dtype T] [--text TEXT]\n"
    "\n"
    "Measures, in one run: load time (process start to model ready, and to the first token),\n"
    "prefill and decode speed (in a second run: the first pass also maps the weights in), peak\n"
    "RSS, and the achieved bandwidth against a roofline measured\n"
    "in the same process (reading the model's own weights on the same threads) and the f32 FMA\n"
    "peak (which bounds prefill, and batched decode once the batch is large enough; the 8-bit\n"
    "products are integer sums and can exceed it). The prompt is fixed pseudo-random token ids;\n"
    "decoding is greedy with EOS off. With a draft model (speculative decoding), decoding runs\n"
    "again with it, and the bench reports its speed against the first run's, the share of\n"
    "proposals kept, and whether the tokens are the same (they must be).\n"
    "\n"
    "  -m, --model MODEL      folder or hub name\n"
    "      --threads N        threads (default: one per physical core)\n"
    "      --prompt-tokens N  prompt length (default 512)\n"
    "      --gen-tokens N     tokens to decode (default 128)\n"
    "      --batch B          decode B sequences together (default 1)\n"
    "      --runs N           time N runs after the first and report the median of each rate\n"
    "                         (default 1; a busy machine's rates vary from run to run)\n"
    "      --dtype T          convert the weights at load: f32, f16, bf16, q8\n"
    "      --compute T        the products' arithmetic: f32 (default) or bf16 (AVX512_BF16 CPUs)\n"
    "      --kv-cache T       the KV cache in f32 (default) or f16\n"
    "      --draft MODEL      the draft model of speculative decoding (same tokenizer)\n"
    "      --draft-dtype T    the draft's dtype; without --draft, the model itself in T\n"
    "      --num-assistant-tokens N  tokens drafted at first (default 5)\n"
    "      --text TEXT        the prompt: this text, tokenized (instead of pseudo-random ids)\n"
    "      --json             one JSON object\n";

/* The median of n values (sorts them). */
static double median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int cmd_bench(int argc, char **argv, double process_start_s) {
    const char *model = NULL, *dtype = NULL, *compute = NULL, *kv_cache = NULL, *draft_spec = NULL, *draft_dtype = NULL, *text = NULL;
    int threads = 0, prompt = 512, gen = 128, batch = 1, runs = 1, json = 0, n_assist = 5, c;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"threads", required_argument, 0, 't'},
                                       {"prompt-tokens", required_argument, 0, 'p'}, {"gen-tokens", required_argument, 0, 'g'},
                                       {"batch", required_argument, 0, 'b'}, {"json", no_argument, 0, 'j'}, {"runs", required_argument, 0, 'r'},
                                       {"dtype", required_argument, 0, 'd'}, {"kv-cache", required_argument, 0, 'k'},
                                       {"compute", required_argument, 0, 'c'},
                                       {"draft", required_argument, 0, 'D'}, {"draft-dtype", required_argument, 0, 'T'},
                                       {"num-assistant-tokens", required_argument, 0, 'N'}, {"text", required_argument, 0, 'x'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': if (parse_int(optarg, 0, 1024, &threads)) return usage_error("--threads: '%s' is not an integer in 0..1024", optarg); break;
        case 'p': if (parse_int(optarg, 1, 1 << 20, &prompt)) return usage_error("--prompt-tokens: '%s' is not a positive integer", optarg); break;
        case 'g': if (parse_int(optarg, 1, 1 << 20, &gen)) return usage_error("--gen-tokens: '%s' is not a positive integer", optarg); break;
        case 'b': if (parse_int(optarg, 1, 4096, &batch)) return usage_error("--batch: '%s' is not an integer in 1..4096", optarg); break;
        case 'r': if (parse_int(optarg, 1, 100, &runs)) return usage_error("--runs: '%s' is not an integer in 1..100", optarg); break;
        case 'j': json = 1; break;
        case 'd': dtype = optarg; break;
        case 'c': if (check_compute(optarg)) return EXIT_USAGE;
            compute = optarg; break;
        case 'k': kv_cache = optarg; break;
        case 'D': draft_spec = optarg; break;
        case 'T': if (check_dtype(optarg)) return EXIT_USAGE;
            draft_dtype = optarg; break;
        case 'N': if (parse_int(optarg, 1, 7, &n_assist)) return usage_error("--num-assistant-tokens: '%s' is not an integer in 1..7", optarg); break;
        case 'x': text = optarg; break;
        case 'h': fputs(BENCH_HELP, stdout); return 0;
        default: return option_error(c, argv, lo);
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
    gpt2c_model_params mp = {.dtype = dtype, .kv_cache = kv_cache, .compute = compute};
    gpt2c_status st = gpt2c_model_load_ex(dir, &mp, &m);
    double t_model = now_s() - t0;
    if (st == GPT2C_OK) tok = open_tokenizer(dir, NULL);
    double t_ready = now_s() - process_start_s, t_tok = now_s() - t0 - t_model;
    gpt2c_model *draft = NULL;
    if (st == GPT2C_OK && tok && (draft_spec || draft_dtype)) draft = load_draft(draft_spec, draft_dtype, dir, kv_cache, &rc);
    gpt2c_free(dir);
    if (st != GPT2C_OK || !tok || ((draft_spec || draft_dtype) && !draft)) {
        if (st != GPT2C_OK) fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(m));
        gpt2c_model_free(m);
        gpt2c_tokenizer_free(tok);
        return st == GPT2C_OK && tok ? rc : EXIT_RUN; /* a malformed draft name is a usage error */
    }
    int32_t *text_ids = NULL;
    if (text) {
        if (gpt2c_tokenize(tok, text, strlen(text), &text_ids, &prompt) != GPT2C_OK || prompt < 1) {
            fprintf(stderr, "%s: --text: %s\n", prog, prompt < 1 ? "no tokens" : gpt2c_tokenizer_errmsg(tok));
            gpt2c_free(text_ids);
            gpt2c_model_free(draft);
            gpt2c_model_free(m);
            gpt2c_tokenizer_free(tok);
            return EXIT_USAGE;
        }
    }
    gpt2c_model_info info;
    gpt2c_model_get_info(m, &info);
    if (prompt + gen > info.n_ctx) {
        gpt2c_free(text_ids);
        gpt2c_model_free(draft);
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
        ids[i] = text_ids ? text_ids[i] : (int32_t)(x % (uint64_t)(info.n_vocab - 1));
    }
    gpt2c_free(text_ids);
    for (int b = 0; b < batch; b++) prompts[b] = ids, lens[b] = prompt;
    gpt2c_gen_params p;
    gpt2c_gen_params_init(&p);
    p.max_new_tokens = gen;
    p.eos_token_id = -1;
    p.n_threads = threads;
    if (threads == 0) threads = gpt2c_default_threads(); /* for the report */
    gpt2c_gen *g = NULL, *gd = NULL;
    double t_first = 0, pre = 0, dec = 0, dpre = 0, ddec = 0, pres[101], decs[101];
    rc = EXIT_RUN;
    /* The process's first pass maps the weights in as it reads them (page
     * faults: gpt2 f32's first 128-token prefill took 0.27 s against 0.11
     * s for the next): that is the first token's time, a run of its own,
     * and the rates below are the steady state a server sees. */
    gpt2c_gen_params first = p;
    first.max_new_tokens = 1;
    for (int run = 0; run <= runs; run++) {
        gpt2c_gen_free(g);
        if (gpt2c_gen_start(m, run ? &p : &first, batch, prompts, lens, &g) != GPT2C_OK) {
            fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
            goto out;
        }
        for (int step = 0;; step++) {
            gpt2c_status s = gpt2c_gen_step(g);
            if (step == 0 && !run) t_first = now_s() - process_start_s;
            if (s == GPT2C_DONE) break;
            if (s != GPT2C_OK) {
                fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(g));
                goto out;
            }
        }
        gpt2c_gen_timings(g, &pres[run], &decs[run]);
    }
    pre = median(pres + 1, runs);
    dec = median(decs + 1, runs);
    /* The same decode with the draft: speed, proposals kept, and the tokens,
     * which must be the first run's. */
    long drafted = 0, kept = 0;
    int identical = 1;
    if (draft) {
        gpt2c_gen_params pd = p;
        pd.assistant_model = draft;
        pd.num_assistant_tokens = n_assist;
        gpt2c_status s = gpt2c_gen_start(m, &pd, batch, prompts, lens, &gd);
        while (s == GPT2C_OK) s = gpt2c_gen_step(gd);
        if (s != GPT2C_DONE) {
            fprintf(stderr, "%s: %s\n", prog, gpt2c_gen_errmsg(gd));
            goto out;
        }
        gpt2c_gen_timings(gd, &dpre, &ddec);
        gpt2c_gen_draft_stats(gd, &drafted, &kept);
        for (int b = 0; b < batch; b++) {
            int na, nb;
            const int32_t *ta = gpt2c_gen_tokens(g, b, &na), *tb = gpt2c_gen_tokens(gd, b, &nb);
            identical &= na == nb && !memcmp(ta, tb, sizeof *ta * (size_t)na);
        }
    }
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
    /* A decode step reads the weights once for the whole batch. */
    double roof_tps = batch * bw / (double)info.weight_bytes;
    /* The arithmetic that bounds prefill, and batched decode once the batch
     * does more per byte than the machine (gpt2 f16, batch 8, here): 2
     * flops per weight of the layers per token, attention's 4 C per position
     * attended to per layer (full attention), and the LM head's 2 V C only
     * where logits are computed: for every decoded token but only for a
     * prompt's last (counting it for every prompt token, as this bench once
     * did, overstated gpt2's prefill rate by 38-43%). */
    const double C = info.n_embd, L = info.n_layer, layers = L * (4.0 * C * C + 2.0 * C * info.n_inner),
                 head = 2.0 * info.n_vocab * C, P = prompt;
    const double prefill_flops = batch * (2.0 * layers * P + L * 4.0 * C * P * (P + 1) / 2 + head) / pre;
    const double decode_flops = decode_tps * (2.0 * layers + head + L * 4.0 * C * (P + gen / 2.0));
    /* The cache this run's sequences fill: their positions' keys and values. */
    const uint64_t kv_bytes = info.kv_bytes_per_token * (uint64_t)batch * (uint64_t)(prompt + gen);
    const double draft_tps = ddec > 0 ? batch * steps / ddec : 0, accept = drafted ? (double)kept / (double)drafted : 0;
    gpt2c_model_info dinfo = {0};
    if (draft) gpt2c_model_get_info(draft, &dinfo);
    if (json) {
        printf("{\"model\": \"%s\", \"weight_dtype\": \"%s\", \"compute\": \"%s\", \"kv_cache\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, \"batch\": %d, \"runs\": %d, "
               "\"prompt_tokens\": %d, \"gen_tokens\": %d, \"load_model_s\": %.4f, \"load_tokenizer_s\": %.4f, "
               "\"ready_s\": %.4f, \"first_token_s\": %.4f, \"prefill_tokens_per_s\": %.2f, "
               "\"decode_tokens_per_s\": %.2f, \"decode_ms_per_step\": %.3f, \"peak_rss_mb\": %.1f, "
               "\"weight_bytes_per_token\": %llu, \"achieved_gb_per_s\": %.2f, \"roofline_gb_per_s\": %.2f, "
               "\"roofline_decode_tokens_per_s\": %.2f, \"roofline_fraction\": %.3f, \"fma_peak_gflops\": %.1f, "
               "\"prefill_gflops\": %.1f, \"prefill_peak_fraction\": %.3f, \"decode_gflops\": %.1f, "
               "\"decode_peak_fraction\": %.3f, \"kv_cache_bytes_per_token\": %llu, \"kv_cache_bytes\": %llu",
               model, info.weight_dtype, info.compute, info.kv_cache_dtype, info.kernels, threads, batch, runs, prompt, gen, t_model, t_tok, t_ready, t_first,
               prefill_tps, decode_tps, step_s * 1e3, ru.ru_maxrss / 1024.0, (unsigned long long)info.weight_bytes,
               achieved / 1e9, bw / 1e9, roof_tps, achieved / bw, flops / 1e9, prefill_flops / 1e9, prefill_flops / flops, decode_flops / 1e9,
               decode_flops / flops, (unsigned long long)info.kv_bytes_per_token, (unsigned long long)kv_bytes);
        if (draft)
            printf(", \"draft_model\": \"%s\", \"draft_weight_dtype\": \"%s\", \"draft_decode_tokens_per_s\": %.2f, "
                   "\"draft_speedup\": %.3f, \"draft_proposed\": %ld, \"draft_accepted\": %ld, \"draft_acceptance\": %.3f, "
                   "\"draft_identical\": %s",
                   draft_spec ? draft_spec : model, dinfo.weight_dtype, draft_tps, draft_tps / decode_tps, drafted, kept,
                   accept, identical ? "true" : "false");
        printf("}\n");
    } else {
        printf("model %s (%s weights%s, %s KV cache, %s kernels), %d thread%s, batch %d", model, info.weight_dtype,
               strcmp(info.compute, "bf16") ? "" : " in bf16 compute", info.kv_cache_dtype, info.kernels, threads,
               plural(threads), batch);
        if (runs > 1) printf("; rates: the median of %d runs", runs);
        printf("\n");
        printf("load: model %.1f ms, tokenizer %.1f ms; ready %.1f ms and first token %.1f ms after process start\n",
               t_model * 1e3, t_tok * 1e3, t_ready * 1e3, t_first * 1e3);
        printf("prefill: %d token%s x %d in %.3f s = %.1f tokens/s (%.1f GFLOP/s, %.0f%% of the %.1f GFLOP/s FMA peak)\n",
               prompt, plural(prompt), batch, pre, prefill_tps, prefill_flops / 1e9, 100 * prefill_flops / flops, flops / 1e9);
        printf("decode: %.2f ms per step = %.1f tokens/s; %.1f GB/s of weights, %.0f%% of the %.1f GB/s measured "
               "(roofline %.1f tokens/s); %.1f GFLOP/s, %.0f%% of the FMA peak\n",
               step_s * 1e3, decode_tps, achieved / 1e9, 100 * achieved / bw, bw / 1e9, roof_tps, decode_flops / 1e9,
               100 * decode_flops / flops);
        printf("KV cache: %llu bytes per position, %.2f MiB for %d x %d positions\n",
               (unsigned long long)info.kv_bytes_per_token, kv_bytes / 1048576.0, batch, prompt + gen);
        if (draft)
            printf("speculative decode (draft %s, %s weights): %.1f tokens/s, %.2fx the decode above; %ld of %ld "
                   "proposals kept (%.0f%%); tokens %s\n",
                   draft_spec ? draft_spec : model, dinfo.weight_dtype, draft_tps, draft_tps / decode_tps, kept, drafted,
                   100 * accept, identical ? "identical" : "DIFFERENT");
        printf("peak RSS: %.1f MB\n", ru.ru_maxrss / 1024.0);
    }
    rc = identical ? 0 : EXIT_RUN;
out:
    gpt2c_gen_free(gd);
    gpt2c_model_free(draft);
    free(ids);
    free(prompts);
    free(lens);
    gpt2c_gen_free(g);
    gpt2c_model_free(m);
    gpt2c_tokenizer_free(tok);
    return rc;
}

