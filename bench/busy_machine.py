#!/usr/bin/python3
"""busy_machine.py -- decode speed by thread count, on an idle machine and beside a busy process.

Users' machines are never idle. This runs `gpt2c bench --json` (a short prompt, then N new
tokens, greedy) with --threads 1 and with the default (one thread per core), first on the
machine as it is and then beside a competing process that keeps one core busy (a spinning
Python loop per --competitors), alternating the cases round by round. It reports the decode
speed of each case (median and range over the rounds) and the ratios that matter:

  default / 1 thread, idle       what the threads buy
  default / 1 thread, busy       must be >= 1: the default never loses to one thread
  default busy / default idle    what the competitor costs

With --baseline BIN the same cases run for another gpt2c binary (say, the previous release)
in the same rounds, and its default's figures are reported beside this one's: on an idle
machine the new default must keep the old speed.

  bench/busy_machine.py [--gpt2c build/gpt2c] [--baseline OLD/gpt2c] [--rounds 3]
                        [--gen-tokens 64] [--dtype q8] [--competitors 1] CHECKPOINT

Make a gpt2-shaped checkpoint with tools/make_checkpoint.py --preset gpt2 (or use a real one).
Only ratios from one run mean anything on a shared machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SPIN = "while True: pass"


def decode_speed(binary, ckpt, threads, args):
    cmd = [binary, "bench", "-m", ckpt, "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens",
           str(args.gen_tokens), "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["decode_tokens_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--gpt2c", default=os.path.join(REPO, "build", "gpt2c"))
    ap.add_argument("--baseline", help="another gpt2c binary to run in the same rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="q8", help="--dtype for gpt2c bench (default q8; '' for none)")
    ap.add_argument("--competitors", type=int, default=1, help="busy processes beside gpt2c (default 1)")
    args = ap.parse_args()

    binaries = [("new", args.gpt2c)] + ([("baseline", args.baseline)] if args.baseline else [])
    cases = [(name, b, t) for name, b in binaries for t in (1, 0)]  # 0: the default
    speeds = {(name, t, busy): [] for name, _, t in cases for busy in (0, 1)}
    for r in range(args.rounds):
        for busy in (0, 1):
            procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.competitors if busy else 0)]
            try:
                for name, b, t in cases:
                    s = decode_speed(b, args.checkpoint, t, args)
                    speeds[(name, t, busy)].append(s)
                    print(f"round {r + 1}: {name:8} threads {t or 'default':7} {'busy' if busy else 'idle'}: "
                          f"{s:8.1f} tokens/s", file=sys.stderr)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()

    def med(name, t, busy):
        return statistics.median(speeds[(name, t, busy)])

    def rng(name, t, busy):
        v = speeds[(name, t, busy)]
        return f"{min(v):.1f}-{max(v):.1f}"

    print(f"decode tokens/s, {args.gen_tokens} new tokens after {args.prompt_tokens}, --dtype {args.dtype or 'as stored'}, "
          f"{args.rounds} rounds, median (range); busy = beside {args.competitors} spinning process(es)")
    for name, _ in binaries:
        for t in (1, 0):
            print(f"  {name:8} threads {t or 'default':7}  idle {med(name, t, 0):7.1f} ({rng(name, t, 0)})"
                  f"   busy {med(name, t, 1):7.1f} ({rng(name, t, 1)})")
    for name, _ in binaries:
        print(f"{name}: default / 1 thread: idle {med(name, 0, 0) / med(name, 1, 0):.2f}x, "
              f"busy {med(name, 0, 1) / med(name, 1, 1):.2f}x; default busy / default idle "
              f"{med(name, 0, 1) / med(name, 0, 0):.2f}x")
    if args.baseline:
        print(f"new default / baseline default: idle {med('new', 0, 0) / med('baseline', 0, 0):.2f}x, "
              f"busy {med('new', 0, 1) / med('baseline', 0, 1):.2f}x")


if __name__ == "__main__":
    main()
