/* test_reference.c -- the engine against the independent numpy references
 * (tools/ref_gpt2.py; tools/ref_arch.py for GPT-Neo, OPT and GPT-NeoX) on
 * random checkpoints of tiny and gpt2 shapes in F32, F16 and BF16, a GPT-2
 * variant that takes every optional path, a 280-token prompt (past the KV
 * cache's blocks of 256 positions), and small checkpoints of each other
 * architecture (tests/make_reference.py lists them). Checks the
 * logits at every position (|diff| <= 1e-4; 3e-3 for q8, see TOL_Q8), greedy tokens, and that the KV
 * cache, full recomputation and batching all give the same tokens, and
 * that beam search matches the reference's (F32 variants). The
 * fixtures come from tests/make_reference.py (tests/run.sh makes them). */
#include <math.h>

#include "model/model.h"
#include "testutil.h"

#define TOL 1e-4
/* q8 rounds every product's inputs to 16 bits (1/32767 of a block's largest
 * value, kernels.h), and the reference does the same in float64; whether a
 * value rounds up or down then turns on the last bits of activations that
 * the two compute in different precisions, and after the first layer on the
 * other's earlier roundings. Measured: the whole 16-bit rounding moves the
 * reference's logits by 5e-4 .. 8e-4 (|logits| up to 9), gpt2c is within
 * 5e-4 of it; a wrong weight, scale or layout costs O(1). */
#define TOL_Q8 3e-3

typedef struct ref_case {
    char name[64], dir[512], ids[4096], logits[512], greedy[512], beam[2048];
} ref_case;

#define MAX_CASES 64
static ref_case cases[MAX_CASES];
static int n_cases;

static int setup(void **state) {
    (void)state;
    const char *d = getenv("GPT2C_REF_DIR");
    char path[600];
    snprintf(path, sizeof path, "%s/manifest.txt", d ? d : "build/ref");
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: missing; run tests/make_reference.py first (tests/run.sh does)\n", path);
        return -1;
    }
    ref_case extra;
    for (;;) {
        ref_case *c = n_cases < MAX_CASES ? &cases[n_cases] : &extra;
        if (fscanf(f, "%63s %511s %4095s %511s %511s %2047s", c->name, c->dir, c->ids, c->logits, c->greedy,
                   c->beam) != 6)
            break;
        if (c == &extra) { /* every variant is checked, or the test fails */
            fprintf(stderr, "%s: more than %d variants; raise MAX_CASES\n", path, MAX_CASES);
            fclose(f);
            return -1;
        }
        n_cases++;
    }
    fclose(f);
    return n_cases > 0 ? 0 : -1;
}

static int32_t *parse_list(const char *s, int *n) {
    int32_t *v = malloc(sizeof(int32_t) * 1024);
    *n = 0;
    while (*s && *n < 1024) {
        v[(*n)++] = (int32_t)strtol(s, (char **)&s, 10);
        if (*s == ',') s++;
    }
    return v;
}

/* Variants named *-q8 load their F32 checkpoint with --dtype q8. */
static gpt2c_model *load(const ref_case *c) {
    gpt2c_model *m;
    size_t n = strlen(c->name);
    gpt2c_model_params p = {.dtype = n > 3 && strcmp(c->name + n - 3, "-q8") == 0 ? "q8" : NULL};
    if (gpt2c_model_load_ex(c->dir, &p, &m) != GPT2C_OK) fail_msg("%s: %s", c->name, gpt2c_model_errmsg(m));
    return m;
}

static void test_logits_match_reference(void **state) {
    (void)state;
    for (int k = 0; k < n_cases; k++) {
        const ref_case *c = &cases[k];
        gpt2c_model *m = load(c);
        int n;
        int32_t *ids = parse_list(c->ids, &n);
        const int V = m->cfg.n_vocab;
        float *want = malloc(sizeof(float) * (size_t)n * V), *got = malloc(sizeof(float) * (size_t)n * V);
        FILE *f = fopen(c->logits, "rb");
        assert_non_null(f);
        assert_int_equal(fread(want, sizeof(float), (size_t)n * V, f), (size_t)n * V);
        fclose(f);
        gpt2_state st;
        gpt2_err e = {0};
        assert_int_equal(gpt2_state_init(&st, m, 1, n, 5, 0, &e), GPT2C_OK); /* chunks of 5: crosses chunk edges */
        int *pos = malloc(sizeof(int) * (size_t)n), *slot = calloc((size_t)n, sizeof(int));
        for (int i = 0; i < n; i++) pos[i] = i;
        gpt2_batch b = {n, ids, pos, slot, pos};
        assert_int_equal(gpt2_forward(m, &st, &b, got, &e), GPT2C_OK);
        double worst = 0;
        for (size_t i = 0; i < (size_t)n * V; i++) worst = fmax(worst, fabs((double)got[i] - want[i]));
        fprintf(stderr, "  %-13s max |logit - reference| = %.2e over %d x %d\n", c->name, worst, n, V);
        const size_t len = strlen(c->name);
        const double tol = len > 3 && strcmp(c->name + len - 3, "-q8") == 0 ? TOL_Q8 : TOL;
        if (!(worst <= tol)) fail_msg("%s: logits differ from the reference by %.2e > %.0e", c->name, worst, tol);
        gpt2_state_free(&st);
        free(pos);
        free(slot);
        free(want);
        free(got);
        free(ids);
        gpt2c_model_free(m);
    }
}

static gpt2c_gen *run(gpt2c_model *m, int np, const int32_t *const *p, const int *lens, int max_new, int cache) {
    gpt2c_gen_params gp;
    gpt2c_gen_params_init(&gp);
    gp.max_new_tokens = max_new;
    gp.use_cache = cache;
    gp.eos_token_id = -1; /* random weights: let every run reach its length */
    gpt2c_gen *g;
    if (gpt2c_gen_start(m, &gp, np, p, lens, &g) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(g));
    while (gpt2c_gen_step(g) == GPT2C_OK) {
    }
    return g;
}

static void test_greedy_cache_batch(void **state) {
    (void)state;
    for (int k = 0; k < n_cases; k++) {
        const ref_case *c = &cases[k];
        gpt2c_model *m = load(c);
        int n, nw;
        int32_t *ids = parse_list(c->ids, &n), *want = parse_list(c->greedy, &nw);
        const int32_t *p1[1] = {ids};
        gpt2c_gen *cached = run(m, 1, p1, &n, nw, 1), *full = run(m, 1, p1, &n, nw, 0);
        int a, b;
        const int32_t *ta = gpt2c_gen_tokens(cached, 0, &a), *tb = gpt2c_gen_tokens(full, 0, &b);
        char msg[256];
        snprintf(msg, sizeof msg, "%.63s greedy vs reference", c->name);
        assert_ids_equal(ta, a, want, nw, msg);
        snprintf(msg, sizeof msg, "%.63s KV cache vs recomputation", c->name);
        assert_ids_equal(tb, b, ta, a, msg);
        /* In a batch with a shorter prompt, each row is its own run. */
        int lens[2] = {n, 5};
        const int32_t *p2[2] = {ids, ids};
        gpt2c_gen *batch = run(m, 2, p2, lens, nw, 1), *alone = run(m, 1, p1 + 0, &lens[1], nw, 1);
        const int32_t *r0 = gpt2c_gen_tokens(batch, 0, &a);
        snprintf(msg, sizeof msg, "%.63s batch row 0", c->name);
        assert_ids_equal(r0, a, ta, nw, msg);
        const int32_t *r1 = gpt2c_gen_tokens(batch, 1, &a), *s1 = gpt2c_gen_tokens(alone, 0, &b);
        snprintf(msg, sizeof msg, "%.63s batch row 1", c->name);
        assert_ids_equal(r1, a, s1, b, msg);
        gpt2c_gen_free(cached);
        gpt2c_gen_free(full);
        gpt2c_gen_free(batch);
        gpt2c_gen_free(alone);
        free(ids);
        free(want);
        gpt2c_model_free(m);
    }
}

/* Beam search (3 beams, 2 returned) against the reference's
 * "score:ids;score:ids", with and without the cache. */
static void test_beam_matches_reference(void **state) {
    (void)state;
    int checked = 0;
    for (int k = 0; k < n_cases; k++) {
        const ref_case *c = &cases[k];
        if (strcmp(c->beam, "-") == 0) continue;
        gpt2c_model *m = load(c);
        int n, ng;
        int32_t *ids = parse_list(c->ids, &n), *greedy = parse_list(c->greedy, &ng);
        const int32_t *p1[1] = {ids};
        for (int cache = 1; cache >= 0; cache--) {
            gpt2c_gen_params gp;
            gpt2c_gen_params_init(&gp);
            gp.num_beams = 3;
            gp.num_return_sequences = 2;
            gp.max_new_tokens = ng;
            gp.eos_token_id = -1;
            gp.use_cache = cache;
            gpt2c_gen *g;
            if (gpt2c_gen_start(m, &gp, 1, p1, &n, &g) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(g));
            while (gpt2c_gen_step(g) == GPT2C_OK) {
            }
            const char *r = c->beam;
            for (int i = 0; i < 2; i++) {
                char *end;
                double want_score = strtod(r, &end);
                assert_true(*end == ':');
                int nw;
                int32_t *want = parse_list(end + 1, &nw);
                nw = nw > ng ? ng : nw; /* parse_list reads on past ';' */
                int got_n;
                const int32_t *got = gpt2c_gen_tokens(g, i, &got_n);
                char msg[128];
                snprintf(msg, sizeof msg, "%.63s beam %d (%s cache)", c->name, i, cache ? "with" : "without");
                assert_ids_equal(got, got_n, want, nw, msg);
                if (fabs(gpt2c_gen_score(g, i) - want_score) > 1e-4)
                    fail_msg("%s: score %.7f, reference %.7f", msg, gpt2c_gen_score(g, i), want_score);
                free(want);
                r = strchr(r, ';');
                if (r) r++;
                else break;
            }
            gpt2c_gen_free(g);
        }
        checked++;
        free(ids);
        free(greedy);
        gpt2c_model_free(m);
    }
    assert_true(checked >= 2);
}

/* One generation on engine e, run to its end; the tokens of its sequences
 * must equal those of the same generation alone (gpt2c_gen_start), and its
 * reused prompt tokens are returned. */
static int on_engine(gpt2c_model *m, gpt2c_engine *e, const gpt2c_gen_params *gp, const int32_t *ids, int n,
                     const char *what) {
    const int32_t *p1[1] = {ids};
    gpt2c_gen *g, *alone;
    if (gpt2c_engine_add(e, gp, 1, p1, &n, &g) != GPT2C_OK) fail_msg("%s: %s", what, gpt2c_gen_errmsg(g));
    while (gpt2c_engine_step(e) == GPT2C_OK && gpt2c_gen_status(g) == GPT2C_OK) {
    }
    assert_int_equal(gpt2c_gen_status(g), GPT2C_DONE);
    if (gpt2c_gen_start(m, gp, 1, p1, &n, &alone) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(alone));
    while (gpt2c_gen_step(alone) == GPT2C_OK) {
    }
    for (int i = 0; i < gpt2c_gen_n_seqs(g); i++) {
        int a, b;
        const int32_t *ta = gpt2c_gen_tokens(g, i, &a), *tb = gpt2c_gen_tokens(alone, i, &b);
        char msg[160];
        snprintf(msg, sizeof msg, "%s, sequence %d", what, i);
        assert_ids_equal(ta, a, tb, b, msg);
    }
    int reused = gpt2c_gen_reused_tokens(g);
    gpt2c_gen_free(g);
    gpt2c_gen_free(alone);
    return reused;
}

/* The prompt cache: a prompt that extends one an engine ran before starts
 * after the shared prefix, with the same tokens as without the cache --
 * greedy, sampled and beam search, for every variant (every architecture,
 * q8, the 280-token prompt across the cache's blocks); off, nothing is
 * reused. */
static void test_prompt_cache(void **state) {
    (void)state;
    for (int k = 0; k < n_cases; k++) {
        const ref_case *c = &cases[k];
        gpt2c_model *m = load(c);
        int n, ng;
        int32_t *ids = parse_list(c->ids, &n), *greedy = parse_list(c->greedy, &ng);
        int32_t *longer = malloc(sizeof *longer * (size_t)(n + 3));
        memcpy(longer, ids, sizeof *ids * (size_t)n);
        longer[n] = ids[0], longer[n + 1] = ids[1], longer[n + 2] = ids[n - 1];
        gpt2c_engine *e;
        if (gpt2c_engine_new(m, 3, 1, &e) != GPT2C_OK) fail_msg("%s", gpt2c_engine_errmsg(e));
        gpt2c_gen_params gp;
        gpt2c_gen_params_init(&gp);
        gp.max_new_tokens = ng < 6 ? ng : 6;
        gp.eos_token_id = -1;
        char what[128];
        snprintf(what, sizeof what, "%.63s: the first prompt", c->name);
        assert_int_equal(on_engine(m, e, &gp, ids, n, what), 0);
        snprintf(what, sizeof what, "%.63s: greedy after it", c->name);
        if (on_engine(m, e, &gp, longer, n + 2, what) < n) fail_msg("%s: less than the %d-token prefix reused", what, n);
        gp.do_sample = 1, gp.top_k = 0, gp.seed = 7, gp.has_seed = 1;
        snprintf(what, sizeof what, "%.63s: sampled, the same prompt again", c->name);
        if (on_engine(m, e, &gp, ids, n, what) != n - 1) fail_msg("%s: not all but the last token reused", what);
        gpt2c_gen_params_init(&gp);
        gp.max_new_tokens = 4;
        gp.eos_token_id = -1;
        gp.num_beams = 3;
        snprintf(what, sizeof what, "%.63s: beam search after it", c->name);
        if (on_engine(m, e, &gp, longer, n + 3, what) < n) fail_msg("%s: less than the prefix reused", what);
        gpt2c_engine_set_prompt_cache(e, 0);
        snprintf(what, sizeof what, "%.63s: the cache off", c->name);
        assert_int_equal(on_engine(m, e, &gp, longer, n + 3, what), 0);
        gpt2c_engine_free(e);
        free(longer);
        free(ids);
        free(greedy);
        gpt2c_model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_match_reference),
        cmocka_unit_test(test_greedy_cache_batch),
        cmocka_unit_test(test_beam_matches_reference),
        cmocka_unit_test(test_prompt_cache),
    };
    return cmocka_run_group_tests_name("reference", tests, setup, NULL);
}
