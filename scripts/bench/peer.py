"""What the PyTorch peers of `switchyard bench` share: read the case list (JSON) on stdin, time
each case with the script's own time_case, and print one JSON line per case with the median
milliseconds, then one line saying how PyTorch ran (version, threads, preload)."""
import json
import os
import sys

import torch


def serve(time_case):
    spec = json.load(sys.stdin)
    torch.set_num_threads(spec["threads"])
    for case in spec["cases"]:
        ms = time_case(case, spec["warmup"], spec["repeats"])
        print(json.dumps({"name": case["name"], "median_ms": ms}), flush=True)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "preload": os.environ.get("LD_PRELOAD", "")}), flush=True)
