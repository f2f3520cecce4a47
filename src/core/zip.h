/* zip.h -- a read-only view of the stored (uncompressed) entries of a zip
 * archive held in memory, as torch.save writes them. */
#ifndef GPT2C_ZIP_H
#define GPT2C_ZIP_H

#include <stddef.h>

#include "err.h"

typedef struct zip_entry {
    char *name;
    const unsigned char *data; /* into the caller's buffer */
    size_t size;
} zip_entry;

typedef struct zip_archive {
    zip_entry *entries; /* sorted by name */
    int n;
} zip_archive;

/* Nonzero when the buffer starts like a zip archive (a local file header). */
int zip_is_zip(const unsigned char *p, size_t n);
/* Reads the central directory of buf[0, n). Every entry must be stored
 * uncompressed, unencrypted, inside the buffer and apart from the others;
 * `path` names the file in messages. Entries point into buf. */
gpt2c_status zip_open(const unsigned char *buf, size_t n, const char *path, zip_archive *z, gpt2_err *e);
const zip_entry *zip_find(const zip_archive *z, const char *name);
void zip_close(zip_archive *z);

#endif
