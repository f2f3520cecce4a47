/* finetune.c -- gpt2c_finetune: the training loop of transformers' Trainer
 * over run_clm.py's data (data.h), on the trainer (train.h): micro-batches
 * of blocks in a seeded order, gradient accumulation, the linear schedule,
 * evaluation, checkpoints that hold the optimiser's state and the data
 * position (so that a resumed run continues bit for bit), and the final
 * model written as a checkpoint folder.
 *
 * Output: output_dir/checkpoint-STEP/ (the model's files plus
 * optimizer.safetensors and trainer_state.json), each written under
 * checkpoint-STEP.partial and renamed when whole; the final model's files
 * in output_dir itself, model.safetensors renamed into place last. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/file.h"
#include "../core/safetensors.h"
#include "data.h"
#include "train.h"

void gpt2c_finetune_defaults(gpt2c_finetune_params *p) {
    memset(p, 0, sizeof *p);
    p->validation_split = 5.0;
    p->epochs = 3;
    p->batch_size = 8;
    p->grad_accum = 1;
    p->lr = 5e-5f;
    p->adam_beta1 = 0.9f, p->adam_beta2 = 0.999f, p->adam_eps = 1e-8f;
    p->max_grad_norm = 1.0f;
    p->seed = 42;
    p->shuffle = 1;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ files */

static int write_synced(const char *path, const void *a, size_t na, const void *b, size_t nb, const void *c,
                        size_t nc) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    const void *parts[3] = {a, b, c};
    const size_t lens[3] = {na, nb, nc};
    int bad = 0;
    for (int i = 0; i < 3 && !bad; i++) bad = file_write_all(fd, parts[i], lens[i]);
    if (!bad) bad = fsync(fd) != 0;
    if (close(fd) != 0) bad = 1;
    return bad ? -1 : 0;
}

/* Removes a folder of plain files (a stale .partial of ours). */
static void remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *p = path_join(dir, de->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

/* generation_config.json from the config's special ids, where the source
 * folder had none (save_pretrained writes one for a model that generates). */
static gpt2c_status write_generation_config(const gpt2c_model *m, const char *dir, gpt2_err *e) {
    char *path = path_join(dir, "generation_config.json");
    if (!path) return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    gpt2c_status s = GPT2C_OK;
    if (!file_exists(path)) {
        json_t *g = json_object();
        if (m->cfg.bos_id >= 0) json_object_set_new(g, "bos_token_id", json_integer(m->cfg.bos_id));
        if (m->cfg.eos_id >= 0) json_object_set_new(g, "eos_token_id", json_integer(m->cfg.eos_id));
        json_object_set_new(g, "_from_model_config", json_true());
        char *txt = json_dumps(g, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(g);
        if (!txt || write_synced(path, txt, strlen(txt), "\n", 1, NULL, 0))
            s = err_set(e, GPT2C_ERR_IO, "%s: %s", path, txt ? strerror(errno) : "out of memory");
        free(txt);
    }
    free(path);
    return s;
}

/* The state a checkpoint holds besides the weights. */
typedef struct run_state {
    long step, micro; /* optimiser steps and micro-batches done */
} run_state;

/* optimizer.safetensors: AdamW's two moments, each (n_params,) in the
 * model's tensor order. */
static gpt2c_status write_optimizer(trainer *t, const char *dir, gpt2_err *e) {
    const size_t n = trainer_n_params(t), bytes = n * sizeof(float);
    char json[512];
    snprintf(json, sizeof json,
             "{\"__metadata__\":{\"format\":\"gpt2c-adamw\",\"order\":\"the model's tensors as "
             "trainer_state.json lists them\"},\"exp_avg\":{\"dtype\":\"F32\",\"shape\":[%zu],"
             "\"data_offsets\":[0,%zu]},\"exp_avg_sq\":{\"dtype\":\"F32\",\"shape\":[%zu],"
             "\"data_offsets\":[%zu,%zu]}}",
             n, bytes, n, bytes, 2 * bytes);
    size_t len = 0;
    char *head = st_frame_header(json, &len), *path = path_join(dir, "optimizer.safetensors");
    const int bad = !head || !path ||
                    write_synced(path, head, len, trainer_moments(t, 0), bytes, trainer_moments(t, 1), bytes);
    gpt2c_status s = bad ? err_set(e, GPT2C_ERR_IO, "%s: %s", path ? path : dir, head ? strerror(errno) : "out of memory")
                         : GPT2C_OK;
    free(head);
    free(path);
    return s;
}

static gpt2c_status write_state(trainer *t, const gpt2c_finetune_params *p, const run_state *rs, long max_steps,
                                const char *dir, gpt2_err *e) {
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b}", "global_step", (json_int_t)rs->step,
                          "micro_batches", (json_int_t)rs->micro, "max_steps", (json_int_t)max_steps, "batch_size",
                          (json_int_t)p->batch_size, "grad_accum", (json_int_t)p->grad_accum, "block_size",
                          (json_int_t)t->T, "seed", (json_int_t)p->seed, "learning_rate", (double)p->lr, "shuffle",
                          p->shuffle);
    json_t *names = json_array();
    char name[128];
    for (int i = 0; j && names && i < trainer_n_tensors(t); i++)
        json_array_append_new(names, json_string(trainer_tensor_name(t, i, name, sizeof name)));
    char *txt = NULL;
    if (j && names && !json_object_set_new(j, "tensors", names)) names = NULL, txt = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    json_decref(names);
    char *path = path_join(dir, "trainer_state.json");
    const int bad = !txt || !path || write_synced(path, txt, strlen(txt), "\n", 1, NULL, 0);
    gpt2c_status s = bad ? err_set(e, GPT2C_ERR_IO, "%s: could not write", path ? path : dir) : GPT2C_OK;
    free(txt);
    free(path);
    return s;
}

/* The PEFT key of trainable tensor i: "base_model.model." + the model's
 * path to it (the architecture's prefix, then the layer's name). */
static const char *peft_key(const trainer *t, int i, char *buf, size_t n) {
    char name[128];
    snprintf(buf, n, "base_model.model.%s%s", t->m->arch->prefix, trainer_tensor_name(t, i, name, sizeof name));
    return buf;
}

/* adapter_config.json and adapter_model.safetensors, as PEFT's
 * save_pretrained writes them. */
static gpt2c_status write_adapter(trainer *t, const gpt2c_finetune_params *p, const char *dir, gpt2_err *e) {
    json_t *targets = json_array(), *hdr = json_object();
    for (const char *q = trainer_lora_targets(t); targets && q && *q;) {
        const char *end = strchr(q, ',');
        json_array_append_new(targets, json_stringn(q, end ? (size_t)(end - q) : strlen(q)));
        q = end ? end + 1 : NULL;
    }
    /* PEFT's fan_in_fan_out: the adapted weights are Conv1D (GPT-2, CodeGen's are nn.Linear). */
    const int conv = t->m->tensors[t->lora_tensor[0]].use == MAT_CONV1D;
    json_t *cfg = json_pack("{s:s?, s:s, s:b, s:b, s:b, s:f, s:f, s:n, s:s, s:i, s:n, s:o, s:s, s:n, s:n}",
                            "base_model_name_or_path", p->model_dir, "bias", "none", "fan_in_fan_out", conv,
                            "inference_mode", 1, "init_lora_weights", 1, "lora_alpha",
                            (double)(t->lora_scale * t->lora_rank), "lora_dropout", 0.0, "modules_to_save", "peft_type",
                            "LORA", "r", t->lora_rank, "revision", "target_modules", targets, "task_type", "CAUSAL_LM",
                            "layers_to_transform", "layers_pattern");
    char *txt = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(cfg);
    /* The safetensors header: every adapter's A and B in order, F32. */
    size_t off = 0;
    int bad = !txt || !hdr || json_object_set_new(hdr, "__metadata__", json_pack("{s:s}", "format", "pt"));
    for (int i = 0; !bad && i < trainer_n_tensors(t); i++) {
        size_t count;
        trainer_param(t, i, &count);
        char key[256];
        const size_t other = count / (size_t)t->lora_rank; /* A (r, din), B (dout, r) */
        json_t *shape = i % 2 ? json_pack("[I, i]", (json_int_t)other, t->lora_rank)
                              : json_pack("[i, I]", t->lora_rank, (json_int_t)other);
        bad = json_object_set_new(hdr, peft_key(t, i, key, sizeof key),
                                  json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape, "data_offsets",
                                            (json_int_t)off, (json_int_t)(off + count * sizeof(float))));
        off += count * sizeof(float);
    }
    char *h = bad ? NULL : json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    gpt2c_status s = GPT2C_OK;
    char *cpath = path_join(dir, "adapter_config.json"), *spath = path_join(dir, "adapter_model.safetensors");
    if (!h || !cpath || !spath || write_synced(cpath, txt, strlen(txt), "\n", 1, NULL, 0))
        s = err_set(e, GPT2C_ERR_IO, "%s: could not write", cpath ? cpath : dir);
    if (!s) {
        size_t len = 0;
        char *buf = st_frame_header(h, &len);
        /* The adapters are one contiguous run of the trainer's buffer. */
        if (!buf || write_synced(spath, buf, len, t->params, t->n_params * sizeof(float), NULL, 0))
            s = err_set(e, GPT2C_ERR_IO, "%s: %s", spath, buf ? strerror(errno) : "out of memory");
        free(buf);
    }
    free(h);
    free(txt);
    free(cpath);
    free(spath);
    return s;
}

/* A PEFT adapter folder's tensors into the trainer (resuming). */
static gpt2c_status read_adapter(trainer *t, const char *dir, gpt2_err *e) {
    char *path = path_join(dir, "adapter_model.safetensors");
    st_file f;
    gpt2c_status s = path ? st_open(path, &f, e) : err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    const int opened = !s;
    for (int i = 0; !s && i < trainer_n_tensors(t); i++) {
        size_t count;
        float *dst = trainer_param(t, i, &count);
        char key[256];
        const st_tensor *x = st_find(&f, peft_key(t, i, key, sizeof key));
        if (!x || x->dtype != ST_F32 || (size_t)x->numel != count)
            s = err_set(e, GPT2C_ERR_FORMAT, "%s: needs F32 %s of %zu values (rank and targets as this run's)", path,
                        key, count);
        else
            memcpy(dst, x->data, x->nbytes);
    }
    if (opened) st_close(&f);
    free(path);
    return s;
}

/* The model (and, with rs, the optimiser and run state) as the folder dir,
 * which appears whole or not at all. */
static gpt2c_status save_checkpoint(trainer *t, const gpt2c_finetune_params *p, const run_state *rs, long max_steps,
                                    const char *dir, gpt2_err *e) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.partial", dir) >= (int)sizeof tmp)
        return err_set(e, GPT2C_ERR_INVALID, "%s: name too long", dir);
    remove_flat_dir(tmp);
    gpt2c_model *m = t->m;
    gpt2c_status s = GPT2C_OK;
    if (t->lora_tensor) { /* LoRA: the adapters, not the frozen model */
        if (mkdir(tmp, 0755) != 0) return err_set(e, GPT2C_ERR_IO, "%s: %s", dir, strerror(errno));
        s = write_adapter(t, p, tmp, e);
    } else {
        if (gpt2c_model_save(m, tmp)) return err_set(e, GPT2C_ERR_IO, "%s", gpt2c_model_errmsg(m));
        s = write_generation_config(m, tmp, e);
    }
    if (!s) s = write_optimizer(t, tmp, e);
    if (!s) s = write_state(t, p, rs, max_steps, tmp, e);
    if (!s && (file_sync_dir(tmp) || rename(tmp, dir) || file_sync_dir(p->output_dir)))
        s = err_set(e, GPT2C_ERR_IO, "%s: %s", dir, strerror(errno));
    if (s) remove_flat_dir(tmp);
    return s;
}

/* The final model's files into output_dir, model.safetensors last. */
static gpt2c_status save_final(trainer *t, const char *out, gpt2_err *e) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s/.final.partial", out) >= (int)sizeof tmp)
        return err_set(e, GPT2C_ERR_INVALID, "%s: name too long", out);
    remove_flat_dir(tmp);
    if (gpt2c_model_save(t->m, tmp)) return err_set(e, GPT2C_ERR_IO, "%s", gpt2c_model_errmsg(t->m));
    gpt2c_status s = write_generation_config(t->m, tmp, e);
    DIR *d = s ? NULL : opendir(tmp);
    for (struct dirent *de; d && !s && (de = readdir(d));) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, "model.safetensors")) continue;
        char *from = path_join(tmp, de->d_name), *to = path_join(out, de->d_name);
        if (!from || !to || rename(from, to)) s = err_set(e, GPT2C_ERR_IO, "%s: %s", to ? to : out, strerror(errno));
        free(from);
        free(to);
    }
    if (d) closedir(d);
    if (!s) {
        char *from = path_join(tmp, "model.safetensors"), *to = path_join(out, "model.safetensors");
        if (!from || !to || rename(from, to) || file_sync_dir(out))
            s = err_set(e, GPT2C_ERR_IO, "%s: %s", to ? to : out, strerror(errno));
        free(from);
        free(to);
    }
    remove_flat_dir(tmp);
    return s;
}

/* LoRA's output: the adapter files, and with lora_merge the model with
 * them merged (PEFT's merge_and_unload) beside them. */
static gpt2c_status save_lora_final(trainer *t, const gpt2c_finetune_params *p, gpt2_err *e) {
    gpt2c_status s = write_adapter(t, p, p->output_dir, e);
    if (s || !p->lora_merge) return s;
    const int n = trainer_n_tensors(t) / 2;
    lora_adapter *list = calloc((size_t)n + 1, sizeof *list);
    if (!list) return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        size_t na, nb;
        char name[128];
        list[i].A = trainer_param(t, 2 * i, &na), list[i].B = trainer_param(t, 2 * i + 1, &nb);
        list[i].r = t->lora_rank, list[i].din = (int)(na / (size_t)t->lora_rank), list[i].dout = (int)(nb / (size_t)t->lora_rank);
        /* "h.0.attn.c_attn.lora_A.weight" -> "h.0.attn.c_attn.weight" */
        trainer_tensor_name(t, 2 * i, name, sizeof name);
        char *cut = strstr(name, ".lora_A.weight");
        if (cut) strcpy(cut, ".weight");
        snprintf(list[i].name, sizeof list[i].name, "%s", name);
    }
    if (model_lora_merge(t->m, list, n, t->lora_scale)) s = err_set(e, GPT2C_ERR_FORMAT, "%s", gpt2c_model_errmsg(t->m));
    free(list);
    return s ? s : save_final(t, p->output_dir, e);
}

/* Reads a checkpoint's optimiser and run state into t and rs. */
static gpt2c_status load_resume(trainer *t, const char *dir, run_state *rs, gpt2_err *e) {
    if (t->lora_tensor) {
        gpt2c_status s = read_adapter(t, dir, e);
        if (s) return s;
    }
    char *path = path_join(dir, "trainer_state.json");
    json_t *j = NULL;
    gpt2c_status s = path ? file_read_json(path, (size_t)1 << 24, &j, e) : err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    json_int_t step = -1, micro = -1;
    if (!s && json_unpack(j, "{s:I, s:I}", "global_step", &step, "micro_batches", &micro) != 0)
        s = err_set(e, GPT2C_ERR_FORMAT, "%s: needs integers global_step and micro_batches", path);
    if (!s && (step < 0 || micro < step))
        s = err_set(e, GPT2C_ERR_FORMAT, "%s: global_step %lld and micro_batches %lld do not fit", path,
                    (long long)step, (long long)micro);
    json_decref(j);
    free(path);
    if (s) return s;
    rs->step = (long)step, rs->micro = (long)micro;
    path = path_join(dir, "optimizer.safetensors");
    st_file f;
    s = path ? st_open(path, &f, e) : err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    const int opened = !s;
    for (int k = 0; !s && k < 2; k++) {
        const st_tensor *x = st_find(&f, k ? "exp_avg_sq" : "exp_avg");
        if (!x || x->dtype != ST_F32 || x->ndim != 1 || (uint64_t)x->numel != trainer_n_params(t))
            s = err_set(e, GPT2C_ERR_FORMAT, "%s: needs F32 %s of %zu values (this model's parameters)", path,
                        k ? "exp_avg_sq" : "exp_avg", trainer_n_params(t));
        else
            memcpy(trainer_moments(t, k), x->data, x->nbytes);
    }
    if (opened) st_close(&f);
    free(path);
    if (!s) trainer_set_steps(t, rs->step);
    return s;
}

/* The config's dropout probabilities, under the architecture's names and
 * with its config class's defaults (train_arch). */
static gpt2c_status read_dropout(const gpt2c_model *m, const train_arch *arch, float pd[3], gpt2_err *e) {
    for (int i = 0; i < 3; i++) pd[i] = arch->dropout_defaults[i];
    char *path = path_join(m->dir, "config.json");
    json_t *root = NULL;
    gpt2c_status s = path ? file_read_json(path, (size_t)64 << 20, &root, e) : err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    const char *const *keys = arch->dropout_keys;
    for (int i = 0; !s && i < 3; i++) {
        json_t *v = keys[i] ? json_object_get(root, keys[i]) : NULL;
        if (!v || json_is_null(v)) continue;
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) >= 1)
            s = err_set(e, GPT2C_ERR_FORMAT, "%s: %s must be a number in [0, 1)", path, keys[i]);
        else
            pd[i] = (float)json_number_value(v);
    }
    json_decref(root);
    free(path);
    return s;
}

/* ------------------------------------------------------------------- loop */

typedef struct run {
    const gpt2c_finetune_params *p;
    trainer *t;
    train_data train, val;
    long *order, epoch_of_order, batches_per_epoch;
    int32_t *btok, *blab; // (B, block) the micro-batch
    gpt2_err *e;
} run;

/* Micro-batch g's blocks (in epoch g / batches_per_epoch's order) into
 * btok and blab; returns how many. */
static int gather(run *r, long g) {
    const int B = r->p->batch_size, T = r->train.block;
    const long epoch = g / r->batches_per_epoch, bi = g % r->batches_per_epoch;
    if (epoch != r->epoch_of_order) {
        if (r->p->shuffle) train_shuffle(r->order, r->train.n_blocks, r->p->seed, epoch);
        else
            for (long i = 0; i < r->train.n_blocks; i++) r->order[i] = i;
        r->epoch_of_order = epoch;
    }
    int n = 0;
    for (long i = bi * B; i < r->train.n_blocks && n < B; i++, n++) {
        memcpy(r->btok + (size_t)n * T, r->train.tokens + (size_t)r->order[i] * T, sizeof(int32_t) * (size_t)T);
        memcpy(r->blab + (size_t)n * T, r->train.labels + (size_t)r->order[i] * T, sizeof(int32_t) * (size_t)T);
    }
    return n;
}

/* The mean loss over every target of the validation blocks. */
static gpt2c_status evaluate(run *r, double *mean) {
    const int B = r->p->batch_size, T = r->val.block;
    double sum = 0.0;
    long targets = 0;
    trainer_set_mode(r->t, 0, 0); /* model.eval(): no dropout */
    for (long b0 = 0; b0 < r->val.n_blocks; b0 += B) {
        const int n = r->val.n_blocks - b0 < B ? (int)(r->val.n_blocks - b0) : B;
        double l;
        long k;
        gpt2c_status s = trainer_forward(r->t, r->val.tokens + (size_t)b0 * T, r->val.labels + (size_t)b0 * T, n, T,
                                         &l, &k, r->e);
        if (s) return s;
        sum += l, targets += k;
    }
    *mean = targets ? sum / (double)targets : NAN;
    return GPT2C_OK;
}

static gpt2c_status check_params(const gpt2c_finetune_params *p, gpt2_err *e) {
    if (!p->train_file) return err_set(e, GPT2C_ERR_INVALID, "no training file");
    if (!p->output_dir || !*p->output_dir) return err_set(e, GPT2C_ERR_INVALID, "no output folder");
    if (!p->model_dir && !p->resume_dir) return err_set(e, GPT2C_ERR_INVALID, "no model");
    if (p->batch_size < 1 || p->grad_accum < 1 || p->epochs < 0 || p->max_steps < 0 || p->block_size < 0 ||
        p->warmup_steps < 0 || p->eval_every < 0 || p->save_every < 0)
        return err_set(e, GPT2C_ERR_INVALID, "batch size, accumulation, epochs, steps and block size cannot be "
                       "negative (batch size and accumulation at least 1)");
    if (!(p->lr >= 0) || !(p->weight_decay >= 0) || !(p->max_grad_norm >= 0) || !(p->adam_eps > 0) ||
        !(p->adam_beta1 >= 0 && p->adam_beta1 < 1) || !(p->adam_beta2 >= 0 && p->adam_beta2 < 1))
        return err_set(e, GPT2C_ERR_INVALID, "learning rate, weight decay and max grad norm must be >= 0, betas in "
                       "[0, 1), eps > 0");
    if (!(p->validation_split >= 0 && p->validation_split < 100))
        return err_set(e, GPT2C_ERR_INVALID, "validation split %g%%: must be in [0, 100)", p->validation_split);
    if (p->epochs == 0 && p->max_steps == 0) return err_set(e, GPT2C_ERR_INVALID, "0 epochs and no max steps");
    return GPT2C_OK;
}

/* An output folder to create (*created set), or (resuming) one that may
 * exist but holds no finished run. */
static gpt2c_status make_output(const gpt2c_finetune_params *p, int *created, gpt2_err *e) {
    struct stat st;
    if (lstat(p->output_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return err_set(e, GPT2C_ERR_INVALID, "%s exists and is not a folder", p->output_dir);
        char *mp = path_join(p->output_dir, "model.safetensors"), *ap = path_join(p->output_dir, "adapter_config.json");
        const int done = (mp && file_exists(mp)) || (ap && file_exists(ap));
        free(mp);
        free(ap);
        if (!p->resume_dir || done)
            return err_set(e, GPT2C_ERR_INVALID, "%s exists; give a new folder (or --resume a checkpoint in it)",
                           p->output_dir);
        return GPT2C_OK;
    }
    if (mkdir(p->output_dir, 0755) != 0) return err_set(e, GPT2C_ERR_IO, "%s: %s", p->output_dir, strerror(errno));
    *created = 1;
    return GPT2C_OK;
}

gpt2c_status gpt2c_finetune(const gpt2c_finetune_params *p, gpt2c_finetune_fn fn, void *user, int *stopped,
                            char *msg, size_t msg_n) {
    gpt2_err e = {0};
    run r = {.p = p, .e = &e, .epoch_of_order = -1};
    gpt2c_model *m = NULL;
    gpt2c_tokenizer *tok = NULL;
    if (stopped) *stopped = 0;
    gpt2c_status s = check_params(p, &e);
    /* Full fine-tuning starts from the checkpoint's weights when resuming,
     * in f32; LoRA from the base model as stored, its adapters from the
     * checkpoint. */
    const int lora = p->lora_rank > 0;
    if (!s && lora && !p->model_dir) s = err_set(&e, GPT2C_ERR_INVALID, "LoRA needs the base model (-m), resuming too");
    const char *start = p->resume_dir && !lora ? p->resume_dir : p->model_dir;
    gpt2c_model_params mp = {.dtype = lora ? NULL : "f32"};
    train_lora lo = {p->lora_rank, p->lora_alpha > 0 ? p->lora_alpha : 2.0f * (float)p->lora_rank, p->lora_targets};
    if (!s && gpt2c_model_load_ex(start, &mp, &m)) s = err_set(&e, GPT2C_ERR_FORMAT, "%s", m ? gpt2c_model_errmsg(m) : "out of memory");
    if (!s && gpt2c_tokenizer_load(p->model_dir ? p->model_dir : start, &tok))
        s = err_set(&e, GPT2C_ERR_FORMAT, "%s", tok ? gpt2c_tokenizer_errmsg(tok) : "out of memory");
    int block = p->block_size;
    if (!s) {
        if (!block) block = m->cfg.n_ctx < 1024 ? m->cfg.n_ctx : 1024;
        if (block < 2 || block > m->cfg.n_ctx)
            s = err_set(&e, GPT2C_ERR_INVALID, "block size %d: must be in 2..%d (the model's context)", block,
                        m->cfg.n_ctx);
    }
    int eos = m ? m->cfg.eos_id : -1;
    if (eos < 0 && tok) eos = gpt2c_tokenizer_eos_id(tok);
    if (!s) s = train_data_load(tok, p->train_file, block, eos, p->validation_file ? 0 : p->validation_split,
                                &r.train, &r.val, &e);
    if (!s && p->validation_file) s = train_data_load(tok, p->validation_file, block, eos, 0, &r.val, NULL, &e);
    int created = 0;
    if (!s) s = make_output(p, &created, &e);
    if (!s) s = lora ? trainer_new_lora(m, p->batch_size, block, p->n_threads, &lo, p->seed, &r.t, &e)
                     : trainer_new(m, p->batch_size, block, p->n_threads, &r.t, &e);
    const size_t bt = (size_t)p->batch_size * (size_t)block;
    if (!s) {
        r.order = malloc(sizeof *r.order * (size_t)r.train.n_blocks);
        r.btok = malloc(sizeof *r.btok * bt);
        r.blab = malloc(sizeof *r.blab * bt);
        if (!r.order || !r.btok || !r.blab) s = err_set(&e, GPT2C_ERR_NOMEM, "out of memory");
    }
    run_state rs = {0, 0};
    if (!s && p->resume_dir) s = load_resume(r.t, p->resume_dir, &rs, &e);
    float pdrop[3] = {0, 0, 0};
    if (!s && !p->no_dropout) s = read_dropout(m, r.t->arch, pdrop, &e);
    if (!s) trainer_set_dropout(r.t, pdrop[0], pdrop[1], pdrop[2], p->seed);

    /* HF's Trainer: update steps per epoch = batches // accumulation (at least 1). */
    r.batches_per_epoch = (r.train.n_blocks + p->batch_size - 1) / p->batch_size;
    long per_epoch = r.batches_per_epoch / p->grad_accum;
    if (per_epoch < 1) per_epoch = 1;
    const long max_steps = p->max_steps > 0 ? p->max_steps : (long)p->epochs * per_epoch;
    const train_hparams h = {.beta1 = p->adam_beta1, .beta2 = p->adam_beta2, .eps = p->adam_eps,
                             .weight_decay = p->weight_decay, .max_grad_norm = p->max_grad_norm};
    gpt2c_finetune_event ev = {.max_steps = max_steps, .train_blocks = r.train.n_blocks, .eval_blocks = r.val.n_blocks,
                               .block_size = block, .n_params = s ? 0 : trainer_n_params(r.t), .eval_loss = NAN,
                               .eval_perplexity = NAN};
    int stop = !s && fn && fn(user, &ev);
    const double t0 = mono_s();
    long tokens = 0;
    char dir[4200];
    while (!s && rs.step < max_steps && !stop) {
        trainer_zero_grad(r.t);
        double loss = 0.0;
        for (int a = 0; a < p->grad_accum && !s; a++, rs.micro++) {
            const int n = gather(&r, rs.micro);
            double l;
            long k;
            trainer_set_mode(r.t, 1, (uint64_t)rs.micro); /* each micro-batch its own masks */
            s = trainer_forward(r.t, r.btok, r.blab, n, block, &l, &k, &e);
            if (s || k == 0) continue; /* a batch of prompts alone has no loss */
            trainer_backward(r.t, (float)(1.0 / ((double)k * p->grad_accum)));
            loss += l / (double)k / p->grad_accum;
            tokens += (long)n * block;
        }
        if (s) break;
        const double lr = p->lr * train_linear_schedule(rs.step, p->warmup_steps, max_steps);
        ev.grad_norm = trainer_step(r.t, &h, (float)lr);
        rs.step++;
        ev.kind = GPT2C_FT_STEP, ev.step = rs.step, ev.loss = loss, ev.lr = lr;
        ev.epoch = (double)rs.micro / (double)r.batches_per_epoch;
        ev.tokens_per_s = (double)tokens / (mono_s() - t0);
        stop = fn && fn(user, &ev);
        if (!s && r.val.n_blocks && p->eval_every && rs.step % p->eval_every == 0 && rs.step < max_steps) {
            s = evaluate(&r, &ev.eval_loss);
            ev.kind = GPT2C_FT_EVAL, ev.eval_perplexity = exp(ev.eval_loss);
            if (!s && fn && fn(user, &ev)) stop = 1;
        }
        if (!s && ((p->save_every && rs.step % p->save_every == 0) || (stop && rs.step < max_steps))) {
            snprintf(dir, sizeof dir, "%s/checkpoint-%ld", p->output_dir, rs.step);
            s = save_checkpoint(r.t, p, &rs, max_steps, dir, &e);
            ev.kind = GPT2C_FT_SAVE, ev.path = dir;
            if (!s && fn && fn(user, &ev)) stop = 1;
        }
    }
    if (!s && stop && rs.step < max_steps) {
        if (stopped) *stopped = 1;
    } else if (!s) {
        if (r.val.n_blocks) {
            s = evaluate(&r, &ev.eval_loss);
            ev.kind = GPT2C_FT_EVAL, ev.step = rs.step, ev.eval_perplexity = exp(ev.eval_loss);
            if (!s && fn) fn(user, &ev);
        }
        if (!s && lora) s = save_lora_final(r.t, p, &e);
        else if (!s) s = save_final(r.t, p->output_dir, &e);
        ev.kind = GPT2C_FT_SAVE, ev.path = p->output_dir;
        if (!s && fn) fn(user, &ev);
    }
    if (s && msg && msg_n) snprintf(msg, msg_n, "%s", e.msg[0] ? e.msg : gpt2c_status_string(s));
    if (s && created) rmdir(p->output_dir); /* a run that failed leaves no empty folder (checkpoints stay) */
    trainer_free(r.t);
    train_data_free(&r.train);
    train_data_free(&r.val);
    free(r.order);
    free(r.btok);
    free(r.blab);
    gpt2c_tokenizer_free(tok);
    gpt2c_model_free(m);
    return s;
}
