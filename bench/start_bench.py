#!/usr/bin/python3
"""start_bench.py -- how soon a new `gpt2c` process is ready to generate, against a baseline.

    bench/start_bench.py -m MODEL [--runs 15] BIN [BASELINE_BIN ...]

Each run is a fresh process: `BIN bench -m MODEL --prompt-tokens 1 --gen-tokens 1 --json`,
which reports the model's load time, the tokenizer's, and ready_s (process start to model
and tokenizer loaded). The binaries take turns run by run, so a busy moment of the machine
falls on all of them; a first untimed run of each warms the page cache (and writes the
tokenizer image, in a temporary GPT2C_CACHE_DIR of this script's). Prints the median and
best of each figure per binary, and the first binary's speed-up over each other's medians.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
ap.add_argument("-m", "--model", required=True)
ap.add_argument("--runs", type=int, default=15)
ap.add_argument("--json", action="store_true")
ap.add_argument("bins", nargs="+")
args = ap.parse_args()

env = dict(os.environ, GPT2C_CACHE_DIR=tempfile.mkdtemp(prefix="gpt2c-start-"))
KEYS = ("load_model_s", "load_tokenizer_s", "ready_s")


def run(binary):
    out = subprocess.run([binary, "bench", "-m", args.model, "--prompt-tokens", "1", "--gen-tokens", "1", "--threads", "1",
                          "--json"], capture_output=True, text=True, check=True, env=env).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {k: r[k] for k in KEYS}


got = {b: [] for b in args.bins}
try:
    for b in args.bins:
        run(b)  # warm: page cache, tokenizer image
    for _ in range(args.runs):
        for b in args.bins:
            got[b].append(run(b))
finally:
    shutil.rmtree(env["GPT2C_CACHE_DIR"], ignore_errors=True)
report = {}
for b in args.bins:
    report[b] = {k: {"median_ms": round(statistics.median(r[k] for r in got[b]) * 1e3, 2),
                     "best_ms": round(min(r[k] for r in got[b]) * 1e3, 2)} for k in KEYS}
first = args.bins[0]
for b in args.bins[1:]:
    report[first]["speedup_over_" + os.path.basename(os.path.dirname(os.path.abspath(b))) + "/" + os.path.basename(b)] = {
        k: round(report[b][k]["median_ms"] / report[first][k]["median_ms"], 2) for k in KEYS if report[first][k]["median_ms"]}
if args.json:
    print(json.dumps(report))
else:
    for b in args.bins:
        print(b + ": " + ", ".join(f"{k[:-2]} median {v['median_ms']} ms (best {v['best_ms']})" for k, v in report[b].items()
                                   if isinstance(v, dict) and "median_ms" in v))
    for k, v in report[first].items():
        if k.startswith("speedup"):
            print(f"{first} {k.replace('_', ' ')}: " + ", ".join(f"{kk[:-2]} {vv}x" for kk, vv in v.items()))
