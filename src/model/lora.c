/* lora.c -- LoRA adapters merged into a loaded model's weights: from a
 * PEFT adapter folder (gpt2c_model_params.lora: generate, serve and
 * perplexity with --lora DIR), or from memory (gpt2c finetune --merge).
 * Merged, a model runs at its plain speed: PEFT's merge_and_unload. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "../core/half.h"
#include "model.h"

static gpt2_tensor *find_model_tensor(gpt2c_model *m, const char *name) {
    const char *pre = m->arch->prefix;
    const size_t pl = strlen(pre);
    if (!strncmp(name, pre, pl)) name += pl; /* as the file names it, or as the base model does */
    for (int i = 0; i < m->n_tensors; i++) {
        const char *t = m->tensors[i].name;
        if (!strncmp(t, pre, pl)) t += pl;
        if (!strcmp(t, name)) return &m->tensors[i];
    }
    return NULL;
}

gpt2c_status model_lora_merge(gpt2c_model *m, const lora_adapter *a, int n, float scale) {
    for (int i = 0; i < n; i++) {
        gpt2_tensor *t = find_model_tensor(m, a[i].name);
        if (!t || !t->w || t->use == MAT_PLAIN)
            return err_set(&m->err, GPT2C_ERR_FORMAT, "LoRA adapter for %s: the model has no such matrix", a[i].name);
        const int conv = t->use == MAT_CONV1D;
        const int din = conv ? t->d0 : t->d1, dout = conv ? t->d1 : t->d0;
        if (a[i].din != din || a[i].dout != dout)
            return err_set(&m->err, GPT2C_ERR_FORMAT, "LoRA adapter for %s is %d -> %d; the matrix is %d -> %d",
                           a[i].name, a[i].din, a[i].dout, din, dout);
        gpt2_weight *w = t->w;
        if (w->type == WT_Q8)
            return err_set(&m->err, GPT2C_ERR_UNSUPPORTED, "LoRA adapter for %s: the matrix is Q8 (merge into the "
                           "f32, f16 or bf16 checkpoint)", a[i].name);
        const size_t count = (size_t)din * dout;
        float *f = malloc(count * sizeof *f);
        if (!f) return err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
        weight_to_f32(*w, 0, count, f);
        const int tied = m->lm_head.data == w->data && w == &m->wte;
        for (int j = 0; j < dout; j++)
            for (int k = 0; k < din; k++) {
                float d = 0.0f;
                for (int r = 0; r < a[i].r; r++) d += a[i].B[(size_t)j * a[i].r + r] * a[i].A[(size_t)r * din + k];
                f[conv ? (size_t)k * dout + j : (size_t)j * din + k] += scale * d;
            }
        void *out = model_own(m, count * weight_type_size(w->type));
        if (!out) return free(f), m->err.status;
        for (size_t j = 0; j < count; j++) {
            if (w->type == WT_F32) ((float *)out)[j] = f[j];
            else if (w->type == WT_F16) ((uint16_t *)out)[j] = f32_to_f16(f[j]);
            else ((uint16_t *)out)[j] = f32_to_bf16(f[j]);
        }
        free(f);
        w->data = out;
        if (tied) m->lm_head = m->wte;
    }
    return GPT2C_OK;
}

gpt2c_status model_lora_load(gpt2c_model *m, const char *dir) {
    char *cfg_path = path_join(dir, "adapter_config.json"), *st_path = path_join(dir, "adapter_model.safetensors");
    json_t *cfg = NULL;
    st_file f = {0};
    int opened = 0;
    lora_adapter *list = NULL;
    int n = 0;
    gpt2c_status s = cfg_path && st_path ? file_read_json(cfg_path, (size_t)1 << 20, &cfg, &m->err)
                                         : err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
    json_t *r = s ? NULL : json_object_get(cfg, "r"), *alpha = s ? NULL : json_object_get(cfg, "lora_alpha");
    const char *type = s ? NULL : json_string_value(json_object_get(cfg, "peft_type"));
    if (!s && type && strcmp(type, "LORA") != 0)
        s = err_set(&m->err, GPT2C_ERR_UNSUPPORTED, "%s: peft_type %s: only LORA adapters are supported", cfg_path, type);
    if (!s && (!json_is_integer(r) || json_integer_value(r) < 1 || !json_is_number(alpha)))
        s = err_set(&m->err, GPT2C_ERR_FORMAT, "%s: needs an integer r >= 1 and a number lora_alpha", cfg_path);
    if (!s && !(s = st_open(st_path, &f, &m->err))) opened = 1;
    const int rank = s ? 0 : (int)json_integer_value(r);
    if (!s && !(list = calloc((size_t)f.n + 1, sizeof *list))) s = err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
    static const char PRE[] = "base_model.model.", A_SUF[] = ".lora_A.weight";
    for (int i = 0; !s && i < f.n; i++) {
        const st_tensor *a = &f.tensors[i];
        const size_t len = strlen(a->name), pl = sizeof PRE - 1, sl = sizeof A_SUF - 1;
        if (len <= pl + sl || strncmp(a->name, PRE, pl) || strcmp(a->name + len - sl, A_SUF)) continue;
        lora_adapter *x = &list[n];
        char bname[512];
        snprintf(bname, sizeof bname, "%.*s.lora_B.weight", (int)(len - sl), a->name);
        const st_tensor *b = st_find(&f, bname);
        if (snprintf(x->name, sizeof x->name, "%.*s.weight", (int)(len - sl - pl), a->name + pl) >= (int)sizeof x->name)
            s = err_set(&m->err, GPT2C_ERR_FORMAT, "%s: tensor name too long: %s", st_path, a->name);
        else if (!b || a->dtype != ST_F32 || b->dtype != ST_F32 || a->ndim != 2 || b->ndim != 2 ||
                 a->shape[0] != rank || b->shape[1] != rank || (uintptr_t)a->data % 4 || (uintptr_t)b->data % 4)
            s = err_set(&m->err, GPT2C_ERR_FORMAT, "%s: %s needs an aligned F32 (r %d, in) lora_A and (out, r) "
                        "lora_B", st_path, a->name, rank);
        else {
            x->r = rank, x->din = (int)a->shape[1], x->dout = (int)b->shape[0];
            x->A = (const float *)(const void *)a->data, x->B = (const float *)(const void *)b->data;
            n++;
        }
    }
    if (!s && n == 0) s = err_set(&m->err, GPT2C_ERR_FORMAT, "%s: no lora_A / lora_B tensors", st_path);
    if (!s) s = model_lora_merge(m, list, n, (float)(json_number_value(alpha) / (double)rank));
    free(list);
    if (opened) st_close(&f);
    json_decref(cfg);
    free(cfg_path);
    free(st_path);
    return s;
}
