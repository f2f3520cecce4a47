/* pool.c -- see pool.h. The wake-up protocol: the caller bumps the job
 * generation, then wakes sleepers if it sees any; a worker announces itself
 * as a sleeper before its final check of the generation. Both sides use
 * sequentially consistent atomics, so either the caller sees the sleeper or
 * the sleeper sees the new generation: no wake-up is lost. */
#define _GNU_SOURCE /* sched_getaffinity */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SPINS (1 << 15)

struct gpt2_pool {
    int n;
    pthread_t *threads;
    atomic_int gen, pending, stop, sleepers;
    pool_fn fn;
    void *ctx;
    /* pool_deal's runs, one a thread: the next unit in the high half, the
     * end in the low, so that the owner's take from the front and a
     * thief's from the back are each one compare-and-swap of the word. */
    _Atomic uint64_t *runs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct worker_arg {
    gpt2_pool *p;
    int i;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *arg) {
    worker_arg *w = arg;
    gpt2_pool *p = w->p;
    int i = w->i, seen = 0;
    free(w);
    for (;;) {
        for (int s = 0; s < SPINS && atomic_load(&p->gen) == seen && !atomic_load(&p->stop); s++) cpu_relax();
        if (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load(&p->gen);
        p->fn(p->ctx, i, p->n);
        atomic_fetch_sub(&p->pending, 1);
    }
}

gpt2_pool *pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    gpt2_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->runs = calloc((size_t)n_threads, sizeof *p->runs);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (!p->threads || !p->runs) {
        p->n = 1; /* no thread to join */
        pool_free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *w = malloc(sizeof *w);
        if (w) *w = (worker_arg){p, i};
        if (!w || pthread_create(&p->threads[i], NULL, worker, w) != 0) {
            free(w);
            p->n = i; /* only the threads that started are joined */
            pool_free(p);
            return NULL;
        }
    }
    return p;
}

void pool_run(gpt2_pool *p, pool_fn fn, void *ctx) {
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    while (atomic_load(&p->pending) > 0) cpu_relax();
}

int pool_size(const gpt2_pool *p) { return p->n; }

void pool_deal(gpt2_pool *p, int total) {
    for (int i = 0; i < p->n; i++) {
        const uint64_t lo = (uint64_t)total * (uint64_t)i / (uint64_t)p->n;
        const uint64_t hi = (uint64_t)total * (uint64_t)(i + 1) / (uint64_t)p->n;
        atomic_store_explicit(&p->runs[i], lo << 32 | hi, memory_order_relaxed); /* pool_run publishes it */
    }
}

int pool_take(gpt2_pool *p, int ith) {
    uint64_t r = atomic_load(&p->runs[ith]);
    while (r >> 32 < (r & 0xffffffffu))
        if (atomic_compare_exchange_weak(&p->runs[ith], &r, r + ((uint64_t)1 << 32))) return (int)(r >> 32);
    for (int k = 1; k < p->n; k++) {
        const int j = (ith + k) % p->n;
        uint64_t q = atomic_load(&p->runs[j]);
        while (q >> 32 < (q & 0xffffffffu))
            if (atomic_compare_exchange_weak(&p->runs[j], &q, q - 1)) return (int)(q & 0xffffffffu) - 1;
    }
    return -1;
}

void pool_free(gpt2_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->runs);
    free(p);
}

/* Physical cores among the CPUs this process may use: SMT siblings share
 * their core's FMA units and memory bandwidth, so a second thread on a core
 * buys nothing for this work. */
int pool_default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int cores = 0, seen[1024][2], n_seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n_seen < 1024; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        char path[128];
        int ids[2] = {-1, -1};
        const char *names[2] = {"core_id", "physical_package_id"};
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/%s", cpu, names[k]);
            FILE *f = fopen(path, "r");
            if (f) {
                if (fscanf(f, "%d", &ids[k]) != 1) ids[k] = -1;
                fclose(f);
            }
        }
        if (ids[0] < 0) ids[0] = cpu; /* no topology: count every CPU */
        int dup = 0;
        for (int j = 0; j < n_seen && !dup; j++) dup = seen[j][0] == ids[0] && seen[j][1] == ids[1];
        if (!dup) {
            seen[n_seen][0] = ids[0];
            seen[n_seen][1] = ids[1];
            n_seen++;
            cores++;
        }
    }
    return cores > 0 ? cores : 1;
}
