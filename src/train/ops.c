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
static gpt2_weight typed_weight(const void *w, gpt2_wtype t) { return (gpt2_weight){.data = w, .type = t}; }

/* ----------------------------------------------------------------- dropout */

uint64_t op_dropout_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct drop_op {
    float *x;
    size_t count;
    op_dropout d;
} drop_op;

static void drop_run(void *ctx, int ith, int nth) {
    const drop_op *o = ctx;
    const size_t lo = o->count * (size_t)ith / (size_t)nth, hi = o->count * (size_t)(ith + 1) / (size_t)nth;
    for (size_t i = lo; i < hi; i++) o->x[i] *= op_dropout_scale(o->d, i);
}

void op_dropout_apply(gpt2_pool *p, float *x, size_t count, op_dropout d) {
    if (d.p <= 0.0f) return;
    drop_op o = {x, count, d};
    pool_run(p, drop_run, &o);
}

/* ---------------------------------------------------------------- products */

typedef struct mm_op {
    const gpt2_kernels *k;
    float *y, *dA, *db, *scratch;
    const float *x, *bias;
    const void *w;
    gpt2_wtype type;
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
        o->k->matmul(o->y, o->x, typed_weight(o->w, o->type), o->bias, o->n, o->din, o->dout, lo, hi);
        return;
    }
    o->k->matmul_t(o->y, o->x, typed_weight(o->w, o->type), o->n, o->din, o->dout, lo, hi);
    for (int i = 0; o->bias && i < o->n; i++)
        for (int j = lo; j < hi; j++) o->y[(size_t)i * o->dout + j] += o->bias[j];
}

static void mm(gpt2_pool *p, const gpt2_kernels *k, float *y, const float *x, op_mat a, int linear,
               const float *bias, int n, int din, int dout) {
    mm_op o = {.k = k, .y = y, .x = x, .w = a.w, .type = a.type, .linear = linear, .bias = bias, .n = n, .din = din,
               .dout = dout};
    pool_run(p, mm_run, &o);
}

void op_matmul(gpt2_pool *p, const gpt2_kernels *k, float *y, const float *x, op_mat a, const float *bias, int n,
               int din, int dout) {
    mm(p, k, y, x, a, a.linear, bias, n, din, dout);
}

void op_matmul_dx(gpt2_pool *p, const gpt2_kernels *k, float *dx, const float *dy, op_mat a, int n, int din,
                  int dout) {
    /* dx = dy A^T: a Conv1D A (din, dout) is, read by rows, the (dout',
     * din') = (din, dout) storage matmul_t takes; a Linear A (dout, din) is
     * the (din', dout') = (dout, din) one matmul takes. */
    mm(p, k, dx, dy, a, !a.linear, NULL, n, dout, din);
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
        o->k->matmul(tmp, pt, f32_weight((const float *)o->w), NULL, rc, o->n, o->S, 0, o->S);
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
    if (!dA && !dbias) return;
    const float *P = linear ? dy : x, *Q = linear ? x : dy;
    const int R = linear ? dout : din, S = linear ? din : dout;
    mm_op o = {.k = k, .dA = dA, .x = P, .w = Q, .n = n, .din = R, .S = S, .scratch = scratch,
               .per_thread = (size_t)AT_ROWS * ((size_t)n + (size_t)S)};
    /* The scratch was sized for the widest S: per_thread follows this S. */
    if (dA) pool_run(p, atb_run, &o);
    if (dbias) {
        mm_op c = {.db = dbias, .x = dy, .n = n, .dout = dout};
        pool_run(p, colsum_run, &c);
    }
}

/* A's element (k, j) of the product x A, whatever its storage (F32: the
 * references serve the f32 products). */
static float mat_at(op_mat a, int k, int j, int din, int dout) {
    const float *w = a.w;
    return a.linear ? w[(size_t)j * din + k] : w[(size_t)k * dout + j];
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
    if (dg) pool_run(p, ln_dg_run, &o);
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

static void act_dx_run(void *ctx, int ith, int nth) {
    const act_op *o = ctx;
    const size_t lo = o->count * (size_t)ith / (size_t)nth, hi = o->count * (size_t)(ith + 1) / (size_t)nth;
    o->k->activation_dx(o->y + lo, o->dy + lo, o->x + lo, hi - lo, o->act);
}

void op_act_dx(gpt2_pool *p, const gpt2_kernels *k, float *dx, const float *dy, const float *x, size_t count,
               gpt2_act act) {
    act_op o = {.k = k, .y = dx, .x = x, .dy = dy, .count = count, .act = act};
    pool_run(p, act_dx_run, &o);
}

/* --------------------------------------------------------------- attention */

/* The first key query t sees (op_attn's window). */
static int attn_lo(const op_attn *a, int t) { return a->window > 0 && t + 1 > a->window ? t + 1 - a->window : 0; }

/* p[lo..t] = softmax over those keys of q . k_t2 / scale_div + slope t2,
 * one key at a time (the references). */
static void ref_probs(float *p, const float *q, const float *k0, size_t stride, int lo, int t, int hd,
                      float scale_div, float slope) {
    float mx = -INFINITY, sum = 0.0f;
    for (int t2 = lo; t2 <= t; t2++) {
        const float *k = k0 + (size_t)t2 * stride;
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += q[d] * k[d];
        p[t2] = fmaf(slope, (float)t2, s / scale_div);
        if (p[t2] > mx) mx = p[t2];
    }
    for (int t2 = lo; t2 <= t; t2++) sum += p[t2] = expf(p[t2] - mx);
    for (int t2 = lo; t2 <= t; t2++) p[t2] /= sum;
}

/* The dropout scale of query t's probability for key t2 (op_attention). */
static float attn_keep(op_dropout d, int b, int h, int t, int t2, int H, int T) {
    return d.p > 0.0f ? op_dropout_scale(d, (((uint64_t)b * H + h) * T + t) * T + t2) : 1.0f;
}

static float attn_slope(const op_attn *a, int h) { return a->alibi ? a->alibi[h] : 0.0f; }

void ref_attention(float *out, const float *qkv, const op_attn *a) {
    const int B = a->B, T = a->T, C = a->C, H = a->H, hd = C / H;
    const size_t stride = 3 * (size_t)C;
    float *p = malloc(sizeof(float) * (size_t)T);
    for (int b = 0; p && b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *base = qkv + (size_t)b * T * stride + (size_t)h * hd;
            for (int t = 0; t < T; t++) {
                const int lo = attn_lo(a, t);
                ref_probs(p, base + (size_t)t * stride, base + C, stride, lo, t, hd, a->scale_div, attn_slope(a, h));
                float *y = out + ((size_t)b * T + (size_t)t) * C + (size_t)h * hd;
                for (int d = 0; d < hd; d++) {
                    float s = 0.0f;
                    for (int t2 = lo; t2 <= t; t2++)
                        s += p[t2] * attn_keep(a->drop, b, h, t, t2, H, T) *
                             base[2 * (size_t)C + (size_t)t2 * stride + d];
                    y[d] = s;
                }
            }
        }
    free(p);
}

void ref_attention_dx(float *dqkv, const float *dout, const float *qkv, const op_attn *a) {
    const int B = a->B, T = a->T, C = a->C, H = a->H, hd = C / H;
    const size_t stride = 3 * (size_t)C;
    float *p = malloc(sizeof(float) * 2 * (size_t)T), *dp = p ? p + T : NULL;
    for (int b = 0; p && b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *base = qkv + (size_t)b * T * stride + (size_t)h * hd;
            float *dbase = dqkv + (size_t)b * T * stride + (size_t)h * hd;
            for (int t = 0; t < T; t++)
                for (int part = 0; part < 3; part++)
                    memset(dbase + (size_t)t * stride + (size_t)part * C, 0, sizeof(float) * (size_t)hd);
            for (int t = 0; t < T; t++) {
                const int lo = attn_lo(a, t);
                const float *q = base + (size_t)t * stride, *g = dout + ((size_t)b * T + (size_t)t) * C + (size_t)h * hd;
                ref_probs(p, q, base + C, stride, lo, t, hd, a->scale_div, attn_slope(a, h));
                float dot = 0.0f;
                for (int t2 = lo; t2 <= t; t2++) {
                    float s = 0.0f;
                    for (int d = 0; d < hd; d++) s += g[d] * base[2 * (size_t)C + (size_t)t2 * stride + d];
                    dp[t2] = s * attn_keep(a->drop, b, h, t, t2, H, T); /* d of the kept probability */
                    dot += p[t2] * dp[t2];
                }
                float *dq = dbase + (size_t)t * stride;
                for (int t2 = lo; t2 <= t; t2++) {
                    const float ds = p[t2] * (dp[t2] - dot) / a->scale_div;
                    const float *k = base + C + (size_t)t2 * stride;
                    float *dk = dbase + C + (size_t)t2 * stride, *dv = dbase + 2 * (size_t)C + (size_t)t2 * stride;
                    for (int d = 0; d < hd; d++) {
                        dq[d] += ds * k[d];
                        dk[d] += ds * q[d];
                        dv[d] += p[t2] * attn_keep(a->drop, b, h, t, t2, H, T) * g[d];
                    }
                }
            }
        }
    free(p);
}

typedef struct attn_op {
    const gpt2_kernels *k;
    const op_attn *a;
    float *out, *dqkv, *scratch;
    const float *qkv, *dout;
} attn_op;

size_t op_attention_scratch(int n_threads, int T, int hd) {
    return (size_t)n_threads * (3 * (size_t)T * T + 5 * (size_t)T * hd);
}

/* Copies head h's hd columns of T rows `stride` apart into (T, hd), or
 * back (to 1: from `head` into the strided rows). */
static void head_copy(float *head, float *rows, size_t stride, int T, int hd, int to) {
    for (int t = 0; t < T; t++) {
        float *r = rows + (size_t)t * stride, *x = head + (size_t)t * hd;
        if (to) memcpy(r, x, sizeof(float) * (size_t)hd);
        else memcpy(x, r, sizeof(float) * (size_t)hd);
    }
}

/* P (T, T) = softmax(S) of head h (op_attn), zero for the keys a query
 * does not see: forward and backward's recomputation both come here. */
static void head_probs(const gpt2_kernels *k, float *P, const float *Q, const float *K, const op_attn *a, int h,
                       int hd) {
    const int T = a->T;
    const float slope = attn_slope(a, h);
    k->matmul_t(P, Q, f32_weight(K), T, hd, T, 0, T);
    for (int t = 0; t < T; t++) {
        const int lo = attn_lo(a, t);
        float *row = P + (size_t)t * T, mx = -INFINITY, sum = 0.0f;
        for (int t2 = lo; t2 <= t; t2++) {
            row[t2] = fmaf(slope, (float)t2, row[t2] / a->scale_div);
            mx = row[t2] > mx ? row[t2] : mx;
        }
        for (int t2 = lo; t2 <= t; t2++) sum += row[t2] = expf(row[t2] - mx);
        for (int t2 = lo; t2 <= t; t2++) row[t2] /= sum;
        memset(row, 0, sizeof(float) * (size_t)lo);
        memset(row + t + 1, 0, sizeof(float) * (size_t)(T - t - 1));
    }
}

/* Row t of P times its dropout scales, into out (the kept probabilities). */
static void head_drop(float *out, const float *P, op_dropout d, int b, int h, int H, int T) {
    for (int t = 0; t < T; t++)
        for (int t2 = 0; t2 < T; t2++)
            out[(size_t)t * T + t2] = t2 <= t ? P[(size_t)t * T + t2] * attn_keep(d, b, h, t, t2, H, T) : 0.0f;
}

/* x (T, T) = m^T. */
static void square_transpose(float *x, const float *m, int T) {
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) x[(size_t)j * T + i] = m[(size_t)i * T + j];
}

/* Units are (sequence, head) pairs, dealt out in turn. */
static void attn_run(void *ctx, int ith, int nth) {
    const attn_op *o = ctx;
    const op_attn *a = o->a;
    const int C = a->C, T = a->T, hd = C / a->H;
    const size_t stride = 3 * (size_t)C, TT = (size_t)T * T, Th = (size_t)T * hd;
    float *P = o->scratch + (size_t)ith * (3 * TT + 5 * Th), *Q = P + 3 * TT, *K = Q + Th, *V = K + Th, *O = V + Th;
    for (int u = ith; u < a->B * a->H; u += nth) {
        const int b = u / a->H, h = u % a->H;
        float *base = (float *)o->qkv + (size_t)b * T * stride + (size_t)h * hd;
        head_copy(Q, base, stride, T, hd, 0);
        head_copy(K, base + C, stride, T, hd, 0);
        head_copy(V, base + 2 * C, stride, T, hd, 0);
        head_probs(o->k, P, Q, K, a, h, hd);
        if (a->drop.p > 0.0f) head_drop(P, P, a->drop, b, h, a->H, T);
        o->k->matmul(O, P, f32_weight(V), NULL, T, T, hd, 0, hd); // (T, hd) = P V
        head_copy(O, o->out + (size_t)b * T * C + (size_t)h * hd, (size_t)C, T, hd, 1);
    }
}

void op_attention(gpt2_pool *p, const gpt2_kernels *k, float *out, const float *qkv, const op_attn *a,
                  float *scratch) {
    attn_op o = {.k = k, .a = a, .out = out, .qkv = qkv, .scratch = scratch};
    pool_run(p, attn_run, &o);
}

static void attn_dx_run(void *ctx, int ith, int nth) {
    const attn_op *o = ctx;
    const op_attn *a = o->a;
    const int C = a->C, T = a->T, hd = C / a->H;
    const size_t stride = 3 * (size_t)C, TT = (size_t)T * T, Th = (size_t)T * hd;
    float *P = o->scratch + (size_t)ith * (3 * TT + 5 * Th), *D = P + TT, *X = D + TT;
    float *Q = X + TT, *K = Q + Th, *V = K + Th, *G = V + Th, *O = G + Th; // O: each (T, hd) result in turn
    for (int u = ith; u < a->B * a->H; u += nth) {
        const int b = u / a->H, h = u % a->H;
        float *base = (float *)o->qkv + (size_t)b * T * stride + (size_t)h * hd;
        float *dbase = o->dqkv + (size_t)b * T * stride + (size_t)h * hd;
        head_copy(Q, base, stride, T, hd, 0);
        head_copy(K, base + C, stride, T, hd, 0);
        head_copy(V, base + 2 * C, stride, T, hd, 0);
        head_copy(G, (float *)o->dout + (size_t)b * T * C + (size_t)h * hd, (size_t)C, T, hd, 0);
        head_probs(o->k, P, Q, K, a, h, hd);
        o->k->matmul_t(D, G, f32_weight(V), T, hd, T, 0, T); // dP (T, T) = G V^T
        if (a->drop.p > 0.0f) head_drop(D, D, a->drop, b, h, a->H, T); /* d of the kept probabilities */
        for (int t = 0; t < T; t++) {                         // dS, in place; zero where P is
            float *dp = D + (size_t)t * T, *pr = P + (size_t)t * T, dot = 0.0f;
            const int lo = attn_lo(a, t);
            for (int t2 = lo; t2 <= t; t2++) dot += pr[t2] * dp[t2];
            for (int t2 = lo; t2 <= t; t2++) dp[t2] = pr[t2] * (dp[t2] - dot) / a->scale_div;
            memset(dp, 0, sizeof(float) * (size_t)lo);
            memset(dp + t + 1, 0, sizeof(float) * (size_t)(T - t - 1));
        }
        o->k->matmul(O, D, f32_weight(K), NULL, T, T, hd, 0, hd); // dQ = dS K
        head_copy(O, dbase, stride, T, hd, 1);
        square_transpose(X, D, T);
        o->k->matmul(O, X, f32_weight(Q), NULL, T, T, hd, 0, hd); // dK = dS^T Q
        head_copy(O, dbase + C, stride, T, hd, 1);
        if (a->drop.p > 0.0f) head_drop(P, P, a->drop, b, h, a->H, T);
        square_transpose(X, P, T);
        o->k->matmul(O, X, f32_weight(G), NULL, T, T, hd, 0, hd); // dV = P^T G (the kept P)
        head_copy(O, dbase + 2 * C, stride, T, hd, 1);
    }
}

void op_attention_dx(gpt2_pool *p, const gpt2_kernels *k, float *dqkv, const float *dout, const float *qkv,
                     const op_attn *a, float *scratch) {
    attn_op o = {.k = k, .a = a, .dqkv = dqkv, .dout = dout, .qkv = qkv, .scratch = scratch};
    pool_run(p, attn_dx_run, &o);
}

/* ---------------------------------------------------------- column gathers */

typedef struct gather_op {
    float *y;
    const float *x;
    const int *idx;
    int n, din, dout, back;
} gather_op;

static void gather_run(void *ctx, int ith, int nth) {
    const gather_op *o = ctx;
    int lo, hi;
    range(o->n, 1, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        if (o->back) { /* y is dx (n, din), x is dy (n, dout) */
            float *dx = o->y + (size_t)i * o->din;
            const float *dy = o->x + (size_t)i * o->dout;
            for (int j = 0; j < o->dout; j++) dx[o->idx[j]] += dy[j];
        } else {
            float *y = o->y + (size_t)i * o->dout;
            const float *x = o->x + (size_t)i * o->din;
            for (int j = 0; j < o->dout; j++) y[j] = x[o->idx[j]];
        }
    }
}

void op_gather_cols(gpt2_pool *p, float *y, const float *x, const int *idx, int n, int din, int dout) {
    gather_op o = {y, x, idx, n, din, dout, 0};
    pool_run(p, gather_run, &o);
}

void op_gather_cols_dx(gpt2_pool *p, float *dx, const float *dy, const int *idx, int n, int din, int dout) {
    gather_op o = {dx, dy, idx, n, din, dout, 1};
    pool_run(p, gather_run, &o);
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
