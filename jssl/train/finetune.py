"""End-to-end fine-tuning of a pretrained backbone with a new linear head (`jssl eval`).

The same machinery as the trainer: state created already sharded on the configured mesh
(`eval_shape` + a jit'd init with `out_shardings`), a pure jit'd step on `nnx.split` state with
donation, Orbax checkpoints of state and data-iterator position together in
`<directory>/checkpoints`, so a killed run resumes exactly. What fine-tuning adds (layer-wise
learning-rate decay, label smoothing, the classifier) lives in `jssl.evaluators.finetune`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jssl import data, sharding
from jssl.checkpoint import Checkpointer
from jssl.evaluators.finetune import (
    BACKBONE,
    Classifier,
    layer_scale_fn,
    load_variable_values,
    smoothed_cross_entropy,
    supports_layer_decay,
)
from jssl.metrics import MetricWriter
from jssl.models import get_backbone
from jssl.nonfinite import track_nonfinite
from jssl.train.optimizers import build_finetune_optimizer
from jssl.train.state import TrainState
from jssl.train.trainer import DTYPES, fetch, map_in_chunks, normalize, raise_if_nonfinite

log = logging.getLogger("jssl")

FINETUNE_ADVICE = "Lower finetune.learning_rate or set finetune.grad_clip_norm."
# Settings a resumed fine-tuning run must share with the one that wrote its checkpoints (the
# others, such as how often to log or evaluate, may change between the two).
_RESUME_FIELDS = (
    "steps", "batch_size", "learning_rate", "warmup_steps", "min_learning_rate_ratio", "b1", "b2",
    "weight_decay", "layer_decay", "label_smoothing", "grad_clip_norm", "augment",
)  # fmt: skip


def validate_finetune_config(config: ml_collections.ConfigDict) -> None:
    ft = config.finetune
    for name in ("steps", "batch_size", "log_every_steps", "checkpoint_every_steps"):
        if ft[name] <= 0:
            raise ValueError(f"finetune.{name} must be positive; got {ft[name]}")
    if ft.eval_every_steps < 0:
        raise ValueError(f"finetune.eval_every_steps must be >= 0; got {ft.eval_every_steps}")
    if ft.layer_decay < 0:
        raise ValueError(f"finetune.layer_decay must be >= 0; got {ft.layer_decay}")
    if not 0.0 <= ft.label_smoothing < 1.0:
        raise ValueError(f"finetune.label_smoothing must be in [0, 1); got {ft.label_smoothing}")
    data.parse_augment(ft.augment)  # a typo fails now, not in a data worker


@dataclasses.dataclass
class FineTuner:
    """What `build_finetuner` makes: sharded state creation, the jit'd step and prediction."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    graphdef: Any
    abstract_state: Any
    # jit'd (backbone values by path, or None for a random init) -> TrainState, created sharded
    init_state: Any
    train_step: Any  # jit'd (TrainState, batch) -> (TrainState, metrics), state donated
    predict: Any  # jit'd (params, buffers, uint8 images) -> logits, BatchNorm from running statistics
    layer_decay: bool  # whether the backbone defines layers, so finetune.layer_decay applies
    step_traces: Callable[[], int]


def build_finetuner(
    config: ml_collections.ConfigDict,
    *,
    in_channels: int,
    mesh: jax.sharding.Mesh | None = None,
    wrap_step: Callable[[Callable], Callable] | None = None,
) -> FineTuner:
    """The classifier `get_backbone(config.model) + linear head`, its optimizer, state and step."""
    validate_finetune_config(config)
    ft = config.finetune
    mesh = sharding.make_mesh(dict(config.mesh)) if mesh is None else mesh
    sharding.check_global_batch(ft.batch_size, mesh)
    dtype = DTYPES[config.model.dtype]

    def build_model(seed: int) -> Classifier:
        rngs = nnx.Rngs(seed)
        backbone = get_backbone(
            config.model.name, in_channels=in_channels, dtype=dtype, rngs=rngs, **config.model.kwargs
        )
        return Classifier(backbone, num_classes=config.data.num_classes, rngs=rngs)

    abstract_model = nnx.eval_shape(lambda: build_model(config.seed))
    graphdef = nnx.split(abstract_model, nnx.Param, ...)[0]
    # The scales are fixed by parameter paths and the backbone's layer structure, known from the
    # abstract model: nothing about them is traced.
    tx, schedule = build_finetune_optimizer(
        config, lr_scale=layer_scale_fn(abstract_model.backbone, decay=ft.layer_decay)
    )

    def create_state(pretrained: dict[str, jax.Array] | None) -> TrainState:
        model = build_model(config.seed)
        if pretrained is not None:
            load_variable_values(model.backbone, pretrained)
        _, params, buffers = nnx.split(model, nnx.Param, ...)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            buffers=buffers,
            opt_state=tx.init(params),
            rng=jax.random.PRNGKey(config.seed + 2),
            first_nonfinite_step=jnp.full((), -1, jnp.int32),
        )

    abstract = jax.eval_shape(lambda: create_state(None))
    shardings = sharding.state_shardings(abstract, config.sharding_rules, mesh)
    abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    init_state = jax.jit(create_state, out_shardings=shardings)

    mean, std = tuple(config.data.mean), tuple(config.data.std)
    batch_sharding = sharding.batch_sharding(mesh)
    traces = [0]

    def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        traces[0] += 1  # at trace time only: counts compilations
        images = normalize(batch["view_0"], mean, std, dtype)

        def loss_fn(params):
            model = nnx.merge(graphdef, params, state.buffers, copy=True)
            logits = model(images)  # training mode: BatchNorm on batch statistics, updating running ones
            loss = smoothed_cross_entropy(logits, batch["label"], smoothing=ft.label_smoothing)
            accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
            return loss, (accuracy, nnx.split(model, nnx.Param, ...)[2])

        (loss, (accuracy, buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        first_bad = track_nonfinite(state.first_nonfinite_step, state.step, loss, grad_norm=grad_norm)
        metrics = {
            "loss": loss,
            "train_accuracy": accuracy,
            "grad_norm": grad_norm,
            "backbone_update_norm": optax.tree.norm(updates[BACKBONE]),
            "learning_rate": schedule(state.step),
        }
        new_state = state.replace(
            step=state.step + 1, params=params, buffers=buffers, opt_state=opt_state, first_nonfinite_step=first_bad
        )
        return new_state, metrics

    jitted_step = jax.jit(
        wrap_step(train_step) if wrap_step else train_step,
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )

    def predict(params, buffers, images):
        model = nnx.merge(graphdef, params, buffers, copy=True)
        model.eval()
        return (model(normalize(images, mean, std, dtype)),)

    jitted_predict = jax.jit(
        predict, in_shardings=(shardings.params, shardings.buffers, batch_sharding), out_shardings=batch_sharding
    )
    return FineTuner(
        config=config,
        mesh=mesh,
        graphdef=graphdef,
        abstract_state=abstract_state,
        init_state=init_state,
        train_step=jitted_step,
        predict=jitted_predict,
        layer_decay=supports_layer_decay(abstract_model.backbone) and ft.layer_decay != 1.0,
        step_traces=lambda: traces[0],
    )


def accuracy(tuner: FineTuner, state: TrainState, *, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the classifier on `images` (running BatchNorm statistics)."""
    fn = lambda x: tuner.predict(state.params, state.buffers, x)  # noqa: E731
    ways = sharding.batch_size_per_shard(tuner.mesh)
    (logits,) = map_in_chunks(images, fn, chunk=tuner.config.eval.batch_size, ways=ways, mesh=tuner.mesh)
    return float(np.mean(logits.argmax(-1) == labels))


def _check_resumable(directory: str, *, config: ml_collections.ConfigDict, pretrain_step: int | None) -> None:
    """Refuses to resume checkpoints written with other fine-tuning settings; records these ones."""
    path = os.path.join(directory, "settings.json")
    settings = {
        "pretrain_step": pretrain_step,
        "seed": config.seed,
        **{k: config.finetune[k] for k in _RESUME_FIELDS},
    }
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as they read back
    checkpoints = os.path.join(directory, "checkpoints")
    if os.path.exists(path) and os.path.isdir(checkpoints) and os.listdir(checkpoints):
        with open(path) as f:
            saved = json.load(f)
        changed = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in settings.items() if saved.get(k) != v]
        if changed:
            raise ValueError(
                f"{directory} holds a fine-tuning run with other settings ({'; '.join(changed)}); "
                "use the same settings to resume it, or delete that directory to start over"
            )
    if jax.process_index() == 0:
        with open(path, "w") as f:
            json.dump(settings, f, indent=2)


def run_finetune(
    tuner: FineTuner,
    *,
    directory: str,
    train_source: data.ImageSource,
    eval_data: dict[str, np.ndarray],
    pretrained: dict[str, jax.Array] | None,
    pretrain_step: int | None,
) -> dict[str, Any]:
    """Fine-tunes from `pretrained` (None: random init), resuming from `directory` if it holds checkpoints.

    Returns held-out top-1 and the final training loss; scalars go to `directory`'s
    `metrics.jsonl` and TensorBoard files.
    """
    config, ft = tuner.config, tuner.config.finetune
    if jax.process_index() == 0:
        os.makedirs(directory, exist_ok=True)
    _check_resumable(directory, config=config, pretrain_step=pretrain_step)
    train_iter = data.make_train_iterator(
        train_source,
        global_batch_size=ft.batch_size,
        num_views=1,
        augment=ft.augment,
        seed=config.seed,
        num_workers=config.data.num_workers,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_classes=config.data.num_classes,
    )
    checkpointer = Checkpointer(
        os.path.join(directory, "checkpoints"),
        every_steps=ft.checkpoint_every_steps,
        max_to_keep=config.checkpoint.max_to_keep,
        async_save=config.checkpoint.async_save,
    )
    # The newest step that restores; damaged newer ones are set aside (`Checkpointer.resume`).
    state, latest = checkpointer.resume(tuner.abstract_state, train_iter)
    if state is None:
        state = tuner.init_state(pretrained)
    del pretrained  # the state holds its own copy

    writer = MetricWriter(directory, resume_step=int(state.step), finished=int(state.step) >= ft.steps)
    last_saved, scalars = latest, {}
    test_images, test_labels = eval_data["test_images"], eval_data["test_labels"]
    try:
        for step in range(int(state.step), ft.steps):
            batch = sharding.host_batch_to_global(next(train_iter), tuner.mesh)
            state, metrics = tuner.train_step(state, batch)
            done = step + 1
            if done % ft.log_every_steps == 0 or done == ft.steps:
                raise_if_nonfinite(state, last_saved, what="fine-tuning", advice=FINETUNE_ADVICE)
                if tuner.step_traces() > 1:
                    raise RuntimeError(f"the fine-tuning step was recompiled ({tuner.step_traces()} traces)")
                scalars = fetch(metrics)
                writer.write_scalars(done, scalars)
            if done % ft.checkpoint_every_steps == 0 or done == ft.steps:
                raise_if_nonfinite(state, last_saved, what="fine-tuning", advice=FINETUNE_ADVICE)
                if checkpointer.save(done, state, train_iter, force=done == ft.steps):
                    last_saved = done
            if ft.eval_every_steps and done % ft.eval_every_steps == 0 and done != ft.steps:
                top1 = accuracy(tuner, state, images=test_images, labels=test_labels)
                writer.write_scalars(done, {"eval/top1": top1})
                log.info("fine-tuning step %d: held-out top-1 %.4f", done, top1)
    finally:
        checkpointer.close()

    results = {"top1": accuracy(tuner, state, images=test_images, labels=test_labels), "steps": int(state.step)}
    if "loss" in scalars:
        results["final_train_loss"] = scalars["loss"]
    writer.write_scalars(int(state.step), {"final/top1": results["top1"]})
    writer.close()
    return results
