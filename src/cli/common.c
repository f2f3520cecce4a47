/* common.c -- what every gpt2c command shares: usage errors, number and id
 * parsing, reading prompts, resolving a model folder or hub name (with the
 * progress bar), opening a tokenizer. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const char *prog = "gpt2c";
static const char *command; /* the command run, for "see 'gpt2c generate --help'" */

void set_command(const char *name) { command = name; }

int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    if (command) fprintf(stderr, " (see '%s %s --help')\n", prog, command);
    else fprintf(stderr, " (see '%s --help')\n", prog);
    return EXIT_USAGE;
}

/* Levenshtein distance between a[0..la) and b; SIZE_MAX past 64 characters
 * (no option is that long, so nothing that long is a near miss). */
static size_t edit_distance(const char *a, size_t la, const char *b) {
    size_t lb = strlen(b), row[65];
    if (la > 64 || lb > 64) return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

int option_error(int c, char *const argv[], const struct option *lo) {
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    char msg[512];
    if (strncmp(arg, "--", 2) != 0) {
        /* A short option: arg may be a cluster ("-vx"), optopt is the letter. */
        char s[3] = {'-', (char)optopt, 0};
        const char *o = optopt > 0 && optopt < 128 && isgraph(optopt) ? s : arg;
        return usage_error(c == ':' ? "option '%s' needs a value" : "unknown option '%s'", o);
    }
    const char *name = arg + 2;
    int nlen = (int)strcspn(name, "=");
    if (c == ':') {
        snprintf(msg, sizeof msg, "option '--%.*s' needs a value", nlen < 100 ? nlen : 100, name);
        return usage_error("%s", msg);
    }
    /* getopt_long also answers '?' for a known option given a value it does
     * not take (--json=1) and for an abbreviation of several (--to). */
    int exact = -1, n_prefix = 0;
    for (int i = 0; nlen > 0 && lo[i].name; i++)
        if (strncmp(lo[i].name, name, (size_t)nlen) == 0) {
            if ((int)strlen(lo[i].name) == nlen) exact = i;
            n_prefix++;
        }
    if (exact >= 0 || (n_prefix == 1 && name[nlen] == '=')) {
        snprintf(msg, sizeof msg, "option '--%.*s' takes no value", nlen < 100 ? nlen : 100, name);
        return usage_error("%s", msg);
    }
    int at = snprintf(msg, sizeof msg, "%s option '--%.*s'", n_prefix > 1 ? "ambiguous" : "unknown",
                      nlen < 100 ? nlen : 100, name);
    if (n_prefix > 1) {
        const char *sep = ": could be";
        int shown = 0;
        for (int i = 0; lo[i].name && at < (int)sizeof msg; i++)
            if (strncmp(lo[i].name, name, (size_t)nlen) == 0 && shown++ < 4)
                at += snprintf(msg + at, sizeof msg - (size_t)at, "%s --%s", sep, lo[i].name), sep = ",";
        if (shown > 4 && at < (int)sizeof msg) snprintf(msg + at, sizeof msg - (size_t)at, ", ...");
        return usage_error("%s", msg);
    }
    /* A typo: suggest the nearest option, if it is near enough to be meant
     * (at most 2 edits, or a third of the name). */
    size_t best = SIZE_MAX;
    const char *near = NULL;
    for (int i = 0; lo[i].name; i++) {
        size_t d = edit_distance(name, (size_t)nlen, lo[i].name);
        if (d < best) best = d, near = lo[i].name;
    }
    if (near && (best <= 2 || best * 3 <= (size_t)nlen) && best < (size_t)nlen)
        snprintf(msg + at, sizeof msg - (size_t)at, "; did you mean --%s?", near);
    return usage_error("%s", msg);
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

int check_compute(const char *s) {
    if (strcmp(s, "f32") && strcmp(s, "bf16")) return usage_error("--compute: '%s' is not one of f32, bf16", s);
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
 * with why in msg (n bytes); *rc is then the exit code (a malformed name is a
 * usage error). */
char *resolve_model_msg(const char *spec, unsigned what, int *rc, char *msg, size_t n) {
    /* A file where a folder is expected: said as such, rather than "no such
     * folder" or a hub lookup of its name. A tokenizer may be one
     * tokenizer.json file. */
    struct stat sb;
    *rc = EXIT_RUN;
    if (spec && stat(spec, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        size_t len = strlen(spec);
        int tok_only = what == GPT2C_HUB_TOKENIZER;
        if (tok_only && len >= 5 && strcmp(spec + len - 5, ".json") == 0) {
            char *dir = strdup(spec);
            if (!dir) snprintf(msg, n, "out of memory");
            return dir;
        }
        snprintf(msg, n, "%s is a file; -m takes a %s folder%s or a hub name", spec, tok_only ? "tokenizer" : "checkpoint",
                 tok_only ? ", a tokenizer.json file" : "");
        return NULL;
    }
    gpt2c_hub *h;
    char *dir = NULL;
    progress pr = {0};
    gpt2c_status s = gpt2c_hub_new(&h);
    if (s == GPT2C_OK) {
        if (isatty(2)) gpt2c_hub_set_progress(h, on_progress, &pr);
        s = gpt2c_hub_resolve(h, spec, what, &dir);
    }
    if (s != GPT2C_OK) snprintf(msg, n, "%s", gpt2c_hub_errmsg(h));
    if (s == GPT2C_ERR_INVALID) *rc = EXIT_USAGE;
    gpt2c_hub_free(h);
    return s == GPT2C_OK ? dir : NULL;
}

char *resolve_model(const char *spec, unsigned what, int *rc) {
    char msg[1024];
    char *dir = resolve_model_msg(spec, what, rc, msg, sizeof msg);
    if (!dir) fprintf(stderr, "%s: %s\n", prog, msg);
    return dir;
}

gpt2c_tokenizer *open_tokenizer_msg(const char *dir, int *absent, char *msg, size_t n) {
    gpt2c_tokenizer *t;
    gpt2c_status s = gpt2c_tokenizer_load(dir, &t);
    if (absent) *absent = s == GPT2C_ERR_NOT_FOUND;
    if (s == GPT2C_OK) return t;
    if (s != GPT2C_ERR_NOT_FOUND || !absent) snprintf(msg, n, "%s", gpt2c_tokenizer_errmsg(t));
    gpt2c_tokenizer_free(t);
    return NULL;
}

gpt2c_tokenizer *open_tokenizer(const char *dir, int *absent) {
    char msg[1024] = "";
    gpt2c_tokenizer *t = open_tokenizer_msg(dir, absent, msg, sizeof msg);
    if (!t && *msg) fprintf(stderr, "%s: %s\n", prog, msg);
    return t;
}

json_t *token_text_json(const gpt2c_tokenizer *t, int32_t id) {
    /* A single token may be part of a character: show it as decoded with
     * replacement, as transformers' convert_ids_to_tokens + decode would. */
    char *text;
    size_t len;
    if (!t || gpt2c_detokenize(t, &id, 1, GPT2C_DECODE_NO_CLEANUP, &text, &len) != GPT2C_OK) return json_null();
    json_t *j = json_stringn(text, len);
    gpt2c_free(text);
    return j;
}

gpt2c_model *load_draft_msg(const char *draft, const char *draft_dtype, const char *model_dir, const char *kv_cache,
                            int *rc, char *msg, size_t n) {
    /* Self-speculation (no --draft): the model's own folder, in the
     * draft's dtype. */
    *rc = EXIT_RUN;
    char *dir = draft ? resolve_model_msg(draft, GPT2C_HUB_MODEL, rc, msg, n) : strdup(model_dir);
    gpt2c_model *d = NULL;
    if (!dir) {
        if (!draft) snprintf(msg, n, "out of memory");
        return NULL;
    }
    gpt2c_model_params mp = {.dtype = draft_dtype, .kv_cache = kv_cache};
    if (gpt2c_model_load_ex(dir, &mp, &d) != GPT2C_OK) {
        snprintf(msg, n, "the draft model %s: %s", dir, gpt2c_model_errmsg(d));
        gpt2c_model_free(d);
        d = NULL;
    }
    gpt2c_free(dir);
    return d;
}

gpt2c_model *load_draft(const char *draft, const char *draft_dtype, const char *model_dir, const char *kv_cache,
                        int *rc) {
    char msg[1024];
    gpt2c_model *d = load_draft_msg(draft, draft_dtype, model_dir, kv_cache, rc, msg, sizeof msg);
    if (!d) fprintf(stderr, "%s: %s\n", prog, msg);
    return d;
}
