"""An independent safetensors reader/writer in numpy, written from the format description
(8-byte little-endian header length, JSON header, raw little-endian data). Reads IN, checks
its header, and writes OUT holding every tensor of IN doubled (as f64, named "<name>.x2")
plus a tensor written here, "from_numpy" = arange(6).reshape(2, 3) as f32."""
import json
import struct
import sys

import numpy as np

NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "BOOL": "?"}


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = body[begin:end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(raw, dtype=NUMPY[info["dtype"]])
        tensors[name] = array.reshape(info["shape"])
    return header, tensors


def write(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()
        dtype = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32"}[array.dtype]
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    header, tensors = read(sys.argv[1])
    assert header.get("__metadata__", {}).get("format") == "pt", header.get("__metadata__")
    out = {f"{name}.x2": array.astype(np.float64) * 2 for name, array in tensors.items()}
    out["from_numpy"] = np.arange(6, dtype=np.float32).reshape(2, 3)
    write(sys.argv[2], out)


if __name__ == "__main__":
    main()
