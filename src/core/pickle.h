/* pickle.h -- a restricted unpickler for PyTorch checkpoints: it knows the
 * pickle opcodes a state dict uses and an allow-list of globals, each given
 * its meaning here (a dict, a tensor, a storage reference), and refuses
 * everything else, as torch.load(weights_only=True) does. It never executes
 * anything: the result is a tree of plain values. */
#ifndef GPT2C_PICKLE_H
#define GPT2C_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "safetensors.h"

typedef enum pk_kind {
    PK_NONE, PK_BOOL, PK_INT, PK_BIGINT, PK_FLOAT, PK_STR, PK_TUPLE, PK_LIST, PK_DICT,
    PK_GLOBAL,  /* an allowed global not yet called: which says what it is */
    PK_STORAGE, /* a persistent reference to a storage: ("storage", type, key, location, numel[, view]) */
    PK_TENSOR,  /* the result of torch._utils._rebuild_tensor(_v2) */
    PK_MARK     /* internal: the MARK opcode's place on the stack */
} pk_kind;

typedef enum pk_global {
    PG_ORDERED_DICT, PG_REBUILD_TENSOR, PG_REBUILD_TENSOR_V2, PG_REBUILD_PARAMETER, PG_DEVICE,
    PG_STORAGE_TYPE, /* torch.FloatStorage ...: dtype says which */
    PG_DTYPE         /* torch.float32 ...: a constant */
} pk_global;

typedef struct pk_value pk_value;
struct pk_value {
    pk_kind kind;
    int64_t i;               /* BOOL, INT; GLOBAL: its pk_global; STORAGE: numel */
    double f;                /* FLOAT */
    const unsigned char *s;  /* STR, BIGINT (raw little-endian bytes): into the pickle */
    size_t len;
    pk_value **items;        /* TUPLE, LIST; DICT: key, value, key, value ... */
    size_t n, cap;
    st_dtype dtype;          /* GLOBAL storage type, STORAGE */
    int64_t view_offset, view_numel; /* STORAGE: a view of its root (legacy format), or -1 */
    pk_value *storage;       /* TENSOR */
    int64_t offset;          /* TENSOR: storage offset, in elements */
    int ndim;                /* TENSOR */
    int64_t *size, *stride;  /* TENSOR: (ndim,) each */
    pk_value *next;          /* every value of a heap, for freeing */
};

/* The values of one or more pickles, freed together. */
typedef struct pk_heap {
    pk_value *all;
    size_t count, items;
} pk_heap;

/* Unpickles one pickle from p[0, n) (a file may hold several in a row);
 * *used is how many bytes it took. `path` names the file in messages. */
gpt2c_status pk_load(pk_heap *h, const unsigned char *p, size_t n, const char *path, pk_value **out, size_t *used,
                     gpt2_err *e);
void pk_free(pk_heap *h);
/* Nonzero when v is a string equal to the NUL-terminated s. */
int pk_str_is(const pk_value *v, const char *s);

#endif
