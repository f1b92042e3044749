"""`jssl eval` end to end: a tiny SimCLR run, then kNN, linear probe and fine-tuning through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jssl import cli
from jssl.train import train
from tests.conftest import FAST_COMPILE
from tests.train.helpers import REPO, tiny_config

CONFIG = os.path.join(REPO, "configs", "simclr_mnist.py")
# Tiny fine-tuning: 28 px crops as the evaluation images, a few steps of batch 16.
FINETUNE = [
    "--config.finetune.steps=4",
    "--config.finetune.batch_size=16",
    "--config.finetune.checkpoint_every_steps=2",
    "--config.finetune.log_every_steps=1",
    "--config.eval.linear_probe_steps=10",
]
ENV = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}", "PYTHONPATH": REPO}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """A 4-step SimCLR smoke run (tiny ResNet, 200 evaluation images), trained in-process once."""
    workdir = str(tmp_path_factory.mktemp("eval") / "run")
    config = tiny_config(**{"total_steps": 4, "eval.baselines": False, "data.max_eval_examples": 200})
    config.eval.linear_probe_steps = 10
    train(config, workdir)
    return workdir


def _copy(run: str, tmp_path, name: str) -> str:
    target = str(tmp_path / name)
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("finetune", "eval_results.json"))
    return target


def _eval(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # `cli.main` rewrites sys.argv
    cli.main(["jssl", "eval", *args])


def _digest(directory: str) -> str:
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(root, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_eval_writes_knn_probe_and_finetune_results(pretrained, tmp_path, monkeypatch, capsys):
    workdir = _copy(pretrained, tmp_path, "run")
    before = _digest(os.path.join(workdir, "checkpoints"))
    _eval(monkeypatch, f"--workdir={workdir}", *FINETUNE)
    out = capsys.readouterr().out
    assert "kNN" in out and "linear probe" in out and "fine-tune top-1" in out and "random init" in out

    results = json.load(open(os.path.join(workdir, "eval_results.json")))
    assert results["pretrain_step"] == 4
    for value in (results["knn"], results["linear_probe"], results["finetune"]["top1"]):
        assert 0.0 <= value <= 1.0
    assert results["finetune"]["steps"] == 4 and "top1" in results["finetune_random_init"]
    merged = json.load(open(os.path.join(workdir, "results.json")))
    assert merged["eval_run"] == results and "ssl" in merged and merged["step"] == 4  # pretraining numbers kept
    # The frozen representation is the trainer's: the same kNN as its final evaluation.
    assert results["knn"] == pytest.approx(merged["ssl"]["knn"])
    assert os.path.isdir(os.path.join(workdir, "finetune", "checkpoints", "4"))
    assert os.path.isdir(os.path.join(workdir, "finetune", "random_init", "checkpoints", "4"))
    # Evaluating never writes to the pretraining checkpoints (kNN and the probe only read features).
    assert _digest(os.path.join(workdir, "checkpoints")) == before

    # A rerun finds fine-tuning finished and reports the same numbers.
    _eval(monkeypatch, f"--workdir={workdir}", *FINETUNE)
    again = json.load(open(os.path.join(workdir, "eval_results.json")))
    assert again["finetune"]["top1"] == results["finetune"]["top1"] and again["knn"] == results["knn"]


def _error(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        _eval(monkeypatch, *args)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return exit_info.value.code, err


def test_clear_errors(pretrained, tmp_path, monkeypatch, capsys):
    code, err = _error(monkeypatch, capsys, f"--workdir={tmp_path / 'nowhere'}")
    assert code == 2 and "does not exist" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(os.path.join(pretrained, "config.json"), empty / "config.json")
    code, err = _error(monkeypatch, capsys, f"--workdir={empty}")
    assert code == 1 and "no pretraining checkpoint" in err

    code, err = _error(monkeypatch, capsys, f"--workdir={pretrained}", "--config.finetune.stepz=3")
    assert code == 2 and "stepz" in err

    # The recipe file at its own width is not the network this run trained.
    code, err = _error(monkeypatch, capsys, f"--workdir={pretrained}", f"--config={CONFIG}:smoke")
    assert code == 1 and "model.kwargs.width_multiplier is 2.0 but the run used 0.5" in err
    code, err = _error(monkeypatch, capsys, f"--workdir={pretrained}", "--config.method.projection_dim=8")
    assert code == 1 and "method.projection_dim" in err


def test_config_file_with_matching_fields_is_accepted(pretrained, tmp_path, monkeypatch, capsys):
    workdir = _copy(pretrained, tmp_path, "run")
    tiny = [
        "--config.model.kwargs.width_multiplier=0.5",
        "--config.method.projection_hidden_dim=32",
        "--config.method.projection_dim=16",
        "--config.data.max_eval_examples=200",
        "--config.global_batch_size=16",
        "--config.finetune.enabled=false",
    ]
    _eval(monkeypatch, f"--workdir={workdir}", f"--config={CONFIG}:smoke", *tiny, *FINETUNE)
    results = json.load(open(os.path.join(workdir, "eval_results.json")))
    assert "finetune" not in results and 0.0 <= results["linear_probe"] <= 1.0


def _jssl_eval(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jssl.cli", "eval", *args], env=ENV, cwd=REPO)


def _losses(directory: str) -> dict[int, float]:
    out = {}
    with open(os.path.join(directory, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "loss" in record:
                out[record["step"]] = record["loss"]
    return out


# 75 s on 2 cores: `heavy` (the pretraining's SIGKILL resume runs by default, and fine-tuning
# checkpoints through the same Checkpointer).
@pytest.mark.slow
@pytest.mark.heavy
def test_finetune_sigkill_then_rerun_resumes_with_identical_losses(pretrained, tmp_path):
    args = [
        "--config.finetune.steps=60",
        "--config.finetune.batch_size=16",
        "--config.finetune.checkpoint_every_steps=4",
        "--config.finetune.log_every_steps=1",
        "--config.finetune.random_init_baseline=false",
        "--config.eval.linear_probe_steps=10",
    ]
    reference = _copy(pretrained, tmp_path, "reference")
    assert _jssl_eval(f"--workdir={reference}", *args).wait(timeout=300) == 0

    workdir = _copy(pretrained, tmp_path, "killed")
    proc = _jssl_eval(f"--workdir={workdir}", *args)
    deadline = time.time() + 240
    while not os.path.isdir(os.path.join(workdir, "finetune", "checkpoints", "8")):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(_losses(os.path.join(workdir, "finetune")))
    assert killed_at < 60, "fine-tuning finished before SIGKILL"

    assert _jssl_eval(f"--workdir={workdir}", *args).wait(timeout=300) == 0
    expected = _losses(os.path.join(reference, "finetune"))
    resumed = _losses(os.path.join(workdir, "finetune"))
    assert sorted(resumed) == list(range(1, 61))
    later = list(range(9, 61))
    np.testing.assert_array_equal([resumed[s] for s in later], [expected[s] for s in later])
    final = lambda d: json.load(open(os.path.join(d, "eval_results.json")))["finetune"]["top1"]  # noqa: E731
    assert final(workdir) == final(reference)
