#!/usr/bin/python3
"""make_reference.py OUTDIR -- random checkpoints plus the numpy reference's answers for them.

Writes, for each variant below, a checkpoint folder (tools/make_checkpoint.py, or
tools/make_arch_checkpoint.py and tools/ref_arch.py for the other architectures), the reference
logits at every position of a fixed prompt, and the reference greedy continuation; then
OUTDIR/manifest.txt, one line per variant: name, folder, ids, logits file, greedy ids, and
for the F32 variants beam search (3 beams, 2 returned) as "score:ids;score:ids" (else "-").
test_reference compares gpt2c against these. Reruns only when this file or the tools change.
"""
import hashlib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(os.path.dirname(HERE), "tools")
PY = sys.executable

PROMPT = [15496, 11, 314, 1101, 257, 3303, 2746, 11, 290, 314, 588, 262]
# Variants named *-long take this one: 280 positions cross the KV cache's blocks of 256.
LONG_PROMPT = [(7919 * i + 13) % 50257 for i in range(280)]
VARIANTS = [  # name, make_checkpoint arguments, vocabulary size, greedy tokens
    ("tiny-f32", ["--preset", "tiny", "--seed", "1", "--std", "0.2"], 50257, 8),
    ("tiny-f16", ["--preset", "tiny", "--seed", "2", "--dtype", "F16"], 50257, 8),
    ("tiny-bf16", ["--preset", "tiny", "--seed", "3", "--dtype", "BF16"], 50257, 8),
    # Every optional path at once: "transformer." names, an untied head, misaligned data,
    # erf GELU, inverse-layer scaling, n_inner, a short context and a small vocabulary.
    ("tiny-variant", ["--n-layer", "3", "--n-embd", "48", "--n-head", "2", "--n-inner", "96",
                      "--n-positions", "64", "--vocab", "1000", "--prefix", "transformer.", "--lm-head",
                      "--unaligned", "--activation", "gelu", "--scale-by-inverse-layer", "--no-mask",
                      "--seed", "4", "--std", "0.2"], 1000, 8),
    ("tiny-sharded", ["--preset", "tiny", "--seed", "8", "--dtype", "BF16", "--shards", "3"], 50257, 8),
    ("gpt2-f32", ["--preset", "gpt2", "--seed", "5", "--std", "0.05"], 50257, 4),
    ("gpt2-f16", ["--preset", "gpt2", "--seed", "6", "--dtype", "F16"], 50257, 4),
    ("gpt2-bf16", ["--preset", "gpt2", "--seed", "7", "--dtype", "BF16"], 50257, 4),
    # The F32 checkpoints again, loaded with --dtype q8 against the same quantisation in numpy;
    # and the common 8-bit scheme (weights only) for test_agreement to measure q8 against.
    ("tiny-q8", ["@tiny-f32"], 50257, 8),
    ("tiny-long", ["@tiny-f32"], 50257, 8),
    ("gpt2-q8", ["@gpt2-f32"], 50257, 4),
    # The other architectures (tools/make_arch_checkpoint.py, tools/ref_arch.py): GPT-Neo with a
    # local window of 6 (shorter than the prompt; its -long variant crosses the KV cache's blocks),
    # OPT pre- and post-LN (with project_in/out), GPT-NeoX parallel and sequential; q8 where
    # every product's input is a multiple of 32.
    ("neo-mini-f32", ["arch", "--preset", "neo-mini", "--seed", "11", "--std", "0.2"], 50257, 8),
    ("neo-mini-long", ["@neo-mini-f32"], 50257, 4),
    ("neo-mini-q8", ["@neo-mini-f32"], 50257, 8),
    ("opt-mini-f32", ["arch", "--preset", "opt-mini", "--seed", "12", "--std", "0.2"], 50272, 8),
    ("opt-mini-q8", ["@opt-mini-f32"], 50272, 8),
    ("opt-postln-f32", ["arch", "--preset", "opt-mini-postln", "--seed", "13", "--std", "0.2"], 50272, 8),
    ("neox-mini-f32", ["arch", "--preset", "neox-mini", "--seed", "14", "--std", "0.2"], 50304, 8),
    ("neox-mini-q8", ["@neox-mini-f32"], 50304, 8),
    ("neox-seqres-f32", ["arch", "--preset", "neox-mini-seqres", "--seed", "15", "--std", "0.2"], 50304, 8),
    # BLOOM with 6 heads (ALiBi's slopes past the largest power of two; its -long variant takes
    # the key-position bias across the KV cache's blocks) and with the residual taken after the
    # LayerNorm, GPTBigCode multi-query and multi-head, CodeGen (rotary on 4 of 8 dims).
    ("bloom-mini-f32", ["arch", "--preset", "bloom-mini", "--seed", "16", "--std", "0.2"], 50304, 8),
    ("bloom-mini-long", ["@bloom-mini-f32"], 50304, 4),
    ("bloom-mini-q8", ["@bloom-mini-f32"], 50304, 8),
    ("bloom-postres-f32", ["arch", "--preset", "bloom-mini-postres", "--seed", "17", "--std", "0.2"], 50304, 8),
    ("starcoder-mqa-f32", ["arch", "--preset", "starcoder-mini-mqa", "--seed", "18", "--std", "0.2"], 49152, 8),
    ("starcoder-mqa-q8", ["@starcoder-mqa-f32"], 49152, 8),
    ("starcoder-mha-f32", ["arch", "--preset", "starcoder-mini-mha", "--seed", "19", "--std", "0.2"], 49152, 8),
    ("codegen-mini-f32", ["arch", "--preset", "codegen-mini", "--seed", "20", "--std", "0.2"], 51200, 8),
    ("codegen-mini-q8", ["@codegen-mini-f32"], 51200, 8),
]
# Logits only (OUTDIR/NAME.f32, not in the manifest): the common 8-bit scheme, weights alone,
# which test_agreement holds gpt2c's q8 against.
COMMON_Q8 = [("tiny-q8w", "tiny-f32"), ("gpt2-q8w", "gpt2-f32")]
# Checkpoints only: tiny-f32's weights at a smaller scale (the same seed, so the same draws),
# a draft model whose distribution is like tiny-f32's but flatter, for test_reference's test
# of speculative sampling.
DRAFTS = [("tiny-draft", ["--preset", "tiny", "--seed", "1", "--std", "0.12"])]


def fingerprint():
    h = hashlib.sha256()
    for p in (__file__, os.path.join(TOOLS, "make_checkpoint.py"), os.path.join(TOOLS, "ref_gpt2.py"),
              os.path.join(TOOLS, "safetensors_np.py"), os.path.join(TOOLS, "make_arch_checkpoint.py"),
              os.path.join(TOOLS, "ref_arch.py")):
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def main():
    out = os.path.abspath(sys.argv[1])
    stamp = os.path.join(out, "fingerprint")
    fp = fingerprint()
    if os.path.exists(stamp) and open(stamp).read() == fp:
        return
    os.makedirs(out, exist_ok=True)
    lines, arch = [], set()
    for name, args, vocab, n_greedy in VARIANTS:
        if args[0].startswith("@"):  # another variant's checkpoint, loaded differently
            folder = os.path.join(out, args[0][1:])
            if args[0][1:] in arch:
                arch.add(name)
        elif args[0] == "arch":
            folder = os.path.join(out, name)
            arch.add(name)
            subprocess.run([PY, os.path.join(TOOLS, "make_arch_checkpoint.py"), "--out", folder] + args[1:],
                           check=True)
        else:
            folder = os.path.join(out, name)
            subprocess.run([PY, os.path.join(TOOLS, "make_checkpoint.py"), "--out", folder] + args, check=True)
        ref = os.path.join(TOOLS, "ref_arch.py" if name in arch else "ref_gpt2.py")
        quant = ["--dtype", "q8"] if name.endswith("-q8") else []
        ids = ",".join(str(t % vocab) for t in (LONG_PROMPT if name.endswith("-long") else PROMPT))
        logits = os.path.join(out, name + ".f32")
        beam = ["--beams", "3", "--beam-return", "2", "--beam-new", str(n_greedy)] if name.endswith(("f32", "q8")) else []
        r = subprocess.run([PY, ref, folder, "--ids", ids, "--out", logits,
                            "--greedy", str(n_greedy)] + beam + quant, check=True, capture_output=True, text=True)
        res = r.stdout.split("\n")
        beams = ";".join(line.replace(" ", ":") for line in res[1:] if line) or "-"
        lines.append(f"{name} {folder} {ids} {logits} {res[0]} {beams}\n")
        print(f"reference: {name} ready", flush=True)
    for name, source in COMMON_Q8:
        ids = ",".join(str(t) for t in PROMPT)
        subprocess.run([PY, os.path.join(TOOLS, "ref_gpt2.py"), os.path.join(out, source), "--ids", ids, "--out",
                        os.path.join(out, name + ".f32"), "--dtype", "q8w"], check=True)
        print(f"reference: {name} ready", flush=True)
    for name, args in DRAFTS:
        subprocess.run([PY, os.path.join(TOOLS, "make_checkpoint.py"), "--out", os.path.join(out, name)] + args,
                       check=True)
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.writelines(lines)
    with open(stamp, "w") as f:
        f.write(fp)


if __name__ == "__main__":
    main()
