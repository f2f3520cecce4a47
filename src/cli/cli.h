/* cli.h -- what the gpt2c command's files share (common.c), and the large
 * commands that live in files of their own. */
#ifndef GPT2C_CLI_H
#define GPT2C_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

#include "gpt2c.h"

/* Exit codes. EXIT_USAGE: what the user asked for cannot work whatever the
 * files hold (bad options or values, a prompt the model cannot take);
 * EXIT_RUN: a file, folder, download or model that cannot be used, or a
 * failure while running. */
enum { EXIT_RUN = 1, EXIT_USAGE = 2 };

extern const char *prog;

/* The command being run ("generate"), or NULL before one is chosen: usage
 * errors point to its help. */
void set_command(const char *name);
/* Prints "gpt2c: <fmt with arg> (see 'gpt2c CMD --help')"; returns EXIT_USAGE. */
int usage_error(const char *fmt, const char *arg);
/* The usage error for what getopt_long returned as c (':' or '?') for the
 * option at argv[optind - 1]: a missing value, an ambiguous abbreviation, a
 * value given to a flag, or an unknown option with the nearest known one. */
int option_error(int c, char *const argv[], const struct option *lo);
/* "s" unless n is 1: "1 token", "2 tokens". */
static inline const char *plural(long n) { return n == 1 ? "" : "s"; }
int parse_int(const char *s, long lo, long hi, int *out);
int parse_float(const char *s, float *out);
/* 0 if s is a weight dtype the library converts to (f32, f16, bf16, q8);
 * else the usage error for --dtype. */
int check_dtype(const char *s);
int check_compute(const char *s);
char *read_all(FILE *f, size_t *len);
char *read_file_arg(const char *path, size_t *len);
int parse_ids(const char *s, int32_t **ids, int *n);
double now_s(void);
/* A folder as given, or a hub name resolved (and downloaded) to one. NULL
 * after printing why; *rc is then the exit code (a malformed name is a usage
 * error). resolve_model_msg writes why to msg instead. */
char *resolve_model(const char *spec, unsigned what, int *rc);
char *resolve_model_msg(const char *spec, unsigned what, int *rc, char *msg, size_t n);
/* The folder's tokenizer, or NULL after a message. With `absent` given, a
 * folder without tokenizer files (a model run from token ids) is no error:
 * NULL, no message, *absent = 1. */
gpt2c_tokenizer *open_tokenizer(const char *dir, int *absent);
/* The same, why written to msg instead (left as it was when absent). */
gpt2c_tokenizer *open_tokenizer_msg(const char *dir, int *absent, char *msg, size_t n);
/* The draft model of speculative decoding: the checkpoint `draft` (a folder
 * or hub name) in draft_dtype (NULL: as stored), or, with draft NULL, the
 * model's own folder in draft_dtype (self-speculation). NULL after saying
 * why (load_draft_msg: into msg), *rc the exit code. */
gpt2c_model *load_draft(const char *draft, const char *draft_dtype, const char *model_dir, const char *kv_cache,
                        int *rc);
gpt2c_model *load_draft_msg(const char *draft, const char *draft_dtype, const char *model_dir, const char *kv_cache,
                            int *rc, char *msg, size_t n);
json_t *token_text_json(const gpt2c_tokenizer *t, int32_t id);

int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv, double process_start_s);
int cmd_serve(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);

#endif
