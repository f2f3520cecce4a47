/* forward_util.h -- for tests that look inside the engine: the logits at
 * every position of a prompt, from one cache-free pass of the model, and a
 * generation run to its end. */
#ifndef GPT2C_TESTS_FORWARD_UTIL_H
#define GPT2C_TESTS_FORWARD_UTIL_H

#include "model/model.h"
#include "testutil.h"

/* (n, n_vocab) logits: row i follows ids[0..i]. */
static inline float *forward_all(const gpt2c_model *m, const int32_t *ids, int n) {
    gpt2_state st;
    gpt2_err e = {0};
    assert_int_equal(gpt2_state_init(&st, m, 1, n, 64, 0, &e), GPT2C_OK);
    const size_t N = n > 0 ? (size_t)n : 1;
    int *pos = malloc(sizeof(int) * N), *slot = calloc(N, sizeof(int));
    for (int i = 0; i < n; i++) pos[i] = i;
    float *logits = malloc(sizeof(float) * N * (size_t)m->cfg.n_vocab);
    assert_non_null(logits);
    gpt2_batch b = {n, ids, pos, slot, pos};
    if (gpt2_forward(m, &st, &b, logits, &e) != GPT2C_OK) fail_msg("forward: %s", e.msg);
    gpt2_state_free(&st);
    free(pos);
    free(slot);
    return logits;
}

/* Runs a generation to its end with the public API; the caller frees it. */
static inline gpt2c_gen *gen_run(gpt2c_model *m, const gpt2c_gen_params *p, int n_prompts,
                                 const int32_t *const *prompts, const int *lens) {
    gpt2c_gen *gen;
    if (gpt2c_gen_start(m, p, n_prompts, prompts, lens, &gen) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(gen));
    gpt2c_status s;
    while ((s = gpt2c_gen_step(gen)) == GPT2C_OK) {
    }
    assert_int_equal(s, GPT2C_DONE);
    return gen;
}

#endif
