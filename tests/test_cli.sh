#!/bin/sh
# test_cli.sh -- the gpt2c command line end to end: help, exit codes, tokenize /
# detokenize, generate (text, --json, --logprobs, --no-cache, --truncate) and errors.
# Usage: tests/test_cli.sh BUILD_DIR REF_DIR   (run from the repository root)
BUILD=${1:-build}
REF=${2:-$BUILD/ref}
BIN=$BUILD/gpt2c
PY=${PYTHON:-/usr/bin/python3}
TOK=tests/fixtures/gpt2-tokenizer
CK=$REF/tiny-f32
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect_exit CODE DESCRIPTION -- command...
expect_exit() {
    want=$1; what=$2; shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -eq "$want" ]; then ok; else bad "$what: exit $got, expected $want; stderr: $(cat "$TMP/err")"; fi
}

expect_stderr() { # NEEDLE DESCRIPTION: the last command's stderr holds NEEDLE on its only line
    if grep -qF -- "$1" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]; then ok; else bad "$2: stderr was: $(cat "$TMP/err")"; fi
}

expect_stdout() { # EXPECTED DESCRIPTION
    if [ "$(cat "$TMP/out")" = "$1" ]; then ok; else bad "$2: got '$(cat "$TMP/out")', expected '$1'"; fi
}

# Help and usage errors.
expect_exit 0 "--help" -- $BIN --help
grep -q "generate" "$TMP/out" && ok || bad "--help lists commands"
for c in generate tokenize detokenize info; do
    expect_exit 0 "$c --help" -- $BIN $c --help
    grep -q "usage: gpt2c $c" "$TMP/out" && ok || bad "$c --help shows its usage"
done
expect_exit 0 "--version" -- $BIN --version
expect_exit 2 "no arguments" -- $BIN
expect_exit 2 "unknown command" -- $BIN frobnicate
expect_stderr "unknown command 'frobnicate'" "unknown command message"
expect_exit 2 "unknown option" -- $BIN generate -m "$CK" -p hi --frob
expect_stderr "unknown option '--frob'" "unknown option message"
expect_exit 2 "bad number" -- $BIN generate -m "$CK" -p hi --max-new-tokens abc
expect_stderr "--max-new-tokens: 'abc'" "bad number message"
expect_exit 2 "missing value" -- $BIN generate -m "$CK" -p
expect_stderr "needs a value" "missing value message"
expect_exit 2 "missing model" -- $BIN generate -p hi
expect_stderr "-m DIR is required" "missing model message"
expect_exit 2 "two prompts" -- $BIN generate -m "$CK" -p hi --ids 1,2
expect_exit 2 "bad penalty" -- $BIN generate -m "$CK" -p hi --repetition-penalty -1
expect_exit 2 "bad logprobs" -- $BIN generate -m "$CK" -p hi --logprobs 50
expect_exit 2 "bad KV cache type" -- $BIN generate -m "$CK" -p hi --kv-cache f8
expect_stderr "--kv-cache: 'f8'" "bad KV cache type message"
expect_exit 0 "an f16 KV cache" -- $BIN generate -m "$CK" -p hi -n 4 --kv-cache f16
expect_exit 2 "bad ids" -- $BIN detokenize -m "$TOK" 1 x
expect_exit 2 "id out of vocabulary" -- $BIN detokenize -m "$TOK" 50257
expect_stderr "id 50257 is not in the vocabulary" "out of vocabulary message"
# An architecture gpt2c does not run: refused at load (exit 1), naming the ones it does.
mkdir -p "$TMP/llama" && cp "$CK/model.safetensors" "$TMP/llama/" &&
    printf '{"model_type": "llama", "hidden_size": 64}' >"$TMP/llama/config.json"
expect_exit 1 "unknown model_type" -- $BIN info -m "$TMP/llama"
expect_stderr "model_type 'llama' is not supported (supported: gpt2, gpt_neo, opt, gpt_neox, bloom, gpt_bigcode, codegen)" "the supported list"

# Tokenize and detokenize.
expect_exit 0 "tokenize" -- $BIN tokenize -m "$TOK" -p "Hello, world!"
expect_stdout "15496 11 995 0" "tokenize ids"
printf 'Hello, world!' | $BIN tokenize -m "$TOK" >"$TMP/out" 2>&1 && expect_stdout "15496 11 995 0" "tokenize from stdin"
expect_exit 0 "detokenize" -- $BIN detokenize -m "$TOK" 15496 11 995 0
expect_stdout "Hello, world!" "detokenize text"
echo "15496, 5633" | $BIN detokenize -m "$TOK" --no-cleanup >"$TMP/out" && expect_stdout "Hello ?" "detokenize stdin, no clean-up"
expect_exit 0 "detokenize skip special" -- $BIN detokenize -m "$TOK" --skip-special 15496 50256
expect_stdout "Hello" "skip special"
expect_exit 0 "tokenize json" -- $BIN tokenize -m "$TOK" -p "a<|endoftext|>" --json
expect_stdout '{"ids": [64, 50256], "tokens": ["a", "<|endoftext|>"]}' "tokenize --json"
printf 'bad \377 byte' >"$TMP/bad.txt"
expect_exit 2 "invalid UTF-8" -- $BIN tokenize -m "$TOK" -f "$TMP/bad.txt"
expect_stderr "not valid UTF-8 (byte offset 4" "invalid UTF-8 message"

# Generate.
expect_exit 1 "missing checkpoint" -- $BIN generate -m "$TMP/none" -p hi
expect_stderr "$TMP/none: no such folder" "missing checkpoint message"
mkdir -p "$TMP/empty"
expect_exit 1 "folder without a checkpoint" -- $BIN generate -m "$TMP/empty" -p hi
expect_stderr "$TMP/empty/config.json" "empty folder message"
expect_exit 0 "generate text" -- $BIN generate -m "$CK" -p "Hello, I'm" -n 5
case "$(cat "$TMP/out")" in "Hello, I'm"*) ok ;; *) bad "text output starts with the prompt" ;; esac
expect_exit 0 "generate json" -- $BIN generate -m "$CK" -p "Hello, I'm" -n 6 --json --logprobs 3
cp "$TMP/out" "$TMP/gen.json"
expect_exit 0 "generate json, no cache" -- $BIN generate -m "$CK" -p "Hello, I'm" -n 6 --json --no-cache
$PY - "$TMP/gen.json" "$TMP/out" <<'PYEOF' && ok || bad "generate --json fields, logprobs, cache equality"
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
assert a["prompt_ids"] == [15496, 11, 314, 1101], a["prompt_ids"]
sa, sb = a["sequences"][0], b["sequences"][0]
assert len(sa["token_ids"]) == 6 and sa["finish_reason"] == "length"
assert sa["token_ids"] == sb["token_ids"], (sa["token_ids"], sb["token_ids"])
assert len(sa["logprobs"]) == 6
for step, tid in zip(sa["logprobs"], sa["token_ids"]):
    assert step["id"] == tid and len(step["top"]) == 3
    assert step["logprob"] <= 0 and step["top"][0]["logprob"] >= step["top"][1]["logprob"] >= step["top"][2]["logprob"]
    assert step["top"][0]["id"] == tid and abs(step["top"][0]["logprob"] - step["logprob"]) < 1e-6  # greedy
for k in ("load_s", "prefill_s", "decode_s"):
    assert a["timings"][k] >= 0
assert a["params"]["defaults"] == "generate" and a["params"]["do_sample"] is False
PYEOF

# Sampling: a seed reproduces, no seed differs, sequences differ from each other.
S="-m $CK -p Hello -n 12 --do-sample --top-k 0 --temperature 1.5 --num-return-sequences 3 --json"
expect_exit 0 "sample seed 7" -- $BIN generate $S --seed 7
cp "$TMP/out" "$TMP/s1.json"
expect_exit 0 "sample seed 7 again" -- $BIN generate $S --seed 7 --no-cache
cp "$TMP/out" "$TMP/s2.json"
expect_exit 0 "sample no seed" -- $BIN generate $S
cp "$TMP/out" "$TMP/s3.json"
expect_exit 0 "sample no seed again" -- $BIN generate $S
$PY - "$TMP/s1.json" "$TMP/s2.json" "$TMP/s3.json" "$TMP/out" <<'PYEOF' && ok || bad "seeded sampling reproduces; unseeded differs"
import json, sys
ids = [[s["token_ids"] for s in json.load(open(f))["sequences"]] for f in sys.argv[1:]]
assert ids[0] == ids[1], "same seed, same tokens (with and without the cache)"
assert len(ids[0]) == 3 and len({tuple(x) for x in ids[0]}) == 3, "three different sequences"
assert ids[2] != ids[3], "no seed: runs differ"
PYEOF

# Stop strings: the streamed text equals the JSON text, which ends before the stop.
expect_exit 0 "no stop" -- $BIN generate -m "$CK" -p Hello -n 24 --do-sample --seed 3 --json
STOP=$($PY -c "import json; t=json.load(open('$TMP/out'))['sequences'][0]['text']; print(t[len(t)//2:len(t)//2+3])")
cp "$TMP/out" "$TMP/nostop.json"
expect_exit 0 "stop json" -- $BIN generate -m "$CK" -p Hello -n 24 --do-sample --seed 3 --json --stop "$STOP" --stop "never-there"
cp "$TMP/out" "$TMP/stop.json"
expect_exit 0 "stop streamed" -- $BIN generate -m "$CK" -p Hello -n 24 --do-sample --seed 3 --stop "$STOP" --stop "never-there" --new-only
$PY - "$TMP/nostop.json" "$TMP/stop.json" "$TMP/out" "$STOP" <<'PYEOF' && ok || bad "stop strings: stream = result, cut before the stop"
import json, sys
full = json.load(open(sys.argv[1]))["sequences"][0]["text"]
s = json.load(open(sys.argv[2]))["sequences"][0]
streamed = open(sys.argv[3], encoding="utf-8").read()
stop = sys.argv[4]
assert s["finish_reason"] == "stop", s["finish_reason"]
assert s["text"] == full[:full.find(stop)], (s["text"], full, stop)
assert streamed == s["text"] + "\n", (streamed, s["text"])
PYEOF

# Beam search from the command line.
expect_exit 0 "beam search" -- $BIN generate -m "$CK" -p Hello -n 6 --num-beams 3 --num-return-sequences 2 --json
$PY -c "
import json; d=json.load(open('$TMP/out')); s=d['sequences']
assert len(s)==2 and s[0]['score']>=s[1]['score'] and all(len(x['token_ids'])==6 for x in s)" && ok || bad "beam search output"

# Parameter errors: one line, exit 2.
expect_exit 2 "temperature 0" -- $BIN generate -m "$CK" -p hi --do-sample --temperature 0
expect_stderr "--temperature" "temperature message"
expect_exit 2 "top-p 0" -- $BIN generate -m "$CK" -p hi --top-p 0
expect_exit 2 "top-p above 1" -- $BIN generate -m "$CK" -p hi --top-p 1.5
expect_exit 2 "top-k negative" -- $BIN generate -m "$CK" -p hi --top-k -1
expect_exit 2 "greedy with n > 1" -- $BIN generate -m "$CK" -p hi --num-return-sequences 2
expect_stderr "num_return_sequences > 1 needs sampling or beam search" "greedy n message"
expect_exit 2 "beams < n" -- $BIN generate -m "$CK" -p hi --num-beams 2 --num-return-sequences 3
expect_stderr "num_return_sequences (3) must be <= num_beams (2)" "beams message"
expect_exit 2 "empty stop" -- $BIN generate -m "$CK" -p hi --stop ""
expect_stderr "stop string is empty" "empty stop message"
expect_exit 2 "bad logit bias" -- $BIN generate -m "$CK" -p hi --logit-bias 5
expect_exit 2 "logit bias id" -- $BIN generate -m "$CK" -p hi --logit-bias 99999:1
expect_stderr "logit_bias: token 99999" "logit bias id message"

# Defaults: generate() vs pipeline(), from the checkpoint's own files.
mkdir -p "$TMP/ck" && cp "$CK"/* "$TMP/ck/"
$PY - "$TMP/ck/config.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["task_specific_params"] = {"text-generation": {"do_sample": True, "max_length": 50}}
json.dump(c, open(sys.argv[1], "w"))
PYEOF
echo '{"bos_token_id": 50256, "eos_token_id": 50256, "top_k": 7, "repetition_penalty": 1.2}' >"$TMP/ck/generation_config.json"
expect_exit 0 "generate defaults" -- $BIN generate -m "$TMP/ck" -p Hello --json --eos-id -1
$PY -c "
import json; d=json.load(open('$TMP/out')); p=d['params']
assert p['defaults']=='generate' and p['do_sample'] is False and p['max_length']==20 and p['top_k']==7
assert abs(p['repetition_penalty']-1.2)<1e-6 and len(d['sequences'][0]['token_ids'])==19" && ok || bad "generate() defaults from generation_config.json"
expect_exit 0 "pipeline defaults" -- $BIN generate -m "$TMP/ck" -p Hello --json --pipeline --eos-id -1 --seed 1
$PY -c "
import json; d=json.load(open('$TMP/out')); p=d['params']
assert p['defaults']=='pipeline' and p['do_sample'] is True and p['max_length']==50 and p['top_k']==7
assert len(d['sequences'][0]['token_ids'])==49" && ok || bad "pipeline() defaults from task_specific_params"
expect_exit 0 "options override defaults" -- $BIN generate -m "$TMP/ck" -p Hello --json --pipeline --greedy -n 3
$PY -c "
import json; d=json.load(open('$TMP/out')); assert d['params']['do_sample'] is False and len(d['sequences'][0]['token_ids'])==3" && ok || bad "command line overrides defaults"

# Prompts longer than the context: an error, or kept at their end with --truncate.
$PY -c "print(' hello' * 1100, end='')" >"$TMP/long.txt"
expect_exit 2 "prompt over context" -- $BIN generate -m "$CK" -f "$TMP/long.txt" -n 2
expect_stderr "more than the model's context of 1024" "context message"
expect_exit 0 "--truncate" -- $BIN generate -m "$CK" -f "$TMP/long.txt" -n 2 --json --truncate
$PY -c "import json,sys; d=json.load(open('$TMP/out')); assert len(d['prompt_ids'])==1022 and len(d['sequences'][0]['token_ids'])==2" && ok || bad "--truncate keeps 1022 prompt tokens"
expect_exit 0 "info" -- $BIN info -m "$CK"
grep -q '"n_layer": 2' "$TMP/out" && ok || bad "info shows n_layer"

# The golden continuation from the command line, when ../shared is present.
G=${GPT2C_GOLDEN:-../shared/golden}
if [ -d "$G/checkpoints/tiny" ]; then
    expect_exit 0 "golden generate" -- $BIN generate -m "$G/checkpoints/tiny" -p "Hello, I'm a language model," -n 40 --json
    $PY - "$TMP/out" tests/fixtures/golden/tiny.json <<'PYEOF' && ok || bad "CLI greedy equals transformers"
import json, sys
got = json.load(open(sys.argv[1]))["sequences"][0]; want = json.load(open(sys.argv[2]))["prompts"]["seed"]["greedy"]
assert got["token_ids"] == want["new_ids"], got["token_ids"]
assert got["text"] == want["text"]
PYEOF
else
    echo "skipped: golden CLI check ($G/checkpoints not found)"
fi

# Resource limits: a 10 MB prompt is refused before it is tokenized (fast, little
# memory); --truncate still takes it, keeping the end.
head -c 7500000 /dev/zero | tr '\0' 'a' | fold -w 75 > "$TMP/big.txt"
start=$(date +%s)
expect_exit 2 "a 7.5 MB prompt" -- $BIN generate -m "$CK" -f "$TMP/big.txt" -n 1
expect_stderr "more than the model's context" "a 7.5 MB prompt is refused early"
[ $(( $(date +%s) - start )) -le 5 ] && ok || bad "the 7.5 MB prompt took over 5 s to refuse"
expect_exit 0 "a 7.5 MB prompt with --truncate" -- $BIN generate -m "$CK" -f "$TMP/big.txt" -n 1 --truncate --json --no-stream

# bench: one JSON object whose figures are consistent with each other (no
# speed is asserted: timings belong to benchmarks, not tests).
for t in 0 1; do
    expect_exit 0 "bench --threads $t" -- $BIN bench -m "$CK" --threads $t --prompt-tokens 5 --gen-tokens 4 --batch 3 --json
    $PY - "$TMP/out" $t "$CK/config.json" <<'PYEOF' && ok || bad "bench --threads $t reports what it ran"
import json, os, sys
b = json.load(open(sys.argv[1])); t = int(sys.argv[2]); cfg = json.load(open(sys.argv[3]))
assert b["threads"] == t if t else 1 <= b["threads"] <= os.cpu_count(), b["threads"]
assert (b["batch"], b["prompt_tokens"], b["gen_tokens"]) == (3, 5, 4), b
assert b["weight_dtype"] == "F32" and b["decode_tokens_per_s"] > 0 and b["roofline_gb_per_s"] > 0
assert abs(b["decode_tokens_per_s"] * b["decode_ms_per_step"] / 1000 - 3) < 0.01, b
assert abs(b["achieved_gb_per_s"] / b["roofline_gb_per_s"] - b["roofline_fraction"]) < 0.01, b
# The roofline in tokens/s counts the batch (one read of the weights a step).
# Tolerances: the printed digits (fractions 0.001, GFLOP/s 0.1) and 1%; a stall
# during the short FMA probe can make the peak small (7.8 GFLOP/s once in CI).
close = lambda a, b, d: abs(a - b) <= d + 0.01 * abs(b)
assert close(b["decode_tokens_per_s"] / b["roofline_decode_tokens_per_s"], b["roofline_fraction"], 0.001), b
# The flops counted: 2 per weight of the layers per token, attention's 4 C per
# position attended per layer, and the LM head (2 V C) for every decoded token
# but once per prompt (its last token's logits).
C, L, V = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"]
F = cfg.get("n_inner") or 4 * C
P, G, B = b["prompt_tokens"], b["gen_tokens"], b["batch"]
layers, head = L * (4 * C * C + 2 * C * F), 2 * V * C
prefill = B * (2 * layers * P + L * 4 * C * P * (P + 1) / 2 + head)
decode_token = 2 * layers + head + L * 4 * C * (P + G / 2)
assert close(b["prefill_gflops"], prefill / (P * B) * b["prefill_tokens_per_s"] / 1e9, 0.051), b
assert close(b["decode_gflops"], decode_token * b["decode_tokens_per_s"] / 1e9, 0.051), b
assert close(b["decode_peak_fraction"] * b["fma_peak_gflops"], b["decode_gflops"],
             0.1 + 0.0005 * b["fma_peak_gflops"] + 0.05 * b["decode_peak_fraction"]), b
PYEOF
done

# The KV cache bench reports: keys and values of every layer, per position of a
# sequence; GPTBigCode's multi-query attention keeps one head's (n_head times less
# than multi-head attention of the same width).
for a in starcoder-mqa-f32 starcoder-mha-f32; do
    expect_exit 0 "bench $a" -- $BIN bench -m "$REF/$a" --prompt-tokens 3 --gen-tokens 2 --batch 2 --json
    cp "$TMP/out" "$TMP/$a.json"
done
$PY - "$TMP" "$REF" <<'PYEOF' && ok || bad "bench: the KV cache's bytes, one head's with multi-query attention"
import json, sys
for a in ("starcoder-mqa-f32", "starcoder-mha-f32"):
    b = json.load(open(f"{sys.argv[1]}/{a}.json"))
    c = json.load(open(f"{sys.argv[2]}/{a}/config.json"))
    kv_heads = 1 if c["multi_query"] else c["n_head"]
    assert b["kv_cache_bytes_per_token"] == 2 * c["n_layer"] * kv_heads * (c["n_embd"] // c["n_head"]) * 4, (a, b)
    assert b["kv_cache_bytes"] == b["kv_cache_bytes_per_token"] * 2 * (3 + 2), (a, b)
PYEOF

# An empty prompt starts from the bos token, as generate() does: BLOOM's <s> (1),
# not its </s> (2); GPT-2's is <|endoftext|> either way.
expect_exit 0 "empty prompt, BLOOM" -- $BIN generate -m "$REF/bloom-mini-f32" -p "" -n 1 --json --no-stream
$PY -c "import json, sys; assert json.load(open(sys.argv[1]))['prompt_ids'] == [1]" "$TMP/out" && ok ||
    bad "an empty prompt starts from BLOOM's bos: $(cat "$TMP/out")"

# Papercuts: exit codes by class, generation length, JSON Lines, stop strings
# and token ids, vocabulary token strings, messages, the empty prompt.
expect_exit 0 "--help" -- $BIN --help
grep -q "^  2  usage error" "$TMP/out" && grep -q "^  1  failure while running" "$TMP/out" && ok || bad "--help states the exit codes"
expect_exit 0 "generate --help" -- $BIN generate --help
grep -q "^Exit codes: 0 success; 1 " "$TMP/out" && ok || bad "generate --help states the exit codes"
expect_exit 2 "beam search with logprobs" -- $BIN generate -m "$CK" -p hi --num-beams 2 --logprobs 1
expect_stderr "logprobs are not available with beam search" "beam search with logprobs message"
$PY -c "print(','.join(['15496'] * 1100))" >"$TMP/long.ids"
expect_exit 2 "--ids over the context" -- $BIN generate -m "$CK" --ids "$(cat "$TMP/long.ids")" -n 1
expect_stderr "more than the model's context of 1024" "--ids over the context message"
expect_exit 2 "a prompt that is not UTF-8" -- $BIN generate -m "$CK" -f "$TMP/bad.txt" -n 1
expect_stderr "not valid UTF-8" "a prompt that is not UTF-8: message"
expect_exit 2 "--ids outside the vocabulary" -- $BIN generate -m "$CK" --ids 15496,99999 -n 1
expect_stderr "id 99999 is not in the vocabulary" "--ids names the id outside the vocabulary"
expect_exit 1 "a missing prompt file" -- $BIN generate -m "$CK" -f "$TMP/no-such-prompt.txt"
expect_exit 1 "-m a file" -- $BIN generate -m "$CK/config.json" -p hi
expect_stderr "$CK/config.json is a file; -m takes a checkpoint folder" "-m a file says a folder is expected"
expect_exit 1 "tokenize -m a file that is no tokenizer.json" -- $BIN tokenize -m "$CK/model.safetensors" -p hi
expect_stderr "is a file; -m takes a tokenizer folder" "tokenize -m a file message"
$PY -c "print(' hello' * 25, end='')" >"$TMP/p25.txt"
expect_exit 0 "a prompt of max_length tokens" -- $BIN generate -m "$CK" -f "$TMP/p25.txt" --json
expect_stderr "the prompt is 25 tokens, but max_length is 20" "max_length warning"
grep -qF -- "-n/--max-new-tokens" "$TMP/err" && ok || bad "the max_length warning says how to ask for more"
$PY -c "import json; s = json.load(open('$TMP/out'))['sequences'][0]; assert len(s['token_ids']) == 1, s" && ok || bad "one new token past max_length"
expect_exit 0 "no warning with -n" -- $BIN generate -m "$CK" -f "$TMP/p25.txt" -n 2 --json
[ ! -s "$TMP/err" ] && ok || bad "no max_length warning with -n: $(cat "$TMP/err")"
expect_exit 0 "-n 0" -- $BIN generate -m "$CK" -p "Hello" -n 0
expect_stdout "Hello" "-n 0 prints the prompt alone"
for mode in --no-stream --stream; do
    expect_exit 0 "-n 0 --json $mode" -- $BIN generate -m "$CK" -p "Hello" -n 0 --json $mode
    $PY -c "
import json; s = json.loads(open('$TMP/out').read().strip().splitlines()[-1] if '$mode' == '--stream' else open('$TMP/out').read())
s = s['sequences'][0]; assert (s['text'], s['token_ids'], s['finish_reason']) == ('', [], 'length'), s" && ok || bad "-n 0 $mode: no new token"
done
expect_exit 0 "--stream --json" -- $BIN generate -m "$CK" -p Hello -n 5 --stream --json
$PY - "$TMP/out" <<'PYEOF' && ok || bad "--stream --json is JSON Lines, the result last"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
objs = [json.loads(l) for l in lines]  # every line is one whole object
assert len(objs) == 6 and all("token_id" in o for o in objs[:5]), lines
assert [o["token_id"] for o in objs[:5]] == objs[5]["sequences"][0]["token_ids"]
PYEOF
# A stop string that begins exactly where a token begins: that token and those
# after it are dropped from token_ids (and logprobs), the ones before kept.
expect_exit 0 "no stop, for the token boundaries" -- $BIN generate -m "$CK" -p Hello -n 24 --do-sample --seed 3 --json
cp "$TMP/out" "$TMP/ids-nostop.json"
STOP2=$($PY - "$TMP/ids-nostop.json" "$BIN" "$TOK" <<'PYEOF'
import json, subprocess, sys
d = json.load(open(sys.argv[1])); s = d["sequences"][0]
def new_text(ids):
    args = [sys.argv[2], "detokenize", "-m", sys.argv[3], "--skip-special"] + [str(i) for i in d["prompt_ids"] + ids]
    return subprocess.run(args, capture_output=True, text=True).stdout[:-1][len(d["prompt"]):]
ids, t = s["token_ids"], s["text"]
for k in range(len(ids) // 2, len(ids)):
    before, piece = new_text(ids[:k]), new_text(ids[:k + 1])
    piece = piece[len(before):]
    if len(piece) >= 3 and t.find(piece) == len(before) and before:
        print(f"{k} {piece}")
        break
PYEOF
)
if [ -n "$STOP2" ]; then
    expect_exit 0 "stop at a token's start" -- $BIN generate -m "$CK" -p Hello -n 24 --do-sample --seed 3 --json --logprobs 2 --stop "${STOP2#* }"
    $PY - "$TMP/ids-nostop.json" "$TMP/out" "${STOP2%% *}" <<'PYEOF' && ok || bad "token_ids agree with the text a stop string cut"
import json, sys
full = json.load(open(sys.argv[1]))["sequences"][0]; s = json.load(open(sys.argv[2]))["sequences"][0]; k = int(sys.argv[3])
assert s["finish_reason"] == "stop" and full["text"].startswith(s["text"]), s
assert s["token_ids"] == full["token_ids"][:k], (s["token_ids"], full["token_ids"], k)
assert [e["id"] for e in s["logprobs"]] == s["token_ids"]
PYEOF
else
    bad "no token of the sampled text suits the stop-string check: $(cat "$TMP/ids-nostop.json")"
fi
expect_exit 0 "tokenize --json tokens" -- $BIN tokenize -m "$TOK" -p "Hello world 😀" --json
$PY -c "
import json; d = json.load(open('$TMP/out', encoding='utf-8'))
assert d == {'ids': [15496, 995, 30325, 222], 'tokens': ['Hello', '\u0120world', '\u0120\u00f0\u0141\u013a', '\u0122']}, d" && ok ||
    bad "tokenize --json shows vocab.json's strings: $(cat "$TMP/out")"
expect_exit 2 "a misspelt option" -- $BIN generate -m "$CK" -p hi --temprature 0.5
expect_stderr "unknown option '--temprature'; did you mean --temperature? (see 'gpt2c generate --help')" "a misspelt option: the nearest one, the command's help"
expect_exit 2 "a misspelt tokenize option" -- $BIN tokenize -m "$TOK" -p hi --jsn
expect_stderr "did you mean --json? (see 'gpt2c tokenize --help')" "tokenize points to its own help"
expect_exit 2 "serve, a misspelt option" -- $BIN serve -m "$TMP/none" --port 0 --slotz 2
expect_stderr "did you mean --slots? (see 'gpt2c serve --help')" "serve: the nearest option"
expect_exit 2 "an ambiguous abbreviation" -- $BIN generate -m "$CK" -p hi --to 1
expect_stderr "ambiguous option '--to': could be --top-k, --top-p" "ambiguous abbreviation message"
expect_exit 2 "a value for a flag" -- $BIN generate -m "$CK" -p hi --json=yes
expect_stderr "option '--json' takes no value" "a value for a flag message"
expect_exit 2 "a generate usage error" -- $BIN generate -p hi
expect_stderr "(see 'gpt2c generate --help')" "generate usage errors point to generate --help"
expect_exit 2 "an unknown command" -- $BIN frobnicate
expect_stderr "(see 'gpt2c --help')" "an unknown command points to gpt2c --help"
expect_exit 1 "convert into a missing folder" -- $BIN convert -m "$CK" --dtype f16 -o "$TMP/no/such"
expect_stderr "$TMP/no/such: No such file or directory" "convert names the folder given"
! grep -q incomplete "$TMP/err" && ok || bad "convert's error names the temporary folder: $(cat "$TMP/err")"
expect_exit 0 "one token, verbose" -- $BIN generate -m "$CK" -p hi -n 1 -v
expect_stderr "prompt 1 token in" "verbose: 1 token"
grep -qF "1 new token in" "$TMP/err" && ok || bad "verbose: 1 new token: $(cat "$TMP/err")"
expect_exit 0 "two tokens, verbose" -- $BIN generate -m "$CK" -p "hi there" -n 2 -v
grep -qF "prompt 2 tokens in" "$TMP/err" && grep -qF "2 new tokens in" "$TMP/err" && ok || bad "verbose: 2 tokens: $(cat "$TMP/err")"
expect_exit 0 "bench, one thread" -- $BIN bench -m "$CK" --threads 1 --prompt-tokens 1 --gen-tokens 2
grep -qF "1 thread, batch 1" "$TMP/out" && grep -qF "prefill: 1 token x 1" "$TMP/out" && ok || bad "bench: 1 thread, 1 token: $(cat "$TMP/out")"
# --runs: the rates are the median of N runs after the first.
expect_exit 0 "bench --runs 3" -- $BIN bench -m "$CK" --prompt-tokens 3 --gen-tokens 2 --runs 3 --json
$PY -c "import json,sys; b = json.load(open(sys.argv[1])); assert b['runs'] == 3 and b['prefill_tokens_per_s'] > 0, b" "$TMP/out" && ok || bad "bench --runs 3: $(cat "$TMP/out")"
expect_exit 2 "bench --runs 0" -- $BIN bench -m "$CK" --runs 0
expect_stderr "--runs" "bench --runs 0 names the option"
# --compute bf16 where the CPU has AVX512_BF16 (the bench says so), refused by name elsewhere; a bad
# value is a usage error.
if grep -q avx512_bf16 /proc/cpuinfo 2>/dev/null && [ -z "${GPT2C_KERNELS:-}" ]; then
    expect_exit 0 "bench --compute bf16" -- $BIN bench -m "$CK" --prompt-tokens 70 --gen-tokens 2 --compute bf16 --json
    $PY -c "import json,sys; b = json.load(open(sys.argv[1])); assert b['compute'] == 'bf16' and b['kernels'] == 'avx512bf16', b" "$TMP/out" && ok || bad "bench --compute bf16: $(cat "$TMP/out")"
    expect_exit 0 "kernel_bench, the bf16 product" -- "$BUILD/bench/kernel_bench" --calls 1 --dtype bf16p 70 64 100
    grep -qF "bf16p weights" "$TMP/out" && ok || bad "kernel_bench bf16p: $(cat "$TMP/out")"
fi
GPT2C_KERNELS=avx512vnni expect_exit 1 "generate --compute bf16 without the bf16 product" -- $BIN generate -m "$CK" -p hi -n 1 --compute bf16
expect_stderr "AVX512_BF16" "compute bf16 refused, naming AVX512_BF16"
expect_exit 2 "generate --compute f8" -- $BIN generate -m "$CK" -p hi -n 1 --compute f8
expect_stderr "--compute: 'f8' is not one of f32, bf16" "a bad --compute names the option"
# The server benches run (the release bench with this build on both sides): the texts agree.
expect_exit 0 "release_bench" -- $PY bench/release_bench.py -m "$CK" --rounds 1 --json "$BIN" "$BIN"
$PY -c "import json,sys; b = json.load(open(sys.argv[1])); assert b['same_text'] and b['prefill_512_ms']['new'] > 0 and b['decode_tokens_per_s']['draft'] > 0, b" "$TMP/out" && ok || bad "release_bench: $(cat "$TMP/out")"
expect_exit 0 "prompt_cache_bench" -- $PY bench/prompt_cache_bench.py "$BIN" -m "$CK" --rounds 1 --prefix-tokens 100 --json
$PY -c "import json,sys; b = json.load(open(sys.argv[1])); assert b['same_text'] and b['prefix_tokens'] >= 100, b" "$TMP/out" && ok || bad "prompt_cache_bench: $(cat "$TMP/out")"
# The kernel bench (bench/kernel_bench.c) runs and refuses a bad shape.
expect_exit 0 "kernel_bench" -- "$BUILD/bench/kernel_bench" --calls 1 --dtype f16 70 64 100
grep -qF "70 x    64 x   100: best" "$TMP/out" && ok || bad "kernel_bench: $(cat "$TMP/out")"
expect_exit 2 "kernel_bench, a bad shape" -- "$BUILD/bench/kernel_bench" 0 64 64
# The empty prompt starts from <|endoftext|>, as the server's "prompt": "" does.
expect_exit 0 "an empty prompt" -- $BIN generate -m "$CK" -p "" -n 4 --json
cp "$TMP/out" "$TMP/empty.json"
expect_exit 0 "<|endoftext|> as the prompt" -- $BIN generate -m "$CK" --ids 50256 -n 4 --json
$PY -c "
import json; e = json.load(open('$TMP/empty.json')); i = json.load(open('$TMP/out'))
assert e['prompt'] == '' and e['prompt_ids'] == [50256], e
assert e['sequences'][0]['token_ids'] == i['sequences'][0]['token_ids'] and len(e['sequences'][0]['token_ids']) == 4
assert e['sequences'][0]['text'] == i['sequences'][0]['text']" && ok || bad "an empty prompt generates from <|endoftext|>"
expect_exit 0 "an empty prompt, plain text" -- $BIN generate -m "$CK" -p "" -n 4 --new-only
[ "$(cat "$TMP/out")" = "$($PY -c "import json; print(json.load(open('$TMP/empty.json'))['sequences'][0]['text'])")" ] && ok ||
    bad "an empty prompt, plain text: $(cat "$TMP/out")"

# The library example (examples/generate.c, shown whole in the README), built
# against the shared and the static library: it prints what `gpt2c generate`
# does, greedy. Both libraries export the public API alone, and the shared
# one carries its SONAME.
$BIN generate -m "$CK" -p "Hello, my name is" -n 12 --greedy --no-stream >"$TMP/want" 2>/dev/null
for ex in generate generate-static; do
    expect_exit 0 "examples/$ex" -- $BUILD/examples/$ex "$CK" "Hello, my name is" 12
    [ "$(cat "$TMP/out")" = "$(cat "$TMP/want")" ] && ok ||
        bad "examples/$ex prints the CLI's text: '$(cat "$TMP/out")' vs '$(cat "$TMP/want")'"
done
expect_exit 1 "examples/generate on a missing folder" -- $BUILD/examples/generate "$TMP/none" "x" 1
$PY - README.md examples/generate.c <<'PYEOF' && ok || bad "README shows examples/generate.c as it is"
import re, sys
readme, src = open(sys.argv[1]).read(), open(sys.argv[2]).read()
assert "```c\n" + src + "```" in readme, "README's library example differs from examples/generate.c"
PYEOF
if command -v readelf >/dev/null; then
    readelf -d $BUILD/libgpt2c.so | grep -q 'SONAME.*\[libgpt2c\.so\.[0-9]*\]' && ok || bad "libgpt2c.so has a SONAME"
    others=$(nm -D --defined-only $BUILD/libgpt2c.so | awk 'NF == 3 && $3 !~ /^gpt2c_/ {print $3}' | head -5)
    [ -z "$others" ] && ok || bad "libgpt2c.so exports only gpt2c_ names: $others"
    others=$(nm -g --defined-only $BUILD/libgpt2c.a | awk 'NF == 3 && $3 !~ /^gpt2c_/ {print $3}' | head -5)
    [ -z "$others" ] && ok || bad "libgpt2c.a defines only gpt2c_ names globally: $others"
fi

# tools/install-deps.sh with everything installed: no apt, no root needed (an
# arm64 instance of a package once made every run call apt, and die without
# root). apt-get and sudo are replaced by failing stand-ins to prove it.
mkdir -p "$TMP/noapt"
for c in apt-get sudo; do printf '#!/bin/sh\necho "called $0" >&2; exit 1\n' >"$TMP/noapt/$c"; chmod +x "$TMP/noapt/$c"; done
PATH="$TMP/noapt:$PATH" sh tools/install-deps.sh >"$TMP/out" 2>"$TMP/err"
deps_rc=$?
if grep -q "installing:" "$TMP/out"; then
    echo "SKIP: install-deps stand-in check ($(cat "$TMP/out"): some packages are missing here)"
else
    [ $deps_rc -eq 0 ] && grep -q "every package is installed" "$TMP/out" && ! grep -q called "$TMP/err" && ok ||
        bad "install-deps with everything installed: $(cat "$TMP/out" "$TMP/err")"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
