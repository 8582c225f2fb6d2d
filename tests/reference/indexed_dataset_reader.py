"""Reads a Megatron indexed dataset (prefix.bin + prefix.idx, "MMIDIDX" version 1) with numpy,
written from the format description alone, and prints it as one JSON object:
{"dtype_code": c, "sequence_count": S, "document_indices": [...], "documents": [[tokens], ...]}.

.idx, little-endian: b"MMIDIDX\\x00\\x00", u64 version = 1, u8 dtype code, u64 sequence
count S, u64 document-index count D, then S int32 sequence lengths, S int64 byte offsets into
.bin, D int64 document indices (sequence numbers where documents start, ending at S).

usage: indexed_dataset_reader.py PREFIX
"""
import json
import struct
import sys

import numpy as np

DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}


def read(prefix):
    with open(prefix + ".idx", "rb") as f:
        index = f.read()
    magic = index[:9]
    if magic != b"MMIDIDX\x00\x00":
        raise ValueError(f"bad magic {magic!r}")
    (version,) = struct.unpack_from("<Q", index, 9)
    if version != 1:
        raise ValueError(f"version {version}")
    (code,) = struct.unpack_from("<B", index, 17)
    sequence_count, document_count = struct.unpack_from("<QQ", index, 18)
    offset = 34
    lengths = np.frombuffer(index, dtype="<i4", count=sequence_count, offset=offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(index, dtype="<i8", count=sequence_count, offset=offset)
    offset += pointers.nbytes
    document_indices = np.frombuffer(index, dtype="<i8", count=document_count, offset=offset)
    offset += document_indices.nbytes
    if offset != len(index):
        raise ValueError(f".idx has {len(index) - offset} bytes past the document indices")

    dtype = np.dtype(DTYPES[code]).newbyteorder("<")
    tokens = np.memmap(prefix + ".bin", dtype=np.uint8, mode="r")
    documents = []
    for length, pointer in zip(lengths.tolist(), pointers.tolist()):
        raw = tokens[pointer : pointer + length * dtype.itemsize]
        documents.append(np.frombuffer(raw.tobytes(), dtype=dtype).astype(np.int64).tolist())
    return {
        "dtype_code": int(code),
        "sequence_count": int(sequence_count),
        "document_indices": document_indices.tolist(),
        "documents": documents,
    }


if __name__ == "__main__":
    json.dump(read(sys.argv[1]), sys.stdout)
