/* fault_inject.c -- an LD_PRELOAD shim for fault-injection tests of
 * everything that writes files. GPT2C_FAULT selects the fault:
 *   write:N   write() fails with EIO once N bytes have gone to a file whose
 *             path contains ".incomplete" (a download in progress)
 *   fsync     fsync() fails with EIO on such a file
 * Other files and descriptors are untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int is_target(int fd) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return strstr(path, ".incomplete") != NULL;
}

static size_t written; /* bytes written to target files so far */

ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    const char *f = getenv("GPT2C_FAULT");
    if (f && !strncmp(f, "write:", 6) && is_target(fd)) {
        size_t limit = strtoull(f + 6, NULL, 10);
        if (written + n > limit) {
            errno = EIO;
            return -1;
        }
        written += n;
    }
    return real(fd, buf, n);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *f = getenv("GPT2C_FAULT");
    if (f && !strcmp(f, "fsync") && is_target(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}
