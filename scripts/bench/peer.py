"""What the PyTorch peers of `switchyard bench` share: read the case list (JSON) on stdin, time
each case with the script's own time_case, and print one JSON line per case with the median
milliseconds (or, when time_case returns a dict, that dict's fields), then one line saying how
PyTorch ran (version, threads, preload, the OpenBLAS build it loaded)."""
import json
import os
import sys

import torch


def blas_library():
    """The OpenBLAS shared library this process loaded ('' if none): says openmp or pthread."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "libopenblas" in line:
                return line.split()[-1]
    return ""


def serve(time_case):
    spec = json.load(sys.stdin)
    torch.set_num_threads(spec["threads"])
    for case in spec["cases"]:
        result = time_case(case, spec["warmup"], spec["repeats"])
        row = result if isinstance(result, dict) else {"median_ms": result}
        print(json.dumps({"name": case["name"], **row}), flush=True)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "preload": os.environ.get("LD_PRELOAD", ""), "blas": blas_library()}), flush=True)
