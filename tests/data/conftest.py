"""Shared fixtures for the data tests: a tiny TFDS data set built locally.

The builder writes ArrayRecord files without TensorFlow because every image is
handed to the ``Image`` feature as already-encoded PNG bytes.
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
