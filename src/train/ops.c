/* ops.c -- the forward and backward operations of training (ops.h): the
 * products on the model's kernel table, the rest in plain C, each split
 * over the pool's threads so that no two threads write one value. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "train.h"

/* [lo, hi) of 0..total for part ith of nth, in multiples of align. */
static void range(int total, int align, int ith, int nth, int *lo, int *hi) {
    int chunk = (total + nth - 1) / nth;
    chunk = (chunk + align - 1) / align * align;
    *lo = ith * chunk < total ? ith * chunk : total;
    *hi = *lo + chunk < total ? *lo + chunk : total;
}

static gpt2_weight f32_weight(const float *w) { return (gpt2_weight){.data = w, .type = WT_F32}; }

/* ---------------------------------------------------------------- products */

typedef struct mm_op {
    const gpt2_kernels *k;
    float *y, *dA, *db, *scratch;
    const float *x, *bias, *w;
    int n, din, dout, linear, S;
    size_t per_thread;
} mm_op;

/* y (n, dout) = x (n, din) W: W stored (din, dout) through matmul, or
 * stored (dout, din) through matmul_t; columns split over threads. */
static void mm_run(void *ctx, int ith, int nth) {
    const mm_op *o = ctx;
    int lo, hi;
    range(o->dout, 16, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    if (!o->linear) {
        o->k->matmul(o->y, o->x, f32_weight(o->w), o->bias, o->n, o->din, o->dout, lo, hi);
        return;
    }
    o->k->matmul_t(o->y, o->x, f32_weight(o->w), o->n, o->din, o->dout, lo, hi);
    for (int i = 0; o->bias && i < o->n; i++)
        for (int j = lo; j < hi; j++) o->y[(size_t)i * o->dout + j] += o->bias[j];
}

static void mm(gpt2_pool *p, const gpt2_kernels *k, float *y, const float *x, const float *w, int linear,
               const float *bias, int n, int din, int dout) {
    mm_op o = {.k = k, .y = y, .x = x, .w = w, .linear = linear, .bias = bias, .n = n, .din = din, .dout = dout};
    pool_run(p, mm_run, &o);
}

void op_matmul(gpt2_pool *p, const gpt2_kernels *k, float *y, const float *x, op_mat a, const float *bias, int n,
               int din, int dout) {
    mm(p, k, y, x, a.w, a.linear, bias, n, din, dout);
}

void op_matmul_dx(gpt2_pool *p, const gpt2_kernels *k, float *dx, const float *dy, op_mat a, int n, int din,
                  int dout) {
    /* dx = dy A^T: a Conv1D A (din, dout) is, read by rows, the (dout',
     * din') = (din, dout) storage matmul_t takes; a Linear A (dout, din) is
     * the (din', dout') = (dout, din) one matmul takes. */
    mm(p, k, dx, dy, a.w, !a.linear, NULL, n, dout, din);
}

/* Rows of dW (R, S) += P^T Q, P (n, R), Q (n, S), a chunk of AT_ROWS rows
 * of dW at a time: P's columns for them transposed into the thread's
 * scratch, then one product with Q as the (din n, dout S) matrix. */
#define AT_ROWS 64
static void atb_run(void *ctx, int ith, int nth) {
    const mm_op *o = ctx; /* x: P, w: Q, din: R */
    float *pt = o->scratch + (size_t)ith * o->per_thread, *tmp = pt + (size_t)AT_ROWS * o->n;
    for (int r0 = ith * AT_ROWS; r0 < o->din; r0 += nth * AT_ROWS) {
        const int rc = o->din - r0 < AT_ROWS ? o->din - r0 : AT_ROWS;
        for (int i = 0; i < o->n; i++)
            for (int r = 0; r < rc; r++) pt[(size_t)r * o->n + i] = o->x[(size_t)i * o->din + r0 + r];
        o->k->matmul(tmp, pt, f32_weight(o->w), NULL, rc, o->n, o->S, 0, o->S);
        float *d = o->dA + (size_t)r0 * o->S;
        for (size_t v = 0; v < (size_t)rc * o->S; v++) d[v] += tmp[v];
    }
}

/* dbias (dout,) += the column sums of dy (n, dout), in row order. */
static void colsum_run(void *ctx, int ith, int nth) {
    const mm_op *o = ctx;
    int lo, hi;
    range(o->dout, 16, ith, nth, &lo, &hi);
    for (int i = 0; i < o->n; i++)
        for (int j = lo; j < hi; j++) o->db[j] += o->x[(size_t)i * o->dout + j];
}

size_t op_matmul_dw_scratch(int n_threads, int n, int widest) {
    return (size_t)n_threads * (size_t)AT_ROWS * ((size_t)n + (size_t)widest);
}

void op_matmul_dw(gpt2_pool *p, const gpt2_kernels *k, float *dA, float *dbias, const float *x, const float *dy,
                  int linear, int n, int din, int dout, float *scratch) {
    /* Conv1D: dA (din, dout) += x^T dy; Linear: dA (dout, din) += dy^T x. */
    const float *P = linear ? dy : x, *Q = linear ? x : dy;
    const int R = linear ? dout : din, S = linear ? din : dout;
    mm_op o = {.k = k, .dA = dA, .x = P, .w = Q, .n = n, .din = R, .S = S, .scratch = scratch,
               .per_thread = (size_t)AT_ROWS * ((size_t)n + (size_t)S)};
    /* The scratch was sized for the widest S: per_thread follows this S. */
    pool_run(p, atb_run, &o);
    if (dbias) {
        mm_op c = {.db = dbias, .x = dy, .n = n, .dout = dout};
        pool_run(p, colsum_run, &c);
    }
}

/* A's element (k, j) of the product x A, whatever its storage. */
static float mat_at(op_mat a, int k, int j, int din, int dout) {
    return a.linear ? a.w[(size_t)j * din + k] : a.w[(size_t)k * dout + j];
}

void ref_matmul(float *y, const float *x, op_mat a, const float *bias, int n, int din, int dout) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dout; j++) {
            float s = 0.0f;
            for (int k = 0; k < din; k++) s += x[(size_t)i * din + k] * mat_at(a, k, j, din, dout);
            y[(size_t)i * dout + j] = s + (bias ? bias[j] : 0.0f);
        }
}

void ref_matmul_dx(float *dx, const float *dy, op_mat a, int n, int din, int dout) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < din; k++) {
            float s = 0.0f;
            for (int j = 0; j < dout; j++) s += dy[(size_t)i * dout + j] * mat_at(a, k, j, din, dout);
            dx[(size_t)i * din + k] = s;
        }
}

void ref_matmul_dw(float *dA, float *dbias, const float *x, const float *dy, int linear, int n, int din, int dout) {
    for (int k = 0; k < din; k++)
        for (int j = 0; j < dout; j++) {
            float s = 0.0f;
            for (int i = 0; i < n; i++) s += x[(size_t)i * din + k] * dy[(size_t)i * dout + j];
            dA[linear ? (size_t)j * din + k : (size_t)k * dout + j] += s;
        }
    for (int j = 0; dbias && j < dout; j++) {
        float s = 0.0f;
        for (int i = 0; i < n; i++) s += dy[(size_t)i * dout + j];
        dbias[j] += s;
    }
}

/* --------------------------------------------------------------- LayerNorm */

typedef struct ln_op {
    float *y, *mean, *rstd, *dx, *dg, *db;
    const float *x, *g, *b, *dy, *cmean, *crstd;
    int n, d;
    float eps;
} ln_op;

static void ln_run(void *ctx, int ith, int nth) {
    const ln_op *o = ctx;
    int lo, hi;
    range(o->n, 1, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const float *x = o->x + (size_t)i * o->d;
        float *y = o->y + (size_t)i * o->d;
        float m = 0.0f, v = 0.0f;
        for (int j = 0; j < o->d; j++) m += x[j];
        m /= (float)o->d;
        for (int j = 0; j < o->d; j++) v += (x[j] - m) * (x[j] - m);
        v /= (float)o->d;
        const float r = 1.0f / sqrtf(v + o->eps);
        for (int j = 0; j < o->d; j++) y[j] = (x[j] - m) * r * o->g[j] + o->b[j];
        o->mean[i] = m, o->rstd[i] = r;
    }
}

void op_layernorm(gpt2_pool *p, float *y, float *mean, float *rstd, const float *x, const float *g, const float *b,
                  int n, int d, float eps) {
    ln_op o = {.y = y, .mean = mean, .rstd = rstd, .x = x, .g = g, .b = b, .n = n, .d = d, .eps = eps};
    pool_run(p, ln_run, &o);
}

/* dx by rows: with xhat the normalised input and dxhat = dy g,
 * dx += rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)). */
static void ln_dx_run(void *ctx, int ith, int nth) {
    const ln_op *o = ctx;
    int lo, hi;
    range(o->n, 1, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const float *x = o->x + (size_t)i * o->d, *dy = o->dy + (size_t)i * o->d;
        float *dx = o->dx + (size_t)i * o->d;
        const float m = o->cmean[i], r = o->crstd[i];
        float a = 0.0f, b = 0.0f;
        for (int j = 0; j < o->d; j++) {
            const float dxhat = dy[j] * o->g[j];
            a += dxhat;
            b += dxhat * (x[j] - m) * r;
        }
        a /= (float)o->d, b /= (float)o->d;
        for (int j = 0; j < o->d; j++) dx[j] += r * (dy[j] * o->g[j] - a - (x[j] - m) * r * b);
    }
}

/* dg and db by columns, summed over the rows in order. */
static void ln_dg_run(void *ctx, int ith, int nth) {
    const ln_op *o = ctx;
    int lo, hi;
    range(o->d, 16, ith, nth, &lo, &hi);
    for (int i = 0; i < o->n; i++) {
        const float *x = o->x + (size_t)i * o->d, *dy = o->dy + (size_t)i * o->d;
        const float m = o->cmean[i], r = o->crstd[i];
        for (int j = lo; j < hi; j++) {
            o->dg[j] += (x[j] - m) * r * dy[j];
            o->db[j] += dy[j];
        }
    }
}

void op_layernorm_dx(gpt2_pool *p, float *dx, float *dg, float *db, const float *dy, const float *x,
                     const float *mean, const float *rstd, const float *g, int n, int d) {
    ln_op o = {.dx = dx, .dg = dg, .db = db, .dy = dy, .x = x, .cmean = mean, .crstd = rstd, .g = g, .n = n, .d = d};
    pool_run(p, ln_dx_run, &o);
    pool_run(p, ln_dg_run, &o);
}

/* ------------------------------------------------------------- activations */

typedef struct act_op {
    const gpt2_kernels *k;
    float *y;
    const float *x, *dy;
    size_t count;
    gpt2_act act;
} act_op;

/* The forward values come from the kernel table's activation, the one
 * inference uses. */
static void act_run(void *ctx, int ith, int nth) {
    const act_op *o = ctx;
    const size_t lo = o->count * (size_t)ith / (size_t)nth, hi = o->count * (size_t)(ith + 1) / (size_t)nth;
    memcpy(o->y + lo, o->x + lo, (hi - lo) * sizeof(float));
    o->k->activation(o->y + lo, hi - lo, o->act);
}

void op_act(gpt2_pool *p, const gpt2_kernels *k, float *y, const float *x, size_t count, gpt2_act act) {
    act_op o = {.k = k, .y = y, .x = x, .count = count, .act = act};
    pool_run(p, act_run, &o);
}

/* The derivatives: tanh GELU 0.5 x (1 + tanh(u)), u = sqrt(2 / pi) (x +
 * 0.044715 x^3); erf GELU x Phi(x); ReLU. */
static float act_grad(float x, gpt2_act act) {
    switch (act) {
    case ACT_GELU_TANH: {
        const float c = 0.7978845608028654f, u = c * (x + 0.044715f * x * x * x), th = tanhf(u);
        return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * c * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case ACT_GELU_ERF:
        return 0.5f * (1.0f + erff(x * 0.7071067811865476f)) + x * expf(-0.5f * x * x) * 0.3989422804014327f;
    case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    }
    return 0.0f;
}

static void act_dx_run(void *ctx, int ith, int nth) {
    const act_op *o = ctx;
    const size_t lo = o->count * (size_t)ith / (size_t)nth, hi = o->count * (size_t)(ith + 1) / (size_t)nth;
    for (size_t i = lo; i < hi; i++) o->y[i] = o->dy[i] * act_grad(o->x[i], o->act);
}

void op_act_dx(gpt2_pool *p, float *dx, const float *dy, const float *x, size_t count, gpt2_act act) {
    act_op o = {.y = dx, .x = x, .dy = dy, .count = count, .act = act};
    pool_run(p, act_dx_run, &o);
}

/* --------------------------------------------------------------- attention */

typedef struct attn_op {
    float *out, *dqkv, *scratch;
    const float *qkv, *dout;
    int B, T, C, H;
    float scale_div;
} attn_op;

/* p[0..t] = softmax over t2 <= t of q . k_t2 / scale_div: the one
 * computation forward and backward (which recomputes it) share. */
static void attn_probs(float *p, const float *q, const float *k0, size_t stride, int t, int hd, float scale_div) {
    float mx = -INFINITY, sum = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *k = k0 + (size_t)t2 * stride;
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += q[d] * k[d];
        p[t2] = s / scale_div;
        if (p[t2] > mx) mx = p[t2];
    }
    for (int t2 = 0; t2 <= t; t2++) sum += p[t2] = expf(p[t2] - mx);
    for (int t2 = 0; t2 <= t; t2++) p[t2] /= sum;
}

size_t op_attention_scratch(int n_threads, int T) { return (size_t)n_threads * 2 * (size_t)T; }

/* Units are (sequence, head) pairs, dealt out in turn. */
static void attn_run(void *ctx, int ith, int nth) {
    const attn_op *o = ctx;
    const int C = o->C, hd = C / o->H;
    const size_t stride = 3 * (size_t)C;
    float *p = o->scratch + (size_t)ith * 2 * (size_t)o->T;
    for (int u = ith; u < o->B * o->H; u += nth) {
        const int b = u / o->H, h = u % o->H;
        const float *base = o->qkv + (size_t)b * o->T * stride + (size_t)h * hd;
        for (int t = 0; t < o->T; t++) {
            attn_probs(p, base + (size_t)t * stride, base + C, stride, t, hd, o->scale_div);
            float *y = o->out + ((size_t)b * o->T + (size_t)t) * C + (size_t)h * hd;
            memset(y, 0, sizeof(float) * (size_t)hd);
            for (int t2 = 0; t2 <= t; t2++) {
                const float *v = base + 2 * (size_t)C + (size_t)t2 * stride;
                for (int d = 0; d < hd; d++) y[d] += p[t2] * v[d];
            }
        }
    }
}

void op_attention(gpt2_pool *p, float *out, const float *qkv, int B, int T, int C, int H, float scale_div,
                  float *scratch) {
    attn_op o = {.out = out, .qkv = qkv, .B = B, .T = T, .C = C, .H = H, .scale_div = scale_div, .scratch = scratch};
    pool_run(p, attn_run, &o);
}

/* With p the probabilities of query t and g its output's gradient:
 * dp_t2 = g . v_t2, ds_t2 = p_t2 (dp_t2 - sum_j p_j dp_j) / scale_div,
 * dq_t += ds_t2 k_t2, dk_t2 += ds_t2 q_t, dv_t2 += p_t2 g. A unit writes
 * only its own head's slices of its own sequence. */
static void attn_dx_run(void *ctx, int ith, int nth) {
    const attn_op *o = ctx;
    const int C = o->C, hd = C / o->H;
    const size_t stride = 3 * (size_t)C;
    float *p = o->scratch + (size_t)ith * 2 * (size_t)o->T, *dp = p + o->T;
    for (int u = ith; u < o->B * o->H; u += nth) {
        const int b = u / o->H, h = u % o->H;
        const float *base = o->qkv + (size_t)b * o->T * stride + (size_t)h * hd;
        float *dbase = o->dqkv + (size_t)b * o->T * stride + (size_t)h * hd;
        for (int t = 0; t < o->T; t++)
            for (int part = 0; part < 3; part++) memset(dbase + (size_t)t * stride + (size_t)part * C, 0, sizeof(float) * (size_t)hd);
        for (int t = 0; t < o->T; t++) {
            const float *q = base + (size_t)t * stride;
            const float *g = o->dout + ((size_t)b * o->T + (size_t)t) * C + (size_t)h * hd;
            attn_probs(p, q, base + C, stride, t, hd, o->scale_div);
            float dot = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) {
                const float *v = base + 2 * (size_t)C + (size_t)t2 * stride;
                float s = 0.0f;
                for (int d = 0; d < hd; d++) s += g[d] * v[d];
                dp[t2] = s;
                dot += p[t2] * s;
            }
            float *dq = dbase + (size_t)t * stride;
            for (int t2 = 0; t2 <= t; t2++) {
                const float ds = p[t2] * (dp[t2] - dot) / o->scale_div;
                const float *k = base + C + (size_t)t2 * stride;
                float *dk = dbase + C + (size_t)t2 * stride, *dv = dbase + 2 * (size_t)C + (size_t)t2 * stride;
                for (int d = 0; d < hd; d++) {
                    dq[d] += ds * k[d];
                    dk[d] += ds * q[d];
                    dv[d] += p[t2] * g[d];
                }
            }
        }
    }
}

void op_attention_dx(gpt2_pool *p, float *dqkv, const float *dout, const float *qkv, int B, int T, int C, int H,
                     float scale_div, float *scratch) {
    attn_op o = {.dqkv = dqkv, .dout = dout, .qkv = qkv, .B = B, .T = T, .C = C, .H = H, .scale_div = scale_div,
                 .scratch = scratch};
    pool_run(p, attn_dx_run, &o);
}

/* ----------------------------------------------------------- cross-entropy */

typedef struct ce_op {
    float *logits, *lse;
    const float *clogits, *clse;
    const int32_t *target;
    int n, V;
    float scale;
} ce_op;

static void ce_run(void *ctx, int ith, int nth) {
    const ce_op *o = ctx;
    int lo, hi;
    range(o->n, 1, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        if (o->target[i] == TRAIN_IGNORE) continue;
        const float *l = o->clogits + (size_t)i * o->V;
        float mx = -INFINITY, sum = 0.0f;
        for (int v = 0; v < o->V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < o->V; v++) sum += expf(l[v] - mx);
        o->lse[i] = mx + logf(sum);
    }
}

double op_cross_entropy(gpt2_pool *p, float *lse, const float *logits, const int32_t *target, int n, int V) {
    ce_op o = {.lse = lse, .clogits = logits, .target = target, .n = n, .V = V};
    pool_run(p, ce_run, &o);
    double loss = 0.0; /* in row order, whatever the threads */
    for (int i = 0; i < n; i++)
        if (target[i] != TRAIN_IGNORE) loss += (double)lse[i] - (double)logits[(size_t)i * V + target[i]];
    return loss;
}

static void ce_dx_run(void *ctx, int ith, int nth) {
    const ce_op *o = ctx;
    int lo, hi;
    range(o->n, 1, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        float *l = o->logits + (size_t)i * o->V;
        if (o->target[i] == TRAIN_IGNORE) {
            memset(l, 0, sizeof(float) * (size_t)o->V);
            continue;
        }
        for (int v = 0; v < o->V; v++) l[v] = expf(l[v] - o->clse[i]) * o->scale;
        l[o->target[i]] -= o->scale;
    }
}

void op_cross_entropy_dx(gpt2_pool *p, float *logits, const float *lse, const int32_t *target, int n, int V,
                         float scale) {
    ce_op o = {.logits = logits, .clse = lse, .target = target, .n = n, .V = V, .scale = scale};
    pool_run(p, ce_dx_run, &o);
}
