"""W&B (offline) and MLflow (local file store) writers: history rows land, a restart resumes the same run."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import struct
import sys

import numpy as np
import pytest

from jssl.config import base_config
from jssl.metrics import MetricWriter, check_writers
from jssl.tracking import _flatten


def _killed_and_resumed(workdir: str, **logging_fields) -> None:
    """Logs steps 1..5 (plus an image and a text at 5), then, as a rerun from a checkpoint at 3, 4..7."""
    config = base_config()
    config.logging.update(logging_fields)
    first = MetricWriter.for_run(config, workdir, resume_step=0, finished=False)
    for step in range(1, 6):
        first.write_scalars(step, {"loss": float(step), **({"eval/knn": 0.5} if step == 5 else {})})
    first.write_images(5, {"plots/curves": np.zeros((8, 8, 3), np.uint8)})
    first.write_texts(5, {"text": "def f():\n    return 1"})
    first.close()
    config.total_steps += 1  # a restart may change the config: the tracked run keeps its first one
    rerun = MetricWriter.for_run(config, workdir, resume_step=3, finished=False)
    for step in range(4, 8):
        rerun.write_scalars(step, {"loss": step + 0.5})
    rerun.close()


# ==================================================================================================
# Weights & Biases, offline
# ==================================================================================================


def wandb_records(path: str):
    """The protobuf records of a W&B `.wandb` file (LevelDB log framing: 32 KiB blocks, 7-byte
    chunk headers crc32/length/type; a 7-byte file header ':W&B', magic, version first)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    block, position, payload = 32768, 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            break
        payload += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            payload = b""
            yield record


def wandb_history(run_dir: str) -> list[dict[str, str]]:
    rows = []
    for record in wandb_records(glob.glob(os.path.join(run_dir, "run-*.wandb"))[0]):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return rows


# `heavy` until a flake is understood: in 1 of 4 fresh-clone CI runs (2026-12-01) the resumed
# offline run's `.wandb` file held no history rows (expected steps 6 and 7) although the first
# run's were all there. Run it with `python -m pytest -m heavy tests/io/test_tracking.py`.
@pytest.mark.heavy
def test_wandb_offline_run_holds_the_history_and_a_restart_resumes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    _killed_and_resumed(workdir, writers="wandb", wandb_project="jssl-test", run_name="tiny")

    run_id = json.load(open(os.path.join(workdir, "tracking", "wandb.json")))["run_id"]
    run_dirs = sorted(glob.glob(str(tmp_path / "wandb_dir" / "wandb" / "offline-run-*")))
    assert len(run_dirs) == 2 and all(d.endswith(f"-{run_id}") for d in run_dirs)  # one run, resumed
    first, rerun = (wandb_history(d) for d in run_dirs)
    assert [(int(r["_step"]), float(r["loss"])) for r in first] == [(s, float(s)) for s in range(1, 6)]
    assert float(first[-1]["eval/knn"]) == 0.5 and "plots/curves/path" in "|".join(first[-1])
    assert "samples/text/path" in "|".join(first[-1])  # the text, as an HTML file
    # Steps 4 and 5 reached the run before the kill: the first value of a step is kept.
    assert [(int(r["_step"]), float(r["loss"])) for r in rerun] == [(6, 6.5), (7, 7.5)]


# ==================================================================================================
# MLflow, local file store
# ==================================================================================================


def test_mlflow_file_store_holds_the_metrics_and_a_restart_resumes_the_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient  # in the `test` extra, as is wandb

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the writer sets it too; keep it test-local
    uri = (tmp_path / "mlruns").as_uri()
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    _killed_and_resumed(workdir, writers="mlflow", mlflow_tracking_uri=uri, mlflow_experiment="jssl-test")

    run_id = json.load(open(os.path.join(workdir, "tracking", "mlflow.json")))["run_id"]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("jssl-test")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["optimizer.name"] == "lars" and run.data.params["total_steps"] == "1000"
    assert len(run.data.params) == len(_flatten(base_config().to_dict()))  # every field
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
    assert history == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0), (6, 6.5), (7, 7.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "eval/knn")] == [(5, 0.5)]
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "samples")
    }
    assert "samples/text_step5.txt" in artifacts and "images" in artifacts


def test_a_selected_tracker_that_is_not_installed_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    message = r"includes 'wandb' but wandb is not installed: pip install 'jssl\[tracking\]'"
    with pytest.raises(ValueError, match=message):
        MetricWriter(str(tmp_path), enabled=True, writers="jsonl,wandb")
    # The trainer's config check says so before any data is read.
    config = base_config()
    config.logging.writers = "tensorboard,mlflow"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "mlflow" else object())
    with pytest.raises(ValueError, match=r"includes 'mlflow' but mlflow-skinny is not installed"):
        check_writers(config)
