/* server.h -- `gpt2c serve`: an OpenAI-compatible HTTP server (the legacy
 * Completions API with streaming) that runs every client's generation on one
 * continuous-batching engine. Uses only the public header. */
#ifndef GPT2C_SERVER_H
#define GPT2C_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "gpt2c.h"

/* One model the server offers, by the names a request's "model" may give. */
typedef struct server_model {
    const char *id;    /* the name /v1/models lists and responses give */
    const char *alias; /* another name it answers to (-m as typed), or NULL */
} server_model;

typedef struct server_opts {
    const server_model *models; /* the first is the default, for requests that name none */
    int n_models;
    int preload;             /* load every model before answering (always so with one) */
    uint64_t max_memory;     /* 0: no budget; else idle models are unloaded so that the loaded
                                ones' weights and KV caches stay within this many bytes */
    const char *host;        /* 127.0.0.1 */
    int port;                /* 8080; 0 picks a free port */
    const char *api_key;     /* NULL: no authentication */
    int slots;               /* sequences generated together (KV cache slots) */
    int threads;             /* 0: one per core */
    int queue_max;           /* requests waiting for slots before 429 */
    int max_tokens_limit;    /* the ceiling on a request's max_tokens */
    size_t body_limit;       /* request bodies over this get 413 */
    int timeout_s;           /* idle connections are closed after this */
    int max_connections;
    double shutdown_grace_s; /* on SIGTERM, in-flight work gets this long to finish */
    const char *port_file;   /* if set, the bound port is written there once listening */
    int quiet;               /* no access log */
    int no_prompt_cache;     /* recompute every prompt whole */
    int num_assistant_tokens; /* with a draft model: tokens drafted at first (5) */
} server_opts;

void server_opts_init(server_opts *o);

/* Loads model `index` of o->models, its draft model for speculative
 * decoding (NULL: none) and its tokenizer (NULL for a folder that has none);
 * returns 0, or -1 with why in err. Called once the HTTP server is
 * up (preloading: /health says 503 meanwhile), or on an HTTP thread when a
 * request first names the model; for several models at once. */
typedef int (*server_load_fn)(void *user, int index, gpt2c_model **m, gpt2c_model **draft, gpt2c_tokenizer **t,
                              char *err, size_t errlen);

/* Runs until SIGTERM or SIGINT; returns the process exit code. */
int server_run(const server_opts *o, server_load_fn load, void *user);

#endif
