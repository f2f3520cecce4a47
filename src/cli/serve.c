/* serve.c -- `gpt2c serve`: parses the options, then hands over to the
 * server (src/server), giving it a loader that resolves -m (a folder or a
 * hub name) once the HTTP port is already answering /health with 503. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../server/server.h"
#include "cli.h"

static const char SERVE_HELP[] =
    "usage: gpt2c serve -m MODEL [options]\n"
    "\n"
    "Serves the model over HTTP with OpenAI's Completions API: POST /v1/completions (streaming\n"
    "with \"stream\": true), GET /v1/models, GET /health, GET /metrics (Prometheus), POST /tokenize,\n"
    "POST /detokenize, and a page to try it at /. Every client's sequences are generated together,\n"
    "one forward pass per token for all (continuous batching).\n"
    "\n"
    "  -m, --model MODEL        checkpoint folder or hub name (required)\n"
    "      --model-id NAME      the only name clients may give as \"model\"; without it, MODEL as\n"
    "                           typed and its short name are accepted: a folder's base name\n"
    "                           (-m ./models/gpt2-q8: \"gpt2-q8\"), a hub name without @revision.\n"
    "                           /v1/models and responses give the one name, or the short name\n"
    "      --dtype T            convert the weights at load: f32, f16, bf16, q8\n"
    "      --kv-cache T         the KV cache in f32 (default) or f16 (half the memory per slot)\n"
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

typedef struct loader {
    const char *model, *dtype, *kv_cache;
} loader;

static int load(void *user, gpt2c_model **m, gpt2c_tokenizer **t) {
    loader *l = user;
    int rc;
    char *dir = resolve_model(l->model, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc);
    if (!dir) return -1;
    gpt2c_model_params mp = {.dtype = l->dtype, .kv_cache = l->kv_cache};
    if (gpt2c_model_load_ex(dir, &mp, m) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_model_errmsg(*m));
        gpt2c_model_free(*m);
        *m = NULL;
        gpt2c_free(dir);
        return -1;
    }
    int absent = 0;
    *t = open_tokenizer(dir, &absent); /* none: the server takes and answers token ids */
    gpt2c_free(dir);
    return *t || absent ? 0 : -1;
}

int cmd_serve(int argc, char **argv) {
    server_opts o;
    server_opts_init(&o);
    o.api_key = getenv("GPT2C_API_KEY");
    if (o.api_key && !*o.api_key) o.api_key = NULL;
    loader l = {0};
    const char *model_id = NULL;
    enum { O_ID = 256, O_DTYPE, O_KV, O_HOST, O_PORT, O_KEY, O_SLOTS, O_THREADS, O_QUEUE, O_MAXTOK, O_BODY, O_TIMEOUT, O_CONNS,
           O_GRACE, O_PORTFILE, O_QUIET };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"model-id", required_argument, 0, O_ID},
        {"dtype", required_argument, 0, O_DTYPE}, {"kv-cache", required_argument, 0, O_KV}, {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT}, {"api-key", required_argument, 0, O_KEY},
        {"slots", required_argument, 0, O_SLOTS}, {"threads", required_argument, 0, O_THREADS},
        {"queue", required_argument, 0, O_QUEUE}, {"max-tokens-limit", required_argument, 0, O_MAXTOK},
        {"body-limit", required_argument, 0, O_BODY}, {"timeout", required_argument, 0, O_TIMEOUT},
        {"max-connections", required_argument, 0, O_CONNS}, {"shutdown-grace", required_argument, 0, O_GRACE},
        {"port-file", required_argument, 0, O_PORTFILE}, {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    int c, v;
    float f;
    while ((c = getopt_long(argc, argv, ":m:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': l.model = optarg; break;
        case O_ID: model_id = optarg; break;
        case O_DTYPE: l.dtype = optarg; break;
        case O_KV: l.kv_cache = optarg; break;
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
        case 'h': fputs(SERVE_HELP, stdout); return 0;
        default: return option_error(c, argv, lo);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (!l.model) return usage_error("%s", "serve: -m MODEL is required");
    if (model_id && !*model_id) return usage_error("%s", "--model-id: the name is empty");
    /* With --model-id, that name alone; else the short name, and -m as typed. */
    char name[PATH_MAX];
    if (model_id) {
        o.model_id = model_id;
    } else {
        short_name(l.model, name);
        o.model_id = name;
        if (strcmp(name, l.model) != 0) o.model_alias = l.model;
    }
    return server_run(&o, load, &l);
}
