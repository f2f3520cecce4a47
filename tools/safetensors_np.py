"""safetensors_np.py -- read and write the safetensors format with numpy only.

Written from the format's description (8-byte little-endian header length,
JSON header, raw little-endian tensor bytes) so that the project's reference
tools do not depend on the library under test, nor on packages Debian lacks.
"""
import json
import struct

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
           "U8": np.uint8, "I8": np.int8, "BOOL": np.bool_}


def f32_to_bf16_bits(a):
    """Round float32 values to bfloat16 (nearest, ties to even) and return the raw uint16 bits."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write(path, tensors, align=True, metadata=None):
    """tensors: name -> (dtype name, numpy array of the raw element values / bits)."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, arr) in tensors.items():
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    if align:  # the reference writer pads the header so tensor data is 8-byte aligned
        h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    elif (8 + len(h)) % 4 == 0:  # deliberately misalign the data for tests
        h += b" "
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read(path, as_dtype=np.float64):
    """Returns name -> numpy array of as_dtype (F32, F16 and BF16 widen exactly to float32/64)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = raw[base + b:base + e]
        if info["dtype"] == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(buf, dtype="<u2"))
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).astype(as_dtype, copy=False)
    return out
