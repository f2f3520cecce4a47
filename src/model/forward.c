/* forward.c -- the forward pass's machinery every architecture shares: the
 * KV-cache state, the blocks a layer is written with (products,
 * LayerNorm, activations, rotary embeddings, attention over the cache, the
 * LM head), each split over the state's threads, and gpt2_forward, which
 * runs a batch through the model's architecture in chunks.
 * Tokens of different sequences run together: the matrix products see one
 * (n, C) block, and only attention looks at which sequence a token is in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/half.h"
#include "../core/mem.h"
#include "../core/pool.h"
#include "model.h"

/* Batches of up to this many tokens take decode's streaming product (one
 * pass over the weights for all of them); larger ones, the tiled one. */
#define DECODE_ROWS 8
/* Tokens of one sequence at consecutive positions handed to attention
 * together (OP_ATTN). */
#define ATTN_RUN 8
#define ATTN_PREFETCH 8192 /* bytes of keys and of values fetched a unit ahead (attn_prefetch) */
/* Columns a thread takes at a time from the LM head, from other nn.Linear
 * products and from Q8 products (pool_take): small enough that the threads
 * finish within a few microseconds of each other, large enough to stream
 * (LM head, gpt2 f16: 384 KiB; a 768 x 768 f32 Linear: 12 units of 192
 * KiB). Q8_UNIT is a whole number of GPT2_Q8_GROUP. */
#define HEAD_UNIT 256
#define LINEAR_UNIT 64
#define Q8_UNIT 64
#define BF16_UNIT 64
/* Prefill's tiled products deal their columns out in MATMUL_UNITS units a
 * thread, of whole vectors and as equal as that allows, rather than one
 * half each: a thread the machine slows down is relieved by the other. Each
 * unit reads the input rows again, and units of whole 48-column tiles came
 * out uneven (gpt2-medium's 1024 columns: 7 of 144 and one of 16), which
 * lost 4-5% on an idle machine. 512-token prompts, two threads, beside one
 * spinning process, three alternating rounds against the halves, tokens/s:
 * gpt2 938, 925, 975 -> 948, 957, 1039; gpt2-medium 249, 256, 255 -> 261,
 * 258, 277; idle within the noise (gpt2-medium 473, 474, 513 -> 462, 469,
 * 503). */
#define MATMUL_UNITS 4

/* The KV cache's layout (gpt2_state): each head's positions in runs of
 * GPT2_KV_BLOCK, or of n_pos when that is less (a cache sized to a short
 * generation is not padded to a whole block); a slot holds whole runs. */
static size_t kv_run(int n_pos) { return n_pos < GPT2_KV_BLOCK ? (size_t)n_pos : GPT2_KV_BLOCK; }
static size_t kv_slot_positions(int n_pos) { return (n_pos + kv_run(n_pos) - 1) / kv_run(n_pos) * kv_run(n_pos); }

/* The element where key/value head kh's position p of a slot in layer l
 * starts: the head's first run, then kv_offset (the kernels' view), runs
 * (run x gpt2_kv_width) apart. */
static size_t kv_index(const gpt2_state *s, const gpt2_config *c, int l, int slot, int kh, int p) {
    const size_t run = kv_run(s->n_pos), hd = (size_t)(c->n_embd / c->n_head), W = (size_t)gpt2_kv_width(c);
    return ((size_t)l * (size_t)s->n_slots + (size_t)slot) * kv_slot_positions(s->n_pos) * W + (size_t)kh * run * hd +
           kv_offset(p, (int)hd, run * W);
}

gpt2c_status gpt2_state_init(gpt2_state *s, const gpt2c_model *m, int n_slots, int n_pos, int max_tokens,
                             int n_threads, gpt2_err *e) {
    memset(s, 0, sizeof *s);
    const gpt2_config *c = &m->cfg;
    if (n_slots < 1 || n_pos < 1 || n_pos > c->n_ctx || max_tokens < 1 || n_threads < 0 || n_threads > 1024)
        return err_set(e, GPT2C_ERR_INVALID, "state: bad size (%d slots, %d positions, %d threads)", n_slots, n_pos,
                       n_threads);
    if (n_threads == 0) n_threads = pool_default_threads();
    s->n_slots = n_slots;
    s->n_pos = n_pos;
    s->max_tokens = max_tokens;
    const size_t C = (size_t)c->n_embd, T = (size_t)max_tokens;
    const size_t cache = (size_t)c->n_layer * (size_t)n_slots * kv_slot_positions(n_pos) * (size_t)gpt2_kv_width(c);
    s->pool = pool_new(n_threads);
    const size_t esz = weight_type_size(m->kv_type);
    s->k_cache = mem_alloc(cache * esz);
    s->v_cache = mem_alloc(cache * esz);
    /* The activations on cache lines: from malloc, a large buffer starts 16
     * bytes into its page, and every vector load of an input row or a
     * partial sum straddled two lines. Small pages: a decode step touches
     * the first rows only. */
    s->x = mem_aligned(T * C * sizeof(float));
    s->h = mem_aligned(T * C * sizeof(float));
    s->qkv = mem_aligned(T * 3 * C * sizeof(float));
    s->att = mem_aligned(T * C * sizeof(float));
    s->fc = mem_aligned(T * (size_t)c->n_inner * sizeof(float));
    s->scores = mem_aligned((size_t)n_threads * ATTN_RUN * (size_t)n_pos * sizeof(float));
    s->tmp = mem_aligned(3 * C * sizeof(float));
    /* Q8 products take their input rows quantised (the widest input is F). */
    const size_t widest_in = (size_t)c->n_inner > C ? (size_t)c->n_inner : C;
    s->xq = mem_aligned(T * widest_in * sizeof *s->xq);
    s->xd = mem_aligned(T * (widest_in / GPT2_Q8_BLOCK + 1) * sizeof *s->xd);
    s->head_rows = n_slots < max_tokens ? n_slots : max_tokens;
    if (s->head_rows > 16) s->head_rows = 16; /* enough to read the head once for a whole decode step */
    s->head = mem_aligned((size_t)s->head_rows * (size_t)c->n_vocab * sizeof(float));
    /* The partials of the largest product: din C with dout 3C or F, or din F
     * with dout C. */
    const size_t F = (size_t)c->n_inner, KB = GPT2_KBLOCK;
    const size_t part_c = (C + KB - 1) / KB * (F > 3 * C ? F : 3 * C), part_f = (F + KB - 1) / KB * C;
    const size_t part_rows = max_tokens < DECODE_ROWS ? (size_t)max_tokens : DECODE_ROWS;
    s->part = mem_aligned((part_c > part_f ? part_c : part_f) * part_rows * sizeof(float));
    if (!s->head || !s->part || !s->xq || !s->xd || !s->pool || !s->k_cache || !s->v_cache || !s->x || !s->h || !s->qkv || !s->att || !s->fc || !s->scores ||
        !s->tmp) {
        gpt2_state_free(s);
        return err_set(e, GPT2C_ERR_NOMEM, "out of memory for a KV cache of %d x %d positions (%.1f MiB)", n_slots,
                       n_pos, 2.0 * (double)cache * (double)esz / 1048576.0);
    }
    return GPT2C_OK;
}

void gpt2_state_free(gpt2_state *s) {
    pool_free(s->pool);
    free(s->k_cache);
    free(s->v_cache);
    free(s->x);
    free(s->h);
    free(s->qkv);
    free(s->att);
    free(s->fc);
    free(s->scores);
    free(s->tmp);
    free(s->xq);
    free(s->xd);
    free(s->part);
    free(s->head);
    memset(s, 0, sizeof *s);
}

gpt2c_status gpt2_state_copy_slots(gpt2_state *s, const gpt2c_model *m, const int *src, const int *dst, int n,
                                   int n_pos, gpt2_err *e) {
    /* Byte sizes: the cache holds F32 or F16 elements. The first n_pos
     * positions of a slot are, in each layer, block and head, one piece of a
     * run: those pieces are copied, no more (beam search copies every step). */
    const gpt2_config *c = &m->cfg;
    const size_t esz = weight_type_size(m->kv_type), hd = (size_t)(c->n_embd / c->n_head);
    unsigned char *tmp = malloc((size_t)n * kv_run(s->n_pos) * hd * esz);
    if (!tmp) return err_set(e, GPT2C_ERR_NOMEM, "out of memory copying the KV cache");
    for (int pass = 0; pass < 2; pass++) {
        unsigned char *cache = pass ? s->v_cache : s->k_cache;
        for (int l = 0; l < m->cfg.n_layer; l++)
            for (int p0 = 0; p0 < n_pos; p0 += GPT2_KV_BLOCK) {
                const size_t len = (size_t)(n_pos - p0 < GPT2_KV_BLOCK ? n_pos - p0 : GPT2_KV_BLOCK) * hd * esz;
                for (int kh = 0; kh < c->n_kv_head; kh++) {
                    /* A slot that keeps its own content is neither read nor written. */
                    for (int i = 0; i < n; i++)
                        if (src[i] != dst[i]) memcpy(tmp + i * len, cache + kv_index(s, c, l, src[i], kh, p0) * esz, len);
                    for (int i = 0; i < n; i++)
                        if (src[i] != dst[i]) memcpy(cache + kv_index(s, c, l, dst[i], kh, p0) * esz, tmp + i * len, len);
                }
            }
    }
    free(tmp);
    return GPT2C_OK;
}

/* ------------------------------------------------------- parallel operations
 * Each operation is split over the pool's threads by output columns (matrix
 * products), rows or (token, head) pairs; no two threads write one value, so
 * the result does not depend on the thread count. */

typedef struct par_op {
    const gpt2c_model *m;
    gpt2_state *s;
    const gpt2_batch *b;
    int op, i0, n, layer, window, unit;
    float *out;
    const float *in, *bias, *g, *beta;
    gpt2_weight w;
    int din, dout;
    float scale;
} par_op;

enum { OP_MATMUL, OP_PART, OP_REDUCE, OP_LINEAR, OP_QUANT, OP_Q8, OP_ROUND, OP_BF16, OP_ATTN, OP_ACT, OP_LN };

/* Columns [j0, j0 + n) of out = bias + part[0] + part[1] + ... (block
 * partials stride floats apart), added in block order as the tiled product
 * does. The running sums stay in a local array, in registers once
 * vectorised, instead of going through out for every block (that loop read
 * the partials at 7.5 GB/s and took 8% of f16 decode); n is REDUCE_COLS but
 * at the end of a thread's columns. */
#define REDUCE_COLS 64
static inline __attribute__((always_inline)) void reduce_n(float *restrict out, const float *restrict part,
                                                           const float *restrict bias, int blocks, size_t stride,
                                                           int j0, const int n) {
    float acc[REDUCE_COLS];
    for (int j = 0; j < n; j++) acc[j] = bias ? bias[j0 + j] : 0.0f;
    for (int b = 0; b < blocks; b++)
        for (int j = 0; j < n; j++) acc[j] += part[(size_t)b * stride + j0 + j];
    memcpy(out + j0, acc, sizeof(float) * (size_t)n);
}

static void reduce_cols(float *out, const float *part, const float *bias, int blocks, size_t stride, int j0, int j1) {
    if (j1 - j0 >= REDUCE_COLS) /* a fixed count, which the compiler vectorises */
        reduce_n(out, part, bias, blocks, stride, j0, REDUCE_COLS);
    else
        reduce_n(out, part, bias, blocks, stride, j0, j1 - j0);
}

/* [lo, hi) of 0..total for thread ith of nth, in multiples of `align`. */
static void split(int total, int align, int ith, int nth, int *lo, int *hi) {
    int chunk = (total + nth - 1) / nth;
    chunk = (chunk + align - 1) / align * align;
    *lo = ith * chunk < total ? ith * chunk : total;
    *hi = *lo + chunk < total ? *lo + chunk : total;
}

/* Thread ith's next unit of columns from the deal (pool_deal over
 * ceil(dout / unit) units): [*j0, *j1), cut short at dout; 0 when none is
 * left. */
static int take_cols(gpt2_pool *pool, int ith, int unit, int dout, int *j0, int *j1) {
    const int u = pool_take(pool, ith);
    if (u < 0) return 0;
    *j0 = u * unit;
    *j1 = *j0 + unit < dout ? *j0 + unit : dout;
    return 1;
}

/* A unit of attention (OP_ATTN) is one head hh of a run of nq tokens from
 * batch index i: tokens of one sequence at consecutive positions (a
 * prompt's: the kernel reads each key once for several). With multi-query
 * attention a lone token's unit is instead up to ATTN_HEADS heads hh.. that
 * share a key/value head, which the kernel reads once for all of them. The
 * units are numbered token run by token run, head by head, and dealt out in
 * turn, so that every thread gets early and late positions alike (halves
 * of a prompt gave the second thread three times the work). */
#define ATTN_HEADS 4
typedef struct attn_unit {
    int i, nq, hh, nh, unit;
} attn_unit;

/* Moves u on to thread ith's next unit (u starts as {0, 0, H - 1, 1, -1});
 * 0 when there is none. */
static int attn_next(const par_op *p, attn_unit *u, int H, int ith, int nth) {
    const gpt2_batch *b = p->b;
    const int group = H / p->m->cfg.n_kv_head; /* query heads a key/value head serves */
    for (;;) {
        u->unit++;
        if ((u->hh += u->nh) == H) {
            u->i += u->nq;
            if (u->i >= p->n) return 0;
            const int tok = p->i0 + u->i;
            u->nq = 1;
            while (u->nq < ATTN_RUN && u->i + u->nq < p->n && b->slot[tok + u->nq] == b->slot[tok] &&
                   b->pos[tok + u->nq] == b->pos[tok] + u->nq)
                u->nq++;
            u->hh = 0;
        }
        u->nh = 1; /* ALiBi gives each head its own bias: no sharing then */
        if (u->nq == 1 && group > 1 && !p->m->alibi)
            u->nh = group - u->hh % group < ATTN_HEADS ? group - u->hh % group : ATTN_HEADS;
        if (u->unit % nth == ith) return 1;
    }
}

/* The byte where unit u's keys start in the K cache, and its values in the
 * V cache: its key/value head's run in each block of positions of its
 * sequence's slot in this layer, a block (run x gpt2_kv_width) apart. */
static size_t attn_at(const par_op *p, const attn_unit *u, size_t esz) {
    const gpt2_config *c = &p->m->cfg;
    return kv_index(p->s, c, p->layer, p->b->slot[p->i0 + u->i], u->hh / (c->n_head / c->n_kv_head), 0) * esz;
}

/* Fetches into L2 the start of the keys and values that unit u reads (up to
 * ATTN_PREFETCH bytes of each, within its first run of positions) while the
 * unit before it is computed. In decode each unit is one query over its
 * sequence's cache: two short streams from memory, which the hardware
 * prefetcher barely starts on before they end (one thread, 65 positions in
 * f32, 1152 units cycled: 3.2-4.0 us a unit, 2.4 with the next unit
 * fetched whole). In the model, per-op timers, three alternating runs:
 * gpt2 q8 batch 8, 128 steps from a one-token prompt, attention 222-256 ->
 * 200-212 ms (decode 840-890 -> 866-910 tokens/s); after a 512-token
 * prompt, batch 1 119-126 -> 112-121 ms, batch 8 1005-1022 -> 943-1007.
 * 16 KiB ahead gained less and slowed the long prompt's batch 1 (133-176
 * ms); whole units up to 32 KiB gained nothing. */
static void attn_prefetch(const par_op *p, const attn_unit *u, int C, int H, size_t esz) {
    const size_t at = attn_at(p, u, esz);
    const size_t positions = (size_t)(p->b->pos[p->i0 + u->i] + u->nq), run = kv_run(p->s->n_pos);
    size_t len = (positions < run ? positions : run) * (size_t)(C / H) * esz;
    if (len > ATTN_PREFETCH) len = ATTN_PREFETCH;
    for (size_t o = 0; o < len; o += 64) {
        __builtin_prefetch((const unsigned char *)p->s->k_cache + at + o, 0, 1);
        __builtin_prefetch((const unsigned char *)p->s->v_cache + at + o, 0, 1);
    }
}

static void par_run(void *ctx, int ith, int nth) {
    par_op *p = ctx;
    const gpt2_kernels *k = p->m->k;
    const gpt2_config *c = &p->m->cfg;
    int lo, hi;
    switch (p->op) {
    case OP_MATMUL: /* prefill: MATMUL_UNITS units a thread, its own run first (pool_deal) */
        while (take_cols(p->s->pool, ith, p->unit, p->dout, &lo, &hi))
            k->matmul(p->out, p->in, p->w, p->bias, p->n, p->din, p->dout, lo, hi);
        break;
    case OP_PART: /* decode: whole k blocks, each thread's run of contiguous rows first (pool_deal) */
        for (int b; (b = pool_take(p->s->pool, ith)) >= 0;)
            k->matmul_part(p->s->part, p->in, p->w, p->n, p->din, p->dout, b, b + 1);
        break;
    case OP_REDUCE: { /* out = bias + the block partials, in block order */
        int blocks = (p->din + GPT2_KBLOCK - 1) / GPT2_KBLOCK;
        split(p->dout, 16, ith, nth, &lo, &hi);
        for (int i = 0; i < p->n; i++)
            for (int j0 = lo; j0 < hi; j0 += REDUCE_COLS)
                reduce_cols(p->out + (size_t)i * p->dout, p->s->part + (size_t)i * p->dout, p->bias, blocks,
                            (size_t)p->n * p->dout, j0, hi);
        break;
    }
    case OP_LINEAR: /* a stored (dout, din) matrix, the LM head among them; units of p->unit columns */
        while (take_cols(p->s->pool, ith, p->unit, p->dout, &lo, &hi)) {
            k->matmul_t(p->out, p->in, p->w, p->n, p->din, p->dout, lo, hi);
            for (int i = 0; p->bias && i < p->n; i++)
                for (int j = lo; j < hi; j++) p->out[(size_t)i * p->dout + j] += p->bias[j];
        }
        break;
    case OP_QUANT: /* a Q8 product's input rows */
        split(p->n, 1, ith, nth, &lo, &hi);
        if (lo < hi)
            q8_quantize(p->s->xq + (size_t)lo * p->din, p->s->xd + (size_t)lo * (p->din / GPT2_Q8_BLOCK),
                        p->in + (size_t)lo * p->din, hi - lo, p->din);
        break;
    case OP_Q8: /* units of Q8_UNIT columns, whose storage is contiguous */
        while (take_cols(p->s->pool, ith, p->unit, p->dout, &lo, &hi))
            k->matmul_q8(p->out, p->s->xq, p->s->xd, p->w, p->bias, p->n, p->din, p->dout, lo, hi);
        break;
    case OP_ROUND: /* a BF16P product's input rows, as bf16 pairs in xq's memory */
        split(p->n, 1, ith, nth, &lo, &hi);
        if (lo < hi)
            x_bf16_pairs((uint32_t *)(void *)p->s->xq + (size_t)lo * (p->din / 2), p->in + (size_t)lo * p->din,
                         (size_t)(hi - lo) * p->din);
        break;
    case OP_BF16: /* units of BF16_UNIT columns (decode) or prefill's (prefill_unit) */
        while (take_cols(p->s->pool, ith, p->unit, p->dout, &lo, &hi))
            k->matmul_bf16(p->out, (const uint32_t *)(void *)p->s->xq, p->w, p->bias, p->n, p->din, p->dout, lo, hi);
        break;
    case OP_ACT:
        split(p->dout, 16, ith, nth, &lo, &hi);
        if (lo < hi) k->activation(p->out + lo, (size_t)(hi - lo), c->act);
        break;
    case OP_LN:
        split(p->n, 1, ith, nth, &lo, &hi);
        if (lo < hi)
            k->layernorm(p->out + (size_t)lo * p->din, p->in + (size_t)lo * p->din, p->g, p->beta, hi - lo, p->din,
                         c->eps);
        break;
    case OP_ATTN: {
        const int C = c->n_embd, H = c->n_head, hd = C / H;
        const gpt2_wtype kv = p->m->kv_type;
        const size_t esz = weight_type_size(kv);
        const unsigned char *kc = p->s->k_cache, *vc = p->s->v_cache;
        const gpt2_batch *b = p->b;
        float *scores = p->s->scores + (size_t)ith * ATTN_RUN * p->s->n_pos;
        attn_unit next = {0, 0, H - 1, 1, -1};
        for (int more = attn_next(p, &next, H, ith, nth); more;) {
            const attn_unit u = next;
            if ((more = attn_next(p, &next, H, ith, nth))) attn_prefetch(p, &next, C, H, esz);
            const size_t at = attn_at(p, &u, esz);
            const gpt2_weight kw = {kc + at, kv, NULL, 0, 0, 0}, vw = {vc + at, kv, NULL, 0, 0, 0};
            /* A run of a sequence's tokens (queries 3C apart, step 1), or
             * heads of one token (hd apart, step 0). */
            const size_t qs = u.nh > 1 ? (size_t)hd : (size_t)3 * C, os = u.nh > 1 ? (size_t)hd : (size_t)C;
            const gpt2_attn_args a = {b->pos[p->i0 + u.i] + 1, u.nh > 1 ? 0 : 1, p->window, hd,
                                      kv_run(p->s->n_pos) * (size_t)gpt2_kv_width(c), p->scale,
                                      p->m->alibi ? p->m->alibi[u.hh] : 0.0f};
            k->attention(p->s->att + (size_t)u.i * C + u.hh * hd, os, p->s->qkv + (size_t)u.i * 3 * C + u.hh * hd, qs,
                         u.nh > 1 ? u.nh : u.nq, kw, vw, &a, scores);
        }
        break;
    }
    }
}

/* Deals p's columns out in units of `unit` (take_cols). */
static void deal_cols(gpt2_state *s, par_op *p, int unit) {
    p->unit = unit;
    pool_deal(s->pool, (p->dout + unit - 1) / unit);
}

/* Prefill's unit for the tiled products: MATMUL_UNITS a thread, of whole
 * vectors (16 columns). */
static int prefill_unit(const gpt2_state *s, int dout) {
    const int nth = pool_size(s->pool), per = (dout + MATMUL_UNITS * nth - 1) / (MATMUL_UNITS * nth);
    return (per + 15) / 16 * 16;
}

/* Decode, one row or a batch of up to DECODE_ROWS, splits the weight rows
 * (dealt by pool_deal: a run of k blocks a thread, then what the others
 * leave), so that each thread streams contiguous memory once for all rows;
 * more rows (prefill) split the columns and tile, which reuses each weight
 * from cache for many rows. The arithmetic is the same either way (kernels.h). Q8
 * quantises the input rows, then splits the columns, whose storage streams
 * in either case; BF16P (--compute bf16) rounds them, then splits the
 * columns too: its sums are single chains, the same whichever way the
 * columns go, and the kernel reads a few rows' weights once. */
void fwd_linear(const gpt2c_model *m, gpt2_state *s, float *out, const float *in, gpt2_weight w, const float *bias,
                int n, int din, int dout) {
    if (n == 0) return;
    const int part = n <= DECODE_ROWS;
    par_op p = {.m = m, .s = s, .op = part ? OP_PART : OP_MATMUL, .out = out, .in = in, .w = w, .bias = bias, .n = n,
                .din = din, .dout = dout};
    if (w.type == WT_Q8) {
        if (n == 1) q8_quantize(s->xq, s->xd, in, 1, din); /* too little to share out */
        else p.op = OP_QUANT, pool_run(s->pool, par_run, &p);
        p.op = OP_Q8;
        deal_cols(s, &p, Q8_UNIT);
        pool_run(s->pool, par_run, &p);
        return;
    }
    if (w.type == WT_BF16P) { /* --compute bf16: the rows rounded, then the columns split */
        if (n == 1) x_bf16_pairs((uint32_t *)(void *)s->xq, in, (size_t)din);
        else p.op = OP_ROUND, pool_run(s->pool, par_run, &p);
        p.op = OP_BF16;
        deal_cols(s, &p, part ? BF16_UNIT : prefill_unit(s, dout));
        pool_run(s->pool, par_run, &p);
        return;
    }
    if (w.linear) { /* nn.Linear's (dout, din): rows of W are the dot products, which stream as the head's do */
        p.op = OP_LINEAR;
        deal_cols(s, &p, LINEAR_UNIT);
        pool_run(s->pool, par_run, &p);
        return;
    }
    if (part) pool_deal(s->pool, (din + GPT2_KBLOCK - 1) / GPT2_KBLOCK);
    else deal_cols(s, &p, prefill_unit(s, dout));
    pool_run(s->pool, par_run, &p);
    if (part) {
        p.op = OP_REDUCE;
        pool_run(s->pool, par_run, &p);
    }
}

void fwd_layernorm(const gpt2c_model *m, gpt2_state *s, float *out, const float *in, const float *g, const float *bb,
                   int n, int d) {
    par_op p = {.m = m, .s = s, .op = OP_LN, .out = out, .in = in, .g = g, .beta = bb, .n = n, .din = d};
    pool_run(s->pool, par_run, &p);
}

void fwd_act(const gpt2c_model *m, gpt2_state *s, float *x, size_t count) {
    par_op p = {.m = m, .s = s, .op = OP_ACT, .out = x, .dout = (int)count};
    pool_run(s->pool, par_run, &p);
}

void fwd_add(float *x, const float *y, size_t count) {
    for (size_t j = 0; j < count; j++) x[j] += y[j];
}

void fwd_embed(const gpt2c_model *m, const gpt2_batch *b, int i0, int n, int E, float *x) {
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * E;
        const size_t tok = (size_t)b->token[i0 + i];
        if (weight_holds_w(m->wte)) /* held as the head's (E, V) product matrix: the token's column */
            for (int j = 0; j < E; j++) weight_to_f32(m->wte, (size_t)j * (size_t)m->cfg.n_vocab + tok, 1, xi + j);
        else weight_to_f32(m->wte, tok * E, (size_t)E, xi);
    }
}

void fwd_add_positions(gpt2_state *s, gpt2_weight w, const gpt2_batch *b, int i0, int n, int C, int offset, float *x) {
    for (int i = 0; i < n; i++) {
        weight_to_f32(w, (size_t)(b->pos[i0 + i] + offset) * C, (size_t)C, s->tmp);
        fwd_add(x + (size_t)i * C, s->tmp, (size_t)C);
    }
}

void fwd_qkv_separate(const gpt2c_model *m, gpt2_state *s, const gpt2_layer *L, const float *in, int n) {
    const int C = m->cfg.n_embd;
    const gpt2_weight w[3] = {L->q_w, L->k_w, L->v_w};
    const float *bias[3] = {L->q_b, L->k_b, L->v_b};
    for (int part = 0; part < 3; part++) { /* each product into s->att (n, C), then its columns of qkv */
        fwd_linear(m, s, s->att, in, w[part], bias[part], n, C, C);
        for (int i = 0; i < n; i++)
            memcpy(s->qkv + (size_t)i * 3 * C + (size_t)part * C, s->att + (size_t)i * C, (size_t)C * sizeof(float));
    }
}

void fwd_mlp(const gpt2c_model *m, gpt2_state *s, const gpt2_layer *L, const float *in, float *out, int n) {
    const int C = m->cfg.n_embd, F = m->cfg.n_inner;
    fwd_linear(m, s, s->fc, in, L->fc_w, L->fc_b, n, C, F);
    fwd_act(m, s, s->fc, (size_t)n * F);
    fwd_linear(m, s, out, s->fc, L->proj_w, L->proj_b, n, F, C);
}

void fwd_final(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, float *logits) {
    const int C = m->cfg.n_embd;
    const int r = fwd_select(b, i0, n, s->x, C, s->att);
    fwd_layernorm(m, s, s->h, s->att, m->lnf_g, m->lnf_b, r, C);
    fwd_head(m, s, b, i0, s->h, r, logits);
}

void fwd_unfuse_heads(gpt2_state *s, int n, int C, int H) {
    const int hd = C / H;
    for (int i = 0; i < n; i++) {
        float *row = s->qkv + (size_t)i * 3 * C; // (H, 3, hd) -> (3, H, hd)
        memcpy(s->tmp, row, (size_t)3 * C * sizeof(float));
        for (int hh = 0; hh < H; hh++)
            for (int part = 0; part < 3; part++)
                memcpy(row + (size_t)part * C + (size_t)hh * hd, s->tmp + ((size_t)hh * 3 + (size_t)part) * hd,
                       (size_t)hd * sizeof(float));
    }
}

/* Rotary position embedding (modeling_gpt_neox.py's RotaryEmbedding and
 * rotate_half; modeling_codegen.py's create_sinusoidal_positions and
 * rotate_every_two): with r = n_rot dimensions, the angle of pair i at
 * position p is p * inv_freq[i], inv_freq[i] = 1 / base^(2i / r), both in
 * float32 as torch computes them, and the pair (a, b) becomes
 * (a cos - b sin, b cos + a sin). The pair is dimensions (i, i + r / 2) in
 * the rotate-half form (GPT-NeoX), (2i, 2i + 1) in the interleaved one
 * (GPT-J, CodeGen). */
void fwd_rope(float *qkv, int n, const int *pos, int T, int C, int hd, int n_q, int n_k, int n_rot, float base,
              int interleaved, int inverse) {
    const int half = n_rot / 2;
    for (int j = 0; j < half; j++) {
        const float inv_freq = 1.0f / powf(base, (float)(2 * j) / (float)n_rot);
        const int ja = interleaved ? 2 * j : j, jb = interleaved ? 2 * j + 1 : j + half;
        for (int i = 0; i < n; i++) {
            const float angle = (float)(pos ? pos[i] : i % T) * inv_freq, cs = cosf(angle);
            const float sn = inverse ? -sinf(angle) : sinf(angle);
            for (int part = 0; part < 2; part++) /* q's heads, then k's */
                for (int hh = 0; hh < (part ? n_k : n_q); hh++) {
                    float *x = qkv + (size_t)i * 3 * C + (size_t)part * C + (size_t)hh * hd;
                    const float xa = x[ja], xb = x[jb];
                    x[ja] = xa * cs - xb * sn;
                    x[jb] = xb * cs + xa * sn;
                }
        }
    }
}

void fwd_rotary(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, int interleaved) {
    const gpt2_config *c = &m->cfg;
    fwd_rope(s->qkv, n, b->pos + i0, 0, c->n_embd, c->n_embd / c->n_head, c->n_head, c->n_kv_head, c->n_rot,
             c->rope_base, interleaved, 0);
}

void fwd_attention(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, int n, int l, int window,
                   float scale_div) {
    const gpt2_config *c = &m->cfg;
    const int C = c->n_embd, hd = C / c->n_head;
    for (int i = 0; i < n; i++)
        for (int kh = 0; kh < c->n_kv_head; kh++) {
            const size_t at = kv_index(s, c, l, b->slot[i0 + i], kh, b->pos[i0 + i]);
            const float *ki = s->qkv + (size_t)i * 3 * C + C + kh * hd, *vi = ki + C; // (hd,) each
            if (m->kv_type == WT_F16) { /* rounded to nearest even, as the attention will read them */
                uint16_t *kh = (uint16_t *)s->k_cache + at, *vh = (uint16_t *)s->v_cache + at;
                for (int j = 0; j < hd; j++) kh[j] = f32_to_f16(ki[j]), vh[j] = f32_to_f16(vi[j]);
            } else {
                memcpy((float *)s->k_cache + at, ki, (size_t)hd * sizeof(float));
                memcpy((float *)s->v_cache + at, vi, (size_t)hd * sizeof(float));
            }
        }
    par_op p = {.m = m, .s = s, .b = b, .op = OP_ATTN, .i0 = i0, .n = n, .layer = l, .window = window,
                .scale = scale_div};
    pool_run(s->pool, par_run, &p);
}

int fwd_select(const gpt2_batch *b, int i0, int n, const float *x, int d, float *out) {
    int r = 0;
    for (int i = 0; i < n; i++)
        if (b->out_row && b->out_row[i0 + i] >= 0)
            memcpy(out + (size_t)r++ * d, x + (size_t)i * d, (size_t)d * sizeof(float));
    return r;
}

void fwd_head(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, int i0, const float *h, int r,
              float *logits) {
    /* The head is read once per group of up to head_rows tokens (batched
     * decode selects one token per sequence); each group lands in s->head
     * and its rows are copied to where they were asked for. */
    const int E = m->cfg.n_proj;
    const size_t V = (size_t)m->cfg.n_vocab;
    for (int g0 = 0, i = 0; g0 < r; g0 += s->head_rows) {
        int ng = r - g0 < s->head_rows ? r - g0 : s->head_rows;
        if (weight_holds_w(m->lm_head)) { /* a product like the others */
            fwd_linear(m, s, s->head, h + (size_t)g0 * E, m->lm_head, m->lm_head_b, ng, E, m->cfg.n_vocab);
        } else {
            par_op ph = {.m = m, .s = s, .op = OP_LINEAR, .out = s->head, .in = h + (size_t)g0 * E, .w = m->lm_head,
                         .bias = m->lm_head_b, .n = ng, .din = E, .dout = m->cfg.n_vocab};
            deal_cols(s, &ph, HEAD_UNIT);
            pool_run(s->pool, par_run, &ph);
        }
        for (int done = 0; done < ng; i++) {
            int row = b->out_row ? b->out_row[i0 + i] : -1;
            if (row < 0) continue;
            memcpy(logits + (size_t)row * V, s->head + (size_t)done * V, V * sizeof(float));
            done++;
        }
    }
}

gpt2c_status gpt2_forward(const gpt2c_model *m, gpt2_state *s, const gpt2_batch *b, float *logits, gpt2_err *e) {
    const gpt2_config *c = &m->cfg;
    for (int i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= c->n_vocab)
            return err_set(e, GPT2C_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)", b->token[i],
                           c->n_vocab - 1);
        if (b->pos[i] < 0 || b->pos[i] >= s->n_pos)
            return err_set(e, GPT2C_ERR_CONTEXT, "position %d is beyond the context of %d", b->pos[i], s->n_pos);
        if (b->slot[i] < 0 || b->slot[i] >= s->n_slots)
            return err_set(e, GPT2C_ERR_INVALID, "sequence slot %d does not exist", b->slot[i]);
    }
    /* Each batch size is one kind of epoch for the pool, which keeps its
     * threads or runs alone, whichever is faster on this machine now. */
    pool_epoch_begin(s->pool, b->n);
    for (int i0 = 0; i0 < b->n; i0 += s->max_tokens) {
        int n = b->n - i0 < s->max_tokens ? b->n - i0 : s->max_tokens;
        m->arch->forward(m, s, b, i0, n, logits);
    }
    pool_epoch_end(s->pool);
    return GPT2C_OK;
}
