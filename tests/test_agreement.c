/* test_agreement.c -- what the smaller formats cost in exactness: for f16,
 * bf16 and q8 weights and for an f16 KV cache ("kv-f16"), against the same
 * checkpoint in f32, the teacher-forced top-1 agreement and the mean KL
 * divergence KL(p_f32 || p) of the next-token distributions, over every
 * position of the golden prompts (tests/fixtures/golden/tiny.json, those of
 * up to 64 tokens), on the random tiny- and gpt2-shaped checkpoints of
 * tests/make_reference.py and its GPT-Neo, OPT and GPT-NeoX ones. Prints
 * the table; checks f16 weights and the f16
 * KV cache against the 99%, the order of the weight formats' costs,
 * bf16 compute (--compute bf16: KL above bf16 weights', below 4 times it;
 * prefill = decode bits),
 * q8 against the common 8-bit scheme as the numpy reference tool computes it
 * (tools/ref_gpt2.py --dtype q8) on the manifest's prompt (no more KL and no
 * less agreement than the reference's own q8 logits have), and that an f16
 * KV cache gives the same tokens cached, recomputed and batched. */
#include <math.h>

#include "forward_util.h"

#define BF16_COMPUTE_KL 4.0 /* measured 1.7-1.9 on the five checkpoints */

typedef struct agreement {
    long positions, agree;
    double kl_sum, entropy_sum; /* entropy of the f32 distributions: how sharp they are */
} agreement;

/* The log-softmax of n rows of V logits, in double, in place into out. */
static void log_softmax(const float *logits, int n, int V, double *out) {
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * V;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, l[v]);
        for (int v = 0; v < V; v++) s += exp(l[v] - mx);
        double lse = mx + log(s);
        for (int v = 0; v < V; v++) out[(size_t)i * V + v] = l[v] - lse;
    }
}

static int argmax(const float *l, int V) {
    int b = 0;
    for (int v = 1; v < V; v++)
        if (l[v] > l[b]) b = v;
    return b;
}

/* Adds n positions of `got` against `want` (both raw logits) to a. */
static void compare(agreement *a, const float *want, const float *got, int n, int V) {
    double *lp = malloc(sizeof(double) * (size_t)n * V), *lq = malloc(sizeof(double) * (size_t)n * V);
    assert_non_null(lp);
    assert_non_null(lq);
    log_softmax(want, n, V, lp);
    log_softmax(got, n, V, lq);
    for (int i = 0; i < n; i++) {
        double kl = 0, h = 0;
        for (int v = 0; v < V; v++) {
            size_t k = (size_t)i * V + v;
            kl += exp(lp[k]) * (lp[k] - lq[k]);
            h -= exp(lp[k]) * lp[k];
        }
        a->kl_sum += kl;
        a->entropy_sum += h;
        a->agree += argmax(want + (size_t)i * V, V) == argmax(got + (size_t)i * V, V);
        a->positions++;
    }
    free(lp);
    free(lq);
}

/* dtype "kv-f16": f32 weights with an f16 KV cache; "bf16-compute": the
 * products in bf16 (gpt2c_model_params.compute). */
static gpt2c_model *load(const char *dir, const char *dtype) {
    gpt2c_model *m;
    int kv = dtype && !strcmp(dtype, "kv-f16"), bc = dtype && !strcmp(dtype, "bf16-compute");
    gpt2c_model_params p = {.dtype = kv || bc ? NULL : dtype, .kv_cache = kv ? "f16" : NULL,
                            .compute = bc ? "bf16" : NULL};
    if (gpt2c_model_load_ex(dir, &p, &m) != GPT2C_OK) fail_msg("%s (%s): %s", dir, dtype, gpt2c_model_errmsg(m));
    return m;
}

static const char *const DTYPES[] = {"f16", "bf16", "q8", "kv-f16", "bf16-compute"};
#define N_FORMATS 5

/* Whether this CPU's kernels have the bf16 product (AVX512_BF16). */
static int have_bf16_compute(void) {
    const gpt2_kernels *k = gpt2_kernels_select();
    if (!k->matmul_bf16) fprintf(stderr, "  (the %s kernels have no bf16 product: bf16-compute is skipped)\n", k->name);
    return k->matmul_bf16 != NULL;
}

static void test_formats_agree(void **state) {
    (void)state;
    const char *ref = getenv("GPT2C_REF_DIR") ? getenv("GPT2C_REF_DIR") : "build/ref";
    json_t *golden = load_json_or_fail(GOLDEN_JSON_DIR "/tiny.json");
    json_t *prompts = json_object_get(golden, "prompts");
    fprintf(stderr, "  %-13s %-12s %9s %9s %10s %12s\n", "checkpoint", "format", "positions", "entropy", "top-1", "mean KL");
    /* GPT-2's shapes, then one small checkpoint of each other architecture.
     * gpt2's shapes cost half the time, 5 times that under the sanitizers,
     * whose build takes the same paths with tiny-f32. */
    if (TEST_SANITIZED) fprintf(stderr, "  (sanitizer build: gpt2-f32 is left to the plain build)\n");
    const int formats = have_bf16_compute() ? N_FORMATS : N_FORMATS - 1;
    for (const char *const *ck = (const char *const[]){"tiny-f32", "gpt2-f32", "neo-mini-f32", "opt-mini-f32",
                                                       "neox-mini-f32", NULL};
         *ck; ck++) {
        if (TEST_SANITIZED && !strcmp(*ck, "gpt2-f32")) continue;
        char dir[600];
        snprintf(dir, sizeof dir, "%s/%s", ref, *ck);
        gpt2c_model *base = load(dir, NULL), *m[N_FORMATS];
        for (int d = 0; d < formats; d++) m[d] = load(dir, DTYPES[d]);
        agreement a[N_FORMATS] = {{0}};
        const char *key;
        json_t *p;
        json_object_foreach(prompts, key, p) {
            int n;
            int32_t *ids = json_ids(json_object_get(p, "input_ids"), &n);
            if (n > 64) { /* the 304- and 1016-token prompts: the rest suffice */
                free(ids);
                continue;
            }
            float *want = forward_all(base, ids, n);
            for (int d = 0; d < formats; d++) {
                float *got = forward_all(m[d], ids, n);
                compare(&a[d], want, got, n, base->cfg.n_vocab);
                free(got);
            }
            free(want);
            free(ids);
        }
        for (int d = 0; d < formats; d++) {
            double agree = (double)a[d].agree / (double)a[d].positions, kl = a[d].kl_sum / (double)a[d].positions;
            fprintf(stderr, "  %-13s %-12s %9ld %9.2f %9.2f%% %12.3e\n", *ck, DTYPES[d], a[d].positions,
                    a[d].entropy_sum / (double)a[d].positions, 100 * agree, kl);
        }
        /* f16 keeps 11 significant bits, bf16 8, q8 about 7 per block: the
         * cost must follow that order. f16 must reach the 99% the issue asks
         * even here; bf16 cannot be held to it on random weights, whose
         * near-uniform distributions (the entropy column, of at most 10.8
         * nats) leave the top two logits a near tie at many positions. */
        if (a[0].agree < 0.99 * (double)a[0].positions) fail_msg("%s f16: top-1 agreement below 99%%", *ck);
        if (a[3].agree < 0.99 * (double)a[3].positions) fail_msg("%s f16 KV cache: top-1 agreement below 99%%", *ck);
        if (!(a[0].kl_sum < a[1].kl_sum && a[1].kl_sum < a[2].kl_sum))
            fail_msg("%s: KL not ordered f16 < bf16 < q8 (%.3e, %.3e, %.3e)", *ck, a[0].kl_sum, a[1].kl_sum, a[2].kl_sum);
        /* bf16 compute rounds the inputs of every product besides bf16's
         * weights: it costs more than bf16 weights alone, and within a few
         * times (BF16_COMPUTE_KL) their cost. */
        if (formats == N_FORMATS && !(a[4].kl_sum > a[1].kl_sum && a[4].kl_sum < BF16_COMPUTE_KL * a[1].kl_sum))
            fail_msg("%s: bf16 compute's KL %.3e is not between bf16 weights' %.3e and %g times it", *ck, a[4].kl_sum,
                     a[1].kl_sum, BF16_COMPUTE_KL);
        for (int d = 0; d < formats; d++) gpt2c_model_free(m[d]);
        gpt2c_model_free(base);
    }
    json_decref(golden);
}

/* Reads n x V float32 logits written by tests/make_reference.py. */
static float *read_logits(const char *path, size_t count) {
    float *v = malloc(sizeof(float) * count);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s: missing (tests/make_reference.py makes it)", path);
    assert_int_equal(fread(v, sizeof(float), count, f), count);
    fclose(f);
    return v;
}

static void test_q8_as_good_as_reference_scheme(void **state) {
    (void)state;
    const char *ref = getenv("GPT2C_REF_DIR") ? getenv("GPT2C_REF_DIR") : "build/ref";
    static const int32_t ids[] = {15496, 11, 314, 1101, 257, 3303, 2746, 11, 290, 314, 588, 262}; /* the manifest's */
    const int n = (int)(sizeof ids / sizeof *ids);
    for (const char *const *ck = (const char *const[]){"tiny", "gpt2", NULL}; *ck; ck++) {
        char dir[600], f32_path[600], q8_path[600];
        snprintf(dir, sizeof dir, "%s/%s-f32", ref, *ck);
        snprintf(f32_path, sizeof f32_path, "%s/%s-f32.f32", ref, *ck);
        snprintf(q8_path, sizeof q8_path, "%s/%s-q8w.f32", ref, *ck);
        gpt2c_model *base = load(dir, NULL), *q8 = load(dir, "q8");
        const int V = base->cfg.n_vocab;
        float *ref32 = read_logits(f32_path, (size_t)n * V), *ref8 = read_logits(q8_path, (size_t)n * V);
        float *ours32 = forward_all(base, ids, n), *ours8 = forward_all(q8, ids, n);
        agreement r = {0}, o = {0};
        compare(&r, ref32, ref8, n, V);
        compare(&o, ours32, ours8, n, V);
        fprintf(stderr, "  %s q8 on %d positions: reference scheme top-1 %ld/%ld, KL %.3e; gpt2c top-1 %ld/%ld, KL %.3e\n",
                *ck, n, r.agree, r.positions, r.kl_sum / n, o.agree, o.positions, o.kl_sum / n);
        /* The same scheme, so the same cost up to the f32 rounding of two
         * implementations: 1% of the KL. */
        assert_true(o.agree >= r.agree);
        assert_true(o.kl_sum <= r.kl_sum * 1.01 + 1e-12);
        free(ref32);
        free(ref8);
        free(ours32);
        free(ours8);
        gpt2c_model_free(base);
        gpt2c_model_free(q8);
    }
}

/* An f16 KV cache rounds each key and value once, when stored, and every
 * path reads them back from the cache; bf16 compute rounds each product's
 * inputs the same way whatever the rows run together: generation with the
 * cache, without it (recomputing) and in a batch still give the same
 * tokens. */
static void test_formats_consistent(void **state) {
    (void)state;
    const char *ref = getenv("GPT2C_REF_DIR") ? getenv("GPT2C_REF_DIR") : "build/ref";
    char dir[600];
    snprintf(dir, sizeof dir, "%s/tiny-f32", ref);
    for (const char *const *fmt = (const char *const[]){"kv-f16", "bf16-compute", NULL}; *fmt; fmt++) {
    if (!strcmp(*fmt, "bf16-compute") && !have_bf16_compute()) continue;
    gpt2c_model *m = load(dir, *fmt);
    static const int32_t p0[] = {15496, 11, 314, 1101, 257, 3303, 2746, 11}, p1[] = {464, 2068, 7586};
    const int32_t *prompts[2] = {p0, p1};
    int lens[2] = {8, 3};
    const int32_t *got[3];
    int n[3];
    gpt2c_gen *g[3];
    for (int run = 0; run < 3; run++) { /* cached, recomputed, in a batch of two */
        gpt2c_gen_params gp;
        gpt2c_gen_params_init(&gp);
        gp.max_new_tokens = 24;
        gp.eos_token_id = -1;
        gp.use_cache = run != 1;
        if (gpt2c_gen_start(m, &gp, run == 2 ? 2 : 1, prompts, lens, &g[run]) != GPT2C_OK)
            fail_msg("%s", gpt2c_gen_errmsg(g[run]));
        while (gpt2c_gen_step(g[run]) == GPT2C_OK) {
        }
        got[run] = gpt2c_gen_tokens(g[run], 0, &n[run]);
    }
    char what[64];
    snprintf(what, sizeof what, "%s: recomputed vs cached", *fmt);
    assert_ids_equal(got[1], n[1], got[0], n[0], what);
    snprintf(what, sizeof what, "%s: in a batch vs alone", *fmt);
    assert_ids_equal(got[2], n[2], got[0], n[0], what);
    for (int run = 0; run < 3; run++) gpt2c_gen_free(g[run]);
    gpt2c_model_free(m);
    }
}

/* bf16 compute keeps the contract of kernels.h: the logits of a prompt are
 * the same bits whether its tokens run together (prefill) or one by one
 * (decode), on a prompt long enough for the packed tiles; and the tokens
 * are the same cached, recomputed and batched (test_formats_consistent).
 * Kernels without the bf16 product refuse it, naming what is missing. */
static void test_bf16_compute_exact(void **state) {
    (void)state;
    const char *ref = getenv("GPT2C_REF_DIR") ? getenv("GPT2C_REF_DIR") : "build/ref";
    char dir[600];
    snprintf(dir, sizeof dir, "%s/tiny-f32", ref);
    setenv("GPT2C_KERNELS", "avx512vnni", 1); /* a table without it, where the CPU has that one */
    if (strcmp(gpt2_kernels_select()->name, "avx512vnni") == 0) {
        gpt2c_model *m;
        gpt2c_model_params p = {.compute = "bf16"};
        assert_int_equal(gpt2c_model_load_ex(dir, &p, &m), GPT2C_ERR_UNSUPPORTED);
        assert_non_null(strstr(gpt2c_model_errmsg(m), "AVX512_BF16"));
        gpt2c_model_free(m);
    }
    unsetenv("GPT2C_KERNELS");
    /* compute "f32" leaves a dtype to convert; "bf16" takes "bf16" beside it, and refuses another. */
    const struct {
        const char *compute, *dtype, *want;
        gpt2c_status status;
    } combos[] = {{"f32", "f16", "F16", GPT2C_OK}, {"bf16", "bf16", "BF16", GPT2C_OK},
                  {"bf16", "q8", NULL, GPT2C_ERR_INVALID}, {"f8", NULL, NULL, GPT2C_ERR_INVALID}};
    for (size_t i = 0; i < sizeof combos / sizeof *combos; i++) {
        if (!strcmp(combos[i].compute, "bf16") && !gpt2_kernels_select()->matmul_bf16) continue;
        gpt2c_model *m;
        gpt2c_model_params p = {.compute = combos[i].compute, .dtype = combos[i].dtype};
        const gpt2c_status st = gpt2c_model_load_ex(dir, &p, &m);
        if (st != combos[i].status)
            fail_msg("compute %s, dtype %s: status %d, want %d (%s)", combos[i].compute, combos[i].dtype, st,
                     combos[i].status, gpt2c_model_errmsg(m));
        gpt2c_model_info info;
        if (st == GPT2C_OK) gpt2c_model_get_info(m, &info);
        if (st == GPT2C_OK && (strcmp(info.weight_dtype, combos[i].want) || strcmp(info.compute, combos[i].compute)))
            fail_msg("compute %s, dtype %s: weights %s in %s compute", combos[i].compute, combos[i].dtype,
                     info.weight_dtype, info.compute);
        if (st != GPT2C_OK && !strstr(gpt2c_model_errmsg(m), "compute"))
            fail_msg("compute %s, dtype %s: the message does not name compute: %s", combos[i].compute,
                     combos[i].dtype, gpt2c_model_errmsg(m));
        gpt2c_model_free(m);
    }
    if (!have_bf16_compute()) return;
    int32_t ids[100];
    for (int i = 0; i < 100; i++) ids[i] = (int32_t)((i * 7919 + 13) % 50257);
    for (const char *const *ck = (const char *const[]){"tiny-f32", "neo-mini-f32", "gpt2-f32", NULL}; *ck; ck++) {
        if (TEST_SANITIZED && !strcmp(*ck, "gpt2-f32")) continue;
        snprintf(dir, sizeof dir, "%s/%s", ref, *ck);
        gpt2c_model *m = load(dir, "bf16-compute");
        const int V = m->cfg.n_vocab, n = 100;
        float *prefill = forward_chunked(m, ids, n, 64), *decode = forward_chunked(m, ids, n, 1);
        float *fives = forward_chunked(m, ids, n, 5);
        if (memcmp(prefill, decode, sizeof(float) * (size_t)n * V) != 0)
            fail_msg("%s bf16 compute: prefill and decode logits differ", *ck);
        if (memcmp(fives, decode, sizeof(float) * (size_t)n * V) != 0)
            fail_msg("%s bf16 compute: chunks of 5 and decode logits differ", *ck);
        free(prefill), free(decode), free(fives);
        gpt2c_model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats_agree),
        cmocka_unit_test(test_q8_as_good_as_reference_scheme),
        cmocka_unit_test(test_formats_consistent),
        cmocka_unit_test(test_bf16_compute_exact),
    };
    return cmocka_run_group_tests_name("agreement", tests, NULL, NULL);
}
