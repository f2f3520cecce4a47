#!/usr/bin/python3
"""to_torch_bin.py SRC DST [options] -- rewrite a safetensors checkpoint folder as PyTorch writes it.

torch.save (python3-torch) writes DST/pytorch_model.bin from SRC's model.safetensors, in the zip
format (torch >= 1.6) or, with --legacy, the format of torch < 1.6; the other files are copied.
The tensors keep their dtype (F32, F16, BF16). These are the test files for gpt2c's .bin reader:
the same weights as the safetensors twin, written by torch itself.

  --legacy      _use_new_zipfile_serialization=False
  --shards N    pytorch_model-0000k-of-0000N.bin + pytorch_model.bin.index.json
  --strided     save Conv1D weights as transposed views and biases as views at an offset into a
                larger storage, as a training script's state dict may hold them
  --tie         add lm_head.weight as the same tensor as wte.weight (one shared storage)
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402


def read_raw(path):
    """name -> torch tensor in the file's dtype (BF16 from its bits)."""
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = raw[8 + n + b:8 + n + e]
        dt = info["dtype"]
        if dt == "BF16":
            t = torch.from_numpy(np.frombuffer(buf, dtype="<i2").copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(buf, dtype=safetensors_np._DTYPES[dt]).copy())
        out[name] = t.reshape(info["shape"])
    return out


def strided(sd):
    for k in list(sd):
        t = sd[k]
        if t.dim() == 2 and k.endswith(("c_attn.weight", "c_fc.weight", "c_proj.weight")):
            sd[k] = t.t().contiguous().t()  # same values, column-major strides
        elif t.dim() == 1 and k.endswith(".bias"):
            big = torch.zeros(t.numel() + 7, dtype=t.dtype)
            big[7:] = t
            sd[k] = big[7:]  # a storage offset of 7 elements
    return sd


def main():
    p = argparse.ArgumentParser()
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--legacy", action="store_true")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--strided", action="store_true")
    p.add_argument("--tie", action="store_true")
    a = p.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    for f in os.listdir(a.src):
        if not f.startswith("model") and os.path.isfile(os.path.join(a.src, f)):
            shutil.copy(os.path.join(a.src, f), a.dst)
    sd = {}
    names = sorted(f for f in os.listdir(a.src) if f.endswith(".safetensors"))
    for f in names:
        sd.update(read_raw(os.path.join(a.src, f)))
    if a.strided:
        sd = strided(sd)
    if a.tie:
        wte = [k for k in sd if k.endswith("wte.weight")][0]
        sd["lm_head.weight"] = sd[wte]
    zip_format = not a.legacy

    def save(obj, name):
        torch.save(obj, os.path.join(a.dst, name), _use_new_zipfile_serialization=zip_format)

    if a.shards <= 1:
        save(sd, "pytorch_model.bin")
        return
    keys, weight_map = list(sd), {}
    for k in range(a.shards):
        part = keys[k * len(keys) // a.shards:(k + 1) * len(keys) // a.shards]
        fname = f"pytorch_model-{k + 1:05d}-of-{a.shards:05d}.bin"
        save({n: sd[n] for n in part}, fname)
        weight_map.update({n: fname for n in part})
    with open(os.path.join(a.dst, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())},
                   "weight_map": weight_map}, f, indent=2)


if __name__ == "__main__":
    main()
