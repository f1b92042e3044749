"""Metric writers behind one interface: TensorBoard event files, a JSONL file, PNG pictures.

TensorBoard events are written with tensorboardX, which needs no TensorFlow. Only process 0
writes, so multi-host runs produce one set of files. Pictures (a method's reconstructions or
samples, see `Method.pictures`) are tiled into one grid per name and written both as a
TensorBoard image and as PNG files (Pillow) under `<workdir>/pictures/`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping

import jax
import numpy as np


PICTURES_DIR = "pictures"


def picture_grid(pictures: np.ndarray, *, pad: int = 2, pad_value: float = 1.0, min_side: int = 64) -> np.ndarray:
    """Tiles `[rows, cols, h, w, c]` (or `[n, h, w, c]`: one row) floats in [0, 1] into uint8 `[H, W, c]`.

    Pictures are separated by `pad` pixels of `pad_value` (white), so neighbouring dark images
    (MNIST digits) stay apart. Pictures smaller than `min_side` are enlarged by an integer
    factor (nearest neighbour: pixels stay visible as pixels), so 28 px digits can be judged
    by eye. Values outside [0, 1] are clipped.
    """
    x = np.asarray(pictures, dtype=np.float32)
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5:
        raise ValueError(f"pictures must be [rows, cols, h, w, c] or [n, h, w, c]; got shape {x.shape}")
    factor = max(1, -(-min_side // max(x.shape[2], x.shape[3])))
    x = x.repeat(factor, axis=2).repeat(factor, axis=3)
    rows, cols, h, w, c = x.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.float32)
    for r in range(rows):
        for k in range(cols):
            top, left = pad + r * (h + pad), pad + k * (w + pad)
            out[top : top + h, left : left + w] = x[r, k]
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


class MetricWriter:
    """Writes scalars to `<workdir>/tensorboard/` and `<workdir>/metrics.jsonl`, pictures as PNGs."""

    def __init__(self, workdir: str, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.workdir = workdir
        self._tb = None
        self._jsonl = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
        for name, value in clean.items():
            self._tb.add_scalar(name, value, global_step=step)
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **clean}) + "\n")

    def write_pictures(self, step: int, pictures: Mapping[str, np.ndarray]) -> dict[str, str]:
        """One grid per name (see `picture_grid`): TensorBoard image `pictures/<name>` and PNGs.

        Writes `<workdir>/pictures/<name>_step<step>.png` and `<workdir>/pictures/<name>.png`
        (the latest, replaced atomically). Returns `{name: path of the step's PNG}`.
        """
        if not self.enabled:
            return {}
        from PIL import Image

        directory = os.path.join(self.workdir, PICTURES_DIR)
        os.makedirs(directory, exist_ok=True)
        paths = {}
        for name, value in pictures.items():
            grid = picture_grid(value)
            self._tb.add_image(f"pictures/{name}", grid, global_step=step, dataformats="HWC")
            image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
            path = os.path.join(directory, f"{name}_step{int(step)}.png")
            image.save(path)
            latest = os.path.join(directory, f"{name}.png")
            image.save(latest + ".tmp", format="PNG")
            os.replace(latest + ".tmp", latest)
            paths[name] = path
        return paths

    def write_texts(self, step: int, texts: Mapping[str, str]) -> dict[str, str]:
        """Text (generated samples) as TensorBoard text `samples/<name>` and `<workdir>/samples/<name>_step<step>.txt`.

        Returns `{name: path of the file}`.
        """
        if not self.enabled:
            return {}
        directory = os.path.join(self.workdir, "samples")
        os.makedirs(directory, exist_ok=True)
        paths = {}
        for name, text in texts.items():
            self._tb.add_text(f"samples/{name}", str(text), global_step=step)
            path = os.path.join(directory, f"{name}_step{int(step)}.txt")
            with open(path, "w") as f:
                f.write(str(text))
            paths[name] = path
        return paths

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()
