/* train.c -- the trainer (train.h): the model's tensors copied into one
 * trainable buffer the model is repointed at, gradients and AdamW's
 * moments beside it, the loss's targets, clipping by the global norm, the
 * AdamW update and HF's linear schedule. The passes are the
 * architecture's (train_arch). */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../core/mem.h"
#include "../core/pool.h"
#include "ops.h"
#include "tape.h"

static const train_arch *const ARCHS[] = {&train_gpt2,  &train_gpt_neo,     &train_opt,    &train_gpt_neox,
                                          &train_bloom, &train_gpt_bigcode, &train_codegen};

static size_t tensor_count(const gpt2_tensor *t) { return (size_t)t->d0 * (size_t)(t->d1 > 0 ? t->d1 : 1); }

static const train_arch *arch_of(const gpt2c_model *m, gpt2_err *e) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof *ARCHS; i++)
        if (!strcmp(ARCHS[i]->model_type, m->arch->model_type)) return ARCHS[i];
    err_set(e, GPT2C_ERR_UNSUPPORTED, "fine-tuning does not support model_type %s", m->arch->model_type);
    return NULL;
}

/* What both modes share: the checks, the pool, the activations and the
 * batch; then n_tensors trainable tensors of the given sizes, with their
 * gradients and moments (params from model_own when owned_by_model). */
static gpt2c_status trainer_alloc(gpt2c_model *m, int B, int T, int n_threads, const size_t *counts, int n_tensors,
                                  int owned_by_model, trainer **out, gpt2_err *e) {
    *out = NULL;
    const train_arch *arch = arch_of(m, e);
    if (!arch) return e->status;
    if (B < 1 || T < 2 || T > m->cfg.n_ctx || (size_t)B * (size_t)T > (size_t)1 << 24)
        return err_set(e, GPT2C_ERR_INVALID, "batch of %d sequences of %d tokens: need T in 2..%d", B, T,
                       m->cfg.n_ctx);
    if (n_threads == 0) n_threads = pool_default_threads();
    trainer *t = calloc(1, sizeof *t);
    if (!t) return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    t->m = m, t->arch = arch, t->B = B, t->T = T, t->n_tensors = n_tensors;
    t->offset = calloc((size_t)n_tensors + 1, sizeof *t->offset);
    t->decay = calloc((size_t)n_tensors + 1, 1);
    for (int i = 0; t->offset && i < n_tensors; i++) t->offset[i + 1] = t->offset[i] + counts[i];
    t->n_params = t->offset ? t->offset[n_tensors] : 0;
    const size_t bytes = t->n_params * sizeof(float), nt = (size_t)B * (size_t)T;
    t->pool = pool_new(n_threads);
    t->grads = mem_alloc(bytes);
    t->m1 = mem_alloc(bytes);
    t->m2 = mem_alloc(bytes);
    t->acts = arch->act_floats ? mem_alloc(arch->act_floats(&m->cfg, B, T, n_threads) * sizeof(float)) : NULL;
    t->tape = arch->build ? tape_new(t) : NULL;
    t->tokens = malloc(nt * sizeof *t->tokens);
    t->targets = malloc(nt * sizeof *t->targets);
    if (t->offset && t->decay && t->grads && t->m1 && t->m2 && t->tokens && t->targets)
        t->params = owned_by_model ? model_own(m, bytes) : mem_alloc(bytes);
    t->owns_params = !owned_by_model;
    if (!t->offset || !t->decay || !t->pool || !t->params || !t->grads || !t->m1 || !t->m2 ||
        (arch->act_floats && !t->acts) || (arch->build && !t->tape) || !t->tokens || !t->targets) {
        trainer_free(t);
        return err_set(e, GPT2C_ERR_NOMEM, "out of memory for training (%.1f GiB of parameters, gradients and "
                       "moments)", 4.0 * (double)bytes / (1 << 30));
    }
    memset(t->grads, 0, bytes);
    memset(t->m1, 0, bytes);
    memset(t->m2, 0, bytes);
    if (!owned_by_model) memset(t->params, 0, bytes); /* LoRA's B starts at zero (mem_alloc need not clear) */
    *out = t;
    return GPT2C_OK;
}

/* The last step of making a trainer: a pass on the tape plans its memory
 * (tape_plan); the trainer is freed if that fails. */
static gpt2c_status plan(trainer **t, gpt2_err *e) {
    gpt2c_status s = (*t)->tape ? tape_plan(*t, e) : GPT2C_OK;
    if (s) trainer_free(*t), *t = NULL;
    return s;
}

gpt2c_status trainer_new(gpt2c_model *m, int B, int T, int n_threads, trainer **out, gpt2_err *e) {
    *out = NULL;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].w && m->tensors[i].w->type != WT_F32)
            return err_set(e, GPT2C_ERR_INVALID, "fine-tuning needs f32 weights; %s is %s (load with dtype f32)",
                           m->tensors[i].name, wtype_name(m->tensors[i].w->type));
    size_t *counts = malloc(sizeof *counts * (size_t)(m->n_tensors + 1));
    if (!counts) return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_tensors; i++) counts[i] = tensor_count(&m->tensors[i]);
    /* The weights belong to the model, which keeps them trained once the
     * trainer is gone (to generate, evaluate or save). */
    gpt2c_status s = trainer_alloc(m, B, T, n_threads, counts, m->n_tensors, 1, out, e);
    free(counts);
    if (s) return s;
    trainer *t = *out;
    /* The model reads its weights from here from now on: a tied head is the
     * embedding's storage, as before. HF's Trainer decays all but biases
     * and LayerNorm weights: the vectors. */
    const int tied = m->lm_head.data == m->wte.data;
    for (int i = 0; i < m->n_tensors; i++) {
        gpt2_tensor *x = &m->tensors[i];
        float *p = t->params + t->offset[i];
        t->decay[i] = x->w != NULL;
        if (x->w) {
            memcpy(p, x->w->data, tensor_count(x) * sizeof(float));
            x->w->data = p;
        } else {
            memcpy(p, *x->v, tensor_count(x) * sizeof(float));
            *x->v = p;
        }
    }
    if (tied) m->lm_head = m->wte;
    /* Nothing reads the checkpoint's mapping now: its pages leave this
     * process's memory (a full fine-tune is weights x 4 without them). */
    for (int i = 0; i < m->n_st; i++)
        if (m->st[i].map.data) madvise((void *)m->st[i].map.data, m->st[i].map.size, MADV_DONTNEED);
    return plan(out, e);
}

/* The module path of a model tensor: its name without the architecture's
 * prefix and without ".weight" (len: how much of name that is). */
static const char *module_path(const gpt2c_model *m, const char *name, size_t *len) {
    const size_t pl = strlen(m->arch->prefix);
    if (!strncmp(name, m->arch->prefix, pl)) name += pl;
    const size_t n = strlen(name);
    *len = n - (n >= 7 && !strcmp(name + n - 7, ".weight") ? 7 : 0);
    return name;
}

/* Whether tensor x is a matrix of a layer (the only ones LoRA adapts). */
static int layer_matrix(const gpt2c_model *m, const gpt2_tensor *x) {
    const char *p = (const char *)x->w, *lo = (const char *)m->layers;
    return x->w && p >= lo && p < lo + sizeof *m->layers * (size_t)m->cfg.n_layer;
}

/* Whether the module path (len chars) ends in target (tlen) at a dot. */
static int target_matches(const char *path, size_t len, const char *target, size_t tlen) {
    return tlen && tlen <= len && !strncmp(path + len - tlen, target, tlen) && (tlen == len || path[len - tlen - 1] == '.');
}

gpt2c_status trainer_new_lora(gpt2c_model *m, int B, int T, int n_threads, const train_lora *lo, uint64_t seed,
                              trainer **out, gpt2_err *e) {
    *out = NULL;
    const train_arch *arch = arch_of(m, e);
    if (!arch) return e->status;
    const char *targets = lo->targets ? lo->targets : arch->lora_targets;
    if (lo->rank < 1 || lo->rank > 4096 || !(lo->alpha > 0) || !*targets)
        return err_set(e, GPT2C_ERR_INVALID, "LoRA needs a rank in 1..4096, alpha > 0 and target modules");
    if (m->lm_head.type == WT_BF16P) /* training's products are f32 ones */
        return err_set(e, GPT2C_ERR_UNSUPPORTED, "LoRA training runs in f32; load the model without compute bf16");
    /* Each target must match some layer matrix; the adapted ones, in the
     * model's tensor order. */
    int *which = calloc((size_t)m->n_tensors + 1, sizeof *which), n = 0;
    size_t *counts = malloc(sizeof *counts * (size_t)(2 * m->n_tensors + 1));
    if (!which || !counts) {
        free(which), free(counts);
        return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    }
    gpt2c_status s = GPT2C_OK;
    for (const char *p = targets; !s && p && *p;) {
        const char *end = strchr(p, ',');
        const size_t tl = end ? (size_t)(end - p) : strlen(p);
        int found = 0;
        for (int i = 0; i < m->n_tensors; i++) {
            size_t len;
            const char *path = module_path(m, m->tensors[i].name, &len);
            if (layer_matrix(m, &m->tensors[i]) && target_matches(path, len, p, tl)) which[i] = found = 1;
        }
        if (!found) {
            size_t len;
            const char *ex = module_path(m, m->tensors[0].name, &len);
            for (int i = 0; i < m->n_tensors; i++)
                if (layer_matrix(m, &m->tensors[i])) {
                    ex = module_path(m, m->tensors[i].name, &len);
                    break;
                }
            s = err_set(e, GPT2C_ERR_INVALID, "LoRA target module '%.*s' matches no layer matrix of this %s model "
                        "(its modules are named like %.*s)", (int)tl, p, m->arch->model_type, (int)len, ex);
        }
        p = end ? end + 1 : NULL;
    }
    for (int i = 0; !s && i < m->n_tensors; i++) {
        if (!which[i]) continue;
        const gpt2_tensor *x = &m->tensors[i];
        if (x->w->type == WT_Q8)
            s = err_set(e, GPT2C_ERR_UNSUPPORTED, "LoRA needs F32, F16 or BF16 weights; %s is Q8", x->name);
        const int din = x->use == MAT_CONV1D ? x->d0 : x->d1, dout = x->use == MAT_CONV1D ? x->d1 : x->d0;
        counts[2 * n] = (size_t)lo->rank * din, counts[2 * n + 1] = (size_t)dout * lo->rank;
        which[n++] = i; /* which[] becomes the adapters' tensors, in order (n <= i) */
    }
    if (!s) s = trainer_alloc(m, B, T, n_threads, counts, 2 * n, 0, out, e);
    free(counts);
    if (s) return free(which), s;
    trainer *t = *out;
    t->lora_tensor = which, t->n_lora = n;
    t->lora_w = malloc(sizeof *t->lora_w * (size_t)(n + 1));
    t->lora_targets = strdup(targets);
    t->lora_rank = lo->rank, t->lora_scale = lo->alpha / (float)lo->rank;
    size_t widest = 0;
    for (int i = 0; i < n; i++) {
        const gpt2_tensor *x = &m->tensors[which[i]];
        if (t->lora_w) t->lora_w[i] = x->w->data;
        if ((size_t)x->d0 > widest) widest = (size_t)x->d0;
        if ((size_t)x->d1 > widest) widest = (size_t)x->d1;
    }
    const size_t N = (size_t)B * T;
    t->lora_h = mem_alloc(((size_t)n * N * (size_t)lo->rank + 1) * sizeof(float));
    t->lora_dh = mem_alloc(N * (size_t)lo->rank * sizeof(float));
    t->lora_tmp = mem_alloc(N * widest * sizeof(float));
    if (!t->lora_w || !t->lora_targets || !t->lora_h || !t->lora_dh || !t->lora_tmp) {
        trainer_free(t);
        *out = NULL;
        return err_set(e, GPT2C_ERR_NOMEM, "out of memory for the LoRA activations");
    }
    /* A: kaiming_uniform(a = sqrt(5)) bounds 1 / sqrt(din), from SplitMix64
     * of the seed; B: zero, so that training starts from the model as is. */
    uint64_t x = seed ^ 0x4c6f5241ull;
    for (int i = 0; i < n; i++) {
        size_t na = 0;
        float *A = trainer_param(t, 2 * i, &na);
        const float bound = 1.0f / sqrtf((float)(na / (size_t)lo->rank));
        for (size_t j = 0; j < na; j++) {
            x += 0x9e3779b97f4a7c15ull;
            const double u = (double)(op_dropout_mix(x) >> 11) / 9007199254740992.0;
            A[j] = (float)((2.0 * u - 1.0) * bound);
        }
        t->decay[2 * i] = t->decay[2 * i + 1] = 1; /* lora_A.weight, lora_B.weight: HF decays them */
    }
    return plan(out, e);
}

const char *trainer_lora_targets(const trainer *t) { return t->lora_targets; }

int trainer_n_tensors(const trainer *t) { return t->n_tensors; }

const char *trainer_tensor_name(const trainer *t, int i, char *buf, size_t n) {
    if (!t->lora_tensor) return t->m->tensors[i].name;
    size_t len;
    const char *path = module_path(t->m, t->m->tensors[t->lora_tensor[i / 2]].name, &len);
    snprintf(buf, n, "%.*s.lora_%c.weight", (int)len, path, i % 2 ? 'B' : 'A');
    return buf;
}

/* The adapter of the matrix whose data is w, or -1. */
static int lora_slot(const trainer *t, const void *w) {
    for (int i = 0; i < t->n_lora; i++)
        if (t->lora_w[i] == w) return i;
    return -1;
}


void train_linear(trainer *t, gpt2_weight w, const float *bias, float *y, const float *x, int N, int din, int dout) {
    const gpt2_kernels *k = t->m->k;
    op_matmul(t->pool, k, y, x, (op_mat){w.data, w.linear, w.type}, bias, N, din, dout);
    const int slot = lora_slot(t, w.data);
    if (slot < 0) return;
    const int r = t->lora_rank;
    size_t na, nb;
    const float *A = trainer_param(t, 2 * slot, &na), *Bm = trainer_param(t, 2 * slot + 1, &nb);
    float *h = t->lora_h + (size_t)slot * t->B * t->T * r;
    op_matmul(t->pool, k, h, x, (op_mat){A, 1, WT_F32}, NULL, N, din, r); // (N, r)
    for (size_t i = 0; i < (size_t)N * r; i++) h[i] *= t->lora_scale;
    op_matmul(t->pool, k, t->lora_tmp, h, (op_mat){Bm, 1, WT_F32}, NULL, N, r, dout); // (N, dout)
    fwd_add(y, t->lora_tmp, (size_t)N * dout);
}

void train_linear_dx(trainer *t, gpt2_weight w, const float *bias, float *dx, const float *dy, const float *x, int N,
                     int din, int dout, float *scratch) {
    const gpt2_kernels *k = t->m->k;
    op_matmul_dx(t->pool, k, dx, dy, (op_mat){w.data, w.linear, w.type}, N, din, dout);
    op_matmul_dw(t->pool, k, trainer_grad_of(t, w.data), trainer_grad_of(t, bias), x, dy, w.linear, N, din, dout,
                 scratch);
    const int slot = lora_slot(t, w.data);
    if (slot < 0) return;
    const int r = t->lora_rank;
    size_t na, nb;
    const float *A = trainer_param(t, 2 * slot, &na), *Bm = trainer_param(t, 2 * slot + 1, &nb);
    float *gA = trainer_grad(t, 2 * slot, &na), *gB = trainer_grad(t, 2 * slot + 1, &nb);
    const float *h = t->lora_h + (size_t)slot * t->B * t->T * r;
    op_matmul_dw(t->pool, k, gB, NULL, h, dy, 1, N, r, dout, scratch);                  // dB += dy^T h
    op_matmul_dx(t->pool, k, t->lora_dh, dy, (op_mat){Bm, 1, WT_F32}, N, r, dout);      // d h = dy B
    for (size_t i = 0; i < (size_t)N * r; i++) t->lora_dh[i] *= t->lora_scale;
    op_matmul_dw(t->pool, k, gA, NULL, x, t->lora_dh, 1, N, din, r, scratch);           // dA += dh^T x
    op_matmul_dx(t->pool, k, t->lora_tmp, t->lora_dh, (op_mat){A, 1, WT_F32}, N, din, r); // dh A
    fwd_add(dx, t->lora_tmp, (size_t)N * din);
}

void trainer_free(trainer *t) {
    if (!t) return;
    pool_free(t->pool);
    if (t->owns_params) free(t->params);
    free(t->grads);
    free(t->m1);
    free(t->m2);
    free(t->acts);
    free(t->tokens);
    free(t->targets);
    free(t->offset);
    free(t->decay);
    free(t->lora_tensor);
    free(t->lora_w);
    free(t->lora_targets);
    tape_free(t->tape);
    free(t->lora_h);
    free(t->lora_dh);
    free(t->lora_tmp);
    free(t);
}

void trainer_set_dropout(trainer *t, float embd, float attn, float resid, uint64_t seed) {
    t->pdrop_embd = embd, t->pdrop_attn = attn, t->pdrop_resid = resid, t->drop_seed = seed;
}

void trainer_set_mode(trainer *t, int training, uint64_t counter) {
    t->training = training, t->drop_counter = counter;
}

size_t trainer_n_params(const trainer *t) { return t->n_params; }
long trainer_steps(const trainer *t) { return t->steps; }
void trainer_set_steps(trainer *t, long steps) { t->steps = steps; }
float *trainer_moments(trainer *t, int which) { return which ? t->m2 : t->m1; }

float *trainer_param(trainer *t, int i, size_t *count) {
    if (i < 0 || i >= t->n_tensors) return NULL;
    *count = t->offset[i + 1] - t->offset[i];
    return t->params + t->offset[i];
}

float *trainer_grad(trainer *t, int i, size_t *count) {
    float *p = trainer_param(t, i, count);
    return p ? trainer_grad_of(t, p) : NULL;
}

gpt2c_status trainer_forward(trainer *t, const int32_t *tokens, const int32_t *labels, int B, int T, double *loss,
                             long *n_targets, gpt2_err *e) {
    const int V = t->m->cfg.n_vocab;
    if (B < 1 || B > t->B || T < 1 || T > t->T)
        return err_set(e, GPT2C_ERR_INVALID, "batch of %d x %d tokens: the trainer takes up to %d x %d", B, T, t->B,
                       t->T);
    if (!labels) labels = tokens;
    long n = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) {
            const size_t at = (size_t)b * T + (size_t)i;
            if (tokens[at] < 0 || tokens[at] >= V)
                return err_set(e, GPT2C_ERR_INVALID, "token id %d at (%d, %d) is outside the vocabulary (%d)",
                               (int)tokens[at], b, i, V);
            const int32_t y = i + 1 < T ? labels[at + 1] : TRAIN_IGNORE;
            if (y != TRAIN_IGNORE && (y < 0 || y >= V))
                return err_set(e, GPT2C_ERR_INVALID, "label %d at (%d, %d) is outside the vocabulary (%d)", (int)y,
                               b, i + 1, V);
            t->tokens[at] = tokens[at];
            t->targets[at] = y;
            n += y != TRAIN_IGNORE;
        }
    t->fB = B, t->fT = T;
    *n_targets = n;
    *loss = t->arch->forward(t, t->tokens, B, T);
    if (t->tape && tape_failed(t->tape)) return err_set(e, GPT2C_ERR_NOMEM, "out of memory in the training pass");
    return GPT2C_OK;
}

void trainer_backward(trainer *t, float scale) { t->arch->backward(t, scale); }

void trainer_zero_grad(trainer *t) { memset(t->grads, 0, t->n_params * sizeof(float)); }

/* ------------------------------------------------------------- the update */

typedef struct step_op {
    trainer *t;
    double *sq;        /* (n_tensors,) each gradient's sum of squares */
    float lr, clip, bc1, bc2_sqrt;
    const train_hparams *h;
} step_op;

/* Tensors dealt out in turn; each tensor's sum is one thread's, in order. */
static void sumsq_run(void *ctx, int ith, int nth) {
    const step_op *o = ctx;
    for (int i = ith; i < o->t->n_tensors; i += nth) {
        const float *g = o->t->grads + o->t->offset[i];
        double s = 0.0;
        for (size_t j = 0; j < o->t->offset[i + 1] - o->t->offset[i]; j++) s += (double)g[j] * g[j];
        o->sq[i] = s;
    }
}

/* torch.optim.AdamW's single-tensor update (the table's adamw, kernels.h),
 * over this thread's share of the values, a tensor's part at a time. */
static void adamw_run(void *ctx, int ith, int nth) {
    const step_op *o = ctx;
    trainer *t = o->t;
    const train_hparams *h = o->h;
    const size_t lo = t->n_params * (size_t)ith / (size_t)nth, hi = t->n_params * (size_t)(ith + 1) / (size_t)nth;
    gpt2_adamw_args a = {o->clip, 1.0f, h->beta1, h->beta2, o->lr / o->bc1, o->bc2_sqrt, h->eps};
    for (int i = 0; i < t->n_tensors; i++) {
        const size_t a0 = t->offset[i] > lo ? t->offset[i] : lo, a1 = t->offset[i + 1] < hi ? t->offset[i + 1] : hi;
        if (a0 >= a1) continue;
        a.decay = t->decay[i] && h->weight_decay != 0.0f ? 1.0f - o->lr * h->weight_decay : 1.0f;
        t->m->k->adamw(t->params + a0, t->grads + a0, t->m1 + a0, t->m2 + a0, a1 - a0, &a);
    }
}

double trainer_step(trainer *t, const train_hparams *h, float lr) {
    const int n = t->n_tensors;
    double *sq = malloc((size_t)n * sizeof *sq), norm = 0.0;
    step_op o = {.t = t, .sq = sq, .h = h, .lr = lr, .clip = 1.0f};
    if (sq) { /* without the memory, no clipping: the step itself still runs */
        pool_run(t->pool, sumsq_run, &o);
        for (int i = 0; i < n; i++) norm += sq[i];
        free(sq);
        norm = sqrt(norm);
        /* torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6), at most 1. */
        const double coef = h->max_grad_norm / (norm + 1e-6);
        if (h->max_grad_norm > 0.0f && coef < 1.0) o.clip = (float)coef;
    }
    t->steps++;
    o.bc1 = (float)(1.0 - pow(h->beta1, (double)t->steps));
    o.bc2_sqrt = (float)sqrt(1.0 - pow(h->beta2, (double)t->steps));
    pool_run(t->pool, adamw_run, &o);
    return norm;
}

double train_linear_schedule(long step, long warmup, long total) {
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    const double left = (double)(total - step) / (double)(total - warmup > 1 ? total - warmup : 1);
    return left > 0.0 ? left : 0.0;
}
