/* logits.c -- see logits.h. */
#include "logits.h"

#include <math.h>
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

int logits_argmax(const float *scores, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (scores[i] > scores[best]) best = i;
    return best;
}

double logits_logsumexp(const float *scores, int n) {
    float mx = scores[logits_argmax(scores, n)];
    if (isinf(mx)) return mx;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)scores[i] - mx);
    return mx + log(s);
}

void logits_top_k(const float *scores, int n, int k, int32_t *idx) {
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
