"""Training progress a person can read: a tqdm bar on a terminal, plain log lines in a batch job.

Under SLURM or Kubernetes the output goes to a file, where a tqdm bar becomes one endless line of
carriage returns. So the bar is drawn only when its stream (stderr, where tqdm and the log both
write) is a terminal and `config.progress_bar` is on; otherwise every log step is one line of the
`jssl` log: `step 120/500 loss 4.1234 3.2 steps/s ETA 1m58s`. Saved checkpoints and evaluations
get one line each in both modes. Only process 0 reports.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from typing import IO

log = logging.getLogger("jssl")


def format_duration(seconds: float) -> str:
    """58s, 1m58s, 2h03m, 3d04h: two units at most."""
    if not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_values(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


class Progress:
    """Reports a run from `initial` to `total` steps; the trainer calls one method per event.

    `bar`: draw a tqdm bar (None: when `progress_bar` and `stream` is a terminal). `stream`:
    where the bar goes (default stderr). `enabled=False` (other processes) reports nothing.
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        *,
        enabled: bool = True,
        progress_bar: bool = True,
        bar: bool | None = None,
        stream: IO[str] | None = None,
        async_checkpoints: bool = False,
    ):
        self.total = total
        self.enabled = enabled and initial < total
        self.async_checkpoints = async_checkpoints
        stream = sys.stderr if stream is None else stream
        if bar is None:
            bar = progress_bar and _isatty(stream)
        self._stream, self._bar = stream, None
        if self.enabled and bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, file=stream
            )

    @classmethod
    def for_run(cls, config, start_step: int, *, enabled: bool) -> "Progress":
        """The reporter for `train`: `config.total_steps`, `progress_bar`, `checkpoint.async_save`."""
        return cls(
            config.total_steps,
            start_step,
            enabled=enabled,
            progress_bar=config.progress_bar,
            async_checkpoints=config.checkpoint.async_save,
        )

    @property
    def draws_bar(self) -> bool:
        return self._bar is not None

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self._stream)  # above the bar, which is redrawn below it
        else:
            log.info("%s", text)

    def advance(self) -> None:
        """One step done."""
        if self._bar is not None:
            self._bar.update(1)

    def logged(self, step: int, scalars: Mapping[str, float]) -> None:
        """A log step: the bar's postfix, or `step 120/500 loss 4.1234 3.2 steps/s ETA 1m58s`."""
        if not self.enabled:
            return
        loss, rate = scalars.get("loss"), scalars.get("steps_per_second")
        if self._bar is not None:
            postfix = {}
            if loss is not None:
                postfix["loss"] = f"{loss:.4f}"
            if "learning_rate" in scalars:
                postfix["lr"] = f"{scalars['learning_rate']:.3g}"
            self._bar.set_postfix(postfix)
            return
        parts = [f"step {step}/{self.total}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if rate:
            parts.append(f"{rate:.3g} steps/s ETA {format_duration((self.total - step) / rate)}")
        log.info("%s", " ".join(parts))

    def checkpoint_saved(self, step: int, directory: str) -> None:
        if self.enabled:
            note = " (finishing in the background)" if self.async_checkpoints else ""
            self._line(f"step {step}: checkpoint saved in {directory}{note}")

    def evaluated(self, step: int, results: Mapping[str, float]) -> None:
        if self.enabled:
            self._line(f"step {step} eval: {format_values(results)}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False
