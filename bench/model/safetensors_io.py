"""safetensors written and read by hand (the `safetensors` package is not on every machine we train on).

The format: 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape, data_offsets}},
plus "__metadata__"), padded with spaces to a multiple of 8, then the raw little-endian tensor bytes.
Tensors are laid out in name order, as the reference writer does. numpy arrays in and out; torch
callers convert with .numpy() / torch.from_numpy().
"""
import json
import struct

# safetensors dtype name -> numpy dtype name (BF16 has no numpy type and is refused).
DTYPES = {"F16": "float16", "F32": "float32", "I64": "int64", "I32": "int32", "U8": "uint8"}
NAMES = {v: k for k, v in DTYPES.items()}


def save(tensors, path, metadata=None):
    """tensors: {name: numpy array}; writes path."""
    import numpy as np  # imported here so that train.py's torch-free self-test runs without numpy
    header = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype.name not in NAMES:
            raise ValueError(f"{name}: dtype {a.dtype} is not supported by this writer")
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": NAMES[a.dtype.name], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def load(path):
    """{name: numpy array} (copies, writable) and the metadata dict."""
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        dtype = DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{name}: dtype {info['dtype']} is not supported by this reader")
        start, end = info["data_offsets"]
        a = np.frombuffer(raw[base + start:base + end], dtype=np.dtype(dtype).newbyteorder("<"))
        out[name] = a.reshape(info["shape"]).astype(dtype, copy=True)
    return out, metadata
