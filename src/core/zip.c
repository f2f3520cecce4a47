/* zip.c -- see zip.h. Written here rather than taken from libzip or minizip:
 * a checkpoint's tensors are mapped in place, which needs the file offset of
 * each stored entry's bytes, and neither library hands that out (they copy an
 * entry out through a read call). torch.save stores every entry uncompressed,
 * so this reader only has to walk the central directory (ZIP64 included, for
 * checkpoints over 4 GiB) and check every offset and size it finds.
 *
 * CRCs are not verified: that would read every byte of a multi-GiB file at
 * load time, which mapping exists to avoid; the tensors are checked for shape
 * and size against the model instead. */
#include "zip.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define LOCAL_SIZE 30u
#define CENTRAL_SIZE 46u
#define END_SIZE 22u
#define END64_SIZE 56u
#define LOCATOR64_SIZE 20u

int zip_is_zip(const unsigned char *p, size_t n) { return n >= 4 && read_le(p, 4) == SIG_LOCAL; }

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const zip_entry *)a)->name, ((const zip_entry *)b)->name);
}

static int cmp_data(const void *a, const void *b) {
    const zip_entry *x = *(const zip_entry *const *)a, *y = *(const zip_entry *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* The end-of-central-directory record: the last signature within the final
 * 22 + 65535 bytes (the record plus the longest comment). */
static gpt2c_status find_end(const unsigned char *buf, size_t n, const char *path, uint64_t *cd_off,
                             uint64_t *cd_size, uint64_t *count, gpt2_err *e) {
    if (n < END_SIZE) return err_set(e, GPT2C_ERR_FORMAT, "%s: zip archive truncated (%zu bytes)", path, n);
    size_t lo = n - END_SIZE > 65535 ? n - END_SIZE - 65535 : 0, at = n - END_SIZE + 1;
    while (at-- > lo)
        if (read_le(buf + at, 4) == SIG_END) break;
    if (at + 1 == lo || read_le(buf + at, 4) != SIG_END)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: no zip end-of-central-directory record: truncated?", path);
    const unsigned char *r = buf + at;
    if (read_le(r + 4, 2) != 0 || read_le(r + 6, 2) != 0)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: multi-disk zip archives are not supported", path);
    *count = read_le(r + 10, 2);
    *cd_size = read_le(r + 12, 4);
    *cd_off = read_le(r + 16, 4);
    if (*count != 0xFFFF && *cd_size != 0xFFFFFFFFu && *cd_off != 0xFFFFFFFFu) return GPT2C_OK;
    /* ZIP64: the locator sits just before the record and points to the
     * 64-bit end record. */
    if (at < LOCATOR64_SIZE || read_le(buf + at - LOCATOR64_SIZE, 4) != SIG_LOCATOR64)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: zip end record needs ZIP64 but has no ZIP64 locator", path);
    uint64_t off64 = read_le(buf + at - LOCATOR64_SIZE + 8, 8);
    if (n < END64_SIZE || off64 > n - END64_SIZE || read_le(buf + off64, 4) != SIG_END64)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: ZIP64 end record is missing or outside the file", path);
    *count = read_le(buf + off64 + 32, 8);
    *cd_size = read_le(buf + off64 + 40, 8);
    *cd_off = read_le(buf + off64 + 48, 8);
    return GPT2C_OK;
}

/* The ZIP64 extra field replaces, in this order, whichever of the sizes and
 * the offset are 0xFFFFFFFF in the fixed header. */
static int zip64_extra(const unsigned char *x, size_t xlen, uint64_t *usize, uint64_t *csize, uint64_t *off) {
    while (xlen >= 4) {
        size_t id = (size_t)read_le(x, 2), len = (size_t)read_le(x + 2, 2);
        if (len > xlen - 4) return -1;
        if (id == 1) {
            const unsigned char *p = x + 4, *end = x + 4 + len;
            uint64_t *fields[3] = {usize, csize, off};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xFFFFFFFFu) continue;
                if (end - p < 8) return -1;
                *fields[i] = read_le(p, 8);
                p += 8;
            }
            return 0;
        }
        x += 4 + len;
        xlen -= 4 + len;
    }
    return 0;
}

static gpt2c_status read_entries(const unsigned char *buf, size_t n, const char *path, uint64_t cd_off,
                                 uint64_t cd_size, uint64_t count, zip_archive *z, gpt2_err *e) {
    if (cd_off > n || cd_size > n - cd_off)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: zip central directory lies outside the file", path);
    if (count > cd_size / CENTRAL_SIZE)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: zip directory claims %llu entries in %llu bytes", path,
                       (unsigned long long)count, (unsigned long long)cd_size);
    z->entries = calloc(count ? (size_t)count : 1, sizeof *z->entries);
    if (!z->entries) return err_set(e, GPT2C_ERR_NOMEM, "%s: out of memory", path);
    const unsigned char *p = buf + cd_off, *end = p + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if ((size_t)(end - p) < CENTRAL_SIZE || read_le(p, 4) != SIG_CENTRAL)
            return err_set(e, GPT2C_ERR_FORMAT, "%s: zip central directory entry %llu is corrupt", path,
                           (unsigned long long)i);
        unsigned flags = (unsigned)read_le(p + 8, 2), method = (unsigned)read_le(p + 10, 2);
        uint64_t csize = read_le(p + 20, 4), usize = read_le(p + 24, 4), off = read_le(p + 42, 4);
        size_t nlen = (size_t)read_le(p + 28, 2), xlen = (size_t)read_le(p + 30, 2), clen = (size_t)read_le(p + 32, 2);
        if ((size_t)(end - p) - CENTRAL_SIZE < nlen + xlen + clen)
            return err_set(e, GPT2C_ERR_FORMAT, "%s: zip entry %llu runs past the central directory", path,
                           (unsigned long long)i);
        zip_entry *en = &z->entries[z->n];
        if (!(en->name = strndup((const char *)p + CENTRAL_SIZE, nlen)))
            return err_set(e, GPT2C_ERR_NOMEM, "%s: out of memory", path);
        z->n++;
        if (strlen(en->name) != nlen)
            return err_set(e, GPT2C_ERR_FORMAT, "%s: zip entry %llu has a NUL in its name", path, (unsigned long long)i);
        if (zip64_extra(p + CENTRAL_SIZE + nlen, xlen, &usize, &csize, &off) != 0)
            return err_set(e, GPT2C_ERR_FORMAT, "%s: zip entry '%.80s' has a corrupt ZIP64 field", path, en->name);
        if (flags & 1) return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: zip entry '%.80s' is encrypted", path, en->name);
        if (method != 0 || csize != usize)
            return err_set(e, GPT2C_ERR_UNSUPPORTED,
                           "%s: zip entry '%.80s' is compressed (method %u); torch.save stores entries "
                           "uncompressed, as gpt2c needs to map them",
                           path, en->name, method);
        /* The local header repeats the name and has an extra field of its
         * own (torch pads it to align the data); the data follows both. */
        if (off > n || n - off < LOCAL_SIZE || read_le(buf + off, 4) != SIG_LOCAL)
            return err_set(e, GPT2C_ERR_FORMAT, "%s: zip entry '%.80s' has no local header at offset %llu", path,
                           en->name, (unsigned long long)off);
        uint64_t data = off + LOCAL_SIZE + read_le(buf + off + 26, 2) + read_le(buf + off + 28, 2);
        if (data > n || usize > n - data)
            return err_set(e, GPT2C_ERR_FORMAT, "%s: zip entry '%.80s' (%llu bytes at %llu) runs past the end of the "
                           "file (%zu bytes): truncated?", path, en->name, (unsigned long long)usize,
                           (unsigned long long)data, n);
        en->data = buf + data;
        en->size = (size_t)usize;
        p += CENTRAL_SIZE + nlen + xlen + clen;
    }
    return GPT2C_OK;
}

/* Entries whose bytes overlap each other or the central directory are how
 * "zip bombs" and confused readers are made: refused. */
static gpt2c_status check_apart(zip_archive *z, const unsigned char *cd, size_t cd_size, const char *path,
                                gpt2_err *e) {
    const zip_entry **by = malloc((size_t)(z->n ? z->n : 1) * sizeof *by);
    if (!by) return err_set(e, GPT2C_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < z->n; i++) by[i] = &z->entries[i];
    qsort(by, (size_t)z->n, sizeof *by, cmp_data);
    gpt2c_status s = GPT2C_OK;
    /* In data order, each non-empty entry starts at or after the furthest
     * end so far (not just its neighbour's: an empty entry between two
     * overlapping ones would hide them). */
    const zip_entry *reach = NULL;
    for (int i = 0; i < z->n && !s; i++) {
        const zip_entry *a = by[i];
        if (a->size == 0) continue;
        if (reach && reach->data + reach->size > a->data)
            s = err_set(e, GPT2C_ERR_FORMAT, "%s: zip entries '%.80s' and '%.80s' overlap", path, reach->name, a->name);
        else if (a->data < cd + cd_size && cd < a->data + a->size)
            s = err_set(e, GPT2C_ERR_FORMAT, "%s: zip entry '%.80s' overlaps the central directory", path, a->name);
        if (!reach || a->data + a->size > reach->data + reach->size) reach = a;
    }
    free(by);
    if (s) return s;
    qsort(z->entries, (size_t)z->n, sizeof *z->entries, cmp_name);
    for (int i = 1; i < z->n; i++)
        if (!strcmp(z->entries[i - 1].name, z->entries[i].name))
            return err_set(e, GPT2C_ERR_FORMAT, "%s: zip entry '%.80s' appears twice", path, z->entries[i].name);
    return GPT2C_OK;
}

gpt2c_status zip_open(const unsigned char *buf, size_t n, const char *path, zip_archive *z, gpt2_err *e) {
    memset(z, 0, sizeof *z);
    uint64_t cd_off = 0, cd_size = 0, count = 0;
    gpt2c_status s = find_end(buf, n, path, &cd_off, &cd_size, &count, e);
    if (!s) s = read_entries(buf, n, path, cd_off, cd_size, count, z, e);
    if (!s) s = check_apart(z, buf + cd_off, (size_t)cd_size, path, e);
    if (s) zip_close(z);
    return s;
}

const zip_entry *zip_find(const zip_archive *z, const char *name) {
    zip_entry key = {.name = (char *)name};
    return z->n ? bsearch(&key, z->entries, (size_t)z->n, sizeof key, cmp_name) : NULL;
}

void zip_close(zip_archive *z) {
    for (int i = 0; i < z->n; i++) free(z->entries[i].name);
    free(z->entries);
    memset(z, 0, sizeof *z);
}
