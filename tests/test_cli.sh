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
expect_exit 2 "bad ids" -- $BIN detokenize -m "$TOK" 1 x
expect_exit 2 "id out of vocabulary" -- $BIN detokenize -m "$TOK" 50257
expect_stderr "id 50257 is not in the vocabulary" "out of vocabulary message"

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
expect_exit 1 "invalid UTF-8" -- $BIN tokenize -m "$TOK" -f "$TMP/bad.txt"
expect_stderr "not valid UTF-8 (byte offset 4" "invalid UTF-8 message"

# Generate.
expect_exit 1 "missing checkpoint" -- $BIN generate -m "$TMP/none" -p hi
expect_stderr "config.json" "missing checkpoint message"
expect_exit 0 "generate text" -- $BIN generate -m "$CK" -p "Hello, I'm" -n 5
case "$(cat "$TMP/out")" in "Hello, I'm"*) ok ;; *) bad "text output starts with the prompt" ;; esac
expect_exit 0 "generate json" -- $BIN generate -m "$CK" -p "Hello, I'm" -n 6 --json --logprobs 3
cp "$TMP/out" "$TMP/gen.json"
expect_exit 0 "generate json, no cache" -- $BIN generate -m "$CK" -p "Hello, I'm" -n 6 --json --no-cache
$PY - "$TMP/gen.json" "$TMP/out" <<'PYEOF' && ok || bad "generate --json fields, logprobs, cache equality"
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
assert a["prompt_ids"] == [15496, 11, 314, 1101], a["prompt_ids"]
assert len(a["token_ids"]) == 6 and a["finish_reason"] == "length"
assert a["token_ids"] == b["token_ids"], (a["token_ids"], b["token_ids"])
assert len(a["logprobs"]) == 6
for step, tid in zip(a["logprobs"], a["token_ids"]):
    assert step["id"] == tid and len(step["top"]) == 3
    assert step["logprob"] <= 0 and step["top"][0]["logprob"] >= step["top"][1]["logprob"] >= step["top"][2]["logprob"]
    assert step["top"][0]["id"] == tid and abs(step["top"][0]["logprob"] - step["logprob"]) < 1e-6  # greedy
for k in ("load_s", "prefill_s", "decode_s"):
    assert a["timings"][k] >= 0
PYEOF
# Prompts longer than the context: an error, or kept at their end with --truncate.
$PY -c "print(' hello' * 1100, end='')" >"$TMP/long.txt"
expect_exit 1 "prompt over context" -- $BIN generate -m "$CK" -f "$TMP/long.txt" -n 2
expect_stderr "more than the model's context of 1024" "context message"
expect_exit 0 "--truncate" -- $BIN generate -m "$CK" -f "$TMP/long.txt" -n 2 --json --truncate
$PY -c "import json,sys; d=json.load(open('$TMP/out')); assert len(d['prompt_ids'])==1022 and len(d['token_ids'])==2" && ok || bad "--truncate keeps 1022 prompt tokens"
expect_exit 0 "info" -- $BIN info -m "$CK"
grep -q '"n_layer": 2' "$TMP/out" && ok || bad "info shows n_layer"

# The golden continuation from the command line, when ../shared is present.
G=${GPT2C_GOLDEN:-../shared/golden}
if [ -d "$G/checkpoints/tiny" ]; then
    expect_exit 0 "golden generate" -- $BIN generate -m "$G/checkpoints/tiny" -p "Hello, I'm a language model," -n 40 --json
    $PY - "$TMP/out" tests/fixtures/golden/tiny.json <<'PYEOF' && ok || bad "CLI greedy equals transformers"
import json, sys
got = json.load(open(sys.argv[1])); want = json.load(open(sys.argv[2]))["prompts"]["seed"]["greedy"]
assert got["token_ids"] == want["new_ids"], got["token_ids"]
assert got["text"] == want["text"]
PYEOF
else
    echo "skipped: golden CLI check ($G/checkpoints not found)"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
