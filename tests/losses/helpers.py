"""Generic checks used by the per-family test files: jit vs eager, bf16 vs fp32, finite
gradients, and sharded-vs-single-device equality of values and gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

try:
    _shard_map = jax.shard_map
except AttributeError:  # jax < 0.7
    from jax.experimental.shard_map import shard_map as _shard_map

P = jax.sharding.PartitionSpec


def shard_map(f, mesh, in_specs, out_specs):
    return _shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs)


def loss_only(fn):
    return lambda *a: fn(*a)[0]


def check_jit_matches_eager(fn, args, rtol=1e-5, atol=1e-6):
    eager = fn(*args)
    jitted = jax.jit(fn)(*args)
    chex.assert_trees_all_close(eager, jitted, rtol=rtol, atol=atol)


def check_bf16_close(fn, args, float_args, rtol=5e-2, atol=5e-2):
    """`float_args`: indices of the float arguments to cast to bfloat16."""
    ref_loss, _ = jax.jit(fn)(*args)
    cast = [a.astype(jnp.bfloat16) if i in float_args else a for i, a in enumerate(args)]
    loss, metrics = jax.jit(fn)(*cast)
    assert loss.dtype == jnp.float32, loss.dtype
    assert np.isfinite(float(loss))
    for k, v in metrics.items():
        assert np.all(np.isfinite(np.asarray(v, np.float32))), k
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=rtol, atol=atol)


def check_finite_grads(fn, args, argnums):
    grads = jax.jit(jax.grad(loss_only(fn), argnums=argnums))(*args)
    for g in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(np.asarray(g))), g
    assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree_util.tree_leaves(grads))


def check_sharded_matches_single(mesh, make_fn, args, in_specs, argnums, rtol=1e-5, atol=1e-6):
    """make_fn(axis_name) -> loss fn. in_specs: per arg, P('data') to shard its leading axis
    or P() to replicate. Compares loss, metrics and gradients (wrt argnums) against the
    single-device function on the full (global) arrays."""
    single = make_fn(None)
    sharded = shard_map(make_fn("data"), mesh, in_specs=tuple(in_specs), out_specs=(P(), P()))
    ref = jax.jit(single)(*args)
    got = jax.jit(sharded)(*args)
    chex.assert_trees_all_close(got, ref, rtol=rtol, atol=atol)
    g_ref = jax.jit(jax.grad(loss_only(single), argnums=argnums))(*args)
    g_got = jax.jit(jax.grad(loss_only(sharded), argnums=argnums))(*args)
    chex.assert_trees_all_close(g_got, g_ref, rtol=rtol, atol=atol)
    # As a data-parallel trainer does it: differentiate inside shard_map, per device.
    argtuple = argnums if isinstance(argnums, tuple) else (argnums,)
    inner = shard_map(
        jax.grad(loss_only(make_fn("data")), argnums=argnums),
        mesh,
        in_specs=tuple(in_specs),
        out_specs=(tuple(in_specs[i] for i in argtuple) if isinstance(argnums, tuple) else in_specs[argnums]),
    )
    chex.assert_trees_all_close(jax.jit(inner)(*args), g_ref, rtol=rtol, atol=atol)
    return got, g_got
