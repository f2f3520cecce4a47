/* http.c -- the HTTP side of `gpt2c serve`, on libmicrohttpd: routing,
 * authentication, body limits, OpenAI-shaped errors, streamed and waiting
 * answers, the access log, and the process's life (start, load, SIGTERM).
 *
 * libmicrohttpd runs a small pool of epoll threads, so thousands of idle or
 * slow connections cost a file descriptor each, not a thread. A completion
 * request becomes a job for the scheduler; its connection is suspended
 * while it waits for output and resumed by the scheduler when there is some,
 * so no HTTP thread ever blocks on the model. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

typedef struct server {
    const server_opts *o;
    struct MHD_Daemon *d;
    models *models;
    metrics mx;         /* requests that named no model of ours */
    atomic_int ready;   /* the preloaded models are loaded */
    atomic_int stopping;
    atomic_long next_id;
    atomic_int open_jobs; /* jobs still tied to a connection */
} server;

typedef struct conn_ctx {
    double t0;
    char method[16], path[128], remote[64];
    strbuf body;
    int too_big, status;
    served *sm; /* the model the request named (its metrics count the request) */
    int held;   /* ... and holds (models_acquire) until the connection ends */
    job *j;
} conn_ctx;

void server_opts_init(server_opts *o) {
    *o = (server_opts){.host = "127.0.0.1", .port = 8080, .slots = 16, .queue_max = 64,
                       .max_tokens_limit = 1 << 20, .body_limit = 1 << 20, .timeout_s = 30, .max_connections = 4096,
                       .shutdown_grace_s = 10, .num_assistant_tokens = 5};
}

/* ------------------------------------------------------------- responses */

/* Queues r (and lets go of it) with the header every answer carries: the
 * API may be called from pages of other origins, as OpenAI's is. */
static enum MHD_Result queue(struct MHD_Connection *c, conn_ctx *x, int status, struct MHD_Response *r) {
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    x->status = status;
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result respond(struct MHD_Connection *c, conn_ctx *x, int status, const char *type, const void *body,
                               size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 429 || status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    return queue(c, x, status, r);
}

static enum MHD_Result respond_json(struct MHD_Connection *c, conn_ctx *x, int status, json_t *v) {
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(v);
    if (!s) return respond(c, x, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 37);
    enum MHD_Result ok = respond(c, x, status, "application/json", s, strlen(s));
    free(s);
    return ok;
}

static enum MHD_Result respond_error(struct MHD_Connection *c, conn_ctx *x, int status, const char *code,
                                     const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result respond_error(struct MHD_Connection *c, conn_ctx *x, int status, const char *code,
                                     const char *param, const char *fmt, ...) {
    api_error e = {.status = status, .code = code, .param = param};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return respond_json(c, x, status, api_error_json(&e));
}

/* ----------------------------------------------------------- the routes */

/* A model's /v1/models entry; meta (the model's shape) while it is loaded. */
static json_t *model_json(const server_opts *o, served *m) {
    pthread_mutex_lock(&m->lock);
    static const char *const STATE[] = {"unloaded", "loading", "loaded", "stopped"};
    json_t *v = json_pack("{s:s,s:s,s:i,s:s,s:s}", "id", m->id, "object", "model", "created", 0, "owned_by", "gpt2c",
                          "status", STATE[m->state]);
    const gpt2c_model_info *in = &m->info;
    if (m->state == MODEL_READY)
        json_object_set_new(v, "meta", json_pack("{s:i,s:i,s:i,s:s,s:s,s:s,s:I}", "n_ctx", in->n_ctx, "n_vocab",
                                                 in->n_vocab, "slots", o->slots, "dtype",
                                                 in->weight_dtype ? in->weight_dtype : "", "compute",
                                                 in->compute ? in->compute : "f32", "model_type",
                                                 in->model_type ? in->model_type : "", "memory_bytes",
                                                 (json_int_t)m->bytes));
    pthread_mutex_unlock(&m->lock);
    return v;
}

/* 404 for a "model" this server does not have, naming those it has. */
static enum MHD_Result unknown_model(server *sv, struct MHD_Connection *c, conn_ctx *x, const char *name) {
    strbuf b = {0};
    for (int i = 0; i < models_count(sv->models); i++)
        sb_printf(&b, "%s'%.100s'", i ? ", " : "", models_at(sv->models, i)->id);
    enum MHD_Result ok = respond_error(c, x, 404, "model_not_found", "model",
                                       "The model '%.200s' does not exist: this server serves %.300s", name,
                                       b.p ? b.p : "");
    sb_free(&b);
    return ok;
}

static enum MHD_Result get_models(server *sv, struct MHD_Connection *c, conn_ctx *x, const char *one) {
    if (one) {
        served *m = models_find(sv->models, one);
        return m ? respond_json(c, x, 200, model_json(sv->o, m)) : unknown_model(sv, c, x, one);
    }
    json_t *data = json_array();
    for (int i = 0; i < models_count(sv->models); i++)
        json_array_append_new(data, model_json(sv->o, models_at(sv->models, i)));
    return respond_json(c, x, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

/* The body as a JSON object and the model it names (the first when it names
 * none), held for the rest of the request: 0, or -1 once answered with the
 * error. */
static int take_model(server *sv, struct MHD_Connection *c, conn_ctx *x, json_t **root, enum MHD_Result *answered) {
    api_error e;
    const char *name;
    if (!(*root = api_load_body(x->body.p ? x->body.p : "", x->body.n, &e)) || api_body_model(*root, &name, &e)) {
        json_decref(*root);
        *answered = respond_json(c, x, e.status, api_error_json(&e));
        return -1;
    }
    if (!(x->sm = models_find(sv->models, name))) {
        *answered = unknown_model(sv, c, x, name);
        json_decref(*root);
        return -1;
    }
    if (models_acquire(sv->models, x->sm, &e)) {
        *answered = respond_json(c, x, e.status, api_error_json(&e));
        json_decref(*root);
        return -1;
    }
    x->held = 1;
    return 0;
}

static enum MHD_Result post_tokenize(server *sv, struct MHD_Connection *c, conn_ctx *x, int detok) {
    json_t *root;
    enum MHD_Result ok;
    if (take_model(sv, c, x, &root, &ok)) return ok;
    gpt2c_tokenizer *t = x->sm->t;
    if (!t) {
        json_decref(root);
        return respond_error(c, x, 400, "no_tokenizer", NULL, "this model has no tokenizer files");
    }
    if (!detok) {
        json_t *v = json_object_get(root, "content");
        if (!json_is_string(v)) {
            json_decref(root);
            return respond_error(c, x, 400, "invalid_type", "content", "'content' must be a string");
        }
        int32_t *ids;
        int n;
        gpt2c_status st = gpt2c_tokenize(t, json_string_value(v), json_string_length(v), &ids, &n);
        if (st) {
            /* (the tokenizer's own message is shared by every thread using it) */
            ok = respond_error(c, x, st == GPT2C_ERR_NOMEM ? 500 : 400, "invalid_value", "content", "%s",
                               gpt2c_status_string(st));
        } else {
            json_t *arr = json_array();
            for (int i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
            gpt2c_free(ids);
            ok = respond_json(c, x, 200, json_pack("{s:o}", "tokens", arr));
        }
    } else {
        json_t *v = json_object_get(root, "tokens");
        size_t n = json_is_array(v) ? json_array_size(v) : 0;
        int32_t *ids = malloc((n + 1) * sizeof *ids);
        int bad = !json_is_array(v) || !ids;
        for (size_t i = 0; !bad && i < n; i++) {
            json_t *e = json_array_get(v, i);
            bad = !json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= x->sm->info.n_vocab;
            if (!bad) ids[i] = (int32_t)json_integer_value(e);
        }
        char *text = NULL;
        size_t len = 0;
        if (bad || gpt2c_detokenize(t, ids, (int)n, 0, &text, &len) != GPT2C_OK)
            ok = respond_error(c, x, 400, "invalid_value", "tokens", "'tokens' must be an array of token ids in 0..%d",
                               x->sm->info.n_vocab - 1);
        else
            ok = respond_json(c, x, 200, json_pack("{s:s#}", "content", text, (int)len));
        free(ids);
        gpt2c_free(text);
    }
    json_decref(root);
    return ok;
}

/* The stream's bytes as the scheduler produces them; with none ready the
 * connection is suspended until the scheduler resumes it. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    job *j = cls;
    pthread_mutex_lock(&j->lock);
    ssize_t r;
    size_t avail = j->out.n - j->sent;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, j->out.p + j->sent, n);
        j->sent += n;
        if (j->sent == j->out.n) j->out.n = j->sent = 0; /* all sent: reuse the buffer */
        r = (ssize_t)n;
    } else if (j->done) {
        r = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (j->gone) {
        r = MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        j->suspended = 1;
        MHD_suspend_connection(j->conn);
        r = 0;
    }
    pthread_mutex_unlock(&j->lock);
    return r;
}

static enum MHD_Result post_completions(server *sv, struct MHD_Connection *c, conn_ctx *x) {
    json_t *root;
    enum MHD_Result answered;
    if (take_model(sv, c, x, &root, &answered)) return answered;
    served *m = x->sm;
    job *j = calloc(1, sizeof *j);
    api_error e;
    int bad = !j || api_parse_completion(root, m->t, &m->info, sv->o, sched_n_slots(m->s), &j->req, &e);
    json_decref(root);
    if (!j) return respond_error(c, x, 500, NULL, NULL, "out of memory");
    if (bad) {
        api_req_free(&j->req);
        free(j);
        return respond_json(c, x, e.status, api_error_json(&e));
    }
    pthread_mutex_init(&j->lock, NULL);
    j->refs = 1;
    j->created = (long)time(NULL);
    j->t_submit = server_now();
    j->conn = c;
    j->status = 200;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    snprintf(j->id, sizeof j->id, "cmpl-%08lx%016lx", (unsigned long)time(NULL) & 0xffffffffUL,
             (unsigned long)(atomic_fetch_add(&sv->next_id, 1) + 1) * 0x9E3779B97F4A7C15UL);
    x->j = j;
    atomic_fetch_add(&sv->open_jobs, 1);
    int rc = sched_submit(m->s, j);
    if (rc == -1)
        return respond_error(c, x, 429, "rate_limit_exceeded", NULL,
                             "the server is busy: %d requests are already waiting; retry shortly", sv->o->queue_max);
    if (rc == -2) return respond_error(c, x, 503, "shutting_down", NULL, "the server is shutting down");
    if (j->req.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, j, NULL);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
        return queue(c, x, 200, r);
    }
    pthread_mutex_lock(&j->lock);
    if (!j->done) {
        j->suspended = 1;
        MHD_suspend_connection(c);
    }
    pthread_mutex_unlock(&j->lock);
    return MHD_YES;
}

/* A waiting (non-streamed) completion, called again once resumed. */
static enum MHD_Result completion_ready(struct MHD_Connection *c, conn_ctx *x) {
    job *j = x->j;
    pthread_mutex_lock(&j->lock);
    if (j->done && !j->gone) {
        int status = j->status;
        strbuf body = j->out;
        j->out = (strbuf){0};
        pthread_mutex_unlock(&j->lock);
        enum MHD_Result ok = respond(c, x, status, "application/json", body.p ? body.p : "", body.n);
        sb_free(&body);
        return ok;
    }
    if (j->gone) {
        pthread_mutex_unlock(&j->lock);
        return MHD_NO; /* the client left: close */
    }
    j->suspended = 1;
    MHD_suspend_connection(c);
    pthread_mutex_unlock(&j->lock);
    return MHD_YES;
}

/* Constant-time comparison, so the key cannot be guessed byte by byte. */
static int key_matches(const char *given, const char *key) {
    size_t n = strlen(key), m = strlen(given);
    unsigned char d = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) d |= (unsigned char)(key[i] ^ (i < m ? given[i] : 0));
    return d == 0;
}

static enum MHD_Result route(server *sv, struct MHD_Connection *c, conn_ctx *x) {
    const char *p = x->path, *m = x->method;
    int get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    if (x->too_big)
        return respond_error(c, x, 413, "request_too_large", NULL, "the request body is over the limit of %zu bytes",
                             sv->o->body_limit);
    if (!strcmp(p, "/health")) {
        if (!get) goto method;
        int ready = atomic_load(&sv->ready) && !atomic_load(&sv->stopping);
        return respond_json(c, x, ready ? 200 : 503,
                            json_pack("{s:s}", "status", ready ? "ok" : atomic_load(&sv->stopping) ? "stopping" : "loading"));
    }
    if (!strcmp(p, "/") || !strcmp(p, "/index.html")) {
        if (!get) goto method;
        return respond(c, x, 200, "text/html; charset=utf-8", server_page, server_page_len);
    }
    int known = !strcmp(p, "/v1/completions") || !strcmp(p, "/v1/models") || !strncmp(p, "/v1/models/", 11) ||
                !strcmp(p, "/metrics") || !strcmp(p, "/tokenize") || !strcmp(p, "/detokenize");
    if (!strcmp(p, "/v1/chat/completions"))
        return respond_error(c, x, 404, "unknown_url", NULL,
                             "GPT-2 is not a chat model: this server offers /v1/completions, not /v1/chat/completions");
    if (!known) return respond_error(c, x, 404, "unknown_url", NULL, "Unknown request URL: %s %.100s", m, p);
    if (!atomic_load(&sv->ready))
        return respond_error(c, x, 503, "model_loading", NULL, "the models are still loading; retry shortly");
    if (!strcmp(p, "/metrics")) {
        if (!get) goto method;
        int n = models_count(sv->models);
        model_gauges g[n];
        for (int i = 0; i < n; i++) {
            served *sm = models_at(sv->models, i);
            g[i] = (model_gauges){.id = sm->id, .mx = &sm->mx};
            pthread_mutex_lock(&sm->lock);
            if (sm->state == MODEL_READY) {
                g[i].loaded = 1;
                g[i].bytes = sm->bytes;
                g[i].slots = sched_n_slots(sm->s);
                g[i].queue_depth = sched_queue_depth(sm->s);
                g[i].active = sched_active(sm->s);
            }
            pthread_mutex_unlock(&sm->lock);
        }
        strbuf b = {0};
        if (metrics_render(&sv->mx, g, n, &b)) {
            sb_free(&b);
            return respond_error(c, x, 500, NULL, NULL, "out of memory");
        }
        enum MHD_Result ok = respond(c, x, 200, "text/plain; version=0.0.4", b.p, b.n);
        sb_free(&b);
        return ok;
    }
    if (!strncmp(p, "/v1/models", 10)) {
        if (!get) goto method;
        return get_models(sv, c, x, p[10] == '/' ? p + 11 : NULL);
    }
    if (!post) goto method;
    if (!strcmp(p, "/tokenize")) return post_tokenize(sv, c, x, 0);
    if (!strcmp(p, "/detokenize")) return post_tokenize(sv, c, x, 1);
    return post_completions(sv, c, x);
method:
    return respond_error(c, x, 405, "method_not_allowed", NULL, "%s is not allowed on %s", m, p);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *sv = cls;
    conn_ctx *x = *con_cls;
    if (!x) {
        if (!(x = calloc(1, sizeof *x))) return MHD_NO;
        *con_cls = x;
        x->t0 = server_now();
        snprintf(x->method, sizeof x->method, "%s", method);
        snprintf(x->path, sizeof x->path, "%s", url);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, x->remote, sizeof x->remote);
        else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, x->remote, sizeof x->remote);
        /* Decided before any body is read: preflight, authentication and a
         * declared size over the limit. */
        if (!strcmp(method, "OPTIONS")) {
            struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            if (!r) return MHD_NO;
            MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
            MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
            return queue(c, x, 204, r);
        }
        int public = !strcmp(url, "/health") || !strcmp(url, "/") || !strcmp(url, "/index.html");
        if (sv->o->api_key && !public) {
            /* The scheme is case-insensitive (RFC 7235), then spaces, then the key. */
            const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
            if (!auth)
                return respond_error(c, x, 401, "invalid_api_key", NULL,
                                     "No API key provided: send 'Authorization: Bearer KEY'");
            if (strncasecmp(auth, "Bearer ", 7) != 0)
                return respond_error(c, x, 401, "invalid_api_key", NULL,
                                     "The Authorization header must be 'Bearer KEY' (another scheme, or no key, was sent)");
            const char *given = auth + 7;
            while (*given == ' ') given++;
            if (!key_matches(given, sv->o->api_key))
                return respond_error(c, x, 401, "invalid_api_key", NULL, "Incorrect API key provided");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > sv->o->body_limit) {
            x->too_big = 1;
            return route(sv, c, x);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!x->too_big && (x->body.n + *upload_size > sv->o->body_limit || sb_add(&x->body, upload, *upload_size)))
            x->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (x->j) return completion_ready(c, x);
    if (x->status) return MHD_YES; /* answered on the first call */
    return route(sv, c, x);
}

static const char *termination(enum MHD_RequestTerminationCode t) {
    switch (t) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "ok";
    case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
    }
    return "unknown";
}

/* The end of a request: the job learns its client is gone (if it was not
 * done), one access-log line is written. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    server *sv = cls;
    conn_ctx *x = *con_cls;
    if (!x) return;
    int pt = 0, ct = 0;
    if (x->j) {
        pthread_mutex_lock(&x->j->lock);
        if (!x->j->done) x->j->gone = 1;
        pt = x->j->prompt_tokens;
        ct = x->j->completion_tokens;
        if (x->status == 200 && x->j->status != 200 && !x->j->req.stream) x->status = x->j->status;
        pthread_mutex_unlock(&x->j->lock);
        sched_wake(x->sm->s);
        job_release(x->j);
        atomic_fetch_sub(&sv->open_jobs, 1);
    }
    if (x->held) models_release(sv->models, x->sm);
    metrics_request(x->sm ? &x->sm->mx : &sv->mx, x->status ? x->status : 499);
    if (!sv->o->quiet) {
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        json_t *line = json_pack("{s:s,s:s,s:s,s:s,s:i,s:f,s:i,s:i,s:s}", "time", ts, "remote", x->remote, "method", x->method,
                                 "path", x->path, "status", x->status ? x->status : 499, "ms",
                                 (server_now() - x->t0) * 1000.0, "prompt_tokens", pt, "completion_tokens", ct, "end",
                                 termination(toe));
        if (line && x->sm) json_object_set_new(line, "model", json_string(x->sm->id));
        char *s = line ? json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(4)) : NULL;
        if (s) server_log(x->status >= 500 ? 4 : 6, "%s", s);
        free(s);
        json_decref(line);
    }
    sb_free(&x->body);
    free(x);
    *con_cls = NULL;
}

/* ------------------------------------------------------------ lifecycle */

static struct MHD_Daemon *start_daemon(server *sv, char *err, size_t errlen) {
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sv->o->port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)sv->o->port)};
    const struct sockaddr *addr;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC;
    if (inet_pton(AF_INET, sv->o->host, &a4.sin_addr) == 1) {
        addr = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, sv->o->host, &a6.sin6_addr) == 1) {
        addr = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "--host: '%s' is not an IPv4 or IPv6 address", sv->o->host);
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)sv->o->port, NULL, NULL, on_request, sv, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_THREAD_POOL_SIZE, sv->o->n_models > 1 ? 4u : 2u, MHD_OPTION_CONNECTION_LIMIT, (unsigned)sv->o->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)sv->o->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, sv,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!d) snprintf(err, errlen, "cannot listen on %s port %d: %s", sv->o->host, sv->o->port, strerror(errno));
    return d;
}

int server_run(const server_opts *o, server_load_fn load, void *user) {
    server *sv = calloc(1, sizeof *sv);
    if (!sv || !(sv->models = models_new(o, load, user))) {
        free(sv);
        fprintf(stderr, "gpt2c serve: out of memory\n");
        return 1;
    }
    sv->o = o;
    metrics_init(&sv->mx);
    /* Signals are taken by sigwait below: every thread started from here on
     * inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Thousands of connections need as many descriptors as the system lets us have. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char err[1024];
    int rc = 1;
    if (!(sv->d = start_daemon(sv, err, sizeof err))) {
        server_log(3, "gpt2c serve: %s", err);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : o->port;
    /* One model always loads before the server is ready; several, with
     * --preload (else each on its first request). */
    int preload = o->preload || o->n_models == 1;
    strbuf names = {0};
    for (int i = 0; i < o->n_models; i++) sb_printf(&names, "%s%s", i ? ", " : "", o->models[i].id);
    server_log(6, "gpt2c serve: listening on http://%s:%d (%s %s)", o->host, port, preload ? "loading" : "serving",
               names.p ? names.p : "");
    sb_free(&names);
    if (o->port_file) {
        FILE *f = fopen(o->port_file, "w");
        if (f) {
            fprintf(f, "%d\n", port);
            fclose(f);
        }
    }
    if (preload && models_preload(sv->models)) goto out;
    atomic_store(&sv->ready, 1);
    server_notify("READY=1");
    server_log(6, "gpt2c serve: ready: %d model%s, %d slot%s each", o->n_models, o->n_models == 1 ? "" : "s", o->slots,
               o->slots == 1 ? "" : "s");
    int sig = 0;
    sigwait(&set, &sig);
    server_notify("STOPPING=1");
    server_log(6, "gpt2c serve: %s: finishing in-flight requests (up to %.0f s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               o->shutdown_grace_s);
    /* New requests are answered 503 (and /health "stopping") while the
     * running ones finish. The listening socket stays open until the end:
     * MHD_quiesce_daemon races with the pool's own workers in
     * libmicrohttpd 0.9.75 (Debian 12) -- a worker taking the listening
     * socket out of its epoll set at the same moment makes it abort the
     * process ("Failed to remove listen FD from epoll set"), as a loaded
     * server under the sanitizers did on SIGTERM. */
    atomic_store(&sv->stopping, 1);
    models_shutdown(sv->models, o->shutdown_grace_s);
    /* Every job is done; give their connections a moment to send the end. */
    for (int i = 0; i < 200 && atomic_load(&sv->open_jobs) > 0; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    rc = 0;
out:
    if (sv->d) MHD_stop_daemon(sv->d);
    models_free(sv->models);
    pthread_mutex_destroy(&sv->mx.lock);
    free(sv);
    if (rc == 0) server_log(6, "gpt2c serve: stopped");
    return rc;
}
