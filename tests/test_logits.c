/* test_logits.c -- the per-step score processing against hand-computed
 * expectations, and the repetition penalty end to end in greedy mode. */
#include <math.h>

#include "generate/logits.h"
#include "testutil.h"

static void test_repetition_penalty(void **state) {
    (void)state;
    float s[6] = {2.0f, -2.0f, 0.0f, 3.0f, -1.0f, 1.0f};
    unsigned char seen[6] = {0};
    /* Id 0 twice: penalised once. Positive divided, negative multiplied. */
    int32_t ids[] = {0, 1, 2, 0, 4};
    logits_repetition_penalty(s, 6, ids, 5, 2.0f, seen);
    const float want[6] = {1.0f, -4.0f, 0.0f, 3.0f, -2.0f, 1.0f};
    for (int i = 0; i < 6; i++) assert_float_equal(s[i], want[i], 0.0f);
    for (int i = 0; i < 6; i++) assert_int_equal(seen[i], 0); /* scratch left clean */
    /* A penalty below 1 rewards instead. */
    float r[2] = {2.0f, -2.0f};
    int32_t both[] = {0, 1};
    logits_repetition_penalty(r, 2, both, 2, 0.5f, seen);
    assert_float_equal(r[0], 4.0f, 0.0f);
    assert_float_equal(r[1], -1.0f, 0.0f);
}

static void test_argmax_first_on_tie(void **state) {
    (void)state;
    float s[5] = {1.0f, 3.0f, -INFINITY, 3.0f, 2.0f};
    assert_int_equal(logits_argmax(s, 5), 1);
    float neg[3] = {-INFINITY, -5.0f, -INFINITY};
    assert_int_equal(logits_argmax(neg, 3), 1);
}

static void test_logsumexp_and_top_k(void **state) {
    (void)state;
    float s[4] = {0.0f, log(3.0f), -INFINITY, 0.0f};
    assert_float_equal(logits_logsumexp(s, 4), log(5.0), 1e-6);
    int32_t idx[3];
    float t[6] = {0.5f, 2.0f, 1.0f, 2.0f, -1.0f, 1.5f};
    logits_top_k(t, 6, 3, idx);
    assert_int_equal(idx[0], 1); /* ties keep the lower index first */
    assert_int_equal(idx[1], 3);
    assert_int_equal(idx[2], 5);
}

/* Greedy with a strong penalty never repeats a token on a random model that,
 * unpenalised, repeats one token forever. */
static void test_penalty_in_greedy(void **state) {
    (void)state;
    const char *ref = getenv("GPT2C_REF_DIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tiny-f32", ref ? ref : "build/ref");
    gpt2c_model *m;
    if (gpt2c_model_load(dir, &m) != GPT2C_OK) fail_msg("%s", gpt2c_model_errmsg(m));
    int32_t prompt[] = {15496, 11, 314, 1101};
    int n = 4;
    const int32_t *p[1] = {prompt};
    for (int pass = 0; pass < 2; pass++) {
        gpt2c_gen_params gp;
        gpt2c_gen_params_init(&gp);
        gp.max_new_tokens = 12;
        gp.eos_token_id = -1;
        gp.repetition_penalty = pass ? 1000.0f : 1.0f;
        gpt2c_gen *g;
        assert_int_equal(gpt2c_gen_start(m, &gp, 1, p, &n, &g), GPT2C_OK);
        while (gpt2c_gen_step(g) == GPT2C_OK) {
        }
        int got;
        const int32_t *t = gpt2c_gen_tokens(g, 0, &got);
        assert_int_equal(got, 12);
        int repeats = 0;
        for (int i = 0; i < got; i++) {
            for (int j = 0; j < i; j++) repeats += t[i] == t[j];
            for (int j = 0; j < n; j++) repeats += t[i] == prompt[j];
        }
        if (pass == 0) assert_true(repeats > 0); /* the premise: it does repeat */
        else assert_int_equal(repeats, 0);
        gpt2c_gen_free(g);
    }
    gpt2c_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repetition_penalty), cmocka_unit_test(test_argmax_first_on_tie),
        cmocka_unit_test(test_logsumexp_and_top_k), cmocka_unit_test(test_penalty_in_greedy),
    };
    return cmocka_run_group_tests_name("logits", tests, NULL, NULL);
}
