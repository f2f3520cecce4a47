/* pool.c -- see pool.h.
 *
 * A job is n parts, fn(ctx, i, n) for i in [0, n). No part belongs to a
 * thread: the caller and the workers claim parts from one counter until none
 * is left, so a worker that the machine has not scheduled (another process
 * holds its core) delays nothing -- the caller runs its part too. Spinning
 * on a busy machine made two threads 5-10x slower than one: the caller
 * spun until a descheduled worker got a time slice, for every one of the
 * hundred jobs of a token, and the spinning took the core that worker needed.
 * Now both sides spin only briefly (jobs come back to back within a forward
 * pass) and then sleep on a futex, which frees the core.
 *
 * The protocols. A job is published as one 64-bit word, the generation in the
 * high half and the next unclaimed part in the low half, so a claim is a
 * compare-and-swap that fails on a later job's word: a late worker can never
 * run a part of a job it did not see. fn and ctx are written before the word
 * and read after a successful claim; the next job is published only when all
 * n parts have finished (`done`), so they cannot change under a running part.
 * Sleeping, both ways: the sleeper announces itself, re-checks, then waits on
 * the futex word's old value; the waker changes the word, then wakes if it
 * sees a sleeper. With sequentially consistent atomics either the sleeper sees
 * the change or the waker sees the sleeper: no wake-up is lost. */
#define _GNU_SOURCE /* sched_getaffinity, syscall */
#include "pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long a thread with nothing to do spins before it sleeps. Longer than
 * the gaps between the jobs of a forward pass (a few microseconds), short
 * against a time slice, so that on a busy machine it soon gives its core
 * back. */
#define SPIN_NS 50000

/* Adapting to a busy machine (pool_epoch_begin/end). Claiming parts makes
 * an absent worker cost little, but on a machine whose cores are taken by
 * other processes the workers still contend with the caller for the cores
 * and a part held by a descheduled thread is still waited for: two threads
 * ran slower than one beside a busy process. So the pool measures both ways
 * of running, per kind of epoch (the forward passes of one batch size), and
 * keeps the faster. Trying the caller alone costs half an epoch's speed on
 * an idle machine, so it is tried only when epochs look contended: the
 * caller had the CPU for less than ADAPT_BUSY of the epoch's wall time
 * (preempted, or asleep waiting for a worker). After ADAPT_SOLO such epochs
 * the caller runs alone for ADAPT_TRY epochs; alone is kept if it beat the
 * threads' running average by 5%, and otherwise the count doubles, up to
 * ADAPT_MAX. Alone, there is no such sign that the machine has become idle
 * again, so all threads are tried after ADAPT_THREADS epochs, then after
 * twice as many each time they lose, up to ADAPT_MAX. */
#define ADAPT_KEYS 8
#define ADAPT_SOLO 1
#define ADAPT_THREADS 32
#define ADAPT_MAX 128
#define ADAPT_TRY 2
#define ADAPT_BUSY 0.85
typedef struct adapt_entry {
    int key;         /* 0: unused */
    double cost[2];  /* average seconds an epoch: [0] all threads, [1] the caller alone */
    int mode;        /* the mode kept */
    int left;        /* (contended, with all threads) epochs before the next try */
    int interval;    /* what left starts from */
    int trying;      /* epochs left of a try */
    double try_sum;  /* their seconds so far */
} adapt_entry;

struct gpt2_pool {
    int n;
    pthread_t *threads;
    _Atomic uint64_t job;   /* generation << 32 | next part to claim */
    atomic_uint gen;        /* the generation alone: the workers' futex word */
    atomic_uint done;       /* parts finished in this job: the caller's futex word */
    atomic_int sleepers;    /* workers asleep on gen */
    atomic_int waiting;     /* the caller is asleep on done */
    atomic_int stop;
    pool_fn fn;
    void *ctx;
    /* pool_deal's runs, one a part: the next unit in the high half, the end
     * in the low, so that the owner's take from the front and a thief's
     * from the back are each one compare-and-swap of the word. */
    _Atomic uint64_t *runs;
    /* Parts of the last jobs that the caller ran besides its first (for
     * tests: the proof that an absent worker is not waited for). */
    atomic_long caller_extra;
    /* The caller runs every part itself, the workers left asleep: what
     * pool_epoch chose for the epoch under way. */
    int solo;
    adapt_entry adapt[ADAPT_KEYS];
    adapt_entry *epoch; /* the entry of the epoch under way */
    double epoch_wall, epoch_cpu; /* when it began, on the clock and in the caller's CPU time */
    int adapt_next;     /* the entry a new key replaces */
};

typedef struct worker_arg {
    gpt2_pool *p;
    int i;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long futex(atomic_uint *word, int op, unsigned val) {
    return syscall(SYS_futex, (unsigned *)word, op, val, NULL, NULL, 0);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until *word differs from old (or the pool stops), for at most
 * SPIN_NS; 1 if it changed. */
static int spin_while(gpt2_pool *p, atomic_uint *word, unsigned old) {
    const int64_t end = now_ns() + SPIN_NS;
    for (;;) {
        for (int s = 0; s < 64; s++) {
            if (atomic_load(word) != old || atomic_load(&p->stop)) return 1;
            cpu_relax();
        }
        if (now_ns() > end) return 0;
    }
}

/* The next part of job `gen`, or -1 when all are claimed or the job is over. */
static int claim(gpt2_pool *p, unsigned gen) {
    uint64_t j = atomic_load(&p->job);
    while ((unsigned)(j >> 32) == gen && (uint32_t)j < (uint32_t)p->n)
        if (atomic_compare_exchange_weak(&p->job, &j, j + 1)) return (int)(uint32_t)j;
    return -1;
}

/* Runs the parts of job gen that are still unclaimed; returns how many. */
static int run_parts(gpt2_pool *p, unsigned gen) {
    int ran = 0;
    for (int i; (i = claim(p, gen)) >= 0; ran++) {
        p->fn(p->ctx, i, p->n);
        if (atomic_fetch_add(&p->done, 1) + 1 == (unsigned)p->n && atomic_load(&p->waiting))
            futex(&p->done, FUTEX_WAKE_PRIVATE, 1);
    }
    return ran;
}

static void *worker(void *arg) {
    gpt2_pool *p = ((worker_arg *)arg)->p;
    free(arg);
    unsigned seen = 0;
    for (;;) {
        if (!spin_while(p, &p->gen, seen)) {
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                futex(&p->gen, FUTEX_WAIT_PRIVATE, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load(&p->gen);
        run_parts(p, seen);
    }
}

gpt2_pool *pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    gpt2_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->runs = calloc((size_t)n_threads, sizeof *p->runs);
    /* No job yet: generation 0 with every part claimed. */
    atomic_store(&p->job, (uint64_t)(uint32_t)n_threads);
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
    if (p->solo) { /* the same parts, so the same results, on this thread */
        for (int i = 0; i < p->n; i++) fn(ctx, i, p->n);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->done, 0);
    const unsigned gen = atomic_load(&p->gen) + 1;
    atomic_store(&p->job, (uint64_t)gen << 32);
    atomic_store(&p->gen, gen);
    if (atomic_load(&p->sleepers) > 0) futex(&p->gen, FUTEX_WAKE_PRIVATE, INT_MAX);
    const int ran = run_parts(p, gen);
    if (ran > 1) atomic_fetch_add(&p->caller_extra, ran - 1);
    /* Parts a worker claimed are still running: wait for them, briefly
     * spinning, then asleep, so that a worker waiting for a core gets this one. */
    for (unsigned d; (d = atomic_load(&p->done)) < (unsigned)p->n;) {
        if (spin_while(p, &p->done, d)) continue;
        atomic_store(&p->waiting, 1);
        if (atomic_load(&p->done) == d) futex(&p->done, FUTEX_WAIT_PRIVATE, d);
        atomic_store(&p->waiting, 0);
    }
}

int pool_size(const gpt2_pool *p) { return p->n; }

int pool_solo(const gpt2_pool *p) { return p->solo; }

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void pool_epoch_begin(gpt2_pool *p, int key) {
    p->epoch = NULL;
    if (p->n == 1 || key <= 0) return;
    adapt_entry *e = NULL;
    for (int i = 0; i < ADAPT_KEYS && !e; i++)
        if (p->adapt[i].key == key) e = &p->adapt[i];
    if (!e) { /* a new kind of epoch: all threads first */
        e = &p->adapt[p->adapt_next];
        p->adapt_next = (p->adapt_next + 1) % ADAPT_KEYS;
        *e = (adapt_entry){.key = key, .cost = {-1, -1}, .left = ADAPT_SOLO, .interval = ADAPT_SOLO};
    }
    p->epoch = e;
    p->solo = e->trying ? !e->mode : e->mode;
    p->epoch_wall = (double)now_ns() * 1e-9;
    p->epoch_cpu = cpu_now();
}

void pool_epoch_end(gpt2_pool *p) {
    if (p->epoch) pool_epoch_record(p, (double)now_ns() * 1e-9 - p->epoch_wall, cpu_now() - p->epoch_cpu);
}

void pool_epoch_record(gpt2_pool *p, double wall, double cpu) {
    adapt_entry *e = p->epoch;
    if (!e) return;
    p->epoch = NULL;
    if (e->trying) {
        e->try_sum += wall;
        if (--e->trying) return;
        const int other = !e->mode;
        e->cost[other] = e->try_sum / ADAPT_TRY;
        if (e->cost[other] < 0.95 * e->cost[e->mode]) e->mode = other, e->interval = other ? ADAPT_THREADS : ADAPT_SOLO;
        else if (e->interval < ADAPT_MAX) e->interval *= 2;
        e->left = e->interval;
        return;
    }
    e->cost[e->mode] = e->cost[e->mode] < 0 ? wall : 0.75 * e->cost[e->mode] + 0.25 * wall;
    if (e->mode == 1 || cpu < ADAPT_BUSY * wall)
        if (--e->left <= 0) e->trying = ADAPT_TRY, e->try_sum = 0;
}

long pool_caller_extra(gpt2_pool *p) { return atomic_load(&p->caller_extra); }

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
    /* Alone, the caller runs every part, so each takes its own run, in
     * order: taken from the back, the weights streamed backwards past
     * the kernels' prefetch (solo decode ran at 2/3 of one thread's speed). */
    for (int k = 1; k < p->n && !p->solo; k++) {
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
    atomic_fetch_add(&p->gen, 1); /* changes the futex word, so no sleeper misses the stop */
    futex(&p->gen, FUTEX_WAKE_PRIVATE, INT_MAX);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
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
