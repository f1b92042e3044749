"""The metric writer: scalars to JSONL, pictures and generated text to files and TensorBoard."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jssl.metrics import MetricWriter


def test_scalars_pictures_and_texts_land_in_the_workdir(tmp_path):
    writer = MetricWriter(str(tmp_path), enabled=True)
    writer.write_scalars(3, {"loss": np.float32(1.5)})
    paths = writer.write_pictures(3, {"samples": np.zeros((2, 4, 4, 1), np.float32)})
    texts = writer.write_texts(3, {"text": "def f():\n    return 1"})
    writer.close()
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[0]["step"] == 3 and rows[0]["loss"] == 1.5
    assert os.path.exists(paths["samples"]) and os.path.exists(tmp_path / "pictures" / "samples.png")
    assert open(texts["text"]).read() == "def f():\n    return 1"
    assert texts["text"].endswith(os.path.join("samples", "text_step3.txt"))
    assert os.listdir(tmp_path / "tensorboard")


def test_disabled_writer_writes_nothing(tmp_path):
    writer = MetricWriter(str(tmp_path), enabled=False)
    writer.write_scalars(1, {"loss": 1.0})
    assert writer.write_texts(1, {"text": "x"}) == {}
    writer.close()
    assert os.listdir(tmp_path) == []


# ==================================================================================================
# Resuming: every step once (issue 12, item 5)
# ==================================================================================================


def tensorboard_scalars(workdir) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: tag -> [(step, value)], read by TensorBoard's own loader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(workdir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def jsonl_rows(workdir) -> list[dict]:
    return [json.loads(line) for line in open(workdir / "metrics.jsonl")]


def test_a_resumed_run_supersedes_the_rows_logged_after_its_checkpoint(tmp_path):
    """Killed at 30 after a checkpoint at 26; the rerun logs 27..30 again: TensorBoard and the JSONL
    hold each step once, with the rerun's values (before: TensorBoard read 29, 30, 26, 27)."""
    first = MetricWriter(str(tmp_path), enabled=True)
    for step in range(1, 31):
        first.write_scalars(step, {"loss": float(step)})
        if step % 10 == 0:
            first.write_scalars(step, {"eval/knn": step / 100})
    # Already on disk before any flush or close: a kill loses nothing that was logged.
    assert [s for s, _ in tensorboard_scalars(tmp_path)["loss"]] == list(range(1, 31))
    first.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 31, "loss"')  # the kill cut this line short

    rerun = MetricWriter(str(tmp_path), enabled=True, resume_step=26)
    for step in range(27, 33):
        rerun.write_scalars(step, {"loss": step + 0.5})
        if step % 10 == 0:
            rerun.write_scalars(step, {"eval/knn": step / 100 + 0.005})
    rerun.close()

    expected_loss = [(s, float(s)) for s in range(1, 27)] + [(s, s + 0.5) for s in range(27, 33)]
    rows = jsonl_rows(tmp_path)
    assert [(r["step"], r["loss"]) for r in rows if "loss" in r] == expected_loss
    assert [(r["step"], r["eval/knn"]) for r in rows if "eval/knn" in r] == [(10, 0.1), (20, 0.2), (30, 0.305)]
    board = tensorboard_scalars(tmp_path)
    assert board["loss"] == expected_loss
    assert [s for s, _ in board["eval/knn"]] == [10, 20, 30] and board["eval/knn"][-1][1] == pytest.approx(0.305)


def test_rerunning_a_finished_run_writes_its_final_rows_once(tmp_path):
    first = MetricWriter(str(tmp_path), enabled=True)
    for step in (2, 4, 6):
        first.write_scalars(step, {"loss": float(step)})
    first.write_scalars(6, {"final/knn": 0.5})
    first.write_pictures(6, {"samples": np.zeros((2, 4, 4, 1), np.float32)})
    first.close()

    # The checkpoint is at the last step: the rerun trains nothing and writes the final rows again.
    rerun = MetricWriter(str(tmp_path), enabled=True, resume_step=6, finished=True)
    rerun.write_scalars(6, {"final/knn": 0.75})
    rerun.close()

    rows = jsonl_rows(tmp_path)
    assert [(r["step"], r.get("loss"), r.get("final/knn")) for r in rows] == [
        (2, 2.0, None), (4, 4.0, None), (6, 6.0, None), (6, None, 0.75)
    ]
    board = tensorboard_scalars(tmp_path)
    assert board["loss"] == [(2, 2.0), (4, 4.0), (6, 6.0)]  # step 6's loss replayed after the purge
    assert board["final/knn"] == [(6, 0.75)]


def test_fresh_start_in_a_used_workdir_drops_the_old_rows(tmp_path):
    """Killed before its first checkpoint: the rerun starts at step 0 and the old rows go."""
    first = MetricWriter(str(tmp_path), enabled=True)
    first.write_scalars(1, {"loss": 9.0})
    first.close()
    rerun = MetricWriter(str(tmp_path), enabled=True, resume_step=0)
    rerun.write_scalars(1, {"loss": 1.0})
    rerun.close()
    assert [(r["step"], r["loss"]) for r in jsonl_rows(tmp_path)] == [(1, 1.0)]
    assert tensorboard_scalars(tmp_path)["loss"] == [(1, 1.0)]


def test_writers_are_chosen_by_name(tmp_path):
    writer = MetricWriter(str(tmp_path), enabled=True, writers=" jsonl ,jsonl")
    writer.write_scalars(1, {"loss": 1.0})
    writer.close()
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]
    with pytest.raises(ValueError, match="unknown logging.writers entry 'tensorbord'; known: jsonl, mlflow"):
        MetricWriter(str(tmp_path), enabled=False, writers="tensorbord,jsonl")


def test_configs_saved_before_the_logging_fields_load_with_their_defaults(tmp_path):
    from jssl.config import base_config, load_config

    old = base_config().to_dict()
    del old["logging"], old["eval"]["plots"], old["eval"]["tsne_points"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = load_config(str(tmp_path / "config.json"))
    assert config.logging.writers == "tensorboard,jsonl" and config.eval.plots and config.eval.tsne_points == 1000
    writer = MetricWriter.for_run(config, str(tmp_path), resume_step=0, finished=False)
    writer.close()
    assert sorted(os.listdir(tmp_path)) == ["config.json", "metrics.jsonl", "tensorboard"]
