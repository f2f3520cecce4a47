/* tape.h -- a training pass written forward only. Each operation computes
 * its output at once and is recorded; backward replays the record in
 * reverse, each operation sending its output's gradient to its inputs and
 * to the parameters that train (trainer_grad_of: NULL for frozen ones), so
 * an architecture's pass (gpt_neo_train.c, opt_train.c, ...) is the mirror
 * of its inference forward and nothing more. GPT-2's pass is written out by
 * hand (gpt2_train.c), forward and backward, as llm.c does.
 *
 * Values are (N, width) f32 matrices, N = B x T tokens, row b T + t for
 * token t of sequence b. Every buffer is made by a planning run at the
 * trainer's start (tape_plan: the pass and its backward over the largest
 * batch, computing nothing), so that a failure to get memory shows then,
 * and each later pass, recording the same operations, reuses them: the
 * values' own buffers, and gradients from a pool (a value's gradient lives
 * from the first operation that sends it one until its own producer has
 * been replayed). */
#ifndef GPT2C_TRAIN_TAPE_H
#define GPT2C_TRAIN_TAPE_H

#include "ops.h"
#include "train.h"

typedef int tv; /* a value on the tape */

tape *tape_new(trainer *t);
void tape_free(tape *tp);
/* The planning run (above); fails with the memory it could not get. */
gpt2c_status tape_plan(trainer *t, gpt2_err *e);
/* trainer_forward and trainer_backward for an architecture written on the
 * tape (train_arch.build). */
double tape_forward(trainer *t, const int32_t *tokens, int B, int T);
void tape_backward(trainer *t, float scale);
/* Whether memory failed (which the planning run rules out). */
int tape_failed(const tape *tp);

/* The operations an architecture's build writes its pass with. */
/* (N, width) the rows ids[i] of w (N,) -- the token embedding at the
 * tokens, learned positions at position + offset (tp_positions). */
tv tp_rows(tape *tp, gpt2_weight w, const int32_t *ids, int width);
tv tp_tokens(tape *tp, gpt2_weight w, int width);
tv tp_positions(tape *tp, gpt2_weight w, int offset, int width);
tv tp_add(tape *tp, tv a, tv b);
tv tp_layernorm(tape *tp, tv x, const float *g, const float *b, float eps);
/* x W + bias (W in its stored layout and type; LoRA's adapter where the
 * trainer has one for W). */
tv tp_linear(tape *tp, tv x, gpt2_weight w, const float *bias, int dout);
tv tp_act(tape *tp, tv x, gpt2_act act);
/* Dropout with probability p at the pass's next site (sites are numbered
 * in the order the pass meets them; ops.h's masks). */
tv tp_dropout(tape *tp, tv x, float p);
/* The columns idx (dout,) of x; [a | b | c] side by side. tp_index
 * lends n ints to fill with a gather's columns (until the next call). */
tv tp_gather(tape *tp, tv x, const int *idx, int dout);
int *tp_index(tape *tp, size_t n);
tv tp_concat3(tape *tp, tv a, tv b, tv c);
/* Rotary embedding on q and k of a (N, 3C) q | k | v (fwd_rope). */
tv tp_rotary(tape *tp, tv qkv, int H, int n_rot, float base, int interleaved);
/* Causal attention of a (N, 3C) q | k | v into (N, C); its probabilities
 * dropped with p at the next site. */
tv tp_attention(tape *tp, tv qkv, int H, float scale_div, int window, const float *alibi, float p);
/* The summed cross-entropy of logits (N, V) against the trainer's
 * targets: the end of the pass, whose backward starts there. */
double tp_loss(tape *tp, tv logits);

/* Blocks the architectures share: the layer's MLP, proj(act(fc(x)))
 * (fwd_mlp's); a (N, 3C) row of per-head [q_h k_h v_h] to q | k | v
 * (fwd_unfuse_heads'); and the end of a pre-LN decoder, final LayerNorm,
 * LM head (with its bias, if any) and loss. */
tv tp_mlp(tape *tp, const gpt2c_model *m, const gpt2_layer *L, tv x);
tv tp_unfuse_heads(tape *tp, tv qkv, int H);
double tp_final_loss(tape *tp, const gpt2c_model *m, tv x);

#endif
