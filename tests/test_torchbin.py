#!/usr/bin/python3
"""test_torchbin.py BUILD_DIR -- checkpoints as PyTorch writes them, end to end.

torch itself (python3-torch) writes pytorch_model.bin from random safetensors checkpoints
(tools/to_torch_bin.py): the zip and the legacy format, F32/F16/BF16, tied storages, strided
views, shards. Each folder must generate exactly what its safetensors twin generates (greedy
and sampled tokens with their log-probabilities), from the CLI and the server; a folder with
both formats reads the safetensors; convert turns a .bin folder into a safetensors one; a
trained-style folder with a 53-token vocabulary, GPT2Config's out-of-range bos/eos and no
tokenizer files generates from ids. Skips (with a message) without torch. Prints
"torchbin: N passed, N failed".
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PY = sys.executable
BUILD = sys.argv[1]
BIN = os.path.join(BUILD, "gpt2c")
results = {"pass": 0, "fail": 0}

try:
    import torch  # noqa: F401
except ImportError:
    print("torchbin: skipped: python3-torch is not installed (tools/install-deps.sh installs it)")
    sys.exit(0)


def check(cond, what):
    results["pass" if cond else "fail"] += 1
    if not cond:
        print("FAIL:", what, flush=True)


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def tool(*args):
    subprocess.run([PY, *args], check=True, cwd=ROOT)


def generated(model, *extra):
    """Greedy and sampled sequences with logprobs (timings dropped), or the error."""
    out = []
    for mode in (["--greedy"], ["--do-sample", "--seed", "7", "--top-k", "20"]):
        r = run("generate", "-m", model, *extra, "--max-new-tokens", "10", "--logprobs", "3", "--json", *mode)
        out.append(json.loads(r.stdout)["sequences"] if r.returncode == 0 else r.stderr)
    return out


tmp = tempfile.mkdtemp(prefix="gpt2c-bin-")
try:
    src = {}
    for name, extra in (("f32", []), ("f16", ["--dtype", "F16", "--lm-head"]),
                        ("bf16", ["--dtype", "BF16", "--prefix", "transformer."])):
        src[name] = os.path.join(tmp, "st-" + name)
        tool("tools/make_checkpoint.py", "--preset", "tiny", "--n-positions", "64", "--seed", "3",
             "--out", src[name], *extra)
    prompt = ["-p", "Checkpoints as published, read safely"]
    want = {name: generated(d, *prompt) for name, d in src.items()}
    check(all(isinstance(w[0], list) for w in want.values()), f"the safetensors twins generate: {want['f32'][0]}")

    # 1. Every way torch writes the same weights generates the same tokens and log-probabilities.
    variants = [("f32", []), ("f32", ["--legacy"]), ("f32", ["--strided"]), ("f32", ["--legacy", "--strided", "--tie"]),
                ("f32", ["--shards", "3"]), ("f16", ["--legacy", "--shards", "2"]), ("f16", []),
                ("bf16", ["--legacy", "--strided"]), ("bf16", ["--tie"])]
    folders = {}
    for i, (name, opts) in enumerate(variants):
        d = os.path.join(tmp, f"bin{i}")
        tool("tools/to_torch_bin.py", src[name], d, *opts)
        folders[(name, tuple(opts))] = d
        what = f"{name} {' '.join(opts) or 'zip'}"
        check(not any(f.endswith(".safetensors") for f in os.listdir(d)), f"{what}: no safetensors in the folder")
        check(generated(d, *prompt) == want[name], f"{what}: the same tokens and logprobs as safetensors")
    zip32 = folders[("f32", ())]
    r = run("info", "-m", folders[("bf16", ("--tie",))])
    check(r.returncode == 0 and json.loads(r.stdout).get("weight_dtype") == "BF16", f"info of a BF16 .bin: {r.stdout}")

    # 2. Both formats in one folder: the safetensors file is read, as from_pretrained does.
    both = os.path.join(tmp, "both")
    shutil.copytree(src["f32"], both)
    with open(os.path.join(both, "pytorch_model.bin"), "wb") as f:
        f.write(b"not a checkpoint")
    check(generated(both, *prompt) == want["f32"], "safetensors preferred over pytorch_model.bin")
    os.remove(os.path.join(both, "model.safetensors"))
    r = run("generate", "-m", both, *prompt, "-n", "2")
    check(r.returncode == 1 and "pytorch_model.bin" in r.stderr, f"a bad .bin is named: {r.stderr}")

    # 3. convert: a .bin folder becomes a mapped safetensors folder that generates the same.
    conv = os.path.join(tmp, "converted")
    r = run("convert", "-m", folders[("f32", ("--legacy", "--strided", "--tie"))], "--dtype", "f32", "-o", conv)
    check(r.returncode == 0, f"convert a .bin folder: {r.stderr}")
    if r.returncode == 0:
        check(os.path.exists(os.path.join(conv, "model.safetensors")) and
              not os.path.exists(os.path.join(conv, "pytorch_model.bin")), "convert writes safetensors only")
        check(generated(conv, *prompt) == want["f32"], "converted from .bin: the same tokens")

    # 4. The server answers from a .bin folder what it answers from the safetensors twin.
    def serve_completion(model, body):
        port_file = os.path.join(tmp, f"port{time.monotonic_ns()}")
        p = subprocess.Popen([BIN, "serve", "-m", model, "--port", "0", "--port-file", port_file],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                if os.path.exists(port_file) and open(port_file).read().strip():
                    break
                time.sleep(0.05)
            port = int(open(port_file).read())

            def request(method, path, data=None):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                try:
                    c.request(method, path, data and json.dumps(data), {"Content-Type": "application/json"})
                    r = c.getresponse()
                    return r.status, r.read()
                except (ConnectionError, OSError):
                    return 0, b""
                finally:
                    c.close()
            for _ in range(600):  # ready once /health says so
                if request("GET", "/health")[0] == 200:
                    break
                time.sleep(0.05)
            status, data = request("POST", "/v1/completions", body)
            return status, json.loads(data or b"{}")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)

    body = {"prompt": "Served from a pickle", "max_tokens": 8, "temperature": 0, "logprobs": 2}
    a, b = serve_completion(src["f32"], body), serve_completion(folders[("f32", ("--shards", "3"))], body)
    check(a[0] == 200 and b[0] == 200 and a[1]["choices"] == b[1]["choices"],
          f"server: .bin shards answer as safetensors: {a[0]} {b[0]}")

    # 5. A folder as a training script leaves it: 53 tokens, GPT2Config's bos/eos 50256 (outside
    # the vocabulary), no tokenizer files, only pytorch_model.bin.
    tl_st, tl = os.path.join(tmp, "tl-st"), os.path.join(tmp, "tl")
    tool("tools/make_checkpoint.py", "--preset", "tiny", "--vocab", "53", "--n-positions", "64", "--seed", "5",
         "--out", tl_st)
    for f in ("config.json", "generation_config.json"):
        p = os.path.join(tl_st, f)
        c = json.load(open(p))
        c.update(bos_token_id=50256, eos_token_id=50256, transformers_version="4.46.0", torch_dtype="float32")
        json.dump(c, open(p, "w"))
    tool("tools/to_torch_bin.py", tl_st, tl)
    check(not any(f in os.listdir(tl) for f in ("vocab.json", "merges.txt", "tokenizer.json")), "no tokenizer files")
    check(generated(tl, "--ids", "0,5,7") == generated(tl_st, "--ids", "0,5,7"), "ids-only .bin equals its twin")
    r = run("generate", "-m", tl, "--ids", "0,5,7", "-n", "6", "--json")
    j = json.loads(r.stdout) if r.returncode == 0 else {}
    seq = (j.get("sequences") or [{}])[0]
    check(r.returncode == 0 and len(seq.get("token_ids", [])) == 6 and "text" not in seq and "prompt" not in j,
          f"--json: token ids, no text: {r.stdout[:300]} {r.stderr}")
    r = run("generate", "-m", tl, "--ids", "0,5,7", "-n", "6")
    check(r.returncode == 0 and r.stdout.strip() == ",".join(map(str, [0, 5, 7] + seq.get("token_ids", []))),
          f"plain output: the ids as --ids takes them: {r.stdout!r}")
    r = run("generate", "-m", tl, "-p", "text", "-n", "2")
    check(r.returncode == 2 and "--ids" in r.stderr, f"a text prompt without tokenizer: {r.stderr}")
    r = run("generate", "-m", tl, "--ids", "0,53", "-n", "2")
    check(r.returncode == 2 and "0..52" in r.stderr, f"an id outside the model's vocabulary: {r.stderr}")
    st, ans = serve_completion(tl, {"prompt": [0, 5, 7], "max_tokens": 6, "temperature": 0})
    check(st == 200 and ans["choices"][0].get("token_ids") == seq.get("token_ids") and ans["choices"][0]["text"] == "",
          f"server: token-id prompt answered in token_ids: {st} {ans}")
    st, ans = serve_completion(tl, {"prompt": "text", "max_tokens": 2})
    check(st == 400 and "tokenizer" in json.dumps(ans), f"server: a text prompt without tokenizer: {st} {ans}")

    # 6. The GPT-Neo checkpoint transformers itself saved as .bin (zip and legacy): the same
    # generation as its safetensors twin (test_arch_golden checks their logits against
    # transformers').
    arch = os.path.join(os.environ.get("GPT2C_GOLDEN", os.path.join(ROOT, "..", "shared", "golden")),
                        "checkpoints", "arch")
    if os.path.isdir(os.path.join(arch, "gpt-neo-mini-bin")):
        want = run("generate", "-m", os.path.join(arch, "gpt-neo-mini"), "-p", "Once upon a time", "-n", "12",
                   "--json")
        for twin in ("gpt-neo-mini-bin", "gpt-neo-mini-bin-legacy"):
            r = run("generate", "-m", os.path.join(arch, twin), "-p", "Once upon a time", "-n", "12", "--json")
            check(r.returncode == 0 and json.loads(r.stdout)["sequences"] == json.loads(want.stdout)["sequences"],
                  f"{twin}: generates as the safetensors twin: {r.stderr}")
    else:
        print("torchbin: skipped: ../shared/golden/checkpoints/arch is absent")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print(f"torchbin: {results['pass']} passed, {results['fail']} failed")
sys.exit(1 if results["fail"] else 0)
