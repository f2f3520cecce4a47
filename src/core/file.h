/* file.h -- reading and mapping files with errors that name the path. */
#ifndef GPT2C_FILE_H
#define GPT2C_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The unsigned little-endian integer of `bytes` (<= 8) bytes at p, as the
 * file formats read here (safetensors, zip, pickle, torch) store them. */
static inline uint64_t read_le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* A read-only memory map of a whole file. */
typedef struct gpt2_map {
    const unsigned char *data;
    size_t size;
} gpt2_map;

gpt2c_status file_map(const char *path, gpt2_map *m, gpt2_err *e);
void file_unmap(gpt2_map *m);

/* Reads a whole file into a NUL-terminated malloc'd buffer, refusing files
 * larger than max_size so that a hostile file cannot drive the allocation. */
gpt2c_status file_read(const char *path, size_t max_size, char **data, size_t *size,
                       gpt2_err *e);
/* A whole JSON file (jansson's json_t) that must hold an object, read as
 * file_read does: errors name the path and the line. */
struct json_t;
gpt2c_status file_read_json(const char *path, size_t max_size, struct json_t **root, gpt2_err *e);
int file_exists(const char *path);
/* dir + "/" + name into a malloc'd string (NULL when out of memory). */
char *path_join(const char *dir, const char *name);
/* Writes n bytes to fd, going on after short writes and EINTR; -1 (errno
 * set) on failure. */
int file_write_all(int fd, const void *buf, size_t n);
/* Flushes a folder's entries to disk (a rename in it survives a crash);
 * -1 on failure. */
int file_sync_dir(const char *dir);
/* Nonzero when path ends with suffix (".json", ".safetensors"). */
int path_has_suffix(const char *path, const char *suffix);

#endif
