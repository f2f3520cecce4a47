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

static const train_arch *const ARCHS[] = {&train_gpt2};

static size_t tensor_count(const gpt2_tensor *t) { return (size_t)t->d0 * (size_t)(t->d1 > 0 ? t->d1 : 1); }

static const train_arch *arch_of(const gpt2c_model *m, gpt2_err *e) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof *ARCHS; i++)
        if (!strcmp(ARCHS[i]->model_type, m->arch->model_type)) return ARCHS[i];
    err_set(e, GPT2C_ERR_UNSUPPORTED, "fine-tuning supports model_type gpt2; this model is %s", m->arch->model_type);
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
    t->acts = mem_alloc(arch->act_floats(&m->cfg, B, T, n_threads) * sizeof(float));
    t->tokens = malloc(nt * sizeof *t->tokens);
    t->targets = malloc(nt * sizeof *t->targets);
    if (t->offset && t->decay && t->grads && t->m1 && t->m2 && t->acts && t->tokens && t->targets)
        t->params = owned_by_model ? model_own(m, bytes) : mem_alloc(bytes);
    t->owns_params = !owned_by_model;
    if (!t->offset || !t->decay || !t->pool || !t->params || !t->grads || !t->m1 || !t->m2 || !t->acts ||
        !t->tokens || !t->targets) {
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
    return GPT2C_OK;
}

const char *const lora_module_names[LORA_MODULES] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};

unsigned lora_parse_targets(const char *list, char *bad, size_t n) {
    unsigned bits = 0;
    const char *p = list;
    while (p && *p) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        unsigned found = 0;
        for (int i = 0; i < LORA_MODULES; i++) {
            /* A name matches a module whose path ends in it at a dot. */
            const char *mod = lora_module_names[i];
            const size_t ml = strlen(mod);
            if (len && len <= ml && !strncmp(mod + ml - len, p, len) && (len == ml || mod[ml - len - 1] == '.'))
                found |= 1u << i;
        }
        if (!found) {
            snprintf(bad, n, "%.*s", (int)len, p);
            return 0;
        }
        bits |= found;
        p = end ? end + 1 : NULL;
    }
    if (!bits) snprintf(bad, n, "(empty)");
    return bits;
}

/* A module's matrix in layer l and its (din, dout). */
static const gpt2_weight *lora_weight(const gpt2c_model *m, int l, int mod, int *din, int *dout) {
    const gpt2_layer *ly = &m->layers[l];
    const int C = m->cfg.n_embd, F = m->cfg.n_inner;
    static const int in_f[LORA_MODULES] = {0, 0, 0, 1}, out_f[LORA_MODULES] = {2, 0, 1, 0}; /* C, F, 3C */
    const int sizes[3] = {C, F, 3 * C};
    *din = sizes[in_f[mod]], *dout = sizes[out_f[mod]];
    const gpt2_weight *w[LORA_MODULES] = {&ly->qkv_w, &ly->o_w, &ly->fc_w, &ly->proj_w};
    return w[mod];
}

gpt2c_status trainer_new_lora(gpt2c_model *m, int B, int T, int n_threads, const train_lora *lo, uint64_t seed,
                              trainer **out, gpt2_err *e) {
    *out = NULL;
    if (lo->rank < 1 || lo->rank > 4096 || !(lo->alpha > 0) || !lo->targets)
        return err_set(e, GPT2C_ERR_INVALID, "LoRA needs a rank in 1..4096, alpha > 0 and target modules");
    const int L = m->cfg.n_layer;
    int n_slots = 0;
    for (int mod = 0; mod < LORA_MODULES; mod++) n_slots += (lo->targets >> mod & 1) ? L : 0;
    size_t *counts = malloc(sizeof *counts * (size_t)(2 * n_slots + 1));
    int *slot_of = malloc(sizeof *slot_of * (size_t)L * LORA_MODULES);
    if (!counts || !slot_of) {
        free(counts), free(slot_of);
        return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    }
    int k = 0;
    for (int l = 0; l < L; l++)
        for (int mod = 0; mod < LORA_MODULES; mod++) {
            slot_of[l * LORA_MODULES + mod] = -1;
            if (!(lo->targets >> mod & 1)) continue;
            int din, dout;
            const gpt2_weight *w = lora_weight(m, l, mod, &din, &dout);
            if (w->type == WT_Q8 || w->linear) {
                free(counts), free(slot_of);
                return err_set(e, GPT2C_ERR_UNSUPPORTED, "LoRA needs F32, F16 or BF16 Conv1D weights; h.%d.%s is %s",
                               l, lora_module_names[mod], wtype_name(w->type));
            }
            counts[2 * k] = (size_t)lo->rank * din, counts[2 * k + 1] = (size_t)dout * lo->rank;
            slot_of[l * LORA_MODULES + mod] = k++;
        }
    gpt2c_status s = trainer_alloc(m, B, T, n_threads, counts, 2 * n_slots, 0, out, e);
    free(counts);
    if (s) return free(slot_of), s;
    trainer *t = *out;
    t->slot_of = slot_of;
    t->lora_rank = lo->rank, t->lora_scale = lo->alpha / (float)lo->rank, t->lora_targets = lo->targets;
    const size_t N = (size_t)B * T, C = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    t->lora_h = mem_alloc((size_t)n_slots * N * (size_t)lo->rank * sizeof(float));
    t->lora_dh = mem_alloc(N * (size_t)lo->rank * sizeof(float));
    t->lora_tmp = mem_alloc(N * (F > 3 * C ? F : 3 * C) * sizeof(float));
    if (!t->lora_h || !t->lora_dh || !t->lora_tmp) {
        trainer_free(t);
        *out = NULL;
        return err_set(e, GPT2C_ERR_NOMEM, "out of memory for the LoRA activations");
    }
    /* A: kaiming_uniform(a = sqrt(5)) bounds 1 / sqrt(din), from SplitMix64
     * of the seed; B: zero, so that training starts from the model as is. */
    uint64_t x = seed ^ 0x4c6f5241ull;
    for (int i = 0; i < n_slots; i++) {
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
    return GPT2C_OK;
}

int trainer_n_tensors(const trainer *t) { return t->n_tensors; }

const char *trainer_tensor_name(const trainer *t, int i, char *buf, size_t n) {
    if (!t->slot_of) return t->m->tensors[i].name;
    for (int s = 0; s < t->m->cfg.n_layer * LORA_MODULES; s++)
        if (t->slot_of[s] == i / 2) {
            snprintf(buf, n, "h.%d.%s.lora_%c.weight", s / LORA_MODULES, lora_module_names[s % LORA_MODULES],
                     i % 2 ? 'B' : 'A');
            return buf;
        }
    return "";
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
    free(t->slot_of);
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

/* torch.optim.AdamW's single-tensor update, element by element:
 *   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *   p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
static void adamw_run(void *ctx, int ith, int nth) {
    const step_op *o = ctx;
    trainer *t = o->t;
    const train_hparams *h = o->h;
    const size_t lo = t->n_params * (size_t)ith / (size_t)nth, hi = t->n_params * (size_t)(ith + 1) / (size_t)nth;
    int i = 0;
    while (t->offset[i + 1] <= lo && i + 1 < t->n_tensors) i++;
    const float step_size = o->lr / o->bc1;
    for (size_t j = lo; j < hi; j++) {
        while (j >= t->offset[i + 1]) i++;
        const float g = t->grads[j] * o->clip;
        t->grads[j] = g;
        if (t->decay[i] && h->weight_decay != 0.0f) t->params[j] *= 1.0f - o->lr * h->weight_decay;
        t->m1[j] = t->m1[j] * h->beta1 + g * (1.0f - h->beta1);
        t->m2[j] = t->m2[j] * h->beta2 + g * g * (1.0f - h->beta2);
        const float denom = sqrtf(t->m2[j]) / o->bc2_sqrt + h->eps;
        t->params[j] -= step_size * (t->m1[j] / denom);
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
