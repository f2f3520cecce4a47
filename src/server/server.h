/* server.h -- `gpt2c serve`: an OpenAI-compatible HTTP server (the legacy
 * Completions API with streaming) that runs every client's generation on one
 * continuous-batching engine. Uses only the public header. */
#ifndef GPT2C_SERVER_H
#define GPT2C_SERVER_H

#include <stddef.h>

#include "gpt2c.h"

typedef struct server_opts {
    const char *model_id;    /* the name /v1/models lists and responses give */
    const char *model_alias; /* another name a request's "model" may give (-m as typed), or NULL */
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
} server_opts;

void server_opts_init(server_opts *o);

/* Loads the model and tokenizer (printing why on failure); returns 0 on
 * success. Called once the HTTP server is up, so /health says 503 meanwhile. */
typedef int (*server_load_fn)(void *user, gpt2c_model **m, gpt2c_tokenizer **t);

/* Runs until SIGTERM or SIGINT; returns the process exit code. */
int server_run(const server_opts *o, server_load_fn load, void *user);

#endif
