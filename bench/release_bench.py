#!/usr/bin/python3
"""release_bench.py -- issue 23's four measures, this build against a previous release, in one run.

    bench/release_bench.py -m MODEL [--rounds 5] [--draft-dtype q8] NEW_BIN OLD_BIN

On one model (a folder with its tokenizer), each measure alternates the two binaries round by
round, so that a busy minute of the machine falls on both:
- start: process start to model and tokenizer ready (bench/start_bench.py, its own rounds);
- prefill: time to the first token of a 512-token prompt, on a running server (token ids drawn
  at random, new ones for every request: no prompt is seen twice);
- prompt cache: time to the first token of a request sharing a 900-token prefix with the one
  just before it (an old release without the cache recomputes the prefix);
- decode: greedy tokens/s of a 64-token reply, from its first token to its last; NEW_BIN also
  with speculative decoding (`--draft-dtype`, the model itself as the draft), whose text must
  equal the plain one's.
Prints medians and NEW_BIN's speed-up over OLD_BIN for each; the two releases' texts must
agree, as their f32 arithmetic does.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servebench  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
ap.add_argument("-m", "--model", required=True)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--draft-dtype", default="q8")
ap.add_argument("--json", action="store_true")
ap.add_argument("new")
ap.add_argument("old")
args = ap.parse_args()

here = os.path.dirname(os.path.abspath(__file__))
start = json.loads(subprocess.run([sys.executable, os.path.join(here, "start_bench.py"), "-m", args.model, "--json",
                                   "--runs", str(3 * args.rounds), args.new, args.old],
                                  capture_output=True, text=True, check=True).stdout)
ready = {k: start[b]["ready_s"]["median_ms"] for k, b in (("new", args.new), ("old", args.old))}

rng = random.Random(23)
V = 50000  # ids below every GPT-2-family vocabulary's size


def ids(n):
    return [rng.randrange(V) for _ in range(n)]


tmp = tempfile.mkdtemp(prefix="gpt2c-release-")
servers = {"new": servebench.start(args.new, args.model, tmp), "old": servebench.start(args.old, args.model, tmp),
           "draft": servebench.start(args.new, args.model, tmp, "--draft-dtype", args.draft_dtype)}
got = {k: {"prefill": [], "cache": [], "decode": []} for k in servers}
texts = {k: [] for k in servers}
reply_prompt = ids(16)
try:
    for k, (_, port) in servers.items():  # warm: the weights mapped in, the first pass done
        servebench.stream(port, ids(64), 2)
    for r in range(args.rounds):
        prompt, prefix = ids(512), ids(900)
        for k in list(servers) if r % 2 == 0 else list(servers)[::-1]:
            port = servers[k][1]
            if k != "draft":
                got[k]["prefill"].append(servebench.stream(port, prompt, 1)[0])
                servebench.stream(port, prefix + ids(8), 1)
                got[k]["cache"].append(servebench.stream(port, prefix + ids(8), 1)[0])
            first, last, text, finish = servebench.stream(port, reply_prompt, 64)
            if finish == "length":
                got[k]["decode"].append(63 / (last - first))
            texts[k].append(text)
finally:
    servebench.stop(servers.values(), tmp)

med = {k: {m: statistics.median(v) for m, v in g.items() if v} for k, g in got.items()}
report = {
    "model": args.model, "rounds": args.rounds,
    "ready_ms": {"new": ready["new"], "old": ready["old"], "speedup": round(ready["old"] / ready["new"], 2)},
    "prefill_512_ms": {k: round(med[k]["prefill"] * 1e3, 1) for k in ("new", "old")},
    "cache_900_ms": {k: round(med[k]["cache"] * 1e3, 1) for k in ("new", "old")},
    "decode_tokens_per_s": {k: round(med[k]["decode"], 1) for k in ("new", "old", "draft") if "decode" in med[k]},
    "same_text": texts["new"] == texts["old"] == texts["draft"],
}
for m in ("prefill_512_ms", "cache_900_ms"):
    report[m]["speedup"] = round(report[m]["old"] / report[m]["new"], 2)
d = report["decode_tokens_per_s"]
if "new" in d and "old" in d:
    d["speedup"] = round(d["new"] / d["old"], 2)
if "draft" in d and "old" in d:
    d["draft_speedup"] = round(d["draft"] / d["old"], 2)
if args.json:
    print(json.dumps(report))
else:
    print(f"{args.model}, {args.rounds} rounds, {args.new} against {args.old} (medians):")
    r = report
    print(f"  ready:               {r['ready_ms']['old']} -> {r['ready_ms']['new']} ms ({r['ready_ms']['speedup']}x)")
    print(f"  512-token prefill:   {r['prefill_512_ms']['old']} -> {r['prefill_512_ms']['new']} ms to the first token "
          f"({r['prefill_512_ms']['speedup']}x)")
    print(f"  900-token prefix:    {r['cache_900_ms']['old']} -> {r['cache_900_ms']['new']} ms to the first token "
          f"({r['cache_900_ms']['speedup']}x)")
    print(f"  decode:              {d.get('old')} -> {d.get('new')} tokens/s ({d.get('speedup')}x); with "
          f"--draft-dtype {args.draft_dtype} {d.get('draft')} ({d.get('draft_speedup')}x)")
    print(f"  same text: {r['same_text']}")
