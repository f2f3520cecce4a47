/* safetensors.c -- see safetensors.h. JSON parsing is jansson's; this file
 * only enforces the format's rules on top of it. */
#include "safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The header is JSON text describing tensors; the real ones are a few tens of
 * KiB. The cap keeps a hostile length from driving a huge parse. */
#define ST_MAX_HEADER (100u << 20)

static const struct {
    const char *name;
    size_t size;
} DTYPES[] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1}, [ST_U8] = {"U8", 1},
    [ST_U16] = {"U16", 2}, [ST_U32] = {"U32", 4}, [ST_U64] = {"U64", 8},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype d) { return DTYPES[d].name; }
size_t st_dtype_size(st_dtype d) { return DTYPES[d].size; }

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static gpt2c_status parse_tensor(const char *path, const char *name, json_t *v,
                                 const unsigned char *base, size_t data_size, st_tensor *t,
                                 gpt2_err *e) {
    if (!json_is_object(v))
        return err_set(e, GPT2C_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return err_set(e, GPT2C_ERR_FORMAT, "%s: tensor '%s': missing string field 'dtype'", path, name);
    size_t k;
    for (k = 0; k < sizeof DTYPES / sizeof DTYPES[0]; k++)
        if (strcmp(DTYPES[k].name, json_string_value(dt)) == 0) break;
    if (k == sizeof DTYPES / sizeof DTYPES[0])
        return err_set(e, GPT2C_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.32s'", path, name,
                       json_string_value(dt));
    t->dtype = (st_dtype)k;
    if (!json_is_array(shape) || json_array_size(shape) > ST_MAX_DIMS)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: tensor '%s': 'shape' must be an array of at most %d integers",
                       path, name, ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return err_set(e, GPT2C_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                           path, name, i);
        t->shape[i] = json_integer_value(d);
        /* Every dimension is bounded by the file size, so the product of
         * bounded factors is checked step by step against overflow. */
        if (t->shape[i] != 0 && numel > (UINT64_MAX / 16) / (uint64_t)t->shape[i])
            return err_set(e, GPT2C_ERR_FORMAT, "%s: tensor '%s': shape is absurdly large", path, name);
        numel *= (uint64_t)t->shape[i];
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1)))
        return err_set(e, GPT2C_ERR_FORMAT, "%s: tensor '%s': 'data_offsets' must be [begin, end]", path, name);
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t en = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || en < b || (uint64_t)en > data_size)
        return err_set(e, GPT2C_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%lld, %lld] outside the %zu data bytes", path,
                       name, (long long)b, (long long)en, data_size);
    uint64_t nbytes = numel * DTYPES[k].size;
    if (nbytes != (uint64_t)(en - b))
        return err_set(e, GPT2C_ERR_FORMAT,
                       "%s: tensor '%s': %s shape needs %llu bytes but data_offsets span %lld", path,
                       name, DTYPES[k].name, (unsigned long long)nbytes, (long long)(en - b));
    t->numel = (int64_t)numel;
    t->data = base + b;
    t->nbytes = (size_t)nbytes;
    return GPT2C_OK;
}

static gpt2c_status parse_header(st_file *f, json_t *root, const unsigned char *base,
                                 size_t data_size, gpt2_err *e) {
    if (!json_is_object(root))
        return err_set(e, GPT2C_ERR_FORMAT, "%s: safetensors header is not a JSON object", f->path);
    size_t n = json_object_size(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) return err_set(e, GPT2C_ERR_NOMEM, "%s: out of memory", f->path);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        st_tensor *t = &f->tensors[f->n];
        t->name = strdup(key);
        if (!t->name) return err_set(e, GPT2C_ERR_NOMEM, "%s: out of memory", f->path);
        f->n++;
        gpt2c_status s = parse_tensor(f->path, key, v, base, data_size, t, e);
        if (s) return s;
    }
    /* Tensors must not share bytes: a file whose tensors overlap is corrupt. */
    const st_tensor **by_off = malloc((size_t)(f->n ? f->n : 1) * sizeof *by_off);
    if (!by_off) return err_set(e, GPT2C_ERR_NOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n; i++) by_off[i] = &f->tensors[i];
    qsort(by_off, (size_t)f->n, sizeof *by_off, cmp_offset);
    for (int i = 1; i < f->n; i++) {
        const st_tensor *a = by_off[i - 1], *b = by_off[i];
        if (a->data + a->nbytes > b->data && b->nbytes > 0) {
            err_set(e, GPT2C_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", f->path, a->name, b->name);
            break;
        }
    }
    free(by_off);
    if (e->status) return e->status;
    return st_sort(f, e);
}

gpt2c_status st_sort(st_file *f, gpt2_err *e) {
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name))
            return err_set(e, GPT2C_ERR_FORMAT, "%s: tensor '%.80s' appears twice", f->path, f->tensors[i].name);
    return GPT2C_OK;
}

gpt2c_status st_open(const char *path, st_file *f, gpt2_err *e) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    gpt2c_status s = file_map(path, &f->map, e);
    if (s) return s;
    const unsigned char *p = f->map.data;
    if (f->map.size < 8)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: truncated: %zu bytes, too short for a safetensors header",
                       path, f->map.size);
    uint64_t hlen = read_le(p, 8);
    if (hlen > f->map.size - 8)
        return err_set(e, GPT2C_ERR_FORMAT,
                       "%s: header length %llu runs past the end of the file (%zu bytes): truncated?",
                       path, (unsigned long long)hlen, f->map.size);
    if (hlen > ST_MAX_HEADER)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
                       (unsigned long long)hlen, ST_MAX_HEADER);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: header is not valid JSON: %s (at byte %d)", path,
                       jerr.text, jerr.position);
    s = parse_header(f, root, p + 8 + hlen, f->map.size - 8 - (size_t)hlen, e);
    json_decref(root);
    return s;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    st_tensor key = {.name = (char *)name};
    if (f->n == 0) return NULL;
    return bsearch(&key, f->tensors, (size_t)f->n, sizeof key, cmp_name);
}

void st_close(st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_owned; i++) free(f->owned[i]);
    free(f->owned);
    file_unmap(&f->map);
    free(f->path);
    memset(f, 0, sizeof *f);
}

char *st_frame_header(const char *json, size_t *len) {
    const size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    char *buf = malloc(8 + padded);
    if (!buf) return NULL;
    for (int i = 0; i < 8; i++) buf[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, ' ', padded - n);
    *len = 8 + padded;
    return buf;
}
