#!/bin/sh
# train_demo.sh [STEPS] -- shows that `gpt2c finetune` learns: a tiny GPT-2 (2 layers, 64 wide,
# GPT-2's tokenizer) from random weights, trained on the King James Bible (public domain,
# Debian's bible-kjv package), against the unigram baseline. Prints the validation
# perplexity every 50 steps, a plot of it (gnuplot, when installed), and samples.
#   apt-get install bible-kjv [gnuplot-nox]; make; sh tools/train_demo.sh 300
set -e
STEPS=${1:-300}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GPT2C=${GPT2C:-$ROOT/build/gpt2c}
command -v bible >/dev/null || { echo "train_demo: needs the bible command (apt-get install bible-kjv)" >&2; exit 2; }
W=$(mktemp -d /tmp/gpt2c-demo-XXXXXX)
bible "gen1:1-rev22:21" > "$W/kjv.txt"
# The first 5% of the lines (Genesis and Exodus) held out for evaluation.
total=$(wc -l < "$W/kjv.txt"); nval=$((total / 20))
head -n "$nval" "$W/kjv.txt" > "$W/val.txt"
tail -n +"$((nval + 1))" "$W/kjv.txt" > "$W/train.txt"
/usr/bin/python3 "$ROOT/tools/make_checkpoint.py" --preset tiny --seed 1 --out "$W/tiny" > /dev/null
/usr/bin/python3 "$ROOT/tools/unigram_ppl.py" "$GPT2C" "$W/tiny" "$W/train.txt" "$W/val.txt" > "$W/unigram.json"
"$GPT2C" finetune -m "$W/tiny" --train "$W/train.txt" --validation "$W/val.txt" -o "$W/out" \
    --block-size 128 --batch-size 8 --max-steps "$STEPS" --lr 2e-3 --warmup-steps 30 --eval-every 50 \
    --json > "$W/log.jsonl"
/usr/bin/python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
uni = json.load(open(w + "/unigram.json"))["unigram_perplexity"]
evals = [json.loads(l) for l in open(w + "/log.jsonl") if '"eval"' in l]
print("unigram baseline: validation perplexity %.1f" % uni)
with open(w + "/curve.dat", "w") as f:
    for e in evals:
        print("step %5d: validation perplexity %.1f" % (e["step"], e["perplexity"]))
        f.write("%d %f %f\n" % (e["step"], e["perplexity"], uni))
PY
if command -v gnuplot >/dev/null; then
    gnuplot -e "set terminal dumb 78 22; set xlabel 'step'; set ylabel 'validation perplexity'; \
        plot '$W/curve.dat' using 1:2 with linespoints title 'tiny GPT-2', '' using 1:3 with lines title 'unigram'"
fi
for p in "And God said" "The LORD is"; do
    echo "--- $p"
    "$GPT2C" generate -m "$W/out" -p "$p" -n 30 --do-sample --seed 1 --top-k 40
done
echo "(files in $W)"
