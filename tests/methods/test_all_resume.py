"""Every method: a run killed with SIGKILL resumes with exactly the losses of the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.methods.helpers import (
    METHOD_NAMES,
    REPO,
    as_cli,
    config_path,
    tiny_overrides,
)
from tests.conftest import FAST_COMPILE
from tests.train.helpers import load_config

# ==================================================================================================
# SIGKILL + resume, every method
# ==================================================================================================


def _losses(workdir: str) -> dict[int, float]:
    out = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.endswith("\n"):  # a line cut by the kill is not a record
                    record = json.loads(line)
                    if "loss" in record:
                        out.setdefault(record["step"], record["loss"])  # the first run's value
    return out


def _checkpoints(workdir: str) -> list[int]:
    directory = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(directory) else []


# The default run resumes the ViT + random-mask family here; the ResNet two-view path (SimCLR)
# is already resumed after SIGKILL by tests/train/test_end_to_end.py. The others add no new kind
# of checkpointed state (queues, EMA copies and BN statistics are all `nnx.Variable`s in the same
# state) and are `heavy` (each SIGKILL pair costs 30-130 s on 2 cores; the 15-minute suite cannot
# hold all of them): `python -m pytest -m heavy tests/methods/test_all_resume.py`.
RESUMED_BY_DEFAULT = ("mae",)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [n if n in RESUMED_BY_DEFAULT else pytest.param(n, marks=pytest.mark.heavy) for n in METHOD_NAMES],
)
def test_sigkill_then_rerun_resumes_with_identical_losses(name, tmp_path, tmp_path_factory):
    """The run is killed a few steps after a checkpoint; the rerun redoes those steps bitwise.

    The steps between the last checkpoint and the kill were computed by the uninterrupted run,
    so the rerun's losses there are compared with that run's: no third run is needed.
    """
    every = 6
    config = load_config("smoke", name=f"{name}_mnist")
    args = [
        f"--config={config_path(name)}:smoke",
        *as_cli(tiny_overrides(config)),
        "--config.total_steps=60",
        f"--config.checkpoint.every_steps={every}",
        "--config.log_every_steps=1",
        "--config.data.max_eval_examples=100",
    ]
    cache = str(tmp_path_factory.getbasetemp() / "jax_cache")
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}",
        "PYTHONPATH": REPO,
        # Both runs compile the same step: the second one reads it from the cache.
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    workdir = str(tmp_path / "run")
    command = [sys.executable, "-m", "jssl.cli", "train", *args, f"--workdir={workdir}"]
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while True:  # kill mid-interval, after the first checkpoint
        logged = _losses(workdir)
        last = max(logged, default=0)
        if last > every and last % every >= every - 2 and _checkpoints(workdir):
            break
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before_kill = _losses(workdir)
    resume_from = max(_checkpoints(workdir))
    redone = [s for s in before_kill if s > resume_from]
    assert redone, f"no step between the checkpoint at {resume_from} and the kill at {max(before_kill)}"

    rerun = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "loss" in record:
                resumed[record["step"]] = record["loss"]  # the last value: the rerun's
    assert sorted(resumed) == list(range(1, 61))
    np.testing.assert_array_equal([resumed[s] for s in redone], [before_kill[s] for s in redone])
