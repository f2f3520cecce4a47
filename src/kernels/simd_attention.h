/* simd_attention.h -- attention over the KV cache for the kernels written
 * over vector macros: a part of simd_impl.h, which includes it once per
 * instruction set (VW, the vector operations, vloadw, VREDUCE_EACH and
 * vexp defined there). */

/* ---------------------------------------------------------------- attention */

/* Queries of one head that share a pass over the keys and values (a
 * prompt's): each key and value is read once for all of them, and their
 * sums stay in registers, ATTN_HV vectors a query for GPT-2's head size of
 * 64, at most 16 registers in all. With the keys in cache, one thread:
 * 7.8 ns a query and key before (one query, one key at a time, the output
 * sums through memory), 4.9 for one query now, 3.3 for four. */
#define ATTN_HV (64 / VW)
#define ATTN_QG (4 * ATTN_HV <= 16 ? 4 : 1)

/* Positions 0..15, the lanes of a group of keys (ALiBi's bias grows with
 * the position). */
static const float ATTN_IOTA[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* Scores of QN queries (a compile-time count; rows qstride apart, held in
 * registers) against keys [u_lo, nk) in whole groups of VW (u_lo a multiple
 * of VW; the group end is returned), for GPT-2's head size:
 * score row i (srow floats apart) gets q_i . k_t / scale_div + slope * t
 * (one fused multiply-add, as the one-key path does), each key read
 * once for the QN queries. Each dot product is ATTN_HV fused multiply-adds
 * from zero and VREDUCE (the lane sums of VW keys at once), then the
 * division: the same bits as attn_typed's one-key path, however many
 * queries share the pass. */
static inline __attribute__((always_inline)) int attn_scores(float *scores, size_t srow, const float *q,
                                                             size_t qstride, const int QN, gpt2_weight k,
                                                             gpt2_wtype t, int u_lo, int nk, size_t stride,
                                                             float scale_div, float slope) {
    const VEC vdiv = VSET1(scale_div), vslope = VSET1(slope), iota = VLOAD(ATTN_IOTA);
    VEC qv[ATTN_QG][ATTN_HV], part[ATTN_QG][VW];
    UNROLL
    for (int i = 0; i < QN; i++)
        UNROLL
        for (int c = 0; c < ATTN_HV; c++) qv[i][c] = VLOAD(q + (size_t)i * qstride + c * VW);
    int u0 = u_lo;
    for (; u0 + VW <= nk; u0 += VW) {
        for (int j = 0; j < VW; j++) {
            const size_t kt = kv_offset(u0 + j, ATTN_HV * VW, stride);
            VEC acc[ATTN_QG];
            UNROLL
            for (int i = 0; i < QN; i++) acc[i] = VZERO();
            UNROLL
            for (int c = 0; c < ATTN_HV; c++) {
                const VEC kd = vloadw(k, kt + (size_t)c * VW, t);
                UNROLL
                for (int i = 0; i < QN; i++) acc[i] = VFMA(qv[i][c], kd, acc[i]);
            }
            UNROLL
            for (int i = 0; i < QN; i++) part[i][j] = acc[i];
        }
        const VEC vpos = VADD(VSET1((float)u0), iota);
        UNROLL
        for (int i = 0; i < QN; i++)
            VSTORE(scores + (size_t)i * srow + u0, VFMA(vslope, vpos, VDIV(VREDUCE_EACH(part[i]), vdiv)));
    }
    return u0;
}

/* Outputs of QN queries (a compile-time count): query i attends to
 * positions lo <= t < T + i * step with probabilities scores[i * srow + t]
 * (zero below its own first position); the sums run over t in order
 * from lo, in registers, the values of positions below T read once for all
 * QN. A zero probability adds +0 to a sum that starts at +0, so the bits
 * are those of the query alone. */
static inline __attribute__((always_inline)) void attn_values(float *out, size_t ostride, const float *scores,
                                                              size_t srow, const int QN,
                                                              gpt2_weight v, gpt2_wtype t, int lo, int T,
                                                              int step, size_t stride) {
    VEC acc[ATTN_QG][ATTN_HV];
    UNROLL
    for (int i = 0; i < QN; i++)
        UNROLL
        for (int c = 0; c < ATTN_HV; c++) acc[i][c] = VZERO();
    for (int u = lo; u < T; u++) {
        const size_t vt = kv_offset(u, ATTN_HV * VW, stride);
        VEC vv[ATTN_HV];
        UNROLL
        for (int c = 0; c < ATTN_HV; c++) vv[c] = vloadw(v, vt + (size_t)c * VW, t);
        UNROLL
        for (int i = 0; i < QN; i++) {
            const VEC vp = VSET1(scores[(size_t)i * srow + u]);
            UNROLL
            for (int c = 0; c < ATTN_HV; c++) acc[i][c] = VFMA(vp, vv[c], acc[i][c]);
        }
    }
    UNROLL
    for (int i = 0; i < QN; i++) {
        for (int u = T; u < T + i * step; u++) { /* the positions only the later queries see */
            const size_t vt = kv_offset(u, ATTN_HV * VW, stride);
            const VEC vp = VSET1(scores[(size_t)i * srow + u]);
            UNROLL
            for (int c = 0; c < ATTN_HV; c++) acc[i][c] = VFMA(vp, vloadw(v, vt + (size_t)c * VW, t), acc[i][c]);
        }
        UNROLL
        for (int c = 0; c < ATTN_HV; c++) VSTORE(out + (size_t)i * ostride + c * VW, acc[i][c]);
    }
}

/* ATTN_QG queries, or one, query i seeing positions below T + i * step:
 * the scores of all against keys [lo_0, T + (nq - 1) * step) (a later
 * query's keys are already in the cache; an earlier query's row ignores
 * them), then each row's softmax over its own positions [lo_i, T + i *
 * step), then the weighted values. */
static inline __attribute__((always_inline)) void attn_typed(float *out, size_t ostride, const float *q,
                                                             size_t qstride, int nq, gpt2_weight k, gpt2_weight v,
                                                             gpt2_wtype t, int T, int step, int window, int hd,
                                                             size_t stride, float scale_div, float slope,
                                                             float *scores) {
    const int dv = hd / VW * VW, nk = T + (nq - 1) * step, lo = attn_first(T, window);
    const size_t srow = (size_t)nk;
    int u0 = lo / VW * VW;
    if (hd == ATTN_HV * VW) {
        if (nq == ATTN_QG) u0 = attn_scores(scores, srow, q, qstride, ATTN_QG, k, t, u0, nk, stride, scale_div, slope);
        else u0 = attn_scores(scores, srow, q, qstride, 1, k, t, u0, nk, stride, scale_div, slope);
    }
    for (int i = 0; i < nq; i++) {
        const float *qi = q + (size_t)i * qstride;
        float *sc = scores + (size_t)i * srow;
        const int Ti = T + i * step, lo_i = attn_first(Ti, window);
        for (int u = u0 > lo_i ? u0 : lo_i; u < Ti; u++) { /* keys left after whole groups, one by one */
            const size_t kt = kv_offset(u, hd, stride);
            VEC acc = VZERO();
            for (int d = 0; d < dv; d += VW) acc = VFMA(VLOAD(qi + d), vloadw(k, kt + d, t), acc);
            float s = VREDUCE(acc);
            for (int d = dv; d < hd; d++) s = fmaf(qi[d], loadw1(k, kt + d, t), s);
            sc[u] = fmaf(slope, (float)u, s / scale_div);
        }
        /* The softmax over positions [lo_i, Ti): the maximum (a NaN score
         * is passed over), then the exponentials in groups of VW and their
         * sum; the positions of the group's window below lo_i get zero. */
        VEC vmax = VSET1(-INFINITY);
        int u = lo_i;
        for (; u + VW <= Ti; u += VW) vmax = VMAX(VLOAD(sc + u), vmax);
        float lanes[VW], mx = -INFINITY;
        VSTORE(lanes, vmax);
        for (int j = 0; j < VW; j++) mx = lanes[j] > mx ? lanes[j] : mx;
        for (; u < Ti; u++) mx = sc[u] > mx ? sc[u] : mx;
        const VEC vmx = VSET1(mx);
        VEC vs = VZERO();
        for (u = lo; u < lo_i; u++) sc[u] = 0.0f;
        for (u = lo_i; u + VW <= Ti; u += VW) {
            VEC e = vexp(VSUB(VLOAD(sc + u), vmx));
            VSTORE(sc + u, e);
            vs = VADD(vs, e);
        }
        float sum = VREDUCE(vs);
        for (; u < Ti; u++) {
            sc[u] = expf(sc[u] - mx);
            sum += sc[u];
        }
        /* The probabilities, exponential x (1 / sum), in place: the values'
         * pass then broadcasts them from memory (a load) rather than
         * multiplying in its loop, where the product took a slot of the
         * FMA units for every position and query (perf: the pass is 38% of
         * attention at 1023 tokens). The same products, the same bits. */
        const float inv = 1.0f / sum;
        const VEC vinv = VSET1(inv);
        for (u = lo_i; u + VW <= Ti; u += VW) VSTORE(sc + u, VMUL(VLOAD(sc + u), vinv));
        for (; u < Ti; u++) sc[u] *= inv;
    }
    if (hd == ATTN_HV * VW) {
        if (nq == ATTN_QG) attn_values(out, ostride, scores, srow, ATTN_QG, v, t, lo, T, step, stride);
        else attn_values(out, ostride, scores, srow, 1, v, t, lo, T, step, stride);
        return;
    }
    for (int i = 0; i < nq; i++) { /* other head sizes: the sums through memory */
        float *o = out + (size_t)i * ostride;
        for (int d = 0; d < hd; d++) o[d] = 0.0f;
        for (int u = attn_first(T + i * step, window); u < T + i * step; u++) {
            const VEC vp = VSET1(scores[(size_t)i * srow + u]);
            const size_t vt = kv_offset(u, hd, stride);
            for (int d = 0; d < dv; d += VW) VSTORE(o + d, VFMA(vp, vloadw(v, vt + d, t), VLOAD(o + d)));
            for (int d = dv; d < hd; d++) o[d] = fmaf(scores[(size_t)i * srow + u], loadw1(v, vt + d, t), o[d]);
        }
    }
}

/* The KV cache is F32 or F16 (k and v alike). Queries go in groups of
 * ATTN_QG and the rest one by one: the unrolled code for every group size
 * from 1 to 4 took clang with the sanitizers 245 s to compile (116 s with
 * two), for the few queries at the end of a prompt. */
void FN(attention)(float *out, size_t ostride, const float *q, size_t qstride, int nq, gpt2_weight k,
                   gpt2_weight v, const gpt2_attn_args *a, float *scores) {
    for (int i = 0; i < nq;) {
        const int n = nq - i >= ATTN_QG ? ATTN_QG : 1, T = a->T + i * a->step;
        float *o = out + (size_t)i * ostride;
        const float *qi = q + (size_t)i * qstride;
        if (k.type == WT_F16)
            attn_typed(o, ostride, qi, qstride, n, k, v, WT_F16, T, a->step, a->window, a->hd, a->stride,
                       a->scale_div, a->slope, scores);
        else attn_typed(o, ostride, qi, qstride, n, k, v, WT_F32, T, a->step, a->window, a->hd, a->stride,
                        a->scale_div, a->slope, scores);
        i += n;
    }
}
