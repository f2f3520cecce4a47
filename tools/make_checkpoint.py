#!/usr/bin/python3
"""make_checkpoint.py -- write a randomly initialised GPT-2 checkpoint folder in the exact
Hugging Face hub layout: config.json and generation_config.json as transformers'
save_pretrained writes them, model.safetensors with hub tensor names (no "transformer."
prefix unless asked), Conv1D weights [in, out], the h.N.attn.bias causal-mask buffers,
no lm_head.weight (tied to wte), plus the GPT-2 tokenizer files.

  tools/make_checkpoint.py --preset gpt2 --dtype F16 --out /tmp/gpt2-f16

Real weights cannot be had everywhere; these exercise every code path with the real shapes.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

PRESETS = {  # n_layer, n_embd, n_head (vocab 50257, 1024 positions, as on the hub)
    "tiny": (2, 64, 4),
    "distilgpt2": (6, 768, 12),
    "gpt2": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
}

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER = os.path.join(REPO, "tests", "fixtures", "gpt2-tokenizer")


def config_json(a):
    """As save_pretrained writes it; GPT-2's <|endoftext|> is the last id of the vocabulary."""
    return {
        "activation_function": a.activation,
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": a.vocab - 1,
        "embd_pdrop": 0.1,
        "eos_token_id": a.vocab - 1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_embd": a.n_embd,
        "n_head": a.n_head,
        "n_inner": a.n_inner,
        "n_layer": a.n_layer,
        "n_positions": a.n_positions,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": a.scale_by_inverse_layer,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "tie_word_embeddings": not a.lm_head,
        "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[a.dtype],
        "transformers_version": "4.30.2",
        "use_cache": True,
        "vocab_size": a.vocab,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--n-layer", type=int)
    p.add_argument("--n-embd", type=int)
    p.add_argument("--n-head", type=int)
    p.add_argument("--n-inner", type=int, default=None)
    p.add_argument("--n-positions", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--activation", default="gelu_new")
    p.add_argument("--scale-by-inverse-layer", action="store_true")
    p.add_argument("--prefix", default="", help='tensor name prefix, e.g. "transformer."')
    p.add_argument("--lm-head", action="store_true", help="write an untied lm_head.weight")
    p.add_argument("--no-mask", action="store_true", help="omit the h.N.attn.bias buffers")
    p.add_argument("--unaligned", action="store_true", help="misalign tensor data (tests the copy path)")
    p.add_argument("--std", type=float, default=0.02, help="weight standard deviation")
    p.add_argument("--shards", type=int, default=1,
                   help="split into model-0000i-of-0000N.safetensors with model.safetensors.index.json")
    a = p.parse_args()
    nl, ne, nh = PRESETS[a.preset]
    a.n_layer, a.n_embd, a.n_head = a.n_layer or nl, a.n_embd or ne, a.n_head or nh
    C, F = a.n_embd, a.n_inner or 4 * a.n_embd
    rng = np.random.default_rng(a.seed)

    def normal(*shape, std=a.std):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    # Biases and LayerNorm parameters are random too, so that every term of the math is tested.
    t = {"wte.weight": normal(a.vocab, C), "wpe.weight": normal(a.n_positions, C, std=0.01)}
    mask = np.tril(np.ones((a.n_positions, a.n_positions), dtype=np.float32)).reshape(1, 1, a.n_positions, -1)
    for i in range(a.n_layer):
        h = f"h.{i}."
        t[h + "ln_1.weight"] = 1 + normal(C, std=0.1)
        t[h + "ln_1.bias"] = normal(C, std=0.1)
        if not a.no_mask:
            t[h + "attn.bias"] = mask
        t[h + "attn.c_attn.weight"] = normal(C, 3 * C)
        t[h + "attn.c_attn.bias"] = normal(3 * C)
        t[h + "attn.c_proj.weight"] = normal(C, C)
        t[h + "attn.c_proj.bias"] = normal(C)
        t[h + "ln_2.weight"] = 1 + normal(C, std=0.1)
        t[h + "ln_2.bias"] = normal(C, std=0.1)
        t[h + "mlp.c_fc.weight"] = normal(C, F)
        t[h + "mlp.c_fc.bias"] = normal(F)
        t[h + "mlp.c_proj.weight"] = normal(F, C)
        t[h + "mlp.c_proj.bias"] = normal(C)
    t["ln_f.weight"] = 1 + normal(C, std=0.1)
    t["ln_f.bias"] = normal(C, std=0.1)
    out = {}
    for name, arr in t.items():
        if a.dtype == "F16":
            enc = ("F16", arr.astype(np.float16))
        elif a.dtype == "BF16":
            enc = ("BF16", safetensors_np.f32_to_bf16_bits(arr))
        else:
            enc = ("F32", arr)
        out[a.prefix + name] = enc
    if a.lm_head:
        head = normal(a.vocab, C)
        out["lm_head.weight"] = {"F32": ("F32", head), "F16": ("F16", head.astype(np.float16)),
                                 "BF16": ("BF16", safetensors_np.f32_to_bf16_bits(head))}[a.dtype]
    os.makedirs(a.out, exist_ok=True)
    if a.shards <= 1:
        safetensors_np.write(os.path.join(a.out, "model.safetensors"), out, align=not a.unaligned,
                             metadata={"format": "pt"})
    else:  # consecutive tensors per shard, as save_pretrained's max_shard_size splits them
        names, weight_map, total = list(out), {}, 0
        for k in range(a.shards):
            part = names[k * len(names) // a.shards:(k + 1) * len(names) // a.shards]
            fname = f"model-{k + 1:05d}-of-{a.shards:05d}.safetensors"
            safetensors_np.write(os.path.join(a.out, fname), {n: out[n] for n in part}, align=not a.unaligned,
                                 metadata={"format": "pt"})
            for n in part:
                weight_map[n] = fname
                total += out[n][1].nbytes
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config_json(a), f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": a.vocab - 1, "eos_token_id": a.vocab - 1,
                   "transformers_version": "4.30.2"}, f, indent=2)
        f.write("\n")
    if a.vocab == 50257:
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(TOKENIZER, name), os.path.join(a.out, name))
        with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
            f.write('{"model_max_length": 1024}')


if __name__ == "__main__":
    main()
