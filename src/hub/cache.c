/* cache.c -- the Hugging Face cache layout on disk (see hub.h): paths,
 * refs, snapshot links and absence markers, listing and removal. Everything
 * that becomes visible is written to a temporary name and renamed, so a
 * reader never sees half of it. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH and FTW_PHYS */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/file.h"
#include "../model/weights.h"
#include "hub.h"

char *cache_repo_dir(const gpt2c_hub *h, const char *repo_id) {
    /* "org/name" -> "models--org--name" */
    size_t n = strlen(h->cache) + strlen(repo_id) + 16;
    char *p = malloc(n);
    if (!p) return NULL;
    int k = snprintf(p, n, "%s/models--", h->cache);
    for (const char *c = repo_id; *c; c++) {
        if (*c == '/') k += snprintf(p + k, n - (size_t)k, "--");
        else p[k++] = *c;
    }
    p[k] = '\0';
    return p;
}

int mkdirs(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return errno = ENAMETOOLONG, -1;
    strcpy(buf, path);
    for (char *c = buf + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

gpt2c_status write_atomic(gpt2c_hub *h, const char *path, const char *data) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return err_set(&h->err, GPT2C_ERR_IO, "%s: %s", tmp, strerror(errno));
    size_t n = strlen(data);
    int ok = fwrite(data, 1, n, f) == n;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set(&h->err, GPT2C_ERR_IO, "%s: %s", path, strerror(e));
    }
    return GPT2C_OK;
}

static int is_commit(const char *s) {
    size_t n = strlen(s);
    if (n != 40) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int cache_commit(const char *repo_dir, const char *rev, char commit[41]) {
    char path[4200];
    if (is_commit(rev)) {
        snprintf(path, sizeof path, "%s/snapshots/%s", repo_dir, rev);
        if (!file_exists(path)) return 0;
        memcpy(commit, rev, 41);
        return 1;
    }
    snprintf(path, sizeof path, "%s/refs/%s", repo_dir, rev);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, " \r\n")] = '\0';
    if (!is_commit(buf)) return 0;
    memcpy(commit, buf, 41);
    return 1;
}

int cache_has(const char *repo_dir, const char *commit, const char *file) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/snapshots/%s/%s", repo_dir, commit, file);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return 1; /* follows the link to the blob */
    snprintf(path, sizeof path, "%s/.no_exist/%s/%s", repo_dir, commit, file);
    return file_exists(path) ? -1 : 0;
}

gpt2c_status cache_link(gpt2c_hub *h, const char *repo_dir, const char *commit, const char *file, const char *etag) {
    char dir[4200], link[4300], tmp[4400], target[600];
    snprintf(dir, sizeof dir, "%s/snapshots/%s", repo_dir, commit);
    if (mkdirs(dir) != 0) return err_set(&h->err, GPT2C_ERR_IO, "%s: %s", dir, strerror(errno));
    snprintf(link, sizeof link, "%s/%s", dir, file);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", link, (long)getpid());
    /* Relative, as huggingface_hub makes them: the cache can move. */
    snprintf(target, sizeof target, "../../blobs/%s", etag);
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set(&h->err, GPT2C_ERR_IO, "%s: %s", link, strerror(e));
    }
    return GPT2C_OK;
}

gpt2c_status cache_mark_absent(gpt2c_hub *h, const char *repo_dir, const char *commit, const char *file) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/.no_exist/%s", repo_dir, commit);
    if (mkdirs(dir) != 0) return err_set(&h->err, GPT2C_ERR_IO, "%s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return write_atomic(h, path, "");
}

/* The shards an index lists, all present. */
static int shards_complete(const char *repo_dir, const char *commit, const char *index) {
    char path[4300], **shards;
    int n, ok = 1;
    gpt2_err e = {0};
    snprintf(path, sizeof path, "%s/snapshots/%s/%s", repo_dir, commit, index);
    if (weights_index_shards(path, &shards, &n, &e)) return 0;
    for (int i = 0; i < n && ok; i++) ok = cache_has(repo_dir, commit, shards[i]) == 1;
    weights_free_names(shards, n);
    return ok;
}

const char *const TOKENIZER_EXTRA[TOKENIZER_EXTRA_N] = {"tokenizer_config.json", "special_tokens_map.json",
                                                        "added_tokens.json"};

int cache_complete(const char *repo_dir, const char *commit, unsigned what) {
    if (what & GPT2C_HUB_TOKENIZER) {
        /* vocab.json + merges.txt, or tokenizer.json, or known to have
         * neither (a model run from token ids). TOKENIZER_EXTRA are optional:
         * caches pulled before gpt2c read them stay complete without. */
        int pair = cache_has(repo_dir, commit, "vocab.json") == 1 && cache_has(repo_dir, commit, "merges.txt") == 1;
        if (!pair && cache_has(repo_dir, commit, "tokenizer.json") == 0) return 0;
    }
    if (what & GPT2C_HUB_MODEL) {
        if (cache_has(repo_dir, commit, "config.json") != 1) return 0;
        if (cache_has(repo_dir, commit, "generation_config.json") == 0) return 0; /* neither present nor known absent */
        /* The first weight file not known to be absent decides, as when
         * fetching. */
        for (int i = 0; i < WEIGHT_FILES_N; i++) {
            int has = cache_has(repo_dir, commit, WEIGHT_FILES[i]);
            if (has == -1) continue;
            return has == 1 && (!weights_is_index(WEIGHT_FILES[i]) || shards_complete(repo_dir, commit, WEIGHT_FILES[i]));
        }
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ list, remove */

static uint64_t dir_bytes(const char *path) {
    uint64_t total = 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4700];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

gpt2c_status gpt2c_hub_list(gpt2c_hub *h, gpt2c_cache_fn fn, void *user) {
    err_clear(&h->err);
    DIR *d = opendir(h->cache);
    if (!d) return errno == ENOENT ? GPT2C_OK : err_set(&h->err, GPT2C_ERR_IO, "%s: %s", h->cache, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "models--", 8) != 0) continue;
        /* "models--org--name" -> "org/name" */
        char id[512], path[4300], revs[2048] = "";
        const char *src = e->d_name + 8;
        size_t k = 0;
        for (; *src && k < sizeof id - 1; src++) {
            if (src[0] == '-' && src[1] == '-') id[k++] = '/', src++;
            else id[k++] = *src;
        }
        id[k] = '\0';
        snprintf(path, sizeof path, "%s/%s", h->cache, e->d_name);
        char refs[4400];
        snprintf(refs, sizeof refs, "%s/refs", path);
        DIR *r = opendir(refs);
        size_t used = 0;
        struct dirent *re;
        while (r && (re = readdir(r)))
            if (re->d_name[0] != '.' && used + strlen(re->d_name) + 2 < sizeof revs)
                used += (size_t)snprintf(revs + used, sizeof revs - used, "%s%s", used ? "," : "", re->d_name);
        if (r) closedir(r);
        char blobs[4400];
        snprintf(blobs, sizeof blobs, "%s/blobs", path);
        fn(user, id, dir_bytes(blobs), revs, path);
    }
    closedir(d);
    return GPT2C_OK;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

gpt2c_status gpt2c_hub_remove(gpt2c_hub *h, const char *repo_id) {
    err_clear(&h->err);
    if (!hub_valid_repo_id(repo_id))
        return err_set(&h->err, GPT2C_ERR_INVALID, "'%s' is not a hub repo id", repo_id);
    char *dir = cache_repo_dir(h, repo_id);
    if (!dir) return err_set(&h->err, GPT2C_ERR_NOMEM, "out of memory");
    gpt2c_status s = GPT2C_OK;
    if (!file_exists(dir)) s = err_set(&h->err, GPT2C_ERR_NOT_FOUND, "%s is not in the cache (%s)", repo_id, h->cache);
    else if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        s = err_set(&h->err, GPT2C_ERR_IO, "%s: %s", dir, strerror(errno));
    free(dir);
    return s;
}
