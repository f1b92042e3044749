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
from jssl.checkpoint import Checkpointer
from jssl.config import save_config
from jssl.evaluators import knn_accuracy, linear_probe_accuracy
from jssl.metrics import MetricWriter
from jssl.models.partitioning import activation_sharding
from jssl.train import frechet
from jssl.train.optimizers import build_optimizer
from jssl.train.state import SSLModel, TrainState

log = logging.getLogger("jssl")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


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
    if len(config.data.mean) != len(config.data.std):
        raise ValueError(f"data.mean {config.data.mean} and data.std {config.data.std} differ in length")
    methods.get_method_class(config.method.name)  # unknown names fail before data is read
    view_augmentations(config)  # so do crops that do not match the method's views
    device_augmentations(config)  # and ops without a device twin when augmenting on the device


def device_augmentations(config: ml_collections.ConfigDict) -> list[Callable] | None:
    """One jit-able augment(images, keys) per view if `data.augment_on='device'`, else None."""
    if data.check_augment_on(config.data.get("augment_on", "host")) == "host":
        return None
    from jssl.data.device_augment import parse_device_augment

    return [parse_device_augment(spec) for spec in view_augmentations(config)]


def view_augmentations(config: ml_collections.ConfigDict) -> list[str]:
    """One augmentation string per view the method needs (from `data.augment` or `data.crops`)."""
    num_views = methods.get_method_class(config.method.name).num_views(config)
    return data.view_specs(config.data.augment, config.data.crops, num_views, method=config.method.name)


def source_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Source options from the config; empty strings mean 'not set' (each source takes only its own)."""
    d = config.data
    options = dict(
        tfds_name=d.tfds_name, data_dir=d.data_dir, path=d.path, image_key=d.image_key, label_key=d.label_key
    )
    return {k: (os.path.expanduser(v) if k in ("data_dir", "path") else v) or None for k, v in options.items()}


def normalize(images: jax.Array, mean, std, dtype) -> jax.Array:
    """uint8 [..., C] -> standardized floats, on device (the host only moves bytes)."""
    x = images.astype(jnp.float32) / 255.0
    return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


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
    num_views: int
    view_augmentations: list[str]  # one augmentation spec per view, in view order
    # 'host': batches hold the views ('view_0', ...); 'device': the source images ('image'),
    # augmented inside the step with keys from (seed, step, example index, view).
    augment_on: str
    step_traces: Callable[[], int]  # how many times the step was traced (compiled)


def build_experiment(
    config: ml_collections.ConfigDict,
    *,
    image_shape: tuple[int, ...],
    mesh=None,
    wrap_step: Callable[[Callable], Callable] | None = None,
) -> Experiment:
    """Mesh, model, optimizer, sharded state creation and the jit'd step, without data or I/O.

    `wrap_step` wraps the pure step function before `jax.jit`, e.g.
    `functools.partial(chex.assert_max_traces, n=1)` in tests.
    """
    validate_config(config)

    # ==============================================================================================
    # Mesh
    # ==============================================================================================
    mesh = sharding.make_mesh(dict(config.mesh)) if mesh is None else mesh
    sharding.check_global_batch(config.global_batch_size, mesh)
    if len(config.data.mean) not in (1, image_shape[-1]):
        raise ValueError(f"data.mean has {len(config.data.mean)} entries but images have {image_shape[-1]} channels")

    # ==============================================================================================
    # Model + optimizer
    # ==============================================================================================
    dtype = DTYPES[config.model.dtype]
    tx, schedule = build_optimizer(config)
    augmentations = view_augmentations(config)
    num_views = len(augmentations)
    on_device = device_augmentations(config)

    def build_model(seed: int) -> SSLModel:
        rngs = nnx.Rngs(seed)
        method = methods.build_method(config, in_channels=image_shape[-1], dtype=dtype, rngs=rngs)
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
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)

    from jssl.data.device_augment import example_keys

    def augment_views(images: jax.Array, step: jax.Array) -> list[jax.Array]:
        # Keys from global quantities only (seed, step, position in the global batch, view): the
        # views do not depend on the mesh and a resumed step redraws them. The constraint keeps
        # each device drawing and augmenting its own shard of the batch.
        index = jnp.arange(images.shape[0])
        views = []
        for v, augment in enumerate(on_device):
            keys = example_keys(seed=config.seed, step=step, example_index=index, view=v)
            keys = jax.lax.with_sharding_constraint(keys, batch_sharding)
            views.append(jax.lax.with_sharding_constraint(augment(images, keys), batch_sharding))
        return views

    traces = [0]
    # Logical names of activations (`constrain` in the models) -> shardings, while tracing.
    activations = sharding.activation_sharding_fn(config.sharding_rules, mesh)

    def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        with activation_sharding(activations):
            return _train_step(state, batch)

    def _train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        traces[0] += 1  # runs at trace time only: counts compilations
        rng = jax.random.fold_in(state.rng, state.step)
        if on_device is None:
            views = [normalize(batch[f"view_{i}"], mean, std, dtype) for i in range(num_views)]
        else:
            views = [normalize(v, mean, std, dtype) for v in augment_views(batch["image"], state.step)]

        def loss_fn(params):
            model = nnx.merge(graphdef, params, state.buffers, copy=True)
            out = model.method(views, step=state.step, rngs=nnx.Rngs(rng))
            logits = model.probe(jax.lax.stop_gradient(out.features))
            probe_loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            probe_accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
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

        finite = jnp.isfinite(loss)
        first_bad = jnp.where((state.first_nonfinite_step < 0) & ~finite, state.step, state.first_nonfinite_step)
        metrics = {
            "loss": loss,
            "probe/loss": probe_loss,
            "probe/train_accuracy": probe_accuracy,
            "grad_norm": optax.tree.norm(grads["method"]),
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

    def represent(params, buffers, images, batch_statistics: bool = False):
        model = nnx.merge(graphdef, params, buffers, copy=True)
        # No stochastic layers (drop path, dropout) in evaluation; BatchNorm from running
        # statistics unless `batch_statistics`.
        model.set_attributes(deterministic=True, use_running_average=not batch_statistics, raise_if_not_found=False)
        with activation_sharding(activations):
            features = model.method.represent(normalize(images, mean, std, dtype)).astype(jnp.float32)
        return features, model.probe(features)

    jitted_represent = jax.jit(
        represent,
        in_shardings=(shardings.params, shardings.buffers, batch_sharding),
        out_shardings=(batch_sharding, batch_sharding),
        static_argnums=3,
    )

    def pictures(params, buffers, images):
        model = nnx.merge(graphdef, params, buffers, copy=True)
        model.eval()  # BN from running statistics, no drop path: pictures of the model as evaluated
        m, s = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
        out = model.method.pictures(
            normalize(images, mean, std, dtype),
            rngs=nnx.Rngs(jax.random.PRNGKey(config.seed + 2)),
            to_pixels=lambda x: x.astype(jnp.float32) * s + m,
        )
        return {name: value.astype(jnp.float32) for name, value in out.items()}

    jitted_pictures = jax.jit(
        pictures, in_shardings=(shardings.params, shardings.buffers, replicated), out_shardings=replicated
    )
    def heldout(params, buffers, images, key):
        model = nnx.merge(graphdef, params, buffers, copy=True)
        model.eval()
        with activation_sharding(activations):
            out = model.method.heldout_metrics(normalize(images, mean, std, dtype), rngs=nnx.Rngs(key))
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
                images = model.method.generate(config.eval.batch_size, rngs=nnx.Rngs(key))
            pixels = images.astype(jnp.float32) * jnp.asarray(std, jnp.float32) + jnp.asarray(mean, jnp.float32)
            # uint8, as real images reach an encoder: samples are scored as they would be saved.
            return jnp.round(jnp.clip(pixels, 0.0, 1.0) * 255.0).astype(jnp.uint8)

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
        num_views=num_views,
        view_augmentations=augmentations,
        augment_on="host" if on_device is None else "device",
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


def map_in_chunks(images: np.ndarray, fn, *, chunk: int, ways: int, mesh) -> list[np.ndarray]:
    """Applies a jit'd batch function over `images` in fixed-size chunks (padded: one compile)."""
    chunk = max(ways * jax.process_count(), chunk - chunk % (ways * jax.process_count()))
    outs: list[list[np.ndarray]] = []
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        n = len(block)
        if n < chunk:
            block = np.concatenate([block, np.zeros((chunk - n, *block.shape[1:]), block.dtype)])
        per_process = chunk // jax.process_count()
        local = block[jax.process_index() * per_process : (jax.process_index() + 1) * per_process]
        results = fn(sharding.host_batch_to_global({"x": local}, mesh)["x"])
        outs.append([np.asarray(multihost_utils.process_allgather(r, tiled=True))[:n] for r in results])
    return [np.concatenate(parts) for parts in zip(*outs)]


def evaluate(
    exp: Experiment,
    state: TrainState,
    eval_data: dict[str, np.ndarray],
    *,
    offline_probe: bool,
    batch_statistics: bool = False,
) -> dict[str, float]:
    """kNN (and optionally an offline linear probe) on held-out data, plus the online probe's accuracy."""
    c = exp.config
    fn = lambda x: exp.represent(state.params, state.buffers, x, batch_statistics)  # noqa: E731
    ways = sharding.batch_size_per_shard(exp.mesh)
    train_features, _ = map_in_chunks(eval_data["train_images"], fn, chunk=c.eval.batch_size, ways=ways, mesh=exp.mesh)
    test_features, test_logits = map_in_chunks(
        eval_data["test_images"], fn, chunk=c.eval.batch_size, ways=ways, mesh=exp.mesh
    )
    results = _feature_evals(c, train_features, test_features, eval_data, offline_probe=offline_probe)
    results["online_probe"] = float(np.mean(test_logits.argmax(-1) == eval_data["test_labels"]))
    results.update(heldout_metrics(exp, state, eval_data["test_images"]))
    return results


def heldout_metrics(exp: Experiment, state: TrainState, images: np.ndarray) -> dict[str, float]:
    """`{'heldout/<name>': mean over images}` of the method's per-example `heldout_metrics`.

    Chunk i draws its noise from `fold_in(key, i)`, so the same weights give the same numbers
    at every eval and on every mesh. Empty (nothing run) when the method defines none.
    """
    c = exp.config
    ways = sharding.batch_size_per_shard(exp.mesh)
    base_key = jax.random.PRNGKey(c.seed + 3)
    abstract_images = jax.ShapeDtypeStruct((ways * jax.process_count(), *images.shape[1:]), jnp.uint8)
    names = sorted(jax.eval_shape(exp.heldout, state.params, state.buffers, abstract_images, base_key))
    if not names or len(images) == 0:
        return {}
    chunks = itertools.count()

    def fn(x):
        out = exp.heldout(state.params, state.buffers, x, jax.random.fold_in(base_key, next(chunks)))
        return [out[name] for name in names]

    values = map_in_chunks(images, fn, chunk=c.eval.batch_size, ways=ways, mesh=exp.mesh)
    return {f"heldout/{name}": float(np.mean(v, dtype=np.float64)) for name, v in zip(names, values)}


def _feature_evals(config, train_features, test_features, eval_data, *, offline_probe: bool) -> dict[str, float]:
    """kNN and (optionally) the offline linear probe of one set of features."""
    args = (train_features, eval_data["train_labels"], test_features, eval_data["test_labels"])
    e = config.eval
    results = {"knn": knn_accuracy(*args, num_classes=config.data.num_classes, k=e.knn_k, temperature=e.knn_temperature)}
    if offline_probe:
        results["linear_probe"] = linear_probe_accuracy(
            *args, num_classes=config.data.num_classes, steps=e.linear_probe_steps, l2=e.linear_probe_l2
        )
    return results


def picture_batch(exp: Experiment, state: TrainState, eval_data: dict[str, np.ndarray]) -> jax.Array | None:
    """The first `eval.num_pictures` held-out images, replicated on the mesh, or None.

    None when `eval.num_pictures` is 0 or the method makes no pictures (its `pictures` returns
    an empty dict, found by tracing, not running). One fixed batch keeps successive pictures
    comparable; replicated because it is small and need not divide the batch shards.
    """
    images = eval_data["test_images"][: exp.config.eval.num_pictures]
    if len(images) == 0:
        return None
    batch = jax.make_array_from_callback(images.shape, sharding.replicated(exp.mesh), lambda index: images[index])
    if not jax.eval_shape(exp.pictures, state.params, state.buffers, batch):
        return None
    return batch


def write_pictures(
    exp: Experiment, state: TrainState, images: jax.Array | None, writer: MetricWriter, step: int
) -> None:
    """The method's pictures of the fixed batch `images` at `step` (nothing when `images` is None)."""
    if images is not None:
        pictures = jax.device_get(exp.pictures(state.params, state.buffers, images))
        writer.write_pictures(step, pictures)


def raw_pixel_baseline(config: ml_collections.ConfigDict, eval_data: dict[str, np.ndarray]) -> dict[str, float]:
    pixels = {k: v.reshape(len(v), -1).astype(np.float32) / 255.0 for k, v in eval_data.items() if k.endswith("images")}
    return _feature_evals(config, pixels["train_images"], pixels["test_images"], eval_data, offline_probe=True)


def load_eval_data(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """Training split (the kNN bank / probe training set) and held-out split, as arrays."""
    out = {}
    for prefix, split in (("train", config.data.train_split), ("test", config.data.eval_split)):
        source = data.get_source(config.data.name, split, **source_options(config))
        images, labels = data.load_arrays(
            source, limit=config.data.max_eval_examples, preprocess=config.data.eval_preprocess
        )
        out[f"{prefix}_images"], out[f"{prefix}_labels"] = images, labels
    return out


# ==================================================================================================
# Loop
# ==================================================================================================


def fetch(metrics: dict[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


PRETRAINING_ADVICE = (
    "Lower optimizer.base_learning_rate, add optimizer.grad_clip_norm, or use model.dtype='float32'."
)


def raise_if_nonfinite(
    state: TrainState, last_checkpoint: int | None, *, what: str = "training", advice: str = PRETRAINING_ADVICE
) -> None:
    """Raises `NonFiniteLossError` naming the first step whose loss was NaN or inf, if any."""
    bad = int(state.first_nonfinite_step)
    if bad >= 0:
        hint = (
            f"the last checkpoint is at step {last_checkpoint}"
            if last_checkpoint is not None
            else "no checkpoint was saved"
        )
        raise NonFiniteLossError(
            f"the {what} loss became non-finite (NaN or inf) at step {bad}; stopping ({hint}). {advice}"
        )


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
    if is_chief and not save_config(config, os.path.join(workdir, "config.json")):
        log.warning("config.json does not load back exactly (non-JSON values?): `jssl eval` will need --config")

    # data.decode=False is passed as an option only when set: sources other than tfds reject it.
    decode = None if config.data.get("decode", True) else False
    train_source = data.get_source(config.data.name, config.data.train_split, **source_options(config), decode=decode)
    image_shape = data.record_image_shape(train_source)
    # Mesh, model and step first: a bad mesh or batch size fails before data workers start.
    exp = build_experiment(config, image_shape=image_shape)
    log.info("mesh %s; %d devices; global batch %d", dict(exp.mesh.shape), jax.device_count(), config.global_batch_size)
    if config.eval.frechet_encoder:
        frechet.check_setup(exp)  # before training: a typo must not cost the whole run
    train_iter = data.make_train_iterator(
        train_source,
        global_batch_size=config.global_batch_size,
        num_views=exp.num_views,
        augment=exp.view_augmentations,
        seed=config.seed,
        num_workers=config.data.num_workers,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        augment_on=exp.augment_on,
        device_source_size=config.data.get("device_source_size", 0) or None,
    )
    train_iter = data.DevicePrefetch(
        train_iter, place=lambda batch: sharding.host_batch_to_global(batch, exp.mesh), size=config.data.device_prefetch
    )
    eval_data = load_eval_data(config)

    # ==============================================================================================
    # Checkpoint: resume if the workdir has one
    # ==============================================================================================
    checkpointer = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        every_steps=config.checkpoint.every_steps,
        max_to_keep=config.checkpoint.max_to_keep,
        async_save=config.checkpoint.async_save,
    )
    latest = checkpointer.latest_step()
    if latest is not None:
        state = checkpointer.restore(latest, exp.abstract_state, train_iter)
        log.info("resumed from step %d in %s", latest, checkpointer.directory)
    else:
        state = exp.init_state()
    start_step = int(state.step)

    writer = MetricWriter(workdir)
    pictures = picture_batch(exp, state, eval_data)
    progress = None
    if config.progress_bar and is_chief and start_step < config.total_steps:
        from tqdm.auto import tqdm

        progress = tqdm(total=config.total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    # ==============================================================================================
    # Loop
    # ==============================================================================================
    last_saved = latest
    last_log_step, last_log_time = start_step, time.perf_counter()
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
                if progress is not None:
                    progress.set_postfix(loss=f"{scalars['loss']:.4f}", lr=f"{scalars['learning_rate']:.3g}")

            if done % config.checkpoint.every_steps == 0 or done == config.total_steps:
                raise_if_nonfinite(state, last_saved)
                if checkpointer.save(done, state, train_iter, force=done == config.total_steps):
                    last_saved = done

            if config.eval.every_steps and done % config.eval.every_steps == 0 and done != config.total_steps:
                results = evaluate(exp, state, eval_data, offline_probe=False)
                writer.write_scalars(done, {f"eval/{k}": v for k, v in results.items()})
                log.info("step %d eval %s", done, results)
                write_pictures(exp, state, pictures, writer, done)
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()
        checkpointer.close()

    # ==============================================================================================
    # Final evals
    # ==============================================================================================
    final = {"step": int(state.step), "ssl": evaluate(exp, state, eval_data, offline_probe=True)}
    if config.eval.baselines:
        random_state = exp.init_state()
        # An untrained network's BN running statistics are placeholders (0 and 1), which would
        # make this baseline needlessly weak: it normalizes with real batch statistics instead.
        final["random_init"] = evaluate(exp, random_state, eval_data, offline_probe=True, batch_statistics=True)
        del final["random_init"]["online_probe"]  # an untrained probe: not a baseline
        final["raw_pixels"] = raw_pixel_baseline(config, eval_data)
    if config.eval.frechet_encoder:
        final["ssl"].update(frechet.frechet_evaluation(exp, state, eval_data))
    final["eval"] = {
        "train_split": config.data.train_split,
        "test_split": config.data.eval_split,
        "num_train": int(len(eval_data["train_labels"])),
        "num_test": int(len(eval_data["test_labels"])),
        "knn_k": config.eval.knn_k,
        "knn_temperature": config.eval.knn_temperature,
        "random_init_batchnorm": "per-batch statistics (an untrained network has no running statistics)",
    }
    scalars = {f"final/{k}": v for k, v in final["ssl"].items() if isinstance(v, (int, float))}
    writer.write_scalars(final["step"], scalars)
    write_pictures(exp, state, pictures, writer, final["step"])
    writer.close()
    if is_chief:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(final, f, indent=2)
    return final
