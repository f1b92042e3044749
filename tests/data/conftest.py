"""Shared fixtures for the data tests: tiny TFDS data sets built locally.

The builders write ArrayRecord files without TensorFlow because every image is
handed to the ``Image`` feature as already-encoded bytes: fixed-size PNGs in
``jssl_tiny_images``, variable-size JPEGs in ``jssl_tiny_jpegs``.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

TINY_SHAPE = (8, 10, 3)
TINY_SPLITS = {"train": 24, "test": 8}
TINY_CLASSES = 3


def tiny_image(split: str, index: int) -> np.ndarray:
    """The image the builder stores for (split, index); tests recompute it."""
    seed = [0 if split == "train" else 1, index]
    return np.random.default_rng(seed).integers(0, 256, TINY_SHAPE, dtype=np.uint8)


class JsslTinyImages(tfds.core.GeneratorBasedBuilder):
    """24 + 8 random RGB 8x10 images with labels index % 3."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly: dataset_info_from_configs() wants a package dir
        # with metadata files, which a builder defined in a test does not have.
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=TINY_SHAPE),
                    "label": tfds.features.ClassLabel(num_classes=TINY_CLASSES),
                    "index": np.int64,
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in TINY_SPLITS}

    def _generate_examples(self, split: str):
        for i in range(TINY_SPLITS[split]):
            buffer = io.BytesIO()
            Image.fromarray(tiny_image(split, i)).save(buffer, format="PNG")
            yield i, {"image": buffer.getvalue(), "label": i % TINY_CLASSES, "index": i}


@dataclasses.dataclass(frozen=True)
class TinyTfds:
    """What tests need to know about the prepared tiny data set."""

    data_dir: Path
    name: str = "jssl_tiny_images"
    shape: tuple[int, int, int] = TINY_SHAPE
    splits: dict[str, int] = dataclasses.field(default_factory=lambda: dict(TINY_SPLITS))
    num_classes: int = TINY_CLASSES

    @staticmethod
    def image(split: str, index: int) -> np.ndarray:
        return tiny_image(split, index)


@pytest.fixture(scope="session")
def tiny_tfds(tmp_path_factory: pytest.TempPathFactory) -> TinyTfds:
    """'jssl_tiny_images' prepared as ArrayRecord in a temporary data_dir."""
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = JsslTinyImages(data_dir=str(data_dir))
    builder.download_and_prepare(file_format="array_record")
    return TinyTfds(data_dir=data_dir)


JPEG_SPLITS = {"train": 12}
JPEG_QUALITY = 95


def jpeg_size(index: int) -> tuple[int, int]:
    """(height, width) of JPEG ``index``: every image its own size, some wide, some tall."""
    return 64 + 8 * (index % 5), 96 - 8 * (index % 4)


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like smooth RGB image (low-frequency colour fields), where a reduced JPEG
    decode should barely differ from a full one."""
    a, b, c = np.random.default_rng(seed).uniform(0, 6.28, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    fields = [np.sin(a + xx / 30), np.cos(b + yy / 25), np.sin(c + (xx + yy) / 40)]
    return np.clip(np.stack(fields, -1) * 100 + 128, 0, 255).astype(np.uint8)


def tiny_jpeg(index: int) -> bytes:
    """The JPEG the builder stores at ``index``; index 0 is grayscale (a 1-channel JPEG)."""
    pixels = smooth_image(*jpeg_size(index), seed=index)
    image = Image.fromarray(pixels)
    if index == 0:
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class JsslTinyJpegs(tfds.core.GeneratorBasedBuilder):
    """12 smooth RGB JPEGs of varying sizes (64..96 px), labels index % 3."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(num_classes=TINY_CLASSES),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in JPEG_SPLITS}

    def _generate_examples(self, split: str):
        for i in range(JPEG_SPLITS[split]):
            yield i, {"image": tiny_jpeg(i), "label": i % TINY_CLASSES}


@dataclasses.dataclass(frozen=True)
class TinyJpegs:
    """What tests need to know about the prepared variable-size JPEG data set."""

    data_dir: Path
    name: str = "jssl_tiny_jpegs"
    size: int = JPEG_SPLITS["train"]

    @staticmethod
    def jpeg(index: int) -> bytes:
        return tiny_jpeg(index)

    @staticmethod
    def hw(index: int) -> tuple[int, int]:
        return jpeg_size(index)

    @staticmethod
    def smooth(height: int, width: int, seed: int) -> np.ndarray:
        return smooth_image(height, width, seed)


@pytest.fixture(scope="session")
def tiny_jpegs(tmp_path_factory: pytest.TempPathFactory) -> TinyJpegs:
    """'jssl_tiny_jpegs' prepared as ArrayRecord in a temporary data_dir."""
    data_dir = tmp_path_factory.mktemp("tfds_jpeg")
    JsslTinyJpegs(data_dir=str(data_dir)).download_and_prepare(file_format="array_record")
    return TinyJpegs(data_dir=data_dir)
