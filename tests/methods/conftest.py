"""A tiny data set with ImageNet's structure, built locally as TFDS ArrayRecord.

Like `imagenet2012`: JPEG images of varying sizes, a 1000-way `label`, a `file_name`. The
ImageNet configs run on it end to end with the model shrunk by overrides.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

SPLITS = {"train": 32, "validation": 16}


class JsslTinyImagenet(tfds.core.GeneratorBasedBuilder):
    """32 + 16 random RGB JPEGs, 40-72 px per side, labels spread over 1000 classes."""

    VERSION = tfds.core.Version("1.0.0")
    # A builder defined in a test package has no code directory of checksums; without this TFDS
    # looks for one through `importlib_resources`, which is not installed.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(num_classes=1000),
                    "file_name": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str):
        for i in range(SPLITS[split]):
            rng = np.random.default_rng([len(split), i])
            h, w = rng.integers(40, 73, 2)
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buffer, format="JPEG")
            label = int(rng.integers(0, 1000))
            yield i, {"image": buffer.getvalue(), "label": label, "file_name": f"{split}_{i}.JPEG"}


@pytest.fixture(scope="session")
def tiny_imagenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(tfds name, data_dir) of the prepared tiny ImageNet-structured data set."""
    data_dir = tmp_path_factory.mktemp("tfds_imagenet")
    JsslTinyImagenet(data_dir=str(data_dir)).download_and_prepare(file_format="array_record")
    return "jssl_tiny_imagenet", str(data_dir)
