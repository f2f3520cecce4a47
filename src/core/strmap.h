/* strmap.h -- an open-addressing hash map from byte strings to ints, and one
 * from 64-bit keys to ints. Used for the vocabulary, the merge ranks and the
 * BPE cache; keys are copied into an arena the map owns. */
#ifndef GPT2C_STRMAP_H
#define GPT2C_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap {
    uint32_t *slots;   /* (cap,) entry index + 1, 0 = empty */
    size_t cap;        /* power of two */
    size_t n;          /* entries */
    size_t *key_off;   /* (n,) offset of each key in the arena */
    uint32_t *key_len; /* (n,) */
    int *val;          /* (n,) */
    char *arena;
    size_t arena_len, arena_cap, entries_cap;
} strmap;

void strmap_init(strmap *m);
void strmap_free(strmap *m);
void strmap_clear(strmap *m);
/* Returns a pointer to the value stored for key, or NULL. */
int *strmap_get(const strmap *m, const char *key, size_t len);
/* Inserts or overwrites. Returns 0, or -1 when out of memory. */
int strmap_put(strmap *m, const char *key, size_t len, int val);
/* The key of entry i (0 <= i < n), for iteration. */
static inline const char *strmap_key(const strmap *m, size_t i, size_t *len) {
    *len = m->key_len[i];
    return m->arena + m->key_off[i];
}

typedef struct u64map {
    uint64_t *keys;
    int *vals;
    unsigned char *used;
    size_t cap, n;
} u64map;

void u64map_init(u64map *m);
void u64map_free(u64map *m);
int *u64map_get(const u64map *m, uint64_t key);
int u64map_put(u64map *m, uint64_t key, int val);

#endif
