/* ref.c -- the plain C reference kernels: simple loops in the order the
 * math is written, float storage, double where a long reduction would
 * otherwise lose precision (LayerNorm statistics). These are the oracle for
 * every optimised kernel. Weights are widened element by element. */
#include <float.h>
#include <math.h>

#include <string.h>

#include "../../core/half.h"
#include "../kernels.h"

size_t weight_type_size(gpt2_wtype t) { return t == WT_F32 ? 4 : t == WT_Q8 ? 1 : 2; }

/* One loop per type, the type tested once: conversion at load (--dtype,
 * --compute) widens every matrix through here. */
void weight_to_f32(gpt2_weight w, size_t at, size_t n, float *out) {
    const unsigned char *p = (const unsigned char *)w.data + at * weight_type_size(w.type);
    uint16_t h;
    switch (w.type) {
    case WT_F32: memcpy(out, p, n * 4); break;
    case WT_F16:
        for (size_t i = 0; i < n; i++) memcpy(&h, p + 2 * i, 2), out[i] = f16_to_f32(h);
        break;
    case WT_BF16:
        for (size_t i = 0; i < n; i++) memcpy(&h, p + 2 * i, 2), out[i] = bf16_to_f32(h);
        break;
    case WT_BF16P: /* `at` counts in W's row-major order, as for Q8 */
        for (size_t i = 0; i < n; i++) {
            size_t k = (at + i) / (size_t)w.cols, j = (at + i) % (size_t)w.cols;
            out[i] = bf16_to_f32(((const uint16_t *)w.data)[bf16p_index(k, j, (size_t)w.rows)]);
        }
        break;
    case WT_Q8:
        for (size_t i = 0; i < n; i++) {
            size_t k = (at + i) / (size_t)w.cols, j = (at + i) % (size_t)w.cols;
            int8_t q = ((const int8_t *)w.data)[q8_index(k, j, (size_t)w.rows)];
            out[i] = (float)q * f16_to_f32(w.scales[q8_scale_index(k, j, (size_t)w.rows)]);
        }
        break;
    }
}

/* Written so that the compiler vectorises it (a product's inputs are
 * quantised on every call: scalar lrintf cost 6% of batched q8 decode): the
 * largest value by comparison, and round-half-even by the 1.5 * 2^23 trick,
 * exact for |v| < 2^22, the same integers lrintf gives. */
void q8_quantize(int16_t *xq, float *xd, const float *x, int n, int din) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: v + magic - magic rounds v to an integer, ties to even */
    for (int i = 0; i < n; i++)
        for (int b = 0; b < din / GPT2_Q8_BLOCK; b++) {
            const float *xb = x + (size_t)i * din + b * GPT2_Q8_BLOCK;
            int16_t *qb = xq + (size_t)i * din + b * GPT2_Q8_BLOCK;
            float amax = 0.0f;
            int finite = 1;
            for (int k = 0; k < GPT2_Q8_BLOCK; k++) {
                const float a = fabsf(xb[k]);
                finite &= a <= FLT_MAX; /* false for NaN and the infinities */
                amax = a > amax ? a : amax;
            }
            float *d = xd + (size_t)i * (din / GPT2_Q8_BLOCK) + b;
            /* NaN for a NaN or an infinity, passed on by the product; a block
             * whose largest value is below 1e-30 counts as zeros (32767 /
             * absmax would overflow below about 1e-34). */
            if (!finite || amax < 1e-30f) {
                *d = finite ? 0.0f : NAN;
                for (int k = 0; k < GPT2_Q8_BLOCK; k++) qb[k] = 0;
                continue;
            }
            const float id = 32767.0f / amax;
            *d = amax / 32767.0f;
            for (int k = 0; k < GPT2_Q8_BLOCK; k++) {
                /* A statement of its own, so that no compiler fuses the
                 * product into the addition (one rounding instead of two). */
                const float v = xb[k] * id; /* |v| <= 32767 */
                qb[k] = (int16_t)((v + magic) - magic);
            }
        }
}

/* One scalar loop for every table, so that every table sees the same
 * inputs (the model splits it over the threads by rows). */
void x_bf16_pairs(uint32_t *xb, const float *x, size_t count) {
    for (size_t i = 0; i + 1 < count; i += 2)
        xb[i / 2] = (uint32_t)f32_to_bf16(x[i]) | (uint32_t)f32_to_bf16(x[i + 1]) << 16;
}

static float weight_at(gpt2_weight w, size_t i) {
    float f;
    weight_to_f32(w, i, 1, &f);
    return f;
}

static void matmul_ref(float *out, const float *in, gpt2_weight w, const float *bias, int n, int din, int dout,
                       int j0, int j1) {
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * dout;     // (dout,)
        const float *x = in + (size_t)i * din; // (din,)
        for (int j = j0; j < j1; j++) o[j] = bias ? bias[j] : 0.0f;
        for (int k = 0; k < din; k++)
            for (int j = j0; j < j1; j++) o[j] += x[k] * weight_at(w, (size_t)k * dout + j); // w[k, j]
    }
}

static void matmul_part_ref(float *part, const float *x, gpt2_weight w, int n, int din, int dout, int b0, int b1) {
    for (int b = b0; b < b1; b++) {
        int k1 = (b + 1) * GPT2_KBLOCK < din ? (b + 1) * GPT2_KBLOCK : din;
        for (int i = 0; i < n; i++) {
            float *p = part + ((size_t)b * n + i) * dout; // (dout,)
            const float *xi = x + (size_t)i * din;       // (din,)
            for (int j = 0; j < dout; j++) p[j] = 0.0f;
            for (int k = b * GPT2_KBLOCK; k < k1; k++)
                for (int j = 0; j < dout; j++) p[j] += xi[k] * weight_at(w, (size_t)k * dout + j);
        }
    }
}

static void matmul_t_ref(float *out, const float *in, gpt2_weight w, int n, int din, int dout, int v0, int v1) {
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * din;
        for (int v = v0; v < v1; v++) {
            float s = 0.0f;
            for (int k = 0; k < din; k++) s += x[k] * weight_at(w, (size_t)v * din + k); // w[v, k]
            out[(size_t)i * dout + v] = s;
        }
    }
}

static void matmul_q8_ref(float *out, const int16_t *xq, const float *xd, gpt2_weight w, const float *bias, int n,
                          int din, int dout, int j0, int j1) {
    for (int i = 0; i < n; i++)
        for (int j = j0; j < j1; j++)
            out[(size_t)i * dout + j] = q8_dot_column(xq + (size_t)i * din, xd + (size_t)i * (din / GPT2_Q8_BLOCK), w,
                                                      din, j, bias ? bias[j] : 0.0f);
}

static void matmul_bf16_ref(float *out, const uint32_t *xb, gpt2_weight w, const float *bias, int n, int din,
                            int dout, int j0, int j1) {
    const uint32_t *wp = w.data; // (din / 2, dout) pairs, in groups of columns
    for (int i = 0; i < n; i++)
        for (int j = j0; j < j1; j++) {
            float acc = bias ? bias[j] : 0.0f;
            for (int p = 0; p < din / 2; p++)
                acc = bf16_dot_pair(acc, xb[(size_t)i * (din / 2) + p], wp[bf16p_word((size_t)p, (size_t)j, (size_t)din / 2)]);
            out[(size_t)i * dout + j] = acc;
        }
}

static void layernorm_ref(float *out, const float *in, const float *g, const float *b, int n, int d, float eps) {
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * d;
        float *o = out + (size_t)i * d;
        double mean = 0.0, var = 0.0;
        for (int k = 0; k < d; k++) mean += x[k];
        mean /= d;
        for (int k = 0; k < d; k++) var += (x[k] - mean) * (x[k] - mean);
        var /= d; /* biased, as torch.nn.LayerNorm */
        const float rstd = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
        for (int k = 0; k < d; k++) o[k] = (x[k] - m) * rstd * g[k] + b[k];
    }
}

static void activation_ref(float *x, size_t n, gpt2_act act) {
    const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        switch (act) {
        case ACT_GELU_TANH: x[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v))); break;
        case ACT_GELU_ERF: x[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case ACT_RELU: x[i] = v > 0.0f ? v : 0.0f; break;
        }
    }
}

/* The derivatives: tanh GELU 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) u',
 * u = sqrt(2 / pi) (x + 0.044715 x^3); erf GELU Phi(x) + x phi(x); ReLU. */
static void activation_dx_ref(float *dx, const float *dy, const float *x, size_t n, gpt2_act act) {
    const float c = 0.7978845608028654f;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        float d = 0.0f;
        switch (act) {
        case ACT_GELU_TANH: {
            const float th = tanhf(c * (v + 0.044715f * v * v * v));
            d = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * c * (1.0f + 3.0f * 0.044715f * v * v);
            break;
        }
        case ACT_GELU_ERF:
            d = 0.5f * (1.0f + erff(v * 0.7071067811865476f)) + v * expf(-0.5f * v * v) * 0.3989422804014327f;
            break;
        case ACT_RELU: d = v > 0.0f ? 1.0f : 0.0f; break;
        }
        dx[i] = dy[i] * d;
    }
}

/* Each rounding of kernels.h's formula on its own (ISO C does not contract
 * a * b + c into an FMA unless asked). */
static void adamw_ref(float *p, float *g, float *m, float *v, size_t n, const gpt2_adamw_args *a) {
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * a->clip;
        g[i] = gi;
        m[i] = m[i] * a->beta1 + gi * (1.0f - a->beta1);
        v[i] = v[i] * a->beta2 + gi * gi * (1.0f - a->beta2);
        const float denom = sqrtf(v[i]) / a->bc2_sqrt + a->eps;
        p[i] = p[i] * a->decay - a->step_size * (m[i] / denom);
    }
}

static void attention_one(float *out, const float *q, gpt2_weight k, gpt2_weight v, int lo, int T, int hd,
                          size_t stride, float scale_div, float slope, float *scores) {
    float mx = -INFINITY;
    for (int t = lo; t < T; t++) {
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += q[d] * weight_at(k, kv_offset(t, hd, stride) + d); // k[t, d]
        scores[t] = fmaf(slope, (float)t, s / scale_div);
        if (scores[t] > mx) mx = scores[t];
    }
    float sum = 0.0f;
    for (int t = lo; t < T; t++) {
        scores[t] = expf(scores[t] - mx);
        sum += scores[t];
    }
    for (int d = 0; d < hd; d++) out[d] = 0.0f;
    for (int t = lo; t < T; t++) {
        const float p = scores[t] / sum;
        for (int d = 0; d < hd; d++) out[d] += p * weight_at(v, kv_offset(t, hd, stride) + d); // v[t, d]
    }
}

static void attention_ref(float *out, size_t ostride, const float *q, size_t qstride, int nq, gpt2_weight k,
                          gpt2_weight v, const gpt2_attn_args *a, float *scores) {
    for (int i = 0; i < nq; i++) {
        const int Ti = a->T + i * a->step;
        attention_one(out + (size_t)i * ostride, q + (size_t)i * qstride, k, v, attn_first(Ti, a->window), Ti, a->hd,
                      a->stride, a->scale_div, a->slope, scores);
    }
}

static float read_probe_ref(const void *p, size_t n) {
    const uint64_t *u = p;
    uint64_t acc = 0;
    for (size_t i = 0; i < n / 8; i++) acc ^= u[i];
    return (float)(acc & 0xffff);
}

static double fma_probe_ref(long iters) {
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) a[j] = a[j] * 0.999999f + 1e-6f;
    volatile float sink = a[0] + a[7];
    (void)sink;
    return 16.0 * (double)iters;
}

const gpt2_kernels gpt2_kernels_generic = {
    .name = "generic",
    .matmul = matmul_ref,
    .matmul_part = matmul_part_ref,
    .matmul_t = matmul_t_ref,
    .matmul_q8 = matmul_q8_ref,
    .matmul_bf16 = matmul_bf16_ref,
    .layernorm = layernorm_ref,
    .activation = activation_ref,
    .activation_dx = activation_dx_ref,
    .adamw = adamw_ref,
    .attention = attention_ref,
    .read_probe = read_probe_ref,
    .fma_probe = fma_probe_ref,
};
