"""Collective helpers that degrade to the identity when no mesh axis is given.

Losses call these unconditionally, so a single code path serves both the single-device
function and its `shard_map` version; equality of the two is then a property of the
collectives (all_gather's transpose is a psum_scatter, so key gradients flow back to the
device that owns the key) rather than of duplicated logic.
"""

from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp
from jax import lax

AxisName = Union[str, tuple[str, ...], None]


def axis_size(axis_name: AxisName) -> int:
    if axis_name is None:
        return 1
    return lax.axis_size(axis_name)


def axis_index(axis_name: AxisName) -> jax.Array:
    if axis_name is None:
        return jnp.zeros((), jnp.int32)
    return lax.axis_index(axis_name)


def all_gather(x: jax.Array, axis_name: AxisName) -> jax.Array:
    """Concatenates the per-device shards along axis 0, in device order."""
    if axis_name is None:
        return x
    return lax.all_gather(x, axis_name, axis=0, tiled=True)


def psum(x, axis_name: AxisName):
    if axis_name is None:
        return x
    return lax.psum(x, axis_name)


def pmean(x, axis_name: AxisName):
    if axis_name is None:
        return x
    return lax.pmean(x, axis_name)


def global_mean(local_sum: jax.Array, local_count, axis_name: AxisName) -> jax.Array:
    """Mean over the global batch from per-device sums; exact for uneven per-device counts."""
    total = psum(local_sum, axis_name)
    count = psum(jnp.asarray(local_count, jnp.float32), axis_name)
    return total / count


def all_gather_replicated(x: jax.Array, axis_name: AxisName) -> jax.Array:
    """Like `all_gather`, but typed as replicated (device-invariant) under shard_map, for
    results that are returned with a replicated out_spec (e.g. a queue). Not for values
    that need gradients."""
    if axis_name is None:
        return x
    gather = getattr(lax, "all_gather_invariant", None)
    if gather is not None:
        return gather(x, axis_name, axis=0, tiled=True)
    try:
        return lax.all_gather(x, axis_name, axis=0, tiled=True, to="invarying")
    except TypeError:  # jax without the `to` argument (no varying-type checks either)
        return lax.all_gather(x, axis_name, axis=0, tiled=True)


def logsumexp(x: jax.Array, axis: int, axis_name: AxisName) -> jax.Array:
    """logsumexp over `axis`, which is sharded over `axis_name` (keepdims=True)."""
    m = lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    if axis_name is not None:
        m = lax.pmax(m, axis_name)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m + jnp.log(psum(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True), axis_name))
