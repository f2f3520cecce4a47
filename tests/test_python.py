#!/usr/bin/python3
"""test_python.py BUILD_DIR REF_DIR -- the Python package (python/gpt2c) end to end.

Against independent references: the numpy reference's logits, greedy and beam tokens for every
architecture (REF_DIR/manifest.txt, from tests/make_reference.py); the golden tokenizer cases
computed by transformers (tests/fixtures/golden/tokenizer.jsonl, and the other families' from
../shared/golden/arch-tokenizers); transformers' own greedy and left-padded batch continuations
(tests/fixtures/golden/*.json with the checkpoints in ../shared/golden/checkpoints: skipped
without them); the CLI's seeded output for the same seed. The issue's three user-story snippets
run as scripts, unchanged but for the import, with "gpt2" served from an offline HF cache; and
`pip install ./python` into a fresh venv, offline. Prints "python: N passed, N failed".

Under a sanitizer build the test re-runs itself with the sanitizer's runtime preloaded (Python
itself is not instrumented) and leak checks off (the interpreter keeps its memory at exit).
"""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD, REF = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
LIB = os.path.join(BUILD, "libgpt2c.so")
BIN = os.path.join(BUILD, "gpt2c")
GOLDEN = os.environ.get("GPT2C_GOLDEN", os.path.join(ROOT, "..", "shared", "golden"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def sanitizer_runtime():
    """The runtime an instrumented libgpt2c.so needs loaded first, or None."""
    deps = subprocess.run(["ldd", LIB], capture_output=True, text=True).stdout
    if "libasan" in deps:
        cc = "gcc"
        name = "libasan.so"
    else:
        syms = subprocess.run(["nm", "-D", "--undefined-only", LIB], capture_output=True, text=True).stdout
        if "__asan_init" not in syms:
            return None
        cc, name = "clang", "libclang_rt.asan-x86_64.so"
    return subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()


if "GPT2C_TEST_PRELOADED" not in os.environ:
    rt = sanitizer_runtime()
    env = dict(os.environ, GPT2C_TEST_PRELOADED="1")
    if rt:
        env["LD_PRELOAD"] = rt
        env["ASAN_OPTIONS"] = "detect_leaks=0:" + os.environ.get("ASAN_OPTIONS", "")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

SANITIZED = "LD_PRELOAD" in os.environ
os.environ["GPT2C_LIBRARY"] = LIB
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402

import gpt2c  # noqa: E402
import logging  # noqa: E402

logging.getLogger("gpt2c").setLevel(logging.ERROR)  # transformers' warnings, as gpt2c repeats them
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="gpt2c keeps no per-step scores")
from gpt2c import (AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, GPT2Tokenizer,  # noqa: E402
                   TextIteratorStreamer, TextStreamer, pipeline, set_seed)

try:
    import torch
except ImportError:
    torch = None

results = {"pass": 0, "fail": 0}
PROMPT = "Hello, I'm a language model,"


def check(cond, what):
    results["pass" if cond else "fail"] += 1
    if not cond:
        print("FAIL:", what)


def raises(exc, fn, *args, contains=None, **kwargs):
    """True when fn raises exc (with `contains` in its message)."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        return contains is None or contains in str(e)
    except Exception as e:  # the wrong kind
        print("  raised", type(e).__name__, e)
        return False
    return False


def cli_json(*args):
    # The CLI carries its own sanitizer runtime (clang links it in statically): no preload.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    r = subprocess.run([BIN, "generate", "--json", "--no-stream", *args], capture_output=True, text=True, timeout=300,
                       env=env)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def manifest():
    """REF_DIR's variants: (name, folder, prompt ids, logits file, greedy ids, beams)."""
    out = []
    with open(os.path.join(REF, "manifest.txt")) as f:
        for line in f:
            name, folder, ids, logits, greedy, beams = line.split()
            out.append((name, folder, [int(x) for x in ids.split(",")], logits,
                        [int(x) for x in greedy.split(",")],
                        [] if beams == "-" else [(float(b.split(":")[0]), [int(x) for x in b.split(":")[1].split(",")])
                                                 for b in beams.split(";")]))
    return out


TINY = os.path.join(REF, "tiny-f32")

# ------------------------------------------------------------------ tokenizer

tok = GPT2Tokenizer.from_pretrained(os.path.join(FIXTURES, "gpt2-tokenizer"))
bad = 0
n_cases = 0
with open(os.path.join(FIXTURES, "golden", "tokenizer.jsonl"), encoding="utf-8", newline="\n") as f:
    lines = f.read().split("\n")
for line in lines[1:]:
    if not line:
        continue
    c = json.loads(line)
    n_cases += 1
    if c.get("cat") != "decode":
        text = bytes.fromhex(c["hex"]).decode("utf-8", "surrogatepass")
        if tok(text)["input_ids"] != c["ids"] or tok.encode(text) != c["ids"]:
            bad += 1
            print("  encode", c["i"], tok.encode(text)[:10], c["ids"][:10])
    if tok.decode(c["ids"]) != c["decode"] or tok.decode(c["ids"], clean_up_tokenization_spaces=False) != c["decode_raw"]:
        bad += 1
        print("  decode", c["i"])
    if "decode_skip_special" in c and tok.decode(c["ids"], skip_special_tokens=True,
                                                 clean_up_tokenization_spaces=False) != c["decode_skip_special"]:
        bad += 1
        print("  decode_skip_special", c["i"])
check(n_cases > 200 and bad == 0, f"GPT2Tokenizer: the golden tokenizer cases ({bad} of {n_cases} differ)")

check(tok.vocab_size == 50257 and len(tok) == 50257 and tok.eos_token_id == 50256 and tok.bos_token == "<|endoftext|>"
      and tok.pad_token is None and tok.pad_token_id is None and tok.all_special_ids == [50256],
      "GPT2Tokenizer: sizes and special tokens as transformers has them")
check(tok.convert_ids_to_tokens([15496, 995]) == ["Hello", "\u0120world"] and tok.convert_ids_to_tokens(995) == "\u0120world"
      and tok.convert_tokens_to_ids(["Hello", "\u0120world"]) == [15496, 995] and tok.convert_tokens_to_ids("<|endoftext|>") == 50256
      and tok.convert_tokens_to_ids("no-such-token-here") == 50256 and tok.tokenize(" world") == ["\u0120world"],
      "convert_ids_to_tokens, convert_tokens_to_ids (unknown: the unk id), tokenize")
check(tok.model_max_length == int(1e30), "model_max_length without tokenizer_config.json: transformers' VERY_LARGE_INTEGER")
texts = ["Hello world", "A longer sentence, with more tokens in it than twelve, the length it is cut to."]
check(raises(ValueError, tok, texts, padding=True, contains="Asking to pad but the tokenizer does not have a padding token"),
      "padding without a pad token: transformers' error")
tok.pad_token = tok.eos_token
enc = tok(texts, padding=True, return_tensors="np")
n0, n1 = len(tok.encode(texts[0])), len(tok.encode(texts[1]))
check(enc["input_ids"].shape == (2, n1) and enc["input_ids"].dtype == np.int64 and
      enc.attention_mask[0].tolist() == [1] * n0 + [0] * (n1 - n0) and enc["input_ids"][0, n0:].tolist() == [50256] * (n1 - n0),
      f"padding=True, right side: pad ids and mask ({enc['input_ids'].shape})")
tok.padding_side = "left"
enc = tok(texts, padding="max_length", max_length=12, truncation=True)
check(enc["input_ids"][0][:12 - n0] == [50256] * (12 - n0) and enc["attention_mask"][0] == [0] * (12 - n0) + [1] * n0 and
      len(enc["input_ids"][1]) == 12 and enc["input_ids"][1] == tok.encode(texts[1])[:12],
      "padding='max_length' on the left, truncation to max_length")
check(tok(texts[1], max_length=3)["input_ids"] == tok.encode(texts[1])[:3], "max_length alone truncates")
padded = tok.pad([{"input_ids": [1, 2]}, {"input_ids": [3]}], return_tensors="np")
check(padded["input_ids"].tolist() == [[1, 2], [50256, 3]] and padded["attention_mask"].tolist() == [[1, 1], [0, 1]],
      "pad() a list of encodings, on the left")
one = tok(PROMPT, return_tensors="np")
check(one["input_ids"].shape == (1, 8) and tok(PROMPT)["input_ids"] == one["input_ids"][0].tolist() and
      set(one.keys()) == {"input_ids", "attention_mask"}, "one text: lists, or (1, n) tensors with return_tensors")
check(raises(ValueError, tok, texts, return_tensors="np", contains="Unable to create tensor"),
      "tensors of unequal lengths without padding: refused")
check(tok.batch_decode([[15496, 11], [50256, 995]], skip_special_tokens=True) == ["Hello,", " world"], "batch_decode")
if torch is not None and not SANITIZED:
    pt = tok(PROMPT, return_tensors="pt")
    check(isinstance(pt["input_ids"], torch.Tensor) and pt["input_ids"].dtype == torch.int64 and
          tok.decode(pt["input_ids"][0]) == PROMPT, "return_tensors='pt': int64 tensors; decode takes a tensor")
check(raises(TypeError, tok.decode, "not ids") and raises(ValueError, tok.decode, [10 ** 12]) and
      raises(TypeError, tok, 42), "wrong types and out-of-range ids: exceptions")
t2 = GPT2Tokenizer.from_pretrained(os.path.join(FIXTURES, "gpt2-tokenizer"))
t2.close()
check(raises(ValueError, t2.encode, "x", contains="closed") and raises(ValueError, t2.decode, [1], contains="closed"),
      "a closed tokenizer raises instead of crashing")
check(raises(OSError, GPT2Tokenizer.from_pretrained, "/nonexistent/folder", local_files_only=True),
      "a missing tokenizer: OSError")

# The other families' tokenizers (AutoTokenizer on their files): the golden cases whose
# references agree (shared; skipped without it).
for name in ("gpt-neox", "opt-synthetic", "bloom-synthetic", "starcoder-synthetic", "codegen"):
    gfile = os.path.join(GOLDEN, "arch-tokenizers", name + ".jsonl")
    folder = os.path.join(GOLDEN, "..", "tokenizers", name)
    if not os.path.exists(gfile):
        print(f"skipped: {gfile} is absent (../shared not here)")
        continue
    at = AutoTokenizer.from_pretrained(folder)
    bad = checked = 0
    with open(gfile, encoding="utf-8", newline="\n") as f:
        for line in f.read().split("\n")[1:]:
            try:
                c = json.loads(line)
            except ValueError:
                continue  # the few records split at a raw U+2028 (see test_tokenizer.c)
            if c.get("agree") is False or "ids" not in c:
                continue
            checked += 1
            ok = at.decode(c["ids"], clean_up_tokenization_spaces=False) == c["decode"] and \
                at.decode(c["ids"], skip_special_tokens=True, clean_up_tokenization_spaces=False) == c["decode_skip_special"]
            if "hex" in c:
                text = bytes.fromhex(c["hex"]).decode("utf-8", "surrogatepass")
                ok = ok and at(text)["input_ids"] == c["ids"] and \
                    at.encode(text, add_special_tokens=False) == c["ids_no_special"]
            bad += not ok
    check(checked > 50 and bad == 0, f"AutoTokenizer {name} ({type(at).__name__}): {bad} of {checked} golden cases differ")

# --------------------------------------------------------- models: references

for name, folder, ids, logits_file, greedy, beams in manifest():
    if name.endswith("-q8"):
        continue  # load-time conversions: test_reference covers them (the -long prompts run in several chunks)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ref = np.fromfile(logits_file, dtype=np.float32).reshape(len(ids), -1)
    out = model(np.array([ids]))
    worst = float(np.abs(out.logits[0] - ref).max())
    check(out.logits.shape == (1, len(ids), ref.shape[1]) and worst <= 1e-4,
          f"{name}: model(input_ids).logits against the numpy reference ({worst:.2e})")
    seq = model.generate(np.array([ids]), max_new_tokens=len(greedy), do_sample=False)
    check(isinstance(seq, np.ndarray) and seq[0].tolist() == ids + greedy, f"{name}: greedy generate()")
    if beams:
        r = model.generate([ids], max_new_tokens=len(beams[0][1]), num_beams=3, num_return_sequences=2,
                           output_scores=True, return_dict_in_generate=True, eos_token_id=None)
        got = [row[len(ids):] for row in r.sequences]
        check(got == [b[1] for b in beams] and all(abs(float(s) - b[0]) < 1e-4 for s, b in zip(r.sequences_scores, beams)),
              f"{name}: beam search sequences and sequences_scores ({got} {list(r.sequences_scores)})")
    # The loss against a cross-entropy computed here from the reference logits.
    x = ref[:-1].astype(np.float64)
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    want = float(np.mean(lse - x[np.arange(len(ids) - 1), ids[1:]]))
    got = float(model(input_ids=[ids], labels=[ids]).loss)
    check(abs(got - want) <= 1e-4, f"{name}: loss with labels ({got} vs {want})")
    model.close()

model = GPT2LMHeadModel.from_pretrained(TINY)
tiny_ids = manifest()[0][2]

# output_scores: each step's processed scores, whose best is the chosen token (greedy).
r = model.generate([tiny_ids], max_new_tokens=5, output_scores=True, return_dict_in_generate=True, pad_token_id=50256)
logits = model([tiny_ids]).logits[0, -1]
check(type(r).__name__ == "GreedySearchDecoderOnlyOutput" and len(r.scores) == 5 and r.scores[0].shape == (1, 50257) and
      [int(s[0].argmax()) for s in r.scores] == list(r.sequences[0][len(tiny_ids):]) and
      float(np.abs(r.scores[0][0] - logits).max()) < 1e-5, "output_scores, greedy: the processed scores of each step")
ts = model.compute_transition_scores(r.sequences, r.scores, normalize_logits=True)
full = model([list(r.sequences[0])]).logits[0].astype(np.float64)
lsm = full - full.max(-1, keepdims=True) - np.log(np.exp(full - full.max(-1, keepdims=True)).sum(-1, keepdims=True))
want = [lsm[len(tiny_ids) - 1 + j, r.sequences[0][len(tiny_ids) + j]] for j in range(5)]
check(ts.shape == (1, 5) and float(np.abs(ts[0] - np.array(want)).max()) < 1e-4,
      "compute_transition_scores(normalize_logits=True): the tokens' log-probabilities, as model() scores them")
r = model.generate([tiny_ids], max_new_tokens=4, do_sample=True, top_k=3, output_scores=True,
                   return_dict_in_generate=True, pad_token_id=50256)
fin = [int(np.isfinite(s[0]).sum()) for s in r.scores]
chosen = [bool(np.isfinite(s[0][t])) for s, t in zip(r.scores, r.sequences[0][len(tiny_ids):])]
check(type(r).__name__ == "SampleDecoderOnlyOutput" and all(n == 3 for n in fin) and all(chosen),
      f"output_scores, sampling: after top_k the rest are -inf ({fin})")

# Seeded sampling equals the CLI's with the same seed; the next call draws anew.
cli = cli_json("-m", TINY, "--ids", ",".join(map(str, tiny_ids)), "--do-sample", "--top-k", "0", "--top-p", "0.9",
               "--max-length", "30", "--num-return-sequences", "5", "--seed", "42")
set_seed(42)
out = model.generate(input_ids=np.array([tiny_ids]), attention_mask=np.ones((1, len(tiny_ids)), dtype=np.int64),
                     max_length=30, temperature=1.0, top_k=0, top_p=0.9, repetition_penalty=1.0, do_sample=True,
                     num_return_sequences=5, pad_token_id=50256)
again = model.generate(input_ids=[tiny_ids], max_length=30, top_k=0, top_p=0.9, do_sample=True,
                       num_return_sequences=5, pad_token_id=50256)
check([list(s[len(tiny_ids):]) for s in out] == [s["token_ids"] for s in cli["sequences"]] and out.shape == (5, 30),
      "set_seed + generate(do_sample, top_p 0.9): the CLI's tokens for the same seed")
check(again != [list(s) for s in out], "the next generate() after set_seed draws anew")
check(raises(ValueError, model.generate, [tiny_ids], num_return_sequences=2, contains="greedy"),
      "greedy with num_return_sequences 2: gpt2c's message as a ValueError")
check(raises(ValueError, model.generate, [tiny_ids], foo=1, contains="model_kwargs` are not used"),
      "an unknown generate() argument: transformers' error")
check(raises(ValueError, model.generate, [[1] * 1100], max_new_tokens=1, contains="context"),
      "a prompt past the context: ValueError naming it")
check(raises(NotImplementedError, model, [[1, 2]], attention_mask=[[0, 1]]), "model() with padding: refused by name")
check(raises(ValueError, GPT2LMHeadModel.from_pretrained, TINY, torch_dtype="int4"), "an unknown torch_dtype")
check(raises(OSError, AutoModelForCausalLM.from_pretrained, "/nonexistent/model", contains="/nonexistent/model"),
      "a missing model: OSError naming it")
m2 = AutoModelForCausalLM.from_pretrained(TINY, torch_dtype="float16")
check(m2.dtype == "f16" and m2.generate([tiny_ids], max_new_tokens=3).__class__ is list, "torch_dtype float16; lists in, lists out")
# compute="bf16" (gpt2c's own argument): the CLI's --compute bf16 tokens, where the CPU has AVX512_BF16.
try:
    mb = AutoModelForCausalLM.from_pretrained(TINY, compute="bf16")
except gpt2c.GPT2CUnsupportedError as e:  # a CPU without the bf16 product refuses it by name
    check("AVX512_BF16" in str(e), "compute='bf16' refused by name without AVX512_BF16")
    mb = None
if mb is not None:
    cli = cli_json("-m", TINY, "--ids", ",".join(map(str, tiny_ids)), "-n", "12", "--compute", "bf16")
    check(mb.compute == "bf16" and model.compute == "f32" and
          mb.generate([tiny_ids], max_new_tokens=12, pad_token_id=50256)[0][len(tiny_ids):] ==
          cli["sequences"][0]["token_ids"], "compute='bf16': the CLI's --compute bf16 tokens")
    mb.close()
check(raises(ValueError, AutoModelForCausalLM.from_pretrained, TINY, compute="f8", contains="compute"),
      "an unknown compute: ValueError naming it")
# Assisted generation: the f16 copy drafts; greedy tokens are generate()'s own, and sampled ones
# the CLI's with the same draft and seed.
plain = model.generate([tiny_ids], max_new_tokens=12, pad_token_id=50256)
check(model.generate([tiny_ids], max_new_tokens=12, pad_token_id=50256, assistant_model=m2) == plain,
      "generate(assistant_model=...) greedy: the tokens without it")
set_seed(5)
drafted = model.generate([tiny_ids], max_new_tokens=12, do_sample=True, top_k=0, assistant_model=m2, pad_token_id=50256)
cli = cli_json("-m", TINY, "--ids", ",".join(map(str, tiny_ids)), "-n", "12", "--do-sample", "--top-k", "0", "--seed", "5",
               "--draft-dtype", "f16")
check(drafted[0][len(tiny_ids):] == cli["sequences"][0]["token_ids"] and cli["draft"]["proposed"] > 0,
      "generate(assistant_model=..., do_sample) with set_seed: the CLI's --draft-dtype tokens for that seed")
check(raises(TypeError, model.generate, [tiny_ids], assistant_model="gpt2"), "assistant_model must be a model")
# A LoRA adapter written by `gpt2c finetune --lora-rank` (PEFT's layout), loaded as PEFT loads one:
# the merged model generates the CLI's --lora tokens, which are not the base model's.
with tempfile.TemporaryDirectory() as ltmp:
    with open(os.path.join(ltmp, "train.txt"), "w") as f:
        f.write("the cat sat on the mat and the dog sat on the log.\n" * 40)
    adapter = os.path.join(ltmp, "adapter")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    r = subprocess.run([BIN, "finetune", "-m", TINY, "--train", os.path.join(ltmp, "train.txt"), "-o", adapter,
                        "--block-size", "16", "--max-steps", "5", "--lr", "0.05", "--lora-rank", "4",
                        "--validation-split", "0"], capture_output=True, text=True, env=env)
    check(r.returncode == 0, "finetune --lora-rank: " + r.stderr)
    peft = gpt2c.PeftModel.from_pretrained(model, adapter).merge_and_unload()
    lora_ids = peft.generate([tiny_ids], max_new_tokens=10, pad_token_id=50256)
    cli = cli_json("-m", TINY, "--ids", ",".join(map(str, tiny_ids)), "-n", "10", "--greedy", "--lora", adapter)
    check(lora_ids[0][len(tiny_ids):] == cli["sequences"][0]["token_ids"] and
          lora_ids != model.generate([tiny_ids], max_new_tokens=10, pad_token_id=50256),
          "PeftModel.from_pretrained(model, adapter): the CLI's --lora tokens, not the base model's")
    check(raises(TypeError, gpt2c.PeftModel.from_pretrained, "gpt2", adapter), "PeftModel needs a gpt2c model")
    peft.close()
m2.close()
check(raises(ValueError, m2.generate, [tiny_ids], contains="closed") and raises(ValueError, m2, [tiny_ids]),
      "a closed model raises instead of crashing")

# The classic loop feeding past_key_values back gives generate()'s tokens.
cur, past, loop = [tiny_ids], None, []
for _ in range(5):
    o = model(cur, past_key_values=past, use_cache=True)
    past = o.past_key_values
    loop.append(int(o.logits[0, -1].argmax()))
    cur = [[loop[-1]]]
check(loop == list(model.generate([tiny_ids], max_new_tokens=5, pad_token_id=50256)[0][len(tiny_ids):]),
      "model(..., past_key_values=...) in a loop: generate()'s tokens")
check(model.config.pad_token_id is None and model.config.n_layer == 2 and model.config.max_length == 20 and
      model.generation_config.eos_token_id == 50256, "model.config: the file's fields and transformers' defaults")
boolmask = np.ones((1, len(tiny_ids)), dtype=bool)
check(model.generate(np.array([tiny_ids]), attention_mask=boolmask, token_type_ids=np.zeros((1, len(tiny_ids)), dtype=int),
                     max_new_tokens=2, pad_token_id=50256).shape == (1, len(tiny_ids) + 2),
      "a bool attention_mask and all-zero token_type_ids are taken")
tok.pad_token_id = 50256
check(tok.pad_token == "<|endoftext|>" and tok("world", add_prefix_space=True)["input_ids"] == tok(" world")["input_ids"]
      and tok.convert_ids_to_tokens(50256, skip_special_tokens=True) == "<|endoftext|>" and
      raises(ValueError, tok.decode, [15496, -100], contains="-100"),
      "pad_token_id setter, add_prefix_space, one id with skip_special_tokens, decode of -100")

# Streaming: the streamer's pieces add up to the decoded new text.
streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
holder = {}
th = threading.Thread(target=lambda: holder.update(out=model.generate([tiny_ids], max_new_tokens=20, streamer=streamer,
                                                                      pad_token_id=50256)))
th.start()
pieces = list(streamer)
th.join()
check("".join(pieces) == tok.decode(holder["out"][0][len(tiny_ids):], skip_special_tokens=True) and len(pieces) >= 2,
      "TextIteratorStreamer: the pieces add up to the new text")
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    model.generate([tiny_ids], max_new_tokens=6, streamer=TextStreamer(tok), pad_token_id=50256)
check(buf.getvalue() == tok.decode(model.generate([tiny_ids], max_new_tokens=6, pad_token_id=50256)[0]) + "\n",
      "TextStreamer prints prompt and new text, then a newline")
check(raises(ValueError, model.generate, [tiny_ids, tiny_ids], streamer=TextStreamer(tok)),
      "a streamer with a batch: refused")
# A generation that fails ends its stream: the reader in another thread is not left waiting.
streamer = TextIteratorStreamer(tok, timeout=30)
th = threading.Thread(target=lambda: holder.update(err=raises(ValueError, model.generate, [[1] * 1100], streamer=streamer)))
th.start()
pieces = list(streamer)
th.join()
check(holder["err"] and pieces == [""], "a failed generate() ends its stream")


class Closer(TextStreamer):
    """Closes the model from inside the generation it is streaming."""

    def on_finalized_text(self, text, stream_end=False):
        self.tokenizer.closing_model.close()


m3 = GPT2LMHeadModel.from_pretrained(TINY)
tok.closing_model = m3
got3 = m3.generate([tiny_ids], max_new_tokens=3, streamer=Closer(tok), pad_token_id=50256)
check(len(got3[0]) == len(tiny_ids) + 3 and raises(ValueError, m3.generate, [tiny_ids], contains="closed"),
      "close() from a streamer's callback: the generation ends, then the model is gone")

# The GIL is released while the engine runs: another thread counts meanwhile.
big = AutoModelForCausalLM.from_pretrained(os.path.join(REF, "gpt2-f32"))
count = [0]
stop = threading.Event()


def counter():
    while not stop.is_set():
        count[0] += 1


ct = threading.Thread(target=counter)
ct.start()
time.sleep(0.05)
c0 = count[0]
big([list(range(1000, 1600))])
c1 = count[0]
stop.set()
ct.join()
check(c1 - c0 > 1000, f"the GIL is released during a forward pass ({c1 - c0} counts in another thread)")
big.close()

# --------------------------------------------------------- pipeline and snippets

# A "gpt2" checkpoint as the hub has it (config.json's task_specific_params) with the tiny
# weights, in an offline HF cache, so the snippets run unchanged.
tmp = tempfile.mkdtemp(prefix="gpt2c-py-")
try:
    cache = os.path.join(tmp, "hub")
    snap = os.path.join(cache, "models--gpt2", "snapshots", "0" * 40)
    shutil.copytree(TINY, snap)
    with open(os.path.join(snap, "config.json")) as f:
        cfg = json.load(f)
    cfg["task_specific_params"] = {"text-generation": {"do_sample": True, "max_length": 50}}
    with open(os.path.join(snap, "config.json"), "w") as f:
        json.dump(cfg, f)
    os.makedirs(os.path.join(cache, "models--gpt2", "refs"))
    with open(os.path.join(cache, "models--gpt2", "refs", "main"), "w") as f:
        f.write("0" * 40)
    env = dict(os.environ, HF_HUB_CACHE=cache, HF_HUB_OFFLINE="1", PYTHONPATH=os.path.join(ROOT, "python"))

    os.environ.update(HF_HUB_CACHE=cache, HF_HUB_OFFLINE="1")
    generator = pipeline("text-generation", model="gpt2")
    set_seed(42)
    got = generator(PROMPT, max_length=30, num_return_sequences=5)
    cli = cli_json("-m", snap, "--pipeline", "-p", PROMPT, "--max-length", "30", "--num-return-sequences", "5",
                   "--seed", "42")
    check(cli["params"]["do_sample"] is True and [g["generated_text"] for g in got] == [PROMPT + s["text"] for s in cli["sequences"]],
          "pipeline('text-generation', model='gpt2') after set_seed(42): the CLI's --pipeline text for seed 42")
    check(generator(PROMPT, max_new_tokens=4, do_sample=False, return_full_text=False)[0]["generated_text"] ==
          tok.decode(model.generate([tiny_ids[:8]], max_new_tokens=4)[0][8:]), "return_full_text=False: the new text only")
    fixed = pipeline("text-generation", model="gpt2", max_new_tokens=3, do_sample=False)
    check(fixed(PROMPT, batch_size=2)[0]["generated_text"] == tok.decode(model.generate([tiny_ids[:8]], max_new_tokens=3)[0])
          and len(fixed(PROMPT, max_new_tokens=1)[0]["generated_text"]) < len(fixed(PROMPT)[0]["generated_text"]),
          "pipeline(..., max_new_tokens=3, do_sample=False): every call's defaults, a call's own win")
    many = generator(["One", "Two"], max_new_tokens=3, num_return_sequences=2)
    check(len(many) == 2 and all(len(x) == 2 and x[0]["generated_text"].startswith(p) for x, p in zip(many, ["One", "Two"])),
          "a list of prompts: a list of lists")
    pre = generator(PROMPT, prefix="Once upon a time. ", max_new_tokens=3, do_sample=False)[0]["generated_text"]
    want = tok.decode(model.generate([tok.encode("Once upon a time. " + PROMPT)], max_new_tokens=3)[0])
    check(pre == PROMPT + want[len("Once upon a time. " + PROMPT):], "prefix: generated after it, cut from the text")
    check(generator(PROMPT, max_new_tokens=2, return_tensors=True)[0]["generated_token_ids"][:8] == tiny_ids[:8],
          "return_tensors=True: the token ids")
    check(raises(NotImplementedError, pipeline, "summarization", model="gpt2"), "another task: refused by name")

    SNIPPETS = {
        "pipeline": """
from gpt2c import pipeline, set_seed
generator = pipeline('text-generation', model='gpt2')
set_seed(42)
print(generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5))
""",
        "top_p": """
from gpt2c import GPT2Tokenizer, GPT2LMHeadModel
tokenizer = GPT2Tokenizer.from_pretrained('gpt2')
model = GPT2LMHeadModel.from_pretrained('gpt2')
encoded_input = tokenizer("Hello, I'm a language model,", return_tensors='pt')
out = model.generate(input_ids=encoded_input['input_ids'], attention_mask=encoded_input['attention_mask'],
                     max_length=30, temperature=1.0, top_k=0, top_p=0.9, repetition_penalty=1.0,
                     do_sample=True, num_return_sequences=5)
for seq in out:
    print(tokenizer.decode(seq.tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=True))
""",
    }
    SNIPPETS["top_k"] = SNIPPETS["top_p"].replace("temperature=1.0, top_k=0, top_p=0.9",
                                                  "temperature=0.85, top_k=50, top_p=0.99")
    # numpy is optional: tokenizing, generate() on lists and the pipeline run without it.
    code = ("import sys\nsys.modules['numpy'] = None  # import numpy now fails\n"
            "from gpt2c import pipeline, set_seed, GPT2Tokenizer, GPT2LMHeadModel\n"
            "tok = GPT2Tokenizer.from_pretrained('gpt2'); m = GPT2LMHeadModel.from_pretrained('gpt2')\n"
            "print(m.generate([tok('Hello')['input_ids']], max_new_tokens=3, pad_token_id=50256)[0])\n"
            "set_seed(1); print(pipeline('text-generation', model='gpt2')('Hi', max_new_tokens=3)[0]['generated_text'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    lines = r.stdout.strip().split("\n")
    check(r.returncode == 0 and lines[0] == str([15496] + list(model.generate([[15496]], max_new_tokens=3,
                                                                            pad_token_id=50256)[0][1:])) and
          lines[1].startswith("Hi"), f"without numpy: tokenizer, generate() on lists, pipeline ({r.stdout} {r.stderr[-300:]})")
    if torch is not None and not SANITIZED:
        code = ("import torch\nfrom gpt2c import GPT2LMHeadModel\nm = GPT2LMHeadModel.from_pretrained('gpt2')\n"
                "run = lambda: m.generate([[15496, 11]], do_sample=True, max_new_tokens=8, pad_token_id=50256)\n"
                "torch.manual_seed(3); a = run(); b = run(); torch.manual_seed(3); c = run()\n"
                "print(a == c, a != b)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        check(r.stdout.strip() == "True True", f"torch.manual_seed alone makes sampling repeat ({r.stdout} {r.stderr[-300:]})")
    for name, code in SNIPPETS.items():
        if "return_tensors='pt'" in code and (torch is None or SANITIZED):
            code = code.replace("return_tensors='pt'", "return_tensors='np'")
            print(f"snippet {name}: numpy tensors (torch {'under sanitizers' if torch else 'absent'})")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        lines = r.stdout.strip().split("\n")
        if name == "pipeline":
            ok = r.returncode == 0 and lines[0].startswith("[{'generated_text': \"Hello, I'm a language model,") and \
                lines[0].count("generated_text") == 5 and eval(lines[0]) == got
        else:
            ok = r.returncode == 0 and len(lines) == 5 and all(s.startswith(PROMPT) for s in lines)
        check(ok, f"the {name} snippet runs unchanged but for the import ({r.returncode}: {r.stderr[-300:]})")

    # pip install ./python into a fresh venv, offline; the installed package carries the library.
    venv = os.path.join(tmp, "venv")
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], capture_output=True, text=True)
    if r.returncode:
        check(False, f"python3 -m venv (python3-venv): {r.stderr[-300:]}")
    else:
        penv = dict(env, GPT2C_BUILD=BUILD)
        penv.pop("PYTHONPATH")
        penv.pop("GPT2C_LIBRARY", None)
        r = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--no-index", "--quiet",
                            os.path.join(ROOT, "python")], capture_output=True, text=True, env=penv, timeout=600)
        check(r.returncode == 0, f"pip install --no-index ./python ({r.stderr[-500:]})")
        code = SNIPPETS["pipeline"] + "import gpt2c._lib as l; print(l.lib._name)\n"
        r = subprocess.run([os.path.join(venv, "bin", "python"), "-c", code], capture_output=True, text=True,
                           env=penv, cwd=tmp, timeout=300)
        lines = r.stdout.strip().split("\n")
        check(r.returncode == 0 and len(lines) == 2 and eval(lines[0]) == got and lines[1].startswith(venv),
              f"the installed package runs the snippet with its own library ({r.stdout[-200:]} {r.stderr[-300:]})")
    shutil.rmtree(os.path.join(ROOT, "python", "build"), ignore_errors=True)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
    for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE"):
        os.environ.pop(k, None)

# ------------------------------------------------------- transformers' goldens

gtiny = os.path.join(GOLDEN, "checkpoints", "tiny")
if not os.path.isdir(gtiny):
    print(f"skipped: {gtiny} is absent (../shared not here): transformers' continuations")
else:
    with open(os.path.join(FIXTURES, "golden", "tiny.json")) as f:
        gold = json.load(f)
    gtok = AutoTokenizer.from_pretrained(gtiny)
    gmodel = AutoModelForCausalLM.from_pretrained(gtiny)
    bad = []
    for key, p in gold["prompts"].items():
        g = p.get("greedy")
        if not g or not p["text"]:
            continue
        enc = gtok(p["text"], return_tensors="np")
        out = gmodel.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                              max_new_tokens=g["max_new_tokens"], do_sample=False)
        if enc["input_ids"][0].tolist() != p["input_ids"] or out[0][len(p["input_ids"]):].tolist()[:len(g["new_ids"])] != g["new_ids"]:
            bad.append(key)
        elif "full_text" in g and gtok.decode(out[0]) != g["full_text"]:
            bad.append(key + " (text)")
    check(not bad, f"greedy generate() equals transformers' continuations on the golden prompts ({bad})")
    b = gold["batch"]
    out = gmodel.generate(input_ids=np.array(b["input_ids"]), attention_mask=np.array(b["attention_mask"]),
                          max_new_tokens=b["max_new_tokens"], do_sample=False)
    T = len(b["input_ids"][0])
    check(out[:, :T].tolist() == b["input_ids"] and out[:, T:].tolist() == b["new_ids"],
          "a left-padded batch with attention_mask: transformers' sequences")
    for arch in sorted(os.listdir(os.path.join(FIXTURES, "golden", "arch"))):
        with open(os.path.join(FIXTURES, "golden", "arch", arch)) as f:
            ag = json.load(f)
        folder = os.path.join(GOLDEN, "checkpoints", "arch", ag["model"])
        am = AutoModelForCausalLM.from_pretrained(folder)
        ab = ag["batch"]
        out = am.generate(input_ids=ab["input_ids"], attention_mask=ab["attention_mask"],
                          max_new_tokens=ab["max_new_tokens"], do_sample=False, pad_token_id=ab["pad_token_id"])
        T = len(ab["input_ids"][0])
        check([o[T:] for o in out] == ab["new_ids"], f"{ag['model']} ({type(am).__name__}): the left-padded batch")
        am.close()

print(f"python: {results['pass']} passed, {results['fail']} failed")
sys.exit(1 if results["fail"] else 0)
