#!/usr/bin/python3
"""make_arch_checkpoint.py -- write a randomly initialised checkpoint folder of another
architecture than GPT-2 (GPT-Neo, OPT, GPT-NeoX, BLOOM, GPTBigCode, CodeGen) in the hub's
layout: config.json and generation_config.json with the fields transformers' save_pretrained
writes, model.safetensors with the *ForCausalLM tensor names and nn.Linear weights (out, in),
the buffers transformers saves (tied heads left out, as it does), and tokenizer files in the
family's format, built from GPT-2's vocabulary (the real files are not here: OPT's vocab.json
with <s> <pad> </s> <unk> first and add_bos_token, GPT-NeoX's tokenizer.json with its added
tokens and NFC normalizer, BLOOM's tokenizer.json with <unk> <s> </s> <pad> first and its
Split pre-tokenizer, StarCoder's with its 19 special tokens and Digits pre-tokenizer,
CodeGen's GPT-2 files plus added_tokens.json with its runs of spaces and tabs).

  tools/make_arch_checkpoint.py --preset pythia-160m --out /tmp/pythia-160m

Presets: the hub models' shapes (gpt-neo-125M, opt-125m, opt-350m, pythia-160m, bloom-560m,
tiny_starcoder, codegen-350M-mono) and small ones for the tests, which take every code path
(local windows shorter than a prompt, OPT post-LN with project_in/out, GPT-NeoX's sequential
residual, ALiBi with a head count that is not a power of two, BLOOM's residual from the
LayerNorm's output, GPTBigCode's multi-query and multi-head layouts, CodeGen's rotary on
part of each head). model.safetensors is written one tensor at a time, so that bloom-560m
(2.2 GB in F32) needs little more memory than its largest tensor.
"""
import argparse
import json
import os
import struct
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
    "bloom-560m": ("bloom", 1024, 24, 16, None, None, 250880, {}),
    "tiny_starcoder": ("gpt_bigcode", 768, 20, 12, 3072, 8192, 49152, {}),
    "codegen-350M-mono": ("codegen", 1024, 20, 16, None, 2048, 51200, {"rotary_dim": 32}),
    # 6 heads: ALiBi's extra slopes for the heads past the largest power of two
    "bloom-mini": ("bloom", 96, 2, 6, None, None, 50304, {}),
    "bloom-mini-postres": ("bloom", 96, 2, 6, None, None, 50304, {"apply_residual_connection_post_layernorm": True}),
    "starcoder-mini-mqa": ("gpt_bigcode", 32, 2, 4, 96, 512, 49152, {}),
    "starcoder-mini-mha": ("gpt_bigcode", 32, 2, 2, 96, 512, 49152, {"multi_query": False}),
    "codegen-mini": ("codegen", 32, 2, 4, None, 512, 51200, {"rotary_dim": 4}),
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
    elif arch == "gpt_neox":
        c = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "bos_token_id": 0,
             "classifier_dropout": 0.1, "eos_token_id": 0, "hidden_act": "gelu", "hidden_size": C,
             "initializer_range": 0.02, "intermediate_size": F, "layer_norm_eps": 1e-05, "max_position_embeddings": P,
             "num_attention_heads": H, "num_hidden_layers": L, "rotary_emb_base": 10000, "rotary_pct": 0.25,
             "tie_word_embeddings": False, "use_parallel_residual": True}
    elif arch == "bloom":  # no positions (ALiBi), MLP 4 * hidden
        c = {"architectures": ["BloomForCausalLM"], "model_type": "bloom",
             "apply_residual_connection_post_layernorm": False, "attention_dropout": 0.0, "bos_token_id": 1,
             "eos_token_id": 2, "hidden_dropout": 0.0, "hidden_size": C, "initializer_range": 0.02,
             "layer_norm_epsilon": 1e-05, "n_head": H, "n_layer": L, "pad_token_id": 3, "pretraining_tp": 1,
             "slow_but_exact": False, "unk_token_id": 0}
    elif arch == "gpt_bigcode":
        c = {"architectures": ["GPTBigCodeForCausalLM"], "model_type": "gpt_bigcode",
             "activation_function": "gelu_pytorch_tanh", "attention_softmax_in_fp32": True, "attn_pdrop": 0.0,
             "bos_token_id": 0, "embd_pdrop": 0.0, "eos_token_id": 0, "initializer_range": 0.02,
             "layer_norm_epsilon": 1e-05, "multi_query": True, "n_embd": C, "n_head": H, "n_inner": F, "n_layer": L,
             "n_positions": P, "resid_pdrop": 0.0, "scale_attention_softmax_in_fp32": True, "scale_attn_weights": True}
    else:
        c = {"architectures": ["CodeGenForCausalLM"], "model_type": "codegen", "activation_function": "gelu_new",
             "attn_pdrop": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 50256, "initializer_range": 0.02,
             "layer_norm_epsilon": 1e-05, "n_ctx": P, "n_embd": C, "n_head": H, "n_inner": F, "n_layer": L,
             "n_positions": P, "resid_pdrop": 0.0, "rotary_dim": 64, "tie_word_embeddings": False}
    c.update(common)
    c.update(extra)
    return c


def weights(c, normal):
    """(name, float32 array) pairs of the *ForCausalLM's state dict (buffers included), one at a
    time, in a fixed order of normal() calls."""
    arch, V = c["model_type"], c["vocab_size"]

    def ln(n):
        yield n + ".weight", 1 + normal(C, std=0.1)
        yield n + ".bias", normal(C, std=0.1)

    def linear(n, out, inp, bias=True):
        yield n + ".weight", normal(out, inp)
        if bias:
            yield n + ".bias", normal(out)

    if arch == "gpt_neo":
        C, P, F = c["hidden_size"], c["max_position_embeddings"], c["intermediate_size"] or 4 * c["hidden_size"]
        tril = np.tril(np.ones((P, P), dtype=bool))
        yield "transformer.wte.weight", normal(V, C)
        yield "transformer.wpe.weight", normal(P, C, std=0.01)
        for i, kind in enumerate(c["attention_layers"]):
            p = f"transformer.h.{i}."
            yield from ln(p + "ln_1")
            band = tril ^ np.tril(tril, -c["window_size"]) if kind == "local" else tril
            yield p + "attn.attention.bias", band.reshape(1, 1, P, P)
            yield p + "attn.attention.masked_bias", np.array(-1e9, dtype=np.float32)
            for q in "qkv":
                yield from linear(p + f"attn.attention.{q}_proj", C, C, bias=False)
            yield from linear(p + "attn.attention.out_proj", C, C)
            yield from ln(p + "ln_2")
            yield from linear(p + "mlp.c_fc", F, C)
            yield from linear(p + "mlp.c_proj", C, F)
        yield from ln("transformer.ln_f")
    elif arch == "opt":
        C, L, F, E = c["hidden_size"], c["num_hidden_layers"], c["ffn_dim"], c["word_embed_proj_dim"]
        d = "model.decoder."
        yield d + "embed_tokens.weight", normal(V, E)
        yield d + "embed_positions.weight", normal(c["max_position_embeddings"] + 2, C, std=0.01)
        if E != C:
            yield from linear(d + "project_in", C, E, bias=False)
            yield from linear(d + "project_out", E, C, bias=False)
        for i in range(L):
            p = f"{d}layers.{i}."
            for q in ("q", "k", "v", "out"):
                yield from linear(p + f"self_attn.{q}_proj", C, C)
            yield from ln(p + "self_attn_layer_norm")
            yield from linear(p + "fc1", F, C)
            yield from linear(p + "fc2", C, F)
            yield from ln(p + "final_layer_norm")
        if c["do_layer_norm_before"]:
            yield from ln(d + "final_layer_norm")
    elif arch == "gpt_neox":
        C, L, F, H = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["num_attention_heads"]
        P, r = c["max_position_embeddings"], int(C // H * c["rotary_pct"])
        yield "gpt_neox.embed_in.weight", normal(V, C)
        for i in range(L):
            p = f"gpt_neox.layers.{i}."
            yield from ln(p + "input_layernorm")
            yield from ln(p + "post_attention_layernorm")
            yield p + "attention.bias", np.tril(np.ones((P, P), dtype=bool)).reshape(1, 1, P, P)
            yield p + "attention.masked_bias", np.array(-1e9, dtype=np.float32)
            yield p + "attention.rotary_emb.inv_freq", (1.0 / 10000 ** (np.arange(0, r, 2) / r)).astype(np.float32)
            yield from linear(p + "attention.query_key_value", 3 * C, C)
            yield from linear(p + "attention.dense", C, C)
            yield from linear(p + "mlp.dense_h_to_4h", F, C)
            yield from linear(p + "mlp.dense_4h_to_h", C, F)
        yield from ln("gpt_neox.final_layer_norm")
        yield "embed_out.weight", normal(V, C)
    elif arch == "bloom":  # no buffers; the tied lm_head is not saved
        C = c["hidden_size"]
        yield "transformer.word_embeddings.weight", normal(V, C)
        yield from ln("transformer.word_embeddings_layernorm")
        for i in range(c["n_layer"]):
            p = f"transformer.h.{i}."
            yield from ln(p + "input_layernorm")
            yield from linear(p + "self_attention.query_key_value", 3 * C, C)  # per head q, k, v
            yield from linear(p + "self_attention.dense", C, C)
            yield from ln(p + "post_attention_layernorm")
            yield from linear(p + "mlp.dense_h_to_4h", 4 * C, C)
            yield from linear(p + "mlp.dense_4h_to_h", C, 4 * C)
        yield from ln("transformer.ln_f")
    elif arch == "gpt_bigcode":  # no buffers (the mask is not persistent); the tied lm_head is not saved
        C, F = c["n_embd"], c["n_inner"] or 4 * c["n_embd"]
        qkv = C + 2 * (C // c["n_head"]) if c["multi_query"] else 3 * C  # one k and v for all heads, or per head
        yield "transformer.wte.weight", normal(V, C)
        yield "transformer.wpe.weight", normal(c["n_positions"], C, std=0.01)
        for i in range(c["n_layer"]):
            p = f"transformer.h.{i}."
            yield from ln(p + "ln_1")
            yield from linear(p + "attn.c_attn", qkv, C)
            yield from linear(p + "attn.c_proj", C, C)
            yield from ln(p + "ln_2")
            yield from linear(p + "mlp.c_fc", F, C)
            yield from linear(p + "mlp.c_proj", C, F)
        yield from ln("transformer.ln_f")
    else:  # codegen: no positions (rotary), the mask buffer saved, an untied head with a bias
        C, P, F = c["n_embd"], c["n_positions"], c["n_inner"] or 4 * c["n_embd"]
        yield "transformer.wte.weight", normal(V, C)
        for i in range(c["n_layer"]):
            p = f"transformer.h.{i}."
            yield from ln(p + "ln_1")
            yield p + "attn.causal_mask", np.tril(np.ones((P, P), dtype=bool)).reshape(1, 1, P, P)
            yield from linear(p + "attn.qkv_proj", 3 * C, C, bias=False)  # mp_num 4 chunks of [q | v | k]
            yield from linear(p + "attn.out_proj", C, C, bias=False)
            yield from linear(p + "mlp.fc_in", F, C)
            yield from linear(p + "mlp.fc_out", C, F)
        yield from ln("transformer.ln_f")
        yield from linear("lm_head", V, C)


def gpt2_vocab():
    with open(os.path.join(GPT2_TOKENIZER, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(GPT2_TOKENIZER, "merges.txt"), encoding="utf-8") as f:
        merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
    del vocab["<|endoftext|>"]
    return vocab, merges


def bpe_tokenizer_json(path, specials, vocab, merges, pre_tokenizer, post_processor, decoder, V):
    """A tokenizer.json with BLOOM's or StarCoder's structure: the special tokens first (also
    in the vocabulary, same ids), then GPT-2's tokens in GPT-2's order; those whose id would not
    fit the model's V rows are left out, with the merges that make them (GPT-2's token
    256 + r is merge r's result, so what is left is a complete BPE, as StarCoder's 49152 tokens
    are). Pretty-printed: with nothing left out it is shared/tokenizers' synthetic file, byte for
    byte."""
    v = {s: i for i, s in enumerate(specials)}
    v.update({tok: i + len(specials) for tok, i in vocab.items() if i + len(specials) < V})
    merges = [m for m in merges if m.replace(" ", "") in v]
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, s in enumerate(specials)]
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
          "pre_tokenizer": pre_tokenizer, "post_processor": post_processor, "decoder": decoder,
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": False, "vocab": v, "merges": merges}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=2)


def write_tokenizer(arch, out, V):
    vocab, merges = gpt2_vocab()
    if arch in ("gpt_neo", "codegen"):  # GPT-2's own files
        for name in ("vocab.json", "merges.txt"):
            with open(os.path.join(GPT2_TOKENIZER, name), "rb") as src, open(os.path.join(out, name), "wb") as dst:
                dst.write(src.read())
        if arch == "codegen":  # runs of 31..2 spaces, then of 9..2 tabs, as ordinary added tokens from 50257
            runs = [" " * n for n in range(31, 1, -1)] + ["\t" * n for n in range(9, 1, -1)]
            with open(os.path.join(out, "added_tokens.json"), "w", encoding="utf-8") as f:
                f.write(json.dumps({s: 50257 + i for i, s in enumerate(runs)}, ensure_ascii=False))
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
    elif arch == "gpt_neox":  # one tokenizer.json: <|endoftext|> 0 and <|padding|> 1, then the BPE vocabulary
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
    elif arch == "bloom":  # pieces split at spaces and punctuation, then bytes mapped without GPT-2's regex
        vocab["<|endoftext|>"] = 50256  # an ordinary token here, never produced (the Split separates "|")
        split = {"type": "Split", "pattern": {"Regex": " ?[^(\\s|[.,!?…。，、।۔،])]+"}, "behavior": "Isolated",
                 "invert": False}
        byte_level = lambda prefix, trim: {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": trim,
                                           "use_regex": False}
        pre = {"type": "Sequence", "pretokenizers": [split, byte_level(False, True)]}
        bpe_tokenizer_json(os.path.join(out, "tokenizer.json"), ["<unk>", "<s>", "</s>", "<pad>"], vocab, merges,
                           pre, byte_level(True, False), byte_level(True, True), V)
    else:  # gpt_bigcode: StarCoder's specials, every digit its own piece
        specials = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>",
                    "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>",
                    "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<empty_output>", "<commit_before>",
                    "<commit_msg>", "<commit_after>", "<reponame>"]
        byte_level = lambda trim: {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": trim,
                                   "use_regex": True}
        pre = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level(True)]}
        bpe_tokenizer_json(os.path.join(out, "tokenizer.json"), specials, vocab, merges, pre, byte_level(False),
                           byte_level(True), V)


def write_weights(path, c, dtype, normal):
    """model.safetensors in safetensors_np.write's layout, holding one tensor in memory at a
    time: a first pass over weights() with free stand-ins for the random tensors gives the
    header, a second the data. BOOL buffers stay BOOL; dtype applies to the rest."""
    st = lambda arr: "BOOL" if arr.dtype == np.bool_ else dtype
    size = {"BOOL": 1, "F16": 2, "BF16": 2, "F32": 4}
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, arr in weights(c, lambda *shape, std=0: np.broadcast_to(np.float32(0), shape)):
        n = arr.size * size[st(arr)]
        header[name] = {"dtype": st(arr), "shape": list(arr.shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)  # 8-byte aligned data
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, arr in weights(c, normal):
            if st(arr) == "BOOL":
                arr = arr.astype(np.uint8)
            elif dtype == "F16":
                arr = arr.astype(np.float16)
            elif dtype == "BF16":
                arr = safetensors_np.f32_to_bf16_bits(arr)
            f.write(np.ascontiguousarray(arr).data)


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
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(std)
        return x

    c["torch_dtype"] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[a.dtype]
    os.makedirs(a.out, exist_ok=True)
    write_weights(os.path.join(a.out, "model.safetensors"), c, a.dtype, normal)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    gen = {"_from_model_config": True, "bos_token_id": c["bos_token_id"], "eos_token_id": c["eos_token_id"],
           "transformers_version": "4.30.2"}
    if "pad_token_id" in c:
        gen["pad_token_id"] = c["pad_token_id"]
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2, sort_keys=True)
        f.write("\n")
    write_tokenizer(arch, a.out, V)


if __name__ == "__main__":
    main()
