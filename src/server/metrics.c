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

static int histogram(strbuf *o, const char *name, const char *help, const double *le, const unsigned long *b, double sum,
                     unsigned long n) {
    int r = sb_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long acc = 0;
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        acc += b[i];
        r |= sb_printf(o, "%s_bucket{le=\"%g\"} %lu\n", name, le[i], acc);
    }
    r |= sb_printf(o, "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.6f\n%s_count %lu\n", name, n, name, sum, name, n);
    return r;
}

int metrics_render(metrics *m, strbuf *o, int queue_depth, int active, int slots) {
    pthread_mutex_lock(&m->lock);
    int r = sb_printf(o, "# HELP gpt2c_requests_total HTTP requests answered, by status code.\n"
                         "# TYPE gpt2c_requests_total counter\n");
    for (int c = 100; c < 600; c++)
        if (m->req_by_code[c]) r |= sb_printf(o, "gpt2c_requests_total{code=\"%d\"} %lu\n", c, m->req_by_code[c]);
    r |= sb_printf(o,
                   "# HELP gpt2c_prompt_tokens_total Prompt tokens processed.\n# TYPE gpt2c_prompt_tokens_total counter\n"
                   "gpt2c_prompt_tokens_total %lu\n"
                   "# HELP gpt2c_generation_tokens_total Tokens generated.\n# TYPE gpt2c_generation_tokens_total counter\n"
                   "gpt2c_generation_tokens_total %lu\n"
                   "# HELP gpt2c_steps_total Forward passes of the batching engine.\n# TYPE gpt2c_steps_total counter\n"
                   "gpt2c_steps_total %lu\n"
                   "# HELP gpt2c_step_sequences_total Sequences advanced, summed over steps (divide by steps for the mean batch).\n"
                   "# TYPE gpt2c_step_sequences_total counter\ngpt2c_step_sequences_total %lu\n"
                   "# HELP gpt2c_queue_depth Requests waiting for free slots.\n# TYPE gpt2c_queue_depth gauge\n"
                   "gpt2c_queue_depth %d\n"
                   "# HELP gpt2c_active_requests Requests being generated.\n# TYPE gpt2c_active_requests gauge\n"
                   "gpt2c_active_requests %d\n"
                   "# HELP gpt2c_slots KV-cache slots (sequences generated together).\n# TYPE gpt2c_slots gauge\n"
                   "gpt2c_slots %d\n",
                   m->prompt_tokens, m->completion_tokens, m->steps, m->step_seqs, queue_depth, active, slots);
    r |= histogram(o, "gpt2c_time_to_first_token_seconds", "Time from a request's arrival to its first token.", TTFT_LE,
                   m->ttft_b, m->ttft_sum, m->ttft_n);
    r |= histogram(o, "gpt2c_time_per_output_token_seconds", "Time between a request's successive tokens.", TPOT_LE,
                   m->tpot_b, m->tpot_sum, m->tpot_n);
    pthread_mutex_unlock(&m->lock);
    return r;
}
