/* models.c -- the models one server offers (`gpt2c serve -m A -m B ...`):
 * finding one by the name a request gives, loading it at start or on first
 * use, and keeping the loaded ones within a memory budget by unloading the
 * least recently used idle one. Each loaded model has its own scheduler
 * (engine, slots, queue) and metrics, so every guarantee of a one-model
 * server holds per model; the weights are the loader's mmaps.
 *
 * Locks: the table's lock serializes budget decisions (a load that fits,
 * an unload); a model's lock guards its state. Taken in that order. A
 * request holds its model (users > 0) from before parsing to the end of
 * its connection, so a model in use is never unloaded under it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct models {
    const server_opts *o;
    server_load_fn load;
    void *user;
    pthread_mutex_t lock; /* budget decisions; then a model's lock */
    int stopping;         /* guarded by lock */
    int n;
    served *v;
};

models *models_new(const server_opts *o, server_load_fn load, void *user) {
    models *t = calloc(1, sizeof *t);
    if (!t || !(t->v = calloc((size_t)o->n_models, sizeof *t->v))) {
        free(t);
        return NULL;
    }
    t->o = o;
    t->load = load;
    t->user = user;
    t->n = o->n_models;
    pthread_mutex_init(&t->lock, NULL);
    for (int i = 0; i < t->n; i++) {
        served *m = &t->v[i];
        m->id = o->models[i].id;
        m->alias = o->models[i].alias;
        m->index = i;
        pthread_mutex_init(&m->lock, NULL);
        pthread_cond_init(&m->changed, NULL);
        metrics_init(&m->mx);
    }
    return t;
}

int models_count(const models *t) { return t->n; }
served *models_at(models *t, int i) { return &t->v[i]; }

served *models_find(models *t, const char *name) {
    if (!name) return &t->v[0];
    for (int i = 0; i < t->n; i++)
        if (!strcmp(name, t->v[i].id) || (t->v[i].alias && !strcmp(name, t->v[i].alias))) return &t->v[i];
    return NULL;
}

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

/* Frees what a load made (the model's lock held, the model not yet
 * published, or the server gone). The scheduler cancels whatever it still
 * runs: only requests whose clients are gone, since nobody holds the model. */
static void unload(served *m) {
    sched_free(m->s);
    gpt2c_model_free(m->m);
    gpt2c_model_free(m->d);
    gpt2c_tokenizer_free(m->t);
    m->s = NULL;
    m->m = NULL;
    m->d = NULL;
    m->t = NULL;
    m->bytes = 0;
}

/* Makes room for m (loaded, not yet ready) under the budget: unloads idle
 * models, least recently used first. The table's lock is held. 0, or -1
 * with why in err when the busy ones leave too little. */
static int make_room(models *t, served *m, char *err, size_t errlen) {
    uint64_t budget = t->o->max_memory;
    if (!budget) return 0;
    if (m->bytes > budget) {
        snprintf(err, errlen, "it needs %.1f MiB (weights and KV cache at --slots), more than --max-memory (%.1f MiB)",
                 mib(m->bytes), mib(budget));
        return -1;
    }
    for (;;) {
        uint64_t used = m->bytes, busy = 0;
        served *lru = NULL;
        for (int i = 0; i < t->n; i++) {
            served *x = &t->v[i];
            if (x == m) continue;
            pthread_mutex_lock(&x->lock);
            if (x->state == MODEL_READY) {
                used += x->bytes;
                if (x->users) busy += x->bytes;
                else if (!lru || x->last_used < lru->last_used) lru = x;
            }
            pthread_mutex_unlock(&x->lock);
        }
        if (used <= budget) return 0;
        if (!lru) {
            snprintf(err, errlen,
                     "no room for its %.1f MiB within --max-memory (%.1f MiB): models in use hold %.1f MiB; retry when "
                     "they are idle",
                     mib(m->bytes), mib(budget), mib(busy));
            return -1;
        }
        pthread_mutex_lock(&lru->lock);
        if (lru->state == MODEL_READY && lru->users == 0) {
            server_log(6, "gpt2c serve: unloading %s (%.1f MiB, idle) to make room for %s", lru->id, mib(lru->bytes), m->id);
            unload(lru);
            lru->state = MODEL_UNLOADED;
            pthread_mutex_lock(&lru->mx.lock);
            lru->mx.unloads++;
            pthread_mutex_unlock(&lru->mx.lock);
        }
        pthread_mutex_unlock(&lru->lock);
    }
}

/* Loads m (its state LOADING, so no other thread touches its fields) and,
 * within the budget, makes it ready with one user. */
static int load(models *t, served *m, api_error *e) {
    char err[512] = "";
    int status = 500;
    if (t->load(t->user, m->index, &m->m, &m->d, &m->t, err, sizeof err) == 0) {
        gpt2c_model_get_info(m->m, &m->info);
        /* The charge: the matrices as loaded and a full KV cache for every
         * slot, the draft's likewise. */
        m->bytes = m->info.weight_bytes + m->info.kv_bytes_per_token * (uint64_t)m->info.n_ctx * (uint64_t)t->o->slots;
        if (m->d) {
            gpt2c_model_info di;
            gpt2c_model_get_info(m->d, &di);
            m->bytes += di.weight_bytes + di.kv_bytes_per_token * (uint64_t)di.n_ctx * (uint64_t)t->o->slots;
        }
        m->s = sched_new(m->m, m->d, m->t, m->id, t->o, &m->mx, err, sizeof err);
    }
    pthread_mutex_lock(&t->lock);
    int ok = m->s != NULL, stopping = t->stopping;
    if (ok && stopping) {
        ok = 0;
        status = 503;
        snprintf(err, sizeof err, "the server is shutting down");
    } else if (ok && make_room(t, m, err, sizeof err)) {
        ok = 0;
        status = 503;
    }
    pthread_mutex_lock(&m->lock);
    if (ok) {
        m->state = MODEL_READY;
        m->users = 1;
        m->last_used = server_now();
        pthread_mutex_lock(&m->mx.lock);
        m->mx.loads++;
        pthread_mutex_unlock(&m->mx.lock);
        server_log(6, "gpt2c serve: loaded %s: %.1f MiB (weights %s, %s compute, %d slots), kernels %s", m->id,
                   mib(m->bytes), m->info.weight_dtype, m->info.compute, t->o->slots, m->info.kernels);
    } else {
        unload(m);
        m->state = stopping ? MODEL_STOPPED : MODEL_UNLOADED;
    }
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_unlock(&t->lock);
    if (ok) return 0;
    *e = (api_error){.status = status, .code = stopping ? "shutting_down" : status == 503 ? "model_unavailable" : "model_load_failed"};
    snprintf(e->message, sizeof e->message, "the model '%.60s' could not be loaded: %.400s", m->id, err);
    server_log(status == 503 ? 4 : 3, "gpt2c serve: %s", e->message);
    return -1;
}

int models_acquire(models *t, served *m, api_error *e) {
    pthread_mutex_lock(&m->lock);
    while (m->state == MODEL_LOADING) pthread_cond_wait(&m->changed, &m->lock);
    if (m->state == MODEL_READY) {
        m->users++;
        m->last_used = server_now();
        pthread_mutex_unlock(&m->lock);
        return 0;
    }
    if (m->state == MODEL_STOPPED) {
        pthread_mutex_unlock(&m->lock);
        *e = (api_error){.status = 503, .code = "shutting_down"};
        snprintf(e->message, sizeof e->message, "the server is shutting down");
        return -1;
    }
    m->state = MODEL_LOADING; /* this thread loads it; others wait for the outcome */
    pthread_mutex_unlock(&m->lock);
    server_log(6, "gpt2c serve: loading %s", m->id);
    return load(t, m, e);
}

void models_release(models *t, served *m) {
    (void)t;
    pthread_mutex_lock(&m->lock);
    m->users--;
    m->last_used = server_now();
    pthread_mutex_unlock(&m->lock);
}

int models_preload(models *t) {
    /* Each stays held until all are in, so none is unloaded to fit the next:
     * models that do not fit together are an error here, not a surprise later. */
    int i, rc = 0;
    api_error e;
    for (i = 0; i < t->n && rc == 0; i++) rc = models_acquire(t, &t->v[i], &e);
    for (int k = 0; k < i - (rc != 0); k++) models_release(t, &t->v[k]);
    return rc;
}

void models_shutdown(models *t, double grace_s) {
    pthread_mutex_lock(&t->lock);
    t->stopping = 1;
    pthread_mutex_unlock(&t->lock);
    /* One deadline for all: each scheduler drains while the others do. */
    double deadline = server_now() + grace_s;
    for (int i = 0; i < t->n; i++) {
        served *m = &t->v[i];
        pthread_mutex_lock(&m->lock);
        while (m->state == MODEL_LOADING) pthread_cond_wait(&m->changed, &m->lock);
        sched *s = m->state == MODEL_READY ? m->s : NULL;
        if (m->state == MODEL_UNLOADED) m->state = MODEL_STOPPED;
        pthread_mutex_unlock(&m->lock);
        if (s) {
            double left = deadline - server_now();
            sched_shutdown(s, left > 0 ? left : 0);
        }
    }
}

void models_free(models *t) {
    if (!t) return;
    if (!t->stopping) models_shutdown(t, 0); /* the server failed to start: stop what runs */
    for (int i = 0; i < t->n; i++) {
        served *m = &t->v[i];
        unload(m);
        pthread_mutex_destroy(&m->lock);
        pthread_cond_destroy(&m->changed);
        pthread_mutex_destroy(&m->mx.lock);
    }
    pthread_mutex_destroy(&t->lock);
    free(t->v);
    free(t);
}
