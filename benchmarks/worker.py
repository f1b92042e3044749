"""One measurement in its own process: `python -m benchmarks.worker TASK SPEC_JSON OUT_JSON`.

XLA reads XLA_FLAGS once, when jax starts, so every flag variant, fake device count and core
pinning needs a fresh process. The parent (`benchmarks.run`) sets the environment; this module
applies core pinning before jax or torch load and writes one JSON result.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def pin_cores(threads: int) -> None:
    """Restricts this process to `threads` cores; XLA and torch size their pools from the mask."""
    if threads and hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(available[:threads]))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)


def main(argv: list[str]) -> int:
    task, spec_json, out_path = argv[1], argv[2], argv[3]
    spec = json.loads(spec_json)
    pin_cores(int(spec.pop("_threads", 0) or 0))
    peak = spec.pop("_peak_tflops", None)
    profile_dir = spec.pop("_profile_dir", None)
    try:
        if task == "step":
            from benchmarks.step import run_step
            from benchmarks.suites import StepEntry

            result = run_step(StepEntry.from_dict(spec), peak, profile_dir=profile_dir)
        elif task == "flops":
            from benchmarks.step import count_flops
            from benchmarks.suites import StepEntry

            result = count_flops(StepEntry.from_dict(spec))
        elif task == "data":
            from benchmarks.data_bench import run_data
            from benchmarks.suites import DataEntry

            result = run_data(DataEntry(**{**spec, "workers": tuple(spec["workers"])}))
        elif task == "conv-micro":
            from benchmarks.conv_micro import conv_micro

            result = conv_micro(**spec)
        elif task == "breakdown":
            from benchmarks.step import run_breakdown
            from benchmarks.suites import StepEntry

            result = run_breakdown(StepEntry.from_dict(spec))
        elif task == "peer-torch-breakdown":
            from benchmarks.peer_torch import torch_breakdown

            result = torch_breakdown(**spec)
        elif task == "peer-torch-conv-micro":
            from benchmarks.peer_torch import torch_conv_micro

            result = torch_conv_micro(**spec)
        elif task == "peer-torch-step":
            from benchmarks.peer_torch import torch_step

            result = torch_step(**spec)
        elif task == "aug-rate":
            from benchmarks.aug_rate import run_aug_rate

            result = run_aug_rate(**spec)
        else:
            raise ValueError(f"unknown task {task!r}")
    except Exception as e:  # noqa: BLE001 - the parent reports the failure in its table
        result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    with open(out_path, "w") as f:
        json.dump(result, f, default=str)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
