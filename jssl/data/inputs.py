"""The batch contract: what a method's batch holds, who builds it, and how it reaches the method.

A method declares the kind of data it trains on (`Method.inputs`: `'images'`, `'tokens'` or
`'waveforms'`); the trainer looks the kind up here and from then on moves batches without
knowing the modality. An `Inputs` object answers, for its kind:

Host side (numpy, outside jit):
  * `model_kwargs()`: what the method's constructor needs to know about the data
    (`in_channels` for images; `vocab_size` and special token ids for text; nothing for audio);
  * `train_iterator(...)`: an endless, checkpointable Grain iterator of process-local batches,
    `dict[str, np.ndarray]`, every array with the local batch as its leading axis, plus
    `'label'` (int32 `[b]`) exactly when `has_train_labels`;
  * `eval_set()`: the held-out data as an `EvalSet` (inputs as dicts of equally long arrays,
    labels when the data set has a labelled task);
  * `baselines(eval_set, feature_evals)`: data-only reference numbers for `results.json`
    (raw pixels, a unigram language model, log-mel features), `{name: {metric: value}}`;
  * `log_samples(samples)`: turns what `Method.generate` produced (after `from_samples`) into
    something to log (`{'text': ...}`) and returns it, or `{}`.

Device side (inside the jit'd step, with global, batch-sharded arrays):
  * `to_method(batch, step=)`: the argument of `Method.__call__` (images: the list of
    normalized, possibly device-augmented views; text: `{'tokens': int32 [b, L]}`; audio:
    `{'waveform': float32 [b, T], 'mask': bool [b, T]}`);
  * `to_represent(inputs)`: the argument of `Method.represent` / `heldout_metrics` from one
    eval chunk (a dict of the `EvalSet` arrays);
  * `from_samples(x)`: maps `Method.generate`'s output to what the host stores (images:
    uint8 pixels; tokens: the ids).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import ml_collections
import numpy as np

from jssl.data.checks import check_labels


@dataclasses.dataclass
class EvalSet:
    """Held-out data: the kNN bank / probe training set (`train`) and the evaluated split (`test`).

    `train` and `test` are dicts of arrays with equal leading axes (one entry per example), in
    the form `to_represent` takes. Labels are int32 `[n]`, or None when the data set has no
    labelled task (kNN and the probes are then skipped with a logged reason). `task` names the
    labelled task (`'digit'`, `'topic of a 128-token window'`) for `results.json`.
    """

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None
    num_classes: int
    task: str
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # split names, sizes: for results.json

    def __post_init__(self) -> None:
        # Every data kind's labelled task passes here: a label past `num_classes` would make the
        # probes' losses NaN and kNN vote for nothing, silently (see `jssl.data.checks`).
        if self.labelled:
            info = self.info
            check_labels(self.train_labels, self.num_classes, split=info.get("train_split", "train"))
            check_labels(self.test_labels, self.num_classes, split=info.get("test_split", info.get("eval_split", "test")))

    @property
    def labelled(self) -> bool:
        return self.train_labels is not None and self.test_labels is not None


FeatureEvals = Callable[[np.ndarray, np.ndarray], dict[str, float]]  # (train, test features) -> kNN, probe


class Inputs:
    """One kind of data; subclasses implement every method below (see the module docstring)."""

    kind: ClassVar[str] = ""
    has_train_labels: ClassVar[bool] = True

    def __init__(self, config: ml_collections.ConfigDict, *, method_class: type):
        self.config = config
        self.method_class = method_class
        # Set by the trainer once the mesh exists: the sharding of every batch array.
        self.batch_sharding: jax.sharding.Sharding | None = None

    def constrain_batch(self, x: jax.Array) -> jax.Array:
        """Keeps `x` (leading axis: the batch) split like the batch, so each device works on its shard."""
        if self.batch_sharding is None:
            return x
        return jax.lax.with_sharding_constraint(x, self.batch_sharding)

    # ---- host side --------------------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def train_iterator(self, *, process_index: int, process_count: int) -> Any:
        raise NotImplementedError

    def eval_set(self) -> EvalSet:
        raise NotImplementedError

    def baselines(self, eval_set: EvalSet, feature_evals: FeatureEvals) -> dict[str, dict[str, float]]:
        del eval_set, feature_evals
        return {}

    def log_samples(self, samples: np.ndarray) -> dict[str, Any]:
        del samples
        return {}

    def describe(self) -> dict[str, Any]:
        """Facts about the data for `results.json`'s `eval` section."""
        return {}

    # ---- device side (traced inside jit) ----------------------------------------------------
    def to_method(self, batch: dict[str, jax.Array], *, step: jax.Array) -> Any:
        raise NotImplementedError

    def to_represent(self, inputs: dict[str, jax.Array]) -> Any:
        raise NotImplementedError

    def from_samples(self, samples: jax.Array) -> jax.Array:
        return samples


# kind -> "module:class"; imported on first use, so that image runs never import a tokenizer
# or an audio synthesizer.
INPUTS: dict[str, str] = {
    "images": "jssl.data.image_inputs:ImageInputs",
    "tokens": "jssl.data.text:TextInputs",
    "waveforms": "jssl.data.audio:AudioInputs",
}


INPUT_KINDS = tuple(INPUTS)


def get_inputs(config: ml_collections.ConfigDict, method_class: type, **options: Any) -> Inputs:
    """The `Inputs` of `method_class.inputs` for this config (`options` go to its constructor)."""
    kind = getattr(method_class, "inputs", "images")
    if kind not in INPUTS:
        raise ValueError(f"{method_class.__name__}.inputs = {kind!r}; known kinds: {list(INPUTS)}")
    module, name = INPUTS[kind].split(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(config, method_class=method_class, **options)
