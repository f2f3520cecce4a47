#!/usr/bin/python3
"""test_convert.py BUILD_DIR REF_DIR -- `gpt2c convert` end to end.

A converted folder generates exactly what `--dtype T` at load generates from the source; its
model.safetensors holds what the reference tools compute independently (numpy's f16 and bf16
rounding, ref_gpt2.q8's common 8-bit scheme); the folder appears complete or not at all:
an existing target, a missing parent, and injected write() and fsync() failures
(tests/fault_inject.c) leave no folder and no temporary files. Prints "convert: N passed,
N failed".
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import ref_gpt2  # noqa: E402
import safetensors_np  # noqa: E402

BUILD, REF = sys.argv[1], sys.argv[2]
BIN = os.path.join(BUILD, "gpt2c")
SRC = os.path.join(REF, "tiny-f32")
results = {"pass": 0, "fail": 0}


def check(cond, what):
    results["pass" if cond else "fail"] += 1
    if not cond:
        print("FAIL:", what)


def run(*args, env=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=env, timeout=300)


def generated(model, *extra):
    """The sequences of a greedy and a sampled generation with logprobs (timing fields dropped)."""
    out = []
    for mode in (["--greedy"], ["--do-sample", "--seed", "5", "--top-k", "20"]):
        r = run("generate", "-m", model, "-p", "Converted weights, same tokens", "--max-new-tokens", "12",
                "--logprobs", "2", "--json", *mode, *extra)
        out.append(json.loads(r.stdout)["sequences"] if r.returncode == 0 else r.stderr)
    return out


def matrices(tensors):
    return [k for k in tensors if k in ("wte.weight", "lm_head.weight") or
            k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))]


def head(k):
    """1 for the (vocab, embd) matrices used as the LM head, 0 for Conv1D weights (in, out): the
    axis along which q8 blocks run (the input)."""
    return 1 if k in ("wte.weight", "lm_head.weight") else 0


def unpack_q8(packed, scale, k, shape):
    """The values a q8 tensor holds, in the stored orientation `shape`: W (din, dout) -- the
    matrix, or the head's transpose -- in 512-byte chunks per block of 32 inputs and group of 16
    outputs (k pairs, outputs, the pair's two k), one tensor row per group (dout padded to 16)
    with its blocks in order; scales (group; block, output)."""
    din, dout = (shape[1], shape[0]) if head(k) else shape
    nb, groups = din // 32, (dout + 15) // 16
    assert packed.shape == (groups, din * 16) and scale.shape == (groups, nb * 16), (k, packed.shape, scale.shape)
    q = packed.reshape(groups, nb, 16, 16, 2).transpose(1, 2, 4, 0, 3).reshape(din, groups * 16)
    s = scale.reshape(groups, nb, 16).transpose(1, 0, 2).reshape(nb, groups * 16)
    assert not q[:, dout:].any() and not s[:, dout:].any(), k  # the padding is zeros
    w = (q * np.repeat(s, 32, axis=0))[:, :dout]
    return w.T if head(k) else w


tmp = tempfile.mkdtemp()
src = safetensors_np.read(os.path.join(SRC, "model.safetensors"), as_dtype=np.float32)
src = {k.removeprefix("transformer."): v for k, v in src.items()}

for dtype, name in (("f16", "F16"), ("bf16", "BF16"), ("q8", "Q8")):
    out = os.path.join(tmp, dtype)
    r = run("convert", "-m", SRC, "--dtype", dtype, "-o", out)
    check(r.returncode == 0 and f"wrote {out}" in r.stderr, f"convert --dtype {dtype}: exit {r.returncode} {r.stderr}")
    files = sorted(os.listdir(out)) if os.path.isdir(out) else []
    check({"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= set(files) and
          not any(".incomplete" in f for f in os.listdir(tmp)), f"{dtype}: the folder's files ({files})")
    info = run("info", "-m", out)
    check(info.returncode == 0 and json.loads(info.stdout)["weight_dtype"] == name, f"{dtype}: info says {info.stdout}")
    # Same tokens, text and log-probabilities as converting at load.
    check(generated(out) == generated(SRC, "--dtype", dtype), f"{dtype}: generation equals --dtype {dtype} at load")
    # The stored values are the reference tools' own rounding of the f32 weights.
    got = safetensors_np.read(os.path.join(out, "model.safetensors"), as_dtype=np.float32)
    mats = matrices(src)
    ok = True
    for k in mats:
        w = src[k]
        if dtype == "f16":
            ok &= np.array_equal(got[k], w.astype(np.float16).astype(np.float32))
        elif dtype == "bf16":
            ok &= np.array_equal(got[k], safetensors_np.bf16_bits_to_f32(safetensors_np.f32_to_bf16_bits(w)).reshape(w.shape))
        else:
            ok &= np.array_equal(unpack_q8(got[k], got[k + "_scale"], k, w.shape), ref_gpt2.q8(w, head(k)).astype(np.float32))
    vectors = [k for k in src if k not in mats and not k.endswith("attn.bias") or k.endswith("c_attn.bias")]
    ok &= all(np.array_equal(got[k], src[k]) for k in vectors)
    check(ok, f"{dtype}: stored matrices equal the reference rounding, the rest unchanged")

# The other architectures: the same, with their nn.Linear matrices (out, in), whose q8 blocks
# run along the input (axis 1), under their own names; the embeddings read by rows (positions,
# GPT-NeoX's and CodeGen's untied token embeddings) and the vectors are kept as they are, the
# buffers transformers rebuilds at load (causal masks, rotary inv_freq) are not written; q8
# (blocks of 32) where every product's input is a multiple of 32.
for arch in ("neo-mini-f32", "opt-mini-f32", "neox-mini-f32", "bloom-mini-f32", "starcoder-mqa-f32",
             "codegen-mini-f32"):
    asrc = os.path.join(REF, arch)
    a32 = safetensors_np.read(os.path.join(asrc, "model.safetensors"), as_dtype=np.float32)
    params = {k: v for k, v in a32.items() if not k.endswith(("attention.bias", "masked_bias", "inv_freq", "causal_mask"))}
    ROW_READ = ("wpe.weight", "embed_positions.weight", "embed_in.weight") + (("wte.weight",) if "codegen" in arch else ())
    q8_ok = all(w.shape[-1] % 32 == 0 for w in params.values() if w.ndim == 2)
    for dtype, name in (("f16", "F16"), ("bf16", "BF16")) + ((("q8", "Q8"),) if q8_ok else ()):
        out = os.path.join(tmp, f"{arch}-{dtype}")
        r = run("convert", "-m", asrc, "--dtype", dtype, "-o", out)
        check(r.returncode == 0, f"{arch} convert --dtype {dtype}: {r.stderr}")
        if r.returncode:
            continue
        info = json.loads(run("info", "-m", out).stdout)
        check(info["weight_dtype"] == name and info["model_type"] == json.load(open(os.path.join(asrc, "config.json")))["model_type"],
              f"{arch} {dtype}: info says {info}")
        check(generated(out) == generated(asrc, "--dtype", dtype), f"{arch} {dtype}: generation equals --dtype at load")
        got = safetensors_np.read(os.path.join(out, "model.safetensors"), as_dtype=np.float32)
        ok = set(got) - {k for k in got if k.endswith("_scale")} == set(params)
        for k, w in params.items():
            if w.ndim != 2 or k.endswith(ROW_READ):
                ok &= np.array_equal(got[k], w)
            elif dtype == "f16":
                ok &= np.array_equal(got[k], w.astype(np.float16).astype(np.float32))
            elif dtype == "bf16":
                ok &= np.array_equal(got[k], safetensors_np.bf16_bits_to_f32(safetensors_np.f32_to_bf16_bits(w)).reshape(w.shape))
            else:
                din, dout = w.shape[1], w.shape[0]
                groups = (dout + 15) // 16
                q = got[k].reshape(groups, din // 32, 16, 16, 2).transpose(1, 2, 4, 0, 3).reshape(din, groups * 16)
                sc = got[k + "_scale"].reshape(groups, din // 32, 16).transpose(1, 0, 2).reshape(din // 32, groups * 16)
                ok &= np.array_equal((q * np.repeat(sc, 32, axis=0))[:, :dout].T, ref_gpt2.q8(w, 1).astype(np.float32))
        check(ok, f"{arch} {dtype}: the same tensor names, matrices as the reference rounds them, the rest unchanged")

# Back to f32 from q8: the dequantized values exactly (q8 runs its products on 16-bit inputs,
# so the f32 copy generates what the common scheme would, not bit for bit what q8 does).
r = run("convert", "-m", os.path.join(tmp, "q8"), "--dtype", "f32", "-o", os.path.join(tmp, "q8-f32"))
q8 = safetensors_np.read(os.path.join(tmp, "q8", "model.safetensors"), as_dtype=np.float32)
back = safetensors_np.read(os.path.join(tmp, "q8-f32", "model.safetensors"), as_dtype=np.float32) if r.returncode == 0 else {}
check(r.returncode == 0 and all(np.array_equal(back[k], unpack_q8(q8[k], q8[k + "_scale"], k, src[k].shape))
                                for k in matrices(src)), f"q8 -> f32 holds the dequantized values: {r.stderr}")

# Refusals: the folder exists (nothing touched), a bad dtype, a missing parent.
before = sorted(os.listdir(os.path.join(tmp, "f16")))
r = run("convert", "-m", SRC, "--dtype", "q8", "-o", os.path.join(tmp, "f16"))
check(r.returncode == 2 and "exists" in r.stderr and sorted(os.listdir(os.path.join(tmp, "f16"))) == before,
      f"an existing folder is refused: {r.returncode} {r.stderr}")
r = run("convert", "-m", SRC, "--dtype", "q4", "-o", os.path.join(tmp, "x"))
check(r.returncode == 2 and "'q4'" in r.stderr, f"a bad dtype: {r.returncode} {r.stderr}")
r = run("convert", "-m", SRC, "--dtype", "f16", "-o", os.path.join(tmp, "no", "such"))
check(r.returncode == 1 and os.path.join(tmp, "no", "such") in r.stderr and not os.path.exists(os.path.join(tmp, "no")),
      f"a missing parent folder: {r.returncode} {r.stderr}")
r = run("convert", "-m", os.path.join(tmp, "nothing"), "--dtype", "f16", "-o", os.path.join(tmp, "y"))
check(r.returncode == 1 and not os.path.exists(os.path.join(tmp, "y")), f"a missing source: {r.returncode} {r.stderr}")

# A q8 folder with its scales missing or malformed is refused, naming the tensor.
def edited_copy(name, edit):
    d = os.path.join(tmp, name)
    shutil.copytree(os.path.join(tmp, "q8"), d)
    path = os.path.join(d, "model.safetensors")
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    h = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
    return d


scale = "h.0.mlp.c_fc.weight_scale"
for name, edit in (("no-scale", lambda h: h.pop(scale)),
                   ("scale-bf16", lambda h: h[scale].update(dtype="BF16")),
                   ("scale-shape", lambda h: h[scale].update(shape=[h[scale]["shape"][1], h[scale]["shape"][0]]))):
    r = run("info", "-m", edited_copy(name, edit))
    check(r.returncode == 1 and "h.0.mlp.c_fc.weight_scale' of shape [16, 32]" in r.stderr,
          f"q8 {name}: {r.returncode} {r.stderr.strip()}")
# Values of another layout (the shape of the matrix itself, or an older gpt2c's block-major
# [din / 32, padded dout * 32]): refused, naming the tensor and the shape expected.
values = "h.0.mlp.c_fc.weight"
for name, shape in (("values-plain", [64, 256]), ("values-block-major", [2, 256 * 32])):
    r = run("info", "-m", edited_copy(name, lambda h: h[values].update(shape=shape)))
    check(r.returncode == 1 and "'h.0.mlp.c_fc.weight' must hold a 64 x 256 matrix" in r.stderr and
          "[16, 1024]" in r.stderr, f"q8 {name}: {r.returncode} {r.stderr.strip()}")

# Injected I/O errors: a write() failing half way through model.safetensors, and a failing
# fsync(): a clear error, no folder, no temporary folder left.
shim = os.path.join(os.path.abspath(BUILD), "tests", "libfault.so")
if os.path.exists(shim):
    for spec in ("write:200000", "fsync"):
        env = dict(os.environ, LD_PRELOAD=shim, GPT2C_FAULT=spec, ASAN_OPTIONS="verify_asan_link_order=0")
        out = os.path.join(tmp, "faulty")
        r = run("convert", "-m", SRC, "--dtype", "q8", "-o", out, env=env)
        left = [f for f in os.listdir(tmp) if f.startswith("faulty")]
        check(r.returncode == 1 and "Input/output error" in r.stderr and "model.safetensors" in r.stderr and not left,
              f"{spec}: exit {r.returncode}, {r.stderr.strip()}, left {left}")
    r = run("convert", "-m", SRC, "--dtype", "q8", "-o", os.path.join(tmp, "faulty"))
    check(r.returncode == 0 and generated(os.path.join(tmp, "faulty")) == generated(os.path.join(tmp, "q8")),
          "the same conversion without the fault completes")
else:
    check(False, f"{shim} not built")

subprocess.run(["rm", "-rf", tmp])
print(f"convert: {results['pass']} passed, {results['fail']} failed")
sys.exit(1 if results["fail"] else 0)
