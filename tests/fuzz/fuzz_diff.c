/* fuzz_diff.c -- differential libFuzzer target: where gpt2c has two ways to
 * compute one thing, arbitrary inputs must give the same answer.
 *  - BPE with the merge cache (warm, shared across inputs) against BPE
 *    without it: identical ids.
 *  - Every optimised kernel table this CPU runs against the plain C
 *    reference kernels, on shapes and values taken from the input: the Q8
 *    product bit for bit (and the reference within its input rounding of
 *    the exact product), matmul (the other weight types) and the LM-head
 *    product within the classic bound
 *    for f32 sums in another order (2 x din x 2^-23 x the sum of |terms|),
 *    layernorm within 1e-5 x sqrt(din) scaled by 1 / sqrt(var + eps), which
 *    amplifies the mean's rounding; and the
 *    bit-exactness contract: a row computed alone equals the same row in a
 *    batch.
 * (KV-cache decoding against recomputation is fuzzed by fuzz_files, on the
 * models its inputs make.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "kernels/kernels.h"
#include "tokenizer/tokenizer.h"

static gpt2c_tokenizer *cached, *plain;

static void check_bpe(const uint8_t *data, size_t size) {
    if (!cached) {
        if (gpt2c_tokenizer_load("tests/fixtures/gpt2-tokenizer", &cached) ||
            gpt2c_tokenizer_load("tests/fixtures/gpt2-tokenizer", &plain))
            abort();
        plain->no_cache = 1;
    }
    int32_t *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    gpt2c_status sa = gpt2c_tokenize(cached, (const char *)data, size, &a, &na);
    gpt2c_status sb = gpt2c_tokenize(plain, (const char *)data, size, &b, &nb);
    if (sa != sb || na != nb || (sa == GPT2C_OK && memcmp(a, b, (size_t)na * sizeof *a) != 0)) abort();
    gpt2c_free(a);
    gpt2c_free(b);
}

/* Values from the input bytes: small multiples of 1/64, never NaN. */
typedef struct src {
    const uint8_t *p;
    size_t n, i;
} src;
static int next_byte(src *s) { return s->n ? s->p[s->i++ % s->n] : 0; }
static float next_val(src *s) { return (float)((int8_t)next_byte(s)) / 64.0f; }

static void check_close(const float *got, const float *want, size_t n, double tol) {
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1.0 + fabs((double)want[i])))) abort();
}

/* Sums of f32 products in two orders differ by at most about
 * din x 2^-23 x sum |terms| (the classic bound); inputs from a fuzzer cancel
 * heavily, so the tolerance is that bound, not one relative to the result.
 * wf is the weight matrix widened to f32; transposed: w is (dout, din). */
static void check_products(const float *got, const float *want, const float *in, const float *wf, const float *bias,
                           int n, int din, int dout, int transposed) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dout; j++) {
            double terms = bias ? fabs((double)bias[j]) : 0.0;
            for (int k = 0; k < din; k++)
                terms += fabs((double)in[(size_t)i * din + k]) *
                         fabs((double)wf[transposed ? (size_t)j * din + k : (size_t)k * dout + j]);
            double d = fabs((double)got[(size_t)i * dout + j] - want[(size_t)i * dout + j]);
            if (!(d <= 2.0 * (din + 1) * 0x1p-23 * terms)) abort();
        }
}

static void check_kernels(const uint8_t *data, size_t size) {
    static const gpt2_kernels *tables[8];
    static int n_tables;
    if (!n_tables) n_tables = gpt2_kernels_available(tables, 8);
    src s = {data, size, 4};
    if (size < 4) return;
    int n = 1 + data[0] % 7, din = 1 + data[1] % 160, dout = 1 + data[2] % 130;
    gpt2_wtype t = (gpt2_wtype)(data[3] % 4);
    if (t == WT_Q8) din = (din + GPT2_Q8_BLOCK - 1) / GPT2_Q8_BLOCK * GPT2_Q8_BLOCK;
    const size_t nw = (size_t)din * dout, dpad = q8_padded((size_t)dout);
    void *wd = calloc((size_t)din * dpad * 4 + 4, 1);
    uint16_t *scales = calloc((size_t)din / GPT2_Q8_BLOCK * dpad + 1, sizeof *scales);
    for (size_t i = 0; i < nw; i++) {
        float v = next_val(&s);
        if (t == WT_F32) ((float *)wd)[i] = v;
        else if (t == WT_F16) ((uint16_t *)wd)[i] = f32_to_f16(v);
        else if (t == WT_BF16) ((uint16_t *)wd)[i] = (uint16_t)(f32_bits(v) >> 16);
        else ((int8_t *)wd)[q8_index(i / (size_t)dout, i % (size_t)dout, (size_t)din)] = (int8_t)next_byte(&s);
    }
    if (t == WT_Q8)
        for (size_t k = 0; k < (size_t)din; k += GPT2_Q8_BLOCK)
            for (int j = 0; j < dout; j++)
                scales[q8_scale_index(k, (size_t)j, (size_t)din)] = f32_to_f16(0.001f + (float)next_byte(&s) / 4096.0f);
    gpt2_weight w = {wd, t, scales, din, dout};
    float *in = malloc(sizeof(float) * (size_t)n * din), *bias = malloc(sizeof(float) * (size_t)dout);
    float *want = malloc(sizeof(float) * (size_t)n * dout), *got = malloc(sizeof(float) * (size_t)n * dout);
    float *one = malloc(sizeof(float) * (size_t)dout);
    for (int i = 0; i < n * din; i++) in[i] = next_val(&s);
    for (int j = 0; j < dout; j++) bias[j] = next_val(&s);
    float *wf = malloc(sizeof(float) * nw);
    weight_to_f32(w, 0, nw, wf);
    if (t == WT_Q8) {
        /* The Q8 product: exact integer sums, so every table gives the
         * reference's bits, in any column split; and the reference is
         * within the 16-bit input rounding of the exact product. */
        const int nb = din / GPT2_Q8_BLOCK, mid = GPT2_Q8_GROUP * (next_byte(&s) % (dout / GPT2_Q8_GROUP + 1));
        int16_t *xq = malloc(sizeof(int16_t) * (size_t)n * din);
        float *xd = malloc(sizeof(float) * (size_t)n * nb);
        q8_quantize(xq, xd, in, n, din);
        gpt2_kernels_generic.matmul_q8(want, xq, xd, w, bias, n, din, dout, 0, dout);
        for (int k = 0; k < n_tables; k++) {
            tables[k]->matmul_q8(got, xq, xd, w, bias, n, din, dout, 0, mid);
            tables[k]->matmul_q8(got, xq, xd, w, bias, n, din, dout, mid, dout);
            if (memcmp(got, want, sizeof(float) * (size_t)n * dout) != 0) abort();
            tables[k]->matmul_q8(one, xq + (size_t)(n - 1) * din, xd + (size_t)(n - 1) * nb, w, bias, 1, din, dout, 0, dout);
            if (memcmp(one, got + (size_t)(n - 1) * dout, sizeof(float) * (size_t)dout) != 0) abort();
        }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < dout; j++) {
                double exact = bias[j], bound = 0, terms = fabs((double)bias[j]);
                for (int k = 0; k < din; k++) {
                    double x = in[(size_t)i * din + k], v = wf[(size_t)k * dout + j];
                    exact += x * v;
                    bound += 0.51 * xd[(size_t)i * nb + k / GPT2_Q8_BLOCK] * fabs(v);
                    terms += fabs(x * v);
                }
                if (!(fabs(want[(size_t)i * dout + j] - exact) <= bound + 2.0 * (nb + 1) * 0x1p-23 * terms)) abort();
            }
        free(xq);
        free(xd);
    } else {
        gpt2_kernels_generic.matmul(want, in, w, bias, n, din, dout, 0, dout);
        for (int k = 0; k < n_tables; k++) {
            tables[k]->matmul(got, in, w, bias, n, din, dout, 0, dout);
            check_products(got, want, in, wf, bias, n, din, dout, 0);
            /* The last row alone gives the same bits as in the batch. */
            tables[k]->matmul(one, in + (size_t)(n - 1) * din, w, bias, 1, din, dout, 0, dout);
            if (memcmp(one, got + (size_t)(n - 1) * dout, sizeof(float) * (size_t)dout) != 0) abort();
        }
        /* The LM-head product: w read as (dout, din). */
        gpt2_kernels_generic.matmul_t(want, in, w, n, din, dout, 0, dout);
        for (int k = 0; k < n_tables; k++) {
            tables[k]->matmul_t(got, in, w, n, din, dout, 0, dout);
            check_products(got, want, in, wf, NULL, n, din, dout, 1);
            tables[k]->matmul_t(one, in, w, 1, din, dout, 0, dout);
            if (memcmp(one, got, sizeof(float) * (size_t)dout) != 0) abort();
        }
    }
    /* LayerNorm over rows of din, with gains and biases from the input. */
    float *g = malloc(sizeof(float) * (size_t)din), *be = malloc(sizeof(float) * (size_t)din);
    float *lw = malloc(sizeof(float) * (size_t)n * din), *lg = malloc(sizeof(float) * (size_t)n * din);
    for (int i = 0; i < din; i++) g[i] = next_val(&s), be[i] = next_val(&s);
    gpt2_kernels_generic.layernorm(lw, in, g, be, n, din, 1e-5f);
    /* Both sum in f32 in their own order: the mean is off by about
     * 1e-7 x sqrt(din) x max|x| either way, and (x - mean) / sqrt(var + eps)
     * amplifies that by 1 / sqrt(var + eps) (316 for a constant row), times
     * the gain. The tolerance follows that bound, row by row. */
    double gmax = 0;
    for (int i = 0; i < din; i++) gmax = fmax(gmax, fabs((double)g[i]));
    for (int r = 0; r < n; r++) {
        const float *x = in + (size_t)r * din;
        double mean = 0, var = 0, xmax = 0;
        for (int i = 0; i < din; i++) mean += x[i], xmax = fmax(xmax, fabs((double)x[i]));
        mean /= din;
        for (int i = 0; i < din; i++) var += (x[i] - mean) * (x[i] - mean);
        var /= din;
        double tol = 1e-5 * sqrt((double)din) * (1.0 + xmax) * (1.0 + gmax) / sqrt(var + 1e-5);
        for (int k = 0; k < n_tables; k++) {
            tables[k]->layernorm(lg, x, g, be, 1, din, 1e-5f);
            check_close(lg, lw + (size_t)r * din, (size_t)din, tol);
        }
    }
    free(g), free(be), free(lw), free(lg);
    free(wd), free(wf), free(scales), free(in), free(bias), free(want), free(got), free(one);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_bpe(data, size);
    check_kernels(data, size);
    return 0;
}
