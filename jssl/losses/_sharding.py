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
