"""Recount a finished suite's step FLOPs from the lowered steps, and MFU from them.

`python -m benchmarks.recount_flops runs/bench/gpu-methods.json [--out FILE]`

Runs measured before `run_step` took XLA's count from the lowered step (commit 372cb3e and
earlier) took it from the compiled executable, whose cost analysis on GPU misses the
convolutions that became cuDNN custom calls: their FLOPs and MFU read about 50x too low. The
lowered step's HLO does not depend on the device it will run on, so this recounts each step
entry's FLOPs in a `flops` worker on the CPU (no GPU needed; nothing is compiled) and recomputes
TFLOP/s and MFU from the measured step times and the recorded peak. Step times are untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from benchmarks import harness
from benchmarks.suites import StepEntry

COLUMNS = [
    ("name", "entry"), ("device_kind", "device"), ("compile_s", "compile s"), ("step_median_s", "step s (med)"),
    ("step_p10_s", "p10"), ("step_p90_s", "p90"), ("examples_per_s_per_device", "ex/s/dev"),
    ("views_per_s_per_device", "views/s/dev"), ("xla_flops", "XLA FLOPs (lowered)"),
    ("xla_flops_compiled", "compiled count"), ("tflops_per_device", "TFLOP/s/dev"), ("mfu", "MFU"),
    ("peak_bytes_in_use", "mem peak B"), ("e2e_step_median_s", "e2e step s"), ("e2e_examples_per_s", "e2e ex/s"),
]


def recount_row(row: dict[str, Any], lowered_flops: float | None) -> dict[str, Any]:
    """`row` with XLA FLOPs from the lowered step and the throughput figures that follow from them."""
    out = dict(row)
    if "xla_flops_compiled" not in out:
        out["xla_flops_compiled"] = row.get("xla_flops")
    if not lowered_flops or not row.get("step_median_s"):
        return out
    devices = row.get("num_devices") or 1
    per_device = lowered_flops / devices
    if row.get("mfu_flops_source") == "analytic" and row.get("analytic_flops"):
        per_device = row["analytic_flops"] / devices  # ViT entries keep their analytic MFU
    achieved = per_device / row["step_median_s"] / 1e12
    out.update(xla_flops=lowered_flops, tflops_per_device=achieved,
               mfu=achieved / row["peak_tflops"] if row.get("peak_tflops") else None,
               flops_recounted="lowered step on CPU (benchmarks.recount_flops)")
    if row.get("analytic_flops_valid"):
        out["flops_agreement"] = lowered_flops / row["analytic_flops_valid"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite_json", help="a suite's JSON (or .partial.jsonl) written by benchmarks.run")
    ap.add_argument("--out", default=None, help="where to write (default: <input>.recounted.json)")
    args = ap.parse_args(argv)
    if args.suite_json.endswith(".jsonl"):
        with open(args.suite_json) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        suite: dict[str, Any] = {"steps": [r for r in rows if r.get("kind") == "step"]}
    else:
        with open(args.suite_json) as f:
            suite = json.load(f)
    from benchmarks.run import Runner

    runner = Runner(argparse.Namespace(peak_tflops=None, worker_timeout=600))
    fields = set(StepEntry.__dataclass_fields__)
    steps = []
    for row in suite.get("steps", []):
        entry = StepEntry.from_dict({k: v for k, v in row.items() if k in fields})
        print(f"- recount {entry.name}", flush=True)
        counted = runner.worker("flops", entry.to_dict(), devices=entry.devices)
        steps.append(recount_row(row, counted.get("xla_flops")))
    suite["steps"] = steps
    suite["table"] = harness.format_table(steps, COLUMNS)
    print("\n" + suite["table"])
    out = args.out or os.path.splitext(args.suite_json)[0] + ".recounted.json"
    harness.write_json(out, suite)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
