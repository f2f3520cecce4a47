/* sched.c -- the scheduler: one thread owns the continuous-batching engine.
 * Between engine steps it admits queued requests while slots are free
 * (first come, first served), and after each step it turns every request's
 * new tokens into text (stop strings included) and hands it to the request's
 * connection: server-sent events as they come, or the whole answer at the
 * end. Clients that hang up are noticed while their connection waits, and
 * their sequences leave the engine at the next step. */
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "internal.h"

#define KEEPALIVE_S 5.0 /* a comment line this often keeps idle streams open through proxies */

double server_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct choice {
    gpt2c_stream *st;
    int pushed;         /* tokens fed to st so far */
    const char *finish; /* "stop" or "length" once finished */
    strbuf text;        /* the text so far (non-streamed answers) */
    json_t *lp;         /* logprobs object (non-streamed answers) */
    long offset;        /* text_offset of the next token, in characters */
    json_t *ids;        /* a model without tokenizer: the new token ids (non-streamed answers) */
} choice;

typedef struct run {
    job *j;
    gpt2c_gen *g;
    int n_choices;
    choice *c;
    int plen_max;          /* the longest prompt: the row length of the three below */
    float *plp;            // (n_prompts, plen_max) echo: the prompts' own log-probabilities
    int32_t *ptop;         // (n_prompts, plen_max, logprobs)
    float *ptop_lp;        // (n_prompts, plen_max, logprobs)
    double t_first, t_last; /* when the first and the latest step ended */
    double t_out;           /* when the client last got bytes (keep-alives) */
} run;

struct sched {
    gpt2c_tokenizer *t;
    const char *model_id; /* the name responses give */
    const server_opts *o;
    metrics *mx;
    gpt2c_engine *e;
    pthread_t th;
    pthread_mutex_t lock; /* guards the queue, the flags and n_active */
    pthread_cond_t cond;
    job **queue;          /* a ring of q_cap = slots + queue_max */
    int q_head, q_n, q_cap;
    int stopping;         /* no new jobs; finish the running ones */
    double deadline;      /* then cancel what is left */
    int n_active;
    run **runs;           /* scheduler thread only */
    int n_runs;
    int joined;           /* the scheduler thread has ended (sched_shutdown's caller only) */
};

int sched_n_slots(const sched *s) { return gpt2c_engine_n_slots(s->e); }

void job_release(job *j) {
    pthread_mutex_lock(&j->lock);
    int left = --j->refs;
    pthread_mutex_unlock(&j->lock);
    if (left) return;
    api_req_free(&j->req);
    sb_free(&j->out);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* Appends output for the client and wakes its connection if it waits. */
static void job_emit(job *j, const char *s, size_t n, int done) {
    pthread_mutex_lock(&j->lock);
    if (n && sb_add(&j->out, s, n)) j->gone = 1; /* out of memory: give up on this client */
    if (done) j->done = 1;
    int resume = j->suspended;
    j->suspended = 0;
    pthread_mutex_unlock(&j->lock);
    /* Whoever clears the flag resumes, once per suspension, and outside the
     * job's lock: a suspended connection is not touched by libmicrohttpd
     * until then, and no lock of ours is held while taking its own. */
    if (resume) MHD_resume_connection(j->conn);
}

static void job_emit_json(job *j, json_t *v, int sse, int done) {
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(v);
    if (!s) {
        job_emit(j, "", 0, 1);
        return;
    }
    if (sse) {
        strbuf b = {0};
        sb_printf(&b, "data: %s\n\n", s);
        if (done) sb_add(&b, "data: [DONE]\n\n", 14);
        job_emit(j, b.p ? b.p : "", b.n, done);
        sb_free(&b);
    } else {
        job_emit(j, s, strlen(s), done);
    }
    free(s);
}

/* Ends a job with an error: a status and body, or an error event. */
static void job_fail(job *j, int status, const char *msg) {
    api_error e = {.status = status};
    snprintf(e.message, sizeof e.message, "%s", msg);
    pthread_mutex_lock(&j->lock);
    j->status = status;
    pthread_mutex_unlock(&j->lock);
    job_emit_json(j, api_error_json(&e), j->req.stream, 1);
}

/* --------------------------------------------------------------- queue */

int sched_submit(sched *s, job *j) {
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    /* Jobs take free slots at the scheduler's next step, so the first
     * (slots - active) queued jobs are not waiting for a slot: only those
     * beyond them count against queue_max. Refusing on q_n alone turned a
     * request away with 429 while a slot stood free, whenever it arrived
     * within a step of another (test_server's full-queue check, under ASan). */
    int idle = gpt2c_engine_n_slots(s->e) - s->n_active;
    if (s->stopping) rc = -2;
    else if (s->q_n - (idle > 0 ? idle : 0) >= s->o->queue_max || s->q_n >= s->q_cap) rc = -1;
    else {
        pthread_mutex_lock(&j->lock);
        j->refs++;
        pthread_mutex_unlock(&j->lock);
        s->queue[(s->q_head + s->q_n++) % s->q_cap] = j;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void sched_wake(sched *s) {
    pthread_mutex_lock(&s->lock);
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int sched_queue_depth(sched *s) {
    pthread_mutex_lock(&s->lock);
    int n = s->q_n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int sched_active(sched *s) {
    pthread_mutex_lock(&s->lock);
    int n = s->n_active;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* 1 if the client behind a waiting connection has hung up: a peek reads
 * end-of-file or an error. (libmicrohttpd does not watch suspended
 * connections.) Pipelined bytes mean the client is still there. */
static int client_gone(job *j) {
    pthread_mutex_lock(&j->lock);
    int gone = j->gone, watch = j->suspended && j->fd >= 0;
    pthread_mutex_unlock(&j->lock);
    if (gone) return 1;
    if (!watch) return 0;
    char c;
    ssize_t r = recv(j->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        pthread_mutex_lock(&j->lock);
        j->gone = 1;
        pthread_mutex_unlock(&j->lock);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- output */

static json_t *token_json(const gpt2c_tokenizer *t, int32_t id) {
    char *text;
    size_t len;
    if (!t || gpt2c_detokenize(t, &id, 1, GPT2C_DECODE_NO_CLEANUP, &text, &len) != GPT2C_OK) return json_string("");
    json_t *v = json_stringn(text, len);
    gpt2c_free(text);
    return v ? v : json_string("");
}

/* Characters (code points) in a UTF-8 string: OpenAI's text_offset counts
 * characters. */
static long utf8_chars(const char *s, size_t n) {
    long c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static json_t *lp_new(void) {
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

/* Appends one token's entry: chosen (NaN: null, the first prompt token),
 * and k alternatives plus the chosen token when it is not one of them. */
static void lp_add(json_t *lp, const gpt2c_tokenizer *t, int32_t id, float chosen, const int32_t *top,
                   const float *top_lp, int k, long *offset) {
    json_t *tok = token_json(t, id);
    long len = utf8_chars(json_string_value(tok), json_string_length(tok));
    json_array_append_new(json_object_get(lp, "tokens"), tok);
    json_array_append_new(json_object_get(lp, "token_logprobs"), isnan(chosen) ? json_null() : json_real(chosen));
    json_t *alt = isnan(chosen) ? json_null() : json_object();
    for (int i = 0; i < k && !isnan(chosen); i++) {
        json_t *name = token_json(t, top[i]);
        if (!json_object_get(alt, json_string_value(name))) json_object_set_new(alt, json_string_value(name), json_real(top_lp[i]));
        json_decref(name);
    }
    /* As OpenAI's: the chosen token is always among them (up to k + 1). */
    if (!isnan(chosen) && !json_object_get(alt, json_string_value(tok)))
        json_object_set_new(alt, json_string_value(tok), json_real(chosen));
    json_array_append_new(json_object_get(lp, "top_logprobs"), alt);
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer(*offset));
    *offset += len;
}

/* A choice of an answer; a model without tokenizer answers its token ids
 * too (takes lp and ids). */
static json_t *choice_json(const char *text, size_t len, int index, json_t *lp, const char *finish, json_t *ids) {
    json_t *c = json_pack("{s:s#,s:i,s:o,s:o}", "text", text, (int)len, "index", index, "logprobs", lp ? lp : json_null(),
                          "finish_reason", finish ? json_string(finish) : json_null());
    if (ids) json_object_set_new(c, "token_ids", ids);
    return c;
}

/* One streamed event: a piece of choice `index` (takes lp and ids). */
static void emit_chunk(sched *s, run *r, int index, const char *text, size_t len, json_t *lp, const char *finish,
                       json_t *ids) {
    job *j = r->j;
    json_t *ch = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", j->id, "object", "text_completion", "created",
                           (json_int_t)j->created, "model", s->model_id, "choices",
                           choice_json(text, len, index, lp, finish, ids));
    job_emit_json(j, ch, 1, 0);
    r->t_out = server_now();
}

static int prompt_of(const run *r, int i) { return i / r->j->req.n; }

/* Echo: the prompt's text, and with logprobs its tokens' entries. */
static void echo_prompt(sched *s, run *r, int i, strbuf *text, json_t *lp, long *offset) {
    const completion_req *q = &r->j->req;
    int p = prompt_of(r, i), k = q->logprobs;
    sb_add(text, q->prompt_text[p], strlen(q->prompt_text[p]));
    if (!lp) return;
    const size_t base = (size_t)p * r->plen_max;
    for (int t = 0; t < q->prompt_lens[p]; t++)
        lp_add(lp, s->t, q->prompts[p][t], r->plp[base + t], r->ptop + (base + t) * k, r->ptop_lp + (base + t) * k, k,
               offset);
}

/* The final answer of a non-streamed request, or the stream's last events. */
static void finish_run(sched *s, run *r) {
    job *j = r->j;
    const completion_req *q = &j->req;
    int completion = 0, prompt = 0;
    for (int i = 0; i < q->n_prompts; i++) prompt += q->prompt_lens[i];
    for (int i = 0; i < r->n_choices; i++) {
        int n = 0;
        if (r->g) gpt2c_gen_tokens(r->g, i, &n);
        completion += n;
    }
    metrics_tokens(s->mx, prompt, completion);
    if (r->g) {
        long drafted, kept;
        gpt2c_gen_draft_stats(r->g, &drafted, &kept);
        metrics_draft(s->mx, drafted, kept);
    }
    pthread_mutex_lock(&j->lock);
    j->prompt_tokens = prompt;
    j->completion_tokens = completion;
    j->status = 200;
    pthread_mutex_unlock(&j->lock);
    json_t *usage = json_pack("{s:i,s:i,s:i}", "prompt_tokens", prompt, "completion_tokens", completion, "total_tokens",
                              prompt + completion);
    if (q->stream) {
        if (q->include_usage) {
            json_t *last = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", j->id, "object", "text_completion", "created",
                                     (json_int_t)j->created, "model", s->model_id, "choices", "usage", usage);
            job_emit_json(j, last, 1, 1);
        } else {
            json_decref(usage);
            job_emit(j, "data: [DONE]\n\n", 14, 1);
        }
        return;
    }
    json_t *choices = json_array();
    for (int i = 0; i < r->n_choices; i++) {
        choice *c = &r->c[i];
        json_array_append_new(choices, choice_json(c->text.p ? c->text.p : "", c->text.n, i, json_incref(c->lp),
                                                   c->finish ? c->finish : "length", json_incref(c->ids)));
    }
    json_t *body = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", j->id, "object", "text_completion", "created",
                             (json_int_t)j->created, "model", s->model_id, "choices", choices, "usage", usage);
    job_emit_json(j, body, 0, 1);
}

static void run_free(run *r) {
    for (int i = 0; i < r->n_choices && r->c; i++) {
        gpt2c_stream_free(r->c[i].st);
        sb_free(&r->c[i].text);
        json_decref(r->c[i].lp);
        json_decref(r->c[i].ids);
    }
    free(r->c);
    gpt2c_gen_free(r->g);
    free(r->plp);
    free(r->ptop);
    free(r->ptop_lp);
    job_release(r->j);
    free(r);
}

/* Feeds choice i's new tokens to its text stream; returns 1 once it is
 * finished. Streams send what this step settled. */
static int advance_choice(sched *s, run *r, int i) {
    choice *c = &r->c[i];
    job *j = r->j;
    const completion_req *q = &j->req;
    if (c->finish) return 1;
    int n = 0;
    const int32_t *ids = gpt2c_gen_tokens(r->g, i, &n);
    strbuf piece = {0};
    json_t *lp = q->logprobs >= 0 ? lp_new() : NULL, *new_ids = s->t ? NULL : json_array();
    while (c->pushed < n && !(c->st && gpt2c_stream_stopped(c->st))) {
        const char *p;
        size_t len;
        int32_t id = ids[c->pushed];
        if (!c->st) json_array_append_new(new_ids, json_integer(id));
        else if (gpt2c_stream_push(c->st, id, &p, &len) == GPT2C_OK) sb_add(&piece, p, len);
        if (lp) {
            float chosen, top_lp[20];
            int32_t top[20];
            gpt2c_gen_logprobs(r->g, i, c->pushed, &chosen, top, top_lp);
            lp_add(lp, s->t, id, chosen, top, top_lp, q->logprobs, &c->offset);
        }
        c->pushed++;
    }
    gpt2c_finish f = gpt2c_gen_finish_reason(r->g, i);
    if (c->st && gpt2c_stream_stopped(c->st)) {
        gpt2c_gen_finish(r->g, i); /* the sequence leaves the engine at the next step */
        c->finish = "stop";
    } else if (f != GPT2C_FINISH_NONE) {
        c->finish = f == GPT2C_FINISH_LENGTH ? "length" : "stop";
    }
    if (c->finish && c->st) {
        const char *p;
        size_t len;
        if (gpt2c_stream_finish(c->st, &p, &len) == GPT2C_OK) sb_add(&piece, p, len);
    }
    if (q->stream) {
        if (piece.n || c->finish || json_array_size(new_ids) || (lp && json_array_size(json_object_get(lp, "tokens")))) {
            emit_chunk(s, r, i, piece.p ? piece.p : "", piece.n, lp, c->finish, new_ids);
            lp = new_ids = NULL;
        }
    } else {
        sb_add(&c->text, piece.p ? piece.p : "", piece.n);
        if (new_ids) json_array_extend(c->ids, new_ids);
        if (lp) {
            const char *key;
            json_t *arr;
            json_object_foreach(lp, key, arr) json_array_extend(json_object_get(c->lp, key), arr);
        }
    }
    json_decref(lp);
    json_decref(new_ids);
    sb_free(&piece);
    return c->finish != NULL;
}

/* Starts a queued job on the engine (its slots are known to be free). */
static void start_job(sched *s, job *j) {
    completion_req *q = &j->req;
    run *r = calloc(1, sizeof *r);
    if (!r) {
        job_fail(j, 500, "out of memory");
        job_release(j);
        return;
    }
    r->j = j;
    r->n_choices = q->n_prompts * q->n;
    r->c = calloc((size_t)r->n_choices, sizeof *r->c);
    r->t_out = server_now();
    if (!r->c) goto oom;
    if (q->echo && q->logprobs >= 0) {
        /* The prompts' own log-probabilities, as OpenAI's echo returns them. */
        const int k = q->logprobs;
        for (int p = 0; p < q->n_prompts; p++)
            if (q->prompt_lens[p] > r->plen_max) r->plen_max = q->prompt_lens[p];
        size_t cells = (size_t)q->n_prompts * r->plen_max;
        r->plp = malloc(cells * sizeof *r->plp);
        r->ptop = malloc((cells * k + 1) * sizeof *r->ptop); /* + 1: logprobs 0 needs no alternatives */
        r->ptop_lp = malloc((cells * k + 1) * sizeof *r->ptop_lp);
        if (!r->plp || !r->ptop || !r->ptop_lp) goto oom;
        for (int p = 0; p < q->n_prompts; p++) {
            size_t b = (size_t)p * r->plen_max;
            if (gpt2c_engine_score(s->e, q->prompts[p], q->prompt_lens[p], q->logprobs, r->plp + b, r->ptop + b * k,
                                   r->ptop_lp + b * k) != GPT2C_OK) {
                job_fail(j, 500, gpt2c_engine_errmsg(s->e));
                run_free(r);
                return;
            }
        }
    }
    if (q->max_tokens > 0) {
        /* Greedy choices are identical: each prompt runs n times. */
        int greedy_n = q->p.do_sample ? 1 : q->n, np = q->n_prompts * greedy_n;
        const int32_t **pp = malloc((size_t)np * sizeof *pp);
        int *pl = malloc((size_t)np * sizeof *pl);
        if (!pp || !pl) {
            free(pp);
            free(pl);
            goto oom;
        }
        for (int i = 0; i < np; i++) {
            pp[i] = q->prompts[i / greedy_n];
            pl[i] = q->prompt_lens[i / greedy_n];
        }
        gpt2c_status st = gpt2c_engine_add(s->e, &q->p, np, (const int32_t *const *)pp, pl, &r->g);
        free(pp);
        free(pl);
        if (st) {
            job_fail(j, st == GPT2C_ERR_NOMEM ? 500 : 400, gpt2c_gen_errmsg(r->g));
            run_free(r);
            return;
        }
        metrics_prompt_cache(s->mx, gpt2c_gen_reused_tokens(r->g));
    }
    for (int i = 0; i < r->n_choices; i++) {
        choice *c = &r->c[i];
        int p = prompt_of(r, i);
        if (!s->t) { /* no tokenizer: no text, the ids */
            if (!(c->ids = json_array())) goto oom;
        } else if (gpt2c_stream_new(s->t, q->prompts[p], q->prompt_lens[p],
                                    GPT2C_DECODE_SKIP_SPECIAL | GPT2C_DECODE_SKIP_UNKNOWN, &c->st) ||
                   gpt2c_stream_set_stops(c->st, (const char *const *)q->stops, q->n_stops)) {
            goto oom;
        }
        c->offset = q->echo ? 0 : utf8_chars(q->prompt_text[p], strlen(q->prompt_text[p]));
        json_t *lp = q->logprobs >= 0 ? lp_new() : NULL;
        strbuf text = {0};
        if (q->echo) echo_prompt(s, r, i, &text, lp, &c->offset);
        if (q->stream) {
            if (q->echo) {
                emit_chunk(s, r, i, text.p ? text.p : "", text.n, lp, NULL, NULL);
                lp = NULL;
            }
        } else {
            sb_add(&c->text, text.p ? text.p : "", text.n);
            c->lp = lp;
            lp = NULL;
        }
        json_decref(lp);
        sb_free(&text);
        if (q->max_tokens == 0) {
            c->finish = "length";
            if (q->stream) {
                emit_chunk(s, r, i, "", 0, NULL, "length", NULL);
            }
        }
    }
    if (!r->g) { /* max_tokens 0: nothing to generate */
        finish_run(s, r);
        run_free(r);
        return;
    }
    s->runs[s->n_runs++] = r;
    return;
oom:
    job_fail(j, 500, "out of memory");
    run_free(r);
}

/* Slots a job needs: one per sequence, and one to score an echoed prompt. */
static int slots_needed(const job *j) {
    int n = j->req.max_tokens > 0 ? j->req.n_prompts * j->req.n : 0;
    return n > 0 ? n : 1;
}

static void *sched_main(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->stopping && s->q_n == 0 && s->n_runs == 0) pthread_cond_wait(&s->cond, &s->lock);
        if (s->stopping && s->q_n == 0 && s->n_runs == 0) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        /* Admit queued jobs, oldest first, while their slots are free. */
        int free_slots = gpt2c_engine_free_slots(s->e);
        job *admit[64];
        int n_admit = 0;
        while (s->q_n > 0 && n_admit < 64) {
            job *j = s->queue[s->q_head];
            int gone = client_gone(j);
            if (!gone && slots_needed(j) > free_slots) break;
            s->q_head = (s->q_head + 1) % s->q_cap;
            s->q_n--;
            if (gone) {
                job_emit(j, "", 0, 1);
                job_release(j);
                continue;
            }
            free_slots -= j->req.max_tokens > 0 ? slots_needed(j) : 0;
            admit[n_admit++] = j;
        }
        int stopping = s->stopping;
        double deadline = s->deadline;
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < n_admit; i++) start_job(s, admit[i]);

        /* Hang-ups, keep-alives and the shutdown deadline. */
        double now = server_now();
        for (int i = 0; i < s->n_runs; i++) {
            run *r = s->runs[i];
            if (client_gone(r->j) || (stopping && now > deadline)) {
                if (!client_gone(r->j)) job_fail(r->j, 503, "the server is shutting down");
                else job_emit(r->j, "", 0, 1);
                run_free(r);
                s->runs[i--] = s->runs[--s->n_runs];
                continue;
            }
            if (r->j->req.stream && now - r->t_out > KEEPALIVE_S) {
                job_emit(r->j, ": keep-alive\n\n", 14, 0);
                r->t_out = now;
            }
        }
        pthread_mutex_lock(&s->lock);
        s->n_active = s->n_runs;
        pthread_mutex_unlock(&s->lock);
        if (s->n_runs == 0) continue;

        int seqs = 0;
        for (int i = 0; i < s->n_runs; i++)
            for (int c = 0; c < s->runs[i]->n_choices; c++) seqs += !s->runs[i]->c[c].finish;
        gpt2c_engine_step(s->e);
        double t1 = server_now();
        metrics_step(s->mx, seqs);
        for (int i = 0; i < s->n_runs; i++) {
            run *r = s->runs[i];
            gpt2c_status st = gpt2c_gen_status(r->g);
            if (st != GPT2C_OK && st != GPT2C_DONE) {
                job_fail(r->j, 500, gpt2c_gen_errmsg(r->g));
                run_free(r);
                s->runs[i--] = s->runs[--s->n_runs];
                continue;
            }
            if (r->t_first == 0) {
                r->t_first = t1;
                metrics_ttft(s->mx, t1 - r->j->t_submit);
            } else {
                metrics_tpot(s->mx, t1 - r->t_last);
            }
            r->t_last = t1;
            int done = 1;
            for (int c = 0; c < r->n_choices; c++) done &= advance_choice(s, r, c);
            if (done) {
                finish_run(s, r);
                run_free(r);
                s->runs[i--] = s->runs[--s->n_runs];
            }
        }
        pthread_mutex_lock(&s->lock);
        s->n_active = s->n_runs;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_lock(&s->lock);
    s->n_active = 0;
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

sched *sched_new(gpt2c_model *m, gpt2c_model *draft, gpt2c_tokenizer *t, const char *model_id, const server_opts *o, metrics *mx, char *err,
                 size_t errlen) {
    sched *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->t = t;
    s->model_id = model_id;
    s->o = o;
    s->mx = mx;
    gpt2c_status st = gpt2c_engine_new(m, o->slots, o->threads, &s->e);
    if (st) {
        snprintf(err, errlen, "%s", gpt2c_engine_errmsg(s->e));
        gpt2c_engine_free(s->e);
        free(s);
        return NULL;
    }
    gpt2c_engine_set_prompt_cache(s->e, !o->no_prompt_cache);
    if (draft && (st = gpt2c_engine_set_draft(s->e, draft, o->num_assistant_tokens))) {
        snprintf(err, errlen, "%s", gpt2c_engine_errmsg(s->e));
        gpt2c_engine_free(s->e);
        free(s);
        return NULL;
    }
    s->q_cap = o->slots + o->queue_max;
    s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
    s->runs = calloc((size_t)o->slots + 1, sizeof *s->runs);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (!s->queue || !s->runs || pthread_create(&s->th, NULL, sched_main, s) != 0) {
        snprintf(err, errlen, "out of memory or threads for the scheduler");
        gpt2c_engine_free(s->e);
        free(s->queue);
        free(s->runs);
        free(s);
        return NULL;
    }
    return s;
}

void sched_shutdown(sched *s, double grace_s) {
    if (s->joined) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    s->deadline = server_now() + grace_s;
    /* Requests still waiting for slots will not run. */
    while (s->q_n > 0) {
        job *j = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_n--;
        pthread_mutex_unlock(&s->lock);
        job_fail(j, 503, "the server is shutting down");
        job_release(j);
        pthread_mutex_lock(&s->lock);
    }
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->th, NULL);
    s->joined = 1;
}

void sched_free(sched *s) {
    if (!s) return;
    sched_shutdown(s, 0); /* cancels what still runs; nothing after sched_shutdown */
    gpt2c_engine_free(s->e);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->queue);
    free(s->runs);
    free(s);
}
