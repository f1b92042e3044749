"""Two jax processes joined by jax.distributed on this machine: the multi-host code paths.

The command line is the Kubernetes container's (launch/kubernetes.yaml), run by the local
multi-process launcher: the image's checkout becomes this repository and the shared volume a
temporary directory (tests/launch/test_kubernetes.py checks each pod's jax.distributed environment).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import FAST_COMPILE
from tests.launch import kubernetes_pods as k8s
from tests.train.helpers import REPO


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_agree(tmp_path):
    args, cwd = k8s.local_command(k8s.load_manifest()["JobSet"], str(tmp_path))
    assert args[0] == "train", args
    args[args.index("--config") + 1] += ":smoke"  # seconds, not minutes
    workdir = tmp_path / os.path.relpath(args[args.index("--workdir") + 1], tmp_path)
    env = {**os.environ, "NUM_PROCESSES": "2", "DEVICES_PER_PROCESS": "2", "PYTHONPATH": REPO}
    env["XLA_FLAGS"] = FAST_COMPILE  # the launcher adds the per-process device count
    result = subprocess.run(
        [
            os.path.join(REPO, "launch", "multiprocess.sh"),
            *args[1:],
            "--config.model.kwargs.width_multiplier=0.5",
            "--config.eval.baselines=false",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # One global mesh over both processes' devices.
    assert result.stdout.count("mesh {'data': 4") == 2
    # Each process saved its own data-iterator position beside the shared state.
    data_dir = workdir / "checkpoints" / "6" / "data"
    assert {p.name for p in data_dir.glob("process_*")} == {"process_0-of-2.json", "process_1-of-2.json"}
    # Both processes computed the same global evaluation; only process 0 wrote files.
    finals = [line.split("] ", 1)[1] for line in result.stdout.splitlines() if "final: kNN" in line]
    assert len(finals) == 2 and finals[0] == finals[1]
    assert json.loads((workdir / "results.json").read_text())["step"] == 6
