#!/usr/bin/python3
"""ref_gpt2.py -- an independent GPT-2 reference forward pass in numpy (float64).

Reads a checkpoint folder (config.json + model.safetensors) with numpy alone and writes the
next-token logits at every position of the given ids, as raw little-endian float32 (n, vocab):

  tools/ref_gpt2.py DIR --ids 15496,11,314 --out logits.f32 [--greedy N]

With --greedy N it also prints N greedily chosen continuation ids (full recomputation each
step, no cache). With --beams B --beam-new N it prints, one line each, the best
--beam-return R beam-search continuations as "score id,id,...", following transformers'
BeamSearchScorer (no EOS: random weights). It is the oracle for gpt2c's own kernels: written from the paper and
transformers' GPT2 modelling semantics, sharing no code with the C library.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402


def q8(w, axis):
    """The common 8-bit scheme, as gpt2c's --dtype q8 applies it to the weights: blocks of 32
    along the input dimension `axis` (0 for Conv1D weights (in, out), 1 for the (vocab, embd)
    head), scale = absmax / 127 (kept as float16), q = round-half-even(x / scale); returns
    q * scale. --dtype q8w stops here: the common scheme, weights only."""
    a = np.moveaxis(w.astype(np.float32), axis, -1)
    shape = a.shape
    a = a.reshape(-1, 32)
    d = np.abs(a).max(axis=1, keepdims=True) / np.float32(127)
    inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, np.float32(1)), np.float32(0)).astype(np.float32)
    q = np.rint(a * inv)
    deq = (q * d.astype(np.float16).astype(np.float32)).astype(np.float32).reshape(shape)
    return np.moveaxis(deq, -1, axis).astype(np.float64)


def q16(x):
    """gpt2c's q8 products also round their inputs to 16 bits per block of 32 along the row:
    d = absmax / 32767, q = round-half-even(x * (32767 / absmax)) in float32, q * d; a block
    whose largest value is below 1e-30 becomes zeros (--dtype q8)."""
    a = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(a).max(axis=1, keepdims=True)
    ok = amax >= np.float32(1e-30)
    inv = np.where(ok, np.float32(32767) / np.where(ok, amax, np.float32(1)), np.float32(0)).astype(np.float32)
    d = np.where(ok, amax / np.float32(32767), np.float32(0)).astype(np.float32)
    return (np.rint(a * inv).astype(np.float64) * d).reshape(x.shape)


class GPT2:
    def __init__(self, folder, dtype=None):
        with open(os.path.join(folder, "config.json")) as f:
            c = json.load(f)
        self.L, self.C, self.H = c["n_layer"], c["n_embd"], c["n_head"]
        self.eps = c.get("layer_norm_epsilon", 1e-5)
        self.act = c.get("activation_function", "gelu_new")
        self.scale = c.get("scale_attn_weights", True)
        self.inv_layer = c.get("scale_attn_by_inverse_layer_idx", False)
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(os.path.join(folder, "model.safetensors")) or not os.path.exists(index):
            w = safetensors_np.read(os.path.join(folder, "model.safetensors"))
        else:  # a sharded checkpoint
            w = {}
            for shard in sorted(set(json.load(open(index))["weight_map"].values())):
                w.update(safetensors_np.read(os.path.join(folder, shard)))
        self.w = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}
        self.q16 = q16 if dtype == "q8" else (lambda x: x)  # the products' inputs
        if dtype in ("q8", "q8w"):  # the matrices gpt2c converts: the projections, wte and an untied head
            for k in list(self.w):
                if k in ("wte.weight", "lm_head.weight"):
                    self.w[k] = q8(self.w[k], 1)
                elif k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                    self.w[k] = q8(self.w[k], 0)
        self.head = self.w.get("lm_head.weight", self.w["wte.weight"])

    def ln(self, x, name):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def gelu(self, x):
        if self.act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        if self.act == "gelu":
            return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
        if self.act == "relu":
            return np.maximum(x, 0)
        raise ValueError(self.act)

    def logits(self, ids):
        n, C, H = len(ids), self.C, self.H
        hd = C // H
        x = self.w["wte.weight"][ids] + self.w["wpe.weight"][np.arange(n)]
        causal = np.triu(np.full((n, n), -np.inf), 1)
        r = self.q16
        for i in range(self.L):
            p = f"h.{i}."
            qkv = r(self.ln(x, p + "ln_1")) @ self.w[p + "attn.c_attn.weight"] + self.w[p + "attn.c_attn.bias"]
            q, k, v = (qkv[:, j * C:(j + 1) * C].reshape(n, H, hd).transpose(1, 0, 2) for j in range(3))
            s = q @ k.transpose(0, 2, 1)
            if self.scale:
                s = s / math.sqrt(hd)
            if self.inv_layer:
                s = s / (i + 1)
            s = s + causal
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v  # (H, n, hd)
            a = a.transpose(1, 0, 2).reshape(n, C)
            x = x + r(a) @ self.w[p + "attn.c_proj.weight"] + self.w[p + "attn.c_proj.bias"]
            h = self.gelu(r(self.ln(x, p + "ln_2")) @ self.w[p + "mlp.c_fc.weight"] + self.w[p + "mlp.c_fc.bias"])
            x = x + r(h) @ self.w[p + "mlp.c_proj.weight"] + self.w[p + "mlp.c_proj.bias"]
        return r(self.ln(x, "ln_f")) @ self.head.T


def logsumexp(x):
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


def beam_search(m, ids, n_beams, n_return, n_new, length_penalty=1.0, early_stopping=False):
    """transformers 4.30 beam search (BeamSearchScorer + BeamHypotheses) without EOS."""
    hyps, worst = [], 1e9

    def add(seq, sum_logprobs):
        nonlocal worst
        score = sum_logprobs / len(seq) ** length_penalty
        if len(hyps) < n_beams or score > worst:
            hyps.append((score, seq))
            if len(hyps) > n_beams:
                ranked = sorted((s, i) for i, (s, _) in enumerate(hyps))
                del hyps[ranked[0][1]]
                worst = ranked[1][0]
            else:
                worst = min(score, worst)

    beams = [list(ids) for _ in range(n_beams)]
    scores = np.array([0.0] + [-1e9] * (n_beams - 1))
    max_len = len(ids) + n_new
    while True:
        flat = np.concatenate([(lg := m.logits(b)[-1]) - logsumexp(lg) + s for b, s in zip(beams, scores)])
        vocab = len(flat) // n_beams
        top = np.argsort(-flat, kind="stable")[:2 * n_beams]
        chosen = [(flat[i], i % vocab, i // vocab) for i in top][:n_beams]  # no EOS: the first n_beams
        beams = [beams[b] + [int(t)] for _, t, b in chosen]
        scores = np.array([s for s, _, _ in chosen])
        if len(beams[0]) >= max_len:
            break
    for b, s in zip(beams, scores):
        add(b, s)
    ranked = sorted(hyps, key=lambda h: h[0])
    return [ranked.pop() for _ in range(n_return)]


def main(model=GPT2, doc=__doc__):
    """The command line, for GPT2 or another model class with the same logits(ids) (ref_arch.py)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--ids", required=True, help="comma-separated token ids")
    p.add_argument("--out", help="write the logits here (raw float32, n x vocab)")
    p.add_argument("--greedy", type=int, default=0, help="print this many greedy continuation ids")
    p.add_argument("--beams", type=int, default=0, help="beam search with this many beams")
    p.add_argument("--beam-return", type=int, default=1, help="beam continuations to print")
    p.add_argument("--beam-new", type=int, default=0, help="new tokens for beam search")
    p.add_argument("--dtype", choices=["q8", "q8w"],
                   help="q8: compute as gpt2c --dtype q8 does; q8w: its weights only (the common scheme)")
    a = p.parse_args()
    ids = [int(t) for t in a.ids.split(",")]
    m = model(a.folder, a.dtype)
    lg = m.logits(ids)
    if a.out:
        lg.astype("<f4").tofile(a.out)
    if a.greedy:
        seq = list(ids)
        for _ in range(a.greedy):
            seq.append(int(np.argmax(m.logits(seq)[-1])))
        print(",".join(str(t) for t in seq[len(ids):]))
    if a.beams:
        for score, seq in beam_search(m, ids, a.beams, a.beam_return, a.beam_new):
            print(f"{score:.9f} " + ",".join(str(t) for t in seq[len(ids):]))


if __name__ == "__main__":
    main()
