/* strmap.c -- see strmap.h. Linear probing at a load factor of at most one
 * half keeps lookups to a probe or two for the 50k-entry GPT-2 vocabulary. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

void strmap_init(strmap *m) { memset(m, 0, sizeof *m); }

void strmap_free(strmap *m) {
    free(m->slots);
    free(m->key_off);
    free(m->key_len);
    free(m->val);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

void strmap_clear(strmap *m) {
    if (m->slots) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
    m->arena_len = 0;
}

static size_t find_slot(const strmap *m, const char *key, size_t len) {
    size_t mask = m->cap - 1, i = hash_bytes(key, len) & mask;
    for (;;) {
        uint32_t s = m->slots[i];
        if (s == 0) return i;
        size_t e = s - 1;
        if (m->key_len[e] == len && memcmp(m->arena + m->key_off[e], key, len) == 0) return i;
        i = (i + 1) & mask;
    }
}

int *strmap_get(const strmap *m, const char *key, size_t len) {
    if (m->cap == 0) return NULL;
    uint32_t s = m->slots[find_slot(m, key, len)];
    return s ? &m->val[s - 1] : NULL;
}

static int strmap_grow(strmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    uint32_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    for (size_t e = 0; e < m->n; e++) {
        size_t mask = ncap - 1, i = hash_bytes(m->arena + m->key_off[e], m->key_len[e]) & mask;
        while (ns[i]) i = (i + 1) & mask;
        ns[i] = (uint32_t)(e + 1);
    }
    return 0;
}

int strmap_put(strmap *m, const char *key, size_t len, int val) {
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m)) return -1;
    size_t slot = find_slot(m, key, len);
    if (m->slots[slot]) {
        m->val[m->slots[slot] - 1] = val;
        return 0;
    }
    if (m->n == m->entries_cap) {
        size_t nc = m->entries_cap ? m->entries_cap * 2 : 1024;
        size_t *ko = realloc(m->key_off, nc * sizeof *ko);
        if (!ko) return -1;
        m->key_off = ko;
        uint32_t *kl = realloc(m->key_len, nc * sizeof *kl);
        if (!kl) return -1;
        m->key_len = kl;
        int *v = realloc(m->val, nc * sizeof *v);
        if (!v) return -1;
        m->val = v;
        m->entries_cap = nc;
    }
    if (m->arena_len + len + 1 > m->arena_cap) {
        size_t nc = m->arena_cap ? m->arena_cap * 2 : 65536;
        while (nc < m->arena_len + len + 1) nc *= 2;
        char *a = realloc(m->arena, nc);
        if (!a) return -1;
        m->arena = a;
        m->arena_cap = nc;
    }
    memcpy(m->arena + m->arena_len, key, len);
    m->arena[m->arena_len + len] = '\0';
    m->key_off[m->n] = m->arena_len;
    m->key_len[m->n] = (uint32_t)len;
    m->val[m->n] = val;
    m->arena_len += len + 1;
    m->slots[slot] = (uint32_t)(++m->n);
    return 0;
}

void u64map_init(u64map *m) { memset(m, 0, sizeof *m); }

void u64map_free(u64map *m) {
    free(m->keys);
    free(m->vals);
    free(m->used);
    memset(m, 0, sizeof *m);
}

int *u64map_get(const u64map *m, uint64_t key) {
    if (m->cap == 0) return NULL;
    size_t mask = m->cap - 1, i = hash_u64(key) & mask;
    while (m->used[i]) {
        if (m->keys[i] == key) return &m->vals[i];
        i = (i + 1) & mask;
    }
    return NULL;
}

int u64map_put(u64map *m, uint64_t key, int val) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 1024;
        uint64_t *nk = malloc(ncap * sizeof *nk);
        int *nv = malloc(ncap * sizeof *nv);
        unsigned char *nu = calloc(ncap, 1);
        if (!nk || !nv || !nu) {
            free(nk);
            free(nv);
            free(nu);
            return -1;
        }
        for (size_t j = 0; j < m->cap; j++) {
            if (!m->used[j]) continue;
            size_t i = hash_u64(m->keys[j]) & (ncap - 1);
            while (nu[i]) i = (i + 1) & (ncap - 1);
            nu[i] = 1;
            nk[i] = m->keys[j];
            nv[i] = m->vals[j];
        }
        free(m->keys);
        free(m->vals);
        free(m->used);
        m->keys = nk;
        m->vals = nv;
        m->used = nu;
        m->cap = ncap;
    }
    size_t mask = m->cap - 1, i = hash_u64(key) & mask;
    while (m->used[i]) {
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
        i = (i + 1) & mask;
    }
    m->used[i] = 1;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return 0;
}
