/* hub.h -- internals shared by the hub client (hub.c: settings, HTTP,
 * downloads) and the cache layout (cache.c), which follows huggingface_hub's:
 *   {cache}/models--{org}--{name}/blobs/{etag}
 *   {cache}/models--{org}--{name}/snapshots/{commit}/{file} -> ../../blobs/{etag}
 *   {cache}/models--{org}--{name}/refs/{revision}            (holds the commit)
 *   {cache}/models--{org}--{name}/.no_exist/{commit}/{file}  (the hub said 404)
 *   {cache}/.locks/models--{org}--{name}/{etag}.lock */
#ifndef GPT2C_HUB_H
#define GPT2C_HUB_H

#include "../core/err.h"
#include "gpt2c.h"

struct gpt2c_hub {
    gpt2_err err;
    char *endpoint; /* no trailing slash */
    char *cache;    /* the hub cache root */
    char *token;    /* NULL when none */
    int offline;
    gpt2c_progress_fn progress;
    void *progress_user;
    long requests;
};

/* hub.c: huggingface_hub's rule for "org/name" */
int hub_valid_repo_id(const char *id);

/* cache.c */
char *cache_repo_dir(const gpt2c_hub *h, const char *repo_id);
/* mkdir -p; 0 or -1 with errno. */
int mkdirs(const char *path);
/* Writes data to path through a temporary file and a rename. */
gpt2c_status write_atomic(gpt2c_hub *h, const char *path, const char *data);
/* The commit a revision names in the cache (refs/{rev}, or rev itself when
 * it is a 40-hex commit with a snapshot); 0 when unknown. */
int cache_commit(const char *repo_dir, const char *rev, char commit[41]);
/* 1 if snapshots/{commit}/{file} resolves to a blob, -1 if .no_exist marks
 * it absent, 0 if unknown. */
int cache_has(const char *repo_dir, const char *commit, const char *file);
gpt2c_status cache_link(gpt2c_hub *h, const char *repo_dir, const char *commit, const char *file, const char *etag);
gpt2c_status cache_mark_absent(gpt2c_hub *h, const char *repo_dir, const char *commit, const char *file);
/* Whether the snapshot holds everything `what` needs (see gpt2c_hub_resolve). */
int cache_complete(const char *repo_dir, const char *commit, unsigned what);
/* The tokenizer's optional companions, fetched with it when the repo has them. */
#define TOKENIZER_EXTRA_N 3
extern const char *const TOKENIZER_EXTRA[TOKENIZER_EXTRA_N];

#endif
