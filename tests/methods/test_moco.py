"""MoCo v2 / v3: the losses against independent numpy formulas, the queue, the momentum schedule,
the EMA update after a real train step, and option validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jssl import sharding
from jssl.methods import MoCoV2, MoCoV3
from jssl.methods.common import Teacher
from jssl.train import build_experiment
from jssl.train.trainer import normalize
from tests.train.helpers import load_config, random_batch

BATCH = 16


def tiny(name: str, **overrides):
    config = load_config("smoke", name=name)
    config.model.kwargs.width_multiplier = 0.25
    config.global_batch_size = BATCH
    config.method.projection_hidden_dim = 32
    config.method.projection_dim = 16
    if name == "moco_v2_mnist":
        config.method.queue_size = 4 * BATCH
        config.method.symmetric = False
    else:
        config.method.predictor_hidden_dim = 32
    for key, value in overrides.items():
        target = config
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return config


def views(seed: int = 0) -> list[jax.Array]:
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.normal(size=(BATCH, 16, 16, 1)), jnp.float32) for _ in range(2)]


def np_normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_cross_entropy(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -np.mean(logp[np.arange(len(labels)), labels])


@pytest.mark.parametrize("symmetric", [False, True])
def test_moco_v2_loss_is_queue_info_nce_and_pushes_keys(symmetric):
    # The paper's form (asymmetric, Linear-ReLU-Linear head) and the MNIST recipe's (symmetric, BN head).
    overrides = {"method.symmetric": symmetric, "method.projection_batch_norm": symmetric, "method.queue_size": 6 * BATCH}
    config = tiny("moco_v2_mnist", **overrides)
    method = MoCoV2(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))
    # Non-trivial pointer: the write must start there.
    method.queue_ptr.set_value(jnp.asarray(BATCH, jnp.int32))
    x = views()
    reference = nnx.clone(method)
    q = [np_normalize(reference.projector(reference.encoder(v))) for v in x]
    k = [np_normalize(reference.key_projector(reference.key_encoder(v))) for v in x]
    queue = np.asarray(reference.queue.get_value(), np.float64)
    t = config.method.temperature

    def queue_info_nce(q, k):
        logits = np.concatenate([np.sum(q * k, axis=1, keepdims=True), q @ queue.T], axis=1) / t
        return np_cross_entropy(logits, np.zeros(BATCH, int)), np.mean(logits.argmax(1) == 0)

    (expected, accuracy), (expected2, accuracy2) = queue_info_nce(q[0], k[1]), queue_info_nce(q[1], k[0])
    pushed = k[1]
    if symmetric:
        expected, accuracy = (expected + expected2) / 2, (accuracy + accuracy2) / 2
        pushed = np.concatenate([k[1], k[0]])

    out = method(x, step=jnp.asarray(0))
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(out.metrics["contrastive_accuracy"]), accuracy, atol=1e-6)
    assert {"momentum", "embedding_spread", "embedding_std"} <= set(out.metrics)
    new_queue = np.asarray(method.queue.get_value())
    end = BATCH + len(pushed)
    np.testing.assert_allclose(new_queue[BATCH:end], pushed, atol=1e-5)
    np.testing.assert_array_equal(new_queue[:BATCH], queue[:BATCH].astype(np.float32))
    np.testing.assert_array_equal(new_queue[end:], queue[end:].astype(np.float32))
    assert int(method.queue_ptr.get_value()) == end


def test_moco_v3_loss_is_symmetric_in_batch_info_nce_times_2t():
    config = tiny("moco_v3_mnist")
    method = MoCoV3(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = views()
    ref = nnx.clone(method)
    q = [np_normalize(ref.predictor(ref.projector(ref.encoder(v)))) for v in x]
    k = [np_normalize(ref.momentum_projector(ref.momentum_encoder(v))) for v in x]
    t = config.method.temperature
    labels = np.arange(BATCH)
    expected = 2 * t * (np_cross_entropy(q[0] @ k[1].T / t, labels) + np_cross_entropy(q[1] @ k[0].T / t, labels))
    out = method(x, step=jnp.asarray(0))
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-5)
    assert out.features.shape == (BATCH, method.feature_dim)


def test_moco_v3_momentum_follows_cosine_schedule():
    config = tiny("moco_v3_mnist", total_steps=40, **{"method.momentum_base": 0.9, "method.momentum_final": 1.0})
    method = MoCoV3(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))
    total = config.total_steps
    for k in (0, 1, 10, 20, 33, 40):
        expected = 1 - (1 - 0.9) * (math.cos(math.pi * k / total) + 1) / 2
        np.testing.assert_allclose(float(method.momentum(jnp.asarray(k))), expected, atol=1e-6)
    # The reported metric is the momentum of the current step.
    out = method(views(), step=jnp.asarray(20))
    np.testing.assert_allclose(float(out.metrics["momentum"]), 0.95, atol=1e-6)


def test_moco_v2_momentum_is_constant_by_default():
    config = tiny("moco_v2_mnist", **{"method.momentum_base": 0.999, "method.momentum_final": 0.999})
    method = MoCoV2(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))
    for k in (0, 3, config.total_steps):
        np.testing.assert_allclose(float(method.momentum(jnp.asarray(k))), 0.999, atol=1e-7)


def _values(tree, kind):
    leaves = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return [np.asarray(v.get_value()) for v in leaves if type(v) is kind]


@pytest.mark.parametrize(
    "name,pairs",
    [
        ("moco_v2_mnist", (("key_encoder", "encoder"), ("key_projector", "projector"))),
        ("moco_v3_mnist", (("momentum_encoder", "encoder"), ("momentum_projector", "projector"))),
    ],
)
def test_train_step_ema_update_and_queue(name, pairs):
    # A momentum far from 1, so that a wrong formula shows.
    config = tiny(
        name,
        **{
            "method.momentum_base": 0.7,
            "method.momentum_final": 1.0 if "v3" in name else 0.7,
            "optimizer.warmup_steps": 0,  # so that the first step moves the student
        },
    )
    mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1))
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    state0 = jax.device_get(exp.init_state())
    batch = random_batch(BATCH)
    graphdef = exp.graphdef

    if "v2" in name:
        params0, buffers0 = jax.tree.map(jnp.asarray, (state0.params, state0.buffers))
        model0 = nnx.merge(graphdef, params0, buffers0, copy=True)
        view1 = normalize(jnp.asarray(batch["view_1"]), config.data.mean, config.data.std, jnp.float32)
        keys = np.asarray(model0.method._keys(view1))
        queue0 = np.asarray(state0.buffers["method"]["queue"].get_value())

    state1, metrics = exp.train_step(exp.init_state(), sharding.host_batch_to_global(batch, mesh))
    state1 = jax.device_get(state1)
    m = 0.7
    np.testing.assert_allclose(float(metrics["method/momentum"]), m, atol=1e-6)
    checked = 0
    for teacher, student in pairs:
        t0 = _values(state0.buffers["method"][teacher], Teacher)
        t1 = _values(state1.buffers["method"][teacher], Teacher)
        s1 = _values(state1.params["method"][student], nnx.Param)
        assert len(t0) == len(s1) > 0
        for a, b, s in zip(t0, t1, s1):
            np.testing.assert_allclose(np.asarray(b), m * np.asarray(a) + (1 - m) * np.asarray(s), rtol=1e-5, atol=1e-6)
            checked += 1
    assert checked > 4
    # The student moved in this step, so the check above is not vacuous.
    before, after = (_values(s.params["method"]["encoder"], nnx.Param) for s in (state0, state1))
    assert any(not np.allclose(a, b) for a, b in zip(before, after))

    if "v2" in name:
        queue1 = np.asarray(state1.buffers["method"]["queue"].get_value())
        np.testing.assert_allclose(queue1[:BATCH], keys, atol=1e-5)
        np.testing.assert_array_equal(queue1[BATCH:], queue0[BATCH:])
        assert int(state1.buffers["method"]["queue_ptr"].get_value()) == BATCH


@pytest.mark.parametrize(
    "name,overrides,field",
    [
        ("moco_v2_mnist", {"method.queue_size": 4 * BATCH + 8}, "method.queue_size"),
        ("moco_v2_mnist", {"method.queue_size": 96, "method.symmetric": True, "global_batch_size": 32}, "method.queue_size"),
        ("moco_v2_mnist", {"method.momentum_base": 1.5}, "method.momentum_base"),
        ("moco_v2_mnist", {"method.temperature": 0.0}, "method.temperature"),
        ("moco_v3_mnist", {"method.momentum_final": -0.1}, "method.momentum_final"),
        ("moco_v3_mnist", {"method.temperature": -1.0}, "method.temperature"),
    ],
)
def test_bad_options_are_one_line_value_errors(name, overrides, field):
    config = tiny(name, **overrides)
    cls = MoCoV2 if "v2" in name else MoCoV3
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as info:
        cls(config, in_channels=1, dtype=jnp.float32, rngs=nnx.Rngs(0))
    assert "\n" not in str(info.value)
