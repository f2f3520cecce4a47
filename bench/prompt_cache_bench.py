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
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
ap.add_argument("bin")
ap.add_argument("-m", "--model", required=True)
ap.add_argument("--prefix-tokens", type=int, default=900)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--json", action="store_true")
args = ap.parse_args()

tmp = tempfile.mkdtemp(prefix="gpt2c-pcb-")


def start(*extra):
    pf = os.path.join(tmp, f"port{len(os.listdir(tmp))}")
    p = subprocess.Popen([args.bin, "serve", "-m", args.model, "--port", "0", "--port-file", pf, "--slots", "2", "--quiet",
                          *extra], stderr=subprocess.DEVNULL)
    for _ in range(600):
        if os.path.exists(pf) and open(pf).read().strip():
            return p, int(open(pf).read())
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def first_token(port, prompt):
    """Seconds to the first streamed token, and the whole text."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.monotonic()
    c.request("POST", "/v1/completions", json.dumps({"prompt": prompt, "max_tokens": 8, "temperature": 0, "stream": True}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    first, text = None, ""
    for line in r:
        if line.startswith(b"data: {"):
            first = first or time.monotonic() - t0
            text += "".join(ch["text"] for ch in json.loads(line[6:])["choices"])
    c.close()
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
    for p, _ in servers.values():
        p.terminate()
        p.wait()
med = {k: statistics.median(v) for k, v in times.items()}
report = {"prefix_tokens": n_prefix, "rounds": args.rounds, "ttft_cache_ms": round(med["cache"] * 1e3, 1),
          "ttft_no_cache_ms": round(med["no_cache"] * 1e3, 1), "speedup": round(med["no_cache"] / med["cache"], 2),
          "same_text": texts["cache"] == texts["no_cache"]}
if args.json:
    print(json.dumps(report))
else:
    print(f"{n_prefix}-token shared prefix, {args.rounds} rounds: time to first token {report['ttft_cache_ms']} ms with the "
          f"prompt cache, {report['ttft_no_cache_ms']} ms without ({report['speedup']}x); same text: {report['same_text']}")
