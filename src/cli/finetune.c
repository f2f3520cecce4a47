/* finetune.c -- `gpt2c finetune`: options into gpt2c_finetune_params, and
 * its progress on the terminal (a line redrawn in place), as JSON lines
 * (--json), or as a line every --log-every steps otherwise. Ctrl-C (or
 * SIGTERM) ends the run after the present step with a checkpoint to resume
 * from. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char FINETUNE_HELP[] =
    "usage: gpt2c finetune -m MODEL --train FILE -o DIR [options]\n"
    "\n"
    "Fine-tunes every weight of MODEL on FILE with AdamW, as transformers' Trainer does with\n"
    "run_clm.py, and writes DIR: a checkpoint folder that gpt2c and transformers load. FILE is\n"
    "plain text (one document; its lines are the examples) or JSON lines (.jsonl, .json) of\n"
    "{\"text\": ...} or {\"prompt\": ..., \"completion\": ...} (the loss on the completion only);\n"
    "documents end with EOS, are joined and cut into blocks. Training runs in f32, with the\n"
    "config's dropout. Ctrl-C stops after the present step with a checkpoint in DIR.\n"
    "\n"
    "  -m, --model MODEL        checkpoint folder or hub name (GPT-2 architecture)\n"
    "      --train FILE         training data\n"
    "      --validation FILE    validation data (default: --validation-split of FILE)\n"
    "      --validation-split P percent of FILE's examples held out, the first ones (5; 0: none)\n"
    "  -o, --output DIR         the folder to create\n"
    "      --epochs N           passes over the data (3)\n"
    "      --max-steps N        optimiser steps, overriding --epochs\n"
    "      --lr X               peak learning rate (5e-5), decaying linearly to 0\n"
    "      --warmup-steps N     linear warm-up from 0 (0)\n"
    "      --batch-size N       blocks per micro-batch (8)\n"
    "      --grad-accum N       micro-batches per optimiser step (1)\n"
    "      --block-size N       tokens per block (the context, at most 1024)\n"
    "      --weight-decay X     AdamW's, on matrices only (0)\n"
    "      --max-grad-norm X    clip gradients to this global norm (1; 0: no clipping)\n"
    "      --adam-beta1 X, --adam-beta2 X, --adam-eps X   (0.9, 0.999, 1e-8)\n"
    "      --seed N             the order of the blocks and the dropout masks (42)\n"
    "      --no-dropout         train without dropout (default: the config's, e.g. GPT-2's 0.1)\n"
    "      --no-shuffle         blocks in file order\n"
    "      --eval-every N       evaluate every N steps too (the end always)\n"
    "      --save-every N       write DIR/checkpoint-STEP every N steps\n"
    "      --lora-rank R        train LoRA adapters of rank R instead of every weight; DIR then holds\n"
    "                           PEFT's adapter_config.json + adapter_model.safetensors (use with\n"
    "                           generate/serve/perplexity --lora DIR)\n"
    "      --lora-alpha A       the adapters' scale is A / R (2 x R)\n"
    "      --lora-targets LIST  PEFT's target_modules, comma-separated: a name adapts every layer\n"
    "                           matrix whose path ends in it (GPT-2: c_attn, c_proj (both), c_fc,\n"
    "                           attn.c_proj; OPT: q_proj, v_proj, ...); default PEFT's for the model\n"
    "      --merge              also write the model with the adapters merged into DIR\n"
    "      --resume CKPT        continue from a checkpoint folder, as the uninterrupted run would\n"
    "                           (give the same options; -m may then be left out)\n"
    "  -t, --threads N          threads (one per core)\n"
    "      --json               a JSON object a line for each step, evaluation and save\n"
    "      --log-every N        steps between lines when not on a terminal (10)\n"
    "  -h, --help               this help\n";

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct progress {
    int json, tty, log_every;
    double t0;
} progress;

static void print_duration(double s) {
    if (!(s >= 0) || s > 1e7) fputs("?", stderr);
    else if (s >= 3600) fprintf(stderr, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else fprintf(stderr, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static int on_event(void *user, const gpt2c_finetune_event *ev) {
    progress *pr = user;
    if (pr->json) {
        json_t *j = NULL;
        switch (ev->kind) {
        case GPT2C_FT_START:
            j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "event", "start", "parameters", (json_int_t)ev->n_params,
                          "train_blocks", (json_int_t)ev->train_blocks, "eval_blocks", (json_int_t)ev->eval_blocks,
                          "block_size", (json_int_t)ev->block_size, "max_steps", (json_int_t)ev->max_steps);
            break;
        case GPT2C_FT_STEP:
            j = json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f}", "event", "step", "step", (json_int_t)ev->step, "epoch",
                          ev->epoch, "loss", ev->loss, "learning_rate", ev->lr, "grad_norm", ev->grad_norm,
                          "tokens_per_s", ev->tokens_per_s);
            break;
        case GPT2C_FT_EVAL:
            j = json_pack("{s:s, s:I, s:f, s:f}", "event", "eval", "step", (json_int_t)ev->step, "eval_loss",
                          ev->eval_loss, "perplexity", ev->eval_perplexity);
            break;
        case GPT2C_FT_SAVE:
            j = json_pack("{s:s, s:I, s:s}", "event", "save", "step", (json_int_t)ev->step, "path", ev->path);
            break;
        }
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
        if (s) printf("%s\n", s), fflush(stdout);
        free(s);
        json_decref(j);
        return interrupted;
    }
    switch (ev->kind) {
    case GPT2C_FT_START:
        fprintf(stderr, "%s: %.4gM trainable parameters; %ld training blocks of %ld tokens, %ld for evaluation; %ld steps\n",
                prog, (double)ev->n_params / 1e6, ev->train_blocks, ev->block_size, ev->eval_blocks, ev->max_steps);
        break;
    case GPT2C_FT_STEP:
        if (!pr->tty && ev->step % pr->log_every && ev->step != ev->max_steps) break;
        fprintf(stderr, "%sstep %ld/%ld | epoch %.2f | loss %.4f | lr %.3g | %.0f tokens/s | ETA ", pr->tty ? "\r\033[K" : "",
                ev->step, ev->max_steps, ev->epoch, ev->loss, ev->lr, ev->tokens_per_s);
        print_duration((now_s() - pr->t0) / (double)ev->step * (double)(ev->max_steps - ev->step));
        if (!pr->tty) fputc('\n', stderr);
        break;
    case GPT2C_FT_EVAL:
        fprintf(stderr, "%sstep %ld: eval loss %.4f, perplexity %.3f\n", pr->tty ? "\r\033[K" : "", ev->step,
                ev->eval_loss, ev->eval_perplexity);
        break;
    case GPT2C_FT_SAVE:
        fprintf(stderr, "%swrote %s\n", pr->tty ? "\r\033[K" : "", ev->path);
        break;
    }
    return interrupted;
}

int cmd_finetune(int argc, char **argv) {
    gpt2c_finetune_params p;
    gpt2c_finetune_defaults(&p);
    const char *model = NULL;
    int json = 0, log_every = 10, c;
    enum { O_TRAIN = 256, O_VAL, O_SPLIT, O_EPOCHS, O_STEPS, O_LR, O_WARM, O_BATCH, O_ACC, O_BLOCK, O_WD, O_CLIP,
           O_B1, O_B2, O_EPS, O_SEED, O_NOSHUF, O_EVAL, O_SAVE, O_RESUME, O_JSON, O_LOG, O_NODROP,
           O_RANK, O_ALPHA, O_TARGETS, O_MERGE };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},        {"train", required_argument, 0, O_TRAIN},
        {"validation", required_argument, 0, O_VAL}, {"validation-split", required_argument, 0, O_SPLIT},
        {"output", required_argument, 0, 'o'},       {"epochs", required_argument, 0, O_EPOCHS},
        {"max-steps", required_argument, 0, O_STEPS}, {"lr", required_argument, 0, O_LR},
        {"warmup-steps", required_argument, 0, O_WARM}, {"batch-size", required_argument, 0, O_BATCH},
        {"grad-accum", required_argument, 0, O_ACC}, {"block-size", required_argument, 0, O_BLOCK},
        {"weight-decay", required_argument, 0, O_WD}, {"max-grad-norm", required_argument, 0, O_CLIP},
        {"adam-beta1", required_argument, 0, O_B1},  {"adam-beta2", required_argument, 0, O_B2},
        {"adam-eps", required_argument, 0, O_EPS},   {"seed", required_argument, 0, O_SEED},
        {"no-shuffle", no_argument, 0, O_NOSHUF},    {"eval-every", required_argument, 0, O_EVAL},
        {"save-every", required_argument, 0, O_SAVE}, {"resume", required_argument, 0, O_RESUME},
        {"threads", required_argument, 0, 't'},      {"json", no_argument, 0, O_JSON},
        {"log-every", required_argument, 0, O_LOG},  {"no-dropout", no_argument, 0, O_NODROP},
        {"lora-rank", required_argument, 0, O_RANK}, {"lora-alpha", required_argument, 0, O_ALPHA},
        {"lora-targets", required_argument, 0, O_TARGETS}, {"merge", no_argument, 0, O_MERGE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    opterr = 0;
    int n;
    float f;
    while ((c = getopt_long(argc, argv, ":m:o:t:h", lo, NULL)) != -1) {
        const char *bad = NULL;
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': p.output_dir = optarg; break;
        case O_TRAIN: p.train_file = optarg; break;
        case O_VAL: p.validation_file = optarg; break;
        case O_SPLIT:
            if (parse_float(optarg, &f) || !(f >= 0 && f < 100)) bad = "--validation-split: a percent in [0, 100)";
            else p.validation_split = f;
            break;
        case O_EPOCHS:
            if (parse_int(optarg, 1, 1000000, &p.epochs)) bad = "--epochs: a whole number >= 1";
            break;
        case O_STEPS:
            if (parse_int(optarg, 1, 2000000000, &n)) bad = "--max-steps: a whole number >= 1";
            else p.max_steps = n;
            break;
        case O_WARM:
            if (parse_int(optarg, 0, 2000000000, &n)) bad = "--warmup-steps: a whole number >= 0";
            else p.warmup_steps = n;
            break;
        case O_EVAL:
            if (parse_int(optarg, 1, 2000000000, &n)) bad = "--eval-every: a whole number >= 1";
            else p.eval_every = n;
            break;
        case O_SAVE:
            if (parse_int(optarg, 1, 2000000000, &n)) bad = "--save-every: a whole number >= 1";
            else p.save_every = n;
            break;
        case O_BATCH:
            if (parse_int(optarg, 1, 65536, &p.batch_size)) bad = "--batch-size: a whole number in 1..65536";
            break;
        case O_ACC:
            if (parse_int(optarg, 1, 65536, &p.grad_accum)) bad = "--grad-accum: a whole number in 1..65536";
            break;
        case O_BLOCK:
            if (parse_int(optarg, 2, 1 << 20, &p.block_size)) bad = "--block-size: a whole number >= 2";
            break;
        case O_LOG:
            if (parse_int(optarg, 1, 2000000000, &log_every)) bad = "--log-every: a whole number >= 1";
            break;
        case 't':
            if (parse_int(optarg, 1, 1024, &p.n_threads)) bad = "--threads: a whole number in 1..1024";
            break;
        case O_SEED:
            if (parse_int(optarg, 0, 2147483647, &n)) bad = "--seed: a whole number >= 0";
            else p.seed = (uint64_t)n;
            break;
        case O_LR: case O_WD: case O_CLIP: case O_B1: case O_B2: case O_EPS: {
            if (parse_float(optarg, &f) || !(f >= 0) || !isfinite(f)) {
                bad = "a learning rate, weight decay, norm, beta or eps must be a number >= 0";
                break;
            }
            *(c == O_LR ? &p.lr : c == O_WD ? &p.weight_decay : c == O_CLIP ? &p.max_grad_norm
              : c == O_B1 ? &p.adam_beta1 : c == O_B2 ? &p.adam_beta2 : &p.adam_eps) = f;
            break;
        }
        case O_NOSHUF: p.shuffle = 0; break;
        case O_NODROP: p.no_dropout = 1; break;
        case O_RANK:
            if (parse_int(optarg, 1, 4096, &p.lora_rank)) bad = "--lora-rank: a whole number in 1..4096";
            break;
        case O_ALPHA:
            if (parse_float(optarg, &f) || !(f > 0) || !isfinite(f)) bad = "--lora-alpha: a number > 0";
            else p.lora_alpha = f;
            break;
        case O_TARGETS: p.lora_targets = optarg; break;
        case O_MERGE: p.lora_merge = 1; break;
        case O_RESUME: p.resume_dir = optarg; break;
        case O_JSON: json = 1; break;
        case 'h': fputs(FINETUNE_HELP, stdout); return 0;
        default: return option_error(c, argv, lo);
        }
        if (bad) return usage_error("%s", bad);
    }
    if (optind < argc) return usage_error("finetune: unexpected argument '%s'", argv[optind]);
    if ((p.lora_alpha > 0 || p.lora_targets || p.lora_merge) && !p.lora_rank)
        return usage_error("%s", "finetune: --lora-alpha, --lora-targets and --merge need --lora-rank");
    if (p.lora_rank && !model) return usage_error("%s", "finetune: LoRA needs -m MODEL (the base), resuming too");
    if ((!model && !p.resume_dir) || !p.train_file || !p.output_dir)
        return usage_error("%s", "finetune: -m MODEL, --train FILE and -o DIR are required");
    if (!(p.adam_beta1 < 1 && p.adam_beta2 < 1) || !(p.adam_eps > 0))
        return usage_error("%s", "finetune: betas must be below 1 and eps above 0");
    struct stat sb;
    if (!p.resume_dir && lstat(p.output_dir, &sb) == 0)
        return usage_error("finetune: %s exists; give a new folder", p.output_dir);
    char *dir = NULL;
    if (model) {
        int rc;
        if (!(dir = resolve_model(model, GPT2C_HUB_MODEL | GPT2C_HUB_TOKENIZER, &rc))) return rc;
        p.model_dir = dir;
    }
    progress pr = {.json = json, .tty = isatty(2), .log_every = log_every, .t0 = now_s()};
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char msg[600];
    int stopped = 0;
    gpt2c_status st = gpt2c_finetune(&p, on_event, &pr, &stopped, msg, sizeof msg);
    gpt2c_free(dir);
    if (pr.tty && !json) fputc('\n', stderr);
    if (st) {
        fprintf(stderr, "%s: %s\n", prog, msg);
        return st == GPT2C_ERR_INVALID ? EXIT_USAGE : EXIT_RUN;
    }
    if (stopped) {
        fprintf(stderr, "%s: interrupted; continue with --resume and the newest %s/checkpoint-STEP\n", prog,
                p.output_dir);
        return 130;
    }
    return 0;
}
