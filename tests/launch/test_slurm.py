"""launch/slurm.sbatch with fake `srun`, `scontrol` and `jssl` on PATH: it asks for SIGTERM ahead
of its time limit and requeues the job exactly when jssl exits 143 (checkpoint saved after the
time-limit SIGTERM), not when the whole job is being cancelled."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests.train.helpers import REPO

SCRIPT = os.path.join(REPO, "launch", "slurm.sbatch")

SRUN = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$LOG/srun_args"
while [[ "$1" == -* ]]; do shift; done
exec "$@"
"""
SCONTROL = """#!/usr/bin/env bash
printf '%s\\n' "$@" >> "$LOG/scontrol_args"
"""
# Stands in for the jssl tasks: records what it got; with FAKE_JSSL_WAIT, runs until SIGTERM and
# then exits 143 as jssl does after saving.
JSSL = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$LOG/jssl_args"
echo "${SRUN_CPUS_PER_TASK:-unset}" > "$LOG/jssl_cpus"
echo "${JAX_LOCAL_DEVICE_IDS:-unset}" > "$LOG/jssl_devices"
if [[ -n "${FAKE_JSSL_WAIT:-}" ]]; then
  trap 'exit 143' TERM
  echo $$ > "$LOG/jssl_pid"
  while true; do sleep 0.05; done
fi
exit "$FAKE_JSSL_STATUS"
"""


def _shims(tmp_path):
    slurm, venv, log = tmp_path / "slurm_bin", tmp_path / "venv_bin", tmp_path / "log"
    for directory in (slurm, venv, log):
        directory.mkdir()
    for directory, name, text in ((slurm, "srun", SRUN), (slurm, "scontrol", SCONTROL), (venv, "jssl", JSSL)):
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
    env = {
        "PATH": f"{slurm}:/usr/bin:/bin",  # jssl only after JSSL_SETUP ran
        "LOG": str(log),
        "SLURM_JOB_ID": "4242",
        "SLURM_CPUS_PER_TASK": "32",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_GPUS_ON_NODE": "8",
        "JSSL_SETUP": f'export PATH="{venv}:$PATH"',
    }
    return env, log


def _read(path):
    return path.read_text().splitlines() if path.exists() else None


def test_the_header_asks_for_sigterm_before_the_time_limit_and_allows_requeue():
    with open(SCRIPT) as f:
        options = dict(option.partition("=")[::2] for option in re.findall(r"^#SBATCH (\S+)", f.read(), re.MULTILINE))
    hours, minutes, seconds = (int(x) for x in options["--time"].split(":"))
    limit = 3600 * hours + 60 * minutes + seconds
    signal_name, lead = options["--signal"].split("@")
    # No `B:`: the signal goes to the job steps (the jssl processes), not to the batch shell.
    assert signal_name == "TERM" and 120 <= int(lead) < limit
    assert "--requeue" in options and options["--open-mode"] == "append"


@pytest.mark.parametrize("jssl_status,requeued", [(0, False), (143, True), (1, False), (130, False)])
def test_requeues_exactly_when_jssl_saved_after_sigterm(tmp_path, jssl_status, requeued):
    env, log = _shims(tmp_path)
    env["FAKE_JSSL_STATUS"] = str(jssl_status)
    result = subprocess.run(
        [SCRIPT, "--config", "configs/simclr_mnist.py", "--workdir", "/shared/x"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == jssl_status, result.stderr
    assert _read(log / "jssl_args") == ["train", "--config", "configs/simclr_mnist.py", "--workdir", "/shared/x"]
    assert "--kill-on-bad-exit=1" in _read(log / "srun_args")
    assert _read(log / "jssl_cpus") == ["32"]  # srun does not inherit --cpus-per-task any more
    # One process per node drives all 8 GPUs, not only the one jax's SLURM detection would pick.
    assert _read(log / "jssl_devices") == ["0,1,2,3,4,5,6,7"]
    assert _read(log / "scontrol_args") == (["requeue", "4242"] if requeued else None)


def test_a_cancelled_job_is_not_requeued(tmp_path):
    env, log = _shims(tmp_path)
    env["FAKE_JSSL_WAIT"] = "1"
    script = subprocess.Popen([SCRIPT, "--workdir", "/shared/x"], env=env, stdout=subprocess.PIPE, text=True)
    pid_file = log / "jssl_pid"
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline and script.poll() is None, "the fake jssl never started"
            time.sleep(0.02)
        # scancel: SIGTERM to the batch shell and to the tasks alike.
        script.send_signal(signal.SIGTERM)
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        assert script.wait(timeout=20) == 143
    finally:
        script.kill()
    assert _read(log / "scontrol_args") is None


def test_without_jssl_on_path_it_says_how_to_set_it_up(tmp_path):
    env, log = _shims(tmp_path)
    env["JSSL_SETUP"] = ""
    result = subprocess.run([SCRIPT, "--workdir", "/shared/x"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "JSSL_SETUP" in result.stderr
    assert _read(log / "srun_args") is None


def test_one_task_per_gpu_keeps_jax_own_device_choice(tmp_path):
    env, log = _shims(tmp_path)
    env.update(FAKE_JSSL_STATUS="0", SLURM_NTASKS_PER_NODE="8")
    result = subprocess.run([SCRIPT, "--workdir", "/shared/x"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert _read(log / "jssl_devices") == ["unset"]  # each of the 8 processes takes its SLURM_LOCALID's GPU
