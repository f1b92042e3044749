"""Benchmark runner: `python -m benchmarks.run --suite cpu-smoke`.

Every measurement runs in a fresh worker process (`benchmarks.worker`) because XLA flags,
the fake CPU device count and core pinning must be fixed before jax starts. The runner
collects their JSON, prints the tables and writes one JSON file for the whole suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks import harness
from benchmarks.suites import StepEntry, Suite, get_suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEP_COLUMNS = [
    ("name", "entry"), ("xla_flags", "xla flags"), ("num_devices", "dev"), ("compile_s", "compile s"),
    ("step_median_s", "step s (med)"), ("step_p10_s", "p10"), ("step_p90_s", "p90"),
    ("examples_per_s", "ex/s"), ("examples_per_s_per_device", "ex/s/dev"),
    ("xla_flops", "XLA FLOPs"), ("analytic_flops", "analytic FLOPs"), ("flops_agreement", "XLA/analytic*"),
    ("tflops_per_device", "TFLOP/s/dev"), ("mfu", "MFU"), ("mfu_flops_source", "MFU FLOPs"),
    ("compiled_bytes", "mem (XLA) B"),
    ("peak_bytes_in_use", "mem peak B"), ("e2e_step_median_s", "e2e step s"), ("e2e_examples_per_s", "e2e ex/s"),
]


def _has_torch_peer(python: str) -> bool:
    if python == sys.executable:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision", "lightly"))
    code = "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ('torch','torchvision','lightly')) else 1)"
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


class Runner:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cache: dict[Any, dict[str, Any]] = {}
        self.log_lines: list[str] = []
        # Every worker's result is appended here as it arrives, so a suite cut off by a time
        # limit (a lent GPU's lease) still leaves the entries it finished.
        self.partial_path: str | None = getattr(args, "partial_path", None)
        if self.partial_path:
            os.makedirs(os.path.dirname(os.path.abspath(self.partial_path)), exist_ok=True)
            open(self.partial_path, "w").close()

    def log(self, msg: str) -> None:
        print(msg, flush=True)

    def worker(self, task: str, spec: dict[str, Any], *, xla_flags: str = "", devices: int = 1,
               threads: int = 0, python: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        timeout = timeout or getattr(self.args, "worker_timeout", 900)
        env = dict(os.environ)
        flags = [f for f in (env.get("XLA_FLAGS", ""), xla_flags) if f]
        if devices > 1:
            flags.append(f"--xla_force_host_platform_device_count={devices}")
        env["XLA_FLAGS"] = " ".join(flags)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        spec = {**spec, "_threads": threads, "_peak_tflops": self.args.peak_tflops,
                "_profile_dir": os.path.abspath(p) if (p := getattr(self.args, "profile", None)) else None}
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "result.json")
            t0 = time.perf_counter()
            try:
                proc = subprocess.run([python or sys.executable, "-m", "benchmarks.worker", task, json.dumps(spec), out],
                                      env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                result = {"error": f"timed out after {timeout:.0f} s"}
                self._append_partial(task, result)
                return result
            wall = time.perf_counter() - t0
            if not os.path.exists(out):
                result = {"error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
                self.log(f"  ! {task} failed: {result['error']}")
                self._append_partial(task, result)
                return result
            with open(out) as f:
                result = json.load(f)
        result["worker_wall_s"] = wall
        if "error" in result:
            self.log(f"  ! {task} failed: {result['error']}")
        self._append_partial(task, result)
        return result

    def _append_partial(self, task: str, result: dict[str, Any]) -> None:
        if self.partial_path:
            with open(self.partial_path, "a") as f:
                f.write(json.dumps({"task": task, **result}, default=str) + "\n")

    def step(self, entry: StepEntry) -> dict[str, Any]:
        if entry not in self.cache:
            self.log(f"- step {entry.name} {entry.xla_flags or '(default flags)'} on {entry.devices} device(s)")
            self.cache[entry] = res = self.worker("step", entry.to_dict(), xla_flags=entry.xla_flags,
                                                  devices=entry.devices, threads=entry.threads)
            if "step_median_s" in res:
                mfu = res.get("mfu")
                self.log(f"  = compile {res.get('compile_s', float('nan')):.1f} s, step {res['step_median_s']:.4f} s, "
                         f"{res.get('examples_per_s_per_device', float('nan')):.1f} ex/s/dev"
                         + (f", MFU {mfu:.3f}" if mfu else ""))
        return self.cache[entry]


def run_suite(suite: Suite, args: argparse.Namespace) -> dict[str, Any]:
    r = Runner(args)
    started = time.perf_counter()
    out: dict[str, Any] = {
        "suite": suite.name, "description": suite.description, "commit": harness.git_commit(REPO),
        "date": datetime.date.today().isoformat(), "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "cpu_count": os.cpu_count(),
    }
    sections = set(args.only.split(",")) if args.only else None
    want = lambda s: sections is None or s in sections  # noqa: E731

    if want("steps"):
        out["steps"] = [r.step(e) for e in suite.steps]

    if want("flops"):
        out["flop_checks"] = []
        for e in suite.flop_checks:
            r.log(f"- FLOP check {e.name} (lowered only)")
            out["flop_checks"].append(r.worker("flops", e.to_dict(), devices=e.devices))

    if want("flags") and suite.flag_study_entry is not None:
        out["flag_study"] = []
        for rep in range(args.repeats):
            for label, flags in suite.flag_variants.items():
                e = _flag_entry(suite.flag_study_entry, flags)
                if rep:  # a repeat must not hit the cache
                    e = dataclasses.replace(e, name=f"{e.name}#{rep}")
                res = r.step(e)
                out["flag_study"].append({"variant": label, "repeat": rep, **res})

    if want("conv") and suite.conv_micro:
        out["conv_micro"] = []
        for spec in suite.conv_micro:
            for label in ("default", "ynn_off"):
                flags = suite.flag_variants.get(label, "")
                r.log(f"- conv micro-benchmark {spec} ({label})")
                res = r.worker("conv-micro", spec, threads=2, xla_flags=flags)
                out["conv_micro"].append({**res, "variant": label})
            python = args.peer_python or sys.executable
            if _has_torch_peer(python):
                r.log(f"- conv micro-benchmark {spec} (PyTorch)")
                res = r.worker("peer-torch-conv-micro", spec, threads=2, python=python)
                out["conv_micro"].append({**res, "variant": "pytorch"})

    if want("peers") and suite.peers:
        out["peers"] = run_peers(r, suite, args)

    if want("aug") and suite.aug_rates:
        out["aug_rates"] = run_aug_rates(r, suite, args)

    if want("data"):
        out["data"] = []
        for d in suite.data:
            r.log(f"- data {d.name} workers {list(d.workers)}")
            spec = {**dataclasses.asdict(d), "workers": list(d.workers)}
            out["data"].append(r.worker("data", spec))

    if want("scaling") and (suite.scaling_entry is not None or suite.scaling_entries):
        out["scaling"] = []
        bases = [(suite.scaling_entry, False)] if suite.scaling_entry is not None else []
        for base, limit in bases + [(e, True) for e in suite.scaling_entries]:
            for n in suite.scaling_devices:
                e = scaled_entry(base, n, limit_devices=limit)
                out["scaling"].append({**r.step(e), "mesh_kind": mesh_kind(base)})

    out["total_wall_s"] = time.perf_counter() - started
    return out


def scaled_entry(base: StepEntry, n: int, *, limit_devices: bool) -> StepEntry:
    """`base` on `n` devices: its batch per data x fsdp replica times the replicas (the axis
    given as -1 takes the devices the others leave). `limit_devices`: the first n devices on
    GPUs too (the ViT scaling entries); the older ResNet one keeps fake-CPU-only semantics."""
    mesh = dict(base.mesh)
    fixed = 1
    for size in mesh.values():
        fixed *= size if size > 0 else 1
    mesh = {k: (n // fixed if v == -1 else v) for k, v in mesh.items()}
    replicas = mesh.get("data", 1) * mesh.get("fsdp", 1)
    return dataclasses.replace(base, name=f"{base.name}-x{n}", devices=n, batch=base.batch * replicas,
                               limit_devices=limit_devices)


def mesh_kind(entry: StepEntry) -> str:
    """'data', 'fsdp' or 'tensor': the axis that takes the devices (given as -1)."""
    return next((k for k, v in entry.mesh if v == -1), "fixed")


def run_peers(r: Runner, suite: Suite, args: argparse.Namespace) -> list[dict[str, Any]]:
    python = args.peer_python or sys.executable
    have_torch = _has_torch_peer(python)
    rows = []
    for p in suite.peers:
        row: dict[str, Any] = {"name": p.name, "threads": p.threads, "resolution": p.resolution, "batch": p.batch,
                               "small_image_stem": p.small_image_stem}
        jssl_entry = StepEntry(name=p.name.replace("peer", "jssl"), resolution=p.resolution, batch=p.batch,
                               small_image_stem=p.small_image_stem, warmup=p.warmup, steps=p.steps, threads=p.threads)
        # Same entry as the flag study's default when shapes match: reuse, don't recompile.
        fs = suite.flag_study_entry
        if fs is not None and (fs.resolution, fs.batch, fs.small_image_stem, fs.model, fs.threads) == (
                p.resolution, p.batch, p.small_image_stem, "resnet18", p.threads):
            jssl_entry = _flag_entry(fs, "")
        row["jssl"] = r.step(jssl_entry)
        best = _best_flag_variant(r, jssl_entry, suite)
        if best:
            row["jssl_best_flags"] = best
        if have_torch:
            r.log(f"- peer {p.name}: PyTorch + lightly on {p.threads} cores")
            row["torch"] = r.worker("peer-torch-step", {
                "resolution": p.resolution, "batch": p.batch, "small_image_stem": p.small_image_stem,
                "warmup": p.warmup, "steps": p.steps}, threads=p.threads, python=python)
            if p.breakdown:
                spec = {"resolution": p.resolution, "batch": p.batch, "small_image_stem": p.small_image_stem,
                        "warmup": p.warmup, "steps": p.steps}
                r.log(f"- peer {p.name}: encoder-only breakdown, both sides")
                row["breakdown_torch"] = r.worker("peer-torch-breakdown", spec, threads=p.threads, python=python)
                row["breakdown_jssl"] = r.worker("breakdown", {"name": p.name, **spec}, threads=p.threads)
        else:
            row["torch"] = {"error": f"torch/torchvision/lightly not importable by {python}: pip install -e '.[bench]'"}
        t, j = row["torch"].get("step_median_s"), row["jssl"].get("step_median_s")
        row["step_ratio_jssl_over_torch"] = j / t if t and j else None
        if best and t:
            row["best_step_ratio_jssl_over_torch"] = best["step_median_s"] / t
        rows.append(row)
    return rows


def run_aug_rates(r: Runner, suite: Suite, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every implementation of each entry in its own pinned worker, `rounds` times in turn.

    Each row is the implementation's median round; `ratio_over_lightly` is the median over rounds
    of its rate over lightly's in the same round (runs seconds apart); `rounds` lists every round's
    images/s.
    """
    python = args.peer_python or sys.executable
    have_torch = _has_torch_peer(python)
    rows = []
    for a in suite.aug_rates:
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in a.impls}
        for round_index in range(a.rounds):
            for impl in a.impls:
                spec = {"impl": impl, "resolution": a.resolution, "images": a.images, "batch": a.batch,
                        "threads": a.threads}
                if impl in ("lightly", "torchvision-v2") and not have_torch:
                    res = {"error": f"torch/torchvision/lightly not importable by {python}: pip install -e '.[bench]'"}
                else:
                    r.log(f"- augmentation {a.name} round {round_index + 1}/{a.rounds}: {impl} on {a.threads} core(s)")
                    res = r.worker("aug-rate", spec, threads=a.threads, python=python if impl != "jssl-device" else None)
                    if "images_per_s" in res:
                        r.log(f"  = {res['images_per_s']:.1f} images/s")
                runs[impl].append({**spec, **res})
        lightly = [x.get("images_per_s") for x in runs.get("lightly", [])]
        for impl, results in runs.items():
            rates = [x.get("images_per_s") for x in results]
            ok = [i for i, rate in enumerate(rates) if rate]
            if not ok:
                rows.append({"name": a.name, **results[0], "ratio_over_lightly": None})
                continue
            median = sorted(ok, key=lambda i: rates[i])[len(ok) // 2]
            ratios = [rates[i] / lightly[i] for i in ok if i < len(lightly) and lightly[i]]
            rows.append({"name": a.name, **results[median], "rounds": "/".join(f"{rates[i]:.0f}" for i in ok),
                         "ratio_over_lightly": statistics.median(ratios) if ratios else None})
    return rows


def _flag_entry(entry: StepEntry, flags: str) -> StepEntry:
    """The flag study's entry under `flags`; only the default variant also runs end to end."""
    return dataclasses.replace(entry, xla_flags=flags, e2e_steps=0 if flags else entry.e2e_steps)


def _best_flag_variant(r: Runner, entry: StepEntry, suite: Suite) -> dict[str, Any] | None:
    """The fastest flag variant already measured for this entry's shapes (from the flag study)."""
    best = None
    for e, res in r.cache.items():
        same = (e.resolution, e.batch, e.small_image_stem, e.model, e.threads, e.precision) == (
            entry.resolution, entry.batch, entry.small_image_stem, entry.model, entry.threads, entry.precision)
        if same and res.get("step_median_s") and (best is None or res["step_median_s"] < best["step_median_s"]):
            best = {"xla_flags": e.xla_flags, "step_median_s": res["step_median_s"], "compile_s": res.get("compile_s")}
    return best


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def report(out: dict[str, Any]) -> str:
    parts = [f"suite {out['suite']} | commit {out['commit']} | {out['date']} | {out.get('cpu_count')} CPUs | "
             f"wall {out.get('total_wall_s', 0):.0f} s"]
    if out.get("steps"):
        parts += ["", "Train step (synthetic device-resident batch; e2e = real Grain pipeline)",
                  harness.format_table(out["steps"], STEP_COLUMNS)]
    vit_rows = [row for row in out.get("steps", []) + out.get("flop_checks", []) if "share_attention" in row
                or "analytic_shares" in row]
    if vit_rows:
        rows = [{"name": r["name"], **{f"share_{k}": v for k, v in r.get("analytic_shares", {}).items()},
                 **{k: v for k, v in r.items() if k.startswith("share_")}} for r in vit_rows]
        parts += ["", "ViT step FLOPs by component (analytic shares of the step; attention = projections + "
                  "O(n^2 d) scores/values; rest = patch embedding, heads, probe; see --profile for time)",
                  harness.format_table(rows, [
                      ("name", "entry"), ("share_attention", "attention"), ("share_attention_n2", "of which n^2"),
                      ("share_mlp", "MLP"), ("share_teacher_forward", "teacher fwd"), ("share_rest", "rest")])]
    hlo_rows = [row for row in out.get("steps", []) + out.get("flop_checks", []) if "hlo_mlp_share" in row]
    if hlo_rows:
        parts += ["", "XLA's step FLOPs by layer kind (shares; dots of the lowered HLO by source function, "
                  "elementwise = XLA total - dots; cuDNN attention calls estimated)",
                  harness.format_table(hlo_rows, [
                      ("name", "entry"), ("hlo_attention_proj_share", "attn proj"),
                      ("hlo_attention_n2_share", "attn n^2"),
                      ("hlo_mlp_share", "MLP"), ("hlo_patch_embed_share", "patch embed"),
                      ("hlo_other_dots_share", "other dots"), ("hlo_elementwise_share", "elementwise"),
                      ("hlo_attention_custom_calls", "cuDNN attn calls")])]
    profiled = [row for row in out.get("steps", []) if "profile_dir" in row]
    if profiled:
        parts += ["", "Profiled device time per step (s, from the jax.profiler trace; GPU kernels by name; "
                  "empty on CPU) and the trace directory",
                  harness.format_table(profiled, [
                      ("name", "entry"), ("step_median_s", "step s"), ("profile_device_total_s", "device s"),
                      ("profile_matmul_s", "matmul"), ("profile_attention_s", "attention"),
                      ("profile_collective_s", "collective"), ("profile_copy_s", "copy"), ("profile_other_s", "other"),
                      ("profile_dir", "trace")])]
    if out.get("flop_checks"):
        parts += ["", "FLOP checks (lowered step; per image per view = XLA FLOPs / (batch x views))",
                  harness.format_table(out["flop_checks"], [
                      ("name", "entry"), ("xla_flops", "XLA FLOPs"), ("analytic_flops", "analytic"),
                      ("xla_over_analytic", "XLA/analytic"), ("xla_over_analytic_valid", "XLA/analytic*"),
                      ("xla_flops_per_image_view", "XLA per img-view"),
                      ("analytic_forward_flops_per_image", "fwd per img")])]
    if out.get("flag_study"):
        parts += ["", "XLA CPU flag study (same step, fresh process per variant)",
                  harness.format_table(out["flag_study"], [
                      ("variant", "variant"), ("repeat", "rep"), ("compile_s", "compile s"),
                      ("step_median_s", "step s (med)"), ("step_p10_s", "p10"), ("step_p90_s", "p90"),
                      ("ynn_fusions", "YNN convs"), ("native_convolutions", "Eigen convs"),
                      ("native_lhs_dilated", "of which lhs-dilated"), ("other_library_fusions", "other library fusions"),
                      ("error", "error")])]
    if out.get("conv_micro"):
        rows = [{"shape": c.get("shape"), "variant": c["variant"], **row} for c in out["conv_micro"] for row in c.get("rows", [c])]
        parts += ["", "One convolution, 2 cores: forward / input grad / weight grad (GFLOP/s of useful work)",
                  harness.format_table(rows, [("shape", "conv"), ("variant", "flags"), ("op", "op"), ("lowering", "lowering"),
                                              ("median_s", "median s"), ("gflops_per_s", "GFLOP/s"), ("error", "error")])]
    if out.get("peers"):
        rows = []
        for p in out["peers"]:
            rows.append({
                "name": p["name"], "threads": p["threads"], "jssl_s": p["jssl"].get("step_median_s"),
                "jssl_best_s": p.get("jssl_best_flags", {}).get("step_median_s"),
                "best_flags": p.get("jssl_best_flags", {}).get("xla_flags") or "default",
                "torch_s": p["torch"].get("step_median_s"), "ratio": p.get("step_ratio_jssl_over_torch"),
                "best_ratio": p.get("best_step_ratio_jssl_over_torch"),
                "torch_error": p["torch"].get("error"),
            })
        parts += ["", "jssl vs PyTorch + lightly, SimCLR step on the same cores (step ratio: jssl time / torch "
                  "time, >1 = jssl slower)",
                  harness.format_table(rows, [
                      ("name", "entry"), ("threads", "thr"), ("jssl_s", "jssl step s"), ("torch_s", "torch step s"),
                      ("ratio", "step ratio"), ("jssl_best_s", "jssl best s"), ("best_flags", "best flags"),
                      ("best_ratio", "best ratio"), ("torch_error", "peer error")])]
    breakdown_rows = []
    for p in out.get("peers", []):
        for impl in ("jssl", "torch"):
            b = p.get(f"breakdown_{impl}")
            if b:
                full = p[impl].get("step_median_s")
                fb = b.get("encoder_forward_backward_s")
                breakdown_rows.append({"name": p["name"], "impl": impl, "fwd": b.get("encoder_forward_s"), "fwd_bwd": fb,
                                       "step": full, "rest": full - fb if full and fb else None, "error": b.get("error")})
    if breakdown_rows:
        parts += ["", "Where the step time goes (s): encoder alone on both views, vs the full step; "
                  "rest = heads + loss + optimizer + probe",
                  harness.format_table(breakdown_rows, [("name", "entry"), ("impl", "impl"), ("fwd", "encoder fwd"),
                                                        ("fwd_bwd", "encoder fwd+bwd"), ("step", "full step"),
                                                        ("rest", "rest"), ("error", "error")])]
    if out.get("aug_rates"):
        parts += ["", "Two-view SimCLR augmentation from JPEG bytes, source images/s (2 views each), median "
                  "round; every entry pinned to its thread count; ratio = median over rounds of images/s / "
                  "lightly's in the same round (>1 = faster)",
                  harness.format_table(out["aug_rates"], [
                      ("name", "entry"), ("impl", "impl"), ("threads", "threads"), ("decoder", "decode"),
                      ("device", "augments on"), ("images_per_s", "images/s"), ("images_per_s_per_core", "per core"),
                      ("rounds", "every round"), ("ratio_over_lightly", "vs lightly"), ("compile_s", "compile s"),
                      ("error", "error")])]
    if out.get("data"):
        rows = []
        for d in out["data"]:
            for row in d.get("rows", [{"error": d.get("error")}]):
                rows.append({"name": d.get("name"), **row})
        parts += ["", "Data pipeline: two-view augmentation, source images/s (" +
                  (out["data"][0].get("on_device") or "") + ")",
                  harness.format_table(rows, [("name", "entry"), ("workers", "workers"), ("images_per_s", "images/s"),
                                              ("first_batch_s", "first batch s"), ("error", "error")])]
    if out.get("scaling"):
        parts += ["", "Scaling (data/FSDP: same per-device batch; tensor: same global batch; fake CPU devices "
                  "share the same cores)",
                  harness.format_table(out["scaling"], [
                      ("name", "entry"), ("mesh_kind", "mesh"), ("num_devices", "dev"), ("batch", "global batch"),
                      ("compile_s", "compile s"),
                      ("step_median_s", "step s"), ("examples_per_s", "ex/s"), ("examples_per_s_per_device", "ex/s/dev"),
                      ("flops_agreement", "XLA/analytic*"), ("error", "error")])]
    parts += ["", "* analytic FLOPs counting only kernel taps inside the image (XLA's convention); "
              "'analytic FLOPs' is the textbook count."]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="cpu-smoke", help="cpu-smoke | cpu-full | cpu-vit | gpu | gpu-methods | gpu-vit")
    ap.add_argument("--out", default=None, help="JSON path (default runs/bench/<suite>.json)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s per device for MFU")
    ap.add_argument("--peer-python", default=None, help="python with torch, torchvision, lightly (default: this one)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of the XLA flag study (interleaved)")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="also write a jax.profiler trace of 3 steps of each step entry to DIR/<entry>")
    ap.add_argument("--worker-timeout", type=float, default=900, help="seconds before one worker process is stopped")
    ap.add_argument("--only", default="", help="comma-separated sections: steps,flops,flags,conv,peers,aug,data,scaling")
    args = ap.parse_args(argv)
    suite = get_suite(args.suite)
    path = args.out or os.path.join(REPO, "runs", "bench", f"{suite.name}.json")
    args.partial_path = os.path.splitext(path)[0] + ".partial.jsonl"
    out = run_suite(suite, args)
    text = report(out)
    print("\n" + text)
    harness.write_json(path, {**out, "table": text})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
