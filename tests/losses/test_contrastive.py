"""Tests for jssl.losses.contrastive (nt_xent, info_nce, queue update)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jssl import losses
from tests.losses import helpers
from tests.losses import reference

P = helpers.P


def _views(seed=0, n=16, d=8):
    r = np.random.default_rng(seed)
    z1 = r.standard_normal((n, d)).astype(np.float32)
    return jnp.asarray(z1), jnp.asarray(z1 + 0.5 * r.standard_normal((n, d)), jnp.float32)


@pytest.mark.parametrize("block_size, temperature", [(None, 0.1), (5, 0.5), (32, 0.1)])
def test_nt_xent_matches_reference(block_size, temperature):
    z1, z2 = _views()
    loss, metrics = losses.nt_xent(z1, z2, temperature=temperature, block_size=block_size)
    ref_loss, ref_m = reference.nt_xent(np.asarray(z1), np.asarray(z2), temperature)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(metrics["contrastive_accuracy"]), ref_m["contrastive_accuracy"], atol=1e-6)


def test_nt_xent_sharded_outer_and_inner_grads(mesh):
    block_size = 7
    z1, z2 = _views(n=32)
    make = lambda ax: functools.partial(losses.nt_xent, temperature=0.1, axis_name=ax, block_size=block_size)
    helpers.check_sharded_matches_single(mesh, make, (z1, z2), [P("data"), P("data")], argnums=(0, 1))


def test_nt_xent_blockwise_equals_dense_with_grads():
    z1, z2 = _views(n=24)
    dense = jax.value_and_grad(lambda a, b: losses.nt_xent(a, b)[0], argnums=(0, 1))
    block = jax.value_and_grad(lambda a, b: losses.nt_xent(a, b, block_size=10)[0], argnums=(0, 1))
    import chex

    chex.assert_trees_all_close(jax.jit(block)(z1, z2), jax.jit(dense)(z1, z2), rtol=1e-5, atol=1e-6)


def test_nt_xent_blockwise_never_builds_full_matrix():
    n, bs = 512, 64
    z1, z2 = _views(n=n, d=4)
    f = jax.grad(lambda a, b: losses.nt_xent(a, b, block_size=bs)[0])
    hlo = jax.jit(f).lower(z1, z2).compile().as_text()
    assert f"f32[{2 * n},{2 * n}]" not in hlo
    assert f"f32[{2 * n},{bs}]" in hlo


def test_nt_xent_scale_invariant_and_symmetric():
    z1, z2 = _views()
    base, _ = losses.nt_xent(z1, z2)
    scaled, _ = losses.nt_xent(3.7 * z1, 0.01 * z2)
    swapped, _ = losses.nt_xent(z2, z1)
    np.testing.assert_allclose(float(scaled), float(base), rtol=1e-5)
    np.testing.assert_allclose(float(swapped), float(base), rtol=1e-5)


def test_nt_xent_perfect_alignment_is_accurate_and_low():
    z = jnp.eye(8) * 5.0
    loss, m = losses.nt_xent(z, z, temperature=0.1)
    assert float(m["contrastive_accuracy"]) == 1.0
    np.testing.assert_allclose(float(m["positive_similarity"]), 1.0, rtol=1e-6)
    # Positive logit 10 vs 14 negatives at 0 (the other view of 7 others + 7 others).
    np.testing.assert_allclose(float(loss), np.log1p(14 * np.exp(-10.0)), rtol=1e-4)


def test_nt_xent_extreme_logits_are_stable():
    z1, z2 = _views()
    f = jax.jit(jax.value_and_grad(lambda a: losses.nt_xent(a, z2, temperature=1e-3)[0]))
    loss, g = f(z1)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((jnp.ones((4, 3)), jnp.ones((4, 2))), {}, "same shape"),
        ((jnp.ones((4,)), jnp.ones((4,))), {}, "rank 2"),
        ((jnp.ones((4, 3), jnp.int32), jnp.ones((4, 3), jnp.int32)), {}, "floating"),
        ((jnp.ones((4, 3)), jnp.ones((4, 3))), {"temperature": 0.0}, "temperature"),
        ((jnp.ones((4, 3)), jnp.ones((4, 3))), {"block_size": 0}, "block_size"),
    ],
)
def test_nt_xent_bad_inputs(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        losses.nt_xent(*args, **kwargs)
