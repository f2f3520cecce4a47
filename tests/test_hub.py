#!/usr/bin/python3
"""test_hub.py BUILD_DIR REF_DIR -- models by name against a fake hub on loopback.

First download and the cache layout, a cache hit with no request, offline mode, resume after
a dropped connection (in one run, and across runs), corrupted bytes refused, two concurrent
pulls, a cache laid out by hand (as huggingface_hub would) read without the network, private
and gated repos, unknown names, a renamed repository, ls and rm, and the token never reaching
the CDN. Prints "hub: N passed, N failed".
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

BUILD, REF = sys.argv[1], sys.argv[2]
BIN = os.path.abspath(os.path.join(BUILD, "gpt2c"))
HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
results = {"pass": 0, "fail": 0}


def check(cond, what):
    if cond:
        results["pass"] += 1
    else:
        results["fail"] += 1
        print(f"FAIL: {what}", flush=True)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


tmp = tempfile.mkdtemp(prefix="gpt2c-hub-")
state = os.path.join(tmp, "state")
os.makedirs(state)
# The served model: a small random checkpoint with the real tokenizer.
src = os.path.join(tmp, "src")
subprocess.run([PY, os.path.join(os.path.dirname(HERE), "tools", "make_checkpoint.py"), "--preset", "tiny",
                "--n-positions", "64", "--no-mask", "--seed", "11", "--out", src], check=True)
os.remove(os.path.join(src, "generation_config.json"))  # an optional file the hub lacks
sharded = os.path.join(tmp, "sharded")
subprocess.run([PY, os.path.join(os.path.dirname(HERE), "tools", "make_checkpoint.py"), "--preset", "tiny",
                "--n-positions", "64", "--no-mask", "--seed", "12", "--shards", "2", "--out", sharded], check=True)
# As torch writes them (when python3-torch is here): a .bin-only repo, and one with both formats.
try:
    import torch  # noqa: F401
    binonly, both = os.path.join(tmp, "binonly"), os.path.join(tmp, "both")
    subprocess.run([PY, os.path.join(os.path.dirname(HERE), "tools", "to_torch_bin.py"), src, binonly, "--legacy"],
                   check=True)
    shutil.copytree(src, both)
    shutil.copy(os.path.join(binonly, "pytorch_model.bin"), both)
except ImportError:
    binonly = both = None
    print("hub: the .bin repos are skipped: python3-torch is not installed")
# The other architectures, under their hub names (small checkpoints in each one's layout and
# tokenizer format: GPT-2's files, OPT's vocab.json with tokenizer_config.json, GPT-NeoX's
# tokenizer.json alone).
ARCH_REPOS = {"EleutherAI/gpt-neo-125M": "neo-mini", "facebook/opt-125m": "opt-mini",
              "EleutherAI/pythia-160m": "neox-mini", "bigscience/bloom-560m": "bloom-mini",
              "bigcode/tiny_starcoder": "starcoder-mini-mqa", "Salesforce/codegen-350M-mono": "codegen-mini"}
ARCH_TYPES = {"neo-mini": "gpt_neo", "opt-mini": "opt", "neox-mini": "gpt_neox", "bloom-mini": "bloom",
              "starcoder-mini-mqa": "gpt_bigcode", "codegen-mini": "codegen"}
arch_dirs = {}
for name, preset in ARCH_REPOS.items():
    arch_dirs[name] = os.path.join(tmp, preset)
    subprocess.run([PY, os.path.join(os.path.dirname(HERE), "tools", "make_arch_checkpoint.py"), "--preset", preset,
                    "--std", "0.2", "--seed", "21", "--out", arch_dirs[name]], check=True)
noweights = os.path.join(tmp, "noweights")
os.makedirs(noweights)
shutil.copy(os.path.join(src, "config.json"), noweights)

server = subprocess.Popen([PY, os.path.join(HERE, "fake_hub.py"), state, f"testorg/tiny={src}",
                           f"testorg/private={src}", f"testorg/gated={src}", f"testorg/sharded={sharded}",
                           f"testorg/noweights={noweights}", f"openai-community/gpt2={src}",
                           *[f"{name}={d}" for name, d in arch_dirs.items()],
                           *([f"testorg/binonly={binonly}", f"testorg/both={both}"] if binonly else []), "--private",
                           "testorg/private", "--gated", "testorg/gated", "--alias", "tiny=testorg/tiny",
                           "--alias", "gpt2=openai-community/gpt2", "--token", "tok123"])
try:
    for _ in range(100):
        if os.path.exists(os.path.join(state, "ports")):
            break
        time.sleep(0.05)
    hub_port, cdn_port = open(os.path.join(state, "ports")).read().split()
    endpoint = f"http://127.0.0.1:{hub_port}"
    log_path = os.path.join(state, "requests.log")

    def requests():
        return open(log_path).read().splitlines() if os.path.exists(log_path) else []

    def run(args, cache, **env):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
        e.update({"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": cache, "HF_HOME": os.path.join(tmp, "home")})
        e.update(env)
        return subprocess.run([BIN] + args, capture_output=True, text=True, env=e)

    def fault(name, on):
        p = os.path.join(state, name)
        if on:
            open(p, "w").close()
        elif os.path.exists(p):
            os.remove(p)

    commit = hashlib.sha1(b"testorg/tiny").hexdigest()
    cache = os.path.join(tmp, "cache")
    repo = os.path.join(cache, "models--testorg--tiny")

    # 1. First download: the layout huggingface_hub writes.
    r = run(["pull", "testorg/tiny"], cache)
    check(r.returncode == 0, f"pull: {r.stderr}")
    snap = os.path.join(repo, "snapshots", commit)
    check(r.stdout.strip() == snap, f"pull prints the snapshot folder: {r.stdout!r}")
    check(open(os.path.join(repo, "refs", "main")).read() == commit, "refs/main holds the commit")
    st_link = os.path.join(snap, "model.safetensors")
    st_sha = sha256(os.path.join(src, "model.safetensors"))
    check(os.readlink(st_link) == f"../../blobs/{st_sha}", "LFS file linked to blobs/{sha256}")
    data = open(os.path.join(src, "config.json"), "rb").read()
    git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    check(os.readlink(os.path.join(snap, "config.json")) == f"../../blobs/{git}", "regular file linked to blobs/{git sha1}")
    for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        check(open(os.path.join(snap, f), "rb").read() == open(os.path.join(src, f), "rb").read(), f"{f} content")
    check(os.path.exists(os.path.join(repo, ".no_exist", commit, "generation_config.json")),
          ".no_exist marks the file the hub lacks")
    check(not any(n.endswith(".incomplete") for n in os.listdir(os.path.join(repo, "blobs"))), "no partial files left")
    check(not any(" cdn " in line or "auth" in line.split()[3] for line in requests() if line.startswith("cdn")),
          "no token anywhere without HF_TOKEN")

    # 2. The second run makes no request at all.
    before = len(requests())
    r = run(["generate", "-m", "testorg/tiny", "-p", "Hello", "-n", "4", "--json"], cache)
    check(r.returncode == 0 and len(json.loads(r.stdout)["sequences"][0]["token_ids"]) == 4, f"generate by name: {r.stderr}")
    check(len(requests()) == before, f"cache hit makes no request ({len(requests()) - before} made)")
    direct = subprocess.run([BIN, "generate", "-m", src, "-p", "Hello", "-n", "4", "--json"], capture_output=True, text=True)
    check(json.loads(direct.stdout)["sequences"][0]["token_ids"] == json.loads(r.stdout)["sequences"][0]["token_ids"],
          "same tokens as from the folder")

    # 3. Offline: the cache serves; anything missing is an error, with no request.
    r = run(["generate", "-m", "testorg/tiny", "-p", "Hi", "-n", "2"], cache, HF_HUB_OFFLINE="1",
            HF_ENDPOINT="http://127.0.0.1:9")
    check(r.returncode == 0, f"offline from the cache: {r.stderr}")
    r = run(["pull", "testorg/sharded"], cache, TRANSFORMERS_OFFLINE="1")
    check(r.returncode == 1 and "HF_HUB_OFFLINE" in r.stderr, f"offline miss: {r.stderr}")
    check(len(requests()) == before, "offline makes no request")
    r = run(["pull", "testorg/sharded"], cache, HF_ENDPOINT="http://127.0.0.1:9")
    check(r.returncode == 1 and "HF_HUB_OFFLINE" in r.stderr and "127.0.0.1:9" in r.stderr, f"no network: {r.stderr}")

    # 4. Resume: the CDN drops the connection halfway; the download resumes with Range.
    cache2 = os.path.join(tmp, "cache2")
    fault("drop-once", True)
    r = run(["pull", "testorg/tiny"], cache2)
    fault("drop-once", False)
    check(r.returncode == 0, f"pull through a dropped connection: {r.stderr}")
    ranged = [line for line in requests() if line.startswith("cdn GET") and not line.endswith(" -")]
    check(len(ranged) >= 1, "the retry asked for a Range")
    blob = os.path.join(cache2, "models--testorg--tiny", "blobs", st_sha)
    check(os.path.exists(blob) and sha256(blob) == st_sha, "resumed blob is intact")
    # ... and across runs: a first run that fails keeps its partial file for the next.
    cache3 = os.path.join(tmp, "cache3")
    fault("drop-always", True)
    r = run(["pull", "testorg/tiny"], cache3)
    fault("drop-always", False)
    check(r.returncode == 1, "pull fails while the CDN keeps dropping")
    part = os.path.join(cache3, "models--testorg--tiny", "blobs", st_sha + ".incomplete")
    check(os.path.exists(part) and 0 < os.path.getsize(part), "the partial download is kept")
    check(not os.path.exists(os.path.join(cache3, "models--testorg--tiny", "snapshots", commit, "model.safetensors")),
          "nothing half-written under snapshots/")
    have = os.path.getsize(part)
    n = len(requests())
    r = run(["pull", "testorg/tiny"], cache3)
    check(r.returncode == 0, f"the next run completes: {r.stderr}")
    check(any(line.startswith("cdn GET") and line.endswith(f"bytes={have}-") for line in requests()[n:]),
          f"and resumes from byte {have}")

    # 5. Corrupted bytes: refused, deleted, not linked.
    cache4 = os.path.join(tmp, "cache4")
    fault("corrupt", True)
    r = run(["pull", "testorg/tiny"], cache4)
    fault("corrupt", False)
    check(r.returncode == 1 and "checksum mismatch" in r.stderr and "deleted" in r.stderr, f"corruption: {r.stderr}")
    blobs4 = os.path.join(cache4, "models--testorg--tiny", "blobs")
    check(not os.path.exists(os.path.join(blobs4, st_sha)) and not os.path.exists(os.path.join(blobs4, st_sha + ".incomplete")),
          "the corrupt file is gone")
    check(not os.path.exists(os.path.join(cache4, "models--testorg--tiny", "refs", "main")), "no ref for a failed pull")

    # 6. Two pulls at once into one cache: both succeed, one intact blob.
    cache5 = os.path.join(tmp, "cache5")
    e = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    e.update({"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": cache5})
    procs = [subprocess.Popen([BIN, "pull", "testorg/tiny"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    codes = [p.wait() for p in procs]
    check(codes == [0, 0], f"concurrent pulls: {codes}")
    b5 = os.path.join(cache5, "models--testorg--tiny", "blobs", st_sha)
    check(os.path.exists(b5) and sha256(b5) == st_sha, "concurrent pulls leave an intact blob")

    # 7. A cache laid out by hand, as huggingface_hub writes it, is read with no network.
    cache6 = os.path.join(tmp, "cache6")
    fake_commit = "a" * 40
    r6 = os.path.join(cache6, "models--someorg--handmade")
    os.makedirs(os.path.join(r6, "blobs"))
    os.makedirs(os.path.join(r6, "snapshots", fake_commit))
    os.makedirs(os.path.join(r6, "refs"))
    open(os.path.join(r6, "refs", "main"), "w").write(fake_commit)
    os.makedirs(os.path.join(r6, ".no_exist", fake_commit))
    open(os.path.join(r6, ".no_exist", fake_commit, "generation_config.json"), "w").close()
    for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        etag = sha256(os.path.join(src, f))
        shutil.copy(os.path.join(src, f), os.path.join(r6, "blobs", etag))
        os.symlink(f"../../blobs/{etag}", os.path.join(r6, "snapshots", fake_commit, f))
    r = run(["generate", "-m", "someorg/handmade", "-p", "Hello", "-n", "3"], cache6, HF_ENDPOINT="http://127.0.0.1:9")
    check(r.returncode == 0, f"a huggingface_hub-style cache is used as is: {r.stderr}")
    r = run(["info", "-m", f"someorg/handmade@{fake_commit}"], cache6, HF_ENDPOINT="http://127.0.0.1:9")
    check(r.returncode == 0, f"a commit as revision: {r.stderr}")

    # 8. Private, gated, unknown, missing weights, renamed, sharded.
    r = run(["pull", "testorg/private"], cache)
    check(r.returncode == 1 and "HF_TOKEN" in r.stderr, f"private without a token: {r.stderr}")
    n = len(requests())
    r = run(["pull", "testorg/private"], cache, HF_TOKEN="tok123")
    check(r.returncode == 0, f"private with HF_TOKEN: {r.stderr}")
    cdn_lines = [line for line in requests()[n:] if line.startswith("cdn")]
    check(cdn_lines and all(line.split()[3] == "-" for line in cdn_lines), "the token is not sent to the CDN")
    check(all(line.split()[3] == "auth" for line in requests()[n:] if line.startswith("hub")), "the token is sent to the hub")
    os.makedirs(os.path.join(tmp, "home"), exist_ok=True)
    open(os.path.join(tmp, "home", "token"), "w").write("tok123\n")
    r = run(["pull", "testorg/gated"], cache)
    check(r.returncode == 0, f"the token from $HF_HOME/token: {r.stderr}")
    os.remove(os.path.join(tmp, "home", "token"))
    r = run(["pull", "testorg/gated"], os.path.join(tmp, "cache7"))
    check(r.returncode == 1 and "gated" in r.stderr and "HF_TOKEN" in r.stderr, f"gated: {r.stderr}")
    r = run(["pull", "testorg/nope"], cache)
    check(r.returncode == 1 and "not found" in r.stderr, f"unknown repo: {r.stderr}")
    r = run(["pull", "testorg/tiny@v9"], cache)
    check(r.returncode == 1 and "revision not found" in r.stderr, f"unknown revision: {r.stderr}")
    r = run(["pull", "testorg/noweights"], cache)
    check(r.returncode == 1 and "model.safetensors" in r.stderr and "pytorch_model.bin" in r.stderr,
          f"no weights: {r.stderr}")
    r = run(["generate", "-m", "tiny", "-p", "Hello", "-n", "2"], cache)
    check(r.returncode == 0 and os.path.isdir(os.path.join(cache, "models--tiny")), f"renamed repo (relative redirect): {r.stderr}")
    r = run(["generate", "-m", "testorg/sharded", "-p", "Hello", "-n", "2", "--json"], cache)
    check(r.returncode == 0, f"sharded repo: {r.stderr}")
    if binonly:  # .bin only: downloaded and read; both formats: only the safetensors is downloaded
        before = len(requests())
        r = run(["generate", "-m", "testorg/binonly", "-p", "Hello", "-n", "4", "--json"], cache)
        check(r.returncode == 0 and json.loads(r.stdout)["sequences"][0]["token_ids"] ==
              json.loads(direct.stdout)["sequences"][0]["token_ids"], f".bin-only repo by name: {r.stderr}")
        check(any("pytorch_model.bin" in line for line in requests()[before:]), "the .bin was fetched")
        before = len(requests())
        r = run(["pull", "testorg/both"], cache)
        got = [line for line in requests()[before:] if " GET " in f" {line} " or line.startswith("cdn")]
        check(r.returncode == 0 and os.path.exists(os.path.join(r.stdout.strip(), "model.safetensors")) and
              not os.path.exists(os.path.join(r.stdout.strip(), "pytorch_model.bin")) and
              not any("pytorch_model.bin" in line for line in requests()[before:]),
              f"both formats: only the safetensors is downloaded: {r.stderr} {got}")
    r = run(["tokenize", "-m", "testorg/fresh-tokenizer-only", "-p", "Hello"], cache)
    check(r.returncode == 1, "tokenize by unknown name fails")
    r = run(["pull", "bad name!"], cache)
    check(r.returncode == 2, "a malformed name is a usage error")

    # 9. The issue's own words: `gpt2c generate -m gpt2` against HF_ENDPOINT, then no request.
    cache8 = os.path.join(tmp, "cache8")
    r = run(["generate", "-m", "gpt2", "-p", "hi", "-n", "3"], cache8)
    check(r.returncode == 0 and r.stdout.startswith("hi"), f"generate -m gpt2 downloads and generates: {r.stderr}")
    n = len(requests())
    r = run(["generate", "-m", "gpt2", "-p", "hi", "-n", "3"], cache8)
    check(r.returncode == 0 and len(requests()) == n, "the second run makes no request")

    # 10. A full disk: a clear error, the partial file kept for later, nothing linked.
    full = os.path.join(tmp, "fullfs")
    os.makedirs(full)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", full], capture_output=True).returncode == 0:
        try:
            r = run(["pull", "testorg/tiny"], full)
            check(r.returncode == 1 and "No space left on device" in r.stderr and "resume" in r.stderr,
                  f"disk full: {r.stderr}")
            snapf = os.path.join(full, "models--testorg--tiny", "snapshots", commit, "model.safetensors")
            check(not os.path.exists(snapf), "disk full: nothing half-written under snapshots/")
        finally:
            subprocess.run(["umount", full])
    else:
        print("skipped: disk-full case (cannot mount a small tmpfs here)")

    # 10b. Injected I/O errors (tests/fault_inject.c preloaded): a write that fails half way
    # and an fsync that fails each leave the cache as it was, with the partial file kept for
    # the next run, which then completes it.
    shim = os.path.join(os.path.abspath(BUILD), "tests", "libfault.so")
    asan = {"ASAN_OPTIONS": "verify_asan_link_order=0:" + os.environ.get("ASAN_OPTIONS", "")}
    for fault_spec, what in (("write:3000", "a failing write"), ("fsync", "a failing fsync")):
        cf = os.path.join(tmp, "cache-fault-" + fault_spec.split(":")[0])
        blob = os.path.join(cf, "models--testorg--tiny", "blobs", st_sha)
        snapf = os.path.join(cf, "models--testorg--tiny", "snapshots", commit, "model.safetensors")
        r = run(["pull", "testorg/tiny"], cf, LD_PRELOAD=shim, GPT2C_FAULT=fault_spec, **asan)
        check(r.returncode == 1 and "Input/output error" in r.stderr, f"{what}: a clear error ({r.stderr.strip()})")
        check(not os.path.exists(blob) and not os.path.exists(snapf), f"{what}: no blob, nothing linked")
        blobs = os.path.join(cf, "models--testorg--tiny", "blobs")
        check(any(b.endswith(".incomplete") for b in os.listdir(blobs)), f"{what}: the partial download is kept for later")
        r = run(["pull", "testorg/tiny"], cf)
        check(r.returncode == 0 and sha256(snapf) == st_sha and not any(b.endswith(".incomplete") for b in os.listdir(blobs)),
              f"{what}: the next run completes and verifies it ({r.stderr.strip()})")

    # 10c. The other architectures by their hub names: the same tokens as from the folder,
    # with each family's tokenizer files fetched (OPT's prompt starts with its </s>).
    cache9 = os.path.join(tmp, "cache9")
    for name, d in arch_dirs.items():
        r = run(["generate", "-m", name, "-p", "Hello world", "-n", "4", "--json"], cache9)
        direct = subprocess.run([BIN, "generate", "-m", d, "-p", "Hello world", "-n", "4", "--json"],
                                capture_output=True, text=True)
        ok = r.returncode == 0 and direct.returncode == 0
        check(ok and json.loads(r.stdout)["sequences"][0]["token_ids"] ==
              json.loads(direct.stdout)["sequences"][0]["token_ids"], f"{name} by name: {r.stderr}")
        snap = run(["pull", name], cache9).stdout.strip()
        want = {"facebook/opt-125m": ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"],
                "EleutherAI/pythia-160m": ["tokenizer.json"], "bigscience/bloom-560m": ["tokenizer.json"],
                "bigcode/tiny_starcoder": ["tokenizer.json"],
                "Salesforce/codegen-350M-mono": ["vocab.json", "merges.txt", "added_tokens.json"]
                }.get(name, ["vocab.json", "merges.txt"])
        check(all(os.path.exists(os.path.join(snap, f)) for f in want), f"{name}: its tokenizer files {want}")
        if ok and name == "facebook/opt-125m":
            check(json.loads(r.stdout)["prompt_ids"][0] == 2, "OPT's prompt starts with </s>")
        r = run(["info", "-m", name], cache9, HF_HUB_OFFLINE="1")
        check(r.returncode == 0 and json.loads(r.stdout)["model_type"] ==
              ARCH_TYPES[ARCH_REPOS[name]],
              f"{name}: info offline, model_type: {r.stdout} {r.stderr}")

    # 11. ls and rm.
    r = run(["ls"], cache)
    check(r.returncode == 0 and "testorg/tiny" in r.stdout and "main" in r.stdout, f"ls: {r.stdout}")
    size_mb = float([line for line in r.stdout.splitlines() if line.startswith("testorg/tiny ")][0].split()[1])
    check(abs(size_mb * 1e6 - sum(os.path.getsize(os.path.join(repo, "blobs", b)) for b in os.listdir(os.path.join(repo, "blobs")))) < 1e5,
          "ls shows the size of the blobs")
    r = run(["rm", "testorg/tiny"], cache)
    check(r.returncode == 0 and not os.path.exists(repo), f"rm: {r.stderr}")
    r = run(["rm", "testorg/tiny"], cache)
    check(r.returncode == 1 and "not in the cache" in r.stderr, "rm of a missing model")
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(tmp, ignore_errors=True)

print(f"hub: {results['pass']} passed, {results['fail']} failed")
sys.exit(1 if results["fail"] else 0)
