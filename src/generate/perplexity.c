/* perplexity.c -- gpt2c_perplexity: transformers' sliding-window
 * perplexity recipe on the inference forward pass, so it runs on every
 * architecture and weight dtype (f32, f16, bf16, q8) alike. Each window's
 * tokens go through the KV cache in chunks, with logits only for the
 * chunk's target rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mem.h"
#include "../model/model.h"

#define PPL_CHUNK 64 /* tokens per forward pass: bounds the logits to 64 x V */

/* log p(target) from a row of logits: logit - log-sum-exp, in double. */
static double log_prob(const float *row, int V, int target) {
    float mx = row[0];
    for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += exp((double)row[v] - mx);
    return (double)row[target] - mx - log(sum);
}

gpt2c_status gpt2c_perplexity(gpt2c_model *m, const int32_t *ids, long n, int context, int stride, int n_threads,
                              gpt2c_perplexity_result *out) {
    if (!m) return GPT2C_ERR_INVALID;
    memset(out, 0, sizeof *out);
    const int V = m->cfg.n_vocab;
    if (context == 0) context = m->cfg.n_ctx;
    if (stride == 0) stride = context;
    if (context < 2 || context > m->cfg.n_ctx)
        return err_set(&m->err, GPT2C_ERR_INVALID, "context %d: must be in 2..%d", context, m->cfg.n_ctx);
    if (stride < 1 || stride > context)
        return err_set(&m->err, GPT2C_ERR_INVALID, "stride %d: must be in 1..%d (the context)", stride, context);
    if (n < 2) return err_set(&m->err, GPT2C_ERR_INVALID, "%ld tokens: perplexity needs at least 2", n);
    for (long i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return err_set(&m->err, GPT2C_ERR_INVALID, "token id %d at %ld is outside the vocabulary (0..%d)",
                           (int)ids[i], i, V - 1);
    gpt2_state st;
    gpt2c_status s = gpt2_state_init(&st, m, 1, context, PPL_CHUNK, n_threads, &m->err);
    if (s) return s;
    float *logits = mem_aligned((size_t)PPL_CHUNK * (size_t)V * sizeof(float));
    int pos[PPL_CHUNK], slot[PPL_CHUNK] = {0}, row[PPL_CHUNK];
    if (!logits) s = err_set(&m->err, GPT2C_ERR_NOMEM, "out of memory");
    double sum_means = 0.0;
    long prev_end = 0;
    for (long begin = 0; !s; begin += stride) {
        const long end = begin + context < n ? begin + context : n;
        /* Targets: window positions t >= first (their token is predicted by
         * position t - 1). */
        const long first = prev_end - begin > 1 ? prev_end - begin : 1;
        double nll = 0.0;
        long k = 0;
        for (long c0 = 0; c0 < end - begin && !s; c0 += PPL_CHUNK) {
            const int cn = end - begin - c0 < PPL_CHUNK ? (int)(end - begin - c0) : PPL_CHUNK;
            int rows = 0;
            for (int i = 0; i < cn; i++) {
                const long t = c0 + i; /* position in the window */
                pos[i] = (int)t;
                row[i] = t + 1 >= first && t + 1 < end - begin ? rows++ : -1;
            }
            gpt2_batch b = {cn, ids + begin + c0, pos, slot, row};
            s = gpt2_forward(m, &st, &b, logits, &m->err);
            for (int i = 0; !s && i < cn; i++)
                if (row[i] >= 0) nll -= log_prob(logits + (size_t)row[i] * V, V, ids[begin + c0 + i + 1]), k++;
        }
        if (s) break;
        if (k) { /* a last window of one token predicts nothing (transformers' recipe: a NaN loss) */
            sum_means += nll / (double)k;
            out->windows++;
            out->targets += k;
        }
        prev_end = end;
        if (end == n) break;
    }
    if (!s) {
        out->mean_nll = sum_means / (double)out->windows;
        out->perplexity = exp(out->mean_nll);
    }
    free(logits);
    gpt2_state_free(&st);
    return s;
}
