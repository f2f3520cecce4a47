#!/usr/bin/python3
"""make_cases.py -- writes tests/hostile/files/: malformed checkpoint and tokenizer folders,
each with an expect.json naming the gpt2c command to run, its exit code and the words its
error message must contain. The folders are committed; this script documents how each was
made and remakes them (from a tiny valid checkpoint made by tools/make_checkpoint.py).

    /usr/bin/python3 tests/hostile/make_cases.py      # then review `git diff tests/hostile`
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "files")

base = tempfile.mkdtemp(prefix="gpt2c-hostile-")
subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_checkpoint.py"), "--out", base, "--n-layer", "1",
                "--n-embd", "8", "--n-head", "2", "--n-inner", "16", "--n-positions", "16", "--vocab", "64",
                "--no-mask", "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
CONFIG = json.load(open(os.path.join(base, "config.json")))
RAW = open(os.path.join(base, "model.safetensors"), "rb").read()
HLEN = struct.unpack("<Q", RAW[:8])[0]
HEADER = json.loads(RAW[8:8 + HLEN])
DATA = RAW[8 + HLEN:]


def safetensors(header=None, data=DATA, raw_header=None, length=None):
    h = raw_header if raw_header is not None else json.dumps(header if header is not None else HEADER).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def case(name, expect, files):
    d = os.path.join(OUT, name)
    os.makedirs(d)
    for fname, content in files.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
    with open(os.path.join(d, "expect.json"), "w") as f:
        json.dump(expect, f, indent=1)
        f.write("\n")


def model_case(name, words, config=None, weights=None):
    """`gpt2c info -m DIR` must fail with exit 1 and a message containing words."""
    case(name, {"command": ["info"], "exit": 1, "words": words},
         {"config.json": json.dumps(config if config is not None else CONFIG),
          "model.safetensors": weights if weights is not None else RAW})


def edited(**changes):
    h = json.loads(json.dumps(HEADER))
    for tensor, fields in changes.items():
        if fields is None:
            del h[tensor]
        else:
            h[tensor].update(fields)
    return h


def cfg(**changes):
    c = dict(CONFIG)
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)
wte = HEADER["wte.weight"]
# --- safetensors: the 8-byte length, the JSON header, the offsets.
model_case("st-empty-file", ["model.safetensors"], weights=b"")
model_case("st-header-length-huge", ["model.safetensors", "header"], weights=safetensors(length=1 << 62))
model_case("st-header-past-eof", ["model.safetensors", "past the end"], weights=struct.pack("<Q", len(RAW) - 7) + RAW[8:])
model_case("st-header-not-json", ["model.safetensors"], weights=safetensors(raw_header=b"{not json at all}"))
model_case("st-header-not-object", ["model.safetensors"], weights=safetensors(raw_header=b"[1, 2, 3]"))
model_case("st-offsets-past-end", ["model.safetensors", "wte.weight"],
           weights=safetensors(edited(**{"wte.weight": {"data_offsets": [wte["data_offsets"][0], len(DATA) + 4096]}})))
model_case("st-offsets-reversed", ["model.safetensors", "wte.weight"],
           weights=safetensors(edited(**{"wte.weight": {"data_offsets": [wte["data_offsets"][1], wte["data_offsets"][0]]}})))
model_case("st-offsets-not-integers", ["model.safetensors", "wte.weight"],
           weights=safetensors(edited(**{"wte.weight": {"data_offsets": ["0", "4"]}})))
model_case("st-dtype-unknown", ["model.safetensors", "wte.weight"],
           weights=safetensors(edited(**{"wte.weight": {"dtype": "Q4_K"}})))
model_case("st-dtype-integer", ["model.safetensors", "wte.weight"],
           weights=safetensors(edited(**{"wte.weight": {"dtype": "I64"}})))
model_case("st-shape-vs-config", ["wte.weight"], weights=safetensors(edited(**{"wte.weight": {"shape": [8, 64]}})))
model_case("st-shape-vs-bytes", ["wte.weight"], weights=safetensors(edited(**{"wte.weight": {"shape": [64, 9]}})))
model_case("st-shape-overflow", ["wte.weight"],
           weights=safetensors(edited(**{"wte.weight": {"shape": [1 << 40, 1 << 40, 1 << 40]}})))
model_case("st-shape-too-many-dims", ["wte.weight"], weights=safetensors(edited(**{"wte.weight": {"shape": [1] * 12}})))
model_case("st-missing-tensor", ["ln_f.weight"], weights=safetensors(edited(**{"ln_f.weight": None})))
# --- config.json: absurd or inconsistent dimensions are refused before anything is allocated.
model_case("cfg-not-json", ["config.json"], config=None, weights=None)
with open(os.path.join(OUT, "cfg-not-json", "config.json"), "w") as f:
    f.write('{"n_embd": 8,')
model_case("cfg-absurd-embd", ["config.json", "n_embd"], config=cfg(n_embd=1 << 30))
model_case("cfg-absurd-layers", ["config.json", "n_layer"], config=cfg(n_layer=1 << 40))
model_case("cfg-absurd-vocab", ["config.json", "vocab_size"], config=cfg(vocab_size=10_000_000))
model_case("cfg-heads-not-dividing", ["config.json", "n_head"], config=cfg(n_head=3))
# A missing field takes transformers' default (n_layer 12), which the weights then lack.
model_case("cfg-missing-n-layer", ["h.1.ln_1.weight", "missing"], config=cfg(n_layer=None))
model_case("cfg-string-dimension", ["config.json", "n_embd"], config=cfg(n_embd="8"))
model_case("cfg-negative-positions", ["config.json", "n_positions"], config=cfg(n_positions=-1))
model_case("cfg-unknown-activation", ["config.json", "activation_function"], config=cfg(activation_function="swish_v9"))


# --- tokenizer files: `gpt2c tokenize -m DIR -p hi` must fail with exit 1.
def tok_case(name, words, files):
    case(name, {"command": ["tokenize", "-p", "hi"], "exit": 1, "words": words}, files)


MERGES = "#version: 0.2\nh i\n"
tok_case("tok-vocab-not-object", ["vocab.json"], {"vocab.json": "[\"h\", \"i\"]", "merges.txt": MERGES})
tok_case("tok-vocab-id-string", ["vocab.json"], {"vocab.json": '{"h": "0", "i": 1}', "merges.txt": MERGES})
tok_case("tok-vocab-id-negative", ["vocab.json"], {"vocab.json": '{"h": -1, "i": 1}', "merges.txt": MERGES})
tok_case("tok-vocab-id-huge", ["vocab.json"], {"vocab.json": '{"h": 0, "i": 99999999999}', "merges.txt": MERGES})
tok_case("tok-vocab-invalid-utf8", ["vocab.json"], {"vocab.json": b'{"h\xff": 0, "i": 1}', "merges.txt": MERGES})
tok_case("tok-vocab-truncated", ["vocab.json"], {"vocab.json": '{"h": 0, "i', "merges.txt": MERGES})
tok_case("tok-merges-one-token", ["merges.txt"], {"vocab.json": '{"h": 0, "i": 1, "hi": 2}',
                                                  "merges.txt": "#version: 0.2\nhi\n"})
tok_case("tok-json-wordpiece", ["tokenizer.json", "model.type"],
         {"tokenizer.json": '{"model": {"type": "WordPiece", "vocab": {}}}'})
tok_case("tok-json-merges-not-list", ["tokenizer.json", "model.merges"],
         {"tokenizer.json": '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": 3}}'})
tok_case("tok-none", ["vocab.json"], {"README": "no tokenizer here\n"})
shutil.rmtree(base)
print(f"wrote {len(os.listdir(OUT))} cases to {OUT}")
