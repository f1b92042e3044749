"""The Dockerfile, read statically (no Docker daemon here): what it copies exists and is in the
build context, the extra it installs is defined, its entrypoint is jssl's console script."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import tomllib

import pytest

from jssl import cli
from tests.train.helpers import REPO


def _instructions() -> list[tuple[str, str]]:
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())  # line continuations
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def _in_build_context(path: str) -> bool:
    """`.dockerignore`'s verdict on a top-level path: the last matching pattern wins."""
    included = True
    with open(os.path.join(REPO, ".dockerignore")) as f:
        for pattern in (line.strip() for line in f):
            if not pattern or pattern.startswith("#"):
                continue
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
            if fnmatch.fnmatch(path, pattern):
                included = negated
    return included


@pytest.fixture(scope="module")
def pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_the_image_copies_the_checkout_and_installs_the_cuda_extra(pyproject):
    instructions = _instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.12")
    sources = [src for op, rest in instructions if op == "COPY" for src in shlex.split(rest)[:-1]]
    for source in sources:
        assert os.path.exists(os.path.join(REPO, source)), source
        assert _in_build_context(source), f"{source} is excluded by .dockerignore"
    # Everything `pip install .` needs to build (setup.py ships configs/ in the wheel), and the
    # configs the manifests name.
    assert {"pyproject.toml", "setup.py", "README.md", "jssl", "configs"} <= set(sources)
    assert not _in_build_context("runs") and not _in_build_context(".git")
    [install] = [rest for op, rest in instructions if op == "RUN" and "pip install" in rest]
    extras = re.search(r"\.\[([a-z0-9,_-]+)\]", install).group(1).split(",")
    optional = pyproject["project"]["optional-dependencies"]
    assert extras == ["cuda"] and optional["cuda"] == ["jax[cuda12]>=0.10,<0.12"]
    # The CUDA jax range is the project's own jax range.
    assert "jax>=0.10,<0.12" in pyproject["project"]["dependencies"]


def test_the_entrypoint_is_the_console_script_and_its_default_command_runs(pyproject, capsys):
    instructions = dict(_instructions())
    entrypoint, command = json.loads(instructions["ENTRYPOINT"]), json.loads(instructions["CMD"])
    assert entrypoint == ["jssl"] and pyproject["project"]["scripts"]["jssl"] == "jssl.cli:main"
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*entrypoint, *command])
    assert exit_info.value.code == 0 and "usage: jssl" in capsys.readouterr().out
