/* test_train.c -- the training operations and passes: each fast product
 * (forward, d input, d weight) and attention (forward, backward; windows,
 * ALiBi, dropout) against its plain-C reference on odd shapes
 * for every kernel table this CPU runs; gradients that do not depend on the
 * thread count; gradients against central finite differences (double
 * check, independent of torch), GPT-2's and every other architecture's
 * (whose training loss must also equal the inference pass's); LoRA's
 * target matching; and one AdamW step by hand.
 *
 * `test_train --grads DIR IDS OUT [P SEED COUNTER]` is the helper
 * tests/test_train.py uses to compare with torch: it loads DIR in f32,
 * reads "B T id..." from IDS, drops P at every site (ops.h's masks), and
 * writes OUT: the mean loss, then every tensor's gradient of it (f32, in
 * the model's tensor order), and OUT.names, one "name count" a line. */
#include "testutil.h"

#include <math.h>

#include "model/model.h"
#include "train/ops.h"
#include "train/train.h"

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *rand_buf(size_t n, uint32_t seed) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand(&seed);
    return p;
}

static void assert_close(const float *got, const float *want, size_t n, float tol, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= tol * (1.0f + fabsf(want[i]))))
            fail_msg("%s: element %zu is %.9g, expected %.9g", what, i, got[i], want[i]);
}

/* Every product of ops.h on every table against ref_*, with shapes that
 * are not multiples of any vector width or block. */
static void test_products(void **state) {
    (void)state;
    const gpt2_kernels *tables[8];
    const int n_tables = gpt2_kernels_available(tables, 8);
    static const int shapes[][3] = {{1, 1, 1}, {3, 7, 5}, {17, 65, 33}, {70, 129, 47}, {9, 64, 160}};
    gpt2_pool *pool = pool_new(2);
    for (int ti = 0; ti < n_tables; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
            for (int linear = 0; linear < 2; linear++) {
                const int n = shapes[si][0], din = shapes[si][1], dout = shapes[si][2];
                float *x = rand_buf((size_t)n * din, 1), *w = rand_buf((size_t)din * dout, 2);
                float *bias = rand_buf((size_t)dout, 3), *dy = rand_buf((size_t)n * dout, 4);
                float *y = malloc(sizeof(float) * n * dout), *yr = malloc(sizeof(float) * n * dout);
                float *dx = malloc(sizeof(float) * n * din), *dxr = malloc(sizeof(float) * n * din);
                float *dw = rand_buf((size_t)din * dout, 5), *dwr = rand_buf((size_t)din * dout, 5);
                float *db = rand_buf((size_t)dout, 6), *dbr = rand_buf((size_t)dout, 6);
                float *scratch = malloc(sizeof(float) * op_matmul_dw_scratch(2, n, din > dout ? din : dout));
                const op_mat a = {w, linear, WT_F32};
                char what[128];
                snprintf(what, sizeof what, "%s %dx%dx%d %s", tables[ti]->name, n, din, dout,
                         linear ? "linear" : "conv1d");
                op_matmul(pool, tables[ti], y, x, a, bias, n, din, dout);
                ref_matmul(yr, x, a, bias, n, din, dout);
                assert_close(y, yr, (size_t)n * dout, 1e-5f, what);
                op_matmul_dx(pool, tables[ti], dx, dy, a, n, din, dout);
                ref_matmul_dx(dxr, dy, a, n, din, dout);
                assert_close(dx, dxr, (size_t)n * din, 1e-5f, what);
                op_matmul_dw(pool, tables[ti], dw, db, x, dy, linear, n, din, dout, scratch);
                ref_matmul_dw(dwr, dbr, x, dy, linear, n, din, dout);
                assert_close(dw, dwr, (size_t)din * dout, 1e-5f, what);
                assert_close(db, dbr, (size_t)dout, 1e-5f, what);
                free(x), free(w), free(bias), free(dy), free(y), free(yr), free(dx), free(dxr);
                free(dw), free(dwr), free(db), free(dbr), free(scratch);
            }
    pool_free(pool);
}

/* Attention forward and backward on every table against the references. */
static void test_attention(void **state) {
    (void)state;
    const gpt2_kernels *tables[8];
    const int n_tables = gpt2_kernels_available(tables, 8);
    static const int shapes[][4] = {{1, 1, 8, 1}, {2, 5, 48, 2}, {1, 37, 20, 4}, {3, 70, 64, 1}}; // B, T, C, H
    gpt2_pool *pool = pool_new(2);
    for (int ti = 0; ti < n_tables; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            const int B = shapes[si][0], T = shapes[si][1], C = shapes[si][2], H = shapes[si][3];
            const size_t n = (size_t)B * T;
            float *qkv = rand_buf(n * 3 * C, 8), *g = rand_buf(n * C, 9);
            float *y = malloc(sizeof(float) * n * C), *yr = malloc(sizeof(float) * n * C);
            float *d = malloc(sizeof(float) * n * 3 * C), *dr = malloc(sizeof(float) * n * 3 * C);
            float *scratch = malloc(sizeof(float) * op_attention_scratch(2, T, C / H));
            char what[96];
            snprintf(what, sizeof what, "%s attention B %d T %d C %d H %d", tables[ti]->name, B, T, C, H);
            const float slopes[4] = {0.5f, 0.25f, -0.125f, 0.0625f}; /* ALiBi's, one a head */
            for (int v = 0; v < 4; v++) { /* plain, dropping 30%, a window of 3 (dropping too), ALiBi */
                const op_dropout d0 = {v == 1 || v == 2 ? 0.3f : 0.0f, op_dropout_key(5, 6, 7)};
                const op_attn a = {B, T, C, H, 1.7f, v == 2 ? 3 : 0, v == 3 ? slopes : NULL, d0};
                op_attention(pool, tables[ti], y, qkv, &a, scratch);
                ref_attention(yr, qkv, &a);
                assert_close(y, yr, n * C, 1e-5f, what);
                op_attention_dx(pool, tables[ti], d, g, qkv, &a, scratch);
                ref_attention_dx(dr, g, qkv, &a);
                assert_close(d, dr, n * 3 * C, 1e-5f, what);
            }
            free(qkv), free(g), free(y), free(yr), free(d), free(dr), free(scratch);
        }
    pool_free(pool);
}

/* The reference checkpoints (tests/make_reference.py), or skip. */
static const char *ref_model(const char *name) {
    static char buf[1024];
    const char *d = getenv("GPT2C_REF_DIR");
    snprintf(buf, sizeof buf, "%s/%s", d ? d : "build/ref", name);
    return path_is_dir(buf) ? buf : NULL;
}

static gpt2c_model *load_f32(const char *dir) {
    gpt2c_model_params mp = {.dtype = "f32"};
    gpt2c_model *m = NULL;
    if (gpt2c_model_load_ex(dir, &mp, &m)) fail_msg("%s: %s", dir, m ? gpt2c_model_errmsg(m) : "no memory");
    return m;
}

/* Gradients of the mean loss over one batch, into a new buffer (dropout
 * p on every site, masks of counter 3). */
static float *grads_of(gpt2c_model *m, int threads, const int32_t *ids, int B, int T, float p, double *loss) {
    trainer *t = NULL;
    gpt2_err e = {0};
    if (trainer_new(m, B, T, threads, &t, &e)) fail_msg("trainer_new: %s", e.msg);
    trainer_set_dropout(t, p, p, p, 9);
    trainer_set_mode(t, 1, 3);
    long n = 0;
    if (trainer_forward(t, ids, NULL, B, T, loss, &n, &e)) fail_msg("forward: %s", e.msg);
    trainer_backward(t, 1.0f / (float)n);
    *loss /= (double)n;
    float *g = malloc(trainer_n_params(t) * sizeof *g);
    memcpy(g, t->grads, trainer_n_params(t) * sizeof *g);
    trainer_free(t);
    return g;
}

static int32_t *batch_ids(int B, int T, int V, uint32_t seed) {
    int32_t *ids = malloc(sizeof *ids * (size_t)B * T);
    for (int i = 0; i < B * T; i++) seed = seed * 1664525u + 1013904223u, ids[i] = (int32_t)((seed >> 8) % (uint32_t)V);
    return ids;
}

/* The loss of the inference pass (gpt2_forward: the architecture's
 * forward, checked against transformers' logits elsewhere) over the batch,
 * summed in double as the trainer's targets count it. */
static double inference_loss(const gpt2c_model *m, const int32_t *ids, int B, int T) {
    gpt2_state s;
    gpt2_err e = {0};
    const int V = m->cfg.n_vocab;
    if (gpt2_state_init(&s, m, B, T, B * T, 1, &e)) fail_msg("%s", e.msg);
    int *pos = malloc(sizeof *pos * (size_t)B * T), *slot = malloc(sizeof *slot * (size_t)B * T);
    int *row = malloc(sizeof *row * (size_t)B * T);
    float *logits = malloc(sizeof *logits * (size_t)B * T * V);
    for (int i = 0; i < B * T; i++) pos[i] = i % T, slot[i] = i / T, row[i] = i;
    const gpt2_batch b = {B * T, ids, pos, slot, row};
    if (gpt2_forward(m, &s, &b, logits, &e)) fail_msg("%s", e.msg);
    double loss = 0.0;
    for (int i = 0; i < B * T; i++) {
        if (i % T == T - 1) continue;
        const float *l = logits + (size_t)i * V;
        double mx = l[0], sum = 0.0;
        for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < V; v++) sum += exp((double)l[v] - mx);
        loss += mx + log(sum) - l[ids[i + 1]];
    }
    gpt2_state_free(&s);
    free(pos), free(slot), free(row), free(logits);
    return loss;
}

/* Central differences of the loss for `samples` values of each trainable
 * tensor -- its largest gradient, then others -- against g (the gradients
 * of the mean loss). */
static int check_fd(trainer *t, const float *g, const int32_t *ids, int B, int T, int samples, const char *what) {
    gpt2_err e = {0};
    int checked = 0;
    for (int i = 0; i < trainer_n_tensors(t); i++) {
        size_t count, top = 0;
        float *p = trainer_param(t, i, &count);
        const float *gi = g + (p - t->params);
        for (size_t j = 1; j < count; j++) top = fabsf(gi[j]) > fabsf(gi[top]) ? j : top;
        for (int s = 0; s < samples; s++) {
            const size_t j = s == 0 ? top : (size_t)(s * 7919 + i * 31) % count;
            /* Richardson's extrapolation of steps h and h / 2: the largest
             * gradients curve enough for plain differences to be 1% off.
             * The f32 loss's rounding (1e-7 of it) makes about 1e-4 of
             * noise in these differences: the absolute slack. */
            const float keep = p[j], h = 1e-2f * (fabsf(keep) > 1.0f ? fabsf(keep) : 1.0f);
            double d[2];
            for (int k = 0; k < 2; k++) {
                const float hk = k ? h / 2 : h;
                double lp, lm;
                long n;
                p[j] = keep + hk;
                trainer_forward(t, ids, NULL, B, T, &lp, &n, &e);
                p[j] = keep - hk;
                trainer_forward(t, ids, NULL, B, T, &lm, &n, &e);
                d[k] = (lp - lm) / (2.0 * ((double)(keep + hk) - (double)keep)) / (double)n;
            }
            p[j] = keep;
            const double fd = (4.0 * d[1] - d[0]) / 3.0, an = gi[j];
            char name[160];
            if (fabs(fd - an) > 5e-3 * fabs(an) + 3e-4)
                fail_msg("%s: %s[%zu]: gradient %.6g, finite difference %.6g (%.6g %.6g)", what,
                         trainer_tensor_name(t, i, name, sizeof name), j, an, fd, d[0], d[1]);
            checked++;
        }
    }
    return checked;
}

/* One and two threads give the same bits; and against central differences
 * of the loss (in double) for a sample of every tensor's values, on the
 * variant with every option of the architecture (untied head, erf GELU,
 * inverse-layer scaling), without dropout and with 20% dropped at every
 * site (the masks are the same at every evaluation of one counter). */
static void check_gradients(float p);
static void test_gradients(void **state) {
    (void)state;
    check_gradients(0.0f);
    check_gradients(0.2f);
}

static void check_gradients(float pdrop) {
    const char *dir = ref_model("tiny-variant");
    if (!dir) {
        print_message("skipped: no reference checkpoints (run tests/make_reference.py)\n");
        return;
    }
    const int B = 2, T = 9;
    gpt2c_model *m = load_f32(dir);
    int32_t *ids = batch_ids(B, T, m->cfg.n_vocab, 7);
    double loss1, loss2;
    float *g1 = grads_of(m, 1, ids, B, T, pdrop, &loss1);
    gpt2c_model_free(m);
    m = load_f32(dir);
    trainer *t = NULL;
    gpt2_err e = {0};
    float *g2 = grads_of(m, 2, ids, B, T, pdrop, &loss2);
    assert_true(loss1 == loss2);
    size_t np = 0;
    if (trainer_new(m, B, T, 2, &t, &e)) fail_msg("%s", e.msg);
    trainer_set_dropout(t, pdrop, pdrop, pdrop, 9);
    trainer_set_mode(t, 1, 3);
    np = trainer_n_params(t);
    assert_memory_equal(g1, g2, np * sizeof *g1);

    /* Finite differences on a few values of each tensor. */
    char what[64];
    snprintf(what, sizeof what, "tiny-variant, dropout %g", pdrop);
    const int checked = check_fd(t, g1, ids, B, T, 3, what);
    assert_true(checked >= 3 * 12);
    trainer_free(t);
    gpt2c_model_free(m);
    free(g1), free(g2), free(ids);
}

/* LoRA: the adapters' gradients against central differences (B made
 * nonzero first: at its zero start A's gradient is zero), every module
 * adapted, with dropout; nothing else has a gradient. */
static void test_lora_gradients(void **state) {
    (void)state;
    const char *dir = ref_model("tiny-variant");
    if (!dir) {
        print_message("skipped: no reference checkpoints\n");
        return;
    }
    const int B = 2, T = 7;
    gpt2c_model *m = load_f32(dir);
    trainer *t = NULL;
    gpt2_err e = {0};
    /* PEFT's matching: "c_proj" is both projections, "attn.c_proj" one;
     * a name that matches no layer matrix is refused, naming it. */
    const train_lora one = {2, 4.0f, "attn.c_proj"}, none = {2, 4.0f, "c_attn,q_proj"};
    if (trainer_new_lora(m, B, T, 1, &one, 1, &t, &e)) fail_msg("%s", e.msg);
    assert_int_equal(trainer_n_tensors(t), 2 * m->cfg.n_layer);
    char name[96];
    assert_string_equal(trainer_tensor_name(t, 1, name, sizeof name), "h.0.attn.c_proj.lora_B.weight");
    trainer_free(t);
    assert_int_equal(trainer_new_lora(m, B, T, 1, &none, 1, &t, &e), GPT2C_ERR_INVALID);
    assert_non_null(strstr(e.msg, "'q_proj'"));
    const train_lora lo = {3, 6.0f, "c_attn,c_proj,c_fc"};
    if (trainer_new_lora(m, B, T, 2, &lo, 1, &t, &e)) fail_msg("%s", e.msg);
    assert_int_equal(trainer_n_tensors(t), 2 * 4 * m->cfg.n_layer);
    uint32_t seed = 17;
    for (int i = 1; i < trainer_n_tensors(t); i += 2) {
        size_t n;
        float *Bm = trainer_param(t, i, &n);
        for (size_t j = 0; j < n; j++) assert_true(Bm[j] == 0.0f); /* PEFT's start: the model as it is */
        for (size_t j = 0; j < n; j++) Bm[j] = 0.05f * frand(&seed);
    }
    trainer_set_dropout(t, 0.1f, 0.1f, 0.1f, 4);
    trainer_set_mode(t, 1, 2);
    int32_t *ids = batch_ids(B, T, m->cfg.n_vocab, 3);
    double loss;
    long n;
    if (trainer_forward(t, ids, NULL, B, T, &loss, &n, &e)) fail_msg("%s", e.msg);
    trainer_backward(t, 1.0f / (float)n);
    for (int i = 0; i < trainer_n_tensors(t); i++) {
        size_t count;
        float *p = trainer_param(t, i, &count), *g = trainer_grad(t, i, &count);
        for (int s = 0; s < 2; s++) {
            const size_t j = (size_t)(s * 31 + i * 7) % count;
            const float keep = p[j], h = 1e-2f;
            double lp, lm;
            p[j] = keep + h;
            trainer_forward(t, ids, NULL, B, T, &lp, &n, &e);
            p[j] = keep - h;
            trainer_forward(t, ids, NULL, B, T, &lm, &n, &e);
            p[j] = keep;
            const double fd = (lp - lm) / (2.0 * h) / (double)n;
            if (fabs(fd - g[j]) > 2e-3 * fabs(fd) + 2e-4)
                fail_msg("%s[%zu]: gradient %.6g, finite difference %.6g", trainer_tensor_name(t, i, name, sizeof name),
                         j, g[j], fd);
        }
    }
    assert_null(trainer_grad_of(t, m->wte.data));
    trainer_free(t);
    gpt2c_model_free(m);
    free(ids);
}

/* Every other architecture's pass, on the tape (tape.h), on each of its
 * reference checkpoints: the training forward's loss equals the inference
 * pass's; gradients do not depend on the thread count; and against central
 * differences at each tensor's largest gradient, full fine-tuning with
 * dropout (20% at every site) and LoRA on PEFT's default targets for the
 * architecture. (Without dropout, tests/test_train.py holds every gradient
 * to torch's autograd, far closer than differences can; these stay cheap
 * enough for the sanitizer builds.) */
static void test_architectures(void **state) {
    (void)state;
    static const char *const dirs[] = {"neo-mini-f32",      "opt-mini-f32",      "opt-postln-f32",
                                       "neox-mini-f32",     "neox-seqres-f32",   "bloom-mini-f32",
                                       "bloom-postres-f32", "starcoder-mqa-f32", "starcoder-mha-f32",
                                       "codegen-mini-f32"};
    int ran = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof *dirs; d++) {
        const char *dir = ref_model(dirs[d]);
        if (!dir) continue;
        ran++;
        const int B = 2, T = 9;
        gpt2c_model *m = load_f32(dir);
        int32_t *ids = batch_ids(B, T, m->cfg.n_vocab, 11);
        const double want = inference_loss(m, ids, B, T);
        /* ReLU's kinks (OPT) lie within a difference step of some of the
         * units, which bends the differences; the gradients are checked
         * with a smooth activation instead (after the loss with ReLU). */
        const gpt2_act act = m->cfg.act;
        double got;
        free(grads_of(m, 1, ids, B, T, 0.0f, &got));
        got *= B * (T - 1);
        if (!(fabs(got - want) <= 1e-5 * want))
            fail_msg("%s: the training pass's loss %.9g, the inference pass's %.9g", dirs[d], got, want);
        if (act == ACT_RELU) m->cfg.act = ACT_GELU_ERF;
        for (int pi = 0; pi < 2; pi++) {
            const float pdrop = pi ? 0.2f : 0.0f;
            double l1, l2;
            float *g1 = grads_of(m, 1, ids, B, T, pdrop, &l1), *g2 = grads_of(m, 2, ids, B, T, pdrop, &l2);
            assert_true(l1 == l2);
            trainer *t = NULL;
            gpt2_err e = {0};
            if (trainer_new(m, B, T, 2, &t, &e)) fail_msg("%s: %s", dirs[d], e.msg);
            assert_memory_equal(g1, g2, trainer_n_params(t) * sizeof *g1);
            trainer_set_dropout(t, pdrop, pdrop, pdrop, 9);
            trainer_set_mode(t, 1, 3);
            char what[96];
            snprintf(what, sizeof what, "%s, dropout %g", dirs[d], pdrop);
            if (pi) assert_true(check_fd(t, g1, ids, B, T, 1, what) >= 10);
            trainer_free(t);
            free(g1), free(g2);
        }
        gpt2c_model_free(m);

        /* LoRA, B made nonzero so that A's gradient is too. */
        m = load_f32(dir);
        if (act == ACT_RELU) m->cfg.act = ACT_GELU_ERF;
        trainer *t = NULL;
        gpt2_err e = {0};
        const train_lora lo = {2, 5.0f, NULL};
        if (trainer_new_lora(m, B, T, 2, &lo, 3, &t, &e)) fail_msg("%s: %s", dirs[d], e.msg);
        assert_int_equal(trainer_n_tensors(t) % (2 * m->cfg.n_layer), 0);
        uint32_t seed = 5;
        for (int i = 1; i < trainer_n_tensors(t); i += 2) {
            size_t n;
            float *Bm = trainer_param(t, i, &n);
            for (size_t j = 0; j < n; j++) Bm[j] = 0.05f * frand(&seed);
        }
        trainer_set_dropout(t, 0.1f, 0.1f, 0.1f, 4);
        trainer_set_mode(t, 1, 2);
        double loss;
        long n;
        if (trainer_forward(t, ids, NULL, B, T, &loss, &n, &e)) fail_msg("%s", e.msg);
        trainer_backward(t, 1.0f / (float)n);
        char what[96];
        snprintf(what, sizeof what, "%s, LoRA", dirs[d]);
        assert_true(check_fd(t, t->grads, ids, B, T, 1, what) >= 2);
        trainer_free(t);
        gpt2c_model_free(m);
        free(ids);
    }
    if (!ran) print_message("skipped: no reference checkpoints of the other architectures\n");
}

/* One step of AdamW and clipping, against the formulas by hand. */
static void test_adamw(void **state) {
    (void)state;
    const char *dir = ref_model("tiny-f32");
    if (!dir) {
        print_message("skipped: no reference checkpoints\n");
        return;
    }
    gpt2c_model *m = load_f32(dir);
    trainer *t = NULL;
    gpt2_err e = {0};
    if (trainer_new(m, 1, 4, 2, &t, &e)) fail_msg("%s", e.msg);
    const size_t np = trainer_n_params(t);
    float *p0 = malloc(np * sizeof *p0);
    memcpy(p0, t->params, np * sizeof *p0);
    uint32_t seed = 3;
    double sq = 0.0;
    for (size_t j = 0; j < np; j++) t->grads[j] = frand(&seed) * 1e-3f, sq += (double)t->grads[j] * t->grads[j];
    const train_hparams h = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f, .max_grad_norm = 0.5f};
    const double norm = trainer_step(t, &h, 1e-3f);
    assert_true(fabs(norm - sqrt(sq)) < 1e-6 * sqrt(sq));
    for (int i = 0; i < m->n_tensors; i++) {
        size_t count;
        const float *p = trainer_param(t, i, &count);
        const size_t off = (size_t)(p - t->params);
        for (size_t j = off; j < off + count; j += 97) {
            const double g = t->grads[j]; /* the step leaves the gradients clipped */
            const double decay = m->tensors[i].w ? 1.0 - 1e-3 * 0.1 : 1.0;
            const double mm = 0.1 * g, vv = 0.001 * g * g;
            const double want = p0[j] * decay - 1e-3 / 0.1 * mm / (sqrt(vv) / sqrt(0.001) + 1e-8);
            if (fabs(p[j - off] - want) > 1e-6 * (1.0 + fabs(want)))
                fail_msg("%s: %.9g after one step, expected %.9g", m->tensors[i].name, p[j - off], want);
        }
    }
    assert_true(trainer_steps(t) == 1);
    free(p0);
    trainer_free(t);
    gpt2c_model_free(m);
}

/* Two steps, then the model saved and loaded again: every tensor has the
 * trained bits, and so the loss over a batch is the same bits. */
static void test_save_reload(void **state) {
    (void)state;
    const char *dir = ref_model("tiny-f32");
    if (!dir) {
        print_message("skipped: no reference checkpoints\n");
        return;
    }
    const int B = 2, T = 12;
    gpt2c_model *m = load_f32(dir);
    trainer *t = NULL;
    gpt2_err e = {0};
    if (trainer_new(m, B, T, 2, &t, &e)) fail_msg("%s", e.msg);
    int32_t *ids = batch_ids(B, T, m->cfg.n_vocab, 11);
    const train_hparams h = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f, .max_grad_norm = 1.0f};
    double loss, again;
    long n;
    for (int s = 0; s < 2; s++) {
        trainer_zero_grad(t);
        if (trainer_forward(t, ids, NULL, B, T, &loss, &n, &e)) fail_msg("%s", e.msg);
        trainer_backward(t, 1.0f / (float)n);
        trainer_step(t, &h, 1e-3f);
    }
    if (trainer_forward(t, ids, NULL, B, T, &loss, &n, &e)) fail_msg("%s", e.msg);
    char out[] = "/tmp/gpt2c-train-XXXXXX";
    assert_non_null(mkdtemp(out));
    char saved[64];
    snprintf(saved, sizeof saved, "%s/model", out);
    if (gpt2c_model_save(m, saved)) fail_msg("save: %s", gpt2c_model_errmsg(m));
    gpt2c_model *r = load_f32(saved);
    trainer *tr = NULL;
    if (trainer_new(r, B, T, 1, &tr, &e)) fail_msg("%s", e.msg);
    assert_int_equal(r->n_tensors, m->n_tensors);
    for (int i = 0; i < m->n_tensors; i++) {
        size_t c1, c2;
        const float *a = trainer_param(t, i, &c1), *b = trainer_param(tr, i, &c2);
        assert_string_equal(m->tensors[i].name, r->tensors[i].name);
        assert_int_equal(c1, c2);
        assert_memory_equal(a, b, c1 * sizeof *a);
    }
    if (trainer_forward(tr, ids, NULL, B, T, &again, &n, &e)) fail_msg("%s", e.msg);
    assert_memory_equal(&loss, &again, sizeof loss);
    trainer_free(tr);
    gpt2c_model_free(r);
    trainer_free(t);
    gpt2c_model_free(m);
    free(ids);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    assert_int_equal(system(cmd), 0);
}

static int dump_grads(const char *dir, const char *ids_path, const char *out, float pdrop, uint64_t seed,
                      uint64_t counter) {
    FILE *f = fopen(ids_path, "r");
    int B, T;
    if (!f || fscanf(f, "%d %d", &B, &T) != 2) return fprintf(stderr, "%s: unreadable\n", ids_path), 1;
    int32_t *ids = malloc(sizeof *ids * (size_t)B * T);
    for (int i = 0; i < B * T; i++)
        if (fscanf(f, "%d", &ids[i]) != 1) return fprintf(stderr, "%s: short\n", ids_path), 1;
    fclose(f);
    gpt2c_model_params mp = {.dtype = "f32"};
    gpt2c_model *m = NULL;
    if (gpt2c_model_load_ex(dir, &mp, &m)) return fprintf(stderr, "%s: %s\n", dir, gpt2c_model_errmsg(m)), 1;
    trainer *t = NULL;
    gpt2_err e = {0};
    double loss;
    long n;
    if (trainer_new(m, B, T, 0, &t, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    trainer_set_dropout(t, pdrop, pdrop, pdrop, seed);
    trainer_set_mode(t, 1, counter);
    if (trainer_forward(t, ids, NULL, B, T, &loss, &n, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    trainer_backward(t, 1.0f / (float)n);
    FILE *o = fopen(out, "wb");
    char names[1100];
    snprintf(names, sizeof names, "%s.names", out);
    FILE *nf = fopen(names, "w");
    const float l = (float)(loss / (double)n);
    fwrite(&l, sizeof l, 1, o);
    fwrite(t->grads, sizeof(float), trainer_n_params(t), o);
    for (int i = 0; i < m->n_tensors; i++) {
        size_t count;
        trainer_param(t, i, &count);
        fprintf(nf, "%s %zu\n", m->tensors[i].name, count);
    }
    fclose(o);
    fclose(nf);
    trainer_free(t);
    gpt2c_model_free(m);
    free(ids);
    return 0;
}

int main(int argc, char **argv) {
    if ((argc == 5 || argc == 8) && !strcmp(argv[1], "--grads"))
        return dump_grads(argv[2], argv[3], argv[4], argc == 8 ? strtof(argv[5], NULL) : 0.0f,
                          argc == 8 ? strtoull(argv[6], NULL, 10) : 0, argc == 8 ? strtoull(argv[7], NULL, 10) : 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_lora_gradients),
        cmocka_unit_test(test_architectures),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_save_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
