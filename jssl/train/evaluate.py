"""`jssl eval`: offline evaluation of a pretraining run from its workdir.

Loads the latest pretraining checkpoint of `<workdir>/checkpoints` with the config the run saved
(`<workdir>/config.json`), then measures, on the labelled training split and the held-out split:

1. kNN and an offline linear probe on the frozen representation (`method.represent`), as the
   trainer's final evaluation does;
2. full fine-tuning of the backbone with a new linear head (`jssl.train.finetune`), in
   `<workdir>/finetune/` (resumable), and optionally the same from a random initialization
   (`<workdir>/finetune/random_init/`).

Results go to `<workdir>/eval_results.json` and into `<workdir>/results.json` under `eval_run`
(its `eval` key already holds the trainer's evaluation settings), beside the pretraining numbers.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from jssl import data
from jssl.checkpoint import Checkpointer
from jssl.config import load_config
from jssl.data.checks import check_source_labels
from jssl.evaluators.finetune import variable_values
from jssl.train.finetune import build_finetuner, run_finetune, validate_finetune_config
from jssl.train.trainer import (
    build_experiment,
    evaluate,
    load_eval_data,
    prepare_workdir,
    source_options,
    validate_config,
)

log = logging.getLogger("jssl")

# The fields that make the pretrained checkpoint what it is: evaluating it with other values of
# these would load weights into another network or read another data set.
PRETRAINING_FIELDS = (
    "model",
    "method",
    "data.name",
    "data.tfds_name",
    "data.num_classes",
    "data.mean",
    "data.std",
    "data.image_key",
    "data.label_key",
)
RESULTS_KEY = "eval_run"


def run_config_path(workdir: str) -> str:
    return os.path.join(os.path.abspath(os.path.expanduser(workdir)), "config.json")


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a `jssl train` run saved in `workdir` (newer fields at their defaults)."""
    path = run_config_path(workdir)
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist: pass the run's config with --config=<file>[:variant]")
    return load_config(path)


def _lookup(config: ml_collections.ConfigDict, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, ml_collections.ConfigDict) or part not in value:
            return "<absent>"
        value = value[part]
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


def _differences(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{prefix}.{k}")]
    return [] if a == b else [f"{prefix} is {a!r} but the run used {b!r}"]


def check_matches_run(config: ml_collections.ConfigDict, *, run: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises if `config` differs from the run's config in a field of `PRETRAINING_FIELDS`."""
    diffs = [d for f in PRETRAINING_FIELDS for d in _differences(_lookup(config, f), _lookup(run, f), f)]
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise ValueError(
            f"the config does not match the run in {workdir}: {shown}. "
            "Omit --config to use the run's own config.json, and override only evaluation fields"
        )


def _finetune_image_shape(config: ml_collections.ConfigDict, source: data.ImageSource) -> tuple[int, ...]:
    record = source[0]
    image = data.parse_augment(config.finetune.augment)(np.asarray(record["image"], np.uint8), np.random.default_rng(0))
    return tuple(image.shape)


def _write_results(workdir: str, results: dict[str, Any]) -> None:
    """`eval_results.json`, and `results.json[RESULTS_KEY]` (created if pretraining never finished)."""
    if jax.process_index() != 0:
        return
    with open(os.path.join(workdir, "eval_results.json"), "w") as f:
        json.dump(results, f, indent=2)
    path = os.path.join(workdir, "results.json")
    merged: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path) as f:
            merged = json.load(f)
    merged[RESULTS_KEY] = results
    with open(path + ".tmp", "w") as f:
        json.dump(merged, f, indent=2)
    os.replace(path + ".tmp", path)  # never a half-written results.json with the pretraining numbers


def evaluate_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """kNN, offline linear probe and fine-tuning of the latest pretraining checkpoint in `workdir`.

    Returns the results (also written to `<workdir>/eval_results.json` and `results.json`).
    """
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir} does not exist")
    checkpoints = os.path.join(workdir, "checkpoints")
    pretraining = None
    if os.path.isdir(checkpoints):
        pretraining = Checkpointer(checkpoints, every_steps=0, max_to_keep=None, read_only=True)
    latest = pretraining.latest_step() if pretraining else None
    if latest is None:
        raise ValueError(f"no pretraining checkpoint in {checkpoints}; run `jssl train --workdir {workdir}` first")
    if os.path.exists(run_config_path(workdir)):
        check_matches_run(config, run=load_run_config(workdir), workdir=workdir)
    validate_config(config)
    validate_finetune_config(config)
    workdir = prepare_workdir(workdir)

    # ==============================================================================================
    # The pretrained network, restored into the shardings of the configured mesh
    # ==============================================================================================
    train_source = data.get_source(config.data.name, config.data.train_split, **source_options(config))
    check_source_labels(train_source, config.data.num_classes, split=config.data.train_split)  # fine-tuning's labels
    image_shape = tuple(train_source[0]["image"].shape)
    exp = build_experiment(config, image_shape=image_shape)
    eval_data = load_eval_data(config)
    if config.finetune.enabled:  # fail before any work is done
        shape = _finetune_image_shape(config, train_source)
        if shape != eval_data["test_images"].shape[1:]:
            raise ValueError(
                f"finetune.augment {config.finetune.augment!r} makes {shape} images but the evaluation images are "
                f"{eval_data['test_images'].shape[1:]}; make its crop size match"
            )
    state = pretraining.restore_state(latest, exp.abstract_state)
    pretraining.close()
    log.info("evaluating step %d of %s", latest, checkpoints)

    # ==============================================================================================
    # Frozen representation: kNN and offline linear probe
    # ==============================================================================================
    frozen = evaluate(exp, state, eval_data, offline_probe=True)
    results: dict[str, Any] = {"pretrain_step": int(latest), **frozen}
    log.info("frozen representation: %s", frozen)

    # ==============================================================================================
    # Fine-tuning (resumable, in <workdir>/finetune)
    # ==============================================================================================
    if config.finetune.enabled:
        model = nnx.merge(exp.graphdef, state.params, state.buffers)
        pretrained = variable_values(model.method.backbone())
        del model, state  # only the backbone's values are needed from here on
        tuner = build_finetuner(config, in_channels=image_shape[-1], mesh=exp.mesh)
        log.info("fine-tuning %s; layer-wise lr decay: %s", config.model.name, "on" if tuner.layer_decay else "off")
        common = dict(train_source=train_source, eval_data=eval_data)
        directory = os.path.join(workdir, "finetune")
        results["finetune"] = run_finetune(
            tuner, directory=directory, pretrained=pretrained, pretrain_step=int(latest), **common
        )
        del pretrained
        if config.finetune.random_init_baseline:
            results["finetune_random_init"] = run_finetune(
                tuner, directory=os.path.join(directory, "random_init"), pretrained=None, pretrain_step=None, **common
            )
        results["finetune"]["layer_decay"] = config.finetune.layer_decay if tuner.layer_decay else None
    results["settings"] = {
        "train_split": config.data.train_split,
        "test_split": config.data.eval_split,
        "num_train": int(len(eval_data["train_labels"])),
        "num_test": int(len(eval_data["test_labels"])),
        "finetune_train": f"all of {config.data.train_split} ({len(train_source)} examples), labels used",
        "heldout_in_bank": int(eval_data["heldout_in_bank"]),
    }
    if str(eval_data["split_note"]):
        results["settings"]["split_note"] = str(eval_data["split_note"])
    _write_results(workdir, results)
    return results
