"""The jit'd train step: sharded equals single-device, no recompiles, NaN detection."""

from __future__ import annotations

import functools

import chex
import jax
import numpy as np
import pytest

from jssl import sharding
from jssl.train import build_experiment
from tests.train.helpers import random_batch, tiny_config


def _one_step(config, mesh, batch):
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    state = exp.init_state()
    before = jax.device_get(state.params)
    state, metrics = exp.train_step(state, sharding.host_batch_to_global(batch, mesh))
    return before, jax.device_get(state), jax.device_get(metrics)


# `heavy`: tests/methods/test_all_methods.py runs the same SGD-gradient comparison for SimCLR on
# both meshes by default (and for every method on data=8); this trainer-level copy with tighter
# tolerances costs 40 s of a 15-minute suite.
@pytest.mark.heavy
@pytest.mark.parametrize("axes", [dict(data=8, fsdp=1, tensor=1), dict(data=4, fsdp=2, tensor=1)])
def test_sharded_step_equals_single_device(axes):
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    # Plain SGD without momentum or decay: the parameter change is exactly -lr * gradient,
    # so comparing updated parameters compares gradients.
    config = tiny_config(
        **{
            "optimizer.name": "sgd",
            "optimizer.momentum": 0.0,
            "optimizer.weight_decay": 0.0,
            "optimizer.warmup_steps": 0,
            "optimizer.base_learning_rate": 1.0,
        }
    )
    batch = random_batch(config.global_batch_size)
    single = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    many = sharding.make_mesh(axes)
    before1, state1, metrics1 = _one_step(config, single, batch)
    before8, state8, metrics8 = _one_step(config, many, batch)

    chex.assert_trees_all_close(before1, before8)  # same initialization whatever the mesh
    np.testing.assert_allclose(metrics1["loss"], metrics8["loss"], rtol=1e-5)
    lr = float(metrics1["learning_rate"])
    grads1 = jax.tree.map(lambda a, b: (a - b) / lr, before1, state1.params)
    grads8 = jax.tree.map(lambda a, b: (a - b) / lr, before8, state8.params)
    assert float(metrics1["grad_norm"]) > 0
    chex.assert_trees_all_close(grads1, grads8, atol=1e-5, rtol=1e-4)
    # BatchNorm running statistics are global-batch statistics (synchronized BN).
    chex.assert_trees_all_close(state1.buffers, state8.buffers, atol=1e-6, rtol=1e-5)


def test_fsdp_actually_shards_parameters():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    config = tiny_config()
    mesh = sharding.make_mesh(dict(data=4, fsdp=2, tensor=1))
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    state = exp.init_state()
    kernel = state.params["method"]["encoder"]["blocks"][0]["conv1"]["kernel"].get_value()
    assert kernel.sharding.spec[-1] == "fsdp"
    assert kernel.addressable_shards[0].data.shape[-1] == kernel.shape[-1] // 2


def test_step_does_not_recompile():
    config = tiny_config()
    mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1))
    exp = build_experiment(
        config, image_shape=(16, 16, 1), mesh=mesh, wrap_step=functools.partial(chex.assert_max_traces, n=1)
    )
    state = exp.init_state()
    for seed in range(3):
        state, _ = exp.train_step(state, sharding.host_batch_to_global(random_batch(16, seed=seed), mesh))
    assert int(state.step) == 3 and exp.step_traces() == 1
    # The guard is live: a batch of another shape would recompile, and is refused.
    with pytest.raises(AssertionError, match="traced > 1"):
        exp.train_step(state, sharding.host_batch_to_global(random_batch(32), mesh))


def test_batch_not_divisible_by_devices_is_a_clear_error():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    config = tiny_config(global_batch_size=12)
    with pytest.raises(ValueError, match="not divisible by the 8 batch shards"):
        build_experiment(config, image_shape=(16, 16, 1))


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("method.name", "simclr_v9", "unknown method 'simclr_v9'"),
        ("model.name", "resnet_huge", "unknown model 'resnet_huge'"),
        ("model.dtype", "float8", "unknown model.dtype"),
        ("optimizer.name", "adagrad", "unknown optimizer 'adagrad'"),
    ],
)
def test_unknown_names_are_clear_errors(key, value, match):
    with pytest.raises(ValueError, match=match):
        build_experiment(tiny_config(**{key: value}), image_shape=(16, 16, 1))


def test_bf16_compute_keeps_float32_parameters():
    config = tiny_config(**{"model.dtype": "bfloat16"})
    mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1))
    exp = build_experiment(config, image_shape=(16, 16, 1), mesh=mesh)
    state, metrics = exp.train_step(exp.init_state(), sharding.host_batch_to_global(random_batch(16), mesh))
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state.params))
    assert np.isfinite(float(metrics["loss"]))
