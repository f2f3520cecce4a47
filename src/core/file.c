/* file.c -- mmap and whole-file reads. Weights are mapped, never copied, so a
 * model loads in milliseconds and its pages are shared with the page cache. */
#include "file.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static gpt2c_status open_regular(const char *path, int *fd, size_t *size, gpt2_err *e) {
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return err_set(e, GPT2C_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        return err_set(e, GPT2C_ERR_IO, "%s: not a regular file", path);
    }
    *size = (size_t)st.st_size;
    return GPT2C_OK;
}

gpt2c_status file_map(const char *path, gpt2_map *m, gpt2_err *e) {
    int fd;
    m->data = NULL;
    m->size = 0;
    gpt2c_status s = open_regular(path, &fd, &m->size, e);
    if (s) return s;
    if (m->size == 0) {
        close(fd);
        return err_set(e, GPT2C_ERR_FORMAT, "%s: file is empty", path);
    }
    void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return err_set(e, GPT2C_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    mem_advise_huge(p, m->size); /* honoured where the file system allows huge pages in the page cache */
    m->data = p;
    return GPT2C_OK;
}

void file_unmap(gpt2_map *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

gpt2c_status file_read(const char *path, size_t max_size, char **data, size_t *size,
                       gpt2_err *e) {
    int fd;
    size_t n;
    *data = NULL;
    gpt2c_status s = open_regular(path, &fd, &n, e);
    if (s) return s;
    if (n > max_size) {
        close(fd);
        return err_set(e, GPT2C_ERR_FORMAT, "%s: file is %zu bytes, more than the %zu allowed",
                       path, n, max_size);
    }
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return err_set(e, GPT2C_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return err_set(e, GPT2C_ERR_IO, "%s: read failed: %s", path,
                           r < 0 ? strerror(errno) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return GPT2C_OK;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int path_has_suffix(const char *path, const char *suffix) {
    size_t n = strlen(path), k = strlen(suffix);
    return n >= k && strcmp(path + n - k, suffix) == 0;
}

char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

gpt2c_status file_read_json(const char *path, size_t max_size, json_t **root, gpt2_err *e) {
    char *data;
    size_t n;
    *root = NULL;
    gpt2c_status s = file_read(path, max_size, &data, &n, e);
    if (s) return s;
    json_error_t je;
    *root = json_loadb(data, n, 0, &je);
    free(data);
    if (!*root) return err_set(e, GPT2C_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return err_set(e, GPT2C_ERR_FORMAT, "%s: not a JSON object", path);
    }
    return GPT2C_OK;
}

int file_write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

int file_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}
