/* strmap.h -- an open-addressing hash map from byte strings to ints, and one
 * from 64-bit keys to ints. Used for the vocabulary, the merge ranks and the
 * BPE cache; keys are copied into an arena the map owns. */
#ifndef GPT2C_STRMAP_H
#define GPT2C_STRMAP_H

#include <stddef.h>
#include <stdint.h>

/* One entry: where its key lies in the arena, and its value -- together, so
 * that a lookup touches one cache line for them. */
typedef struct strmap_entry {
    uint32_t off, len;
    int val;
} strmap_entry;

typedef struct strmap {
    uint32_t *slots;   /* (cap,) entry index + 1, 0 = empty */
    size_t cap;        /* power of two */
    size_t n;          /* entries */
    strmap_entry *e;   /* (n,) in insertion order */
    char *arena;       /* the keys, each NUL-terminated; under 4 GiB */
    size_t arena_len, arena_cap, entries_cap;
} strmap;

void strmap_init(strmap *m);
void strmap_free(strmap *m);
void strmap_clear(strmap *m);
/* Makes room for n entries whose keys take about key_bytes in all, so that
 * filling a map of known size neither rehashes nor copies. 0, or -1. */
int strmap_reserve(strmap *m, size_t n, size_t key_bytes);
/* Returns a pointer to the value stored for key, or NULL. */
int *strmap_get(const strmap *m, const char *key, size_t len);
/* Inserts or overwrites. Returns 0, or -1 when out of memory. */
int strmap_put(strmap *m, const char *key, size_t len, int val);
/* Inserts a key that must be new: 0, 1 (the key is there: nothing
 * changed), or -1 when out of memory. */
int strmap_add(strmap *m, const char *key, size_t len, int val);
/* The key of entry i (0 <= i < n), for iteration. */
static inline const char *strmap_key(const strmap *m, size_t i, size_t *len) {
    *len = m->e[i].len;
    return m->arena + m->e[i].off;
}

typedef struct u64map_slot {
    uint64_t key;
    int val;
    int used;
} u64map_slot;

typedef struct u64map {
    u64map_slot *slots; /* (cap,) */
    size_t cap, n;
} u64map;

void u64map_init(u64map *m);
void u64map_free(u64map *m);
/* Makes room for n entries without rehashing. 0, or -1. */
int u64map_reserve(u64map *m, size_t n);
int *u64map_get(const u64map *m, uint64_t key);
int u64map_put(u64map *m, uint64_t key, int val);

#endif
