"""The `jssl train` command end to end: artifacts, exact resume after SIGKILL, clear failures."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
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


def _jssl(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jssl.cli", "train", *args], env=env or ENV, cwd=REPO, **kwargs)


def _losses(workdir: str) -> dict[int, float]:
    """Step -> loss from metrics.jsonl; a resumed run's later lines overwrite the killed run's."""
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            if not line.endswith("\n"):  # a line cut by a kill is not a record
                continue
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


def sigkill_and_resume(args: list[str], tmp_path, tmp_path_factory, *, total_steps: int, kill_after: int = 8):
    """SIGKILLs `jssl train *args` once checkpoint `kill_after` exists and a later step was logged,
    then reruns it in the same workdir. Returns (step -> loss logged before the kill, step -> loss
    after the rerun, the checkpoint step the rerun resumed from).

    The steps between that checkpoint and the kill were computed before the kill, so the rerun's
    losses there are compared with those: no third, uninterrupted run is needed. Both runs compile
    the same step; the second one reads it from the compilation cache.
    """
    env = {**ENV, "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "jax_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # fmt: skip
    workdir = str(tmp_path / "killed")
    checkpoints = os.path.join(workdir, "checkpoints")

    def saved() -> list[int]:
        return sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit()) if os.path.isdir(checkpoints) else []

    proc = _jssl(*args, f"--workdir={workdir}", env=env)
    deadline = time.time() + 240
    while not (saved() and saved()[-1] >= kill_after and max(_losses(workdir), default=0) > saved()[-1]):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _losses(workdir)
    assert max(before) < total_steps, "the run finished before SIGKILL"
    resume_from = saved()[-1]
    assert _jssl(*args, f"--workdir={workdir}", env=env).wait(timeout=300) == 0
    # The steps the killed run logged after its checkpoint are superseded, not repeated.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = [json.loads(line)["step"] for line in f if '"loss"' in line]
    assert len(logged) == len(set(logged)), logged
    tensorboard_steps = [step for step, _ in tensorboard_scalars(tmp_path / "killed")["loss"]]
    assert tensorboard_steps == sorted(set(tensorboard_steps)), tensorboard_steps
    resumed = _losses(workdir)
    assert sorted(resumed) == list(range(1, total_steps + 1))
    redone = [s for s in before if s > resume_from]
    assert redone, f"no step between the checkpoint at {resume_from} and the kill"
    np.testing.assert_array_equal([resumed[s] for s in redone], [before[s] for s in redone])
    return before, resumed, resume_from


@pytest.mark.slow
def test_sigterm_then_rerun_resumes_exactly_and_a_damaged_checkpoint_falls_back(tmp_path, tmp_path_factory):
    """SIGTERM: one line, status 143 and a checkpoint at the step the run stopped at (N); the
    rerun resumes there. A copy of the stopped run whose checkpoint N is damaged sets it aside in
    one line and resumes from the checkpoint before (P), so it passes step N without stopping: its
    steps P+1..N equal the stopped run's and its later steps the resumed run's (no third
    uninterrupted run needed; SIGKILL resume is `tests/methods/test_all_resume.py`'s)."""
    args = [f"--config={CONFIG}:smoke", *TINY, "--config.total_steps=24", "--config.checkpoint.every_steps=4"]
    # The three runs compile the same step: the later ones read it from the cache.
    env = {**ENV, "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "jax_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # fmt: skip
    stopped_run, damaged_run = str(tmp_path / "stopped"), str(tmp_path / "damaged")
    checkpoints = os.path.join(stopped_run, "checkpoints")
    log = tmp_path / "stopped.log"
    with open(log, "w") as f:
        proc = _jssl(*args, f"--workdir={stopped_run}", stderr=f, env=env)
        deadline = time.time() + 240
        while not os.path.isdir(os.path.join(checkpoints, "4")):
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    lines = [line for line in log.read_text().splitlines() if "SIGTERM" in line]
    assert len(lines) == 1 and "Traceback" not in log.read_text(), log.read_text()[-3000:]
    stopped = int(re.search(r"received SIGTERM at step (\d+): ", lines[0]).group(1))
    assert lines[0].endswith(f"saved checkpoint {stopped} in {checkpoints}; rerun the same command to resume")
    assert 4 <= stopped < 24 and max(_losses(stopped_run)) == stopped
    first = _losses(stopped_run)
    shutil.copytree(stopped_run, damaged_run)

    rerun = subprocess.run([sys.executable, "-m", "jssl.cli", "train", *args, f"--workdir={stopped_run}"],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from step {stopped} in {checkpoints}" in rerun.stderr

    damaged = os.path.join(damaged_run, "checkpoints")
    previous = max(int(name) for name in os.listdir(damaged) if name.isdigit() and int(name) < stopped)
    files = glob.glob(os.path.join(damaged, str(stopped), "state", "**", "d", "*"), recursive=True)
    assert files
    for path in files:
        os.truncate(path, 10)
    fallback = subprocess.run([sys.executable, "-m", "jssl.cli", "train", *args, f"--workdir={damaged_run}"],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    (line,) = [line for line in fallback.stderr.splitlines() if "does not restore" in line]
    assert f"checkpoint {stopped} in {damaged} does not restore (" in line
    assert line.endswith(f"set aside as {stopped}.damaged; resuming from step {previous}")
    assert os.path.isdir(os.path.join(damaged, f"{stopped}.damaged"))

    resumed, straight = _losses(stopped_run), _losses(damaged_run)
    assert sorted(resumed) == sorted(straight) == list(range(1, 25))
    redone, later = range(previous + 1, stopped + 1), range(stopped + 1, 25)
    np.testing.assert_array_equal([straight[s] for s in redone], [first[s] for s in redone])
    np.testing.assert_array_equal([resumed[s] for s in later], [straight[s] for s in later])
    # The damaged run logged P+1..N before its restart: those rows are superseded, not repeated.
    with open(os.path.join(damaged_run, "metrics.jsonl")) as f:
        assert sorted(json.loads(line)["step"] for line in f if '"loss"' in line) == list(range(1, 25))
    assert [step for step, _ in tensorboard_scalars(tmp_path / "damaged")["loss"]] == list(range(1, 25))


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
    assert not os.path.exists(tmp_path / "run" / "config.json")  # written once the run starts


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
