"""The image side of the batch contract (`jssl.data.inputs`): views, normalization, pixels.

Batches hold uint8 views (`'view_0'`, ...) augmented on the host, or the source images once
(`'image'`) when the views are augmented on the device (`data.augment_on`, resolved by
`resolve_augment_on`), in which case the views are drawn inside the step
with keys from (seed, step, example index, view), so they do not depend on the mesh and a
resumed step redraws them. Either way the host only moves bytes: normalization to the model's
float inputs happens on the device, here, in `to_method` / `to_represent`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jssl.data import checks, pipeline, sources
from jssl.data.decode import record_image_shape
from jssl.data.inputs import EvalSet, FeatureEvals, Inputs
from jssl.config import DTYPES


def source_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Source options from the config; empty strings mean 'not set' (each source takes only its own)."""
    d = config.data
    options = dict(
        tfds_name=d.tfds_name, data_dir=d.data_dir, path=d.path, image_key=d.image_key, label_key=d.label_key
    )
    return {k: (os.path.expanduser(v) if k in ("data_dir", "path") else v) or None for k, v in options.items()}


def normalize(images: jax.Array, mean, std, dtype) -> jax.Array:
    """uint8 [..., C] -> standardized floats, on device (the host only moves bytes)."""
    x = images.astype(jnp.float32) / 255.0
    return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


def view_augmentations(config: ml_collections.ConfigDict, method_class: type) -> list[str]:
    """One augmentation string per view the method needs (from `data.augment` or `data.crops`)."""
    num_views = method_class.num_views(config)
    return pipeline.view_specs(config.data.augment, config.data.crops, num_views, method=config.method.name)


def device_augmentations(config: ml_collections.ConfigDict, method_class: type) -> list[Callable]:
    """One jit-able augment(images, keys) per view (a ValueError for ops without a device twin)."""
    from jssl.data.device_augment import parse_device_augment

    return [parse_device_augment(spec) for spec in view_augmentations(config, method_class)]


def resolve_augment_on(
    config: ml_collections.ConfigDict, method_class: type, source_shape: Callable[[], tuple[int, ...] | None],
    *, backend: str | None = None,
) -> tuple[str, str]:
    """Where the views are augmented, and why: ``('host' | 'device', reason)``.

    ``'host'`` and ``'device'`` are taken as configured. ``'auto'`` picks the device wherever
    it can and pays: on an accelerator (``backend`` other than ``'cpu'``; default: jax's),
    when every view's ops have device twins and the source images share one size
    (``source_shape()``, called only then, returns it; or ``data.device_source_size`` brings
    them to one). On the CPU backend the "device" is the same cores, where XLA's versions of
    the ops run about 7x slower per core than the host's OpenCV ones (`benchmarks/RESULTS.md`),
    so ``'auto'`` stays on the host there.
    """
    configured = pipeline.check_augment_on(config.data.get("augment_on", "auto"))
    if configured != "auto":
        return configured, "configured"
    backend = backend or jax.default_backend()
    if backend == "cpu":
        return "host", "auto: the CPU backend (XLA's ops are slower there than the host's OpenCV ones)"
    try:
        device_augmentations(config, method_class)
    except ValueError as error:
        return "host", f"auto: an op has no device twin ({error})"
    if not config.data.get("device_source_size", 0) and source_shape() is None:
        return "host", "auto: source images of varying size (data.device_source_size=N would allow the device)"
    return "device", f"auto: the {backend} backend"


def load_eval_data(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """Training split (the kNN bank / probe training set) and held-out split, as arrays.

    Labels are checked against `data.num_classes`, and held-out images found verbatim in the
    bank are counted (too many: a ValueError, see `jssl.data.checks`). Besides the `train_*` /
    `test_*` arrays the dict holds `heldout_in_bank` (0-d int) and `split_note` (0-d str: how
    jssl made the splits, empty for a data set's own splits), for `results.json`.
    """
    d = config.data
    checks.check_distinct_splits(d.train_split, d.eval_split)
    out, notes = {}, []
    for prefix, split in (("train", d.train_split), ("test", d.eval_split)):
        source = sources.get_source(d.name, split, **source_options(config))
        images, labels = pipeline.load_arrays(source, limit=d.max_eval_examples, preprocess=d.eval_preprocess)
        checks.check_labels(labels, d.num_classes, split=split)
        out[f"{prefix}_images"], out[f"{prefix}_labels"] = images, labels
        if getattr(source, "note", "") and source.note not in notes:
            notes.append(source.note)
    count = checks.check_heldout(
        out["train_images"], out["test_images"], train_split=d.train_split, eval_split=d.eval_split
    )
    out["heldout_in_bank"], out["split_note"] = np.asarray(count), np.asarray("; ".join(notes))
    return out


def image_eval_set(config: ml_collections.ConfigDict, eval_data: dict[str, np.ndarray]) -> EvalSet:
    """`load_eval_data`'s arrays as an `EvalSet` (inputs under `'image'`)."""
    info: dict[str, Any] = {"train_split": config.data.train_split, "test_split": config.data.eval_split}
    if "heldout_in_bank" in eval_data:
        info["heldout_in_bank"] = int(eval_data["heldout_in_bank"])
    if str(eval_data.get("split_note", "")):
        info["split_note"] = str(eval_data["split_note"])
    return EvalSet(
        train={"image": eval_data["train_images"]},
        test={"image": eval_data["test_images"]},
        train_labels=eval_data["train_labels"],
        test_labels=eval_data["test_labels"],
        num_classes=config.data.num_classes,
        task="class label",
        info=info,
    )


class ImageInputs(Inputs):
    """Image views for every vision and generative method (`Method.inputs = 'images'`)."""

    kind = "images"
    has_train_labels = True

    def __init__(
        self, config: ml_collections.ConfigDict, *, method_class: type, image_shape: tuple[int, ...] | None = None
    ):
        super().__init__(config, method_class=method_class)
        self.view_augmentations = view_augmentations(config, method_class)
        self.num_views = len(self.view_augmentations)
        self._method_class = method_class
        self._where: tuple[str, str] | None = None
        self._on_device: list[Callable] | None = None
        if config.data.get("augment_on", "auto") != "auto":
            self._resolve()  # a bad value or an op without a device twin fails here, at once
        self._image_shape = tuple(image_shape) if image_shape is not None else None
        self._train_source = None
        d = config.data
        if len(d.mean) != len(d.std):
            raise ValueError(f"data.mean {d.mean} and data.std {d.std} differ in length")
        self.mean, self.std = tuple(d.mean), tuple(d.std)

    def _resolve(self) -> tuple[str, str]:
        if self._where is None:
            self._where = resolve_augment_on(
                self.config, self._method_class, lambda: sources.fixed_image_shape(self.train_source())
            )
            if self._where[0] == "device":
                self._on_device = device_augmentations(self.config, self._method_class)
        return self._where

    @property
    def augment_on(self) -> str:
        """``'host'`` or ``'device'``: ``data.augment_on`` with ``'auto'`` resolved (:func:`resolve_augment_on`)."""
        return self._resolve()[0]

    @property
    def on_device(self) -> list[Callable] | None:
        """One jit-able augment(images, keys) per view when augmenting on the device, else None."""
        self._resolve()
        return self._on_device

    # ---- host side --------------------------------------------------------------------------
    def train_source(self):
        if self._train_source is None:
            c = self.config
            # data.decode=False is passed as an option only when set: sources other than tfds reject it.
            decode = None if c.data.get("decode", True) else False
            source = sources.get_source(c.data.name, c.data.train_split, **source_options(c), decode=decode)
            # The online probe learns from these labels: checked before training, not as NaNs.
            checks.check_source_labels(source, c.data.num_classes, split=c.data.train_split)
            self._train_source = source
        return self._train_source

    @property
    def image_shape(self) -> tuple[int, ...]:
        if self._image_shape is None:
            self._image_shape = tuple(record_image_shape(self.train_source()))
        return self._image_shape

    def model_kwargs(self) -> dict[str, Any]:
        channels = self.image_shape[-1]
        if len(self.mean) not in (1, channels):
            raise ValueError(f"data.mean has {len(self.mean)} entries but images have {channels} channels")
        return {"in_channels": channels}

    def train_iterator(self, *, process_index: int, process_count: int) -> Any:
        c = self.config
        where, why = self._resolve()
        source_size = c.data.get("device_source_size", 0) or None
        if where == "host" and why != "configured":
            source_size = None  # 'auto' settled on the host, where a device source size means nothing
        return pipeline.make_train_iterator(
            self.train_source(),
            global_batch_size=c.global_batch_size,
            num_views=self.num_views,
            augment=self.view_augmentations,
            seed=c.seed,
            num_workers=c.data.num_workers,
            process_index=process_index,
            process_count=process_count,
            augment_on=where,
            device_source_size=source_size,
            num_classes=c.data.num_classes,
        )

    def eval_set(self) -> EvalSet:
        return image_eval_set(self.config, load_eval_data(self.config))

    def baselines(self, eval_set: EvalSet, feature_evals: FeatureEvals) -> dict[str, dict[str, float]]:
        """Raw pixels (scaled to [0, 1]) as features: what the encoder must beat."""
        pixels = [s["image"].reshape(len(s["image"]), -1).astype(np.float32) / 255.0 for s in (eval_set.train, eval_set.test)]
        return {"raw_pixels": feature_evals(*pixels)}

    def describe(self) -> dict[str, Any]:
        where, why = self._resolve()
        return {"augment_on": where} if why == "configured" else {"augment_on": where, "augment_on_why": why}

    # ---- device side ------------------------------------------------------------------------
    def to_method(self, batch: dict[str, jax.Array], *, step: jax.Array) -> list[jax.Array]:
        dtype = _compute_dtype(self.config)
        if self.on_device is None:
            views = [batch[f"view_{i}"] for i in range(self.num_views)]
        else:
            views = self._augment_views(batch["image"], step)
        return [normalize(v, self.mean, self.std, dtype) for v in views]

    def _augment_views(self, images: jax.Array, step: jax.Array) -> list[jax.Array]:
        # Keys from global quantities only (seed, step, position in the global batch, view): the
        # views do not depend on the mesh and a resumed step redraws them. The constraint keeps
        # each device drawing and augmenting its own shard of the batch.
        from jssl.data.device_augment import example_keys

        index = jnp.arange(images.shape[0])
        views = []
        for v, augment in enumerate(self.on_device):
            keys = self.constrain_batch(example_keys(seed=self.config.seed, step=step, example_index=index, view=v))
            views.append(self.constrain_batch(augment(images, keys)))
        return views

    def to_represent(self, inputs: dict[str, jax.Array]) -> jax.Array:
        return normalize(inputs["image"], self.mean, self.std, _compute_dtype(self.config))

    def to_pixels(self, x: jax.Array) -> jax.Array:
        """Normalized images -> float pixels in [0, 1] (up to clipping), for pictures."""
        return x.astype(jnp.float32) * jnp.asarray(self.std, jnp.float32) + jnp.asarray(self.mean, jnp.float32)

    def from_samples(self, samples: jax.Array) -> jax.Array:
        # uint8, as real images reach an encoder: samples are scored as they would be saved.
        return jnp.round(jnp.clip(self.to_pixels(samples), 0.0, 1.0) * 255.0).astype(jnp.uint8)


def _compute_dtype(config: ml_collections.ConfigDict) -> Any:
    return DTYPES[config.model.dtype]
