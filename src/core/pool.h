/* pool.h -- a persistent thread pool for the forward pass. A job is n parts,
 * claimed by the caller and n - 1 workers alike, so that a worker another
 * process keeps off its core is never waited for; between jobs the workers
 * spin briefly (jobs come back to back within a forward pass) and then sleep. */
#ifndef GPT2C_POOL_H
#define GPT2C_POOL_H

typedef struct gpt2_pool gpt2_pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);

/* n_threads includes the caller; NULL when out of memory or threads. */
gpt2_pool *pool_new(int n_threads);
/* Runs fn(ctx, i, n) once for every part i in [0, n), each on whichever
 * thread claims it (the caller included; two parts never run at once on one
 * thread), and returns when all are done. Scratch indexed by i is the part's
 * alone. */
void pool_run(gpt2_pool *p, pool_fn fn, void *ctx);
int pool_size(const gpt2_pool *p);
/* How many parts the caller has run besides one a job, over the pool's
 * life: those no worker had claimed when the caller was done with its own. */
long pool_caller_extra(gpt2_pool *p);

/* Epochs: a caller that runs similar work again and again (a forward pass
 * of a given batch size) brackets each with these, and the pool keeps
 * whichever is faster on this machine just now, all threads or the caller
 * alone, trying the other now and then (pool.c says how). `key` names the
 * kind of work (epochs of different keys are not compared; <= 0: not
 * measured). Results do not depend on the mode: the same parts run either
 * way. pool_epoch_record ends an epoch with the given wall and caller CPU
 * seconds instead of measuring them (for tests). */
void pool_epoch_begin(gpt2_pool *p, int key);
void pool_epoch_end(gpt2_pool *p);
void pool_epoch_record(gpt2_pool *p, double wall, double cpu);
/* 1 while the caller runs jobs alone. */
int pool_solo(const gpt2_pool *p);

/* Units [0, total) of the next job, for pool_take: each thread owns one
 * contiguous run of them (an even split) and takes its own in order; a
 * thread whose run is done takes units from the back of the others'. The
 * two threads of a machine often read memory at different speeds, and a
 * static split left the faster one idle for 12% of a decode product. Call
 * before pool_run; total below 2^31. */
void pool_deal(gpt2_pool *p, int total);
/* The next unit for part ith of the job, or -1 when all are taken. */
int pool_take(gpt2_pool *p, int ith);
void pool_free(gpt2_pool *p);
/* The number of cores this process may run on. */
int pool_default_threads(void);

#endif
