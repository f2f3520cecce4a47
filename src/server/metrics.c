/* metrics.c -- the server's counters and latency histograms, rendered in the
 * Prometheus text exposition format for GET /metrics. */
#include <string.h>

#include "internal.h"

/* Upper bounds (seconds) of the histogram buckets; +Inf is implicit. */
static const double TTFT_LE[METRICS_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double TPOT_LE[METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

void metrics_init(metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
}

void metrics_request(metrics *m, int status) {
    pthread_mutex_lock(&m->lock);
    if (status >= 100 && status < 600) m->req_by_code[status]++;
    pthread_mutex_unlock(&m->lock);
}

static void observe(const double *le, unsigned long *b, double *sum, unsigned long *n, double s) {
    int i = 0;
    while (i < METRICS_BUCKETS && s > le[i]) i++;
    if (i < METRICS_BUCKETS) b[i]++;
    *sum += s;
    (*n)++;
}

void metrics_ttft(metrics *m, double s) {
    pthread_mutex_lock(&m->lock);
    observe(TTFT_LE, m->ttft_b, &m->ttft_sum, &m->ttft_n, s);
    pthread_mutex_unlock(&m->lock);
}

void metrics_tpot(metrics *m, double s) {
    pthread_mutex_lock(&m->lock);
    observe(TPOT_LE, m->tpot_b, &m->tpot_sum, &m->tpot_n, s);
    pthread_mutex_unlock(&m->lock);
}

void metrics_tokens(metrics *m, int prompt, int completion) {
    pthread_mutex_lock(&m->lock);
    m->prompt_tokens += (unsigned long)prompt;
    m->completion_tokens += (unsigned long)completion;
    pthread_mutex_unlock(&m->lock);
}

void metrics_step(metrics *m, int seqs) {
    pthread_mutex_lock(&m->lock);
    m->steps++;
    m->step_seqs += (unsigned long)seqs;
    pthread_mutex_unlock(&m->lock);
}

/* A label value as the exposition format writes it: \\, \" and \n escaped. */
static int label(strbuf *o, const char *v) {
    int r = 0;
    for (; *v; v++) r |= *v == '\\' ? sb_add(o, "\\\\", 2) : *v == '"' ? sb_add(o, "\\\"", 2) : *v == '\n' ? sb_add(o, "\\n", 2) : sb_add(o, v, 1);
    return r;
}

static int header(strbuf *o, const char *name, const char *type, const char *help) {
    return sb_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{model="id"[,extra]} */
static int series(strbuf *o, const char *name, const char *id, const char *extra) {
    int r = sb_printf(o, "%s{model=\"", name) | label(o, id);
    return r | sb_printf(o, "\"%s%s} ", extra ? "," : "", extra ? extra : "");
}

void metrics_prompt_cache(metrics *m, int reused) {
    pthread_mutex_lock(&m->lock);
    m->cache_hits += reused > 0;
    m->cache_tokens += (unsigned long)reused;
    pthread_mutex_unlock(&m->lock);
}

void metrics_draft(metrics *m, long drafted, long accepted) {
    pthread_mutex_lock(&m->lock);
    m->drafted += (unsigned long)drafted;
    m->accepted += (unsigned long)accepted;
    pthread_mutex_unlock(&m->lock);
}

static int histogram(strbuf *o, const char *name, const char *help, const double *le, const model_gauges *g, int n,
                     int tpot) {
    int r = header(o, name, "histogram", help);
    char b[64], bucket[128], sum[128], count[128];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    snprintf(sum, sizeof sum, "%s_sum", name);
    snprintf(count, sizeof count, "%s_count", name);
    for (int k = 0; k < n; k++) {
        const metrics *m = g[k].mx;
        const unsigned long *bk = tpot ? m->tpot_b : m->ttft_b, total = tpot ? m->tpot_n : m->ttft_n;
        unsigned long acc = 0;
        for (int i = 0; i < METRICS_BUCKETS; i++) {
            acc += bk[i];
            snprintf(b, sizeof b, "le=\"%g\"", le[i]);
            r |= series(o, bucket, g[k].id, b) | sb_printf(o, "%lu\n", acc);
        }
        r |= series(o, bucket, g[k].id, "le=\"+Inf\"") | sb_printf(o, "%lu\n", total);
        r |= series(o, sum, g[k].id, NULL) | sb_printf(o, "%.6f\n", tpot ? m->tpot_sum : m->ttft_sum);
        r |= series(o, count, g[k].id, NULL) | sb_printf(o, "%lu\n", total);
    }
    return r;
}

/* One counter or gauge family, a series per model. */
#define FAMILY(name, type, help, fmt, expr)                                                                            \
    do {                                                                                                               \
        r |= header(o, name, type, help);                                                                              \
        for (int k = 0; k < n; k++) r |= series(o, name, g[k].id, NULL) | sb_printf(o, fmt "\n", expr);                \
    } while (0)

int metrics_render(metrics *server, const model_gauges *g, int n, strbuf *o) {
    /* Every model's lock is taken for the whole rendering, so each family
     * shows one moment; always in the table's order, after the server's. */
    pthread_mutex_lock(&server->lock);
    for (int k = 0; k < n; k++) pthread_mutex_lock(&g[k].mx->lock);
    int r = header(o, "gpt2c_requests_total", "counter",
                   "HTTP requests answered, by status code (and model, for those that named one the server has).");
    for (int c = 100; c < 600; c++)
        if (server->req_by_code[c]) r |= sb_printf(o, "gpt2c_requests_total{code=\"%d\"} %lu\n", c, server->req_by_code[c]);
    for (int k = 0; k < n; k++)
        for (int c = 100; c < 600; c++)
            if (g[k].mx->req_by_code[c]) {
                char code[32];
                snprintf(code, sizeof code, "code=\"%d\"", c);
                r |= series(o, "gpt2c_requests_total", g[k].id, code) | sb_printf(o, "%lu\n", g[k].mx->req_by_code[c]);
            }
    FAMILY("gpt2c_prompt_tokens_total", "counter", "Prompt tokens processed.", "%lu", g[k].mx->prompt_tokens);
    FAMILY("gpt2c_generation_tokens_total", "counter", "Tokens generated.", "%lu", g[k].mx->completion_tokens);
    FAMILY("gpt2c_steps_total", "counter", "Forward passes of the batching engine.", "%lu", g[k].mx->steps);
    FAMILY("gpt2c_step_sequences_total", "counter",
           "Sequences advanced, summed over steps (divide by steps for the mean batch).", "%lu", g[k].mx->step_seqs);
    FAMILY("gpt2c_prompt_cache_hits_total", "counter",
           "Requests whose prompt started after a prefix a slot still held (the prompt cache).", "%lu",
           g[k].mx->cache_hits);
    FAMILY("gpt2c_prompt_cache_tokens_total", "counter", "Prompt tokens taken from the prompt cache, not computed.",
           "%lu", g[k].mx->cache_tokens);
    FAMILY("gpt2c_draft_tokens_total", "counter", "Tokens the draft model proposed (speculative decoding).", "%lu",
           g[k].mx->drafted);
    FAMILY("gpt2c_draft_accepted_tokens_total", "counter",
           "Proposed tokens the model kept (divide by gpt2c_draft_tokens_total for the acceptance rate).", "%lu",
           g[k].mx->accepted);
    FAMILY("gpt2c_queue_depth", "gauge", "Requests waiting for free slots.", "%d", g[k].queue_depth);
    FAMILY("gpt2c_active_requests", "gauge", "Requests being generated.", "%d", g[k].active);
    FAMILY("gpt2c_slots", "gauge", "KV-cache slots (sequences generated together) of the loaded model.", "%d", g[k].slots);
    FAMILY("gpt2c_model_loaded", "gauge", "1 while the model is loaded.", "%d", g[k].loaded);
    FAMILY("gpt2c_model_memory_bytes", "gauge", "Weights and KV cache of the loaded model (what --max-memory counts).",
           "%llu", (unsigned long long)g[k].bytes);
    FAMILY("gpt2c_model_loads_total", "counter", "Times the model was loaded.", "%lu", g[k].mx->loads);
    FAMILY("gpt2c_model_unloads_total", "counter", "Times the model was unloaded, idle, to make room for another.", "%lu",
           g[k].mx->unloads);
    r |= histogram(o, "gpt2c_time_to_first_token_seconds", "Time from a request's arrival to its first token.", TTFT_LE,
                   g, n, 0);
    r |= histogram(o, "gpt2c_time_per_output_token_seconds", "Time between a request's successive tokens.", TPOT_LE, g,
                   n, 1);
    for (int k = n - 1; k >= 0; k--) pthread_mutex_unlock(&g[k].mx->lock);
    pthread_mutex_unlock(&server->lock);
    return r;
}
