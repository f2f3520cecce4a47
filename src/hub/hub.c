/* hub.c -- models by name from the Hugging Face hub, as huggingface_hub
 * fetches them: a HEAD on {endpoint}/{repo}/resolve/{revision}/{file}
 * without redirects (X-Repo-Commit, X-Linked-Etag / ETag, X-Linked-Size),
 * then a GET that follows redirects to the CDN, into
 * blobs/{etag}.incomplete, resumed with Range after an interruption and
 * verified (SHA-256 for LFS files, the git blob hash otherwise) before the
 * rename into place. HTTP is libcurl's and hashing OpenSSL's. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/file.h"
#include "../model/weights.h"
#include "hub.h"

#define HUB_RETRIES 5 /* resumed attempts after a dropped transfer */

/* ---------------------------------------------------------------- settings */

static char *env_dup(const char *name) {
    const char *v = getenv(name);
    return v && *v ? strdup(v) : NULL;
}

static int env_true(const char *name) {
    const char *v = getenv(name);
    if (!v) return 0;
    return !strcasecmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcasecmp(v, "true");
}

/* $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
static char *hf_home(void) {
    char buf[4096];
    const char *v;
    if ((v = getenv("HF_HOME")) && *v) return strdup(v);
    if ((v = getenv("XDG_CACHE_HOME")) && *v) snprintf(buf, sizeof buf, "%s/huggingface", v);
    else snprintf(buf, sizeof buf, "%s/.cache/huggingface", getenv("HOME") ? getenv("HOME") : ".");
    return strdup(buf);
}

gpt2c_status gpt2c_hub_new(gpt2c_hub **out) {
    gpt2c_hub *h = calloc(1, sizeof *h);
    *out = h;
    if (!h) return GPT2C_ERR_NOMEM;
    char *home = hf_home();
    h->endpoint = env_dup("HF_ENDPOINT");
    if (!h->endpoint) h->endpoint = strdup("https://huggingface.co");
    h->cache = env_dup("HF_HUB_CACHE");
    if (!h->cache && home) {
        h->cache = malloc(strlen(home) + 5);
        if (h->cache) sprintf(h->cache, "%s/hub", home);
    }
    h->token = env_dup("HF_TOKEN");
    if (!h->token && home) { /* the file `huggingface-cli login` writes */
        char path[4200], *data;
        size_t n;
        gpt2_err ignore = {0};
        snprintf(path, sizeof path, "%s/token", home);
        if (file_exists(path) && file_read(path, 4096, &data, &n, &ignore) == GPT2C_OK) {
            data[strcspn(data, " \r\n\t")] = '\0';
            if (*data) h->token = data;
            else free(data);
        }
    }
    free(home);
    h->offline = env_true("HF_HUB_OFFLINE") || env_true("TRANSFORMERS_OFFLINE");
    if (!h->endpoint || !h->cache) return err_set(&h->err, GPT2C_ERR_NOMEM, "out of memory");
    size_t n = strlen(h->endpoint);
    while (n > 0 && h->endpoint[n - 1] == '/') h->endpoint[--n] = '\0';
    return GPT2C_OK;
}

const char *gpt2c_hub_errmsg(const gpt2c_hub *h) { return err_msg_or_nomem(h ? &h->err : NULL); }
const char *gpt2c_hub_cache_dir(const gpt2c_hub *h) { return h->cache; }
long gpt2c_hub_requests(const gpt2c_hub *h) { return h->requests; }

void gpt2c_hub_set_progress(gpt2c_hub *h, gpt2c_progress_fn fn, void *user) {
    h->progress = fn;
    h->progress_user = user;
}

void gpt2c_hub_free(gpt2c_hub *h) {
    if (!h) return;
    free(h->endpoint);
    free(h->cache);
    free(h->token);
    free(h);
}

/* huggingface_hub's rule: [org/]name of letters, digits, '-', '_', '.', at
 * most 96 characters a part, no "--" or "..", not led or ended by - or . */
int hub_valid_repo_id(const char *id) {
    int parts = 1;
    size_t len = 0;
    if (!*id || strstr(id, "--") || strstr(id, "..")) return 0;
    for (const char *c = id;; c++) {
        if (*c == '/' || *c == '\0') {
            if (len == 0 || len > 96 || c[-1] == '-' || c[-1] == '.') return 0;
            if (*c == '\0') break;
            if (++parts > 2) return 0;
            len = 0;
            continue;
        }
        if (len == 0 && (*c == '-' || *c == '.')) return 0;
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.') return 0;
        len++;
    }
    return 1;
}

static int valid_revision(const char *r) {
    if (!*r || strlen(r) > 200 || strstr(r, "..") || r[0] == '/') return 0;
    for (const char *c = r; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_./", *c)) return 0;
    return 1;
}

/* -------------------------------------------------------------------- HTTP */

typedef struct http_meta {
    long status;
    char commit[64], etag[160], location[2048], error_code[64];
    long long size;
} http_meta;

static void header_value(char *dst, size_t cap, const char *v, size_t n) {
    while (n > 0 && (*v == ' ' || *v == '\t')) v++, n--;
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *user) {
    http_meta *m = user;
    size_t n = size * nitems;
    const char *colon = memchr(buf, ':', n);
    if (!colon) return n;
    size_t kl = (size_t)(colon - buf), vl = n - kl - 1;
    char tmp[64];
#define IS(name) (kl == strlen(name) && strncasecmp(buf, name, kl) == 0)
    if (IS("x-repo-commit")) header_value(m->commit, sizeof m->commit, colon + 1, vl);
    else if (IS("x-linked-etag")) header_value(m->etag, sizeof m->etag, colon + 1, vl);
    else if (IS("etag") && !m->etag[0]) header_value(m->etag, sizeof m->etag, colon + 1, vl);
    else if (IS("location")) header_value(m->location, sizeof m->location, colon + 1, vl);
    else if (IS("x-error-code")) header_value(m->error_code, sizeof m->error_code, colon + 1, vl);
    else if (IS("x-linked-size")) header_value(tmp, sizeof tmp, colon + 1, vl), m->size = atoll(tmp);
    else if (IS("content-length") && m->size < 0) header_value(tmp, sizeof tmp, colon + 1, vl), m->size = atoll(tmp);
#undef IS
    return n;
}

static struct curl_slist *auth_headers(const gpt2c_hub *h) {
    struct curl_slist *l = curl_slist_append(NULL, "Accept-Encoding: identity");
    l = curl_slist_append(l, "User-Agent: gpt2c/" GPT2C_VERSION);
    if (h->token) {
        char buf[4200];
        snprintf(buf, sizeof buf, "Authorization: Bearer %s", h->token);
        /* libcurl does not pass a custom Authorization header on to another
         * host when following a redirect (the CDN never sees the token). */
        l = curl_slist_append(l, buf);
    }
    return l;
}

/* A handle for one request to url with the settings every request shares
 * (the hub's headers, errors into errbuf, a connect timeout, no signals);
 * counts the request. *hd is for curl_slist_free_all after the request. */
static CURL *curl_start(gpt2c_hub *h, const char *url, char *errbuf, struct curl_slist **hd) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    *hd = auth_headers(h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hd);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    h->requests++;
    return c;
}

static gpt2c_status curl_failure(gpt2c_hub *h, CURLcode rc, const char *url, const char *detail) {
    return err_set(&h->err, GPT2C_ERR_NETWORK, "%s: %s%s%s (set HF_HUB_OFFLINE=1 to use only the cache)", url,
                   curl_easy_strerror(rc), detail[0] ? ": " : "", detail);
}

/* The hub's answer as an error, in the words huggingface_hub uses. */
static gpt2c_status http_failure(gpt2c_hub *h, const http_meta *m, const char *repo, const char *file) {
    const char *code = m->error_code;
    if (!strcmp(code, "RepositoryNotFound") || (m->status == 401 && !code[0]))
        return err_set(&h->err, m->status == 401 && !h->token ? GPT2C_ERR_PERMISSION : GPT2C_ERR_NOT_FOUND,
                       "%s: repository not found on %s (if it is private or gated, set HF_TOKEN)", repo, h->endpoint);
    if (!strcmp(code, "GatedRepo") || m->status == 403)
        return err_set(&h->err, GPT2C_ERR_PERMISSION,
                       "%s is gated or forbidden (HTTP %ld): accept its terms on the hub and set HF_TOKEN", repo, m->status);
    if (!strcmp(code, "RevisionNotFound"))
        return err_set(&h->err, GPT2C_ERR_NOT_FOUND, "%s: revision not found", repo);
    if (!strcmp(code, "EntryNotFound") || m->status == 404)
        return err_set(&h->err, GPT2C_ERR_NOT_FOUND, "%s: file '%s' not found in the repository", repo, file);
    return err_set(&h->err, GPT2C_ERR_NETWORK, "%s/%s: the hub answered HTTP %ld", repo, file, m->status);
}

/* HEAD url without following redirects, except relative ones (a renamed
 * repository), as huggingface_hub does. On return url holds the final
 * address. */
static gpt2c_status http_head(gpt2c_hub *h, char *url, size_t url_cap, http_meta *m) {
    for (int hop = 0; hop < 5; hop++) {
        memset(m, 0, sizeof *m);
        m->size = -1;
        char errbuf[CURL_ERROR_SIZE] = "";
        struct curl_slist *hd;
        CURL *c = curl_start(h, url, errbuf, &hd);
        if (!c) return err_set(&h->err, GPT2C_ERR_NOMEM, "out of memory");
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, m);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
        CURLcode rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &m->status);
        curl_slist_free_all(hd);
        curl_easy_cleanup(c);
        if (rc != CURLE_OK) return curl_failure(h, rc, url, errbuf);
        int redirect = m->status == 301 || m->status == 302 || m->status == 303 || m->status == 307 || m->status == 308;
        if (!redirect || m->location[0] != '/') return GPT2C_OK;
        /* Relative: same host, new path. */
        const char *path_start = strstr(url, "://");
        path_start = path_start ? strchr(path_start + 3, '/') : NULL;
        size_t origin = path_start ? (size_t)(path_start - url) : strlen(url);
        if (origin + strlen(m->location) >= url_cap) return err_set(&h->err, GPT2C_ERR_NETWORK, "%s: redirect too long", url);
        strcpy(url + origin, m->location);
    }
    return err_set(&h->err, GPT2C_ERR_NETWORK, "%s: too many redirects", url);
}

typedef struct get_ctx {
    gpt2c_hub *h;
    int fd;
    long long offset, total;
    int write_errno;
    const char *file;
} get_ctx;

static size_t on_body(char *buf, size_t size, size_t n, void *user) {
    get_ctx *g = user;
    size_t len = size * n, done = 0;
    while (done < len) {
        ssize_t w = write(g->fd, buf + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            g->write_errno = w < 0 ? errno : EIO;
            return 0; /* aborts the transfer */
        }
        done += (size_t)w;
    }
    return len;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal;
    (void)ultotal;
    (void)ulnow;
    get_ctx *g = user;
    if (g->h->progress)
        g->h->progress(g->h->progress_user, g->file, (uint64_t)(g->offset + dlnow), (uint64_t)(g->total > 0 ? g->total : 0));
    return 0;
}

/* GET url (following redirects) onto fd from offset; 0 or the curl code. */
static CURLcode http_get(gpt2c_hub *h, const char *url, get_ctx *g, long *status, char *errbuf) {
    struct curl_slist *hd;
    CURL *c = curl_start(h, url, errbuf, &hd);
    if (!c) return CURLE_OUT_OF_MEMORY;
    char range[64];
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, g);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, g);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled transfer fails after 60 s */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    if (g->offset > 0) {
        snprintf(range, sizeof range, "%lld-", g->offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    return rc;
}

/* ---------------------------------------------------------------- download */

static int is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

/* Checks a downloaded blob against its etag: SHA-256 for LFS files, the git
 * blob SHA-1 ("blob <size>\0" + data) for the others. Other etags carry no
 * hash; then only the size is checked. */
static gpt2c_status verify_blob(gpt2c_hub *h, const char *path, const char *etag, long long size, const char *file) {
    struct stat st;
    if (stat(path, &st) != 0) return err_set(&h->err, GPT2C_ERR_IO, "%s: %s", path, strerror(errno));
    if (size >= 0 && st.st_size != size)
        return err_set(&h->err, GPT2C_ERR_NETWORK, "%s: downloaded %lld bytes, the hub announced %lld", file,
                       (long long)st.st_size, size);
    int sha256 = is_hex(etag, 64), git = is_hex(etag, 40);
    if (!sha256 && !git) return GPT2C_OK;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FILE *f = fopen(path, "rb");
    if (!ctx || !f) {
        if (ctx) EVP_MD_CTX_free(ctx);
        if (f) fclose(f);
        return err_set(&h->err, GPT2C_ERR_IO, "%s: cannot read for verification", path);
    }
    EVP_DigestInit_ex(ctx, sha256 ? EVP_sha256() : EVP_sha1(), NULL);
    if (git) {
        char head[64];
        int n = snprintf(head, sizeof head, "blob %lld", (long long)st.st_size);
        EVP_DigestUpdate(ctx, head, (size_t)n + 1); /* the NUL is part of it */
    }
    unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, r);
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < mdlen; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    if (strcasecmp(hex, etag) != 0)
        return err_set(&h->err, GPT2C_ERR_NETWORK,
                       "%s: checksum mismatch (expected %s, got %s): the download is corrupt and was deleted", file,
                       etag, hex);
    return GPT2C_OK;
}

/* Puts blobs/{etag} in place, downloading it if needed. A lock per blob
 * keeps two processes from writing the same file; the second one finds the
 * blob done when it gets the lock. */
static gpt2c_status fetch_blob(gpt2c_hub *h, const char *repo_dir, const char *repo_folder, const char *url,
                               const http_meta *m, const char *file) {
    char blobs[4200], blob[4400], part[4500], locks[4400], lock[4600];
    snprintf(blobs, sizeof blobs, "%s/blobs", repo_dir);
    snprintf(blob, sizeof blob, "%s/%s", blobs, m->etag);
    snprintf(part, sizeof part, "%s.incomplete", blob);
    snprintf(locks, sizeof locks, "%s/.locks/%s", h->cache, repo_folder);
    snprintf(lock, sizeof lock, "%s/%s.lock", locks, m->etag);
    if (file_exists(blob)) return GPT2C_OK;
    if (mkdirs(blobs) != 0 || mkdirs(locks) != 0)
        return err_set(&h->err, GPT2C_ERR_IO, "%s: %s", blobs, strerror(errno));
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        if (lfd >= 0) close(lfd);
        return err_set(&h->err, GPT2C_ERR_IO, "%s: %s", lock, strerror(errno));
    }
    gpt2c_status s = GPT2C_OK;
    if (file_exists(blob)) goto done; /* another process finished it meanwhile */
    int fd = open(part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        s = err_set(&h->err, GPT2C_ERR_IO, "%s: %s", part, strerror(errno));
        goto done;
    }
    struct stat st;
    fstat(fd, &st);
    get_ctx g = {h, fd, (long long)st.st_size, m->size, 0, file};
    if (m->size >= 0 && g.offset > m->size) { /* longer than the file: start again */
        if (ftruncate(fd, 0) != 0) g.write_errno = errno;
        g.offset = 0;
    }
    for (int attempt = 0;; attempt++) {
        if (m->size >= 0 && g.offset == m->size) break; /* complete from an earlier run */
        char errbuf[CURL_ERROR_SIZE] = "";
        long status = 0;
        CURLcode rc = http_get(h, url, &g, &status, errbuf);
        if (g.write_errno) {
            s = err_set(&h->err, GPT2C_ERR_IO, "%s: %s%s", part, strerror(g.write_errno),
                        g.write_errno == ENOSPC ? " (disk full; the partial download is kept and will resume)" : "");
            break;
        }
        if (rc == CURLE_OK && status == 200 && g.offset > 0) {
            /* The server ignored the Range: what came is the whole file,
             * appended after the old part. Start over cleanly. */
            if (ftruncate(fd, 0) != 0) {
                s = err_set(&h->err, GPT2C_ERR_IO, "%s: %s", part, strerror(errno));
                break;
            }
            g.offset = 0;
            if (attempt < HUB_RETRIES) continue;
        }
        fstat(fd, &st);
        g.offset = (long long)st.st_size;
        if (rc == CURLE_OK) break;
        int transient = rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
                        rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SEND_ERROR;
        if (!transient || attempt >= HUB_RETRIES) {
            if (rc == CURLE_HTTP_RETURNED_ERROR)
                s = err_set(&h->err, GPT2C_ERR_NETWORK, "%s: download failed with HTTP %ld", file, status);
            else
                s = curl_failure(h, rc, url, errbuf);
            break;
        }
    }
    if (s == GPT2C_OK && fsync(fd) != 0) s = err_set(&h->err, GPT2C_ERR_IO, "%s: %s", part, strerror(errno));
    close(fd);
    if (s == GPT2C_OK && (s = verify_blob(h, part, m->etag, m->size, file)) != GPT2C_OK) unlink(part);
    if (s == GPT2C_OK && rename(part, blob) != 0) s = err_set(&h->err, GPT2C_ERR_IO, "%s: %s", blob, strerror(errno));
done:
    flock(lfd, LOCK_UN);
    close(lfd);
    return s;
}

/* ------------------------------------------------------------------ resolve */

typedef struct resolver {
    gpt2c_hub *h;
    const char *repo_id, *repo_dir, *repo_folder;
    char rev[256];      /* asked for */
    char commit[64];    /* learnt from the first answer; later files use it */
} resolver;

/* Fetches one file into the snapshot. *present is 0 when the hub says it
 * does not exist (then marked in .no_exist), which is an error only when
 * required. */
static gpt2c_status fetch_file(resolver *r, const char *file, int required, int *present) {
    gpt2c_hub *h = r->h;
    char url[4096];
    snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", h->endpoint, r->repo_id, r->commit[0] ? r->commit : r->rev, file);
    http_meta m;
    gpt2c_status s = http_head(h, url, sizeof url, &m);
    if (s) return s;
    *present = 0;
    if (m.status == 404 && !strcmp(m.error_code, "EntryNotFound")) {
        if (!r->commit[0] && m.commit[0]) snprintf(r->commit, sizeof r->commit, "%s", m.commit);
        if (r->commit[0] && (s = cache_mark_absent(h, r->repo_dir, r->commit, file))) return s;
        return required ? http_failure(h, &m, r->repo_id, file) : GPT2C_OK;
    }
    if (m.status >= 400) return http_failure(h, &m, r->repo_id, file);
    if (!m.commit[0] || !m.etag[0])
        return err_set(&h->err, GPT2C_ERR_NETWORK,
                       "%s: the answer lacks X-Repo-Commit or ETag: is %s a Hugging Face hub?", url, h->endpoint);
    /* Strip a weak-validator prefix and quotes: W/"abc" -> abc. */
    char *e = m.etag;
    if (!strncmp(e, "W/", 2)) e += 2;
    size_t el = strlen(e);
    if (el >= 2 && e[0] == '"' && e[el - 1] == '"') e[el - 1] = '\0', e++;
    if (!*e || strchr(e, '/') || strstr(e, ".."))
        return err_set(&h->err, GPT2C_ERR_NETWORK, "%s: unusable ETag '%s'", url, m.etag);
    memmove(m.etag, e, strlen(e) + 1);
    if (!r->commit[0]) snprintf(r->commit, sizeof r->commit, "%s", m.commit);
    if ((s = fetch_blob(h, r->repo_dir, r->repo_folder, url, &m, file))) return s;
    *present = 1;
    return cache_link(h, r->repo_dir, r->commit, file, m.etag);
}

/* The weights: the first of weights.h's files the repo has, in
 * transformers' order, and the shards when it is an index; nothing else
 * (a repo with both formats downloads only the safetensors). */
static gpt2c_status fetch_weights(resolver *r) {
    gpt2c_status s;
    int have = 0;
    for (int i = 0; i < WEIGHT_FILES_N && !have; i++) {
        const char *name = WEIGHT_FILES[i];
        if ((s = fetch_file(r, name, 0, &have))) return s;
        if (!have || !weights_is_index(name)) continue;
        char path[4300], **shards;
        int n;
        snprintf(path, sizeof path, "%s/snapshots/%s/%s", r->repo_dir, r->commit, name);
        if ((s = weights_index_shards(path, &shards, &n, &r->h->err))) return s;
        for (int k = 0; !s && k < n; k++)
            if (cache_has(r->repo_dir, r->commit, shards[k]) != 1) s = fetch_file(r, shards[k], 1, &have);
        weights_free_names(shards, n);
        if (s) return s;
    }
    if (!have)
        return err_set(&r->h->err, GPT2C_ERR_NOT_FOUND,
                       "%s has no weights (model.safetensors or pytorch_model.bin, or an index of their shards)",
                       r->repo_id);
    return GPT2C_OK;
}

static gpt2c_status fetch_all(resolver *r, unsigned what) {
    gpt2c_status s;
    int have;
    if (what & GPT2C_HUB_MODEL) {
        if ((s = fetch_file(r, "config.json", 1, &have)) || (s = fetch_file(r, "generation_config.json", 0, &have)) ||
            (s = fetch_weights(r)))
            return s;
    }
    if (what & GPT2C_HUB_TOKENIZER) {
        /* All optional: a model without tokenizer files runs from token ids. */
        int v = 0, mg = 0;
        if ((s = fetch_file(r, "vocab.json", 0, &v))) return s;
        if (v && (s = fetch_file(r, "merges.txt", 0, &mg))) return s;
        if (!(v && mg) && (s = fetch_file(r, "tokenizer.json", 0, &have))) return s;
        for (int i = 0; i < TOKENIZER_EXTRA_N; i++)
            if ((s = fetch_file(r, TOKENIZER_EXTRA[i], 0, &have))) return s;
    }
    return GPT2C_OK;
}

gpt2c_status gpt2c_hub_resolve(gpt2c_hub *h, const char *spec, unsigned what, char **dir) {
    err_clear(&h->err);
    *dir = NULL;
    struct stat st;
    if (!spec || !*spec) return err_set(&h->err, GPT2C_ERR_INVALID, "no model given");
    if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) return (*dir = strdup(spec)) ? GPT2C_OK : GPT2C_ERR_NOMEM;
    /* "org/name@revision" */
    char id[512];
    resolver r = {.h = h};
    snprintf(r.rev, sizeof r.rev, "main");
    const char *at = strrchr(spec, '@');
    size_t idlen = at ? (size_t)(at - spec) : strlen(spec);
    if (idlen >= sizeof id) return err_set(&h->err, GPT2C_ERR_INVALID, "'%.60s...' is too long for a repo id", spec);
    memcpy(id, spec, idlen);
    id[idlen] = '\0';
    if (at) snprintf(r.rev, sizeof r.rev, "%s", at + 1);
    if (!hub_valid_repo_id(id) || !valid_revision(r.rev)) {
        /* Something shaped like a path was meant as a folder. */
        const char *slash = strchr(spec, '/');
        if (spec[0] == '/' || spec[0] == '.' || (slash && strchr(slash + 1, '/')))
            return err_set(&h->err, GPT2C_ERR_IO, "%s: no such folder", spec);
        return err_set(&h->err, GPT2C_ERR_INVALID, "'%s' is neither a folder nor a hub repo id (org/name[@revision])",
                       spec);
    }
    char *repo_dir = cache_repo_dir(h, id);
    if (!repo_dir) return err_set(&h->err, GPT2C_ERR_NOMEM, "out of memory");
    r.repo_id = id;
    r.repo_dir = repo_dir;
    r.repo_folder = strrchr(repo_dir, '/') + 1;
    gpt2c_status s = GPT2C_OK;
    char commit[41];
    if (cache_commit(repo_dir, r.rev, commit) && cache_complete(repo_dir, commit, what)) {
        /* Complete in the cache: no network at all. */
        snprintf(r.commit, sizeof r.commit, "%s", commit);
    } else if (h->offline) {
        s = err_set(&h->err, GPT2C_ERR_NOT_FOUND,
                    "%s@%s is not (completely) in the cache %s, and HF_HUB_OFFLINE is set", id, r.rev, h->cache);
    } else {
        s = fetch_all(&r, what);
        /* refs/{revision} -> commit, once the snapshot holds the files. */
        if (s == GPT2C_OK && strcmp(r.rev, r.commit) != 0) {
            char refs[4600], ref[4600];
            snprintf(ref, sizeof ref, "%s/refs/%s", repo_dir, r.rev);
            snprintf(refs, sizeof refs, "%s", ref);
            *strrchr(refs, '/') = '\0';
            if (mkdirs(refs) != 0) s = err_set(&h->err, GPT2C_ERR_IO, "%s: %s", refs, strerror(errno));
            else s = write_atomic(h, ref, r.commit);
        }
    }
    if (s == GPT2C_OK) {
        *dir = malloc(strlen(repo_dir) + 64);
        if (!*dir) s = err_set(&h->err, GPT2C_ERR_NOMEM, "out of memory");
        else sprintf(*dir, "%s/snapshots/%s", repo_dir, r.commit);
    }
    free(repo_dir);
    return s;
}
