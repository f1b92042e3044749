"""Mesh construction, logical-axis rules, weight-decay masks and the learning-rate schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jssl import config as common
from jssl import sharding
from jssl.train.optimizers import build_optimizer, learning_rate_schedule, weight_decay_schedule
from tests.train.helpers import tiny_config


def test_mesh_fills_minus_one_and_rejects_bad_shapes():
    n = jax.device_count()
    mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1))
    assert mesh.shape["data"] == n
    with pytest.raises(ValueError, match="at most one mesh axis may be -1"):
        sharding.make_mesh(dict(data=-1, fsdp=-1, tensor=1))
    with pytest.raises(ValueError, match="needs"):
        sharding.make_mesh(dict(data=n + 1, fsdp=1, tensor=1))
    with pytest.raises(ValueError, match="must have a 'fsdp' axis"):
        sharding.make_mesh(dict(data=-1))


def test_logical_rules_map_names_drop_trivial_axes_and_never_reuse_an_axis():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    mesh = sharding.make_mesh(dict(data=2, fsdp=4, tensor=1))
    rules = (("conv_out", "fsdp"), ("mlp", "fsdp"), ("embed", "tensor"))
    assert sharding.logical_to_mesh_spec(P(None, "conv_out"), rules, mesh) == P(None, "fsdp")
    assert sharding.logical_to_mesh_spec(P("embed", "mlp"), rules, mesh) == P(None, "fsdp")  # tensor has size 1
    assert sharding.logical_to_mesh_spec(P("mlp", "conv_out"), rules, mesh) == P("fsdp", None)
    assert sharding.logical_to_mesh_spec(P("unknown"), rules, mesh) == P(None)


def test_schedule_scales_with_batch_warms_up_and_decays():
    config = tiny_config(
        **{
            "optimizer.base_learning_rate": 0.3,
            "global_batch_size": 512,
            "total_steps": 100,
            "optimizer.warmup_steps": 10,
        }
    )
    schedule = learning_rate_schedule(config)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(0.3 * 512 / 256)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ["lars", "adamw", "sgd"])
def test_weight_decay_skips_biases_and_norms(name):
    config = tiny_config(
        **{
            "optimizer.name": name,
            "optimizer.weight_decay": 0.5,
            "optimizer.warmup_steps": 0,
            "optimizer.base_learning_rate": 0.1,
        }
    )
    tx, _ = build_optimizer(config)
    params = {
        "method": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,)), "qkv_bias": jnp.ones((3, 2, 2))},
        "probe": {"kernel": jnp.ones((3, 2))},
    }
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    assert np.all(np.asarray(updates["method"]["kernel"]) < 0)  # decayed
    np.testing.assert_array_equal(updates["method"]["bias"], 0.0)  # not decayed
    np.testing.assert_array_equal(updates["method"]["qkv_bias"], 0.0)  # a bias, however many dims
    np.testing.assert_array_equal(updates["probe"]["kernel"], 0.0)  # probe: own optimizer, no decay


def test_probe_has_its_own_learning_rate():
    config = tiny_config(**{"optimizer.base_learning_rate": 0.0, "probe.learning_rate": 0.01})
    tx, _ = build_optimizer(config)
    params = {"method": {"kernel": jnp.ones((2, 2))}, "probe": {"kernel": jnp.ones((2, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(updates["method"]["kernel"], 0.0)
    assert np.all(np.asarray(updates["probe"]["kernel"]) < 0)
    assert isinstance(tx, optax.GradientTransformation)


def test_weight_decay_cosine_schedule_and_its_use_by_adamw():
    config = tiny_config(
        **{
            "optimizer.name": "adamw",
            "optimizer.weight_decay": 0.04,
            "optimizer.weight_decay_schedule": "cosine",
            "optimizer.weight_decay_end": 0.4,
            "optimizer.warmup_steps": 0,
            "total_steps": 100,
        }
    )
    wd = weight_decay_schedule(config)
    assert float(wd(0)) == pytest.approx(0.04)
    assert float(wd(50)) == pytest.approx(0.22)
    assert float(wd(100)) == pytest.approx(0.4) and float(wd(150)) == pytest.approx(0.4)
    # With zero gradients AdamW's update is -lr * wd * param: the decay in use is the schedule's.
    tx, lr = build_optimizer(config)
    params = {"method": {"kernel": jnp.ones((2, 2))}, "probe": {"kernel": jnp.ones((2, 2))}}
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(updates["method"]["kernel"], -float(lr(0)) * 0.04, rtol=1e-5)
    assert weight_decay_schedule(tiny_config()) == tiny_config().optimizer.weight_decay  # default: constant
    with pytest.raises(ValueError, match="unknown optimizer.weight_decay_schedule 'linear'"):
        weight_decay_schedule(tiny_config(**{"optimizer.weight_decay_schedule": "linear"}))


def test_default_rules_shard_resnets_by_fsdp_and_transformers_by_fsdp_and_tensor():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    rules = common.base_config().sharding_rules
    mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))

    def spec(*names):
        return sharding.logical_to_mesh_spec(P(*names), rules, mesh)

    assert spec(None, None, "conv_in", "conv_out") == P(None, None, None, "fsdp")
    assert spec("embed", None, "heads", "kv") == P("fsdp", None, "tensor", None)
    assert spec("heads", "kv", "embed") == P("tensor", None, "fsdp")
    assert spec("embed", "mlp") == P("fsdp", "tensor") and spec("mlp", "embed") == P("tensor", "fsdp")


def test_lars_equals_optax_lars_step_by_step():
    # jssl's LARS only swaps optax's safe_norm (a masked second norm, materialized by XLA CPU) for
    # plain norms; with min_norm=0 the updates must be optax's (up to the norms' float32 rounding)
    # and the state tree the same, so checkpoints written with optax.lars restore. Includes a zero
    # tensor (trust ratio 1) and masked-off leaves.
    from jssl.train.optimizers import lars

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"w": jax.random.normal(keys[0], (3, 3, 8, 16)), "b": jnp.zeros((16,)), "z": jnp.zeros((4, 4)),
              "v": jax.random.normal(keys[1], (16, 10))}
    mask = {"w": True, "b": False, "z": True, "v": True}
    kw = dict(weight_decay=1e-4, weight_decay_mask=mask, trust_ratio_mask=mask, momentum=0.9)
    ours, theirs = lars(0.3, **kw), optax.lars(0.3, **kw)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    assert jax.tree.structure(s_ours) == jax.tree.structure(s_theirs)
    p_ours = p_theirs = params
    for step in range(3):
        grads = jax.tree.map(lambda p, k=keys[2 + step % 2]: jax.random.normal(k, p.shape), params)
        grads["z"] = jnp.zeros((4, 4))
        u_ours, s_ours = jax.jit(ours.update)(grads, s_ours, p_ours)
        u_theirs, s_theirs = jax.jit(theirs.update)(grads, s_theirs, p_theirs)
        for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_theirs)):
            # Elements that cancel in the momentum sum amplify rounding: compare at the tensor's scale.
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))
        p_ours, p_theirs = optax.apply_updates(p_ours, u_ours), optax.apply_updates(p_theirs, u_theirs)
    with pytest.raises(ValueError, match="params"):
        ours.update(grads, s_ours)
