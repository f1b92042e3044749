"""The metric writer: scalars to JSONL, pictures and generated text to files and TensorBoard."""

from __future__ import annotations

import json
import os

import numpy as np

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
