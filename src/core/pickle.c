/* pickle.c -- see pickle.h. Python's pickle format is a little stack machine;
 * this is a hand-written interpreter for the part of it a state dict uses
 * (no C library unpickles safely, and a general one would be the wrong tool:
 * the point is to know every global that may appear). Values live on a heap
 * freed as a whole, so nothing here recurses and hostile nesting costs no
 * stack. Every count is capped, so memory stays proportional to the pickle. */
#include "pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A state dict of a billion-parameter model is a few thousand objects. */
#define PK_MAX_VALUES (1u << 20)
#define PK_MAX_ITEMS (1u << 24)
#define PK_MAX_MEMO (1u << 20)

/* The allow-list: everything a state dict written by torch.save (1.0 to 2.x,
 * zip or legacy format) refers to. */
static const struct {
    const char *module, *name;
    pk_global g;
    st_dtype dtype;
} ALLOWED[] = {
    {"collections", "OrderedDict", PG_ORDERED_DICT, 0},
    {"torch._utils", "_rebuild_tensor", PG_REBUILD_TENSOR, 0},
    {"torch._utils", "_rebuild_tensor_v2", PG_REBUILD_TENSOR_V2, 0},
    {"torch._utils", "_rebuild_parameter", PG_REBUILD_PARAMETER, 0},
    {"torch", "device", PG_DEVICE, 0},
    {"torch", "FloatStorage", PG_STORAGE_TYPE, ST_F32},
    {"torch", "HalfStorage", PG_STORAGE_TYPE, ST_F16},
    {"torch", "BFloat16Storage", PG_STORAGE_TYPE, ST_BF16},
    {"torch", "DoubleStorage", PG_STORAGE_TYPE, ST_F64},
    {"torch", "LongStorage", PG_STORAGE_TYPE, ST_I64},
    {"torch", "IntStorage", PG_STORAGE_TYPE, ST_I32},
    {"torch", "ShortStorage", PG_STORAGE_TYPE, ST_I16},
    {"torch", "CharStorage", PG_STORAGE_TYPE, ST_I8},
    {"torch", "ByteStorage", PG_STORAGE_TYPE, ST_U8},
    {"torch", "BoolStorage", PG_STORAGE_TYPE, ST_BOOL},
    {"torch", "float32", PG_DTYPE, ST_F32},
    {"torch", "float16", PG_DTYPE, ST_F16},
    {"torch", "bfloat16", PG_DTYPE, ST_BF16},
    {"torch", "float64", PG_DTYPE, ST_F64},
    {"torch", "int64", PG_DTYPE, ST_I64},
    {"torch", "int32", PG_DTYPE, ST_I32},
    {"torch", "int16", PG_DTYPE, ST_I16},
    {"torch", "int8", PG_DTYPE, ST_I8},
    {"torch", "uint8", PG_DTYPE, ST_U8},
    {"torch", "bool", PG_DTYPE, ST_BOOL},
};

typedef struct vm {
    pk_heap *h;
    const unsigned char *p, *end, *start;
    const char *path;
    gpt2_err *e;
    pk_value **stack;
    size_t sp, stack_cap;
    pk_value **memo;
    size_t memo_cap, memo_n; /* slots, and how many are set (MEMOIZE's next index) */
} vm;

int pk_str_is(const pk_value *v, const char *s) {
    return v && v->kind == PK_STR && v->len == strlen(s) && memcmp(v->s, s, v->len) == 0;
}

static gpt2c_status fail(vm *m, const char *what) {
    return err_set(m->e, GPT2C_ERR_FORMAT, "%s: pickle at byte %td: %s", m->path, m->p - m->start, what);
}

static pk_value *new_value(vm *m, pk_kind k) {
    if (m->h->count >= PK_MAX_VALUES) {
        fail(m, "more objects than any state dict holds");
        return NULL;
    }
    pk_value *v = calloc(1, sizeof *v);
    if (!v) {
        err_set(m->e, GPT2C_ERR_NOMEM, "%s: out of memory unpickling", m->path);
        return NULL;
    }
    v->kind = k;
    v->next = m->h->all;
    m->h->all = v;
    m->h->count++;
    return v;
}

/* Appends x to a growing array of values (a container's items, the stack). */
static gpt2c_status append(vm *m, pk_value ***arr, size_t *n, size_t *cap, pk_value *x) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        pk_value **a = realloc(*arr, c * sizeof *a);
        if (!a) return err_set(m->e, GPT2C_ERR_NOMEM, "%s: out of memory unpickling", m->path);
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = x;
    return GPT2C_OK;
}

static gpt2c_status add_item(vm *m, pk_value *c, pk_value *x) {
    if (m->h->items >= PK_MAX_ITEMS) return fail(m, "more items than any state dict holds");
    m->h->items++;
    return append(m, &c->items, &c->n, &c->cap, x);
}

static gpt2c_status push(vm *m, pk_value *v) {
    return v ? append(m, &m->stack, &m->sp, &m->stack_cap, v) : m->e->status;
}

static pk_value *pop(vm *m) {
    if (m->sp == 0 || m->stack[m->sp - 1]->kind == PK_MARK) {
        fail(m, "stack underflow");
        return NULL;
    }
    return m->stack[--m->sp];
}

/* The index of the topmost MARK, or -1 (with the error set). */
static long find_mark(vm *m) {
    for (size_t i = m->sp; i-- > 0;)
        if (m->stack[i]->kind == PK_MARK) return (long)i;
    fail(m, "no MARK on the stack");
    return -1;
}

static int need(vm *m, size_t k) { return (size_t)(m->end - m->p) >= k; }

static gpt2c_status push_int(vm *m, int64_t x) {
    pk_value *v = new_value(m, PK_INT);
    if (v) v->i = x;
    return push(m, v);
}

/* LONG1 / LONG4: two's complement, little-endian; up to 8 bytes is an INT,
 * longer (only torch's legacy magic number) stays raw. */
static gpt2c_status push_long(vm *m, size_t nbytes) {
    if (!need(m, nbytes)) return fail(m, "truncated integer");
    const unsigned char *b = m->p;
    m->p += nbytes;
    if (nbytes > 8) {
        pk_value *v = new_value(m, PK_BIGINT);
        if (v) v->s = b, v->len = nbytes;
        return push(m, v);
    }
    uint64_t u = nbytes ? read_le(b, (int)nbytes) : 0;
    if (nbytes && nbytes < 8 && (b[nbytes - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * nbytes);
    return push_int(m, (int64_t)u);
}

static gpt2c_status push_str(vm *m, size_t len) {
    if (!need(m, len)) return fail(m, "string runs past the end");
    pk_value *v = new_value(m, PK_STR);
    if (v) v->s = m->p, v->len = len;
    m->p += len;
    return push(m, v);
}

static gpt2c_status memo_put(vm *m, uint64_t idx) {
    if (m->sp == 0 || m->stack[m->sp - 1]->kind == PK_MARK) return fail(m, "memo of an empty stack");
    if (idx >= PK_MAX_MEMO) return fail(m, "memo index beyond any state dict's");
    if (idx >= m->memo_cap) {
        size_t cap = m->memo_cap ? m->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        pk_value **mm = realloc(m->memo, cap * sizeof *mm);
        if (!mm) return err_set(m->e, GPT2C_ERR_NOMEM, "%s: out of memory unpickling", m->path);
        memset(mm + m->memo_cap, 0, (cap - m->memo_cap) * sizeof *mm);
        m->memo = mm;
        m->memo_cap = cap;
    }
    m->memo_n += !m->memo[idx];
    m->memo[idx] = m->stack[m->sp - 1];
    return GPT2C_OK;
}

static gpt2c_status memo_get(vm *m, uint64_t idx) {
    if (idx >= m->memo_cap || !m->memo[idx]) return fail(m, "memo lookup of an index never stored");
    return push(m, m->memo[idx]);
}

/* Pops everything above the topmost MARK into a new container. */
static gpt2c_status collect(vm *m, pk_value *c) {
    long mk = find_mark(m);
    if (mk < 0 || !c) return m->e->status;
    for (size_t i = (size_t)mk + 1; i < m->sp; i++) {
        gpt2c_status s = add_item(m, c, m->stack[i]);
        if (s) return s;
    }
    m->sp = (size_t)mk;
    return push(m, c);
}

static gpt2c_status push_tuple(vm *m, size_t k) {
    if (m->sp < k) return fail(m, "stack underflow");
    for (size_t i = m->sp - k; i < m->sp; i++)
        if (m->stack[i]->kind == PK_MARK) return fail(m, "stack underflow");
    pk_value *t = new_value(m, PK_TUPLE);
    if (!t) return m->e->status;
    for (size_t i = m->sp - k; i < m->sp; i++) {
        gpt2c_status s = add_item(m, t, m->stack[i]);
        if (s) return s;
    }
    m->sp -= k;
    return push(m, t);
}

/* APPEND(S) and SETITEM(S): the items above the mark (or the top one or
 * two) go into the container below them. */
static gpt2c_status fill(vm *m, pk_kind want, size_t from) {
    if (from == 0) return fail(m, "stack underflow");
    pk_value *c = m->stack[from - 1];
    if (c->kind != want) return fail(m, want == PK_DICT ? "SETITEM on something not a dict" : "APPEND on something not a list");
    if (want == PK_DICT && (m->sp - from) % 2) return fail(m, "SETITEMS with an odd number of items");
    for (size_t i = from; i < m->sp; i++) {
        if (m->stack[i]->kind == PK_MARK) return fail(m, "a MARK among the items");
        if (want == PK_DICT && i % 2 == from % 2 && m->stack[i]->kind != PK_STR && m->stack[i]->kind != PK_INT)
            return fail(m, "a dict key that is neither a string nor an integer");
        gpt2c_status s = add_item(m, c, m->stack[i]);
        if (s) return s;
    }
    m->sp = from;
    return GPT2C_OK;
}

static gpt2c_status global(vm *m, const unsigned char *mod, size_t mlen, const unsigned char *name, size_t nlen) {
    for (size_t i = 0; i < sizeof ALLOWED / sizeof ALLOWED[0]; i++)
        if (strlen(ALLOWED[i].module) == mlen && !memcmp(ALLOWED[i].module, mod, mlen) &&
            strlen(ALLOWED[i].name) == nlen && !memcmp(ALLOWED[i].name, name, nlen)) {
            pk_value *v = new_value(m, PK_GLOBAL);
            if (v) v->i = ALLOWED[i].g, v->dtype = ALLOWED[i].dtype;
            return push(m, v);
        }
    /* Printable in the message whatever the bytes are. */
    char shown[128];
    size_t k = 0;
    for (size_t i = 0; i < mlen + 1 + nlen && k < sizeof shown - 4; i++) {
        unsigned char c = i < mlen ? mod[i] : i == mlen ? '.' : name[i - mlen - 1];
        shown[k++] = c >= 32 && c < 127 && c != '\'' ? (char)c : '?';
    }
    shown[k] = '\0';
    return err_set(m->e, GPT2C_ERR_UNSUPPORTED, "%s: refusing to load global '%s' (not a tensor or a state dict)",
                   m->path, shown);
}

static int is_int_tuple(const pk_value *v, size_t max) {
    if (v->kind != PK_TUPLE || v->n > max) return 0;
    for (size_t i = 0; i < v->n; i++)
        if (v->items[i]->kind != PK_INT) return 0;
    return 1;
}

/* torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
 * requires_grad, backward_hooks[, metadata]) and the older
 * _rebuild_tensor(storage, offset, size, stride): a view of a storage. */
static pk_value *rebuild_tensor(vm *m, pk_value *args, int v2) {
    pk_value **a = args->items;
    if (args->n < 4 || (v2 && (args->n < 6 || args->n > 7)) || (!v2 && args->n != 4) || a[0]->kind != PK_STORAGE ||
        a[1]->kind != PK_INT || !is_int_tuple(a[2], ST_MAX_DIMS) || !is_int_tuple(a[3], ST_MAX_DIMS) ||
        a[2]->n != a[3]->n) {
        fail(m, "_rebuild_tensor with arguments other than (storage, offset, size, stride, ...)");
        return NULL;
    }
    pk_value *t = new_value(m, PK_TENSOR);
    if (!t) return NULL;
    t->storage = a[0];
    t->offset = a[1]->i;
    t->ndim = (int)a[2]->n;
    t->size = calloc((size_t)t->ndim + 1, sizeof *t->size);
    t->stride = calloc((size_t)t->ndim + 1, sizeof *t->stride);
    if (!t->size || !t->stride) {
        err_set(m->e, GPT2C_ERR_NOMEM, "%s: out of memory unpickling", m->path);
        return NULL;
    }
    for (int i = 0; i < t->ndim; i++) t->size[i] = a[2]->items[i]->i, t->stride[i] = a[3]->items[i]->i;
    return t;
}

/* REDUCE: calling an allowed global, each with the one meaning it has in a
 * checkpoint. */
static gpt2c_status reduce(vm *m) {
    pk_value *args = pop(m), *f = pop(m), *r = NULL;
    if (!args || !f) return m->e->status;
    if (args->kind != PK_TUPLE) return fail(m, "REDUCE arguments are not a tuple");
    if (f->kind != PK_GLOBAL) return fail(m, "REDUCE of something not callable");
    switch ((pk_global)f->i) {
    case PG_ORDERED_DICT:
        if (args->n != 0) return fail(m, "OrderedDict called with arguments");
        r = new_value(m, PK_DICT);
        break;
    case PG_REBUILD_TENSOR:
    case PG_REBUILD_TENSOR_V2:
        r = rebuild_tensor(m, args, f->i == PG_REBUILD_TENSOR_V2);
        break;
    case PG_REBUILD_PARAMETER: /* (data, requires_grad, backward_hooks): the data */
        if (args->n != 3 || args->items[0]->kind != PK_TENSOR) return fail(m, "_rebuild_parameter without a tensor");
        r = args->items[0];
        break;
    case PG_DEVICE: /* torch.device("cpu"): only ever a location, which does not matter here */
        r = new_value(m, PK_NONE);
        break;
    case PG_STORAGE_TYPE:
    case PG_DTYPE:
        return fail(m, "a storage type or dtype called as a function");
    }
    return push(m, r);
}

/* BINPERSID: torch's reference to a storage saved outside the pickle. */
static gpt2c_status persistent(vm *m) {
    pk_value *id = pop(m);
    if (!id) return m->e->status;
    pk_value **a = id->items;
    if (id->kind == PK_TUPLE && id->n >= 1 && pk_str_is(a[0], "module"))
        return err_set(m->e, GPT2C_ERR_UNSUPPORTED, "%s: holds a pickled nn.Module, not a state dict", m->path);
    if (id->kind != PK_TUPLE || (id->n != 5 && id->n != 6) || !pk_str_is(a[0], "storage") || a[1]->kind != PK_GLOBAL ||
        a[1]->i != PG_STORAGE_TYPE || a[2]->kind != PK_STR || a[4]->kind != PK_INT ||
        a[4]->i < 0)
        return fail(m, "a persistent id other than ('storage', type, key, location, numel[, view])");
    pk_value *s = new_value(m, PK_STORAGE);
    if (!s) return m->e->status;
    s->dtype = a[1]->dtype;
    s->s = a[2]->s, s->len = a[2]->len; /* the key: the file's name in the zip, the order in the legacy format */
    s->i = a[4]->i;
    s->view_offset = s->view_numel = -1;
    if (id->n == 6 && a[5]->kind != PK_NONE) { /* legacy view: (view_key, offset, numel) of the root */
        pk_value *v = a[5];
        if (v->kind != PK_TUPLE || v->n != 3 || v->items[1]->kind != PK_INT || v->items[2]->kind != PK_INT ||
            v->items[1]->i < 0 || v->items[2]->i < 0)
            return fail(m, "a storage view other than (key, offset, numel)");
        s->view_offset = v->items[1]->i;
        s->view_numel = v->items[2]->i;
    }
    return push(m, s);
}

static gpt2c_status step(vm *m, int op, int *stop) {
    gpt2c_status s = GPT2C_OK;
    pk_value *v;
    switch (op) {
    case 0x80: /* PROTO */
        if (!need(m, 1)) return fail(m, "truncated PROTO");
        if (*m->p > 5) return fail(m, "unknown pickle protocol");
        m->p++;
        return GPT2C_OK;
    case 0x95: /* FRAME: a length hint only */
        if (!need(m, 8)) return fail(m, "truncated FRAME");
        m->p += 8;
        return GPT2C_OK;
    case '.': *stop = 1; return GPT2C_OK;
    case '(': return push(m, new_value(m, PK_MARK));
    case '0': return pop(m) ? GPT2C_OK : m->e->status;
    case '1': { long mk = find_mark(m); if (mk < 0) return m->e->status; m->sp = (size_t)mk; return GPT2C_OK; }
    case '2':
        if (m->sp == 0 || m->stack[m->sp - 1]->kind == PK_MARK) return fail(m, "DUP of an empty stack");
        return push(m, m->stack[m->sp - 1]);
    case 'N': return push(m, new_value(m, PK_NONE));
    case 0x88: case 0x89:
        if ((v = new_value(m, PK_BOOL))) v->i = op == 0x88;
        return push(m, v);
    case 'J': if (!need(m, 4)) return fail(m, "truncated BININT"); s = push_int(m, (int32_t)read_le(m->p, 4)); m->p += 4; return s;
    case 'K': if (!need(m, 1)) return fail(m, "truncated BININT1"); s = push_int(m, m->p[0]); m->p += 1; return s;
    case 'M': if (!need(m, 2)) return fail(m, "truncated BININT2"); s = push_int(m, (int64_t)read_le(m->p, 2)); m->p += 2; return s;
    case 0x8a: if (!need(m, 1)) return fail(m, "truncated LONG1"); m->p++; return push_long(m, m->p[-1]);
    case 0x8b:
        if (!need(m, 4)) return fail(m, "truncated LONG4");
        if (read_le(m->p, 4) > 64) return fail(m, "an integer longer than 64 bytes");
        m->p += 4;
        return push_long(m, (size_t)read_le(m->p - 4, 4));
    case 'G': {
        if (!need(m, 8)) return fail(m, "truncated BINFLOAT");
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = u << 8 | m->p[i]; /* big-endian */
        if ((v = new_value(m, PK_FLOAT))) memcpy(&v->f, &u, sizeof v->f);
        m->p += 8;
        return push(m, v);
    }
    /* Strings and bytes (a state dict's keys; Python 2's str is bytes). */
    case 'X': case 'T': case 'B':
        if (!need(m, 4)) return fail(m, "truncated string length");
        m->p += 4;
        return push_str(m, (size_t)read_le(m->p - 4, 4));
    case 0x8c: case 'U': case 'C':
        if (!need(m, 1)) return fail(m, "truncated string length");
        m->p += 1;
        return push_str(m, m->p[-1]);
    case 0x8d: case 0x8e:
        if (!need(m, 8)) return fail(m, "truncated string length");
        m->p += 8;
        if (read_le(m->p - 8, 8) > (uint64_t)(m->end - m->p)) return fail(m, "string runs past the end");
        return push_str(m, (size_t)read_le(m->p - 8, 8));
    case '}': return push(m, new_value(m, PK_DICT));
    case ']': return push(m, new_value(m, PK_LIST));
    case ')': return push(m, new_value(m, PK_TUPLE));
    case 't': return collect(m, new_value(m, PK_TUPLE));
    case 'l': return collect(m, new_value(m, PK_LIST));
    case 'd': {
        long mk = find_mark(m);
        if (mk < 0 || !(v = new_value(m, PK_DICT))) return m->e->status;
        m->stack[mk] = v; /* the mark's place becomes the dict the items fill */
        if ((s = fill(m, PK_DICT, (size_t)mk + 1))) return s;
        return GPT2C_OK;
    }
    case 0x85: case 0x86: case 0x87: return push_tuple(m, (size_t)(op - 0x84));
    case 'a': return m->sp < 2 ? fail(m, "stack underflow") : fill(m, PK_LIST, m->sp - 1);
    case 's': return m->sp < 3 ? fail(m, "stack underflow") : fill(m, PK_DICT, m->sp - 2);
    case 'e': case 'u': {
        long mk = find_mark(m);
        if (mk < 0) return m->e->status;
        /* The container sits just below the mark: take the mark out first. */
        memmove(m->stack + mk, m->stack + mk + 1, (m->sp - (size_t)mk - 1) * sizeof *m->stack);
        m->sp--;
        return fill(m, op == 'e' ? PK_LIST : PK_DICT, (size_t)mk);
    }
    case 'q': if (!need(m, 1)) return fail(m, "truncated BINPUT"); m->p++; return memo_put(m, m->p[-1]);
    case 'r': if (!need(m, 4)) return fail(m, "truncated LONG_BINPUT"); m->p += 4; return memo_put(m, read_le(m->p - 4, 4));
    case 0x94: return memo_put(m, m->memo_n); /* MEMOIZE: the next index */
    case 'h': if (!need(m, 1)) return fail(m, "truncated BINGET"); m->p++; return memo_get(m, m->p[-1]);
    case 'j': if (!need(m, 4)) return fail(m, "truncated LONG_BINGET"); m->p += 4; return memo_get(m, read_le(m->p - 4, 4));
    case 'c': { /* GLOBAL "module\nname\n" */
        const unsigned char *mod = m->p, *nl1 = memchr(m->p, '\n', (size_t)(m->end - m->p));
        const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(m->end - nl1 - 1)) : NULL;
        if (!nl2) return fail(m, "truncated GLOBAL");
        m->p = nl2 + 1;
        return global(m, mod, (size_t)(nl1 - mod), nl1 + 1, (size_t)(nl2 - nl1 - 1));
    }
    case 0x93: { /* STACK_GLOBAL */
        pk_value *name = pop(m), *mod = name ? pop(m) : NULL;
        if (!mod) return m->e->status;
        if (mod->kind != PK_STR || name->kind != PK_STR) return fail(m, "STACK_GLOBAL of non-strings");
        return global(m, mod->s, mod->len, name->s, name->len);
    }
    case 'R': return reduce(m);
    case 'Q': return persistent(m);
    case 'b': { /* BUILD: only an OrderedDict's attributes (_metadata), which are dropped */
        pk_value *state = pop(m);
        if (!state) return m->e->status;
        if (m->sp == 0 || m->stack[m->sp - 1]->kind != PK_DICT) return fail(m, "BUILD of something not a dict");
        return GPT2C_OK;
    }
    default: {
        char what[96];
        snprintf(what, sizeof what, "opcode 0x%02x is not allowed in a checkpoint", (unsigned)op);
        return fail(m, what);
    }
    }
}

gpt2c_status pk_load(pk_heap *h, const unsigned char *p, size_t n, const char *path, pk_value **out, size_t *used,
                     gpt2_err *e) {
    vm m = {.h = h, .p = p, .start = p, .end = p + n, .path = path, .e = e};
    gpt2c_status s = GPT2C_OK;
    int stop = 0;
    *out = NULL;
    while (!s && !stop) {
        if (m.p == m.end) {
            s = fail(&m, "ends without STOP: truncated?");
            break;
        }
        int op = *m.p++;
        s = step(&m, op, &stop);
    }
    if (!s && (m.sp != 1 || m.stack[0]->kind == PK_MARK)) s = fail(&m, "STOP with other than one object on the stack");
    if (!s) *out = m.stack[0];
    if (used) *used = (size_t)(m.p - m.start);
    free(m.stack);
    free(m.memo);
    return s;
}

void pk_free(pk_heap *h) {
    for (pk_value *v = h->all, *next; v; v = next) {
        next = v->next;
        free(v->items);
        free(v->size);
        free(v->stride);
        free(v);
    }
    memset(h, 0, sizeof *h);
}
