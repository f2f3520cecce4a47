/* gpt2c.h -- the one public interface of the gpt2c library.
 *
 * Everything a program needs to load a Hugging Face GPT-2 checkpoint folder,
 * tokenize text exactly as transformers' slow GPT2Tokenizer does, and generate
 * tokens with transformers' generate() semantics.
 *
 * Conventions (after SQLite and libuv):
 *  - Every object is an opaque handle with a _free call.
 *  - Every call that can fail returns a gpt2c_status. Loaders always hand back
 *    a handle, even on failure (like sqlite3_open), so the caller can read the
 *    message with the matching _errmsg call; only when memory for the handle
 *    itself cannot be had is the handle NULL, and _errmsg(NULL) says so.
 *  - The library keeps no global mutable state: any number of models can be
 *    loaded in one process. A loaded model and tokenizer are read-only and may
 *    be shared by threads; a generation handle belongs to one thread at a time.
 */
#ifndef GPT2C_H
#define GPT2C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what this header declares is
 * all it exports. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define GPT2C_VERSION "0.1.0"

typedef enum gpt2c_status {
    GPT2C_OK = 0,
    GPT2C_ERR_IO = 1,          /* a file is missing or cannot be read */
    GPT2C_ERR_FORMAT = 2,      /* a file is malformed (JSON, safetensors, merges) */
    GPT2C_ERR_UNSUPPORTED = 3, /* well-formed, but a feature gpt2c does not implement */
    GPT2C_ERR_INVALID = 4,     /* an invalid argument or parameter value */
    GPT2C_ERR_NOMEM = 5,       /* out of memory */
    GPT2C_ERR_CONTEXT = 6,     /* the sequence would not fit the model's context */
    GPT2C_DONE = 7,            /* not an error: generation has finished */
    GPT2C_ERR_NOT_FOUND = 8,   /* a hub repository, revision or file does not exist; a folder without tokenizer files */
    GPT2C_ERR_PERMISSION = 9,  /* the hub refused: private or gated (set HF_TOKEN) */
    GPT2C_ERR_NETWORK = 10,    /* the hub could not be reached, or the transfer failed */
    GPT2C_ERR_BUSY = 11        /* an engine has no free slots for now: retry once some are freed */
} gpt2c_status;

/* A short English name for a status ("format error", ...). Never NULL. */
const char *gpt2c_status_string(gpt2c_status s);
const char *gpt2c_version(void);

/* ---------------------------------------------------------------- tokenizer */

typedef struct gpt2c_tokenizer gpt2c_tokenizer;

/* Loads vocab.json + merges.txt from dir, or tokenizer.json when those are
 * absent. dir may also be a path to a tokenizer.json file. */
gpt2c_status gpt2c_tokenizer_load(const char *dir, gpt2c_tokenizer **out);
const char *gpt2c_tokenizer_errmsg(const gpt2c_tokenizer *t);
void gpt2c_tokenizer_free(gpt2c_tokenizer *t);

int gpt2c_tokenizer_vocab_size(const gpt2c_tokenizer *t);
/* The most bytes one token stands for: a text of n bytes is at least
 * n / this many tokens, which refuses an oversized prompt before tokenizing it. */
size_t gpt2c_tokenizer_max_token_bytes(const gpt2c_tokenizer *t);
/* The id of "<|endoftext|>", or -1 if the vocabulary has none. */
int gpt2c_tokenizer_eos_id(const gpt2c_tokenizer *t);

/* Encodes len bytes of UTF-8 text. *ids is allocated with malloc() and must be
 * released with gpt2c_free(). Text that is not valid UTF-8 is refused with
 * GPT2C_ERR_INVALID and a message giving the byte offset. "<|endoftext|>"
 * written in the text becomes its special token, as in transformers. */
gpt2c_status gpt2c_tokenize(gpt2c_tokenizer *t, const char *text, size_t len,
                            int32_t **ids, int *n_ids);

#define GPT2C_DECODE_SKIP_SPECIAL 1u /* drop special tokens (skip_special_tokens) */
#define GPT2C_DECODE_NO_CLEANUP   2u /* clean_up_tokenization_spaces=False */
/* Ids the vocabulary lacks (a model's embedding padded past its tokenizer:
 * GPT-NeoX's 50304 rows for 50277 tokens) decode to nothing, as Hugging
 * Face's tokenizers skip them, instead of being refused: for generated ids. */
#define GPT2C_DECODE_SKIP_UNKNOWN 4u

/* Decodes ids to a NUL-terminated UTF-8 string (malloc'd, release with
 * gpt2c_free). Byte sequences that are not valid UTF-8 become U+FFFD exactly as
 * Python's errors="replace" does. An id outside the vocabulary is refused
 * (with GPT2C_DECODE_SKIP_UNKNOWN, one the vocabulary lacks is skipped). */
gpt2c_status gpt2c_detokenize(const gpt2c_tokenizer *t, const int32_t *ids, int n_ids,
                              unsigned flags, char **text, size_t *len);

/* The raw bytes of one token (not NUL-terminated), or NULL for a bad id. */
const char *gpt2c_token_bytes(const gpt2c_tokenizer *t, int32_t id, size_t *len);
/* convert_tokens_to_ids for one token: the id of an added or special token
 * of that text, else of the vocabulary entry spelled so (vocab.json's
 * spelling: "\u0120world" for " world"); -1 when there is none. */
int32_t gpt2c_token_id(const gpt2c_tokenizer *t, const char *token);
/* One token as vocab.json spells it, as transformers' convert_ids_to_tokens()
 * returns it: each byte as GPT-2's printable stand-in (" world" is
 * "\u0120world"; the pieces of a character split over tokens show their own
 * bytes rather than U+FFFD). A NUL-terminated UTF-8 string, malloc'd (release
 * with gpt2c_free); NULL for a bad id or out of memory. */
char *gpt2c_token_string(const gpt2c_tokenizer *t, int32_t id);

void gpt2c_free(void *p);

/* Incremental text for streaming: produces, piece by piece, exactly the text
 * that the transformers text-generation pipeline returns as new text
 * (decode(prompt + new)[len(decode(prompt)):]), and never emits half a UTF-8
 * character or text that clean-up could still change. */
typedef struct gpt2c_stream gpt2c_stream;
gpt2c_status gpt2c_stream_new(const gpt2c_tokenizer *t, const int32_t *prompt, int n_prompt,
                              unsigned flags, gpt2c_stream **out);
/* Adds one token; *piece receives the newly settled text (may be empty), valid
 * until the next call on this stream. */
gpt2c_status gpt2c_stream_push(gpt2c_stream *s, int32_t id, const char **piece, size_t *len);
/* Stop strings: the stream ends at the first one that appears in the new
 * text, which is then cut just before it; text that could still become a stop
 * string is held back. Empty strings are refused. */
gpt2c_status gpt2c_stream_set_stops(gpt2c_stream *s, const char *const *stops, int n_stops);
/* 1 once a stop string has appeared: generation should end. */
int gpt2c_stream_stopped(const gpt2c_stream *s);
/* Ends the stream: *piece receives whatever was held back. */
gpt2c_status gpt2c_stream_finish(gpt2c_stream *s, const char **piece, size_t *len);
void gpt2c_stream_free(gpt2c_stream *s);

/* -------------------------------------------------------------------- model */

typedef struct gpt2c_model gpt2c_model;

/* Loads a checkpoint folder: config.json, whose model_type chooses the
 * architecture ("gpt2", "gpt_neo", "opt", "gpt_neox", "bloom",
 * "gpt_bigcode", "codegen"; another is refused with that list), and the
 * weights (model.safetensors, pytorch_model.bin or their shards), mapped in
 * place. Every tensor's name, dtype, shape and offsets are checked against
 * the config before use. */
gpt2c_status gpt2c_model_load(const char *dir, gpt2c_model **out);
const char *gpt2c_model_errmsg(const gpt2c_model *m);
void gpt2c_model_free(gpt2c_model *m);

typedef struct gpt2c_model_params {
    /* NULL: the matrices as stored (read in place). "f32", "f16", "bf16" or
     * "q8" (int8 in blocks of 32 with an f16 absmax scale): converted in
     * memory at load, for less memory traffic per token at a small cost in
     * exactness. */
    const char *dtype;
    /* NULL or "f32": the KV cache in f32. "f16": in IEEE half precision,
     * half the memory per cached position (each key and value rounded to
     * nearest even as it is stored). */
    const char *kv_cache;
    /* NULL, or a LoRA adapter folder as PEFT saves it (adapter_config.json
     * + adapter_model.safetensors): merged into the weights at load, W +=
     * lora_alpha / r * (B A), before any dtype conversion. */
    const char *lora;
    /* NULL or "f32": every product in f32. "bf16": where the CPU has
     * AVX512_BF16, the products (the LM head's too) multiply bf16-rounded
     * inputs by bf16-rounded matrices in vdpbf16ps, summing in f32: the
     * products at up to twice the f32 FMA rate (long prompts), half the
     * bytes of f32 weights per decoded token, at a cost in exactness near
     * bf16 weights' (one rounding more, of the inputs). Prefill and decode
     * still give the same bits. Refused elsewhere, and beside a dtype other
     * than "bf16". */
    const char *compute;
} gpt2c_model_params;
gpt2c_status gpt2c_model_load_ex(const char *dir, const gpt2c_model_params *p, gpt2c_model **out);

/* Writes the model as a new checkpoint folder dir, its matrices in the dtype
 * they have now (as stored, or as converted by gpt2c_model_params.dtype), so
 * that gpt2c_model_load maps it with no conversion: model.safetensors (F32,
 * F16 and BF16 as such; Q8 as an I8 tensor plus an F16 NAME_scale tensor of
 * block scales), and the config, generation and tokenizer files of the
 * folder it was loaded from. dir must not exist; it appears complete or not
 * at all (written under a temporary name, flushed, renamed). */
gpt2c_status gpt2c_model_save(gpt2c_model *m, const char *dir);

typedef struct gpt2c_model_info {
    int n_vocab, n_ctx, n_embd, n_head, n_layer, n_inner;
    int bos_token_id, eos_token_id, pad_token_id; /* -1 when unset */
    const char *weight_dtype;                     /* "F32", "F16", "BF16", "Q8" */
    const char *kernels;                          /* the kernel set chosen at load */
    uint64_t weight_bytes;                        /* matrix bytes read per decoded token */
    const char *kv_cache_dtype;                   /* "F32" or "F16" */
    const char *model_type;                       /* config.json's: "gpt2", "gpt_neo", "opt", "gpt_neox",
                                                     "bloom", "gpt_bigcode", "codegen" */
    uint64_t kv_bytes_per_token;                  /* KV cache bytes per position of a sequence: keys and
                                                     values of every layer (multi-query: one head's) */
    int start_token_id;                           /* what an empty prompt starts from, as generate()
                                                     does: bos, else eos (GPT-2: <|endoftext|>); -1: none */
    const char *compute;                          /* "f32", or "bf16" (gpt2c_model_params.compute) */
} gpt2c_model_info;
void gpt2c_model_get_info(const gpt2c_model *m, gpt2c_model_info *info);

/* The perplexity of n token ids by the sliding-window method of
 * transformers' perplexity guide: windows of up to `context` tokens (0: the
 * model's) starting every `stride` (0: context) tokens; each window's loss
 * is the mean negative log-likelihood of the tokens that the window before
 * it did not end with (the first window: all but its first token), and the
 * perplexity is exp of the mean of the windows' losses. n_threads 0: one
 * per core. */
typedef struct gpt2c_perplexity_result {
    double perplexity;
    double mean_nll;     /* the mean of the windows' losses */
    long windows, targets;
} gpt2c_perplexity_result;
gpt2c_status gpt2c_perplexity(gpt2c_model *m, const int32_t *ids, long n, int context, int stride, int n_threads,
                              gpt2c_perplexity_result *out);

/* Measures the limits a benchmark compares against, on n_threads threads (0:
 * one per core) with the model's kernels: the read bandwidth over the model's
 * own mapped weights (bytes/s, best of a few passes) and the f32 FMA rate
 * (flop/s). */
gpt2c_status gpt2c_model_measure_limits(gpt2c_model *m, int n_threads, double *bytes_per_s, double *flops_per_s);

/* The thread count that n_threads 0 stands for everywhere: one per physical
 * core this process may run on. */
int gpt2c_default_threads(void);

/* --------------------------------------------------------------- generation */

typedef enum gpt2c_finish {
    GPT2C_FINISH_NONE = 0,   /* still running */
    GPT2C_FINISH_LENGTH = 1, /* reached max_length / max_new_tokens, or the context's end */
    GPT2C_FINISH_EOS = 2,    /* produced eos_token_id */
    GPT2C_FINISH_STOP = 3    /* ended by the caller (a stop string, a cancelled request) */
} gpt2c_finish;

/* Generation parameters, named and defaulted as transformers' GenerationConfig
 * (4.30). The lists are copied by gpt2c_gen_start. */
typedef struct gpt2c_gen_params {
    int max_new_tokens;       /* new tokens to generate; < 0: use max_length */
    int max_length;           /* prompt + new tokens (default 20) */
    int min_length;           /* EOS is banned while the sequence is shorter (0) */
    int min_new_tokens;       /* EOS is banned before this many new tokens (0) */
    int do_sample;            /* 0: greedy or beam search; 1: multinomial sampling */
    float temperature;        /* sampling only; > 0 (1.0) */
    int top_k;                /* sampling only; 0 = off (50) */
    float top_p;              /* sampling only; (0, 1] (1.0 = off) */
    float typical_p;          /* sampling only; (0, 1] (1.0 = off) */
    float repetition_penalty; /* 1.0 = off; applies to prompt and generated ids */
    int no_repeat_ngram_size; /* 0 = off */
    int num_beams;            /* 1 = no beam search */
    float length_penalty;     /* beam search: score = logprob sum / length^penalty (1.0) */
    int early_stopping;       /* beam search: stop once num_beams hypotheses are done (0) */
    int num_return_sequences; /* sequences per prompt (1) */
    int has_seed;             /* 1: use seed; 0: a fresh random seed per call */
    uint64_t seed;
    int eos_token_id;         /* -2: the model's; -1: none */
    int use_cache;            /* 1: KV cache (default); 0: recompute every step */
    int n_threads;            /* 0: one per physical core (default) */
    int n_logprobs;           /* keep the top-n log-probabilities of each step (0..20) */
    const int32_t *suppress_tokens; /* ids that are never generated */
    int n_suppress_tokens;
    const int32_t *const *bad_words_ids; /* token sequences that are never completed */
    const int *bad_words_lens;
    int n_bad_words;
    const int32_t *logit_bias_ids; /* OpenAI's logit_bias: added to these ids' scores */
    const float *logit_bias;
    int n_logit_bias;
    /* OpenAI's penalties (0 = off), over the new tokens only: a token's score
     * loses frequency_penalty per time it was generated, and presence_penalty
     * once if it was generated at all. */
    float presence_penalty, frequency_penalty;
    /* Speculative decoding (transformers' assisted generation): a smaller
     * model of the same tokenizer -- or this one in q8 -- proposes tokens,
     * num_assistant_tokens of them at first (1..7, default 5), then as many
     * (0..7) as maximise the expected tokens per unit of time, from the
     * share of its proposals that held and the draft's size against this
     * model's, which this model checks in one pass. Greedy output is exactly that without it, sampled
     * output follows the same distribution (speculative sampling). Beam
     * search and use_cache 0 do not speculate. NULL: none. */
    gpt2c_model *assistant_model;
    int num_assistant_tokens;
} gpt2c_gen_params;

/* Fills p with transformers' generate() defaults: greedy, max_length 20,
 * top_k 50 (used only when sampling). */
void gpt2c_gen_params_init(gpt2c_gen_params *p);

typedef enum gpt2c_defaults {
    GPT2C_DEFAULTS_GENERATE = 0, /* generate(): transformers' defaults + generation_config.json */
    GPT2C_DEFAULTS_PIPELINE = 1  /* pipeline("text-generation"): also config.json's
                                  * task_specific_params["text-generation"] (gpt2: sampling, max_length 50) */
} gpt2c_defaults;
/* The defaults a checkpoint gives transformers, in either mode. */
void gpt2c_model_gen_defaults(const gpt2c_model *m, gpt2c_defaults mode, gpt2c_gen_params *p);

typedef struct gpt2c_gen gpt2c_gen;

/* Starts generating continuations of n_prompts prompts (token ids) together as
 * one batch. Prompts may differ in length. With num_return_sequences n, the
 * sequences are [p0 x n, p1 x n, ...] and share their prompt's KV cache.
 * Nothing is computed until the first step. */
gpt2c_status gpt2c_gen_start(gpt2c_model *m, const gpt2c_gen_params *p, int n_prompts,
                             const int32_t *const *prompts, const int *n_prompt_ids,
                             gpt2c_gen **out);
const char *gpt2c_gen_errmsg(const gpt2c_gen *g);
/* Generates one more token for every unfinished sequence. Returns GPT2C_OK
 * while work remains, GPT2C_DONE once every sequence has finished. Only for
 * generations made by gpt2c_gen_start; on one of a shared engine it returns
 * GPT2C_ERR_INVALID and changes nothing (those advance with gpt2c_engine_step). */
gpt2c_status gpt2c_gen_step(gpt2c_gen *g);
/* GPT2C_OK while running, GPT2C_DONE when finished, or the error that ended it. */
gpt2c_status gpt2c_gen_status(const gpt2c_gen *g);
/* The number of sequences: n_prompts x num_return_sequences. */
int gpt2c_gen_n_seqs(const gpt2c_gen *g);
/* The new tokens of sequence i so far (not the prompt). In beam search the
 * sequences are the best hypotheses, final once gpt2c_gen_step returned
 * GPT2C_DONE. */
const int32_t *gpt2c_gen_tokens(const gpt2c_gen *g, int i, int *n);
gpt2c_finish gpt2c_gen_finish_reason(const gpt2c_gen *g, int i);
/* Ends sequence i now (reason GPT2C_FINISH_STOP): for stop strings and
 * cancelled requests. Not available in beam search. */
gpt2c_status gpt2c_gen_finish(gpt2c_gen *g, int i);
/* Beam search: the final score of sequence i (transformers' sequences_scores). */
double gpt2c_gen_score(const gpt2c_gen *g, int i);
/* For step j of sequence i (when n_logprobs > 0): the log-probability of the
 * chosen token and the top n_logprobs alternatives (ids and log-probabilities, best first), from
 * the model's distribution before any processing. Returns the number of
 * alternatives written, or -1 if out of range. */
int gpt2c_gen_logprobs(const gpt2c_gen *g, int i, int j, float *chosen,
                       int32_t *top_ids, float *top_lps);
/* transformers' output_scores: asks, before the first step, that each step
 * keep every sequence's scores as they stood when its token was chosen --
 * after the processors and, when sampling, the warpers (-inf where top-k or
 * top-p removed a token). Greedy and sampling only. */
gpt2c_status gpt2c_gen_keep_scores(gpt2c_gen *g);
/* Those scores (n_vocab floats) for sequence i's latest token, valid until
 * the next step; NULL when none are kept or it has no new token yet. */
const float *gpt2c_gen_scores(const gpt2c_gen *g, int i);
/* Seconds spent in the prompt pass and in the token steps so far. */
void gpt2c_gen_timings(const gpt2c_gen *g, double *prefill_s, double *decode_s);
/* Frees the generation; on a shared engine its slots become free. */
void gpt2c_gen_free(gpt2c_gen *g);

/* ------------------------------------------------------ continuous batching */

/* An engine runs many generations together, as a server needs: it owns a KV
 * cache of n_slots sequences of the full context, generations join it and
 * leave it at any time, and each gpt2c_engine_step runs one forward pass
 * over the newest token of every live sequence of every generation (and the
 * prompts of those that just joined), reading the weights once for all.
 * Each generation's tokens are exactly those gpt2c_gen_start would give it
 * alone with the same parameters and seed. One thread drives an engine and
 * its generations. */
typedef struct gpt2c_engine gpt2c_engine;

/* n_threads 0: one per physical core. The cache takes
 * 2 x n_layer x n_slots x n_ctx x n_embd floats. */
gpt2c_status gpt2c_engine_new(gpt2c_model *m, int n_slots, int n_threads, gpt2c_engine **out);
const char *gpt2c_engine_errmsg(const gpt2c_engine *e);
/* Every generation on the engine must have been freed first. */
void gpt2c_engine_free(gpt2c_engine *e);
int gpt2c_engine_n_slots(const gpt2c_engine *e);
int gpt2c_engine_free_slots(const gpt2c_engine *e);
/* The prompt cache, on by default: a slot keeps the keys and values of its
 * last sequence after it ends, and a new prompt takes the free slot holding
 * the longest prefix of it and starts after that prefix (a system text, a
 * few-shot block, the previous turn). The tokens are the same with it and
 * without: every position's keys and values depend only on the tokens
 * before it, computed in a fixed order. */
void gpt2c_engine_set_prompt_cache(gpt2c_engine *e, int on);
/* The prompt tokens a generation on an engine did not compute again: the
 * prompt cache's share of its prompts (0 for gpt2c_gen_start's). */
int gpt2c_gen_reused_tokens(const gpt2c_gen *g);
/* Gives the engine a draft model for speculative decoding (NULL: none):
 * every generation added after it speculates, as gpt2c_gen_params'
 * assistant_model says. The draft gets a KV cache of as many slots. Only
 * while no generation is attached. */
gpt2c_status gpt2c_engine_set_draft(gpt2c_engine *e, gpt2c_model *draft, int num_assistant_tokens);
/* Speculation so far: tokens the draft proposed, and how many of them the
 * model kept. */
void gpt2c_gen_draft_stats(const gpt2c_gen *g, long *drafted, long *accepted);
/* As gpt2c_gen_start, on the engine: the generation holds one slot per
 * sequence (n_prompts x num_return_sequences, or x num_beams) until freed;
 * GPT2C_ERR_BUSY when fewer slots are free. n_threads in p is ignored. */
gpt2c_status gpt2c_engine_add(gpt2c_engine *e, const gpt2c_gen_params *p, int n_prompts,
                              const int32_t *const *prompts, const int *n_prompt_ids, gpt2c_gen **out);
/* One step of every unfinished generation on the engine. GPT2C_DONE when
 * none had work; see gpt2c_gen_status for each generation's state. */
gpt2c_status gpt2c_engine_step(gpt2c_engine *e);
/* Scores a token sequence (OpenAI's echo with logprobs): chosen[j] is the
 * log-probability of ids[j] after ids[0..j-1] (NaN for j = 0), and
 * top_ids / top_lps (n x k) the k most likely tokens at each position. Needs
 * one free slot for the duration of the call. */
gpt2c_status gpt2c_engine_score(gpt2c_engine *e, const int32_t *ids, int n, int k, float *chosen, int32_t *top_ids,
                                float *top_lps);

/* The model's output for one sequence, as model(input_ids).logits gives it:
 * logits (n x n_vocab floats) receives, for each position j, the scores of
 * the token after ids[0..j]. The sequence runs as one batch (in chunks).
 * Needs one free slot for the duration of the call. */
gpt2c_status gpt2c_engine_logits(gpt2c_engine *e, const int32_t *ids, int n, float *logits);

/* ---------------------------------------------------------------------- hub */

/* Models by name, from the Hugging Face hub, through the cache that
 * huggingface_hub uses (so Python and gpt2c share downloads). The settings
 * come from the environment, as in huggingface_hub: HF_ENDPOINT, HF_HUB_CACHE /
 * HF_HOME / XDG_CACHE_HOME, HF_TOKEN (or $HF_HOME/token), HF_HUB_OFFLINE and
 * TRANSFORMERS_OFFLINE. */
typedef struct gpt2c_hub gpt2c_hub;

gpt2c_status gpt2c_hub_new(gpt2c_hub **out);
const char *gpt2c_hub_errmsg(const gpt2c_hub *h);
void gpt2c_hub_free(gpt2c_hub *h);
const char *gpt2c_hub_cache_dir(const gpt2c_hub *h);

/* Called as a file downloads: bytes so far and in all (0 when unknown). */
typedef void (*gpt2c_progress_fn)(void *user, const char *file, uint64_t done, uint64_t total);
void gpt2c_hub_set_progress(gpt2c_hub *h, gpt2c_progress_fn fn, void *user);

#define GPT2C_HUB_TOKENIZER 1u /* vocab.json + merges.txt, or tokenizer.json */
#define GPT2C_HUB_MODEL 2u     /* config files and weights */

/* spec is a folder (returned as is) or a repo id ("gpt2", "org/name",
 * optionally "@revision"). A repo id is served from the cache when the
 * snapshot there is complete, without any network request; otherwise the
 * files that `what` needs are downloaded, verified and linked in. *dir
 * (malloc'd, release with gpt2c_free) is the folder to load from. */
gpt2c_status gpt2c_hub_resolve(gpt2c_hub *h, const char *spec, unsigned what, char **dir);

/* The cached repositories: calls fn for each with its id, total bytes, the
 * revisions it holds (comma-separated) and its folder. */
typedef void (*gpt2c_cache_fn)(void *user, const char *repo_id, uint64_t bytes, const char *revisions,
                               const char *path);
gpt2c_status gpt2c_hub_list(gpt2c_hub *h, gpt2c_cache_fn fn, void *user);
/* Deletes a repository from the cache. */
gpt2c_status gpt2c_hub_remove(gpt2c_hub *h, const char *repo_id);
/* Network requests made by this handle so far (for tests and diagnostics). */
long gpt2c_hub_requests(const gpt2c_hub *h);

/* -------------------------------------------------------------- fine-tuning */

/* What gpt2c_finetune does, with the defaults of transformers' Trainer and
 * run_clm.py (gpt2c_finetune_defaults). The model trains in f32 whatever
 * its stored dtype, with the dropout its config.json gives (GPT-2: 0.1 at
 * each site, as model.train()), masks drawn from the seed. */
typedef struct gpt2c_finetune_params {
    const char *model_dir;        /* the checkpoint folder to start from */
    const char *train_file;       /* plain text, or JSON lines (.jsonl/.json): {"text"} or {"prompt", "completion"} */
    const char *validation_file;  /* NULL: validation_split of train_file's examples */
    double validation_split;      /* percent held out when there is no validation_file (5; 0: none) */
    const char *output_dir;       /* must not exist; checkpoints go to output_dir/checkpoint-STEP */
    int epochs;                   /* 3 */
    long max_steps;               /* > 0: this many optimiser steps, overriding epochs */
    int batch_size;               /* blocks per micro-batch (8) */
    int grad_accum;               /* micro-batches per optimiser step (1) */
    int block_size;               /* tokens per block (0: the context, at most 1024) */
    float lr;                     /* peak learning rate (5e-5), linear decay to 0 */
    long warmup_steps;            /* linear warm-up from 0 (0) */
    float weight_decay;           /* AdamW's, on matrices only (0) */
    float adam_beta1, adam_beta2, adam_eps; /* 0.9, 0.999, 1e-8 */
    float max_grad_norm;          /* clipping by global norm (1; 0: none) */
    uint64_t seed;                /* the order of the blocks (42) */
    int shuffle;                  /* 1: a new order each epoch; 0: file order */
    long eval_every;              /* evaluate every N steps too (0: at the end only) */
    long save_every;              /* a checkpoint every N steps (0: none) */
    const char *resume_dir;       /* continue from this checkpoint folder, bit for bit */
    int n_threads;                /* 0: one per core */
    int no_dropout;               /* 1: train without dropout (else the config's: GPT-2's embd/attn/resid_pdrop) */
    /* LoRA: lora_rank > 0 trains only adapters of that rank on lora_targets
     * (PEFT's target_modules, comma-separated: a name adapts each layer
     * matrix whose module path ends in it, GPT-2's "c_proj" both
     * projections; NULL: PEFT's default for the architecture, GPT-2's
     * "c_attn", OPT's "q_proj,v_proj", GPT-NeoX's "query_key_value"), scaled by lora_alpha / rank (alpha 0: 2 x rank),
     * over the model as stored (f32, f16 or bf16, not copied); output_dir
     * and checkpoints then hold adapter_config.json and
     * adapter_model.safetensors as PEFT writes them (a resumed run takes
     * the base from model_dir), and lora_merge also writes the merged model
     * into output_dir. */
    int lora_rank;
    float lora_alpha;
    const char *lora_targets;
    int lora_merge;
} gpt2c_finetune_params;
void gpt2c_finetune_defaults(gpt2c_finetune_params *p);

typedef enum gpt2c_finetune_kind {
    GPT2C_FT_START = 0, /* data read, model loaded: sizes filled in */
    GPT2C_FT_STEP = 1,  /* an optimiser step is done */
    GPT2C_FT_EVAL = 2,  /* an evaluation is done */
    GPT2C_FT_SAVE = 3   /* a checkpoint or the final model was written: path */
} gpt2c_finetune_kind;

typedef struct gpt2c_finetune_event {
    gpt2c_finetune_kind kind;
    long step, max_steps;         /* optimiser steps done, and in all */
    double epoch;                 /* fractional epochs done */
    double loss;                  /* the step's mean loss */
    double lr, grad_norm;         /* the step's learning rate, and the norm before clipping */
    double tokens_per_s;          /* training tokens a second, over the run so far */
    double eval_loss, eval_perplexity;
    const char *path;
    long train_blocks, eval_blocks, block_size;
    uint64_t n_params;
} gpt2c_finetune_event;
/* Called for each event; returning nonzero stops the run after writing a
 * checkpoint of the present step (an interrupt: resume from it). */
typedef int (*gpt2c_finetune_fn)(void *user, const gpt2c_finetune_event *ev);

/* Fine-tunes every parameter (or LoRA adapters) with AdamW (torch.optim.AdamW's update, HF
 * Trainer's grouping, schedule and clipping) on the causal-LM loss, then
 * evaluates and writes output_dir as a checkpoint folder gpt2c and
 * transformers both load (model.safetensors in f32, config, generation
 * config, tokenizer files). On failure msg (n bytes) says why, naming the
 * file, line or parameter; GPT2C_ERR_INVALID: a parameter that cannot
 * work. *stopped is set to 1 when fn stopped it (NULL allowed). */
gpt2c_status gpt2c_finetune(const gpt2c_finetune_params *p, gpt2c_finetune_fn fn, void *user, int *stopped,
                            char *msg, size_t n);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif
