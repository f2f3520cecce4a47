/* ref.c -- the plain C reference kernels: simple loops in the order the
 * math is written, float storage, double where a long reduction would
 * otherwise lose precision (LayerNorm statistics). These are the oracle for
 * every optimised kernel. */
#include <math.h>

#include "../kernels.h"

static void matmul_ref(float *out, const float *in, const float *w, const float *bias, int n, int din, int dout) {
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * dout;     // (dout,)
        const float *x = in + (size_t)i * din; // (din,)
        for (int j = 0; j < dout; j++) o[j] = bias ? bias[j] : 0.0f;
        for (int k = 0; k < din; k++) {
            const float a = x[k], *wr = w + (size_t)k * dout; // row k of (din, dout)
            for (int j = 0; j < dout; j++) o[j] += a * wr[j];
        }
    }
}

static void matmul_t_ref(float *out, const float *in, const float *w, int n, int din, int dout) {
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * din;
        for (int j = 0; j < dout; j++) {
            const float *wr = w + (size_t)j * din; // row j of (dout, din)
            float s = 0.0f;
            for (int k = 0; k < din; k++) s += x[k] * wr[k];
            out[(size_t)i * dout + j] = s;
        }
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

static void attention_ref(float *out, const float *q, const float *k, const float *v, int T, int hd,
                          size_t stride, float scale_div, float *scores) {
    float mx = -INFINITY;
    for (int t = 0; t < T; t++) {
        const float *kt = k + (size_t)t * stride;
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += q[d] * kt[d];
        scores[t] = s / scale_div;
        if (scores[t] > mx) mx = scores[t];
    }
    float sum = 0.0f;
    for (int t = 0; t < T; t++) {
        scores[t] = expf(scores[t] - mx);
        sum += scores[t];
    }
    for (int d = 0; d < hd; d++) out[d] = 0.0f;
    for (int t = 0; t < T; t++) {
        const float p = scores[t] / sum, *vt = v + (size_t)t * stride;
        for (int d = 0; d < hd; d++) out[d] += p * vt[d];
    }
}

const gpt2_kernels gpt2_kernels_generic = {
    .name = "generic",
    .matmul = matmul_ref,
    .matmul_t = matmul_t_ref,
    .layernorm = layernorm_ref,
    .activation = activation_ref,
    .attention = attention_ref,
};
