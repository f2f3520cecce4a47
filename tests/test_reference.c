/* test_reference.c -- the engine against the independent numpy references
 * (tools/ref_gpt2.py; tools/ref_arch.py for GPT-Neo, OPT and GPT-NeoX) on
 * random checkpoints of tiny and gpt2 shapes in F32, F16 and BF16, a GPT-2
 * variant that takes every optional path, a 280-token prompt (past the KV
 * cache's blocks of 256 positions), and small checkpoints of each other
 * architecture (tests/make_reference.py lists them). Checks the
 * logits at every position (|diff| <= 1e-4; 3e-3 for q8, see TOL_Q8), greedy tokens, and that the KV
 * cache, full recomputation and batching all give the same tokens, and
 * that beam search matches the reference's (F32 variants); that the prompt
 * cache and speculative decoding change no token (and that speculative
 * sampling follows the model's distribution: a chi-square test). The
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

/* ------------------------------------------------------ speculative decoding */

/* Runs gp on one prompt alone, to the end. */
static gpt2c_gen *alone(gpt2c_model *m, const gpt2c_gen_params *gp, const int32_t *ids, int n) {
    const int32_t *p1[1] = {ids};
    gpt2c_gen *g;
    if (gpt2c_gen_start(m, gp, 1, p1, &n, &g) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(g));
    while (gpt2c_gen_step(g) == GPT2C_OK) {
    }
    if (gpt2c_gen_status(g) != GPT2C_DONE) fail_msg("%s", gpt2c_gen_errmsg(g));
    return g;
}

/* The same tokens, and the same log-probabilities to the bit. */
static void assert_same_run(gpt2c_gen *a, gpt2c_gen *b, const char *what) {
    int na, nb;
    const int32_t *ta = gpt2c_gen_tokens(a, 0, &na), *tb = gpt2c_gen_tokens(b, 0, &nb);
    assert_ids_equal(ta, na, tb, nb, what);
    assert_int_equal(gpt2c_gen_finish_reason(a, 0), gpt2c_gen_finish_reason(b, 0));
    for (int j = 0; j < na; j++) {
        float la = 0, lb = 1;
        int32_t ia[2], ib[2];
        float pa[2], pb[2];
        gpt2c_gen_logprobs(a, 0, j, &la, ia, pa);
        gpt2c_gen_logprobs(b, 0, j, &lb, ib, pb);
        if (memcmp(&la, &lb, sizeof la) || memcmp(ia, ib, sizeof ia) || memcmp(pa, pb, sizeof pa))
            fail_msg("%s: the log-probabilities of token %d differ (%.9g vs %.9g)", what, j, la, lb);
    }
}

static const ref_case *find_case(const char *name) {
    for (int k = 0; k < n_cases; k++)
        if (strcmp(cases[k].name, name) == 0) return &cases[k];
    return NULL;
}

/* Greedy decoding with a draft gives exactly the tokens (and log-
 * probabilities) of decoding without one: for every variant, drafting for
 * itself in q8 (most proposals hold) and, where the vocabulary is GPT-2's,
 * with GPT-Neo's mini checkpoint as the draft (most are turned down); with
 * 1, 4 and 7 proposals at first (4 in the sanitizer builds, which leave
 * gpt2's shapes in f16, bf16 and q8 to the plain build); with
 * processors that read the drafted tokens (repetition penalty, no-repeat
 * n-grams); with an EOS met inside a draft; and on a shared engine, two
 * generations joining at different steps. */
static void test_speculative_greedy(void **state) {
    (void)state;
    const ref_case *neo = find_case("neo-mini-f32");
    long drafted_total = 0, kept_total = 0;
    for (int k = 0; k < n_cases; k++) {
        const ref_case *c = &cases[k];
        /* gpt2's shapes in other formats add nothing to a sanitizer's view
         * that gpt2-f32 and the tiny variants in them do not (about 11 s
         * each there). */
        if (TEST_SANITIZED && !strncmp(c->name, "gpt2-", 5) && strcmp(c->name, "gpt2-f32")) {
            fprintf(stderr, "  (sanitizer build: %s is left to the plain build)\n", c->name);
            continue;
        }
        gpt2c_model *m = load(c), *drafts[2] = {NULL, NULL};
        /* q8 where the shapes allow (whole blocks of 32 inputs), else f16. */
        gpt2c_model_params q8 = {.dtype = "q8"}, f16 = {.dtype = "f16"};
        if (gpt2c_model_load_ex(c->dir, &q8, &drafts[0]) != GPT2C_OK) {
            gpt2c_model_free(drafts[0]);
            if (gpt2c_model_load_ex(c->dir, &f16, &drafts[0]) != GPT2C_OK) fail_msg("%s", gpt2c_model_errmsg(drafts[0]));
        }
        gpt2c_model_info mi;
        gpt2c_model_get_info(m, &mi);
        /* gpt2's shapes take the q8 draft, one k and no processors: their
         * passes cost 100 times the tiny ones'. The sanitizer builds try
         * one k everywhere (the others run the same code). */
        const int big = mi.n_embd >= 768;
        if (!big && neo && neo != c && mi.n_vocab == 50257 && gpt2c_model_load(neo->dir, &drafts[1]) != GPT2C_OK)
            fail_msg("%s", gpt2c_model_errmsg(drafts[1]));
        int n, ng;
        int32_t *ids = parse_list(c->ids, &n), *greedy = parse_list(c->greedy, &ng);
        gpt2c_gen_params gp;
        gpt2c_gen_params_init(&gp);
        gp.max_new_tokens = 16;
        gp.eos_token_id = -1;
        gp.n_logprobs = 2;
        gpt2c_gen *plain = alone(m, &gp, ids, n);
        gpt2c_gen_params pp = gp;
        pp.repetition_penalty = 1.3f;
        pp.no_repeat_ngram_size = 2;
        gpt2c_gen *plain_pp = alone(m, &pp, ids, n);
        /* An EOS the plain run meets at its 6th token. */
        int nt;
        const int32_t *pt = gpt2c_gen_tokens(plain, 0, &nt);
        gpt2c_gen_params ep = gp;
        ep.eos_token_id = pt[5];
        gpt2c_gen *plain_eos = alone(m, &ep, ids, n);
        for (int di = 0; di < 2; di++) {
            if (!drafts[di]) continue;
            const int ks[3] = {4, 1, 7};
            for (int ki = 0; ki < (big || TEST_SANITIZED ? 1 : 3); ki++) {
                const gpt2c_gen_params *ps[3] = {&gp, &pp, &ep};
                gpt2c_gen *plains[3] = {plain, plain_pp, plain_eos};
                static const char *const kinds[3] = {"", ", with processors", ", EOS"};
                for (int v = 0; v < (big ? 1 : 3); v++) {
                    char what[160];
                    gpt2c_gen_params sp = *ps[v];
                    sp.assistant_model = drafts[di];
                    sp.num_assistant_tokens = ks[ki];
                    gpt2c_gen *g = alone(m, &sp, ids, n);
                    snprintf(what, sizeof what, "%.63s, %s draft, k %d%s", c->name, di ? "neo" : "q8", ks[ki], kinds[v]);
                    assert_same_run(g, plains[v], what);
                    long drafted, kept;
                    gpt2c_gen_draft_stats(g, &drafted, &kept);
                    if (v == 0 && drafted == 0) fail_msg("%s: nothing was drafted", what);
                    drafted_total += drafted, kept_total += kept;
                    gpt2c_gen_free(g);
                }
            }
        }
        /* A shared engine drafting for two generations at once, the second
         * joining two steps after the first, with another prompt. */
        gpt2c_engine *e;
        if (gpt2c_engine_new(m, 2, 1, &e) != GPT2C_OK) fail_msg("%s", gpt2c_engine_errmsg(e));
        if (gpt2c_engine_set_draft(e, drafts[drafts[1] ? 1 : 0], 3) != GPT2C_OK) fail_msg("%s", gpt2c_engine_errmsg(e));
        gpt2c_gen_params sp = gp;
        sp.assistant_model = drafts[drafts[1] ? 1 : 0];
        const int32_t *p1[1] = {ids}, *p2[1] = {ids + 1};
        int n2 = n - 1 < 5 ? n - 1 : 5;
        gpt2c_gen *ga, *gb;
        if (gpt2c_engine_add(e, &sp, 1, p1, &n, &ga) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(ga));
        gpt2c_engine_step(e);
        gpt2c_engine_step(e);
        if (gpt2c_engine_add(e, &sp, 1, p2, &n2, &gb) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(gb));
        while (gpt2c_engine_step(e) == GPT2C_OK) {
        }
        gpt2c_gen *pb = alone(m, &gp, ids + 1, n2);
        char what[160];
        snprintf(what, sizeof what, "%.63s, shared engine, first", c->name);
        assert_same_run(ga, plain, what);
        snprintf(what, sizeof what, "%.63s, shared engine, second", c->name);
        assert_same_run(gb, pb, what);
        gpt2c_gen_free(ga);
        gpt2c_gen_free(gb);
        gpt2c_gen_free(pb);
        gpt2c_engine_free(e);
        gpt2c_gen_free(plain);
        gpt2c_gen_free(plain_pp);
        gpt2c_gen_free(plain_eos);
        free(ids);
        free(greedy);
        gpt2c_model_free(drafts[0]);
        gpt2c_model_free(drafts[1]);
        gpt2c_model_free(m);
    }
    /* Both kinds of verdict were exercised. */
    assert_true(kept_total > 0 && kept_total < drafted_total);
}

/* Speculative sampling follows the model's distribution. 1500 runs (500 in
 * the sanitizer builds) of 3
 * new tokens from the tiny checkpoint at temperature 0.5, drafted by
 * tiny-draft (its weights at 0.6 of the scale: a flatter distribution of
 * the same shape, so that proposals are often kept and often turned down,
 * and the residual max(0, p - q) differs from p): the 2nd and
 * 3rd tokens -- the drafted ones; the 1st comes from the prompt's pass --
 * are binned by their probability under the model's own distribution given
 * the tokens before them (computed here from its logits), and the bins' counts
 * tested against the probabilities (chi-square, p = 0.001). Drawing from the
 * draft's distribution instead, or accepting every proposal, fails it. */
static void test_speculative_sampling(void **state) {
    (void)state;
    const ref_case *tc = find_case("tiny-f32");
    if (!tc) fail_msg("the tiny-f32 variant is needed");
    char ddir[600];
    snprintf(ddir, sizeof ddir, "%s/../tiny-draft", tc->dir);
    gpt2c_model *m = NULL, *d = NULL;
    if (gpt2c_model_load(tc->dir, &m) != GPT2C_OK || gpt2c_model_load(ddir, &d) != GPT2C_OK)
        fail_msg("cannot load tiny-f32 and %s (tests/make_reference.py makes them)", ddir);
    /* The sanitizer builds draw 500 (the smallest bin then expects about
     * 15: the test stays valid, with less power). */
    const int V = 50257, N = TEST_SANITIZED ? 500 : 1500;
    if (TEST_SANITIZED) fprintf(stderr, "  (sanitizer build: %d runs; the plain build draws 1500)\n", N);
    /* Bins of probability: [0.2, 1], [0.1, 0.2), ... [0, 0.0003). */
    enum { NB = 9 };
    const double edge[NB] = {0.2, 0.1, 0.05, 0.02, 0.01, 0.003, 0.001, 0.0003, 0};
    const float T = 0.5f;
    int n;
    int32_t *ids = parse_list(tc->ids, &n);
    if (n > 3) n = 3; /* short: the reference pass below runs it whole each time */
    gpt2c_engine *e = NULL, *ref = NULL;
    if (gpt2c_engine_new(m, 1, 1, &e) != GPT2C_OK || gpt2c_engine_set_draft(e, d, 2) != GPT2C_OK ||
        gpt2c_engine_new(m, 1, 1, &ref) != GPT2C_OK)
        fail_msg("cannot make the engines");
    float *logits = malloc(sizeof(float) * (size_t)V * (size_t)(n + 2));
    double *p = malloc(sizeof(double) * (size_t)V);
    int32_t seq[16];
    double expect[2][NB] = {{0}}, count[2][NB] = {{0}};
    long drafted = 0, kept = 0;
    gpt2c_gen_params gp;
    gpt2c_gen_params_init(&gp);
    gp.do_sample = 1, gp.top_k = 0, gp.temperature = T, gp.has_seed = 1, gp.max_new_tokens = 3, gp.eos_token_id = -1;
    gp.assistant_model = d;
    for (int r = 0; r < N; r++) {
        gp.seed = 1000 + (uint64_t)r;
        const int32_t *p1[1] = {ids};
        gpt2c_gen *g;
        if (gpt2c_engine_add(e, &gp, 1, p1, &n, &g) != GPT2C_OK) fail_msg("%s", gpt2c_gen_errmsg(g));
        while (gpt2c_engine_step(e) == GPT2C_OK) {
        }
        int nt;
        const int32_t *t = gpt2c_gen_tokens(g, 0, &nt);
        assert_int_equal(nt, 3);
        long a, b;
        gpt2c_gen_draft_stats(g, &a, &b);
        drafted += a, kept += b;
        memcpy(seq, ids, sizeof *ids * (size_t)n);
        memcpy(seq + n, t, sizeof *t * 3);
        gpt2c_gen_free(g);
        if (gpt2c_engine_logits(ref, seq, n + 2, logits) != GPT2C_OK) fail_msg("%s", gpt2c_engine_errmsg(ref));
        for (int j = 0; j < 2; j++) { /* token n + 1 + j, predicted by row n + j */
            const float *row = logits + (size_t)(n + j) * V;
            double mx = -INFINITY, z = 0;
            for (int v = 0; v < V; v++) mx = row[v] / T > mx ? row[v] / T : mx;
            for (int v = 0; v < V; v++) z += p[v] = exp(row[v] / T - mx);
            for (int v = 0; v < V; v++) {
                double pv = p[v] / z;
                int bin = 0;
                while (pv < edge[bin]) bin++;
                expect[j][bin] += pv;
                if (v == seq[n + 1 + j]) count[j][bin]++;
            }
        }
    }
    /* Chi-square critical value at p = 0.001, 8 degrees of freedom. */
    for (int j = 0; j < 2; j++) {
        double chi = 0;
        char bins[512] = "";
        for (int b = 0; b < NB; b++) {
            chi += (count[j][b] - expect[j][b]) * (count[j][b] - expect[j][b]) / expect[j][b];
            snprintf(bins + strlen(bins), sizeof bins - strlen(bins), " %.0f/%.1f", count[j][b], expect[j][b]);
        }
        if (getenv("GPT2C_TEST_VERBOSE")) fprintf(stderr, "drafted token %d: chi-square %.2f, counts/expected%s\n", j + 2, chi, bins);
        if (chi > 26.12) fail_msg("drafted token %d: chi-square %.2f > 26.12 (counts/expected%s)", j + 2, chi, bins);
    }
    /* Both verdicts were exercised. */
    if (!(kept > drafted / 20 && kept < drafted - drafted / 20))
        fail_msg("%ld of %ld proposals kept: the test needs both verdicts", kept, drafted);
    free(logits);
    free(p);
    free(ids);
    gpt2c_engine_free(e);
    gpt2c_engine_free(ref);
    gpt2c_model_free(d);
    gpt2c_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_match_reference),
        cmocka_unit_test(test_greedy_cache_batch),
        cmocka_unit_test(test_beam_matches_reference),
        cmocka_unit_test(test_prompt_cache),
        cmocka_unit_test(test_speculative_greedy),
        cmocka_unit_test(test_speculative_sampling),
    };
    return cmocka_run_group_tests_name("reference", tests, setup, NULL);
}
