/* torchbin.c -- see torchbin.h. The unpickler gives a dict of tensors, each a
 * view (offset, size, stride) of a storage; this file finds each storage's
 * bytes (a zip entry, or a run of the legacy file), checks that every view
 * lies inside them, and hands out safetensors-style tensors. */
#include "torchbin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pickle.h"
#include "zip.h"

/* Where a storage's bytes are. */
typedef struct storage {
    const unsigned char *key;
    size_t key_len;
    const unsigned char *data;
    uint64_t nbytes;
    st_dtype dtype; /* how a reference reads it (the legacy format sizes storages by it) */
} storage;

typedef struct reader {
    st_file *f;
    gpt2_err *e;
    pk_heap heap;
    zip_archive zip;
    const char *prefix; /* zip: "archive/" (torch names the folder after the file) */
    size_t prefix_len;
    storage *legacy; /* legacy format: the storages in file order, sorted by key */
    size_t n_legacy;
    uint64_t copied; /* bytes of strided tensors copied so far */
} reader;

static int cmp_key(const unsigned char *a, size_t al, const unsigned char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int cmp_storage(const void *a, const void *b) {
    const storage *x = a, *y = b;
    return cmp_key(x->key, x->key_len, y->key, y->key_len);
}

/* The bytes a storage reference names, or NULL with the error set. */
static storage *find_storage(reader *r, const pk_value *ref, storage *tmp) {
    storage *s = NULL;
    if (r->legacy) {
        storage key = {.key = ref->s, .key_len = ref->len};
        s = bsearch(&key, r->legacy, r->n_legacy, sizeof key, cmp_storage);
    } else {
        /* PREFIX "data/" KEY */
        char name[512];
        if (ref->len > 200) {
            err_set(r->e, GPT2C_ERR_FORMAT, "%s: a storage key of %zu bytes", r->f->path, ref->len);
            return NULL;
        }
        snprintf(name, sizeof name, "%.*sdata/%.*s", (int)r->prefix_len, r->prefix, (int)ref->len,
                 (const char *)ref->s);
        const zip_entry *z = zip_find(&r->zip, name);
        if (z) {
            *tmp = (storage){.key = ref->s, .key_len = ref->len, .data = z->data, .nbytes = z->size};
            s = tmp;
        }
    }
    if (!s && ref->i > 0)
        err_set(r->e, GPT2C_ERR_FORMAT, "%s: storage '%.*s' is referenced but not in the file", r->f->path,
                (int)(ref->len < 64 ? ref->len : 64), (const char *)ref->s);
    return s;
}

/* The storage's element count fits its bytes; a legacy view lies within its
 * root. On success *base and *numel are the elements the tensor may use. */
static gpt2c_status storage_bytes(reader *r, const char *name, const pk_value *ref, const unsigned char **base,
                                  uint64_t *numel) {
    storage tmp, *s = find_storage(r, ref, &tmp);
    const uint64_t es = st_dtype_size(ref->dtype);
    *base = NULL;
    *numel = 0;
    if (!s) return r->e->status; /* an empty storage absent from the file is empty */
    if ((uint64_t)ref->i > s->nbytes / es)
        return err_set(r->e, GPT2C_ERR_FORMAT, "%s: tensor '%s': storage of %lld %s elements has only %llu bytes",
                       r->f->path, name, (long long)ref->i, st_dtype_name(ref->dtype), (unsigned long long)s->nbytes);
    *base = s->data;
    *numel = (uint64_t)ref->i;
    if (ref->view_offset >= 0) {
        if ((uint64_t)ref->view_offset > *numel || (uint64_t)ref->view_numel > *numel - (uint64_t)ref->view_offset)
            return err_set(r->e, GPT2C_ERR_FORMAT, "%s: tensor '%s': storage view outside its storage", r->f->path,
                           name);
        *base += (uint64_t)ref->view_offset * es;
        *numel = (uint64_t)ref->view_numel;
    }
    return GPT2C_OK;
}

/* Copies a strided view into contiguous memory, last dimension fastest. */
static void gather(unsigned char *dst, const unsigned char *src, const pk_value *t, size_t es, uint64_t numel) {
    int64_t idx[ST_MAX_DIMS] = {0};
    uint64_t off = 0;
    for (uint64_t k = 0; k < numel; k++) {
        memcpy(dst + k * es, src + off * es, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += (uint64_t)t->stride[d];
            if (++idx[d] < t->size[d]) break;
            off -= (uint64_t)t->stride[d] * (uint64_t)t->size[d];
            idx[d] = 0;
        }
    }
}

static gpt2c_status add_tensor(reader *r, const pk_value *key, const pk_value *t) {
    st_file *f = r->f;
    st_tensor *out = &f->tensors[f->n];
    if (!(out->name = strndup((const char *)key->s, key->len)))
        return err_set(r->e, GPT2C_ERR_NOMEM, "%s: out of memory", f->path);
    f->n++;
    const char *name = out->name;
    const unsigned char *base;
    uint64_t have;
    gpt2c_status s = storage_bytes(r, name, t->storage, &base, &have);
    if (s) return s;
    const size_t es = st_dtype_size(t->storage->dtype);
    /* numel, the highest element the view touches, and whether its strides
     * are the contiguous ones (dimensions of size 1 may have any stride). */
    uint64_t numel = 1, last = (uint64_t)t->offset, want = 1;
    int contiguous = 1;
    if (t->offset < 0) return err_set(r->e, GPT2C_ERR_FORMAT, "%s: tensor '%s' has a negative offset", f->path, name);
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->size[d] < 0 || t->stride[d] < 0)
            return err_set(r->e, GPT2C_ERR_FORMAT, "%s: tensor '%s' has a negative size or stride", f->path, name);
        if (t->size[d] > 0 && numel > (UINT64_MAX / 16) / (uint64_t)t->size[d])
            return err_set(r->e, GPT2C_ERR_FORMAT, "%s: tensor '%s' has an absurd size", f->path, name);
        numel *= (uint64_t)t->size[d];
        if (t->size[d] != 1 && (uint64_t)t->stride[d] != want) contiguous = 0;
        want *= (uint64_t)t->size[d];
        out->shape[d] = t->size[d];
    }
    out->ndim = t->ndim;
    out->dtype = t->storage->dtype;
    out->numel = (int64_t)numel;
    out->nbytes = (size_t)(numel * es);
    if (numel == 0) return GPT2C_OK;
    /* Every element lies in the storage: the last one, offset + sum of
     * (size - 1) * stride, is below `have`, checked term by term so that no
     * sum can wrap around. */
    int inside = last < have;
    for (int d = 0; inside && d < t->ndim; d++) {
        uint64_t span = (uint64_t)(t->size[d] - 1);
        if (t->stride[d] > 0 && span > (have - 1 - last) / (uint64_t)t->stride[d]) inside = 0;
        else last += span * (uint64_t)t->stride[d];
    }
    if (!inside)
        return err_set(r->e, GPT2C_ERR_FORMAT,
                       "%s: tensor '%s' (offset %lld) reaches past its storage of %llu elements: storage shorter than "
                       "its tensor", f->path, name, (long long)t->offset, (unsigned long long)have);
    if (contiguous) {
        out->data = base + (uint64_t)t->offset * es;
        return GPT2C_OK;
    }
    /* A strided view is copied. It cannot be larger than its storage (else
     * elements repeat), and all copies together stay below the file's size,
     * so a hostile file cannot make the copies outgrow it. */
    if (numel > have || r->copied + out->nbytes > f->map.size)
        return err_set(r->e, GPT2C_ERR_FORMAT, "%s: tensor '%s' has overlapping strides", f->path, name);
    void **owned = realloc(f->owned, (size_t)(f->n_owned + 1) * sizeof *owned);
    if (!owned) return err_set(r->e, GPT2C_ERR_NOMEM, "%s: out of memory", f->path);
    f->owned = owned;
    unsigned char *copy = malloc(out->nbytes);
    if (!copy) return err_set(r->e, GPT2C_ERR_NOMEM, "%s: out of memory copying '%s'", f->path, name);
    f->owned[f->n_owned++] = copy;
    r->copied += out->nbytes;
    gather(copy, base + (uint64_t)t->offset * es, t, es, numel);
    out->data = copy;
    return GPT2C_OK;
}

/* The state dict: string keys to tensors. Other entries (integer keys,
 * non-tensor values) are left out, as transformers ignores unexpected keys. */
static gpt2c_status add_state_dict(reader *r, const pk_value *root) {
    st_file *f = r->f;
    if (root->kind != PK_DICT)
        return err_set(r->e, GPT2C_ERR_FORMAT, "%s: holds a pickled %s, not a state dict", f->path,
                       root->kind == PK_TENSOR ? "tensor" : root->kind == PK_LIST ? "list" : "object");
    f->tensors = calloc(root->n / 2 + 1, sizeof *f->tensors);
    if (!f->tensors) return err_set(r->e, GPT2C_ERR_NOMEM, "%s: out of memory", f->path);
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        const pk_value *k = root->items[i], *v = root->items[i + 1];
        if (k->kind != PK_STR || v->kind != PK_TENSOR) continue;
        if (memchr(k->s, '\0', k->len))
            return err_set(r->e, GPT2C_ERR_FORMAT, "%s: a tensor name with a NUL byte", f->path);
        gpt2c_status s = add_tensor(r, k, v);
        if (s) return s;
    }
    return st_sort(f, r->e);
}

/* The zip format: FOLDER/data.pkl, FOLDER/data/KEY for each storage, and
 * FOLDER/byteorder ("little" or "big") since torch 2.1. */
static gpt2c_status open_zip(reader *r) {
    st_file *f = r->f;
    gpt2c_status s = zip_open(f->map.data, f->map.size, f->path, &r->zip, r->e);
    if (s) return s;
    const zip_entry *pkl = NULL;
    for (int i = 0; i < r->zip.n; i++) {
        const char *n = r->zip.entries[i].name, *slash = strchr(n, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0) continue;
        if (pkl) return err_set(r->e, GPT2C_ERR_FORMAT, "%s: more than one data.pkl in the archive", f->path);
        pkl = &r->zip.entries[i];
        r->prefix = n;
        r->prefix_len = (size_t)(slash - n) + 1;
    }
    if (!pkl)
        return err_set(r->e, GPT2C_ERR_FORMAT, "%s: a zip archive without FOLDER/data.pkl: not a torch.save checkpoint",
                       f->path);
    char name[300];
    snprintf(name, sizeof name, "%.*sbyteorder", (int)(r->prefix_len < 256 ? r->prefix_len : 256), r->prefix);
    const zip_entry *bo = zip_find(&r->zip, name);
    if (bo && bo->size == 3 && !memcmp(bo->data, "big", 3))
        return err_set(r->e, GPT2C_ERR_UNSUPPORTED, "%s: saved on a big-endian machine (byteorder 'big')", f->path);
    pk_value *root;
    if ((s = pk_load(&r->heap, pkl->data, pkl->size, f->path, &root, NULL, r->e))) return s;
    return add_state_dict(r, root);
}

/* The legacy format: pickles of the magic number, the protocol version
 * (1001), the machine's description and the state dict, then of the list of
 * storage keys, then for each key in that order its element count (8 bytes,
 * little-endian) and its bytes. */
static gpt2c_status open_legacy(reader *r) {
    st_file *f = r->f;
    static const unsigned char MAGIC[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    const unsigned char *p = f->map.data, *end = p + f->map.size;
    pk_value *v[5];
    gpt2c_status s;
    for (int i = 0; i < 5; i++) {
        size_t used;
        if ((s = pk_load(&r->heap, p, (size_t)(end - p), f->path, &v[i], &used, r->e))) return s;
        p += used;
        if (i == 0 && (v[0]->kind != PK_BIGINT || v[0]->len != sizeof MAGIC || memcmp(v[0]->s, MAGIC, sizeof MAGIC)))
            return err_set(r->e, GPT2C_ERR_FORMAT, "%s: not a PyTorch checkpoint (no torch.save magic number)", f->path);
        if (i == 1 && (v[1]->kind != PK_INT || v[1]->i != 1001))
            return err_set(r->e, GPT2C_ERR_UNSUPPORTED, "%s: torch.save protocol version other than 1001", f->path);
        if (i == 2 && v[2]->kind == PK_DICT)
            for (size_t k = 0; k + 1 < v[2]->n; k += 2)
                if (pk_str_is(v[2]->items[k], "little_endian") && v[2]->items[k + 1]->kind == PK_BOOL &&
                    !v[2]->items[k + 1]->i)
                    return err_set(r->e, GPT2C_ERR_UNSUPPORTED, "%s: saved on a big-endian machine", f->path);
    }
    pk_value *keys = v[4];
    if (keys->kind != PK_LIST)
        return err_set(r->e, GPT2C_ERR_FORMAT, "%s: the storage key list is not a list", f->path);
    /* Each storage's element size is that of a reference to it (torch refuses
     * to save one storage as two dtypes): the references, sorted by key. */
    size_t n_refs = 0;
    for (const pk_value *x = r->heap.all; x; x = x->next) n_refs += x->kind == PK_STORAGE;
    storage *refs = calloc(n_refs + 1, sizeof *refs);
    r->legacy = calloc(keys->n + 1, sizeof *r->legacy);
    if (!refs || !r->legacy) {
        free(refs);
        return err_set(r->e, GPT2C_ERR_NOMEM, "%s: out of memory", f->path);
    }
    n_refs = 0;
    for (const pk_value *x = r->heap.all; x; x = x->next)
        if (x->kind == PK_STORAGE) refs[n_refs++] = (storage){.key = x->s, .key_len = x->len, .dtype = x->dtype};
    qsort(refs, n_refs, sizeof *refs, cmp_storage);
    s = GPT2C_OK;
    for (size_t k = 0; k < keys->n && !s; k++) {
        const pk_value *key = keys->items[k];
        if (key->kind != PK_STR) {
            s = err_set(r->e, GPT2C_ERR_FORMAT, "%s: a storage key is not a string", f->path);
            break;
        }
        storage want = {.key = key->s, .key_len = key->len}, *ref = bsearch(&want, refs, n_refs, sizeof want, cmp_storage);
        if (!ref)
            s = err_set(r->e, GPT2C_ERR_FORMAT, "%s: storage '%.*s' is listed but never used", f->path,
                        (int)(key->len < 64 ? key->len : 64), (const char *)key->s);
        else if (end - p < 8)
            s = err_set(r->e, GPT2C_ERR_FORMAT, "%s: truncated before a storage", f->path);
        if (s) break;
        uint64_t count = read_le(p, 8);
        p += 8;
        const uint64_t es = st_dtype_size(ref->dtype);
        if (count > (uint64_t)(end - p) / es) {
            s = err_set(r->e, GPT2C_ERR_FORMAT, "%s: storage '%.*s' of %llu elements runs past the end: truncated?",
                        f->path, (int)(key->len < 64 ? key->len : 64), (const char *)key->s, (unsigned long long)count);
            break;
        }
        r->legacy[r->n_legacy++] = (storage){.key = key->s, .key_len = key->len, .data = p, .nbytes = count * es};
        p += count * es;
    }
    free(refs);
    if (s) return s;
    qsort(r->legacy, r->n_legacy, sizeof *r->legacy, cmp_storage);
    for (size_t k = 1; k < r->n_legacy; k++)
        if (!cmp_storage(&r->legacy[k - 1], &r->legacy[k]))
            return err_set(r->e, GPT2C_ERR_FORMAT, "%s: a storage key is listed twice", f->path);
    return add_state_dict(r, v[3]);
}

gpt2c_status tb_open(const char *path, st_file *f, gpt2_err *e) {
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    gpt2c_status s = file_map(path, &f->map, e);
    if (s) return s;
    const unsigned char *p = f->map.data;
    const size_t n = f->map.size;
    reader r = {.f = f, .e = e};
    if (zip_is_zip(p, n)) s = open_zip(&r);
    else if (n >= 262 && !memcmp(p + 257, "ustar", 5))
        s = err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: torch's tar format (torch < 0.4) is not supported", path);
    else if (p[0] == 0x80) s = open_legacy(&r);
    else s = err_set(e, GPT2C_ERR_FORMAT, "%s: not a PyTorch checkpoint (neither a zip archive nor a pickle)", path);
    /* The legacy format's storage scan walks the heap: keep it linear. */
    zip_close(&r.zip);
    pk_free(&r.heap);
    free(r.legacy);
    return s;
}
