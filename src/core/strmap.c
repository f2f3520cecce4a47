/* strmap.c -- see strmap.h. Linear probing at a load factor of at most one
 * half keeps lookups to a probe or two for the 50k-entry GPT-2 vocabulary.
 * Loading a tokenizer is mostly inserts and lookups here (100k of each for
 * GPT-2), so the hash reads 8 bytes at a time, an entry's offset, length and
 * value share one cache line, and maps of known size are sized once. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* 8 bytes a step, then a full avalanche (the table keeps the low bits). The
 * keys are a file's: none are chosen to collide beyond what one file within
 * the tokenizer's limits can hold. */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = n * 0x9E3779B97F4A7C15ull, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s, n);
    return hash_u64(h ^ w);
}

void strmap_init(strmap *m) { memset(m, 0, sizeof *m); }

void strmap_free(strmap *m) {
    free(m->slots);
    free(m->e);
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
        const strmap_entry *e = &m->e[s - 1];
        if (e->len == len && memcmp(m->arena + e->off, key, len) == 0) return i;
        i = (i + 1) & mask;
    }
}

int *strmap_get(const strmap *m, const char *key, size_t len) {
    if (m->cap == 0) return NULL;
    uint32_t s = m->slots[find_slot(m, key, len)];
    return s ? &m->e[s - 1].val : NULL;
}

/* Slots for at least n entries at a load of at most one half. */
static int resize_slots(strmap *m, size_t n) {
    size_t ncap = m->cap ? m->cap : 1024;
    while (n * 2 > ncap) ncap *= 2;
    if (ncap == m->cap) return 0;
    uint32_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    for (size_t k = 0; k < m->n; k++) {
        size_t mask = ncap - 1, i = hash_bytes(m->arena + m->e[k].off, m->e[k].len) & mask;
        while (ns[i]) i = (i + 1) & mask;
        ns[i] = (uint32_t)(k + 1);
    }
    return 0;
}

static int reserve_entries(strmap *m, size_t n) {
    if (n <= m->entries_cap) return 0;
    size_t nc = m->entries_cap ? m->entries_cap : 1024;
    while (nc < n) nc *= 2;
    strmap_entry *e = realloc(m->e, nc * sizeof *e);
    if (!e) return -1;
    m->e = e;
    m->entries_cap = nc;
    return 0;
}

static int reserve_arena(strmap *m, size_t bytes) {
    if (bytes <= m->arena_cap) return 0;
    if (bytes > UINT32_MAX) return -1; /* offsets are 32-bit */
    size_t nc = m->arena_cap ? m->arena_cap : 65536;
    while (nc < bytes) nc *= 2;
    char *a = realloc(m->arena, nc);
    if (!a) return -1;
    m->arena = a;
    m->arena_cap = nc;
    return 0;
}

int strmap_reserve(strmap *m, size_t n, size_t key_bytes) {
    return resize_slots(m, m->n + n) || reserve_entries(m, m->n + n) || reserve_arena(m, m->arena_len + key_bytes + n);
}

/* Inserts at a free slot for key, growing first if need be. */
static int insert(strmap *m, size_t slot, const char *key, size_t len, int val) {
    if ((m->n + 1) * 2 > m->cap) {
        if (resize_slots(m, m->n + 1)) return -1;
        slot = find_slot(m, key, len);
    }
    if (reserve_entries(m, m->n + 1) || reserve_arena(m, m->arena_len + len + 1)) return -1;
    memcpy(m->arena + m->arena_len, key, len);
    m->arena[m->arena_len + len] = '\0';
    m->e[m->n] = (strmap_entry){.off = (uint32_t)m->arena_len, .len = (uint32_t)len, .val = val};
    m->arena_len += len + 1;
    m->slots[slot] = (uint32_t)(++m->n);
    return 0;
}

int strmap_add(strmap *m, const char *key, size_t len, int val) {
    if (m->cap == 0 && resize_slots(m, 1)) return -1;
    size_t slot = find_slot(m, key, len);
    if (m->slots[slot]) return 1;
    return insert(m, slot, key, len, val);
}

int strmap_put(strmap *m, const char *key, size_t len, int val) {
    if (m->cap == 0 && resize_slots(m, 1)) return -1;
    size_t slot = find_slot(m, key, len);
    if (m->slots[slot]) {
        m->e[m->slots[slot] - 1].val = val;
        return 0;
    }
    return insert(m, slot, key, len, val);
}

void u64map_init(u64map *m) { memset(m, 0, sizeof *m); }

void u64map_free(u64map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

int *u64map_get(const u64map *m, uint64_t key) {
    if (m->cap == 0) return NULL;
    size_t mask = m->cap - 1, i = hash_u64(key) & mask;
    for (; m->slots[i].used; i = (i + 1) & mask)
        if (m->slots[i].key == key) return &m->slots[i].val;
    return NULL;
}

int u64map_reserve(u64map *m, size_t n) {
    size_t ncap = m->cap ? m->cap : 1024;
    while ((m->n + n) * 2 > ncap) ncap *= 2;
    if (ncap == m->cap) return 0;
    u64map_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->slots[j].used) continue;
        size_t i = hash_u64(m->slots[j].key) & (ncap - 1);
        while (ns[i].used) i = (i + 1) & (ncap - 1);
        ns[i] = m->slots[j];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int u64map_put(u64map *m, uint64_t key, int val) {
    if ((m->n + 1) * 2 > m->cap && u64map_reserve(m, 1)) return -1;
    size_t mask = m->cap - 1, i = hash_u64(key) & mask;
    for (; m->slots[i].used; i = (i + 1) & mask)
        if (m->slots[i].key == key) {
            m->slots[i].val = val;
            return 0;
        }
    m->slots[i] = (u64map_slot){.key = key, .val = val, .used = 1};
    m->n++;
    return 0;
}
