#!/usr/bin/python3
"""make_cases.py -- writes tests/hostile/files/: malformed checkpoint and tokenizer folders,
each with an expect.json naming the gpt2c command to run, its exit code and the words its
error message must contain. The folders are committed; this script documents how each was
made and remakes them (from a tiny valid checkpoint made by tools/make_checkpoint.py).

The pytorch_model.bin cases (pt-*) are written without torch: the state dict's pickle by
hand, opcode by opcode, as torch.save's pickler (protocol 2) writes it, and the zip archive
by a writer here that can also write wrong offsets and sizes; only the payload pickles of
an attacker's object come from the pickle module. Each folder differs from a checkpoint
gpt2c loads (the same tiny model, as torch.save would write it) by the one defect named.

    /usr/bin/python3 tests/hostile/make_cases.py      # then review `git diff tests/hostile`
"""
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib

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


# --- pytorch_model.bin: torch.save's zip format (FOLDER/data.pkl, FOLDER/data/KEY) and its legacy
# format (pickles of the magic number, the protocol, sys_info, the state dict and the storage keys,
# then each storage as an 8-byte element count and its bytes).
def pt_case(name, words, weights):
    """`gpt2c info -m DIR` on config.json and a hostile pytorch_model.bin must fail with exit 1 and
    a message naming pytorch_model.bin and containing words."""
    case(name, {"command": ["info"], "exit": 1, "words": ["pytorch_model.bin", *words]},
         {"config.json": json.dumps(CONFIG), "pytorch_model.bin": weights})


def p_global(module, name):  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def p_str(s):  # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(i):  # BININT1, BININT or LONG1, as pickle chooses
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if -2**31 <= i < 2**31:
        return b"J" + struct.pack("<i", i)
    b = i.to_bytes((i.bit_length() >> 3) + 1, "little", signed=True)
    return b"\x8a" + bytes([len(b)]) + b


def p_tuple(*items):  # MARK ... TUPLE
    return b"(" + b"".join(items) + b"t"


def p_tensor(key, numel, offset, size, stride, storage="FloatStorage", legacy=False):
    """torch._utils._rebuild_tensor_v2(('storage', torch.FloatStorage, key, 'cpu', numel), offset,
    size, stride, False, OrderedDict()): a view of the storage saved as KEY (the legacy format's
    reference ends with a view, None)."""
    ref = [p_str("storage"), p_global("torch", storage), p_str(key), p_str("cpu"), p_int(numel)] + [b"N"] * legacy
    return (p_global("torch._utils", "_rebuild_tensor_v2") + b"(" + p_tuple(*ref) + b"Q" +
            p_int(offset) + p_tuple(*map(p_int, size)) + p_tuple(*map(p_int, stride)) + b"\x89" +
            p_global("collections", "OrderedDict") + b")R" + b"tR")


def p_state_dict(entries, stop=True):
    """OrderedDict of (name, pickled value) pairs; the pickle ends with STOP unless stop is False."""
    body = b"".join(p_str(k) + v for k, v in entries)
    return b"\x80\x02" + p_global("collections", "OrderedDict") + b")R" + b"(" + body + b"u" + (b"." if stop else b"")


def contiguous(shape):
    stride, acc = [], 1
    for n in reversed(shape):
        stride.insert(0, acc)
        acc *= n
    return stride


# The tiny model's tensors, one storage each, keyed "0", "1", ... as torch.save numbers them.
TENSORS = [(k, v["shape"], DATA[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in HEADER.items()
           if k != "__metadata__"]


def pt_state_dict(edit=None, extra=(), stop=True, legacy=False):
    """The tiny model's state dict pickle; edit(name) may return keyword changes to p_tensor's
    arguments for that tensor (or a whole pickled value, as bytes, in its place)."""
    entries = []
    for i, (k, shape, raw) in enumerate(TENSORS):
        args = dict(key=str(i), numel=len(raw) // 4, offset=0, size=shape, stride=contiguous(shape), legacy=legacy)
        change = edit(k) if edit else None
        if isinstance(change, bytes):
            entries.append((k, change))
            continue
        args.update(change or {})
        entries.append((k, p_tensor(**args)))
    return p_state_dict(entries + list(extra), stop)


def zip_archive(entries, central=None, end=None, zip64_end=False):
    """A zip archive of stored entries [(name, bytes)], each entry's data aligned to 64 bytes by
    an extra field as torch.save pads it. central maps an entry's index to changes to its
    central directory record (offset, size, csize, method, extra; a function of the list of
    records gives a value from another entry's); end changes the
    end-of-central-directory record (count, cd_size, cd_off); zip64_end writes them in a ZIP64
    end record (and its locator) instead, leaving 0xFFFF... in the classic one."""
    out, records = bytearray(), []
    for name, data in entries:
        nb = name.encode()
        pad = -(len(out) + 30 + len(nb) + 4) % 64
        extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        crc = zlib.crc32(data)
        records.append(dict(name=nb, offset=len(out), crc=crc, size=len(data), csize=len(data), method=0, extra=b""))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(data), len(data), len(nb), len(extra))
        out += nb + extra + data
    cd_off = len(out)
    for i, r in enumerate(records):
        for field, value in (central or {}).get(i, {}).items():
            r[field] = value(records) if callable(value) else value
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, r["method"], 0, 0, r["crc"], r["csize"],
                           r["size"], len(r["name"]), len(r["extra"]), 0, 0, 0, 0, r["offset"]) + r["name"] + r["extra"]
    e = dict(count=len(records), cd_size=len(out) - cd_off, cd_off=cd_off)
    e.update(end or {})
    if zip64_end:
        at = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, e["count"], e["count"], e["cd_size"], e["cd_off"])
        out += struct.pack("<IIQI", 0x07064B50, 0, at, 1)
        e = dict(count=0xFFFF, cd_size=0xFFFFFFFF, cd_off=0xFFFFFFFF)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, e["count"], e["count"], e["cd_size"], e["cd_off"], 0)
    return bytes(out)


def pt_zip(pkl, storages=None, **kw):
    """torch.save's zip format: archive/data.pkl, archive/data/KEY per storage, archive/version."""
    storages = storages if storages is not None else [(str(i), raw) for i, (_, _, raw) in enumerate(TENSORS)]
    return zip_archive([("archive/data.pkl", pkl)] + [("archive/data/" + k, v) for k, v in storages] +
                       [("archive/version", b"3\n")], **kw)


MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


def pt_legacy(state_dict=None, magic=MAGIC, sys_info=SYS_INFO, counts=None):
    """torch.save(..., _use_new_zipfile_serialization=False): five pickles, then the storages in
    the order of the key list, each as its element count and bytes; counts replaces a storage's
    element count (by its index)."""
    out = b"".join(pickle.dumps(x, protocol=2) for x in (magic, 1001, sys_info))
    out += state_dict if state_dict is not None else pt_state_dict(legacy=True)
    out += pickle.dumps([str(i) for i in range(len(TENSORS))], protocol=2)
    for i, (_, _, raw) in enumerate(TENSORS):
        out += struct.pack("<Q", (counts or {}).get(i, len(raw) // 4)) + raw
    return out


class Payload:
    """What an attacker pickles: unpickling it calls func(*args)."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


VALID_ZIP = pt_zip(pt_state_dict())
# --- pickle: globals outside the allow-list, called by REDUCE or named by STACK_GLOBAL, are refused.
pt_case("pt-global-os-system", ["refusing to load global 'os.system'"],
        pt_zip(pt_state_dict(extra=[("evil", p_global("os", "system") + p_tuple(p_str("echo pwned")) + b"R")])))
pt_case("pt-global-builtins-eval", ["refusing to load global 'builtins.eval'"],
        pt_zip(b"\x80\x02" + p_global("builtins", "eval") + p_tuple(p_str("__import__('os').system('echo pwned')")) +
               b"R."))
# pickle.dumps writes os.system by its real module's name: posix on Linux. The whole file is the
# pickle, as an attacker's pytorch_model.bin would be: gpt2c reads it as the legacy format.
pt_case("pt-reduce-payload", ["refusing to load global 'posix.system'"],
        pickle.dumps(Payload(os.system, ("echo pwned",)), protocol=2))
# Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE and STACK_GLOBAL, as in data.pkl.
pt_case("pt-stack-global-popen", ["refusing to load global 'subprocess.Popen'"],
        pt_zip(pickle.dumps(Payload(subprocess.Popen, (["echo", "pwned"],)), protocol=4)))
# --- pickle: structure. Nothing recurses, so depth costs no stack: 100000 nested lists are read
# (and refused as not a state dict); memo indices and the end of the pickle are checked.
pt_case("pt-pickle-deep-nesting", ["not a state dict"], pt_zip(b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b"."))
pt_case("pt-pickle-marks-unclosed", ["pickle", "STOP with other than one object"],
        pt_zip(b"\x80\x02" + b"(" * 4000 + b"."))
# Cycles: the state dict holds itself (through the memo) in wte.weight's place, and a list that
# holds itself; the unpickler builds them without following them, and wte.weight is missing.
pt_case("pt-pickle-self-reference", ["wte.weight"],
        pt_zip(pt_state_dict(lambda k: b"h\x00" if k == "wte.weight" else None,
                             extra=[("loop", b"]q\x01h\x01a")]).replace(b")R(", b")Rq\x00(", 1)))
pt_case("pt-memo-huge-index", ["pickle", "memo index"], pt_zip(b"\x80\x02N" + b"r" + struct.pack("<I", 4000000000) + b"."))
pt_case("pt-memo-never-set", ["pickle", "memo lookup of an index never stored"],
        pt_zip(b"\x80\x02N" + b"q\x00" + b"h\x07" + b"."))
pt_case("pt-pickle-no-stop", ["pickle", "without STOP"], pt_zip(pt_state_dict(stop=False)))
pt_case("pt-pickle-opcode-inst", ["pickle", "opcode 0x69 is not allowed"],
        pt_zip(b"\x80\x02(" + b"ios\nsystem\n" + p_str("echo pwned") + b"."))
# --- zip: every offset and size is checked; entries must be stored, apart, and inside the file.
# Entry 1 is archive/data/0 (wte.weight's bytes); entry 2 archive/data/1.
pt_case("pt-zip-overlap", ["overlap"], pt_zip(pt_state_dict(), central={2: {"offset": lambda recs: recs[1]["offset"]}}))
pt_case("pt-zip-cd-outside", ["central directory lies outside the file"],
        pt_zip(pt_state_dict(), end={"cd_off": 0x7FFFFFF0}))
pt_case("pt-zip-local-outside", ["no local header at offset"], pt_zip(pt_state_dict(), central={1: {"offset": 0x7FFFFFF0}}))
deflated = io.BytesIO()
with zipfile.ZipFile(deflated, "w") as z:
    z.writestr(zipfile.ZipInfo("archive/data.pkl", (2020, 1, 1, 0, 0, 0)), pt_state_dict(), zipfile.ZIP_STORED)
    z.writestr(zipfile.ZipInfo("archive/data/0", (2020, 1, 1, 0, 0, 0)), TENSORS[0][2], zipfile.ZIP_DEFLATED)
pt_case("pt-zip-deflated", ["is compressed"], deflated.getvalue())
# Zip bombs' shapes: an entry claiming 4 GiB (in a ZIP64 extra field), a directory claiming 2**60
# entries (in a ZIP64 end record) and one claiming 65534 (in the classic one); none is allocated.
pt_case("pt-zip-entry-4gib", ["runs past the end of the file"],
        pt_zip(pt_state_dict(), central={1: {"size": 0xFFFFFFFF, "csize": 0xFFFFFFFF,
                                             "extra": struct.pack("<HHQQ", 1, 16, 1 << 32, 1 << 32)}}))
pt_case("pt-zip-count-huge", ["zip directory claims 1152921504606846976 entries"],
        pt_zip(pt_state_dict(), end={"count": 1 << 60}, zip64_end=True))
pt_case("pt-zip-count-65534", ["zip directory claims 65534 entries"], pt_zip(pt_state_dict(), end={"count": 65534}))
pt_case("pt-zip-truncated", ["end-of-central-directory", "truncated"], VALID_ZIP[:len(VALID_ZIP) // 2])
pt_case("pt-zip-no-data-pkl", ["data.pkl"], zip_archive([("archive/data/0", TENSORS[0][2])]))
# --- tensors: every view must lie inside its storage's bytes.
pt_case("pt-storage-numel-vs-bytes", ["wte.weight", "elements has only 2048 bytes"],
        pt_zip(pt_state_dict(lambda k: {"numel": 513} if k == "wte.weight" else None)))
pt_case("pt-storage-shorter-than-tensor", ["wte.weight", "storage shorter than its tensor"],
        pt_zip(pt_state_dict(lambda k: {"size": [64, 9], "stride": [9, 1]} if k == "wte.weight" else None)))
pt_case("pt-offset-past-storage", ["wte.weight", "storage shorter than its tensor"],
        pt_zip(pt_state_dict(lambda k: {"offset": 1} if k == "wte.weight" else None)))
pt_case("pt-stride-huge", ["wte.weight", "storage shorter than its tensor"],
        pt_zip(pt_state_dict(lambda k: {"stride": [1 << 62, 1]} if k == "wte.weight" else None)))
# An offset and a stride whose sum of products wraps past 2**64 to an element inside the storage
# (3 * 2**61 + 5 * (2**61 + 1) = 2**64 + 5); reading it went 2**63 bytes past the storage.
pt_case("pt-offset-stride-wrap", ["wpe.weight", "storage shorter than its tensor"],
        pt_zip(pt_state_dict(lambda k: {"offset": 3 << 61, "size": [6], "stride": [(1 << 61) + 1]}
                             if k == "wpe.weight" else None)))
pt_case("pt-size-negative", ["wte.weight", "negative size or stride"],
        pt_zip(pt_state_dict(lambda k: {"size": [-64, 8]} if k == "wte.weight" else None)))
pt_case("pt-offset-negative", ["wte.weight", "negative offset"],
        pt_zip(pt_state_dict(lambda k: {"offset": -8} if k == "wte.weight" else None)))
pt_case("pt-storage-missing", ["storage '99' is referenced but not in the file"],
        pt_zip(pt_state_dict(lambda k: {"key": "99"} if k == "wte.weight" else None)))
# --- the legacy format.
pt_case("pt-legacy-wrong-magic", ["no torch.save magic number"], pt_legacy(magic=MAGIC + 1))
pt_case("pt-legacy-storage-truncated", ["runs past the end", "truncated"],
        pt_legacy(counts={len(TENSORS) - 1: 1 << 40}))
pt_case("pt-legacy-big-endian", ["big-endian"], pt_legacy(sys_info=dict(SYS_INFO, little_endian=False)))
pt_case("pt-legacy-cut-short", ["truncated"], pt_legacy()[:-100])
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w", format=tarfile.USTAR_FORMAT) as t:
    for member, content in (("sys_info", pickle.dumps(SYS_INFO, protocol=2)), ("pickle", pt_state_dict())):
        info = tarfile.TarInfo(member)
        info.size, info.mtime = len(content), 0
        t.addfile(info, io.BytesIO(content))
pt_case("pt-tar-format", ["tar format"], tar.getvalue())
pt_case("pt-empty-file", ["empty"], b"")
pt_case("pt-not-a-checkpoint", ["not a PyTorch checkpoint"], b"GGUF\x03\x00\x00\x00" + bytes(64))


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
