"""The `jssl train` command end to end: artifacts, exact resume after SIGKILL, clear failures."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jssl.train import NonFiniteLossError, train
from jssl.train.trainer import prepare_workdir
from tests.conftest import FAST_COMPILE
from tests.io.test_metric_writer import tensorboard_scalars
from tests.train.helpers import REPO, tiny_config

CONFIG = os.path.join(REPO, "configs", "simclr_mnist.py")
# A small but real run: tiny ResNet, embedded MNIST, two fake devices (sharded batch).
TINY = [
    "--config.model.kwargs.width_multiplier=0.5",
    "--config.method.projection_hidden_dim=32",
    "--config.method.projection_dim=16",
    "--config.eval.baselines=false",
    "--config.log_every_steps=1",
]
ENV = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}", "PYTHONPATH": REPO}


def _jssl(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jssl.cli", "train", *args], env=ENV, cwd=REPO, **kwargs)


def _losses(workdir: str) -> dict[int, float]:
    """Step -> loss from metrics.jsonl; a resumed run's later lines overwrite the killed run's."""
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "loss" in record:
                out[record["step"]] = record["loss"]
    return out


@pytest.mark.slow
def test_smoke_run_leaves_checkpoints_events_and_results(tmp_path):
    workdir = str(tmp_path / "run")
    proc = _jssl(
        f"--config={CONFIG}:smoke",
        f"--workdir={workdir}",
        "--config.model.kwargs.width_multiplier=0.5",
        "--config.eval.plots=true",  # off in smoke runs
        "--config.eval.tsne_points=100",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    results = json.load(open(os.path.join(workdir, "results.json")))
    for key in ("ssl", "random_init", "raw_pixels"):
        assert 0.0 <= results[key]["knn"] <= 1.0 and 0.0 <= results[key]["linear_probe"] <= 1.0
    assert results["step"] == 6 and "online_probe" in results["ssl"]
    assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "6"))
    assert sorted(_losses(workdir)) == [2, 4, 6]
    assert "final: kNN" in output
    # Not a terminal: plain progress lines instead of a tqdm bar, one per checkpoint.
    assert "jssl: step 6/6 loss " in output and "jssl: step 3: checkpoint saved in " in output
    for name in ("curves", "features_tsne"):
        assert os.path.getsize(os.path.join(workdir, "plots", f"{name}.png")) > 1000


def sigkill_and_resume(args: list[str], tmp_path, *, total_steps: int, kill_after: int = 8):
    """Runs `jssl train *args` uninterrupted, and again SIGKILLed once checkpoint `kill_after` exists
    and then rerun in the same workdir; returns both runs' step -> loss."""
    reference = str(tmp_path / "reference")
    assert _jssl(*args, f"--workdir={reference}").wait(timeout=300) == 0
    workdir = str(tmp_path / "killed")
    proc = _jssl(*args, f"--workdir={workdir}")
    deadline = time.time() + 240
    while not os.path.isdir(os.path.join(workdir, "checkpoints", str(kill_after))):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(_losses(workdir)) < total_steps, "the run finished before SIGKILL"
    assert _jssl(*args, f"--workdir={workdir}").wait(timeout=300) == 0
    return _losses(reference), _losses(workdir)


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_with_identical_losses(tmp_path):
    args = [f"--config={CONFIG}:smoke", *TINY, "--config.total_steps=24", "--config.checkpoint.every_steps=4"]
    expected, resumed = sigkill_and_resume(args, tmp_path, total_steps=24)
    assert sorted(resumed) == list(range(1, 25))
    # The steps the killed run logged after its checkpoint are superseded, not repeated.
    with open(tmp_path / "killed" / "metrics.jsonl") as f:
        assert sorted(json.loads(line)["step"] for line in f if '"loss"' in line) == list(range(1, 25))
    assert [step for step, _ in tensorboard_scalars(tmp_path / "killed")["loss"]] == list(range(1, 25))
    later = [s for s in range(9, 25)]
    np.testing.assert_array_equal([resumed[s] for s in later], [expected[s] for s in later])


def test_nonfinite_loss_stops_with_the_step(tmp_path):
    config = tiny_config(**{"data.std": (0.0,), "eval.baselines": False})  # divides by zero: inf inputs
    with pytest.raises(NonFiniteLossError, match="non-finite .* at step 0"):
        train(config, str(tmp_path / "nan"))


def test_unwritable_workdir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="is not writable"):
        prepare_workdir(str(blocker / "run"))


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (np.zeros((8, 28), np.uint8), np.zeros(8, np.int32), "images must be uint8"),
        (np.zeros((8, 28, 28, 1), np.float32), np.zeros(8, np.int32), "uint8"),
        (np.zeros((0, 28, 28, 1), np.uint8), np.zeros(0, np.int32), "empty"),
    ],
)
def test_bad_data_is_a_clear_error_before_training(tmp_path, images, labels, match):
    path = tmp_path / "data.npz"
    np.savez(path, images=images, labels=labels)
    config = tiny_config(**{"data.name": "npz", "data.path": str(path)})
    with pytest.raises(ValueError, match=match):
        train(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_summary_prints_what_each_data_kind_measured():
    from jssl.cli import summary_lines

    image = summary_lines({"step": 3, "ssl": {"knn": 0.5, "linear_probe": 0.625, "online_probe": 0.125},
                           "random_init": {"knn": 0.25, "linear_probe": 0.2}, "raw_pixels": {"knn": 0.9}, "eval": {}})
    assert image == ["final: kNN 0.5, linear probe 0.625, online probe 0.125",
                     "baselines: random init: kNN 0.25, linear probe 0.2; raw pixels: kNN 0.9"]
    # Text: no probe at all (an unlabelled corpus), held-out measures and a unigram baseline.
    text = summary_lines({"step": 3, "ssl": {"heldout/perplexity": 61.2, "samples": {"text": "x"}},
                          "unigram": {"perplexity": 384.4}, "eval": {"task": None}})
    assert text == ["final: held-out perplexity 61.2", "baselines: unigram: perplexity 384.4"]
