/* common.c -- what every gpt2c command shares: usage errors, number and id
 * parsing, reading prompts, resolving a model folder or hub name (with the
 * progress bar), opening a tokenizer. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const char *prog = "gpt2c";

int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try '%s --help')\n", prog);
    return EXIT_USAGE;
}

int parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int check_dtype(const char *s) {
    if (strcmp(s, "f32") && strcmp(s, "f16") && strcmp(s, "bf16") && strcmp(s, "q8"))
        return usage_error("--dtype: '%s' is not one of f32, f16, bf16, q8", s);
    return 0;
}

int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end != '\0') return -1;
    *out = v;
    return 0;
}

/* Reads a whole stream; NULL on failure. */
char *read_all(FILE *f, size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    if (buf && ferror(f)) {
        free(buf);
        return NULL;
    }
    if (buf) {
        buf[n < cap ? n : cap - 1] = '\0';
        *len = n;
    }
    return buf;
}

char *read_file_arg(const char *path, size_t *len) {
    if (strcmp(path, "-") == 0) return read_all(stdin, len);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = read_all(f, len);
    fclose(f);
    return buf;
}

/* Parses "1,2 3\n4" into ids; -1 on a malformed number. */
int parse_ids(const char *s, int32_t **ids, int *n) {
    int cap = 16;
    *n = 0;
    *ids = malloc((size_t)cap * sizeof **ids);
    if (!*ids) return -1;
    while (*s) {
        while (*s == ',' || *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX) return -1;
        if (*n == cap) {
            int32_t *p = realloc(*ids, (size_t)(cap *= 2) * sizeof *p);
            if (!p) return -1;
            *ids = p;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 0;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A progress bar on a terminal: bytes, rate, time left. */
typedef struct progress {
    double start, last;
    char file[128];
    int finished; /* the 100% line of this file is out */
} progress;

static void on_progress(void *user, const char *file, uint64_t done, uint64_t total) {
    progress *p = user;
    double now = now_s();
    if (strcmp(p->file, file) != 0) {
        snprintf(p->file, sizeof p->file, "%s", file);
        p->start = now;
        p->last = 0;
        p->finished = 0;
    }
    int end = total > 0 && done >= total;
    if (p->finished || (!end && now - p->last < 0.1)) return;
    p->finished = end;
    p->last = now;
    double mb = (double)done / 1e6, rate = now > p->start ? mb / (now - p->start) : 0;
    if (total > 0)
        fprintf(stderr, "\r%-30.30s %3d%% %8.1f / %.1f MB %7.1f MB/s  ETA %4.0f s ", file, (int)(100.0 * (double)done / (double)total),
                mb, (double)total / 1e6, rate, rate > 0 ? ((double)total / 1e6 - mb) / rate : 0.0);
    else
        fprintf(stderr, "\r%-30.30s %8.1f MB %7.1f MB/s ", file, mb, rate);
    if (end) fputc('\n', stderr);
}

/* A folder as given, or a hub name resolved (and downloaded) to one. NULL
 * after printing why; *rc is then the exit code (a malformed name is a usage
 * error). */
char *resolve_model(const char *spec, unsigned what, int *rc) {
    gpt2c_hub *h;
    char *dir = NULL;
    progress pr = {0};
    gpt2c_status s = gpt2c_hub_new(&h);
    if (s == GPT2C_OK) {
        if (isatty(2)) gpt2c_hub_set_progress(h, on_progress, &pr);
        s = gpt2c_hub_resolve(h, spec, what, &dir);
    }
    if (s != GPT2C_OK) fprintf(stderr, "%s: %s\n", prog, gpt2c_hub_errmsg(h));
    *rc = s == GPT2C_ERR_INVALID ? EXIT_USAGE : EXIT_RUN;
    gpt2c_hub_free(h);
    return s == GPT2C_OK ? dir : NULL;
}

gpt2c_tokenizer *open_tokenizer(const char *dir) {
    gpt2c_tokenizer *t;
    if (gpt2c_tokenizer_load(dir, &t) != GPT2C_OK) {
        fprintf(stderr, "%s: %s\n", prog, gpt2c_tokenizer_errmsg(t));
        gpt2c_tokenizer_free(t);
        return NULL;
    }
    return t;
}

json_t *token_text_json(const gpt2c_tokenizer *t, int32_t id) {
    /* A single token may be part of a character: show it as decoded with
     * replacement, as transformers' convert_ids_to_tokens + decode would. */
    char *text;
    size_t len;
    if (gpt2c_detokenize(t, &id, 1, GPT2C_DECODE_NO_CLEANUP, &text, &len) != GPT2C_OK) return json_null();
    json_t *j = json_stringn(text, len);
    gpt2c_free(text);
    return j;
}

