"""Timing, statistics, device peaks, memory and report output shared by every benchmark.

Timing rule: compile is measured on its own (AOT `lower().compile()`), then `warmup` calls
are run and discarded, then each of `steps` calls is timed separately and synchronised with
`jax.block_until_ready`, so a step's time is its own and compilation never leaks into it.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

# Dense peak FLOP/s per device by (device-kind substring, dtype). Only bf16 is a tensor-core
# peak; MFU is conventionally quoted against it even for fp32 runs (which use TF32 on GPU).
PEAK_TFLOPS = {
    ("H200", "bfloat16"): 989.0,
    ("H100", "bfloat16"): 989.0,
    ("H200", "float32"): 989.0,
    ("H100", "float32"): 989.0,
    ("A100", "bfloat16"): 312.0,
    ("A100", "float32"): 312.0,
}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) without needing numpy."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(times: Sequence[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(times),
        "p10_s": percentile(times, 10),
        "p90_s": percentile(times, 90),
        "n": len(times),
    }


def time_calls(fn: Callable[[], Any], *, warmup: int, steps: int, sync: Callable[[Any], Any] | None = None) -> list[float]:
    """Per-call wall times of `fn()`, after `warmup` untimed calls; `sync` blocks on the result."""
    if sync is None:
        import jax

        sync = jax.block_until_ready
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return times


def timed_compile(jitted, *args) -> tuple[Any, dict[str, float]]:
    """AOT-compiles `jitted` for `args`; returns the executable and trace/lower and compile seconds."""
    _, compiled, times = timed_lower_compile(jitted, *args)
    return compiled, times


def timed_lower_compile(jitted, *args) -> tuple[Any, Any, dict[str, float]]:
    """As `timed_compile`, also returning the lowered step (its cost analysis is taken before
    the backend rewrites convolutions into library calls that the compiled one may not count)."""
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return lowered, compiled, {"lower_s": t1 - t0, "compile_s": t2 - t1}


def peak_tflops(device_kind: str, dtype: str, override: float | None = None) -> float | None:
    """Peak dense TFLOP/s per device: the flag if given, else a known GPU, else None (CPU)."""
    if override:
        return float(override)
    for (kind, dt), peak in PEAK_TFLOPS.items():
        if kind.lower() in device_kind.lower() and dt == dtype:
            return peak
    return None


def memory_report(compiled, device) -> dict[str, float | None]:
    """Peak device memory: the allocator's high-water mark where the backend keeps one (GPU),
    and XLA's static estimate for this executable (arguments + outputs - aliased + temporaries)."""
    out: dict[str, float | None] = {"peak_bytes_in_use": None, "compiled_bytes": None}
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - CPU backends may raise instead of returning None
        stats = None
    if stats:
        out["peak_bytes_in_use"] = float(stats.get("peak_bytes_in_use", 0)) or None
    try:
        m = compiled.memory_analysis()
        if m is not None:
            out["compiled_bytes"] = float(
                m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
            )
    except Exception:  # noqa: BLE001
        pass
    return out


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-2:
            return f"{value:.3g}"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A fixed-width text table; `columns` are (key, header) pairs, missing keys print 'n/a'."""
    cells = [[header for _, header in columns]]
    cells += [[_fmt(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)


def git_commit(repo: str | None = None) -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=repo, check=True
        ).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout: still report
        return "unknown"
