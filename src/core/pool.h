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
void pool_free(gpt2_pool *p);
/* The number of cores this process may run on. */
int pool_default_threads(void);

#endif
