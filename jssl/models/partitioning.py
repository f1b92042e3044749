"""Logical axis names on parameters, placed later by `jssl.sharding`.

Flax shards an annotated variable eagerly at creation, which needs a mesh in context and mesh
axis names. jssl annotates with *logical* names and places the whole state at once through jit
`out_shardings` (see `jssl.sharding.state_shardings`), so eager sharding is switched off per
variable: models can then be built anywhere, with or without a mesh.
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx


def logical(initializer, axes: Sequence[str | None]):
    """Wraps `initializer` so its variable carries logical axis names `axes` (one per dim)."""
    return nnx.with_partitioning(initializer, tuple(axes), eager_sharding=False)
