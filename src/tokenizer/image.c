/* image.c -- the tokenizer image: the tables that loading vocab.json +
 * merges.txt builds (the vocabulary's hash map, the merge ranks, the id ->
 * bytes table), written once to the user's cache and mapped back by later
 * loads, found by the SHA-256 of the source files.
 *
 * Why: in a new process, most of a GPT-2 tokenizer's load time was page
 * faults -- parsing 1.5 MB of files builds about 9 MB of tables, every page
 * of it faulted in fresh (measured: 2250 faults, some 45 ms of a 60 ms load
 * on this machine). The image is those tables in one file the page cache
 * keeps: mapped copy-on-write, a warm start reads it in a few dozen faults,
 * and checks every index and offset in it before the tokenizer trusts it,
 * so a damaged or foreign image is rebuilt, never followed.
 *
 * Where: $GPT2C_CACHE_DIR, else $XDG_CACHE_HOME/gpt2c, else ~/.cache/gpt2c
 * (subfolder tokenizers/); GPT2C_CACHE_DIR set to "" turns images off. Any
 * failure to read or write one only means parsing the files as before. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/file.h"
#include "tokenizer.h"

#ifndef GPT2C_NO_CRYPTO
/* OpenSSL's low-level SHA-256, deprecated in 3.0 in favour of EVP but kept
 * through 3.x: EVP's first digest in a process loads the provider and its
 * configuration, measured at 3.4 ms here -- a third of what a warm start
 * takes in all -- where SHA256_Init costs nothing (the same SHA-NI code). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#endif

/* Bumped whenever the layout or the meaning of a table changes. */
#define IMAGE_VERSION 1
#define IMAGE_ALIGN 64

typedef struct image_header {
    char magic[8];    /* "GPT2CTOK" */
    uint32_t version; /* IMAGE_VERSION */
    uint32_t endian;  /* 0x01020304 in the writer's byte order: images are machine-local */
    unsigned char key[32];
    uint64_t n_vocab, max_token_bytes, bytes_len;
    uint64_t vocab_cap, vocab_n, arena_len;
    uint64_t merges_cap, merges_n, n_merges;
    uint64_t total;
} image_header;

/* Where each table lies in the file, from the header's counts. */
typedef struct layout {
    size_t off, bytes, present, special, vslots, ventries, arena, mslots, mresult, total;
} layout;

static size_t place(size_t *at, size_t n) {
    size_t p = (*at + IMAGE_ALIGN - 1) / IMAGE_ALIGN * IMAGE_ALIGN;
    *at = p + n;
    return p;
}

/* 0 when the counts are within the tokenizer's limits (so no size below
 * overflows) and the layout is computed; -1 otherwise. */
static int plan(const image_header *h, layout *l) {
    const uint64_t max_cap = (uint64_t)1 << 28;
    if (h->n_vocab == 0 || h->n_vocab > TOK_MAX_VOCAB || h->bytes_len > TOK_MAX_FILE || h->arena_len > TOK_MAX_FILE ||
        h->max_token_bytes > TOK_MAX_FILE || h->vocab_n > h->n_vocab || h->vocab_cap > max_cap ||
        (h->vocab_cap & (h->vocab_cap - 1)) || h->vocab_n * 2 > h->vocab_cap || h->merges_cap > max_cap ||
        (h->merges_cap & (h->merges_cap - 1)) || h->merges_n * 2 > h->merges_cap || h->merges_n > h->n_merges ||
        h->n_merges > TOK_MAX_FILE)
        return -1;
    size_t at = sizeof(image_header);
    l->off = place(&at, (h->n_vocab + 1) * sizeof(size_t));
    l->bytes = place(&at, h->bytes_len);
    l->present = place(&at, h->n_vocab);
    l->special = place(&at, h->n_vocab);
    l->vslots = place(&at, h->vocab_cap * sizeof(uint32_t));
    l->ventries = place(&at, h->vocab_n * sizeof(strmap_entry));
    l->arena = place(&at, h->arena_len);
    l->mslots = place(&at, h->merges_cap * sizeof(u64map_slot));
    l->mresult = place(&at, h->n_merges * sizeof(int));
    l->total = at;
    return 0;
}

/* The image file for key, in the cache folder (made when `make` is set);
 * NULL when images are off or there is no folder for them. */
static char *image_path(const unsigned char key[32], int make) {
    const char *env = getenv("GPT2C_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[4096];
    if (env) {
        if (!*env) return NULL;
        snprintf(base, sizeof base, "%s", env);
    } else if (xdg && *xdg == '/') {
        snprintf(base, sizeof base, "%s/gpt2c", xdg);
    } else if (home && *home == '/') {
        snprintf(base, sizeof base, "%s/.cache/gpt2c", home);
    } else {
        return NULL;
    }
    size_t n = strlen(base);
    if (n + 90 > sizeof base) return NULL;
    strcpy(base + n, "/tokenizers");
    if (make) /* each missing folder on the way, private to the user */
        for (char *p = base + 1; *p; p++)
            if (*p == '/' || !p[1]) {
                char c = p[1] ? *p : 0;
                if (c) *p = 0;
                if (mkdir(base, 0700) != 0 && errno != EEXIST) return NULL;
                if (c) *p = c;
            }
    char *path = malloc(n + 90);
    if (!path) return NULL;
    int k = snprintf(path, n + 90, "%s/", base);
    for (int i = 0; i < 32; i++) k += snprintf(path + k, n + 90 - (size_t)k, "%02x", key[i]);
    snprintf(path + k, n + 90 - (size_t)k, ".img");
    return path;
}

int tok_image_key(const char *const *paths, int n, unsigned char key[32]) {
#ifdef GPT2C_NO_CRYPTO
    (void)paths, (void)n, (void)key;
    return -1; /* a build without OpenSSL (the AArch64 test build) parses every time */
#else
    /* Each file's size and bytes, in order, with the image's version: a
     * change to any source, or to what the image means, is another key. */
    SHA256_CTX ctx;
    uint64_t v = IMAGE_VERSION;
    int rc = SHA256_Init(&ctx) && SHA256_Update(&ctx, &v, sizeof v) ? 0 : -1;
    for (int i = 0; i < n && !rc; i++) {
        gpt2_map m = {0};
        gpt2_err e = {0};
        uint64_t size = 0;
        /* An absent (optional) file counts as one of size UINT64_MAX; an
         * empty one cannot be mapped and has no bytes. */
        struct stat st;
        if (stat(paths[i], &st) != 0) size = UINT64_MAX;
        else if (st.st_size > 0 && file_map(paths[i], &m, &e) != GPT2C_OK) rc = -1;
        else size = (uint64_t)st.st_size;
        if (!rc && (!SHA256_Update(&ctx, &size, sizeof size) || (m.data && !SHA256_Update(&ctx, m.data, m.size))))
            rc = -1;
        file_unmap(&m);
        err_clear(&e);
    }
    if (!SHA256_Final(key, &ctx)) rc = -1;
    return rc;
#endif
}

/* Every index and offset of the mapped tables, checked: 0 when the
 * tokenizer may follow them. */
static int check(const unsigned char *p, const image_header *h, const layout *l) {
    const size_t *off = (const size_t *)(p + l->off);
    if (off[0] != 0 || off[h->n_vocab] != h->bytes_len) return -1;
    for (uint64_t i = 0; i < h->n_vocab; i++)
        if (off[i + 1] < off[i] || off[i + 1] - off[i] > h->max_token_bytes) return -1;
    /* As many filled slots as entries: at most half the table, so every
     * probe sequence reaches an empty slot. */
    const uint32_t *vs = (const uint32_t *)(p + l->vslots);
    uint64_t filled = 0;
    for (uint64_t i = 0; i < h->vocab_cap; i++) {
        if (vs[i] > h->vocab_n) return -1;
        filled += vs[i] != 0;
    }
    if (filled != h->vocab_n) return -1;
    const strmap_entry *ve = (const strmap_entry *)(p + l->ventries);
    const char *arena = (const char *)(p + l->arena);
    for (uint64_t i = 0; i < h->vocab_n; i++)
        if (ve[i].off >= h->arena_len || ve[i].len >= h->arena_len - ve[i].off || arena[ve[i].off + ve[i].len] != 0 ||
            ve[i].val < 0 || (uint64_t)ve[i].val >= h->n_vocab)
            return -1;
    const u64map_slot *ms = (const u64map_slot *)(p + l->mslots);
    uint64_t used = 0;
    for (uint64_t i = 0; i < h->merges_cap; i++) {
        if (ms[i].used != 0 && ms[i].used != 1) return -1;
        if (ms[i].used && (ms[i].val < 0 || (uint64_t)ms[i].val >= h->n_merges)) return -1;
        used += (uint64_t)ms[i].used;
    }
    if (used != h->merges_n) return -1;
    const int *mr = (const int *)(p + l->mresult);
    for (uint64_t i = 0; i < h->n_merges; i++)
        if (mr[i] < 0 || (uint64_t)mr[i] >= h->n_vocab) return -1;
    return 0;
}

int tok_image_load(gpt2c_tokenizer *t, const unsigned char key[32]) {
    char *path = image_path(key, 0);
    if (!path) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    struct stat st;
    if (fd < 0) return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < sizeof(image_header)) {
        close(fd);
        return 0;
    }
    /* Private and writable: the tokenizer marks special tokens after the
     * vocabulary is built, and those pages are copied, the file untouched. */
    size_t size = (size_t)st.st_size;
    unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return 0;
    image_header h;
    memcpy(&h, p, sizeof h);
    layout l;
    if (memcmp(h.magic, "GPT2CTOK", 8) != 0 || h.version != IMAGE_VERSION || h.endian != 0x01020304u ||
        memcmp(h.key, key, 32) != 0 || plan(&h, &l) != 0 || l.total != size || h.total != size || check(p, &h, &l) != 0) {
        munmap(p, size);
        return 0;
    }
    t->image = p;
    t->image_size = size;
    t->n_vocab = (int)h.n_vocab;
    t->off = (size_t *)(p + l.off);
    t->bytes = (char *)(p + l.bytes);
    t->max_token_bytes = (size_t)h.max_token_bytes;
    t->present = p + l.present;
    t->special = p + l.special;
    t->vocab = (strmap){.slots = (uint32_t *)(p + l.vslots), .cap = h.vocab_cap, .n = h.vocab_n,
                        .e = (strmap_entry *)(p + l.ventries), .arena = (char *)(p + l.arena),
                        .arena_len = h.arena_len, .arena_cap = h.arena_len, .entries_cap = h.vocab_n};
    t->merges = (u64map){.slots = (u64map_slot *)(p + l.mslots), .cap = h.merges_cap, .n = h.merges_n};
    t->merge_result = (int *)(p + l.mresult);
    t->n_merges = (int)h.n_merges;
    return 1;
}

static int put(int fd, size_t at, const void *data, size_t n) {
    const char *s = data;
    while (n) {
        ssize_t w = pwrite(fd, s, n, (off_t)at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w, at += (size_t)w, n -= (size_t)w;
    }
    return 0;
}

void tok_image_save(const gpt2c_tokenizer *t, const unsigned char key[32]) {
    image_header h = {.magic = "GPT2CTOK", .version = IMAGE_VERSION, .endian = 0x01020304u,
                      .n_vocab = (uint64_t)t->n_vocab, .max_token_bytes = t->max_token_bytes,
                      .bytes_len = t->off[t->n_vocab], .vocab_cap = t->vocab.cap, .vocab_n = t->vocab.n,
                      .arena_len = t->vocab.arena_len, .merges_cap = t->merges.cap, .merges_n = t->merges.n,
                      .n_merges = (uint64_t)t->n_merges};
    memcpy(h.key, key, 32);
    layout l;
    char *path = image_path(key, 1);
    if (!path || plan(&h, &l) != 0) {
        free(path);
        return;
    }
    h.total = l.total;
    /* Written beside its final name and renamed into place: a reader sees a
     * whole image or none, and concurrent writers of the same key agree. */
    size_t n = strlen(path);
    char *tmp = malloc(n + 32);
    if (!tmp) {
        free(path);
        return;
    }
    snprintf(tmp, n + 32, "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int ok = fd >= 0 && ftruncate(fd, (off_t)l.total) == 0 && !put(fd, 0, &h, sizeof h) &&
             !put(fd, l.off, t->off, (size_t)(h.n_vocab + 1) * sizeof(size_t)) && !put(fd, l.bytes, t->bytes, h.bytes_len) &&
             !put(fd, l.present, t->present, h.n_vocab) && !put(fd, l.special, t->special, h.n_vocab) &&
             !put(fd, l.vslots, t->vocab.slots, h.vocab_cap * sizeof(uint32_t)) &&
             !put(fd, l.ventries, t->vocab.e, h.vocab_n * sizeof(strmap_entry)) &&
             !put(fd, l.arena, t->vocab.arena, h.arena_len) &&
             !put(fd, l.mslots, t->merges.slots, h.merges_cap * sizeof(u64map_slot)) &&
             !put(fd, l.mresult, t->merge_result, h.n_merges * sizeof(int));
    if (fd >= 0 && close(fd) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
    free(tmp);
    free(path);
}
