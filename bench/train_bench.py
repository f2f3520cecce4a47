#!/usr/bin/python3
"""train_bench.py -- fine-tuning speed and memory: gpt2c finetune against a PyTorch training loop.

For each checkpoint folder, the same work on the same threads: micro-batches of --batch-size
blocks of --block-size tokens, full fine-tuning with AdamW and clipping, no dropout:
  - PyTorch (Debian's python3-torch on the OpenMP OpenBLAS when installed, as compare_torch.py):
    GPT-2 written against the checkpoint's model.safetensors, torch.optim.AdamW,
    clip_grad_norm_, loss.backward();
  - gpt2c: `gpt2c finetune --json` on a generated text file.
The first --skip steps (first touch of memory, warm-up) are left out of the timing. Runs
alternate and the best of each is kept. Reported: training tokens/s, their ratio, the share
of the FMA peak (`gpt2c bench`'s probe) at 6 x parameters FLOPs a token, and peak resident
memory against the weights x 4 (weights, gradients, two moments) that full fine-tuning needs.
  bench/train_bench.py [--threads 2] [--batch-size 4] [--block-size 128] [--steps 6] DIR...
Only ratios from one run mean anything on a shared machine.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from compare_torch import OPENBLAS, torch_env  # noqa: E402

TORCH_CHILD = r'''
import json, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
import safetensors_np
folder, threads, B, T, steps, skip = sys.argv[2], *map(int, sys.argv[3:8])
torch.set_num_threads(threads)
cfg = json.load(open(os.path.join(folder, "config.json")))
L, C, H = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
p = {(k[12:] if k.startswith("transformer.") else k): torch.tensor(np.array(v), requires_grad=True)
     for k, v in safetensors_np.read(os.path.join(folder, "model.safetensors"), np.float32).items()}
params = list(p.values())
opt = torch.optim.AdamW([{"params": [x for x in params if x.dim() == 2], "weight_decay": 0.0},
                         {"params": [x for x in params if x.dim() < 2], "weight_decay": 0.0}], lr=5e-5)
mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
def loss_of(ids):
    x = p["wte.weight"][ids] + p["wpe.weight"][:T]
    for i in range(L):
        g = lambda n: p[f"h.{i}.{n}"]
        h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), 1e-5)
        q, k, v = (h @ g("attn.c_attn.weight") + g("attn.c_attn.bias")).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        w = torch.where(mask, q @ k.transpose(-1, -2) / (C // H) ** 0.5, torch.tensor(-3.4e38))
        x = x + (w.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C) @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
        h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), 1e-5)
        x = x + F.gelu(h @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"), approximate="tanh") @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    logits = x @ p.get("lm_head.weight", p["wte.weight"]).T
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
ids = torch.randint(0, cfg["vocab_size"], (B, T))
for s in range(steps):
    if s == skip:
        t0 = time.monotonic()
    loss = loss_of(ids)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()
print(json.dumps({"step_s": (time.monotonic() - t0) / (steps - skip)}))
'''


def run_torch(folder, a):
    cmd = ["/usr/bin/python3", "-c", TORCH_CHILD, os.path.join(REPO, "tools"), folder, str(a.threads),
           str(a.batch_size), str(a.block_size), str(a.steps), str(a.skip)]
    r, rss = timed_rss(cmd, torch_env())
    return json.loads(r.strip().splitlines()[-1])["step_s"], rss


def timed_rss(cmd, env=None):
    """stdout and peak RSS (MB) of one child, read from wait4's rusage."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit("failed (%d): %s" % (status, " ".join(cmd[:4])))
    return out, usage.ru_maxrss / 1024.0


def run_gpt2c(folder, a, data, tmp):
    out = os.path.join(tmp, "out-%d" % time.monotonic_ns())
    cmd = [os.path.join(REPO, "build", "gpt2c"), "finetune", "-m", folder, "--train", data, "-o", out,
           "--batch-size", str(a.batch_size), "--block-size", str(a.block_size), "--max-steps", str(a.steps),
           "--validation-split", "0", "--threads", str(a.threads), "--no-dropout", "--json"]
    r, rss = timed_rss(cmd)
    steps = [json.loads(x) for x in r.splitlines() if '"step"' in x and "tokens_per_s" in x]
    toks = a.batch_size * a.block_size
    at = {e["step"]: toks * e["step"] / e["tokens_per_s"] for e in steps}
    start = json.loads(r.splitlines()[0])
    return (at[a.steps] - at[a.skip]) / (a.steps - a.skip), rss, start["parameters"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--skip", type=int, default=2)
    p.add_argument("--runs", type=int, default=2)
    a = p.parse_args()
    if not os.path.isdir(OPENBLAS):
        print(f"note: {OPENBLAS} is missing, so torch runs on the system BLAS (apt-get install libopenblas0-openmp)",
              file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="gpt2c-train-bench-") as tmp:
        data = os.path.join(tmp, "train.txt")
        rnd = random.Random(1)
        words = "the cat sat on a mat and a dog ran to the park while birds sang in tall green trees".split()
        need = a.batch_size * a.block_size * a.steps * 2  # tokens, roughly one a word
        with open(data, "w") as f:
            for _ in range(need // 10 + 10):
                f.write(" ".join(rnd.choice(words) for _ in range(10)) + ".\n")
        probe = json.loads(subprocess.run([os.path.join(REPO, "build", "gpt2c"), "bench", "-m", a.folders[0], "--json",
                                           "--threads", str(a.threads), "--prompt-tokens", "8", "--gen-tokens", "2"],
                                          capture_output=True, text=True, check=True).stdout)
        peak = probe["fma_peak_gflops"]
        toks = a.batch_size * a.block_size
        print("%-28s %12s %12s %7s %10s %12s %12s %12s" % ("checkpoint", "torch tok/s", "gpt2c tok/s", "ratio",
                                                          "FMA share", "torch RSS", "gpt2c RSS", "4 x weights"))
        for folder in a.folders:
            best_t = best_g = float("inf")
            for _ in range(a.runs):
                t, t_rss = run_torch(folder, a)
                g, g_rss, n_params = run_gpt2c(folder, a, data, tmp)
                best_t, best_g = min(best_t, t), min(best_g, g)
            share = 6.0 * n_params * toks / best_g / 1e9 / peak
            print("%-28s %12.1f %12.1f %6.2fx %9.1f%% %10.0f MB %10.0f MB %10.0f MB" % (
                os.path.basename(folder.rstrip("/")), toks / best_t, toks / best_g, best_t / best_g, 100 * share,
                t_rss, g_rss, 16.0 * n_params / 1e6))
        print("(%d threads, micro-batches of %d x %d tokens, steps %d..%d timed, FMA peak %.0f GFLOP/s)" % (
            a.threads, a.batch_size, a.block_size, a.skip + 1, a.steps, peak))


if __name__ == "__main__":
    main()
