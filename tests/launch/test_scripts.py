"""Every launcher script parses (`bash -n`) and is executable; launch/multiprocess.sh passes a
SIGTERM or Ctrl-C on to all its processes and exits with their status."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time

from tests.train.helpers import REPO

SCRIPTS = sorted(glob.glob(os.path.join(REPO, "launch", "*.sh")) + glob.glob(os.path.join(REPO, "launch", "*.sbatch")))

# Stands in for `python -m jssl.cli train ...`: runs until SIGTERM, then exits 143 as jssl does
# after saving a checkpoint.
PYTHON = """#!/usr/bin/env bash
trap 'echo "terminated $JAX_PROCESS_ID of $JAX_NUM_PROCESSES"; exit 143' TERM
echo "$$" > "$LOG/process_$JAX_PROCESS_ID"
while true; do sleep 0.05; done
"""


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_launcher_scripts_parse_and_are_executable():
    assert len(SCRIPTS) >= 3, SCRIPTS
    for script in SCRIPTS:
        result = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_multiprocess_passes_ctrl_c_on_to_every_process(tmp_path):
    fake, log = tmp_path / "bin", tmp_path / "log"
    fake.mkdir()
    log.mkdir()
    (fake / "python").write_text(PYTHON)
    (fake / "python").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "LOG": str(log), "NUM_PROCESSES": "2"}
    launcher = subprocess.Popen(
        [os.path.join(REPO, "launch", "multiprocess.sh"), "--workdir", str(tmp_path / "run")],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while len([p for p in log.iterdir() if p.read_text().strip()]) < 2:
            assert time.monotonic() < deadline and launcher.poll() is None, "the processes never started"
            time.sleep(0.02)
        launcher.send_signal(signal.SIGINT)
        out, _ = launcher.communicate(timeout=20)
    finally:  # a launcher that did not pass the signal on leaves its processes running
        for pid_file in log.iterdir():
            _kill(int(pid_file.read_text()))
        launcher.kill()
    assert launcher.returncode == 143, out
    assert sorted(line for line in out.splitlines() if "terminated" in line) == [
        "[process 0] terminated 0 of 2",
        "[process 1] terminated 1 of 2",
    ]
