/* kernel_bench.c -- the tiled matrix product alone (the kernel table's
 * matmul, which prefill runs), split over threads by columns as the model
 * splits it, on weights colder than the L3 (eight copies, used in turn):
 * GFLOP/s and the share of the FMA peak measured on the same threads.
 *
 *   build/bench/kernel_bench [--threads N] [--dtype f32|f16|bf16|bf16p] [--calls N] ROWS DIN DOUT ...
 *
 * bf16p: --compute bf16's product (matmul_bf16) on rows rounded beforehand,
 * where the CPU has it.
 *
 * Each ROWS DIN DOUT triple is timed over --calls rounds (default 15) of the
 * eight copies; prints the best and the median round. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/half.h"
#include "core/mem.h"
#include "kernels/kernels.h"

#define COPIES 8

typedef struct job {
    const gpt2_kernels *k;
    int n, din, dout, nth, calls;
    gpt2_wtype t;
    float *x, *out, *bias;
    uint32_t *xb; /* bf16p: x rounded */
    void *w[COPIES];
    pthread_barrier_t bar;
    double *round_s; /* per round, written by thread 0 */
} job;

typedef struct worker {
    job *j;
    int ith;
} worker;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *run(void *arg) {
    worker *wk = arg;
    job *j = wk->j;
    /* Whole vectors of columns per thread, as forward.c's split() does. */
    int unit = (j->dout / j->nth + 15) / 16 * 16, j0 = wk->ith * unit, j1 = j0 + unit < j->dout ? j0 + unit : j->dout;
    if (j0 > j->dout) j0 = j->dout;
    for (int r = 0; r < j->calls; r++) {
        pthread_barrier_wait(&j->bar);
        double t = now_s();
        for (int c = 0; c < COPIES; c++) {
            gpt2_weight w = {j->w[c], j->t, NULL, j->din, j->dout, 0};
            if (j0 < j1 && j->t == WT_BF16P)
                j->k->matmul_bf16(j->out, j->xb, w, j->bias, j->n, j->din, j->dout, j0, j1);
            else if (j0 < j1) j->k->matmul(j->out, j->x, w, j->bias, j->n, j->din, j->dout, j0, j1);
        }
        pthread_barrier_wait(&j->bar);
        if (wk->ith == 0) j->round_s[r] = now_s() - t;
    }
    return NULL;
}

static void *probe(void *arg) {
    double *flops_per_s = arg, t = now_s();
    const gpt2_kernels *k = gpt2_kernels_select();
    double f = k->fma_probe(50000000);
    *flops_per_s = f / (now_s() - t);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int nth = 2, calls = 15, a = 1;
    gpt2_wtype t = WT_F32;
    for (; a < argc && argv[a][0] == '-'; a += 2) {
        if (a + 1 >= argc) break;
        if (!strcmp(argv[a], "--threads")) nth = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--calls")) calls = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--dtype"))
            t = !strcmp(argv[a + 1], "f16")     ? WT_F16
                : !strcmp(argv[a + 1], "bf16")  ? WT_BF16
                : !strcmp(argv[a + 1], "bf16p") ? WT_BF16P
                                                : WT_F32;
        else break;
    }
    if (nth < 1 || nth > 64 || calls < 1 || calls > 1000 || a >= argc || (argc - a) % 3) {
        fprintf(stderr, "usage: kernel_bench [--threads N] [--dtype f32|f16|bf16|bf16p] [--calls N] ROWS DIN DOUT ...\n");
        return 2;
    }
    /* The FMA peak on nth threads at once, as gpt2c bench measures it. */
    pthread_t th[64];
    double peak[64], peak_sum = 0;
    for (int i = 0; i < nth; i++) pthread_create(&th[i], NULL, probe, &peak[i]);
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL), peak_sum += peak[i];
    const gpt2_kernels *k = gpt2_kernels_select();
    if (t == WT_BF16P && !k->matmul_bf16) {
        fprintf(stderr, "kernel_bench: the %s kernels have no bf16 product (AVX512_BF16)\n", k->name);
        return 2;
    }
    printf("%s kernels, %d thread%s, %s weights, FMA peak %.1f GFLOP/s\n", k->name, nth, nth > 1 ? "s" : "",
           t == WT_F32 ? "f32" : t == WT_F16 ? "f16" : t == WT_BF16 ? "bf16" : "bf16p", peak_sum / 1e9);
    for (; a + 2 < argc; a += 3) {
        job j = {.k = k, .n = atoi(argv[a]), .din = atoi(argv[a + 1]), .dout = atoi(argv[a + 2]), .nth = nth,
                 .calls = calls, .t = t};
        if (j.n < 1 || j.din < 1 || (t == WT_BF16P && j.din % 2) || j.dout < 1 || (double)j.din * j.dout > 1e8 || (double)j.n * (j.din + j.dout) > 1e8) {
            fprintf(stderr, "kernel_bench: bad shape %s %s %s\n", argv[a], argv[a + 1], argv[a + 2]);
            return 2;
        }
        const size_t nw = (size_t)j.din * (t == WT_BF16P ? bf16p_padded((size_t)j.dout) : (size_t)j.dout); /* held */
        /* On cache lines, as the model's activations are: from malloc the
         * two threads' columns met inside a line of every output row, and
         * that false sharing cost 10-45% (512 x 768 x 192: 195-320 against
         * 350-375 GFLOP/s aligned). */
        j.x = mem_aligned(sizeof(float) * (size_t)j.n * j.din);
        j.out = mem_aligned(sizeof(float) * (size_t)j.n * j.dout);
        j.bias = malloc(sizeof(float) * (size_t)j.dout);
        j.round_s = malloc(sizeof(double) * (size_t)calls);
        uint64_t s = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < (size_t)j.n * j.din; i++) s = s * 6364136223846793005ull + 1, j.x[i] = (float)(s >> 40) / 16777216.0f - 0.5f;
        for (int i = 0; i < j.dout; i++) j.bias[i] = 0.01f * (float)i;
        j.xb = malloc(sizeof(uint32_t) * (size_t)j.n * (size_t)(j.din / 2 + 1));
        x_bf16_pairs(j.xb, j.x, (size_t)j.n * j.din);
        for (int c = 0; c < COPIES; c++) {
            j.w[c] = malloc(nw * weight_type_size(t));
            for (size_t i = 0; i < nw; i++) {
                s = s * 6364136223846793005ull + 1;
                float v = (float)(s >> 40) / 16777216.0f - 0.5f;
                if (t == WT_F32) ((float *)j.w[c])[i] = v;
                else ((uint16_t *)j.w[c])[i] = t == WT_F16 ? f32_to_f16(v) : f32_to_bf16(v); /* bf16p: the order does not matter */
            }
        }
        pthread_barrier_init(&j.bar, NULL, (unsigned)nth);
        worker wk[64];
        for (int i = 0; i < nth; i++) wk[i] = (worker){&j, i}, pthread_create(&th[i], NULL, run, &wk[i]);
        for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&j.bar);
        qsort(j.round_s, (size_t)calls, sizeof(double), cmp);
        const double flops = 2.0 * j.n * j.din * j.dout * COPIES;
        printf("%5d x %5d x %5d: best %6.1f GFLOP/s (%3.0f%%), median %6.1f GFLOP/s (%3.0f%%)\n", j.n, j.din, j.dout,
               flops / j.round_s[0] / 1e9, 100 * flops / j.round_s[0] / peak_sum, flops / j.round_s[calls / 2] / 1e9,
               100 * flops / j.round_s[calls / 2] / peak_sum);
        for (int c = 0; c < COPIES; c++) free(j.w[c]);
        free(j.x), free(j.xb), free(j.out), free(j.bias), free(j.round_s);
    }
    return 0;
}
