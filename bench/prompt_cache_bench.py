#!/usr/bin/python3
"""prompt_cache_bench.py -- time to first token of a request that shares a long prefix with
the one before it, with the server's prompt cache and without (--no-prompt-cache).

    bench/prompt_cache_bench.py BIN -m MODEL [--prefix-tokens 900] [--rounds 5]

Two servers of the same model run side by side; each round sends both the same pair: a
prompt of a ~N-token shared prefix and one question, then the same prefix with another
question, and times the second request's first streamed token. The rounds alternate which
server goes first. Prints the medians and their ratio; the texts must agree.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servebench  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
ap.add_argument("bin")
ap.add_argument("-m", "--model", required=True)
ap.add_argument("--prefix-tokens", type=int, default=900)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--json", action="store_true")
args = ap.parse_args()

tmp = tempfile.mkdtemp(prefix="gpt2c-pcb-")



def start(*extra):
    return servebench.start(args.bin, args.model, tmp, *extra)


def first_token(port, prompt):
    """Seconds to the first streamed token, and the whole text."""
    first, _, text, _ = servebench.stream(port, prompt, 8)
    return first, text


# A prefix of about the asked length: a sentence repeated (its tokens counted by the CLI).
sentence = "The committee met again on Tuesday to review the budget for the coming year. "


def count(text):
    return len(subprocess.run([args.bin, "tokenize", "-m", args.model, "-p", text], capture_output=True,
                              text=True).stdout.split())


prefix = sentence * max(1, args.prefix_tokens // count(sentence))
while count(prefix) < args.prefix_tokens:
    prefix += sentence
n_prefix = count(prefix)
servers = {"cache": start(), "no_cache": start("--no-prompt-cache")}
times = {k: [] for k in servers}
texts = {k: [] for k in servers}
try:
    for r in range(args.rounds):
        order = list(servers) if r % 2 == 0 else list(servers)[::-1]
        for k in order:
            port = servers[k][1]
            first_token(port, prefix + f"Question {r}a:")
            t, text = first_token(port, prefix + f"Question {r}b:")
            times[k].append(t)
            texts[k].append(text)
finally:
    servebench.stop(servers.values(), tmp)
med = {k: statistics.median(v) for k, v in times.items()}
report = {"prefix_tokens": n_prefix, "rounds": args.rounds, "ttft_cache_ms": round(med["cache"] * 1e3, 1),
          "ttft_no_cache_ms": round(med["no_cache"] * 1e3, 1), "speedup": round(med["no_cache"] / med["cache"], 2),
          "same_text": texts["cache"] == texts["no_cache"]}
if args.json:
    print(json.dumps(report))
else:
    print(f"{n_prefix}-token shared prefix, {args.rounds} rounds: time to first token {report['ttft_cache_ms']} ms with the "
          f"prompt cache, {report['ttft_no_cache_ms']} ms without ({report['speedup']}x); same text: {report['same_text']}")
