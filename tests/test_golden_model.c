/* test_golden_model.c -- the engine against transformers' own outputs on the
 * golden checkpoints (tiny in F32 and F16): input ids, next-token logits at
 * every position, 40-token greedy continuations with and without the KV
 * cache, the pipeline's text, a batch of prompts of different lengths, and a
 * prompt that fills the context. The checkpoints live in ../shared/golden;
 * without them these tests are skipped, saying so. */
#include <math.h>

#include "forward_util.h"

#define LOGIT_TOL 1e-4

typedef struct golden {
    const char *name, *json;
    gpt2c_model *m;
    gpt2c_tokenizer *t;
    json_t *g;
} golden;

static golden G[] = {{"tiny", GOLDEN_JSON_DIR "/tiny.json", 0, 0, 0},
                     {"tiny-f16", GOLDEN_JSON_DIR "/tiny-f16.json", 0, 0, 0}};

static int setup(void **state) {
    golden *g = *state;
    const char *ck = golden_checkpoints();
    if (!ck) return 0; /* tests skip */
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/%s", ck, g->name);
    if (gpt2c_model_load(dir, &g->m) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", dir, gpt2c_model_errmsg(g->m));
        return -1;
    }
    if (gpt2c_tokenizer_load(dir, &g->t) != GPT2C_OK) return -1;
    g->g = load_json_or_fail(g->json);
    return 0;
}

static int teardown(void **state) {
    golden *g = *state;
    gpt2c_model_free(g->m);
    gpt2c_tokenizer_free(g->t);
    json_decref(g->g);
    return 0;
}

#define SKIP_WITHOUT_SHARED(g)                                                                     \
    do {                                                                                           \
        if (!(g)->m) {                                                                             \
            fprintf(stderr, "skipped: ../shared/golden/checkpoints not found (set GPT2C_GOLDEN)\n"); \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void check_close(double got, double want, const char *what, const char *prompt, int id) {
    if (fabs(got - want) > LOGIT_TOL)
        fail_msg("%s %s id %d: %.7f, expected %.7f (|diff| %.2e > %.0e)", prompt, what, id, got, want,
                 fabs(got - want), LOGIT_TOL);
}

static void test_logits(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    const int V = g->m->cfg.n_vocab;
    const char *name;
    json_t *p;
    json_object_foreach(json_object_get(g->g, "prompts"), name, p) {
        int n;
        int32_t *want = json_ids(json_object_get(p, "input_ids"), &n);
        /* The text tokenizes to the golden ids (max_context has ids only). */
        json_t *text = json_object_get(p, "text");
        if (json_is_string(text)) {
            int32_t *ids;
            int m;
            assert_int_equal(gpt2c_tokenize(g->t, json_string_value(text), json_string_length(text), &ids, &m),
                             GPT2C_OK);
            assert_ids_equal(ids, m, want, n, name);
            gpt2c_free(ids);
        }
        float *lg = forward_all(g->m, want, n);
        const float *last = lg + (size_t)(n - 1) * V;
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(p, "top20"), k, e) {
            int id = (int)json_integer_value(json_array_get(e, 0));
            check_close(last[id], json_number_value(json_array_get(e, 1)), "top20", name, id);
        }
        json_t *lastj = json_object_get(p, "last");
        json_array_foreach(json_object_get(lastj, "fixed"), k, e) {
            int id = (int)json_integer_value(json_array_get(e, 0));
            check_close(last[id], json_number_value(json_array_get(e, 1)), "fixed", name, id);
        }
        double mx = last[0], s = 0;
        for (int i = 1; i < V; i++) mx = last[i] > mx ? last[i] : mx;
        for (int i = 0; i < V; i++) s += exp(last[i] - mx);
        check_close(mx + log(s), json_number_value(json_object_get(lastj, "logsumexp")), "logsumexp", name, -1);
        /* Every position's best token and its logit. */
        json_t *pa = json_object_get(p, "pos_argmax"), *pm = json_object_get(p, "pos_max");
        assert_int_equal(json_array_size(pa), (size_t)n);
        for (int i = 0; i < n; i++) {
            const float *row = lg + (size_t)i * V;
            int best = 0;
            for (int j = 1; j < V; j++)
                if (row[j] > row[best]) best = j;
            check_close(row[best], json_number_value(json_array_get(pm, (size_t)i)), "pos_max", name, i);
            int want_best = (int)json_integer_value(json_array_get(pa, (size_t)i));
            /* A different argmax is only acceptable as a float-level tie. */
            if (best != want_best && fabs(row[best] - row[want_best]) > 1e-5)
                fail_msg("%s position %d: argmax %d, expected %d", name, i, best, want_best);
        }
        free(lg);
        free(want);
    }
}

/* Generates from prompts with the public API; returns the handle. */
static gpt2c_gen *generate(gpt2c_model *m, int n_prompts, const int32_t *const *prompts, const int *lens,
                           int max_new, int use_cache) {
    gpt2c_gen_params p;
    gpt2c_gen_params_init(&p);
    p.max_new_tokens = max_new;
    p.use_cache = use_cache;
    return gen_run(m, &p, n_prompts, prompts, lens);
}

static void test_greedy(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    const char *name;
    json_t *p;
    json_object_foreach(json_object_get(g->g, "prompts"), name, p) {
        int n, nw;
        int32_t *ids = json_ids(json_object_get(p, "input_ids"), &n);
        json_t *gr = json_object_get(p, "greedy");
        int32_t *want = json_ids(json_object_get(gr, "new_ids"), &nw);
        int max_new = (int)json_integer_value(json_object_get(gr, "max_new_tokens"));
        const int32_t *prompts[1] = {ids};
        for (int cache = 1; cache >= 0; cache--) {
            gpt2c_gen *gen = generate(g->m, 1, prompts, &n, max_new, cache);
            int got_n;
            const int32_t *got = gpt2c_gen_tokens(gen, 0, &got_n);
            char msg[96];
            snprintf(msg, sizeof msg, "%s %s greedy (%s cache)", g->name, name, cache ? "with" : "without");
            assert_ids_equal(got, got_n, want, nw, msg);
            int eos = json_is_true(json_object_get(gr, "stopped_on_eos"));
            assert_int_equal(gpt2c_gen_finish_reason(gen, 0), eos ? GPT2C_FINISH_EOS : GPT2C_FINISH_LENGTH);
            if (cache) {
                /* The pipeline's new text, streamed piece by piece. */
                gpt2c_stream *s;
                assert_int_equal(gpt2c_stream_new(g->t, ids, n, GPT2C_DECODE_SKIP_SPECIAL, &s), GPT2C_OK);
                char buf[8192];
                size_t used = 0, len;
                const char *piece;
                for (int i = 0; i <= got_n; i++) {
                    if (i < got_n) assert_int_equal(gpt2c_stream_push(s, got[i], &piece, &len), GPT2C_OK);
                    else assert_int_equal(gpt2c_stream_finish(s, &piece, &len), GPT2C_OK);
                    assert_true(used + len < sizeof buf);
                    memcpy(buf + used, piece, len);
                    used += len;
                }
                gpt2c_stream_free(s);
                json_t *text = json_object_get(gr, "text");
                assert_str_equal_n(buf, used, json_string_value(text), json_string_length(text), msg);
                /* full_text = the prompt string + the new text. */
                json_t *full = json_object_get(gr, "full_text"), *pt = json_object_get(p, "text");
                if (json_is_string(pt)) {
                assert_int_equal(json_string_length(full), json_string_length(pt) + used);
                assert_memory_equal(json_string_value(full), json_string_value(pt), json_string_length(pt));
                assert_memory_equal(json_string_value(full) + json_string_length(pt), buf, used);
                }
            }
            gpt2c_gen_free(gen);
        }
        free(ids);
        free(want);
    }
}

/* Three prompts of different lengths decoded together give each one's own
 * continuation (transformers ran them left-padded with an attention mask). */
static void test_batch(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    json_t *b = json_object_get(g->g, "batch"), *names = json_object_get(b, "prompts");
    if (!b) {
        fprintf(stderr, "skipped: %s has no batch case\n", g->json);
        skip();
    }
    int np = (int)json_array_size(names);
    assert_true(np >= 2);
    int32_t *ids[8];
    int lens[8];
    for (int i = 0; i < np; i++) {
        json_t *p = json_object_get(json_object_get(g->g, "prompts"), json_string_value(json_array_get(names, (size_t)i)));
        ids[i] = json_ids(json_object_get(p, "input_ids"), &lens[i]);
    }
    int max_new = (int)json_integer_value(json_object_get(b, "max_new_tokens"));
    for (int cache = 1; cache >= 0; cache--) {
        gpt2c_gen *gen = generate(g->m, np, (const int32_t *const *)ids, lens, max_new, cache);
        for (int i = 0; i < np; i++) {
            int nw, got_n;
            int32_t *want = json_ids(json_array_get(json_object_get(b, "new_ids"), (size_t)i), &nw);
            const int32_t *got = gpt2c_gen_tokens(gen, i, &got_n);
            /* transformers pads finished rows with pad tokens; gpt2c stops them. */
            while (nw > got_n && want[nw - 1] == 50256) nw--;
            assert_ids_equal(got, got_n, want, nw, "batch row");
            free(want);
        }
        gpt2c_gen_free(gen);
    }
    for (int i = 0; i < np; i++) free(ids[i]);
}

/* Beam search (num_beams 4, 4 returned) equals transformers' sequences and
 * sequences_scores, with and without the cache. */
static void test_beam(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    json_t *beams = json_object_get(g->g, "beam");
    if (!beams) {
        fprintf(stderr, "skipped: %s has no beam cases\n", g->json);
        skip();
    }
    size_t k;
    json_t *c;
    json_array_foreach(beams, k, c) check_beam_case(g->m, c, -1, g->name);
}

/* Beam-search-free check of the cache contract: two models in one process
 * give the same tokens (no shared mutable state). */
static void test_two_models(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    gpt2c_model *other;
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/%s", golden_checkpoints(), g->name);
    assert_int_equal(gpt2c_model_load(dir, &other), GPT2C_OK);
    json_t *p = json_object_get(json_object_get(g->g, "prompts"), "fox");
    int n;
    int32_t *ids = json_ids(json_object_get(p, "input_ids"), &n);
    const int32_t *prompts[1] = {ids};
    gpt2c_gen *a = generate(g->m, 1, prompts, &n, 10, 1), *b = generate(other, 1, prompts, &n, 10, 1);
    int na, nb;
    const int32_t *ta = gpt2c_gen_tokens(a, 0, &na), *tb = gpt2c_gen_tokens(b, 0, &nb);
    assert_ids_equal(ta, na, tb, nb, "two models");
    gpt2c_gen_free(a);
    gpt2c_gen_free(b);
    gpt2c_model_free(other);
    free(ids);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_logits, setup, teardown, &G[0]),
        cmocka_unit_test_prestate_setup_teardown(test_greedy, setup, teardown, &G[0]),
        cmocka_unit_test_prestate_setup_teardown(test_batch, setup, teardown, &G[0]),
        cmocka_unit_test_prestate_setup_teardown(test_beam, setup, teardown, &G[0]),
        cmocka_unit_test_prestate_setup_teardown(test_two_models, setup, teardown, &G[0]),
        cmocka_unit_test_prestate_setup_teardown(test_logits, setup, teardown, &G[1]),
        cmocka_unit_test_prestate_setup_teardown(test_greedy, setup, teardown, &G[1]),
    };
    return cmocka_run_group_tests_name("golden model", tests, NULL, NULL);
}
