/* internal.h -- what the server's modules share: the request ("job") that
 * passes from an HTTP connection (http.c) to the scheduler (sched.c), the
 * OpenAI request parser and response builders (api.c), and the metrics
 * (metrics.c). */
#ifndef GPT2C_SERVER_INTERNAL_H
#define GPT2C_SERVER_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "../core/strbuf.h"
#include "server.h"

/* Seconds on the monotonic clock (latencies, timeouts, the access log). */
double server_now(void);

/* An OpenAI-style error: HTTP status, message, param, code; its "type"
 * follows from the status. */
typedef struct api_error {
    int status;
    char message[512];
    const char *param; /* NULL or the field at fault */
    const char *code;  /* NULL or a machine-readable code */
} api_error;
json_t *api_error_json(const api_error *e);

/* One completion request, parsed and tokenized. */
typedef struct completion_req {
    int n_prompts;
    int32_t **prompts;  // (n_prompts,) token ids
    int *prompt_lens;   // (n_prompts,)
    char **prompt_text; // (n_prompts,) the prompt as text (for echo)
    int n;              /* choices per prompt */
    int max_tokens;     /* new tokens per choice; may be 0 */
    int stream, include_usage, echo;
    int logprobs;       /* -1: none; else 0..5 alternatives */
    char *stops[4];
    int n_stops;
    gpt2c_gen_params p; /* sampling parameters; lists point into the arrays below */
    int32_t *bias_ids;
    float *bias;
} completion_req;

/* A request body: a JSON object, or NULL with err filled (400). */
json_t *api_load_body(const char *body, size_t len, api_error *err);
/* The body's "model": NULL when absent or null; -1 with err when not a string. */
int api_body_model(const json_t *root, const char **name, api_error *err);
/* Parses and checks a /v1/completions body (its "model" aside: the caller
 * has chosen the model by it); on failure fills err and returns -1. */
int api_parse_completion(const json_t *root, const gpt2c_tokenizer *t, const gpt2c_model_info *info,
                         const server_opts *o, int n_slots, completion_req *r, api_error *err);
void api_req_free(completion_req *r);

/* A request's life: made by http.c, run by sched.c, shared by both (and
 * freed by whichever lets go last). The output and the flags below `lock`
 * are guarded by it. */
struct MHD_Connection;
typedef struct job {
    pthread_mutex_t lock;
    int refs;
    completion_req req;
    char id[40];
    long created;
    double t_submit;
    int fd; /* the client's socket, watched for hang-ups while suspended */
    /* guarded by lock */
    strbuf out;         /* SSE bytes, or the whole body once done */
    size_t sent;        /* bytes of out handed to the connection */
    int done;           /* no more output will come */
    int status;         /* HTTP status of a non-streamed answer */
    int suspended;      /* the connection is suspended waiting for output */
    int gone;           /* the client went away: stop generating */
    struct MHD_Connection *conn;
    int prompt_tokens, completion_tokens; /* for the access log */
} job;

void job_release(job *j);

/* The scheduler: one thread that owns the engine and runs every job. */
typedef struct sched sched;
typedef struct metrics metrics;
/* model_id: the name responses give. */
sched *sched_new(gpt2c_model *m, gpt2c_model *draft, gpt2c_tokenizer *t, const char *model_id, const server_opts *o, metrics *mx, char *err,
                 size_t errlen);
int sched_n_slots(const sched *s);
/* Queues a job (taking a reference); -1 when the queue is full, -2 while
 * shutting down. */
int sched_submit(sched *s, job *j);
/* Stops taking jobs, lets running ones finish for up to grace seconds,
 * cancels the rest, and returns once every job is done; once only (later
 * calls return at once). */
void sched_shutdown(sched *s, double grace_s);
/* Shuts down (with no grace) if that was not done, then frees. */
void sched_free(sched *s);
int sched_queue_depth(sched *s);
int sched_active(sched *s);
/* Wakes the scheduler: a connection may have gone or a content reader
 * suspended. */
void sched_wake(sched *s);

/* Prometheus metrics, updated from every thread under lock: one set for the
 * server (requests that named no model it has) and one per model. */
#define METRICS_BUCKETS 12
struct metrics {
    pthread_mutex_t lock;
    unsigned long req_by_code[600];
    unsigned long prompt_tokens, completion_tokens, steps, step_seqs;
    double ttft_sum, tpot_sum;
    unsigned long ttft_n, tpot_n;
    unsigned long ttft_b[METRICS_BUCKETS], tpot_b[METRICS_BUCKETS]; /* counts per bucket, summed when rendered */
    unsigned long loads, unloads; /* a model's loads and unloads (the memory budget's) */
    unsigned long cache_hits, cache_tokens; /* requests that reused cached prompt positions, and how many */
    unsigned long drafted, accepted; /* speculative decoding: tokens the draft proposed, and those kept */
};
void metrics_init(metrics *m);
void metrics_request(metrics *m, int status);
void metrics_ttft(metrics *m, double s);
void metrics_tpot(metrics *m, double s);
void metrics_tokens(metrics *m, int prompt, int completion);
void metrics_step(metrics *m, int seqs);
/* A request's prompt positions taken from the prompt cache (0: none). */
void metrics_prompt_cache(metrics *m, int reused);
/* A finished request's speculation: tokens drafted and kept. */
void metrics_draft(metrics *m, long drafted, long accepted);
/* A model's gauges at the time of rendering, with its metrics. */
typedef struct model_gauges {
    const char *id;
    metrics *mx;
    int loaded, queue_depth, active, slots;
    uint64_t bytes; /* weights and KV cache, while loaded */
} model_gauges;
/* The text exposition: the server's requests, then every model's series
 * labelled model="id". */
int metrics_render(metrics *server, const model_gauges *g, int n_models, strbuf *out);

/* ---------------------------------------------------------------- models */

/* One model the server offers: loaded at start or on first use, unloaded
 * when idle to keep a memory budget. While a request holds it (users > 0)
 * it stays loaded, so its model, tokenizer and scheduler may be used
 * without a lock. */
enum { MODEL_UNLOADED, MODEL_LOADING, MODEL_READY, MODEL_STOPPED };
typedef struct served {
    const char *id, *alias;
    int index;                /* in o->models, for the loader */
    pthread_mutex_t lock;     /* guards the fields up to mx */
    pthread_cond_t changed;   /* a load ended */
    int state;
    int users;                /* requests holding it */
    double last_used;
    gpt2c_model *m;
    gpt2c_model *d;           /* its draft model, or NULL */
    gpt2c_tokenizer *t;       /* NULL: token ids only */
    gpt2c_model_info info;
    sched *s;
    uint64_t bytes;           /* what it is charged against the budget */
    metrics mx;
} served;

typedef struct models models;
/* The table of o->models, none loaded yet; NULL when out of memory. */
models *models_new(const server_opts *o, server_load_fn load, void *user);
int models_count(const models *t);
served *models_at(models *t, int i);
/* The model a request names: by id or alias; NULL (none named) is the
 * first. NULL when no model has that name. */
served *models_find(models *t, const char *name);
/* Holds the model for a request, loading it first if need be (and
 * unloading idle ones to make room); 0, or -1 with err filled (a failed load
 * is 500, no room or shutting down 503). */
int models_acquire(models *t, served *m, api_error *err);
void models_release(models *t, served *m);
/* Loads every model (all must fit together); 0, or -1 once the log says why. */
int models_preload(models *t);
/* Stops taking requests; gives running ones up to grace seconds in all. */
void models_shutdown(models *t, double grace_s);
void models_free(models *t);

/* Writes a line to the log (stderr) at a syslog level (3 error, 4 warning,
 * 6 info), prefixed "<level>" when stderr is the systemd journal, which then
 * files it at that level. */
void server_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Tells the service manager (sd_notify, where built with libsystemd and run
 * by systemd) a state change: "READY=1", "STOPPING=1", "STATUS=...". */
void server_notify(const char *state);

/* The browser page (page.html, embedded at build time). */
extern const unsigned char server_page[];
extern const size_t server_page_len;

#endif
