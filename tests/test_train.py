#!/usr/bin/python3
"""test_train.py BUILD_DIR REF_DIR -- fine-tuning against PyTorch (Debian's python3-torch).

A small GPT-2 written here in torch loads the same safetensors as gpt2c, and so does a torch
forward of each other architecture (GPT-Neo, OPT, GPT-NeoX, BLOOM, GPTBigCode, CodeGen). Checked:
  - the gradient of every parameter for a batch equals torch autograd's within 1e-4 of the
    tensor's largest (tiny, the variant with every option, and a gpt2-shaped checkpoint), and
    in train mode with dropout, the torch model applying masks drawn as gpt2c documents them;
    likewise on every reference checkpoint of the other architectures (without dropout);
  - 20 steps of `gpt2c finetune` (AdamW with weight decay, warm-up and linear decay, clipping)
    follow torch's loss curve (torch.optim.AdamW, LambdaLR, clip_grad_norm_) within 1e-4
    relative, and the saved weights match torch's;
  - the blocks are run_clm.py's: the file's tokens plus EOS, cut into whole blocks;
  - a run stopped at a checkpoint and resumed writes the same bytes as the uninterrupted run
    (GPT-2, OPT post-LN, CodeGen);
  - LoRA against PEFT's forward in torch (GPT-2), and on OPT, GPT-NeoX and GPTBigCode with
    PEFT's default targets: PEFT's keys, --lora at load equal to the merged model;
  - bad options and data give exit 2 and 1 with a message naming them.
Prints "train: N passed, N failed". Skips (passing) without torch or the reference checkpoints.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import safetensors_np  # noqa: E402

BUILD, REF = sys.argv[1], sys.argv[2]
BIN = os.path.join(BUILD, "gpt2c")
HELPER = os.path.join(BUILD, "tests", "test_train")
results = {"pass": 0, "fail": 0}


def check(ok, what):
    results["pass" if ok else "fail"] += 1
    if not ok:
        print("FAIL:", what)


try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("train: skipped (no python3-torch)")
    sys.exit(0)
if not os.path.isdir(os.path.join(REF, "tiny-f32")):
    print("train: skipped (no reference checkpoints in %s)" % REF)
    sys.exit(0)
torch.set_num_threads(2)
# The sanitizer builds run the slowest cases smaller (gcc's took 394 s for this file where the plain
# build takes 146): the gpt2-shaped gradients and the stride-1 perplexity are left to the plain
# build, and the loss curve runs 8 steps instead of 20 (warm-up and decay both still in it).
SANITIZED = b"__asan_init" in open(BIN, "rb").read()  # gcc links the runtime, clang builds it in


M64 = (1 << 64) - 1


def mix(z):
    """SplitMix64's finaliser on Python ints (scalars) or uint64 arrays."""
    if isinstance(z, np.ndarray):
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
            return z ^ (z >> np.uint64(31))
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def dropout_mask(p, seed, counter, site, shape):
    """gpt2c's dropout scales for a site (src/train/ops.h), written again from its comment."""
    key = mix((mix((seed * 0x9E3779B97F4A7C15 + counter) & M64) + site * 0xD1B54A32D192ED03) & M64)
    i = np.arange(int(np.prod(shape)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        u = mix(np.uint64(key) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    keep = u.astype(np.float64) >= p * 16777216.0
    return torch.tensor(np.where(keep, 1.0 / np.float32(1.0 - p), 0.0).astype(np.float32).reshape(shape))


def strip(name):
    return name[len("transformer."):] if name.startswith("transformer.") else name


class TorchGPT2:
    """GPT2LMHeadModel's forward (dropout off) over the checkpoint's own tensors."""

    def __init__(self, folder):
        self.lora, self.lora_scale = {}, 1.0  # "h.0.attn.c_attn" -> (A (r, in), B (out, r)): PEFT's forward
        self.cfg = json.load(open(os.path.join(folder, "config.json")))
        arrays = safetensors_np.read(os.path.join(folder, "model.safetensors"), np.float32)
        self.p = {strip(k): torch.tensor(np.ascontiguousarray(v), dtype=torch.float32, requires_grad=True)
                  for k, v in arrays.items() if not k.endswith(".attn.bias") and not k.endswith("masked_bias")}

    def head(self):
        return self.p.get("lm_head.weight", self.p["wte.weight"])

    def param(self, name):
        return self.p[strip(name)]

    def loss(self, ids, drop=None):
        return self.loss_masked(ids, ids.shape[1], drop)

    def loss_masked(self, ids, trg_len, drop=None):
        """GPT2LMHeadModel(ids, labels) with labels[:, :-trg_len] = -100; drop (p, seed, counter):
        train mode with gpt2c's masks."""
        c, p = self.cfg, self.p
        B, T = ids.shape
        C, H = c["n_embd"], c["n_head"]
        eps = c.get("layer_norm_epsilon", 1e-5)
        act = c.get("activation_function", "gelu_new")
        L = c["n_layer"]
        d = (lambda site, shape: dropout_mask(drop[0], drop[1], drop[2], site, shape)) if drop else None
        x = p["wte.weight"][ids] + p["wpe.weight"][:T]
        if d:
            x = x * d(3 * L, (B, T, C))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for l in range(c["n_layer"]):
            g = lambda n: p["h.%d.%s" % (l, n)]  # noqa: E731

            def lin(x, mod):  # a Conv1D, plus its adapter as PEFT's LoRA layer adds it
                y = x @ g(mod + ".weight") + g(mod + ".bias")
                ab = self.lora.get("h.%d.%s" % (l, mod))
                return y + (x @ ab[0].T @ ab[1].T) * self.lora_scale if ab else y
            h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), eps)
            q, k, v = lin(h, "attn.c_attn").split(C, dim=2)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            w = q @ k.transpose(-1, -2)
            if c.get("scale_attn_weights", True):
                w = w / (C // H) ** 0.5
            if c.get("scale_attn_by_inverse_layer_idx", False):
                w = w / float(l + 1)
            w = torch.where(mask, w, torch.tensor(torch.finfo(torch.float32).min))
            w = w.softmax(-1)
            if d:
                w = w * d(3 * l, (B, H, T, T))
            y = lin((w @ v).transpose(1, 2).reshape(B, T, C), "attn.c_proj")
            x = x + (y * d(3 * l + 1, (B, T, C)) if d else y)
            h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), eps)
            f = lin(h, "mlp.c_fc")
            f = {"gelu_new": lambda t: F.gelu(t, approximate="tanh"), "gelu": F.gelu, "relu": F.relu}[act](f)
            f = lin(f, "mlp.c_proj")
            x = x + (f * d(3 * l + 2, (B, T, C)) if d else f)
        x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], eps)
        logits = x @ self.head().T
        labels = ids.clone()
        labels[:, :-trg_len] = -100
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


class TorchArch:
    """The other architectures' CausalLM forward (dropout off) in torch, written from
    transformers 4.30's modeling code (../shared/ARCH-NOTES.md), over the checkpoint's own
    tensors under the file's names: nn.Linear weights (out, in)."""

    BUFFERS = (".attn.bias", ".attention.bias", "masked_bias", "inv_freq", "causal_mask")

    def __init__(self, folder):
        self.cfg = c = json.load(open(os.path.join(folder, "config.json")))
        self.type = c["model_type"]
        arrays = safetensors_np.read(os.path.join(folder, "model.safetensors"), np.float32)
        self.tied = c.get("tie_word_embeddings", self.type not in ("gpt_neox", "codegen"))
        self.p = {k: torch.tensor(np.ascontiguousarray(v), dtype=torch.float32, requires_grad=True)
                  for k, v in arrays.items()
                  if not k.endswith(self.BUFFERS) and not (self.tied and k == "lm_head.weight")}

    def param(self, name):
        return self.p[name]

    def loss(self, ids, drop=None):
        assert drop is None
        c, p, kind = self.cfg, self.p, self.type
        B, T = ids.shape
        g = lambda n: p[n]  # noqa: E731
        lin = lambda x, n, bias=True: x @ g(n + ".weight").T + (g(n + ".bias") if bias else 0)  # noqa: E731
        ln = lambda x, n, eps: F.layer_norm(x, (x.shape[-1],), g(n + ".weight"), g(n + ".bias"), eps)  # noqa: E731
        pos = torch.arange(T)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        gelu_tanh = lambda t: F.gelu(t, approximate="tanh")  # noqa: E731

        def attend(q, k, v, H, scale=1.0, window=0, bias=None):  # (B, T, C) each, k/v maybe one head
            hd = q.shape[-1] // H
            q = q.view(B, T, H, hd).transpose(1, 2)
            k, v = (t.view(B, T, -1, hd).transpose(1, 2) for t in (k, v))
            w = (q @ k.transpose(-1, -2)) * scale
            if bias is not None:
                w = w + bias
            mask = causal & (pos[None, :] > pos[:, None] - window) if window else causal
            w = torch.where(mask, w, torch.tensor(torch.finfo(torch.float32).min)).softmax(-1)
            return (w @ v).transpose(1, 2).reshape(B, T, H * hd)

        def rotary(x, H, rot, interleaved):  # (B, T, C): the first rot dims of each head
            hd = x.shape[-1] // H
            x = x.view(B, T, H, hd)
            inv = 1.0 / (10000 ** (torch.arange(0, rot, 2).float() / rot))
            ang = pos.float()[:, None] * inv[None, :]  # (T, rot / 2)
            r, rest = x[..., :rot], x[..., rot:]
            if interleaved:  # CodeGen's rotate_every_two: pairs (2i, 2i + 1)
                sin, cos = (torch.repeat_interleave(f(ang), 2, dim=-1)[None, :, None, :] for f in (torch.sin, torch.cos))
                turned = torch.stack((-r[..., 1::2], r[..., ::2]), dim=-1).flatten(-2)
            else:  # GPT-NeoX's rotate_half: pairs (i, i + rot / 2)
                sin, cos = (torch.cat((f(ang), f(ang)), -1)[None, :, None, :] for f in (torch.sin, torch.cos))
                turned = torch.cat((-r[..., rot // 2:], r[..., :rot // 2]), -1)
            return torch.cat((r * cos + turned * sin, rest), -1).reshape(B, T, H * hd)

        if kind == "gpt_neo":
            C, H, eps, t = c["hidden_size"], c["num_heads"], c["layer_norm_epsilon"], "transformer."
            x = g(t + "wte.weight")[ids] + g(t + "wpe.weight")[pos]
            for l, typ in enumerate(c["attention_layers"]):
                a = t + "h.%d." % l
                h = ln(x, a + "ln_1", eps)
                at = a + "attn.attention."
                y = attend(lin(h, at + "q_proj", False), lin(h, at + "k_proj", False), lin(h, at + "v_proj", False), H,
                           window=c["window_size"] if typ == "local" else 0)
                x = x + lin(y, at + "out_proj")
                x = x + lin(gelu_tanh(lin(ln(x, a + "ln_2", eps), a + "mlp.c_fc")), a + "mlp.c_proj")
            x = ln(x, t + "ln_f", eps)
            logits = x @ g(t + "wte.weight").T
        elif kind == "opt":
            C, H, t = c["hidden_size"], c["num_attention_heads"], "model.decoder."
            pre = c.get("do_layer_norm_before", True)
            x = g(t + "embed_tokens.weight")[ids]
            if t + "project_in.weight" in p:
                x = lin(x, t + "project_in", False)
            x = x + g(t + "embed_positions.weight")[pos + 2]
            for l in range(c["num_hidden_layers"]):
                a = t + "layers.%d." % l
                h = ln(x, a + "self_attn_layer_norm", 1e-5) if pre else x
                q = lin(h, a + "self_attn.q_proj") * (C // H) ** -0.5
                x = x + lin(attend(q, lin(h, a + "self_attn.k_proj"), lin(h, a + "self_attn.v_proj"), H),
                            a + "self_attn.out_proj")
                if not pre:
                    x = ln(x, a + "self_attn_layer_norm", 1e-5)
                h = ln(x, a + "final_layer_norm", 1e-5) if pre else x
                x = x + lin(F.relu(lin(h, a + "fc1")), a + "fc2")
                if not pre:
                    x = ln(x, a + "final_layer_norm", 1e-5)
            if t + "final_layer_norm.weight" in p:
                x = ln(x, t + "final_layer_norm", 1e-5)
            if t + "project_out.weight" in p:
                x = lin(x, t + "project_out", False)
            logits = x @ g(t + "embed_tokens.weight").T
        elif kind == "gpt_neox":
            C, H, eps, t = c["hidden_size"], c["num_attention_heads"], c["layer_norm_eps"], "gpt_neox."
            hd = C // H
            x = g(t + "embed_in.weight")[ids]
            for l in range(c["num_hidden_layers"]):
                a = t + "layers.%d." % l
                qkv = lin(ln(x, a + "input_layernorm", eps), a + "attention.query_key_value").view(B, T, H, 3 * hd)
                q, k, v = (qkv[..., i * hd:(i + 1) * hd].reshape(B, T, C) for i in range(3))
                rot = int(hd * c["rotary_pct"])
                y = attend(rotary(q, H, rot, False), rotary(k, H, rot, False), v, H, hd ** -0.5)
                y = lin(y, a + "attention.dense")
                if c.get("use_parallel_residual", True):
                    x = x + y + lin(F.gelu(lin(ln(x, a + "post_attention_layernorm", eps), a + "mlp.dense_h_to_4h")),
                                    a + "mlp.dense_4h_to_h")
                else:
                    x = x + y
                    x = x + lin(F.gelu(lin(ln(x, a + "post_attention_layernorm", eps), a + "mlp.dense_h_to_4h")),
                                a + "mlp.dense_4h_to_h")
            logits = ln(x, t + "final_layer_norm", eps) @ g("embed_out.weight").T
        elif kind == "bloom":
            import ref_arch
            C, H, eps, t = c["hidden_size"], c["n_head"], c["layer_norm_epsilon"], "transformer."
            hd = C // H
            slopes = torch.tensor(ref_arch.alibi_slopes(H), dtype=torch.float32)
            alibi = (slopes[:, None] * pos.float()[None, :])[None, :, None, :]  # (1, H, 1, T) over the keys
            bgelu = lambda x: x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))  # noqa: E731
            post = c.get("apply_residual_connection_post_layernorm", False)
            x = ln(g(t + "word_embeddings.weight")[ids], t + "word_embeddings_layernorm", eps)
            for l in range(c["n_layer"]):
                a = t + "h.%d." % l
                h = ln(x, a + "input_layernorm", eps)
                qkv = lin(h, a + "self_attention.query_key_value").view(B, T, H, 3, hd)
                q, k, v = (qkv[..., i, :].reshape(B, T, C) for i in range(3))
                x = (h if post else x) + lin(attend(q, k, v, H, hd ** -0.5, bias=alibi), a + "self_attention.dense")
                h = ln(x, a + "post_attention_layernorm", eps)
                x = (h if post else x) + lin(bgelu(lin(h, a + "mlp.dense_h_to_4h")), a + "mlp.dense_4h_to_h")
            logits = ln(x, t + "ln_f", eps) @ g(t + "word_embeddings.weight").T
        elif kind == "gpt_bigcode":
            C, H, eps, t = c["n_embd"], c["n_head"], c["layer_norm_epsilon"], "transformer."
            hd = C // H
            scale = hd ** -0.5 if c.get("scale_attn_weights", True) else 1.0
            x = g(t + "wte.weight")[ids] + g(t + "wpe.weight")[pos]
            for l in range(c["n_layer"]):
                a = t + "h.%d." % l
                qkv = lin(ln(x, a + "ln_1", eps), a + "attn.c_attn")
                if c.get("multi_query", True):  # q of every head, then one k and one v
                    q, k, v = qkv[..., :C], qkv[..., C:C + hd], qkv[..., C + hd:]
                else:  # per head [q k v]
                    qkv = qkv.view(B, T, H, 3 * hd)
                    q, k, v = (qkv[..., i * hd:(i + 1) * hd].reshape(B, T, C) for i in range(3))
                x = x + lin(attend(q, k, v, H, scale), a + "attn.c_proj")
                x = x + lin(gelu_tanh(lin(ln(x, a + "ln_2", eps), a + "mlp.c_fc")), a + "mlp.c_proj")
            logits = ln(x, t + "ln_f", eps) @ g(t + "wte.weight").T
        elif kind == "codegen":
            C, H, eps, t = c["n_embd"], c["n_head"], c["layer_norm_epsilon"], "transformer."
            hd, mp = C // H, 4
            x = g(t + "wte.weight")[ids]
            for l in range(c["n_layer"]):
                a = t + "h.%d." % l
                h = ln(x, a + "ln_1", eps)
                qkv = lin(h, a + "attn.qkv_proj", False).view(B, T, mp, -1)  # groups of [q | v | k]
                part = C // mp
                q, v, k = (qkv[..., i * part:(i + 1) * part].reshape(B, T, C) for i in range(3))
                rot = c["rotary_dim"] or hd
                y = lin(attend(rotary(q, H, rot, True), rotary(k, H, rot, True), v, H, hd ** -0.5),
                        a + "attn.out_proj", False)
                x = x + y + lin(gelu_tanh(lin(h, a + "mlp.fc_in")), a + "mlp.fc_out")
            logits = lin(ln(x, t + "ln_f", eps), "lm_head")
        else:
            raise ValueError(kind)
        V = logits.shape[-1]
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))


def test_gradients(tmp, name, B, T, drop=None):
    """drop (p, seed, counter): in train mode with that dropout, masks as gpt2c draws them."""
    folder = os.path.join(REF, name)
    if not os.path.isdir(folder):
        return
    model = TorchGPT2(folder) if json.load(open(os.path.join(folder, "config.json")))["model_type"] == "gpt2" \
        else TorchArch(folder)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, model.cfg["vocab_size"], size=(B, T))
    with open(os.path.join(tmp, "ids.txt"), "w") as f:
        f.write("%d %d %s\n" % (B, T, " ".join(map(str, ids.reshape(-1)))))
    out = os.path.join(tmp, "grads.f32")
    extra = [str(drop[0]), str(drop[1]), str(drop[2])] if drop else []
    r = subprocess.run([HELPER, "--grads", folder, os.path.join(tmp, "ids.txt"), out] + extra, capture_output=True,
                       text=True)
    check(r.returncode == 0, "%s: test_train --grads: %s" % (name, r.stderr))
    if r.returncode:
        return
    ours = np.fromfile(out, dtype=np.float32)
    loss = model.loss(torch.tensor(ids), drop)
    loss.backward()
    check(abs(ours[0] - loss.item()) <= 1e-5 * abs(loss.item()), "%s: loss %r, torch %r" % (name, ours[0], loss.item()))
    at, worst = 1, 0.0
    names = [line.split() for line in open(out + ".names")]
    check(len(names) == len(model.p), "%s: %d tensors, torch has %d" % (name, len(names), len(model.p)))
    # A gradient that is zero but for rounding (a key bias: softmax ignores a shift of a query's
    # scores) is held to 1e-7 of the model's largest instead of to its own largest.
    floor = 1e-3 * max(np.abs(model.param(tname).grad.numpy()).max() for tname, _ in names)
    for tname, count in names:
        count = int(count)
        g = ours[at:at + count]
        at += count
        ref = model.param(tname).grad.numpy().reshape(-1)
        err = np.abs(g - ref).max() / max(np.abs(ref).max(), floor, 1e-30)
        worst = max(worst, err)
        check(err <= 1e-4, "%s: gradient of %s differs from torch's by %.3g of its largest" % (name, tname, err))
    check(at == ours.size, "%s: gradient file has %d values, names cover %d" % (name, ours.size, at))
    print("train: %s gradients of %d tensors%s, worst %.2g of the largest (limit 1e-4)" % (
        name, len(names), " with %g dropout" % drop[0] if drop else "", worst))


def gpt2c(*args, **kw):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, **kw)


def tokens_of(path, folder):
    r = gpt2c("tokenize", "-m", folder, "-f", path, "--json")
    return json.loads(r.stdout)["ids"] if r.returncode == 0 else None


def write_text(path, lines, seed):
    rng = np.random.default_rng(seed)
    words = "the cat sat on a mat and a dog ran to the park while birds sang in tall green trees".split()
    with open(path, "w") as f:
        for _ in range(lines):
            f.write(" ".join(rng.choice(words, size=10)) + ".\n")


def test_curve(tmp):
    folder = os.path.join(REF, "tiny-f32")
    data = os.path.join(tmp, "train.txt")
    write_text(data, 40, 1)
    block, steps, lr, warmup, wd = 32, 8 if SANITIZED else 20, 2e-3, 3, 0.01
    out = os.path.join(tmp, "curve")
    r = gpt2c("finetune", "-m", folder, "--train", data, "-o", out, "--block-size", str(block),
              "--batch-size", "64", "--max-steps", str(steps), "--lr", str(lr), "--warmup-steps", str(warmup),
              "--weight-decay", str(wd), "--validation-split", "0", "--no-shuffle", "--no-dropout", "--json")
    check(r.returncode == 0, "finetune: exit %d: %s" % (r.returncode, r.stderr))
    if r.returncode:
        return
    events = [json.loads(line) for line in r.stdout.splitlines()]
    ours = [e["loss"] for e in events if e["event"] == "step"]
    norms = [e["grad_norm"] for e in events if e["event"] == "step"]
    lrs = [e["learning_rate"] for e in events if e["event"] == "step"]

    ids = tokens_of(data, folder)
    eos = json.load(open(os.path.join(folder, "config.json"))).get("eos_token_id", 50256)
    ids = ids + [eos]
    n = len(ids) // block
    start = [e for e in events if e["event"] == "start"][0]
    check(start["train_blocks"] == n, "blocks: %d, run_clm's group_texts gives %d" % (start["train_blocks"], n))
    batch = torch.tensor(np.array(ids[:n * block]).reshape(n, block))

    model = TorchGPT2(folder)
    params = list(model.p.values())
    groups = [{"params": [p for p in params if p.dim() == 2], "weight_decay": wd},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    theirs, their_norms, their_lrs = [], [], []
    for _ in range(steps):
        loss = model.loss(batch)
        loss.backward()
        # The exact norm: torch's own (f32 sums) is 1.8e-4 off on the embedding's gradient.
        their_norms.append(float(np.sqrt(sum((p.grad.double() ** 2).sum().item() for p in params))))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        their_lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
        opt.zero_grad()
        theirs.append(loss.item())
    check(len(ours) == steps, "finetune ran %d steps, asked %d" % (len(ours), steps))
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))
    check(worst <= 1e-4, "loss curve differs from torch's by %.3g relative: %s vs %s" % (worst, ours, theirs))
    check(all(abs(a - b) <= 1e-9 + 1e-6 * b for a, b in zip(lrs, their_lrs)), "learning rates %s vs %s" % (lrs, their_lrs))
    check(all(abs(a - b) <= 1e-4 * b for a, b in zip(norms, their_norms)), "grad norms %s vs %s" % (norms, their_norms))
    check(theirs[-1] < theirs[0] - 1.0, "the loss fell: %.3f -> %.3f" % (theirs[0], theirs[-1]))
    print("train: %d-step loss %.4f -> %.4f, worst %.2g relative to torch's (limit 1e-4)%s" %
          (steps, ours[0], ours[-1], worst, " (sanitizer build: the plain build runs 20)" if SANITIZED else ""))

    # The saved model: torch's weights after the same steps.
    saved = safetensors_np.read(os.path.join(out, "model.safetensors"), np.float32)
    # Per tensor, the difference's norm over the weights'. The key bias's gradient is zero but for
    # rounding (softmax ignores a score added to every key), and Adam turns that noise into whole
    # steps either way in both programs: its slice of c_attn.bias is left out.
    C = model.cfg["n_embd"]

    def rel(k):
        a, b = saved[k], model.p[strip(k)].detach().numpy()
        if k.endswith("attn.c_attn.bias"):
            a, b = np.delete(a, np.s_[C:2 * C]), np.delete(b, np.s_[C:2 * C])
        return np.linalg.norm(a - b) / np.linalg.norm(b)
    werr = max(rel(k) for k in saved)
    check(werr <= 1e-4, "saved weights differ from torch's by %.3g (norm of the difference over the weights')" % werr)
    print("train: saved weights, worst tensor %.2g from torch's (norm of the difference over the weights')" % werr)
    for f in ("config.json", "generation_config.json", "vocab.json", "merges.txt"):
        check(os.path.exists(os.path.join(out, f)), "output lacks " + f)
    check(not [f for f in os.listdir(out) if f.startswith(".")], "output keeps temporary files")
    r = gpt2c("generate", "-m", out, "-p", "the cat", "-n", "5")
    check(r.returncode == 0, "the output does not generate: " + r.stderr)


def test_resume(tmp, name="tiny-f32"):
    folder = os.path.join(REF, name)
    if not os.path.isdir(folder):
        return
    tmp = os.path.join(tmp, "resume-" + name)
    os.mkdir(tmp)
    data = os.path.join(tmp, "resume.txt")
    write_text(data, 60, 2)
    common = ["-m", folder, "--train", data, "--block-size", "16", "--batch-size", "3", "--grad-accum", "2",
              "--max-steps", "6", "--lr", "1e-3", "--warmup-steps", "2", "--weight-decay", "0.1", "--json"]
    a = gpt2c("finetune", "-o", os.path.join(tmp, "a"), *common)
    b = gpt2c("finetune", "-o", os.path.join(tmp, "b"), "--save-every", "3", *common)
    ckpt = os.path.join(tmp, "b", "checkpoint-3")
    check(a.returncode == 0 and b.returncode == 0 and os.path.isdir(ckpt), "runs: %s %s" % (a.stderr, b.stderr))
    for f in ("model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.json", "vocab.json"):
        check(os.path.exists(os.path.join(ckpt, f)), "checkpoint lacks " + f)
    c = gpt2c("finetune", "-o", os.path.join(tmp, "c"), "--resume", ckpt, *common)
    check(c.returncode == 0, "resume: " + c.stderr)
    if a.returncode or c.returncode:
        return
    steps = lambda r: [json.loads(x) for x in r.stdout.splitlines() if json.loads(x)["event"] == "step"]  # noqa: E731
    la, lc = steps(a), steps(c)
    check([e["step"] for e in lc] == [4, 5, 6], "resumed steps: %s" % [e["step"] for e in lc])
    check([e["loss"] for e in la[3:]] == [e["loss"] for e in lc], "resumed losses differ: %s vs %s" % (la[3:], lc))
    same = open(os.path.join(tmp, "a", "model.safetensors"), "rb").read() == \
        open(os.path.join(tmp, "c", "model.safetensors"), "rb").read()
    check(same, "the resumed run's model.safetensors differs from the uninterrupted run's")
    print("train: %s resumed at step 3 of 6: the same losses and bytes as the uninterrupted run" % name)


def recipe_ppl(model, ids, context, stride):
    """transformers' perplexity guide, on the torch model."""
    nlls, prev_end = [], 0
    with torch.no_grad():
        for begin in range(0, len(ids), stride):
            end = min(begin + context, len(ids))
            nlls.append(model.loss_masked(torch.tensor([ids[begin:end]]), end - prev_end).item())
            prev_end = end
            if end == len(ids):
                break
    return float(np.exp(np.mean(nlls))), len(nlls)


def test_perplexity(tmp):
    """gpt2c perplexity against the guide's recipe run on the torch model."""
    folder = os.path.join(REF, "tiny-f32")
    data = os.path.join(tmp, "ppl.txt")
    write_text(data, 30, 3)
    ids = tokens_of(data, folder)
    model = TorchGPT2(folder)
    if SANITIZED:
        print("train: (sanitizer build: perplexity at stride 1 is left to the plain build)")
    for context, stride in ((64, 24), (64, 64)) + (() if SANITIZED else ((50, 1),)):
        want, windows = recipe_ppl(model, ids, context, stride)
        r = gpt2c("perplexity", "-m", folder, "-f", data, "--context", str(context), "--stride", str(stride), "--json")
        check(r.returncode == 0, "perplexity: " + r.stderr)
        if r.returncode:
            continue
        got = json.loads(r.stdout)
        check(abs(got["perplexity"] - want) <= 1e-5 * want and got["windows"] == windows,
              "perplexity context %d stride %d: %r (%d windows), torch's recipe %r (%d)" %
              (context, stride, got["perplexity"], got["windows"], want, windows))
        print("train: perplexity context %d stride %d: %.6g, torch's recipe %.6g" % (context, stride, got["perplexity"], want))
    f16 = json.loads(gpt2c("perplexity", "-m", folder, "-f", data, "--context", "64", "--dtype", "f16", "--json").stdout)
    f32 = json.loads(gpt2c("perplexity", "-m", folder, "-f", data, "--context", "64", "--json").stdout)
    check(f16["dtype"] == "F16" and abs(f16["mean_nll"] - f32["mean_nll"]) < 1e-2 * f32["mean_nll"],
          "f16 perplexity %r, f32 %r" % (f16, f32))
    r = gpt2c("perplexity", "-m", folder, "-f", data, "--context", "16", "--stride", "17")
    check(r.returncode == 2 and "stride" in r.stderr, "stride above context: %d %r" % (r.returncode, r.stderr))


LORA_MODULES = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]


def lora_init(model, rank, modules, seed):
    """gpt2c's initial adapters (src/train/train.c), written again: A uniform in +-1/sqrt(in) from
    SplitMix64, one draw per value, layer by layer and module by module; B zero."""
    c = model.cfg
    x = (seed ^ 0x4c6f5241) & M64
    out = {}
    for l in range(c["n_layer"]):
        for mod in LORA_MODULES:
            if mod not in modules:
                continue
            w = model.p["h.%d.%s.weight" % (l, mod)]
            din, dout = w.shape
            n = rank * din
            xs = (np.uint64(x) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9e3779b97f4a7c15))
            x = (x + n * 0x9e3779b97f4a7c15) & M64
            u = (mix(xs) >> np.uint64(11)).astype(np.float64) / 9007199254740992.0
            A = ((2.0 * u - 1.0) * np.float32(1.0 / np.sqrt(np.float32(din)))).astype(np.float32).reshape(rank, din)
            out["h.%d.%s" % (l, mod)] = (torch.tensor(A, requires_grad=True),
                                         torch.zeros(dout, rank, requires_grad=True))
    return out


def test_lora(tmp):
    """LoRA against a torch re-implementation of PEFT's forward: the training curve, the adapter
    files (PEFT's names, shapes, config), --lora at load, --merge."""
    folder = os.path.join(REF, "tiny-f32")
    data = os.path.join(tmp, "lora.txt")
    write_text(data, 40, 4)
    rank, alpha, steps, lr, wd = 4, 16.0, 10, 5e-3, 0.01
    out = os.path.join(tmp, "lora")
    r = gpt2c("finetune", "-m", folder, "--train", data, "-o", out, "--block-size", "32", "--batch-size", "64",
              "--max-steps", str(steps), "--lr", str(lr), "--warmup-steps", "2", "--weight-decay", str(wd),
              "--validation-split", "0", "--no-shuffle", "--no-dropout", "--json", "--lora-rank", str(rank),
              "--lora-alpha", str(alpha), "--lora-targets", "c_attn,c_proj", "--merge", "--seed", "3")
    check(r.returncode == 0, "finetune --lora-rank: exit %d: %s" % (r.returncode, r.stderr))
    if r.returncode:
        return
    ours = [json.loads(x)["loss"] for x in r.stdout.splitlines() if '"step"' in x and "loss" in x]
    ids = tokens_of(data, folder) + [50256]
    n = len(ids) // 32
    batch = torch.tensor(np.array(ids[:n * 32]).reshape(n, 32))
    model = TorchGPT2(folder)
    for t in model.p.values():
        t.requires_grad_(False)
    mods = ["attn.c_attn", "attn.c_proj", "mlp.c_proj"]
    model.lora, model.lora_scale = lora_init(model, rank, mods, 3), alpha / rank
    params = [t for ab in model.lora.values() for t in ab]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / 2 if s < 2 else max(0.0, (steps - s) / (steps - 2)))
    theirs = []
    for _ in range(steps):
        loss = model.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        theirs.append(loss.item())
    worst = max(abs(a - b) / b for a, b in zip(ours, theirs))
    check(len(ours) == steps and worst <= 1e-4, "LoRA loss curve %s, torch's %s" % (ours, theirs))
    print("train: LoRA r=%d 10-step loss %.4f -> %.4f, worst %.2g relative to torch's PEFT forward" % (
        rank, ours[0], ours[-1], worst))

    # PEFT's files: names, shapes and config as save_pretrained writes them.
    cfg = json.load(open(os.path.join(out, "adapter_config.json")))
    check(cfg["peft_type"] == "LORA" and cfg["r"] == rank and cfg["lora_alpha"] == alpha and
          cfg["task_type"] == "CAUSAL_LM" and cfg["fan_in_fan_out"] is True and
          cfg["target_modules"] == ["c_attn", "c_proj"], "adapter_config.json: %s" % cfg)  # as given, as PEFT
    saved = safetensors_np.read(os.path.join(out, "adapter_model.safetensors"), np.float32)
    want = {"base_model.model.transformer.%s.lora_%s.weight" % (k, ab) for k in model.lora for ab in "AB"}
    check(set(saved) == want, "adapter keys %s, PEFT's %s" % (sorted(saved)[:3], sorted(want)[:3]))
    err = max(np.abs(saved["base_model.model.transformer.%s.lora_%s.weight" % (k, ab)] -
                     model.lora[k][i].detach().numpy()).max() for k in model.lora for i, ab in enumerate("AB"))
    check(err < 1e-4, "saved adapters differ from torch's by %g" % err)

    # --lora at load and the merged model: the same bits; and the perplexity of PEFT's forward
    # with the saved adapters (the guide's recipe in torch).
    model.lora = {k: (torch.tensor(saved["base_model.model.transformer.%s.lora_A.weight" % k]),
                      torch.tensor(saved["base_model.model.transformer.%s.lora_B.weight" % k])) for k in model.lora}
    want = recipe_ppl(model, tokens_of(data, folder), 64, 64)[0]
    r1 = gpt2c("perplexity", "-m", folder, "--lora", out, "-f", data, "--context", "64", "--json")
    r2 = gpt2c("perplexity", "-m", out, "-f", data, "--context", "64", "--json")
    check(r1.returncode == 0 and r2.returncode == 0, "perplexity --lora: %s %s" % (r1.stderr, r2.stderr))
    if r1.returncode == 0 and r2.returncode == 0:
        p1, p2 = json.loads(r1.stdout), json.loads(r2.stdout)
        check(p1["perplexity"] == p2["perplexity"], "--lora %r and the merged model %r differ" % (p1, p2))
        check(abs(p1["perplexity"] - want) <= 1e-5 * want, "--lora perplexity %r, PEFT's forward %r" % (p1, want))
        print("train: perplexity with the adapter %.6g (--lora and merged), PEFT's forward in torch %.6g" % (
            p1["perplexity"], want))
    r3 = gpt2c("generate", "-m", folder, "--lora", out, "-p", "the cat", "-n", "8", "--greedy")
    r4 = gpt2c("generate", "-m", out, "-p", "the cat", "-n", "8", "--greedy")
    check(r3.returncode == 0 and r3.stdout == r4.stdout, "generate --lora %r, merged %r" % (r3.stdout, r4.stdout))
    # The adapter on an f16 base (frozen as stored): trains, and leaves no model files without --merge.
    out16 = os.path.join(tmp, "lora16")
    r = gpt2c("finetune", "-m", os.path.join(REF, "tiny-f16"), "--train", data, "-o", out16, "--block-size", "32",
              "--max-steps", "2", "--lora-rank", "2", "--validation-split", "0")
    check(r.returncode == 0 and sorted(os.listdir(out16)) == ["adapter_config.json", "adapter_model.safetensors"],
          "LoRA on f16: %s %s" % (r.stderr, os.listdir(out16) if os.path.isdir(out16) else None))
    # Resuming LoRA: the base from -m, the adapters and moments from the checkpoint.
    common = ["-m", folder, "--train", data, "--block-size", "16", "--batch-size", "2", "--max-steps", "4",
              "--lora-rank", "2", "--lora-targets", "c_fc", "--lr", "1e-3", "--validation-split", "0"]
    a = gpt2c("finetune", "-o", os.path.join(tmp, "la"), *common)
    b = gpt2c("finetune", "-o", os.path.join(tmp, "lb2"), "--save-every", "2", *common)
    c = gpt2c("finetune", "-o", os.path.join(tmp, "lc"), "--resume", os.path.join(tmp, "lb2", "checkpoint-2"), *common)
    check(a.returncode == b.returncode == c.returncode == 0, "LoRA resume runs: %s %s %s" % (a.stderr, b.stderr, c.stderr))
    if a.returncode == c.returncode == 0:
        read = lambda d: open(os.path.join(tmp, d, "adapter_model.safetensors"), "rb").read()  # noqa: E731
        check(read("la") == read("lc"), "the resumed LoRA run's adapters differ from the uninterrupted run's")
    bad = gpt2c("finetune", "-m", folder, "--train", data, "-o", os.path.join(tmp, "lb"), "--lora-rank", "2",
                "--lora-targets", "q_proj", "--block-size", "16")
    check(bad.returncode == 2 and "q_proj" in bad.stderr, "unknown target: %d %r" % (bad.returncode, bad.stderr))


def test_arch_lora(tmp, name, keys):
    """LoRA on another architecture with PEFT's default targets for it: the adapter's keys,
    --lora at load equal to the merged model, generation."""
    folder = os.path.join(REF, name)
    if not os.path.isdir(folder):
        return
    data, out = os.path.join(tmp, name + ".txt"), os.path.join(tmp, "lora-" + name)
    write_text(data, 30, 6)
    r = gpt2c("finetune", "-m", folder, "--train", data, "-o", out, "--block-size", "16", "--batch-size", "4",
              "--max-steps", "4", "--lr", "1e-2", "--validation-split", "0", "--lora-rank", "4", "--merge")
    check(r.returncode == 0, "%s: finetune --lora-rank: %s" % (name, r.stderr))
    if r.returncode:
        return
    saved = safetensors_np.read(os.path.join(out, "adapter_model.safetensors"), np.float32)
    cfg = json.load(open(os.path.join(out, "adapter_config.json")))
    want = {keys % (l, ab) for l in range(2) for ab in "AB"}
    check(want <= set(saved) and len(saved) == 2 * len(cfg["target_modules"]) * 2,
          "%s: adapter keys %s, want %s" % (name, sorted(saved), sorted(want)))
    r1 = gpt2c("perplexity", "-m", folder, "--lora", out, "-f", data, "--context", "32", "--json")
    r2 = gpt2c("perplexity", "-m", out, "-f", data, "--context", "32", "--json")
    r3 = gpt2c("perplexity", "-m", folder, "-f", data, "--context", "32", "--json")
    check(r1.returncode == r2.returncode == r3.returncode == 0, "%s: perplexity: %s %s" % (name, r1.stderr, r2.stderr))
    if r1.returncode == r2.returncode == r3.returncode == 0:
        p1, p2, p3 = (json.loads(r.stdout)["perplexity"] for r in (r1, r2, r3))
        check(p1 == p2 and p1 < p3, "%s: --lora %r, merged %r, base %r" % (name, p1, p2, p3))
        print("train: %s LoRA on %s: perplexity %.6g (--lora and merged), base %.6g" % (
            name, ",".join(cfg["target_modules"]), p1, p3))
    r = gpt2c("generate", "-m", folder, "--lora", out, "-p", "the cat", "-n", "4", "--greedy")
    check(r.returncode == 0, "%s: generate --lora: %s" % (name, r.stderr))


def test_errors(tmp):
    folder = os.path.join(REF, "tiny-f32")
    data = os.path.join(tmp, "train.txt")
    cases = [
        (["finetune", "-m", folder, "--train", data], 2, "required"),
        (["finetune", "-m", folder, "--train", data, "-o", tmp], 2, "exists"),
        (["finetune", "-m", folder, "--train", data, "-o", tmp + "/x", "--lr", "-1"], 2, "learning rate"),
        (["finetune", "-m", folder, "--train", data, "-o", tmp + "/x", "--block-size", "5000"], 2, "block size"),
        (["finetune", "-m", folder, "--train", tmp + "/none.txt", "-o", tmp + "/x"], 1, "none.txt"),
        (["finetune", "-m", os.path.join(REF, "tiny-f16"), "--train", data, "-o", tmp + "/y", "--block-size", "100000"], 2, "block size"),
    ]
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"text": "fine"}\n{"prompt": 3}\n')
    cases.append((["finetune", "-m", folder, "--train", bad, "-o", tmp + "/z"], 1, "bad.jsonl:2"))
    for args, code, word in cases:
        r = gpt2c(*args)
        check(r.returncode == code and word in r.stderr, "%s: exit %d (want %d), %r" % (args[-2:], r.returncode, code, r.stderr))
        check(not os.path.exists(tmp + "/z") or os.listdir(tmp + "/z") == [], "a failed run leaves files")


with tempfile.TemporaryDirectory() as tmp:
    test_gradients(tmp, "tiny-f32", 3, 17)
    test_gradients(tmp, "tiny-variant", 2, 23)
    if SANITIZED:
        print("train: (sanitizer build: the gpt2-f32 gradients are left to the plain build)")
    else:
        test_gradients(tmp, "gpt2-f32", 1, 24)
    test_gradients(tmp, "tiny-f32", 3, 17, (0.1, 42, 7))
    test_gradients(tmp, "tiny-variant", 2, 23, (0.3, 5, 0))
    for arch in ("neo-mini-f32", "opt-mini-f32", "opt-postln-f32", "neox-mini-f32", "neox-seqres-f32",
                 "bloom-mini-f32", "bloom-postres-f32", "starcoder-mqa-f32", "starcoder-mha-f32", "codegen-mini-f32"):
        test_gradients(tmp, arch, 2, 13)
    test_curve(tmp)
    test_resume(tmp)
    test_resume(tmp, "opt-postln-f32")
    test_resume(tmp, "codegen-mini-f32")
    test_perplexity(tmp)
    test_lora(tmp)
    test_arch_lora(tmp, "opt-mini-f32", "base_model.model.model.decoder.layers.%d.self_attn.v_proj.lora_%s.weight")
    test_arch_lora(tmp, "neox-mini-f32", "base_model.model.gpt_neox.layers.%d.attention.query_key_value.lora_%s.weight")
    test_arch_lora(tmp, "starcoder-mqa-f32", "base_model.model.transformer.h.%d.attn.c_attn.lora_%s.weight")
    test_errors(tmp)
print("train: %d passed, %d failed" % (results["pass"], results["fail"]))
sys.exit(1 if results["fail"] else 0)
