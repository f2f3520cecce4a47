#!/usr/bin/python3
"""make_arch_checkpoint.py -- write a randomly initialised checkpoint folder of another
architecture than GPT-2 (GPT-Neo, OPT, GPT-NeoX) in the hub's layout: config.json and
generation_config.json with the fields transformers' save_pretrained writes, model.safetensors
with the *ForCausalLM tensor names and nn.Linear weights (out, in), the buffers transformers
saves, and tokenizer files in the family's format, built from GPT-2's vocabulary (the real
files are not here: OPT's vocab.json with <s> <pad> </s> <unk> first and add_bos_token,
GPT-NeoX's tokenizer.json with its added tokens and NFC normalizer).

  tools/make_arch_checkpoint.py --preset pythia-160m --out /tmp/pythia-160m

Presets: the hub models' shapes (gpt-neo-125M, opt-125m, opt-350m, pythia-160m) and small
ones for the tests, which take every code path (local windows shorter than a prompt, OPT
post-LN with project_in/out, GPT-NeoX's sequential residual).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPT2_TOKENIZER = os.path.join(REPO, "tests", "fixtures", "gpt2-tokenizer")

# arch, hidden, layers, heads, inner, positions, vocab, extra config fields
PRESETS = {
    "gpt-neo-125M": ("gpt_neo", 768, 12, 12, None, 2048, 50257, {"window_size": 256}),
    "opt-125m": ("opt", 768, 12, 12, 3072, 2048, 50272, {}),
    "opt-350m": ("opt", 1024, 24, 16, 4096, 2048, 50272, {"do_layer_norm_before": False, "word_embed_proj_dim": 512}),
    "pythia-160m": ("gpt_neox", 768, 12, 12, 3072, 2048, 50304, {}),
    "neo-mini": ("gpt_neo", 32, 3, 4, None, 512, 50257, {"window_size": 6}),
    "opt-mini": ("opt", 32, 2, 2, 128, 512, 50272, {}),
    "opt-mini-postln": ("opt", 32, 2, 2, 80, 512, 50272, {"do_layer_norm_before": False, "word_embed_proj_dim": 24}),
    "neox-mini": ("gpt_neox", 32, 2, 2, 128, 512, 50304, {}),
    "neox-mini-seqres": ("gpt_neox", 32, 2, 2, 128, 512, 50304, {"use_parallel_residual": False}),
}


def config(arch, C, L, H, F, P, V, extra):
    common = {"transformers_version": "4.30.2", "torch_dtype": "float32", "use_cache": True, "vocab_size": V}
    if arch == "gpt_neo":
        kinds = (["global", "local"] * L)[:L] if C >= 768 else (["local", "global"] * L)[:L]
        c = {"architectures": ["GPTNeoForCausalLM"], "model_type": "gpt_neo", "activation_function": "gelu_new",
             "attention_dropout": 0.0, "attention_layers": kinds, "attention_types": [[kinds, 1]],
             "bos_token_id": 50256, "eos_token_id": 50256, "embed_dropout": 0.0, "hidden_size": C,
             "initializer_range": 0.02, "intermediate_size": F, "layer_norm_epsilon": 1e-05,
             "max_position_embeddings": P, "num_heads": H, "num_layers": L, "resid_dropout": 0.0, "window_size": 256}
    elif arch == "opt":
        c = {"architectures": ["OPTForCausalLM"], "model_type": "opt", "_remove_final_layer_norm": False,
             "activation_function": "relu", "attention_dropout": 0.0, "bos_token_id": 2, "do_layer_norm_before": True,
             "dropout": 0.0, "enable_bias": True, "eos_token_id": 2, "ffn_dim": F, "hidden_size": C, "init_std": 0.02,
             "layer_norm_elementwise_affine": True, "layerdrop": 0.0, "max_position_embeddings": P,
             "num_attention_heads": H, "num_hidden_layers": L, "pad_token_id": 1, "prefix": "</s>",
             "word_embed_proj_dim": C}
    else:
        c = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "bos_token_id": 0,
             "classifier_dropout": 0.1, "eos_token_id": 0, "hidden_act": "gelu", "hidden_size": C,
             "initializer_range": 0.02, "intermediate_size": F, "layer_norm_eps": 1e-05, "max_position_embeddings": P,
             "num_attention_heads": H, "num_hidden_layers": L, "rotary_emb_base": 10000, "rotary_pct": 0.25,
             "tie_word_embeddings": False, "use_parallel_residual": True}
    c.update(common)
    c.update(extra)
    return c


def weights(c, normal):
    """name -> float32 array, as the *ForCausalLM's state dict (buffers included)."""
    t, arch = {}, c["model_type"]
    V, P = c["vocab_size"], c["max_position_embeddings"]
    ln = lambda n: {n + ".weight": 1 + normal(n_ln, std=0.1), n + ".bias": normal(n_ln, std=0.1)}
    if arch == "gpt_neo":
        C, L, F = c["hidden_size"], c["num_layers"], c["intermediate_size"] or 4 * c["hidden_size"]
        n_ln = C
        tril = np.tril(np.ones((P, P), dtype=bool))
        t["transformer.wte.weight"], t["transformer.wpe.weight"] = normal(V, C), normal(P, C, std=0.01)
        for i, kind in enumerate(c["attention_layers"]):
            p = f"transformer.h.{i}."
            t.update(ln(p + "ln_1"))
            band = tril ^ np.tril(tril, -c["window_size"]) if kind == "local" else tril
            t[p + "attn.attention.bias"] = band.reshape(1, 1, P, P)
            t[p + "attn.attention.masked_bias"] = np.array(-1e9, dtype=np.float32)
            for q in "qkv":
                t[p + f"attn.attention.{q}_proj.weight"] = normal(C, C)
            t[p + "attn.attention.out_proj.weight"], t[p + "attn.attention.out_proj.bias"] = normal(C, C), normal(C)
            t.update(ln(p + "ln_2"))
            t[p + "mlp.c_fc.weight"], t[p + "mlp.c_fc.bias"] = normal(F, C), normal(F)
            t[p + "mlp.c_proj.weight"], t[p + "mlp.c_proj.bias"] = normal(C, F), normal(C)
        t.update(ln("transformer.ln_f"))
    elif arch == "opt":
        C, L, F, E = c["hidden_size"], c["num_hidden_layers"], c["ffn_dim"], c["word_embed_proj_dim"]
        n_ln, d = C, "model.decoder."
        t[d + "embed_tokens.weight"] = normal(V, E)
        t[d + "embed_positions.weight"] = normal(P + 2, C, std=0.01)
        if E != C:
            t[d + "project_in.weight"], t[d + "project_out.weight"] = normal(C, E), normal(E, C)
        for i in range(L):
            p = f"{d}layers.{i}."
            for q in ("q", "k", "v", "out"):
                t[p + f"self_attn.{q}_proj.weight"], t[p + f"self_attn.{q}_proj.bias"] = normal(C, C), normal(C)
            t.update(ln(p + "self_attn_layer_norm"))
            t[p + "fc1.weight"], t[p + "fc1.bias"] = normal(F, C), normal(F)
            t[p + "fc2.weight"], t[p + "fc2.bias"] = normal(C, F), normal(C)
            t.update(ln(p + "final_layer_norm"))
        if c["do_layer_norm_before"]:
            t.update(ln(d + "final_layer_norm"))
    else:
        C, L, F, H = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["num_attention_heads"]
        n_ln, r = C, int(C // H * c["rotary_pct"])
        t["gpt_neox.embed_in.weight"] = normal(V, C)
        for i in range(L):
            p = f"gpt_neox.layers.{i}."
            t.update(ln(p + "input_layernorm"))
            t.update(ln(p + "post_attention_layernorm"))
            t[p + "attention.bias"] = np.tril(np.ones((P, P), dtype=bool)).reshape(1, 1, P, P)
            t[p + "attention.masked_bias"] = np.array(-1e9, dtype=np.float32)
            t[p + "attention.rotary_emb.inv_freq"] = (1.0 / 10000 ** (np.arange(0, r, 2) / r)).astype(np.float32)
            t[p + "attention.query_key_value.weight"] = normal(3 * C, C)
            t[p + "attention.query_key_value.bias"] = normal(3 * C)
            t[p + "attention.dense.weight"], t[p + "attention.dense.bias"] = normal(C, C), normal(C)
            t[p + "mlp.dense_h_to_4h.weight"], t[p + "mlp.dense_h_to_4h.bias"] = normal(F, C), normal(F)
            t[p + "mlp.dense_4h_to_h.weight"], t[p + "mlp.dense_4h_to_h.bias"] = normal(C, F), normal(C)
        t.update(ln("gpt_neox.final_layer_norm"))
        t["embed_out.weight"] = normal(V, C)
    return t


def gpt2_vocab():
    with open(os.path.join(GPT2_TOKENIZER, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(GPT2_TOKENIZER, "merges.txt"), encoding="utf-8") as f:
        merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
    del vocab["<|endoftext|>"]
    return vocab, merges


def write_tokenizer(arch, out):
    vocab, merges = gpt2_vocab()
    if arch == "gpt_neo":  # GPT-2's own files
        for name in ("vocab.json", "merges.txt"):
            with open(os.path.join(GPT2_TOKENIZER, name), "rb") as src, open(os.path.join(out, name), "wb") as dst:
                dst.write(src.read())
    elif arch == "opt":  # fairseq's four specials first, </s> prepended to every text
        v = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        v.update({tok: i + 4 for tok, i in vocab.items()})
        with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(v, f, ensure_ascii=False)
        with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
        special = {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
        with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
            json.dump(special, f)
        with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
            json.dump(dict(special, add_bos_token=True, tokenizer_class="GPT2Tokenizer", model_max_length=1e30), f)
    else:  # one tokenizer.json: <|endoftext|> 0 and <|padding|> 1, then the BPE vocabulary
        v = {"<|endoftext|>": 0, "<|padding|>": 1}
        v.update({tok: i + 2 for tok, i in vocab.items()})
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                  "special": True} for i, s in ((0, "<|endoftext|>"), (1, "<|padding|>"))]
        tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
              "normalizer": {"type": "NFC"}, "pre_tokenizer": byte_level, "post_processor": byte_level,
              "decoder": byte_level,
              "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                        "end_of_word_suffix": None, "fuse_unk": False, "vocab": v, "merges": merges}}
        with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--std", type=float, default=0.02, help="weight standard deviation")
    a = p.parse_args()
    arch, C, L, H, F, P, V, extra = PRESETS[a.preset]
    c = config(arch, C, L, H, F, P, V, extra)
    rng = np.random.default_rng(a.seed)

    def normal(*shape, std=a.std):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    out = {}
    for name, arr in weights(c, normal).items():
        if arr.dtype == np.bool_:
            out[name] = ("BOOL", arr.astype(np.uint8))
        elif a.dtype == "F16":
            out[name] = ("F16", arr.astype(np.float16))
        elif a.dtype == "BF16":
            out[name] = ("BF16", safetensors_np.f32_to_bf16_bits(arr))
        else:
            out[name] = ("F32", arr)
    c["torch_dtype"] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[a.dtype]
    os.makedirs(a.out, exist_ok=True)
    safetensors_np.write(os.path.join(a.out, "model.safetensors"), out, metadata={"format": "pt"})
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    gen = {"_from_model_config": True, "bos_token_id": c["bos_token_id"], "eos_token_id": c["eos_token_id"],
           "transformers_version": "4.30.2"}
    if "pad_token_id" in c:
        gen["pad_token_id"] = c["pad_token_id"]
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    write_tokenizer(arch, a.out)


if __name__ == "__main__":
    main()
