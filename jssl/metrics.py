"""Metric writers behind one interface: TensorBoard event files, a JSONL file, tracked runs, PNG pictures.

`MetricWriter` is what the trainer talks to. It fans scalars, images and texts out to the
backends named in `config.logging.writers` (`WRITERS`: 'tensorboard', 'jsonl', and the optional
'wandb' and 'mlflow' of `jssl.tracking`). TensorBoard events are written with tensorboardX,
which needs no TensorFlow. Only process 0 writes, so multi-host runs produce one set of files.
Pictures (a method's reconstructions or samples, see `Method.pictures`) are tiled into one grid
per name and written as an image to every backend and as PNG files (Pillow) under
`<workdir>/pictures/`.

A resumed run (`resume_step`) supersedes what the killed run logged after its last checkpoint,
so every step appears once: `metrics.jsonl` is rewritten without those rows, TensorBoard is told
to discard them (`purge_step`), and tracked runs keep the first value they were sent for a step
(see `jssl.tracking`).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib.util
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Callable

import jax
import numpy as np

log = logging.getLogger("jssl")

PICTURES_DIR = "pictures"
JSONL_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
DEFAULT_WRITERS = "tensorboard,jsonl"


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


# ==================================================================================================
# Backends
# ==================================================================================================


def save_png(picture: np.ndarray, path: str) -> None:
    """Writes uint8 `picture` (`[H, W]`, `[H, W, 1]` or `[H, W, 3|4]`) as a PNG, replacing `path` atomically."""
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(picture[..., 0] if picture.ndim == 3 and picture.shape[-1] == 1 else picture).save(
        path + ".tmp", format="PNG"
    )
    os.replace(path + ".tmp", path)


class Writer(abc.ABC):
    """One backend. Images are uint8 `[H, W, C]`; names may contain '/' (sections)."""

    @abc.abstractmethod
    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

    @abc.abstractmethod
    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None: ...

    @abc.abstractmethod
    def write_texts(self, step: int, texts: Mapping[str, str]) -> None: ...

    def flush(self) -> None:
        pass

    @abc.abstractmethod
    def close(self) -> None: ...


@dataclasses.dataclass
class RunInfo:
    """What a backend is told when it is opened.

    `resume_step`: the step the run restarts from (None: a run that logs from scratch, appending);
    `finished`: the run had already ended there, so it writes its `final/` rows at that step again;
    `options`: `config.logging` (or a dict with the same keys); `run_config`: the whole config as
    a dict, for trackers that record it.
    """

    workdir: str
    resume_step: int | None = None
    finished: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    run_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class TensorBoardWriter(Writer):
    """`<workdir>/tensorboard/` event files; a resumed run tells TensorBoard to discard later events.

    Events are written and flushed as they come, like the JSONL's lines: tensorboardX's
    `SummaryWriter` hands them to a thread that writes them up to two minutes later, so a killed
    run lost its last steps before the checkpoint (which the resumed run does not log again).
    """

    def __init__(self, info: RunInfo, *, replay: list[dict[str, Any]] | None = None):
        """`replay`: for a `finished` run, the JSONL rows kept at its last step (None: unknown)."""
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        directory = os.path.join(info.workdir, TENSORBOARD_DIR)
        purge_step = None
        if info.resume_step is not None and _has_event_files(directory):
            # TensorBoard drops every earlier event at step >= purge_step when it reads a file
            # that starts so. A finished run writes its final rows and pictures at its last step
            # again: that step is purged too, and its other rows are replayed from the JSONL.
            rewrites_last = info.finished and replay is not None
            purge_step = info.resume_step if rewrites_last else info.resume_step + 1
        os.makedirs(directory, exist_ok=True)
        # Event file names hold the time in whole seconds and the host; a writer reopened within
        # the same second would truncate the previous file. The suffix keeps them apart, in order.
        self._file = EventsWriter(os.path.join(directory, "events"), f".{time.time_ns()}")
        self._event = Event
        if purge_step is not None:  # what tensorboardX's SummaryWriter(purge_step=...) writes
            self._file.write_event(Event(step=purge_step, file_version="brain.Event:2"))
            self._file.write_event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
            if purge_step == info.resume_step:
                for row in replay:
                    self.write_scalars(row["step"], {k: v for k, v in row.items() if k not in ("step", "time")})
        self._file.flush()

    def _write(self, step: int, summaries) -> None:
        for summary in summaries:
            self._file.write_event(self._event(wall_time=time.time(), step=int(step), summary=summary))
        self._file.flush()

    def write_scalars(self, step, scalars):
        from tensorboardX import summary

        self._write(step, [summary.scalar(name, value) for name, value in scalars.items()])

    def write_images(self, step, images):
        from tensorboardX import summary

        self._write(step, [summary.image(name, image, dataformats="HWC") for name, image in images.items()])

    def write_texts(self, step, texts):
        from tensorboardX import summary

        self._write(step, [summary.text(name, text) for name, text in texts.items()])

    def flush(self):
        self._file.flush()

    def close(self):
        self._file.close()


class JsonlWriter(Writer):
    """`<workdir>/metrics.jsonl`: one line per `write_scalars` call, `{"step", "time", name: value}`."""

    def __init__(self, info: RunInfo):
        self.path = os.path.join(info.workdir, JSONL_NAME)
        self._file = open(self.path, "a", buffering=1)

    def write_scalars(self, step, scalars):
        self._file.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")

    def write_images(self, step, images):
        pass  # scalars only: images go to the other backends and PNG files

    def write_texts(self, step, texts):
        pass  # scalars only: texts go to the other backends and text files

    def flush(self):
        self._file.flush()

    def close(self):
        self._file.close()


def _wandb(info: RunInfo) -> Writer:
    from jssl.tracking import WandbWriter

    return WandbWriter(info)


def _mlflow(info: RunInfo) -> Writer:
    from jssl.tracking import MlflowWriter

    return MlflowWriter(info)


# `config.logging.writers` name -> backend; wandb and mlflow import their (optional) packages
# only when selected.
WRITERS: dict[str, Callable[[RunInfo], Writer]] = {
    "tensorboard": TensorBoardWriter,
    "jsonl": JsonlWriter,
    "wandb": _wandb,
    "mlflow": _mlflow,
}


def parse_writers(spec: str | None) -> list[str]:
    """'tensorboard,jsonl' -> ['tensorboard', 'jsonl']; unknown names are a ValueError."""
    names = []
    for name in (spec if spec is not None else DEFAULT_WRITERS).split(","):
        name = name.strip().lower()
        if not name or name in names:
            continue
        if name not in WRITERS:
            raise ValueError(
                f"unknown logging.writers entry {name!r}; known: {', '.join(sorted(WRITERS))} "
                f"(comma-separated, e.g. --config.logging.writers=tensorboard,jsonl,wandb)"
            )
        names.append(name)
    return names


# The optional backends' import name and pip package.
OPTIONAL = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow-skinny")}


def missing_package_error(writer: str) -> ValueError:
    package = OPTIONAL[writer][1]
    return ValueError(
        f"logging.writers includes {writer!r} but {package} is not installed: pip install 'jssl[tracking]'"
    )


def check_writers(config) -> None:
    """Fails before any work when `config.logging.writers` names an unknown or uninstalled backend."""
    for name in parse_writers((config.get("logging") or {}).get("writers", DEFAULT_WRITERS)):
        if name in OPTIONAL and importlib.util.find_spec(OPTIONAL[name][0]) is None:
            raise missing_package_error(name)


# ==================================================================================================
# Resuming
# ==================================================================================================


def _has_event_files(directory: str) -> bool:
    return os.path.isdir(directory) and any("tfevents" in name for name in os.listdir(directory))


def _is_final_row(row: Mapping[str, Any]) -> bool:
    names = [k for k in row if k not in ("step", "time")]
    return bool(names) and all(k.startswith("final/") for k in names)


def truncate_jsonl(path: str, step: int, *, finished: bool = False) -> list[dict[str, Any]]:
    """Rewrites `path` (atomically) without the rows a run resumed at `step` will write again.

    Kept: rows at steps <= `step`, except, when the run had `finished` at `step`, its `final/`
    rows there (the rerun writes them anew). Lines that do not parse (cut by a kill) are dropped.
    Returns the kept rows at `step` itself.
    """
    if not os.path.exists(path):
        return []
    kept, at_step, dropped = [], [], 0
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                dropped += 1
                continue
            row_step = row.get("step") if isinstance(row, dict) else None
            rewritten = finished and row_step == step and _is_final_row(row)
            if not isinstance(row_step, int) or row_step > step or rewritten:
                dropped += 1
                continue
            kept.append(json.dumps(row) + "\n")
            if row_step == step:
                at_step.append(row)
    if dropped:
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
        log.info("%s: %d rows dropped that the run, resumed at step %d, logs again", path, dropped, step)
    return at_step


# ==================================================================================================
# The writer the trainer uses
# ==================================================================================================


class MetricWriter:
    """Scalars, images and texts to every selected backend (`WRITERS`); pictures and texts also as files.

    `writers`: comma-separated names (default 'tensorboard,jsonl'). `resume_step`/`finished`: see
    `RunInfo` (None: append to whatever is there). `options`: `config.logging`; `run_config`: the
    config as a dict (trackers record it). Only process 0 writes unless `enabled` says otherwise.
    """

    def __init__(
        self,
        workdir: str,
        *,
        enabled: bool | None = None,
        writers: str | None = None,
        resume_step: int | None = None,
        finished: bool = False,
        options: Mapping[str, Any] | None = None,
        run_config: Mapping[str, Any] | None = None,
    ):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.workdir = workdir
        names = parse_writers(writers)  # on every process: a typo fails everywhere, at once
        self.jsonl_path = os.path.join(workdir, JSONL_NAME) if "jsonl" in names else None
        self._writers: dict[str, Writer] = {}
        if not self.enabled:
            return
        info = RunInfo(workdir, resume_step, finished, dict(options or {}), dict(run_config or {}))
        replay = None  # the rows kept at `resume_step`, when metrics.jsonl says what they were
        jsonl = os.path.join(workdir, JSONL_NAME)
        if resume_step is not None and os.path.exists(jsonl):
            replay = truncate_jsonl(jsonl, resume_step, finished=finished)
        try:
            for name in names:
                if name == "tensorboard":
                    self._writers[name] = TensorBoardWriter(info, replay=replay)
                else:
                    self._writers[name] = WRITERS[name](info)
        except BaseException:
            self.close()
            raise

    @classmethod
    def for_run(cls, config, workdir: str, *, resume_step: int | None, finished: bool) -> "MetricWriter":
        """The writer `config.logging` asks for, for a run that (re)starts at `resume_step`."""
        options = config.get("logging") or {}
        return cls(
            workdir,
            writers=options.get("writers", DEFAULT_WRITERS),
            resume_step=resume_step,
            finished=finished,
            options=options,
            run_config=config.to_dict(),
        )

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
        for writer in self._writers.values():
            writer.write_scalars(int(step), clean)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """uint8 `[H, W, C]` images (plots, picture grids) to every backend, under their names."""
        if self.enabled:
            for writer in self._writers.values():
                writer.write_images(int(step), images)

    def write_pictures(self, step: int, pictures: Mapping[str, np.ndarray]) -> dict[str, str]:
        """One grid per name (see `picture_grid`): image `pictures/<name>` and PNGs.

        Writes `<workdir>/pictures/<name>_step<step>.png` and `<workdir>/pictures/<name>.png`
        (the latest, replaced atomically). Returns `{name: path of the step's PNG}`.
        """
        if not self.enabled:
            return {}
        directory = os.path.join(self.workdir, PICTURES_DIR)
        paths, grids = {}, {}
        for name, value in pictures.items():
            grid = picture_grid(value)
            grids[f"pictures/{name}"] = grid
            path = os.path.join(directory, f"{name}_step{int(step)}.png")
            save_png(grid, path)
            save_png(grid, os.path.join(directory, f"{name}.png"))
            paths[name] = path
        self.write_images(step, grids)
        return paths

    def write_texts(self, step: int, texts: Mapping[str, str]) -> dict[str, str]:
        """Text (generated samples) as text `samples/<name>` and `<workdir>/samples/<name>_step<step>.txt`.

        Returns `{name: path of the file}`.
        """
        if not self.enabled:
            return {}
        directory = os.path.join(self.workdir, "samples")
        os.makedirs(directory, exist_ok=True)
        paths = {}
        for name, text in texts.items():
            path = os.path.join(directory, f"{name}_step{int(step)}.txt")
            with open(path, "w") as f:
                f.write(str(text))
            paths[name] = path
        for writer in self._writers.values():
            writer.write_texts(int(step), {f"samples/{name}": str(text) for name, text in texts.items()})
        return paths

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
