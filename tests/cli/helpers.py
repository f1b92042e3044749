"""Running the real `jssl` command in subprocesses, as a user would, for the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import FAST_COMPILE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Two fake devices; JSSL_DEBUG unset, whatever the caller's environment says.
ENV = {
    **{k: v for k, v in os.environ.items() if k != "JSSL_DEBUG"},
    "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}",
    "PYTHONPATH": REPO,
}


def start(*args: str, cwd: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m jssl.cli *args` from `cwd`, stdout and stderr captured apart."""
    return subprocess.Popen(
        [sys.executable, "-m", "jssl.cli", *args],
        cwd=cwd,
        env=env or ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
