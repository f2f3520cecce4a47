#!/usr/bin/python3
"""python_bench.py -- a transformers-style script on gpt2c's Python package against the same
script's work on PyTorch: process start to loaded, and the first reply.

Each run is a fresh Python process doing what the issue's snippet does: load a tokenizer and a
model from a checkpoint folder, encode a prompt, generate N new tokens greedily, decode them.
  - gpt2c: the snippet itself, `from gpt2c import GPT2Tokenizer, GPT2LMHeadModel`;
  - PyTorch: transformers' shape on Debian's torch (transformers itself is not installable
    here): compare_torch.py's KV-cache GPT-2 loop, f32, as many threads, with a Python BPE
    tokenizer that loads vocab.json and merges.txt as transformers' slow GPT2Tokenizer does.
Runs alternate (torch, gpt2c, ...); the median of each is reported, with their ratio. "total"
is the whole process, interpreter start and imports included, as a user running a script sees.

  bench/python_bench.py [--threads 2] [--new-tokens 21] [--runs 3] [--build build] DIR...

DIR is a GPT-2 checkpoint folder with model.safetensors, vocab.json and merges.txt (the
suite's reference gpt2-f32, or tools/make_checkpoint.py --preset gpt2).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from compare_torch import TORCH_MODEL, torch_env  # noqa: E402

PROMPT = "Hello, I'm a language model,"

GPT2C_CHILD = r'''
import json, sys, time
t0 = time.monotonic()
from gpt2c import GPT2Tokenizer, GPT2LMHeadModel
import numpy  # what return_tensors='np' imports; the PyTorch side imports it while loading too
folder, threads, n_new, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tokenizer = GPT2Tokenizer.from_pretrained(folder)
model = GPT2LMHeadModel.from_pretrained(folder, n_threads=threads)
ready = time.monotonic() - t0
t1 = time.monotonic()
encoded_input = tokenizer(prompt, return_tensors='np')
out = model.generate(**encoded_input, max_new_tokens=n_new, do_sample=False, pad_token_id=tokenizer.eos_token_id)
text = tokenizer.decode(out[0], skip_special_tokens=True)
print(json.dumps({"ready_s": ready, "reply_s": time.monotonic() - t1, "text": text}))
'''

# transformers' slow GPT2Tokenizer in miniature: the byte-to-unicode table, vocab.json and the
# merge ranks loaded at start, BPE by lowest rank; the pretokenizer is GPT-2's pattern with
# `re` classes (this bench's prompts are ASCII).
TORCH_TOKENIZER = r'''
import re
def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))
b2u = bytes_to_unicode(); u2b = {v: k for k, v in b2u.items()}
encoder = json.load(open(os.path.join(folder, "vocab.json"), encoding="utf-8"))
decoder = {v: k for k, v in encoder.items()}
with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
    ranks = {tuple(l.split()): i for i, l in enumerate(f.read().split("\n")[1:-1])}
pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")
def bpe(word):
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(parts, parts[1:]))]
        r, i = min(pairs)
        if r == 1 << 30:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts
def encode(text):
    return [encoder[t] for w in pat.findall(text) for t in bpe("".join(b2u[b] for b in w.encode()))]
def decode(ids):
    return bytearray(u2b[c] for i in ids for c in decoder[i]).decode("utf-8", "replace")
ready = time.monotonic() - t0
'''

TORCH_CHILD = TORCH_MODEL + TORCH_TOKENIZER + r'''
n_new, prompt = int(sys.argv[4]), sys.argv[5]
t1 = time.monotonic()
with torch.no_grad():
    ids = encode(prompt)
    cache = {}
    out = [int(forward(torch.tensor(ids), 0, cache).argmax())]
    for s in range(n_new - 1):
        out.append(int(forward(torch.tensor([out[-1]]), len(ids) + s, cache).argmax()))
    text = decode(ids + out)
print(json.dumps({"ready_s": ready, "reply_s": time.monotonic() - t1, "text": text}))
'''


def timed(cmd, env):
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    total = time.monotonic() - t0
    if r.returncode:
        sys.exit(f"python_bench: {cmd[:3]} failed:\n{r.stderr[-2000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    d["total_s"] = total
    return d


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=21, help="new tokens (21: the snippet's max_length 30)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--build", default=os.path.join(REPO, "build"), help="the build folder whose libgpt2c.so to use")
    a = p.parse_args()
    genv = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"),
                GPT2C_LIBRARY=os.path.join(os.path.abspath(a.build), "libgpt2c.so"))
    print(f"{'checkpoint':16} {'':6} {'torch':>8} {'gpt2c':>8} {'ratio':>7}")
    for folder in a.folders:
        runs = {"torch": [], "gpt2c": []}
        for _ in range(a.runs):
            runs["torch"].append(timed(["/usr/bin/python3", "-c", TORCH_CHILD, os.path.join(REPO, "tools"), folder,
                                        str(a.threads), str(a.new_tokens), PROMPT], torch_env()))
            runs["gpt2c"].append(timed(["/usr/bin/python3", "-c", GPT2C_CHILD, folder, str(a.threads),
                                        str(a.new_tokens), PROMPT], genv))
        if runs["torch"][0]["text"] != runs["gpt2c"][0]["text"]:
            print(f"note: the texts differ:\n  torch {runs['torch'][0]['text']!r}\n  gpt2c {runs['gpt2c'][0]['text']!r}")
        name = os.path.basename(os.path.normpath(folder))
        for key, label in (("ready_s", "load"), ("reply_s", "reply"), ("total_s", "total")):
            t = statistics.median(r[key] for r in runs["torch"])
            g = statistics.median(r[key] for r in runs["gpt2c"])
            print(f"{name:16} {label:6} {t:7.3f}s {g:7.3f}s {t / g:6.1f}x")
            name = ""


if __name__ == "__main__":
    main()
