/* pool.h -- a persistent thread pool for the forward pass. The caller is
 * thread 0; n - 1 workers wait between jobs, spinning briefly (jobs come back
 * to back within a forward pass) and then sleeping on a condition variable. */
#ifndef GPT2C_POOL_H
#define GPT2C_POOL_H

typedef struct gpt2_pool gpt2_pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);

/* n_threads includes the caller; NULL when out of memory or threads. */
gpt2_pool *pool_new(int n_threads);
/* Runs fn(ctx, i, n) on every thread i and returns when all are done. */
void pool_run(gpt2_pool *p, pool_fn fn, void *ctx);
int pool_size(const gpt2_pool *p);

/* Units [0, total) of the next job, for pool_take: each thread owns one
 * contiguous run of them (an even split) and takes its own in order; a
 * thread whose run is done takes units from the back of the others'. The
 * two threads of a machine often read memory at different speeds, and a
 * static split left the faster one idle for 12% of a decode product. Call
 * before pool_run; total below 2^31. */
void pool_deal(gpt2_pool *p, int total);
/* The next unit for thread ith of the job, or -1 when all are taken. */
int pool_take(gpt2_pool *p, int ith);
void pool_free(gpt2_pool *p);
/* The number of cores this process may run on. */
int pool_default_threads(void);

#endif
