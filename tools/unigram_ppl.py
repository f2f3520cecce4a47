#!/usr/bin/python3
"""unigram_ppl.py GPT2C MODEL TRAIN VAL -- the unigram baseline a language model must beat.

Tokenizes TRAIN and VAL with MODEL's tokenizer (`GPT2C tokenize`), estimates token
frequencies on TRAIN (add-one smoothing over the whole vocabulary, so that no token has
probability 0) and prints VAL's perplexity under them: exp(-mean log p(token)), as JSON.
"""
import json
import math
import subprocess
import sys
from collections import Counter


def ids(gpt2c, model, path):
    r = subprocess.run([gpt2c, "tokenize", "-m", model, "-f", path, "--json"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["ids"]


def main():
    gpt2c, model, train, val = sys.argv[1:5]
    vocab = json.load(open(model + "/config.json")).get("vocab_size", 50257)
    counts = Counter(ids(gpt2c, model, train))
    total = sum(counts.values())
    v = ids(gpt2c, model, val)
    nll = -sum(math.log((counts[t] + 1) / (total + vocab)) for t in v) / len(v)
    print(json.dumps({"unigram_perplexity": math.exp(nll), "train_tokens": total, "val_tokens": len(v)}))


if __name__ == "__main__":
    main()
