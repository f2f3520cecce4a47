/* test_logits.c -- the per-step score processing against hand-computed
 * expectations (the boundary rules included: ties at top-k, the token that
 * crosses top-p, penalties on negative scores), a chi-square test of the
 * sampler against analytically derived distributions, and processors end to
 * end through generation. */
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
    /* Against the plain scan, on lengths around the vector width and a
     * vocabulary's, drawn from few values (ties) with NaNs, infinities and
     * signed zeros. */
    static const float pool[] = {0.0f, -0.0f, 1.0f, -1.0f, 2.5f, INFINITY, -INFINITY, NAN};
    static float v[50257];
    unsigned seed = 7;
    for (int trial = 0; trial < 400; trial++) {
        int n = trial < 300 ? 1 + trial % 40 : 50257 - trial % 3;
        int npool = 1 + trial % 8; /* how many of pool's values this trial draws from */
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            v[i] = pool[(seed >> 16) % (unsigned)npool];
        }
        int want = 0;
        for (int i = 1; i < n; i++)
            if (v[i] > v[want]) want = i;
        if (logits_argmax(v, n) != want) fail_msg("argmax of %d scores: %d, want %d", n, logits_argmax(v, n), want);
    }
}

static void test_logsumexp_and_top_k(void **state) {
    (void)state;
    float s[4] = {0.0f, log(3.0f), -INFINITY, 0.0f};
    assert_float_equal(logits_logsumexp(s, 4), log(5.0), 1e-6);
    int32_t idx[3];
    float t[6] = {0.5f, 2.0f, 1.0f, 2.0f, -1.0f, 1.5f};
    logits_top_indices(t, 6, 3, idx);
    assert_int_equal(idx[0], 1); /* ties keep the lower index first */
    assert_int_equal(idx[1], 3);
    assert_int_equal(idx[2], 5);
}

static void expect_kept(const float *s, int n, const int *kept) {
    for (int i = 0; i < n; i++) {
        if (kept[i] && !isfinite(s[i])) fail_msg("token %d was removed", i);
        if (!kept[i] && s[i] != -INFINITY) fail_msg("token %d was kept (%g)", i, (double)s[i]);
    }
}

static void test_top_k_ties(void **state) {
    (void)state;
    float scratch[6];
    float a[6] = {1, 3, 2, 3, 0, 2};
    logits_top_k(a, 6, 2, 1, scratch); /* the 2nd largest is 3: both 3s stay */
    expect_kept(a, 6, (int[]){0, 1, 0, 1, 0, 0});
    float b[6] = {1, 3, 2, 3, 0, 2};
    logits_top_k(b, 6, 3, 1, scratch); /* the 3rd largest is 2: ties at it all stay */
    expect_kept(b, 6, (int[]){0, 1, 1, 1, 0, 1});
    assert_float_equal(b[2], 2.0f, 0.0f); /* survivors keep their scores */
    float c[6] = {1, 3, 2, 3, 0, 2};
    logits_top_k(c, 6, 0, 1, scratch); /* 0 = off */
    expect_kept(c, 6, (int[]){1, 1, 1, 1, 1, 1});
    float d[6] = {1, 3, 2, 3, 0, 2};
    logits_top_k(d, 6, 1, 2, scratch); /* min_keep raises k */
    expect_kept(d, 6, (int[]){0, 1, 0, 1, 0, 0});
}

/* Scores whose probabilities are exactly 0.5, 0.3, 0.15, 0.05. */
static void probs_scores(float *s) {
    const double p[4] = {0.5, 0.3, 0.15, 0.05};
    for (int i = 0; i < 4; i++) s[i] = (float)log(p[i]);
}

static void test_top_p_crossing_token(void **state) {
    (void)state;
    logits_pair scratch[4];
    float s[4];
    probs_scores(s); /* 0.5 alone is short of 0.6: the token that crosses (0.3) is kept */
    logits_top_p(s, 4, 0.6f, 1, scratch);
    expect_kept(s, 4, (int[]){1, 1, 0, 0});
    probs_scores(s); /* 0.5 reaches 0.4 alone */
    logits_top_p(s, 4, 0.4f, 1, scratch);
    expect_kept(s, 4, (int[]){1, 0, 0, 0});
    probs_scores(s);
    logits_top_p(s, 4, 0.9f, 1, scratch); /* 0.5 + 0.3 + 0.15 crosses 0.9 */
    expect_kept(s, 4, (int[]){1, 1, 1, 0});
    probs_scores(s);
    logits_top_p(s, 4, 0.001f, 1, scratch); /* at least one is kept */
    expect_kept(s, 4, (int[]){1, 0, 0, 0});
    probs_scores(s);
    logits_top_p(s, 4, 0.001f, 3, scratch); /* ... or min_keep */
    expect_kept(s, 4, (int[]){1, 1, 1, 0});
    probs_scores(s);
    s[1] = -INFINITY; /* already removed tokens stay removed and carry no mass */
    logits_top_p(s, 4, 0.75f, 1, scratch);
    expect_kept(s, 4, (int[]){1, 0, 1, 0});
}

static void test_typical(void **state) {
    (void)state;
    /* H = 1.1421; |-log p - H| = 0.449, 0.062, 0.755, 1.854; in that order
     * of closeness the tokens are 1, 0, 2, 3 with cumulative mass 0.3, 0.8,
     * 0.95, 1. */
    logits_pair scratch[4];
    float s[4];
    probs_scores(s);
    logits_typical(s, 4, 0.2f, 1, scratch);
    expect_kept(s, 4, (int[]){0, 1, 0, 0}); /* the most probable token goes */
    probs_scores(s);
    logits_typical(s, 4, 0.5f, 1, scratch);
    expect_kept(s, 4, (int[]){1, 1, 0, 0});
    probs_scores(s);
    logits_typical(s, 4, 0.9f, 1, scratch);
    expect_kept(s, 4, (int[]){1, 1, 1, 0});
}

static void test_temperature_and_lists(void **state) {
    (void)state;
    float t[2] = {2.0f, -4.0f};
    logits_temperature(t, 2, 2.0f);
    assert_float_equal(t[0], 1.0f, 0.0f);
    assert_float_equal(t[1], -2.0f, 0.0f);
    int32_t ids[] = {1, 2, 3, 1, 2};
    float s[10];
    for (int n = 1; n <= 4; n++) {
        for (int i = 0; i < 10; i++) s[i] = 0.0f;
        logits_no_repeat_ngram(s, 10, ids, 5, n);
        /* n=1 bans every seen token; 2 and 3 ban what followed the tail
         * before (3); n=4: the tail 3,1,2 never occurred before. */
        int want[4][10] = {{1, 0, 0, 0, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 1, 1, 1, 1, 1, 1},
                           {1, 1, 1, 0, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}};
        expect_kept(s, 10, want[n - 1]);
    }
    for (int i = 0; i < 10; i++) s[i] = 0.0f;
    logits_no_repeat_ngram(s, 10, ids, 2, 4); /* shorter than ngram - 1: nothing */
    expect_kept(s, 10, (int[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
    const int32_t w0[] = {5}, w1[] = {2, 7}, w2[] = {1, 2, 9}, w3[] = {3, 8};
    const int32_t *words[] = {w0, w1, w2, w3};
    int lens[] = {1, 2, 3, 2};
    for (int i = 0; i < 10; i++) s[i] = 0.0f;
    logits_bad_words(s, 10, ids, 5, words, lens, 4);
    expect_kept(s, 10, (int[]){1, 1, 1, 1, 1, 0, 1, 0, 1, 0});
    int32_t sup[] = {0, 4, 99};
    for (int i = 0; i < 10; i++) s[i] = 0.0f;
    logits_suppress(s, 10, sup, 3);
    expect_kept(s, 10, (int[]){0, 1, 1, 1, 0, 1, 1, 1, 1, 1});
}

/* 100k draws per setting against the distribution derived by hand: which
 * tokens each warper keeps for these logits, and softmax(l / T) over them. */
static void test_sampling_distribution(void **state) {
    (void)state;
    const float l[8] = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -3.0f};
    struct {
        float temp, top_p, typical;
        int top_k, kept;
    } cases[] = {
        {1.0f, 1.0f, 1.0f, 0, 8}, /* plain softmax */
        {0.5f, 1.0f, 1.0f, 0, 8}, /* sharper */
        {1.0f, 1.0f, 1.0f, 3, 3}, /* the 3 best */
        {1.0f, 0.9f, 1.0f, 0, 5}, /* p = .405 .245 .149 .090 .055: the 5th crosses 0.9 */
        {2.0f, 1.0f, 1.0f, 4, 4}, /* temperature, then top-k */
    };
    /* Chi-square critical values at p = 0.001 for 1..7 degrees of freedom. */
    const double crit[8] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};
    float s[8], fs[8];
    logits_pair pairs[8];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rng r;
        rng_seed(&r, 12345, c);
        long count[8] = {0};
        const int N = 100000;
        for (int d = 0; d < N; d++) {
            memcpy(s, l, sizeof s);
            if (cases[c].temp != 1.0f) logits_temperature(s, 8, cases[c].temp);
            logits_top_k(s, 8, cases[c].top_k, 1, fs);
            logits_top_p(s, 8, cases[c].top_p, 1, pairs);
            logits_typical(s, 8, cases[c].typical, 1, pairs);
            count[logits_sample(s, 8, &r)]++;
        }
        double z = 0, chi = 0;
        for (int i = 0; i < cases[c].kept; i++) z += exp(l[i] / cases[c].temp);
        for (int i = 0; i < 8; i++) {
            if (i >= cases[c].kept) {
                if (count[i]) fail_msg("case %zu: removed token %d was drawn %ld times", c, i, count[i]);
                continue;
            }
            double expect = N * exp(l[i] / cases[c].temp) / z;
            chi += (count[i] - expect) * (count[i] - expect) / expect;
        }
        if (chi > crit[cases[c].kept - 1])
            fail_msg("case %zu: chi-square %.2f > %.2f (df %d)", c, chi, crit[cases[c].kept - 1], cases[c].kept - 1);
    }
    /* The same seed and stream give the same draws. */
    rng a, b;
    rng_seed(&a, 99, 3);
    rng_seed(&b, 99, 3);
    for (int i = 0; i < 100; i++) assert_true(rng_uniform(&a) == rng_uniform(&b));
    rng_seed(&b, 99, 4);
    assert_true(rng_uniform(&a) != rng_uniform(&b));
}

static gpt2c_model *ref_model(void) {
    const char *ref = getenv("GPT2C_REF_DIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tiny-f32", ref ? ref : "build/ref");
    gpt2c_model *m;
    if (gpt2c_model_load(dir, &m) != GPT2C_OK) fail_msg("%s", gpt2c_model_errmsg(m));
    return m;
}

static gpt2c_gen *run_gen(gpt2c_model *m, const gpt2c_gen_params *gp, int np, const int32_t *const *p, const int *lens) {
    gpt2c_gen *g;
    if (gpt2c_gen_start(m, gp, np, p, lens, &g) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(g));
    while (gpt2c_gen_step(g) == GPT2C_OK) {
    }
    return g;
}

/* min_new_tokens holds EOS back even when logit_bias makes it the best. */
static void test_min_new_tokens_and_bias(void **state) {
    (void)state;
    gpt2c_model *m = ref_model();
    int32_t prompt[] = {15496, 11};
    int n = 2;
    const int32_t *p[1] = {prompt};
    int32_t eos = 50256;
    float big = 100.0f;
    gpt2c_gen_params gp;
    gpt2c_gen_params_init(&gp);
    gp.max_new_tokens = 20;
    gp.logit_bias_ids = &eos;
    gp.logit_bias = &big;
    gp.n_logit_bias = 1;
    gp.min_new_tokens = 5;
    gpt2c_gen *g = run_gen(m, &gp, 1, p, &n);
    int got;
    const int32_t *t = gpt2c_gen_tokens(g, 0, &got);
    assert_int_equal(got, 6);
    for (int i = 0; i < 5; i++) assert_int_not_equal(t[i], eos);
    assert_int_equal(t[5], eos);
    assert_int_equal(gpt2c_gen_finish_reason(g, 0), GPT2C_FINISH_EOS);
    gpt2c_gen_free(g);
    gp.min_new_tokens = 0;
    gp.min_length = 4; /* counts the prompt */
    g = run_gen(m, &gp, 1, p, &n);
    gpt2c_gen_tokens(g, 0, &got);
    assert_int_equal(got, 3);
    gpt2c_gen_free(g);
    /* Suppressing the best token changes the choice; suppressing EOS under a
     * big bias lets generation run its length. */
    gp.min_length = 0;
    gp.suppress_tokens = &eos;
    gp.n_suppress_tokens = 1;
    g = run_gen(m, &gp, 1, p, &n);
    gpt2c_gen_tokens(g, 0, &got);
    assert_int_equal(got, 20);
    gpt2c_gen_free(g);
    gpt2c_model_free(m);
}

/* Seeds: a prompt's sampled text does not depend on the other prompts in
 * the batch, nor on the cache, nor on the thread count; every sequence of a
 * prompt differs. */
static void test_seed_batch_independent(void **state) {
    (void)state;
    gpt2c_model *m = ref_model();
    int32_t a[] = {15496, 11, 314}, b[] = {464, 2068, 7586, 21831, 18045};
    const int32_t *pa[1] = {a}, *pab[2] = {b, a};
    int la = 3, lab[2] = {5, 3};
    gpt2c_gen_params gp;
    gpt2c_gen_params_init(&gp);
    gp.do_sample = 1;
    gp.top_k = 0;
    gp.temperature = 1.5f;
    gp.max_new_tokens = 10;
    gp.num_return_sequences = 3;
    gp.has_seed = 1;
    gp.seed = 2024;
    gp.eos_token_id = -1;
    gpt2c_gen *alone = run_gen(m, &gp, 1, pa, &la), *batch = run_gen(m, &gp, 2, pab, lab);
    gp.n_threads = 1; /* and with one thread instead of the default */
    gpt2c_gen *one_thread = run_gen(m, &gp, 1, pa, &la);
    gp.n_threads = 0;
    gp.use_cache = 0;
    gpt2c_gen *nocache = run_gen(m, &gp, 1, pa, &la);
    for (int r = 0; r < 3; r++) {
        int n1, n2, n3;
        const int32_t *t1 = gpt2c_gen_tokens(alone, r, &n1), *t2 = gpt2c_gen_tokens(batch, 3 + r, &n2),
                      *t3 = gpt2c_gen_tokens(nocache, r, &n3);
        assert_ids_equal(t2, n2, t1, n1, "same seed, prompt in a batch");
        assert_ids_equal(t3, n3, t1, n1, "same seed, without the cache");
        int n4;
        const int32_t *t4 = gpt2c_gen_tokens(one_thread, r, &n4);
        assert_ids_equal(t4, n4, t1, n1, "same seed, one thread");
        if (r > 0) {
            int n0;
            const int32_t *t0 = gpt2c_gen_tokens(alone, 0, &n0);
            assert_true(memcmp(t0, t1, sizeof *t0 * (size_t)n0) != 0);
        }
    }
    gpt2c_gen_free(alone);
    gpt2c_gen_free(batch);
    gpt2c_gen_free(nocache);
    gpt2c_gen_free(one_thread);
    gpt2c_model_free(m);
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

static int cmp_pair_asc(const void *a, const void *b) {
    const logits_pair *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i - y->i;
}

/* top-p on a full vocabulary (which takes the partial-selection path) keeps
 * exactly what the plain full sort keeps, as transformers' warper does it. */
static void test_top_p_large_vocab(void **state) {
    (void)state;
    const int n = 50257;
    float *s = malloc(n * sizeof *s), *want = malloc(n * sizeof *want);
    logits_pair *scratch = malloc(n * sizeof *scratch), *sorted = malloc(n * sizeof *sorted);
    rng r;
    rng_seed(&r, 5, 0);
    const float ps[] = {0.05f, 0.5f, 0.9f, 0.99f, 0.999f};
    for (int trial = 0; trial < 20; trial++) {
        double spread = 1.0 + trial % 5 * 2.0; /* flat to peaked distributions */
        for (int i = 0; i < n; i++) {
            double u = rng_uniform(&r), v = rng_uniform(&r);
            s[i] = (float)(spread * sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
            if (trial % 3 == 0) s[i] = roundf(s[i] * 4) / 4; /* many ties */
        }
        float p = ps[trial % 5];
        memcpy(want, s, n * sizeof *s);
        for (int i = 0; i < n; i++) sorted[i] = (logits_pair){want[i], i};
        qsort(sorted, n, sizeof *sorted, cmp_pair_asc);
        double mx = sorted[n - 1].v, z = 0, cum = 0;
        for (int i = 0; i < n; i++) z += exp((double)sorted[i].v - mx);
        for (int i = 0; i < n - 1; i++) {
            cum += exp((double)sorted[i].v - mx) / z;
            if (cum > 1.0 - p) break;
            want[sorted[i].i] = -INFINITY;
        }
        logits_top_p(s, n, p, 1, scratch);
        int kept = 0;
        for (int i = 0; i < n; i++) {
            if (isinf(want[i]) != isinf(s[i])) fail_msg("trial %d (top_p %g): token %d differs", trial, p, i);
            kept += !isinf(s[i]);
        }
        assert_true(kept >= 1);
    }
    free(s);
    free(want);
    free(scratch);
    free(sorted);
}

/* OpenAI's penalties: count * frequency + presence, per distinct id. */
static void test_openai_penalties(void **state) {
    (void)state;
    float sc[5] = {1, 1, 1, 1, 1};
    int counts[5] = {0};
    int32_t ids[] = {2, 4, 2, 2};
    logits_openai_penalties(sc, 5, ids, 4, 0.5f, 0.25f, counts);
    const float want[5] = {1, 1, 1 - 3 * 0.25f - 0.5f, 1, 1 - 0.25f - 0.5f};
    for (int i = 0; i < 5; i++) {
        assert_true(sc[i] == want[i]);
        assert_int_equal(counts[i], 0);
    }
}

static void assert_same_gen(gpt2c_gen *g, gpt2c_gen *alone, const gpt2c_gen_params *p) {
    assert_int_equal(gpt2c_gen_status(g), GPT2C_DONE);
    for (int q = 0; q < gpt2c_gen_n_seqs(alone); q++) {
        int n1, n2;
        const int32_t *t1 = gpt2c_gen_tokens(g, q, &n1), *t2 = gpt2c_gen_tokens(alone, q, &n2);
        assert_ids_equal(t1, n1, t2, n2, "engine vs alone");
        assert_int_equal(gpt2c_gen_finish_reason(g, q), gpt2c_gen_finish_reason(alone, q));
        for (int j = 0; j < n1 && p->n_logprobs; j++) {
            float c1, c2, l1[3], l2[3];
            int32_t i1[3], i2[3];
            gpt2c_gen_logprobs(g, q, j, &c1, i1, l1);
            gpt2c_gen_logprobs(alone, q, j, &c2, i2, l2);
            assert_true(c1 == c2);
            assert_ids_equal(i1, 3, i2, 3, "top ids");
        }
        if (p->num_beams > 1) assert_true(gpt2c_gen_score(g, q) == gpt2c_gen_score(alone, q));
    }
}

typedef struct engine_case {
    int join_step; /* the engine step before which it joins */
    gpt2c_gen_params p;
    int n_prompts;
    gpt2c_gen *g, *alone;
} engine_case;

/* Continuous batching: generations that join a shared engine at different
 * steps, leave early, and reuse freed slots produce exactly the tokens and
 * log-probabilities they produce alone. */
static void test_engine_equals_alone(void **state) {
    (void)state;
    gpt2c_model *m = ref_model();
    int32_t a[] = {15496, 11, 314}, b[] = {464, 2068, 7586, 21831, 18045}, c[] = {50256};
    const int32_t *pab[2] = {a, b}, *pc[1] = {c};
    int lab[2] = {3, 5}, lc = 1;
    engine_case cases[4];
    for (int i = 0; i < 4; i++) {
        gpt2c_gen_params_init(&cases[i].p);
        cases[i].p.max_new_tokens = 8 + 3 * i;
        cases[i].p.eos_token_id = -1;
        cases[i].p.n_logprobs = i == 2 ? 0 : 3;
        cases[i].n_prompts = i % 2 ? 1 : 2;
        cases[i].g = NULL;
    }
    cases[0].join_step = 0;                                                             /* greedy, 2 prompts */
    cases[1].join_step = 2;
    cases[1].p.do_sample = 1, cases[1].p.num_return_sequences = 2, cases[1].p.has_seed = 1, cases[1].p.seed = 7;
    cases[1].p.presence_penalty = 1.0f, cases[1].p.frequency_penalty = 0.5f, cases[1].p.top_k = 0;
    cases[2].join_step = 3, cases[2].p.num_beams = 2;                                   /* beams, 2 prompts */
    cases[3].join_step = -1, cases[3].p.do_sample = 1, cases[3].p.has_seed = 1, cases[3].p.seed = 9; /* freed slots */
    gpt2c_engine *e;
    if (gpt2c_engine_new(m, 8, 0, &e) != GPT2C_OK) fail_msg("%s", gpt2c_engine_errmsg(e));
    assert_int_equal(gpt2c_engine_n_slots(e), 8);
    /* A ninth sequence does not fit: busy, nothing taken. */
    gpt2c_gen_params big;
    gpt2c_gen_params_init(&big);
    big.do_sample = 1, big.num_return_sequences = 9;
    gpt2c_gen *none;
    assert_int_equal(gpt2c_engine_add(e, &big, 1, pc, &lc, &none), GPT2C_ERR_BUSY);
    gpt2c_gen_free(none);
    assert_int_equal(gpt2c_engine_free_slots(e), 8);
    for (int step = 0, live = 1; live || step < 6; step++) {
        for (int i = 0; i < 4; i++) {
            engine_case *k = &cases[i];
            if (k->join_step != step) continue;
            const int32_t *const *pp = k->n_prompts == 2 ? pab : pc;
            const int *ll = k->n_prompts == 2 ? lab : &lc;
            if (i == 3) assert_null(cases[0].g); /* joins in case 0's freed slots */
            if (gpt2c_engine_add(e, &k->p, k->n_prompts, pp, ll, &k->g) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(k->g));
            k->alone = run_gen(m, &k->p, k->n_prompts, pp, ll);
        }
        if (step == 0) assert_int_equal(gpt2c_gen_step(cases[0].g), GPT2C_ERR_INVALID);
        live = gpt2c_engine_step(e) == GPT2C_OK;
        assert_int_equal(gpt2c_engine_free_slots(e), 8 - (cases[0].g ? 2 : 0) - (cases[1].g ? 2 : 0) -
                                                         (cases[2].g ? 4 : 0) - (cases[3].g ? 1 : 0));
        /* Case 0 leaves as soon as it is done, handing back its slots. */
        if (cases[0].g && gpt2c_gen_status(cases[0].g) == GPT2C_DONE) {
            assert_same_gen(cases[0].g, cases[0].alone, &cases[0].p);
            gpt2c_gen_free(cases[0].g);
            cases[0].g = NULL;
            cases[3].join_step = step + 1;
            live = 1;
        }
    }
    for (int i = 1; i < 4; i++) assert_same_gen(cases[i].g, cases[i].alone, &cases[i].p);
    /* Scoring prompt + completion gives the completion's log-probabilities. */
    int n0;
    const int32_t *t0 = gpt2c_gen_tokens(cases[0].alone, 1, &n0);
    int32_t seq[64];
    memcpy(seq, b, sizeof b);
    memcpy(seq + 5, t0, (size_t)n0 * sizeof *t0);
    float chosen[64], top_lps[64 * 3];
    int32_t top_ids[64 * 3];
    for (int i = 0; i < 4; i++) gpt2c_gen_free(cases[i].g);
    assert_int_equal(gpt2c_engine_score(e, seq, 5 + n0, 3, chosen, top_ids, top_lps), GPT2C_OK);
    assert_true(isnan(chosen[0]));
    for (int j = 0; j < n0; j++) {
        float c;
        int32_t ids[3];
        float lps[3];
        gpt2c_gen_logprobs(cases[0].alone, 1, j, &c, ids, lps);
        assert_true(chosen[5 + j] == c);
        assert_ids_equal(top_ids + (5 + j) * 3, 3, ids, 3, "scored top ids");
        assert_true(top_lps[(5 + j) * 3] == lps[0]);
    }
    /* The logits of every position: their log-softmax at the next token is its score. */
    gpt2c_model_info info;
    gpt2c_model_get_info(m, &info);
    float *logits = malloc((size_t)(5 + n0) * (size_t)info.n_vocab * sizeof(float));
    assert_non_null(logits);
    assert_int_equal(gpt2c_engine_logits(e, seq, 5 + n0, logits), GPT2C_OK);
    for (int j = 0; j + 1 < 5 + n0; j++) {
        const float *row = logits + (size_t)j * info.n_vocab;
        double mx = row[0], sum = 0;
        for (int v = 1; v < info.n_vocab; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < info.n_vocab; v++) sum += exp(row[v] - mx);
        assert_true(fabs(row[seq[j + 1]] - mx - log(sum) - chosen[j + 1]) < 1e-5);
    }
    int32_t bad_id[2] = {1, info.n_vocab};
    assert_int_equal(gpt2c_engine_logits(e, seq, 0, logits), GPT2C_ERR_CONTEXT);
    assert_int_equal(gpt2c_engine_logits(e, bad_id, 2, logits), GPT2C_ERR_INVALID);
    assert_non_null(strstr(gpt2c_engine_errmsg(e), "outside the vocabulary"));
    free(logits);
    for (int i = 0; i < 4; i++) gpt2c_gen_free(cases[i].alone);
    assert_int_equal(gpt2c_engine_free_slots(e), 8);
    gpt2c_engine_free(e);
    gpt2c_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repetition_penalty),     cmocka_unit_test(test_argmax_first_on_tie),
        cmocka_unit_test(test_logsumexp_and_top_k),    cmocka_unit_test(test_top_k_ties),
        cmocka_unit_test(test_top_p_crossing_token),   cmocka_unit_test(test_typical),
        cmocka_unit_test(test_temperature_and_lists),  cmocka_unit_test(test_sampling_distribution),
        cmocka_unit_test(test_min_new_tokens_and_bias), cmocka_unit_test(test_seed_batch_independent),
        cmocka_unit_test(test_penalty_in_greedy),      cmocka_unit_test(test_openai_penalties),
        cmocka_unit_test(test_engine_equals_alone),     cmocka_unit_test(test_top_p_large_vocab),
    };
    return cmocka_run_group_tests_name("logits", tests, NULL, NULL);
}
