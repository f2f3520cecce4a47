/* cli.h -- what the gpt2c command's files share (common.c), and the large
 * commands that live in files of their own. */
#ifndef GPT2C_CLI_H
#define GPT2C_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "gpt2c.h"

enum { EXIT_RUN = 1, EXIT_USAGE = 2 };

extern const char *prog;

/* Prints "gpt2c: <fmt with arg> (try 'gpt2c --help')"; returns EXIT_USAGE. */
int usage_error(const char *fmt, const char *arg);
int parse_int(const char *s, long lo, long hi, int *out);
int parse_float(const char *s, float *out);
/* 0 if s is a weight dtype the library converts to (f32, f16, bf16, q8);
 * else the usage error for --dtype. */
int check_dtype(const char *s);
char *read_all(FILE *f, size_t *len);
char *read_file_arg(const char *path, size_t *len);
int parse_ids(const char *s, int32_t **ids, int *n);
double now_s(void);
char *resolve_model(const char *spec, unsigned what, int *rc);
gpt2c_tokenizer *open_tokenizer(const char *dir);
json_t *token_text_json(const gpt2c_tokenizer *t, int32_t id);

int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv, double process_start_s);
int cmd_serve(int argc, char **argv);

#endif
