/* fuzz_torchbin.c -- libFuzzer target for the PyTorch checkpoint reader: the
 * zip reader and the unpickler on the input's bytes (a heap copy, so ASan
 * sees any read past them), then the whole of tb_open on the input written
 * to a private folder as pytorch_model.bin, as weights.c opens it. Any crash,
 * leak, out-of-bounds read or undefined behaviour is a bug; errors are fine.
 * What succeeds is checked too: every zip entry lies inside the input, and
 * every tensor's bytes lie inside the mapping or inside one of the copies the
 * file owns, and are read in full. Run with
 *   make build-fuzz/fuzz_torchbin && cp -r tests/fuzz/corpus_torchbin build-fuzz/corpus_tb &&
 *   build-fuzz/fuzz_torchbin -max_total_time=600 -rss_limit_mb=4096 build-fuzz/corpus_tb */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pickle.h"
#include "core/torchbin.h"
#include "core/zip.h"

static char dir[64], path[96];

static void cleanup(void) {
    unlink(path);
    rmdir(dir);
}

static volatile unsigned char sink;

/* Reads every byte of [p, p + n), so that ASan (or the page tables) catch a
 * range that is not all there. */
static void touch(const unsigned char *p, size_t n) {
    unsigned char x = 0;
    for (size_t i = 0; i < n; i++) x ^= p[i];
    sink ^= x;
}

static int inside(const unsigned char *p, size_t n, const unsigned char *base, size_t size) {
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
    return a >= b && a - b <= size && n <= size - (a - b);
}

static void check_zip(const uint8_t *data, size_t size) {
    zip_archive z;
    gpt2_err e = {0};
    if (zip_open(data, size, "fuzz.zip", &z, &e) != GPT2C_OK) {
        if (!e.status || !e.msg[0]) abort(); /* a failure always says why */
        return;
    }
    for (int i = 0; i < z.n; i++) {
        const zip_entry *en = &z.entries[i];
        if (!inside(en->data, en->size, data, size)) abort();
        if (i > 0 && strcmp(z.entries[i - 1].name, en->name) >= 0) abort(); /* sorted, no duplicates */
        if (zip_find(&z, en->name) != en) abort();
        touch(en->data, en->size);
    }
    zip_close(&z);
}

/* Pickles back to back, as the legacy format holds them. */
static void check_pickles(const uint8_t *data, size_t size) {
    pk_heap h = {0};
    size_t at = 0;
    for (int k = 0; k < 8 && at < size; k++) {
        pk_value *v;
        size_t used = 0;
        gpt2_err e = {0};
        if (pk_load(&h, data + at, size - at, "fuzz.pkl", &v, &used, &e) != GPT2C_OK) break;
        if (!v || used == 0 || used > size - at) abort();
        at += used;
    }
    pk_free(&h);
}

static void check_torchbin(const uint8_t *data, size_t size) {
    FILE *fp = fopen(path, "wb");
    if (!fp) abort();
    if (size && fwrite(data, 1, size, fp) != size) abort();
    if (fclose(fp)) abort();
    st_file f;
    gpt2_err e = {0};
    if (tb_open(path, &f, &e) == GPT2C_OK) {
        for (int i = 0; i < f.n; i++) {
            const st_tensor *t = &f.tensors[i];
            if (i > 0 && strcmp(f.tensors[i - 1].name, t->name) >= 0) abort();
            if (st_find(&f, t->name) != t) abort();
            int64_t numel = 1;
            for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
            if (t->ndim < 0 || t->ndim > ST_MAX_DIMS || numel != t->numel ||
                t->nbytes != (size_t)t->numel * st_dtype_size(t->dtype))
                abort();
            if (t->nbytes == 0) continue;
            int ok = inside(t->data, t->nbytes, f.map.data, f.map.size);
            for (int j = 0; j < f.n_owned && !ok; j++) ok = t->data == f.owned[j]; /* a copy, nbytes long */
            if (!ok) abort();
            touch(t->data, t->nbytes);
        }
    } else if (!e.status || !e.msg[0]) {
        abort();
    }
    st_close(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/gpt2c-fuzz-tb-XXXXXX");
        if (!mkdtemp(dir)) abort();
        snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
        atexit(cleanup);
    }
    check_zip(data, size);
    check_pickles(data, size);
    check_torchbin(data, size);
    return 0;
}
