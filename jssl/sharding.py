"""Device mesh, logical-axis rules and batch placement.

Parameters carry logical axis names (`conv_out`, `embed`, `mlp`, ...). A rules table in the
config maps each to a mesh axis (or to None: replicated), so FSDP or tensor parallelism is a
config change, not a model change. The batch is always split over `BATCH_AXES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# Data parallelism and FSDP both split the batch; FSDP additionally splits parameters.
BATCH_AXES = ("data", "fsdp")


def make_mesh(axis_sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a mesh from `{'data': -1, 'fsdp': 1, ...}`; one size of -1 takes the rest.

    Raises:
      ValueError: if more than one axis is -1, a size is not positive, or the sizes do not
        multiply to the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(axis_sizes)
    sizes = [int(axis_sizes[n]) for n in names]
    for axis in BATCH_AXES:
        if axis not in names:
            raise ValueError(f"the mesh must have a {axis!r} axis (use size 1 to disable); got axes {names}")
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1; got {dict(axis_sizes)}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh axis sizes must be positive or -1; got {dict(axis_sizes)}")
    fixed = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % fixed:
            raise ValueError(f"{len(devices)} devices cannot be split into mesh {dict(axis_sizes)}")
        sizes[sizes.index(-1)] = len(devices) // fixed
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(names, sizes))} needs {int(np.prod(sizes))} devices but {len(devices)} are available"
        )
    # make_mesh orders devices so that inner axes stay on fast local links. Auto axes: the
    # compiler propagates shardings (GSPMD) from the annotated parameters and batch.
    return jax.make_mesh(tuple(sizes), names, axis_types=(jax.sharding.AxisType.Auto,) * len(names), devices=devices)


def batch_size_per_shard(mesh: Mesh) -> int:
    """How many ways the batch is split across the mesh."""
    return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_global_batch(global_batch_size: int, mesh: Mesh) -> None:
    ways = batch_size_per_shard(mesh)
    if global_batch_size % ways:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {ways} batch shards of the "
            f"mesh {dict(mesh.shape)}; pick a multiple of {ways}"
        )
    if global_batch_size % jax.process_count():
        raise ValueError(f"global batch size {global_batch_size} is not divisible by {jax.process_count()} processes")


def logical_to_mesh_spec(logical: P | None, rules: Sequence[tuple[str, Any]], mesh: Mesh) -> P:
    """Maps a PartitionSpec of logical axis names to mesh axes through `rules`.

    A logical name without a rule is replicated. A mesh axis is used at most once per array
    (the first dimension that claims it wins), and axes of size 1 are dropped, so a rules
    table written for a large mesh is valid on a laptop.
    """
    if logical is None:
        return P()
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name in logical:
        target = table.get(name) if name is not None else None
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        kept = tuple(t for t in targets if t in mesh.shape and mesh.shape[t] > 1 and t not in used)
        used.update(kept)
        out.append(kept[0] if len(kept) == 1 else (kept or None))
    return P(*out)


def _divides(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
    """Replicates any dimension the mesh axes do not divide evenly (e.g. a 3-channel stem)."""
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        ways = int(np.prod([mesh.shape[a] for a in names])) if names else 1
        out.append(axes if dim % ways == 0 else None)
    return P(*out)


def state_shardings(abstract_state: Any, rules: Sequence[tuple[str, Any]], mesh: Mesh) -> Any:
    """NamedShardings for an abstract NNX state, from each variable's logical axis names."""
    from flax import nnx  # Local: keeps `jssl.sharding` importable without flax.

    def sharding_of(leaf):
        if not isinstance(leaf, nnx.Variable):  # step counters, rng keys: replicated
            return NamedSharding(mesh, P())
        if not hasattr(leaf.get_value(), "shape"):  # e.g. optax's MaskedNode: holds no array
            return leaf
        logical = leaf.get_metadata().get("out_sharding")
        spec = logical_to_mesh_spec(P(*logical) if logical else None, rules, mesh)
        # Keep the Variable node so the result has the state's exact tree structure.
        return leaf.replace(NamedSharding(mesh, _divides(spec, leaf.get_value().shape, mesh)))

    return jax.tree.map(sharding_of, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def activation_sharding_fn(rules: Sequence[tuple[str, Any]], mesh: Mesh):
    """`(logical axes, shape) -> NamedSharding` for activations (`jssl.models.partitioning.constrain`).

    The logical name `batch` means `BATCH_AXES` unless the rules say otherwise. As for
    parameters, a mesh axis is used once per array (the batch claims `fsdp` before `embed`
    can) and a dimension the mesh axes do not divide is left replicated.
    """
    table = (("batch", BATCH_AXES),) + tuple(rules)

    def fn(axes: tuple[str | None, ...], shape: tuple[int, ...]) -> NamedSharding:
        spec = logical_to_mesh_spec(P(*axes), table, mesh)
        return NamedSharding(mesh, _divides(spec, shape, mesh))

    return fn


def host_batch_to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places this process's share of a batch as one global array per key, split over the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
