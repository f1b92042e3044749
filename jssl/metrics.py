"""Metric writers behind one interface: TensorBoard event files and a JSONL file.

TensorBoard events are written with tensorboardX, which needs no TensorFlow. Only process 0
writes, so multi-host runs produce one set of files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping

import jax
import numpy as np


class MetricWriter:
    """Writes scalars to `<workdir>/tensorboard/` and `<workdir>/metrics.jsonl`."""

    def __init__(self, workdir: str, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
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

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()
