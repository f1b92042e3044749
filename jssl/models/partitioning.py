"""Logical axis names on parameters and activations, placed later by `jssl.sharding`.

Flax shards an annotated variable eagerly at creation, which needs a mesh in context and mesh
axis names. jssl annotates with *logical* names and places the whole state at once through jit
`out_shardings` (see `jssl.sharding.state_shardings`), so eager sharding is switched off per
variable: models can then be built anywhere, with or without a mesh.

Activations are constrained the same way: a model calls `constrain(x, ('batch', None, 'embed'))`
at block boundaries; the trainer, while tracing its step, supplies the mapping from logical
names to a sharding (`activation_sharding`, built by `jssl.sharding.activation_sharding_fn`).
Outside such a context (tests, notebooks, single-device use) `constrain` returns `x` unchanged,
so models never need to know the mesh.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
from flax import nnx

# (logical axes, shape) -> a jax Sharding for an activation of that shape.
ShardingFn = Callable[[tuple[str | None, ...], tuple[int, ...]], Any]

_ACTIVATION_SHARDING: contextvars.ContextVar[ShardingFn | None] = contextvars.ContextVar(
    "jssl_activation_sharding", default=None
)


def logical(initializer, axes: Sequence[str | None]):
    """Wraps `initializer` so its variable carries logical axis names `axes` (one per dim)."""
    return nnx.with_partitioning(initializer, tuple(axes), eager_sharding=False)


@contextlib.contextmanager
def activation_sharding(fn: ShardingFn | None) -> Iterator[None]:
    """Within this context `constrain` places activations with `fn(axes, shape)`."""
    token = _ACTIVATION_SHARDING.set(fn)
    try:
        yield
    finally:
        _ACTIVATION_SHARDING.reset(token)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """A sharding constraint on activation `x` by logical axis names (one per dim), if any is active."""
    fn = _ACTIVATION_SHARDING.get()
    if fn is None:
        return x
    if len(axes) != x.ndim:
        raise ValueError(f"constrain got {len(axes)} axis names {tuple(axes)} for an array of shape {x.shape}")
    return jax.lax.with_sharding_constraint(x, fn(tuple(axes), tuple(x.shape)))
