/* test_kernels.c -- every kernel table this CPU can run against the generic
 * reference kernels, on random shapes (odd sizes included, to reach every
 * tail path) and every weight dtype, with stated tolerances; and the
 * contracts of kernels.h: a row's result does not depend on how many rows
 * run with it, nor on the column range it is computed in. Also the thread
 * pool's dealing of units, by which the model shares out its products. */
#define _GNU_SOURCE /* sched_setaffinity */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>

#include "core/half.h"
#include "core/pool.h"
#include "kernels/kernels.h"
#include "testutil.h"

static uint64_t rs = 88172645463325252ull;
static float frand(void) { /* xorshift: uniform in [-1, 1) */
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((rs >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}
static int irand(int lo, int hi) { return lo + (int)((frand() * 0.5f + 0.5f) * (float)(hi - lo + 1)) % (hi - lo + 1); }

/* Random weights stored as t (F32, F16, BF16); the values are exactly
 * representable in t. */
static void *make_weights(gpt2_wtype t, size_t n) {
    if (t == WT_F32) {
        float *w = malloc(n * sizeof *w);
        for (size_t i = 0; i < n; i++) w[i] = frand();
        return w;
    }
    uint16_t *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) {
        float f = frand();
        uint32_t u = f32_bits(f);
        /* bf16: truncate; f16: a value in range, rounded by construction. */
        w[i] = t == WT_BF16 ? (uint16_t)(u >> 16) : (uint16_t)(0x3c00u ^ (uint16_t)(rs & 0x83ffu));
    }
    return w;
}

static double max_rel(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) worst = d; /* NaN counts as worst */
    }
    return worst;
}

static const gpt2_kernels *tables[8];
static int n_tables;

static int setup(void **state) {
    (void)state;
    n_tables = gpt2_kernels_available(tables, 8);
    for (int i = 0; i < n_tables; i++) fprintf(stderr, "  kernels available: %s\n", tables[i]->name);
    return n_tables > 0 ? 0 : -1;
}

/* |error| <= 1e-5 * (1 + |value|) * sqrt(din): f32 sums in another order. */
static void test_matmul(void **state) {
    (void)state;
    for (int trial = 0; trial < 60; trial++) {
        int n = irand(1, 9), din = irand(1, 300), dout = irand(1, 200);
        if (trial % 4 == 3) { /* around the rows from which the tiled product packs its weights, */
            n = irand(60, 90);
            din = irand(1, 700); /* whose slices span up to 256 k rows: several slices and a partial one */
        }
        if (trial < 4) n = 1, din = 768, dout = 2304; /* a real decode shape */
        gpt2_wtype t = (gpt2_wtype)(trial % 3); /* Q8 has its own product: test_matmul_q8 */
        void *wd = make_weights(t, (size_t)din * dout);
        gpt2_weight w = {wd, t, NULL, 0, 0, 0};
        float *in = malloc(sizeof(float) * (size_t)n * din), *bias = malloc(sizeof(float) * (size_t)dout);
        float *want = malloc(sizeof(float) * (size_t)n * dout), *got = malloc(sizeof(float) * (size_t)n * dout);
        for (int i = 0; i < n * din; i++) in[i] = frand();
        for (int j = 0; j < dout; j++) bias[j] = frand();
        gpt2_kernels_generic.matmul(want, in, w, trial % 2 ? bias : NULL, n, din, dout, 0, dout);
        for (int k = 1; k < n_tables; k++) {
            memset(got, 0xff, sizeof(float) * (size_t)n * dout);
            /* Split the columns into two ranges, as two threads would. */
            int mid = irand(0, dout);
            tables[k]->matmul(got, in, w, trial % 2 ? bias : NULL, n, din, dout, 0, mid);
            tables[k]->matmul(got, in, w, trial % 2 ? bias : NULL, n, din, dout, mid, dout);
            double err = max_rel(got, want, (size_t)n * dout), tol = 1e-5 * sqrt((double)din);
            if (!(err <= tol))
                fail_msg("%s matmul n=%d din=%d dout=%d type=%d: error %.2e > %.2e", tables[k]->name, n, din, dout, t, err, tol);
            /* Each row alone gives the same bits as in the batch. */
            for (int i = 0; i < n; i++) {
                float *row = malloc(sizeof(float) * (size_t)dout);
                tables[k]->matmul(row, in + (size_t)i * din, w, trial % 2 ? bias : NULL, 1, din, dout, 0, dout);
                if (memcmp(row, got + (size_t)i * dout, sizeof(float) * (size_t)dout) != 0)
                    fail_msg("%s matmul: row %d alone differs from the batch (n=%d din=%d dout=%d)", tables[k]->name, i, n, din, dout);
                free(row);
            }
        }
        free(wd);
        free(in);
        free(bias);
        free(want);
        free(got);
    }
}

static void test_matmul_t(void **state) {
    (void)state;
    for (int trial = 0; trial < 60; trial++) {
        int n = irand(1, 6), din = irand(1, 300), dout = irand(1, 150);
        gpt2_wtype t = (gpt2_wtype)(trial % 3); /* Q8 has its own product: test_matmul_q8 */
        void *wd = make_weights(t, (size_t)din * dout);
        gpt2_weight w = {wd, t, NULL, 0, 0, 0};
        float *in = malloc(sizeof(float) * (size_t)n * din);
        float *want = malloc(sizeof(float) * (size_t)n * dout), *got = malloc(sizeof(float) * (size_t)n * dout);
        for (int i = 0; i < n * din; i++) in[i] = frand();
        gpt2_kernels_generic.matmul_t(want, in, w, n, din, dout, 0, dout);
        for (int k = 1; k < n_tables; k++) {
            int mid = irand(0, dout);
            tables[k]->matmul_t(got, in, w, n, din, dout, 0, mid);
            tables[k]->matmul_t(got, in, w, n, din, dout, mid, dout);
            double err = max_rel(got, want, (size_t)n * dout), tol = 1e-5 * sqrt((double)din);
            if (!(err <= tol))
                fail_msg("%s matmul_t n=%d din=%d dout=%d type=%d: error %.2e > %.2e", tables[k]->name, n, din, dout, t, err, tol);
            for (int i = 0; i < n; i++) {
                float *row = malloc(sizeof(float) * (size_t)dout);
                tables[k]->matmul_t(row, in + (size_t)i * din, w, 1, din, dout, 0, dout);
                if (memcmp(row, got + (size_t)i * dout, sizeof(float) * (size_t)dout) != 0)
                    fail_msg("%s matmul_t: row %d alone differs from the batch", tables[k]->name, i);
                free(row);
            }
        }
        free(wd);
        free(in);
        free(want);
        free(got);
    }
}

static void test_elementwise(void **state) {
    (void)state;
    for (int trial = 0; trial < 40; trial++) {
        int n = irand(1, 5), d = irand(1, 200);
        float *x = malloc(sizeof(float) * (size_t)n * d), *g = malloc(sizeof(float) * (size_t)d), *b = malloc(sizeof(float) * (size_t)d);
        float *want = malloc(sizeof(float) * (size_t)n * d), *got = malloc(sizeof(float) * (size_t)n * d);
        for (int i = 0; i < n * d; i++) x[i] = 3 * frand() + frand();
        for (int i = 0; i < d; i++) g[i] = 1 + 0.2f * frand(), b[i] = 0.2f * frand();
        gpt2_kernels_generic.layernorm(want, x, g, b, n, d, 1e-5f);
        for (int k = 1; k < n_tables; k++) {
            tables[k]->layernorm(got, x, g, b, n, d, 1e-5f);
            if (!(max_rel(got, want, (size_t)n * d) <= 1e-5)) fail_msg("%s layernorm d=%d", tables[k]->name, d);
        }
        /* GELU over a wide range of inputs, including large magnitudes. */
        for (int i = 0; i < n * d; i++) x[i] = 12 * frand() * frand();
        memcpy(want, x, sizeof(float) * (size_t)n * d);
        gpt2_kernels_generic.activation(want, (size_t)n * d, ACT_GELU_TANH);
        for (int k = 1; k < n_tables; k++) {
            memcpy(got, x, sizeof(float) * (size_t)n * d);
            tables[k]->activation(got, (size_t)n * d, ACT_GELU_TANH);
            if (!(max_rel(got, want, (size_t)n * d) <= 2e-6)) fail_msg("%s gelu: %.2e", tables[k]->name, max_rel(got, want, (size_t)n * d));
        }
        /* Training: GELU's derivative times dy (the tanh curve; the others
         * are the reference's everywhere), and AdamW to the bit. */
        for (int i = 0; i < d; i++) g[i] = 2 * frand();
        const size_t nd = (size_t)n * d;
        float *dy = malloc(sizeof(float) * nd);
        for (size_t i = 0; i < nd; i++) dy[i] = frand();
        for (int act = ACT_GELU_TANH; act <= ACT_RELU; act++) {
            gpt2_kernels_generic.activation_dx(want, dy, x, nd, (gpt2_act)act);
            for (int k = 1; k < n_tables; k++) {
                tables[k]->activation_dx(got, dy, x, nd, (gpt2_act)act);
                if (!(max_rel(got, want, nd) <= 2e-6))
                    fail_msg("%s activation_dx %d: %.2e", tables[k]->name, act, max_rel(got, want, nd));
            }
        }
        float *st[2][4];
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 4; j++) st[k][j] = malloc(sizeof(float) * nd);
        for (size_t i = 0; i < nd; i++)
            st[0][0][i] = frand(), st[0][1][i] = 0.1f * frand(), st[0][2][i] = 0.01f * frand(), st[0][3][i] = 1e-4f * fabsf(frand());
        const gpt2_adamw_args aw = {0.7f, 1.0f - 1e-3f * 0.01f, 0.9f, 0.999f, 1e-3f / 0.271f, 0.0447f, 1e-8f};
        for (int k = 1; k < n_tables; k++) {
            float *ref[4], *out[4];
            for (int j = 0; j < 4; j++) {
                ref[j] = st[1][j];
                memcpy(ref[j], st[0][j], sizeof(float) * nd);
                out[j] = malloc(sizeof(float) * nd);
                memcpy(out[j], st[0][j], sizeof(float) * nd);
            }
            gpt2_kernels_generic.adamw(ref[0], ref[1], ref[2], ref[3], nd, &aw);
            tables[k]->adamw(out[0], out[1], out[2], out[3], nd, &aw);
            for (int j = 0; j < 4; j++) {
                if (memcmp(out[j], ref[j], sizeof(float) * nd)) fail_msg("%s adamw: array %d differs", tables[k]->name, j);
                free(out[j]);
            }
        }
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 4; j++) free(st[k][j]);
        free(dy);
        free(x);
        free(g);
        free(b);
        free(want);
        free(got);
    }
}

/* Attention over an F32 or an F16 KV cache, against the reference. */
static void test_attention(void **state) {
    (void)state;
    for (int trial = 0; trial < 80; trial++) {
        /* nq queries at consecutive positions, attending to T..T+nq-1 of
         * them, in runs of GPT2_KV_BLOCK positions, stride elements apart
         * (the cache's layout), over up to three blocks; GPT-2's head size
         * (the kernels' unrolled case) every third trial. Every fifth,
         * step 0: heads of one token sharing a key/value head (multi-query
         * attention), all at one position. */
        int nq = irand(1, 9), T = irand(1, 3 * GPT2_KV_BLOCK - nq), hd = trial % 3 ? irand(1, 80) : 64;
        int step = trial % 5 == 4 ? 0 : 1;
        int stride = GPT2_KV_BLOCK * hd + irand(0, 9), nk = T + (nq - 1) * step;
        int qstride = hd + irand(0, 5), ostride = hd + irand(0, 5);
        /* GPT-Neo's local layers: each query sees only the last `window` positions. */
        int window = trial % 4 == 1 ? irand(1, nk + 1) : 0;
        /* BLOOM's ALiBi: a bias growing with the key's position, every other trial. */
        float slope = trial % 2 ? 0.0f : 0.5f * frand();
        gpt2_attn_args a = {T, step, window, hd, (size_t)stride, 8.0f, slope};
        const size_t span = (size_t)(nk + GPT2_KV_BLOCK - 1) / GPT2_KV_BLOCK * (size_t)stride; /* elements of k, of v */
        gpt2_wtype t = trial / 2 % 2 ? WT_F16 : WT_F32;
        float *q = malloc(sizeof(float) * (size_t)nq * qstride);
        unsigned char *kv = make_weights(t, span * 2);
        const size_t no = (size_t)nq * ostride;
        float *want = calloc(no, sizeof(float)), *got = calloc(no, sizeof(float)), *one = calloc(no, sizeof(float));
        float *sc = malloc(sizeof(float) * (size_t)nq * nk);
        for (int i = 0; i < nq * qstride; i++) q[i] = 2 * frand();
        gpt2_weight k = {kv, t, NULL, 0, 0, 0}, v = {kv + span * weight_type_size(t), t, NULL, 0, 0, 0};
        gpt2_kernels_generic.attention(want, (size_t)ostride, q, (size_t)qstride, nq, k, v, &a, sc);
        for (int j = 1; j < n_tables; j++) {
            tables[j]->attention(got, (size_t)ostride, q, (size_t)qstride, nq, k, v, &a, sc);
            for (int i = 0; i < nq; i++) { /* each query alone, as decode asks */
                gpt2_attn_args a1 = a;
                a1.T = T + i * step;
                tables[j]->attention(one + (size_t)i * ostride, (size_t)ostride, q + (size_t)i * qstride,
                                     (size_t)qstride, 1, k, v, &a1, sc);
                if (memcmp(got + (size_t)i * ostride, one + (size_t)i * ostride, sizeof(float) * (size_t)hd) != 0)
                    fail_msg("%s attention T=%d step=%d hd=%d: query %d of %d differs from the same query alone",
                             tables[j]->name, T, step, hd, i, nq);
                if (!(max_rel(got + (size_t)i * ostride, want + (size_t)i * ostride, (size_t)hd) <= 1e-5))
                    fail_msg("%s attention T=%d step=%d window=%d slope=%g hd=%d kv=%s query %d of %d: %.2e",
                             tables[j]->name, T, step, window, slope, hd, t == WT_F16 ? "f16" : "f32", i, nq,
                             max_rel(got + (size_t)i * ostride, want + (size_t)i * ostride, (size_t)hd));
            }
        }
        free(q);
        free(kv);
        free(want);
        free(got);
        free(one);
        free(sc);
    }
}

/* Decode's block partials, summed in block order onto the bias, give the
 * same bits as the row-tiled product (the contract prefill relies on), for
 * one row and for batches (rows in groups of up to 8, any split of the
 * blocks). */
static void test_matmul_part(void **state) {
    (void)state;
    for (int trial = 0; trial < 24; trial++) {
        /* Every fourth trial has rows over 4 KiB, which decode reads sixteen
         * at a time rather than one by one. */
        int din = irand(1, 400), dout = trial % 4 == 3 ? irand(2049, 2200) : irand(1, 100);
        int n = trial % 2 ? 1 : irand(2, 19);
        gpt2_wtype t = (gpt2_wtype)(trial % 3); /* Q8 has its own product: test_matmul_q8 */
        void *wd = make_weights(t, (size_t)din * dout);
        gpt2_weight w = {wd, t, NULL, 0, 0, 0};
        int blocks = (din + GPT2_KBLOCK - 1) / GPT2_KBLOCK;
        const size_t nd = (size_t)n * dout;
        float *x = malloc(sizeof(float) * (size_t)n * din), *bias = malloc(sizeof(float) * (size_t)dout);
        float *part = malloc(sizeof(float) * (size_t)blocks * nd), *a = malloc(sizeof(float) * nd),
              *b = malloc(sizeof(float) * nd);
        for (int i = 0; i < n * din; i++) x[i] = frand();
        for (int j = 0; j < dout; j++) bias[j] = frand();
        for (int k = 1; k < n_tables; k++) { /* the generic table sums from the bias, without blocks */
            tables[k]->matmul(a, x, w, bias, n, din, dout, 0, dout);
            int mid = irand(0, blocks);
            tables[k]->matmul_part(part, x, w, n, din, dout, 0, mid);
            tables[k]->matmul_part(part, x, w, n, din, dout, mid, blocks);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < dout; j++) {
                    float *bij = b + (size_t)i * dout + j;
                    *bij = bias[j];
                    for (int bl = 0; bl < blocks; bl++) *bij += part[(size_t)bl * nd + (size_t)i * dout + j];
                }
            if (memcmp(a, b, sizeof(float) * nd) != 0)
                fail_msg("%s: block partials differ from the tiled product (n=%d din=%d dout=%d type=%d)",
                         tables[k]->name, n, din, dout, t);
        }
        free(wd);
        free(x);
        free(bias);
        free(part);
        free(a);
        free(b);
    }
}

/* Random Q8 weights, packed as kernels.h says (padding columns zero), and
 * their scales. */
static gpt2_weight make_q8(int din, int dout) {
    const size_t dpad = q8_padded((size_t)dout);
    int8_t *q = calloc((size_t)din * dpad, 1);
    uint16_t *sc = calloc((size_t)din / GPT2_Q8_BLOCK * dpad, sizeof *sc);
    for (int k = 0; k < din; k++)
        for (int j = 0; j < dout; j++) q[q8_index((size_t)k, (size_t)j, (size_t)din)] = (int8_t)(frand() * 127.0f);
    for (int k = 0; k < din; k += GPT2_Q8_BLOCK)
        for (int j = 0; j < dout; j++)
            sc[q8_scale_index((size_t)k, (size_t)j, (size_t)din)] = f32_to_f16(0.001f + 0.02f * (frand() + 1.0f));
    return (gpt2_weight){q, WT_Q8, sc, din, dout, 0};
}

/* Inputs whose blocks span magnitudes from 1e-3 to 1e3, with some blocks of
 * zeros, as activations do. */
static void make_inputs(float *x, int n, int din) {
    for (int i = 0; i < n * din; i += GPT2_Q8_BLOCK) {
        int kind = irand(0, 9);
        float scale = kind == 0 ? 0.0f : powf(10.0f, (float)irand(-3, 3));
        for (int k = 0; k < GPT2_Q8_BLOCK && i + k < n * din; k++) x[i + k] = scale * frand();
    }
}

/* q8_quantize: within (about) half a step of the block's scale; zeros, tiny blocks
 * and non-finite values as kernels.h says. */
static void test_q8_quantize(void **state) {
    (void)state;
    enum { D = 8 * GPT2_Q8_BLOCK };
    float x[D], xd[D / GPT2_Q8_BLOCK];
    int16_t xq[D];
    for (int trial = 0; trial < 200; trial++) {
        make_inputs(x, 1, D);
        q8_quantize(xq, xd, x, 1, D);
        for (int k = 0; k < D; k++) {
            float d = xd[k / GPT2_Q8_BLOCK], amax = 0;
            for (int u = k / GPT2_Q8_BLOCK * GPT2_Q8_BLOCK; u < (k / GPT2_Q8_BLOCK + 1) * GPT2_Q8_BLOCK; u++)
                amax = fmaxf(amax, fabsf(x[u]));
            assert_true(fabsf(d - amax / 32767.0f) <= 1e-6f * d);
            assert_true(abs(xq[k]) <= 32767);
            /* The definition (kernels.h): round-half-even of x * (32767 / absmax). */
            if (d > 0.0f && xq[k] != (int16_t)lrintf(x[k] * (32767.0f / amax)))
                fail_msg("quantize: %g -> %d, not lrintf's %ld", x[k], xq[k], lrintf(x[k] * (32767.0f / amax)));
            /* Half a step, and x * (32767 / absmax) is itself rounded: 0.51. */
            if (!(fabs((double)xq[k] * d - x[k]) <= 0.51 * d + 1e-30))
                fail_msg("quantize: %g -> %d * %g", x[k], xq[k], d);
        }
    }
    /* Ties go to even: a block whose largest value is 32767 has x * 1 exactly. */
    for (int k = 0; k < GPT2_Q8_BLOCK; k++) x[k] = (float)k + 0.5f;
    x[0] = 32767.0f, x[1] = -2.5f, x[2] = -3.5f;
    q8_quantize(xq, xd, x, 1, GPT2_Q8_BLOCK);
    assert_true(xq[1] == -2 && xq[2] == -4 && xq[3] == 4 && xq[4] == 4 && xq[5] == 6 && xq[0] == 32767);
    for (int k = 0; k < D; k++) x[k] = 1.0f;
    x[3] = NAN, x[40] = INFINITY;
    for (int k = 2 * GPT2_Q8_BLOCK; k < 3 * GPT2_Q8_BLOCK; k++) x[k] = 1e-35f;
    q8_quantize(xq, xd, x, 1, D);
    assert_true(isnan(xd[0]) && isnan(xd[1]));
    assert_true(xd[2] == 0.0f && xq[2 * GPT2_Q8_BLOCK] == 0);
    assert_true(xd[3] == 1.0f / 32767.0f && xq[3 * GPT2_Q8_BLOCK] == 32767);
}

/* The Q8 product: every table gives the reference's bits (exact integer
 * sums, then the same float steps), whatever the column split and the rows
 * run together; and the reference is within the input quantisation's bound
 * of the exact product, computed in double precision. */
static void test_matmul_q8(void **state) {
    (void)state;
    for (int trial = 0; trial < 60; trial++) {
        int n = irand(1, 11), din = GPT2_Q8_BLOCK * irand(1, 10), dout = irand(1, 90);
        if (trial < 2) n = 1, din = 768, dout = 2304;    /* a real decode shape */
        if (trial == 2) n = 3, din = 64, dout = 50257; /* the head's odd width */
        const int nb = din / GPT2_Q8_BLOCK;
        gpt2_weight w = make_q8(din, dout);
        float *in = malloc(sizeof(float) * (size_t)n * din), *bias = malloc(sizeof(float) * (size_t)dout);
        float *xd = malloc(sizeof(float) * (size_t)n * nb), *wk = malloc(sizeof(float) * (size_t)din);
        int16_t *xq = malloc(sizeof(int16_t) * (size_t)n * din);
        float *want = malloc(sizeof(float) * (size_t)n * dout), *got = malloc(sizeof(float) * (size_t)n * dout);
        make_inputs(in, n, din);
        for (int j = 0; j < dout; j++) bias[j] = frand();
        const float *b = trial % 2 ? bias : NULL;
        q8_quantize(xq, xd, in, n, din);
        gpt2_kernels_generic.matmul_q8(want, xq, xd, w, b, n, din, dout, 0, dout);
        for (int k = 1; k < n_tables; k++) {
            memset(got, 0xff, sizeof(float) * (size_t)n * dout);
            int mid = GPT2_Q8_GROUP * irand(0, dout / GPT2_Q8_GROUP); /* two threads' column ranges */
            tables[k]->matmul_q8(got, xq, xd, w, b, n, din, dout, 0, mid);
            tables[k]->matmul_q8(got, xq, xd, w, b, n, din, dout, mid, dout);
            if (memcmp(got, want, sizeof(float) * (size_t)n * dout) != 0)
                fail_msg("%s matmul_q8 n=%d din=%d dout=%d differs from the reference", tables[k]->name, n, din, dout);
            for (int i = 0; i < n; i++) {
                float *row = malloc(sizeof(float) * (size_t)dout);
                tables[k]->matmul_q8(row, xq + (size_t)i * din, xd + (size_t)i * nb, w, b, 1, din, dout, 0, dout);
                if (memcmp(row, got + (size_t)i * dout, sizeof(float) * (size_t)dout) != 0)
                    fail_msg("%s matmul_q8: row %d alone differs from the batch", tables[k]->name, i);
                free(row);
            }
        }
        /* Against the exact product of the unquantised inputs: each input is
         * off by at most about half its block's step (test_q8_quantize), and
         * f32 adds 1e-6 relative. */
        for (int j = 0; j < dout; j += 1 + dout / 64) {
            for (int k = 0; k < din; k++) weight_to_f32(w, (size_t)k * dout + j, 1, wk + k);
            for (int i = 0; i < n; i++) {
                double exact = b ? b[j] : 0.0, bound = 0.0, mag = fabs(exact);
                for (int k = 0; k < din; k++) {
                    exact += (double)in[(size_t)i * din + k] * wk[k];
                    bound += 0.51 * xd[(size_t)i * nb + k / GPT2_Q8_BLOCK] * fabs(wk[k]);
                    mag += fabs((double)in[(size_t)i * din + k] * wk[k]);
                }
                double err = fabs(want[(size_t)i * dout + j] - exact);
                if (!(err <= bound * 1.001 + 1e-6 * mag + 1e-30))
                    fail_msg("matmul_q8 n=%d din=%d dout=%d [%d, %d]: %g vs exact %g (bound %g)", n, din, dout, i, j,
                             want[(size_t)i * dout + j], exact, bound);
            }
        }
        /* A NaN input reaches every output of its row. */
        in[0] = NAN;
        q8_quantize(xq, xd, in, 1, din);
        for (int k = 0; k < n_tables; k++) {
            tables[k]->matmul_q8(got, xq, xd, w, b, 1, din, dout, 0, dout);
            for (int j = 0; j < dout; j++)
                if (!isnan(got[j])) fail_msg("%s matmul_q8: NaN input gave %g at %d", tables[k]->name, got[j], j);
        }
        free((void *)w.data);
        free((void *)w.scales);
        free(in);
        free(bias);
        free(xd);
        free(wk);
        free(xq);
        free(want);
        free(got);
    }
}

/* The level a user can force, and that valgrind's hidden AVX-512 needs. */
/* The BF16P product (--compute bf16): every table that has one gives the
 * generic emulation's bits, whatever the column split and the rows run
 * together -- tiled and packed from 64 rows, streamed for a few -- and the
 * emulation is within f32 summation error of the exact product of the
 * bf16-rounded operands. Denormal bf16 count as zeros (DAZ), as the
 * instruction has them; NaN passes. */
static void test_matmul_bf16(void **state) {
    (void)state;
    int n_bf = 0;
    for (int k = 0; k < n_tables; k++) n_bf += tables[k]->matmul_bf16 != NULL;
    fprintf(stderr, "  tables with a bf16 product: generic + %d\n", n_bf - 1);
    for (int trial = 0; trial < 60; trial++) {
        int n = trial % 4 == 3 ? irand(60, 90) : irand(1, 11), din = 2 * irand(1, 150), dout = irand(1, 150);
        if (trial < 2) n = 1, din = 768, dout = 2304;    /* a real decode shape */
        if (trial == 2) n = 3, din = 64, dout = 50257; /* the head's odd width */
        const size_t words = (size_t)din / 2 * bf16p_padded((size_t)dout);
        uint32_t *wp = malloc(words * sizeof *wp), *xb = malloc(sizeof(uint32_t) * (size_t)n * din / 2);
        for (size_t i = 0; i < words; i++) wp[i] = f32_bits(frand()) >> 16 | (f32_bits(frand()) & 0xffff0000u);
        const gpt2_weight w = {wp, WT_BF16P, NULL, din, dout, 0};
        float *in = malloc(sizeof(float) * (size_t)n * din), *bias = malloc(sizeof(float) * (size_t)dout);
        float *want = malloc(sizeof(float) * (size_t)n * dout), *got = malloc(sizeof(float) * (size_t)n * dout);
        make_inputs(in, n, din);
        for (int j = 0; j < dout; j++) bias[j] = frand();
        const float *b = trial % 2 ? bias : NULL;
        x_bf16_pairs(xb, in, (size_t)n * din);
        gpt2_kernels_generic.matmul_bf16(want, xb, w, b, n, din, dout, 0, dout);
        for (int k = 1; k < n_tables; k++) {
            if (!tables[k]->matmul_bf16) continue;
            memset(got, 0xff, sizeof(float) * (size_t)n * dout);
            int mid = GPT2_BF16P_GROUP * irand(0, dout / GPT2_BF16P_GROUP); /* two threads' column ranges */
            tables[k]->matmul_bf16(got, xb, w, b, n, din, dout, 0, mid);
            tables[k]->matmul_bf16(got, xb, w, b, n, din, dout, mid, dout);
            if (memcmp(got, want, sizeof(float) * (size_t)n * dout) != 0)
                fail_msg("%s matmul_bf16 n=%d din=%d dout=%d differs from the reference", tables[k]->name, n, din,
                         dout);
            float *row = malloc(sizeof(float) * (size_t)dout);
            for (int i = 0; i < n; i++) {
                tables[k]->matmul_bf16(row, xb + (size_t)i * din / 2, w, b, 1, din, dout, 0, dout);
                if (memcmp(row, got + (size_t)i * dout, sizeof(float) * (size_t)dout) != 0)
                    fail_msg("%s matmul_bf16: row %d alone differs from the batch", tables[k]->name, i);
            }
            free(row);
        }
        /* Against the exact product of the rounded operands: din roundings
         * of sums no larger than the sum of magnitudes. */
        for (int j = 0; j < dout; j += 1 + dout / 64)
            for (int i = 0; i < n; i++) {
                double exact = b ? b[j] : 0.0, mag = fabs(exact);
                for (int k = 0; k < din; k++) {
                    const uint32_t x2 = xb[(size_t)i * din / 2 + k / 2], w2 = wp[bf16p_word((size_t)k / 2, (size_t)j, (size_t)din / 2)];
                    const double t = (double)bf16_to_f32((uint16_t)(x2 >> 16 * (k % 2))) *
                                     bf16_to_f32((uint16_t)(w2 >> 16 * (k % 2)));
                    exact += t, mag += fabs(t);
                }
                const double err = fabs(want[(size_t)i * dout + j] - exact);
                if (!(err <= din * 0x1p-24 * mag + 1e-30))
                    fail_msg("matmul_bf16 n=%d din=%d dout=%d [%d, %d]: %g vs exact %g", n, din, dout, i, j,
                             want[(size_t)i * dout + j], exact);
            }
        free(wp), free(xb), free(in), free(bias), free(want), free(got);
    }
    /* DAZ: a denormal bf16 input times a huge weight adds nothing; a NaN
     * reaches its output. */
    uint32_t wp[16], xb[1] = {0x0040u | (uint32_t)f32_to_bf16(1.0f) << 16};
    for (int j = 0; j < 16; j++) wp[j] = f32_to_bf16(3e38f) | (uint32_t)f32_to_bf16((float)j) << 16;
    wp[5] = f32_to_bf16(NAN);
    const gpt2_weight w = {wp, WT_BF16P, NULL, 2, 16, 0};
    float out[16];
    for (int k = 0; k < n_tables; k++) {
        if (!tables[k]->matmul_bf16) continue;
        tables[k]->matmul_bf16(out, xb, w, NULL, 1, 2, 16, 0, 16);
        for (int j = 0; j < 16; j++)
            if (j == 5 ? !isnan(out[j]) : out[j] != (float)j)
                fail_msg("%s matmul_bf16: column %d gave %g, want %g", tables[k]->name, j, out[j], j == 5 ? NAN : j);
    }
}

static void test_forced_level(void **state) {
    (void)state;
    for (int i = 0; i < n_tables; i++) { /* every level this CPU has, by its name */
        setenv("GPT2C_KERNELS", tables[i]->name, 1);
        assert_ptr_equal(gpt2_kernels_select(), tables[i]);
    }
    setenv("GPT2C_KERNELS", "no-such-level", 1);
    assert_string_equal(gpt2_kernels_select()->name, tables[n_tables - 1]->name);
    unsetenv("GPT2C_KERNELS");
}

/* Every unit of a deal is taken exactly once, whatever the threads and
 * their timing; a thread that takes nothing leaves its run to the others,
 * who take it from the back; a lone thread takes its run in order. */
typedef struct deal_job {
    gpt2_pool *p;
    int total, idle; /* thread idle takes nothing (-1: none idles) */
    _Atomic int count[1000];
    int order[1000], n_order; /* thread 0's units, in the order taken */
} deal_job;

static void deal_run(void *ctx, int ith, int nth) {
    deal_job *d = ctx;
    (void)nth;
    if (ith == d->idle) return;
    for (int u; (u = pool_take(d->p, ith)) >= 0;) {
        assert_true(u < d->total);
        atomic_fetch_add(&d->count[u], 1);
        if (ith == 0) d->order[d->n_order++] = u;
    }
}

static void test_pool_deal(void **state) {
    (void)state;
    static deal_job d; /* 8 KB: off the stack */
    const int threads[] = {1, 2, 3, 5}, totals[] = {0, 1, 2, 7, 64, 1000};
    for (size_t a = 0; a < sizeof threads / sizeof *threads; a++) {
        gpt2_pool *p = pool_new(threads[a]);
        assert_non_null(p);
        for (size_t b = 0; b < sizeof totals / sizeof *totals; b++)
            for (int rep = 0; rep < 20; rep++) {
                d.p = p, d.total = totals[b], d.n_order = 0;
                d.idle = threads[a] > 1 && rep % 4 == 3 ? threads[a] - 1 : -1;
                for (int u = 0; u < d.total; u++) atomic_store(&d.count[u], 0);
                pool_deal(p, d.total);
                pool_run(p, deal_run, &d);
                for (int u = 0; u < d.total; u++) assert_int_equal(atomic_load(&d.count[u]), 1);
                if (threads[a] == 1) /* one run, in order */
                    for (int u = 0; u < d.total; u++) assert_int_equal(d.order[u], u);
                if (threads[a] == 2 && d.idle == 1) { /* its own half, then the other's from the back */
                    const int half = d.total / 2;
                    assert_int_equal(d.n_order, d.total);
                    for (int u = 0; u < half; u++) assert_int_equal(d.order[u], u);
                    for (int u = half; u < d.total; u++) assert_int_equal(d.order[u], d.total - 1 - (u - half));
                }
            }
        pool_free(p);
    }
}

/* Every part of every job runs exactly once, and the caller does not wait
 * for a worker that cannot run: with the whole process on one CPU, the
 * workers rarely get it between the caller's parts, so the caller must run
 * theirs (a pool that waited for them took a time slice a job). */
typedef struct claim_job {
    _Atomic int count[4];
    _Atomic long sum;
} claim_job;

static void claim_run(void *ctx, int ith, int nth) {
    claim_job *c = ctx;
    assert_int_equal(nth, 4);
    atomic_fetch_add(&c->count[ith], 1);
    long s = 0;
    for (int k = 0; k < 2000; k++) s += k ^ ith;
    atomic_fetch_add(&c->sum, s);
}

static void test_pool_claims(void **state) {
    (void)state;
    cpu_set_t old, one;
    if (sched_getaffinity(0, sizeof old, &old) != 0) skip();
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &old)) {
            CPU_SET(cpu, &one);
            break;
        }
    if (sched_setaffinity(0, sizeof one, &one) != 0) skip();
    gpt2_pool *p = pool_new(4); /* its workers inherit the one CPU */
    assert_non_null(p);
    static claim_job c;
    for (int job = 0; job < 2000; job++) {
        for (int i = 0; i < 4; i++) atomic_store(&c.count[i], 0);
        pool_run(p, claim_run, &c);
        for (int i = 0; i < 4; i++) assert_int_equal(atomic_load(&c.count[i]), 1);
    }
    const long extra = pool_caller_extra(p);
    pool_free(p);
    assert_int_equal(sched_setaffinity(0, sizeof old, &old), 0);
    printf("pool on one CPU: the caller ran %ld of the workers' 6000 parts\n", extra);
    assert_true(extra > 0);
}

/* The pool keeps whichever of all threads and the caller alone is faster,
 * per kind of epoch: on an idle machine (threads fast, the caller's CPU
 * time its whole wall time) it never tries the caller alone; beside a busy
 * process (threads slow, the caller often off the CPU) it moves to the
 * caller alone within a few epochs and spends few epochs trying threads
 * again; when the machine is idle again it returns to them; and epochs of
 * another key keep their own choice. Costs are simulated: one epoch alone
 * costs 1, with threads 0.5 idle or 2 busy. */
static int run_epochs(gpt2_pool *p, int key, int n, int busy) {
    int solo = 0;
    for (int i = 0; i < n; i++) {
        pool_epoch_begin(p, key);
        solo += pool_solo(p);
        const double wall = pool_solo(p) ? 1.0 : busy ? 2.0 : 0.5;
        pool_epoch_record(p, wall, pool_solo(p) ? wall : busy ? 0.6 * wall : wall);
    }
    return solo;
}

static void test_pool_adapt(void **state) {
    (void)state;
    gpt2_pool *p = pool_new(2);
    assert_non_null(p);
    assert_int_equal(run_epochs(p, 1, 1000, 0), 0);
    int solo = run_epochs(p, 1, 20, 1);
    assert_true(solo >= 17); /* 1 contended epoch, 2 trying alone, then alone */
    solo = run_epochs(p, 1, 1000, 1);
    assert_true(solo >= 970); /* tries of threads: 2 epochs after 32, 64, then every 128 */
    assert_int_equal(run_epochs(p, 7, 100, 0), 0); /* another key */
    assert_int_equal(pool_solo(p), 0);
    run_epochs(p, 1, 300, 0); /* back to threads within 128 + 2 epochs */
    assert_int_equal(run_epochs(p, 1, 1000, 0), 0);
    pool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_deal),   cmocka_unit_test(test_pool_claims), cmocka_unit_test(test_pool_adapt),
        cmocka_unit_test(test_matmul),      cmocka_unit_test(test_matmul_t),     cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_attention),   cmocka_unit_test(test_forced_level), cmocka_unit_test(test_matmul_part),
        cmocka_unit_test(test_q8_quantize), cmocka_unit_test(test_matmul_q8), cmocka_unit_test(test_matmul_bf16),
    };
    return cmocka_run_group_tests_name("kernels", tests, setup, NULL);
}
