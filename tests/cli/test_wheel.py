"""The wheel: it ships the configs, and the installed `jssl` works from any directory without the checkout.

The wheel is built without build isolation (no download; the test venv's setuptools, with
`wheel` from the `test` extra where setuptools is older than 70.1) from a copy of the sources,
so the checkout gets no build/ or egg-info folders. It is installed without dependencies into a
new venv that also sees this environment's packages (jax, flax, ...) through a .pth file: the
venv holds jssl itself, and the commands run from a directory without the checkout and without
PYTHONPATH.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile

import pytest

from jssl import __version__, config_docs, config_files
from tests.cli.helpers import ENV, REPO

SOURCES = ("pyproject.toml", "setup.py", "README.md", "jssl", "configs")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the wheel's path, the venv's bin folder, a directory outside the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(root / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = glob.glob(str(root / "dist" / "jssl-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # This environment's packages (jax, flax, ...), after the venv's own: `--system-site-packages`
    # would give the base interpreter's instead when the tests run in a venv themselves.
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    with open(os.path.join(purelib, "test_environment.pth"), "w") as f:
        f.writelines(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages())
    install = subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "-q", wheel],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return wheel, venv / "bin", str(elsewhere)


def _run(installed, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    _, bin_dir, elsewhere = installed
    env = {k: v for k, v in ENV.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(args), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_ships_the_configs_and_the_installed_command_finds_them(installed):
    wheel, bin_dir, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("jssl/configs/") and n.endswith(".py"))
    assert shipped == sorted(f"jssl/configs/{name}.py" for name in config_files.shipped()), shipped
    assert not [n for n in names if n.startswith("configs/")]  # inside the package, not a top-level `configs`

    # The venv's own copy, not the checkout (nor an editable install of it).
    code = "import jssl, jssl.config_files as c; print(jssl.__file__, c.configs_dir())"
    where = _run(installed, str(bin_dir / "python"), "-c", code)
    package, configs = where.stdout.split() or [where.stderr, ""]
    assert package.startswith(str(bin_dir.parent)) and not package.startswith(REPO), where.stdout + where.stderr
    assert configs == os.path.join(os.path.dirname(package), "configs")

    version = _run(installed, "jssl", "--version")
    assert (version.returncode, version.stdout) == (0, f"jssl {__version__}\n"), version.stderr
    listing = _run(installed, "jssl", "configs")
    assert listing.returncode == 0 and f"shipped configs in {configs}:" in listing.stdout, listing.stderr
    assert all(f"  {name} " in listing.stdout for name in config_files.shipped())

    helped = _run(installed, "jssl", "train", "--config", "simclr_mnist", "--help")
    assert helped.returncode == 0 and os.path.join(configs, "simclr_mnist.py") in helped.stdout, helped.stderr
    config, _ = config_files.load("simclr_mnist")
    for field, value in config_docs.flatten(config):
        assert f"  --config.{field}={value!r}\n" in helped.stdout, field


@pytest.mark.heavy
def test_the_installed_command_trains_five_steps_from_elsewhere(installed):
    run = _run(installed, "jssl", "train", "--workdir", "x", "--config.total_steps=5", timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    workdir = os.path.join(installed[2], "x")
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["step"] == 5 and 0.0 <= results["ssl"]["knn"] <= 1.0
    assert "final: kNN" in run.stdout
