/* safetensors.h -- a validating reader of the safetensors format: an 8-byte
 * little-endian header length, a JSON header, then the raw tensor bytes.
 * Nothing is trusted: every offset, shape and size is checked before a
 * pointer into the mapped file is handed out. */
#ifndef GPT2C_SAFETENSORS_H
#define GPT2C_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "file.h"

#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8,
    ST_U16, ST_U32, ST_U64, ST_BOOL, ST_F8_E4M3, ST_F8_E5M2
} st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const unsigned char *data; /* into the mapping; may be unaligned */
    size_t nbytes;
} st_tensor;

/* A file's named tensors: a safetensors file, or a PyTorch checkpoint read
 * into the same form by torchbin.h (which may own contiguous copies of
 * strided tensors). */
typedef struct st_file {
    char *path;
    gpt2_map map;
    st_tensor *tensors; /* sorted by name */
    int n;
    void **owned;       /* (n_owned,) buffers freed with the file */
    int n_owned;
} st_file;

gpt2c_status st_open(const char *path, st_file *f, gpt2_err *e);
const st_tensor *st_find(const st_file *f, const char *name);
/* Sorts f->tensors by name for st_find; refuses a name given twice. */
gpt2c_status st_sort(st_file *f, gpt2_err *e);
void st_close(st_file *f);
const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);
/* What a safetensors file starts with, for the header JSON text: its
 * length as 8 little-endian bytes, then the text padded with spaces to a
 * multiple of 8 (so that the data after it is aligned); *len gets the
 * size. malloc'd; NULL without memory. */
char *st_frame_header(const char *json, size_t *len);

#endif
