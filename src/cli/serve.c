/* serve.c -- `gpt2c serve`: parses the options, then hands over to the
 * server (src/server), giving it a loader that resolves each -m (a folder or
 * a hub name) when the server wants that model: at start, once the HTTP
 * port already answers /health with 503, or on the model's first request. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../server/server.h"
#include "cli.h"

static const char SERVE_HELP[] =
    "usage: gpt2c serve -m MODEL [-m MODEL ...] [options]\n"
    "\n"
    "Serves the model over HTTP with OpenAI's Completions API: POST /v1/completions (streaming\n"
    "with \"stream\": true), GET /v1/models, GET /health, GET /metrics (Prometheus), POST /tokenize,\n"
    "POST /detokenize, and a page to try it at /. Every client's sequences are generated together,\n"
    "one forward pass per token for all (continuous batching).\n"
    "\n"
    "Several -m serve several models: a request's \"model\" picks one (none named: the first).\n"
    "Each has its own slots, queue and metrics (labelled model=\"NAME\"); it loads on its first\n"
    "request, or at start with --preload; with --max-memory, idle ones are unloaded to make room.\n"
    "\n"
    "  -m, --model MODEL        checkpoint folder or hub name (required; repeat for more models).\n"
    "                           Clients may name it as typed or by its short name: a folder's\n"
    "                           base name (-m ./models/gpt2-q8: \"gpt2-q8\"), a hub name without\n"
    "                           @revision, which /v1/models lists. NAME=MODEL names it NAME alone\n"
    "      --model-id NAME      with one -m: the only name clients may give as \"model\"\n"
    "      --preload            load every model at start (one model always is)\n"
    "      --max-memory SIZE    keep the loaded models' weights and KV caches (at --slots) within\n"
    "                           SIZE bytes (suffix K, M, G: powers of 1024) by unloading the least\n"
    "                           recently used idle model; a request for a model that cannot fit\n"
    "                           while the others are busy gets 503 (default: no limit)\n"
    "      --dtype T            convert the weights at load: f32, f16, bf16, q8 (every model)\n"
    "      --compute T          the products' arithmetic: f32 (default) or bf16 (AVX512_BF16 CPUs)\n"
    "      --kv-cache T         the KV cache in f32 (default) or f16 (half the memory per slot)\n"
    "      --lora DIR           merge a LoRA adapter (PEFT's folder) into the model at load (one -m)\n"
    "      --draft MODEL        speculative decoding (one -m): MODEL, smaller and of the same\n"
    "                           tokenizer, drafts tokens the model checks in one pass; greedy\n"
    "                           text is unchanged, sampled text follows the same distribution\n"
    "      --draft-dtype T      the draft's dtype; without --draft, each model drafts for itself\n"
    "                           in T (self-speculation: --draft-dtype q8)\n"
    "      --num-assistant-tokens N  tokens drafted at first (1..7, default 5; then adapted)\n"
    "      --host ADDR          address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
    "      --port N             port (default 8080; 0 picks a free one)\n"
    "      --api-key KEY        require 'Authorization: Bearer KEY' on all but /health and /\n"
    "                           (default: $GPT2C_API_KEY if set)\n"
    "      --slots N            sequences generated at once: KV-cache slots (default 16)\n"
    "      --threads N          compute threads (default: one per core)\n"
    "      --queue N            requests that may wait for slots before 429 (default 64)\n"
    "      --max-tokens-limit N the most max_tokens a request may ask for (default: no limit)\n"
    "      --body-limit BYTES   larger request bodies get 413 (default 1048576)\n"
    "      --timeout S          close connections idle this long (default 30)\n"
    "      --max-connections N  (default 4096)\n"
    "      --shutdown-grace S   on SIGTERM, time in-flight requests get to finish (default 10)\n"
    "      --port-file FILE     write the port there once listening (for scripts with --port 0)\n"
    "      --quiet              no access log (one JSON line per request on stderr)\n"
    "      --no-prompt-cache    compute every prompt whole (by default a request whose prompt\n"
    "                           starts as a recent one's did starts after that prefix: the same\n"
    "                           tokens, sooner)\n"
    "  -h, --help               this help\n";

/* The short name of -m spec, which /v1/models lists and requests may give
 * (besides spec as typed): a folder's base name ("./some/dir/" is "dir";
 * ".", ".." and "/" name the folder they resolve to), a hub name without its
 * @revision. Written to out (PATH_MAX bytes). */
static void short_name(const char *spec, char *out) {
    struct stat st;
    size_t n = strlen(spec);
    const char *name = spec;
    if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
        while (n > 1 && spec[n - 1] == '/') n--;
        name = spec + n;
        while (name > spec && name[-1] != '/') name--;
        n -= (size_t)(name - spec);
        char real[PATH_MAX];
        if (n <= 2 && strncmp(name, "..", n) == 0) {
            if (realpath(spec, real) && strcmp(real, "/") != 0) name = strrchr(real, '/') + 1, n = strlen(name);
            else name = spec, n = strlen(spec);
            snprintf(out, PATH_MAX, "%.*s", (int)n, name);
            return;
        }
    } else {
        const char *rev = strrchr(spec, '@'); /* org/name@revision */
        if (rev && rev > spec) n = (size_t)(rev - spec);
    }
    snprintf(out, PATH_MAX, "%.*s", (int)n, name);
}

#define MAX_MODELS 64 /* -m given at most this often (the usage error says 64) */

typedef struct loader {
    const char *specs[MAX_MODELS]; /* -m as typed, NAME= taken off */
    const char *dtype, *compute, *kv_cache, *draft, *draft_dtype, *lora;
} loader;

static int load(void *user, int index, gpt2c_model **m, gpt2c_model **draft, gpt2c_tokenizer **t, char *err,
                size_t errlen) {
    loader *l = user;
    int rc;
    *m = NULL;
    *draft = NULL;
    *t = NULL;
    char *dir = resolve_model_msg(l->specs[index], GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc, err, errlen);
    if (!dir) return -1;
    gpt2c_model_params mp = {.dtype = l->dtype, .kv_cache = l->kv_cache, .lora = l->lora, .compute = l->compute};
    gpt2c_status st = gpt2c_model_load_ex(dir, &mp, m);
    if (st != GPT2C_OK) {
        snprintf(err, errlen, "%s", gpt2c_model_errmsg(*m));
        gpt2c_model_free(*m);
        *m = NULL;
    } else {
        int absent = 0; /* no tokenizer files: the server takes and answers token ids */
        if (!(*t = open_tokenizer_msg(dir, &absent, err, errlen)) && !absent) {
            st = GPT2C_ERR_FORMAT;
            gpt2c_model_free(*m);
            *m = NULL;
        } else if ((l->draft || l->draft_dtype) &&
                   !(*draft = load_draft_msg(l->draft, l->draft_dtype, dir, l->kv_cache, &rc, err, errlen))) {
            st = GPT2C_ERR_FORMAT;
            gpt2c_model_free(*m);
            gpt2c_tokenizer_free(*t);
            *m = NULL;
            *t = NULL;
        }
    }
    gpt2c_free(dir);
    return st == GPT2C_OK ? 0 : -1;
}

/* SIZE: bytes, or with a K, M, G or T suffix (powers of 1024; an optional
 * trailing B or iB). 0 on success. */
static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0)) return -1;
    static const char units[] = "KMGT";
    const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (u && *u) {
        for (const char *k = units; k <= u; k++) v *= 1024;
        end++;
        if (*end == 'i' && end[1] == 'B') end += 2;
        else if (*end == 'B' || *end == 'b') end++;
    } else if (*end == 'B' || *end == 'b') {
        end++;
    }
    if (*end || v > 1.8e19) return -1;
    *out = (uint64_t)v;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    server_opts o;
    server_opts_init(&o);
    o.api_key = getenv("GPT2C_API_KEY");
    if (o.api_key && !*o.api_key) o.api_key = NULL;
    loader l = {0};
    server_model models[MAX_MODELS];
    char shorts[MAX_MODELS][PATH_MAX];
    int n = 0;
    const char *model_id = NULL;
    enum { O_ID = 256, O_PRELOAD, O_MAXMEM, O_DTYPE, O_COMPUTE, O_KV, O_HOST, O_PORT, O_KEY, O_SLOTS, O_THREADS, O_QUEUE, O_MAXTOK, O_BODY, O_TIMEOUT, O_CONNS,
           O_GRACE, O_PORTFILE, O_QUIET, O_NOCACHE, O_DRAFT, O_DRAFT_DTYPE, O_NASSIST, O_LORA };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"model-id", required_argument, 0, O_ID},
        {"preload", no_argument, 0, O_PRELOAD}, {"max-memory", required_argument, 0, O_MAXMEM},
        {"dtype", required_argument, 0, O_DTYPE}, {"compute", required_argument, 0, O_COMPUTE}, {"kv-cache", required_argument, 0, O_KV}, {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT}, {"api-key", required_argument, 0, O_KEY},
        {"slots", required_argument, 0, O_SLOTS}, {"threads", required_argument, 0, O_THREADS},
        {"queue", required_argument, 0, O_QUEUE}, {"max-tokens-limit", required_argument, 0, O_MAXTOK},
        {"body-limit", required_argument, 0, O_BODY}, {"timeout", required_argument, 0, O_TIMEOUT},
        {"max-connections", required_argument, 0, O_CONNS}, {"shutdown-grace", required_argument, 0, O_GRACE},
        {"port-file", required_argument, 0, O_PORTFILE}, {"quiet", no_argument, 0, O_QUIET},
        {"no-prompt-cache", no_argument, 0, O_NOCACHE}, {"draft", required_argument, 0, O_DRAFT},
        {"draft-dtype", required_argument, 0, O_DRAFT_DTYPE}, {"num-assistant-tokens", required_argument, 0, O_NASSIST},
        {"lora", required_argument, 0, O_LORA}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    int c, v;
    float f;
    while ((c = getopt_long(argc, argv, ":m:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': {
            if (n == MAX_MODELS) return usage_error("-m %s: at most 64 models", optarg);
            /* NAME=MODEL names it; a folder whose own name has '=' is taken as it is. */
            struct stat st;
            const char *eq = strchr(optarg, '=');
            if (eq && stat(optarg, &st) != 0) {
                if (eq == optarg || !eq[1]) return usage_error("-m %s: NAME=MODEL needs both", optarg);
                snprintf(shorts[n], PATH_MAX, "%.*s", (int)(eq - optarg), optarg);
                models[n] = (server_model){.id = shorts[n]};
                l.specs[n++] = eq + 1;
            } else {
                short_name(optarg, shorts[n]);
                models[n] = (server_model){.id = shorts[n], .alias = strcmp(shorts[n], optarg) ? optarg : NULL};
                l.specs[n++] = optarg;
            }
            break;
        }
        case O_ID: model_id = optarg; break;
        case O_PRELOAD: o.preload = 1; break;
        case O_MAXMEM: if (parse_size(optarg, &o.max_memory)) return usage_error("--max-memory: '%s' is not a size (bytes, or with K, M, G or T)", optarg); break;
        case O_DTYPE: l.dtype = optarg; break;
        case O_COMPUTE: if (check_compute(optarg)) return EXIT_USAGE;
            l.compute = optarg; break;
        case O_KV: l.kv_cache = optarg; break;
        case O_LORA: l.lora = optarg; break;
        case O_HOST: o.host = optarg; break;
        case O_PORT: if (parse_int(optarg, 0, 65535, &o.port)) return usage_error("--port: '%s' is not a port number", optarg); break;
        case O_KEY: o.api_key = *optarg ? optarg : NULL; break;
        case O_SLOTS: if (parse_int(optarg, 1, 4096, &o.slots)) return usage_error("--slots: '%s' is not an integer in 1..4096", optarg); break;
        case O_THREADS: if (parse_int(optarg, 0, 1024, &o.threads)) return usage_error("--threads: '%s' is not an integer in 0..1024", optarg); break;
        case O_QUEUE: if (parse_int(optarg, 1, 1 << 20, &o.queue_max)) return usage_error("--queue: '%s' is not a positive integer", optarg); break;
        case O_MAXTOK: if (parse_int(optarg, 1, 1 << 30, &o.max_tokens_limit)) return usage_error("--max-tokens-limit: '%s' is not a positive integer", optarg); break;
        case O_BODY: if (parse_int(optarg, 1024, 1 << 30, &v)) return usage_error("--body-limit: '%s' is not an integer in 1024..2^30", optarg);
            o.body_limit = (size_t)v; break;
        case O_TIMEOUT: if (parse_int(optarg, 1, 86400, &o.timeout_s)) return usage_error("--timeout: '%s' is not an integer in 1..86400", optarg); break;
        case O_CONNS: if (parse_int(optarg, 1, 1 << 20, &o.max_connections)) return usage_error("--max-connections: '%s' is not a positive integer", optarg); break;
        case O_GRACE: if (parse_float(optarg, &f) || !(f >= 0)) return usage_error("--shutdown-grace: '%s' is not a number of seconds", optarg);
            o.shutdown_grace_s = f; break;
        case O_PORTFILE: o.port_file = optarg; break;
        case O_QUIET: o.quiet = 1; break;
        case O_NOCACHE: o.no_prompt_cache = 1; break;
        case O_DRAFT: l.draft = optarg; break;
        case O_DRAFT_DTYPE: if (check_dtype(optarg)) return EXIT_USAGE;
            l.draft_dtype = optarg; break;
        case O_NASSIST: if (parse_int(optarg, 1, 7, &o.num_assistant_tokens)) return usage_error("--num-assistant-tokens: '%s' is not an integer in 1..7", optarg); break;
        case 'h': fputs(SERVE_HELP, stdout); return 0;
        default: return option_error(c, argv, lo);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (!n) return usage_error("%s", "serve: -m MODEL is required");
    if (model_id && !*model_id) return usage_error("%s", "--model-id: the name is empty");
    if (l.draft && n > 1) return usage_error("%s", "--draft drafts for one model: with several, --draft-dtype T lets each draft for itself");
    if (model_id && n > 1) return usage_error("%s", "--model-id names one model: with several, name each as -m NAME=MODEL");
    if (model_id) models[0] = (server_model){.id = model_id}; /* that name alone */
    /* Every name must pick one model. */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < i; k++) {
            const char *a[2] = {models[i].id, models[i].alias}, *b[2] = {models[k].id, models[k].alias};
            for (int x = 0; x < 4; x++)
                if (a[x / 2] && b[x % 2] && !strcmp(a[x / 2], b[x % 2]))
                    return usage_error("two models answer to the name '%s': name one as -m NAME=MODEL", a[x / 2]);
        }
    o.models = models;
    o.n_models = n;
    return server_run(&o, load, &l);
}
