/* model.c -- loading a checkpoint folder for any architecture: config.json
 * (and generation_config.json when present) chooses the architecture by
 * model_type and gives the shapes and the math; the weight files are mapped
 * into memory (weights.h) and every tensor an architecture takes is checked
 * against the config before the forward pass may touch it, recorded for
 * conversion to another dtype and for writing the model back. */
#include "model.h"

#include <jansson.h>
#include <math.h>
#include <strings.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "../core/mem.h"
#include "../core/half.h"
#include "weights.h"

/* The architectures, by config.json's model_type. */
static const gpt2_arch *const ARCHS[] = {&arch_gpt2,  &arch_gpt_neo,     &arch_opt,    &arch_gpt_neox,
                                          &arch_bloom, &arch_gpt_bigcode, &arch_codegen};
#define N_ARCHS (int)(sizeof ARCHS / sizeof *ARCHS)

/* Reads an optional integer field; absent and null keep *out. */
gpt2c_status cfg_int(json_t *root, const char *path, const char *key, long lo, long hi, int *out, gpt2_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return GPT2C_OK;
    if (!json_is_integer(v))
        return err_set(e, GPT2C_ERR_FORMAT, "%s: field '%s' must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: field '%s' = %lld is outside [%ld, %ld]", path, key,
                       (long long)x, lo, hi);
    *out = (int)x;
    return GPT2C_OK;
}

gpt2c_status cfg_bool(json_t *root, const char *path, const char *key, int *out, gpt2_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return GPT2C_OK;
    if (!json_is_boolean(v)) return err_set(e, GPT2C_ERR_FORMAT, "%s: field '%s' must be true or false", path, key);
    *out = json_is_true(v);
    return GPT2C_OK;
}

gpt2c_status cfg_float(json_t *root, const char *path, const char *key, double lo, double hi, float *out,
                       gpt2_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return GPT2C_OK;
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi))
        return err_set(e, GPT2C_ERR_FORMAT, "%s: field '%s' must be a number in [%g, %g]", path, key, lo, hi);
    *out = (float)json_number_value(v);
    return GPT2C_OK;
}

gpt2c_status cfg_act(json_t *root, const char *path, const char *key, gpt2_act *out, gpt2_err *e) {
    json_t *act = json_object_get(root, key);
    if (!act || json_is_null(act)) return GPT2C_OK;
    if (!json_is_string(act)) return err_set(e, GPT2C_ERR_FORMAT, "%s: field '%s' must be a string", path, key);
    const char *a = json_string_value(act);
    /* gelu_fast and gelu_pytorch_tanh compute the same tanh curve as
     * gelu_new, in a different order of operations. */
    if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_fast")) *out = ACT_GELU_TANH;
    else if (!strcmp(a, "gelu")) *out = ACT_GELU_ERF;
    else if (!strcmp(a, "relu")) *out = ACT_RELU;
    else return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: %s '%.40s' is not supported", path, key, a);
    return GPT2C_OK;
}

gpt2c_status cfg_check(const char *path, gpt2_config *c, const char *embd_key, const char *head_key, gpt2_err *e) {
    if (c->n_embd % c->n_head != 0)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: %s %d is not divisible by %s %d", path, embd_key, c->n_embd, head_key,
                       c->n_head);
    if (c->n_inner == 0) c->n_inner = 4 * c->n_embd;
    if (c->n_kv_head == 0) c->n_kv_head = c->n_head;
    if (c->n_proj == 0) c->n_proj = c->n_embd;
    return GPT2C_OK;
}

/* Token ids may be an integer or a list (several EOS ids): gpt2c uses the
 * first of a list. An id outside the vocabulary is what many real configs
 * hold (GPT2Config's default 50256 kept by a model with its own small
 * vocabulary); transformers never uses such an id unless generation needs
 * it, and a token that cannot be generated is a token that never comes: it
 * reads as unset, so an EOS that never comes ends nothing, and an empty
 * prompt, which needs a start token, is refused. */
static gpt2c_status cfg_token(json_t *root, const char *path, const char *key, int n_vocab, int *out,
                              gpt2_err *e) {
    json_t *v = json_object_get(root, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!v || json_is_null(v)) return GPT2C_OK;
    if (!json_is_integer(v)) return err_set(e, GPT2C_ERR_FORMAT, "%s: field '%s' must be a token id", path, key);
    json_int_t id = json_integer_value(v);
    *out = id >= 0 && id < n_vocab ? (int)id : -1;
    return GPT2C_OK;
}

/* config.json and generation_config.json are small: a bound on their size. */
#define CONFIG_MAX_BYTES (16u << 20)

/* model_type chooses the architecture; a config without one is GPT-2's
 * (the oldest hub files). */
static gpt2c_status parse_config(json_t *r, const char *path, const gpt2_arch **arch, gpt2_config *c, gpt2_err *e) {
    json_t *mt = json_object_get(r, "model_type");
    if (mt && !json_is_string(mt)) return err_set(e, GPT2C_ERR_FORMAT, "%s: field 'model_type' must be a string", path);
    const char *type = mt ? json_string_value(mt) : "gpt2";
    *arch = NULL;
    for (int i = 0; i < N_ARCHS; i++)
        if (!strcmp(ARCHS[i]->model_type, type)) *arch = ARCHS[i];
    if (!*arch) {
        char list[128] = "";
        for (int i = 0; i < N_ARCHS; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", ARCHS[i]->model_type);
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "%s: model_type '%.40s' is not supported (supported: %s)", path, type,
                       list);
    }
    *c = (gpt2_config){.eps = 1e-5f, .bos_id = -1, .eos_id = -1, .pad_id = -1};
    gpt2c_status s;
    if ((s = (*arch)->config(r, path, c, e)) ||
        (s = cfg_token(r, path, "bos_token_id", c->n_vocab, &c->bos_id, e)) ||
        (s = cfg_token(r, path, "eos_token_id", c->n_vocab, &c->eos_id, e)) ||
        (s = cfg_token(r, path, "pad_token_id", c->n_vocab, &c->pad_id, e)))
        return s;
    return GPT2C_OK;
}

static gpt2c_status gen_number(json_t *o, const char *path, const char *key, double lo, double hi, float *out,
                               gpt2_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return GPT2C_OK;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi)
        return err_set(e, GPT2C_ERR_FORMAT, "%s: field '%s' must be a number in [%g, %g]", path, key, lo, hi);
    *out = (float)json_number_value(v);
    return GPT2C_OK;
}

/* The generation fields transformers reads from a config, by name. */
static gpt2c_status parse_gen_fields(json_t *o, const char *path, int n_vocab, gpt2c_gen_params *p, gpt2_err *e) {
    if (!json_is_object(o)) return GPT2C_OK;
    gpt2c_status s;
    int early = p->early_stopping;
    json_t *es = json_object_get(o, "early_stopping");
    if (json_is_string(es) && strcmp(json_string_value(es), "never") == 0) json_object_del(o, "early_stopping");
    if ((s = cfg_int(o, path, "max_length", 1, GPT2_MAX_CTX, &p->max_length, e)) ||
        (s = cfg_int(o, path, "max_new_tokens", 0, GPT2_MAX_CTX, &p->max_new_tokens, e)) ||
        (s = cfg_int(o, path, "min_length", 0, GPT2_MAX_CTX, &p->min_length, e)) ||
        (s = cfg_int(o, path, "min_new_tokens", 0, GPT2_MAX_CTX, &p->min_new_tokens, e)) ||
        (s = cfg_bool(o, path, "do_sample", &p->do_sample, e)) ||
        (s = gen_number(o, path, "temperature", 0, 1e6, &p->temperature, e)) ||
        (s = cfg_int(o, path, "top_k", 0, n_vocab, &p->top_k, e)) ||
        (s = gen_number(o, path, "top_p", 0, 1, &p->top_p, e)) ||
        (s = gen_number(o, path, "typical_p", 0, 1, &p->typical_p, e)) ||
        (s = gen_number(o, path, "repetition_penalty", 0, 1e6, &p->repetition_penalty, e)) ||
        (s = cfg_int(o, path, "no_repeat_ngram_size", 0, GPT2_MAX_CTX, &p->no_repeat_ngram_size, e)) ||
        (s = cfg_int(o, path, "num_beams", 1, 1024, &p->num_beams, e)) ||
        (s = gen_number(o, path, "length_penalty", -1e6, 1e6, &p->length_penalty, e)) ||
        (s = cfg_bool(o, path, "early_stopping", &early, e)) ||
        (s = cfg_int(o, path, "num_return_sequences", 1, 1024, &p->num_return_sequences, e)))
        return s;
    p->early_stopping = early;
    return GPT2C_OK;
}

gpt2c_status gpt2_config_load(const char *dir, const gpt2_arch **arch, gpt2_config *c, gpt2c_gen_params gen[2],
                              gpt2_err *e) {
    char *path = path_join(dir, "config.json");
    if (!path) return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    json_t *root, *task = NULL;
    gpt2c_gen_params_init(&gen[0]);
    gpt2c_status s = file_read_json(path, CONFIG_MAX_BYTES, &root, e);
    if (s == GPT2C_OK) {
        s = parse_config(root, path, arch, c, e);
        /* Old checkpoints keep generation fields in config.json itself. */
        if (s == GPT2C_OK) s = parse_gen_fields(root, path, c->n_vocab, &gen[0], e);
        task = json_object_get(json_object_get(root, "task_specific_params"), "text-generation");
        json_incref(task);
        json_decref(root);
    }
    free(path);
    /* generation_config.json, when present, overrides the special ids and
     * the generation defaults. */
    path = s ? NULL : path_join(dir, "generation_config.json");
    if (s == GPT2C_OK && !path) s = err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    if (s == GPT2C_OK && file_exists(path) && (s = file_read_json(path, CONFIG_MAX_BYTES, &root, e)) == GPT2C_OK) {
        if (!(s = cfg_token(root, path, "bos_token_id", c->n_vocab, &c->bos_id, e)) &&
            !(s = cfg_token(root, path, "eos_token_id", c->n_vocab, &c->eos_id, e)) &&
            !(s = cfg_token(root, path, "pad_token_id", c->n_vocab, &c->pad_id, e)))
            s = parse_gen_fields(root, path, c->n_vocab, &gen[0], e);
        json_decref(root);
    }
    free(path);
    /* The text-generation pipeline applies task_specific_params on top. */
    gen[1] = gen[0];
    if (s == GPT2C_OK && task) s = parse_gen_fields(task, "config.json: task_specific_params.text-generation",
                                                    c->n_vocab, &gen[1], e);
    json_decref(task);
    return s;
}

void gpt2c_model_gen_defaults(const gpt2c_model *m, gpt2c_defaults mode, gpt2c_gen_params *p) {
    *p = m->gen_defaults[mode == GPT2C_DEFAULTS_PIPELINE ? 1 : 0];
}

/* Finds a tensor by the architecture's name for it, or that name without
 * (or with) the architecture's prefix, in any shard; *file names the file
 * that holds it. */
static const st_tensor *find_tensor(const gpt2c_model *m, const char *name, const char **file) {
    const char *pre = m->arch->prefix;
    const size_t pl = strlen(pre);
    char alt[256];
    if (strncmp(name, pre, pl) == 0) snprintf(alt, sizeof alt, "%s", name + pl);
    else snprintf(alt, sizeof alt, "%s%s", pre, name);
    for (int i = 0; i < m->n_st; i++) {
        const st_tensor *t = st_find(&m->st[i], name);
        if (!t) t = st_find(&m->st[i], alt);
        if (t) {
            if (file) *file = m->st[i].path;
            return t;
        }
    }
    return NULL;
}

int model_has(const gpt2c_model *m, const char *name) { return find_tensor(m, name, NULL) != NULL; }

static void *own(gpt2c_model *m, size_t bytes) {
    void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
    if (!owned) return NULL;
    m->owned = owned;
    void *p = mem_alloc(bytes);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

void *model_own(gpt2c_model *m, size_t bytes) {
    void *p = own(m, bytes);
    if (!p) err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
    return p;
}

/* Finds a tensor and checks its shape and dtype against config.json. */
static gpt2c_status find_checked(gpt2c_model *m, const char *name, int d0, int d1, const st_tensor **out,
                                 const char **path) {
    *path = m->weights_path;
    const st_tensor *t = find_tensor(m, name, path);
    if (!t) return err_set(&m->err, GPT2C_ERR_FORMAT, "%s: tensor '%s' is missing", *path, name);
    int want_dims = d1 > 0 ? 2 : 1;
    if (t->ndim != want_dims || t->shape[0] != d0 || (d1 > 0 && t->shape[1] != d1)) {
        char got[128] = "";
        size_t o = 0;
        for (int i = 0; i < t->ndim && o < sizeof got - 24; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (d1 > 0)
            return err_set(&m->err, GPT2C_ERR_FORMAT, "%s: tensor '%s' has shape [%s], config.json implies [%d, %d]",
                           *path, name, got, d0, d1);
        return err_set(&m->err, GPT2C_ERR_FORMAT, "%s: tensor '%s' has shape [%s], config.json implies [%d]",
                       *path, name, got, d0);
    }
    /* (The projections and the head may also be I8: get_matrix takes those.) */
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return err_set(&m->err, GPT2C_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (supported: F32, F16, BF16)",
                       *path, name, st_dtype_name(t->dtype));
    *out = t;
    return GPT2C_OK;
}

static gpt2_wtype wtype_of(st_dtype d) {
    return d == ST_F32 ? WT_F32 : d == ST_F16 ? WT_F16 : d == ST_BF16 ? WT_BF16 : WT_Q8;
}

const char *wtype_name(gpt2_wtype t) {
    static const char *const names[] = {"F32", "F16", "BF16", "Q8", "BF16"}; /* BF16P: bf16 values, paired */
    return names[t];
}

/* The tensor's bytes in place, or a copy when the file misaligns them for
 * elements of `align` bytes. */
static gpt2c_status map_aligned(gpt2c_model *m, const st_tensor *t, size_t align, const char *path, const void **out) {
    *out = t->data;
    if ((uintptr_t)t->data % align == 0) return GPT2C_OK;
    void *copy = own(m, t->nbytes);
    if (!copy) return err_set(&m->err, GPT2C_ERR_NOMEM, "%s: out of memory copying '%s'", path, t->name);
    memcpy(copy, t->data, t->nbytes);
    *out = copy;
    return GPT2C_OK;
}

/* The Q8 form of a matrix: an I8 tensor of the packed values, one row per
 * group of 16 columns, shape (padded dout / 16, din * 16), and an F16
 * tensor NAME_scale of shape (padded dout / 16, din / 2), as
 * gpt2c_model_save writes them (kernels.h has the layout). */
static gpt2c_status get_q8(gpt2c_model *m, const char *name, const st_tensor *t, const char *path, int din, int dout,
                           gpt2_weight *out) {
    const int64_t groups = (int64_t)q8_padded((size_t)dout) / GPT2_Q8_GROUP;
    const int64_t row = (int64_t)din * GPT2_Q8_GROUP, srow = (int64_t)din / GPT2_Q8_BLOCK * GPT2_Q8_GROUP;
    char sname[112];
    snprintf(sname, sizeof sname, "%s_scale", name);
    const st_tensor *sc = find_tensor(m, sname, NULL);
    if (din % GPT2_Q8_BLOCK != 0 || t->ndim != 2 || t->shape[0] != groups || t->shape[1] != row)
        return err_set(&m->err, GPT2C_ERR_FORMAT,
                       "%s: I8 tensor '%s' must hold a %d x %d matrix packed as gpt2c convert writes it, shape "
                       "[%lld, %lld]", path, name, din, dout, (long long)groups, (long long)row);
    if (!sc || sc->dtype != ST_F16 || sc->ndim != 2 || sc->shape[0] != groups || sc->shape[1] != srow)
        return err_set(&m->err, GPT2C_ERR_FORMAT,
                       "%s: I8 tensor '%s' needs its block scales, an F16 tensor '%s' of shape [%lld, %lld]%s", path,
                       name, sname, (long long)groups, (long long)srow, sc ? "" : " (missing)");
    out->type = WT_Q8;
    out->rows = din;
    out->cols = dout;
    const void *p;
    gpt2c_status s = map_aligned(m, sc, 2, path, &p);
    out->scales = p;
    return s ? s : map_aligned(m, t, 1, path, &out->data);
}

/* Records a tensor the model took (gpt2_tensor). */
static gpt2c_status record(gpt2c_model *m, const char *name, int d0, int d1, mat_use use, gpt2_weight *w,
                           const float **v) {
    gpt2_tensor *t = realloc(m->tensors, (size_t)(m->n_tensors + 1) * sizeof *t);
    if (!t) return err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
    m->tensors = t;
    t += m->n_tensors++;
    *t = (gpt2_tensor){.d0 = d0, .d1 = d1, .use = use, .w = w, .v = v};
    snprintf(t->name, sizeof t->name, "%s", name);
    return GPT2C_OK;
}

/* A matrix stays in its stored dtype, read straight from the map. */
static gpt2c_status get_matrix(gpt2c_model *m, const char *name, int d0, int d1, mat_use use, gpt2_weight *out) {
    const char *path = m->weights_path;
    const st_tensor *t = find_tensor(m, name, &path);
    *out = (gpt2_weight){.linear = use == MAT_LINEAR};
    if (t && t->dtype == ST_I8 && use != MAT_PLAIN)
        return use == MAT_LINEAR ? get_q8(m, name, t, path, d1, d0, out) : get_q8(m, name, t, path, d0, d1, out);
    gpt2c_status s = find_checked(m, name, d0, d1, &t, &path);
    if (s) return s;
    out->type = wtype_of(t->dtype);
    return map_aligned(m, t, weight_type_size(out->type), path, &out->data);
}

gpt2c_status model_matrix(gpt2c_model *m, const char *name, int d0, int d1, mat_use use, gpt2_weight *out) {
    gpt2c_status s = get_matrix(m, name, d0, d1, use, out);
    return s ? s : record(m, name, d0, d1, use, out, NULL);
}

/* A vector (biases, LayerNorm) as f32: the map itself for aligned F32, a
 * widened copy otherwise. They are small. */
gpt2c_status model_vector(gpt2c_model *m, const char *name, int d0, const float **out) {
    gpt2_weight w;
    gpt2c_status s = get_matrix(m, name, d0, 0, MAT_PLAIN, &w);
    if (s) return s;
    if (w.type == WT_F32) {
        *out = w.data;
    } else {
        float *f = own(m, (size_t)d0 * sizeof *f);
        if (!f) return err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory converting '%s'", name);
        weight_to_f32(w, 0, (size_t)d0, f);
        *out = f;
    }
    return record(m, name, d0, 0, MAT_PLAIN, NULL, out);
}

gpt2c_status model_head(gpt2c_model *m, const char *name, int tied) {
    m->lm_head = m->wte;
    const st_tensor *t = find_tensor(m, name, NULL);
    if (tied || (t && t->data == m->wte.data)) return GPT2C_OK;
    return model_matrix(m, name, m->cfg.n_vocab, m->cfg.n_proj, MAT_LINEAR, &m->lm_head);
}

gpt2c_status model_embedding_head(gpt2c_model *m, const char *wte, const char *head) {
    const gpt2_config *c = &m->cfg;
    gpt2c_status s = model_matrix(m, wte, c->n_vocab, c->n_proj, c->tied ? MAT_LINEAR : MAT_PLAIN, &m->wte);
    return s ? s : model_head(m, head, c->tied);
}

gpt2c_status model_no_extra_layer(gpt2c_model *m, const char *fmt) {
    char n[128];
    snprintf(n, sizeof n, fmt, m->cfg.n_layer);
    if (model_has(m, n))
        return err_set(&m->err, GPT2C_ERR_FORMAT, "%s: has a layer %d: more layers than config.json's %d",
                       m->weights_path, m->cfg.n_layer, m->cfg.n_layer);
    return GPT2C_OK;
}

static int dim_size(const gpt2_config *c, gpt2_dim d) {
    switch (d) {
    case DIM_C: return c->n_embd;
    case DIM_3C: return 3 * c->n_embd;
    case DIM_F: return c->n_inner;
    case DIM_QKV: return c->n_embd + 2 * gpt2_kv_width(c);
    case DIM_NONE: break;
    }
    return 0;
}

gpt2c_status model_layers(gpt2c_model *m, const char *prefix, const layer_tensor *t, int n) {
    char name[128];
    gpt2c_status s;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const int at = snprintf(name, sizeof name, prefix, l);
        for (int i = 0; i < n; i++) {
            snprintf(name + at, sizeof name - (size_t)at, "%s", t[i].name);
            char *field = (char *)&m->layers[l] + t[i].field;
            const int d0 = dim_size(&m->cfg, t[i].d0), d1 = dim_size(&m->cfg, t[i].d1);
            s = t[i].d1 == DIM_NONE ? model_vector(m, name, d0, (const float **)(void *)field)
                                    : model_matrix(m, name, d0, d1, t[i].use, (gpt2_weight *)(void *)field);
            if (s) return s;
        }
    }
    snprintf(name, sizeof name, "%s%s", prefix, t[0].name);
    return model_no_extra_layer(m, name);
}

/* Bytes of one (din, dout) matrix as held: values, plus Q8's padding and
 * scales. */
static size_t matrix_bytes(gpt2_weight w, size_t din, size_t dout) {
    if (w.type == WT_Q8) return din * q8_padded(dout) + din / GPT2_Q8_BLOCK * q8_padded(dout) * 2;
    if (w.type == WT_BF16P) return din * bf16p_padded(dout) * 2;
    return din * dout * weight_type_size(w.type);
}

/* The bytes of matrices one decoded token reads: every product's, the
 * head's among them; not the embeddings', of which it reads a row (an
 * untied token embedding is only that). */
static size_t bytes_per_token(const gpt2c_model *m) {
    size_t b = 0;
    const int tied = m->lm_head.data == m->wte.data;
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        if (!t->w || t->use == MAT_PLAIN || (t->w == &m->wte && !tied)) continue;
        const size_t din = (size_t)(t->use == MAT_LINEAR ? t->d1 : t->d0), dout = (size_t)(t->use == MAT_LINEAR ? t->d0 : t->d1);
        b += matrix_bytes(*t->w, din, dout);
    }
    return b;
}

/* Rows [k0, k0 + nk) of the product matrix W of a stored (d0, d1) matrix
 * used as `use`, widened into out (nk, dout); tmp holds nk floats. */
static void product_rows(gpt2_weight w, mat_use use, size_t d0, size_t d1, size_t k0, size_t nk, float *out,
                         float *tmp) {
    if (use != MAT_LINEAR || weight_holds_w(w)) { /* W is the stored matrix, or is held as such */
        const size_t dout = use == MAT_LINEAR ? d0 : d1;
        weight_to_f32(w, k0 * dout, nk * dout, out);
        return;
    }
    for (size_t j = 0; j < d0; j++) { /* the head's W is the stored (V, C) matrix transposed */
        weight_to_f32(w, j * d1 + k0, nk, tmp);
        for (size_t k = 0; k < nk; k++) out[k * d0 + j] = tmp[k];
    }
}

/* Re-encodes a stored (d0, d1) matrix as `to` into memory the model owns,
 * going over its product matrix W (din, dout) 32 rows at a time. Q8: per
 * block of 32 k of a column, scale = absmax / 127 kept as f16, q =
 * round-half-even(x / scale) -- the common 8-bit scheme -- packed as
 * kernels.h describes; BF16P is W's k pairs (kernels.h); other types keep
 * the stored orientation. */
static gpt2c_status convert_matrix(gpt2c_model *m, gpt2_weight *w, size_t d0, size_t d1, mat_use use, gpt2_wtype to,
                                   const char *what) {
    if (w->type == to) return GPT2C_OK;
    const size_t din = use == MAT_LINEAR ? d1 : d0, dout = use == MAT_LINEAR ? d0 : d1, dpad = q8_padded(dout);
    if (to == WT_Q8 && din % GPT2_Q8_BLOCK != 0)
        return err_set(&m->err, GPT2C_ERR_UNSUPPORTED, "q8 needs a multiple of %d inputs; %s has %zu",
                       GPT2_Q8_BLOCK, what, din);
    if (to == WT_BF16P && din % 2 != 0)
        return err_set(&m->err, GPT2C_ERR_UNSUPPORTED, "compute bf16 needs an even number of inputs; %s has %zu",
                       what, din);
    gpt2_weight out = {.type = to, .rows = (int)din, .cols = (int)dout, .linear = w->linear};
    void *data = own(m, to == WT_Q8     ? din * dpad
                        : to == WT_BF16P ? din * bf16p_padded(dout) * 2
                                         : din * dout * weight_type_size(to));
    uint16_t *scales = to == WT_Q8 ? own(m, din / GPT2_Q8_BLOCK * dpad * 2) : NULL;
    float *strip = malloc(GPT2_Q8_BLOCK * dout * sizeof *strip), tmp[GPT2_Q8_BLOCK];
    if (!data || (to == WT_Q8 && !scales) || !strip) {
        free(strip);
        return err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory converting %s", what);
    }
    if (to == WT_Q8) { /* the padding columns: zeros */
        memset(data, 0, din * dpad);
        memset(scales, 0, din / GPT2_Q8_BLOCK * dpad * 2);
    }
    for (size_t k0 = 0; k0 < din; k0 += GPT2_Q8_BLOCK) {
        const size_t nk = din - k0 < GPT2_Q8_BLOCK ? din - k0 : GPT2_Q8_BLOCK;
        product_rows(*w, use, d0, d1, k0, nk, strip, tmp); // (nk, dout)
        if (to == WT_Q8) {
            for (size_t j = 0; j < dout; j++) {
                float amax = 0.0f;
                for (size_t k = 0; k < nk; k++) amax = fmaxf(amax, fabsf(strip[k * dout + j]));
                float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
                scales[q8_scale_index(k0, j, din)] = f32_to_f16(d);
                for (size_t k = 0; k < nk; k++)
                    ((int8_t *)data)[q8_index(k0 + k, j, din)] = (int8_t)lrintf(strip[k * dout + j] * id);
            }
            continue;
        }
        /* Row by row of W, the type tested once a row, not per element:
         * gpt2's conversion for --compute bf16 took 1.3-1.5 s element by
         * element, 0.66-0.79 s so (beside another build); most of the rest
         * is the kernel zeroing the new pages. */
        for (size_t k = k0; k < k0 + nk; k++) {
            const float *row = strip + (k - k0) * dout;
            uint16_t *h = data;
            /* W[k, j] as stored: at + j * step (nn.Linear's (dout, din) transposed back) */
            const size_t at = use == MAT_LINEAR ? k : k * dout, step = use == MAT_LINEAR ? din : 1;
            switch (to) {
            case WT_F32:
                for (size_t j = 0; j < dout; j++) ((float *)data)[at + j * step] = row[j];
                break;
            case WT_F16:
                for (size_t j = 0; j < dout; j++) h[at + j * step] = f32_to_f16(row[j]);
                break;
            case WT_BF16:
                for (size_t j = 0; j < dout; j++) h[at + j * step] = f32_to_bf16(row[j]);
                break;
            case WT_BF16P: /* W's pair words, k's half of each; the padding columns zeros */
                for (size_t j = 0; j < bf16p_padded(dout); j++)
                    h[bf16p_index(k, j, din)] = j < dout ? f32_to_bf16(row[j]) : 0;
                break;
            case WT_Q8: break; /* above */
            }
        }
    }
    free(strip);
    out.data = data;
    out.scales = scales;
    *w = out;
    return GPT2C_OK;
}

/* Every product matrix of the model (the LM head among them) as `to`; the
 * embeddings read by rows keep theirs. */
static gpt2c_status convert_products(gpt2c_model *m, gpt2_wtype to) {
    const int tied = m->lm_head.data == m->wte.data;
    gpt2c_status s;
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        if (t->w && t->use != MAT_PLAIN &&
            (s = convert_matrix(m, t->w, (size_t)t->d0, (size_t)t->d1, t->use, to, t->name)))
            return s;
    }
    if (tied) m->lm_head = m->wte;
    m->dtype = wtype_name(to);
    return GPT2C_OK;
}

static gpt2c_status convert_weights(gpt2c_model *m, const char *dtype) {
    gpt2_wtype to;
    if (!strcasecmp(dtype, "f32")) to = WT_F32;
    else if (!strcasecmp(dtype, "f16")) to = WT_F16;
    else if (!strcasecmp(dtype, "bf16")) to = WT_BF16;
    else if (!strcasecmp(dtype, "q8")) to = WT_Q8;
    else return err_set(&m->err, GPT2C_ERR_INVALID, "dtype '%s' is not one of f32, f16, bf16, q8", dtype);
    return convert_products(m, to);
}

/* compute "bf16": the products in the kernels' matmul_bf16, their matrices
 * held as BF16P (rounded to bf16 once, here) and their input rows rounded
 * to bf16 as they come. A dtype beside it could only round twice. */
static gpt2c_status set_compute(gpt2c_model *m, const char *compute, const char *dtype) {
    if (!strcasecmp(compute, "f32")) return GPT2C_OK;
    if (strcasecmp(compute, "bf16") != 0)
        return err_set(&m->err, GPT2C_ERR_INVALID, "compute '%s' is not one of f32, bf16", compute);
    if (!m->k->matmul_bf16)
        return err_set(&m->err, GPT2C_ERR_UNSUPPORTED,
                       "compute bf16 needs a CPU with AVX512_BF16 (the kernels chosen here are %s)", m->k->name);
    if (dtype && strcasecmp(dtype, "bf16") != 0)
        return err_set(&m->err, GPT2C_ERR_INVALID,
                       "compute bf16 holds the matrices in bf16 itself; dtype '%s' cannot go with it", dtype);
    return convert_products(m, WT_BF16P);
}

gpt2c_status gpt2c_model_load(const char *dir, gpt2c_model **out) { return gpt2c_model_load_ex(dir, NULL, out); }

gpt2c_status gpt2c_model_load_ex(const char *dir, const gpt2c_model_params *p, gpt2c_model **out) {
    gpt2c_model *m = calloc(1, sizeof *m);
    *out = m;
    if (!m) return GPT2C_ERR_NOMEM;
    m->k = gpt2_kernels_select();
    if (!dir) return err_set(&m->err, GPT2C_ERR_INVALID, "model path is NULL");
    if (!(m->dir = strdup(dir))) return err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
    gpt2c_status s = gpt2_config_load(dir, &m->arch, &m->cfg, m->gen_defaults, &m->err);
    if (s) return s;
    char *where;
    s = weights_open(dir, &m->st, &m->n_st, &where, &m->err);
    m->weights_path = where;
    if (s) return s;
    m->layers = calloc((size_t)m->cfg.n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
    if ((s = m->arch->load(m))) return s;
    if (p && p->lora && (s = model_lora_load(m, p->lora))) return s;
    m->dtype = wtype_name(m->lm_head.type);
    if (p && p->compute && (s = set_compute(m, p->compute, p->dtype))) return s;
    if (p && p->dtype && m->lm_head.type != WT_BF16P && (s = convert_weights(m, p->dtype))) return s;
    if (p && p->kv_cache && strcasecmp(p->kv_cache, "f32") != 0) {
        if (strcasecmp(p->kv_cache, "f16") != 0)
            return err_set(&m->err, GPT2C_ERR_INVALID, "kv_cache '%s' is not one of f32, f16", p->kv_cache);
        m->kv_type = WT_F16;
    }
    m->weight_bytes = bytes_per_token(m);
    return GPT2C_OK;
}

const char *gpt2c_model_errmsg(const gpt2c_model *m) { return err_msg_or_nomem(m ? &m->err : NULL); }

void gpt2c_model_free(gpt2c_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->tensors);
    weights_close(m->st, m->n_st);
    free((char *)m->weights_path);
    free(m->dir);
    free(m);
}

void gpt2c_model_get_info(const gpt2c_model *m, gpt2c_model_info *info) {
    const gpt2_config *c = &m->cfg;
    *info = (gpt2c_model_info){c->n_vocab, c->n_ctx, c->n_embd, c->n_head, c->n_layer, c->n_inner,
                               c->bos_id, c->eos_id, c->pad_id, m->dtype ? m->dtype : "?", m->k->name,
                               (uint64_t)m->weight_bytes, wtype_name(m->kv_type), m->arch->model_type,
                               (uint64_t)2 * (uint64_t)c->n_layer * (uint64_t)gpt2_kv_width(c) *
                                   weight_type_size(m->kv_type),
                               c->bos_id >= 0 ? c->bos_id : c->eos_id, m->lm_head.type == WT_BF16P ? "bf16" : "f32"};
}
