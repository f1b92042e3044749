"""Benchmark harness tests: FLOP counting, timing that excludes compilation, report output."""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import flops, harness
from benchmarks.run import report
from benchmarks.suites import StepEntry, get_suite


def test_xla_flops_of_a_matmul_is_2mnk():
    m, n, k = 64, 48, 32
    f = jax.jit(lambda a, b: a @ b)
    a, b = jnp.ones((m, k)), jnp.ones((k, n))
    assert flops.xla_flops(f.lower(a, b)) == pytest.approx(2 * m * n * k, rel=0.01)
    assert flops.xla_flops(f.lower(a, b).compile()) == pytest.approx(2 * m * n * k, rel=0.01)


def test_xla_flops_accepts_dict_or_list():
    class Fake:
        def __init__(self, value):
            self.value = value

        def cost_analysis(self):
            return self.value

    assert flops.xla_flops(Fake({"flops": 10.0})) == 10.0
    assert flops.xla_flops(Fake([{"flops": 10.0}, {"flops": 5.0}])) == 15.0
    assert flops.xla_flops(Fake(None)) is None


def test_conv_taps_padding_aware():
    # 3x3 conv, pad 1, on a 1x1 input: only the centre tap is valid.
    assert flops._taps(1, 3, 1, valid_only=True) == 1
    assert flops._taps(1, 3, 1, valid_only=False) == 3
    # 7 wide, stride 2 -> 4 outputs; the first and last lose one tap each to padding.
    assert flops._taps(7, 3, 2, valid_only=True) == 4 * 3 - 2


def test_analytic_resnet50_forward_is_4_1_gmacs():
    from benchmarks.step import entry_config

    config = entry_config(StepEntry(name="r50", model="resnet50", resolution=224, batch=1))
    counts = flops.analytic_step_flops(config, (224, 224, 3))
    assert counts["backbone_forward_flops_per_image"] / 2 == pytest.approx(4.1e9, rel=0.01)


def test_analytic_matches_xla_on_a_small_resnet():
    from benchmarks.step import entry_config, synthetic_batch

    from jssl import sharding
    from jssl.train import build_experiment

    # Convs must dominate for the comparison to mean anything: resnet_mini's 16 channels are
    # so narrow that BatchNorm and the optimizer are a sixth of its FLOPs.
    entry = StepEntry(name="r10", model="resnet10", resolution=16, batch=4, small_image_stem=True)
    config = entry_config(entry)
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    exp = build_experiment(config, image_shape=(16, 16, 3), mesh=mesh)
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in synthetic_batch(entry, exp.view_augmentations).items()}
    xla = flops.xla_flops(exp.train_step.lower(exp.abstract_state, abstract))
    analytic = flops.analytic_step_flops(config, (16, 16, 3))["train_flops_valid"]
    assert xla == pytest.approx(analytic, rel=0.10)


def test_timing_excludes_compilation():
    """A function whose compile is slow (a big unrolled graph) but whose run is fast."""

    def slow_to_compile(x):
        for i in range(300):
            x = jnp.sin(x) * (1.0 + i * 1e-6)
        return x

    x = jnp.ones((8,))
    compiled, times = harness.timed_compile(jax.jit(slow_to_compile), x)
    step_times = harness.time_calls(lambda: compiled(x), warmup=1, steps=5)
    assert times["compile_s"] > 0
    assert max(step_times) < times["compile_s"]
    assert np.median(step_times) < 0.1 * times["compile_s"]


def test_time_calls_measures_each_call_and_skips_warmup():
    calls = []

    def fn():
        calls.append(None)
        time.sleep(0.3 if len(calls) == 1 else 0.02)  # the first (warm-up) call is slow
        return 0

    times = harness.time_calls(fn, warmup=1, steps=3, sync=lambda r: r)
    assert len(calls) == 4 and len(times) == 3
    assert all(0.015 < t < 0.25 for t in times)


def test_percentiles_and_summary():
    s = harness.summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["median_s"] == 3.0
    assert s["p10_s"] == pytest.approx(1.4)
    assert s["p90_s"] == pytest.approx(4.6)


def test_peak_tflops_detection():
    assert harness.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.0
    assert harness.peak_tflops("NVIDIA H200", "bfloat16") == 989.0
    assert harness.peak_tflops("cpu", "float32") is None
    assert harness.peak_tflops("cpu", "float32", override=1.5) == 1.5


def test_table_and_json_output(tmp_path):
    out = {
        "suite": "t", "commit": "abc", "date": "2026-11-23", "cpu_count": 2, "total_wall_s": 1.0,
        "steps": [{"name": "e", "step_median_s": 1.25, "examples_per_s": 25.6, "mfu": None, "xla_flops": 1.7e10}],
        "peers": [{"name": "p", "threads": 2, "jssl": {"step_median_s": 2.0}, "torch": {"step_median_s": 1.0},
                   "step_ratio_jssl_over_torch": 2.0}],
        "aug_rates": [{"name": "a", "impl": "jssl-device", "threads": 1, "decoder": "PIL", "images_per_s": 30.0,
                       "images_per_s_per_core": 30.0, "ratio_over_lightly": 1.5}],
        "data": [{"name": "d", "rows": [{"workers": 0, "images_per_s": 100.0}], "on_device": "none"}],
    }
    text = report(out)
    lines = text.splitlines()
    header = next(l for l in lines if l.startswith("entry") and "step s (med)" in l)
    assert "ex/s/dev" in header and "MFU" in header
    assert "1.250" in text and "1.7e+10" in text and "n/a" in text
    assert any(l.startswith("p ") and "2.000" in l for l in lines)
    aug_header = next(l for l in lines if l.startswith("entry") and "vs lightly" in l)
    assert "threads" in aug_header and "per core" in aug_header
    assert any(l.startswith("a ") and "jssl-device" in l and "1.500" in l for l in lines)
    path = tmp_path / "r.json"
    harness.write_json(str(path), {**out, "table": text})
    assert json.loads(path.read_text())["steps"][0]["step_median_s"] == 1.25


def test_suites_are_well_formed():
    suite = get_suite("cpu-smoke")
    assert suite.steps and suite.peers and suite.data and suite.flag_variants["default"] == ""
    # The augmentation comparison names lightly and torchvision beside both jssl paths, one core each.
    one_core = [a for a in suite.aug_rates if a.threads == 1]
    assert one_core and {"jssl-host", "jssl-device", "lightly", "torchvision-v2"} <= set(one_core[0].impls)
    assert StepEntry.from_dict(suite.steps[0].to_dict()) == suite.steps[0]
    with pytest.raises(ValueError, match="unknown suite"):
        get_suite("nope")


def test_aug_rates_run_in_rounds_and_compare_each_round_with_lightly(monkeypatch):
    # Round 2 ran while the machine was twice as slow for everyone: per-round ratios stay 2.0
    # where a ratio of the two medians could be anything from 1 to 4.
    import argparse

    from benchmarks import run as bench_run
    from benchmarks.suites import AugRateEntry, Suite

    rates = {"jssl-host": [200.0, 100.0, 220.0], "lightly": [100.0, 50.0, 110.0]}
    calls = []

    class FakeRunner:
        def log(self, message):
            pass

        def worker(self, kind, spec, threads, python=None):
            calls.append(spec["impl"])
            return {"images_per_s": rates[spec["impl"]][sum(c == spec["impl"] for c in calls) - 1]}

    monkeypatch.setattr(bench_run, "_has_torch_peer", lambda python: True)
    suite = Suite(name="t", description="", aug_rates=[AugRateEntry(name="a", impls=("jssl-host", "lightly"), rounds=3)])
    rows = bench_run.run_aug_rates(FakeRunner(), suite, argparse.Namespace(peer_python=None))
    assert calls == ["jssl-host", "lightly"] * 3  # interleaved, not one implementation's rounds in a row
    host = next(r for r in rows if r["impl"] == "jssl-host")
    assert host["images_per_s"] == 200.0 and host["rounds"] == "200/100/220"  # the median round
    assert host["ratio_over_lightly"] == pytest.approx(2.0)
