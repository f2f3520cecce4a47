/* logits.c -- see logits.h. Each function follows the transformers class of
 * the same role; where transformers' wording matters (ties, the token that
 * crosses top-p) the comment says which rule is kept. */
#include "logits.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void logits_repetition_penalty(float *scores, int n_vocab, const int32_t *ids, int n_ids, float penalty,
                               unsigned char *seen) {
    if (penalty == 1.0f) return;
    for (int i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (id < 0 || id >= n_vocab || seen[id]) continue;
        seen[id] = 1;
        scores[id] = scores[id] > 0 ? scores[id] / penalty : scores[id] * penalty;
    }
    for (int i = 0; i < n_ids; i++)
        if (ids[i] >= 0 && ids[i] < n_vocab) seen[ids[i]] = 0;
}

void logits_openai_penalties(float *scores, int n_vocab, const int32_t *ids, int n_ids, float presence,
                             float frequency, int *counts) {
    if (presence == 0.0f && frequency == 0.0f) return;
    for (int i = 0; i < n_ids; i++)
        if (ids[i] >= 0 && ids[i] < n_vocab) counts[ids[i]]++;
    for (int i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (id < 0 || id >= n_vocab || counts[id] == 0) continue;
        scores[id] -= (float)counts[id] * frequency + presence;
        counts[id] = 0; /* once per distinct id; this also leaves counts zeroed */
    }
}

void logits_no_repeat_ngram(float *scores, int n_vocab, const int32_t *ids, int n_ids, int ngram) {
    /* transformers bans nothing until cur_len + 1 >= ngram. */
    if (ngram <= 0 || n_ids + 1 < ngram) return;
    const int32_t *tail = ids + n_ids - (ngram - 1); /* the n-1 tokens the next one would extend */
    for (int start = 0; start + ngram <= n_ids; start++) {
        if (ngram > 1 && memcmp(ids + start, tail, (size_t)(ngram - 1) * sizeof *ids) != 0) continue;
        int banned = ids[start + ngram - 1];
        if (banned >= 0 && banned < n_vocab) scores[banned] = -INFINITY;
    }
}

void logits_bad_words(float *scores, int n_vocab, const int32_t *ids, int n_ids, const int32_t *const *words,
                      const int *word_lens, int n_words) {
    for (int w = 0; w < n_words; w++) {
        int len = word_lens[w];
        if (len < 1) continue;
        int prefix = len - 1;
        if (prefix > n_ids) continue;
        if (prefix > 0 && memcmp(ids + n_ids - prefix, words[w], (size_t)prefix * sizeof *ids) != 0) continue;
        int banned = words[w][len - 1];
        if (banned >= 0 && banned < n_vocab) scores[banned] = -INFINITY;
    }
}

void logits_suppress(float *scores, int n_vocab, const int32_t *ids, int n_ids) {
    for (int i = 0; i < n_ids; i++)
        if (ids[i] >= 0 && ids[i] < n_vocab) scores[ids[i]] = -INFINITY;
}

void logits_temperature(float *scores, int n, float temperature) {
    for (int i = 0; i < n; i++) scores[i] /= temperature;
}

/* The k-th largest of v[0..n) (1-based k), by quickselect; v is reordered. */
static float kth_largest(float *v, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return v[want];
    }
    return v[want];
}

void logits_top_k(float *scores, int n, int k, int min_keep, float *scratch) {
    if (k <= 0) return; /* top_k = 0 disables the warper */
    if (k < min_keep) k = min_keep;
    if (k >= n) return;
    memcpy(scratch, scores, (size_t)n * sizeof *scores);
    float threshold = kth_largest(scratch, n, k);
    for (int i = 0; i < n; i++)
        if (scores[i] < threshold) scores[i] = -INFINITY;
}

static int cmp_pair(const void *a, const void *b) {
    const logits_pair *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i - y->i; /* index order breaks ties, for reproducibility */
}

/* The finite scores as (value, index) pairs sorted ascending; returns their
 * count. Removed (-inf) scores carry no probability and play no part. */
static int finite_sorted(const float *v, int n, logits_pair *out) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) out[m++] = (logits_pair){v[i], i};
    qsort(out, (size_t)m, sizeof *out, cmp_pair);
    return m;
}

/* Removes, in ascending order, the tokens whose cumulative mass (from the
 * least probable, starting at `cum`) stays <= 1 - top_p; sorted holds the
 * m candidates ascending. */
static void top_p_remove(float *scores, const logits_pair *sorted, int m, double cum, double mx, double z, float top_p,
                         int min_keep) {
    for (int i = 0; i < m - min_keep; i++) {
        cum += exp((double)sorted[i].v - mx) / z;
        if (cum > 1.0 - (double)top_p) break;
        scores[sorted[i].i] = -INFINITY;
    }
}

void logits_top_p(float *scores, int n, float top_p, int min_keep, logits_pair *sorted) {
    if (top_p >= 1.0f) return;
    double mx = -INFINITY, z = 0.0;
    int finite = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(scores[i])) {
            finite++;
            if (scores[i] > mx) mx = scores[i];
        }
    if (finite == 0) return;
    for (int i = 0; i < n; i++)
        if (isfinite(scores[i])) z += exp((double)scores[i] - mx);
    /* Sorting the whole vocabulary for every token costs more than the rest
     * of sampling together, and the kept set is nearly always small. So:
     * take the candidates scoring at least the k-th largest (all ties
     * included, so no tie straddles the cut), and if the mass below them is
     * within 1 - top_p, all of it is removed and only the candidates need
     * sorting. Otherwise widen k once, then sort everything (flat
     * distributions, as random weights give, keep most tokens). The result is
     * the full sort's, up to the order of summing the tail's mass. */
    for (int k = 256; k < finite && k <= 4096; k *= 16) {
        float *tmp = (float *)sorted; /* scratch: n pairs hold 2n floats */
        memcpy(tmp, scores, (size_t)n * sizeof *tmp);
        float t = kth_largest(tmp, n, k);
        double tail = 0.0;
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (!isfinite(scores[i])) continue;
            if (scores[i] >= t) sorted[m++] = (logits_pair){scores[i], i};
            else tail += exp((double)scores[i] - mx);
        }
        if (tail / z > 1.0 - (double)top_p || m < min_keep) continue;
        for (int i = 0; i < n; i++)
            if (scores[i] < t) scores[i] = -INFINITY;
        qsort(sorted, (size_t)m, sizeof *sorted, cmp_pair);
        top_p_remove(scores, sorted, m, tail / z, mx, z, top_p, min_keep);
        return;
    }
    int m = finite_sorted(scores, n, sorted);
    top_p_remove(scores, sorted, m, 0.0, mx, z, top_p, min_keep);
}

void logits_typical(float *scores, int n, float mass, int min_keep, logits_pair *sorted) {
    if (mass >= 1.0f) return;
    double lse = logits_logsumexp(scores, n), ent = 0.0;
    if (!isfinite(lse)) return;
    for (int i = 0; i < n; i++)
        if (isfinite(scores[i])) ent -= (scores[i] - lse) * exp(scores[i] - lse);
    /* Rank the finite tokens by |-log p - H| ascending, then keep up to and
     * including the first at which the cumulative mass reaches `mass`. */
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(scores[i])) sorted[m++] = (logits_pair){(float)fabs(-(scores[i] - lse) - ent), i};
    qsort(sorted, (size_t)m, sizeof *sorted, cmp_pair);
    double cum = 0.0;
    int last = 0;
    while (last < m - 1) {
        cum += exp(scores[sorted[last].i] - lse);
        if (!(cum < mass)) break;
        last++;
    }
    if (last < min_keep - 1) last = min_keep - 1 < m - 1 ? min_keep - 1 : m - 1;
    for (int i = last + 1; i < m; i++)
        if (sorted[i].v > sorted[last].v) scores[sorted[i].i] = -INFINITY;
}

void logits_logprobs(const float *row, int n, int token, int k, float *chosen, int32_t *top_ids, float *top_lps) {
    double lse = logits_logsumexp(row, n);
    *chosen = (float)(row[token] - lse);
    if (k == 0) return;
    logits_top_indices(row, n, k, top_ids);
    for (int j = 0; j < k; j++) top_lps[j] = (float)(row[top_ids[j]] - lse);
}

/* The first index of the largest score, where a NaN never wins (but one at
 * index 0 is returned, as a scan from it would). The scan that keeps the
 * best index is a chain through a load per element (5% of a batch-8 decode
 * step over 50257 scores); instead the maximum is taken in 16 independent
 * lanes, which the compiler turns into vector max instructions, and then
 * found. */
#define ARGMAX_LANES 16
int logits_argmax(const float *scores, int n) {
    float lane[ARGMAX_LANES];
    for (int l = 0; l < ARGMAX_LANES; l++) lane[l] = scores[0];
    int i = 0;
    for (; i + ARGMAX_LANES <= n; i += ARGMAX_LANES)
        for (int l = 0; l < ARGMAX_LANES; l++) lane[l] = scores[i + l] > lane[l] ? scores[i + l] : lane[l];
    float mx = lane[0];
    for (int l = 1; l < ARGMAX_LANES; l++) mx = lane[l] > mx ? lane[l] : mx;
    for (; i < n; i++) mx = scores[i] > mx ? scores[i] : mx;
    for (i = 0; i < n; i++)
        if (scores[i] == mx) return i;
    return 0; /* scores[0] is NaN */
}

double logits_logsumexp(const float *scores, int n) {
    float mx = scores[logits_argmax(scores, n)];
    if (isinf(mx)) return mx;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)scores[i] - mx);
    return mx + log(s);
}

void logits_top_indices(const float *scores, int n, int k, int32_t *idx) {
    /* k is small (a handful of log-probabilities): insertion into a sorted
     * list of k is faster than sorting the vocabulary. */
    int have = 0;
    for (int i = 0; i < n; i++) {
        if (have == k && !(scores[i] > scores[idx[k - 1]])) continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && scores[i] > scores[idx[j - 1]]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

double rng_uniform(rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(out >> 11) * 0x1.0p-53;
}

int logits_sample(const float *scores, int n, rng *r) {
    int best = logits_argmax(scores, n);
    double mx = scores[best], z = 0.0;
    if (!isfinite(mx)) return best;
    for (int i = 0; i < n; i++) z += exp((double)scores[i] - mx);
    double u = rng_uniform(r) * z, cum = 0.0;
    int last = best;
    for (int i = 0; i < n; i++) {
        double p = exp((double)scores[i] - mx);
        if (p == 0.0) continue;
        cum += p;
        last = i;
        if (u < cum) return i;
    }
    return last; /* u fell in the rounding gap at the very end */
}

void logits_softmax(const float *scores, int n, float *p) {
    const int best = logits_argmax(scores, n);
    double mx = scores[best], z = 0.0;
    if (!isfinite(mx)) { /* as logits_sample: the argmax, surely */
        for (int i = 0; i < n; i++) p[i] = i == best;
        return;
    }
    for (int i = 0; i < n; i++) z += exp((double)scores[i] - mx);
    for (int i = 0; i < n; i++) p[i] = (float)(exp((double)scores[i] - mx) / z);
}

int logits_sample_probs(const float *p, int n, rng *r) {
    double z = 0.0;
    for (int i = 0; i < n; i++) z += p[i];
    double u = rng_uniform(r) * z, cum = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] == 0.0f) continue;
        cum += p[i];
        last = i;
        if (u < cum) return i;
    }
    return last; /* u fell in the rounding gap at the very end */
}
