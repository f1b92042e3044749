"""Experiment trackers as metric backends: Weights & Biases and MLflow (`config.logging.writers`).

Both are optional (`pip install 'jssl[tracking]'`) and imported only when selected. Each keeps
its run id in `<workdir>/tracking/<name>.json`, so a run restarted in the same workdir logs to
the same tracked run. A tracked run cannot take back what it was sent, so after a restart the
first value sent for a step wins: steps up to the last one the killed run sent (also kept in
that file) are not sent again. jssl's resumed steps repeat the killed run's losses exactly, so
nothing is lost.

Where the data goes: W&B follows `logging.wandb_mode` or `$WANDB_MODE` ('offline' writes
`<dir>/wandb/offline-run-*`, synced later with `wandb sync`) under `logging.wandb_dir`,
`$WANDB_DIR` or the workdir. MLflow logs to `logging.mlflow_tracking_uri`,
`$MLFLOW_TRACKING_URI`, or a file store in `<workdir>/mlruns` (`mlflow ui --backend-store-uri`
reads it).
"""

from __future__ import annotations

import html
import importlib
import json
import logging
import os
import pathlib
import time
from collections.abc import Mapping
from typing import Any

from jssl.metrics import OPTIONAL, RunInfo, Writer, missing_package_error

log = logging.getLogger("jssl")

TRACKING_DIR = "tracking"


def _require(writer: str):
    try:
        return importlib.import_module(OPTIONAL[writer][0])
    except ImportError as e:
        raise missing_package_error(writer) from e


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class TrackedRun(Writer):
    """What both trackers share: the run id and last step sent, kept in the workdir."""

    name = ""

    def __init__(self, info: RunInfo):
        self.path = os.path.join(info.workdir, TRACKING_DIR, f"{self.name}.json")
        self.state: dict[str, Any] = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.state = json.load(f)
        # Steps up to here reached the tracked run before a restart; they are not sent again.
        self.floor = self.state.get("last_step")
        self.run_name = info.options.get("run_name") or os.path.basename(os.path.normpath(info.workdir))

    @property
    def run_id(self) -> str | None:
        return self.state.get("run_id")

    def save_state(self, **changes: Any) -> None:
        self.state.update(changes)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.state, f)
        os.replace(self.path + ".tmp", self.path)

    def accept(self, step: int) -> bool:
        """Whether `step` is new to the tracked run; records it as sent."""
        if self.floor is not None and step <= self.floor:
            return False
        if step > self.state.get("last_step", -1):
            self.save_state(last_step=step)
        return True


class WandbWriter(TrackedRun):
    """A Weights & Biases run (online, or offline files for `wandb sync`)."""

    name = "wandb"

    def __init__(self, info: RunInfo):
        super().__init__(info)
        self._wandb = _require("wandb")
        o = info.options
        directory = o.get("wandb_dir") or os.environ.get("WANDB_DIR") or info.workdir
        os.makedirs(directory, exist_ok=True)
        self._run = self._wandb.init(
            project=o.get("wandb_project") or "jssl",
            entity=o.get("wandb_entity") or None,
            name=self.run_name,
            id=self.run_id,
            resume="allow",
            dir=directory,
            mode=o.get("wandb_mode") or None,
            # A resumed run keeps the config it was created with (W&B refuses silent changes).
            config=None if self.run_id else info.run_config,
            # create_new: another open run in this process (a fine-tuning run, a notebook's
            # earlier run) is left alone instead of being returned or finished.
            reinit="create_new",
            # The job's own log already holds stdout; wrapping the streams would also capture tqdm.
            settings=self._wandb.Settings(console="off"),
        )
        if self.run_id is None:
            self.save_state(run_id=self._run.id)
        elif self._run.id != self.run_id:
            raise RuntimeError(f"W&B resumed run {self._run.id!r} instead of {self.run_id!r} ({self.path})")

    def write_scalars(self, step, scalars):
        if self.accept(step):
            self._run.log(dict(scalars), step=step)

    def write_images(self, step, images):
        if self.accept(step):
            self._run.log({k: self._wandb.Image(v) for k, v in images.items()}, step=step)

    def write_texts(self, step, texts):
        if self.accept(step):
            self._run.log({k: self._wandb.Html(f"<pre>{html.escape(v)}</pre>") for k, v in texts.items()}, step=step)

    def close(self):
        self._run.finish()


class MlflowWriter(TrackedRun):
    """An MLflow run, through `MlflowClient` (no process-global active run)."""

    name = "mlflow"

    def __init__(self, info: RunInfo):
        super().__init__(info)
        _require("mlflow")
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        o = info.options
        uri = o.get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = pathlib.Path(info.workdir, "mlruns").absolute().as_uri()
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 refuses file stores unless opted in; the store is a plain directory that
            # needs no server or database (mlflow-skinny has no SQLAlchemy for a sqlite one).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.tracking_uri = uri
        self._client = MlflowClient(tracking_uri=uri)
        self._metric = Metric
        run = None
        if self.run_id is not None:
            try:
                run = self._client.get_run(self.run_id)
                self._client.update_run(self.run_id, status="RUNNING")
            except MlflowException:
                log.warning("MLflow run %s is not in %s: starting a new run", self.run_id, uri)
                self.state, self.floor = {}, None
        if run is None:
            name = o.get("mlflow_experiment") or "jssl"
            experiment = self._client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(name)
            run = self._client.create_run(experiment_id, run_name=self.run_name, tags={"jssl.workdir": info.workdir})
            self.save_state(run_id=run.info.run_id)
            # Params are written once: MLflow refuses to change one, and a resumed run may extend
            # total_steps. Values are cut to MLflow's length limit; 100 is its batch limit.
            params = [Param(k, str(v)[:500]) for k, v in sorted(_flatten(info.run_config).items())]
            for start in range(0, len(params), 100):
                self._client.log_batch(self.run_id, params=params[start : start + 100])

    def write_scalars(self, step, scalars):
        if self.accept(step):
            now = int(time.time() * 1000)
            metrics = [self._metric(k, float(v), now, step) for k, v in scalars.items()]
            self._client.log_batch(self.run_id, metrics=metrics)

    def write_images(self, step, images):
        if self.accept(step):
            for name, image in images.items():
                self._client.log_image(self.run_id, image, key=name, step=step)

    def write_texts(self, step, texts):
        if self.accept(step):
            for name, text in texts.items():
                self._client.log_text(self.run_id, text, f"{name}_step{step}.txt")

    def close(self):
        self._client.set_terminated(self.run_id)
