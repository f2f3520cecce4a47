"""ref_arch.py -- independent reference forward passes, in numpy (float64), for the
architectures gpt2c runs besides GPT-2: GPT-Neo, OPT, GPT-NeoX, BLOOM, GPTBigCode and CodeGen.

Same command line as ref_gpt2.py (whose beam search and q8 helpers it shares):

  tools/ref_arch.py DIR --ids 15496,11,314 --out logits.f32 [--greedy N] [--beams B ...] [--dtype q8]

Written from transformers 4.30's modeling_gpt_neo.py, modeling_opt.py, modeling_gpt_neox.py,
modeling_bloom.py, modeling_gpt_bigcode.py and modeling_codegen.py semantics
(../shared/ARCH-NOTES.md sums them up), sharing no code with the C library: every nn.Linear
weight is (out, in) and y = x W^T + b.
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_gpt2  # noqa: E402
import safetensors_np  # noqa: E402


def act(name, x):
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "bloom_gelu":  # BLOOM's own factorisation, with its truncated constant
        return x * 0.5 * (1 + np.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))
    if name == "gelu":
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    if name == "relu":
        return np.maximum(x, 0)
    raise ValueError(name)


def attend(q, k, v, H, scale, window=0, bias=None):
    """Causal multi-head attention of (n, C) q, k, v; query i sees keys j <= i, and with a
    window only i - window < j. bias, (H, n) over the keys, is added to the scaled scores
    (ALiBi)."""
    n, C = q.shape
    hd = C // H
    q, k, v = (t.reshape(n, H, hd).transpose(1, 0, 2) for t in (q, k, v))
    s = q @ k.transpose(0, 2, 1) * scale
    if bias is not None:
        s = s + bias[:, None, :]
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    allowed = (j <= i) & ((j > i - window) if window else True)
    s = np.where(allowed, s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    return ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, C)


def alibi_slopes(H):
    """BLOOM's per-head ALiBi slopes, float32 powers of a float32 base as transformers computes
    them: the first p heads (p = the largest power of two <= H) get base^1..base^p, base =
    2^(-8/p); the other H - p get the odd powers of 2^(-4/p). Each power is rounded once to
    float32 (what powf gives: not exact powers of two when log2 p is odd), computed in double
    rather than with numpy's float32 power, whose SIMD kernels can be an ulp off."""
    p = 2 ** math.floor(math.log2(H))
    base = float(np.float32(2 ** (-(2 ** -(math.log2(p) - 3)))))
    extra = float(np.float32(2 ** (-(2 ** -(math.log2(2 * p) - 3)))))
    powers = [base ** k for k in range(1, p + 1)] + [extra ** k for k in range(1, 1 + 2 * min(p, H - p), 2)]
    return np.array(powers, dtype=np.float32).astype(np.float64)


class Model:
    def __init__(self, folder, dtype=None):
        with open(os.path.join(folder, "config.json")) as f:
            self.c = json.load(f)
        self.type = self.c["model_type"]
        self.w = safetensors_np.read(os.path.join(folder, "model.safetensors"))
        self.r = ref_gpt2.q16 if dtype == "q8" else (lambda x: x)
        embed = {"gpt_neo": "transformer.wte.weight", "opt": "model.decoder.embed_tokens.weight",
                 "gpt_neox": "gpt_neox.embed_in.weight", "bloom": "transformer.word_embeddings.weight",
                 "gpt_bigcode": "transformer.wte.weight", "codegen": "transformer.wte.weight"}[self.type]
        head = {"gpt_neox": "embed_out.weight"}.get(self.type, "lm_head.weight")
        self.embed = self.w[embed]
        self.head = self.w.get(head, self.embed)
        if dtype in ("q8", "q8w"):  # every product's matrix: the Linear weights and the head, blocks along the input
            for k, v in self.w.items():
                if v.ndim == 2 and k != embed and "embed_positions" not in k and "wpe" not in k:
                    self.w[k] = ref_gpt2.q8(v, 1)
            self.head = ref_gpt2.q8(self.head, 1)
            if head not in self.w:  # tied: the embedding is the head
                self.embed = self.head

    def lin(self, x, name, bias=True):
        y = self.r(x) @ self.w[name + ".weight"].T
        return y + self.w[name + ".bias"] if bias else y

    def ln(self, x, name, eps):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def logits(self, ids):
        return getattr(self, self.type)(np.array(ids))

    def gpt_neo(self, ids):
        c, n = self.c, len(ids)
        eps, H, W = c.get("layer_norm_epsilon", 1e-5), c["num_heads"], c.get("window_size", 256)
        x = self.embed[ids] + self.w["transformer.wpe.weight"][np.arange(n)]
        for i, kind in enumerate(c["attention_layers"]):
            p = f"transformer.h.{i}."
            h = self.ln(x, p + "ln_1", eps)
            q, k, v = (self.lin(h, p + f"attn.attention.{t}_proj", bias=False) for t in "qkv")
            a = attend(q, k, v, H, 1.0, W if kind == "local" else 0)  # no 1/sqrt(d)
            x = x + self.lin(a, p + "attn.attention.out_proj")
            h = act(c.get("activation_function", "gelu_new"), self.lin(self.ln(x, p + "ln_2", eps), p + "mlp.c_fc"))
            x = x + self.lin(h, p + "mlp.c_proj")
        return self.r(self.ln(x, "transformer.ln_f", eps)) @ self.head.T

    def opt(self, ids):
        c, n, d = self.c, len(ids), "model.decoder."
        H, eps, pre = c["num_attention_heads"], 1e-5, c.get("do_layer_norm_before", True)
        x = self.embed[ids]
        if d + "project_in.weight" in self.w:
            x = self.lin(x, d + "project_in", bias=False)
        x = x + self.w[d + "embed_positions.weight"][np.arange(n) + 2]  # offset 2
        hd = c["hidden_size"] // H
        for i in range(c["num_hidden_layers"]):
            p = f"{d}layers.{i}."
            h = self.ln(x, p + "self_attn_layer_norm", eps) if pre else x
            q = self.lin(h, p + "self_attn.q_proj") * hd ** -0.5  # q scaled before the product
            a = attend(q, self.lin(h, p + "self_attn.k_proj"), self.lin(h, p + "self_attn.v_proj"), H, 1.0)
            x = x + self.lin(a, p + "self_attn.out_proj")
            if not pre:
                x = self.ln(x, p + "self_attn_layer_norm", eps)
            h = self.ln(x, p + "final_layer_norm", eps) if pre else x
            x = x + self.lin(act(c.get("activation_function", "relu"), self.lin(h, p + "fc1")), p + "fc2")
            if not pre:
                x = self.ln(x, p + "final_layer_norm", eps)
        if d + "final_layer_norm.weight" in self.w:
            x = self.ln(x, d + "final_layer_norm", eps)
        if d + "project_out.weight" in self.w:
            x = self.lin(x, d + "project_out", bias=False)
        return self.r(x) @ self.head.T

    def gpt_neox(self, ids):
        c, n = self.c, len(ids)
        H, eps = c["num_attention_heads"], c.get("layer_norm_eps", 1e-5)
        C = c["hidden_size"]
        hd = C // H
        r = int(hd * c.get("rotary_pct", 0.25))
        inv_freq = 1.0 / (c.get("rotary_emb_base", 10000) ** (np.arange(0, r, 2) / r))
        ang = np.arange(n)[:, None] * inv_freq[None, :]  # (n, r/2)
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

        def rope(t):  # (n, H, hd): rotate-half on the first r dims
            a, b = t[..., :r // 2], t[..., r // 2:r]
            return np.concatenate([a * cos - b * sin, b * cos + a * sin, t[..., r:]], -1)

        x = self.embed[ids]
        for i in range(c["num_hidden_layers"]):
            p = f"gpt_neox.layers.{i}."
            qkv = self.lin(self.ln(x, p + "input_layernorm", eps), p + "attention.query_key_value").reshape(n, H, 3 * hd)
            q, k, v = rope(qkv[..., :hd]), rope(qkv[..., hd:2 * hd]), qkv[..., 2 * hd:]
            a = attend(q.reshape(n, C), k.reshape(n, C), v.reshape(n, C), H, 1 / math.sqrt(hd))
            a = self.lin(a, p + "attention.dense")
            mlp = lambda h: self.lin(act(c.get("hidden_act", "gelu"), self.lin(h, p + "mlp.dense_h_to_4h")),
                                     p + "mlp.dense_4h_to_h")
            if c.get("use_parallel_residual", True):
                x = mlp(self.ln(x, p + "post_attention_layernorm", eps)) + a + x
            else:
                a = a + x
                x = mlp(self.ln(a, p + "post_attention_layernorm", eps)) + a
        return self.r(self.ln(x, "gpt_neox.final_layer_norm", eps)) @ self.head.T

    def bloom(self, ids):
        c, n = self.c, len(ids)
        H, eps, C = c.get("n_head", c.get("num_attention_heads")), c.get("layer_norm_epsilon", 1e-5), c["hidden_size"]
        hd, post = C // H, c.get("apply_residual_connection_post_layernorm", False)
        bias = alibi_slopes(H)[:, None] * np.arange(n)[None, :]  # slope_h * key position
        x = self.ln(self.embed[ids], "transformer.word_embeddings_layernorm", eps)
        for i in range(c.get("n_layer", c.get("num_hidden_layers"))):
            p = f"transformer.h.{i}."
            h = self.ln(x, p + "input_layernorm", eps)
            qkv = self.lin(h, p + "self_attention.query_key_value").reshape(n, H, 3, hd)  # per head q, k, v
            q, k, v = (qkv[:, :, j].reshape(n, C) for j in range(3))
            a = self.lin(attend(q, k, v, H, 1 / math.sqrt(hd), bias=bias), p + "self_attention.dense")
            x = a + (h if post else x)
            h = self.ln(x, p + "post_attention_layernorm", eps)
            m = self.lin(act("bloom_gelu", self.lin(h, p + "mlp.dense_h_to_4h")), p + "mlp.dense_4h_to_h")
            x = m + (h if post else x)
        return self.r(self.ln(x, "transformer.ln_f", eps)) @ self.head.T

    def gpt_bigcode(self, ids):
        c, n = self.c, len(ids)
        H, C, eps = c["n_head"], c["n_embd"], c.get("layer_norm_epsilon", 1e-5)
        hd, mq = C // H, c.get("multi_query", True)
        x = self.embed[ids] + self.w["transformer.wpe.weight"][np.arange(n)]
        for i in range(c["n_layer"]):
            p = f"transformer.h.{i}."
            qkv = self.lin(self.ln(x, p + "ln_1", eps), p + "attn.c_attn")
            if mq:  # all heads' q, then the one k and v every head shares
                q, k, v = qkv[:, :C], np.tile(qkv[:, C:C + hd], H), np.tile(qkv[:, C + hd:], H)
            else:  # per head q, k, v
                qkv = qkv.reshape(n, H, 3, hd)
                q, k, v = (qkv[:, :, j].reshape(n, C) for j in range(3))
            x = x + self.lin(attend(q, k, v, H, 1 / math.sqrt(hd)), p + "attn.c_proj")
            h = self.lin(self.ln(x, p + "ln_2", eps), p + "mlp.c_fc")
            x = x + self.lin(act(c.get("activation_function", "gelu_pytorch_tanh"), h), p + "mlp.c_proj")
        return self.r(self.ln(x, "transformer.ln_f", eps)) @ self.head.T

    def codegen(self, ids):
        c, n = self.c, len(ids)
        H, C, eps = c["n_head"], c["n_embd"], c.get("layer_norm_epsilon", 1e-5)
        hd, r = C // H, c.get("rotary_dim") or C // H
        inv_freq = 1.0 / (10000 ** (np.arange(0, r, 2) / r))
        ang = np.arange(n)[:, None] * inv_freq[None, :]  # (n, r/2)
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

        def rope(t):  # (n, H, hd): GPT-J's rotation of the pairs (2i, 2i+1) of the first r dims
            a, b = t[..., 0:r:2], t[..., 1:r:2]
            rot = np.stack([a * cos - b * sin, b * cos + a * sin], -1).reshape(n, H, r)
            return np.concatenate([rot, t[..., r:]], -1)

        x = self.embed[ids]
        for i in range(c["n_layer"]):
            p = f"transformer.h.{i}."
            h = self.ln(x, p + "ln_1", eps)
            # mp_num = 4: four chunks, each [q | v | k] of a quarter of the heads
            qvk = self.lin(h, p + "attn.qkv_proj", bias=False).reshape(n, 4, 3, C // 4)
            q, v, k = (qvk[:, :, j].reshape(n, H, hd) for j in range(3))
            a = attend(rope(q).reshape(n, C), rope(k).reshape(n, C), v.reshape(n, C), H, 1 / math.sqrt(hd))
            m = self.lin(act(c.get("activation_function", "gelu_new"), self.lin(h, p + "mlp.fc_in")),
                         p + "mlp.fc_out")
            x = (self.lin(a, p + "attn.out_proj", bias=False) + m) + x  # attention and MLP in parallel
        return self.r(self.ln(x, "transformer.ln_f", eps)) @ self.head.T + self.w["lm_head.bias"]


if __name__ == "__main__":
    ref_gpt2.main(Model, __doc__)
