/* forward_util.h -- for tests that look inside the engine: the logits at
 * every position of a prompt, from one cache-free pass of the model, a
 * generation run to its end, and a golden beam-search case checked. */
#ifndef GPT2C_TESTS_FORWARD_UTIL_H
#define GPT2C_TESTS_FORWARD_UTIL_H

#include <math.h>

#include "model/model.h"
#include "testutil.h"

/* (n, n_vocab) logits: row i follows ids[0..i], through the model in
 * chunks of `chunk` tokens: 1 decodes token by token (the streamed
 * product), more run as a prompt (tiled, packed from 64 rows). */
static inline float *forward_chunked(const gpt2c_model *m, const int32_t *ids, int n, int chunk) {
    gpt2_state st;
    gpt2_err e = {0};
    assert_int_equal(gpt2_state_init(&st, m, 1, n, chunk, 0, &e), GPT2C_OK);
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

/* The same in one cache-free pass of up to 64 tokens a chunk. */
static inline float *forward_all(const gpt2c_model *m, const int32_t *ids, int n) {
    return forward_chunked(m, ids, n, 64);
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

/* A golden beam-search case (input_ids, num_beams, num_return_sequences,
 * max_new_tokens, length_penalty, early_stopping; new_ids and
 * sequences_scores as transformers gave them), with and without the cache:
 * the same sequences -- transformers pads finished ones with `pad`, -1 when
 * its golden never pads -- and scores within 1e-4. */
static inline void check_beam_case(gpt2c_model *m, json_t *c, int pad, const char *what) {
    int n;
    int32_t *ids = json_ids(json_object_get(c, "input_ids"), &n);
    const int32_t *prompts[1] = {ids};
    gpt2c_gen_params p;
    gpt2c_gen_params_init(&p);
    p.num_beams = (int)json_integer_value(json_object_get(c, "num_beams"));
    p.num_return_sequences = (int)json_integer_value(json_object_get(c, "num_return_sequences"));
    p.max_new_tokens = (int)json_integer_value(json_object_get(c, "max_new_tokens"));
    p.length_penalty = (float)json_number_value(json_object_get(c, "length_penalty"));
    p.early_stopping = json_is_true(json_object_get(c, "early_stopping"));
    for (int cache = 1; cache >= 0; cache--) {
        p.use_cache = cache;
        gpt2c_gen *gen = gen_run(m, &p, 1, prompts, &n);
        assert_int_equal(gpt2c_gen_n_seqs(gen), p.num_return_sequences);
        for (int r = 0; r < p.num_return_sequences; r++) {
            int nw, got_n;
            int32_t *want = json_ids(json_array_get(json_object_get(c, "new_ids"), (size_t)r), &nw);
            const int32_t *got = gpt2c_gen_tokens(gen, r, &got_n);
            while (pad >= 0 && nw > got_n && want[nw - 1] == pad) nw--;
            char msg[200];
            snprintf(msg, sizeof msg, "%s beam %s rank %d (%s cache)", what,
                     json_string_value(json_object_get(c, "prompt")), r, cache ? "with" : "without");
            assert_ids_equal(got, got_n, want, nw, msg);
            double ws = json_number_value(json_array_get(json_object_get(c, "sequences_scores"), (size_t)r));
            if (fabs(gpt2c_gen_score(gen, r) - ws) > 1e-4)
                fail_msg("%s: score %.7f, expected %.7f", msg, gpt2c_gen_score(gen, r), ws);
            free(want);
        }
        gpt2c_gen_free(gen);
    }
    free(ids);
}

#endif
