"""Tests for jssl.data.sources: validation, embedded splits, npz, TFDS, registry."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from jssl import data


def _images(n: int = 5, h: int = 4, w: int = 3, c: int = 1) -> np.ndarray:
    return np.zeros((n, h, w, c), np.uint8)


def test_array_source_records() -> None:
    images = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    source = data.ArraySource(images, np.arange(5, dtype=np.int64))
    assert len(source) == 5
    record = source[2]
    assert record["image"].shape == (4, 3, 1) and record["image"].dtype == np.uint8
    assert record["label"].dtype == np.int32 and record["label"] == 2
    assert isinstance(source, data.ImageSource)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((5, 28)), np.zeros(5, int), r"uint8 \[N, H, W, C\].*float64 with shape \(5, 28\)"),
        (np.zeros((5, 4, 4, 1)), np.zeros(5, int), "uint8.*float64"),
        (np.zeros((5, 2, 4, 4, 1), np.uint8), np.zeros(5, int), r"shape \(5, 2, 4, 4, 1\)"),
        (_images(), np.zeros(5, np.float32), "labels must be an integer.*float32"),
        (_images(), np.zeros((5, 1), int), r"labels.*shape \(5, 1\)"),
        (_images(0), np.zeros(0, int), "is empty"),
        (_images(5), np.zeros(4, int), "same length.*5 images and 4 labels"),
    ],
)
def test_array_source_validation(images: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        data.ArraySource(images, labels)


def test_empty_error_names_data_set_and_split() -> None:
    with pytest.raises(ValueError, match="data set 'x' split 'y' is empty"):
        data.ArraySource(_images(0), np.zeros(0, int), name="x", split="y")


def test_embedded_mnist_fixed_disjoint_split() -> None:
    train, test = data.embedded_mnist("train"), data.embedded_mnist("test")
    assert (len(train), len(test)) == (4000, 1000)
    assert train.images.shape[1:] == (28, 28, 1) and train.images.dtype == np.uint8
    assert train.images.max() == 255 and train.labels.dtype == np.int32
    # Disjoint: no test image occurs in train (MNIST subset has no duplicates).
    train_rows = {row.tobytes() for row in train.images.reshape(4000, -1)}
    assert not any(row.tobytes() in train_rows for row in test.images.reshape(1000, -1))
    # All ten classes in both splits (the raw file is sorted by label).
    assert set(np.unique(train.labels)) == set(range(10)) == set(np.unique(test.labels))
    # Fixed: the permutation does not depend on any global random state.
    np.random.seed(123)
    again = data.get_source("mnist", "test")
    np.testing.assert_array_equal(again.images, test.images)
    np.testing.assert_array_equal(again.labels, test.labels)


def test_embedded_digits() -> None:
    train, test = data.get_source("digits", "train"), data.get_source("digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == 1797 // 5
    assert train[0]["image"].shape == (8, 8, 1) and train.images.max() == 255


def test_unknown_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="splits.*'validation'"):
        data.embedded_digits("validation")


def test_npz_source_split_keys_and_plain_keys(tmp_path: Path) -> None:
    split_file = tmp_path / "split.npz"
    np.savez(
        split_file,
        train_images=_images(3),
        train_labels=np.arange(3),
        test_images=_images(2, c=3),
        test_labels=np.arange(2),
    )
    assert len(data.get_source("npz", "train", path=str(split_file))) == 3
    assert data.npz_source(split_file, "test")[0]["image"].shape == (4, 3, 3)
    plain = tmp_path / "plain.npz"
    np.savez(plain, images=np.zeros((5, 5, 5), np.uint8), labels=np.arange(5))
    assert data.npz_source(plain, "train")[1]["image"].shape == (5, 5, 1)
    with pytest.raises(ValueError, match="expected 'val_images'"):
        data.npz_source(split_file, "val")
    empty = tmp_path / "empty.npz"
    np.savez(empty, images=_images(0), labels=np.zeros(0, int))
    with pytest.raises(ValueError, match="is empty"):
        data.npz_source(empty, "train")


def test_get_source_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown data set 'imagenet'.*\['digits', 'mnist', 'npz', 'tfds'\]"):
        data.get_source("imagenet", "train")
    with pytest.raises(ValueError, match="needs the option path"):
        data.get_source("npz", "train")
    with pytest.raises(ValueError, match="needs the option tfds_name"):
        data.get_source("tfds", "train")
    with pytest.raises(ValueError, match="does not take options"):
        data.get_source("mnist", "train", path="x.npz")
    # None-valued options are ignored so a flat config can be forwarded.
    assert len(data.get_source("digits", "test", path=None, tfds_name=None, data_dir=None)) > 0
    assert set(data.SOURCES) == {"mnist", "digits", "tfds", "npz"}


def test_tfds_source_reads_array_record_without_tensorflow(tiny_tfds) -> None:
    source = data.get_source("tfds", "train", tfds_name=tiny_tfds.name, data_dir=str(tiny_tfds.data_dir))
    assert len(source) == tiny_tfds.splits["train"]
    seen = set()
    for i in range(len(source)):
        record = source[i]
        assert record["image"].dtype == np.uint8 and record["image"].shape == tiny_tfds.shape
        assert record["label"].dtype == np.int32
        seen.add(record["image"].tobytes())
    expected = {tiny_tfds.image("train", i).tobytes() for i in range(len(source))}
    assert seen == expected  # PNG round trip is lossless
    images, labels = data.load_arrays(source)
    assert images.shape == (len(source), *tiny_tfds.shape) and labels.dtype == np.int32
    assert len(data.tfds_source(tiny_tfds.name, "test", tiny_tfds.data_dir)) == tiny_tfds.splits["test"]
    # Workers receive sources by pickling.
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[3]["image"], source[3]["image"])
    assert "tensorflow" not in sys.modules


def test_tfds_source_errors(tiny_tfds, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no 'img'"):
        data.tfds_source(tiny_tfds.name, "train", tiny_tfds.data_dir, image_key="img")
    with pytest.raises(ValueError, match="cannot open TFDS"):
        data.tfds_source("jssl_not_prepared_anywhere", "train", tmp_path)
    assert "tensorflow" not in sys.modules


def test_npz_without_split_arrays_gets_a_fixed_disjoint_split(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    images = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2)  # every image distinct
    np.savez(path, images=images, labels=np.arange(10))
    train, test = data.npz_source(path, "train"), data.npz_source(path, "test")
    assert (len(train), len(test)) == (8, 2)  # the last N // 5 of a seed-0 permutation are 'test'
    assert set(train.labels) | set(test.labels) == set(range(10)) and not set(train.labels) & set(test.labels)
    np.testing.assert_array_equal(data.npz_source(path, "test").labels, test.labels)  # fixed
    assert "seed-0 permutation" in test.note and "plain.npz" in test.note
    with pytest.raises(ValueError, match=r"splits \['train', 'test'\]; got 'validation'"):
        data.npz_source(path, "validation")
    mixed = tmp_path / "mixed.npz"
    np.savez(mixed, train_images=images, train_labels=np.arange(10), images=images, labels=np.arange(10))
    with pytest.raises(ValueError, match="expected 'test_images'.*only in files without split arrays"):
        data.npz_source(mixed, "test")
