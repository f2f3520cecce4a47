/* limits.c -- the hardware limits a benchmark reports against, measured in
 * the same process with the same kernels and threads: how fast the model's
 * weights can be read (the decode roofline) and how fast f32 FMAs run (the
 * prefill roofline). */
#include <stdlib.h>
#include <time.h>

#include "../core/pool.h"
#include "model.h"

typedef struct probe {
    const gpt2c_model *m;
    int what; /* 0 read, 1 fma */
    double flops[64];
    float sink[64];
} probe;

static void probe_run(void *ctx, int ith, int nth) {
    probe *p = ctx;
    const gpt2_kernels *k = p->m->k;
    if (p->what == 1) {
        p->flops[ith] = k->fma_probe(20000000);
        return;
    }
    /* Each thread reads its share of every mapped weight file. */
    for (int f = 0; f < p->m->n_st; f++) {
        const st_file *st = &p->m->st[f];
        size_t chunk = (st->map.size / (size_t)nth + 4095) & ~(size_t)4095, lo = chunk * (size_t)ith;
        if (lo >= st->map.size) continue;
        size_t n = st->map.size - lo < chunk ? st->map.size - lo : chunk;
        p->sink[ith] += k->read_probe(st->map.data + lo, n);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int gpt2c_default_threads(void) { return pool_default_threads(); }

gpt2c_status gpt2c_model_measure_limits(gpt2c_model *m, int n_threads, double *bytes_per_s, double *flops_per_s) {
    err_clear(&m->err);
    if (n_threads == 0) n_threads = pool_default_threads();
    if (n_threads < 1 || n_threads > 64) return err_set(&m->err, GPT2C_ERR_INVALID, "threads must be in 1..64");
    gpt2_pool *pool = pool_new(n_threads);
    if (!pool) return err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory starting threads");
    probe p = {.m = m};
    size_t bytes = 0;
    for (int f = 0; f < m->n_st; f++) bytes += m->st[f].map.size;
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) { /* the first pass also maps the pages */
        double t0 = now_s();
        pool_run(pool, probe_run, &p);
        double dt = now_s() - t0;
        if (rep > 0 && dt < best) best = dt;
    }
    *bytes_per_s = (double)bytes / best;
    p.what = 1;
    double t0 = now_s();
    pool_run(pool, probe_run, &p);
    double dt = now_s() - t0, flops = 0;
    for (int i = 0; i < n_threads; i++) flops += p.flops[i];
    *flops_per_s = flops / dt;
    pool_free(pool);
    return GPT2C_OK;
}
