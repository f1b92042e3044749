"""SwAV and DINO: multi-crop forwards, schedules, buffers, frozen parameters, option checks.

Generic cross-method properties (sharded == single device, one trace, resume, teacher not in
the optimizer) are tested elsewhere; these are the method-specific ones.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import methods, sharding
from jssl.models.resnet import ResNet
from jssl.train import build_experiment
from tests.train.helpers import load_config

GLOBAL, LOCAL = 16, 8
N_GLOBAL, N_LOCAL = 2, 2


def tiny(name: str, **overrides):
    """A tiny multi-crop config: 2 x 16 px global + 2 x 8 px local crops, batch 16."""
    config = load_config("smoke", name=f"{name}_mnist")
    config.model.kwargs.width_multiplier = 0.25
    config.global_batch_size = 16
    config.method.num_global_crops = N_GLOBAL
    config.method.num_local_crops = N_LOCAL
    config.data.crops = ((N_GLOBAL, f"random_resized_crop({GLOBAL})"), (N_LOCAL, f"random_resized_crop({LOCAL})"))
    if name == "swav":
        config.method.queue_length = 0
    for key, value in overrides.items():
        target = config
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return config


def views(batch: int = 16, seed: int = 0, n_global: int = N_GLOBAL, n_local: int = N_LOCAL) -> list[jax.Array]:
    rng = np.random.default_rng(seed)
    sizes = [GLOBAL] * n_global + [LOCAL] * n_local
    return [jnp.asarray(rng.normal(size=(batch, s, s, 1)), jnp.float32) for s in sizes]


def uint8_batch(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [GLOBAL] * N_GLOBAL + [LOCAL] * N_LOCAL
    out = {f"view_{i}": rng.integers(0, 256, (batch, s, s, 1), dtype=np.uint8) for i, s in enumerate(sizes)}
    out["label"] = rng.integers(0, 10, (batch,)).astype(np.int32)
    return out


def build(config):
    return methods.build_method(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))


def run_steps(config, n: int):
    """Params (as numpy) before training and after each of `n` steps on an 8-device mesh."""
    mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1))
    exp = build_experiment(config, image_shape=(GLOBAL, GLOBAL, 1), mesh=mesh)
    state = exp.init_state()
    history = [jax.device_get(state.params)]
    metrics = []
    for i in range(n):
        state, m = exp.train_step(state, sharding.host_batch_to_global(uint8_batch(config.global_batch_size, i), mesh))
        history.append(jax.device_get(state.params))
        metrics.append(jax.device_get(m))
    return history, metrics


def value(tree, *path):
    for p in path:
        tree = tree[p]
    return np.asarray(tree.get_value() if hasattr(tree, "get_value") else tree)


# ------------------------------------------------------------------------------------------------
# Multi-crop: one backbone forward per resolution group
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected_calls", [("swav", 2), ("dino", 3)])
def test_one_backbone_forward_per_resolution_group(name, expected_calls, monkeypatch):
    method = build(tiny(name))
    calls = []
    original = ResNet.__call__

    def counting(self, images):
        calls.append(images.shape)
        return original(self, images)

    monkeypatch.setattr(ResNet, "__call__", counting)
    out = method(views(), step=jnp.zeros((), jnp.int32))
    # SwAV: one call for the 2 global crops, one for the 2 local crops. DINO: the same for
    # the student, plus one teacher call on the global crops only.
    assert len(calls) == expected_calls, calls
    assert calls[0] == (N_GLOBAL * 16, GLOBAL, GLOBAL, 1)
    assert calls[1] == (N_LOCAL * 16, LOCAL, LOCAL, 1)
    if name == "dino":
        assert calls[2] == (N_GLOBAL * 16, GLOBAL, GLOBAL, 1)
    assert out.features.shape == (16, method.feature_dim)
    assert np.isfinite(float(out.loss))


# ------------------------------------------------------------------------------------------------
# DINO
# ------------------------------------------------------------------------------------------------


def test_dino_teacher_temperature_and_momentum_schedules():
    config = tiny(
        "dino",
        **{
            "total_steps": 100,
            "method.teacher_temperature_start": 0.04,
            "method.teacher_temperature": 0.07,
            "method.teacher_temperature_warmup_steps": 30,
            "method.teacher_momentum": 0.99,
            "method.teacher_momentum_final": 1.0,
        },
    )
    method = build(config)
    for step, expected in [(0, 0.04), (15, 0.055), (30, 0.07), (80, 0.07)]:
        np.testing.assert_allclose(float(method.teacher_temperature(jnp.asarray(step))), expected, rtol=1e-5)
    for step in (0, 25, 50, 100):
        expected = 1 - (1 - 0.99) * (math.cos(math.pi * step / 100) + 1) / 2
        np.testing.assert_allclose(float(method.teacher_momentum(jnp.asarray(step))), expected, rtol=1e-6)
    # Logged as metrics at the step's value.
    out = method(views(), step=jnp.asarray(15))
    np.testing.assert_allclose(float(out.metrics["teacher_temperature"]), 0.055, rtol=1e-5)
    assert 0 < float(out.metrics["teacher_entropy"]) <= math.log(config.method.out_dim) + 1e-4


def test_dino_center_update_matches_formula():
    config = tiny("dino", **{"method.center_momentum": 0.8})
    method = build(config)
    c0 = np.random.default_rng(1).normal(size=config.method.out_dim).astype(np.float32)
    method.center.set_value(jnp.asarray(c0))
    vs = views()
    method(vs, step=jnp.zeros((), jnp.int32))
    # Independently: the teacher's logits of the global crops (batch statistics, as in training).
    logits = method.teacher_head(method.teacher_encoder(jnp.concatenate(vs[:N_GLOBAL])))[0]
    expected = 0.8 * c0 + 0.2 * np.asarray(logits).mean(axis=0)
    np.testing.assert_allclose(np.asarray(method.center.get_value()), expected, rtol=1e-4, atol=1e-5)


def test_dino_teacher_is_ema_and_represent_uses_it():
    config = tiny("dino")
    method = build(config)
    student = np.asarray(method.encoder.stem_conv.kernel.get_value())
    teacher_before = np.asarray(method.teacher_encoder.stem_conv.kernel.get_value())
    np.testing.assert_array_equal(student, teacher_before)  # teacher starts as a copy
    method.encoder.stem_conv.kernel.set_value(jnp.asarray(student + 1.0))
    method.after_step(jnp.asarray(0))
    m = float(method.teacher_momentum(jnp.asarray(0)))
    np.testing.assert_allclose(
        np.asarray(method.teacher_encoder.stem_conv.kernel.get_value()), m * teacher_before + (1 - m) * (student + 1), rtol=1e-6
    )
    x = views()[0]
    method.eval()
    np.testing.assert_allclose(np.asarray(method.represent(x)), np.asarray(method.teacher_encoder(x)))


def test_dino_last_layer_frozen_then_trained():
    config = tiny("dino", **{"method.freeze_last_layer_steps": 2, "optimizer.warmup_steps": 0})
    history, metrics = run_steps(config, 3)
    last = [value(h, "method", "head", "last_layer", "kernel") for h in history]
    first = [value(h, "method", "head", "layers", 0, "kernel") for h in history]
    np.testing.assert_array_equal(last[0], last[1])
    np.testing.assert_array_equal(last[0], last[2])
    assert not np.allclose(last[2], last[3])  # trained from step 2 on
    assert not np.allclose(first[0], first[1])  # the rest of the head moves meanwhile
    assert all(np.isfinite(m["loss"]) for m in metrics)


# ------------------------------------------------------------------------------------------------
# SwAV
# ------------------------------------------------------------------------------------------------


def test_swav_prototypes_unit_norm_and_frozen():
    config = tiny("swav", **{"method.freeze_prototypes_steps": 2, "optimizer.warmup_steps": 0})
    history, metrics = run_steps(config, 3)
    protos = [value(h, "method", "prototypes", "kernel") for h in history]
    encoder = [value(h, "method", "encoder", "stem_conv", "kernel") for h in history]
    for p in protos:
        np.testing.assert_allclose(np.linalg.norm(p, axis=0), 1.0, rtol=1e-5)
    # Frozen: unchanged up to the float rounding of the re-normalization after every step.
    np.testing.assert_allclose(protos[0], protos[1], atol=1e-6)
    np.testing.assert_allclose(protos[0], protos[2], atol=1e-6)
    assert np.abs(protos[3] - protos[2]).max() > 1e-4
    assert not np.allclose(encoder[0], encoder[1])
    assert 0 < metrics[-1]["method/prototype_usage"] <= 1


def test_swav_queue_fills_from_start_step_and_joins_when_full():
    batch = 16
    config = tiny("swav", **{"method.queue_length": 2 * batch, "method.queue_start_step": 1})
    method = build(config)
    out = method(views(seed=0), step=jnp.asarray(0))
    assert float(out.metrics["queue_in_use"]) == 0
    np.testing.assert_array_equal(np.asarray(method.queue.get_value()), 0.0)  # not filled before the start
    vs = views(seed=1)
    out = method(vs, step=jnp.asarray(1))
    queue = np.asarray(method.queue.get_value())
    assert float(out.metrics["queue_in_use"]) == 0
    np.testing.assert_allclose(np.linalg.norm(queue[:, :batch], axis=-1), 1.0, rtol=1e-5)  # newest in front
    np.testing.assert_array_equal(queue[:, batch:], 0.0)
    out = method(views(seed=2), step=jnp.asarray(2))
    assert float(out.metrics["queue_in_use"]) == 0
    np.testing.assert_allclose(np.asarray(method.queue.get_value())[:, batch:], queue[:, :batch], rtol=1e-6)
    out = method(views(seed=3), step=jnp.asarray(3))  # full after 2 batches: joins Sinkhorn
    assert float(out.metrics["queue_in_use"]) == 1


def test_swav_queue_changes_codes():
    """The queue enters Sinkhorn: the loss with a (full) queue differs from the loss without."""
    batch = 16
    with_queue = build(tiny("swav", **{"method.queue_length": batch, "method.queue_start_step": 0}))
    without = build(tiny("swav"))
    rng = np.random.default_rng(0)
    q = rng.normal(size=with_queue.queue.get_value().shape).astype(np.float32)
    with_queue.queue.set_value(jnp.asarray(q / np.linalg.norm(q, axis=-1, keepdims=True)))
    vs = views()
    a = with_queue(vs, step=jnp.asarray(5))
    b = without(vs, step=jnp.asarray(5))
    assert float(a.metrics["queue_in_use"]) == 1
    assert not np.isclose(float(a.loss), float(b.loss))


# ------------------------------------------------------------------------------------------------
# Option checks: one-line ValueErrors naming the field
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["swav", "dino"])
def test_crops_not_matching_num_views(name):
    config = tiny(name, **{"data.crops": ((2, "random_resized_crop(16)"), (3, "random_resized_crop(8)"))})
    with pytest.raises(ValueError, match="needs 4") as info:
        build_experiment(config, image_shape=(GLOBAL, GLOBAL, 1))
    assert "\n" not in str(info.value)
    assert methods.get_method_class(name).num_views(tiny(name)) == N_GLOBAL + N_LOCAL


@pytest.mark.parametrize(
    "name, overrides, field",
    [
        ("swav", {"method.num_global_crops": 0, "data.crops": ((4, "random_resized_crop(16)"),)}, "num_global_crops"),
        ("swav", {"method.num_local_crops": 0, "method.num_global_crops": 1, "data.crops": ((1, "identity"),)}, "at least 2 crops"),
        ("swav", {"method.temperature": 0.0}, "method.temperature"),
        ("swav", {"method.epsilon": -0.05}, "method.epsilon"),
        ("swav", {"method.queue_length": 24}, "method.queue_length"),
        ("swav", {"method.num_prototypes": 0}, "method.num_prototypes"),
        ("dino", {"method.num_global_crops": 0, "data.crops": ((4, "random_resized_crop(16)"),)}, "num_global_crops"),
        ("dino", {"method.num_local_crops": 0, "method.num_global_crops": 1, "data.crops": ((1, "identity"),)}, "at least 2 crops"),
        ("dino", {"method.teacher_momentum": 1.5}, "method.teacher_momentum"),
        ("dino", {"method.center_momentum": -0.1}, "method.center_momentum"),
        ("dino", {"method.student_temperature": 0.0}, "method.student_temperature"),
        ("dino", {"method.teacher_temperature_start": -1.0}, "method.teacher_temperature_start"),
        ("dino", {"method.out_dim": 1}, "method.out_dim"),
        ("dino", {"method.centering": "mean"}, "method.centering"),
        ("dino", {"method.sinkhorn_iterations": 0}, "method.sinkhorn_iterations"),
    ],
)
def test_bad_options_are_one_line_value_errors(name, overrides, field):
    with pytest.raises(ValueError, match=field) as info:
        build(tiny(name, **overrides))
    assert "\n" not in str(info.value)
