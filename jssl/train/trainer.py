"""The jssl trainer: one readable loop that every method plugs into.

Sections, in the order a run meets them: setup, mesh, data, model + optimizer, step,
checkpoint, evals, loop. Methods answer five questions (see `jssl.methods.base`); nothing
method-specific lives here.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils

from jssl import data, methods, sharding
from jssl.checkpoint import Checkpointer, load_saved_config
from jssl.config import DTYPES, save_config
from jssl.data import image_inputs
from jssl.data.image_inputs import image_eval_set, load_eval_data, normalize  # noqa: F401 (re-exported)
from jssl.data.inputs import EvalSet, Inputs, get_inputs
from jssl.evaluators import knn_accuracy, linear_probe_accuracy
from jssl.metrics import MetricWriter, check_writers
from jssl.models.partitioning import activation_sharding
from jssl.nonfinite import PRETRAINING_ADVICE, NonFiniteLossError, raise_if_nonfinite, track_nonfinite  # noqa: F401
from jssl.progress import Progress
from jssl.train import frechet, plots, preemption
from jssl.train.optimizers import build_optimizer
from jssl.train.state import SSLModel, TrainState

log = logging.getLogger("jssl")


# ==================================================================================================
# Setup
# ==================================================================================================


def prepare_workdir(workdir: str) -> str:
    """Creates `workdir` and proves it writable before any work is done."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"workdir {workdir!r} is not writable: {e}") from e
    return workdir


def validate_config(config: ml_collections.ConfigDict) -> None:
    if config.total_steps <= 0:
        raise ValueError(f"total_steps must be positive; got {config.total_steps}")
    if config.global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be positive; got {config.global_batch_size}")
    if config.model.dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype {config.model.dtype!r}; known: {sorted(DTYPES)}")
    check_writers(config)  # an unknown or uninstalled logging.writers entry
    # Unknown method names fail before data is read; so do the data kind's own checks (image
    # crops that do not match the method's views, ops without a device twin).
    make_inputs(config)


def make_inputs(config: ml_collections.ConfigDict, **options: Any) -> Inputs:
    """The batch contract of `config.method`'s kind of data (`jssl.data.inputs`)."""
    return get_inputs(config, methods.get_method_class(config.method.name), **options)


def view_augmentations(config: ml_collections.ConfigDict) -> list[str]:
    """Image methods: one augmentation spec per view (see `jssl.data.image_inputs`)."""
    return image_inputs.view_augmentations(config, methods.get_method_class(config.method.name))


def source_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Image source options from the config (see `jssl.data.image_inputs.source_options`)."""
    return image_inputs.source_options(config)


@dataclasses.dataclass
class Experiment:
    """Everything `train` builds before the loop; tests and benchmarks build it too."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    graphdef: Any
    state_shardings: Any
    abstract_state: Any
    init_state: Any  # jit'd () -> TrainState, created already sharded
    train_step: Any  # jit'd (TrainState, batch) -> (TrainState, metrics), state donated
    # jit'd (params, buffers, images, batch_statistics=False) -> (features, probe_logits);
    # batch_statistics=True normalizes with each batch's BN statistics instead of running ones.
    represent: Any
    # jit'd (params, buffers, uint8 images) -> {name: [rows, cols, h, w, c] in [0, 1]}: the
    # method's `pictures` of a fixed held-out batch, always with the same random key.
    pictures: Any
    # jit'd (params, buffers, uint8 images, key) -> {name: [batch]}: the method's per-example
    # `heldout_metrics` (negative ELBO, denoising loss at fixed noise levels); may be empty.
    heldout: Any
    # jit'd (params, buffers, key) -> uint8 [eval.batch_size, h, w, c] new images, for methods
    # that generate (`Method.is_generative`); None otherwise.
    generate: Any
    # The batch contract: builds the data, turns batches into the method's arguments.
    inputs: Inputs
    step_traces: Callable[[], int]  # how many times the step was traced (compiled)

    # Image methods only (`ImageInputs`): views per example, one augmentation spec per view, and
    # where they are drawn ('host': batches hold 'view_0', ...; 'device': the source 'image',
    # augmented inside the step with keys from (seed, step, example index, view)).
    @property
    def num_views(self) -> int:
        return self.inputs.num_views

    @property
    def view_augmentations(self) -> list[str]:
        return self.inputs.view_augmentations

    @property
    def augment_on(self) -> str:
        return self.inputs.augment_on


def build_experiment(
    config: ml_collections.ConfigDict,
    *,
    image_shape: tuple[int, ...] | None = None,
    inputs: Inputs | None = None,
    mesh=None,
    wrap_step: Callable[[Callable], Callable] | None = None,
) -> Experiment:
    """Mesh, model, optimizer, sharded state creation and the jit'd step, without training I/O.

    `inputs`: the batch contract (default: `make_inputs(config)`); image methods may pass
    `image_shape` instead so that no data is read. `wrap_step` wraps the pure step function
    before `jax.jit`, e.g. `functools.partial(chex.assert_max_traces, n=1)` in tests.
    """
    validate_config(config)
    if inputs is None:
        inputs = make_inputs(config, image_shape=image_shape) if image_shape is not None else make_inputs(config)

    # ==============================================================================================
    # Mesh
    # ==============================================================================================
    mesh = sharding.make_mesh(dict(config.mesh)) if mesh is None else mesh
    sharding.check_global_batch(config.global_batch_size, mesh)
    inputs.batch_sharding = sharding.batch_sharding(mesh)
    model_kwargs = inputs.model_kwargs()

    # ==============================================================================================
    # Model + optimizer
    # ==============================================================================================
    dtype = DTYPES[config.model.dtype]
    tx, schedule = build_optimizer(config)

    def build_model(seed: int) -> SSLModel:
        rngs = nnx.Rngs(seed)
        method = methods.build_method(config, dtype=dtype, rngs=rngs, **model_kwargs)
        return SSLModel(method, num_classes=config.data.num_classes, rngs=rngs)

    def create_state() -> TrainState:
        _, params, buffers = nnx.split(build_model(config.seed), nnx.Param, ...)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            buffers=buffers,
            opt_state=tx.init(params),
            rng=jax.random.PRNGKey(config.seed + 1),
            first_nonfinite_step=jnp.full((), -1, jnp.int32),
        )

    abstract_model = nnx.eval_shape(lambda: build_model(config.seed))
    graphdef = nnx.split(abstract_model, nnx.Param, ...)[0]
    frozen_steps = abstract_model.method.frozen_steps()
    abstract = jax.eval_shape(create_state)
    shardings = sharding.state_shardings(abstract, config.sharding_rules, mesh)
    abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    init_state = jax.jit(create_state, out_shardings=shardings)

    # ==============================================================================================
    # Step
    # ==============================================================================================
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    # The online probe needs labels in the training batches (packed text has none).
    train_probe = inputs.has_train_labels

    traces = [0]
    # Logical names of activations (`constrain` in the models) -> shardings, while tracing.
    activations = sharding.activation_sharding_fn(config.sharding_rules, mesh)

    def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        with activation_sharding(activations):
            return _train_step(state, batch)

    def _train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        traces[0] += 1  # runs at trace time only: counts compilations
        rng = jax.random.fold_in(state.rng, state.step)
        method_inputs = inputs.to_method(batch, step=state.step)

        def loss_fn(params):
            model = nnx.merge(graphdef, params, state.buffers, copy=True)
            out = model.method(method_inputs, step=state.step, rngs=nnx.Rngs(rng))
            if train_probe:
                logits = model.probe(jax.lax.stop_gradient(out.features))
                probe_loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
                probe_accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
            else:
                probe_loss = probe_accuracy = jnp.zeros((), jnp.float32)
            buffers = nnx.split(model, nnx.Param, ...)[2]
            aux = (out.loss, out.metrics, probe_loss, probe_accuracy, buffers)
            return out.loss + probe_loss, aux

        grads, (loss, method_metrics, probe_loss, probe_accuracy, buffers) = jax.grad(loss_fn, has_aux=True)(
            state.params
        )
        grads = _freeze(grads, frozen_steps, state.step)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, _freeze(updates, frozen_steps, state.step))

        model = nnx.merge(graphdef, params, buffers, copy=True)
        model.method.after_step(state.step)
        _, params, buffers = nnx.split(model, nnx.Param, ...)

        grad_norm = optax.tree.norm(grads["method"])
        first_bad = track_nonfinite(state.first_nonfinite_step, state.step, loss, probe_loss, grad_norm)
        probe_metrics = {"probe/loss": probe_loss, "probe/train_accuracy": probe_accuracy} if train_probe else {}
        metrics = {
            "loss": loss,
            **probe_metrics,
            "grad_norm": grad_norm,
            "param_norm": optax.tree.norm(params["method"]),
            "learning_rate": schedule(state.step),
            **{f"method/{k}": v for k, v in method_metrics.items()},
        }
        new_state = TrainState(
            step=state.step + 1,
            params=params,
            buffers=buffers,
            opt_state=opt_state,
            rng=state.rng,
            first_nonfinite_step=first_bad,
        )
        return new_state, metrics

    jitted_step = jax.jit(
        wrap_step(train_step) if wrap_step else train_step,
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, replicated),
        donate_argnums=0,
    )

    def represent(params, buffers, chunk, batch_statistics: bool = False):
        model = nnx.merge(graphdef, params, buffers, copy=True)
        # No stochastic layers (drop path, dropout) in evaluation; BatchNorm from running
        # statistics unless `batch_statistics`.
        model.set_attributes(deterministic=True, use_running_average=not batch_statistics, raise_if_not_found=False)
        with activation_sharding(activations):
            features = model.method.represent(inputs.to_represent(chunk)).astype(jnp.float32)
        return features, model.probe(features)

    jitted_represent = jax.jit(
        represent,
        in_shardings=(shardings.params, shardings.buffers, batch_sharding),
        out_shardings=(batch_sharding, batch_sharding),
        static_argnums=3,
    )

    def pictures(params, buffers, chunk):
        model = nnx.merge(graphdef, params, buffers, copy=True)
        model.eval()  # BN from running statistics, no drop path: pictures of the model as evaluated
        out = model.method.pictures(
            inputs.to_represent(chunk),
            rngs=nnx.Rngs(jax.random.PRNGKey(config.seed + 2)),
            to_pixels=getattr(inputs, "to_pixels", None),
        )
        return {name: value.astype(jnp.float32) for name, value in out.items()}

    jitted_pictures = jax.jit(
        pictures, in_shardings=(shardings.params, shardings.buffers, replicated), out_shardings=replicated
    )
    def heldout(params, buffers, chunk, key):
        model = nnx.merge(graphdef, params, buffers, copy=True)
        model.eval()
        with activation_sharding(activations):
            out = model.method.heldout_metrics(inputs.to_represent(chunk), rngs=nnx.Rngs(key))
        return {name: value.astype(jnp.float32) for name, value in out.items()}

    jitted_heldout = jax.jit(
        heldout,
        in_shardings=(shardings.params, shardings.buffers, batch_sharding, replicated),
        out_shardings=batch_sharding,
    )
    jitted_generate = None
    if type(abstract_model.method).is_generative():
        def generate(params, buffers, key):
            model = nnx.merge(graphdef, params, buffers, copy=True)
            model.eval()
            with activation_sharding(activations):
                samples = model.method.generate(config.eval.batch_size, rngs=nnx.Rngs(key))
            return inputs.from_samples(samples)  # images: uint8 pixels, as they would be saved

        jitted_generate = jax.jit(
            generate, in_shardings=(shardings.params, shardings.buffers, replicated), out_shardings=replicated
        )
    return Experiment(
        config=config,
        mesh=mesh,
        graphdef=graphdef,
        state_shardings=shardings,
        abstract_state=abstract_state,
        init_state=init_state,
        train_step=jitted_step,
        represent=jitted_represent,
        pictures=jitted_pictures,
        heldout=jitted_heldout,
        generate=jitted_generate,
        inputs=inputs,
        step_traces=lambda: traces[0],
    )


def _freeze(tree: Any, frozen_steps: dict[str, int], step: jax.Array) -> Any:
    """Zeroes the leaves under each `method.<path>` of `frozen_steps` while `step < n`."""
    if not frozen_steps:
        return tree

    def mask(path, leaf):
        names = ".".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        for prefix, until in frozen_steps.items():
            if names.startswith(f"method.{prefix}."):
                return jnp.where(step < until, jnp.zeros_like(leaf), leaf)
        return leaf

    return jax.tree_util.tree_map_with_path(mask, tree)


# ==================================================================================================
# Evals
# ==================================================================================================


def map_in_chunks(inputs: Any, fn, *, chunk: int, ways: int, mesh) -> list[np.ndarray]:
    """Applies a jit'd batch function over `inputs` in fixed-size chunks (padded: one compile).

    `inputs` is an array or a dict of arrays with one leading example axis; `fn` receives the
    same structure as global, batch-sharded arrays and returns a list of batch arrays.
    """
    leaves, treedef = jax.tree.flatten(inputs)
    total = len(leaves[0])
    chunk = max(ways * jax.process_count(), chunk - chunk % (ways * jax.process_count()))
    per_process = chunk // jax.process_count()
    outs: list[list[np.ndarray]] = []
    for start in range(0, total, chunk):
        local = {}
        for i, leaf in enumerate(leaves):
            block = leaf[start : start + chunk]
            n = len(block)
            if n < chunk:
                block = np.concatenate([block, np.zeros((chunk - n, *block.shape[1:]), block.dtype)])
            local[str(i)] = block[jax.process_index() * per_process : (jax.process_index() + 1) * per_process]
        placed = sharding.host_batch_to_global(local, mesh)
        results = fn(jax.tree.unflatten(treedef, [placed[str(i)] for i in range(len(leaves))]))
        outs.append([np.asarray(multihost_utils.process_allgather(r, tiled=True))[:n] for r in results])
    return [np.concatenate(parts) for parts in zip(*outs)]


def as_eval_set(exp: Experiment, eval_data: EvalSet | dict[str, np.ndarray]) -> EvalSet:
    """`eval_data` as an `EvalSet` (image runs may pass `load_eval_data`'s dict of arrays)."""
    return eval_data if isinstance(eval_data, EvalSet) else image_eval_set(exp.config, eval_data)


def evaluate(
    exp: Experiment,
    state: TrainState,
    eval_data: EvalSet | dict[str, np.ndarray],
    *,
    offline_probe: bool,
    batch_statistics: bool = False,
    online_probe: bool = True,
) -> dict[str, float]:
    """kNN (and optionally an offline linear probe) on held-out data, the online probe's accuracy
    and the method's held-out measures.

    kNN and the probes need labels: without a labelled task they are left out (the caller logs
    why, once). The online probe is reported only when it was trained (labelled training batches).
    """
    c = exp.config
    ev = as_eval_set(exp, eval_data)
    results: dict[str, float] = {}
    if ev.labelled:
        fn = lambda x: exp.represent(state.params, state.buffers, x, batch_statistics)  # noqa: E731
        ways = sharding.batch_size_per_shard(exp.mesh)
        train_features, _ = map_in_chunks(ev.train, fn, chunk=c.eval.batch_size, ways=ways, mesh=exp.mesh)
        test_features, test_logits = map_in_chunks(ev.test, fn, chunk=c.eval.batch_size, ways=ways, mesh=exp.mesh)
        results.update(feature_evals(c, ev, train_features, test_features, offline_probe=offline_probe))
        if online_probe and exp.inputs.has_train_labels:
            results["online_probe"] = float(np.mean(test_logits.argmax(-1) == ev.test_labels))
    results.update(heldout_metrics(exp, state, ev.test))
    return results


def heldout_metrics(exp: Experiment, state: TrainState, inputs: Any) -> dict[str, float]:
    """`{'heldout/<name>': mean over the split}` of the method's per-example `heldout_metrics`,
    plus what the method derives from those means (`summarize_heldout`).

    `inputs`: the held-out split, a dict of arrays (`EvalSet.test`) or, for images, an array.
    Chunk i draws its noise from `fold_in(key, i)`, so the same weights give the same numbers
    at every eval and on every mesh. Empty (nothing run) when the method defines none.
    """
    c = exp.config
    if not isinstance(inputs, dict):
        inputs = {"image": inputs}
    ways = sharding.batch_size_per_shard(exp.mesh)
    base_key = jax.random.PRNGKey(c.seed + 3)
    size = ways * jax.process_count()
    abstract = {k: jax.ShapeDtypeStruct((size, *v.shape[1:]), v.dtype) for k, v in inputs.items()}
    names = sorted(jax.eval_shape(exp.heldout, state.params, state.buffers, abstract, base_key))
    if not names or len(next(iter(inputs.values()))) == 0:
        return {}
    chunks = itertools.count()

    def fn(x):
        out = exp.heldout(state.params, state.buffers, x, jax.random.fold_in(base_key, next(chunks)))
        return [out[name] for name in names]

    values = map_in_chunks(inputs, fn, chunk=c.eval.batch_size, ways=ways, mesh=exp.mesh)
    means = {name: float(np.mean(v, dtype=np.float64)) for name, v in zip(names, values)}
    means.update(methods.get_method_class(c.method.name).summarize_heldout(dict(means)))
    return {f"heldout/{name}": value for name, value in means.items()}


def feature_evals(config, ev: EvalSet, train_features, test_features, *, offline_probe: bool = True) -> dict[str, float]:
    """kNN and (optionally) the offline linear probe of one set of features on `ev`'s labelled task."""
    args = (train_features, ev.train_labels, test_features, ev.test_labels)
    e = config.eval
    results = {"knn": knn_accuracy(*args, num_classes=ev.num_classes, k=e.knn_k, temperature=e.knn_temperature)}
    if offline_probe:
        results["linear_probe"] = linear_probe_accuracy(
            *args, num_classes=ev.num_classes, steps=e.linear_probe_steps, l2=e.linear_probe_l2
        )
    return results


def picture_batch(exp: Experiment, state: TrainState, eval_data: EvalSet | dict[str, np.ndarray]) -> Any:
    """The first `eval.num_pictures` held-out examples, replicated on the mesh, or None.

    None when `eval.num_pictures` is 0 or the method makes no pictures (its `pictures` returns
    an empty dict, found by tracing, not running). One fixed batch keeps successive pictures
    comparable; replicated because it is small and need not divide the batch shards.
    """
    ev = as_eval_set(exp, eval_data)
    chunk = {k: v[: exp.config.eval.num_pictures] for k, v in ev.test.items()}
    if len(next(iter(chunk.values()))) == 0:
        return None
    batch = {
        k: jax.make_array_from_callback(v.shape, sharding.replicated(exp.mesh), lambda index, v=v: v[index])
        for k, v in chunk.items()
    }
    if not jax.eval_shape(exp.pictures, state.params, state.buffers, batch):
        return None
    return batch


def write_pictures(exp: Experiment, state: TrainState, batch: Any, writer: MetricWriter, step: int) -> None:
    """The method's pictures of the fixed batch (nothing when `batch` is None)."""
    if batch is not None:
        pictures = jax.device_get(exp.pictures(state.params, state.buffers, batch))
        writer.write_pictures(step, pictures)


def baselines(exp: Experiment, ev: EvalSet) -> dict[str, dict[str, float]]:
    """The data kind's data-only baselines (raw pixels, a unigram model, log-mel features)."""
    return exp.inputs.baselines(ev, lambda train, test: feature_evals(exp.config, ev, train, test))


def raw_pixel_baseline(config: ml_collections.ConfigDict, eval_data: dict[str, np.ndarray]) -> dict[str, float]:
    """kNN and linear probe on raw pixels in [0, 1] (image runs)."""
    ev = image_eval_set(config, eval_data)
    pixels = [s["image"].reshape(len(s["image"]), -1).astype(np.float32) / 255.0 for s in (ev.train, ev.test)]
    return feature_evals(config, ev, *pixels)


# ==================================================================================================
# Loop
# ==================================================================================================


def fetch(metrics: dict[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _warn_if_collapsed(step: int, scalars: dict[str, float], threshold: float) -> None:
    """Says so in the log when an embedding's spread (see `embedding_diagnostics`) nears zero."""
    for name, value in scalars.items():
        if name.endswith("embedding_spread") and value < threshold:
            log.warning(
                "step %d: representation collapse? %s = %.4f (below %.3g: the normalized embeddings of the "
                "batch are nearly identical). Check the learning rate, momentum and temperatures.",
                step,
                name,
                value,
                threshold,
            )


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Pretrains `config.method` and evaluates it; resumes from `workdir` if it holds checkpoints.

    Returns the final results (also written to `<workdir>/results.json`).
    """
    # ==============================================================================================
    # Setup and data
    # ==============================================================================================
    validate_config(config)
    workdir = prepare_workdir(workdir)
    is_chief = jax.process_index() == 0

    # The data kind (images, tokens, waveforms) opens its sources; the mesh, model and step come
    # next, so a bad mesh or batch size fails before data workers start.
    exp = build_experiment(config, inputs=make_inputs(config))
    log.info("mesh %s; %d devices; global batch %d", dict(exp.mesh.shape), jax.device_count(), config.global_batch_size)
    if config.eval.frechet_encoder:
        frechet.check_setup(exp)  # before training: a typo must not cost the whole run
    train_iter = exp.inputs.train_iterator(process_index=jax.process_index(), process_count=jax.process_count())
    train_iter = data.DevicePrefetch(
        train_iter, place=lambda batch: sharding.host_batch_to_global(batch, exp.mesh), size=config.data.device_prefetch
    )
    eval_set = exp.inputs.eval_set()
    if not eval_set.labelled:
        log.info("kNN and linear probes: skipped (the %s data has no labelled task)", exp.inputs.kind)
    elif not exp.inputs.has_train_labels:
        log.info("online probe: skipped (training batches of %s carry no labels)", exp.inputs.kind)

    # ==============================================================================================
    # Checkpoint: resume if the workdir has one
    # ==============================================================================================
    checkpointer = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        every_steps=config.checkpoint.every_steps,
        max_to_keep=config.checkpoint.max_to_keep,
        async_save=config.checkpoint.async_save,
    )
    # The newest step that restores (damaged newer ones are set aside); a config that changed the
    # train state or the method is refused before anything is written.
    config_path = os.path.join(workdir, "config.json")
    saved_config = load_saved_config(config_path)
    state, latest = checkpointer.resume(exp.abstract_state, train_iter, config=config, saved_config=saved_config)
    state = exp.init_state() if state is None else state
    start_step = int(state.step)
    if is_chief and not save_config(config, config_path):  # written once the run starts: a failed command keeps the old
        log.warning("config.json does not load back exactly (non-JSON values?): `jssl eval` will need --config")

    # Rows the killed run logged past `start_step` are superseded (each step is logged once).
    writer = MetricWriter.for_run(config, workdir, resume_step=start_step, finished=start_step >= config.total_steps)
    pictures = picture_batch(exp, state, eval_set)
    progress = Progress.for_run(config, start_step, enabled=is_chief)  # a bar on a terminal, else log lines

    # ==============================================================================================
    # Loop
    # ==============================================================================================
    last_saved = latest
    last_log_step, last_log_time = start_step, time.perf_counter()
    stop = preemption.StopSignals(agree_every=config.log_every_steps).install()
    try:
        for step in range(start_step, config.total_steps):
            batch = next(train_iter)
            state, metrics = exp.train_step(state, batch)
            done = step + 1

            if done % config.log_every_steps == 0 or done == config.total_steps:
                raise_if_nonfinite(state, last_saved)
                if exp.step_traces() > 1:
                    # A shape or dtype changed between steps: a silent recompile costs minutes on a cluster.
                    raise RuntimeError(f"the train step was recompiled ({exp.step_traces()} traces by step {done})")
                scalars = fetch(metrics)
                now = time.perf_counter()
                scalars["steps_per_second"] = (done - last_log_step) / max(now - last_log_time, 1e-9)
                last_log_step, last_log_time = done, now
                writer.write_scalars(done, scalars)
                _warn_if_collapsed(done, scalars, config.collapse_spread)
                progress.logged(done, scalars)
                checkpointer.check()  # a failed background save stops the run now, not at the next save

            if done % config.checkpoint.every_steps == 0 or done == config.total_steps:
                raise_if_nonfinite(state, last_saved)
                if checkpointer.save(done, state, train_iter, force=done == config.total_steps):
                    last_saved = done
                    progress.checkpoint_saved(done, checkpointer.directory)
            if signum := stop.requested(done):  # SIGTERM/SIGINT: save this step, exit 128 + signum
                raise_if_nonfinite(state, last_saved)
                preemption.stop(signum, done, checkpointer=checkpointer, state=state, data_iterator=train_iter)

            if config.eval.every_steps and done % config.eval.every_steps == 0 and done != config.total_steps:
                results = evaluate(exp, state, eval_set, offline_probe=False)
                writer.write_scalars(done, {f"eval/{k}": v for k, v in results.items()})
                progress.evaluated(done, results)
                write_pictures(exp, state, pictures, writer, done)
            progress.advance()
    finally:
        stop.uninstall()
        progress.close()
        checkpointer.close()

    # ==============================================================================================
    # Final evals
    # ==============================================================================================
    final = {"step": int(state.step), "ssl": evaluate(exp, state, eval_set, offline_probe=True)}
    if config.eval.baselines:
        random_state = exp.init_state()
        # An untrained network's BN running statistics are placeholders (0 and 1), which would
        # make this baseline needlessly weak: it normalizes with real batch statistics instead.
        final["random_init"] = evaluate(
            exp, random_state, eval_set, offline_probe=True, batch_statistics=True, online_probe=False
        )
        if eval_set.labelled:
            final.update(baselines(exp, eval_set))
        else:  # data-only baselines that need no labels (a unigram model) still apply
            final.update(exp.inputs.baselines(eval_set, lambda train, test: {}))
    if config.eval.frechet_encoder:
        final["ssl"].update(frechet.frechet_evaluation(exp, state, eval_set))
    if exp.generate is not None and type(exp.inputs).log_samples is not Inputs.log_samples:
        samples = np.asarray(jax.device_get(exp.generate(state.params, state.buffers, jax.random.PRNGKey(config.seed + 4))))
        logged = exp.inputs.log_samples(samples)
        for name, value in logged.items():
            log.info("%s sample at step %d:\n%s", name, final["step"], value)
        writer.write_texts(final["step"], {k: v for k, v in logged.items() if isinstance(v, str)})
        final["ssl"]["samples"] = logged
    final["eval"] = {
        **eval_set.info,
        "task": eval_set.task if eval_set.labelled else None,
        "num_train": int(len(next(iter(eval_set.train.values())))),
        "num_test": int(len(next(iter(eval_set.test.values())))),
        "knn_k": config.eval.knn_k,
        "knn_temperature": config.eval.knn_temperature,
        "random_init_batchnorm": "per-batch statistics (an untrained network has no running statistics)",
        **exp.inputs.describe(),
    }
    scalars = {f"final/{k}": v for k, v in final["ssl"].items() if isinstance(v, (int, float))}
    writer.write_scalars(final["step"], scalars)
    write_pictures(exp, state, pictures, writer, final["step"])
    if config.eval.plots:
        plots.final_plots(exp, state, eval_set, writer, workdir, final["step"])
    writer.close()
    if is_chief:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(final, f, indent=2)
    return final
