"""The train-step benchmark: jssl's real jit'd step on device-resident synthetic batches,
then (optionally) end to end with the real Grain pipeline feeding it.

Runs inside a worker process (see `benchmarks.worker`) so that XLA flags and the fake
device count are fixed before jax starts.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from benchmarks import flops, harness, hlo_breakdown
from benchmarks.suites import SIMCLR_AUGMENT, StepEntry


def entry_config(entry: StepEntry, channels: int = 3):
    """The jssl config for an entry: the base config (or the entry's recipe) with the entry's fields set."""
    from jssl.config import base_config

    if entry.recipe:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", f"{entry.recipe}.py")
        spec = importlib.util.spec_from_file_location(entry.recipe, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        c = module.get_config()
        if c.method.name != entry.method:
            raise ValueError(f"entry {entry.name}: recipe {entry.recipe} trains {c.method.name}, not {entry.method}")
    else:
        c = base_config()
        c.method.name = entry.method
    if is_vit(entry.model):
        # A ViT takes no ResNet options: keep a ViT recipe's own kwargs (MAE's sin-cos positions),
        # start a ResNet recipe's (DINO, MoCo v3) afresh; overrides below add the rest.
        if not is_vit(c.model.name):
            import ml_collections

            c.model.kwargs = ml_collections.ConfigDict()
    elif entry.model.startswith("resnet"):
        c.model.kwargs.small_image_stem = entry.small_image_stem
    # Other models (the DDPM U-Net) keep their recipe's kwargs; overrides set the rest.
    c.model.name = entry.model
    c.model.dtype = entry.precision
    c.global_batch_size = entry.batch
    c.data.mean = (0.5,) * channels
    c.data.std = (0.25,) * channels
    c.mesh = dict(entry.mesh)
    c.total_steps = 10_000  # only shapes the LR schedule; a benchmark never reaches it
    # Explicit, not 'auto': an entry measures the same step on every backend (the device-
    # augmenting entries say so in their overrides).
    c.data.augment_on = "host"
    for path, value in entry.overrides:
        _set_path(c, path, value)
    return c


def is_vit(model: str) -> bool:
    return model.startswith("vit_")


def _set_path(config, path: str, value: Any) -> None:
    """`config.a.b.c = value` for `path='a.b.c'`; fields may be new (ViT kwargs on a fresh dict)."""
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = getattr(node, part)
    setattr(node, leaf, value)


def view_shapes(entry: StepEntry, augmentations: list[str], channels: int = 3) -> list[tuple[int, ...]]:
    """Each view's image shape: the recipe's crop sizes (multi-crop), else the entry's resolution."""
    if not entry.recipe:
        return [(entry.resolution, entry.resolution, channels)] * len(augmentations)
    from jssl import data

    image = np.zeros((entry.resolution, entry.resolution, channels), np.uint8)
    views = data.MultiViewTransform(augmentations).random_map({"image": image, "label": 0}, np.random.default_rng(0))
    return [views[f"view_{v}"].shape for v in range(len(augmentations))]


def source_size(entry: StepEntry) -> int:
    """Side of the source images the pipeline (and the device-augmentation step) starts from: a bit
    larger than the crop, so random_resized_crop does real resampling."""
    return int(entry.resolution * 1.15)


def synthetic_batch(entry: StepEntry, augmentations: list[str], channels: int = 3, seed: int = 0,
                    augment_on: str = "host") -> dict[str, np.ndarray]:
    """Random uint8 views (host augmentation), or source images the step augments (`augment_on='device'`)."""
    rng = np.random.default_rng(seed)
    if augment_on == "device":
        size = source_size(entry)
        batch = {"image": rng.integers(0, 256, (entry.batch, size, size, channels), dtype=np.uint8)}
    else:
        shapes = view_shapes(entry, augmentations, channels)
        batch = {f"view_{v}": rng.integers(0, 256, (entry.batch, *shape), dtype=np.uint8) for v, shape in enumerate(shapes)}
    batch["label"] = rng.integers(0, 10, (entry.batch,), dtype=np.int32)
    return batch


def _analytic(entry: StepEntry, config, image_shape, shapes: list[tuple[int, ...]] | None = None) -> dict[str, Any]:
    """Analytic FLOPs where a model covers the step: ViT steps (multi-crop, teachers and MAE's
    masking included, `flops_vit`), and ResNet steps of two same-size views through encoder and
    heads; ResNet recipes with teachers or multi-crop are counted by XLA alone."""
    nan = {k: float("nan") for k in ("train_flops", "train_flops_valid", "backbone_forward_flops_per_image")}
    if is_vit(entry.model):
        from benchmarks import flops_vit

        try:
            counts = flops_vit.analytic_vit_step_flops(config, shapes or [image_shape])
        except NotImplementedError:  # a teacher schedule flops_vit does not model (BYOL, SwAV, ...)
            return nan
        # No zero padding in a ViT: the textbook count is the one XLA sees.
        return {"train_flops": counts["train_flops"], "train_flops_valid": counts["train_flops"],
                "backbone_forward_flops_per_image": counts["encoder_forward_flops_per_image"],
                "components": counts["components"], "shares": flops_vit.component_summary(counts["components"])}
    if entry.recipe:
        return nan
    return flops.analytic_step_flops(config, image_shape)


def _mesh(entry: StepEntry):
    import jax

    from jssl import sharding

    devices = jax.devices()
    if devices[0].platform == "cpu" or entry.limit_devices:
        if len(devices) < entry.devices:
            raise RuntimeError(f"entry {entry.name} needs {entry.devices} devices; {len(devices)} visible")
        devices = devices[: entry.devices]
    return sharding.make_mesh(dict(entry.mesh), devices=devices)


def count_flops(entry: StepEntry) -> dict[str, Any]:
    """XLA (from the lowered step, no compile) and analytic FLOPs: cheap even for ResNet-50 at 224."""
    import jax

    from jssl.train import build_experiment

    config = entry_config(entry)
    image_shape = (entry.resolution, entry.resolution, 3)
    exp = build_experiment(config, image_shape=image_shape, mesh=_mesh(entry))
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in synthetic_batch(entry, exp.view_augmentations).items()}
    lowered = exp.train_step.lower(exp.abstract_state, abstract)
    analytic = _analytic(entry, config, image_shape, view_shapes(entry, exp.view_augmentations))
    xla = flops.xla_flops(lowered)
    images = entry.batch * exp.num_views
    return {
        "name": entry.name,
        "xla_flops": xla,
        "analytic_flops": analytic["train_flops"],
        "analytic_flops_valid": analytic["train_flops_valid"],
        "xla_over_analytic": xla / analytic["train_flops"] if xla else None,
        "xla_over_analytic_valid": xla / analytic["train_flops_valid"] if xla else None,
        "xla_flops_per_image_view": xla / images if xla else None,
        "analytic_forward_flops_per_image": analytic["backbone_forward_flops_per_image"],
        **({"analytic_shares": analytic["shares"]} if "shares" in analytic else {}),
        **(hlo_breakdown.breakdown(lowered) if is_vit(entry.model) else {}),
    }


def run_step(entry: StepEntry, peak_override: float | None = None, *, profile_dir: str | None = None) -> dict[str, Any]:
    """Compiles and times one entry's train step; `profile_dir`: also write a `jax.profiler`
    trace of a few steps there (TensorBoard's profile plugin or Perfetto reads it)."""
    import jax

    from jssl import sharding
    from jssl.train import build_experiment

    config = entry_config(entry)
    image_shape = (entry.resolution, entry.resolution, 3)
    mesh = _mesh(entry)
    num_devices = mesh.size
    exp = build_experiment(config, image_shape=image_shape, mesh=mesh)
    state = exp.init_state()
    host = synthetic_batch(entry, exp.view_augmentations, augment_on=exp.augment_on)
    batch = sharding.host_batch_to_global(host, mesh)
    jax.block_until_ready((state, batch))

    lowered, compiled, compile_times = harness.timed_lower_compile(exp.train_step, state, batch)
    # XLA's count of the whole step comes from the lowered (unpartitioned, not yet optimized)
    # HLO: on GPU the compiled executable's cost analysis misses the convolutions that became
    # cuDNN custom calls (an H200 ResNet-50 step read 1.8% of the analytic count, 2026-11-30).
    # The compiled count (per device after SPMD partitioning, times the devices) is kept beside it.
    xla_total = flops.xla_flops(lowered)
    xla_compiled_per_device = flops.xla_flops(compiled)
    xla_compiled = xla_compiled_per_device * num_devices if xla_compiled_per_device else None
    analytic = _analytic(entry, config, image_shape, view_shapes(entry, exp.view_augmentations))

    holder = {"state": state}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], batch)
        return holder["state"], metrics

    times = harness.time_calls(one_step, warmup=entry.warmup, steps=entry.steps)
    stats = harness.summarize(times)
    median = stats["median_s"]
    device = mesh.devices.flat[0]
    # ViT steps take the analytic count for MFU: on GPU the attention may run as a cuDNN
    # custom call whose FLOPs XLA's cost analysis need not count; the XLA/analytic column
    # shows whether it did. ResNet steps keep XLA's count (it matches, padding taps aside).
    # So do steps that augment on the device: XLA's count then includes the augmentation's FLOPs.
    use_analytic = (is_vit(entry.model) or exp.augment_on == "device") and np.isfinite(analytic["train_flops"])
    per_device_flops = (analytic["train_flops"] if use_analytic or not xla_total else xla_total) / num_devices
    achieved = per_device_flops / median / 1e12
    peak = harness.peak_tflops(device.device_kind, entry.precision, peak_override)
    result: dict[str, Any] = {
        "kind": "step",
        **entry.to_dict(),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "num_devices": num_devices,
        **compile_times,
        **{f"step_{k}": v for k, v in stats.items()},
        "examples_per_s": entry.batch / median,
        "examples_per_s_per_device": entry.batch / median / num_devices,
        "xla_flops": xla_total,
        "xla_flops_compiled": xla_compiled,
        "analytic_flops": analytic["train_flops"],
        "analytic_flops_valid": analytic["train_flops_valid"],
        "flops_agreement": xla_total / analytic["train_flops_valid"] if xla_total else None,
        "tflops_per_device": achieved,
        "mfu_flops_source": "analytic" if use_analytic or not xla_total else "xla",
        "views_per_s_per_device": entry.batch * exp.num_views / median / num_devices,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        **harness.memory_report(compiled, device),
        **(flops.conv_lowering_census(compiled.as_text()) if device.platform == "cpu" else {}),
        "loss_finite": bool(np.isfinite(float(jax.device_get(one_step()[1]["loss"])))),
    }
    if "shares" in analytic:
        result["analytic_components"] = analytic["components"]
        result.update({f"share_{k}": v for k, v in analytic["shares"].items()})
    if profile_dir:
        from benchmarks import profile_summary

        if is_vit(entry.model):  # XLA's FLOPs by layer kind: one more trace of the step
            result.update(hlo_breakdown.breakdown(exp.train_step.lower(holder["state"], batch)))
        result["profile_dir"] = profile_trace(one_step, os.path.join(profile_dir, entry.name), steps=PROFILE_STEPS)
        result.update({f"profile_{k}": v for k, v in
                       profile_summary.summarize_trace(result["profile_dir"], steps=PROFILE_STEPS).items()})
    if entry.e2e_steps:
        result.update(run_end_to_end(entry, exp, compiled, holder, mesh))
    return result


PROFILE_STEPS = 3


def profile_trace(one_step, directory: str, *, steps: int) -> str:
    """A `jax.profiler` trace of `steps` already-compiled steps (device kernels and host time)."""
    import jax

    os.makedirs(directory, exist_ok=True)
    jax.profiler.start_trace(directory)
    try:
        for _ in range(steps):
            jax.block_until_ready(one_step())
    finally:
        jax.profiler.stop_trace()
    return directory


def run_end_to_end(entry: StepEntry, exp, compiled, holder, mesh) -> dict[str, Any]:
    """The same executable fed by `jssl.data.make_train_iterator` on random 3-channel images,
    with the SimCLR augmentations at the entry's resolution (on the host, or in the step when the
    entry augments on the device): host time is now included."""
    import jax

    from jssl import data, sharding

    rng = np.random.default_rng(1)
    n = max(2 * entry.batch, 64)
    size = source_size(entry)
    source = data.ArraySource(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 10, n))
    it = data.make_train_iterator(
        source,
        global_batch_size=entry.batch,
        num_views=exp.num_views,
        augment=exp.view_augmentations if exp.augment_on == "device" else SIMCLR_AUGMENT.format(res=entry.resolution),
        seed=0,
        num_workers=entry.e2e_workers,
        augment_on=exp.augment_on,
    )

    def one_step():
        batch = sharding.host_batch_to_global(next(it), mesh)
        holder["state"], metrics = compiled(holder["state"], batch)
        return holder["state"], metrics

    times = harness.time_calls(one_step, warmup=1, steps=entry.e2e_steps, sync=jax.block_until_ready)
    stats = harness.summarize(times)
    return {
        **{f"e2e_step_{k}": v for k, v in stats.items()},
        "e2e_examples_per_s": entry.batch / stats["median_s"],
        "e2e_workers": entry.e2e_workers,
    }


def run_breakdown(entry: StepEntry) -> dict[str, Any]:
    """The encoder alone (train-mode BatchNorm) on both views' images: forward, and forward +
    backward w.r.t. its parameters. The full step minus these is heads, loss and optimizer."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jssl import methods

    config = entry_config(entry)
    method = methods.build_method(config, in_channels=3, dtype=jnp.float32, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(method.encoder, nnx.Param, ...)
    x = jax.random.normal(jax.random.PRNGKey(0), (2 * entry.batch, entry.resolution, entry.resolution, 3))

    def features_sum(params, x):
        return nnx.merge(graphdef, params, rest, copy=True)(x).sum()

    rows = {}
    for name, fn in (("encoder_forward", features_sum), ("encoder_forward_backward", jax.grad(features_sum))):
        compiled, times = harness.timed_compile(jax.jit(fn), params, x)
        step_times = harness.time_calls(lambda: compiled(params, x), warmup=entry.warmup, steps=entry.steps)
        rows[name + "_s"] = harness.summarize(step_times)["median_s"]
        rows[name + "_compile_s"] = times["compile_s"]
    return {"kind": "breakdown", "impl": "jssl", **entry.to_dict(), **rows}
