"""The worker process protocol and the HLO census of convolution lowering."""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks import flops
from benchmarks.run import Runner


def test_census_counts_every_convolution_of_a_strided_conv_grad():
    x = jnp.ones((4, 8, 8, 8))
    w = jnp.ones((3, 3, 8, 8)) * 0.1
    dn = ("NHWC", "HWIO", "NHWC")

    def f(w, x):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)
        y = jax.lax.conv_general_dilated(jax.nn.relu(y), w, (2, 2), "SAME", dimension_numbers=dn)
        return jnp.sum(y**2)

    census = flops.conv_lowering_census(jax.jit(jax.grad(f)).lower(w, x).compile().as_text())
    # Two forwards, two weight grads, one input grad (the first conv's input needs none);
    # the input grad of the strided conv is the lhs-dilated one, wherever it is lowered.
    assert census["ynn_fusions"] + census["native_convolutions"] == 5
    assert census["native_lhs_dilated"] <= 1


def test_worker_process_reports_flops_as_json():
    runner = Runner(argparse.Namespace(peak_tflops=None))
    spec = dict(name="r10", model="resnet10", resolution=16, batch=4, small_image_stem=True)
    result = runner.worker("flops", spec, timeout=120)
    assert "error" not in result, result.get("traceback")
    assert 0.9 < result["xla_over_analytic_valid"] < 1.1
    assert result["worker_wall_s"] > 0


def test_worker_reports_errors_instead_of_crashing():
    runner = Runner(argparse.Namespace(peak_tflops=None))
    result = runner.worker("no-such-task", {}, timeout=60)
    assert "unknown task" in result["error"]


def test_every_worker_result_is_appended_to_the_partial_file_at_once(tmp_path):
    # A suite cut off by a time limit must still leave what it measured: each result is on
    # disk before the next worker starts.
    import json

    partial = tmp_path / "suite.partial.jsonl"
    runner = Runner(argparse.Namespace(peak_tflops=None, partial_path=str(partial)))
    runner.worker("no-such-task", {}, timeout=60)
    assert partial.read_text().count("\n") == 1
    runner.worker("no-such-task", {"x": 1}, timeout=60)
    rows = [json.loads(line) for line in partial.read_text().splitlines()]
    assert [r["task"] for r in rows] == ["no-such-task"] * 2 and all("unknown task" in r["error"] for r in rows)


def test_recount_replaces_an_undercounted_compiled_figure():
    from benchmarks.recount_flops import recount_row

    # An H200 row as recorded before the fix: the compiled count missed the cuDNN convolutions.
    row = {"name": "x", "step_median_s": 0.05, "num_devices": 1, "peak_tflops": 1000.0, "xla_flops": 1e11,
           "mfu": 0.002, "mfu_flops_source": "xla", "analytic_flops_valid": 6e12}
    out = recount_row(row, 6e12)
    assert out["xla_flops_compiled"] == 1e11 and out["xla_flops"] == 6e12
    assert abs(out["tflops_per_device"] - 120.0) < 1e-9 and abs(out["mfu"] - 0.12) < 1e-12
    assert abs(out["flops_agreement"] - 1.0) < 1e-12 and out["step_median_s"] == 0.05
    assert recount_row(row, None)["mfu"] == 0.002  # nothing to recount with: unchanged


def test_aug_rate_runs_both_jssl_paths_through_the_worker(tmp_path):
    # The side-by-side augmentation benchmark's jssl entries, tiny: each decodes JPEGs and makes two
    # views, in a pinned worker process; an unknown implementation is a clear error.
    runner = Runner(argparse.Namespace(peak_tflops=None, profile=None, worker_timeout=300,
                                       partial_path=str(tmp_path / "p.jsonl")))
    for impl in ("jssl-host", "jssl-device"):
        spec = {"impl": impl, "resolution": 32, "images": 4, "batch": 2, "threads": 1}
        res = runner.worker("aug-rate", spec, threads=1)
        assert "error" not in res, res.get("traceback")
        assert res["impl"] == impl and res["threads"] == 1 and res["images_per_s"] > 0
        assert res["images_per_s_per_core"] == res["images_per_s"]
    res = runner.worker("aug-rate", {"impl": "dali", "resolution": 32, "images": 2, "batch": 2, "threads": 1}, threads=1)
    assert "unknown augmentation implementation 'dali'" in res["error"]
