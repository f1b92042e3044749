"""Grain input pipeline: sharded, shuffled, multi-view augmented batches.

The training stream is built entirely from Grain ``MapDataset`` index
transformations, in this order::

    source[process_index::process_count]   # disjoint shard per process
      .shuffle(seed)                        # per-epoch permutation
      .random_map(make_views, seed)         # rng from (seed, epoch, position)
      .batch(local_batch, drop_remainder=True)
      .repeat(None)                         # reshuffles / reseeds each epoch
      .to_iter_dataset()                    # checkpointable iterator
      .mp_prefetch(num_workers)             # optional worker processes

Because batching happens *before* ``to_iter_dataset``, every element that a
prefetch worker produces is a complete batch whose content is a pure function
of (seed, process_index, batch position); the number of workers and their
timing can therefore never change what the trainer sees, and the iterator
state is just "next batch position" (plus worker bookkeeping).

Checkpointing with Orbax: Grain ships ``grain.checkpoint.CheckpointSave`` /
``CheckpointRestore`` argument classes registered with Orbax;
:func:`iterator_state_args` returns the right one (see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from jssl.data import opencv
from jssl.data.augment import Augment, Step, parse_augment, parse_view
from jssl.data.checks import checked_label
from jssl.data.decode import center_square, decode_image, decode_views, encoded_bytes, is_encoded, record_image_shape
from jssl.data.sources import ImageSource

__all__ = [
    "MultiViewTransform",
    "view_specs",
    "iterator_state_args",
    "load_arrays",
    "make_train_iterator",
]

# ReadOptions for the batch-level MapDataset -> IterDataset step. Elements are
# whole batches, so a handful of threads / buffered batches is plenty; Grain's
# defaults (16 threads, 500 elements) would buffer hundreds of batches.
_READ_THREADS = 2
_READ_BUFFER = 4


class MultiViewTransform(grain.transforms.RandomMap):
    """Record -> ``{'view_0', ..., 'view_{V-1}', 'label'}`` from one Grain rng.

    A class rather than a closure so it pickles cleanly into worker processes.
    Views are drawn in order from the same generator, so view ``v`` is fixed by
    the rng Grain hands over for this position.

    Records holding encoded bytes (``TfdsSource(decode=False)``) are decoded here,
    once for all views, into ``channels`` channels, at the reduced JPEG size the
    views' crops allow (:func:`jssl.data.decode.decode_views`). With ``num_classes``, a label
    outside ``[0, num_classes)`` is a ValueError.
    """

    def __init__(self, specs: Sequence[str], *, channels: int | None = None, num_classes: int | None = None) -> None:
        self.specs = tuple(specs)
        self.channels = channels
        self.num_classes = num_classes
        self._ops: tuple[Augment, ...] = tuple(parse_augment(s) for s in self.specs)
        self._views: tuple[tuple[Step, ...], ...] = tuple(parse_view(s) for s in self.specs)

    def __getstate__(self) -> dict[str, Any]:
        # Ops are closures; ship the spec strings and re-parse on the other side.
        return {"specs": self.specs, "channels": self.channels, "num_classes": self.num_classes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["specs"], channels=state["channels"], num_classes=state.get("num_classes"))

    def random_map(self, element: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        image = element["image"]
        if is_encoded(image):
            views = decode_views(encoded_bytes(image), self._views, rng, channels=self.channels)
            out = {f"view_{v}": view for v, view in enumerate(views)}
        else:
            out = {f"view_{v}": op(image, rng) for v, op in enumerate(self._ops)}
        out["label"] = checked_label(element["label"], self.num_classes)
        return out


class SourceImage(grain.transforms.Map):
    """Record -> ``{'image', 'label'}``, for augmentation on the device.

    Without ``size`` the image passes unchanged (decoded if the record holds encoded bytes),
    and every image must have the size of the first one (``shape``): the batch is one array,
    and a clear error here beats Grain's failure to stack. With ``size``, every image is first
    brought to ``size x size`` on the host by resizing its shorter side to ``size`` and
    cropping the centre (:func:`jssl.data.decode.center_square`; a JPEG at least twice as
    large is decoded at reduced size), so data sets of varying image sizes work and each
    image moves a bounded number of bytes. The trade-off: the device's random crops then only
    ever see that central square, never the borders of wide or tall images. With ``num_classes``,
    a label outside ``[0, num_classes)`` is a ValueError.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        size: int | None = None,
        channels: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.size = size
        self.channels = channels
        self.num_classes = num_classes
        self.shape = tuple(shape) if size is None else (size, size, *tuple(shape)[2:])

    def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = element["image"]
        if self.size is not None:
            image = center_square(image, size=self.size, channels=self.channels)
        else:
            image = decode_image(image, channels=self.channels)
        image = np.asarray(image, dtype=np.uint8)
        if image.shape != self.shape:
            raise ValueError(
                f"data.augment_on='device' needs equally sized source images; got {image.shape} after "
                f"{self.shape}. Set data.device_source_size to crop every image to one size on the host, "
                "or use data.augment_on='host', for data sets of varying image sizes"
            )
        return {"image": image, "label": checked_label(element["label"], self.num_classes)}


AUGMENT_ON = ("auto", "host", "device")


def check_augment_on(augment_on: str) -> str:
    """`augment_on` if it is one of `AUGMENT_ON`, else a one-line ValueError."""
    if augment_on not in AUGMENT_ON:
        raise ValueError(f"data.augment_on must be one of {AUGMENT_ON}; got {augment_on!r}")
    return augment_on


def _augment_specs(augment: str | Sequence[str], num_views: int) -> list[str]:
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1; got {num_views}")
    if isinstance(augment, str):
        specs = [augment] * num_views
    else:
        specs = list(augment)
        if len(specs) != num_views or not all(isinstance(s, str) for s in specs):
            raise ValueError(
                f"augment must be one spec string or {num_views} spec strings (one per view); got {augment!r}"
            )
    # Parse eagerly: a typo in the config should fail at start-up, in the
    # main process, not inside a worker.
    for spec in specs:
        parse_augment(spec)
    return specs


def view_specs(augment: str, crops: Sequence[Sequence[Any]], num_views: int, *, method: str = "the method") -> list[str]:
    """One augmentation string per view: `augment` for all views, or `crops` = ((count, spec), ...).

    Multi-crop methods list their global crops first, then their local crops; views with the
    same output size form one forward pass of the model (see `jssl.methods.common`).
    """
    if not crops:
        return _augment_specs(augment, num_views)
    specs: list[str] = []
    for entry in crops:
        if (
            not isinstance(entry, (tuple, list))
            or len(entry) != 2
            or not isinstance(entry[0], int)
            or entry[0] < 1
            or not isinstance(entry[1], str)
        ):
            raise ValueError(f"data.crops entries must be (count >= 1, augmentation string) pairs; got {entry!r}")
        specs.extend([entry[1]] * entry[0])
    if len(specs) != num_views:
        counts = " + ".join(str(entry[0]) for entry in crops)
        raise ValueError(
            f"data.crops makes {counts} = {len(specs)} views but {method} needs {num_views}; "
            "make the counts add up to the method's crops (global first, then local)"
        )
    return _augment_specs(specs, num_views)


def _derive_seed(seed: int, process_index: int) -> int:
    # Folding the process index in keeps hosts from applying identical crop /
    # jitter parameters at the same stream position of their different shards.
    return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])


def _ensure_absl_flags_parsed() -> None:
    # Grain's multiprocess prefetch reads absl flags (worker profiling); outside
    # absl.app (pytest, notebooks, plain scripts) they are unparsed and reading
    # them raises. Marking them parsed keeps every flag at its default.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def init_worker(worker_index: int, worker_count: int) -> None:
    """Grain worker init.

    * Ignore Ctrl-C: it reaches the whole process group, and the main process stops the run
      itself (saving a checkpoint, `jssl.train.preemption`); a worker ends with the main
      process, not with a KeyboardInterrupt traceback of its own.
    * One OpenCV thread: the workers are the parallelism, and OpenCV's default (a thread per
      core in every worker) oversubscribes the cores. Two processes augmenting side by side on
      two cores drew 15-30% more images/s with one thread each (`benchmarks/RESULTS.md`); on
      that 2-core machine the whole Grain pipeline was the same either way. Without workers,
      OpenCV keeps its threads.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    opencv.set_threads(1)


def process_shard(
    source: Any, *, global_batch_size: int, process_index: int, process_count: int, records: str = "records"
) -> tuple[grain.MapDataset, int]:
    """This process's disjoint shard `source[process_index::process_count]` and its local batch size.

    Checks what every modality's iterator needs before Grain starts: a non-empty source, a valid
    process index, a global batch divisible by the process count and no larger than the shard
    allows. `records` names the shard's elements in the error ('clips', 'windows of 128 tokens').
    """
    if len(source) == 0:
        raise ValueError(f"source {source!r} is empty")
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"need 0 <= process_index < process_count; got {process_index} of {process_count}")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size ({global_batch_size}) must be a positive multiple of process_count ({process_count})"
        )
    local_batch = global_batch_size // process_count
    dataset = grain.MapDataset.source(source)[process_index::process_count]
    if local_batch > len(dataset):
        raise ValueError(
            f"local batch size {local_batch} (global {global_batch_size} / {process_count} processes) exceeds the "
            f"{len(dataset)} {records} in this process's shard of {source!r}; no full batch can be formed"
        )
    return dataset, local_batch


def batched_iterator(dataset: grain.MapDataset, *, local_batch: int, num_workers: int) -> grain.DatasetIterator:
    """Endless, checkpointable batches of `dataset` (last incomplete batch of an epoch dropped).

    Batching happens before `to_iter_dataset`, so the iterator state is a batch position and the
    output is the same for any `num_workers` (worker processes only prefetch).
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0; got {num_workers}")
    dataset = dataset.batch(local_batch, drop_remainder=True).repeat(None)
    iter_dataset = dataset.to_iter_dataset(
        grain.ReadOptions(num_threads=_READ_THREADS, prefetch_buffer_size=_READ_BUFFER)
    )
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        iter_dataset = iter_dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2),
            worker_init_fn=init_worker,
        )
    return iter(iter_dataset)


def make_train_iterator(
    source: ImageSource,
    *,
    global_batch_size: int,
    num_views: int,
    augment: str | Sequence[str],
    seed: int,
    num_workers: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    augment_on: str = "host",
    device_source_size: int | None = None,
    num_classes: int | None = None,
) -> grain.DatasetIterator:
    """Endless, checkpointable iterator of augmented multi-view batches.

    Yields ``{'view_0': uint8 [B, H, W, C], ..., 'label': int32 [B]}`` with
    ``B = global_batch_size // process_count``. Each process reads the disjoint
    shard ``source[process_index::process_count]``; each epoch of the shard is
    reshuffled and re-augmented from ``seed``, and the last incomplete batch of
    an epoch is dropped. Output is identical for any ``num_workers``.

    ``augment_on='device'``: yields ``{'image': uint8 [B, H, W, C], 'label'}``, the source
    images once each; the train step draws the views (`jssl.data.device_augment`). With
    ``device_source_size`` every image is first resized (shorter side) and centre-cropped to
    that square on the host (see :class:`SourceImage` for the trade-off); without it all
    source images must share one size.

    A source whose records hold encoded bytes is decoded in the workers, into the source's
    ``channels`` attribute's channel count if it has one. With ``num_classes``, a label outside
    ``[0, num_classes)`` stops the stream with a ValueError (sources whose labels are known up
    front are checked whole before, by :func:`jssl.data.checks.check_source_labels`).
    """
    if check_augment_on(augment_on) == "auto":
        raise ValueError(
            "make_train_iterator needs augment_on='host' or 'device'; 'auto' depends on the backend and "
            "the ops (jssl.data.image_inputs.resolve_augment_on settles it)"
        )
    if device_source_size is not None:
        if augment_on != "device":
            raise ValueError("data.device_source_size only applies with data.augment_on='device'")
        if isinstance(device_source_size, bool) or not isinstance(device_source_size, int) or device_source_size < 1:
            raise ValueError(f"data.device_source_size must be a positive int; got {device_source_size!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32); got {seed}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0; got {num_workers}")
    specs = _augment_specs(augment, num_views)
    dataset, local_batch = process_shard(
        source, global_batch_size=global_batch_size, process_index=process_index, process_count=process_count
    )
    derived = _derive_seed(seed, process_index)
    dataset = dataset.shuffle(seed=derived)
    channels = getattr(source, "channels", None)
    if augment_on == "device":
        from jssl.data.device_augment import parse_device_augment  # jax: not in host-path workers

        for spec in specs:  # an op without a device twin fails here, at start-up
            parse_device_augment(spec)
        dataset = dataset.map(
            SourceImage(record_image_shape(source), size=device_source_size, channels=channels, num_classes=num_classes)
        )
    else:
        dataset = dataset.random_map(MultiViewTransform(specs, channels=channels, num_classes=num_classes), seed=derived)
    return batched_iterator(dataset, local_batch=local_batch, num_workers=num_workers)


def iterator_state_args(iterator: grain.DatasetIterator, *, restore: bool = False) -> Any:
    """Orbax checkpoint args for a Grain iterator (save, or restore in place).

    Use one entry of an ``ocp.args.Composite``::

        mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=iterator_state_args(it)))
        restored = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=iterator_state_args(it, restore=True)))
        it = restored["data"]  # the same object, its state set from disk

    Grain's handler writes ``process_{i}-of-{n}.json`` per JAX process, so in
    multi-host runs every process saves its own shard's position.
    """
    import grain.checkpoint as grain_checkpoint

    if restore:
        return grain_checkpoint.CheckpointRestore(iterator)
    return grain_checkpoint.CheckpointSave(iterator)


def load_arrays(
    source: ImageSource, *, limit: int = 0, preprocess: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` records (0: all) as ``(uint8 [N, H, W, C], int32 [N])`` for evaluation.

    ``preprocess`` is an augmentation spec of deterministic ops applied to every image, e.g.
    ``"resize_shorter(256)|center_crop(224)"`` for data sets of varying image sizes (ImageNet).
    """
    n = len(source) if not limit else min(limit, len(source))
    if n == 0:
        raise ValueError(f"source {source!r} is empty")
    images = getattr(source, "images", None)
    labels = getattr(source, "labels", None)
    if isinstance(images, np.ndarray) and isinstance(labels, np.ndarray) and not preprocess.strip():
        return images[:n], labels[:n].astype(np.int32, copy=False)
    if hasattr(source, "__getitems__"):
        records = list(source.__getitems__(list(range(n))))
    else:
        records = [source[i] for i in range(n)]
    op = parse_augment(preprocess)
    rng = np.random.default_rng(0)  # the ops are deterministic; a fixed generator keeps them so
    out = [np.asarray(op(np.asarray(r["image"], dtype=np.uint8), rng), dtype=np.uint8) for r in records]
    shapes = {image.shape for image in out}
    if len(shapes) != 1:
        raise ValueError(
            f"evaluation needs equally sized images; got shapes {sorted(shapes)[:5]}. Set data.eval_preprocess, "
            "e.g. 'resize_shorter(256)|center_crop(224)'"
        )
    return np.stack(out), np.asarray([r["label"] for r in records], dtype=np.int32)
