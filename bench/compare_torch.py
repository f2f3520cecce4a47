#!/usr/bin/python3
"""compare_torch.py -- gpt2c against PyTorch on the same checkpoints, side by side.

For each checkpoint folder: load time (process start to ready) and one reply (a prompt, then
N new tokens, greedy, KV cache), through
  - PyTorch (Debian's python3-torch): a plain KV-cache GPT-2 written against the same
    model.safetensors, torch.set_num_threads equal to gpt2c's threads, f32;
  - gpt2c: `gpt2c bench --json` with the same lengths and threads.
Runs alternate (torch, gpt2c, torch, gpt2c, ...) and the best of each is kept; the table
reports both and their ratio. Only relative figures from one run mean anything here.

  bench/compare_torch.py [--threads 2] [--prompt-tokens 16] [--gen-tokens 64] [--runs 2] [--dtype T] DIR...

--dtype f16|bf16|q8 runs gpt2c on a copy made by `gpt2c convert` (before any timing) against
PyTorch in f32 on the original: what a user gains by converting once.

Make gpt2-shaped checkpoints with tools/make_checkpoint.py --preset gpt2 (or use real ones).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# The PyTorch side's model, shared with python_bench.py: argv[1] the tools folder, argv[2] the
# checkpoint, argv[3] the threads; defines forward(ids, pos0, cache) -> the last position's
# logits, and `ready`, the seconds from start to loaded.
TORCH_MODEL = r'''
import json, math, os, sys, time
t0 = time.monotonic()
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
import safetensors_np
folder, threads = sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
cfg = json.load(open(os.path.join(folder, "config.json")))
L, C, H = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
w = {k[12:] if k.startswith("transformer.") else k: torch.from_numpy(np.array(v))
     for k, v in safetensors_np.read(os.path.join(folder, "model.safetensors"), np.float32).items()}
head = w.get("lm_head.weight", w["wte.weight"])
ready = time.monotonic() - t0
def ln(x, n): return torch.nn.functional.layer_norm(x, (C,), w[n + ".weight"], w[n + ".bias"], 1e-5)
def gelu(x): return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
def forward(ids, pos0, cache):
    n = len(ids)
    x = w["wte.weight"][ids] + w["wpe.weight"][pos0:pos0 + n]
    for i in range(L):
        p = f"h.{i}."
        q, k, v = (ln(x, p + "ln_1") @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]).split(C, dim=1)
        q, k, v = (t.view(n, H, C // H).transpose(0, 1) for t in (q, k, v))
        if i in cache:
            k = torch.cat([cache[i][0], k], 1); v = torch.cat([cache[i][1], v], 1)
        cache[i] = (k, v)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=pos0 == 0) if hasattr(torch.nn.functional, "scaled_dot_product_attention") else \
            torch.softmax((q @ k.transpose(1, 2)) / math.sqrt(C // H) + torch.triu(torch.full((n, k.shape[1]), -1e9), k.shape[1] - n + 1), -1) @ v
        x = x + a.transpose(0, 1).reshape(n, C) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        x = x + gelu(ln(x, p + "ln_2") @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    return ln(x[-1:], "ln_f") @ head.T
'''

TORCH_CHILD = TORCH_MODEL + r'''
n_prompt, n_new = int(sys.argv[4]), int(sys.argv[5])
with torch.no_grad():
    ids = [(1 + 7919 * i) % (cfg["vocab_size"] - 1) for i in range(n_prompt)]
    cache = {}
    t1 = time.monotonic()
    nxt = int(forward(torch.tensor(ids), 0, cache).argmax())
    t2 = time.monotonic()
    for s in range(n_new - 1):
        nxt = int(forward(torch.tensor([nxt]), n_prompt + s, cache).argmax())
    t3 = time.monotonic()
print(json.dumps({"ready_s": ready, "prefill_s": t2 - t1, "decode_s": t3 - t2, "reply_s": t3 - t1}))
'''


# Debian's torch calls BLAS through libblas.so.3, which by default is the slow reference
# implementation; the OpenMP build of OpenBLAS (apt-get install libopenblas0-openmp) is the
# fair baseline, and the pthread build would fight torch's own OpenMP threads.
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def torch_env():
    env = dict(os.environ)
    if os.path.isdir(OPENBLAS):
        env["LD_LIBRARY_PATH"] = OPENBLAS + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def run_torch(folder, a):
    r = subprocess.run(["/usr/bin/python3", "-c", TORCH_CHILD, os.path.join(REPO, "tools"), folder, str(a.threads),
                        str(a.prompt_tokens), str(a.gen_tokens)], capture_output=True, text=True, check=True,
                       env=torch_env())
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_gpt2c(folder, a):
    r = subprocess.run([os.path.join(REPO, "build", "gpt2c"), "bench", "-m", folder, "--json", "--threads",
                        str(a.threads), "--prompt-tokens", str(a.prompt_tokens), "--gen-tokens", str(a.gen_tokens)],
                       capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    reply = a.prompt_tokens / d["prefill_tokens_per_s"] + (a.gen_tokens - 1) * d["decode_ms_per_step"] / 1e3
    return {"ready_s": d["ready_s"], "reply_s": reply, "decode_tps": d["decode_tokens_per_s"],
            "roofline_fraction": d["roofline_fraction"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--dtype", choices=["f16", "bf16", "q8"], help="gpt2c runs a converted copy")
    a = p.parse_args()
    if not os.path.isdir(OPENBLAS):
        print(f"note: {OPENBLAS} is missing, so torch runs on the system BLAS (apt-get install libopenblas0-openmp)",
              file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="gpt2c-compare-")
    try:
        table(a, tmp)
    finally:
        shutil.rmtree(tmp)


def table(a, tmp):
    print(f"{'checkpoint':28} {'torch load':>10} {'gpt2c load':>10} {'ratio':>7} | {'torch reply':>11} "
          f"{'gpt2c reply':>11} {'ratio':>7} | gpt2c decode")
    for folder in a.folders:
        best_t, best_g = None, None
        mine = folder
        if a.dtype:
            mine = os.path.join(tmp, f"{len(os.listdir(tmp))}-{a.dtype}")
            subprocess.run([os.path.join(REPO, "build", "gpt2c"), "convert", "-m", folder, "--dtype", a.dtype, "-o", mine],
                           check=True, capture_output=True)
        for _ in range(a.runs):  # alternating, best of each
            t, g = run_torch(folder, a), run_gpt2c(mine, a)
            best_t = t if best_t is None or t["reply_s"] < best_t["reply_s"] else best_t
            best_g = g if best_g is None or g["reply_s"] < best_g["reply_s"] else best_g
        name = os.path.basename(os.path.normpath(folder)) + (f" ({a.dtype})" if a.dtype else "")
        print(f"{name:28} {best_t['ready_s']:9.3f}s {best_g['ready_s']:9.3f}s "
              f"{best_t['ready_s'] / best_g['ready_s']:6.1f}x | {best_t['reply_s']:10.3f}s {best_g['reply_s']:10.3f}s "
              f"{best_t['reply_s'] / best_g['reply_s']:6.1f}x | {best_g['decode_tps']:.1f} tok/s, "
              f"{100 * best_g['roofline_fraction']:.0f}% of roofline", flush=True)


if __name__ == "__main__":
    main()
