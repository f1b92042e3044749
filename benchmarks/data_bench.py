"""Two-view augmentation throughput of jssl's Grain pipeline, by number of worker processes.

Sources: the embedded MNIST subset (28 px, grayscale: what the default run trains on) and
synthetic 224x224 JPEG-encoded images decoded per record, as a real ImageNet-style pipeline
does. Throughput is in source images per second, each producing two augmented views.

These rows are the host path. On-device augmentation (`data.augment_on='device'`) moves only
source images; its cost is timed inside the step (`simclr-r18-32px-b32-devaug`) and side by side
with the other implementations in `benchmarks/aug_rate.py`.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from benchmarks.suites import DataEntry

ON_DEVICE_NOTE = "host augmentation; the device path is in the step entries and the augmentation comparison"


def make_jpegs(n: int, size: int, seed: int = 0, quality: int = 90) -> list[bytes]:
    """Photo-like synthetic JPEGs: smooth colour fields plus texture, so that compressed size
    and decode cost resemble natural images more than pure noise (which compresses badly)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 6.28, 3)
        base = np.stack([np.sin(a + 4 * xx), np.cos(b + 3 * yy), np.sin(c + 5 * (xx + yy))], -1)
        noise = rng.normal(0, 0.15, (size, size, 3))
        img = np.clip((base * 0.4 + 0.5 + noise) * 255, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def decode_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


class JpegSource:
    """An `ImageSource` of encoded JPEGs, decoded on access (in the Grain worker that reads it)."""

    def __init__(self, jpegs: list[bytes], labels: np.ndarray):
        self.jpegs = jpegs
        self.labels = labels.astype(np.int32)

    def __len__(self) -> int:
        return len(self.jpegs)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"image": decode_jpeg(self.jpegs[int(index)]), "label": self.labels[int(index)]}


def _source(entry: DataEntry):
    from jssl import data

    if entry.source == "mnist":
        return data.get_source("mnist", "train")
    if entry.source == "jpeg":
        return JpegSource(make_jpegs(entry.num_images, entry.resolution), np.zeros(entry.num_images, np.int32))
    raise ValueError(f"unknown data source {entry.source!r}; known: 'mnist', 'jpeg'")


# Batches each Grain worker buffers ahead (jssl.data.pipeline's per_worker_buffer_size).
_WORKER_BUFFER = 2


def pipeline_throughput(source, *, augment: str, batch: int, batches: int, workers: int) -> dict[str, Any]:
    """Steady-state images/s through `make_train_iterator`.

    Workers fill their buffers while the first batch is awaited (startup), so the buffered
    batches are drained before timing starts; otherwise timing reads a full buffer and
    reports an impossible rate.
    """
    from jssl import data

    it = data.make_train_iterator(source, global_batch_size=batch, num_views=2, augment=augment, seed=0, num_workers=workers)
    t0 = time.perf_counter()
    next(it)
    startup = time.perf_counter() - t0
    for _ in range(workers * _WORKER_BUFFER):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        b = next(it)
    elapsed = time.perf_counter() - t0
    assert b["view_0"].shape[0] == batch
    del it  # stops worker processes before the next setting starts its own
    return {"workers": workers, "images_per_s": batches * batch / elapsed, "first_batch_s": startup}


def run_data(entry: DataEntry) -> dict[str, Any]:
    source = _source(entry)
    rows = [
        pipeline_throughput(source, augment=entry.augment, batch=entry.batch, batches=entry.batches, workers=w)
        for w in entry.workers
    ]
    return {"kind": "data", "name": entry.name, "source": entry.source, "resolution": entry.resolution,
            "augment": entry.augment, "rows": rows, "on_device": ON_DEVICE_NOTE}
