"""Inputs that used to give wrong numbers silently: labels past data.num_classes, held-out data in the bank."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from jssl import data
from jssl.data import audio, checks
from jssl.data.image_inputs import image_eval_set, load_eval_data
from jssl.data.inputs import EvalSet
from jssl.evaluators import knn_accuracy
from jssl.train import train
from jssl.train.trainer import make_inputs
from tests.train.helpers import tiny_config


def _noise_npz(path, n: int = 50, **arrays) -> str:
    """Distinct random 8x8 images with random labels 0..9 (no pixel pattern predicts a label)."""
    rng = np.random.default_rng(0)
    if not arrays:
        arrays = dict(images=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), labels=rng.integers(0, 10, n))
    np.savez(path, **arrays)
    return str(path)


def _npz_config(path: str, **overrides):
    return tiny_config(**{"data.name": "npz", "data.path": path, "data.max_eval_examples": 0, **overrides})


class _Unlisted:
    """A source whose labels are not in memory: only the pipeline's per-record check sees them."""

    def __init__(self, source):
        self._inner = source

    def __len__(self):
        return len(self._inner)

    def __getitem__(self, index):
        return self._inner[index]


def test_check_labels_messages_say_how_to_fix():
    checks.check_labels(np.arange(10), 10, split="train")
    with pytest.raises(ValueError, match=r"labels of split 'train' reach 9 but data.num_classes=3: set data.num_classes=10"):
        checks.check_labels(np.arange(10), 3, split="train")
    with pytest.raises(ValueError, match=r"labels of split 'test' include -1; .*\[0, data.num_classes\)"):
        checks.check_labels(np.array([0, -1, 2]), 3, split="test")
    with pytest.raises(ValueError, match="data.num_classes must be a positive integer"):
        checks.check_labels(np.arange(3), 0, split="train")


def test_train_run_with_too_few_classes_fails_before_training(tmp_path):
    # Embedded MNIST has 10 classes: the online probe would see NaN losses with 3.
    with pytest.raises(ValueError, match=r"split 'train' reach 9 but data.num_classes=3: set data.num_classes=10"):
        train(tiny_config(**{"data.num_classes": 3, "eval.baselines": False}), str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_tfds_declared_classes_are_checked(tiny_tfds):
    source = data.get_source("tfds", "train", tfds_name=tiny_tfds.name, data_dir=str(tiny_tfds.data_dir))
    checks.check_source_labels(source, tiny_tfds.num_classes, split="train")
    with pytest.raises(ValueError, match=r"has 3 classes but data.num_classes=2: set data.num_classes=3"):
        checks.check_source_labels(source, 2, split="train")


@pytest.mark.parametrize("augment_on", ["host", "device"])
def test_pipeline_checks_labels_it_could_not_check_up_front(augment_on):
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1), dtype=np.uint8)
    source = _Unlisted(data.ArraySource(images, np.arange(8)))
    kwargs = dict(global_batch_size=4, num_views=1, augment="hflip", seed=0, augment_on=augment_on)
    assert next(data.make_train_iterator(source, num_classes=8, **kwargs))["label"].max() < 8
    with pytest.raises(ValueError, match=r"a training label is \d but data.num_classes=3: .*\(at least \d\)"):
        next(data.make_train_iterator(source, num_classes=3, **kwargs))  # 4 of 8 distinct labels: one is >= 3


def test_audio_training_labels_are_checked():
    rng = np.random.default_rng(0)
    source = audio.WaveformSource(rng.uniform(-1, 1, (6, 400)).astype(np.float32), np.full(6, 400), np.arange(6))
    with pytest.raises(ValueError, match="reach 5 but data.num_classes=4: set data.num_classes=6"):
        checks.check_source_labels(source, 4, split="train")
    stream = audio.make_audio_iterator(_Unlisted(source), global_batch_size=6, crop_samples=100, seed=0, num_classes=4)
    with pytest.raises(ValueError, match=r"a training label is [45] but data.num_classes=4"):
        next(stream)


def test_heldout_labels_are_checked_for_every_kind(tmp_path):
    path = _noise_npz(tmp_path / "noise.npz")
    with pytest.raises(ValueError, match="reach 9 but data.num_classes=5: set data.num_classes=10"):
        load_eval_data(_npz_config(path, **{"data.num_classes": 5}))
    # EvalSet is what images, text and audio hand to kNN and the probes: it checks too.
    with pytest.raises(ValueError, match="labels of split 'test' reach 4 but data.num_classes=4"):
        EvalSet({"x": np.zeros(2)}, {"x": np.zeros(2)}, np.zeros(2, int), np.array([1, 4]), 4, "t", {})


def test_npz_without_splits_does_not_leak_the_queries_into_the_bank(tmp_path):
    config = _npz_config(_noise_npz(tmp_path / "noise.npz"))
    eval_data = load_eval_data(config)
    ev = image_eval_set(config, eval_data)
    assert (len(ev.train_labels), len(ev.test_labels)) == (40, 10)
    assert ev.info["heldout_in_bank"] == 0 and "seed-0 permutation" in ev.info["split_note"]
    pixels = [s["image"].reshape(len(s["image"]), -1).astype(np.float32) for s in (ev.train, ev.test)]
    # Random labels: raw-pixel kNN is at chance; with the bank holding each query it read 1.0.
    accuracy = knn_accuracy(pixels[0], ev.train_labels, pixels[1], ev.test_labels, num_classes=10, k=5)
    assert accuracy < 0.6


def test_heldout_split_inside_the_bank_is_an_error(tmp_path, caplog):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8), rng.integers(0, 10, 20)
    same = _noise_npz(tmp_path / "same.npz", train_images=images, train_labels=labels, test_images=images,
                      test_labels=labels)  # fmt: skip
    with pytest.raises(ValueError, match="20 of the 20 held-out examples of split 'test' are also in the training"):
        load_eval_data(_npz_config(same))
    with pytest.raises(ValueError, match="data.eval_split is the training split 'train'"):
        load_eval_data(_npz_config(same, **{"data.eval_split": "train"}))
    # One duplicate in twenty is what real data sets have: logged and recorded, not an error.
    one = _noise_npz(tmp_path / "one.npz", train_images=images[:10], train_labels=labels[:10],
                     test_images=np.concatenate([images[10:19], images[:1]]), test_labels=labels[10:])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="jssl"):
        eval_data = load_eval_data(_npz_config(one))
    assert int(eval_data["heldout_in_bank"]) == 1 and "1 of 10 held-out examples" in caplog.text


def test_same_train_and_eval_split_is_an_error_for_text_and_audio():
    from jssl.data.text_corpus import tfds_corpus

    config = tiny_config(**{"data.train_split": "train", "data.eval_split": "train"})
    with pytest.raises(ValueError, match="data.eval_split is the training split 'train'"):
        tfds_corpus(config)
    config.method.name = "cpc"
    with pytest.raises(ValueError, match="data.eval_split is the training split 'train'"):
        make_inputs(config).eval_set()
