/* train.h -- fine-tuning a loaded model: its parameters as one trainable f32
 * buffer (with gradients and AdamW's two moments beside it), a forward pass
 * that keeps what backward needs and returns the causal-LM loss, the
 * backward pass, and the optimiser step (torch.optim.AdamW's update, after
 * clipping by the global norm as HF's Trainer does).
 *
 * The model itself is repointed at the trainable buffer (which it owns),
 * so that the inference engine (samples, perplexity) and gpt2c_model_save
 * see the weights as they are trained. Each architecture's pass lives in a file of
 * its own (gpt2_train.c) behind train_arch; the operations they share, each
 * with a plain-C reference beside the fast one, in ops.c. */
#ifndef GPT2C_TRAIN_TRAIN_H
#define GPT2C_TRAIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "../core/err.h"
#include "../model/model.h"

/* The label that takes no part in the loss (transformers' ignore_index). */
#define TRAIN_IGNORE (-100)

typedef struct trainer trainer;

/* AdamW and the clipping before it; HF Trainer's defaults are lr 5e-5,
 * betas 0.9 / 0.999, eps 1e-8, weight decay 0, max_grad_norm 1 (0: no
 * clipping). */
typedef struct train_hparams {
    float beta1, beta2, eps, weight_decay, max_grad_norm;
} train_hparams;

/* A trainer for m, for micro-batches of up to B sequences of up to T
 * tokens. m must hold F32 weights (gpt2c_model_load_ex's dtype "f32"): its
 * tensors are copied into one buffer that m owns and reads from then on,
 * trained or not, after the trainer is freed too (which must come before
 * m is). n_threads 0: one per core. */
gpt2c_status trainer_new(gpt2c_model *m, int B, int T, int n_threads, trainer **out, gpt2_err *e);
void trainer_free(trainer *t);

/* Dropout probabilities (GPT-2's embd_pdrop, attn_pdrop, resid_pdrop; all 0
 * by default) and the seed of their masks. */
void trainer_set_dropout(trainer *t, float embd, float attn, float resid, uint64_t seed);
/* Training mode (dropout on) or evaluation mode (off), as model.train() and
 * model.eval(); and the counter that picks a forward's masks (the
 * micro-batch's number, so that a resumed run draws the same ones). */
void trainer_set_mode(trainer *t, int training, uint64_t counter);

/* LoRA (Hu et al. 2021, as PEFT applies it): the chosen matrices W of
 * every layer get y = x W + b + (alpha / r) (x A^T) B^T with A (r, din)
 * and B (dout, r) trained and everything else frozen, read where the model
 * holds it (the mapping, F32, F16 or BF16). A starts as PEFT's
 * kaiming_uniform(a = sqrt(5)), uniform in +-1 / sqrt(din), B at zero.
 * targets is PEFT's target_modules, comma-separated: a name matches each
 * layer matrix whose module path ends in it at a dot ("c_proj" is both of
 * GPT-2's projections, "attn.c_proj" one); NULL: the architecture's
 * default, PEFT's (train_arch.lora_targets). */
typedef struct train_lora {
    int rank;
    float alpha;
    const char *targets;
} train_lora;
gpt2c_status trainer_new_lora(gpt2c_model *m, int B, int T, int n_threads, const train_lora *lo, uint64_t seed,
                              trainer **out, gpt2_err *e);
/* The LoRA targets the trainer was made with, as given or defaulted. */
const char *trainer_lora_targets(const trainer *t);

/* The trainable tensors: the model's (full fine-tuning) or the adapters
 * (LoRA, named after the matrix they adapt, without the architecture's
 * prefix: "h.0.attn.c_attn.lora_A.weight"). */
int trainer_n_tensors(const trainer *t);
const char *trainer_tensor_name(const trainer *t, int i, char *buf, size_t n);

/* The number of trainable values, and of optimiser steps taken. */
size_t trainer_n_params(const trainer *t);
long trainer_steps(const trainer *t);

/* Forward over tokens (B, T), B and T at most the trainer's: *loss gets
 * the summed cross-entropy of every position t < T - 1 whose next label
 * labels[b, t + 1] is not TRAIN_IGNORE (GPT2LMHeadModel's shifted loss),
 * and *n_targets the number of such targets. labels NULL: the tokens
 * themselves. Keeps the activations for trainer_backward. */
gpt2c_status trainer_forward(trainer *t, const int32_t *tokens, const int32_t *labels, int B, int T, double *loss,
                             long *n_targets, gpt2_err *e);
/* Adds to the gradients those of (scale x the summed loss) of the last
 * forward: scale 1 / (targets x accumulation steps) gives the mean HF's
 * Trainer differentiates. */
void trainer_backward(trainer *t, float scale);
void trainer_zero_grad(trainer *t);

/* One optimiser step at learning rate lr: the gradients clipped to
 * h->max_grad_norm by their global L2 norm, then AdamW, with weight decay on
 * matrices only (HF's Trainer excludes biases and LayerNorm weights, which
 * here are the vectors). Returns the norm before clipping. */
double trainer_step(trainer *t, const train_hparams *h, float lr);

/* Trainable tensor i: its values and gradient (count elements); NULL past
 * the end. */
float *trainer_param(trainer *t, int i, size_t *count);
float *trainer_grad(trainer *t, int i, size_t *count);

/* The optimiser's state for checkpoints: the two moments (n_params each)
 * and the step count. */
float *trainer_moments(trainer *t, int which);
void trainer_set_steps(trainer *t, long steps);

/* HF's get_linear_schedule_with_warmup: the multiplier of the base learning
 * rate for optimiser step `step` (counted from 0) of `total`. */
double train_linear_schedule(long step, long warmup, long total);

/* A product of the pass: y (N, dout) = x W + bias, W as the model holds it
 * (Conv1D or nn.Linear, any float type), plus LoRA's (alpha / r) (x A^T)
 * B^T where the trainer has an adapter for W; and its backward: dx
 * written, W's and bias's gradients added where they train, or A's and
 * B's. scratch: op_matmul_dw_scratch for the widest side. */
void train_linear(trainer *t, gpt2_weight w, const float *bias, float *y, const float *x, int N, int din, int dout);
void train_linear_dx(trainer *t, gpt2_weight w, const float *bias, float *dx, const float *dy, const float *x, int N,
                     int din, int dout, float *scratch);

/* ------------------------------------------------- an architecture's pass */

typedef struct tape tape;

/* What an architecture supplies: its passes, written out by hand
 * (gpt2_train.c: the floats its saved activations and scratch take for
 * (B, T) on n_threads, and its forward and backward over them), or its
 * forward only, on the tape (tape.h: build, with tape_forward and
 * tape_backward); trainer_forward and trainer_backward's contracts, the
 * targets in t->targets. Then its config's dropout probabilities (the keys
 * for the embeddings', the attention probabilities' and the sublayer
 * outputs', NULL where it has none, and the defaults of its config class),
 * and PEFT's default LoRA targets for it. */
typedef struct train_arch {
    const char *model_type;
    size_t (*act_floats)(const gpt2_config *c, int B, int T, int n_threads);
    double (*forward)(trainer *t, const int32_t *tokens, int B, int T);
    void (*backward)(trainer *t, float scale);
    double (*build)(tape *tp, trainer *t);
    const char *dropout_keys[3];
    float dropout_defaults[3];
    const char *lora_targets;
} train_arch;

extern const train_arch train_gpt2, train_gpt_neo, train_opt, train_gpt_neox, train_bloom, train_gpt_bigcode,
    train_codegen;

struct trainer {
    gpt2c_model *m;
    const train_arch *arch;
    gpt2_pool *pool;
    int B, T;                 /* the largest micro-batch */
    int fB, fT;               /* the last forward's */
    size_t n_params;
    float *params, *grads;    // (n_params,) in m->tensors order
    float *m1, *m2;           // (n_params,) AdamW's moments
    size_t *offset;           // (n_tensors + 1,) where each tensor starts
    float *acts;              /* the architecture's activations and scratch */
    int32_t *tokens, *targets; // (B, T) of the last forward; targets shifted (TRAIN_IGNORE: none)
    long steps;
    int n_tensors, owns_params;
    unsigned char *decay;     // (n_tensors,) AdamW decays it (matrices)
    /* LoRA: adapter i, of tensors 2 i (A) and 2 i + 1 (B), adapts the
     * model's tensor lora_tensor[i], whose data lora_w[i] is. */
    int lora_rank, n_lora;
    char *lora_targets;
    float lora_scale;         /* alpha / r */
    int *lora_tensor;
    const void **lora_w;
    float *lora_h;            // (adapters, N, r) s x A's output of the last forward
    float *lora_dh, *lora_tmp; // (N, r), (N, the widest dout or din)
    tape *tape;               /* an architecture written on the tape: its record */
    /* Dropout (ops.h's masks): on in training mode; each micro-batch's
     * counter picks its masks (trainer_set_dropout). */
    float pdrop_embd, pdrop_attn, pdrop_resid;
    uint64_t drop_seed, drop_counter;
    int training;
};

/* The gradient of a parameter the model points at (a matrix's data or a
 * vector): the same offset in the gradients; NULL for a frozen one. */
static inline float *trainer_grad_of(trainer *t, const void *param) {
    const uintptr_t p = (uintptr_t)param, b = (uintptr_t)t->params;
    return p >= b && p < b + t->n_params * sizeof(float) ? t->grads + (p - b) / sizeof(float) : NULL;
}

#endif
