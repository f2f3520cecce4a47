/* test_arch_golden.c -- every architecture besides GPT-2 against
 * transformers 4.30.2's own outputs on its mini checkpoints (GPT-Neo with
 * local windows shorter than the prompts, OPT pre- and post-LN with
 * project_in/out, GPT-NeoX with parallel and sequential residuals, BLOOM's
 * ALiBi over 6 heads (not a power of two), GPTBigCode with multi-query and
 * multi-head attention, CodeGen's qkv layout and interleaved rotary): the
 * last position's top-20 logits and logsumexp, every position's best
 * logit, 32-token greedy continuations with and without the KV cache, a
 * batch of prompts of different lengths, and beam search. The golden
 * files are committed (fixtures/golden/arch); the checkpoints live in
 * ../shared/golden/checkpoints/arch, and without them these tests skip,
 * saying so. */
#include <math.h>

#include "forward_util.h"

#define LOGIT_TOL 1e-4

typedef struct golden {
    const char *name, *model_type;
    gpt2c_model *m;
    json_t *g;
} golden;

static golden G[] = {{"gpt-neo-mini", "gpt_neo", 0, 0},
                     {"gpt-neo-mini-bin", "gpt_neo", 0, 0},
                     {"gpt-neo-mini-bin-legacy", "gpt_neo", 0, 0},
                     {"opt-mini", "opt", 0, 0},
                     {"opt-mini-postln", "opt", 0, 0},
                     {"pythia-mini", "gpt_neox", 0, 0},
                     {"pythia-mini-seqres", "gpt_neox", 0, 0},
                     {"bloom-mini", "bloom", 0, 0},
                     {"starcoder-mini-mqa", "gpt_bigcode", 0, 0},
                     {"starcoder-mini-mha", "gpt_bigcode", 0, 0},
                     {"codegen-mini", "codegen", 0, 0}};

static int setup(void **state) {
    golden *g = *state;
    const char *ck = golden_checkpoints();
    if (!ck) return 0; /* tests skip */
    char dir[1200], json[1200], base[64];
    snprintf(dir, sizeof dir, "%s/arch/%s", ck, g->name);
    if (gpt2c_model_load(dir, &g->m) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", dir, gpt2c_model_errmsg(g->m));
        return -1;
    }
    /* The .bin checkpoints hold the safetensors one's weights: its goldens. */
    snprintf(base, sizeof base, "%s", g->name);
    char *bin = strstr(base, "-bin");
    if (bin) *bin = 0;
    snprintf(json, sizeof json, "%s/arch/%s.json", GOLDEN_JSON_DIR, base);
    g->g = load_json_or_fail(json);
    return 0;
}

static int teardown(void **state) {
    golden *g = *state;
    gpt2c_model_free(g->m);
    json_decref(g->g);
    g->m = NULL;
    return 0;
}

#define SKIP_WITHOUT_SHARED(g)                                                                               \
    do {                                                                                                     \
        if (!(g)->m) {                                                                                       \
            fprintf(stderr, "skipped: ../shared/golden/checkpoints/arch not found (set GPT2C_GOLDEN)\n");  \
            skip();                                                                                          \
        }                                                                                                    \
    } while (0)

static void check_close(const golden *g, double got, double want, const char *what, const char *prompt, int id) {
    if (!(fabs(got - want) <= LOGIT_TOL))
        fail_msg("%s %s %s id %d: %.7f, expected %.7f (|diff| %.2e > %.0e)", g->name, prompt, what, id, got, want,
                 fabs(got - want), LOGIT_TOL);
}

static void test_model_type(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    gpt2c_model_info info;
    gpt2c_model_get_info(g->m, &info);
    assert_string_equal(info.model_type, g->model_type);
    json_t *gen = json_object_get(g->g, "generation");
    assert_int_equal(info.eos_token_id, json_integer_value(json_object_get(gen, "eos_token_id")));
    assert_int_equal(info.bos_token_id, json_integer_value(json_object_get(gen, "bos_token_id")));
}

static void test_logits(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    const int V = g->m->cfg.n_vocab;
    const char *name;
    json_t *p;
    json_object_foreach(json_object_get(g->g, "prompts"), name, p) {
        int n;
        int32_t *ids = json_ids(json_object_get(p, "input_ids"), &n);
        float *lg = forward_all(g->m, ids, n);
        const float *last = lg + (size_t)(n - 1) * V;
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(p, "top20"), k, e) {
            int id = (int)json_integer_value(json_array_get(e, 0));
            check_close(g, last[id], json_number_value(json_array_get(e, 1)), "top20", name, id);
        }
        double mx = last[0], s = 0;
        for (int i = 1; i < V; i++) mx = last[i] > mx ? last[i] : mx;
        for (int i = 0; i < V; i++) s += exp(last[i] - mx);
        check_close(g, mx + log(s), json_number_value(json_object_get(p, "logsumexp")), "logsumexp", name, -1);
        json_t *pa = json_object_get(p, "pos_argmax"), *pm = json_object_get(p, "pos_max");
        assert_int_equal(json_array_size(pa), (size_t)n);
        for (int i = 0; i < n; i++) {
            const float *row = lg + (size_t)i * V;
            int best = 0;
            for (int j = 1; j < V; j++)
                if (row[j] > row[best]) best = j;
            check_close(g, row[best], json_number_value(json_array_get(pm, (size_t)i)), "pos_max", name, i);
            int want_best = (int)json_integer_value(json_array_get(pa, (size_t)i));
            /* A different argmax is only acceptable as a tie within the tolerance. */
            if (best != want_best && fabs(row[best] - row[want_best]) > LOGIT_TOL)
                fail_msg("%s %s position %d: argmax %d, expected %d", g->name, name, i, best, want_best);
        }
        free(lg);
        free(ids);
    }
}

/* Greedy tokens equal transformers' up to the first step whose margin
 * between the two best logits is below the tolerance (none in these
 * goldens: then all of them). */
static void test_greedy(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    const char *name;
    json_t *p;
    json_object_foreach(json_object_get(g->g, "prompts"), name, p) {
        int n, nw;
        int32_t *ids = json_ids(json_object_get(p, "input_ids"), &n);
        json_t *gr = json_object_get(p, "greedy"), *margins = json_object_get(gr, "step_margin");
        int32_t *want = json_ids(json_object_get(gr, "new_ids"), &nw);
        int exact = nw;
        for (int i = 0; i < nw; i++)
            if (json_number_value(json_array_get(margins, (size_t)i)) < LOGIT_TOL) {
                exact = i + 1;
                break;
            }
        const int32_t *prompts[1] = {ids};
        gpt2c_gen_params gp;
        gpt2c_gen_params_init(&gp);
        gp.max_new_tokens = (int)json_integer_value(json_object_get(gr, "max_new_tokens"));
        for (int cache = 1; cache >= 0; cache--) {
            gp.use_cache = cache;
            gpt2c_gen *gen = gen_run(g->m, &gp, 1, prompts, &n);
            int got_n;
            const int32_t *got = gpt2c_gen_tokens(gen, 0, &got_n);
            char msg[160];
            snprintf(msg, sizeof msg, "%s %s greedy (%s cache)", g->name, name, cache ? "with" : "without");
            if (exact == nw) {
                assert_ids_equal(got, got_n, want, nw, msg);
                int eos = json_is_true(json_object_get(gr, "stopped_on_eos"));
                assert_int_equal(gpt2c_gen_finish_reason(gen, 0), eos ? GPT2C_FINISH_EOS : GPT2C_FINISH_LENGTH);
            } else {
                assert_true(got_n >= exact);
                assert_ids_equal(got, exact, want, exact, msg);
            }
            gpt2c_gen_free(gen);
        }
        free(ids);
        free(want);
    }
}

/* The batch's prompts decoded together give transformers' left-padded
 * batch: gpt2c runs each unpadded in its own cache slot, which is what the
 * attention mask and the positions derived from it compute. */
static void test_batch(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    json_t *b = json_object_get(g->g, "batch"), *rows = json_object_get(b, "input_ids");
    const int np = (int)json_array_size(rows), pad = (int)json_integer_value(json_object_get(b, "pad_token_id"));
    assert_true(np >= 2 && np <= 8);
    int32_t *ids[8];
    int lens[8];
    for (int i = 0; i < np; i++) {
        int n;
        int32_t *row = json_ids(json_array_get(rows, (size_t)i), &n);
        json_t *mask = json_array_get(json_object_get(b, "attention_mask"), (size_t)i);
        int skip = 0;
        while (skip < n && json_integer_value(json_array_get(mask, (size_t)skip)) == 0) skip++;
        lens[i] = n - skip;
        ids[i] = malloc(sizeof(int32_t) * (size_t)lens[i]);
        memcpy(ids[i], row + skip, sizeof(int32_t) * (size_t)lens[i]);
        free(row);
    }
    gpt2c_gen_params gp;
    gpt2c_gen_params_init(&gp);
    gp.max_new_tokens = (int)json_integer_value(json_object_get(b, "max_new_tokens"));
    for (int cache = 1; cache >= 0; cache--) {
        gp.use_cache = cache;
        gpt2c_gen *gen = gen_run(g->m, &gp, np, (const int32_t *const *)ids, lens);
        for (int i = 0; i < np; i++) {
            int nw, got_n;
            int32_t *want = json_ids(json_array_get(json_object_get(b, "new_ids"), (size_t)i), &nw);
            const int32_t *got = gpt2c_gen_tokens(gen, i, &got_n);
            /* transformers pads finished rows with the pad id; gpt2c stops them. */
            while (nw > got_n && want[nw - 1] == pad) nw--;
            char msg[160];
            snprintf(msg, sizeof msg, "%s batch row %d (%s cache)", g->name, i, cache ? "with" : "without");
            assert_ids_equal(got, got_n, want, nw, msg);
            free(want);
        }
        gpt2c_gen_free(gen);
    }
    for (int i = 0; i < np; i++) free(ids[i]);
}

/* Beam search: transformers' sequences and sequences_scores. */
static void test_beam(void **state) {
    golden *g = *state;
    SKIP_WITHOUT_SHARED(g);
    const int pad = (int)json_integer_value(json_object_get(json_object_get(g->g, "generation"), "pad_token_id_used"));
    check_beam_case(g->m, json_object_get(g->g, "beam"), pad, g->name);
}

#define CASES(i)                                                                  \
    cmocka_unit_test_prestate_setup_teardown(test_model_type, setup, teardown, &G[i]), \
    cmocka_unit_test_prestate_setup_teardown(test_logits, setup, teardown, &G[i]),     \
    cmocka_unit_test_prestate_setup_teardown(test_greedy, setup, teardown, &G[i]),     \
    cmocka_unit_test_prestate_setup_teardown(test_batch, setup, teardown, &G[i]),      \
    cmocka_unit_test_prestate_setup_teardown(test_beam, setup, teardown, &G[i])

int main(void) {
    const struct CMUnitTest tests[] = {
        CASES(0),
        /* The same weights from pytorch_model.bin, both torch formats. */
        cmocka_unit_test_prestate_setup_teardown(test_logits, setup, teardown, &G[1]),
        cmocka_unit_test_prestate_setup_teardown(test_logits, setup, teardown, &G[2]),
        CASES(3), CASES(4), CASES(5), CASES(6), CASES(7), CASES(8), CASES(9), CASES(10),
    };
    return cmocka_run_group_tests_name("architecture goldens", tests, NULL, NULL);
}
