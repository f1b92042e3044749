"""Where the device time of a profiled step goes: a summary of a `jax.profiler` trace.

`step.profile_trace` writes a trace (`*.trace.json.gz`, Chrome trace format) of a few steps;
this sums the durations of the kernels that ran on each GPU by kind, read from the kernel or
HLO op name: attention (cuDNN fused attention, flash kernels), matmuls (cuBLAS / CUTLASS
GEMMs), collectives (NCCL), copies, and everything else (XLA's elementwise and reduction
fusions: LayerNorm, GELU, softmax outside fused attention, the optimizer). The name patterns
are those of CUDA kernels; on a CPU trace there are no device processes and the summary is
empty (the trace itself still opens in TensorBoard's profile plugin or Perfetto).

Matmuls are not split into attention projections vs MLP here (kernel names do not say which
layer launched them); the analytic component shares in the report give that split in FLOPs.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re

KINDS = (
    ("attention", re.compile(r"fmha|flash|attention|cudnn.*(sdpa|mha)", re.I)),
    ("collective", re.compile(r"nccl|all-reduce|all-gather|reduce-scatter|all-to-all|collective", re.I)),
    ("matmul", re.compile(r"gemm|cublas|cutlass|xmma|matmul|dot", re.I)),
    ("copy", re.compile(r"memcpy|memset|copy", re.I)),
)


def kernel_kind(name: str) -> str:
    """The kind of one device event, from its kernel name and HLO op name (joined)."""
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def summarize_trace(directory: str, *, steps: int) -> dict[str, float]:
    """Device seconds per step by kind (`<kind>_s`), over every GPU in the newest trace under
    `directory`, divided by `steps` and by the number of GPUs; `{}` when there is no trace or it
    has no device events (CPU)."""
    files = sorted(glob.glob(os.path.join(directory, "**", "*.trace.json.gz"), recursive=True), key=os.path.getmtime)
    if not files:
        return {}
    with gzip.open(files[-1], "rt") as f:
        events = json.load(f).get("traceEvents", [])
    devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
               and str(e.get("args", {}).get("name", "")).startswith("/device:GPU")}
    if not devices:
        return {}
    totals: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("ph") != "X" or e.get("pid") not in devices or "dur" not in e:
            continue
        args = e.get("args") or {}
        label = " ".join(str(x) for x in (e.get("name", ""), args.get("hlo_op", ""), args.get("long_name", "")))
        totals[kernel_kind(label)] += float(e["dur"]) * 1e-6  # trace durations are microseconds
    scale = 1.0 / (steps * len(devices))
    out = {f"{k}_s": v * scale for k, v in sorted(totals.items())}
    out["device_total_s"] = sum(totals.values()) * scale
    return out
