/* save.c -- writing a loaded model back as a checkpoint folder (gpt2c
 * convert): model.safetensors with the matrices in the dtype they have in
 * memory, plus the source folder's config and tokenizer files, so that the
 * result loads by mmap with no conversion at start-up.
 *
 * The folder appears whole or not at all: everything is written into
 * DIR.incomplete-PID beside it, flushed to disk, and renamed to DIR; on a
 * failure before the rename the temporary folder is removed and DIR does not
 * exist. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/file.h"
#include "model.h"

/* The files besides the weights that a checkpoint folder may hold; copied
 * when the source has them (config.json always does). */
static const char *const SIDECARS[] = {"config.json",       "generation_config.json", "vocab.json",
                                       "merges.txt",        "tokenizer.json",         "tokenizer_config.json",
                                       "special_tokens_map.json", "added_tokens.json"};
#define N_SIDECARS (sizeof SIDECARS / sizeof *SIDECARS)

/* One tensor to write: a name, its safetensors dtype and shape, and the bytes. */
typedef struct out_tensor {
    char name[112];
    const char *dtype;
    int64_t shape[2];
    int ndim;
    const void *data;
    size_t nbytes, elem;
} out_tensor;

typedef struct writer {
    out_tensor *t;
    int n, cap;
} writer;

static int add(writer *w, const char *name, const char *dtype, size_t elem, int64_t d0, int64_t d1,
               const void *data) {
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        out_tensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return -1;
        w->t = t, w->cap = cap;
    }
    out_tensor *o = &w->t[w->n++];
    snprintf(o->name, sizeof o->name, "%s", name);
    o->dtype = dtype, o->elem = elem, o->data = data;
    o->shape[0] = d0, o->shape[1] = d1, o->ndim = d1 > 0 ? 2 : 1;
    o->nbytes = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1) * elem;
    return 0;
}

static int add_vector(writer *w, const char *name, const float *v, int d0) {
    return add(w, name, "F32", 4, d0, 0, v);
}

/* A (d0, d1) matrix in its present type; Q8 as its packed I8 values, one
 * row per group of 16 columns (padded dout / 16, din * 16), plus an F16
 * NAME_scale (padded dout / 16, din / 2): the layout kernels.h describes
 * and the loader maps. */
static int add_matrix(writer *w, const char *name, gpt2_weight m, int d0, int d1) {
    static const char *const st[] = {"F32", "F16", "BF16", "I8"};
    if (m.type != WT_Q8) return add(w, name, st[m.type], weight_type_size(m.type), d0, d1, m.data);
    const int64_t groups = (int64_t)q8_padded((size_t)m.cols) / GPT2_Q8_GROUP;
    char s[112];
    snprintf(s, sizeof s, "%s_scale", name);
    return add(w, name, "I8", 1, groups, (int64_t)m.rows * GPT2_Q8_GROUP, m.data) ||
           add(w, s, "F16", 2, groups, (int64_t)m.rows / GPT2_Q8_BLOCK * GPT2_Q8_GROUP, m.scales);
}

/* Every tensor the model took from its checkpoint, under its architecture's
 * name for it (a tied head is the embedding, written once). */
static int collect(writer *w, const gpt2c_model *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        if (t->w ? add_matrix(w, t->name, *t->w, t->d0, t->d1) : add_vector(w, t->name, *t->v, t->d0)) return -1;
    }
    return 0;
}

/* Wider elements first, so that every tensor starts aligned to its element
 * size when the header is padded to 8 bytes (safetensors allows no gaps
 * between tensors); then by name, for a reproducible file. */
static int by_elem_then_name(const void *a, const void *b) {
    const out_tensor *x = a, *y = b;
    if (x->elem != y->elem) return x->elem > y->elem ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Writes buf to path and flushes it to disk. On failure the message names
 * the file as `shown` (DIR/NAME: the temporary folder it is written in is
 * not one the caller gave, and is gone once the save fails). */
static gpt2c_status write_file(gpt2c_model *m, const char *path, const char *shown, const void *head, size_t head_n,
                               const writer *w) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return err_set(&m->err, GPT2C_ERR_IO, "%s: %s", shown, strerror(errno));
    int bad = file_write_all(fd, head, head_n);
    for (int i = 0; w && !bad && i < w->n; i++) bad = file_write_all(fd, w->t[i].data, w->t[i].nbytes);
    if (!bad) bad = fsync(fd);
    int e = errno;
    if (close(fd) != 0 && !bad) bad = 1, e = errno;
    return bad ? err_set(&m->err, GPT2C_ERR_IO, "%s: %s", shown, strerror(e)) : GPT2C_OK;
}

/* The safetensors header: "__metadata__" and one entry per tensor with its
 * offsets, padded with spaces to a multiple of 8 bytes. */
static char *header(const writer *w, const char *dtype, size_t *len) {
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta) {
        json_decref(root), json_decref(meta);
        return NULL;
    }
    /* Every insertion is checked: a header missing an entry would be a
     * broken checkpoint, so out of memory fails the whole save. */
    int bad = json_object_set_new(meta, "format", json_string("pt"));
    bad |= json_object_set_new(meta, "gpt2c_dtype", json_string(dtype));
    if (!strcmp(dtype, "Q8"))
        bad |= json_object_set_new(meta, "gpt2c_q8",
                                   json_string("a matrix's product form W (din, dout) -- Conv1D weights as stored, "
                                               "the head transposed -- in int8 blocks of 32 inputs with an f16 scale "
                                               "(absmax / 127) each; values in 512-byte chunks per block of 32 "
                                               "inputs and group of 16 columns (k pairs, columns, the pair's two k), "
                                               "one tensor row per group (dout padded to 16), its blocks in order; "
                                               "NAME_scale likewise (group; block, column)"));
    bad |= json_object_set_new(root, "__metadata__", meta);
    size_t off = 0;
    for (int i = 0; i < w->n && !bad; i++) {
        const out_tensor *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) bad |= json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *entry = json_pack("{s:s, s:o, s:[I, I]}", "dtype", t->dtype, "shape", shape, "data_offsets",
                                  (json_int_t)off, (json_int_t)(off + t->nbytes));
        bad |= !entry || json_object_set_new(root, t->name, entry);
        off += t->nbytes;
    }
    if (bad) {
        json_decref(root);
        return NULL;
    }
    char *json = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!json) return NULL;
    char *buf = st_frame_header(json, len);
    free(json);
    return buf;
}

/* Copies the sidecar files the source folder has into tmp (dir, as the
 * caller named it, in messages). */
static gpt2c_status copy_sidecars(gpt2c_model *m, const char *tmp, const char *dir) {
    for (size_t i = 0; i < N_SIDECARS; i++) {
        char *src = path_join(m->dir, SIDECARS[i]), *dst = path_join(tmp, SIDECARS[i]);
        char *shown = path_join(dir, SIDECARS[i]);
        gpt2c_status s = src && dst && shown ? GPT2C_OK : err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
        if (!s && file_exists(src)) {
            char *data = NULL;
            size_t n = 0;
            s = file_read(src, (size_t)256 << 20, &data, &n, &m->err);
            if (!s) s = write_file(m, dst, shown, data, n, NULL);
            free(data);
        }
        free(src);
        free(dst);
        free(shown);
        if (s) return s;
    }
    return GPT2C_OK;
}

static void remove_tmp(const char *tmp) {
    char *p = path_join(tmp, "model.safetensors");
    if (p) unlink(p);
    free(p);
    for (size_t i = 0; i < N_SIDECARS; i++) {
        p = path_join(tmp, SIDECARS[i]);
        if (p) unlink(p);
        free(p);
    }
    rmdir(tmp);
}

gpt2c_status gpt2c_model_save(gpt2c_model *m, const char *dir) {
    if (!m) return GPT2C_ERR_INVALID;
    if (!dir || !*dir) return err_set(&m->err, GPT2C_ERR_INVALID, "output folder is empty");
    struct stat st;
    if (lstat(dir, &st) == 0)
        return err_set(&m->err, GPT2C_ERR_INVALID, "%s exists; give a new folder (nothing was written)", dir);
    if (m->lm_head.type == WT_BF16P) /* its pairs are the kernels' form, not a checkpoint's */
        return err_set(&m->err, GPT2C_ERR_UNSUPPORTED,
                       "a model loaded with compute bf16 cannot be saved; save it with dtype bf16 instead");
    char tmp[4200], parent[4200];
    if (snprintf(tmp, sizeof tmp, "%s.incomplete-%ld", dir, (long)getpid()) >= (int)sizeof tmp)
        return err_set(&m->err, GPT2C_ERR_INVALID, "output folder name is too long");
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash == parent) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(parent, ".");
    /* Messages name dir and its files, never tmp: the caller gave dir. */
    if (mkdir(tmp, 0755) != 0) return err_set(&m->err, GPT2C_ERR_IO, "%s: %s", dir, strerror(errno));

    writer w = {0};
    gpt2c_status s = GPT2C_OK;
    size_t head_n = 0;
    char *head = NULL, *file = path_join(tmp, "model.safetensors"), *shown = path_join(dir, "model.safetensors");
    if (!file || !shown || collect(&w, m) != 0 ||
        (qsort(w.t, (size_t)w.n, sizeof *w.t, by_elem_then_name), !(head = header(&w, m->dtype, &head_n))))
        s = err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
    if (!s) s = write_file(m, file, shown, head, head_n, &w);
    if (!s) s = copy_sidecars(m, tmp, dir);
    if (!s && file_sync_dir(tmp) != 0) s = err_set(&m->err, GPT2C_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!s && rename(tmp, dir) != 0) s = err_set(&m->err, GPT2C_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!s && file_sync_dir(parent) != 0) s = err_set(&m->err, GPT2C_ERR_IO, "%s: %s", parent, strerror(errno));
    if (s) remove_tmp(tmp);
    free(file);
    free(shown);
    free(head);
    free(w.t);
    return s;
}
